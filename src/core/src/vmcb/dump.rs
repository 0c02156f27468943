// SPDX-License-Identifier: GPL-2.0
//! A readable dump of a VMCB, and the difference between two.

use super::{ControlArea, SaveArea, Segment, Vmcb};

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
