// SPDX-License-Identifier: GPL-2.0
//! kvmclock as a guest and a VMM see it (`nsvm_core::kvmclock`): the
//! paravirtual CPUID leaves, the MSRs in the index list and through
//! `KVM_GET/SET_MSRS`, the records the guest's WRMSRs ask for (version,
//! scale against `KVM_GET_TSC_KHZ`, time against `KVM_GET_CLOCK` and the
//! guest TSC, wall clock against real time), their rewrite after
//! `KVM_SET_CLOCK`, and `KVM_KVMCLOCK_CTRL`. The same checks on kvm_amd.

use std::os::fd::AsRawFd;

use kvm_bindings::{kvm_msr_entry, Msrs};
use kvm_ioctls::VcpuExit;
use nsvm_core::kvmclock::{self as kc, TimeInfo, TIME_INFO_SIZE};
use nsvm_core::uapi::{cap, kvm};

use crate::{expect_errno, ioctl, small_vm, Env, R};

/// Real-mode guest at 0x1000: kvmclock record at 0x3000 (enabled), wall
/// clock at 0x4000, then HLT in a loop (each KVM_RUN ends at the HLT).
const CODE: [u8; 40] = [
    0x66, 0xb9, 0x01, 0x4d, 0x56, 0x4b, // mov ecx, MSR_KVM_SYSTEM_TIME_NEW
    0x66, 0xb8, 0x01, 0x30, 0x00, 0x00, // mov eax, 0x3001
    0x66, 0x31, 0xd2, // xor edx, edx
    0x0f, 0x30, // wrmsr
    0x66, 0xb9, 0x00, 0x4d, 0x56, 0x4b, // mov ecx, MSR_KVM_WALL_CLOCK_NEW
    0x66, 0xb8, 0x00, 0x40, 0x00, 0x00, // mov eax, 0x4000
    0x0f, 0x30, // wrmsr
    0xf4, 0xeb, 0xfd, // 1: hlt; jmp 1b
    0x90, 0x90, 0x90, 0x90, 0x90, 0x90,
];

const RECORD: usize = 0x3000;
const WALL: usize = 0x4000;

fn now_real_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

pub fn kvmclock(e: &Env) -> R {
    let k = e.kvm();
    if k.check_extension_raw(cap::KVMCLOCK_CTRL as _) != 1 {
        return Err("KVM_CAP_KVMCLOCK_CTRL is not 1".into());
    }
    // The paravirtual leaves.
    let cpuid = k.get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES).map_err(|x| x.to_string())?;
    let leaf = |f: u32| cpuid.as_slice().iter().find(|c| c.function == f).map(|c| [c.eax, c.ebx, c.ecx, c.edx]);
    let sig = leaf(kc::leaf::SIGNATURE).ok_or("no CPUID 0x40000000 in KVM_GET_SUPPORTED_CPUID")?;
    if sig[0] < kc::leaf::FEATURES || sig[1..] != kc::SIGNATURE {
        return Err(format!("CPUID 0x40000000 = {sig:x?}, expected max >= 0x40000001 and KVMKVMKVM"));
    }
    let feat = leaf(kc::leaf::FEATURES).ok_or("no CPUID 0x40000001")?;
    if feat[0] & kc::features::OFFERED != kc::features::OFFERED {
        return Err(format!("CPUID 0x40000001 EAX {:#x} lacks kvmclock bits {:#x}", feat[0], kc::features::OFFERED));
    }
    let list = k.get_msr_index_list().map_err(|x| format!("GET_MSR_INDEX_LIST: {x}"))?;
    for m in kc::msr::ALL {
        if !list.as_slice().contains(&m) {
            return Err(format!("MSR {m:#x} is not in KVM_GET_MSR_INDEX_LIST"));
        }
    }

    let (vm, mut vcpu, mem) = small_vm(&k, &CODE);
    let vfd = vcpu.as_raw_fd();
    expect_errno("KVMCLOCK_CTRL before kvmclock is on", ioctl(vfd, kvm::KVMCLOCK_CTRL, 0), libc::EINVAL)?;
    let run_to_hlt = |vcpu: &mut kvm_ioctls::VcpuFd, what: &str| -> R {
        match vcpu.run() {
            Ok(VcpuExit::Hlt) => Ok(()),
            r => Err(format!("{what}: {r:?}, expected HLT")),
        }
    };
    run_to_hlt(&mut vcpu, "the WRMSRs")?;
    let get_msrs = |vcpu: &kvm_ioctls::VcpuFd, idx: &[u32]| -> Result<Vec<u64>, String> {
        let ents: Vec<kvm_msr_entry> = idx.iter().map(|&index| kvm_msr_entry { index, ..Default::default() }).collect();
        let mut m = Msrs::from_entries(&ents).unwrap();
        let n = vcpu.get_msrs(&mut m).map_err(|x| format!("GET_MSRS: {x}"))?;
        if n != idx.len() {
            return Err(format!("GET_MSRS read {n} of {idx:x?}"));
        }
        Ok(m.as_slice().iter().map(|e| e.data).collect())
    };
    let v = get_msrs(&vcpu, &[kc::msr::SYSTEM_TIME_NEW, kc::msr::WALL_CLOCK_NEW])?;
    if v != [0x3001, 0x4000] {
        return Err(format!("the kvmclock MSRs read {v:x?}, expected [0x3001, 0x4000]"));
    }
    let vm_fd = vm.as_raw_fd();
    let get_clock = || -> Result<(u64, u32), String> {
        let mut b = [0u8; 48];
        ioctl(vm_fd, kvm::GET_CLOCK, b.as_mut_ptr() as u64).map_err(|x| format!("GET_CLOCK: errno {x}"))?;
        Ok((u64::from_ne_bytes(b[0..8].try_into().unwrap()), u32::from_ne_bytes(b[8..12].try_into().unwrap())))
    };
    let record = || -> (u32, TimeInfo) {
        let b: [u8; TIME_INFO_SIZE] = mem.read(RECORD, TIME_INFO_SIZE).try_into().unwrap();
        TimeInfo::from_bytes(&b)
    };
    // The record against the VM clock: the guest's computation at the
    // guest TSC read between two KVM_GET_CLOCKs falls between them (5 ms
    // of slack for the two clocks' rounding and TCG's slowness).
    let check_time = |vcpu: &kvm_ioctls::VcpuFd, what: &str| -> Result<(u32, TimeInfo, u64), String> {
        let (ver, rec) = record();
        if ver == 0 || ver & 1 != 0 {
            return Err(format!("{what}: record version {ver}, expected even and non-zero"));
        }
        let (t1, fl) = get_clock()?;
        let tsc = get_msrs(vcpu, &[0x10])?[0];
        let (t2, _) = get_clock()?;
        let g = rec.read(tsc);
        const SLACK: u64 = 5_000_000;
        if g + SLACK < t1 || g > t2 + SLACK {
            return Err(format!("{what}: the record gives {g} ns at guest TSC {tsc}, KVM_GET_CLOCK {t1}..{t2} ({rec:?})"));
        }
        if fl & nsvm_core::clock::flags::TSC_STABLE != 0 && rec.flags & kc::flags::TSC_STABLE == 0 {
            return Err(format!("{what}: KVM_GET_CLOCK says the TSC is stable, the record's flags {:#x} do not", rec.flags));
        }
        Ok((ver, rec, g))
    };
    let (_, rec, g) = check_time(&vcpu, "after the WRMSR")?;
    // The scale: one second of the vCPU's TSC is one second.
    let khz = vcpu.get_tsc_khz().map_err(|x| format!("KVM_GET_TSC_KHZ: {x}"))? as u64;
    let one = rec.scale.ns(khz * 1000);
    if one.abs_diff(1_000_000_000) > 10 {
        return Err(format!("the record's scale {:?} makes {khz} kHz x 1 s = {one} ns", rec.scale));
    }
    // The wall clock: the real time at which the VM clock read 0.
    let w = mem.read(WALL, 12);
    let (wver, sec, nsec) = (
        u32::from_le_bytes(w[0..4].try_into().unwrap()),
        u32::from_le_bytes(w[4..8].try_into().unwrap()) as u64,
        u32::from_le_bytes(w[8..12].try_into().unwrap()) as u64,
    );
    let epoch = now_real_ns().saturating_sub(g);
    let got = sec * 1_000_000_000 + nsec;
    if wver == 0 || wver & 1 != 0 || nsec >= 1_000_000_000 || got.abs_diff(epoch) > 1_000_000_000 {
        return Err(format!("wall clock: version {wver}, {sec} s {nsec} ns; expected about {epoch} ns"));
    }

    // KVM_SET_CLOCK: the record moves with the clock before the guest runs.
    const T: u64 = 1_000_000_000_000;
    let mut b = [0u8; 48];
    b[0..8].copy_from_slice(&T.to_ne_bytes());
    ioctl(vm_fd, kvm::SET_CLOCK, b.as_ptr() as u64).map_err(|x| format!("SET_CLOCK: errno {x}"))?;
    run_to_hlt(&mut vcpu, "the run after SET_CLOCK")?;
    let (_, _, g) = check_time(&vcpu, "after KVM_SET_CLOCK")?;
    if !(T..T + 2_000_000_000).contains(&g) {
        return Err(format!("after KVM_SET_CLOCK({T}) the record gives {g}"));
    }

    // KVM_KVMCLOCK_CTRL: GUEST_STOPPED in the next record.
    ioctl(vfd, kvm::KVMCLOCK_CTRL, 0).map_err(|x| format!("KVMCLOCK_CTRL: errno {x}"))?;
    run_to_hlt(&mut vcpu, "the run after KVMCLOCK_CTRL")?;
    let (_, rec) = record();
    if rec.flags & kc::flags::GUEST_STOPPED == 0 {
        return Err(format!("after KVM_KVMCLOCK_CTRL the record's flags are {:#x}, expected GUEST_STOPPED", rec.flags));
    }

    // Off through KVM_SET_MSRS: KVMCLOCK_CTRL is refused again.
    let m = Msrs::from_entries(&[kvm_msr_entry { index: kc::msr::SYSTEM_TIME_NEW, data: 0x3000, ..Default::default() }]).unwrap();
    if vcpu.set_msrs(&m).map_err(|x| format!("SET_MSRS: {x}"))? != 1 {
        return Err("SET_MSRS of MSR_KVM_SYSTEM_TIME_NEW refused".into());
    }
    expect_errno("KVMCLOCK_CTRL with kvmclock off", ioctl(vfd, kvm::KVMCLOCK_CTRL, 0), libc::EINVAL)?;
    let v = get_msrs(&vcpu, &[kc::msr::SYSTEM_TIME_NEW])?;
    if v != [0x3000] {
        return Err(format!("MSR_KVM_SYSTEM_TIME_NEW reads {v:x?} after SET_MSRS(0x3000)"));
    }
    Ok(())
}

/// The vCPUs' TSCs as userspace sets them, KVM's matching: vCPUs created
/// apart and given TSC 0 one after the other (QEMU's reset) read the same
/// TSC, and so do vCPUs given the same saved value 100 ms apart (a
/// restore); a value 10 s away is taken as meant.
pub fn tsc_sync(e: &Env) -> R {
    let k = e.kvm();
    let vm = k.create_vm().map_err(|x| x.to_string())?;
    let v0 = vm.create_vcpu(0).map_err(|x| x.to_string())?;
    std::thread::sleep(std::time::Duration::from_millis(50));
    let v1 = vm.create_vcpu(1).map_err(|x| x.to_string())?;
    let tsc = |v: &kvm_ioctls::VcpuFd| -> Result<u64, String> {
        let mut m = Msrs::from_entries(&[kvm_msr_entry { index: 0x10, ..Default::default() }]).unwrap();
        v.get_msrs(&mut m).map_err(|x| format!("GET_MSRS(TSC): {x}"))?;
        Ok(m.as_slice()[0].data)
    };
    let set = |v: &kvm_ioctls::VcpuFd, val: u64| -> R {
        let m = Msrs::from_entries(&[kvm_msr_entry { index: 0x10, data: val, ..Default::default() }]).unwrap();
        match v.set_msrs(&m) {
            Ok(1) => Ok(()),
            r => Err(format!("SET_MSRS(TSC = {val}): {r:?}")),
        }
    };
    let khz = v0.get_tsc_khz().map_err(|x| format!("KVM_GET_TSC_KHZ: {x}"))? as u64;
    // Offsets are matched exactly only on a host whose TSC the kernel
    // trusts (KVM_GET_CLOCK's TSC_STABLE: KVM's master clock); on another
    // both advance the value by the time elapsed at the nominal rate, and
    // kvm_amd's vcpu_load (every vCPU ioctl) also sets a vCPU that has not
    // run back to the TSC it last saw. So the checks below run with a
    // stable host TSC (1 ms of slack for the ioctls); under QEMU TCG
    // (unstable) only the last one does, and nsvm_core::tsc's host tests
    // cover the rest.
    let mut cb = [0u8; 48];
    ioctl(vm.as_raw_fd(), kvm::GET_CLOCK, cb.as_mut_ptr() as u64).map_err(|x| format!("GET_CLOCK: errno {x}"))?;
    let stable = u32::from_ne_bytes(cb[8..12].try_into().unwrap()) & nsvm_core::clock::flags::TSC_STABLE != 0;
    let exact = stable;
    // The TSC of vCPU 1 read between two reads of vCPU 0's: in sync, it
    // lies between them (plus the slack above).
    let in_sync = |what: &str| -> R {
        if !exact {
            return Ok(());
        }
        let a = tsc(&v0)?;
        let b = tsc(&v1)?;
        let c = tsc(&v0)?;
        let slack = khz;
        if b + slack < a || b > c + slack {
            return Err(format!("{what}: vCPU 1's TSC {b} is not within vCPU 0's {a}..{c} (1 ms = {khz} cycles)"));
        }
        Ok(())
    };
    in_sync("after creating the vCPUs 50 ms apart")?;
    set(&v0, 0)?;
    std::thread::sleep(std::time::Duration::from_millis(50));
    set(&v1, 0)?;
    in_sync("after TSC = 0 on each, 50 ms apart")?;
    const SAVED: u64 = 123_456_789_000;
    set(&v0, SAVED)?;
    std::thread::sleep(std::time::Duration::from_millis(100));
    set(&v1, SAVED)?;
    in_sync("after a saved TSC on each, 100 ms apart")?;
    // 10 s of cycles ahead: vCPU 1 is that far ahead.
    let far = SAVED + 10_000 * khz;
    set(&v1, far)?;
    let (a, b) = (tsc(&v0)?, tsc(&v1)?);
    let d = b.wrapping_sub(a);
    if d < 9_000 * khz || d > 11_000 * khz {
        return Err(format!("after TSC = saved + 10 s on vCPU 1: it is {d} cycles ahead of vCPU 0, expected about {}", 10_000 * khz));
    }
    Ok(())
}

/// The guest's TSC_AUX is what its RDTSCP reads (RDTSCP is not
/// intercepted; RDPID cannot be), and the host's comes back: after the
/// run, this thread's RDTSCP reads the CPU it runs on again (Linux keeps
/// the CPU number in TSC_AUX's low 12 bits).
pub fn tsc_aux(e: &Env) -> R {
    // RDTSCP: CPUID 0x80000001 EDX bit 27 (every CPU nsvm runs on has it).
    let ext = core::arch::x86_64::__cpuid(0x8000_0001);
    if ext.edx & (1 << 27) == 0 {
        return Err("the host has no RDTSCP".into());
    }
    let k = e.kvm();
    let code = [
        0x66, 0xb9, 0x03, 0x01, 0x00, 0xc0, // mov ecx, MSR_TSC_AUX
        0x66, 0xb8, 0x34, 0x12, 0x00, 0x00, // mov eax, 0x1234
        0x66, 0x31, 0xd2, // xor edx, edx
        0x0f, 0x30, // wrmsr
        0x66, 0x31, 0xc9, // xor ecx, ecx
        0x0f, 0x01, 0xf9, // rdtscp
        0xf4, // hlt
    ];
    let (_vm, mut vcpu, _mem) = small_vm(&k, &code);
    // A supported CPUID table: RDTSCP offered.
    let cpuid = k.get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES).map_err(|x| x.to_string())?;
    vcpu.set_cpuid2(&cpuid).map_err(|x| format!("SET_CPUID2: {x}"))?;
    match vcpu.run() {
        Ok(VcpuExit::Hlt) => {}
        r => return Err(format!("the guest's WRMSR and RDTSCP: {r:?}, expected HLT")),
    }
    let rcx = vcpu.get_regs().map_err(|x| x.to_string())?.rcx;
    if rcx & 0xffff_ffff != 0x1234 {
        return Err(format!("the guest's RDTSCP read TSC_AUX {:#x}, expected the 0x1234 it wrote", rcx & 0xffff_ffff));
    }
    // The host's value is back: RDTSCP agrees with getcpu (a migration
    // between the two can differ: a few tries).
    for _ in 0..20 {
        let mut aux = 0u32;
        // SAFETY: RDTSCP is available (checked above) and only writes `aux`.
        unsafe { core::arch::x86_64::__rdtscp(&mut aux) };
        // SAFETY: plain syscall wrapper.
        let cpu = unsafe { libc::sched_getcpu() };
        if cpu >= 0 && aux & 0xfff == cpu as u32 {
            return Ok(());
        }
    }
    Err("after KVM_RUN this thread's RDTSCP does not read its CPU number: the guest's TSC_AUX stayed".into())
}
