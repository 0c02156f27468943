// SPDX-License-Identifier: GPL-2.0
//! The calling task: its address space, signals, scheduling, time.

use kernel::ffi::{c_int, c_void};

extern "C" {
    fn nsvm_current_mm() -> *mut c_void;
    fn nsvm_mm_grab_current() -> *mut c_void;
    fn nsvm_mm_drop(mm: *mut c_void);
    fn nsvm_signal_pending() -> c_int;
    fn nsvm_cond_resched();
    fn nsvm_guest_mode_work();
    fn nsvm_guest_mode_work_pending() -> c_int;
    fn nsvm_ktime_ns() -> u64;
}

/// Identity of the calling process's address space.
pub(crate) fn current_mm() -> usize {
    // SAFETY: reads `current->mm`; the value is only compared.
    unsafe { nsvm_current_mm() as usize }
}

/// A counted reference (`mmgrab`) to the address space of the process that
/// created it: the `mm_struct` stays allocated while the value lives, so no
/// later process can have an address space at the same address.
///
/// # Invariants
///
/// `mm` is null (created by a kernel thread) or an `mm_struct` with one
/// reference of ours, dropped once, on drop.
pub(crate) struct MmRef {
    mm: *mut c_void,
}

// SAFETY: the reference may be dropped from any thread (`mmdrop`), and the
// pointer is only compared otherwise.
unsafe impl Send for MmRef {}
// SAFETY: shared access only compares the pointer.
unsafe impl Sync for MmRef {}

impl MmRef {
    /// A reference to the calling process's address space.
    pub(crate) fn current() -> Self {
        // SAFETY: takes a reference to `current->mm` (or returns null).
        // INVARIANT: the reference is ours until drop.
        Self { mm: unsafe { nsvm_mm_grab_current() } }
    }

    /// Whether the calling task runs in this address space.
    pub(crate) fn is_current(&self) -> bool {
        !self.mm.is_null() && current_mm() == self.mm as usize
    }

    /// The `mm_struct` (null for a kernel thread), for `hw::mmu`.
    pub(super) fn as_ptr(&self) -> *mut c_void {
        self.mm
    }
}

impl Drop for MmRef {
    fn drop(&mut self) {
        if !self.mm.is_null() {
            // SAFETY: by the type invariant we hold one reference.
            unsafe { nsvm_mm_drop(self.mm) };
        }
    }
}

/// Whether the calling task has a signal pending.
pub(crate) fn signal_pending() -> bool {
    // SAFETY: no preconditions.
    unsafe { nsvm_signal_pending() != 0 }
}

/// Lets the scheduler run something else if it wants to.
pub(crate) fn cond_resched() {
    // SAFETY: called from process context without spinlocks held.
    unsafe { nsvm_cond_resched() }
}

/// Does what the task owes before its vCPU enters the guest again (KVM's
/// `xfer_to_guest_mode_handle_work`): schedules when a reschedule is
/// pending, lazy ones included, which [`cond_resched`] does not see in a
/// preemptible kernel; runs task work. A pending signal is left to the
/// caller's own check.
pub(crate) fn guest_mode_work() {
    // SAFETY: called from process context, preemption and interrupts on,
    // without spinlocks held (the top of the run loop).
    unsafe { nsvm_guest_mode_work() }
}

/// Whether [`guest_mode_work`] has something to do (a reschedule, task
/// work, a signal): checked with GIF clear before VMRUN, as KVM checks it
/// with interrupts off.
pub(crate) fn guest_mode_work_pending() -> bool {
    // SAFETY: reads the current task's thread flags.
    unsafe { nsvm_guest_mode_work_pending() != 0 }
}

/// Monotonic time in nanoseconds.
pub(crate) fn now_ns() -> u64 {
    // SAFETY: reads the monotonic clock.
    unsafe { nsvm_ktime_ns() }
}

extern "C" {
    fn nsvm_realtime_ns() -> u64;
}

/// Real (wall-clock) time in nanoseconds.
pub(crate) fn realtime_ns() -> u64 {
    // SAFETY: reads a clock.
    unsafe { nsvm_realtime_ns() }
}
