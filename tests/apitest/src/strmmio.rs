// SPDX-License-Identifier: GPL-2.0
//! LODS from MMIO (REP LODS too) and MOVS with both operands on MMIO, as
//! KVM's emulator shows them to userspace, run the same way on /dev/nsvm
//! and /dev/kvm: one `KVM_EXIT_MMIO` per element (MOVS MMIO -> MMIO: a read,
//! then a write of the data read), the registers untouched at a read exit
//! and already moved at a write exit (KVM completes the instruction, or the
//! element of a REP, before it exits for the write), RIP past the
//! instruction once done, DF, 16- and 32-bit address sizes, CX vs ECX, REP
//! with CX = 0, a segment override, then 64-bit code (REX.W, 67). The
//! payload is `strmmio16.bin` (tests/guests/strmmio16.S) plus a few
//! 64-bit instructions; every exit and the registers at it are checked
//! against the expected sequence and, with `--trace FILE`, written there
//! so that the suite can compare the two devices line by line.

use kvm_bindings::kvm_regs;
use kvm_ioctls::{VcpuExit, VcpuFd};

use super::regs::long_mode_vm;
use super::{region, Env, Mem, R};

/// What the test's MMIO answers at `addr`: a byte that differs from its
/// neighbours' and from its address.
fn answer(addr: u64) -> u8 {
    (addr.wrapping_mul(0x1d) as u8) ^ 0x5a
}

/// `n` bytes of MMIO from `addr`, little-endian.
fn ans(addr: u64, n: u64) -> u64 {
    (0..n).fold(0, |v, i| v | u64::from(answer(addr + i)) << (8 * i))
}

/// One exit: kind, address or port, the data (read: what the test
/// answered; write and OUT: what the guest gave), and the registers.
#[derive(Debug)]
struct Ev {
    kind: &'static str,
    addr: u64,
    data: Vec<u8>,
    r: kvm_regs,
}

impl Ev {
    fn line(&self) -> String {
        let d: String = self.data.iter().map(|b| format!("{b:02x}")).collect();
        let r = &self.r;
        format!(
            "{} {:#x} [{d}] rip {:#x} rflags {:#x} rax {:#x} rcx {:#x} rsi {:#x} rdi {:#x}",
            self.kind, self.addr, r.rip, r.rflags, r.rax, r.rcx, r.rsi, r.rdi
        )
    }
}

/// Runs to HLT (at most `max` exits), answering MMIO reads.
fn run_trace(v: &mut VcpuFd, max: usize) -> Result<Vec<Ev>, String> {
    let mut t = Vec::new();
    for _ in 0..max {
        let (kind, addr, data) = match v.run() {
            Ok(VcpuExit::MmioRead(a, d)) => {
                for (i, b) in d.iter_mut().enumerate() {
                    *b = answer(a + i as u64);
                }
                ("read", a, d.to_vec())
            }
            Ok(VcpuExit::MmioWrite(a, d)) => ("write", a, d.to_vec()),
            Ok(VcpuExit::IoOut(p, d)) => ("out", u64::from(p), d.to_vec()),
            Ok(VcpuExit::Hlt) => ("hlt", 0, Vec::new()),
            x => return Err(format!("exit {} of the trace: {x:?}", t.len())),
        };
        let r = v.get_regs().map_err(|x| x.to_string())?;
        t.push(Ev { kind, addr, data, r });
        if kind == "hlt" {
            return Ok(t);
        }
    }
    Err(format!("no HLT after {max} exits"))
}

/// An expected exit: kind, address/port, length (or the exact data for a
/// write), RIP at the exit.
struct Want {
    kind: &'static str,
    addr: u64,
    len: usize,
    data: Option<Vec<u8>>,
    rip: u64,
}

fn rd(addr: u64, len: usize, rip: u64) -> Want {
    Want { kind: "read", addr, len, data: None, rip }
}
/// A write of what the MMIO answered at `from` (MOVS from MMIO).
fn wr_from(addr: u64, from: u64, len: usize, rip: u64) -> Want {
    Want { kind: "write", addr, len, data: Some((0..len as u64).map(|i| answer(from + i)).collect()), rip }
}
fn wr(addr: u64, data: &[u8], rip: u64) -> Want {
    Want { kind: "write", addr, len: data.len(), data: Some(data.to_vec()), rip }
}
fn out(port: u64, rip: u64) -> Want {
    Want { kind: "out", addr: port, len: 1, data: None, rip }
}

fn check(what: &str, t: &[Ev], want: &[Want]) -> R {
    for (i, w) in want.iter().enumerate() {
        let Some(e) = t.get(i) else { return Err(format!("{what}: {} exits, expected {}", t.len(), want.len() + 1)) };
        let data_ok = w.data.as_ref().is_none_or(|d| *d == e.data);
        if e.kind != w.kind || e.addr != w.addr || e.data.len() != w.len || !data_ok || e.r.rip != w.rip {
            return Err(format!(
                "{what}: exit {i} is `{}`, expected {} {:#x} len {} {:x?} at RIP {:#x}",
                e.line(), w.kind, w.addr, w.len, w.data, w.rip
            ));
        }
    }
    match t.get(want.len()) {
        Some(e) if e.kind == "hlt" && t.len() == want.len() + 1 => Ok(()),
        _ => Err(format!("{what}: {} exits, expected {} and HLT", t.len(), want.len())),
    }
}

/// The registers at the OUT to `port`.
fn at_out(t: &[Ev], port: u64) -> kvm_regs {
    t.iter().find(|e| e.kind == "out" && e.addr == port).map(|e| e.r).unwrap_or_default()
}

pub fn string_mmio_lods_movs(e: &Env) -> R {
    let Some(dir) = &e.guests else { return Err("needs --guests DIR (strmmio16.bin)".into()) };
    let code = std::fs::read(format!("{dir}/strmmio16.bin")).map_err(|x| format!("strmmio16.bin: {x}"))?;
    let k = e.kvm();
    let vm = k.create_vm().map_err(|x| x.to_string())?;
    let mem = Mem::new(0x10000);
    mem.write(0x1000, &code);
    // SAFETY: the mapping outlives the VM (dropped after it).
    unsafe { vm.set_user_memory_region(region(0, 0, 0x10000, mem.ptr as u64, 0)) }.map_err(|x| x.to_string())?;
    let mut v = vm.create_vcpu(0).map_err(|x| x.to_string())?;
    super::real_mode(&v, 0x1000);
    let t = run_trace(&mut v, 100)?;
    let want = [
        rd(0x20010, 1, 0x100e),
        out(0x11, 0x100f),
        rd(0x20020, 2, 0x1015),
        out(0x12, 0x1017),
        rd(0x20030, 4, 0x101c),
        out(0x13, 0x101e),
        rd(0x20040, 1, 0x1029),
        rd(0x20041, 1, 0x1029),
        rd(0x20042, 1, 0x1029),
        out(0x14, 0x102b),
        rd(0x20052, 2, 0x1034),
        rd(0x20050, 2, 0x1034),
        out(0x15, 0x1037),
        out(0x16, 0x1042),
        rd(0x2ffff, 1, 0x104a),
        out(0x17, 0x104b),
        rd(0x2fffe, 1, 0x1053),
        rd(0x2ffff, 1, 0x1055),
        out(0x18, 0x1057),
        // MOVS MMIO -> MMIO: the write exit comes with the element done;
        // with REP, RIP stays on the instruction, even after the last
        // element (the processor then ends it with CX = 0).
        rd(0x20070, 1, 0x105f),
        wr_from(0x30080, 0x20070, 1, 0x1060),
        out(0x19, 0x1060),
        rd(0x20090, 2, 0x106b),
        wr_from(0x300a0, 0x20090, 2, 0x106b),
        rd(0x20092, 2, 0x106b),
        wr_from(0x300a2, 0x20092, 2, 0x106b),
        out(0x1a, 0x106d),
        rd(0x200b4, 4, 0x1079),
        wr_from(0x300c4, 0x200b4, 4, 0x1079),
        rd(0x200b0, 4, 0x1079),
        wr_from(0x300c0, 0x200b0, 4, 0x1079),
        out(0x1b, 0x107d),
        rd(0x2fffe, 1, 0x1091),
        wr_from(0x3fffe, 0x2fffe, 1, 0x1091),
        rd(0x2ffff, 1, 0x1091),
        wr_from(0x3ffff, 0x2ffff, 1, 0x1091),
        out(0x1c, 0x1094),
        rd(0x200d0, 1, 0x10a3),
        rd(0x200d1, 1, 0x10a3),
        out(0x1d, 0x10a5),
        wr(0x300e0, &[answer(0x200d0), answer(0x200d1)], 0x10b7),
        out(0x1e, 0x10b7),
        wr(0x300f0, &[0x22, 0x11], 0x10c0),
        wr(0x30100, &[0x33], 0x10c6),
        out(0x1f, 0x10c6),
        rd(0x30110, 1, 0x10cb),
        out(0x20, 0x10cd),
    ];
    drop(v);
    drop(vm);

    // 64-bit code (identity-mapped first 2 MiB; RAM only below 64 KiB).
    let code64: &[u8] = &[
        0xbe, 0x00, 0x01, 0x02, 0x00, // 1000 mov $0x20100, %esi
        0x48, 0xad, // 1005 lodsq
        0x48, 0xbe, 0x10, 0x01, 0x02, 0x00, 0xff, 0xff, 0xff, 0xff, // 1007 movabs $0xffffffff00020110, %rsi
        0x67, 0xad, // 1011 addr32 lodsl
        0xe6, 0x11, // 1013 out %al, $0x11
        0xbe, 0x00, 0x02, 0x02, 0x00, // 1015 mov $0x20200, %esi
        0xbf, 0x00, 0x03, 0x02, 0x00, // 101a mov $0x20300, %edi
        0xb9, 0x02, 0x00, 0x00, 0x00, // 101f mov $2, %ecx
        0xfd, // 1024 std
        0xf3, 0x48, 0xa5, // 1025 rep movsq
        0xfc, // 1028 cld
        0xb0, 0x7f, // 1029 mov $0x7f, %al
        0xbf, 0x00, 0x04, 0x02, 0x00, // 102b mov $0x20400, %edi
        0xaa, // 1030 stosb
        0xe6, 0x10, // 1031 out %al, $0x10
        0xf4, // 1033 hlt
    ];
    let (_vm64, mut v64, mut mem64, _) = long_mode_vm(&k)?;
    mem64.bytes()[0x1000..0x1000 + code64.len()].copy_from_slice(code64);
    v64.set_regs(&kvm_regs { rip: 0x1000, rflags: 2, rsp: 0x8000, ..Default::default() }).map_err(|x| x.to_string())?;
    let t64 = run_trace(&mut v64, 20)?;
    let want64 = [
        rd(0x20100, 8, 0x1005),
        rd(0x20110, 4, 0x1011),
        out(0x11, 0x1013),
        rd(0x20200, 8, 0x1025),
        wr_from(0x20300, 0x20200, 8, 0x1025),
        rd(0x201f8, 8, 0x1025),
        wr_from(0x202f8, 0x201f8, 8, 0x1025),
        wr(0x20400, &[0x7f], 0x1031),
        out(0x10, 0x1031),
    ];
    // The whole trace first (compared between the devices by the suite),
    // then the expectations.
    if let Some(path) = &e.trace {
        let s: String = t.iter().chain(t64.iter()).map(|e| e.line() + "\n").collect();
        std::fs::write(path, s).map_err(|x| format!("{path}: {x}"))?;
    }
    check("real mode", &t, &want)?;
    // Registers where the hardware leaves them.
    let w16 = |r: u64| r & 0xffff;
    let regs: [(u64, u64, &str); 17] = [
        (at_out(&t, 0x11).rax & 0xff, ans(0x20010, 1), "LODSB: AL"),
        (w16(at_out(&t, 0x11).rsi), 0x11, "LODSB: SI"),
        (at_out(&t, 0x12).rax & 0xffff, ans(0x20020, 2), "LODSW (DF=1): AX"),
        (w16(at_out(&t, 0x12).rsi), 0x1e, "LODSW (DF=1): SI"),
        (at_out(&t, 0x13).rax, ans(0x20030, 4), "LODSD: RAX"),
        (at_out(&t, 0x14).rcx, 0x5_0000, "REP LODSB: ECX (CX counted)"),
        (w16(at_out(&t, 0x14).rsi) | (at_out(&t, 0x14).rax & 0xff) << 16, 0x43 | ans(0x20042, 1) << 16, "REP LODSB: SI, AL"),
        (w16(at_out(&t, 0x15).rsi) | (at_out(&t, 0x15).rax & 0xffff) << 16, 0x4e | ans(0x20050, 2) << 16, "REP LODSW (DF=1): SI, AX"),
        (w16(at_out(&t, 0x16).rsi) | (at_out(&t, 0x16).rax & 0xff) << 16, 0x60 | 0x77 << 16, "REP LODSB with CX=0: SI, AL"),
        (at_out(&t, 0x17).rsi, 0x1234_0000, "LODSB at SI=0xffff: ESI"),
        (at_out(&t, 0x18).rsi, 0x1_0000, "67 LODSB at ESI=0xffff: ESI"),
        (w16(at_out(&t, 0x19).rsi) << 16 | w16(at_out(&t, 0x19).rdi), 0x71 << 16 | 0x81, "MOVSB: SI, DI"),
        (w16(at_out(&t, 0x1a).rsi) << 16 | w16(at_out(&t, 0x1a).rdi), 0x94 << 16 | 0xa4, "REP MOVSW: SI, DI"),
        (w16(at_out(&t, 0x1b).rsi) << 16 | w16(at_out(&t, 0x1b).rdi), 0xac << 16 | 0xbc, "REP MOVSD (DF=1): SI, DI"),
        (at_out(&t, 0x1c).rsi << 32 | at_out(&t, 0x1c).rdi, 0x1_0000 << 32 | 0x1_0000, "67 REP MOVSB: ESI, EDI"),
        (at_out(&t, 0x1c).rcx, 0, "67 REP MOVSB: ECX"),
        (u64::from(u16::from_le_bytes([mem.read(0x5000, 2)[0], mem.read(0x5000, 2)[1]])), ans(0x200d0, 2), "REP MOVSB MMIO -> RAM: RAM"),
    ];
    for (got, want, what) in regs {
        if got != want {
            return Err(format!("{what}: {got:#x}, expected {want:#x}"));
        }
    }
    // A write exit shows the element done (KVM): SI/DI moved, CX counted.
    let w = t.iter().find(|e| e.kind == "write" && e.addr == 0x300a0).map(|e| e.r).unwrap_or_default();
    if (w16(w.rsi), w16(w.rdi), w16(w.rcx)) != (0x92, 0xa2, 1) {
        return Err(format!("at the first REP MOVSW write exit: SI {:#x} DI {:#x} CX {:#x}, expected 0x92 0xa2 1", w.rsi, w.rdi, w.rcx));
    }
    // RFLAGS.RF is set while a REP instruction runs again, clear after a
    // store that completed its instruction (KVM's emulator).
    let rf = |addr: u64| t.iter().find(|e| e.kind == "write" && e.addr == addr).map(|e| e.r.rflags & 0x1_0000 != 0);
    if (rf(0x300a0), rf(0x300a2), rf(0x30080), rf(0x30100)) != (Some(true), Some(true), Some(false), Some(false)) {
        return Err(format!("RFLAGS.RF at the write exits of REP MOVSW (two), MOVSB, MOV: {:?}", (rf(0x300a0), rf(0x300a2), rf(0x30080), rf(0x30100))));
    }
    // Between REP LODS elements KVM's emulator writes no RFLAGS back: RF
    // stays as the guest had it at the first.
    let rd_rf = t.iter().find(|e| e.kind == "read" && e.addr == 0x20041).map(|e| e.r.rflags & 0x1_0000 != 0);
    if rd_rf != Some(false) {
        return Err(format!("RFLAGS.RF at the second REP LODSB read exit: {rd_rf:?}, expected clear"));
    }
    // ... and a read exit shows nothing done yet.
    let r = t.iter().find(|e| e.kind == "read" && e.addr == 0x20092).map(|e| e.r).unwrap_or_default();
    if (w16(r.rsi), w16(r.rdi), w16(r.rcx)) != (0x92, 0xa2, 1) {
        return Err(format!("at the second REP MOVSW read exit: SI {:#x} DI {:#x} CX {:#x}, expected 0x92 0xa2 1", r.rsi, r.rdi, r.rcx));
    }
    check("64-bit", &t64, &want64)?;
    let after_lodsq = t64[1].r.rax;
    let after_lodsd = at_out(&t64, 0x11);
    let end = at_out(&t64, 0x10);
    if after_lodsq != ans(0x20100, 8) || after_lodsd.rax != ans(0x20110, 4) || after_lodsd.rsi != 0x2_0114 {
        return Err(format!("LODSQ: RAX {after_lodsq:#x}; 67 LODSD: RAX {:#x} RSI {:#x}", after_lodsd.rax, after_lodsd.rsi));
    }
    if (end.rsi, end.rdi, end.rcx) != (0x2_01f0, 0x2_0401, 0) {
        return Err(format!("after REP MOVSQ (DF=1) and STOSB: RSI {:#x} RDI {:#x} RCX {:#x}", end.rsi, end.rdi, end.rcx));
    }
    Ok(())
}
