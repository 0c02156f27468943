// SPDX-License-Identifier: GPL-2.0
//! The MTRRs a vCPU offers (AMD APM vol. 2 7.7, "Memory-Type Range
//! Registers"): MTRRcap, MTRRdefType, the eleven fixed-range MTRRs and eight
//! variable-range pairs, kept per vCPU and readable/writable by the guest
//! (RDMSR/WRMSR) and by `KVM_GET/SET_MSRS` with KVM's validity rules
//! (`arch/x86/kvm/mtrr.c`). With nested paging the guest's memory types
//! come from its PAT and page tables combined with the host's (APM 15.25.8);
//! the MTRR values are state the guest firmware and OS program and read
//! back, which is what KVM keeps them for on AMD too.

/// MTRRcap (0FEh), read-only.
pub const MTRRCAP: u32 = 0xfe;
/// MTRRdefType (2FFh).
pub const DEF_TYPE: u32 = 0x2ff;
/// MTRRphysBase0 (200h); base n at 200h + 2n, mask n at 201h + 2n.
pub const PHYS_BASE0: u32 = 0x200;
/// Variable-range pairs offered (MTRRcap.VCNT).
pub const NR_VAR: usize = 8;
/// The fixed-range MTRRs, in order: 64K_00000, 16K_80000, 16K_A0000,
/// 4K_C0000 .. 4K_F8000 (APM vol. 2 7.7.2).
pub const FIXED: [u32; 11] = [0x250, 0x258, 0x259, 0x268, 0x269, 0x26a, 0x26b, 0x26c, 0x26d, 0x26e, 0x26f];
/// MTRRcap as offered: VCNT = 8, FIX (bit 8), WC (bit 10), no SMRR.
pub const MTRRCAP_VALUE: u64 = 0x500 | NR_VAR as u64;

/// Whether `index` is one of the MTRR MSRs (so that nothing else handles it).
pub const fn is_mtrr(index: u32) -> bool {
    index == MTRRCAP || index == DEF_TYPE || (index >= PHYS_BASE0 && index <= 0x26f)
}

/// A memory type an MTRR may hold: UC, WC, WT, WP, WB (0, 1, 4, 5, 6;
/// 2, 3 and 7 up are reserved, APM vol. 2 7.7.1).
const fn valid_type(t: u64) -> bool {
    t < 8 && (1u64 << t) & 0x73 != 0
}

/// The MTRR state of one vCPU (zero at creation: MTRRs disabled, as KVM).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mtrrs {
    /// MTRRdefType.
    pub def_type: u64,
    /// The fixed-range MTRRs in [`FIXED`] order.
    pub fixed: [u64; 11],
    /// MTRRphysBase/MTRRphysMask pairs, interleaved as their MSR numbers.
    pub var: [u64; 2 * NR_VAR],
}

/// Why a write is refused (#GP; `KVM_SET_MSRS` stops there).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MtrrError {
    /// Not an MTRR nsvm offers (a gap in 200h..26Fh, a variable pair past
    /// VCNT), or MTRRcap (read-only).
    Unknown,
    /// A reserved bit, a physical address bit at or above `phys_bits`, or a
    /// memory type that does not exist.
    Invalid,
}

impl Mtrrs {
    fn slot(&mut self, index: u32) -> Option<&mut u64> {
        if index == DEF_TYPE {
            return Some(&mut self.def_type);
        }
        if let Some(i) = FIXED.iter().position(|&m| m == index) {
            return Some(&mut self.fixed[i]);
        }
        let v = index.wrapping_sub(PHYS_BASE0) as usize;
        self.var.get_mut(v)
    }

    /// RDMSR: `None` for an index that is not an MTRR offered here.
    pub fn read(&mut self, index: u32) -> Option<u64> {
        if index == MTRRCAP {
            return Some(MTRRCAP_VALUE);
        }
        self.slot(index).map(|v| *v)
    }

    /// WRMSR with the rules of the APM (7.7.1-7.7.3) as KVM checks them:
    /// MTRRdefType only the type (7:0), FE (10) and E (11); every byte of a
    /// fixed-range MTRR a valid type; a variable base a valid type and no
    /// bit in 11:8 or at/above the guest's physical address width
    /// (`phys_bits`); a variable mask no bit in 10:0 or at/above that width.
    pub fn write(&mut self, index: u32, val: u64, phys_bits: u8) -> Result<(), MtrrError> {
        let above = if phys_bits >= 64 { 0 } else { u64::MAX << phys_bits };
        let ok = if index == DEF_TYPE {
            val & !0xcff == 0 && valid_type(val & 0xff)
        } else if FIXED.contains(&index) {
            (0..8).all(|i| valid_type((val >> (8 * i)) & 0xff))
        } else if index >= PHYS_BASE0 && ((index - PHYS_BASE0) as usize) < 2 * NR_VAR {
            if index & 1 == 0 {
                valid_type(val & 0xff) && val & (above | 0xf00) == 0
            } else {
                val & (above | 0x7ff) == 0
            }
        } else {
            return Err(MtrrError::Unknown);
        };
        if !ok {
            return Err(MtrrError::Invalid);
        }
        *self.slot(index).ok_or(MtrrError::Unknown)? = val;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_and_ranges() {
        let mut m = Mtrrs::default();
        assert_eq!(m.read(MTRRCAP), Some(0x508));
        assert_eq!(m.write(MTRRCAP, 0x508, 48), Err(MtrrError::Unknown));
        assert!(is_mtrr(0x210) && is_mtrr(0x2ff) && is_mtrr(0xfe) && !is_mtrr(0x270));
        // A gap of 200h..26Fh and pairs past VCNT are not MTRRs here.
        assert_eq!(m.read(0x210), None);
        assert_eq!(m.write(0x210, 0, 48), Err(MtrrError::Unknown));
        assert_eq!(m.read(0x251), None);
        assert_eq!(m.read(0x20f), Some(0));
    }

    #[test]
    fn validity() {
        let mut m = Mtrrs::default();
        m.write(DEF_TYPE, 0xc06, 48).unwrap();
        assert_eq!(m.read(DEF_TYPE), Some(0xc06));
        assert_eq!(m.write(DEF_TYPE, 0x1006, 48), Err(MtrrError::Invalid), "bit 12");
        assert_eq!(m.write(DEF_TYPE, 0x2, 48), Err(MtrrError::Invalid), "type 2");
        m.write(0x250, 0x0606_0606_0606_0606, 48).unwrap();
        assert_eq!(m.write(0x26f, 0x0606_0606_0606_0607, 48), Err(MtrrError::Invalid));
        assert_eq!(m.write(0x26f, 0x0306_0606_0606_0606, 48), Err(MtrrError::Invalid));
        // Variable: base 0xe000_0000 UC, mask 0xff_e000_0000 | valid.
        m.write(0x200, 0xe000_0000, 40).unwrap();
        m.write(0x201, 0xff_e000_0800, 40).unwrap();
        assert_eq!(m.read(0x201), Some(0xff_e000_0800));
        assert_eq!(m.write(0x200, 0x100_0000_0000, 40), Err(MtrrError::Invalid), "bit 40 with 40 address bits");
        assert_eq!(m.write(0x202, 0x100, 40), Err(MtrrError::Invalid), "bit 8 of a base");
        assert_eq!(m.write(0x203, 0x400, 40), Err(MtrrError::Invalid), "bit 10 of a mask");
        assert_eq!(m.write(0x204, 0x7, 40), Err(MtrrError::Invalid), "type 7");
        m.write(0x20e, 0x6, 40).unwrap();
        assert_eq!(m.read(0x20e), Some(6));
    }
}
