// SPDX-License-Identifier: GPL-2.0
//! The command line of `nsvm` (clap, derive): subcommands, their options and
//! the help texts of `nsvm help` / `nsvm <command> --help`. Parsing errors
//! (unknown options, missing or malformed values) are clap's: a sentence,
//! the usage line, typo suggestions, exit status 2.

use clap::{Args, Parser, Subcommand};

use crate::sys::DEFAULT_DEVICE;

/// The command line.
#[derive(Parser, Debug)]
#[command(
    name = "nsvm",
    version,
    about = "Tool of the nsvm hypervisor (/dev/nsvm): host and device info, a small VMM, statistics, benchmarks",
    arg_required_else_help = true,
    after_help = "--device defaults to /dev/nsvm; /dev/kvm works too (kvm_amd), for comparison.\n\
                  'nsvm <command> --help' explains each option of a command."
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// API version, capabilities, host SVM revision, ASIDs and features,
    /// which devices exist
    Info(InfoArgs),
    /// Per-CPU EFER.SVME and VM_HSAVE_PA (needs /dev/cpu/N/msr) and nsvm's
    /// own view
    Cpus(CpusArgs),
    /// Issue one ioctl on the system fd; prints 'ok RET' or 'err ERRNO-NAME'
    Ioctl(IoctlArgs),
    /// Run a flat binary or an ELF64 image (or continue a snapshot) in a VM
    #[command(long_about = crate::run::LONG_ABOUT, override_usage = "nsvm run [OPTIONS] IMAGE\n       nsvm run [OPTIONS] --restore FILE\n       nsvm run [OPTIONS] --kernel FILE [--initrd FILE] [--cmdline TEXT]")]
    Run(crate::run::RunArgs),
    /// Binary statistics (KVM_GET_STATS_FD) of the VMs and vCPUs of a
    /// running VMM, nsvm or kvm
    Stats(StatsArgs),
    /// Cost per exit (guest TSC) of CPUID, RDMSR, IO to userspace, NPF, HLT
    /// wake, nested and interrupt paths; or compare two runs
    #[command(
        long_about = crate::bench::LONG_ABOUT,
        override_usage = "nsvm bench [--device PATH] [--iterations N] [--image PATH] [--json]\n       \
                          nsvm bench --compare A.json B.json [--cost FILE]\n       \
                          nsvm bench --window ROW -- COMMAND [ARGS...]"
    )]
    Bench(BenchArgs),
    /// vmcb01 of each vCPU of a VMM's nsvm VMs (debugfs; readable while the
    /// vCPU is stopped in userspace)
    Dump(DumpArgs),
    /// nsvm's tracepoints (exits, nested VMRUN and #VMEXIT, injections,
    /// NPT02) printed live from tracefs, for one VMM or all
    #[command(long_about = crate::trace::LONG_ABOUT)]
    Trace(TraceArgs),
    /// Print a shell completion script (e.g. `nsvm completions bash >
    /// /etc/bash_completion.d/nsvm`)
    Completions {
        /// The shell to complete for
        shell: clap_complete::Shell,
    },
}

/// `--device PATH`.
#[derive(Args, Debug, Clone)]
pub struct Device {
    /// The device to use: /dev/nsvm, or /dev/kvm (kvm_amd) for comparison
    #[arg(long, value_name = "PATH", default_value = DEFAULT_DEVICE)]
    pub device: String,
}

/// `nsvm info`.
#[derive(Args, Debug)]
pub struct InfoArgs {
    #[command(flatten)]
    pub dev: Device,
    /// Print one JSON object (schema: docs/tool.md) instead of text
    #[arg(long)]
    pub json: bool,
}

/// `nsvm cpus`.
#[derive(Args, Debug)]
pub struct CpusArgs {
    /// The device asked for nsvm's view (the nsvm=0/1 column)
    #[arg(long, value_name = "PATH", default_value = DEFAULT_DEVICE)]
    pub device: String,
    /// Print a JSON array, one object per CPU (schema: docs/tool.md)
    #[arg(long)]
    pub json: bool,
}

/// `nsvm ioctl`.
#[derive(Args, Debug)]
pub struct IoctlArgs {
    #[command(flatten)]
    pub dev: Device,
    /// The ioctl command number (decimal or 0x-prefixed hex), e.g. 0xae00
    #[arg(value_name = "CMD", value_parser = crate::sys::parse_cmd)]
    pub cmd: u32,
    /// The ioctl's argument (default 0)
    #[arg(value_name = "ARG", value_parser = crate::sys::parse_num)]
    pub arg: Option<u64>,
    /// Pass a zeroed buffer of SIZE bytes and print what the ioctl wrote
    /// ('ok RET data XX XX ...')
    #[arg(long, value_name = "SIZE", value_parser = crate::sys::parse_num, conflicts_with_all = ["arg", "bad_ptr"])]
    pub out: Option<u64>,
    /// Pass a kernel address as the argument (never a valid user pointer)
    #[arg(long, conflicts_with = "arg")]
    pub bad_ptr: bool,
}

/// `nsvm stats`.
#[derive(Args, Debug)]
pub struct StatsArgs {
    /// The process (VMM) whose VM and vCPU fds are read
    #[arg(long, value_name = "PID", value_parser = clap::value_parser!(i32).range(1..))]
    pub pid: i32,
    /// Print every statistic, also those that are zero
    #[arg(long)]
    pub all: bool,
    /// Print JSON (schema: docs/tool.md): one object per sample
    #[arg(long)]
    pub json: bool,
    /// Seconds between two samples
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub interval: u64,
    /// Number of samples
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: u64,
    /// One sample (the default; same as --count 1)
    #[arg(long, conflicts_with = "count")]
    pub once: bool,
}

/// `nsvm trace`.
#[derive(Args, Debug)]
pub struct TraceArgs {
    /// Only the threads of this process (the VMM; its vCPU threads)
    #[arg(long, value_name = "PID", value_parser = clap::value_parser!(i32).range(1..))]
    pub pid: Option<i32>,
    /// Stop after N events
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Stop after S seconds (fractions allowed)
    #[arg(long, value_name = "S")]
    pub duration: Option<f64>,
    /// Print one JSON object per event (schema: docs/tool.md)
    #[arg(long)]
    pub json: bool,
    /// The trace system: nsvm, or kvm for kvm_amd's events of the same
    /// shapes (kvm_exit, kvm_nested_vmenter, ...)
    #[arg(long, value_name = "NAME", default_value = "nsvm", value_parser = ["nsvm", "kvm"])]
    pub system: String,
}

/// `nsvm bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub dev: Device,
    /// Iterations of each row (1 to 100000)
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub iterations: u64,
    /// The benchmark guest (its directory also holds benchirq64.bin)
    #[arg(long, value_name = "PATH", default_value = "/guests/bench64.bin")]
    pub image: String,
    /// Print the run as JSON (the input of --compare)
    #[arg(long)]
    pub json: bool,
    /// Print the ratios of two runs saved with --json (A/B per row)
    #[arg(long, num_args = 2, value_names = ["A.json", "B.json"], conflicts_with = "window")]
    pub compare: Vec<String>,
    /// With --compare: also the estimated hardware cycles from the counts
    /// of `make bench`'s TCG cost plugin in FILE
    #[arg(long, value_name = "FILE", requires = "compare")]
    pub cost: Option<String>,
    /// Run COMMAND (after --) inside one measurement window (row ROW) of
    /// the TCG cost plugin of `make bench`
    #[arg(long, value_name = "ROW", requires = "command")]
    pub window: Option<u64>,
    /// The command run by --window
    #[arg(last = true, value_name = "COMMAND", requires = "window")]
    pub command: Vec<String>,
}

/// `nsvm dump`.
#[derive(Args, Debug)]
pub struct DumpArgs {
    /// The process (VMM) whose nsvm VMs are dumped
    #[arg(long, value_name = "PID")]
    pub pid: u32,
}

/// Exits with clap's usage error (status 2) for a rule clap's attributes
/// cannot express (e.g. `--snapshot` with several vCPUs).
pub fn usage_error(sub: &str, msg: String) -> ! {
    use clap::CommandFactory;
    let mut c = Cli::command();
    let c = c.find_subcommand_mut(sub).cloned().unwrap_or_else(Cli::command);
    c.bin_name(format!("nsvm {sub}")).error(clap::error::ErrorKind::ArgumentConflict, msg).exit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_is_consistent() {
        Cli::command().debug_assert();
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("nsvm").chain(args.iter().copied()))
    }

    /// The invocations of the suites (tests/qemu/*.sh) and the Makefile.
    #[test]
    fn suite_invocations_parse() {
        for a in [
            &["info"][..],
            &["info", "--json"],
            &["info", "--device", "/dev/kvm"],
            &["cpus"],
            &["ioctl", "0xae00"],
            &["ioctl", "0xae00", "0xdeadbeef"],
            &["ioctl", "0xae03", "0xffffffffffff"],
            &["ioctl", "0x8050b700", "--out", "80"],
            &["ioctl", "0x8050b700", "--bad-ptr"],
            &["run", "--quiet", "--device", "/dev/kvm", "/guests/spin.bin"],
            &["run", "--mode", "protected", "--irq-on-hlt", "0x20:3", "--trace-mmio", "x.bin"],
            &["run", "--mem", "64M", "--no-thp", "--stats", "/tmp/s", "thp64.bin"],
            &["run", "--device", "/dev/kvm", "--vcpus", "2", "--pin-vcpus", "x.bin"],
            &["run", "--policy", "all", "--dump-regs", "--stats", "s", "x.bin"],
            &["run", "--mem", "16M", "--max-exits", "100000000", "e.bin"],
            &["run", "--irqchip", "split", "l1_apic.bin"],
            &["run", "--device", "/dev/kvm", "--mem", "8M", "--snapshot", "s.snap", "l1_snap.bin"],
            &["run", "--device", "/dev/nsvm", "--restore", "s.snap"],
            &["run", "--device", "/dev/kvm", "--kernel", "/linux/bzImage", "--initrd", "/linux/inner.cpio", "--vcpus", "2", "--cmdline", "console=ttyS0 reboot=k panic=-1"],
            &["run", "--kernel", "vmlinux", "--mem", "1G", "--cmdline", "-- init=/bin/sh", "--irqchip", "full", "--stats", "s"],
            &["stats", "--pid", "42"],
            &["stats", "--pid", "42", "--json"],
            &["stats", "--pid", "42", "--all", "--interval", "2", "--count", "3"],
            &["bench", "--iterations", "20"],
            &["bench", "--device", "/dev/kvm", "--iterations", "5", "--json"],
            &["bench", "--compare", "a.json", "b.json", "--cost", "c"],
            &["bench", "--window", "3", "--", "qemu-system-x86_64", "-m", "256", "--device", "x"],
            &["dump", "--pid", "7"],
            &["completions", "bash"],
        ] {
            if let Err(e) = parse(a) {
                panic!("{a:?}: {e}");
            }
        }
    }

    #[test]
    fn bench_window_takes_the_command() {
        let Cmd::Bench(b) = parse(&["bench", "--window", "3", "--", "true", "--json"]).unwrap().cmd else { panic!() };
        assert_eq!(b.window, Some(3));
        assert_eq!(b.command, ["true", "--json"]);
        assert!(!b.json);
    }

    #[test]
    fn bad_command_lines_are_usage_errors() {
        use clap::error::ErrorKind::*;
        for (a, kind) in [
            (&["run", "--help-me", "x.bin"][..], UnknownArgument),
            (&["run"], MissingRequiredArgument),
            (&["run", "--mode", "unreal", "x.bin"], InvalidValue),
            (&["run", "--mem", "1K", "x.bin"], ValueValidation),
            (&["run", "--vcpus", "65", "x.bin"], ValueValidation),
            (&["run", "--policy", "sidt,nonsense", "x.bin"], ValueValidation),
            (&["run", "--irq-on-hlt", "300", "x.bin"], ValueValidation),
            (&["run", "--initrd", "i.cpio", "x.bin"], MissingRequiredArgument),
            (&["run", "--cmdline", "console=ttyS0", "x.bin"], MissingRequiredArgument),
            (&["run", "--kernel", "bzImage", "--restore", "s.snap"], ArgumentConflict),
            (&["run", "--kernel", "bzImage", "--snapshot", "s.snap"], ArgumentConflict),
            (&["run", "--kernel", "bzImage", "--mode", "real"], ArgumentConflict),
            (&["run", "--kernel", "bzImage", "--irqchip", "half"], InvalidValue),
            (&["run", "--kernel"], InvalidValue),
            (&["stats"], MissingRequiredArgument),
            (&["stats", "--pid", "x"], ValueValidation),
            (&["bench", "--iterations", "0"], ValueValidation),
            (&["bench", "--cost", "c"], MissingRequiredArgument),
            (&["bench", "--window", "3"], MissingRequiredArgument),
            (&["ioctl"], MissingRequiredArgument),
            (&["ioctl", "0x1ffffffff"], ValueValidation),
            (&["infp"], InvalidSubcommand),
            (&["completions", "tcsh"], InvalidValue),
        ] {
            match parse(a) {
                Ok(_) => panic!("{a:?} parsed"),
                Err(e) => {
                    assert_eq!(e.kind(), kind, "{a:?}: {e}");
                    assert_eq!(e.exit_code(), 2, "{a:?}");
                }
            }
        }
    }

    /// `--kernel` brings the full irqchip and 256 MiB unless told otherwise;
    /// payloads keep 2 MiB and no irqchip.
    #[test]
    fn kernel_defaults_and_rules() {
        use crate::runopts::Irqchip;
        let run = |a: &[&str]| match parse(a).unwrap().cmd {
            Cmd::Run(r) => r.o,
            _ => unreachable!(),
        };
        let o = run(&["run", "--kernel", "bzImage"]);
        assert_eq!((o.mem(), o.irqchip()), (256 << 20, Some(Irqchip::Full)));
        assert!(o.check().is_ok());
        let o = run(&["run", "--kernel", "bzImage", "--mem", "1G", "--cmdline", "console=ttyS0"]);
        assert_eq!(o.mem(), 1 << 30);
        assert_eq!(o.cmdline.as_deref(), Some("console=ttyS0"));
        let o = run(&["run", "x.bin"]);
        assert_eq!((o.mem(), o.irqchip()), (2 << 20, None));
        let o = run(&["run", "--irqchip", "full", "x.bin"]);
        assert_eq!(o.irqchip(), Some(Irqchip::Full));
        assert!(run(&["run", "--kernel", "bzImage", "--irqchip", "split"]).check().unwrap_err().contains("full irqchip"));
        assert!(run(&["run", "--kernel", "bzImage", "x.bin"]).check().unwrap_err().contains("instead of an IMAGE"));
    }

    #[test]
    fn typo_suggestion() {
        let e = parse(&["infp"]).unwrap_err().to_string();
        assert!(e.contains("info"), "{e}");
        let e = parse(&["run", "--dump-reg", "x.bin"]).unwrap_err().to_string();
        assert!(e.contains("--dump-regs"), "{e}");
    }

    /// Every option of every subcommand has a help text.
    #[test]
    fn every_option_is_explained() {
        let c = Cli::command();
        for s in c.get_subcommands() {
            for a in s.get_arguments() {
                assert!(a.get_help().is_some(), "nsvm {} {} has no help text", s.get_name(), a.get_id());
            }
        }
    }
}
