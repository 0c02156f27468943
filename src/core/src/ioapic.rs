// SPDX-License-Identifier: GPL-2.0
//! The I/O APIC of the full in-kernel irqchip (`KVM_CREATE_IRQCHIP`), with
//! KVM's semantics (arch/x86/kvm/ioapic.c, read for behaviour, written
//! anew): 24 pins at 0xfec00000, IOREGSEL (0x00) and IOWIN (0x10), the
//! ID, version (0x11, 23 as the highest entry) and arbitration registers,
//! the redirection table, fixed / lowest-priority / NMI / INIT / ExtINT
//! delivery through the local APICs, remote IRR for level-triggered pins
//! (set when an APIC accepted the interrupt, cleared by the EOI broadcast
//! of its vector) and a new delivery at that EOI when the line is still
//! high.
//!
//! As KVM's version 0x11 I/O APIC there is no EOI register (offset 0x40
//! reads 0, writes are ignored): EOIs arrive as broadcasts from the local
//! APICs ([`Ioapic::eoi`]). Deviations from KVM: no RTC (GSI 8)
//! coalescing of `KVM_IRQ_LINE_STATUS`, and no 10 ms pause after 10000
//! back-to-back re-deliveries at EOI (KVM's interrupt-storm guard; each
//! re-delivery here still needs a guest EOI, so the host is not held).

use crate::irqchip_state::{IoapicState, IOAPIC_NUM_PINS};
use crate::lapic::{DeliveryMode, Irq, Shorthand};
use crate::pic::line_state;
pub use crate::irq_routing::KVM_IRQFD_RESAMPLE_IRQ_SOURCE_ID;

/// The default base of the MMIO window (`IOAPIC_DEFAULT_BASE_ADDRESS`).
pub const IOAPIC_DEFAULT_BASE: u64 = 0xfec0_0000;
/// The size of the MMIO window (`IOAPIC_MEM_LENGTH`).
pub const IOAPIC_MEM_LENGTH: u64 = 0x100;
/// `IOAPIC_VERSION_ID`.
pub const IOAPIC_VERSION_ID: u32 = 0x11;

/// Redirection entry bits.
pub mod redir {
    /// Vector (bits 7:0).
    pub const VECTOR: u64 = 0xff;
    /// Logical destination mode.
    pub const DEST_LOGICAL: u64 = 1 << 11;
    /// Delivery status (read-only).
    pub const DELIVERY_STATUS: u64 = 1 << 12;
    /// Remote IRR (read-only): a level interrupt awaits its EOI.
    pub const REMOTE_IRR: u64 = 1 << 14;
    /// Level triggered.
    pub const LEVEL: u64 = 1 << 15;
    /// Masked.
    pub const MASK: u64 = 1 << 16;
}

/// What the I/O APIC needs from the rest of the VM.
pub trait IoapicHost {
    /// Delivers `irq` to the local APICs: KVM's
    /// `kvm_irq_delivery_to_apic` (how many accepted it, -1 for none).
    fn deliver(&mut self, irq: &Irq) -> i32;
    /// The EOI of pin `pin`'s vector (KVM's ack notifiers); true when a
    /// resampling irqfd holds the pin, whose level is then lowered here
    /// (KVM's `irqfd_resampler_ack` lowers
    /// `KVM_IRQFD_RESAMPLE_IRQ_SOURCE_ID` before remote IRR clears).
    fn acked(&mut self, pin: u32) -> bool;
    /// A level pin unmasked while requested: true when a resampling irqfd
    /// holds it (KVM's `kvm_notify_irqfd_resampler`, which signals it): the
    /// request is dropped instead of delivered.
    fn resample(&mut self, pin: u32) -> bool;
}

/// The I/O APIC (`struct kvm_ioapic` minus the kernel parts).
#[derive(Clone, Debug)]
pub struct Ioapic {
    /// Base of the MMIO window.
    pub base_address: u64,
    /// IOREGSEL.
    pub ioregsel: u32,
    /// The I/O APIC id (bits 27:24 of register 0).
    pub id: u32,
    /// Pins requested (level pins: high).
    pub irr: u32,
    /// Edge pins delivered since they were raised (left out of the saved
    /// IRR, as KVM).
    pub irr_delivered: u32,
    /// The redirection table.
    pub redirtbl: [u64; IOAPIC_NUM_PINS],
    /// Per pin, a bit per irq source id holding it high.
    pub irq_states: [u64; IOAPIC_NUM_PINS],
}

impl Default for Ioapic {
    fn default() -> Self {
        Self::new()
    }
}

impl Ioapic {
    /// Reset state (`kvm_ioapic_reset`): every entry masked, default base.
    pub fn new() -> Self {
        Self {
            base_address: IOAPIC_DEFAULT_BASE,
            ioregsel: 0,
            id: 0,
            irr: 0,
            irr_delivered: 0,
            redirtbl: [redir::MASK; IOAPIC_NUM_PINS],
            irq_states: [0; IOAPIC_NUM_PINS],
        }
    }

    /// Whether `gpa` is in the MMIO window.
    pub const fn in_range(&self, gpa: u64) -> bool {
        gpa >= self.base_address && gpa < self.base_address.wrapping_add(IOAPIC_MEM_LENGTH)
    }

    /// The interrupt pin `pin`'s entry asks for.
    pub fn entry_irq(e: u64) -> Irq {
        Irq {
            vector: (e & redir::VECTOR) as u8,
            mode: DeliveryMode::from_bits((e >> 8) as u32 & 7),
            logical: e & redir::DEST_LOGICAL != 0,
            level: true,
            trigger_level: e & redir::LEVEL != 0,
            shorthand: Shorthand::None,
            dest: (e >> 56) as u32,
            ipi: false,
        }
    }

    /// `ioapic_service`: delivers pin `pin` unless masked or a level pin
    /// waits for its EOI; -1 when not delivered.
    fn service(&mut self, pin: usize, host: &mut dyn IoapicHost) -> i32 {
        let e = self.redirtbl[pin];
        let level = e & redir::LEVEL != 0;
        if e & redir::MASK != 0 || (level && e & redir::REMOTE_IRR != 0) {
            return -1;
        }
        if !level {
            self.irr_delivered |= 1 << pin;
        }
        let r = host.deliver(&Self::entry_irq(e));
        if r != 0 && level {
            self.redirtbl[pin] |= redir::REMOTE_IRR;
        }
        r
    }

    /// `ioapic_set_irq` with the line's merged level.
    fn set_pin(&mut self, pin: usize, level: bool, host: &mut dyn IoapicHost) -> i32 {
        let mask = 1u32 << pin;
        if !level {
            self.irr &= !mask;
            return 1;
        }
        let edge = self.redirtbl[pin] & redir::LEVEL == 0;
        let old = self.irr;
        self.irr |= mask;
        if edge {
            self.irr_delivered &= !mask;
            if old == self.irr {
                return 0;
            }
        }
        self.service(pin, host)
    }

    /// `kvm_ioapic_set_irq`: pin `pin` of source `source` to `level`; KVM's
    /// return value (-1 not delivered, 0 coalesced, else APICs reached; 1
    /// for a lowered line).
    pub fn set_irq(&mut self, pin: u32, source: u32, level: bool, host: &mut dyn IoapicHost) -> i32 {
        let p = pin as usize;
        if p >= IOAPIC_NUM_PINS {
            return -1;
        }
        let l = line_state(&mut self.irq_states[p], source, level);
        self.set_pin(p, l, host)
    }

    fn read_indirect(&self) -> u32 {
        match self.ioregsel {
            0x01 => (((IOAPIC_NUM_PINS as u32 - 1) & 0xff) << 16) | IOAPIC_VERSION_ID,
            0x00 | 0x02 => (self.id & 0xf) << 24,
            sel => {
                let idx = (sel.wrapping_sub(0x10) >> 1) as usize;
                let e = if sel >= 0x10 && idx < IOAPIC_NUM_PINS { self.redirtbl[idx] } else { u64::MAX };
                if sel & 1 != 0 {
                    (e >> 32) as u32
                } else {
                    e as u32
                }
            }
        }
    }

    /// A guest read of `len` bytes at offset `off` of the window
    /// (`ioapic_mmio_read`): IOREGSEL, IOWIN, 0 elsewhere; the low `len`
    /// bytes of the 32-bit value (8-byte reads give 0, as KVM leaves the
    /// buffer untouched; other sizes too).
    pub fn mmio_read(&self, off: u64, len: u32) -> u64 {
        let v = match off & 0xff {
            0x00 => self.ioregsel,
            0x10 => self.read_indirect(),
            _ => 0,
        };
        match len {
            1 => u64::from(v & 0xff),
            2 => u64::from(v & 0xffff),
            4 => u64::from(v),
            _ => 0,
        }
    }

    /// A guest write of `len` bytes (`ioapic_mmio_write`). Returns true when
    /// the redirection table changed (vCPUs rescan which EOIs go here).
    pub fn mmio_write(&mut self, off: u64, len: u32, val: u64, host: &mut dyn IoapicHost) -> bool {
        let data = match len {
            8 | 4 => val as u32,
            2 => val as u32 & 0xffff,
            1 => val as u32 & 0xff,
            _ => return false,
        };
        match off & 0xff {
            0x00 => {
                self.ioregsel = data & 0xff;
                false
            }
            0x10 => self.write_indirect(data, host),
            _ => false,
        }
    }

    fn write_indirect(&mut self, val: u32, host: &mut dyn IoapicHost) -> bool {
        match self.ioregsel {
            0x00 => {
                self.id = (val >> 24) & 0xf;
                false
            }
            0x01 | 0x02 => false,
            sel => {
                let idx = (sel.wrapping_sub(0x10) >> 1) as usize;
                if sel < 0x10 || idx >= IOAPIC_NUM_PINS {
                    return false;
                }
                let old = self.redirtbl[idx];
                let mut e = if sel & 1 != 0 { (old & 0xffff_ffff) | (u64::from(val) << 32) } else { (old & !0xffff_ffff) | u64::from(val) };
                // Remote IRR and delivery status are read-only.
                let ro = redir::REMOTE_IRR | redir::DELIVERY_STATUS;
                e = (e & !ro) | (old & ro);
                if e & redir::LEVEL == 0 {
                    e &= !redir::REMOTE_IRR;
                }
                self.redirtbl[idx] = e;
                if e & redir::LEVEL != 0 && self.irr & (1 << idx) != 0 && e & (redir::MASK | redir::REMOTE_IRR) == 0 {
                    if host.resample(idx as u32) {
                        self.irr &= !(1 << idx);
                    } else {
                        self.service(idx, host);
                    }
                }
                true
            }
        }
    }

    /// The EOI broadcast of `vector` from a local APIC
    /// (`kvm_ioapic_update_eoi`): every pin with that vector is
    /// acknowledged (`host.acked`); for a level-triggered EOI (the APIC's
    /// TMR bit) not suppressed by the APIC (directed EOI), remote IRR
    /// clears and a pin still high and unmasked is delivered again.
    pub fn eoi(&mut self, vector: u8, level: bool, suppressed: bool, host: &mut dyn IoapicHost) {
        for pin in 0..IOAPIC_NUM_PINS {
            if self.redirtbl[pin] & redir::VECTOR != u64::from(vector) {
                continue;
            }
            if host.acked(pin as u32) {
                let l = line_state(&mut self.irq_states[pin], KVM_IRQFD_RESAMPLE_IRQ_SOURCE_ID, false);
                if !l {
                    self.irr &= !(1 << pin);
                }
            }
            if !level || suppressed {
                continue;
            }
            self.redirtbl[pin] &= !redir::REMOTE_IRR;
            if self.redirtbl[pin] & redir::MASK == 0 && self.irr & (1 << pin) != 0 {
                self.service(pin, host);
            }
        }
    }

    /// Vectors of level-triggered pins (and of pins in `notified`, those
    /// with ack notifiers) whose destination satisfies `matches`: the EOIs
    /// a vCPU must broadcast here (KVM's `kvm_ioapic_scan_entry`).
    pub fn handled_vectors(&self, notified: u32, mut matches: impl FnMut(u32, bool) -> bool) -> [u64; 4] {
        let mut set = [0u64; 4];
        for (pin, e) in self.redirtbl.iter().enumerate() {
            if e & redir::LEVEL != 0 || notified & (1 << pin) != 0 {
                let i = Self::entry_irq(*e);
                if matches(i.dest, i.logical) {
                    set[usize::from(i.vector >> 6)] |= 1 << (i.vector & 63);
                }
            }
        }
        set
    }

    /// `KVM_GET_IRQCHIP` (`kvm_get_ioapic`): delivered edge requests are
    /// left out of IRR.
    pub fn get_state(&self) -> IoapicState {
        IoapicState {
            base_address: self.base_address,
            ioregsel: self.ioregsel,
            id: self.id,
            irr: self.irr & !self.irr_delivered,
            pad: 0,
            redirtbl: self.redirtbl,
        }
    }

    /// `KVM_SET_IRQCHIP` (`kvm_set_ioapic`): the state taken as given, IRR
    /// rebuilt by raising each of its pins again (delivering them).
    pub fn set_state(&mut self, s: &IoapicState, host: &mut dyn IoapicHost) {
        self.base_address = s.base_address;
        self.ioregsel = s.ioregsel;
        self.id = s.id;
        self.redirtbl = s.redirtbl;
        self.irr = 0;
        self.irr_delivered = 0;
        for pin in 0..IOAPIC_NUM_PINS {
            if s.irr & (1 << pin) != 0 {
                self.set_pin(pin, true, host);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Host {
        sent: Vec<Irq>,
        accept: i32,
        acks: Vec<u32>,
        resampler: bool,
    }

    impl IoapicHost for Host {
        fn deliver(&mut self, irq: &Irq) -> i32 {
            self.sent.push(*irq);
            self.accept
        }
        fn acked(&mut self, pin: u32) -> bool {
            self.acks.push(pin);
            self.resampler
        }
        fn resample(&mut self, _pin: u32) -> bool {
            self.resampler
        }
    }

    fn program(io: &mut Ioapic, h: &mut Host, pin: u32, e: u64) {
        io.mmio_write(0, 4, u64::from(0x10 + 2 * pin), h);
        io.mmio_write(0x10, 4, e & 0xffff_ffff, h);
        io.mmio_write(0, 4, u64::from(0x11 + 2 * pin), h);
        io.mmio_write(0x10, 4, e >> 32, h);
    }

    #[test]
    fn registers() {
        let mut io = Ioapic::new();
        let mut h = Host::default();
        io.mmio_write(0, 4, 1, &mut h);
        assert_eq!(io.mmio_read(0x10, 4), 0x0017_0011);
        io.mmio_write(0, 4, 0, &mut h);
        io.mmio_write(0x10, 4, 0x0f00_0000 | 0x5000_0000, &mut h);
        assert_eq!(io.mmio_read(0x10, 4), 0x0f00_0000);
        io.mmio_write(0, 1, 2, &mut h);
        assert_eq!(io.mmio_read(0x10, 4), 0x0f00_0000, "arbitration id reads the id");
        assert_eq!(io.mmio_read(0, 4), 2);
        io.mmio_write(0, 4, 0x10, &mut h);
        assert_eq!(io.mmio_read(0x10, 4), 0x1_0000, "masked at reset");
        io.mmio_write(0, 4, 0x10 + 48, &mut h);
        assert_eq!(io.mmio_read(0x10, 4), 0xffff_ffff, "beyond pin 23");
        assert_eq!(io.mmio_read(0x40, 4), 0);
        assert_eq!(io.mmio_read(0x10, 8), 0);
        assert!(io.in_range(0xfec0_00ff) && !io.in_range(0xfec0_0100));
        // Remote IRR and delivery status cannot be written.
        program(&mut io, &mut h, 3, 0x0100_0000_0000_5031 | redir::REMOTE_IRR);
        assert_eq!(io.redirtbl[3], 0x0100_0000_0000_1031 & !redir::DELIVERY_STATUS);
    }

    #[test]
    fn edge_pin() {
        let mut io = Ioapic::new();
        let mut h = Host { accept: 1, ..Default::default() };
        program(&mut io, &mut h, 4, 0x0200_0000_0000_0041);
        assert_eq!(io.set_irq(4, 0, true, &mut h), 1);
        assert_eq!(h.sent.len(), 1);
        let i = h.sent[0];
        assert_eq!((i.vector, i.dest, i.trigger_level, i.mode), (0x41, 2, false, DeliveryMode::Fixed));
        assert_eq!(io.get_state().irr, 0, "delivered edge left out");
        // Still high: coalesced (and, as KVM, no longer counted delivered).
        assert_eq!(io.set_irq(4, 0, true, &mut h), 0);
        assert_eq!(io.get_state().irr, 1 << 4);
        assert_eq!(io.set_irq(4, 0, false, &mut h), 1);
        assert_eq!(io.set_irq(4, 0, true, &mut h), 1);
        assert_eq!(h.sent.len(), 2);
        // Masked: -1, kept in IRR.
        program(&mut io, &mut h, 5, 0x0200_0000_0001_0042);
        assert_eq!(io.set_irq(5, 0, true, &mut h), -1);
        assert_eq!(io.get_state().irr, 1 << 5);
    }

    #[test]
    fn level_pin_remote_irr_and_eoi() {
        let mut io = Ioapic::new();
        let mut h = Host { accept: 1, ..Default::default() };
        program(&mut io, &mut h, 10, 0x0100_0000_0000_8051);
        assert_eq!(io.set_irq(10, 0, true, &mut h), 1);
        assert_ne!(io.redirtbl[10] & redir::REMOTE_IRR, 0);
        // Raised again while waiting for EOI: not delivered.
        assert_eq!(io.set_irq(10, 1, true, &mut h), -1);
        assert_eq!(h.sent.len(), 1);
        // EOI while high: delivered again.
        io.eoi(0x51, true, false, &mut h);
        assert_eq!(h.acks, vec![10]);
        assert_eq!(h.sent.len(), 2);
        // Lowered by both sources, then EOI: nothing more.
        io.set_irq(10, 0, false, &mut h);
        io.set_irq(10, 1, false, &mut h);
        io.eoi(0x51, true, false, &mut h);
        assert_eq!(io.redirtbl[10] & redir::REMOTE_IRR, 0);
        assert_eq!(h.sent.len(), 2);
        // An edge EOI or a suppressed one leaves remote IRR.
        io.set_irq(10, 0, true, &mut h);
        io.eoi(0x51, false, false, &mut h);
        io.eoi(0x51, true, true, &mut h);
        assert_ne!(io.redirtbl[10] & redir::REMOTE_IRR, 0);
        // Nobody accepted: remote IRR stays clear.
        let mut n = Host::default();
        io.eoi(0x51, true, false, &mut n);
        assert_eq!(io.redirtbl[10] & redir::REMOTE_IRR, 0);
        // Unmasking a requested level pin delivers it.
        program(&mut io, &mut h, 11, 0x0100_0000_0001_8052);
        io.set_irq(11, 0, true, &mut h);
        let before = h.sent.len();
        program(&mut io, &mut h, 11, 0x0100_0000_0000_8052);
        assert_eq!(h.sent.len(), before + 1);
    }

    #[test]
    fn resampler_lowers_on_eoi() {
        let mut io = Ioapic::new();
        let mut h = Host { accept: 1, resampler: true, ..Default::default() };
        program(&mut io, &mut h, 9, 0x0100_0000_0000_8060);
        io.set_irq(9, KVM_IRQFD_RESAMPLE_IRQ_SOURCE_ID, true, &mut h);
        io.eoi(0x60, true, false, &mut h);
        assert_eq!(io.irr, 0);
        assert_eq!(h.sent.len(), 1, "lowered before the re-delivery check");
    }

    #[test]
    fn state_round_trip_redelivers() {
        let mut io = Ioapic::new();
        let mut h = Host { accept: 1, ..Default::default() };
        let mut s = io.get_state();
        assert_eq!(s.base_address, IOAPIC_DEFAULT_BASE);
        s.redirtbl[7] = 0x0300_0000_0000_8070;
        s.irr = 1 << 7;
        s.id = 5;
        io.set_state(&s, &mut h);
        assert_eq!(h.sent.len(), 1);
        assert_eq!(io.get_state().irr, 1 << 7);
        assert_eq!(io.get_state().id, 5);
        let v = io.handled_vectors(0, |d, _| d == 3);
        assert_eq!(v[1], 1 << (0x70 - 64));
        assert_eq!(io.handled_vectors(0, |d, _| d == 4), [0; 4]);
    }
}
