// SPDX-License-Identifier: GPL-2.0
//! Register state cases: KVM_SET_SREGS refusals (must-be-zero bits),
//! MSRs, a guest entering long mode, a VMRUN that fails its checks.

use std::os::fd::AsRawFd;

use kvm_bindings::{kvm_regs, kvm_segment};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use nsvm_core::uapi::kvm;

use crate::{expect_errno, ioctl, small_vm, stats_fd_of, Env, Mem, R};

pub fn invalid_sregs(e: &Env) -> R {
    let k = e.kvm();
    let (_vm, vcpu, _m) = small_vm(&k, &[0xf4]);
    let good = vcpu.get_sregs().unwrap();
    let mut s = good;
    s.cr0 = 0x8000_0000; // PG without PE
    expect_errno("CR0.PG without PE", ioctl(vcpu.as_raw_fd(), kvm::SET_SREGS, &s as *const _ as u64), libc::EINVAL)?;
    let mut s = good;
    s.cr0 |= 1 << 40;
    expect_errno("CR0 high bits", ioctl(vcpu.as_raw_fd(), kvm::SET_SREGS, &s as *const _ as u64), libc::EINVAL)?;
    let mut s = good;
    s.cr0 = 0x8000_0011;
    s.efer = 0x500;
    s.cr4 = 0;
    expect_errno("long mode without PAE", ioctl(vcpu.as_raw_fd(), kvm::SET_SREGS, &s as *const _ as u64), libc::EINVAL)?;
    let mut s = good;
    s.cs.l = 1; // 64-bit code segment outside long mode
    expect_errno("CS.L outside long mode", ioctl(vcpu.as_raw_fd(), kvm::SET_SREGS, &s as *const _ as u64), libc::EINVAL)?;
    let mut s = good;
    s.efer = 0x400; // LMA without LME
    expect_errno("EFER.LMA alone", ioctl(vcpu.as_raw_fd(), kvm::SET_SREGS, &s as *const _ as u64), libc::EINVAL)?;
    expect_errno("bad pointer", ioctl(vcpu.as_raw_fd(), kvm::SET_SREGS, 0x10), libc::EFAULT)?;
    expect_errno("bad pointer for GET_REGS", ioctl(vcpu.as_raw_fd(), kvm::GET_REGS, 0xffff_8000_0000_0000), libc::EFAULT)?;
    // The vCPU still runs after the refusals.
    let mut v = vcpu;
    match v.run() {
        Ok(VcpuExit::Hlt) => Ok(()),
        x => Err(format!("run after refusals: {x:?}")),
    }
}

/// KVM_GET_MSR_INDEX_LIST, KVM_SET/GET_MSRS round trips, refusal counts,
/// KVM_GET_TSC_KHZ, and a guest that reads what userspace set.
pub fn msrs(e: &Env) -> R {
    use kvm_bindings::{kvm_msr_entry, Msrs};
    let k = e.kvm();
    let list = k.get_msr_index_list().map_err(|x| format!("GET_MSR_INDEX_LIST: {x}"))?;
    // (KVM leaves EFER out: it is part of the sregs.)
    for m in [0xc000_0081u32, 0xc000_0082, 0xc000_0103] {
        if !list.as_slice().contains(&m) {
            return Err(format!("MSR {m:#x} missing from KVM_GET_MSR_INDEX_LIST"));
        }
    }
    // Guest: rdmsr STAR (0xc0000081) into EDX:EAX, out edx low byte to 0x10, hlt.
    let code = [0x66, 0xb9, 0x81, 0, 0, 0xc0, 0x0f, 0x32, 0x88, 0xd0, 0xe6, 0x10, 0xf4];
    let (_vm, mut vcpu, _m) = small_vm(&k, &code);
    let ent = |index: u32, data: u64| kvm_msr_entry { index, reserved: 0, data };
    let set = Msrs::from_entries(&[ent(0xc000_0081, 0x0023_0010_0000_0000), ent(0xc000_0103, 7), ent(0xdead_beef, 1), ent(0xc000_0082, 0)]).unwrap();
    let n = vcpu.set_msrs(&set).map_err(|x| format!("SET_MSRS: {x}"))?;
    if n != 2 {
        return Err(format!("SET_MSRS processed {n}, expected 2 (stops at the unknown MSR)"));
    }
    let mut get = Msrs::from_entries(&[ent(0xc000_0081, 0), ent(0xc000_0103, 0)]).unwrap();
    let n = vcpu.get_msrs(&mut get).map_err(|x| format!("GET_MSRS: {x}"))?;
    let g = get.as_slice();
    if n != 2 || g[0].data != 0x0023_0010_0000_0000 || g[1].data != 7 {
        return Err(format!("GET_MSRS returned {n}: {:#x} {:#x}", g[0].data, g[1].data));
    }
    match vcpu.run() {
        Ok(VcpuExit::IoOut(0x10, d)) if d == [0x10] => {}
        x => return Err(format!("guest RDMSR of STAR: {x:?}")),
    }
    let khz = vcpu.get_tsc_khz().map_err(|x| format!("GET_TSC_KHZ: {x}"))?;
    (khz > 0).then_some(()).ok_or("TSC kHz is 0".into())
}

/// The bits VMRUN treats as must-be-zero on this vCPU (APM vol. 2 15.5.1,
/// with 3.1.2 CR3, 3.1.3 CR4, 3.1.7 EFER), from its CPUID, written out here
/// independently of nsvm-core: (MAXPHYADDR, CR4 bits that may be set, EFER
/// bits that may be set).
fn mbz_rules(cpuid: &kvm_bindings::CpuId) -> (u32, u64, u64) {
    let leaf = |f: u32| cpuid.as_slice().iter().find(|x| x.function == f && x.index == 0).map_or([0; 4], |x| [x.eax, x.ebx, x.ecx, x.edx]);
    let has = |f: u32, r: usize, b: u32| leaf(f)[r] & (1 << b) != 0;
    let phys = if leaf(0x8000_0000)[0] >= 0x8000_0008 { leaf(0x8000_0008)[0] & 0xff } else { 36 };
    // CR4: VME..OSXMMEXCPT on every AMD64 processor; UMIP, LA57, FSGSBASE,
    // PCIDE, OSXSAVE, SMEP, SMAP, PKE, CET with their CPUID features.
    let mut cr4 = 0x7ffu64;
    for (bit, f, r, b) in [(11, 7, 2, 2), (12, 7, 2, 16), (16, 7, 1, 0), (17, 1, 2, 17), (18, 1, 2, 26), (20, 7, 1, 7), (21, 7, 1, 20), (22, 7, 2, 3), (23, 7, 2, 7)] {
        if has(f, r, b) {
            cr4 |= 1 << bit;
        }
    }
    // EFER: SCE; LME/LMA, NXE, SVME, FFXSR, TCE with their features; LMSLE
    // unless reported unsupported (MCOMMIT, INTWB, UAIE, AIBRSE: treated as
    // reserved here, as KVM does).
    let mut efer = 1u64;
    for (bits, f, r, b) in [(0x500u64, 0x8000_0001, 3, 29), (1 << 11, 0x8000_0001, 3, 20), (1 << 12, 0x8000_0001, 2, 2), (1 << 14, 0x8000_0001, 3, 25), (1 << 15, 0x8000_0001, 2, 17)] {
        if has(f, r, b) {
            efer |= bits;
        }
    }
    if !has(0x8000_0008, 1, 20) {
        efer |= 1 << 13;
    }
    (phys, cr4, efer)
}

/// A 64-bit vCPU (supported CPUID, long mode with identity-mapped 2 MiB at
/// 0, CS.L) about to execute HLT at 0x1000.
pub(crate) fn long_mode_vm(k: &Kvm) -> Result<(VmFd, VcpuFd, Mem, kvm_bindings::CpuId), String> {
    let (vm, vcpu, mut mem) = small_vm(k, &[0xf4]);
    // KVM checks EFER.LME against the guest's CPUID: give it the supported one.
    let cpuid = k.get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES).map_err(|x| x.to_string())?;
    vcpu.set_cpuid2(&cpuid).map_err(|x| x.to_string())?;
    // Identity-map the first 2 MiB for long mode: PML4 0x3000, PDPT 0x4000, PD 0x5000.
    for (at, v) in [(0x3000usize, 0x4003u64), (0x4000, 0x5003), (0x5000, 0x83)] {
        mem.bytes()[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }
    let mut s = vcpu.get_sregs().unwrap();
    s.cr3 = 0x3000;
    s.cr4 = 0x20;
    s.cr0 = 0x8000_0011;
    s.efer = 0x500;
    s.cs = kvm_segment { base: 0, limit: 0xffff_ffff, selector: 8, type_: 0xb, present: 1, dpl: 0, db: 0, s: 1, l: 1, g: 1, avl: 0, unusable: 0, padding: 0 };
    vcpu.set_sregs(&s).map_err(|x| format!("SET_SREGS: {x}"))?;
    Ok((vm, vcpu, mem, cpuid))
}

/// A guest entering long mode itself (32-bit protected mode, PAE, EFER.LME
/// from KVM_SET_SREGS; the guest sets CR0.PG): the processor sets EFER.LMA
/// (APM vol. 2 14.6.2), which the guest's RDMSR and KVM_GET_SREGS show, and
/// a later guest WRMSR of EFER (NXE) keeps it. Linux's decompressor does
/// this under QEMU's boot ROM.
pub fn long_mode_entry(e: &Env) -> R {
    let code: &[u8] = &[
        0x0f, 0x20, 0xc0, // mov %cr0, %eax
        0x0d, 0x00, 0x00, 0x00, 0x80, // or $0x80000000, %eax
        0x0f, 0x22, 0xc0, // mov %eax, %cr0
        0xb9, 0x80, 0x00, 0x00, 0xc0, // mov $0xc0000080, %ecx
        0x0f, 0x32, // rdmsr
        0xe7, 0x10, // out %eax, $0x10
        0x0d, 0x00, 0x08, 0x00, 0x00, // or $0x800, %eax (NXE)
        0x0f, 0x30, // wrmsr
        0x31, 0xc0, // xor %eax, %eax
        0x0f, 0x32, // rdmsr
        0xe7, 0x11, // out %eax, $0x11
        0xf4, // hlt
    ];
    let k = e.kvm();
    let (_vm, mut vcpu, mut mem, _) = long_mode_vm(&k)?;
    mem.bytes()[0x1000..0x1000 + code.len()].copy_from_slice(code);
    let mut s = vcpu.get_sregs().unwrap();
    s.cr0 = 0x11;
    s.efer = 0x100;
    s.cs = kvm_segment { base: 0, limit: 0xffff_ffff, selector: 8, type_: 0xb, present: 1, dpl: 0, db: 1, s: 1, l: 0, g: 1, avl: 0, unusable: 0, padding: 0 };
    vcpu.set_sregs(&s).map_err(|x| format!("SET_SREGS (protected mode, LME): {x}"))?;
    vcpu.set_regs(&kvm_regs { rip: 0x1000, rflags: 2, rsp: 0x8000, ..Default::default() }).unwrap();
    for (port, want) in [(0x10u16, 0x500u64), (0x11, 0xd00)] {
        match vcpu.run() {
            Ok(VcpuExit::IoOut(p, _)) if p == port => {}
            x => return Err(format!("expected OUT {port:#x}, got {x:?}")),
        }
        let eax = vcpu.get_regs().unwrap().rax & 0xffff_ffff;
        let efer = vcpu.get_sregs().unwrap().efer;
        if (eax, efer) != (want, want) {
            return Err(format!("at OUT {port:#x}: guest RDMSR(EFER) {eax:#x}, KVM_GET_SREGS efer {efer:#x}, expected {want:#x}"));
        }
    }
    Ok(())
}

/// KVM_SET_SREGS with states VMRUN refuses for a must-be-zero bit (APM
/// 15.5.1): CR3 with each bit from MAXPHYADDR up in long mode, CR4 and
/// EFER with each bit that is undefined or whose feature the vCPU's CPUID
/// lacks, CR0 bits 63:32, CR0.NW without CD. Each is refused with EINVAL and
/// changes nothing: KVM_GET_SREGS and KVM_GET_REGS return exactly what they
/// returned before, and the vCPU still runs (HLT).
pub fn sregs_refused(e: &Env) -> R {
    let k = e.kvm();
    let (_vm, mut vcpu, _mem, cpuid) = long_mode_vm(&k)?;
    let (phys, cr4_ok, efer_ok) = mbz_rules(&cpuid);
    let before = vcpu.get_sregs().map_err(|x| x.to_string())?;
    let regs = vcpu.get_regs().map_err(|x| x.to_string())?;
    let mut bad: Vec<(String, kvm_bindings::kvm_sregs)> = Vec::new();
    let with = |f: &dyn Fn(&mut kvm_bindings::kvm_sregs)| {
        let mut s = before;
        f(&mut s);
        s
    };
    for bit in phys..64 {
        bad.push((format!("CR3 bit {bit} (MAXPHYADDR {phys})"), with(&|s| s.cr3 |= 1 << bit)));
    }
    for bit in (0..64).filter(|b| cr4_ok & (1 << b) == 0) {
        bad.push((format!("CR4 bit {bit}"), with(&|s| s.cr4 |= 1 << bit)));
    }
    // (SVME, LME, LMA have rules of their own.)
    for bit in (0..64).filter(|b| efer_ok & (1 << b) == 0 && ![8, 10, 12].contains(b)) {
        bad.push((format!("EFER bit {bit}"), with(&|s| s.efer |= 1 << bit)));
    }
    bad.push(("CR0 bit 32".into(), with(&|s| s.cr0 |= 1 << 32)));
    bad.push(("CR0 bit 63".into(), with(&|s| s.cr0 |= 1 << 63)));
    bad.push(("CR0.NW without CD".into(), with(&|s| s.cr0 = (s.cr0 & !(1 << 30)) | 1 << 29)));
    for (what, s) in &bad {
        expect_errno(what, ioctl(vcpu.as_raw_fd(), kvm::SET_SREGS, s as *const _ as u64), libc::EINVAL)?;
        let now = vcpu.get_sregs().map_err(|x| x.to_string())?;
        if now != before {
            return Err(format!("{what}: KVM_GET_SREGS after the refusal: {now:?}, before: {before:?}"));
        }
        if vcpu.get_regs().map_err(|x| x.to_string())? != regs {
            return Err(format!("{what}: KVM_GET_REGS changed"));
        }
    }
    if bad.len() < 30 {
        return Err(format!("only {} refused states (CPUID: phys {phys}, CR4 {cr4_ok:#x}, EFER {efer_ok:#x})", bad.len()));
    }
    match vcpu.run() {
        Ok(VcpuExit::Hlt) => Ok(()),
        x => Err(format!("run after {} refusals: {x:?}", bad.len())),
    }
}

/// A state KVM_SET_SREGS accepts but VMRUN refuses (long mode with CS.L and
/// CS.D both set, APM 15.5.1): KVM_EXIT_FAIL_ENTRY with VMEXIT_INVALID; nsvm
/// also counts the rule in `vmrun_invalid_cs_l_and_d`. Whatever the processor
/// wrote into the VMCB of the failed VMRUN (QEMU's TCG saves the host's RIP),
/// KVM_GET_REGS and KVM_GET_SREGS then return the state as it was set. On
/// kvm_amd under TCG they return what TCG left (its host RIP), a known
/// difference: shown, not asserted.
pub fn fail_entry(e: &Env) -> R {
    let k = e.kvm();
    let (_vm, mut vcpu, _mem, _) = long_mode_vm(&k)?;
    let mut s = vcpu.get_sregs().unwrap();
    s.cs.db = 1;
    vcpu.set_sregs(&s).map_err(|x| format!("SET_SREGS: {x}"))?;
    let (sregs, regs) = (vcpu.get_sregs().map_err(|x| x.to_string())?, vcpu.get_regs().map_err(|x| x.to_string())?);
    match vcpu.run() {
        Ok(VcpuExit::FailEntry(reason, _cpu)) if reason == u64::MAX || reason == 0xffff_ffff => {}
        x => return Err(format!("expected KVM_EXIT_FAIL_ENTRY(VMEXIT_INVALID), got {x:?}")),
    }
    let (sregs_after, regs_after) = (vcpu.get_sregs().map_err(|x| x.to_string())?, vcpu.get_regs().map_err(|x| x.to_string())?);
    let same = sregs_after == sregs && regs_after == regs;
    if e.device.ends_with("kvm") {
        if !same {
            println!("  note: kvm_amd after the failed entry: RIP {:#x} (set: {:#x}), CR3 {:#x} (set: {:#x})", regs_after.rip, regs.rip, sregs_after.cr3, sregs.cr3);
        }
        return Ok(());
    }
    if regs_after != regs {
        return Err(format!("KVM_GET_REGS after the failed entry: {regs_after:?}, set: {regs:?}"));
    }
    if sregs_after != sregs {
        return Err(format!("KVM_GET_SREGS after the failed entry: {sregs_after:?}, set: {sregs:?}"));
    }
    let f = stats_fd_of(vcpu.as_raw_fd())?;
    if !f.contains("vmrun_invalid_cs_l_and_d=1") {
        return Err("vmrun_invalid_cs_l_and_d was not counted".into());
    }
    Ok(())
}
