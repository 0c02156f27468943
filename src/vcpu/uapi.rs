// SPDX-License-Identifier: GPL-2.0
//! The vCPU fd's ioctls: argument marshalling between userspace and the
//! vCPU state (KVM's structs, errnos as `kvm_arch_vcpu_ioctl` returns them).

use kernel::prelude::*;

use kernel::sync::Arc;
use kernel::uaccess::{UserPtr, UserSlice};

use nsvm_core::cpuid::SvmFeatures;
use nsvm_core::fpu;
use nsvm_core::kvm::{self, Regs, Sregs};
use nsvm_core::uapi::{self, Refusal};

use super::{CpuidEntry, Vcpu};
use crate::hw;

/// Most CPUID entries `KVM_SET_CPUID2` accepts (KVM's limit).
const MAX_CPUID_ENTRIES: usize = 256;

impl Vcpu {
    /// Handles an ioctl on the vCPU fd.
    pub(crate) fn ioctl(self: &Arc<Self>, cmd: u32, arg: usize) -> Result<isize> {
        // As for the VM fd: statistics are readable from other processes.
        if cmd == uapi::kvm::GET_STATS_FD {
            return Ok(hw::files::new_stats_fd(self.clone())? as isize);
        }
        if !self.vm.mm.is_current() {
            return Err(EIO);
        }
        let user = |len: usize| UserSlice::new(UserPtr::from_addr(arg), len);
        match cmd {
            uapi::kvm::RUN => {
                if arg != 0 {
                    return Err(EINVAL);
                }
                self.run()
            }
            uapi::kvm::GET_REGS => {
                let r = Self::user_regs(&mut self.state.lock());
                user(Regs::SIZE).writer().write_slice(&r.to_bytes())?;
                Ok(0)
            }
            uapi::kvm::SET_REGS => {
                let mut b = [0u8; Regs::SIZE];
                user(Regs::SIZE).reader().read_slice(&mut b)?;
                Self::set_user_regs(&mut self.state.lock(), &Regs::from_bytes(&b));
                Ok(0)
            }
            uapi::kvm::GET_SREGS => {
                let s = self.state.lock().get_sregs();
                user(Sregs::SIZE).writer().write_slice(&s.to_bytes())?;
                Ok(0)
            }
            uapi::kvm::SET_SREGS => {
                let mut b = [0u8; Sregs::SIZE];
                user(Sregs::SIZE).reader().read_slice(&mut b)?;
                // Checked against the vCPU's features under its lock.
                self.state.lock().set_sregs(&Sregs::from_bytes(&b))?;
                Ok(0)
            }
            uapi::kvm::SET_CPUID2 => self.set_cpuid(arg),
            uapi::kvm::GET_VCPU_EVENTS => {
                let e = self.user_events(&mut self.state.lock());
                user(kvm::vcpu_events::SIZE).writer().write_slice(&e.to_bytes())?;
                Ok(0)
            }
            uapi::kvm::SET_VCPU_EVENTS => {
                let mut b = [0u8; kvm::vcpu_events::SIZE];
                user(kvm::vcpu_events::SIZE).reader().read_slice(&mut b)?;
                self.set_user_events(&mut self.state.lock(), &kvm::VcpuEvents::from_bytes(&b))?;
                Ok(0)
            }
            uapi::kvm::GET_NESTED_STATE => self.get_nested_state(arg),
            uapi::kvm::SET_NESTED_STATE => self.set_nested_state(arg),
            uapi::kvm::INTERRUPT => self.interrupt(arg),
            uapi::kvm::KVMCLOCK_CTRL => self.kvmclock_ctrl(),
            uapi::kvm::NMI => {
                // KVM_NMI: queued; delivered when L1's GIF and NMI masking
                // allow (or as #VMEXIT(NMI) when L2 runs and L1 intercepts).
                self.state.lock().ev.nmi_pending = true;
                Ok(0)
            }
            uapi::kvm::GET_MSRS | uapi::kvm::SET_MSRS => self.msrs(arg, cmd == uapi::kvm::SET_MSRS),
            uapi::kvm::GET_FPU => {
                let b = self.state.lock().get_fpu();
                user(fpu::KVM_FPU_SIZE).writer().write_slice(&b)?;
                Ok(0)
            }
            uapi::kvm::SET_FPU => {
                let mut b = [0u8; fpu::KVM_FPU_SIZE];
                user(fpu::KVM_FPU_SIZE).reader().read_slice(&mut b)?;
                self.state.lock().set_fpu(&b)?;
                Ok(0)
            }
            uapi::kvm::GET_TSC_KHZ => Ok(hw::cpu::tsc_khz() as isize),
            uapi::kvm::GET_LAPIC => self.get_lapic(arg),
            uapi::kvm::SET_LAPIC => self.set_lapic(arg),
            uapi::kvm::GET_MP_STATE => self.get_mp_state(arg),
            uapi::kvm::SET_MP_STATE => self.set_mp_state(arg),
            uapi::kvm::SET_VAPIC_ADDR => self.set_vapic_addr(arg),
            uapi::kvm::GET_XSAVE => self.get_xsave(arg, nsvm_core::xsave::KVM_XSAVE_SIZE),
            uapi::kvm::GET_XSAVE2 => self.get_xsave(arg, super::xstate::uabi_size()),
            uapi::kvm::SET_XSAVE => self.set_xsave(arg),
            uapi::kvm::GET_XCRS => self.get_xcrs(arg),
            uapi::kvm::SET_XCRS => self.set_xcrs(arg),
            uapi::kvm::GET_DEBUGREGS => self.get_debugregs(arg),
            uapi::kvm::SET_DEBUGREGS => self.set_debugregs(arg),
            uapi::kvm::GET_CPUID2 => self.get_cpuid(arg),
            uapi::kvm::X86_SETUP_MCE => self.setup_mce(arg),
            uapi::kvm::SET_GUEST_DEBUG => self.set_guest_debug(arg),
            uapi::kvm::X86_SET_MCE => self.set_mce(arg),
            uapi::kvm::ENABLE_CAP => self.enable_cap(arg),
            uapi::kvm::HAS_DEVICE_ATTR | uapi::kvm::GET_DEVICE_ATTR | uapi::kvm::SET_DEVICE_ATTR => self.device_attr(cmd, arg),
            // Unknown vCPU ioctls are EINVAL (kvm_vcpu_ioctl for other
            // magics, kvm_arch_vcpu_ioctl for KVM's), a few as KVM refuses
            // them (`uapi::vcpu_refusal`).
            _ => refuse(arg, uapi::vcpu_refusal(cmd)),
        }
    }

    /// `KVM_HAS/GET/SET_DEVICE_ATTR` on the vCPU fd: the struct is copied
    /// first (EFAULT), then any group or attribute but the TSC offset is
    /// ENXIO; the value at `addr` is a u64 (EFAULT). GET gives L1's offset
    /// (KVM's `l1_tsc_offset`, also while L2 runs); SET makes it L1's
    /// offset (`nsvm_core::tsc::vcpu_attr`; `kvm_arch_tsc_*_attr`).
    fn device_attr(&self, cmd: u32, arg: usize) -> Result<isize> {
        use nsvm_core::tsc::vcpu_attr::{DeviceAttr, SIZE};
        let mut b = [0u8; SIZE];
        UserSlice::new(UserPtr::from_addr(arg), SIZE).reader().read_slice(&mut b)?;
        let a = DeviceAttr::parse(&b);
        a.check().map_err(|e| Error::from_errno(-e.number()))?;
        let val = UserSlice::new(UserPtr::from_addr(a.addr as usize), 8);
        match cmd {
            uapi::kvm::HAS_DEVICE_ATTR => Ok(0),
            uapi::kvm::GET_DEVICE_ATTR => {
                let off = self.state.lock().cpu.vmcb.get().control.tsc_offset;
                val.writer().write_slice(&off.to_ne_bytes())?;
                Ok(0)
            }
            _ => {
                let mut d = [0u8; 8];
                val.reader().read_slice(&mut d)?;
                let mut st = self.state.lock();
                let (off, gen) = self.vm.tsc_set_offset(u64::from_ne_bytes(d));
                st.set_l1_tsc_offset(off);
                st.cpu.tsc_gen = gen;
                Ok(0)
            }
        }
    }

    pub(super) fn set_cpuid(&self, arg: usize) -> Result<isize> {
        let mut hdr = [0u8; 8];
        UserSlice::new(UserPtr::from_addr(arg), 8).reader().read_slice(&mut hdr)?;
        let nent = u32::from_ne_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]) as usize;
        if nent > MAX_CPUID_ENTRIES {
            return Err(E2BIG);
        }
        let mut r = UserSlice::new(UserPtr::from_addr(arg + 8), nent * 40).reader();
        let mut v = KVec::with_capacity(nent, GFP_KERNEL_ACCOUNT)?;
        for _ in 0..nent {
            let mut e = [0u8; 40];
            r.read_slice(&mut e)?;
            let w = |i: usize| u32::from_ne_bytes([e[4 * i], e[4 * i + 1], e[4 * i + 2], e[4 * i + 3]]);
            v.push(
                CpuidEntry { function: w(0), index: w(1), flags: w(2), regs: [w(3), w(4), w(5), w(6)] },
                GFP_KERNEL_ACCOUNT,
            )?;
        }
        let mut st = self.state.lock();
        // Once the vCPU has run, or while L2 runs, the table may only be
        // set again as it is (KVM's kvm_cpuid_check_equal: QEMU repeats it
        // for a hot-plugged vCPU); the bits that follow the guest's state
        // are compared as they are now on both sides. Anything else EINVAL.
        if st.cpu.entered || st.nst.l2.is_some() {
            let (cr4, xcr0) = (st.vmcb().save.cr4, st.cpu.xcr0);
            let adj = |e: &CpuidEntry| nsvm_core::cpuid::runtime_adjust(e.function, e.index, e.regs, cr4, || super::exits::xsave_size(xcr0));
            let same = v.len() == st.cpu.cpuid.len()
                && v.iter().zip(st.cpu.cpuid.iter()).all(|(a, b)| a.function == b.function && a.index == b.index && a.flags == b.flags && adj(a) == adj(b));
            return if same { Ok(0) } else { Err(EINVAL) };
        }
        st.nst.svm_exposed = v.iter().any(|e| e.function == 0x8000_0001 && e.regs[2] & nsvm_core::cpuid::EXT_FEATURES_ECX_SVM != 0);
        let edx = v.iter().find(|e| e.function == nsvm_core::cpuid::LEAF_SVM).map_or(0, |e| e.regs[3]);
        st.nst.l1_features = if st.nst.svm_exposed { SvmFeatures::from_bits_truncate(edx) & nsvm_core::cpuid::L1_FEATURES } else { SvmFeatures::empty() };
        st.cpu.features = super::state::vcpu_features(&v);
        let ecx1 = v.iter().find(|e| e.function == 1).map_or(0, |e| e.regs[2]);
        if let Some(a) = st.apic.as_mut() {
            // CPUID.1:ECX[21] x2APIC, [24] TSC-deadline timer: what the
            // APIC then allows (KVM's kvm_apic_set_version, timer_mode_mask).
            a.m.cpuid_x2apic = ecx1 & (1 << 21) != 0;
            a.m.cpuid_tsc_deadline = ecx1 & (1 << 24) != 0;
            // Not with the in-kernel I/O APIC, which has no EOI register
            // (KVM's kvm_lapic_advertise_suppress_eoi_broadcast quirk).
            a.m.advertise_directed_eoi = self.vm.x2apic_api.load(core::sync::atomic::Ordering::Relaxed) & super::lapic::X2APIC_DISABLE_SUPPRESS_EOI_BROADCAST == 0 && !a.full;
            a.m.set_version();
        }
        st.cpu.cpuid = v;
        Ok(0)
    }

    /// `KVM_GET_MSRS` / `KVM_SET_MSRS`: `struct kvm_msrs { u32 nmsrs; u32 pad;
    /// struct kvm_msr_entry { u32 index; u32 reserved; u64 data; } entries[]; }`.
    /// As KVM's `msr_io`: `E2BIG` from `MAX_IO_MSRS` entries up, every entry
    /// read before any is processed (`EFAULT` changes nothing), processing
    /// stops at the first refused one, GET writes all entries back; returns
    /// how many were processed.
    pub(super) fn msrs(&self, arg: usize, set: bool) -> Result<isize> {
        let mut ents = read_msr_entries(arg)?;
        let mut done = 0;
        {
            let mut st = self.state.lock();
            for e in ents.iter_mut() {
                let index = u32::from_ne_bytes([e[0], e[1], e[2], e[3]]);
                if set {
                    let mut d = [0u8; 8];
                    d.copy_from_slice(&e[8..16]);
                    let v = u64::from_ne_bytes(d);
                    if index == nsvm_core::msr::TSC {
                        // Userspace's TSC writes are matched across vCPUs
                        // (`nsvm_core::tsc`), as KVM's.
                        let (off, gen) = self.vm.tsc_write(v, true);
                        st.set_l1_tsc_offset(off);
                        st.cpu.tsc_gen = gen;
                        self.stats.log_now(nsvm_core::evlog::Kind::TscWrite, v, off, u64::MAX);
                    } else if !self.kvmclock_msr(&mut st, index, Some(v), true).map_or_else(|| st.write_msr_as(index, v, true), |r| r.is_some()) {
                        break;
                    }
                } else {
                    match self.kvmclock_msr(&mut st, index, None, true).unwrap_or_else(|| st.read_msr_as(index, true)) {
                        Some(v) => e[8..16].copy_from_slice(&v.to_ne_bytes()),
                        None => {
                            // KVM zeroes the data of a read that failed
                            // (kvm_do_msr_access).
                            e[8..16].fill(0);
                            break;
                        }
                    }
                }
                done += 1;
            }
            self.apic_flush(&mut st);
        }
        if !set {
            let mut w = UserSlice::new(UserPtr::from_addr(arg + 8), 16 * ents.len()).writer();
            for e in ents.iter() {
                w.write_slice(e)?;
            }
        }
        Ok(done as isize)
    }

    /// `KVM_ENABLE_CAP` on the vCPU fd (KVM's `kvm_vcpu_ioctl_enable_cap`):
    /// the struct read first (`EFAULT`), flags `EINVAL`, then
    /// `KVM_CAP_ENFORCE_PV_FEATURE_CPUID` (args[0] as a boolean); every
    /// other capability `EINVAL`.
    pub(super) fn enable_cap(&self, arg: usize) -> Result<isize> {
        let mut b = [0u8; uapi::sizes::KVM_ENABLE_CAP];
        UserSlice::new(UserPtr::from_addr(arg), b.len()).reader().read_slice(&mut b)?;
        let w = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        if w(4) != 0 {
            return Err(EINVAL);
        }
        match w(0) {
            uapi::cap::ENFORCE_PV_FEATURE_CPUID => {
                self.state.lock().cpu.pv_enforce = w(8) != 0 || w(12) != 0;
                Ok(0)
            }
            _ => Err(EINVAL),
        }
    }

    /// `KVM_INTERRUPT` (no in-kernel irqchip): queue external interrupt
    /// `irq`, injected when the guest can take it. As in KVM without an
    /// in-kernel irqchip (`kvm_vcpu_ioctl_interrupt`), a second one before
    /// the first was injected replaces it.
    pub(super) fn interrupt(&self, arg: usize) -> Result<isize> {
        let mut b = [0u8; 4];
        UserSlice::new(UserPtr::from_addr(arg), 4).reader().read_slice(&mut b)?;
        let irq = u32::from_ne_bytes(b);
        if irq >= 256 {
            return Err(EINVAL);
        }
        // The PICs are in the kernel: refused (KVM's kvm_vcpu_ioctl_interrupt).
        if self.vm.irqchip_full() {
            return Err(ENXIO);
        }
        let mut st = self.state.lock();
        // With an in-kernel APIC, KVM_INTERRUPT is an ExtINT: one at a time.
        if st.apic.is_some() && st.ev.irq.is_some() {
            return Err(EEXIST);
        }
        st.ev.irq = Some(irq as u8);
        Ok(0)
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

/// The entries of a `struct kvm_msrs` at `arg`, all read before any is
/// processed (`EFAULT` changes nothing), `E2BIG` from `MAX_IO_MSRS` entries
/// up: KVM's `msr_io`, for the vCPU's and the system fd's `KVM_GET_MSRS`.
pub(crate) fn read_msr_entries(arg: usize) -> Result<KVec<[u8; 16]>> {
    let mut hdr = [0u8; 8];
    UserSlice::new(UserPtr::from_addr(arg), 8).reader().read_slice(&mut hdr)?;
    let n = u32::from_ne_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]) as usize;
    if n >= uapi::MAX_IO_MSRS {
        return Err(E2BIG);
    }
    let mut ents: KVec<[u8; 16]> = KVec::with_capacity(n, GFP_KERNEL)?;
    let mut r = UserSlice::new(UserPtr::from_addr(arg + 8), 16 * n).reader();
    for _ in 0..n {
        let mut e = [0u8; 16];
        r.read_slice(&mut e)?;
        ents.push(e, GFP_KERNEL)?;
    }
    Ok(ents)
}
