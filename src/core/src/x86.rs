// SPDX-License-Identifier: GPL-2.0
//! x86 architectural registers: the one vocabulary of the crate and the
//! module for CR0, CR4, RFLAGS, page-table entries ([`pte`] bits, [`Pte`]
//! values) and the general-purpose registers ([`Gpr`], [`Gprs`]). EFER is an
//! MSR: its bits are `msr::efer`; the PAT check is `msr::pat_valid`.
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

/// Page-table entry bits, shared by every level of long-mode and PAE tables
/// (APM vol. 2 5.3.3, 5.4), by the 32-bit legacy format for bits 7:0 (5.2),
/// and by nested page tables, which have the long-mode format (15.25.5).
pub mod pte {
    /// Present.
    pub const P: u64 = 1 << 0;
    /// Read/write: writes allowed when set.
    pub const RW: u64 = 1 << 1;
    /// User/supervisor: user accesses allowed when set.
    pub const US: u64 = 1 << 2;
    /// Page-level write-through.
    pub const PWT: u64 = 1 << 3;
    /// Page-level cache disable.
    pub const PCD: u64 = 1 << 4;
    /// Accessed.
    pub const A: u64 = 1 << 5;
    /// Dirty (leaf entries only).
    pub const D: u64 = 1 << 6;
    /// Page size: a large page at the PDPT (1 GiB) or PD (2 MiB, 4 MiB in
    /// 32-bit paging) level; PAT bit in a 4 KiB PTE.
    pub const PS: u64 = 1 << 7;
    /// Global (leaf entries only).
    pub const G: u64 = 1 << 8;
    /// No-execute (long mode and PAE; reserved unless EFER.NXE).
    pub const NX: u64 = 1 << 63;
    /// Physical address bits 51:12 of an entry (table or 4 KiB page base).
    pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

    /// The address bits of an entry beyond a physical address width of
    /// `phys_bits` (they are reserved, APM vol. 2 5.3.3): bits
    /// 51:`phys_bits`, 0 when the width is 52 or more.
    #[inline]
    pub const fn addr_reserved(phys_bits: u8) -> u64 {
        if phys_bits >= 52 {
            0
        } else {
            ADDR_MASK & !((1u64 << phys_bits) - 1)
        }
    }
}

/// One page-table entry (bits in [`pte`]). A plain value: the walkers read
/// it from table memory and look at it through these accessors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(transparent)]
pub struct Pte(pub u64);

impl Pte {
    /// The entry for a page or table at `addr` (bits 51:12 taken) with
    /// `flags` (a set of [`pte`] bits).
    #[inline]
    pub const fn new(addr: u64, flags: u64) -> Pte {
        Pte((addr & pte::ADDR_MASK) | flags)
    }
    /// Whether every bit of `mask` is set.
    #[inline]
    pub const fn has(self, mask: u64) -> bool {
        self.0 & mask == mask
    }
    /// P: present.
    #[inline]
    pub const fn present(self) -> bool {
        self.0 & pte::P != 0
    }
    /// R/W: writable.
    #[inline]
    pub const fn writable(self) -> bool {
        self.0 & pte::RW != 0
    }
    /// U/S: user accesses allowed.
    #[inline]
    pub const fn user(self) -> bool {
        self.0 & pte::US != 0
    }
    /// A: accessed.
    #[inline]
    pub const fn accessed(self) -> bool {
        self.0 & pte::A != 0
    }
    /// D: dirty.
    #[inline]
    pub const fn dirty(self) -> bool {
        self.0 & pte::D != 0
    }
    /// PS: large page (meaningful at the PDPT and PD levels).
    #[inline]
    pub const fn large(self) -> bool {
        self.0 & pte::PS != 0
    }
    /// G: global.
    #[inline]
    pub const fn global(self) -> bool {
        self.0 & pte::G != 0
    }
    /// NX: no-execute (only meaningful with EFER.NXE).
    #[inline]
    pub const fn nx(self) -> bool {
        self.0 & pte::NX != 0
    }
    /// Bits 51:12: the next table, or a 4 KiB page.
    #[inline]
    pub const fn addr(self) -> u64 {
        self.0 & pte::ADDR_MASK
    }
    /// The base of the page of `size` bytes (a power of two, 4 KiB or more)
    /// this leaf maps: bits 51:log2(`size`).
    #[inline]
    pub const fn page_base(self, size: u64) -> u64 {
        self.0 & pte::ADDR_MASK & !(size - 1)
    }
    /// The physical address `self` maps `addr` to, as a leaf of a page of
    /// `size` bytes: the page base plus `addr`'s offset in the page.
    #[inline]
    pub const fn translate(self, addr: u64, size: u64) -> u64 {
        self.page_base(size) | (addr & (size - 1))
    }
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

/// The sixteen general-purpose registers, indexed by [`Gpr`] (transparent:
/// the world switch addresses it as an array in encoding order).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(transparent)]
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
        assert_eq!(cr4::DEFINED, 0x00ff_1fff & !(1 << 19));
        assert_eq!(rflags::DEFINED, 0x3f_7fd7);
    }

    #[test]
    fn pte_accessors() {
        use pte::*;
        assert_eq!((P, RW, US, A, D, PS, G, NX), (1, 2, 4, 0x20, 0x40, 0x80, 0x100, 1 << 63));
        let e = Pte::new(0xdead_beef_f123, P | US | D | NX);
        assert_eq!(e.0, 0xdead_beef_f000 | 0x45 | 1 << 63);
        assert!(e.present() && e.user() && e.dirty() && e.nx());
        assert!(!e.writable() && !e.accessed() && !e.large() && !e.global());
        assert!(e.has(P | US) && !e.has(P | RW));
        let f = Pte(RW | A | PS | G);
        assert!(!f.present() && f.writable() && f.accessed() && f.large() && f.global());
        assert!(!f.user() && !f.dirty() && !f.nx());
        // The address is bits 51:12: low flags, bits 62:52 and NX are not part of it.
        assert_eq!(Pte(u64::MAX).addr(), 0x000f_ffff_ffff_f000);
        assert_eq!(Pte(0x7ff0_0000_0000_1fff).addr(), 0x1000);
        assert_eq!(Pte::new(1 << 52 | 0x5000, 0).0, 0x5000);
        // Large pages: the offset bits below the page size are not address.
        let big = Pte(0x4030_1000 | P | PS);
        assert_eq!(big.page_base(1 << 21), 0x4020_0000);
        assert_eq!(big.page_base(1 << 30), 0x4000_0000);
        assert_eq!(big.translate(0x12_3456, 1 << 21), 0x4032_3456);
        assert_eq!(Pte(0x9000 | P).translate(0xffff_8000_0040_1abc, 4096), 0x9abc);
        assert_eq!(addr_reserved(40), 0x000f_ff00_0000_0000);
        assert_eq!(addr_reserved(52), 0);
        assert_eq!(addr_reserved(64), 0);
    }
}
