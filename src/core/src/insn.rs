// SPDX-License-Identifier: GPL-2.0
//! Instruction-length decoding for the instructions L0 skips after emulating
//! them. Without NRIPS (QEMU TCG has none) the VMCB gives no next RIP, so L0
//! fetches the bytes at CS:RIP and decodes prefixes and opcode itself.

/// Instructions whose intercepts L0 completes by skipping them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Known {
    /// `0F A2`.
    Cpuid,
    /// `F4`.
    Hlt,
    /// `0F 32`.
    Rdmsr,
    /// `0F 30`.
    Wrmsr,
    /// `0F 01 D9`.
    Vmmcall,
    /// `0F 01 D1`.
    Xsetbv,
    /// `0F 08`.
    Invd,
    /// `0F 09`.
    Wbinvd,
    /// `0F 31`.
    Rdtsc,
    /// `0F 01 D8`..`0F 01 DF`: VMRUN, VMMCALL, VMLOAD, VMSAVE, STGI, CLGI,
    /// SKINIT, INVLPGA (the third byte).
    Svm(u8),
}

impl Known {
    fn opcode(self) -> &'static [u8] {
        match self {
            Known::Cpuid => &[0x0f, 0xa2],
            Known::Hlt => &[0xf4],
            Known::Rdmsr => &[0x0f, 0x32],
            Known::Wrmsr => &[0x0f, 0x30],
            Known::Vmmcall => &[0x0f, 0x01, 0xd9],
            Known::Xsetbv => &[0x0f, 0x01, 0xd1],
            Known::Invd => &[0x0f, 0x08],
            Known::Wbinvd => &[0x0f, 0x09],
            Known::Rdtsc => &[0x0f, 0x31],
            Known::Svm(b) => match b {
                0xd8 => &[0x0f, 0x01, 0xd8],
                0xda => &[0x0f, 0x01, 0xda],
                0xdb => &[0x0f, 0x01, 0xdb],
                0xdc => &[0x0f, 0x01, 0xdc],
                0xdd => &[0x0f, 0x01, 0xdd],
                0xdf => &[0x0f, 0x01, 0xdf],
                _ => &[0x0f, 0x01, 0xd9],
            },
        }
    }
}

/// Whether `b` is a legacy prefix (APM vol. 3 1.2).
pub const fn is_legacy_prefix(b: u8) -> bool {
    matches!(b, 0x66 | 0x67 | 0x2e | 0x3e | 0x26 | 0x36 | 0x64 | 0x65 | 0xf0 | 0xf2 | 0xf3)
}

/// Length of the instruction in `bytes` if it is `which` (with any legacy
/// prefixes, and a REX prefix in 64-bit mode); `None` if the bytes are not
/// that instruction or exceed 15 bytes.
pub fn length_of(bytes: &[u8], which: Known, long_mode: bool) -> Option<usize> {
    let mut i = 0;
    while i < bytes.len() && is_legacy_prefix(bytes[i]) {
        i += 1;
    }
    if long_mode && i < bytes.len() && bytes[i] & 0xf0 == 0x40 {
        i += 1;
    }
    let op = which.opcode();
    let end = i + op.len();
    (end <= 15 && bytes.get(i..end) == Some(op)).then_some(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths() {
        assert_eq!(length_of(&[0x0f, 0xa2, 0x90], Known::Cpuid, false), Some(2));
        assert_eq!(length_of(&[0xf4], Known::Hlt, false), Some(1));
        assert_eq!(length_of(&[0x66, 0xf4], Known::Hlt, false), Some(2));
        assert_eq!(length_of(&[0x48, 0x0f, 0x32], Known::Rdmsr, true), Some(3));
        // REX is an instruction (DEC/INC) outside 64-bit mode.
        assert_eq!(length_of(&[0x48, 0x0f, 0x32], Known::Rdmsr, false), None);
        assert_eq!(length_of(&[0x0f, 0x01, 0xd9], Known::Vmmcall, true), Some(3));
        assert_eq!(length_of(&[0x0f, 0x01, 0xd1], Known::Xsetbv, true), Some(3));
        assert_eq!(length_of(&[0x0f, 0x01, 0xd9], Known::Xsetbv, true), None);
        assert_eq!(length_of(&[0x0f], Known::Cpuid, true), None);
        assert_eq!(length_of(&[0x0f, 0x01, 0xd8], Known::Svm(0xd8), true), Some(3));
        assert_eq!(length_of(&[0x0f, 0x01, 0xdc], Known::Svm(0xdd), true), None);
        assert_eq!(length_of(&[0x66; 14].iter().chain(&[0x0f, 0xa2]).copied().collect::<Vec<_>>(), Known::Cpuid, false), None);
        assert_eq!(length_of(&[0x66; 13].iter().chain(&[0x0f, 0xa2]).copied().collect::<Vec<_>>(), Known::Cpuid, false), Some(15));
    }
}
