// SPDX-License-Identifier: GPL-2.0
//! `KVM_RUN`: completing the last exit to userspace, the loop around the
//! world switch, and the exits to userspace it ends with.

use kernel::prelude::*;

use nsvm_core::event::{VirqInjection, VirqOutcome};
use nsvm_core::hoststate::Sighting;
use nsvm_core::user_exit::{run, RunCommon, RunPage, UserExit};
use nsvm_core::mmio;
use nsvm_core::stats::vcpu as st_idx;
use nsvm_core::vmcb::{int_ctl, EntryState, Vmcb};
use nsvm_core::x86::{rflags, Gpr};

use super::{Pending, Vcpu, VcpuState};
use crate::hw;
use crate::hw::cpu::FpuLoad;
use crate::hw::mem::KPages;
use crate::vmrun::{self, GuestMode};

use core::sync::atomic::{AtomicU32, AtomicU64};

/// The vCPU's `kvm_run` page, as user exits are encoded into it.
struct RunPageWriter<'a>(&'a KPages);

impl RunPage for RunPageWriter<'_> {
    #[inline]
    fn put(&mut self, off: usize, bytes: &[u8]) {
        self.0.write(off, bytes);
    }
    #[inline]
    fn put_u8(&mut self, off: usize, v: u8) {
        self.0.write_int(off, v);
    }
    #[inline]
    fn put_u16(&mut self, off: usize, v: u16) {
        self.0.write_int(off, v);
    }
    #[inline]
    fn put_u32(&mut self, off: usize, v: u32) {
        self.0.write_int(off, v);
    }
    #[inline]
    fn put_u64(&mut self, off: usize, v: u64) {
        self.0.write_int(off, v);
    }
}

/// What an exit handler decided.
pub(crate) enum Next {
    /// Re-enter the guest.
    Guest,
    /// Return to userspace (exit_reason already written).
    User,
}

impl Vcpu {
    pub(super) fn run_u8(&self, off: usize) -> u8 {
        self.run.read_u8(off)
    }

    /// Ends `KVM_RUN` with `e`: its `exit_reason` and fields in `kvm_run`.
    pub(super) fn user_exit(&self, e: UserExit) -> Next {
        e.encode(&mut RunPageWriter(&self.run));
        Next::User
    }

    /// `KVM_RUN`: the run loop, then what stayed loaded on the CPU (the
    /// guest's FPU registers, the host's VMSAVE state) is put back before
    /// the vCPU lock is released and the thread returns to userspace.
    pub(super) fn run(&self) -> Result<isize> {
        let mut st = self.state.lock();
        // KVM_CAP_SYNC_REGS: the dirty sets in, before anything else (KVM's
        // order), the valid ones out on every return.
        let r = self.sync_regs_in(&mut st).and_then(|()| self.run_locked(&mut st));
        st.cpu.loaded.vcpu_put();
        self.sync_regs_out(&mut st);
        r
    }

    fn run_locked(&self, st: &mut VcpuState) -> Result<isize> {
        if st.apic.is_none() {
            // The TPR from userspace (no in-kernel LAPIC: KVM loads `cr8` on
            // every KVM_RUN, before anything else; bits 63:4 are reserved,
            // EINVAL): it is V_TPR, which the guest's MOV CR8 reads and writes
            // under V_INTR_MASKING (APM 15.21.4).
            let cr8 = self.run.read_u64(run::CR8);
            if cr8 > 0xf {
                return Err(EINVAL);
            }
            if st.vmcb().control.int_ctl & int_ctl::V_TPR_MASK != cr8 as u32 {
                st.mark_untrusted();
                let c = &mut st.vmcb().control;
                c.int_ctl = (c.int_ctl & !int_ctl::V_TPR_MASK) | cr8 as u32;
            }
        }
        self.tsc_catchup(st);
        // Complete port I/O: an IN's data from the PIO page goes to RAX, and
        // RIP moves past the instruction.
        let next_rip = match st.uexit.pending.take() {
            Some(Pending::Io { next_rip, in_size }) => {
                if let Some(size) = in_size {
                    let d = self.pio.read_u64(0);
                    let mut regs = st.all_gprs();
                    mmio::load_into(&mut regs, mmio::Reg::new(Gpr::Rax), mmio::Extend::None, size, d);
                    st.set_all_gprs(&regs);
                }
                Some(next_rip)
            }
            Some(Pending::Mmio { next_rip, read }) => {
                if let Some((dst, ext, size)) = read {
                    let d = self.run.read_u64(run::MMIO_DATA);
                    let mut regs = st.all_gprs();
                    mmio::load_into(&mut regs, dst, ext, size, d);
                    st.set_all_gprs(&regs);
                }
                Some(next_rip)
            }
            Some(Pending::StrIo { next_rip, is_in, rep, count, size, amask, idx, df }) => {
                let mut regs = st.all_gprs();
                // With REP, as many elements as rCX says now, at most the
                // exit's: userspace may have lowered rCX meanwhile, and the
                // instruction must end with rCX = 0, not wrap and run on
                // past its buffer (KVM's emulator reads rCX again when it
                // completes; KVM's selftest userspace_io_test).
                let count = if rep { core::cmp::min(count, regs[Gpr::Rcx] & amask) } else { count };
                if is_in {
                    let inner = self.vm.mem();
                    let mem = st.guest_mem(&inner);
                    let bytes = (count * u64::from(size)) as usize;
                    for (k, g) in st.uexit.string_gpas.iter().enumerate().take(bytes) {
                        let b = [self.pio.read_u8(k)];
                        mem.write_bytes(*g, &b);
                    }
                }
                let step = count * u64::from(size);
                let i = idx;
                let moved = if df { regs[i].wrapping_sub(step) } else { regs[i].wrapping_add(step) };
                // Only the address-size part of the registers changes; a
                // 32-bit update zero-extends (APM vol. 3 INS/OUTS).
                let merge = |old: u64, new: u64| if amask == 0xffff_ffff { new & amask } else { (old & !amask) | (new & amask) };
                regs[i] = merge(regs[i], moved);
                let mut done = true;
                if rep {
                    regs[Gpr::Rcx] = merge(regs[Gpr::Rcx], regs[Gpr::Rcx].wrapping_sub(count));
                    done = regs[Gpr::Rcx] & amask == 0;
                }
                st.set_all_gprs(&regs);
                st.uexit.string_gpas.clear();
                done.then_some(next_rip)
            }
            Some(Pending::StrMmioRead(c)) => {
                let d = self.run.read_u64(run::MMIO_DATA);
                let inner = self.vm.mem();
                match self.str_after_read(st, &inner, c, d)? {
                    // Its MOVS destination's write exit, a single step,
                    // a failure: KVM_RUN ends again at once (KVM's
                    // complete_userspace_io returning 0).
                    Next::User => {
                        drop(inner);
                        self.stats.bump(st_idx::EXITS_USERSPACE);
                        self.encode_common(st);
                        return Ok(0);
                    }
                    Next::Guest => None,
                }
            }
            Some(Pending::Done { step }) => step.then(|| st.vmcb().save.rip),
            Some(Pending::Msr { write, next_rip }) => self.complete_msr(st, write, next_rip),
            None => None,
        };
        if let Some(rip) = next_rip {
            let vmcb = st.vmcb();
            vmcb.save.rip = rip;
            vmcb.control.int_state &= !nsvm_core::vmcb::int_state::SHADOW;
        }
        // An instruction userspace completed (port I/O, MMIO) is a step for
        // a debugger single-stepping the guest: report it now, as KVM does
        // when it completes the instruction.
        if next_rip.is_some() {
            if let Some(Next::User) = self.step_after_emulation(st) {
                self.stats.bump(st_idx::EXITS_USERSPACE);
                self.encode_common(st);
                return Ok(0);
            }
        }
        if let Some(t) = st.uexit.halted_since.take() {
            self.stats.bump(st_idx::HALT_WAKEUPS);
            self.stats.add(st_idx::HALT_WAIT_NS, hw::task::now_ns().saturating_sub(t));
        }
        // immediate_exit: back at once with EINTR, exit_reason untouched (as KVM).
        if self.run_u8(run::IMMEDIATE_EXIT) != 0 {
            return Err(EINTR);
        }
        let r = loop {
            if core::mem::take(&mut st.uexit.triple_fault) {
                // A triple fault owed while L2 runs (KVM_SET_VCPU_EVENTS,
                // KVM_X86_SET_MCE): #VMEXIT(SHUTDOWN) to L1 when L1
                // intercepts it (KVM's nested_svm_triple_fault), otherwise
                // the vCPU shuts down.
                let l1_takes = st.nst.l2.is_some() && !st.nst.run_pending && st.nst.vmcb12.get().control.intercepts.test(nsvm_core::exit::SHUTDOWN);
                if !l1_takes {
                    self.user_exit(UserExit::Shutdown);
                    break Ok(0);
                }
                if let Some(Next::User) = self.synthetic_exit_to_l1(st, nsvm_core::exit::SHUTDOWN)? {
                    break Ok(0);
                }
            }
            if hw::task::signal_pending() {
                self.user_exit(UserExit::Intr);
                self.stats.bump(st_idx::SIGNAL_EXITS);
                break Err(EINTR);
            }
            // A reschedule the scheduler asked for, lazy ones too (KVM's
            // xfer_to_guest_mode_handle_work): without it a woken task
            // sharing this CPU (the other vCPU of an L1, its QEMU's I/O
            // thread) waited for the host's next tick while this vCPU went
            // from exit to entry.
            hw::task::guest_mode_work();
            // kvmclock records owed to the guest (guest memory: written
            // here, where the thread may fault and sleep).
            self.kvmclock_sync(st);
            // Ignored with the full irqchip (KVM's dm_request_for_irq_injection).
            // With the split irqchip, only while userspace's ExtINT can be
            // taken (KVM's dm_request_for_irq_injection &&
            // kvm_cpu_accept_dm_intr): a window opened for a masked LINT0
            // would end at once, again and again, without ever being ready.
            let window = self.run_u8(run::REQUEST_INTERRUPT_WINDOW) != 0 && !self.vm.irqchip_full() && st.accept_dm_intr();
            // The in-kernel APIC: posted interrupts and the timer in, and
            // a halted vCPU waits here for an event.
            // Guarded here as well as inside: measured by `make bench`,
            // the calls cost a vCPU without an in-kernel APIC instructions
            // on every exit even though they return at once (the lapic
            // branch alone: CPUID exit 1794 -> 1479 with these guards).
            if st.apic.is_some() {
                self.apic_sync(st);
                if let Some(r) = self.apic_block(st) {
                    break r;
                }
            }
            // An interrupt or NMI for L1 while L2 runs, which L1 intercepts:
            // #VMEXIT(INTR/NMI) to L1 (APM 15.21.1, 15.21.3), the event
            // staying pending for L1 (taken once it sets GIF). After the
            // APIC's sync: an interrupt posted or a timer expired while L2
            // ran (the kick that ended it) ends L2 now, not at L2's next
            // exit, which a busy L2 may not make for a host tick or more;
            // and a halted L2 woken by an event for L1 goes to L1.
            // A pending exception userspace queued: L1's #VMEXIT when it
            // intercepts it while L2 runs (before interrupts, as KVM's
            // nested event checks), otherwise delivered.
            if let Some((code, info1, info2)) = st.queued_exception() {
                if let Some(Next::User) = self.synthetic_exit_to_l1_info(st, code, info1, info2)? {
                    break Ok(0);
                }
            }
            if st.nst.l2.is_some() && !st.nst.run_pending {
                if let Some(code) = st.l1_event_exit() {
                    if let Some(Next::User) = self.synthetic_exit_to_l1(st, code)? {
                        break Ok(0);
                    }
                }
            }
            st.prepare_interrupts(window, &|| self.vm.pic_inta());
            st.apply_policy(self.vm.policy());
            st.apply_guest_debug();
            // From here KVM_SET_CPUID2 may only repeat the table.
            st.cpu.entered = true;
            self.log_injection(st);
            st.entry_event = (st.vmcb().control.event_inj, st.vmcb().control.next_rip);
            hw::trace::entry(|| {
                let v = st.vmcb();
                (self.id, v.save.rip, v.control.event_inj, v.control.event_inj_err)
            });
            let l1_runs = st.nst.l2.is_none();
            let soft = if l1_runs {
                st.gif01_prepare();
                None
            } else {
                st.soft_event_prepare()
            };
            let seen = loop {
                // L2 on NPT02: dropped if the VM's memory changed since it
                // was composed, and the entry abandoned if it changes again
                // before the VMRUN (`EntryTlb::npt02_generation`).
                let npt02 = if st.l2_np() {
                    self.sync_npt02(st);
                    st.nst.npt02.key.map(|k| k.npt01_generation)
                } else {
                    None
                };
                let posted = st.apic.is_some().then(|| self.vm.apic.mailbox(self.id).posted());
                if let Entry::Ran(seen) = st.enter(self.id, self.vm.guest_mode(self.id), &self.vm.memory_generation, npt02, posted) {
                    break seen;
                }
            };
            if l1_runs {
                st.gif01_sync();
            } else if let Some(s) = soft {
                st.soft_event_after_exit(s);
            }
            if let Some(seen) = seen.then(|| st.sighting.take()).flatten() {
                // The guest ran but its state is gone (replaced by what no
                // #VMEXIT of that VMRUN writes, and put back as it was at
                // the entry): stop the vCPU with a recognizable error
                // rather than run it again.
                let (code, rip) = (st.vmcb().control.exit_code, st.vmcb().save.rip);
                note_foreign_vmcb(&seen);
                self.user_exit(UserExit::host_state_in_vmcb(code, rip));
                break Ok(0);
            }
            st.nst.run_pending = false;
            let next = self.handle_exit(st)?;
            if st.apic.is_some() {
                self.apic_flush(st);
            }
            if st.apic.is_some() && matches!(next, Next::Guest) && self.apic_eoi_exit(st) {
                break Ok(0);
            }
            match next {
                Next::Guest => {
                    // KVM: with an open window requested, return as soon as
                    // an interrupt can be injected.
                    if window && st.ready_for_injection() {
                        self.user_exit(UserExit::IrqWindowOpen);
                        self.stats.bump(st_idx::IRQ_WINDOW_EXITS);
                        break Ok(0);
                    }
                }
                Next::User => break Ok(0),
            }
        };
        self.stats.bump(st_idx::EXITS_USERSPACE);
        let common = RunCommon {
            if_flag: st.vmcb().save.rflags & rflags::IF != 0,
            // Always 1 with the full irqchip (KVM's post_kvm_run_save).
            ready_for_interrupt_injection: self.vm.irqchip_full() || st.ready_for_injection(),
            cr8: u64::from(st.vmcb().control.int_ctl & int_ctl::V_TPR_MASK),
            apic_base: st.cpu.apic_base,
        };
        common.encode(&mut RunPageWriter(&self.run));
        r
    }
}

impl Vcpu {
    /// The event about to be injected, for the event log; an external
    /// interrupt while the guest has IF = 0 or an interrupt shadow is a
    /// defect of nsvm, reported once (`evlog::Record::is_suspect`).
    fn log_injection(&self, st: &mut VcpuState) {
        let v = st.vmcb();
        let ei = v.control.event_inj;
        if ei & nsvm_core::event::bits::VALID == 0 {
            return;
        }
        // `nsvm_inj_virq` / `nsvm_inj_exception` (KVM's kvm_inj_virq and
        // kvm_inj_exception; NMI as exception 2): re-injected when it is
        // what the last exit reported as interrupted (EXITINTINFO).
        if hw::trace::inj_virq_on() || hw::trace::inj_exception_on() {
            let reinjected = v.control.exit_int_info == ei;
            match (ei >> 8) & 7 {
                0 | 4 => hw::trace::inj_virq(|| (ei & 0xff, (ei >> 8) & 7 == 4, reinjected)),
                2 | 3 => hw::trace::inj_exception(|| (ei & 0xff, ei & nsvm_core::event::bits::EV != 0, v.control.event_inj_err, reinjected)),
                _ => {}
            }
        }
        let shadow = u64::from(v.control.int_state & nsvm_core::vmcb::int_state::SHADOW != 0);
        let r = nsvm_core::evlog::Record::new(
            nsvm_core::evlog::Kind::Inject,
            0,
            u64::from(ei) | u64::from(v.control.event_inj_err) << 32,
            v.save.rip,
            v.save.rflags | shadow << 32,
        );
        self.stats.log(r.kind, r.a, r.b, r.c);
        if r.is_suspect() {
            self.stats.bump(nsvm_core::stats::SUSPECT_INJECTIONS);
            kernel::pr_warn_once!("nsvm: vCPU {}: interrupt {:#x} injected with guest RFLAGS {:#x} (IF=0 or an interrupt shadow): a defect of nsvm\n", self.id, ei & 0xff, v.save.rflags);
        }
    }
}

impl VcpuState {
    /// Enters the guest once and returns at its next #VMEXIT
    /// (`Entry::Ran`; `Entry::Retry` when the entry was abandoned before
    /// VMRUN because NPT02 went stale): false, or true with what was seen
    /// (in `self.sighting`) when the VMCB came back from a VMRUN that did not
    /// fail with what no #VMEXIT of that VMRUN writes (`vmrun::enter`:
    /// the host's own state, or `int_ctl` without V_INTR_MASKING). State
    /// from elsewhere never stays in the VMCB, where `KVM_GET_REGS/SREGS`
    /// or L1 (through vmcb12) would read it: when VMRUN failed
    /// (VMEXIT_INVALID) or such state came back, the state the VMCB had
    /// before VMRUN is put back (`EntryState`), the exit code and
    /// information staying the processor's. `vcpu` is this vCPU's id,
    /// `mode` its guest-mode word in its VM, `generation` the VM's memory
    /// generation (the TLB shootdown of `Vm::shootdown`).
    pub(super) fn enter(
        &mut self,
        vcpu: u32,
        mode: &GuestMode,
        generation: &AtomicU64,
        npt02_generation: Option<u64>,
        posted: Option<&AtomicU32>,
    ) -> Entry {
        let xcr0 = self.cpu.xcr0;
        let l2 = self.nst.l2.is_some();
        let page = if l2 { &mut self.nst.vmcb02 } else { &mut self.cpu.vmcb };
        // Saved in full only when the state is not one the processor itself
        // left at the last #VMEXIT (set from outside: ioctls, a nested
        // VMRUN, VMLOAD, a reset); otherwise only what the checks after
        // VMRUN read, and a VMCB refused or holding foreign state is
        // scrubbed instead of restored.
        let level = usize::from(l2);
        let untrusted = self.cpu.entry_untrusted[level];
        if untrusted {
            self.cpu.entry.save(page.get());
        } else {
            self.cpu.entry.note(page.get());
        }
        let tlb = vmrun::EntryTlb { mode, asid: &mut self.cpu.asids[level], generation, npt02_generation, posted };
        // DR0-3: the debugger's breakpoints while it uses them (what the
        // guest writes to them meanwhile is not kept), else the guest's.
        let d = &self.cpu.dbg.debugreg;
        let mut dbg_db = [d[0], d[1], d[2], d[3]];
        let db = if self.cpu.dbg.hw_bp() && !l2 { &mut dbg_db } else { &mut self.cpu.db };
        // QEMU's TCG double-delivery workaround without the exit, where it
        // applies (`nsvm_core::event::VirqInjection`; the self-IPI of
        // `vmrun::enter` otherwise).
        let virq = if vmrun::EXIT_AFTER_INJECTION.load(core::sync::atomic::Ordering::Relaxed) {
            let v = page.get();
            let rflags = v.save.rflags;
            VirqInjection::take(&mut v.control, rflags)
        } else {
            None
        };
        let e = vmrun::enter(page, &self.cpu.entry, &mut self.cpu.host_save, &mut self.cpu.loaded, &mut self.cpu.gprs, xcr0, tlb, db);
        if let Some(j) = virq {
            let c = &mut page.get().control;
            let entered = !e.abandoned && !Vmcb::exit_is_invalid(c.exit_code);
            match j.finish(c, entered) {
                VirqOutcome::Taken | VirqOutcome::Pending => self.stats.bump(nsvm_core::stats::INJECTIONS_VIRQ),
                VirqOutcome::NotEntered => {}
                VirqOutcome::Conflict => {
                    kernel::pr_warn_once!("nsvm: vCPU {}: an exit with EXITINTINFO {:#x} before the virtual interrupt was taken: a defect of nsvm or of the processor\n", vcpu, c.exit_int_info);
                }
            }
        }
        if e.fpu_load != FpuLoad::Kept {
            self.stats.bump(nsvm_core::stats::FPU_LOADS);
        }
        if e.host_saved {
            self.stats.bump(nsvm_core::stats::HOST_STATE_SAVES);
        }
        if e.guarded {
            self.stats.bump(nsvm_core::stats::INJECTION_GUARDS);
        }
        if e.abandoned {
            return Entry::Retry;
        }
        let pa = page.pa();
        let v = page.get();
        let failed = Vmcb::exit_is_invalid(v.control.exit_code);
        let seen = match e.sign {
            Some(sign) if !failed => {
                let mut s = Sighting::new(sign, vcpu, e.cpu, e.seq, pa, l2, v, &self.cpu.entry);
                s.host_cr3 = e.host_cr3;
                s.vmrun_end = e.vmrun_end;
                s.gdt_cpu = crate::svm::gdt_owner(s.gdtr_base);
                s.hsave = e.hsave;
                self.sighting = Some(s);
                true
            }
            _ => false,
        };
        if failed || e.sign.is_some() {
            if untrusted {
                self.cpu.entry.put_back(v);
            } else {
                EntryState::scrub(v);
            }
        } else {
            self.cpu.entry_untrusted[level] = false;
        }
        Entry::Ran(seen)
    }
}

/// How `VcpuState::enter` ended.
pub(super) enum Entry {
    /// The guest ran; true if the VMCB came back with what no #VMEXIT of
    /// that VMRUN writes (what was seen in `VcpuState::sighting`). A flag,
    /// not the `Sighting` itself: returning that by value copied its
    /// ~900 bytes on every entry (`make bench BENCH_PROFILE=1`: 210
    /// instructions of memcpy per exit).
    Ran(bool),
    /// No VMRUN: NPT02 went stale on the way in (drop it, enter again).
    Retry,
}

impl Vcpu {
    /// The fields every return from `KVM_RUN` fills (`RunCommon`), for the
    /// early return of a completed step.
    fn encode_common(&self, st: &mut VcpuState) {
        let common = RunCommon {
            if_flag: st.vmcb().save.rflags & rflags::IF != 0,
            // Always 1 with the full irqchip (KVM's post_kvm_run_save).
            ready_for_interrupt_injection: self.vm.irqchip_full() || st.ready_for_injection(),
            cr8: u64::from(st.vmcb().control.int_ctl & int_ctl::V_TPR_MASK),
            apic_base: st.cpu.apic_base,
        };
        common.encode(&mut RunPageWriter(&self.run));
    }
}

/// Logs a VMCB that came back from VMRUN with what no #VMEXIT of that VMRUN
/// writes (`nsvm_core::hoststate`): the first 20 of each load, in full.
fn note_foreign_vmcb(s: &Sighting) {
    static SEEN: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);
    let n = SEEN.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    if n < 20 {
        pr_warn!(
            "VMCB back from VMRUN not written by its #VMEXIT ({} of at most 20 logged; a QEMU TCG race, docs/architecture.md); vCPU stopped with KVM_EXIT_INTERNAL_ERROR: {}\n",
            n + 1,
            core::format_args!("{s}")
        );
    }
}

impl Vcpu {
    /// A #VMEXIT to L1 that no exit of L2 caused (an interrupt or NMI L1
    /// intercepts, a triple fault owed): exit code `code`, EXITINFO1/2
    /// zero, an event L0 was about to deliver to L2 reported as
    /// interrupted (EXITINTINFO).
    fn synthetic_exit_to_l1(&self, st: &mut VcpuState, code: u64) -> Result<Option<Next>> {
        self.synthetic_exit_to_l1_info(st, code, 0, 0)
    }

    /// [`Self::synthetic_exit_to_l1`] with EXITINFO1 and EXITINFO2.
    fn synthetic_exit_to_l1_info(&self, st: &mut VcpuState, code: u64, info1: u64, info2: u64) -> Result<Option<Next>> {
        let inner = self.vm.mem();
        {
            let c = &mut st.nst.vmcb02.get().control;
            let pending = c.event_inj & nsvm_core::event::bits::VALID != 0;
            c.exit_int_info = if pending { c.event_inj } else { 0 };
            c.exit_int_info_err = if pending { c.event_inj_err } else { 0 };
            c.event_inj = 0;
            c.exit_code = code;
            c.exit_info_1 = info1;
            c.exit_info_2 = info2;
        }
        self.reflect_to_l1(st, &inner, code)
    }
}
