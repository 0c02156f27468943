// SPDX-License-Identifier: GPL-2.0
//! Files: the `/dev/nsvm` node and the anonymous-inode fds of VMs, vCPUs and
//! statistics. The fd-creation leaf: `vm` and `vcpu` hand their objects to
//! new files through [`new_fd`]/[`new_stats_fd`] without knowing the file
//! operations, which live in `fops` (called from C).

use kernel::error::to_result;
use kernel::ffi::{c_int, c_void};
use kernel::prelude::*;
use kernel::sync::Arc;

extern "C" {
    fn nsvm_misc_register(mode: u16) -> c_int;
    fn nsvm_misc_deregister();
    fn nsvm_vm_fd(vm: *mut c_void) -> c_int;
    fn nsvm_vcpu_fd(vcpu: *mut c_void) -> c_int;
    fn nsvm_stats_fd(obj: *mut c_void, vcpu: c_int) -> c_int;
}

/// The `/dev/nsvm` device node.
///
/// # Invariants
///
/// While a value exists the shim's miscdevice is registered; there is at most
/// one value (registering twice fails with `EBUSY` from `misc_register`).
pub(crate) struct DevNode(());

impl DevNode {
    /// Registers `/dev/nsvm` with permission bits `mode` (0: default 0600).
    pub(crate) fn register(mode: u16) -> Result<Self> {
        // SAFETY: registers the shim's static miscdevice; a second registration
        // of the same miscdevice is refused by the misc core.
        to_result(unsafe { nsvm_misc_register(mode) })?;
        Ok(Self(()))
    }
}

impl Drop for DevNode {
    fn drop(&mut self) {
        // SAFETY: by the type invariant the device is registered.
        unsafe { nsvm_misc_deregister() }
    }
}

/// The file operations a new fd gets (`shim.c`, calling into `fops`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    /// VM fd (and VM statistics fd).
    Vm,
    /// vCPU fd (and vCPU statistics fd).
    Vcpu,
}

/// An object that files of kind `KIND` own one reference of.
///
/// # Safety
///
/// The C file operations of `KIND` and of its statistics files must use the
/// file's private data only as a pointer from `Arc::<Self>::into_raw`, and
/// their `release` must give it back (`Arc::from_raw`) exactly once.
pub(crate) unsafe trait FileObject: Sized {
    /// Which file operations files of this object get.
    const KIND: FileKind;
}

/// Gives one reference of `obj` to a file made by `make`.
///
/// # Safety
///
/// `make` must create a file whose private data is the pointer it is given
/// and whose release drops it as an `Arc<T>`, or fail creating none.
unsafe fn give_to_file<T>(obj: Arc<T>, make: impl FnOnce(*mut c_void) -> c_int) -> Result<i32> {
    let raw = Arc::into_raw(obj);
    let fd = make(raw.cast_mut().cast());
    if fd < 0 {
        // SAFETY: no file was created, so the reference is still ours.
        drop(unsafe { Arc::from_raw(raw) });
        return Err(Error::from_errno(fd));
    }
    Ok(fd)
}

/// A new fd (VM or vCPU, by `T::KIND`) owning one reference of `obj`.
pub(crate) fn new_fd<T: FileObject>(obj: Arc<T>) -> Result<i32> {
    // SAFETY: `T: FileObject` promises that the fops of `T::KIND` keep the
    // pointer as private data and release it as an `Arc<T>`.
    unsafe {
        give_to_file(obj, |p| match T::KIND {
            // SAFETY: `p` is an `Arc<T>` pointer for the new file to own.
            FileKind::Vm => nsvm_vm_fd(p),
            // SAFETY: as above.
            FileKind::Vcpu => nsvm_vcpu_fd(p),
        })
    }
}

/// A new statistics fd (KVM's binary stats format) of `obj`, owning one
/// reference of it.
pub(crate) fn new_stats_fd<T: FileObject>(obj: Arc<T>) -> Result<i32> {
    // SAFETY: as for `new_fd`, with the statistics fops of `T::KIND`.
    unsafe { give_to_file(obj, |p| nsvm_stats_fd(p, c_int::from(T::KIND == FileKind::Vcpu))) }
}
