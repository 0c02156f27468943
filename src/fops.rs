// SPDX-License-Identifier: GPL-2.0
//! Leaf module: the file-operation entry points the C shim's
//! `file_operations` call (see src/shim.c).

use kernel::bindings;
use kernel::ffi::{c_long, c_uint, c_ulong};

/// `unlocked_ioctl` of `/dev/nsvm`.
#[no_mangle]
extern "C" fn nsvm_rs_sys_ioctl(_file: *mut bindings::file, cmd: c_uint, arg: c_ulong) -> c_long {
    match crate::dev::system_ioctl(cmd, arg as usize) {
        Ok(v) => v as c_long,
        Err(e) => e.to_errno() as c_long,
    }
}
