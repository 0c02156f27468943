// SPDX-License-Identifier: GPL-2.0
//! `SVM_EXIT_*` exit codes (APM vol. 2 appendix C, table C-1) and their names.
//! Typed exits: [`SvmExit`] decodes an exit code with its EXITINFO1/2
//! ([`IoioInfo`], [`NpfInfo`], [`SvmInsn`], [`Sensitive`]).
//!
//! For every intercept the architecture defines, the exit code equals the bit
//! index of that intercept in the VMCB intercept vectors (see
//! [`crate::intercept`]), as KVM also uses it.

use crate::nested::npf;

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

// ---------------------------------------------------------------------------
// Typed exits: what the exit information means, decoded once.
// ---------------------------------------------------------------------------

/// Bits of EXITINFO1 for #VMEXIT(IOIO) (APM vol. 2 15.10.2, figure 15-2).
pub mod ioio {
    /// TYPE: 1 = IN/INS, 0 = OUT/OUTS.
    pub const IN: u64 = 1 << 0;
    /// STR: a string instruction (INS/OUTS).
    pub const STR: u64 = 1 << 2;
    /// REP: with a REP prefix.
    pub const REP: u64 = 1 << 3;
    /// SZ8: 8-bit operand.
    pub const SZ8: u64 = 1 << 4;
    /// SZ16: 16-bit operand.
    pub const SZ16: u64 = 1 << 5;
    /// SZ32: 32-bit operand.
    pub const SZ32: u64 = 1 << 6;
    /// A16: 16-bit address size.
    pub const A16: u64 = 1 << 7;
    /// A32: 32-bit address size.
    pub const A32: u64 = 1 << 8;
    /// A64: 64-bit address size.
    pub const A64: u64 = 1 << 9;
    /// SEG (bits 12:10): effective segment of a string instruction (ES = 0,
    /// CS, SS, DS, FS, GS = 5), reported with decode assists only.
    pub const SEG_SHIFT: u32 = 10;
    /// Mask of SEG after the shift.
    pub const SEG_MASK: u64 = 0x7;
    /// PORT (bits 31:16).
    pub const PORT_SHIFT: u32 = 16;
}

/// #VMEXIT(IOIO) information (APM vol. 2 15.10.2): EXITINFO1 describes the
/// access, EXITINFO2 holds the RIP of the next instruction (given also
/// without NRIPS).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoioInfo {
    /// I/O port.
    pub port: u16,
    /// Operand size in bytes: 1, 2 or 4.
    pub size: u8,
    /// IN/INS (else OUT/OUTS).
    pub is_in: bool,
    /// INS/OUTS.
    pub string: bool,
    /// REP prefix.
    pub rep: bool,
    /// Address size of a string instruction in bits: 16, 32 or 64.
    pub addr_bits: u8,
    /// Effective segment (EXITINFO1 bits 12:10, see [`ioio::SEG_SHIFT`]).
    pub segment: u8,
    /// EXITINFO2: RIP of the next instruction.
    pub next_rip: u64,
}

impl IoioInfo {
    /// Decodes EXITINFO1 and EXITINFO2. The size and address-size fields are
    /// one-hot; the smallest size bit set wins, and no bit at all counts as
    /// the largest (4 bytes, 16-bit addresses unless A32/A64).
    #[inline]
    pub const fn decode(info1: u64, info2: u64) -> Self {
        let size = if info1 & ioio::SZ8 != 0 {
            1
        } else if info1 & ioio::SZ16 != 0 {
            2
        } else {
            4
        };
        let addr_bits = if info1 & ioio::A64 != 0 {
            64
        } else if info1 & ioio::A32 != 0 {
            32
        } else {
            16
        };
        Self {
            port: (info1 >> ioio::PORT_SHIFT) as u16,
            size,
            is_in: info1 & ioio::IN != 0,
            string: info1 & ioio::STR != 0,
            rep: info1 & ioio::REP != 0,
            addr_bits,
            segment: ((info1 >> ioio::SEG_SHIFT) & ioio::SEG_MASK) as u8,
            next_rip: info2,
        }
    }

    /// EXITINFO1 as the processor writes it for this access (the inverse of
    /// [`IoioInfo::decode`] for well-formed values).
    pub const fn exit_info_1(&self) -> u64 {
        let size = match self.size {
            1 => ioio::SZ8,
            2 => ioio::SZ16,
            _ => ioio::SZ32,
        };
        let addr = match self.addr_bits {
            64 => ioio::A64,
            32 => ioio::A32,
            _ => ioio::A16,
        };
        (self.port as u64) << ioio::PORT_SHIFT
            | ((self.segment as u64 & ioio::SEG_MASK) << ioio::SEG_SHIFT)
            | addr
            | size
            | if self.rep { ioio::REP } else { 0 }
            | if self.string { ioio::STR } else { 0 }
            | if self.is_in { ioio::IN } else { 0 }
    }

    /// Mask of the address-size part of rSI/rDI/rCX for a string access.
    pub const fn addr_mask(&self) -> u64 {
        match self.addr_bits {
            64 => u64::MAX,
            32 => 0xffff_ffff,
            _ => 0xffff,
        }
    }

    /// The ports the access touches: one per byte, each with its own IOPM
    /// bit (APM vol. 2 15.10.1).
    pub const fn ports(&self) -> core::ops::Range<u32> {
        self.port as u32..self.port as u32 + self.size as u32
    }
}

/// #VMEXIT(NPF) information (APM vol. 2 15.25.6): EXITINFO1 is a page-fault
/// error code with the bits of [`crate::nested::npf`], EXITINFO2 the guest
/// physical address that faulted. Kept as the raw values (nothing lost when
/// reflected to L1), read through the accessors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NpfInfo {
    /// EXITINFO1: the error code.
    pub error_code: u64,
    /// EXITINFO2: the faulting guest physical address.
    pub gpa: u64,
}

impl NpfInfo {
    /// The nested table entry was present (a protection or reserved-bit
    /// fault rather than a missing translation).
    #[inline]
    pub const fn present(&self) -> bool {
        self.error_code & npf::P != 0
    }
    /// The access was a write.
    #[inline]
    pub const fn write(&self) -> bool {
        self.error_code & npf::RW != 0
    }
    /// User access (nested walks are user accesses, APM 15.25.5).
    #[inline]
    pub const fn user(&self) -> bool {
        self.error_code & npf::US != 0
    }
    /// A reserved bit was set in a nested table entry.
    #[inline]
    pub const fn reserved(&self) -> bool {
        self.error_code & npf::RSVD != 0
    }
    /// The access was an instruction fetch.
    #[inline]
    pub const fn fetch(&self) -> bool {
        self.error_code & npf::ID != 0
    }
    /// The fault happened on the final guest physical address (bit 32).
    #[inline]
    pub const fn final_address(&self) -> bool {
        self.error_code & npf::FINAL != 0
    }
    /// The fault happened on an access to a guest page table (bit 33).
    #[inline]
    pub const fn guest_table(&self) -> bool {
        self.error_code & npf::TABLE != 0
    }
    /// The stage bits (`npf::FINAL` and/or `npf::TABLE`) as reported.
    #[inline]
    pub const fn stage(&self) -> u64 {
        self.error_code & (npf::FINAL | npf::TABLE)
    }
}

/// The SVM instructions (APM vol. 2 15.5, 15.5.2, 15.16.4, 15.17, 15.27;
/// encodings in APM vol. 3): each is `0F 01` with a ModRM byte of its own,
/// and each has its intercept and exit code. This is the one opcode map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SvmInsn {
    /// VMRUN, `0F 01 D8`.
    Vmrun,
    /// VMLOAD, `0F 01 DA`.
    Vmload,
    /// VMSAVE, `0F 01 DB`.
    Vmsave,
    /// STGI, `0F 01 DC`.
    Stgi,
    /// CLGI, `0F 01 DD`.
    Clgi,
    /// SKINIT, `0F 01 DE`.
    Skinit,
    /// INVLPGA, `0F 01 DF`.
    Invlpga,
}

impl SvmInsn {
    /// All of them.
    pub const ALL: [SvmInsn; 7] = [
        SvmInsn::Vmrun,
        SvmInsn::Vmload,
        SvmInsn::Vmsave,
        SvmInsn::Stgi,
        SvmInsn::Clgi,
        SvmInsn::Skinit,
        SvmInsn::Invlpga,
    ];

    /// The instruction whose intercept has exit code `code`.
    #[inline]
    pub const fn from_exit_code(code: u64) -> Option<Self> {
        Some(match code {
            VMRUN => SvmInsn::Vmrun,
            VMLOAD => SvmInsn::Vmload,
            VMSAVE => SvmInsn::Vmsave,
            STGI => SvmInsn::Stgi,
            CLGI => SvmInsn::Clgi,
            SKINIT => SvmInsn::Skinit,
            INVLPGA => SvmInsn::Invlpga,
            _ => return None,
        })
    }

    /// Exit code of its intercept (APM appendix C).
    #[inline]
    pub const fn exit_code(self) -> u64 {
        match self {
            SvmInsn::Vmrun => VMRUN,
            SvmInsn::Vmload => VMLOAD,
            SvmInsn::Vmsave => VMSAVE,
            SvmInsn::Stgi => STGI,
            SvmInsn::Clgi => CLGI,
            SvmInsn::Skinit => SKINIT,
            SvmInsn::Invlpga => INVLPGA,
        }
    }

    /// The ModRM byte after `0F 01` that selects the instruction.
    #[inline]
    pub const fn modrm(self) -> u8 {
        match self {
            SvmInsn::Vmrun => 0xd8,
            SvmInsn::Vmload => 0xda,
            SvmInsn::Vmsave => 0xdb,
            SvmInsn::Stgi => 0xdc,
            SvmInsn::Clgi => 0xdd,
            SvmInsn::Skinit => 0xde,
            SvmInsn::Invlpga => 0xdf,
        }
    }

    /// The instruction `0F 01 modrm` is, if an SVM instruction (`D9` is
    /// VMMCALL, which is not one of them: it has no operand state).
    pub const fn from_modrm(modrm: u8) -> Option<Self> {
        let mut i = 0;
        while i < Self::ALL.len() {
            if Self::ALL[i].modrm() == modrm {
                return Some(Self::ALL[i]);
            }
            i += 1;
        }
        None
    }
}

/// Sensitive instructions a VM's policy may intercept (`crate::sensitive`),
/// by their exit codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sensitive {
    /// SIDT (`IDTR_READ`).
    IdtrRead,
    /// SGDT (`GDTR_READ`).
    GdtrRead,
    /// SLDT (`LDTR_READ`).
    LdtrRead,
    /// STR (`TR_READ`).
    TrRead,
    /// SMSW and MOV from CR0 (`READ_CR0`; QEMU TCG also reports reads of
    /// other CRs with this code).
    ReadCr0,
    /// PUSHF.
    Pushf,
    /// POPF.
    Popf,
    /// RDTSC.
    Rdtsc,
}

impl Sensitive {
    /// Exit code of its intercept.
    #[inline]
    pub const fn exit_code(self) -> u64 {
        match self {
            Sensitive::IdtrRead => IDTR_READ,
            Sensitive::GdtrRead => GDTR_READ,
            Sensitive::LdtrRead => LDTR_READ,
            Sensitive::TrRead => TR_READ,
            Sensitive::ReadCr0 => READ_CR0,
            Sensitive::Pushf => PUSHF,
            Sensitive::Popf => POPF,
            Sensitive::Rdtsc => RDTSC,
        }
    }
}

/// A #VMEXIT as L0's dispatcher and the reflection decision see it, decoded
/// from the VMCB's EXITCODE, EXITINFO1 and EXITINFO2 (APM vol. 2 15.6 and
/// appendix C). Codes nobody distinguishes stay [`SvmExit::Other`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SvmExit {
    /// Physical maskable interrupt.
    Intr,
    /// Physical NMI.
    Nmi,
    /// SMI.
    Smi,
    /// INIT.
    Init,
    /// Virtual interrupt taken (APM 15.21.4).
    Vintr,
    /// IRET.
    Iret,
    /// CPUID.
    Cpuid,
    /// HLT.
    Hlt,
    /// IN/OUT/INS/OUTS (APM 15.10.2).
    Ioio(IoioInfo),
    /// RDMSR or WRMSR: EXITINFO1 is 0 for RDMSR, 1 for WRMSR (APM 15.11).
    Msr {
        /// WRMSR.
        write: bool,
    },
    /// Nested page fault (APM 15.25.6).
    Npf(NpfInfo),
    /// Shutdown (e.g. a triple fault); the VMCB state is undefined after it.
    Shutdown,
    /// VMMCALL.
    Vmmcall,
    /// XSETBV.
    Xsetbv,
    /// INVD.
    Invd,
    /// Exception intercept (APM 15.12): the error code in EXITINFO1 for
    /// the vectors that push one, and for #PF the faulting address in
    /// EXITINFO2.
    Exception {
        /// Vector 0..31.
        vector: u8,
        /// EXITINFO1 bits 31:0 (meaningful for vectors with an error code).
        error_code: u32,
        /// EXITINFO2 for #PF (vector 14), 0 for every other vector.
        cr2: u64,
    },
    /// An SVM instruction.
    SvmInsn(SvmInsn),
    /// A sensitive instruction of the VM's policy.
    Sensitive(Sensitive),
    /// VMRUN refused the state (`VMEXIT_INVALID`, APM 15.5.1): -1, or the
    /// 32-bit -1 QEMU TCG writes (see [`crate::vmcb::Vmcb::exit_is_invalid`]).
    Invalid,
    /// Any other exit code.
    Other(u64),
}

impl SvmExit {
    /// Decodes an exit: one `match` on the code, no table search, no memory.
    #[inline]
    pub const fn decode(code: u64, info1: u64, info2: u64) -> Self {
        match code {
            INTR => SvmExit::Intr,
            NMI => SvmExit::Nmi,
            SMI => SvmExit::Smi,
            INIT => SvmExit::Init,
            VINTR => SvmExit::Vintr,
            IRET => SvmExit::Iret,
            CPUID => SvmExit::Cpuid,
            HLT => SvmExit::Hlt,
            IOIO => SvmExit::Ioio(IoioInfo::decode(info1, info2)),
            MSR => SvmExit::Msr { write: info1 & 1 != 0 },
            NPF => SvmExit::Npf(NpfInfo { error_code: info1, gpa: info2 }),
            SHUTDOWN => SvmExit::Shutdown,
            VMMCALL => SvmExit::Vmmcall,
            XSETBV => SvmExit::Xsetbv,
            INVD => SvmExit::Invd,
            0x040..=0x05f => {
                let vector = (code - EXCP_BASE) as u8;
                let cr2 = if vector == 14 { info2 } else { 0 };
                SvmExit::Exception { vector, error_code: info1 as u32, cr2 }
            }
            VMRUN => SvmExit::SvmInsn(SvmInsn::Vmrun),
            VMLOAD => SvmExit::SvmInsn(SvmInsn::Vmload),
            VMSAVE => SvmExit::SvmInsn(SvmInsn::Vmsave),
            STGI => SvmExit::SvmInsn(SvmInsn::Stgi),
            CLGI => SvmExit::SvmInsn(SvmInsn::Clgi),
            SKINIT => SvmExit::SvmInsn(SvmInsn::Skinit),
            INVLPGA => SvmExit::SvmInsn(SvmInsn::Invlpga),
            IDTR_READ => SvmExit::Sensitive(Sensitive::IdtrRead),
            GDTR_READ => SvmExit::Sensitive(Sensitive::GdtrRead),
            LDTR_READ => SvmExit::Sensitive(Sensitive::LdtrRead),
            TR_READ => SvmExit::Sensitive(Sensitive::TrRead),
            READ_CR0 => SvmExit::Sensitive(Sensitive::ReadCr0),
            PUSHF => SvmExit::Sensitive(Sensitive::Pushf),
            POPF => SvmExit::Sensitive(Sensitive::Popf),
            RDTSC => SvmExit::Sensitive(Sensitive::Rdtsc),
            c if crate::vmcb::Vmcb::exit_is_invalid(c) => SvmExit::Invalid,
            c => SvmExit::Other(c),
        }
    }
}

#[cfg(test)]
mod typed_tests {
    use super::*;

    #[test]
    fn ioio_decoding() {
        // IN AL, DX with DX = 0x3f8: TYPE, SZ8, A16 (APM figure 15-2).
        let io = IoioInfo::decode(0x03f8_0091, 0x1234);
        assert_eq!(
            io,
            IoioInfo { port: 0x3f8, size: 1, is_in: true, string: false, rep: false, addr_bits: 16, segment: 0, next_rip: 0x1234 }
        );
        assert_eq!(io.ports(), 0x3f8..0x3f9);
        // REP OUTSW with a 64-bit address size and the FS segment (4).
        let info1 = (0x80u64 << 16) | (4 << 10) | (1 << 9) | (1 << 5) | (1 << 3) | (1 << 2);
        let io = IoioInfo::decode(info1, 7);
        assert_eq!((io.port, io.size, io.is_in, io.string, io.rep), (0x80, 2, false, true, true));
        assert_eq!((io.addr_bits, io.segment, io.addr_mask()), (64, 4, u64::MAX));
        assert_eq!(io.exit_info_1(), info1);
        // OUT DX, EAX at 0xcfc with a 32-bit address size.
        let io = IoioInfo::decode((0xcfc << 16) | (1 << 8) | (1 << 6), 0);
        assert_eq!((io.size, io.addr_bits, io.addr_mask(), io.ports()), (4, 32, 0xffff_ffff, 0xcfc..0xd00));
        assert_eq!(IoioInfo::decode(0xffff_0000 | (1 << 7) | (1 << 4), 0).ports(), 0xffff..0x10000);
        // Round trip over every size, address size, direction and segment.
        for size in [1u8, 2, 4] {
            for addr_bits in [16u8, 32, 64] {
                for segment in 0..6 {
                    let io = IoioInfo { port: 0x1f0, size, is_in: segment % 2 == 0, string: true, rep: segment > 2, addr_bits, segment, next_rip: 9 };
                    assert_eq!(IoioInfo::decode(io.exit_info_1(), 9), io);
                }
            }
        }
        assert_eq!(
            SvmExit::decode(IOIO, 0x0060_0011, 0x42),
            SvmExit::Ioio(IoioInfo { port: 0x60, size: 1, is_in: true, string: false, rep: false, addr_bits: 16, segment: 0, next_rip: 0x42 })
        );
    }

    #[test]
    fn npf_decoding() {
        // A write to a missing NPT entry while translating the final address.
        let SvmExit::Npf(n) = SvmExit::decode(NPF, (1 << 32) | 0b110, 0xfee0_0000) else { panic!() };
        assert_eq!(n.gpa, 0xfee0_0000);
        assert!(!n.present() && n.write() && n.user() && !n.reserved() && !n.fetch());
        assert!(n.final_address() && !n.guest_table());
        assert_eq!(n.stage(), 1 << 32);
        // A reserved-bit fault on a guest page-table access during a fetch.
        let n = NpfInfo { error_code: (1 << 33) | 0b11101, gpa: 0x1000 };
        assert!(n.present() && !n.write() && n.user() && n.reserved() && n.fetch());
        assert!(!n.final_address() && n.guest_table());
        assert_eq!(n.stage(), 1 << 33);
    }

    #[test]
    fn exception_decoding() {
        assert_eq!(
            SvmExit::decode(EXCP_BASE + 14, 0x0000_0000_0000_0007, 0xdead_b000),
            SvmExit::Exception { vector: 14, error_code: 7, cr2: 0xdead_b000 }
        );
        // EXITINFO2 means nothing for #GP.
        assert_eq!(SvmExit::decode(0x4d, 0x18, 0x99), SvmExit::Exception { vector: 13, error_code: 0x18, cr2: 0 });
        assert_eq!(SvmExit::decode(0x40, 0, 0), SvmExit::Exception { vector: 0, error_code: 0, cr2: 0 });
        assert_eq!(SvmExit::decode(0x5f, 0, 0), SvmExit::Exception { vector: 31, error_code: 0, cr2: 0 });
        assert_eq!(SvmExit::decode(0x60, 0, 0), SvmExit::Intr);
        assert_eq!(SvmExit::decode(0x3f, 0, 0), SvmExit::Other(0x3f));
    }

    #[test]
    fn invalid_and_other_codes() {
        assert_eq!(SvmExit::decode(u64::MAX, 0, 0), SvmExit::Invalid);
        assert_eq!(SvmExit::decode(0xffff_ffff, 0, 0), SvmExit::Invalid);
        assert_eq!(SvmExit::decode(BUSY, 0, 0), SvmExit::Other(BUSY));
        assert_eq!(SvmExit::decode(0xffff_fffe, 0, 0), SvmExit::Other(0xffff_fffe));
        assert_eq!(SvmExit::decode(WBINVD, 0, 0), SvmExit::Other(WBINVD));
        assert_eq!(SvmExit::decode(MONITOR, 0, 0), SvmExit::Other(MONITOR));
        assert_eq!(SvmExit::decode(WRITE_CR3, 0, 0), SvmExit::Other(WRITE_CR3));
    }

    #[test]
    fn plain_codes() {
        let cases = [
            (INTR, SvmExit::Intr),
            (NMI, SvmExit::Nmi),
            (SMI, SvmExit::Smi),
            (INIT, SvmExit::Init),
            (VINTR, SvmExit::Vintr),
            (IRET, SvmExit::Iret),
            (CPUID, SvmExit::Cpuid),
            (HLT, SvmExit::Hlt),
            (SHUTDOWN, SvmExit::Shutdown),
            (VMMCALL, SvmExit::Vmmcall),
            (XSETBV, SvmExit::Xsetbv),
            (INVD, SvmExit::Invd),
        ];
        for (code, e) in cases {
            assert_eq!(SvmExit::decode(code, 0, 0), e, "{}", describe(code));
        }
        assert_eq!(SvmExit::decode(MSR, 0, 0), SvmExit::Msr { write: false });
        assert_eq!(SvmExit::decode(MSR, 1, 0), SvmExit::Msr { write: true });
        let sens = [
            (IDTR_READ, Sensitive::IdtrRead),
            (GDTR_READ, Sensitive::GdtrRead),
            (LDTR_READ, Sensitive::LdtrRead),
            (TR_READ, Sensitive::TrRead),
            (READ_CR0, Sensitive::ReadCr0),
            (PUSHF, Sensitive::Pushf),
            (POPF, Sensitive::Popf),
            (RDTSC, Sensitive::Rdtsc),
        ];
        for (code, s) in sens {
            assert_eq!(SvmExit::decode(code, 0, 0), SvmExit::Sensitive(s));
            assert_eq!(s.exit_code(), code);
        }
    }

    #[test]
    fn svm_opcode_map() {
        // APM vol. 3 (VMRUN .. INVLPGA): 0F 01 D8, DA, DB, DC, DD, DE, DF;
        // exit codes from APM vol. 2 table C-1.
        let apm = [
            (SvmInsn::Vmrun, 0xd8, 0x080),
            (SvmInsn::Vmload, 0xda, 0x082),
            (SvmInsn::Vmsave, 0xdb, 0x083),
            (SvmInsn::Stgi, 0xdc, 0x084),
            (SvmInsn::Clgi, 0xdd, 0x085),
            (SvmInsn::Skinit, 0xde, 0x086),
            (SvmInsn::Invlpga, 0xdf, 0x07a),
        ];
        assert_eq!(SvmInsn::ALL.len(), apm.len());
        for (i, (insn, modrm, code)) in apm.into_iter().enumerate() {
            assert_eq!(SvmInsn::ALL[i], insn);
            assert_eq!(insn.modrm(), modrm, "{insn:?}");
            assert_eq!(insn.exit_code(), code, "{insn:?}");
            assert_eq!(SvmInsn::from_modrm(modrm), Some(insn));
            assert_eq!(SvmInsn::from_exit_code(code), Some(insn));
            assert_eq!(SvmExit::decode(code, 0, 0), SvmExit::SvmInsn(insn));
        }
        // VMMCALL (0F 01 D9) is no SVM instruction; neither is its exit.
        assert_eq!(SvmInsn::from_modrm(0xd9), None);
        assert_eq!(SvmInsn::from_modrm(0xd1), None);
        assert_eq!(SvmInsn::from_exit_code(VMMCALL), None);
        assert_eq!(SvmInsn::from_exit_code(INVLPG), None);
    }
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
