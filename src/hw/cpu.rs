// SPDX-License-Identifier: GPL-2.0
//! The processor: CPUID, MSRs, control registers, TSC, XCR0, the kernel-FPU
//! section, CPU hotplug callbacks.

use kernel::error::to_result;
use kernel::ffi::{c_int, c_uint, c_void};
use kernel::prelude::*;

extern "C" {
    fn nsvm_kick_cpu(cpu: c_int);
    fn nsvm_kick_self();
    fn nsvm_rdmsr_safe(msr: u32, val: *mut u64) -> c_int;
    fn nsvm_wrmsr_safe(msr: u32, val: u64) -> c_int;
    fn nsvm_cpuhp_setup(
        up: extern "C" fn(c_uint) -> c_int,
        down: extern "C" fn(c_uint) -> c_int,
    ) -> c_int;
    fn nsvm_cpuhp_remove(state: c_int);
    fn nsvm_num_online_cpus() -> c_uint;
    fn nsvm_fpu_begin();
    fn nsvm_fpu_end();
    fn nsvm_host_xcr0() -> u64;
    fn nsvm_tsc_khz() -> c_uint;
    fn nsvm_tsc_stable() -> c_int;
    fn nsvm_preempt_notifiers_enable();
    fn nsvm_preempt_enable();
    fn nsvm_preempt_notifiers_disable();
    fn nsvm_loaded_alloc(area: *mut u8, rfbm: u64) -> *mut c_void;
    fn nsvm_loaded_free(l: *mut c_void);
    fn nsvm_loaded_enter(l: *mut c_void) -> c_uint;
    fn nsvm_loaded_put(l: *mut c_void);
    fn nsvm_loaded_vcpu_put(l: *mut c_void);
    fn nsvm_loaded_set_tsc_aux(l: *mut c_void, v: u64);
}

/// Executes CPUID for `leaf`/`subleaf` on the current CPU: (EAX, EBX, ECX, EDX).
pub(crate) fn cpuid(leaf: u32, subleaf: u32) -> (u32, u32, u32, u32) {
    // SAFETY: CPUID exists on every x86-64 processor and has no side effects
    // beyond writing the four registers.
    #[allow(unused_unsafe)]
    let r = unsafe { core::arch::x86_64::__cpuid_count(leaf, subleaf) };
    (r.eax, r.ebx, r.ecx, r.edx)
}

/// Reads an MSR on the current CPU; `EIO` when it does not exist (#GP).
pub(crate) fn rdmsr(msr: u32) -> Result<u64> {
    let mut v = 0u64;
    // SAFETY: `v` is a valid u64 for the shim to write; a faulting RDMSR is
    // caught by the kernel's exception table and reported as an error.
    to_result(unsafe { nsvm_rdmsr_safe(msr, &mut v) })?;
    Ok(v)
}

/// Sets or clears EFER.SVME on the current CPU, leaving the other bits as they are.
pub(crate) fn set_efer_svme(on: bool) -> Result {
    let efer = rdmsr(nsvm_core::msr::EFER)?;
    let new = if on {
        efer | nsvm_core::msr::efer::SVME
    } else {
        efer & !nsvm_core::msr::efer::SVME
    };
    // SAFETY: only SVME changes; SVME affects nothing but the SVM instructions,
    // which only this module executes while it owns SVM (APM 15.4).
    to_result(unsafe { nsvm_wrmsr_safe(nsvm_core::msr::EFER, new) })
}

/// Writes VM_HSAVE_PA on the current CPU (APM 15.30.4).
///
/// # Safety
///
/// `pa` must be the physical address of a 4 KiB page that stays allocated and
/// unused by anyone else until VM_HSAVE_PA is written again: VMRUN stores host
/// state there.
pub(crate) unsafe fn write_hsave_pa(pa: u64) -> Result {
    // SAFETY: the caller guarantees the page's lifetime; the write faults
    // (caught) only for a misaligned or out-of-range address.
    to_result(unsafe { nsvm_wrmsr_safe(nsvm_core::msr::VM_HSAVE_PA, pa) })
}

/// Number of online CPUs.
pub(crate) fn num_online_cpus() -> u32 {
    // SAFETY: reads a cpumask weight; no preconditions.
    unsafe { nsvm_num_online_cpus() }
}

/// CPU hotplug callbacks registered with the kernel.
///
/// # Invariants
///
/// `state` is the dynamic hotplug state returned by a successful
/// `cpuhp_setup_state`; it is removed exactly once, on drop.
pub(crate) struct CpuHotplug {
    state: c_int,
}

impl CpuHotplug {
    /// Registers `up`/`down`: `up` runs now on every online CPU (on that CPU)
    /// and whenever a CPU comes online; `down` when one goes offline. If `up`
    /// fails on a CPU, `down` runs on those that succeeded and the error is
    /// returned.
    pub(crate) fn setup(
        up: extern "C" fn(c_uint) -> c_int,
        down: extern "C" fn(c_uint) -> c_int,
    ) -> Result<Self> {
        // SAFETY: both callbacks are functions of this module, which stay valid
        // until the registration is dropped in the module's exit path.
        let r = unsafe { nsvm_cpuhp_setup(up, down) };
        to_result(r.min(0))?;
        // INVARIANT: `r` is the state of a successful registration.
        Ok(Self { state: r })
    }
}

impl Drop for CpuHotplug {
    fn drop(&mut self) {
        // SAFETY: by the type invariant the state is registered and removed once.
        unsafe { nsvm_cpuhp_remove(self.state) }
    }
}

/// The current CR3 (this task's page-table root as the processor holds it).
pub(crate) fn read_cr3() -> u64 {
    let v: u64;
    // SAFETY: reading CR3 at CPL 0 has no side effect.
    unsafe { core::arch::asm!("mov {}, cr3", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// The base of the current CPU's GDT (SGDT): each CPU has its own, so it
/// tells whose host state a save area holds.
pub(crate) fn gdt_base() -> u64 {
    let mut d = [0u8; 10];
    // SAFETY: SGDT at CPL 0 stores the 10-byte GDTR image (limit, base) into
    // `d` and has no other effect.
    unsafe { core::arch::asm!("sgdt [{}]", in(reg) d.as_mut_ptr(), options(nostack, preserves_flags)) };
    u64::from_le_bytes([d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9]])
}

/// The host's XCR0, read once (`probe`, at load) as KVM's `kvm_host.xcr0`:
/// Linux sets the same XCR0 on every CPU at boot and never changes it, and
/// an XGETBV on every entry had cost about 15 instructions per exit
/// (`make bench BENCH_PROFILE=1`, session 15).
static HOST_XCR0: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Reads the host's XCR0 into [`host_xcr0`]'s copy (module load).
pub(crate) fn read_host_xcr0() {
    // SAFETY: no preconditions.
    let x = unsafe { nsvm_host_xcr0() };
    HOST_XCR0.store(x, core::sync::atomic::Ordering::Relaxed);
}

/// The host's XCR0 (0 without OSXSAVE).
#[inline]
pub(crate) fn host_xcr0() -> u64 {
    HOST_XCR0.load(core::sync::atomic::Ordering::Relaxed)
}

/// TSC frequency of the host in kHz.
pub(crate) fn tsc_khz() -> u32 {
    // SAFETY: reads a kernel variable.
    unsafe { nsvm_tsc_khz() }
}

/// The host keeps time with the TSC and nothing marked it unstable (KVM's
/// master-clock condition; kvmclock's stable bit).
pub(crate) fn tsc_stable() -> bool {
    // SAFETY: reads kernel state.
    unsafe { nsvm_tsc_stable() != 0 }
}

/// Kernel FPU section: the task's FPU state is saved on entry; inside, the FPU
/// registers belong to nsvm (the guest's state is loaded there); preemption
/// and softirqs are off. Not `Send`: it must end on the CPU where it began.
pub(crate) struct FpuSection(core::marker::PhantomData<*mut ()>);

impl FpuSection {
    /// Begins the section.
    pub(crate) fn begin() -> Self {
        // SAFETY: process context; paired with `nsvm_fpu_end` in drop.
        unsafe { nsvm_fpu_begin() };
        Self(core::marker::PhantomData)
    }
}

impl Drop for FpuSection {
    fn drop(&mut self) {
        // SAFETY: paired with the `nsvm_fpu_begin` of `begin`.
        unsafe { nsvm_fpu_end() }
    }
}

/// Reads the time-stamp counter.
pub(crate) fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects and is allowed in the kernel.
    #[allow(unused_unsafe)]
    unsafe {
        core::arch::x86_64::_rdtsc()
    }
}

/// Sends CPU `cpu` a reschedule IPI (not waited for): a vCPU in guest mode
/// there leaves it by #VMEXIT(INTR). Nothing for this CPU or offline ones.
pub(crate) fn kick_cpu(cpu: u32) {
    // SAFETY: any context where the IPI may be sent (the shim checks the
    // CPU number and skips the calling CPU).
    unsafe { nsvm_kick_cpu(cpu as c_int) }
}

/// Leaves a reschedule IPI pending on this CPU (the caller has preemption
/// off and, before a VMRUN, GIF clear: the guest exits at once).
pub(crate) fn kick_self() {
    // SAFETY: an IPI to the calling CPU, which is online (it runs this).
    unsafe { nsvm_kick_self() }
}

/// Preempt notifiers switched on (a kernel static key) while nsvm is loaded.
///
/// # Invariants
///
/// Created once at load; its drop undoes exactly that one enable.
pub(crate) struct PreemptNotifiers(());

impl PreemptNotifiers {
    pub(crate) fn enable() -> Self {
        // SAFETY: a counted static-key increment, undone in drop.
        unsafe { nsvm_preempt_notifiers_enable() };
        Self(())
    }
}

impl Drop for PreemptNotifiers {
    fn drop(&mut self) {
        // SAFETY: paired with the enable of `enable`.
        unsafe { nsvm_preempt_notifiers_disable() }
    }
}

/// What of a vCPU stays loaded on the CPU between exits of one `KVM_RUN`
/// (shim.c, `struct nsvm_loaded`): the guest's FPU registers (loaded at the
/// first entry, saved back into the image by [`Loaded::put`], by
/// [`Loaded::vcpu_put`] at the end of `KVM_RUN`, and by the preempt
/// notifier whenever the thread is scheduled out), and whether the host's
/// VMSAVE state was saved on this CPU since the thread came there.
///
/// # Invariants
///
/// `ptr` is a record from `nsvm_loaded_alloc` whose image is `area`, a page
/// the owner keeps allocated as long as the record (the vCPU's FPU page);
/// it is registered as a preempt notifier only between an `enter` and the
/// next `vcpu_put` of the same `KVM_RUN`, in the thread running it.
pub(crate) struct Loaded {
    ptr: *mut c_void,
}

// SAFETY: the record is only used by the thread holding the vCPU lock
// (every method takes `&mut self` behind it); the notifier runs on the
// registering thread's own context switches.
unsafe impl Send for Loaded {}
// SAFETY: as above; `&self` gives no access.
unsafe impl Sync for Loaded {}

/// What [`Loaded::enter`] did with the FPU registers.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum FpuLoad {
    /// The guest's registers were loaded already.
    Kept,
    /// Loaded now from the image.
    Loaded,
    /// Loaded again from the image: the registers had been taken by another
    /// kernel-FPU user (warned once; the guest's registers since the last
    /// save are lost).
    Lost,
}

impl Loaded {
    /// A record for the image `area` (the vCPU's FPU page, 64-byte aligned,
    /// at least the host's XSAVE size).
    pub(crate) fn new(area: &crate::hw::mem::KPages) -> Result<Self> {
        // SAFETY: `area` is a page the caller keeps for the record's life
        // (it is the vCPU's FPU page, dropped after this record).
        let ptr = unsafe { nsvm_loaded_alloc(area.as_ptr(), host_xcr0()) };
        if ptr.is_null() {
            return Err(ENOMEM);
        }
        Ok(Self { ptr })
    }

    /// The start of an entry: preemption off until the returned guard is
    /// dropped (the VMRUN that uses the registers must come before), the
    /// guest's FPU image loaded into the registers unless they hold it, and
    /// whether the host's VMSAVE state must be saved for this entry (the
    /// host save page does not hold this thread's state on this CPU, or the
    /// task has an LDT), recorded as saved.
    pub(crate) fn enter(&mut self) -> (NoPreempt, LoadedEntry) {
        // SAFETY: a valid record (type invariant), in the vCPU thread; the
        // image is valid (written by XSAVE or the reset defaults). The shim
        // disabled preemption: the guard enables it again.
        let r = unsafe { nsvm_loaded_enter(self.ptr) };
        let fpu = if r & ENTER_FPU_LOST != 0 {
            FpuLoad::Lost
        } else if r & ENTER_FPU_LOADED != 0 {
            FpuLoad::Loaded
        } else {
            FpuLoad::Kept
        };
        let e = LoadedEntry { cpu: r & 0xff_ffff, fpu, save_host: r & ENTER_HOST_SAVE != 0 };
        (NoPreempt(core::marker::PhantomData), e)
    }

    /// Saves the guest's registers into the image if they are loaded (the
    /// next entry loads them again): before the image is read or written.
    pub(crate) fn put(&mut self) {
        // SAFETY: a valid record; a no-op unless this thread loaded it.
        unsafe { nsvm_loaded_put(self.ptr) }
    }

    /// The guest's TSC_AUX (what its RDTSCP and RDPID read): in the MSR
    /// while the vCPU's state is loaded on a CPU, the host's otherwise.
    pub(crate) fn set_tsc_aux(&mut self, v: u64) {
        // SAFETY: a valid record, in the vCPU thread (the shim disables
        // preemption around the MSR write).
        unsafe { nsvm_loaded_set_tsc_aux(self.ptr, v) }
    }

    /// The end of `KVM_RUN`: [`Loaded::put`], the host state forgotten, the
    /// notifier unregistered.
    pub(crate) fn vcpu_put(&mut self) {
        // SAFETY: a valid record, in the thread of the `KVM_RUN`.
        unsafe { nsvm_loaded_vcpu_put(self.ptr) }
    }

}

/// `nsvm_loaded_enter`'s bits above the CPU number (shim.c).
const ENTER_FPU_LOADED: u32 = 1 << 24;
const ENTER_FPU_LOST: u32 = 1 << 25;
const ENTER_HOST_SAVE: u32 = 1 << 26;

/// What [`Loaded::enter`] found.
pub(crate) struct LoadedEntry {
    /// The CPU the entry runs on.
    pub(crate) cpu: u32,
    pub(crate) fpu: FpuLoad,
    /// The host's VMSAVE state must be saved (VMSAVE) before VMRUN.
    pub(crate) save_host: bool,
}

impl Drop for Loaded {
    fn drop(&mut self) {
        // SAFETY: by the invariant, not registered any more (every KVM_RUN
        // ends with `vcpu_put`, and the vCPU outlives its KVM_RUNs).
        unsafe { nsvm_loaded_free(self.ptr) }
    }
}

/// Preemption off on this CPU (the caller stays on it) until dropped
/// (made by [`Loaded::enter`], which disabled it). Not `Send`.
pub(crate) struct NoPreempt(core::marker::PhantomData<*mut ()>);

impl Drop for NoPreempt {
    fn drop(&mut self) {
        // SAFETY: paired with the disable of `nsvm_loaded_enter`.
        unsafe { nsvm_preempt_enable() }
    }
}

extern "C" {
    fn nsvm_load_guest_db(guest: *const u64, host: *mut u64);
    fn nsvm_save_guest_db(guest: *mut u64, host: *const u64);
}

/// Loads the guest's DR0-3 into the processor and returns the host's. Only
/// between CLGI and STGI around VMRUN (no interrupt may see them).
pub(crate) fn load_guest_db(guest: &[u64; 4]) -> [u64; 4] {
    let mut host = [0u64; 4];
    // SAFETY: both arrays hold four u64; MOV DR at CPL 0 has no other effect
    // than on breakpoints, which the shim disarms for the host first.
    unsafe { nsvm_load_guest_db(guest.as_ptr(), host.as_mut_ptr()) };
    host
}

/// Reads the guest's DR0-3 back after #VMEXIT and puts the host's back
/// when it has breakpoints armed (`host` from [`load_guest_db`]).
pub(crate) fn save_guest_db(guest: &mut [u64; 4], host: &[u64; 4]) {
    // SAFETY: as for `load_guest_db`.
    unsafe { nsvm_save_guest_db(guest.as_mut_ptr(), host.as_ptr()) };
}
