// SPDX-License-Identifier: GPL-2.0
//! Host tests of the VMCB layout and helpers (`nsvm_core::vmcb`).

use super::*;
use crate::intercept::Intercepts;

#[test]
fn exit_writeback_ranges() {
    assert_eq!(SAVE_USED_END, 0x6e8);
    assert_eq!(CONTROL_USED_END, 0x148);
    // VMRUN_READ: the control area's defined part, and exactly what
    // copy_vmrun_state copies of the save area.
    assert_eq!(VMRUN_READ.iter().filter(|(o, _)| *o < 0x400).map(|(_, l)| l).sum::<usize>(), CONTROL_USED_END);
    assert!(VMRUN_READ.iter().all(|&(o, l)| l <= 64 && (o + l <= CONTROL_USED_END || (o >= 0x400 && o + l <= SAVE_USED_END))));
    {
        let mut full = SaveArea::ZERO;
        // SAFETY: (test only) SaveArea is plain old data.
        let b = unsafe { core::slice::from_raw_parts_mut((&mut full as *mut SaveArea).cast::<u8>(), SAVE_USED_END - 0x400) };
        for (i, x) in b.iter_mut().enumerate() {
            *x = (i as u8).wrapping_mul(13) | 0x80;
        }
        let mut part = SaveArea::ZERO;
        // SAFETY: (test only) as above.
        let p = unsafe { core::slice::from_raw_parts_mut((&mut part as *mut SaveArea).cast::<u8>(), SAVE_USED_END - 0x400) };
        for &(o, l) in VMRUN_READ.iter().filter(|(o, _)| *o >= 0x400) {
            p[o - 0x400..o - 0x400 + l].copy_from_slice(&b[o - 0x400..o - 0x400 + l]);
        }
        let (mut a, mut c) = (SaveArea::ZERO, SaveArea::ZERO);
        a.copy_vmrun_state(&full);
        c.copy_vmrun_state(&part);
        assert_eq!(a, c);
        // ... and nothing more of the save area than it reads.
        let read: usize = VMRUN_READ.iter().filter(|(o, _)| *o >= 0x400).map(|(_, l)| l).sum();
        assert_eq!(read, 0x40 + 16 + 16 + 16 + 0x38 + 0x28 + 8 + 0x38 + 8);
        assert!(VMRUN_READ.iter().all(|(o, l)| o % 8 == 0 && l % 8 == 0));
    }
    // VMSAVE_STATE is exactly what copy_vmload_state copies.
    {
        let mut from = SaveArea::ZERO;
        // SAFETY: (test only) SaveArea is plain old data.
        let fb = unsafe { core::slice::from_raw_parts_mut((&mut from as *mut SaveArea).cast::<u8>(), SAVE_USED_END - 0x400) };
        for (i, b) in fb.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(11) | 1;
        }
        let mut by_ranges = Vmcb::ZERO;
        {
            // SAFETY: (test only) Vmcb is plain old data, one page.
            let vb = unsafe { core::slice::from_raw_parts_mut((&mut by_ranges as *mut Vmcb).cast::<u8>(), VMCB_SIZE) };
            // SAFETY: (test only) as above.
            let fb = unsafe { core::slice::from_raw_parts((&from as *const SaveArea).cast::<u8>(), SAVE_USED_END - 0x400) };
            for &(o, l) in VMSAVE_STATE.iter() {
                vb[o..o + l].copy_from_slice(&fb[o - 0x400..o - 0x400 + l]);
            }
        }
        let mut by_fields = SaveArea::ZERO;
        by_fields.copy_vmload_state(&from);
        assert_eq!(by_ranges.save, by_fields);
        assert_eq!(by_ranges.control, ControlArea::ZERO);
    }
    // copy_vmrun_state + copy_vmload_state copy every defined field of
    // the save area (all but the reserved ranges).
    let mut from = SaveArea::ZERO;
    // SAFETY: (test only) SaveArea is plain old data.
    let fb = unsafe { core::slice::from_raw_parts_mut((&mut from as *mut SaveArea).cast::<u8>(), SAVE_USED_END - 0x400) };
    for (i, b) in fb.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(7) | 1;
    }
    let mut to = SaveArea::ZERO;
    to.copy_vmrun_state(&from);
    to.copy_vmload_state(&from);
    // SAFETY: (test only) as above.
    let tb = unsafe { core::slice::from_raw_parts((&to as *const SaveArea).cast::<u8>(), SAVE_USED_END - 0x400) };
    // SAFETY: (test only) as above.
    let fb = unsafe { core::slice::from_raw_parts((&from as *const SaveArea).cast::<u8>(), SAVE_USED_END - 0x400) };
    let reserved = [(0xa0, 0xca), (0xcc, 0xd0), (0xd8, 0x148), (0x180, 0x1d8), (0x248, 0x268), (0x2a0, 0x2e0)];
    for i in 0..SAVE_USED_END - 0x400 {
        let want = if reserved.iter().any(|&(a, b)| (a..b).contains(&i)) { 0 } else { fb[i] };
        assert_eq!(tb[i], want, "save area byte {i:#x}");
    }
    assert!(EXIT_WRITEBACK.iter().all(|(o, l)| o + l <= SAVE_USED_END));
    // A failed VMRUN: exit code, EXITINFO1, EXITINFO2, EVENTINJ (and
    // its error code) only; all of it is also what #VMEXIT writes.
    assert_eq!(INVALID_WRITEBACK, [(0x70, 24), (0xa8, 8)]);
    assert_eq!(offset_of!(ControlArea, exit_info_2) + 8, 0x70 + 24);
    assert!(INVALID_WRITEBACK.iter().all(|&(o, l)| EXIT_WRITEBACK.iter().any(|&(a, n)| a <= o && o + l <= a + n)));
    // int_ctl 60h, int_state 68h, exit_code..exit_int_info_err 70h-8Fh,
    // EVENTINJ A8h, nRIP C8h with the instruction bytes D0h-DFh; never the intercepts or the maps. Save
    // area (400h+): ES-DS 000h-03Fh, GDTR 060h, IDTR 080h, CPL 0CBh,
    // EFER 0D0h, CR4..RIP 148h-17Fh, RSP 1D8h, RAX 1F8h, CR2 240h.
    assert_eq!(
        EXIT_WRITEBACK,
        [(0x60, 4), (0x68, 4), (0x70, 0x20), (0xa8, 8), (0xc8, 0x18), (0x400, 0x40), (0x460, 16), (0x480, 16), (0x4cb, 1), (0x4d0, 8), (0x548, 0x38), (0x5d8, 8), (0x5f8, 8), (0x640, 8)]
    );
    let mut a = SaveArea::ZERO;
    let mut b = SaveArea::ZERO;
    b.fs.base = 7;
    b.lstar = 9;
    b.rip = 5;
    a.copy_vmload_state(&b);
    assert_eq!((a.fs.base, a.lstar, a.rip), (7, 9, 0));
}

#[test]
fn entry_state_covers_what_vmexit_writes_but_the_exit_information() {
    fn bytes(v: &mut Vmcb) -> &mut [u8] {
        // SAFETY: (test only) Vmcb is plain old data.
        unsafe { core::slice::from_raw_parts_mut((v as *mut Vmcb).cast::<u8>(), core::mem::size_of::<Vmcb>()) }
    }
    let mut a = Vmcb::ZERO;
    for (i, b) in bytes(&mut a).iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(7) | 1;
    }
    let mut saved = EntryState::ZERO;
    saved.save(&a);
    let mut b = Vmcb::ZERO;
    for (i, x) in bytes(&mut b).iter_mut().enumerate() {
        *x = (i as u8).wrapping_mul(11) ^ 0x5a;
    }
    let before_b = b;
    saved.put_back(&mut b);
    let (ab, bb, b0) = (bytes(&mut a).to_vec(), bytes(&mut b).to_vec(), {
        let mut x = before_b;
        bytes(&mut x).to_vec()
    });
    // The exit's report: exit code, EXITINFO1/2, EXITINTINFO, EVENTINJ, nRIP,
    // instruction bytes.
    let report = [0x70..0x90, 0xa8..0xb0, 0xc8..0xe0];
    for i in 0..ab.len() {
        let written = EXIT_WRITEBACK.iter().any(|&(o, l)| (o..o + l).contains(&i)) && !report.iter().any(|r| r.contains(&i));
        let want = if written { ab[i] } else { b0[i] };
        assert_eq!(bb[i], want, "VMCB byte {i:#x}");
    }
}

#[test]
fn host_state_detector() {
    let (end, host_cr3) = (0xffff_ffff_a000_a21f, 0x24a_9000);
    let at = |rip: u64, cr3: u64| SaveArea { rip, cr3, ..SaveArea::ZERO }.holds_host_state(end, host_cr3);
    // RIP after VMRUN (VMRUN's own host save) or at it (a VMRUN that
    // faulted after saving the host state), with the host's CR3.
    assert!(at(end, host_cr3));
    assert!(at(end - 3, host_cr3));
    // A guest: its own CR3, or its own RIP.
    assert!(!at(end, 0x1000));
    assert!(!at(end - 3, 0x1000));
    assert!(!at(0x1000, host_cr3));
    assert!(!at(end - 1, host_cr3));
    assert!(!at(end + 3, host_cr3));
}

#[test]
fn zero_is_all_zero_bytes() {
    // Field by field: every field of ZERO is zero, which also checks that
    // the constant names every field of the layout.
    let v = Vmcb::ZERO;
    assert_eq!(v.control.intercepts, Intercepts::NONE);
    assert_eq!(v.save.rip, 0);
    assert_eq!(v.control.reserved_sw, [0; 32]);
}

#[test]
fn segment_attr_round_trip() {
    // A flat 64-bit code descriptor: 0x00af9b000000ffff.
    let desc = 0x00af_9b00_0000_ffffu64;
    let attr = seg_attr::from_descriptor(desc);
    assert_eq!(attr, 0xa9b);
    assert_eq!(attr & seg_attr::TYPE_MASK, 0xb);
    assert_ne!(attr & seg_attr::S, 0);
    assert_ne!(attr & seg_attr::P, 0);
    assert_ne!(attr & seg_attr::L, 0);
    assert_eq!(attr & seg_attr::DB, 0);
    assert_ne!(attr & seg_attr::G, 0);
    assert_eq!(seg_attr::to_descriptor_bits(attr), desc & 0x00f0_ff00_0000_0000);
}

#[test]
fn invalid_exit_code_forms() {
    assert!(Vmcb::exit_is_invalid(u64::MAX));
    assert!(Vmcb::exit_is_invalid(0xffff_ffff));
    assert!(!Vmcb::exit_is_invalid(0x72));
    assert!(!Vmcb::exit_is_invalid(0xffff_fffe));
}
