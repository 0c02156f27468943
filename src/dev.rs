// SPDX-License-Identifier: GPL-2.0
//! The system fd, `/dev/nsvm`: KVM's system ioctls and nsvm's own.

use kernel::prelude::*;
use kernel::uaccess::{UserPtr, UserSlice};

use nsvm_core::uapi::{self, SystemIoctl};

use crate::svm;

/// Handles an ioctl on `/dev/nsvm`. `arg` is untrusted: pointers are only
/// used through `UserSlice`, which fails with `EFAULT`.
pub(crate) fn system_ioctl(cmd: u32, arg: usize) -> Result<isize> {
    match uapi::decode_system_ioctl(cmd, arg as u64) {
        SystemIoctl::GetApiVersion => Ok(uapi::KVM_API_VERSION as isize),
        SystemIoctl::CheckExtension(cap) => Ok(uapi::cap::check_extension(cap) as isize),
        SystemIoctl::GetHostInfo => {
            let bytes = svm::host_info().to_bytes();
            UserSlice::new(UserPtr::from_addr(arg), bytes.len()).writer().write_slice(&bytes)?;
            Ok(0)
        }
        SystemIoctl::Unsupported => Err(ENOTTY),
    }
}
