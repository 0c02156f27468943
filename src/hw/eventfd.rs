// SPDX-License-Identifier: GPL-2.0
//! eventfds userspace hands to `KVM_IOEVENTFD`: a counted reference to the
//! kernel's `eventfd_ctx`, signalled when a guest write hits.

use kernel::ffi::c_void;
use kernel::prelude::*;

extern "C" {
    fn nsvm_eventfd_get(fd: i32) -> *mut c_void;
    fn nsvm_eventfd_signal(ctx: *mut c_void);
    fn nsvm_eventfd_put(ctx: *mut c_void);
}

/// A reference to an eventfd context.
///
/// Invariant: `ctx` is a valid `struct eventfd_ctx *` on which this object
/// holds one reference (taken by `eventfd_ctx_fdget`, dropped on drop).
pub(crate) struct EventFd {
    ctx: *mut c_void,
}

// SAFETY: eventfd contexts are reference counted and signalled under their
// own lock; any thread may signal or drop the reference.
unsafe impl Send for EventFd {}
// SAFETY: as above, `signal` takes `&self` and the kernel serializes it.
unsafe impl Sync for EventFd {}

impl EventFd {
    /// The eventfd behind `fd` in the current process: `EBADF` when `fd` is
    /// not open, `EINVAL` when it is not an eventfd (as `eventfd_ctx_fdget`).
    pub(crate) fn get(fd: i32) -> Result<Self> {
        // SAFETY: no preconditions; the result is a context or an ERR_PTR.
        let p = unsafe { nsvm_eventfd_get(fd) };
        let v = p as isize;
        if (-4095..0).contains(&v) {
            return Err(Error::from_errno(v as i32));
        }
        Ok(EventFd { ctx: p })
    }

    /// Whether `self` and `other` are the same eventfd.
    pub(crate) fn same(&self, other: &EventFd) -> bool {
        self.ctx == other.ctx
    }

    /// Adds 1 to the counter and wakes the waiters.
    pub(crate) fn signal(&self) {
        // SAFETY: `ctx` is valid and referenced (type invariant).
        unsafe { nsvm_eventfd_signal(self.ctx) };
    }
}

impl Drop for EventFd {
    fn drop(&mut self) {
        // SAFETY: drops the reference this object holds (type invariant).
        unsafe { nsvm_eventfd_put(self.ctx) };
    }
}
