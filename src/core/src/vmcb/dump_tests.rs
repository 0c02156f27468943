// SPDX-License-Identifier: GPL-2.0
//! Host tests of `nsvm_core::vmcb`'s dump of a VMCB.

use super::*;

#[test]
fn dump_names_fields() {
    let mut v = Vmcb::ZERO;
    v.control.intercepts.set(crate::exit::CPUID);
    v.control.intercepts.set(crate::exit::VMRUN);
    v.control.exit_code = crate::exit::HLT;
    v.control.asid = 1;
    v.save.rip = 0xfff0;
    v.save.cs = Segment { selector: 0xf000, attrib: 0x9a, limit: 0xffff, base: 0xffff_0000 };
    let mut s = String::new();
    dump(&v, &mut s).unwrap();
    assert!(s.contains("intercepts: CPUID VMRUN\n"), "{s}");
    assert!(s.contains("exit_code: 0x78 (HLT)"));
    assert!(s.contains("  asid: 0x1\n"));
    assert!(!s.contains("tsc_offset"));
    assert!(s.contains("cs    sel 0xf000 attr 0x09a limit 0x0000ffff base 0x00000000ffff0000"), "{s}");
    assert!(s.contains("  rip: 0xfff0\n"));
}

#[test]
fn diff_lists_changes() {
    let mut a = Vmcb::ZERO;
    a.control.intercepts.set(crate::exit::CPUID);
    a.control.asid = 1;
    a.save.rip = 0x100;
    let mut b = a;
    b.control.intercepts.set(crate::exit::INTR);
    b.control.intercepts.clear(crate::exit::CPUID);
    b.control.asid = 2;
    let mut s = String::new();
    diff(&a, &b, &mut s).unwrap();
    assert_eq!(s, "  + intercept INTR\n  - intercept CPUID\n  asid: 0x1 -> 0x2\n");
}
