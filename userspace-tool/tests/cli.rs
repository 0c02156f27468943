// SPDX-License-Identifier: GPL-2.0
//! The `nsvm` binary's command line as a user meets it (std::process): help
//! texts, --version, completions, JSON output, usage errors.

use std::process::{Command, Output};

fn nsvm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nsvm")).args(args).output().expect("cannot run nsvm")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const COMMANDS: [&str; 9] = ["info", "cpus", "ioctl", "run", "stats", "bench", "dump", "trace", "completions"];

#[test]
fn help_names_every_subcommand() {
    for args in [&["help"][..], &["--help"]] {
        let o = nsvm(args);
        assert_eq!(o.status.code(), Some(0));
        let out = stdout(&o);
        for c in COMMANDS {
            assert!(out.lines().any(|l| l.trim_start().starts_with(c)), "'nsvm {args:?}' does not list {c}:\n{out}");
        }
    }
}

#[test]
fn no_arguments_prints_help_with_status_2() {
    let o = nsvm(&[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("Usage: nsvm <COMMAND>"), "{}", stderr(&o));
}

#[test]
fn every_subcommand_has_help() {
    for (c, option) in [
        ("info", "--json"),
        ("cpus", "--json"),
        ("ioctl", "--bad-ptr"),
        ("run", "--irq-on-hlt"),
        ("run", "0x501"),
        ("run", "--kernel"),
        ("run", "--initrd"),
        ("run", "--cmdline"),
        ("run", "i8042"),
        ("stats", "--interval"),
        ("bench", "--compare"),
        ("dump", "--pid"),
        ("trace", "--duration"),
        ("trace", "trace-cmd"),
        ("completions", "bash"),
    ] {
        for args in [vec![c, "--help"], vec!["help", c]] {
            let o = nsvm(&args);
            assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
            assert!(stdout(&o).contains(option), "{args:?} does not explain {option}:\n{}", stdout(&o));
        }
    }
}

#[test]
fn version() {
    let o = nsvm(&["--version"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o).trim(), format!("nsvm {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn completions_generate_scripts() {
    for (shell, marker) in [("bash", "complete -F"), ("zsh", "#compdef nsvm"), ("fish", "complete -c nsvm")] {
        let o = nsvm(&["completions", shell]);
        assert_eq!(o.status.code(), Some(0), "{shell}: {}", stderr(&o));
        let out = stdout(&o);
        assert!(out.contains(marker), "{shell}: no '{marker}' in the script");
        assert!(out.contains("irq-on-hlt") && out.contains("stats"), "{shell}: options or commands missing");
    }
}

/// Bash accepts the generated script (when bash is installed).
#[test]
fn bash_completion_script_is_valid_bash() {
    let o = nsvm(&["completions", "bash"]);
    let path = std::env::temp_dir().join(format!("nsvm-completion-{}.bash", std::process::id()));
    std::fs::write(&path, &o.stdout).unwrap();
    let r = Command::new("bash").arg("-n").arg(&path).status();
    let _ = std::fs::remove_file(&path);
    if let Ok(s) = r {
        assert!(s.success(), "bash -n rejects the completion script");
    }
}

#[test]
fn bad_options_are_usage_errors_with_status_2() {
    for args in [
        &["run", "--help-me", "x.bin"][..],
        &["run", "--mem", "lots", "x.bin"],
        &["run", "--mode", "unreal", "x.bin"],
        &["run", "--snapshot", "s", "--vcpus", "2", "x.bin"],
        &["run"],
        &["stats"],
        &["stats", "--pid", "-1"],
        &["info", "--jsn"],
        &["bench", "--iterations", "0"],
        &["frobnicate"],
        &["completions", "tcsh"],
        &["trace", "--system", "kvmm"],
        &["trace", "--count", "0"],
    ] {
        let o = nsvm(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(e.starts_with("error: "), "{args:?}: {e}");
        assert!(e.contains("--help"), "{args:?}: no pointer to --help in {e}");
        assert!(stdout(&o).is_empty());
    }
}

#[test]
fn typos_get_suggestions() {
    let e = stderr(&nsvm(&["run", "--dump-reg", "x.bin"]));
    assert!(e.contains("'--dump-regs'"), "{e}");
    let e = stderr(&nsvm(&["stat", "--pid", "1"]));
    assert!(e.contains("'stats'"), "{e}");
}

/// `nsvm info --json` is one JSON object with the documented fields, also
/// when the device cannot be opened (then status 1 and an "error" field).
#[test]
fn info_json_parses() {
    let o = nsvm(&["info", "--json", "--device", "/nonexistent/nsvm"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("info --json is not JSON");
    assert_eq!(v["device"], "/nonexistent/nsvm");
    assert!(v["devices"]["/dev/nsvm"].is_boolean() && v["devices"]["/dev/kvm"].is_boolean());
    assert!(v["host_svm"].is_null() || v["host_svm"]["features"].is_array());
    assert!(v["error"].as_str().is_some_and(|e| e.contains("/nonexistent/nsvm")));
    assert!(v["module"].is_null());
    assert!(stderr(&o).starts_with("nsvm: "), "{}", stderr(&o));
}

/// `nsvm cpus --json` is an array with one object per CPU of this host.
#[test]
fn cpus_json_parses() {
    let o = nsvm(&["cpus", "--json", "--device", "/nonexistent/nsvm"]);
    if o.status.code() != Some(0) {
        return; // no sysfs CPU list (container)
    }
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("cpus --json is not JSON");
    let cpus = v.as_array().unwrap();
    assert!(!cpus.is_empty());
    for c in cpus {
        assert!(c["cpu"].is_u64() && c["online"].is_boolean() && c["nsvm_enabled"].is_null(), "{c}");
    }
}

/// `nsvm stats` on a process without VMs: a sentence, status 1.
#[test]
fn stats_without_vm_is_a_sentence() {
    let pid = std::process::id().to_string();
    let o = nsvm(&["stats", "--pid", &pid, "--json"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).starts_with("nsvm: "), "{}", stderr(&o));
}
