// SPDX-License-Identifier: GPL-2.0
//! MSR exits to userspace and the MSR filter (`KVM_CAP_X86_USER_SPACE_MSR`,
//! `KVM_X86_SET_MSR_FILTER`), the feature MSRs on the system fd
//! (`KVM_GET_MSR_FEATURE_INDEX_LIST`, `KVM_GET_MSRS`), IA32_MISC_ENABLE and
//! MONITOR/MWAIT with KVM's quirks: run the same way on /dev/nsvm and
//! /dev/kvm (the `msr` suite runs both in one boot).

use std::os::fd::AsRawFd;

use kvm_ioctls::{MsrExitReason, VcpuExit, VcpuFd, VmFd};
use nsvm_core::msr_filter::{DEFAULT_DENY, FILTER_SIZE, READ, WRITE};
use nsvm_core::uapi::{cap, kvm};

use super::{expect_errno, ioctl, small_vm, Env, R};

const USER_MSR_UNKNOWN: u64 = 0x474f_4f00;
const FS_BASE: u32 = 0xc000_0100;
const SYSENTER_CS: u32 = 0x174;
const EFER: u32 = 0xc000_0080;
const UCODE_REV: u32 = 0x8b;
const PLATFORM_INFO: u32 = 0xce;
const DE_CFG: u32 = 0xc001_1029;
const MISC_ENABLE: u32 = 0x1a0;
const POWER_CTL: u32 = 0x1fc;
const GET_MSR_FEATURE_INDEX_LIST: u32 = kvm::GET_MSR_FEATURE_INDEX_LIST;

/// `KVM_ENABLE_CAP` on the VM fd.
fn enable_cap(vm: &VmFd, c: u32, arg0: u64) -> Result<i64, i32> {
    let mut b = [0u8; 104];
    b[0..4].copy_from_slice(&c.to_ne_bytes());
    b[8..16].copy_from_slice(&arg0.to_ne_bytes());
    ioctl(vm.as_raw_fd(), kvm::ENABLE_CAP, b.as_ptr() as u64)
}

/// A `struct kvm_msr_filter` with `ranges` (flags, base, nmsrs, bitmap address).
fn filter_bytes(flags: u32, ranges: &[(u32, u32, u32, u64)]) -> Vec<u8> {
    let mut b = vec![0u8; FILTER_SIZE];
    b[0..4].copy_from_slice(&flags.to_ne_bytes());
    for (i, (f, base, n, bm)) in ranges.iter().enumerate() {
        let o = 8 + 24 * i;
        b[o..o + 4].copy_from_slice(&f.to_ne_bytes());
        b[o + 4..o + 8].copy_from_slice(&n.to_ne_bytes());
        b[o + 8..o + 12].copy_from_slice(&base.to_ne_bytes());
        b[o + 16..o + 24].copy_from_slice(&bm.to_ne_bytes());
    }
    b
}

fn set_filter(vm: &VmFd, flags: u32, ranges: &[(u32, u32, u32, u64)]) -> Result<i64, i32> {
    let b = filter_bytes(flags, ranges);
    ioctl(vm.as_raw_fd(), kvm::X86_SET_MSR_FILTER, b.as_ptr() as u64)
}

/// `KVM_GET_MSRS` / `KVM_SET_MSRS` of `ents` on `fd`: the ioctl's count and the entries.
fn msrs_io(fd: i32, cmd: u32, ents: &[(u32, u64)]) -> (Result<i64, i32>, Vec<(u32, u64)>) {
    let mut b = vec![0u8; 8 + 16 * ents.len()];
    b[0..4].copy_from_slice(&(ents.len() as u32).to_ne_bytes());
    for (i, (idx, v)) in ents.iter().enumerate() {
        b[8 + 16 * i..12 + 16 * i].copy_from_slice(&idx.to_ne_bytes());
        b[16 + 16 * i..24 + 16 * i].copy_from_slice(&v.to_ne_bytes());
    }
    let r = ioctl(fd, cmd, b.as_mut_ptr() as u64);
    let out = (0..ents.len())
        .map(|i| {
            let o = 8 + 16 * i;
            (u32::from_ne_bytes(b[o..o + 4].try_into().unwrap()), u64::from_ne_bytes(b[o + 8..o + 16].try_into().unwrap()))
        })
        .collect();
    (r, out)
}

fn get_msr(v: &VcpuFd, index: u32) -> Result<u64, String> {
    match msrs_io(v.as_raw_fd(), kvm::GET_MSRS, &[(index, 0)]) {
        (Ok(1), e) => Ok(e[0].1),
        (r, _) => Err(format!("KVM_GET_MSRS({index:#x}): {r:?}")),
    }
}

fn set_msr(v: &VcpuFd, index: u32, val: u64) -> Result<i64, i32> {
    msrs_io(v.as_raw_fd(), kvm::SET_MSRS, &[(index, val)]).0
}

/// The capabilities, and KVM's errnos for `KVM_ENABLE_CAP(KVM_CAP_X86_USER_SPACE_MSR)`
/// and `KVM_X86_SET_MSR_FILTER` (the selftest's flag loops and more).
pub fn msr_filter_errnos(e: &Env) -> R {
    let k = e.kvm();
    let sys = k.as_raw_fd();
    for c in [cap::X86_USER_SPACE_MSR, cap::X86_MSR_FILTER, cap::GET_MSR_FEATURES] {
        let v = ioctl(sys, kvm::CHECK_EXTENSION, u64::from(c)).map_err(|x| format!("CHECK_EXTENSION({c}): errno {x}"))?;
        if v != 1 {
            return Err(format!("KVM_CHECK_EXTENSION({c}) = {v}, expected 1"));
        }
    }
    let vm = k.create_vm().map_err(|x| x.to_string())?;
    for i in 0..64 {
        let r = enable_cap(&vm, cap::X86_USER_SPACE_MSR, 1 << i);
        if i < 3 {
            r.map_err(|x| format!("ENABLE_CAP(USER_SPACE_MSR, bit {i}): errno {x}"))?;
        } else {
            expect_errno(&format!("ENABLE_CAP(USER_SPACE_MSR, bit {i})"), r, libc::EINVAL)?;
        }
    }
    let bits = [0u8; 0x600];
    let bm = bits.as_ptr() as u64;
    for i in 0..32 {
        let r = set_filter(&vm, 1 << i, &[(READ, 0, 1, bm)]);
        if i == 0 {
            r.map_err(|x| format!("SET_MSR_FILTER(flags DEFAULT_DENY): errno {x}"))?;
        } else {
            expect_errno(&format!("SET_MSR_FILTER(flags bit {i})"), r, libc::EINVAL)?;
        }
        let r = set_filter(&vm, 0, &[(1 << i, 0, 1, bm)]);
        if i < 2 {
            r.map_err(|x| format!("SET_MSR_FILTER(range flags bit {i}): errno {x}"))?;
        } else {
            expect_errno(&format!("SET_MSR_FILTER(range flags bit {i})"), r, libc::EINVAL)?;
        }
    }
    // Default deny needs a non-empty range; an empty filter that allows is fine.
    expect_errno("default deny, no range", set_filter(&vm, DEFAULT_DENY, &[]), libc::EINVAL)?;
    set_filter(&vm, 0, &[]).map_err(|x| format!("empty allow filter: errno {x}"))?;
    // An empty range is skipped whatever its flags and bitmap.
    set_filter(&vm, 0, &[(0xffff, 0, 0, 8)]).map_err(|x| format!("empty range with bad flags: errno {x}"))?;
    // No flag; a bitmap over 0x600 bytes; range flags refused.
    expect_errno("range without flags", set_filter(&vm, 0, &[(0, 0, 1, bm)]), libc::EINVAL)?;
    expect_errno("0x600 * 8 + 1 MSRs", set_filter(&vm, 0, &[(READ, 0, 0x600 * 8 + 1, bm)]), libc::EINVAL)?;
    set_filter(&vm, 0, &[(READ, 0, 0x600 * 8, bm)]).map_err(|x| format!("0x600 * 8 MSRs: errno {x}"))?;
    // The bitmap is copied: a bad pointer is EFAULT, and it comes before a
    // later range's EINVAL (ranges are checked and copied in order).
    expect_errno("bad bitmap", set_filter(&vm, 0, &[(READ, 0, 1, 8)]), libc::EFAULT)?;
    expect_errno("bad bitmap, then a bad range", set_filter(&vm, 0, &[(READ, 0, 1, 8), (0, 0, 1, bm)]), libc::EFAULT)?;
    expect_errno("bad range, then a bad bitmap", set_filter(&vm, 0, &[(0, 0, 1, bm), (READ, 0, 1, 8)]), libc::EINVAL)?;
    expect_errno("filter struct", ioctl(vm.as_raw_fd(), kvm::X86_SET_MSR_FILTER, 8), libc::EFAULT)?;
    Ok(())
}

/// Runs the vCPU from `rip` with `rcx` and EDX:EAX = `val`.
fn run_at<'a>(v: &'a mut VcpuFd, rip: u64, rcx: u64, val: u64) -> Result<VcpuExit<'a>, String> {
    let mut r = v.get_regs().map_err(|x| x.to_string())?;
    r.rip = rip;
    r.rcx = rcx;
    r.rax = val & 0xffff_ffff;
    r.rdx = val >> 32;
    r.rsp = 0x8000;
    r.rflags = 2;
    v.set_regs(&r).map_err(|x| x.to_string())?;
    v.run().map_err(|x| format!("KVM_RUN: {x}"))
}

/// Expects the guest's `OUT 0x10, AL` of `al` (0x0d: its #GP handler).
fn expect_out(what: &str, x: Result<VcpuExit, String>, al: u8) -> R {
    match x? {
        VcpuExit::IoOut(0x10, d) if d == [al] => Ok(()),
        x => Err(format!("{what}: {x:?}, expected OUT 0x10 = {al:#x}")),
    }
}

/// Runs on to the HLT after the OUT, so that no instruction is left for
/// the next `KVM_RUN` to complete before the test sets new registers
/// (nsvm moves RIP past an OUT at the next `KVM_RUN`, KVM before the exit).
fn to_hlt(what: &str, v: &mut VcpuFd) -> R {
    match v.run() {
        Ok(VcpuExit::Hlt) => Ok(()),
        x => Err(format!("{what}: {x:?} after the OUT, expected HLT")),
    }
}


const RDMSR_AT: u64 = 0x1000;
const WRMSR_AT: u64 = 0x1010;
const GP: u8 = 0x0d;

/// A real-mode guest with RDMSR at 0x1000 and WRMSR at 0x1010, each
/// followed by `OUT 0x10, AL; HLT`, and a #GP handler `MOV AL, 0x0D;
/// OUT 0x10, AL; HLT`.
fn msr_guest(e: &Env) -> (kvm_ioctls::Kvm, VmFd, VcpuFd, super::Mem) {
    let k = e.kvm();
    let mut code = vec![0x90u8; 0x20];
    code[0..5].copy_from_slice(&[0x0f, 0x32, 0xe6, 0x10, 0xf4]);
    code[0x10..0x15].copy_from_slice(&[0x0f, 0x30, 0xe6, 0x10, 0xf4]);
    let (vm, vcpu, mut mem) = small_vm(&k, &code);
    mem.bytes()[0x2000..0x2005].copy_from_slice(&[0xb0, GP, 0xe6, 0x10, 0xf4]);
    mem.bytes()[4 * 13..4 * 13 + 4].copy_from_slice(&[0x00, 0x20, 0x00, 0x00]);
    (k, vm, vcpu, mem)
}

/// Guest RDMSR/WRMSR going to userspace by reason (UNKNOWN, INVAL,
/// FILTER), their completion (`msr.data`, `msr.error` as #GP), the filter
/// applying to the guest only and from the next access.
pub fn msr_user_exit(e: &Env) -> R {
    let (_k, vm, mut v, _mem) = msr_guest(e);
    // Without the capability: an unknown MSR is #GP.
    expect_out("RDMSR(unknown) without the cap", run_at(&mut v, RDMSR_AT, USER_MSR_UNKNOWN, 0), GP)?;
    to_hlt("HLT after the OUT", &mut v)?;
    enable_cap(&vm, cap::X86_USER_SPACE_MSR, u64::from((MsrExitReason::Unknown | MsrExitReason::Filter).bits())).map_err(|x| format!("ENABLE_CAP: errno {x}"))?;
    match run_at(&mut v, RDMSR_AT, USER_MSR_UNKNOWN, 0)? {
        VcpuExit::X86Rdmsr(x) if x.reason == MsrExitReason::Unknown && x.index == USER_MSR_UNKNOWN as u32 => *x.data = 0x1122_3344_5566_7788,
        x => return Err(format!("RDMSR(unknown): {x:?}, expected KVM_EXIT_X86_RDMSR UNKNOWN")),
    }
    expect_out("RDMSR(unknown) completed", v.run().map_err(|x| x.to_string()), 0x88)?;
    to_hlt("HLT after the OUT", &mut v)?;
    let r = v.get_regs().map_err(|x| x.to_string())?;
    if (r.rax, r.rdx) != (0x5566_7788, 0x1122_3344) {
        return Err(format!("RDMSR completion: EDX:EAX {:#x}:{:#x}", r.rdx, r.rax));
    }
    match run_at(&mut v, WRMSR_AT, USER_MSR_UNKNOWN, 0x1_0000_0002)? {
        VcpuExit::X86Wrmsr(x) if x.reason == MsrExitReason::Unknown && x.data == 0x1_0000_0002 => *x.error = 1,
        x => return Err(format!("WRMSR(unknown): {x:?}, expected KVM_EXIT_X86_WRMSR UNKNOWN data 0x100000002")),
    }
    expect_out("WRMSR(unknown) with msr.error", v.run().map_err(|x| x.to_string()), GP)?;
    to_hlt("HLT after the OUT", &mut v)?;
    // A known MSR refusing the value: INVAL, not asked for: #GP; asked for: an exit.
    expect_out("WRMSR(EFER, reserved bit) without INVAL", run_at(&mut v, WRMSR_AT, u64::from(EFER), 2), GP)?;
    to_hlt("HLT after the OUT", &mut v)?;
    enable_cap(&vm, cap::X86_USER_SPACE_MSR, 7).map_err(|x| format!("ENABLE_CAP(7): errno {x}"))?;
    match run_at(&mut v, WRMSR_AT, u64::from(EFER), 2)? {
        VcpuExit::X86Wrmsr(x) if x.reason == MsrExitReason::Inval && x.index == EFER && x.data == 2 => {}
        x => return Err(format!("WRMSR(EFER, reserved bit): {x:?}, expected KVM_EXIT_X86_WRMSR INVAL")),
    }
    expect_out("WRMSR(EFER) completed without error", v.run().map_err(|x| x.to_string()), 2)?;
    to_hlt("HLT after the OUT", &mut v)?;
    // The filter: FS_BASE reads and SYSENTER_CS writes denied.
    let zero = [0u8; 8];
    let bm = zero.as_ptr() as u64;
    set_filter(&vm, 0, &[(READ, FS_BASE, 1, bm), (WRITE, SYSENTER_CS, 1, bm)]).map_err(|x| format!("SET_MSR_FILTER: errno {x}"))?;
    match run_at(&mut v, RDMSR_AT, u64::from(FS_BASE), 0)? {
        VcpuExit::X86Rdmsr(x) if x.reason == MsrExitReason::Filter && x.index == FS_BASE => *x.data = 0xabcd,
        x => return Err(format!("RDMSR(FS_BASE) filtered: {x:?}, expected KVM_EXIT_X86_RDMSR FILTER")),
    }
    expect_out("RDMSR(FS_BASE) completed", v.run().map_err(|x| x.to_string()), 0xcd)?;
    to_hlt("HLT after the OUT", &mut v)?;
    // Writes of FS_BASE are not filtered; the host's ioctls never are.
    expect_out("WRMSR(FS_BASE)", run_at(&mut v, WRMSR_AT, u64::from(FS_BASE), 0x5000), 0)?;
    to_hlt("HLT after the OUT", &mut v)?;
    let fs = get_msr(&v, FS_BASE)?;
    if fs != 0x5000 {
        return Err(format!("KVM_GET_MSRS(FS_BASE) after the guest's write: {fs:#x}"));
    }
    match run_at(&mut v, WRMSR_AT, u64::from(SYSENTER_CS), 0x10)? {
        VcpuExit::X86Wrmsr(x) if x.reason == MsrExitReason::Filter && x.index == SYSENTER_CS && x.data == 0x10 => {}
        x => return Err(format!("WRMSR(SYSENTER_CS) filtered: {x:?}")),
    }
    expect_out("WRMSR(SYSENTER_CS) completed", v.run().map_err(|x| x.to_string()), 0x10)?;
    to_hlt("HLT after the OUT", &mut v)?;
    if get_msr(&v, SYSENTER_CS)? != 0 {
        return Err("SYSENTER_CS changed by a write userspace handled".into());
    }
    if set_msr(&v, SYSENTER_CS, 0x20) != Ok(1) || get_msr(&v, SYSENTER_CS)? != 0x20 {
        return Err("KVM_SET_MSRS(SYSENTER_CS) under the filter".into());
    }
    // A new filter applies from the next access.
    set_filter(&vm, 0, &[]).map_err(|x| format!("SET_MSR_FILTER(allow all): errno {x}"))?;
    expect_out("RDMSR(FS_BASE) unfiltered", run_at(&mut v, RDMSR_AT, u64::from(FS_BASE), 0), 0)?;
    to_hlt("HLT after the OUT", &mut v)?;
    if v.get_regs().map_err(|x| x.to_string())?.rax != 0x5000 {
        return Err("RDMSR(FS_BASE) unfiltered: wrong value".into());
    }
    // Default deny: an unknown MSR outside the ranges is FILTER (the filter first).
    let one = [1u8; 8];
    set_filter(&vm, DEFAULT_DENY, &[(READ | WRITE, 0x10, 1, one.as_ptr() as u64)]).map_err(|x| format!("SET_MSR_FILTER(deny): errno {x}"))?;
    match run_at(&mut v, RDMSR_AT, USER_MSR_UNKNOWN, 0)? {
        VcpuExit::X86Rdmsr(x) if x.reason == MsrExitReason::Filter => {}
        x => return Err(format!("RDMSR(unknown) under default deny: {x:?}, expected FILTER")),
    }
    expect_out("RDMSR(unknown) completed", v.run().map_err(|x| x.to_string()), 0)?;
    to_hlt("HLT after the OUT", &mut v)?;
    // Exits off: a filtered access is #GP.
    enable_cap(&vm, cap::X86_USER_SPACE_MSR, 0).map_err(|x| format!("ENABLE_CAP(0): errno {x}"))?;
    expect_out("RDMSR(FS_BASE) denied without exits", run_at(&mut v, RDMSR_AT, u64::from(FS_BASE), 0), GP)?;
    to_hlt("HLT after the OUT", &mut v)?;
    Ok(())
}

/// `KVM_GET_MSR_FEATURE_INDEX_LIST` and `KVM_GET_MSRS` on the system fd;
/// the feature MSRs of a new vCPU (KVM's reset values) and the stored
/// MSRs POWER_CTL, UCODE_REV, DE_CFG, MISC_ENABLE from the host.
pub fn msr_features(e: &Env) -> R {
    let k = e.kvm();
    let sys = k.as_raw_fd();
    let mut hdr = [0u32; 1];
    expect_errno("feature list, no room", ioctl(sys, GET_MSR_FEATURE_INDEX_LIST, hdr.as_mut_ptr() as u64), libc::E2BIG)?;
    let n = hdr[0] as usize;
    let mut l = vec![0u32; 1 + n];
    l[0] = n as u32;
    ioctl(sys, GET_MSR_FEATURE_INDEX_LIST, l.as_mut_ptr() as u64).map_err(|x| format!("feature list: errno {x}"))?;
    let list = &l[1..];
    for m in [DE_CFG, UCODE_REV, PLATFORM_INFO] {
        if !list.contains(&m) {
            return Err(format!("feature list {list:x?} lacks {m:#x}"));
        }
    }
    // Stops at an MSR neither lists, whose data is zeroed; the rest untouched.
    let unknown = USER_MSR_UNKNOWN as u32;
    let (r, f) = msrs_io(sys, kvm::GET_MSRS, &[(DE_CFG, 0), (UCODE_REV, 0), (PLATFORM_INFO, 0), (unknown, 7), (UCODE_REV, 5)]);
    if r != Ok(3) {
        return Err(format!("system KVM_GET_MSRS(DE_CFG, UCODE_REV, PLATFORM_INFO, unknown, ..): {r:?}, expected 3"));
    }
    if (f[3].1, f[4].1) != (0, 5) {
        return Err(format!("system KVM_GET_MSRS past the stop: {:#x}, {:#x}, expected 0 (zeroed), 5", f[3].1, f[4].1));
    }
    let (de_cfg, platform_info) = (f[0].1, f[2].1);
    let big = vec![0u8; 8 + 16 * 256];
    let mut b = big.clone();
    b[0..4].copy_from_slice(&256u32.to_ne_bytes());
    expect_errno("system KVM_GET_MSRS of 256", ioctl(sys, kvm::GET_MSRS, b.as_mut_ptr() as u64), libc::E2BIG)?;
    let vm = k.create_vm().map_err(|x| x.to_string())?;
    let v = vm.create_vcpu(0).map_err(|x| x.to_string())?;
    let got = (get_msr(&v, DE_CFG)?, get_msr(&v, UCODE_REV)?, get_msr(&v, PLATFORM_INFO)?, get_msr(&v, MISC_ENABLE)?);
    if got != (0, 0x0100_0065, platform_info, 0x1800) {
        return Err(format!("new vCPU: DE_CFG, UCODE_REV, PLATFORM_INFO, MISC_ENABLE = {got:x?}, expected (0, 0x1000065, {platform_info:#x}, 0x1800)"));
    }
    if set_msr(&v, DE_CFG, de_cfg) != Ok(1) || set_msr(&v, DE_CFG, de_cfg | 1 << 2) != Ok(0) {
        return Err("KVM_SET_MSRS(DE_CFG): the supported bits only".into());
    }
    for (m, val) in [(UCODE_REV, 0x1234u64), (POWER_CTL, 0x5678), (MISC_ENABLE, 1 << 18)] {
        if set_msr(&v, m, val) != Ok(1) || get_msr(&v, m)? != val {
            return Err(format!("KVM_SET_MSRS({m:#x}, {val:#x}) then KVM_GET_MSRS"));
        }
    }
    Ok(())
}

/// MONITOR/MWAIT: NOPs by default (KVM_X86_QUIRK_MWAIT_NEVER_UD_FAULTS);
/// with both quirks disabled #UD unless IA32_MISC_ENABLE.MWAIT is set,
/// and the guest's CPUID.1:ECX.MWAIT follows MISC_ENABLE.MWAIT.
pub fn msr_mwait_quirks(e: &Env) -> R {
    // 1000: monitor; mwait; mov al, 0x11; out 0x10, al; hlt.
    // 1010: mov eax, 1; cpuid; mov al, cl; out 0x10, al; hlt.
    // #UD handler (IVT 6 -> 0:2000): mov al, 6; out 0x10, al; hlt.
    let mut code = vec![0x90u8; 0x20];
    code[0..11].copy_from_slice(&[0x0f, 0x01, 0xc8, 0x0f, 0x01, 0xc9, 0xb0, 0x11, 0xe6, 0x10, 0xf4]);
    code[0x10..0x1d].copy_from_slice(&[0x66, 0xb8, 1, 0, 0, 0, 0x0f, 0xa2, 0x88, 0xc8, 0xe6, 0x10, 0xf4]);
    for disable in [false, true] {
        let k = e.kvm();
        let (vm, mut v, mut mem) = small_vm(&k, &code);
        mem.bytes()[0x2000..0x2005].copy_from_slice(&[0xb0, 6, 0xe6, 0x10, 0xf4]);
        mem.bytes()[4 * 6..4 * 6 + 4].copy_from_slice(&[0x00, 0x20, 0x00, 0x00]);
        // CPUID: leaf 1 with SSE3 (ECX[0]) and without MWAIT (ECX[3]).
        let mut t = vec![0u8; 8];
        t[0..4].copy_from_slice(&2u32.to_ne_bytes());
        for (f, regs) in [(0u32, [1u32, 0x6874_7541, 0x444d_4163, 0x6974_6e65]), (1, [0x800f12, 0, 1, 0x0789_fbff])] {
            for w in [f, 0, 0, regs[0], regs[1], regs[2], regs[3], 0, 0, 0] {
                t.extend(w.to_ne_bytes());
            }
        }
        ioctl(v.as_raw_fd(), kvm::SET_CPUID2, t.as_ptr() as u64).map_err(|x| format!("SET_CPUID2: errno {x}"))?;
        if disable {
            enable_cap(&vm, cap::DISABLE_QUIRKS2, (1 << 4) | (1 << 6)).map_err(|x| format!("DISABLE_QUIRKS2: errno {x}"))?;
        }
        let want = if disable { 6 } else { 0x11 };
        expect_out(&format!("MONITOR/MWAIT, quirks disabled {disable}"), run_at(&mut v, 0x1000, 0, 0), want)?;
        to_hlt("HLT after the OUT", &mut v)?;
        if disable {
            // MISC_ENABLE.MWAIT from the host: MONITOR/MWAIT allowed, CPUID shows MWAIT.
            if set_msr(&v, MISC_ENABLE, 0x1800 | 1 << 18) != Ok(1) {
                return Err("KVM_SET_MSRS(MISC_ENABLE.MWAIT)".into());
            }
            expect_out("MONITOR/MWAIT with MISC_ENABLE.MWAIT", run_at(&mut v, 0x1000, 0, 0), 0x11)?;
            to_hlt("HLT after the OUT", &mut v)?;
            expect_out("CPUID.1:ECX with MISC_ENABLE.MWAIT", run_at(&mut v, 0x1010, 0, 0), 0x9)?;
            to_hlt("HLT after the OUT", &mut v)?;
        } else {
            expect_out("CPUID.1:ECX with the quirk", run_at(&mut v, 0x1010, 0, 0), 0x1)?;
            to_hlt("HLT after the OUT", &mut v)?;
        }
    }
    Ok(())
}
