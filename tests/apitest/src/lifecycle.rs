// SPDX-License-Identifier: GPL-2.0
//! vCPU and VM lifetime cases: KVM_RUN from another thread, immediate_exit,
//! a signal during KVM_RUN, the vCPU mmap, teardown orders, isolation of
//! two VMs, several vCPUs.

use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::time::Duration;

use kvm_ioctls::VcpuExit;

use crate::{install_sigusr1, real_mode, region, small_vm, Env, Mem, R, GOT_SIGNAL};

pub fn run_other_thread(e: &Env) -> R {
    let k = e.kvm();
    let (_vm, vcpu, _m) = small_vm(&k, &[0xb0, 0x42, 0xe6, 0x10, 0xf4]); // mov al,0x42; out 0x10,al; hlt
    let t = std::thread::spawn(move || {
        let mut v = vcpu;
        let first = matches!(v.run(), Ok(VcpuExit::IoOut(0x10, d)) if d == [0x42]);
        let second = matches!(v.run(), Ok(VcpuExit::Hlt));
        (first, second, v)
    });
    let (a, b, _v) = t.join().map_err(|_| "thread panicked".to_string())?;
    (a && b).then_some(()).ok_or(format!("out ok={a} hlt ok={b}"))
}

pub fn immediate_exit(e: &Env) -> R {
    let k = e.kvm();
    let (_vm, mut vcpu, _m) = small_vm(&k, &[0xf4]);
    vcpu.set_kvm_immediate_exit(1);
    match vcpu.run() {
        Err(x) if x.errno() == libc::EINTR => {}
        x => return Err(format!("immediate_exit=1: {x:?}")),
    }
    // KVM leaves exit_reason alone here (only a signal sets KVM_EXIT_INTR);
    // RIP must not have moved.
    let rip = vcpu.get_regs().unwrap().rip;
    vcpu.set_kvm_immediate_exit(0);
    match vcpu.run() {
        Ok(VcpuExit::Hlt) if rip == 0x1000 => Ok(()),
        x => Err(format!("after immediate_exit: rip {rip:#x}, {x:?}")),
    }
}

pub fn signal_during_run(e: &Env) -> R {
    let k = e.kvm();
    let (_vm, vcpu, _m) = small_vm(&k, &[0xeb, 0xfe]); // jmp $
    install_sigusr1();
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        // SAFETY: pthread_self has no preconditions.
        tx.send(unsafe { libc::pthread_self() }).unwrap();
        let mut v = vcpu;
        let r = v.run().map(|_| ()).map_err(|x| x.errno());
        let reason = v.get_kvm_run().exit_reason;
        (r, reason)
    });
    let th = rx.recv().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: signals the test thread, which is alive until joined.
    unsafe { libc::pthread_kill(th, libc::SIGUSR1) };
    let (r, reason) = t.join().map_err(|_| "thread panicked".to_string())?;
    if r != Err(libc::EINTR) || reason != kvm_bindings::KVM_EXIT_INTR || !GOT_SIGNAL.load(Ordering::SeqCst) {
        return Err(format!("KVM_RUN {r:?}, exit_reason {reason}, handler ran {}", GOT_SIGNAL.load(Ordering::SeqCst)));
    }
    Ok(())
}

pub fn mmap_sizes(e: &Env) -> R {
    let k = e.kvm();
    let (_vm, vcpu, _m) = small_vm(&k, &[0xf4]);
    let size = k.get_vcpu_mmap_size().map_err(|x| x.to_string())?;
    if size < 4096 {
        return Err(format!("mmap size {size}"));
    }
    // A mapping larger than the vCPU's pages: the extra page faults (SIGBUS).
    // SAFETY: fork in a test process; the child only touches memory and exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: mapping the vCPU fd; the access beyond its pages must fault.
        unsafe {
            let p = libc::mmap(std::ptr::null_mut(), size + 4096, libc::PROT_READ, libc::MAP_SHARED, vcpu.as_raw_fd(), 0);
            if p == libc::MAP_FAILED {
                libc::_exit(3);
            }
            let first = std::ptr::read_volatile(p.cast::<u8>());
            let _ = first;
            let _beyond = std::ptr::read_volatile(p.cast::<u8>().add(size));
            libc::_exit(0);
        }
    }
    let mut status = 0;
    // SAFETY: waits for our child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if !(libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGBUS) {
        return Err(format!("child status {status:#x}: expected SIGBUS beyond the vCPU pages"));
    }
    // A mapping at an offset beyond the pages faults as well.
    // SAFETY: as above.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: as above.
        unsafe {
            let p = libc::mmap(std::ptr::null_mut(), 4096, libc::PROT_READ, libc::MAP_SHARED, vcpu.as_raw_fd(), 16 * 4096);
            if p == libc::MAP_FAILED {
                libc::_exit(4);
            }
            let _ = std::ptr::read_volatile(p.cast::<u8>());
            libc::_exit(0);
        }
    }
    // SAFETY: waits for our child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let ok = (libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGBUS) || (libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 4);
    ok.then_some(()).ok_or(format!("offset mapping: child status {status:#x}"))
}

pub fn teardown_orders(e: &Env) -> R {
    for order in 0..4 {
        let k = e.kvm();
        let (vm, vcpu, mem) = small_vm(&k, &[0xf4]);
        match order {
            0 => {
                drop(vcpu);
                drop(vm);
            }
            1 => {
                // VM fd closed first: the vCPU keeps the VM alive and still runs.
                drop(vm);
                let mut v = vcpu;
                if !matches!(v.run(), Ok(VcpuExit::Hlt)) {
                    return Err("vCPU did not run after its VM fd was closed".into());
                }
            }
            2 => {
                drop(k);
                drop(vcpu);
                drop(vm);
            }
            _ => {
                // Guest memory unmapped before the VM goes away.
                drop(mem);
                drop(vm);
                drop(vcpu);
                continue;
            }
        }
        drop(mem);
    }
    Ok(())
}

pub fn two_vms_isolated(e: &Env) -> R {
    let k = e.kvm();
    // Each guest reads the byte at GPA 0 and writes it to port 0x10.
    let code = [0xa0, 0x00, 0x00, 0xe6, 0x10, 0xf4]; // mov al,[0]; out 0x10,al; hlt
    let (_vm1, mut c1, mut m1) = small_vm(&k, &code);
    let (_vm2, mut c2, mut m2) = small_vm(&k, &code);
    m1.bytes()[0] = 0xaa;
    m2.bytes()[0] = 0x55;
    let a = match c1.run() {
        Ok(VcpuExit::IoOut(0x10, d)) => d[0],
        x => return Err(format!("vm1: {x:?}")),
    };
    let b = match c2.run() {
        Ok(VcpuExit::IoOut(0x10, d)) => d[0],
        x => return Err(format!("vm2: {x:?}")),
    };
    (a == 0xaa && b == 0x55).then_some(()).ok_or(format!("vm1 read {a:#x}, vm2 read {b:#x}"))
}

pub fn multi_vcpu(e: &Env) -> R {
    let k = e.kvm();
    let vm = k.create_vm().unwrap();
    let mut mem = Mem::new(0x10000);
    // vCPU n runs at 0x1000 + 0x100*n: mov al, n; out 0x10, al; hlt
    for n in 0..4u8 {
        let at = 0x1000 + 0x100 * n as usize;
        mem.bytes()[at..at + 5].copy_from_slice(&[0xb0, n, 0xe6, 0x10, 0xf4]);
    }
    // SAFETY: mem outlives the VM.
    unsafe { vm.set_user_memory_region(region(0, 0, 0x10000, mem.ptr as u64, 0)) }.unwrap();
    let mut threads = Vec::new();
    for n in 0..4u64 {
        let v = vm.create_vcpu(n).map_err(|x| format!("vcpu {n}: {x}"))?;
        real_mode(&v, 0x1000 + 0x100 * n);
        threads.push(std::thread::spawn(move || {
            let mut v = v;
            let out = match v.run() {
                Ok(VcpuExit::IoOut(0x10, d)) => Some(d[0]),
                _ => None,
            };
            (out, matches!(v.run(), Ok(VcpuExit::Hlt)))
        }));
    }
    for (n, t) in threads.into_iter().enumerate() {
        let (o, h) = t.join().map_err(|_| "panic".to_string())?;
        if o != Some(n as u8) || !h {
            return Err(format!("vcpu {n}: out {o:?}, hlt {h}"));
        }
    }
    Ok(())
}
