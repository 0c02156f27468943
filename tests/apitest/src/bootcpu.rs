// SPDX-License-Identifier: GPL-2.0
//! `KVM_SET_BOOT_CPU_ID` (`KVM_CAP_SET_BOOT_CPU_ID`), run the same way on
//! /dev/nsvm and /dev/kvm (the `apic` suite runs both in one boot): KVM's
//! errnos (EBUSY once a vCPU exists, EINVAL beyond `KVM_CAP_MAX_VCPU_ID`,
//! the limit itself accepted), and what the boot CPU id decides — the
//! RESET value of IA32_APIC_BASE.BSP, the initial MP state with an
//! in-kernel APIC, LINT0 in ExtINT mode — and what the BSP bit as it is now
//! decides: where INIT leaves a vCPU (BSP runs on at the reset vector, an
//! AP waits for a SIPI) and KVM_SET_SREGS's reset-vector rule.

use std::os::fd::AsRawFd;

use kvm_bindings::{kvm_msr_entry, Msrs};
use kvm_ioctls::{VcpuExit, VcpuFd, VmFd};
use nsvm_core::uapi::{cap, kvm};

use super::apic::{enable_split, get_lapic, mp_state, reg, signal_msi};
use super::{expect_errno, ioctl, region, Env, Mem, R};

const RUNNABLE: u32 = 0;
const UNINITIALIZED: u32 = 1;
const INIT_RECEIVED: u32 = 2;
/// IA32_APIC_BASE after RESET: enabled at 0xfee00000, BSP bit 8.
const BASE_AP: u64 = 0xfee0_0800;
const BASE_BSP: u64 = 0xfee0_0900;

fn set_boot_cpu(vm: &VmFd, id: u64) -> Result<i64, i32> {
    ioctl(vm.as_raw_fd(), kvm::SET_BOOT_CPU_ID, id)
}

fn apic_base(v: &VcpuFd) -> Result<u64, String> {
    let mut m = Msrs::from_entries(&[kvm_msr_entry { index: 0x1b, ..Default::default() }]).unwrap();
    match v.get_msrs(&mut m) {
        Ok(1) => Ok(m.as_slice()[0].data),
        x => Err(format!("GET_MSRS(APIC_BASE): {x:?}")),
    }
}

fn set_apic_base(v: &VcpuFd, val: u64) -> R {
    let m = Msrs::from_entries(&[kvm_msr_entry { index: 0x1b, reserved: 0, data: val }]).unwrap();
    match v.set_msrs(&m) {
        Ok(1) => Ok(()),
        x => Err(format!("SET_MSRS(APIC_BASE {val:#x}): {x:?}")),
    }
}

/// vCPU `what`: MP state `mp` and APIC_BASE `base` (MSR and KVM_GET_SREGS).
fn expect_vcpu(what: &str, v: &VcpuFd, mp: u32, base: u64) -> R {
    let (m, b) = (mp_state(v)?, apic_base(v)?);
    let sb = v.get_sregs().map_err(|x| x.to_string())?.apic_base;
    if (m, b, sb) != (mp, base, base) {
        return Err(format!("{what}: MP state {m}, APIC_BASE {b:#x} (sregs {sb:#x}); expected {mp}, {base:#x}"));
    }
    Ok(())
}

/// `KVM_SIGNAL_MSI` of delivery mode `mode` (5 INIT, 6 SIPI) with `vector`
/// to APIC `dest` (physical): must reach exactly that APIC.
fn msi(vm: &VmFd, dest: u32, mode: u32, vector: u32) -> R {
    match signal_msi(vm, 0xfee0_0000 | (dest << 12), 0, (mode << 8) | vector, 0) {
        Ok(1) => Ok(()),
        x => Err(format!("KVM_SIGNAL_MSI(mode {mode}, APIC {dest}): {x:?}, expected 1")),
    }
}

fn expect_out(v: &mut VcpuFd, port: u16, what: &str) -> R {
    match v.run() {
        Ok(VcpuExit::IoOut(p, _)) if p == port => Ok(()),
        x => Err(format!("{what}: {x:?}, expected OUT to {port:#x}")),
    }
}

pub fn apic_boot_cpu(e: &Env) -> R {
    let k = e.kvm();
    let sys = k.check_extension_raw(u64::from(cap::SET_BOOT_CPU_ID) as _);
    let max = k.check_extension_raw(u64::from(cap::MAX_VCPU_ID) as _) as u64;
    let vm = k.create_vm().map_err(|x| x.to_string())?;
    let on_vm = ioctl(vm.as_raw_fd(), kvm::CHECK_EXTENSION, u64::from(cap::SET_BOOT_CPU_ID)).map_err(|x| format!("errno {x}"))?;
    if sys != 1 || on_vm != 1 || max < 4 {
        return Err(format!("KVM_CAP_SET_BOOT_CPU_ID {sys} (VM {on_vm}), KVM_CAP_MAX_VCPU_ID {max}"));
    }

    // Errnos before any vCPU: beyond the limit EINVAL (the whole unsigned
    // long), the limit itself accepted (KVM compares with `>`), any number
    // of times; a creation that failed does not count.
    expect_errno("KVM_SET_BOOT_CPU_ID(max + 1)", set_boot_cpu(&vm, max + 1), libc::EINVAL)?;
    expect_errno("KVM_SET_BOOT_CPU_ID(1 << 32)", set_boot_cpu(&vm, 1 << 32), libc::EINVAL)?;
    expect_errno("KVM_SET_BOOT_CPU_ID(-1)", set_boot_cpu(&vm, u64::MAX), libc::EINVAL)?;
    set_boot_cpu(&vm, max).map_err(|x| format!("KVM_SET_BOOT_CPU_ID(max = {max}): errno {x}"))?;
    expect_errno("KVM_CREATE_VCPU(max)", ioctl(vm.as_raw_fd(), kvm::CREATE_VCPU, max), libc::EINVAL)?;
    set_boot_cpu(&vm, 1).map_err(|x| format!("KVM_SET_BOOT_CPU_ID(1) after a failed KVM_CREATE_VCPU: errno {x}"))?;
    // No in-kernel APIC: every vCPU is RUNNABLE; BSP bit on vCPU 1 only.
    let p0 = vm.create_vcpu(0).map_err(|x| x.to_string())?;
    expect_errno("KVM_SET_BOOT_CPU_ID(0) with a vCPU", set_boot_cpu(&vm, 0), libc::EBUSY)?;
    expect_errno("KVM_SET_BOOT_CPU_ID(max + 1) with a vCPU", set_boot_cpu(&vm, max + 1), libc::EBUSY)?;
    let p1 = vm.create_vcpu(1).map_err(|x| x.to_string())?;
    expect_vcpu("no irqchip, vCPU 0", &p0, RUNNABLE, BASE_AP)?;
    expect_vcpu("no irqchip, vCPU 1 (boot CPU)", &p1, RUNNABLE, BASE_BSP)?;

    // The default (vCPU 0), and a boot CPU id no vCPU can have.
    let vm = k.create_vm().map_err(|x| x.to_string())?;
    enable_split(&vm, 24, 0).map_err(|x| format!("split irqchip: errno {x}"))?;
    let d0 = vm.create_vcpu(0).map_err(|x| x.to_string())?;
    let d1 = vm.create_vcpu(1).map_err(|x| x.to_string())?;
    expect_vcpu("default boot CPU, vCPU 0", &d0, RUNNABLE, BASE_BSP)?;
    expect_vcpu("default boot CPU, vCPU 1", &d1, UNINITIALIZED, BASE_AP)?;
    let vm = k.create_vm().map_err(|x| x.to_string())?;
    enable_split(&vm, 24, 0).map_err(|x| format!("split irqchip: errno {x}"))?;
    set_boot_cpu(&vm, max).map_err(|x| format!("KVM_SET_BOOT_CPU_ID(max): errno {x}"))?;
    let n0 = vm.create_vcpu(0).map_err(|x| x.to_string())?;
    expect_vcpu("boot CPU id = max: vCPU 0", &n0, UNINITIALIZED, BASE_AP)?;

    // Split irqchip, boot CPU 1: vCPU 1 is the BSP at RESET (RUNNABLE,
    // APIC_BASE.BSP, LINT0 ExtINT), vCPUs 0, 2 and 3 wait for INIT.
    let vm = k.create_vm().map_err(|x| x.to_string())?;
    enable_split(&vm, 24, 0).map_err(|x| format!("split irqchip: errno {x}"))?;
    set_boot_cpu(&vm, 1).map_err(|x| format!("KVM_SET_BOOT_CPU_ID(1): errno {x}"))?;
    // RAM at 0 (SIPI vector 2: out 0x1e; hlt at 0x2000) and below 4 GiB
    // (the reset vector 0xfffffff0: out 0x1d; hlt).
    let low = Mem::new(0x10000);
    low.write(0x2000, &[0xe6, 0x1e, 0xf4]);
    let high = Mem::new(0x10000);
    high.write(0xfff0, &[0xe6, 0x1d, 0xf4]);
    // SAFETY: both mappings outlive the VM (dropped after it, below).
    unsafe {
        vm.set_user_memory_region(region(0, 0, 0x10000, low.ptr as u64, 0)).map_err(|x| x.to_string())?;
        vm.set_user_memory_region(region(1, 0xffff_0000, 0x10000, high.ptr as u64, 0)).map_err(|x| x.to_string())?;
    }
    let mut v: Vec<VcpuFd> = Vec::new();
    for id in 0..4 {
        v.push(vm.create_vcpu(id).map_err(|x| format!("vcpu {id}: {x}"))?);
    }
    expect_errno("KVM_SET_BOOT_CPU_ID(1) with vCPUs", set_boot_cpu(&vm, 1), libc::EBUSY)?;
    expect_errno("KVM_SET_BOOT_CPU_ID(0) with vCPUs", set_boot_cpu(&vm, 0), libc::EBUSY)?;
    for (id, mp, base) in [(0, UNINITIALIZED, BASE_AP), (1, RUNNABLE, BASE_BSP), (2, UNINITIALIZED, BASE_AP), (3, UNINITIALIZED, BASE_AP)] {
        expect_vcpu(&format!("boot CPU 1, vCPU {id}"), &v[id], mp, base)?;
        let p = get_lapic(&v[id])?;
        let (apic_id, lvt0) = (reg(&p, 0x20), reg(&p, 0x350));
        let want_lvt0 = if id == 1 { 0x700 } else { 0x1_0000 };
        if apic_id != (id as u32) << 24 || lvt0 != want_lvt0 {
            return Err(format!("boot CPU 1, vCPU {id}: APIC ID {apic_id:#x}, LVT0 {lvt0:#x}; expected {:#x}, {want_lvt0:#x}", (id as u32) << 24));
        }
    }

    // INIT goes by APIC_BASE.BSP as it is now: vCPU 1 loses it, vCPU 2
    // gets it (host writes), vCPU 0 never had it.
    set_apic_base(&v[1], BASE_AP)?;
    set_apic_base(&v[2], BASE_BSP)?;
    for id in 0..3u32 {
        msi(&vm, id, 5, 0)?;
    }
    expect_vcpu("INIT, vCPU 0 (AP)", &v[0], INIT_RECEIVED, BASE_AP)?;
    expect_vcpu("INIT, vCPU 1 (BSP bit cleared)", &v[1], INIT_RECEIVED, BASE_AP)?;
    expect_vcpu("INIT, vCPU 2 (BSP bit set)", &v[2], RUNNABLE, BASE_BSP)?;
    // The BSP runs on from the reset vector; the AP after its SIPI.
    let r2 = v[2].get_regs().map_err(|x| x.to_string())?;
    let s2 = v[2].get_sregs().map_err(|x| x.to_string())?;
    if (r2.rip, s2.cs.selector, s2.cs.base) != (0xfff0, 0xf000, 0xffff_0000) {
        return Err(format!("vCPU 2 after INIT: CS {:#x} base {:#x} RIP {:#x}", s2.cs.selector, s2.cs.base, r2.rip));
    }
    expect_out(&mut v[2], 0x1d, "vCPU 2 (BSP) after INIT")?;
    msi(&vm, 0, 6, 2)?;
    expect_vcpu("SIPI, vCPU 0", &v[0], RUNNABLE, BASE_AP)?;
    expect_out(&mut v[0], 0x1e, "vCPU 0 after SIPI 2")?;

    // KVM_SET_SREGS at the reset vector makes a BSP runnable, only a BSP
    // and only there (vCPU 3: UNINITIALIZED, at RESET state).
    let s = v[3].get_sregs().map_err(|x| x.to_string())?;
    v[3].set_sregs(&s).map_err(|x| format!("SET_SREGS: {x}"))?;
    expect_vcpu("SET_SREGS(reset state) without BSP", &v[3], UNINITIALIZED, BASE_AP)?;
    let mut sb = s;
    sb.apic_base = BASE_BSP;
    let mut r = v[3].get_regs().map_err(|x| x.to_string())?;
    r.rip = 0x1000;
    v[3].set_regs(&r).map_err(|x| x.to_string())?;
    v[3].set_sregs(&sb).map_err(|x| format!("SET_SREGS(BSP): {x}"))?;
    expect_vcpu("SET_SREGS(BSP) at RIP 0x1000", &v[3], UNINITIALIZED, BASE_BSP)?;
    r.rip = 0xfff0;
    v[3].set_regs(&r).map_err(|x| x.to_string())?;
    v[3].set_sregs(&sb).map_err(|x| format!("SET_SREGS(BSP): {x}"))?;
    expect_vcpu("SET_SREGS(BSP) at F000:FFF0", &v[3], RUNNABLE, BASE_BSP)?;
    drop(v);
    drop(vm);
    drop((low, high));
    Ok(())
}
