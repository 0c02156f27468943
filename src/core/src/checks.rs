// SPDX-License-Identifier: GPL-2.0
//! VMRUN consistency checks (APM vol. 2 15.5.1 "Canonicalization and
//! Consistency Checks"): the rules under which VMRUN ends at once in
//! #VMEXIT(VMEXIT_INVALID). L0 uses them to name the rule a refused vmcb01
//! broke; nested SVM applies them to the vmcb12 copy.
//!
//! Several rules depend on the processor: "any MBZ bit of CR3, CR4 or EFER
//! is set" (a CR4 or EFER bit whose feature the processor does not report is
//! reserved, APM 3.1.3 and 3.1.7; CR3 bits above the physical address width
//! are, APM 3.1.2 and 5.3.2), "EFER.LMA or EFER.LME with a processor that does
//! not support long mode". [`Features`] holds what these rules need; for a
//! vCPU it is what both the host processor and the vCPU's CPUID offer, as
//! KVM builds its `cr4_guest_rsvd_bits` from its own capabilities and the
//! guest's CPUID.

use crate::event::Event;
use crate::msr::{self, efer};
use crate::vmcb::{nested_ctl, seg_attr, ControlArea, SaveArea};
use crate::x86::{cr0, cr4};

/// CPUID register indices in a `[EAX, EBX, ECX, EDX]` leaf.
const EAX: usize = 0;
const EBX: usize = 1;
const ECX: usize = 2;
const EDX: usize = 3;

/// CR4 bits that exist only with a CPUID feature (APM vol. 2 3.1.3, vol. 3
/// appendix E): (bit, leaf, register, feature bit). The other defined bits
/// (VME .. OSXMMEXCPT) exist on every AMD64 processor.
const CR4_FEATURES: [(u64, u32, usize, u32); 9] = [
    (cr4::UMIP, 7, ECX, 2),
    (cr4::LA57, 7, ECX, 16),
    (cr4::FSGSBASE, 7, EBX, 0),
    (cr4::PCIDE, 1, ECX, 17),
    (cr4::OSXSAVE, 1, ECX, 26),
    (cr4::SMEP, 7, EBX, 7),
    (cr4::SMAP, 7, EBX, 20),
    (cr4::PKE, 7, ECX, 3),
    // CET: shadow stacks (AMD processors have no indirect branch tracking).
    (cr4::CET, 7, ECX, 7),
];

/// EFER bits that exist only with a CPUID feature (APM vol. 2 3.1.7, vol. 3
/// appendix E): (bits, leaf, register, feature bit). SCE is always defined;
/// LMSLE unless Fn8000_0008 EBX[20] (EferLmsleUnsupported) says otherwise.
const EFER_FEATURES: [(u64, u32, usize, u32); 9] = [
    (efer::LME | efer::LMA, 0x8000_0001, EDX, 29),
    (efer::NXE, 0x8000_0001, EDX, 20),
    (efer::SVME, 0x8000_0001, ECX, 2),
    (efer::FFXSR, 0x8000_0001, EDX, 25),
    (efer::TCE, 0x8000_0001, ECX, 17),
    (efer::MCOMMIT, 0x8000_0008, EBX, 8),
    (efer::INTWB, 0x8000_0008, EBX, 13),
    (efer::UAIE, 0x8000_0021, EAX, 7),
    (efer::AIBRSE, 0x8000_0021, EAX, 8),
];

/// Fn8000_0008 EBX[20]: EFER.LMSLE is not supported (must be zero).
const LMSLE_UNSUPPORTED: (u32, usize, u32) = (0x8000_0008, EBX, 20);

/// What the processor-dependent rules depend on: the physical address width
/// and the CR4 and EFER bits that may be set (every other bit is MBZ).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Features {
    /// Physical address width (MAXPHYADDR).
    pub phys_bits: u8,
    /// CR4 bits that may be set: defined and, where a feature makes them
    /// exist, with the feature reported.
    pub cr4: u64,
    /// EFER bits that may be set, on the same terms.
    pub efer: u64,
}

impl Features {
    /// The features one CPUID reports; `cpuid(leaf, subleaf)` gives the
    /// leaf's `[EAX, EBX, ECX, EDX]` (zeros for a leaf it does not have).
    /// The physical address width is Fn8000_0008 EAX[7:0], or 36 when the
    /// extended leaves stop before it (KVM's `cpuid_query_maxphyaddr`).
    pub fn from_cpuid(cpuid: impl Fn(u32, u32) -> [u32; 4]) -> Self {
        let has = |leaf: u32, reg: usize, bit: u32| cpuid(leaf, 0)[reg] & (1 << bit) != 0;
        let mut cr4 = cr4::DEFINED;
        for (b, leaf, reg, bit) in CR4_FEATURES {
            if !has(leaf, reg, bit) {
                cr4 &= !b;
            }
        }
        let mut e = efer::SCE;
        for (b, leaf, reg, bit) in EFER_FEATURES {
            if has(leaf, reg, bit) {
                e |= b;
            }
        }
        let (leaf, reg, bit) = LMSLE_UNSUPPORTED;
        if !has(leaf, reg, bit) {
            e |= efer::LMSLE;
        }
        let phys_bits = if cpuid(0x8000_0000, 0)[EAX] >= crate::cpuid::LEAF_ADDR_SIZE {
            cpuid(crate::cpuid::LEAF_ADDR_SIZE, 0)[EAX] as u8
        } else {
            36
        };
        Self { phys_bits, cr4, efer: e }
    }

    /// What both offer: the smaller width, the bits both allow (a vCPU gets
    /// what its CPUID offers and the processor running it implements).
    pub const fn and(self, other: Self) -> Self {
        Self {
            phys_bits: if self.phys_bits < other.phys_bits { self.phys_bits } else { other.phys_bits },
            cr4: self.cr4 & other.cr4,
            efer: self.efer & other.efer,
        }
    }

    /// Whether `pa` is below the physical address width.
    pub const fn pa_ok(&self, pa: u64) -> bool {
        self.phys_bits >= 64 || pa >> self.phys_bits == 0
    }

    /// The MBZ bits of CR3 (APM 3.1.2, 5.3.2): in long mode (EFER.LME and
    /// CR0.PG) the bits at and above the physical address width (52 at
    /// most: bits 63:52 are always reserved); otherwise CR3 is a 32-bit
    /// register and bits 63:32 are.
    pub const fn cr3_mbz(&self, long_mode: bool) -> u64 {
        let w = if !long_mode {
            32
        } else if self.phys_bits < 52 {
            self.phys_bits
        } else {
            52
        };
        !0u64 << w
    }
}

/// One consistency rule of APM 15.5.1 (plus the nested-paging ones KVM adds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// EFER.SVME is zero.
    EferSvme,
    /// CR0.CD is zero and CR0.NW is set.
    Cr0CdNw,
    /// CR0[63:32] are not zero.
    Cr0High,
    /// An MBZ bit of CR3 is set (in long mode: a bit at or above the
    /// physical address width).
    Cr3Mbz,
    /// An MBZ bit of CR4 is set (undefined, or its feature not offered).
    Cr4Mbz,
    /// DR6[63:32] are not zero.
    Dr6High,
    /// DR7[63:32] are not zero.
    Dr7High,
    /// EFER.LMA or EFER.LME is set and the processor has no long mode.
    LongModeUnsupported,
    /// An MBZ bit of EFER is set (undefined, or its feature not offered).
    EferMbz,
    /// EFER.LME and CR0.PG are set and CR4.PAE is zero.
    LongModeNoPae,
    /// EFER.LME and CR0.PG are set and CR0.PE is zero.
    LongModeNoPe,
    /// EFER.LME, CR0.PG, CR4.PAE, CS.L and CS.D are all set.
    CsLAndD,
    /// The VMRUN intercept bit is clear.
    VmrunIntercept,
    /// The MSRPM extends beyond the physical address space.
    MsrpmAddress,
    /// The IOPM extends beyond the physical address space.
    IopmAddress,
    /// EVENTINJ is not a legal event (APM 15.20).
    EventInj,
    /// The ASID is zero.
    AsidZero,
    /// NP_ENABLE with an nCR3 beyond the physical address space.
    NestedCr3,
    /// NP_ENABLE with a G_PAT entry that is not a memory type.
    GuestPat,
    /// V_NMI_ENABLE without the NMI intercept (APM 15.21.10).
    VnmiIntercept,
}

impl Check {
    /// Every check, in the order they are applied.
    pub const ALL: [Check; 20] = [
        Check::EferSvme, Check::Cr0CdNw, Check::Cr0High, Check::Cr3Mbz, Check::Cr4Mbz,
        Check::Dr6High, Check::Dr7High, Check::LongModeUnsupported, Check::EferMbz,
        Check::LongModeNoPae, Check::LongModeNoPe,
        Check::CsLAndD, Check::VmrunIntercept, Check::MsrpmAddress, Check::IopmAddress,
        Check::EventInj, Check::AsidZero, Check::NestedCr3, Check::GuestPat, Check::VnmiIntercept,
    ];
    /// Short name (statistics, logs).
    pub const fn name(self) -> &'static str {
        match self {
            Check::EferSvme => "efer_svme",
            Check::Cr0CdNw => "cr0_cd_nw",
            Check::Cr0High => "cr0_high",
            Check::Cr3Mbz => "cr3_mbz",
            Check::Cr4Mbz => "cr4_mbz",
            Check::Dr6High => "dr6_high",
            Check::Dr7High => "dr7_high",
            Check::LongModeUnsupported => "long_mode_unsupported",
            Check::EferMbz => "efer_mbz",
            Check::LongModeNoPae => "long_mode_no_pae",
            Check::LongModeNoPe => "long_mode_no_pe",
            Check::CsLAndD => "cs_l_and_d",
            Check::VmrunIntercept => "vmrun_intercept",
            Check::MsrpmAddress => "msrpm_address",
            Check::IopmAddress => "iopm_address",
            Check::EventInj => "event_inj",
            Check::AsidZero => "asid_zero",
            Check::NestedCr3 => "nested_cr3",
            Check::GuestPat => "guest_pat",
            Check::VnmiIntercept => "vnmi_intercept",
        }
    }
    /// Position in [`Check::ALL`].
    pub fn index(self) -> usize {
        Check::ALL.iter().position(|c| *c == self).unwrap_or(0)
    }
}

/// Whether `vector` is an exception the architecture defines (APM vol. 2
/// table 8-1): 0-8, 10-14, 16-19, 21 (#CP), 28 (#HV), 29 (#VC), 30 (#SX).
/// 9, 15, 20, 22-27 and 31 are reserved (2 is NMI, not an exception: left
/// to `check_injectable`).
pub const fn exception_vector_defined(vector: u8) -> bool {
    matches!(vector, 0..=8 | 10..=14 | 16..=19 | 21 | 28..=30)
}

/// Whether `vector` is an exception this processor can raise: defined
/// ([`exception_vector_defined`]), #CP only with shadow stacks (CR4.CET
/// allowed) and #VC only for SEV-ES guests (never here), as KVM's
/// `nested_svm_event_inj_valid_exept` decides.
pub const fn exception_vector_exists(vector: u8, f: &Features) -> bool {
    match vector {
        21 => f.cr4 & cr4::CET != 0,
        29 => false,
        v => exception_vector_defined(v),
    }
}

/// Applies the checks to a VMCB's state for a processor with features `f`
/// (for a vCPU: the host's and its CPUID's, [`Features::and`]). The first
/// broken rule is returned.
pub fn check_vmrun(save: &SaveArea, control: &ControlArea, f: &Features) -> Result<(), Check> {
    let limit = |pa: u64| f.pa_ok(pa);
    if save.efer & efer::SVME == 0 {
        return Err(Check::EferSvme);
    }
    if save.cr0 & cr0::CD == 0 && save.cr0 & cr0::NW != 0 {
        return Err(Check::Cr0CdNw);
    }
    if save.cr0 >> 32 != 0 {
        return Err(Check::Cr0High);
    }
    let long = save.efer & efer::LME != 0 && save.cr0 & cr0::PG != 0;
    if save.cr3 & f.cr3_mbz(long) != 0 {
        return Err(Check::Cr3Mbz);
    }
    if save.cr4 & !f.cr4 != 0 {
        return Err(Check::Cr4Mbz);
    }
    if save.dr6 >> 32 != 0 {
        return Err(Check::Dr6High);
    }
    if save.dr7 >> 32 != 0 {
        return Err(Check::Dr7High);
    }
    if save.efer & (efer::LME | efer::LMA) != 0 && f.efer & efer::LME == 0 {
        return Err(Check::LongModeUnsupported);
    }
    if save.efer & !f.efer != 0 {
        return Err(Check::EferMbz);
    }
    if long && save.cr4 & cr4::PAE == 0 {
        return Err(Check::LongModeNoPae);
    }
    if long && save.cr0 & cr0::PE == 0 {
        return Err(Check::LongModeNoPe);
    }
    if long && save.cr4 & cr4::PAE != 0 && save.cs.attrib & seg_attr::L != 0 && save.cs.attrib & seg_attr::DB != 0 {
        return Err(Check::CsLAndD);
    }
    if !control.intercepts.test(crate::exit::VMRUN) {
        return Err(Check::VmrunIntercept);
    }
    // The MSRPM is 8 KiB and the IOPM 12 KiB from their (page-aligned) bases.
    if !limit((control.msrpm_base_pa & !0xfff) + 0x2000 - 1) {
        return Err(Check::MsrpmAddress);
    }
    if !limit((control.iopm_base_pa & !0xfff) + 0x3000 - 1) {
        return Err(Check::IopmAddress);
    }
    let inj = Event { info: control.event_inj, error_code: control.event_inj_err };
    if inj.check_injectable().is_err() {
        return Err(Check::EventInj);
    }
    // APM 15.20: an exception type whose vector is not an exception (the
    // reserved vectors, and those of features the processor lacks; KVM's
    // nested_svm_event_inj_valid_exept agrees).
    if inj.valid() && inj.event_type() == Some(crate::event::EventType::Exception) && !exception_vector_exists(inj.vector(), f) {
        return Err(Check::EventInj);
    }
    if control.asid == 0 {
        return Err(Check::AsidZero);
    }
    if control.nested_ctl & nested_ctl::NP_ENABLE != 0 {
        if !limit(control.nested_cr3) {
            return Err(Check::NestedCr3);
        }
        if !msr::pat_valid(save.g_pat) {
            return Err(Check::GuestPat);
        }
    }
    // NMI virtualization requires the NMI intercept (APM 15.21.10: "results
    // in #VMEXIT(INVALID)"); V_NMI_ENABLE reaches here only when vNMI is
    // offered (vmcb12's vNMI bits are dropped otherwise).
    if control.int_ctl & crate::vmcb::int_ctl::V_NMI_ENABLE != 0 && !control.intercepts.test(crate::exit::NMI) {
        return Err(Check::VnmiIntercept);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A mutation of a good VMCB and the rule it must break.
    type Case = (fn(&mut Vmcb), Check);
    use crate::vmcb::Vmcb;

    /// A processor with 40 address bits and every CR4 and EFER feature.
    const ALL40: Features = Features { phys_bits: 40, cr4: cr4::DEFINED, efer: !efer::RESERVED };

    fn good() -> Vmcb {
        let mut v = Vmcb::ZERO;
        v.save.efer = efer::SVME;
        v.save.cr0 = 0x10;
        v.save.dr6 = 0xffff0ff0;
        v.save.dr7 = 0x400;
        v.save.g_pat = 0x0007_0406_0007_0406;
        v.control.intercepts.set(crate::exit::VMRUN);
        v.control.asid = 1;
        v.control.nested_ctl = nested_ctl::NP_ENABLE;
        v.control.nested_cr3 = 0x1000;
        v.control.iopm_base_pa = 0x10000;
        v.control.msrpm_base_pa = 0x20000;
        v
    }

    /// `good()` in long mode (EFER.LME/LMA, CR0.PG/PE, CR4.PAE, 64-bit CS).
    fn good_long() -> Vmcb {
        let mut v = good();
        v.save.efer |= efer::LME | efer::LMA;
        v.save.cr0 = 0x8000_0011;
        v.save.cr4 = cr4::PAE;
        v.save.cs.attrib = seg_attr::L | seg_attr::P;
        v
    }

    #[test]
    fn each_rule() {
        let ok = good();
        assert_eq!(check_vmrun(&ok.save, &ok.control, &ALL40), Ok(()));
        let cases: [Case; 20] = [
            (|v| v.save.efer = 0, Check::EferSvme),
            (|v| v.save.cr0 = 1 << 29, Check::Cr0CdNw),
            (|v| v.save.cr0 |= 1 << 32, Check::Cr0High),
            (|v| v.save.cr3 = 1 << 40, Check::Cr3Mbz),
            (|v| v.save.cr4 = 1 << 13, Check::Cr4Mbz),
            (|v| v.save.dr6 |= 1 << 32, Check::Dr6High),
            (|v| v.save.dr7 |= 1 << 40, Check::Dr7High),
            (|v| v.save.efer |= 1 << 1, Check::EferMbz),
            (|v| v.save.efer |= efer::LME, Check::LongModeUnsupported),
            (|v| {
                v.save.efer |= efer::LME | efer::LMA;
                v.save.cr0 = 0x8000_0001;
            }, Check::LongModeNoPae),
            (|v| {
                v.save.efer |= efer::LME;
                v.save.cr0 = 0x8000_0000;
                v.save.cr4 = 1 << 5;
            }, Check::LongModeNoPe),
            (|v| {
                v.save.efer |= efer::LME | efer::LMA;
                v.save.cr0 = 0x8000_0001;
                v.save.cr4 = 1 << 5;
                v.save.cs.attrib = seg_attr::L | seg_attr::DB | seg_attr::P;
            }, Check::CsLAndD),
            (|v| v.control.intercepts.clear(crate::exit::VMRUN), Check::VmrunIntercept),
            (|v| v.control.msrpm_base_pa = (1 << 40) - 0x1000, Check::MsrpmAddress),
            (|v| v.control.iopm_base_pa = (1 << 40) - 0x2000, Check::IopmAddress),
            (|v| v.control.event_inj = 0x8000_0302, Check::EventInj),
            (|v| v.control.asid = 0, Check::AsidZero),
            (|v| v.control.nested_cr3 = 1 << 41, Check::NestedCr3),
            (|v| v.save.g_pat = 0x0007_0406_0007_0402, Check::GuestPat),
            (|v| v.control.int_ctl |= crate::vmcb::int_ctl::V_NMI_ENABLE, Check::VnmiIntercept),
        ];
        // Every rule has its case, and each case breaks exactly its rule
        // (LongModeUnsupported on a processor without long mode).
        assert!(Check::ALL.iter().all(|c| cases.iter().any(|(_, w)| w == c)));
        let no_lm = Features { efer: ALL40.efer & !(efer::LME | efer::LMA), ..ALL40 };
        for (m, want) in cases {
            let mut v = good();
            m(&mut v);
            let f = if want == Check::LongModeUnsupported { no_lm } else { ALL40 };
            assert_eq!(check_vmrun(&v.save, &v.control, &f), Err(want), "{}", want.name());
        }
        // Exception vectors that are reserved (APM table 8-1) are refused;
        // defined ones pass.
        for vec in [9u32, 15, 20, 22, 27, 31] {
            let mut v = good();
            v.control.event_inj = 0x8000_0300 | vec;
            assert_eq!(check_vmrun(&v.save, &v.control, &ALL40), Err(Check::EventInj), "vector {vec}");
        }
        for vec in [0u32, 8, 13, 14, 17, 19, 21, 28, 30] {
            let mut v = good();
            v.control.event_inj = 0x8000_0300 | vec;
            assert_eq!(check_vmrun(&v.save, &v.control, &ALL40), Ok(()), "vector {vec}");
        }
        // #CP exists only with shadow stacks; #VC never (no SEV-ES guests).
        let no_cet = Features { cr4: cr4::DEFINED & !cr4::CET, ..ALL40 };
        for (vec, f) in [(21u32, &no_cet), (29, &ALL40)] {
            let mut v = good();
            v.control.event_inj = 0x8000_0300 | vec;
            assert_eq!(check_vmrun(&v.save, &v.control, f), Err(Check::EventInj), "vector {vec}");
        }
        // Interrupts (type 0) take any vector.
        let mut v = good();
        v.control.event_inj = 0x8000_000f;
        assert_eq!(check_vmrun(&v.save, &v.control, &ALL40), Ok(()));
        // The same rules with long mode done right pass.
        let v = good_long();
        assert_eq!(check_vmrun(&v.save, &v.control, &ALL40), Ok(()));
        // vNMI with the NMI intercept passes.
        let mut v = good();
        v.control.int_ctl |= crate::vmcb::int_ctl::V_NMI_ENABLE;
        v.control.intercepts.set(crate::exit::NMI);
        assert_eq!(check_vmrun(&v.save, &v.control, &ALL40), Ok(()));
        assert_eq!(Check::ALL.len(), 20);
        assert_eq!(Check::GuestPat.index(), 18);
    }

    #[test]
    fn cr3_bits_above_the_physical_address_width() {
        // Long mode: every bit from MAXPHYADDR up is MBZ, not only 63:52.
        for phys in [36u8, 40, 48, 52] {
            let f = Features { phys_bits: phys, ..ALL40 };
            let mut v = good_long();
            v.save.cr3 = (1u64 << phys) - 0x1000;
            assert_eq!(check_vmrun(&v.save, &v.control, &f), Ok(()), "phys {phys}");
            for bit in phys..64 {
                v.save.cr3 = 0x1000 | 1 << bit;
                assert_eq!(check_vmrun(&v.save, &v.control, &f), Err(Check::Cr3Mbz), "phys {phys} bit {bit}");
            }
        }
        // Outside long mode CR3 is 32 bits wide.
        let mut v = good();
        v.save.cr3 = 0xffff_f000;
        assert_eq!(check_vmrun(&v.save, &v.control, &ALL40), Ok(()));
        v.save.cr3 = 1 << 32;
        assert_eq!(check_vmrun(&v.save, &v.control, &ALL40), Err(Check::Cr3Mbz));
    }

    #[test]
    fn cr4_and_efer_bits_follow_the_features() {
        // Each CR4 bit: refused when undefined or its feature is missing.
        for bit in 0..64 {
            let b = 1u64 << bit;
            if b == cr4::PAE {
                continue; // long mode needs it
            }
            for allowed in [cr4::DEFINED, cr4::DEFINED & !b] {
                let f = Features { cr4: allowed | cr4::PAE, ..ALL40 };
                let mut v = good_long();
                v.save.cr4 |= b;
                let want = if allowed & b != 0 { Ok(()) } else { Err(Check::Cr4Mbz) };
                assert_eq!(check_vmrun(&v.save, &v.control, &f), want, "CR4 bit {bit}");
            }
        }
        // Each EFER bit other than SVME/LME/LMA, the same way.
        for bit in 0..64 {
            let b = 1u64 << bit;
            if b & (efer::SVME | efer::LME | efer::LMA) != 0 {
                continue;
            }
            for allowed in [!efer::RESERVED, !efer::RESERVED & !b] {
                let f = Features { efer: allowed, ..ALL40 };
                let mut v = good_long();
                v.save.efer |= b;
                let want = if allowed & b != 0 { Ok(()) } else { Err(Check::EferMbz) };
                assert_eq!(check_vmrun(&v.save, &v.control, &f), want, "EFER bit {bit}");
            }
        }
    }

    /// A CPUID table as a lookup (absent leaves read as zeros).
    fn table(entries: &[(u32, [u32; 4])]) -> impl Fn(u32, u32) -> [u32; 4] + '_ {
        move |leaf, _| entries.iter().find(|(l, _)| *l == leaf).map_or([0; 4], |(_, r)| *r)
    }

    #[test]
    fn features_from_cpuid() {
        // No CPUID at all (a vCPU before KVM_SET_CPUID2): the CR4 bits every
        // AMD64 processor has, EFER.SCE and LMSLE, 36 address bits.
        let none = Features::from_cpuid(table(&[]));
        assert_eq!(none.phys_bits, 36);
        assert_eq!(none.cr4, 0x7ff);
        assert_eq!(none.efer, efer::SCE | efer::LMSLE);
        // QEMU's EPYC model under TCG, roughly: XSAVE, FSGSBASE, SMEP, SMAP;
        // LM, NX, SVM; 40 address bits; LMSLE reported unsupported.
        let epyc = Features::from_cpuid(table(&[
            (1, [0, 0, 1 << 26, 0]),
            (7, [0, 1 | 1 << 7 | 1 << 20, 0, 0]),
            (0x8000_0000, [0x8000_0008, 0, 0, 0]),
            (0x8000_0001, [0, 0, 1 << 2, 1 << 29 | 1 << 20]),
            (0x8000_0008, [40, 1 << 20, 0, 0]),
        ]));
        assert_eq!(epyc.phys_bits, 40);
        assert_eq!(epyc.cr4, 0x7ff | cr4::OSXSAVE | cr4::FSGSBASE | cr4::SMEP | cr4::SMAP);
        assert_eq!(epyc.efer, efer::SCE | efer::LME | efer::LMA | efer::NXE | efer::SVME);
        // Every feature: every defined bit.
        let all = Features::from_cpuid(table(&[
            (1, [0, 0, !0, !0]),
            (7, [!0, !0, !0, !0]),
            (0x8000_0000, [0x8000_0021, 0, 0, 0]),
            (0x8000_0001, [!0, !0, !0, !0]),
            (0x8000_0008, [48, !(1 << 20), 0, 0]),
            (0x8000_0021, [!0, 0, 0, 0]),
        ]));
        assert_eq!(all, Features { phys_bits: 48, cr4: cr4::DEFINED, efer: !efer::RESERVED });
        // A vCPU gets what both offer.
        assert_eq!(all.and(none), Features { phys_bits: 36, cr4: 0x7ff, efer: efer::SCE | efer::LMSLE });
        assert_eq!(all.and(Features { phys_bits: 40, ..all }).phys_bits, 40);
        assert_eq!(epyc.and(all), epyc);
    }
}
