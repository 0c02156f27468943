// SPDX-License-Identifier: GPL-2.0
//! Coalesced MMIO and PIO (`KVM_CAP_COALESCED_MMIO`, `KVM_CAP_COALESCED_PIO`;
//! `virt/kvm/coalesced_mmio.c` of 7.2 is the reference for the behaviour):
//! userspace registers zones (`KVM_REGISTER_COALESCED_MMIO`, `struct
//! kvm_coalesced_mmio_zone`); a guest write that lies wholly inside a zone
//! of its bus (MMIO outside RAM, or an OUT) is not an exit: it is appended
//! to the VM's ring (`struct kvm_coalesced_mmio_ring`, one page, mapped at
//! page [`PAGE_OFFSET`] of every vCPU's mmap) and the instruction completes.
//! When the ring is full (one entry is always left free, so that userspace
//! tells full from empty), or userspace left `last` out of range, the write
//! exits to userspace as any other. Reads are never coalesced.

use crate::uapi::Errno;

/// `sizeof(struct kvm_coalesced_mmio_zone)`: addr (u64), size (u32), pio (u32).
pub const ZONE_SIZE: usize = 16;
/// `KVM_COALESCED_MMIO_PAGE_OFFSET` on x86: the ring's page in the vCPU
/// mmap, and the value `KVM_CHECK_EXTENSION(KVM_CAP_COALESCED_MMIO)` gives.
pub const PAGE_OFFSET: u64 = 2;
/// The ring header: `first`, `last` (u32 each).
pub const RING_HEADER: usize = 8;
/// `sizeof(struct kvm_coalesced_mmio)`: phys_addr (u64), len (u32), pio
/// (u32), data (8 bytes).
pub const ENTRY_SIZE: usize = 24;
/// `KVM_COALESCED_MMIO_MAX`: entries in the 4 KiB ring (170).
pub const MAX: u32 = ((4096 - RING_HEADER) / ENTRY_SIZE) as u32;
/// Zones per bus (KVM's `NR_IOBUS_DEVS`: a bus holds at most 1000
/// devices besides ioeventfds; more are `ENOSPC`).
pub const MAX_ZONES: usize = 1000;

/// A registered zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Zone {
    /// First guest-physical address or port.
    pub addr: u64,
    /// Bytes (or ports) covered.
    pub size: u32,
    /// On the PIO bus (else MMIO).
    pub pio: bool,
}

impl Zone {
    /// Parses `struct kvm_coalesced_mmio_zone`; `pio` other than 0 or 1 is
    /// `EINVAL` (for register and unregister alike).
    pub fn parse(b: &[u8; ZONE_SIZE]) -> Result<Self, Errno> {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[0..8]);
        let size = u32::from_ne_bytes([b[8], b[9], b[10], b[11]]);
        let pio = u32::from_ne_bytes([b[12], b[13], b[14], b[15]]);
        if pio > 1 {
            return Err(Errno::Einval);
        }
        Ok(Self { addr: u64::from_ne_bytes(a), size, pio: pio == 1 })
    }

    /// Whether `[addr, addr + len)` lies wholly inside the zone (a range
    /// that wraps never does: KVM's `coalesced_mmio_in_range`).
    pub fn contains(&self, addr: u64, len: u64) -> bool {
        let Some(end) = addr.checked_add(len) else { return false };
        addr >= self.addr && u128::from(end) <= u128::from(self.addr) + u128::from(self.size)
    }
}

/// `KVM_REGISTER_COALESCED_MMIO`: appends `z` to `zones` (zones may overlap,
/// as in KVM); `ENOSPC` when its bus already has [`MAX_ZONES`]. The caller
/// has checked that the table can grow (`reserve`).
pub fn register<V: ZoneTable>(zones: &mut V, z: Zone) -> Result<(), Errno> {
    if zones.iter_zones().filter(|o| o.pio == z.pio).count() >= MAX_ZONES {
        return Err(Errno::Enospc);
    }
    zones.push_zone(z);
    Ok(())
}

/// `KVM_UNREGISTER_COALESCED_MMIO`: removes every zone of `z`'s bus that
/// contains all of `z`'s range (KVM's rule: a zone smaller than the range
/// asked for, or only overlapping it, stays). Never an error.
pub fn unregister<V: ZoneTable>(zones: &mut V, z: Zone) {
    zones.retain_zones(|o| !(o.pio == z.pio && o.contains(z.addr, u64::from(z.size))));
}

/// Whether a write of `len` bytes at `addr` on the bus `pio` falls in a zone.
pub fn covered(zones: &[Zone], addr: u64, len: u64, pio: bool) -> bool {
    zones.iter().any(|z| z.pio == pio && z.contains(addr, len))
}

/// The zone table (the module keeps it in a `KVec`; tests in a `Vec`).
pub trait ZoneTable {
    /// The zones in registration order.
    fn iter_zones(&self) -> impl Iterator<Item = &Zone>;
    /// Appends one (capacity reserved by the caller).
    fn push_zone(&mut self, z: Zone);
    /// Keeps the zones `f` accepts.
    fn retain_zones(&mut self, f: impl FnMut(&Zone) -> bool);
}

/// The ring page as shared with userspace (every access volatile in the
/// module: userspace writes `first` and `last` at any time).
pub trait RingPage {
    /// The u32 at `off`.
    fn read_u32(&self, off: usize) -> u32;
    /// Writes `data` at `off`.
    fn write_bytes(&self, off: usize, data: &[u8]);
}

/// Appends a write of `data` (1 to 8 bytes) at `addr` to the ring, as
/// KVM's `coalesced_mmio_write`: `last` is read once and must be in range,
/// with room for one more entry before `first`; the entry gets
/// `phys_addr`, `len`, `pio` and `len` bytes of data (the rest of its data
/// is left as it was), then `last` moves on. False (nothing written) when
/// the ring is full or `last` is out of range: the write exits to
/// userspace. The caller serializes the writers (KVM's `ring_lock`) and
/// orders the entry's stores before the one of `last` (x86: stores are
/// not reordered with stores, and the page's accesses are volatile).
pub fn push(ring: &impl RingPage, addr: u64, data: &[u8], pio: bool) -> bool {
    let insert = ring.read_u32(4);
    let first = ring.read_u32(0);
    if data.is_empty() || data.len() > 8 || insert >= MAX || (insert + 1) % MAX == first {
        return false;
    }
    let e = RING_HEADER + insert as usize * ENTRY_SIZE;
    ring.write_bytes(e, &addr.to_ne_bytes());
    ring.write_bytes(e + 8, &(data.len() as u32).to_ne_bytes());
    ring.write_bytes(e + 12, &u32::from(pio).to_ne_bytes());
    ring.write_bytes(e + 16, data);
    ring.write_bytes(4, &((insert + 1) % MAX).to_ne_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    struct Page(RefCell<Vec<u8>>);
    impl RingPage for Page {
        fn read_u32(&self, off: usize) -> u32 {
            let b = self.0.borrow();
            u32::from_ne_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
        }
        fn write_bytes(&self, off: usize, data: &[u8]) {
            self.0.borrow_mut()[off..off + data.len()].copy_from_slice(data);
        }
    }
    impl ZoneTable for Vec<Zone> {
        fn iter_zones(&self) -> impl Iterator<Item = &Zone> {
            self.iter()
        }
        fn push_zone(&mut self, z: Zone) {
            self.push(z);
        }
        fn retain_zones(&mut self, f: impl FnMut(&Zone) -> bool) {
            self.retain(f);
        }
    }

    fn zone(addr: u64, size: u32, pio: u32) -> [u8; ZONE_SIZE] {
        let mut b = [0u8; ZONE_SIZE];
        b[0..8].copy_from_slice(&addr.to_ne_bytes());
        b[8..12].copy_from_slice(&size.to_ne_bytes());
        b[12..16].copy_from_slice(&pio.to_ne_bytes());
        b
    }

    #[test]
    fn layout_matches_kvm_bindings() {
        use kvm_bindings as kb;
        assert_eq!(ZONE_SIZE, size_of::<kb::kvm_coalesced_mmio_zone>());
        assert_eq!(ENTRY_SIZE, size_of::<kb::kvm_coalesced_mmio>());
        assert_eq!(RING_HEADER, size_of::<kb::kvm_coalesced_mmio_ring>());
        assert_eq!(MAX, 170);
    }

    #[test]
    fn zones() {
        assert_eq!(Zone::parse(&zone(0x1000, 8, 2)), Err(Errno::Einval));
        let z = Zone::parse(&zone(0x1000, 8, 0)).unwrap();
        assert_eq!(z, Zone { addr: 0x1000, size: 8, pio: false });
        assert!(z.contains(0x1000, 8) && z.contains(0x1004, 4) && z.contains(0x1007, 1));
        assert!(!z.contains(0x1004, 8) && !z.contains(0xfff, 2) && !z.contains(0x1008, 1));
        let top = Zone { addr: u64::MAX - 7, size: 8, pio: false };
        // A range ending at 2^64 wraps: never inside (as KVM).
        assert!(top.contains(u64::MAX - 7, 7) && !top.contains(u64::MAX - 7, 8) && !top.contains(u64::MAX, 2));
        let mut t: Vec<Zone> = Vec::new();
        register(&mut t, z).unwrap();
        register(&mut t, Zone { addr: 0x80, size: 8, pio: true }).unwrap();
        register(&mut t, Zone { addr: 0x1000, size: 0x1000, pio: false }).unwrap();
        assert!(covered(&t, 0x1000, 8, false) && covered(&t, 0x80, 4, true));
        assert!(!covered(&t, 0x80, 4, false) && !covered(&t, 0x1000, 4, true) && !covered(&t, 0x1ffc, 8, false));
        // Unregistering a range removes the zones that contain it: both
        // MMIO zones contain [0x1000, 0x1004), only the big one 0x1800.
        unregister(&mut t, Zone { addr: 0x1800, size: 4, pio: false });
        assert_eq!(t.len(), 2);
        unregister(&mut t, Zone { addr: 0x1000, size: 4, pio: true });
        assert_eq!(t.len(), 2);
        unregister(&mut t, Zone { addr: 0x1000, size: 4, pio: false });
        assert_eq!(t, vec![Zone { addr: 0x80, size: 8, pio: true }]);
        // Per-bus limit.
        for i in 0..MAX_ZONES - 1 {
            register(&mut t, Zone { addr: i as u64, size: 1, pio: true }).unwrap();
        }
        assert_eq!(register(&mut t, Zone { addr: 0, size: 1, pio: true }), Err(Errno::Enospc));
        register(&mut t, Zone { addr: 0, size: 1, pio: false }).unwrap();
    }

    #[test]
    fn ring() {
        let p = Page(RefCell::new(vec![0u8; 4096]));
        // Fills up to MAX - 1 entries, then refuses.
        for i in 0..MAX - 1 {
            assert!(push(&p, 0x1_0000_0000, &(u64::from(i) << 8).to_ne_bytes(), false), "{i}");
        }
        assert_eq!(p.read_u32(4), MAX - 1);
        assert!(!push(&p, 0x80, &[1, 2, 3, 4], true));
        let e = RING_HEADER + 5 * ENTRY_SIZE;
        assert_eq!(p.read_u32(e), 0);
        assert_eq!(p.read_u32(e + 4), 1);
        assert_eq!((p.read_u32(e + 8), p.read_u32(e + 12), p.read_u32(e + 16)), (8, 0, 5 << 8));
        // Userspace consumed: wraps around, PIO entry of 4 bytes keeps the
        // rest of the old data.
        p.write_bytes(0, &(MAX - 1).to_ne_bytes());
        assert!(push(&p, 0x80, &[1, 2, 3, 4], true));
        let e = RING_HEADER + (MAX as usize - 1) * ENTRY_SIZE;
        assert_eq!((p.read_u32(e), p.read_u32(e + 8), p.read_u32(e + 12)), (0x80, 4, 1));
        assert_eq!(p.read_u32(4), 0);
        assert!(push(&p, 0x80, &[9], true));
        assert_eq!(p.read_u32(4), 1);
        // `last` out of range (userspace's doing): refused.
        p.write_bytes(4, &MAX.to_ne_bytes());
        assert!(!push(&p, 0x80, &[9], true));
        p.write_bytes(4, &3u32.to_ne_bytes());
        p.write_bytes(0, &4u32.to_ne_bytes());
        assert!(!push(&p, 0x80, &[9], true));
        assert!(!push(&p, 0x80, &[], true) && !push(&p, 0x80, &[0; 9], true));
    }
}
