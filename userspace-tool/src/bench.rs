// SPDX-License-Identifier: GPL-2.0
//! `nsvm bench`: the cost of one exit of each kind, measured by the guest's
//! own TSC around N operations (tests/guests/bench64.S), on /dev/nsvm or
//! /dev/kvm. Under QEMU `-icount shift=0` the guest TSC counts executed
//! instructions, so the figures repeat exactly and compare the work L0 does
//! per exit. Wall-clock exits per second are reported too, and the L0 exits
//! per iteration (and other per-level counters) from the vCPU's binary
//! statistics read around each row. Rows 6-9 are nested: the guest is an L1
//! hypervisor running an L2 (only when the device offers SVM to guests).

use std::time::Instant;

use kvm_ioctls::VcpuExit;
use serde_json::json;

use crate::run::{setup_for_bench, Options};
use crate::{Args, Failure};

/// Rows of the benchmark, as the guest numbers them (row 0 is the loop overhead).
pub const ROWS: [&str; 10] = [
    "loop overhead",
    "CPUID exit",
    "RDMSR exit",
    "IO exit to userspace",
    "first-touch NPF",
    "HLT wake by injected interrupt",
    "L2 exit reflected to L1",
    "L2 exit handled in L0",
    "nested NPT fill",
    "nested VMRUN alone",
];
/// The first nested row; the rows before it are single-level.
const FIRST_NESTED: usize = 6;
/// The single-level row nested rows are compared with (one CPUID exit).
const SINGLE_LEVEL: usize = 1;

/// vCPU statistics whose change per iteration is reported (nsvm's names and
/// KVM's; those a device does not have are left out).
const COUNTERS: [&str; 7] = ["exits", "nested_vmruns", "l2_exits_reflected", "l2_exits_l0", "npt02_fills", "npt_fills", "nested_run"];

#[derive(Default)]
struct Row {
    cycles: u64,
    wall_ns: u128,
    /// Change of each of COUNTERS between the row's start mark (port 0x524)
    /// and its report (port 0x522).
    counters: Vec<(&'static str, u64)>,
}

/// The current values of COUNTERS on the vCPU's statistics fd.
fn snapshot(f: &std::fs::File) -> Result<Vec<(&'static str, u64)>, Failure> {
    let (_, stats) = crate::stats::read(f).map_err(Failure)?;
    Ok(COUNTERS.iter().filter_map(|c| stats.iter().find(|s| s.name == *c).map(|s| (*c, s.values.iter().sum()))).collect())
}

pub fn run(a: &Args) -> Result<(), Failure> {
    let mut iterations = 1000u64;
    let mut image = "/guests/bench64.bin".to_string();
    let mut compare: Vec<String> = Vec::new();
    let mut cost: Option<String> = None;
    let mut it = a.rest.iter();
    while let Some(s) = it.next() {
        match s.as_str() {
            "--iterations" => iterations = it.next().and_then(|v| v.parse().ok()).ok_or_else(|| Failure("--iterations needs a number".into()))?,
            "--image" => image = it.next().cloned().ok_or_else(|| Failure("--image needs a path".into()))?,
            "--compare" => {
                compare.push(it.next().cloned().ok_or_else(|| Failure("--compare needs two JSON files".into()))?);
                compare.push(it.next().cloned().ok_or_else(|| Failure("--compare needs two JSON files".into()))?);
            }
            "--cost" => cost = Some(it.next().cloned().ok_or_else(|| Failure("--cost needs the file of the cost plugin".into()))?),
            x => return Err(Failure(format!("unknown option {x}; see 'nsvm help'"))),
        }
    }
    if !compare.is_empty() {
        return compare_files(&compare[0], &compare[1], cost.as_deref());
    }
    if cost.is_some() {
        return Err(Failure("--cost goes with --compare".into()));
    }
    if iterations == 0 || iterations > 100_000 {
        return Err(Failure("--iterations must be between 1 and 100000".into()));
    }
    // Row 4 touches N pages from 64 MiB, row 8 N more after them.
    let o = Options::for_bench(&image, (64 << 20) + (2 * iterations + 32) * 4096 + (8 << 20));
    let mut g = setup_for_bench(&a.device, &o, iterations)?;
    let stats = crate::stats::stats_fd(std::os::fd::AsRawFd::as_raw_fd(&g.vcpus[0])).map_err(Failure)?;
    let mut marked: Vec<(&'static str, u64)> = Vec::new();
    let mut rows: Vec<Option<Row>> = (0..ROWS.len()).map(|_| None).collect();
    let (mut row, mut lo) = (0usize, 0u64);
    let mut last = Instant::now();
    let mut pending_irq = false;
    // The cost plugin of `make bench` attributes the guest's measurement
    // windows to this run by this tag (the JSON output carries it).
    let tag = u64::from(std::process::id());
    crate::cost::mark_run(tag, false);
    loop {
        {
            let run = g.vcpus[0].get_kvm_run();
            if pending_irq && run.ready_for_interrupt_injection != 0 {
                crate::run::inject_interrupt(&g.vcpus[0], 0x20).map_err(|e| Failure(format!("KVM_INTERRUPT failed: {e}")))?;
                pending_irq = false;
            }
            g.vcpus[0].get_kvm_run().request_interrupt_window = u8::from(pending_irq);
        }
        let exit = g.vcpus[0].run().map_err(|e| Failure(format!("KVM_RUN failed: {e}")))?;
        match exit {
            VcpuExit::IoOut(0x524, _) => {
                marked = snapshot(&stats)?;
                last = Instant::now();
            }
            VcpuExit::IoOut(0x522, d) => {
                row = d[0] as usize;
                let wall_ns = last.elapsed().as_nanos();
                let now = snapshot(&stats)?;
                let counters = now.iter().map(|(n, v)| (*n, v - marked.iter().find(|m| m.0 == *n).map_or(0, |m| m.1))).collect();
                if row < rows.len() {
                    rows[row] = Some(Row { cycles: 0, wall_ns, counters });
                }
            }
            VcpuExit::IoOut(0x525, d) => {
                let code = u32::from_le_bytes(d.try_into().unwrap_or([0; 4]));
                return Err(Failure(format!("nested row {}: L2 ended with exit code {code:#x} instead of VMMCALL", row + 1)));
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
    crate::cost::mark_run(tag, true);
    let base = rows[0].as_ref().map_or(0, |r| r.cycles);
    let base_counters = rows[0].as_ref().map(|r| r.counters.clone()).unwrap_or_default();
    let mut out = Vec::new();
    for (i, r) in rows.iter().enumerate().skip(1) {
        let Some(r) = r else {
            if i >= FIRST_NESTED {
                // The device does not offer SVM to its guests.
                out.push(json!({"row": ROWS[i], "tsc_per_exit": null, "exits_per_sec": null, "per_iteration": {}}));
                continue;
            }
            return Err(Failure(format!("row {i} reported nothing")));
        };
        let per_op = r.cycles.saturating_sub(base) as f64 / iterations as f64;
        let per_sec = if r.wall_ns > 0 { iterations as f64 * 1e9 / r.wall_ns as f64 } else { 0.0 };
        // Counters per iteration, less what the marks themselves cost (row 0).
        let per_it: serde_json::Map<String, serde_json::Value> = r
            .counters
            .iter()
            .map(|(n, v)| {
                let b = base_counters.iter().find(|m| m.0 == *n).map_or(0, |m| m.1);
                (n.to_string(), json!(v.saturating_sub(b) as f64 / iterations as f64))
            })
            .collect();
        out.push(json!({"row": ROWS[i], "tsc_per_exit": per_op, "exits_per_sec": per_sec, "per_iteration": per_it}));
    }
    let doc = json!({"device": a.device, "iterations": iterations, "cost_tag": tag, "rows": out});
    if a.json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!("{:<34} {:>12} {:>14} {:>14}", format!("{} ({} iterations)", a.device, iterations), "TSC/exit", "L0 exits/it", "exits/s wall");
        for r in doc["rows"].as_array().unwrap() {
            let name = r["row"].as_str().unwrap();
            match r["tsc_per_exit"].as_f64() {
                Some(t) => println!("{:<34} {:>12.1} {:>14.2} {:>14.0}", name, t, r["per_iteration"]["exits"].as_f64().unwrap_or(f64::NAN), r["exits_per_sec"].as_f64().unwrap_or(0.0)),
                None => println!("{name:<34} {:>12}", "n/a (no SVM for guests)"),
            }
        }
        let nested: Vec<String> = doc["rows"]
            .as_array()
            .unwrap()
            .iter()
            .skip(FIRST_NESTED - 1)
            .filter(|r| r["tsc_per_exit"].is_number())
            .map(|r| {
                let c: Vec<String> = r["per_iteration"].as_object().unwrap().iter().filter(|(k, _)| *k != "exits").map(|(k, v)| format!("{k}={:.2}", v.as_f64().unwrap_or(0.0))).collect();
                format!("  {}: {}", r["row"].as_str().unwrap(), c.join(" "))
            })
            .collect();
        if !nested.is_empty() {
            println!("per iteration of the nested rows:\n{}", nested.join("\n"));
        }
    }
    Ok(())
}

fn compare_files(a: &str, b: &str, cost: Option<&str>) -> Result<(), Failure> {
    let load = |p: &str| -> Result<serde_json::Value, Failure> {
        let t = std::fs::read_to_string(p).map_err(|e| Failure(format!("cannot read {p}: {e}")))?;
        serde_json::from_str(&t).map_err(|e| Failure(format!("{p} is not nsvm bench --json output: {e}")))
    };
    let (x, y) = (load(a)?, load(b)?);
    let (rx, ry) = (x["rows"].as_array().cloned().unwrap_or_default(), y["rows"].as_array().cloned().unwrap_or_default());
    // nsvm's (the first file's) own single-level exit, for the nested rows.
    let single = rx.iter().find(|r| r["row"] == ROWS[SINGLE_LEVEL]).and_then(|r| r["tsc_per_exit"].as_f64());
    let (dx, dy) = (dev(&x), dev(&y));
    // The hardware-weighted estimate per iteration of each row (row i + 1),
    // for each file, when the cost plugin's output is given.
    let windows = match cost {
        Some(p) => Some(crate::cost::parse(&std::fs::read_to_string(p).map_err(|e| Failure(format!("cannot read {p}: {e}")))?).map_err(Failure)?),
        None => None,
    };
    let est = |v: &serde_json::Value, i: usize| -> Result<Option<crate::cost::PerIteration>, Failure> {
        let (Some(w), Some(tag), Some(n)) = (windows.as_ref(), v["cost_tag"].as_u64(), v["iterations"].as_u64()) else { return Ok(None) };
        crate::cost::per_iteration(w, tag, i as u64 + 1, n).map_err(Failure)
    };
    let est_head = if windows.is_some() { format!(" {:>11} {:>11} {:>9}", format!("{dx} est.cyc"), format!("{dy} est.cyc"), "est.ratio") } else { String::new() };
    println!(
        "{:<32} {:>11} {:>11} {:>7} {:>9}{} {:>10} {:>10} {:>11} {:>11}",
        "row",
        format!("{dx} TSC"),
        format!("{dy} TSC"),
        "ratio",
        "/1-level",
        est_head,
        format!("{dx} ex/it"),
        format!("{dy} ex/it"),
        format!("{dx} ex/s"),
        format!("{dy} ex/s")
    );
    let mut breakdown = Vec::new();
    let f = |v: Option<f64>, w: usize, p: usize| v.map_or(format!("{:>w$}", "n/a"), |v| format!("{v:>w$.p$}"));
    for (i, (r1, r2)) in rx.iter().zip(ry.iter()).enumerate() {
        let (c1, c2) = (r1["tsc_per_exit"].as_f64(), r2["tsc_per_exit"].as_f64());
        let ratio = match (c1, c2) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
        // Rows are numbered from 1 in the files (row 0 is subtracted).
        let nested = i + 1 >= FIRST_NESTED;
        let to_single = match (c1, single) {
            (Some(a), Some(s)) if nested && s > 0.0 => format!("{:>9.2}", a / s),
            _ => format!("{:>9}", "-"),
        };
        let est_cols = if windows.is_some() {
            let (e1, e2) = (est(&x, i)?, est(&y, i)?);
            let (k1, k2) = (e1.as_ref().map(|e| e.cycles), e2.as_ref().map(|e| e.cycles));
            let kr = match (k1, k2) {
                (Some(a), Some(b)) if b > 0.0 && c1.is_some() && c2.is_some() => Some(a / b),
                _ => None,
            };
            for (d, e) in [(&dx, &e1), (&dy, &e2)] {
                if let Some(e) = e {
                    let cls: Vec<String> = e.classes.iter().filter(|(c, v)| *c != "base" && v.abs() >= 0.005).map(|(c, v)| format!("{c}={v:.2}")).collect();
                    breakdown.push(format!("  {:<32} {:<5} instr/it {:>9.1}  est.cyc/it {:>9.1}  {}", r1["row"].as_str().unwrap_or("?"), d, e.instructions, e.cycles, cls.join(" ")));
                }
            }
            format!(" {} {} {}", f(k1, 11, 1), f(k2, 11, 1), f(kr, 9, 2))
        } else {
            String::new()
        };
        println!(
            "{:<32} {} {} {} {}{} {} {} {} {}",
            r1["row"].as_str().unwrap_or("?"),
            f(c1, 11, 1),
            f(c2, 11, 1),
            f(ratio, 7, 2),
            to_single,
            est_cols,
            f(r1["per_iteration"]["exits"].as_f64(), 10, 2),
            f(r2["per_iteration"]["exits"].as_f64(), 10, 2),
            f(r1["exits_per_sec"].as_f64(), 11, 0),
            f(r2["exits_per_sec"].as_f64(), 11, 0)
        );
    }
    println!("ratio = {dx} / {dy} (goal <= 1.0); /1-level = {dx} nested row / {dx} {} (goal <= 2.5); ex/it = L0 exits per iteration", ROWS[SINGLE_LEVEL]);
    if windows.is_some() {
        println!("est.cyc = estimated hardware cycles per iteration (Zen 3/4 weights, docs/bench.md); est.ratio = {dx} / {dy} (goal <= 1.0)");
        println!("per iteration, from the cost plugin (instr/it should equal the TSC column; classes other than base):\n{}", breakdown.join("\n"));
    }
    Ok(())
}

fn dev(v: &serde_json::Value) -> String {
    v["device"].as_str().unwrap_or("?").trim_start_matches("/dev/").to_string()
}
