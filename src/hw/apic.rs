// SPDX-License-Identifier: GPL-2.0
//! The kernel side of an in-kernel local APIC (C shims of src/apic_shim.c):
//! a wait queue a halted vCPU sleeps on, and the hrtimer of its APIC timer,
//! whose expiry calls `nsvm_rs_apic_timer` (fops.rs) with the VM and the
//! vCPU id given at creation.

use kernel::ffi::{c_int, c_void};
use kernel::prelude::*;

use core::sync::atomic::{AtomicPtr, Ordering};

extern "C" {
    fn nsvm_apic_waiter_new(ctx: *mut c_void, id: c_int) -> *mut c_void;
    fn nsvm_apic_waiter_free(w: *mut c_void);
    fn nsvm_apic_timer_start(w: *mut c_void, ns: u64);
    fn nsvm_apic_timer_cancel(w: *mut c_void);
    fn nsvm_apic_wake(w: *mut c_void);
    fn nsvm_apic_wait(w: *mut c_void) -> c_int;
}

/// One vCPU's waiter, set once and owned until drop.
///
/// # Invariants
///
/// `p` is null or a waiter from `nsvm_apic_waiter_new`, owned by this slot
/// and freed once, on drop; it never changes once non-null.
pub(crate) struct WaiterSlot {
    p: AtomicPtr<c_void>,
}

impl WaiterSlot {
    /// An empty slot.
    pub(crate) const fn new() -> Self {
        Self { p: AtomicPtr::new(core::ptr::null_mut()) }
    }

    /// Creates the waiter if the slot is empty. Its timer calls back with
    /// `ctx` and `id`: the caller keeps what `ctx` points to alive until
    /// this slot is dropped (the drop cancels the timer and waits for a
    /// running callback).
    pub(crate) fn init(&self, ctx: *const c_void, id: u32) -> Result {
        if !self.p.load(Ordering::Acquire).is_null() {
            return Ok(());
        }
        // SAFETY: allocates and initialises a waiter; `ctx` is only passed
        // back to nsvm_rs_apic_timer.
        let w = unsafe { nsvm_apic_waiter_new(ctx.cast_mut(), id as c_int) };
        if w.is_null() {
            return Err(ENOMEM);
        }
        if self.p.compare_exchange(core::ptr::null_mut(), w, Ordering::AcqRel, Ordering::Acquire).is_err() {
            // SAFETY: ours, never published.
            unsafe { nsvm_apic_waiter_free(w) };
        }
        Ok(())
    }

    fn get(&self) -> Option<*mut c_void> {
        let p = self.p.load(Ordering::Acquire);
        (!p.is_null()).then_some(p)
    }

    /// Arms the timer at absolute monotonic time `ns` (replacing any).
    pub(crate) fn timer_start(&self, ns: u64) {
        if let Some(w) = self.get() {
            // SAFETY: a live waiter (type invariant).
            unsafe { nsvm_apic_timer_start(w, ns) };
        }
    }

    /// Stops the timer.
    pub(crate) fn timer_cancel(&self) {
        if let Some(w) = self.get() {
            // SAFETY: a live waiter; called from process context.
            unsafe { nsvm_apic_timer_cancel(w) };
        }
    }

    /// Wakes the vCPU if it sleeps in `wait` (any context).
    pub(crate) fn wake(&self) {
        if let Some(w) = self.get() {
            // SAFETY: a live waiter.
            unsafe { nsvm_apic_wake(w) };
        }
    }

    /// Sleeps until `wake` was called since the last return or a signal
    /// arrives; false for a signal.
    pub(crate) fn wait(&self) -> bool {
        match self.get() {
            // SAFETY: a live waiter; process context without locks that a
            // waker needs (wakers take none).
            Some(w) => unsafe { nsvm_apic_wait(w) == 0 },
            None => true,
        }
    }
}

impl Drop for WaiterSlot {
    fn drop(&mut self) {
        if let Some(w) = self.get() {
            // SAFETY: ours (type invariant), freed once.
            unsafe { nsvm_apic_waiter_free(w) };
        }
    }
}

// SAFETY: the waiter's operations are safe from any thread (wait queue,
// hrtimer and atomics are the kernel's own synchronised objects).
unsafe impl Send for WaiterSlot {}
// SAFETY: as above.
unsafe impl Sync for WaiterSlot {}
