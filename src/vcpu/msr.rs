// SPDX-License-Identifier: GPL-2.0
//! RDMSR/WRMSR exits (APM 15.11) with the VM's MSR filter and MSR exits to
//! userspace (`KVM_CAP_X86_USER_SPACE_MSR`, `nsvm_core::msr_filter`), the
//! stored MSRs of `nsvm_core::msr_misc` (POWER_CTL, UCODE_REV, DE_CFG,
//! MISC_ENABLE) and MONITOR/MWAIT with KVM's quirks.

use core::sync::atomic::Ordering;

use kernel::prelude::*;

use nsvm_core::event::{Event, EventType};
use nsvm_core::insn::Known;
use nsvm_core::msr::efer;
use nsvm_core::msr_filter::{self, Failure};
use nsvm_core::msr_misc::{self, MiscError, MiscMsrs, WriteCtx};
use nsvm_core::uapi::quirks;
use nsvm_core::user_exit::{run, UserExit};
use nsvm_core::x86::Gpr;

use super::{Next, Pending, Vcpu, VcpuState};
use crate::hw;

impl Vcpu {
    fn quirk_on(&self, q: u64) -> bool {
        self.vm.disabled_quirks.load(Ordering::Relaxed) & q == 0
    }

    /// RDMSR/WRMSR (APM 15.11), as KVM's `kvm_emulate_rdmsr/wrmsr`: the
    /// filter first, then the MSR; a refused access exits to userspace
    /// when `KVM_CAP_X86_USER_SPACE_MSR` asked for its reason, else #GP.
    pub(super) fn msr(&self, st: &mut VcpuState, write: bool) -> Result<Next> {
        let index = st.cpu.gprs[Gpr::Rcx] as u32;
        let value = (st.vmcb().save.rax & 0xffff_ffff) | (st.cpu.gprs[Gpr::Rdx] << 32);
        if !self.vm.msr_allowed(index, write) {
            return self.msr_refused(st, write, index, value, Failure::Filtered);
        }
        if write && index == nsvm_core::msr::EFER && value & efer::SVME == 0 && st.nst.l2.is_some() {
            // L2 clears EFER.SVME (L1 does not intercept the write): the APM
            // leaves it undefined; as KVM (svm_set_efer), the vCPU leaves
            // L2 without a #VMEXIT (vmcb01 holds L1's state) and L1 takes a
            // triple fault: the next entry ends KVM_RUN in
            // KVM_EXIT_SHUTDOWN (KVM's svm_nested_clear_efer_svme test).
            st.nst.l2 = None;
            st.nst.run_pending = false;
            st.cpu.applied_policy = None;
            st.request_tlb_flush(true, true);
            st.uexit.triple_fault = true;
            return Ok(Next::Guest);
        }
        let kvmclock = self.kvmclock_msr(st, index, write.then_some(value), false);

        let mut data = value;
        let ok = if write { kvmclock.map_or_else(|| st.write_msr(index, value), |r| r.is_some()) } else {
            match kvmclock.or_else(|| Some(st.read_msr(index))).flatten() {
                Some(v) => {
                    st.vmcb().save.rax = v & 0xffff_ffff;
                    st.cpu.gprs[Gpr::Rdx] = v >> 32;
                    data = v;
                    true
                }
                None => false,
            }
        };
        if ok {
            hw::trace::msr(|| (u32::from(write), index, data, false));
        }
        if ok && write && index == nsvm_core::msr::TSC {
            let (rip, off) = (st.vmcb().save.rip, st.cpu.vmcb.get().control.tsc_offset);
            self.stats.log_now(nsvm_core::evlog::Kind::TscWrite, value, off, rip);
        }
        if !ok {
            // KVM's UNKNOWN (an MSR it does not handle) or INVAL (one it
            // handles refused this access): an MSR userspace could read is
            // one nsvm handles.
            let known = self.kvmclock_msr(st, index, None, true).is_some() || st.read_msr_as(index, true).is_some();
            let f = if known { Failure::Invalid } else { Failure::Unknown };
            return self.msr_refused(st, write, index, value, f);
        }
        self.skip(st, if write { Known::Wrmsr } else { Known::Rdmsr })
    }

    /// A refused RDMSR/WRMSR: `KVM_EXIT_X86_RDMSR/WRMSR` when userspace
    /// asked for `f`'s reason (completed at the next `KVM_RUN`,
    /// [`Vcpu::complete_msr`]), else #GP.
    fn msr_refused(&self, st: &mut VcpuState, write: bool, index: u32, value: u64, f: Failure) -> Result<Next> {
        let mask = self.vm.user_space_msr.load(Ordering::Relaxed);
        if let Some(reason) = msr_filter::exit_reason(mask, f) {
            let next_rip = match self.next_rip_of(st, if write { Known::Wrmsr } else { Known::Rdmsr }) {
                Ok(r) => r,
                Err(n) => return Ok(n),
            };
            st.uexit.pending = Some(Pending::Msr { write, next_rip });
            return Ok(self.user_exit(UserExit::X86Msr { write, reason, index, data: if write { value } else { 0 } }));
        }
        // As KVM's kvm_msr tracepoint: the access that raises #GP (an exit
        // to userspace is not traced), with 0 as a read's data.
        hw::trace::msr(|| (u32::from(write), index, if write { value } else { 0 }, true));
        st.inject(Event::new(EventType::Exception, 13, Some(0)));
        Ok(Next::Guest)
    }

    /// Completes an MSR exit at the next `KVM_RUN` (KVM's
    /// `complete_fast_rdmsr` / `complete_fast_msr_access`): `msr.error`
    /// non-zero is #GP and the instruction stays; otherwise a read's
    /// `msr.data` goes to EDX:EAX and RIP moves past the instruction
    /// (returned).
    pub(super) fn complete_msr(&self, st: &mut VcpuState, write: bool, next_rip: u64) -> Option<u64> {
        if self.run_u8(run::MSR_ERROR) != 0 {
            st.inject(Event::new(EventType::Exception, 13, Some(0)));
            return None;
        }
        if !write {
            let d = self.run.read_u64(run::MSR_DATA);
            st.vmcb().save.rax = d & 0xffff_ffff;
            st.cpu.gprs[Gpr::Rdx] = d >> 32;
        }
        Some(next_rip)
    }

    /// RDMSR/WRMSR or `KVM_GET/SET_MSRS` of the stored MSRs
    /// (`msr_misc::MiscMsrs`): `None` for another MSR, `Some(None)`
    /// refused, for a write `Some(Some(0))`, for a read the value.
    pub(super) fn misc_msr(&self, st: &mut VcpuState, index: u32, write: Option<u64>, host: bool) -> Option<Option<u64>> {
        if !MiscMsrs::handles(index) {
            return None;
        }
        let Some(v) = write else {
            return Some(st.cpu.misc.read(index));
        };
        let c = WriteCtx {
            host,
            no_mwait_quirk: self.quirk_on(quirks::MISC_ENABLE_NO_MWAIT),
            guest_sse3: st.cpuid_lookup(1, 0)[2] & 1 != 0,
            de_cfg_supported: if index == msr_misc::DE_CFG { crate::dev::host_features().de_cfg } else { 0 },
        };
        Some(match st.cpu.misc.write(index, v, &c) {
            Ok(_) => Some(0),
            Err(MiscError::Invalid | MiscError::Unknown) => None,
        })
    }

    /// PAT while L2 runs (`None` otherwise, and where the ordinary path,
    /// the running VMCB's G_PAT, is right). Without nested paging L1 and L2
    /// share one PAT (VMRUN does not switch it, APM 15.25.8): reads are
    /// vmcb01's, writes go to vmcb01 and vmcb02 (L2 runs on it). With nested
    /// paging and `KVM_X86_QUIRK_NESTED_SVM_SHARED_PAT` disabled, the
    /// host's accesses reach L1's PAT (vmcb01), the guest's L2's (vmcb02),
    /// as KVM's `svm_pat_accesses_gpat`.
    pub(super) fn pat_msr(&self, st: &mut VcpuState, index: u32, write: Option<u64>, host: bool) -> Option<Option<u64>> {
        if index != nsvm_core::msr::PAT || st.nst.l2.is_none() {
            return None;
        }
        let np12 = st.nst.vmcb12.get().control.nested_ctl & nsvm_core::vmcb::nested_ctl::NP_ENABLE != 0;
        let separate = nsvm_core::nested_state::l2_has_separate_pat(np12, self.quirk_on(quirks::NESTED_SVM_SHARED_PAT));
        if np12 && !(separate && host) {
            return None;
        }
        let Some(v) = write else {
            return Some(Some(st.cpu.vmcb.get().save.g_pat));
        };
        if !nsvm_core::msr::pat_valid(v) {
            return Some(None);
        }
        st.cpu.vmcb.get().save.g_pat = v;
        st.cpu.entry_untrusted[0] = true;
        if !np12 {
            st.nst.vmcb02.get().save.g_pat = v;
            st.mark_untrusted();
        }
        Some(Some(0))
    }

    /// CPUID.1:ECX.MWAIT as the guest sees it: with
    /// `KVM_X86_QUIRK_MISC_ENABLE_NO_MWAIT` disabled it follows
    /// IA32_MISC_ENABLE.MWAIT (KVM's runtime CPUID update).
    pub(super) fn cpuid_dynamic(&self, st: &VcpuState, leaf: u32, mut r: [u32; 4]) -> [u32; 4] {
        if leaf == 1 && !self.quirk_on(quirks::MISC_ENABLE_NO_MWAIT) {
            let on = st.cpu.misc.misc_enable & msr_misc::misc_enable::MWAIT != 0;
            r[2] = (r[2] & !(1 << 3)) | (u32::from(on) << 3);
        }
        r
    }

    /// MONITOR/MWAIT intercepted (KVM's `kvm_emulate_monitor_mwait`): NOPs,
    /// or #UD when the quirks are disabled and MWAIT is not enabled.
    pub(super) fn monitor_mwait(&self, st: &mut VcpuState, which: Known) -> Result<Next> {
        let cpuid_mwait = self.cpuid_dynamic(st, 1, st.cpuid_lookup(1, 0))[2] & (1 << 3) != 0;
        let nop = msr_misc::monitor_mwait_as_nop(
            self.quirk_on(quirks::MWAIT_NEVER_UD_FAULTS),
            self.quirk_on(quirks::MISC_ENABLE_NO_MWAIT),
            cpuid_mwait,
            st.cpu.misc.misc_enable,
        );
        if !nop {
            st.inject(Event::new(EventType::Exception, 6, None));
            return Ok(Next::Guest);
        }
        self.skip(st, which)
    }
}
