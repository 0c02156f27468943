// SPDX-License-Identifier: GPL-2.0
//! nsvm: a nested-virtualization research hypervisor for AMD SVM.
//!
//! At load it takes SVM on every CPU (`svm`), then registers `/dev/nsvm`
//! (`dev`), which speaks the KVM UAPI. Unloading reverses both; the module
//! cannot be unloaded while a file of it is open.
//!
//! `unsafe` is confined to the leaf modules `hw` (one file per concern),
//! `svm`, `vmrun` and `fops`, plus the calls of `hw::mem`'s raw accessors in
//! `npt` (its own page tables and the pinned guest pages it maps) and the
//! debugfs registration in `vcpu/mod.rs`, each with its SAFETY comment
//! (clippy's `undocumented_unsafe_blocks` is denied in `make test`). The
//! module map is in docs/architecture.md.

use kernel::prelude::*;

mod dev;
mod fops;
mod hw;
mod npt;
mod svm;
mod vcpu;
mod vm;
mod vmrun;

module! {
    type: Nsvm,
    name: "nsvm",
    authors: ["nsvm developers"],
    description: "nsvm: nested SVM research hypervisor with the KVM UAPI on /dev/nsvm",
    license: "GPL",
    params: {
        dev_mode: u32 {
            default: 0o600,
            description: "Permission bits of /dev/nsvm (default 0600: root only; 0666 opens it to every user)",
        },
        exit_after_injection: u32 {
            default: 2,
            description: "1: an external interrupt injected at VMRUN is followed by #VMEXIT(INTR) before the guest's next instruction (a self-IPI), which QEMU's TCG needs: its VMRUN leaves the vector pending and may deliver it twice (docs/architecture.md). 0: never. 2 (default): 1 when the processor lacks NRIPS (QEMU TCG), 0 otherwise",
        },
        flush_every_entry: u32 {
            default: 0,
            description: "1: flush the whole TLB on every VMRUN. 0 (default): per-vCPU ASIDs, flushed only when needed (nsvm_core::tlb::VmcbAsid)",
        },
        npt_huge: u32 {
            default: 1,
            description: "1 (default): guest memory the VMM maps with 2 MiB pages is mapped in NPT01 with 2 MiB entries. 0: 4 KiB entries only (for comparisons)",
        },
        event_log: u32 {
            default: 0,
            description: "1: each vCPU records its last 256 interrupt events (injections, EXITINTINFO, HLT, TSC deadlines, IPIs, EOIs) for its debugfs file. 2: every exit too, frozen at the guest's first #GP or #DF, copied to the kernel log when the vCPU goes. 0 (default): off",
        },
        vmcb12_checks: u32 {
            default: 1,
            description: "Check vmcb12 before the processor sees it (APM 15.5.1; default 1). 0 is for tests only: the processor's own refusals then reach L1",
        },
    },
}

struct Nsvm {
    // Field order is drop order: the device goes first, then debugfs, then
    // SVM is released.
    _dev: hw::files::DevNode,
    _debugfs: hw::debugfs::DebugfsRoot,
    _maps: svm::PermissionMaps,
    _svm: svm::Ownership,
    _notifiers: hw::cpu::PreemptNotifiers,
}

impl kernel::Module for Nsvm {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let mode = *module_parameters::dev_mode.value();
        if mode == 0 || mode & !0o777 != 0 {
            pr_err!("dev_mode={:#o} is not a permission mode (use e.g. 0600 or 0666)\n", mode);
            return Err(EINVAL);
        }
        let flush = *module_parameters::flush_every_entry.value() != 0;
        vmrun::FLUSH_EVERY_ENTRY.store(flush, core::sync::atomic::Ordering::Relaxed);
        vcpu::EVENT_LOG.store(*module_parameters::event_log.value(), core::sync::atomic::Ordering::Relaxed);
        vm::NPT_HUGE.store(*module_parameters::npt_huge.value() != 0, core::sync::atomic::Ordering::Relaxed);
        let (leaf, phys_bits) = svm::probe()?;
        svm::set_host_features(leaf.features);
        let guard = match *module_parameters::exit_after_injection.value() {
            0 => false,
            1 => true,
            _ => !leaf.features.contains(nsvm_core::cpuid::SvmFeatures::NRIPS),
        };
        vmrun::EXIT_AFTER_INJECTION.store(guard, core::sync::atomic::Ordering::Relaxed);
        vmrun::set_asid_features(leaf.nasid, leaf.features.contains(nsvm_core::cpuid::SvmFeatures::FLUSH_BY_ASID));
        let notifiers = hw::cpu::PreemptNotifiers::enable();
        let svm = svm::Ownership::acquire(leaf, phys_bits)?;
        let maps = svm::PermissionMaps::new()?;
        let debugfs = hw::debugfs::DebugfsRoot::new();
        let dev = hw::files::DevNode::register(mode as u16)?;
        let info = svm::host_info();
        pr_info!(
            "SVM revision {}, {} ASIDs, features {:#x}; enabled on {} of {} CPUs; /dev/nsvm mode {:o}\n",
            info.svm_revision,
            info.nasid,
            info.svm_features,
            info.cpus_enabled,
            info.cpus_online,
            mode
        );
        Ok(Nsvm { _dev: dev, _debugfs: debugfs, _maps: maps, _svm: svm, _notifiers: notifiers })
    }
}

impl Drop for Nsvm {
    fn drop(&mut self) {
        pr_info!("unloading: /dev/nsvm removed, SVM given back on every CPU\n");
    }
}
