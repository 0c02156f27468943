// SPDX-License-Identifier: GPL-2.0
//! A vCPU's architectural state in its VMCB: the RESET/INIT state, and the
//! mapping between the VMCB (plus the GPRs kept outside it) and KVM's
//! `kvm_regs`, `kvm_sregs` and `kvm_vcpu_events`.
//!
//! EFER is the exception: the VMCB's copy always has SVME set (VMRUN
//! requires it, APM 15.5.1), so the guest's own view of EFER is kept by the
//! caller and passed in or set apart ([`vmcb_efer`]).

use crate::event::{bits as ev_bits, Event, EventType, InjectError};
use crate::exit;
use crate::intercept::Intercepts;
use crate::kvm::{reg, vcpu_events, Dtable, KvmSegment, Regs, SegKind, Sregs, VcpuEvents};
use crate::msr::{self, efer};
use crate::vmcb::{int_ctl, int_state, nested_ctl, tlb_control, ControlArea, SaveArea, Segment, Vmcb};
use crate::x86::{cr0, rflags, Gpr, Gprs};

/// The exits L0 always intercepts in vmcb01 (its policy): physical
/// interrupts, NMIs and SMIs (L0 keeps the processor's), the instructions
/// whose effect L0 emulates or must refuse (CPUID, HLT, port I/O and MSRs
/// through the IOPM/MSRPM, INVD, XSETBV, MONITOR/MWAIT, RDPRU), shutdown,
/// and every SVM instruction (L0 emulates SVM for L1: APM 15.5-15.17).
/// Configurable intercepts (the sensitive-instruction policy) come on top.
pub const L0_INTERCEPT_CODES: [u64; 22] = [
    exit::INTR, exit::NMI, exit::SMI, exit::CPUID, exit::HLT, exit::IOIO, exit::MSR,
    exit::SHUTDOWN, exit::INVD, exit::VMRUN, exit::VMMCALL, exit::VMLOAD, exit::VMSAVE,
    exit::STGI, exit::CLGI, exit::SKINIT, exit::INVLPGA, exit::MONITOR, exit::MWAIT,
    exit::MWAIT_COND, exit::XSETBV, exit::RDPRU,
];

/// [`L0_INTERCEPT_CODES`] as an intercept vector.
pub const L0_INTERCEPTS: Intercepts = {
    let mut v = [0u32; crate::intercept::VECTORS];
    let mut i = 0;
    while i < L0_INTERCEPT_CODES.len() {
        let c = L0_INTERCEPT_CODES[i];
        v[(c / 32) as usize] |= 1 << (c % 32);
        i += 1;
    }
    Intercepts(v)
};

/// L1's ASID in vmcb01 (L2 runs with its own in vmcb02; ASID 0 is the
/// host's, which VMRUN refuses, APM 15.5.1).
pub const L1_ASID: u32 = 1;
/// RDX after RESET when no CPUID table gives the processor signature
/// (family 6).
pub const RESET_RDX_DEFAULT: u64 = 0x600;

/// What RESET/INIT needs from outside the VMCB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResetConfig {
    /// Physical address of the I/O permission map.
    pub iopm_pa: u64,
    /// Physical address of the MSR permission map.
    pub msrpm_pa: u64,
    /// Root of the VM's nested page table (NPT01).
    pub npt_root: u64,
    /// EAX of CPUID leaf 1 in the vCPU's table (the processor signature
    /// RDX holds after RESET), if the table has that leaf.
    pub cpuid1_eax: Option<u32>,
}

/// EFER as the VMCB holds it for a guest EFER `guest`: SVME always set
/// (APM 15.5.1 "EFER.SVME is zero" is a VMRUN consistency check).
pub const fn vmcb_efer(guest: u64) -> u64 {
    guest | efer::SVME
}

/// Segment attributes after RESET (APM vol. 2 14.1.3, table 14-1): present
/// read/write data; CS present execute/read code; LDTR an LDT and TR a
/// busy 32-bit TSS (the system types these registers hold). None is marked
/// accessed.
pub mod reset_attr {
    /// DS, ES, FS, GS, SS.
    pub const DATA: u16 = 0x92;
    /// CS.
    pub const CODE: u16 = 0x9a;
    /// LDTR.
    pub const LDT: u16 = 0x82;
    /// TR.
    pub const TSS: u16 = 0x8b;
}

/// RESET (`init == false`) or INIT (`init == true`) of vmcb01 and the GPRs
/// (APM vol. 2 14.1.3, table 14-1): real mode at F000:FFF0, CR0 = ET|CD|NW,
/// RFLAGS = 2, DR6/DR7 at their reset values, RDX the processor signature,
/// every other GPR zero. INIT keeps CR0.CD/NW and the PAT (APM 14.1.3 and
/// 7.8.1). The control area gets L0's fixed setup: [`L0_INTERCEPTS`], the
/// permission maps, ASID [`L1_ASID`] with a full TLB flush, V_INTR_MASKING
/// and nested paging on `cfg.npt_root`.
///
/// The guest's EFER view is 0 after both; the caller also resets what it
/// keeps outside the VMCB ([`PendingEvents::NONE`], XCR0 and the FPU image
/// on RESET, `crate::fpu`).
///
/// The TSC offset is kept by both: INIT leaves the TSC alone (APM vol. 2
/// 14.1.3: INIT does not change the time-stamp counter), and KVM's
/// `kvm_vcpu_reset` keeps the vCPU's offset on RESET too (userspace writes
/// IA32_TSC if it wants RESET's 0). Zeroing it made an AP's TSC the host's
/// at the guest's INIT/SIPI bring-up, seconds or minutes away from the BSP's.
pub fn reset(vmcb: &mut Vmcb, gprs: &mut Gprs, init: bool, cfg: &ResetConfig) {
    let old_cr0 = vmcb.save.cr0;
    let old_pat = vmcb.save.g_pat;
    let tsc_offset = vmcb.control.tsc_offset;
    *vmcb = Vmcb::ZERO;
    let c = &mut vmcb.control;
    c.tsc_offset = tsc_offset;
    c.intercepts = L0_INTERCEPTS;
    c.iopm_base_pa = cfg.iopm_pa;
    c.msrpm_base_pa = cfg.msrpm_pa;
    c.asid = L1_ASID;
    c.tlb_ctl = tlb_control::FLUSH_ALL;
    c.int_ctl = int_ctl::V_INTR_MASKING;
    c.nested_ctl = nested_ctl::NP_ENABLE;
    c.nested_cr3 = cfg.npt_root;
    let s = &mut vmcb.save;
    let data = Segment { selector: 0, attrib: reset_attr::DATA, limit: 0xffff, base: 0 };
    s.cs = Segment { selector: 0xf000, attrib: reset_attr::CODE, limit: 0xffff, base: 0xffff_0000 };
    s.ds = data;
    s.es = data;
    s.ss = data;
    s.fs = data;
    s.gs = data;
    s.gdtr = Segment { limit: 0xffff, ..Segment::ZERO };
    s.idtr = Segment { limit: 0xffff, ..Segment::ZERO };
    s.ldtr = Segment { selector: 0, attrib: reset_attr::LDT, limit: 0xffff, base: 0 };
    s.tr = Segment { selector: 0, attrib: reset_attr::TSS, limit: 0xffff, base: 0 };
    let cd_nw = cr0::CD | cr0::NW;
    s.cr0 = cr0::ET | if init { old_cr0 & cd_nw } else { cd_nw };
    s.efer = vmcb_efer(0);
    s.rflags = rflags::FIXED;
    s.rip = 0xfff0;
    s.dr6 = 0xffff_0ff0;
    s.dr7 = 0x400;
    s.g_pat = if init { old_pat } else { msr::PAT_RESET };
    *gprs = Gprs::default();
    gprs[Gpr::Rdx] = cfg.cpuid1_eax.map_or(RESET_RDX_DEFAULT, u64::from);
}

/// `KVM_GET_REGS`: RAX, RSP, RIP and RFLAGS from the save area, the other
/// GPRs from `gprs` (where the world switch keeps them).
pub fn get_regs(save: &SaveArea, gprs: &Gprs) -> Regs {
    let mut r = Regs::default();
    r.r[reg::RAX] = save.rax;
    r.r[reg::RBX] = gprs[Gpr::Rbx];
    r.r[reg::RCX] = gprs[Gpr::Rcx];
    r.r[reg::RDX] = gprs[Gpr::Rdx];
    r.r[reg::RSI] = gprs[Gpr::Rsi];
    r.r[reg::RDI] = gprs[Gpr::Rdi];
    r.r[reg::RSP] = save.rsp;
    r.r[reg::RBP] = gprs[Gpr::Rbp];
    for i in 0..8 {
        r.r[reg::R8 + i] = gprs.0[Gpr::R8 as usize + i];
    }
    r.r[reg::RIP] = save.rip;
    r.r[reg::RFLAGS] = save.rflags;
    r
}

/// `KVM_SET_REGS`: the inverse of [`get_regs`] (`gprs[RAX]`/`gprs[RSP]`
/// are left alone: the VMCB holds those). RFLAGS reserved bits are cleared
/// and bit 1 set (APM vol. 2 3.1.6).
pub fn set_regs(save: &mut SaveArea, gprs: &mut Gprs, r: &Regs) {
    gprs[Gpr::Rbx] = r.r[reg::RBX];
    gprs[Gpr::Rcx] = r.r[reg::RCX];
    gprs[Gpr::Rdx] = r.r[reg::RDX];
    gprs[Gpr::Rsi] = r.r[reg::RSI];
    gprs[Gpr::Rdi] = r.r[reg::RDI];
    gprs[Gpr::Rbp] = r.r[reg::RBP];
    for i in 0..8 {
        gprs.0[Gpr::R8 as usize + i] = r.r[reg::R8 + i];
    }
    save.rax = r.r[reg::RAX];
    save.rsp = r.r[reg::RSP];
    save.rip = r.r[reg::RIP];
    save.rflags = (r.r[reg::RFLAGS] & rflags::DEFINED) | rflags::FIXED;
}

/// `KVM_GET_SREGS` from the VMCB, with the guest's EFER view and APIC_BASE
/// (kept outside the VMCB). Segments are reported as KVM's
/// `svm_get_segment` does (`KvmSegment::from_vmcb_as`), SS.DPL as the CPL,
/// CR8 from V_TPR (APM 15.21.1).
pub fn get_sregs(vmcb: &Vmcb, efer: u64, apic_base: u64) -> Sregs {
    let s = &vmcb.save;
    let mut ss = KvmSegment::from_vmcb_as(&s.ss, SegKind::Ss);
    ss.dpl = s.cpl;
    Sregs {
        cs: KvmSegment::from_vmcb_as(&s.cs, SegKind::Cs),
        ds: KvmSegment::from_vmcb_as(&s.ds, SegKind::Data),
        es: KvmSegment::from_vmcb_as(&s.es, SegKind::Data),
        fs: KvmSegment::from_vmcb_as(&s.fs, SegKind::Data),
        gs: KvmSegment::from_vmcb_as(&s.gs, SegKind::Data),
        ss,
        tr: KvmSegment::from_vmcb_as(&s.tr, SegKind::Tr),
        ldt: KvmSegment::from_vmcb_as(&s.ldtr, SegKind::Ldt),
        gdt: Dtable { base: s.gdtr.base, limit: s.gdtr.limit as u16 },
        idt: Dtable { base: s.idtr.base, limit: s.idtr.limit as u16 },
        cr0: s.cr0,
        cr2: s.cr2,
        cr3: s.cr3,
        cr4: s.cr4,
        cr8: u64::from(vmcb.control.int_ctl & int_ctl::V_TPR_MASK),
        efer,
        apic_base,
        interrupt_bitmap: [0; 4],
    }
}

/// `KVM_SET_SREGS` (already checked by `kvm::check_sregs`) into the VMCB:
/// segments, descriptor tables, CR0/2/3/4, the CPL from SS.DPL (the VMCB's
/// CPL field is what VMRUN loads, APM 15.5.1) and CR8 into V_TPR (low four
/// bits, APM 15.21.1). `s.efer` and `s.apic_base` are the caller's to keep
/// (EFER through [`vmcb_efer`] into the VMCB).
pub fn set_sregs(vmcb: &mut Vmcb, s: &Sregs) {
    let v = &mut vmcb.save;
    v.cs = s.cs.to_vmcb();
    v.ds = s.ds.to_vmcb();
    v.es = s.es.to_vmcb();
    v.fs = s.fs.to_vmcb();
    v.gs = s.gs.to_vmcb();
    v.ss = s.ss.to_vmcb();
    v.tr = s.tr.to_vmcb();
    v.ldtr = s.ldt.to_vmcb();
    v.gdtr = Segment { base: s.gdt.base, limit: u32::from(s.gdt.limit), ..Segment::ZERO };
    v.idtr = Segment { base: s.idt.base, limit: u32::from(s.idt.limit), ..Segment::ZERO };
    v.cr0 = s.cr0;
    v.cr2 = s.cr2;
    v.cr3 = s.cr3;
    v.cr4 = s.cr4;
    v.cpl = s.ss.dpl & 3;
    let c = &mut vmcb.control;
    c.int_ctl = (c.int_ctl & !int_ctl::V_TPR_MASK) | (s.cr8 as u32 & 0xf);
}

/// Events of a vCPU that live outside the VMCB: what `KVM_INTERRUPT` and
/// `KVM_NMI` queued, and NMI masking (without vNMI, L0 tracks it: an NMI
/// handler runs until its IRET, APM vol. 2 8.5 and 15.21).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PendingEvents {
    /// External interrupt queued by `KVM_INTERRUPT`, not yet injected.
    pub irq: Option<u8>,
    /// NMI queued by `KVM_NMI`, not yet injected.
    pub nmi_pending: bool,
    /// An NMI handler runs: further NMIs wait for its IRET.
    pub nmi_masked: bool,
    /// RIP of the IRET that ends the NMI handler (its intercept was taken):
    /// NMIs unmask once the guest is past it.
    pub iret_rip: Option<u64>,
    /// An exception userspace queued as pending (`KVM_SET_VCPU_EVENTS` with
    /// `KVM_CAP_EXCEPTION_PAYLOAD`): not delivered yet, so L1 may still
    /// intercept it while L2 runs, and its payload (CR2, DR6) not applied.
    pub exception: Option<QueuedException>,
}

/// A pending exception (KVM's `kvm_queued_exception` with `pending`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueuedException {
    /// Vector (0-31, not 2).
    pub vector: u8,
    /// Error code, if it has one.
    pub error_code: Option<u32>,
    /// #PF's address or #DB's DR6 bits, applied when it is delivered
    /// ([`dr6_with_payload`]), given to L1 in EXITINFO2 when it intercepts
    /// a #PF.
    pub payload: Option<u64>,
}

/// DR6 after a #DB with `payload` (KVM's `kvm_deliver_exception_payload`:
/// the payload has the DR6 bits that are set, the active-low ones
/// (RTM, bit 16; BLD, bit 11) inverted; bit 12 is reserved).
pub const fn dr6_with_payload(dr6: u64, payload: u64) -> u64 {
    const TRAP_BITS: u64 = 0xf;
    const ACTIVE_LOW: u64 = 0xffff_0ff0;
    let mut d = (dr6 & !TRAP_BITS) | ACTIVE_LOW;
    d |= payload;
    d ^= payload & ACTIVE_LOW;
    d & !(1 << 12)
}

impl PendingEvents {
    /// Nothing pending, NMIs unmasked (RESET/INIT).
    pub const NONE: Self = Self { irq: None, nmi_pending: false, nmi_masked: false, iret_rip: None, exception: None };

    /// The IRET intercept L0 set while NMIs are masked was taken at `rip`:
    /// the IRET executes when the guest resumes (the caller clears the
    /// intercept).
    pub fn iret_intercepted(&mut self, rip: u64) {
        self.iret_rip = Some(rip);
    }

    /// After an exit of L1 at `rip`: once the guest has moved past the
    /// intercepted IRET, the NMI handler is over and NMIs unmask. Returns
    /// whether they just did.
    pub fn unmask_if_past_iret(&mut self, rip: u64) -> bool {
        match self.iret_rip {
            Some(r) if r != rip => {
                self.iret_rip = None;
                self.nmi_masked = false;
                true
            }
            _ => false,
        }
    }
}

/// Why `KVM_SET_VCPU_EVENTS` is refused (`EINVAL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetEventsError {
    /// Something nsvm does not model (`VcpuEvents::check_set`): unknown
    /// flags, SMM, exception payloads, an exception vector of 32 or more.
    Unsupported,
    /// The exception cannot be injected (APM 15.20).
    BadException(InjectError),
}

/// `KVM_GET_VCPU_EVENTS` of the running level: the event in delivery
/// (EVENTINJ of `control`), else the interrupt queued by `KVM_INTERRUPT`
/// (KVM reports it as injected); NMI pending/masked; the interrupt shadow
/// (reported as both MOV SS and STI: the VMCB does not tell which).
///
/// With `payload_enabled` (`KVM_CAP_EXCEPTION_PAYLOAD`) `VALID_PAYLOAD` is
/// set and a queued exception is reported as pending with its payload;
/// without, as injected (KVM conflates the two then).
pub fn get_events(control: &ControlArea, pending: &PendingEvents, payload_enabled: bool) -> VcpuEvents {
    let mut e = VcpuEvents { flags: vcpu_events::VALID_NMI_PENDING | vcpu_events::VALID_SHADOW, ..Default::default() };
    if payload_enabled {
        e.flags |= vcpu_events::VALID_PAYLOAD;
    }
    let inj = Event { info: control.event_inj, error_code: control.event_inj_err };
    if let Some(x) = pending.exception {
        e.exception = (!payload_enabled, x.vector, x.error_code.is_some(), x.error_code.unwrap_or(0));
        e.exception_pending = payload_enabled;
        e.exception_payload = x.payload.filter(|_| payload_enabled);
    }
    if inj.valid() {
        match inj.event_type() {
            Some(EventType::Exception) => {
                e.exception = (true, inj.vector(), inj.info & ev_bits::EV != 0, inj.error_code);
            }
            Some(EventType::Nmi) => e.nmi_injected = true,
            Some(EventType::SoftInt) => e.interrupt = (true, inj.vector(), true),
            _ => e.interrupt = (true, inj.vector(), false),
        }
    } else if let Some(irq) = pending.irq {
        e.interrupt = (true, irq, false);
    }
    e.shadow = if control.int_state & int_state::SHADOW != 0 { 3 } else { 0 };
    e.nmi_pending = pending.nmi_pending;
    e.nmi_masked = pending.nmi_masked;
    e
}

/// `KVM_SET_VCPU_EVENTS` into the running level's `control` and `pending`:
/// an exception, NMI or software interrupt in delivery goes back into
/// EVENTINJ (anything else clears it), NMI pending (when flagged valid)
/// and masked and the shadow (when flagged valid) as given.
///
/// An external interrupt reported injected: with an in-kernel APIC
/// (`apic_in_kernel`) it was acknowledged already (its vector is in the
/// APIC's ISR, or the PIC's INTA cycle ran): it goes back into EVENTINJ and
/// is delivered at the next entry whatever RFLAGS.IF and LINT0 say, as
/// KVM's `interrupt.injected` is (the delivery the save interrupted goes on;
/// queued as an ExtINT instead it would wait for an unmasked LINT0 forever
/// with its vector in service, and the vCPU would never take that priority
/// class again). Without an in-kernel APIC it is queued as `KVM_INTERRUPT`
/// queues it (`pending.irq`, injected when the guest can take it).
///
/// `l1_runs`: `control` is vmcb01's (L1 runs), so the IRET intercept that
/// ends masked NMIs follows `nmi_masked`. While L2 runs vmcb01 is left to
/// the caller. Nothing changes when the input is refused.
///
/// `payload_enabled`: `KVM_CAP_EXCEPTION_PAYLOAD`, without which
/// `VALID_PAYLOAD` is refused; a pending exception (with it) is queued in
/// `pending.exception`, not put into EVENTINJ.
pub fn set_events(control: &mut ControlArea, pending: &mut PendingEvents, e: &VcpuEvents, l1_runs: bool, payload_enabled: bool, apic_in_kernel: bool) -> Result<(), SetEventsError> {
    if !e.check_set(payload_enabled) {
        return Err(SetEventsError::Unsupported);
    }
    let e = &e.normalized();
    let queued = if e.exception_pending {
        let ev = Event::new(EventType::Exception, e.exception.1, e.exception.2.then_some(e.exception.3));
        ev.check_injectable().map_err(SetEventsError::BadException)?;
        Some(QueuedException { vector: e.exception.1, error_code: e.exception.2.then_some(e.exception.3), payload: e.exception_payload })
    } else {
        None
    };
    let inj = if e.exception.0 {
        let ev = Event::new(EventType::Exception, e.exception.1, e.exception.2.then_some(e.exception.3));
        ev.check_injectable().map_err(SetEventsError::BadException)?;
        Some(ev)
    } else if e.nmi_injected {
        Some(Event::new(EventType::Nmi, 2, None))
    } else if e.interrupt.0 && e.interrupt.2 {
        Some(Event::new(EventType::SoftInt, e.interrupt.1, None))
    } else if e.interrupt.0 && apic_in_kernel {
        Some(Event::new(EventType::Intr, e.interrupt.1, None))
    } else {
        None
    };
    pending.exception = queued;
    pending.irq = (e.interrupt.0 && !e.interrupt.2 && !apic_in_kernel).then_some(e.interrupt.1);
    if e.flags & vcpu_events::VALID_NMI_PENDING != 0 {
        pending.nmi_pending = e.nmi_pending;
    }
    pending.nmi_masked = e.nmi_masked;
    pending.iret_rip = None;
    if l1_runs {
        if e.nmi_masked {
            control.intercepts.set(exit::IRET);
        } else {
            control.intercepts.clear(exit::IRET);
        }
    }
    match inj {
        Some(ev) => {
            control.event_inj = ev.info;
            control.event_inj_err = ev.error_code;
        }
        None => control.event_inj = 0,
    }
    if e.flags & vcpu_events::VALID_SHADOW != 0 {
        control.int_state = (control.int_state & !int_state::SHADOW) | u32::from(e.shadow != 0);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmcb::seg_attr;

    const CFG: ResetConfig = ResetConfig { iopm_pa: 0x10_0000, msrpm_pa: 0x20_0000, npt_root: 0x30_0000, cpuid1_eax: Some(0x00a2_0f12) };

    fn vmcb() -> Box<Vmcb> {
        Box::new(Vmcb::ZERO)
    }

    #[test]
    fn reset_state() {
        let mut v = vmcb();
        v.save.rip = 0x1234;
        v.save.cr3 = 0x5000;
        v.control.event_inj = 0x8000_0020;
        let mut g = Gprs([7; 16]);
        reset(&mut v, &mut g, false, &CFG);
        let (c, s) = (&v.control, &v.save);
        for code in L0_INTERCEPT_CODES {
            assert!(c.intercepts.test(code), "{code:#x}");
        }
        assert_eq!(c.intercepts.iter().count(), L0_INTERCEPT_CODES.len());
        assert!(!c.intercepts.test(exit::IRET) && !c.intercepts.test(exit::VINTR));
        assert_eq!((c.iopm_base_pa, c.msrpm_base_pa, c.nested_cr3), (0x10_0000, 0x20_0000, 0x30_0000));
        assert_eq!((c.asid, c.tlb_ctl), (1, tlb_control::FLUSH_ALL));
        assert_eq!(c.int_ctl, int_ctl::V_INTR_MASKING);
        assert_eq!(c.nested_ctl, nested_ctl::NP_ENABLE);
        assert_eq!(c.event_inj, 0);
        // APM table 14-1.
        assert_eq!((s.cs.selector, s.cs.base, s.cs.limit, s.cs.attrib), (0xf000, 0xffff_0000, 0xffff, 0x9a));
        for seg in [s.ds, s.es, s.ss, s.fs, s.gs] {
            assert_eq!(seg, Segment { selector: 0, attrib: 0x92, limit: 0xffff, base: 0 });
        }
        assert_eq!((s.gdtr.limit, s.idtr.limit, s.gdtr.base, s.idtr.base), (0xffff, 0xffff, 0, 0));
        assert_eq!((s.ldtr.attrib, s.tr.attrib), (0x82, 0x8b));
        assert_eq!(s.cr0, 0x6000_0010);
        assert_eq!((s.cr3, s.cr4, s.cpl), (0, 0, 0));
        assert_eq!(s.efer, efer::SVME);
        assert_eq!((s.rflags, s.rip), (2, 0xfff0));
        assert_eq!((s.dr6, s.dr7), (0xffff_0ff0, 0x400));
        assert_eq!(s.g_pat, 0x0007_0406_0007_0406);
        let mut want = Gprs::default();
        want[Gpr::Rdx] = 0x00a2_0f12;
        assert_eq!(g, want);
        // Without a CPUID table.
        reset(&mut v, &mut g, false, &ResetConfig { cpuid1_eax: None, ..CFG });
        assert_eq!(g[Gpr::Rdx], 0x600);
        // A VMCB that VMRUN accepts.
        // (on a processor without any optional feature but SVM)
        let f = crate::checks::Features { phys_bits: 48, cr4: 0x7ff, efer: crate::msr::efer::SCE | crate::msr::efer::SVME };
        assert_eq!(crate::checks::check_vmrun(&v.save, &v.control, &f), Ok(()));
    }

    #[test]
    fn init_keeps_cd_nw_and_pat_reset_does_not() {
        let mut v = vmcb();
        let mut g = Gprs::default();
        // Caches enabled (CD/NW clear), a custom PAT.
        v.save.cr0 = cr0::PG | cr0::PE | cr0::ET;
        v.save.g_pat = 0x0606_0606_0606_0606;
        reset(&mut v, &mut g, true, &CFG);
        assert_eq!(v.save.cr0, cr0::ET);
        assert_eq!(v.save.g_pat, 0x0606_0606_0606_0606);
        assert_eq!(v.save.rip, 0xfff0);
        v.save.cr0 = cr0::CD | cr0::PE;
        reset(&mut v, &mut g, true, &CFG);
        assert_eq!(v.save.cr0, cr0::ET | cr0::CD);
        v.save.cr0 = cr0::PE;
        reset(&mut v, &mut g, false, &CFG);
        assert_eq!(v.save.cr0, cr0::ET | cr0::CD | cr0::NW);
        assert_eq!(v.save.g_pat, msr::PAT_RESET);
    }

    #[test]
    fn reset_and_init_keep_the_tsc_offset() {
        let mut v = vmcb();
        let mut g = Gprs::default();
        v.control.tsc_offset = 0xffff_fffe_2b8b_31b8;
        reset(&mut v, &mut g, true, &CFG);
        assert_eq!(v.control.tsc_offset, 0xffff_fffe_2b8b_31b8);
        reset(&mut v, &mut g, false, &CFG);
        assert_eq!(v.control.tsc_offset, 0xffff_fffe_2b8b_31b8);
    }

    fn sample_regs() -> Regs {
        let mut r = Regs::default();
        for (i, x) in r.r.iter_mut().enumerate() {
            *x = 0x1111_0000_0000_0000 * (i as u64 % 15) + i as u64;
        }
        r.r[reg::RFLAGS] = rflags::FIXED | rflags::IF | rflags::ZF;
        r
    }

    #[test]
    fn regs_round_trip_and_placement() {
        let mut v = vmcb();
        let mut g = Gprs::default();
        let r = sample_regs();
        set_regs(&mut v.save, &mut g, &r);
        assert_eq!(get_regs(&v.save, &g), r);
        assert_eq!((v.save.rax, v.save.rsp, v.save.rip), (r.r[reg::RAX], r.r[reg::RSP], r.r[reg::RIP]));
        assert_eq!(g[Gpr::Rbx], r.r[reg::RBX]);
        assert_eq!(g[Gpr::Rcx], r.r[reg::RCX]);
        assert_eq!(g[Gpr::Rdi], r.r[reg::RDI]);
        assert_eq!(g[Gpr::R15], r.r[reg::R8 + 7]);
        assert_eq!((g[Gpr::Rax], g[Gpr::Rsp]), (0, 0));
    }

    #[test]
    fn rflags_reserved_bits() {
        let mut v = vmcb();
        let mut g = Gprs::default();
        let mut r = sample_regs();
        r.r[reg::RFLAGS] = u64::MAX;
        set_regs(&mut v.save, &mut g, &r);
        assert_eq!(v.save.rflags, 0x3f_7fd7);
        r.r[reg::RFLAGS] = 0;
        set_regs(&mut v.save, &mut g, &r);
        assert_eq!(v.save.rflags, 2);
        assert_eq!(get_regs(&v.save, &g).r[reg::RFLAGS], 2);
    }

    fn seg(selector: u16, type_: u8, s: u8, dpl: u8, l: u8, db: u8, limit: u32) -> KvmSegment {
        KvmSegment { base: 0x1000 * u64::from(selector), limit, selector, type_, present: 1, dpl, db, s, l, g: u8::from(limit > 0xfffff), avl: 0, unusable: 0 }
    }

    fn long_mode_sregs() -> Sregs {
        Sregs {
            cs: seg(0x33, 0xb, 1, 3, 1, 0, 0xffff_ffff),
            ds: seg(0x2b, 0x3, 1, 3, 0, 1, 0xffff_ffff),
            es: seg(0x2b, 0x3, 1, 3, 0, 1, 0xffff_ffff),
            fs: KvmSegment { unusable: 1, ..Default::default() },
            gs: seg(0x2b, 0x3, 1, 3, 0, 1, 0xffff),
            ss: seg(0x2b, 0x3, 1, 3, 0, 1, 0xffff_ffff),
            tr: seg(0x40, 0xb, 0, 0, 0, 0, 0x67),
            ldt: seg(0x50, 0x2, 0, 0, 0, 0, 0xfff),
            gdt: Dtable { base: 0xffff_8000_0000_1000, limit: 0x7f },
            idt: Dtable { base: 0xffff_8000_0000_2000, limit: 0xfff },
            cr0: cr0::PG | cr0::PE | cr0::ET | cr0::WP,
            cr2: 0xdead_b000,
            cr3: 0x12_3000,
            cr4: crate::x86::cr4::PAE | crate::x86::cr4::OSFXSR,
            cr8: 0xa,
            efer: efer::LME | efer::LMA | efer::SCE,
            apic_base: 0xfee0_0900,
            interrupt_bitmap: [0; 4],
        }
    }

    #[test]
    fn sregs_round_trip() {
        let mut v = vmcb();
        v.control.int_ctl = int_ctl::V_INTR_MASKING | int_ctl::V_IRQ | 5;
        let s = long_mode_sregs();
        set_sregs(&mut v, &s);
        assert_eq!(v.save.cpl, 3);
        assert_eq!(v.control.int_ctl, int_ctl::V_INTR_MASKING | int_ctl::V_IRQ | 0xa);
        assert_eq!(v.save.cs.attrib, 0xb | seg_attr::S | 3 << 5 | seg_attr::P | seg_attr::L | seg_attr::G);
        assert_eq!(v.save.efer, 0, "EFER is the caller's");
        let got = get_sregs(&v, s.efer, s.apic_base);
        assert_eq!(got, s);
    }

    #[test]
    fn sregs_unusable_segments_and_cpl() {
        let mut v = vmcb();
        let mut s = long_mode_sregs();
        s.ss = KvmSegment { unusable: 1, dpl: 0, db: 1, type_: 3, s: 1, ..Default::default() };
        s.ds = KvmSegment { unusable: 1, present: 1, type_: 3, s: 1, selector: 0, ..Default::default() };
        set_sregs(&mut v, &s);
        assert_eq!((v.save.ss.attrib, v.save.ds.attrib, v.save.fs.attrib), (0, 0, 0));
        assert_eq!(v.save.cpl, 0);
        let got = get_sregs(&v, 0, 0);
        for k in [got.ss, got.ds, got.fs] {
            assert_eq!((k.unusable, k.present, k.db), (1, 0, 0));
        }
        // Data segments read back accessed, TR busy, G from the limit.
        s = long_mode_sregs();
        s.ds.type_ = 0x2;
        s.tr.type_ = 0x9;
        s.cs.g = 0;
        set_sregs(&mut v, &s);
        let got = get_sregs(&v, 0, 0);
        assert_eq!((got.ds.type_, got.tr.type_, got.cs.g), (0x3, 0xb, 1));
    }

    #[test]
    fn cr8_is_v_tpr() {
        let mut v = vmcb();
        v.control.int_ctl = int_ctl::V_IGN_TPR | 0x3;
        let mut s = long_mode_sregs();
        s.cr8 = 0x1f;
        set_sregs(&mut v, &s);
        assert_eq!(v.control.int_ctl, int_ctl::V_IGN_TPR | 0xf);
        assert_eq!(get_sregs(&v, 0, 0).cr8, 0xf);
        v.control.int_ctl = 0x7;
        assert_eq!(get_sregs(&v, 0, 0).cr8, 7);
    }

    fn events_round_trip(e: VcpuEvents, p0: PendingEvents) -> (Box<Vmcb>, PendingEvents, VcpuEvents) {
        let mut v = vmcb();
        let mut p = p0;
        set_events(&mut v.control, &mut p, &e, true, false, false).unwrap();
        let got = get_events(&v.control, &p, false);
        (v, p, got)
    }

    const FLAGS: u32 = vcpu_events::VALID_NMI_PENDING | vcpu_events::VALID_SHADOW;

    #[test]
    fn exception_with_error_code() {
        let e = VcpuEvents { exception: (true, 14, true, 0x6), flags: FLAGS, ..Default::default() };
        let (v, _, got) = events_round_trip(e, PendingEvents::NONE);
        assert_eq!(v.control.event_inj, 0x8000_0b0e);
        assert_eq!(v.control.event_inj_err, 6);
        assert_eq!(got, e);
        let e = VcpuEvents { exception: (true, 6, false, 0), flags: FLAGS, ..Default::default() };
        let (v, _, got) = events_round_trip(e, PendingEvents::NONE);
        assert_eq!(v.control.event_inj, 0x8000_0306);
        assert_eq!(got, e);
    }

    #[test]
    fn nmi_injected_and_masked() {
        let e = VcpuEvents { nmi_injected: true, nmi_masked: true, nmi_pending: true, flags: FLAGS, ..Default::default() };
        let (v, p, got) = events_round_trip(e, PendingEvents::NONE);
        assert_eq!(v.control.event_inj, 0x8000_0202);
        assert!(v.control.intercepts.test(exit::IRET));
        assert!(p.nmi_pending && p.nmi_masked);
        assert_eq!(got, e);
        // Unmasking clears the IRET intercept; L2 running leaves it alone.
        let mut v = vmcb();
        let mut p = PendingEvents { nmi_masked: true, iret_rip: Some(0x10), ..PendingEvents::NONE };
        v.control.intercepts.set(exit::IRET);
        let e = VcpuEvents { flags: FLAGS, ..Default::default() };
        set_events(&mut v.control, &mut p, &e, false, false, false).unwrap();
        assert!(v.control.intercepts.test(exit::IRET));
        assert_eq!(p, PendingEvents::NONE);
        set_events(&mut v.control, &mut p, &e, true, false, false).unwrap();
        assert!(!v.control.intercepts.test(exit::IRET));
    }

    #[test]
    fn soft_int_and_pending_irq() {
        let e = VcpuEvents { interrupt: (true, 0x80, true), flags: FLAGS, ..Default::default() };
        let (v, p, got) = events_round_trip(e, PendingEvents::NONE);
        assert_eq!(v.control.event_inj, 0x8000_0480);
        assert_eq!(p.irq, None);
        assert_eq!(got, e);
        // An external interrupt is queued, not put in EVENTINJ, and reported
        // as injected; a stale EVENTINJ is cleared.
        let mut v = vmcb();
        v.control.event_inj = 0x8000_030d;
        let mut p = PendingEvents::NONE;
        let e = VcpuEvents { interrupt: (true, 0x30, false), shadow: 3, flags: FLAGS, ..Default::default() };
        set_events(&mut v.control, &mut p, &e, true, false, false).unwrap();
        assert_eq!(v.control.event_inj, 0);
        assert_eq!(p.irq, Some(0x30));
        assert_eq!(v.control.int_state, int_state::SHADOW);
        assert_eq!(get_events(&v.control, &p, false), e);
        // EVENTINJ wins over a queued interrupt in the report.
        v.control.event_inj = 0x8000_0031;
        assert_eq!(get_events(&v.control, &p, false).interrupt, (true, 0x31, false));
    }

    #[test]
    fn injected_irq_with_apic_in_kernel_goes_back_into_eventinj() {
        // With an in-kernel APIC the interrupt was acknowledged (in service)
        // before the save: delivered at the next entry, not queued behind
        // LINT0 as an ExtINT (a migrated guest halted with it in ISR).
        let mut v = vmcb();
        let mut p = PendingEvents::NONE;
        let e = VcpuEvents { interrupt: (true, 0x21, false), flags: FLAGS, ..Default::default() };
        set_events(&mut v.control, &mut p, &e, true, false, true).unwrap();
        assert_eq!(v.control.event_inj, 0x8000_0021);
        assert_eq!(p.irq, None);
        assert_eq!(get_events(&v.control, &p, false), e);
        // Without an injected interrupt EVENTINJ is cleared, as before.
        set_events(&mut v.control, &mut p, &VcpuEvents { flags: FLAGS, ..Default::default() }, true, false, true).unwrap();
        assert_eq!(v.control.event_inj, 0);
        assert_eq!(p.irq, None);
    }

    #[test]
    fn flags_gate_nmi_pending_and_shadow() {
        let mut v = vmcb();
        v.control.int_state = int_state::SHADOW;
        let mut p = PendingEvents { nmi_pending: true, ..PendingEvents::NONE };
        let e = VcpuEvents::default();
        set_events(&mut v.control, &mut p, &e, true, false, false).unwrap();
        assert!(p.nmi_pending);
        assert_eq!(v.control.int_state, int_state::SHADOW);
        let got = get_events(&v.control, &p, false);
        assert_eq!((got.nmi_pending, got.shadow, got.flags), (true, 3, FLAGS));
    }

    #[test]
    fn refused_events_change_nothing() {
        let mut v = vmcb();
        v.control.event_inj = 0x8000_0020;
        let mut p = PendingEvents { irq: Some(5), ..PendingEvents::NONE };
        let e = VcpuEvents { exception: (true, 2, false, 0), flags: FLAGS, ..Default::default() };
        // Vector 2 as an exception: refused by KVM's vector check first.
        assert_eq!(set_events(&mut v.control, &mut p, &e, true, false, false), Err(SetEventsError::Unsupported));
        let e = VcpuEvents { exception: (true, 40, false, 0), ..Default::default() };
        assert_eq!(set_events(&mut v.control, &mut p, &e, true, false, false), Err(SetEventsError::Unsupported));
        let e = VcpuEvents { flags: vcpu_events::VALID_SMM, smm: 1, ..Default::default() };
        assert_eq!(set_events(&mut v.control, &mut p, &e, true, false, false), Err(SetEventsError::Unsupported));
        assert_eq!(v.control.event_inj, 0x8000_0020);
        assert_eq!(p.irq, Some(5));
    }

    #[test]
    fn nmi_unmasks_past_the_iret() {
        let mut p = PendingEvents { nmi_masked: true, ..PendingEvents::NONE };
        assert!(!p.unmask_if_past_iret(0x100));
        assert!(p.nmi_masked);
        p.iret_intercepted(0x100);
        assert!(!p.unmask_if_past_iret(0x100));
        assert!(p.nmi_masked);
        assert!(p.unmask_if_past_iret(0x200));
        assert_eq!(p, PendingEvents::NONE);
    }

    #[test]
    fn pending_exception_with_payload() {
        let mut v = Vmcb::ZERO;
        let mut p = PendingEvents::NONE;
        let e = VcpuEvents {
            flags: vcpu_events::VALID_PAYLOAD | FLAGS,
            exception_pending: true,
            exception: (false, 14, true, 2),
            exception_payload: Some(0xdead_b000),
            ..Default::default()
        };
        // Refused without the capability, nothing changed.
        assert_eq!(set_events(&mut v.control, &mut p, &e, true, false, false), Err(SetEventsError::Unsupported));
        assert_eq!(p, PendingEvents::NONE);
        set_events(&mut v.control, &mut p, &e, true, true, false).unwrap();
        // Queued, not in EVENTINJ.
        assert_eq!(v.control.event_inj, 0);
        assert_eq!(p.exception, Some(QueuedException { vector: 14, error_code: Some(2), payload: Some(0xdead_b000) }));
        let got = get_events(&v.control, &p, true);
        assert!(got.exception_pending && !got.exception.0);
        assert_eq!((got.exception.1, got.exception.2, got.exception.3, got.exception_payload), (14, true, 2, Some(0xdead_b000)));
        assert_ne!(got.flags & vcpu_events::VALID_PAYLOAD, 0);
        // Without the capability (disabled again) it reads as injected, no payload.
        let old = get_events(&v.control, &p, false);
        assert!(old.exception.0 && !old.exception_pending && old.exception_payload.is_none());
        // An injected one goes into EVENTINJ and clears the queue.
        let inj = VcpuEvents { exception_pending: false, exception: (true, 12, true, 0x1234), ..e };
        set_events(&mut v.control, &mut p, &inj, true, true, false).unwrap();
        assert_eq!(p.exception, None);
        assert_eq!(Event { info: v.control.event_inj, error_code: v.control.event_inj_err }.vector(), 12);
        // NMI's vector is refused either way.
        let nmi = VcpuEvents { exception: (false, 2, false, 0), ..e };
        assert!(set_events(&mut v.control, &mut p, &nmi, true, true, false).is_err());
    }

    #[test]
    fn dr6_payload_as_kvm() {
        // Fixed-1 bits of DR6 stay, B0 from the payload.
        assert_eq!(dr6_with_payload(0xffff_0ff0, 1), 0xffff_0ff1);
        // The active-low BLD (bit 11) clears when the payload has it.
        assert_eq!(dr6_with_payload(0xffff_0ff0, 1 << 11), 0xffff_07f0);
        // Old trap bits go, bit 12 never set.
        assert_eq!(dr6_with_payload(0xffff_1ff3, 0), 0xffff_0ff0);
    }
}
