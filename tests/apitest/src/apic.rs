// SPDX-License-Identifier: GPL-2.0
//! The in-kernel local APIC (split irqchip: `KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP)`),
//! run the same way on /dev/nsvm and /dev/kvm (the `apic` suite runs both in
//! one boot): capability and argument checks, and the real-mode payload
//! `apic16.bin` (tests/guests/apic16.S), one case per guest scenario —
//! self-IPIs with TPR masking and EOI, the timer in one-shot, periodic and
//! TSC-deadline modes waking HLT in the kernel, x2APIC, an NMI IPI,
//! `KVM_GET/SET_LAPIC` in the middle of a timer, a guest that never EOIs,
//! INIT/SIPI bring-up of an AP with an IPI back.

use std::os::fd::AsRawFd;
use std::sync::Arc;

use kvm_bindings::{kvm_msr_entry, kvm_regs, Msrs};
use kvm_ioctls::{VcpuExit, VcpuFd, VmFd};
use nsvm_core::uapi::{cap, kvm};

use super::{expect_errno, ioctl, real_mode, region, Env, Mem, R};

/// Where the guest finds its APIC (no memory slot there).
pub(super) const APIC_BASE: u64 = 0x20000;
const LOG_N: usize = 0x5f0;
const LOG: usize = 0x600;

/// `KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP)` with `pins` reserved, `flags`.
pub(super) fn enable_split(vm: &VmFd, pins: u64, flags: u32) -> Result<i64, i32> {
    enable_cap(vm, cap::SPLIT_IRQCHIP, pins, flags)
}

/// `KVM_ENABLE_CAP(c)` with args[0] = `arg0`.
fn enable_cap(vm: &VmFd, c: u32, arg0: u64, flags: u32) -> Result<i64, i32> {
    let mut b = [0u8; 104];
    b[0..4].copy_from_slice(&c.to_ne_bytes());
    b[4..8].copy_from_slice(&flags.to_ne_bytes());
    b[8..16].copy_from_slice(&arg0.to_ne_bytes());
    ioctl(vm.as_raw_fd(), kvm::ENABLE_CAP, b.as_ptr() as u64)
}

/// KVM_CAP_X2APIC_API: its value per VM, the flag checks, and the x2APIC
/// ID format of KVM_GET/SET_LAPIC it selects.
pub fn apic_x2apic_api(e: &Env) -> R {
    let k = e.kvm();
    let sys = k.check_extension_raw(u64::from(cap::X2APIC_API) as _);
    let plain = k.create_vm().map_err(|x| x.to_string())?;
    let on_plain = ioctl(plain.as_raw_fd(), kvm::CHECK_EXTENSION, u64::from(cap::X2APIC_API)).map_err(|x| format!("errno {x}"))?;
    if sys != 0xf || on_plain != 0xb {
        return Err(format!("KVM_CAP_X2APIC_API: {sys:#x} on the system fd, {on_plain:#x} on a VM without irqchip"));
    }
    expect_errno("ENABLE_SUPPRESS_EOI_BROADCAST without the split irqchip", enable_cap(&plain, cap::X2APIC_API, 4, 0), libc::EINVAL)?;
    let vm = k.create_vm().map_err(|x| x.to_string())?;
    enable_split(&vm, 24, 0).map_err(|x| format!("split: errno {x}"))?;
    expect_errno("unknown X2APIC_API flag", enable_cap(&vm, cap::X2APIC_API, 0x10, 0), libc::EINVAL)?;
    expect_errno("both EOI broadcast modes", enable_cap(&vm, cap::X2APIC_API, 0xc, 0), libc::EINVAL)?;
    enable_cap(&vm, cap::X2APIC_API, 3, 0).map_err(|x| format!("X2APIC_API(3): errno {x}"))?;
    let v = vm.create_vcpu(1).map_err(|x| x.to_string())?;
    let cpuid = k.get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES).map_err(|x| x.to_string())?;
    v.set_cpuid2(&cpuid).map_err(|x| format!("SET_CPUID2: {x}"))?;
    let m = Msrs::from_entries(&[kvm_msr_entry { index: 0x1b, reserved: 0, data: 0xfee0_0c00 }]).unwrap();
    if v.set_msrs(&m).map_err(|x| x.to_string())? != 1 {
        return Err("APIC_BASE x2APIC refused".into());
    }
    let mut p = get_lapic(&v)?;
    if reg(&p, 0x20) != 1 || reg(&p, 0xd0) != 2 {
        return Err(format!("x2APIC with 32-bit IDs: ID {:#x} LDR {:#x}", reg(&p, 0x20), reg(&p, 0xd0)));
    }
    set_reg(&mut p, 0x20, 5);
    expect_errno("KVM_SET_LAPIC with another x2APIC ID", ioctl(v.as_raw_fd(), kvm::SET_LAPIC, p.as_ptr() as u64), libc::EINVAL)?;
    set_reg(&mut p, 0x20, 1);
    set_lapic(&v, &p)
}

pub(super) fn get_lapic(v: &VcpuFd) -> Result<[u8; 1024], String> {
    let mut p = [0u8; 1024];
    ioctl(v.as_raw_fd(), kvm::GET_LAPIC, p.as_mut_ptr() as u64).map_err(|e| format!("KVM_GET_LAPIC: errno {e}"))?;
    Ok(p)
}

pub(super) fn set_lapic(v: &VcpuFd, p: &[u8; 1024]) -> Result<(), String> {
    ioctl(v.as_raw_fd(), kvm::SET_LAPIC, p.as_ptr() as u64).map_err(|e| format!("KVM_SET_LAPIC: errno {e}"))?;
    Ok(())
}

pub(super) fn reg(p: &[u8; 1024], off: usize) -> u32 {
    u32::from_le_bytes([p[off], p[off + 1], p[off + 2], p[off + 3]])
}

pub(super) fn set_reg(p: &mut [u8; 1024], off: usize, v: u32) {
    p[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

/// Whether vector `v` is set in the 256-bit register at `base` (IRR, ISR).
pub(super) fn bit(p: &[u8; 1024], base: usize, v: u8) -> bool {
    reg(p, base + 0x10 * usize::from(v >> 5)) & (1 << (v & 31)) != 0
}

pub(super) fn mp_state(v: &VcpuFd) -> Result<u32, String> {
    let mut s = 0u32;
    ioctl(v.as_raw_fd(), kvm::GET_MP_STATE, &mut s as *mut u32 as u64).map_err(|e| format!("KVM_GET_MP_STATE: errno {e}"))?;
    Ok(s)
}

/// A split-irqchip VM with 64 KiB at GPA 0 holding apic16.bin at 0x1000.
fn apic_vm(e: &Env) -> Result<(kvm_ioctls::Kvm, VmFd, Arc<Mem>), String> {
    let Some(dir) = &e.guests else { return Err("needs --guests DIR (apic16.bin)".into()) };
    let code = std::fs::read(format!("{dir}/apic16.bin")).map_err(|x| format!("apic16.bin: {x}"))?;
    let k = e.kvm();
    let vm = k.create_vm().map_err(|x| x.to_string())?;
    enable_split(&vm, 24, 0).map_err(|x| format!("KVM_ENABLE_CAP(SPLIT_IRQCHIP): errno {x}"))?;
    let mem = Arc::new(Mem::new(0x10000));
    mem.write(0x1000, &code);
    // SAFETY: the mapping outlives the VM in every caller.
    unsafe { vm.set_user_memory_region(region(0, 0, 0x10000, mem.ptr as u64, 0)) }.map_err(|x| x.to_string())?;
    Ok((k, vm, mem))
}

/// vCPU `id` with the supported CPUID, its APIC at `APIC_BASE`, in real
/// mode at 0:1000 with BX = `case`.
pub(super) fn apic_vcpu(k: &kvm_ioctls::Kvm, vm: &VmFd, id: u64, case: u64) -> Result<VcpuFd, String> {
    let v = vm.create_vcpu(id).map_err(|x| format!("vcpu {id}: {x}"))?;
    let cpuid = k.get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES).map_err(|x| x.to_string())?;
    v.set_cpuid2(&cpuid).map_err(|x| format!("SET_CPUID2: {x}"))?;
    let base = APIC_BASE | 0x800 | if id == 0 { 0x100 } else { 0 };
    let m = Msrs::from_entries(&[kvm_msr_entry { index: 0x1b, reserved: 0, data: base }]).unwrap();
    let n = v.set_msrs(&m).map_err(|x| format!("SET_MSRS(APIC_BASE): {x}"))?;
    if n != 1 {
        return Err(format!("SET_MSRS(APIC_BASE {base:#x}) refused"));
    }
    real_mode(&v, 0x1000);
    let mut r = v.get_regs().unwrap();
    r.rbx = case;
    v.set_regs(&r).unwrap();
    Ok(v)
}

/// Runs until the guest's OUT; returns the port and EAX.
pub(super) fn run_to_out(v: &mut VcpuFd) -> Result<(u16, u32), String> {
    let port = match v.run() {
        Ok(VcpuExit::IoOut(p, _)) => p,
        x => return Err(format!("expected an OUT, got {x:?}")),
    };
    let r: kvm_regs = v.get_regs().map_err(|x| x.to_string())?;
    Ok((port, r.rax as u32))
}

pub(super) fn expect_out(v: &mut VcpuFd, port: u16) -> Result<u32, String> {
    let (p, eax) = run_to_out(v)?;
    if p != port {
        return Err(format!("OUT to port {p:#x}, expected {port:#x} (log {:?})", ()));
    }
    Ok(eax)
}

pub(super) fn log(mem: &Mem) -> Vec<u8> {
    let n = mem.read(LOG_N, 1)[0] as usize;
    mem.read(LOG, n.min(64))
}

pub(super) fn expect_log(mem: &Mem, want: &[u8]) -> R {
    let l = log(mem);
    (l == want).then_some(()).ok_or(format!("interrupt log {l:02x?}, expected {want:02x?}"))
}

/// One guest case of apic16.bin on vCPU 0.
fn one(e: &Env, case: u64) -> Result<(VcpuFd, Arc<Mem>, VmFd), String> {
    let (k, vm, mem) = apic_vm(e)?;
    let v = apic_vcpu(&k, &vm, 0, case)?;
    Ok((v, mem, vm))
}

/// Capabilities, `KVM_ENABLE_CAP` rules, the APIC's RESET state, MP
/// states, `KVM_INTERRUPT` as ExtINT, and bad arguments.
pub fn apic_caps(e: &Env) -> R {
    let k = e.kvm();
    if k.check_extension_raw(u64::from(cap::SPLIT_IRQCHIP) as _) == 0 {
        return Err("KVM_CAP_SPLIT_IRQCHIP is 0".into());
    }
    // No irqchip: no LAPIC, only RUNNABLE.
    let plain = k.create_vm().map_err(|x| x.to_string())?;
    let pv = plain.create_vcpu(0).map_err(|x| x.to_string())?;
    let mut page = [0u8; 1024];
    expect_errno("KVM_GET_LAPIC without irqchip", ioctl(pv.as_raw_fd(), kvm::GET_LAPIC, page.as_mut_ptr() as u64), libc::EINVAL)?;
    expect_errno("KVM_SET_LAPIC without irqchip", ioctl(pv.as_raw_fd(), kvm::SET_LAPIC, page.as_ptr() as u64), libc::EINVAL)?;
    if mp_state(&pv)? != 0 {
        return Err("MP state without irqchip is not RUNNABLE".into());
    }
    let halted = 3u32;
    expect_errno("KVM_SET_MP_STATE(HALTED) without irqchip", ioctl(pv.as_raw_fd(), kvm::SET_MP_STATE, &halted as *const u32 as u64), libc::EINVAL)?;
    expect_errno("split irqchip after a vCPU", enable_split(&plain, 0, 0), libc::EEXIST)?;
    // Enabling.
    let vm = k.create_vm().map_err(|x| x.to_string())?;
    expect_errno("split irqchip with 4097 pins", enable_split(&vm, 4097, 0), libc::EINVAL)?;
    expect_errno("KVM_ENABLE_CAP with flags", enable_split(&vm, 24, 1), libc::EINVAL)?;
    expect_errno("KVM_ENABLE_CAP bad pointer", ioctl(vm.as_raw_fd(), kvm::ENABLE_CAP, 0x10), libc::EFAULT)?;
    enable_split(&vm, 24, 0).map_err(|x| format!("split irqchip: errno {x}"))?;
    expect_errno("split irqchip twice", enable_split(&vm, 24, 0), libc::EEXIST)?;
    let v0 = vm.create_vcpu(0).map_err(|x| x.to_string())?;
    let v1 = vm.create_vcpu(1).map_err(|x| x.to_string())?;
    let p = get_lapic(&v0)?;
    let want = [(0x20, 0), (0xd0, 0), (0xe0, 0xffff_ffff), (0xf0, 0xff), (0x80, 0), (0x350, 0x700), (0x360, 0x1_0000), (0x320, 0x1_0000), (0x380, 0)];
    for (off, val) in want {
        if reg(&p, off) != val {
            return Err(format!("vCPU 0 APIC register {off:#x} = {:#x} after RESET, expected {val:#x}", reg(&p, off)));
        }
    }
    if reg(&p, 0x30) & 0xff != 0x14 {
        return Err(format!("APIC version {:#x}", reg(&p, 0x30)));
    }
    let p1 = get_lapic(&v1)?;
    if reg(&p1, 0x20) != 1 << 24 || reg(&p1, 0x350) != 0x1_0000 {
        return Err(format!("vCPU 1: ID {:#x}, LVT0 {:#x}", reg(&p1, 0x20), reg(&p1, 0x350)));
    }
    // The BSP runs, an AP waits for INIT/SIPI.
    let (s0, s1) = (mp_state(&v0)?, mp_state(&v1)?);
    if (s0, s1) != (0, 1) {
        return Err(format!("MP states {s0}, {s1}: expected RUNNABLE, UNINITIALIZED"));
    }
    let bad = 17u32;
    expect_errno("KVM_SET_MP_STATE(17)", ioctl(v1.as_raw_fd(), kvm::SET_MP_STATE, &bad as *const u32 as u64), libc::EINVAL)?;
    expect_errno("KVM_GET_LAPIC bad pointer", ioctl(v0.as_raw_fd(), kvm::GET_LAPIC, 0x10), libc::EFAULT)?;
    expect_errno("KVM_SET_LAPIC bad pointer", ioctl(v0.as_raw_fd(), kvm::SET_LAPIC, 0x10), libc::EFAULT)?;
    // KVM_INTERRUPT is an ExtINT with an in-kernel APIC: one at a time.
    let irq = |v: u32| ioctl(v0.as_raw_fd(), kvm::INTERRUPT, &v as *const u32 as u64);
    irq(0x20).map_err(|x| format!("KVM_INTERRUPT: errno {x}"))?;
    expect_errno("second KVM_INTERRUPT", irq(0x21), libc::EEXIST)?;
    expect_errno("KVM_INTERRUPT(256)", irq(256), libc::EINVAL)?;
    // SET_LAPIC round trip changes nothing.
    set_lapic(&v1, &p1)?;
    let q = get_lapic(&v1)?;
    (q[..] == p1[..]).then_some(()).ok_or("KVM_GET_LAPIC after KVM_SET_LAPIC of the same page differs".into())
}

/// Self-IPIs held by TPR, delivered highest first when it drops, each
/// EOI letting the next in; IRR/ISR/PPR seen through KVM_GET_LAPIC.
pub fn apic_self_ipi(e: &Env) -> R {
    let (mut v, mem, _vm) = one(e, 1)?;
    let lvr_hi = expect_out(&mut v, 0x10)? & 0xffff;
    expect_log(&mem, &[])?;
    let p = get_lapic(&v)?;
    if lvr_hi != reg(&p, 0x30) >> 16 {
        return Err(format!("2-byte read of LVR[31:16] gave {lvr_hi:#x}, LVR is {:#x}", reg(&p, 0x30)));
    }
    if !bit(&p, 0x200, 0x40) || !bit(&p, 0x200, 0x50) || reg(&p, 0x80) != 0x50 {
        return Err(format!("held: IRR 0x40 {} 0x50 {}, TPR {:#x}", bit(&p, 0x200, 0x40), bit(&p, 0x200, 0x50), reg(&p, 0x80)));
    }
    // CR8 is TPR[7:4] (KVM_GET_SREGS).
    let cr8 = v.get_sregs().map_err(|x| x.to_string())?.cr8;
    if cr8 != 5 {
        return Err(format!("CR8 {cr8} with TPR 0x50"));
    }
    let ppr = expect_out(&mut v, 0x11)?;
    expect_log(&mem, &[0x50, 0x40])?;
    let p = get_lapic(&v)?;
    let isr = (0..8).any(|i| reg(&p, 0x100 + 0x10 * i) != 0);
    let irr = (0..8).any(|i| reg(&p, 0x200 + 0x10 * i) != 0);
    (ppr == 0 && !isr && !irr).then_some(()).ok_or(format!("after EOIs: PPR {ppr:#x}, ISR set {isr}, IRR set {irr}"))
}

/// A 1 ms one-shot timer wakes HLT, which waits in the kernel.
pub fn apic_timer_oneshot(e: &Env) -> R {
    let (mut v, mem, _vm) = one(e, 2)?;
    let tmcct = expect_out(&mut v, 0x12)?;
    expect_log(&mem, &[0x60])?;
    (tmcct == 0).then_some(()).ok_or(format!("TMCCT {tmcct:#x} after expiry"))
}

/// A 1 ms periodic timer: interrupts keep coming, one per period (the
/// guest stops it after five; one more may slip in before it does).
pub fn apic_timer_periodic(e: &Env) -> R {
    let (mut v, mem, _vm) = one(e, 3)?;
    let t = std::time::Instant::now();
    expect_out(&mut v, 0x13)?;
    let el = t.elapsed();
    let l = log(&mem);
    if l.len() < 5 || l.len() > 6 || l.iter().any(|x| *x != 0x60) {
        return Err(format!("interrupt log {l:02x?}, expected five or six 0x60"));
    }
    (el >= std::time::Duration::from_millis(4)).then_some(()).ok_or(format!("five 1 ms periods took {el:?}"))
}

/// TSC-deadline mode: the deadline fires once and reads 0 afterwards.
pub fn apic_tsc_deadline(e: &Env) -> R {
    let (mut v, mem, _vm) = one(e, 4)?;
    let left = expect_out(&mut v, 0x14)?;
    expect_log(&mem, &[0x60])?;
    (left == 0).then_some(()).ok_or(format!("IA32_TSC_DEADLINE {left:#x} after firing"))
}

/// x2APIC: ID by MSR, SELF_IPI, #GP for reading EOI, the xAPIC page reads
/// all ones in x2APIC mode.
pub fn apic_x2apic(e: &Env) -> R {
    let (mut v, mem, _vm) = one(e, 5)?;
    let id = expect_out(&mut v, 0x15)?;
    if id != 0 {
        return Err(format!("x2APIC ID {id:#x}"));
    }
    let page = expect_out(&mut v, 0x16)?;
    expect_log(&mem, &[0x40, 0x0d])?;
    if page != 0xffff_ffff {
        return Err(format!("xAPIC page in x2APIC mode reads {page:#x}"));
    }
    let m = Msrs::from_entries(&[kvm_msr_entry { index: 0x1b, reserved: 0, data: 0 }]).unwrap();
    let mut m = m;
    v.get_msrs(&mut m).map_err(|x| x.to_string())?;
    let base = m.as_slice()[0].data;
    (base == APIC_BASE | 0xd00).then_some(()).ok_or(format!("APIC_BASE {base:#x}"))
}

/// An NMI IPI to self reaches vector 2.
pub fn apic_nmi_ipi(e: &Env) -> R {
    let (mut v, mem, _vm) = one(e, 6)?;
    expect_out(&mut v, 0x17)?;
    expect_log(&mem, &[0x02])
}

/// KVM_GET/SET_LAPIC while a one-shot timer counts: the count runs down,
/// the same page set back keeps the timer, a new TMICT set by the VMM
/// restarts it and its interrupt wakes the guest.
pub fn apic_get_set_lapic(e: &Env) -> R {
    let (mut v, mem, _vm) = one(e, 7)?;
    expect_out(&mut v, 0x18)?;
    let p = get_lapic(&v)?;
    let (tmict, tmcct) = (reg(&p, 0x380), reg(&p, 0x390));
    if tmict != 0xffff_ffff || tmcct == 0 || tmcct >= tmict || reg(&p, 0x320) != 0x60 || reg(&p, 0x3e0) != 0xa {
        return Err(format!("mid-timer: TMICT {tmict:#x} TMCCT {tmcct:#x} LVTT {:#x} TDCR {:#x}", reg(&p, 0x320), reg(&p, 0x3e0)));
    }
    set_lapic(&v, &p)?;
    let q = get_lapic(&v)?;
    if reg(&q, 0x380) != tmict || reg(&q, 0x390) == 0 {
        return Err(format!("after setting it back: TMICT {:#x} TMCCT {:#x}", reg(&q, 0x380), reg(&q, 0x390)));
    }
    let mut r = q;
    set_reg(&mut r, 0x380, 1000); // 128 us at divide 128
    set_lapic(&v, &r)?;
    expect_out(&mut v, 0x19)?;
    expect_log(&mem, &[0x60])
}

/// A 1 ns periodic timer whose handler never EOIs: one delivery, the
/// vector stays in service, the host is not flooded.
pub fn apic_no_eoi(e: &Env) -> R {
    let (mut v, mem, _vm) = one(e, 8)?;
    expect_out(&mut v, 0x1a)?;
    expect_log(&mem, &[0x61])?;
    let p = get_lapic(&v)?;
    bit(&p, 0x100, 0x61).then_some(()).ok_or("vector 0x61 not in service".into())
}

/// INIT and SIPI from vCPU 0 start vCPU 1 (waiting in KVM_RUN, which
/// answers EAGAIN until it is started), whose fixed IPI reaches vCPU 0.
pub fn apic_init_sipi(e: &Env) -> R {
    let (k, vm, mem) = apic_vm(e)?;
    let mut v0 = apic_vcpu(&k, &vm, 0, 9)?;
    let v1 = apic_vcpu(&k, &vm, 1, 0)?;
    let ap = std::thread::spawn(move || -> Result<(u32, VcpuFd), String> {
        let mut v1 = v1;
        let mut eagain = 0;
        loop {
            match v1.run() {
                Err(x) if x.errno() == libc::EAGAIN && eagain < 100 => eagain += 1,
                Ok(VcpuExit::IoOut(0x1d, _)) => return Ok((eagain, v1)),
                x => return Err(format!("AP: {x:?} after {eagain} EAGAIN")),
            }
        }
    });
    let r0 = expect_out(&mut v0, 0x1b);
    let (eagain, v1) = ap.join().map_err(|_| "AP thread panicked".to_string())??;
    r0?;
    expect_log(&mem, &[0x45])?;
    let _ = eagain;
    let s1 = mp_state(&v1)?;
    if s1 != 0 {
        return Err(format!("AP MP state {s1} after SIPI"));
    }
    // INIT leaves the TSC alone (APM vol. 2 14.1.3; KVM keeps the offset):
    // the AP's TSC after INIT/SIPI is the BSP's, not reset (nsvm once
    // zeroed the offset there, giving the AP the host's TSC).
    let tsc = |v: &VcpuFd| -> Result<u64, String> {
        let mut m = Msrs::from_entries(&[kvm_msr_entry { index: 0x10, ..Default::default() }]).unwrap();
        v.get_msrs(&mut m).map_err(|x| format!("GET_MSRS(TSC): {x}"))?;
        Ok(m.as_slice()[0].data)
    };
    let khz = v0.get_tsc_khz().map_err(|x| format!("KVM_GET_TSC_KHZ: {x}"))? as u64;
    let (a, b, c) = (tsc(&v0)?, tsc(&v1)?, tsc(&v0)?);
    let slop = khz * 1000;
    if b.wrapping_add(slop) < a || b > c.wrapping_add(slop) {
        return Err(format!("AP's TSC {b} not with the BSP's ({a} .. {c}) after INIT/SIPI"));
    }
    Ok(())
}

/// `KVM_SIGNAL_MSI`: `struct kvm_msi` {address_lo, address_hi, data, flags, devid}.
pub(super) fn signal_msi(vm: &VmFd, lo: u32, hi: u32, data: u32, flags: u32) -> Result<i64, i32> {
    let mut b = [0u8; 32];
    for (i, w) in [lo, hi, data, flags].iter().enumerate() {
        b[4 * i..4 * i + 4].copy_from_slice(&w.to_ne_bytes());
    }
    ioctl(vm.as_raw_fd(), kvm::SIGNAL_MSI, b.as_ptr() as u64)
}

/// `KVM_SET_GSI_ROUTING` with entries (gsi, type, flags, address_lo, data).
pub(super) fn set_routing(vm: &VmFd, ents: &[(u32, u32, u32, u32, u32)], nr: Option<u32>) -> Result<i64, i32> {
    let mut b = vec![0u8; 8 + 48 * ents.len()];
    b[0..4].copy_from_slice(&nr.unwrap_or(ents.len() as u32).to_ne_bytes());
    for (i, (gsi, ty, flags, lo, data)) in ents.iter().enumerate() {
        let o = 8 + 48 * i;
        b[o..o + 4].copy_from_slice(&gsi.to_ne_bytes());
        b[o + 4..o + 8].copy_from_slice(&ty.to_ne_bytes());
        b[o + 8..o + 12].copy_from_slice(&flags.to_ne_bytes());
        b[o + 16..o + 20].copy_from_slice(&lo.to_ne_bytes());
        b[o + 24..o + 28].copy_from_slice(&data.to_ne_bytes());
    }
    ioctl(vm.as_raw_fd(), kvm::SET_GSI_ROUTING, b.as_ptr() as u64)
}

/// MSIs: KVM_SIGNAL_MSI's answers (delivered count, EPERM for no
/// destination, EINVAL for bad flags or no irqchip), KVM_SET_GSI_ROUTING's
/// checks, an MSI waking HLT, and the EOI of a level-triggered vector
/// routed through a reserved I/O APIC pin ending KVM_RUN with
/// KVM_EXIT_IOAPIC_EOI.
pub fn apic_msi(e: &Env) -> R {
    let k = e.kvm();
    let plain = k.create_vm().map_err(|x| x.to_string())?;
    expect_errno("KVM_SIGNAL_MSI without irqchip", signal_msi(&plain, 0xfee0_0000, 0, 0x40, 0), libc::EINVAL)?;
    expect_errno("KVM_SET_GSI_ROUTING without irqchip", set_routing(&plain, &[], None), libc::EINVAL)?;
    let (k, vm, mem) = apic_vm(e)?;
    let mut v = apic_vcpu(&k, &vm, 0, 10)?;
    expect_errno("KVM_SIGNAL_MSI bad flags", signal_msi(&vm, 0xfee0_0000, 0, 0x40, 2), libc::EINVAL)?;
    expect_errno("KVM_SIGNAL_MSI bad pointer", ioctl(vm.as_raw_fd(), kvm::SIGNAL_MSI, 0x10), libc::EFAULT)?;
    expect_errno("routes: too many", set_routing(&vm, &[], Some(4097)), libc::EINVAL)?;
    expect_errno("routes: GSI 4096", set_routing(&vm, &[(4096, 2, 0, 0xfee0_0000, 0x40)], None), libc::EINVAL)?;
    expect_errno("routes: an irqchip pin with the split irqchip", set_routing(&vm, &[(1, 1, 0, 2, 1)], None), libc::EINVAL)?;
    expect_errno("routes: one GSI twice", set_routing(&vm, &[(1, 2, 0, 0xfee0_0000, 0x40), (1, 2, 0, 0xfee0_0000, 0x41)], None), libc::EINVAL)?;
    expect_errno("routes: unknown flag", set_routing(&vm, &[(1, 2, 2, 0xfee0_0000, 0x40)], None), libc::EINVAL)?;
    expect_errno("routes: unknown type", set_routing(&vm, &[(1, 7, 0, 0, 0)], None), libc::EINVAL)?;
    expect_errno("routes: bad pointer", ioctl(vm.as_raw_fd(), kvm::SET_GSI_ROUTING, 0x10), libc::EFAULT)?;
    // GSI 3 (a reserved I/O APIC pin): level-triggered vector 0x50 to APIC 0.
    set_routing(&vm, &[(3, 2, 0, 0xfee0_0000, 0xc050), (30, 2, 1, 0xfee0_0000, 0x41)], None).map_err(|x| format!("KVM_SET_GSI_ROUTING: errno {x}"))?;
    // Before the guest enables its APIC: the destination drops it.
    let r = signal_msi(&vm, 0xfee0_0000, 0, 0x40, 0).map_err(|x| format!("KVM_SIGNAL_MSI before SPIV: errno {x}"))?;
    if r != 0 {
        return Err(format!("KVM_SIGNAL_MSI to a software-disabled APIC returned {r}, expected 0"));
    }
    expect_out(&mut v, 0x1c)?;
    let r = signal_msi(&vm, 0xfee0_0000, 0, 0x40, 0).map_err(|x| format!("KVM_SIGNAL_MSI: errno {x}"))?;
    if r != 1 {
        return Err(format!("KVM_SIGNAL_MSI returned {r}, expected 1"));
    }
    // No APIC has ID 7: nothing accepts it (KVM's APIC map answers 0).
    let r = signal_msi(&vm, 0xfee0_7000, 0, 0x40, 0).map_err(|x| format!("KVM_SIGNAL_MSI to APIC ID 7: errno {x}"))?;
    if r != 0 {
        return Err(format!("KVM_SIGNAL_MSI to APIC ID 7 (none) returned {r}, expected 0"));
    }
    let t = std::thread::spawn(move || -> Result<VcpuFd, String> {
        let mut v = v;
        match v.run() {
            Ok(VcpuExit::IoapicEoi(0x50)) => {}
            x => return Err(format!("expected KVM_EXIT_IOAPIC_EOI for 0x50, got {x:?}")),
        }
        match v.run() {
            Ok(VcpuExit::IoOut(0x1e, _)) => Ok(v),
            x => Err(format!("after the EOI exit: {x:?}")),
        }
    });
    std::thread::sleep(std::time::Duration::from_millis(100));
    // The vCPU waits in HLT in the kernel: the level MSI wakes it.
    let r = signal_msi(&vm, 0xfee0_0000, 0, 0xc050, 0).map_err(|x| format!("KVM_SIGNAL_MSI (level): errno {x}"));
    let v = t.join().map_err(|_| "vCPU thread panicked".to_string())??;
    r?;
    expect_log(&mem, &[0x40, 0x50])?;
    drop(v);
    Ok(())
}

/// IPIs between two vCPUs (the AP started by INIT/SIPI): physical fixed,
/// logical flat, all-including-self, NMI, lowest priority (exactly one of
/// the two takes it), then a flood of 5000 fixed IPIs and a last one that
/// stops the AP; both vCPUs end and the host stays responsive.
pub fn apic_ipi_modes(e: &Env) -> R {
    let (k, vm, mem) = apic_vm(e)?;
    let mut v0 = apic_vcpu(&k, &vm, 0, 11)?;
    let v1 = apic_vcpu(&k, &vm, 1, 0)?;
    let ap = std::thread::spawn(move || -> Result<VcpuFd, String> {
        let mut v1 = v1;
        let mut eagain = 0;
        loop {
            match v1.run() {
                Err(x) if x.errno() == libc::EAGAIN && eagain < 100 => eagain += 1,
                Ok(VcpuExit::IoOut(0x1d, _)) => return Ok(v1),
                x => return Err(format!("AP: {x:?} after {eagain} EAGAIN")),
            }
        }
    });
    let r0 = expect_out(&mut v0, 0x1b);
    let v1 = ap.join().map_err(|_| "AP thread panicked".to_string())??;
    r0?;
    drop(v1);
    let bsp = log(&mem);
    let n = mem.read(0x5f4, 1)[0] as usize;
    let aplog = mem.read(0x700, n.min(64));
    let flood = u16::from_le_bytes([mem.read(0x5f8, 2)[0], mem.read(0x5f8, 2)[1]]);
    let has = |l: &[u8], v: u8| l.contains(&v);
    let lowest = bsp.iter().chain(aplog.iter()).filter(|x| **x == 0x44).count();
    let ok = has(&bsp, 0x43) && !has(&bsp, 0x41) && !has(&bsp, 0x42) && !has(&bsp, 0x02)
        && has(&aplog, 0x41) && has(&aplog, 0x42) && has(&aplog, 0x43) && has(&aplog, 0x02)
        && lowest == 1 && (1..=5000).contains(&flood);
    ok.then_some(()).ok_or(format!("BSP log {bsp:02x?}, AP log {aplog:02x?}, lowest-priority deliveries {lowest}, flood IPIs taken {flood}"))
}

/// HLT with RFLAGS.IF = 0 waits in the kernel: a signal ends KVM_RUN with
/// EINTR and KVM_EXIT_INTR (MP state HALTED), immediate_exit is honoured,
/// and KVM_NMI wakes it.
pub fn apic_hlt_signal(e: &Env) -> R {
    let (v, mem, _vm) = one(e, 12)?;
    super::install_sigusr1();
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        // SAFETY: pthread_self has no preconditions.
        tx.send(unsafe { libc::pthread_self() }).unwrap();
        let mut v = v;
        let r = v.run().map(|_| ()).map_err(|x| x.errno());
        let reason = v.get_kvm_run().exit_reason;
        (r, reason, v)
    });
    let th = rx.recv().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    // SAFETY: signals the test thread, which is alive until joined.
    unsafe { libc::pthread_kill(th, libc::SIGUSR1) };
    let (r, reason, mut v) = t.join().map_err(|_| "vCPU thread panicked".to_string())?;
    if r != Err(libc::EINTR) || reason != kvm_bindings::KVM_EXIT_INTR {
        return Err(format!("HLT with IF=0 and a signal: KVM_RUN {r:?}, exit_reason {reason}"));
    }
    let s = mp_state(&v)?;
    if s != 3 {
        return Err(format!("MP state {s} after the signal, expected HALTED (3)"));
    }
    v.set_kvm_immediate_exit(1);
    match v.run() {
        Err(x) if x.errno() == libc::EINTR => {}
        x => return Err(format!("immediate_exit while halted: {x:?}")),
    }
    v.set_kvm_immediate_exit(0);
    ioctl(v.as_raw_fd(), kvm::NMI, 0).map_err(|x| format!("KVM_NMI: errno {x}"))?;
    expect_out(&mut v, 0x10)?;
    expect_log(&mem, &[0x02])
}

/// An interrupt in delivery restored with `KVM_SET_VCPU_EVENTS`
/// (`interrupt.injected`, its vector in service through `KVM_SET_LAPIC`), as
/// QEMU restores a vCPU saved between the APIC's acknowledgement and the
/// delivery (migration): delivered at the next entry although LVT0 is
/// masked, the handler's EOI retires it. nsvm queued it as an ExtINT,
/// held behind the masked LINT0 for ever with 0x40 in service (a migrated
/// QEMU guest hung so). A watchdog signal ends a KVM_RUN that never returns.
pub fn apic_injected_restore(e: &Env) -> R {
    let (mut v, mem, _vm) = one(e, 13)?;
    expect_out(&mut v, 0x10)?;
    let mut p = get_lapic(&v)?;
    let isr2 = reg(&p, 0x120);
    set_reg(&mut p, 0x120, isr2 | 1); // ISR bit 0x40
    set_lapic(&v, &p)?;
    let mut ev = v.get_vcpu_events().map_err(|x| format!("KVM_GET_VCPU_EVENTS: {x}"))?;
    ev.interrupt.injected = 1;
    ev.interrupt.nr = 0x40;
    ev.interrupt.soft = 0;
    v.set_vcpu_events(&ev).map_err(|x| format!("KVM_SET_VCPU_EVENTS: {x}"))?;
    let back = v.get_vcpu_events().map_err(|x| format!("KVM_GET_VCPU_EVENTS: {x}"))?;
    if back.interrupt.injected != 1 || back.interrupt.nr != 0x40 {
        return Err(format!("KVM_GET_VCPU_EVENTS after the restore: interrupt injected {} nr {:#x}", back.interrupt.injected, back.interrupt.nr));
    }
    super::install_sigusr1();
    let (tx, rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        // SAFETY: pthread_self has no preconditions.
        tx.send(unsafe { libc::pthread_self() }).unwrap();
        let r = run_to_out(&mut v);
        let _ = done_tx.send(());
        (r, v)
    });
    let th = rx.recv().unwrap();
    if done_rx.recv_timeout(std::time::Duration::from_secs(10)).is_err() {
        // SAFETY: signals the test thread, which is alive until joined.
        unsafe { libc::pthread_kill(th, libc::SIGUSR1) };
    }
    let (r, _v) = t.join().map_err(|_| "vCPU thread panicked".to_string())?;
    let (port, ppr) = r.map_err(|x| format!("the restored interrupt was not delivered in 10 s: {x}; log {:02x?}", log(&mem)))?;
    if port != 0x11 || ppr != 0 {
        return Err(format!("OUT {port:#x} with PPR {ppr:#x}, expected OUT 0x11 with PPR 0"));
    }
    expect_log(&mem, &[0x40])
}

/// `KVM_IRQFD` with `struct kvm_irqfd` {fd, gsi, flags, resamplefd}.
pub(super) fn irqfd(vm: &VmFd, fd: i32, gsi: u32, flags: u32) -> Result<i64, i32> {
    let mut b = [0u8; 32];
    b[0..4].copy_from_slice(&fd.to_ne_bytes());
    b[4..8].copy_from_slice(&gsi.to_ne_bytes());
    b[8..12].copy_from_slice(&flags.to_ne_bytes());
    ioctl(vm.as_raw_fd(), 0x4020_ae76, b.as_ptr() as u64)
}

/// irqfd: KVM_IRQFD's checks (no irqchip, unknown flags, resample with the
/// split irqchip, bad fd, not an eventfd, an eventfd twice), an eventfd
/// signal raising its GSI's MSI, a new route taking effect for it (a
/// level-triggered one on a reserved pin: KVM_EXIT_IOAPIC_EOI) while the
/// vCPU waits in HLT, deassign.
pub fn apic_irqfd(e: &Env) -> R {
    // SAFETY: plain syscall creating an fd we own.
    let efd = unsafe { libc::eventfd(0, 0) };
    if efd < 0 {
        return Err("eventfd failed".into());
    }
    let k = e.kvm();
    let plain = k.create_vm().map_err(|x| x.to_string())?;
    expect_errno("KVM_IRQFD without irqchip", irqfd(&plain, efd, 7, 0), libc::EINVAL)?;
    let (k, vm, mem) = apic_vm(e)?;
    let mut v = apic_vcpu(&k, &vm, 0, 10)?;
    expect_errno("KVM_IRQFD unknown flag", irqfd(&vm, efd, 7, 4), libc::EINVAL)?;
    expect_errno("KVM_IRQFD resample with the split irqchip", irqfd(&vm, efd, 7, 2), libc::EINVAL)?;
    expect_errno("KVM_IRQFD fd -1", irqfd(&vm, -1, 7, 0), libc::EBADF)?;
    expect_errno("KVM_IRQFD on a VM fd", irqfd(&vm, vm.as_raw_fd(), 7, 0), libc::EINVAL)?;
    expect_errno("KVM_IRQFD bad pointer", ioctl(vm.as_raw_fd(), 0x4020_ae76, 0x10), libc::EFAULT)?;
    set_routing(&vm, &[(7, 2, 0, 0xfee0_0000, 0x40)], None).map_err(|x| format!("routes: errno {x}"))?;
    irqfd(&vm, efd, 7, 0).map_err(|x| format!("KVM_IRQFD: errno {x}"))?;
    expect_errno("the same eventfd twice", irqfd(&vm, efd, 8, 0), libc::EBUSY)?;
    expect_out(&mut v, 0x1c)?;
    let one = 1u64.to_ne_bytes();
    // SAFETY: writes 8 bytes from a live buffer to our eventfd.
    if unsafe { libc::write(efd, one.as_ptr().cast(), 8) } != 8 {
        return Err("eventfd write failed".into());
    }
    let t = std::thread::spawn(move || -> Result<VcpuFd, String> {
        let mut v = v;
        match v.run() {
            Ok(VcpuExit::IoapicEoi(0x50)) => {}
            x => return Err(format!("expected KVM_EXIT_IOAPIC_EOI for 0x50, got {x:?}")),
        }
        match v.run() {
            Ok(VcpuExit::IoOut(0x1e, _)) => Ok(v),
            x => Err(format!("after the EOI exit: {x:?}")),
        }
    });
    std::thread::sleep(std::time::Duration::from_millis(100));
    // The route changes under the irqfd: level-triggered 0x50 now.
    let r = set_routing(&vm, &[(7, 2, 0, 0xfee0_0000, 0xc050)], None).map_err(|x| format!("new routes: errno {x}"));
    // SAFETY: as above.
    let w = unsafe { libc::write(efd, one.as_ptr().cast(), 8) };
    let v = t.join().map_err(|_| "vCPU thread panicked".to_string())??;
    r?;
    if w != 8 {
        return Err("eventfd write failed".into());
    }
    expect_log(&mem, &[0x40, 0x50])?;
    irqfd(&vm, efd, 7, 1).map_err(|x| format!("deassign: errno {x}"))?;
    irqfd(&vm, efd, 7, 1).map_err(|x| format!("deassign again: errno {x}"))?;
    expect_errno("deassign fd -1", irqfd(&vm, -1, 7, 1), libc::EBADF)?;
    // SAFETY: our fd.
    unsafe { libc::close(efd) };
    drop(v);
    Ok(())
}

/// `KVM_IRQ_LINE` (`_STATUS`: status written back) on GSI `gsi`.
pub(super) fn irq_line(vm: &VmFd, gsi: u32, level: u32, status: bool) -> Result<i32, i32> {
    let mut b = [0u8; 8];
    b[0..4].copy_from_slice(&gsi.to_ne_bytes());
    b[4..8].copy_from_slice(&level.to_ne_bytes());
    let cmd = if status { 0xc008_ae67 } else { 0x4008_ae61 };
    ioctl(vm.as_raw_fd(), cmd, b.as_mut_ptr() as u64)?;
    Ok(i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

/// What QEMU's split irqchip asks besides the LAPIC: `KVM_IRQ_LINE` and
/// `KVM_IRQ_LINE_STATUS` raising a GSI's MSI route (QEMU's I/O APIC pins:
/// `ENXIO` without an irqchip, nothing for level 0 or a GSI without a
/// route, status = APICs reached, a level-triggered route's EOI ending
/// `KVM_RUN` with `KVM_EXIT_IOAPIC_EOI`), `KVM_CREATE_IRQCHIP`'s refusals
/// (`EEXIST` with the split irqchip, `EINVAL` once a vCPU exists) and
/// `KVM_SET_VAPIC_ADDR(0)` (QEMU's APIC reset; `EINVAL` without an APIC).
pub fn apic_irq_line(e: &Env) -> R {
    const CREATE_IRQCHIP: u32 = 0xae60;
    const SET_VAPIC_ADDR: u32 = 0x4008_ae93;
    let zero = 0u64;
    let k = e.kvm();
    let plain = k.create_vm().map_err(|x| x.to_string())?;
    let pv = plain.create_vcpu(0).map_err(|x| x.to_string())?;
    expect_errno("KVM_IRQ_LINE without irqchip", irq_line(&plain, 7, 1, false).map(i64::from), libc::ENXIO)?;
    expect_errno("KVM_IRQ_LINE bad pointer", ioctl(plain.as_raw_fd(), 0x4008_ae61, 0x10), libc::EFAULT)?;
    expect_errno("KVM_CREATE_IRQCHIP after a vCPU", ioctl(plain.as_raw_fd(), CREATE_IRQCHIP, 0), libc::EINVAL)?;
    expect_errno("KVM_SET_VAPIC_ADDR without irqchip", ioctl(pv.as_raw_fd(), SET_VAPIC_ADDR, &zero as *const u64 as u64), libc::EINVAL)?;
    let (k, vm, mem) = apic_vm(e)?;
    expect_errno("KVM_CREATE_IRQCHIP with the split irqchip", ioctl(vm.as_raw_fd(), CREATE_IRQCHIP, 0), libc::EEXIST)?;
    let mut v = apic_vcpu(&k, &vm, 0, 10)?;
    ioctl(v.as_raw_fd(), SET_VAPIC_ADDR, &zero as *const u64 as u64).map_err(|x| format!("KVM_SET_VAPIC_ADDR(0): errno {x}"))?;
    expect_errno("KVM_SET_VAPIC_ADDR bad pointer", ioctl(v.as_raw_fd(), SET_VAPIC_ADDR, 0x10), libc::EFAULT)?;
    set_routing(&vm, &[(7, 2, 0, 0xfee0_0000, 0x40)], None).map_err(|x| format!("routes: errno {x}"))?;
    expect_out(&mut v, 0x1c)?;
    let st = |gsi, level| irq_line(&vm, gsi, level, true).map_err(|x| format!("KVM_IRQ_LINE_STATUS({gsi}, {level}): errno {x}"));
    let s = (st(7, 0)?, st(9, 1)?);
    if s != (-1, -1) {
        return Err(format!("status for level 0 and for a GSI without a route: {s:?}, expected (-1, -1)"));
    }
    irq_line(&vm, 7, 1, false).map_err(|x| format!("KVM_IRQ_LINE: errno {x}"))?;
    let t = std::thread::spawn(move || -> Result<VcpuFd, String> {
        let mut v = v;
        match v.run() {
            Ok(VcpuExit::IoapicEoi(0x50)) => {}
            x => return Err(format!("expected KVM_EXIT_IOAPIC_EOI for 0x50, got {x:?}")),
        }
        match v.run() {
            Ok(VcpuExit::IoOut(0x1e, _)) => Ok(v),
            x => Err(format!("after the EOI exit: {x:?}")),
        }
    });
    std::thread::sleep(std::time::Duration::from_millis(100));
    // A level-triggered route on a reserved pin, as QEMU's I/O APIC sets.
    let r = set_routing(&vm, &[(7, 2, 0, 0xfee0_0000, 0xc050)], None).map_err(|x| format!("new routes: errno {x}"));
    let s = irq_line(&vm, 7, 1, true);
    let v = t.join().map_err(|_| "vCPU thread panicked".to_string())??;
    r?;
    if s != Ok(1) {
        return Err(format!("KVM_IRQ_LINE_STATUS of the level-triggered route: {s:?}, expected status 1"));
    }
    expect_log(&mem, &[0x40, 0x50])?;
    drop(v);
    Ok(())
}
