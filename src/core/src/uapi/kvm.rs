// SPDX-License-Identifier: GPL-2.0
//! KVM system ioctls (on the `/dev/kvm`-style fd).

use super::*;
/// `KVM_GET_API_VERSION`.
pub const GET_API_VERSION: u32 = io(KVMIO, 0x00);
/// `KVM_CREATE_VM`.
pub const CREATE_VM: u32 = io(KVMIO, 0x01);
/// `KVM_GET_MSR_INDEX_LIST`.
pub const GET_MSR_INDEX_LIST: u32 = iowr(KVMIO, 0x02, sizes::KVM_MSR_LIST);
/// `KVM_CHECK_EXTENSION`.
pub const CHECK_EXTENSION: u32 = io(KVMIO, 0x03);
/// `KVM_GET_VCPU_MMAP_SIZE`.
pub const GET_VCPU_MMAP_SIZE: u32 = io(KVMIO, 0x04);
/// `KVM_GET_SUPPORTED_CPUID`.
pub const GET_SUPPORTED_CPUID: u32 = iowr(KVMIO, 0x05, sizes::KVM_CPUID2);
/// `KVM_GET_MSR_FEATURE_INDEX_LIST`.
pub const GET_MSR_FEATURE_INDEX_LIST: u32 = iowr(KVMIO, 0x0a, sizes::KVM_MSR_LIST);
/// `KVM_CREATE_VCPU` (VM fd).
pub const CREATE_VCPU: u32 = io(KVMIO, 0x41);
/// `KVM_SET_USER_MEMORY_REGION` (VM fd).
pub const SET_USER_MEMORY_REGION: u32 = iow(KVMIO, 0x46, sizes::KVM_USERSPACE_MEMORY_REGION);
/// `KVM_SET_TSS_ADDR` (VM fd).
pub const SET_TSS_ADDR: u32 = io(KVMIO, 0x47);
/// `KVM_SET_NR_MMU_PAGES` (VM fd; the argument is the count).
pub const SET_NR_MMU_PAGES: u32 = io(KVMIO, 0x44);
/// KVM's `KVM_MIN_ALLOC_MMU_PAGES`: smaller counts are `EINVAL`.
pub const MIN_ALLOC_MMU_PAGES: u64 = 64;
/// `KVM_SET_IDENTITY_MAP_ADDR` (VM fd).
pub const SET_IDENTITY_MAP_ADDR: u32 = iow(KVMIO, 0x48, 8);
/// `KVM_SET_BOOT_CPU_ID` (VM fd; the argument is the vCPU id itself).
pub const SET_BOOT_CPU_ID: u32 = io(KVMIO, 0x78);
/// `KVM_SET_VAPIC_ADDR` (vCPU fd).
pub const SET_VAPIC_ADDR: u32 = iow(KVMIO, 0x93, 8);
/// `KVM_CREATE_IRQCHIP` (VM fd).
pub const CREATE_IRQCHIP: u32 = io(KVMIO, 0x60);
/// `KVM_SET_USER_MEMORY_REGION2` (VM fd).
pub const SET_USER_MEMORY_REGION2: u32 = iow(KVMIO, 0x49, sizes::KVM_USERSPACE_MEMORY_REGION2);
/// `KVM_SET_CPUID2` (vCPU fd).
pub const SET_CPUID2: u32 = iow(KVMIO, 0x90, sizes::KVM_CPUID2);
/// `KVM_GET_CPUID2` (vCPU fd).
pub const GET_CPUID2: u32 = iowr(KVMIO, 0x91, sizes::KVM_CPUID2);
/// `KVM_GET_VCPU_EVENTS` (vCPU fd).
pub const GET_VCPU_EVENTS: u32 = ior(KVMIO, 0x9f, crate::kvm::vcpu_events::SIZE);
/// `KVM_SET_VCPU_EVENTS` (vCPU fd).
pub const SET_VCPU_EVENTS: u32 = iow(KVMIO, 0xa0, crate::kvm::vcpu_events::SIZE);
/// `KVM_NMI` (vCPU fd).
pub const NMI: u32 = io(KVMIO, 0x9a);
/// `KVM_INTERRUPT` (vCPU fd).
pub const INTERRUPT: u32 = iow(KVMIO, 0x86, 4);
/// `KVM_GET_STATS_FD` (VM and vCPU fds).
pub const GET_STATS_FD: u32 = io(KVMIO, 0xce);
/// `KVM_GET_MSRS` (vCPU fd).
pub const GET_MSRS: u32 = iowr(KVMIO, 0x88, 8);
/// `KVM_SET_MSRS` (vCPU fd).
pub const SET_MSRS: u32 = iow(KVMIO, 0x89, 8);
/// `KVM_GET_FPU` (vCPU fd).
pub const GET_FPU: u32 = ior(KVMIO, 0x8c, 416);
/// `KVM_SET_FPU` (vCPU fd).
pub const SET_FPU: u32 = iow(KVMIO, 0x8d, 416);
/// `KVM_GET_NESTED_STATE` (vCPU fd).
pub const GET_NESTED_STATE: u32 = iowr(KVMIO, 0xbe, crate::nested_state::HEADER_SIZE);
/// `KVM_SET_NESTED_STATE` (vCPU fd).
pub const SET_NESTED_STATE: u32 = iow(KVMIO, 0xbf, crate::nested_state::HEADER_SIZE);
/// `KVM_GET_LAPIC` (vCPU fd).
pub const GET_LAPIC: u32 = ior(KVMIO, 0x8e, crate::lapic::REG_SIZE);
/// `KVM_SET_LAPIC` (vCPU fd).
pub const SET_LAPIC: u32 = iow(KVMIO, 0x8f, crate::lapic::REG_SIZE);
/// `KVM_GET_MP_STATE` (vCPU fd).
pub const GET_MP_STATE: u32 = ior(KVMIO, 0x98, 4);
/// `KVM_SET_MP_STATE` (vCPU fd).
pub const SET_MP_STATE: u32 = iow(KVMIO, 0x99, 4);
/// `KVM_GET_TSC_KHZ` (vCPU fd).
pub const GET_TSC_KHZ: u32 = io(KVMIO, 0xa3);
/// `KVM_REGISTER_COALESCED_MMIO` (VM fd; `crate::coalesced`).
pub const REGISTER_COALESCED_MMIO: u32 = iow(KVMIO, 0x67, crate::coalesced::ZONE_SIZE);
/// `KVM_UNREGISTER_COALESCED_MMIO` (VM fd).
pub const UNREGISTER_COALESCED_MMIO: u32 = iow(KVMIO, 0x68, crate::coalesced::ZONE_SIZE);
/// `KVM_SET_DEVICE_ATTR` (vCPU fd: `crate::tsc::vcpu_attr`).
pub const SET_DEVICE_ATTR: u32 = iow(KVMIO, 0xe1, crate::tsc::vcpu_attr::SIZE);
/// `KVM_GET_DEVICE_ATTR` (vCPU fd).
pub const GET_DEVICE_ATTR: u32 = iow(KVMIO, 0xe2, crate::tsc::vcpu_attr::SIZE);
/// `KVM_HAS_DEVICE_ATTR` (vCPU fd).
pub const HAS_DEVICE_ATTR: u32 = iow(KVMIO, 0xe3, crate::tsc::vcpu_attr::SIZE);
/// `KVM_MAX_IRQ_ROUTES`: the most reserved I/O APIC pins and routes.
pub const MAX_IRQ_ROUTES: u64 = 4096;
/// `KVM_ENABLE_CAP` (VM and vCPU fds).
pub const ENABLE_CAP: u32 = iow(KVMIO, 0xa3, sizes::KVM_ENABLE_CAP);
/// `KVM_CREATE_PIT` (VM fd).
pub const CREATE_PIT: u32 = io(KVMIO, 0x64);
/// `KVM_CREATE_PIT2` (VM fd).
pub const CREATE_PIT2: u32 = iow(KVMIO, 0x77, sizes::KVM_PIT_CONFIG);
/// `KVM_GET_IRQCHIP` (VM fd).
pub const GET_IRQCHIP: u32 = iowr(KVMIO, 0x62, sizes::KVM_IRQCHIP);
/// `KVM_SET_IRQCHIP` (VM fd; `_IOR` in the header).
pub const SET_IRQCHIP: u32 = ior(KVMIO, 0x63, sizes::KVM_IRQCHIP);
/// `KVM_GET_PIT` (VM fd).
pub const GET_PIT: u32 = iowr(KVMIO, 0x65, sizes::KVM_PIT_STATE);
/// `KVM_SET_PIT` (VM fd; `_IOR` in the header).
pub const SET_PIT: u32 = ior(KVMIO, 0x66, sizes::KVM_PIT_STATE);
/// `KVM_GET_PIT2` (VM fd).
pub const GET_PIT2: u32 = ior(KVMIO, 0x9f, sizes::KVM_PIT_STATE2);
/// `KVM_SET_PIT2` (VM fd).
pub const SET_PIT2: u32 = iow(KVMIO, 0xa0, sizes::KVM_PIT_STATE2);
/// `KVM_REINJECT_CONTROL` (VM fd; `_IO` although it takes a pointer).
pub const REINJECT_CONTROL: u32 = io(KVMIO, 0x71);
/// `KVM_IRQ_LINE` (VM fd).
pub const IRQ_LINE: u32 = iow(KVMIO, 0x61, sizes::KVM_IRQ_LEVEL);
/// `KVM_IRQ_LINE_STATUS` (VM fd).
pub const IRQ_LINE_STATUS: u32 = iowr(KVMIO, 0x67, sizes::KVM_IRQ_LEVEL);
/// `KVM_SIGNAL_MSI` (VM fd).
pub const SIGNAL_MSI: u32 = iow(KVMIO, 0xa5, sizes::KVM_MSI);
/// `KVM_IRQFD` (VM fd).
pub const IRQFD: u32 = iow(KVMIO, 0x76, 32);
/// `KVM_SET_GSI_ROUTING` (VM fd).
pub const SET_GSI_ROUTING: u32 = iow(KVMIO, 0x6a, sizes::KVM_IRQ_ROUTING);
/// `KVM_GET_DIRTY_LOG` (VM fd).
pub const GET_DIRTY_LOG: u32 = iow(KVMIO, 0x42, crate::dirty_log::KVM_DIRTY_LOG_SIZE);
/// `KVM_CLEAR_DIRTY_LOG` (VM fd).
pub const CLEAR_DIRTY_LOG: u32 = iowr(KVMIO, 0xc0, crate::dirty_log::KVM_CLEAR_DIRTY_LOG_SIZE);
/// `KVM_RESET_DIRTY_RINGS` (VM fd).
pub const RESET_DIRTY_RINGS: u32 = io(KVMIO, 0xc7);
/// `KVM_MEMORY_ENCRYPT_OP` (VM and vCPU fds).
pub const MEMORY_ENCRYPT_OP: u32 = iowr(KVMIO, 0xba, 8);
/// `KVM_MEMORY_ENCRYPT_REG_REGION` (VM fd; `_IOR` in the header).
pub const MEMORY_ENCRYPT_REG_REGION: u32 = ior(KVMIO, 0xbb, sizes::KVM_ENC_REGION);
/// `KVM_MEMORY_ENCRYPT_UNREG_REGION` (VM fd; `_IOR` in the header).
pub const MEMORY_ENCRYPT_UNREG_REGION: u32 = ior(KVMIO, 0xbc, sizes::KVM_ENC_REGION);
/// `KVM_RUN` (vCPU fd).
pub const RUN: u32 = io(KVMIO, 0x80);
/// `KVM_GET_REGS` (vCPU fd).
pub const GET_REGS: u32 = ior(KVMIO, 0x81, sizes::KVM_REGS);
/// `KVM_SET_REGS` (vCPU fd).
pub const SET_REGS: u32 = iow(KVMIO, 0x82, sizes::KVM_REGS);
/// `KVM_GET_SREGS` (vCPU fd).
pub const GET_SREGS: u32 = ior(KVMIO, 0x83, sizes::KVM_SREGS);
/// `KVM_SET_SREGS` (vCPU fd).
pub const SET_SREGS: u32 = iow(KVMIO, 0x84, sizes::KVM_SREGS);
/// `KVM_GET_DEBUGREGS` (vCPU fd).
pub const GET_DEBUGREGS: u32 = ior(KVMIO, 0xa1, crate::xsave::KVM_DEBUGREGS_SIZE);
/// `KVM_SET_DEBUGREGS` (vCPU fd).
pub const SET_DEBUGREGS: u32 = iow(KVMIO, 0xa2, crate::xsave::KVM_DEBUGREGS_SIZE);
/// `KVM_GET_XSAVE` (vCPU fd).
pub const GET_XSAVE: u32 = ior(KVMIO, 0xa4, crate::xsave::KVM_XSAVE_SIZE);
/// `KVM_SET_XSAVE` (vCPU fd).
pub const SET_XSAVE: u32 = iow(KVMIO, 0xa5, crate::xsave::KVM_XSAVE_SIZE);
/// `KVM_GET_XCRS` (vCPU fd).
pub const GET_XCRS: u32 = ior(KVMIO, 0xa6, crate::xsave::KVM_XCRS_SIZE);
/// `KVM_SET_XCRS` (vCPU fd).
pub const SET_XCRS: u32 = iow(KVMIO, 0xa7, crate::xsave::KVM_XCRS_SIZE);
/// `KVM_GET_XSAVE2` (vCPU fd; copies `KVM_CHECK_EXTENSION(KVM_CAP_XSAVE2)` bytes).
pub const GET_XSAVE2: u32 = ior(KVMIO, 0xcf, crate::xsave::KVM_XSAVE_SIZE);
/// `KVM_X86_SETUP_MCE` (vCPU fd).
pub const X86_SETUP_MCE: u32 = iow(KVMIO, 0x9c, 8);
/// `KVM_X86_SET_MSR_FILTER` (VM fd; `struct kvm_msr_filter`).
pub const X86_SET_MSR_FILTER: u32 = iow(KVMIO, 0xc6, crate::msr_filter::FILTER_SIZE);
/// `KVM_X86_GET_MCE_CAP_SUPPORTED` (system fd).
pub const X86_GET_MCE_CAP_SUPPORTED: u32 = ior(KVMIO, 0x9d, 8);
/// `KVM_X86_SET_MCE` (vCPU fd).
pub const X86_SET_MCE: u32 = iow(KVMIO, 0x9e, crate::mce::KVM_X86_MCE_SIZE);
/// `KVM_SET_GUEST_DEBUG` (vCPU fd).
pub const SET_GUEST_DEBUG: u32 = iow(KVMIO, 0x9b, crate::guest_debug::KVM_GUEST_DEBUG_SIZE);
/// `KVM_SET_CLOCK` (VM fd).
pub const SET_CLOCK: u32 = iow(KVMIO, 0x7b, crate::clock::KVM_CLOCK_DATA_SIZE);
/// `KVM_GET_CLOCK` (VM fd).
pub const GET_CLOCK: u32 = ior(KVMIO, 0x7c, crate::clock::KVM_CLOCK_DATA_SIZE);
/// `KVM_KVMCLOCK_CTRL` (vCPU fd): the VMM stopped the guest.
pub const KVMCLOCK_CTRL: u32 = io(KVMIO, 0xad);
/// `KVM_IOEVENTFD` (VM fd).
pub const IOEVENTFD: u32 = iow(KVMIO, 0x79, crate::ioeventfd::KVM_IOEVENTFD_SIZE);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kvm_ioctl_numbers() {
        // Values as userspace computes them from include/uapi/linux/kvm.h.
        assert_eq!(kvm::GET_API_VERSION, 0xae00);
        assert_eq!(kvm::CREATE_VM, 0xae01);
        assert_eq!(kvm::GET_MSR_INDEX_LIST, 0xc004_ae02);
        assert_eq!(kvm::CHECK_EXTENSION, 0xae03);
        assert_eq!(kvm::GET_VCPU_MMAP_SIZE, 0xae04);
        assert_eq!(kvm::GET_SUPPORTED_CPUID, 0xc008_ae05);
        assert_eq!(kvm::CREATE_VCPU, 0xae41);
        assert_eq!(kvm::SET_USER_MEMORY_REGION, 0x4020_ae46);
        assert_eq!(kvm::RUN, 0xae80);
        assert_eq!(kvm::GET_REGS, 0x8090_ae81);
        assert_eq!(kvm::SET_SREGS, 0x4138_ae84);
    }

    #[test]
    fn vcpu_ioctl_numbers_match_kvm() {
        use kvm_bindings as kb;
        assert_eq!(kvm::GET_FPU, ior(KVMIO, 0x8c, size_of::<kb::kvm_fpu>()));
        assert_eq!(kvm::GET_DEBUGREGS, 0x8080_aea1);
        assert_eq!(kvm::SET_DEBUGREGS, 0x4080_aea2);
        assert_eq!(kvm::GET_XSAVE, 0x9000_aea4);
        assert_eq!(kvm::SET_XSAVE, 0x5000_aea5);
        assert_eq!(kvm::GET_XCRS, 0x8188_aea6);
        assert_eq!(kvm::SET_XCRS, 0x4188_aea7);
        assert_eq!(kvm::GET_XSAVE2, 0x9000_aecf);
        assert_eq!(kvm::IOEVENTFD, 0x4040_ae79);
        assert_eq!(kvm::X86_SETUP_MCE, 0x4008_ae9c);
        assert_eq!(kvm::SET_GUEST_DEBUG, 0x4048_ae9b);
        assert_eq!(kvm::SET_CLOCK, 0x4030_ae7b);
        assert_eq!(kvm::GET_CLOCK, 0x8030_ae7c);
        assert_eq!(crate::clock::KVM_CLOCK_DATA_SIZE, size_of::<kb::kvm_clock_data>());
        assert_eq!(crate::guest_debug::KVM_GUEST_DEBUG_SIZE, size_of::<kb::kvm_guest_debug>());
        assert_eq!(kvm::X86_GET_MCE_CAP_SUPPORTED, 0x8008_ae9d);
        assert_eq!(kvm::X86_SET_MSR_FILTER, 0x4188_aec6);
        assert_eq!(kvm::X86_SET_MCE, 0x4040_ae9e);
        assert_eq!(crate::mce::KVM_X86_MCE_SIZE, size_of::<kb::kvm_x86_mce>());
        assert_eq!(crate::xsave::KVM_XCRS_SIZE, size_of::<kb::kvm_xcrs>());
        assert_eq!(crate::xsave::KVM_DEBUGREGS_SIZE, size_of::<kb::kvm_debugregs>());
        assert_eq!(crate::xsave::KVM_XSAVE_SIZE, size_of::<kb::kvm_xsave>());
        assert_eq!(crate::ioeventfd::KVM_IOEVENTFD_SIZE, size_of::<kb::kvm_ioeventfd>());
        assert_eq!(kvm::GET_MSRS, 0xc008_ae88);
        assert_eq!(kvm::SET_MSRS, 0x4008_ae89);
        assert_eq!(kvm::GET_TSC_KHZ, 0xaea3);
        assert_eq!(kvm::REGISTER_COALESCED_MMIO, 0x4010_ae67);
        assert_eq!(kvm::UNREGISTER_COALESCED_MMIO, 0x4010_ae68);
        assert_eq!(kvm::SET_DEVICE_ATTR, 0x4018_aee1);
        assert_eq!(kvm::GET_DEVICE_ATTR, 0x4018_aee2);
        assert_eq!(kvm::HAS_DEVICE_ATTR, 0x4018_aee3);
        assert_eq!(kvm::KVMCLOCK_CTRL, 0xaead);
        assert_eq!(kvm::INTERRUPT, 0x4004_ae86);
        assert_eq!(kvm::NMI, 0xae9a);
        assert_eq!(kvm::GET_VCPU_EVENTS, 0x8040_ae9f);
        assert_eq!(kvm::SET_VCPU_EVENTS, 0x4040_aea0);
        assert_eq!(kvm::GET_STATS_FD, 0xaece);
        // _IOWR(KVMIO, 0xbe, struct kvm_nested_state) and _IOW(.., 0xbf, ..).
        assert_eq!(kvm::GET_NESTED_STATE, 0xc080_aebe);
        assert_eq!(kvm::SET_NESTED_STATE, 0x4080_aebf);
        assert_eq!(size_of::<kb::kvm_nested_state>(), crate::nested_state::HEADER_SIZE);
    }
}
