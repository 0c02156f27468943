// SPDX-License-Identifier: GPL-2.0
//! Opening the device and raw ioctls, with errors that say what to do.

use std::fs::File;
use std::os::fd::AsRawFd;

use nsvm_core::uapi::{self, NsvmHostInfo};

use crate::cli::IoctlArgs;
use crate::Failure;

/// The device used when `--device` is not given.
pub const DEFAULT_DEVICE: &str = "/dev/nsvm";

/// Opens a KVM-API device, explaining the usual failures.
pub fn open_device(path: &str) -> Result<File, Failure> {
    std::fs::OpenOptions::new().read(true).write(true).open(path).map_err(|e| {
        let hint = match e.raw_os_error() {
            Some(libc::ENOENT) if path.ends_with("nsvm") => {
                "the nsvm module is not loaded: load it with 'insmod nsvm.ko' (as root)".to_string()
            }
            Some(libc::ENOENT) => format!("{path} does not exist: load its module first"),
            Some(libc::EACCES) | Some(libc::EPERM) => format!(
                "permission denied: {path} is root-only by default; run as root, or load nsvm with dev_mode=0666"
            ),
            Some(libc::ENODEV) | Some(libc::ENXIO) => {
                format!("{path} has no driver behind it: load the module again")
            }
            _ => "check that the module is loaded and the path is right".to_string(),
        };
        Failure(format!("cannot open {path}: {e}; {hint}"))
    })
}

/// The symbolic name of an errno value.
pub fn errno_name(e: i32) -> String {
    nsvm_core::uapi::errno_name(e).map_or_else(|| format!("errno{e}"), str::to_string)
}

/// Issues one ioctl; `Err(errno)` on failure.
pub fn ioctl(f: &File, cmd: u32, arg: u64) -> Result<i64, i32> {
    // SAFETY: the kernel validates `arg`; where it is a pointer, callers pass
    // a buffer at least as large as the command's size field, or a pointer
    // that is meant to be invalid (the kernel must then return EFAULT).
    let r = unsafe { libc::ioctl(f.as_raw_fd(), cmd as _, arg) };
    if r < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(r as i64)
    }
}

/// `NSVM_GET_HOST_INFO`, or the errno (EINVAL from KVM's /dev/kvm, which does not know it).
pub fn host_info(f: &File) -> Result<NsvmHostInfo, i32> {
    let mut buf = [0u8; core::mem::size_of::<NsvmHostInfo>()];
    ioctl(f, uapi::nsvm::GET_HOST_INFO, buf.as_mut_ptr() as u64)?;
    Ok(NsvmHostInfo::from_bytes(&buf))
}

/// A number, decimal or 0x-prefixed hex (clap value parser).
pub fn parse_num(s: &str) -> Result<u64, String> {
    let r = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(h, 16)
    } else {
        s.parse::<u64>()
    };
    r.map_err(|_| format!("'{s}' is not a number (decimal or 0x-prefixed hex)"))
}

/// An ioctl command number (clap value parser).
pub fn parse_cmd(s: &str) -> Result<u32, String> {
    u32::try_from(parse_num(s)?).map_err(|_| "an ioctl command fits in 32 bits".to_string())
}

/// `nsvm ioctl CMD [ARG] [--out SIZE | --bad-ptr]`.
pub fn run_ioctl(a: &IoctlArgs) -> Result<(), Failure> {
    let cmd = a.cmd;
    let bad_ptr = a.bad_ptr;
    let out = a.out.map(usize::try_from).transpose().map_err(|_| Failure("--out SIZE is too large".into()))?;
    if out.is_some_and(|n| n > 1 << 20) {
        return Err(Failure("--out takes at most 1 MiB".into()));
    }
    let f = open_device(&a.dev.device)?;
    let mut buf = vec![0u8; out.unwrap_or(0)];
    let arg = if bad_ptr {
        // A kernel address: never valid as a user pointer.
        0xffff_8000_0000_0000u64
    } else if out.is_some() {
        buf.as_mut_ptr() as u64
    } else {
        a.arg.unwrap_or(0)
    };
    match ioctl(&f, cmd, arg) {
        Ok(r) => {
            print!("ok {r}");
            if out.is_some() {
                print!(" data");
                for b in &buf {
                    print!(" {b:02x}");
                }
            }
            println!();
        }
        Err(e) => println!("err {}", errno_name(e)),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::errno_name;

    /// nsvm_core's errno numbering is the C library's.
    #[test]
    fn errno_names_match_libc() {
        let known = [
            (libc::EPERM, "EPERM"),
            (libc::ENOENT, "ENOENT"),
            (libc::EINTR, "EINTR"),
            (libc::EIO, "EIO"),
            (libc::ENXIO, "ENXIO"),
            (libc::E2BIG, "E2BIG"),
            (libc::EBADF, "EBADF"),
            (libc::EAGAIN, "EAGAIN"),
            (libc::ENOMEM, "ENOMEM"),
            (libc::EACCES, "EACCES"),
            (libc::EFAULT, "EFAULT"),
            (libc::EBUSY, "EBUSY"),
            (libc::EEXIST, "EEXIST"),
            (libc::ENODEV, "ENODEV"),
            (libc::EINVAL, "EINVAL"),
            (libc::ENOTTY, "ENOTTY"),
            (libc::ENOSPC, "ENOSPC"),
            (libc::ERANGE, "ERANGE"),
            (libc::ENOSYS, "ENOSYS"),
            (libc::EOPNOTSUPP, "EOPNOTSUPP"),
        ];
        for (e, n) in known {
            assert_eq!(errno_name(e), n);
        }
        assert_eq!(errno_name(1000), "errno1000");
    }
}
