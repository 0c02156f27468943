// SPDX-License-Identifier: GPL-2.0
//! Coalesced MMIO and PIO (`KVM_REGISTER_COALESCED_MMIO`,
//! `KVM_UNREGISTER_COALESCED_MMIO`, the ring page): the rules are
//! `nsvm_core::coalesced`'s; here the VM's zone table and ring page.

use kernel::prelude::*;
use kernel::uaccess::{UserPtr, UserSlice};

use nsvm_core::coalesced::{self, RingPage, Zone, ZoneTable, ZONE_SIZE};
use nsvm_core::ioeventfd::Bus;

use super::Vm;
use crate::hw::mem::KPages;

/// The zone table of a VM.
pub(crate) struct Zones(pub(crate) KVec<Zone>);

impl ZoneTable for Zones {
    fn iter_zones(&self) -> impl Iterator<Item = &Zone> {
        self.0.iter()
    }
    fn push_zone(&mut self, z: Zone) {
        // Capacity was reserved by the caller; a failure would only drop
        // the zone, never corrupt the table.
        let _ = self.0.push_within_capacity(z);
    }
    fn retain_zones(&mut self, mut f: impl FnMut(&Zone) -> bool) {
        self.0.retain(|z| f(z));
    }
}

/// The ring page, shared with userspace through the vCPU mmap.
struct Ring<'a>(&'a KPages);

impl RingPage for Ring<'_> {
    fn read_u32(&self, off: usize) -> u32 {
        u32::from_ne_bytes(self.0.read::<4>(off))
    }
    fn write_bytes(&self, off: usize, data: &[u8]) {
        self.0.write(off, data);
    }
}

impl Vm {
    /// `KVM_REGISTER_COALESCED_MMIO` / `KVM_UNREGISTER_COALESCED_MMIO`:
    /// the zone is read (`EFAULT`), `pio` other than 0/1 is `EINVAL`;
    /// registering past the bus's limit is `ENOSPC`; unregistering never
    /// fails (KVM's `kvm_vm_ioctl_(un)register_coalesced_mmio`).
    pub(super) fn coalesced_zone(&self, arg: usize, register: bool) -> Result<isize> {
        let mut b = [0u8; ZONE_SIZE];
        UserSlice::new(UserPtr::from_addr(arg), ZONE_SIZE).reader().read_slice(&mut b)?;
        let z = Zone::parse(&b).map_err(|e| Error::from_errno(-e.number()))?;
        let mut t = self.coalesced.lock();
        if register {
            t.0.reserve(1, GFP_KERNEL_ACCOUNT)?;
            coalesced::register(&mut *t, z).map_err(|e| Error::from_errno(-e.number()))?;
        } else {
            coalesced::unregister(&mut *t, z);
        }
        Ok(0)
    }

    /// A guest write of `len` (1..8) bytes of `val` at `addr` on `bus`
    /// that a zone covers goes to the ring: true when it did (the
    /// instruction completes in the kernel), false when no zone covers it
    /// or the ring is full (an exit to userspace). The zone lock
    /// serializes the writers of the ring (KVM's `ring_lock`).
    pub(crate) fn coalesced_write(&self, bus: Bus, addr: u64, len: u32, val: u64) -> bool {
        let pio = match bus {
            Bus::Mmio => false,
            Bus::Pio => true,
            Bus::Ccw => return false,
        };
        if len == 0 || len > 8 {
            return false;
        }
        let t = self.coalesced.lock();
        if !coalesced::covered(&t.0, addr, u64::from(len), pio) {
            return false;
        }
        coalesced::push(&Ring(&self.coalesced_ring), addr, &val.to_le_bytes()[..len as usize], pio)
    }

    /// A guest write on KVM's I/O buses after the in-kernel devices: an
    /// ioeventfd takes it, else a coalesced zone (KVM's `kvm_io_bus_write`
    /// order for the two is by address range; nsvm tries the ioeventfd
    /// first). True when the write completed in the kernel.
    pub(crate) fn io_bus_write(&self, bus: Bus, addr: u64, len: u32, val: u64) -> bool {
        self.ioeventfd_write(bus, addr, len, val) || self.coalesced_write(bus, addr, len, val)
    }
}
