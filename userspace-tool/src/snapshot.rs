// SPDX-License-Identifier: GPL-2.0
//! `nsvm run --snapshot FILE` / `nsvm run --restore FILE`: a whole VM saved
//! to a file and restored into a new VM (in another process, on /dev/nsvm or
//! /dev/kvm), including a vCPU stopped while its L2 runs: the nested part
//! goes through `KVM_GET/SET_NESTED_STATE` (KVM's SVM format, so snapshots
//! move between nsvm and kvm_amd), the rest through the usual register
//! ioctls (in guest mode they hold L2's state, as in KVM).
//!
//! The guest asks for the snapshot by writing to port [`SNAPSHOT_PORT`]
//! (with `--snapshot`; ignored otherwise). File layout, little endian:
//!
//! ```text
//! "NSVMSNP2"  u64 memory bytes  u64 vCPUs  memory
//! per vCPU:   kvm_regs  kvm_sregs  kvm_fpu
//!             u32 n, n × (u32 index, u64 value)   MSRs KVM_GET_MSRS returned
//!             u32 len, len bytes                  struct kvm_nested_state
//!             kvm_vcpu_events                     pending/in-delivery events
//! ```

use kvm_bindings::{kvm_fpu, kvm_msr_entry, kvm_regs, kvm_sregs, kvm_vcpu_events, Msrs};
use kvm_ioctls::{Kvm, VcpuFd};
use std::os::fd::AsRawFd;

/// An OUT to this port takes the snapshot (with `--snapshot`).
pub const SNAPSHOT_PORT: u16 = 0x502;
const MAGIC: &[u8; 8] = b"NSVMSNP2";
/// `struct kvm_nested_state` header + the SVM vmcb12 page.
const NESTED_MAX: usize = nsvm_core::nested_state::MAX_SIZE;

/// One vCPU's saved state.
pub struct VcpuState {
    regs: kvm_regs,
    sregs: kvm_sregs,
    fpu: kvm_fpu,
    msrs: Vec<(u32, u64)>,
    nested: Vec<u8>,
    events: kvm_vcpu_events,
}

fn pod_bytes<T: Copy>(v: &T) -> &[u8] {
    // SAFETY: T is a plain-data KVM struct (no padding read as uninit: the
    // values come from the kernel or Default, fully written).
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
}

fn pod_read<T: Copy + Default>(b: &[u8]) -> T {
    let mut v = T::default();
    let n = std::mem::size_of::<T>().min(b.len());
    // SAFETY: copies at most size_of::<T>() bytes into a plain-data struct
    // for which every bit pattern is valid.
    unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), (&mut v as *mut T).cast::<u8>(), n) };
    v
}

/// Saves a vCPU stopped in userspace. An exit that KVM_RUN still has to
/// complete (the OUT that asked for the snapshot) is completed first with
/// `immediate_exit`, as QEMU does before migrating.
pub fn save_vcpu(kvm: &Kvm, vcpu: &mut VcpuFd) -> Result<VcpuState, String> {
    vcpu.set_kvm_immediate_exit(1);
    let r = match vcpu.run() {
        Err(e) if e.errno() == libc::EINTR => Ok(()),
        Err(e) => Err(format!("KVM_RUN with immediate_exit failed: {e}")),
        Ok(_) => Err("KVM_RUN with immediate_exit entered the guest".to_string()),
    };
    vcpu.set_kvm_immediate_exit(0);
    r?;
    let regs = vcpu.get_regs().map_err(|e| format!("KVM_GET_REGS: {e}"))?;
    let sregs = vcpu.get_sregs().map_err(|e| format!("KVM_GET_SREGS: {e}"))?;
    let fpu = vcpu.get_fpu().map_err(|e| format!("KVM_GET_FPU: {e}"))?;
    let list = kvm.get_msr_index_list().map_err(|e| format!("KVM_GET_MSR_INDEX_LIST: {e}"))?;
    let mut msrs = Vec::new();
    for &index in list.as_slice() {
        let mut m = Msrs::from_entries(&[kvm_msr_entry { index, ..Default::default() }]).map_err(|e| format!("{e:?}"))?;
        if vcpu.get_msrs(&mut m) == Ok(1) {
            msrs.push((index, m.as_slice()[0].data));
        }
    }
    let mut nested = vec![0u8; NESTED_MAX];
    nested[4..8].copy_from_slice(&(NESTED_MAX as u32).to_le_bytes());
    // SAFETY: KVM_GET_NESTED_STATE writes at most `size` (set above) bytes.
    let r = unsafe { libc::ioctl(vcpu.as_raw_fd(), nsvm_core::uapi::kvm::GET_NESTED_STATE as _, nested.as_mut_ptr()) };
    if r < 0 {
        return Err(format!("KVM_GET_NESTED_STATE: {}", std::io::Error::last_os_error()));
    }
    let size = u32::from_le_bytes([nested[4], nested[5], nested[6], nested[7]]) as usize;
    nested.truncate(size.min(NESTED_MAX));
    let events = vcpu.get_vcpu_events().map_err(|e| format!("KVM_GET_VCPU_EVENTS: {e}"))?;
    Ok(VcpuState { regs, sregs, fpu, msrs, nested, events })
}

impl VcpuState {
    /// EFER of the saved special registers.
    pub fn sregs_efer(&self) -> u64 {
        self.sregs.efer
    }
    /// CR0 of the saved special registers.
    pub fn sregs_cr0(&self) -> u64 {
        self.sregs.cr0
    }
}

/// Whether the saved vCPU was running L2 (KVM_STATE_NESTED_GUEST_MODE).
pub fn in_guest_mode(s: &VcpuState) -> bool {
    s.nested.len() >= 2 && u16::from_le_bytes([s.nested[0], s.nested[1]]) & nsvm_core::nested_state::flags::GUEST_MODE != 0
}

/// Loads a saved state into a fresh vCPU (CPUID already set). Order: the
/// special registers and MSRs (the vCPU's current state, which becomes L2's
/// when the nested state is in guest mode), the nested state, then the
/// registers again (now landing in L2's state), as QEMU does.
pub fn load_vcpu(vcpu: &VcpuFd, s: &VcpuState) -> Result<(), String> {
    vcpu.set_sregs(&s.sregs).map_err(|e| format!("KVM_SET_SREGS: {e}"))?;
    for &(index, data) in &s.msrs {
        let m = Msrs::from_entries(&[kvm_msr_entry { index, data, ..Default::default() }]).map_err(|e| format!("{e:?}"))?;
        // MSRs one device has and the other lacks are skipped.
        let _ = vcpu.set_msrs(&m);
    }
    if !s.nested.is_empty() {
        // SAFETY: KVM_SET_NESTED_STATE reads `size` bytes, the buffer's length.
        let r = unsafe { libc::ioctl(vcpu.as_raw_fd(), nsvm_core::uapi::kvm::SET_NESTED_STATE as _, s.nested.as_ptr()) };
        if r < 0 {
            return Err(format!("KVM_SET_NESTED_STATE: {}", std::io::Error::last_os_error()));
        }
    }
    vcpu.set_sregs(&s.sregs).map_err(|e| format!("KVM_SET_SREGS: {e}"))?;
    vcpu.set_regs(&s.regs).map_err(|e| format!("KVM_SET_REGS: {e}"))?;
    vcpu.set_fpu(&s.fpu).map_err(|e| format!("KVM_SET_FPU: {e}"))?;
    // Last: an interrupt queued or an event in delivery for the level that
    // runs now (after the nested state chose it).
    vcpu.set_vcpu_events(&s.events).map_err(|e| format!("KVM_SET_VCPU_EVENTS: {e}"))?;
    Ok(())
}

/// Writes memory and vCPU states to `path`.
pub fn write(path: &str, mem: &crate::run::GuestMemoryMmap, vcpus: &[VcpuState]) -> Result<(), String> {
    use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};
    // One range at guest physical 0 (payloads; --kernel has no snapshots).
    let len = mem.last_addr().0 as usize + 1;
    let mut f = vec![0u8; 24 + len];
    f.reserve(8192 * vcpus.len());
    f[..8].copy_from_slice(MAGIC);
    f[8..16].copy_from_slice(&(len as u64).to_le_bytes());
    f[16..24].copy_from_slice(&(vcpus.len() as u64).to_le_bytes());
    mem.read_slice(&mut f[24..], GuestAddress(0)).map_err(|e| format!("reading guest memory: {e}"))?;
    for v in vcpus {
        f.extend_from_slice(pod_bytes(&v.regs));
        f.extend_from_slice(pod_bytes(&v.sregs));
        f.extend_from_slice(pod_bytes(&v.fpu));
        f.extend_from_slice(&(v.msrs.len() as u32).to_le_bytes());
        for (i, d) in &v.msrs {
            f.extend_from_slice(&i.to_le_bytes());
            f.extend_from_slice(&d.to_le_bytes());
        }
        f.extend_from_slice(&(v.nested.len() as u32).to_le_bytes());
        f.extend_from_slice(&v.nested);
        f.extend_from_slice(pod_bytes(&v.events));
    }
    std::fs::write(path, f).map_err(|e| format!("cannot write {path}: {e}"))
}

/// A snapshot read back: guest memory and vCPU states.
pub struct Snapshot {
    pub mem: Vec<u8>,
    pub vcpus: Vec<VcpuState>,
}

/// Reads a snapshot file, checking its structure.
pub fn read(path: &str) -> Result<Snapshot, String> {
    let f = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<&[u8], String> {
        let s = f.get(at..at + n).ok_or_else(|| format!("{path}: truncated snapshot"))?;
        at += n;
        Ok(s)
    };
    if take(8)? != MAGIC {
        return Err(format!("{path}: not an nsvm snapshot (of this version: {})", String::from_utf8_lossy(MAGIC)));
    }
    let u64_at = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
    let mem_len = u64_at(take(8)?) as usize;
    let n = u64_at(take(8)?) as usize;
    if !mem_len.is_multiple_of(4096) || mem_len > 64 << 30 || n == 0 || n > 64 {
        return Err(format!("{path}: bad header (memory {mem_len} bytes, {n} vCPUs)"));
    }
    let mem = take(mem_len)?.to_vec();
    let mut vcpus = Vec::new();
    for _ in 0..n {
        let regs = pod_read::<kvm_regs>(take(std::mem::size_of::<kvm_regs>())?);
        let sregs = pod_read::<kvm_sregs>(take(std::mem::size_of::<kvm_sregs>())?);
        let fpu = pod_read::<kvm_fpu>(take(std::mem::size_of::<kvm_fpu>())?);
        let nm = u32::from_le_bytes(take(4)?.try_into().unwrap_or([0; 4])) as usize;
        if nm > 4096 {
            return Err(format!("{path}: {nm} MSRs"));
        }
        let mut msrs = Vec::new();
        for _ in 0..nm {
            let i = u32::from_le_bytes(take(4)?.try_into().unwrap_or([0; 4]));
            msrs.push((i, u64_at(take(8)?)));
        }
        let nl = u32::from_le_bytes(take(4)?.try_into().unwrap_or([0; 4])) as usize;
        if nl > NESTED_MAX {
            return Err(format!("{path}: nested state of {nl} bytes"));
        }
        let nested = take(nl)?.to_vec();
        let events = pod_read::<kvm_vcpu_events>(take(std::mem::size_of::<kvm_vcpu_events>())?);
        vcpus.push(VcpuState { regs, sregs, fpu, msrs, nested, events });
    }
    Ok(Snapshot { mem, vcpus })
}
