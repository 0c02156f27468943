// SPDX-License-Identifier: GPL-2.0
//! `nsvm trace`: nsvm's tracepoints (trace system `nsvm`, listed in
//! docs/architecture.md "Tracepoints") printed live. The events are enabled
//! in a tracefs instance of their own (`instances/nsvm-trace-<our pid>`: the
//! global buffer and whatever else traces are left alone), limited to the
//! threads of `--pid` (the instance's `set_event_pid` with `event-fork`, so
//! threads created later count too), read from the instance's `trace_pipe` until Ctrl-C,
//! `--count` events or `--duration` seconds, then disabled and the instance
//! removed. `--system kvm` traces kvm_amd's events of the same shapes
//! (kvm_exit, kvm_nested_vmenter, ...) for comparison.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cli::TraceArgs;
use crate::Failure;

/// `nsvm trace --help`.
pub const LONG_ABOUT: &str = "Print nsvm's tracepoints live (trace system 'nsvm': nsvm_entry, nsvm_exit, \
nsvm_nested_vmenter, nsvm_nested_vmexit, nsvm_nested_vmexit_inject, nsvm_nested_vmenter_failed, \
nsvm_inj_virq, nsvm_inj_exception, nsvm_npt02_fill, nsvm_npt02_flush; KVM's field names).\n\n\
The events are enabled in a tracefs instance of their own, filtered on the threads of --pid, \
and disabled again on exit (Ctrl-C, --count, --duration, or the process exiting). \
Needs root and tracefs (/sys/kernel/tracing). The same events work with trace-cmd and perf: \
'trace-cmd record -e nsvm', 'perf record -e nsvm:nsvm_exit'.";

/// kvm's events with the shapes of nsvm's (`--system kvm`).
pub const KVM_EVENTS: &[&str] = &[
    "kvm_entry",
    "kvm_exit",
    "kvm_nested_vmenter",
    "kvm_nested_vmexit",
    "kvm_nested_vmexit_inject",
    "kvm_nested_vmenter_failed",
    "kvm_inj_virq",
    "kvm_inj_exception",
];

/// One event as `trace_pipe` prints it (`nsvm trace --json`: one object per
/// line; schema in docs/tool.md).
#[derive(Serialize, Debug, PartialEq)]
pub struct TraceLine {
    /// Seconds (the trace clock, `local` by default).
    pub time: f64,
    /// The thread's name (comm), `<...>` when tracefs did not record it.
    pub task: String,
    /// The thread's id (`common_pid`).
    pub pid: u32,
    /// The CPU it ran on.
    pub cpu: u32,
    /// Event name, e.g. `nsvm_nested_vmexit`.
    pub event: String,
    /// The event's text (its TP_printk format).
    pub text: String,
}

/// Parses one `trace_pipe` line, e.g.
/// `  nsvm-123  [001] ..... 12.345678: nsvm_exit: vcpu 0 reason cpuid ...`;
/// None for anything else.
pub fn parse_line(line: &str) -> Option<TraceLine> {
    let lb = line.find(" [")?;
    let (task_pid, rest) = (line[..lb].trim(), &line[lb + 2..]);
    let dash = task_pid.rfind('-')?;
    let (task, pid) = (&task_pid[..dash], task_pid[dash + 1..].parse().ok()?);
    let rb = rest.find(']')?;
    let cpu = rest[..rb].trim().parse().ok()?;
    let mut words = rest[rb + 1..].trim_start().splitn(2, ' ');
    // Optional flags column (irqs-off, need-resched, ...), then "TIME:".
    let (mut first, mut rest) = (words.next()?, words.next()?.trim_start());
    if !first.ends_with(':') {
        let mut w = rest.splitn(2, ' ');
        first = w.next()?;
        rest = w.next()?.trim_start();
    }
    let time = first.strip_suffix(':')?.parse().ok()?;
    let (event, text) = rest.split_once(": ").unwrap_or((rest.trim_end_matches(':'), ""));
    Some(TraceLine { time, task: task.to_string(), pid, cpu, event: event.to_string(), text: text.trim_end().to_string() })
}

/// The readable form: time, thread id, event, text.
pub fn format_line(l: &TraceLine) -> String {
    format!("{:>14.6} {:>7} {:<26} {}", l.time, l.pid, l.event, l.text)
}

/// What `set_event_pid` gets for these threads.
pub fn pid_list(tids: &[u32]) -> String {
    tids.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(" ")
}

/// The threads of process `pid`, sorted.
fn threads(pid: i32) -> Option<Vec<u32>> {
    let mut v: Vec<u32> = fs::read_dir(format!("/proc/{pid}/task")).ok()?.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect();
    v.sort_unstable();
    Some(v)
}

/// The tracefs mount point.
fn tracefs() -> Result<PathBuf, Failure> {
    for p in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
        if Path::new(p).join("instances").is_dir() {
            return Ok(PathBuf::from(p));
        }
    }
    Err(Failure("tracefs is not mounted: mount it with 'mount -t tracefs nodev /sys/kernel/tracing' (the kernel needs CONFIG_FTRACE and CONFIG_ENABLE_DEFAULT_TRACERS)".into()))
}

fn write(p: &Path, s: &str) -> Result<(), Failure> {
    fs::write(p, s).map_err(|e| Failure(format!("cannot write '{}' to {}: {e}; run as root", s.trim_end(), p.display())))
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// The tracefs instance: events off and the instance removed on drop.
struct Instance {
    dir: PathBuf,
    /// Event directories enabled (system or single events).
    enabled: Vec<PathBuf>,
}

impl Drop for Instance {
    fn drop(&mut self) {
        for e in &self.enabled {
            let _ = fs::write(e.join("enable"), "0");
        }
        let _ = fs::remove_dir(&self.dir);
    }
}

/// `nsvm trace [--pid PID] [--system nsvm|kvm] [--count N] [--duration S] [--json]`.
pub fn run(a: &TraceArgs) -> Result<(), Failure> {
    let root = tracefs()?;
    let system = a.system.as_str();
    let sysdir = root.join("events").join(system);
    if !sysdir.is_dir() {
        return Err(Failure(match system {
            "nsvm" => format!("{} does not exist: load nsvm.ko (built against a kernel with CONFIG_TRACEPOINTS)", sysdir.display()),
            _ => format!("{} does not exist: load kvm_amd (kernel with CONFIG_TRACEPOINTS)", sysdir.display()),
        }));
    }
    let mut tids = match a.pid {
        Some(p) => Some(threads(p).ok_or_else(|| Failure(format!("no process {p}: is the PID right?")))?),
        None => None,
    };
    let dir = root.join("instances").join(format!("nsvm-trace-{}", std::process::id()));
    fs::create_dir(&dir).map_err(|e| Failure(format!("cannot create the tracefs instance {}: {e}; run as root", dir.display())))?;
    let mut inst = Instance { dir, enabled: Vec::new() };
    let isys = inst.dir.join("events").join(system);
    let targets: Vec<PathBuf> = match system {
        "nsvm" => vec![isys.clone()],
        _ => KVM_EVENTS.iter().map(|e| isys.join(e)).filter(|p| p.is_dir()).collect(),
    };
    // The instance records only the events of the threads in its
    // set_event_pid, to which event-fork adds the threads they create
    // (vCPU threads started after the tracer).
    let set_filter = |tids: &[u32]| write(&inst.dir.join("set_event_pid"), &pid_list(tids));
    if let Some(t) = &tids {
        write(&inst.dir.join("options/event-fork"), "1")?;
        set_filter(t)?;
    }
    for t in &targets {
        write(&t.join("enable"), "1")?;
        inst.enabled.push(t.clone());
    }
    // SAFETY: installs an async-signal-safe handler (one atomic store).
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let pipe = fs::File::open(inst.dir.join("trace_pipe")).map_err(|e| Failure(format!("cannot open trace_pipe: {e}")))?;
    let fd = pipe.as_raw_fd();
    let mut rd = BufReader::new(pipe);
    let start = Instant::now();
    let mut last_scan = Instant::now();
    let (mut n, mut gone) = (0u64, false);
    let out = std::io::stdout();
    let mut out = out.lock();
    let mut line = String::new();
    loop {
        if STOP.load(Ordering::Relaxed) || a.count.is_some_and(|c| n >= c) {
            break;
        }
        if a.duration.is_some_and(|d| start.elapsed() >= Duration::from_secs_f64(d)) {
            break;
        }
        // New threads of the process (vCPUs created later) join the filter;
        // once it has exited, what is left in the buffer is printed.
        if let (Some(p), true) = (a.pid, last_scan.elapsed() >= Duration::from_millis(500)) {
            last_scan = Instant::now();
            match threads(p) {
                Some(t) if Some(&t) != tids.as_ref() => {
                    set_filter(&t)?;
                    tids = Some(t);
                }
                Some(_) => {}
                None => gone = true,
            }
        }
        let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd for the duration of the call.
        let r = if rd.buffer().is_empty() { unsafe { libc::poll(&mut pfd, 1, 200) } } else { 1 };
        if r <= 0 {
            if gone {
                break;
            }
            continue;
        }
        line.clear();
        match rd.read_line(&mut line) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Failure(format!("reading trace_pipe: {e}"))),
        }
        let Some(l) = parse_line(&line) else { continue };
        n += 1;
        let s = if a.json { serde_json::to_string(&l)? } else { format_line(&l) };
        if writeln!(out, "{s}").and_then(|_| out.flush()).is_err() {
            break;
        }
    }
    // The instance can only be removed once its trace_pipe is closed.
    drop(rd);
    drop(inst);
    if gone {
        eprintln!("nsvm: process {} exited", a.pid.unwrap_or(0));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_trace_pipe_lines() {
        let l = parse_line("        nsvm-123     [001] .....    12.345678: nsvm_exit: vcpu 0 reason cpuid rip 0x100204 info1 0x0000000000000000\n").unwrap();
        assert_eq!(
            l,
            TraceLine { time: 12.345678, task: "nsvm".into(), pid: 123, cpu: 1, event: "nsvm_exit".into(), text: "vcpu 0 reason cpuid rip 0x100204 info1 0x0000000000000000".into() }
        );
        // A task name with dashes, no flags column, an event without text.
        let l = parse_line("  qemu-system-x86-77 [000] 5.000001: nsvm_npt02_flush: reason vmrun pages 8").unwrap();
        assert_eq!((l.task.as_str(), l.pid, l.cpu, l.event.as_str(), l.text.as_str()), ("qemu-system-x86", 77, 0, "nsvm_npt02_flush", "reason vmrun pages 8"));
        let l = parse_line("<...>-9 [003] d..1. 1.5: nsvm_nested_vmexit_inject: reason: npf ext_inf1: 0x1").unwrap();
        assert_eq!((l.task.as_str(), l.pid, l.event.as_str()), ("<...>", 9, "nsvm_nested_vmexit_inject"));
        assert_eq!(parse_line(""), None);
        assert_eq!(parse_line("CPU:1 [LOST 12 EVENTS]"), None);
    }

    #[test]
    fn readable_and_json_forms() {
        let l = TraceLine { time: 1.5, task: "x".into(), pid: 42, cpu: 0, event: "nsvm_nested_vmenter".into(), text: "rip: 0x1".into() };
        assert_eq!(format_line(&l), "      1.500000      42 nsvm_nested_vmenter        rip: 0x1");
        let j: serde_json::Value = serde_json::from_str(&serde_json::to_string(&l).unwrap()).unwrap();
        assert_eq!(j["event"], "nsvm_nested_vmenter");
        assert_eq!(j["pid"], 42);
        assert_eq!(j["time"], 1.5);
    }

    #[test]
    fn pid_list_of_threads() {
        assert_eq!(pid_list(&[5]), "5");
        assert_eq!(pid_list(&[5, 7]), "5 7");
    }
}
