// SPDX-License-Identifier: GPL-2.0
//! The bootstrap processor (BSP): `KVM_SET_BOOT_CPU_ID`'s rules and what
//! being the BSP changes for a vCPU, as KVM 7.2 decides it
//! (`arch/x86/kvm/x86.c`, `lapic.c`, `regs.c`). Two notions, as in KVM:
//! the *reset BSP* is the vCPU whose id is the VM's boot CPU id
//! (`kvm_vcpu_is_reset_bsp`: IA32_APIC_BASE.BSP at RESET, the initial MP
//! state, LINT0 in ExtINT mode); the *BSP* is any vCPU whose
//! IA32_APIC_BASE has the BSP bit now (`kvm_vcpu_is_bsp`: where INIT
//! leaves it, `KVM_SET_SREGS`'s reset-vector rule), which userspace and
//! the guest can change.

use crate::msr::apic_base;
use crate::x86::cr0;

/// `KVM_MP_STATE_*` (`include/uapi/linux/kvm.h`): the values nsvm uses.
pub mod mp {
    /// Running (or ready to run).
    pub const RUNNABLE: u32 = 0;
    /// An AP not yet started: waits for INIT.
    pub const UNINITIALIZED: u32 = 1;
    /// INIT taken: waits for a SIPI.
    pub const INIT_RECEIVED: u32 = 2;
    /// HLT in the kernel (in-kernel APIC).
    pub const HALTED: u32 = 3;
    /// A SIPI arrived (set only by userspace).
    pub const SIPI_RECEIVED: u32 = 4;
}

/// Why `KVM_SET_BOOT_CPU_ID` refuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootCpuError {
    /// A vCPU was created (or is being created): `EBUSY`.
    Busy,
    /// The id is beyond the VM's vCPU ids: `EINVAL`.
    Invalid,
}

/// `KVM_SET_BOOT_CPU_ID(id)` on a VM that has created vCPUs or not
/// (`vcpus_created`, KVM's `kvm->created_vcpus`, which counts a creation
/// from its start) and whose vCPU ids are below `max_vcpu_ids` (the value
/// of `KVM_CAP_MAX_VCPU_ID`): KVM checks the vCPUs first, then compares
/// the id with `>`, so the id equal to the limit is accepted although no
/// vCPU can have it (such a VM has no reset BSP at all). The id is the
/// ioctl's `unsigned long` argument, whole.
pub fn set_boot_cpu_id(vcpus_created: bool, id: u64, max_vcpu_ids: u32) -> Result<u32, BootCpuError> {
    if vcpus_created {
        return Err(BootCpuError::Busy);
    }
    if id > u64::from(max_vcpu_ids) {
        return Err(BootCpuError::Invalid);
    }
    Ok(id as u32)
}

/// The MP state of a new vCPU (`kvm_arch_vcpu_create`): RUNNABLE without
/// an in-kernel APIC or for the reset BSP, UNINITIALIZED (waiting for
/// INIT) for the others.
pub const fn initial_mp_state(apic_in_kernel: bool, reset_bsp: bool) -> u32 {
    if !apic_in_kernel || reset_bsp {
        mp::RUNNABLE
    } else {
        mp::UNINITIALIZED
    }
}

/// The MP state INIT leaves (`kvm_apic_accept_events`): the BSP — by its
/// IA32_APIC_BASE now, not by its id — runs on from the reset vector, an
/// AP waits for a SIPI.
pub const fn mp_state_after_init(apic_base_now: u64) -> u32 {
    if apic_base_now & apic_base::BSP != 0 {
        mp::RUNNABLE
    } else {
        mp::INIT_RECEIVED
    }
}

/// KVM's rule for userspace that resets a vCPU by hand ("older userspace
/// won't unhalt the vcpu on reset", `__set_sregs_common`): after
/// `KVM_SET_SREGS`, a BSP (IA32_APIC_BASE as just set) at the reset
/// vector F000:FFF0 (CS selector 0xf000, base 0xffff0000, RIP 0xfff0) in
/// real mode becomes RUNNABLE.
pub const fn sregs_make_runnable(apic_base_now: u64, rip: u64, cs_selector: u16, cs_base: u64, cr0_now: u64) -> bool {
    apic_base_now & apic_base::BSP != 0 && rip == 0xfff0 && cs_selector == 0xf000 && cs_base == 0xffff_0000 && cr0_now & cr0::PE == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_boot_cpu_id_rules() {
        assert_eq!(set_boot_cpu_id(false, 0, 64), Ok(0));
        assert_eq!(set_boot_cpu_id(false, 63, 64), Ok(63));
        // KVM's `arg > KVM_MAX_VCPU_IDS`: the limit itself is accepted.
        assert_eq!(set_boot_cpu_id(false, 64, 64), Ok(64));
        assert_eq!(set_boot_cpu_id(false, 65, 64), Err(BootCpuError::Invalid));
        // The whole unsigned long: no truncation to 32 bits first.
        assert_eq!(set_boot_cpu_id(false, 1 << 32, 64), Err(BootCpuError::Invalid));
        assert_eq!(set_boot_cpu_id(false, u64::MAX, 64), Err(BootCpuError::Invalid));
        // vCPUs first: EBUSY even for an id that is also invalid.
        assert_eq!(set_boot_cpu_id(true, 0, 64), Err(BootCpuError::Busy));
        assert_eq!(set_boot_cpu_id(true, u64::MAX, 64), Err(BootCpuError::Busy));
    }

    #[test]
    fn mp_states() {
        assert_eq!(initial_mp_state(false, false), mp::RUNNABLE);
        assert_eq!(initial_mp_state(false, true), mp::RUNNABLE);
        assert_eq!(initial_mp_state(true, true), mp::RUNNABLE);
        assert_eq!(initial_mp_state(true, false), mp::UNINITIALIZED);
        assert_eq!(mp_state_after_init(apic_base::reset_value(true)), mp::RUNNABLE);
        assert_eq!(mp_state_after_init(apic_base::reset_value(false)), mp::INIT_RECEIVED);
        // Only the bit counts: a disabled APIC with BSP set is still the BSP.
        assert_eq!(mp_state_after_init(apic_base::BSP), mp::RUNNABLE);
    }

    #[test]
    fn sregs_reset_vector_rule() {
        let bsp = apic_base::reset_value(true);
        let ap = apic_base::reset_value(false);
        assert!(sregs_make_runnable(bsp, 0xfff0, 0xf000, 0xffff_0000, 0x6000_0010));
        assert!(!sregs_make_runnable(ap, 0xfff0, 0xf000, 0xffff_0000, 0x6000_0010));
        assert!(!sregs_make_runnable(bsp, 0x1000, 0xf000, 0xffff_0000, 0x10));
        assert!(!sregs_make_runnable(bsp, 0xfff0, 0xf000, 0xf_0000, 0x10));
        assert!(!sregs_make_runnable(bsp, 0xfff0, 0, 0xffff_0000, 0x10));
        assert!(!sregs_make_runnable(bsp, 0xfff0, 0xf000, 0xffff_0000, 0x11));
    }
}
