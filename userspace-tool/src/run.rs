// SPDX-License-Identifier: GPL-2.0
//! `nsvm run`: a small VMM on the KVM API (kvm-ioctls), the same code for
//! `/dev/nsvm` and `/dev/kvm`. Loads a flat binary or an ELF64 image, starts
//! it in real, protected or long mode, emulates COM1 output and a debug-exit
//! port, and prints an exit summary.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use kvm_bindings::{kvm_regs, kvm_segment, kvm_sregs, kvm_userspace_memory_region};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use std::os::fd::AsRawFd;

pub use crate::runopts::{Options, RunArgs, LONG_ABOUT};
use crate::Failure;

/// COM1 base port; data at +0, line status at +5.
pub const COM1: u16 = 0x3f8;
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

/// A loaded image: bytes placed in guest memory, entry point, mode.
struct Image {
    entry: u64,
    mode: StartMode,
}

fn load_image(mem: &mut [u8], bytes: &[u8], o: &Options) -> Result<Image, Failure> {
    let limit = loader_base(mem.len() as u64);
    if bytes.len() >= 64 && &bytes[..4] == b"\x7fELF" {
        if bytes[4] != 2 || bytes[5] != 1 || u16::from_le_bytes([bytes[18], bytes[19]]) != 62 {
            return Err(Failure("only little-endian ELF64 x86-64 images are supported".into()));
        }
        let rd64 = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap());
        let rd32 = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap());
        let rd16 = |o: usize| u16::from_le_bytes(bytes[o..o + 2].try_into().unwrap()) as usize;
        let (phoff, phentsize, phnum) = (rd64(32) as usize, rd16(54), rd16(56));
        for i in 0..phnum {
            let p = phoff + i * phentsize;
            if p + 56 > bytes.len() {
                return Err(Failure("ELF program header table is truncated".into()));
            }
            if rd32(p) != 1 {
                continue; // PT_LOAD only
            }
            let (off, paddr, filesz, memsz) = (rd64(p + 8) as usize, rd64(p + 24), rd64(p + 32) as usize, rd64(p + 40));
            if paddr.checked_add(memsz).is_none_or(|e| e > limit) || off + filesz > bytes.len() {
                return Err(Failure(format!("ELF segment at {paddr:#x} does not fit in guest memory below {limit:#x}: raise --mem")));
            }
            mem[paddr as usize..paddr as usize + filesz].copy_from_slice(&bytes[off..off + filesz]);
        }
        return Ok(Image { entry: rd64(24), mode: o.mode.unwrap_or(StartMode::Long) });
    }
    if o.load.checked_add(bytes.len() as u64).is_none_or(|e| e > limit) {
        return Err(Failure(format!("the image ({} bytes at {:#x}) does not fit in guest memory below {limit:#x}: raise --mem", bytes.len(), o.load)));
    }
    mem[o.load as usize..o.load as usize + bytes.len()].copy_from_slice(bytes);
    Ok(Image { entry: o.load, mode: o.mode.unwrap_or(StartMode::Real) })
}

fn seg(selector: u16, type_: u8, l: u8, db: u8, g: u8) -> kvm_segment {
    kvm_segment { base: 0, limit: if g != 0 { 0xffff_ffff } else { 0xffff }, selector, type_, present: 1, dpl: 0, db, s: 1, l, g, avl: 0, unusable: 0, padding: 0 }
}

/// Builds the GDT and (for long mode) identity page tables covering the first
/// 4 GiB with 2 MiB pages, and returns the special registers for `mode`.
fn setup_mode(mem: &mut [u8], mode: StartMode, base: &kvm_sregs) -> kvm_sregs {
    let lb = loader_base(mem.len() as u64) as usize;
    let mut s = *base;
    let put64 = |mem: &mut [u8], at: usize, v: u64| mem[at..at + 8].copy_from_slice(&v.to_le_bytes());
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
    s
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
    Shutdown,
    Failed(String),
}

pub struct Guest {
    kvm: Kvm,
    _vm: VmFd,
    /// vCPU 0 first.
    pub vcpus: Vec<VcpuFd>,
    _mem: Mem,
}

/// Anonymous guest memory, 2 MiB aligned, unmapped on drop.
pub struct Mem {
    ptr: *mut u8,
    len: usize,
    map: *mut libc::c_void,
    map_len: usize,
}

impl Mem {
    /// `len` bytes aligned to 2 MiB; with `huge`, transparent huge pages are
    /// requested (MADV_HUGEPAGE) so that the hypervisor can map 2 MiB pages.
    fn new(len: usize, huge: bool) -> Result<Self, Failure> {
        const ALIGN: usize = 2 << 20;
        let map_len = len + ALIGN;
        // SAFETY: anonymous private mapping; the result is checked.
        let p = unsafe {
            libc::mmap(core::ptr::null_mut(), map_len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE, -1, 0)
        };
        if p == libc::MAP_FAILED {
            return Err(Failure(format!("cannot allocate {len} bytes of guest memory: {}", std::io::Error::last_os_error())));
        }
        let start = (p as usize + ALIGN - 1) & !(ALIGN - 1);
        if huge {
            // SAFETY: advice on our own mapping; failure only means 4 KiB pages.
            unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_HUGEPAGE) };
        }
        Ok(Self { ptr: start as *mut u8, len, map: p, map_len })
    }
    fn slice(&mut self) -> &mut [u8] {
        // SAFETY: the mapping is `len` bytes, readable and writable, owned by self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for Mem {
    fn drop(&mut self) {
        // SAFETY: unmaps our own mapping.
        unsafe { libc::munmap(self.map, self.map_len) };
    }
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

impl Guest {
    /// The VM fd (device ioctls: irqfd, ioeventfd, routing).
    pub fn vm(&self) -> &VmFd {
        &self._vm
    }
}

/// A VM with `mem_len` bytes of memory at guest physical 0 (one slot), the
/// policy applied, and the CPUID every vCPU gets.
fn new_vm(device: &str, o: &Options, mem_len: u64) -> Result<(Kvm, VmFd, Mem, kvm_bindings::CpuId), Failure> {
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
    let mem = Mem::new(mem_len as usize, !o.no_thp)?;
    let region = kvm_userspace_memory_region { slot: 0, flags: 0, guest_phys_addr: 0, memory_size: mem_len, userspace_addr: mem.ptr as u64 };
    // SAFETY: the region is our mapping, which outlives the VM (field order in Guest).
    unsafe { vm.set_user_memory_region(region) }.map_err(|e| Failure(format!("KVM_SET_USER_MEMORY_REGION failed: {e}")))?;
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
    if o.irqchip.is_some() {
        let cap = kvm_bindings::kvm_enable_cap { cap: kvm_bindings::KVM_CAP_SPLIT_IRQCHIP, args: [24, 0, 0, 0], ..Default::default() };
        vm.enable_cap(&cap).map_err(|e| Failure(format!("KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP) failed on {device}: {e}")))?;
    }
    let mut cpuid = kvm
        .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
        .map_err(|e| Failure(format!("KVM_GET_SUPPORTED_CPUID failed on {device}: {e}")))?;
    for e in cpuid.as_mut_slice() {
        if e.function == 1 {
            // APIC id of vCPU 0; without an in-kernel local APIC, no
            // x2APIC (ECX 21) and no TSC-deadline timer (ECX 24).
            e.ebx &= 0x00ff_ffff;
            if o.irqchip.is_none() {
                e.ecx &= !((1 << 21) | (1 << 24));
            }
        }
    }
    Ok((kvm, vm, mem, cpuid))
}

/// vCPU `n` with its CPUID (initial APIC id `n`).
fn new_vcpu(vm: &VmFd, cpuid: &mut kvm_bindings::CpuId, n: u32) -> Result<VcpuFd, Failure> {
    let vcpu = vm.create_vcpu(u64::from(n)).map_err(|e| Failure(format!("KVM_CREATE_VCPU {n} failed: {e}")))?;
    for e in cpuid.as_mut_slice() {
        if e.function == 1 {
            e.ebx = (e.ebx & 0x00ff_ffff) | (n << 24); // initial APIC id
        }
    }
    vcpu.set_cpuid2(cpuid).map_err(|e| Failure(format!("KVM_SET_CPUID2 failed: {e}")))?;
    Ok(vcpu)
}

fn setup(device: &str, o: &Options) -> Result<(Guest, StartMode), Failure> {
    if let Some(path) = &o.restore {
        return restore(device, o, path);
    }
    let image = o.image.as_deref().unwrap_or_default();
    let bytes = std::fs::read(image).map_err(|e| Failure(format!("cannot read image {image}: {e}")))?;
    let (kvm, vm, mut mem, mut cpuid) = new_vm(device, o, o.mem)?;
    let img = load_image(mem.slice(), &bytes, o)?;
    let mut vcpus = Vec::new();
    for n in 0..o.vcpus {
        let vcpu = new_vcpu(&vm, &mut cpuid, n)?;
        let base = vcpu.get_sregs().map_err(|e| Failure(format!("KVM_GET_SREGS failed: {e}")))?;
        let sregs = setup_mode(mem.slice(), img.mode, &base);
        vcpu.set_sregs(&sregs).map_err(|e| Failure(format!("KVM_SET_SREGS failed: {e}")))?;
        // Every vCPU starts at the entry point with RDI = its index, RSI =
        // the number of vCPUs, and its own 4 KiB of stack.
        let rsp = loader_base(o.mem) - 0x10 - 0x1000 * u64::from(n);
        let regs = kvm_regs { rip: img.entry, rflags: 2, rsp, rdi: u64::from(n), rsi: u64::from(o.vcpus), ..Default::default() };
        vcpu.set_regs(&regs).map_err(|e| Failure(format!("KVM_SET_REGS failed: {e}")))?;
        vcpus.push(vcpu);
    }
    Ok((Guest { kvm, _vm: vm, vcpus, _mem: mem }, img.mode))
}

/// A new VM from a snapshot (`--restore`).
fn restore(device: &str, o: &Options, path: &str) -> Result<(Guest, StartMode), Failure> {
    let snap = crate::snapshot::read(path).map_err(Failure)?;
    let (kvm, vm, mut mem, mut cpuid) = new_vm(device, o, snap.mem.len() as u64)?;
    mem.slice().copy_from_slice(&snap.mem);
    let mut vcpus = Vec::new();
    for (n, s) in snap.vcpus.iter().enumerate() {
        let vcpu = new_vcpu(&vm, &mut cpuid, n as u32)?;
        crate::snapshot::load_vcpu(&vcpu, s).map_err(|e| Failure(format!("restoring vCPU {n} from {path}: {e}")))?;
        vcpus.push(vcpu);
    }
    let mode = if snap.vcpus[0].sregs_efer() & 0x400 != 0 { StartMode::Long } else if snap.vcpus[0].sregs_cr0() & 1 != 0 { StartMode::Protected } else { StartMode::Real };
    Ok((Guest { kvm, _vm: vm, vcpus, _mem: mem }, mode))
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
            Err(e) => return End::Failed(format!("KVM_RUN failed: {e}")),
        };
        let mut sum = sh.sum.lock().unwrap();
        match exit {
            VcpuExit::IoOut(port, data) => {
                sum.count("IO");
                let v = data.first().copied().unwrap_or(0);
                match port {
                    // String OUTs bring several elements: print each byte.
                    COM1 => {
                        let _ = out.write_all(data);
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
                    p if (COM1..COM1 + 8).contains(&p) || p == 0x80 => {}
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
                let v = match port {
                    p if p == COM1 + 5 => 0x60, // LSR: transmitter empty
                    p if (COM1..COM1 + 8).contains(&p) => 0,
                    p => {
                        *sum.unhandled_ports.entry(p).or_default() += 1;
                        0xff
                    }
                };
                data.iter_mut().for_each(|b| *b = v);
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
    let sh = Shared { scratch: Mutex::new(BTreeMap::new()), fifo: Mutex::new(Default::default()), sum: Mutex::new(Summary::default()), stop: AtomicBool::new(false) };
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
            crate::snapshot::write(path, g._mem.slice(), &[v])
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
        End::Shutdown => (2, "guest shut down (triple fault)".to_string()),
        End::Failed(m) => (1, m.clone()),
    };
    if !o.quiet {
        let image = o.restore.as_ref().map_or(o.image.clone().unwrap_or_default(), |r| format!("snapshot {r}"));
        eprintln!("nsvm run: {} ({:?} mode start on {}): {}; {}", image, mode, device, what, sum.line());
    }
    std::process::exit(status);
}
