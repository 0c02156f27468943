// SPDX-License-Identifier: GPL-2.0
//! SVM features nsvm emulates for L1 beyond what the processor underneath
//! has (QEMU's TCG has none of them): decode assists (APM vol. 2 15.8), the
//! PAUSE intercept filter (APM 15.14.4) and VMSAVE/VMLOAD virtualization
//! (APM 15.33.1). The module computes, at an L2 exit reflected to L1, what
//! a processor with the feature would have written into vmcb12, from L0's
//! own decode of L2's instruction; this file holds the decisions.

use crate::exit;
use crate::insn::is_legacy_prefix;
use crate::mmio::CodeSize;
use crate::sensitive;

/// EXITINFO1 bit 63 of a MOV CRx intercept: the instruction was MOV CRx
/// (APM 15.8.1, table 15-2; KVM's `CR_VALID`).
pub const MOV_CR: u64 = 1 << 63;

/// The instructions behind CR and DR intercepts (APM 15.8.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrDr {
    /// `0F 20 /r` (read) or `0F 22 /r` (write): CR number (ModRM.reg with
    /// REX.R, or CR8 with the LOCK prefix's alternate encoding), GPR number
    /// (ModRM.rm with REX.B).
    MovCr {
        /// MOV to CRn.
        write: bool,
        /// CR number.
        cr: u8,
        /// GPR number.
        gpr: u8,
    },
    /// `0F 21 /r` (read) or `0F 23 /r` (write): DR number, GPR number.
    MovDr {
        /// MOV to DRn.
        write: bool,
        /// DR number.
        dr: u8,
        /// GPR number.
        gpr: u8,
    },
    /// LMSW, CLTS, SMSW: no decode information (APM 15.8.1, "MOV-to-CR0 /
    /// MOV-from-CR0 Special Case").
    Other,
}

/// Decodes the CR/DR access at the start of `b` (legacy prefixes, REX in
/// 64-bit mode). `None` when the bytes are no such instruction.
pub fn decode_crdr(b: &[u8], cs: CodeSize) -> Option<CrDr> {
    let mut i = 0;
    let mut lock = false;
    while i < b.len().min(15) && is_legacy_prefix(b[i]) {
        lock |= b[i] == 0xf0;
        i += 1;
    }
    let mut rex = 0;
    if cs == CodeSize::Bits64 && i < b.len() && b[i] & 0xf0 == 0x40 {
        rex = b[i];
        i += 1;
    }
    if *b.get(i)? != 0x0f {
        return None;
    }
    let op = *b.get(i + 1)?;
    if op == 0x06 {
        return Some(CrDr::Other); // CLTS
    }
    let m = *b.get(i + 2)?;
    if i + 3 > 15 {
        return None;
    }
    let (reg, rm) = ((m >> 3) & 7, m & 7);
    // MOV CR/DR ignore ModRM.mod: the operand is always a register (APM vol. 3 "MOV CRn").
    let gpr = rm | if rex & 1 != 0 { 8 } else { 0 };
    let regx = reg | if rex & 4 != 0 { 8 } else { 0 };
    match op {
        0x20 | 0x22 => Some(CrDr::MovCr { write: op == 0x22, cr: if lock { regx | 8 } else { regx }, gpr }),
        0x21 | 0x23 => Some(CrDr::MovDr { write: op == 0x23, dr: regx, gpr }),
        // 0F 01 /4 SMSW, /6 LMSW.
        0x01 if reg == 4 || reg == 6 => Some(CrDr::Other),
        _ => None,
    }
}

/// Whether `code` is a CR read/write intercept (including the selective
/// CR0 write) or a DR one.
pub const fn is_crdr_exit(code: u64) -> bool {
    code <= exit::WRITE_DR0 + 15 || code == exit::CR0_SEL_WRITE
}

/// The exit code QEMU's TCG should have reported for a CR read: since QEMU
/// 9.1 a MOV from CR3/CR4/CR8 with a read intercept is reported as READ_CR0
/// (docs/architecture.md, "QEMU TCG"); the decoded instruction names the
/// register. Every other exit keeps its code.
pub fn corrected_cr_read(code: u64, d: Option<CrDr>) -> u64 {
    match d {
        Some(CrDr::MovCr { write: false, cr, .. }) if code == exit::READ_CR0 => exit::READ_CR0 + u64::from(cr),
        _ => code,
    }
}

/// Whether L1 intercepts a read of a CR other than CR0. QEMU's TCG (since
/// 9.1) checks a MOV from any CR against the CR0 read intercept and reports
/// READ_CR0 (measured: with only READ_CR4 set, L2's MOV from CR4 does not
/// exit), so on such a processor vmcb02 must intercept CR0 reads too for
/// L1's intercept to fire; L0 then reflects the exit under the decoded
/// register's code ([`corrected_cr_read`]) or emulates the read.
pub fn needs_read_cr0(l1: &crate::intercept::Intercepts) -> bool {
    (1..16).any(|n| l1.test(exit::READ_CR0 + n))
}

/// EXITINFO1 of a CR or DR intercept with decode assists (APM 15.8.1,
/// tables 15-2 and 15-3): MOV CRx sets bit 63 and the GPR number (also for
/// the selective CR0 write); MOV DRx gives the GPR number; LMSW, CLTS and
/// SMSW give 0. `None`: undecodable (L0 leaves what the processor wrote).
pub fn crdr_info1(code: u64, d: Option<CrDr>) -> Option<u64> {
    let d = d?;
    let dr_exit = (exit::READ_DR0..exit::WRITE_DR0 + 16).contains(&code);
    match d {
        CrDr::MovCr { gpr, .. } if !dr_exit => Some(MOV_CR | u64::from(gpr)),
        CrDr::MovDr { gpr, .. } if dr_exit => Some(u64::from(gpr)),
        CrDr::Other if !dr_exit => Some(0),
        _ => None,
    }
}

/// EXITINFO1 of an INTn intercept (APM 15.8.2, table 15-4): the immediate
/// of `CD ib`. QEMU's TCG also checks INT3 (`CC`) and INTO (`CE`) against
/// the INTn intercept (docs/nested.md): their vectors 3 and 4.
pub fn intn_info1(b: &[u8]) -> Option<u64> {
    let mut i = 0;
    while i < b.len().min(14) && is_legacy_prefix(b[i]) {
        i += 1;
    }
    match *b.get(i)? {
        0xcd => b.get(i + 1).map(|v| u64::from(*v)),
        0xcc => Some(3),
        0xce => Some(4),
        _ => None,
    }
}

/// EXITINFO1 of an INVLPG intercept (APM 15.8.3, table 15-5): the linear
/// address of the operand, segment base plus effective address masked to
/// the address size.
pub fn invlpg_info1(b: &[u8], s: &sensitive::State) -> Option<u64> {
    sensitive::invlpg_address(b, s)
}

/// What goes into the Guest Instruction Bytes field (VMCB 0D0h) at an
/// exit (APM 15.8.4, table 15-6): for a nested page fault or an
/// intercepted #PF of a data access, the count of bytes fetched at CS:RIP
/// (up to 15) and the bytes; for every other exit (instruction-fetch
/// faults included) a count of 0.
pub fn wants_insn_bytes(code: u64, info1: u64) -> bool {
    // Error code bit 4 (I/D) for #PF; EXITINFO1 bit 4 for #NPF.
    (code == exit::EXCP_BASE + 14 || code == exit::NPF) && info1 & (1 << 4) == 0
}

/// The PAUSE intercept filter (APM 15.14.4): VMRUN loads vmcb12's
/// PAUSE_FILTER_COUNT into an internal counter; each PAUSE of the guest
/// decrements it, and the intercept happens when it goes below zero (APM
/// table 15-7, "PAUSE"; 15.14.4's advanced filtering says the same, "if
/// the count value is less than zero"): with a count of N the (N+1)th
/// PAUSE exits, with 0 every PAUSE does. The counter is reloaded only by
/// the next VMRUN (the filter threshold is not offered). Returns whether
/// this PAUSE exits.
pub fn pause_filter_exits(counter: &mut i32) -> bool {
    *counter = counter.saturating_sub(1);
    *counter < 0
}

/// VMCB offset 0B8h bit 1: VMSAVE/VMLOAD virtualization enable (APM
/// 15.33.1; bit 0 is LBR virtualization).
pub const V_VMLOAD_VMSAVE_ENABLE: u64 = 1 << 1;

/// What an L2 VMLOAD/VMSAVE that L1 does not intercept does (APM 15.33.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L2Vmload {
    /// Without the enable bit: RAX is a system-physical address, i.e. an
    /// L1 physical address for L2 (APM 15.5: VMLOAD/VMSAVE take a
    /// physical address).
    L1Physical,
    /// Virtualized: RAX is an L2 physical address translated through
    /// NPT12; a fault there is #VMEXIT(NPF) to L1.
    L2Physical,
    /// The enable bit is set but L1 is not in 64-bit mode or L2 runs
    /// without nested paging: #VMEXIT(VMLOAD/VMSAVE) to L1 as if it
    /// intercepted them.
    ExitToL1,
}

/// Decides [`L2Vmload`] from whether the feature was offered to L1, vmcb12's
/// 0B8h field, nested paging for L2 and L1 being in 64-bit mode at its
/// VMRUN (EFER.LMA and CS.L).
pub const fn l2_vmload(offered: bool, virt_ext12: u64, np: bool, l1_64bit: bool) -> L2Vmload {
    if !offered || virt_ext12 & V_VMLOAD_VMSAVE_ENABLE == 0 {
        L2Vmload::L1Physical
    } else if np && l1_64bit {
        L2Vmload::L2Physical
    } else {
        L2Vmload::ExitToL1
    }
}

/// Virtual NMI for L1 (APM 15.21.10): the int_ctl bits of vmcb12 (V_NMI
/// pending, V_NMI_MASK, V_NMI_ENABLE), which L0 keeps in its vmcb12 copy
/// while L2 runs and writes back at #VMEXIT.
pub mod vnmi {
    use crate::event::bits;
    use crate::vmcb::int_ctl::{V_GIF, V_GIF_ENABLE, V_NMI_BLOCKING, V_NMI_ENABLE, V_NMI_PENDING};

    /// Every vNMI bit of int_ctl.
    pub const BITS: u32 = V_NMI_PENDING | V_NMI_BLOCKING | V_NMI_ENABLE;

    /// Whether vNMI is on for L2 (vmcb12's int_ctl).
    pub const fn enabled(int_ctl12: u32) -> bool {
        int_ctl12 & V_NMI_ENABLE != 0
    }

    /// Whether the processor takes the virtual NMI now: enabled, pending,
    /// not masked, virtual interrupts enabled by vGIF (`int_ctl02`: L2's
    /// V_GIF when vGIF is on), no interrupt shadow, and no event being
    /// injected (GIF is set while L2 runs).
    pub const fn deliverable(int_ctl12: u32, int_ctl02: u32, shadow: bool, injecting: bool) -> bool {
        let vgif = int_ctl02 & V_GIF_ENABLE == 0 || int_ctl02 & V_GIF != 0;
        enabled(int_ctl12) && int_ctl12 & V_NMI_PENDING != 0 && int_ctl12 & V_NMI_BLOCKING == 0 && vgif && !shadow && !injecting
    }

    /// int_ctl once the virtual NMI is taken: V_NMI cleared, V_NMI_MASK
    /// set ("before the IDT is accessed").
    pub const fn taken(int_ctl12: u32) -> u32 {
        (int_ctl12 & !V_NMI_PENDING) | V_NMI_BLOCKING
    }

    /// int_ctl at VMRUN: an NMI injected through EVENTINJ with vNMI on sets
    /// V_NMI_MASK.
    pub const fn at_vmrun(int_ctl12: u32, event_inj: u32) -> u32 {
        if enabled(int_ctl12) && event_inj & (bits::VALID | bits::TYPE_MASK) == bits::VALID | (2 << bits::TYPE_SHIFT) {
            int_ctl12 | V_NMI_BLOCKING
        } else {
            int_ctl12
        }
    }

    /// int_ctl written back at #VMEXIT: a #VMEXIT during an NMI's delivery
    /// (EXITINTINFO holds it) saves V_NMI_MASK as 0.
    pub const fn at_exit(int_ctl12: u32, exit_int_info: u32) -> u32 {
        if enabled(int_ctl12) && exit_int_info & (bits::VALID | bits::TYPE_MASK) == bits::VALID | (2 << bits::TYPE_SHIFT) {
            int_ctl12 & !V_NMI_BLOCKING
        } else {
            int_ctl12
        }
    }
}

/// NRIPS for an event L1 injects into L2 on a processor without NRIPS:
/// with NRIP save, VMRUN pushes NEXT_RIP as the return address of an event
/// EVENTINJ delivers as a software interrupt (type 4) or as INT3/INTO's
/// exception (#BP/#OF, type 3: the exceptions that are instructions'
/// traps) (APM vol. 2 15.7.1, 15.20; KVM's `is_evtinj_soft` and its
/// comment in `nested_vmcb02_prepare_control`: "next_rip is consumed on
/// VMRUN as the return address pushed on the stack for injected soft
/// exceptions/interrupts"). A processor without NRIPS pushes RIP, so L0,
/// which offers NRIPS to L1 (`cpuid::L1_FEATURES`), enters L2 with RIP =
/// NEXT_RIP for such a delivery: `Some(NEXT_RIP)` is the RIP to enter
/// with, `None` when nothing is to change. An exit that interrupts the
/// delivery leaves RIP there: [`soft_event_interrupted`] says when to put
/// L2's own RIP back. (A fault raised by the delivery itself and taken by
/// L2 then pushes NEXT_RIP where the processor would push RIP: not
/// modelled.)
pub const fn soft_event_entry_rip(event_inj: u32, rip: u64, next_rip: u64) -> Option<u64> {
    use crate::event::bits;
    if event_inj & bits::VALID == 0 || next_rip == rip {
        return None;
    }
    let ty = (event_inj >> 8) & 7;
    let vector = event_inj & 0xff;
    if ty == 4 || (ty == 3 && (vector == 3 || vector == 4)) {
        Some(next_rip)
    } else {
        None
    }
}

/// After an entry made with [`soft_event_entry_rip`]: whether the exit
/// interrupted that event's delivery (EXITINTINFO holds it, APM 15.7.2),
/// RIP then being the NEXT_RIP L0 entered with, to be put back to L2's.
pub const fn soft_event_interrupted(exit_int_info: u32, injected: u32) -> bool {
    exit_int_info & crate::event::bits::VALID != 0 && exit_int_info == injected
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::x86::Gpr;

    #[test]
    fn mov_cr_dr_decode() {
        let c64 = CodeSize::Bits64;
        // mov %cr3,%rax (0F 20 D8): read CR3 into RAX.
        assert_eq!(decode_crdr(&[0x0f, 0x20, 0xd8], c64), Some(CrDr::MovCr { write: false, cr: 3, gpr: 0 }));
        // mov %r9,%cr4 (41 0F 22 E1): REX.B selects R9.
        assert_eq!(decode_crdr(&[0x41, 0x0f, 0x22, 0xe1], c64), Some(CrDr::MovCr { write: true, cr: 4, gpr: 9 }));
        // mov %rbx,%cr8 (44 0F 22 C3): REX.R selects CR8.
        assert_eq!(decode_crdr(&[0x44, 0x0f, 0x22, 0xc3], c64), Some(CrDr::MovCr { write: true, cr: 8, gpr: 3 }));
        // lock mov %eax,%cr0 = CR8 (AMD's alternate encoding), 32-bit code.
        assert_eq!(decode_crdr(&[0xf0, 0x0f, 0x22, 0xc0], CodeSize::Bits32), Some(CrDr::MovCr { write: true, cr: 8, gpr: 0 }));
        // REX is DEC outside 64-bit mode: not this instruction.
        assert_eq!(decode_crdr(&[0x41, 0x0f, 0x22, 0xe1], CodeSize::Bits32), None);
        // mov %dr7,%rsi (0F 21 FE); mov %r12,%dr3 (41 0F 23 DC).
        assert_eq!(decode_crdr(&[0x0f, 0x21, 0xfe], c64), Some(CrDr::MovDr { write: false, dr: 7, gpr: 6 }));
        assert_eq!(decode_crdr(&[0x41, 0x0f, 0x23, 0xdc], c64), Some(CrDr::MovDr { write: true, dr: 3, gpr: 12 }));
        // CLTS, LMSW %ax (0F 01 F0), SMSW (%rax) (0F 01 20).
        assert_eq!(decode_crdr(&[0x0f, 0x06], c64), Some(CrDr::Other));
        assert_eq!(decode_crdr(&[0x0f, 0x01, 0xf0], c64), Some(CrDr::Other));
        assert_eq!(decode_crdr(&[0x0f, 0x01, 0x20], c64), Some(CrDr::Other));
        // Not a CR/DR access, truncated.
        assert_eq!(decode_crdr(&[0x0f, 0x01, 0xd9], c64), None);
        assert_eq!(decode_crdr(&[0x0f, 0x22], c64), None);
        assert_eq!(decode_crdr(&[0x66; 13].iter().chain(&[0x0f, 0x22, 0xc0]).copied().collect::<Vec<_>>(), c64), None);
    }

    #[test]
    fn crdr_exit_info1() {
        let movcr = Some(CrDr::MovCr { write: true, cr: 3, gpr: 9 });
        assert_eq!(crdr_info1(exit::WRITE_CR3, movcr), Some(MOV_CR | 9));
        assert_eq!(crdr_info1(exit::CR0_SEL_WRITE, Some(CrDr::MovCr { write: true, cr: 0, gpr: 1 })), Some(MOV_CR | 1));
        assert_eq!(crdr_info1(exit::WRITE_CR0, Some(CrDr::Other)), Some(0));
        assert_eq!(crdr_info1(exit::READ_CR0, Some(CrDr::Other)), Some(0));
        assert_eq!(crdr_info1(exit::WRITE_DR7, Some(CrDr::MovDr { write: true, dr: 7, gpr: 2 })), Some(2));
        // The decoded instruction must fit the exit.
        assert_eq!(crdr_info1(exit::WRITE_DR7, movcr), None);
        assert_eq!(crdr_info1(exit::WRITE_CR3, Some(CrDr::MovDr { write: true, dr: 3, gpr: 2 })), None);
        assert_eq!(crdr_info1(exit::WRITE_CR3, None), None);
        assert!(is_crdr_exit(exit::READ_CR0) && is_crdr_exit(exit::WRITE_DR7 + 8) && is_crdr_exit(exit::CR0_SEL_WRITE));
        assert!(!is_crdr_exit(exit::EXCP_BASE) && !is_crdr_exit(exit::INVLPG));
        // QEMU's READ_CR0 for a MOV from CR4 is corrected; writes and the
        // right codes are left alone.
        let rd4 = Some(CrDr::MovCr { write: false, cr: 4, gpr: 0 });
        assert_eq!(corrected_cr_read(exit::READ_CR0, rd4), exit::READ_CR4);
        assert_eq!(corrected_cr_read(exit::READ_CR4, rd4), exit::READ_CR4);
        assert_eq!(corrected_cr_read(exit::READ_CR0, Some(CrDr::Other)), exit::READ_CR0);
        assert_eq!(corrected_cr_read(exit::WRITE_CR0, movcr), exit::WRITE_CR0);
    }

    #[test]
    fn virtual_nmi() {
        use crate::vmcb::int_ctl::*;
        let on = V_NMI_ENABLE | V_NMI_PENDING;
        assert!(vnmi::deliverable(on, 0, false, false));
        assert!(!vnmi::deliverable(V_NMI_PENDING, 0, false, false), "not enabled");
        assert!(!vnmi::deliverable(V_NMI_ENABLE, 0, false, false), "not pending");
        assert!(!vnmi::deliverable(on | V_NMI_BLOCKING, 0, false, false), "masked");
        assert!(!vnmi::deliverable(on, V_GIF_ENABLE, false, false), "vGIF clear");
        assert!(vnmi::deliverable(on, V_GIF_ENABLE | V_GIF, false, false));
        assert!(!vnmi::deliverable(on, 0, true, false) && !vnmi::deliverable(on, 0, false, true));
        assert_eq!(vnmi::taken(on), V_NMI_ENABLE | V_NMI_BLOCKING);
        // EVENTINJ of an NMI (type 2) masks; an interrupt does not.
        assert_eq!(vnmi::at_vmrun(V_NMI_ENABLE, 0x8000_0202), V_NMI_ENABLE | V_NMI_BLOCKING);
        assert_eq!(vnmi::at_vmrun(V_NMI_ENABLE, 0x8000_0020), V_NMI_ENABLE);
        assert_eq!(vnmi::at_vmrun(0, 0x8000_0202), 0);
        // A #VMEXIT while an NMI was delivered: V_NMI_MASK saved as 0.
        let masked = V_NMI_ENABLE | V_NMI_BLOCKING;
        assert_eq!(vnmi::at_exit(masked, 0x8000_0202), V_NMI_ENABLE);
        assert_eq!(vnmi::at_exit(masked, 0x8000_0b0e), masked);
        assert_eq!(vnmi::at_exit(masked, 0), masked);
    }

    #[test]
    fn tcg_cr_reads() {
        let mut i = crate::intercept::Intercepts::default();
        assert!(!needs_read_cr0(&i));
        i.set(exit::READ_CR0);
        i.set(exit::WRITE_CR4);
        assert!(!needs_read_cr0(&i));
        i.set(exit::READ_CR4);
        assert!(needs_read_cr0(&i));
    }

    #[test]
    fn intn_and_invlpg() {
        assert_eq!(intn_info1(&[0xcd, 0x42]), Some(0x42));
        assert_eq!(intn_info1(&[0xcc]), Some(3));
        assert_eq!(intn_info1(&[0xce]), Some(4));
        assert_eq!(intn_info1(&[0xcd]), None);
        assert_eq!(intn_info1(&[0x90]), None);
        let mut s = sensitive::State { cs: Some(CodeSize::Bits64), rip: 0x1000, ..Default::default() };
        s.regs[Gpr::Rax] = 0x7000_0000;
        s.regs[Gpr::Rbx] = 0x10;
        s.seg_base = [0x100, 0x200, 0x300, 0x400, 0x5000, 0x6000];
        // invlpg (%rax): 0F 01 38.
        assert_eq!(invlpg_info1(&[0x0f, 0x01, 0x38], &s), Some(0x7000_0000));
        // invlpg %fs:0x20(%rax,%rbx,2): 64 0F 01 7C 58 20.
        assert_eq!(invlpg_info1(&[0x64, 0x0f, 0x01, 0x7c, 0x58, 0x20], &s), Some(0x5000 + 0x7000_0000 + 0x20 + 0x20));
        // RIP-relative: invlpg 0x10(%rip) (0F 01 3D 10 00 00 00), 7 bytes.
        assert_eq!(invlpg_info1(&[0x0f, 0x01, 0x3d, 0x10, 0, 0, 0], &s), Some(0x1000 + 7 + 0x10));
        // 32-bit code: DS base added, wrapping at 4 GiB.
        let s32 = sensitive::State { cs: Some(CodeSize::Bits32), seg_base: [0, 0, 0, 0xffff_f000, 0, 0], ..s };
        assert_eq!(invlpg_info1(&[0x0f, 0x01, 0x38], &s32), Some(0x6fff_f000));
        let mut s32b = s32;
        s32b.regs[Gpr::Rax] = 0x2000;
        assert_eq!(invlpg_info1(&[0x0f, 0x01, 0x38], &s32b), Some(0x1000));
        // 0F 01 F8 is SWAPGS (mod 3), not INVLPG; INVLPGA (0F 01 DF) neither.
        assert_eq!(invlpg_info1(&[0x0f, 0x01, 0xf8], &s), None);
        assert_eq!(invlpg_info1(&[0x0f, 0x01, 0xdf], &s), None);
    }

    #[test]
    fn instruction_bytes_for_data_faults_only() {
        assert!(wants_insn_bytes(exit::EXCP_BASE + 14, 2));
        assert!(!wants_insn_bytes(exit::EXCP_BASE + 14, 0x10 | 1));
        assert!(wants_insn_bytes(exit::NPF, (1 << 32) | 6));
        assert!(wants_insn_bytes(exit::NPF, (1 << 33) | 4));
        assert!(!wants_insn_bytes(exit::NPF, (1 << 32) | 0x14));
        assert!(!wants_insn_bytes(exit::EXCP_BASE + 13, 0));
        assert!(!wants_insn_bytes(exit::CPUID, 0));
    }

    #[test]
    fn pause_filter() {
        // Count 3: three PAUSEs filtered, the fourth exits.
        let mut c = 3;
        assert_eq!([(); 4].map(|_| pause_filter_exits(&mut c)), [false, false, false, true]);
        // Count 0: every PAUSE exits (the next VMRUN reloads 0).
        let mut z = 0;
        assert!(pause_filter_exits(&mut z));
        assert!(pause_filter_exits(&mut z));
        let mut m = i32::MIN;
        assert!(pause_filter_exits(&mut m));
    }

    #[test]
    fn vmload_virtualization() {
        use L2Vmload::*;
        assert_eq!(l2_vmload(false, 2, true, true), L1Physical);
        assert_eq!(l2_vmload(true, 1, true, true), L1Physical);
        assert_eq!(l2_vmload(true, 2, true, true), L2Physical);
        assert_eq!(l2_vmload(true, 3, true, true), L2Physical);
        assert_eq!(l2_vmload(true, 2, false, true), ExitToL1);
        assert_eq!(l2_vmload(true, 2, true, false), ExitToL1);
    }

    #[test]
    fn soft_events_enter_at_next_rip() {
        use crate::event::{Event, EventType};
        let soft = Event::new(EventType::SoftInt, 0x20, None).info;
        let bp = Event::new(EventType::Exception, 3, None).info;
        let of = Event::new(EventType::Exception, 4, None).info;
        let ud = Event::new(EventType::Exception, 6, None).info;
        let intr = Event::new(EventType::Intr, 0x20, None).info;
        let nmi = Event::new(EventType::Nmi, 2, None).info;
        assert_eq!(soft_event_entry_rip(soft, 0x1000, 0x1002), Some(0x1002));
        assert_eq!(soft_event_entry_rip(bp, 0x1000, 0x1002), Some(0x1002));
        assert_eq!(soft_event_entry_rip(of, 0x1000, 0x1001), Some(0x1001));
        // The same address, other event types, no event: nothing to do.
        assert_eq!(soft_event_entry_rip(soft, 0x1000, 0x1000), None);
        for e in [ud, intr, nmi, 0, soft & !crate::event::bits::VALID] {
            assert_eq!(soft_event_entry_rip(e, 0x1000, 0x1002), None);
        }
        assert!(soft_event_interrupted(bp, bp));
        assert!(!soft_event_interrupted(0, bp));
        assert!(!soft_event_interrupted(soft, bp));
    }
}
