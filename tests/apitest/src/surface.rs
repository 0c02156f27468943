// SPDX-License-Identifier: GPL-2.0
//! Cases for the KVM surface QEMU uses beyond the basics (issue 10 item 2):
//! `KVM_GET/SET_XSAVE`, `KVM_GET_XSAVE2`, `KVM_GET/SET_XCRS`,
//! `KVM_GET/SET_DEBUGREGS`, `KVM_GET_CPUID2`, `KVM_IOEVENTFD`, with their
//! malformed arguments. Each asserts what kvm_amd does, and runs on both.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use kvm_ioctls::VcpuExit;
use nsvm_core::uapi::{cap, kvm};

use crate::{expect_errno, ioctl, small_vm, Env, R};

fn le64(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

/// The device's supported CPUID on the vCPU (with XSAVE leaf 0xD as offered).
fn set_supported_cpuid(k: &kvm_ioctls::Kvm, vcpu: &kvm_ioctls::VcpuFd) -> R {
    let c = k.get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES).map_err(|x| format!("GET_SUPPORTED_CPUID: {x}"))?;
    vcpu.set_cpuid2(&c).map_err(|x| format!("SET_CPUID2: {x}"))
}

/// KVM_GET/SET_XSAVE, KVM_GET_XSAVE2, KVM_GET/SET_XCRS: the guest reads
/// XMM0 set through KVM_SET_XSAVE, KVM_GET_FPU agrees, XCR0 round-trips,
/// and the malformed buffers KVM refuses are refused with nothing changed.
pub fn xsave_state(e: &Env) -> R {
    let k = e.kvm();
    for c in [cap::XSAVE, cap::XCRS] {
        if k.check_extension_raw(c as _) != 1 {
            return Err(format!("capability {c} not 1"));
        }
    }
    let xsave2 = k.check_extension_raw(cap::XSAVE2 as _);
    if xsave2 < 4096 {
        return Err(format!("KVM_CAP_XSAVE2 = {xsave2}, expected at least 4096"));
    }
    // Guest (real mode, CR4.OSFXSR): movd eax, xmm0; out 0x10, al; hlt.
    let code = [0x66, 0x0f, 0x7e, 0xc0, 0xe6, 0x10, 0xf4];
    let (_vm, mut vcpu, _m) = small_vm(&k, &code);
    let fd = vcpu.as_raw_fd();
    // KVM refuses a CPUID change once the vCPU has run: set it first.
    set_supported_cpuid(&k, &vcpu)?;
    let mut s = vcpu.get_sregs().unwrap();
    s.cr4 |= 0x200;
    s.cr0 &= !0xc;
    vcpu.set_sregs(&s).map_err(|x| x.to_string())?;
    // At RESET: XCR0 = 1.
    let mut xcrs = vec![0u8; 392];
    ioctl(fd, kvm::GET_XCRS, xcrs.as_mut_ptr() as u64).map_err(|x| format!("GET_XCRS: errno {x}"))?;
    if u32::from_ne_bytes(xcrs[0..4].try_into().unwrap()) != 1 || le64(&xcrs, 8) != 0 || le64(&xcrs, 16) != 1 {
        return Err(format!("GET_XCRS at reset: nr {} xcr {} value {:#x}", xcrs[0], le64(&xcrs, 8), le64(&xcrs, 16)));
    }
    let mut x = vec![0u8; 4096];
    ioctl(fd, kvm::GET_XSAVE, x.as_mut_ptr() as u64).map_err(|x| format!("GET_XSAVE: errno {x}"))?;
    // Reset: every component initial: FCW 0x37f, MXCSR 0x1f80, XSTATE_BV 0.
    if u16::from_le_bytes([x[0], x[1]]) != 0x37f || u32::from_le_bytes(x[24..28].try_into().unwrap()) != 0x1f80 || le64(&x, 512) != 0 {
        return Err(format!("GET_XSAVE at reset: fcw {:#x} mxcsr {:#x} xstate_bv {:#x}", u16::from_le_bytes([x[0], x[1]]), u32::from_le_bytes(x[24..28].try_into().unwrap()), le64(&x, 512)));
    }
    // (Bytes 464..511 are software-reserved: KVM puts the kernel's
    // signal-frame marker there; not compared.)
    if x[32..464].iter().any(|&b| b != 0) || x[520..].iter().any(|&b| b != 0) {
        return Err("GET_XSAVE at reset: registers or header not zero".into());
    }
    // XMM0 = 0x11223344 through KVM_SET_XSAVE (x87 and SSE in XSTATE_BV).
    x[160..164].copy_from_slice(&0x1122_3344u32.to_le_bytes());
    x[512..520].copy_from_slice(&3u64.to_le_bytes());
    let good = x.clone();
    // Malformed: a component the host cannot save, XCOMP_BV (compacted
    // format), a reserved header byte, MXCSR outside MXCSR_MASK.
    for (what, off, val) in [("XSTATE_BV bit 63", 512usize, 3u64 | 1 << 63), ("XCOMP_BV", 520, 1 << 63 | 3), ("reserved header byte", 530, 1), ("MXCSR bit 31", 24, 0x8000_1f80)] {
        let mut b = good.clone();
        let v = if off == 24 { (le64(&b, 24) & !0xffff_ffff) | val } else { val };
        b[off..off + 8].copy_from_slice(&v.to_le_bytes());
        expect_errno(&format!("SET_XSAVE({what})"), ioctl(fd, kvm::SET_XSAVE, b.as_ptr() as u64), libc::EINVAL)?;
    }
    expect_errno("SET_XSAVE(NULL)", ioctl(fd, kvm::SET_XSAVE, 0), libc::EFAULT)?;
    let f = vcpu.get_fpu().unwrap();
    if f.xmm[0][..4] != [0; 4] {
        return Err("a refused SET_XSAVE changed XMM0".into());
    }
    ioctl(fd, kvm::SET_XSAVE, good.as_ptr() as u64).map_err(|x| format!("SET_XSAVE: errno {x}"))?;
    let f = vcpu.get_fpu().unwrap();
    if f.xmm[0][..4] != 0x1122_3344u32.to_le_bytes() {
        return Err(format!("KVM_GET_FPU after SET_XSAVE: xmm0 {:x?}", &f.xmm[0][..4]));
    }
    let mut y = vec![0u8; 4096];
    ioctl(fd, kvm::GET_XSAVE, y.as_mut_ptr() as u64).map_err(|x| format!("GET_XSAVE: errno {x}"))?;
    if y[..464] != good[..464] || y[512..] != good[512..] {
        let d = (0..4096).find(|&i| !(464..512).contains(&i) && y[i] != good[i]).unwrap_or(0);
        return Err(format!("GET_XSAVE after SET_XSAVE differs at byte {d}: {:#x} vs {:#x}", y[d], good[d]));
    }
    let mut z = vec![0xaau8; xsave2 as usize];
    ioctl(fd, kvm::GET_XSAVE2, z.as_mut_ptr() as u64).map_err(|x| format!("GET_XSAVE2: errno {x}"))?;
    if z[..464] != good[..464] || le64(&z, 512) != 3 {
        return Err("GET_XSAVE2 differs from GET_XSAVE".into());
    }
    match vcpu.run() {
        Ok(VcpuExit::IoOut(0x10, d)) if d == [0x44] => {}
        r => return Err(format!("guest MOVD of XMM0: {r:?}, expected OUT 0x10 = 0x44")),
    }
    // XCR0: with the supported CPUID, x87|SSE is allowed; malformed XCRS refused.
    let xcrs_with = |nr: u32, flags: u32, xcr: u32, v: u64| {
        let mut b = vec![0u8; 392];
        b[0..4].copy_from_slice(&nr.to_ne_bytes());
        b[4..8].copy_from_slice(&flags.to_ne_bytes());
        b[8..12].copy_from_slice(&xcr.to_ne_bytes());
        b[16..24].copy_from_slice(&v.to_ne_bytes());
        b
    };
    for (what, b) in [
        ("x87 clear", xcrs_with(1, 0, 0, 2)),
        ("AVX without SSE", xcrs_with(1, 0, 0, 5)),
        ("bit 62", xcrs_with(1, 0, 0, 3 | 1 << 62)),
        ("flags 1", xcrs_with(1, 1, 0, 3)),
        ("nr_xcrs 17", xcrs_with(17, 0, 0, 3)),
    ] {
        expect_errno(&format!("SET_XCRS({what})"), ioctl(fd, kvm::SET_XCRS, b.as_ptr() as u64), libc::EINVAL)?;
    }
    expect_errno("SET_XCRS(NULL)", ioctl(fd, kvm::SET_XCRS, 0), libc::EFAULT)?;
    // Only XCR0 counts: an unknown XCR alone is ignored.
    let b = xcrs_with(1, 0, 1, 7);
    ioctl(fd, kvm::SET_XCRS, b.as_ptr() as u64).map_err(|x| format!("SET_XCRS(XCR1 only): errno {x}"))?;
    let b = xcrs_with(1, 0, 0, 3);
    ioctl(fd, kvm::SET_XCRS, b.as_ptr() as u64).map_err(|x| format!("SET_XCRS(3): errno {x}"))?;
    ioctl(fd, kvm::GET_XCRS, xcrs.as_mut_ptr() as u64).map_err(|x| format!("GET_XCRS: errno {x}"))?;
    if le64(&xcrs, 16) != 3 {
        return Err(format!("XCR0 after SET_XCRS(3): {:#x}", le64(&xcrs, 16)));
    }
    expect_errno("GET_XSAVE(NULL)", ioctl(fd, kvm::GET_XSAVE, 0), libc::EFAULT)?;
    expect_errno("GET_XCRS(NULL)", ioctl(fd, kvm::GET_XCRS, 0), libc::EFAULT)
}

/// KVM_GET/SET_DEBUGREGS: reset values, a round trip, the guest reading
/// DR0 and DR7 as set, and KVM's refusals.
pub fn debugregs(e: &Env) -> R {
    let k = e.kvm();
    if k.check_extension_raw(cap::DEBUGREGS as _) != 1 {
        return Err("KVM_CAP_DEBUGREGS not 1".into());
    }
    // Guest (real mode): mov eax, dr0; out 0x10, eax; mov eax, dr7; out 0x10, eax; hlt.
    let code = [0x0f, 0x21, 0xc0, 0x66, 0xe7, 0x10, 0x0f, 0x21, 0xf8, 0x66, 0xe7, 0x10, 0xf4];
    let (_vm, mut vcpu, _m) = small_vm(&k, &code);
    let fd = vcpu.as_raw_fd();
    let mut b = vec![0u8; 128];
    ioctl(fd, kvm::GET_DEBUGREGS, b.as_mut_ptr() as u64).map_err(|x| format!("GET_DEBUGREGS: errno {x}"))?;
    let w = |b: &[u8], i: usize| le64(b, 8 * i);
    // RESET: DR0-3 zero, DR6 0xffff0ff0, DR7 0x400 (APM vol. 2 14.1.3).
    if (0..4).any(|i| w(&b, i) != 0) || w(&b, 4) != 0xffff_0ff0 || w(&b, 5) != 0x400 || b[48..].iter().any(|&x| x != 0) {
        return Err(format!("GET_DEBUGREGS at reset: {:x?}", (0..6).map(|i| w(&b, i)).collect::<Vec<_>>()));
    }
    let mut set = vec![0u8; 128];
    for (i, v) in [0x1234_5678u64, 0x2000, 0x3000, 0xffff_ffff_8000_0000, 0xffff_0ff0, 0x400].iter().enumerate() {
        set[8 * i..8 * i + 8].copy_from_slice(&v.to_le_bytes());
    }
    for (what, off, v) in [("flags 1", 48usize, 1u64), ("DR6 bit 32", 32, 0x1_ffff_0ff0), ("DR7 bit 63", 40, 1 << 63 | 0x400)] {
        let mut bad = set.clone();
        bad[off..off + 8].copy_from_slice(&v.to_le_bytes());
        expect_errno(&format!("SET_DEBUGREGS({what})"), ioctl(fd, kvm::SET_DEBUGREGS, bad.as_ptr() as u64), libc::EINVAL)?;
    }
    expect_errno("SET_DEBUGREGS(NULL)", ioctl(fd, kvm::SET_DEBUGREGS, 0), libc::EFAULT)?;
    ioctl(fd, kvm::GET_DEBUGREGS, b.as_mut_ptr() as u64).unwrap();
    if w(&b, 0) != 0 {
        return Err("a refused SET_DEBUGREGS changed DR0".into());
    }
    ioctl(fd, kvm::SET_DEBUGREGS, set.as_ptr() as u64).map_err(|x| format!("SET_DEBUGREGS: errno {x}"))?;
    ioctl(fd, kvm::GET_DEBUGREGS, b.as_mut_ptr() as u64).unwrap();
    if b[..48] != set[..48] {
        return Err(format!("GET_DEBUGREGS after SET: {:x?}", (0..6).map(|i| w(&b, i)).collect::<Vec<_>>()));
    }
    match vcpu.run() {
        Ok(VcpuExit::IoOut(0x10, d)) if d == 0x1234_5678u32.to_le_bytes() => {}
        r => return Err(format!("guest MOV from DR0: {r:?}")),
    }
    match vcpu.run() {
        Ok(VcpuExit::IoOut(0x10, d)) if d == 0x400u32.to_le_bytes() => {}
        r => return Err(format!("guest MOV from DR7: {r:?}")),
    }
    expect_errno("GET_DEBUGREGS(NULL)", ioctl(fd, kvm::GET_DEBUGREGS, 0), libc::EFAULT)
}

/// KVM_GET_CPUID2: the table KVM_SET_CPUID2 set; E2BIG (nent untouched)
/// when too small.
pub fn cpuid2(e: &Env) -> R {
    let k = e.kvm();
    let (_vm, vcpu, _m) = small_vm(&k, &[0xf4]);
    let fd = vcpu.as_raw_fd();
    let mut buf = vec![0u8; 8 + 40 * 4];
    buf[0..4].copy_from_slice(&4u32.to_ne_bytes());
    ioctl(fd, kvm::GET_CPUID2, buf.as_mut_ptr() as u64).map_err(|x| format!("GET_CPUID2 (empty table): errno {x}"))?;
    if buf[0..4] != 0u32.to_ne_bytes() {
        return Err(format!("GET_CPUID2 with no table: nent {}", buf[0]));
    }
    // Two leaves KVM does not adjust at run time.
    let ent = |f: u32, regs: [u32; 4]| {
        let mut b = vec![0u8; 40];
        for (i, v) in [f, 0, 0, regs[0], regs[1], regs[2], regs[3]].iter().enumerate() {
            b[4 * i..4 * i + 4].copy_from_slice(&v.to_ne_bytes());
        }
        b
    };
    let mut set = vec![0u8; 8];
    set[0..4].copy_from_slice(&2u32.to_ne_bytes());
    set.extend(ent(0x8000_0000, [0x8000_0008, 0, 0, 0]));
    set.extend(ent(0x8000_0008, [0x3030, 0, 0, 0]));
    ioctl(fd, kvm::SET_CPUID2, set.as_ptr() as u64).map_err(|x| format!("SET_CPUID2: errno {x}"))?;
    let mut small = vec![0xeeu8; 8 + 40];
    small[0..4].copy_from_slice(&1u32.to_ne_bytes());
    expect_errno("GET_CPUID2(nent 1)", ioctl(fd, kvm::GET_CPUID2, small.as_mut_ptr() as u64), libc::E2BIG)?;
    if small[0..4] != 1u32.to_ne_bytes() || small[8..].iter().any(|&b| b != 0xee) {
        return Err("GET_CPUID2 wrote the buffer on E2BIG".into());
    }
    let mut big = vec![0u8; 8 + 40 * 4];
    big[0..4].copy_from_slice(&4u32.to_ne_bytes());
    ioctl(fd, kvm::GET_CPUID2, big.as_mut_ptr() as u64).map_err(|x| format!("GET_CPUID2: errno {x}"))?;
    if big[0..4] != 2u32.to_ne_bytes() || big[8..88] != set[8..88] {
        return Err(format!("GET_CPUID2: nent {} entries differ", big[0]));
    }
    // Entries that cannot be written: EFAULT.
    let mut hdr = [0u8; 8];
    hdr[0..4].copy_from_slice(&4u32.to_ne_bytes());
    let p = crate::Mem::new(0x2000);
    // SAFETY: unmaps the second page of our own mapping.
    unsafe { libc::munmap(p.ptr.add(0x1000).cast(), 0x1000) };
    // SAFETY: the first page is ours; the header sits at its end.
    unsafe { std::ptr::copy_nonoverlapping(hdr.as_ptr(), p.ptr.add(0x1000 - 8), 8) };
    expect_errno("GET_CPUID2(entries unmapped)", ioctl(fd, kvm::GET_CPUID2, p.ptr as u64 + 0x1000 - 8), libc::EFAULT)
}

fn eventfd() -> OwnedFd {
    // SAFETY: plain syscall; the fd is checked and owned.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK) };
    assert!(fd >= 0);
    // SAFETY: a fresh fd.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// The eventfd's counter (and reset it); 0 when it was never signalled.
fn efd_count(fd: &OwnedFd) -> u64 {
    let mut v = 0u64;
    // SAFETY: reads 8 bytes into `v`.
    let r = unsafe { libc::read(fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    if r == 8 {
        v
    } else {
        0
    }
}

fn ioeventfd_req(addr: u64, len: u32, fd: i32, flags: u32, dm: u64) -> Vec<u8> {
    nsvm_core::ioeventfd::Request { datamatch: dm, addr, len, fd, flags }.to_bytes().to_vec()
}

/// KVM_IOEVENTFD: a PIO write and an MMIO write (with datamatch) that hit a
/// registration signal it and do not exit; others exit; KVM's refusals
/// (lengths, flags, overflow, bad fds, collisions, unknown deassign).
pub fn ioeventfd(e: &Env) -> R {
    use nsvm_core::ioeventfd::flags::*;
    let k = e.kvm();
    for c in [cap::IOEVENTFD, cap::IOEVENTFD_ANY_LENGTH] {
        if k.check_extension_raw(c as _) != 1 {
            return Err(format!("capability {c} not 1"));
        }
    }
    // Guest (real mode): mov al, 5; out 0x80, al; out 0x81, al;
    // mov ax, 0x2000; mov ds, ax; mov byte [0], 1; mov byte [0], 2;
    // mov word [8], 0x1234; hlt.
    let code = [
        0xb0, 0x05, 0xe6, 0x80, 0xe6, 0x81, 0xb8, 0x00, 0x20, 0x8e, 0xd8, 0xc6, 0x06, 0x00, 0x00, 0x01, 0xc6, 0x06, 0x00, 0x00, 0x02, 0xc7, 0x06, 0x08,
        0x00, 0x34, 0x12, 0xf4,
    ];
    let (vm, mut vcpu, _m) = small_vm(&k, &code);
    let vfd = vm.as_raw_fd();
    let (pio, mmio, any) = (eventfd(), eventfd(), eventfd());
    let reg = |b: Vec<u8>| ioctl(vfd, kvm::IOEVENTFD, b.as_ptr() as u64);
    reg(ioeventfd_req(0x80, 1, pio.as_raw_fd(), PIO, 0)).map_err(|x| format!("IOEVENTFD(PIO 0x80): errno {x}"))?;
    reg(ioeventfd_req(0x20000, 1, mmio.as_raw_fd(), DATAMATCH, 2)).map_err(|x| format!("IOEVENTFD(MMIO datamatch 2): errno {x}"))?;
    reg(ioeventfd_req(0x20008, 0, any.as_raw_fd(), 0, 0)).map_err(|x| format!("IOEVENTFD(MMIO any length): errno {x}"))?;
    // Refusals, in KVM's order of checks.
    let cases: Vec<(&str, Vec<u8>, i32)> = vec![
        ("len 3", ioeventfd_req(0x90, 3, pio.as_raw_fd(), PIO, 0), libc::EINVAL),
        ("addr + len wraps", ioeventfd_req(u64::MAX - 1, 4, pio.as_raw_fd(), 0, 0), libc::EINVAL),
        ("unknown flag", ioeventfd_req(0x90, 1, pio.as_raw_fd(), PIO | 1 << 5, 0), libc::EINVAL),
        ("len 0 with datamatch", ioeventfd_req(0x90, 0, pio.as_raw_fd(), PIO | DATAMATCH, 0), libc::EINVAL),
        ("len 3 with a bad fd", ioeventfd_req(0x90, 3, -1, PIO, 0), libc::EINVAL),
        ("fd -1", ioeventfd_req(0x90, 1, -1, PIO, 0), libc::EBADF),
        ("not an eventfd", ioeventfd_req(0x90, 1, vfd, PIO, 0), libc::EINVAL),
        ("same registration", ioeventfd_req(0x80, 1, any.as_raw_fd(), PIO, 0), libc::EEXIST),
        ("datamatch under a wildcard", ioeventfd_req(0x80, 1, any.as_raw_fd(), PIO | DATAMATCH, 5), libc::EEXIST),
        ("any length over a registration", ioeventfd_req(0x20000, 0, any.as_raw_fd(), 0, 0), libc::EEXIST),
        ("same datamatch", ioeventfd_req(0x20000, 1, any.as_raw_fd(), DATAMATCH, 2), libc::EEXIST),
        ("deassign: not registered", ioeventfd_req(0x80, 2, pio.as_raw_fd(), PIO | DEASSIGN, 0), libc::ENOENT),
        ("deassign: other eventfd", ioeventfd_req(0x80, 1, mmio.as_raw_fd(), PIO | DEASSIGN, 0), libc::ENOENT),
        ("deassign: other datamatch", ioeventfd_req(0x20000, 1, mmio.as_raw_fd(), DATAMATCH | DEASSIGN, 3), libc::ENOENT),
        ("deassign: fd -1", ioeventfd_req(0x80, 1, -1, PIO | DEASSIGN, 0), libc::EBADF),
    ];
    for (what, b, want) in cases {
        expect_errno(&format!("IOEVENTFD({what})"), reg(b), want)?;
    }
    expect_errno("IOEVENTFD(NULL)", ioctl(vfd, kvm::IOEVENTFD, 0), libc::EFAULT)?;
    // Other lengths and datamatches at a used address are separate.
    reg(ioeventfd_req(0x20000, 1, any.as_raw_fd(), DATAMATCH, 3)).map_err(|x| format!("IOEVENTFD(MMIO datamatch 3): errno {x}"))?;
    reg(ioeventfd_req(0x20000, 2, any.as_raw_fd(), 0, 0)).map_err(|x| format!("IOEVENTFD(MMIO len 2): errno {x}"))?;
    // OUT 0x80 is taken in the kernel: the first exit is OUT 0x81.
    match vcpu.run() {
        Ok(VcpuExit::IoOut(0x81, d)) if d == [5] => {}
        r => return Err(format!("first exit: {r:?}, expected OUT 0x81 (OUT 0x80 signalled)")),
    }
    if efd_count(&pio) != 1 {
        return Err("PIO eventfd not signalled once".into());
    }
    // MMIO write of 1 does not match datamatch 2 (nor 3): it exits.
    match vcpu.run() {
        Ok(VcpuExit::MmioWrite(0x20000, d)) if d == [1] => {}
        r => return Err(format!("second exit: {r:?}, expected the MMIO write of 1")),
    }
    // The write of 2 and the 2-byte write at 0x20008 (any length) are taken; then HLT.
    match vcpu.run() {
        Ok(VcpuExit::Hlt) => {}
        r => return Err(format!("third exit: {r:?}, expected HLT (writes signalled)")),
    }
    let (m, a) = (efd_count(&mmio), efd_count(&any));
    if m != 1 || a != 1 {
        return Err(format!("MMIO eventfds signalled {m} and {a} times, expected 1 and 1"));
    }
    // Deassigned: the write reaches userspace again.
    reg(ioeventfd_req(0x80, 1, pio.as_raw_fd(), PIO | DEASSIGN, 0)).map_err(|x| format!("IOEVENTFD(deassign PIO): errno {x}"))?;
    expect_errno("IOEVENTFD(deassign twice)", reg(ioeventfd_req(0x80, 1, pio.as_raw_fd(), PIO | DEASSIGN, 0)), libc::ENOENT)?;
    let mut r = vcpu.get_regs().unwrap();
    r.rip = 0x1000;
    vcpu.set_regs(&r).unwrap();
    match vcpu.run() {
        Ok(VcpuExit::IoOut(0x80, d)) if d == [5] => {}
        r => return Err(format!("after deassign: {r:?}, expected OUT 0x80")),
    }
    // The VM goes away with registrations left (references dropped).
    drop(vcpu);
    drop(vm);
    if efd_count(&pio) != 0 {
        return Err("PIO eventfd signalled after deassign".into());
    }
    Ok(())
}

/// MTRRs (what QEMU writes when CPUID has MTRR): KVM_SET/GET_MSRS of
/// MTRRdefType, fixed and variable ranges round-trip; invalid values stop
/// KVM_SET_MSRS; MTRRcap is read-only 0x508; the guest reads what was set.
pub fn mtrrs(e: &Env) -> R {
    use kvm_bindings::{kvm_msr_entry, Msrs};
    let k = e.kvm();
    // Guest: rdmsr MTRRdefType; out 0x10, al; rdmsr MTRRcap; out 0x10, al; hlt.
    let code = [0x66, 0xb9, 0xff, 0x02, 0, 0, 0x0f, 0x32, 0xe6, 0x10, 0x66, 0xb9, 0xfe, 0, 0, 0, 0x0f, 0x32, 0xe6, 0x10, 0xf4];
    let (_vm, mut vcpu, _m) = small_vm(&k, &code);
    let ent = |index: u32, data: u64| kvm_msr_entry { index, reserved: 0, data };
    let good = [ent(0x2ff, 0xc06), ent(0x250, 0x0606_0606_0606_0606), ent(0x26f, 0x0505_0505_0505_0505), ent(0x200, 0xe000_0000), ent(0x201, 0xf_e000_0800), ent(0x20e, 0x6)];
    let n = vcpu.set_msrs(&Msrs::from_entries(&good).unwrap()).map_err(|x| format!("SET_MSRS: {x}"))?;
    if n != good.len() {
        return Err(format!("SET_MSRS of MTRRs processed {n} of {}", good.len()));
    }
    let mut get = Msrs::from_entries(&good.iter().map(|e| ent(e.index, 0)).chain([ent(0xfe, 0)]).collect::<Vec<_>>()).unwrap();
    let n = vcpu.get_msrs(&mut get).map_err(|x| format!("GET_MSRS: {x}"))?;
    let g = get.as_slice();
    for (i, e) in good.iter().enumerate() {
        if g[i].data != e.data {
            return Err(format!("MTRR {:#x} reads {:#x}, set {:#x}", e.index, g[i].data, e.data));
        }
    }
    if n != good.len() + 1 || g[good.len()].data != 0x508 {
        return Err(format!("GET_MSRS: {n} read, MTRRcap {:#x} (expected 0x508)", g[good.len()].data));
    }
    // Each refused one stops KVM_SET_MSRS at 0 processed, changing nothing.
    for (what, m) in [
        ("MTRRdefType bit 12", ent(0x2ff, 0x1006)),
        ("MTRRdefType type 2", ent(0x2ff, 0x2)),
        ("fixed type 7", ent(0x258, 0x0707)),
        ("variable base bit 8", ent(0x202, 0x106)),
        ("variable mask bit 10", ent(0x203, 0x400)),
        ("variable base bit 63", ent(0x204, 1 << 63 | 6)),
        ("MTRRcap", ent(0xfe, 0x508)),
        ("a gap at 0x210", ent(0x210, 0)),
    ] {
        let n = vcpu.set_msrs(&Msrs::from_entries(&[m]).unwrap()).map_err(|x| format!("SET_MSRS({what}): {x}"))?;
        if n != 0 {
            return Err(format!("SET_MSRS({what}) processed {n}, expected 0"));
        }
    }
    match vcpu.run() {
        Ok(VcpuExit::IoOut(0x10, d)) if d == [0x06] => {}
        r => return Err(format!("guest RDMSR of MTRRdefType: {r:?}")),
    }
    match vcpu.run() {
        Ok(VcpuExit::IoOut(0x10, d)) if d == [0x08] => {}
        r => return Err(format!("guest RDMSR of MTRRcap: {r:?}")),
    }
    Ok(())
}

/// Machine checks: KVM_CAP_MCE (32 banks), KVM_X86_GET_MCE_CAP_SUPPORTED,
/// KVM_X86_SETUP_MCE and its refusals, the bank MSRs it initializes,
/// KVM_X86_SET_MCE raising #MC through the guest's IVT, then a second
/// machine check during the first ending in KVM_EXIT_SHUTDOWN; HWCR.
pub fn mce(e: &Env) -> R {
    use kvm_bindings::{kvm_msr_entry, Msrs};
    let k = e.kvm();
    let n = k.check_extension_raw(cap::MCE as _);
    if n != 32 {
        return Err(format!("KVM_CAP_MCE = {n}, expected 32"));
    }
    let mut sup = 0u64;
    ioctl(k.as_raw_fd(), kvm::X86_GET_MCE_CAP_SUPPORTED, &mut sup as *mut u64 as u64).map_err(|x| format!("GET_MCE_CAP_SUPPORTED: errno {x}"))?;
    if sup != 0x0100_0100 {
        return Err(format!("supported MCG_CAP {sup:#x}, expected MCG_CTL_P | MCG_SER_P"));
    }
    expect_errno("GET_MCE_CAP_SUPPORTED(NULL)", ioctl(k.as_raw_fd(), kvm::X86_GET_MCE_CAP_SUPPORTED, 0), libc::EFAULT)?;
    // Guest: hlt at 0x1000; the #MC handler (IVT vector 18 -> 0:2000) does
    // mov al, 0x12; out 0x10, al; hlt.
    let (_vm, mut vcpu, mut mem) = small_vm(&k, &[0xf4, 0xf4]);
    mem.bytes()[0x2000..0x2005].copy_from_slice(&[0xb0, 0x12, 0xe6, 0x10, 0xf4]);
    mem.bytes()[4 * 18..4 * 18 + 4].copy_from_slice(&[0x00, 0x20, 0x00, 0x00]);
    let fd = vcpu.as_raw_fd();
    let ent = |index: u32, data: u64| kvm_msr_entry { index, reserved: 0, data };
    let read = |vcpu: &kvm_ioctls::VcpuFd, idx: &[u32]| -> Result<(usize, Vec<u64>), String> {
        let mut m = Msrs::from_entries(&idx.iter().map(|&i| ent(i, 0xdead)).collect::<Vec<_>>()).unwrap();
        let n = vcpu.get_msrs(&mut m).map_err(|x| format!("GET_MSRS: {x}"))?;
        Ok((n, m.as_slice().iter().map(|e| e.data).collect()))
    };
    let (n, v) = read(&vcpu, &[0x179])?;
    if n != 1 || v[0] != 32 {
        return Err(format!("MCG_CAP before SETUP_MCE: {n} read, {:#x}", v[0]));
    }
    let setup = |cap: u64| ioctl(fd, kvm::X86_SETUP_MCE, &cap as *const u64 as u64);
    expect_errno("SETUP_MCE(0 banks)", setup(0x100), libc::EINVAL)?;
    expect_errno("SETUP_MCE(33 banks)", setup(0x100 | 33), libc::EINVAL)?;
    expect_errno("SETUP_MCE(CMCI_P)", setup(0x400 | 4), libc::EINVAL)?;
    expect_errno("SETUP_MCE(NULL)", ioctl(fd, kvm::X86_SETUP_MCE, 0), libc::EFAULT)?;
    setup(0x100 | 4).map_err(|x| format!("SETUP_MCE(MCG_CTL_P, 4 banks): errno {x}"))?;
    let (n, v) = read(&vcpu, &[0x179, 0x17b, 0x17a, 0x400, 0x40c, 0x40d, 0x410])?;
    if n != 6 || v[..6] != [0x104, u64::MAX, 0, u64::MAX, u64::MAX, 0] {
        return Err(format!("after SETUP_MCE: {n} read (expected 6: bank 4 absent), {v:x?}"));
    }
    // HWCR: McStatusWrEn and TscFreqSel may be set, other bits not.
    let set = |vcpu: &kvm_ioctls::VcpuFd, m: &[kvm_msr_entry]| vcpu.set_msrs(&Msrs::from_entries(m).unwrap()).map_err(|x| format!("SET_MSRS: {x}"));
    if set(&vcpu, &[ent(0xc001_0015, 1 << 18 | 1 << 24), ent(0xc001_0015, 1 << 17)])? != 1 {
        return Err("HWCR: bit 17 accepted or McStatusWrEn refused".into());
    }
    let mce_arg = |status: u64, mcg: u64, bank: u8| {
        let mut b = vec![0u8; 64];
        b[0..8].copy_from_slice(&status.to_ne_bytes());
        b[8..16].copy_from_slice(&0x1234_5000u64.to_ne_bytes());
        b[24..32].copy_from_slice(&mcg.to_ne_bytes());
        b[32] = bank;
        b
    };
    const VAL: u64 = 1 << 63;
    const UC: u64 = 1 << 61;
    const PCC: u64 = 1 << 57;
    expect_errno("SET_MCE(bank 4 of 4)", ioctl(fd, kvm::X86_SET_MCE, mce_arg(VAL | UC | PCC, 5, 4).as_ptr() as u64), libc::EINVAL)?;
    expect_errno("SET_MCE(no VAL)", ioctl(fd, kvm::X86_SET_MCE, mce_arg(UC | PCC, 5, 1).as_ptr() as u64), libc::EINVAL)?;
    expect_errno("SET_MCE(NULL)", ioctl(fd, kvm::X86_SET_MCE, 0), libc::EFAULT)?;
    match vcpu.run() {
        Ok(VcpuExit::Hlt) => {}
        r => return Err(format!("first run: {r:?}, expected HLT")),
    }
    let mut s = vcpu.get_sregs().unwrap();
    s.cr4 |= 0x40; // CR4.MCE
    vcpu.set_sregs(&s).map_err(|x| x.to_string())?;
    ioctl(fd, kvm::X86_SET_MCE, mce_arg(VAL | UC | PCC, 5, 1).as_ptr() as u64).map_err(|x| format!("SET_MCE: errno {x}"))?;
    match vcpu.run() {
        Ok(VcpuExit::IoOut(0x10, d)) if d == [0x12] => {}
        r => return Err(format!("after SET_MCE: {r:?}, expected the #MC handler's OUT 0x10 = 0x12")),
    }
    let (_, v) = read(&vcpu, &[0x17a, 0x405, 0x406])?;
    if v != [5, VAL | UC | PCC, 0x1234_5000] {
        return Err(format!("MCG_STATUS, MC1_STATUS, MC1_ADDR after #MC: {v:x?}"));
    }
    // A second uncorrected error while MCIP is set: shutdown.
    ioctl(fd, kvm::X86_SET_MCE, mce_arg(VAL | UC | PCC, 5, 2).as_ptr() as u64).map_err(|x| format!("SET_MCE (during #MC): errno {x}"))?;
    match vcpu.run() {
        Ok(VcpuExit::Shutdown) => Ok(()),
        r => Err(format!("machine check during a machine check: {r:?}, expected SHUTDOWN")),
    }
}

fn guest_debug_arg(control: u32, dr: [u64; 8]) -> Vec<u8> {
    let mut b = vec![0u8; 72];
    b[0..4].copy_from_slice(&control.to_ne_bytes());
    for (i, d) in dr.iter().enumerate() {
        b[8 + 8 * i..16 + 8 * i].copy_from_slice(&d.to_ne_bytes());
    }
    b
}

/// KVM_SET_GUEST_DEBUG: single-stepping (also over CPUID, which the
/// hypervisor emulates), TF hidden from KVM_GET_REGS, a hardware execution
/// breakpoint (the guest's DR7 still what KVM_GET_DEBUGREGS reports),
/// INJECT_DB reaching the guest's handler and
/// EBUSY for a second injection before it is delivered.
pub fn guest_debug(e: &Env) -> R {
    const ENABLE: u32 = 1;
    const SINGLESTEP: u32 = 2;
    const USE_HW_BP: u32 = 1 << 17;
    const INJECT_DB: u32 = 1 << 18;
    const INJECT_BP: u32 = 1 << 19;
    let k = e.kvm();
    for c in [cap::SET_GUEST_DEBUG, cap::X86_ROBUST_SINGLESTEP] {
        if k.check_extension_raw(c as _) != 1 {
            return Err(format!("capability {c} not 1"));
        }
    }
    // 1000: inc ax; inc ax; cpuid; out 0x80, al; nop; int3; nop; hlt. #DB
    // handler (IVT 1 -> 0:2000): mov al, 0x11; out 0x10, al; hlt.
    let code = [0x40, 0x40, 0x0f, 0xa2, 0xe6, 0x80, 0x90, 0xcc, 0x90, 0xf4];
    let (_vm, mut vcpu, mut mem) = small_vm(&k, &code);
    mem.bytes()[0x2000..0x2005].copy_from_slice(&[0xb0, 0x11, 0xe6, 0x10, 0xf4]);
    mem.bytes()[4..8].copy_from_slice(&[0x00, 0x20, 0x00, 0x00]);
    let fd = vcpu.as_raw_fd();
    let set = |control: u32, dr: [u64; 8]| ioctl(fd, kvm::SET_GUEST_DEBUG, guest_debug_arg(control, dr).as_ptr() as u64);
    expect_errno("SET_GUEST_DEBUG(NULL)", ioctl(fd, kvm::SET_GUEST_DEBUG, 0), libc::EFAULT)?;
    // Reads the debug exit from the kvm_run page.
    let debug_exit = |vcpu: &mut kvm_ioctls::VcpuFd, what: &str| -> Result<(u32, u64, u64), String> {
        match vcpu.run() {
            Ok(VcpuExit::Debug(a)) => Ok((a.exception, a.pc, a.dr6)),
            r => Err(format!("{what}: {r:?}, expected KVM_EXIT_DEBUG")),
        }
    };
    set(ENABLE | SINGLESTEP, [0; 8]).map_err(|x| format!("SET_GUEST_DEBUG(single step): errno {x}"))?;
    let r = vcpu.get_regs().unwrap();
    if r.rflags & 0x100 != 0 {
        return Err("KVM_GET_REGS shows the debugger's TF".into());
    }
    for (what, want_pc) in [("first step", 0x1001u64), ("second step", 0x1002), ("step over CPUID", 0x1004)] {
        let (ex, pc, dr6) = debug_exit(&mut vcpu, what)?;
        if ex != 1 || pc != want_pc || dr6 & 0x4000 == 0 {
            return Err(format!("{what}: exception {ex} pc {pc:#x} dr6 {dr6:#x}, expected #DB at {want_pc:#x} with DR6.BS"));
        }
    }
    // OUT exits to userspace; completing it is the next step.
    match vcpu.run() {
        Ok(VcpuExit::IoOut(0x80, _)) => {}
        r => return Err(format!("single-stepped OUT: {r:?}, expected the port I/O exit")),
    }
    let (ex, pc, dr6) = debug_exit(&mut vcpu, "step over OUT")?;
    if ex != 1 || pc != 0x1006 || dr6 & 0x4000 == 0 {
        return Err(format!("step over OUT: exception {ex} pc {pc:#x} dr6 {dr6:#x}, expected #DB at 0x1006 with DR6.BS"));
    }
    // Hardware breakpoint on the INT3 at 0x1007 (DR7: L0, execute, 1 byte).
    set(ENABLE | USE_HW_BP, [0x1007, 0, 0, 0, 0, 0, 0, 0x401]).map_err(|x| format!("SET_GUEST_DEBUG(hw bp): errno {x}"))?;
    let mut dregs = vec![0u8; 128];
    ioctl(fd, kvm::GET_DEBUGREGS, dregs.as_mut_ptr() as u64).unwrap();
    if le64(&dregs, 40) != 0x400 || le64(&dregs, 0) != 0 {
        return Err(format!("KVM_GET_DEBUGREGS under hw breakpoints: DR0 {:#x} DR7 {:#x}, expected the guest's 0 and 0x400", le64(&dregs, 0), le64(&dregs, 40)));
    }
    let (ex, pc, dr6) = debug_exit(&mut vcpu, "hw breakpoint")?;
    if ex != 1 || pc != 0x1007 || dr6 & 1 == 0 {
        return Err(format!("hw breakpoint: exception {ex} pc {pc:#x} dr6 {dr6:#x}, expected #DB at 0x1007 with DR6.B0"));
    }
    // USE_SW_BP (the #BP intercept) cannot be shown under QEMU TCG: TCG
    // reports INT3 as a software interrupt (SVM_EXIT_SWINT semantics,
    // raise_interrupt2 in target/i386/tcg/excp_helper.c) and never takes
    // the #BP exception intercept, on kvm_amd as on nsvm.
    // Debugging off; queue a #DB for the guest: its handler runs.
    set(INJECT_DB, [0; 8]).map_err(|x| format!("SET_GUEST_DEBUG(inject #DB): errno {x}"))?;
    expect_errno("SET_GUEST_DEBUG(inject #BP with #DB queued)", set(INJECT_BP, [0; 8]), libc::EBUSY)?;
    match vcpu.run() {
        Ok(VcpuExit::IoOut(0x10, d)) if d == [0x11] => Ok(()),
        r => Err(format!("injected #DB: {r:?}, expected the handler's OUT 0x10 = 0x11")),
    }
}

/// `kvm_run->cr8` is the TPR userspace sets for the next KVM_RUN (no
/// in-kernel LAPIC): kept across a run, reported back, and EINVAL above 15.
pub fn run_cr8(e: &Env) -> R {
    let k = e.kvm();
    let (_vm, mut vcpu, _m) = small_vm(&k, &[0xf4, 0xf4]);
    vcpu.get_kvm_run().cr8 = 16;
    match vcpu.run() {
        Err(x) if x.errno() == libc::EINVAL => {}
        r => return Err(format!("KVM_RUN with cr8 16: {r:?}, expected EINVAL")),
    }
    vcpu.get_kvm_run().cr8 = 5;
    match vcpu.run() {
        Ok(VcpuExit::Hlt) => {}
        r => return Err(format!("KVM_RUN with cr8 5: {r:?}, expected HLT")),
    }
    let c = vcpu.get_kvm_run().cr8;
    if c != 5 {
        return Err(format!("kvm_run->cr8 after the run: {c}, expected 5"));
    }
    // 64-bit CR8 reads need long mode; the value also shows in KVM_GET_SREGS.
    let s = vcpu.get_sregs().unwrap();
    (s.cr8 == 5).then_some(()).ok_or(format!("KVM_GET_SREGS cr8 {}, expected 5", s.cr8))
}

/// KVM_GET_CLOCK / KVM_SET_CLOCK: the clock advances, is set to a value
/// and moves on from it, REALTIME adds the real time elapsed, unknown
/// flags are EINVAL.
pub fn clock(e: &Env) -> R {
    let k = e.kvm();
    let adj = k.check_extension_raw(cap::ADJUST_CLOCK as _);
    if adj != 0xe {
        return Err(format!("KVM_CAP_ADJUST_CLOCK = {adj:#x}, expected TSC_STABLE | REALTIME | HOST_TSC"));
    }
    let vm = k.create_vm().map_err(|x| x.to_string())?;
    let fd = vm.as_raw_fd();
    let get = || -> Result<u64, String> {
        let mut b = [0u8; 48];
        ioctl(fd, kvm::GET_CLOCK, b.as_mut_ptr() as u64).map_err(|x| format!("GET_CLOCK: errno {x}"))?;
        Ok(le64(&b, 0))
    };
    let set = |clock: u64, flags: u32, realtime: u64| {
        let mut b = [0u8; 48];
        b[0..8].copy_from_slice(&clock.to_ne_bytes());
        b[8..12].copy_from_slice(&flags.to_ne_bytes());
        b[16..24].copy_from_slice(&realtime.to_ne_bytes());
        ioctl(fd, kvm::SET_CLOCK, b.as_ptr() as u64)
    };
    let a = get()?;
    std::thread::sleep(std::time::Duration::from_millis(20));
    let b = get()?;
    if b < a + 20_000_000 {
        return Err(format!("the clock went from {a} to {b} in 20 ms"));
    }
    expect_errno("SET_CLOCK(flags 1)", set(0, 1, 0), libc::EINVAL)?;
    expect_errno("SET_CLOCK(flags 1 << 4)", set(0, 1 << 4, 0), libc::EINVAL)?;
    expect_errno("SET_CLOCK(NULL)", ioctl(fd, kvm::SET_CLOCK, 0), libc::EFAULT)?;
    expect_errno("GET_CLOCK(NULL)", ioctl(fd, kvm::GET_CLOCK, 0), libc::EFAULT)?;
    const T: u64 = 1_000_000_000_000;
    set(T, 0, 0).map_err(|x| format!("SET_CLOCK: errno {x}"))?;
    let c = get()?;
    if !(T..T + 1_000_000_000).contains(&c) {
        return Err(format!("after SET_CLOCK({T}): {c}"));
    }
    // REALTIME one second in the past: the clock is a second further on.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    set(T, 4, now - 1_000_000_000).map_err(|x| format!("SET_CLOCK(REALTIME): errno {x}"))?;
    let c = get()?;
    if !(T + 1_000_000_000..T + 2_000_000_000).contains(&c) {
        return Err(format!("after SET_CLOCK({T}, realtime 1 s ago): {c}"));
    }
    Ok(())
}

/// MOVS and STOS on MMIO, as firmware and kernels use them: REP STOSB and
/// REP MOVSW from RAM to MMIO exit once per element (but for the elements an
/// ioeventfd takes), MOVSW from MMIO stores what userspace returns into RAM;
/// rSI/rDI/rCX end as the hardware leaves them.
pub fn string_mmio(e: &Env) -> R {
    let k = e.kvm();
    let code = [
        0xb8, 0x00, 0x20, 0x8e, 0xc0, 0x31, 0xff, 0xb9, 0x03, 0x00, 0xb0, 0x5a, 0xfc, 0xf3, 0xaa, // es=0x2000; rep stosb x3
        0xbe, 0x00, 0x30, 0xbf, 0x10, 0x00, 0xb9, 0x02, 0x00, 0xf3, 0xa5, // rep movsw [0x3000] -> es:0x10 x2
        0xb8, 0x00, 0x20, 0x8e, 0xd8, 0x31, 0xc0, 0x8e, 0xc0, 0xbe, 0x20, 0x00, 0xbf, 0x00, 0x31, 0xa5, // movsw 0x2000:0x20 -> 0:0x3100
        0xf4,
    ];
    let (vm, mut vcpu, mut mem) = small_vm(&k, &code);
    mem.bytes()[0x3000..0x3004].copy_from_slice(&[0x11, 0x11, 0x22, 0x22]);
    // An ioeventfd takes the second STOSB element and the first MOVSW one.
    let (efd1, efd2) = (eventfd(), eventfd());
    let reg = |b: Vec<u8>| ioctl(vm.as_raw_fd(), kvm::IOEVENTFD, b.as_ptr() as u64);
    reg(ioeventfd_req(0x20001, 1, efd1.as_raw_fd(), 0, 0)).map_err(|x| format!("IOEVENTFD(0x20001): errno {x}"))?;
    reg(ioeventfd_req(0x20010, 2, efd2.as_raw_fd(), nsvm_core::ioeventfd::flags::DATAMATCH, 0x1111)).map_err(|x| format!("IOEVENTFD(0x20010): errno {x}"))?;
    for (i, want) in [(0x20000u64, vec![0x5a]), (0x20002, vec![0x5a]), (0x20012, vec![0x22, 0x22])].iter().enumerate() {
        match vcpu.run() {
            Ok(VcpuExit::MmioWrite(a, d)) if a == want.0 && d == want.1.as_slice() => {}
            r => return Err(format!("exit {i}: {r:?}, expected an MMIO write of {:x?} at {:#x}", want.1, want.0)),
        }
    }
    match vcpu.run() {
        Ok(VcpuExit::MmioRead(0x20020, d)) if d.len() == 2 => d.copy_from_slice(&[0x34, 0x12]),
        r => return Err(format!("MOVSW from MMIO: {r:?}, expected a 2-byte MMIO read at 0x20020")),
    }
    match vcpu.run() {
        Ok(VcpuExit::Hlt) => {}
        r => return Err(format!("end: {r:?}, expected HLT")),
    }
    if efd_count(&efd1) != 1 || efd_count(&efd2) != 1 {
        return Err("the string elements on ioeventfds did not signal them once each".into());
    }
    let r = vcpu.get_regs().unwrap();
    let got = mem.read(0x3100, 2);
    if got != [0x34, 0x12] || r.rdi & 0xffff != 0x3102 || r.rsi & 0xffff != 0x22 || r.rcx & 0xffff != 0 {
        return Err(format!("after the string moves: RAM {got:x?}, di {:#x} si {:#x} cx {:#x}", r.rdi, r.rsi, r.rcx));
    }
    Ok(())
}

/// OUTS elements hit PIO ioeventfds like OUT: REP OUTSB of three bytes to
/// a port whose ioeventfd matches the second byte exits twice.
pub fn outs_ioeventfd(e: &Env) -> R {
    let k = e.kvm();
    // mov si, 0x3000; mov dx, 0x90; mov cx, 3; cld; rep outsb; hlt.
    let code = [0xbe, 0x00, 0x30, 0xba, 0x90, 0x00, 0xb9, 0x03, 0x00, 0xfc, 0xf3, 0x6e, 0xf4];
    let (vm, mut vcpu, mut mem) = small_vm(&k, &code);
    mem.bytes()[0x3000..0x3003].copy_from_slice(&[1, 2, 3]);
    let efd = eventfd();
    let b = ioeventfd_req(0x90, 1, efd.as_raw_fd(), nsvm_core::ioeventfd::flags::PIO | nsvm_core::ioeventfd::flags::DATAMATCH, 2);
    ioctl(vm.as_raw_fd(), kvm::IOEVENTFD, b.as_ptr() as u64).map_err(|x| format!("IOEVENTFD: errno {x}"))?;
    for want in [1u8, 3] {
        match vcpu.run() {
            Ok(VcpuExit::IoOut(0x90, d)) if d == [want] => {}
            r => return Err(format!("REP OUTSB: {r:?}, expected OUT 0x90 = {want}")),
        }
    }
    match vcpu.run() {
        Ok(VcpuExit::Hlt) => {}
        r => return Err(format!("end: {r:?}, expected HLT")),
    }
    let r = vcpu.get_regs().unwrap();
    if efd_count(&efd) != 1 || r.rsi & 0xffff != 0x3003 || r.rcx & 0xffff != 0 {
        return Err(format!("eventfd or registers wrong: si {:#x} cx {:#x}", r.rsi, r.rcx));
    }
    Ok(())
}

/// Guest XSETBV follows the vCPU's CPUID: with leaf 0xD offering x87 and
/// SSE only, XSETBV of x87|SSE|AVX is #GP (even where the host has AVX),
/// and XSETBV of x87|SSE succeeds and shows in KVM_GET_XCRS.
pub fn xsetbv_cpuid(e: &Env) -> R {
    let k = e.kvm();
    // 1000: xor ecx, ecx; xor edx, edx; mov eax, 7; xsetbv; mov al, 0x77;
    // out 0x10, al; 1013: mov eax, 3; xsetbv; mov al, 0x33; out 0x10, al; hlt.
    let code = [
        0x66, 0x31, 0xc9, 0x66, 0x31, 0xd2, 0x66, 0xb8, 0x07, 0, 0, 0, 0x0f, 0x01, 0xd1, 0xb0, 0x77, 0xe6, 0x10, // 1000..1012
        0x66, 0xb8, 0x03, 0, 0, 0, 0x0f, 0x01, 0xd1, 0xb0, 0x33, 0xe6, 0x10, 0xf4,
    ];
    let (_vm, mut vcpu, mut mem) = small_vm(&k, &code);
    // #GP handler (IVT 13 -> 0:2000): mov al, 0x0d; out 0x10, al; jmp 0:1013.
    mem.bytes()[0x2000..0x2009].copy_from_slice(&[0xb0, 0x0d, 0xe6, 0x10, 0xea, 0x13, 0x10, 0x00, 0x00]);
    mem.bytes()[4 * 13..4 * 13 + 4].copy_from_slice(&[0x00, 0x20, 0x00, 0x00]);
    let fd = vcpu.as_raw_fd();
    // CPUID: max leaf 0xd; leaf 1 ECX.XSAVE (26); leaf 0xD.0 EAX = x87|SSE.
    let ent = |f: u32, idx: u32, flags: u32, regs: [u32; 4]| {
        let mut b = vec![0u8; 40];
        for (i, v) in [f, idx, flags, regs[0], regs[1], regs[2], regs[3]].iter().enumerate() {
            b[4 * i..4 * i + 4].copy_from_slice(&v.to_ne_bytes());
        }
        b
    };
    let mut t = vec![0u8; 8];
    t[0..4].copy_from_slice(&3u32.to_ne_bytes());
    t.extend(ent(0, 0, 0, [0xd, 0x6874_7541, 0x444d_4163, 0x6974_6e65]));
    t.extend(ent(1, 0, 0, [0x800f12, 0, 1 << 26, 0x0789_fbff]));
    t.extend(ent(0xd, 0, 1, [3, 576, 576, 0]));
    ioctl(fd, kvm::SET_CPUID2, t.as_ptr() as u64).map_err(|x| format!("SET_CPUID2: errno {x}"))?;
    let mut s = vcpu.get_sregs().unwrap();
    s.cr4 |= 0x4_0200; // OSXSAVE, OSFXSR
    vcpu.set_sregs(&s).map_err(|x| format!("SET_SREGS(CR4.OSXSAVE): {x}"))?;
    for (what, want) in [("XSETBV(7) without AVX in CPUID", 0x0d), ("XSETBV(3)", 0x33)] {
        match vcpu.run() {
            Ok(VcpuExit::IoOut(0x10, d)) if d == [want] => {}
            r => return Err(format!("{what}: {r:?}, expected OUT 0x10 = {want:#x}")),
        }
    }
    let mut xcrs = vec![0u8; 392];
    ioctl(fd, kvm::GET_XCRS, xcrs.as_mut_ptr() as u64).map_err(|x| format!("GET_XCRS: errno {x}"))?;
    (le64(&xcrs, 16) == 3).then_some(()).ok_or(format!("XCR0 after the guest's XSETBV(3): {:#x}", le64(&xcrs, 16)))
}
