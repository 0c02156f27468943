// SPDX-License-Identifier: GPL-2.0
//! The userspace ABI of `/dev/nsvm`: KVM's ioctl numbers and capability
//! numbers (`include/uapi/linux/kvm.h` of Linux 7.2) and nsvm's own research
//! ioctls (magic [`NSVMIO`], listed in `docs/uapi.md`).
//!
//! The decoding of an ioctl command into what the module must do lives here so
//! it is unit-tested on the host; the module only carries out the result.

use core::mem::size_of;
use static_assertions::const_assert_eq;

/// `KVM_API_VERSION`: the value `KVM_GET_API_VERSION` returns.
pub const KVM_API_VERSION: i32 = 12;
/// KVM's ioctl magic.
pub const KVMIO: u32 = 0xae;
/// nsvm's own ioctl magic (unassigned in `Documentation/userspace-api/ioctl/ioctl-number.rst`).
pub const NSVMIO: u32 = 0xb7;

const IOC_NRBITS: u32 = 8;
const IOC_TYPEBITS: u32 = 8;
const IOC_SIZEBITS: u32 = 14;
const IOC_NRSHIFT: u32 = 0;
const IOC_TYPESHIFT: u32 = IOC_NRSHIFT + IOC_NRBITS;
const IOC_SIZESHIFT: u32 = IOC_TYPESHIFT + IOC_TYPEBITS;
const IOC_DIRSHIFT: u32 = IOC_SIZESHIFT + IOC_SIZEBITS;
/// No data transfer.
pub const IOC_NONE: u32 = 0;
/// Userspace writes, kernel reads.
pub const IOC_WRITE: u32 = 1;
/// Kernel writes, userspace reads.
pub const IOC_READ: u32 = 2;

/// `_IOC(dir, type, nr, size)` of `include/uapi/asm-generic/ioctl.h`.
pub const fn ioc(dir: u32, ty: u32, nr: u32, size: usize) -> u32 {
    (dir << IOC_DIRSHIFT) | (ty << IOC_TYPESHIFT) | (nr << IOC_NRSHIFT) | ((size as u32) << IOC_SIZESHIFT)
}
/// `_IO(type, nr)`.
pub const fn io(ty: u32, nr: u32) -> u32 {
    ioc(IOC_NONE, ty, nr, 0)
}
/// `_IOR(type, nr, size)`.
pub const fn ior(ty: u32, nr: u32, size: usize) -> u32 {
    ioc(IOC_READ, ty, nr, size)
}
/// `_IOW(type, nr, size)`.
pub const fn iow(ty: u32, nr: u32, size: usize) -> u32 {
    ioc(IOC_WRITE, ty, nr, size)
}
/// `_IOWR(type, nr, size)`.
pub const fn iowr(ty: u32, nr: u32, size: usize) -> u32 {
    ioc(IOC_READ | IOC_WRITE, ty, nr, size)
}
/// The type (magic) field of an ioctl command.
pub const fn ioc_type(cmd: u32) -> u32 {
    (cmd >> IOC_TYPESHIFT) & ((1 << IOC_TYPEBITS) - 1)
}
/// The number field of an ioctl command.
pub const fn ioc_nr(cmd: u32) -> u32 {
    (cmd >> IOC_NRSHIFT) & ((1 << IOC_NRBITS) - 1)
}
/// The size field of an ioctl command.
pub const fn ioc_size(cmd: u32) -> u32 {
    (cmd >> IOC_SIZESHIFT) & ((1 << IOC_SIZEBITS) - 1)
}
/// The direction field of an ioctl command.
pub const fn ioc_dir(cmd: u32) -> u32 {
    cmd >> IOC_DIRSHIFT
}

/// Sizes of KVM structs used in ioctl numbers (checked against `kvm-bindings`
/// in the host tests).
pub mod sizes {
    /// `struct kvm_msr_list` header.
    pub const KVM_MSR_LIST: usize = 4;
    /// `struct kvm_cpuid2` header.
    pub const KVM_CPUID2: usize = 8;
    /// `struct kvm_userspace_memory_region`.
    pub const KVM_USERSPACE_MEMORY_REGION: usize = 32;
    /// `struct kvm_userspace_memory_region2`.
    pub const KVM_USERSPACE_MEMORY_REGION2: usize = 160;
    /// `struct kvm_cpuid_entry2`.
    pub const KVM_CPUID_ENTRY2: usize = 40;
    /// `struct kvm_regs`.
    pub const KVM_REGS: usize = 144;
    /// `struct kvm_sregs`.
    pub const KVM_SREGS: usize = 312;
    /// `struct kvm_enable_cap`.
    pub const KVM_ENABLE_CAP: usize = 104;
    /// `struct kvm_irqchip`.
    pub const KVM_IRQCHIP: usize = 520;
    /// `struct kvm_pit_state`.
    pub const KVM_PIT_STATE: usize = 72;
    /// `struct kvm_pit_state2`.
    pub const KVM_PIT_STATE2: usize = 112;
    /// `struct kvm_pit_config`.
    pub const KVM_PIT_CONFIG: usize = 64;
    /// `struct kvm_reinject_control`.
    pub const KVM_REINJECT_CONTROL: usize = 32;
    /// `struct kvm_irq_level`.
    pub const KVM_IRQ_LEVEL: usize = 8;
    /// `struct kvm_msi`.
    pub const KVM_MSI: usize = 32;
    /// `struct kvm_irq_routing` header.
    pub const KVM_IRQ_ROUTING: usize = 8;
    /// `struct kvm_enc_region`.
    pub const KVM_ENC_REGION: usize = 16;
}

/// KVM system ioctls (on the `/dev/kvm`-style fd).
pub mod kvm {
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
}

/// KVM capability numbers (`KVM_CAP_*`) with their names, for
/// `KVM_CHECK_EXTENSION` and for `nsvm info`.
pub mod cap {
    macro_rules! caps {
        ($($name:ident = $v:expr),* $(,)?) => {
            $( #[doc = concat!("`KVM_CAP_", stringify!($name), "`.")] pub const $name: u32 = $v; )*
            /// Every capability nsvm knows by name, in number order.
            pub const NAMED: &[(u32, &str)] = &[$(($v, stringify!($name))),*];
        };
    }
    caps! {
        IRQCHIP = 0, HLT = 1, USER_MEMORY = 3, SET_TSS_ADDR = 4, EXT_CPUID = 7, NR_VCPUS = 9,
        NR_MEMSLOTS = 10, PIT = 11, MP_STATE = 14, SYNC_MMU = 16, DESTROY_MEMORY_REGION_WORKS = 21, SET_GUEST_DEBUG = 23,
        REINJECT_CONTROL = 24, IRQ_ROUTING = 25, IRQ_INJECT_STATUS = 26, JOIN_MEMORY_REGIONS_WORKS = 30, MCE = 31, IRQFD = 32, PIT2 = 33, SET_BOOT_CPU_ID = 34, PIT_STATE2 = 35, IOEVENTFD = 36,
        SET_IDENTITY_MAP_ADDR = 37, ADJUST_CLOCK = 39, INTERNAL_ERROR_DATA = 40, VCPU_EVENTS = 41, DEBUGREGS = 50,
        X86_ROBUST_SINGLESTEP = 51, ENABLE_CAP = 54, XSAVE = 55, XCRS = 56, TSC_CONTROL = 60,
        GET_TSC_KHZ = 61, MAX_VCPUS = 66, TSC_DEADLINE_TIMER = 72, KVMCLOCK_CTRL = 76, SIGNAL_MSI = 77, READONLY_MEM = 81, IRQFD_RESAMPLE = 82,
        IOEVENTFD_NO_LENGTH = 100, SPLIT_IRQCHIP = 121, IOEVENTFD_ANY_LENGTH = 122, MAX_VCPU_ID = 128, X2APIC_API = 129,
        IMMEDIATE_EXIT = 136, GET_MSR_FEATURES = 153, NESTED_STATE = 157, MANUAL_DIRTY_LOG_PROTECT2 = 168,
        X86_USER_SPACE_MSR = 188, SET_GUEST_DEBUG2 = 195, EXIT_HYPERCALL = 201, BINARY_STATS_FD = 203, XSAVE2 = 208,
        X86_TRIPLE_FAULT_EVENT = 218, USER_MEMORY2 = 231,
    }

    /// The capabilities `/dev/nsvm` supports, with the value
    /// `KVM_CHECK_EXTENSION` returns for each. Everything else returns 0.
    pub const SUPPORTED: &[(u32, i32)] = &[
        // The in-kernel irqchip: full (`KVM_CREATE_IRQCHIP`: PICs, I/O
        // APIC and local APICs) or split (`KVM_CAP_SPLIT_IRQCHIP`).
        (IRQCHIP, 1),
        // KVM_IRQ_LINE_STATUS; KVM_IRQFD_FLAG_RESAMPLE (full irqchip).
        (IRQ_INJECT_STATUS, 1),
        (IRQFD_RESAMPLE, 1),
        (USER_MEMORY, 1),
        (SET_TSS_ADDR, 1),
        (SET_IDENTITY_MAP_ADDR, 1),
        (EXT_CPUID, 1),
        (NR_VCPUS, 64),
        (NR_MEMSLOTS, crate::memslot::MAX_SLOTS as i32),
        (MAX_VCPUS, 64),
        (MAX_VCPU_ID, 64),
        // KVM_SET_BOOT_CPU_ID (nsvm_core::bsp).
        (SET_BOOT_CPU_ID, 1),
        (IMMEDIATE_EXIT, 1),
        (USER_MEMORY2, 1),
        (BINARY_STATS_FD, 1),
        (GET_TSC_KHZ, 1),
        (NESTED_STATE, crate::nested_state::MAX_SIZE as i32),
        (VCPU_EVENTS, 1),
        // Guest memory follows the VMM's page tables (an MMU notifier per VM).
        (SYNC_MMU, 1),
        // The in-kernel local APIC (split irqchip, nsvm_core::lapic).
        (SPLIT_IRQCHIP, 1),
        (TSC_DEADLINE_TIMER, 1),
        (MP_STATE, 1),
        // KVM_X2APIC_API_USE_32BIT_IDS, _DISABLE_BROADCAST_QUIRK and the
        // two EOI-broadcast-suppression modes.
        (X2APIC_API, 0xf),
        (SIGNAL_MSI, 1),
        (IRQ_ROUTING, crate::lapic::MAX_IRQ_ROUTES as i32),
        (IRQFD, 1),
        // The in-kernel PIT (nsvm_core::pit, vm/pit.rs): KVM_CREATE_PIT(2),
        // KVM_GET/SET_PIT(2), KVM_REINJECT_CONTROL.
        (PIT, 1),
        (PIT2, 1),
        (PIT_STATE2, 1),
        (REINJECT_CONTROL, 1),
        // Slot deletion and merging work (KVM answers 1 unconditionally).
        (DESTROY_MEMORY_REGION_WORKS, 1),
        (JOIN_MEMORY_REGIONS_WORKS, 1),
        // KVM_EXIT_INTERNAL_ERROR fills `internal.ndata` and `data`.
        (INTERNAL_ERROR_DATA, 1),
        (DEBUGREGS, 1),
        // KVM_IOEVENTFD on PIO and MMIO, length 0 (any) included.
        (IOEVENTFD, 1),
        (IOEVENTFD_NO_LENGTH, 1),
        (IOEVENTFD_ANY_LENGTH, 1),
        (XSAVE, 1),
        (XCRS, 1),
        // Machine-check banks (`KVM_X86_SETUP_MCE`, `KVM_X86_SET_MCE`).
        (MCE, crate::mce::MAX_BANKS as i32),
        // KVM_SET_GUEST_DEBUG: single step, hardware and software
        // breakpoints; GUEST_DEBUG2 lists the control bits.
        (SET_GUEST_DEBUG, 1),
        // Single steps also over what L0 emulates or userspace completes.
        (X86_ROBUST_SINGLESTEP, 1),
        // KVM_GET/SET_CLOCK: the flags KVM_SET_CLOCK accepts.
        (ADJUST_CLOCK, crate::clock::flags::VALID as i32),
        // kvmclock (nsvm_core::kvmclock): KVM_KVMCLOCK_CTRL.
        (KVMCLOCK_CTRL, 1),
        (SET_GUEST_DEBUG2, crate::guest_debug::flags::VALID as i32),
        // Bytes KVM_GET_XSAVE2 copies: the guest image fits 4096 (checked
        // at load), so `struct kvm_xsave`'s size, as KVM reports then.
        (XSAVE2, crate::xsave::KVM_XSAVE_SIZE as i32),
        // Dirty logging (KVM_GET_DIRTY_LOG, KVM_CLEAR_DIRTY_LOG): the
        // manual-protect flags x86 offers (`KVM_DIRTY_LOG_MANUAL_CAPS`).
        (MANUAL_DIRTY_LOG_PROTECT2, crate::dirty_log::MANUAL_CAPS as i32),
    ];

    /// The answer of `KVM_CHECK_EXTENSION(cap)`: the capability's value, or 0
    /// when unsupported (KVM's semantics; never an error).
    pub fn check_extension(cap: u64) -> i32 {
        SUPPORTED.iter().find(|(c, _)| u64::from(*c) == cap).map_or(0, |(_, v)| *v)
    }

    /// Name of a capability (without `KVM_CAP_`).
    pub fn name(cap: u32) -> Option<&'static str> {
        NAMED.iter().find(|(c, _)| *c == cap).map(|(_, n)| *n)
    }
}

/// ABI version of [`NsvmHostInfo`]; bumped on incompatible changes.
pub const NSVM_HOST_INFO_VERSION: u32 = 1;
/// Number of CPUs [`NsvmHostInfo::cpus_svm`] can describe.
pub const NSVM_MAX_CPUS: usize = 256;

/// `NSVM_GET_HOST_INFO`: what the module found and owns on the host.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NsvmHostInfo {
    /// [`NSVM_HOST_INFO_VERSION`].
    pub version: u32,
    /// SVM revision (CPUID 0x8000000A EAX 7:0).
    pub svm_revision: u32,
    /// Number of ASIDs (CPUID 0x8000000A EBX).
    pub nasid: u32,
    /// SVM features (CPUID 0x8000000A EDX).
    pub svm_features: u32,
    /// Physical address bits (CPUID 0x80000008 EAX 7:0).
    pub phys_bits: u32,
    /// Number of online CPUs.
    pub cpus_online: u32,
    /// Number of CPUs on which nsvm has EFER.SVME set and a host save area.
    pub cpus_enabled: u32,
    /// Flags, see [`host_flags`].
    pub flags: u32,
    /// CPU hotplug transitions nsvm handled since load (online + offline).
    pub hotplug_events: u64,
    /// Bytes the module holds for per-CPU SVM state (host save areas).
    pub percpu_bytes: u64,
    /// Bit n set: CPU n has SVM enabled by nsvm.
    pub cpus_svm: [u64; NSVM_MAX_CPUS / 64],
}

const_assert_eq!(size_of::<NsvmHostInfo>(), 80);

/// Bits of [`NsvmHostInfo::flags`].
pub mod host_flags {
    /// VM_CR could not be read (e.g. not emulated); SVMDIS was assumed clear.
    pub const VM_CR_UNREADABLE: u32 = 1 << 0;
    /// VM_CR.LOCK was set.
    pub const VM_CR_LOCKED: u32 = 1 << 1;
}

impl NsvmHostInfo {
    /// All zero.
    pub const ZERO: Self = Self {
        version: 0,
        svm_revision: 0,
        nasid: 0,
        svm_features: 0,
        phys_bits: 0,
        cpus_online: 0,
        cpus_enabled: 0,
        flags: 0,
        hotplug_events: 0,
        percpu_bytes: 0,
        cpus_svm: [0; NSVM_MAX_CPUS / 64],
    };
    /// Whether CPU `cpu` is marked as SVM-enabled.
    pub const fn cpu_enabled(&self, cpu: usize) -> bool {
        cpu < NSVM_MAX_CPUS && self.cpus_svm[cpu / 64] & (1 << (cpu % 64)) != 0
    }
    /// Marks CPU `cpu` SVM-enabled (ignored beyond [`NSVM_MAX_CPUS`]).
    pub fn set_cpu_enabled(&mut self, cpu: usize) {
        if cpu < NSVM_MAX_CPUS {
            self.cpus_svm[cpu / 64] |= 1 << (cpu % 64);
        }
    }
    /// The struct as bytes, for copying to userspace.
    pub fn to_bytes(&self) -> [u8; size_of::<Self>()] {
        let mut b = [0u8; size_of::<Self>()];
        let mut put = |off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
        put(0, &self.version.to_ne_bytes());
        put(4, &self.svm_revision.to_ne_bytes());
        put(8, &self.nasid.to_ne_bytes());
        put(12, &self.svm_features.to_ne_bytes());
        put(16, &self.phys_bits.to_ne_bytes());
        put(20, &self.cpus_online.to_ne_bytes());
        put(24, &self.cpus_enabled.to_ne_bytes());
        put(28, &self.flags.to_ne_bytes());
        put(32, &self.hotplug_events.to_ne_bytes());
        put(40, &self.percpu_bytes.to_ne_bytes());
        for (i, w) in self.cpus_svm.iter().enumerate() {
            put(48 + 8 * i, &w.to_ne_bytes());
        }
        b
    }
    /// Parses bytes written by [`Self::to_bytes`].
    pub fn from_bytes(b: &[u8; size_of::<Self>()]) -> Self {
        let u32_at = |o: usize| u32::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u64_at = |o: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[o..o + 8]);
            u64::from_ne_bytes(x)
        };
        let mut cpus_svm = [0u64; NSVM_MAX_CPUS / 64];
        for (i, w) in cpus_svm.iter_mut().enumerate() {
            *w = u64_at(48 + 8 * i);
        }
        Self {
            version: u32_at(0),
            svm_revision: u32_at(4),
            nasid: u32_at(8),
            svm_features: u32_at(12),
            phys_bits: u32_at(16),
            cpus_online: u32_at(20),
            cpus_enabled: u32_at(24),
            flags: u32_at(28),
            hotplug_events: u64_at(32),
            percpu_bytes: u64_at(40),
            cpus_svm,
        }
    }
}

/// nsvm's own ioctls on the system fd.
pub mod nsvm {
    use super::*;
    /// `NSVM_GET_HOST_INFO`: fills an [`NsvmHostInfo`].
    pub const GET_HOST_INFO: u32 = ior(NSVMIO, 0x00, size_of::<NsvmHostInfo>());
    /// `NSVM_SET_POLICY` (VM fd): the sensitive-instruction experiment,
    /// `struct nsvm_policy` (see `sensitive::Policy`).
    pub const SET_POLICY: u32 = iow(NSVMIO, 0x10, crate::sensitive::Policy::SIZE);
    /// `NSVM_GET_POLICY` (VM fd).
    pub const GET_POLICY: u32 = ior(NSVMIO, 0x11, crate::sensitive::Policy::SIZE);
}

/// The errors the UAPI answers with, numbered as Linux numbers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Errno {
    /// No such file or directory.
    Enoent = 2,
    /// I/O error (an fd used from a process other than its VM's creator).
    Eio = 5,
    /// No such device or address.
    Enxio = 6,
    /// Argument list too long (a buffer too small, too many entries).
    E2big = 7,
    /// Bad address.
    Efault = 14,
    /// Device or resource busy.
    Ebusy = 16,
    /// File exists.
    Eexist = 17,
    /// Invalid argument.
    Einval = 22,
    /// Inappropriate ioctl for device.
    Enotty = 25,
}

/// The C name of a Linux errno value (x86-64 numbering), for the ones the
/// KVM API and its callers meet; `None` for others. The tool and
/// nsvm-apitest print errnos by these names.
pub const fn errno_name(e: i32) -> Option<&'static str> {
    Some(match e {
        1 => "EPERM",
        2 => "ENOENT",
        4 => "EINTR",
        5 => "EIO",
        6 => "ENXIO",
        7 => "E2BIG",
        9 => "EBADF",
        11 => "EAGAIN",
        12 => "ENOMEM",
        13 => "EACCES",
        14 => "EFAULT",
        16 => "EBUSY",
        17 => "EEXIST",
        19 => "ENODEV",
        22 => "EINVAL",
        25 => "ENOTTY",
        28 => "ENOSPC",
        34 => "ERANGE",
        38 => "ENOSYS",
        95 => "EOPNOTSUPP",
        _ => return None,
    })
}

impl Errno {
    /// The positive errno value.
    pub const fn number(self) -> i32 {
        self as i32
    }
    /// The C name (`EINVAL`).
    pub const fn name(self) -> &'static str {
        match self {
            Errno::Enoent => "ENOENT",
            Errno::Eio => "EIO",
            Errno::Enxio => "ENXIO",
            Errno::E2big => "E2BIG",
            Errno::Efault => "EFAULT",
            Errno::Ebusy => "EBUSY",
            Errno::Eexist => "EEXIST",
            Errno::Einval => "EINVAL",
            Errno::Enotty => "ENOTTY",
        }
    }
}

/// How an ioctl nsvm does not carry out is refused: the way KVM refuses it
/// in the configuration an nsvm VM always has (no in-kernel irqchip, PIT or
/// LAPIC, no dirty ring, no SEV, no capability enabled). KVM first copies
/// `read` bytes of the argument (`EFAULT` if they cannot be read), then
/// fails with `errno`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Bytes of the argument KVM copies from userspace before refusing.
    pub read: usize,
    /// The error once the copy succeeded.
    pub errno: Errno,
}

impl Refusal {
    /// Refused without reading the argument.
    pub const fn plain(errno: Errno) -> Self {
        Self { read: 0, errno }
    }
    /// Refused after reading `read` bytes of the argument.
    pub const fn after_reading(read: usize, errno: Errno) -> Self {
        Self { read, errno }
    }
}

/// What the module must do for an ioctl on the system (`/dev/nsvm`) fd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SystemIoctl {
    /// Return [`KVM_API_VERSION`].
    GetApiVersion,
    /// Return [`cap::check_extension`] of the argument.
    CheckExtension(u64),
    /// Copy an [`NsvmHostInfo`] to the user pointer in the argument.
    GetHostInfo,
    /// `KVM_CREATE_VM` with the machine type in the argument.
    CreateVm(u64),
    /// `KVM_GET_VCPU_MMAP_SIZE`.
    GetVcpuMmapSize,
    /// `KVM_GET_SUPPORTED_CPUID` with a `struct kvm_cpuid2` pointer.
    GetSupportedCpuid,
    /// `KVM_GET_MSR_INDEX_LIST` with a `struct kvm_msr_list` pointer.
    GetMsrIndexList,
    /// `KVM_X86_GET_MCE_CAP_SUPPORTED`: a u64 to the pointer.
    GetMceCapSupported,
    /// Fail with this error: `EINVAL` for unknown commands and for a
    /// non-zero argument where KVM wants 0 (KVM's `kvm_dev_ioctl` and
    /// `kvm_arch_dev_ioctl`).
    Refused(Errno),
}

/// Decodes an ioctl on the system fd. Only exact command numbers match: a
/// known number with a different size or direction is unknown.
pub fn decode_system_ioctl(cmd: u32, arg: u64) -> SystemIoctl {
    match cmd {
        kvm::GET_API_VERSION if arg != 0 => SystemIoctl::Refused(Errno::Einval),
        kvm::GET_API_VERSION => SystemIoctl::GetApiVersion,
        kvm::CHECK_EXTENSION => SystemIoctl::CheckExtension(arg),
        nsvm::GET_HOST_INFO => SystemIoctl::GetHostInfo,
        kvm::CREATE_VM => SystemIoctl::CreateVm(arg),
        kvm::GET_VCPU_MMAP_SIZE if arg != 0 => SystemIoctl::Refused(Errno::Einval),
        kvm::GET_VCPU_MMAP_SIZE => SystemIoctl::GetVcpuMmapSize,
        kvm::GET_SUPPORTED_CPUID => SystemIoctl::GetSupportedCpuid,
        kvm::GET_MSR_INDEX_LIST => SystemIoctl::GetMsrIndexList,
        kvm::X86_GET_MCE_CAP_SUPPORTED => SystemIoctl::GetMceCapSupported,
        _ => SystemIoctl::Refused(Errno::Einval),
    }
}

/// How the VM fd refuses a command its dispatcher does not carry out
/// (`kvm_vm_ioctl`, `kvm_arch_vm_ioctl`): the ioctls of an in-kernel
/// irqchip, PIT, dirty ring or SEV answer as KVM answers a VM that has none
/// and can get none; `KVM_ENABLE_CAP` as for a capability KVM cannot
/// enable; everything else `ENOTTY`.
pub fn vm_refusal(cmd: u32) -> Refusal {
    use Errno::*;
    match cmd {
        // No PIT can exist without an in-kernel PIC.
        kvm::CREATE_PIT => Refusal::plain(Enoent),
        kvm::CREATE_PIT2 => Refusal::after_reading(sizes::KVM_PIT_CONFIG, Enoent),
        // irqchip_full() is false.
        kvm::GET_IRQCHIP | kvm::SET_IRQCHIP => Refusal::after_reading(sizes::KVM_IRQCHIP, Enxio),
        // kvm->arch.vpit is NULL.
        kvm::GET_PIT | kvm::SET_PIT => Refusal::after_reading(sizes::KVM_PIT_STATE, Enxio),
        kvm::GET_PIT2 => Refusal::plain(Enxio),
        kvm::SET_PIT2 => Refusal::after_reading(sizes::KVM_PIT_STATE2, Enxio),
        kvm::REINJECT_CONTROL => Refusal::after_reading(sizes::KVM_REINJECT_CONTROL, Enxio),
        // irqchip_in_kernel() is false.
        kvm::IRQ_LINE | kvm::IRQ_LINE_STATUS => Refusal::after_reading(sizes::KVM_IRQ_LEVEL, Enxio),
        kvm::SIGNAL_MSI => Refusal::after_reading(sizes::KVM_MSI, Einval),
        kvm::SET_GSI_ROUTING => Refusal::after_reading(sizes::KVM_IRQ_ROUTING, Einval),
        // No dirty ring was enabled.
        kvm::RESET_DIRTY_RINGS => Refusal::plain(Einval),
        // No capability nsvm can enable.
        kvm::ENABLE_CAP => Refusal::after_reading(sizes::KVM_ENABLE_CAP, Einval),
        // No SEV: the region is copied before the missing operation is noticed.
        kvm::MEMORY_ENCRYPT_REG_REGION | kvm::MEMORY_ENCRYPT_UNREG_REGION => Refusal::after_reading(sizes::KVM_ENC_REGION, Enotty),
        _ => Refusal::plain(Enotty),
    }
}

/// How the vCPU fd refuses a command its dispatcher does not carry out
/// (`kvm_vcpu_ioctl`, `kvm_arch_vcpu_ioctl`): `EINVAL` for every other
/// magic and every unknown number, `KVM_ENABLE_CAP` as for a capability
/// KVM cannot enable, `KVM_MEMORY_ENCRYPT_OP` as without SEV.
pub fn vcpu_refusal(cmd: u32) -> Refusal {
    match cmd {
        _ if ioc_type(cmd) != KVMIO => Refusal::plain(Errno::Einval),
        kvm::ENABLE_CAP => Refusal::after_reading(sizes::KVM_ENABLE_CAP, Errno::Einval),
        kvm::MEMORY_ENCRYPT_OP => Refusal::plain(Errno::Enotty),
        _ => Refusal::plain(Errno::Einval),
    }
}

/// The highest address `KVM_SET_TSS_ADDR` accepts: the three pages of the
/// TSS must end below 4 GiB (`kvm_vm_ioctl_set_tss_addr`).
pub const TSS_ADDR_MAX: u64 = 0xffff_d000;

/// `KVM_GET_MSRS`/`KVM_SET_MSRS` refuse `nmsrs` from this number up with
/// `E2BIG` (KVM's `MAX_IO_MSRS`).
pub const MAX_IO_MSRS: usize = 256;

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
    fn struct_sizes_match_kvm_bindings() {
        use kvm_bindings as kb;
        assert_eq!(sizes::KVM_REGS, size_of::<kb::kvm_regs>());
        assert_eq!(sizes::KVM_SREGS, size_of::<kb::kvm_sregs>());
        assert_eq!(sizes::KVM_USERSPACE_MEMORY_REGION, size_of::<kb::kvm_userspace_memory_region>());
        assert_eq!(sizes::KVM_CPUID2, size_of::<kb::kvm_cpuid2>());
        assert_eq!(sizes::KVM_MSR_LIST, size_of::<kb::kvm_msr_list>());
        assert_eq!(sizes::KVM_USERSPACE_MEMORY_REGION2, size_of::<kb::kvm_userspace_memory_region2>());
        assert_eq!(sizes::KVM_CPUID_ENTRY2, size_of::<kb::kvm_cpuid_entry2>());
        assert_eq!(KVM_API_VERSION as u32, kb::KVM_API_VERSION);
    }

    #[test]
    fn cap_numbers_match_kvm_bindings() {
        use kvm_bindings as kb;
        let expect: &[(u32, u32)] = &[
            (cap::USER_MEMORY, kb::KVM_CAP_USER_MEMORY),
            (cap::NR_VCPUS, kb::KVM_CAP_NR_VCPUS),
            (cap::NR_MEMSLOTS, kb::KVM_CAP_NR_MEMSLOTS),
            (cap::IMMEDIATE_EXIT, kb::KVM_CAP_IMMEDIATE_EXIT),
            (cap::NESTED_STATE, kb::KVM_CAP_NESTED_STATE),
            (cap::BINARY_STATS_FD, kb::KVM_CAP_BINARY_STATS_FD),
            (cap::READONLY_MEM, kb::KVM_CAP_READONLY_MEM),
            (cap::GET_TSC_KHZ, kb::KVM_CAP_GET_TSC_KHZ),
            (cap::MAX_VCPUS, kb::KVM_CAP_MAX_VCPUS),
            (cap::X86_USER_SPACE_MSR, kb::KVM_CAP_X86_USER_SPACE_MSR),
            (cap::EXIT_HYPERCALL, kb::KVM_CAP_EXIT_HYPERCALL),
            (cap::DESTROY_MEMORY_REGION_WORKS, kb::KVM_CAP_DESTROY_MEMORY_REGION_WORKS),
            (cap::JOIN_MEMORY_REGIONS_WORKS, kb::KVM_CAP_JOIN_MEMORY_REGIONS_WORKS),
            (cap::INTERNAL_ERROR_DATA, kb::KVM_CAP_INTERNAL_ERROR_DATA),
            (cap::IOEVENTFD, kb::KVM_CAP_IOEVENTFD),
            (cap::IOEVENTFD_NO_LENGTH, kb::KVM_CAP_IOEVENTFD_NO_LENGTH),
            (cap::IOEVENTFD_ANY_LENGTH, kb::KVM_CAP_IOEVENTFD_ANY_LENGTH),
            (cap::DEBUGREGS, kb::KVM_CAP_DEBUGREGS),
            (cap::XSAVE, kb::KVM_CAP_XSAVE),
            (cap::PIT, kb::KVM_CAP_PIT),
            (cap::PIT2, kb::KVM_CAP_PIT2),
            (cap::PIT_STATE2, kb::KVM_CAP_PIT_STATE2),
            (cap::REINJECT_CONTROL, kb::KVM_CAP_REINJECT_CONTROL),
            (cap::XCRS, kb::KVM_CAP_XCRS),
            (cap::XSAVE2, kb::KVM_CAP_XSAVE2),
            (cap::MCE, kb::KVM_CAP_MCE),
            (cap::SET_BOOT_CPU_ID, kb::KVM_CAP_SET_BOOT_CPU_ID),
            (cap::MAX_VCPU_ID, kb::KVM_CAP_MAX_VCPU_ID),
            (cap::MANUAL_DIRTY_LOG_PROTECT2, kb::KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2),
        ];
        for (a, b) in expect {
            assert_eq!(a, b, "{:?}", cap::name(*a));
        }
        // Names are unique and sorted by number.
        assert!(cap::NAMED.windows(2).all(|w| w[0].0 < w[1].0));
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
        assert_eq!(kvm::X86_SET_MCE, 0x4040_ae9e);
        assert_eq!(crate::mce::KVM_X86_MCE_SIZE, size_of::<kb::kvm_x86_mce>());
        assert_eq!(crate::xsave::KVM_XCRS_SIZE, size_of::<kb::kvm_xcrs>());
        assert_eq!(crate::xsave::KVM_DEBUGREGS_SIZE, size_of::<kb::kvm_debugregs>());
        assert_eq!(crate::xsave::KVM_XSAVE_SIZE, size_of::<kb::kvm_xsave>());
        assert_eq!(crate::ioeventfd::KVM_IOEVENTFD_SIZE, size_of::<kb::kvm_ioeventfd>());
        assert_eq!(kvm::GET_MSRS, 0xc008_ae88);
        assert_eq!(kvm::SET_MSRS, 0x4008_ae89);
        assert_eq!(kvm::GET_TSC_KHZ, 0xaea3);
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

    #[test]
    fn supported_caps() {
        assert_eq!(cap::check_extension(u64::from(cap::USER_MEMORY)), 1);
        assert_eq!(cap::check_extension(u64::from(cap::NR_MEMSLOTS)), 256);
        // KVM's value: the largest state, header + vmcb12 page.
        assert_eq!(cap::check_extension(u64::from(cap::NESTED_STATE)), 4224);
    }

    #[test]
    fn check_extension_is_zero_for_unsupported() {
        for (c, _) in cap::NAMED {
            let supported = cap::SUPPORTED.iter().any(|(s, _)| s == c);
            assert_eq!(cap::check_extension(u64::from(*c)) != 0, supported);
        }
        assert_eq!(cap::check_extension(u64::MAX), 0);
        assert_eq!(cap::check_extension(1 << 40), 0);
    }

    #[test]
    fn system_ioctl_decoding() {
        assert_eq!(decode_system_ioctl(0xae00, 0), SystemIoctl::GetApiVersion);
        assert_eq!(decode_system_ioctl(0xae03, 7), SystemIoctl::CheckExtension(7));
        assert_eq!(decode_system_ioctl(nsvm::GET_HOST_INFO, 0), SystemIoctl::GetHostInfo);
        // Same number, wrong direction or size: not the same ioctl, and
        // unknown on the system fd is EINVAL (kvm_arch_dev_ioctl).
        let unknown = SystemIoctl::Refused(Errno::Einval);
        assert_eq!(decode_system_ioctl(ior(KVMIO, 0, 4), 0), unknown);
        assert_eq!(decode_system_ioctl(iow(NSVMIO, 0, 80), 0), unknown);
        assert_eq!(decode_system_ioctl(ior(NSVMIO, 0, 81), 0), unknown);
        assert_eq!(decode_system_ioctl(kvm::RUN, 0), unknown);
        assert_eq!(decode_system_ioctl(kvm::CREATE_VM, 0), SystemIoctl::CreateVm(0));
        assert_eq!(decode_system_ioctl(kvm::CREATE_VM, 5), SystemIoctl::CreateVm(5));
        assert_eq!(decode_system_ioctl(kvm::GET_VCPU_MMAP_SIZE, 0), SystemIoctl::GetVcpuMmapSize);
        assert_eq!(decode_system_ioctl(0, 0), unknown);
        assert_eq!(decode_system_ioctl(0xdead_beef, 0), unknown);
        // KVM wants 0 as the argument of these two (kvm_dev_ioctl).
        assert_eq!(decode_system_ioctl(kvm::GET_API_VERSION, 1), unknown);
        assert_eq!(decode_system_ioctl(kvm::GET_VCPU_MMAP_SIZE, 0xdead_beef), unknown);
        assert_eq!(Errno::Einval.number(), 22);
        assert_eq!(Errno::Enotty.number(), 25);
        assert_eq!(ioc_type(nsvm::GET_HOST_INFO), NSVMIO);
        assert_eq!(ioc_nr(kvm::RUN), 0x80);
        assert_eq!(ioc_size(kvm::GET_REGS), 144);
        assert_eq!(ioc_dir(kvm::GET_REGS), IOC_READ);
    }

    #[test]
    fn vm_refusals_as_kvm_without_irqchip() {
        // Unknown on the VM fd: ENOTTY without touching the argument.
        assert_eq!(vm_refusal(0xae99), Refusal::plain(Errno::Enotty));
        assert_eq!(vm_refusal(kvm::RUN), Refusal::plain(Errno::Enotty));
        assert_eq!(vm_refusal(kvm::GET_REGS), Refusal::plain(Errno::Enotty));
        assert_eq!(vm_refusal(iow(NSVMIO, 0x7f, 8)), Refusal::plain(Errno::Enotty));
        // The component ioctls read their struct first, as KVM copies it first.
        assert_eq!(vm_refusal(kvm::GET_IRQCHIP), Refusal::after_reading(520, Errno::Enxio));
        assert_eq!(vm_refusal(kvm::SET_PIT2), Refusal::after_reading(112, Errno::Enxio));
        assert_eq!(vm_refusal(kvm::GET_PIT2), Refusal::plain(Errno::Enxio));
        assert_eq!(vm_refusal(kvm::CREATE_PIT), Refusal::plain(Errno::Enoent));
        assert_eq!(vm_refusal(kvm::CREATE_PIT2), Refusal::after_reading(64, Errno::Enoent));
        assert_eq!(vm_refusal(kvm::IRQ_LINE_STATUS), Refusal::after_reading(8, Errno::Enxio));
        assert_eq!(vm_refusal(kvm::SET_GSI_ROUTING), Refusal::after_reading(8, Errno::Einval));
        assert_eq!(vm_refusal(kvm::ENABLE_CAP), Refusal::after_reading(104, Errno::Einval));
        assert_eq!(vm_refusal(kvm::MEMORY_ENCRYPT_OP), Refusal::plain(Errno::Enotty));
        assert_eq!(vm_refusal(kvm::MEMORY_ENCRYPT_REG_REGION), Refusal::after_reading(16, Errno::Enotty));
        // Every refusal reads at most what the command's size field says
        // (REINJECT_CONTROL is _IO in the header but takes a pointer).
        for c in [kvm::CREATE_PIT2, kvm::GET_IRQCHIP, kvm::SET_IRQCHIP, kvm::GET_PIT, kvm::SET_PIT, kvm::SET_PIT2, kvm::IRQ_LINE, kvm::SIGNAL_MSI, kvm::SET_GSI_ROUTING, kvm::ENABLE_CAP, kvm::MEMORY_ENCRYPT_UNREG_REGION] {
            assert_eq!(vm_refusal(c).read, ioc_size(c) as usize, "{c:#x}");
        }
    }

    #[test]
    fn vcpu_refusals() {
        // kvm_vcpu_ioctl: any other magic is EINVAL, whatever the number.
        assert_eq!(vcpu_refusal(iow(NSVMIO, 0x10, 32)), Refusal::plain(Errno::Einval));
        assert_eq!(vcpu_refusal(iow(0xb7, 0xa3, 104)), Refusal::plain(Errno::Einval));
        assert_eq!(vcpu_refusal(kvm::CREATE_VCPU), Refusal::plain(Errno::Einval));
        assert_eq!(vcpu_refusal(0xaeee), Refusal::plain(Errno::Einval));
        assert_eq!(vcpu_refusal(kvm::ENABLE_CAP), Refusal::after_reading(104, Errno::Einval));
        assert_eq!(vcpu_refusal(kvm::MEMORY_ENCRYPT_OP), Refusal::plain(Errno::Enotty));
    }

    #[test]
    fn refused_struct_sizes_match_kvm_bindings() {
        use kvm_bindings as kb;
        assert_eq!(sizes::KVM_ENABLE_CAP, size_of::<kb::kvm_enable_cap>());
        assert_eq!(sizes::KVM_IRQCHIP, size_of::<kb::kvm_irqchip>());
        assert_eq!(sizes::KVM_PIT_STATE, size_of::<kb::kvm_pit_state>());
        assert_eq!(sizes::KVM_PIT_STATE2, size_of::<kb::kvm_pit_state2>());
        assert_eq!(sizes::KVM_PIT_CONFIG, size_of::<kb::kvm_pit_config>());
        assert_eq!(sizes::KVM_REINJECT_CONTROL, size_of::<kb::kvm_reinject_control>());
        assert_eq!(sizes::KVM_IRQ_LEVEL, size_of::<kb::kvm_irq_level>());
        assert_eq!(sizes::KVM_MSI, size_of::<kb::kvm_msi>());
        assert_eq!(sizes::KVM_IRQ_ROUTING, size_of::<kb::kvm_irq_routing>());
        assert_eq!(sizes::KVM_ENC_REGION, size_of::<kb::kvm_enc_region>());
        // Numbers as the 7.2 header computes them.
        assert_eq!(kvm::ENABLE_CAP, 0x4068_aea3);
        assert_eq!(kvm::SET_IDENTITY_MAP_ADDR, 0x4008_ae48);
        assert_eq!(kvm::SET_BOOT_CPU_ID, 0xae78);
        assert_eq!(kvm::SET_VAPIC_ADDR, 0x4008_ae93);
        assert_eq!(kvm::CREATE_IRQCHIP, 0xae60);
        assert_eq!(kvm::GET_IRQCHIP, 0xc208_ae62);
        assert_eq!(kvm::SET_IRQCHIP, 0x8208_ae63);
        assert_eq!(kvm::CREATE_PIT2, 0x4040_ae77);
        assert_eq!(kvm::GET_PIT2, 0x8070_ae9f);
        assert_eq!(kvm::REINJECT_CONTROL, 0xae71);
        assert_eq!(kvm::IRQ_LINE_STATUS, 0xc008_ae67);
        assert_eq!(kvm::SIGNAL_MSI, 0x4020_aea5);
        assert_eq!(kvm::RESET_DIRTY_RINGS, 0xaec7);
        assert_eq!(kvm::GET_DIRTY_LOG, 0x4010_ae42);
        assert_eq!(kvm::CLEAR_DIRTY_LOG, 0xc018_aec0);
        assert_eq!(kvm::MEMORY_ENCRYPT_OP, 0xc008_aeba);
        assert_eq!(kvm::MEMORY_ENCRYPT_UNREG_REGION, 0x8010_aebc);
    }

    #[test]
    fn host_info_bytes_round_trip() {
        let mut h = NsvmHostInfo::ZERO;
        h.version = NSVM_HOST_INFO_VERSION;
        h.svm_revision = 1;
        h.nasid = 16;
        h.svm_features = 0x1001_0001;
        h.phys_bits = 40;
        h.cpus_online = 2;
        h.cpus_enabled = 2;
        h.flags = host_flags::VM_CR_UNREADABLE;
        h.hotplug_events = 7;
        h.percpu_bytes = 8192;
        h.set_cpu_enabled(0);
        h.set_cpu_enabled(1);
        h.set_cpu_enabled(200);
        h.set_cpu_enabled(9999);
        assert!(h.cpu_enabled(200) && !h.cpu_enabled(2) && !h.cpu_enabled(9999));
        let b = h.to_bytes();
        assert_eq!(&b[0..4], &1u32.to_ne_bytes());
        assert_eq!(NsvmHostInfo::from_bytes(&b), h);
    }
}
