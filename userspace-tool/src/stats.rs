// SPDX-License-Identifier: GPL-2.0
//! Binary statistics (`KVM_GET_STATS_FD`, KVM's format) for nsvm and kvm_amd:
//! reading a stats fd, and `nsvm stats --pid PID`, which borrows the VM and
//! vCPU fds of a running VMM (pidfd_getfd) the way kvm_stat reads KVM's.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::cli::StatsArgs;
use crate::Failure;

/// One sample of `nsvm stats --json` (documented in docs/tool.md): the VM
/// and each vCPU ("vm", "vcpu0", ...; for kvm_amd read from debugfs also
/// its other directories), by name.
pub type StatsJson = BTreeMap<String, StatsGroupJson>;

/// The statistics of one VM or vCPU.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub struct StatsGroupJson {
    /// The stats file's id ("kvm-PID", "kvm-PID/vcpu-N", as KVM's).
    pub id: String,
    pub stats: BTreeMap<String, StatJson>,
}

/// One statistic: its value (a histogram's is the sum of its buckets).
#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub struct StatJson {
    pub value: u64,
    /// "cumulative", "instant", "peak" or "histogram"; absent for kvm_amd's
    /// debugfs files, which do not say.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// The JSON of one stats file.
pub fn group_json(id: &str, stats: &[Stat]) -> StatsGroupJson {
    // Type 0 is cumulative, 1 instant, 2 peak; the rest are histograms.
    let stats = stats
        .iter()
        .map(|s| {
            let ty = ["cumulative", "instant", "peak"].get((s.flags & 0xf) as usize).copied().unwrap_or("histogram");
            (s.name.clone(), StatJson { value: s.values.iter().sum(), kind: Some(ty.to_string()) })
        })
        .collect();
    StatsGroupJson { id: id.to_string(), stats }
}

/// One statistic.
pub struct Stat {
    pub name: String,
    pub flags: u32,
    pub values: Vec<u64>,
}

/// Opens the stats fd of a VM or vCPU fd.
pub fn stats_fd(obj: RawFd) -> Result<File, String> {
    // SAFETY: KVM_GET_STATS_FD takes no argument and returns a new fd.
    let fd = unsafe { libc::ioctl(obj, nsvm_core::uapi::kvm::GET_STATS_FD as _, 0) };
    if fd < 0 {
        return Err(format!("KVM_GET_STATS_FD failed: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: the kernel just returned this fd to us.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Reads a whole stats file: (id, statistics).
pub fn read(f: &File) -> Result<(String, Vec<Stat>), String> {
    let mut h = [0u8; 24];
    f.read_exact_at(&mut h, 0).map_err(|e| format!("reading the stats header: {e}"))?;
    let w = |o: usize| u32::from_ne_bytes(h[o..o + 4].try_into().unwrap()) as u64;
    let (name_size, n, id_off, desc_off, data_off) = (w(4), w(8), w(12), w(16), w(20));
    if name_size == 0 || name_size > 256 || n > 4096 {
        return Err("stats header is not sane".into());
    }
    let mut id = vec![0u8; name_size as usize];
    f.read_exact_at(&mut id, id_off).map_err(|e| e.to_string())?;
    let cstr = |b: &[u8]| String::from_utf8_lossy(&b[..b.iter().position(|c| *c == 0).unwrap_or(b.len())]).into_owned();
    let dsize = 16 + name_size;
    let mut descs = vec![0u8; (dsize * n) as usize];
    f.read_exact_at(&mut descs, desc_off).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for i in 0..n as usize {
        let d = &descs[i * dsize as usize..(i + 1) * dsize as usize];
        let flags = u32::from_ne_bytes(d[0..4].try_into().unwrap());
        let size = u16::from_ne_bytes(d[6..8].try_into().unwrap()) as usize;
        let offset = u32::from_ne_bytes(d[8..12].try_into().unwrap()) as u64;
        let mut vals = vec![0u8; 8 * size];
        f.read_exact_at(&mut vals, data_off + offset).map_err(|e| e.to_string())?;
        let values = vals.chunks(8).map(|c| u64::from_ne_bytes(c.try_into().unwrap())).collect();
        out.push(Stat { name: cstr(&d[16..]), flags, values });
    }
    Ok((cstr(&id), out))
}

/// "name value" lines (histograms as the sum of their buckets), prefixed.
pub fn lines(prefix: &str, stats: &[Stat], nonzero_only: bool) -> Vec<String> {
    stats
        .iter()
        .filter(|s| !nonzero_only || s.values.iter().any(|v| *v != 0))
        .map(|s| format!("{prefix}{} {}", s.name, s.values.iter().sum::<u64>()))
        .collect()
}

/// The VM and vCPU fds of process `pid`, borrowed through pidfd_getfd.
fn borrow_fds(pid: i32) -> Result<Vec<(String, OwnedFd)>, Failure> {
    // SAFETY: pidfd_open(pid, 0); the result is checked.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    if pidfd < 0 {
        return Err(Failure(format!("cannot open process {pid}: {}; is the PID right?", std::io::Error::last_os_error())));
    }
    // SAFETY: pidfd_open returned a new fd.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    let mut out = Vec::new();
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd")).map_err(|e| Failure(format!("cannot list /proc/{pid}/fd: {e}")))?;
    let mut entries: Vec<(u32, String)> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let n: u32 = e.file_name().to_str()?.parse().ok()?;
            let l = std::fs::read_link(e.path()).ok()?.to_string_lossy().into_owned();
            Some((n, l))
        })
        .collect();
    entries.sort();
    for (n, link) in entries {
        let kind = match link.as_str() {
            "anon_inode:nsvm-vm" | "anon_inode:kvm-vm" => "vm".to_string(),
            l if l.starts_with("anon_inode:nsvm-vcpu") && !l.contains("stats") => format!("vcpu{}", out.iter().filter(|(k, _): &&(String, OwnedFd)| k.starts_with("vcpu")).count()),
            l if l.starts_with("anon_inode:kvm-vcpu:") => format!("vcpu{}", &l["anon_inode:kvm-vcpu:".len()..]),
            _ => continue,
        };
        // SAFETY: pidfd_getfd(pidfd, n, 0); the result is checked.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), n, 0) } as i32;
        if fd < 0 {
            return Err(Failure(format!("cannot borrow fd {n} of process {pid}: {}; run as root", std::io::Error::last_os_error())));
        }
        // SAFETY: a new fd of ours.
        out.push((kind, unsafe { OwnedFd::from_raw_fd(fd) }));
    }
    if out.is_empty() {
        return Err(Failure(format!("process {pid} has no nsvm or kvm VM open")));
    }
    Ok(out)
}

/// `nsvm stats --pid PID [--all] [--json] [--interval SEC --count N]`.
pub fn run(a: &StatsArgs) -> Result<(), Failure> {
    let (pid, all, interval) = (a.pid, a.all, a.interval);
    let count = if a.once { 1 } else { a.count };
    let fds = borrow_fds(pid)?;
    // kvm_amd refuses KVM_GET_STATS_FD from another process (EIO); its
    // statistics are then read from debugfs (/sys/kernel/debug/kvm/PID-FD).
    if let Some((_, fd)) = fds.first() {
        if stats_fd(fd.as_raw_fd()).is_err() {
            return kvm_debugfs(pid, a.json, all);
        }
    }
    for round in 0..count.max(1) {
        if round > 0 {
            std::thread::sleep(std::time::Duration::from_secs(interval));
        }
        let mut j = StatsJson::new();
        for (kind, fd) in &fds {
            let f = stats_fd(fd.as_raw_fd()).map_err(Failure)?;
            let (id, stats) = read(&f).map_err(Failure)?;
            if a.json {
                j.insert(kind.clone(), group_json(&id, &stats));
            } else {
                println!("{kind} ({id}):");
                for l in lines("  ", &stats, !all) {
                    println!("{l}");
                }
            }
        }
        if a.json {
            println!("{}", serde_json::to_string_pretty(&j)?);
        }
    }
    Ok(())
}

/// The per-VM debugfs directories of process `pid` under `base` (KVM and
/// nsvm both name them `<pid>-<id>`), sorted.
pub(crate) fn debugfs_vm_dirs(base: &str, pid: impl std::fmt::Display) -> std::io::Result<Vec<std::path::PathBuf>> {
    let prefix = format!("{pid}-");
    let mut dirs: Vec<_> = std::fs::read_dir(base)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// kvm_amd's statistics of process `pid` from debugfs.
fn kvm_debugfs(pid: i32, json_out: bool, all: bool) -> Result<(), Failure> {
    let base = "/sys/kernel/debug/kvm";
    let dirs = debugfs_vm_dirs(base, pid)
        .map_err(|e| Failure(format!("kvm_amd refuses KVM_GET_STATS_FD from another process and {base} is unreadable ({e}): mount debugfs")))?;
    if dirs.is_empty() {
        return Err(Failure(format!("no kvm debugfs directory for process {pid} under {base}")));
    }
    let read_dir_stats = |d: &std::path::Path| -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = std::fs::read_dir(d)
            .map(|r| {
                r.filter_map(|e| e.ok())
                    .filter(|e| e.path().is_file())
                    .filter_map(|e| {
                        let val = std::fs::read_to_string(e.path()).ok()?.trim().parse().ok()?;
                        Some((e.file_name().to_string_lossy().into_owned(), val))
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let mut j = StatsJson::new();
    for d in dirs {
        let name = d.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mut groups = vec![("vm".to_string(), d.clone())];
        if let Ok(r) = std::fs::read_dir(&d) {
            let mut v: Vec<_> = r.filter_map(|e| e.ok()).filter(|e| e.path().is_dir()).map(|e| (e.file_name().to_string_lossy().into_owned(), e.path())).collect();
            v.sort();
            groups.extend(v);
        }
        for (kind, path) in groups {
            let st = read_dir_stats(&path);
            if json_out {
                let stats = st.iter().map(|(k, v)| (k.clone(), StatJson { value: *v, kind: None })).collect();
                j.insert(kind.clone(), StatsGroupJson { id: format!("kvm-{name}"), stats });
            } else {
                println!("{kind} (kvm-{name}, debugfs):");
                for (k, v) in st.iter().filter(|(_, v)| all || *v != 0) {
                    println!("  {k} {v}");
                }
            }
        }
    }
    if json_out {
        println!("{}", serde_json::to_string_pretty(&j)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON of `nsvm stats` round-trips through its schema, with the
    /// layout the suites grep for (tests/qemu/l0.sh: "npt_fills").
    #[test]
    fn json_schema() {
        let s = [
            Stat { name: "exits".into(), flags: 0, values: vec![7] },
            Stat { name: "npt_fills".into(), flags: 1, values: vec![1] },
            Stat { name: "halt_poll_hist".into(), flags: 3, values: vec![1, 2, 3] },
        ];
        let mut j = StatsJson::new();
        j.insert("vm".into(), group_json("nsvm-42", &s[..1]));
        j.insert("vcpu0".into(), group_json("nsvm-42/vcpu-0", &s));
        j.insert("vcpu1".into(), StatsGroupJson { id: "kvm-42-9".into(), stats: [("exits".to_string(), StatJson { value: 3, kind: None })].into() });
        let text = serde_json::to_string_pretty(&j).unwrap();
        assert!(text.lines().any(|l| l.trim() == "\"npt_fills\": {"), "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["vcpu0"]["id"], "nsvm-42/vcpu-0");
        assert_eq!(v["vcpu0"]["stats"]["npt_fills"]["type"], "instant");
        assert_eq!(v["vcpu0"]["stats"]["halt_poll_hist"]["value"], 6);
        assert_eq!(v["vcpu0"]["stats"]["halt_poll_hist"]["type"], "histogram");
        assert!(v["vcpu1"]["stats"]["exits"].get("type").is_none());
        assert_eq!(serde_json::from_str::<StatsJson>(&text).unwrap(), j);
    }
}
