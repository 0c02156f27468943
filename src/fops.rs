// SPDX-License-Identifier: GPL-2.0
//! Leaf module: the file-operation entry points the C shim's
//! `file_operations` call (src/shim.c), and the hand-over of `Arc`s to files.
//!
//! A VM or vCPU fd owns one reference of its `Arc`, stored as the file's
//! `private_data` (from `Arc::into_raw`) and given back in `release`.

use kernel::bindings;
use kernel::ffi::{c_int, c_long, c_uint, c_ulong, c_void};
use kernel::prelude::*;
use kernel::sync::{Arc, ArcBorrow};

use crate::hw;
use crate::vcpu::Vcpu;
use crate::vm::Vm;

fn ret(r: Result<isize>) -> c_long {
    match r {
        Ok(v) => v as c_long,
        Err(e) => e.to_errno() as c_long,
    }
}

/// `unlocked_ioctl` of `/dev/nsvm`.
#[no_mangle]
extern "C" fn nsvm_rs_sys_ioctl(_file: *mut bindings::file, cmd: c_uint, arg: c_ulong) -> c_long {
    ret(crate::dev::system_ioctl(cmd, arg as usize))
}

/// Gives one reference of `obj` to a new file made by `make`, whose
/// `release` takes it back with `Arc::from_raw`.
///
/// # Safety
///
/// `make` must create a file whose private data is the pointer it is given
/// and whose release callback drops it as an `Arc<T>`, or fail creating none.
unsafe fn give_to_file<T>(obj: Arc<T>, make: impl FnOnce(*const c_void) -> Result<i32>) -> Result<i32> {
    let raw = Arc::into_raw(obj);
    match make(raw.cast()) {
        Ok(fd) => Ok(fd),
        Err(e) => {
            // SAFETY: no file was created, so the reference is still ours.
            drop(unsafe { Arc::from_raw(raw) });
            Err(e)
        }
    }
}

/// Gives `vm` to a new VM fd.
pub(crate) fn new_vm_fd(vm: Arc<Vm>) -> Result<i32> {
    // SAFETY: VM files keep the pointer as private data and
    // `nsvm_rs_vm_release` drops it as an Arc<Vm>.
    unsafe { give_to_file(vm, |p| hw::vm_fd(p)) }
}

/// Gives `vcpu` to a new vCPU fd.
pub(crate) fn new_vcpu_fd(vcpu: Arc<Vcpu>) -> Result<i32> {
    // SAFETY: as above, with `nsvm_rs_vcpu_release`.
    unsafe { give_to_file(vcpu, |p| hw::vcpu_fd(p)) }
}

/// The VM of a VM file.
///
/// # Safety
///
/// `file` is a VM file (its `private_data` came from `new_vm_fd`) that stays
/// open for the returned lifetime.
unsafe fn vm_of<'a>(file: *mut bindings::file) -> ArcBorrow<'a, Vm> {
    // SAFETY: per the caller, private_data is a live `Arc<Vm>` pointer.
    unsafe { ArcBorrow::from_raw((*file).private_data.cast::<Vm>()) }
}

/// `unlocked_ioctl` of a VM fd.
#[no_mangle]
extern "C" fn nsvm_rs_vm_ioctl(file: *mut bindings::file, cmd: c_uint, arg: c_ulong) -> c_long {
    // SAFETY: the VM fops are only installed on VM files; the file is open
    // during its ioctl.
    let vm = unsafe { vm_of(file) };
    ret(Arc::<Vm>::from(vm).ioctl(cmd, arg as usize))
}

/// `release` of a VM fd: drops the file's reference.
#[no_mangle]
extern "C" fn nsvm_rs_vm_release(_inode: *mut bindings::inode, file: *mut bindings::file) -> c_int {
    // SAFETY: release runs once, after the last use of the file; the
    // reference stored by `new_vm_fd` is returned to an `Arc` and dropped.
    drop(unsafe { Arc::from_raw((*file).private_data.cast::<Vm>()) });
    0
}

/// The vCPU of a vCPU file.
///
/// # Safety
///
/// As for [`vm_of`], for vCPU files.
unsafe fn vcpu_of<'a>(file: *mut bindings::file) -> ArcBorrow<'a, Vcpu> {
    // SAFETY: per the caller.
    unsafe { ArcBorrow::from_raw((*file).private_data.cast::<Vcpu>()) }
}

/// `unlocked_ioctl` of a vCPU fd.
#[no_mangle]
extern "C" fn nsvm_rs_vcpu_ioctl(file: *mut bindings::file, cmd: c_uint, arg: c_ulong) -> c_long {
    // SAFETY: vCPU fops are only installed on vCPU files, open during ioctl.
    let vcpu = unsafe { vcpu_of(file) };
    ret(Arc::<Vcpu>::from(vcpu).ioctl(cmd, arg as usize))
}

/// `release` of a vCPU fd.
#[no_mangle]
extern "C" fn nsvm_rs_vcpu_release(_inode: *mut bindings::inode, file: *mut bindings::file) -> c_int {
    // SAFETY: as for the VM release.
    drop(unsafe { Arc::from_raw((*file).private_data.cast::<Vcpu>()) });
    0
}

/// Page `pgoff` of a vCPU mmap (run page, PIO page) for the fault handler.
#[no_mangle]
extern "C" fn nsvm_rs_vcpu_page(priv_: *mut c_void, pgoff: c_ulong) -> *mut c_void {
    // SAFETY: `priv_` is the private_data of a vCPU file with a live mapping,
    // which holds a reference to the file.
    let vcpu = unsafe { ArcBorrow::<Vcpu>::from_raw(priv_.cast::<Vcpu>()) };
    vcpu.mmap_page(pgoff as usize).unwrap_or(core::ptr::null_mut())
}

/// Gives a reference of `vm` to a new stats fd.
pub(crate) fn new_vm_stats_fd(vm: Arc<Vm>) -> Result<i32> {
    // SAFETY: VM stats files drop their pointer as an Arc<Vm>
    // (`nsvm_rs_vm_stats_release`).
    unsafe { give_to_file(vm, |p| hw::stats_fd(p, false)) }
}

/// Gives a reference of `vcpu` to a new stats fd.
pub(crate) fn new_vcpu_stats_fd(vcpu: Arc<Vcpu>) -> Result<i32> {
    // SAFETY: vCPU stats files drop their pointer as an Arc<Vcpu>.
    unsafe { give_to_file(vcpu, |p| hw::stats_fd(p, true)) }
}

/// Copies `[*pos, *pos + len)` of `file` (the whole stats file) to `buf`.
///
/// # Safety
///
/// `pos` is the valid position pointer the VFS passes to `read`.
unsafe fn read_window(file: &[u8], buf: *mut c_void, len: usize, pos: *mut bindings::loff_t) -> isize {
    // SAFETY: per the caller.
    let p = unsafe { *pos };
    if p < 0 {
        return EINVAL.to_errno() as isize;
    }
    let start = core::cmp::min(p as usize, file.len());
    let n = core::cmp::min(len, file.len() - start);
    let mut w = kernel::uaccess::UserSlice::new(kernel::uaccess::UserPtr::from_ptr(buf), n).writer();
    if let Err(e) = w.write_slice(&file[start..start + n]) {
        return e.to_errno() as isize;
    }
    // SAFETY: per the caller.
    unsafe { *pos = (start + n) as bindings::loff_t };
    n as isize
}

/// `read` of a VM stats fd.
#[no_mangle]
extern "C" fn nsvm_rs_vm_stats_read(file: *mut bindings::file, buf: *mut c_void, len: usize, pos: *mut bindings::loff_t) -> isize {
    // SAFETY: VM stats fops are only installed on VM stats files (private
    // data from `new_vm_stats_fd`), open during read.
    let vm = unsafe { vm_of(file) };
    match vm.stats_file() {
        // SAFETY: `pos` comes from the VFS.
        Ok(f) => unsafe { read_window(&f, buf, len, pos) },
        Err(e) => e.to_errno() as isize,
    }
}

/// `release` of a VM stats fd.
#[no_mangle]
extern "C" fn nsvm_rs_vm_stats_release(_inode: *mut bindings::inode, file: *mut bindings::file) -> c_int {
    // SAFETY: release runs once; returns the reference of `new_vm_stats_fd`.
    drop(unsafe { Arc::from_raw((*file).private_data.cast::<Vm>()) });
    0
}

/// `read` of a vCPU stats fd.
#[no_mangle]
extern "C" fn nsvm_rs_vcpu_stats_read(file: *mut bindings::file, buf: *mut c_void, len: usize, pos: *mut bindings::loff_t) -> isize {
    // SAFETY: vCPU stats fops are only installed on vCPU stats files.
    let vcpu = unsafe { vcpu_of(file) };
    match vcpu.stats_file() {
        // SAFETY: `pos` comes from the VFS.
        Ok(f) => unsafe { read_window(&f, buf, len, pos) },
        Err(e) => e.to_errno() as isize,
    }
}

/// `release` of a vCPU stats fd.
#[no_mangle]
extern "C" fn nsvm_rs_vcpu_stats_release(_inode: *mut bindings::inode, file: *mut bindings::file) -> c_int {
    // SAFETY: release runs once; returns the reference of `new_vcpu_stats_fd`.
    drop(unsafe { Arc::from_raw((*file).private_data.cast::<Vcpu>()) });
    0
}

/// `read` of a vCPU's debugfs vmcb file.
#[no_mangle]
extern "C" fn nsvm_rs_vmcb_read(vcpu: *mut c_void, buf: *mut c_void, len: usize, pos: *mut bindings::loff_t) -> isize {
    // SAFETY: the file's private pointer is the vCPU, valid until its
    // debugfs entry (dropped first in the vCPU) is removed, which waits for
    // this read.
    let vcpu = unsafe { &*vcpu.cast::<Vcpu>() };
    match vcpu.vmcb_dump() {
        // SAFETY: `pos` comes from the VFS.
        Ok(t) => unsafe { read_window(&t, buf, len, pos) },
        Err(e) => e.to_errno() as isize,
    }
}
