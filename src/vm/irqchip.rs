// SPDX-License-Identifier: GPL-2.0
//! The in-kernel irqchip of a VM: the GSI routing table (both irqchip
//! modes) and, with the full irqchip (`KVM_CREATE_IRQCHIP`), the two PICs
//! and the I/O APIC of `nsvm_core::{pic, ioapic}` behind one spinlock
//! (`Vm::irqchip`), with KVM's `kvm_set_irq`, ack notifiers (irqfd
//! resample, the PIT's hook) and `KVM_GET/SET_IRQCHIP`.
//!
//! Locking: `Vm::irqchip` is a spinlock taken from process context only
//! (ioctls, vCPU threads, the irqfd work items); under it the models
//! deliver through the lock-free APIC bus and may look at the irqfd list
//! (its own irq-safe lock). Ack notifiers, resample signals and vCPU kicks
//! run after it is released (they may raise lines again).

use kernel::prelude::*;
use kernel::uaccess::{UserPtr, UserSlice};

use core::sync::atomic::Ordering;

use nsvm_core::ioapic::{Ioapic, IoapicHost};
use nsvm_core::irq_routing::{self, chip_map, Route, KVM_IRQCHIP_NUM_PINS, KVM_IRQFD_RESAMPLE_IRQ_SOURCE_ID};
use nsvm_core::irqchip_state::{self as ics, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, KVM_IRQCHIP_SIZE, KVM_NR_IRQCHIPS};
use nsvm_core::lapic::Irq;
use nsvm_core::pic::{Pic, PicEffect};

use super::Vm;

/// `KVM_PIT_IRQ_SOURCE_ID`, for the in-kernel PIT.
pub(crate) const KVM_PIT_IRQ_SOURCE_ID: u32 = irq_routing::KVM_PIT_IRQ_SOURCE_ID;

/// Chip/pin -> GSI (KVM's `rt->chip`).
pub(crate) type ChipMap = [[i32; KVM_IRQCHIP_NUM_PINS]; KVM_NR_IRQCHIPS as usize];

/// The state under `Vm::irqchip`.
pub(crate) struct Irqchip {
    /// The two PICs and the I/O APIC (used with the full irqchip only).
    pub(crate) pic: Pic,
    pub(crate) ioapic: Ioapic,
    /// The GSI routing table and its chip map.
    pub(crate) routes: KVec<Route>,
    pub(crate) map: ChipMap,
}

impl Irqchip {
    pub(crate) fn new() -> Self {
        Self { pic: Pic::new(), ioapic: Ioapic::new(), routes: KVec::new(), map: [[-1; KVM_IRQCHIP_NUM_PINS]; KVM_NR_IRQCHIPS as usize] }
    }
}

/// What to do once the lock is released.
struct After {
    /// The PIC's output rose: kick the vCPUs that take PIC interrupts.
    wakeup: bool,
    /// Pins acknowledged (PIC 0-15, I/O APIC 0-23).
    pic_acked: u16,
    ioapic_acked: u32,
    /// I/O APIC pins whose request a resampling irqfd dropped on unmask:
    /// their resample eventfds are signalled.
    resampled: u32,
    /// Their GSIs (filled under the lock from the chip map).
    gsis: [u32; 40],
    n: usize,
    /// The GSIs of `resampled`.
    rgsis: [u32; 24],
    rn: usize,
}

impl Default for After {
    fn default() -> Self {
        Self { wakeup: false, pic_acked: 0, ioapic_acked: 0, resampled: 0, gsis: [0; 40], n: 0, rgsis: [0; 24], rn: 0 }
    }
}

impl After {
    fn pic(&mut self, e: PicEffect) {
        self.wakeup |= e.wakeup;
        self.pic_acked |= e.acked;
    }

    /// Maps the acknowledged pins to GSIs with `map`.
    fn resolve(&mut self, map: &ChipMap) {
        let mut add = |g: i32| {
            if g >= 0 && self.n < self.gsis.len() && !self.gsis[..self.n].contains(&(g as u32)) {
                self.gsis[self.n] = g as u32;
                self.n += 1;
            }
        };
        let (pic_acked, ioapic_acked) = (self.pic_acked, self.ioapic_acked);
        for (pin, g) in map[KVM_IRQCHIP_IOAPIC as usize].iter().enumerate() {
            if self.resampled & (1 << pin) != 0 && *g >= 0 && self.rn < self.rgsis.len() {
                self.rgsis[self.rn] = *g as u32;
                self.rn += 1;
            }
        }
        for (pin, (m, s)) in map[KVM_IRQCHIP_PIC_MASTER as usize].iter().zip(map[KVM_IRQCHIP_PIC_SLAVE as usize].iter()).enumerate().take(16) {
            if pic_acked & (1 << pin) != 0 {
                add(if pin < 8 { *m } else { *s });
            }
        }
        for (pin, g) in map[KVM_IRQCHIP_IOAPIC as usize].iter().enumerate() {
            if ioapic_acked & (1 << pin) != 0 {
                add(*g);
            }
        }
    }
}

/// The I/O APIC's view of the VM (under the irqchip lock).
struct Host<'a> {
    vm: &'a Vm,
    map: &'a ChipMap,
    acked: u32,
    resampled: u32,
}

impl Host<'_> {
    fn gsi(&self, pin: u32) -> Option<u32> {
        let g = *self.map[KVM_IRQCHIP_IOAPIC as usize].get(pin as usize)?;
        (g >= 0).then_some(g as u32)
    }
}

impl IoapicHost for Host<'_> {
    fn deliver(&mut self, irq: &Irq) -> i32 {
        self.vm.deliver_msi(irq)
    }
    fn acked(&mut self, pin: u32) -> bool {
        self.acked |= 1 << pin;
        self.gsi(pin).is_some_and(|g| self.vm.irqfds.has_resampler(g))
    }
    fn resample(&mut self, pin: u32) -> bool {
        // Signalled once the lock is released (`irqchip_after`).
        let r = self.gsi(pin).is_some_and(|g| self.vm.irqfds.has_resampler(g));
        if r {
            self.resampled |= 1 << pin;
        }
        r
    }
}

impl Vm {
    /// The full in-kernel irqchip exists (KVM's `irqchip_full`).
    pub(crate) fn irqchip_full(&self) -> bool {
        self.irqchip_kernel.load(Ordering::Acquire)
    }

    /// Local APICs are in the kernel: split or full irqchip (KVM's
    /// `irqchip_in_kernel`).
    pub(crate) fn irqchip_in_kernel(&self) -> bool {
        self.irqchip_split.load(Ordering::Acquire) || self.irqchip_full()
    }

    /// KVM's `kvm_set_irq`: GSI `gsi` of irq source `irq_source_id` to
    /// `level` on every route of the GSI (PIC pin, I/O APIC pin, MSI raised
    /// on a high level). Returns KVM's value: < 0 ignored (masked, no
    /// route), 0 coalesced, > 0 delivered (summed over the routes).
    /// Process context only (takes the irqchip spinlock; the PIT calls it
    /// from its worker, as KVM's does).
    pub(crate) fn set_irq(&self, irq_source_id: u32, gsi: u32, level: bool) -> i32 {
        let mut a = After::default();
        let r = {
            let mut g = self.irqchip.lock();
            let Irqchip { pic, ioapic, routes, map } = &mut *g;
            let mut host = Host { vm: self, map, acked: 0, resampled: 0 };
            let mut res = [-1i32; 4];
            let mut n = 0;
            for rt in routes.iter().filter(|r| r.gsi() == gsi) {
                let r = match *rt {
                    Route::Irqchip { chip: KVM_IRQCHIP_IOAPIC, pin, .. } => ioapic.set_irq(pin, irq_source_id, level, &mut host),
                    Route::Irqchip { pin, .. } => {
                        let (r, e) = pic.set_irq(pin, irq_source_id, level);
                        a.pic(e);
                        r
                    }
                    Route::Msi(m) if level => self.deliver_msi(&m.irq(self.x2apic_format())),
                    Route::Msi(_) => -1,
                };
                if n < res.len() {
                    res[n] = r;
                    n += 1;
                }
            }
            a.ioapic_acked |= host.acked;
            a.resampled |= host.resampled;
            self.pic_output.store(pic.output, Ordering::Release);
            a.resolve(map);
            irq_routing::sum_results(res[..n].iter().copied())
        };
        self.irqchip_after(a);
        r
    }

    /// After a change of the irqchip: kicks for a new PIC interrupt, then
    /// the ack notifiers of the acknowledged GSIs: a resampling irqfd's
    /// line lowered and its resample eventfd signalled (KVM's
    /// `irqfd_resampler_ack`), the PIT's hook for GSI 0.
    fn irqchip_after(&self, a: After) {
        if a.wakeup {
            self.apic.kick_extint(&self.guest_modes);
        }
        for &gsi in &a.rgsis[..a.rn] {
            self.irqfds.resample(gsi);
        }
        for &gsi in &a.gsis[..a.n] {
            if self.irqfds.has_resampler(gsi) {
                self.set_irq(KVM_IRQFD_RESAMPLE_IRQ_SOURCE_ID, gsi, false);
                self.irqfds.resample(gsi);
            }
            if gsi == 0 {
                self.pit_irq_acked();
            }
        }
    }

    /// The INTA cycle of a vCPU that takes the PIC's interrupt
    /// (`kvm_cpu_get_extint`): the vector.
    pub(crate) fn pic_inta(&self) -> u8 {
        let mut a = After::default();
        let v = {
            let mut g = self.irqchip.lock();
            let (v, e) = g.pic.read_irq();
            a.pic(e);
            self.pic_output.store(g.pic.output, Ordering::Release);
            a.resolve(&g.map);
            v
        };
        self.irqchip_after(a);
        v
    }

    /// A guest port access to the PICs or their ELCRs with the full
    /// irqchip: `None` when the port is not theirs (or no full irqchip);
    /// otherwise the value read (0 for a write). `accept`: some vCPU
    /// takes PIC interrupts.
    pub(crate) fn pic_pio(&self, port: u16, is_in: bool, size: u32, val: u8) -> Option<u8> {
        // KVM's devices: 0x20-0x21, 0xa0-0xa1, 0x4d0-0x4d1; an access must
        // fit in one of them.
        let base = port & !1;
        if !Pic::owns_port(port) || u32::from(port) + size > u32::from(base) + 2 || !self.irqchip_full() {
            return None;
        }
        let accept = self.apic.any_accepts_pic();
        let mut a = After::default();
        let v = {
            let mut g = self.irqchip.lock();
            let v = if is_in {
                let (v, e) = g.pic.read(port, size);
                a.pic(e);
                v
            } else {
                let e = g.pic.write(port, size, val, accept);
                a.pic(e);
                0
            };
            self.pic_output.store(g.pic.output, Ordering::Release);
            a.resolve(&g.map);
            v
        };
        self.irqchip_after(a);
        Some(v)
    }

    /// A guest MMIO access to the I/O APIC's window with the full irqchip:
    /// `None` when `gpa` is not in it; the value read otherwise.
    pub(crate) fn ioapic_mmio(&self, gpa: u64, is_write: bool, len: u32, val: u64) -> Option<u64> {
        if !self.irqchip_full() {
            return None;
        }
        let mut a = After::default();
        let v = {
            let mut g = self.irqchip.lock();
            if !g.ioapic.in_range(gpa) {
                return None;
            }
            let off = gpa - g.ioapic.base_address;
            let Irqchip { ioapic, map, .. } = &mut *g;
            let v = if is_write {
                let mut host = Host { vm: self, map, acked: 0, resampled: 0 };
                ioapic.mmio_write(off, len, val, &mut host);
                a.ioapic_acked |= host.acked;
            a.resampled |= host.resampled;
                0
            } else {
                ioapic.mmio_read(off, len)
            };
            a.resolve(map);
            v
        };
        self.irqchip_after(a);
        Some(v)
    }

    /// The EOI of `vector` by a local APIC, broadcast to the I/O APIC
    /// (`kvm_ioapic_update_eoi`): `level` is the APIC's TMR bit,
    /// `suppressed` the guest's directed-EOI mode.
    pub(crate) fn ioapic_eoi(&self, vector: u8, level: bool, suppressed: bool) {
        let mut a = After::default();
        {
            let mut g = self.irqchip.lock();
            let Irqchip { ioapic, map, .. } = &mut *g;
            let mut host = Host { vm: self, map, acked: 0, resampled: 0 };
            ioapic.eoi(vector, level, suppressed, &mut host);
            a.ioapic_acked |= host.acked;
            a.resampled |= host.resampled;
            a.resolve(map);
        }
        self.irqchip_after(a);
    }

    /// A new routing table (already checked), with its chip map.
    pub(super) fn install_routes(&self, routes: KVec<Route>) {
        let map = chip_map(&routes);
        let old = {
            let mut g = self.irqchip.lock();
            g.map = map;
            core::mem::replace(&mut g.routes, routes)
        };
        drop(old);
    }

    /// `KVM_CREATE_IRQCHIP` past its checks: PICs and I/O APIC at reset,
    /// KVM's default routes, then the mode published.
    pub(super) fn create_full_irqchip(&self) -> Result {
        let mut routes = KVec::with_capacity(40, GFP_KERNEL_ACCOUNT)?;
        for r in irq_routing::default_routes() {
            routes.push(r, GFP_KERNEL_ACCOUNT)?;
        }
        {
            let mut g = self.irqchip.lock();
            g.pic = Pic::new();
            g.ioapic = Ioapic::new();
        }
        self.install_routes(routes);
        self.irqchip_kernel.store(true, Ordering::Release);
        Ok(())
    }

    /// `KVM_GET_IRQCHIP`: the struct copied (`EFAULT`), `ENXIO` without the
    /// full irqchip, `EINVAL` for a chip id other than 0-2; the chip's
    /// state written back into the whole struct.
    pub(super) fn get_irqchip(&self, arg: usize) -> Result<isize> {
        let mut b = [0u8; KVM_IRQCHIP_SIZE];
        UserSlice::new(UserPtr::from_addr(arg), KVM_IRQCHIP_SIZE).reader().read_slice(&mut b)?;
        if !self.irqchip_full() {
            return Err(ENXIO);
        }
        {
            let g = self.irqchip.lock();
            match ics::chip_id(&b) {
                c @ (KVM_IRQCHIP_PIC_MASTER | KVM_IRQCHIP_PIC_SLAVE) => ics::put_chip(&mut b, &g.pic.chips[c as usize].s.to_bytes()),
                KVM_IRQCHIP_IOAPIC => ics::put_chip(&mut b, &g.ioapic.get_state().to_bytes()),
                _ => return Err(EINVAL),
            }
        }
        UserSlice::new(UserPtr::from_addr(arg), KVM_IRQCHIP_SIZE).writer().write_slice(&b)?;
        Ok(0)
    }

    /// `KVM_SET_IRQCHIP`: `EFAULT`, `ENXIO`, `EINVAL` as the get; the
    /// state taken as given (KVM's), the I/O APIC's requested pins raised
    /// again, the PIC output recomputed.
    pub(super) fn set_irqchip(&self, arg: usize) -> Result<isize> {
        let mut b = [0u8; KVM_IRQCHIP_SIZE];
        UserSlice::new(UserPtr::from_addr(arg), KVM_IRQCHIP_SIZE).reader().read_slice(&mut b)?;
        if !self.irqchip_full() {
            return Err(ENXIO);
        }
        let mut a = After::default();
        let r = {
            let mut g = self.irqchip.lock();
            let Irqchip { pic, ioapic, map, .. } = &mut *g;
            let r = match ics::chip_id(&b) {
                c @ (KVM_IRQCHIP_PIC_MASTER | KVM_IRQCHIP_PIC_SLAVE) => {
                    a.pic(pic.set_state(c as usize, ics::pic_of(&b)));
                    Ok(0)
                }
                KVM_IRQCHIP_IOAPIC => {
                    let mut host = Host { vm: self, map, acked: 0, resampled: 0 };
                    ioapic.set_state(&ics::ioapic_of(&b), &mut host);
                    a.ioapic_acked |= host.acked;
            a.resampled |= host.resampled;
                    Ok(0)
                }
                _ => Err(EINVAL),
            };
            // KVM recomputes the PIC's output whatever the chip id.
            a.pic(pic.refresh());
            self.pic_output.store(pic.output, Ordering::Release);
            a.resolve(map);
            r
        };
        self.irqchip_after(a);
        r
    }

    /// An irqfd without an MSI route was signalled (work item, process
    /// context): KVM's `irqfd_inject` — a pulse from the userspace source,
    /// or the line held high from the resample source until the guest's
    /// EOI.
    pub(crate) fn irqfd_inject(&self, gsi: u32, resample: bool) {
        use nsvm_core::irq_routing::KVM_USERSPACE_IRQ_SOURCE_ID as USER;
        if resample {
            self.set_irq(KVM_IRQFD_RESAMPLE_IRQ_SOURCE_ID, gsi, true);
        } else {
            self.set_irq(USER, gsi, true);
            self.set_irq(USER, gsi, false);
        }
    }
}
