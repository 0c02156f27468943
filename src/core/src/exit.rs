// SPDX-License-Identifier: GPL-2.0
//! `SVM_EXIT_*` exit codes (APM vol. 2 appendix C, table C-1) and their names.
//!
//! For every intercept the architecture defines, the exit code equals the bit
//! index of that intercept in the VMCB intercept vectors (see
//! [`crate::intercept`]), as KVM also uses it.

/// Defines the exit code constants and the name table in one place.
macro_rules! exit_codes {
    ($( $(#[$m:meta])* $name:ident = $val:expr ),* $(,)?) => {
        $( $(#[$m])* #[doc = concat!("`SVM_EXIT_", stringify!($name), "`.")] pub const $name: u64 = $val; )*
        /// Every named exit code with its `SVM_EXIT_*` name (without prefix).
        pub const NAMED: &[(u64, &str)] = &[ $( ($val, stringify!($name)) ),* ];
    };
}

exit_codes! {
    /// Read of CR0 (0x0 + n for CRn, n = 0..15).
    READ_CR0 = 0x000, READ_CR2 = 0x002, READ_CR3 = 0x003, READ_CR4 = 0x004, READ_CR8 = 0x008,
    /// Write of CR0 (0x10 + n for CRn).
    WRITE_CR0 = 0x010, WRITE_CR2 = 0x012, WRITE_CR3 = 0x013, WRITE_CR4 = 0x014, WRITE_CR8 = 0x018,
    /// Read of DR0 (0x20 + n for DRn).
    READ_DR0 = 0x020, READ_DR1 = 0x021, READ_DR2 = 0x022, READ_DR3 = 0x023,
    READ_DR4 = 0x024, READ_DR5 = 0x025, READ_DR6 = 0x026, READ_DR7 = 0x027,
    /// Write of DR0 (0x30 + n for DRn).
    WRITE_DR0 = 0x030, WRITE_DR1 = 0x031, WRITE_DR2 = 0x032, WRITE_DR3 = 0x033,
    WRITE_DR4 = 0x034, WRITE_DR5 = 0x035, WRITE_DR6 = 0x036, WRITE_DR7 = 0x037,
    /// Exception vector 0 (0x40 + vector).
    EXCP_BASE = 0x040,
    /// Physical INTR.
    INTR = 0x060, NMI = 0x061, SMI = 0x062, INIT = 0x063,
    /// Virtual interrupt (V_IRQ taken).
    VINTR = 0x064,
    /// Write of CR0 that changed bits other than TS or MP.
    CR0_SEL_WRITE = 0x065,
    IDTR_READ = 0x066, GDTR_READ = 0x067, LDTR_READ = 0x068, TR_READ = 0x069,
    IDTR_WRITE = 0x06a, GDTR_WRITE = 0x06b, LDTR_WRITE = 0x06c, TR_WRITE = 0x06d,
    RDTSC = 0x06e, RDPMC = 0x06f, PUSHF = 0x070, POPF = 0x071, CPUID = 0x072,
    RSM = 0x073, IRET = 0x074,
    /// Software interrupt (INTn).
    SWINT = 0x075,
    INVD = 0x076, PAUSE = 0x077, HLT = 0x078, INVLPG = 0x079, INVLPGA = 0x07a,
    /// IN/OUT/INS/OUTS through the IOPM.
    IOIO = 0x07b,
    /// RDMSR/WRMSR through the MSRPM.
    MSR = 0x07c,
    TASK_SWITCH = 0x07d, FERR_FREEZE = 0x07e,
    /// Shutdown (e.g. triple fault).
    SHUTDOWN = 0x07f,
    VMRUN = 0x080, VMMCALL = 0x081, VMLOAD = 0x082, VMSAVE = 0x083, STGI = 0x084,
    CLGI = 0x085, SKINIT = 0x086, RDTSCP = 0x087, ICEBP = 0x088, WBINVD = 0x089,
    MONITOR = 0x08a, MWAIT = 0x08b, MWAIT_COND = 0x08c, XSETBV = 0x08d, RDPRU = 0x08e,
    /// EFER write trap (SEV-ES).
    EFER_WRITE_TRAP = 0x08f,
    /// CR0 write trap (0x90 + n for CRn, SEV-ES).
    CR0_WRITE_TRAP = 0x090, CR4_WRITE_TRAP = 0x094, CR8_WRITE_TRAP = 0x098,
    INVLPGB = 0x0a0, INVLPGB_ILLEGAL = 0x0a1, INVPCID = 0x0a2, MCOMMIT = 0x0a3,
    TLBSYNC = 0x0a4, BUS_LOCK = 0x0a5, IDLE_HLT = 0x0a6,
    /// Nested page fault.
    NPF = 0x400,
    AVIC_INCOMPLETE_IPI = 0x401, AVIC_UNACCELERATED_ACCESS = 0x402,
    VMGEXIT = 0x403,
    /// VMRUN failed a consistency check (APM 15.5.1): -1.
    INVALID = u64::MAX,
    /// VMRUN of a busy VMSA (SEV-SNP): -2.
    BUSY = u64::MAX - 1,
}

/// Name of an exit code, e.g. `"CPUID"`. Ranges without individual constants
/// (other CRs/DRs, exceptions) are named by family: use [`describe`] for a
/// full description.
pub fn name(code: u64) -> Option<&'static str> {
    if let Some(&(_, n)) = NAMED.iter().find(|(c, _)| *c == code) {
        return Some(n);
    }
    match code {
        0x000..=0x00f => Some("READ_CR"),
        0x010..=0x01f => Some("WRITE_CR"),
        0x020..=0x02f => Some("READ_DR"),
        0x030..=0x03f => Some("WRITE_DR"),
        0x040..=0x05f => Some("EXCP"),
        0x090..=0x09f => Some("CR_WRITE_TRAP"),
        // QEMU TCG (<= 10.0.2) stores VMEXIT_INVALID as a 32-bit -1.
        0xffff_ffff => Some("INVALID"),
        _ => None,
    }
}

/// Names of the exception vectors 0–31 (APM vol. 2 8.2), `None` when reserved.
pub fn exception_name(vector: u8) -> Option<&'static str> {
    const N: [&str; 32] = [
        "DE", "DB", "NMI", "BP", "OF", "BR", "UD", "NM", "DF", "", "TS", "NP", "SS", "GP", "PF",
        "", "MF", "AC", "MC", "XF", "", "CP", "", "", "", "", "", "", "HV", "VC", "SX", "",
    ];
    N.get(vector as usize).copied().filter(|s| !s.is_empty())
}

/// A `core::fmt::Display` description of an exit code: `CPUID`, `READ_CR5`,
/// `EXCP_PF`; reserved exception vectors print as `EXCP_22` and unknown codes
/// as `UNKNOWN(0x...)`.
pub struct Describe(pub u64);

/// Describes an exit code in text, see [`Describe`].
pub fn describe(code: u64) -> Describe {
    Describe(code)
}

impl core::fmt::Display for Describe {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let c = self.0;
        match c {
            0x000..=0x00f if name(c) == Some("READ_CR") => write!(f, "READ_CR{}", c),
            0x010..=0x01f if name(c) == Some("WRITE_CR") => write!(f, "WRITE_CR{}", c - 0x10),
            0x020..=0x02f if name(c) == Some("READ_DR") => write!(f, "READ_DR{}", c - 0x20),
            0x030..=0x03f if name(c) == Some("WRITE_DR") => write!(f, "WRITE_DR{}", c - 0x30),
            0x040..=0x05f => match exception_name((c - 0x40) as u8) {
                Some(n) => write!(f, "EXCP_{}", n),
                None => write!(f, "EXCP_{}", c - 0x40),
            },
            0x090..=0x09f if name(c) == Some("CR_WRITE_TRAP") => {
                write!(f, "CR{}_WRITE_TRAP", c - 0x90)
            }
            _ => match name(c) {
                Some(n) => f.write_str(n),
                None => write!(f, "UNKNOWN({:#x})", c),
            },
        }
    }
}

/// Finds an exit code by its name (with or without the `SVM_EXIT_` prefix,
/// any case), including the `READ_CRn`/`EXCP_xx` family forms.
pub fn from_name(s: &str) -> Option<u64> {
    let s = s.trim();
    let s = strip_prefix_ci(s, "SVM_EXIT_").unwrap_or(s);
    if let Some(&(c, _)) = NAMED.iter().find(|(_, n)| n.eq_ignore_ascii_case(s)) {
        return Some(c);
    }
    let families: [(&str, u64, u64); 6] = [
        ("READ_CR", 0x00, 16),
        ("WRITE_CR", 0x10, 16),
        ("READ_DR", 0x20, 16),
        ("WRITE_DR", 0x30, 16),
        ("EXCP_", 0x40, 32),
        ("CR_WRITE_TRAP", 0x90, 16),
    ];
    for (p, base, n) in families {
        if let Some(rest) = strip_prefix_ci(s, p) {
            if let Ok(i) = rest.parse::<u64>() {
                return (i < n).then_some(base + i);
            }
            if p == "EXCP_" {
                return (0u8..32)
                    .find(|v| exception_name(*v).is_some_and(|e| e.eq_ignore_ascii_case(rest)))
                    .map(|v| base + v as u64);
            }
        }
    }
    None
}

fn strip_prefix_ci<'a>(s: &'a str, p: &str) -> Option<&'a str> {
    (s.len() >= p.len() && s.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes()))
        .then(|| &s[p.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_values() {
        // APM table C-1.
        assert_eq!(CPUID, 0x72);
        assert_eq!(HLT, 0x78);
        assert_eq!(IOIO, 0x7b);
        assert_eq!(MSR, 0x7c);
        assert_eq!(SHUTDOWN, 0x7f);
        assert_eq!(VMRUN, 0x80);
        assert_eq!(VMMCALL, 0x81);
        assert_eq!(NPF, 0x400);
        assert_eq!(INVALID as i64, -1);
        assert_eq!(BUSY as i64, -2);
    }

    #[test]
    fn names_are_unique_and_round_trip() {
        for (i, (c, n)) in NAMED.iter().enumerate() {
            assert_eq!(from_name(n), Some(*c), "{n}");
            assert!(NAMED[i + 1..].iter().all(|(c2, n2)| c2 != c && n2 != n), "{n} repeated");
        }
        assert_eq!(from_name("svm_exit_cpuid"), Some(CPUID));
        assert_eq!(from_name("EXCP_PF"), Some(0x4e));
        assert_eq!(from_name("excp_14"), Some(0x4e));
        assert_eq!(from_name("READ_CR5"), Some(0x05));
        assert_eq!(from_name("READ_CR16"), None);
        assert_eq!(from_name("nonsense"), None);
    }

    #[test]
    fn describe_every_family() {
        assert_eq!(describe(CPUID).to_string(), "CPUID");
        assert_eq!(describe(0x05).to_string(), "READ_CR5");
        assert_eq!(describe(0x03).to_string(), "READ_CR3");
        assert_eq!(describe(0x1f).to_string(), "WRITE_CR15");
        assert_eq!(describe(0x27).to_string(), "READ_DR7");
        assert_eq!(describe(0x4e).to_string(), "EXCP_PF");
        assert_eq!(describe(0x40 + 22).to_string(), "EXCP_22");
        assert_eq!(describe(0x93).to_string(), "CR3_WRITE_TRAP");
        assert_eq!(describe(0xffff_ffff).to_string(), "INVALID");
        assert_eq!(describe(u64::MAX).to_string(), "INVALID");
        assert_eq!(describe(0x3ff).to_string(), "UNKNOWN(0x3ff)");
        // Every code from 0 to 0xa6 has a description other than UNKNOWN.
        for c in 0..=0xa6u64 {
            assert!(!describe(c).to_string().starts_with("UNKNOWN"), "{c:#x}");
        }
    }
}
