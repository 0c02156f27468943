// SPDX-License-Identifier: GPL-2.0
//! A vCPU: the vCPU fd of the KVM UAPI. This file holds the vCPU object and
//! its state; each responsibility has its own room:
//!
//! - `uapi`      ioctl marshalling (registers, MSRs, CPUID, events, FPU)
//! - `run`       the `KVM_RUN` loop, the world-switch call, exits to userspace
//! - `exits`     L0's exit handlers (I/O, MMIO, NPF, CPUID, MSR, HLT, ...)
//! - `nested`    nested SVM: VMRUN emulation, vmcb02, reflection, NPT02 faults
//! - `events`    interrupts, NMIs, interrupt windows, injection
//! - `state`     architectural state views (VMCB, GPRs, EFER, reset, policy)
//! - `guest_mem` guest memory through the VM's slots (and NPT12 for L2)
//!
//! Exit handling follows KVM's semantics for userspace (KVM_EXIT_IO,
//! KVM_EXIT_HLT, KVM_EXIT_SHUTDOWN, ...), with the architectural rules of
//! APM vol. 2 chapter 15 for what the guest sees.

mod events;
mod exits;
mod guest_mem;
mod kvmclock;
mod l1_assist;
mod msr;
pub(crate) mod lapic;
mod nested;
mod nested_npt;
mod run;
mod state;
mod str_mmio;
mod sync_regs;
mod debug;
mod uapi;
mod xstate;

use kernel::prelude::*;

use nsvm_core::x86::Gpr;
use kernel::sync::{Arc, Mutex};
use kernel::new_mutex;

use core::sync::atomic::{AtomicU64, Ordering};

use nsvm_core::cpu_state::PendingEvents;
use nsvm_core::cpuid::SvmFeatures;
use nsvm_core::mmio;
use nsvm_core::paging;
use nsvm_core::stats;
use nsvm_core::tlb::VmcbAsid;
use nsvm_core::trace::Event as TraceEvent;

use crate::hw;
use crate::hw::mem::KPages;
use crate::hw::pin::PinnedPage;
use crate::hw::mem::VmcbPage;
use crate::npt::ShadowNpt;
use crate::vm::Vm;
use crate::vmrun::Gprs;

pub(crate) use run::Next;
pub(crate) use uapi::read_msr_entries;

/// One `struct kvm_cpuid_entry2`.
#[derive(Clone, Copy, Default)]
struct CpuidEntry {
    function: u32,
    index: u32,
    flags: u32,
    regs: [u32; 4],
}

/// State behind the vCPU lock, in four parts: the guest's CPU, the events
/// waiting for it, the exit to userspace being completed, nested SVM.
pub(crate) struct VcpuState {
    cpu: CpuState,
    /// Interrupts and NMIs not delivered yet.
    ev: PendingEvents,
    uexit: UserExitState,
    nst: NestedState,
    /// Root of the VM's NPT01 (fixed for the VM's life: `Npt::root`), so
    /// that building vmcb02 needs no lock for it.
    npt01_root: u64,
    stats: Arc<VcpuStats>,
    /// The in-kernel local APIC (split irqchip), if the VM has one.
    apic: Option<KBox<lapic::VApic>>,
    /// What the last entry saw when its VMCB came back with what no
    /// #VMEXIT writes (`VcpuState::enter`), until the run loop logs it.
    sighting: Option<nsvm_core::hoststate::Sighting>,
    /// EVENTINJ and NEXT_RIP of the VMCB at the last entry (the processor
    /// clears EVENTINJ): an exit that interrupted the delivery of that very
    /// event, a software interrupt or INT3/INTO included, delivers it again
    /// (`Vcpu::requeue_interrupted`).
    entry_event: (u32, u64),
}

/// The guest's architectural state: vmcb01 and what VMRUN does not switch.
struct CpuState {
    /// vmcb01: L0 runs L1 with it.
    vmcb: VmcbPage,
    /// The host's VMSAVE state around VMRUN.
    host_save: KPages,
    /// What of the vCPU stays loaded on the CPU between exits: the guest's
    /// FPU registers, the host's VMSAVE state (`hw::cpu::Loaded`; before
    /// `fpu`, so that it is dropped first).
    loaded: hw::cpu::Loaded,
    /// The guest's XSAVE image. While a `KVM_RUN` runs the guest, the
    /// registers may hold a newer state (`loaded`): read or write it through
    /// `VcpuState::guest_fpu_image`, which puts the registers back first.
    fpu: KPages,
    /// GPRs but RAX and RSP (those are in the VMCB).
    gprs: Gprs,
    /// EFER as the guest sees it; the VMCB copy always has SVME (APM 15.5.1).
    guest_efer: u64,
    /// The guest's XCR0.
    xcr0: u64,
    /// The guest's DR0-3 (in the processor only while it runs).
    db: [u64; 4],
    /// The guest's MTRRs (`nsvm_core::mtrr`).
    mtrr: nsvm_core::mtrr::Mtrrs,
    /// Machine-check banks and HWCR (`nsvm_core::mce`; 4 KiB: boxed).
    mce: KBox<nsvm_core::mce::Mce>,
    /// `KVM_SET_GUEST_DEBUG` in force (`debug.rs`).
    dbg: nsvm_core::guest_debug::GuestDebug,
    /// The guest's DR7 while the debugger's is in the VMCB.
    dbg_guest_dr7: u64,
    /// DR6 at the last entry (what a #DB then set, for `KVM_EXIT_DEBUG`).
    dbg_dr6: u64,
    apic_base: u64,
    tsc_aux: u64,
    /// The TSC generation (first value, host ns) of the vCPU's last
    /// matched offset (`nsvm_core::tsc::catchup`).
    tsc_gen: (u64, u64),
    /// kvmclock (`kvmclock.rs`).
    kvmclock: nsvm_core::kvmclock::VcpuClock,
    /// `KVM_CAP_ENFORCE_PV_FEATURE_CPUID` enabled: the kvmclock MSRs
    /// answer only when CPUID 0x40000001 EAX offers their feature.
    pv_enforce: bool,
    /// MSR_PLATFORM_INFO as userspace set it (0 at creation).
    platform_info: u64,
    /// POWER_CTL, UCODE_REV, DE_CFG, MISC_ENABLE (`msr.rs`).
    misc: nsvm_core::msr_misc::MiscMsrs,
    /// IA32_TSC_ADJUST (KVM's `ia32_tsc_adjust_msr`).
    tsc_adjust: u64,
    /// The vCPU entered the guest once (KVM's `last_vmentry_cpu != -1`).
    entered: bool,
    /// The table of `KVM_SET_CPUID2`.
    cpuid: KVec<CpuidEntry>,
    /// What the processor-dependent VMRUN and `KVM_SET_SREGS` rules allow
    /// (physical address width, CR4 and EFER bits): what both the host and
    /// the CPUID table offer, recomputed when the table is set.
    features: nsvm_core::checks::Features,
    /// What the VMCB entered last held of the state a VMRUN may overwrite
    /// (`VcpuState::enter` puts it back after a failed VMRUN).
    entry: nsvm_core::vmcb::EntryState,
    /// vmcb01's ([0]) and vmcb02's ([1]) state was set from outside the
    /// processor since its last successful entry (`run::enter` saves it
    /// before VMRUN).
    entry_untrusted: [bool; 2],
    /// The sensitive-instruction policy vmcb01's intercepts reflect (`None`
    /// after a reset rebuilt them), so entries rewrite them only on change.
    applied_policy: Option<nsvm_core::sensitive::Policy>,
    /// vmcb01's ([0]) and vmcb02's ([1]) ASID and pending flushes
    /// (`nsvm_core::tlb::VmcbAsid`, `vmrun::EntryTlb`).
    asids: [VmcbAsid; 2],
    /// The last instruction-fetch walk of L1 ([0]) and of L2 ([1])
    /// (`paging::WalkMemo`: exact, it re-reads the entries).
    fetch_walks: [paging::WalkMemo; 2],
}

/// The exit to userspace that the next `KVM_RUN` completes.
struct UserExitState {
    /// Port I/O, MMIO or string I/O that userspace completes: on the next
    /// `KVM_RUN` an IN's data is taken from the PIO page and RIP moves past
    /// the instruction (KVM advances RIP only then, so userspace sees RIP at
    /// the I/O instruction).
    pending: Option<Pending>,
    /// Guest physical address of every byte of a pending INS/OUTS.
    string_gpas: KVec<u64>,
    /// When the last exit was HLT: the time it happened (ns).
    halted_since: Option<u64>,
    /// A shutdown requested from outside (`KVM_X86_SET_MCE` during a
    /// machine check): the next `KVM_RUN` ends in `KVM_EXIT_SHUTDOWN`.
    triple_fault: bool,
}

/// NPT02s kept for other (nCR3, ASID) pairs than the current one
/// (`VcpuState::select_npt02`; KVM keeps as many previous roots).
pub(super) const NPT02_PREV: usize = 3;

/// Nested SVM (SVM offered to L1): L1's SVM state and, while L2 runs, the
/// VMCBs and shadow NPT02 that run it.
struct NestedState {
    /// vmcb02 (L0 runs L2 with it) and L1's vmcb12, copied once at VMRUN
    /// (never given to the processor).
    vmcb02: VmcbPage,
    vmcb12: VmcbPage,
    /// SVM offered to L1 (CPUID 0x80000001 ECX bit 2 in its table).
    svm_exposed: bool,
    /// vmcb12's page pinned (its address, the VM's memory generation then,
    /// the pin), kept while L1 VMRUNs the same VMCB, as KVM maps it: VMRUN
    /// reads and #VMEXIT writes it with plain copies, no user-copy or slot
    /// lookup per field.
    vmcb12_pin: Option<(u64, u64, PinnedPage)>,
    /// The SVM features L1 was offered: its CPUID 0x8000000A EDX limited
    /// to what nsvm implements (`cpuid::L1_FEATURES`); vmcb12 fields of
    /// the others are ignored, as the APM and KVM do.
    l1_features: SvmFeatures,
    /// vmcb12's ASID the vCPU's L2 ASID holds translations of (its last
    /// nested VMRUN), `None` when none is known.
    l2_asid12: Option<u32>,
    /// Shadow NPT02 for an L2 whose L1 enabled nested paging (boxed: the
    /// switches of `select_npt02` move pointers, not the tables' records).
    npt02: KBox<ShadowNpt>,
    /// NPT02s built for the last other (nCR3, ASID) pairs L1 ran an L2
    /// with, most recent first (`VcpuState::select_npt02`), kept while
    /// another is in use, as a processor's TLB keeps other ASIDs' entries.
    npt02_prev: [Option<KBox<ShadowNpt>>; NPT02_PREV],
    /// L1's VM_HSAVE_PA.
    hsave_pa: u64,
    /// L1's global interrupt flag as nsvm emulates it (APM 15.17); with
    /// the processor's vGIF it lives in vmcb01's V_GIF while L1 runs and
    /// is read back after each of L1's #VMEXITs (`nsvm_core::vgif`).
    gif: bool,
    /// An interrupt or NMI for L1 waits for its GIF (`prepare_interrupts`):
    /// with vGIF, L1's STGI is intercepted to deliver it.
    gif_waiting: bool,
    /// The GIF controls last written into vmcb01 (`gif01_prepare`).
    gif01: Option<nsvm_core::vgif::Gif01>,
    /// The pause filter's internal counter for the running L2 (APM
    /// 15.14.4), loaded at VMRUN.
    pause_count: i32,
    /// vNMI for L2 (APM 15.21.10): the RIP of L2's IRET that L0
    /// intercepted while V_NMI_MASK was set (the mask clears once L2 has
    /// moved past it), and while L0 single-steps that IRET for a pending
    /// virtual NMI, L2's own RFLAGS.TF and DR6 to put back.
    vnmi_iret_rip: Option<u64>,
    vnmi_step: Option<(u64, u64)>,
    /// L2's RIP at its last exit since it was entered (`None` before the
    /// first): the saved vmcb12's next_rip (`get_nested_state`).
    exit_rip: Option<u64>,
    /// While L2 runs: vmcb12's address and L1's RIP after its VMRUN.
    l2: Option<(u64, u64)>,
    /// L1's VMRUN was emulated but L2 not entered yet (vmcb02's EVENTINJ
    /// still holds vmcb12's event): KVM_STATE_NESTED_RUN_PENDING.
    run_pending: bool,
    /// Nested event log (`nsvm_core::trace`): a ring of LOG_LEN entries and
    /// how many were ever recorded.
    nlog: KVec<TraceEvent>,
    nlog_count: u64,
}

/// The vCPU's counters (`nsvm_core::stats` order), readable through the
/// stats fd while the vCPU runs.
pub(crate) struct VcpuStats {
    v: KVec<AtomicU64>,
    /// The event log (`nsvm_core::evlog`): `evlog::LEN` records of four
    /// words, written by the vCPU's thread only, read by debugfs at any
    /// time (a record being written may read torn: a debugging aid).
    log: KVec<AtomicU64>,
    /// Records written so far.
    log_n: AtomicU64,
    /// `event_log=2`: no more records (the guest took its first #GP or
    /// #DF; the log shows what led there).
    log_frozen: core::sync::atomic::AtomicBool,
    /// The vCPU's id (for the kernel-log copy of the log, `event_log=2`).
    id: u32,
}

/// Module parameter `event_log`: 1, vCPUs record their interrupt events
/// (`nsvm_core::evlog`); 2, every exit too, the log freezes at the guest's
/// first #GP or #DF (intercepted for this) and is copied to the kernel log
/// when the vCPU goes.
pub(crate) static EVENT_LOG: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

impl VcpuStats {
    fn new(id: u32) -> Result<Self> {
        let mut v = KVec::with_capacity(stats::VCPU_COUNT, GFP_KERNEL_ACCOUNT)?;
        for _ in 0..stats::VCPU_COUNT {
            v.push(AtomicU64::new(0), GFP_KERNEL_ACCOUNT)?;
        }
        let mut log = KVec::with_capacity(4 * nsvm_core::evlog::LEN, GFP_KERNEL_ACCOUNT)?;
        for _ in 0..4 * nsvm_core::evlog::LEN {
            log.push(AtomicU64::new(0), GFP_KERNEL_ACCOUNT)?;
        }
        Ok(Self { v, log, log_n: AtomicU64::new(0), log_frozen: core::sync::atomic::AtomicBool::new(false), id })
    }
    /// Records an event if the event log is on (`event_log=1`).
    #[inline]
    fn log(&self, kind: nsvm_core::evlog::Kind, a: u64, b: u64, c: u64) {
        if EVENT_LOG.load(Ordering::Relaxed) != 0 && !self.log_frozen.load(Ordering::Relaxed) {
            self.log_slow(nsvm_core::evlog::Record::new(kind, hw::task::now_ns(), a, b, c));
        }
    }
    /// `event_log=2`: no more records from now on.
    fn log_freeze(&self) {
        self.log_frozen.store(true, Ordering::Relaxed);
    }
    /// Records an event and, with `event_log=2`, prints it to the kernel
    /// log at once (rare events whose history the ring would lose).
    fn log_now(&self, kind: nsvm_core::evlog::Kind, a: u64, b: u64, c: u64) {
        self.log(kind, a, b, c);
        if EVENT_LOG.load(Ordering::Relaxed) >= 2 {
            let mut out = TextBuf(KVec::new());
            if nsvm_core::evlog::Record::new(kind, hw::task::now_ns(), a, b, c).write(&mut out).is_ok() {
                self.print_lines(&out.0);
            }
        }
    }
    /// Each line of `text` into the kernel log, tagged with the vCPU.
    fn print_lines(&self, text: &[u8]) {
        for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            pr_info!("nsvm evlog vcpu{}: {}\n", self.id, core::str::from_utf8(line).unwrap_or("?"));
        }
    }
    #[inline(never)]
    fn log_slow(&self, r: nsvm_core::evlog::Record) {
        let n = self.log_n.load(Ordering::Relaxed);
        let i = (n as usize % nsvm_core::evlog::LEN) * 4;
        for (k, w) in r.to_words().into_iter().enumerate() {
            if let Some(slot) = self.log.get(i + k) {
                slot.store(w, Ordering::Relaxed);
            }
        }
        self.log_n.store(n + 1, Ordering::Release);
    }
    /// The event log, oldest first, for the debugfs file.
    fn write_log(&self, out: &mut dyn core::fmt::Write) -> core::fmt::Result {
        let n = self.log_n.load(Ordering::Acquire);
        if n == 0 {
            return Ok(());
        }
        let len = nsvm_core::evlog::LEN as u64;
        let first = n.saturating_sub(len);
        writeln!(out, "\nevent log (the last {} of {} events, oldest first; time in s.us of CLOCK_MONOTONIC)", n - first, n)?;
        for seq in first..n {
            let i = (seq % len) as usize * 4;
            let w = [0, 1, 2, 3].map(|k| self.log.get(i + k).map_or(0, |a| a.load(Ordering::Relaxed)));
            if let Some(r) = nsvm_core::evlog::Record::from_words(w) {
                write!(out, "{seq:>8} ")?;
                r.write(out)?;
                writeln!(out)?;
            }
        }
        Ok(())
    }
    fn bump(&self, i: usize) {
        self.add(i, 1);
    }
    fn add(&self, i: usize, n: u64) {
        if let Some(c) = self.v.get(i) {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }
}

impl Drop for VcpuStats {
    fn drop(&mut self) {
        if EVENT_LOG.load(Ordering::Relaxed) < 2 {
            return;
        }
        let mut out = TextBuf(KVec::new());
        if self.write_log(&mut out).is_ok() {
            self.print_lines(&out.0);
        }
    }
}

/// An exit to userspace that the next `KVM_RUN` completes.
#[derive(Clone, Copy)]
enum Pending {
    /// Port I/O; `in_size` is the size of an IN (None for OUT).
    Io { next_rip: u64, in_size: Option<u8> },
    /// An MMIO load; `read` says where its data goes.
    Mmio { next_rip: u64, read: Option<(mmio::Reg, mmio::Extend, u8)> },
    /// INS/OUTS of `count` elements; the guest addresses are in `string_gpas`.
    StrIo { next_rip: u64, is_in: bool, rep: bool, count: u64, size: u8, amask: u64, idx: Gpr, df: bool },
    /// The MMIO read of an element of LODS or MOVS (`str_mmio.rs`): its
    /// data goes to rAX or to the destination, then the registers move.
    StrMmioRead(str_mmio::StrCtx),
    /// An MMIO write whose instruction (or string element) was completed
    /// before the exit, as KVM does: nothing left to do but, when `step`
    /// (the instruction finished), the single step a debugger waits for.
    Done { step: bool },
    /// `KVM_EXIT_X86_RDMSR/WRMSR`: `msr.error` and, for a read,
    /// `msr.data` complete the instruction (`msr.rs`).
    Msr { write: bool, next_rip: u64 },
}

/// One vCPU.
#[pin_data]
pub(crate) struct Vcpu {
    /// debugfs vmcb01 dump file; first field, so it is removed (waiting for
    /// readers) before anything it reads goes away.
    debugfs: hw::debugfs::DebugfsEntry,
    pub(crate) vm: Arc<Vm>,
    id: u32,
    /// `struct kvm_run` (mmap offset 0).
    run: KPages,
    /// PIO data (mmap offset `KVM_PIO_PAGE_OFFSET` pages). A separate order-0
    /// page: each mapped page needs its own reference count.
    pio: KPages,
    stats: Arc<VcpuStats>,
    #[pin]
    state: Mutex<VcpuState>,
}

impl Vcpu {
    /// `KVM_CREATE_VCPU`: a new vCPU fd; `reset_bsp`: its id is the VM's
    /// boot CPU id (`KVM_SET_BOOT_CPU_ID`), so it is the BSP after RESET.
    pub(crate) fn create(vm: Arc<Vm>, id: u32, reset_bsp: bool) -> Result<isize> {
        let stats = Arc::new(VcpuStats::new(id)?, GFP_KERNEL_ACCOUNT)?;
        let fpu = KPages::page()?;
        let loaded = hw::cpu::Loaded::new(&fpu)?;
        let mut st = VcpuState {
            cpu: CpuState {
                vmcb: VmcbPage::new()?,
                host_save: KPages::page()?,
                fpu,
                loaded,
                gprs: Gprs::default(),
                guest_efer: 0,
                xcr0: 1,
                db: [0; 4],
                mtrr: nsvm_core::mtrr::Mtrrs::default(),
                mce: KBox::new(nsvm_core::mce::Mce::default(), GFP_KERNEL_ACCOUNT)?,
                dbg: nsvm_core::guest_debug::GuestDebug::default(),
                dbg_guest_dr7: 0,
                dbg_dr6: 0,
                apic_base: nsvm_core::msr::apic_base::reset_value(reset_bsp),
                tsc_aux: 0,
                tsc_gen: (0, 0),
                kvmclock: nsvm_core::kvmclock::VcpuClock::default(),
                pv_enforce: false,
                platform_info: 0,
                misc: nsvm_core::msr_misc::MiscMsrs::default(),
                tsc_adjust: 0,
                entered: false,
                cpuid: KVec::new(),
                features: state::vcpu_features(&[]),
                entry: nsvm_core::vmcb::EntryState::ZERO,
                entry_untrusted: [true; 2],
                applied_policy: None,
                fetch_walks: Default::default(),
                asids: [VmcbAsid::new(); 2],
            },
            ev: PendingEvents::NONE,
            uexit: UserExitState { pending: None, string_gpas: KVec::new(), halted_since: None, triple_fault: false },
            nst: NestedState {
                vmcb02: VmcbPage::new()?,
                vmcb12: VmcbPage::new()?,
                svm_exposed: false,
                vmcb12_pin: None,
                l1_features: SvmFeatures::empty(),
                l2_asid12: None,
                npt02: KBox::new(ShadowNpt::new()?, GFP_KERNEL_ACCOUNT)?,
                npt02_prev: Default::default(),
                hsave_pa: 0,
                gif: true,
                gif_waiting: false,
                gif01: None,
                pause_count: 0,
                vnmi_iret_rip: None,
                vnmi_step: None,
                exit_rip: None,
                l2: None,
                run_pending: false,
                nlog: KVec::from_elem(TraceEvent::Empty, nsvm_core::trace::LOG_LEN, GFP_KERNEL_ACCOUNT)?,
                nlog_count: 0,
            },
            npt01_root: vm.mmu.lock().npt.root_pa(),
            stats: stats.clone(),
            apic: None,
            sighting: None,
            entry_event: (0, 0),
        };
        if vm.irqchip_in_kernel() {
            // The APIC timer calls back with the VM (fops.rs): the waiter
            // lives in the VM's bus, freed with the VM.
            vm.apic.mailbox(id).waiter.init(Arc::as_ptr(&vm).cast(), id)?;
            st.apic = Some(KBox::new(lapic::VApic::new(id, vm.irqchip_full(), reset_bsp), GFP_KERNEL_ACCOUNT)?);
        }
        let npt_root = st.npt01_root;
        st.reset(npt_root, false);
        // TSC 0 at creation, matched with the other vCPUs' (KVM's
        // kvm_synchronize_tsc at vCPU creation; `nsvm_core::tsc`).
        let (tsc_offset, tsc_gen) = vm.tsc_write(0, false);
        st.cpu.vmcb.get().control.tsc_offset = tsc_offset;
        st.cpu.tsc_gen = tsc_gen;
        if let Some(a) = st.apic.as_mut() {
            a.publish_new(vm.apic.mailbox(id));
            vm.apic.attach(id);
        }
        let vcpu = Arc::pin_init(
            try_pin_init!(Vcpu { debugfs: hw::debugfs::DebugfsEntry::empty(), vm, id, run: KPages::page()?, pio: KPages::page()?, stats, state <- new_mutex!(st, "nsvm_vcpu") }),
            GFP_KERNEL_ACCOUNT,
        )?;
        // "vcpu<id>", the id in decimal (up to 4 digits: ids are below 4096).
        let mut name = *b"vcpu\0\0\0\0\0\0";
        let mut digits = [0u8; 10];
        let (mut d, mut v) = (digits.len(), id);
        loop {
            d -= 1;
            digits[d] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        let mut k = 4;
        for &c in &digits[d..] {
            if k < name.len() {
                name[k] = c;
                k += 1;
            }
        }
        // SAFETY: the file is the vCPU's first field, removed before the rest
        // of the vCPU is dropped.
        unsafe { vcpu.debugfs.make_vmcb_file(&name[..k], &vcpu.vm.debugfs, Arc::as_ptr(&vcpu).cast()) };
        Ok(hw::files::new_fd(vcpu)? as isize)
    }

    /// The page behind offset `pgoff` of the vCPU mmap.
    pub(crate) fn mmap_page(&self, pgoff: usize) -> Option<*mut kernel::ffi::c_void> {
        match pgoff as u64 {
            0 => self.run.struct_page(0),
            nsvm_core::user_exit::run::PIO_PAGE_OFFSET => self.pio.struct_page(0),
            nsvm_core::coalesced::PAGE_OFFSET => self.vm.coalesced_ring.struct_page(0),
            _ => None,
        }
    }

    /// The binary stats file (KVM's format) with the current values.
    pub(crate) fn stats_file(&self) -> Result<KVec<u8>> {
        let mut vals = KVec::with_capacity(stats::VCPU_COUNT, GFP_KERNEL)?;
        for c in self.stats.v.iter() {
            vals.push(c.load(Ordering::Relaxed), GFP_KERNEL)?;
        }
        let mut id = [0u8; 24];
        let n = crate::vm::fmt_id(&mut id, self.vm.pid, Some(self.id));
        let mut f = KVec::from_elem(0u8, stats::file_len(vals.len()), GFP_KERNEL)?;
        stats::write_file(&mut f, core::str::from_utf8(&id[..n]).unwrap_or("kvm"), stats::vcpu_desc, &vals);
        Ok(f)
    }

    /// The text of the debugfs vmcb01 dump, or a note while the vCPU runs
    /// (its VMCB belongs to the processor then).
    pub(crate) fn vmcb_dump(&self) -> Result<KVec<u8>> {
        let mut out = TextBuf(KVec::new());
        match self.state.try_lock() {
            Some(mut st) => {
                let _ = core::fmt::Write::write_fmt(&mut out, format_args!("vmcb01 of vCPU {} (stopped in userspace)\n", self.id));
                let _ = nsvm_core::vmcb::dump(st.cpu.vmcb.get(), &mut out);
                if let Some((pa, _)) = st.nst.l2 {
                    let _ = core::fmt::Write::write_fmt(&mut out, format_args!("\nvmcb12 at {:#x} (L0's checked copy, as of VMRUN)\n", pa));
                    let _ = nsvm_core::vmcb::dump(st.nst.vmcb12.get(), &mut out);
                    let _ = core::fmt::Write::write_str(&mut out, "\nvmcb02 (what L0 runs L2 with)\n");
                    let _ = nsvm_core::vmcb::dump(st.nst.vmcb02.get(), &mut out);
                    let _ = core::fmt::Write::write_str(&mut out, "\nvmcb12 -> vmcb02 (what the merge and L2's run changed)\n");
                    let s = &mut *st;
                    let _ = nsvm_core::vmcb::diff(s.nst.vmcb12.get(), s.nst.vmcb02.get(), &mut out);
                }
            }
            None => {
                let _ = core::fmt::Write::write_str(&mut out, "vCPU is in KVM_RUN: read again while it is stopped in userspace\n");
                // What can be read without its lock: its APIC's mailbox and timer.
                let _ = self.vm.apic.mailbox(self.id).dump(&mut out, hw::task::now_ns());
            }
        }
        let _ = self.stats.write_log(&mut out);
        if let Some(st) = self.state.try_lock() {
            if st.nst.nlog_count != 0 {
                let _ = core::fmt::Write::write_fmt(
                    &mut out,
                    format_args!("\nnested events (the last {} of {}, oldest first; KVM tracepoint formats)\n", st.nst.nlog.len().min(st.nst.nlog_count as usize), st.nst.nlog_count),
                );
                for (seq, e) in nsvm_core::trace::in_order(&st.nst.nlog, st.nst.nlog_count) {
                    let _ = core::fmt::Write::write_fmt(&mut out, format_args!("{seq:>8} "));
                    let _ = nsvm_core::trace::write_line(&mut out, self.id, e);
                }
            }
        }
        Ok(out.0)
    }
}

/// A growable text buffer for `core::fmt`.
struct TextBuf(KVec<u8>);

impl core::fmt::Write for TextBuf {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.0.extend_from_slice(s.as_bytes(), GFP_KERNEL).map_err(|_| core::fmt::Error)
    }
}
