// SPDX-License-Identifier: GPL-2.0
//! Instruction-length decoding for the instructions L0 skips after emulating
//! them. Without NRIPS (QEMU TCG has none) the VMCB gives no next RIP, so L0
//! fetches the bytes at CS:RIP and decodes prefixes and opcode itself; the
//! same decoding gives L1 the next RIP of an L2 exit (emulated NRIPS,
//! [`next_rip`]).

use crate::exit::{self, SvmInsn};

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
    /// `F3 90` (the F3 counts as a legacy prefix, so the opcode is `90`).
    Pause,
    /// An SVM instruction: `0F 01` and its ModRM byte ([`SvmInsn::modrm`]).
    Svm(SvmInsn),
    /// `0F 01 C8` (MONITOR; not MONITORX, which nsvm does not offer).
    Monitor,
    /// `0F 01 C9` (MWAIT; not MWAITX).
    Mwait,
}

impl Known {
    /// The opcode bytes (after prefixes) and how many of the three are used.
    fn opcode(self) -> ([u8; 3], usize) {
        match self {
            Known::Cpuid => ([0x0f, 0xa2, 0], 2),
            Known::Hlt => ([0xf4, 0, 0], 1),
            Known::Rdmsr => ([0x0f, 0x32, 0], 2),
            Known::Wrmsr => ([0x0f, 0x30, 0], 2),
            Known::Vmmcall => ([0x0f, 0x01, 0xd9], 3),
            Known::Xsetbv => ([0x0f, 0x01, 0xd1], 3),
            Known::Invd => ([0x0f, 0x08, 0], 2),
            Known::Wbinvd => ([0x0f, 0x09, 0], 2),
            Known::Rdtsc => ([0x0f, 0x31, 0], 2),
            Known::Pause => ([0x90, 0, 0], 1),
            Known::Svm(i) => ([0x0f, 0x01, i.modrm()], 3),
            Known::Monitor => ([0x0f, 0x01, 0xc8], 3),
            Known::Mwait => ([0x0f, 0x01, 0xc9], 3),
        }
    }

    /// The instruction whose intercept caused exit `code` (EXITINFO1
    /// `info1`: bit 0 tells WRMSR from RDMSR, APM vol. 2 15.11), when it is
    /// one L0 can decode: CPUID, HLT, RDMSR/WRMSR, VMMCALL, XSETBV, INVD,
    /// WBINVD, RDTSC, PAUSE and the SVM instructions but SKINIT. `None` for every
    /// other exit.
    #[inline]
    pub const fn for_exit(code: u64, info1: u64) -> Option<Known> {
        Some(match code {
            exit::CPUID => Known::Cpuid,
            exit::HLT => Known::Hlt,
            exit::MSR if info1 & 1 != 0 => Known::Wrmsr,
            exit::MSR => Known::Rdmsr,
            exit::VMMCALL => Known::Vmmcall,
            exit::XSETBV => Known::Xsetbv,
            exit::INVD => Known::Invd,
            exit::WBINVD => Known::Wbinvd,
            exit::RDTSC => Known::Rdtsc,
            exit::PAUSE => Known::Pause,
            exit::SKINIT => return None,
            c => match SvmInsn::from_exit_code(c) {
                Some(i) => Known::Svm(i),
                None => return None,
            },
        })
    }
}

/// Where the next RIP of an intercepted instruction comes from, for L1's
/// `vmcb12.next_rip` (NRIPS emulated by L0, APM vol. 2 15.7.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextRip {
    /// Given by the exit: IOIO's EXITINFO2 (APM 15.10.2).
    Given(u64),
    /// Decode the instruction at RIP.
    Decode(Known),
    /// Not known: L0 reports 0.
    Unknown,
}

/// The source of the next RIP for exit `code` with `info1`/`info2`.
#[inline]
pub const fn next_rip_source(code: u64, info1: u64, info2: u64) -> NextRip {
    if code == exit::IOIO {
        return NextRip::Given(info2);
    }
    match Known::for_exit(code, info1) {
        Some(k) => NextRip::Decode(k),
        None => NextRip::Unknown,
    }
}

/// The next RIP L0 reports for an exit (emulated NRIPS): EXITINFO2 for
/// IOIO; for a decodable instruction `rip` plus its length, with `fetch`
/// filling the buffer with the bytes at CS:RIP and returning how many it
/// read and whether the code is 64-bit (called only then); 0 when the exit
/// has no known instruction or the bytes are not that instruction.
pub fn next_rip(code: u64, info1: u64, info2: u64, rip: u64, fetch: impl FnOnce(&mut [u8; 15]) -> (usize, bool)) -> u64 {
    match next_rip_source(code, info1, info2) {
        NextRip::Given(r) => r,
        NextRip::Decode(which) => {
            let mut b = [0u8; 15];
            let (n, long) = fetch(&mut b);
            match length_of(&b[..n.min(15)], which, long) {
                Some(len) => rip.wrapping_add(len as u64),
                None => 0,
            }
        }
        NextRip::Unknown => 0,
    }
}

/// The next RIP of L2's last exit as vmcb12 reports it while L2 runs
/// (`KVM_GET_NESTED_STATE`): KVM copies vmcb02's next_rip into its vmcb12
/// cache after every exit of L2, so the saved vmcb12 carries the NRIP of
/// the exit L0 handled last (KVM's state_test). `exit_rip` is L2's RIP at
/// that exit, `rip_now` its RIP now: an instruction L0 has completed since
/// (RIP moved) ended at `rip_now`; one still pending is decoded at
/// `exit_rip` with `fetch` (as [`next_rip`]).
pub fn last_exit_next_rip(code: u64, info1: u64, info2: u64, exit_rip: u64, rip_now: u64, fetch: impl FnOnce(&mut [u8; 15]) -> (usize, bool)) -> u64 {
    match next_rip_source(code, info1, info2) {
        NextRip::Decode(_) if rip_now != exit_rip => rip_now,
        _ => next_rip(code, info1, info2, exit_rip, fetch),
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
    let (op, n) = which.opcode();
    let end = i + n;
    (end <= 15 && bytes.get(i..end) == Some(&op[..n])).then_some(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_exit_next_rip_rules() {
        let none = |_: &mut [u8; 15]| -> (usize, bool) { panic!("no fetch") };
        // IOIO: EXITINFO2, whether or not RIP moved since.
        assert_eq!(last_exit_next_rip(exit::IOIO, 0, 0x1002, 0x1000, 0x1002, none), 0x1002);
        assert_eq!(last_exit_next_rip(exit::IOIO, 0, 0x1002, 0x1000, 0x1000, none), 0x1002);
        // A decoded instruction L0 completed: where RIP is now.
        assert_eq!(last_exit_next_rip(exit::CPUID, 0, 0, 0x1000, 0x1002, none), 0x1002);
        // Still pending: decoded at the exit's RIP.
        let cpuid = |b: &mut [u8; 15]| {
            b[0] = 0x0f;
            b[1] = 0xa2;
            (2, true)
        };
        assert_eq!(last_exit_next_rip(exit::CPUID, 0, 0, 0x1000, 0x1000, cpuid), 0x1002);
        // No instruction: 0.
        assert_eq!(last_exit_next_rip(exit::NPF, 0, 0, 0x1000, 0x1000, none), 0);
    }

    #[test]
    fn lengths() {
        assert_eq!(length_of(&[0x0f, 0xa2, 0x90], Known::Cpuid, false), Some(2));
        assert_eq!(length_of(&[0xf4], Known::Hlt, false), Some(1));
        assert_eq!(length_of(&[0x66, 0xf4], Known::Hlt, false), Some(2));
        assert_eq!(length_of(&[0x48, 0x0f, 0x32], Known::Rdmsr, true), Some(3));
        // REX is an instruction (DEC/INC) outside 64-bit mode.
        assert_eq!(length_of(&[0x48, 0x0f, 0x32], Known::Rdmsr, false), None);
        assert_eq!(length_of(&[0x0f, 0x01, 0xd9], Known::Vmmcall, true), Some(3));
        assert_eq!(length_of(&[0x0f, 0x01, 0xc8], Known::Monitor, true), Some(3));
        assert_eq!(length_of(&[0x0f, 0x01, 0xc9], Known::Mwait, false), Some(3));
        assert_eq!(length_of(&[0x0f, 0x01, 0xfb], Known::Mwait, false), None);
        assert_eq!(length_of(&[0x0f, 0x01, 0xd1], Known::Xsetbv, true), Some(3));
        assert_eq!(length_of(&[0x0f, 0x01, 0xd9], Known::Xsetbv, true), None);
        assert_eq!(length_of(&[0x0f], Known::Cpuid, true), None);
        assert_eq!(length_of(&[0xf3, 0x90], Known::Pause, true), Some(2));
        assert_eq!(length_of(&[0x0f, 0x01, 0xd8], Known::Svm(SvmInsn::Vmrun), true), Some(3));
        assert_eq!(length_of(&[0x0f, 0x01, 0xdc], Known::Svm(SvmInsn::Clgi), true), None);
        assert_eq!(length_of(&[0x67, 0x0f, 0x01, 0xdf], Known::Svm(SvmInsn::Invlpga), false), Some(4));
        assert_eq!(length_of(&[0x66; 14].iter().chain(&[0x0f, 0xa2]).copied().collect::<Vec<_>>(), Known::Cpuid, false), None);
        assert_eq!(length_of(&[0x66; 13].iter().chain(&[0x0f, 0xa2]).copied().collect::<Vec<_>>(), Known::Cpuid, false), Some(15));
    }

    #[test]
    fn svm_instructions_decode_by_the_one_map() {
        for i in SvmInsn::ALL {
            let b = [0x0f, 0x01, i.modrm()];
            assert_eq!(length_of(&b, Known::Svm(i), true), Some(3), "{i:?}");
            for j in SvmInsn::ALL.into_iter().filter(|&j| j != i) {
                assert_eq!(length_of(&b, Known::Svm(j), true), None, "{i:?} as {j:?}");
            }
            assert_eq!(length_of(&b, Known::Vmmcall, true), None);
        }
    }

    #[test]
    fn exit_to_instruction() {
        use crate::exit::*;
        let cases = [
            (CPUID, 0, Some(Known::Cpuid)),
            (HLT, 0, Some(Known::Hlt)),
            (MSR, 0, Some(Known::Rdmsr)),
            (MSR, 1, Some(Known::Wrmsr)),
            (VMMCALL, 0, Some(Known::Vmmcall)),
            (XSETBV, 0, Some(Known::Xsetbv)),
            (INVD, 0, Some(Known::Invd)),
            (WBINVD, 0, Some(Known::Wbinvd)),
            (RDTSC, 0, Some(Known::Rdtsc)),
            (VMRUN, 0, Some(Known::Svm(SvmInsn::Vmrun))),
            (VMLOAD, 0, Some(Known::Svm(SvmInsn::Vmload))),
            (VMSAVE, 0, Some(Known::Svm(SvmInsn::Vmsave))),
            (STGI, 0, Some(Known::Svm(SvmInsn::Stgi))),
            (CLGI, 0, Some(Known::Svm(SvmInsn::Clgi))),
            (INVLPGA, 0, Some(Known::Svm(SvmInsn::Invlpga))),
            (SKINIT, 0, None),
            (IOIO, 0, None),
            (RDTSCP, 0, None),
            (PAUSE, 0, Some(Known::Pause)),
            (EXCP_BASE + 6, 0, None),
            (NPF, 0, None),
            (INVALID, 0, None),
        ];
        for (code, info1, want) in cases {
            assert_eq!(Known::for_exit(code, info1), want, "{}", describe(code));
        }
        assert_eq!(next_rip_source(IOIO, 0x10, 0x1234), NextRip::Given(0x1234));
        assert_eq!(next_rip_source(MSR, 1, 0), NextRip::Decode(Known::Wrmsr));
        assert_eq!(next_rip_source(INTR, 0, 0x55), NextRip::Unknown);
    }

    #[test]
    fn emulated_next_rip() {
        use crate::exit::*;
        let fetch = |bytes: &'static [u8], long: bool| {
            move |b: &mut [u8; 15]| {
                b[..bytes.len()].copy_from_slice(bytes);
                (bytes.len(), long)
            }
        };
        let never = |_: &mut [u8; 15]| -> (usize, bool) { panic!("no fetch expected") };
        // IOIO: EXITINFO2, no fetch.
        assert_eq!(next_rip(IOIO, 0, 0x2002, 0x2000, never), 0x2002);
        // Decoded: RIP + length, with prefixes and REX in 64-bit mode.
        assert_eq!(next_rip(CPUID, 0, 0, 0x1000, fetch(&[0x0f, 0xa2], false)), 0x1002);
        assert_eq!(next_rip(MSR, 1, 0, 0x1000, fetch(&[0x48, 0x0f, 0x30], true)), 0x1003);
        assert_eq!(next_rip(VMRUN, 0, 0, 0x1000, fetch(&[0x0f, 0x01, 0xd8], true)), 0x1003);
        // RDMSR bytes for a WRMSR exit, a short fetch, no instruction: 0.
        assert_eq!(next_rip(MSR, 1, 0, 0x1000, fetch(&[0x0f, 0x32], true)), 0);
        assert_eq!(next_rip(HLT, 0, 0, 0x1000, fetch(&[], false)), 0);
        assert_eq!(next_rip(INTR, 0, 0, 0x1000, never), 0);
        assert_eq!(next_rip(SKINIT, 0, 0, 0x1000, never), 0);
    }
}
