// SPDX-License-Identifier: GPL-2.0
//! EVENTINJ and EXITINTINFO (APM vol. 2 15.20 and 15.7.2): one format for the
//! event L0 injects on VMRUN and for the event that was being delivered when a
//! #VMEXIT happened. Also the virtual-interrupt fields of `int_ctl`/`int_vector`
//! (APM 15.21.1).

use crate::vmcb::int_ctl;

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

#[cfg(test)]
mod tests {
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
