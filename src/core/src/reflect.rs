// SPDX-License-Identifier: GPL-2.0
//! The decision every #VMEXIT of an L2 guest needs: deliver it to L1 (which
//! asked to intercept it) or handle it in L0. Groundwork for nested SVM:
//! intercept bits (bit index = exit code), L1's MSR permission map for MSR
//! exits (APM 15.11) and I/O permission map for IOIO exits (APM 15.10.1).

use crate::exit::{self, IoioInfo};
use crate::intercept::Intercepts;

/// Who handles an L2 exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Reflect to L1 as #VMEXIT with the same exit code and information.
    L1,
    /// Handle in L0 and resume L2.
    L0,
}

/// Offset in the MSRPM of the two bits (read, write) of `msr`, or `None` for
/// MSRs outside the three ranges the map covers (APM 15.11, figure 15-7):
/// 0000_0000h–0000_1FFFh at byte 000h, C000_0000h–C000_1FFFh at 800h,
/// C001_0000h–C001_1FFFh at 1000h.
pub const fn msrpm_bit(msr: u32) -> Option<u32> {
    let (base, off) = match msr {
        0x0000_0000..=0x0000_1fff => (0x0000, msr),
        0xc000_0000..=0xc000_1fff => (0x0800, msr - 0xc000_0000),
        0xc001_0000..=0xc001_1fff => (0x1000, msr - 0xc001_0000),
        _ => return None,
    };
    Some(base * 8 + off * 2)
}

/// Whether an L2 exit goes to L1. `info1` is EXITINFO1; `msrpm_bit` and
/// `iopm_bit` read bit `n` of L1's MSRPM and IOPM (from the vmcb12 base
/// addresses, in L1 memory; `None` when L0 cannot read it, which counts as
/// set, as a processor would treat the access as intercepted).
pub fn decide(
    code: u64,
    info1: u64,
    l1: &Intercepts,
    msrpm: impl Fn(u32) -> Option<bool>,
    iopm: impl Fn(u32) -> Option<bool>,
    msr_index: u32,
) -> Decision {
    match code {
        // Physical interrupts and the like belong to the host; L1 sees its
        // own virtual interrupts through its own intercepts later.
        exit::INTR | exit::NMI | exit::SMI | exit::INIT => Decision::L0,
        // #MC is always the host's.
        c if c == exit::EXCP_BASE + 18 => Decision::L0,
        exit::MSR => {
            if !l1.test(exit::MSR) {
                return Decision::L0;
            }
            let write = info1 & 1 != 0;
            match msrpm_bit(msr_index) {
                // Outside the map: always intercepted.
                None => Decision::L1,
                Some(b) => {
                    if msrpm(b + u32::from(write)).unwrap_or(true) {
                        Decision::L1
                    } else {
                        Decision::L0
                    }
                }
            }
        }
        exit::IOIO => {
            if !l1.test(exit::IOIO) {
                return Decision::L0;
            }
            // Every byte the access touches has a bit (APM 15.10.1).
            if IoioInfo::decode(info1, 0).ports().any(|p| iopm(p).unwrap_or(true)) {
                Decision::L1
            } else {
                Decision::L0
            }
        }
        // Nested page faults are decided by the shadow NPT logic (NPT12 vs
        // NPT01); without L1 nested paging they are L0's.
        exit::NPF => Decision::L0,
        c if l1.test(c) => Decision::L1,
        _ => Decision::L0,
    }
}

/// A physical interrupt for L1 (queued by `KVM_INTERRUPT`) while L2 runs:
/// whether it must end L2 with a #VMEXIT(INTR) to L1 now. It does when L1
/// intercepts INTR and the interrupt is not masked (APM 15.21.1, 15.21.4):
/// with vmcb12's V_INTR_MASKING the host's (L1's) RFLAGS.IF saved at VMRUN
/// masks physical interrupts, otherwise L2's RFLAGS.IF does; GIF is set
/// while L2 runs. The interrupt stays pending for L1 (it is not
/// acknowledged by the intercept). Without the INTR intercept the interrupt
/// is delivered into L2 instead, and this returns false.
pub fn intr_exit_due(l1: &Intercepts, int_ctl12: u32, l1_if: bool, l2_if: bool) -> bool {
    l1.test(exit::INTR) && l1_intr_unmasked(int_ctl12, l1_if, l2_if)
}

/// While L2 runs, whether L1's physical interrupts are unmasked (APM
/// 15.21.1): with vmcb12's V_INTR_MASKING by the host's (L1's) RFLAGS.IF
/// saved at VMRUN, L2's RFLAGS.IF then only masking L2's virtual
/// interrupts; without it by L2's RFLAGS.IF. Without the INTR intercept an
/// unmasked interrupt is delivered into L2 (KVM's svm_interrupt_blocked).
pub fn l1_intr_unmasked(int_ctl12: u32, l1_if: bool, l2_if: bool) -> bool {
    if int_ctl12 & crate::vmcb::int_ctl::V_INTR_MASKING != 0 {
        l1_if
    } else {
        l2_if
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msrpm_layout() {
        assert_eq!(msrpm_bit(0), Some(0));
        assert_eq!(msrpm_bit(0x10), Some(0x20));
        assert_eq!(msrpm_bit(0xc000_0080), Some(0x800 * 8 + 0x100));
        assert_eq!(msrpm_bit(0xc001_0117), Some(0x1000 * 8 + 0x22e));
        assert_eq!(msrpm_bit(0x4000_0000), None);
        assert_eq!(msrpm_bit(0xc000_2000), None);
    }

    #[test]
    fn decisions() {
        let mut l1 = Intercepts::NONE;
        l1.set(exit::CPUID);
        l1.set(exit::MSR);
        l1.set(exit::IOIO);
        l1.set(exit::INTR);
        let none = |_| Some(false);
        assert_eq!(decide(exit::CPUID, 0, &l1, none, none, 0), Decision::L1);
        assert_eq!(decide(exit::HLT, 0, &l1, none, none, 0), Decision::L0);
        assert_eq!(decide(exit::INTR, 0, &l1, none, none, 0), Decision::L0);
        // MSR: only the bit for the right direction counts.
        let efer_write = msrpm_bit(0xc000_0080).unwrap() + 1;
        let pm = move |b| Some(b == efer_write);
        assert_eq!(decide(exit::MSR, 1, &l1, pm, none, 0xc000_0080), Decision::L1);
        assert_eq!(decide(exit::MSR, 0, &l1, pm, none, 0xc000_0080), Decision::L0);
        assert_eq!(decide(exit::MSR, 0, &l1, none, none, 0x4000_0000), Decision::L1);
        assert_eq!(decide(exit::MSR, 0, &l1, |_| None, none, 0x10), Decision::L1);
        // IOIO: a 4-byte access at 0x3fe touches 0x3fe..0x401.
        let io = |p| Some(p == 0x400);
        let out4_3fe = (0x3fe << 16) | (1 << 6);
        assert_eq!(decide(exit::IOIO, out4_3fe, &l1, none, io, 0), Decision::L1);
        let out1_3fe = (0x3fe << 16) | (1 << 4);
        assert_eq!(decide(exit::IOIO, out1_3fe, &l1, none, io, 0), Decision::L0);
        // Without the MSR_PROT/IOIO_PROT intercepts, L0 handles them.
        let mut bare = Intercepts::NONE;
        bare.set(exit::CPUID);
        assert_eq!(decide(exit::MSR, 0, &bare, |_| Some(true), none, 0x10), Decision::L0);
        assert_eq!(decide(exit::IOIO, out1_3fe, &bare, none, |_| Some(true), 0), Decision::L0);
        // Exceptions by L1's bitmap; #MC never.
        let mut ex = Intercepts::NONE;
        ex.set(Intercepts::exception(14));
        ex.set(Intercepts::exception(18));
        assert_eq!(decide(exit::EXCP_BASE + 14, 0, &ex, none, none, 0), Decision::L1);
        assert_eq!(decide(exit::EXCP_BASE + 18, 0, &ex, none, none, 0), Decision::L0);
        assert_eq!(decide(exit::EXCP_BASE + 13, 0, &ex, none, none, 0), Decision::L0);
    }

    #[test]
    fn intr_for_l1_while_l2_runs() {
        use crate::vmcb::int_ctl::V_INTR_MASKING;
        let mut l1 = Intercepts::NONE;
        assert!(!intr_exit_due(&l1, V_INTR_MASKING, true, true));
        l1.set(exit::INTR);
        // V_INTR_MASKING: L1's IF decides, L2's does not.
        assert!(intr_exit_due(&l1, V_INTR_MASKING, true, false));
        assert!(!intr_exit_due(&l1, V_INTR_MASKING, false, true));
        assert!(l1_intr_unmasked(V_INTR_MASKING, true, false));
        assert!(!l1_intr_unmasked(V_INTR_MASKING, false, true));
        assert!(l1_intr_unmasked(0, false, true));
        assert!(!l1_intr_unmasked(0, true, false));
        // Without it, L2's IF masks physical interrupts.
        assert!(intr_exit_due(&l1, 0, false, true));
        assert!(!intr_exit_due(&l1, 0, true, false));
    }
}
