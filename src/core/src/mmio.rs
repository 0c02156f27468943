// SPDX-License-Identifier: GPL-2.0
//! Decoding of the instructions that access MMIO, for `KVM_EXIT_MMIO`.
//! QEMU's TCG has no decode assists (APM 15.33.2), so after a nested page
//! fault outside RAM, L0 fetches the faulting instruction and decodes it: the
//! MOV family (88, 89, 8A, 8B, C6, C7, A0–A3) and MOVZX/MOVSX (0F B6/B7/BE/BF),
//! with legacy prefixes and REX, in 16-, 32- and 64-bit code (APM vol. 3
//! chapter 1 for the encoding). The GPA comes from the fault, so only the
//! operand size, direction, register/immediate operand and length matter.

use crate::insn::is_legacy_prefix;
use crate::x86::{Gpr, Gprs};

mod string;
pub use string::*;

/// A register operand: a general-purpose register (its low `size` bytes),
/// or one of the legacy high-byte registers AH, CH, DH, BH (`high8`, with
/// `gpr` RAX, RCX, RDX or RBX: bits 15:8 of it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reg {
    /// The register.
    pub gpr: Gpr,
    /// AH/CH/DH/BH.
    pub high8: bool,
}

impl Reg {
    /// `gpr` from its bit 0 (not a high-byte register).
    pub const fn new(gpr: Gpr) -> Reg {
        Reg { gpr, high8: false }
    }
}

/// How a value read from MMIO reaches its register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extend {
    /// Plain MOV: write `size` bytes with the architectural rules (8/16-bit
    /// merge, 32-bit zero-extends to 64).
    None,
    /// MOVZX to a register of `dst_size` bytes.
    Zero {
        /// Destination size.
        dst_size: u8,
    },
    /// MOVSX to a register of `dst_size` bytes.
    Sign {
        /// Destination size.
        dst_size: u8,
    },
}

/// What an MMIO instruction does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Load `size` bytes into a register.
    Read {
        /// Destination.
        dst: Reg,
        /// Extension.
        ext: Extend,
    },
    /// Store a register.
    WriteReg(Reg),
    /// Store an immediate.
    WriteImm(u64),
}

/// A decoded MMIO access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// Instruction length.
    pub len: u8,
    /// Bytes accessed.
    pub size: u8,
    /// What to do.
    pub op: Op,
}

/// Code size of the current code segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeSize {
    /// 16-bit (real mode, or CS.D = 0).
    Bits16,
    /// 32-bit (CS.D = 1).
    Bits32,
    /// 64-bit (CS.L = 1 in long mode).
    Bits64,
}

/// Why an instruction cannot be handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Ran out of bytes.
    Truncated,
    /// Not a supported MMIO instruction.
    Unsupported,
    /// The memory operand is a register (cannot fault on MMIO).
    NotMemory,
}

/// Decodes the instruction at the start of `b`.
pub fn decode(b: &[u8], cs: CodeSize) -> Result<Access, DecodeError> {
    let mut i = 0;
    let (mut opsize_override, mut addrsize_override) = (false, false);
    while i < b.len() && is_legacy_prefix(b[i]) {
        match b[i] {
            0x66 => opsize_override = true,
            0x67 => addrsize_override = true,
            _ => {}
        }
        i += 1;
    }
    let mut rex = 0u8;
    if cs == CodeSize::Bits64 && i < b.len() && b[i] & 0xf0 == 0x40 {
        rex = b[i];
        i += 1;
    }
    let rex_w = rex & 8 != 0;
    let opsize: u8 = match cs {
        CodeSize::Bits64 if rex_w => 8,
        CodeSize::Bits16 => if opsize_override { 4 } else { 2 },
        _ => if opsize_override { 2 } else { 4 },
    };
    let addrsize: u8 = match cs {
        CodeSize::Bits16 => if addrsize_override { 4 } else { 2 },
        CodeSize::Bits32 => if addrsize_override { 2 } else { 4 },
        CodeSize::Bits64 => if addrsize_override { 4 } else { 8 },
    };
    let byte = |k: usize| b.get(k).copied().ok_or(DecodeError::Truncated);
    let reg8 = |n: u8| -> Reg {
        if rex == 0 && (4..8).contains(&n) {
            Reg { gpr: Gpr::from_num(n - 4), high8: true }
        } else {
            Reg::new(Gpr::from_num(n))
        }
    };
    let op = byte(i)?;
    i += 1;
    let (op2, two_byte) = if op == 0x0f {
        let o = byte(i)?;
        i += 1;
        (o, true)
    } else {
        (op, false)
    };
    // moffs forms: no ModRM, an address of `addrsize` bytes.
    if !two_byte && (0xa0..=0xa3).contains(&op2) {
        let size = if op2 & 1 == 0 { 1 } else { opsize };
        let len = i + addrsize as usize;
        if len > b.len() {
            return Err(DecodeError::Truncated);
        }
        let acc = Reg::new(Gpr::Rax);
        let op = if op2 < 0xa2 { Op::Read { dst: acc, ext: Extend::None } } else { Op::WriteReg(acc) };
        return Ok(Access { len: len as u8, size, op });
    }
    let has_modrm = matches!((two_byte, op2), (false, 0x88 | 0x89 | 0x8a | 0x8b | 0xc6 | 0xc7) | (true, 0xb6 | 0xb7 | 0xbe | 0xbf));
    if !has_modrm {
        return Err(DecodeError::Unsupported);
    }
    let modrm = byte(i)?;
    i += 1;
    let md = modrm >> 6;
    let reg = ((modrm >> 3) & 7) | if rex & 4 != 0 { 8 } else { 0 };
    let full = Reg::new(Gpr::from_num(reg));
    let rm = modrm & 7;
    if md == 3 {
        return Err(DecodeError::NotMemory);
    }
    // Skip the addressing bytes (SIB, displacement): APM vol. 3 1.4, 1.5.
    if addrsize == 2 {
        i += match (md, rm) {
            (0, 6) => 2,
            (1, _) => 1,
            (2, _) => 2,
            _ => 0,
        };
    } else {
        let mut base = rm;
        if rm == 4 {
            base = byte(i)? & 7;
            i += 1;
        }
        i += match md {
            0 if rm == 5 || (rm == 4 && base == 5) => 4,
            1 => 1,
            2 => 4,
            _ => 0,
        };
    }
    let (size, op, imm_len) = match (two_byte, op2) {
        (false, 0x88) => (1, Op::WriteReg(reg8(reg)), 0),
        (false, 0x89) => (opsize, Op::WriteReg(full), 0),
        (false, 0x8a) => (1, Op::Read { dst: reg8(reg), ext: Extend::None }, 0),
        (false, 0x8b) => (opsize, Op::Read { dst: full, ext: Extend::None }, 0),
        (false, 0xc6) | (false, 0xc7) => {
            if (modrm >> 3) & 7 != 0 {
                return Err(DecodeError::Unsupported);
            }
            let size = if op2 == 0xc6 { 1 } else { opsize };
            let ilen = size.min(4) as usize;
            let mut imm = 0u64;
            for k in 0..ilen {
                imm |= u64::from(byte(i + k)?) << (8 * k);
            }
            if size == 8 {
                imm = imm as u32 as i32 as i64 as u64; // imm32 sign-extended
            }
            (size, Op::WriteImm(imm), ilen)
        }
        (true, 0xb6) | (true, 0xb7) | (true, 0xbe) | (true, 0xbf) => {
            let src = if op2 & 1 == 0 { 1 } else { 2 };
            let ext = if op2 < 0xbe { Extend::Zero { dst_size: opsize } } else { Extend::Sign { dst_size: opsize } };
            (src, Op::Read { dst: full, ext }, 0)
        }
        _ => return Err(DecodeError::Unsupported),
    };
    let len = i + imm_len;
    if len > b.len() || len > 15 {
        return Err(DecodeError::Truncated);
    }
    Ok(Access { len: len as u8, size, op })
}

/// The value a store writes: `size` bytes of register `r` (in `regs`).
pub fn store_value(regs: &Gprs, r: Reg, size: u8) -> u64 {
    let v = if r.high8 { regs[r.gpr] >> 8 } else { regs[r.gpr] };
    v & mask(size)
}

/// Applies a load of `data` (`size` bytes) to register `dst` of `regs`.
pub fn load_into(regs: &mut Gprs, dst: Reg, ext: Extend, size: u8, data: u64) {
    let data = data & mask(size);
    let (value, wsize) = match ext {
        Extend::None => (data, size),
        Extend::Zero { dst_size } => (data, dst_size),
        Extend::Sign { dst_size } => {
            let shift = 64 - 8 * u32::from(size);
            (((data << shift) as i64 >> shift) as u64, dst_size)
        }
    };
    let r = &mut regs[dst.gpr];
    *r = match (wsize, dst.high8) {
        (1, true) => (*r & !0xff00) | ((value & 0xff) << 8),
        (1, false) => (*r & !0xff) | (value & 0xff),
        (2, _) => (*r & !0xffff) | (value & 0xffff),
        (4, _) => value & 0xffff_ffff, // 32-bit writes zero-extend
        _ => value,
    };
}

pub(crate) const fn mask(size: u8) -> u64 {
    if size >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * size)) - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CodeSize::*;
    use Gpr::*;

    fn r(gpr: Gpr) -> Reg {
        Reg::new(gpr)
    }

    #[test]
    fn mov_forms() {
        // mov [rax], ecx
        assert_eq!(decode(&[0x89, 0x08], Bits64), Ok(Access { len: 2, size: 4, op: Op::WriteReg(r(Rcx)) }));
        // mov rdx, [rbx+0x10]
        assert_eq!(decode(&[0x48, 0x8b, 0x53, 0x10], Bits64), Ok(Access { len: 4, size: 8, op: Op::Read { dst: r(Rdx), ext: Extend::None } }));
        // mov r9w, [r8]  (66 45 8b 08)
        assert_eq!(decode(&[0x66, 0x45, 0x8b, 0x08], Bits64), Ok(Access { len: 4, size: 2, op: Op::Read { dst: r(R9), ext: Extend::None } }));
        // mov byte [rdi], ah (no REX: high byte)
        assert_eq!(decode(&[0x88, 0x27], Bits64), Ok(Access { len: 2, size: 1, op: Op::WriteReg(Reg { gpr: Rax, high8: true }) }));
        // mov byte [rax], bh: 7 without REX is BH, with REX DIL
        assert_eq!(decode(&[0x88, 0x38], Bits64).unwrap().op, Op::WriteReg(Reg { gpr: Rbx, high8: true }));
        assert_eq!(decode(&[0x40, 0x88, 0x38], Bits64).unwrap().op, Op::WriteReg(r(Rdi)));
        // with REX, 4 is SPL
        assert_eq!(decode(&[0x40, 0x88, 0x27], Bits64).unwrap().op, Op::WriteReg(r(Rsp)));
        // mov dword [rip+disp32], 0x12345678
        assert_eq!(decode(&[0xc7, 0x05, 1, 2, 3, 4, 0x78, 0x56, 0x34, 0x12], Bits64), Ok(Access { len: 10, size: 4, op: Op::WriteImm(0x1234_5678) }));
        // mov qword [rax], -1 (imm32 sign-extended)
        assert_eq!(decode(&[0x48, 0xc7, 0x00, 0xff, 0xff, 0xff, 0xff], Bits64).unwrap().op, Op::WriteImm(u64::MAX));
        // mov byte [rsp+rcx*4+0x80], 7: SIB + disp32
        assert_eq!(decode(&[0xc6, 0x84, 0x8c, 0x80, 0, 0, 0, 7], Bits64), Ok(Access { len: 8, size: 1, op: Op::WriteImm(7) }));
        // SIB with base=5 and mod=0: disp32
        assert_eq!(decode(&[0x8b, 0x04, 0x25, 0, 0x10, 0, 0], Bits64).unwrap().len, 7);
        // mov eax, [0xfee00020] moffs (64-bit address)
        assert_eq!(decode(&[0xa1, 0x20, 0, 0xe0, 0xfe, 0, 0, 0, 0], Bits64), Ok(Access { len: 9, size: 4, op: Op::Read { dst: r(Rax), ext: Extend::None } }));
        // 16-bit: mov [bx+si+0x1234], ax ; mov [0x1000], al (moffs16)
        assert_eq!(decode(&[0x89, 0x80, 0x34, 0x12], Bits16), Ok(Access { len: 4, size: 2, op: Op::WriteReg(r(Rax)) }));
        assert_eq!(decode(&[0xa2, 0x00, 0x10], Bits16), Ok(Access { len: 3, size: 1, op: Op::WriteReg(r(Rax)) }));
        assert_eq!(decode(&[0x8b, 0x0e, 0x00, 0x10], Bits16).unwrap().len, 4); // mov cx, [0x1000]
        // 32-bit with 66: mov [eax], dx
        assert_eq!(decode(&[0x66, 0x89, 0x10], Bits32), Ok(Access { len: 3, size: 2, op: Op::WriteReg(r(Rdx)) }));
        // 16-bit with 66 67: mov [eax], edx
        assert_eq!(decode(&[0x66, 0x67, 0x89, 0x10], Bits16), Ok(Access { len: 4, size: 4, op: Op::WriteReg(r(Rdx)) }));
    }

    #[test]
    fn movzx_movsx_and_errors() {
        assert_eq!(decode(&[0x0f, 0xb6, 0x07], Bits64), Ok(Access { len: 3, size: 1, op: Op::Read { dst: r(Rax), ext: Extend::Zero { dst_size: 4 } } }));
        assert_eq!(decode(&[0x48, 0x0f, 0xbf, 0x07], Bits64), Ok(Access { len: 4, size: 2, op: Op::Read { dst: r(Rax), ext: Extend::Sign { dst_size: 8 } } }));
        assert_eq!(decode(&[0x89, 0xc8], Bits64), Err(DecodeError::NotMemory));
        assert_eq!(decode(&[0x01, 0x08], Bits64), Err(DecodeError::Unsupported)); // add [rax], ecx
        assert_eq!(decode(&[0xc7, 0x08, 0, 0, 0, 0], Bits64), Err(DecodeError::Unsupported)); // /1
        assert_eq!(decode(&[0x89], Bits64), Err(DecodeError::Truncated));
        assert_eq!(decode(&[0xc7, 0x00, 1, 2], Bits64), Err(DecodeError::Truncated));
    }

    #[test]
    fn register_effects() {
        let mut g = Gprs::default();
        g[Rax] = 0xffff_ffff_ffff_ffff;
        load_into(&mut g, r(Rax), Extend::None, 1, 0x12);
        assert_eq!(g[Rax], 0xffff_ffff_ffff_ff12);
        load_into(&mut g, Reg { gpr: Rax, high8: true }, Extend::None, 1, 0x34);
        assert_eq!(g[Rax], 0xffff_ffff_ffff_3412);
        load_into(&mut g, r(Rax), Extend::None, 2, 0xabcd);
        assert_eq!(g[Rax], 0xffff_ffff_ffff_abcd);
        load_into(&mut g, r(Rax), Extend::None, 4, 0x8000_0000);
        assert_eq!(g[Rax], 0x8000_0000);
        load_into(&mut g, r(Rbx), Extend::Sign { dst_size: 8 }, 1, 0x80);
        assert_eq!(g[Rbx], 0xffff_ffff_ffff_ff80);
        load_into(&mut g, r(Rbx), Extend::Sign { dst_size: 4 }, 2, 0x8000);
        assert_eq!(g[Rbx], 0xffff_8000);
        load_into(&mut g, r(Rbx), Extend::Zero { dst_size: 2 }, 1, 0xff);
        assert_eq!(g[Rbx], 0xffff_00ff);
        // Only the named register changes.
        assert_eq!(g.0, [0x8000_0000, 0, 0, 0xffff_00ff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        g[Rcx] = 0x1122_3344_5566_7788;
        assert_eq!(store_value(&g, r(Rcx), 2), 0x7788);
        assert_eq!(store_value(&g, Reg { gpr: Rcx, high8: true }, 1), 0x77);
        assert_eq!(store_value(&g, r(Rcx), 8), 0x1122_3344_5566_7788);
        g[R15] = 0xfedc;
        assert_eq!(store_value(&g, r(R15), 1), 0xdc);
    }
}
