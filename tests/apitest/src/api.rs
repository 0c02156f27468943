// SPDX-License-Identifier: GPL-2.0
//! The basic UAPI cases: API version, vCPU ids, memory slots, ioctls on
//! the wrong fd, KVM_INTERRUPT.

use std::os::fd::AsRawFd;

use kvm_bindings::{kvm_userspace_memory_region, KVM_MEM_READONLY};
use nsvm_core::uapi::{cap, kvm};

use crate::{expect_errno, ioctl, region, small_vm, Env, Mem, R};

pub fn api_version(e: &Env) -> R {
    let k = e.kvm();
    let v = k.get_api_version();
    (v == 12).then_some(()).ok_or(format!("API version {v}"))
}

pub fn vcpu_ids(e: &Env) -> R {
    let k = e.kvm();
    let vm = k.create_vm().map_err(|x| format!("create vm: {x}"))?;
    let max = k.check_extension_raw(cap::MAX_VCPUS as _) as u64;
    let _a = vm.create_vcpu(0).map_err(|x| format!("vcpu 0: {x}"))?;
    let _b = vm.create_vcpu(1).map_err(|x| format!("vcpu 1: {x}"))?;
    expect_errno("duplicate vcpu id", ioctl(vm.as_raw_fd(), kvm::CREATE_VCPU, 1), libc::EEXIST)?;
    expect_errno("vcpu id = max", ioctl(vm.as_raw_fd(), kvm::CREATE_VCPU, max.max(4096)), libc::EINVAL)?;
    Ok(())
}

pub fn memslots(e: &Env) -> R {
    let k = e.kvm();
    let vm = k.create_vm().map_err(|x| x.to_string())?;
    let mem = Mem::new(0x20000);
    let u = mem.ptr as u64;
    let set = |r: kvm_userspace_memory_region| ioctl(vm.as_raw_fd(), kvm::SET_USER_MEMORY_REGION, &r as *const _ as u64);
    expect_errno("gpa not page aligned", set(region(0, 0x800, 0x1000, u, 0)), libc::EINVAL)?;
    expect_errno("size not page aligned", set(region(0, 0, 0x1800, u, 0)), libc::EINVAL)?;
    expect_errno("uaddr not page aligned", set(region(0, 0, 0x1000, u + 8, 0)), libc::EINVAL)?;
    expect_errno("unknown flag", set(region(0, 0, 0x1000, u, 1 << 7)), libc::EINVAL)?;
    expect_errno("delete a slot that does not exist", set(region(5, 0, 0, 0, 0)), libc::EINVAL)?;
    let nslots = k.check_extension_raw(cap::NR_MEMSLOTS as _) as u32;
    expect_errno("slot id beyond NR_MEMSLOTS", set(region(nslots.max(1) + 1, 0, 0x1000, u, 0)), libc::EINVAL)?;
    expect_errno("huge slot", set(region(0, 0, 1 << 50, u, 0)), libc::EINVAL)?;
    expect_errno("kernel address", set(region(0, 0, 0x1000, 0xffff_8000_0000_0000, 0)), libc::EINVAL)?;
    set(region(0, 0x10000, 0x10000, u, 0)).map_err(|x| format!("valid slot: errno {x}"))?;
    expect_errno("overlap", set(region(1, 0x1f000, 0x2000, u + 0x10000, 0)), libc::EEXIST)?;
    expect_errno("overlap below", set(region(1, 0xf000, 0x2000, u + 0x10000, 0)), libc::EEXIST)?;
    expect_errno("change size of an existing slot", set(region(0, 0x10000, 0x8000, u, 0)), libc::EINVAL)?;
    set(region(0, 0x40000, 0x10000, u, 0)).map_err(|x| format!("move: errno {x}"))?;
    set(region(1, 0x10000, 0x1000, u + 0x10000, KVM_MEM_READONLY)).map_err(|x| format!("read-only slot: errno {x}"))?;
    expect_errno("toggle READONLY", set(region(1, 0x10000, 0x1000, u + 0x10000, 0)), libc::EINVAL)?;
    set(region(0, 0x40000, 0, 0, 0)).map_err(|x| format!("delete: errno {x}"))?;
    expect_errno("bad pointer", ioctl(vm.as_raw_fd(), kvm::SET_USER_MEMORY_REGION, 0x10), libc::EFAULT)?;
    Ok(())
}

pub fn wrong_fds(e: &Env) -> R {
    let k = e.kvm();
    let (vm, vcpu, _m) = small_vm(&k, &[0xf4]);
    // Unknown system ioctls: EINVAL (kvm_dev_ioctl, kvm_arch_dev_ioctl).
    expect_errno("unknown system ioctl", ioctl(k.as_raw_fd(), 0xaeff, 0), libc::EINVAL)?;
    expect_errno("KVM_RUN on the system fd", ioctl(k.as_raw_fd(), kvm::RUN, 0), libc::EINVAL)?;
    expect_errno("KVM_GET_API_VERSION with an argument", ioctl(k.as_raw_fd(), kvm::GET_API_VERSION, 1), libc::EINVAL)?;
    expect_errno("KVM_RUN on the VM fd", ioctl(vm.as_raw_fd(), kvm::RUN, 0), libc::ENOTTY)?;
    // Unknown vCPU ioctls: EINVAL (KVM's kvm_arch_vcpu_ioctl); VM: ENOTTY.
    expect_errno("KVM_CREATE_VCPU on the vCPU fd", ioctl(vcpu.as_raw_fd(), kvm::CREATE_VCPU, 3), libc::EINVAL)?;
    expect_errno("KVM_CREATE_VM on the VM fd", ioctl(vm.as_raw_fd(), kvm::CREATE_VM, 0), libc::ENOTTY)?;
    expect_errno("unknown VM ioctl", ioctl(vm.as_raw_fd(), 0xae99, 0), libc::ENOTTY)?;
    expect_errno("unknown vCPU ioctl", ioctl(vcpu.as_raw_fd(), 0xaeee, 0), libc::EINVAL)?;
    expect_errno("API_VERSION on the vCPU fd", ioctl(vcpu.as_raw_fd(), kvm::GET_API_VERSION, 0), libc::EINVAL)?;
    let cap = ioctl(vm.as_raw_fd(), kvm::CHECK_EXTENSION, 3).map_err(|x| format!("CHECK_EXTENSION on VM fd: errno {x}"))?;
    (cap == 1).then_some(()).ok_or(format!("USER_MEMORY on VM fd = {cap}"))
}

/// KVM_INTERRUPT without an in-kernel irqchip: a second interrupt queued
/// before the first was injected replaces it (kvm_vcpu_ioctl_interrupt),
/// and KVM_GET_VCPU_EVENTS reports the one that will be injected.
pub fn interrupt_replaced(e: &Env) -> R {
    let k = e.kvm();
    let (_vm, vcpu, _m) = small_vm(&k, &[0xf4]);
    let irq = |v: u32| ioctl(vcpu.as_raw_fd(), kvm::INTERRUPT, &v as *const u32 as u64);
    irq(0x20).map_err(|x| format!("first KVM_INTERRUPT: errno {x}"))?;
    irq(0x21).map_err(|x| format!("second KVM_INTERRUPT: errno {x}"))?;
    expect_errno("KVM_INTERRUPT(256)", irq(256), libc::EINVAL)?;
    let ev = vcpu.get_vcpu_events().map_err(|x| x.to_string())?;
    if ev.interrupt.injected != 1 || ev.interrupt.nr != 0x21 {
        return Err(format!("after 0x20 then 0x21: interrupt injected {} nr {:#x}", ev.interrupt.injected, ev.interrupt.nr));
    }
    Ok(())
}
