// SPDX-License-Identifier: GPL-2.0
//! KVM's vCPU-level UAPI structs (`include/uapi/linux/kvm.h`,
//! `arch/x86/include/uapi/asm/kvm.h` of Linux 7.2) as plain Rust values with
//! explicit byte (de)serialization, so the module copies them to and from
//! userspace without `unsafe`, and the host tests check every offset against
//! `kvm-bindings`.

use crate::vmcb::{seg_attr, Segment};

fn get_u64(b: &[u8], o: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[o..o + 8]);
    u64::from_ne_bytes(x)
}
fn get_u32(b: &[u8], o: usize) -> u32 {
    u32::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn get_u16(b: &[u8], o: usize) -> u16 {
    u16::from_ne_bytes([b[o], b[o + 1]])
}
fn put(b: &mut [u8], o: usize, v: &[u8]) {
    b[o..o + v.len()].copy_from_slice(v);
}

/// `struct kvm_regs` (144 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Regs {
    /// rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp, r8..r15, rip, rflags, in KVM's order.
    pub r: [u64; 18],
}

/// Indices into [`Regs::r`]: KVM's `struct kvm_regs` order (a UAPI layout),
/// not the processor's encoding order of [`crate::x86::Gpr`].
pub mod reg {
    /// RAX.
    pub const RAX: usize = 0;
    /// RBX.
    pub const RBX: usize = 1;
    /// RCX.
    pub const RCX: usize = 2;
    /// RDX.
    pub const RDX: usize = 3;
    /// RSI.
    pub const RSI: usize = 4;
    /// RDI.
    pub const RDI: usize = 5;
    /// RSP.
    pub const RSP: usize = 6;
    /// RBP.
    pub const RBP: usize = 7;
    /// R8 (R9..R15 follow).
    pub const R8: usize = 8;
    /// RIP.
    pub const RIP: usize = 16;
    /// RFLAGS.
    pub const RFLAGS: usize = 17;
}

impl Regs {
    /// Size of `struct kvm_regs`.
    pub const SIZE: usize = 144;
    /// From the user bytes.
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Self {
        let mut r = [0u64; 18];
        for (i, v) in r.iter_mut().enumerate() {
            *v = get_u64(b, 8 * i);
        }
        Self { r }
    }
    /// To user bytes.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        for (i, v) in self.r.iter().enumerate() {
            put(&mut b, 8 * i, &v.to_ne_bytes());
        }
        b
    }
}

/// `struct kvm_segment` (24 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvmSegment {
    /// Base.
    pub base: u64,
    /// Limit.
    pub limit: u32,
    /// Selector.
    pub selector: u16,
    /// Type (4 bits).
    pub type_: u8,
    /// Present.
    pub present: u8,
    /// DPL.
    pub dpl: u8,
    /// D/B.
    pub db: u8,
    /// S.
    pub s: u8,
    /// L.
    pub l: u8,
    /// G.
    pub g: u8,
    /// AVL.
    pub avl: u8,
    /// Unusable (KVM's name for "null / not present").
    pub unusable: u8,
}

impl KvmSegment {
    /// Size of `struct kvm_segment`.
    pub const SIZE: usize = 24;
    fn read(b: &[u8], o: usize) -> Self {
        Self {
            base: get_u64(b, o),
            limit: get_u32(b, o + 8),
            selector: get_u16(b, o + 12),
            type_: b[o + 14],
            present: b[o + 15],
            dpl: b[o + 16],
            db: b[o + 17],
            s: b[o + 18],
            l: b[o + 19],
            g: b[o + 20],
            avl: b[o + 21],
            unusable: b[o + 22],
        }
    }
    fn write(&self, b: &mut [u8], o: usize) {
        put(b, o, &self.base.to_ne_bytes());
        put(b, o + 8, &self.limit.to_ne_bytes());
        put(b, o + 12, &self.selector.to_ne_bytes());
        put(b, o + 14, &[self.type_, self.present, self.dpl, self.db, self.s, self.l, self.g, self.avl, self.unusable, 0]);
    }
    /// To the VMCB format: an unusable segment gets attributes 0 (not present),
    /// as KVM's `svm_set_segment` does.
    pub fn to_vmcb(&self) -> Segment {
        let attrib = if self.unusable != 0 {
            0
        } else {
            (self.type_ as u16 & seg_attr::TYPE_MASK)
                | ((self.s as u16 & 1) << 4)
                | ((self.dpl as u16 & 3) << seg_attr::DPL_SHIFT)
                | ((self.present as u16 & 1) << 7)
                | ((self.avl as u16 & 1) << 8)
                | ((self.l as u16 & 1) << 9)
                | ((self.db as u16 & 1) << 10)
                | ((self.g as u16 & 1) << 11)
        };
        Segment { selector: self.selector, attrib, limit: self.limit, base: self.base }
    }
    /// As `KVM_GET_SREGS` reports segment `kind` (KVM's `svm_get_segment`):
    /// G derived from the limit, TR always busy, the accessed bit set on
    /// usable DS/ES/FS/GS, D/B cleared on an unusable SS.
    pub fn from_vmcb_as(s: &Segment, kind: SegKind) -> Self {
        let mut k = Self::from_vmcb(s);
        k.g = u8::from(s.limit > 0xfffff);
        match kind {
            SegKind::Tr => k.type_ |= 2,
            SegKind::Data if k.unusable == 0 => k.type_ |= 1,
            SegKind::Ss if k.unusable != 0 => k.db = 0,
            _ => {}
        }
        k
    }

    /// From the VMCB format; not present means unusable.
    pub fn from_vmcb(s: &Segment) -> Self {
        let a = s.attrib;
        Self {
            base: s.base,
            limit: s.limit,
            selector: s.selector,
            type_: (a & seg_attr::TYPE_MASK) as u8,
            s: ((a >> 4) & 1) as u8,
            dpl: ((a >> 5) & 3) as u8,
            present: ((a >> 7) & 1) as u8,
            avl: ((a >> 8) & 1) as u8,
            l: ((a >> 9) & 1) as u8,
            db: ((a >> 10) & 1) as u8,
            g: ((a >> 11) & 1) as u8,
            unusable: u8::from(a & seg_attr::P == 0),
        }
    }
}

/// Which segment register a [`KvmSegment`] describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegKind {
    /// CS.
    Cs,
    /// SS.
    Ss,
    /// DS, ES, FS, GS.
    Data,
    /// TR.
    Tr,
    /// LDTR.
    Ldt,
}

/// `struct kvm_dtable` (16 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dtable {
    /// Base.
    pub base: u64,
    /// Limit.
    pub limit: u16,
}

/// `struct kvm_sregs` (312 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sregs {
    /// cs, ds, es, fs, gs, ss, tr, ldt.
    pub cs: KvmSegment,
    /// DS.
    pub ds: KvmSegment,
    /// ES.
    pub es: KvmSegment,
    /// FS.
    pub fs: KvmSegment,
    /// GS.
    pub gs: KvmSegment,
    /// SS.
    pub ss: KvmSegment,
    /// TR.
    pub tr: KvmSegment,
    /// LDT.
    pub ldt: KvmSegment,
    /// GDT.
    pub gdt: Dtable,
    /// IDT.
    pub idt: Dtable,
    /// CR0.
    pub cr0: u64,
    /// CR2.
    pub cr2: u64,
    /// CR3.
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// CR8.
    pub cr8: u64,
    /// EFER.
    pub efer: u64,
    /// APIC base MSR.
    pub apic_base: u64,
    /// Pending external interrupt bitmap (one bit at most).
    pub interrupt_bitmap: [u64; 4],
}

impl Sregs {
    /// Size of `struct kvm_sregs`.
    pub const SIZE: usize = 312;
    /// From user bytes.
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Self {
        let seg = |i: usize| KvmSegment::read(b, i * KvmSegment::SIZE);
        let dt = |o: usize| Dtable { base: get_u64(b, o), limit: get_u16(b, o + 8) };
        Self {
            cs: seg(0),
            ds: seg(1),
            es: seg(2),
            fs: seg(3),
            gs: seg(4),
            ss: seg(5),
            tr: seg(6),
            ldt: seg(7),
            gdt: dt(192),
            idt: dt(208),
            cr0: get_u64(b, 224),
            cr2: get_u64(b, 232),
            cr3: get_u64(b, 240),
            cr4: get_u64(b, 248),
            cr8: get_u64(b, 256),
            efer: get_u64(b, 264),
            apic_base: get_u64(b, 272),
            interrupt_bitmap: [get_u64(b, 280), get_u64(b, 288), get_u64(b, 296), get_u64(b, 304)],
        }
    }
    /// To user bytes.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        for (i, s) in [&self.cs, &self.ds, &self.es, &self.fs, &self.gs, &self.ss, &self.tr, &self.ldt]
            .iter()
            .enumerate()
        {
            s.write(&mut b, i * KvmSegment::SIZE);
        }
        for (o, d) in [(192, &self.gdt), (208, &self.idt)] {
            put(&mut b, o, &d.base.to_ne_bytes());
            put(&mut b, o + 8, &d.limit.to_ne_bytes());
        }
        for (i, v) in [self.cr0, self.cr2, self.cr3, self.cr4, self.cr8, self.efer, self.apic_base]
            .iter()
            .chain(self.interrupt_bitmap.iter())
            .enumerate()
        {
            put(&mut b, 224 + 8 * i, &v.to_ne_bytes());
        }
        b
    }
}

/// Checks `KVM_SET_SREGS` input as KVM's `kvm_is_valid_sregs` does, for a
/// vCPU with features `f` (what the host processor and the vCPU's CPUID both
/// offer: `checks::Features::and`); `Err` names the broken rule (the ioctl
/// fails with `EINVAL` and changes nothing). These are also the VMRUN rules
/// of APM 15.5.1 that `kvm_sregs` can break and KVM refuses here: CR0 bits
/// 63:32 and CD/NW, CR3 bits above the physical address width in long mode,
/// CR4 and EFER bits that are undefined or whose feature is not offered,
/// long mode without PAE; a state that passes them but not VMRUN (CS.L with
/// CS.D in long mode, which KVM accepts here) ends `KVM_RUN` in
/// `KVM_EXIT_FAIL_ENTRY` with the state as it was set.
pub fn check_sregs(s: &Sregs, f: &crate::checks::Features) -> Result<(), &'static str> {
    use crate::msr::efer;
    use crate::x86::{cr0, cr4};
    if s.cr0 >> 32 != 0 {
        return Err("CR0 bits 63:32 must be zero");
    }
    if s.cr0 & cr0::PG != 0 && s.cr0 & cr0::PE == 0 {
        return Err("CR0.PG requires CR0.PE");
    }
    if s.cr0 & cr0::NW != 0 && s.cr0 & cr0::CD == 0 {
        return Err("CR0.NW requires CR0.CD");
    }
    if s.cr4 & !f.cr4 != 0 {
        return Err("reserved CR4 bit set (undefined, or its feature not offered)");
    }
    if s.efer & !f.efer != 0 {
        return Err("reserved EFER bit set (undefined, or its feature not offered)");
    }
    if s.efer & efer::LMA != 0 && s.efer & efer::LME == 0 {
        return Err("EFER.LMA without EFER.LME");
    }
    if s.cr0 & cr0::PG != 0 && s.efer & efer::LME != 0 {
        if s.cr4 & cr4::PAE == 0 {
            return Err("long mode (EFER.LME, CR0.PG) requires CR4.PAE");
        }
        if s.efer & efer::LMA == 0 {
            return Err("EFER.LME with CR0.PG requires EFER.LMA");
        }
        if s.cr3 & f.cr3_mbz(true) != 0 {
            return Err("CR3 bits above the physical address width in long mode");
        }
    } else if s.efer & efer::LMA != 0 {
        return Err("EFER.LMA without paging in long mode");
    } else if s.cs.l != 0 {
        return Err("CS.L outside long mode");
    }
    if s.interrupt_bitmap.iter().map(|w| w.count_ones()).sum::<u32>() > 1 {
        return Err("more than one pending interrupt in interrupt_bitmap");
    }
    Ok(())
}

/// `struct kvm_userspace_memory_region` (32 bytes) as a slot request.
pub fn memory_region_from_bytes(b: &[u8; 32]) -> crate::memslot::Request {
    crate::memslot::Request {
        slot: get_u32(b, 0),
        flags: get_u32(b, 4),
        gpa: get_u64(b, 8),
        size: get_u64(b, 16),
        uaddr: get_u64(b, 24),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};
    use kvm_bindings as kb;
    use crate::user_exit::run;

    #[test]
    fn vcpu_events_layout_matches_kvm() {
        use core::mem::{offset_of, size_of};
        use kvm_bindings::kvm_vcpu_events as K;
        assert_eq!(size_of::<K>(), vcpu_events::SIZE);
        assert_eq!(offset_of!(K, interrupt), 8);
        assert_eq!(offset_of!(K, nmi), 12);
        assert_eq!(offset_of!(K, flags), 20);
        assert_eq!(offset_of!(K, smi), 24);
        let e = VcpuEvents { interrupt: (true, 0x40, false), nmi_pending: true, nmi_masked: true, shadow: 3, flags: vcpu_events::VALID_NMI_PENDING | vcpu_events::VALID_SHADOW, ..Default::default() };
        let b = e.to_bytes();
        assert_eq!((b[8], b[9], b[11], b[13], b[14]), (1, 0x40, 3, 1, 1));
        assert_eq!(VcpuEvents::from_bytes(&b), e);
        assert!(e.check_set(false));
        assert!(!VcpuEvents { flags: 0x100, ..e }.check_set(true));
        assert!(!VcpuEvents { flags: vcpu_events::VALID_SMM, smm: 1, ..e }.check_set(true));
        assert!(!VcpuEvents { exception: (true, 32, false, 0), ..e }.check_set(true));
        assert!(!VcpuEvents { exception: (true, 2, false, 0), ..e }.check_set(true));
        // VALID_PAYLOAD only with the capability.
        let p = VcpuEvents { flags: vcpu_events::VALID_PAYLOAD, exception_pending: true, exception: (false, 14, true, 2), exception_payload: Some(0x1000), ..e };
        assert!(p.check_set(true) && !p.check_set(false));
        // Without VALID_PAYLOAD, pending and the payload are ignored (a
        // pending vector 40 is then no error, as KVM).
        let n = VcpuEvents { exception_pending: true, exception: (false, 40, false, 0), exception_payload: Some(1), ..e };
        assert!(n.check_set(false));
        assert!(!n.normalized().exception_pending);
        assert_eq!(n.normalized().exception_payload, None);
        // With it, a pending exception is not injected; an injected one has no payload.
        let both = VcpuEvents { exception: (true, 14, true, 2), ..p };
        assert!(!both.normalized().exception.0);
        assert_eq!(both.normalized().exception_payload, Some(0x1000));
        let inj = VcpuEvents { exception_pending: false, exception: (true, 14, true, 2), ..p };
        assert_eq!(inj.normalized().exception_payload, None);
        // The payload's bytes (55, 56-63).
        let b = p.to_bytes();
        assert_eq!((b[3], b[55], u64::from_ne_bytes(b[56..64].try_into().unwrap())), (1, 1, 0x1000));
        assert_eq!(VcpuEvents::from_bytes(&b), p);
    }

    #[test]
    fn sizes_and_offsets_match_kvm_bindings() {
        assert_eq!(Regs::SIZE, size_of::<kb::kvm_regs>());
        assert_eq!(Sregs::SIZE, size_of::<kb::kvm_sregs>());
        assert_eq!(KvmSegment::SIZE, size_of::<kb::kvm_segment>());
        assert_eq!(offset_of!(kb::kvm_regs, rip), 8 * reg::RIP);
        assert_eq!(offset_of!(kb::kvm_regs, rsp), 8 * reg::RSP);
        assert_eq!(offset_of!(kb::kvm_regs, r8), 8 * reg::R8);
        assert_eq!(offset_of!(kb::kvm_sregs, gdt), 192);
        assert_eq!(offset_of!(kb::kvm_sregs, cr0), 224);
        assert_eq!(offset_of!(kb::kvm_sregs, efer), 264);
        assert_eq!(offset_of!(kb::kvm_sregs, interrupt_bitmap), 280);
        assert_eq!(offset_of!(kb::kvm_segment, unusable), 22);
        assert_eq!(offset_of!(kb::kvm_run, exit_reason), run::EXIT_REASON);
        assert_eq!(offset_of!(kb::kvm_run, immediate_exit), run::IMMEDIATE_EXIT);
        assert_eq!(offset_of!(kb::kvm_run, if_flag), run::IF_FLAG);
        assert_eq!(offset_of!(kb::kvm_run, __bindgen_anon_1), run::EXIT);
        assert_eq!(size_of::<kb::kvm_userspace_memory_region>(), 32);
        assert_eq!(kb::KVM_EXIT_IO, run::EXIT_IO);
        assert_eq!(kb::KVM_EXIT_FAIL_ENTRY, run::EXIT_FAIL_ENTRY);
        assert_eq!(kb::KVM_EXIT_INTERNAL_ERROR, run::EXIT_INTERNAL_ERROR);
        assert_eq!(kb::KVM_EXIT_SHUTDOWN, run::EXIT_SHUTDOWN);
    }

    #[test]
    fn regs_and_sregs_round_trip_through_kvm_bindings() {
        let mut r = Regs::default();
        for (i, v) in r.r.iter_mut().enumerate() {
            *v = 0x1111_1111 * (i as u64 + 1);
        }
        let b = r.to_bytes();
        // SAFETY: kvm_regs is plain old data of exactly this size.
        let k: kb::kvm_regs = unsafe { core::mem::transmute(b) };
        assert_eq!(k.rbx, r.r[reg::RBX]);
        assert_eq!(k.rflags, r.r[reg::RFLAGS]);
        assert_eq!(Regs::from_bytes(&b), r);

        let mut s = Sregs::default();
        s.cs = KvmSegment { base: 0xffff_0000, limit: 0xffff, selector: 0xf000, type_: 11, present: 1, s: 1, ..Default::default() };
        s.tr = KvmSegment { type_: 11, present: 1, limit: 0xffff, ..Default::default() };
        s.gdt = Dtable { base: 0x1000, limit: 0x27 };
        s.cr0 = 0x6000_0010;
        s.efer = 0x500;
        s.apic_base = 0xfee0_0900;
        s.interrupt_bitmap[1] = 1 << 3;
        let b = s.to_bytes();
        // SAFETY: kvm_sregs is plain old data of exactly this size.
        let k: kb::kvm_sregs = unsafe { core::mem::transmute(b) };
        assert_eq!(k.cs.selector, 0xf000);
        assert_eq!(k.cs.base, 0xffff_0000);
        assert_eq!(k.cs.type_, 11);
        assert_eq!(k.gdt.limit, 0x27);
        assert_eq!(k.efer, 0x500);
        assert_eq!(k.interrupt_bitmap[1], 8);
        assert_eq!(Sregs::from_bytes(&b), s);
    }

    #[test]
    fn segment_vmcb_conversion() {
        let k = KvmSegment { base: 0, limit: 0xffff_ffff, selector: 8, type_: 0xb, present: 1, dpl: 0, db: 0, s: 1, l: 1, g: 1, avl: 0, unusable: 0 };
        let v = k.to_vmcb();
        assert_eq!(v.attrib, 0xa9b);
        assert_eq!(KvmSegment::from_vmcb(&v), k);
        let d = Segment { selector: 0, attrib: 0x92, limit: 0xffff, base: 0 };
        assert_eq!(KvmSegment::from_vmcb_as(&d, SegKind::Data).type_, 3);
        assert_eq!(KvmSegment::from_vmcb_as(&d, SegKind::Ss).type_, 2);
        let t = Segment { selector: 0, attrib: 0x89, limit: 0x67, base: 0 };
        assert_eq!(KvmSegment::from_vmcb_as(&t, SegKind::Tr).type_, 0xb);
        let big = Segment { selector: 8, attrib: 0x093, limit: 0xffff_ffff, base: 0 };
        assert_eq!(KvmSegment::from_vmcb_as(&big, SegKind::Cs).g, 1);
        let nul = Segment { selector: 0, attrib: 0x400, limit: 0, base: 0 };
        assert_eq!(KvmSegment::from_vmcb_as(&nul, SegKind::Ss).db, 0);
        assert_eq!(KvmSegment::from_vmcb_as(&nul, SegKind::Data).type_, 0);
        let u = KvmSegment { unusable: 1, type_: 3, present: 1, s: 1, ..Default::default() };
        assert_eq!(u.to_vmcb().attrib, 0);
        assert_eq!(KvmSegment::from_vmcb(&u.to_vmcb()).unusable, 1);
    }

    #[test]
    fn sregs_checks() {
        use crate::checks::Features;
        use crate::msr::efer;
        use crate::x86::cr4;
        // Long mode, NX, SVM and every CR4 feature, 40 address bits.
        let f = Features { phys_bits: 40, cr4: cr4::DEFINED, efer: efer::SCE | efer::LME | efer::LMA | efer::NXE | efer::SVME };
        let mut s = Sregs { cr0: 0x6000_0010, ..Default::default() };
        assert_eq!(check_sregs(&s, &f), Ok(()));
        s.cr0 = 0x8000_0000;
        assert!(check_sregs(&s, &f).is_err());
        s.cr0 = 1 << 32;
        assert!(check_sregs(&s, &f).is_err());
        s.cr0 = crate::x86::cr0::NW;
        assert!(check_sregs(&s, &f).is_err());
        s.cr0 = 0x8000_0001;
        s.efer = 0x500;
        assert_eq!(check_sregs(&s, &f), Err("long mode (EFER.LME, CR0.PG) requires CR4.PAE"));
        s.cr4 = cr4::PAE;
        assert_eq!(check_sregs(&s, &f), Ok(()));
        s.efer = 0x100;
        assert!(check_sregs(&s, &f).is_err());
        s.efer = 0x500;
        s.cr4 |= 1 << 13; // VMXE does not exist on AMD
        assert!(check_sregs(&s, &f).is_err());
        s.cr4 = cr4::PAE;
        s.efer |= 1 << 2;
        assert!(check_sregs(&s, &f).is_err());
        s.efer = 0x500;
        s.interrupt_bitmap = [1, 2, 0, 0];
        assert!(check_sregs(&s, &f).is_err());
        s.interrupt_bitmap = [0; 4];
        // CR3 in long mode: below the physical address width only.
        s.cr3 = (1 << 40) - 0x1000;
        assert_eq!(check_sregs(&s, &f), Ok(()));
        for bit in 40..64 {
            s.cr3 = 1 << bit;
            assert!(check_sregs(&s, &f).is_err(), "CR3 bit {bit}");
        }
        s.cr3 = 0x1000;
        // CR4 and EFER bits whose feature is not offered.
        for b in [cr4::UMIP, cr4::LA57, cr4::PKE, cr4::CET, cr4::PCIDE, cr4::OSXSAVE] {
            let without = Features { cr4: f.cr4 & !b, ..f };
            s.cr4 = cr4::PAE | b;
            assert_eq!(check_sregs(&s, &f), Ok(()));
            assert!(check_sregs(&s, &without).is_err(), "CR4 {b:#x}");
        }
        s.cr4 = cr4::PAE;
        for b in [efer::FFXSR, efer::TCE, efer::LMSLE, efer::MCOMMIT, efer::AIBRSE] {
            s.efer = 0x500 | b;
            assert!(check_sregs(&s, &f).is_err(), "EFER {b:#x}");
            assert_eq!(check_sregs(&s, &Features { efer: f.efer | b, ..f }), Ok(()));
        }
        // Without long mode in the features, EFER.LME is refused.
        s.efer = 0x500;
        assert!(check_sregs(&s, &Features { efer: efer::SCE, ..f }).is_err());
        s.efer = 0;
        s.cr0 = 0x11;
        s.cr3 = 1 << 45; // not checked outside long mode (as KVM)
        assert_eq!(check_sregs(&s, &f), Ok(()));
        s.cs.l = 1;
        assert!(check_sregs(&s, &f).is_err());
    }

    #[test]
    fn memory_region_parse() {
        let r = kb::kvm_userspace_memory_region { slot: 3, flags: 2, guest_phys_addr: 0x1000, memory_size: 0x2000, userspace_addr: 0x7000_0000 };
        // SAFETY: plain old data to bytes of the same size.
        let b: [u8; 32] = unsafe { core::mem::transmute(r) };
        let q = memory_region_from_bytes(&b);
        assert_eq!((q.slot, q.flags, q.gpa, q.size, q.uaddr), (3, 2, 0x1000, 0x2000, 0x7000_0000));
    }
}

/// `struct kvm_vcpu_events` (x86, 64 bytes): the events a vCPU has pending
/// or in delivery, for `KVM_GET/SET_VCPU_EVENTS` (save/restore).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuEvents {
    /// Exception being delivered: injected, vector, has error code, error code.
    pub exception: (bool, u8, bool, u32),
    /// External or software interrupt being delivered or queued: injected,
    /// vector, soft.
    pub interrupt: (bool, u8, bool),
    /// Interrupt shadow (KVM_X86_SHADOW_INT_*: 1 MOV SS, 2 STI).
    pub shadow: u8,
    /// NMI being delivered.
    pub nmi_injected: bool,
    /// NMI pending.
    pub nmi_pending: bool,
    /// NMIs masked (an NMI handler runs).
    pub nmi_masked: bool,
    /// `KVM_VCPUEVENT_VALID_*` flags.
    pub flags: u32,
    /// SMM state byte (`smi.smm`): must be 0 (no SMM).
    pub smm: u8,
    /// `exception.pending` (only with KVM_CAP_EXCEPTION_PAYLOAD).
    pub exception_pending: bool,
    /// `triple_fault.pending` (with `VALID_TRIPLE_FAULT`, which needs
    /// `KVM_CAP_X86_TRIPLE_FAULT_EVENT`).
    pub triple_fault: bool,
    /// `exception_has_payload` and `exception_payload` (with
    /// `VALID_PAYLOAD`, which needs `KVM_CAP_EXCEPTION_PAYLOAD`): the #PF
    /// address or #DB's DR6 bits a pending exception delivers.
    pub exception_payload: Option<u64>,
}

/// `KVM_VCPUEVENT_VALID_*`.
pub mod vcpu_events {
    /// `nmi.pending` is valid.
    pub const VALID_NMI_PENDING: u32 = 0x1;
    /// `sipi_vector` is valid.
    pub const VALID_SIPI_VECTOR: u32 = 0x2;
    /// `interrupt.shadow` is valid.
    pub const VALID_SHADOW: u32 = 0x4;
    /// `smi` is valid.
    pub const VALID_SMM: u32 = 0x8;
    /// `exception_payload` is valid.
    pub const VALID_PAYLOAD: u32 = 0x10;
    /// `triple_fault` is valid.
    pub const VALID_TRIPLE_FAULT: u32 = 0x20;
    /// Size of `struct kvm_vcpu_events`.
    pub const SIZE: usize = 64;
}

impl VcpuEvents {
    /// The 64 bytes of `struct kvm_vcpu_events`.
    pub fn to_bytes(&self) -> [u8; vcpu_events::SIZE] {
        let mut b = [0u8; vcpu_events::SIZE];
        b[0] = u8::from(self.exception.0);
        b[1] = self.exception.1;
        b[2] = u8::from(self.exception.2);
        b[3] = u8::from(self.exception_pending);
        b[4..8].copy_from_slice(&self.exception.3.to_ne_bytes());
        b[8] = u8::from(self.interrupt.0);
        b[9] = self.interrupt.1;
        b[10] = u8::from(self.interrupt.2);
        b[11] = self.shadow;
        b[12] = u8::from(self.nmi_injected);
        b[13] = u8::from(self.nmi_pending);
        b[14] = u8::from(self.nmi_masked);
        b[20..24].copy_from_slice(&self.flags.to_ne_bytes());
        b[24] = self.smm;
        b[28] = u8::from(self.triple_fault);
        b[55] = u8::from(self.exception_payload.is_some());
        b[56..64].copy_from_slice(&self.exception_payload.unwrap_or(0).to_ne_bytes());
        b
    }

    /// Parses `struct kvm_vcpu_events`.
    pub fn from_bytes(b: &[u8; vcpu_events::SIZE]) -> Self {
        Self {
            exception: (b[0] != 0, b[1], b[2] != 0, u32::from_ne_bytes([b[4], b[5], b[6], b[7]])),
            exception_pending: b[3] != 0,
            interrupt: (b[8] != 0, b[9], b[10] != 0),
            shadow: b[11],
            nmi_injected: b[12] != 0,
            nmi_pending: b[13] != 0,
            nmi_masked: b[14] != 0,
            flags: u32::from_ne_bytes([b[20], b[21], b[22], b[23]]),
            smm: b[24],
            triple_fault: b[28] != 0,
            exception_payload: (b[55] != 0).then(|| u64::from_ne_bytes([b[56], b[57], b[58], b[59], b[60], b[61], b[62], b[63]])),
        }
    }

    /// KVM's refusals for `KVM_SET_VCPU_EVENTS` that apply to nsvm (no
    /// SMM): unknown flags, SMM state, `VALID_PAYLOAD` without
    /// `KVM_CAP_EXCEPTION_PAYLOAD` (`payload_enabled`), an exception
    /// (injected or pending) with a vector of 32 or more or the NMI's (2).
    /// Without `VALID_PAYLOAD` KVM ignores `exception.pending` and the
    /// payload; with it a pending exception is not also injected and an
    /// injected one has no payload ([`Self::normalized`]).
    pub fn check_set(&self, payload_enabled: bool) -> bool {
        use vcpu_events::*;
        let known = VALID_NMI_PENDING | VALID_SIPI_VECTOR | VALID_SHADOW | VALID_SMM | VALID_PAYLOAD | VALID_TRIPLE_FAULT;
        let e = self.normalized();
        self.flags & !known == 0
            && !(self.flags & VALID_SMM != 0 && self.smm != 0)
            && (self.flags & VALID_PAYLOAD == 0 || payload_enabled)
            && !((e.exception.0 || e.exception_pending) && (e.exception.1 >= 32 || e.exception.1 == 2))
    }

    /// The events as KVM's `kvm_vcpu_ioctl_x86_set_vcpu_events` takes them:
    /// with `VALID_PAYLOAD`, a pending exception is not injected and an
    /// injected one carries no payload; without it, nothing is pending and
    /// there is no payload.
    pub fn normalized(&self) -> Self {
        let mut e = *self;
        if e.flags & vcpu_events::VALID_PAYLOAD != 0 {
            if e.exception_pending {
                e.exception.0 = false;
            } else {
                e.exception_payload = None;
            }
        } else {
            e.exception_pending = false;
            e.exception_payload = None;
        }
        e
    }
}
