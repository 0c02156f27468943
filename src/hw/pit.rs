// SPDX-License-Identifier: GPL-2.0
//! The kernel side of the in-kernel PIT (C shims of src/pit_shim.c):
//! channel 0's hrtimer, whose expiry calls `nsvm_rs_pit_timer` and queues
//! the PIT's work, which calls `nsvm_rs_pit_work` (fops.rs) in process
//! context, both with the VM given at creation.

use kernel::ffi::c_void;
use kernel::prelude::*;

use core::sync::atomic::{AtomicPtr, Ordering};

extern "C" {
    fn nsvm_pit_timer_new(vm: *mut c_void) -> *mut c_void;
    fn nsvm_pit_timer_free(p: *mut c_void);
    fn nsvm_pit_timer_start(p: *mut c_void, first: u64, period: u64);
    fn nsvm_pit_timer_cancel(p: *mut c_void);
    fn nsvm_pit_kick(p: *mut c_void);
}

/// A VM's PIT timer and work, set once (`KVM_CREATE_PIT2`) and owned until
/// drop.
///
/// # Invariants
///
/// `p` is null or an object from `nsvm_pit_timer_new`, owned by this slot
/// and freed once, on drop; it never changes once non-null.
pub(crate) struct PitTimer {
    p: AtomicPtr<c_void>,
}

impl PitTimer {
    /// No timer yet.
    pub(crate) const fn new() -> Self {
        Self { p: AtomicPtr::new(core::ptr::null_mut()) }
    }

    /// Creates the timer if there is none. Its callbacks get `vm`, which
    /// the caller keeps alive until this slot is dropped (the drop cancels
    /// the timer and waits for the work).
    pub(crate) fn init(&self, vm: *const c_void) -> Result {
        if !self.p.load(Ordering::Acquire).is_null() {
            return Ok(());
        }
        // SAFETY: allocates and initialises the timer and work; `vm` is
        // only passed back to nsvm_rs_pit_timer/nsvm_rs_pit_work.
        let p = unsafe { nsvm_pit_timer_new(vm.cast_mut()) };
        if p.is_null() {
            return Err(ENOMEM);
        }
        if self.p.compare_exchange(core::ptr::null_mut(), p, Ordering::AcqRel, Ordering::Acquire).is_err() {
            // SAFETY: ours, never published.
            unsafe { nsvm_pit_timer_free(p) };
        }
        Ok(())
    }

    fn get(&self) -> Option<*mut c_void> {
        let p = self.p.load(Ordering::Acquire);
        (!p.is_null()).then_some(p)
    }

    /// Arms the timer at absolute monotonic `first` ns, then every
    /// `period` ns (0: once), replacing any; process context.
    pub(crate) fn start(&self, first: u64, period: u64) {
        if let Some(p) = self.get() {
            // SAFETY: a live timer (type invariant); process context.
            unsafe { nsvm_pit_timer_start(p, first, period) };
        }
    }

    /// Stops the timer (waits for a running expiry); process context.
    pub(crate) fn cancel(&self) {
        if let Some(p) = self.get() {
            // SAFETY: a live timer; process context.
            unsafe { nsvm_pit_timer_cancel(p) };
        }
    }

    /// Queues the work (any context).
    #[allow(dead_code)] // used by Vm::pit_irq_acked, which the irqchip calls
    pub(crate) fn kick(&self) {
        if let Some(p) = self.get() {
            // SAFETY: a live timer.
            unsafe { nsvm_pit_kick(p) };
        }
    }
}

impl Drop for PitTimer {
    fn drop(&mut self) {
        if let Some(p) = self.get() {
            // SAFETY: ours (type invariant), freed once; process context.
            unsafe { nsvm_pit_timer_free(p) };
        }
    }
}

// SAFETY: the timer's operations are safe from any thread (hrtimer and
// workqueue are the kernel's own synchronised objects).
unsafe impl Send for PitTimer {}
// SAFETY: as above.
unsafe impl Sync for PitTimer {}
