// SPDX-License-Identifier: GPL-2.0
//! The in-kernel PIT (`KVM_CREATE_PIT2`, `KVM_GET/SET_PIT2`,
//! `KVM_REINJECT_CONTROL`), run the same way on /dev/nsvm and /dev/kvm (the
//! `pit` suite runs both in one boot): capabilities and errnos, and the
//! real-mode payload `pit16.bin` (tests/guests/pit16.S), one case per guest
//! scenario — channel 0 in modes 2 and 0, counter latch and read-back,
//! channel 2 gated through port 0x61 as Linux's TSC calibration drives it,
//! BCD, a count set by `KVM_SET_PIT2` seen by the guest.
//!
//! KVM creates a PIT only with its in-kernel PIC (`KVM_CREATE_IRQCHIP`
//! first, `ENOENT` otherwise). Until nsvm has the full irqchip, nsvm's PIT
//! is created with the module parameter `pit_without_irqchip=1` (the suite
//! loads it so for every case but `pit_needs_irqchip`), and
//! `KVM_CREATE_IRQCHIP`'s `ENODEV` is accepted on nsvm only.

use std::os::fd::AsRawFd;

use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use nsvm_core::pit::{self, PitState2};
use nsvm_core::uapi::{cap, kvm};

use super::{expect_errno, ioctl, real_mode, region, Env, Mem, R};

const LOG_N: usize = 0x5f0;
const LOG: usize = 0x600;
/// An address no test maps: every pointer argument there faults.
const BAD: u64 = 0x10;

fn is_nsvm(e: &Env) -> bool {
    e.device.contains("nsvm")
}

/// `KVM_CREATE_IRQCHIP`, which KVM's PIT needs; nsvm answers `ENODEV` until
/// it has the full irqchip (then its PIT needs `pit_without_irqchip=1`).
fn irqchip(e: &Env, vm: &VmFd) -> R {
    match ioctl(vm.as_raw_fd(), kvm::CREATE_IRQCHIP, 0) {
        Ok(_) => Ok(()),
        Err(x) if x == libc::ENODEV && is_nsvm(e) => Ok(()),
        Err(x) => Err(format!("KVM_CREATE_IRQCHIP: errno {x}")),
    }
}

fn create_pit2(vm: &VmFd, flags: u32) -> Result<i64, i32> {
    let mut b = [0u8; pit::KVM_PIT_CONFIG_SIZE];
    b[0..4].copy_from_slice(&flags.to_ne_bytes());
    ioctl(vm.as_raw_fd(), kvm::CREATE_PIT2, b.as_ptr() as u64)
}

fn get_pit2(vm: &VmFd) -> Result<(PitState2, [u8; 112]), String> {
    let mut b = [0xffu8; pit::KVM_PIT_STATE2_SIZE];
    ioctl(vm.as_raw_fd(), kvm::GET_PIT2, b.as_mut_ptr() as u64).map_err(|x| format!("KVM_GET_PIT2: errno {x}"))?;
    Ok((PitState2::from_bytes(&b), b))
}

fn set_pit2(vm: &VmFd, s: &PitState2) -> R {
    let b = s.to_bytes2();
    ioctl(vm.as_raw_fd(), kvm::SET_PIT2, b.as_ptr() as u64).map_err(|x| format!("KVM_SET_PIT2: errno {x}"))?;
    Ok(())
}

fn reinject(vm: &VmFd, on: u8) -> Result<i64, i32> {
    let mut b = [0u8; pit::KVM_REINJECT_CONTROL_SIZE];
    b[0] = on;
    ioctl(vm.as_raw_fd(), kvm::REINJECT_CONTROL, b.as_ptr() as u64)
}

/// A VM with the irqchip KVM wants, a PIT created with `flags`, 64 KiB at
/// GPA 0 holding pit16.bin at 0x1000 and one vCPU in real mode there.
fn pit_vm(e: &Env, flags: u32) -> Result<(Kvm, VmFd, VcpuFd, Mem), String> {
    let Some(dir) = &e.guests else { return Err("needs --guests DIR (pit16.bin)".into()) };
    let code = std::fs::read(format!("{dir}/pit16.bin")).map_err(|x| format!("pit16.bin: {x}"))?;
    let k = e.kvm();
    let vm = k.create_vm().map_err(|x| x.to_string())?;
    irqchip(e, &vm)?;
    create_pit2(&vm, flags).map_err(|x| format!("KVM_CREATE_PIT2: errno {x}{}", if is_nsvm(e) { " (nsvm: load it with pit_without_irqchip=1)" } else { "" }))?;
    let mem = Mem::new(0x10000);
    mem.write(0x1000, &code);
    // SAFETY: the mapping is returned with the VM; unmapped first, it only
    // takes the guest's memory away (the VM sees an EFAULT, never a host page).
    unsafe { vm.set_user_memory_region(region(0, 0, 0x10000, mem.ptr as u64, 0)) }.map_err(|x| x.to_string())?;
    let v = vm.create_vcpu(0).map_err(|x| x.to_string())?;
    real_mode(&v, 0x1000);
    Ok((k, vm, v, mem))
}

/// Runs guest case `case` to its OUT to port 0x10; the words it logged.
fn run_case(v: &mut VcpuFd, mem: &Mem, case: u64) -> Result<Vec<u16>, String> {
    let mut r = v.get_regs().unwrap();
    r.rbx = case;
    v.set_regs(&r).unwrap();
    match v.run() {
        Ok(VcpuExit::IoOut(0x10, _)) => {}
        x => return Err(format!("case {case}: expected the OUT to port 0x10, got {x:?}")),
    }
    let n = u16::from_le_bytes(mem.read(LOG_N, 2).try_into().unwrap()) as usize;
    let b = mem.read(LOG, 2 * n.min(64));
    Ok(b.chunks(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect())
}

/// Runs guest case `case` on a new PIT (created with `flags`).
fn guest(e: &Env, flags: u32, case: u64) -> Result<Vec<u16>, String> {
    let (_k, vm, mut v, mem) = pit_vm(e, flags)?;
    let log = run_case(&mut v, &mem, case);
    if let Ok(l) = &log {
        println!("  case {case}: {l:04x?}");
    }
    drop(v);
    drop(vm);
    drop(mem);
    log
}

/// nsvm's VM statistic `pit_irq0` (IRQ 0 edges the PIT raised).
fn irq0_edges(vm: &VmFd) -> Result<u64, String> {
    let t = super::stats_fd_of(vm.as_raw_fd())?;
    t.lines().find_map(|l| l.strip_prefix("pit_irq0=")).and_then(|v| v.parse().ok()).ok_or_else(|| "no statistic pit_irq0".to_string())
}

fn check(ok: bool, what: &str, log: &[u16]) -> R {
    if ok {
        Ok(())
    } else {
        Err(format!("{what}: log {log:04x?}"))
    }
}

/// KVM_CAP_PIT, _PIT2, _PIT_STATE2, _REINJECT_CONTROL are 1.
pub fn pit_caps(e: &Env) -> R {
    let k = e.kvm();
    for (c, n) in [(cap::PIT, "PIT"), (cap::PIT2, "PIT2"), (cap::PIT_STATE2, "PIT_STATE2"), (cap::REINJECT_CONTROL, "REINJECT_CONTROL")] {
        let v = k.check_extension_raw(u64::from(c) as _);
        if v != 1 {
            return Err(format!("KVM_CAP_{n} = {v}"));
        }
    }
    Ok(())
}

/// Without the in-kernel PIC no PIT: `ENOENT` (also with the split
/// irqchip); every PIT ioctl `ENXIO` without a PIT, after reading its
/// struct (`EFAULT`) as KVM does. nsvm must be loaded without
/// `pit_without_irqchip`.
pub fn pit_needs_irqchip(e: &Env) -> R {
    let k = e.kvm();
    let vm = k.create_vm().map_err(|x| x.to_string())?;
    let fd = vm.as_raw_fd();
    let mut b = [0u8; 112];
    let p = b.as_mut_ptr() as u64;
    expect_errno("KVM_CREATE_PIT2 without irqchip", create_pit2(&vm, 0), libc::ENOENT)?;
    expect_errno("KVM_CREATE_PIT without irqchip", ioctl(fd, kvm::CREATE_PIT, 0), libc::ENOENT)?;
    expect_errno("KVM_CREATE_PIT2 bad pointer", ioctl(fd, kvm::CREATE_PIT2, BAD), libc::EFAULT)?;
    expect_errno("KVM_GET_PIT2 without PIT", ioctl(fd, kvm::GET_PIT2, p), libc::ENXIO)?;
    expect_errno("KVM_GET_PIT2 without PIT, bad pointer", ioctl(fd, kvm::GET_PIT2, BAD), libc::ENXIO)?;
    expect_errno("KVM_SET_PIT2 without PIT", ioctl(fd, kvm::SET_PIT2, p), libc::ENXIO)?;
    expect_errno("KVM_SET_PIT2 bad pointer", ioctl(fd, kvm::SET_PIT2, BAD), libc::EFAULT)?;
    expect_errno("KVM_GET_PIT without PIT", ioctl(fd, kvm::GET_PIT, p), libc::ENXIO)?;
    expect_errno("KVM_GET_PIT bad pointer", ioctl(fd, kvm::GET_PIT, BAD), libc::EFAULT)?;
    expect_errno("KVM_SET_PIT without PIT", ioctl(fd, kvm::SET_PIT, p), libc::ENXIO)?;
    expect_errno("KVM_SET_PIT bad pointer", ioctl(fd, kvm::SET_PIT, BAD), libc::EFAULT)?;
    expect_errno("KVM_REINJECT_CONTROL without PIT", ioctl(fd, kvm::REINJECT_CONTROL, p), libc::ENXIO)?;
    expect_errno("KVM_REINJECT_CONTROL bad pointer", ioctl(fd, kvm::REINJECT_CONTROL, BAD), libc::EFAULT)?;
    // The split irqchip has no PIC.
    let vm2 = k.create_vm().map_err(|x| x.to_string())?;
    let mut c = [0u8; 104];
    c[0..4].copy_from_slice(&cap::SPLIT_IRQCHIP.to_ne_bytes());
    c[8] = 24;
    ioctl(vm2.as_raw_fd(), kvm::ENABLE_CAP, c.as_ptr() as u64).map_err(|x| format!("SPLIT_IRQCHIP: errno {x}"))?;
    expect_errno("KVM_CREATE_PIT2 with the split irqchip", create_pit2(&vm2, 0), libc::ENOENT)
}

/// With a PIT: a second one `EEXIST` (both ioctls), unknown flags ignored
/// (KVM checks none), pointers read before anything else, GET_PIT2's
/// written after; REINJECT_CONTROL on and off.
pub fn pit_errnos(e: &Env) -> R {
    let k = e.kvm();
    let vm = k.create_vm().map_err(|x| x.to_string())?;
    irqchip(e, &vm)?;
    let fd = vm.as_raw_fd();
    create_pit2(&vm, 0xffff_fffe).map_err(|x| format!("KVM_CREATE_PIT2 with unknown flags: errno {x}"))?;
    expect_errno("KVM_CREATE_PIT2 twice", create_pit2(&vm, 0), libc::EEXIST)?;
    expect_errno("KVM_CREATE_PIT after KVM_CREATE_PIT2", ioctl(fd, kvm::CREATE_PIT, 0), libc::EEXIST)?;
    expect_errno("KVM_CREATE_PIT2 bad pointer with a PIT", ioctl(fd, kvm::CREATE_PIT2, BAD), libc::EFAULT)?;
    expect_errno("KVM_GET_PIT2 bad pointer", ioctl(fd, kvm::GET_PIT2, BAD), libc::EFAULT)?;
    expect_errno("KVM_SET_PIT2 bad pointer", ioctl(fd, kvm::SET_PIT2, BAD), libc::EFAULT)?;
    expect_errno("KVM_REINJECT_CONTROL bad pointer", ioctl(fd, kvm::REINJECT_CONTROL, BAD), libc::EFAULT)?;
    reinject(&vm, 0).map_err(|x| format!("REINJECT_CONTROL(0): errno {x}"))?;
    reinject(&vm, 1).map_err(|x| format!("REINJECT_CONTROL(1): errno {x}"))?;
    reinject(&vm, 0xff).map_err(|x| format!("REINJECT_CONTROL(0xff): errno {x}"))?;
    // KVM_CREATE_PIT on a new VM works too (speaker port included).
    let vm2 = k.create_vm().map_err(|x| x.to_string())?;
    irqchip(e, &vm2)?;
    ioctl(vm2.as_raw_fd(), kvm::CREATE_PIT, 0).map_err(|x| format!("KVM_CREATE_PIT: errno {x}"))?;
    expect_errno("KVM_CREATE_PIT2 after KVM_CREATE_PIT", create_pit2(&vm2, 0), libc::EEXIST)?;
    Ok(())
}

/// Channel 0, mode 2, count 1000: every reading in 1..=1000, the counter
/// both counts down and reloads.
pub fn pit_mode2(e: &Env) -> R {
    let l = guest(e, 0, 1)?;
    check(l.len() == 48 && l.iter().all(|&v| (1..=1000).contains(&v)), "mode 2 readings outside 1..=1000", &l)?;
    check(l.windows(2).any(|w| w[1] < w[0]), "mode 2 never counted down", &l)?;
    check(l.windows(2).any(|w| w[1] > w[0]), "mode 2 never reloaded", &l)
}

/// Channel 0, mode 0: two readings decrease, OUT low; with count 200 OUT
/// goes high after the polls, and the counter has wrapped past 0.
pub fn pit_mode0(e: &Env) -> R {
    let l = guest(e, 0, 2)?;
    check(l.len() == 6, "mode 0 log length", &l)?;
    check(l[1] < l[0], "mode 0 count did not decrease", &l)?;
    check(l[2] & 0xbf == 0x30, "mode 0 status before terminal count (OUT low, lo/hi, mode 0)", &l)?;
    check(l[3] != 0, "OUT never went high (65535 polls)", &l)?;
    check(l[4] & 0xbf == 0xb0, "mode 0 status after terminal count (OUT high)", &l)?;
    // Below the count of 200 until terminal count, from 0xffff down after it
    // (how far down depends on the host: TCG can delay the read by ms).
    check(l[5] > 200, "mode 0 did not wrap to 0xffff", &l)
}

/// Counter latch and read-back: the status right after the control word
/// (OUT low, lo/hi, mode 0; null count set on nsvm as the 8254 datasheet
/// says, never on kvm_amd), a latched count held while time passes (a
/// second latch after the delay reads lower), the status once loaded, a
/// read-back count, and status + count latched by one command (status
/// first). Only latched counts are compared: an unlatched two-byte read
/// can straddle a borrow from the high byte.
pub fn pit_latch(e: &Env) -> R {
    let l = guest(e, 0, 3)?;
    check(l.len() == 7, "latch log length", &l)?;
    check(l[0] & 0xbf == 0x30, "status after the control word", &l)?;
    // Null count: nsvm follows the datasheet; KVM's i8254 never reports it.
    let null = l[0] & 0x40 != 0;
    check(null == is_nsvm(e), "null count after the control word (nsvm: set, kvm_amd: clear)", &l)?;
    check(l[2] < l[1], "the latched count was not held (a later latch not below it)", &l)?;
    check(l[3] == 0x30, "status after the count was loaded (OUT low, null count clear)", &l)?;
    check(l[4] <= l[2], "read-back count above the earlier latched count", &l)?;
    check(l[5] == 0x30, "read-back status+count: status", &l)?;
    check(l[6] <= l[4], "read-back status+count: count", &l)
}

/// Linux's PIT calibration: channel 2, gate high through port 0x61, mode
/// 0, count 1193: OUT2 (port 0x61 bit 5) low, then high after polling;
/// channel 2 wrapped; gate low read back (needs KVM_PIT_SPEAKER_DUMMY).
pub fn pit_gate2(e: &Env) -> R {
    let l = guest(e, pit::KVM_PIT_SPEAKER_DUMMY, 4)?;
    check(l.len() == 5, "gate2 log length", &l)?;
    check(l[0] == 0x01, "port 0x61 after programming (gate 1, OUT2 low)", &l)?;
    check(l[1] != 0, "OUT2 never went high (65535 polls)", &l)?;
    check(l[2] == 0x21, "port 0x61 after terminal count (gate 1, OUT2 high)", &l)?;
    check(l[3] > 1193, "channel 2 did not wrap", &l)?;
    check(l[4] == 0x00, "port 0x61 with the gate low", &l)
}

/// Without KVM_PIT_SPEAKER_DUMMY port 0x61 is the VMM's (an exit), port
/// 0x40 the kernel's (no exit).
pub fn pit_speaker_port(e: &Env) -> R {
    let (_k, _vm, mut v, _mem) = pit_vm(e, 0)?;
    let mut r = v.get_regs().unwrap();
    r.rbx = 7;
    v.set_regs(&r).unwrap();
    match v.run() {
        Ok(VcpuExit::IoIn(0x61, _)) => Ok(()),
        x => Err(format!("expected IN from port 0x61 in userspace, got {x:?}")),
    }
}

fn valid_bcd(v: u16) -> bool {
    (0..4).all(|i| (v >> (4 * i)) & 0xf <= 9)
}

fn bcd(v: u16) -> u32 {
    (0..4).map(|i| u32::from((v >> (4 * i)) & 0xf) * 10u32.pow(i)).sum()
}

/// BCD: channel 0, mode 0, count 9999. The status says BCD on both; nsvm
/// counts in decimal (the 8254 datasheet), kvm_amd in binary from 0x9999
/// (KVM's i8254 ignores BCD): both readings must move.
pub fn pit_bcd(e: &Env) -> R {
    let l = guest(e, 0, 5)?;
    check(l.len() == 3, "bcd log length", &l)?;
    check(l[2] & 0x3f == 0x31, "BCD status (lo/hi, mode 0, BCD)", &l)?;
    check(l[0] != l[1] && l[0] <= 0x9999, "BCD count did not move", &l)?;
    if is_nsvm(e) {
        check(valid_bcd(l[0]) && valid_bcd(l[1]) && bcd(l[1]) < bcd(l[0]), "nsvm: BCD readings not decreasing decimal digits", &l)?;
    }
    Ok(())
}

/// A state set by KVM_SET_PIT2 (channel 0, mode 2, lo/hi, count 0x800) is
/// what the guest sees: its status says so and both readings are within
/// the count (after reset the count is 0x10000), whatever the host's delay.
pub fn pit_set_count(e: &Env) -> R {
    let (_k, vm, mut v, mem) = pit_vm(e, 0)?;
    let (mut s, _) = get_pit2(&vm)?;
    let c = &mut s.channels[0];
    c.mode = 2;
    c.rw_mode = pit::rw::WORD0;
    c.read_state = pit::rw::WORD0;
    c.write_state = pit::rw::WORD0;
    c.bcd = 0;
    c.count = 0x800;
    set_pit2(&vm, &s)?;
    let l = run_case(&mut v, &mem, 6)?;
    println!("  case 6: {l:04x?}");
    check(l.len() == 3 && l[..2].iter().all(|x| (1..=0x800).contains(x)) && l[0] != l[1], "the count KVM_SET_PIT2 loaded", &l)?;
    check(l[2] & 0x3f == 0x34, "the mode KVM_SET_PIT2 set (status: lo/hi, mode 2)", &l)
}

/// KVM_GET_PIT2 after reset and after the guest programmed channel 0;
/// KVM_SET_PIT2 of that state with SPEAKER_DATA_ON reads back the same
/// (count_load_time aside); KVM_GET_PIT is its first 72 bytes, and
/// KVM_SET_PIT keeps the flags.
pub fn pit_state(e: &Env) -> R {
    let (_k, vm, mut v, mem) = pit_vm(e, 0)?;
    let (s, raw) = get_pit2(&vm)?;
    for (i, c) in s.channels.iter().enumerate() {
        if c.mode != 0xff || c.count != 0x10000 || c.gate != u8::from(i != 2) || c.rw_mode != 0 || c.status_latched != 0 || c.count_latched != 0 {
            return Err(format!("reset state of channel {i}: {c:?}"));
        }
    }
    if s.flags != 0 || raw[76..].iter().any(|&b| b != 0) {
        return Err(format!("flags {:#x}, reserved {:02x?}", s.flags, &raw[76..]));
    }
    run_case(&mut v, &mem, 1)?;
    let (mut s, _) = get_pit2(&vm)?;
    let c = s.channels[0];
    if (c.mode, c.rw_mode, c.read_state, c.write_state, c.count, c.gate, c.bcd) != (2, 3, 3, 3, 1000, 1, 0) {
        return Err(format!("channel 0 after the guest's mode 2 count 1000: {c:?}"));
    }
    s.flags = pit::KVM_PIT_FLAGS_SPEAKER_DATA_ON;
    set_pit2(&vm, &s)?;
    let (mut s2, _) = get_pit2(&vm)?;
    for (a, b) in s2.channels.iter_mut().zip(s.channels.iter()) {
        a.count_load_time = b.count_load_time;
    }
    if s2 != s {
        return Err(format!("KVM_SET_PIT2 then KVM_GET_PIT2: {s2:?}, set {s:?}"));
    }
    let mut p = [0u8; pit::KVM_PIT_STATE_SIZE];
    ioctl(vm.as_raw_fd(), kvm::GET_PIT, p.as_mut_ptr() as u64).map_err(|x| format!("KVM_GET_PIT: errno {x}"))?;
    let g = PitState2::from_bytes(&p);
    for i in 0..3 {
        let (mut a, b) = (g.channels[i], s2.channels[i]);
        a.count_load_time = b.count_load_time;
        if a != b {
            return Err(format!("KVM_GET_PIT channel {i}: {a:?}, KVM_GET_PIT2 {b:?}"));
        }
    }
    ioctl(vm.as_raw_fd(), kvm::SET_PIT, p.as_ptr() as u64).map_err(|x| format!("KVM_SET_PIT: errno {x}"))?;
    let (s3, _) = get_pit2(&vm)?;
    if s3.flags != pit::KVM_PIT_FLAGS_SPEAKER_DATA_ON {
        return Err(format!("KVM_SET_PIT changed the flags to {:#x}", s3.flags));
    }
    Ok(())
}

/// VMs destroyed with channel 0's periodic timer running at its shortest
/// period (the suite then unloads the module and checks the kernel log).
pub fn pit_teardown(e: &Env) -> R {
    let k = e.kvm();
    for i in 0..20 {
        let vm = k.create_vm().map_err(|x| x.to_string())?;
        irqchip(e, &vm)?;
        create_pit2(&vm, pit::KVM_PIT_SPEAKER_DUMMY).map_err(|x| format!("round {i}: KVM_CREATE_PIT2: errno {x}"))?;
        let (mut s, _) = get_pit2(&vm)?;
        s.channels[0].mode = 2;
        s.channels[0].count = 2;
        set_pit2(&vm, &s)?;
        std::thread::sleep(std::time::Duration::from_millis(3));
        if i % 2 == 0 {
            reinject(&vm, 0).map_err(|x| format!("REINJECT_CONTROL: errno {x}"))?;
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }
    Ok(())
}

/// nsvm only (its VM statistic `pit_irq0`; kvm_amd has none): channel 0's
/// timer and the reinjection accounting. Nothing acknowledges IRQ 0 here
/// (no guest runs), so with reinjection on a periodic 1 ms channel raises
/// exactly one edge in 60 ms, with it off one per expiry (coalesced when the
/// work runs late: at least 10); mode 0 raises one; the HPET legacy flag none.
pub fn pit_irq0_timer(e: &Env) -> R {
    if !is_nsvm(e) {
        return Err("nsvm only (its pit_irq0 statistic)".into());
    }
    let k = e.kvm();
    let run = |mode: u8, flags: u32, reinj: Option<u8>| -> Result<u64, String> {
        let vm = k.create_vm().map_err(|x| x.to_string())?;
        irqchip(e, &vm)?;
        create_pit2(&vm, 0).map_err(|x| format!("KVM_CREATE_PIT2: errno {x}"))?;
        if let Some(r) = reinj {
            reinject(&vm, r).map_err(|x| format!("REINJECT_CONTROL: errno {x}"))?;
        }
        let (mut s, _) = get_pit2(&vm)?;
        s.channels[0].mode = mode;
        s.channels[0].count = 1193;
        s.flags = flags;
        set_pit2(&vm, &s)?;
        std::thread::sleep(std::time::Duration::from_millis(60));
        irq0_edges(&vm)
    };
    let on = run(2, 0, None)?;
    let off = run(2, 0, Some(0))?;
    let once = run(0, 0, Some(0))?;
    let hpet = run(2, pit::KVM_PIT_FLAGS_HPET_LEGACY, Some(0))?;
    println!("  IRQ 0 edges in 60 ms: mode 2 reinject on {on}, off {off}; mode 0 {once}; HPET legacy {hpet}");
    if on != 1 || !(10..=70).contains(&off) || once != 1 || hpet != 0 {
        return Err(format!("edges: reinject on {on} (want 1), off {off} (want 10..=70), mode 0 {once} (want 1), HPET legacy {hpet} (want 0)"));
    }
    Ok(())
}
