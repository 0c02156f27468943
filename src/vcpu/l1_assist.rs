// SPDX-License-Identifier: GPL-2.0
//! SVM features nsvm emulates for L1 beyond the processor underneath
//! (docs/nested.md, decisions in `nsvm_core::l1_assist` and `insn`):
//! NRIPS (APM vol. 2 15.7.1), decode assists (15.8), VMSAVE/VMLOAD
//! virtualization (15.33.1) and virtual NMI (15.21.10) for the running L2.
//! The pause filter (15.14.4) is in `Vcpu::l2_exit_for_l1`.

use nsvm_core::event::{Event, EventType};
use nsvm_core::exit;
use nsvm_core::insn;
use nsvm_core::cpuid::SvmFeatures;
use nsvm_core::l1_assist::{self, vnmi, L2Vmload};
use nsvm_core::msr::efer;
use nsvm_core::vmcb::int_ctl;

use super::VcpuState;
use crate::vm::VmMem;

impl VcpuState {
    /// The next RIP of the L2 instruction that caused exit `code` (for L1's
    /// vmcb12.next_rip): IOIO gives it in EXITINFO2; the instructions L0
    /// can decode are decoded; everything else reports 0.
    pub(super) fn l2_next_rip(&mut self, inner: &VmMem<'_>) -> u64 {
        let (code, info1, info2, rip) = {
            let v = self.nst.vmcb02.get();
            (v.control.exit_code, v.control.exit_info_1, v.control.exit_info_2, v.save.rip)
        };
        insn::next_rip(code, info1, info2, rip, |b| self.fetch_insn(inner, b))
    }

    /// Before an entry into L2: NRIPS's return address for a software
    /// interrupt or #BP/#OF L1 injects, on a processor without NRIPS (it
    /// pushes RIP): vmcb02 enters at NEXT_RIP (`l1_assist::
    /// soft_event_entry_rip`). Returns L2's RIP and the event, for
    /// [`Self::soft_event_after_exit`].
    pub(super) fn soft_event_prepare(&mut self) -> Option<(u64, u32)> {
        if crate::svm::host_has(SvmFeatures::NRIPS) || !self.nst.l1_features.contains(SvmFeatures::NRIPS) {
            return None;
        }
        let v = self.nst.vmcb02.get();
        let inj = v.control.event_inj;
        let at = l1_assist::soft_event_entry_rip(inj, v.save.rip, v.control.next_rip)?;
        let rip = core::mem::replace(&mut v.save.rip, at);
        Some((rip, inj))
    }

    /// After that entry: L2's RIP back when the exit interrupted the
    /// event's delivery (or VMRUN failed), so that L0's re-injection and
    /// L1's vmcb12 see the instruction's address, not NEXT_RIP.
    pub(super) fn soft_event_after_exit(&mut self, (rip, inj): (u64, u32)) {
        let v = self.nst.vmcb02.get();
        if l1_assist::soft_event_interrupted(v.control.exit_int_info, inj) || nsvm_core::vmcb::Vmcb::exit_is_invalid(v.control.exit_code) {
            v.save.rip = rip;
        }
    }

    /// Before an entry into L2 with vNMI on (APM 15.21.10): delivers
    /// vmcb12's pending virtual NMI when it can be taken (V_NMI cleared,
    /// V_NMI_MASK set, L2's IRET intercepted to unmask); returns whether it
    /// did. A pending NMI that is masked while L2 is at the IRET L0
    /// intercepted single-steps that IRET (RFLAGS.TF, #DB intercepted) so
    /// that the NMI is taken right after it completes.
    pub(super) fn vnmi_prepare(&mut self) -> bool {
        use nsvm_core::event::bits::VALID;
        let i12 = self.nst.vmcb12.get().control.int_ctl;
        if !vnmi::enabled(i12) {
            return false;
        }
        let v02 = self.nst.vmcb02.get();
        let shadow = v02.control.int_state & nsvm_core::vmcb::int_state::SHADOW != 0;
        let injecting = v02.control.event_inj & VALID != 0;
        if vnmi::deliverable(i12, v02.control.int_ctl, shadow, injecting) {
            v02.control.event_inj = Event::new(EventType::Nmi, 2, None).info;
            v02.control.event_inj_err = 0;
            v02.control.intercepts.set(exit::IRET);
            self.nst.vmcb12.get().control.int_ctl = vnmi::taken(i12);
            return true;
        }
        let waiting = i12 & int_ctl::V_NMI_PENDING != 0 && i12 & int_ctl::V_NMI_BLOCKING != 0;
        if waiting && self.nst.vnmi_step.is_none() && self.nst.vnmi_iret_rip == Some(v02.save.rip) {
            use nsvm_core::x86::rflags::TF;
            self.nst.vnmi_step = Some((v02.save.rflags & TF, v02.save.dr6));
            v02.save.rflags |= TF;
            v02.control.intercepts.set(exit::EXCP_BASE + 1);
        }
        false
    }

    /// L2's IRET reached L0 (L1 does not intercept it): with vNMI masked,
    /// its address is noted; the intercept is dropped either way.
    pub(super) fn vnmi_iret(&mut self) {
        let i12 = self.nst.vmcb12.get().control.int_ctl;
        let v02 = self.nst.vmcb02.get();
        v02.control.intercepts.clear(exit::IRET);
        if vnmi::enabled(i12) && i12 & int_ctl::V_NMI_BLOCKING != 0 {
            self.nst.vnmi_iret_rip = Some(v02.save.rip);
        }
    }

    /// After an exit of L2 (`code`): ends a single step over L2's IRET
    /// (TF, DR6 and the #DB intercept as they were) and clears V_NMI_MASK
    /// once L2 has moved past that IRET. True when the exit is the step's
    /// own #DB (L0's: L2 resumes and takes the NMI).
    pub(super) fn vnmi_after_exit(&mut self, code: u64) -> bool {
        let mut own_db = false;
        if let Some((tf, dr6)) = self.nst.vnmi_step.take() {
            use nsvm_core::x86::rflags::TF;
            let db = exit::EXCP_BASE + 1;
            let keep = self.nst.vmcb12.get().control.intercepts.test(db) || self.cpu.vmcb.get().control.intercepts.test(db);
            let v02 = self.nst.vmcb02.get();
            v02.save.rflags = (v02.save.rflags & !TF) | tf;
            if !keep {
                v02.control.intercepts.clear(db);
            }
            if code == db && tf == 0 {
                v02.save.dr6 = dr6;
                own_db = true;
            }
        }
        if let Some(r) = self.nst.vnmi_iret_rip {
            if r != self.nst.vmcb02.get().save.rip {
                self.nst.vnmi_iret_rip = None;
                self.nst.vmcb12.get().control.int_ctl &= !int_ctl::V_NMI_BLOCKING;
            }
        }
        own_db
    }

    /// What an L2 VMLOAD/VMSAVE that L1 does not intercept acts on (APM
    /// 15.33.1): L1's VMCB controls and L1's mode at its VMRUN.
    pub(super) fn l2_vmload(&mut self) -> L2Vmload {
        let offered = self.nst.l1_features.contains(SvmFeatures::V_VMSAVE_VMLOAD);
        let virt_ext = self.nst.vmcb12.get().control.virt_ext;
        let np = self.l2_np();
        let s1 = &self.cpu.vmcb.get().save;
        let l1_64 = s1.efer & efer::LMA != 0 && s1.cs.attrib & nsvm_core::vmcb::seg_attr::L != 0;
        l1_assist::l2_vmload(offered, virt_ext, np, l1_64)
    }

    /// Decode assists for the L2 exit in vmcb02 (APM 15.8): EXITINFO1 for
    /// CR/DR, INTn and INVLPG intercepts from L0's decode of L2's
    /// instruction (`None` when undecodable or another exit), and for #PF
    /// and #NPF of data accesses the count and bytes fetched at CS:RIP (a
    /// count of 0 otherwise).
    pub(super) fn l2_decode_assists(&mut self, inner: &VmMem<'_>) -> (Option<u64>, u8, [u8; 15]) {
        let (code, info1) = {
            let c = &self.nst.vmcb02.get().control;
            (c.exit_code, c.exit_info_1)
        };
        let mut b = [0u8; 15];
        let bytes = l1_assist::wants_insn_bytes(code, info1);
        let crdr = l1_assist::is_crdr_exit(code);
        if !bytes && !crdr && !matches!(code, exit::SWINT | exit::INVLPG) {
            return (None, 0, b);
        }
        let n = self.fetch(inner, &mut b);
        let info = if crdr {
            let cs = self.code_size();
            l1_assist::crdr_info1(code, l1_assist::decode_crdr(&b[..n], cs))
        } else if code == exit::SWINT {
            l1_assist::intn_info1(&b[..n])
        } else if code == exit::INVLPG {
            let s = self.sens_state();
            l1_assist::invlpg_info1(&b[..n], &s)
        } else {
            None
        };
        (info, if bytes { n as u8 } else { 0 }, b)
    }
}
