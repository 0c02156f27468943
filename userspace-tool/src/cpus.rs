// SPDX-License-Identifier: GPL-2.0
//! `nsvm cpus`: per-CPU SVM state read back from the processor (through the
//! msr driver, /dev/cpu/N/msr) next to what the nsvm module reports.

use std::fs;
use std::os::unix::fs::FileExt;

use serde::{Deserialize, Serialize};

use nsvm_core::msr;

use crate::sys;
use crate::cli::CpusArgs;
use crate::Failure;

fn read_msr(cpu: usize, index: u32) -> Option<u64> {
    let f = fs::File::open(format!("/dev/cpu/{cpu}/msr")).ok()?;
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, u64::from(index)).ok()?;
    Some(u64::from_ne_bytes(b))
}

/// Possible CPUs, from sysfs.
fn cpu_list() -> Vec<usize> {
    let mut v: Vec<usize> = fs::read_dir("/sys/devices/system/cpu")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str()?.strip_prefix("cpu")?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort_unstable();
    v
}

fn online(cpu: usize) -> bool {
    match fs::read_to_string(format!("/sys/devices/system/cpu/cpu{cpu}/online")) {
        Ok(s) => s.trim() == "1",
        // CPU 0 often has no 'online' file: it cannot go offline.
        Err(_) => true,
    }
}

/// One CPU of `nsvm cpus --json` (documented in docs/tool.md); null where
/// the MSR could not be read or the device is not nsvm.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub struct CpuJson {
    pub cpu: usize,
    pub online: bool,
    pub efer: Option<u64>,
    pub svme: Option<bool>,
    pub hsave_pa: Option<u64>,
    pub nsvm_enabled: Option<bool>,
}

pub fn run(a: &CpusArgs) -> Result<(), Failure> {
    let info = sys::open_device(&a.device).ok().and_then(|f| sys::host_info(&f).ok());
    let mut rows = Vec::new();
    for cpu in cpu_list() {
        let on = online(cpu);
        let efer = if on { read_msr(cpu, msr::EFER) } else { None };
        let hsave = if on { read_msr(cpu, msr::VM_HSAVE_PA) } else { None };
        let nsvm = info.as_ref().map(|h| h.cpu_enabled(cpu));
        rows.push((cpu, on, efer, hsave, nsvm));
    }
    if rows.is_empty() {
        return Err(Failure("no CPUs found under /sys/devices/system/cpu: is sysfs mounted?".into()));
    }
    if a.json {
        let v: Vec<CpuJson> = rows
            .iter()
            .map(|&(cpu, online, efer, hsave_pa, nsvm_enabled)| CpuJson {
                cpu,
                online,
                efer,
                svme: efer.map(|e| e & msr::efer::SVME != 0),
                hsave_pa,
                nsvm_enabled,
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let fmt_opt = |v: Option<u64>| v.map_or("?".to_string(), |x| format!("{x:#x}"));
    for (c, on, efer, hs, n) in &rows {
        println!(
            "cpu{c} {} svme={} hsave_pa={} nsvm={}",
            if *on { "online" } else { "offline" },
            efer.map_or("?".to_string(), |e| u8::from(e & msr::efer::SVME != 0).to_string()),
            fmt_opt(*hs),
            n.map_or("?".to_string(), |b| u8::from(b).to_string()),
        );
    }
    if rows.iter().any(|r| r.1 && r.2.is_none()) {
        eprintln!("nsvm: some MSRs were unreadable ('?'): load the msr driver (CONFIG_X86_MSR) and run as root");
    }
    Ok(())
}
