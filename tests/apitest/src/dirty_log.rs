// SPDX-License-Identifier: GPL-2.0
//! Dirty page logging (`KVM_MEM_LOG_DIRTY_PAGES`, `KVM_GET_DIRTY_LOG`,
//! `KVM_CLEAR_DIRTY_LOG`, `KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2`): the same
//! assertions on /dev/nsvm and /dev/kvm (the `dirtylog` suite compares).
//!
//! The guest (real mode, code at 0x1000 in slot 0) walks a list of 16-bit
//! entries at BX, one per page of slot 1 (GPA 0x10000, page `p` at segment
//! 0x1000 + 0x100 p): an entry `seg` increments the word at seg:0 (a guest
//! write), `seg | 1` reads it, `seg | 2` does INSB from port 0x80 into
//! seg:0 (a write L0 or KVM's emulator makes for the guest, completed on
//! the next KVM_RUN); 0 ends the list. At the end it halts when the word at
//! 0x7fe is not 0, otherwise it starts over (the concurrent case).

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kvm_bindings::{kvm_enable_cap, kvm_regs, KVM_MEM_LOG_DIRTY_PAGES};
use kvm_ioctls::{VcpuExit, VcpuFd, VmFd};
use nsvm_core::uapi::kvm;

use crate::{expect_errno, ioctl, real_mode, region, Env, Mem, R};

/// The guest's code (see the module comment; `as --32`, .code16).
const CODE: [u8; 49] = [
    0x89, 0xde, // start: mov si, bx
    0xad, // next: lodsw
    0x85, 0xc0, 0x74, 0x20, // test ax, ax; jz end
    0x8e, 0xc0, // mov es, ax
    0xa8, 0x03, 0x75, 0x07, // test al, 3; jnz other
    0x26, 0xff, 0x06, 0x00, 0x00, 0xeb, 0xee, // inc word [es:0]; jmp next
    0xa8, 0x01, 0x74, 0x07, // other: test al, 1; jz ins
    0x26, 0x8b, 0x0e, 0x00, 0x00, 0xeb, 0xe3, // mov cx, [es:0]; jmp next
    0x31, 0xff, 0xba, 0x80, 0x00, 0x6c, 0xeb, 0xdb, // ins: xor di, di; mov dx, 0x80; insb; jmp next
    0x83, 0x3e, 0xfe, 0x07, 0x00, 0x74, 0xd2, // end: cmp word [0x7fe], 0; je start
    0xf4, 0xeb, 0xcf, // hlt; jmp start
];

const SLOT1_GPA: u64 = 0x10000;
/// `KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2`.
const CAP_MANUAL2: u32 = 168;
/// The obsolete `KVM_CAP_MANUAL_DIRTY_LOG_PROTECT`.
const CAP_MANUAL1: u32 = 166;

#[derive(Clone, Copy)]
enum Op {
    W(u16),
    Rd(u16),
    Ins(u16),
}

fn entry(op: Op) -> u16 {
    let seg = |p: u16| 0x1000 + 0x100 * p;
    match op {
        Op::W(p) => seg(p),
        Op::Rd(p) => seg(p) | 1,
        Op::Ins(p) => seg(p) | 2,
    }
}

struct Dl {
    vm: VmFd,
    vcpus: Vec<VcpuFd>,
    code: Mem,
    data: Mem,
    npages: u64,
}

fn setup(e: &Env, npages: u64, flags: u32, manual: Option<u64>, nvcpus: u64) -> Result<Dl, String> {
    let k = e.kvm();
    let vm = k.create_vm().map_err(|x| format!("create vm: {x}"))?;
    if let Some(m) = manual {
        enable_manual(&vm, 0, m).map_err(|x| format!("enable manual protect {m}: errno {x}"))?;
    }
    let mut code = Mem::new(0x10000);
    code.bytes()[0x1000..0x1000 + CODE.len()].copy_from_slice(&CODE);
    let data = Mem::new((npages * 4096) as usize);
    // SAFETY: both mappings live in `Dl` with the VM (dropped after it: fields drop in order).
    unsafe { vm.set_user_memory_region(region(0, 0, 0x10000, code.ptr as u64, 0)) }.map_err(|x| format!("slot 0: {x}"))?;
    // SAFETY: as above.
    unsafe { vm.set_user_memory_region(region(1, SLOT1_GPA, npages * 4096, data.ptr as u64, flags)) }.map_err(|x| format!("slot 1: {x}"))?;
    let mut vcpus = Vec::new();
    for i in 0..nvcpus {
        let v = vm.create_vcpu(i).map_err(|x| format!("create vcpu: {x}"))?;
        real_mode(&v, 0x1000);
        vcpus.push(v);
    }
    Ok(Dl { vm, vcpus, code, data, npages })
}

fn enable_manual(vm: &VmFd, flags: u32, arg0: u64) -> Result<i64, i32> {
    let mut c = kvm_enable_cap { cap: CAP_MANUAL2, flags, ..Default::default() };
    c.args[0] = arg0;
    ioctl(vm.as_raw_fd(), kvm::ENABLE_CAP, &c as *const _ as u64)
}

impl Dl {
    /// Writes vCPU `n`'s list (at 0x800 + 0x100 n) and the stop word.
    fn list(&self, n: usize, ops: &[Op], stop: bool) {
        let mut b: Vec<u8> = ops.iter().flat_map(|o| entry(*o).to_le_bytes()).collect();
        b.extend_from_slice(&[0, 0]);
        assert!(b.len() <= 0x100);
        self.code.write(0x800 + 0x100 * n, &b);
        self.code.write(0x7fe, &u16::from(stop).to_le_bytes());
    }

    /// Runs `ops` once on vCPU 0 up to its HLT (INSB gets 0x5a).
    fn pass(&mut self, ops: &[Op]) -> R {
        self.list(0, ops, true);
        let v = &mut self.vcpus[0];
        v.set_regs(&kvm_regs { rip: 0x1000, rflags: 2, rsp: 0x8000, rbx: 0x800, ..Default::default() }).map_err(|x| format!("set regs: {x}"))?;
        for _ in 0..64 {
            match v.run() {
                Ok(VcpuExit::IoIn(0x80, d)) => d.fill(0x5a),
                Ok(VcpuExit::Hlt) => return Ok(()),
                Ok(x) => return Err(format!("unexpected exit {x:?}")),
                Err(x) => return Err(format!("KVM_RUN: {x}")),
            }
        }
        Err("no HLT after 64 exits".into())
    }

    fn get(&self, slot: u32) -> Result<i64, i32> {
        get_log(&self.vm, slot, self.npages).map(|_| 0)
    }

    /// The dirty pages of slot 1 (`KVM_GET_DIRTY_LOG`), checked for
    /// nothing beyond the slot's pages and the bitmap's size.
    fn dirty(&self) -> Result<Vec<u64>, String> {
        let b = get_log(&self.vm, 1, self.npages).map_err(|x| format!("KVM_GET_DIRTY_LOG: errno {x}"))?;
        let p = pages(&b);
        if p.iter().any(|&x| x >= self.npages) {
            return Err(format!("bits beyond the slot's {} pages: {p:?}", self.npages));
        }
        Ok(p)
    }

    fn clear(&self, slot: u32, first_page: u64, num_pages: u32, mask: &[u64]) -> Result<i64, i32> {
        clear_log(&self.vm, slot, first_page, num_pages, mask.as_ptr() as u64)
    }

    fn word(&self, page: u64, off: usize) -> u16 {
        let b = self.data.read(page as usize * 4096 + off, 2);
        u16::from_le_bytes([b[0], b[1]])
    }
}

/// `KVM_GET_DIRTY_LOG` into a buffer one word longer than the slot's
/// bitmap, whose last word must stay untouched (KVM copies exactly the
/// pages rounded up to 64 bits).
fn get_log(vm: &VmFd, slot: u32, npages: u64) -> Result<Vec<u64>, i32> {
    let words = npages.div_ceil(64) as usize;
    let canary = 0x5a5a_1234_a5a5_4321u64;
    let mut buf = vec![canary; words + 1];
    let mut l = [0u64; 2];
    l[0] = u64::from(slot);
    l[1] = buf.as_mut_ptr() as u64;
    ioctl(vm.as_raw_fd(), kvm::GET_DIRTY_LOG, l.as_ptr() as u64)?;
    assert_eq!(buf[words], canary, "KVM_GET_DIRTY_LOG wrote past the slot's bitmap");
    buf.truncate(words);
    Ok(buf)
}

fn clear_log(vm: &VmFd, slot: u32, first_page: u64, num_pages: u32, mask: u64) -> Result<i64, i32> {
    let c: [u64; 3] = [u64::from(slot) | (u64::from(num_pages) << 32), first_page, mask];
    ioctl(vm.as_raw_fd(), kvm::CLEAR_DIRTY_LOG, c.as_ptr() as u64)
}

fn pages(b: &[u64]) -> Vec<u64> {
    (0..b.len() as u64 * 64).filter(|p| b[(p / 64) as usize] & (1 << (p % 64)) != 0).collect()
}

fn expect_pages(what: &str, got: Vec<u64>, want: &[u64]) -> R {
    if got != want {
        return Err(format!("{what}: dirty pages {got:?}, expected {want:?}"));
    }
    Ok(())
}

/// Guest writes (some pages only read), an INSB L0 completes into RAM: the
/// first `KVM_GET_DIRTY_LOG` returns exactly the written pages, the next
/// none; writes to pages reported before appear again (they were
/// write-protected again), and what the guest wrote is in memory.
pub(crate) fn dirty_log_basic(e: &Env) -> R {
    let mut d = setup(e, 33, KVM_MEM_LOG_DIRTY_PAGES, None, 1)?;
    let cap = ioctl(d.vm.as_raw_fd(), kvm::CHECK_EXTENSION, u64::from(CAP_MANUAL2));
    if cap != Ok(3) {
        return Err(format!("KVM_CHECK_EXTENSION(MANUAL_DIRTY_LOG_PROTECT2) = {cap:?}, expected 3"));
    }
    expect_pages("before the guest ran", d.dirty()?, &[])?;
    d.pass(&[Op::W(0), Op::W(3), Op::Rd(1), Op::Rd(2), Op::W(5), Op::Rd(5), Op::W(32), Op::Ins(7), Op::Rd(8)])?;
    expect_pages("first read", d.dirty()?, &[0, 3, 5, 7, 32])?;
    expect_pages("second read", d.dirty()?, &[])?;
    d.pass(&[Op::W(3), Op::Rd(0), Op::W(10), Op::Rd(32)])?;
    expect_pages("after writes to 3 and 10", d.dirty()?, &[3, 10])?;
    d.pass(&[Op::W(3), Op::W(3), Op::Rd(3)])?;
    expect_pages("after more writes to 3", d.dirty()?, &[3])?;
    expect_pages("again", d.dirty()?, &[])?;
    let (w3, w0, ins) = (d.word(3, 0), d.word(0, 0), d.data.read(7 * 4096 + 0x20, 1)[0]);
    if (w3, w0, ins) != (4, 1, 0x5a) {
        return Err(format!("guest memory: page 3 word {w3}, page 0 word {w0}, INSB byte {ins:#x}; expected 4, 1, 0x5a"));
    }
    Ok(())
}

/// `KVM_MEM_LOG_DIRTY_PAGES` set and cleared on an existing slot: no log
/// without it (`ENOENT`), a fresh empty log when it is set (earlier writes
/// are not reported), deleted slots have none.
pub(crate) fn dirty_log_flags(e: &Env) -> R {
    let mut d = setup(e, 16, 0, None, 1)?;
    let data = d.data.ptr as u64;
    expect_errno("GET_DIRTY_LOG on a slot that does not log", d.get(1), libc::ENOENT)?;
    d.pass(&[Op::W(0), Op::W(1)])?;
    let set = |d: &Dl, flags: u32| {
        // SAFETY: the same mapping as at creation, alive with `d`.
        unsafe { d.vm.set_user_memory_region(region(1, SLOT1_GPA, 16 * 4096, data, flags)) }.map_err(|x| format!("set flags {flags}: {x}"))
    };
    set(&d, KVM_MEM_LOG_DIRTY_PAGES)?;
    expect_pages("just enabled", d.dirty()?, &[])?;
    d.pass(&[Op::W(1), Op::Rd(2), Op::Rd(0)])?;
    expect_pages("after enabling", d.dirty()?, &[1])?;
    d.pass(&[Op::W(6)])?;
    set(&d, 0)?;
    expect_errno("GET_DIRTY_LOG after disabling", d.get(1), libc::ENOENT)?;
    d.pass(&[Op::W(4), Op::W(6)])?;
    set(&d, KVM_MEM_LOG_DIRTY_PAGES)?;
    expect_pages("re-enabled: a fresh log", d.dirty()?, &[])?;
    d.pass(&[Op::W(5), Op::W(0)])?;
    expect_pages("after re-enabling", d.dirty()?, &[0, 5])?;
    // SAFETY: deleting the slot.
    unsafe { d.vm.set_user_memory_region(region(1, SLOT1_GPA, 0, data, KVM_MEM_LOG_DIRTY_PAGES)) }.map_err(|x| format!("delete: {x}"))?;
    expect_errno("GET_DIRTY_LOG on a deleted slot", d.get(1), libc::ENOENT)?;
    if (d.word(0, 0), d.word(1, 0), d.word(6, 0)) != (2, 2, 2) {
        return Err(format!("guest memory: {} {} {}, expected 2 2 2", d.word(0, 0), d.word(1, 0), d.word(6, 0)));
    }
    Ok(())
}

/// The errnos of the dirty-log ioctls and of the capability.
pub(crate) fn dirty_log_errnos(e: &Env) -> R {
    let d = setup(e, 16, KVM_MEM_LOG_DIRTY_PAGES, None, 0)?;
    let fd = d.vm.as_raw_fd();
    let cap = |c: u32| ioctl(fd, kvm::CHECK_EXTENSION, u64::from(c));
    if (cap(CAP_MANUAL1), cap(CAP_MANUAL2)) != (Ok(0), Ok(3)) {
        return Err(format!("KVM_CHECK_EXTENSION MANUAL_DIRTY_LOG_PROTECT {:?}, _PROTECT2 {:?}; expected 0, 3", cap(CAP_MANUAL1), cap(CAP_MANUAL2)));
    }
    expect_errno("GET slot 0 (not logging)", d.get(0), libc::ENOENT)?;
    expect_errno("GET slot 5 (none)", d.get(5), libc::ENOENT)?;
    expect_errno("GET slot 300 (none, below KVM_USER_MEM_SLOTS)", d.get(300), libc::ENOENT)?;
    expect_errno("GET slot 32764", d.get(32764), libc::EINVAL)?;
    expect_errno("GET slot 0xffff", d.get(0xffff), libc::EINVAL)?;
    expect_errno("GET address space 2", d.get((2 << 16) | 1), libc::EINVAL)?;
    let l = [1u64, 8];
    expect_errno("GET into an unmapped bitmap", ioctl(fd, kvm::GET_DIRTY_LOG, l.as_ptr() as u64), libc::EFAULT)?;
    expect_errno("GET with an unmapped struct", ioctl(fd, kvm::GET_DIRTY_LOG, 8), libc::EFAULT)?;
    let m = [u64::MAX; 2];
    expect_errno("CLEAR unaligned first_page on no slot", d.clear(300, 1, 1, &m), libc::EINVAL)?;
    expect_errno("CLEAR no slot", d.clear(300, 0, 64, &m), libc::ENOENT)?;
    expect_errno("CLEAR address space 2", d.clear((2 << 16) | 1, 0, 16, &m), libc::EINVAL)?;
    expect_errno("CLEAR slot 32764", d.clear(32764, 0, 16, &m), libc::EINVAL)?;
    expect_errno("CLEAR slot 0 (not logging)", d.clear(0, 0, 16, &m), libc::ENOENT)?;
    expect_errno("CLEAR first_page 64 of 16", d.clear(1, 64, 0, &m), libc::EINVAL)?;
    expect_errno("CLEAR 17 pages of 16", d.clear(1, 0, 17, &m), libc::EINVAL)?;
    expect_errno("CLEAR 10 pages (unaligned, not to the end)", d.clear(1, 0, 10, &m), libc::EINVAL)?;
    expect_errno("CLEAR from an unmapped mask", clear_log(&d.vm, 1, 0, 16, 8), libc::EFAULT)?;
    expect_errno("CLEAR with an unmapped struct", ioctl(fd, kvm::CLEAR_DIRTY_LOG, 8), libc::EFAULT)?;
    let ok = |what: &str, r: Result<i64, i32>| if r == Ok(0) { Ok(()) } else { Err(format!("{what}: {r:?}, expected success")) };
    ok("CLEAR 0 pages (the mask is not read)", clear_log(&d.vm, 1, 0, 0, 8))?;
    ok("CLEAR the whole slot", d.clear(1, 0, 16, &m))?;
    ok("CLEAR the tail from its start", d.clear(1, 0, 16, &m))?;
    expect_errno("ENABLE_CAP INITIALLY_SET alone", enable_manual(&d.vm, 0, 2), libc::EINVAL)?;
    expect_errno("ENABLE_CAP unknown bit", enable_manual(&d.vm, 0, 4), libc::EINVAL)?;
    expect_errno("ENABLE_CAP unknown bit with ENABLE", enable_manual(&d.vm, 0, 5), libc::EINVAL)?;
    expect_errno("ENABLE_CAP with flags", enable_manual(&d.vm, 1, 1), libc::EINVAL)?;
    ok("ENABLE_CAP 1", enable_manual(&d.vm, 0, 1))?;
    ok("ENABLE_CAP 3", enable_manual(&d.vm, 0, 3))?;
    ok("ENABLE_CAP 0", enable_manual(&d.vm, 0, 0))?;
    Ok(())
}

/// Manual protection with `KVM_DIRTY_LOG_INITIALLY_SET`: every page starts
/// dirty, `KVM_GET_DIRTY_LOG` does not clear, `KVM_CLEAR_DIRTY_LOG` clears
/// (and write-protects) what its mask names in 64-page-aligned ranges;
/// then manual protection without INITIALLY_SET.
pub(crate) fn dirty_log_manual(e: &Env) -> R {
    let mut d = setup(e, 100, KVM_MEM_LOG_DIRTY_PAGES, Some(3), 1)?;
    let all: Vec<u64> = (0..100).collect();
    expect_pages("initially set", d.dirty()?, &all)?;
    expect_pages("GET does not clear", d.dirty()?, &all)?;
    d.clear(1, 0, 64, &[!(1u64 << 3)]).map_err(|x| format!("CLEAR 0..64: errno {x}"))?;
    let want: Vec<u64> = std::iter::once(3).chain(64..100).collect();
    expect_pages("after clearing 0..64 but 3", d.dirty()?, &want)?;
    d.clear(1, 64, 36, &[u64::MAX]).map_err(|x| format!("CLEAR 64..100: errno {x}"))?;
    expect_pages("after clearing the tail", d.dirty()?, &[3])?;
    d.pass(&[Op::W(10), Op::W(70), Op::Rd(11), Op::Rd(71), Op::W(3)])?;
    expect_pages("after writes", d.dirty()?, &[3, 10, 70])?;
    d.clear(1, 0, 100, &[(1 << 3) | (1 << 10), 1 << 6]).map_err(|x| format!("CLEAR all: errno {x}"))?;
    expect_pages("after clearing what was written", d.dirty()?, &[])?;
    d.pass(&[Op::W(10), Op::Rd(3), Op::Ins(99)])?;
    expect_pages("written again after CLEAR", d.dirty()?, &[10, 99])?;
    drop(d);
    let mut d = setup(e, 16, KVM_MEM_LOG_DIRTY_PAGES, Some(1), 1)?;
    expect_pages("manual, not initially set", d.dirty()?, &[])?;
    d.pass(&[Op::W(2)])?;
    expect_pages("manual: written", d.dirty()?, &[2])?;
    expect_pages("manual: GET does not clear", d.dirty()?, &[2])?;
    d.clear(1, 0, 16, &[0xffff]).map_err(|x| format!("CLEAR: errno {x}"))?;
    expect_pages("manual: cleared", d.dirty()?, &[])?;
    d.pass(&[Op::W(2), Op::W(15)])?;
    expect_pages("manual: written again", d.dirty()?, &[2, 15])?;
    Ok(())
}

/// Two vCPUs increment words in pages of a logging slot without exits
/// (pages 0-3 shared, 4-33 vCPU 0's, 34-63 vCPU 1's) while this thread
/// reads the log 200 times: a page whose word changed after one
/// `KVM_GET_DIRTY_LOG` returned and before the next began must be in the
/// next one's bitmap (no write is lost to a translation left writable).
pub(crate) fn dirty_log_vcpus(e: &Env) -> R {
    let mut d = setup(e, 64, KVM_MEM_LOG_DIRTY_PAGES, None, 2)?;
    let vcpus = std::mem::take(&mut d.vcpus);
    let l0: Vec<Op> = (0..34).map(Op::W).collect();
    let l1: Vec<Op> = (0..4).chain(34..64).map(Op::W).collect();
    d.list(0, &l0, false);
    d.list(1, &l1, false);
    let stop = AtomicBool::new(false);
    let snapshot = |d: &Dl| -> Vec<u16> { (0..64).map(|p| d.word(p, 0)).collect() };
    let d = &d;
    std::thread::scope(|s| {
        let mut hs = Vec::new();
        for (n, mut v) in vcpus.into_iter().enumerate() {
            let stop = &stop;
            hs.push(s.spawn(move || -> R {
                v.set_regs(&kvm_regs { rip: 0x1000, rflags: 2, rsp: 0x8000, rbx: 0x800 + 0x100 * n as u64, ..Default::default() }).map_err(|x| format!("set regs: {x}"))?;
                loop {
                    match v.run() {
                        Ok(VcpuExit::Hlt) if stop.load(Ordering::Relaxed) => return Ok(()),
                        Ok(VcpuExit::Hlt) => {}
                        Ok(x) => return Err(format!("vCPU {n}: unexpected exit {x:?}")),
                        Err(x) => return Err(format!("vCPU {n}: KVM_RUN: {x}")),
                    }
                }
            }));
        }
        let check = || -> R {
            let t = Instant::now();
            d.dirty()?;
            let mut after = snapshot(d);
            let (mut busy, mut reported) = (0, 0u64);
            for round in 0..200 {
                std::thread::sleep(Duration::from_millis(1));
                let before = snapshot(d);
                let got = d.dirty()?;
                for p in 0..64u64 {
                    if before[p as usize] != after[p as usize] && !got.contains(&p) {
                        return Err(format!("round {round}: page {p} changed ({} -> {}) but is not in the log {got:?}", after[p as usize], before[p as usize]));
                    }
                }
                if !got.is_empty() {
                    busy += 1;
                }
                reported += got.len() as u64;
                after = snapshot(d);
                if t.elapsed() > Duration::from_secs(40) {
                    break;
                }
            }
            if busy < 10 {
                return Err(format!("only {busy} reads saw dirty pages ({reported} pages): the vCPUs did not run"));
            }
            Ok(())
        };
        let r = check();
        d.code.write(0x7fe, &1u16.to_le_bytes());
        stop.store(true, Ordering::Relaxed);
        let mut res = r;
        for h in hs {
            let x = h.join().unwrap_or(Err("vCPU thread panicked".into()));
            if res.is_ok() {
                res = x;
            }
        }
        res
    })
}

/// Loads the ELF64 payload `bytes` (PT_LOAD segments) into `mem`; its entry.
fn load_elf(mem: &mut [u8], bytes: &[u8]) -> Result<u64, String> {
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 {
        return Err("not an ELF64 image".into());
    }
    let rd64 = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap());
    let rd16 = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]) as usize;
    let (phoff, phentsize, phnum) = (rd64(32) as usize, rd16(54), rd16(56));
    for i in 0..phnum {
        let p = phoff + i * phentsize;
        if p + 56 > bytes.len() || u32::from_le_bytes(bytes[p..p + 4].try_into().unwrap()) != 1 {
            continue;
        }
        let (off, paddr, filesz) = (rd64(p + 8) as usize, rd64(p + 24) as usize, rd64(p + 32) as usize);
        if off + filesz > bytes.len() || paddr + filesz > mem.len() {
            return Err(format!("segment at {paddr:#x} does not fit"));
        }
        mem[paddr..paddr + filesz].copy_from_slice(&bytes[off..off + filesz]);
    }
    Ok(rd64(24))
}

/// An L1 hypervisor (payload l1_dirty.bin, long mode, 8 MiB in one logging
/// slot) runs an L2 on nested paging (shadow NPT02 on nsvm) that writes and
/// reads pages of L1's memory listed by this thread. After each L2 run the
/// log must hold exactly the pages L2 wrote within 2-4 MiB (4 KiB NPT12
/// pages), and at least those at 5 MiB (a 2 MiB NPT12 page, where nsvm
/// prefetches neighbours into NPT02 and a page only read once the entry is
/// dirty may be logged too, as on kvm_amd); L2's second round of writes to the
/// same pages, with no flush asked by L1, must be logged again (reading the
/// log must take write access from what NPT02 derived from NPT01).
pub(crate) fn dirty_log_nested(e: &Env) -> R {
    let Some(dir) = &e.guests else { return Err("needs --guests DIR (l1_dirty.bin)".into()) };
    let img = std::fs::read(format!("{dir}/l1_dirty.bin")).map_err(|x| format!("l1_dirty.bin: {x}"))?;
    const MEM: u64 = 8 << 20;
    const OPS: usize = 0x60_0000;
    const LB: usize = (MEM - 0x10000) as usize;
    let k = e.kvm();
    let vm = k.create_vm().map_err(|x| format!("create vm: {x}"))?;
    let mut mem = Mem::new(MEM as usize);
    let entry = load_elf(mem.bytes(), &img)?;
    // GDT (null, code64 0x08, data 0x10) and identity page tables for the
    // first 4 GiB (2 MiB pages) below the top 64 KiB, as `nsvm run` builds.
    {
        let m = mem.bytes();
        let mut put = |at: usize, v: u64| m[at..at + 8].copy_from_slice(&v.to_le_bytes());
        put(LB + 8, 0x00af_9b00_0000_ffff);
        put(LB + 16, 0x00cf_9300_0000_ffff);
        put(LB + 0x1000, (LB as u64 + 0x2000) | 3);
        for i in 0..4u64 {
            let pd = LB as u64 + 0x3000 + 0x1000 * i;
            put(LB + 0x2000 + 8 * i as usize, pd | 3);
            for j in 0..512u64 {
                put(pd as usize + 8 * j as usize, (i << 30) | (j << 21) | 0x83);
            }
        }
    }
    // The VMM maps the watched pages already (so that nsvm's NPT02
    // prefetch finds the neighbours of a faulting page and maps them).
    for a in (0x30_0000..0x31_0000).chain(0x50_0000..0x51_0000).step_by(4096) {
        mem.write(a, &[0; 8]);
    }
    // SAFETY: `mem` outlives the VM (dropped after it at the end of this function).
    unsafe { vm.set_user_memory_region(region(0, 0, MEM, mem.ptr as u64, KVM_MEM_LOG_DIRTY_PAGES)) }.map_err(|x| format!("slot: {x}"))?;
    let mut v = vm.create_vcpu(0).map_err(|x| format!("create vcpu: {x}"))?;
    let mut cpuid = k.get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES).map_err(|x| x.to_string())?;
    for c in cpuid.as_mut_slice() {
        if c.function == 1 {
            c.ebx &= 0x00ff_ffff;
            c.ecx &= !((1 << 21) | (1 << 24));
        }
    }
    if !cpuid.as_slice().iter().any(|c| c.function == 0x8000_0001 && c.ecx & (1 << 2) != 0) {
        return Err("the supported CPUID has no SVM (kvm_amd nested=0?)".into());
    }
    v.set_cpuid2(&cpuid).map_err(|x| format!("SET_CPUID2: {x}"))?;
    let mut s = v.get_sregs().map_err(|x| x.to_string())?;
    let seg = |selector: u16, type_: u8, l: u8, db: u8| kvm_bindings::kvm_segment { base: 0, limit: 0xffff_ffff, selector, type_, present: 1, dpl: 0, db, s: 1, l, g: 1, avl: 0, unusable: 0, padding: 0 };
    s.gdt.base = LB as u64;
    s.gdt.limit = 23;
    s.cs = seg(8, 0xb, 1, 0);
    s.ds = seg(0x10, 3, 0, 1);
    s.es = s.ds;
    s.fs = s.ds;
    s.gs = s.ds;
    s.ss = s.ds;
    s.cr3 = LB as u64 + 0x1000;
    s.cr4 = 0x20;
    s.cr0 = 0x8000_0011;
    s.efer = 0x500;
    v.set_sregs(&s).map_err(|x| format!("SET_SREGS: {x}"))?;
    v.set_regs(&kvm_regs { rip: entry, rflags: 2, rsp: LB as u64 - 0x10, ..Default::default() }).map_err(|x| format!("SET_REGS: {x}"))?;
    let watched = |p: u64| (0x30_0000..0x31_0000).contains(&(p * 4096)) || (0x50_0000..0x51_0000).contains(&(p * 4096));
    let mut serial = String::new();
    let step = |v: &mut VcpuFd, ops: &[u64], serial: &mut String| -> Result<Vec<u64>, String> {
        let mut b: Vec<u8> = ops.iter().flat_map(|o| o.to_le_bytes()).collect();
        b.extend_from_slice(&[0; 8]);
        mem.write(OPS, &b);
        for _ in 0..100_000 {
            match v.run() {
                Ok(VcpuExit::IoOut(0x505, _)) => {
                    let bm = get_log(&vm, 0, MEM / 4096).map_err(|x| format!("GET_DIRTY_LOG: errno {x}"))?;
                    return Ok(pages(&bm).into_iter().filter(|p| watched(*p)).map(|p| p * 4096).collect());
                }
                Ok(VcpuExit::IoOut(0x3f8, d)) => serial.push(d[0] as char),
                Ok(VcpuExit::IoOut(0x501, d)) => return Err(format!("L1 ended ({:#x}): {serial}", d[0])),
                Ok(VcpuExit::IoOut(..)) => {}
                Ok(VcpuExit::IoIn(p, d)) => d.fill(if p == 0x3fd { 0x60 } else { 0 }),
                Ok(x) => return Err(format!("unexpected exit {x:?}; serial: {serial}")),
                Err(x) => return Err(format!("KVM_RUN: {x}; serial: {serial}")),
            }
        }
        Err(format!("L1 did not reach its report; serial: {serial}"))
    };
    let hex = |v: &[u64]| v.iter().map(|p| format!("{p:#x}")).collect::<Vec<_>>().join(" ");
    // Exactly the written pages in the 4 KiB range. In the 2 MiB NPT12 page
    // both also log pages L2 only read once that NPT12 entry is dirty: a
    // read fault maps the page writable, and logs it, the first time it is
    // mapped since logging began (KVM's make_spte; nsvm's `Mmu::seen`),
    // so which read pages are logged depends on the order of the faults
    // and on what each MMU prefetched (allowed: the log may report more).
    let check = |what: &str, got: Vec<u64>, want: &[u64]| -> R {
        let small = |p: &u64| *p < 0x40_0000;
        let ok = got.iter().filter(|p| small(p)).eq(want.iter().filter(|p| small(p))) && want.iter().all(|p| got.contains(p));
        if !ok {
            return Err(format!("{what}: dirty pages [{}] in the watched ranges, expected [{}] (more allowed at 5 MiB)", hex(&got), hex(want)));
        }
        Ok(())
    };
    // Round 0 (L1 setup, L2 with nothing to do): the watched ranges stay clean.
    check("L1 setup", step(&mut v, &[], &mut serial)?, &[])?;
    let r1 = [0x30_0000, 0x30_2000, 0x30_1001, 0x50_0000, 0x50_8001, 0x50_9000, 0x50_a001];
    check("first L2 writes", step(&mut v, &r1, &mut serial)?, &[0x30_0000, 0x30_2000, 0x50_0000, 0x50_9000])?;
    check("same writes again, no flush by L1", step(&mut v, &[0x30_0000, 0x50_0000, 0x50_9000, 0x30_1001], &mut serial)?, &[0x30_0000, 0x50_0000, 0x50_9000])?;
    check("only reads", step(&mut v, &[0x30_0001, 0x50_9001, 0x50_b001], &mut serial)?, &[])?;
    check("a neighbour of a read page written", step(&mut v, &[0x50_d001, 0x50_c000, 0x30_1000], &mut serial)?, &[0x30_1000, 0x50_c000])?;
    let counts: Vec<u64> = [0x30_0000usize, 0x50_9000, 0x50_c000].iter().map(|a| u64::from_le_bytes(mem.read(*a, 8).try_into().unwrap())).collect();
    if counts != [2, 2, 1] {
        return Err(format!("L2's increments in L1 memory: {counts:?}, expected [2, 2, 1]"));
    }
    drop(v);
    drop(vm);
    Ok(())
}
