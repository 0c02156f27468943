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

/// Writes memory and vCPU states to `path`, streamed (memory in 1 MiB
/// pieces, with a progress bar on a terminal).
/// Guest memory is one range at guest physical 0 (payloads; `--kernel`
/// has no snapshots).
pub fn write(path: &str, mem: &crate::run::GuestMemoryMmap, vcpus: &[VcpuState]) -> Result<(), String> {
    use std::io::Write;
    use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};
    let len = mem.last_addr().0 as usize + 1;
    let file = std::fs::File::create(path).map_err(|e| format!("cannot write {path}: {e}"))?;
    let mut f = std::io::BufWriter::new(file);
    let err = |e: std::io::Error| format!("cannot write {path}: {e}");
    f.write_all(MAGIC).map_err(err)?;
    f.write_all(&(len as u64).to_le_bytes()).map_err(err)?;
    f.write_all(&(vcpus.len() as u64).to_le_bytes()).map_err(err)?;
    let bar = progress("saving", len as u64);
    let mut buf = vec![0u8; 1 << 20];
    for at in (0..len).step_by(1 << 20) {
        let chunk = &mut buf[..(len - at).min(1 << 20)];
        mem.read_slice(chunk, GuestAddress(at as u64)).map_err(|e| format!("reading guest memory: {e}"))?;
        f.write_all(chunk).map_err(err)?;
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    for v in vcpus {
        let mut b = Vec::with_capacity(8192);
        b.extend_from_slice(pod_bytes(&v.regs));
        b.extend_from_slice(pod_bytes(&v.sregs));
        b.extend_from_slice(pod_bytes(&v.fpu));
        b.extend_from_slice(&(v.msrs.len() as u32).to_le_bytes());
        for (i, d) in &v.msrs {
            b.extend_from_slice(&i.to_le_bytes());
            b.extend_from_slice(&d.to_le_bytes());
        }
        b.extend_from_slice(&(v.nested.len() as u32).to_le_bytes());
        b.extend_from_slice(&v.nested);
        b.extend_from_slice(pod_bytes(&v.events));
        f.write_all(&b).map_err(err)?;
    }
    f.flush().map_err(err)
}

/// A byte-count progress bar on stderr for guest memory of `len` bytes,
/// drawn only on a terminal and only for 64 MiB or more (indicatif draws
/// nothing when stderr is not a terminal).
fn progress(what: &str, len: u64) -> indicatif::ProgressBar {
    if len < 64 << 20 {
        return indicatif::ProgressBar::hidden();
    }
    let p = indicatif::ProgressBar::new(len);
    if let Ok(st) = indicatif::ProgressStyle::with_template("{msg} guest memory [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}") {
        p.set_style(st.progress_chars("=> "));
    }
    p.set_message(what.to_string());
    p
}

/// A snapshot read back: guest memory and vCPU states.
pub struct Snapshot {
    pub mem: Vec<u8>,
    pub vcpus: Vec<VcpuState>,
}

/// Reads a snapshot file, checking its structure (memory streamed in 1 MiB
/// pieces, with a progress bar on a terminal).
pub fn read(path: &str) -> Result<Snapshot, String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let short = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            format!("{path}: truncated snapshot")
        } else {
            format!("cannot read {path}: {e}")
        }
    };
    let mut head = [0u8; 24];
    file.read_exact(&mut head).map_err(short)?;
    if &head[..8] != MAGIC {
        return Err(format!("{path}: not an nsvm snapshot (of this version: {})", String::from_utf8_lossy(MAGIC)));
    }
    let u64_at = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
    let mem_len = u64_at(&head[8..16]) as usize;
    let n = u64_at(&head[16..24]) as usize;
    if !mem_len.is_multiple_of(4096) || mem_len > 64 << 30 || n == 0 || n > 64 {
        return Err(format!("{path}: bad header (memory {mem_len} bytes, {n} vCPUs)"));
    }
    // The memory is allocated only when the file holds it.
    let file_len = file.metadata().map_err(|e| format!("cannot read {path}: {e}"))?.len();
    if file_len < 24 + mem_len as u64 {
        return Err(format!("{path}: truncated snapshot"));
    }
    let mut mem = vec![0u8; mem_len];
    let bar = progress("loading", mem_len as u64);
    for chunk in mem.chunks_mut(1 << 20) {
        file.read_exact(chunk).map_err(short)?;
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let mut f = Vec::new();
    file.read_to_end(&mut f).map_err(short)?;
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<&[u8], String> {
        let s = f.get(at..at + n).ok_or_else(|| format!("{path}: truncated snapshot"))?;
        at += n;
        Ok(s)
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn vcpu(rip: u64) -> VcpuState {
        VcpuState {
            regs: kvm_regs { rip, ..Default::default() },
            sregs: kvm_sregs::default(),
            fpu: kvm_fpu::default(),
            msrs: vec![(0xc000_0080, 0x1500), (0x10, 42)],
            nested: vec![7; 300],
            events: kvm_vcpu_events::default(),
        }
    }

    /// A snapshot written in pieces reads back the same, memory and vCPUs;
    /// a file cut anywhere, or one whose header claims more memory than the
    /// file holds, is refused as truncated (no allocation of the claim).
    #[test]
    fn write_read_round_trip_and_truncation() {
        let dir = std::env::temp_dir().join(format!("nsvm-snap-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.snap");
        let path = p.to_str().unwrap();
        let mem: Vec<u8> = (0..(3 << 20) + 4096).map(|i| (i * 7 % 251) as u8).collect();
        let gm = crate::run::GuestMemoryMmap::from_ranges(&[(vm_memory::GuestAddress(0), mem.len())]).unwrap();
        vm_memory::Bytes::write_slice(&gm, &mem, vm_memory::GuestAddress(0)).unwrap();
        write(path, &gm, &[vcpu(0x1000), vcpu(0x2000)]).unwrap();
        let s = read(path).unwrap();
        assert_eq!(s.mem, mem);
        assert_eq!(s.vcpus.len(), 2);
        assert_eq!(s.vcpus[1].regs.rip, 0x2000);
        assert_eq!(s.vcpus[0].msrs, vec![(0xc000_0080, 0x1500), (0x10, 42)]);
        assert_eq!(s.vcpus[0].nested, vec![7; 300]);
        let full = std::fs::read(&p).unwrap();
        for cut in [10, 24, 24 + 4096, full.len() - 1] {
            std::fs::write(&p, &full[..cut]).unwrap();
            let e = read(path).err().unwrap();
            assert!(e.ends_with("truncated snapshot"), "cut at {cut}: {e}");
        }
        let mut huge = full[..24].to_vec();
        huge[8..16].copy_from_slice(&(32u64 << 30).to_le_bytes());
        std::fs::write(&p, &huge).unwrap();
        assert!(read(path).err().unwrap().ends_with("truncated snapshot"));
        std::fs::write(&p, b"NOTASNAPSHOT-AT-ALL-XXXXXXXX").unwrap();
        assert!(read(path).err().unwrap().contains("not an nsvm snapshot"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
