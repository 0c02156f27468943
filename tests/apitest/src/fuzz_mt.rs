// SPDX-License-Identifier: GPL-2.0
//! `fuzz_mt`: the random-ioctl fuzz with several threads on one VM and its
//! vCPUs. Each round builds a VM with two vCPUs and runs, at the same time:
//!
//! - one thread per vCPU in a `KVM_RUN` loop (the guest stores into and loads
//!   from a data slot as fast as it can, with a port write every 512 stores);
//! - a slot thread deleting, re-creating, moving and re-backing (new memory
//!   where the old was unmapped) that data slot, and adding/removing a
//!   read-only slot next to it;
//! - an ioctl thread issuing well-formed vCPU/VM ioctls (register and event
//!   reads, NMI and interrupt injection, statistics fds, extra vCPUs created
//!   and closed at once, the irqchip, PIT, MSI, LAPIC and dirty-log ioctls)
//!   and random ones (as `--fuzz` does); a round's VM has no in-kernel
//!   interrupt controller, the split irqchip, or the full one with a PIT;
//! - the main thread, which after a random time closes the VM fd and the
//!   vCPU fds in a random order, each vCPU fd while its thread is inside
//!   `KVM_RUN` when it can catch it there.
//!
//! Once the VM fd is closed the slot thread ends and unmaps the memory
//! behind slots 1 and 2 while the vCPUs (which keep the VM alive) may still
//! run: kvm_amd then answers `KVM_RUN` with `EFAULT`, nsvm (pinned guest
//! pages) keeps running the guest on the pages it pinned.
//!
//! Every ioctl must return (a round that does not end within 60 s fails),
//! the guests must have run (port exits) and seen the slot go away (MMIO
//! exits), slots must have been deleted and fds closed while vCPUs were in
//! guest mode, no fd may be left open, and a new VM must run normally after
//! the last round. The suites check the kernel log (and, on the debug
//! kernel, KASAN, lockdep and kmemleak) around it.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use kvm_bindings::{kvm_regs, kvm_segment, kvm_sregs, kvm_userspace_memory_region, KVM_MEM_READONLY};
use kvm_ioctls::VcpuExit;
use nsvm_core::uapi::{ioc_nr, kvm, KVMIO, NSVMIO};

use super::{ioctl, region, small_vm, Env, Mem, R};

const NVCPU: usize = 2;
/// Guest-physical layout: slot 0 (code, IVT) at 0, the data slot 1 at
/// DATA_GPA (or DATA_GPA2 after a move), the read-only slot 2 right after it.
const CODE_SIZE: u64 = 0x10000;
const DATA_GPA: u64 = 0x10000;
const DATA_GPA2: u64 = 0x40000;
const DATA_SIZE: u64 = 0x4000;
const RO_GPA: u64 = 0x14000;
const RO_SIZE: u64 = 0x4000;

/// Real mode at 0:1000: DS = 1000h, then forever: store BX to [BX], load it
/// back, BX += 2 within 32 KiB (the data slot and the read-only slot), and
/// OUT to port 10h every 512 stores.
const GUEST: &[u8] = &[
    0xb8, 0x00, 0x10, // mov ax, 0x1000
    0x8e, 0xd8, // mov ds, ax
    0x31, 0xdb, // xor bx, bx
    0x89, 0x1f, // 1: mov [bx], bx
    0x8b, 0x0f, // mov cx, [bx]
    0x83, 0xc3, 0x02, // add bx, 2
    0x81, 0xe3, 0xfe, 0x7f, // and bx, 0x7ffe
    0xf7, 0xc3, 0xfe, 0x03, // test bx, 0x3fe
    0x75, 0xef, // jnz 1b
    0xe6, 0x10, // out 0x10, al
    0xeb, 0xeb, // jmp 1b
];
/// Every interrupt vector points at an IRET at 0:0F00 (NMIs and interrupts
/// the ioctl thread injects return to the loop).
const IRET_AT: usize = 0xf00;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What every thread adds to, over all rounds.
#[derive(Default)]
struct Counts {
    /// Exit reasons and errnos of KVM_RUN ("io", "mmio", "EINTR", "errno 9"...).
    run: Mutex<BTreeMap<String, u64>>,
    /// Slot operations and their results ("delete ok", "create errno 17"...).
    slots: Mutex<BTreeMap<String, u64>>,
    ioctls: AtomicU64,
    /// Slot 1 deletions that returned while a vCPU thread was inside KVM_RUN.
    deletes_in_run: AtomicU64,
    /// vCPU fds closed while their thread was inside KVM_RUN.
    closes_in_run: AtomicU64,
    /// VM fds closed while a vCPU thread was inside KVM_RUN.
    vm_closes_in_run: AtomicU64,
}
fn bump(m: &Mutex<BTreeMap<String, u64>>, k: String) {
    *m.lock().unwrap().entry(k).or_default() += 1;
}

/// One round's fds (-1 once closed) and where each vCPU thread is.
struct Round {
    sys: RawFd,
    vm: AtomicI32,
    vcpus: [AtomicI32; NVCPU],
    in_run: [AtomicBool; NVCPU],
    stop: AtomicBool,
}
impl Round {
    fn any_in_run(&self) -> bool {
        self.in_run.iter().any(|r| r.load(SeqCst))
    }
}

extern "C" fn on_kick(_: libc::c_int) {}

/// Real mode at 0:rip through raw ioctls (the fds are not owned by
/// kvm-ioctls objects: other threads close them).
fn real_mode_raw(fd: RawFd, rip: u64) -> R {
    let mut s = kvm_sregs::default();
    ioctl(fd, kvm::GET_SREGS, &mut s as *mut _ as u64).map_err(|x| format!("GET_SREGS: errno {x}"))?;
    let rs = |t: u8| kvm_segment { base: 0, limit: 0xffff, selector: 0, type_: t, present: 1, s: 1, ..Default::default() };
    s.cs = rs(0xb);
    s.ds = rs(3);
    s.es = rs(3);
    s.ss = rs(3);
    ioctl(fd, kvm::SET_SREGS, &s as *const _ as u64).map_err(|x| format!("SET_SREGS: errno {x}"))?;
    let r = kvm_regs { rip, rflags: 2, rsp: 0x8000, ..Default::default() };
    ioctl(fd, kvm::SET_REGS, &r as *const _ as u64).map_err(|x| format!("SET_REGS: errno {x}"))?;
    Ok(())
}

/// A vCPU thread: KVM_RUN until its fd is closed (any errno but EINTR ends
/// it) or the round stops.
fn runner(round: &Round, counts: &Counts, i: usize, run_page: usize) {
    while !round.stop.load(SeqCst) {
        let fd = round.vcpus[i].load(SeqCst);
        if fd < 0 {
            break;
        }
        round.in_run[i].store(true, SeqCst);
        let r = ioctl(fd, kvm::RUN, 0);
        round.in_run[i].store(false, SeqCst);
        let key = match r {
            Ok(_) => {
                // SAFETY: `run_page` is this vCPU's kvm_run mapping, unmapped
                // only after this thread has ended; a volatile read of the
                // 32-bit exit reason (KVM may write the page concurrently only
                // inside KVM_RUN, which has returned).
                let reason = unsafe { std::ptr::read_volatile(std::ptr::addr_of!((*(run_page as *const kvm_bindings::kvm_run)).exit_reason)) };
                match reason {
                    kvm_bindings::KVM_EXIT_IO => "io".to_string(),
                    kvm_bindings::KVM_EXIT_MMIO => "mmio".to_string(),
                    kvm_bindings::KVM_EXIT_HLT => "hlt".to_string(),
                    x => format!("exit {x}"),
                }
            }
            Err(libc::EINTR) => "EINTR".to_string(),
            Err(e) => {
                bump(&counts.run, format!("errno {e}"));
                break;
            }
        };
        bump(&counts.run, key);
    }
}

/// The slot thread: changes slots 1 and 2 until the VM fd is gone or the
/// round stops.
fn slot_changer(round: &Round, counts: &Counts, seed: u64) {
    let mut rng = Rng(seed);
    let mut backing = [Mem::new(DATA_SIZE as usize), Mem::new(DATA_SIZE as usize)];
    let ro = Mem::new(RO_SIZE as usize);
    let mut cur = 0usize;
    // Slot 1 as the thread believes it is: Some(gpa) when present.
    let mut slot1 = Some(DATA_GPA);
    let mut slot2 = false;
    while !round.stop.load(SeqCst) {
        let vm = round.vm.load(SeqCst);
        if vm < 0 {
            break;
        }
        let set = |r: kvm_userspace_memory_region| ioctl(vm, kvm::SET_USER_MEMORY_REGION, &r as *const _ as u64);
        let op = rng.below(6);
        let (name, r) = match op {
            0 => {
                let busy = round.any_in_run();
                let r = set(region(1, slot1.unwrap_or(DATA_GPA), 0, 0, 0));
                if r.is_ok() {
                    slot1 = None;
                    if busy && round.any_in_run() {
                        counts.deletes_in_run.fetch_add(1, SeqCst);
                    }
                }
                ("delete", r)
            }
            1 => {
                let r = set(region(1, DATA_GPA, DATA_SIZE, backing[cur].ptr as u64, 0));
                if r.is_ok() {
                    slot1 = Some(DATA_GPA);
                }
                ("create", r)
            }
            2 => {
                let to = if slot1 == Some(DATA_GPA) { DATA_GPA2 } else { DATA_GPA };
                let r = set(region(1, to, DATA_SIZE, backing[cur].ptr as u64, 0));
                if r.is_ok() {
                    slot1 = Some(to);
                }
                ("move", r)
            }
            3 => {
                // Delete, give the memory back to the process and back the
                // slot with other memory (the pages the guest used may be
                // reused by anyone at once).
                let r = set(region(1, slot1.unwrap_or(DATA_GPA), 0, 0, 0));
                if r.is_ok() || slot1.is_none() {
                    slot1 = None;
                    backing[cur] = Mem::new(DATA_SIZE as usize);
                    backing[cur].write(0, &[0x5a; 64]);
                    cur ^= 1;
                    let r = set(region(1, DATA_GPA, DATA_SIZE, backing[cur].ptr as u64, 0));
                    if r.is_ok() {
                        slot1 = Some(DATA_GPA);
                    }
                    ("rebacked", r)
                } else {
                    ("rebacked (delete)", r)
                }
            }
            4 => {
                let r = if slot2 {
                    set(region(2, RO_GPA, 0, 0, 0))
                } else {
                    set(region(2, RO_GPA, RO_SIZE, ro.ptr as u64, KVM_MEM_READONLY))
                };
                if r.is_ok() {
                    slot2 = !slot2;
                }
                (if slot2 { "read-only slot added" } else { "read-only slot removed" }, r)
            }
            _ => {
                std::thread::sleep(Duration::from_micros(rng.below(500)));
                continue;
            }
        };
        match r {
            Ok(_) => bump(&counts.slots, format!("{name} ok")),
            Err(e) => {
                bump(&counts.slots, format!("{name} errno {e}"));
                if e == libc::EBADF || e == libc::ENOTTY {
                    break;
                }
            }
        }
    }
}

/// The ioctl thread: well-formed and random ioctls on the round's fds.
fn ioctl_thread(round: &Round, counts: &Counts, seed: u64) {
    let mut rng = Rng(seed);
    let mut buf = Mem::new(0x10000);
    let mut next_id = NVCPU as u64;
    while !round.stop.load(SeqCst) {
        let vm = round.vm.load(SeqCst);
        let v = round.vcpus[rng.below(NVCPU as u64) as usize].load(SeqCst);
        if vm < 0 && v < 0 {
            break;
        }
        let p = buf.ptr as u64;
        let r = rng.next();
        let (fd, cmd, arg) = if r.is_multiple_of(2) {
            // Well-formed: (fd, command, argument).
            let msrs: [u64; 3] = [1, 0x10, 0];
            buf.write(0x4000, &msrs.iter().flat_map(|x| x.to_ne_bytes()).collect::<Vec<u8>>());
            buf.write(0x5000, &0x20u32.to_ne_bytes());
            // The in-kernel interrupt controllers, the PIT and the dirty
            // log: created, raised and read while the other threads run,
            // change slots and close fds.
            let pick = rng.next();
            buf.write(0x6100, &[(pick % 24) as u32, ((pick >> 8) & 1) as u32].iter().flat_map(|x| x.to_ne_bytes()).collect::<Vec<u8>>());
            buf.write(0x6200, &((pick >> 9) % 3).to_ne_bytes()[..4]);
            let msi: [u32; 4] = [0xfee0_0000, 0, 0x30 + ((pick >> 12) % 16) as u32, 0];
            buf.write(0x6300, &msi.iter().flat_map(|x| x.to_ne_bytes()).collect::<Vec<u8>>());
            let log: [u64; 2] = [(pick >> 16) % 4, p + 0x9000];
            buf.write(0x6400, &log.iter().flat_map(|x| x.to_ne_bytes()).collect::<Vec<u8>>());
            match (r >> 8) % 21 {
                0 => (v, kvm::GET_REGS, p),
                1 => (v, kvm::GET_SREGS, p),
                2 => (v, kvm::GET_FPU, p),
                3 => (v, kvm::GET_VCPU_EVENTS, p),
                4 => (v, kvm::NMI, 0),
                5 => (v, kvm::INTERRUPT, p + 0x5000),
                6 => (v, kvm::GET_MSRS, p + 0x4000),
                7 => (v, kvm::GET_STATS_FD, 0),
                8 => (vm, kvm::GET_STATS_FD, 0),
                9 => {
                    next_id = if next_id >= 16 { NVCPU as u64 } else { next_id + 1 };
                    (vm, kvm::CREATE_VCPU, next_id)
                }
                10 => (vm, kvm::CHECK_EXTENSION, rng.below(256)),
                11 => (round.sys, kvm::GET_VCPU_MMAP_SIZE, 0),
                12 => (vm, kvm::CREATE_IRQCHIP, 0),
                // struct kvm_pit_config, zeroed.
                13 => (vm, kvm::CREATE_PIT2, p + 0x6800),
                // struct kvm_irq_level {gsi, level}.
                14 => (vm, kvm::IRQ_LINE, p + 0x6100),
                // struct kvm_irqchip {chip_id, pad, ...}.
                15 => (vm, kvm::GET_IRQCHIP, p + 0x6200),
                16 => (vm, kvm::GET_PIT2, p + 0x7000),
                17 => (v, kvm::GET_LAPIC, p + 0x7000),
                // struct kvm_msi to APIC 0.
                18 => (vm, kvm::SIGNAL_MSI, p + 0x6300),
                // Takes a posted INIT/SIPI first (KVM's accept_events),
                // while other vCPUs post and run.
                19 => (v, kvm::GET_MP_STATE, p + 0x7000),
                // struct kvm_dirty_log {slot, pad, bitmap}.
                _ => (vm, kvm::GET_DIRTY_LOG, p + 0x6400),
            }
        } else {
            // Random, as `--fuzz` does (KVM_RUN left to the vCPU threads).
            let nr = (r >> 8) as u32 & 0xff;
            let ty = match (r >> 16) % 4 {
                0 | 1 => KVMIO,
                2 => NSVMIO,
                _ => (r >> 18) as u32 & 0xff,
            };
            let size = if r & (1 << 40) != 0 { ((r >> 24) as u32) & 0x3fff } else { [0u32, 4, 8, 32, 144, 312, 160, 40][(r >> 41) as usize % 8] };
            let dir = (r >> 50) as u32 & 3;
            let cmd = (dir << 30) | (size << 16) | (ty << 8) | nr;
            if cmd == kvm::RUN {
                continue;
            }
            let arg = match (r >> 52) % 4 {
                0 => 0,
                1 => rng.next() & 0xffff,
                2 => {
                    for b in buf.bytes()[0x8000..0x8100].iter_mut() {
                        *b = rng.next() as u8;
                    }
                    p + 0x8000 + rng.below(0x100)
                }
                _ => rng.next(),
            };
            let fd = [round.sys, vm, v][(r >> 58) as usize % 3];
            (fd, cmd, arg)
        };
        if fd < 0 {
            continue;
        }
        let res = ioctl(fd, cmd, arg);
        counts.ioctls.fetch_add(1, SeqCst);
        // Fds the kernel handed out (statistics, vCPUs, VMs): closed at once.
        if let Ok(nfd) = res {
            let nr = ioc_nr(cmd);
            let ty = (cmd >> 8) & 0xff;
            if ty == KVMIO && nfd > 2 && [kvm::GET_STATS_FD, kvm::CREATE_VCPU, kvm::CREATE_VM].iter().any(|&c| ioc_nr(c) == nr) {
                // SAFETY: the kernel just returned this fd to us and no other
                // thread knows its number.
                unsafe { libc::close(nfd as RawFd) };
            }
        }
    }
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

/// The run over all rounds (NSVM_FUZZ_MT_ROUNDS, default 30).
pub(crate) fn fuzz_mt(e: &Env) -> R {
    let rounds: u64 = std::env::var("NSVM_FUZZ_MT_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    // SAFETY: a handler that does nothing, without SA_RESTART: a signal to a
    // vCPU thread ends its KVM_RUN with EINTR.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_kick as *const () as usize;
        libc::sigaction(libc::SIGUSR2, &sa, std::ptr::null_mut());
    }
    let k = e.kvm();
    let mmap_size = k.get_vcpu_mmap_size().map_err(|x| x.to_string())?;
    let fds0 = open_fds();
    let counts = Arc::new(Counts::default());
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let t0 = Instant::now();
    for n in 0..rounds {
        one_round(&k, mmap_size, &counts, &mut rng).map_err(|m| format!("round {n}: {m}"))?;
    }
    let run = counts.run.lock().unwrap().clone();
    let slots = counts.slots.lock().unwrap().clone();
    let (dr, cr, vr) = (counts.deletes_in_run.load(SeqCst), counts.closes_in_run.load(SeqCst), counts.vm_closes_in_run.load(SeqCst));
    println!("  {rounds} rounds in {:.1} s, {} other ioctls", t0.elapsed().as_secs_f64(), counts.ioctls.load(SeqCst));
    println!("  KVM_RUN: {run:?}");
    println!("  slots: {slots:?}");
    println!("  slot deletions during KVM_RUN {dr}, vCPU fds closed in KVM_RUN {cr}, VM fds closed with a vCPU in KVM_RUN {vr}");
    let mut wrong = Vec::new();
    let get = |k: &str| run.get(k).copied().unwrap_or(0);
    if get("io") == 0 {
        wrong.push("no port exit: the guests did not run".to_string());
    }
    if get("mmio") == 0 {
        wrong.push("no MMIO exit: no guest store met a deleted slot".to_string());
    }
    if slots.get("delete ok").copied().unwrap_or(0) == 0 || slots.get("create ok").copied().unwrap_or(0) == 0 {
        wrong.push("slot 1 was never both deleted and re-created".to_string());
    }
    if dr == 0 {
        wrong.push("no slot deletion while a vCPU was in KVM_RUN".to_string());
    }
    if cr == 0 || vr == 0 {
        wrong.push("no vCPU fd or no VM fd closed while a vCPU was in KVM_RUN".to_string());
    }
    let fds1 = open_fds();
    if fds1 != fds0 {
        wrong.push(format!("{fds0} fds open before, {fds1} after"));
    }
    // The device still works: a new VM runs a guest to its end.
    let (_vm, mut vcpu, _m) = small_vm(&k, &[0xb0, 0x42, 0xe6, 0x10, 0xf4]); // mov al,0x42; out 0x10,al; hlt
    let first = matches!(vcpu.run(), Ok(VcpuExit::IoOut(0x10, d)) if d == [0x42]);
    let second = matches!(vcpu.run(), Ok(VcpuExit::Hlt));
    if !(first && second) {
        wrong.push(format!("a new VM after the rounds: out ok={first} hlt ok={second}"));
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join("; "))
    }
}

fn one_round(k: &kvm_ioctls::Kvm, mmap_size: usize, counts: &Arc<Counts>, rng: &mut Rng) -> R {
    let sys = k.as_raw_fd();
    let vm = ioctl(sys, kvm::CREATE_VM, 0).map_err(|x| format!("CREATE_VM: errno {x}"))? as RawFd;
    let mut code = Mem::new(CODE_SIZE as usize);
    {
        let b = code.bytes();
        for v in 0..256 {
            b[v * 4..v * 4 + 4].copy_from_slice(&[IRET_AT as u8, (IRET_AT >> 8) as u8, 0, 0]);
        }
        b[IRET_AT] = 0xcf;
        b[0x1000..0x1000 + GUEST.len()].copy_from_slice(GUEST);
    }
    let data = Mem::new(DATA_SIZE as usize);
    // A third of the rounds without in-kernel interrupt controllers, a third
    // with the split irqchip, a third with the full one and the PIT.
    let chips = rng.below(3);
    let setup = || -> Result<Vec<(RawFd, usize)>, String> {
        let set = |r: kvm_userspace_memory_region| ioctl(vm, kvm::SET_USER_MEMORY_REGION, &r as *const _ as u64);
        set(region(0, 0, CODE_SIZE, code.ptr as u64, 0)).map_err(|x| format!("slot 0: errno {x}"))?;
        set(region(1, DATA_GPA, DATA_SIZE, data.ptr as u64, 0)).map_err(|x| format!("slot 1: errno {x}"))?;
        if chips == 1 {
            let cap = kvm_bindings::kvm_enable_cap { cap: kvm_bindings::KVM_CAP_SPLIT_IRQCHIP, args: [24, 0, 0, 0], ..Default::default() };
            ioctl(vm, kvm::ENABLE_CAP, &cap as *const _ as u64).map_err(|x| format!("KVM_CAP_SPLIT_IRQCHIP: errno {x}"))?;
        } else if chips == 2 {
            ioctl(vm, kvm::CREATE_IRQCHIP, 0).map_err(|x| format!("CREATE_IRQCHIP: errno {x}"))?;
            let config = [0u8; 64];
            ioctl(vm, kvm::CREATE_PIT2, config.as_ptr() as u64).map_err(|x| format!("CREATE_PIT2: errno {x}"))?;
        }
        let mut v = Vec::new();
        for i in 0..NVCPU {
            let fd = ioctl(vm, kvm::CREATE_VCPU, i as u64).map_err(|x| format!("CREATE_VCPU {i}: errno {x}"))? as RawFd;
            // SAFETY: maps the new vCPU fd's pages; checked below.
            let p = unsafe { libc::mmap(std::ptr::null_mut(), mmap_size, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0) };
            if p == libc::MAP_FAILED {
                return Err(format!("mmap of vCPU {i}"));
            }
            v.push((fd, p as usize));
            real_mode_raw(fd, 0x1000)?;
        }
        Ok(v)
    };
    let vcpus = match setup() {
        Ok(v) => v,
        Err(m) => {
            // SAFETY: our VM fd, not shared with any thread yet.
            unsafe { libc::close(vm) };
            return Err(m);
        }
    };
    let round = Arc::new(Round {
        sys,
        vm: AtomicI32::new(vm),
        vcpus: [AtomicI32::new(vcpus[0].0), AtomicI32::new(vcpus[1].0)],
        in_run: Default::default(),
        stop: AtomicBool::new(false),
    });
    // Every thread reports on `done` when it ends; vCPU threads first say
    // who they are (for the kick).
    let (done_tx, done_rx) = mpsc::channel::<&'static str>();
    let (id_tx, id_rx) = mpsc::channel();
    let mut handles = Vec::new();
    for (i, &(_, page)) in vcpus.iter().enumerate() {
        let (round, counts, done, id) = (round.clone(), counts.clone(), done_tx.clone(), id_tx.clone());
        handles.push(std::thread::spawn(move || {
            // SAFETY: pthread_self has no preconditions.
            id.send(unsafe { libc::pthread_self() }).unwrap();
            runner(&round, &counts, i, page);
            done.send("a vCPU thread").unwrap();
        }));
    }
    let tids: Vec<libc::pthread_t> = (0..NVCPU).map(|_| id_rx.recv().unwrap()).collect();
    {
        let (round, counts, done, seed) = (round.clone(), counts.clone(), done_tx.clone(), rng.next());
        handles.push(std::thread::spawn(move || {
            slot_changer(&round, &counts, seed);
            done.send("the slot thread").unwrap();
        }));
    }
    {
        let (round, counts, done, seed) = (round.clone(), counts.clone(), done_tx.clone(), rng.next());
        handles.push(std::thread::spawn(move || {
            ioctl_thread(&round, &counts, seed);
            done.send("the ioctl thread").unwrap();
        }));
    }
    drop(done_tx);
    std::thread::sleep(Duration::from_millis(30 + rng.below(170)));
    // Close the three fds in a random order.
    let mut order: Vec<usize> = (0..=NVCPU).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    for which in order {
        if which < NVCPU {
            // Catch the vCPU's thread inside KVM_RUN if it gets there within 20 ms.
            let until = Instant::now() + Duration::from_millis(20);
            while !round.in_run[which].load(SeqCst) && Instant::now() < until {
                std::hint::spin_loop();
            }
            let fd = round.vcpus[which].swap(-1, SeqCst);
            if round.in_run[which].load(SeqCst) {
                counts.closes_in_run.fetch_add(1, SeqCst);
            }
            // SAFETY: our vCPU fd; its number is withdrawn from the other
            // threads (which may still be inside an ioctl on it: that is
            // the point).
            unsafe { libc::close(fd) };
        } else {
            let fd = round.vm.swap(-1, SeqCst);
            if round.any_in_run() {
                counts.vm_closes_in_run.fetch_add(1, SeqCst);
            }
            // SAFETY: as above, for the VM fd.
            unsafe { libc::close(fd) };
        }
        std::thread::sleep(Duration::from_millis(rng.below(20)));
    }
    round.stop.store(true, SeqCst);
    // Every thread must end: vCPU threads are kicked out of KVM_RUN by a
    // signal (their guest may loop without exits after a random SET_REGS).
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut ended = 0;
    while ended < handles.len() {
        for &t in &tids {
            // SAFETY: the thread is alive until joined below (it may have
            // returned already: pthread_kill on a finished, unjoined thread
            // is harmless).
            unsafe { libc::pthread_kill(t, libc::SIGUSR2) };
        }
        match done_rx.recv_timeout(Duration::from_millis(50)) {
            Ok(_) => ended += 1,
            Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
            Err(_) => return Err(format!("{} of {} threads still inside an ioctl 60 s after the fds were closed", handles.len() - ended, handles.len())),
        }
    }
    for h in handles {
        h.join().map_err(|_| "a thread panicked".to_string())?;
    }
    for &(_, page) in &vcpus {
        // SAFETY: the mapping made in setup; no thread uses it any more.
        unsafe { libc::munmap(page as *mut libc::c_void, mmap_size) };
    }
    drop(code);
    drop(data);
    Ok(())
}
