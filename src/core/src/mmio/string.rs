// SPDX-License-Identifier: GPL-2.0
//! String instructions with an element on MMIO (APM vol. 3 LODS, MOVS,
//! STOS): their decoding and the register effects of one element. As in
//! KVM's emulator, each element on MMIO is one access for userspace
//! (`KVM_EXIT_MMIO` of the element's size); MOVS between two MMIO
//! addresses is a read, then a write of the data read.

use super::{load_into, mask, CodeSize, DecodeError, Extend, Reg};
use crate::insn::is_legacy_prefix;
use crate::x86::{Gpr, Gprs};

/// Which string instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StrKind {
    /// MOVS: DS:rSI (or the override) to ES:rDI.
    Movs,
    /// STOS: rAX to ES:rDI.
    Stos,
    /// LODS: DS:rSI (or the override) to rAX.
    Lods,
}

/// A decoded LODS/MOVS/STOS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StrAccess {
    /// Instruction length.
    pub len: u8,
    /// Element size in bytes.
    pub size: u8,
    /// Which instruction.
    pub kind: StrKind,
    /// REP (F3; F2 repeats these three the same way: only CMPS and SCAS
    /// look at ZF).
    pub rep: bool,
    /// Address size in bytes (2, 4, 8): rSI/rDI/rCX are used modulo it.
    pub addr_size: u8,
}

impl StrAccess {
    /// The mask of the address-size part of rSI/rDI/rCX.
    pub const fn addr_mask(&self) -> u64 {
        match self.addr_size {
            2 => 0xffff,
            4 => 0xffff_ffff,
            _ => u64::MAX,
        }
    }

    /// The instruction reads its source at rSI (MOVS, LODS).
    pub const fn uses_si(&self) -> bool {
        matches!(self.kind, StrKind::Movs | StrKind::Lods)
    }

    /// The instruction writes its destination at rDI (MOVS, STOS).
    pub const fn uses_di(&self) -> bool {
        matches!(self.kind, StrKind::Movs | StrKind::Stos)
    }

    /// The linear address of an element: the segment's base plus the
    /// address-size part of the index register, truncated to 32 bits
    /// outside 64-bit mode (APM vol. 1 2.2; KVM's `linearize`).
    pub const fn linear(&self, seg_base: u64, index: u64, long: bool) -> u64 {
        let la = seg_base.wrapping_add(index & self.addr_mask());
        if long {
            la
        } else {
            la & 0xffff_ffff
        }
    }

    /// The element STOS stores: the low `size` bytes of rAX.
    pub fn stos_value(&self, regs: &Gprs) -> u64 {
        regs[Gpr::Rax] & mask(self.size)
    }

    /// LODS: the element read goes to AL/AX/EAX/RAX (EAX zero-extends,
    /// AL and AX merge, as any register write of that size).
    pub fn load_acc(&self, regs: &mut Gprs, data: u64) {
        load_into(regs, Reg::new(Gpr::Rax), Extend::None, self.size, data);
    }

    /// The register effects of one element done: rSI and/or rDI move by
    /// the element size (down with `df`), rCX counts down with REP; only
    /// the address-size part of each changes, a 32-bit result
    /// zero-extends (KVM's `register_address_increment`). Returns whether
    /// RIP moves past the instruction now: only without REP. With REP the
    /// instruction runs again, also after its last element — KVM's
    /// emulator checks the count before an element, never after one, so
    /// the processor itself ends it with rCX = 0 (no access then).
    pub fn advance(&self, regs: &mut Gprs, df: bool) -> bool {
        let merge = |old: u64, new: u64| match self.addr_size {
            2 => (old & !0xffff) | (new & 0xffff),
            4 => new & 0xffff_ffff,
            _ => new,
        };
        let step = u64::from(self.size);
        for (on, r) in [(self.uses_si(), Gpr::Rsi), (self.uses_di(), Gpr::Rdi)] {
            if on {
                let moved = if df { regs[r].wrapping_sub(step) } else { regs[r].wrapping_add(step) };
                regs[r] = merge(regs[r], moved);
            }
        }
        if self.rep {
            regs[Gpr::Rcx] = merge(regs[Gpr::Rcx], regs[Gpr::Rcx].wrapping_sub(1));
        }
        !self.rep
    }

    /// RFLAGS as KVM's emulator writes them back when it exits for an
    /// element's MMIO write or completes the instruction: RF set while a
    /// REP instruction is in progress (it runs again: no instruction
    /// breakpoint on it), clear otherwise. (Between the elements of a REP
    /// that KVM runs without leaving its emulator it writes nothing back:
    /// the caller leaves RFLAGS alone there.)
    pub const fn rflags_after(&self, rflags: u64) -> u64 {
        if self.rep {
            rflags | crate::x86::rflags::RF
        } else {
            rflags & !crate::x86::rflags::RF
        }
    }
}

/// Decodes MOVS (A4/A5), STOS (AA/AB) or LODS (AC/AD) with their prefixes.
pub fn decode_string(b: &[u8], cs: CodeSize) -> Result<StrAccess, DecodeError> {
    let mut i = 0;
    let (mut opsize_override, mut addrsize_override, mut rep) = (false, false, false);
    while i < b.len() && is_legacy_prefix(b[i]) {
        match b[i] {
            0x66 => opsize_override = true,
            0x67 => addrsize_override = true,
            0xf2 | 0xf3 => rep = true,
            _ => {}
        }
        i += 1;
    }
    let mut rex_w = false;
    if cs == CodeSize::Bits64 && i < b.len() && b[i] & 0xf0 == 0x40 {
        rex_w = b[i] & 8 != 0;
        i += 1;
    }
    let op = *b.get(i).ok_or(DecodeError::Truncated)?;
    let wide = match cs {
        CodeSize::Bits64 if rex_w => 8,
        CodeSize::Bits16 => if opsize_override { 4 } else { 2 },
        _ => if opsize_override { 2 } else { 4 },
    };
    let (kind, size) = match op {
        0xa4 => (StrKind::Movs, 1),
        0xa5 => (StrKind::Movs, wide),
        0xaa => (StrKind::Stos, 1),
        0xab => (StrKind::Stos, wide),
        0xac => (StrKind::Lods, 1),
        0xad => (StrKind::Lods, wide),
        _ => return Err(DecodeError::Unsupported),
    };
    let addr_size = match cs {
        CodeSize::Bits64 => if addrsize_override { 4 } else { 8 },
        CodeSize::Bits32 => if addrsize_override { 2 } else { 4 },
        CodeSize::Bits16 => if addrsize_override { 4 } else { 2 },
    };
    Ok(StrAccess { len: (i + 1) as u8, size, kind, rep, addr_size })
}

/// Address size in bits of INS/OUTS (6C-6F) in `b`, from the code size and
/// an address-size prefix (APM vol. 3 1.2.3); `None` when `b` is not one
/// (a fetch that failed, code changed meanwhile). KVM's emulator takes it
/// from the instruction as well; EXITINFO1's A16/A32/A64 (APM vol. 2
/// 15.10.2) is only the fallback: under QEMU's TCG a 64-bit REP INSB came
/// with none of the three set (userspace_io_test).
pub fn string_io_addr_bits(b: &[u8], cs: CodeSize) -> Option<u8> {
    let mut i = 0;
    let mut addrsize_override = false;
    while i < b.len() && is_legacy_prefix(b[i]) {
        addrsize_override |= b[i] == 0x67;
        i += 1;
    }
    if cs == CodeSize::Bits64 && i < b.len() && b[i] & 0xf0 == 0x40 {
        i += 1;
    }
    if i >= 15 || !matches!(b.get(i), Some(0x6c..=0x6f)) {
        return None;
    }
    Some(match cs {
        CodeSize::Bits64 => if addrsize_override { 32 } else { 64 },
        CodeSize::Bits32 => if addrsize_override { 16 } else { 32 },
        CodeSize::Bits16 => if addrsize_override { 32 } else { 16 },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::x86::Gpr::*;

    #[test]
    fn string_io_address_size() {
        use CodeSize::*;
        // rep insb in 64-bit code (userspace_io_test): 64-bit addresses.
        assert_eq!(string_io_addr_bits(&[0xf3, 0x6c], Bits64), Some(64));
        assert_eq!(string_io_addr_bits(&[0x67, 0xf3, 0x6c], Bits64), Some(32));
        assert_eq!(string_io_addr_bits(&[0xf3, 0x48, 0x6f], Bits64), Some(64));
        assert_eq!(string_io_addr_bits(&[0x66, 0x6d], Bits32), Some(32));
        assert_eq!(string_io_addr_bits(&[0x67, 0x6e], Bits32), Some(16));
        assert_eq!(string_io_addr_bits(&[0xf3, 0x6f], Bits16), Some(16));
        assert_eq!(string_io_addr_bits(&[0x67, 0x6f], Bits16), Some(32));
        // Not INS/OUTS (REX outside 64-bit code, other opcodes, nothing).
        assert_eq!(string_io_addr_bits(&[0x48, 0x6c], Bits32), None);
        assert_eq!(string_io_addr_bits(&[0xf3, 0xaa], Bits64), None);
        assert_eq!(string_io_addr_bits(&[], Bits64), None);
        assert_eq!(string_io_addr_bits(&[0x66; 15], Bits64), None);
    }

    #[test]
    fn movs_stos_lods() {
        let s = decode_string(&[0xf3, 0xaa], CodeSize::Bits16).unwrap();
        assert_eq!(s, StrAccess { len: 2, size: 1, kind: StrKind::Stos, rep: true, addr_size: 2 });
        assert_eq!(s.addr_mask(), 0xffff);
        let s = decode_string(&[0xf3, 0x48, 0xa5], CodeSize::Bits64).unwrap();
        assert_eq!((s.size, s.kind, s.rep, s.addr_size, s.len), (8, StrKind::Movs, true, 8, 3));
        let s = decode_string(&[0x26, 0x66, 0x67, 0xa5], CodeSize::Bits32).unwrap();
        assert_eq!((s.size, s.addr_size, s.rep, s.len), (2, 2, false, 4));
        assert_eq!(decode_string(&[0xab], CodeSize::Bits16).unwrap().size, 2);
        // LODS: AC byte, AD word/dword/qword by the operand size.
        assert_eq!(decode_string(&[0xac], CodeSize::Bits16), Ok(StrAccess { len: 1, size: 1, kind: StrKind::Lods, rep: false, addr_size: 2 }));
        assert_eq!(decode_string(&[0x66, 0xad], CodeSize::Bits16).unwrap().size, 4);
        assert_eq!(decode_string(&[0xad], CodeSize::Bits32).unwrap().size, 4);
        let s = decode_string(&[0xf2, 0x67, 0x48, 0xad], CodeSize::Bits64).unwrap();
        assert_eq!((s.size, s.kind, s.rep, s.addr_size, s.len), (8, StrKind::Lods, true, 4, 4));
        // A segment override is a prefix: FS LODSD in 64-bit code.
        assert_eq!(decode_string(&[0x64, 0xad], CodeSize::Bits64).unwrap().size, 4);
        // CMPS and SCAS are not handled.
        for op in [0xa6, 0xa7, 0xae, 0xaf] {
            assert_eq!(decode_string(&[op], CodeSize::Bits16), Err(DecodeError::Unsupported));
        }
        assert_eq!(decode_string(&[0xf3], CodeSize::Bits16), Err(DecodeError::Truncated));
        assert!(!StrAccess { kind: StrKind::Lods, ..s }.uses_di());
        assert!(!StrAccess { kind: StrKind::Stos, ..s }.uses_si());
        assert!(StrAccess { kind: StrKind::Movs, ..s }.uses_si() && StrAccess { kind: StrKind::Movs, ..s }.uses_di());
    }

    fn acc(kind: StrKind, size: u8, rep: bool, addr_size: u8) -> StrAccess {
        StrAccess { len: 1, size, kind, rep, addr_size }
    }

    #[test]
    fn advance_by_kind_direction_and_address_size() {
        let mut g = Gprs::default();
        g[Rsi] = 0x10;
        g[Rdi] = 0x20;
        // LODS moves rSI only, MOVS both, STOS rDI only.
        assert!(acc(StrKind::Lods, 4, false, 2).advance(&mut g, false));
        assert_eq!((g[Rsi], g[Rdi]), (0x14, 0x20));
        assert!(acc(StrKind::Movs, 2, false, 2).advance(&mut g, true));
        assert_eq!((g[Rsi], g[Rdi]), (0x12, 0x1e));
        assert!(acc(StrKind::Stos, 1, false, 2).advance(&mut g, false));
        assert_eq!((g[Rsi], g[Rdi]), (0x12, 0x1f));
        // 16-bit addresses wrap inside the low word, the rest kept.
        g[Rsi] = 0x1234_ffff;
        acc(StrKind::Lods, 1, false, 2).advance(&mut g, false);
        assert_eq!(g[Rsi], 0x1234_0000);
        g[Rsi] = 0xdead_0000_0000_0000;
        acc(StrKind::Lods, 2, false, 2).advance(&mut g, true);
        assert_eq!(g[Rsi], 0xdead_0000_0000_fffe);
        // 32-bit: carries into bit 16, zero-extends into bits 63:32.
        g[Rsi] = 0xffff_0000_0000_ffff;
        acc(StrKind::Lods, 1, false, 4).advance(&mut g, false);
        assert_eq!(g[Rsi], 0x1_0000);
        g[Rsi] = 0;
        acc(StrKind::Lods, 4, false, 4).advance(&mut g, true);
        assert_eq!(g[Rsi], 0xffff_fffc);
        // 64-bit: whole register.
        g[Rdi] = 0xffff_ffff_ffff_fff8;
        acc(StrKind::Stos, 8, false, 8).advance(&mut g, false);
        assert_eq!(g[Rdi], 0);
    }

    #[test]
    fn advance_counts_rcx_in_the_address_size() {
        let mut g = Gprs::default();
        g[Rcx] = 0x0005_0002;
        let s = acc(StrKind::Movs, 1, true, 2);
        // REP: RIP never moves with an element, the last one included.
        assert!(!s.advance(&mut g, false));
        assert_eq!(g[Rcx], 0x0005_0001);
        assert!(!s.advance(&mut g, false));
        assert_eq!(g[Rcx], 0x0005_0000);
        // 32-bit count: the upper half of RCX goes, bit 16 counts.
        g[Rcx] = 0xffff_ffff_0001_0000;
        assert!(!acc(StrKind::Lods, 1, true, 4).advance(&mut g, false));
        assert_eq!(g[Rcx], 0xffff);
        // 64-bit count.
        g[Rcx] = 1 << 40;
        assert!(!acc(StrKind::Stos, 1, true, 8).advance(&mut g, false));
        assert_eq!(g[Rcx], (1 << 40) - 1);
        g[Rcx] = 1;
        assert!(!acc(StrKind::Stos, 1, true, 8).advance(&mut g, false));
        assert_eq!(g[Rcx], 0);
        // Without REP, rCX is untouched and RIP moves.
        g[Rcx] = 7;
        assert!(acc(StrKind::Lods, 1, false, 2).advance(&mut g, false));
        assert_eq!(g[Rcx], 7);
    }

    #[test]
    fn rf_while_a_rep_runs() {
        assert_eq!(acc(StrKind::Movs, 1, true, 2).rflags_after(0x46), 0x1_0046);
        assert_eq!(acc(StrKind::Movs, 1, false, 2).rflags_after(0x1_0046), 0x46);
        assert_eq!(acc(StrKind::Lods, 1, true, 2).rflags_after(0x1_0002), 0x1_0002);
    }

    #[test]
    fn linear_addresses_and_values() {
        let s16 = acc(StrKind::Lods, 2, false, 2);
        assert_eq!(s16.linear(0x2_0000, 0x1234_fffe, false), 0x2_fffe);
        let s32 = acc(StrKind::Lods, 4, false, 4);
        // Outside 64-bit mode the sum wraps at 4 GiB.
        assert_eq!(s32.linear(0xffff_0000, 0x2_0000, false), 0x1_0000);
        assert_eq!(s32.linear(0, 0xdead_0000_0000_1000, false), 0x1000);
        let s64 = acc(StrKind::Lods, 8, false, 8);
        assert_eq!(s64.linear(0x1_0000_0000, 0x10, true), 0x1_0000_0010);
        // 32-bit addresses in 64-bit mode: the offset is 32 bits, FS/GS
        // bases add to it without truncation.
        assert_eq!(acc(StrKind::Lods, 8, false, 4).linear(0x7f00_0000_0000, 0xffff_ffff_0000_0010, true), 0x7f00_0000_0010);
        let mut g = Gprs::default();
        g[Rax] = 0x1122_3344_5566_7788;
        assert_eq!(acc(StrKind::Stos, 1, false, 2).stos_value(&g), 0x88);
        assert_eq!(acc(StrKind::Stos, 4, false, 2).stos_value(&g), 0x5566_7788);
        assert_eq!(acc(StrKind::Stos, 8, false, 8).stos_value(&g), 0x1122_3344_5566_7788);
        acc(StrKind::Lods, 1, false, 2).load_acc(&mut g, 0xffff_ff5a);
        assert_eq!(g[Rax], 0x1122_3344_5566_775a);
        acc(StrKind::Lods, 2, false, 2).load_acc(&mut g, 0xabcd);
        assert_eq!(g[Rax], 0x1122_3344_5566_abcd);
        acc(StrKind::Lods, 4, false, 2).load_acc(&mut g, 0x8000_0001);
        assert_eq!(g[Rax], 0x8000_0001);
        acc(StrKind::Lods, 8, false, 8).load_acc(&mut g, u64::MAX);
        assert_eq!(g[Rax], u64::MAX);
    }
}
