// SPDX-License-Identifier: GPL-2.0
//! `nsvm run`: a small VMM on the rust-vmm crates, the same code for
//! `/dev/nsvm` and `/dev/kvm`: kvm-ioctls for the KVM API, vm-memory
//! (`GuestMemoryMmap`) for guest RAM, linux-loader for ELF64 images and Linux
//! kernels (linux.rs), vm-superio for COM1 and the i8042 (devices.rs). Loads
//! a flat binary or an ELF64 image and starts it in real, protected or long
//! mode, or boots a Linux kernel (`--kernel`) with the in-kernel irqchip and
//! PIT; emulates a debug-exit port and the payload ports below, and prints
//! an exit summary.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use kvm_bindings::{kvm_regs, kvm_segment, kvm_sregs, kvm_userspace_memory_region};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use linux_loader::loader::{Elf, KernelLoader};
use std::os::fd::AsRawFd;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

use crate::devices::{IrqLine, Legacy, COM1_IRQ};

pub use crate::runopts::{Irqchip, Options, RunArgs, LONG_ABOUT};
use crate::Failure;

/// Guest RAM (vm-memory): one region per memory slot.
pub type GuestMemoryMmap = vm_memory::GuestMemoryMmap<()>;

/// Debug-exit port: an OUT of value v ends the run with exit status v.
pub const DEBUG_EXIT: u16 = 0x501;
/// Interrupt-request port: an OUT of value v raises external interrupt v,
/// injected (KVM_INTERRUPT) as soon as the guest can take it.
pub const IRQ_PORT: u16 = 0x511;
/// FIFO port: OUT bytes are queued, IN takes them back (0xff when empty).
pub const FIFO_PORT: u16 = 0x512;
/// An OUT to this port queues an NMI for the vCPU (KVM_NMI).
pub const NMI_PORT: u16 = 0x513;

/// `KVM_INTERRUPT`: queues external interrupt `vector` for the vCPU (with a
/// userspace interrupt controller; kvm-ioctls has no wrapper for it).
pub fn inject_interrupt(vcpu: &VcpuFd, vector: u8) -> std::io::Result<()> {
    let irq = u32::from(vector); // struct kvm_interrupt { __u32 irq; }
    // SAFETY: KVM_INTERRUPT reads one u32 (`struct kvm_interrupt`) from the
    // pointer, which is valid for the duration of the call.
    let r = unsafe { libc::ioctl(vcpu.as_raw_fd(), nsvm_core::uapi::kvm::INTERRUPT as _, &irq) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Guest start mode.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum StartMode {
    /// 16-bit real mode (the default for flat binaries)
    Real,
    /// 32-bit protected mode, flat segments, paging off
    Protected,
    /// 64-bit long mode, identity-mapped (the default for ELF64 images)
    Long,
}

/// Where the loader puts its own structures: the top 64 KiB of guest memory.
fn loader_base(mem: u64) -> u64 {
    mem - 0x10000
}

/// A loaded image: bytes placed in guest memory, entry point, mode, and for
/// a Linux kernel the registers of its boot protocol.
struct Image {
    entry: u64,
    mode: StartMode,
    rsi: Option<u64>,
    rbx: Option<u64>,
}

fn load_image(mem: &GuestMemoryMmap, path: &str, o: &Options) -> Result<Image, Failure> {
    let bytes = std::fs::read(path).map_err(|e| Failure(format!("cannot read image {path}: {e}")))?;
    let limit = loader_base(mem.last_addr().raw_value() + 1);
    if bytes.len() >= 64 && &bytes[..4] == b"\x7fELF" {
        if bytes[4] != 2 || bytes[5] != 1 || u16::from_le_bytes([bytes[18], bytes[19]]) != 62 {
            return Err(Failure("only little-endian ELF64 x86-64 images are supported".into()));
        }
        // linux-loader places every PT_LOAD segment at its physical address.
        let r = Elf::load(mem, None, &mut std::io::Cursor::new(&bytes), None).map_err(|e| Failure(format!("cannot load {path}: {e}; raise --mem if a segment lies beyond guest memory")))?;
        if r.kernel_end > limit {
            return Err(Failure(format!("ELF segments end at {:#x}, past {limit:#x} where the loader's own structures go: raise --mem", r.kernel_end)));
        }
        return Ok(Image { entry: r.kernel_load.raw_value(), mode: o.mode.unwrap_or(StartMode::Long), rsi: None, rbx: None });
    }
    if o.load.checked_add(bytes.len() as u64).is_none_or(|e| e > limit) {
        return Err(Failure(format!("the image ({} bytes at {:#x}) does not fit in guest memory below {limit:#x}: raise --mem", bytes.len(), o.load)));
    }
    mem.write_slice(&bytes, GuestAddress(o.load)).map_err(|e| Failure(format!("cannot place the image: {e}")))?;
    Ok(Image { entry: o.load, mode: o.mode.unwrap_or(StartMode::Real), rsi: None, rbx: None })
}

fn seg(selector: u16, type_: u8, l: u8, db: u8, g: u8) -> kvm_segment {
    kvm_segment { base: 0, limit: if g != 0 { 0xffff_ffff } else { 0xffff }, selector, type_, present: 1, dpl: 0, db, s: 1, l, g, avl: 0, unusable: 0, padding: 0 }
}

/// Builds the GDT at `lb` and (for long mode) identity page tables covering
/// the first 4 GiB with 2 MiB pages in the 6 pages after it, and returns the
/// special registers for `mode`.
fn setup_mode(mem: &GuestMemoryMmap, lb: u64, mode: StartMode, base: &kvm_sregs) -> Result<kvm_sregs, Failure> {
    let lb = lb as usize;
    let mut s = *base;
    let mut bad = None;
    let mut put64 = |mem: &GuestMemoryMmap, at: usize, v: u64| {
        if let Err(e) = mem.write_obj(v, GuestAddress(at as u64)) {
            bad = Some(e);
        }
    };
    // GDT at lb: null, code64 (0x08), data (0x10), code32 (0x18).
    let gdt = [0u64, 0x00af_9b00_0000_ffff, 0x00cf_9300_0000_ffff, 0x00cf_9b00_0000_ffff];
    for (i, d) in gdt.iter().enumerate() {
        put64(mem, lb + 8 * i, *d);
    }
    match mode {
        StartMode::Real => {
            let rs = |sel: u16, t: u8| kvm_segment { base: 0, limit: 0xffff, selector: sel, type_: t, present: 1, dpl: 0, db: 0, s: 1, l: 0, g: 0, avl: 0, unusable: 0, padding: 0 };
            s.cs = rs(0, 0xb);
            s.ds = rs(0, 3);
            s.es = rs(0, 3);
            s.fs = rs(0, 3);
            s.gs = rs(0, 3);
            s.ss = rs(0, 3);
            s.cr0 = 0x10;
        }
        StartMode::Protected | StartMode::Long => {
            s.gdt.base = lb as u64;
            s.gdt.limit = 8 * gdt.len() as u16 - 1;
            let data = seg(0x10, 3, 0, 1, 1);
            s.ds = data;
            s.es = data;
            s.fs = data;
            s.gs = data;
            s.ss = data;
            if mode == StartMode::Protected {
                s.cs = seg(0x18, 0xb, 0, 1, 1);
                s.cr0 = 0x11;
            } else {
                s.cs = seg(0x08, 0xb, 1, 0, 1);
                // PML4 at lb+0x1000, PDPT at lb+0x2000, 4 PDs at lb+0x3000..
                let pml4 = lb + 0x1000;
                let pdpt = lb + 0x2000;
                put64(mem, pml4, (pdpt as u64) | 3);
                for i in 0..4 {
                    let pd = lb + 0x3000 + 0x1000 * i;
                    put64(mem, pdpt + 8 * i, pd as u64 | 3);
                    for j in 0..512 {
                        put64(mem, pd + 8 * j, ((i as u64) << 30) | ((j as u64) << 21) | 0x83);
                    }
                }
                s.cr3 = pml4 as u64;
                s.cr4 = 0x20; // PAE
                s.cr0 = 0x8000_0011;
                s.efer = 0x500; // LME | LMA
            }
        }
    }
    match bad {
        Some(e) => Err(Failure(format!("cannot write the GDT or page tables at {lb:#x}: {e}"))),
        None => Ok(s),
    }
}

/// Exit counts by KVM exit name.
#[derive(Default)]
struct Summary {
    exits: BTreeMap<&'static str, u64>,
    unhandled_ports: BTreeMap<u16, u64>,
    injected: u64,
}

impl Summary {
    fn count_injected(&mut self) {
        self.injected += 1;
    }
    fn count(&mut self, n: &'static str) {
        *self.exits.entry(n).or_default() += 1;
    }
    fn total(&self) -> u64 {
        self.exits.values().sum()
    }
    fn line(&self) -> String {
        let parts: Vec<String> = self.exits.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut s = format!("{} exits ({})", self.total(), parts.join(" "));
        if self.injected > 0 {
            s += &format!("; {} interrupts injected", self.injected);
        }
        if !self.unhandled_ports.is_empty() {
            let p: Vec<String> = self.unhandled_ports.iter().map(|(k, v)| format!("{k:#x}x{v}")).collect();
            s += &format!("; unhandled ports: {}", p.join(" "));
        }
        s
    }
}

/// How the guest run ended.
enum End {
    DebugExit(u8),
    /// The guest asked for a snapshot (with --snapshot).
    Snapshot,
    Halted,
    /// The guest asked the i8042 for a CPU reset (Linux's reboot).
    Reset,
    Shutdown,
    Failed(String),
}

pub struct Guest {
    kvm: Kvm,
    _vm: VmFd,
    /// vCPU 0 first.
    pub vcpus: Vec<VcpuFd>,
    /// Guest RAM; outlives the VM's memory slots (dropped after the VM fd).
    mem: GuestMemoryMmap,
    /// COM1's interrupt: an irqfd on GSI 4 with the full irqchip.
    irq: Option<vmm_sys_util::eventfd::EventFd>,
    /// "Linux bzImage" etc. for the summary, None for payloads.
    linux: Option<&'static str>,
}

/// A guest ready for the benchmark: RBX of every vCPU holds the iteration count.
pub fn setup_for_bench(device: &str, o: &Options, iterations: u64) -> Result<Guest, Failure> {
    let (g, _) = setup(device, o)?;
    for v in &g.vcpus {
        let mut r = v.get_regs().map_err(|e| Failure(format!("KVM_GET_REGS failed: {e}")))?;
        r.rbx = iterations;
        v.set_regs(&r).map_err(|e| Failure(format!("KVM_SET_REGS failed: {e}")))?;
    }
    Ok(g)
}

/// Guest RAM of `ranges` (start, length), the slots in that order. With
/// `huge`, transparent huge pages are requested (MADV_HUGEPAGE) so that the
/// hypervisor can map 2 MiB pages; the kernel places anonymous mappings
/// whose length is a multiple of 2 MiB on a 2 MiB boundary by itself.
fn guest_memory(ranges: &[(u64, u64)], huge: bool) -> Result<GuestMemoryMmap, Failure> {
    let r: Vec<(GuestAddress, usize)> = ranges.iter().map(|&(a, l)| (GuestAddress(a), l as usize)).collect();
    let mem = GuestMemoryMmap::from_ranges(&r).map_err(|e| Failure(format!("cannot allocate guest memory {ranges:x?}: {e}")))?;
    if huge {
        for region in mem.iter() {
            if let Ok(p) = region.get_host_address(vm_memory::MemoryRegionAddress(0)) {
                // SAFETY: advice on the region's own mapping of `len` bytes;
                // failure only means 4 KiB pages.
                unsafe { libc::madvise(p.cast(), region.len() as usize, libc::MADV_HUGEPAGE) };
            }
        }
    }
    Ok(mem)
}

impl Guest {
    /// The VM fd (device ioctls: irqfd, ioeventfd, routing).
    pub fn vm(&self) -> &VmFd {
        &self._vm
    }
}

/// A VM with RAM at `ranges` (start, length; one memory slot each), the
/// policy and in-kernel interrupt controllers applied, and the CPUID every
/// vCPU gets.
fn new_vm(device: &str, o: &Options, ranges: &[(u64, u64)]) -> Result<(Kvm, VmFd, GuestMemoryMmap, kvm_bindings::CpuId), Failure> {
    crate::sys::open_device(device)?;
    let kvm = Kvm::new_with_path(std::ffi::CString::new(device.to_string()).map_err(|_| Failure("bad device path".into()))?)
        .map_err(|e| Failure(format!("cannot open {device}: {e}")))?;
    let vm = kvm.create_vm().map_err(|e| Failure(format!("KVM_CREATE_VM failed on {device}: {e}")))?;
    if o.no_thp {
        // SAFETY: PR_SET_THP_DISABLE only affects this process's future
        // mappings (works where madvise is not built in, and against THP
        // "always").
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    }
    let mem = guest_memory(ranges, !o.no_thp)?;
    for (slot, r) in mem.iter().enumerate() {
        let host = r.get_host_address(vm_memory::MemoryRegionAddress(0)).map_err(|e| Failure(format!("guest memory: {e}")))?;
        let region = kvm_userspace_memory_region { slot: slot as u32, flags: 0, guest_phys_addr: r.start_addr().raw_value(), memory_size: r.len(), userspace_addr: host as u64 };
        // SAFETY: the region is vm-memory's mapping, which outlives the VM
        // (field order in Guest).
        unsafe { vm.set_user_memory_region(region) }.map_err(|e| Failure(format!("KVM_SET_USER_MEMORY_REGION failed: {e}")))?;
    }
    if let Some((insns, excs)) = o.policy {
        let p = nsvm_core::sensitive::Policy { instructions: insns, exceptions: excs }.to_bytes();
        // SAFETY: NSVM_SET_POLICY reads 32 bytes from the pointer.
        let r = unsafe { libc::ioctl(vm.as_raw_fd(), nsvm_core::uapi::nsvm::SET_POLICY as _, p.as_ptr()) };
        if r < 0 {
            return Err(Failure(format!(
                "NSVM_SET_POLICY failed on {device}: {}; the sensitive-instruction policy is an nsvm extension (use /dev/nsvm)",
                std::io::Error::last_os_error()
            )));
        }
    }
    match o.irqchip() {
        Some(Irqchip::Split) => {
            let cap = kvm_bindings::kvm_enable_cap { cap: kvm_bindings::KVM_CAP_SPLIT_IRQCHIP, args: [24, 0, 0, 0], ..Default::default() };
            vm.enable_cap(&cap).map_err(|e| Failure(format!("KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP) failed on {device}: {e}")))?;
        }
        Some(Irqchip::Full) => {
            vm.create_irq_chip().map_err(|e| Failure(format!("KVM_CREATE_IRQCHIP failed on {device}: {e}")))?;
            let pit = kvm_bindings::kvm_pit_config { flags: kvm_bindings::KVM_PIT_SPEAKER_DUMMY, ..Default::default() };
            vm.create_pit2(pit).map_err(|e| Failure(format!("KVM_CREATE_PIT2 failed on {device}: {e}")))?;
        }
        None => {}
    }
    let mut cpuid = kvm
        .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
        .map_err(|e| Failure(format!("KVM_GET_SUPPORTED_CPUID failed on {device}: {e}")))?;
    for e in cpuid.as_mut_slice() {
        if e.function == 1 {
            // APIC id of vCPU 0; without an in-kernel local APIC, no
            // x2APIC (ECX 21) and no TSC-deadline timer (ECX 24).
            e.ebx &= 0x00ff_ffff;
            if o.irqchip().is_none() {
                e.ecx &= !((1 << 21) | (1 << 24));
            }
        }
    }
    Ok((kvm, vm, mem, cpuid))
}

/// vCPU `n` with its CPUID (initial APIC id `n`).
fn new_vcpu(vm: &VmFd, cpuid: &mut kvm_bindings::CpuId, n: u32) -> Result<VcpuFd, Failure> {
    let vcpu = vm.create_vcpu(u64::from(n)).map_err(|e| Failure(format!("KVM_CREATE_VCPU {n} failed: {e}")))?;
    // The vCPU's APIC ID wherever the CPUID reports one (as QEMU fills
    // them): leaf 1 EBX[31:24], the x2APIC ID of the topology leaves 0xB
    // and 0x1F (EDX), AMD's extended APIC ID (0x8000001E EAX). Linux
    // compares them with the APIC's ID register ("APIC ID mismatch").
    for e in cpuid.as_mut_slice() {
        match e.function {
            1 => e.ebx = (e.ebx & 0x00ff_ffff) | (n << 24),
            0xb | 0x1f => e.edx = n,
            0x8000_001e => e.eax = n,
            _ => {}
        }
    }
    vcpu.set_cpuid2(cpuid).map_err(|e| Failure(format!("KVM_SET_CPUID2 failed: {e}")))?;
    Ok(vcpu)
}

fn setup(device: &str, o: &Options) -> Result<(Guest, StartMode), Failure> {
    if let Some(path) = &o.restore {
        return restore(device, o, path);
    }
    let linux = o.kernel.is_some();
    let (kvm, vm, mem, mut cpuid) = new_vm(device, o, &crate::bootlayout::ram_ranges(o.mem(), linux))?;
    let (img, lb, kind) = match &o.kernel {
        Some(k) => {
            let e = crate::linux::load(&mem, k, o.initrd.as_deref(), o.cmdline.as_deref().unwrap_or(""), o.vcpus)?;
            (Image { entry: e.rip, mode: e.mode, rsi: Some(e.rsi), rbx: Some(e.rbx) }, crate::bootlayout::LOADER, Some(e.kind))
        }
        None => (load_image(&mem, o.image.as_deref().unwrap_or_default(), o)?, loader_base(o.mem()), None),
    };
    // COM1's interrupt: an irqfd on GSI 4 with the full irqchip; where that
    // fails, the polled UART of the payloads (said on stderr).
    let irq = if o.irqchip() == Some(Irqchip::Full) {
        let e = vmm_sys_util::eventfd::EventFd::new(libc::EFD_NONBLOCK).map_err(|e| Failure(format!("eventfd: {e}")))?;
        match vm.register_irqfd(&e, COM1_IRQ) {
            Ok(()) => Some(e),
            Err(err) => {
                eprintln!("nsvm run: KVM_IRQFD (COM1, GSI {COM1_IRQ}) failed on {device}: {err}; COM1 runs without its interrupt (the guest must poll)");
                None
            }
        }
    } else {
        None
    };
    let mut vcpus = Vec::new();
    for n in 0..o.vcpus {
        let vcpu = new_vcpu(&vm, &mut cpuid, n)?;
        // A Linux guest's APs wait for INIT/SIPI in their in-kernel APIC.
        if linux && n > 0 {
            vcpus.push(vcpu);
            continue;
        }
        let base = vcpu.get_sregs().map_err(|e| Failure(format!("KVM_GET_SREGS failed: {e}")))?;
        let sregs = setup_mode(&mem, lb, img.mode, &base)?;
        vcpu.set_sregs(&sregs).map_err(|e| Failure(format!("KVM_SET_SREGS failed: {e}")))?;
        // Every payload vCPU starts at the entry point with RDI = its index,
        // RSI = the number of vCPUs, and its own 4 KiB of stack; a kernel
        // gets its boot protocol's registers.
        let rsp = if linux { crate::bootlayout::BOOT_STACK } else { lb - 0x10 - 0x1000 * u64::from(n) };
        let regs = kvm_regs {
            rip: img.entry,
            rflags: 2,
            rsp,
            rdi: if linux { 0 } else { u64::from(n) },
            rsi: img.rsi.unwrap_or(u64::from(o.vcpus)),
            rbx: img.rbx.unwrap_or(0),
            ..Default::default()
        };
        vcpu.set_regs(&regs).map_err(|e| Failure(format!("KVM_SET_REGS failed: {e}")))?;
        vcpus.push(vcpu);
    }
    Ok((Guest { kvm, _vm: vm, vcpus, mem, irq, linux: kind }, img.mode))
}

/// A new VM from a snapshot (`--restore`).
fn restore(device: &str, o: &Options, path: &str) -> Result<(Guest, StartMode), Failure> {
    let snap = crate::snapshot::read(path).map_err(Failure)?;
    let (kvm, vm, mem, mut cpuid) = new_vm(device, o, &[(0, snap.mem.len() as u64)])?;
    mem.write_slice(&snap.mem, GuestAddress(0)).map_err(|e| Failure(format!("restoring memory: {e}")))?;
    let mut vcpus = Vec::new();
    for (n, s) in snap.vcpus.iter().enumerate() {
        let vcpu = new_vcpu(&vm, &mut cpuid, n as u32)?;
        crate::snapshot::load_vcpu(&vcpu, s).map_err(|e| Failure(format!("restoring vCPU {n} from {path}: {e}")))?;
        vcpus.push(vcpu);
    }
    let mode = if snap.vcpus[0].sregs_efer() & 0x400 != 0 { StartMode::Long } else if snap.vcpus[0].sregs_cr0() & 1 != 0 { StartMode::Protected } else { StartMode::Real };
    Ok((Guest { kvm, _vm: vm, vcpus, mem, irq: None, linux: None }, mode))
}

/// Injects the first queued interrupt if the guest can take it, or asks KVM
/// for an exit when it can (`request_interrupt_window`).
fn deliver_irqs(vcpu: &mut VcpuFd, queue: &mut std::collections::VecDeque<u8>, sh: &Shared) -> Result<(), String> {
    let ready = vcpu.get_kvm_run().ready_for_interrupt_injection != 0;
    if let Some(&v) = queue.front() {
        if ready {
            inject_interrupt(vcpu, v).map_err(|e| format!("KVM_INTERRUPT({v}) failed: {e}"))?;
            queue.pop_front();
            sh.sum.lock().unwrap().count_injected();
        }
    }
    vcpu.get_kvm_run().request_interrupt_window = u8::from(!queue.is_empty());
    Ok(())
}

/// Devices and counters shared by the vCPU threads.
struct Shared {
    /// MMIO outside RAM is a sparse scratch memory: reads return what was
    /// written there (0xff where nothing was), so guests can check both ways.
    scratch: Mutex<BTreeMap<u64, u8>>,
    fifo: Mutex<std::collections::VecDeque<u8>>,
    sum: Mutex<Summary>,
    /// COM1 and the i8042 (vm-superio).
    legacy: Mutex<Legacy>,
    /// Set when one vCPU ended the run (debug exit, shutdown, failure).
    stop: AtomicBool,
}

fn vcpu_loop(vcpu: &mut VcpuFd, o: &Options, sh: &Shared) -> End {
    let mut out = std::io::stdout();
    let mut irqs: std::collections::VecDeque<u8> = std::collections::VecDeque::new();
    let mut hlt_irqs = o.irq_on_hlt.map_or(0, |(_, n)| n);
    loop {
        if sh.stop.load(Ordering::SeqCst) {
            return End::Halted;
        }
        if let Err(m) = deliver_irqs(vcpu, &mut irqs, sh) {
            return End::Failed(m);
        }
        if sh.sum.lock().unwrap().total() >= o.max_exits {
            return End::Failed(format!("stopped after --max-exits {} exits", o.max_exits));
        }
        let exit = match vcpu.run() {
            Ok(e) => e,
            Err(e) if e.errno() == libc::EINTR => {
                sh.sum.lock().unwrap().count("INTR");
                continue;
            }
            // An AP of the in-kernel APIC left its wait for INIT (KVM
            // answers EAGAIN; the next KVM_RUN waits for the SIPI).
            Err(e) if e.errno() == libc::EAGAIN => continue,
            Err(e) => return End::Failed(format!("KVM_RUN failed: {e}")),
        };
        let mut sum = sh.sum.lock().unwrap();
        match exit {
            VcpuExit::IoOut(port, data) => {
                sum.count("IO");
                let v = data.first().copied().unwrap_or(0);
                match port {
                    // String OUTs bring several elements: each byte in turn.
                    p if sh.legacy.lock().unwrap().out(p, data) => {
                        if sh.legacy.lock().unwrap().reset_requested() {
                            let _ = out.flush();
                            return End::Reset;
                        }
                    }
                    FIFO_PORT => sh.fifo.lock().unwrap().extend(data.iter().copied()),
                    DEBUG_EXIT => {
                        let _ = out.flush();
                        return End::DebugExit(v);
                    }
                    IRQ_PORT => irqs.push_back(v),
                    NMI_PORT => {
                        if let Err(e) = vcpu.nmi() {
                            return End::Failed(format!("KVM_NMI failed: {e}"));
                        }
                    }
                    crate::snapshot::SNAPSHOT_PORT => {
                        if o.snapshot.is_some() {
                            let _ = out.flush();
                            return End::Snapshot;
                        }
                    }
                    0x80 => {}
                    p => *sum.unhandled_ports.entry(p).or_default() += 1,
                }
            }
            VcpuExit::IoIn(port, data) => {
                sum.count("IO");
                if port == FIFO_PORT {
                    let mut f = sh.fifo.lock().unwrap();
                    data.iter_mut().for_each(|b| *b = f.pop_front().unwrap_or(0xff));
                    continue;
                }
                if sh.legacy.lock().unwrap().inp(port, data) {
                    continue;
                }
                *sum.unhandled_ports.entry(port).or_default() += 1;
                data.iter_mut().for_each(|b| *b = 0xff);
            }
            VcpuExit::Hlt => {
                sum.count("HLT");
                if hlt_irqs > 0 {
                    hlt_irqs -= 1;
                    irqs.push_back(o.irq_on_hlt.map_or(0, |(v, _)| v));
                    continue;
                }
                if !irqs.is_empty() {
                    continue;
                }
                let _ = out.flush();
                return End::Halted;
            }
            VcpuExit::IrqWindowOpen => sum.count("IRQ_WINDOW_OPEN"),
            VcpuExit::Shutdown => {
                sum.count("SHUTDOWN");
                return End::Shutdown;
            }
            VcpuExit::FailEntry(reason, cpu) => {
                sum.count("FAIL_ENTRY");
                return End::Failed(format!("entry failed: hardware_entry_failure_reason={reason:#x} on CPU {cpu}"));
            }
            VcpuExit::InternalError => {
                sum.count("INTERNAL_ERROR");
                drop(sum);
                let r = vcpu.get_kvm_run();
                // SAFETY: exit_reason said the union holds `internal`.
                let i = unsafe { r.__bindgen_anon_1.internal };
                let n = (i.ndata as usize).min(16);
                if n >= 2 && i.data[0] == nsvm_core::user_exit::run::HOST_STATE_IN_VMCB {
                    return End::Failed(format!(
                        "internal error: the VMCB came back from VMRUN with state its #VMEXIT did not write, the host's own (exit code {:#x}): known QEMU TCG issue (multi-threaded TCG: FXRSTOR/XRSTOR on another CPU races with VMRUN/#VMEXIT on CPU 0), see docs/architecture.md",
                        i.data[1]
                    ));
                }
                let d: Vec<String> = i.data[..n].iter().map(|x| format!("{x:#x}")).collect();
                return End::Failed(format!("internal error, suberror {} data [{}]", i.suberror, d.join(", ")));
            }
            VcpuExit::MmioRead(addr, data) => {
                sum.count("MMIO");
                for (i, b) in data.iter_mut().enumerate() {
                    *b = sh.scratch.lock().unwrap().get(&(addr + i as u64)).copied().unwrap_or(0xff);
                }
                if o.trace_mmio {
                    let _ = writeln!(out, "mmio read  {addr:#x} len {} -> {}", data.len(), hex_le(data));
                }
            }
            VcpuExit::MmioWrite(addr, data) => {
                sum.count("MMIO");
                for (i, b) in data.iter().enumerate() {
                    sh.scratch.lock().unwrap().insert(addr + i as u64, *b);
                }
                if o.trace_mmio {
                    let _ = writeln!(out, "mmio write {addr:#x} len {} <- {}", data.len(), hex_le(data));
                }
            }
            other => {
                sum.count("OTHER");
                return End::Failed(format!("unexpected exit {other:?}"));
            }
        }
    }
}

/// Little-endian bytes as one hex number.
fn hex_le(d: &[u8]) -> String {
    let mut v = 0u64;
    for (i, b) in d.iter().enumerate().take(8) {
        v |= u64::from(*b) << (8 * i);
    }
    format!("{v:#x}")
}

fn dump_regs(v: &VcpuFd) -> String {
    let mut s = String::from("--- registers ---\n");
    if let Ok(r) = v.get_regs() {
        s += &format!(
            "rax={:#x} rbx={:#x} rcx={:#x} rdx={:#x}\nrsi={:#x} rdi={:#x} rsp={:#x} rbp={:#x}\nr8={:#x} r9={:#x} r10={:#x} r11={:#x}\nr12={:#x} r13={:#x} r14={:#x} r15={:#x}\nrip={:#x} rflags={:#x}\n",
            r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rsp, r.rbp, r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15, r.rip, r.rflags
        );
    }
    if let Ok(x) = v.get_sregs() {
        let sg = |n: &str, g: &kvm_segment| format!("{n}: sel={:#x} base={:#x} limit={:#x} type={} p={} dpl={} db={} s={} l={} g={}\n", g.selector, g.base, g.limit, g.type_, g.present, g.dpl, g.db, g.s, g.l, g.g);
        s += &sg("cs", &x.cs);
        s += &sg("ss", &x.ss);
        s += &sg("ds", &x.ds);
        s += &format!("cr0={:#x} cr3={:#x} cr4={:#x} efer={:#x} gdt={:#x}/{:#x}\n", x.cr0, x.cr3, x.cr4, x.efer, x.gdt.base, x.gdt.limit);
    }
    s
}

extern "C" fn wake(_: libc::c_int) {}

/// Pins the calling thread to the n-th CPU it may run on (wrapping).
fn pin_to_cpu(n: usize) {
    // SAFETY: plain libc calls on a zeroed, then filled, cpu_set_t.
    unsafe {
        let mut allowed: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut allowed) != 0 {
            return;
        }
        let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize).filter(|c| libc::CPU_ISSET(*c, &allowed)).collect();
        if cpus.is_empty() {
            return;
        }
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpus[n % cpus.len()], &mut one);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one);
    }
}

/// Runs every vCPU (one thread each beyond the first) until one ends the
/// run; the others are stopped with a signal that interrupts KVM_RUN.
fn run_all(g: &mut Guest, o: &Options) -> (End, Summary) {
    let line = match g.irq.as_ref().map(|e| e.try_clone()) {
        Some(Ok(e)) => IrqLine::Irqfd(e),
        _ => IrqLine::Polled,
    };
    let sh = Shared {
        scratch: Mutex::new(BTreeMap::new()),
        fifo: Mutex::new(Default::default()),
        sum: Mutex::new(Summary::default()),
        legacy: Mutex::new(Legacy::new(line)),
        stop: AtomicBool::new(false),
    };
    if g.vcpus.len() == 1 {
        let end = vcpu_loop(&mut g.vcpus[0], o, &sh);
        return (end, sh.sum.into_inner().unwrap());
    }
    // SAFETY: installs a handler that does nothing; without SA_RESTART the
    // signal makes a blocked KVM_RUN return EINTR.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = wake as *const () as usize;
        libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut());
    }
    let threads: Mutex<Vec<libc::pthread_t>> = Mutex::new(Vec::new());
    let ends: Vec<End> = std::thread::scope(|s| {
        let handles: Vec<_> = g
            .vcpus
            .iter_mut()
            .enumerate()
            .map(|(n, v)| {
                let (sh, threads) = (&sh, &threads);
                s.spawn(move || {
                    if o.pin_vcpus {
                        pin_to_cpu(n);
                    }
                    // SAFETY: pthread_self has no preconditions.
                    threads.lock().unwrap().push(unsafe { libc::pthread_self() });
                    let end = vcpu_loop(v, o, sh);
                    if !matches!(end, End::Halted) {
                        sh.stop.store(true, Ordering::SeqCst);
                        for t in threads.lock().unwrap().iter() {
                            // SAFETY: the threads are alive until the scope ends.
                            unsafe { libc::pthread_kill(*t, libc::SIGUSR1) };
                        }
                    }
                    end
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(End::Failed("a vCPU thread panicked".into()))).collect()
    });
    let end = ends.into_iter().find(|e| !matches!(e, End::Halted)).unwrap_or(End::Halted);
    (end, sh.sum.into_inner().unwrap())
}

/// `nsvm run`.
pub fn run(a: &RunArgs) -> Result<(), Failure> {
    let o = &a.o;
    if let Err(m) = o.check() {
        crate::cli::usage_error("run", m);
    }
    let device = &a.dev.device;
    let (mut g, mode) = setup(device, o)?;
    let (mut end, sum) = run_all(&mut g, o);
    let mut snap_note = String::new();
    if let (End::Snapshot, Some(path)) = (&end, &o.snapshot) {
        let r = crate::snapshot::save_vcpu(&g.kvm, &mut g.vcpus[0]).and_then(|v| {
            snap_note = format!("snapshot written to {path}{}", if crate::snapshot::in_guest_mode(&v) { " (vCPU 0 was running L2)" } else { "" });
            crate::snapshot::write(path, &g.mem, &[v])
        });
        if let Err(m) = r {
            end = End::Failed(format!("snapshot failed: {m}"));
        }
    }
    if o.dump_regs {
        for (i, v) in g.vcpus.iter().enumerate() {
            if g.vcpus.len() > 1 {
                println!("--- vcpu {i}");
            }
            print!("{}", dump_regs(v));
        }
    }
    if let Some(path) = &o.stats {
        let mut text = String::new();
        let mut fds = vec![("vm.".to_string(), g._vm.as_raw_fd())];
        for (i, v) in g.vcpus.iter().enumerate() {
            fds.push((format!("vcpu{i}."), v.as_raw_fd()));
        }
        for (prefix, fd) in fds {
            let f = crate::stats::stats_fd(fd).map_err(Failure)?;
            let (_, s) = crate::stats::read(&f).map_err(Failure)?;
            for l in crate::stats::lines(&prefix, &s, false) {
                text += &l;
                text.push('\n');
            }
        }
        std::fs::write(path, text).map_err(|e| Failure(format!("cannot write {path}: {e}")))?;
    }
    let _ = std::io::stdout().flush();
    let (status, what) = match &end {
        End::DebugExit(v) => (i32::from(*v), format!("guest wrote {v} to the debug-exit port")),
        End::Snapshot => (0, snap_note),
        End::Halted => (0, "guest halted (HLT with no interrupt to wait for)".to_string()),
        End::Reset => (0, "guest reset the machine (i8042 command 0xfe)".to_string()),
        End::Shutdown => (2, "guest shut down (triple fault)".to_string()),
        End::Failed(m) => (1, m.clone()),
    };
    if !o.quiet {
        let image = match (&o.restore, &o.kernel, g.linux) {
            (Some(r), _, _) => format!("snapshot {r}"),
            (_, Some(k), Some(kind)) => format!("{k} ({kind}, {} vCPUs, COM1 {})", g.vcpus.len(), if g.irq.is_some() { "on IRQ 4 by irqfd" } else { "polled" }),
            _ => o.image.clone().unwrap_or_default(),
        };
        eprintln!("nsvm run: {} ({:?} mode start on {}): {}; {}", image, mode, device, what, sum.line());
    }
    std::process::exit(status);
}
