// SPDX-License-Identifier: GPL-2.0
//! The VMCB control area (APM vol. 2 table B-1) and the bits of its fields.

use core::mem::{offset_of, size_of};
use static_assertions::const_assert_eq;

use super::CONTROL_AREA_SIZE;
use crate::intercept::Intercepts;

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

const_assert_eq!(size_of::<ControlArea>(), CONTROL_AREA_SIZE);

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
