// SPDX-License-Identifier: GPL-2.0
//! Host tests of the local APIC model (`nsvm_core::lapic`): its register
//! file (the timer's and the interrupt requests' tests are in `timer` and
//! `irq`).

use super::*;

pub(super) fn clk(ns: u64) -> Clock {
    Clock { now_ns: ns, guest_tsc: ns * 2, tsc_khz: 2_000_000 }
}

pub(super) fn enabled(id: u32) -> Lapic {
    let mut a = Lapic::new(id, id == 0);
    a.write(reg::SPIV, 0x1ff, &clk(0)).unwrap();
    a
}

#[test]
fn reset_matches_kvm() {
    let a = Lapic::new(0, true);
    assert_eq!(a.base, 0xfee0_0900);
    assert_eq!(a.get(reg::ID), 0);
    assert_eq!(a.get(reg::LVR), 0x50014);
    assert_eq!(a.get(reg::SPIV), 0xff);
    assert_eq!(a.get(reg::DFR), 0xffff_ffff);
    assert_eq!(a.get(reg::LVT0), 0x700);
    assert_eq!(a.get(reg::LVT1), lvt::MASKED);
    assert_eq!(a.get(reg::LVTT), lvt::MASKED);
    let b = Lapic::new(3, false);
    assert_eq!(b.get(reg::ID), 3 << 24);
    assert_eq!(b.get(reg::LVT0), lvt::MASKED);
    assert_eq!(b.mmio_base(), Some(0xfee0_0000));
    let mut c = Lapic::new(1, false);
    c.cpuid_x2apic = true;
    c.set_version();
    assert_eq!(c.get(reg::LVR), 0x0105_0014);
}

/// The PIC's ExtINT is taken through LINT0 in ExtINT mode, unmasked, or
/// with the APIC globally disabled (KVM's kvm_apic_accept_pic_intr).
#[test]
fn extint_through_lint0() {
    let mut a = enabled(0);
    assert!(a.accept_pic_intr(), "BSP reset: LVT0 ExtINT unmasked");
    a.write(reg::LVT0, lvt::MASKED | 0x700, &clk(0)).unwrap();
    assert!(!a.accept_pic_intr());
    a.write(reg::LVT0, 0x400, &clk(0)).unwrap(); // NMI mode
    assert!(!a.accept_pic_intr());
    a.write(reg::LVT0, 0x700, &clk(0)).unwrap();
    assert!(a.accept_pic_intr());
    let mut ap = Lapic::new(1, false);
    assert!(!ap.accept_pic_intr(), "AP reset: LVT0 masked");
    ap.base &= !apic_base::AE;
    assert!(ap.accept_pic_intr(), "APIC disabled: INTR reaches the processor");
}

#[test]
fn fixed_interrupts_priority_and_eoi() {
    let mut a = enabled(0);
    assert!(a.accept_fixed(0x31, false, true));
    assert!(a.accept_fixed(0x52, false, true));
    assert_eq!(a.pending_vector(), Some(0x52));
    a.acknowledge(0x52);
    assert_eq!(a.get(reg::PROCPRI), 0x50);
    // 0x31 is below the in-service class: held.
    assert_eq!(a.pending_vector(), None);
    assert!(a.accept_fixed(0x61, false, true));
    assert_eq!(a.pending_vector(), Some(0x61));
    a.acknowledge(0x61);
    assert_eq!(a.eoi(), Some(0x61));
    assert_eq!(a.eoi(), Some(0x52));
    assert_eq!(a.get(reg::PROCPRI), 0);
    assert_eq!(a.pending_vector(), Some(0x31));
    // TPR masks classes at and below it.
    a.set_tpr(0x30);
    assert_eq!(a.pending_vector(), None);
    assert_eq!(a.get(reg::PROCPRI), 0x30);
    a.set_tpr(0x2f);
    assert_eq!(a.pending_vector(), Some(0x31));
    assert_eq!(a.eoi(), None);
    // Level-triggered: TMR; a de-assert is ignored.
    assert!(a.accept_fixed(0x40, true, true));
    assert!(a.tmr(0x40));
    assert!(!a.accept_fixed(0x41, true, false));
    assert!(!a.irr(0x41));
}

#[test]
fn sw_disabled_drops_and_masks() {
    let mut a = Lapic::new(0, true);
    assert!(!a.accept_fixed(0x40, false, true));
    let mut a = enabled(0);
    a.write(reg::LVTT, 0x20, &clk(0)).unwrap();
    assert_eq!(a.get(reg::LVTT), 0x20);
    a.write(reg::SPIV, 0xff, &clk(0)).unwrap();
    assert_eq!(a.get(reg::LVTT), 0x20 | lvt::MASKED);
    // Writes while disabled stay masked.
    a.write(reg::LVT1, 0x400, &clk(0)).unwrap();
    assert_eq!(a.get(reg::LVT1), 0x400 | lvt::MASKED);
}

#[test]
fn x2apic_msrs_and_modes() {
    let mut a = enabled(5);
    let c = clk(0);
    // Not in x2APIC mode: every x2APIC MSR #GPs.
    assert!(a.msr_read(0x802, &c).is_none());
    // EXTD without the CPUID bit is reserved.
    assert!(a.set_base(0xfee0_0c00, false, 48).is_err());
    a.cpuid_x2apic = true;
    a.set_version();
    assert!(a.set_base(0xfee0_0400, false, 48).is_err(), "EXTD without AE");
    assert!(a.set_base(0xfee0_0c01, false, 48).is_err(), "reserved bit 0");
    assert!(a.set_base(1 << 48 | 0xc00, false, 48).is_err(), "above MAXPHYADDR");
    a.set_base(0xfee0_0c00, false, 48).unwrap();
    assert!(a.x2apic());
    assert_eq!(a.mmio_base(), None);
    assert_eq!(a.msr_read(0x802, &c), Some(5));
    assert_eq!(a.msr_read(0x80d, &c), Some(x2apic_ldr(5) as u64));
    assert!(a.msr_read(0x80b, &c).is_none(), "EOI is write-only");
    assert!(a.msr_read(0x83f, &c).is_none(), "SELF_IPI is write-only");
    assert!(a.msr_read(0x80e, &c).is_none(), "no DFR in x2APIC mode");
    assert!(a.msr_read(0x831, &c).is_none(), "no ICR2 in x2APIC mode");
    assert!(a.msr_write(0x802, 7, &c).is_err(), "ID is read-only");
    assert!(a.msr_write(0x80d, 7, &c).is_err(), "LDR is read-only");
    assert!(a.msr_write(0x808, 1 << 32, &c).is_err(), "high bits");
    assert!(a.msr_write(0x828, 1, &c).is_err(), "ESR write of non-zero");
    assert!(a.msr_write(0x828, 0, &c).is_ok());
    assert!(a.msr_write(0x83f, 0x100, &c).is_err(), "SELF_IPI reserved bits");
    let e = a.msr_write(0x83f, 0x44, &c).unwrap();
    assert_eq!(e.ipi.unwrap().shorthand, Shorthand::SelfOnly);
    assert!(a.msr_write(0x830, 1 << 13, &c).is_err(), "ICR reserved bit 13");
    let e = a.msr_write(0x830, (9u64 << 32) | 0x4830, &c).unwrap();
    let i = e.ipi.unwrap();
    assert_eq!((i.dest, i.vector, i.logical), (9, 0x30, true));
    assert_eq!(a.msr_read(0x830, &c), Some((9u64 << 32) | 0x4830));
    a.msr_write(0x808, 0x20, &c).unwrap();
    assert_eq!(a.msr_read(0x80a, &c), Some(0x20));
    // x2APIC -> xAPIC is refused from the guest, allowed from the host.
    assert!(a.set_base(0xfee0_0800, false, 48).is_err());
    a.set_base(0, false, 48).unwrap();
    assert!(!a.hw_enabled());
    assert!(a.set_base(0xfee0_0c00, false, 48).is_err(), "disabled -> x2APIC");
    a.set_base(0xfee0_0800, false, 48).unwrap();
    assert_eq!(a.get(reg::ID), 5 << 24);
    a.set_base(0xfee0_0c00, false, 48).unwrap();
    a.set_base(0xfee0_0800, true, 48).unwrap();
    assert_eq!(a.get(reg::ID), 5 << 24);
}

#[test]
fn mmio_access_rules() {
    let mut a = enabled(2);
    let c = clk(0);
    assert_eq!(a.mmio_read(reg::ID, 4, &c), 2 << 24);
    assert_eq!(a.mmio_read(reg::ID + 3, 1, &c), 2);
    assert_eq!(a.mmio_read(reg::ID + 2, 4, &c), 0, "crosses the register");
    assert_eq!(a.mmio_read(reg::EOI, 4, &c), 0, "write-only");
    // Unaligned or short writes are ignored.
    a.mmio_write(reg::TASKPRI + 1, 4, 0x50, &c);
    a.mmio_write(reg::TASKPRI, 2, 0x50, &c);
    assert_eq!(a.get(reg::TASKPRI), 0);
    a.mmio_write(reg::TASKPRI, 4, 0x1_50, &c);
    assert_eq!(a.get(reg::TASKPRI), 0x50);
    a.mmio_write(reg::LDR, 4, 0x0312_3456, &c);
    assert_eq!(a.get(reg::LDR), 0x0300_0000);
    a.mmio_write(reg::DFR, 4, 0, &c);
    assert_eq!(a.get(reg::DFR), 0x0fff_ffff);
}

#[test]
fn state_round_trip() {
    let mut a = enabled(1);
    a.write(reg::LVTT, 0x40 | lvt::TIMER_PERIODIC, &clk(0)).unwrap();
    a.write(reg::TMICT, 1_000_000, &clk(0)).unwrap();
    a.accept_fixed(0x55, false, true);
    let s = a.get_state(&clk(250_000), false);
    let mut b = Lapic::new(1, false);
    b.set_state(&s, &clk(300_000), false).unwrap();
    assert!(b.irr(0x55));
    assert_eq!(b.get(reg::TMICT), 1_000_000);
    // Restarted from TMICT at the set.
    assert_eq!(b.timer_expiry(), Some(300_000 + 2_000_000));
    let tmcct = u32::from_le_bytes([s[0x390], s[0x391], s[0x392], s[0x393]]);
    assert_eq!(tmcct, (2_000_000 - 250_000) / 2);
    // x2APIC: ID shifted without the x2APIC API format, refused if wrong with it.
    let mut x = enabled(3);
    x.cpuid_x2apic = true;
    x.set_base(0xfee0_0c00, false, 48).unwrap();
    let s = x.get_state(&clk(0), false);
    assert_eq!(u32::from_le_bytes([s[0x20], s[0x21], s[0x22], s[0x23]]), 3 << 24);
    let s2 = x.get_state(&clk(0), true);
    assert_eq!(u32::from_le_bytes([s2[0x20], s2[0x21], s2[0x22], s2[0x23]]), 3);
    assert!(x.set_state(&s, &clk(0), true).is_err());
    x.set_state(&s, &clk(0), false).unwrap();
    assert_eq!(x.get(reg::ID), 3);
    x.set_state(&s2, &clk(0), true).unwrap();
}

/// `pending_vector`'s hint never outlives a register change: after every
/// step of a pseudo-random sequence (requests, INTA, EOI, TPR, a register
/// page loaded, APIC_BASE cleared and set) it equals the vector computed
/// from IRR and PPR afresh.
#[test]
fn pending_hint_follows_every_change() {
    let mut a = enabled(0);
    let fresh = |a: &Lapic| {
        if !a.hw_enabled() {
            return None;
        }
        let ppr = a.get(reg::PROCPRI);
        a.highest_irr().filter(|v| u32::from(*v) & 0xf0 > ppr & 0xf0)
    };
    let mut x: u32 = 0x1234_5678;
    for step in 0..4000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let v = (0x20 + (x >> 8) % 0xd0) as u8;
        match x % 8 {
            0 | 1 => {
                a.accept_fixed(v, false, true);
            }
            2 => {
                if let Some(p) = a.pending_vector() {
                    a.acknowledge(p);
                }
            }
            3 => {
                a.eoi();
            }
            4 => a.set_tpr((x >> 4) & 0xff),
            5 => {
                let page = a.get_state(&clk(0), false);
                let mut other = enabled(0);
                other.accept_fixed(v, false, true);
                let _ = other.pending_vector();
                other.set_state(&page, &clk(0), false).unwrap();
                a = other;
            }
            6 => a.base &= !apic_base::AE,
            _ => a.base |= apic_base::AE,
        }
        assert_eq!(a.pending_vector(), fresh(&a), "step {step}");
        assert_eq!(a.pending_vector(), fresh(&a), "step {step}, asked twice");
    }
}
