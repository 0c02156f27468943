// SPDX-License-Identifier: GPL-2.0
//! The calling task: its address space, signals, scheduling, time.

use kernel::ffi::{c_int, c_void};

extern "C" {
    fn nsvm_current_mm() -> *mut c_void;
    fn nsvm_signal_pending() -> c_int;
    fn nsvm_cond_resched();
    fn nsvm_ktime_ns() -> u64;
}

/// Identity of the calling process's address space.
pub(crate) fn current_mm() -> usize {
    // SAFETY: reads `current->mm`; the value is only compared.
    unsafe { nsvm_current_mm() as usize }
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

/// Monotonic time in nanoseconds.
pub(crate) fn now_ns() -> u64 {
    // SAFETY: reads the monotonic clock.
    unsafe { nsvm_ktime_ns() }
}
