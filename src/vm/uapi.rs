// SPDX-License-Identifier: GPL-2.0
//! The VM fd's ioctls: memory slots, vCPU creation, the policy, statistics
//! fds (errnos as KVM's `kvm_vm_ioctl`). The only part of `vm` that knows
//! vCPUs: `vcpu` sits below it and uses the VM object of `vm/mod.rs`.

use kernel::prelude::*;
use kernel::sync::Arc;
use kernel::uaccess::{UserPtr, UserSlice};

use core::sync::atomic::Ordering;

use nsvm_core::memslot::{Change, SlotError};
use nsvm_core::sensitive::Policy;
use nsvm_core::uapi::{self, Refusal};

use super::{Vm, MAX_VCPUS, MAX_VCPU_IDS};
use crate::hw;
use crate::vcpu::Vcpu;

impl Vm {
    /// Handles an ioctl on the VM fd.
    pub(crate) fn ioctl(self: &Arc<Self>, cmd: u32, arg: usize) -> Result<isize> {
        // Statistics may be read from another process (nsvm stats --pid):
        // they touch no guest memory. Everything else must come from the
        // creator (KVM returns EIO here too, even for KVM_GET_STATS_FD).
        if cmd == uapi::kvm::GET_STATS_FD {
            return Ok(hw::files::new_stats_fd(self.clone())? as isize);
        }
        if !self.mm.is_current() {
            return Err(EIO);
        }
        match cmd {
            // KVM_CAP_X2APIC_API on a VM without the split irqchip: EOI
            // broadcast suppression cannot be enabled there (as KVM).
            uapi::kvm::CHECK_EXTENSION if arg as u64 == u64::from(uapi::cap::X2APIC_API) && !self.irqchip_split.load(Ordering::Acquire) => {
                Ok((uapi::cap::check_extension(arg as u64) & !(crate::vcpu::lapic::X2APIC_ENABLE_SUPPRESS_EOI_BROADCAST as i32)) as isize)
            }
            uapi::kvm::CHECK_EXTENSION => Ok(uapi::cap::check_extension_on(arg as u64, hw::cpu::num_online_cpus()) as isize),
            uapi::kvm::CREATE_VCPU => self.create_vcpu(arg),
            uapi::kvm::SET_USER_MEMORY_REGION => {
                let mut b = [0u8; 32];
                UserSlice::new(UserPtr::from_addr(arg), 32).reader().read_slice(&mut b)?;
                self.set_memory(&nsvm_core::kvm::memory_region_from_bytes(&b))
            }
            uapi::kvm::SET_USER_MEMORY_REGION2 => {
                let mut b = [0u8; 160];
                UserSlice::new(UserPtr::from_addr(arg), 160).reader().read_slice(&mut b)?;
                // guest_memfd_offset, guest_memfd and the padding mean
                // something only with KVM_MEM_GUEST_MEMFD, which the slot
                // table refuses (no guest_memfd in nsvm): ignored, as KVM
                // ignores them without that flag.
                let mut head = [0u8; 32];
                for (d, s) in head.iter_mut().zip(b.iter()) {
                    *d = *s;
                }
                self.set_memory(&nsvm_core::kvm::memory_region_from_bytes(&head))
            }
            uapi::nsvm::SET_POLICY => {
                let mut b = [0u8; Policy::SIZE];
                UserSlice::new(UserPtr::from_addr(arg), Policy::SIZE).reader().read_slice(&mut b)?;
                let p = Policy::from_bytes(&b).map_err(|_| EINVAL)?;
                self.policy_insns.store(p.instructions, Ordering::Relaxed);
                self.policy_excs.store(p.exceptions, Ordering::Relaxed);
                Ok(0)
            }
            uapi::nsvm::GET_POLICY => {
                let b = self.policy().to_bytes();
                UserSlice::new(UserPtr::from_addr(arg), Policy::SIZE).writer().write_slice(&b)?;
                Ok(0)
            }
            // Intel-only in KVM (svm_set_tss_addr does nothing): accepted as
            // a no-op so VMMs written for both work, with KVM's range check.
            uapi::kvm::SET_TSS_ADDR if arg as u64 > uapi::TSS_ADDR_MAX => Err(EINVAL),
            uapi::kvm::SET_TSS_ADDR => Ok(0),
            // The shadow MMU's page budget: nsvm has no shadow MMU (NPT01
            // grows with guest memory), so it is accepted and has no
            // effect, with KVM's check (kvm_amd with NPT keeps it unused
            // as well).
            uapi::kvm::SET_NR_MMU_PAGES if (arg as u64) < uapi::kvm::MIN_ALLOC_MMU_PAGES => Err(EINVAL),
            uapi::kvm::SET_NR_MMU_PAGES => Ok(0),
            // Intel-only too (a no-op on SVM), refused once a vCPU exists.
            uapi::kvm::SET_IDENTITY_MAP_ADDR => {
                if self.inner.lock().created_vcpus != 0 {
                    return Err(EINVAL);
                }
                let mut b = [0u8; 8];
                UserSlice::new(UserPtr::from_addr(arg), 8).reader().read_slice(&mut b)?;
                Ok(0)
            }
            uapi::kvm::ENABLE_CAP => self.enable_cap(arg),
            uapi::kvm::X86_SET_MSR_FILTER => self.set_msr_filter(arg),
            uapi::kvm::SET_BOOT_CPU_ID => {
                // KVM's order under its VM lock: a vCPU created (or being
                // created) EBUSY, then an id beyond KVM_CAP_MAX_VCPU_ID
                // EINVAL (the limit itself is accepted, as KVM compares
                // with `>`).
                // (KVM also refuses an id above KVM_CAP_MAX_VCPU_ID as
                // enabled.)
                let mut g = self.inner.lock();
                let limit = if g.max_vcpu_ids != 0 { g.max_vcpu_ids } else { MAX_VCPU_IDS };
                match nsvm_core::bsp::set_boot_cpu_id(g.created_vcpus != 0, arg as u64, limit) {
                    Ok(id) => {
                        g.bsp_vcpu_id = id;
                        Ok(0)
                    }
                    Err(nsvm_core::bsp::BootCpuError::Busy) => Err(EBUSY),
                    Err(nsvm_core::bsp::BootCpuError::Invalid) => Err(EINVAL),
                }
            }
            uapi::kvm::GET_DIRTY_LOG => self.get_dirty_log(arg),
            uapi::kvm::CLEAR_DIRTY_LOG => self.clear_dirty_log(arg),
            uapi::kvm::CREATE_IRQCHIP => self.create_irqchip(),
            uapi::kvm::CREATE_PIT => self.create_pit(None),
            uapi::kvm::CREATE_PIT2 => self.create_pit(Some(arg)),
            uapi::kvm::GET_PIT => self.get_pit(arg, false),
            uapi::kvm::GET_PIT2 => self.get_pit(arg, true),
            uapi::kvm::SET_PIT => self.set_pit(arg, false),
            uapi::kvm::SET_PIT2 => self.set_pit(arg, true),
            uapi::kvm::REINJECT_CONTROL => self.reinject_control(arg),
            uapi::kvm::GET_IRQCHIP => self.get_irqchip(arg),
            uapi::kvm::SET_IRQCHIP => self.set_irqchip(arg),
            uapi::kvm::SIGNAL_MSI => self.signal_msi(arg),
            uapi::kvm::SET_GSI_ROUTING => self.set_gsi_routing(arg),
            uapi::kvm::IRQFD => self.irqfd(arg),
            uapi::kvm::IRQ_LINE => self.irq_line(arg, false),
            uapi::kvm::IRQ_LINE_STATUS => self.irq_line(arg, true),
            uapi::kvm::GET_CLOCK => self.get_clock(arg),
            uapi::kvm::SET_CLOCK => self.set_clock(arg),
            uapi::kvm::IOEVENTFD => {
                let mut b = [0u8; nsvm_core::ioeventfd::KVM_IOEVENTFD_SIZE];
                UserSlice::new(UserPtr::from_addr(arg), b.len()).reader().read_slice(&mut b)?;
                self.ioeventfd(&nsvm_core::ioeventfd::Request::from_bytes(&b))
            }
            uapi::kvm::REGISTER_COALESCED_MMIO => self.coalesced_zone(arg, true),
            uapi::kvm::UNREGISTER_COALESCED_MMIO => self.coalesced_zone(arg, false),
            // The VM's default for its vCPUs: the host's rate (no TSC scaling).
            uapi::kvm::GET_TSC_KHZ => Ok(hw::cpu::tsc_khz() as isize),
            _ => refuse(arg, uapi::vm_refusal(cmd)),
        }
    }

    pub(super) fn set_memory(&self, r: &nsvm_core::memslot::Request) -> Result<isize> {
        // The VM lock: no vCPU uses a slot while it changes.
        let _g = self.inner.lock();
        // A dirty bitmap the change may install, allocated before the MMU
        // lock (unused ones, and the bitmap of a slot that stops logging,
        // are freed after it).
        let mut fresh = super::dirty::bitmap_for(r)?;
        let mut fresh_seen = super::dirty::bitmap_for(r)?;
        let manual = self.manual_dirty_log.load(Ordering::Relaxed);
        let (change, _old_bitmap, _old_seen) = {
            let mut m = self.mmu.lock();
            let change = m.slots.apply(r).map_err(|e| match e {
                SlotError::Invalid(_) => EINVAL,
                SlotError::Overlap => EEXIST,
                SlotError::NoSpace => ENOSPC,
            })?;
            // A slot that starts logging loses every NPT01 leaf here (2 MiB
            // ones included: it is mapped 4 KiB at a time, writable after a
            // logged write fault); one that stops may map huge pages again.
            if let Change::Delete(old) | Change::Move(old, _) | Change::Flags(old, _) = change {
                m.npt.unmap_range(old.gpa, old.end());
            }
            let old_bitmap = m.dirty_after(&change, &mut fresh, manual);
            let old_seen = m.seen_after(&change, &mut fresh_seen);
            (change, old_bitmap, old_seen)
        };
        drop(fresh);
        drop(fresh_seen);
        if let Change::Delete(_) | Change::Move(..) | Change::Flags(..) = change {
            // Even with nothing of it in NPT01: NPT02 leaves and vmcb12
            // pins may have been built from the old slot.
            self.shootdown();
        }
        Ok(0)
    }

    /// `KVM_CREATE_IRQCHIP`, with KVM's order: an irqchip already there
    /// (full or split) `EEXIST`, a vCPU already created `EINVAL`; then the
    /// two PICs and the I/O APIC (`vm/irqchip.rs`) with KVM's default GSI
    /// routes; vCPUs created afterwards get an in-kernel local APIC.
    fn create_irqchip(&self) -> Result<isize> {
        let g = self.inner.lock();
        if self.irqchip_in_kernel() {
            return Err(EEXIST);
        }
        if g.created_vcpus != 0 {
            return Err(EINVAL);
        }
        self.create_full_irqchip()?;
        drop(g);
        Ok(0)
    }

    /// `KVM_ENABLE_CAP` on the VM fd (`struct kvm_enable_cap`: cap, flags,
    /// args[4], pad): KVM's order — the struct copied (`EFAULT`), flags
    /// (`EINVAL`), then the capability's own rules; every capability nsvm
    /// cannot enable is `EINVAL`.
    fn enable_cap(&self, arg: usize) -> Result<isize> {
        let mut b = [0u8; uapi::sizes::KVM_ENABLE_CAP];
        UserSlice::new(UserPtr::from_addr(arg), b.len()).reader().read_slice(&mut b)?;
        let w = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let (cap, flags) = (w(0), w(4));
        let arg0 = u64::from(w(8)) | (u64::from(w(12)) << 32);
        if flags != 0 {
            return Err(EINVAL);
        }
        match cap {
            uapi::cap::SPLIT_IRQCHIP => {
                // KVM: too many reserved pins EINVAL; an irqchip already
                // there or a vCPU already created EEXIST.
                if arg0 > uapi::kvm::MAX_IRQ_ROUTES {
                    return Err(EINVAL);
                }
                let g = self.inner.lock();
                if self.irqchip_in_kernel() || g.created_vcpus != 0 {
                    return Err(EEXIST);
                }
                self.ioapic_pins.store(arg0 as u32, Ordering::Relaxed);
                self.irqchip_split.store(true, Ordering::Release);
                Ok(0)
            }
            uapi::cap::X2APIC_API => {
                use crate::vcpu::lapic::*;
                let valid = X2APIC_API_USE_32BIT_IDS | X2APIC_API_DISABLE_BROADCAST_QUIRK | X2APIC_ENABLE_SUPPRESS_EOI_BROADCAST | X2APIC_DISABLE_SUPPRESS_EOI_BROADCAST;
                let f = arg0 as u32;
                let both = X2APIC_ENABLE_SUPPRESS_EOI_BROADCAST | X2APIC_DISABLE_SUPPRESS_EOI_BROADCAST;
                if arg0 & !u64::from(valid) != 0
                    || f & both == both
                    || (f & X2APIC_ENABLE_SUPPRESS_EOI_BROADCAST != 0 && !self.irqchip_split.load(Ordering::Acquire))
                {
                    return Err(EINVAL);
                }
                // Flags accumulate; the two EOI-broadcast modes replace each other.
                let mut cur = self.x2apic_api.load(Ordering::Relaxed);
                if f & both != 0 {
                    cur &= !both;
                }
                self.x2apic_api.store(cur | f, Ordering::Relaxed);
                if f & X2APIC_API_DISABLE_BROADCAST_QUIRK != 0 {
                    self.apic.broadcast_quirk.store(false, Ordering::Relaxed);
                }
                Ok(0)
            }
            uapi::cap::MANUAL_DIRTY_LOG_PROTECT2 => self.enable_manual_dirty_log(arg0),
            // KVM's rules: above the limit EINVAL; below the boot CPU id
            // EINVAL; the value already in force (set, or fixed by the
            // first vCPU) succeeds again, any other once one is EINVAL.
            uapi::cap::MAX_VCPU_ID => {
                if arg0 > u64::from(MAX_VCPU_IDS) {
                    return Err(EINVAL);
                }
                let mut g = self.inner.lock();
                if u64::from(g.bsp_vcpu_id) > arg0 {
                    Err(EINVAL)
                } else if u64::from(g.max_vcpu_ids) == arg0 {
                    Ok(0)
                } else if g.max_vcpu_ids == 0 {
                    g.max_vcpu_ids = arg0 as u32;
                    Ok(0)
                } else {
                    Err(EINVAL)
                }
            }
            // args[0] non-zero: KVM_GET/SET_VCPU_EVENTS carry the pending
            // triple fault (KVM takes any value as a boolean).
            // KVM's rule: a quirk nsvm does not list EINVAL; disabled ones
            // stay disabled.
            uapi::cap::DISABLE_QUIRKS2 => {
                if arg0 & !uapi::quirks::SUPPORTED != 0 {
                    return Err(EINVAL);
                }
                self.disabled_quirks.fetch_or(arg0, Ordering::Relaxed);
                Ok(0)
            }
            // args[0] as a boolean: the guest may read MSR_PLATFORM_INFO.
            uapi::cap::MSR_PLATFORM_INFO => {
                self.platform_info_readable.store(arg0 != 0, Ordering::Relaxed);
                Ok(0)
            }
            uapi::cap::X86_USER_SPACE_MSR => self.enable_user_space_msr(arg0),
            uapi::cap::X86_TRIPLE_FAULT_EVENT => {
                self.triple_fault_event.store(arg0 != 0, Ordering::Relaxed);
                Ok(0)
            }
            // args[0] as a boolean, any time (KVM's exception_payload_enabled).
            uapi::cap::EXCEPTION_PAYLOAD => {
                self.exception_payload.store(arg0 != 0, Ordering::Relaxed);
                Ok(0)
            }
            _ => Err(EINVAL),
        }
    }

    /// `KVM_IOEVENTFD`, with KVM's order: the checks of a new registration
    /// (`EINVAL`), the eventfd (`EBADF`, `EINVAL`), a collision (`EEXIST`);
    /// removal: the eventfd, then the exact registration (`ENOENT`).
    fn ioeventfd(&self, r: &nsvm_core::ioeventfd::Request) -> Result<isize> {
        use nsvm_core::ioeventfd::find_deassign;
        if r.deassign() {
            let fd = hw::eventfd::EventFd::get(r.fd)?;
            let mut t = self.ioeventfds.lock();
            let i = find_deassign(&t, r, |h| h.same(&fd)).ok_or(ENOENT)?;
            let e = t.remove(i).map_err(|_| ENOENT)?;
            drop(t);
            drop(e);
            return Ok(0);
        }
        r.check_assign().map_err(|_| EINVAL)?;
        let fd = hw::eventfd::EventFd::get(r.fd)?;
        let e = r.entry(fd);
        let mut t = self.ioeventfds.lock();
        if t.iter().any(|o| o.collides(&e)) {
            return Err(EEXIST);
        }
        t.push(e, GFP_KERNEL_ACCOUNT)?;
        Ok(0)
    }

    /// `KVM_CREATE_VCPU`, with `kvm_vm_ioctl_create_vcpu`'s order: an id
    /// beyond the limit, then a full VM (`EINVAL`), then a used id (`EEXIST`).
    fn create_vcpu(self: &Arc<Self>, id: usize) -> Result<isize> {
        if id >= MAX_VCPU_IDS as usize {
            return Err(EINVAL);
        }
        let (word, bit) = (id / 64, 1u64 << (id % 64));
        let reset_bsp = {
            let mut g = self.inner.lock();
            if g.created_vcpus >= MAX_VCPUS {
                return Err(EINVAL);
            }
            // KVM_CAP_MAX_VCPU_ID (KVM's kvm_arch_vcpu_precreate: the
            // first vCPU fixes the limit when userspace set none).
            if g.max_vcpu_ids == 0 {
                g.max_vcpu_ids = MAX_VCPU_IDS;
            }
            if id >= g.max_vcpu_ids as usize {
                return Err(EINVAL);
            }
            if g.vcpu_ids.get(word).is_some_and(|w| w & bit != 0) {
                return Err(EEXIST);
            }
            // The id's mailbox and guest-mode word (chunks of 64 ids).
            self.apic.prepare(id as u32, &self.guest_modes)?;
            if g.vcpu_ids.len() <= word {
                let n = word + 1 - g.vcpu_ids.len();
                g.vcpu_ids.extend_with(n, 0, GFP_KERNEL_ACCOUNT)?;
            }
            g.vcpu_ids[word] |= bit;
            g.created_vcpus += 1;
            // Fixed from here: KVM_SET_BOOT_CPU_ID is EBUSY now.
            g.bsp_vcpu_id == id as u32
        };
        let r = Vcpu::create(self.clone(), id as u32, reset_bsp);
        if r.is_err() {
            let mut g = self.inner.lock();
            g.vcpu_ids[word] &= !bit;
            g.created_vcpus -= 1;
        }
        r
    }
}

/// Refuses an ioctl as KVM does ([`Refusal`]): reads what KVM would copy
/// from the argument (`EFAULT` if it cannot), then fails.
fn refuse(arg: usize, r: Refusal) -> Result<isize> {
    let mut rd = UserSlice::new(UserPtr::from_addr(arg), r.read).reader();
    let mut chunk = [0u8; 64];
    while !rd.is_empty() {
        let n = core::cmp::min(rd.len(), chunk.len());
        rd.read_slice(&mut chunk[..n])?;
    }
    Err(Error::from_errno(-r.errno.number()))
}
