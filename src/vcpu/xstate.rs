// SPDX-License-Identifier: GPL-2.0
//! The vCPU ioctls over state KVM exposes in whole-structure form:
//! `KVM_GET/SET_XSAVE`, `KVM_GET_XSAVE2`, `KVM_GET/SET_XCRS`,
//! `KVM_GET/SET_DEBUGREGS` and `KVM_GET_CPUID2` (argument copying and
//! errnos as `kvm_arch_vcpu_ioctl`; the formats and rules are
//! `nsvm_core::xsave`'s).

use kernel::prelude::*;
use kernel::uaccess::{UserPtr, UserSlice};

use nsvm_core::fpu::xstate;
use nsvm_core::xsave::{self, DebugRegs, KVM_DEBUGREGS_SIZE, KVM_XCRS_SIZE, KVM_XSAVE_SIZE};

use super::{Vcpu, VcpuState};
use crate::{hw, vmrun};

/// Where extended component `i` lives in the standard XSAVE format:
/// (offset, size) from CPUID Fn0000_000D_EBX/EAX[i] (APM vol. 3 CPUID).
fn layout(i: u32) -> (u32, u32) {
    let (size, off, ..) = hw::cpu::cpuid(0xd, i);
    (off, size)
}

/// What the host saves for guests: its XCR0 (x87 and SSE without XSAVE),
/// KVM's `kvm_caps.supported_xcr0`.
fn host_supported() -> u64 {
    let h = hw::cpu::host_xcr0();
    if h == 0 {
        xstate::X87 | xstate::SSE
    } else {
        h
    }
}

/// Bytes of the userspace XSAVE format `KVM_GET_XSAVE2` copies and
/// `KVM_SET_XSAVE` reads (KVM's `guest_fpu.uabi_size`): the standard-format
/// size of the host's components, at least the legacy region and header.
pub(super) fn uabi_size() -> usize {
    let (_, ebx, ..) = hw::cpu::cpuid(0xd, 0);
    (ebx as usize).clamp(nsvm_core::fpu::IMAGE_PREFIX_SIZE, KVM_XSAVE_SIZE)
}

impl VcpuState {
    /// XCR0 bits the vCPU's CPUID offers (leaf 0xD.0 EDX:EAX) within what
    /// the host saves (KVM's `guest_supported_xcr0`).
    pub(super) fn guest_supported_xcr0(&self) -> u64 {
        let e = self.cpu.cpuid.iter().find(|e| e.function == 0xd && e.index == 0);
        e.map_or(0, |e| u64::from(e.regs[0]) | (u64::from(e.regs[3]) << 32)) & host_supported()
    }

    /// The guest's XSAVE image (one page), current (`guest_fpu_image`).
    fn image(&mut self) -> Result<KVec<u8>> {
        let mut v = KVec::from_elem(0u8, KVM_XSAVE_SIZE, GFP_KERNEL)?;
        self.guest_fpu_image().read_slice(0, &mut v);
        Ok(v)
    }
}

impl Vcpu {
    /// `KVM_GET_XSAVE` (`len` 4096) and `KVM_GET_XSAVE2` (`len` = the size
    /// `KVM_CAP_XSAVE2` reports).
    pub(super) fn get_xsave(&self, arg: usize, len: usize) -> Result<isize> {
        let mut out = KVec::from_elem(0u8, core::cmp::max(len, KVM_XSAVE_SIZE), GFP_KERNEL)?;
        {
            let mut st = self.state.lock();
            let img = st.image()?;
            let mask = st.guest_supported_xcr0() | xstate::X87 | xstate::SSE;
            xsave::to_uabi(&img, mask, vmrun::mxcsr_mask(), &layout, &mut out);
        }
        UserSlice::new(UserPtr::from_addr(arg), len).writer().write_slice(&out[..len])?;
        Ok(0)
    }

    /// `KVM_SET_XSAVE`: reads [`uabi_size`] bytes (`EFAULT` first), then
    /// `EINVAL` for what `xsave::from_uabi` refuses, nothing changed.
    pub(super) fn set_xsave(&self, arg: usize) -> Result<isize> {
        let n = uabi_size();
        let mut buf = KVec::from_elem(0u8, KVM_XSAVE_SIZE, GFP_KERNEL)?;
        UserSlice::new(UserPtr::from_addr(arg), n).reader().read_slice(&mut buf[..n])?;
        let mut st = self.state.lock();
        let mut img = st.image()?;
        xsave::from_uabi(&buf, host_supported(), vmrun::mxcsr_mask(), &layout, &mut img).map_err(|_| EINVAL)?;
        st.guest_fpu_image().write(0, &img);
        Ok(0)
    }

    /// `KVM_GET_XCRS`: XCR0 (no entry on a host without XSAVE).
    pub(super) fn get_xcrs(&self, arg: usize) -> Result<isize> {
        let xcr0 = self.state.lock().cpu.xcr0;
        let b = xsave::xcrs_to_bytes((hw::cpu::host_xcr0() != 0).then_some(xcr0));
        UserSlice::new(UserPtr::from_addr(arg), KVM_XCRS_SIZE).writer().write_slice(&b)?;
        Ok(0)
    }

    /// `KVM_SET_XCRS`: `EFAULT`, then `EINVAL` without host XSAVE, for
    /// more than 16 entries, flags, or an XCR0 the vCPU's CPUID does not
    /// allow (`xsave::xcr0_valid`).
    pub(super) fn set_xcrs(&self, arg: usize) -> Result<isize> {
        let mut b = [0u8; KVM_XCRS_SIZE];
        UserSlice::new(UserPtr::from_addr(arg), KVM_XCRS_SIZE).reader().read_slice(&mut b)?;
        if hw::cpu::host_xcr0() == 0 {
            return Err(EINVAL);
        }
        let mut st = self.state.lock();
        let sup = st.guest_supported_xcr0();
        if let Some(v) = xsave::xcrs_from_bytes(&b, sup).map_err(|_| EINVAL)? {
            st.cpu.xcr0 = v;
        }
        Ok(0)
    }

    /// `KVM_GET_DEBUGREGS`: DR0-3 and the running level's DR6/DR7.
    pub(super) fn get_debugregs(&self, arg: usize) -> Result<isize> {
        let r = {
            let mut st = self.state.lock();
            let (db, hw_bp, saved) = (st.cpu.db, st.cpu.dbg.hw_bp(), st.cpu.dbg_guest_dr7);
            let v = st.vmcb();
            // The guest's DR7, not the debugger's (KVM_SET_GUEST_DEBUG).
            DebugRegs { db, dr6: v.save.dr6, dr7: if hw_bp { saved } else { v.save.dr7 } }
        };
        UserSlice::new(UserPtr::from_addr(arg), KVM_DEBUGREGS_SIZE).writer().write_slice(&r.to_bytes())?;
        Ok(0)
    }

    /// `KVM_SET_DEBUGREGS`: `EFAULT`, then `EINVAL` for flags or DR6/DR7
    /// bits 63:32 (`DebugRegs::from_bytes`).
    pub(super) fn set_debugregs(&self, arg: usize) -> Result<isize> {
        let mut b = [0u8; KVM_DEBUGREGS_SIZE];
        UserSlice::new(UserPtr::from_addr(arg), KVM_DEBUGREGS_SIZE).reader().read_slice(&mut b)?;
        let r = DebugRegs::from_bytes(&b).map_err(|_| EINVAL)?;
        let mut st = self.state.lock();
        st.cpu.db = r.db;
        st.mark_untrusted();
        if st.cpu.dbg.hw_bp() {
            st.cpu.dbg_guest_dr7 = r.dr7;
        } else {
            st.vmcb().save.dr7 = r.dr7;
        }
        st.vmcb().save.dr6 = r.dr6;
        Ok(0)
    }

    /// `KVM_GET_CPUID2`: the table of `KVM_SET_CPUID2`. `E2BIG` when `nent`
    /// is smaller than the table (nothing written), otherwise the entries
    /// and then `nent` (KVM's order).
    pub(super) fn get_cpuid(&self, arg: usize) -> Result<isize> {
        let mut hdr = [0u8; 8];
        UserSlice::new(UserPtr::from_addr(arg), 8).reader().read_slice(&mut hdr)?;
        let nent = u32::from_ne_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]) as usize;
        let mut st = self.state.lock();
        // The bits that follow the guest's state (OSXSAVE, OSPKE, the XSAVE
        // size) as they are now, as KVM's table (kvm_update_cpuid_runtime).
        let (cr4, xcr0) = (st.vmcb().save.cr4, st.cpu.xcr0);
        let table = &st.cpu.cpuid;
        if nent < table.len() {
            return Err(E2BIG);
        }
        let mut w = UserSlice::new(UserPtr::from_addr(arg + 8), table.len() * 40).writer();
        for e in table.iter() {
            let mut b = [0u8; 40];
            let r = nsvm_core::cpuid::runtime_adjust(e.function, e.index, e.regs, cr4, || super::exits::xsave_size(xcr0));
            for (i, v) in [e.function, e.index, e.flags, r[0], r[1], r[2], r[3]].iter().enumerate() {
                b[4 * i..4 * i + 4].copy_from_slice(&v.to_ne_bytes());
            }
            w.write_slice(&b)?;
        }
        let n = table.len() as u32;
        drop(st);
        UserSlice::new(UserPtr::from_addr(arg), 4).writer().write_slice(&n.to_ne_bytes())?;
        Ok(0)
    }
}

impl Vcpu {
    /// `KVM_X86_SETUP_MCE`: `EFAULT`, then `EINVAL` for a bank count of 0
    /// or above 32 or an unsupported capability bit.
    pub(super) fn setup_mce(&self, arg: usize) -> Result<isize> {
        let mut b = [0u8; 8];
        UserSlice::new(UserPtr::from_addr(arg), 8).reader().read_slice(&mut b)?;
        self.state.lock().cpu.mce.setup(u64::from_ne_bytes(b)).map_err(|_| EINVAL)?;
        Ok(0)
    }

    /// `KVM_X86_SET_MCE`: records the error (`EINVAL` for a bank beyond
    /// MCG_CAP or a status without VAL) and raises #MC, or ends the next
    /// `KVM_RUN` in `KVM_EXIT_SHUTDOWN` for a machine check during one or
    /// with CR4.MCE clear (APM vol. 2 9.3).
    pub(super) fn set_mce(&self, arg: usize) -> Result<isize> {
        use nsvm_core::event::{Event, EventType};
        use nsvm_core::mce::{Delivery, X86Mce, KVM_X86_MCE_SIZE};
        let mut b = [0u8; KVM_X86_MCE_SIZE];
        UserSlice::new(UserPtr::from_addr(arg), KVM_X86_MCE_SIZE).reader().read_slice(&mut b)?;
        let m = X86Mce::from_bytes(&b);
        let mut st = self.state.lock();
        let cr4_mce = st.vmcb().save.cr4 & nsvm_core::x86::cr4::MCE != 0;
        match st.cpu.mce.inject(&m, cr4_mce).map_err(|_| EINVAL)? {
            Delivery::None => {}
            Delivery::MachineCheck => {
                st.mark_untrusted();
                st.inject(Event::new(EventType::Exception, 18, None));
            }
            Delivery::Shutdown => st.uexit.triple_fault = true,
        }
        Ok(0)
    }
}
