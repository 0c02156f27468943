// SPDX-License-Identifier: GPL-2.0
//! The userspace ABI of `/dev/nsvm`: KVM's ioctl numbers and capability
//! numbers (`include/uapi/linux/kvm.h` of Linux 7.2) and nsvm's own research
//! ioctls (magic [`NSVMIO`], listed in `docs/uapi.md`).
//!
//! The decoding of an ioctl command into what the module must do lives here so
//! it is unit-tested on the host; the module only carries out the result.

use core::mem::size_of;

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

/// `KVM_X86_QUIRK_*`: KVM's behaviours kept for old userspace that
/// `KVM_CAP_DISABLE_QUIRKS2` can turn off.
pub mod quirks {
    /// `KVM_X86_QUIRK_FIX_HYPERCALL_INSN`: a guest's VMCALL (Intel's
    /// hypercall, #UD on AMD) is rewritten in guest memory to VMMCALL and
    /// executed as the hypercall; disabled, the guest gets its #UD.
    pub const FIX_HYPERCALL_INSN: u64 = 1 << 5;
    /// `KVM_X86_QUIRK_MISC_ENABLE_NO_MWAIT`: IA32_MISC_ENABLE.MWAIT is a
    /// plain bit; disabled, it is CPUID.1:ECX.MWAIT of the guest
    /// (`msr_misc`).
    pub const MISC_ENABLE_NO_MWAIT: u64 = 1 << 4;
    /// `KVM_X86_QUIRK_MWAIT_NEVER_UD_FAULTS`: MONITOR/MWAIT are NOPs;
    /// disabled, #UD unless enabled (`msr_misc::monitor_mwait_as_nop`).
    pub const MWAIT_NEVER_UD_FAULTS: u64 = 1 << 6;
    /// `KVM_X86_QUIRK_NESTED_SVM_SHARED_PAT`: on, nsvm's behaviour before
    /// the quirk (with nested paging L2 runs on vmcb12's G_PAT, which the
    /// guest's and the host's PAT accesses reach while L2 runs); disabled,
    /// KVM's separate L2 PAT (`nested_state::l2_has_separate_pat`): the
    /// host's accesses reach L1's PAT and the nested state carries L2's.
    pub const NESTED_SVM_SHARED_PAT: u64 = 1 << 11;
    /// The quirks nsvm reports in `KVM_CHECK_EXTENSION(KVM_CAP_DISABLE_QUIRKS2)`:
    /// only those it implements and can turn off.
    pub const SUPPORTED: u64 = FIX_HYPERCALL_INSN | MISC_ENABLE_NO_MWAIT | MWAIT_NEVER_UD_FAULTS | NESTED_SVM_SHARED_PAT;
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

pub mod kvm;

pub mod cap;

mod host_info;

pub use host_info::{host_flags, NsvmHostInfo, NSVM_HOST_INFO_VERSION, NSVM_MAX_CPUS};

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
    /// No space left (a bus full of devices).
    Enospc = 28,
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
            Errno::Enospc => "ENOSPC",
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
    /// `KVM_GET_MSR_FEATURE_INDEX_LIST` with a `struct kvm_msr_list` pointer.
    GetMsrFeatureIndexList,
    /// `KVM_GET_MSRS` on the system fd: the feature MSRs' values.
    GetFeatureMsrs,
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
        kvm::GET_MSR_FEATURE_INDEX_LIST => SystemIoctl::GetMsrFeatureIndexList,
        kvm::GET_MSRS => SystemIoctl::GetFeatureMsrs,
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
        assert_eq!(decode_system_ioctl(kvm::GET_MSR_FEATURE_INDEX_LIST, 0), SystemIoctl::GetMsrFeatureIndexList);
        assert_eq!(decode_system_ioctl(kvm::GET_MSRS, 0), SystemIoctl::GetFeatureMsrs);
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
}
