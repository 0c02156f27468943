// SPDX-License-Identifier: GPL-2.0
//! A VM's MMU notifier on its creator's address space (`mmu_notifier`,
//! registered in src/shim.c): the kernel calls back before a range of the
//! process's memory changes (munmap, MADV_DONTNEED, swap-out, migration,
//! THP split/collapse, KSM, copy-on-write) and when the address space goes
//! away, so that the VM's NPTs never hold a translation the process lost.

use core::sync::atomic::{AtomicPtr, Ordering};

use kernel::ffi::{c_int, c_void};
use kernel::prelude::*;

use super::task::MmRef;

extern "C" {
    fn nsvm_mmu_notifier_register(ctx: *mut c_void, err: *mut c_int) -> *mut c_void;
    fn nsvm_mmu_notifier_unregister(notifier: *mut c_void, mm: *mut c_void);
}

/// A registration, or none.
///
/// # Invariants
///
/// `n` is null or what `nsvm_mmu_notifier_register` returned for the mm of
/// the `MmRef` given to `unregister`, unregistered once (then null again).
pub(crate) struct Notifier {
    n: AtomicPtr<c_void>,
}

impl Notifier {
    /// Not registered.
    pub(crate) const fn empty() -> Self {
        Self { n: AtomicPtr::new(core::ptr::null_mut()) }
    }

    /// Registers on the calling process's address space; the callbacks
    /// (`nsvm_rs_mmu_*` in `fops.rs`) receive `ctx`.
    ///
    /// # Safety
    ///
    /// The calling process's mm is the one `mm` refers to (the caller's
    /// `unregister` passes it); `ctx` stays valid for the callbacks until
    /// `unregister` has returned; called at most once.
    pub(crate) unsafe fn register(&self, ctx: *const c_void) -> Result {
        let mut err: c_int = 0;
        // SAFETY: `err` is a valid slot; `ctx` is only handed back to the callbacks.
        let n = unsafe { nsvm_mmu_notifier_register(ctx.cast_mut(), &mut err) };
        if n.is_null() {
            return Err(Error::from_errno(if err < 0 { err } else { -12 }));
        }
        // INVARIANT: the registration, on the caller's mm.
        self.n.store(n, Ordering::Release);
        Ok(())
    }

    /// Unregisters (running the release callback if the address space has
    /// not gone yet) and waits until no callback runs any more.
    pub(crate) fn unregister(&self, mm: &MmRef) {
        let n = self.n.swap(core::ptr::null_mut(), Ordering::AcqRel);
        if n.is_null() {
            return;
        }
        // SAFETY: by the type invariant `n` is a live registration on the mm
        // `mm` holds a reference to (mmgrab keeps the mm_struct).
        unsafe { nsvm_mmu_notifier_unregister(n, mm.as_ptr()) };
    }
}
