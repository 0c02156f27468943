// SPDX-License-Identifier: GPL-2.0
//! `nsvm-apitest [--device PATH] [--fuzz N] [--errnos FILE] [--trace FILE] [CASE...]`: KVM UAPI
//! conformance and robustness cases that must behave the same on /dev/nsvm and
//! /dev/kvm. Each case prints PASS/FAIL; the last line is `N passed, N failed`.
//! `nsvm-apitest --compare-errnos NSVM KVM` compares two `errno_table` files
//! (see `errnos.rs`); `--list-ioctls` prints the ioctls `errno_table` issues.
//!
//! Here: the command line, the case list and the helpers the cases share; the
//! cases live in one module per group.

mod api;
mod apic;
mod bigvm;
mod bootcpu;
mod dirty_log;
mod pit;
mod errnos;
mod irqchip;
mod kvmclock;
mod msr;

use std::os::fd::{FromRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use kvm_bindings::{kvm_regs, kvm_segment, kvm_userspace_memory_region};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use nsvm_core::uapi::kvm;

mod fpu;
mod fuzz_mt;
mod fpu_load;

type R = Result<(), String>;
/// A named test case.
type Case = (&'static str, fn(&Env) -> R);

mod lifecycle;
mod mm_identity;
mod mmu;
mod regs;
mod slot_churn;
mod stress;
mod strmmio;
mod surface;

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// A raw ioctl: Ok(ret) or Err(errno).
fn ioctl(fd: RawFd, cmd: u32, arg: u64) -> Result<i64, i32> {
    // SAFETY: the kernel validates every argument; pointers passed here are
    // valid buffers of the command's size or deliberately invalid addresses.
    let r = unsafe { libc::ioctl(fd, cmd as _, arg) };
    if r < 0 {
        Err(errno())
    } else {
        Ok(r as i64)
    }
}

fn expect_errno(what: &str, r: Result<i64, i32>, want: i32) -> R {
    match r {
        Err(e) if e == want => Ok(()),
        Err(e) => Err(format!("{what}: errno {e}, expected {want}")),
        Ok(v) => Err(format!("{what}: succeeded ({v}), expected errno {want}")),
    }
}

struct Env {
    device: String,
    /// Directory of the guest payloads (for the cases that need one).
    guests: Option<String>,
    /// Where `errno_table` writes its results.
    errnos: Option<String>,
    /// Where `string_mmio_lods_movs` writes its exits (`--trace FILE`),
    /// for the suite to compare the devices.
    trace: Option<String>,
}

impl Env {
    fn kvm(&self) -> Kvm {
        Kvm::new_with_path(std::ffi::CString::new(self.device.clone()).unwrap()).expect("open device")
    }
}

/// Guest memory mapping.
struct Mem {
    ptr: *mut u8,
    len: usize,
}
impl Mem {
    fn new(len: usize) -> Mem {
        // SAFETY: anonymous mapping, checked.
        let p = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0) };
        assert!(p != libc::MAP_FAILED);
        Mem { ptr: p.cast(), len }
    }
    /// The whole mapping, for a single owner (no vCPU thread shares it).
    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: our mapping of `len` bytes, borrowed exclusively through `self`.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
    /// Copies `data` to offset `at` (the mapping may be shared with vCPU threads).
    fn write(&self, at: usize, data: &[u8]) {
        assert!(at.checked_add(data.len()).is_some_and(|end| end <= self.len));
        // SAFETY: the range is inside our mapping (checked above); a raw copy
        // makes no claim of exclusive access to guest memory.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.add(at), data.len()) };
    }
    /// A copy of `len` bytes at offset `at` (the mapping may be shared with vCPU threads).
    fn read(&self, at: usize, len: usize) -> Vec<u8> {
        assert!(at.checked_add(len).is_some_and(|end| end <= self.len));
        let mut v = vec![0u8; len];
        // SAFETY: as in `write`, the source range is inside our mapping.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.add(at), v.as_mut_ptr(), len) };
        v
    }
}
impl Drop for Mem {
    fn drop(&mut self) {
        // SAFETY: our mapping.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}
// SAFETY: plain memory shared between test threads like a VMM does; the
// pointer is owned by `Mem` and unmapped only on drop.
unsafe impl Send for Mem {}
// SAFETY: shared access goes through `read`/`write` (raw copies), exclusive
// access through `bytes(&mut self)`.
unsafe impl Sync for Mem {}

fn region(slot: u32, gpa: u64, size: u64, uaddr: u64, flags: u32) -> kvm_userspace_memory_region {
    kvm_userspace_memory_region { slot, flags, guest_phys_addr: gpa, memory_size: size, userspace_addr: uaddr }
}

/// A VM with 64 KiB of memory at GPA 0 holding `code` at 0x1000, and one vCPU
/// in real mode at 0:1000.
fn small_vm(kvm: &Kvm, code: &[u8]) -> (VmFd, VcpuFd, Mem) {
    let vm = kvm.create_vm().expect("create vm");
    let mut mem = Mem::new(0x10000);
    mem.bytes()[0x1000..0x1000 + code.len()].copy_from_slice(code);
    // SAFETY: the mapping outlives the VM in every caller.
    unsafe { vm.set_user_memory_region(region(0, 0, 0x10000, mem.ptr as u64, 0)) }.expect("set region");
    let vcpu = vm.create_vcpu(0).expect("create vcpu");
    real_mode(&vcpu, 0x1000);
    (vm, vcpu, mem)
}

fn real_mode(vcpu: &VcpuFd, rip: u64) {
    let mut s = vcpu.get_sregs().unwrap();
    let rs = |t: u8| kvm_segment { base: 0, limit: 0xffff, selector: 0, type_: t, present: 1, dpl: 0, db: 0, s: 1, l: 0, g: 0, avl: 0, unusable: 0, padding: 0 };
    s.cs = rs(0xb);
    s.ds = rs(3);
    s.es = rs(3);
    s.ss = rs(3);
    vcpu.set_sregs(&s).unwrap();
    vcpu.set_regs(&kvm_regs { rip, rflags: 2, rsp: 0x8000, ..Default::default() }).unwrap();
}

static GOT_SIGNAL: AtomicBool = AtomicBool::new(false);
pub(crate) extern "C" fn on_sigusr1(_: libc::c_int) {
    GOT_SIGNAL.store(true, Ordering::SeqCst);
}

/// Installs the SIGUSR1 handler (`on_sigusr1`), without SA_RESTART: the
/// signal ends a `KVM_RUN` with `EINTR`.
pub(crate) fn install_sigusr1() {
    // SAFETY: installs a handler that only stores an atomic; no SA_RESTART.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigusr1 as *const () as usize;
        libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut());
    }
}

/// The vCPU's statistics as "name=value" text (nsvm's own stats fd).
pub(crate) fn stats_fd_of(fd: RawFd) -> Result<String, String> {
    use std::os::unix::fs::FileExt;
    let sfd = ioctl(fd, kvm::GET_STATS_FD, 0).map_err(|x| format!("KVM_GET_STATS_FD: errno {x}"))?;
    // SAFETY: a new fd from the kernel.
    let f = unsafe { std::fs::File::from_raw_fd(sfd as RawFd) };
    let mut h = [0u8; 24];
    f.read_exact_at(&mut h, 0).map_err(|x| x.to_string())?;
    let w = |o: usize| u32::from_ne_bytes(h[o..o + 4].try_into().unwrap()) as u64;
    let (ns, n, doff, dataoff) = (w(4), w(8), w(16), w(20));
    let mut out = String::new();
    for i in 0..n {
        let mut d = vec![0u8; (16 + ns) as usize];
        f.read_exact_at(&mut d, doff + i * (16 + ns)).map_err(|x| x.to_string())?;
        let off = u32::from_ne_bytes(d[8..12].try_into().unwrap()) as u64;
        let name = String::from_utf8_lossy(&d[16..]).trim_end_matches('\0').to_string();
        let mut v = [0u8; 8];
        f.read_exact_at(&mut v, dataoff + off).map_err(|x| x.to_string())?;
        out += &format!("{name}={}\n", u64::from_ne_bytes(v));
    }
    Ok(out)
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut device = "/dev/nsvm".to_string();
    let mut fuzz_n = 0u64;
    let mut guests = None;
    let mut errnos = None;
    let mut trace = None;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--device" => {
                device = args[i + 1].clone();
                args.drain(i..i + 2);
            }
            "--guests" => {
                guests = Some(args[i + 1].clone());
                args.drain(i..i + 2);
            }
            "--fuzz" => {
                fuzz_n = args[i + 1].parse().expect("--fuzz N");
                args.drain(i..i + 2);
            }
            "--errnos" => {
                errnos = Some(args[i + 1].clone());
                args.drain(i..i + 2);
            }
            "--trace" => {
                trace = Some(args[i + 1].clone());
                args.drain(i..i + 2);
            }
            "--list-ioctls" => {
                errnos::list_ioctls();
                std::process::exit(0);
            }
            "--compare-errnos" => {
                let r = errnos::compare_files(&args[i + 1], &args[i + 2]);
                if let Err(m) = &r {
                    println!("FAIL: compare_errnos: {m}");
                } else {
                    println!("PASS: compare_errnos");
                }
                std::process::exit(if r.is_ok() { 0 } else { 1 });
            }
            _ => i += 1,
        }
    }
    let e = Env { device, guests, errnos, trace };
    let cases: Vec<Case> = vec![
        ("api_version", api::api_version),
        ("vcpu_ids", api::vcpu_ids),
        ("memslots", api::memslots),
        ("invalid_sregs", regs::invalid_sregs),
        ("wrong_fds", api::wrong_fds),
        ("interrupt_replaced", api::interrupt_replaced),
        ("run_other_thread", lifecycle::run_other_thread),
        ("immediate_exit", lifecycle::immediate_exit),
        ("signal_during_run", lifecycle::signal_during_run),
        ("mmap_sizes", lifecycle::mmap_sizes),
        ("teardown_orders", lifecycle::teardown_orders),
        ("two_vms_isolated", lifecycle::two_vms_isolated),
        ("multi_vcpu", lifecycle::multi_vcpu),
        ("fpu_isolation", fpu::fpu_isolation),
        ("msrs", regs::msrs),
        ("fpu_regs", fpu::fpu_regs),
        ("fail_entry", regs::fail_entry),
        ("mm_identity", mm_identity::mm_identity),
        ("sregs_refused", regs::sregs_refused),
        ("long_mode_entry", regs::long_mode_entry),
        ("mmu_discard", mmu::mmu_discard),
        ("mmu_munmap", mmu::mmu_munmap),
        ("mmu_memlock", mmu::mmu_memlock),
        ("fpu_once_per_run", fpu_load::fpu_once_per_run),
        ("xsave_state", surface::xsave_state),
        ("debugregs", surface::debugregs),
        ("cpuid2", surface::cpuid2),
        ("ioeventfd", surface::ioeventfd),
        ("mtrrs", surface::mtrrs),
        ("mce", surface::mce),
        ("guest_debug", surface::guest_debug),
        ("run_cr8", surface::run_cr8),
        ("clock", surface::clock),
        ("kvmclock", kvmclock::kvmclock),
        ("tsc_sync", kvmclock::tsc_sync),
        ("tsc_aux", kvmclock::tsc_aux),
        ("string_mmio", surface::string_mmio),
        ("string_mmio_lods_movs", strmmio::string_mmio_lods_movs),
        ("outs_ioeventfd", surface::outs_ioeventfd),
        ("xsetbv_cpuid", surface::xsetbv_cpuid),
    ];
    // Not in the default list: run by name (the suite measures memory around it).
    let extra: Vec<Case> = vec![("vm_churn", stress::vm_churn), ("thp_probe", stress::thp_probe), ("guest_fuzz", stress::guest_fuzz), ("slot_churn", stress::slot_churn_case), ("errno_table", errnos::errno_table), ("fuzz_mt", fuzz_mt::fuzz_mt), ("fpu_migration", fpu_load::fpu_migration),
        ("apic_caps", apic::apic_caps), ("apic_self_ipi", apic::apic_self_ipi), ("apic_timer_oneshot", apic::apic_timer_oneshot),
        ("apic_timer_periodic", apic::apic_timer_periodic), ("apic_tsc_deadline", apic::apic_tsc_deadline), ("apic_x2apic", apic::apic_x2apic),
        ("apic_nmi_ipi", apic::apic_nmi_ipi), ("apic_get_set_lapic", apic::apic_get_set_lapic), ("apic_no_eoi", apic::apic_no_eoi),
        ("apic_init_sipi", apic::apic_init_sipi), ("apic_msi", apic::apic_msi),
        ("apic_x2apic_api", apic::apic_x2apic_api), ("apic_ipi_modes", apic::apic_ipi_modes),
        ("apic_hlt_signal", apic::apic_hlt_signal), ("apic_injected_restore", apic::apic_injected_restore), ("apic_irqfd", apic::apic_irqfd), ("apic_irq_line", apic::apic_irq_line),
        ("apic_boot_cpu", bootcpu::apic_boot_cpu), ("apic_many_vcpus", bigvm::apic_many_vcpus),
        ("pit_caps", pit::pit_caps), ("pit_needs_irqchip", pit::pit_needs_irqchip), ("pit_errnos", pit::pit_errnos),
        ("pit_mode2", pit::pit_mode2), ("pit_mode0", pit::pit_mode0), ("pit_latch", pit::pit_latch), ("pit_gate2", pit::pit_gate2),
        ("pit_speaker_port", pit::pit_speaker_port), ("pit_bcd", pit::pit_bcd), ("pit_set_count", pit::pit_set_count),
        ("pit_state", pit::pit_state), ("pit_teardown", pit::pit_teardown), ("pit_irq0_timer", pit::pit_irq0_timer),
        ("msr_filter_errnos", msr::msr_filter_errnos), ("msr_user_exit", msr::msr_user_exit), ("msr_features", msr::msr_features),
        ("msr_mwait_quirks", msr::msr_mwait_quirks),
        ("irqchip_errnos", irqchip::irqchip_errnos), ("irqchip_pic", irqchip::irqchip_pic), ("irqchip_ioapic", irqchip::irqchip_ioapic),
        ("dirty_log_basic", dirty_log::dirty_log_basic), ("dirty_log_flags", dirty_log::dirty_log_flags), ("dirty_log_errnos", dirty_log::dirty_log_errnos),
        ("dirty_log_manual", dirty_log::dirty_log_manual), ("dirty_log_vcpus", dirty_log::dirty_log_vcpus), ("dirty_log_nested", dirty_log::dirty_log_nested)];
    let (mut p, mut f) = (0, 0);
    for (name, c) in cases.iter().chain(extra.iter()) {
        let named = args.iter().any(|a| a == name);
        if (!args.is_empty() && !named) || (args.is_empty() && extra.iter().any(|(n, _)| n == name)) {
            continue;
        }
        match c(&e) {
            Ok(()) => {
                p += 1;
                println!("PASS: {name}");
            }
            Err(m) => {
                f += 1;
                println!("FAIL: {name}: {m}");
            }
        }
    }
    if fuzz_n > 0 {
        match stress::fuzz(&e, fuzz_n) {
            Ok(()) => {
                p += 1;
                println!("PASS: fuzz ({fuzz_n} ioctls)");
            }
            Err(m) => {
                f += 1;
                println!("FAIL: fuzz: {m}");
            }
        }
    }
    println!("{p} passed, {f} failed");
    std::process::exit(if f == 0 { 0 } else { 1 });
}
