// SPDX-License-Identifier: GPL-2.0
//! `nsvm bench`: the cost of one exit of each kind, measured by the guest's
//! own TSC around N operations (tests/guests/bench64.S), on /dev/nsvm or
//! /dev/kvm. Under QEMU `-icount shift=0` the guest TSC counts executed
//! instructions, so the figures repeat exactly and compare the work L0 does
//! per exit. Wall-clock exits per second are reported too.

use std::time::Instant;

use kvm_ioctls::VcpuExit;
use serde_json::json;

use crate::run::{setup_for_bench, Options};
use crate::{Args, Failure};

/// Rows of the benchmark, as the guest numbers them (row 0 is the loop overhead).
pub const ROWS: [&str; 6] = ["loop overhead", "CPUID exit", "RDMSR exit", "IO exit to userspace", "first-touch NPF", "HLT wake by injected interrupt"];

const KVM_INTERRUPT: u64 = 0x4004_ae86;

struct Row {
    cycles: u64,
    wall_ns: u128,
}

pub fn run(a: &Args) -> Result<(), Failure> {
    let mut iterations = 1000u64;
    let mut image = "/guests/bench64.bin".to_string();
    let mut compare: Vec<String> = Vec::new();
    let mut it = a.rest.iter();
    while let Some(s) = it.next() {
        match s.as_str() {
            "--iterations" => iterations = it.next().and_then(|v| v.parse().ok()).ok_or_else(|| Failure("--iterations needs a number".into()))?,
            "--image" => image = it.next().cloned().ok_or_else(|| Failure("--image needs a path".into()))?,
            "--compare" => {
                compare.push(it.next().cloned().ok_or_else(|| Failure("--compare needs two JSON files".into()))?);
                compare.push(it.next().cloned().ok_or_else(|| Failure("--compare needs two JSON files".into()))?);
            }
            x => return Err(Failure(format!("unknown option {x}; see 'nsvm help'"))),
        }
    }
    if !compare.is_empty() {
        return compare_files(&compare[0], &compare[1]);
    }
    if iterations == 0 || iterations > 100_000 {
        return Err(Failure("--iterations must be between 1 and 100000".into()));
    }
    let o = Options::for_bench(&image, (64 << 20) + (iterations + 16) * 4096 + (8 << 20));
    let mut g = setup_for_bench(&a.device, &o, iterations)?;
    let mut rows: Vec<Option<Row>> = (0..ROWS.len()).map(|_| None).collect();
    let (mut row, mut lo) = (0usize, 0u64);
    let mut last = Instant::now();
    let mut pending_irq = false;
    loop {
        {
            let run = g.vcpus[0].get_kvm_run();
            if pending_irq && run.ready_for_interrupt_injection != 0 {
                let irq: u32 = 0x20;
                // SAFETY: KVM_INTERRUPT reads a u32.
                let r = unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&g.vcpus[0]), KVM_INTERRUPT as _, &irq) };
                if r < 0 {
                    return Err(Failure(format!("KVM_INTERRUPT failed: {}", std::io::Error::last_os_error())));
                }
                pending_irq = false;
            }
            g.vcpus[0].get_kvm_run().request_interrupt_window = u8::from(pending_irq);
        }
        let exit = g.vcpus[0].run().map_err(|e| Failure(format!("KVM_RUN failed: {e}")))?;
        match exit {
            VcpuExit::IoOut(0x522, d) => {
                row = d[0] as usize;
                let now = Instant::now();
                if let Some(Some(r)) = rows.get_mut(row).map(|r| r.as_mut()) {
                    r.wall_ns = now.duration_since(last).as_nanos();
                } else if row < rows.len() {
                    rows[row] = Some(Row { cycles: 0, wall_ns: now.duration_since(last).as_nanos() });
                }
                last = now;
            }
            VcpuExit::IoOut(0x520, d) => lo = u64::from(u32::from_le_bytes(d.try_into().unwrap_or([0; 4]))),
            VcpuExit::IoOut(0x521, d) => {
                let hi = u64::from(u32::from_le_bytes(d.try_into().unwrap_or([0; 4])));
                if let Some(Some(r)) = rows.get_mut(row) {
                    r.cycles = lo | (hi << 32);
                }
            }
            VcpuExit::IoOut(0x523, _) => {}
            VcpuExit::IoOut(0x501, _) => break,
            VcpuExit::Hlt => pending_irq = true,
            VcpuExit::IrqWindowOpen => {}
            other => return Err(Failure(format!("unexpected exit during the benchmark: {other:?}"))),
        }
    }
    let base = rows[0].as_ref().map_or(0, |r| r.cycles);
    let mut out = Vec::new();
    for (i, r) in rows.iter().enumerate().skip(1) {
        let Some(r) = r else { return Err(Failure(format!("row {i} reported nothing"))) };
        let per_op = r.cycles.saturating_sub(base) as f64 / iterations as f64;
        let per_sec = if r.wall_ns > 0 { iterations as f64 * 1e9 / r.wall_ns as f64 } else { 0.0 };
        out.push(json!({"row": ROWS[i], "tsc_per_exit": per_op, "exits_per_sec": per_sec}));
    }
    let doc = json!({"device": a.device, "iterations": iterations, "rows": out});
    if a.json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!("{:<34} {:>14} {:>14}", format!("{} ({} iterations)", a.device, iterations), "TSC/exit", "exits/s wall");
        for r in doc["rows"].as_array().unwrap() {
            println!("{:<34} {:>14.1} {:>14.0}", r["row"].as_str().unwrap(), r["tsc_per_exit"].as_f64().unwrap(), r["exits_per_sec"].as_f64().unwrap());
        }
    }
    Ok(())
}

fn compare_files(a: &str, b: &str) -> Result<(), Failure> {
    let load = |p: &str| -> Result<serde_json::Value, Failure> {
        let t = std::fs::read_to_string(p).map_err(|e| Failure(format!("cannot read {p}: {e}")))?;
        serde_json::from_str(&t).map_err(|e| Failure(format!("{p} is not nsvm bench --json output: {e}")))
    };
    let (x, y) = (load(a)?, load(b)?);
    println!("{:<32} {:>14} {:>14} {:>9} {:>12} {:>12}", "row", format!("{} TSC", dev(&x)), format!("{} TSC", dev(&y)), "ratio", "exits/s", "exits/s");
    let (rx, ry) = (x["rows"].as_array().cloned().unwrap_or_default(), y["rows"].as_array().cloned().unwrap_or_default());
    for (r1, r2) in rx.iter().zip(ry.iter()) {
        let (c1, c2) = (r1["tsc_per_exit"].as_f64().unwrap_or(0.0), r2["tsc_per_exit"].as_f64().unwrap_or(0.0));
        let ratio = if c2 > 0.0 { c1 / c2 } else { f64::NAN };
        println!(
            "{:<32} {:>14.1} {:>14.1} {:>9.2} {:>12.0} {:>12.0}",
            r1["row"].as_str().unwrap_or("?"),
            c1,
            c2,
            ratio,
            r1["exits_per_sec"].as_f64().unwrap_or(0.0),
            r2["exits_per_sec"].as_f64().unwrap_or(0.0)
        );
    }
    Ok(())
}

fn dev(v: &serde_json::Value) -> String {
    v["device"].as_str().unwrap_or("?").trim_start_matches("/dev/").to_string()
}
