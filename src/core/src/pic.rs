// SPDX-License-Identifier: GPL-2.0
//! The two cascaded 8259A PICs of the full in-kernel irqchip
//! (`KVM_CREATE_IRQCHIP`), with KVM's semantics (arch/x86/kvm/i8259.c,
//! read for behaviour, written anew): ICW1-4, OCW1-3, IRR/ISR/IMR, edge or
//! level per pin through the PIIX ELCR (ports 0x4d0/0x4d1), auto-EOI
//! (with rotation), specific and non-specific EOI, rotation, poll mode,
//! spurious IRQ 7/15, the slave cascaded on master pin 2, and the INTA
//! cycle that returns the vector.
//!
//! As KVM: the special mask mode bit (OCW3) is kept and saved but does not
//! change the priority logic, single mode and ICW1's level bit are not
//! implemented (the ELCR decides the trigger), and the special fully
//! nested mode only affects the master's current priority.
//!
//! Acknowledgements (an EOI, auto-EOI, a poll) are reported to the caller
//! as a bit per pin (0-15) in [`Acked`], for KVM's ack notifiers (irqfd
//! resample, the PIT's reinjection), to be run after the lock is dropped.

use crate::irqchip_state::PicState;

/// Pins of the two PICs.
pub const PIC_NUM_PINS: usize = 16;

/// A bit per PIC pin (master 0-7, slave 8-15) whose interrupt was
/// acknowledged (ISR bit cleared by an EOI, an auto-EOI or a poll).
pub type Acked = u16;

/// Merges a source's level into a pin's line state and returns the
/// pin's level: KVM's `__kvm_irq_line_state` (the line is high while any
/// source holds it high). Source ids above 63 are ignored (held low).
pub fn line_state(state: &mut u64, source: u32, level: bool) -> bool {
    if source < 64 {
        if level {
            *state |= 1 << source;
        } else {
            *state &= !(1 << source);
        }
    }
    *state != 0
}

/// One 8259A (`struct kvm_kpic_state` minus its back pointer).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Chip {
    /// The saved part (`struct kvm_pic_state`).
    pub s: PicState,
}

impl Chip {
    /// Sets pin `irq` (0-7) to `level`: KVM's return value (-1: masked,
    /// 0: coalesced, 1: newly requested).
    fn set_irq1(&mut self, irq: u8, level: bool) -> i32 {
        let s = &mut self.s;
        let mask = 1u8 << irq;
        let mut ret = 1;
        if s.elcr & mask != 0 {
            if level {
                ret = i32::from(s.irr & mask == 0);
                s.irr |= mask;
                s.last_irr |= mask;
            } else {
                s.irr &= !mask;
                s.last_irr &= !mask;
            }
        } else if level {
            if s.last_irr & mask == 0 {
                ret = i32::from(s.irr & mask == 0);
                s.irr |= mask;
            }
            s.last_irr |= mask;
        } else {
            s.last_irr &= !mask;
        }
        if s.imr & mask != 0 {
            -1
        } else {
            ret
        }
    }

    /// The priority (0 highest) of the best bit of `mask`, 8 for none.
    fn priority(&self, mask: u8) -> u8 {
        if mask == 0 {
            return 8;
        }
        let mut p = 0;
        while mask & (1 << ((p + self.s.priority_add) & 7)) == 0 {
            p += 1;
        }
        p
    }

    /// The pin this chip requests now (above what is in service), if any.
    fn get_irq(&self, master: bool) -> Option<u8> {
        let p = self.priority(self.s.irr & !self.s.imr);
        if p == 8 {
            return None;
        }
        let mut isr = self.s.isr;
        if self.s.special_fully_nested_mode != 0 && master {
            isr &= !(1 << 2);
        }
        (p < self.priority(isr)).then_some((p + self.s.priority_add) & 7)
    }

    /// The INTA cycle on this chip for pin `irq`.
    fn intack(&mut self, irq: u8) -> bool {
        self.s.isr |= 1 << irq;
        // A level-triggered request stays in IRR.
        if self.s.elcr & (1 << irq) == 0 {
            self.s.irr &= !(1 << irq);
        }
        if self.s.auto_eoi != 0 {
            if self.s.rotate_on_auto_eoi != 0 {
                self.s.priority_add = (irq + 1) & 7;
            }
            self.s.isr &= !(1 << irq);
            return true;
        }
        false
    }

    /// ICW1's reset (KVM's `kvm_pic_reset`); returns the edge pins that
    /// were requested, acknowledged when a vCPU takes PIC interrupts.
    fn reset(&mut self) -> u8 {
        let s = &mut self.s;
        let edge_irr = s.irr & !s.elcr;
        s.last_irr = 0;
        s.irr &= s.elcr;
        s.imr = 0;
        s.priority_add = 0;
        s.special_mask = 0;
        s.read_reg_select = 0;
        if s.init4 == 0 {
            s.special_fully_nested_mode = 0;
            s.auto_eoi = 0;
        }
        s.init_state = 1;
        edge_irr
    }
}

/// The master and slave PICs, each pin's line state per source, and the
/// master's INTR output.
#[derive(Clone, Debug, Default)]
pub struct Pic {
    /// Master (0) and slave (1).
    pub chips: [Chip; 2],
    /// Per pin, a bit per irq source id holding it high.
    pub irq_states: [u64; PIC_NUM_PINS],
    /// The master's INTR output.
    pub output: bool,
}

/// What a guest port access or a state change asks of the caller.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PicEffect {
    /// Pins whose interrupt was acknowledged (ack notifiers).
    pub acked: Acked,
    /// INTR went from low to high: wake a vCPU that takes PIC interrupts.
    pub wakeup: bool,
}

impl Pic {
    /// A new pair, as `kvm_pic_init`: everything zero, ELCR masks 0xf8
    /// (master: pins 0-2 are always edge) and 0xde (slave: pins 8 and 13).
    pub fn new() -> Self {
        let mut p = Self::default();
        p.chips[0].s.elcr_mask = 0xf8;
        p.chips[1].s.elcr_mask = 0xde;
        p
    }

    /// Recomputes the cascade and the INTR output (`pic_update_irq`).
    fn update(&mut self, e: &mut PicEffect) {
        if self.chips[1].get_irq(false).is_some() {
            // A slave request pulses master pin 2.
            self.chips[0].set_irq1(2, true);
            self.chips[0].set_irq1(2, false);
        }
        let out = self.chips[0].get_irq(true).is_some();
        if out && !self.output {
            e.wakeup = true;
        }
        self.output = out;
    }

    /// `kvm_pic_set_irq`: pin 0-15 of source `source` to `level`; KVM's
    /// return value (-1 masked, 0 coalesced, 1 delivered to the PIC).
    pub fn set_irq(&mut self, pin: u32, source: u32, level: bool) -> (i32, PicEffect) {
        let mut e = PicEffect::default();
        if pin as usize >= PIC_NUM_PINS {
            return (-1, e);
        }
        let l = line_state(&mut self.irq_states[pin as usize], source, level);
        let r = self.chips[(pin >> 3) as usize].set_irq1((pin & 7) as u8, l);
        self.update(&mut e);
        (r, e)
    }

    /// The INTA cycle (`kvm_pic_read_irq`): the vector the PICs put on the
    /// bus, the spurious IRQ 7 (master) or 15 (slave) vector when nothing
    /// is requested any more.
    pub fn read_irq(&mut self) -> (u8, PicEffect) {
        let mut e = PicEffect::default();
        self.output = false;
        let intno = match self.chips[0].get_irq(true) {
            Some(irq) => {
                if self.chips[0].intack(irq) {
                    e.acked |= 1 << irq;
                }
                if irq == 2 {
                    let irq2 = match self.chips[1].get_irq(false) {
                        Some(i2) => {
                            if self.chips[1].intack(i2) {
                                e.acked |= 1 << (i2 + 8);
                            }
                            i2
                        }
                        None => 7,
                    };
                    self.chips[1].s.irq_base.wrapping_add(irq2)
                } else {
                    self.chips[0].s.irq_base.wrapping_add(irq)
                }
            }
            None => self.chips[0].s.irq_base.wrapping_add(7),
        };
        self.update(&mut e);
        (intno, e)
    }

    /// ISR bit `irq` of chip `c` cleared, reported as acknowledged.
    fn clear_isr(&mut self, c: usize, irq: u8, e: &mut PicEffect) {
        self.chips[c].s.isr &= !(1 << irq);
        e.acked |= 1 << (irq as usize + 8 * c);
    }

    /// A write of the guest to port 0x20/0x21 (c = 0) or 0xa0/0xa1 (c = 1);
    /// `accept` tells whether some vCPU takes PIC interrupts (an ICW1
    /// then acknowledges the edge requests it drops, as KVM).
    fn port_write(&mut self, c: usize, a0: bool, val: u8, accept: bool, e: &mut PicEffect) {
        if !a0 {
            if val & 0x10 != 0 {
                // ICW1.
                self.chips[c].s.init4 = val & 1;
                let edge = self.chips[c].reset();
                if accept {
                    for irq in 0..8 {
                        if edge & (1 << irq) != 0 {
                            self.clear_isr(c, irq, e);
                        }
                    }
                }
            } else if val & 0x08 != 0 {
                // OCW3.
                let s = &mut self.chips[c].s;
                if val & 0x04 != 0 {
                    s.poll = 1;
                }
                if val & 0x02 != 0 {
                    s.read_reg_select = val & 1;
                }
                if val & 0x40 != 0 {
                    s.special_mask = (val >> 5) & 1;
                }
            } else {
                // OCW2.
                let cmd = val >> 5;
                match cmd {
                    0 | 4 => self.chips[c].s.rotate_on_auto_eoi = cmd >> 2,
                    1 | 5 => {
                        let p = self.chips[c].priority(self.chips[c].s.isr);
                        if p != 8 {
                            let irq = (p + self.chips[c].s.priority_add) & 7;
                            if cmd == 5 {
                                self.chips[c].s.priority_add = (irq + 1) & 7;
                            }
                            self.clear_isr(c, irq, e);
                            self.update(e);
                        }
                    }
                    3 => {
                        self.clear_isr(c, val & 7, e);
                        self.update(e);
                    }
                    6 => {
                        self.chips[c].s.priority_add = (val + 1) & 7;
                        self.update(e);
                    }
                    7 => {
                        let irq = val & 7;
                        self.chips[c].s.priority_add = (irq + 1) & 7;
                        self.clear_isr(c, irq, e);
                        self.update(e);
                    }
                    _ => {}
                }
            }
            return;
        }
        let s = &mut self.chips[c].s;
        match s.init_state {
            0 => {
                // OCW1: the mask.
                s.imr = val;
                self.update(e);
            }
            1 => {
                s.irq_base = val & 0xf8;
                s.init_state = 2;
            }
            2 => s.init_state = if s.init4 != 0 { 3 } else { 0 },
            _ => {
                s.special_fully_nested_mode = (val >> 4) & 1;
                s.auto_eoi = (val >> 1) & 1;
                s.init_state = 0;
            }
        }
    }

    /// A read in poll mode (`pic_poll_read`).
    fn poll_read(&mut self, c: usize, e: &mut PicEffect) -> u8 {
        match self.chips[c].get_irq(c == 0) {
            Some(irq) => {
                if c == 1 {
                    self.chips[0].s.isr &= !(1 << 2);
                    self.chips[0].s.irr &= !(1 << 2);
                }
                self.chips[c].s.irr &= !(1 << irq);
                self.clear_isr(c, irq, e);
                if c == 1 || irq != 2 {
                    self.update(e);
                }
                irq | 0x80
            }
            None => {
                self.update(e);
                0x07
            }
        }
    }

    /// Whether `port` is one of the PICs' (0x20, 0x21, 0xa0, 0xa1, 0x4d0,
    /// 0x4d1).
    pub const fn owns_port(port: u16) -> bool {
        matches!(port, 0x20 | 0x21 | 0xa0 | 0xa1 | 0x4d0 | 0x4d1)
    }

    /// A guest OUT of `len` bytes to one of the ports (`picdev_write`):
    /// only byte writes do anything.
    pub fn write(&mut self, port: u16, len: u32, val: u8, accept: bool) -> PicEffect {
        let mut e = PicEffect::default();
        if len != 1 {
            return e;
        }
        match port {
            0x20 | 0x21 => self.port_write(0, port & 1 != 0, val, accept, &mut e),
            0xa0 | 0xa1 => self.port_write(1, port & 1 != 0, val, accept, &mut e),
            0x4d0 | 0x4d1 => {
                let s = &mut self.chips[usize::from(port & 1)].s;
                s.elcr = val & s.elcr_mask;
            }
            _ => {}
        }
        e
    }

    /// A guest IN of `len` bytes from one of the ports (`picdev_read`):
    /// other sizes read 0.
    pub fn read(&mut self, port: u16, len: u32) -> (u8, PicEffect) {
        let mut e = PicEffect::default();
        if len != 1 {
            return (0, e);
        }
        let v = match port {
            0x20 | 0x21 | 0xa0 | 0xa1 => {
                let c = usize::from(port >> 7 & 1);
                if self.chips[c].s.poll != 0 {
                    let v = self.poll_read(c, &mut e);
                    self.chips[c].s.poll = 0;
                    v
                } else if port & 1 == 0 {
                    let s = &self.chips[c].s;
                    if s.read_reg_select != 0 {
                        s.isr
                    } else {
                        s.irr
                    }
                } else {
                    self.chips[c].s.imr
                }
            }
            0x4d0 | 0x4d1 => self.chips[usize::from(port & 1)].s.elcr,
            _ => 0,
        };
        (v, e)
    }

    /// The output recomputed (`kvm_pic_update_irq`).
    pub fn refresh(&mut self) -> PicEffect {
        let mut e = PicEffect::default();
        self.update(&mut e);
        e
    }

    /// `KVM_SET_IRQCHIP` of chip `c` (0 master, 1 slave): the state as
    /// given (KVM copies it verbatim), then the output recomputed.
    pub fn set_state(&mut self, c: usize, s: PicState) -> PicEffect {
        let mut e = PicEffect::default();
        self.chips[c & 1].s = s;
        self.update(&mut e);
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Programs both PICs as Linux does: bases 0x20/0x28, cascade, 8086
    /// mode, optional auto-EOI, everything unmasked.
    fn init(p: &mut Pic, aeoi: bool) {
        for (c, base, casc) in [(0x20u16, 0x20u8, 4u8), (0xa0, 0x28, 2)] {
            p.write(c, 1, 0x11, true);
            p.write(c + 1, 1, base, true);
            p.write(c + 1, 1, casc, true);
            p.write(c + 1, 1, if aeoi { 3 } else { 1 }, true);
            p.write(c + 1, 1, 0, true);
        }
    }

    #[test]
    fn edge_request_inta_and_eoi() {
        let mut p = Pic::new();
        init(&mut p, false);
        assert!(!p.output);
        let (r, e) = p.set_irq(1, 0, true);
        assert_eq!(r, 1);
        assert!(e.wakeup && p.output);
        // Still high: no new edge (KVM still answers 1).
        assert_eq!(p.set_irq(1, 0, true).0, 1);
        assert_eq!(p.chips[0].s.irr, 2);
        let (v, _) = p.read_irq();
        assert_eq!(v, 0x21);
        assert_eq!(p.chips[0].s.isr, 2);
        assert_eq!(p.chips[0].s.irr, 0);
        assert!(!p.output);
        // An edge needs the line to go low first.
        p.set_irq(1, 0, true);
        assert_eq!(p.chips[0].s.irr, 0, "last_irr cleared only by a low level");
        p.set_irq(1, 0, false);
        // Non-specific EOI.
        let e = p.write(0x20, 1, 0x20, true);
        assert_eq!(e.acked, 1 << 1);
        assert_eq!(p.chips[0].s.isr, 0);
    }

    #[test]
    fn priority_order_and_masking() {
        let mut p = Pic::new();
        init(&mut p, false);
        p.write(0x21, 1, 1 << 3, true);
        p.set_irq(5, 0, true);
        assert_eq!(p.set_irq(3, 0, true).0, -1, "masked pin reports -1");
        p.set_irq(4, 0, true);
        assert_eq!(p.read_irq().0, 0x24);
        // 5 waits behind 4 in service.
        assert!(!p.output);
        p.write(0x20, 1, 0x20, true);
        assert!(p.output);
        assert_eq!(p.read_irq().0, 0x25);
        p.write(0x20, 1, 0x20, true);
        // Unmasking 3 delivers it.
        p.write(0x21, 1, 0, true);
        assert!(p.output);
        assert_eq!(p.read_irq().0, 0x23);
    }

    #[test]
    fn slave_cascade_and_spurious() {
        let mut p = Pic::new();
        init(&mut p, false);
        p.set_irq(12, 0, true);
        assert!(p.output);
        assert_eq!(p.read_irq().0, 0x2c);
        assert_eq!(p.chips[1].s.isr, 1 << 4);
        assert_eq!(p.chips[0].s.isr, 1 << 2);
        // Specific EOIs on both.
        let e = p.write(0xa0, 1, 0x60 | 4, true);
        assert_eq!(e.acked, 1 << 12);
        p.write(0x20, 1, 0x62, true);
        assert_eq!((p.chips[0].s.isr, p.chips[1].s.isr), (0, 0));
        // Nothing requested: INTA returns the master's IRQ 7.
        assert_eq!(p.read_irq().0, 0x27);
        // Request vanishes on the slave: IRQ 15.
        p.write(0x4d1, 1, 1 << 1, true);
        p.set_irq(9, 0, true);
        p.set_irq(9, 0, false);
        assert_eq!(p.chips[1].s.irr, 0);
        p.chips[0].s.irr |= 4;
        assert_eq!(p.read_irq().0, 0x2f);
    }

    #[test]
    fn level_via_elcr_and_sources() {
        let mut p = Pic::new();
        init(&mut p, false);
        // ELCR masks: master pins 0-2 and slave 8/13 stay edge.
        p.write(0x4d0, 1, 0xff, true);
        p.write(0x4d1, 1, 0xff, true);
        assert_eq!(p.read(0x4d0, 1).0, 0xf8);
        assert_eq!(p.read(0x4d1, 1).0, 0xde);
        p.set_irq(5, 0, true);
        p.set_irq(5, 1, true);
        assert_eq!(p.read_irq().0, 0x25);
        assert_eq!(p.chips[0].s.irr & (1 << 5), 1 << 5, "level stays in IRR");
        p.write(0x20, 1, 0x20, true);
        assert!(p.output, "line still high: requested again after EOI");
        // One source lowers: the other still holds it.
        p.set_irq(5, 0, false);
        assert!(p.output);
        p.set_irq(5, 1, false);
        assert!(!p.output);
        assert_eq!(p.chips[0].s.irr, 0);
    }

    #[test]
    fn auto_eoi_rotation_poll_and_reads() {
        let mut p = Pic::new();
        init(&mut p, true);
        p.set_irq(6, 0, true);
        let (v, e) = p.read_irq();
        assert_eq!(v, 0x26);
        assert_eq!(e.acked, 1 << 6);
        assert_eq!(p.chips[0].s.isr, 0);
        // Rotate on auto-EOI.
        p.write(0x20, 1, 0x80, true);
        p.set_irq(6, 0, false);
        p.set_irq(6, 0, true);
        p.read_irq();
        assert_eq!(p.chips[0].s.priority_add, 7);
        // Set priority: lowest is 3, so 4 beats 1.
        init(&mut p, false);
        p.write(0x20, 1, 0xc0 | 3, true);
        p.set_irq(1, 0, false);
        p.set_irq(4, 0, false);
        p.set_irq(1, 0, true);
        p.set_irq(4, 0, true);
        assert_eq!(p.read_irq().0, 0x24);
        // IRR/ISR reads by OCW3.
        assert_eq!(p.read(0x20, 1).0, 1 << 1);
        p.write(0x20, 1, 0x0b, true);
        assert_eq!(p.read(0x20, 1).0, 1 << 4);
        assert_eq!(p.read(0x21, 1).0, 0);
        // Poll: the pending pin with bit 7, its ISR cleared.
        p.write(0x20, 1, 0x20, true);
        p.write(0x20, 1, 0x0c, true);
        let (v, e) = p.read(0x20, 1);
        assert_eq!(v, 0x81);
        assert_eq!(e.acked, 1 << 1);
        p.write(0x20, 1, 0x0c, true);
        assert_eq!(p.read(0x20, 1).0, 0x07);
        // Wider accesses do nothing.
        assert_eq!(p.read(0x21, 2).0, 0);
        assert_eq!(p.write(0x21, 2, 0xff, true), PicEffect::default());
        assert_eq!(p.chips[0].s.imr, 0);
        // Special mask is stored (KVM).
        p.write(0x20, 1, 0x68, true);
        assert_eq!(p.chips[0].s.special_mask, 1);
    }

    #[test]
    fn line_state_or() {
        let mut s = 0u64;
        assert!(line_state(&mut s, 0, true));
        assert!(line_state(&mut s, 2, true));
        assert!(line_state(&mut s, 0, false));
        assert!(!line_state(&mut s, 2, false));
        assert!(!line_state(&mut s, 64, true));
    }
}
