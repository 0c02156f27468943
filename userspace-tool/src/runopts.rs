// SPDX-License-Identifier: GPL-2.0
//! The options of `nsvm run` (clap) and their value parsers.

use clap::Args;

use crate::cli::Device;
use crate::run::StartMode;

/// `nsvm run --help`: the conventions a payload can use.
pub const LONG_ABOUT: &str = "\
Run a flat binary (loaded at --load, default 0x1000, real mode) or an ELF64
image (long mode) in a new VM; or continue a snapshot with --restore; or boot
a Linux kernel: --kernel bzImage [--initrd FILE] [--cmdline TEXT] (the 64-bit
boot protocol; an ELF vmlinux with a PVH note starts at its PVH entry), with
the in-kernel irqchip and PIT, an MP table for --vcpus N (the APs start by
INIT/SIPI), COM1 on IRQ 4 and the i8042 (0xfe to port 0x64, Linux's reboot,
ends the run with status 0). Example:
  nsvm run --kernel bzImage --initrd initrd.cpio --vcpus 2 \
      --cmdline \"console=ttyS0 reboot=k panic=-1\"

COM1 output goes to stdout; an OUT to port 0x501 ends the run with that exit
status; an OUT of v to port 0x511 raises interrupt v (injected when the guest
can take it); an OUT to port 0x513 raises an NMI (KVM_NMI); with --snapshot
an OUT to port 0x502 saves the VM (memory, registers, MSRs, nested state:
also while L2 runs) and ends the run. Memory outside RAM is MMIO scratch space
(reads return what was written, else 0xff). With --vcpus N every vCPU starts
at the entry with RDI = its index and RSI = N.

The exit status is the guest's debug-exit value, 0 when it halted with nothing
to wait for, 2 on a shutdown (triple fault), 1 when the run failed.";

/// `nsvm run [OPTIONS] IMAGE`.
#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub dev: Device,
    #[command(flatten)]
    pub o: Options,
}

/// The options of a run (also built by `nsvm bench`).
#[derive(Args, Debug, Clone)]
pub struct Options {
    /// The image: a flat binary, or an ELF64 executable
    #[arg(value_name = "IMAGE", required_unless_present_any = ["restore", "kernel"])]
    pub(crate) image: Option<String>,
    /// Boot a Linux kernel (bzImage, or an ELF vmlinux: PVH entry if it has
    /// one) instead of an image; implies --irqchip full and --mem 256M
    #[arg(long, value_name = "FILE", conflicts_with_all = ["restore", "snapshot", "load", "mode"])]
    pub(crate) kernel: Option<String>,
    /// With --kernel: the initial ramdisk (placed high in memory)
    #[arg(long, value_name = "FILE", requires = "kernel")]
    pub(crate) initrd: Option<String>,
    /// With --kernel: the kernel command line (e.g. "console=ttyS0")
    #[arg(long, value_name = "TEXT", requires = "kernel", allow_hyphen_values = true)]
    pub(crate) cmdline: Option<String>,
    /// Guest memory: a multiple of 4 KiB between 256K and 64G (e.g. 8M;
    /// default 2M, 256M with --kernel)
    #[arg(long, value_name = "SIZE", value_parser = parse_mem)]
    pub(crate) mem: Option<u64>,
    /// Where a flat binary is loaded (guest physical address)
    #[arg(long, value_name = "ADDR", default_value = "0x1000", value_parser = parse_size)]
    pub(crate) load: u64,
    /// Start mode (default: real for flat binaries, long for ELF64)
    #[arg(long, value_enum, value_name = "MODE")]
    pub(crate) mode: Option<StartMode>,
    /// Print the registers of every vCPU at the end
    #[arg(long)]
    pub(crate) dump_regs: bool,
    /// Stop after N exits to userspace
    #[arg(long, value_name = "N", default_value = "10000000", value_parser = parse_size)]
    pub(crate) max_exits: u64,
    /// No summary line on stderr at the end
    #[arg(long)]
    pub(crate) quiet: bool,
    /// Wake each HLT with interrupt VEC, COUNT times (default once)
    #[arg(long, value_name = "VEC[:COUNT]", value_parser = parse_irq_on_hlt)]
    pub(crate) irq_on_hlt: Option<(u8, u32)>,
    /// Print every MMIO access
    #[arg(long)]
    pub(crate) trace_mmio: bool,
    /// Write the VM's and vCPUs' statistics (KVM_GET_STATS_FD) to FILE at the end
    #[arg(long, value_name = "FILE")]
    pub(crate) stats: Option<String>,
    /// nsvm only: intercept and emulate the comma-separated LIST of sidt,
    /// sgdt, sldt, str, cr0, pushf, popf, cpuid, rdtsc, exc:N, all-insns,
    /// all-exc or all
    #[arg(long, value_name = "LIST", value_parser = parse_policy)]
    pub(crate) policy: Option<(u64, u32)>,
    /// Number of vCPUs (1 to 64)
    #[arg(long, value_name = "N", default_value = "1", value_parser = parse_vcpus)]
    pub(crate) vcpus: u32,
    /// Back guest memory with 4 KiB pages only (no transparent huge pages)
    #[arg(long)]
    pub(crate) no_thp: bool,
    /// In-kernel interrupt controllers: local APICs (x2APIC and the
    /// TSC-deadline timer in the CPUID; HLT then waits in the kernel), with
    /// 'full' also the PICs, the I/O APIC and the PIT, and COM1 on IRQ 4
    #[arg(long, value_enum, value_name = "KIND")]
    pub(crate) irqchip: Option<Irqchip>,
    /// Pin vCPU n's thread to host CPU n (modulo the CPUs available)
    #[arg(long)]
    pub(crate) pin_vcpus: bool,
    /// Save the VM to FILE when the guest writes port 0x502, and end the run
    /// (one vCPU)
    #[arg(long, value_name = "FILE")]
    pub(crate) snapshot: Option<String>,
    /// Continue the snapshot FILE in a new VM (nsvm or kvm_amd) instead of
    /// loading an image
    #[arg(long, value_name = "FILE", conflicts_with = "image")]
    pub(crate) restore: Option<String>,
}

/// `--irqchip`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Irqchip {
    /// Local APICs in the kernel, the rest in userspace (KVM_CAP_SPLIT_IRQCHIP)
    Split,
    /// KVM_CREATE_IRQCHIP (PICs, I/O APIC, local APICs) and KVM_CREATE_PIT2;
    /// COM1's interrupt through an irqfd on GSI 4
    Full,
}

impl Options {
    /// Rules between options (usage errors).
    pub fn check(&self) -> Result<(), String> {
        if self.snapshot.is_some() && self.vcpus != 1 {
            return Err("--snapshot supports one vCPU".into());
        }
        // (Not a clap conflict: clap then stops checking that --initrd and
        // --cmdline require --kernel when an IMAGE is given.)
        if self.kernel.is_some() && self.image.is_some() {
            return Err("--kernel boots a kernel instead of an IMAGE: give one of them".into());
        }
        if self.kernel.is_some() && self.irqchip == Some(Irqchip::Split) {
            return Err("--kernel needs the full irqchip (the I/O APIC and PIT in the kernel): leave out --irqchip split".into());
        }
        Ok(())
    }

    /// Guest memory: --mem, or 256 MiB for a kernel and 2 MiB for a payload.
    pub fn mem(&self) -> u64 {
        self.mem.unwrap_or(if self.kernel.is_some() { 256 << 20 } else { 2 << 20 })
    }

    /// The interrupt controllers in the kernel: --irqchip, full for --kernel.
    pub fn irqchip(&self) -> Option<Irqchip> {
        self.irqchip.or(self.kernel.as_ref().map(|_| Irqchip::Full))
    }

    /// Options for `nsvm bench`: `image` in `mem` bytes, long mode.
    pub fn for_bench(image: &str, mem: u64) -> Options {
        Options {
            image: Some(image.to_string()),
            kernel: None,
            initrd: None,
            cmdline: None,
            mem: Some((mem + 0xfff) & !0xfff),
            load: 0x1000,
            mode: None,
            dump_regs: false,
            max_exits: u64::MAX,
            quiet: true,
            irq_on_hlt: None,
            trace_mmio: false,
            stats: None,
            policy: None,
            vcpus: 1,
            // The NPF row measures 4 KiB first touches.
            no_thp: true,
            irqchip: None,
            snapshot: None,
            restore: None,
            pin_vcpus: false,
        }
    }

    /// Options for the interrupt rows of `nsvm bench`: `image` with `vcpus`
    /// vCPUs and the in-kernel local APICs (KVM_CAP_SPLIT_IRQCHIP).
    pub fn for_bench_irq(image: &str, mem: u64, vcpus: u32) -> Options {
        Options { vcpus, irqchip: Some(Irqchip::Split), ..Options::for_bench(image, mem) }
    }
}

/// A size or address: decimal, 0x-prefixed hex, with an optional K, M or G.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let (num, shift) = match s.chars().last() {
        Some('K') | Some('k') => (&s[..s.len() - 1], 10),
        Some('M') | Some('m') => (&s[..s.len() - 1], 20),
        Some('G') | Some('g') => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    let n = if let Some(h) = num.strip_prefix("0x") { u64::from_str_radix(h, 16) } else { num.parse() };
    n.ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("'{s}' is not a size (e.g. 2M, 64K, 0x200000)"))
}

fn parse_mem(s: &str) -> Result<u64, String> {
    let m = parse_size(s)?;
    if m < 0x40000 || !m.is_multiple_of(0x1000) || m > (64 << 30) {
        return Err("--mem must be a multiple of 4 KiB between 256K and 64G".into());
    }
    Ok(m)
}

fn parse_vcpus(s: &str) -> Result<u32, String> {
    match parse_size(s)? {
        n @ 1..=64 => Ok(n as u32),
        _ => Err("--vcpus takes 1 to 64".into()),
    }
}

fn parse_irq_on_hlt(v: &str) -> Result<(u8, u32), String> {
    let (vec, n) = v.split_once(':').unwrap_or((v, "1"));
    let (vec, n) = (parse_size(vec)?, parse_size(n)?);
    match (u8::try_from(vec), u32::try_from(n)) {
        (Ok(vec), Ok(n)) => Ok((vec, n)),
        _ => Err("--irq-on-hlt takes VECTOR[:COUNT] with a vector below 256".into()),
    }
}

/// Parses `--policy`: comma-separated sidt, sgdt, sldt, str, cr0 (SMSW and
/// MOV from CR0), pushf, popf, cpuid, rdtsc, all-insns, exc:N (vector N),
/// all-exc, or all.
pub fn parse_policy(s: &str) -> Result<(u64, u32), String> {
    use nsvm_core::sensitive::{bits, REFLECTABLE_EXCEPTIONS};
    let (mut i, mut e) = (0u64, 0u32);
    for w in s.split(',') {
        match w {
            "sidt" => i |= bits::SIDT,
            "sgdt" => i |= bits::SGDT,
            "sldt" => i |= bits::SLDT,
            "str" => i |= bits::STR,
            "cr0" | "smsw" => i |= bits::CR0_READ,
            "pushf" => i |= bits::PUSHF,
            "popf" => i |= bits::POPF,
            "cpuid" => i |= bits::CPUID,
            "rdtsc" => i |= bits::RDTSC,
            "all-insns" => i |= bits::ALL,
            "all-exc" => e |= REFLECTABLE_EXCEPTIONS,
            "all" => {
                i |= bits::ALL;
                e |= REFLECTABLE_EXCEPTIONS;
            }
            x if x.starts_with("exc:") => {
                let v: u32 = x[4..].parse().map_err(|_| format!("'{x}': exc: takes a vector number"))?;
                if v > 31 || REFLECTABLE_EXCEPTIONS & (1 << v) == 0 {
                    return Err(format!("exception {v} cannot be reflected (not #DB, #BP, NMI or #MC; see docs/uapi.md)"));
                }
                e |= 1 << v;
            }
            x => return Err(format!("unknown policy item '{x}'; see 'nsvm run --help'")),
        }
    }
    Ok((i, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("2M"), Ok(2 << 20));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("0x1000"), Ok(0x1000));
        assert_eq!(parse_size("100000000"), Ok(100_000_000));
        assert!(parse_size("17179869184G").is_err());
        assert!(parse_size("x").is_err());
        assert!(parse_mem("1M").is_ok());
        assert!(parse_mem("1K").is_err());
        assert!(parse_mem("65G").is_err());
        assert_eq!(parse_irq_on_hlt("0x20:3"), Ok((0x20, 3)));
        assert_eq!(parse_irq_on_hlt("32"), Ok((32, 1)));
        assert!(parse_irq_on_hlt("256").is_err());
        assert_eq!(parse_vcpus("64"), Ok(64));
        assert!(parse_vcpus("0").is_err());
    }

    #[test]
    fn policy() {
        use nsvm_core::sensitive::bits;
        assert_eq!(parse_policy("sidt,cpuid"), Ok((bits::SIDT | bits::CPUID, 0)));
        assert_eq!(parse_policy("exc:14").map(|p| p.1), Ok(1 << 14));
        assert!(parse_policy("exc:3").is_err());
        assert!(parse_policy("nonsense").is_err());
    }
}
