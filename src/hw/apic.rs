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
    fn nsvm_apic_waiter_debug(w: *mut c_void, expires_ns: *mut u64) -> c_int;
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

    /// For dumps: (the host timer is queued, its expiry in ns, an event is
    /// noted and not yet consumed).
    pub(crate) fn debug(&self) -> Option<(bool, u64, bool)> {
        let w = self.get()?;
        let mut exp = 0u64;
        // SAFETY: a live waiter; reads its state only.
        let r = unsafe { nsvm_apic_waiter_debug(w, &mut exp) };
        Some((r & 1 != 0, exp, r & 2 != 0))
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

extern "C" {
    fn nsvm_irqfds_new(vm: *mut c_void) -> *mut c_void;
    fn nsvm_irqfd_assign(l: *mut c_void, fd: c_int, gsi: u32, valid: c_int, lo: u32, hi: u32, data: u32, resamplefd: c_int) -> c_int;
    fn nsvm_irqfds_has_resampler(l: *mut c_void, gsi: u32) -> c_int;
    fn nsvm_irqfds_resample(l: *mut c_void, gsi: u32);
    fn nsvm_irqfd_deassign(l: *mut c_void, fd: c_int, gsi: u32) -> c_int;
    fn nsvm_irqfds_reroute(l: *mut c_void, routes: *const u32, n: u32);
    fn nsvm_irqfds_free(l: *mut c_void);
}

/// A VM's irqfds (`KVM_IRQFD`, C: apic_shim.c): eventfds whose signal
/// raises a route's MSI through `nsvm_rs_irqfd_fire` (fops.rs) with the VM
/// given at `init`.
///
/// # Invariants
///
/// `p` is null or a list from `nsvm_irqfds_new`, owned by this value and
/// freed once, on drop (which unhooks every irqfd from its eventfd first,
/// so no callback runs afterwards); it never changes once non-null.
pub(crate) struct IrqfdList {
    p: AtomicPtr<c_void>,
}

impl IrqfdList {
    /// No list yet.
    pub(crate) const fn new() -> Self {
        Self { p: AtomicPtr::new(core::ptr::null_mut()) }
    }

    /// Creates the list; callbacks get `vm`, which the caller keeps alive
    /// until this value is dropped.
    pub(crate) fn init(&self, vm: *const c_void) -> Result {
        // SAFETY: allocates a list; `vm` is only passed back to Rust.
        let l = unsafe { nsvm_irqfds_new(vm.cast_mut()) };
        if l.is_null() {
            return Err(ENOMEM);
        }
        if self.p.compare_exchange(core::ptr::null_mut(), l, Ordering::AcqRel, Ordering::Acquire).is_err() {
            // SAFETY: ours, never published.
            unsafe { nsvm_irqfds_free(l) };
        }
        Ok(())
    }

    fn get(&self) -> Result<*mut c_void> {
        let p = self.p.load(Ordering::Acquire);
        if p.is_null() {
            Err(ENOMEM)
        } else {
            Ok(p)
        }
    }

    /// Assigns eventfd `fd` to `gsi`, whose route is `msi` (address_lo,
    /// address_hi, data) if it has one (otherwise a signal raises the GSI
    /// through `nsvm_rs_irqfd_inject` from a work item); `resamplefd` (>=
    /// 0) is `KVM_IRQFD_FLAG_RESAMPLE`'s eventfd.
    pub(crate) fn assign(&self, fd: i32, gsi: u32, msi: Option<(u32, u32, u32)>, resamplefd: i32) -> Result {
        let l = self.get()?;
        let (v, (lo, hi, d)) = match msi {
            Some(m) => (1, m),
            None => (0, (0, 0, 0)),
        };
        // SAFETY: a live list (type invariant); process context.
        let r = unsafe { nsvm_irqfd_assign(l, fd, gsi, v, lo, hi, d, resamplefd) };
        if r < 0 {
            return Err(Error::from_errno(r));
        }
        Ok(())
    }

    /// Removes the irqfds of eventfd `fd` and `gsi`.
    pub(crate) fn deassign(&self, fd: i32, gsi: u32) -> Result {
        let l = self.get()?;
        // SAFETY: a live list; process context.
        let r = unsafe { nsvm_irqfd_deassign(l, fd, gsi) };
        if r < 0 {
            return Err(Error::from_errno(r));
        }
        Ok(())
    }

    /// Whether a resampling irqfd is assigned to `gsi` (any context).
    pub(crate) fn has_resampler(&self, gsi: u32) -> bool {
        match self.get() {
            // SAFETY: a live list; the C side locks with interrupts saved.
            Ok(l) => unsafe { nsvm_irqfds_has_resampler(l, gsi) > 0 },
            Err(_) => false,
        }
    }

    /// Signals the resample eventfds of `gsi` (process context, no
    /// spinlock held: takes the list's mutex).
    pub(crate) fn resample(&self, gsi: u32) {
        if let Ok(l) = self.get() {
            // SAFETY: a live list; process context without spinlocks (the
            // callers run after the irqchip lock is released).
            unsafe { nsvm_irqfds_resample(l, gsi) };
        }
    }

    /// New routes (gsi, address_lo, address_hi, data quadruples).
    pub(crate) fn reroute(&self, routes: &[[u32; 4]]) {
        if let Ok(l) = self.get() {
            // SAFETY: a live list; `routes` is read for its length only.
            unsafe { nsvm_irqfds_reroute(l, routes.as_ptr().cast(), routes.len() as u32) };
        }
    }
}

impl Drop for IrqfdList {
    fn drop(&mut self) {
        let p = self.p.load(Ordering::Acquire);
        if !p.is_null() {
            // SAFETY: ours (type invariant), freed once; process context.
            unsafe { nsvm_irqfds_free(p) };
        }
    }
}

// SAFETY: the list's operations lock inside C and may run from any thread.
unsafe impl Send for IrqfdList {}
// SAFETY: as above.
unsafe impl Sync for IrqfdList {}
