// SPDX-License-Identifier: GPL-2.0
//! Nested SVM for L1 (APM vol. 2 15.5-15.6, 15.25): VMRUN emulation with
//! vmcb12 checked and merged into vmcb02, #VMEXIT reflection, VMLOAD/VMSAVE,
//! STGI/CLGI and `KVM_GET/SET_NESTED_STATE`; the shadow NPT02 faults are
//! in `nested_npt.rs`.

use kernel::prelude::*;

use nsvm_core::x86::Gpr;
use kernel::uaccess::{UserPtr, UserSlice};

use core::sync::atomic::Ordering;

use nsvm_core::cpuid::SvmFeatures;
use nsvm_core::event::{Event, EventType};
use nsvm_core::exit::{self, SvmInsn};
use nsvm_core::insn::{self, Known};
use nsvm_core::l1_assist::{self, vnmi, L2Vmload};
use nsvm_core::user_exit::{run, UserExit};
use nsvm_core::msr::efer;
use nsvm_core::nested::{npf, Npt02Key};
use nsvm_core::stats::{self, vcpu as st_idx};
use nsvm_core::trace::Event as TraceEvent;
use nsvm_core::vmcb::{int_ctl, nested_ctl, Vmcb, VMSAVE_STATE};

use super::guest_mem::GuestMem;
use super::nested_npt::Npf02;
use super::{Next, Vcpu, VcpuState};
use crate::hw::pin::PinnedPage;
use crate::hw::mem::VmcbPage;
use crate::hw::trace::{self, Npt02Flush};
use crate::vm::VmMem;

impl Vcpu {
    /// `KVM_GET_NESTED_STATE` (nsvm_core::nested_state has the format): in
    /// guest mode the header, vmcb12's cached controls and L1's saved state;
    /// otherwise the header alone. A buffer smaller than the state gets its
    /// `size` set to what is needed and E2BIG, as in KVM.
    pub(super) fn get_nested_state(&self, arg: usize) -> Result<isize> {
        use nsvm_core::nested_state::{get_header, HEADER_SIZE, VMCB_SIZE};
        let user = |off: usize, len: usize| UserSlice::new(UserPtr::from_addr(arg + off), len);
        let mut b = [0u8; 4];
        user(4, 4).reader().read_slice(&mut b)?;
        let room = u32::from_ne_bytes(b) as usize;
        let mut st = self.state.lock();
        let mut h = get_header(st.nst.l2.map(|(pa, _)| pa), st.nst.run_pending, st.nst.gif);
        if st.nst.l2.is_some() && self.l2_has_separate_pat(&mut st) {
            h.gpat = st.nst.vmcb02.get().save.g_pat;
        }
        if room < h.size as usize {
            user(4, 4).writer().write_slice(&h.size.to_ne_bytes())?;
            return Err(E2BIG);
        }
        user(0, HEADER_SIZE).writer().write_slice(&h.to_bytes())?;
        let Some((_, next)) = st.nst.l2 else { return Ok(0) };
        // Built in vmcb02's scratch neighbour: a page, not the kernel stack.
        let mut page = VmcbPage::new()?;
        {
            let out = page.get();
            out.control = st.nst.vmcb12.get().control;
            // The interrupt-control bits L2 changes as it runs (V_TPR,
            // V_IRQ, V_GIF with vGIF on) as they are now in vmcb02, as the
            // #VMEXIT write-back would give them (KVM's
            // nested_sync_control_from_vmcb02; KVM's state_test).
            // V_IRQ not while L0's interrupt window holds vmcb02's.
            let c = &mut out.control;
            let c02 = &st.nst.vmcb02.get().control;
            let l0_window = c02.intercepts.test(exit::VINTR) && !c.intercepts.test(exit::VINTR);
            c.int_ctl = nsvm_core::nested::sync_int_ctl(c.int_ctl, c02.int_ctl, l0_window);
            // With NRIPS offered (emulated), next_rip of L2's last exit,
            // as KVM's cache of vmcb12 has it after every exit (KVM's
            // state_test: the RIP past a GUEST_SYNC's OUT that KVM_RUN
            // with immediate_exit completed).
            if let Some(exit_rip) = st.nst.exit_rip.filter(|_| st.nst.l1_features.contains(SvmFeatures::NRIPS)) {
                let (code, info1, info2, rip_now) = {
                    let v = st.nst.vmcb02.get();
                    (v.control.exit_code, v.control.exit_info_1, v.control.exit_info_2, v.save.rip)
                };
                let inner = self.vm.mem();
                c.next_rip = nsvm_core::insn::last_exit_next_rip(code, info1, info2, exit_rip, rip_now, |b| st.fetch_insn(&inner, b));
            }
            out.save = st.cpu.vmcb.get().save;
            // L1's own view: RIP after its VMRUN, EFER as it set it.
            out.save.rip = next;
            out.save.efer = st.l1_efer();
        }
        user(HEADER_SIZE, VMCB_SIZE).writer().write_slice(&page.bytes()[..])?;
        Ok(0)
    }

    /// `KVM_SET_NESTED_STATE`: KVM's checks (nsvm_core::nested_state), then
    /// in guest mode the vCPU's current state becomes L2's (unless it is in
    /// guest mode already), L1's saved state goes to vmcb01, the controls to
    /// vmcb12's cache, and vmcb02 is rebuilt as VMRUN would. Outside guest
    /// mode, a running L2 is dropped and GIF set as given.
    pub(super) fn set_nested_state(&self, arg: usize) -> Result<isize> {
        use nsvm_core::nested_state::{check_data, check_header, flags, Header, HEADER_SIZE, VMCB_SIZE};
        let user = |off: usize, len: usize| UserSlice::new(UserPtr::from_addr(arg + off), len);
        let mut hb = [0u8; HEADER_SIZE];
        user(0, HEADER_SIZE).reader().read_slice(&mut hb)?;
        let h = Header::from_bytes(&hb);
        let phys = crate::svm::phys_bits();
        let mut guard = self.state.lock();
        let st = &mut *guard;
        if !st.nst.svm_exposed {
            return Err(EINVAL);
        }
        let svme = st.efer() & efer::SVME != 0;
        let guest_mode = check_header(&h, svme, phys).map_err(|_| EINVAL)?;
        let gif = h.flags & flags::GIF_SET != 0;
        if !guest_mode {
            if st.nst.l2.take().is_some() {
                // Leave L2 without a #VMEXIT (KVM's svm_leave_nested).
                st.nst.run_pending = false;
            }
            st.nst.gif = gif;
            return Ok(0);
        }
        let mut page = VmcbPage::new()?;
        user(HEADER_SIZE, VMCB_SIZE).reader().read_slice(&mut page.bytes()[..])?;
        let np_offered = st.nst.l1_features.contains(SvmFeatures::NP);
        {
            let d = page.get();
            d.control.nested_ctl &= if np_offered { nested_ctl::NP_ENABLE } else { 0 };
            if !st.nst.l1_features.contains(SvmFeatures::VNMI) {
                d.control.int_ctl &= !vnmi::BITS;
            }
            check_data(&d.control, &d.save, &st.features()).map_err(|_| EINVAL)?;
            if d.save.efer & efer::LMA == 0 && d.control.nested_ctl & nested_ctl::NP_ENABLE != 0 {
                return Err(EINVAL); // NPT12 walks are long-mode only (docs/nested.md)
            }
        }
        // L2's own PAT (KVM_X86_QUIRK_NESTED_SVM_SHARED_PAT disabled, nested
        // paging): hdr.svm.gpat, a valid PAT (KVM's check).
        let np12 = page.get().control.nested_ctl & nested_ctl::NP_ENABLE != 0;
        let shared = self.vm.disabled_quirks.load(Ordering::Relaxed) & nsvm_core::uapi::quirks::NESTED_SVM_SHARED_PAT == 0;
        let l2_pat = nsvm_core::nested_state::l2_has_separate_pat(np12, shared).then_some(h.gpat);
        if l2_pat.is_some_and(|p| !nsvm_core::msr::pat_valid(p)) {
            return Err(EINVAL);
        }
        // The current state is L2's (when not already in guest mode).
        if st.nst.l2.is_none() {
            let (v01, v02) = (st.cpu.vmcb.get(), st.nst.vmcb02.get());
            v02.save = v01.save;
        }
        let next = {
            let d = page.get();
            let v01 = st.cpu.vmcb.get();
            v01.save = d.save;
            v01.save.efer = d.save.efer | efer::SVME;
            let c12 = st.nst.vmcb12.get();
            c12.control = d.control;
            c12.save = nsvm_core::vmcb::SaveArea::ZERO;
            d.save.rip
        };
        st.cpu.guest_efer = page.get().save.efer;
        // vmcb01's policy intercepts are rebuilt before the next entry.
        st.cpu.applied_policy = None;
        st.apply_policy(self.vm.policy());
        st.nst.l2 = Some((h.vmcb_pa, next));
        st.nst.exit_rip = None;
        // State from outside the processor at both levels.
        st.request_tlb_flush(true, true);
        // vmcb01 holds L1's state from userspace too.
        st.cpu.entry_untrusted = [true; 2];
        if let Some(Next::User) = self.build_vmcb02(st, false)? {
            st.nst.l2 = None;
            return Err(EINVAL);
        }
        if let Some(p) = l2_pat {
            st.nst.vmcb02.get().save.g_pat = p;
        }
        st.nst.run_pending = h.flags & flags::RUN_PENDING != 0;
        if !st.nst.run_pending {
            // vmcb12's event was delivered when L2 first ran.
            let c = &mut st.nst.vmcb02.get().control;
            c.event_inj = 0;
            c.event_inj_err = 0;
        }
        st.nst.gif = gif;
        Ok(0)
    }

    /// L2 has a PAT of its own (`nested_state::l2_has_separate_pat` with
    /// vmcb12's nested paging and the VM's quirk).
    fn l2_has_separate_pat(&self, st: &mut VcpuState) -> bool {
        let np12 = st.nst.vmcb12.get().control.nested_ctl & nested_ctl::NP_ENABLE != 0;
        let shared = self.vm.disabled_quirks.load(Ordering::Relaxed) & nsvm_core::uapi::quirks::NESTED_SVM_SHARED_PAT == 0;
        nsvm_core::nested_state::l2_has_separate_pat(np12, shared)
    }

    /// An exit of L2: when L1 asked for it (`reflect::decide` on vmcb12's
    /// intercepts and L1's permission maps), performs the #VMEXIT L1 expects
    /// (APM 15.6): L2's state and the exit information go to vmcb12 in L1's
    /// memory, L1 resumes after its VMRUN with GIF clear. Returns whether it
    /// did (or what else ended the exit); `None`: L0 handles it for L2.
    pub(super) fn l2_exit_for_l1(&self, st: &mut VcpuState) -> Result<Option<Next>> {
        use nsvm_core::reflect::{decide, Decision};
        let (code, info1) = {
            let v = st.nst.vmcb02.get();
            (v.control.exit_code, v.control.exit_info_1)
        };
        let e = {
            let v = st.nst.vmcb02.get();
            st.nst.exit_rip = Some(v.save.rip);
            let c = &v.control;
            TraceEvent::VmExit { rip: v.save.rip, reason: code, info1, info2: c.exit_info_2, intr_info: c.exit_int_info, error_code: c.exit_int_info_err }
        };
        st.log(self.id, e);
        // The processor refused vmcb02 although vmcb12 passed nsvm's checks:
        // L1's VMRUN failed. Whatever the processor left in vmcb02's state
        // (`VcpuState::enter` has put back what it held before VMRUN), none
        // of it goes to vmcb12.
        if Vmcb::exit_is_invalid(code) {
            let Some((pa12, next)) = st.nst.l2.take() else { return Ok(None) };
            st.nst.run_pending = false;
            self.stats.bump(stats::INVALID_PROCESSOR);
            self.stats.bump(st_idx::EXITS);
            self.stats.bump(stats::exit_counter(code));
            note_vmcb02_refused(self.id);
            trace::nested_vmenter_failed("vmcb02 refused by the processor", 0);
            // Logged as KVM does when it reflects the processor's refusal.
            st.log(self.id, TraceEvent::VmExitInject { reason: exit::INVALID, info1: 0, info2: 0, exit_int_info: 0, exit_int_info_err: 0 });
            return self.vmrun_failed(st, pa12, next).map(Some);
        }
        // What L2 changed of its virtual interrupt state goes to vmcb12's
        // cache after every exit, as KVM does (`sync_int_ctl12`).
        st.sync_int_ctl12();
        // vNMI: L2 past the IRET L0 intercepted (V_NMI_MASK clears), and
        // the single step over it ends; a #DB of that step alone is L0's.
        if st.vnmi_after_exit(code) {
            self.requeue_interrupted(st);
            self.stats.bump(st_idx::L2_EXITS_L0);
            self.stats.bump(st_idx::EXITS);
            self.stats.bump(stats::exit_counter(code));
            return Ok(Some(Next::Guest));
        }
        // L2 on shadow NPT02: the fault is either in NPT12 (L1's to see, as
        // #VMEXIT(NPF) with the error code of the NPT12 walk), or L0's to
        // resolve by composing the missing NPT02 leaf.
        let mut npf12 = false;
        if code == exit::NPF && st.l2_np() {
            match self.npf02(st)? {
                Npf02::Filled => {
                    // An event whose delivery the fault interrupted
                    // (L1's EVENTINJ pushing on L2's stack) is delivered
                    // again (APM 15.7.2).
                    self.requeue_interrupted(st);
                    self.stats.bump(st_idx::L2_EXITS_L0);
                    // Counted as every other exit L0 handles (`exits`).
                    self.stats.bump(st_idx::EXITS);
                    self.stats.bump(stats::exit_counter(code));
                    return Ok(Some(Next::Guest));
                }
                Npf02::Fault(info1) => {
                    st.nst.vmcb02.get().control.exit_info_1 = info1;
                    self.stats.bump(st_idx::NPT12_FAULTS);
                    npf12 = true;
                }
                Npf02::Unbacked(l1_gpa) => {
                    // L2 reaches L1's MMIO through NPT12: userspace sees the
                    // L1 physical address (as with KVM), the instruction is
                    // fetched and decoded through L2's paging and NPT12.
                    self.stats.bump(st_idx::L2_EXITS_L0);
                    self.stats.bump(st_idx::EXITS);
                    self.stats.bump(stats::exit_counter(code));
                    let inner = self.vm.mem();
                    return self.mmio(st, &inner, l1_gpa).map(Some);
                }
            }
        }
        let inner = self.vm.mem();
        let mem = GuestMem::l1(&inner);
        let (iopm, msrpm, l1_intercepts) = {
            let c12 = &st.nst.vmcb12.get().control;
            (c12.iopm_base_pa & !0xfff, c12.msrpm_base_pa & !0xfff, c12.intercepts)
        };
        let bit = |base: u64, n: u32| {
            let mut b = [0u8; 1];
            mem.read_bytes(base + u64::from(n / 8), &mut b).then(|| b[0] & (1 << (n % 8)) != 0)
        };
        let msr_index = st.cpu.gprs[Gpr::Rcx] as u32;
        // QEMU's TCG reports a MOV from CR3/CR4/CR8 as READ_CR0
        // (docs/architecture.md): L1 sees the register the instruction
        // names, decoded by L0.
        let code_l1 = if code == exit::READ_CR0 {
            let mut b = [0u8; 15];
            let n = st.fetch(&inner, &mut b);
            let cs = st.code_size();
            l1_assist::corrected_cr_read(code, l1_assist::decode_crdr(&b[..n], cs))
        } else {
            code
        };
        let mut d = decide(code_l1, info1, &l1_intercepts, |n| bit(msrpm, n), |n| bit(iopm, n), msr_index);
        // VMLOAD/VMSAVE virtualization enabled where it cannot apply: the
        // instruction exits to L1 as if intercepted (APM 15.33.1).
        if d == Decision::L0 && matches!(code, exit::VMLOAD | exit::VMSAVE) && st.l2_vmload() == L2Vmload::ExitToL1 {
            d = Decision::L1;
        }
        // L2's shutdown goes to L1 only when L1 intercepts it (`decide`);
        // otherwise L1 itself shuts down (APM 15.12; KVM: KVM_EXIT_SHUTDOWN).
        if npf12 {
            d = Decision::L1;
        }
        if d == Decision::L0 {
            self.stats.bump(st_idx::L2_EXITS_L0);
            return Ok(None);
        }
        // The pause filter for L1 (APM 15.14.4), emulated when the
        // processor has none: the PAUSE is L1's only once the counter VMRUN
        // loaded goes below zero; until then L0 completes it for L2.
        if code == exit::PAUSE && st.nst.l1_features.contains(SvmFeatures::PAUSE_FILTER) && !crate::svm::host_has(SvmFeatures::PAUSE_FILTER) && !l1_assist::pause_filter_exits(&mut st.nst.pause_count) {
            drop(inner);
            self.stats.bump(st_idx::L2_EXITS_L0);
            self.stats.bump(stats::PAUSES_FILTERED);
            return self.skip(st, Known::Pause).map(Some);
        }
        if code_l1 != code {
            st.nst.vmcb02.get().control.exit_code = code_l1;
        }
        self.reflect_to_l1(st, &inner, code_l1)
    }

    /// The #VMEXIT L1 expects for the exit in vmcb02's exit fields (APM
    /// 15.6): what #VMEXIT writes goes to vmcb12 in L1's memory, L1 resumes
    /// after its VMRUN with GIF clear.
    pub(super) fn reflect_to_l1(&self, st: &mut VcpuState, inner: &VmMem<'_>, code: u64) -> Result<Option<Next>> {
        let mem = GuestMem::l1(inner);
        self.stats.bump(st_idx::L2_EXITS_REFLECTED);
        // NRIPS for L1 (emulated, APM 15.7.1): the next RIP of an intercepted
        // instruction, decoded by L0 (no NRIPS under TCG), 0 otherwise.
        // A single step over L2's IRET (vNMI) ends with L2.
        st.vnmi_after_exit(0);
        st.nst.vnmi_iret_rip = None;
        let nrip = st.l2_next_rip(inner);
        // Decode assists for L1 (APM 15.8), from L0's own decode when the
        // processor gave none.
        let da_offered = st.nst.l1_features.contains(SvmFeatures::DECODE_ASSISTS);
        let da = if da_offered && !crate::svm::host_has(SvmFeatures::DECODE_ASSISTS) { Some(st.l2_decode_assists(inner)) } else { None };
        let Some((pa12, next)) = st.nst.l2.take() else { return Ok(None) };
        // vmcb12 := L2's state and the exit information (field by field from
        // the pages: no 4 KiB copies on the kernel stack). A failed VMRUN
        // never comes here (`vmrun_failed`): this state is L2's.
        {
            let v02 = st.nst.vmcb02.get();
            let c12 = st.nst.vmcb12.get();
            let c = &mut c12.control;
            c.exit_code = v02.control.exit_code;
            c.exit_info_1 = v02.control.exit_info_1;
            c.exit_info_2 = v02.control.exit_info_2;
            c.exit_int_info = v02.control.exit_int_info;
            c.exit_int_info_err = v02.control.exit_int_info_err;
            c.int_state = v02.control.int_state;
            let l0_window = v02.control.intercepts.test(exit::VINTR) && !c.intercepts.test(exit::VINTR);
            c.int_ctl = nsvm_core::nested::sync_int_ctl(c.int_ctl, v02.control.int_ctl, l0_window);
            // vNMI: V_NMI and V_NMI_MASK as L0 kept them, the mask saved
            // as 0 when this exit interrupted an NMI's delivery.
            c.int_ctl = vnmi::at_exit(c.int_ctl, v02.control.exit_int_info);
            c.event_inj = 0;
            c.event_inj_err = 0;
            c.next_rip = nrip;
            match da {
                Some((info1, len, bytes)) => {
                    if let Some(i) = info1 {
                        c.exit_info_1 = i;
                    }
                    c.insn_len = len;
                    if len != 0 {
                        c.insn_bytes = bytes;
                    }
                }
                // The processor's own (or, without the feature, what L1
                // wrote there, written back unchanged).
                None if da_offered => {
                    c.insn_len = v02.control.insn_len;
                    c.insn_bytes = v02.control.insn_bytes;
                }
                None => {}
            }
        }
        // Only what #VMEXIT writes (APM 15.6): L1's edits to the rest of
        // vmcb12 while L2 ran stay.
        let c = &st.nst.vmcb12.get().control;
        let e = TraceEvent::VmExitInject { reason: c.exit_code, info1: c.exit_info_1, info2: c.exit_info_2, exit_int_info: c.exit_int_info, exit_int_info_err: c.exit_int_info_err };
        st.log(self.id, e);
        // Control fields from vmcb12's cache (just updated), state from
        // vmcb02; into the pinned page when it is still vmcb12's.
        // L2's own PAT (KVM_X86_QUIRK_NESTED_SVM_SHARED_PAT disabled, nested
        // paging) goes back to vmcb12's G_PAT, as KVM's nested_svm_vmexit.
        let l2_pat = self.l2_has_separate_pat(st).then(|| st.nst.vmcb02.get().save.g_pat.to_ne_bytes());
        const GPAT: usize = 0x400 + core::mem::offset_of!(nsvm_core::vmcb::SaveArea, g_pat);
        let gen = self.vm.memory_generation.load(Ordering::Acquire);
        let pin = st.nst.vmcb12_pin.as_ref().filter(|(g, n, _)| *g == pa12 && *n == gen).map(|(_, _, p)| p);
        let (b12, b02) = (st.nst.vmcb12.bytes(), st.nst.vmcb02.bytes());
        let src = |o: usize, l: usize| if o >= 0x400 { &b02[o..o + l] } else { &b12[o..o + l] };
        let ok = match pin.and_then(|p| p.writer()) {
            // Each range as a constant-size write (unrolled over the table).
            Some(w) => {
                use nsvm_core::vmcb::EXIT_WRITEBACK as WB;
                macro_rules! put {
                    ($($k:literal)*) => { true $(&& {
                        const R: (usize, usize) = WB[$k];
                        <&[u8; R.1]>::try_from(src(R.0, R.1)).is_ok_and(|d| w.put(R.0, d))
                    })* };
                }
                const _: () = assert!(WB.len() == 14);
                put!(0 1 2 3 4 5 6 7 8 9 10 11 12 13)
            }
            None => nsvm_core::vmcb::EXIT_WRITEBACK.iter().all(|&(o, l)| mem.write_bytes(pa12 + o as u64, src(o, l))),
        };
        let ok = ok
            && l2_pat.is_none_or(|d| match pin.and_then(|p| p.writer()) {
                Some(w) => w.put(GPAT, &d),
                None => mem.write_bytes(pa12 + GPAT as u64, &d),
            });
        if pin.is_some() {
            // Written through the pin, past NPT01: logged here (the copies
            // through the slots log themselves).
            inner.mark_dirty(pa12 & !0xfff, 4096);
        }
        // What VMLOAD/VMSAVE move is not switched by #VMEXIT: L1 goes on
        // with L2's values until it loads its own (APM 15.5.2).
        let (v1, v2) = (st.cpu.vmcb.get(), st.nst.vmcb02.get());
        v1.save.copy_vmload_state(&v2.save);
        v1.save.rip = next;
        v1.control.event_inj = 0;
        st.nst.gif = false;
        if !ok {
            // vmcb12 is no longer writable RAM (e.g. a restored nested
            // state naming a GPA outside the slots): L1 cannot be told of
            // the #VMEXIT; it takes a triple fault, as under KVM
            // (KVM_EXIT_SHUTDOWN at the next entry; KVM's
            // svm_nested_vmcb12_gpa test).
            st.uexit.triple_fault = true;
            return Ok(Some(Next::Guest));
        }
        self.stats.bump(st_idx::EXITS);
        self.stats.bump(stats::exit_counter(code));
        Ok(Some(Next::Guest))
    }

    /// VMRUN, VMLOAD, VMSAVE, STGI, CLGI, INVLPGA executed by L1 with
    /// EFER.SVME set (APM 15.5, 15.5.2, 15.17, 15.16.4).
    pub(super) fn svm_insn(&self, st: &mut VcpuState, i: SvmInsn) -> Result<Next> {
        let code = i.exit_code();
        // The same instructions executed by an L2 that L1 lets run them (it
        // must intercept VMRUN, APM 15.5.1) act on L2's own state.
        let l2 = st.nst.l2.is_some();
        if st.vmcb().save.cpl != 0 {
            st.inject(Event::new(EventType::Exception, 13, Some(0)));
            return Ok(Next::Guest);
        }
        let rip = st.vmcb().save.rip;
        let len = {
            let inner = self.vm.mem();
            let mut b = [0u8; 15];
            let (n, long) = st.fetch_insn(&inner, &mut b);
            insn::length_of(&b[..n], Known::Svm(i), long)
        };
        let Some(len) = len else {
            return Ok(self.user_exit(UserExit::internal_error(run::INTERNAL_ERROR_EMULATION, &[rip, code])));
        };
        let next = rip.wrapping_add(len as u64);
        match i {
            SvmInsn::Stgi | SvmInsn::Clgi => {
                // L2's: with vGIF enabled by L1 they move V_GIF (APM 15.33.2);
                // otherwise L2's own GIF is not modelled (docs/nested.md).
                if !l2 {
                    st.nst.gif = i == SvmInsn::Stgi;
                } else {
                    let c = &mut st.nst.vmcb02.get().control;
                    if c.int_ctl & int_ctl::V_GIF_ENABLE != 0 {
                        c.int_ctl = if i == SvmInsn::Stgi { c.int_ctl | int_ctl::V_GIF } else { c.int_ctl & !int_ctl::V_GIF };
                    }
                }
                st.vmcb().save.rip = next;
                Ok(Next::Guest)
            }
            SvmInsn::Invlpga => {
                // The guest's mapping of one address in one ASID (ECX; APM
                // 15.16.3): ASID 0 is L1's own, which its vmcb01 ASID
                // holds; any other is one of L1's guests, which all run on
                // the vCPU's L2 ASID: that ASID is flushed at its next
                // entry (more than asked).
                let asid = st.all_gprs()[nsvm_core::x86::Gpr::Rcx] as u32;
                let (l1, l2) = nsvm_core::tlb::l1_invlpga(asid);
                st.request_tlb_flush(l1, l2);
                st.vmcb().save.rip = next;
                Ok(Next::Guest)
            }
            SvmInsn::Vmload | SvmInsn::Vmsave => self.vmload_vmsave(st, i == SvmInsn::Vmload, next),
            SvmInsn::Vmrun if !l2 => self.vmrun_l1(st, next),
            _ => {
                // Unreachable: VMRUN intercepted by L1 is a checked rule,
                // SKINIT is #UD (handle_exit).
                Ok(self.user_exit(UserExit::internal_error(run::INTERNAL_ERROR_EMULATION, &[rip, code])))
            }
        }
    }

    /// Checks RAX as a VMCB address for VMRUN/VMLOAD/VMSAVE (APM 15.5: #GP
    /// unless page aligned and within the physical address width).
    pub(super) fn vmcb_address(st: &mut VcpuState) -> Option<u64> {
        let pa = st.vmcb().save.rax;
        let phys = crate::svm::phys_bits();
        if pa & 0xfff != 0 || pa >> phys != 0 {
            st.inject(Event::new(EventType::Exception, 13, Some(0)));
            return None;
        }
        Some(pa)
    }

    /// VMLOAD/VMSAVE (APM 15.5.2): FS, GS, TR, LDTR with their hidden state,
    /// KernelGsBase, STAR, LSTAR, CSTAR, SFMASK, SYSENTER_CS/ESP/EIP between
    /// the VMCB at RAX (in the running guest's physical memory) and the
    /// running guest's state (L1's, or L2's when L1 does not intercept).
    pub(super) fn vmload_vmsave(&self, st: &mut VcpuState, load: bool, next: u64) -> Result<Next> {
        let Some(pa) = Self::vmcb_address(st) else { return Ok(Next::Guest) };
        // L1 runs: vmcb12's cache is free to serve as the scratch copy. L2
        // runs (rare): a page of its own, vmcb12's cache is in use.
        let mut own = if st.nst.l2.is_some() { Some(VmcbPage::new()?) } else { None };
        let inner = self.vm.mem();
        // L2's: on an L1 physical address, or virtualized (APM 15.33.1)
        // on an L2 physical address through NPT12, whose faults are L1's
        // #VMEXIT(NPF) (ExitToL1 never comes here: `l2_exit_for_l1`).
        let virtualized = st.nst.l2.is_some() && st.l2_vmload() == L2Vmload::L2Physical;
        if virtualized {
            let ncr3 = st.nst.vmcb12.get().control.nested_cr3;
            let nxe = st.cpu.vmcb.get().save.efer & efer::NXE != 0;
            let walk = nsvm_core::nested::walk_npt12(&GuestMem::l1(&inner), ncr3, pa, !load, false, nxe, crate::svm::phys_bits(), npf::FINAL);
            if let Err(e) = walk {
                {
                    let c = &mut st.nst.vmcb02.get().control;
                    c.exit_code = exit::NPF;
                    c.exit_info_1 = e;
                    c.exit_info_2 = pa;
                    c.exit_int_info = 0;
                    c.exit_int_info_err = 0;
                }
                self.stats.bump(st_idx::NPT12_FAULTS);
                return Ok(self.reflect_to_l1(st, &inner, exit::NPF)?.unwrap_or(Next::Guest));
            }
        }
        let mem = if virtualized || st.nst.l2.is_none() { st.guest_mem(&inner) } else { GuestMem::l1(&inner) };
        let mut st_untrusted = false;
        let ok = {
            let (scratch, cur) = match own.as_mut() {
                Some(p) => (p, &mut st.nst.vmcb02),
                None => (&mut st.nst.vmcb12, &mut st.cpu.vmcb),
            };
            // Exactly the bytes VMLOAD reads and VMSAVE writes (APM
            // 15.5.2): the rest of the page is the guest's, which it may be
            // writing on another vCPU meanwhile.
            if load {
                // State from guest memory: saved before the next entry.
                st_untrusted = true;
                let b = scratch.bytes();
                let read = VMSAVE_STATE.iter().all(|&(o, l)| mem.read_bytes(pa + o as u64, &mut b[o..o + l]));
                if read {
                    cur.get().save.copy_vmload_state(&scratch.get().save);
                }
                read
            } else {
                let b = cur.bytes();
                VMSAVE_STATE.iter().all(|&(o, l)| mem.write_bytes(pa + o as u64, &b[o..o + l]))
            }
        };
        drop(inner);
        if st_untrusted {
            st.mark_untrusted();
        }
        if !ok {
            // A well-formed address no RAM backs: an emulation failure, as
            // KVM (svm_nested_vmcb12_gpa).
            let rip = st.vmcb().save.rip;
            return Ok(self.user_exit(UserExit::internal_error(run::INTERNAL_ERROR_EMULATION, &[rip, pa])));
        }
        st.vmcb().save.rip = next;
        Ok(Next::Guest)
    }

    /// VMRUN by L1 (APM 15.5): vmcb12 is copied once into L0's cache and
    /// checked there (APM 15.5.1; a failure is #VMEXIT(VMEXIT_INVALID) in
    /// vmcb12, L1 continuing after VMRUN); otherwise vmcb02 is built from
    /// L0's policy and the copy, and L2 runs.
    pub(super) fn vmrun_l1(&self, st: &mut VcpuState, next: u64) -> Result<Next> {
        let Some(pa) = Self::vmcb_address(st) else { return Ok(Next::Guest) };
        // No host save area set up by L1: #GP (as KVM does).
        if st.nst.hsave_pa == 0 {
            st.inject(Event::new(EventType::Exception, 13, Some(0)));
            return Ok(Next::Guest);
        }
        {
            let inner = self.vm.mem();
            // What VMRUN uses (vmcb::VMRUN_READ): the control area's
            // defined fields and the state VMRUN loads; not the VMLOAD state
            // nor the reserved ranges (the cache's keep other values).
            use nsvm_core::vmcb::VMRUN_READ as RD;
            let read = if self.pin_vmcb12(st, &inner, pa) {
                st.nst.vmcb12_pin.as_ref().is_some_and(|(_, _, p)| {
                    let (r, b) = (p.reader(), st.nst.vmcb12.bytes());
                    // Each range as a constant-size read (unrolled).
                    macro_rules! get {
                        ($($k:literal)*) => { true $(&& {
                            const R: (usize, usize) = RD[$k];
                            <&mut [u8; R.1]>::try_from(&mut b[R.0..R.0 + R.1]).is_ok_and(|d| r.get(R.0, d))
                        })* };
                    }
                    const _: () = assert!(RD.len() == 15);
                    get!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14)
                })
            } else {
                let (mem, b) = (GuestMem::l1(&inner), st.nst.vmcb12.bytes());
                RD.iter().all(|&(o, l)| mem.read_bytes(pa + o as u64, &mut b[o..o + l]))
            };
            if !read {
                // A well-formed address no slot backs: KVM cannot map it
                // either and ends KVM_RUN with an emulation failure
                // (svm_nested_vmcb12_gpa).
                drop(inner);
                let rip = st.vmcb().save.rip;
                return Ok(self.user_exit(UserExit::internal_error(run::INTERNAL_ERROR_EMULATION, &[rip, pa])));
            }
        }
        // Fields of features not offered to L1 are ignored: of nested_ctl
        // only NP_ENABLE, and only when nested paging is offered.
        let np_offered = st.nst.l1_features.contains(SvmFeatures::NP);
        st.nst.vmcb12.get().control.nested_ctl &= if np_offered { nested_ctl::NP_ENABLE } else { 0 };
        if !st.nst.l1_features.contains(SvmFeatures::VNMI) {
            st.nst.vmcb12.get().control.int_ctl &= !vnmi::BITS;
        }
        // The processor-dependent rules with what both the host and L1's
        // CPUID offer: a state the processor would refuse never reaches it.
        // (The module parameter vmcb12_checks=0 skips them, for tests of the
        // processor's own refusals: `l2_exit_for_l1` handles those.)
        let f = st.features();
        let checked = {
            let c12 = st.nst.vmcb12.get();
            match *crate::module_parameters::vmcb12_checks.value() {
                0 => Ok(()),
                _ => nsvm_core::checks::check_vmrun(&c12.save, &c12.control, &f),
            }
        };
        if let Err(c) = checked {
            self.stats.bump(stats::INVALID_BASE + c.index());
            trace::nested_vmenter_failed(c.name(), c.index() as u32 + 1);
            // (No nested_vmexit_inject: as KVM, whose consistency checks
            // write VMEXIT_INVALID into vmcb12 without a #VMEXIT.)
            return self.vmrun_failed(st, pa, next);
        }
        if let Some(stop) = self.build_vmcb02(st, true)? {
            return Ok(stop);
        }
        st.nst.l2 = Some((pa, next));
        st.nst.exit_rip = None;
        st.nst.run_pending = true;
        st.nst.gif = true;
        {
            // An NMI injected by EVENTINJ with vNMI on masks virtual NMIs
            // (APM 15.21.10); L2's IRET then unmasks them (intercepted).
            let c12 = &mut st.nst.vmcb12.get().control;
            c12.int_ctl = vnmi::at_vmrun(c12.int_ctl, c12.event_inj);
            if vnmi::enabled(c12.int_ctl) && c12.int_ctl & int_ctl::V_NMI_BLOCKING != 0 {
                st.nst.vmcb02.get().control.intercepts.set(exit::IRET);
            }
        }
        let e = {
            let (v12, v02) = (st.nst.vmcb12.get(), st.nst.vmcb02.get());
            let npt = v12.control.nested_ctl & nested_ctl::NP_ENABLE != 0;
            TraceEvent::VmEnter {
                // L1's RIP past its VMRUN, as KVM reports it.
                rip: next,
                vmcb: pa,
                nested_rip: v02.save.rip,
                int_ctl: v12.control.int_ctl,
                event_inj: v12.control.event_inj,
                npt,
                cr3: if npt { v12.control.nested_cr3 } else { v12.save.cr3 },
            }
        };
        st.log(self.id, e);
        // Every L2 of this vCPU runs on its L2 ASID whatever ASID L1 gave it
        // (APM 15.16: L1 expects other ASIDs' translations to stay apart):
        // it is flushed when vmcb12's ASID is not the one it last held, and
        // for what L1's TLB_CONTROL asks (1 flushes L1's own ASID too).
        // An NPT02 dropped for a new nCR3 or NPT01 change flushed it already
        // (`drop_npt02`).
        {
            let c12 = &st.nst.vmcb12.get().control;
            let (asid12, ctl) = (c12.asid, c12.tlb_ctl);
            let (l1, mut l2) = nsvm_core::tlb::l1_tlb_control(ctl, st.nst.l1_features.contains(SvmFeatures::FLUSH_BY_ASID));
            l2 |= st.nst.l2_asid12 != Some(asid12);
            st.nst.l2_asid12 = Some(asid12);
            st.request_tlb_flush(l1, l2);
        }
        self.stats.bump(st_idx::NESTED_VMRUNS);
        Ok(Next::Guest)
    }

    /// The end of a VMRUN of L1 that failed, refused by nsvm's checks or by
    /// the processor: #VMEXIT(VMEXIT_INVALID) into vmcb12 at `pa`. No guest
    /// ran, so there is no guest state to save (APM 15.5.1: the checks come
    /// before anything is loaded): only `vmcb::INVALID_WRITEBACK` is written
    /// (EXITCODE -1, EXITINFO1 and EXITINFO2 0, EVENTINJ cleared, as KVM
    /// writes a refused vmcb12) and vmcb12's save area keeps exactly what L1
    /// wrote. L1 continues after its VMRUN (`next`) with its own state,
    /// which VMRUN did not change, and GIF clear.
    fn vmrun_failed(&self, st: &mut VcpuState, pa: u64, next: u64) -> Result<Next> {
        use nsvm_core::vmcb::INVALID_WRITEBACK as IW;
        let mut exit_fields = [0u8; IW[0].1];
        exit_fields[..8].copy_from_slice(&exit::INVALID.to_ne_bytes());
        let written = {
            let inner = self.vm.mem();
            let mem = GuestMem::l1(&inner);
            mem.write_bytes(pa + IW[0].0 as u64, &exit_fields) && mem.write_bytes(pa + IW[1].0 as u64, &[0u8; IW[1].1])
        };
        let v1 = st.cpu.vmcb.get();
        v1.save.rip = next;
        v1.control.event_inj = 0;
        st.nst.gif = false;
        if !written {
            // vmcb12 is no longer writable RAM: L1 cannot be told; stop.
            return Ok(self.user_exit(UserExit::internal_error(run::INTERNAL_ERROR_EMULATION, &[next, pa])));
        }
        Ok(Next::Guest)
    }

    /// Makes `st.nst.vmcb12_pin` hold vmcb12's page at `pa` (kept from the last
    /// VMRUN when the address and the VM's slots are unchanged); false when
    /// `pa` is not writable RAM (callers then copy through the slots).
    pub(super) fn pin_vmcb12(&self, st: &mut VcpuState, inner: &VmMem<'_>, pa: u64) -> bool {
        let gen = self.vm.memory_generation.load(Ordering::Acquire);
        if st.nst.vmcb12_pin.as_ref().is_some_and(|(g, n, _)| *g == pa && *n == gen) {
            return true;
        }
        st.nst.vmcb12_pin = None;
        let Some(slot) = inner.slot(pa) else { return false };
        if slot.readonly() {
            return false;
        }
        match PinnedPage::pin(slot.uaddr_of(pa), true) {
            Ok(p) => {
                st.nst.vmcb12_pin = Some((pa, gen, p));
                true
            }
            Err(_) => false,
        }
    }

    /// vmcb02 from vmcb01, the checked vmcb12 copy and L0's policy: merged
    /// controls (`nested::merge_control`), nested paging on shadow NPT02 or
    /// L2 on NPT01, and with `from_vmrun` L2's state from vmcb12 (VMRUN);
    /// without it vmcb02's state is kept (KVM_SET_NESTED_STATE: it is the
    /// vCPU's current state). `Some` when the vCPU must stop instead.
    pub(super) fn build_vmcb02(&self, st: &mut VcpuState, from_vmrun: bool) -> Result<Option<Next>> {
        st.cpu.entry_untrusted[1] = true;
        let root = st.npt01_root;
        let np = st.nst.vmcb12.get().control.nested_ctl & nested_ctl::NP_ENABLE != 0;
        let mut ncr3 = root;
        if np {
            // NPT12 is walked in the format of L1's paging mode at VMRUN
            // (APM 15.25.5: the host's CR4.PAE/EFER.LMA); nsvm walks the
            // long-mode format only.
            if st.cpu.vmcb.get().save.efer & efer::LMA == 0 {
                let rip = st.cpu.vmcb.get().save.rip;
                return Ok(Some(self.user_exit(UserExit::internal_error(run::INTERNAL_ERROR_EMULATION, &[rip, exit::VMRUN, nested_ctl::NP_ENABLE]))));
            }
            let c12 = &st.nst.vmcb12.get().control;
            let key = Npt02Key { ncr3: c12.nested_cr3, asid: c12.asid, npt01_generation: self.vm.memory_generation.load(Ordering::Acquire) };
            let tlb = c12.tlb_ctl;
            st.select_npt02(key.ncr3, key.asid)?;
            let fba = st.nst.l1_features.contains(SvmFeatures::FLUSH_BY_ASID);
            if let Some(why) = nsvm_core::nested::npt02_stale(st.nst.npt02.key, key, tlb, fba) {
                // Only the flush L1 asked for (same NPT12, ASID and NPT01):
                // the leaves NPT12 still gives stay (`resync_npt02`).
                let flush_only = why == nsvm_core::nested::Npt02Stale::TlbControl && nsvm_core::nested::npt02_stale(st.nst.npt02.key, key, 0, fba).is_none();
                if !(flush_only && self.resync_npt02(st, key.ncr3)) {
                    st.drop_npt02(Npt02Flush::from(why));
                    self.stats.bump(st_idx::NPT02_FLUSHES);
                }
            }
            st.nst.npt02.key = Some(key);
            ncr3 = st.nst.npt02.root_pa();
        }
        let policy = nsvm_core::nested::L0Policy { asid: 2, flush: true, ncr3, features: st.nst.l1_features };
        if from_vmrun {
            // L2's state: the save area's defined fields but the VMLOAD
            // state, which comes from vmcb01 below (neither the reserved
            // ranges).
            let (v12, v02) = (st.nst.vmcb12.get(), st.nst.vmcb02.get());
            v02.save.copy_vmrun_state(&v12.save);
        }
        {
            let (v01, v12, v02) = (st.cpu.vmcb.get(), st.nst.vmcb12.get(), st.nst.vmcb02.get());
            nsvm_core::nested::merge_control(&mut v02.control, &policy, &v01.control, &v12.control);
            // QEMU's TCG checks every MOV from CRn against the CR0 read
            // intercept (`l1_assist::needs_read_cr0`); a processor without
            // NRIPS is taken to be TCG, as for `exit_after_injection`.
            if !crate::svm::host_has(SvmFeatures::NRIPS) && l1_assist::needs_read_cr0(&v12.control.intercepts) {
                v02.control.intercepts.set(exit::READ_CR0);
            }
            // vNMI masked by L1: L2's IRET unmasks (intercepted by L0).
            let i12 = v12.control.int_ctl;
            if vnmi::enabled(i12) && i12 & int_ctl::V_NMI_BLOCKING != 0 {
                v02.control.intercepts.set(exit::IRET);
            }
            if from_vmrun {
                // VMRUN does not load what VMLOAD does: L2 starts with L1's
                // current FS, GS, TR, LDTR and syscall MSRs (APM 15.5.2).
                v02.save.copy_vmload_state(&v01.save);
                // Without nested paging L2 runs on NPT01 with L1's guest
                // PAT; with it, G_PAT is L2's (APM 15.25.8).
                if !np {
                    v02.save.g_pat = v01.save.g_pat;
                }
            }
            // The pause filter's internal counter (APM 15.14.4), loaded
            // from the count merged into vmcb02 (0 when not offered).
            st.nst.pause_count = i32::from(v02.control.pause_filter_count);
        }
        st.nst.vnmi_iret_rip = None;
        st.nst.vnmi_step = None;
        Ok(None)
    }
}

impl VcpuState {
    /// Records a nested event of vCPU `id` in the log and gives it to its
    /// tracepoint (`nsvm_nested_vmenter`, `nsvm_nested_vmexit`,
    /// `nsvm_nested_vmexit_inject`; each a static branch when off).
    #[inline(always)]
    pub(super) fn log(&mut self, id: u32, e: TraceEvent) {
        // Tracepoints first (out of line, behind their static branches), so
        // that nothing of `e` is kept across the ring's copy when they are
        // off: `make bench` showed that costing ~25 instructions per event.
        trace::nested(id, &e);
        nsvm_core::trace::record(&mut self.nst.nlog, &mut self.nst.nlog_count, e);
    }
}

/// Logs (once per load) a vmcb02 the processor refused although vmcb12
/// passed nsvm's checks (statistic `vmrun_invalid_processor`).
fn note_vmcb02_refused(vcpu: u32) {
    static SEEN: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
    if !SEEN.swap(true, Ordering::Relaxed) {
        pr_info!("vCPU {}: the processor refused a VMRUN of L2 that passed nsvm's checks: VMEXIT_INVALID for L1, vmcb12's state left as L1 wrote it\n", vcpu);
    }
}
