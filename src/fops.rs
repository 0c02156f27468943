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

/// Gives `vm` to a new fd.
pub(crate) fn new_vm_fd(vm: Arc<Vm>) -> Result<i32> {
    let raw = Arc::into_raw(vm);
    // SAFETY: `raw` comes from `Arc::into_raw`; on success the file owns it
    // and `nsvm_rs_vm_release` takes it back.
    match unsafe { hw::vm_fd(raw.cast()) } {
        Ok(fd) => Ok(fd),
        Err(e) => {
            // SAFETY: no file was created, so the reference is still ours.
            drop(unsafe { Arc::from_raw(raw) });
            Err(e)
        }
    }
}

/// Gives `vcpu` to a new fd.
pub(crate) fn new_vcpu_fd(vcpu: Arc<Vcpu>) -> Result<i32> {
    let raw = Arc::into_raw(vcpu);
    // SAFETY: as in `new_vm_fd`, with `nsvm_rs_vcpu_release`.
    match unsafe { hw::vcpu_fd(raw.cast()) } {
        Ok(fd) => Ok(fd),
        Err(e) => {
            // SAFETY: no file was created, so the reference is still ours.
            drop(unsafe { Arc::from_raw(raw) });
            Err(e)
        }
    }
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
    ret(vcpu.ioctl(cmd, arg as usize))
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
