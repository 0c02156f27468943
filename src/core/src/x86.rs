// SPDX-License-Identifier: GPL-2.0
//! x86 architectural registers: the one vocabulary of the crate and the
//! module for CR0, CR4, RFLAGS, page-table entries and the general-purpose
//! registers (EFER is an MSR: `msr::efer`).
//!
//! Style rule of the crate: a register's bits are `pub const` masks in a
//! module named after the register (`cr0::PG`); `bitflags` types are for
//! sets that travel as values (CPUID feature sets). Nothing re-declares a
//! bit locally.

use core::ops::{Index, IndexMut};

/// CR0 bits (APM vol. 2 3.1.1).
pub mod cr0 {
    /// Protection enable.
    pub const PE: u64 = 1 << 0;
    /// Monitor coprocessor.
    pub const MP: u64 = 1 << 1;
    /// Emulation.
    pub const EM: u64 = 1 << 2;
    /// Task switched.
    pub const TS: u64 = 1 << 3;
    /// Extension type (reads as 1).
    pub const ET: u64 = 1 << 4;
    /// Numeric error.
    pub const NE: u64 = 1 << 5;
    /// Write protect.
    pub const WP: u64 = 1 << 16;
    /// Alignment mask.
    pub const AM: u64 = 1 << 18;
    /// Not write-through.
    pub const NW: u64 = 1 << 29;
    /// Cache disable.
    pub const CD: u64 = 1 << 30;
    /// Paging.
    pub const PG: u64 = 1 << 31;
}

/// CR4 bits (APM vol. 2 3.1.3).
pub mod cr4 {
    /// Virtual-8086 mode extensions.
    pub const VME: u64 = 1 << 0;
    /// Protected-mode virtual interrupts.
    pub const PVI: u64 = 1 << 1;
    /// Time stamp disable.
    pub const TSD: u64 = 1 << 2;
    /// Debugging extensions.
    pub const DE: u64 = 1 << 3;
    /// Page size extensions.
    pub const PSE: u64 = 1 << 4;
    /// Physical address extension.
    pub const PAE: u64 = 1 << 5;
    /// Machine check enable.
    pub const MCE: u64 = 1 << 6;
    /// Page global enable.
    pub const PGE: u64 = 1 << 7;
    /// Performance counter enable.
    pub const PCE: u64 = 1 << 8;
    /// FXSAVE/FXRSTOR support.
    pub const OSFXSR: u64 = 1 << 9;
    /// Unmasked SIMD exceptions.
    pub const OSXMMEXCPT: u64 = 1 << 10;
    /// User-mode instruction prevention.
    pub const UMIP: u64 = 1 << 11;
    /// 5-level paging.
    pub const LA57: u64 = 1 << 12;
    /// FSGSBASE instructions.
    pub const FSGSBASE: u64 = 1 << 16;
    /// Process-context identifiers.
    pub const PCIDE: u64 = 1 << 17;
    /// XSAVE and extended states.
    pub const OSXSAVE: u64 = 1 << 18;
    /// Supervisor-mode execution prevention.
    pub const SMEP: u64 = 1 << 20;
    /// Supervisor-mode access prevention.
    pub const SMAP: u64 = 1 << 21;
    /// Protection keys.
    pub const PKE: u64 = 1 << 22;
    /// Control-flow enforcement technology.
    pub const CET: u64 = 1 << 23;
    /// Bits defined on AMD processors (APM vol. 2 3.1.3); the others are MBZ.
    pub const DEFINED: u64 = VME | PVI | TSD | DE | PSE | PAE | MCE | PGE | PCE | OSFXSR | OSXMMEXCPT | UMIP
        | LA57 | FSGSBASE | PCIDE | OSXSAVE | SMEP | SMAP | PKE | CET;
}

/// RFLAGS bits (APM vol. 2 3.1.6).
pub mod rflags {
    /// Carry.
    pub const CF: u64 = 1 << 0;
    /// Bit 1, always 1.
    pub const FIXED: u64 = 1 << 1;
    /// Parity.
    pub const PF: u64 = 1 << 2;
    /// Auxiliary carry.
    pub const AF: u64 = 1 << 4;
    /// Zero.
    pub const ZF: u64 = 1 << 6;
    /// Sign.
    pub const SF: u64 = 1 << 7;
    /// Trap.
    pub const TF: u64 = 1 << 8;
    /// Interrupt enable.
    pub const IF: u64 = 1 << 9;
    /// Direction.
    pub const DF: u64 = 1 << 10;
    /// Overflow.
    pub const OF: u64 = 1 << 11;
    /// I/O privilege level (2 bits).
    pub const IOPL: u64 = 3 << 12;
    /// Nested task.
    pub const NT: u64 = 1 << 14;
    /// Resume.
    pub const RF: u64 = 1 << 16;
    /// Virtual-8086 mode.
    pub const VM: u64 = 1 << 17;
    /// Alignment check.
    pub const AC: u64 = 1 << 18;
    /// Virtual interrupt.
    pub const VIF: u64 = 1 << 19;
    /// Virtual interrupt pending.
    pub const VIP: u64 = 1 << 20;
    /// CPUID available.
    pub const ID: u64 = 1 << 21;
    /// Every defined bit; the others read as zero and must be written as zero.
    pub const DEFINED: u64 = CF | FIXED | PF | AF | ZF | SF | TF | IF | DF | OF | IOPL | NT | RF | VM | AC | VIF | VIP | ID;
}

/// A general-purpose register by name, numbered as the processor encodes
/// it (ModRM/REX, APM vol. 3 1.4.3): the index into [`Gprs`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Gpr {
    /// RAX.
    Rax = 0,
    /// RCX.
    Rcx = 1,
    /// RDX.
    Rdx = 2,
    /// RBX.
    Rbx = 3,
    /// RSP.
    Rsp = 4,
    /// RBP.
    Rbp = 5,
    /// RSI.
    Rsi = 6,
    /// RDI.
    Rdi = 7,
    /// R8.
    R8 = 8,
    /// R9.
    R9 = 9,
    /// R10.
    R10 = 10,
    /// R11.
    R11 = 11,
    /// R12.
    R12 = 12,
    /// R13.
    R13 = 13,
    /// R14.
    R14 = 14,
    /// R15.
    R15 = 15,
}

impl Gpr {
    /// All sixteen, in encoding order.
    pub const ALL: [Gpr; 16] = [
        Gpr::Rax, Gpr::Rcx, Gpr::Rdx, Gpr::Rbx, Gpr::Rsp, Gpr::Rbp, Gpr::Rsi, Gpr::Rdi,
        Gpr::R8, Gpr::R9, Gpr::R10, Gpr::R11, Gpr::R12, Gpr::R13, Gpr::R14, Gpr::R15,
    ];

    /// The register with encoding `n` (0..=15; higher bits ignored).
    pub const fn from_num(n: u8) -> Gpr {
        Gpr::ALL[(n & 15) as usize]
    }
}

/// The sixteen general-purpose registers, indexed by [`Gpr`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gprs(pub [u64; 16]);

impl Index<Gpr> for Gprs {
    type Output = u64;
    fn index(&self, r: Gpr) -> &u64 {
        &self.0[r as usize]
    }
}

impl IndexMut<Gpr> for Gprs {
    fn index_mut(&mut self, r: Gpr) -> &mut u64 {
        &mut self.0[r as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpr_numbers_follow_the_encoding() {
        for (i, r) in Gpr::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
            assert_eq!(Gpr::from_num(i as u8), *r);
        }
        let mut g = Gprs::default();
        g[Gpr::Rbx] = 7;
        assert_eq!(g.0[3], 7);
    }

    #[test]
    fn cr4_defined_matches_the_apm() {
        // Bits 13-15 and 19 are reserved on AMD (VMXE, SMXE, ..., KL).
        assert_eq!(cr4::DEFINED & (1 << 13 | 1 << 14 | 1 << 15 | 1 << 19), 0);
        assert_eq!(cr4::DEFINED, 0x00ff_1fff & !(1 << 19) | 0);
        assert_eq!(rflags::DEFINED, 0x3f_7fd7);
    }
}
