// SPDX-License-Identifier: GPL-2.0
//! VMCB intercept vectors (APM vol. 2 table B-1, offsets 000h–017h).
//!
//! The six 32-bit vectors are addressed as one 192-bit set whose bit index is
//! the `SVM_EXIT_*` code the intercept produces (APM appendix C): CR reads
//! 0x00–0x0F, CR writes 0x10–0x1F, DR reads 0x20–0x2F, DR writes 0x30–0x3F,
//! exceptions 0x40–0x5F, vector 3 at 0x60, vector 4 at 0x80, vector 5 at 0xA0.

use bitflags::bitflags;

use crate::exit;

/// Number of 32-bit intercept vectors in the VMCB.
pub const VECTORS: usize = 6;
/// Number of intercept bits (bit index = exit code).
pub const BITS: u32 = (VECTORS * 32) as u32;

/// The intercept vectors of a VMCB as one bit set indexed by exit code.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Intercepts(pub [u32; VECTORS]);

impl Intercepts {
    /// No intercept set.
    pub const NONE: Self = Self([0; VECTORS]);

    /// Whether `code` names an intercept bit.
    pub const fn is_intercept_code(code: u64) -> bool {
        code < BITS as u64
    }

    /// Returns whether the intercept for exit code `code` is set (false for
    /// codes that have no intercept bit, such as NPF).
    pub const fn test(&self, code: u64) -> bool {
        Self::is_intercept_code(code) && self.0[(code / 32) as usize] & (1 << (code % 32)) != 0
    }

    /// Sets the intercept for `code`; codes without an intercept bit are ignored.
    pub fn set(&mut self, code: u64) {
        if Self::is_intercept_code(code) {
            self.0[(code / 32) as usize] |= 1 << (code % 32);
        }
    }

    /// Clears the intercept for `code`.
    pub fn clear(&mut self, code: u64) {
        if Self::is_intercept_code(code) {
            self.0[(code / 32) as usize] &= !(1 << (code % 32));
        }
    }

    /// The union of two sets (what L0 and L1 both want intercepted).
    #[must_use]
    pub fn union(&self, other: &Self) -> Self {
        let mut r = *self;
        for (a, b) in r.0.iter_mut().zip(other.0.iter()) {
            *a |= *b;
        }
        r
    }

    /// Intercept of CR `n` reads (exit code `READ_CR0 + n`).
    pub const fn cr_read(n: u8) -> u64 {
        exit::READ_CR0 + (n & 15) as u64
    }
    /// Intercept of CR `n` writes.
    pub const fn cr_write(n: u8) -> u64 {
        exit::WRITE_CR0 + (n & 15) as u64
    }
    /// Intercept of DR `n` reads.
    pub const fn dr_read(n: u8) -> u64 {
        exit::READ_DR0 + (n & 15) as u64
    }
    /// Intercept of DR `n` writes.
    pub const fn dr_write(n: u8) -> u64 {
        exit::WRITE_DR0 + (n & 15) as u64
    }
    /// Intercept of exception `vector`.
    pub const fn exception(vector: u8) -> u64 {
        exit::EXCP_BASE + (vector & 31) as u64
    }

    /// The exception bitmap (vector 2, offset 008h).
    pub const fn exceptions(&self) -> u32 {
        self.0[2]
    }
    /// Vector 3 as flags.
    pub const fn misc1(&self) -> Misc1 {
        Misc1::from_bits_retain(self.0[3])
    }
    /// Vector 4 as flags.
    pub const fn misc2(&self) -> Misc2 {
        Misc2::from_bits_retain(self.0[4])
    }
    /// Vector 5 as flags.
    pub const fn misc3(&self) -> Misc3 {
        Misc3::from_bits_retain(self.0[5])
    }
    /// Iterates over the exit codes whose intercept is set.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        (0..BITS as u64).filter(move |c| self.test(*c))
    }
}

bitflags! {
    /// Intercept vector 3 (offset 00Ch, APM table B-1): bit n = exit code 0x60 + n.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct Misc1: u32 {
        /// Physical INTR.
        const INTR = 1 << 0;
        /// Physical NMI.
        const NMI = 1 << 1;
        /// SMI.
        const SMI = 1 << 2;
        /// INIT.
        const INIT = 1 << 3;
        /// Virtual interrupt.
        const VINTR = 1 << 4;
        /// CR0 writes that change bits other than TS or MP.
        const CR0_SEL_WRITE = 1 << 5;
        /// Reads of IDTR (SIDT).
        const IDTR_READ = 1 << 6;
        /// Reads of GDTR (SGDT).
        const GDTR_READ = 1 << 7;
        /// Reads of LDTR (SLDT).
        const LDTR_READ = 1 << 8;
        /// Reads of TR (STR).
        const TR_READ = 1 << 9;
        /// Writes of IDTR (LIDT).
        const IDTR_WRITE = 1 << 10;
        /// Writes of GDTR (LGDT).
        const GDTR_WRITE = 1 << 11;
        /// Writes of LDTR (LLDT).
        const LDTR_WRITE = 1 << 12;
        /// Writes of TR (LTR).
        const TR_WRITE = 1 << 13;
        /// RDTSC.
        const RDTSC = 1 << 14;
        /// RDPMC.
        const RDPMC = 1 << 15;
        /// PUSHF.
        const PUSHF = 1 << 16;
        /// POPF.
        const POPF = 1 << 17;
        /// CPUID.
        const CPUID = 1 << 18;
        /// RSM.
        const RSM = 1 << 19;
        /// IRET.
        const IRET = 1 << 20;
        /// Software interrupt (INTn).
        const SWINT = 1 << 21;
        /// INVD.
        const INVD = 1 << 22;
        /// PAUSE.
        const PAUSE = 1 << 23;
        /// HLT.
        const HLT = 1 << 24;
        /// INVLPG.
        const INVLPG = 1 << 25;
        /// INVLPGA.
        const INVLPGA = 1 << 26;
        /// IN/OUT accesses to selected ports (IOPM).
        const IOIO_PROT = 1 << 27;
        /// RDMSR/WRMSR accesses to selected MSRs (MSRPM).
        const MSR_PROT = 1 << 28;
        /// Task switches.
        const TASK_SWITCH = 1 << 29;
        /// FERR_FREEZE.
        const FERR_FREEZE = 1 << 30;
        /// Shutdown events.
        const SHUTDOWN = 1 << 31;
    }

    /// Intercept vector 4 (offset 010h, APM table B-1): bit n = exit code 0x80 + n.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct Misc2: u32 {
        /// VMRUN (must be set for VMRUN to succeed, APM 15.5.1).
        const VMRUN = 1 << 0;
        /// VMMCALL.
        const VMMCALL = 1 << 1;
        /// VMLOAD.
        const VMLOAD = 1 << 2;
        /// VMSAVE.
        const VMSAVE = 1 << 3;
        /// STGI.
        const STGI = 1 << 4;
        /// CLGI.
        const CLGI = 1 << 5;
        /// SKINIT.
        const SKINIT = 1 << 6;
        /// RDTSCP.
        const RDTSCP = 1 << 7;
        /// ICEBP.
        const ICEBP = 1 << 8;
        /// WBINVD and WBNOINVD.
        const WBINVD = 1 << 9;
        /// MONITOR/MONITORX.
        const MONITOR = 1 << 10;
        /// MWAIT/MWAITX unconditionally.
        const MWAIT = 1 << 11;
        /// MWAIT/MWAITX if the monitor hardware is armed.
        const MWAIT_COND = 1 << 12;
        /// XSETBV.
        const XSETBV = 1 << 13;
        /// RDPRU.
        const RDPRU = 1 << 14;
        /// Writes of EFER (trap, after the write finished).
        const EFER_WRITE_TRAP = 1 << 15;
        /// Writes of CR0..CR15 (trap, after the write finished): bits 16..31.
        const CR_WRITE_TRAPS = 0xffff << 16;
    }

    /// Intercept vector 5 (offset 014h, APM table B-1): bit n = exit code 0xA0 + n.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct Misc3: u32 {
        /// All INVLPGB instructions.
        const INVLPGB = 1 << 0;
        /// Only illegally specified INVLPGB.
        const INVLPGB_ILLEGAL = 1 << 1;
        /// INVPCID.
        const INVPCID = 1 << 2;
        /// MCOMMIT.
        const MCOMMIT = 1 << 3;
        /// TLBSYNC.
        const TLBSYNC = 1 << 4;
        /// Bus lock (when the bus lock threshold counter reaches zero).
        const BUS_LOCK = 1 << 5;
        /// HLT while a virtual interrupt is not pending.
        const IDLE_HLT = 1 << 6;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(vector: usize, flag: u32) -> u64 {
        (vector as u64) * 32 + flag.trailing_zeros() as u64
    }

    #[test]
    fn bit_index_is_exit_code() {
        // Each named flag, placed in its vector, equals its exit code.
        let v3: &[(Misc1, u64)] = &[
            (Misc1::INTR, exit::INTR), (Misc1::NMI, exit::NMI), (Misc1::SMI, exit::SMI),
            (Misc1::INIT, exit::INIT), (Misc1::VINTR, exit::VINTR),
            (Misc1::CR0_SEL_WRITE, exit::CR0_SEL_WRITE), (Misc1::IDTR_READ, exit::IDTR_READ),
            (Misc1::GDTR_READ, exit::GDTR_READ), (Misc1::LDTR_READ, exit::LDTR_READ),
            (Misc1::TR_READ, exit::TR_READ), (Misc1::IDTR_WRITE, exit::IDTR_WRITE),
            (Misc1::GDTR_WRITE, exit::GDTR_WRITE), (Misc1::LDTR_WRITE, exit::LDTR_WRITE),
            (Misc1::TR_WRITE, exit::TR_WRITE), (Misc1::RDTSC, exit::RDTSC),
            (Misc1::RDPMC, exit::RDPMC), (Misc1::PUSHF, exit::PUSHF), (Misc1::POPF, exit::POPF),
            (Misc1::CPUID, exit::CPUID), (Misc1::RSM, exit::RSM), (Misc1::IRET, exit::IRET),
            (Misc1::SWINT, exit::SWINT), (Misc1::INVD, exit::INVD), (Misc1::PAUSE, exit::PAUSE),
            (Misc1::HLT, exit::HLT), (Misc1::INVLPG, exit::INVLPG),
            (Misc1::INVLPGA, exit::INVLPGA), (Misc1::IOIO_PROT, exit::IOIO),
            (Misc1::MSR_PROT, exit::MSR), (Misc1::TASK_SWITCH, exit::TASK_SWITCH),
            (Misc1::FERR_FREEZE, exit::FERR_FREEZE), (Misc1::SHUTDOWN, exit::SHUTDOWN),
        ];
        assert_eq!(v3.len(), 32);
        for (f, c) in v3 {
            assert_eq!(code_of(3, f.bits()), *c, "{f:?}");
        }
        let v4: &[(Misc2, u64)] = &[
            (Misc2::VMRUN, exit::VMRUN), (Misc2::VMMCALL, exit::VMMCALL),
            (Misc2::VMLOAD, exit::VMLOAD), (Misc2::VMSAVE, exit::VMSAVE),
            (Misc2::STGI, exit::STGI), (Misc2::CLGI, exit::CLGI), (Misc2::SKINIT, exit::SKINIT),
            (Misc2::RDTSCP, exit::RDTSCP), (Misc2::ICEBP, exit::ICEBP),
            (Misc2::WBINVD, exit::WBINVD), (Misc2::MONITOR, exit::MONITOR),
            (Misc2::MWAIT, exit::MWAIT), (Misc2::MWAIT_COND, exit::MWAIT_COND),
            (Misc2::XSETBV, exit::XSETBV), (Misc2::RDPRU, exit::RDPRU),
            (Misc2::EFER_WRITE_TRAP, exit::EFER_WRITE_TRAP),
        ];
        for (f, c) in v4 {
            assert_eq!(code_of(4, f.bits()), *c, "{f:?}");
        }
        assert_eq!(code_of(4, 1 << 16), exit::CR0_WRITE_TRAP);
        let v5: &[(Misc3, u64)] = &[
            (Misc3::INVLPGB, exit::INVLPGB), (Misc3::INVLPGB_ILLEGAL, exit::INVLPGB_ILLEGAL),
            (Misc3::INVPCID, exit::INVPCID), (Misc3::MCOMMIT, exit::MCOMMIT),
            (Misc3::TLBSYNC, exit::TLBSYNC), (Misc3::BUS_LOCK, exit::BUS_LOCK),
            (Misc3::IDLE_HLT, exit::IDLE_HLT),
        ];
        for (f, c) in v5 {
            assert_eq!(code_of(5, f.bits()), *c, "{f:?}");
        }
    }

    #[test]
    fn set_test_clear_and_union() {
        let mut a = Intercepts::NONE;
        a.set(exit::CPUID);
        a.set(Intercepts::exception(14));
        a.set(Intercepts::cr_write(3));
        a.set(exit::NPF); // no intercept bit: ignored
        assert!(a.test(exit::CPUID));
        assert!(a.misc1().contains(Misc1::CPUID));
        assert_eq!(a.exceptions(), 1 << 14);
        assert_eq!(a.0[0], 1 << 19);
        assert!(!a.test(exit::NPF));
        assert!(!a.test(exit::INVALID));
        assert_eq!(a.iter().collect::<Vec<_>>(), vec![0x13, 0x4e, exit::CPUID]);
        let mut b = Intercepts::NONE;
        b.set(exit::VMRUN);
        b.set(exit::CPUID);
        let u = a.union(&b);
        assert!(u.test(exit::VMRUN) && u.test(exit::CPUID) && u.test(0x4e));
        assert_eq!(u.iter().count(), 4);
        a.clear(exit::CPUID);
        assert!(!a.test(exit::CPUID));
        assert!(u.misc2().contains(Misc2::VMRUN));
        assert!(u.misc3().is_empty());
    }
}
