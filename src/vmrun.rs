// SPDX-License-Identifier: GPL-2.0
//! Leaf module: the world switch and the FPU/XCR0 instructions around it.
//!
//! APM vol. 2: 15.5 (VMRUN), 15.6 (#VMEXIT), 15.5.2 (VMSAVE/VMLOAD: FS, GS,
//! TR, LDTR with hidden state, KernelGsBase, STAR/LSTAR/CSTAR/SFMASK,
//! SYSENTER_*), 15.17 (GIF: CLGI/STGI).

use core::arch::asm;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use nsvm_core::hoststate::{self, Hsave, Sign};
use nsvm_core::tlb::{AsidEntry, CpuAsids, VmcbAsid};
use nsvm_core::vmcb::{tlb_control, EntryState};

use crate::hw;
use crate::hw::cpu::{FpuLoad, FpuSection, Loaded};
use crate::hw::mem::KPages;
use crate::hw::mem::VmcbPage;

/// Guest GPRs that VMRUN does not switch (RAX and RSP live in the VMCB;
/// their slots here are unused).
pub(crate) use nsvm_core::x86::Gprs;

/// Whether every entry flushes the whole TLB (module parameter
/// `flush_every_entry`, default off). Off, an entry flushes only what
/// `nsvm_core::tlb::VmcbAsid::prepare` says: each VMCB runs on its own ASID
/// per CPU, flushed (by ASID, or by taking a new one) when something it
/// may have cached was invalidated. On, every VMRUN flushes the whole TLB
/// as well (a safety net, and the setting the figures before per-vCPU ASIDs
/// were measured with).
pub(crate) static FLUSH_EVERY_ENTRY: AtomicBool = AtomicBool::new(false);

/// Module parameter `exit_after_injection` (on by default when the processor
/// lacks NRIPS, i.e. under QEMU's TCG): an entry whose EVENTINJ holds an
/// external interrupt leaves a self-IPI pending (GIF is clear), so that the
/// guest takes #VMEXIT(INTR) right after the interrupt's delivery, before its
/// handler's first instruction. QEMU's VMRUN (target/i386/tcg/system/
/// svm_helper.c, `helper_vmrun`, EVENTINJ type INTR) delivers the interrupt
/// at once but leaves its vector in `exception_index`; an exit request that
/// reaches the emulated CPU before anything else overwrites it (round-robin
/// TCG's kick, a `tb_flush`) makes `cpu_handle_exception` deliver the vector a
/// second time, with IF already clear and from the handler's first
/// instruction: an interrupt from user mode then runs its handler without
/// SWAPGS (the frame says kernel), and Linux oopses or deadlocks
/// (docs/architecture.md). The #VMEXIT overwrites `exception_index`. Real
/// processors need none of it; the cost is one #VMEXIT(INTR) per injected
/// interrupt, except where the caller gave the interrupt to the guest as its
/// virtual interrupt instead (`nsvm_core::event::VirqInjection`, which TCG
/// delivers without the defect; `VcpuState::enter`): EVENTINJ is empty then.
pub(crate) static EXIT_AFTER_INJECTION: AtomicBool = AtomicBool::new(false);

/// The processor's ASID count (CPUID 0x8000000A EBX) and whether it offers
/// flush-by-ASID (EDX bit 6), set at load (`set_asid_features`).
static NASID: AtomicU32 = AtomicU32::new(2);
static FLUSH_BY_ASID: AtomicBool = AtomicBool::new(false);

/// Records the ASID count and flush-by-ASID of the processor (its SVM leaf).
pub(crate) fn set_asid_features(nasid: u32, flush_by_asid: bool) {
    NASID.store(nasid, Ordering::Relaxed);
    FLUSH_BY_ASID.store(flush_by_asid, Ordering::Relaxed);
}

/// CPUs with an ASID allocator (others flush the whole TLB on every entry).
const TRACKED_CPUS: usize = 256;

/// One CPU's ASID allocator (`nsvm_core::tlb::CpuAsids`), used only by that
/// CPU with GIF clear (no interrupt, NMI or other thread can reach it in
/// between): `generation` 0 means never used.
struct CpuAsidSlot {
    generation: AtomicU64,
    next: AtomicU32,
    flush_all: AtomicBool,
}

impl CpuAsidSlot {
    const fn new() -> Self {
        Self { generation: AtomicU64::new(0), next: AtomicU32::new(0), flush_all: AtomicBool::new(true) }
    }
    #[inline]
    fn load(&self) -> CpuAsids {
        let generation = self.generation.load(Ordering::Relaxed);
        let fresh = CpuAsids::new(NASID.load(Ordering::Relaxed));
        if generation == 0 {
            return fresh;
        }
        CpuAsids { generation, next: self.next.load(Ordering::Relaxed), max: fresh.max, flush_all: self.flush_all.load(Ordering::Relaxed) }
    }
    fn store(&self, c: &CpuAsids) {
        self.generation.store(c.generation, Ordering::Relaxed);
        self.next.store(c.next, Ordering::Relaxed);
        self.flush_all.store(c.flush_all, Ordering::Relaxed);
    }
}

static CPU_ASIDS: [CpuAsidSlot; TRACKED_CPUS] = [const { CpuAsidSlot::new() }; TRACKED_CPUS];

/// CPU `cpu` came online (its TLB may hold anything): its next entry starts
/// a new ASID generation with a flush of the whole TLB, keeping the
/// generation count going up so that no VMCB's old (ASID, generation) pair
/// is handed out again. Runs on that CPU before any vCPU can run there.
pub(crate) fn reset_cpu_asids(cpu: u32) {
    if let Some(s) = CPU_ASIDS.get(cpu as usize) {
        s.next.store(0, Ordering::Relaxed);
        s.flush_all.store(true, Ordering::Relaxed);
    }
}

/// A vCPU's guest mode as the VM's TLB shootdown sees it: `state` is
/// `2 * entries + 1` between CLGI and STGI around VMRUN, `2 * entries`
/// outside (only the vCPU's thread writes it), `cpu` where it runs.
pub(crate) struct GuestMode {
    state: AtomicU64,
    cpu: AtomicU32,
}

impl GuestMode {
    /// Not in guest mode.
    pub(crate) const fn new() -> Self {
        Self { state: AtomicU64::new(0), cpu: AtomicU32::new(0) }
    }

    /// Makes the vCPU leave guest mode soon if it is in it (an event was
    /// posted for it: an APIC interrupt, its timer), without waiting: one
    /// reschedule IPI to its CPU. Callable from any context.
    pub(crate) fn poke(&self) {
        if self.state.load(Ordering::SeqCst) & 1 != 0 {
            hw::cpu::kick_cpu(self.cpu.load(Ordering::Relaxed));
        }
    }

    /// Makes the vCPU leave guest mode if it is in it: a reschedule IPI to
    /// its CPU, then a wait until that entry is over (re-sent now and then:
    /// the wait must not depend on one IPI). Callers changed what the vCPU
    /// may use and bumped the generation it reads after entering guest mode
    /// before calling: sequentially consistent on both sides, so either this
    /// sees the vCPU in guest mode and waits for that entry to end, or the
    /// vCPU's next entry sees the new generation and flushes.
    pub(crate) fn kick(&self) {
        let s = self.state.load(Ordering::SeqCst);
        if s & 1 == 0 {
            return;
        }
        let cpu = self.cpu.load(Ordering::Relaxed);
        let mut spins = 0u32;
        while self.state.load(Ordering::Acquire) == s {
            if spins % (1 << 16) == 0 {
                hw::cpu::kick_cpu(cpu);
            }
            spins = spins.wrapping_add(1);
            core::hint::spin_loop();
        }
    }
}

/// The TLB side of an entry: the vCPU's guest mode flag, the ASID state of
/// the VMCB entered, and its VM's translation generation.
pub(crate) struct EntryTlb<'a> {
    pub(crate) mode: &'a GuestMode,
    pub(crate) asid: &'a mut VmcbAsid,
    pub(crate) generation: &'a AtomicU64,
    /// The memory generation the vCPU's NPT02 was composed for, when L2
    /// runs on it: the entry is abandoned (no VMRUN) when the generation
    /// read in guest mode differs, since NPT02's leaves hold no page
    /// reference and an invalidation may have freed their pages.
    pub(crate) npt02_generation: Option<u64>,
    /// The vCPU's in-kernel APIC mailbox word (`Mailbox::posted`), if it
    /// has one: read in guest mode, and when an event was posted since the
    /// vCPU took its mailbox (the poster may have seen it outside guest
    /// mode and sent no IPI), a reschedule IPI to this CPU is left pending
    /// so that the guest exits at once (#VMEXIT(INTR), APM 15.21.2) and the
    /// event is taken — KVM checks `kvm_vcpu_exit_request` at the same point.
    pub(crate) posted: Option<&'a AtomicU32>,
}

/// What `enter` saw of the entry.
pub(crate) struct Entered {
    /// No VMRUN: the memory generation moved under NPT02
    /// (`EntryTlb::npt02_generation`); the caller drops NPT02 and enters
    /// again. Nothing else of the value means anything then.
    pub(crate) abandoned: bool,
    /// The CPU that ran it.
    pub(crate) cpu: u32,
    /// The vCPU's entry count at this entry (its sequence number).
    pub(crate) seq: u64,
    /// Why the VMCB cannot be what this VMRUN's #VMEXIT wrote
    /// (`nsvm_core::hoststate::check`), if it cannot.
    pub(crate) sign: Option<Sign>,
    /// The host's CR3 at the VMRUN and the RIP VMRUN saved for the host.
    pub(crate) host_cr3: u64,
    pub(crate) vmrun_end: u64,
    /// The running CPU's host save area right after the #VMEXIT (read only
    /// when `sign` is set).
    pub(crate) hsave: Hsave,
    /// Whether the guest's FPU image was loaded for this entry (not kept
    /// from the previous one), and whether the host's VMSAVE state was
    /// saved (statistics `fpu_loads`, `host_state_saves`).
    pub(crate) fpu_load: FpuLoad,
    pub(crate) host_saved: bool,
    /// Whether the entry left a self-IPI pending for `EXIT_AFTER_INJECTION`
    /// (statistic `injection_guards`).
    pub(crate) guarded: bool,
}

/// Enters the guest of `vmcb` once and returns at its next #VMEXIT, with the
/// guest's FPU/SSE/AVX state in the registers (loaded from its image at the
/// first entry of a `KVM_RUN` or after the thread was scheduled out, and
/// left there: `Loaded`), its XCR0 in force while it runs (the host's
/// otherwise), and its DR0-3 (`db`, loaded after CLGI and read back before
/// STGI; VMRUN switches only DR6 and DR7, APM vol. 2 15.5.1; the host's are
/// put back when it has breakpoints armed).
///
/// Sound because VMs exist only while the module owns SVM on every online CPU
/// (`svm::Ownership` outlives every fd), preemption is off over the whole
/// entry (the caller stays on one CPU, where the guest's FPU registers and
/// the host save page were loaded), `vmcb` and `host_save` are borrowed
/// exclusively, and vmcb01 intercepts INTR and NMI (set at reset and never
/// cleared).
/// `Entered::sign` is set when the VMCB came back with what no #VMEXIT of
/// this VMRUN writes (`nsvm_core::hoststate::check` against `entry`, the
/// state it had before: the host's own state, or `int_ctl` without the
/// V_INTR_MASKING it had). The caller puts back the state the VMCB had
/// before VMRUN and does not run the guest again unless VMRUN failed
/// (VMEXIT_INVALID).
///
/// GIF is clear from before the guest's XCR0 is loaded until the host's is
/// back, so host interrupts and NMIs never run with the guest's XCR0, and
/// the guest-mode flag `tlb.mode` is set over the same window; the ASID and
/// TLB_CONTROL are chosen inside it, on the CPU that runs the guest (APM
/// 15.16), with that CPU's ASID allocator. The host's VMSAVE state is saved
/// into `host_save` only when it does not hold this thread's state on this
/// CPU (`Loaded::enter`) and loaded back after every #VMEXIT.
// Everything an entry switches, each borrowed separately from `CpuState`.
// Inlined into its one caller (the run loop's entry): out of line, with its
// eight arguments and the `Entered` it returns, it cost every exit about 65
// instructions (`make bench BENCH_PROFILE=1`, session 15).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn enter(
    vmcb: &mut VmcbPage,
    entry: &EntryState,
    host_save: &mut KPages,
    loaded: &mut Loaded,
    gprs: &mut Gprs,
    guest_xcr0: u64,
    tlb: EntryTlb<'_>,
    db: &mut [u64; 4],
) -> Entered {
    let osxsave = vmcb.get().save.cr4 & nsvm_core::x86::cr4::OSXSAVE != 0;
    let host_xcr0 = hw::cpu::host_xcr0();
    let switch_xcr0 = host_xcr0 != 0 && osxsave && guest_xcr0 != host_xcr0;
    let (np, le) = loaded.enter();
    let (cpu, fpu_load, host_saved) = (le.cpu, le.fpu, le.save_host);
    let host_cr3 = hw::cpu::read_cr3();
    // SAFETY: EFER.SVME is set on every CPU while a VM exists; GIF = 0 holds
    // interrupts and NMIs until STGI below (APM 15.17).
    unsafe { asm!("clgi", options(nostack)) };
    tlb.mode.cpu.store(cpu, Ordering::Relaxed);
    let entries = tlb.mode.state.load(Ordering::Relaxed);
    tlb.mode.state.store(entries | 1, Ordering::SeqCst);
    let generation = tlb.generation.load(Ordering::SeqCst);
    if tlb.npt02_generation.is_some_and(|g| g != generation) {
        // An invalidation ran since NPT02 was checked: leave guest mode
        // without entering (its kick, if any, sees the word move).
        if host_saved {
            // `Loaded::enter` recorded the host save page as holding this
            // thread's state on this CPU: make it so, as the VMRUN would.
            // SAFETY: EFER.SVME is set; the page is ours and nothing else
            // uses it (preemption is off); VMSAVE only writes it.
            unsafe { asm!("vmsave rax", in("rax") host_save.pa(), options(nostack)) };
        }
        tlb.mode.state.store((entries | 1) + 1, Ordering::Release);
        // SAFETY: ends the GIF = 0 window begun above.
        unsafe { asm!("stgi", options(nostack)) };
        drop(np);
        return Entered {
            abandoned: true,
            cpu,
            seq: entries / 2,
            sign: None,
            host_cr3,
            vmrun_end: 0,
            hsave: Hsave::default(),
            fpu_load,
            host_saved,
            guarded: false,
        };
    }
    let slot = CPU_ASIDS.get(cpu as usize);
    let mut asids = slot.map(CpuAsidSlot::load);
    let e = match asids.as_mut() {
        Some(c) => tlb.asid.prepare(cpu, c, generation, FLUSH_BY_ASID.load(Ordering::Relaxed)),
        // No allocator: ASID 1, and everything flushed every time.
        None => AsidEntry { asid: 1, tlb_ctl: tlb_control::FLUSH_ALL },
    };
    {
        let c = &mut vmcb.get().control;
        c.asid = e.asid;
        c.tlb_ctl = if FLUSH_EVERY_ENTRY.load(Ordering::Relaxed) { tlb_control::FLUSH_ALL } else { e.tlb_ctl };
    }
    // A post since the target's last look ends the entry at once; so does an
    // external interrupt in EVENTINJ when the processor needs that
    // (`EXIT_AFTER_INJECTION`), and so does work the task owes since the
    // run loop's last look (a wakeup's reschedule: KVM's check with
    // interrupts off before entering).
    let guard = EXIT_AFTER_INJECTION.load(Ordering::Relaxed) && nsvm_core::event::is_intr_injection(vmcb.get().control.event_inj);
    if guard || tlb.posted.is_some_and(|p| p.load(Ordering::SeqCst) != 0) || hw::task::guest_mode_work_pending() {
        hw::cpu::kick_self();
    }
    // DR0-3 are the guest's while it runs (VMRUN switches only DR6/DR7).
    let host_db = hw::cpu::load_guest_db(db);
    if switch_xcr0 {
        // SAFETY: the XSETBV handler only stores values that are subsets of
        // the host's XCR0 with x87 set and SSE set whenever AVX is.
        unsafe { xsetbv(guest_xcr0) };
    }
    // SAFETY: see the function comment.
    let after_vmrun = unsafe { run(vmcb.pa(), host_save.pa(), gprs, host_saved) };
    if switch_xcr0 {
        // SAFETY: the host's own value.
        unsafe { xsetbv(host_xcr0) };
    }
    if let (Some(slot), Some(mut c)) = (slot, asids) {
        // A VMRUN refused before it acted on TLB_CONTROL leaves its flushes
        // to the next entry.
        if nsvm_core::vmcb::Vmcb::exit_is_invalid(vmcb.get().control.exit_code) {
            tlb.asid.not_entered(&mut c, e);
        }
        slot.store(&c);
    }
    hw::cpu::save_guest_db(db, &host_db);
    tlb.mode.state.store((entries | 1) + 1, Ordering::Release);
    // SAFETY: ends the GIF = 0 window begun above; pending interrupts and
    // NMIs are taken now, in the host.
    unsafe { asm!("stgi", options(nostack)) };
    let sign = hoststate::check(vmcb.get(), entry, after_vmrun, host_cr3);
    if sign.is_some() {
        // What this VMCB cached may come from state it should not have
        // had: its ASID is flushed before it runs again.
        tlb.asid.request();
    }
    // Still on the CPU that ran the VMRUN (preemption off): its host save
    // area is what that VMRUN saved.
    let hsave = if sign.is_some() { crate::svm::this_cpu_hsave(cpu) } else { Hsave::default() };
    drop(np);
    Entered { abandoned: false, cpu, seq: entries / 2, sign, host_cr3, vmrun_end: after_vmrun, hsave, fpu_load, host_saved, guarded: guard }
}

/// Runs the guest of the VMCB at `vmcb_pa` until its next #VMEXIT.
///
/// Host state that VMRUN does not save (the VMSAVE set) is saved to
/// `host_save_pa` before when `save_host` (otherwise the page holds it
/// already: this thread's state on this CPU) and reloaded after. The caller keeps GIF clear
/// around the call so that host interrupts stay pending until the exit has
/// been taken; the host keeps RFLAGS.IF = 1 so that, with V_INTR_MASKING,
/// physical interrupts while the guest runs cause #VMEXIT(INTR) (APM
/// 15.21.1, 15.21.4).
///
/// # Safety
///
/// - EFER.SVME is set on this CPU with a valid VM_HSAVE_PA, GIF is clear,
///   and the caller cannot migrate during the call (preemption disabled).
/// - `vmcb_pa` is a VMCB page that nothing else accesses during the call and
///   whose contents pass VMRUN's checks or are meant to fail them (the
///   processor then reports VMEXIT_INVALID in the VMCB, which is harmless).
/// - `host_save_pa` is a page nothing else uses during the call; without
///   `save_host` it holds what VMSAVE stored there on this CPU in this
///   thread, and the state has not changed since.
/// - The VMCB intercepts INTR and NMI, so the guest cannot keep the CPU.
unsafe fn run(vmcb_pa: u64, host_save_pa: u64, gprs: &mut Gprs, save_host: bool) -> u64 {
    let after: u64;
    // SAFETY: per the function's contract. The asm saves RBX and RBP (which
    // cannot be named as operands) on the stack, declares every other GPR
    // clobbered, and leaves RSP as it found it (VMRUN/#VMEXIT restore it).
    unsafe {
        asm!(
            "push rbp",
            "push rbx",
            "push rdi",              // [rsp+16] gprs
            "push rcx",              // [rsp+8]  vmcb pa
            "push rax",              // [rsp]    host save pa
            "test rsi, rsi",
            "jz 3f",
            "vmsave rax",
            "3:",
            "mov rax, [rsp + 8]",
            "vmload rax",
            "mov rcx, [rdi + 8*1]",
            "mov rdx, [rdi + 8*2]",
            "mov rbx, [rdi + 8*3]",
            "mov rbp, [rdi + 8*5]",
            "mov rsi, [rdi + 8*6]",
            "mov r8,  [rdi + 8*8]",
            "mov r9,  [rdi + 8*9]",
            "mov r10, [rdi + 8*10]",
            "mov r11, [rdi + 8*11]",
            "mov r12, [rdi + 8*12]",
            "mov r13, [rdi + 8*13]",
            "mov r14, [rdi + 8*14]",
            "mov r15, [rdi + 8*15]",
            "mov rdi, [rdi + 8*7]",
            "vmrun rax",
            "2:",
            // #VMEXIT: RAX, RSP, RIP and RFLAGS are the host's again.
            "push rdi",              // guest rdi; gprs now at [rsp+24]
            "mov rdi, [rsp + 24]",
            "mov [rdi + 8*1], rcx",
            "mov [rdi + 8*2], rdx",
            "mov [rdi + 8*3], rbx",
            "mov [rdi + 8*5], rbp",
            "mov [rdi + 8*6], rsi",
            "mov [rdi + 8*8], r8",
            "mov [rdi + 8*9], r9",
            "mov [rdi + 8*10], r10",
            "mov [rdi + 8*11], r11",
            "mov [rdi + 8*12], r12",
            "mov [rdi + 8*13], r13",
            "mov [rdi + 8*14], r14",
            "mov [rdi + 8*15], r15",
            "pop rbx",
            "mov [rdi + 8*7], rbx",
            "vmsave rax",            // RAX = vmcb pa (host RAX at VMRUN)
            "pop rax",               // host save pa
            "vmload rax",
            "add rsp, 16",
            "pop rbx",
            "pop rbp",
            "lea rdx, [rip + 2b]",   // the RIP VMRUN saves for the host
            inout("rax") host_save_pa => _,
            inout("rcx") vmcb_pa => _,
            inout("rdi") gprs.0.as_mut_ptr() => _,
            out("rdx") after, inout("rsi") u64::from(save_host) => _,
            out("r8") _, out("r9") _, out("r10") _, out("r11") _,
            out("r12") _, out("r13") _, out("r14") _, out("r15") _,
        );
    }
    after
}

/// Writes XCR0.
///
/// # Safety
///
/// Preemption off (the host value must be written back before it is
/// enabled again); `v` must be a value the processor accepts (a subset of the host's
/// XCR0 with x87 set, and SSE set whenever AVX is).
unsafe fn xsetbv(v: u64) {
    // SAFETY: per the contract.
    unsafe { asm!("xsetbv", in("ecx") 0u32, in("eax") v as u32, in("edx") (v >> 32) as u32) };
}

/// MXCSR bits the processor accepts: MXCSR_MASK of an FXSAVE image (0 there
/// means the architectural default 0xffbf, SDM vol. 1 11.6.6).
pub(crate) fn mxcsr_mask() -> u32 {
    #[repr(C, align(64))]
    struct Area([u8; 512]);
    let mut a = Area([0; 512]);
    {
        let _fpu = FpuSection::begin();
        // SAFETY: inside the FPU section; the area is 512 bytes, 64-byte
        // aligned; FXSAVE only writes it.
        unsafe { asm!("fxsave64 [{a}]", a = in(reg) a.0.as_mut_ptr()) };
    }
    let m = u32::from_ne_bytes([a.0[28], a.0[29], a.0[30], a.0[31]]);
    if m == 0 {
        0xffbf
    } else {
        m
    }
}
