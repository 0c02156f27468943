// SPDX-License-Identifier: GPL-2.0
//! `nsvm`: the command-line tool of the nsvm hypervisor.
//!
//! Subcommands (see `nsvm help`, `nsvm <command> --help`; the command line
//! is in `cli.rs`): `info` (what the host and the device offer), `cpus`
//! (per-CPU SVM state read back from the MSRs), `ioctl` (issue one raw ioctl
//! and print the result; for tests and experiments), `run` (the VMM),
//! `stats`, `bench`, `dump`, `trace` (tracepoints, live), `completions`.

mod bench;
mod bootlayout;
mod cli;
mod cost;
mod cpus;
mod devices;
mod info;
mod linux;
mod run;
mod runopts;
mod snapshot;
mod stats;
mod sys;
mod trace;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use cli::Cmd;

/// A failure to report: a sentence that says what went wrong and what to do.
pub struct Failure(pub String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(e.to_string())
    }
}

/// `nsvm dump --pid PID`: the debugfs vmcb dumps of a process's VMs.
fn dump(a: &cli::DumpArgs) -> Result<(), Failure> {
    let pid = a.pid;
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
    // Usage errors (and --help, --version) end here: clap prints them and
    // exits with status 2 (0 for help and version).
    let cli = cli::Cli::parse();
    let result = match cli.cmd {
        Cmd::Info(a) => info::run(&a),
        Cmd::Cpus(a) => cpus::run(&a),
        Cmd::Ioctl(a) => sys::run_ioctl(&a),
        Cmd::Run(a) => run::run(&a),
        Cmd::Stats(a) => stats::run(&a),
        Cmd::Bench(a) => bench::run(&a),
        Cmd::Dump(a) => dump(&a),
        Cmd::Trace(a) => trace::run(&a),
        Cmd::Completions { shell } => {
            clap_complete::generate(shell, &mut cli::Cli::command(), "nsvm", &mut std::io::stdout());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(msg)) => {
            eprintln!("nsvm: {msg}");
            ExitCode::from(1)
        }
    }
}
