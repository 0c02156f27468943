// SPDX-License-Identifier: GPL-2.0
//! The VMCB state save area (APM vol. 2 table B-2) and its segments.

use core::mem::{offset_of, size_of};
use static_assertions::const_assert_eq;

use super::SAVE_AREA_SIZE;

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

const_assert_eq!(size_of::<SaveArea>(), SAVE_AREA_SIZE);
const_assert_eq!(size_of::<Segment>(), 16);

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
