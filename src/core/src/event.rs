// SPDX-License-Identifier: GPL-2.0
//! EVENTINJ and EXITINTINFO (APM vol. 2 15.20 and 15.7.2): one format for the
//! event L0 injects on VMRUN and for the event that was being delivered when a
//! #VMEXIT happened. Also the virtual-interrupt fields of `int_ctl`/`int_vector`
//! (APM 15.21.1).

use crate::vmcb::int_ctl;
use crate::vmcb::ControlArea;

/// Event type (bits 10:8), APM 15.20 table 15-7.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum EventType {
    /// External or virtual interrupt (INTR).
    Intr = 0,
    /// Non-maskable interrupt.
    Nmi = 2,
    /// Exception (fault or trap).
    Exception = 3,
    /// Software interrupt (INTn).
    SoftInt = 4,
}

impl EventType {
    /// Decodes the 3-bit type field; 1, 5, 6, 7 are reserved.
    pub const fn from_bits(t: u8) -> Option<Self> {
        match t {
            0 => Some(Self::Intr),
            2 => Some(Self::Nmi),
            3 => Some(Self::Exception),
            4 => Some(Self::SoftInt),
            _ => None,
        }
    }
}

/// Bit positions of the event format.
pub mod bits {
    /// Vector (bits 7:0).
    pub const VECTOR_MASK: u32 = 0xff;
    /// Type (bits 10:8).
    pub const TYPE_SHIFT: u32 = 8;
    /// Type mask.
    pub const TYPE_MASK: u32 = 7 << 8;
    /// EV: an error code is pushed (bit 11).
    pub const EV: u32 = 1 << 11;
    /// Reserved bits 30:12: must be zero in EVENTINJ.
    pub const RESERVED_MASK: u32 = 0x7fff_f000;
    /// V: the event is valid (bit 31).
    pub const VALID: u32 = 1 << 31;
}

/// Whether EVENTINJ `v` (low 32 bits) holds a valid external interrupt
/// (type 0, INTR: APM vol. 2 15.20).
pub const fn is_intr_injection(v: u32) -> bool {
    v & (bits::VALID | bits::TYPE_MASK) == bits::VALID
}

/// An event as EVENTINJ / EXITINTINFO encode it: the low 32 bits plus the error
/// code from the high 32 bits (`event_inj_err`, `exit_int_info_err`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// Low 32 bits (vector, type, EV, V).
    pub info: u32,
    /// Error code, meaningful when EV is set.
    pub error_code: u32,
}

impl Event {
    /// No event (V clear).
    pub const NONE: Self = Self { info: 0, error_code: 0 };

    /// Builds a valid event.
    pub const fn new(ty: EventType, vector: u8, error_code: Option<u32>) -> Self {
        let mut info = bits::VALID | ((ty as u32) << bits::TYPE_SHIFT) | vector as u32;
        let mut ec = 0;
        if let Some(e) = error_code {
            info |= bits::EV;
            ec = e;
        }
        Self { info, error_code: ec }
    }
    /// From the 64-bit VMCB field.
    pub const fn from_u64(v: u64) -> Self {
        Self { info: v as u32, error_code: (v >> 32) as u32 }
    }
    /// To the 64-bit VMCB field.
    pub const fn to_u64(self) -> u64 {
        self.info as u64 | ((self.error_code as u64) << 32)
    }
    /// V bit.
    pub const fn valid(self) -> bool {
        self.info & bits::VALID != 0
    }
    /// Vector.
    pub const fn vector(self) -> u8 {
        (self.info & bits::VECTOR_MASK) as u8
    }
    /// Raw type field.
    pub const fn type_bits(self) -> u8 {
        ((self.info & bits::TYPE_MASK) >> bits::TYPE_SHIFT) as u8
    }
    /// Decoded type.
    pub const fn event_type(self) -> Option<EventType> {
        EventType::from_bits(self.type_bits())
    }
    /// Error code, when EV is set.
    pub const fn error(self) -> Option<u32> {
        if self.info & bits::EV != 0 {
            Some(self.error_code)
        } else {
            None
        }
    }

    /// Checks an EVENTINJ value as VMRUN does (APM 15.20): an invalid event is
    /// fine (nothing to inject); a valid one needs a defined type, no reserved
    /// bit set, no exception vector 2 and none above 31. The vector of an
    /// NMI is ignored (APM 15.20: "if TYPE is 2 (NMI), the VECTOR field is
    /// ignored"; KVM injects its NMIs with vector 0).
    /// VMRUN with a bad EVENTINJ exits with VMEXIT_INVALID.
    pub const fn check_injectable(self) -> Result<(), InjectError> {
        if !self.valid() {
            return Ok(());
        }
        if self.info & bits::RESERVED_MASK != 0 {
            return Err(InjectError::ReservedBits);
        }
        match self.event_type() {
            None => Err(InjectError::ReservedType),
            Some(EventType::Exception) if self.vector() == 2 || self.vector() > 31 => {
                Err(InjectError::BadExceptionVector)
            }
            _ => Ok(()),
        }
    }
}

/// Why an EVENTINJ value cannot be injected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InjectError {
    /// Type 1, 5, 6 or 7.
    ReservedType,
    /// Bits 30:12 not zero.
    ReservedBits,
    /// Exception type with vector 2 (NMI) or above 31.
    BadExceptionVector,
}

/// The virtual interrupt request of `int_ctl` and `int_vector` (APM 15.21.4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VIntr {
    /// V_TPR.
    pub tpr: u8,
    /// V_IRQ.
    pub irq: bool,
    /// V_INTR_PRIO.
    pub prio: u8,
    /// V_IGN_TPR.
    pub ign_tpr: bool,
    /// V_INTR_MASKING.
    pub masking: bool,
    /// V_INTR_VECTOR.
    pub vector: u8,
}

impl VIntr {
    /// Decodes from `int_ctl` and `int_vector`.
    pub const fn decode(int_ctl_v: u32, int_vector: u32) -> Self {
        Self {
            tpr: (int_ctl_v & int_ctl::V_TPR_MASK) as u8,
            irq: int_ctl_v & int_ctl::V_IRQ != 0,
            prio: ((int_ctl_v & int_ctl::V_INTR_PRIO_MASK) >> int_ctl::V_INTR_PRIO_SHIFT) as u8,
            ign_tpr: int_ctl_v & int_ctl::V_IGN_TPR != 0,
            masking: int_ctl_v & int_ctl::V_INTR_MASKING != 0,
            vector: int_vector as u8,
        }
    }
    /// Encodes into `int_ctl` bits (other bits of `int_ctl` are left to the
    /// caller to merge) and the `int_vector` value.
    pub const fn encode(self) -> (u32, u32) {
        let mut c = self.tpr as u32 | (((self.prio & 0xf) as u32) << int_ctl::V_INTR_PRIO_SHIFT);
        if self.irq {
            c |= int_ctl::V_IRQ;
        }
        if self.ign_tpr {
            c |= int_ctl::V_IGN_TPR;
        }
        if self.masking {
            c |= int_ctl::V_INTR_MASKING;
        }
        (c, self.vector as u32)
    }
}

/// An external interrupt of EVENTINJ given to the guest as its virtual
/// interrupt instead (V_IRQ with V_IGN_TPR, V_INTR_VECTOR: APM vol. 2
/// 15.21.4), the form of `exit_after_injection` that costs no exit where it
/// applies: QEMU's TCG delivers an EVENTINJ interrupt a second time when an
/// exit request reaches the CPU before anything overwrites the vector it
/// leaves behind (docs/architecture.md "An interrupt delivered twice"),
/// while it takes a virtual interrupt through its ordinary interrupt path,
/// which leaves nothing behind.
///
/// Taken only when the two forms cannot differ: the guest can take an
/// interrupt at the first instruction boundary after VMRUN (RFLAGS.IF set,
/// no interrupt shadow, no virtual GIF clear, 15.33.2), so the virtual
/// interrupt is taken there, before any instruction, as EVENTINJ's would be
/// delivered (TPR ignored by both); nothing else holds V_IRQ (no window of
/// L0's or L1's, no VINTR intercept, which would turn the interrupt into a
/// #VMEXIT(VINTR)), and no virtual NMI is pending (taken first, 15.21.5).
/// An exit before the interrupt was taken (a physical interrupt pending at
/// VMRUN: checked first) leaves V_IRQ set: [`VirqInjection::finish`]
/// reports it in EXITINTINFO, as an exit during the delivery of an
/// EVENTINJ event does (15.20), and the next entry injects it again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirqInjection {
    /// The EVENTINJ value (valid, type INTR).
    event: u32,
    /// `int_ctl`'s V_IRQ, V_INTR_PRIO and V_IGN_TPR before, and `int_vector`.
    int_ctl: u32,
    int_vector: u32,
}

/// How an entry with a [`VirqInjection`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VirqOutcome {
    /// The guest took the interrupt (its delivery may have been interrupted
    /// in turn: then the processor reported it in EXITINTINFO).
    Taken,
    /// Not taken before the #VMEXIT: now in EXITINTINFO.
    Pending,
    /// No VMRUN (abandoned or VMEXIT_INVALID): back in EVENTINJ.
    NotEntered,
    /// Not taken, and EXITINTINFO already holds another event, which cannot
    /// happen (nothing else was being delivered): back in EVENTINJ, where
    /// the caller's handling of EXITINTINFO may replace it. (TCG's record
    /// of the interrupt's own interrupted delivery is recognized: `Taken`.)
    Conflict,
}

/// The `int_ctl` bits of a virtual interrupt request (V_IRQ, V_INTR_PRIO,
/// V_IGN_TPR).
use crate::nested::V_IRQ_INJECTION_BITS as VIRQ_BITS;

/// A virtual interrupt of the highest priority that ignores the TPR (APM
/// 15.21.4): EVENTINJ's interrupts given as V_IRQ, and L0's interrupt
/// windows.
pub const VIRQ_ANY_TPR: u32 = int_ctl::V_IRQ | int_ctl::V_IGN_TPR | (0xf << int_ctl::V_INTR_PRIO_SHIFT);

impl VirqInjection {
    /// Moves EVENTINJ's external interrupt into V_IRQ when it can (see the
    /// type), with the guest's RFLAGS `rflags`.
    #[inline]
    pub fn take(c: &mut ControlArea, rflags: u64) -> Option<Self> {
        // Most entries inject nothing: the one test they pay, inlined.
        if !is_intr_injection(c.event_inj) {
            return None;
        }
        let gif_clear = c.int_ctl & int_ctl::V_GIF_ENABLE != 0 && c.int_ctl & int_ctl::V_GIF == 0;
        if rflags & crate::x86::rflags::IF == 0
            || c.int_state & crate::vmcb::int_state::SHADOW != 0
            || c.int_ctl & (int_ctl::V_IRQ | int_ctl::V_NMI_PENDING) != 0
            || gif_clear
            || c.intercepts.test(crate::exit::VINTR)
        {
            return None;
        }
        let j = Self { event: c.event_inj, int_ctl: c.int_ctl & VIRQ_BITS, int_vector: c.int_vector };
        // Highest priority and V_IGN_TPR: EVENTINJ ignores the TPR too.
        c.int_ctl = (c.int_ctl & !VIRQ_BITS) | VIRQ_ANY_TPR;
        c.int_vector = c.event_inj & bits::VECTOR_MASK;
        c.event_inj = 0;
        Some(j)
    }

    /// After the entry (`entered`: a VMRUN ran and did not fail): the
    /// virtual interrupt request is withdrawn and the fields it borrowed
    /// are put back; an interrupt not taken goes to EXITINTINFO (or back to
    /// EVENTINJ without an entry).
    pub fn finish(self, c: &mut ControlArea, entered: bool) -> VirqOutcome {
        // The processor clears V_IRQ when it takes the interrupt (15.21.4).
        let pending = c.int_ctl & int_ctl::V_IRQ != 0;
        c.int_ctl = (c.int_ctl & !VIRQ_BITS) | self.int_ctl;
        c.int_vector = self.int_vector;
        if !entered {
            c.event_inj = self.event;
            return VirqOutcome::NotEntered;
        }
        if !pending {
            return VirqOutcome::Taken;
        }
        if c.exit_int_info & bits::VALID != 0 {
            // QEMU's TCG clears V_IRQ only once the delivery is done, and
            // records a virtual interrupt whose delivery an exit interrupted
            // (a nested page fault on the stack or the IDT) as an
            // *exception* of its vector in EXITINTINFO. The processor
            // clears V_IRQ when it takes the interrupt and reports type
            // INTR (15.7.2): nothing else can have been delivered before
            // the interrupt (the guest was interruptible at VMRUN), so the
            // vector's event is this interrupt's.
            let ty = (c.exit_int_info & bits::TYPE_MASK) >> bits::TYPE_SHIFT;
            let same = c.exit_int_info & (bits::VECTOR_MASK | bits::EV) == self.event & bits::VECTOR_MASK
                && (ty == EventType::Intr as u32 || ty == EventType::Exception as u32);
            if same {
                c.exit_int_info = self.event;
                c.exit_int_info_err = 0;
                return VirqOutcome::Taken;
            }
            c.event_inj = self.event;
            return VirqOutcome::Conflict;
        }
        c.exit_int_info = self.event;
        c.exit_int_info_err = 0;
        VirqOutcome::Pending
    }
}

#[cfg(test)]
mod tests {

    fn virq_control(event: u32) -> ControlArea {
        let mut c = ControlArea::ZERO;
        c.event_inj = event;
        c.int_ctl = int_ctl::V_INTR_MASKING | 0x3;
        c.int_vector = 0x41;
        c
    }

    #[test]
    fn virq_injection_taken_pending_not_entered() {
        use super::*;
        use crate::x86::rflags::IF;
        let ev = Event::new(EventType::Intr, 0xec, None).info;
        // Taken: V_IRQ cleared by the processor; everything borrowed back.
        let mut c = virq_control(ev);
        let j = VirqInjection::take(&mut c, IF | 2).unwrap();
        assert_eq!(c.event_inj, 0);
        assert_eq!(c.int_vector, 0xec);
        assert_eq!(c.int_ctl & (int_ctl::V_IRQ | int_ctl::V_IGN_TPR), int_ctl::V_IRQ | int_ctl::V_IGN_TPR);
        assert_eq!(c.int_ctl & int_ctl::V_TPR_MASK, 3, "V_TPR kept");
        c.int_ctl &= !int_ctl::V_IRQ;
        c.int_ctl = (c.int_ctl & !int_ctl::V_TPR_MASK) | 5; // the guest wrote CR8
        assert_eq!(j.finish(&mut c, true), VirqOutcome::Taken);
        assert_eq!((c.int_ctl, c.int_vector, c.event_inj, c.exit_int_info), (int_ctl::V_INTR_MASKING | 5, 0x41, 0, 0));
        // Not taken (an exit first): EXITINTINFO, as an interrupted delivery.
        let mut c = virq_control(ev);
        let j = VirqInjection::take(&mut c, IF).unwrap();
        assert_eq!(j.finish(&mut c, true), VirqOutcome::Pending);
        assert_eq!((c.int_ctl, c.int_vector, c.event_inj, c.exit_int_info), (int_ctl::V_INTR_MASKING | 3, 0x41, 0, ev));
        // No VMRUN: EVENTINJ again, untouched otherwise.
        let mut c = virq_control(ev);
        let before = c;
        let j = VirqInjection::take(&mut c, IF).unwrap();
        assert_eq!(j.finish(&mut c, false), VirqOutcome::NotEntered);
        assert_eq!(c, before);
        // EXITINTINFO already valid with another event: the interrupt is
        // kept in EVENTINJ.
        let mut c = virq_control(ev);
        let j = VirqInjection::take(&mut c, IF).unwrap();
        c.exit_int_info = Event::new(EventType::Exception, 14, Some(2)).info;
        assert_eq!(j.finish(&mut c, true), VirqOutcome::Conflict);
        assert_eq!(c.event_inj, ev);
        // QEMU's TCG: the delivery interrupted by an exit (V_IRQ still set)
        // recorded as an exception of the vector: reported as the
        // interrupt, V_IRQ withdrawn.
        for recorded in [Event::new(EventType::Exception, 0xec, None).info, ev] {
            let mut c = virq_control(ev);
            let j = VirqInjection::take(&mut c, IF).unwrap();
            c.exit_int_info = recorded;
            assert_eq!(j.finish(&mut c, true), VirqOutcome::Taken);
            assert_eq!((c.int_ctl, c.event_inj, c.exit_int_info), (int_ctl::V_INTR_MASKING | 3, 0, ev));
        }
    }

    #[test]
    fn virq_injection_only_where_eventinj_is_equivalent() {
        use super::*;
        use crate::x86::rflags::IF;
        let ev = Event::new(EventType::Intr, 0x30, None).info;
        let refused = |c: &mut ControlArea, rflags: u64| {
            let before = *c;
            let r = VirqInjection::take(c, rflags);
            assert_eq!(*c, before, "nothing changed when refused");
            r.is_none()
        };
        assert!(refused(&mut virq_control(ev), 0), "IF = 0");
        let mut c = virq_control(ev);
        c.int_state = crate::vmcb::int_state::SHADOW;
        assert!(refused(&mut c, IF), "interrupt shadow");
        let mut c = virq_control(ev);
        c.int_ctl |= int_ctl::V_IRQ;
        assert!(refused(&mut c, IF), "a window holds V_IRQ");
        let mut c = virq_control(ev);
        c.intercepts.set(crate::exit::VINTR);
        assert!(refused(&mut c, IF), "VINTR intercepted");
        let mut c = virq_control(ev);
        c.int_ctl |= int_ctl::V_GIF_ENABLE;
        assert!(refused(&mut c, IF), "virtual GIF clear");
        c.int_ctl |= int_ctl::V_GIF;
        assert!(VirqInjection::take(&mut c, IF).is_some(), "virtual GIF set");
        let mut c = virq_control(ev);
        c.int_ctl |= int_ctl::V_NMI_PENDING;
        assert!(refused(&mut c, IF), "virtual NMI pending");
        for other in [Event::new(EventType::Nmi, 2, None).info, Event::new(EventType::Exception, 13, Some(0)).info, Event::new(EventType::SoftInt, 0x80, None).info, 0] {
            assert!(refused(&mut virq_control(other), IF), "{other:#x}");
        }
    }
    #[test]
    fn intr_injection() {
        use super::*;
        assert!(is_intr_injection(Event::new(EventType::Intr, 0xec, None).info));
        assert!(!is_intr_injection(Event::new(EventType::Nmi, 2, None).info));
        assert!(!is_intr_injection(Event::new(EventType::Exception, 14, Some(0)).info));
        assert!(!is_intr_injection(Event::new(EventType::SoftInt, 0x80, None).info));
        assert!(!is_intr_injection(0xec));
    }

    use super::*;

    #[test]
    fn event_round_trip() {
        let e = Event::new(EventType::Exception, 14, Some(0x6));
        assert_eq!(e.info, 0x8000_0b0e);
        assert_eq!(e.to_u64(), 0x0000_0006_8000_0b0e);
        let d = Event::from_u64(e.to_u64());
        assert_eq!(d, e);
        assert!(d.valid());
        assert_eq!(d.vector(), 14);
        assert_eq!(d.event_type(), Some(EventType::Exception));
        assert_eq!(d.error(), Some(6));
        let i = Event::new(EventType::Intr, 0x20, None);
        assert_eq!(i.to_u64(), 0x8000_0020);
        assert_eq!(i.error(), None);
        let n = Event::new(EventType::Nmi, 2, None);
        assert_eq!(n.info, 0x8000_0202);
        let s = Event::new(EventType::SoftInt, 0x80, None);
        assert_eq!(s.type_bits(), 4);
        assert!(!Event::NONE.valid());
    }

    #[test]
    fn injectable_checks() {
        assert_eq!(Event::NONE.check_injectable(), Ok(()));
        // Garbage without V is ignored.
        assert_eq!(Event::from_u64(0x7fff_ffff).check_injectable(), Ok(()));
        assert_eq!(Event::new(EventType::Exception, 13, Some(0)).check_injectable(), Ok(()));
        assert_eq!(
            Event::new(EventType::Exception, 2, None).check_injectable(),
            Err(InjectError::BadExceptionVector)
        );
        assert_eq!(
            Event::new(EventType::Exception, 32, None).check_injectable(),
            Err(InjectError::BadExceptionVector)
        );
        // The vector of an NMI is ignored (KVM's vmcb12s carry 0).
        assert_eq!(Event::new(EventType::Nmi, 0, None).check_injectable(), Ok(()));
        assert_eq!(Event::new(EventType::Nmi, 3, None).check_injectable(), Ok(()));
        assert_eq!(
            Event { info: bits::VALID | (1 << 8), error_code: 0 }.check_injectable(),
            Err(InjectError::ReservedType)
        );
        assert_eq!(
            Event { info: bits::VALID | (1 << 12), error_code: 0 }.check_injectable(),
            Err(InjectError::ReservedBits)
        );
    }

    #[test]
    fn vintr_round_trip() {
        let v = VIntr { tpr: 0x5, irq: true, prio: 0xe, ign_tpr: true, masking: true, vector: 0x31 };
        let (c, vec) = v.encode();
        assert_eq!(c, 0x5 | (1 << 8) | (0xe << 16) | (1 << 20) | (1 << 24));
        assert_eq!(vec, 0x31);
        assert_eq!(VIntr::decode(c | int_ctl::V_GIF, vec), v);
    }
}
