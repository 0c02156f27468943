// SPDX-License-Identifier: GPL-2.0
//! Ownership of SVM on every CPU: EFER.SVME and the host save area
//! (APM vol. 2 15.4 "Enabling SVM" and 15.30.4 "VM_HSAVE_PA MSR").
//!
//! A CPU hotplug state runs [`cpu_online`] on each CPU as it comes online (and
//! on all online CPUs at load) and [`cpu_offline`] as it goes away (and on all
//! at unload), each on the CPU concerned. The per-CPU records sit in one global
//! mutex-protected table.

use kernel::ffi::{c_int, c_uint};
use kernel::page::Page;
use kernel::prelude::*;
use kernel::sync::global_lock;

use nsvm_core::cpuid::{self, SvmLeaf};
use nsvm_core::msr::{self, efer, vm_cr};
use nsvm_core::uapi::{host_flags, NsvmHostInfo, NSVM_HOST_INFO_VERSION};

use crate::hw;
use crate::hw::mem::KPages;

use core::sync::atomic::{AtomicU64, Ordering};

/// Physical addresses of the shared permission maps (0 while unloaded).
static IOPM_PA: AtomicU64 = AtomicU64::new(0);
static MSRPM_PA: AtomicU64 = AtomicU64::new(0);
/// The processor's physical address width (CPUID 8000_0008h EAX[7:0]),
/// probed once at load: the VMRUN/VMLOAD/NPT12 address checks need it on
/// hot paths, where a CPUID instruction would cost an exit under nesting.
static PHYS_BITS: core::sync::atomic::AtomicU8 = core::sync::atomic::AtomicU8::new(0);

/// CPUs whose GDT base and host save area are remembered for the log of a
/// VMCB that no #VMEXIT of its VMRUN wrote (`nsvm_core::hoststate`).
const NOTED_CPUS: usize = 256;
/// Per CPU: its GDT base (SGDT at `cpu_online`), 0 when unknown.
static GDT_BASE: [AtomicU64; NOTED_CPUS] = [const { AtomicU64::new(0) }; NOTED_CPUS];
/// Per CPU: the physical address of its host save area, 0 while nsvm does
/// not own SVM there.
static HSAVE_PA: [AtomicU64; NOTED_CPUS] = [const { AtomicU64::new(0) }; NOTED_CPUS];

/// The CPU whose GDT is at `base`.
pub(crate) fn gdt_owner(base: u64) -> Option<u32> {
    nsvm_core::hoststate::gdt_owner(GDT_BASE.iter().map(|b| b.load(Ordering::Relaxed)), base)
}

/// What the current CPU's host save area holds, as QEMU lays it out
/// (`nsvm_core::hoststate::Hsave`), and VM_HSAVE_PA as read now. Called
/// with preemption off, right after a VMRUN on this CPU.
pub(crate) fn this_cpu_hsave(cpu: u32) -> nsvm_core::hoststate::Hsave {
    let msr = hw::cpu::rdmsr(msr::VM_HSAVE_PA).unwrap_or(0);
    let pa = HSAVE_PA.get(cpu as usize).map_or(0, |p| p.load(Ordering::Relaxed));
    if pa == 0 {
        return nsvm_core::hoststate::Hsave { msr, ..Default::default() };
    }
    let at = hw::mem::phys_to_va(pa) + core::mem::offset_of!(nsvm_core::vmcb::Vmcb, save);
    // SAFETY: `pa` is this CPU's host save page, allocated in
    // `enable_this_cpu` and freed only by `disable_this_cpu`, which runs on
    // this CPU from the hotplug thread and so cannot run while the caller
    // keeps preemption off here; the save area is inside the page and
    // aligned, `SaveArea` is plain integers (any bit pattern is valid), and
    // the processor writes the page only during VMRUN on this CPU.
    let s = unsafe { core::ptr::read_volatile(at as *const nsvm_core::vmcb::SaveArea) };
    nsvm_core::hoststate::Hsave::from_save(msr, &s)
}

/// The processor's SVM features (CPUID 0x8000000A EDX), set at load.
static HOST_FEATURES: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// Records the processor's SVM features (module load).
pub(crate) fn set_host_features(f: nsvm_core::cpuid::SvmFeatures) {
    HOST_FEATURES.store(f.bits(), Ordering::Relaxed);
}

/// Whether the processor itself has SVM feature `f` (otherwise nsvm
/// emulates it for L1 where `cpuid::L1_FEATURES` says so).
pub(crate) fn host_has(f: nsvm_core::cpuid::SvmFeatures) -> bool {
    nsvm_core::cpuid::SvmFeatures::from_bits_retain(HOST_FEATURES.load(Ordering::Relaxed)).contains(f)
}

/// The processor's physical address width.
pub(crate) fn phys_bits() -> u8 {
    PHYS_BITS.load(Ordering::Relaxed)
}

/// IOPM for vmcb01 (APM 15.10.1: 12 KiB, one bit per port).
pub(crate) fn iopm_pa() -> u64 {
    IOPM_PA.load(Ordering::Relaxed)
}
/// MSRPM for vmcb01 (APM 15.11: 8 KiB, two bits per MSR).
pub(crate) fn msrpm_pa() -> u64 {
    MSRPM_PA.load(Ordering::Relaxed)
}

/// The IOPM and MSRPM every vmcb01 uses: all bits set, so every port and
/// every MSR access exits to L0, which emulates the MSRs it supports and
/// sends port I/O to userspace.
///
/// # Invariants
///
/// While a value exists `IOPM_PA`/`MSRPM_PA` hold the addresses of its pages.
pub(crate) struct PermissionMaps {
    _iopm: KPages,
    _msrpm: KPages,
}

impl PermissionMaps {
    /// Allocates and fills the maps.
    pub(crate) fn new() -> Result<Self> {
        let iopm = KPages::alloc(2)?; // 16 KiB: the 12 KiB map, 4 KiB aligned
        let msrpm = KPages::alloc(1)?; // 8 KiB
        iopm.fill(0xff);
        msrpm.fill(0xff);
        IOPM_PA.store(iopm.pa(), Ordering::Relaxed);
        MSRPM_PA.store(msrpm.pa(), Ordering::Relaxed);
        Ok(Self { _iopm: iopm, _msrpm: msrpm })
    }
}

impl Drop for PermissionMaps {
    fn drop(&mut self) {
        IOPM_PA.store(0, Ordering::Relaxed);
        MSRPM_PA.store(0, Ordering::Relaxed);
    }
}

/// What nsvm knows about one CPU.
struct CpuSlot {
    /// The host save area while SVM is enabled on this CPU.
    hsave: Option<Page>,
    /// VM_HSAVE_PA as found before nsvm took the CPU, restored when leaving.
    saved_hsave_pa: u64,
}

/// The global SVM state.
struct SvmState {
    /// SVM leaf of the boot CPU (as probed at load).
    leaf: SvmLeaf,
    /// Physical address width.
    phys_bits: u8,
    /// `host_flags` bits.
    flags: u32,
    /// One slot per possible CPU id (`nr_cpu_ids`).
    cpus: KVec<CpuSlot>,
    /// Hotplug callback invocations (online + offline), including load and unload.
    hotplug_events: u64,
}

global_lock! {
    // SAFETY: initialized in `Ownership::acquire` before the hotplug callbacks
    // or the ioctl path can run.
    unsafe(uninit) static SVM: Mutex<SvmState> = SvmState {
        leaf: SvmLeaf { revision: 0, nasid: 0, features: cpuid::SvmFeatures::empty() },
        phys_bits: 0,
        flags: 0,
        cpus: KVec::new(),
        hotplug_events: 0,
    };
}

/// Checks that this processor has SVM (APM 15.4: CPUID Fn8000_0001 ECX bit 2)
/// and returns its SVM leaf (Fn8000_000A) and physical address width.
pub(crate) fn probe() -> Result<(SvmLeaf, u8)> {
    let (max_ext, ..) = hw::cpu::cpuid(0x8000_0000, 0);
    let (_, _, ecx, _) = hw::cpu::cpuid(cpuid::LEAF_EXT_FEATURES, 0);
    if max_ext < cpuid::LEAF_SVM || ecx & cpuid::EXT_FEATURES_ECX_SVM == 0 {
        pr_err!("this CPU has no AMD SVM (AMD-V): CPUID 0x80000001 ECX bit 2 is clear\n");
        pr_err!("under QEMU use -cpu EPYC,+svm,+npt or -cpu max; on hardware enable SVM in the firmware\n");
        return Err(ENODEV);
    }
    // The guest FPU state lives in one page per vCPU (vmrun::enter).
    hw::cpu::read_host_xcr0();
    if hw::cpu::host_xcr0() != 0 {
        let (_, xsave_size, ..) = hw::cpu::cpuid(0xd, 0);
        if xsave_size as usize > kernel::page::PAGE_SIZE {
            pr_err!("XSAVE area of {} bytes does not fit the one-page guest FPU buffer\n", xsave_size);
            return Err(ENODEV);
        }
    }
    let (a, b, c, d) = hw::cpu::cpuid(cpuid::LEAF_SVM, 0);
    let (sz, ..) = hw::cpu::cpuid(cpuid::LEAF_ADDR_SIZE, 0);
    Ok((SvmLeaf::decode(a, b, c, d), sz as u8))
}

/// SVM owned on every online CPU. Dropping it gives SVM back everywhere.
///
/// # Invariants
///
/// While it exists, `SVM` is initialized and every online CPU has EFER.SVME
/// set with a host save area from its slot.
pub(crate) struct Ownership {
    hotplug: Option<hw::cpu::CpuHotplug>,
}

impl Ownership {
    /// Enables SVM on every online CPU; fails (leaving every CPU as found)
    /// if any CPU refuses.
    pub(crate) fn acquire(leaf: SvmLeaf, phys_bits: u8) -> Result<Self> {
        // SAFETY: called once per module load, before anything uses `SVM`.
        unsafe { SVM.init() };
        {
            let mut s = SVM.lock();
            s.leaf = leaf;
            s.phys_bits = phys_bits;
            PHYS_BITS.store(phys_bits, Ordering::Relaxed);
            s.flags = 0;
            s.hotplug_events = 0;
            let n = kernel::cpu::nr_cpu_ids() as usize;
            let mut cpus = KVec::with_capacity(n, GFP_KERNEL)?;
            for _ in 0..n {
                cpus.push(CpuSlot { hsave: None, saved_hsave_pa: 0 }, GFP_KERNEL)?;
            }
            s.cpus = cpus;
        }
        let hotplug = match hw::cpu::CpuHotplug::setup(cpu_online, cpu_offline) {
            Ok(h) => h,
            Err(e) => {
                free_cpu_slots();
                return Err(e);
            }
        };
        Ok(Self { hotplug: Some(hotplug) })
    }
}

impl Drop for Ownership {
    fn drop(&mut self) {
        // Removing the hotplug state runs `cpu_offline` on every online CPU,
        // which frees each host save area; then the per-CPU table goes too
        // (the static outlives the module's data, nothing else frees it).
        drop(self.hotplug.take());
        free_cpu_slots();
    }
}

/// Frees the per-CPU table (every CPU is offline for nsvm by now).
fn free_cpu_slots() {
    let mut s = SVM.lock();
    s.cpus = KVec::new();
}

extern "C" fn cpu_online(cpu: c_uint) -> c_int {
    // Whatever its TLB holds now, the CPU's next entry flushes it.
    crate::vmrun::reset_cpu_asids(cpu);
    match enable_this_cpu(cpu) {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

extern "C" fn cpu_offline(cpu: c_uint) -> c_int {
    disable_this_cpu(cpu);
    0
}

/// Takes SVM on the current CPU, which the hotplug core says is `cpu`.
fn enable_this_cpu(cpu: u32) -> Result {
    let here = kernel::cpu::CpuId::current().as_u32();
    if here != cpu {
        pr_err!("hotplug callback for CPU {} ran on CPU {}\n", cpu, here);
        return Err(EINVAL);
    }
    let mut s = SVM.lock();
    s.hotplug_events += 1;
    let (_, _, ecx, _) = hw::cpu::cpuid(cpuid::LEAF_EXT_FEATURES, 0);
    if ecx & cpuid::EXT_FEATURES_ECX_SVM == 0 {
        pr_err!("CPU {}: no SVM (CPUID 0x80000001 ECX bit 2 clear)\n", cpu);
        return Err(ENODEV);
    }
    // APM 15.30.1: with VM_CR.SVMDIS set, EFER.SVME cannot be set. Emulators
    // that do not implement VM_CR (#GP on read) are taken as "not disabled".
    match hw::cpu::rdmsr(msr::VM_CR) {
        Ok(v) if v & vm_cr::SVMDIS != 0 => {
            let locked = if v & vm_cr::LOCK != 0 { ", locked" } else { "" };
            pr_err!(
                "CPU {}: SVM is disabled by the firmware (VM_CR.SVMDIS=1{}); enable SVM/AMD-V in the BIOS setup\n",
                cpu,
                locked
            );
            return Err(ENODEV);
        }
        Ok(v) => {
            if v & vm_cr::LOCK != 0 {
                s.flags |= host_flags::VM_CR_LOCKED;
            }
        }
        Err(_) => s.flags |= host_flags::VM_CR_UNREADABLE,
    }
    // APM 15.4: EFER.SVME set means some other software already enabled SVM
    // on this CPU; it owns the host save area and the VMCBs.
    let e = hw::cpu::rdmsr(msr::EFER)?;
    if e & efer::SVME != 0 {
        pr_err!(
            "CPU {}: EFER.SVME is already set: another hypervisor owns SVM (likely kvm_amd; unload it with `rmmod kvm_amd`)\n",
            cpu
        );
        return Err(EBUSY);
    }
    let slot = s.cpus.get_mut(cpu as usize).ok_or(EINVAL)?;
    if slot.hsave.is_some() {
        pr_err!("CPU {}: came online twice without going offline\n", cpu);
        return Err(EINVAL);
    }
    let page = Page::alloc_page(GFP_KERNEL | __GFP_ZERO)?;
    let pa = hw::mem::page_phys(&page);
    let saved = hw::cpu::rdmsr(msr::VM_HSAVE_PA).unwrap_or(0);
    // SAFETY: the page is kept in `slot.hsave` until `disable_this_cpu` has
    // written VM_HSAVE_PA back to its previous value.
    unsafe { hw::cpu::write_hsave_pa(pa)? };
    if let Err(err) = hw::cpu::set_efer_svme(true) {
        // SAFETY: restoring the value found; the new page is dropped after.
        let _ = unsafe { hw::cpu::write_hsave_pa(saved) };
        pr_err!("CPU {}: cannot set EFER.SVME\n", cpu);
        return Err(err);
    }
    slot.hsave = Some(page);
    slot.saved_hsave_pa = saved;
    if let (Some(g), Some(h)) = (GDT_BASE.get(cpu as usize), HSAVE_PA.get(cpu as usize)) {
        g.store(hw::cpu::gdt_base(), Ordering::Relaxed);
        h.store(pa, Ordering::Relaxed);
    }
    Ok(())
}

/// Gives SVM back on the current CPU: EFER.SVME cleared, VM_HSAVE_PA restored,
/// host save area freed.
fn disable_this_cpu(cpu: u32) {
    let mut s = SVM.lock();
    s.hotplug_events += 1;
    let Some(slot) = s.cpus.get_mut(cpu as usize) else { return };
    let Some(page) = slot.hsave.take() else { return };
    if let Some(h) = HSAVE_PA.get(cpu as usize) {
        h.store(0, Ordering::Relaxed);
    }
    if hw::cpu::set_efer_svme(false).is_err() {
        pr_err!("CPU {}: cannot clear EFER.SVME\n", cpu);
    }
    // SAFETY: writes back the address found at enable time, which belongs to
    // whoever set it (normally 0); our page is dropped only after this.
    if unsafe { hw::cpu::write_hsave_pa(slot.saved_hsave_pa) }.is_err() {
        pr_err!("CPU {}: cannot restore VM_HSAVE_PA\n", cpu);
    }
    drop(page);
}

/// What `NSVM_GET_HOST_INFO` reports.
pub(crate) fn host_info() -> NsvmHostInfo {
    let s = SVM.lock();
    let mut h = NsvmHostInfo::ZERO;
    h.version = NSVM_HOST_INFO_VERSION;
    let (eax, ebx, _, edx) = s.leaf.encode();
    h.svm_revision = eax;
    h.nasid = ebx;
    h.svm_features = edx;
    h.phys_bits = u32::from(s.phys_bits);
    h.cpus_online = hw::cpu::num_online_cpus();
    h.flags = s.flags;
    h.hotplug_events = s.hotplug_events;
    for (i, slot) in s.cpus.iter().enumerate() {
        if slot.hsave.is_some() {
            h.cpus_enabled += 1;
            h.percpu_bytes += kernel::page::PAGE_SIZE as u64;
            h.set_cpu_enabled(i);
        }
    }
    h
}
