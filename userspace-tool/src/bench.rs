// SPDX-License-Identifier: GPL-2.0
//! `nsvm bench`: the cost of one exit of each kind, measured by the guest's
//! own TSC around N operations (tests/guests/bench64.S), on /dev/nsvm or
//! /dev/kvm. Under QEMU `-icount shift=0` the guest TSC counts executed
//! instructions, so the figures repeat exactly and compare the work L0 does
//! per exit. Wall-clock exits per second are reported too, and the L0 exits
//! per iteration (and other per-level counters) from the vCPU's binary
//! statistics read around each row. Rows 6-9 are nested: the guest is an L1
//! hypervisor running an L2 (only when the device offers SVM to guests).
//! Rows 10-13 run in a second VM with the in-kernel local APICs and two
//! vCPUs (tests/guests/benchirq64.S; only when the device has
//! KVM_CAP_SPLIT_IRQCHIP): LAPIC timer, IPI, ioeventfd, irqfd.

use std::time::Instant;

use std::collections::BTreeMap;

use kvm_ioctls::VcpuExit;
use serde::{Deserialize, Serialize};

use std::os::fd::AsRawFd;

use crate::run::{setup_for_bench, Options};
use crate::cli::BenchArgs;
use crate::Failure;

/// Rows of the benchmark, as the guest numbers them (row 0 is the loop overhead).
pub const ROWS: [&str; 14] = [
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
    "LAPIC timer irq + EOI",
    "IPI round trip (2 vCPUs)",
    "ioeventfd write",
    "MSI via irqfd (+ IO exit)",
];
/// The nested rows (1-level rows are compared with SINGLE_LEVEL).
const NESTED: std::ops::RangeInclusive<usize> = 6..=9;
/// The rows of the second VM (tests/guests/benchirq64.S: in-kernel local
/// APICs, two vCPUs), measured only where the device has them.
const IRQ_ROWS: std::ops::RangeInclusive<usize> = 10..=13;
/// The single-level row nested rows are compared with (one CPUID exit).
const SINGLE_LEVEL: usize = 1;
/// Ports of benchirq64.S: the ioeventfd (row 12) and the irqfd request (row 13).
const IOEVENTFD_PORT: u64 = 0x526;
const IRQFD_PORT: u16 = 0x527;
/// The irqfd's GSI and the MSI it routes (APIC id 0, vector 0x42).
const IRQFD_GSI: u32 = 5;
const IRQFD_VECTOR: u32 = 0x42;

/// vCPU statistics whose change per iteration is always reported (nsvm's
/// names and KVM's; those a device does not have are left out). Every other
/// cumulative counter (nsvm's `exit_*` per exit code, KVM's `irq_exits`,
/// `halt_*`, ...) is reported where it changed.
const COUNTERS: [&str; 7] = ["exits", "nested_vmruns", "l2_exits_reflected", "l2_exits_l0", "npt02_fills", "npt_fills", "nested_run"];
/// `KVM_STATS_TYPE_CUMULATIVE` (type bits 3:0 of a descriptor's flags).
const CUMULATIVE: u32 = 0;

/// `nsvm bench --json`: one object, the input of `nsvm bench --compare`
/// (docs/tool.md, docs/bench.md).
#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub struct BenchJson {
    /// The device measured (`/dev/nsvm`, `/dev/kvm`).
    pub device: String,
    /// Operations per row.
    pub iterations: u64,
    /// The tag of this run's measurement windows for `make bench`'s cost
    /// plugin (the process id).
    pub cost_tag: u64,
    /// Rows 1.. in the guest's order (row 0, the loop overhead, is
    /// subtracted from each).
    pub rows: Vec<BenchRowJson>,
}

/// One row of [`BenchJson`].
#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub struct BenchRowJson {
    /// The row's name ([`ROWS`]).
    pub row: String,
    /// Guest TSC per operation, less the loop overhead; null when the
    /// device cannot run the row (no SVM for guests, no in-kernel LAPIC).
    pub tsc_per_exit: Option<f64>,
    /// Operations per second of wall time; null as above.
    pub exits_per_sec: Option<f64>,
    /// Change per operation of the vCPU's statistics: [`COUNTERS`] always,
    /// every other cumulative counter where it changed by 0.005 or more.
    pub per_iteration: BTreeMap<String, f64>,
}

#[derive(Default)]
struct Row {
    cycles: u64,
    wall_ns: u128,
    /// Change of each of COUNTERS between the row's start mark (port 0x524)
    /// and its report (port 0x522).
    counters: Vec<(String, u64)>,
}

/// The current values of COUNTERS, then of every other cumulative counter,
/// on the vCPU's statistics fd.
fn snapshot(f: &std::fs::File) -> Result<Vec<(String, u64)>, Failure> {
    let (_, stats) = crate::stats::read(f).map_err(Failure)?;
    let mut v: Vec<(String, u64)> = COUNTERS.iter().filter_map(|c| stats.iter().find(|s| s.name == *c).map(|s| (c.to_string(), s.values.iter().sum()))).collect();
    v.extend(
        stats
            .iter()
            .filter(|s| s.flags & 0xf == CUMULATIVE && !COUNTERS.contains(&s.name.as_str()))
            .map(|s| (s.name.clone(), s.values.iter().sum())),
    );
    Ok(v)
}

/// The reporting protocol of the bench payloads (benchrow.inc): ports
/// 0x524 (row start mark), 0x522 (row number), 0x520/0x521 (TSC delta).
struct Recorder {
    rows: Vec<Option<Row>>,
    marked: Vec<(String, u64)>,
    last: Instant,
    row: usize,
    lo: u64,
    /// One step per row reported; drawn only on a terminal (stderr).
    progress: indicatif::ProgressBar,
}

impl Recorder {
    /// Handles an OUT of the protocol on the vCPU whose statistics fd is
    /// `stats`; false for any other port.
    fn out(&mut self, port: u16, d: &[u8], stats: &std::fs::File) -> Result<bool, Failure> {
        let word = || u64::from(u32::from_le_bytes(d.try_into().unwrap_or([0; 4])));
        match port {
            0x524 => {
                self.marked = snapshot(stats)?;
                self.last = Instant::now();
            }
            0x522 => {
                self.row = d[0] as usize;
                if let Some(name) = ROWS.get(self.row) {
                    self.progress.set_message(*name);
                }
                self.progress.inc(1);
                let wall_ns = self.last.elapsed().as_nanos();
                let now = snapshot(stats)?;
                let counters = now.iter().map(|(n, v)| (n.clone(), v.saturating_sub(self.marked.iter().find(|m| m.0 == *n).map_or(0, |m| m.1)))).collect();
                if self.row < self.rows.len() {
                    self.rows[self.row] = Some(Row { cycles: 0, wall_ns, counters });
                }
            }
            0x520 => self.lo = word(),
            0x521 => {
                if let Some(Some(r)) = self.rows.get_mut(self.row) {
                    r.cycles = self.lo | (word() << 32);
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// `nsvm bench --help`: what the rows measure.
pub const LONG_ABOUT: &str = "\
Cost per exit (guest TSC) of CPUID, RDMSR, IO to userspace, first-touch NPF
and HLT wake, nested: L2 exit reflected to L1 or handled in L0, nested NPT
fill, nested VMRUN, and with an in-kernel LAPIC: timer, IPI, ioeventfd,
irqfd; L0 exits per iteration. --compare prints the ratios of two runs, with
--cost also the estimated hardware cycles from the counts of `make bench`'s
TCG plugin; --window runs COMMAND inside one measurement window of that
plugin.";

pub fn run(a: &BenchArgs) -> Result<(), Failure> {
    if let Some(row) = a.window {
        return window(row, &a.command);
    }
    if let [x, y] = a.compare.as_slice() {
        return compare_files(x, y, a.cost.as_deref());
    }
    let (iterations, image, device) = (a.iterations, &a.image, &a.dev.device);
    // Row 4 touches N pages from 64 MiB, row 8 N more after them.
    let o = Options::for_bench(image, (64 << 20) + (2 * iterations + 32) * 4096 + (8 << 20));
    let mut g = setup_for_bench(device, &o, iterations)?;
    let stats = crate::stats::stats_fd(std::os::fd::AsRawFd::as_raw_fd(&g.vcpus[0])).map_err(Failure)?;
    let mut rec = Recorder {
        rows: (0..ROWS.len()).map(|_| None).collect(),
        marked: Vec::new(),
        last: Instant::now(),
        row: 0,
        lo: 0,
        progress: progress_bar(ROWS.len() as u64),
    };
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
            VcpuExit::IoOut(0x525, d) => {
                let code = u32::from_le_bytes(d.try_into().unwrap_or([0; 4]));
                return Err(Failure(format!("nested row {}: L2 ended with exit code {code:#x} instead of VMMCALL", rec.row + 1)));
            }
            VcpuExit::IoOut(0x523, _) => {}
            VcpuExit::IoOut(0x501, _) => break,
            VcpuExit::IoOut(p, d) => {
                if !rec.out(p, d, &stats)? {
                    return Err(Failure(format!("unexpected OUT to port {p:#x} during the benchmark")));
                }
            }
            VcpuExit::Hlt => pending_irq = true,
            VcpuExit::IrqWindowOpen => {}
            other => return Err(Failure(format!("unexpected exit during the benchmark: {other:?}"))),
        }
    }
    drop(g);
    if has_split_irqchip(device)? {
        let dir = std::path::Path::new(&image).parent().map_or_else(|| ".".into(), |p| p.display().to_string());
        irq_rows(device, &format!("{dir}/benchirq64.bin"), iterations, &mut rec)?;
    }
    crate::cost::mark_run(tag, true);
    rec.progress.finish_and_clear();
    let doc = report(device, iterations, tag, &rec.rows)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print_text(&doc);
    }
    Ok(())
}

/// A progress bar of `len` steps on stderr, drawn only when stderr is a
/// terminal (indicatif draws nothing otherwise), so logs and pipes stay
/// clean.
fn progress_bar(len: u64) -> indicatif::ProgressBar {
    let p = indicatif::ProgressBar::new(len);
    if let Ok(st) = indicatif::ProgressStyle::with_template("{spinner} bench [{bar:30}] {pos}/{len} rows {wide_msg}") {
        p.set_style(st.progress_chars("=> "));
    }
    p
}

/// The rows as [`BenchJson`]: each row's TSC per operation less row 0's,
/// and its counters per operation less row 0's (what the marks cost).
fn report(device: &str, iterations: u64, tag: u64, rows: &[Option<Row>]) -> Result<BenchJson, Failure> {
    let base = rows[0].as_ref().map_or(0, |r| r.cycles);
    let base_counters = rows[0].as_ref().map(|r| r.counters.clone()).unwrap_or_default();
    let mut out = Vec::new();
    for (i, r) in rows.iter().enumerate().skip(1) {
        let Some(r) = r else {
            if NESTED.contains(&i) || IRQ_ROWS.contains(&i) {
                // The device does not offer SVM to its guests, or has no
                // in-kernel local APIC.
                out.push(BenchRowJson { row: ROWS[i].into(), tsc_per_exit: None, exits_per_sec: None, per_iteration: BTreeMap::new() });
                continue;
            }
            return Err(Failure(format!("row {i} reported nothing")));
        };
        let per_op = r.cycles.saturating_sub(base) as f64 / iterations as f64;
        let per_sec = if r.wall_ns > 0 { iterations as f64 * 1e9 / r.wall_ns as f64 } else { 0.0 };
        // COUNTERS always, the others where they changed.
        let per_iteration = r
            .counters
            .iter()
            .filter_map(|(n, v)| {
                let b = base_counters.iter().find(|m| m.0 == *n).map_or(0, |m| m.1);
                let d = v.saturating_sub(b) as f64 / iterations as f64;
                (COUNTERS.contains(&n.as_str()) || d >= 0.005).then(|| (n.clone(), d))
            })
            .collect();
        out.push(BenchRowJson { row: ROWS[i].into(), tsc_per_exit: Some(per_op), exits_per_sec: Some(per_sec), per_iteration });
    }
    Ok(BenchJson { device: device.into(), iterations, cost_tag: tag, rows: out })
}

/// The text form of a run.
fn print_text(doc: &BenchJson) {
    println!("{:<34} {:>12} {:>14} {:>14}", format!("{} ({} iterations)", doc.device, doc.iterations), "TSC/exit", "L0 exits/it", "exits/s wall");
    for (i, r) in doc.rows.iter().enumerate() {
        let name = &r.row;
        match r.tsc_per_exit {
            Some(t) => println!(
                "{:<34} {:>12.1} {:>14.2} {:>14.0}",
                name,
                t,
                r.per_iteration.get("exits").copied().unwrap_or(f64::NAN),
                r.exits_per_sec.unwrap_or(0.0)
            ),
            None if IRQ_ROWS.contains(&(i + 1)) => println!("{name:<34} {:>12}", "n/a (no in-kernel LAPIC)"),
            None => println!("{name:<34} {:>12}", "n/a (no SVM for guests)"),
        }
    }
    let nested: Vec<String> = doc
        .rows
        .iter()
        .enumerate()
        .filter(|(i, r)| (NESTED.contains(&(i + 1)) || IRQ_ROWS.contains(&(i + 1))) && r.tsc_per_exit.is_some())
        .map(|(_, r)| {
            let c: Vec<String> = r.per_iteration.iter().filter(|(k, _)| *k != "exits").map(|(k, v)| format!("{k}={v:.2}")).collect();
            format!("  {}: {}", r.row, c.join(" "))
        })
        .collect();
    if !nested.is_empty() {
        println!("per iteration of the nested and interrupt rows (counters that changed):\n{}", nested.join("\n"));
    }
}

/// `nsvm bench --window ROW -- COMMAND...`: runs COMMAND inside one
/// measurement window (row ROW) of a run of its own for the cost plugin of
/// `make bench` (counts and profile of everything the CPU executes until
/// COMMAND ends: tests/qemu/benchqemu.sh times QEMU booting Linux this
/// way), and prints the run's tag. The command's exit status is returned.
fn window(row: u64, cmd: &[String]) -> Result<(), Failure> {
    let (prog, args) = cmd.split_first().ok_or_else(|| Failure("--window needs a command after --".into()))?;
    let tag = u64::from(std::process::id());
    println!("NSVM-BENCH-WINDOW tag={tag} row={row}");
    crate::cost::mark_run(tag, false);
    crate::cost::mark_window(row, true);
    let status = std::process::Command::new(prog).args(args).status();
    crate::cost::mark_window(row, false);
    crate::cost::mark_run(tag, true);
    let status = status.map_err(|e| Failure(format!("cannot run {prog}: {e}")))?;
    if !status.success() {
        return Err(Failure(format!("{prog} ended with {status}")));
    }
    Ok(())
}

/// The device offers KVM_CAP_SPLIT_IRQCHIP (in-kernel local APICs).
fn has_split_irqchip(device: &str) -> Result<bool, Failure> {
    let kvm = kvm_ioctls::Kvm::new_with_path(std::ffi::CString::new(device.to_string()).map_err(|_| Failure("bad device path".into()))?)
        .map_err(|e| Failure(format!("cannot open {device}: {e}")))?;
    Ok(kvm.check_extension_raw(u64::from(nsvm_core::uapi::cap::SPLIT_IRQCHIP) as _) > 0)
}

/// An ioctl on `fd` with a pointer to `arg`: its result or the errno.
fn ioctl_ptr<T>(fd: i32, cmd: u32, arg: &T, what: &str) -> Result<(), Failure> {
    // SAFETY: `cmd` is one of the VM ioctls below, each of which reads a
    // struct of exactly size_of::<T>() bytes from the pointer, valid for
    // the duration of the call.
    let r = unsafe { libc::ioctl(fd, cmd as _, arg as *const T) };
    if r < 0 {
        return Err(Failure(format!("{what} failed: {}", std::io::Error::last_os_error())));
    }
    Ok(())
}

/// An eventfd, closed on drop.
struct EventFd(i32);

impl EventFd {
    fn new() -> Result<Self, Failure> {
        // SAFETY: creates a new file descriptor; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(Failure(format!("eventfd failed: {}", std::io::Error::last_os_error())));
        }
        Ok(Self(fd))
    }
    fn signal(&self) -> Result<(), Failure> {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live buffer to our eventfd.
        if unsafe { libc::write(self.0, one.as_ptr().cast(), 8) } != 8 {
            return Err(Failure(format!("eventfd write failed: {}", std::io::Error::last_os_error())));
        }
        Ok(())
    }
}

impl Drop for EventFd {
    fn drop(&mut self) {
        // SAFETY: closes our own descriptor once.
        unsafe { libc::close(self.0) };
    }
}

/// Rows 10-13 (IRQ_ROWS): `image` (benchirq64.bin) in a second VM with the
/// in-kernel local APICs (split irqchip) and two vCPUs; vCPU 1 runs in its
/// own thread until the guest's port 0x501.
fn irq_rows(device: &str, image: &str, iterations: u64, rec: &mut Recorder) -> Result<(), Failure> {
    let o = Options::for_bench_irq(image, 4 << 20, 2);
    let mut g = setup_for_bench(device, &o, iterations)?;
    let vm = g.vm().as_raw_fd();
    let ioevent = EventFd::new()?;
    let irq = EventFd::new()?;
    // struct kvm_ioeventfd: datamatch, addr, len, fd, flags, pad[36].
    let mut ev = [0u8; nsvm_core::ioeventfd::KVM_IOEVENTFD_SIZE];
    ev[8..16].copy_from_slice(&IOEVENTFD_PORT.to_ne_bytes());
    ev[16..20].copy_from_slice(&1u32.to_ne_bytes());
    ev[20..24].copy_from_slice(&ioevent.0.to_ne_bytes());
    ev[24..28].copy_from_slice(&nsvm_core::ioeventfd::flags::PIO.to_ne_bytes());
    ioctl_ptr(vm, nsvm_core::uapi::kvm::IOEVENTFD, &ev, "KVM_IOEVENTFD")?;
    // struct kvm_irq_routing {nr, flags} + one 48-byte entry {gsi, type =
    // KVM_IRQ_ROUTING_MSI (2), flags, pad, msi {address_lo, address_hi, data}}.
    let mut rt = [0u8; 8 + 48];
    rt[0..4].copy_from_slice(&1u32.to_ne_bytes());
    for (at, v) in [(8, IRQFD_GSI), (12, 2), (24, 0xfee0_0000), (28, 0), (32, IRQFD_VECTOR)] {
        rt[at..at + 4].copy_from_slice(&v.to_ne_bytes());
    }
    ioctl_ptr(vm, nsvm_core::uapi::kvm::SET_GSI_ROUTING, &rt, "KVM_SET_GSI_ROUTING")?;
    // struct kvm_irqfd: fd, gsi, flags, resamplefd, pad[16].
    let mut fd = [0u8; 32];
    fd[0..4].copy_from_slice(&irq.0.to_ne_bytes());
    fd[4..8].copy_from_slice(&IRQFD_GSI.to_ne_bytes());
    ioctl_ptr(vm, nsvm_core::uapi::kvm::IRQFD, &fd, "KVM_IRQFD")?;
    let stats = crate::stats::stats_fd(std::os::fd::AsRawFd::as_raw_fd(&g.vcpus[0])).map_err(Failure)?;
    let mut ap = g.vcpus.pop().ok_or_else(|| Failure("no vCPU 1".into()))?;
    // With an in-kernel local APIC an AP waits for INIT/SIPI
    // (KVM_MP_STATE_UNINITIALIZED): it starts at the entry point instead.
    ap.set_mp_state(kvm_bindings::kvm_mp_state { mp_state: kvm_bindings::KVM_MP_STATE_RUNNABLE })
        .map_err(|e| Failure(format!("KVM_SET_MP_STATE(RUNNABLE) on vCPU 1 failed: {e}")))?;
    let ap_thread = std::thread::spawn(move || -> Result<(), String> {
        loop {
            match ap.run() {
                Ok(VcpuExit::IoOut(0x501, _)) => return Ok(()),
                Err(e) if e.errno() == libc::EINTR => {}
                Ok(other) => return Err(format!("vCPU 1: unexpected exit {other:?}")),
                Err(e) => return Err(format!("vCPU 1: KVM_RUN failed: {e}")),
            }
        }
    });
    let r = (|| -> Result<(), Failure> {
        loop {
            match g.vcpus[0].run().map_err(|e| Failure(format!("KVM_RUN failed: {e}")))? {
                VcpuExit::IoOut(IRQFD_PORT, _) => irq.signal()?,
                VcpuExit::IoOut(0x501, _) => return Ok(()),
                VcpuExit::IoOut(p, d) => {
                    if !rec.out(p, d, &stats)? {
                        return Err(Failure(format!("unexpected OUT to port {p:#x} in the interrupt rows")));
                    }
                }
                other => return Err(Failure(format!("unexpected exit in the interrupt rows: {other:?}"))),
            }
        }
    })();
    if let Err(e) = r {
        // vCPU 1 may be halted in the kernel for good: leave it and its
        // memory to the process's exit.
        std::mem::forget(g);
        return Err(e);
    }
    ap_thread.join().map_err(|_| Failure("vCPU 1's thread panicked".into()))?.map_err(Failure)?;
    Ok(())
}

fn compare_files(a: &str, b: &str, cost: Option<&str>) -> Result<(), Failure> {
    let load = |p: &str| -> Result<BenchJson, Failure> {
        let t = std::fs::read_to_string(p).map_err(|e| Failure(format!("cannot read {p}: {e}")))?;
        serde_json::from_str(&t).map_err(|e| Failure(format!("{p} is not nsvm bench --json output: {e}")))
    };
    let (x, y) = (load(a)?, load(b)?);
    let (rx, ry) = (&x.rows, &y.rows);
    // nsvm's (the first file's) own single-level exit, for the nested rows.
    let single = rx.iter().find(|r| r.row == ROWS[SINGLE_LEVEL]).and_then(|r| r.tsc_per_exit);
    let (dx, dy) = (dev(&x), dev(&y));
    // The hardware-weighted estimate per iteration of each row (row i + 1),
    // for each file, when the cost plugin's output is given.
    let windows = match cost {
        Some(p) => Some(crate::cost::parse(&std::fs::read_to_string(p).map_err(|e| Failure(format!("cannot read {p}: {e}")))?).map_err(Failure)?),
        None => None,
    };
    let est = |v: &BenchJson, i: usize| -> Result<Option<crate::cost::PerIteration>, Failure> {
        let Some(w) = windows.as_ref() else { return Ok(None) };
        crate::cost::per_iteration(w, v.cost_tag, i as u64 + 1, v.iterations).map_err(Failure)
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
        let (c1, c2) = (r1.tsc_per_exit, r2.tsc_per_exit);
        let ratio = match (c1, c2) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
        // Rows are numbered from 1 in the files (row 0 is subtracted).
        let nested = NESTED.contains(&(i + 1));
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
                    breakdown.push(format!("  {:<32} {:<5} instr/it {:>9.1}  est.cyc/it {:>9.1}  {}", r1.row, d, e.instructions, e.cycles, cls.join(" ")));
                }
            }
            format!(" {} {} {}", f(k1, 11, 1), f(k2, 11, 1), f(kr, 9, 2))
        } else {
            String::new()
        };
        println!(
            "{:<32} {} {} {} {}{} {} {} {} {}",
            r1.row,
            f(c1, 11, 1),
            f(c2, 11, 1),
            f(ratio, 7, 2),
            to_single,
            est_cols,
            f(r1.per_iteration.get("exits").copied(), 10, 2),
            f(r2.per_iteration.get("exits").copied(), 10, 2),
            f(r1.exits_per_sec, 11, 0),
            f(r2.exits_per_sec, 11, 0)
        );
    }
    println!("ratio = {dx} / {dy} (goal <= 1.0); /1-level = {dx} nested row / {dx} {} (goal <= 2.5); ex/it = L0 exits per iteration", ROWS[SINGLE_LEVEL]);
    if windows.is_some() {
        println!("est.cyc = estimated hardware cycles per iteration (Zen 3/4 weights, docs/bench.md); est.ratio = {dx} / {dy} (goal <= 1.0)");
        println!("per iteration, from the cost plugin (instr/it should equal the TSC column; classes other than base):\n{}", breakdown.join("\n"));
    }
    Ok(())
}

fn dev(v: &BenchJson) -> String {
    v.device.trim_start_matches("/dev/").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cycles: u64, exits: u64) -> Option<Row> {
        Some(Row { cycles, wall_ns: 1_000_000, counters: vec![("exits".into(), exits), ("exit_0x72".into(), exits / 2), ("other".into(), 0)] })
    }

    /// The report subtracts row 0 (the loop overhead and what the marks
    /// cost), keeps COUNTERS always and other counters where they changed,
    /// marks rows the device cannot run as null, and its JSON (the schema
    /// of docs/tool.md) parses back the same for `--compare`.
    #[test]
    fn report_and_json_schema() {
        let mut rows: Vec<Option<Row>> = (0..ROWS.len()).map(|_| None).collect();
        rows[0] = row(1000, 10);
        for r in rows.iter_mut().take(6).skip(1) {
            *r = row(101_000, 1010);
        }
        let Ok(doc) = report("/dev/nsvm", 100, 42, &rows) else { panic!("report failed") };
        assert_eq!(doc.rows.len(), ROWS.len() - 1);
        assert_eq!(doc.rows[0].row, "CPUID exit");
        assert_eq!(doc.rows[0].tsc_per_exit, Some(1000.0));
        assert_eq!(doc.rows[0].exits_per_sec, Some(100_000.0));
        assert_eq!(doc.rows[0].per_iteration.get("exits"), Some(&10.0));
        assert_eq!(doc.rows[0].per_iteration.get("exit_0x72"), Some(&5.0));
        assert_eq!(doc.rows[0].per_iteration.get("other"), None);
        // Rows 6.. (nested, interrupts) not run: null.
        assert!(doc.rows[5..].iter().all(|r| r.tsc_per_exit.is_none() && r.per_iteration.is_empty()));
        let text = serde_json::to_string_pretty(&doc).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["device"], "/dev/nsvm");
        assert_eq!(v["iterations"], 100);
        assert_eq!(v["cost_tag"], 42);
        assert_eq!(v["rows"][0]["row"], "CPUID exit");
        assert_eq!(v["rows"][0]["per_iteration"]["exits"], 10.0);
        assert!(v["rows"][6]["tsc_per_exit"].is_null());
        assert_eq!(serde_json::from_str::<BenchJson>(&text).unwrap(), doc);
        // A single-level row that reported nothing is an error.
        rows[2] = None;
        assert!(report("/dev/nsvm", 100, 42, &rows).is_err());
    }
}
