// SPDX-License-Identifier: GPL-2.0
//! The file-operation entry points the C shim's `file_operations` call
//! (src/shim.c): the top of the module, called by nobody in Rust.
//!
//! A VM or vCPU fd owns one reference of its `Arc`, stored as the file's
//! `private_data` (from `Arc::into_raw` in `hw::files`) and given back in
//! `release`; the `FileObject` impls here are the promise that makes that
//! hand-over sound.

use kernel::bindings;
use kernel::ffi::{c_int, c_long, c_uint, c_ulong, c_void};
use kernel::prelude::*;
use kernel::sync::{Arc, ArcBorrow};

use crate::hw::files::{FileKind, FileObject};
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
    ret(crate::dev::system_ioctl(cmd, arg))
}

// SAFETY: the VM file operations (`nsvm_rs_vm_*`, `nsvm_rs_vm_stats_*`
// below) use the private data only as an `Arc<Vm>` pointer and give it back
// once, in release.
unsafe impl FileObject for Vm {
    const KIND: FileKind = FileKind::Vm;
}

// SAFETY: as above, for the vCPU file operations (`nsvm_rs_vcpu_*`).
unsafe impl FileObject for Vcpu {
    const KIND: FileKind = FileKind::Vcpu;
}

/// The VM of a VM file.
///
/// # Safety
///
/// `file` is a VM file (its `private_data` came from `hw::files::new_fd`) that stays
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
    ret(Arc::<Vm>::from(vm).ioctl(cmd, arg))
}

/// `release` of a VM fd: drops the file's reference.
#[no_mangle]
extern "C" fn nsvm_rs_vm_release(_inode: *mut bindings::inode, file: *mut bindings::file) -> c_int {
    // SAFETY: release runs once, after the last use of the file; the
    // reference stored by `hw::files::new_fd` is returned to an `Arc` and dropped.
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
    ret(Arc::<Vcpu>::from(vcpu).ioctl(cmd, arg))
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
    vcpu.mmap_page(pgoff).unwrap_or(core::ptr::null_mut())
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
    // data from `hw::files::new_stats_fd`), open during read.
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
    // SAFETY: release runs once; returns the reference of `hw::files::new_stats_fd`.
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
    // SAFETY: release runs once; returns the reference of `hw::files::new_stats_fd`.
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

/// The VM of an MMU notifier callback.
///
/// # Safety
///
/// `vm` is the pointer `Vm::create` registered the notifier with: the VM
/// stays whole until its drop has unregistered the notifier, which waits
/// for every callback to return.
unsafe fn vm_of_notifier<'a>(vm: *mut c_void) -> &'a Vm {
    // SAFETY: per the caller.
    unsafe { &*vm.cast::<Vm>() }
}

/// `invalidate_range_start` of a VM's MMU notifier.
#[no_mangle]
extern "C" fn nsvm_rs_mmu_invalidate_start(vm: *mut c_void, start: c_ulong, end: c_ulong) {
    // SAFETY: called by the VM's notifier (src/shim.c) with its pointer.
    unsafe { vm_of_notifier(vm) }.invalidate_start(start as u64, end as u64);
}

/// `invalidate_range_end` of a VM's MMU notifier.
#[no_mangle]
extern "C" fn nsvm_rs_mmu_invalidate_end(vm: *mut c_void, start: c_ulong, end: c_ulong) {
    // SAFETY: as above.
    unsafe { vm_of_notifier(vm) }.invalidate_end(start as u64, end as u64);
}

/// `release` of a VM's MMU notifier.
#[no_mangle]
extern "C" fn nsvm_rs_mmu_release(vm: *mut c_void) {
    // SAFETY: as above.
    unsafe { vm_of_notifier(vm) }.release();
}

/// The hrtimer of an in-kernel APIC expired (src/apic_shim.c, hardirq
/// context): posts the timer event to vCPU `id`'s mailbox, wakes it and
/// kicks it out of guest mode.
#[no_mangle]
extern "C" fn nsvm_rs_apic_timer(vm: *mut c_void, id: c_int) {
    // SAFETY: `vm` is the VM whose bus holds this waiter (`Vcpu::create`
    // passes `Arc::as_ptr` of it): the waiter's drop, part of the VM's,
    // cancels the timer and waits for a running callback before the VM's
    // memory goes, so the VM is alive here.
    let vm = unsafe { &*vm.cast::<Vm>() };
    let id = id as u32;
    if let Some(mode) = vm.guest_modes.get(id) {
        vm.apic.timer_fired(id, mode);
    }
}

/// An irqfd's eventfd was signalled (src/apic_shim.c, any context, the
/// eventfd's wait-queue lock held): raises the MSI of its route.
#[no_mangle]
extern "C" fn nsvm_rs_irqfd_fire(vm: *mut c_void, lo: u32, hi: u32, data: u32) {
    // SAFETY: `vm` is the VM whose `irqfds` list holds this irqfd: the
    // list's drop, first in the VM's, unhooks every irqfd (no callback runs
    // afterwards) before the rest of the VM goes.
    let vm = unsafe { &*vm.cast::<Vm>() };
    let _ = vm.deliver_msi(&nsvm_core::lapic::Irq::from_msi(lo, hi, data, vm.x2apic_format()));
}

/// The PIT's hrtimer expired (src/pit_shim.c, hardirq context): counted
/// for the PIT's work, which the C side queues next.
#[no_mangle]
extern "C" fn nsvm_rs_pit_timer(vm: *mut c_void) {
    // SAFETY: `vm` is the VM whose `pit` holds this timer (`create_pit`
    // passes its address): the timer's drop, first in the PIT's and before
    // the fields the work uses, cancels it and waits for the work before
    // the VM's memory goes, so the VM is alive here.
    let vm = unsafe { &*vm.cast::<Vm>() };
    vm.pit_timer_fired();
}

/// The PIT's work (src/pit_shim.c, process context): raises IRQ 0 as the
/// reinjection accounting allows.
#[no_mangle]
extern "C" fn nsvm_rs_pit_work(vm: *mut c_void) {
    // SAFETY: as above (the drop waits for the work with cancel_work_sync).
    let vm = unsafe { &*vm.cast::<Vm>() };
    vm.pit_work();
}

/// An irqfd without an MSI route was signalled (src/apic_shim.c, its work
/// item: process context): raises its GSI through the irqchip.
#[no_mangle]
extern "C" fn nsvm_rs_irqfd_inject(vm: *mut c_void, gsi: u32, resample: c_int) {
    // SAFETY: `vm` is the VM whose `irqfds` list holds this irqfd: the
    // list's drop, first in the VM's, cancels every irqfd's work item
    // (waiting for a running one) before the rest of the VM goes.
    let vm = unsafe { &*vm.cast::<Vm>() };
    vm.irqfd_inject(gsi, resample != 0);
}
