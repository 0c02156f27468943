// SPDX-License-Identifier: GPL-2.0
//! VMRUN consistency checks (APM vol. 2 15.5.1 "Canonicalization and
//! Consistency Checks"): the rules under which VMRUN ends at once in
//! #VMEXIT(VMEXIT_INVALID). L0 uses them to name the rule a refused vmcb01
//! broke; nested SVM applies them to the vmcb12 copy.

use crate::event::Event;
use crate::msr::{self, efer};
use crate::vmcb::{nested_ctl, seg_attr, ControlArea, SaveArea};
use crate::x86::{cr0, cr4};

/// One consistency rule of APM 15.5.1 (plus the nested-paging ones KVM adds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// EFER.SVME is zero.
    EferSvme,
    /// CR0.CD is zero and CR0.NW is set.
    Cr0CdNw,
    /// CR0[63:32] are not zero.
    Cr0High,
    /// An MBZ bit of CR3 is set.
    Cr3Mbz,
    /// An MBZ bit of CR4 is set.
    Cr4Mbz,
    /// DR6[63:32] are not zero.
    Dr6High,
    /// DR7[63:32] are not zero.
    Dr7High,
    /// An MBZ bit of EFER is set.
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
}

impl Check {
    /// Every check, in the order they are applied.
    pub const ALL: [Check; 18] = [
        Check::EferSvme, Check::Cr0CdNw, Check::Cr0High, Check::Cr3Mbz, Check::Cr4Mbz,
        Check::Dr6High, Check::Dr7High, Check::EferMbz, Check::LongModeNoPae, Check::LongModeNoPe,
        Check::CsLAndD, Check::VmrunIntercept, Check::MsrpmAddress, Check::IopmAddress,
        Check::EventInj, Check::AsidZero, Check::NestedCr3, Check::GuestPat,
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

/// Applies the checks to a VMCB's state; `phys_bits` is the processor's
/// physical address width. The first broken rule is returned.
pub fn check_vmrun(save: &SaveArea, control: &ControlArea, phys_bits: u8) -> Result<(), Check> {
    let limit = |pa: u64| phys_bits >= 64 || pa >> phys_bits == 0;
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
    let cr3_ok = if long { save.cr3 >> 52 == 0 } else { save.cr3 >> 32 == 0 };
    if !cr3_ok {
        return Err(Check::Cr3Mbz);
    }
    if save.cr4 & !cr4::DEFINED != 0 {
        return Err(Check::Cr4Mbz);
    }
    if save.dr6 >> 32 != 0 {
        return Err(Check::Dr6High);
    }
    if save.dr7 >> 32 != 0 {
        return Err(Check::Dr7High);
    }
    if save.efer & efer::RESERVED != 0 {
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
    // reserved vectors; KVM's nested_svm_event_inj_valid_exept agrees).
    if inj.valid() && inj.event_type() == Some(crate::event::EventType::Exception) && !exception_vector_defined(inj.vector()) {
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A mutation of a good VMCB and the rule it must break.
    type Case = (fn(&mut Vmcb), Check);
    use crate::vmcb::Vmcb;

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

    #[test]
    fn each_rule() {
        let ok = good();
        assert_eq!(check_vmrun(&ok.save, &ok.control, 40), Ok(()));
        let cases: [Case; 18] = [
            (|v| v.save.efer = 0, Check::EferSvme),
            (|v| v.save.cr0 = 1 << 29, Check::Cr0CdNw),
            (|v| v.save.cr0 |= 1 << 32, Check::Cr0High),
            (|v| v.save.cr3 = 1 << 40, Check::Cr3Mbz),
            (|v| v.save.cr4 = 1 << 13, Check::Cr4Mbz),
            (|v| v.save.dr6 |= 1 << 32, Check::Dr6High),
            (|v| v.save.dr7 |= 1 << 40, Check::Dr7High),
            (|v| v.save.efer |= 1 << 1, Check::EferMbz),
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
        ];
        for (f, want) in cases {
            let mut v = good();
            f(&mut v);
            assert_eq!(check_vmrun(&v.save, &v.control, 40), Err(want), "{}", want.name());
        }
        // Exception vectors that are reserved (APM table 8-1) are refused;
        // defined ones pass.
        for vec in [9u32, 15, 20, 22, 27, 31] {
            let mut v = good();
            v.control.event_inj = 0x8000_0300 | vec;
            assert_eq!(check_vmrun(&v.save, &v.control, 40), Err(Check::EventInj), "vector {vec}");
        }
        for vec in [0u32, 8, 13, 14, 17, 19, 21, 28, 30] {
            let mut v = good();
            v.control.event_inj = 0x8000_0300 | vec;
            assert_eq!(check_vmrun(&v.save, &v.control, 40), Ok(()), "vector {vec}");
        }
        // Interrupts (type 0) take any vector.
        let mut v = good();
        v.control.event_inj = 0x8000_000f;
        assert_eq!(check_vmrun(&v.save, &v.control, 40), Ok(()));
        // The same rules with long mode done right pass.
        let mut v = good();
        v.save.efer |= efer::LME | efer::LMA;
        v.save.cr0 = 0x8000_0011;
        v.save.cr4 = 1 << 5;
        v.save.cs.attrib = seg_attr::L | seg_attr::P;
        assert_eq!(check_vmrun(&v.save, &v.control, 40), Ok(()));
        assert_eq!(Check::ALL.len(), 18);
        assert_eq!(Check::GuestPat.index(), 17);
    }
}
