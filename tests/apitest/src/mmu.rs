// SPDX-License-Identifier: GPL-2.0
//! Guest memory follows the VMM's page tables (`KVM_CAP_SYNC_MMU`): the
//! guest sees a page the VMM replaced (MADV_DONTNEED, or an anonymous
//! mmap(MAP_FIXED) over it where the kernel has no madvise(2), as the test
//! kernel), `KVM_RUN` fails with `EFAULT` once the VMM unmapped the page the
//! guest reads (kvm_handle_error_pfn), and a VM larger than RLIMIT_MEMLOCK
//! runs (nothing of it is pinned for long). Same outcome required on
//! /dev/nsvm and /dev/kvm.

use std::sync::mpsc;
use std::time::Duration;

use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};

use super::{real_mode, region, Env, Mem, R};
use nsvm_core::uapi::cap;

/// Real-mode guest at 0x1000: reads the byte at 0x3000 and reports it with
/// OUT 0x10 whenever it differs from the last value reported (first: any
/// value but 0xff), in a loop without other exits.
const WATCH: [u8; 15] = [
    0xb3, 0xff, // mov bl, 0xff
    0xa0, 0x00, 0x30, // 1002: mov al, [0x3000]
    0x38, 0xd8, // cmp al, bl
    0x74, 0xf9, // je 1002
    0x88, 0xc3, // mov bl, al
    0xe6, 0x10, // out 0x10, al
    0xeb, 0xf3, // jmp 1002
];

/// A VM whose memory is two slots: 0-0x3000 (code) and 0x3000-0x4000 (the
/// watched page, its own mapping), running `WATCH`.
fn watch_vm(kvm: &Kvm) -> (VmFd, VcpuFd, Mem, Mem) {
    let vm = kvm.create_vm().expect("create vm");
    let mut code = Mem::new(0x3000);
    code.bytes()[0x1000..0x1000 + WATCH.len()].copy_from_slice(&WATCH);
    let data = Mem::new(0x1000);
    // SAFETY: both mappings outlive the VM in the callers (or are unmapped
    // on purpose, which the VM must survive).
    unsafe {
        vm.set_user_memory_region(region(0, 0, 0x3000, code.ptr as u64, 0)).expect("slot 0");
        vm.set_user_memory_region(region(1, 0x3000, 0x1000, data.ptr as u64, 0)).expect("slot 1");
    }
    let vcpu = vm.create_vcpu(0).expect("create vcpu");
    real_mode(&vcpu, 0x1000);
    (vm, vcpu, code, data)
}

/// Throws away the page at `p` as MADV_DONTNEED does (the next access sees
/// a new zero-filled page); with mmap(MAP_FIXED) when madvise(2) is absent.
fn discard(p: *mut u8) -> Result<&'static str, String> {
    // SAFETY: `p` is a page of a private anonymous mapping of the caller.
    if unsafe { libc::madvise(p.cast(), 0x1000, libc::MADV_DONTNEED) } == 0 {
        return Ok("madvise(MADV_DONTNEED)");
    }
    if super::errno() != libc::ENOSYS {
        return Err(format!("madvise: errno {}", super::errno()));
    }
    // SAFETY: replaces our own page with a new anonymous one, same address.
    let q = unsafe { libc::mmap(p.cast(), 0x1000, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED, -1, 0) };
    if q != p.cast() {
        return Err(format!("mmap(MAP_FIXED): errno {}", super::errno()));
    }
    Ok("mmap(MAP_FIXED) (no madvise(2) in this kernel)")
}

/// Ends a `KVM_RUN` of the calling thread that lasts beyond 20 s (SIGUSR1:
/// `EINTR`), so that a guest that never sees the change fails the case
/// instead of hanging the suite.
struct Watchdog {
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
    t: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    fn new() -> Watchdog {
        super::install_sigusr1();
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() };
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let d = done.clone();
        let t = std::thread::spawn(move || {
            let mut waited = 0;
            while !d.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
                waited += 50;
                if waited % 20_000 == 0 {
                    // SAFETY: the watched thread joins this one before it ends.
                    unsafe { libc::pthread_kill(me, libc::SIGUSR1) };
                }
            }
        });
        Watchdog { done, t: Some(t) }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.done.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.t.take() {
            let _ = t.join();
        }
    }
}

fn out_value(r: Result<VcpuExit<'_>, kvm_ioctls::Error>) -> Result<u8, String> {
    match r {
        Ok(VcpuExit::IoOut(0x10, d)) if d.len() == 1 => Ok(d[0]),
        x => Err(format!("{x:?}")),
    }
}

/// KVM_CAP_SYNC_MMU, and the guest sees the VMM's new page after it
/// discarded the old one and wrote new content — between exits, then while
/// the vCPU runs in another thread without exiting.
pub(crate) fn mmu_discard(e: &Env) -> R {
    let k = e.kvm();
    let c = k.check_extension_raw(cap::SYNC_MMU as _);
    if c != 1 {
        return Err(format!("KVM_CAP_SYNC_MMU = {c}"));
    }
    let (_vm, mut vcpu, _code, data) = watch_vm(&k);
    let dog = Watchdog::new();
    data.write(0, &[0x11]);
    let v = out_value(vcpu.run())?;
    if v != 0x11 {
        return Err(format!("first read {v:#x}"));
    }
    let mut how = "";
    for round in 0..50u8 {
        how = discard(data.ptr)?;
        let want = 0x20 + round;
        data.write(0, &[want]);
        // The guest reported the previous value; now it must see `want`.
        let v = out_value(vcpu.run()).map_err(|x| format!("round {round}: {x}"))?;
        if v != want {
            return Err(format!("round {round} ({how}): guest read {v:#x}, the VMM's page holds {want:#x}"));
        }
    }
    drop(dog);
    // Concurrently: the vCPU loops in the guest; each value must reach it.
    // Not on kvm_amd: in one of two l0 runs under QEMU TCG, kvm_amd hit its
    // own WARN_ON_ONCE in kvm_tdp_mmu_map (a spurious fault whose fresh pfn
    // differs from the present SPTE's) during these cases, which fails the
    // suite's kernel-log check; this concurrent part is the likeliest
    // trigger (not established). The sequential rounds are run on both.
    if !e.device.contains("nsvm") {
        return Ok(());
    }
    let (tx, rx) = mpsc::channel();
    let (ttx, trx) = mpsc::channel();
    let t = std::thread::spawn(move || {
        // SAFETY: pthread_self has no preconditions.
        ttx.send(unsafe { libc::pthread_self() }).unwrap();
        let mut v = vcpu;
        loop {
            match out_value(v.run()) {
                Ok(x) => {
                    if tx.send(Ok(x)).is_err() || x == 0xee {
                        break;
                    }
                }
                Err(x) => {
                    let _ = tx.send(Err(x));
                    break;
                }
            }
        }
    });
    let th = trx.recv().unwrap();
    let mut fail = None;
    'rounds: for round in 0..50u8 {
        discard(data.ptr)?;
        let want = if round == 49 { 0xee } else { 0x80 + round };
        data.write(0, &[want]);
        loop {
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(Ok(v)) if v == want => break,
                // A zero-filled page between the discard and the write.
                Ok(Ok(_)) => {}
                Ok(Err(x)) => {
                    fail = Some(format!("concurrent round {round}: KVM_RUN {x}"));
                    break 'rounds;
                }
                Err(_) => {
                    fail = Some(format!("concurrent round {round} ({how}): the guest never saw {want:#x}"));
                    break 'rounds;
                }
            }
        }
    }
    if fail.is_some() {
        super::install_sigusr1();
        // SAFETY: the vCPU thread is alive until joined; the signal ends its KVM_RUN.
        unsafe { libc::pthread_kill(th, libc::SIGUSR1) };
    }
    t.join().map_err(|_| "vCPU thread panicked".to_string())?;
    fail.map_or(Ok(()), Err)
}

/// The VMM unmaps the page the guest reads: `KVM_RUN` fails with `EFAULT`
/// (between exits, then while the vCPU runs), again on every retry; a new
/// mapping at the same address makes the guest run again with its content.
pub(crate) fn mmu_munmap(e: &Env) -> R {
    let k = e.kvm();
    let (_vm, mut vcpu, _code, data) = watch_vm(&k);
    let dog = Watchdog::new();
    data.write(0, &[0x33]);
    if out_value(vcpu.run())? != 0x33 {
        return Err("first read".into());
    }
    // SAFETY: our own page; the VM must cope with its disappearance.
    unsafe { libc::munmap(data.ptr.cast(), 0x1000) };
    for i in 0..3 {
        match vcpu.run() {
            Err(x) if x.errno() == libc::EFAULT => {}
            x => return Err(format!("KVM_RUN {i} after munmap: {x:?}, expected EFAULT")),
        }
    }
    let remap = || {
        // SAFETY: maps a new page at the address the slot names (freed above).
        let q = unsafe { libc::mmap(data.ptr.cast(), 0x1000, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED, -1, 0) };
        (q == data.ptr.cast()).then_some(()).ok_or(format!("remap: errno {}", super::errno()))
    };
    remap()?;
    data.write(0, &[0x44]);
    let v = out_value(vcpu.run()).map_err(|x| format!("after remapping: {x}"))?;
    if v != 0x44 {
        return Err(format!("after remapping: guest read {v:#x}, expected 0x44"));
    }
    drop(dog);
    // While the vCPU runs in another thread.
    let (ttx, trx) = mpsc::channel();
    let t = std::thread::spawn(move || {
        // SAFETY: pthread_self has no preconditions.
        ttx.send(unsafe { libc::pthread_self() }).unwrap();
        let mut v = vcpu;
        let r = v.run().map(|_| ()).map_err(|x| x.errno());
        (r, v)
    });
    let th = trx.recv().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: as above.
    unsafe { libc::munmap(data.ptr.cast(), 0x1000) };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !t.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    if !t.is_finished() {
        // SAFETY: the vCPU thread is alive until joined; the signal ends its KVM_RUN.
        unsafe { libc::pthread_kill(th, libc::SIGUSR1) };
        let _ = t.join();
        let _ = remap();
        return Err("KVM_RUN still running 20 s after the munmap of the page the guest reads".into());
    }
    let (r, _v) = t.join().map_err(|_| "vCPU thread panicked".to_string())?;
    if r != Err(libc::EFAULT) {
        return Err(format!("KVM_RUN while the page was unmapped: {r:?}, expected EFAULT"));
    }
    // Leave the address mapped for `Mem`'s drop.
    remap()
}

/// Reads a counter of /sys/kernel/debug/nsvm (None when absent).
fn debugfs_counter(name: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/sys/kernel/debug/nsvm/{name}")).ok()?.trim().parse().ok()
}

/// A VM of 1 MiB (guest touching 144 pages) runs in a process whose
/// RLIMIT_MEMLOCK is 64 KiB; on nsvm, the page references it held at once
/// (debugfs `page_refs_max`) stay a handful: mapped pages hold none.
pub(crate) fn mmu_memlock(e: &Env) -> R {
    // Guest: writes one byte into each 4 KiB page from 0x10000 to 0xa0000
    // through ES, then HLT.
    let code: [u8; 21] = [
        0xb8, 0x00, 0x10, // mov ax, 0x1000
        0x8e, 0xc0, // 1003: mov es, ax
        0x26, 0xc6, 0x06, 0x00, 0x00, 0x5a, // mov byte [es:0], 0x5a
        0x05, 0x00, 0x01, // add ax, 0x100
        0x3d, 0x00, 0xa0, // cmp ax, 0xa000
        0x72, 0xf0, // jb 1003
        0xf4, // hlt
        0xf4,
    ];
    let nsvm = e.device.contains("nsvm");
    if nsvm {
        if debugfs_counter("page_refs_max").is_none() {
            return Err("no /sys/kernel/debug/nsvm/page_refs_max".into());
        }
        std::fs::write("/sys/kernel/debug/nsvm/page_refs_max", "0").map_err(|x| format!("reset page_refs_max: {x}"))?;
    }
    // In a child: the limit stays out of the other cases.
    // SAFETY: fork in a test process; the child runs the VM and exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let lim = libc::rlimit { rlim_cur: 64 << 10, rlim_max: 64 << 10 };
        // SAFETY: plain system calls; the child exits with a status.
        unsafe {
            if libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) != 0 {
                libc::_exit(2);
            }
        }
        let k = e.kvm();
        let vm = k.create_vm().expect("create vm");
        let mut mem = Mem::new(1 << 20);
        mem.bytes()[0x1000..0x1000 + code.len()].copy_from_slice(&code);
        // SAFETY: the mapping outlives the VM.
        unsafe { vm.set_user_memory_region(region(0, 0, 1 << 20, mem.ptr as u64, 0)) }.expect("slot");
        let mut vcpu = vm.create_vcpu(0).expect("vcpu");
        real_mode(&vcpu, 0x1000);
        let st = match vcpu.run() {
            Ok(VcpuExit::Hlt) => {
                let m = mem.read(0, 1 << 20);
                if (0x10000..0xa0000).step_by(0x1000).all(|a| m[a] == 0x5a) {
                    0
                } else {
                    4
                }
            }
            _ => 3,
        };
        drop(vcpu);
        drop(vm);
        // SAFETY: ends the child.
        unsafe { libc::_exit(st) };
    }
    let mut status = 0;
    // SAFETY: waits for our child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        return Err(format!("VM under RLIMIT_MEMLOCK 64 KiB: child status {status:#x} (2: setrlimit, 3: KVM_RUN did not end in HLT, 4: stores missing)"));
    }
    if nsvm {
        let max = debugfs_counter("page_refs_max").unwrap_or(u64::MAX);
        // One page looked up at a time by the one vCPU (plus any other
        // VM running meanwhile: none in this suite).
        if max > 8 {
            return Err(format!("page_refs_max {max} while 144 guest pages were mapped: mappings hold page references"));
        }
    }
    Ok(())
}
