// SPDX-License-Identifier: GPL-2.0
//! Per-vCPU MSRs KVM emulates as stored values, with KVM's rules for the
//! guest and for the host ioctls (`kvm_get/set_msr_common`,
//! `svm_get/set_msr` of Linux 7.2): IA32_POWER_CTL, IA32_UCODE_REV,
//! DE_CFG and IA32_MISC_ENABLE; and the feature MSRs of
//! `KVM_GET_MSR_FEATURE_INDEX_LIST`.

/// IA32_UCODE_REV (microcode revision).
pub const UCODE_REV: u32 = 0x0000_008b;
/// IA32_MISC_ENABLE.
pub const MISC_ENABLE: u32 = 0x0000_01a0;
/// IA32_POWER_CTL.
pub const POWER_CTL: u32 = 0x0000_01fc;
/// MSR_PLATFORM_INFO.
pub const PLATFORM_INFO: u32 = 0x0000_00ce;
/// DE_CFG (AMD decode configuration).
pub const DE_CFG: u32 = 0xc001_1029;
/// DE_CFG bit 1: LFENCE is dispatch serializing.
pub const DE_CFG_LFENCE_SERIALIZE: u64 = 1 << 1;

/// IA32_MISC_ENABLE bits.
pub mod misc_enable {
    /// Performance monitoring available (read-only for the guest: its
    /// writes are ignored).
    pub const EMON: u64 = 1 << 7;
    /// Branch trace storage unavailable.
    pub const BTS_UNAVAIL: u64 = 1 << 11;
    /// Processor event-based sampling unavailable.
    pub const PEBS_UNAVAIL: u64 = 1 << 12;
    /// MONITOR/MWAIT enabled.
    pub const MWAIT: u64 = 1 << 18;
    /// Bits the guest cannot change (#GP): KVM's PMU read-only mask.
    pub const PMU_RO_MASK: u64 = BTS_UNAVAIL | PEBS_UNAVAIL;
    /// The value at RESET (KVM's: no BTS, no PEBS).
    pub const RESET: u64 = BTS_UNAVAIL | PEBS_UNAVAIL;
}

/// The microcode revision a vCPU reports after creation on AMD (KVM's
/// arbitrary value; userspace may set another).
pub const UCODE_REV_RESET_AMD: u64 = 0x0100_0065;

/// The feature MSRs `KVM_GET_MSR_FEATURE_INDEX_LIST` lists (those of KVM's
/// `msr_based_features` nsvm implements: not IA32_ARCH_CAPABILITIES nor
/// IA32_PERF_CAPABILITIES, which nsvm does not offer).
pub const FEATURE_MSRS: &[u32] = &[DE_CFG, UCODE_REV, PLATFORM_INFO];

/// What the host offers for the feature MSRs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostFeatures {
    /// The host's IA32_UCODE_REV.
    pub ucode_rev: u64,
    /// The DE_CFG bits the guest may set (LFENCE_SERIALIZE when the host's
    /// LFENCE is serializing).
    pub de_cfg: u64,
}

/// `KVM_GET_MSRS` on the system fd: the value of a feature MSR (what KVM
/// supports for it), `None` for any other MSR (the ioctl stops there).
/// PLATFORM_INFO is 0: nsvm offers no CPUID faulting.
pub const fn feature_msr(index: u32, h: &HostFeatures) -> Option<u64> {
    match index {
        DE_CFG => Some(h.de_cfg),
        UCODE_REV => Some(h.ucode_rev),
        PLATFORM_INFO => Some(0),
        _ => None,
    }
}

/// `KVM_GET_MSRS` on the system fd, as KVM's `do_get_feature_msr`: a
/// feature MSR's value; 0 for another MSR the vCPUs' index list
/// advertises (`msr::GUEST_MSRS`: KVM lets userspace read an advertised MSR
/// as 0 where its handler has none); `None` for any other (the ioctl stops
/// there, the entry's data zeroed).
pub fn system_msr(index: u32, h: &HostFeatures) -> Option<u64> {
    feature_msr(index, h).or_else(|| crate::msr::GUEST_MSRS.contains(&index).then_some(0))
}

/// Why a write of [`MiscMsrs`] is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MiscError {
    /// Not one of these MSRs.
    Unknown,
    /// A value or access the MSR refuses (#GP).
    Invalid,
}

/// The stored MSRs of a vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MiscMsrs {
    /// IA32_POWER_CTL: any value, no effect.
    pub power_ctl: u64,
    /// IA32_UCODE_REV: set by the host only (the guest's writes are ignored).
    pub ucode_rev: u64,
    /// DE_CFG.
    pub de_cfg: u64,
    /// IA32_MISC_ENABLE.
    pub misc_enable: u64,
}

impl Default for MiscMsrs {
    fn default() -> Self {
        MiscMsrs { power_ctl: 0, ucode_rev: UCODE_REV_RESET_AMD, de_cfg: 0, misc_enable: misc_enable::RESET }
    }
}

/// What the write rules depend on outside the MSRs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteCtx {
    /// `KVM_SET_MSRS` (else the guest's WRMSR).
    pub host: bool,
    /// `KVM_X86_QUIRK_MISC_ENABLE_NO_MWAIT` is enabled (the default):
    /// MISC_ENABLE.MWAIT is a plain bit; disabled, it is CPUID.1:ECX.MWAIT
    /// and needs SSE3 in the guest's CPUID to change.
    pub no_mwait_quirk: bool,
    /// The guest's CPUID has SSE3 (CPUID.1:ECX[0]).
    pub guest_sse3: bool,
    /// DE_CFG bits the guest may set ([`HostFeatures::de_cfg`]).
    pub de_cfg_supported: u64,
}

impl MiscMsrs {
    /// Whether `index` is one of these MSRs.
    pub const fn handles(index: u32) -> bool {
        matches!(index, POWER_CTL | UCODE_REV | DE_CFG | MISC_ENABLE)
    }

    /// RDMSR / `KVM_GET_MSRS` (the same for both).
    pub const fn read(&self, index: u32) -> Option<u64> {
        Some(match index {
            POWER_CTL => self.power_ctl,
            UCODE_REV => self.ucode_rev,
            DE_CFG => self.de_cfg,
            MISC_ENABLE => self.misc_enable,
            _ => return None,
        })
    }

    /// WRMSR / `KVM_SET_MSRS`; `Ok(true)` when MISC_ENABLE.MWAIT changed
    /// with the quirk disabled (the guest's CPUID.1:ECX.MWAIT follows).
    pub fn write(&mut self, index: u32, val: u64, c: &WriteCtx) -> Result<bool, MiscError> {
        match index {
            POWER_CTL => self.power_ctl = val,
            UCODE_REV => {
                if c.host {
                    self.ucode_rev = val;
                }
            }
            DE_CFG => {
                if val & !c.de_cfg_supported != 0 {
                    return Err(MiscError::Invalid);
                }
                self.de_cfg = val;
            }
            MISC_ENABLE => {
                use misc_enable::*;
                let old = self.misc_enable;
                let mut val = val;
                if !c.host {
                    if (old ^ val) & PMU_RO_MASK != 0 {
                        return Err(MiscError::Invalid);
                    }
                    val = (val & !EMON) | (old & EMON);
                }
                let mwait_changed = (old ^ val) & MWAIT != 0;
                if !c.no_mwait_quirk && mwait_changed {
                    if !c.guest_sse3 {
                        return Err(MiscError::Invalid);
                    }
                    self.misc_enable = val;
                    return Ok(true);
                }
                self.misc_enable = val;
            }
            _ => return Err(MiscError::Unknown),
        }
        Ok(false)
    }
}

/// MONITOR/MWAIT intercepted (KVM's `kvm_emulate_monitor_mwait`): `true`
/// when they run as NOPs, `false` for #UD. With
/// `KVM_X86_QUIRK_MWAIT_NEVER_UD_FAULTS` (the default) always NOPs;
/// without, enabled by CPUID.1:ECX.MWAIT while
/// `KVM_X86_QUIRK_MISC_ENABLE_NO_MWAIT` is on, else by MISC_ENABLE.MWAIT.
pub const fn monitor_mwait_as_nop(never_ud_quirk: bool, no_mwait_quirk: bool, cpuid_mwait: bool, misc_enable: u64) -> bool {
    never_ud_quirk || if no_mwait_quirk { cpuid_mwait } else { misc_enable & misc_enable::MWAIT != 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_msrs() {
        let h = HostFeatures { ucode_rev: 0x0a00_1234, de_cfg: DE_CFG_LFENCE_SERIALIZE };
        assert_eq!(feature_msr(UCODE_REV, &h), Some(0x0a00_1234));
        assert_eq!(feature_msr(DE_CFG, &h), Some(2));
        assert_eq!(feature_msr(PLATFORM_INFO, &h), Some(0));
        assert_eq!(feature_msr(0x10a, &h), None);
        for m in FEATURE_MSRS {
            assert!(feature_msr(*m, &h).is_some());
        }
        // The system fd: advertised MSRs read 0, others stop the ioctl.
        assert_eq!(system_msr(UCODE_REV, &h), Some(0x0a00_1234));
        assert_eq!(system_msr(crate::msr::EFER, &h), Some(0));
        assert_eq!(system_msr(0x474f_4f00, &h), None);
    }

    #[test]
    fn stored_msrs() {
        let mut m = MiscMsrs::default();
        let guest = WriteCtx { host: false, no_mwait_quirk: true, guest_sse3: true, de_cfg_supported: 2 };
        let host = WriteCtx { host: true, ..guest };
        assert_eq!(m.read(UCODE_REV), Some(0x0100_0065));
        assert_eq!(m.read(MISC_ENABLE), Some(0x1800));
        // POWER_CTL: any value.
        assert_eq!(m.write(POWER_CTL, 0x1234, &guest), Ok(false));
        assert_eq!(m.read(POWER_CTL), Some(0x1234));
        // UCODE_REV: the guest's writes are dropped, the host's kept.
        assert_eq!(m.write(UCODE_REV, 5, &guest), Ok(false));
        assert_eq!(m.read(UCODE_REV), Some(0x0100_0065));
        assert_eq!(m.write(UCODE_REV, 5, &host), Ok(false));
        assert_eq!(m.read(UCODE_REV), Some(5));
        // DE_CFG: only supported bits.
        assert_eq!(m.write(DE_CFG, 4, &host), Err(MiscError::Invalid));
        assert_eq!(m.write(DE_CFG, 2, &guest), Ok(false));
        // Unknown.
        assert_eq!(m.write(0x10, 0, &host), Err(MiscError::Unknown));
        assert_eq!(m.read(0x10), None);
    }

    #[test]
    fn misc_enable_rules() {
        use misc_enable::*;
        let guest = WriteCtx { host: false, no_mwait_quirk: true, guest_sse3: false, de_cfg_supported: 0 };
        let mut m = MiscMsrs::default();
        // The guest cannot change the PMU read-only bits; EMON writes are ignored.
        assert_eq!(m.write(MISC_ENABLE, 0, &guest), Err(MiscError::Invalid));
        assert_eq!(m.write(MISC_ENABLE, RESET | EMON, &guest), Ok(false));
        assert_eq!(m.misc_enable, RESET);
        // The host may.
        assert_eq!(m.write(MISC_ENABLE, EMON, &WriteCtx { host: true, ..guest }), Ok(false));
        assert_eq!(m.misc_enable, EMON);
        // With the quirk: MWAIT is a plain bit.
        let mut m = MiscMsrs::default();
        assert_eq!(m.write(MISC_ENABLE, RESET | MWAIT, &guest), Ok(false));
        // Without: it needs SSE3 and reports the CPUID change.
        let noq = WriteCtx { no_mwait_quirk: false, ..guest };
        let mut m = MiscMsrs::default();
        assert_eq!(m.write(MISC_ENABLE, RESET | MWAIT, &noq), Err(MiscError::Invalid));
        let sse3 = WriteCtx { guest_sse3: true, ..noq };
        assert_eq!(m.write(MISC_ENABLE, RESET | MWAIT, &sse3), Ok(true));
        assert_eq!(m.write(MISC_ENABLE, RESET | MWAIT, &sse3), Ok(false));
    }

    #[test]
    fn monitor_mwait() {
        use misc_enable::MWAIT;
        // The selftest's table: #UD only with both quirks' MWAIT logic saying disabled.
        assert!(monitor_mwait_as_nop(true, true, false, 0));
        assert!(monitor_mwait_as_nop(false, true, true, 0));
        assert!(!monitor_mwait_as_nop(false, true, false, MWAIT));
        assert!(monitor_mwait_as_nop(false, false, false, MWAIT));
        assert!(!monitor_mwait_as_nop(false, false, true, 0));
    }
}
