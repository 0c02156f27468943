// SPDX-License-Identifier: GPL-2.0
//! Many vCPUs in one VM, run the same way on /dev/nsvm and /dev/kvm (the
//! `apic` suite): the vCPU limits (`KVM_CAP_MAX_VCPUS`, `KVM_CAP_MAX_VCPU_ID`
//! four times it, `KVM_CAP_NR_VCPUS` at most it), the highest id created
//! and the next refused, and interrupt delivery over 200 in-kernel APICs
//! (more than three of nsvm's 64-id chunks): broadcast and unicast NMIs,
//! fixed interrupts to the software-enabled APICs only, lowest priority to
//! one of them, each answer as `KVM_SIGNAL_MSI`'s count.

use std::os::fd::AsRawFd;

use kvm_ioctls::VcpuFd;
use nsvm_core::uapi::{cap, kvm};

use super::apic::{bit, enable_split, get_lapic, reg, set_lapic, set_reg, signal_msi};
use super::{expect_errno, ioctl, Env, R};

const VCPUS: u64 = 200;
/// vCPUs 64..=130 get their APIC software-enabled.
const ENABLED: std::ops::RangeInclusive<u64> = 64..=130;
const SVR: usize = 0xf0;
const IRR: usize = 0x200;
const LDR: usize = 0xd0;

pub fn apic_many_vcpus(e: &Env) -> R {
    let k = e.kvm();
    let max = k.check_extension_raw(cap::MAX_VCPUS as _) as u64;
    let ids = k.check_extension_raw(cap::MAX_VCPU_ID as _) as u64;
    let nr = k.check_extension_raw(cap::NR_VCPUS as _) as u64;
    if max < 1024 || ids != 4 * max || nr < 1 || nr > max {
        return Err(format!("KVM_CAP_MAX_VCPUS {max}, KVM_CAP_MAX_VCPU_ID {ids}, KVM_CAP_NR_VCPUS {nr}"));
    }
    // The highest id exists; the limit itself is refused.
    let vm = k.create_vm().map_err(|x| x.to_string())?;
    let _top = vm.create_vcpu(ids - 1).map_err(|x| format!("KVM_CREATE_VCPU({}): {x}", ids - 1))?;
    expect_errno("KVM_CREATE_VCPU(KVM_CAP_MAX_VCPU_ID)", ioctl(vm.as_raw_fd(), kvm::CREATE_VCPU, ids), libc::EINVAL)?;
    drop(_top);
    drop(vm);

    // 200 in-kernel APICs, all software-disabled after RESET.
    let vm = k.create_vm().map_err(|x| x.to_string())?;
    enable_split(&vm, 24, 0).map_err(|x| format!("split irqchip: errno {x}"))?;
    let mut v: Vec<VcpuFd> = Vec::new();
    for id in 0..VCPUS {
        v.push(vm.create_vcpu(id).map_err(|x| format!("KVM_CREATE_VCPU({id}): {x}"))?);
    }
    // MSI: physical destination `dest`, delivery mode `mode`, vector.
    let msi = |dest: u32, mode: u32, vector: u32| signal_msi(&vm, 0xfee0_0000 | (dest << 12), 0, (mode << 8) | vector, 0);
    let expect = |what: &str, r: Result<i64, i32>, want: i64| match r {
        Ok(n) if n == want => Ok(()),
        x => Err(format!("{what}: {x:?}, expected Ok({want})")),
    };
    expect("NMI broadcast", msi(0xff, 4, 0), VCPUS as i64)?;
    expect("NMI to APIC 150", msi(150, 4, 0), 1)?;
    expect("NMI to APIC 220 (none)", msi(220, 4, 0), 0)?;
    expect("fixed broadcast, every APIC software-disabled", msi(0xff, 0, 0x40), 0)?;
    for id in ENABLED {
        let vc = &v[id as usize];
        let mut p = get_lapic(vc)?;
        let svr = reg(&p, SVR);
        set_reg(&mut p, SVR, svr | 0x100);
        // Logical APIC id bit 0 (flat model, DFR's reset value).
        set_reg(&mut p, LDR, 1 << 24);
        set_lapic(vc, &p)?;
    }
    let n_enabled = ENABLED.count() as i64;
    expect("fixed broadcast", msi(0xff, 0, 0x41), n_enabled)?;
    expect("fixed to APIC 130", msi(130, 0, 0x42), 1)?;
    expect("fixed to APIC 131 (software-disabled)", msi(131, 0, 0x42), 0)?;
    // KVM's rule: lowest priority to the physical broadcast is fixed.
    expect("lowest priority to the physical broadcast", msi(0xff, 1, 0x43), n_enabled)?;
    // Lowest priority to logical 1 (the 67 enabled APICs): one, by vector
    // hashing the (0x44 % 67 = 1)th in vCPU order: vCPU 65.
    let lowest = signal_msi(&vm, 0xfee0_0000 | (1 << 12) | (1 << 2), 0, (1 << 8) | 0x44, 0);
    expect("lowest priority to logical 1", lowest, 1)?;
    let (p130, p131, p63) = (get_lapic(&v[130])?, get_lapic(&v[131])?, get_lapic(&v[63])?);
    if !bit(&p130, IRR, 0x41) || !bit(&p130, IRR, 0x42) {
        return Err(format!("vCPU 130's IRR lacks 0x41/0x42: {:#x}", reg(&p130, IRR + 0x20)));
    }
    if bit(&p131, IRR, 0x42) || bit(&p63, IRR, 0x41) || bit(&p63, IRR, 0x40) {
        return Err("a software-disabled APIC took a fixed interrupt".into());
    }
    let with = |vec: u8| -> Vec<u64> { (0..VCPUS).filter(|&id| get_lapic(&v[id as usize]).is_ok_and(|p| bit(&p, IRR, vec))).collect() };
    let b = with(0x43);
    if b != ENABLED.collect::<Vec<_>>() {
        return Err(format!("the physical broadcast (lowest priority) reached {} APICs: {b:?}", b.len()));
    }
    let l = with(0x44);
    (l == [65]).then_some(()).ok_or(format!("lowest priority to logical 1 reached {l:?}, expected [65]"))
}
