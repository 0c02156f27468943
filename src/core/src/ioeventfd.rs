// SPDX-License-Identifier: GPL-2.0
//! `KVM_IOEVENTFD`: `struct kvm_ioeventfd`, KVM's argument checks, its
//! collision rule between registrations, and which registration a guest
//! write hits (`virt/kvm/eventfd.c` semantics: an exact address, the same
//! length unless the registration has length 0, the same value when it has
//! a datamatch). The table itself is the module's (it holds eventfd
//! references); these functions work on a slice of its entries.

/// `sizeof(struct kvm_ioeventfd)`.
pub const KVM_IOEVENTFD_SIZE: usize = 64;

/// `KVM_IOEVENTFD_FLAG_*`.
pub mod flags {
    /// Signal only when the written value equals `datamatch`.
    pub const DATAMATCH: u32 = 1 << 0;
    /// Port I/O instead of MMIO.
    pub const PIO: u32 = 1 << 1;
    /// Remove a registration.
    pub const DEASSIGN: u32 = 1 << 2;
    /// s390's virtio-ccw notification bus (accepted, never written on x86).
    pub const VIRTIO_CCW_NOTIFY: u32 = 1 << 3;
    /// Every flag the header defines (`KVM_IOEVENTFD_VALID_FLAG_MASK`).
    pub const VALID: u32 = (1 << 5) - 1;
}

/// The address space a registration listens on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bus {
    /// Guest-physical memory (writes outside RAM slots).
    Mmio,
    /// I/O ports (OUT).
    Pio,
    /// s390's virtio-ccw notifications (no x86 access reaches it).
    Ccw,
}

/// `struct kvm_ioeventfd` as userspace passes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// Value to compare with (only with [`flags::DATAMATCH`]).
    pub datamatch: u64,
    /// Port or guest-physical address.
    pub addr: u64,
    /// Access size: 1, 2, 4, 8, or 0 for any.
    pub len: u32,
    /// The eventfd.
    pub fd: i32,
    /// [`flags`].
    pub flags: u32,
}

/// Why `KVM_IOEVENTFD` refuses a registration (before the eventfd is looked up).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoeventfdError {
    /// `EINVAL`: a length other than 0, 1, 2, 4, 8; an address range that
    /// wraps; an unknown flag; a datamatch with length 0.
    Invalid,
}

impl Request {
    /// Parses the struct (the 36 padding bytes are ignored, as KVM does).
    pub fn from_bytes(b: &[u8; KVM_IOEVENTFD_SIZE]) -> Self {
        let u64_at = |o: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[o..o + 8]);
            u64::from_ne_bytes(x)
        };
        let u32_at = |o: usize| u32::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        Request { datamatch: u64_at(0), addr: u64_at(8), len: u32_at(16), fd: u32_at(20) as i32, flags: u32_at(24) }
    }

    /// The bytes of the struct (padding zero).
    pub fn to_bytes(&self) -> [u8; KVM_IOEVENTFD_SIZE] {
        let mut b = [0u8; KVM_IOEVENTFD_SIZE];
        b[0..8].copy_from_slice(&self.datamatch.to_ne_bytes());
        b[8..16].copy_from_slice(&self.addr.to_ne_bytes());
        b[16..20].copy_from_slice(&self.len.to_ne_bytes());
        b[20..24].copy_from_slice(&self.fd.to_ne_bytes());
        b[24..28].copy_from_slice(&self.flags.to_ne_bytes());
        b
    }

    /// Whether this removes a registration.
    pub const fn deassign(&self) -> bool {
        self.flags & flags::DEASSIGN != 0
    }

    /// The bus the flags name (PIO first, then virtio-ccw, else MMIO).
    pub const fn bus(&self) -> Bus {
        if self.flags & flags::PIO != 0 {
            Bus::Pio
        } else if self.flags & flags::VIRTIO_CCW_NOTIFY != 0 {
            Bus::Ccw
        } else {
            Bus::Mmio
        }
    }

    /// The value to match, `None` for any value.
    pub const fn datamatch(&self) -> Option<u64> {
        if self.flags & flags::DATAMATCH != 0 {
            Some(self.datamatch)
        } else {
            None
        }
    }

    /// KVM's checks of a new registration, in its order (all `EINVAL`);
    /// they come before the eventfd is looked up. Removal checks none of
    /// them.
    pub fn check_assign(&self) -> Result<(), IoeventfdError> {
        if !matches!(self.len, 0 | 1 | 2 | 4 | 8) {
            return Err(IoeventfdError::Invalid);
        }
        if self.addr.checked_add(u64::from(self.len)).is_none() {
            return Err(IoeventfdError::Invalid);
        }
        if self.flags & !flags::VALID != 0 {
            return Err(IoeventfdError::Invalid);
        }
        if self.len == 0 && self.flags & flags::DATAMATCH != 0 {
            return Err(IoeventfdError::Invalid);
        }
        Ok(())
    }

    /// The entry this request registers, signalling `h`.
    pub fn entry<H>(&self, h: H) -> Entry<H> {
        Entry { bus: self.bus(), addr: self.addr, len: self.len, datamatch: self.datamatch(), h }
    }
}

/// One registration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<H> {
    /// Address space.
    pub bus: Bus,
    /// Exact address.
    pub addr: u64,
    /// Access size, 0 for any.
    pub len: u32,
    /// Value to match, `None` for any.
    pub datamatch: Option<u64>,
    /// What gets signalled (the eventfd).
    pub h: H,
}

impl<H> Entry<H> {
    /// Whether `self` and `other` could both claim one write, which KVM
    /// refuses (`EEXIST`): same bus and address, and either has length 0,
    /// or the lengths are equal and either matches any value or both match
    /// the same one. The eventfd does not matter.
    pub fn collides<G>(&self, other: &Entry<G>) -> bool {
        self.bus == other.bus
            && self.addr == other.addr
            && (self.len == 0
                || other.len == 0
                || (self.len == other.len
                    && (self.datamatch.is_none() || other.datamatch.is_none() || self.datamatch == other.datamatch)))
    }

    /// Whether a guest write of `len` bytes with value `val` (zero-extended)
    /// at `addr` on `bus` hits this registration.
    pub fn hit(&self, bus: Bus, addr: u64, len: u32, val: u64) -> bool {
        self.bus == bus
            && self.addr == addr
            && (self.len == 0 || (self.len == len && self.datamatch.is_none_or(|d| d == val)))
    }
}

/// The registration a write hits, if any (at most one can: [`Entry::collides`]
/// keeps every pair that could both hit out of the table).
pub fn find_hit<H>(table: &[Entry<H>], bus: Bus, addr: u64, len: u32, val: u64) -> Option<usize> {
    table.iter().position(|e| e.hit(bus, addr, len, val))
}

/// The registration `KVM_IOEVENTFD` with [`flags::DEASSIGN`] removes: same
/// bus, eventfd (`same_fd`), address, length, and datamatch (or both
/// without); `None` is `ENOENT`.
pub fn find_deassign<H>(table: &[Entry<H>], r: &Request, same_fd: impl Fn(&H) -> bool) -> Option<usize> {
    table.iter().position(|e| e.bus == r.bus() && e.addr == r.addr && e.len == r.len && e.datamatch == r.datamatch() && same_fd(&e.h))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(addr: u64, len: u32, flags: u32, dm: u64) -> Request {
        Request { datamatch: dm, addr, len, fd: 3, flags }
    }

    #[test]
    fn layout_matches_the_header() {
        let r = Request { datamatch: 0x1122, addr: 0xfee0_0000, len: 4, fd: -1, flags: 3 };
        let b = r.to_bytes();
        assert_eq!(&b[8..16], &0xfee0_0000u64.to_ne_bytes());
        assert_eq!(&b[20..24], &(-1i32).to_ne_bytes());
        assert_eq!(Request::from_bytes(&b), r);
        let mut b2 = b;
        b2[40] = 0xff; // padding ignored
        assert_eq!(Request::from_bytes(&b2), r);
    }

    #[test]
    fn assign_checks() {
        assert_eq!(req(0x10, 3, 0, 0).check_assign(), Err(IoeventfdError::Invalid));
        assert_eq!(req(u64::MAX - 1, 4, 0, 0).check_assign(), Err(IoeventfdError::Invalid));
        assert_eq!(req(u64::MAX - 3, 4, 0, 0).check_assign(), Err(IoeventfdError::Invalid), "addr + len wraps to 0");
        assert_eq!(req(u64::MAX - 4, 4, 0, 0).check_assign(), Ok(()));
        assert_eq!(req(0x10, 4, 1 << 5, 0).check_assign(), Err(IoeventfdError::Invalid));
        assert_eq!(req(0x10, 0, flags::DATAMATCH, 0).check_assign(), Err(IoeventfdError::Invalid));
        assert_eq!(req(0x10, 0, flags::PIO, 0).check_assign(), Ok(()));
        assert_eq!(req(0x10, 8, flags::PIO | flags::DATAMATCH | (1 << 4), 0).check_assign(), Ok(()));
        assert_eq!(req(0, 0, flags::VIRTIO_CCW_NOTIFY, 0).bus(), Bus::Ccw);
        assert_eq!(req(0, 0, flags::VIRTIO_CCW_NOTIFY | flags::PIO, 0).bus(), Bus::Pio);
    }

    #[test]
    fn collisions() {
        let e = |addr, len, flags, dm| req(addr, len, flags, dm).entry(0u8);
        let wild4 = e(0x100, 4, 0, 0);
        assert!(wild4.collides(&e(0x100, 4, flags::DATAMATCH, 7)));
        assert!(wild4.collides(&e(0x100, 0, 0, 0)));
        assert!(!wild4.collides(&e(0x100, 2, 0, 0)), "other length");
        assert!(!wild4.collides(&e(0x104, 4, 0, 0)), "other address");
        assert!(!wild4.collides(&e(0x100, 4, flags::PIO, 0)), "other bus");
        let dm1 = e(0x100, 4, flags::DATAMATCH, 1);
        assert!(!dm1.collides(&e(0x100, 4, flags::DATAMATCH, 2)));
        assert!(dm1.collides(&e(0x100, 4, flags::DATAMATCH, 1)));
    }

    #[test]
    fn hits() {
        let t = [
            req(0x100, 4, flags::DATAMATCH, 1).entry(1u8),
            req(0x100, 4, flags::DATAMATCH, 2).entry(2),
            req(0x100, 2, 0, 0).entry(3),
            req(0x200, 0, flags::PIO, 0).entry(4),
        ];
        assert_eq!(find_hit(&t, Bus::Mmio, 0x100, 4, 2), Some(1));
        assert_eq!(find_hit(&t, Bus::Mmio, 0x100, 4, 3), None);
        assert_eq!(find_hit(&t, Bus::Mmio, 0x100, 2, 0xffff), Some(2));
        assert_eq!(find_hit(&t, Bus::Mmio, 0x100, 1, 1), None);
        assert_eq!(find_hit(&t, Bus::Mmio, 0x101, 4, 1), None, "exact address only");
        assert_eq!(find_hit(&t, Bus::Pio, 0x200, 1, 9), Some(3));
        assert_eq!(find_hit(&t, Bus::Mmio, 0x200, 1, 9), None);
        // Datamatch of a value wider than the access never hits.
        let t2 = [req(0x300, 1, flags::DATAMATCH, 0x101).entry(0u8)];
        assert_eq!(find_hit(&t2, Bus::Mmio, 0x300, 1, 1), None);
    }

    #[test]
    fn deassign_needs_the_same_registration() {
        let t = [req(0x100, 4, flags::DATAMATCH, 1).entry(10u8), req(0x100, 2, 0, 0).entry(11)];
        let same = |fd: u8| move |h: &u8| *h == fd;
        assert_eq!(find_deassign(&t, &req(0x100, 4, flags::DATAMATCH | flags::DEASSIGN, 1), same(10)), Some(0));
        assert_eq!(find_deassign(&t, &req(0x100, 4, flags::DATAMATCH | flags::DEASSIGN, 2), same(10)), None);
        assert_eq!(find_deassign(&t, &req(0x100, 4, flags::DEASSIGN, 1), same(10)), None, "wildcard vs datamatch");
        assert_eq!(find_deassign(&t, &req(0x100, 4, flags::DATAMATCH | flags::DEASSIGN, 1), same(11)), None, "other eventfd");
        assert_eq!(find_deassign(&t, &req(0x100, 2, flags::DEASSIGN | flags::PIO, 0), same(11)), None, "other bus");
        assert_eq!(find_deassign(&t, &req(0x100, 2, flags::DEASSIGN, 0), same(11)), Some(1));
    }
}
