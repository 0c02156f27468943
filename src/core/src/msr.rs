// SPDX-License-Identifier: GPL-2.0
//! Model-specific register numbers and bits that SVM uses (APM vol. 2 15.30
//! and appendix A).

/// Time-stamp counter.
pub const TSC: u32 = 0x0000_0010;
/// APIC base address.
pub const APIC_BASE: u32 = 0x0000_001b;
/// SPEC_CTRL.
pub const SPEC_CTRL: u32 = 0x0000_0048;
/// SYSENTER_CS.
pub const SYSENTER_CS: u32 = 0x0000_0174;
/// SYSENTER_ESP.
pub const SYSENTER_ESP: u32 = 0x0000_0175;
/// SYSENTER_EIP.
pub const SYSENTER_EIP: u32 = 0x0000_0176;
/// DEBUGCTL.
pub const DEBUGCTL: u32 = 0x0000_01d9;
/// DEBUGCTL bits 5:0 (LBR, BTF, PB0-PB3); 63:6 are reserved, MBZ (APM vol. 2
/// 13.1.1.6).
pub const DEBUGCTL_DEFINED: u64 = 0x3f;
/// LastBranchFromIP, LastBranchToIP, LastExceptionFromIP, LastExceptionToIP
/// (APM vol. 2 13.1.1.7), read-only.
pub const LAST_BRANCH_FIRST: u32 = 0x0000_01db;
/// The last of the four.
pub const LAST_BRANCH_LAST: u32 = 0x0000_01de;
/// IA32_TSC_ADJUST (CPUID 7.0:EBX[1]).
pub const TSC_ADJUST: u32 = 0x0000_003b;
/// PAT.
pub const PAT: u32 = 0x0000_0277;
/// Extended feature enable register.
pub const EFER: u32 = 0xc000_0080;
/// SYSCALL target (legacy).
pub const STAR: u32 = 0xc000_0081;
/// SYSCALL target (64-bit).
pub const LSTAR: u32 = 0xc000_0082;
/// SYSCALL target (compatibility mode).
pub const CSTAR: u32 = 0xc000_0083;
/// SYSCALL flag mask.
pub const SFMASK: u32 = 0xc000_0084;
/// FS base.
pub const FS_BASE: u32 = 0xc000_0100;
/// GS base.
pub const GS_BASE: u32 = 0xc000_0101;
/// SWAPGS shadow.
pub const KERNEL_GS_BASE: u32 = 0xc000_0102;
/// TSC_AUX (RDTSCP/RDPID).
pub const TSC_AUX: u32 = 0xc000_0103;
/// TSC ratio (APM 15.30.5).
pub const TSC_RATIO: u32 = 0xc000_0104;
/// VM_CR (APM 15.30.1).
pub const VM_CR: u32 = 0xc001_0114;
/// IGNNE (APM 15.30.2).
pub const IGNNE: u32 = 0xc001_0115;
/// SMM_CTL (APM 15.30.3).
pub const SMM_CTL: u32 = 0xc001_0116;
/// VM_HSAVE_PA, physical address of the host save area (APM 15.30.4).
pub const VM_HSAVE_PA: u32 = 0xc001_0117;
/// SVM_KEY (APM 15.31).
pub const SVM_KEY: u32 = 0xc001_0118;

/// EFER bits (APM vol. 2 3.1.7).
pub mod efer {
    /// System call extensions.
    pub const SCE: u64 = 1 << 0;
    /// Long mode enable.
    pub const LME: u64 = 1 << 8;
    /// Long mode active.
    pub const LMA: u64 = 1 << 10;
    /// No-execute enable.
    pub const NXE: u64 = 1 << 11;
    /// Secure virtual machine enable.
    pub const SVME: u64 = 1 << 12;
    /// Long mode segment limit enable.
    pub const LMSLE: u64 = 1 << 13;
    /// Fast FXSAVE/FXRSTOR.
    pub const FFXSR: u64 = 1 << 14;
    /// Translation cache extension.
    pub const TCE: u64 = 1 << 15;
    /// MCOMMIT enable.
    pub const MCOMMIT: u64 = 1 << 17;
    /// Interruptible WBINVD/WBNOINVD.
    pub const INTWB: u64 = 1 << 18;
    /// Upper address ignore enable.
    pub const UAIE: u64 = 1 << 20;
    /// Automatic IBRS enable.
    pub const AIBRSE: u64 = 1 << 21;
    /// Bits that are reserved (must be zero) in EFER; checked by VMRUN for the
    /// guest (APM 15.5.1 "Any MBZ bit of EFER is set").
    pub const RESERVED: u64 =
        !(SCE | LME | LMA | NXE | SVME | LMSLE | FFXSR | TCE | MCOMMIT | INTWB | UAIE | AIBRSE);
}

/// APIC_BASE (MSR 0x1B) bits (APM vol. 2 ch. 16, "APIC Base Address").
pub mod apic_base {
    /// The processor is the bootstrap processor.
    pub const BSP: u64 = 1 << 8;
    /// x2APIC mode enable.
    pub const EXTD: u64 = 1 << 10;
    /// APIC global enable.
    pub const AE: u64 = 1 << 11;
    /// The architectural default base of the APIC registers.
    pub const DEFAULT_BASE: u64 = 0xfee0_0000;

    /// APIC_BASE after RESET: the default base, enabled, BSP on the
    /// bootstrap processor (KVM's boot CPU id, vCPU 0 unless
    /// `KVM_SET_BOOT_CPU_ID` names another: `crate::bsp`).
    pub const fn reset_value(bsp: bool) -> u64 {
        DEFAULT_BASE | AE | if bsp { BSP } else { 0 }
    }
}

/// VM_CR bits (APM 15.30.1).
pub mod vm_cr {
    /// Debug port disable.
    pub const DPD: u64 = 1 << 0;
    /// Intercept INIT: turn INIT into #SX.
    pub const R_INIT: u64 = 1 << 1;
    /// Disable A20 masking.
    pub const DIS_A20M: u64 = 1 << 2;
    /// SVM lock: SVMDIS is read-only when set.
    pub const LOCK: u64 = 1 << 3;
    /// SVM disabled: EFER.SVME cannot be set.
    pub const SVMDIS: u64 = 1 << 4;
}

/// The MSRs `KVM_GET_MSR_INDEX_LIST` reports and `KVM_GET/SET_MSRS` handle.
pub const GUEST_MSRS: &[u32] = &[
    EFER, STAR, LSTAR, CSTAR, SFMASK, KERNEL_GS_BASE, FS_BASE, GS_BASE, SYSENTER_CS, SYSENTER_ESP,
    SYSENTER_EIP, PAT, TSC, TSC_AUX, APIC_BASE, TSC_ADJUST,
    // Nested SVM (readable once SVM is offered to the guest): part of a
    // vCPU's state for save/restore, as in KVM's list.
    VM_HSAVE_PA, VM_CR,
    // Machine-check state (`mce`): MCG_STATUS and MCG_CTL, as KVM lists them.
    crate::mce::MCG_STATUS, crate::mce::MCG_CTL,
    // kvmclock (`kvmclock`), both interfaces, as in KVM's emulated MSRs.
    crate::kvmclock::msr::SYSTEM_TIME, crate::kvmclock::msr::WALL_CLOCK,
    crate::kvmclock::msr::SYSTEM_TIME_NEW, crate::kvmclock::msr::WALL_CLOCK_NEW,
    // The stored MSRs of `msr_misc` KVM lists among its emulated MSRs, so
    // that save/restore carries them.
    crate::msr_misc::MISC_ENABLE, crate::msr_misc::POWER_CTL, crate::msr_misc::UCODE_REV,
];

/// Name of an MSR for logs and dumps.
pub fn name(msr: u32) -> Option<&'static str> {
    Some(match msr {
        TSC => "TSC",
        APIC_BASE => "APIC_BASE",
        SPEC_CTRL => "SPEC_CTRL",
        SYSENTER_CS => "SYSENTER_CS",
        SYSENTER_ESP => "SYSENTER_ESP",
        SYSENTER_EIP => "SYSENTER_EIP",
        DEBUGCTL => "DEBUGCTL",
        PAT => "PAT",
        EFER => "EFER",
        STAR => "STAR",
        LSTAR => "LSTAR",
        CSTAR => "CSTAR",
        SFMASK => "SFMASK",
        FS_BASE => "FS_BASE",
        GS_BASE => "GS_BASE",
        KERNEL_GS_BASE => "KERNEL_GS_BASE",
        TSC_AUX => "TSC_AUX",
        TSC_RATIO => "TSC_RATIO",
        VM_CR => "VM_CR",
        IGNNE => "IGNNE",
        SMM_CTL => "SMM_CTL",
        VM_HSAVE_PA => "VM_HSAVE_PA",
        SVM_KEY => "SVM_KEY",
        _ => return None,
    })
}

/// Whether a value is an acceptable VM_HSAVE_PA: page aligned and within the
/// physical address width (APM 15.30.4: bits 11:0 must be zero; writing an
/// address beyond the maximum physical address raises #GP).
pub const fn hsave_pa_valid(pa: u64, phys_bits: u8) -> bool {
    pa & 0xfff == 0 && (phys_bits >= 64 || pa >> phys_bits == 0)
}

/// PAT after RESET: WB, WT, UC-, UC in entries 0-3 and again in 4-7
/// (APM vol. 2 7.8.1).
pub const PAT_RESET: u64 = 0x0007_0406_0007_0406;

/// Whether `val` is an acceptable PAT MSR value: each of its eight bytes
/// (PA0..PA7) is a defined memory type, UC (0), WC (1), WT (4), WP (5), WB
/// (6) or UC- (7); 2, 3 and 8..255 are reserved and writing them raises #GP
/// (APM vol. 2 7.8.1). VMRUN checks the same for G_PAT with nested paging
/// (APM 15.25.4).
pub const fn pat_valid(val: u64) -> bool {
    let mut i = 0;
    while i < 8 {
        let t = (val >> (8 * i)) & 0xff;
        if t == 2 || t == 3 || t > 7 {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_names() {
        assert_eq!(EFER, 0xc000_0080);
        assert_eq!(VM_HSAVE_PA, 0xc001_0117);
        assert_eq!(name(VM_CR), Some("VM_CR"));
        assert_eq!(name(0x1234), None);
        assert_eq!(efer::SVME, 0x1000);
        assert_eq!(efer::RESERVED & efer::SVME, 0);
        assert_ne!(efer::RESERVED & (1 << 1), 0);
        assert_ne!(efer::RESERVED & (1 << 63), 0);
        assert_eq!(vm_cr::SVMDIS, 0x10);
    }

    #[test]
    fn apic_base_reset() {
        // KVM's and the hardware's value: 0xfee00900 on the BSP.
        assert_eq!(apic_base::reset_value(true), 0xfee0_0900);
        assert_eq!(apic_base::reset_value(false), 0xfee0_0800);
    }

    #[test]
    fn pat_values() {
        // The reset value (WB, WT, UC-, UC twice) and every defined type in every byte.
        assert!(pat_valid(0x0007_0406_0007_0406));
        for t in [0u64, 1, 4, 5, 6, 7] {
            for i in 0..8 {
                assert!(pat_valid(t << (8 * i)));
            }
        }
        // A reserved type in any single byte is refused.
        for t in [2u64, 3, 8, 0x10, 0x80, 0xff] {
            for i in 0..8 {
                assert!(!pat_valid(0x0606_0606_0606_0606 & !(0xff << (8 * i)) | t << (8 * i)), "type {t:#x} in byte {i}");
            }
        }
    }

    #[test]
    fn hsave_pa_checks() {
        assert!(hsave_pa_valid(0x1000, 48));
        assert!(!hsave_pa_valid(0x1008, 48));
        assert!(!hsave_pa_valid(1 << 48, 48));
        assert!(hsave_pa_valid((1 << 48) - 0x1000, 48));
    }
}
