// SPDX-License-Identifier: GPL-2.0
//! `KVM_GET_NESTED_STATE` / `KVM_SET_NESTED_STATE` in KVM's SVM format
//! (`struct kvm_nested_state` of `include/uapi/linux/kvm.h` with the
//! `kvm_svm_nested_state_hdr` and `kvm_svm_nested_state_data` of
//! `arch/x86/include/uapi/asm/kvm.h`), so that a VM stopped while its L2
//! runs can be saved and restored into a new VM (on nsvm or kvm_amd):
//!
//! ```text
//! 0   u16 flags        GUEST_MODE, RUN_PENDING, GIF_SET
//! 2   u16 format       1 = SVM
//! 4   u32 size         128, or 128 + 4096 in guest mode
//! 8   u64 vmcb_pa      (hdr.svm) vmcb12's address in L1 memory
//! 16  u64 gpat         (hdr.svm) L2's PAT when it has its own (nested
//!                      paging with KVM_X86_QUIRK_NESTED_SVM_SHARED_PAT
//!                      disabled), else 0
//! 24  ... padding to 128
//! 128 u8[4096] vmcb12  (data.svm, guest mode only) control area = L1's
//!                      vmcb12 control as cached at VMRUN; save area = L1's
//!                      own state (what #VMEXIT will restore)
//! ```
//! While the vCPU is in guest mode the ordinary register ioctls
//! (`KVM_GET/SET_REGS`, `SREGS`, `MSRS`, `FPU`) are L2's state, as in KVM.

use crate::vmcb::{ControlArea, SaveArea};

/// `struct kvm_nested_state` without its data.
pub const HEADER_SIZE: usize = 128;
/// `KVM_STATE_NESTED_SVM_VMCB_SIZE`.
pub const VMCB_SIZE: usize = 4096;
/// `KVM_STATE_NESTED_FORMAT_SVM`.
pub const FORMAT_SVM: u16 = 1;
/// What `KVM_CHECK_EXTENSION(KVM_CAP_NESTED_STATE)` returns: the largest
/// state (KVM's `svm_get_nested_state(NULL, ..)`).
pub const MAX_SIZE: usize = HEADER_SIZE + VMCB_SIZE;

/// `KVM_STATE_NESTED_*` flags.
pub mod flags {
    /// The vCPU runs L2.
    pub const GUEST_MODE: u16 = 0x1;
    /// L1's VMRUN was emulated but L2 not entered yet (EVENTINJ pending).
    pub const RUN_PENDING: u16 = 0x2;
    /// VMX only.
    pub const EVMCS: u16 = 0x4;
    /// VMX only.
    pub const MTF_PENDING: u16 = 0x8;
    /// L1's global interrupt flag is set.
    pub const GIF_SET: u16 = 0x100;
}

/// The header of `struct kvm_nested_state` (SVM).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// `KVM_STATE_NESTED_*`.
    pub flags: u16,
    /// [`FORMAT_SVM`].
    pub format: u16,
    /// Bytes of the whole state (header and data).
    pub size: u32,
    /// vmcb12's guest physical address.
    pub vmcb_pa: u64,
    /// L2's PAT when it has its own ([`l2_has_separate_pat`]), else 0.
    pub gpat: u64,
}

/// Whether L2 has a PAT of its own, apart from L1's (KVM's
/// `l2_has_separate_pat`): L1 runs it with nested paging and
/// `KVM_X86_QUIRK_NESTED_SVM_SHARED_PAT` is disabled. Then the guest's
/// PAT accesses in L2 are vmcb02's G_PAT, the host's L1's PAT, and the
/// nested state carries L2's in `gpat`.
pub const fn l2_has_separate_pat(np12: bool, shared_pat_quirk: bool) -> bool {
    np12 && !shared_pat_quirk
}

impl Header {
    /// The 128 header bytes (padding zero).
    pub fn to_bytes(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[0..2].copy_from_slice(&self.flags.to_ne_bytes());
        b[2..4].copy_from_slice(&self.format.to_ne_bytes());
        b[4..8].copy_from_slice(&self.size.to_ne_bytes());
        b[8..16].copy_from_slice(&self.vmcb_pa.to_ne_bytes());
        b[16..24].copy_from_slice(&self.gpat.to_ne_bytes());
        b
    }

    /// Parses the 128 header bytes.
    pub fn from_bytes(b: &[u8; HEADER_SIZE]) -> Self {
        Self {
            flags: u16::from_ne_bytes([b[0], b[1]]),
            format: u16::from_ne_bytes([b[2], b[3]]),
            size: u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
            vmcb_pa: u64::from_ne_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]),
            gpat: u64::from_ne_bytes([b[16], b[17], b[18], b[19], b[20], b[21], b[22], b[23]]),
        }
    }
}

/// What `KVM_GET_NESTED_STATE` reports; `None` for `vmcb_pa` outside guest
/// mode. The size is [`HEADER_SIZE`] outside guest mode, [`MAX_SIZE`] in it.
pub fn get_header(guest_mode: Option<u64>, run_pending: bool, gif: bool) -> Header {
    let mut f = if gif { flags::GIF_SET } else { 0 };
    if guest_mode.is_some() {
        f |= flags::GUEST_MODE;
        if run_pending {
            f |= flags::RUN_PENDING;
        }
    }
    let size = if guest_mode.is_some() { MAX_SIZE } else { HEADER_SIZE } as u32;
    Header { flags: f, format: FORMAT_SVM, size, vmcb_pa: guest_mode.unwrap_or(0), gpat: 0 }
}

/// Why `KVM_SET_NESTED_STATE` refuses a state (EINVAL in every case, as KVM).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetError {
    /// size below the header, or below header + VMCB in guest mode.
    Size,
    /// Unknown flags, VMX flags, or RUN_PENDING without GUEST_MODE.
    Flags,
    /// Not the SVM format.
    Format,
    /// GUEST_MODE or GIF clear while the vCPU's EFER.SVME is clear.
    SvmOff,
    /// vmcb_pa not page aligned or beyond the physical address width.
    VmcbAddress,
    /// The cached vmcb12 controls or L1's saved state break a VMRUN
    /// consistency rule (APM 15.5.1), or L1 was not in paged protected
    /// mode or was in virtual-8086 mode (it executed VMRUN).
    Inconsistent,
}

/// The header checks of `KVM_SET_NESTED_STATE` (KVM's order); `svme` is
/// the vCPU's current EFER.SVME. Returns whether the state is guest mode.
pub fn check_header(h: &Header, svme: bool, phys_bits: u8) -> Result<bool, SetError> {
    use flags::*;
    if (h.size as usize) < HEADER_SIZE {
        return Err(SetError::Size);
    }
    if h.flags & !(RUN_PENDING | GUEST_MODE | EVMCS | MTF_PENDING | GIF_SET) != 0 {
        return Err(SetError::Flags);
    }
    if h.flags & RUN_PENDING != 0 && h.flags & GUEST_MODE == 0 {
        return Err(SetError::Flags);
    }
    if h.format != FORMAT_SVM {
        return Err(SetError::Format);
    }
    if h.flags & !(GUEST_MODE | RUN_PENDING | GIF_SET) != 0 {
        return Err(SetError::Flags);
    }
    // Without SVME only "nothing" and "GIF set", not in guest mode (as
    // KVM: clearing SVME does not set GIF, so GIF clear is allowed too).
    if !svme && h.flags != 0 && h.flags != GIF_SET {
        return Err(SetError::SvmOff);
    }
    if h.flags & GUEST_MODE == 0 {
        return Ok(false);
    }
    if h.vmcb_pa & 0xfff != 0 || (phys_bits < 64 && h.vmcb_pa >> phys_bits != 0) {
        return Err(SetError::VmcbAddress);
    }
    if (h.size as usize) < MAX_SIZE {
        return Err(SetError::Size);
    }
    Ok(true)
}

/// The checks of the data in guest mode: the controls as VMRUN checks them
/// (with L1's saved state standing in for the save area, which must itself
/// pass the rules: it is the state L1 executed VMRUN in), and L1 in paged
/// protected mode outside virtual-8086 mode. `f`: the vCPU's features
/// (`checks::Features`), as for VMRUN.
pub fn check_data(control: &ControlArea, l1: &SaveArea, f: &crate::checks::Features) -> Result<(), SetError> {
    use crate::x86::{cr0, rflags};
    if l1.cr0 & cr0::PG == 0 || l1.cr0 & cr0::PE == 0 || l1.rflags & rflags::VM != 0 {
        return Err(SetError::Inconsistent);
    }
    crate::checks::check_vmrun(l1, control, f).map_err(|_| SetError::Inconsistent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit;
    use crate::msr::efer;

    #[test]
    fn header_round_trip_and_get() {
        let h = get_header(Some(0x12_3000), true, false);
        assert_eq!(h, Header { flags: flags::GUEST_MODE | flags::RUN_PENDING, format: 1, size: 4224, vmcb_pa: 0x12_3000, gpat: 0 });
        assert_eq!(Header::from_bytes(&h.to_bytes()), h);
        assert_eq!(&h.to_bytes()[16..], &[0u8; 112][..]);
        // hdr.svm.gpat (Linux 7.2's kvm_svm_nested_state_hdr) at byte 16.
        let g = Header { gpat: 0x0606_0606_0606_0604, ..h };
        assert_eq!(&g.to_bytes()[16..24], &0x0606_0606_0606_0604u64.to_ne_bytes());
        assert_eq!(Header::from_bytes(&g.to_bytes()), g);
        assert!(l2_has_separate_pat(true, false));
        assert!(!l2_has_separate_pat(true, true));
        assert!(!l2_has_separate_pat(false, false));
        // Outside guest mode: header only, RUN_PENDING meaningless.
        assert_eq!(get_header(None, true, true), Header { flags: flags::GIF_SET, format: 1, size: 128, vmcb_pa: 0, gpat: 0 });
    }

    #[test]
    fn set_header_rules() {
        let ok = Header { flags: flags::GUEST_MODE | flags::GIF_SET, format: 1, size: 4224, vmcb_pa: 0x5000, gpat: 0 };
        assert_eq!(check_header(&ok, true, 40), Ok(true));
        assert_eq!(check_header(&Header { flags: flags::GIF_SET, size: 128, ..ok }, false, 40), Ok(false));
        assert_eq!(check_header(&Header { size: 100, ..ok }, true, 40), Err(SetError::Size));
        assert_eq!(check_header(&Header { size: 128, ..ok }, true, 40), Err(SetError::Size));
        assert_eq!(check_header(&Header { flags: 0x40, ..ok }, true, 40), Err(SetError::Flags));
        assert_eq!(check_header(&Header { flags: flags::RUN_PENDING, ..ok }, true, 40), Err(SetError::Flags));
        assert_eq!(check_header(&Header { flags: flags::GUEST_MODE | flags::EVMCS, ..ok }, true, 40), Err(SetError::Flags));
        assert_eq!(check_header(&Header { format: 0, ..ok }, true, 40), Err(SetError::Format));
        assert_eq!(check_header(&ok, false, 40), Err(SetError::SvmOff));
        // Without SVME: no flags or GIF_SET alone, out of guest mode (KVM's
        // rule, which KVM's nested_set_state_test checks).
        assert_eq!(check_header(&Header { flags: 0, size: 128, ..ok }, false, 40), Ok(false));
        assert_eq!(check_header(&Header { flags: flags::GIF_SET, size: 128, ..ok }, false, 40), Ok(false));
        assert_eq!(check_header(&Header { flags: flags::GIF_SET | flags::GUEST_MODE, ..ok }, false, 40), Err(SetError::SvmOff));
        assert_eq!(check_header(&Header { vmcb_pa: 0x5008, ..ok }, true, 40), Err(SetError::VmcbAddress));
        assert_eq!(check_header(&Header { vmcb_pa: 1 << 40, ..ok }, true, 40), Err(SetError::VmcbAddress));
    }

    #[test]
    fn set_data_rules() {
        let mut c = ControlArea::ZERO;
        c.intercepts.set(exit::VMRUN);
        c.asid = 1;
        let mut l1 = SaveArea::ZERO;
        l1.cr0 = 0x8000_0011;
        l1.cr4 = 0x20;
        l1.efer = efer::SVME | efer::LME | efer::LMA;
        l1.cs.attrib = crate::vmcb::seg_attr::L;
        let f = crate::checks::Features { phys_bits: 40, cr4: crate::x86::cr4::DEFINED, efer: !efer::RESERVED };
        assert_eq!(check_data(&c, &l1, &f), Ok(()));
        assert_eq!(check_data(&c, &SaveArea { cr0: 0x11, ..l1 }, &f), Err(SetError::Inconsistent));
        assert_eq!(check_data(&c, &SaveArea { rflags: 1 << 17, ..l1 }, &f), Err(SetError::Inconsistent));
        assert_eq!(check_data(&ControlArea { asid: 0, ..c }, &l1, &f), Err(SetError::Inconsistent));
        assert_eq!(check_data(&c, &SaveArea { efer: efer::LME | efer::LMA, ..l1 }, &f), Err(SetError::Inconsistent));
        // The processor-dependent rules apply to L1's saved state too.
        assert_eq!(check_data(&c, &SaveArea { cr3: 1 << 40, ..l1 }, &f), Err(SetError::Inconsistent));
        let no_smep = crate::checks::Features { cr4: f.cr4 & !crate::x86::cr4::SMEP, ..f };
        assert_eq!(check_data(&c, &SaveArea { cr4: 0x20 | crate::x86::cr4::SMEP, ..l1 }, &no_smep), Err(SetError::Inconsistent));
    }
}
