// SPDX-License-Identifier: GPL-2.0
//! The local APIC register model (AMD APM vol. 2 chapter 16): the register
//! page as KVM's `struct kvm_lapic_state` holds it (`KVM_GET/SET_LAPIC`),
//! IRR/ISR/TMR, the processor priority, EOI, ICR decoding into an IPI
//! request, destination matching (physical, flat and cluster logical, x2APIC
//! cluster), the timer's arithmetic (divide configuration, current count,
//! one-shot, periodic and TSC-deadline modes) from a time source passed in,
//! x2APIC MSR access rules and IA32_APIC_BASE mode transitions.
//!
//! KVM (arch/x86/kvm/lapic.c of Linux 7.2) is the behaviour reference for
//! what the APM leaves open (how bad writes are ignored, which registers
//! read as what); nothing here knows about the kernel or other vCPUs: the
//! module delivers the IPI requests this model produces.
//!
//! The register file and its access rules are here; interrupt requests
//! and destinations in `irq`, the timer in `timer` (both re-exported).

mod irq;
mod timer;

pub use irq::{x2apic_ldr, DeliveryMode, DestInfo, Irq, MsiRoute, Shorthand, MAX_IRQ_ROUTES, MSI_VALID_DEVID, ROUTING_ENTRY_SIZE, ROUTING_MSI};
pub use timer::{Clock, Timer, BUS_CYCLE_NS, MIN_PERIOD_NS};

use crate::msr::apic_base;

/// Size of `struct kvm_lapic_state` (`KVM_APIC_REG_SIZE`).
pub const REG_SIZE: usize = 0x400;

/// Register offsets (APM 16.3.2 table 16-2; the x2APIC MSR is
/// `0x800 + offset / 16`, APM 16.11).
pub mod reg {
    /// The `APIC_ID` register.
    pub const ID: u32 = 0x20;
    /// The `APIC_LVR` register.
    pub const LVR: u32 = 0x30;
    /// The `APIC_TASKPRI` register.
    pub const TASKPRI: u32 = 0x80;
    /// The `APIC_ARBPRI` register.
    pub const ARBPRI: u32 = 0x90;
    /// The `APIC_PROCPRI` register.
    pub const PROCPRI: u32 = 0xa0;
    /// The `APIC_EOI` register.
    pub const EOI: u32 = 0xb0;
    /// The `APIC_LDR` register.
    pub const LDR: u32 = 0xd0;
    /// The `APIC_DFR` register.
    pub const DFR: u32 = 0xe0;
    /// The `APIC_SPIV` register.
    pub const SPIV: u32 = 0xf0;
    /// The `APIC_ISR` register.
    pub const ISR: u32 = 0x100;
    /// The `APIC_TMR` register.
    pub const TMR: u32 = 0x180;
    /// The `APIC_IRR` register.
    pub const IRR: u32 = 0x200;
    /// The `APIC_ESR` register.
    pub const ESR: u32 = 0x280;
    /// The `APIC_LVTCMCI` register.
    pub const LVTCMCI: u32 = 0x2f0;
    /// The `APIC_ICR` register.
    pub const ICR: u32 = 0x300;
    /// The `APIC_ICR2` register.
    pub const ICR2: u32 = 0x310;
    /// The `APIC_LVTT` register.
    pub const LVTT: u32 = 0x320;
    /// The `APIC_LVTTHMR` register.
    pub const LVTTHMR: u32 = 0x330;
    /// The `APIC_LVTPC` register.
    pub const LVTPC: u32 = 0x340;
    /// The `APIC_LVT0` register.
    pub const LVT0: u32 = 0x350;
    /// The `APIC_LVT1` register.
    pub const LVT1: u32 = 0x360;
    /// The `APIC_LVTERR` register.
    pub const LVTERR: u32 = 0x370;
    /// The `APIC_TMICT` register.
    pub const TMICT: u32 = 0x380;
    /// The `APIC_TMCCT` register.
    pub const TMCCT: u32 = 0x390;
    /// The `APIC_TDCR` register.
    pub const TDCR: u32 = 0x3e0;
    /// The `APIC_SELF_IPI` register.
    pub const SELF_IPI: u32 = 0x3f0;
}

/// First x2APIC MSR (APM 16.11).
pub const X2APIC_MSR_FIRST: u32 = 0x800;
/// Last x2APIC MSR.
pub const X2APIC_MSR_LAST: u32 = 0x8ff;
/// IA32_TSC_DEADLINE.
pub const MSR_TSC_DEADLINE: u32 = 0x6e0;

/// Version register: version 0x14, max LVT entry 5 (six LVTs: timer,
/// thermal, performance, LINT0, LINT1, error), as KVM without CMCI.
pub const VERSION: u32 = 0x14 | (5 << 16);
/// LVR bit 24: EOI broadcast suppression supported (KVM sets it with x2APIC
/// in the CPUID and no in-kernel I/O APIC, i.e. with the split irqchip).
pub const LVR_DIRECTED_EOI: u32 = 1 << 24;

/// LVT bits (APM 16.4.1).
pub mod lvt {
    /// `VECTOR`.
    pub const VECTOR: u32 = 0xff;
    /// `DELIVERY_MODE`.
    pub const DELIVERY_MODE: u32 = 7 << 8;
    /// `PENDING`.
    pub const PENDING: u32 = 1 << 12;
    /// `POLARITY`.
    pub const POLARITY: u32 = 1 << 13;
    /// `REMOTE_IRR`.
    pub const REMOTE_IRR: u32 = 1 << 14;
    /// `LEVEL`.
    pub const LEVEL: u32 = 1 << 15;
    /// `MASKED`.
    pub const MASKED: u32 = 1 << 16;
    /// Timer mode (bits 18:17): one-shot 0, periodic 1, TSC-deadline 2.
    pub const TIMER_MODE_SHIFT: u32 = 17;
    /// `TIMER_PERIODIC`.
    pub const TIMER_PERIODIC: u32 = 1 << 17;
    /// `TIMER_TSCDEADLINE`.
    pub const TIMER_TSCDEADLINE: u32 = 2 << 17;
}

/// SPIV bits.
pub mod spiv {
    /// `ENABLED`.
    pub const ENABLED: u32 = 1 << 8;
    /// `DIRECTED_EOI`.
    pub const DIRECTED_EOI: u32 = 1 << 12;
}

/// The writable bits of each LVT in register order LVTT, LVTTHMR, LVTPC,
/// LVT0, LVT1, LVTERR (KVM's `apic_lvt_mask`, timer-mode bits apart).
const LVT_MASKS: [u32; 6] = [
    lvt::VECTOR | lvt::MASKED,                                                      // timer (+ mode)
    lvt::VECTOR | lvt::DELIVERY_MODE | lvt::MASKED,                                 // thermal
    lvt::VECTOR | lvt::DELIVERY_MODE | lvt::MASKED,                                 // performance
    lvt::VECTOR | lvt::DELIVERY_MODE | lvt::MASKED | lvt::POLARITY | lvt::LEVEL,    // LINT0
    lvt::VECTOR | lvt::DELIVERY_MODE | lvt::MASKED | lvt::POLARITY | lvt::LEVEL,    // LINT1
    lvt::VECTOR | lvt::MASKED,                                                      // error
];

/// A write the APIC refuses: #GP for an MSR write (APM 16.11), `EINVAL`
/// for `KVM_SET_LAPIC`; xAPIC MMIO writes ignore it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused;

/// Effects of a register write the caller carries out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteEffect {
    /// An IPI to deliver.
    pub ipi: Option<Irq>,
    /// The vector an EOI retired (None: EOI with nothing in service).
    pub eoi: Option<u8>,
    /// The timer was (re)programmed or stopped: rearm the host timer at
    /// [`Lapic::timer_expiry`].
    pub timer: bool,
    /// IDs, LDR, DFR, enables changed: publish [`Lapic::dest_info`].
    pub dest: bool,
}

/// One local APIC.
#[derive(Clone, Debug)]
pub struct Lapic {
    /// The register page (`struct kvm_lapic_state`): each register 32 bits
    /// at its offset, little-endian; written only through `set` (and
    /// `set_state`), which forget `pending_hint`.
    regs: [u8; REG_SIZE],
    /// What [`Lapic::pending_vector`] found last while the registers have
    /// not changed since (KVM keeps an `irr_pending` hint for the same
    /// reason): most entries find the same answer, and the IRR scan cost
    /// every exit about 50 instructions (`make bench BENCH_PROFILE=1`).
    /// 0 unknown, 1 none, `0x100 | v` vector `v`.
    pending_hint: core::cell::Cell<u16>,
    /// IA32_APIC_BASE.
    pub base: u64,
    /// The vCPU id (the x2APIC ID and the xAPIC ID at RESET).
    pub vcpu_id: u32,
    /// The timer's running state.
    pub timer: Timer,
    /// The guest's CPUID offers x2APIC / the TSC-deadline timer.
    pub cpuid_x2apic: bool,
    /// The guest's CPUID offers the TSC-deadline timer.
    pub cpuid_tsc_deadline: bool,
    /// A periodic timer asked for a shorter period than allowed (the first
    /// time is logged by the caller).
    pub period_clamped: bool,
    /// The VM advertises EOI broadcast suppression (KVM's
    /// `kvm_lapic_advertise_suppress_eoi_broadcast`: yes with the split
    /// irqchip unless KVM_X2APIC_DISABLE_SUPPRESS_EOI_BROADCAST).
    pub advertise_directed_eoi: bool,
}

/// Which mode IA32_APIC_BASE selects (APM 16.11.1 table 16-6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// AE clear: the APIC is off.
    Disabled,
    /// EXTD without AE: refused.
    Invalid,
    /// xAPIC mode (MMIO page).
    XApic,
    /// x2APIC mode (MSRs).
    X2Apic,
}

/// The mode of an IA32_APIC_BASE value.
pub const fn mode_of(base: u64) -> Mode {
    match (base & apic_base::AE != 0, base & apic_base::EXTD != 0) {
        (false, false) => Mode::Disabled,
        (false, true) => Mode::Invalid,
        (true, false) => Mode::XApic,
        (true, true) => Mode::X2Apic,
    }
}

impl Lapic {
    /// An APIC after RESET of vCPU `vcpu_id` (the bootstrap processor when
    /// `bsp`), as KVM's `kvm_lapic_reset` leaves it.
    pub fn new(vcpu_id: u32, bsp: bool) -> Self {
        let mut a = Self {
            regs: [0; REG_SIZE],
            pending_hint: core::cell::Cell::new(0),
            base: apic_base::reset_value(bsp),
            vcpu_id,
            timer: Timer::default(),
            cpuid_x2apic: false,
            cpuid_tsc_deadline: false,
            period_clamped: false,
            advertise_directed_eoi: true,
        };
        a.reset(false, bsp);
        a
    }

    /// RESET (`init` false) or INIT (`init` true) of the APIC registers
    /// (APM 16.3.5: INIT leaves the ID, the base and the mode alone).
    pub fn reset(&mut self, init: bool, bsp: bool) {
        if !init {
            self.base = apic_base::reset_value(bsp);
            self.set(reg::ID, self.vcpu_id << 24);
        }
        self.set_version();
        for r in [reg::LVTT, reg::LVTTHMR, reg::LVTPC, reg::LVT0, reg::LVT1, reg::LVTERR] {
            self.set(r, lvt::MASKED);
        }
        if bsp && !init {
            // KVM_X86_QUIRK_LINT0_REENABLED: LINT0 in ExtINT mode on the BSP.
            self.set(reg::LVT0, 7 << 8);
        }
        self.set(reg::DFR, 0xffff_ffff);
        self.set(reg::SPIV, 0xff);
        self.set(reg::TASKPRI, 0);
        if !self.x2apic() {
            self.set(reg::LDR, 0);
        }
        self.set(reg::ESR, 0);
        self.set(reg::ICR, 0);
        self.set(reg::ICR2, 0);
        self.set(reg::TDCR, 0);
        self.set(reg::TMICT, 0);
        for i in 0..8 {
            self.set(reg::IRR + 0x10 * i, 0);
            self.set(reg::ISR + 0x10 * i, 0);
            self.set(reg::TMR + 0x10 * i, 0);
        }
        self.timer = Timer::default();
        self.update_ppr();
    }

    /// The version register for the current CPUID.
    pub fn set_version(&mut self) {
        self.set(reg::LVR, VERSION | if self.cpuid_x2apic && self.advertise_directed_eoi { LVR_DIRECTED_EOI } else { 0 });
    }

    /// A 32-bit register.
    pub fn get(&self, off: u32) -> u32 {
        let o = off as usize & (REG_SIZE - 4);
        u32::from_le_bytes([self.regs[o], self.regs[o + 1], self.regs[o + 2], self.regs[o + 3]])
    }
    fn set(&mut self, off: u32, v: u32) {
        let o = off as usize & (REG_SIZE - 4);
        self.regs[o..o + 4].copy_from_slice(&v.to_le_bytes());
        self.pending_hint.set(0);
    }

    /// IA32_APIC_BASE.AE.
    pub const fn hw_enabled(&self) -> bool {
        self.base & apic_base::AE != 0
    }
    /// SPIV.APIC software enable.
    pub fn sw_enabled(&self) -> bool {
        self.get(reg::SPIV) & spiv::ENABLED != 0
    }
    /// An ExtINT from the PIC is acknowledged (KVM's
    /// `kvm_apic_accept_pic_intr`): with the APIC globally disabled the
    /// PIC's INTR reaches the processor directly; otherwise only through an
    /// unmasked LINT0 in ExtINT mode (APM 16.4.1; the reset LVT0 of the BSP
    /// is ExtINT, unmasked).
    pub fn accept_pic_intr(&self) -> bool {
        let lvt0 = self.get(reg::LVT0);
        !self.hw_enabled() || (lvt0 & lvt::MASKED == 0 && lvt0 & lvt::DELIVERY_MODE == 7 << 8)
    }
    /// Both enables: fixed interrupts are accepted and delivered.
    pub fn enabled(&self) -> bool {
        self.hw_enabled() && self.sw_enabled()
    }
    /// x2APIC mode.
    pub const fn x2apic(&self) -> bool {
        matches!(mode_of(self.base), Mode::X2Apic)
    }
    /// The xAPIC MMIO page is decoded (enabled in xAPIC mode); its address.
    pub const fn mmio_base(&self) -> Option<u64> {
        match mode_of(self.base) {
            Mode::XApic => Some(self.base & 0x000f_ffff_ffff_f000),
            _ => None,
        }
    }

    /// The APIC ID the destination logic compares.
    pub fn apic_id(&self) -> u32 {
        if self.x2apic() {
            self.get(reg::ID)
        } else {
            self.get(reg::ID) >> 24
        }
    }

    /// The addressing state other vCPUs match destinations against.
    pub fn dest_info(&self) -> DestInfo {
        DestInfo { hw_enabled: self.hw_enabled(), sw_enabled: self.sw_enabled(), x2apic: self.x2apic(), id: self.apic_id(), ldr: self.get(reg::LDR), dfr: self.get(reg::DFR) }
    }

    // ------------------------------------------------ IRR / ISR / TMR

    fn test_bit(&self, base: u32, v: u8) -> bool {
        self.get(base + 0x10 * (u32::from(v) >> 5)) & (1 << (v & 31)) != 0
    }
    fn put_bit(&mut self, base: u32, v: u8, on: bool) {
        let r = base + 0x10 * (u32::from(v) >> 5);
        let x = self.get(r);
        self.set(r, if on { x | 1 << (v & 31) } else { x & !(1 << (v & 31)) });
    }
    fn highest(&self, base: u32) -> Option<u8> {
        // Usually nothing is set: one test of the eight words first
        // (unrolled; `make bench BENCH_PROFILE=1` showed the loop below at
        // about 90 instructions per entry for an empty IRR).
        let any = (0..8u32).fold(0, |acc, i| acc | self.get(base.wrapping_add(0x10 * i)));
        if any == 0 {
            return None;
        }
        for i in (0..8u32).rev() {
            let x = self.get(base + 0x10 * i);
            if x != 0 {
                return Some((i * 32 + 31 - x.leading_zeros()) as u8);
            }
        }
        None
    }
    /// Whether `v` is requested.
    pub fn irr(&self, v: u8) -> bool {
        self.test_bit(reg::IRR, v)
    }
    /// Whether `v` is in service.
    pub fn isr(&self, v: u8) -> bool {
        self.test_bit(reg::ISR, v)
    }
    /// Whether `v` was accepted level-triggered.
    pub fn tmr(&self, v: u8) -> bool {
        self.test_bit(reg::TMR, v)
    }
    /// Highest requested vector.
    pub fn highest_irr(&self) -> Option<u8> {
        self.highest(reg::IRR)
    }
    /// Highest vector in service.
    pub fn highest_isr(&self) -> Option<u8> {
        self.highest(reg::ISR)
    }

    /// Accepts a fixed (or lowest-priority) interrupt: sets IRR and the
    /// trigger mode in TMR (APM 16.6.2). Dropped while the APIC is
    /// disabled, and a level-triggered de-assert does nothing (KVM's
    /// `__apic_accept_irq`). Returns whether it was accepted.
    pub fn accept_fixed(&mut self, v: u8, trigger_level: bool, level: bool) -> bool {
        if (trigger_level && !level) || !self.enabled() {
            return false;
        }
        self.put_bit(reg::TMR, v, trigger_level);
        self.put_bit(reg::IRR, v, true);
        true
    }

    /// Recomputes PPR from TPR and the highest vector in service (APM
    /// 16.6.4: the higher of TPR and ISRV's priority class).
    pub fn update_ppr(&mut self) -> u32 {
        let tpr = self.get(reg::TASKPRI) & 0xff;
        let isrv = u32::from(self.highest_isr().unwrap_or(0));
        let ppr = if (tpr & 0xf0) >= (isrv & 0xf0) { tpr } else { isrv & 0xf0 };
        self.set(reg::PROCPRI, ppr);
        ppr
    }

    /// The vector the APIC presents to the processor, if any: the highest
    /// requested one whose priority class is above PPR's (APM 16.6.4).
    pub fn pending_vector(&self) -> Option<u8> {
        if !self.hw_enabled() {
            return None;
        }
        match self.pending_hint.get() {
            1 => return None,
            h if h & 0x100 != 0 => return Some(h as u8),
            _ => {}
        }
        let ppr = self.get(reg::PROCPRI);
        let p = self.highest_irr().filter(|v| u32::from(*v) & 0xf0 > ppr & 0xf0);
        self.pending_hint.set(p.map_or(1, |v| 0x100 | u16::from(v)));
        p
    }

    /// The processor takes vector `v` (INTA): IRR -> ISR, PPR raised.
    pub fn acknowledge(&mut self, v: u8) {
        self.put_bit(reg::IRR, v, false);
        self.put_bit(reg::ISR, v, true);
        self.update_ppr();
    }

    /// TPR written (MMIO, x2APIC MSR, CR8 or V_TPR): bits 7:0 kept.
    pub fn set_tpr(&mut self, tpr: u32) {
        self.set(reg::TASKPRI, tpr & 0xff);
        self.update_ppr();
    }

    /// EOI: retires the highest vector in service (APM 16.6.3).
    pub fn eoi(&mut self) -> Option<u8> {
        let v = self.highest_isr()?;
        self.put_bit(reg::ISR, v, false);
        self.update_ppr();
        Some(v)
    }

    // ------------------------------------------------ register access

    /// Whether register `off` reads in the current mode (KVM's readable
    /// set: write-only EOI and SELF_IPI, reserved offsets, and in x2APIC
    /// mode ARBPRI, DFR and ICR2 do not).
    pub fn readable(&self, off: u32) -> bool {
        if off > 0x3f0 || off & 0xf != 0 {
            return false;
        }
        let ok = matches!(
            off,
            reg::ID | reg::LVR | reg::TASKPRI | reg::PROCPRI | reg::LDR | reg::SPIV | reg::ESR | reg::ICR
                | reg::LVTT | reg::LVTTHMR | reg::LVTPC | reg::LVT0 | reg::LVT1 | reg::LVTERR
                | reg::TMICT | reg::TMCCT | reg::TDCR
        ) || (0x100..0x280).contains(&off);
        ok || (!self.x2apic() && matches!(off, reg::ARBPRI | reg::DFR | reg::ICR2))
    }

    /// Reads register `off` (16-byte aligned, readable).
    pub fn read(&mut self, off: u32, c: &Clock) -> u32 {
        match off {
            reg::ARBPRI => 0,
            reg::TMCCT => self.current_count(c),
            reg::PROCPRI => self.update_ppr(),
            _ => self.get(off),
        }
    }

    /// A guest MMIO read of `len` bytes at page offset `off` (xAPIC mode):
    /// within one 32-bit register; unreadable registers read 0.
    pub fn mmio_read(&mut self, off: u32, len: u32, c: &Clock) -> u64 {
        let align = off & 0xf;
        if align + len > 4 || !self.readable(off & !0xf) {
            return 0;
        }
        let v = self.read(off & !0xf, c) >> (8 * align);
        if len >= 4 {
            u64::from(v)
        } else {
            u64::from(v) & ((1u64 << (8 * len)) - 1)
        }
    }

    /// A guest MMIO write (xAPIC mode): only aligned 32-bit writes reach a
    /// register (APM 16.3.2; KVM ignores the others).
    pub fn mmio_write(&mut self, off: u32, len: u32, val: u32, c: &Clock) -> WriteEffect {
        if len != 4 || off & 0xf != 0 {
            return WriteEffect::default();
        }
        self.write(off & 0xff0, val, c).unwrap_or_default()
    }

    /// Writes register `off` as KVM's `kvm_lapic_reg_write`: `Err(Refused)`
    /// where an x2APIC MSR write would #GP (read-only or absent register
    /// in the current mode); xAPIC callers ignore the error.
    pub fn write(&mut self, off: u32, val: u32, c: &Clock) -> Result<WriteEffect, Refused> {
        let x2 = self.x2apic();
        let mut e = WriteEffect::default();
        match off {
            reg::ID if !x2 => {
                self.set(reg::ID, val & 0xff00_0000);
                e.dest = true;
            }
            reg::TASKPRI => self.set_tpr(val),
            reg::EOI => {
                e.eoi = self.eoi();
            }
            reg::LDR if !x2 => {
                self.set(reg::LDR, val & 0xff00_0000);
                e.dest = true;
            }
            reg::DFR if !x2 => {
                self.set(reg::DFR, val | 0x0fff_ffff);
                e.dest = true;
            }
            reg::SPIV => {
                let mut mask = 0x3ff;
                if self.get(reg::LVR) & LVR_DIRECTED_EOI != 0 {
                    mask |= spiv::DIRECTED_EOI;
                }
                self.set(reg::SPIV, val & mask);
                if val & spiv::ENABLED == 0 {
                    // Software disable masks every LVT (APM 16.4.7).
                    for r in [reg::LVTT, reg::LVTTHMR, reg::LVTPC, reg::LVT0, reg::LVT1, reg::LVTERR] {
                        let x = self.get(r);
                        self.set(r, x | lvt::MASKED);
                    }
                }
                e.dest = true;
            }
            reg::ICR if !x2 => {
                // Delivery is immediate: the status bit (12) always reads 0.
                let v = val & !(1 << 12);
                self.set(reg::ICR, v);
                e.ipi = Some(Irq::from_icr(v, self.get(reg::ICR2), false));
            }
            reg::ICR2 if !x2 => self.set(reg::ICR2, val & 0xff00_0000),
            reg::LVTTHMR | reg::LVTPC | reg::LVT0 | reg::LVT1 | reg::LVTERR => {
                let i = ((off - reg::LVTT) >> 4) as usize;
                let mut v = val;
                if !self.sw_enabled() {
                    v |= lvt::MASKED;
                }
                self.set(off, v & LVT_MASKS[i]);
            }
            reg::LVTT => {
                let old_mode = self.timer_mode();
                let mut v = val;
                if !self.sw_enabled() {
                    v |= lvt::MASKED;
                }
                self.set(reg::LVTT, v & (LVT_MASKS[0] | self.timer_mode_mask()));
                if self.timer_mode() != old_mode {
                    // A mode change stops the timer (KVM's apic_update_lvtt).
                    self.timer = Timer::default();
                    self.set(reg::TMICT, 0);
                    e.timer = true;
                }
            }
            reg::TMICT => {
                if !self.tsc_deadline_mode() {
                    self.set(reg::TMICT, val);
                    self.start_count(c);
                    e.timer = true;
                }
            }
            reg::TDCR => {
                let old = self.divisor();
                self.set(reg::TDCR, val & 0xb);
                let new = self.divisor();
                if old != new && self.timer.period_ns != 0 {
                    if let Some(exp) = self.timer.expiry_ns {
                        // The remaining count keeps counting at the new rate.
                        let left = exp.saturating_sub(c.now_ns);
                        let left = left / old * new;
                        self.timer.period_ns = self.timer.period_ns / old * new;
                        if self.timer_mode() == 1 && self.timer.period_ns < MIN_PERIOD_NS {
                            self.timer.period_ns = MIN_PERIOD_NS;
                        }
                        self.timer.expiry_ns = Some(c.now_ns.saturating_add(left));
                        e.timer = true;
                    }
                }
            }
            reg::ESR => {
                if x2 && val != 0 {
                    return Err(Refused);
                }
                self.set(reg::ESR, 0);
            }
            reg::SELF_IPI if x2 => {
                if val & !0xff != 0 {
                    return Err(Refused);
                }
                e.ipi = Some(Irq { vector: val as u8, mode: DeliveryMode::Fixed, logical: false, level: true, trigger_level: false, shorthand: Shorthand::SelfOnly, dest: 0, ipi: true });
            }
            _ => return Err(Refused),
        }
        Ok(e)
    }

    /// RDMSR of x2APIC MSR `msr`: `None` is #GP (not in x2APIC mode, or the
    /// register is not readable; APM 16.11). ICR reads as 64 bits.
    pub fn msr_read(&mut self, msr: u32, c: &Clock) -> Option<u64> {
        if !self.x2apic() || !(X2APIC_MSR_FIRST..=X2APIC_MSR_LAST).contains(&msr) {
            return None;
        }
        let off = (msr - X2APIC_MSR_FIRST) << 4;
        if off == reg::ICR {
            return Some(u64::from(self.get(reg::ICR)) | (u64::from(self.get(reg::ICR2)) << 32));
        }
        if !self.readable(off) {
            return None;
        }
        Some(u64::from(self.read(off, c)))
    }

    /// WRMSR of x2APIC MSR `msr`: `Err` is #GP (not in x2APIC mode,
    /// read-only or reserved register, bits 63:32 set outside ICR, ICR
    /// reserved bits; APM 16.11, KVM's `kvm_x2apic_msr_write`).
    pub fn msr_write(&mut self, msr: u32, v: u64, c: &Clock) -> Result<WriteEffect, Refused> {
        if !self.x2apic() || !(X2APIC_MSR_FIRST..=X2APIC_MSR_LAST).contains(&msr) {
            return Err(Refused);
        }
        let off = (msr - X2APIC_MSR_FIRST) << 4;
        if off == reg::ICR {
            // Reserved: bits 31:20, 17:16 and 13 (KVM's X2APIC_ICR_RESERVED_BITS).
            if v & 0xfff3_2000 != 0 {
                return Err(Refused);
            }
            let low = (v as u32) & !(1 << 12);
            let high = (v >> 32) as u32;
            self.set(reg::ICR, low);
            self.set(reg::ICR2, high);
            return Ok(WriteEffect { ipi: Some(Irq::from_icr(low, high, true)), ..Default::default() });
        }
        if v >> 32 != 0 {
            return Err(Refused);
        }
        self.write(off, v as u32, c)
    }

    /// IA32_APIC_BASE write (KVM's `kvm_apic_set_base`): `Err` for
    /// reserved bits (above MAXPHYADDR `maxphy`, 7:0, 9, EXTD without
    /// x2APIC in the CPUID), the invalid mode (EXTD without AE), and from
    /// the guest the transitions APM 16.11.1 forbids (x2APIC -> xAPIC,
    /// disabled -> x2APIC). Entering x2APIC mode loads the x2APIC ID and
    /// its LDR; re-enabling resets the xAPIC ID to the vCPU id.
    pub fn set_base(&mut self, v: u64, host: bool, maxphy: u32) -> Result<WriteEffect, Refused> {
        if v == self.base {
            return Ok(WriteEffect::default());
        }
        self.check_base(v, host, maxphy)?;
        let changed = self.base ^ v;
        self.base = v;
        if changed & apic_base::AE != 0 && v & apic_base::AE != 0 {
            self.set(reg::ID, self.vcpu_id << 24);
        }
        if changed & apic_base::EXTD != 0 {
            if v & apic_base::EXTD != 0 {
                self.set(reg::ID, self.vcpu_id);
                self.set(reg::LDR, x2apic_ldr(self.vcpu_id));
            } else if v & apic_base::AE != 0 {
                self.set(reg::ID, self.vcpu_id << 24);
            }
        }
        Ok(WriteEffect { dest: true, ..Default::default() })
    }

    /// Whether [`Self::set_base`] accepts `v` (its refusals, nothing
    /// changed): reserved bits (above MAXPHYADDR `maxphy`, 7:0, 9, EXTD
    /// without x2APIC in the CPUID), the invalid mode (EXTD without AE),
    /// and from the guest the x2APIC-to-xAPIC and disabled-to-x2APIC
    /// transitions.
    pub fn check_base(&self, v: u64, host: bool, maxphy: u32) -> Result<(), Refused> {
        if v == self.base {
            return Ok(());
        }
        let mut reserved = 0x2ffu64;
        if maxphy < 64 {
            reserved |= !((1u64 << maxphy) - 1);
        }
        if !self.cpuid_x2apic {
            reserved |= apic_base::EXTD;
        }
        let (old, new) = (mode_of(self.base), mode_of(v));
        if v & reserved != 0 || new == Mode::Invalid {
            return Err(Refused);
        }
        if !host && ((old == Mode::X2Apic && new == Mode::XApic) || (old == Mode::Disabled && new == Mode::X2Apic)) {
            return Err(Refused);
        }
        Ok(())
    }

    /// `KVM_GET_LAPIC`: the register page with TMCCT's current value and,
    /// in x2APIC mode without KVM_CAP_X2APIC_API's format, the ID shifted
    /// into bits 31:24 as the xAPIC layout has it (KVM's
    /// `kvm_apic_state_fixup`).
    pub fn get_state(&self, c: &Clock, x2apic_format: bool) -> [u8; REG_SIZE] {
        let mut s = self.clone();
        let cc = self.current_count(c);
        s.set(reg::TMCCT, cc);
        if self.x2apic() && !x2apic_format {
            s.set(reg::ID, self.vcpu_id << 24);
        }
        s.regs
    }

    /// `KVM_SET_LAPIC`: loads a register page (`Err`: EINVAL, nothing
    /// changed — an x2APIC ID other than the vCPU's with the x2APIC API
    /// format). In x2APIC mode the ID and LDR are the vCPU's whatever the
    /// page says; the timer restarts from TMICT, TMCCT reads as computed.
    pub fn set_state(&mut self, page: &[u8; REG_SIZE], c: &Clock, x2apic_format: bool) -> Result<(), Refused> {
        let mut n = self.clone();
        n.regs = *page;
        n.pending_hint.set(0);
        if self.x2apic() {
            if x2apic_format && n.get(reg::ID) != self.vcpu_id {
                return Err(Refused);
            }
            n.set(reg::ID, self.vcpu_id);
            n.set(reg::LDR, x2apic_ldr(self.vcpu_id));
        }
        n.set_version();
        n.update_ppr();
        n.timer = Timer::default();
        if !n.tsc_deadline_mode() {
            n.start_count(c);
        }
        n.set(reg::TMCCT, 0);
        *self = n;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
