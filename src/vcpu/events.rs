// SPDX-License-Identifier: GPL-2.0
//! Interrupts and NMIs: injection when the guest can take them, interrupt
//! windows (APM vol. 2 15.21.4), GIF (15.17), NMI masking until IRET, the
//! #VMEXIT(INTR/NMI) an event of L1 causes while L2 runs, and
//! `KVM_GET/SET_VCPU_EVENTS`.

use kernel::prelude::*;

use nsvm_core::event::{Event, EventType};
use nsvm_core::exit;
use nsvm_core::cpu_state;
use nsvm_core::kvm;
use nsvm_core::paging;
use nsvm_core::stats::vcpu as st_idx;
use nsvm_core::vmcb::int_ctl;
use nsvm_core::x86::rflags;

use super::{Next, VcpuState};

impl VcpuState {
    /// `KVM_GET_VCPU_EVENTS` of the running level (`cpu_state::get_events`;
    /// `payload`: `KVM_CAP_EXCEPTION_PAYLOAD` enabled).
    pub(super) fn get_events(&mut self, payload: bool) -> kvm::VcpuEvents {
        let p = self.ev;
        cpu_state::get_events(&self.vmcb().control, &p, payload)
    }

    /// `KVM_SET_VCPU_EVENTS` (`cpu_state::set_events`, which checks the
    /// input as KVM does: `EINVAL`, nothing changed).
    pub(super) fn set_events(&mut self, e: &kvm::VcpuEvents, payload: bool) -> Result {
        self.mark_untrusted();
        let l1_runs = self.nst.l2.is_none();
        let apic = self.apic.is_some();
        let mut p = self.ev;
        cpu_state::set_events(&mut self.vmcb().control, &mut p, e, l1_runs, payload, apic).map_err(|_| EINVAL)?;
        self.ev = p;
        Ok(())
    }

    /// A pending exception userspace queued (`KVM_SET_VCPU_EVENTS` with
    /// `KVM_CAP_EXCEPTION_PAYLOAD`), at the next entry: while L2 runs and
    /// L1 intercepts its vector, the #VMEXIT L1 gets (`Some(code, info1,
    /// info2)`: the error code, and #PF's address, the payload, in
    /// EXITINFO2 with CR2 untouched, APM 15.12); otherwise delivered to the
    /// running guest with its payload applied (CR2, or DR6's bits as KVM's
    /// `kvm_deliver_exception_payload`) once EVENTINJ is free.
    pub(super) fn queued_exception(&mut self) -> Option<(u64, u64, u64)> {
        let x = self.ev.exception?;
        if self.nst.l2.is_some() && !self.nst.run_pending {
            let c12 = &self.nst.vmcb12.get().control;
            if c12.intercepts.test(exit::EXCP_BASE + u64::from(x.vector)) {
                self.ev.exception = None;
                let info2 = match (x.vector, x.payload) {
                    (14, Some(p)) => p,
                    (14, None) => self.vmcb().save.cr2,
                    _ => 0,
                };
                return Some((exit::EXCP_BASE + u64::from(x.vector), u64::from(x.error_code.unwrap_or(0)), info2));
            }
        }
        if self.vmcb().control.event_inj & nsvm_core::event::bits::VALID != 0 {
            return None;
        }
        self.ev.exception = None;
        if let Some(p) = x.payload {
            match x.vector {
                14 => self.vmcb().save.cr2 = p,
                1 => {
                    let v = self.vmcb();
                    v.save.dr6 = cpu_state::dr6_with_payload(v.save.dr6, p);
                }
                _ => {}
            }
        }
        self.inject(Event::new(EventType::Exception, x.vector, x.error_code));
        None
    }

    /// Delivers a #PF for linear address `la` to the guest.
    pub(super) fn page_fault(&mut self, la: u64, pf: paging::PageFault) -> Next {
        self.vmcb().save.cr2 = la;
        self.inject(Event::new(EventType::Exception, 14, Some(pf.error_code)));
        Next::Guest
    }

    /// Whether the guest can take an external interrupt now: RFLAGS.IF set,
    /// no interrupt shadow, nothing being injected, nothing queued.
    /// Userspace may inject an ExtINT now (KVM's `kvm_cpu_accept_dm_intr`):
    /// without an in-kernel APIC always (nsvm queues and replaces); with
    /// one, when none is queued and LINT0 takes ExtINTs.
    pub(super) fn accept_dm_intr(&self) -> bool {
        self.apic.is_none() || (self.ev.irq.is_none() && self.lint0_takes_extint())
    }

    /// LINT0 takes an ExtINT (always without an in-kernel APIC).
    fn lint0_takes_extint(&self) -> bool {
        self.apic.as_ref().is_none_or(|a| a.accepts_pic())
    }

    /// Userspace's interrupt (`KVM_INTERRUPT`) is queued and may be taken.
    pub(super) fn user_extint_takeable(&self) -> bool {
        self.ev.irq.is_some() && self.lint0_takes_extint()
    }

    pub(super) fn ready_for_injection(&mut self) -> bool {
        // With an in-kernel APIC (split irqchip) userspace's KVM_INTERRUPT
        // is an ExtINT: accepted only where LINT0 takes one (KVM's
        // kvm_cpu_accept_dm_intr); reporting ready otherwise makes QEMU
        // inject into a masked LINT0 and lose the interrupt to EEXIST.
        if !self.lint0_takes_extint() {
            return false;
        }
        if let Some(ok) = self.l1_takes_intr() {
            return self.ev.irq.is_none() && ok;
        }
        let queued = self.ev.irq.is_some();
        let gif = self.nst.gif || self.nst.l2.is_some();
        let v = self.vmcb();
        !queued
            && gif
            && v.save.rflags & rflags::IF != 0
            && v.control.int_state & nsvm_core::vmcb::int_state::SHADOW == 0
            && v.control.event_inj & nsvm_core::event::bits::VALID == 0
    }

    /// Before an entry: inject a queued interrupt if the guest can take it,
    /// otherwise (or when userspace asked for a window) ask for a #VMEXIT
    /// when it can, with a virtual interrupt that ignores the TPR and the
    /// VINTR intercept (APM 15.21.4), as KVM's `svm_enable_irq_window` does.
    /// `inta` runs the PIC's INTA cycle (full irqchip) and gives its vector.
    pub(super) fn prepare_interrupts(&mut self, window_requested: bool, inta: &dyn Fn() -> u8) {
        // With GIF clear (L1 after #VMEXIT or CLGI) interrupts and NMIs
        // stay pending (APM 15.17).
        let gif = self.nst.gif || self.nst.l2.is_some();
        if self.ev.nmi_pending && gif && (self.nst.l2.is_some() || !self.ev.nmi_masked) {
            let v = self.vmcb();
            if v.control.int_state & nsvm_core::vmcb::int_state::SHADOW == 0 && v.control.event_inj & nsvm_core::event::bits::VALID == 0 {
                self.ev.nmi_pending = false;
                self.inject(Event::new(EventType::Nmi, 2, None));
                if self.nst.l2.is_none() {
                    // Masked until the handler's IRET (intercepted).
                    self.ev.nmi_masked = true;
                    self.cpu.vmcb.get().control.intercepts.set(exit::IRET);
                }
                return;
            }
        }
        // L1's virtual NMI for L2 (vNMI, emulated: `vnmi_prepare`).
        if self.nst.l2.is_some() && self.vnmi_prepare() {
            return;
        }
        // L1 intercepts INTR while L2 runs: L1's interrupts end L2 by
        // #VMEXIT (run loop), they are never injected into L2.
        if self.l1_takes_intr().is_some() {
            return;
        }
        // While L2 runs (L1 not intercepting INTR), L1's interrupts are
        // masked by L1's IF at VMRUN or by L2's, as vmcb12's V_INTR_MASKING
        // says (APM 15.21.1); masked by L1's, no window can open while L2
        // runs (KVM's svm_set_vintr), they wait for the #VMEXIT.
        let unmasked = self.intr_unmasked();
        if !unmasked && self.nst.l2.is_some() && self.nst.vmcb12.get().control.int_ctl & int_ctl::V_INTR_MASKING != 0 {
            self.close_irq_window();
            return;
        }
        let v = self.vmcb();
        let interruptible = unmasked
            && v.control.int_state & nsvm_core::vmcb::int_state::SHADOW == 0
            && v.control.event_inj & nsvm_core::event::bits::VALID == 0
            && gif;
        if !gif {
            // L1's GIF is emulated (or in vmcb01's V_GIF): a VINTR window
            // would exit at once, before every instruction (the processor's
            // GIF is set while L1 runs), and L1 would never reach its STGI.
            // STGI is intercepted while an event waits (`gif01_prepare`):
            // the next entry after it injects or opens the window.
            self.close_irq_window();
            self.nst.gif_waiting = self.ev.nmi_pending
                || self.ev.irq.is_some()
                || window_requested
                || self.apic.as_ref().is_some_and(|a| a.extint)
                || (self.apic.is_some() && self.apic_pending().is_some());
            return;
        }
        // The PIC's interrupt first (KVM's kvm_cpu_get_interrupt: ExtINT
        // before the APIC), its vector taken by the INTA cycle now.
        if self.ev.irq.is_none() && self.apic.as_ref().is_some_and(|a| a.extint) {
            if interruptible {
                let v = inta();
                if let Some(a) = self.apic.as_mut() {
                    a.extint = false;
                }
                self.window_done(window_requested);
                self.inject(Event::new(EventType::Intr, v, None));
                self.stats.bump(st_idx::IRQ_INJECTIONS);
                return;
            }
            self.open_irq_window();
            return;
        }
        // Userspace's ExtINT (KVM_INTERRUPT with the split irqchip) waits
        // while LINT0 does not take it (KVM's kvm_cpu_has_extint); the
        // APIC's own interrupts go on meanwhile.
        let extint_held = self.ev.irq.is_some() && !self.lint0_takes_extint();
        // The in-kernel APIC's interrupt (L1's; while L2 runs and L1 does
        // not intercept INTR it is taken by whoever runs, as above).
        if (self.ev.irq.is_none() || extint_held) && self.apic.is_some() {
            if let Some(v) = self.apic_pending() {
                if interruptible {
                    self.window_done(window_requested);
                    self.apic_inject(v);
                    return;
                }
                self.open_irq_window();
                return;
            }
        }
        if let Some(irq) = self.ev.irq.filter(|_| !extint_held) {
            if interruptible {
                self.ev.irq = None;
                self.window_done(window_requested);
                self.inject(Event::new(EventType::Intr, irq, None));
                self.stats.bump(st_idx::IRQ_INJECTIONS);
                return;
            }
            self.open_irq_window();
        } else if window_requested {
            // As KVM: an open window is requested unconditionally; if the
            // guest is already interruptible the VINTR exit comes at once.
            self.open_irq_window();
        }
    }

    /// While L2 runs and L1 intercepts INTR: whether L1 can take an
    /// interrupt now, i.e. L1's IF (with V_INTR_MASKING, as it was at
    /// VMRUN) or L2's (without). `None` otherwise.
    #[inline]
    pub(super) fn l1_takes_intr(&mut self) -> Option<bool> {
        // Inlined for the test most entries stop at (no L2).
        self.nst.l2?;
        self.l2_l1_takes_intr()
    }

    fn l2_l1_takes_intr(&mut self) -> Option<bool> {
        let c12 = &self.nst.vmcb12.get().control;
        if !c12.intercepts.test(exit::INTR) {
            return None;
        }
        let (intercepts, int_ctl12) = (c12.intercepts, c12.int_ctl);
        let l1_if = self.cpu.vmcb.get().save.rflags & rflags::IF != 0;
        let l2_if = self.nst.vmcb02.get().save.rflags & rflags::IF != 0;
        Some(nsvm_core::reflect::intr_exit_due(&intercepts, int_ctl12, l1_if, l2_if))
    }

    /// The #VMEXIT a pending event of L1 causes while L2 runs: NMI when L1
    /// intercepts NMIs, INTR when it intercepts INTR and can take one.
    pub(super) fn l1_event_exit(&mut self) -> Option<u64> {
        if self.ev.nmi_pending && self.nst.vmcb12.get().control.intercepts.test(exit::NMI) {
            return Some(exit::NMI);
        }
        let extint = self.apic.as_ref().is_some_and(|a| a.extint);
        if (self.user_extint_takeable() || extint || self.apic_pending().is_some()) && self.l1_takes_intr() == Some(true) {
            return Some(exit::INTR);
        }
        None
    }

    /// Before an entry into L1: vmcb01 carries L1's GIF in V_GIF when the
    /// processor has vGIF and L1 may use STGI/CLGI (APM 15.33.2), STGI
    /// intercepted only while an event waits for it (`nsvm_core::vgif`).
    pub(super) fn gif01_prepare(&mut self) {
        // A guest without SVM (most) keeps the emulated GIF's controls:
        // written once (`gif01`: None until then, and after anything that
        // rewrote vmcb01's controls).
        let svme = self.nst.svm_exposed && self.l1_efer() & nsvm_core::msr::efer::SVME != 0;
        let waiting = !self.nst.gif && core::mem::take(&mut self.nst.gif_waiting);
        let g = nsvm_core::vgif::gif01(crate::svm::host_has(nsvm_core::cpuid::SvmFeatures::VGIF), svme, self.nst.gif, waiting);
        if self.nst.gif01 != Some(g) || g.enable {
            g.apply(&mut self.cpu.vmcb.get().control);
            self.nst.gif01 = Some(g);
        }
    }

    /// After a #VMEXIT of L1: its GIF as its STGI/CLGI left V_GIF.
    pub(super) fn gif01_sync(&mut self) {
        if self.nst.gif01.is_some_and(|g| g.enable) {
            if let Some(gif) = nsvm_core::vgif::gif_after_exit(&self.cpu.vmcb.get().control) {
                self.nst.gif = gif;
            }
        }
    }

    /// The running guest's RFLAGS.IF, or while L2 runs the flag that masks
    /// L1's physical interrupts (`reflect::l1_intr_unmasked`).
    fn intr_unmasked(&mut self) -> bool {
        let l2_if = self.vmcb().save.rflags & rflags::IF != 0;
        if self.nst.l2.is_none() {
            return l2_if;
        }
        let int_ctl12 = self.nst.vmcb12.get().control.int_ctl;
        let l1_if = self.cpu.vmcb.get().save.rflags & rflags::IF != 0;
        nsvm_core::reflect::l1_intr_unmasked(int_ctl12, l1_if, l2_if)
    }

    /// Asks for a #VMEXIT(VINTR) once the guest can take an interrupt: a
    /// virtual interrupt of the highest priority that ignores the TPR
    /// (APM 15.21.4), as KVM's svm_set_vintr. While L2 runs it takes
    /// vmcb02's V_IRQ from L1's virtual interrupt, which comes back when
    /// the window closes (`close_irq_window`) and stays pending in vmcb12
    /// meanwhile (`nested::sync_int_ctl`).
    pub(super) fn open_irq_window(&mut self) {
        let v = self.vmcb();
        v.control.int_ctl &= !int_ctl::V_INTR_PRIO_MASK;
        v.control.int_ctl |= nsvm_core::event::VIRQ_ANY_TPR;
        v.control.int_vector = 0;
        v.control.intercepts.set(exit::VINTR);
    }

    /// An interrupt is injected: L0's window, opened for it while the guest
    /// could not take it and still open when an exit other than VINTR came
    /// first (a HLT in STI's shadow), has served and is dropped, unless
    /// userspace asked for one. Left open, it cost a #VMEXIT(VINTR) once
    /// the handler's IRET set IF again with nothing pending; the interrupt
    /// after this one waits for an exit anyway (its EOI, a new post).
    fn window_done(&mut self, window_requested: bool) {
        if !window_requested && self.vmcb().control.intercepts.test(exit::VINTR) {
            self.close_irq_window();
        }
    }

    /// Drops L0's window. While L2 runs, vmcb02 gets L1's virtual
    /// interrupt of vmcb12 back (KVM's svm_clear_vintr; its V_IRQ synced
    /// at every exit, so one L2 took meanwhile is not given again), and
    /// keeps the VINTR intercept when L1 has it.
    pub(super) fn close_irq_window(&mut self) {
        if self.nst.l2.is_some() {
            let c12 = &self.nst.vmcb12.get().control;
            let (i12, vec12, l1_vintr) = (c12.int_ctl, c12.int_vector, c12.intercepts.test(exit::VINTR));
            let c = &mut self.nst.vmcb02.get().control;
            (c.int_ctl, c.int_vector) = nsvm_core::nested::restore_vintr(c.int_ctl, i12, vec12);
            if !l1_vintr {
                c.intercepts.clear(exit::VINTR);
            }
            return;
        }
        let v = self.vmcb();
        v.control.int_ctl &= !(nsvm_core::nested::V_IRQ_INJECTION_BITS);
        v.control.intercepts.clear(exit::VINTR);
    }

    /// vmcb12's int_ctl after an exit of L2 (`nested::sync_int_ctl`,
    /// KVM's nested_sync_control_from_vmcb02): what L2 changed (V_TPR,
    /// V_IRQ taken, V_GIF), V_IRQ not while L0's window holds it.
    pub(super) fn sync_int_ctl12(&mut self) {
        let c02 = &self.nst.vmcb02.get().control;
        let (i02, vintr02) = (c02.int_ctl, c02.intercepts.test(exit::VINTR));
        let c12 = &mut self.nst.vmcb12.get().control;
        let l0_window = vintr02 && !c12.intercepts.test(exit::VINTR);
        c12.int_ctl = nsvm_core::nested::sync_int_ctl(c12.int_ctl, i02, l0_window);
    }

    pub(super) fn inject(&mut self, e: Event) {
        if e.event_type() == Some(EventType::Exception) {
            self.stats.bump(st_idx::EXCEPTION_INJECTIONS);
        }
        let v = self.vmcb();
        v.control.event_inj = e.info;
        v.control.event_inj_err = e.error_code;
    }
}
