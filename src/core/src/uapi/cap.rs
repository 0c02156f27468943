// SPDX-License-Identifier: GPL-2.0
//! KVM capability numbers (`KVM_CAP_*`) with their names, for
//! `KVM_CHECK_EXTENSION` and for `nsvm info`.

macro_rules! caps {
    ($($name:ident = $v:expr),* $(,)?) => {
        $( #[doc = concat!("`KVM_CAP_", stringify!($name), "`.")] pub const $name: u32 = $v; )*
        /// Every capability nsvm knows by name, in number order.
        pub const NAMED: &[(u32, &str)] = &[$(($v, stringify!($name))),*];
    };
}
caps! {
    IRQCHIP = 0, HLT = 1, USER_MEMORY = 3, SET_TSS_ADDR = 4, EXT_CPUID = 7, NR_VCPUS = 9,
    NR_MEMSLOTS = 10, PIT = 11, MP_STATE = 14, COALESCED_MMIO = 15, SYNC_MMU = 16, DESTROY_MEMORY_REGION_WORKS = 21, SET_GUEST_DEBUG = 23,
    REINJECT_CONTROL = 24, IRQ_ROUTING = 25, IRQ_INJECT_STATUS = 26, JOIN_MEMORY_REGIONS_WORKS = 30, MCE = 31, IRQFD = 32, PIT2 = 33, SET_BOOT_CPU_ID = 34, PIT_STATE2 = 35, IOEVENTFD = 36,
    SET_IDENTITY_MAP_ADDR = 37, ADJUST_CLOCK = 39, INTERNAL_ERROR_DATA = 40, VCPU_EVENTS = 41, DEBUGREGS = 50,
    X86_ROBUST_SINGLESTEP = 51, ENABLE_CAP = 54, XSAVE = 55, XCRS = 56, TSC_CONTROL = 60,
    GET_TSC_KHZ = 61, MAX_VCPUS = 66, TSC_DEADLINE_TIMER = 72, SYNC_REGS = 74, KVMCLOCK_CTRL = 76, SIGNAL_MSI = 77, READONLY_MEM = 81, IRQFD_RESAMPLE = 82,
    IOEVENTFD_NO_LENGTH = 100, SPLIT_IRQCHIP = 121, IOEVENTFD_ANY_LENGTH = 122, VCPU_ATTRIBUTES = 127, MAX_VCPU_ID = 128, X2APIC_API = 129,
    IMMEDIATE_EXIT = 136, GET_MSR_FEATURES = 153, NESTED_STATE = 157, MSR_PLATFORM_INFO = 159, COALESCED_PIO = 162, EXCEPTION_PAYLOAD = 164, MANUAL_DIRTY_LOG_PROTECT2 = 168,
    X86_USER_SPACE_MSR = 188, X86_MSR_FILTER = 189, ENFORCE_PV_FEATURE_CPUID = 190, SET_GUEST_DEBUG2 = 195, EXIT_HYPERCALL = 201, BINARY_STATS_FD = 203, XSAVE2 = 208, DISABLE_QUIRKS2 = 213,
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
    // min(online host CPUs, KVM_MAX_VCPUS) on the host ([`nr_vcpus`]);
    // the table has the upper bound.
    (NR_VCPUS, KVM_MAX_VCPUS as i32),
    (NR_MEMSLOTS, crate::memslot::MAX_SLOTS as i32),
    (MAX_VCPUS, KVM_MAX_VCPUS as i32),
    (MAX_VCPU_ID, KVM_MAX_VCPU_IDS as i32),
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
    // KVM_GET/SET_VCPU_EVENTS with triple_fault.pending once enabled.
    (X86_TRIPLE_FAULT_EVENT, 1),
    // Pending exceptions with their payload in KVM_GET/SET_VCPU_EVENTS
    // once enabled (VM cap; nsvm_core::cpu_state::QueuedException).
    (EXCEPTION_PAYLOAD, 1),
    // MSR_PLATFORM_INFO readable by the guest, or not (VM cap).
    (MSR_PLATFORM_INFO, 1),
    // The quirks nsvm has and lets userspace disable.
    (DISABLE_QUIRKS2, super::quirks::SUPPORTED as i32),
    // The kvmclock MSRs only as CPUID 0x40000001 offers them (vCPU cap).
    (ENFORCE_PV_FEATURE_CPUID, 1),
    // MSR exits to userspace and the MSR filter (nsvm_core::msr_filter);
    // the feature MSRs on the system fd (nsvm_core::msr_misc).
    (X86_USER_SPACE_MSR, 1),
    (X86_MSR_FILTER, 1),
    (GET_MSR_FEATURES, 1),
    // Registers, special registers and events in the kvm_run page.
    (SYNC_REGS, crate::user_exit::sync_regs::VALID_FIELDS as i32),
    // KVM_HAS/GET/SET_DEVICE_ATTR on the vCPU fd: KVM_VCPU_TSC_OFFSET
    // (nsvm_core::tsc::vcpu_attr).
    (VCPU_ATTRIBUTES, 1),
    // The coalesced MMIO/PIO ring (nsvm_core::coalesced): its page in the
    // vCPU mmap.
    (COALESCED_MMIO, crate::coalesced::PAGE_OFFSET as i32),
    (COALESCED_PIO, 1),
];

/// The answer of `KVM_CHECK_EXTENSION(cap)`: the capability's value, or 0
/// when unsupported (KVM's semantics; never an error).
pub fn check_extension(cap: u64) -> i32 {
    SUPPORTED.iter().find(|(c, _)| u64::from(*c) == cap).map_or(0, |(_, v)| *v)
}

/// Most vCPUs per VM (`KVM_CAP_MAX_VCPUS`): x86 KVM's `KVM_MAX_VCPUS`,
/// `CONFIG_KVM_MAX_NR_VCPUS`, whose default (without MAXSMP) is 1024, the
/// value of the 7.2 kernel the project builds and compares with.
pub const KVM_MAX_VCPUS: u32 = 1024;

/// vCPU ids are below this (`KVM_CAP_MAX_VCPU_ID`): KVM's
/// `KVM_MAX_VCPU_IDS`, `KVM_MAX_VCPUS * KVM_VCPU_ID_RATIO` (4), room for
/// APIC ids that encode a topology.
pub const KVM_MAX_VCPU_IDS: u32 = KVM_MAX_VCPUS * 4;

/// `KVM_CAP_NR_VCPUS` (the recommended most vCPUs) on a host with
/// `online_cpus` CPUs online: x86 KVM's `min(num_online_cpus(),
/// KVM_MAX_VCPUS)`.
pub fn nr_vcpus(online_cpus: u32) -> i32 {
    online_cpus.min(KVM_MAX_VCPUS) as i32
}

/// `KVM_CHECK_EXTENSION(cap)` on a host with `online_cpus` CPUs online
/// ([`check_extension`], `KVM_CAP_NR_VCPUS` from the host).
pub fn check_extension_on(cap: u64, online_cpus: u32) -> i32 {
    if cap == u64::from(NR_VCPUS) {
        nr_vcpus(online_cpus)
    } else {
        check_extension(cap)
    }
}

/// Name of a capability (without `KVM_CAP_`).
pub fn name(cap: u32) -> Option<&'static str> {
    NAMED.iter().find(|(c, _)| *c == cap).map(|(_, n)| *n)
}

#[cfg(test)]
mod tests {
    use crate::uapi::cap;

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
            (cap::VCPU_ATTRIBUTES, kb::KVM_CAP_VCPU_ATTRIBUTES),
            (cap::COALESCED_MMIO, kb::KVM_CAP_COALESCED_MMIO),
            (cap::COALESCED_PIO, kb::KVM_CAP_COALESCED_PIO),
            (cap::MAX_VCPUS, kb::KVM_CAP_MAX_VCPUS),
            (cap::X86_USER_SPACE_MSR, kb::KVM_CAP_X86_USER_SPACE_MSR),
            (cap::X86_MSR_FILTER, kb::KVM_CAP_X86_MSR_FILTER),
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
            (cap::SYNC_REGS, kb::KVM_CAP_SYNC_REGS),
            (cap::MSR_PLATFORM_INFO, kb::KVM_CAP_MSR_PLATFORM_INFO),
            (cap::DISABLE_QUIRKS2, kb::KVM_CAP_DISABLE_QUIRKS2),
            (cap::ENFORCE_PV_FEATURE_CPUID, kb::KVM_CAP_ENFORCE_PV_FEATURE_CPUID),
            (cap::X86_TRIPLE_FAULT_EVENT, kb::KVM_CAP_X86_TRIPLE_FAULT_EVENT),
            (cap::EXCEPTION_PAYLOAD, kb::KVM_CAP_EXCEPTION_PAYLOAD),
        ];
        for (a, b) in expect {
            assert_eq!(a, b, "{:?}", cap::name(*a));
        }
        // Names are unique and sorted by number.
        assert!(cap::NAMED.windows(2).all(|w| w[0].0 < w[1].0));
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
    fn vcpu_limits_as_kvm_x86() {
        // KVM 7.2 x86 with CONFIG_KVM_MAX_NR_VCPUS=1024: MAX_VCPU_ID is
        // four times MAX_VCPUS; NR_VCPUS the online CPUs, at most
        // MAX_VCPUS.
        assert_eq!(cap::check_extension(u64::from(cap::MAX_VCPUS)), 1024);
        assert_eq!(cap::check_extension(u64::from(cap::MAX_VCPU_ID)), 4096);
        assert_eq!(cap::check_extension_on(u64::from(cap::NR_VCPUS), 2), 2);
        assert_eq!(cap::check_extension_on(u64::from(cap::NR_VCPUS), 5000), 1024);
        assert_eq!(cap::check_extension_on(u64::from(cap::MAX_VCPUS), 2), 1024);
        assert_eq!(cap::check_extension_on(u64::from(cap::SYNC_MMU), 2), 1);
    }
}
