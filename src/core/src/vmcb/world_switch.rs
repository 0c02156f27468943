// SPDX-License-Identifier: GPL-2.0
//! What the world switches read and write of a VMCB: the byte ranges of
//! VMRUN, VMLOAD/VMSAVE and #VMEXIT, and the state saved around a VMRUN.

use core::mem::{offset_of, size_of};

use super::{ControlArea, SaveArea, Segment, Vmcb};

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
/// cleared), nRIP and the guest instruction bytes (decode assists). Everything else, intercepts and permission maps
/// included, stays as the VMCB's owner left it: an emulated #VMEXIT writes
/// back exactly these (L1 may edit the other fields while L2 runs).
pub const EXIT_WRITEBACK: [(usize, usize); 14] = {
    const S: usize = 0x400;
    [
        (offset_of!(ControlArea, int_ctl), 4),
        (offset_of!(ControlArea, int_state), 4),
        (offset_of!(ControlArea, exit_code), offset_of!(ControlArea, nested_ctl) - offset_of!(ControlArea, exit_code)),
        (offset_of!(ControlArea, event_inj), 8),
        // nRIP, then the decode-assist bytes (APM 15.8.4: count and
        // instruction bytes at 0D0h), up to AVIC's backing page.
        (offset_of!(ControlArea, next_rip), offset_of!(ControlArea, avic_backing_page) - offset_of!(ControlArea, next_rip)),
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
