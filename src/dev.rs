// SPDX-License-Identifier: GPL-2.0
//! The system fd, `/dev/nsvm`: KVM's system ioctls and nsvm's own.

use kernel::prelude::*;
use kernel::uaccess::{UserPtr, UserSlice};

use nsvm_core::uapi::{self, Errno, SystemIoctl};

use crate::svm;

/// Handles an ioctl on `/dev/nsvm`. `arg` is untrusted: pointers are only
/// used through `UserSlice`, which fails with `EFAULT`. Errors are KVM's
/// (`kvm_dev_ioctl`, `kvm_arch_dev_ioctl`): unknown commands are `EINVAL`.
pub(crate) fn system_ioctl(cmd: u32, arg: usize) -> Result<isize> {
    match uapi::decode_system_ioctl(cmd, arg as u64) {
        SystemIoctl::GetApiVersion => Ok(uapi::KVM_API_VERSION as isize),
        SystemIoctl::CheckExtension(cap) => Ok(uapi::cap::check_extension_on(cap, crate::hw::cpu::num_online_cpus()) as isize),
        SystemIoctl::GetHostInfo => {
            let bytes = svm::host_info().to_bytes();
            UserSlice::new(UserPtr::from_addr(arg), bytes.len()).writer().write_slice(&bytes)?;
            Ok(0)
        }
        SystemIoctl::CreateVm(ty) => crate::vm::Vm::create(ty as usize),
        SystemIoctl::GetVcpuMmapSize => Ok(nsvm_core::user_exit::run::MMAP_SIZE as isize),
        SystemIoctl::GetSupportedCpuid => supported_cpuid(arg),
        SystemIoctl::GetMsrIndexList => msr_list(arg, nsvm_core::msr::GUEST_MSRS),
        SystemIoctl::GetMsrFeatureIndexList => msr_list(arg, nsvm_core::msr_misc::FEATURE_MSRS),
        SystemIoctl::GetFeatureMsrs => feature_msrs(arg),
        SystemIoctl::GetMceCapSupported => {
            let v = nsvm_core::mce::SUPPORTED_CAP.to_ne_bytes();
            UserSlice::new(UserPtr::from_addr(arg), 8).writer().write_slice(&v)?;
            Ok(0)
        }
        SystemIoctl::Refused(e) => Err(errno(e)),
    }
}

/// `KVM_GET_MSR_INDEX_LIST`, `KVM_GET_MSR_FEATURE_INDEX_LIST`: struct
/// kvm_msr_list { u32 nmsrs; u32 indices[]; }; the count written back,
/// then E2BIG when the caller's room is too small.
fn msr_list(arg: usize, list: &[u32]) -> Result<isize> {
    let mut hdr = [0u8; 4];
    UserSlice::new(UserPtr::from_addr(arg), 4).reader().read_slice(&mut hdr)?;
    let room = u32::from_ne_bytes(hdr) as usize;
    UserSlice::new(UserPtr::from_addr(arg), 4).writer().write_slice(&(list.len() as u32).to_ne_bytes())?;
    if room < list.len() {
        return Err(E2BIG);
    }
    let mut w = UserSlice::new(UserPtr::from_addr(arg + 4), 4 * list.len()).writer();
    for m in list {
        w.write_slice(&m.to_ne_bytes())?;
    }
    Ok(0)
}

/// What the host offers for the feature MSRs: its microcode revision, and
/// DE_CFG.LFENCE_SERIALIZE when its DE_CFG has it (LFENCE serializing).
pub(crate) fn host_features() -> nsvm_core::msr_misc::HostFeatures {
    use nsvm_core::msr_misc::*;
    HostFeatures {
        ucode_rev: crate::hw::cpu::rdmsr(UCODE_REV).unwrap_or(0),
        de_cfg: crate::hw::cpu::rdmsr(DE_CFG).unwrap_or(0) & DE_CFG_LFENCE_SERIALIZE,
    }
}

/// `KVM_GET_MSRS` on the system fd (KVM's `msr_io` with
/// `do_get_feature_msr`): `E2BIG` from `MAX_IO_MSRS` entries up, all
/// entries read first, processing stops at the first MSR that is neither a
/// feature MSR nor advertised (`msr_misc::system_msr`) with its data
/// zeroed, every entry written back; returns how many were read.
fn feature_msrs(arg: usize) -> Result<isize> {
    let mut ents = crate::vcpu::read_msr_entries(arg)?;
    let h = host_features();
    let mut done = 0;
    for e in ents.iter_mut() {
        let index = u32::from_ne_bytes([e[0], e[1], e[2], e[3]]);
        match nsvm_core::msr_misc::system_msr(index, &h) {
            Some(v) => e[8..16].copy_from_slice(&v.to_ne_bytes()),
            None => {
                // KVM zeroes the data of a read that failed.
                e[8..16].fill(0);
                break;
            }
        }
        done += 1;
    }
    let mut w = UserSlice::new(UserPtr::from_addr(arg + 8), 16 * ents.len()).writer();
    for e in ents.iter() {
        w.write_slice(e)?;
    }
    Ok(done)
}

/// The kernel error for an [`Errno`] of the core's UAPI decisions.
fn errno(e: Errno) -> Error {
    Error::from_errno(-e.number())
}

/// `KVM_GET_SUPPORTED_CPUID`: the host's leaves as `cpuid::supported_leaf`
/// filters them. `nent` in: room; out: entries written. As in KVM, `nent`
/// is written back only on success (not with `E2BIG` nor after a fault).
fn supported_cpuid(arg: usize) -> Result<isize> {
    use nsvm_core::cpuid::{is_indexed, supported_leaf};
    const MAX: usize = 256;
    let mut ents: KVec<[u32; 7]> = KVec::with_capacity(MAX, GFP_KERNEL)?;
    let mut add = |leaf: u32, sub: u32| -> Result<bool> {
        let (a, b, c, d) = crate::hw::cpu::cpuid(leaf, sub);
        if let Some(r) = supported_leaf(leaf, sub, [a, b, c, d]) {
            if ents.len() >= MAX {
                return Err(E2BIG);
            }
            let flags = u32::from(is_indexed(leaf));
            ents.push([leaf, if is_indexed(leaf) { sub } else { 0 }, flags, r[0], r[1], r[2], r[3]], GFP_KERNEL)?;
        }
        Ok(true)
    };
    let (max_basic, ..) = crate::hw::cpu::cpuid(0, 0);
    for leaf in 0..=core::cmp::min(max_basic, 0x1f) {
        match leaf {
            4 => {
                for sub in 0..16 {
                    let (a, ..) = crate::hw::cpu::cpuid(4, sub);
                    add(4, sub)?;
                    if a & 0x1f == 0 {
                        break;
                    }
                }
            }
            7 => {
                let (n, ..) = crate::hw::cpu::cpuid(7, 0);
                for sub in 0..=core::cmp::min(n, 4) {
                    add(7, sub)?;
                }
            }
            0xb | 0x1f => {
                for sub in 0..8 {
                    let (_, _, c, _) = crate::hw::cpu::cpuid(leaf, sub);
                    add(leaf, sub)?;
                    if (c >> 8) & 0xff == 0 {
                        break;
                    }
                }
            }
            0xd => {
                let (xlo, _, _, xhi) = crate::hw::cpu::cpuid(0xd, 0);
                let mask = u64::from(xlo) | (u64::from(xhi) << 32);
                for sub in 0..64 {
                    if sub <= 1 || mask & (1 << sub) != 0 {
                        add(0xd, sub)?;
                    }
                }
            }
            l if is_indexed(l) => {
                add(l, 0)?;
            }
            l => {
                add(l, 0)?;
            }
        }
    }
    let (max_ext, ..) = crate::hw::cpu::cpuid(0x8000_0000, 0);
    if max_ext >= 0x8000_0000 {
        for leaf in 0x8000_0000..=core::cmp::min(max_ext, 0x8000_0021) {
            add(leaf, 0)?;
        }
    }
    // The paravirtual leaves (kvmclock), nsvm's own values: not the host's.
    for leaf in [nsvm_core::kvmclock::leaf::SIGNATURE, nsvm_core::kvmclock::leaf::FEATURES] {
        if let Some(r) = nsvm_core::kvmclock::supported_leaf(leaf) {
            if ents.len() >= MAX {
                return Err(E2BIG);
            }
            ents.push([leaf, 0, 0, r[0], r[1], r[2], r[3]], GFP_KERNEL)?;
        }
    }
    let mut hdr = [0u8; 8];
    UserSlice::new(UserPtr::from_addr(arg), 8).reader().read_slice(&mut hdr)?;
    let room = u32::from_ne_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]) as usize;
    if room < ents.len() {
        return Err(E2BIG);
    }
    let mut w = UserSlice::new(UserPtr::from_addr(arg + 8), ents.len() * 40).writer();
    for e in ents.iter() {
        let mut b = [0u8; 40];
        for (i, v) in e.iter().enumerate() {
            b[4 * i..4 * i + 4].copy_from_slice(&v.to_ne_bytes());
        }
        w.write_slice(&b)?;
    }
    let n = ents.len() as u32;
    UserSlice::new(UserPtr::from_addr(arg), 4).writer().write_slice(&n.to_ne_bytes())?;
    Ok(0)
}
