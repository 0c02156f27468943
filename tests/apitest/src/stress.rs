// SPDX-License-Identifier: GPL-2.0
//! Stress cases run by name: VM churn, the hostile-guest fuzz, the THP
//! probe, the random-ioctl fuzz (`--fuzz N`), slot churn.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use kvm_bindings::kvm_regs;
use kvm_ioctls::VcpuExit;
use nsvm_core::uapi::{ioc_nr, kvm, KVMIO, NSVMIO};

use crate::slot_churn;
use crate::{ioctl, on_sigusr1, small_vm, Env, Mem, R};

/// 200 VMs, each with a vCPU that runs to HLT after touching guest memory,
/// created and destroyed in turn (the suite checks free memory around it).
pub fn vm_churn(e: &Env) -> R {
    let k = e.kvm();
    for i in 0..200 {
        // mov [0x3000], al; hlt: touches a second page besides the code page.
        let (vm, mut vcpu, mem) = small_vm(&k, &[0xa2, 0x00, 0x30, 0xf4]);
        match vcpu.run() {
            Ok(VcpuExit::Hlt) => {}
            x => return Err(format!("iteration {i}: {x:?}")),
        }
        let s = vcpu.get_kvm_run().exit_reason;
        let _ = s;
        drop(vcpu);
        drop(vm);
        drop(mem);
    }
    Ok(())
}

/// A hostile guest: 300 VMs running random sequences of the instructions
/// that exit to L0 or stress its emulation (port and string I/O with random
/// counts, CPUID, RDMSR/WRMSR of random MSRs, XSETBV, SVM instructions,
/// INTn/INT3/UD2, MMIO and RAM accesses, CR0 writes, SIDT/SGDT/SLDT/SMSW,
/// PUSHF/POPF, HLT, far-away jumps...) in random modes with random registers
/// and random interrupt tables, each run stopped by a timer signal if it does
/// not exit by itself. Every KVM_RUN must end in a defined way and the host
/// must stay healthy (the suite checks the kernel log). Fully random bytes
/// are not used: they crash QEMU's TCG code generator (a QEMU bug,
/// segmentation fault in tcg_optimize), which would hide nsvm's behaviour.
pub fn guest_fuzz(e: &Env) -> R {
    let mut seed: u64 = 0x1234_5678_9abc_def1;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    // SAFETY: a handler that does nothing; no SA_RESTART, so the timer
    // signal interrupts KVM_RUN.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigusr1 as *const () as usize;
        libc::sigaction(libc::SIGALRM, &sa, std::ptr::null_mut());
    }
    // Instruction templates; 0xAA bytes are replaced by random bytes.
    const SNIPPETS: &[&[u8]] = &[
        &[0x0f, 0xa2], &[0x0f, 0x32], &[0x0f, 0x30], &[0xf4], &[0xe6, 0xaa], &[0xe4, 0xaa], &[0xee], &[0xec],
        &[0xef], &[0xed], &[0x66, 0xef], &[0xf3, 0x6e], &[0xf3, 0x6c], &[0xf3, 0x6f], &[0xf3, 0x6d], &[0x6e], &[0x6c],
        &[0xcd, 0xaa], &[0x0f, 0x0b], &[0xcc], &[0x8b, 0x07], &[0x89, 0x07], &[0xc6, 0x06, 0xaa, 0xaa, 0xaa],
        &[0xa1, 0xaa, 0xaa], &[0xa3, 0xaa, 0xaa], &[0x0f, 0xb6, 0x07], &[0x0f, 0x01, 0xd9], &[0x0f, 0x01, 0xd8],
        &[0x0f, 0x01, 0xda], &[0x0f, 0x01, 0xdb], &[0x0f, 0x01, 0xdc], &[0x0f, 0x01, 0xdd], &[0x0f, 0x01, 0xde],
        &[0x0f, 0x01, 0xdf], &[0x0f, 0x01, 0xd1], &[0x0f, 0x09], &[0x0f, 0x08], &[0xfa], &[0xfb], &[0x9c], &[0x9d],
        &[0x0f, 0x01, 0x0e, 0xaa, 0xaa], &[0x0f, 0x01, 0x06, 0xaa, 0xaa], &[0x0f, 0x00, 0xc0], &[0x0f, 0x01, 0xe0],
        &[0x0f, 0x22, 0xc0], &[0x0f, 0x20, 0xc0], &[0x0f, 0x31], &[0xf1], &[0xe9, 0xaa, 0xaa], &[0xff, 0xe0],
        &[0xcf], &[0x0f, 0x06], &[0xb8, 0xaa, 0xaa], &[0xb9, 0xaa, 0xaa], &[0xba, 0xaa, 0xaa], &[0xbf, 0xaa, 0xaa],
        &[0x66, 0xb8, 0xaa, 0xaa, 0xaa, 0xaa], &[0x66, 0xb9, 0xaa, 0xaa, 0xaa, 0xaa], &[0xf3, 0x90], &[0x0f, 0x01, 0xf9],
        &[0x0f, 0xae, 0x06, 0xaa, 0xaa], &[0x0f, 0x0d, 0x00],
        // String instructions on MMIO: LODS, MOVS, STOS, with REP and 67.
        &[0xf3, 0xac], &[0xad], &[0xf3, 0xa4], &[0x66, 0xa5], &[0x67, 0xf3, 0xad], &[0xaa], &[0xf3, 0xab], &[0xfd],
    ];
    let fill = |buf: &mut [u8], rnd: &mut dyn FnMut() -> u64| {
        let mut i = 0;
        while i < buf.len() {
            let s = SNIPPETS[(rnd() % SNIPPETS.len() as u64) as usize];
            for &b in s {
                if i < buf.len() {
                    buf[i] = if b == 0xaa { rnd() as u8 } else { b };
                    i += 1;
                }
            }
        }
    };
    let k = e.kvm();
    let cpuid = k.get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES).map_err(|x| x.to_string())?;
    let modes: Vec<u64> = std::env::var("FUZZ_MODES").unwrap_or("012".into()).bytes().map(|b| u64::from(b - b'0')).collect();
    let runs: u32 = std::env::var("FUZZ_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    let mut outcomes = std::collections::BTreeMap::<String, u32>::new();
    for _ in 0..runs {
        let (_vm, mut vcpu, mut mem) = small_vm(&k, &[]);
        // All of memory, interrupt vectors and (for SVM guests) the vmcb12
        // that VMRUN reads included, is made of instruction templates with
        // random immediates: whatever a random jump or a random L2 RIP lands
        // on stays within them.
        fill(mem.bytes(), &mut rnd);
        let mut s = vcpu.get_sregs().unwrap();
        match modes[(rnd() % modes.len() as u64) as usize] {
            0 => {}
            1 => {
                s.cr0 = 0x11;
                s.cs.db = 1;
                s.cs.g = 1;
                s.cs.limit = 0xffff_ffff;
            }
            _ => {
                s.cr0 = 0x8000_0011;
                s.cr4 = 0x20;
                s.efer = 0x500 | (rnd() & 0x800);
                s.cr3 = (rnd() & 0xf000) | 0x1000;
                s.cs.l = 1;
                s.cs.db = 0;
            }
        }
        // Every vCPU gets the supported CPUID (KVM_SET_SREGS refuses
        // EFER.LME without long mode in it, on nsvm as on KVM). Half of the
        // guests get SVM (EFER.SVME, VMRUN with RAX inside guest memory):
        // random vmcb12 contents reach nsvm's nested checks.
        vcpu.set_cpuid2(&cpuid).map_err(|x| x.to_string())?;
        let svm = rnd() % 2 == 0;
        if svm {
            s.efer |= 0x1000;
        }
        if vcpu.set_sregs(&s).is_err() {
            *outcomes.entry("sregs refused".into()).or_default() += 1;
            continue;
        }
        let mut r = kvm_regs { rip: rnd() & 0xfff0, rflags: 2 | (rnd() & 0x8d5), ..Default::default() };
        r.rax = if svm { rnd() & 0xf000 } else { rnd() };
        r.rbx = rnd();
        r.rcx = rnd() & 0xffff;
        r.rdx = rnd();
        r.rsi = rnd() & 0xffff;
        r.rdi = rnd() & 0xffff;
        r.rsp = rnd() & 0xfff0;
        vcpu.set_regs(&r).unwrap();
        // Up to 8 runs, each bounded by a 20 ms timer.
        for _ in 0..8 {
            // SAFETY: arms a one-shot real-time timer for this process.
            unsafe {
                let t = libc::itimerval { it_interval: libc::timeval { tv_sec: 0, tv_usec: 0 }, it_value: libc::timeval { tv_sec: 0, tv_usec: 20_000 } };
                libc::setitimer(libc::ITIMER_REAL, &t, std::ptr::null_mut());
            }
            let mut res = vcpu.run();
            let key = match &mut res {
                Ok(VcpuExit::IoIn(_, d)) => {
                    d.iter_mut().for_each(|b| *b = 0);
                    "io".to_string()
                }
                Ok(VcpuExit::MmioRead(_, d)) => {
                    d.iter_mut().for_each(|b| *b = 0);
                    "mmio".to_string()
                }
                Ok(x) => format!("{x:?}").split('(').next().unwrap_or("?").to_string(),
                Err(x) if x.errno() == libc::EINTR => "EINTR".to_string(),
                Err(x) => return Err(format!("KVM_RUN failed with errno {}", x.errno())),
            };
            *outcomes.entry(key.clone()).or_default() += 1;
            if matches!(key.as_str(), "Shutdown" | "FailEntry" | "InternalError" | "Hlt") {
                break;
            }
        }
        // SAFETY: disarms the timer.
        unsafe {
            let t: libc::itimerval = std::mem::zeroed();
            libc::setitimer(libc::ITIMER_REAL, &t, std::ptr::null_mut());
        }
    }
    println!("  outcomes: {outcomes:?}");
    Ok(())
}

/// Prints whether the kernel backs a 2 MiB-aligned MADV_HUGEPAGE region with
/// a transparent huge page (diagnostics for the THP test).
pub fn thp_probe(_e: &Env) -> R {
    // SAFETY: anonymous mapping, checked; touched only inside.
    unsafe {
        let len = 8 << 20;
        let p = libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0);
        assert!(p != libc::MAP_FAILED);
        let start = ((p as usize + (2 << 20) - 1) & !((2 << 20) - 1)) as *mut u8;
        let r = libc::madvise(start.cast(), 4 << 20, libc::MADV_HUGEPAGE);
        *start = 1;
        *start.add(2 << 20) = 1;
        let s = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap_or_default();
        println!("madvise={r} {}", s.lines().filter(|l| l.contains("AnonHuge")).collect::<Vec<_>>().join(" "));
    }
    Ok(())
}

/// Random ioctls with random arguments on every kind of fd: each must return
/// (an errno or a value); the run ends with the host still healthy.
pub fn fuzz(e: &Env, n: u64) -> R {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let k = e.kvm();
    let (vm, vcpu, _m) = small_vm(&k, &[0xf4]);
    let mut buf = Mem::new(0x10000);
    let fds = [k.as_raw_fd(), vm.as_raw_fd(), vcpu.as_raw_fd()];
    // Commands: KVM's numbers (types 0xAE) and nsvm's (0xB7) with random
    // direction/size bits, plus fully random ones. KVM_RUN is skipped: a
    // random guest state may legitimately run forever.
    let mut created: Vec<OwnedFd> = Vec::new();
    let mut answered = 0u64;
    for i in 0..n {
        let r = rnd();
        let nr = (r >> 8) as u32 & 0xff;
        let ty = match r % 4 {
            0 | 1 => KVMIO,
            2 => NSVMIO,
            _ => (r >> 16) as u32 & 0xff,
        };
        let size = if r & (1 << 40) != 0 { ((r >> 24) as u32) & 0x3fff } else { [0u32, 4, 8, 32, 144, 312, 160, 40][(r >> 41) as usize % 8] };
        let dir = (r >> 50) as u32 & 3;
        let cmd = (dir << 30) | (size << 16) | (ty << 8) | nr;
        // One in four: exactly one of the ioctls of the QEMU surface (issue
        // 10), so their argument checks see random input often.
        const SURFACE: [u32; 16] = [
            kvm::GET_XSAVE, kvm::SET_XSAVE, kvm::GET_XSAVE2, kvm::GET_XCRS, kvm::SET_XCRS,
            kvm::GET_DEBUGREGS, kvm::SET_DEBUGREGS, kvm::GET_CPUID2, kvm::IOEVENTFD,
            kvm::X86_SETUP_MCE, kvm::X86_SET_MCE, kvm::X86_GET_MCE_CAP_SUPPORTED, kvm::SET_GUEST_DEBUG,
            kvm::GET_CLOCK, kvm::SET_CLOCK, kvm::SET_BOOT_CPU_ID,
        ];
        let cmd = if (r >> 60) & 3 == 0 { SURFACE[(r >> 32) as usize % SURFACE.len()] } else { cmd };
        if cmd == kvm::RUN {
            continue;
        }
        let arg = match (r >> 52) % 5 {
            0 => 0,
            1 => rnd() & 0xffff,
            2 => buf.ptr as u64 + (rnd() % 0x8000),
            3 => 0xffff_8000_0000_0000 | (rnd() & 0xffff_ffff),
            _ => rnd(),
        };
        if arg >= buf.ptr as u64 && arg < buf.ptr as u64 + 0x10000 {
            for b in buf.bytes()[0x8000..].iter_mut().take(64) {
                *b = rnd() as u8;
            }
        }
        let fd = fds[(r >> 58) as usize % 3];
        let res = ioctl(fd, cmd, arg);
        answered += 1;
        // ioctls that create fds (VM, vCPU) return them: close them.
        if let Ok(v) = res {
            if ty == KVMIO && (nr == ioc_nr(kvm::CREATE_VM) || nr == ioc_nr(kvm::CREATE_VCPU)) && v > 2 {
                // SAFETY: the kernel just gave us this fd.
                created.push(unsafe { OwnedFd::from_raw_fd(v as RawFd) });
                if created.len() > 32 {
                    created.clear();
                }
            }
        }
        if i % 2000 == 0 {
            // The device still answers normally.
            if ioctl(k.as_raw_fd(), kvm::GET_API_VERSION, 0) != Ok(12) {
                return Err(format!("device broken after {i} random ioctls"));
            }
        }
    }
    drop(created);
    let mut v = vcpu;
    match v.run() {
        Ok(_) | Err(_) => {}
    }
    println!("  {answered} random ioctls answered");
    (ioctl(k.as_raw_fd(), kvm::GET_API_VERSION, 0) == Ok(12)).then_some(()).ok_or("device broken at the end".into())
}

/// `slot_churn` with the rounds of `NSVM_SLOT_CHURN_ROUNDS` (10,000 by default).
pub fn slot_churn_case(e: &Env) -> R {
    let rounds = std::env::var("NSVM_SLOT_CHURN_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    slot_churn::slot_churn(e, rounds)
}
