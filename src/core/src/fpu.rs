// SPDX-License-Identifier: GPL-2.0
//! The guest's x87/SSE state as `KVM_GET_FPU`/`KVM_SET_FPU` see it
//! (`struct kvm_fpu`, 416 bytes) and as the module keeps it: an XSAVE image
//! whose first 512 bytes are the legacy region in the 64-bit FXSAVE format
//! and whose XSAVE header follows at byte 512 (APM vol. 2 11.5, XSAVE/XRSTOR
//! save area).
//!
//! Only the fields `struct kvm_fpu` carries are converted; the rest of the
//! image (MXCSR_MASK, reserved bytes, the upper six bytes of each x87
//! register slot, bytes 416..512) is left as it is.

/// Size of `struct kvm_fpu`.
pub const KVM_FPU_SIZE: usize = 416;
/// Size of the FXSAVE legacy region of an XSAVE image.
pub const FXSAVE_SIZE: usize = 512;
/// Offset of XSTATE_BV (the XSAVE header starts after the legacy region).
pub const XSTATE_BV_OFFSET: usize = 512;
/// Legacy region plus the 64-byte XSAVE header: what [`from_kvm_fpu`] and
/// [`default_image`] work on.
pub const IMAGE_PREFIX_SIZE: usize = 576;

/// XSTATE_BV / XCR0 component bits (APM vol. 2 11.5).
pub mod xstate {
    /// x87 state.
    pub const X87: u64 = 1 << 0;
    /// SSE state (XMM registers, MXCSR).
    pub const SSE: u64 = 1 << 1;
}

/// XCR0 at RESET: x87 only (APM vol. 2 11.5).
pub const XCR0_RESET: u64 = xstate::X87;
/// x87 control word in the image after RESET: 0x37f, the value of the x87
/// initial configuration (FNINIT, and XRSTOR of a component whose XSTATE_BV
/// bit is clear), so the image and XSTATE_BV = 0 agree.
pub const FCW_RESET: u16 = 0x037f;
/// MXCSR after RESET and in the SSE initial configuration: every exception
/// masked, round to nearest.
pub const MXCSR_RESET: u32 = 0x1f80;
/// MXCSR_MASK to assume when FXSAVE stores 0 there (processors without
/// DAZ: every bit of the low 16 but bit 6 is writable).
pub const MXCSR_MASK_DEFAULT: u32 = 0xffbf;

/// Offsets in the FXSAVE legacy region.
mod fx {
    pub(super) const FCW: usize = 0;
    pub(super) const FSW: usize = 2;
    pub(super) const FTW: usize = 4;
    pub(super) const FOP: usize = 6;
    pub(super) const FIP: usize = 8;
    pub(super) const FDP: usize = 16;
    pub(super) const MXCSR: usize = 24;
    pub(super) const MXCSR_MASK: usize = 28;
    pub(super) const ST0: usize = 32;
    pub(super) const XMM0: usize = 160;
}

/// Offsets in `struct kvm_fpu`.
mod kf {
    pub(super) const FPR: usize = 0;
    pub(super) const FCW: usize = 128;
    pub(super) const FSW: usize = 130;
    pub(super) const FTWX: usize = 132;
    pub(super) const LAST_OPCODE: usize = 134;
    pub(super) const LAST_IP: usize = 136;
    pub(super) const LAST_DP: usize = 144;
    pub(super) const XMM: usize = 152;
    pub(super) const MXCSR: usize = 408;
}

/// Bytes of an x87 register (80-bit value) in either format's 16-byte slot.
const ST_BYTES: usize = 10;
/// Bytes of the 16 XMM registers.
const XMM_BYTES: usize = 16 * 16;

/// Why `KVM_SET_FPU` refuses a state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FpuError {
    /// MXCSR has a bit outside MXCSR_MASK set: FXRSTOR/XRSTOR of the
    /// image would raise #GP (in L0).
    MxcsrReserved,
}

/// The MXCSR_MASK an FXSAVE stored at bytes 28..32 means: 0 stands for
/// [`MXCSR_MASK_DEFAULT`].
pub const fn mxcsr_mask(stored: u32) -> u32 {
    if stored == 0 {
        MXCSR_MASK_DEFAULT
    } else {
        stored
    }
}

/// The MXCSR_MASK field of an FXSAVE legacy region, as [`mxcsr_mask`] reads it.
pub fn image_mxcsr_mask(fxsave: &[u8; FXSAVE_SIZE]) -> u32 {
    mxcsr_mask(le32(fxsave, fx::MXCSR_MASK))
}

/// Whether `mxcsr` only has bits of `mask` set.
pub const fn check_mxcsr(mxcsr: u32, mask: u32) -> Result<(), FpuError> {
    if mxcsr & !mask != 0 {
        Err(FpuError::MxcsrReserved)
    } else {
        Ok(())
    }
}

/// The MXCSR field of a `struct kvm_fpu`.
pub fn kvm_fpu_mxcsr(f: &[u8; KVM_FPU_SIZE]) -> u32 {
    u32::from_ne_bytes([f[kf::MXCSR], f[kf::MXCSR + 1], f[kf::MXCSR + 2], f[kf::MXCSR + 3]])
}

fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

/// `struct kvm_fpu` from the FXSAVE legacy region of the guest's image
/// (`KVM_GET_FPU`). The abridged tag word goes to `ftwx` as stored.
pub fn to_kvm_fpu(x: &[u8; FXSAVE_SIZE]) -> [u8; KVM_FPU_SIZE] {
    let mut f = [0u8; KVM_FPU_SIZE];
    for r in 0..8 {
        let (k, i) = (kf::FPR + 16 * r, fx::ST0 + 16 * r);
        f[k..k + ST_BYTES].copy_from_slice(&x[i..i + ST_BYTES]);
    }
    f[kf::FCW..kf::FCW + 2].copy_from_slice(&x[fx::FCW..fx::FCW + 2]);
    f[kf::FSW..kf::FSW + 2].copy_from_slice(&x[fx::FSW..fx::FSW + 2]);
    f[kf::FTWX] = x[fx::FTW];
    f[kf::LAST_OPCODE..kf::LAST_OPCODE + 2].copy_from_slice(&x[fx::FOP..fx::FOP + 2]);
    f[kf::LAST_IP..kf::LAST_IP + 8].copy_from_slice(&x[fx::FIP..fx::FIP + 8]);
    f[kf::LAST_DP..kf::LAST_DP + 8].copy_from_slice(&x[fx::FDP..fx::FDP + 8]);
    f[kf::XMM..kf::XMM + XMM_BYTES].copy_from_slice(&x[fx::XMM0..fx::XMM0 + XMM_BYTES]);
    f[kf::MXCSR..kf::MXCSR + 4].copy_from_slice(&x[fx::MXCSR..fx::MXCSR + 4]);
    f
}

/// Writes `struct kvm_fpu` into the first [`IMAGE_PREFIX_SIZE`] bytes of the
/// guest's XSAVE image (`KVM_SET_FPU`): the legacy-region fields it carries,
/// and XSTATE_BV's x87 and SSE bits set so that XRSTOR loads them from the
/// image instead of the initial state (APM vol. 2 11.5.6). An MXCSR bit
/// outside `mxcsr_mask` is refused before anything is written.
pub fn from_kvm_fpu(f: &[u8; KVM_FPU_SIZE], mxcsr_mask: u32, image: &mut [u8; IMAGE_PREFIX_SIZE]) -> Result<(), FpuError> {
    check_mxcsr(kvm_fpu_mxcsr(f), mxcsr_mask)?;
    let x = image;
    for r in 0..8 {
        let (k, i) = (kf::FPR + 16 * r, fx::ST0 + 16 * r);
        x[i..i + ST_BYTES].copy_from_slice(&f[k..k + ST_BYTES]);
    }
    x[fx::FCW..fx::FCW + 2].copy_from_slice(&f[kf::FCW..kf::FCW + 2]);
    x[fx::FSW..fx::FSW + 2].copy_from_slice(&f[kf::FSW..kf::FSW + 2]);
    x[fx::FTW] = f[kf::FTWX];
    x[fx::FOP..fx::FOP + 2].copy_from_slice(&f[kf::LAST_OPCODE..kf::LAST_OPCODE + 2]);
    x[fx::FIP..fx::FIP + 8].copy_from_slice(&f[kf::LAST_IP..kf::LAST_IP + 8]);
    x[fx::FDP..fx::FDP + 8].copy_from_slice(&f[kf::LAST_DP..kf::LAST_DP + 8]);
    x[fx::XMM0..fx::XMM0 + XMM_BYTES].copy_from_slice(&f[kf::XMM..kf::XMM + XMM_BYTES]);
    x[fx::MXCSR..fx::MXCSR + 4].copy_from_slice(&f[kf::MXCSR..kf::MXCSR + 4]);
    let bv_at = XSTATE_BV_OFFSET;
    let mut bv = [0u8; 8];
    bv.copy_from_slice(&x[bv_at..bv_at + 8]);
    let bv = u64::from_le_bytes(bv) | xstate::X87 | xstate::SSE;
    x[bv_at..bv_at + 8].copy_from_slice(&bv.to_le_bytes());
    Ok(())
}

/// The start of the image after RESET: FCW 0x37f and MXCSR 0x1f80 in the
/// legacy region, everything else zero, XSTATE_BV 0 (every component in its
/// initial state). The rest of the image is zero too.
pub fn default_image() -> [u8; IMAGE_PREFIX_SIZE] {
    let mut x = [0u8; IMAGE_PREFIX_SIZE];
    x[fx::FCW..fx::FCW + 2].copy_from_slice(&FCW_RESET.to_le_bytes());
    x[fx::MXCSR..fx::MXCSR + 4].copy_from_slice(&MXCSR_RESET.to_le_bytes());
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kvm_fpu with a distinct byte pattern in every field it carries.
    fn sample() -> [u8; KVM_FPU_SIZE] {
        let mut f = [0u8; KVM_FPU_SIZE];
        for r in 0..8 {
            for b in 0..ST_BYTES {
                f[16 * r + b] = (0x10 * r + b + 1) as u8;
            }
        }
        f[128..130].copy_from_slice(&0x027fu16.to_ne_bytes());
        f[130..132].copy_from_slice(&0x3800u16.to_ne_bytes());
        f[132] = 0x81;
        f[134..136].copy_from_slice(&0x07d9u16.to_ne_bytes());
        f[136..144].copy_from_slice(&0x1122_3344_5566_7788u64.to_ne_bytes());
        f[144..152].copy_from_slice(&0x99aa_bbcc_ddee_ff00u64.to_ne_bytes());
        for (i, b) in f[152..408].iter_mut().enumerate() {
            *b = (i * 7 + 3) as u8;
        }
        f[408..412].copy_from_slice(&0x9fa0u32.to_ne_bytes());
        f
    }

    #[test]
    fn round_trip_through_the_image() {
        let f = sample();
        let mut img = default_image();
        img[XSTATE_BV_OFFSET..XSTATE_BV_OFFSET + 8].copy_from_slice(&4u64.to_le_bytes()); // AVX
        img[28..32].copy_from_slice(&0xffffu32.to_le_bytes());
        img[32 + 10] = 0xee; // reserved upper bytes of ST0's slot stay
        from_kvm_fpu(&f, 0xffff, &mut img).unwrap();
        let mut x = [0u8; FXSAVE_SIZE];
        x.copy_from_slice(&img[..FXSAVE_SIZE]);
        assert_eq!(to_kvm_fpu(&x), f);
        // Hardware offsets, not only a consistent pair.
        assert_eq!(&img[0..2], &0x027fu16.to_le_bytes());
        assert_eq!(img[4], 0x81);
        assert_eq!(&img[8..16], &0x1122_3344_5566_7788u64.to_le_bytes());
        assert_eq!(&img[24..28], &0x9fa0u32.to_le_bytes());
        assert_eq!(img[32], 1);
        assert_eq!(img[160], 3);
        assert_eq!(img[415], ((255 * 7 + 3) % 256) as u8);
        // Untouched: MXCSR_MASK, reserved slot bytes; XSTATE_BV gains x87|SSE.
        assert_eq!(&img[28..32], &0xffffu32.to_le_bytes());
        assert_eq!(img[42], 0xee);
        assert_eq!(&img[512..520], &7u64.to_le_bytes());
    }

    #[test]
    fn mxcsr_outside_the_mask_is_refused_untouched() {
        let mut f = sample();
        f[408..412].copy_from_slice(&0x1_0000u32.to_ne_bytes());
        let mut img = default_image();
        assert_eq!(from_kvm_fpu(&f, MXCSR_MASK_DEFAULT, &mut img), Err(FpuError::MxcsrReserved));
        assert_eq!(img, default_image());
        // DAZ (bit 6) is outside the default mask.
        assert_eq!(check_mxcsr(0x1fc0, MXCSR_MASK_DEFAULT), Err(FpuError::MxcsrReserved));
        assert_eq!(check_mxcsr(0x1fc0, 0xffff), Ok(()));
        assert_eq!(check_mxcsr(MXCSR_RESET, MXCSR_MASK_DEFAULT), Ok(()));
    }

    #[test]
    fn mask_and_defaults() {
        assert_eq!(mxcsr_mask(0), 0xffbf);
        assert_eq!(mxcsr_mask(0xffff), 0xffff);
        let img = default_image();
        let mut x = [0u8; FXSAVE_SIZE];
        x.copy_from_slice(&img[..FXSAVE_SIZE]);
        assert_eq!(image_mxcsr_mask(&x), 0xffbf);
        let f = to_kvm_fpu(&x);
        assert_eq!(u16::from_ne_bytes([f[128], f[129]]), 0x37f);
        assert_eq!(kvm_fpu_mxcsr(&f), 0x1f80);
        assert!(img[2..24].iter().all(|&b| b == 0));
        assert!(img[28..].iter().all(|&b| b == 0));
    }
}
