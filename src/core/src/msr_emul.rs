// SPDX-License-Identifier: GPL-2.0
//! RDMSR/WRMSR semantics of the MSRs nsvm emulates for its guests (the
//! intercepted ones of the MSRPM and `KVM_GET/SET_MSRS`, `msr::GUEST_MSRS`).
//!
//! The vCPU implements [`MsrTarget`]; [`read`] and [`write`] run on every
//! MSR exit, so they only touch what the MSR needs and read the host TSC
//! (a closure) only for MSR_TSC.

use crate::msr::{self, efer, vm_cr};
use crate::vmcb::Vmcb;
use crate::x86::cr0;

/// What the MSR emulation reads and writes of a vCPU.
pub trait MsrTarget {
    /// The VMCB of the guest that runs: its save area holds most of these
    /// MSRs, its control area the TSC offset.
    fn vmcb(&mut self) -> &mut Vmcb;
    /// EFER as the running guest sees it (the VMCB's copy may have SVME
    /// forced on, APM 15.5.1).
    fn efer(&mut self) -> u64;
    /// Sets the running guest's EFER (the implementer keeps the VMCB copy
    /// valid for VMRUN).
    fn set_efer(&mut self, efer: u64);
    /// APIC_BASE.
    fn apic_base(&mut self) -> &mut u64;
    /// TSC_AUX.
    fn tsc_aux(&mut self) -> &mut u64;
    /// VM_HSAVE_PA.
    fn hsave_pa(&mut self) -> &mut u64;
    /// SVM is offered to the guest (CPUID 0x8000_0001 ECX.SVM): EFER.SVME,
    /// VM_CR and VM_HSAVE_PA exist for it.
    fn svm_exposed(&self) -> bool;
    /// The EFER bits the guest may set: defined, and with their feature
    /// offered by both the host and its CPUID (`checks::Features::efer`),
    /// so that EFER never holds a bit VMRUN then refuses (APM 15.5.1).
    fn efer_allowed(&self) -> u64;
}

/// Why a WRMSR is refused (#GP for the guest; `KVM_SET_MSRS` stops there).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteError {
    /// An MSR nsvm does not emulate (or an SVM MSR while SVM is not offered).
    Unknown,
    /// A reserved (MBZ) bit is set.
    Reserved,
    /// EFER.SVME while SVM is not offered to the guest.
    SvmNotOffered,
    /// EFER.LME changed while CR0.PG is set (APM 14.6).
    LmeWithPaging,
    /// A non-canonical address in an address MSR.
    NonCanonical,
    /// A PAT entry that is not a memory type (APM 7.8.1).
    BadPat,
    /// VM_HSAVE_PA not page-aligned or beyond the physical address width
    /// (APM 15.30.4).
    BadHsavePa,
    /// VM_CR.SVMDIS or VM_CR.LOCK set (APM 15.30.1: nsvm keeps SVM enabled
    /// and unlocked for its guest).
    VmCrLocked,
}

/// Whether `va` is in canonical form for 48-bit virtual addresses: bits
/// 63:47 all equal (APM vol. 2, "canonical address form"; WRMSR of a
/// non-canonical address to these MSRs is #GP).
pub const fn canonical(va: u64) -> bool {
    ((va as i64) << 16 >> 16) as u64 == va
}

/// Model-specific configuration MSRs a guest kernel touches on AMD and
/// Intel processors whose host values a guest must not see, and which have
/// no effect for it: they read as 0 and writes are dropped, as in KVM
/// (`kvm_get_msr_common`, `kvm_set_msr_common`). Linux's AMD setup reads
/// and writes NB_CFG at every CPU's bring-up (`amd_bus_cpu_online`).
pub const PLATFORM_ZERO: &[u32] = &[
    0xc001_001f, // NB_CFG
    0xc001_102a, // BU_CFG2
    0xc001_1022, // DC_CFG
    0xc001_1023, // TW_CFG
    0xc001_102c, // F15H_EX_CFG
];
/// Like [`PLATFORM_ZERO`] but read-only: they read as 0, writes are #GP
/// (KVM reads them as 0 and has no write case for them).
pub const PLATFORM_ZERO_RO: &[u32] = &[
    0x0000_0017, // IA32_PLATFORM_ID
    0x0000_002a, // EBL_CR_POWERON
    0x0000_0199, // IA32_PERF_CTL
    0xc001_0055, // K8_INT_PENDING_MSG
    0xc001_0058, // FAM10H_MMIO_CONF_BASE
    0xc001_0112, // K8_TSEG_ADDR
    0xc001_0113, // K8_TSEG_MASK
];
/// Write-only MSRs whose writes are dropped (microcode loading).
pub const PLATFORM_WRITE_IGNORED: &[u32] = &[
    0x0000_0079, // IA32_UCODE_WRITE
    0xc001_0020, // PATCH_LOADER
];

/// Whether an access to TSC_AUX is allowed: always for the host
/// (`KVM_GET/SET_MSRS`), for the guest only when its CPUID offers RDTSCP
/// (8000_0001h EDX bit 27) or RDPID (7.0 ECX bit 22), the instructions that
/// read it (KVM's `__kvm_get_msr`/`__kvm_set_msr`); otherwise #GP.
pub const fn tsc_aux_allowed(host: bool, cpuid_8000_0001_edx: u32, cpuid_7_ecx: u32) -> bool {
    host || cpuid_8000_0001_edx & (1 << 27) != 0 || cpuid_7_ecx & (1 << 22) != 0
}

/// RDMSR of `index`: `None` for an MSR nsvm does not emulate (#GP). MSR_TSC
/// reads `host_tsc() + TSC_OFFSET` (APM 15.30.5 without TSC scaling).
#[inline]
pub fn read<T: MsrTarget + ?Sized>(t: &mut T, index: u32, host_tsc: impl FnOnce() -> u64) -> Option<u64> {
    let svm = t.svm_exposed();
    Some(match index {
        msr::EFER => t.efer(),
        msr::APIC_BASE => *t.apic_base(),
        msr::TSC_AUX => *t.tsc_aux(),
        msr::VM_HSAVE_PA if svm => *t.hsave_pa(),
        // SVMDIS and LOCK clear: SVM usable and not locked (APM 15.30.1).
        msr::VM_CR if svm => 0,
        msr::TSC => host_tsc().wrapping_add(t.vmcb().control.tsc_offset),
        // No LBR virtualization (as kvm_amd with lbrv=0): DEBUGCTL and the
        // last-branch MSRs read 0.
        msr::DEBUGCTL | msr::LAST_BRANCH_FIRST..=msr::LAST_BRANCH_LAST => 0,
        _ => {
            let s = &t.vmcb().save;
            match index {
                msr::STAR => s.star,
                msr::LSTAR => s.lstar,
                msr::CSTAR => s.cstar,
                msr::SFMASK => s.sfmask,
                msr::KERNEL_GS_BASE => s.kernel_gs_base,
                msr::FS_BASE => s.fs.base,
                msr::GS_BASE => s.gs.base,
                msr::SYSENTER_CS => s.sysenter_cs,
                msr::SYSENTER_ESP => s.sysenter_esp,
                msr::SYSENTER_EIP => s.sysenter_eip,
                msr::PAT => s.g_pat,
                i if PLATFORM_ZERO.contains(&i) || PLATFORM_ZERO_RO.contains(&i) => 0,
                _ => return None,
            }
        }
    })
}

/// WRMSR of `val` to `index`. `phys_bits` is the guest's physical address
/// width (VM_HSAVE_PA); `host_tsc` is called only for MSR_TSC, whose write
/// sets TSC_OFFSET so that the guest reads `val` now.
#[inline]
pub fn write<T: MsrTarget + ?Sized>(t: &mut T, index: u32, val: u64, phys_bits: u8, host_tsc: impl FnOnce() -> u64) -> Result<(), WriteError> {
    match index {
        msr::EFER => {
            // APM 3.1.7: MBZ bits are #GP (undefined ones, and those of
            // features the guest is not offered), and SVME without SVM
            // support. LMA is read-only: it follows LME && CR0.PG (APM
            // 14.6), and changing LME while paging is on is #GP.
            if val & !(t.efer_allowed() | efer::SVME) != 0 {
                return Err(WriteError::Reserved);
            }
            if val & efer::SVME != 0 && !t.svm_exposed() {
                return Err(WriteError::SvmNotOffered);
            }
            let cur = t.efer();
            if t.vmcb().save.cr0 & cr0::PG != 0 && (val ^ cur) & efer::LME != 0 {
                return Err(WriteError::LmeWithPaging);
            }
            t.set_efer((val & !efer::LMA) | (cur & efer::LMA));
        }
        msr::TSC_AUX => {
            // Bits 63:32 are reserved.
            if val >> 32 != 0 {
                return Err(WriteError::Reserved);
            }
            *t.tsc_aux() = val;
        }
        msr::APIC_BASE => *t.apic_base() = val,
        msr::VM_HSAVE_PA if t.svm_exposed() => {
            if !msr::hsave_pa_valid(val, phys_bits) {
                return Err(WriteError::BadHsavePa);
            }
            *t.hsave_pa() = val;
        }
        // Writes that keep SVMDIS and LOCK clear are accepted and change
        // nothing (the other bits have no effect for a guest).
        msr::VM_CR if t.svm_exposed() => {
            if val & (vm_cr::SVMDIS | vm_cr::LOCK) != 0 {
                return Err(WriteError::VmCrLocked);
            }
        }
        msr::TSC => {
            let now = host_tsc();
            t.vmcb().control.tsc_offset = val.wrapping_sub(now);
        }
        // Reserved bits are #GP (APM 13.1.1.6); the defined ones are
        // accepted and have no effect: nsvm virtualizes neither LBRs nor
        // BTF or the performance-monitor pins (kvm_amd with lbrv=0 ignores
        // every value, reserved bits included).
        msr::DEBUGCTL if val & !msr::DEBUGCTL_DEFINED != 0 => return Err(WriteError::Reserved),
        msr::DEBUGCTL => {}
        msr::LSTAR | msr::CSTAR | msr::KERNEL_GS_BASE | msr::FS_BASE | msr::GS_BASE | msr::SYSENTER_ESP
        | msr::SYSENTER_EIP
            if !canonical(val) =>
        {
            return Err(WriteError::NonCanonical)
        }
        msr::PAT if !msr::pat_valid(val) => return Err(WriteError::BadPat),
        _ => {
            let s = &mut t.vmcb().save;
            match index {
                msr::STAR => s.star = val,
                msr::LSTAR => s.lstar = val,
                msr::CSTAR => s.cstar = val,
                // SFMASK: bits 63:32 are reserved; they are dropped.
                msr::SFMASK => s.sfmask = val & 0xffff_ffff,
                msr::KERNEL_GS_BASE => s.kernel_gs_base = val,
                msr::FS_BASE => s.fs.base = val,
                msr::GS_BASE => s.gs.base = val,
                // SYSENTER_CS is a selector: the low 16 bits are kept.
                msr::SYSENTER_CS => s.sysenter_cs = val & 0xffff,
                msr::SYSENTER_ESP => s.sysenter_esp = val,
                msr::SYSENTER_EIP => s.sysenter_eip = val,
                msr::PAT => s.g_pat = val,
                i if PLATFORM_ZERO.contains(&i) || PLATFORM_WRITE_IGNORED.contains(&i) => {}
                _ => return Err(WriteError::Unknown),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct T {
        vmcb: Box<Vmcb>,
        efer: u64,
        apic_base: u64,
        tsc_aux: u64,
        hsave_pa: u64,
        svm: bool,
        efer_ok: u64,
    }

    impl T {
        fn new(svm: bool) -> Self {
            Self { vmcb: Box::new(Vmcb::ZERO), efer: 0, apic_base: 0xfee0_0900, tsc_aux: 0, hsave_pa: 0, svm, efer_ok: !efer::RESERVED }
        }
    }

    impl MsrTarget for T {
        fn vmcb(&mut self) -> &mut Vmcb {
            &mut self.vmcb
        }
        fn efer(&mut self) -> u64 {
            self.efer
        }
        fn set_efer(&mut self, e: u64) {
            self.efer = e;
            self.vmcb.save.efer = e | efer::SVME;
        }
        fn apic_base(&mut self) -> &mut u64 {
            &mut self.apic_base
        }
        fn tsc_aux(&mut self) -> &mut u64 {
            &mut self.tsc_aux
        }
        fn hsave_pa(&mut self) -> &mut u64 {
            &mut self.hsave_pa
        }
        fn svm_exposed(&self) -> bool {
            self.svm
        }
        fn efer_allowed(&self) -> u64 {
            self.efer_ok
        }
    }

    fn no_tsc() -> u64 {
        panic!("host TSC read for an MSR other than TSC")
    }

    fn w(t: &mut T, i: u32, v: u64) -> Result<(), WriteError> {
        write(t, i, v, 48, no_tsc)
    }
    fn r(t: &mut T, i: u32) -> Option<u64> {
        read(t, i, no_tsc)
    }

    #[test]
    fn efer_rules() {
        let mut t = T::new(false);
        assert_eq!(w(&mut t, msr::EFER, 1 << 1), Err(WriteError::Reserved));
        assert_eq!(w(&mut t, msr::EFER, 1 << 63), Err(WriteError::Reserved));
        assert_eq!(w(&mut t, msr::EFER, efer::SVME), Err(WriteError::SvmNotOffered));
        assert_eq!(w(&mut t, msr::EFER, efer::LME | efer::SCE | efer::NXE), Ok(()));
        assert_eq!(r(&mut t, msr::EFER), Some(efer::LME | efer::SCE | efer::NXE));
        assert_eq!(t.vmcb.save.efer, efer::LME | efer::SCE | efer::NXE | efer::SVME);
        // LMA is read-only: a write can neither set nor clear it.
        assert_eq!(w(&mut t, msr::EFER, efer::LME | efer::LMA), Ok(()));
        assert_eq!(t.efer, efer::LME);
        t.efer = efer::LME | efer::LMA;
        t.vmcb.save.cr0 = cr0::PG | cr0::PE;
        assert_eq!(w(&mut t, msr::EFER, efer::LME | efer::NXE), Ok(()));
        assert_eq!(t.efer, efer::LME | efer::LMA | efer::NXE);
        // LME may not change with paging on, in either direction.
        assert_eq!(w(&mut t, msr::EFER, efer::NXE), Err(WriteError::LmeWithPaging));
        assert_eq!(t.efer, efer::LME | efer::LMA | efer::NXE);
        t.efer = 0;
        assert_eq!(w(&mut t, msr::EFER, efer::LME), Err(WriteError::LmeWithPaging));
        t.vmcb.save.cr0 = cr0::PE;
        assert_eq!(w(&mut t, msr::EFER, efer::LME), Ok(()));
        let mut t = T::new(true);
        assert_eq!(w(&mut t, msr::EFER, efer::SVME), Ok(()));
        assert_eq!(r(&mut t, msr::EFER), Some(efer::SVME));
        // A defined bit whose feature the guest is not offered is reserved
        // too (VMRUN would refuse the state).
        for b in [efer::TCE, efer::FFXSR, efer::LMSLE, efer::NXE, efer::LME] {
            t.efer_ok = !efer::RESERVED & !b;
            assert_eq!(w(&mut t, msr::EFER, efer::SVME | b), Err(WriteError::Reserved), "{b:#x}");
            t.efer_ok = !efer::RESERVED;
            assert_eq!(w(&mut t, msr::EFER, efer::SVME | b), Ok(()), "{b:#x}");
            assert_eq!(w(&mut t, msr::EFER, efer::SVME), Ok(()));
        }
    }

    #[test]
    fn svm_msrs_exist_only_with_svm() {
        let mut t = T::new(false);
        assert_eq!(r(&mut t, msr::VM_HSAVE_PA), None);
        assert_eq!(r(&mut t, msr::VM_CR), None);
        assert_eq!(w(&mut t, msr::VM_HSAVE_PA, 0x1000), Err(WriteError::Unknown));
        assert_eq!(w(&mut t, msr::VM_CR, 0), Err(WriteError::Unknown));
        let mut t = T::new(true);
        assert_eq!(r(&mut t, msr::VM_CR), Some(0));
        assert_eq!(w(&mut t, msr::VM_CR, vm_cr::DPD), Ok(()));
        assert_eq!(w(&mut t, msr::VM_CR, vm_cr::SVMDIS), Err(WriteError::VmCrLocked));
        assert_eq!(w(&mut t, msr::VM_CR, vm_cr::LOCK), Err(WriteError::VmCrLocked));
        assert_eq!(r(&mut t, msr::VM_CR), Some(0));
    }

    #[test]
    fn hsave_pa_alignment_and_width() {
        let mut t = T::new(true);
        assert_eq!(w(&mut t, msr::VM_HSAVE_PA, 0x12_3000), Ok(()));
        assert_eq!(r(&mut t, msr::VM_HSAVE_PA), Some(0x12_3000));
        assert_eq!(w(&mut t, msr::VM_HSAVE_PA, 0x12_3800), Err(WriteError::BadHsavePa));
        assert_eq!(w(&mut t, msr::VM_HSAVE_PA, 1 << 48), Err(WriteError::BadHsavePa));
        assert_eq!(write(&mut t, msr::VM_HSAVE_PA, 1 << 48, 52, no_tsc), Ok(()));
        assert_eq!(write(&mut t, msr::VM_HSAVE_PA, 1 << 40, 40, no_tsc), Err(WriteError::BadHsavePa));
        assert_eq!(t.hsave_pa, 1 << 48);
    }

    #[test]
    fn tsc_write_sets_the_offset() {
        let mut t = T::new(false);
        assert_eq!(write(&mut t, msr::TSC, 1000, 48, || 5000), Ok(()));
        assert_eq!(t.vmcb.control.tsc_offset, 1000u64.wrapping_sub(5000));
        assert_eq!(read(&mut t, msr::TSC, || 6000), Some(2000));
        assert_eq!(read(&mut t, msr::TSC, || 5000), Some(1000));
    }

    #[test]
    fn address_msrs_must_be_canonical() {
        let mut t = T::new(false);
        for (i, get) in [
            (msr::LSTAR, (|v: &Vmcb| v.save.lstar) as fn(&Vmcb) -> u64),
            (msr::CSTAR, |v| v.save.cstar),
            (msr::KERNEL_GS_BASE, |v| v.save.kernel_gs_base),
            (msr::FS_BASE, |v| v.save.fs.base),
            (msr::GS_BASE, |v| v.save.gs.base),
            (msr::SYSENTER_ESP, |v| v.save.sysenter_esp),
            (msr::SYSENTER_EIP, |v| v.save.sysenter_eip),
        ] {
            assert_eq!(w(&mut t, i, 0xffff_8000_0000_1000), Ok(()), "{i:#x}");
            assert_eq!(get(&t.vmcb), 0xffff_8000_0000_1000);
            assert_eq!(r(&mut t, i), Some(0xffff_8000_0000_1000));
            assert_eq!(w(&mut t, i, 0x0000_8000_0000_0000), Err(WriteError::NonCanonical), "{i:#x}");
            assert_eq!(w(&mut t, i, 0xfff0_0000_0000_0000), Err(WriteError::NonCanonical));
            assert_eq!(get(&t.vmcb), 0xffff_8000_0000_1000);
        }
        // STAR holds selectors and an EIP: any value.
        assert_eq!(w(&mut t, msr::STAR, 0x8000_0000_0000_0000), Ok(()));
        assert_eq!(r(&mut t, msr::STAR), Some(0x8000_0000_0000_0000));
        assert!(canonical(0x7fff_ffff_ffff) && !canonical(0x8000_0000_0000));
    }

    #[test]
    fn truncated_msrs() {
        let mut t = T::new(false);
        assert_eq!(w(&mut t, msr::SFMASK, 0xdead_beef_0004_7700), Ok(()));
        assert_eq!(r(&mut t, msr::SFMASK), Some(0x0004_7700));
        assert_eq!(w(&mut t, msr::SYSENTER_CS, 0x1234_0010), Ok(()));
        assert_eq!(r(&mut t, msr::SYSENTER_CS), Some(0x10));
        assert_eq!(w(&mut t, msr::TSC_AUX, 1 << 32), Err(WriteError::Reserved));
        assert_eq!(w(&mut t, msr::TSC_AUX, 0xffff_ffff), Ok(()));
        assert_eq!(r(&mut t, msr::TSC_AUX), Some(0xffff_ffff));
        assert_eq!(w(&mut t, msr::APIC_BASE, 0xfee0_0d00), Ok(()));
        assert_eq!(r(&mut t, msr::APIC_BASE), Some(0xfee0_0d00));
    }

    #[test]
    fn pat_entries_must_be_memory_types() {
        let mut t = T::new(false);
        assert_eq!(w(&mut t, msr::PAT, 0x0007_0406_0007_0406), Ok(()));
        assert_eq!(w(&mut t, msr::PAT, 0x0007_0501_0007_0406), Ok(()));
        assert_eq!(r(&mut t, msr::PAT), Some(0x0007_0501_0007_0406));
        for bad in [2u64, 3, 8, 0xff] {
            for byte in [0, 3, 7] {
                assert_eq!(w(&mut t, msr::PAT, bad << (8 * byte)), Err(WriteError::BadPat), "{bad} in byte {byte}");
            }
        }
        assert_eq!(t.vmcb.save.g_pat, 0x0007_0501_0007_0406);
    }

    /// NB_CFG and the other platform MSRs read as 0 and drop writes (KVM's
    /// rule); the read-only ones refuse writes; the microcode loader's
    /// accept writes and cannot be read.
    #[test]
    fn platform_msrs() {
        let mut t = T::new(false);
        for &i in PLATFORM_ZERO {
            assert_eq!(r(&mut t, i), Some(0), "{i:#x}");
            assert_eq!(w(&mut t, i, 0x0000_4000_0000_0000), Ok(()), "{i:#x}");
            assert_eq!(r(&mut t, i), Some(0), "{i:#x}");
        }
        for &i in PLATFORM_ZERO_RO {
            assert_eq!(r(&mut t, i), Some(0), "{i:#x}");
            assert_eq!(w(&mut t, i, 1), Err(WriteError::Unknown), "{i:#x}");
        }
        for &i in PLATFORM_WRITE_IGNORED {
            assert_eq!(r(&mut t, i), None, "{i:#x}");
            assert_eq!(w(&mut t, i, 0x1000), Ok(()), "{i:#x}");
        }
    }

    #[test]
    fn unknown_msrs() {
        let mut t = T::new(true);
        for i in [msr::SPEC_CTRL, msr::TSC_RATIO, 0x1234] {
            assert_eq!(r(&mut t, i), None);
            assert_eq!(w(&mut t, i, 0), Err(WriteError::Unknown));
        }
    }

    #[test]
    fn debugctl_without_lbr_virtualization() {
        let mut t = T::new(true);
        for i in [msr::DEBUGCTL, 0x1db, 0x1dc, 0x1dd, 0x1de] {
            assert_eq!(r(&mut t, i), Some(0), "{i:#x}");
        }
        assert_eq!(w(&mut t, msr::DEBUGCTL, 0x3f), Ok(()));
        assert_eq!(r(&mut t, msr::DEBUGCTL), Some(0));
        assert_eq!(w(&mut t, msr::DEBUGCTL, 0x40), Err(WriteError::Reserved));
        assert_eq!(w(&mut t, msr::DEBUGCTL, 1 << 63), Err(WriteError::Reserved));
        // The last-branch MSRs are read-only.
        assert_eq!(w(&mut t, 0x1db, 0), Err(WriteError::Unknown));
    }

    #[test]
    fn tsc_aux_needs_rdtscp_or_rdpid_for_the_guest() {
        assert!(tsc_aux_allowed(true, 0, 0));
        assert!(!tsc_aux_allowed(false, 0, 0));
        assert!(tsc_aux_allowed(false, 1 << 27, 0));
        assert!(tsc_aux_allowed(false, 0, 1 << 22));
        assert!(!tsc_aux_allowed(false, !(1 << 27), !(1 << 22)));
    }
}
