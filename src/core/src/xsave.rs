// SPDX-License-Identifier: GPL-2.0
//! `KVM_GET/SET_XSAVE`, `KVM_GET_XSAVE2`, `KVM_GET/SET_XCRS` and
//! `KVM_GET/SET_DEBUGREGS`: the userspace formats and KVM's rules for them,
//! over the guest's XSAVE image (standard, non-compacted format: the legacy
//! region, the XSAVE header at byte 512, each extended component at the
//! offset CPUID Fn0000_000D_EBX[i] gives; APM vol. 2 11.5).
//!
//! The userspace format of `struct kvm_xsave` is the same standard format,
//! with the rules of KVM's `__copy_xstate_to_uabi_buf` (GET: only the
//! components the guest may use, components not in use reported in their
//! initial state, the header holding only XSTATE_BV) and of
//! `copy_uabi_to_xstate` (SET: XSTATE_BV within what the host can save,
//! XCOMP_BV and the header's reserved bytes zero, MXCSR within MXCSR_MASK).

use crate::fpu::{xstate, FCW_RESET, MXCSR_RESET, XSTATE_BV_OFFSET};

/// `sizeof(struct kvm_xsave)`: `KVM_GET/SET_XSAVE` copy this many bytes.
pub const KVM_XSAVE_SIZE: usize = 4096;
/// `sizeof(struct kvm_xcrs)`: nr_xcrs, flags, 16 × {xcr, reserved, value},
/// 16 padding words.
pub const KVM_XCRS_SIZE: usize = 8 + 16 * 16 + 16 * 8;
/// `KVM_MAX_XCRS`.
pub const KVM_MAX_XCRS: u32 = 16;
/// `sizeof(struct kvm_debugregs)`: db[4], dr6, dr7, flags, reserved[9].
pub const KVM_DEBUGREGS_SIZE: usize = 128;

/// More XSTATE component bits (numbered as in XCR0, APM vol. 2 11.5.2).
pub mod component {
    /// AVX (YMM upper halves).
    pub const YMM: u64 = 1 << 2;
    /// MPX bound registers.
    pub const BNDREGS: u64 = 1 << 3;
    /// MPX configuration.
    pub const BNDCSR: u64 = 1 << 4;
    /// AVX-512: opmask, ZMM_Hi256, Hi16_ZMM.
    pub const AVX512: u64 = 0b111 << 5;
    /// PKRU.
    pub const PKRU: u64 = 1 << 9;
    /// AMX: XTILECFG and XTILEDATA.
    pub const XTILE: u64 = 0b11 << 17;
}

/// Offsets in the legacy region (FXSAVE format).
const MXCSR: usize = 24;
const MXCSR_MASK: usize = 28;
/// FCW..FDP: the x87 part before MXCSR.
const FP_HEAD: core::ops::Range<usize> = 0..24;
/// ST0..ST7 slots.
const FP_ST: core::ops::Range<usize> = 32..160;
/// XMM0..XMM15.
const SSE_XMM: core::ops::Range<usize> = 160..416;
/// XCOMP_BV and the header's reserved bytes (must be zero from userspace).
const HEADER_REST: core::ops::Range<usize> = 520..576;

fn le64(b: &[u8], o: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(x)
}

fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

/// Where each extended component (2..63) lives in the standard format:
/// `(offset, size)` from CPUID Fn0000_000D_EBX/EAX[i]; `(0, 0)` when absent.
pub trait Layout {
    /// Offset and size of component `i`.
    fn component(&self, i: u32) -> (u32, u32);
}

impl<F: Fn(u32) -> (u32, u32)> Layout for F {
    fn component(&self, i: u32) -> (u32, u32) {
        self(i)
    }
}

/// The byte range of extended component `i` if it fits in `len` bytes.
fn range_of(layout: &impl Layout, i: u32, len: usize) -> Option<core::ops::Range<usize>> {
    let (off, size) = layout.component(i);
    let (off, size) = (off as usize, size as usize);
    (size != 0 && off >= 576 && off.checked_add(size).is_some_and(|e| e <= len)).then_some(off..off + size)
}

/// `KVM_GET_XSAVE(2)`: the guest's `image` in the userspace format, in
/// `out` (zeroed first; 4096 bytes or more). `mask` is what the guest may
/// use (the XCR0 bits of its CPUID leaf 0xD, plus x87 and SSE, which can
/// always be read). A component whose XSTATE_BV bit is clear is reported in
/// its initial state (x87: FCW 0x37f; MXCSR 0x1f80 with `init_mxcsr_mask`;
/// everything else zero), as XRSTOR would load it (APM vol. 2 11.5.6).
/// The software-reserved bytes 464..511 are left zero (KVM copies the
/// kernel's signal-frame marker there).
pub fn to_uabi(image: &[u8], mask: u64, init_mxcsr_mask: u32, layout: &impl Layout, out: &mut [u8]) {
    out.fill(0);
    let bv = le64(image, XSTATE_BV_OFFSET) & mask;
    if bv & xstate::X87 != 0 {
        out[FP_HEAD].copy_from_slice(&image[FP_HEAD]);
        out[FP_ST].copy_from_slice(&image[FP_ST]);
    } else {
        out[0..2].copy_from_slice(&FCW_RESET.to_le_bytes());
    }
    if bv & (xstate::SSE | component::YMM) != 0 {
        out[MXCSR..MXCSR + 8].copy_from_slice(&image[MXCSR..MXCSR + 8]);
    } else {
        out[MXCSR..MXCSR + 4].copy_from_slice(&MXCSR_RESET.to_le_bytes());
        out[MXCSR_MASK..MXCSR_MASK + 4].copy_from_slice(&init_mxcsr_mask.to_le_bytes());
    }
    if bv & xstate::SSE != 0 {
        out[SSE_XMM].copy_from_slice(&image[SSE_XMM]);
    }
    out[XSTATE_BV_OFFSET..XSTATE_BV_OFFSET + 8].copy_from_slice(&bv.to_le_bytes());
    for i in 2..64 {
        if bv & (1 << i) == 0 {
            continue;
        }
        if let Some(r) = range_of(layout, i, core::cmp::min(image.len(), out.len())) {
            out[r.clone()].copy_from_slice(&image[r]);
        }
    }
}

/// Why `KVM_SET_XSAVE` refuses a buffer (all `EINVAL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XsaveError {
    /// XSTATE_BV has a component the host cannot save for the guest.
    Component,
    /// XCOMP_BV or a reserved header byte is not zero (only the standard
    /// format is accepted).
    Header,
    /// MXCSR has a bit outside MXCSR_MASK (XRSTOR would raise #GP).
    Mxcsr,
}

/// `KVM_SET_XSAVE`: loads `buf` (userspace format) into the guest's `image`.
/// `supported` is every component the host saves for guests (KVM checks
/// against its supported XCR0, not the guest's CPUID); `mxcsr_mask` the
/// processor's. Checked before anything is written. Components in XSTATE_BV
/// are copied; the others keep their bytes but XSTATE_BV says they are in
/// their initial state. PKRU not in XSTATE_BV keeps its current value (KVM's
/// ABI: PKRU is left untouched then).
pub fn from_uabi(buf: &[u8], supported: u64, mxcsr_mask: u32, layout: &impl Layout, image: &mut [u8]) -> Result<(), XsaveError> {
    let bv = le64(buf, XSTATE_BV_OFFSET);
    if bv & !supported != 0 {
        return Err(XsaveError::Component);
    }
    if buf[HEADER_REST].iter().any(|&b| b != 0) {
        return Err(XsaveError::Header);
    }
    if bv & (xstate::X87 | xstate::SSE | component::YMM) != 0 && le32(buf, MXCSR) & !mxcsr_mask != 0 {
        return Err(XsaveError::Mxcsr);
    }
    // Every extended component fits the image (checked before any write).
    for i in 2..64 {
        if bv & (1 << i) != 0 && range_of(layout, i, core::cmp::min(image.len(), buf.len())).is_none() {
            return Err(XsaveError::Component);
        }
    }
    if bv & xstate::X87 != 0 {
        // FCW..FDP, MXCSR, MXCSR_MASK and the ST slots, as KVM copies the
        // whole x87 component (0..160).
        image[0..160].copy_from_slice(&buf[0..160]);
    } else if bv & (xstate::SSE | component::YMM) != 0 {
        image[MXCSR..MXCSR + 8].copy_from_slice(&buf[MXCSR..MXCSR + 8]);
    }
    if bv & xstate::SSE != 0 {
        image[SSE_XMM].copy_from_slice(&buf[SSE_XMM]);
    }
    for i in 2..64 {
        if bv & (1 << i) != 0 {
            if let Some(r) = range_of(layout, i, image.len()) {
                image[r.clone()].copy_from_slice(&buf[r]);
            }
        }
    }
    let keep_pkru = le64(image, XSTATE_BV_OFFSET) & component::PKRU;
    let new_bv = bv | if bv & component::PKRU == 0 { keep_pkru } else { 0 };
    image[XSTATE_BV_OFFSET..XSTATE_BV_OFFSET + 8].copy_from_slice(&new_bv.to_le_bytes());
    // Standard format: XCOMP_BV stays zero.
    image[520..528].fill(0);
    Ok(())
}

/// Whether XCR0 may be set to `xcr0` (KVM's `__kvm_set_xcr`, the rules
/// XSETBV itself imposes, APM vol. 4 XSETBV): x87 always set, AVX only
/// with SSE, only components in `guest_supported` (the vCPU's CPUID leaf
/// 0xD.0 EDX:EAX within what the host saves) or x87, MPX's two components
/// together, AVX-512's three together and with AVX, AMX's two together.
pub fn xcr0_valid(xcr0: u64, guest_supported: u64) -> bool {
    use component::*;
    if xcr0 & xstate::X87 == 0 || (xcr0 & YMM != 0 && xcr0 & xstate::SSE == 0) {
        return false;
    }
    if xcr0 & !(guest_supported | xstate::X87) != 0 {
        return false;
    }
    if (xcr0 & BNDREGS == 0) != (xcr0 & BNDCSR == 0) {
        return false;
    }
    if xcr0 & AVX512 != 0 && (xcr0 & YMM == 0 || xcr0 & AVX512 != AVX512) {
        return false;
    }
    !(xcr0 & XTILE != 0 && xcr0 & XTILE != XTILE)
}

/// A refused `KVM_SET_XCRS` or `KVM_SET_DEBUGREGS` argument (`EINVAL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Invalid;

/// `struct kvm_xcrs` for `KVM_GET_XCRS`: XCR0 as the one entry, or no entry
/// when the host has no XSAVE.
pub fn xcrs_to_bytes(xcr0: Option<u64>) -> [u8; KVM_XCRS_SIZE] {
    let mut b = [0u8; KVM_XCRS_SIZE];
    if let Some(v) = xcr0 {
        b[0..4].copy_from_slice(&1u32.to_ne_bytes());
        // xcrs[0] = { xcr 0, reserved 0, value }.
        b[16..24].copy_from_slice(&v.to_ne_bytes());
    }
    b
}

/// `KVM_SET_XCRS`: the XCR0 to set, if any. `EINVAL` (`Err`) for more than
/// [`KVM_MAX_XCRS`] entries, non-zero flags, or an XCR0 [`xcr0_valid`]
/// refuses. Only the first entry naming XCR0 counts; others are ignored (as
/// KVM, which knows no other XCR).
pub fn xcrs_from_bytes(b: &[u8; KVM_XCRS_SIZE], guest_supported: u64) -> Result<Option<u64>, Invalid> {
    let nr = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
    let flags = u32::from_ne_bytes([b[4], b[5], b[6], b[7]]);
    if nr > KVM_MAX_XCRS || flags != 0 {
        return Err(Invalid);
    }
    for i in 0..nr as usize {
        let e = 8 + 16 * i;
        let xcr = u32::from_ne_bytes([b[e], b[e + 1], b[e + 2], b[e + 3]]);
        if xcr == 0 {
            let mut v = [0u8; 8];
            v.copy_from_slice(&b[e + 8..e + 16]);
            let v = u64::from_ne_bytes(v);
            return if xcr0_valid(v, guest_supported) { Ok(Some(v)) } else { Err(Invalid) };
        }
    }
    Ok(None)
}

/// `struct kvm_debugregs`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DebugRegs {
    /// DR0..DR3.
    pub db: [u64; 4],
    /// DR6.
    pub dr6: u64,
    /// DR7.
    pub dr7: u64,
}

impl DebugRegs {
    /// The bytes of `struct kvm_debugregs` (flags and reserved words zero).
    pub fn to_bytes(&self) -> [u8; KVM_DEBUGREGS_SIZE] {
        let mut b = [0u8; KVM_DEBUGREGS_SIZE];
        for (i, v) in self.db.iter().chain([self.dr6, self.dr7].iter()).enumerate() {
            b[8 * i..8 * i + 8].copy_from_slice(&v.to_ne_bytes());
        }
        b
    }

    /// `KVM_SET_DEBUGREGS`'s struct, with KVM's checks: flags zero, DR6 and
    /// DR7 bits 63:32 zero (they are reserved, APM vol. 2 13.1.1.5-6; VMRUN
    /// refuses them, 15.5.1). The reserved words are ignored, as KVM does.
    /// The values are taken as given (KVM does not apply the fixed bits
    /// here).
    pub fn from_bytes(b: &[u8; KVM_DEBUGREGS_SIZE]) -> Result<Self, Invalid> {
        let w = |i: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[8 * i..8 * i + 8]);
            u64::from_ne_bytes(x)
        };
        let r = DebugRegs { db: [w(0), w(1), w(2), w(3)], dr6: w(4), dr7: w(5) };
        if w(6) != 0 || r.dr6 >> 32 != 0 || r.dr7 >> 32 != 0 {
            return Err(Invalid);
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host with AVX (576, 256) and PKRU (2688, 8), as CPUID 0xD reports.
    fn layout(i: u32) -> (u32, u32) {
        match i {
            2 => (576, 256),
            9 => (2688, 8),
            _ => (0, 0),
        }
    }

    fn image(bv: u64) -> [u8; 4096] {
        let mut x = [0u8; 4096];
        for (i, b) in x.iter_mut().enumerate() {
            *b = (i * 13 + 1) as u8;
        }
        x[MXCSR..MXCSR + 4].copy_from_slice(&0x1f80u32.to_le_bytes());
        x[MXCSR_MASK..MXCSR_MASK + 4].copy_from_slice(&0xffffu32.to_le_bytes());
        x[512..520].copy_from_slice(&bv.to_le_bytes());
        x[520..576].fill(0);
        x
    }

    #[test]
    fn get_reports_used_components_and_init_for_the_rest() {
        let img = image(0b111 | component::PKRU);
        let mut out = [0xaau8; 4096];
        // The guest may use x87/SSE only: AVX and PKRU are left out.
        to_uabi(&img, 0b11, 0xffbf, &layout, &mut out);
        assert_eq!(le64(&out, 512), 0b11);
        assert_eq!(&out[0..24], &img[0..24]);
        assert_eq!(&out[32..416], &img[32..416]);
        assert_eq!(le32(&out, 24), 0x1f80);
        assert!(out[416..512].iter().all(|&b| b == 0));
        assert!(out[520..].iter().all(|&b| b == 0), "AVX and PKRU not reported");
        // With AVX allowed, its bytes are copied.
        to_uabi(&img, 0b111, 0xffbf, &layout, &mut out);
        assert_eq!(le64(&out, 512), 0b111);
        assert_eq!(&out[576..832], &img[576..832]);
        assert!(out[832..].iter().all(|&b| b == 0));
        // Nothing in use: initial x87 and MXCSR values, zero registers.
        let img = image(0);
        to_uabi(&img, 0b111, 0xffbf, &layout, &mut out);
        assert_eq!(&out[0..2], &0x37fu16.to_le_bytes());
        assert!(out[2..24].iter().all(|&b| b == 0));
        assert_eq!(le32(&out, 24), 0x1f80);
        assert_eq!(le32(&out, 28), 0xffbf);
        assert!(out[32..].iter().all(|&b| b == 0));
    }

    #[test]
    fn set_checks_before_writing() {
        let good = {
            let mut b = [0u8; 4096];
            b[0..2].copy_from_slice(&0x27fu16.to_le_bytes());
            b[MXCSR..MXCSR + 4].copy_from_slice(&0x1f80u32.to_le_bytes());
            b[512..520].copy_from_slice(&0b111u64.to_le_bytes());
            b[600] = 0x5a;
            b
        };
        let orig = image(0b11);
        for (patch, err) in [
            ((512, 1u64 << 9), XsaveError::Component), // PKRU unsupported here
            ((520, 1u64 << 63), XsaveError::Header),   // XCOMP_BV: compacted
            ((560, 1u64), XsaveError::Header),         // reserved header byte
            ((24, 0x8000_1f80u64 | (0xffff << 32)), XsaveError::Mxcsr),
        ] {
            let mut b = good;
            let v = le64(&b, patch.0) | patch.1;
            b[patch.0..patch.0 + 8].copy_from_slice(&v.to_le_bytes());
            let mut img = orig;
            assert_eq!(from_uabi(&b, 0b111, 0xffff, &layout, &mut img), Err(err));
            assert_eq!(img, orig);
        }
        let mut img = orig;
        from_uabi(&good, 0b111, 0xffff, &layout, &mut img).unwrap();
        assert_eq!(le64(&img, 512), 0b111);
        assert_eq!(&img[0..2], &0x27fu16.to_le_bytes());
        assert_eq!(img[600], 0x5a);
        // Round trip.
        let mut out = [0u8; 4096];
        to_uabi(&img, 0b111, 0xffff, &layout, &mut out);
        assert_eq!(&out[..160], &good[..160]);
        assert_eq!(&out[512..], &good[512..]);
    }

    #[test]
    fn set_keeps_pkru_when_not_given() {
        let mut img = image(0b11 | component::PKRU);
        let pkru_before = img[2688..2696].to_vec();
        let mut b = [0u8; 4096];
        b[512..520].copy_from_slice(&0b11u64.to_le_bytes());
        from_uabi(&b, 0b11 | component::PKRU, 0xffff, &layout, &mut img).unwrap();
        assert_eq!(le64(&img, 512), 0b11 | component::PKRU);
        assert_eq!(img[2688..2696], pkru_before[..]);
        // SSE without x87: MXCSR and its mask still come from the buffer.
        b[512..520].copy_from_slice(&0b10u64.to_le_bytes());
        b[MXCSR..MXCSR + 4].copy_from_slice(&0x1f00u32.to_le_bytes());
        from_uabi(&b, 0b11, 0xffff, &layout, &mut img).unwrap();
        assert_eq!(le32(&img, MXCSR), 0x1f00);
    }

    #[test]
    fn xcr0_rules() {
        let all = 0b111 | component::BNDREGS | component::BNDCSR | component::AVX512 | component::XTILE;
        assert!(xcr0_valid(1, 0));
        assert!(!xcr0_valid(0b11, 0), "SSE not in the guest's CPUID");
        assert!(xcr0_valid(0b11, 0b11));
        assert!(!xcr0_valid(0b10, 0b11), "x87 is required");
        assert!(!xcr0_valid(0b101, 0b111), "AVX needs SSE");
        assert!(xcr0_valid(0b111, all));
        assert!(!xcr0_valid(0b111 | component::BNDREGS, all));
        assert!(xcr0_valid(0b111 | component::BNDREGS | component::BNDCSR, all));
        assert!(!xcr0_valid(0b11 | component::AVX512, all), "AVX-512 needs AVX");
        assert!(!xcr0_valid(0b111 | (1 << 5), all), "AVX-512 all three");
        assert!(xcr0_valid(0b111 | component::AVX512, all));
        assert!(!xcr0_valid(0b111 | (1 << 18), all));
    }

    #[test]
    fn xcrs_format() {
        let b = xcrs_to_bytes(Some(7));
        assert_eq!(b.len(), 392);
        assert_eq!(xcrs_from_bytes(&b, 7), Ok(Some(7)));
        assert_eq!(xcrs_from_bytes(&b, 3), Err(Invalid));
        assert_eq!(xcrs_to_bytes(None), [0u8; 392]);
        assert_eq!(xcrs_from_bytes(&xcrs_to_bytes(None), 7), Ok(None));
        let mut b2 = b;
        b2[4] = 1; // flags
        assert_eq!(xcrs_from_bytes(&b2, 7), Err(Invalid));
        let mut b3 = b;
        b3[0] = 17;
        assert_eq!(xcrs_from_bytes(&b3, 7), Err(Invalid));
        // An unknown XCR first is skipped.
        let mut b4 = [0u8; 392];
        b4[0] = 2;
        b4[8] = 1;
        b4[16..24].copy_from_slice(&u64::MAX.to_ne_bytes());
        b4[24 + 8..24 + 16].copy_from_slice(&3u64.to_ne_bytes());
        assert_eq!(xcrs_from_bytes(&b4, 3), Ok(Some(3)));
    }

    #[test]
    fn debugregs_format_and_checks() {
        let r = DebugRegs { db: [1, 2, 3, 0xffff_ffff_ffff_0000], dr6: 0xffff_0ff0, dr7: 0x400 };
        let b = r.to_bytes();
        assert_eq!(DebugRegs::from_bytes(&b), Ok(r));
        let mut f = b;
        f[48] = 1; // flags
        assert!(DebugRegs::from_bytes(&f).is_err());
        let mut f = b;
        f[32 + 4] = 1; // DR6 bit 32
        assert!(DebugRegs::from_bytes(&f).is_err());
        let mut f = b;
        f[40 + 7] = 0x80; // DR7 bit 63
        assert!(DebugRegs::from_bytes(&f).is_err());
        let mut f = b;
        f[56] = 1; // reserved word: ignored
        assert_eq!(DebugRegs::from_bytes(&f), Ok(r));
    }
}
