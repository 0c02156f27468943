// SPDX-License-Identifier: GPL-2.0
//! The Virtual Machine Control Block (VMCB), APM vol. 2 appendix B.
//!
//! The VMCB is one 4 KiB page: the control area at offset 0 (table B-1, 1 KiB)
//! followed by the state save area at offset 0x400 (table B-2). Every field's
//! offset below is asserted at compile time; a wrong offset fails the build of
//! both the module and the host tests.

use core::mem::{offset_of, size_of};
use static_assertions::const_assert_eq;

use crate::intercept::Intercepts;

/// Size of a VMCB: one page (APM 15.5).
pub const VMCB_SIZE: usize = 4096;
/// Size of the control area (APM table B-1: 000h–3FFh).
pub const CONTROL_AREA_SIZE: usize = 0x400;
/// Size of the state save area (APM table B-2: from 400h to the end of the page).
pub const SAVE_AREA_SIZE: usize = VMCB_SIZE - CONTROL_AREA_SIZE;

/// `TLB_CONTROL` values (VMCB offset 05Ch, APM 15.16.1).
pub mod tlb_control {
    /// Do nothing.
    pub const DO_NOTHING: u8 = 0;
    /// Flush the entire TLB (all entries, all ASIDs) on VMRUN.
    pub const FLUSH_ALL: u8 = 1;
    /// Flush this guest's TLB entries (this ASID).
    pub const FLUSH_ASID: u8 = 3;
    /// Flush this guest's non-global TLB entries.
    pub const FLUSH_ASID_LOCAL: u8 = 7;
}

/// Bits of `int_ctl` (VMCB offset 060h, APM table B-1 and 15.21).
pub mod int_ctl {
    /// V_TPR, virtual TPR for the guest (bits 7:0).
    pub const V_TPR_MASK: u32 = 0xff;
    /// V_IRQ: a virtual interrupt is pending.
    pub const V_IRQ: u32 = 1 << 8;
    /// VGIF: the virtual global interrupt flag (when vGIF is enabled).
    pub const V_GIF: u32 = 1 << 9;
    /// V_NMI: a virtual NMI is pending.
    pub const V_NMI_PENDING: u32 = 1 << 11;
    /// V_NMI_MASK: virtual NMIs are masked.
    pub const V_NMI_BLOCKING: u32 = 1 << 12;
    /// V_INTR_PRIO, priority of the virtual interrupt (bits 19:16).
    pub const V_INTR_PRIO_MASK: u32 = 0xf << 16;
    /// Shift of V_INTR_PRIO.
    pub const V_INTR_PRIO_SHIFT: u32 = 16;
    /// V_IGN_TPR: the virtual interrupt ignores the virtual TPR.
    pub const V_IGN_TPR: u32 = 1 << 20;
    /// V_INTR_MASKING: virtualize EFLAGS.IF and the TPR (APM 15.21.1).
    pub const V_INTR_MASKING: u32 = 1 << 24;
    /// Enable virtual GIF (APM 15.33).
    pub const V_GIF_ENABLE: u32 = 1 << 25;
    /// Enable virtual NMI (APM 15.21.10).
    pub const V_NMI_ENABLE: u32 = 1 << 26;
    /// Enable x2AVIC.
    pub const X2AVIC_ENABLE: u32 = 1 << 30;
    /// Enable AVIC (APM 15.29).
    pub const AVIC_ENABLE: u32 = 1 << 31;
}

/// Bits of `int_state` (VMCB offset 068h).
pub mod int_state {
    /// INTERRUPT_SHADOW: the guest is in an interrupt shadow (after STI / MOV SS).
    pub const SHADOW: u32 = 1 << 0;
    /// GUEST_INTERRUPT_MASK: value of the guest's RFLAGS.IF (when V_INTR_MASKING).
    pub const GUEST_INTERRUPT_MASK: u32 = 1 << 1;
}

/// Bits of `nested_ctl` (VMCB offset 090h).
pub mod nested_ctl {
    /// NP_ENABLE: enable nested paging (APM 15.25.3).
    pub const NP_ENABLE: u64 = 1 << 0;
    /// Enable Secure Encrypted Virtualization.
    pub const SEV_ENABLE: u64 = 1 << 1;
    /// Enable encrypted state for SEV.
    pub const SEV_ES_ENABLE: u64 = 1 << 2;
    /// Guest mode execute trap.
    pub const GMET_ENABLE: u64 = 1 << 3;
    /// Enable supervisor shadow stack restrictions in nested page tables.
    pub const SSS_CHECK_ENABLE: u64 = 1 << 4;
    /// Virtual transparent encryption.
    pub const VTE_ENABLE: u64 = 1 << 5;
    /// Enable read-only guest page table support.
    pub const RO_GPT_ENABLE: u64 = 1 << 6;
    /// Enable INVLPGB/TLBSYNC in the guest.
    pub const INVLPGB_TLBSYNC_ENABLE: u64 = 1 << 7;
}

/// Bits of `virt_ext` (VMCB offset 0B8h).
pub mod virt_ext {
    /// LBR virtualization enable (APM 15.23).
    pub const LBR_VIRTUALIZATION_ENABLE: u64 = 1 << 0;
    /// Virtualized VMSAVE/VMLOAD enable (APM 15.33.1).
    pub const VIRTUAL_VMLOAD_VMSAVE_ENABLE: u64 = 1 << 1;
    /// IBS virtualization enable.
    pub const IBS_VIRTUALIZATION_ENABLE: u64 = 1 << 2;
    /// PMC virtualization enable.
    pub const PMC_VIRTUALIZATION_ENABLE: u64 = 1 << 3;
}

/// VMCB clean bits (VMCB offset 0C0h, APM 15.15.3 table 15-8).
pub mod clean {
    /// Intercept vectors, TSC offset, pause filter count.
    pub const INTERCEPTS: u32 = 1 << 0;
    /// IOPM_BASE, MSRPM_BASE.
    pub const IOPM: u32 = 1 << 1;
    /// ASID.
    pub const ASID: u32 = 1 << 2;
    /// V_TPR, V_IRQ, V_INTR_PRIO, V_IGN_TPR, V_INTR_MASKING, V_INTR_VECTOR.
    pub const TPR: u32 = 1 << 3;
    /// NP_ENABLE, N_CR3, gPAT.
    pub const NP: u32 = 1 << 4;
    /// CR0, CR3, CR4, EFER.
    pub const CRX: u32 = 1 << 5;
    /// DR6, DR7.
    pub const DRX: u32 = 1 << 6;
    /// GDT/IDT limit and base.
    pub const DT: u32 = 1 << 7;
    /// CS/DS/SS/ES sel/base/limit/attr, CPL.
    pub const SEG: u32 = 1 << 8;
    /// CR2.
    pub const CR2: u32 = 1 << 9;
    /// DbgCtlMsr, br_from/to, lastint_from/to.
    pub const LBR: u32 = 1 << 10;
    /// AVIC APIC_BAR, backing page, physical and logical tables.
    pub const AVIC: u32 = 1 << 11;
    /// S_CET, SSP, ISST_ADDR.
    pub const CET: u32 = 1 << 12;
    /// All clean bits defined by the APM.
    pub const ALL: u32 = (1 << 13) - 1;
}

/// The VMCB control area (APM vol. 2 table B-1).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControlArea {
    /// 000h–017h: the six intercept vectors (CR, DR, exceptions, vectors 3–5).
    pub intercepts: Intercepts,
    /// 018h–03Bh: reserved.
    pub reserved_018: [u8; 0x24],
    /// 03Ch: PAUSE filter threshold.
    pub pause_filter_thresh: u16,
    /// 03Eh: PAUSE filter count.
    pub pause_filter_count: u16,
    /// 040h: physical base address of the IOPM (bits 11:0 ignored).
    pub iopm_base_pa: u64,
    /// 048h: physical base address of the MSRPM (bits 11:0 ignored).
    pub msrpm_base_pa: u64,
    /// 050h: TSC offset added to the TSC when the guest reads it.
    pub tsc_offset: u64,
    /// 058h: guest ASID (bits 31:0).
    pub asid: u32,
    /// 05Ch: TLB_CONTROL (bits 39:32), see [`tlb_control`].
    pub tlb_ctl: u8,
    /// 05Dh: ERAPS control (bits 47:40).
    pub erap_ctl: u8,
    /// 05Eh–05Fh: reserved.
    pub reserved_05e: [u8; 2],
    /// 060h: virtual interrupt control, see [`int_ctl`].
    pub int_ctl: u32,
    /// 064h: V_INTR_VECTOR (bits 7:0), rest reserved.
    pub int_vector: u32,
    /// 068h: interrupt shadow and guest interrupt mask, see [`int_state`].
    pub int_state: u32,
    /// 06Ch–06Fh: reserved.
    pub reserved_06c: [u8; 4],
    /// 070h: EXITCODE.
    pub exit_code: u64,
    /// 078h: EXITINFO1.
    pub exit_info_1: u64,
    /// 080h: EXITINFO2.
    pub exit_info_2: u64,
    /// 088h: EXITINTINFO (event being delivered when the exit happened).
    pub exit_int_info: u32,
    /// 08Ch: error code of EXITINTINFO.
    pub exit_int_info_err: u32,
    /// 090h: nested paging and SEV enables, see [`nested_ctl`].
    pub nested_ctl: u64,
    /// 098h: AVIC APIC_BAR (bits 51:0).
    pub avic_vapic_bar: u64,
    /// 0A0h: guest physical address of the GHCB (SEV-ES).
    pub ghcb_gpa: u64,
    /// 0A8h: EVENTINJ (event to inject on VMRUN).
    pub event_inj: u32,
    /// 0ACh: error code of EVENTINJ.
    pub event_inj_err: u32,
    /// 0B0h: N_CR3, the nested page table root.
    pub nested_cr3: u64,
    /// 0B8h: LBR / VMSAVE-VMLOAD virtualization enables, see [`virt_ext`].
    pub virt_ext: u64,
    /// 0C0h: VMCB clean bits (bits 31:0), see [`clean`].
    pub clean: u32,
    /// 0C4h–0C7h: reserved.
    pub reserved_0c4: u32,
    /// 0C8h: nRIP, next sequential instruction pointer (NRIPS).
    pub next_rip: u64,
    /// 0D0h: number of guest instruction bytes fetched (decode assists).
    pub insn_len: u8,
    /// 0D1h–0DFh: guest instruction bytes.
    pub insn_bytes: [u8; 15],
    /// 0E0h: AVIC APIC backing page pointer.
    pub avic_backing_page: u64,
    /// 0E8h–0EFh: reserved.
    pub reserved_0e8: [u8; 8],
    /// 0F0h: AVIC logical table pointer.
    pub avic_logical_id: u64,
    /// 0F8h: AVIC physical table pointer and max index.
    pub avic_physical_id: u64,
    /// 100h–107h: reserved.
    pub reserved_100: [u8; 8],
    /// 108h: VMSA pointer (SEV-ES).
    pub vmsa_pa: u64,
    /// 110h: VMGEXIT_RAX (SEV-ES).
    pub vmgexit_rax: u64,
    /// 118h: VMGEXIT_CPL (SEV-ES).
    pub vmgexit_cpl: u8,
    /// 119h–11Fh: reserved.
    pub reserved_119: [u8; 7],
    /// 120h: bus lock threshold counter.
    pub bus_lock_counter: u16,
    /// 122h–137h: reserved.
    pub reserved_122: [u8; 22],
    /// 138h: allowed SEV features.
    pub allowed_sev_features: u64,
    /// 140h: guest SEV features.
    pub guest_sev_features: u64,
    /// 148h–3DFh: reserved.
    pub reserved_148: [u8; 0x3e0 - 0x148],
    /// 3E0h–3FFh: reserved for host (hypervisor) software use.
    pub reserved_sw: [u8; 32],
}

/// A segment register as the VMCB stores it (APM table B-2).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    /// Selector.
    pub selector: u16,
    /// Packed attributes, see [`seg_attr`].
    pub attrib: u16,
    /// Limit (expanded to bytes).
    pub limit: u32,
    /// Base (only bits 31:0 for CS/SS/DS/ES outside long mode).
    pub base: u64,
}

/// The packed segment attribute format of the VMCB (APM 15.5.1): descriptor
/// bits 47:40 in 7:0 and bits 55:52 in 11:8.
pub mod seg_attr {
    /// Segment type (bits 3:0).
    pub const TYPE_MASK: u16 = 0xf;
    /// S: code/data (1) or system (0).
    pub const S: u16 = 1 << 4;
    /// Shift of DPL (bits 6:5).
    pub const DPL_SHIFT: u16 = 5;
    /// DPL mask.
    pub const DPL_MASK: u16 = 3 << 5;
    /// P: present.
    pub const P: u16 = 1 << 7;
    /// AVL.
    pub const AVL: u16 = 1 << 8;
    /// L: 64-bit code segment.
    pub const L: u16 = 1 << 9;
    /// D/B: default operand size.
    pub const DB: u16 = 1 << 10;
    /// G: granularity.
    pub const G: u16 = 1 << 11;

    /// Packs the attribute bits of a raw 8-byte descriptor into VMCB form.
    pub const fn from_descriptor(desc: u64) -> u16 {
        (((desc >> 40) & 0xff) | (((desc >> 52) & 0xf) << 8)) as u16
    }
    /// Unpacks VMCB attributes into descriptor bits 47:40 and 55:52.
    pub const fn to_descriptor_bits(attr: u16) -> u64 {
        (((attr as u64) & 0xff) << 40) | ((((attr as u64) >> 8) & 0xf) << 52)
    }
}

/// The VMCB state save area (APM vol. 2 table B-2), offsets relative to 400h.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SaveArea {
    /// 000h: ES.
    pub es: Segment,
    /// 010h: CS.
    pub cs: Segment,
    /// 020h: SS.
    pub ss: Segment,
    /// 030h: DS.
    pub ds: Segment,
    /// 040h: FS.
    pub fs: Segment,
    /// 050h: GS.
    pub gs: Segment,
    /// 060h: GDTR (only limit and base are used).
    pub gdtr: Segment,
    /// 070h: LDTR.
    pub ldtr: Segment,
    /// 080h: IDTR (only limit and base are used).
    pub idtr: Segment,
    /// 090h: TR.
    pub tr: Segment,
    /// 0A0h–0C9h: reserved.
    pub reserved_0a0: [u8; 42],
    /// 0CAh: VMPL (SEV-SNP).
    pub vmpl: u8,
    /// 0CBh: CPL.
    pub cpl: u8,
    /// 0CCh–0CFh: reserved.
    pub reserved_0cc: [u8; 4],
    /// 0D0h: EFER.
    pub efer: u64,
    /// 0D8h–147h: reserved.
    pub reserved_0d8: [u8; 112],
    /// 148h: CR4.
    pub cr4: u64,
    /// 150h: CR3.
    pub cr3: u64,
    /// 158h: CR0.
    pub cr0: u64,
    /// 160h: DR7.
    pub dr7: u64,
    /// 168h: DR6.
    pub dr6: u64,
    /// 170h: RFLAGS.
    pub rflags: u64,
    /// 178h: RIP.
    pub rip: u64,
    /// 180h–1D7h: reserved.
    pub reserved_180: [u8; 88],
    /// 1D8h: RSP.
    pub rsp: u64,
    /// 1E0h: S_CET.
    pub s_cet: u64,
    /// 1E8h: SSP.
    pub ssp: u64,
    /// 1F0h: ISST_ADDR.
    pub isst_addr: u64,
    /// 1F8h: RAX.
    pub rax: u64,
    /// 200h: STAR.
    pub star: u64,
    /// 208h: LSTAR.
    pub lstar: u64,
    /// 210h: CSTAR.
    pub cstar: u64,
    /// 218h: SFMASK.
    pub sfmask: u64,
    /// 220h: KernelGSbase.
    pub kernel_gs_base: u64,
    /// 228h: SYSENTER_CS.
    pub sysenter_cs: u64,
    /// 230h: SYSENTER_ESP.
    pub sysenter_esp: u64,
    /// 238h: SYSENTER_EIP.
    pub sysenter_eip: u64,
    /// 240h: CR2.
    pub cr2: u64,
    /// 248h–267h: reserved.
    pub reserved_248: [u8; 32],
    /// 268h: G_PAT, the guest PAT used by nested paging.
    pub g_pat: u64,
    /// 270h: DBGCTL MSR.
    pub dbgctl: u64,
    /// 278h: BR_FROM MSR.
    pub br_from: u64,
    /// 280h: BR_TO MSR.
    pub br_to: u64,
    /// 288h: LASTEXCPFROM MSR.
    pub last_excp_from: u64,
    /// 290h: LASTEXCPTO MSR.
    pub last_excp_to: u64,
    /// 298h: DBGEXTNCFG.
    pub dbg_extn_cfg: u64,
    /// 2A0h–2DFh: reserved.
    pub reserved_2a0: [u8; 64],
    /// 2E0h: SPEC_CTRL (guest value).
    pub spec_ctrl: u64,
    /// 2E8h–BFFh: reserved up to the end of the page.
    pub reserved_2e8: [u8; SAVE_AREA_SIZE - 0x2e8],
}

/// A whole VMCB page.
#[repr(C, align(4096))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vmcb {
    /// Control area at offset 0.
    pub control: ControlArea,
    /// State save area at offset 400h.
    pub save: SaveArea,
}

macro_rules! assert_offsets {
    ($ty:ty { $($field:ident : $off:expr),* $(,)? }) => {
        $( const_assert_eq!(offset_of!($ty, $field), $off); )*
    };
}

const_assert_eq!(size_of::<ControlArea>(), CONTROL_AREA_SIZE);
const_assert_eq!(size_of::<SaveArea>(), SAVE_AREA_SIZE);
const_assert_eq!(size_of::<Vmcb>(), VMCB_SIZE);
const_assert_eq!(size_of::<Segment>(), 16);
const_assert_eq!(offset_of!(Vmcb, save), 0x400);

/// End of the save area's defined fields (its reserved tail, to 1000h, is
/// never read or written by nsvm's world switches: copying 3 KiB where 0x2e8
/// bytes matter is measurable on every nested VMRUN and #VMEXIT).
pub const SAVE_USED_END: usize = 0x400 + offset_of!(SaveArea, reserved_2e8);

/// End of the control area's defined fields (148h–3FFh are reserved, the
/// last 32 bytes for host software): what VMRUN reads of vmcb12's control
/// area and what `nested::merge_control` writes of vmcb02's.
pub const CONTROL_USED_END: usize = offset_of!(ControlArea, reserved_148);

/// The byte ranges of vmcb12 that nested VMRUN copies into L0's cache: the
/// control area's defined fields, and of the save area what VMRUN loads
/// (`SaveArea::copy_vmrun_state`, which the checks and the merge read), in
/// pieces of at most 64 bytes (each copied with inline moves). Not the
/// VMLOAD state (L2 gets vmcb01's, APM 15.5.2) nor the reserved ranges: the
/// cache's are not vmcb12's (VMLOAD/VMSAVE use that part as scratch).
pub const VMRUN_READ: [(usize, usize); 15] = {
    const S: usize = 0x400;
    [
        (0x000, 0x40),
        (0x040, 0x40),
        (0x080, 0x40),
        (0x0c0, 0x40),
        (0x100, 0x40),
        (0x140, CONTROL_USED_END - 0x140),
        (S + offset_of!(SaveArea, es), offset_of!(SaveArea, fs) - offset_of!(SaveArea, es)),
        (S + offset_of!(SaveArea, gdtr), size_of::<Segment>()),
        (S + offset_of!(SaveArea, idtr), size_of::<Segment>()),
        // From 0C8h (two reserved bytes before VMPL): aligned quadwords.
        (S + offset_of!(SaveArea, vmpl) - 2, offset_of!(SaveArea, reserved_0d8) - offset_of!(SaveArea, vmpl) + 2),
        (S + offset_of!(SaveArea, cr4), offset_of!(SaveArea, reserved_180) - offset_of!(SaveArea, cr4)),
        (S + offset_of!(SaveArea, rsp), offset_of!(SaveArea, star) - offset_of!(SaveArea, rsp)),
        (S + offset_of!(SaveArea, cr2), 8),
        (S + offset_of!(SaveArea, g_pat), offset_of!(SaveArea, reserved_2a0) - offset_of!(SaveArea, g_pat)),
        (S + offset_of!(SaveArea, spec_ctrl), 8),
    ]
};

/// The byte ranges of a VMCB that VMLOAD reads and VMSAVE writes (APM
/// 15.5.2): FS, GS, LDTR and TR with their hidden parts, and STAR, LSTAR,
/// CSTAR, SFMASK, KernelGsBase, SYSENTER_CS/ESP/EIP (one run from 200h to
/// 240h) — `SaveArea::copy_vmload_state`'s fields. An emulated VMSAVE
/// writes exactly these: the guest may be writing the rest of the page.
pub const VMSAVE_STATE: [(usize, usize); 4] = {
    const S: usize = 0x400;
    [
        (S + offset_of!(SaveArea, fs), offset_of!(SaveArea, gdtr) - offset_of!(SaveArea, fs)),
        (S + offset_of!(SaveArea, ldtr), size_of::<Segment>()),
        (S + offset_of!(SaveArea, tr), size_of::<Segment>()),
        (S + offset_of!(SaveArea, star), offset_of!(SaveArea, cr2) - offset_of!(SaveArea, star)),
    ]
};

/// The byte ranges of a VMCB that a VMRUN failing its consistency checks
/// writes (#VMEXIT with VMEXIT_INVALID, APM 15.5.1): the exit code (-1),
/// EXITINFO1 and EXITINFO2 (0), and EVENTINJ cleared as by every #VMEXIT
/// ([`EXIT_WRITEBACK`]), as KVM's `nested_svm_copy_vmcb12_to_cache` writes
/// a refused vmcb12 and QEMU's TCG a refused VMCB. No guest state was
/// loaded, so none is saved: the rest of the VMCB, the save area in
/// particular, keeps what its owner wrote.
pub const INVALID_WRITEBACK: [(usize, usize); 2] = [(offset_of!(ControlArea, exit_code), 24), (offset_of!(ControlArea, event_inj), 8)];

/// The byte ranges of a VMCB that #VMEXIT writes (APM 15.6): in the save
/// area the state VMRUN loaded (ES, CS, SS, DS, GDTR, IDTR, CPL, EFER, CR0,
/// CR2, CR3, CR4, DR6, DR7, RFLAGS, RIP, RSP, RAX), not FS, GS, TR, LDTR or
/// the MSRs VMSAVE stores; in the control area the interrupt state, V_TPR/
/// V_IRQ in int_ctl, the exit code and information, EVENTINJ (valid bit
/// cleared) and nRIP. Everything else, intercepts and permission maps
/// included, stays as the VMCB's owner left it: an emulated #VMEXIT writes
/// back exactly these (L1 may edit the other fields while L2 runs).
pub const EXIT_WRITEBACK: [(usize, usize); 14] = {
    const S: usize = 0x400;
    [
        (offset_of!(ControlArea, int_ctl), 4),
        (offset_of!(ControlArea, int_state), 4),
        (offset_of!(ControlArea, exit_code), offset_of!(ControlArea, nested_ctl) - offset_of!(ControlArea, exit_code)),
        (offset_of!(ControlArea, event_inj), 8),
        (offset_of!(ControlArea, next_rip), 8),
        (S + offset_of!(SaveArea, es), offset_of!(SaveArea, fs) - offset_of!(SaveArea, es)),
        (S + offset_of!(SaveArea, gdtr), size_of::<Segment>()),
        (S + offset_of!(SaveArea, idtr), size_of::<Segment>()),
        (S + offset_of!(SaveArea, cpl), 1),
        (S + offset_of!(SaveArea, efer), 8),
        (S + offset_of!(SaveArea, cr4), offset_of!(SaveArea, rip) + 8 - offset_of!(SaveArea, cr4)),
        (S + offset_of!(SaveArea, rsp), 8),
        (S + offset_of!(SaveArea, rax), 8),
        (S + offset_of!(SaveArea, cr2), 8),
    ]
};

/// The part of a VMCB that a VMRUN ending in #VMEXIT may rewrite besides the
/// exit's own report: what #VMEXIT writes ([`EXIT_WRITEBACK`]) but the exit
/// code, EXITINFO1/2, EXITINTINFO, EVENTINJ (which #VMEXIT moves into
/// EXITINTINFO, whence L0 re-injects it) and nRIP. Saved before every VMRUN
/// and put back when VMRUN failed (VMEXIT_INVALID: there was no guest, so
/// there is no guest state to save, APM 15.5.1) or came back holding the
/// host's own state: a processor that checks guest state after it began to
/// save or load state (QEMU's TCG does, docs/nested.md) saves what it had
/// then, partly the host's RIP, RSP, CR3, GDTR..., as if it were the guest's.
/// Kept in the vCPU and saved field by field in place: 26 quadword moves per
/// entry, no copy of a temporary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryState {
    es: Segment,
    cs: Segment,
    ss: Segment,
    ds: Segment,
    gdtr: Segment,
    idtr: Segment,
    cpl: u8,
    int_ctl: u32,
    int_state: u32,
    efer: u64,
    cr0: u64,
    cr2: u64,
    cr3: u64,
    cr4: u64,
    dr7: u64,
    dr6: u64,
    rflags: u64,
    rip: u64,
    rsp: u64,
    rax: u64,
}

impl EntryState {
    /// Nothing saved yet.
    pub const ZERO: Self = Self {
        es: Segment::ZERO,
        cs: Segment::ZERO,
        ss: Segment::ZERO,
        ds: Segment::ZERO,
        gdtr: Segment::ZERO,
        idtr: Segment::ZERO,
        cpl: 0,
        int_ctl: 0,
        int_state: 0,
        efer: 0,
        cr0: 0,
        cr2: 0,
        cr3: 0,
        cr4: 0,
        dr7: 0,
        dr6: 0,
        rflags: 0,
        rip: 0,
        rsp: 0,
        rax: 0,
    };

    /// Saves the state of `v` that a VMRUN may overwrite.
    #[inline]
    pub fn save(&mut self, v: &Vmcb) {
        let (s, c) = (&v.save, &v.control);
        self.es = s.es;
        self.cs = s.cs;
        self.ss = s.ss;
        self.ds = s.ds;
        self.gdtr = s.gdtr;
        self.idtr = s.idtr;
        self.cpl = s.cpl;
        self.int_ctl = c.int_ctl;
        self.int_state = c.int_state;
        self.efer = s.efer;
        self.cr0 = s.cr0;
        self.cr2 = s.cr2;
        self.cr3 = s.cr3;
        self.cr4 = s.cr4;
        self.dr7 = s.dr7;
        self.dr6 = s.dr6;
        self.rflags = s.rflags;
        self.rip = s.rip;
        self.rsp = s.rsp;
        self.rax = s.rax;
    }

    /// Replaces what `save` covers with zeros (EFER keeps SVME, as VMRUN
    /// requires it): for a VMCB that came back holding the host's state
    /// when nothing was saved before the entry (`save` is skipped while the
    /// state is one the processor produced itself), so that no host value
    /// stays where `KVM_GET_REGS/SREGS` or L1 could read it. The exit's
    /// report stays.
    #[cold]
    pub fn scrub(v: &mut Vmcb) {
        let mut zero = Self::ZERO;
        zero.efer = crate::msr::efer::SVME;
        zero.put_back(v);
    }

    /// Records only what the checks after VMRUN read (RIP, `int_ctl`): for
    /// an entry whose state the processor produced itself, which is not
    /// saved in full (a later `put_back` is then not used: `scrub` is).
    #[inline]
    pub fn note(&mut self, v: &Vmcb) {
        self.rip = v.save.rip;
        self.int_ctl = v.control.int_ctl;
    }

    /// RIP before the VMRUN.
    #[inline]
    pub const fn rip(&self) -> u64 {
        self.rip
    }

    /// `int_ctl` before the VMRUN.
    #[inline]
    pub const fn int_ctl(&self) -> u32 {
        self.int_ctl
    }

    /// Puts the saved state back into `v`; the exit's report stays.
    #[cold]
    pub fn put_back(&self, v: &mut Vmcb) {
        let (s, c) = (&mut v.save, &mut v.control);
        s.es = self.es;
        s.cs = self.cs;
        s.ss = self.ss;
        s.ds = self.ds;
        s.gdtr = self.gdtr;
        s.idtr = self.idtr;
        s.cpl = self.cpl;
        c.int_ctl = self.int_ctl;
        c.int_state = self.int_state;
        s.efer = self.efer;
        s.cr0 = self.cr0;
        s.cr2 = self.cr2;
        s.cr3 = self.cr3;
        s.cr4 = self.cr4;
        s.dr7 = self.dr7;
        s.dr6 = self.dr6;
        s.rflags = self.rflags;
        s.rip = self.rip;
        s.rsp = self.rsp;
        s.rax = self.rax;
    }
}

/// Length of the VMRUN instruction (0F 01 D8).
pub const VMRUN_LEN: u64 = 3;

impl SaveArea {
    /// Whether this save area, back from a VMRUN whose instruction ends at
    /// `vmrun_end` (the RIP VMRUN saves for the host), holds the host's own
    /// state: the host's CR3 with RIP at that VMRUN or right after it. No
    /// guest can have both. After it: the host state saved by VMRUN (a QEMU
    /// TCG issue with several vCPUs, docs/architecture.md); at it: what a
    /// processor that faults VMRUN after saving the host state reports (QEMU's
    /// TCG for a check it makes late, docs/nested.md).
    #[inline]
    pub const fn holds_host_state(&self, vmrun_end: u64, host_cr3: u64) -> bool {
        self.cr3 == host_cr3 && (self.rip == vmrun_end || self.rip == vmrun_end.wrapping_sub(VMRUN_LEN))
    }

    /// Copies every defined field except the state VMLOAD/VMSAVE move
    /// (`copy_vmload_state`) and the reserved ranges: what nested VMRUN takes
    /// from vmcb12 into vmcb02 (the VMLOAD state comes from vmcb01). Field
    /// by field: inline moves of ~280 bytes instead of a 744-byte memcpy.
    pub fn copy_vmrun_state(&mut self, from: &SaveArea) {
        self.es = from.es;
        self.cs = from.cs;
        self.ss = from.ss;
        self.ds = from.ds;
        self.gdtr = from.gdtr;
        self.idtr = from.idtr;
        self.vmpl = from.vmpl;
        self.cpl = from.cpl;
        self.efer = from.efer;
        self.cr4 = from.cr4;
        self.cr3 = from.cr3;
        self.cr0 = from.cr0;
        self.dr7 = from.dr7;
        self.dr6 = from.dr6;
        self.rflags = from.rflags;
        self.rip = from.rip;
        self.rsp = from.rsp;
        self.s_cet = from.s_cet;
        self.ssp = from.ssp;
        self.isst_addr = from.isst_addr;
        self.rax = from.rax;
        self.cr2 = from.cr2;
        self.g_pat = from.g_pat;
        self.dbgctl = from.dbgctl;
        self.br_from = from.br_from;
        self.br_to = from.br_to;
        self.last_excp_from = from.last_excp_from;
        self.last_excp_to = from.last_excp_to;
        self.dbg_extn_cfg = from.dbg_extn_cfg;
        self.spec_ctrl = from.spec_ctrl;
    }

    /// The state VMLOAD loads and VMSAVE stores (APM 15.5.2): FS, GS, TR,
    /// LDTR with their hidden parts, KernelGsBase, STAR, LSTAR, CSTAR,
    /// SFMASK, SYSENTER_CS/ESP/EIP. VMRUN and #VMEXIT do not switch it, so
    /// an emulated world switch carries it over from one VMCB to the other.
    pub fn copy_vmload_state(&mut self, from: &SaveArea) {
        self.fs = from.fs;
        self.gs = from.gs;
        self.tr = from.tr;
        self.ldtr = from.ldtr;
        self.kernel_gs_base = from.kernel_gs_base;
        self.star = from.star;
        self.lstar = from.lstar;
        self.cstar = from.cstar;
        self.sfmask = from.sfmask;
        self.sysenter_cs = from.sysenter_cs;
        self.sysenter_esp = from.sysenter_esp;
        self.sysenter_eip = from.sysenter_eip;
    }
}

assert_offsets!(ControlArea {
    intercepts: 0x000, reserved_018: 0x018, pause_filter_thresh: 0x03c,
    pause_filter_count: 0x03e, iopm_base_pa: 0x040, msrpm_base_pa: 0x048,
    tsc_offset: 0x050, asid: 0x058, tlb_ctl: 0x05c, erap_ctl: 0x05d,
    int_ctl: 0x060, int_vector: 0x064, int_state: 0x068, exit_code: 0x070,
    exit_info_1: 0x078, exit_info_2: 0x080, exit_int_info: 0x088,
    exit_int_info_err: 0x08c, nested_ctl: 0x090, avic_vapic_bar: 0x098,
    ghcb_gpa: 0x0a0, event_inj: 0x0a8, event_inj_err: 0x0ac, nested_cr3: 0x0b0,
    virt_ext: 0x0b8, clean: 0x0c0, next_rip: 0x0c8, insn_len: 0x0d0,
    insn_bytes: 0x0d1, avic_backing_page: 0x0e0, avic_logical_id: 0x0f0,
    avic_physical_id: 0x0f8, vmsa_pa: 0x108, vmgexit_rax: 0x110,
    vmgexit_cpl: 0x118, bus_lock_counter: 0x120, allowed_sev_features: 0x138,
    guest_sev_features: 0x140, reserved_148: 0x148, reserved_sw: 0x3e0,
});

assert_offsets!(SaveArea {
    es: 0x000, cs: 0x010, ss: 0x020, ds: 0x030, fs: 0x040, gs: 0x050,
    gdtr: 0x060, ldtr: 0x070, idtr: 0x080, tr: 0x090, vmpl: 0x0ca, cpl: 0x0cb,
    efer: 0x0d0, cr4: 0x148, cr3: 0x150, cr0: 0x158, dr7: 0x160, dr6: 0x168,
    rflags: 0x170, rip: 0x178, rsp: 0x1d8, s_cet: 0x1e0, ssp: 0x1e8,
    isst_addr: 0x1f0, rax: 0x1f8, star: 0x200, lstar: 0x208, cstar: 0x210,
    sfmask: 0x218, kernel_gs_base: 0x220, sysenter_cs: 0x228,
    sysenter_esp: 0x230, sysenter_eip: 0x238, cr2: 0x240, g_pat: 0x268,
    dbgctl: 0x270, br_from: 0x278, br_to: 0x280, last_excp_from: 0x288,
    last_excp_to: 0x290, dbg_extn_cfg: 0x298, spec_ctrl: 0x2e0,
});

impl ControlArea {
    /// An all-zero control area.
    pub const ZERO: Self = Self {
        intercepts: Intercepts::NONE,
        reserved_018: [0; 0x24],
        pause_filter_thresh: 0,
        pause_filter_count: 0,
        iopm_base_pa: 0,
        msrpm_base_pa: 0,
        tsc_offset: 0,
        asid: 0,
        tlb_ctl: 0,
        erap_ctl: 0,
        reserved_05e: [0; 2],
        int_ctl: 0,
        int_vector: 0,
        int_state: 0,
        reserved_06c: [0; 4],
        exit_code: 0,
        exit_info_1: 0,
        exit_info_2: 0,
        exit_int_info: 0,
        exit_int_info_err: 0,
        nested_ctl: 0,
        avic_vapic_bar: 0,
        ghcb_gpa: 0,
        event_inj: 0,
        event_inj_err: 0,
        nested_cr3: 0,
        virt_ext: 0,
        clean: 0,
        reserved_0c4: 0,
        next_rip: 0,
        insn_len: 0,
        insn_bytes: [0; 15],
        avic_backing_page: 0,
        reserved_0e8: [0; 8],
        avic_logical_id: 0,
        avic_physical_id: 0,
        reserved_100: [0; 8],
        vmsa_pa: 0,
        vmgexit_rax: 0,
        vmgexit_cpl: 0,
        reserved_119: [0; 7],
        bus_lock_counter: 0,
        reserved_122: [0; 22],
        allowed_sev_features: 0,
        guest_sev_features: 0,
        reserved_148: [0; 0x3e0 - 0x148],
        reserved_sw: [0; 32],
    };
}

impl SaveArea {
    /// An all-zero state save area.
    pub const ZERO: Self = Self {
        es: Segment::ZERO,
        cs: Segment::ZERO,
        ss: Segment::ZERO,
        ds: Segment::ZERO,
        fs: Segment::ZERO,
        gs: Segment::ZERO,
        gdtr: Segment::ZERO,
        ldtr: Segment::ZERO,
        idtr: Segment::ZERO,
        tr: Segment::ZERO,
        reserved_0a0: [0; 42],
        vmpl: 0,
        cpl: 0,
        reserved_0cc: [0; 4],
        efer: 0,
        reserved_0d8: [0; 112],
        cr4: 0,
        cr3: 0,
        cr0: 0,
        dr7: 0,
        dr6: 0,
        rflags: 0,
        rip: 0,
        reserved_180: [0; 88],
        rsp: 0,
        s_cet: 0,
        ssp: 0,
        isst_addr: 0,
        rax: 0,
        star: 0,
        lstar: 0,
        cstar: 0,
        sfmask: 0,
        kernel_gs_base: 0,
        sysenter_cs: 0,
        sysenter_esp: 0,
        sysenter_eip: 0,
        cr2: 0,
        reserved_248: [0; 32],
        g_pat: 0,
        dbgctl: 0,
        br_from: 0,
        br_to: 0,
        last_excp_from: 0,
        last_excp_to: 0,
        dbg_extn_cfg: 0,
        reserved_2a0: [0; 64],
        spec_ctrl: 0,
        reserved_2e8: [0; SAVE_AREA_SIZE - 0x2e8],
    };
}

impl Segment {
    /// An all-zero (null, not present) segment.
    pub const ZERO: Self = Self { selector: 0, attrib: 0, limit: 0, base: 0 };
}

impl Vmcb {
    /// An all-zero VMCB.
    pub const ZERO: Self = Self { control: ControlArea::ZERO, save: SaveArea::ZERO };

    /// True when the exit code means VMEXIT_INVALID. Hardware stores -1; QEMU
    /// 10.0.2 TCG stores `0x0000_0000_ffff_ffff` (docs/architecture.md, "QEMU TCG"), so both count.
    pub const fn exit_is_invalid(exit_code: u64) -> bool {
        exit_code == u64::MAX || exit_code == 0xffff_ffff
    }
}

#[cfg(test)]
mod tests;

fn control_fields(c: &ControlArea) -> [(&'static str, u64); 18] {
    [
        ("iopm_base_pa", c.iopm_base_pa),
        ("msrpm_base_pa", c.msrpm_base_pa),
        ("tsc_offset", c.tsc_offset),
        ("asid", u64::from(c.asid)),
        ("tlb_ctl", u64::from(c.tlb_ctl)),
        ("int_ctl", u64::from(c.int_ctl)),
        ("int_vector", u64::from(c.int_vector)),
        ("int_state", u64::from(c.int_state)),
        ("exit_code", c.exit_code),
        ("exit_info_1", c.exit_info_1),
        ("exit_info_2", c.exit_info_2),
        ("exit_int_info", u64::from(c.exit_int_info) | (u64::from(c.exit_int_info_err) << 32)),
        ("nested_ctl", c.nested_ctl),
        ("nested_cr3", c.nested_cr3),
        ("event_inj", u64::from(c.event_inj) | (u64::from(c.event_inj_err) << 32)),
        ("virt_ext", c.virt_ext),
        ("clean", u64::from(c.clean)),
        ("next_rip", c.next_rip),
    ]
}

/// Writes what differs between two VMCBs (e.g. L1's vmcb12 and the vmcb02
/// L0 built from it): intercepts added or removed, control fields and state
/// that differ, as `name: a -> b`.
pub fn diff(a: &Vmcb, b: &Vmcb, w: &mut impl core::fmt::Write) -> core::fmt::Result {
    for code in b.control.intercepts.iter().filter(|c| !a.control.intercepts.test(*c)) {
        writeln!(w, "  + intercept {}", crate::exit::describe(code))?;
    }
    for code in a.control.intercepts.iter().filter(|c| !b.control.intercepts.test(*c)) {
        writeln!(w, "  - intercept {}", crate::exit::describe(code))?;
    }
    for ((n, x), (_, y)) in control_fields(&a.control).iter().zip(control_fields(&b.control).iter()) {
        if x != y {
            writeln!(w, "  {n}: {x:#x} -> {y:#x}")?;
        }
    }
    for ((n, x), (_, y)) in save_fields(&a.save).iter().zip(save_fields(&b.save).iter()) {
        if x != y {
            writeln!(w, "  {n}: {x:#x} -> {y:#x}")?;
        }
    }
    Ok(())
}

fn save_fields(s: &SaveArea) -> [(&'static str, u64); 26] {
    [
        ("cpl", u64::from(s.cpl)), ("efer", s.efer), ("cr0", s.cr0), ("cr2", s.cr2), ("cr3", s.cr3),
        ("cr4", s.cr4), ("dr6", s.dr6), ("dr7", s.dr7), ("rflags", s.rflags), ("rip", s.rip),
        ("rsp", s.rsp), ("rax", s.rax), ("star", s.star), ("lstar", s.lstar), ("cstar", s.cstar),
        ("sfmask", s.sfmask), ("kernel_gs_base", s.kernel_gs_base), ("sysenter_cs", s.sysenter_cs),
        ("sysenter_esp", s.sysenter_esp), ("sysenter_eip", s.sysenter_eip), ("g_pat", s.g_pat),
        ("dbgctl", s.dbgctl), ("br_from", s.br_from), ("br_to", s.br_to), ("last_excp_from", s.last_excp_from),
        ("last_excp_to", s.last_excp_to),
    ]
}

/// Writes a readable dump of `v`: every non-zero control field, the
/// intercepts by name, the exit code and EXITINTINFO decoded, and the guest
/// state (segments, control registers, MSR fields).
pub fn dump(v: &Vmcb, w: &mut impl core::fmt::Write) -> core::fmt::Result {
    let c = &v.control;
    let s = &v.save;
    writeln!(w, "control area")?;
    write!(w, "  intercepts:")?;
    for code in c.intercepts.iter() {
        write!(w, " {}", crate::exit::describe(code))?;
    }
    writeln!(w)?;
    writeln!(w, "  exit_code: {:#x} ({})", c.exit_code, crate::exit::describe(c.exit_code))?;
    for (n, val) in control_fields(c) {
        if val != 0 && n != "exit_code" {
            writeln!(w, "  {n}: {val:#x}")?;
        }
    }
    writeln!(w, "state save area")?;
    let segs: [(&str, &Segment); 10] = [
        ("es", &s.es), ("cs", &s.cs), ("ss", &s.ss), ("ds", &s.ds), ("fs", &s.fs), ("gs", &s.gs),
        ("gdtr", &s.gdtr), ("ldtr", &s.ldtr), ("idtr", &s.idtr), ("tr", &s.tr),
    ];
    for (n, g) in segs {
        writeln!(w, "  {n:<5} sel {:#06x} attr {:#05x} limit {:#010x} base {:#018x}", g.selector, g.attrib, g.limit, g.base)?;
    }
    for (n, val) in save_fields(s) {
        writeln!(w, "  {n}: {val:#x}")?;
    }
    Ok(())
}

#[cfg(test)]
mod dump_tests;
