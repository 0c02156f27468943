// SPDX-License-Identifier: GPL-2.0
//! `nsvm`: the command-line tool of the nsvm hypervisor.
//!
//! Subcommands (see `nsvm help`): `info` (what the host and the device
//! offer), `cpus` (per-CPU SVM state read back from the MSRs), `ioctl` (issue
//! one raw ioctl and print the result; for tests and experiments).

mod bench;
mod cost;
mod cpus;
mod info;
mod run;
mod snapshot;
mod stats;
mod sys;

use std::process::ExitCode;

const USAGE: &str = "\
usage: nsvm <command> [options]

commands:
  info  [--device PATH] [--json]   API version, capabilities, host SVM revision,
                                   ASIDs and features, which devices exist
  cpus  [--json]                   per-CPU EFER.SVME and VM_HSAVE_PA (needs
                                   /dev/cpu/N/msr) and nsvm's own view
  ioctl [--device PATH] CMD [ARG] [--out SIZE | --bad-ptr]
                                   issue one ioctl on the system fd; prints
                                   'ok RET' or 'err ERRNO-NAME'
  run   [--device PATH] [--mem SIZE] [--vcpus N] [--load ADDR] [--mode real|protected|long]
        [--dump-regs] [--max-exits N] [--quiet] [--irq-on-hlt VEC[:N]] [--trace-mmio]
        [--stats FILE] [--policy LIST] [--no-thp] [--pin-vcpus] [--snapshot FILE]
        [--irqchip split] IMAGE
  run   [--device PATH] --restore FILE [same options]
                                   run a flat binary (loaded at --load, default
                                   0x1000, real mode) or an ELF64 image (long
                                   mode); COM1 output goes to stdout, an OUT to
                                   port 0x501 ends the run with that exit status,
                                   an OUT of v to port 0x511 raises interrupt v
                                   (injected when the guest can take it), an OUT
                                   to port 0x513 raises an NMI (KVM_NMI); with
                                   --irq-on-hlt each HLT is woken by interrupt VEC;
                                   memory outside RAM is MMIO scratch space
                                   (reads return what was written, else 0xff);
                                   --policy (nsvm only) intercepts and emulates
                                   sidt,sgdt,sldt,str,cr0,pushf,popf,cpuid,rdtsc,
                                   exc:N, all-insns, all-exc or all; with
                                   --vcpus N every vCPU starts at the entry with
                                   RDI = its index and RSI = N; guest memory asks
                                   for transparent huge pages unless --no-thp;
                                   --pin-vcpus pins vCPU n's thread to CPU n;
                                   with --snapshot an OUT to port 0x502 saves
                                   the VM (memory, registers, MSRs, nested
                                   state: also while L2 runs) to FILE and ends
                                   the run; --restore FILE continues such a
                                   snapshot in a new VM (nsvm or kvm_amd);
                                   --irqchip split enables KVM_CAP_SPLIT_IRQCHIP
                                   (in-kernel local APICs, x2APIC and the
                                   TSC-deadline timer in the CPUID; HLT then
                                   waits in the kernel)
  stats --pid PID [--all] [--json] [--interval S --count N]
                                   binary statistics (KVM_GET_STATS_FD) of the
                                   VMs and vCPUs of a running VMM, nsvm or kvm
                                   (non-zero ones unless --all)
  bench [--device PATH] [--iterations N] [--image PATH] [--json]
        | --compare A.json B.json [--cost FILE]
        | --window ROW -- COMMAND [ARGS...]
                                   cost per exit (guest TSC) of CPUID, RDMSR, IO
                                   to userspace, first-touch NPF and HLT wake,
                                   nested: L2 exit reflected to L1 or handled
                                   in L0, nested NPT fill, nested VMRUN, and
                                   with an in-kernel LAPIC: timer, IPI,
                                   ioeventfd, irqfd; L0 exits per iteration;
                                   --compare prints the ratios of two runs,
                                   with --cost also the estimated hardware
                                   cycles from the counts of `make bench`'s
                                   TCG plugin; --window runs COMMAND inside
                                   one measurement window of that plugin
  dump  --pid PID                  vmcb01 of each vCPU of a VMM's nsvm VMs
                                   (debugfs; readable while the vCPU is
                                   stopped in userspace)
  help                             this text

--device defaults to /dev/nsvm; /dev/kvm works too (kvm_amd), for comparison.";

/// A failure to report: a sentence that says what went wrong and what to do.
pub struct Failure(pub String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(e.to_string())
    }
}

/// Options shared by the subcommands.
pub struct Args {
    pub device: String,
    pub json: bool,
    pub rest: Vec<String>,
}

fn parse(args: &[String]) -> Result<Args, Failure> {
    let mut a = Args { device: sys::DEFAULT_DEVICE.to_string(), json: false, rest: Vec::new() };
    let mut it = args.iter();
    while let Some(s) = it.next() {
        match s.as_str() {
            "--json" => a.json = true,
            "--device" => {
                a.device = it
                    .next()
                    .ok_or_else(|| Failure("--device needs a path, e.g. --device /dev/kvm".into()))?
                    .clone()
            }
            _ => a.rest.push(s.clone()),
        }
    }
    Ok(a)
}

/// `nsvm dump --pid PID`: the debugfs vmcb dumps of a process's VMs.
fn dump(a: &Args) -> Result<(), Failure> {
    let pid = match a.rest.as_slice() {
        [flag, p] if flag == "--pid" => p.parse::<u32>().map_err(|_| Failure(format!("'{p}' is not a PID")))?,
        _ => return Err(Failure("dump needs --pid PID".into())),
    };
    let base = "/sys/kernel/debug/nsvm";
    let dirs = stats::debugfs_vm_dirs(base, pid).map_err(|e| Failure(format!("cannot read {base}: {e}; mount debugfs and load nsvm")))?;
    if dirs.is_empty() {
        return Err(Failure(format!("process {pid} has no nsvm VM")));
    }
    for d in dirs {
        let mut files: Vec<_> = std::fs::read_dir(&d).map_err(|e| Failure(e.to_string()))?.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        files.sort();
        for f in files {
            println!("== {}", f.display());
            print!("{}", std::fs::read_to_string(&f).map_err(|e| Failure(format!("{}: {e}", f.display())))?);
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = argv.first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let result = parse(&argv[1..]).and_then(|a| match cmd.as_str() {
        "info" => info::run(&a),
        "cpus" => cpus::run(&a),
        "ioctl" => sys::run_ioctl(&a),
        "run" => run::run(&a),
        "stats" => stats::run(&a),
        "bench" => bench::run(&a),
        "dump" => dump(&a),
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(())
        }
        other => Err(Failure(format!(
            "unknown command '{other}'; run 'nsvm help' for the list of commands"
        ))),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(msg)) => {
            eprintln!("nsvm: {msg}");
            ExitCode::from(1)
        }
    }
}
