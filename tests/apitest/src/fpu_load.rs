// SPDX-License-Identifier: GPL-2.0
//! The guest's FPU state loaded once per `KVM_RUN` (issue 13 item 2), with
//! `fpucheck32.bin`: a guest that holds XMM/YMM0-7 across runs of CPUID
//! exits handled in the kernel, checks them after each one and then
//! changes them (so that an older image of them never passes).
//!
//! - `fpu_once_per_run`: 1,000 CPUID exits in one `KVM_RUN`; on nsvm the
//!   statistics `fpu_loads` and `host_state_saves` grow by one per `KVM_RUN`
//!   (plus at most one per time the vCPU thread was scheduled out meanwhile,
//!   from `/proc/thread-self/status`), not one per exit.
//! - `fpu_migration`: the vCPU thread is moved between CPU 0 and CPU 1 with
//!   `sched_setaffinity` every 200 µs while the guest checks its registers,
//!   and two host threads, one per CPU, keep YMM0-15 (XMM without AVX) in
//!   tight loops and check them: neither side may see the other's values,
//!   and the host registers of the vCPU thread survive each `KVM_RUN`. Run
//!   by name, in the shootdown suite (single-threaded TCG: under MTTCG it
//!   makes the QEMU race of docs/architecture.md frequent, on kvm_amd too).

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;

use kvm_bindings::{kvm_regs, kvm_segment};

use super::fpu::run_checking_host_fpu;
use super::{region, stats_fd_of, Env, Mem, R};

const BASE: u64 = 0x2000;

/// The VM, its vCPU and memory, the guest's register pattern at `BASE`
/// (and its copy at BASE + 0x400), `per_run` checked CPUIDs per OUT.
fn setup(e: &Env, per_run: u32) -> Result<(kvm_ioctls::VmFd, kvm_ioctls::VcpuFd, Arc<Mem>), String> {
    let Some(dir) = &e.guests else { return Err("needs --guests DIR (fpucheck32.bin)".into()) };
    let code = std::fs::read(format!("{dir}/fpucheck32.bin")).map_err(|x| format!("fpucheck32.bin: {x}"))?;
    let k = e.kvm();
    let vm = k.create_vm().map_err(|x| x.to_string())?;
    let mem = Arc::new(Mem::new(0x10000));
    mem.write(0x1000, &code);
    for (i, d) in [0u64, 0x00cf_9b00_0000_ffff, 0x00cf_9300_0000_ffff].iter().enumerate() {
        mem.write(0x500 + 8 * i, &d.to_le_bytes());
    }
    // SAFETY: the mapping outlives the VM (the caller keeps both).
    unsafe { vm.set_user_memory_region(region(0, 0, 0x10000, mem.ptr as u64, 0)) }.map_err(|x| x.to_string())?;
    let cpuid = k.get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES).map_err(|x| x.to_string())?;
    let v = vm.create_vcpu(0).map_err(|x| x.to_string())?;
    v.set_cpuid2(&cpuid).map_err(|x| x.to_string())?;
    let mut s = v.get_sregs().map_err(|x| x.to_string())?;
    let seg = |sel: u16, t: u8| kvm_segment { base: 0, limit: 0xffff_ffff, selector: sel, type_: t, present: 1, dpl: 0, db: 1, s: 1, l: 0, g: 1, avl: 0, unusable: 0, padding: 0 };
    s.cs = seg(8, 0xb);
    s.ds = seg(0x10, 3);
    s.es = seg(0x10, 3);
    s.ss = seg(0x10, 3);
    s.gdt.base = 0x500;
    s.gdt.limit = 23;
    s.cr0 = 0x11;
    v.set_sregs(&s).map_err(|x| x.to_string())?;
    v.set_regs(&kvm_regs { rip: 0x1000, rflags: 2, rsp: 0x8000, rbx: BASE, ..Default::default() }).map_err(|x| x.to_string())?;
    let pattern: Vec<u8> = (0..256u32).map(|i| (0x5a ^ (i * 13)) as u8).collect();
    mem.write(BASE as usize, &pattern);
    mem.write(BASE as usize + 0x400, &pattern);
    mem.write(BASE as usize + 0x3f8, &per_run.to_le_bytes());
    for i in 0..4 {
        mem.write(BASE as usize + 0x3e0 + 4 * i, &1u32.to_le_bytes());
    }
    Ok((vm, v, mem))
}

/// One `KVM_RUN` (host vector registers checked around it) that must end
/// with the guest's OUT 0x10 after its round of checked CPUIDs.
fn run_round(v: &mut kvm_ioctls::VcpuFd, host: &[u8; 512], avx: bool) -> R {
    run_checking_host_fpu(v.as_raw_fd(), host, avx)?;
    let r = v.get_kvm_run();
    let reason = r.exit_reason;
    // SAFETY: exit_reason checked before reading the io member.
    let port = if reason == kvm_bindings::KVM_EXIT_IO { unsafe { r.__bindgen_anon_1.io.port } } else { 0 };
    if reason != kvm_bindings::KVM_EXIT_IO || port != 0x10 {
        let rax = v.get_regs().map(|g| g.rax).unwrap_or(0);
        return Err(format!("exit {reason} port {port:#x} (0x12: the guest's registers changed after CPUID number {rax})"));
    }
    Ok(())
}

fn stat(text: &str, name: &str) -> Result<u64, String> {
    text.lines().find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix('='))).and_then(|v| v.parse().ok()).ok_or(format!("no statistic {name}"))
}

/// Context switches of the calling thread so far.
fn ctxt_switches() -> u64 {
    let s = std::fs::read_to_string("/proc/thread-self/status").unwrap_or_default();
    s.lines().filter(|l| l.contains("ctxt_switches:")).filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()).sum()
}

fn host_pattern(seed: u8) -> [u8; 512] {
    let mut host = [0u8; 512];
    for (i, b) in host.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(11).wrapping_add(seed);
    }
    host
}

pub(crate) fn fpu_once_per_run(e: &Env) -> R {
    const EXITS: u32 = 1000;
    let avx = std::arch::is_x86_feature_detected!("avx");
    let (_vm, mut v, _mem) = setup(e, EXITS)?;
    let nsvm = !e.device.ends_with("kvm");
    let host = host_pattern(3);
    // The first run sets the guest up; then three measured runs.
    run_round(&mut v, &host, avx)?;
    for n in 0..3 {
        let before = if nsvm { stats_fd_of(v.as_raw_fd())? } else { String::new() };
        let sw0 = ctxt_switches();
        run_round(&mut v, &host, avx)?;
        let switches = ctxt_switches() - sw0;
        if !nsvm {
            continue;
        }
        let after = stats_fd_of(v.as_raw_fd())?;
        let d = |name: &str| -> Result<u64, String> { Ok(stat(&after, name)? - stat(&before, name)?) };
        let (exits, loads, saves) = (d("exits")?, d("fpu_loads")?, d("host_state_saves")?);
        println!("  run {n}: {exits} exits, fpu_loads +{loads}, host_state_saves +{saves}, {switches} context switches of the vCPU thread");
        if exits < u64::from(EXITS) {
            return Err(format!("run {n}: {exits} exits, expected at least {EXITS}"));
        }
        // The first entry loads both; each time the thread was scheduled
        // out in between, the next entry may load them again.
        if loads < 1 || loads > 1 + switches || saves < 1 || saves > 1 + switches {
            return Err(format!("run {n}: fpu_loads +{loads}, host_state_saves +{saves} over {exits} exits with {switches} context switches: expected 1 each (+1 per switch at most)"));
        }
    }
    Ok(())
}

/// Loads `pat` into YMM0-15 (XMM without AVX), spins `spins` PAUSEs, and
/// returns what the registers hold then.
fn hold_vector_regs(pat: &[u8; 512], avx: bool, spins: u64) -> [u8; 512] {
    let mut out = [0u8; 512];
    // SAFETY: loads and stores vector registers from/to our buffers; the
    // registers are declared clobbered.
    unsafe {
        if avx {
            std::arch::asm!(
                "vmovdqu ymm0, [{h}]", "vmovdqu ymm1, [{h}+32]", "vmovdqu ymm2, [{h}+64]", "vmovdqu ymm3, [{h}+96]",
                "vmovdqu ymm4, [{h}+128]", "vmovdqu ymm5, [{h}+160]", "vmovdqu ymm6, [{h}+192]", "vmovdqu ymm7, [{h}+224]",
                "vmovdqu ymm8, [{h}+256]", "vmovdqu ymm9, [{h}+288]", "vmovdqu ymm10, [{h}+320]", "vmovdqu ymm11, [{h}+352]",
                "vmovdqu ymm12, [{h}+384]", "vmovdqu ymm13, [{h}+416]", "vmovdqu ymm14, [{h}+448]", "vmovdqu ymm15, [{h}+480]",
                "2:", "pause", "dec {n}", "jnz 2b",
                "vmovdqu [{a}], ymm0", "vmovdqu [{a}+32], ymm1", "vmovdqu [{a}+64], ymm2", "vmovdqu [{a}+96], ymm3",
                "vmovdqu [{a}+128], ymm4", "vmovdqu [{a}+160], ymm5", "vmovdqu [{a}+192], ymm6", "vmovdqu [{a}+224], ymm7",
                "vmovdqu [{a}+256], ymm8", "vmovdqu [{a}+288], ymm9", "vmovdqu [{a}+320], ymm10", "vmovdqu [{a}+352], ymm11",
                "vmovdqu [{a}+384], ymm12", "vmovdqu [{a}+416], ymm13", "vmovdqu [{a}+448], ymm14", "vmovdqu [{a}+480], ymm15",
                h = in(reg) pat.as_ptr(), a = in(reg) out.as_mut_ptr(), n = inout(reg) spins.max(1) => _,
                out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _, out("xmm4") _, out("xmm5") _, out("xmm6") _, out("xmm7") _,
                out("xmm8") _, out("xmm9") _, out("xmm10") _, out("xmm11") _, out("xmm12") _, out("xmm13") _, out("xmm14") _, out("xmm15") _,
            );
        } else {
            std::arch::asm!(
                "movdqu xmm0, [{h}]", "movdqu xmm1, [{h}+32]", "movdqu xmm2, [{h}+64]", "movdqu xmm3, [{h}+96]",
                "movdqu xmm4, [{h}+128]", "movdqu xmm5, [{h}+160]", "movdqu xmm6, [{h}+192]", "movdqu xmm7, [{h}+224]",
                "movdqu xmm8, [{h}+256]", "movdqu xmm9, [{h}+288]", "movdqu xmm10, [{h}+320]", "movdqu xmm11, [{h}+352]",
                "movdqu xmm12, [{h}+384]", "movdqu xmm13, [{h}+416]", "movdqu xmm14, [{h}+448]", "movdqu xmm15, [{h}+480]",
                "2:", "pause", "dec {n}", "jnz 2b",
                "movdqu [{a}], xmm0", "movdqu [{a}+32], xmm1", "movdqu [{a}+64], xmm2", "movdqu [{a}+96], xmm3",
                "movdqu [{a}+128], xmm4", "movdqu [{a}+160], xmm5", "movdqu [{a}+192], xmm6", "movdqu [{a}+224], xmm7",
                "movdqu [{a}+256], xmm8", "movdqu [{a}+288], xmm9", "movdqu [{a}+320], xmm10", "movdqu [{a}+352], xmm11",
                "movdqu [{a}+384], xmm12", "movdqu [{a}+416], xmm13", "movdqu [{a}+448], xmm14", "movdqu [{a}+480], xmm15",
                h = in(reg) pat.as_ptr(), a = in(reg) out.as_mut_ptr(), n = inout(reg) spins.max(1) => _,
                out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _, out("xmm4") _, out("xmm5") _, out("xmm6") _, out("xmm7") _,
                out("xmm8") _, out("xmm9") _, out("xmm10") _, out("xmm11") _, out("xmm12") _, out("xmm13") _, out("xmm14") _, out("xmm15") _,
            );
        }
    }
    out
}

fn pin(tid: i32, cpu: usize) -> bool {
    // SAFETY: a zeroed cpu_set_t filled by CPU_SET; the kernel checks the tid.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

pub(crate) fn fpu_migration(e: &Env) -> R {
    const RUNS: u32 = 30;
    // SAFETY: no preconditions.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if cpus < 2 {
        return Err("needs two CPUs".into());
    }
    let avx = std::arch::is_x86_feature_detected!("avx");
    let (_vm, mut v, _mem) = setup(e, 200)?;
    let nsvm = !e.device.ends_with("kvm");
    let stop = Arc::new(AtomicBool::new(false));
    let tid = Arc::new(AtomicI32::new(0));
    // Host threads holding their own vector registers on each CPU.
    let mut holders = Vec::new();
    for cpu in 0..2usize {
        let stop = stop.clone();
        holders.push(std::thread::spawn(move || -> Result<u64, String> {
            // SAFETY: gettid has no preconditions.
            pin(unsafe { libc::gettid() }, cpu);
            let pat = host_pattern(0x80 + cpu as u8);
            let mut rounds = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let got = hold_vector_regs(&pat, avx, 20_000);
                let w = if avx { 32 } else { 16 };
                for r in 0..16 {
                    if got[32 * r..32 * r + w] != pat[32 * r..32 * r + w] {
                        return Err(format!("host thread on CPU {cpu}: vector register {r} changed after {rounds} rounds: {:02x?}", &got[32 * r..32 * r + w]));
                    }
                }
                rounds += 1;
            }
            Ok(rounds)
        }));
    }
    // The mover: the vCPU thread alternately on CPU 0 and CPU 1.
    let mover = {
        let (stop, tid) = (stop.clone(), tid.clone());
        std::thread::spawn(move || -> u64 {
            let mut moves = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let t = tid.load(Ordering::Relaxed);
                if t != 0 && pin(t, (moves % 2) as usize) {
                    moves += 1;
                }
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
            moves
        })
    };
    // SAFETY: gettid has no preconditions.
    tid.store(unsafe { libc::gettid() }, Ordering::Relaxed);
    let host = host_pattern(0x21);
    let before = if nsvm { stats_fd_of(v.as_raw_fd())? } else { String::new() };
    let mut result = Ok(());
    for n in 0..RUNS {
        if let Err(m) = run_round(&mut v, &host, avx) {
            result = Err(format!("KVM_RUN {n}: {m}"));
            break;
        }
    }
    tid.store(0, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let moves = mover.join().map_err(|_| "mover panicked".to_string())?;
    let mut rounds = Vec::new();
    for h in holders {
        rounds.push(h.join().map_err(|_| "holder panicked".to_string())??);
    }
    // SAFETY: gettid has no preconditions.
    pin(unsafe { libc::gettid() }, 0);
    result?;
    println!("  {RUNS} runs of 200 checked exits, {moves} affinity changes, host threads {rounds:?} rounds");
    if nsvm {
        let after = stats_fd_of(v.as_raw_fd())?;
        let loads = stat(&after, "fpu_loads")? - stat(&before, "fpu_loads")?;
        let saves = stat(&after, "host_state_saves")? - stat(&before, "host_state_saves")?;
        println!("  fpu_loads +{loads}, host_state_saves +{saves}");
        // More loads than runs: the thread was moved or preempted inside a
        // KVM_RUN and its guest registers were put back and loaded again.
        if loads <= u64::from(RUNS) {
            return Err(format!("fpu_loads +{loads} over {RUNS} runs: the vCPU thread was never moved inside a KVM_RUN ({moves} affinity changes)"));
        }
    }
    Ok(())
}
