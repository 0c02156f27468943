// SPDX-License-Identifier: GPL-2.0
//! `KVM_X86_SET_MSR_FILTER` and `KVM_CAP_X86_USER_SPACE_MSR` of a VM: the
//! checks and lookups are `nsvm_core::msr_filter`'s; here the bitmaps are
//! copied from userspace and the filter replaced under its lock. Every MSR
//! access of a guest already exits to L0 (`svm::PermissionMaps`: the MSRPM
//! intercepts all of them), so a new filter applies from the next RDMSR or
//! WRMSR, as KVM's recomputed intercepts do.

use kernel::prelude::*;
use kernel::uaccess::{UserPtr, UserSlice};

use core::sync::atomic::Ordering;

use nsvm_core::msr_filter::{self, Filter, FilterSpec, FILTER_SIZE};

use super::Vm;

/// An installed filter and its bitmaps.
pub(crate) struct MsrFilter {
    filter: Filter,
    bits: KVec<u8>,
}

fn errno(e: nsvm_core::uapi::Errno) -> Error {
    Error::from_errno(-e.number())
}

impl Vm {
    /// `KVM_ENABLE_CAP(KVM_CAP_X86_USER_SPACE_MSR)`: the reasons for which a
    /// failed guest RDMSR/WRMSR exits to userspace (`EINVAL` for others).
    pub(super) fn enable_user_space_msr(&self, arg0: u64) -> Result<isize> {
        let m = msr_filter::user_space_msr_mask(arg0).map_err(errno)?;
        self.user_space_msr.store(m, Ordering::Relaxed);
        Ok(0)
    }

    /// `KVM_X86_SET_MSR_FILTER`, in KVM's order: the struct copied
    /// (`EFAULT`), its flags and emptiness checked (`EINVAL`), then each
    /// non-empty range checked (`EINVAL`) and its bitmap copied (`EFAULT`);
    /// on success the new filter replaces the old one.
    pub(super) fn set_msr_filter(&self, arg: usize) -> Result<isize> {
        let mut b = [0u8; FILTER_SIZE];
        UserSlice::new(UserPtr::from_addr(arg), FILTER_SIZE).reader().read_slice(&mut b)?;
        let spec = FilterSpec::from_bytes(&b);
        spec.check_header().map_err(errno)?;
        let mut filter = Filter::new(spec.default_allow());
        let mut bits = KVec::new();
        for r in spec.ranges.iter().filter(|r| !r.is_empty()) {
            r.check().map_err(errno)?;
            let span = filter.push(r).ok_or(EINVAL)?;
            bits.resize(span.end, 0u8, GFP_KERNEL_ACCOUNT)?;
            UserSlice::new(UserPtr::from_addr(r.bitmap as usize), span.len()).reader().read_slice(&mut bits[span])?;
        }
        let new = MsrFilter { filter, bits };
        let old = self.msr_filter.lock().replace(new);
        drop(old);
        Ok(0)
    }

    /// Whether the guest may read (`write` false) or write MSR `index`
    /// (no filter: everything).
    pub(crate) fn msr_allowed(&self, index: u32, write: bool) -> bool {
        let ty = if write { msr_filter::WRITE } else { msr_filter::READ };
        self.msr_filter.lock().as_ref().is_none_or(|f| f.filter.allowed(&f.bits, index, ty))
    }
}
