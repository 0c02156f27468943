// SPDX-License-Identifier: GPL-2.0
//! A VMCB that no #VMEXIT of the VMRUN that used it can have written
//! (docs/architecture.md, "Host state in a VMCB under QEMU TCG").
//!
//! Two signs, each impossible on a processor that follows the APM:
//!
//! - the save area holds the host's own state (`SaveArea::holds_host_state`:
//!   the host's CR3 with RIP at nsvm's VMRUN or right after it);
//! - `int_ctl` lost V_INTR_MASKING: a #VMEXIT writes back V_TPR, V_IRQ
//!   and V_GIF and leaves the other bits as VMRUN found them (APM 15.21),
//!   while QEMU's TCG writes back the whole `int_ctl` it loaded at VMRUN
//!   and zeroes it at #VMEXIT, so a #VMEXIT that QEMU takes while the CPU
//!   is already in host mode stores `int_ctl` without V_INTR_MASKING.
//!
//! [`Sighting`] is what the module logs about such a VMCB, so that the
//! log says whose state it is: which CPU's GDT (each CPU has its own), the
//! stack pointer and RAX (the VMCB address of the VMRUN that saved a host
//! state), and what the CPU's host save area held right after.

use core::fmt;

use crate::vmcb::{int_ctl, EntryState, SaveArea, Vmcb};

/// Why a VMCB is not what its VMRUN's #VMEXIT wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sign {
    /// The save area holds the host's own state.
    HostState,
    /// Only `int_ctl` lost V_INTR_MASKING: written by a #VMEXIT taken in
    /// host mode (under QEMU's TCG), the save area holding whatever that
    /// CPU had then.
    IntrMaskingLost,
}

/// Whether `int_ctl` lost V_INTR_MASKING between VMRUN (`at_entry`) and now.
#[inline]
pub const fn intr_masking_lost(at_entry: u32, now: u32) -> bool {
    at_entry & int_ctl::V_INTR_MASKING != 0 && now & int_ctl::V_INTR_MASKING == 0
}

/// Checks the VMCB `v` back from a VMRUN (ending at `vmrun_end`, run with
/// host CR3 `host_cr3`, `entry` the state the VMCB had before): `None`
/// when nothing shows it was written by anything but that VMRUN's #VMEXIT.
#[inline]
pub fn check(v: &Vmcb, entry: &EntryState, vmrun_end: u64, host_cr3: u64) -> Option<Sign> {
    if v.save.holds_host_state(vmrun_end, host_cr3) {
        Some(Sign::HostState)
    } else if intr_masking_lost(entry.int_ctl(), v.control.int_ctl) {
        Some(Sign::IntrMaskingLost)
    } else {
        None
    }
}

/// What a host save area (VM_HSAVE_PA) held, read as QEMU lays it out
/// (the VMCB's save area format; the layout is the implementation's own,
/// APM 15.30.4, so this is only meaningful under QEMU's TCG).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hsave {
    /// VM_HSAVE_PA as read on the CPU.
    pub msr: u64,
    /// RIP saved for the host.
    pub rip: u64,
    /// RSP saved for the host.
    pub rsp: u64,
    /// RAX saved for the host (the VMCB address that VMRUN took).
    pub rax: u64,
    /// CR3 saved for the host.
    pub cr3: u64,
    /// GDTR base saved for the host.
    pub gdtr_base: u64,
}

impl Hsave {
    /// Reads the fields from the page's save area.
    pub fn from_save(msr: u64, s: &SaveArea) -> Self {
        Self { msr, rip: s.rip, rsp: s.rsp, rax: s.rax, cr3: s.cr3, gdtr_base: s.gdtr.base }
    }
}

/// Everything logged about one VMCB with a [`Sign`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sighting {
    /// What shows it.
    pub sign: Sign,
    /// The vCPU.
    pub vcpu: u32,
    /// The CPU that ran the VMRUN.
    pub cpu: u32,
    /// The vCPU's entry count at that VMRUN (its sequence number).
    pub seq: u64,
    /// Physical address of the VMCB.
    pub vmcb_pa: u64,
    /// Whether it was vmcb02 (L2 running).
    pub l2: bool,
    /// The host's CR3 at the VMRUN.
    pub host_cr3: u64,
    /// The RIP VMRUN saves for the host (right after nsvm's VMRUN).
    pub vmrun_end: u64,
    /// EXITCODE as it came back.
    pub exit_code: u64,
    /// EXITINFO1 as it came back.
    pub exit_info_1: u64,
    /// EXITINFO2 as it came back.
    pub exit_info_2: u64,
    /// EXITINTINFO as it came back.
    pub exit_int_info: u32,
    /// `int_ctl` as it came back.
    pub int_ctl: u32,
    /// `int_state` as it came back.
    pub int_state: u32,
    /// Save area as it came back: RIP.
    pub rip: u64,
    /// RSP.
    pub rsp: u64,
    /// RAX.
    pub rax: u64,
    /// CR0.
    pub cr0: u64,
    /// CR3.
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// EFER.
    pub efer: u64,
    /// RFLAGS.
    pub rflags: u64,
    /// CPL.
    pub cpl: u8,
    /// CS selector.
    pub cs_selector: u16,
    /// GDTR base.
    pub gdtr_base: u64,
    /// IDTR base.
    pub idtr_base: u64,
    /// Which CPU's GDT `gdtr_base` is (`None`: no CPU's).
    pub gdt_cpu: Option<u32>,
    /// RIP before the VMRUN.
    pub entry_rip: u64,
    /// `int_ctl` before the VMRUN.
    pub entry_int_ctl: u32,
    /// The running CPU's host save area right after the #VMEXIT.
    pub hsave: Hsave,
}

impl Sighting {
    /// Fills the VMCB's part (the rest is the caller's).
    #[allow(clippy::too_many_arguments)]
    pub fn new(sign: Sign, vcpu: u32, cpu: u32, seq: u64, vmcb_pa: u64, l2: bool, v: &Vmcb, entry: &EntryState) -> Self {
        let (s, c) = (&v.save, &v.control);
        Self {
            sign,
            vcpu,
            cpu,
            seq,
            vmcb_pa,
            l2,
            host_cr3: 0,
            vmrun_end: 0,
            exit_code: c.exit_code,
            exit_info_1: c.exit_info_1,
            exit_info_2: c.exit_info_2,
            exit_int_info: c.exit_int_info,
            int_ctl: c.int_ctl,
            int_state: c.int_state,
            rip: s.rip,
            rsp: s.rsp,
            rax: s.rax,
            cr0: s.cr0,
            cr3: s.cr3,
            cr4: s.cr4,
            efer: s.efer,
            rflags: s.rflags,
            cpl: s.cpl,
            cs_selector: s.cs.selector,
            gdtr_base: s.gdtr.base,
            idtr_base: s.idtr.base,
            gdt_cpu: None,
            entry_rip: entry.rip(),
            entry_int_ctl: entry.int_ctl(),
            hsave: Hsave::default(),
        }
    }
}

/// The CPU whose GDT is at `base`, given each CPU's GDT base in CPU order
/// (0: unknown).
pub fn gdt_owner(gdt_bases: impl IntoIterator<Item = u64>, base: u64) -> Option<u32> {
    if base == 0 {
        return None;
    }
    gdt_bases.into_iter().position(|b| b == base).map(|i| i as u32)
}

impl fmt::Display for Sighting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.sign {
            Sign::HostState => "holds the host's own state",
            Sign::IntrMaskingLost => "lost V_INTR_MASKING (a #VMEXIT taken in host mode wrote it)",
        };
        write!(
            f,
            "vCPU {} entry #{} on CPU {}: {} {:#x} {}: exit {:#x} info1 {:#x} info2 {:#x} exitintinfo {:#x}; \
             int_ctl {:#x} (at entry {:#x}) int_state {:#x}; rip {:#x} (at entry {:#x}) rsp {:#x} rax {:#x} \
             cr0 {:#x} cr3 {:#x} cr4 {:#x} efer {:#x} rflags {:#x} cpl {} cs {:#x} gdtr {:#x} ",
            self.vcpu,
            self.seq,
            self.cpu,
            if self.l2 { "vmcb02" } else { "vmcb01" },
            self.vmcb_pa,
            what,
            self.exit_code,
            self.exit_info_1,
            self.exit_info_2,
            self.exit_int_info,
            self.int_ctl,
            self.entry_int_ctl,
            self.int_state,
            self.rip,
            self.entry_rip,
            self.rsp,
            self.rax,
            self.cr0,
            self.cr3,
            self.cr4,
            self.efer,
            self.rflags,
            self.cpl,
            self.cs_selector,
            self.gdtr_base,
        )?;
        match self.gdt_cpu {
            Some(c) => write!(f, "(CPU {c}'s GDT)")?,
            None => write!(f, "(no CPU's GDT)")?,
        }
        write!(
            f,
            " idtr {:#x}; host cr3 {:#x} vmrun end {:#x}; hsave {:#x}: rip {:#x} rsp {:#x} rax {:#x} cr3 {:#x} gdtr {:#x}",
            self.idtr_base,
            self.host_cr3,
            self.vmrun_end,
            self.hsave.msr,
            self.hsave.rip,
            self.hsave.rsp,
            self.hsave.rax,
            self.hsave.cr3,
            self.hsave.gdtr_base,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmcb::Vmcb;

    const END: u64 = 0xffff_ffff_c000_1234;
    const HOST_CR3: u64 = 0x1_2345_6000;

    fn entered(int_ctl_v: u32) -> (Vmcb, EntryState) {
        let mut v = Vmcb::ZERO;
        v.control.int_ctl = int_ctl_v;
        v.save.rip = 0x1000;
        v.save.cr3 = 0x5000;
        let mut e = EntryState::ZERO;
        e.save(&v);
        (v, e)
    }

    #[test]
    fn a_genuine_exit_has_no_sign() {
        let (mut v, e) = entered(int_ctl::V_INTR_MASKING);
        // The guest moved on, changed its TPR and got a virtual interrupt.
        v.save.rip = 0x1234;
        v.control.int_ctl = int_ctl::V_INTR_MASKING | int_ctl::V_IRQ | 5;
        assert_eq!(check(&v, &e, END, HOST_CR3), None);
        // Without V_INTR_MASKING at entry nothing can be lost.
        let (mut v, e) = entered(0);
        v.control.int_ctl = 0;
        assert_eq!(check(&v, &e, END, HOST_CR3), None);
    }

    #[test]
    fn host_state_comes_first() {
        let (mut v, e) = entered(int_ctl::V_INTR_MASKING);
        v.save.rip = END;
        v.save.cr3 = HOST_CR3;
        v.control.int_ctl = 0;
        assert_eq!(check(&v, &e, END, HOST_CR3), Some(Sign::HostState));
        v.control.int_ctl = int_ctl::V_INTR_MASKING;
        assert_eq!(check(&v, &e, END, HOST_CR3), Some(Sign::HostState));
    }

    #[test]
    fn lost_intr_masking_alone() {
        let (mut v, e) = entered(int_ctl::V_INTR_MASKING | int_ctl::V_IGN_TPR);
        // Another CPU's or another task's host state: not this host's CR3.
        v.save.rip = 0xffff_ffff_8100_0000;
        v.save.cr3 = 0x9_9999_9000;
        v.control.int_ctl = 0;
        assert_eq!(check(&v, &e, END, HOST_CR3), Some(Sign::IntrMaskingLost));
        assert!(intr_masking_lost(int_ctl::V_INTR_MASKING, int_ctl::V_IRQ));
        assert!(!intr_masking_lost(int_ctl::V_INTR_MASKING, int_ctl::V_INTR_MASKING));
        assert!(!intr_masking_lost(0, 0));
    }

    #[test]
    fn gdt_owners() {
        let bases = [0xfffffe0000001000, 0xfffffe0000032000, 0];
        assert_eq!(gdt_owner(bases, 0xfffffe0000032000), Some(1));
        assert_eq!(gdt_owner(bases, 0xfffffe0000001000), Some(0));
        assert_eq!(gdt_owner(bases, 0x1234), None);
        // An unknown CPU's 0 matches nothing.
        assert_eq!(gdt_owner(bases, 0), None);
    }

    #[test]
    fn the_log_line_names_every_value() {
        let (mut v, e) = entered(int_ctl::V_INTR_MASKING);
        v.save.rip = END;
        v.save.cr3 = HOST_CR3;
        v.save.gdtr.base = 0xfffffe0000032000;
        v.control.exit_code = 0x400;
        v.control.int_ctl = 0;
        let mut s = Sighting::new(Sign::HostState, 1, 0, 77, 0x10_2000, false, &v, &e);
        s.gdt_cpu = Some(1);
        s.hsave = Hsave { msr: 0x3000, rip: END, rsp: 0xffffc900, rax: 0x10_2000, cr3: HOST_CR3, gdtr_base: 0xfffffe0000001000 };
        let t = format!("{s}");
        for want in [
            "vCPU 1 entry #77 on CPU 0",
            "vmcb01 0x102000 holds the host's own state",
            "exit 0x400",
            "int_ctl 0x0 (at entry 0x1000000)",
            "rip 0xffffffffc0001234 (at entry 0x1000)",
            "gdtr 0xfffffe0000032000 (CPU 1's GDT)",
            "hsave 0x3000: rip 0xffffffffc0001234 rsp 0xffffc900 rax 0x102000 cr3 0x123456000 gdtr 0xfffffe0000001000",
        ] {
            assert!(t.contains(want), "{want:?} not in {t:?}");
        }
    }
}
