// SPDX-License-Identifier: GPL-2.0
//! The in-kernel local APIC of a vCPU (split irqchip): the register model
//! of `nsvm_core::lapic` wired to the vCPU — xAPIC MMIO exits on the APIC
//! page, x2APIC MSRs, IA32_APIC_BASE and IA32_TSC_DEADLINE, TPR kept in
//! sync with V_TPR (CR8), interrupts posted by other vCPUs and the APIC
//! timer (`vm::apic_bus`) moved into the model before each entry, IPIs
//! sent through the VM's APIC bus, HLT and INIT/SIPI waits that block the
//! vCPU thread in the kernel, `KVM_GET/SET_LAPIC`, `KVM_GET/SET_MP_STATE`.

use kernel::prelude::*;
use kernel::uaccess::{UserPtr, UserSlice};

use nsvm_core::event::{Event, EventType};
use nsvm_core::lapic::{self, Clock, Irq, Lapic, WriteEffect, REG_SIZE};
use nsvm_core::mmio;
use nsvm_core::msr;
use nsvm_core::stats::vcpu as st_idx;
use nsvm_core::user_exit::UserExit;
use nsvm_core::vmcb::int_ctl;
use nsvm_core::x86::rflags;

use super::{Next, Vcpu, VcpuState};
use crate::hw;
use crate::vm::apic_bus::flag;
use crate::vm::VmMem;

/// KVM_CAP_X2APIC_API flags (`KVM_X2APIC_*`).
pub(crate) const X2APIC_API_USE_32BIT_IDS: u32 = 1;
pub(crate) const X2APIC_API_DISABLE_BROADCAST_QUIRK: u32 = 2;
pub(crate) const X2APIC_ENABLE_SUPPRESS_EOI_BROADCAST: u32 = 4;
pub(crate) const X2APIC_DISABLE_SUPPRESS_EOI_BROADCAST: u32 = 8;

/// `KVM_MP_STATE_*`.
pub(super) use nsvm_core::bsp::mp;

/// A vCPU's in-kernel APIC and what its last accesses left to carry out.
pub(super) struct VApic {
    pub(super) m: Lapic,
    /// An IPI the guest sent, delivered after the exit (`apic_flush`).
    ipi: Option<Irq>,
    /// The timer's expiry changed / the addressing state changed.
    timer_dirty: bool,
    dest_dirty: bool,
    /// The expiry the host timer is armed for.
    armed: Option<u64>,
    /// The last IA32_TSC_DEADLINE write and the guest TSC then (for the
    /// debugfs dump, published with the timer by `apic_flush`).
    last_deadline: (u64, u64),
    /// `KVM_MP_STATE_*`.
    pub(super) mp: u32,
    /// The reset BSP: this vCPU's id is the VM's boot CPU id
    /// (`KVM_SET_BOOT_CPU_ID`; KVM's `kvm_vcpu_is_reset_bsp`).
    reset_bsp: bool,
    /// When the vCPU started waiting in the kernel (HLT), ns.
    halted_since: Option<u64>,
    /// Vectors whose EOI userspace's I/O APIC wants (level-triggered MSI
    /// routes of its reserved pins aimed at this APIC: KVM's
    /// `ioapic_handled_vectors`), and the route generation they reflect.
    ioapic_vectors: [u64; 4],
    routes_seen: u64,
    /// An EOI of one of them: `KVM_EXIT_IOAPIC_EOI` before the next entry.
    eoi_exit: Option<u8>,
    /// The guest's EOI broadcast suppression is honoured (the VM's
    /// KVM_CAP_X2APIC_API flags, read before each entry).
    suppress_eoi: bool,
    /// Full irqchip: EOIs go to the in-kernel I/O APIC (vector, TMR bit,
    /// suppressed by directed EOI), after the exit (`apic_flush`); the
    /// guest's directed EOI is ignored (KVM_X2APIC_DISABLE_SUPPRESS_EOI_BROADCAST).
    pub(super) full: bool,
    eoi_ioapic: Option<(u8, bool, bool)>,
    no_suppress: bool,
    /// The PIC's interrupt is pending for this vCPU (its APIC takes PIC
    /// interrupts and the PIC's output is high), as of the last sync.
    pub(super) extint: bool,
}

impl VApic {
    /// The APIC of vCPU `id` after RESET; `reset_bsp`: the VM's boot CPU.
    pub(super) fn new(id: u32, full: bool, reset_bsp: bool) -> Self {
        let mut m = Lapic::new(id, reset_bsp);
        if full {
            // No directed EOI with the in-kernel I/O APIC (KVM's quirk).
            m.advertise_directed_eoi = false;
            m.set_version();
        }
        Self {
            m,
            ipi: None,
            timer_dirty: false,
            dest_dirty: true,
            armed: None,
            last_deadline: (0, 0),
            mp: nsvm_core::bsp::initial_mp_state(true, reset_bsp),
            reset_bsp,
            halted_since: None,
            ioapic_vectors: [0; 4],
            routes_seen: u64::MAX,
            eoi_exit: None,
            suppress_eoi: false,
            full,
            eoi_ioapic: None,
            no_suppress: false,
            extint: false,
        }
    }

    /// Publishes the new APIC's addressing state and whether it takes the
    /// PIC's interrupts in its mailbox, before the vCPU is visible: IPIs
    /// and MSIs reach a vCPU that has not run yet (KVM recalculates its
    /// APIC map when it resets a new vCPU's APIC).
    pub(super) fn publish_new(&mut self, mb: &crate::vm::apic_bus::Mailbox) {
        self.dest_dirty = false;
        mb.publish(self.m.dest_info());
        mb.set_accepts_pic(self.accepts_pic());
    }

    /// KVM's `kvm_apic_accept_pic_intr` (`Lapic::accept_pic_intr`).
    pub(super) fn accepts_pic(&self) -> bool {
        self.m.accept_pic_intr()
    }
    fn note(&mut self, e: WriteEffect) {
        if e.ipi.is_some() {
            self.ipi = e.ipi;
        }
        self.timer_dirty |= e.timer;
        self.dest_dirty |= e.dest;
        if let (Some(v), true) = (e.eoi, self.full) {
            // KVM's kvm_ioapic_send_eoi with the in-kernel I/O APIC: the
            // TMR bit gives the trigger; a directed EOI of the guest is
            // honoured unless the VMM disabled it (the quirk).
            let directed = self.m.get(lapic::reg::SPIV) & lapic::spiv::DIRECTED_EOI != 0;
            self.eoi_ioapic = Some((v, self.m.tmr(v), directed && !self.no_suppress));
        } else if let Some(v) = e.eoi {
            // Unless the guest suppresses EOI broadcasts (SPIV bit 12).
            // Honoured only when the VMM enabled it
            // (KVM_X2APIC_ENABLE_SUPPRESS_EOI_BROADCAST); by default KVM's
            // split irqchip broadcasts every such EOI (its quirk).
            let handled = self.ioapic_vectors[usize::from(v >> 6)] & (1 << (v & 63)) != 0;
            let suppressed = self.suppress_eoi && self.m.get(lapic::reg::SPIV) & lapic::spiv::DIRECTED_EOI != 0;
            if handled && !suppressed {
                self.eoi_exit = Some(v);
            }
        }
    }
}

impl VcpuState {
    /// The time the APIC timer computes with: the monotonic clock and
    /// L1's TSC now.
    pub(super) fn apic_clock(&mut self) -> Clock {
        let off = self.cpu.vmcb.get().control.tsc_offset;
        Clock { now_ns: hw::task::now_ns(), guest_tsc: hw::cpu::rdtsc().wrapping_add(off), tsc_khz: u64::from(hw::cpu::tsc_khz()) }
    }

    /// RDMSR of an MSR the in-kernel APIC owns: `None` if it owns none of
    /// that number (or there is no in-kernel APIC), `Some(None)` for #GP.
    pub(super) fn apic_msr_read(&mut self, index: u32) -> Option<Option<u64>> {
        self.apic.as_ref()?;
        let c = self.apic_clock();
        let a = self.apic.as_mut()?;
        match index {
            lapic::X2APIC_MSR_FIRST..=lapic::X2APIC_MSR_LAST => Some(a.m.msr_read(index, &c)),
            lapic::MSR_TSC_DEADLINE => Some(Some(a.m.read_tsc_deadline())),
            msr::APIC_BASE => Some(Some(a.m.base)),
            _ => None,
        }
    }

    /// WRMSR (or `KVM_SET_MSRS` when `host`) of an MSR the in-kernel APIC
    /// owns: `None` if not one of them, `Some(false)` for #GP.
    pub(super) fn apic_msr_write(&mut self, index: u32, val: u64, host: bool) -> Option<bool> {
        self.apic.as_ref()?;
        let c = self.apic_clock();
        let phys = crate::svm::phys_bits();
        let a = self.apic.as_mut()?;
        let r = match index {
            lapic::X2APIC_MSR_FIRST..=lapic::X2APIC_MSR_LAST => a.m.msr_write(index, val, &c),
            lapic::MSR_TSC_DEADLINE => {
                a.last_deadline = (val, c.guest_tsc);
                self.stats.log(nsvm_core::evlog::Kind::TscDeadline, val, c.guest_tsc, self.cpu.vmcb.get().save.rip);
                let armed = a.m.write_tsc_deadline(val, &c);
                Ok(WriteEffect { timer: armed, ..Default::default() })
            }
            msr::APIC_BASE => a.m.set_base(val, host, u32::from(phys)),
            _ => return None,
        };
        let ok = match r {
            Ok(e) => {
                if let Some(v) = e.eoi {
                    self.stats.log(nsvm_core::evlog::Kind::Eoi, u64::from(v), 0, 0);
                }
                a.note(e);
                true
            }
            Err(_) => false,
        };
        self.cpu.apic_base = a.m.base;
        if index != msr::APIC_BASE && ok && !matches!(index, lapic::MSR_TSC_DEADLINE) {
            self.tpr_to_vmcb();
        }
        Some(ok)
    }

    /// V_TPR (CR8) from the APIC's TPR (APM 15.21.1: V_TPR is TPR[7:4]).
    fn tpr_to_vmcb(&mut self) {
        let Some(a) = self.apic.as_ref() else { return };
        let tpr = a.m.get(lapic::reg::TASKPRI) >> 4;
        let c = &mut self.cpu.vmcb.get().control;
        c.int_ctl = (c.int_ctl & !int_ctl::V_TPR_MASK) | (tpr & 0xf);
    }

    /// The APIC's TPR from V_TPR when L1 changed CR8 (MOV CR8 writes V_TPR
    /// without an exit): as KVM's `sync_cr8_to_lapic`.
    fn tpr_from_vmcb(&mut self) {
        let vtpr = self.cpu.vmcb.get().control.int_ctl & int_ctl::V_TPR_MASK;
        if let Some(a) = self.apic.as_mut() {
            if a.m.get(lapic::reg::TASKPRI) >> 4 != vtpr {
                a.m.set_tpr(vtpr << 4);
            }
        }
    }

    /// The vector the in-kernel APIC presents to L1, if any.
    pub(super) fn apic_pending(&self) -> Option<u8> {
        self.apic.as_ref().and_then(|a| a.m.pending_vector())
    }

    /// L1 takes vector `v` from its APIC (IRR -> ISR) and it is injected.
    pub(super) fn apic_inject(&mut self, v: u8) {
        if let Some(a) = self.apic.as_mut() {
            a.m.acknowledge(v);
            self.inject(Event::new(EventType::Intr, v, None));
            self.stats.bump(st_idx::IRQ_INJECTIONS);
        }
    }

    /// The APIC part of a RESET or INIT.
    pub(super) fn apic_reset(&mut self, init: bool) {
        if let Some(a) = self.apic.as_mut() {
            // RESET sets APIC_BASE.BSP and LINT0 from the boot CPU id; INIT
            // leaves both alone (the flag then changes nothing).
            let bsp = a.reset_bsp;
            a.m.reset(init, bsp);
            a.timer_dirty = true;
            a.dest_dirty = true;
            a.ipi = None;
            self.cpu.apic_base = a.m.base;
        }
    }

    /// Whether a halted vCPU has something to do (KVM's
    /// `kvm_vcpu_has_events`): an interrupt it can take, an NMI.
    fn apic_wakeup_due(&mut self) -> bool {
        if self.ev.nmi_pending {
            return true;
        }
        let extint = self.apic.as_ref().is_some_and(|a| a.extint);
        let intr = self.user_extint_takeable() || extint || self.apic_pending().is_some();
        intr && self.vmcb().save.rflags & rflags::IF != 0
    }

    /// SIPI to a vCPU waiting for it: real mode at vector << 12 (APM 16.5,
    /// KVM's `kvm_vcpu_deliver_sipi_vector`).
    fn apic_sipi(&mut self, vector: u8) {
        self.mark_untrusted();
        let v = self.vmcb();
        v.save.cs.selector = u16::from(vector) << 8;
        v.save.cs.base = u64::from(vector) << 12;
        v.save.rip = 0;
    }
}

impl Vcpu {
    /// Before an entry: moves what was posted to this vCPU's mailbox into
    /// its APIC (requested vectors, NMI, INIT, SIPI), runs the timer, and
    /// takes L1's CR8 changes into TPR.
    pub(super) fn apic_sync(&self, st: &mut VcpuState) {
        if st.apic.is_none() {
            return;
        }
        if st.nst.l2.is_none() {
            st.tpr_from_vmcb();
        }
        let mb = self.vm.apic.mailbox(self.id);
        // The mailbox only when something was posted, the clock (ktime and
        // TSC reads) only when the timer fired: most entries have neither
        // (a post racing with this check ends the entry at once,
        // `Mailbox::take`). An expiry is left to the host timer's post
        // (flag::TIMER), as KVM leaves it to its hrtimer: reading the clock
        // at every exit while a timer was armed (an L1 Linux's, nearly
        // always) cost about 170 instructions per exit (`make bench-l1
        // BENCH_PROFILE=1`, session 15).
        if mb.any_posted() {
            self.apic_take(st);
        }
        let api = self.vm.x2apic_api.load(core::sync::atomic::Ordering::Relaxed);
        if let Some(a) = st.apic.as_mut() {
            a.suppress_eoi = api & X2APIC_ENABLE_SUPPRESS_EOI_BROADCAST != 0;
            a.no_suppress = api & X2APIC_DISABLE_SUPPRESS_EOI_BROADCAST != 0;
        }
        self.apic_flush(st);
        self.apic_scan_routes(st);
        // Full irqchip: whether this vCPU takes the PIC's interrupt now
        // (KVM's kvm_cpu_has_extint), published for the PIC's kicks.
        if let Some(a) = st.apic.as_mut().filter(|a| a.full) {
            let acc = a.accepts_pic();
            mb.set_accepts_pic(acc);
            a.extint = acc && self.vm.pic_output.load(core::sync::atomic::Ordering::Acquire);
        }
    }

    /// `apic_sync`'s part for what was posted (requested vectors, NMI,
    /// INIT, SIPI, the timer's expiry).
    fn apic_take(&self, st: &mut VcpuState) {
        let mb = self.vm.apic.mailbox(self.id);
        let (irr, tmr, flags, sipi) = mb.take();
        let c = (flags & flag::TIMER != 0).then(|| st.apic_clock());
        let npt_root = st.npt01_root;
        if flags & flag::INIT != 0 {
            // INIT (APM 16.5): the processor's INIT state, the APIC's INIT
            // reset; an AP then waits for a SIPI, the BSP — APIC_BASE.BSP
            // as it is now (KVM's kvm_vcpu_is_bsp) — runs on.
            st.reset(npt_root, true);
            if let Some(a) = st.apic.as_mut() {
                a.mp = nsvm_core::bsp::mp_state_after_init(a.m.base);
            }
        }
        if flags & flag::NMI != 0 {
            st.ev.nmi_pending = true;
        }
        if flags & (flag::NMI | flag::INIT | flag::SIPI) != 0 {
            self.stats.log(nsvm_core::evlog::Kind::Flags, u64::from(flags), 0, 0);
        }
        let mut sipi_now = false;
        let Some(a) = st.apic.as_mut() else { return };
        for (i, w) in irr.iter().enumerate() {
            let mut w = *w;
            while w != 0 {
                let b = w.trailing_zeros();
                w &= w - 1;
                self.stats.log(nsvm_core::evlog::Kind::Accept, i as u64 * 64 + u64::from(b), u64::from(tmr[i] & (1 << b) != 0), 0);
                a.m.accept_fixed((i as u32 * 64 + b) as u8, tmr[i] & (1 << b) != 0, true);
            }
        }
        if flags & flag::SIPI != 0 && a.mp == mp::INIT_RECEIVED {
            a.mp = mp::RUNNABLE;
            sipi_now = true;
        }
        if let Some(c) = c.as_ref() {
            self.stats.log(nsvm_core::evlog::Kind::Timer, 1, 0, 0);
            if !a.m.timer_tick(c) && a.m.timer_expiry().is_some_and(|e| e > c.now_ns) {
                // The host timer came before the expiry the model has (it
                // was armed for an earlier one, since reprogrammed): armed
                // again for this one (`apic_flush`), never lost.
                a.armed = None;
            }
            a.timer_dirty = true;
        }
        if a.m.period_clamped {
            a.m.period_clamped = false;
            kernel::pr_info_once!("nsvm: vCPU {}: APIC timer period below 200 us raised to 200 us\n", self.id);
        }
        if sipi_now {
            st.apic_sipi(sipi);
        }
    }

    /// Recomputes which vectors' EOIs go to userspace's I/O APIC when the
    /// routes or this APIC's addressing changed (KVM's
    /// `kvm_scan_ioapic_routes`): level-triggered MSI routes of the
    /// reserved pins that address this APIC, and vectors of such routes
    /// still requested or in service here.
    fn apic_scan_routes(&self, st: &mut VcpuState) {
        let gen = self.vm.routes_gen.load(core::sync::atomic::Ordering::Acquire);
        let Some(a) = st.apic.as_mut() else { return };
        if a.routes_seen == gen {
            return;
        }
        let pins = self.vm.ioapic_pins.load(core::sync::atomic::Ordering::Relaxed);
        let fmt = self.vm.x2apic_format();
        let quirk = self.vm.apic.broadcast_quirk.load(core::sync::atomic::Ordering::Relaxed);
        let me = a.m.dest_info();
        let mut set = [0u64; 4];
        {
            let inner = self.vm.inner.lock();
            for r in inner.routes.iter().filter(|r| r.gsi < pins) {
                let i = r.irq(fmt);
                if i.trigger_level && (me.matches(i.dest, i.logical, false, quirk) || a.m.irr(i.vector) || a.m.isr(i.vector)) {
                    set[usize::from(i.vector >> 6)] |= 1 << (i.vector & 63);
                }
            }
        }
        a.ioapic_vectors = set;
        a.routes_seen = gen;
    }

    /// After an exit handled in the kernel: the EOI userspace's I/O APIC
    /// must see ends `KVM_RUN` with `KVM_EXIT_IOAPIC_EOI` (RIP past the EOI).
    pub(super) fn apic_eoi_exit(&self, st: &mut VcpuState) -> bool {
        match st.apic.as_mut().and_then(|a| a.eoi_exit.take()) {
            Some(vector) => {
                self.user_exit(UserExit::IoapicEoi { vector });
                true
            }
            None => false,
        }
    }

    /// After an exit or an ioctl: sends the IPI the guest wrote, publishes
    /// the APIC's addressing state, rearms the host timer. The test that
    /// nothing changed, which most exits stop at, is inlined (twice per
    /// exit: about 20 instructions of calls, `make bench BENCH_PROFILE=1`).
    #[inline]
    pub(super) fn apic_flush(&self, st: &mut VcpuState) {
        if st.apic.as_ref().is_some_and(|a| a.dest_dirty || a.timer_dirty || a.ipi.is_some() || a.eoi_ioapic.is_some()) {
            self.apic_flush_changes(st);
        }
    }

    fn apic_flush_changes(&self, st: &mut VcpuState) {
        // The clock only when the timer
        // changed (read once, below).
        let clock = match st.apic.as_ref() {
            Some(a) if !a.dest_dirty && !a.timer_dirty && a.ipi.is_none() && a.eoi_ioapic.is_none() => return,
            Some(a) if a.timer_dirty => Some(st.apic_clock()),
            Some(_) => None,
            None => return,
        };
        let Some(a) = st.apic.as_mut() else { return };
        let mb = self.vm.apic.mailbox(self.id);
        if a.dest_dirty {
            a.dest_dirty = false;
            mb.publish(a.m.dest_info());
            // The routes that address it may have changed.
            a.routes_seen = u64::MAX;
        }
        if a.timer_dirty {
            a.timer_dirty = false;
            // A deadline already passed fires here, not through the host
            // timer: an hrtimer armed in the past would only interrupt the
            // next entry with #VMEXIT(INTR) (KVM's start_sw_timer expires
            // such a timer at once too).
            if let (Some(c), Some(e)) = (clock.as_ref(), a.m.timer_expiry()) {
                if e <= c.now_ns {
                    self.stats.log(nsvm_core::evlog::Kind::Timer, 2, 0, 0);
                    a.m.timer_tick(c);
                }
            }
            let e = a.m.timer_expiry();
            if e != a.armed {
                match e {
                    Some(ns) => mb.waiter.timer_start(ns),
                    None => mb.waiter.timer_cancel(),
                }
                a.armed = e;
                mb.armed_ns.store(e.unwrap_or(0), core::sync::atomic::Ordering::Relaxed);
                mb.last_deadline[0].store(a.last_deadline.0, core::sync::atomic::Ordering::Relaxed);
                mb.last_deadline[1].store(a.last_deadline.1, core::sync::atomic::Ordering::Relaxed);
            }
        }
        if let Some(irq) = a.ipi.take() {
            let packed = u64::from(irq.vector) | (irq.mode as u64) << 8 | (irq.shorthand as u64) << 16 | u64::from(irq.logical) << 24;
            self.stats.log(nsvm_core::evlog::Kind::Ipi, packed, u64::from(irq.dest), 0);
            let _ = self.vm.apic.deliver(&irq, Some(self.id), &self.vm.guest_modes);
        }
        if let Some((v, level, suppressed)) = a.eoi_ioapic.take() {
            self.vm.ioapic_eoi(v, level, suppressed);
        }
    }

    /// Waits in the kernel while the vCPU cannot run (HLT, an AP waiting
    /// for INIT/SIPI) until an event arrives: `Some(result of KVM_RUN)`
    /// when a signal ends the wait (KVM_EXIT_INTR), `None` to run.
    pub(super) fn apic_block(&self, st: &mut VcpuState) -> Option<Result<isize>> {
        loop {
            let mpst = st.apic.as_ref()?.mp;
            if mpst == mp::RUNNABLE {
                return None;
            }
            if mpst == mp::UNINITIALIZED {
                // As KVM: an AP not yet started sleeps once, takes what
                // arrived (INIT), and KVM_RUN returns EAGAIN (or EINTR).
                let mb = self.vm.apic.mailbox(self.id);
                mb.waiting.store(2, core::sync::atomic::Ordering::Relaxed);
                mb.waiter.wait();
                mb.waiting.store(0, core::sync::atomic::Ordering::Relaxed);
                self.apic_sync(st);
                if hw::task::signal_pending() {
                    self.user_exit(UserExit::Intr);
                    self.stats.bump(st_idx::SIGNAL_EXITS);
                    return Some(Err(EINTR));
                }
                return Some(Err(EAGAIN));
            }
            if mpst == mp::HALTED && st.apic_wakeup_due() {
                if let Some(a) = st.apic.as_mut() {
                    a.mp = mp::RUNNABLE;
                    if let Some(t) = a.halted_since.take() {
                        self.stats.log(nsvm_core::evlog::Kind::Wake, hw::task::now_ns().saturating_sub(t), 0, 0);
                        self.stats.bump(st_idx::HALT_WAKEUPS);
                        self.stats.add(st_idx::HALT_WAIT_NS, hw::task::now_ns().saturating_sub(t));
                    }
                }
                return None;
            }
            if hw::task::signal_pending() {
                self.user_exit(UserExit::Intr);
                self.stats.bump(st_idx::SIGNAL_EXITS);
                return Some(Err(EINTR));
            }
            let mb = self.vm.apic.mailbox(self.id);
            mb.waiting.store(1, core::sync::atomic::Ordering::Relaxed);
            mb.waiter.wait();
            mb.waiting.store(0, core::sync::atomic::Ordering::Relaxed);
            self.apic_sync(st);
        }
    }

    /// HLT with an in-kernel APIC: the vCPU waits in the kernel
    /// (`apic_block` before the next entry), not in userspace.
    pub(super) fn apic_halt(&self, st: &mut VcpuState) {
        let (rip, rf) = (st.vmcb().save.rip, st.vmcb().save.rflags);
        self.stats.log(nsvm_core::evlog::Kind::Halt, rip, rf, 0);
        if let Some(a) = st.apic.as_mut() {
            a.mp = mp::HALTED;
            a.halted_since = Some(hw::task::now_ns());
        }
    }

    /// An access of L1 to the xAPIC page (APIC enabled in xAPIC mode):
    /// decoded and carried out on the APIC model (KVM's `apic_mmio_read`
    /// and `apic_mmio_write`). `None` if `gpa` is not on that page.
    pub(super) fn apic_mmio(&self, st: &mut VcpuState, inner: &VmMem<'_>, gpa: u64) -> Option<Result<Next>> {
        let m = &st.apic.as_ref()?.m;
        // The page stays the APIC's when it is disabled or in x2APIC mode:
        // reads all ones, writes ignored (KVM_X86_QUIRK_LAPIC_MMIO_HOLE, on
        // by default).
        let (base, decoded) = match m.mmio_base() {
            Some(b) => (b, true),
            None => (m.base & 0x000f_ffff_ffff_f000, false),
        };
        if st.nst.l2.is_some() || gpa & !0xfff != base {
            return None;
        }
        let off = (gpa & 0xfff) as u32;
        let mut bytes = [0u8; 15];
        let n = st.fetch(inner, &mut bytes);
        let cs = st.code_size();
        let rip = st.vmcb().save.rip;
        let acc = match mmio::decode(&bytes[..n], cs) {
            Ok(a) => a,
            Err(_) => return Some(Ok(self.user_exit(UserExit::emulation_failure(rip, &[gpa], &bytes, Some(n))))),
        };
        let c = st.apic_clock();
        let mut regs = st.all_gprs();
        let size = u32::from(acc.size);
        match acc.op {
            mmio::Op::Read { dst, ext } => {
                let v = match st.apic.as_mut() {
                    Some(_) if !decoded => u64::MAX,
                    Some(a) if off < 0x400 => a.m.mmio_read(off, size, &c),
                    _ => 0,
                };
                mmio::load_into(&mut regs, dst, ext, acc.size, v);
                st.set_all_gprs(&regs);
            }
            mmio::Op::WriteReg(_) | mmio::Op::WriteImm(_) => {
                let v = match acc.op {
                    mmio::Op::WriteReg(r) => mmio::store_value(&regs, r, acc.size),
                    mmio::Op::WriteImm(v) => v,
                    _ => 0,
                };
                if let Some(a) = st.apic.as_mut() {
                    if off < 0x400 && decoded {
                        let e = a.m.mmio_write(off, size, v as u32, &c);
                        if let Some(v) = e.eoi {
                            self.stats.log(nsvm_core::evlog::Kind::Eoi, u64::from(v), 0, 0);
                        }
                        a.note(e);
                    }
                }
                st.tpr_to_vmcb();
            }
        }
        let mut next = rip.wrapping_add(u64::from(acc.len));
        if cs != mmio::CodeSize::Bits64 {
            next &= 0xffff_ffff;
        }
        let v = st.vmcb();
        v.save.rip = next;
        v.control.int_state &= !nsvm_core::vmcb::int_state::SHADOW;
        Some(Ok(Next::Guest))
    }

    /// `KVM_GET_LAPIC`: `EINVAL` without an in-kernel APIC.
    pub(super) fn get_lapic(&self, arg: usize) -> Result<isize> {
        let page = {
            let mut st = self.state.lock();
            // Vectors delivered since the vCPU last ran are in IRR, as
            // KVM sets IRR at delivery (NMI, INIT and SIPI stay pending for
            // KVM_RUN, as KVM's pending events).
            if let Some(a) = st.apic.as_mut() {
                let (irr, tmr) = self.vm.apic.mailbox(self.id).take_vectors();
                for (i, w) in irr.iter().enumerate() {
                    let mut w = *w;
                    while w != 0 {
                        let b = w.trailing_zeros();
                        w &= w - 1;
                        a.m.accept_fixed((i as u32 * 64 + b) as u8, tmr[i] & (1 << b) != 0, true);
                    }
                }
            }
            let c = st.apic_clock();
            let x2fmt = self.vm.x2apic_api.load(core::sync::atomic::Ordering::Relaxed) & 1 != 0;
            match st.apic.as_ref() {
                Some(a) => KBox::new(a.m.get_state(&c, x2fmt), GFP_KERNEL)?,
                None => return Err(EINVAL),
            }
        };
        UserSlice::new(UserPtr::from_addr(arg), REG_SIZE).writer().write_slice(&page[..])?;
        Ok(0)
    }

    /// `KVM_SET_LAPIC`: `EINVAL` without an in-kernel APIC (before the
    /// copy, as KVM), `EFAULT`, `EINVAL` for a mismatched x2APIC ID with
    /// the x2APIC API format.
    pub(super) fn set_lapic(&self, arg: usize) -> Result<isize> {
        if self.state.lock().apic.is_none() {
            return Err(EINVAL);
        }
        let mut page = KBox::new([0u8; REG_SIZE], GFP_KERNEL)?;
        UserSlice::new(UserPtr::from_addr(arg), REG_SIZE).reader().read_slice(&mut page[..])?;
        let mut st = self.state.lock();
        let c = st.apic_clock();
        let x2fmt = self.vm.x2apic_api.load(core::sync::atomic::Ordering::Relaxed) & 1 != 0;
        let a = st.apic.as_mut().ok_or(EINVAL)?;
        a.m.set_state(&page, &c, x2fmt).map_err(|_| EINVAL)?;
        a.timer_dirty = true;
        a.dest_dirty = true;
        st.tpr_to_vmcb();
        self.apic_flush(&mut st);
        Ok(0)
    }

    /// `KVM_SET_VAPIC_ADDR` (`struct kvm_vapic_addr`: the guest-physical
    /// address of a TPR-shadow page), as KVM's order: `EINVAL` without an
    /// in-kernel APIC, then the struct copied (`EFAULT`). nsvm keeps no
    /// TPR shadow in guest memory (`KVM_CAP_VAPIC` is 0): address 0 (none,
    /// what QEMU sets at every APIC reset) is accepted, any other is
    /// `EINVAL` (docs/uapi.md).
    pub(super) fn set_vapic_addr(&self, arg: usize) -> Result<isize> {
        if self.state.lock().apic.is_none() {
            return Err(EINVAL);
        }
        let mut b = [0u8; 8];
        UserSlice::new(UserPtr::from_addr(arg), 8).reader().read_slice(&mut b)?;
        if u64::from_ne_bytes(b) != 0 {
            return Err(EINVAL);
        }
        Ok(0)
    }

    /// `KVM_GET_MP_STATE` (RUNNABLE without an in-kernel APIC, as KVM).
    /// An INIT or SIPI posted to the vCPU is taken first (KVM's
    /// `kvm_apic_accept_events` there): INIT resets it and leaves the BSP
    /// RUNNABLE, an AP INIT_RECEIVED.
    pub(super) fn get_mp_state(&self, arg: usize) -> Result<isize> {
        let s = {
            let mut st = self.state.lock();
            if st.apic.is_some() {
                self.apic_sync(&mut st);
            }
            st.apic.as_ref().map_or(mp::RUNNABLE, |a| a.mp)
        };
        UserSlice::new(UserPtr::from_addr(arg), 4).writer().write_slice(&s.to_ne_bytes())?;
        Ok(0)
    }

    /// `KVM_SET_MP_STATE`: without an in-kernel APIC only RUNNABLE
    /// (`EINVAL` otherwise, as KVM); unknown states are `EINVAL`.
    pub(super) fn set_mp_state(&self, arg: usize) -> Result<isize> {
        let mut b = [0u8; 4];
        UserSlice::new(UserPtr::from_addr(arg), 4).reader().read_slice(&mut b)?;
        let s = u32::from_ne_bytes(b);
        let mut st = self.state.lock();
        match st.apic.as_mut() {
            None if s == mp::RUNNABLE => Ok(0),
            None => Err(EINVAL),
            Some(a) => match s {
                mp::RUNNABLE | mp::UNINITIALIZED | mp::INIT_RECEIVED | mp::HALTED => {
                    a.mp = s;
                    Ok(0)
                }
                mp::SIPI_RECEIVED => {
                    // KVM: INIT_RECEIVED with the last SIPI pending again.
                    a.mp = mp::INIT_RECEIVED;
                    self.vm.apic.mailbox(self.id).repost_sipi();
                    Ok(0)
                }
                _ => Err(EINVAL),
            },
        }
    }
}
