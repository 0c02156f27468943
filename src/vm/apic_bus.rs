// SPDX-License-Identifier: GPL-2.0
//! The APIC bus of a VM with in-kernel local APICs (split irqchip): one
//! mailbox per vCPU id that senders (other vCPUs' IPIs, MSIs, the APIC
//! timer) post to without the target's lock, as KVM sets IRR bits
//! atomically; the target moves what was posted into its APIC model
//! (`vcpu/lapic.rs`) before each entry. Each mailbox also publishes its
//! APIC's addressing state (`lapic::DestInfo`) so that destinations are
//! matched without the target's lock, as KVM's APIC map does.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use nsvm_core::lapic::{DeliveryMode, DestInfo, Irq, Shorthand};

use kernel::prelude::*;

use crate::hw::apic::WaiterSlot;
use crate::hw::idtable::IdTable;
use crate::vmrun::GuestMode;

/// Mailbox flags.
pub(crate) mod flag {
    pub(crate) const NMI: u32 = 1;
    pub(crate) const INIT: u32 = 2;
    pub(crate) const SIPI: u32 = 4;
    pub(crate) const TIMER: u32 = 8;
    pub(crate) const SMI: u32 = 16;
    /// The PIC's output rose (full irqchip): look at it.
    pub(crate) const EXTINT: u32 = 32;
}

/// What was posted to one vCPU's APIC.
pub(crate) struct Mailbox {
    /// Requested vectors and their trigger mode (set: level).
    irr: [AtomicU64; 4],
    tmr: [AtomicU64; 4],
    flags: AtomicU32,
    sipi_vector: AtomicU32,
    /// Non-zero once anything was posted since the last `take` (set after
    /// the event itself): what `vmrun::enter` reads in guest mode, so that
    /// an event posted between the target's `take` and its VMRUN (the
    /// poster then saw it outside guest mode and sent no IPI) still ends
    /// that entry at once.
    posted: AtomicU32,
    /// `DestInfo::pack` of the APIC (hw_enabled clear: no APIC there yet).
    dest: [AtomicU64; 2],
    /// A vCPU with an in-kernel APIC has this id.
    present: AtomicBool,
    /// Its APIC takes the PIC's interrupts (KVM's
    /// `kvm_apic_accept_pic_intr`: LVT0 unmasked in ExtINT mode, or the
    /// APIC hardware-disabled), published before each entry.
    accepts_pic: AtomicBool,
    pub(crate) waiter: WaiterSlot,
    /// For dumps while the vCPU runs (its lock held): the expiry the host
    /// timer was last armed for (0: cancelled), the timer callbacks, and
    /// whether the vCPU waits (1: halted, 2: waiting for INIT/SIPI).
    pub(crate) armed_ns: AtomicU64,
    pub(crate) timer_fires: AtomicU64,
    pub(crate) waiting: AtomicU32,
    /// The last TSC-deadline write: (deadline, guest TSC then).
    pub(crate) last_deadline: [AtomicU64; 2],
}

impl Mailbox {
    const fn new() -> Self {
        Self {
            irr: [const { AtomicU64::new(0) }; 4],
            tmr: [const { AtomicU64::new(0) }; 4],
            flags: AtomicU32::new(0),
            sipi_vector: AtomicU32::new(0),
            posted: AtomicU32::new(0),
            dest: [const { AtomicU64::new(0) }; 2],
            present: AtomicBool::new(false),
            accepts_pic: AtomicBool::new(false),
            waiter: WaiterSlot::new(),
            armed_ns: AtomicU64::new(0),
            timer_fires: AtomicU64::new(0),
            waiting: AtomicU32::new(0),
            last_deadline: [const { AtomicU64::new(0) }; 2],
        }
    }

    /// Takes everything posted: (IRR bits, TMR bits, flags, SIPI vector).
    pub(crate) fn take(&self) -> ([u64; 4], [u64; 4], u32, u8) {
        let mut irr = [0u64; 4];
        let mut tmr = [0u64; 4];
        // Cleared first: a post from now on sets it again. Every post sets
        // it after its event, so when it was clear nothing was posted since
        // the last take, or a post is under way whose `posted` store (still
        // to come) ends the next entry at once (`vmrun::enter`) and is taken
        // then: the most common case costs one atomic.
        if self.posted.swap(0, Ordering::SeqCst) == 0 {
            return (irr, tmr, 0, 0);
        }
        let flags = self.flags.swap(0, Ordering::AcqRel);
        for i in 0..4 {
            irr[i] = self.irr[i].swap(0, Ordering::AcqRel);
            tmr[i] = self.tmr[i].load(Ordering::Acquire) & irr[i];
        }
        (irr, tmr, flags, self.sipi_vector.load(Ordering::Acquire) as u8)
    }

    /// Takes only the requested vectors: (IRR bits, TMR bits). Flags stay
    /// posted (and `posted` set) for the next `take`, which finds these
    /// vectors gone.
    pub(crate) fn take_vectors(&self) -> ([u64; 4], [u64; 4]) {
        let mut irr = [0u64; 4];
        let mut tmr = [0u64; 4];
        if self.posted.load(Ordering::SeqCst) == 0 {
            return (irr, tmr);
        }
        for i in 0..4 {
            irr[i] = self.irr[i].swap(0, Ordering::AcqRel);
            tmr[i] = self.tmr[i].load(Ordering::Acquire) & irr[i];
        }
        (irr, tmr)
    }

    /// A one-line summary of what is posted and of the timer, readable
    /// while the vCPU holds its lock (debugfs).
    pub(crate) fn dump(&self, out: &mut dyn core::fmt::Write, now_ns: u64) -> core::fmt::Result {
        let irr = [0, 1, 2, 3].map(|i| self.irr[i].load(Ordering::Relaxed));
        write!(
            out,
            "mailbox: posted {} flags {:#x} irr {:x?} waiting {}; timer armed for {} (now {}), {} callbacks",
            self.posted.load(Ordering::Relaxed),
            self.flags.load(Ordering::Relaxed),
            irr,
            self.waiting.load(Ordering::Relaxed),
            self.armed_ns.load(Ordering::Relaxed),
            now_ns,
            self.timer_fires.load(Ordering::Relaxed)
        )?;
        write!(
            out,
            "; last TSC deadline {} written at guest TSC {} (+{})",
            self.last_deadline[0].load(Ordering::Relaxed),
            self.last_deadline[1].load(Ordering::Relaxed),
            self.last_deadline[0].load(Ordering::Relaxed).wrapping_sub(self.last_deadline[1].load(Ordering::Relaxed)) as i64
        )?;
        if let Some((queued, exp, ev)) = self.waiter.debug() {
            write!(out, "; hrtimer queued {queued} expires {exp}, waiter event {ev}")?;
        }
        writeln!(out)
    }

    /// Whether anything was posted since the last `take` (see `take`).
    pub(crate) fn any_posted(&self) -> bool {
        self.posted.load(Ordering::SeqCst) != 0
    }

    /// Posts the last SIPI again (`KVM_SET_MP_STATE(SIPI_RECEIVED)`).
    pub(crate) fn repost_sipi(&self) {
        self.post_flag(flag::SIPI);
    }

    /// Publishes whether the APIC takes the PIC's interrupts.
    pub(crate) fn set_accepts_pic(&self, on: bool) {
        if self.accepts_pic.load(Ordering::Relaxed) != on {
            self.accepts_pic.store(on, Ordering::Release);
        }
    }

    /// Publishes the APIC's addressing state.
    pub(crate) fn publish(&self, d: DestInfo) {
        let (a, b) = d.pack();
        self.dest[0].store(a, Ordering::Release);
        self.dest[1].store(b, Ordering::Release);
    }

    fn dest_info(&self) -> DestInfo {
        DestInfo::unpack(self.dest[0].load(Ordering::Acquire), self.dest[1].load(Ordering::Acquire))
    }

    /// The word `vmrun::enter` checks in guest mode (`posted`).
    pub(crate) fn posted(&self) -> &AtomicU32 {
        &self.posted
    }

    fn post_flag(&self, f: u32) {
        self.flags.fetch_or(f, Ordering::AcqRel);
        self.posted.store(1, Ordering::SeqCst);
    }

    fn post_vector(&self, v: u8, level: bool) {
        let (i, b) = (usize::from(v >> 6), 1u64 << (v & 63));
        if level {
            self.tmr[i].fetch_or(b, Ordering::AcqRel);
        } else {
            self.tmr[i].fetch_and(!b, Ordering::AcqRel);
        }
        self.irr[i].fetch_or(b, Ordering::AcqRel);
        self.posted.store(1, Ordering::SeqCst);
    }
}

/// The mailboxes of a VM's vCPUs, by id (a chunk of them allocated with
/// the first vCPU of its range: `hw::idtable`).
pub(crate) struct ApicBus {
    boxes: IdTable<Mailbox>,
    /// KVM_CAP_X2APIC_API's broadcast quirk is on (the default).
    pub(crate) broadcast_quirk: AtomicBool,
}

/// What `ApicBus::mailbox` answers for an id without a mailbox (never
/// asked by a vCPU: its chunk exists before it does): posts to it are lost.
static NO_MAILBOX: Mailbox = Mailbox::new();

impl ApicBus {
    pub(crate) const fn new() -> Self {
        Self { boxes: IdTable::new(), broadcast_quirk: AtomicBool::new(true) }
    }

    /// Allocates the mailbox of vCPU `id` and the guest-mode word in
    /// `modes` (before the vCPU exists; `EINVAL` beyond the id limit).
    pub(crate) fn prepare(&self, id: u32, modes: &IdTable<GuestMode>) -> Result {
        self.boxes.ensure(id, Mailbox::new)?;
        modes.ensure(id, GuestMode::new)
    }

    /// Mailbox of vCPU `id`.
    pub(crate) fn mailbox(&self, id: u32) -> &Mailbox {
        self.boxes.get(id).unwrap_or(&NO_MAILBOX)
    }

    /// Marks vCPU `id` as having an in-kernel APIC.
    pub(crate) fn attach(&self, id: u32) {
        if let Some(m) = self.boxes.get(id) {
            m.present.store(true, Ordering::Release);
        }
    }

    /// The mailboxes of vCPUs with an in-kernel APIC, with their ids.
    fn present(&self) -> impl Iterator<Item = (u32, &Mailbox)> + '_ {
        self.boxes.iter().filter(|(_, m)| m.present.load(Ordering::Acquire))
    }

    /// Whether some vCPU's APIC takes the PIC's interrupts.
    pub(crate) fn any_accepts_pic(&self) -> bool {
        self.present().any(|(_, m)| m.accepts_pic.load(Ordering::Acquire))
    }

    /// The PIC's output rose: the vCPUs that take its interrupts look
    /// (KVM's `pic_unlock` kick).
    pub(crate) fn kick_extint(&self, modes: &IdTable<GuestMode>) {
        for (id, m) in self.present() {
            if m.accepts_pic.load(Ordering::Acquire) {
                m.post_flag(flag::EXTINT);
                m.waiter.wake();
                if let Some(mode) = modes.get(id) {
                    mode.poke();
                }
            }
        }
    }

    /// The APIC timer of vCPU `id` expired (hardirq context).
    pub(crate) fn timer_fired(&self, id: u32, mode: &GuestMode) {
        let Some(m) = self.boxes.get(id) else { return };
        m.timer_fires.fetch_add(1, Ordering::Relaxed);
        m.post_flag(flag::TIMER);
        m.waiter.wake();
        mode.poke();
    }

    /// Whether `irq` from vCPU `src` addresses the APIC `m` of vCPU `id`:
    /// (it matches, it is a target: fixed interrupts only reach
    /// software-enabled APICs).
    fn addresses(irq: &Irq, src: Option<u32>, quirk: bool, id: u32, m: &Mailbox) -> (bool, bool) {
        let hit = match irq.shorthand {
            Shorthand::SelfOnly => src == Some(id),
            Shorthand::AllIncludingSelf => true,
            Shorthand::AllExcludingSelf => src != Some(id),
            Shorthand::None => m.dest_info().matches(irq.dest, irq.logical, irq.ipi, quirk),
        };
        let fixed = matches!(irq.mode, DeliveryMode::Fixed | DeliveryMode::LowestPriority);
        (hit, hit && (!fixed || m.dest_info().sw_enabled))
    }

    /// Posts `irq` to `m` (vCPU `id`), wakes and kicks it; whether it was
    /// accepted (counted).
    fn post(irq: &Irq, id: u32, m: &Mailbox, modes: &IdTable<GuestMode>) -> bool {
        match irq.mode {
            DeliveryMode::Fixed | DeliveryMode::LowestPriority => {
                // A level-triggered de-assert does nothing (KVM).
                if irq.trigger_level && !irq.level {
                    return false;
                }
                m.post_vector(irq.vector, irq.trigger_level);
            }
            DeliveryMode::Nmi => m.post_flag(flag::NMI),
            DeliveryMode::Smi => m.post_flag(flag::SMI),
            DeliveryMode::Init => {
                // INIT level de-assert is ignored (KVM, APM 16.5).
                if irq.trigger_level && !irq.level {
                    return false;
                }
                m.post_flag(flag::INIT);
            }
            DeliveryMode::Startup => {
                m.sipi_vector.store(u32::from(irq.vector), Ordering::Release);
                m.post_flag(flag::SIPI);
            }
            // Remote read and ExtINT are not delivered through the bus.
            DeliveryMode::RemoteRead | DeliveryMode::ExtInt => return false,
        }
        m.waiter.wake();
        if let Some(mode) = modes.get(id) {
            mode.poke();
        }
        true
    }

    /// Delivers `irq` from vCPU `src` (None: an MSI) to every APIC it
    /// addresses (APM 16.5/16.6; KVM's `kvm_irq_delivery_to_apic`):
    /// fixed and NMI/INIT/SIPI to each match, lowest priority to one of
    /// them chosen by vector (KVM's vector hashing). Returns what KVM's
    /// `kvm_irq_delivery_to_apic` does: how many APICs accepted it (a
    /// software-disabled APIC drops fixed interrupts), -1 when a broadcast
    /// or lowest-priority interrupt found no APIC at all.
    /// `modes` kicks targets out of guest mode.
    ///
    /// No set of targets is kept (with up to 4096 vCPU ids it would be a
    /// bitmap too big for the stack of the contexts that deliver: hardirq,
    /// an eventfd's wait-queue lock): each target is posted as it is found;
    /// a lowest-priority interrupt counts the targets in a first pass and
    /// posts to the chosen one in a second.
    pub(crate) fn deliver(&self, irq: &Irq, src: Option<u32>, modes: &IdTable<GuestMode>) -> i32 {
        // KVM's rule (`kvm_irq_delivery_to_apic`): lowest priority to the
        // physical broadcast 0xff is delivered as fixed, to every target.
        let fixed_bcast;
        let irq = if irq.mode == DeliveryMode::LowestPriority && !irq.logical && irq.dest == 0xff {
            fixed_bcast = Irq { mode: DeliveryMode::Fixed, ..*irq };
            &fixed_bcast
        } else {
            irq
        };
        let quirk = self.broadcast_quirk.load(Ordering::Relaxed);
        let one_of = irq.mode == DeliveryMode::LowestPriority && irq.shorthand == Shorthand::None;
        let mut matched = false;
        let mut targets = 0u32;
        let mut count = 0;
        if one_of {
            // (Lowest priority never counts as a match by itself: `matched`
            // stays false.)
            for (id, m) in self.present() {
                targets += u32::from(Self::addresses(irq, src, quirk, id, m).1);
            }
            if targets > 0 {
                // The n-th target in id order; if targets changed since
                // the count (a racing APIC change, as KVM's map read under
                // RCU may be old), the last one found.
                let n = u32::from(irq.vector) % targets;
                let mut seen = 0u32;
                let mut last = None;
                for (id, m) in self.present() {
                    if Self::addresses(irq, src, quirk, id, m).1 {
                        last = Some((id, m));
                        if seen == n {
                            break;
                        }
                        seen += 1;
                    }
                }
                if let Some((id, m)) = last {
                    count += i32::from(Self::post(irq, id, m, modes));
                }
            }
        } else {
            for (id, m) in self.present() {
                let (hit, target) = Self::addresses(irq, src, quirk, id, m);
                matched |= hit && irq.mode != DeliveryMode::LowestPriority;
                if target {
                    targets += 1;
                    count += i32::from(Self::post(irq, id, m, modes));
                }
            }
        }
        if !matched && targets == 0 {
            // KVM's fast path (its APIC map) answers 0 for a unicast
            // destination nobody has; only the slow path (broadcasts,
            // lowest priority) answers -1.
            let bcast = irq.dest == 0xff || irq.dest == 0xffff_ffff || irq.shorthand != Shorthand::None;
            return if bcast || irq.mode == DeliveryMode::LowestPriority { -1 } else { 0 };
        }
        count
    }
}
