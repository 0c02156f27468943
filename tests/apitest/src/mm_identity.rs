// SPDX-License-Identifier: GPL-2.0
//! `mm_identity`: a VM fd is usable only from the process that created it,
//! also once that process is gone and a new one has an address space at the
//! same address. Child A creates a VM, forks B (which inherits the fd) and
//! exits, freeing its address space; B then forks 64 children (whose
//! `mm_struct`s the kernel tends to allocate where A's was) that try a VM
//! ioctl: each must get EIO, as in KVM, which holds a reference to the
//! creator's `mm` for the VM's life. Comparing a bare pointer lets one of
//! them through. (No fd passing: the test kernel has no UNIX sockets.)

use std::os::fd::RawFd;

use nsvm_core::uapi::kvm;

use crate::{ioctl, Env, R};

pub(crate) fn mm_identity(e: &Env) -> R {
    let mut p = [0 as RawFd; 2];
    // SAFETY: `p` has room for the two fds.
    if unsafe { libc::pipe(p.as_mut_ptr()) } != 0 {
        return Err("pipe failed".into());
    }
    let dev = std::ffi::CString::new(e.device.clone()).unwrap();
    let tries = 64u8;
    // SAFETY: fork in a test process; the children only make system calls
    // and _exit.
    let a = unsafe { libc::fork() };
    if a == 0 {
        // Child A: the creator.
        // SAFETY: a NUL-terminated path.
        let sys = unsafe { libc::open(dev.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        let vm = ioctl(sys, kvm::CREATE_VM, 0).unwrap_or(-1) as RawFd;
        // SAFETY: getpid has no preconditions.
        let creator = unsafe { libc::getpid() };
        // SAFETY: as above.
        if vm < 0 || unsafe { libc::fork() } != 0 {
            // SAFETY: A ends here, B (forked above) goes on.
            unsafe { libc::_exit(if vm < 0 { 1 } else { 0 }) };
        }
        // B: wait until A is gone (reparented: A's exit_mm is done).
        // SAFETY: getppid has no preconditions.
        while unsafe { libc::getppid() } == creator {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        // [passed, other errors, own result] as bytes to the test process.
        // The children stay alive until all have tried, so that each new
        // one gets a new mm_struct (one of them, likely, A's old one).
        let (mut hold, mut res) = ([0 as RawFd; 2], [0 as RawFd; 2]);
        // SAFETY: room for two fds each.
        unsafe {
            libc::pipe(hold.as_mut_ptr());
            libc::pipe(res.as_mut_ptr());
        }
        let mut kids = Vec::new();
        for _ in 0..tries {
            // SAFETY: as above.
            let c = unsafe { libc::fork() };
            if c == 0 {
                let code: u8 = match ioctl(vm, kvm::CHECK_EXTENSION, 0) {
                    Err(libc::EIO) => 0,
                    Ok(_) => 1,
                    Err(_) => 2,
                };
                let mut b = [0u8; 1];
                // SAFETY: one byte each way; the read returns at EOF, when
                // B closes the write end.
                unsafe {
                    libc::write(res[1], [code].as_ptr().cast(), 1);
                    libc::close(hold[1]);
                    libc::read(hold[0], b.as_mut_ptr().cast(), 1);
                    libc::_exit(0);
                }
            }
            kids.push(c);
        }
        let mut out = [0u8; 3];
        for _ in 0..tries {
            let mut b = [0u8; 1];
            // SAFETY: reads one byte.
            if unsafe { libc::read(res[0], b.as_mut_ptr().cast(), 1) } != 1 {
                out[1] += 1;
                continue;
            }
            match b[0] {
                0 => {}
                1 => out[0] += 1,
                _ => out[1] += 1,
            }
        }
        // SAFETY: releases the children, then reaps them.
        unsafe {
            libc::close(hold[1]);
            for c in kids {
                let mut st = 0;
                libc::waitpid(c, &mut st, 0);
            }
        }
        out[2] = u8::from(ioctl(vm, kvm::CHECK_EXTENSION, 0) != Err(libc::EIO));
        // SAFETY: `out` is 3 readable bytes; then B ends.
        unsafe {
            libc::write(p[1], out.as_ptr().cast(), 3);
            libc::_exit(0);
        }
    }
    // SAFETY: the write end belongs to B now.
    unsafe { libc::close(p[1]) };
    let mut st = 0;
    // SAFETY: waits for A.
    unsafe { libc::waitpid(a, &mut st, 0) };
    let mut res = [0u8; 3];
    // SAFETY: reads at most 3 bytes into `res` (blocks until B writes or ends).
    let n = unsafe { libc::read(p[0], res.as_mut_ptr().cast(), 3) };
    // SAFETY: our read end.
    unsafe { libc::close(p[0]) };
    if n != 3 {
        return Err(format!("no result from the processes after the creator (creator status {st:#x})"));
    }
    if res[0] != 0 || res[1] != 0 {
        return Err(format!("{} of {tries} later processes passed the creator check ({} other errors)", res[0], res[1]));
    }
    if res[2] != 0 {
        return Err("the fd's inheritor passed the creator check".into());
    }
    Ok(())
}
