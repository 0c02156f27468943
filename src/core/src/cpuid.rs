// SPDX-License-Identifier: GPL-2.0
//! CPUID leaves that describe SVM (APM vol. 2 15.4 and vol. 3 appendix E).

use bitflags::bitflags;

/// Extended feature leaf: ECX bit 2 is SVM.
pub const LEAF_EXT_FEATURES: u32 = 0x8000_0001;
/// ECX bit of 0x80000001 that says SVM exists.
pub const EXT_FEATURES_ECX_SVM: u32 = 1 << 2;
/// SVM feature identification leaf.
pub const LEAF_SVM: u32 = 0x8000_000a;
/// Address size leaf (EAX 7:0 physical, 15:8 linear address bits).
pub const LEAF_ADDR_SIZE: u32 = 0x8000_0008;

bitflags! {
    /// CPUID 0x8000000A EDX: SVM features (APM vol. 3 E.4.9).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct SvmFeatures: u32 {
        /// Nested paging.
        const NP = 1 << 0;
        /// LBR virtualization.
        const LBR_VIRT = 1 << 1;
        /// SVM lock.
        const SVML = 1 << 2;
        /// Next RIP save (nRIP in the VMCB).
        const NRIPS = 1 << 3;
        /// MSR-based TSC rate control.
        const TSC_RATE_MSR = 1 << 4;
        /// VMCB clean bits.
        const VMCB_CLEAN = 1 << 5;
        /// Flush by ASID (TLB_CONTROL 3 and 7).
        const FLUSH_BY_ASID = 1 << 6;
        /// Decode assists.
        const DECODE_ASSISTS = 1 << 7;
        /// PAUSE intercept filter.
        const PAUSE_FILTER = 1 << 10;
        /// PAUSE filter threshold.
        const PAUSE_FILTER_THRESHOLD = 1 << 12;
        /// AMD virtual interrupt controller.
        const AVIC = 1 << 13;
        /// Virtualized VMLOAD/VMSAVE.
        const V_VMSAVE_VMLOAD = 1 << 15;
        /// Virtualized global interrupt flag.
        const VGIF = 1 << 16;
        /// Guest mode execute trap.
        const GMET = 1 << 17;
        /// x2APIC AVIC.
        const X2AVIC = 1 << 18;
        /// Supervisor shadow stack restrictions.
        const SSS_CHECK = 1 << 19;
        /// SPEC_CTRL virtualization.
        const SPEC_CTRL = 1 << 20;
        /// Read-only guest page tables.
        const ROGPT = 1 << 21;
        /// Host MCE override.
        const HOST_MCE_OVERRIDE = 1 << 23;
        /// INVLPGB/TLBSYNC hypervisor enable.
        const TLBI_CTL = 1 << 24;
        /// Virtual NMI.
        const VNMI = 1 << 25;
        /// IBS virtualization.
        const IBS_VIRT = 1 << 26;
        /// Extended LVT AVIC access changes.
        const EXT_LVT_AVIC_ACCESS_CHG = 1 << 27;
        /// Guest VMCB address check (SVME_ADDR_CHK).
        const SVME_ADDR_CHK = 1 << 28;
        /// Bus lock threshold.
        const BUS_LOCK_THRESHOLD = 1 << 29;
        /// Idle HLT intercept.
        const IDLE_HLT_INTERCEPT = 1 << 30;
    }
}

/// Short lower-case names of the features, in bit order (as `/proc/cpuinfo`
/// and the APM spell them).
pub const FEATURE_NAMES: &[(SvmFeatures, &str)] = &[
    (SvmFeatures::NP, "npt"),
    (SvmFeatures::LBR_VIRT, "lbrv"),
    (SvmFeatures::SVML, "svm_lock"),
    (SvmFeatures::NRIPS, "nrip_save"),
    (SvmFeatures::TSC_RATE_MSR, "tsc_scale"),
    (SvmFeatures::VMCB_CLEAN, "vmcb_clean"),
    (SvmFeatures::FLUSH_BY_ASID, "flushbyasid"),
    (SvmFeatures::DECODE_ASSISTS, "decodeassists"),
    (SvmFeatures::PAUSE_FILTER, "pausefilter"),
    (SvmFeatures::PAUSE_FILTER_THRESHOLD, "pfthreshold"),
    (SvmFeatures::AVIC, "avic"),
    (SvmFeatures::V_VMSAVE_VMLOAD, "v_vmsave_vmload"),
    (SvmFeatures::VGIF, "vgif"),
    (SvmFeatures::GMET, "gmet"),
    (SvmFeatures::X2AVIC, "x2avic"),
    (SvmFeatures::SSS_CHECK, "v_spec_ctrl_sss"),
    (SvmFeatures::SPEC_CTRL, "v_spec_ctrl"),
    (SvmFeatures::ROGPT, "rogpt"),
    (SvmFeatures::HOST_MCE_OVERRIDE, "host_mce_override"),
    (SvmFeatures::TLBI_CTL, "tlbi_ctl"),
    (SvmFeatures::VNMI, "vnmi"),
    (SvmFeatures::IBS_VIRT, "ibs_virt"),
    (SvmFeatures::EXT_LVT_AVIC_ACCESS_CHG, "extlvt_avic_access_chg"),
    (SvmFeatures::SVME_ADDR_CHK, "svme_addr_chk"),
    (SvmFeatures::BUS_LOCK_THRESHOLD, "bus_lock_threshold"),
    (SvmFeatures::IDLE_HLT_INTERCEPT, "idle_hlt"),
];

/// Decoded CPUID 0x8000000A.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SvmLeaf {
    /// SVM revision number (EAX 7:0).
    pub revision: u8,
    /// Number of ASIDs (EBX).
    pub nasid: u32,
    /// Feature bits (EDX); unknown bits are kept.
    pub features: SvmFeatures,
}

impl SvmLeaf {
    /// Decodes the leaf's registers.
    pub const fn decode(eax: u32, ebx: u32, _ecx: u32, edx: u32) -> Self {
        Self {
            revision: eax as u8,
            nasid: ebx,
            features: SvmFeatures::from_bits_retain(edx),
        }
    }
    /// Encodes back to (EAX, EBX, ECX, EDX).
    pub const fn encode(&self) -> (u32, u32, u32, u32) {
        (self.revision as u32, self.nasid, 0, self.features.bits())
    }
    /// Names of the features set, in bit order; unknown bits are named `bitN`
    /// by [`unknown_bits`].
    pub fn feature_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        FEATURE_NAMES.iter().filter(|(f, _)| self.features.contains(*f)).map(|(_, n)| *n)
    }
    /// Feature bits set that have no name here.
    pub const fn unknown_bits(&self) -> u32 {
        self.features.bits() & !SvmFeatures::all().bits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_qemu_tcg_leaf() {
        // What QEMU 10.0 TCG reports: NPT, vGIF, SVME_ADDR_CHK; 16 ASIDs; rev 1.
        let edx = (1 << 0) | (1 << 16) | (1 << 28);
        let l = SvmLeaf::decode(1, 16, 0, edx);
        assert_eq!(l.revision, 1);
        assert_eq!(l.nasid, 16);
        assert_eq!(l.feature_names().collect::<Vec<_>>(), ["npt", "vgif", "svme_addr_chk"]);
        assert_eq!(l.unknown_bits(), 0);
        assert_eq!(l.encode(), (1, 16, 0, edx));
    }

    #[test]
    fn names_cover_every_flag_once() {
        assert_eq!(FEATURE_NAMES.len(), SvmFeatures::all().iter().count());
        let mut acc = 0;
        for (f, _) in FEATURE_NAMES {
            assert_eq!(acc & f.bits(), 0);
            acc |= f.bits();
        }
        assert_eq!(acc, SvmFeatures::all().bits());
        let l = SvmLeaf::decode(1, 8, 0, 1 << 9);
        assert_eq!(l.unknown_bits(), 1 << 9);
        assert_eq!(l.feature_names().count(), 0);
    }
}

/// Leaves whose output depends on ECX (`KVM_CPUID_FLAG_SIGNIFCANT_INDEX`).
pub const fn is_indexed(leaf: u32) -> bool {
    matches!(leaf, 4 | 7 | 0xb | 0xd | 0xf | 0x10 | 0x12 | 0x14 | 0x17 | 0x18 | 0x1d | 0x1e | 0x1f | 0x8000_001d | 0x8000_0020)
}

/// What nsvm offers a guest for one CPUID leaf, from the host's values
/// (`KVM_GET_SUPPORTED_CPUID`): host features minus what nsvm does not
/// virtualize (no VMX, no MONITOR/MWAIT; x2APIC and the TSC-deadline timer of the in-kernel local APIC),
/// plus the hypervisor-present bit and SVM for L1 (with the features of
/// [`L1_FEATURES`]). `None`: leaf not offered.
pub fn supported_leaf(leaf: u32, sub: u32, host: [u32; 4]) -> Option<[u32; 4]> {
    let [mut a, mut b, mut c, mut d] = host;
    match leaf {
        1 => {
            // ECX: 3 MONITOR, 5 VMX off; 21 x2APIC and 24 TSC-deadline on
            // (the in-kernel local APIC emulates both, whatever the host
            // has, as KVM reports them); 31 hypervisor on.
            c &= !((1 << 3) | (1 << 5));
            c |= (1 << 21) | (1 << 24) | (1 << 31);
            // OSXSAVE (27) reflects the guest's CR4 at run time (runtime_adjust).
            c &= !(1 << 27);
            // EDX 28 HTT: off, as KVM reports it.
            d &= !(1 << 28);
            // EBX 31:24 initial APIC id: set per vCPU by the VMM.
            b &= 0x00ff_ffff;
        }
        // MONITOR/MWAIT: not offered.
        5 => {
            a = 0;
            b = 0;
            c = 0;
            d = 0;
        }
        // Thermal and power management: only ARAT (EAX bit 2, the APIC
        // timer keeps running in deep C-states), as KVM reports it: the
        // in-kernel APIC's timer is an hrtimer that never stops. Without
        // it Linux marks its LAPIC timer C3STOP and keeps the PIT or HPET
        // as a broadcast timer (`pit_timer_needed`).
        6 => {
            a = 1 << 2;
            b = 0;
            c = 0;
            d = 0;
        }
        7 if sub == 0 => {
            // Features whose MSRs nsvm does not virtualize: EBX 12 PQM and
            // 15 PQE (resource monitoring/allocation), 14 MPX (BNDCFGS);
            // ECX 5 WAITPKG (UMWAIT_CONTROL); EDX 26 IBRS/IBPB, 27 STIBP,
            // 28 L1D_FLUSH, 29 ARCH_CAPABILITIES, 31 SSBD (SPEC_CTRL,
            // PRED_CMD, FLUSH_CMD, ARCH_CAPABILITIES).
            b &= !((1 << 12) | (1 << 14) | (1 << 15));
            c &= !(1 << 5);
            d &= !((1 << 26) | (1 << 27) | (1 << 28) | (1 << 29) | (1 << 31));
        }
        // Architectural performance monitoring: no PMU is virtualized.
        0xa => {
            a = 0;
            b = 0;
            c = 0;
            d = 0;
        }
        0x8000_0001 => {
            // ECX bit 2 SVM: offered to L1 (nested SVM).
            c |= 1 << 2;
            // Not virtualized: 10 IBS, 13 WDT, 15 LWP, 23/24/28 the core,
            // northbridge and LLC performance counter extensions (their
            // MSRs would #GP).
            c &= !((1 << 10) | (1 << 13) | (1 << 15) | (1 << 23) | (1 << 24) | (1 << 28));
        }
        // EBX: the speculation-control features (IBPB 12, IBRS 14, STIBP
        // 15, their always-on/preferred/same-mode hints 16-19, SSBD 24,
        // VIRT_SSBD 25) need SPEC_CTRL/PRED_CMD/VIRT_SPEC_CTRL, which nsvm
        // does not virtualize.
        0x8000_0008 => {
            b &= !((1 << 12) | (0x3f << 14) | (1 << 24) | (1 << 25));
        }
        // IBS and PerfMonV2 leaves: not virtualized.
        0x8000_001b | 0x8000_0022 => return None,
        // SVM for L1 (APM 15.4): revision 1, 8 ASIDs, and only the features
        // nsvm implements for L1 (`L1_FEATURES`).
        0x8000_000a => return Some([1, 8, 0, L1_FEATURES.bits()]),
        _ => {}
    }
    Some([a, b, c, d])
}

/// The SVM features nsvm implements for L1 (CPUID 0x8000000A EDX):
/// - NP: shadow NPT02 composed from L1's NPT12 and NPT01 (APM 15.25);
/// - NRIPS: emulated (L0 decodes L2's instruction lengths: TCG has none);
/// - VMCB_CLEAN: honoured by never trusting them, i.e. vmcb12 is copied
///   whole on every VMRUN, which APM 15.15.1 allows ("the processor may
///   ignore a clean bit and reload the field");
/// - FLUSH_BY_ASID: TLB_CONTROL 3 and 7 drop L2's translations (APM 15.16.2);
/// - VGIF: with V_GIF_ENABLE in vmcb12, L2's STGI/CLGI (when L1 does not
///   intercept them) set and clear V_GIF, emulated by L0, and V_GIF goes
///   back to vmcb12 at #VMEXIT (APM 15.33).
///
/// - DECODE_ASSISTS: emulated (APM 15.8): at a reflected CR/DR, INTn or
///   INVLPG intercept L0 decodes L2's instruction for EXITINFO1, and at a
///   #PF or #NPF of a data access it fetches the instruction bytes
///   (`l1_assist`);
/// - PAUSE_FILTER: emulated (APM 15.14.4): L0 counts L2's PAUSEs against
///   vmcb12's PAUSE_FILTER_COUNT and reflects the intercept when the
///   counter goes below zero;
/// - V_VMSAVE_VMLOAD: emulated (APM 15.33.1): with vmcb12's enable bit,
///   nested paging and L1 in 64-bit mode, L2's VMLOAD/VMSAVE act on the L2
///   physical address through NPT12 (a fault there is #VMEXIT(NPF));
/// - VNMI: emulated (APM 15.21.10): L0 delivers vmcb12's pending virtual
///   NMI to L2 and keeps V_NMI_MASK until L2's IRET completes.
///
/// Not offered: pause filter threshold (cycle-based), AVIC, LBR
/// virtualization, TSC scaling.
pub const L1_FEATURES: SvmFeatures = SvmFeatures::NP
    .union(SvmFeatures::NRIPS)
    .union(SvmFeatures::VMCB_CLEAN)
    .union(SvmFeatures::FLUSH_BY_ASID)
    .union(SvmFeatures::DECODE_ASSISTS)
    .union(SvmFeatures::PAUSE_FILTER)
    .union(SvmFeatures::V_VMSAVE_VMLOAD)
    .union(SvmFeatures::VGIF)
    .union(SvmFeatures::VNMI);

/// The parts of CPUID that depend on the guest's state at the time it
/// executes CPUID (what hardware computes and KVM's
/// `kvm_update_cpuid_runtime` reproduces): leaf 1 ECX.OSXSAVE = CR4.OSXSAVE,
/// leaf 7 ECX.OSPKE = CR4.PKE, leaf 0xD.0 EBX = XSAVE size for the guest's
/// XCR0 (`xsave_size`, called for that leaf only: it reads the host's
/// CPUID 0xD sub-leaves).
pub fn runtime_adjust(leaf: u32, sub: u32, mut r: [u32; 4], cr4: u64, xsave_size: impl FnOnce() -> u32) -> [u32; 4] {
    use crate::x86::cr4::{OSXSAVE, PKE};
    match (leaf, sub) {
        (1, _) => {
            r[2] = (r[2] & !(1 << 27)) | if cr4 & OSXSAVE != 0 { 1 << 27 } else { 0 };
        }
        (7, 0) => {
            r[2] = (r[2] & !(1 << 4)) | if cr4 & PKE != 0 { 1 << 4 } else { 0 };
        }
        (0xd, 0) | (0xd, 1) if r != [0; 4] && sub == 0 => r[1] = xsave_size(),
        _ => {}
    }
    r
}

/// Size of the standard-format XSAVE area for the components of `xcr0`,
/// given each component's (size, offset) from CPUID 0xD.i (EAX, EBX).
pub fn xsave_size(xcr0: u64, component: impl Fn(u32) -> (u32, u32)) -> u32 {
    let mut size = 512 + 64; // legacy area + header
    for i in 2..63 {
        if xcr0 & (1 << i) != 0 {
            let (sz, off) = component(i);
            size = size.max(off + sz);
        }
    }
    size
}

#[cfg(test)]
mod supported_tests {
    use super::*;

    #[test]
    fn masks() {
        let l1 = supported_leaf(1, 0, [0x800f12, 0x0102_0800, 0xffff_ffff, 0x178bfbff]).unwrap();
        assert_eq!(l1[2] & (1 << 5), 0);
        assert_eq!(l1[2] & (1 << 3), 0);
        assert_ne!(l1[2] & (1 << 31), 0);
        assert_eq!(l1[1] >> 24, 0);
        assert_eq!(l1[0], 0x800f12);
        let e = supported_leaf(0x8000_0001, 0, [0, 0, 0, 0]).unwrap();
        assert_eq!(e[2] & 4, 4);
        assert_eq!(supported_leaf(0x8000_000a, 0, [1, 16, 0, 1]), Some([1, 8, 0, L1_FEATURES.bits()]));
        assert_eq!(L1_FEATURES.bits(), (1 << 25) | (1 << 16) | (1 << 15) | (1 << 10) | 0b1110_1001);
        // Leaf 6: ARAT only, whatever the host has.
        assert_eq!(supported_leaf(6, 0, [0x77, 1, 9, 0]), Some([4, 0, 0, 0]));
        assert_eq!(supported_leaf(5, 0, [0x40, 0x40, 3, 0x11]), Some([0, 0, 0, 0]));
        assert_eq!(supported_leaf(0, 0, [0xd, 1, 2, 3]), Some([0xd, 1, 2, 3]));
        assert!(is_indexed(7) && is_indexed(0xd) && !is_indexed(1));
        assert_eq!(l1[2] & (1 << 27), 0);
        assert_eq!(l1[3] & (1 << 28), 0);
        // Features nsvm does not virtualize are not offered.
        let e = supported_leaf(0x8000_0001, 0, [0, 0, u32::MAX, 0]).unwrap();
        assert_eq!(e[2] & ((1 << 10) | (1 << 23) | (1 << 24) | (1 << 28)), 0);
        let l7 = supported_leaf(7, 0, [0, u32::MAX, u32::MAX, u32::MAX]).unwrap();
        assert_eq!(l7[3] & (1 << 26 | 1 << 27 | 1 << 29 | 1 << 31), 0);
        assert_eq!(l7[1] & (1 << 14), 0);
        assert_eq!(l7[1] & 1, 1, "FSGSBASE stays");
        let l8 = supported_leaf(0x8000_0008, 0, [0x3030, u32::MAX, 0, 0]).unwrap();
        assert_eq!(l8[1] & ((1 << 12) | (1 << 14) | (1 << 24)), 0);
        assert_eq!(l8[0], 0x3030);
        assert_eq!(supported_leaf(0xa, 0, [u32::MAX; 4]), Some([0; 4]));
        assert_eq!(supported_leaf(0x8000_0022, 0, [1; 4]), None);
        // Leaf 7 sub-leaf 1 is left as the host has it.
        assert_eq!(supported_leaf(7, 1, [1, 2, 3, 4]), Some([1, 2, 3, 4]));
    }

    #[test]
    fn runtime() {
        let r = runtime_adjust(1, 0, [0, 0, 0, 0], 1 << 18, || 0);
        assert_eq!(r[2], 1 << 27);
        let r = runtime_adjust(1, 0, [0, 0, 1 << 27, 0], 0, || 0);
        assert_eq!(r[2], 0);
        assert_eq!(runtime_adjust(7, 0, [0; 4], 1 << 22, || 0)[2], 1 << 4);
        assert_eq!(runtime_adjust(0xd, 0, [7, 0, 832, 0], 0, || 576)[1], 576);
        assert_eq!(runtime_adjust(0xd, 0, [0; 4], 0, || 576), [0; 4]);
        // The size is computed for leaf 0xD.0 only.
        runtime_adjust(1, 0, [0; 4], 0, || unreachable!());
        // x87 + SSE + AVX (component 2: 256 bytes at 576).
        assert_eq!(xsave_size(0x7, |i| if i == 2 { (256, 576) } else { (0, 0) }), 832);
        assert_eq!(xsave_size(0x3, |_| (0, 0)), 576);
    }
}
