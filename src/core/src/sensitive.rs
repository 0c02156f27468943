// SPDX-License-Identifier: GPL-2.0
//! The sensitive-instruction experiment: instructions that are sensitive but
//! not privileged in the classical (Popek–Goldberg) sense — SIDT, SGDT, SLDT,
//! STR, SMSW (and MOV from CR0), PUSHF, POPF, plus CPUID and RDTSC — can be
//! intercepted per VM (APM vol. 2 15.9–15.13 intercepts) and are then
//! emulated by L0 so that the guest sees exactly what it would have seen;
//! only nsvm's counters change. This file decodes them and computes their
//! architectural effect (APM vol. 3 for each instruction).

use crate::insn::is_legacy_prefix;
use crate::mmio::CodeSize;
use crate::x86::{rflags, Gpr, Gprs};

/// Policy bits (`struct nsvm_policy.instructions`).
pub mod bits {
    /// SIDT.
    pub const SIDT: u64 = 1 << 0;
    /// SGDT.
    pub const SGDT: u64 = 1 << 1;
    /// SLDT.
    pub const SLDT: u64 = 1 << 2;
    /// STR.
    pub const STR: u64 = 1 << 3;
    /// SMSW and MOV from CR0 (the CR0 read intercept).
    pub const CR0_READ: u64 = 1 << 4;
    /// PUSHF.
    pub const PUSHF: u64 = 1 << 5;
    /// POPF.
    pub const POPF: u64 = 1 << 6;
    /// CPUID (always intercepted by nsvm; the bit only documents it).
    pub const CPUID: u64 = 1 << 7;
    /// RDTSC.
    pub const RDTSC: u64 = 1 << 8;
    /// Every defined bit.
    pub const ALL: u64 = (1 << 9) - 1;
}

/// Exception vectors whose intercept nsvm can reflect back to the guest
/// unchanged: faults and aborts with well-defined re-delivery. #DB and #BP
/// (traps with debug-register and INT3 semantics), NMI and #MC are not
/// offered.
pub const REFLECTABLE_EXCEPTIONS: u32 = (1 << 0) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8)
    | (1 << 10) | (1 << 11) | (1 << 12) | (1 << 13) | (1 << 14) | (1 << 16) | (1 << 17) | (1 << 19);

/// Whether exception `vector` pushes an error code (APM vol. 2 8.2).
pub const fn has_error_code(vector: u8) -> bool {
    matches!(vector, 8 | 10 | 11 | 12 | 13 | 14 | 17 | 21 | 29 | 30)
}

/// The policy a VM runs with (`NSVM_SET_POLICY`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// [`bits`].
    pub instructions: u64,
    /// Exception vectors to intercept and reflect.
    pub exceptions: u32,
}

impl Policy {
    /// Size of `struct nsvm_policy`.
    pub const SIZE: usize = 32;
    /// Parses and checks `struct nsvm_policy { u64 instructions; u32
    /// exceptions; u32 flags; u64 reserved[2]; }`: unknown bits, flags or
    /// reserved words are refused.
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Result<Self, &'static str> {
        let u64_at = |o: usize| u64::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3], b[o + 4], b[o + 5], b[o + 6], b[o + 7]]);
        let instructions = u64_at(0);
        let exceptions = u32::from_ne_bytes([b[8], b[9], b[10], b[11]]);
        let flags = u32::from_ne_bytes([b[12], b[13], b[14], b[15]]);
        if instructions & !bits::ALL != 0 {
            return Err("unknown instruction bit");
        }
        if exceptions & !REFLECTABLE_EXCEPTIONS != 0 {
            return Err("exception vector that cannot be reflected");
        }
        if flags != 0 || u64_at(16) != 0 || u64_at(24) != 0 {
            return Err("flags and reserved words must be zero");
        }
        Ok(Self { instructions, exceptions })
    }
    /// To bytes.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        b[..8].copy_from_slice(&self.instructions.to_ne_bytes());
        b[8..12].copy_from_slice(&self.exceptions.to_ne_bytes());
        b
    }
}

/// Guest state an emulation reads.
#[derive(Clone, Copy, Debug, Default)]
pub struct State {
    /// The general-purpose registers.
    pub regs: Gprs,
    /// RIP.
    pub rip: u64,
    /// RFLAGS.
    pub rflags: u64,
    /// CPL.
    pub cpl: u8,
    /// Code size.
    pub cs: Option<CodeSize>,
    /// SS.D/B (32-bit stack outside 64-bit mode).
    pub ss_big: bool,
    /// Segment bases: ES, CS, SS, DS, FS, GS.
    pub seg_base: [u64; 6],
    /// IDTR (base, limit), GDTR (base, limit).
    pub idtr: (u64, u16),
    /// GDTR.
    pub gdtr: (u64, u16),
    /// LDTR selector.
    pub ldtr: u16,
    /// TR selector.
    pub tr: u16,
    /// CR0.
    pub cr0: u64,
    /// CR2, CR3, CR4 and CR8 (see [`emulate`] on QEMU's READ_CR0 reports).
    pub cr2: u64,
    /// CR3.
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// CR8 (the TPR).
    pub cr8: u64,
}

/// What the instruction does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Effect {
    /// Instruction length.
    pub len: u8,
    /// Register write: (register, value, size in bytes; 4 zero-extends).
    pub reg: Option<(Gpr, u64, u8)>,
    /// Memory write: (linear address, bytes, count).
    pub mem: Option<(u64, [u8; 10], u8)>,
    /// Memory read needed first (POPF): (linear address, size).
    pub read: Option<(u64, u8)>,
    /// New RSP.
    pub rsp: Option<u64>,
}

/// Why an instruction cannot be emulated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmuError {
    /// Not the instruction the intercept named, or truncated.
    Undecodable,
}

struct Prefixes {
    len: usize,
    opsize: bool,
    addrsize: bool,
    seg: Option<usize>,
    rex: u8,
}

fn prefixes(b: &[u8], cs: CodeSize) -> Prefixes {
    let mut p = Prefixes { len: 0, opsize: false, addrsize: false, seg: None, rex: 0 };
    while p.len < b.len() && is_legacy_prefix(b[p.len]) {
        match b[p.len] {
            0x66 => p.opsize = true,
            0x67 => p.addrsize = true,
            0x26 => p.seg = Some(0),
            0x2e => p.seg = Some(1),
            0x36 => p.seg = Some(2),
            0x3e => p.seg = Some(3),
            0x64 => p.seg = Some(4),
            0x65 => p.seg = Some(5),
            _ => {}
        }
        p.len += 1;
    }
    if cs == CodeSize::Bits64 && p.len < b.len() && b[p.len] & 0xf0 == 0x40 {
        p.rex = b[p.len];
        p.len += 1;
    }
    p
}

fn opsize(cs: CodeSize, p: &Prefixes) -> u8 {
    match cs {
        CodeSize::Bits64 if p.rex & 8 != 0 => 8,
        CodeSize::Bits16 => if p.opsize { 4 } else { 2 },
        _ => if p.opsize { 2 } else { 4 },
    }
}

/// A ModRM operand: a register or a memory address (linear).
enum Operand {
    Reg(Gpr),
    Mem(u64),
}

/// Decodes ModRM at `b[i]` and computes the operand. Returns (operand, reg
/// field, bytes consumed).
fn modrm(b: &[u8], i: usize, cs: CodeSize, p: &Prefixes, s: &State, insn_end_extra: usize) -> Result<(Operand, u8, usize), EmuError> {
    let m = *b.get(i).ok_or(EmuError::Undecodable)?;
    let md = m >> 6;
    let reg = (m >> 3) & 7;
    let rm = m & 7;
    let rex_b = if p.rex & 1 != 0 { 8 } else { 0 };
    if md == 3 {
        return Ok((Operand::Reg(Gpr::from_num(rm | rex_b)), reg, 1));
    }
    let asize = match cs {
        CodeSize::Bits16 => if p.addrsize { 4 } else { 2 },
        CodeSize::Bits32 => if p.addrsize { 2 } else { 4 },
        CodeSize::Bits64 => if p.addrsize { 4 } else { 8 },
    };
    let r = |n: u8| s.regs[Gpr::from_num(n)];
    let sx8 = |x: u8| x as i8 as i64 as u64;
    let mut used = 1;
    let mut default_seg = 3; // DS
    let offset: u64;
    if asize == 2 {
        // APM vol. 3 table 1-12 (16-bit addressing).
        let (bx, bp, si, di) = (s.regs[Gpr::Rbx], s.regs[Gpr::Rbp], s.regs[Gpr::Rsi], s.regs[Gpr::Rdi]);
        let (base, ss) = match rm {
            0 => (bx.wrapping_add(si), false),
            1 => (bx.wrapping_add(di), false),
            2 => (bp.wrapping_add(si), true),
            3 => (bp.wrapping_add(di), true),
            4 => (si, false),
            5 => (di, false),
            6 => (bp, true),
            _ => (bx, false),
        };
        let disp = match (md, rm) {
            (0, 6) => {
                let d = u16::from_le_bytes([*b.get(i + 1).ok_or(EmuError::Undecodable)?, *b.get(i + 2).ok_or(EmuError::Undecodable)?]);
                used += 2;
                return Ok((Operand::Mem(seg_base(s, p, 3).wrapping_add(u64::from(d))), reg, used));
            }
            (1, _) => {
                used += 1;
                sx8(*b.get(i + 1).ok_or(EmuError::Undecodable)?)
            }
            (2, _) => {
                used += 2;
                u64::from(u16::from_le_bytes([*b.get(i + 1).ok_or(EmuError::Undecodable)?, *b.get(i + 2).ok_or(EmuError::Undecodable)?]))
            }
            _ => 0,
        };
        if ss {
            default_seg = 2;
        }
        offset = base.wrapping_add(disp) & 0xffff;
    } else {
        let rex_x = if p.rex & 2 != 0 { 8 } else { 0 };
        let mut base_val: u64;
        let mut rip_rel = false;
        if rm == 4 {
            let sib = *b.get(i + 1).ok_or(EmuError::Undecodable)?;
            used += 1;
            let scale = sib >> 6;
            let index = ((sib >> 3) & 7) | rex_x;
            let base = (sib & 7) | rex_b;
            let idx_val = if index == 4 { 0 } else { r(index) << scale };
            base_val = if sib & 7 == 5 && md == 0 {
                let d = i32::from_le_bytes(b.get(i + 2..i + 6).ok_or(EmuError::Undecodable)?.try_into().unwrap());
                used += 4;
                d as i64 as u64
            } else {
                if base & 7 == 4 || base & 7 == 5 {
                    default_seg = 2; // rSP/rBP-based: SS
                }
                r(base)
            };
            base_val = base_val.wrapping_add(idx_val);
        } else if rm == 5 && md == 0 {
            let d = i32::from_le_bytes(b.get(i + 1..i + 5).ok_or(EmuError::Undecodable)?.try_into().unwrap());
            used += 4;
            base_val = d as i64 as u64;
            rip_rel = cs == CodeSize::Bits64;
        } else {
            if rm == 5 {
                default_seg = 2;
            }
            base_val = r(rm | rex_b);
        }
        let disp = match md {
            1 => {
                let d = sx8(*b.get(i + used).ok_or(EmuError::Undecodable)?);
                used += 1;
                d
            }
            2 => {
                let d = i32::from_le_bytes(b.get(i + used..i + used + 4).ok_or(EmuError::Undecodable)?.try_into().unwrap()) as i64 as u64;
                used += 4;
                d
            }
            _ => 0,
        };
        let mut off = base_val.wrapping_add(disp);
        if rip_rel {
            off = off.wrapping_add(s.rip).wrapping_add((i + used + insn_end_extra) as u64);
        }
        offset = if asize == 4 { off & 0xffff_ffff } else { off };
    }
    Ok((Operand::Mem(seg_base(s, p, default_seg).wrapping_add(offset)), reg, used))
}

fn seg_base(s: &State, p: &Prefixes, default: usize) -> u64 {
    let seg = p.seg.unwrap_or(default);
    if s.cs == Some(CodeSize::Bits64) {
        // Only FS and GS have bases in 64-bit mode.
        if seg >= 4 {
            s.seg_base[seg]
        } else {
            0
        }
    } else {
        s.seg_base[seg] & 0xffff_ffff
    }
}

/// The linear address of INVLPG's memory operand (`0F 01 /7`, mod != 3)
/// at the start of `b`: segment base plus the effective address masked to
/// the address size, wrapping at 4 GiB outside 64-bit mode (the decode
/// assist of APM vol. 2 15.8.3). `None` for other bytes (INVLPGA, SWAPGS
/// and RDTSCP share the opcode with mod = 3).
pub fn invlpg_address(b: &[u8], s: &State) -> Option<u64> {
    let cs = s.cs?;
    let p = prefixes(b, cs);
    let i = p.len;
    if b.get(i..i + 2)? != [0x0f, 0x01] {
        return None;
    }
    let m = *b.get(i + 2)?;
    if m >> 6 == 3 || (m >> 3) & 7 != 7 {
        return None;
    }
    match modrm(b, i + 2, cs, &p, s, 0).ok()? {
        (Operand::Mem(a), _, used) if i + 2 + used <= 15 => Some(if cs == CodeSize::Bits64 { a } else { a & 0xffff_ffff }),
        _ => None,
    }
}

/// Emulates the intercepted instruction at the start of `b` for intercept
/// `exit_code` (an `exit::*` code). POPF returns an effect with `read` set:
/// the caller reads those bytes and calls [`popf_complete`].
pub fn emulate(exit_code: u64, b: &[u8], s: &State) -> Result<Effect, EmuError> {
    use crate::exit;
    let cs = s.cs.ok_or(EmuError::Undecodable)?;
    let p = prefixes(b, cs);
    let i = p.len;
    let op = |k: usize| b.get(i + k).copied().ok_or(EmuError::Undecodable);
    let osz = opsize(cs, &p);
    let mut e = Effect { len: 0, reg: None, mem: None, read: None, rsp: None };
    match exit_code {
        exit::IDTR_READ | exit::GDTR_READ => {
            // SIDT 0F 01 /1, SGDT 0F 01 /0: 2-byte limit, then the base (8
            // bytes in 64-bit mode, else 4).
            if op(0)? != 0x0f || op(1)? != 0x01 {
                return Err(EmuError::Undecodable);
            }
            let (operand, reg, used) = modrm(b, i + 2, cs, &p, s, 0)?;
            let want = if exit_code == exit::IDTR_READ { 1 } else { 0 };
            let Operand::Mem(la) = operand else { return Err(EmuError::Undecodable) };
            if reg != want {
                return Err(EmuError::Undecodable);
            }
            let (base, limit) = if exit_code == exit::IDTR_READ { s.idtr } else { s.gdtr };
            let mut data = [0u8; 10];
            data[..2].copy_from_slice(&limit.to_le_bytes());
            data[2..].copy_from_slice(&base.to_le_bytes());
            let n = if cs == CodeSize::Bits64 { 10 } else { 6 };
            e.mem = Some((la, data, n));
            e.len = (i + 2 + used) as u8;
        }
        exit::LDTR_READ | exit::TR_READ | exit::READ_CR0 if op(0)? == 0x0f && (op(1)? == 0x00 || op(1)? == 0x01) => {
            // SLDT 0F 00 /0, STR 0F 00 /1, SMSW 0F 01 /4.
            let (operand, reg, used) = modrm(b, i + 2, cs, &p, s, 0)?;
            let (value, ok) = match (exit_code, op(1)?, reg) {
                (exit::LDTR_READ, 0x00, 0) => (u64::from(s.ldtr), true),
                (exit::TR_READ, 0x00, 1) => (u64::from(s.tr), true),
                (exit::READ_CR0, 0x01, 4) => (s.cr0, true),
                _ => (0, false),
            };
            if !ok {
                return Err(EmuError::Undecodable);
            }
            match operand {
                // A memory destination is always 16 bits.
                Operand::Mem(la) => {
                    let mut d = [0u8; 10];
                    d[..2].copy_from_slice(&(value as u16).to_le_bytes());
                    e.mem = Some((la, d, 2));
                }
                // A register destination takes the operand size; 32-bit
                // writes zero-extend (SMSW: CR0 bits beyond 15 follow).
                Operand::Reg(r) => {
                    let v = if exit_code == exit::READ_CR0 { value } else { value & 0xffff };
                    e.reg = Some((r, v, osz));
                }
            }
            e.len = (i + 2 + used) as u8;
        }
        exit::READ_CR0 => {
            // MOV r, CRn: 0F 20 /r, always a register operand of the mode's
            // width. Only CR0 reads are intercepted, but QEMU >= 9.1 TCG
            // reports any MOV from a CR as READ_CR0 while the CR0 read
            // intercept is set (docs/architecture.md, "QEMU TCG"), so CR2/3/4/8 are
            // emulated too.
            if op(0)? != 0x0f || op(1)? != 0x20 {
                return Err(EmuError::Undecodable);
            }
            let m = op(2)?;
            let crn = ((m >> 3) & 7) | if p.rex & 4 != 0 { 8 } else { 0 };
            let val = match crn {
                0 => s.cr0,
                2 => s.cr2,
                3 => s.cr3,
                4 => s.cr4,
                8 => s.cr8,
                _ => return Err(EmuError::Undecodable),
            };
            let r = (m & 7) | if p.rex & 1 != 0 { 8 } else { 0 };
            let size = if cs == CodeSize::Bits64 { 8 } else { 4 };
            e.reg = Some((Gpr::from_num(r), val, size));
            e.len = (i + 3) as u8;
        }
        exit::PUSHF => {
            if op(0)? != 0x9c {
                return Err(EmuError::Undecodable);
            }
            let size = if cs == CodeSize::Bits64 { if p.opsize { 2 } else { 8 } } else { osz };
            // The pushed image has VM and RF clear (APM vol. 3 PUSHF).
            let v = s.rflags & !(rflags::RF | rflags::VM);
            let (la, rsp) = stack(s, cs, -(i64::from(size)));
            let mut d = [0u8; 10];
            d[..8].copy_from_slice(&v.to_le_bytes());
            e.mem = Some((la, d, size));
            e.rsp = Some(rsp);
            e.len = (i + 1) as u8;
        }
        exit::POPF => {
            if op(0)? != 0x9d {
                return Err(EmuError::Undecodable);
            }
            let size = if cs == CodeSize::Bits64 { if p.opsize { 2 } else { 8 } } else { osz };
            let (la, _) = stack(s, cs, 0);
            let (_, rsp) = stack(s, cs, i64::from(size));
            e.read = Some((la, size));
            e.rsp = Some(rsp);
            e.len = (i + 1) as u8;
        }
        exit::RDTSC => {
            if op(0)? != 0x0f || op(1)? != 0x31 {
                return Err(EmuError::Undecodable);
            }
            e.len = (i + 2) as u8;
        }
        _ => return Err(EmuError::Undecodable),
    }
    Ok(e)
}

/// The stack address after moving rSP by `delta`, and the new rSP (16-bit
/// stacks wrap within SP and keep the upper bits).
fn stack(s: &State, cs: CodeSize, delta: i64) -> (u64, u64) {
    let rsp = s.regs[Gpr::Rsp];
    match cs {
        CodeSize::Bits64 => {
            let n = rsp.wrapping_add(delta as u64);
            (n, n)
        }
        _ if s.ss_big => {
            let n = (rsp as u32).wrapping_add(delta as u32) as u64;
            ((s.seg_base[2] & 0xffff_ffff).wrapping_add(n) & 0xffff_ffff, (rsp & !0xffff_ffff) | n)
        }
        _ => {
            let n = (rsp as u16).wrapping_add(delta as u16) as u64;
            ((s.seg_base[2] & 0xffff_ffff).wrapping_add(n) & 0xffff_ffff, (rsp & !0xffff) | n)
        }
    }
}

/// RFLAGS after POPF popped `value` (`size` bytes) at CPL `cpl` (APM vol. 3
/// POPF): RF is cleared; VM, VIF and VIP keep their values; IOPL changes only
/// at CPL 0; IF only when CPL <= IOPL; a 16-bit POPF changes bits 15:0 only;
/// bit 1 is always set and reserved bits stay clear.
pub fn popf_complete(old: u64, value: u64, size: u8, cpl: u8, real_mode: bool) -> u64 {
    use rflags::*;
    const WRITABLE: u64 = CF | PF | AF | ZF | SF | TF | IF | DF | OF | IOPL | NT | AC | ID;
    let iopl = ((old & IOPL) >> 12) as u8;
    let mut mask = WRITABLE;
    if !real_mode && cpl > 0 {
        mask &= !IOPL;
        if cpl > iopl {
            mask &= !IF;
        }
    }
    if size == 2 {
        mask &= 0xffff;
    }
    let new = (old & !mask) | (value & mask);
    (new & !RF) | FIXED
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit;

    fn st64() -> State {
        let mut s = State { cs: Some(CodeSize::Bits64), ..Default::default() };
        s.idtr = (0xffff_8000_0010_0000, 0xfff);
        s.gdtr = (0x1f0000, 0x1f);
        s.ldtr = 0x28;
        s.tr = 0x40;
        s.cr0 = 0x8005_0033;
        s.rflags = 0x246 | (1 << 16);
        s.rip = 0x1000;
        s.regs[Gpr::Rsp] = 0x8000;
        s.regs[Gpr::Rbx] = 0x2000;
        s
    }

    #[test]
    fn policy_bytes() {
        let p = Policy { instructions: bits::SIDT | bits::POPF, exceptions: 1 << 13 };
        assert_eq!(Policy::from_bytes(&p.to_bytes()), Ok(p));
        let mut b = p.to_bytes();
        b[0] = 0xff;
        b[1] = 0xff;
        assert!(Policy::from_bytes(&b).is_err());
        let mut b = p.to_bytes();
        b[8] = 0x0a; // #DB and #BP
        assert!(Policy::from_bytes(&b).is_err());
        let mut b = p.to_bytes();
        b[20] = 1;
        assert!(Policy::from_bytes(&b).is_err());
    }

    #[test]
    fn sidt_sgdt() {
        let s = st64();
        // sidt [rbx+8]: 0F 01 4B 08
        let e = emulate(exit::IDTR_READ, &[0x0f, 0x01, 0x4b, 0x08], &s).unwrap();
        assert_eq!(e.len, 4);
        let (la, d, n) = e.mem.unwrap();
        assert_eq!((la, n), (0x2008, 10));
        assert_eq!(&d[..2], &0xfffu16.to_le_bytes());
        assert_eq!(&d[2..], &0xffff_8000_0010_0000u64.to_le_bytes());
        // sgdt [rip+0x10] in 64-bit mode: 0F 01 05 10 00 00 00 -> rip + 7 + 0x10
        let e = emulate(exit::GDTR_READ, &[0x0f, 0x01, 0x05, 0x10, 0, 0, 0], &s).unwrap();
        assert_eq!(e.mem.unwrap().0, 0x1000 + 7 + 0x10);
        // 16-bit: sidt [bp+si+4] uses SS
        let mut r = State { cs: Some(CodeSize::Bits16), ..Default::default() };
        r.regs[Gpr::Rbp] = 0x100;
        r.regs[Gpr::Rsi] = 0x20;
        r.seg_base = [0, 0, 0x5000, 0x7000, 0, 0];
        let e = emulate(exit::IDTR_READ, &[0x0f, 0x01, 0x4a, 0x04], &r).unwrap();
        assert_eq!(e.mem.unwrap().0, 0x5000 + 0x124);
        assert_eq!(e.mem.unwrap().2, 6);
        // the wrong /digit is not this instruction
        assert!(emulate(exit::IDTR_READ, &[0x0f, 0x01, 0x03], &s).is_err());
    }

    #[test]
    fn sldt_str_smsw_movcr0() {
        let s = st64();
        // sldt eax: 0F 00 C0 -> reg 0, zero-extended 32-bit write
        assert_eq!(emulate(exit::LDTR_READ, &[0x0f, 0x00, 0xc0], &s).unwrap().reg, Some((Gpr::Rax, 0x28, 4)));
        // str word [rbx]: 0F 00 0B
        let e = emulate(exit::TR_READ, &[0x0f, 0x00, 0x0b], &s).unwrap();
        assert_eq!((e.mem.unwrap().0, e.mem.unwrap().2), (0x2000, 2));
        // smsw rax (REX.W): 48 0F 01 E0
        assert_eq!(emulate(exit::READ_CR0, &[0x48, 0x0f, 0x01, 0xe0], &s).unwrap().reg, Some((Gpr::Rax, 0x8005_0033, 8)));
        // smsw [rbx]: stores 16 bits
        let e = emulate(exit::READ_CR0, &[0x0f, 0x01, 0x23], &s).unwrap();
        assert_eq!(&e.mem.unwrap().1[..2], &0x0033u16.to_le_bytes());
        // mov r9, cr0: 41 0F 20 C1
        assert_eq!(emulate(exit::READ_CR0, &[0x41, 0x0f, 0x20, 0xc1], &s).unwrap().reg, Some((Gpr::R9, 0x8005_0033, 8)));
        assert_eq!(emulate(exit::READ_CR0, &[0x41, 0x0f, 0x20, 0xc1], &s).unwrap().len, 4);
        // mov rax, cr2 reported as READ_CR0 (QEMU TCG): emulated as a CR2 read
        let mut s2 = s;
        s2.cr2 = 0x1234;
        assert_eq!(emulate(exit::READ_CR0, &[0x0f, 0x20, 0xd0], &s2).unwrap().reg, Some((Gpr::Rax, 0x1234, 8)));
        // CR5 does not exist
        assert!(emulate(exit::READ_CR0, &[0x0f, 0x20, 0xe8], &s).is_err());
    }

    #[test]
    fn pushf_popf() {
        let s = st64();
        let e = emulate(exit::PUSHF, &[0x9c], &s).unwrap();
        assert_eq!(e.rsp, Some(0x7ff8));
        let (la, d, n) = e.mem.unwrap();
        assert_eq!((la, n), (0x7ff8, 8));
        assert_eq!(u64::from_le_bytes(d[..8].try_into().unwrap()), 0x246); // RF cleared
        let e = emulate(exit::POPF, &[0x66, 0x9d], &s).unwrap();
        assert_eq!(e.read, Some((0x8000, 2)));
        assert_eq!(e.rsp, Some(0x8002));
        // 16-bit stack wraps in SP.
        let mut r = State { cs: Some(CodeSize::Bits16), ..Default::default() };
        r.regs[Gpr::Rsp] = 0x1_0000;
        r.seg_base[2] = 0x3000;
        let e = emulate(exit::PUSHF, &[0x9c], &r).unwrap();
        assert_eq!(e.rsp, Some(0x1_fffe));
        assert_eq!(e.mem.unwrap().0, 0x3000 + 0xfffe);
    }

    #[test]
    fn popf_rules() {
        // CPL 0 may change IF and IOPL; RF cleared; bit 1 set.
        assert_eq!(popf_complete(0x2, 0x3200 | (1 << 16), 8, 0, false), 0x3202);
        // CPL 3 with IOPL 0: IF and IOPL unchanged.
        assert_eq!(popf_complete(0x202, 0x3001, 8, 3, false), 0x203);
        // CPL 3 with IOPL 3: IF may change.
        assert_eq!(popf_complete(0x3202, 0x3000, 8, 3, false), 0x3002);
        // 16-bit POPF keeps the upper half (AC, ID).
        assert_eq!(popf_complete(0x4_0202 | (1 << 21), 0, 2, 0, false), 0x4_0002 | (1 << 21));
        // VM, VIF, VIP are never written; reserved bits stay clear.
        assert_eq!(popf_complete(0x2, (1 << 17) | (1 << 19) | (1 << 20) | (1 << 3) | (1 << 30), 8, 0, false), 0x2);
    }
}
