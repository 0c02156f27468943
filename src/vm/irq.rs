// SPDX-License-Identifier: GPL-2.0
//! Interrupts from userspace into the in-kernel irqchip (split or full):
//! `KVM_SIGNAL_MSI`, `KVM_SET_GSI_ROUTING` (MSI routes; irqchip pins with
//! the full irqchip), `KVM_IRQ_LINE(_STATUS)` and `KVM_IRQFD`, with KVM's
//! argument checks (`kvm_send_userspace_msi`, `kvm_set_irq_routing`,
//! `kvm_vm_ioctl_irq_line`, `kvm_irqfd`).

use kernel::prelude::*;
use kernel::uaccess::{UserPtr, UserSlice};

use core::sync::atomic::Ordering;

use nsvm_core::irq_routing::{Route, KVM_IRQFD_RESAMPLE_IRQ_SOURCE_ID, KVM_USERSPACE_IRQ_SOURCE_ID};
use nsvm_core::lapic::{Irq, MsiRoute, MAX_IRQ_ROUTES, MSI_VALID_DEVID, ROUTING_ENTRY_SIZE};

use super::Vm;

/// Size of `struct kvm_msi` and of the `struct kvm_irq_routing` header.
const KVM_MSI_SIZE: usize = 32;
const ROUTING_HEADER: usize = 8;

impl Vm {
    /// KVM_CAP_X2APIC_API's 32-bit destination format is on.
    pub(crate) fn x2apic_format(&self) -> bool {
        self.x2apic_api.load(Ordering::Relaxed) & 1 != 0
    }

    /// Sends `irq` from no APIC (an MSI): KVM's return value (-1: no
    /// destination, else how many APICs accepted it).
    pub(crate) fn deliver_msi(&self, irq: &Irq) -> i32 {
        self.apic.deliver(irq, None, &self.guest_modes)
    }

    /// `KVM_SIGNAL_MSI`: `EINVAL` without an in-kernel irqchip or with flags
    /// other than `KVM_MSI_VALID_DEVID`; returns how many APICs accepted
    /// it (0 if none did), -1 (`EPERM`) for a broadcast that found no APIC.
    pub(super) fn signal_msi(&self, arg: usize) -> Result<isize> {
        let mut b = [0u8; KVM_MSI_SIZE];
        UserSlice::new(UserPtr::from_addr(arg), KVM_MSI_SIZE).reader().read_slice(&mut b)?;
        let w = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let (lo, hi, data, flags) = (w(0), w(4), w(8), w(12));
        if !self.irqchip_in_kernel() || flags & !MSI_VALID_DEVID != 0 {
            return Err(EINVAL);
        }
        let fmt = self.x2apic_format();
        if fmt && hi & 0xff != 0 {
            return Err(EINVAL);
        }
        match self.deliver_msi(&Irq::from_msi(lo, hi, data, fmt)) {
            r if r < 0 => Err(EPERM),
            r => Ok(r as isize),
        }
    }

    /// `KVM_SET_GSI_ROUTING`: header copied (`EFAULT`), then `EINVAL`
    /// without an in-kernel irqchip, for more than `KVM_MAX_IRQ_ROUTES`
    /// entries or any flag; the entries copied (`EFAULT`) and checked
    /// (`Route::parse`: irqchip pins only with the full irqchip; per GSI
    /// either one MSI or irqchip pins of different chips: `EINVAL`); the
    /// table replaces the old one and vCPUs rescan which vectors
    /// userspace's I/O APIC wants EOIs for.
    pub(super) fn set_gsi_routing(&self, arg: usize) -> Result<isize> {
        let mut h = [0u8; ROUTING_HEADER];
        UserSlice::new(UserPtr::from_addr(arg), ROUTING_HEADER).reader().read_slice(&mut h)?;
        let nr = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]);
        let flags = u32::from_ne_bytes([h[4], h[5], h[6], h[7]]);
        if !self.irqchip_in_kernel() || nr > MAX_IRQ_ROUTES || flags != 0 {
            return Err(EINVAL);
        }
        let split = self.irqchip_split.load(Ordering::Acquire);
        let n = nr as usize;
        let mut raw = KVec::from_elem(0u8, n * ROUTING_ENTRY_SIZE, GFP_KERNEL_ACCOUNT)?;
        UserSlice::new(UserPtr::from_addr(arg + ROUTING_HEADER), raw.len()).reader().read_slice(&mut raw)?;
        let fmt = self.x2apic_format();
        let mut all: KVec<Route> = KVec::with_capacity(n, GFP_KERNEL_ACCOUNT)?;
        // KVM checks every GSI's range before anything else.
        let entry = |i: usize| -> [u8; ROUTING_ENTRY_SIZE] {
            let mut e = [0u8; ROUTING_ENTRY_SIZE];
            e.copy_from_slice(&raw[i * ROUTING_ENTRY_SIZE..(i + 1) * ROUTING_ENTRY_SIZE]);
            e
        };
        for i in 0..n {
            let e = entry(i);
            if u32::from_ne_bytes([e[0], e[1], e[2], e[3]]) >= MAX_IRQ_ROUTES {
                return Err(EINVAL);
            }
        }
        for i in 0..n {
            let r = Route::parse(&entry(i), split, fmt).map_err(|_| EINVAL)?;
            if all.iter().any(|o| !r.compatible(o)) {
                return Err(EINVAL);
            }
            all.push(r, GFP_KERNEL_ACCOUNT)?;
        }
        let mut routes: KVec<MsiRoute> = KVec::with_capacity(n, GFP_KERNEL_ACCOUNT)?;
        let mut quads: KVec<[u32; 4]> = KVec::with_capacity(n, GFP_KERNEL_ACCOUNT)?;
        for r in all.iter() {
            if let Route::Msi(m) = r {
                routes.push(*m, GFP_KERNEL_ACCOUNT)?;
                quads.push([m.gsi, m.address_lo, m.address_hi, m.data], GFP_KERNEL_ACCOUNT)?;
            }
        }
        let mut g = self.inner.lock();
        g.routes = routes;
        self.install_routes(all);
        self.irqfds.reroute(&quads);
        drop(g);
        self.routes_gen.fetch_add(1, Ordering::AcqRel);
        Ok(0)
    }

    /// `KVM_IRQ_LINE` and `KVM_IRQ_LINE_STATUS` (`struct kvm_irq_level`:
    /// irq/status, level), as `kvm_vm_ioctl_irq_line`: the struct copied
    /// (`EFAULT`), `ENXIO` without an in-kernel irqchip; then `kvm_set_irq`
    /// from the userspace source (id 0) on the GSI's routes (PIC and I/O
    /// APIC pins with the full irqchip; an MSI route delivers its message
    /// while `level` is non-zero: QEMU's split I/O APIC raises its pins
    /// this way). `KVM_IRQ_LINE_STATUS` writes back KVM's status (< 0
    /// ignored, 0 coalesced, > 0 delivered).
    pub(super) fn irq_line(&self, arg: usize, status: bool) -> Result<isize> {
        let mut b = [0u8; 8];
        UserSlice::new(UserPtr::from_addr(arg), b.len()).reader().read_slice(&mut b)?;
        if !self.irqchip_in_kernel() {
            return Err(ENXIO);
        }
        let gsi = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
        let level = u32::from_ne_bytes([b[4], b[5], b[6], b[7]]);
        let r = self.set_irq(KVM_USERSPACE_IRQ_SOURCE_ID, gsi, level != 0);
        if status {
            UserSlice::new(UserPtr::from_addr(arg), 4).writer().write_slice(&r.to_ne_bytes())?;
        }
        Ok(0)
    }

    /// `KVM_IRQFD` (`struct kvm_irqfd`: fd, gsi, flags, resamplefd, pad):
    /// `EFAULT`, then `EINVAL` for unknown flags; deassign (`EBADF`/`EINVAL`
    /// for a bad fd, 0 also when nothing matched; a GSI left without a
    /// resampler has the resample source's level lowered, as KVM's
    /// `irqfd_resampler_shutdown`); assign: `EINVAL` without an in-kernel
    /// irqchip, or with `KVM_IRQFD_FLAG_RESAMPLE` without the full one;
    /// `EBADF`, `EINVAL` for a file that is not an eventfd, the resample
    /// eventfd's errors, `EBUSY` for an eventfd already assigned. A signal
    /// raises the MSI of the GSI's route at that moment, or (no MSI route)
    /// the GSI through `set_irq` from a work item (KVM's `irqfd_inject`).
    pub(super) fn irqfd(&self, arg: usize) -> Result<isize> {
        const DEASSIGN: u32 = 1;
        const RESAMPLE: u32 = 2;
        let mut b = [0u8; 32];
        UserSlice::new(UserPtr::from_addr(arg), b.len()).reader().read_slice(&mut b)?;
        let w = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let (fd, gsi, flags, rfd) = (w(0) as i32, w(4), w(8), w(12) as i32);
        if flags & !(DEASSIGN | RESAMPLE) != 0 {
            return Err(EINVAL);
        }
        if flags & DEASSIGN != 0 {
            let had = self.irqfds.has_resampler(gsi);
            self.irqfds.deassign(fd, gsi)?;
            if had && !self.irqfds.has_resampler(gsi) {
                self.set_irq(KVM_IRQFD_RESAMPLE_IRQ_SOURCE_ID, gsi, false);
            }
            return Ok(0);
        }
        let resample = flags & RESAMPLE != 0;
        if !self.irqchip_in_kernel() || (resample && !self.irqchip_full()) {
            return Err(EINVAL);
        }
        if resample && rfd < 0 {
            // KVM looks at the irqfd's own eventfd first.
            crate::hw::eventfd::EventFd::get(fd)?;
            return Err(EBADF);
        }
        let g = self.inner.lock();
        let msi = g.routes.iter().find(|r| r.gsi == gsi).map(|r| (r.address_lo, r.address_hi, r.data));
        // A resampling irqfd always goes through the irqchip (KVM: only
        // irqchip routes are resampled).
        let msi = if resample { None } else { msi };
        self.irqfds.assign(fd, gsi, msi, if resample { rfd } else { -1 })?;
        drop(g);
        Ok(0)
    }
}
