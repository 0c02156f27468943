// SPDX-License-Identifier: GPL-2.0
//! The full in-kernel irqchip (`KVM_CREATE_IRQCHIP`: two 8259A PICs, the
//! I/O APIC, local APICs), run the same way on /dev/nsvm and /dev/kvm (the
//! `irqchip` suite runs both in one boot): the ioctls' errnos and answers,
//! KVM's default state and routes, and the real-mode payload
//! `irqchip16.bin` (tests/guests/irqchip16.S) programming the PICs through
//! their ports and the I/O APIC through MMIO while the VMM raises lines,
//! signals irqfds and reads and sets the chips.

use std::os::fd::AsRawFd;
use std::sync::Arc;

use kvm_ioctls::{VcpuFd, VmFd};
use nsvm_core::uapi::kvm;

use super::apic::{apic_vcpu, expect_log, expect_out, get_lapic, irq_line, irqfd, log, reg, run_to_out};
use super::{expect_errno, ioctl, region, Env, Mem, R};

const CREATE_IRQCHIP: u32 = 0xae60;
const INTERRUPT: u32 = 0x4004_ae86;
const IRQCHIP_SIZE: usize = 520;

/// `KVM_GET_IRQCHIP` of `chip`: the whole struct.
fn get_chip(vm: &VmFd, chip: u32) -> Result<[u8; IRQCHIP_SIZE], i32> {
    let mut b = [0u8; IRQCHIP_SIZE];
    b[0..4].copy_from_slice(&chip.to_ne_bytes());
    ioctl(vm.as_raw_fd(), kvm::GET_IRQCHIP, b.as_mut_ptr() as u64)?;
    Ok(b)
}

fn set_chip(vm: &VmFd, b: &[u8; IRQCHIP_SIZE]) -> Result<i64, i32> {
    ioctl(vm.as_raw_fd(), kvm::SET_IRQCHIP, b.as_ptr() as u64)
}

/// Redirection entry `pin` of a `KVM_IRQCHIP_IOAPIC` struct.
fn redir(b: &[u8; IRQCHIP_SIZE], pin: usize) -> u64 {
    let o = 8 + 24 + 8 * pin;
    u64::from_ne_bytes(b[o..o + 8].try_into().unwrap())
}

fn ioapic_irr(b: &[u8; IRQCHIP_SIZE]) -> u32 {
    u32::from_ne_bytes(b[24..28].try_into().unwrap())
}

/// `KVM_SET_GSI_ROUTING` with irqchip entries (gsi, chip, pin) and MSI
/// entries (gsi, u32::MAX, vector).
fn routes(vm: &VmFd, ents: &[(u32, u32, u32)]) -> Result<i64, i32> {
    let mut b = vec![0u8; 8 + 48 * ents.len()];
    b[0..4].copy_from_slice(&(ents.len() as u32).to_ne_bytes());
    for (i, (gsi, chip, pin)) in ents.iter().enumerate() {
        let o = 8 + 48 * i;
        let put = |b: &mut Vec<u8>, at: usize, v: u32| b[o + at..o + at + 4].copy_from_slice(&v.to_ne_bytes());
        put(&mut b, 0, *gsi);
        if *chip == u32::MAX {
            put(&mut b, 4, 2);
            put(&mut b, 16, 0xfee0_0000);
            put(&mut b, 24, *pin);
        } else {
            put(&mut b, 4, 1);
            put(&mut b, 16, *chip);
            put(&mut b, 20, *pin);
        }
    }
    ioctl(vm.as_raw_fd(), kvm::SET_GSI_ROUTING, b.as_ptr() as u64)
}

/// A VM with the full irqchip, 64 KiB of memory holding irqchip16.bin.
fn chip_vm(e: &Env) -> Result<(kvm_ioctls::Kvm, VmFd, Arc<Mem>), String> {
    let Some(dir) = &e.guests else { return Err("needs --guests DIR (irqchip16.bin)".into()) };
    let code = std::fs::read(format!("{dir}/irqchip16.bin")).map_err(|x| format!("irqchip16.bin: {x}"))?;
    let k = e.kvm();
    let vm = k.create_vm().map_err(|x| x.to_string())?;
    ioctl(vm.as_raw_fd(), CREATE_IRQCHIP, 0).map_err(|x| format!("KVM_CREATE_IRQCHIP: errno {x}"))?;
    let mem = Arc::new(Mem::new(0x10000));
    mem.write(0x1000, &code);
    // SAFETY: the mapping outlives the VM in every caller.
    unsafe { vm.set_user_memory_region(region(0, 0, 0x10000, mem.ptr as u64, 0)) }.map_err(|x| x.to_string())?;
    Ok((k, vm, mem))
}

/// vCPU 0 of `chip_vm` for guest case `case`, FS at the I/O APIC.
fn chip_vcpu(k: &kvm_ioctls::Kvm, vm: &VmFd, case: u64) -> Result<VcpuFd, String> {
    let v = apic_vcpu(k, vm, 0, case)?;
    let mut s = v.get_sregs().map_err(|x| x.to_string())?;
    s.fs = s.ds;
    s.fs.base = 0xfec0_0000;
    v.set_sregs(&s).map_err(|x| x.to_string())?;
    Ok(v)
}

fn status(vm: &VmFd, gsi: u32, level: u32) -> Result<i32, String> {
    irq_line(vm, gsi, level, true).map_err(|x| format!("KVM_IRQ_LINE_STATUS({gsi}, {level}): errno {x}"))
}

fn want<T: PartialEq + std::fmt::Debug>(what: &str, got: T, exp: T) -> R {
    (got == exp).then_some(()).ok_or(format!("{what}: {got:?}, expected {exp:?}"))
}

/// Errnos and answers without a guest: capabilities, KVM_CREATE_IRQCHIP's
/// order (twice, after a vCPU, after or before the split irqchip),
/// KVM_GET/SET_IRQCHIP (no irqchip, bad chip ids, bad pointer), the
/// default state (ELCR masks, I/O APIC base and masked entries), routing
/// rules for irqchip entries, KVM_IRQ_LINE_STATUS's summed values on the
/// default routes, KVM_INTERRUPT refused, resampling irqfd rules.
pub fn irqchip_errnos(e: &Env) -> R {
    let k = e.kvm();
    for (c, name) in [(0u32, "IRQCHIP"), (26, "IRQ_INJECT_STATUS"), (82, "IRQFD_RESAMPLE")] {
        want(&format!("KVM_CAP_{name}"), k.check_extension_raw(c as _), 1)?;
    }
    let plain = k.create_vm().map_err(|x| x.to_string())?;
    expect_errno("KVM_GET_IRQCHIP without irqchip", get_chip(&plain, 0).map(|_| 0), libc::ENXIO)?;
    expect_errno("KVM_SET_IRQCHIP without irqchip", set_chip(&plain, &[0u8; IRQCHIP_SIZE]), libc::ENXIO)?;
    expect_errno("KVM_IRQ_LINE without irqchip", irq_line(&plain, 3, 1, false).map(i64::from), libc::ENXIO)?;
    expect_errno("KVM_GET_IRQCHIP bad pointer", ioctl(plain.as_raw_fd(), kvm::GET_IRQCHIP, 0x10), libc::EFAULT)?;
    // Split first: EEXIST for the full one; full first: EEXIST for split.
    let split = k.create_vm().map_err(|x| x.to_string())?;
    let mut cap = [0u8; 104];
    cap[0..4].copy_from_slice(&121u32.to_ne_bytes());
    cap[8..16].copy_from_slice(&24u64.to_ne_bytes());
    ioctl(split.as_raw_fd(), kvm::ENABLE_CAP, cap.as_ptr() as u64).map_err(|x| format!("split: errno {x}"))?;
    expect_errno("KVM_CREATE_IRQCHIP after the split irqchip", ioctl(split.as_raw_fd(), CREATE_IRQCHIP, 0), libc::EEXIST)?;
    expect_errno("KVM_GET_IRQCHIP with the split irqchip", get_chip(&split, 0).map(|_| 0), libc::ENXIO)?;
    let vm = k.create_vm().map_err(|x| x.to_string())?;
    ioctl(vm.as_raw_fd(), CREATE_IRQCHIP, 0).map_err(|x| format!("KVM_CREATE_IRQCHIP: errno {x}"))?;
    expect_errno("KVM_CREATE_IRQCHIP twice", ioctl(vm.as_raw_fd(), CREATE_IRQCHIP, 0), libc::EEXIST)?;
    expect_errno("the split irqchip after the full one", ioctl(vm.as_raw_fd(), kvm::ENABLE_CAP, cap.as_ptr() as u64), libc::EEXIST)?;
    let pv = plain.create_vcpu(0).map_err(|x| x.to_string())?;
    expect_errno("KVM_CREATE_IRQCHIP after a vCPU", ioctl(plain.as_raw_fd(), CREATE_IRQCHIP, 0), libc::EINVAL)?;
    drop(pv);
    for c in [3u32, 7] {
        expect_errno(&format!("KVM_GET_IRQCHIP chip {c}"), get_chip(&vm, c).map(|_| 0), libc::EINVAL)?;
        let mut b = [0u8; IRQCHIP_SIZE];
        b[0..4].copy_from_slice(&c.to_ne_bytes());
        expect_errno(&format!("KVM_SET_IRQCHIP chip {c}"), set_chip(&vm, &b), libc::EINVAL)?;
    }
    let m = get_chip(&vm, 0).map_err(|x| format!("GET master: errno {x}"))?;
    let s = get_chip(&vm, 1).map_err(|x| format!("GET slave: errno {x}"))?;
    want("master/slave ELCR masks", (m[8 + 15], s[8 + 15]), (0xf8, 0xde))?;
    want("master state", &m[8..8 + 15], &[0u8; 15][..])?;
    let io = get_chip(&vm, 2).map_err(|x| format!("GET I/O APIC: errno {x}"))?;
    want("I/O APIC base", u64::from_ne_bytes(io[8..16].try_into().unwrap()), 0xfec0_0000)?;
    want("I/O APIC pin 0 / 23 at reset", (redir(&io, 0), redir(&io, 23)), (0x1_0000, 0x1_0000))?;
    // Default routes: GSI 3 = PIC pin 3 (unmasked at creation) + masked
    // I/O APIC pin 3; GSI 20: I/O APIC only; GSI 100: none.
    want("status GSI 3 high", status(&vm, 3, 1)?, 1)?;
    want("status GSI 3 high again", status(&vm, 3, 1)?, 1)?;
    want("status GSI 3 low (PIC 1 + I/O APIC 1)", status(&vm, 3, 0)?, 2)?;
    want("status GSI 20 high (masked)", status(&vm, 20, 1)?, -1)?;
    want("status GSI 100 (no route)", status(&vm, 100, 1)?, -1)?;
    let m = get_chip(&vm, 0).map_err(|x| format!("GET master: errno {x}"))?;
    want("master IRR after the GSI 3 edge", m[8 + 1], 1 << 3)?;
    // Routing: irqchip entries, their checks.
    routes(&vm, &[(1, 0, 1), (1, 2, 1), (9, 1, 1), (30, 2, 23), (31, u32::MAX, 0x40)]).map_err(|x| format!("routes: errno {x}"))?;
    expect_errno("PIC pin 8", routes(&vm, &[(1, 0, 8)]), libc::EINVAL)?;
    expect_errno("I/O APIC pin 24", routes(&vm, &[(1, 2, 24)]), libc::EINVAL)?;
    expect_errno("chip 3", routes(&vm, &[(1, 3, 0)]), libc::EINVAL)?;
    expect_errno("two I/O APIC pins on one GSI", routes(&vm, &[(1, 2, 1), (1, 2, 2)]), libc::EINVAL)?;
    expect_errno("MSI and irqchip on one GSI", routes(&vm, &[(1, 2, 1), (1, u32::MAX, 0x40)]), libc::EINVAL)?;
    expect_errno("irqchip route with the split irqchip", routes(&split, &[(1, 2, 1)]), libc::EINVAL)?;
    want("status GSI 30 (I/O APIC pin 23, masked)", status(&vm, 30, 1)?, -1)?;
    want("status GSI 3 (no route any more)", status(&vm, 3, 1)?, -1)?;
    // vCPUs: KVM_INTERRUPT refused; the run page's injection flag.
    let v = vm.create_vcpu(0).map_err(|x| x.to_string())?;
    let irq = 0x30u32;
    expect_errno("KVM_INTERRUPT with the PICs in the kernel", ioctl(v.as_raw_fd(), INTERRUPT, &irq as *const u32 as u64), libc::ENXIO)?;
    let big = 256u32;
    expect_errno("KVM_INTERRUPT 256", ioctl(v.as_raw_fd(), INTERRUPT, &big as *const u32 as u64), libc::EINVAL)?;
    // Resampling irqfds: a bad resample fd; not with the split irqchip.
    // SAFETY: plain syscall creating an fd we own.
    let efd = unsafe { libc::eventfd(0, 0) };
    let mut b = [0u8; 32];
    b[0..4].copy_from_slice(&efd.to_ne_bytes());
    b[4..8].copy_from_slice(&9u32.to_ne_bytes());
    b[8..12].copy_from_slice(&2u32.to_ne_bytes());
    b[12..16].copy_from_slice(&(-1i32).to_ne_bytes());
    expect_errno("resample fd -1", ioctl(vm.as_raw_fd(), 0x4020_ae76, b.as_ptr() as u64), libc::EBADF)?;
    expect_errno("resample with the split irqchip", irqfd(&split, efd, 9, 2), libc::EINVAL)?;
    // SAFETY: our fd.
    unsafe { libc::close(efd) };
    Ok(())
}

/// The PICs: the guest initializes both (ICW1-4), unmasks; edges on IRQ 3,
/// 1 and 12 (slave) arrive by priority with the vectors of ICW2 and EOIs;
/// a masked edge waits in IRR and arrives when unmasked; IRQ 5 made
/// level-triggered by the ELCR arrives again after EOI while high and not
/// after it is lowered; KVM_GET_IRQCHIP shows the guest's programming and
/// KVM_SET_IRQCHIP's IMR is what the guest reads. ready_for_interrupt_
/// injection is 1 with the PICs in the kernel.
pub fn irqchip_pic(e: &Env) -> R {
    let (k, vm, mem) = chip_vm(e)?;
    let mut v = chip_vcpu(&k, &vm, 1)?;
    // No directed EOI (LVR bit 24) with the in-kernel I/O APIC, x2APIC in
    // CPUID or not (KVM's quirk: that I/O APIC has no EOI register).
    let p = get_lapic(&v)?;
    want("LVR directed-EOI bit with the full irqchip", reg(&p, 0x30) & (1 << 24), 0)?;
    want("LVT0 of the BSP (ExtINT, unmasked)", reg(&p, 0x350), 0x700)?;
    expect_out(&mut v, 0x10)?;
    want("ready_for_interrupt_injection with IF=0", v.get_kvm_run().ready_for_interrupt_injection, 1)?;
    want("if_flag", v.get_kvm_run().if_flag, 0)?;
    let s = [status(&vm, 3, 1)?, status(&vm, 1, 1)?, status(&vm, 12, 1)?];
    want("status of three edges", s, [1, 1, 1])?;
    for g in [3, 1, 12] {
        status(&vm, g, 0)?;
    }
    expect_out(&mut v, 0x11)?;
    expect_log(&mem, &[0x21, 0x2c, 0x23])?;
    want("status of masked IRQ 4", status(&vm, 4, 1)?, -1)?;
    status(&vm, 4, 0)?;
    want("IRR with IRQ 4 masked", expect_out(&mut v, 0x12)? & 0xff, 0x10)?;
    want("ELCR read back", expect_out(&mut v, 0x13)? & 0xff, 0x20)?;
    expect_log(&mem, &[0x21, 0x2c, 0x23, 0x24])?;
    want("status of level IRQ 5", status(&vm, 5, 1)?, 1)?;
    expect_out(&mut v, 0x14)?;
    expect_log(&mem, &[0x21, 0x2c, 0x23, 0x24, 0x25, 0x25])?;
    status(&vm, 5, 0)?;
    want("IRR after IRQ 5 lowered", expect_out(&mut v, 0x15)? & 0xff, 0)?;
    expect_log(&mem, &[0x21, 0x2c, 0x23, 0x24, 0x25, 0x25])?;
    let mut m = get_chip(&vm, 0).map_err(|x| format!("GET master: errno {x}"))?;
    // irr, imr, isr, irq_base, init_state, init4, elcr.
    let got = (m[8 + 1], m[8 + 2], m[8 + 3], m[8 + 5], m[8 + 9], m[8 + 13], m[8 + 14]);
    want("master state (irr, imr, isr, irq_base, init_state, init4, elcr)", got, (0, 0, 0, 0x20, 0, 1, 0x20))?;
    let sl = get_chip(&vm, 1).map_err(|x| format!("GET slave: errno {x}"))?;
    want("slave irq_base", sl[8 + 5], 0x28)?;
    m[8 + 2] = 0x5a;
    set_chip(&vm, &m).map_err(|x| format!("SET master: errno {x}"))?;
    want("IMR set by KVM_SET_IRQCHIP, read by the guest", expect_out(&mut v, 0x16)? & 0xff, 0x5a)?;
    Ok(())
}

/// The I/O APIC: version register; an edge pin delivered once to APIC 0
/// (status 1), one addressed to vCPU 1 whose APIC is software-disabled
/// (status 0); a level pin held high delivered again at each EOI, its
/// remote IRR set while the guest holds it, cleared by the EOI after the
/// line is lowered (nothing more delivered); a resampling irqfd on the
/// level pin (one delivery, resamplefd signalled at the EOI, line
/// lowered); a plain irqfd on the edge pin; KVM_SET_IRQCHIP changing a
/// pin's vector and raising it, seen by the guest.
pub fn irqchip_ioapic(e: &Env) -> R {
    let (k, vm, mem) = chip_vm(e)?;
    let mut v = chip_vcpu(&k, &vm, 2)?;
    let _v1 = vm.create_vcpu(1).map_err(|x| format!("vcpu 1: {x}"))?;
    let (p, ver) = run_to_out(&mut v)?;
    want("first OUT", p, 0x10)?;
    want("I/O APIC version register", ver, 0x0017_0011)?;
    expect_out(&mut v, 0x11)?;
    want("status edge pin 10 (APIC 0)", status(&vm, 10, 1)?, 1)?;
    status(&vm, 10, 0)?;
    want("status edge pin 11 (APIC 1, disabled)", status(&vm, 11, 1)?, 0)?;
    status(&vm, 11, 0)?;
    want("status level pin 9", status(&vm, 9, 1)?, 1)?;
    expect_out(&mut v, 0x12)?;
    expect_log(&mem, &[0x52, 0x51, 0x51])?;
    let io = get_chip(&vm, 2).map_err(|x| format!("GET I/O APIC: errno {x}"))?;
    want("pin 9 remote IRR while in service", redir(&io, 9) & (1 << 14) != 0, true)?;
    want("I/O APIC IRR (pin 9 high)", ioapic_irr(&io), 1 << 9)?;
    want("lowering pin 9 (PIC masked: -1, I/O APIC 1)", status(&vm, 9, 0)?, 1)?;
    expect_out(&mut v, 0x13)?;
    expect_log(&mem, &[0x52, 0x51, 0x51])?;
    let io = get_chip(&vm, 2).map_err(|x| format!("GET I/O APIC: errno {x}"))?;
    want("pin 9 remote IRR after the EOI", redir(&io, 9) & (1 << 14), 0)?;
    // Resampling irqfd on GSI 9.
    // SAFETY: plain syscalls creating fds we own.
    let (efd, rfd) = unsafe { (libc::eventfd(0, 0), libc::eventfd(0, libc::EFD_NONBLOCK)) };
    let mut b = [0u8; 32];
    b[0..4].copy_from_slice(&efd.to_ne_bytes());
    b[4..8].copy_from_slice(&9u32.to_ne_bytes());
    b[8..12].copy_from_slice(&2u32.to_ne_bytes());
    b[12..16].copy_from_slice(&rfd.to_ne_bytes());
    ioctl(vm.as_raw_fd(), 0x4020_ae76, b.as_ptr() as u64).map_err(|x| format!("KVM_IRQFD resample: errno {x}"))?;
    let one = 1u64.to_ne_bytes();
    // SAFETY: 8 bytes from a live buffer to our eventfd.
    if unsafe { libc::write(efd, one.as_ptr().cast(), 8) } != 8 {
        return Err("eventfd write failed".into());
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    expect_out(&mut v, 0x14)?;
    expect_log(&mem, &[0x52, 0x51, 0x51, 0x51])?;
    let mut cnt = [0u8; 8];
    // SAFETY: 8 bytes into a live buffer from our eventfd.
    let n = unsafe { libc::read(rfd, cnt.as_mut_ptr().cast(), 8) };
    want("resamplefd after the guest's EOI", (n, u64::from_ne_bytes(cnt)), (8, 1))?;
    let io = get_chip(&vm, 2).map_err(|x| format!("GET I/O APIC: errno {x}"))?;
    want("pin 9 lowered by the resample", (ioapic_irr(&io), redir(&io, 9) & (1 << 14)), (0, 0))?;
    b[8..12].copy_from_slice(&1u32.to_ne_bytes());
    ioctl(vm.as_raw_fd(), 0x4020_ae76, b.as_ptr() as u64).map_err(|x| format!("KVM_IRQFD deassign: errno {x}"))?;
    // Plain irqfd on GSI 10 (edge).
    irqfd(&vm, efd, 10, 0).map_err(|x| format!("KVM_IRQFD: errno {x}"))?;
    // SAFETY: as above.
    if unsafe { libc::write(efd, one.as_ptr().cast(), 8) } != 8 {
        return Err("eventfd write failed".into());
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    expect_out(&mut v, 0x15)?;
    expect_log(&mem, &[0x52, 0x51, 0x51, 0x51, 0x52])?;
    irqfd(&vm, efd, 10, 1).map_err(|x| format!("KVM_IRQFD deassign: errno {x}"))?;
    // SAFETY: our fds.
    unsafe {
        libc::close(efd);
        libc::close(rfd);
    }
    // KVM_SET_IRQCHIP: pin 10 to vector 0x54, requested.
    let mut io = get_chip(&vm, 2).map_err(|x| format!("GET I/O APIC: errno {x}"))?;
    let o = 8 + 24 + 8 * 10;
    io[o] = 0x54;
    io[24..28].copy_from_slice(&(1u32 << 10).to_ne_bytes());
    set_chip(&vm, &io).map_err(|x| format!("SET I/O APIC: errno {x}"))?;
    want("pin 10 as the guest reads it", expect_out(&mut v, 0x16)?, 0x54)?;
    let l = log(&mem);
    want("log", l, vec![0x52, 0x51, 0x51, 0x51, 0x52, 0x54])?;
    Ok(())
}
