// SPDX-License-Identifier: GPL-2.0
//! `errno_table` and `--compare-errnos`: the errno of every ioctl number of
//! the Linux 7.2 UAPI header on each kind of fd, recorded on /dev/nsvm and
//! on /dev/kvm (kvm_amd) in the same boot and compared.
//!
//! [`IOCTLS`] lists every `#define KVM_* _IO*(KVMIO, ...)` of
//! `include/uapi/linux/kvm.h` (7.2; `arch/x86/include/uapi/asm/kvm.h`
//! defines none), in the header's order, with the number an x86-64 program
//! computes. It was written once from the header: the numbers were printed
//! by a C program built against the installed 7.2 headers. The header also
//! names structs that only other architectures define (`s390:`, `powerpc:`,
//! `arm64:` in the definition column); their sizes come from that
//! architecture's `asm/kvm.h`, encoded with the generic `_IOC` layout x86
//! uses (so the numbers are the ones an x86 program would send, not always
//! the ones a powerpc program sends).
//!
//! Each ioctl is issued on the system fd, on a VM fd (VM with vCPU 0) and on
//! that vCPU's fd with a harmless argument: a pointer into an unmapped page
//! where the command takes a pointer (nothing is read, so nothing changes),
//! and for the `_IO` commands an integer chosen so that the command fails or
//! has no lasting effect (the comment on each says which). The VM never
//! runs. Then [`extra_probes`] exercise the error paths of the ioctls nsvm
//! implements with specific arguments. Each probe records `ok` or the errno
//! name, `ok N` where the value is compared, and `written` when the call
//! changed the argument buffer.
//!
//! The differences the comparison may find are the ones listed in
//! `docs/uapi.md` under "Where nsvm's errnos differ from kvm_amd's"; that
//! table is compiled into this program, so the documentation is the list
//! the test enforces.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nsvm_core::uapi::kvm;

use crate::{ioctl, Env, R};

/// The argument the table issues an ioctl with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arg {
    /// This integer.
    Int(u64),
    /// A pointer to an unmapped page.
    Bad,
}

/// One ioctl number of the 7.2 header.
#[derive(Clone, Copy, Debug)]
pub struct Ioctl {
    /// `KVM_...`.
    pub name: &'static str,
    /// The command number on x86-64.
    pub cmd: u32,
    /// The header's definition (prefixed by the architecture whose struct
    /// gives the size when x86 has none).
    pub def: &'static str,
    /// The harmless argument.
    pub arg: Arg,
}

const fn io(name: &'static str, cmd: u32, def: &'static str, arg: Arg) -> Ioctl {
    Ioctl { name, cmd, def, arg }
}

/// Every ioctl number of `include/uapi/linux/kvm.h` (Linux 7.2).
#[rustfmt::skip]
pub const IOCTLS: &[Ioctl] = &[
    io("KVM_GET_API_VERSION", 0x0000_ae00, "_IO(KVMIO, 0x00)", Arg::Int(0)),
    io("KVM_CREATE_VM", 0x0000_ae01, "_IO(KVMIO, 0x01)", Arg::Int(0xdead)), // an unknown machine type: no VM is created
    io("KVM_GET_MSR_INDEX_LIST", 0xc004_ae02, "_IOWR(KVMIO, 0x02, struct kvm_msr_list)", Arg::Bad),
    io("KVM_S390_ENABLE_SIE", 0x0000_ae06, "_IO(KVMIO, 0x06)", Arg::Int(0)),
    io("KVM_CHECK_EXTENSION", 0x0000_ae03, "_IO(KVMIO, 0x03)", Arg::Int(3)), // KVM_CAP_USER_MEMORY
    io("KVM_GET_VCPU_MMAP_SIZE", 0x0000_ae04, "_IO(KVMIO, 0x04)", Arg::Int(0)),
    io("KVM_GET_SUPPORTED_CPUID", 0xc008_ae05, "_IOWR(KVMIO, 0x05, struct kvm_cpuid2)", Arg::Bad),
    io("KVM_GET_EMULATED_CPUID", 0xc008_ae09, "_IOWR(KVMIO, 0x09, struct kvm_cpuid2)", Arg::Bad),
    io("KVM_GET_MSR_FEATURE_INDEX_LIST", 0xc004_ae0a, "_IOWR(KVMIO, 0x0a, struct kvm_msr_list)", Arg::Bad),
    io("KVM_CREATE_VCPU", 0x0000_ae41, "_IO(KVMIO, 0x41)", Arg::Int(0)), // vCPU 0 exists: EEXIST on the VM fd
    io("KVM_GET_DIRTY_LOG", 0x4010_ae42, "_IOW(KVMIO, 0x42, struct kvm_dirty_log)", Arg::Bad),
    io("KVM_SET_NR_MMU_PAGES", 0x0000_ae44, "_IO(KVMIO, 0x44)", Arg::Int(0)), // below KVM_MIN_ALLOC_MMU_PAGES: refused
    io("KVM_GET_NR_MMU_PAGES", 0x0000_ae45, "_IO(KVMIO, 0x45)", Arg::Int(0)),
    io("KVM_SET_USER_MEMORY_REGION", 0x4020_ae46, "_IOW(KVMIO, 0x46, struct kvm_userspace_memory_region)", Arg::Bad),
    io("KVM_SET_TSS_ADDR", 0x0000_ae47, "_IO(KVMIO, 0x47)", Arg::Int(0xffff_f000)), // above 4 GiB - 3 pages: refused
    io("KVM_SET_IDENTITY_MAP_ADDR", 0x4008_ae48, "_IOW(KVMIO, 0x48, __u64)", Arg::Bad),
    io("KVM_SET_USER_MEMORY_REGION2", 0x40a0_ae49, "_IOW(KVMIO, 0x49, struct kvm_userspace_memory_region2)", Arg::Bad),
    io("KVM_S390_UCAS_MAP", 0x4018_ae50, "s390:_IOW(KVMIO, 0x50, struct kvm_s390_ucas_mapping)", Arg::Bad),
    io("KVM_S390_UCAS_UNMAP", 0x4018_ae51, "s390:_IOW(KVMIO, 0x51, struct kvm_s390_ucas_mapping)", Arg::Bad),
    io("KVM_S390_VCPU_FAULT", 0x4008_ae52, "_IOW(KVMIO, 0x52, unsigned long)", Arg::Bad),
    io("KVM_S390_KEYOP", 0xc010_ae53, "_IOWR(KVMIO, 0x53, struct kvm_s390_keyop)", Arg::Bad),
    io("KVM_CREATE_IRQCHIP", 0x0000_ae60, "_IO(KVMIO, 0x60)", Arg::Int(0)), // refused by KVM once a vCPU exists
    io("KVM_IRQ_LINE", 0x4008_ae61, "_IOW(KVMIO, 0x61, struct kvm_irq_level)", Arg::Bad),
    io("KVM_GET_IRQCHIP", 0xc208_ae62, "_IOWR(KVMIO, 0x62, struct kvm_irqchip)", Arg::Bad),
    io("KVM_SET_IRQCHIP", 0x8208_ae63, "_IOR(KVMIO, 0x63, struct kvm_irqchip)", Arg::Bad),
    io("KVM_CREATE_PIT", 0x0000_ae64, "_IO(KVMIO, 0x64)", Arg::Int(0)), // refused without an in-kernel PIC
    io("KVM_GET_PIT", 0xc048_ae65, "_IOWR(KVMIO, 0x65, struct kvm_pit_state)", Arg::Bad),
    io("KVM_SET_PIT", 0x8048_ae66, "_IOR(KVMIO, 0x66, struct kvm_pit_state)", Arg::Bad),
    io("KVM_IRQ_LINE_STATUS", 0xc008_ae67, "_IOWR(KVMIO, 0x67, struct kvm_irq_level)", Arg::Bad),
    io("KVM_REGISTER_COALESCED_MMIO", 0x4010_ae67, "_IOW(KVMIO, 0x67, struct kvm_coalesced_mmio_zone)", Arg::Bad),
    io("KVM_UNREGISTER_COALESCED_MMIO", 0x4010_ae68, "_IOW(KVMIO, 0x68, struct kvm_coalesced_mmio_zone)", Arg::Bad),
    io("KVM_SET_GSI_ROUTING", 0x4008_ae6a, "_IOW(KVMIO, 0x6a, struct kvm_irq_routing)", Arg::Bad),
    io("KVM_REINJECT_CONTROL", 0x0000_ae71, "_IO(KVMIO, 0x71)", Arg::Bad), // _IO, but takes a struct kvm_reinject_control pointer
    io("KVM_IRQFD", 0x4020_ae76, "_IOW(KVMIO, 0x76, struct kvm_irqfd)", Arg::Bad),
    io("KVM_CREATE_PIT2", 0x4040_ae77, "_IOW(KVMIO, 0x77, struct kvm_pit_config)", Arg::Bad),
    io("KVM_SET_BOOT_CPU_ID", 0x0000_ae78, "_IO(KVMIO, 0x78)", Arg::Int(0)), // EBUSY in KVM once a vCPU exists
    io("KVM_IOEVENTFD", 0x4040_ae79, "_IOW(KVMIO, 0x79, struct kvm_ioeventfd)", Arg::Bad),
    io("KVM_XEN_HVM_CONFIG", 0x4038_ae7a, "_IOW(KVMIO, 0x7a, struct kvm_xen_hvm_config)", Arg::Bad),
    io("KVM_SET_CLOCK", 0x4030_ae7b, "_IOW(KVMIO, 0x7b, struct kvm_clock_data)", Arg::Bad),
    io("KVM_GET_CLOCK", 0x8030_ae7c, "_IOR(KVMIO, 0x7c, struct kvm_clock_data)", Arg::Bad),
    io("KVM_GET_PIT2", 0x8070_ae9f, "_IOR(KVMIO, 0x9f, struct kvm_pit_state2)", Arg::Bad),
    io("KVM_SET_PIT2", 0x4070_aea0, "_IOW(KVMIO, 0xa0, struct kvm_pit_state2)", Arg::Bad),
    io("KVM_PPC_GET_PVINFO", 0x4080_aea1, "powerpc:_IOW(KVMIO, 0xa1, struct kvm_ppc_pvinfo)", Arg::Bad),
    io("KVM_SET_TSC_KHZ", 0x0000_aea2, "_IO(KVMIO, 0xa2)", Arg::Int(1)), // 1 kHz: refused on the VM once a vCPU exists, on the vCPU as below the host rate
    io("KVM_GET_TSC_KHZ", 0x0000_aea3, "_IO(KVMIO, 0xa3)", Arg::Int(0)),
    io("KVM_SIGNAL_MSI", 0x4020_aea5, "_IOW(KVMIO, 0xa5, struct kvm_msi)", Arg::Bad),
    io("KVM_PPC_GET_SMMU_INFO", 0x8250_aea6, "powerpc:_IOR(KVMIO, 0xa6, struct kvm_ppc_smmu_info)", Arg::Bad),
    io("KVM_PPC_ALLOCATE_HTAB", 0xc004_aea7, "_IOWR(KVMIO, 0xa7, __u32)", Arg::Bad),
    io("KVM_CREATE_SPAPR_TCE", 0x4010_aea8, "powerpc:_IOW(KVMIO, 0xa8, struct kvm_create_spapr_tce)", Arg::Bad),
    io("KVM_CREATE_SPAPR_TCE_64", 0x4020_aea8, "powerpc:_IOW(KVMIO, 0xa8, struct kvm_create_spapr_tce_64)", Arg::Bad),
    io("KVM_ALLOCATE_RMA", 0x8008_aea9, "powerpc:_IOR(KVMIO, 0xa9, struct kvm_allocate_rma)", Arg::Bad),
    io("KVM_PPC_GET_HTAB_FD", 0x4020_aeaa, "powerpc:_IOW(KVMIO, 0xaa, struct kvm_get_htab_fd)", Arg::Bad),
    io("KVM_ARM_SET_DEVICE_ADDR", 0x4010_aeab, "_IOW(KVMIO, 0xab, struct kvm_arm_device_addr)", Arg::Bad),
    io("KVM_PPC_RTAS_DEFINE_TOKEN", 0x4080_aeac, "powerpc:_IOW(KVMIO, 0xac, struct kvm_rtas_token_args)", Arg::Bad),
    io("KVM_PPC_RESIZE_HPT_PREPARE", 0x8010_aead, "powerpc:_IOR(KVMIO, 0xad, struct kvm_ppc_resize_hpt)", Arg::Bad),
    io("KVM_PPC_RESIZE_HPT_COMMIT", 0x8010_aeae, "powerpc:_IOR(KVMIO, 0xae, struct kvm_ppc_resize_hpt)", Arg::Bad),
    io("KVM_PPC_CONFIGURE_V3_MMU", 0x4010_aeaf, "powerpc:_IOW(KVMIO, 0xaf, struct kvm_ppc_mmuv3_cfg)", Arg::Bad),
    io("KVM_PPC_GET_RMMU_INFO", 0x4060_aeb0, "powerpc:_IOW(KVMIO, 0xb0, struct kvm_ppc_rmmu_info)", Arg::Bad),
    io("KVM_PPC_GET_CPU_CHAR", 0x8020_aeb1, "powerpc:_IOR(KVMIO, 0xb1, struct kvm_ppc_cpu_char)", Arg::Bad),
    io("KVM_SET_PMU_EVENT_FILTER", 0x4020_aeb2, "_IOW(KVMIO, 0xb2, struct kvm_pmu_event_filter)", Arg::Bad),
    io("KVM_PPC_SVM_OFF", 0x0000_aeb3, "_IO(KVMIO, 0xb3)", Arg::Int(0)),
    io("KVM_ARM_MTE_COPY_TAGS", 0x8030_aeb4, "arm64:_IOR(KVMIO, 0xb4, struct kvm_arm_copy_mte_tags)", Arg::Bad),
    io("KVM_ARM_SET_COUNTER_OFFSET", 0x4010_aeb5, "arm64:_IOW(KVMIO, 0xb5, struct kvm_arm_counter_offset)", Arg::Bad),
    io("KVM_ARM_GET_REG_WRITABLE_MASKS", 0x8040_aeb6, "arm64:_IOR(KVMIO, 0xb6, struct reg_mask_range)", Arg::Bad),
    io("KVM_CREATE_DEVICE", 0xc00c_aee0, "_IOWR(KVMIO, 0xe0, struct kvm_create_device)", Arg::Bad),
    io("KVM_SET_DEVICE_ATTR", 0x4018_aee1, "_IOW(KVMIO, 0xe1, struct kvm_device_attr)", Arg::Bad),
    io("KVM_GET_DEVICE_ATTR", 0x4018_aee2, "_IOW(KVMIO, 0xe2, struct kvm_device_attr)", Arg::Bad),
    io("KVM_HAS_DEVICE_ATTR", 0x4018_aee3, "_IOW(KVMIO, 0xe3, struct kvm_device_attr)", Arg::Bad),
    io("KVM_RUN", 0x0000_ae80, "_IO(KVMIO, 0x80)", Arg::Int(1)), // a non-zero argument is refused before anything runs
    io("KVM_GET_REGS", 0x8090_ae81, "_IOR(KVMIO, 0x81, struct kvm_regs)", Arg::Bad),
    io("KVM_SET_REGS", 0x4090_ae82, "_IOW(KVMIO, 0x82, struct kvm_regs)", Arg::Bad),
    io("KVM_GET_SREGS", 0x8138_ae83, "_IOR(KVMIO, 0x83, struct kvm_sregs)", Arg::Bad),
    io("KVM_SET_SREGS", 0x4138_ae84, "_IOW(KVMIO, 0x84, struct kvm_sregs)", Arg::Bad),
    io("KVM_TRANSLATE", 0xc018_ae85, "_IOWR(KVMIO, 0x85, struct kvm_translation)", Arg::Bad),
    io("KVM_INTERRUPT", 0x4004_ae86, "_IOW(KVMIO, 0x86, struct kvm_interrupt)", Arg::Bad),
    io("KVM_GET_MSRS", 0xc008_ae88, "_IOWR(KVMIO, 0x88, struct kvm_msrs)", Arg::Bad),
    io("KVM_SET_MSRS", 0x4008_ae89, "_IOW(KVMIO, 0x89, struct kvm_msrs)", Arg::Bad),
    io("KVM_SET_CPUID", 0x4008_ae8a, "_IOW(KVMIO, 0x8a, struct kvm_cpuid)", Arg::Bad),
    io("KVM_SET_SIGNAL_MASK", 0x4004_ae8b, "_IOW(KVMIO, 0x8b, struct kvm_signal_mask)", Arg::Bad),
    io("KVM_GET_FPU", 0x81a0_ae8c, "_IOR(KVMIO, 0x8c, struct kvm_fpu)", Arg::Bad),
    io("KVM_SET_FPU", 0x41a0_ae8d, "_IOW(KVMIO, 0x8d, struct kvm_fpu)", Arg::Bad),
    io("KVM_GET_LAPIC", 0x8400_ae8e, "_IOR(KVMIO, 0x8e, struct kvm_lapic_state)", Arg::Bad),
    io("KVM_SET_LAPIC", 0x4400_ae8f, "_IOW(KVMIO, 0x8f, struct kvm_lapic_state)", Arg::Bad),
    io("KVM_SET_CPUID2", 0x4008_ae90, "_IOW(KVMIO, 0x90, struct kvm_cpuid2)", Arg::Bad),
    io("KVM_GET_CPUID2", 0xc008_ae91, "_IOWR(KVMIO, 0x91, struct kvm_cpuid2)", Arg::Bad),
    io("KVM_TPR_ACCESS_REPORTING", 0xc028_ae92, "_IOWR(KVMIO, 0x92, struct kvm_tpr_access_ctl)", Arg::Bad),
    io("KVM_SET_VAPIC_ADDR", 0x4008_ae93, "_IOW(KVMIO, 0x93, struct kvm_vapic_addr)", Arg::Bad),
    io("KVM_S390_INTERRUPT", 0x4010_ae94, "s390:_IOW(KVMIO, 0x94, struct kvm_s390_interrupt)", Arg::Bad),
    io("KVM_S390_STORE_STATUS", 0x4008_ae95, "_IOW(KVMIO, 0x95, unsigned long)", Arg::Bad),
    io("KVM_S390_SET_INITIAL_PSW", 0x4010_ae96, "s390:_IOW(KVMIO, 0x96, struct kvm_s390_psw)", Arg::Bad),
    io("KVM_S390_INITIAL_RESET", 0x0000_ae97, "_IO(KVMIO, 0x97)", Arg::Int(0)),
    io("KVM_GET_MP_STATE", 0x8004_ae98, "_IOR(KVMIO, 0x98, struct kvm_mp_state)", Arg::Bad),
    io("KVM_SET_MP_STATE", 0x4004_ae99, "_IOW(KVMIO, 0x99, struct kvm_mp_state)", Arg::Bad),
    io("KVM_NMI", 0x0000_ae9a, "_IO(KVMIO, 0x9a)", Arg::Int(0)), // queues an NMI on a vCPU that never runs
    io("KVM_SET_GUEST_DEBUG", 0x4048_ae9b, "_IOW(KVMIO, 0x9b, struct kvm_guest_debug)", Arg::Bad),
    io("KVM_X86_SETUP_MCE", 0x4008_ae9c, "_IOW(KVMIO, 0x9c, __u64)", Arg::Bad),
    io("KVM_X86_GET_MCE_CAP_SUPPORTED", 0x8008_ae9d, "_IOR(KVMIO, 0x9d, __u64)", Arg::Bad),
    io("KVM_X86_SET_MCE", 0x4040_ae9e, "_IOW(KVMIO, 0x9e, struct kvm_x86_mce)", Arg::Bad),
    io("KVM_GET_VCPU_EVENTS", 0x8040_ae9f, "_IOR(KVMIO, 0x9f, struct kvm_vcpu_events)", Arg::Bad),
    io("KVM_SET_VCPU_EVENTS", 0x4040_aea0, "_IOW(KVMIO, 0xa0, struct kvm_vcpu_events)", Arg::Bad),
    io("KVM_GET_DEBUGREGS", 0x8080_aea1, "_IOR(KVMIO, 0xa1, struct kvm_debugregs)", Arg::Bad),
    io("KVM_SET_DEBUGREGS", 0x4080_aea2, "_IOW(KVMIO, 0xa2, struct kvm_debugregs)", Arg::Bad),
    io("KVM_ENABLE_CAP", 0x4068_aea3, "_IOW(KVMIO, 0xa3, struct kvm_enable_cap)", Arg::Bad),
    io("KVM_GET_XSAVE", 0x9000_aea4, "_IOR(KVMIO, 0xa4, struct kvm_xsave)", Arg::Bad),
    io("KVM_SET_XSAVE", 0x5000_aea5, "_IOW(KVMIO, 0xa5, struct kvm_xsave)", Arg::Bad),
    io("KVM_GET_XCRS", 0x8188_aea6, "_IOR(KVMIO, 0xa6, struct kvm_xcrs)", Arg::Bad),
    io("KVM_SET_XCRS", 0x4188_aea7, "_IOW(KVMIO, 0xa7, struct kvm_xcrs)", Arg::Bad),
    io("KVM_DIRTY_TLB", 0x4010_aeaa, "_IOW(KVMIO, 0xaa, struct kvm_dirty_tlb)", Arg::Bad),
    io("KVM_GET_ONE_REG", 0x4010_aeab, "_IOW(KVMIO, 0xab, struct kvm_one_reg)", Arg::Bad),
    io("KVM_SET_ONE_REG", 0x4010_aeac, "_IOW(KVMIO, 0xac, struct kvm_one_reg)", Arg::Bad),
    io("KVM_KVMCLOCK_CTRL", 0x0000_aead, "_IO(KVMIO, 0xad)", Arg::Int(0)), // refused without an active kvmclock
    io("KVM_ARM_VCPU_INIT", 0x4020_aeae, "arm64:_IOW(KVMIO, 0xae, struct kvm_vcpu_init)", Arg::Bad),
    io("KVM_ARM_PREFERRED_TARGET", 0x8020_aeaf, "arm64:_IOR(KVMIO, 0xaf, struct kvm_vcpu_init)", Arg::Bad),
    io("KVM_GET_REG_LIST", 0xc008_aeb0, "_IOWR(KVMIO, 0xb0, struct kvm_reg_list)", Arg::Bad),
    io("KVM_S390_MEM_OP", 0x4040_aeb1, "s390:_IOW(KVMIO, 0xb1, struct kvm_s390_mem_op)", Arg::Bad),
    io("KVM_S390_GET_SKEYS", 0x4040_aeb2, "s390:_IOW(KVMIO, 0xb2, struct kvm_s390_skeys)", Arg::Bad),
    io("KVM_S390_SET_SKEYS", 0x4040_aeb3, "s390:_IOW(KVMIO, 0xb3, struct kvm_s390_skeys)", Arg::Bad),
    io("KVM_S390_IRQ", 0x4048_aeb4, "s390:_IOW(KVMIO, 0xb4, struct kvm_s390_irq)", Arg::Bad),
    io("KVM_S390_SET_IRQ_STATE", 0x4020_aeb5, "s390:_IOW(KVMIO, 0xb5, struct kvm_s390_irq_state)", Arg::Bad),
    io("KVM_S390_GET_IRQ_STATE", 0x4020_aeb6, "s390:_IOW(KVMIO, 0xb6, struct kvm_s390_irq_state)", Arg::Bad),
    io("KVM_SMI", 0x0000_aeb7, "_IO(KVMIO, 0xb7)", Arg::Int(0)), // queues an SMI (KVM) on a vCPU that never runs
    io("KVM_S390_GET_CMMA_BITS", 0xc020_aeb8, "s390:_IOWR(KVMIO, 0xb8, struct kvm_s390_cmma_log)", Arg::Bad),
    io("KVM_S390_SET_CMMA_BITS", 0x4020_aeb9, "s390:_IOW(KVMIO, 0xb9, struct kvm_s390_cmma_log)", Arg::Bad),
    io("KVM_MEMORY_ENCRYPT_OP", 0xc008_aeba, "_IOWR(KVMIO, 0xba, unsigned long)", Arg::Bad),
    io("KVM_MEMORY_ENCRYPT_REG_REGION", 0x8010_aebb, "_IOR(KVMIO, 0xbb, struct kvm_enc_region)", Arg::Bad),
    io("KVM_MEMORY_ENCRYPT_UNREG_REGION", 0x8010_aebc, "_IOR(KVMIO, 0xbc, struct kvm_enc_region)", Arg::Bad),
    io("KVM_HYPERV_EVENTFD", 0x4018_aebd, "_IOW(KVMIO, 0xbd, struct kvm_hyperv_eventfd)", Arg::Bad),
    io("KVM_GET_NESTED_STATE", 0xc080_aebe, "_IOWR(KVMIO, 0xbe, struct kvm_nested_state)", Arg::Bad),
    io("KVM_SET_NESTED_STATE", 0x4080_aebf, "_IOW(KVMIO, 0xbf, struct kvm_nested_state)", Arg::Bad),
    io("KVM_CLEAR_DIRTY_LOG", 0xc018_aec0, "_IOWR(KVMIO, 0xc0, struct kvm_clear_dirty_log)", Arg::Bad),
    io("KVM_GET_SUPPORTED_HV_CPUID", 0xc008_aec1, "_IOWR(KVMIO, 0xc1, struct kvm_cpuid2)", Arg::Bad),
    io("KVM_ARM_VCPU_FINALIZE", 0x4004_aec2, "_IOW(KVMIO, 0xc2, int)", Arg::Bad),
    io("KVM_S390_NORMAL_RESET", 0x0000_aec3, "_IO(KVMIO, 0xc3)", Arg::Int(0)),
    io("KVM_S390_CLEAR_RESET", 0x0000_aec4, "_IO(KVMIO, 0xc4)", Arg::Int(0)),
    io("KVM_S390_PV_COMMAND", 0xc020_aec5, "s390:_IOWR(KVMIO, 0xc5, struct kvm_pv_cmd)", Arg::Bad),
    io("KVM_X86_SET_MSR_FILTER", 0x4188_aec6, "_IOW(KVMIO, 0xc6, struct kvm_msr_filter)", Arg::Bad),
    io("KVM_RESET_DIRTY_RINGS", 0x0000_aec7, "_IO(KVMIO, 0xc7)", Arg::Int(0)), // refused without a dirty ring
    io("KVM_XEN_HVM_GET_ATTR", 0xc048_aec8, "_IOWR(KVMIO, 0xc8, struct kvm_xen_hvm_attr)", Arg::Bad),
    io("KVM_XEN_HVM_SET_ATTR", 0x4048_aec9, "_IOW(KVMIO, 0xc9, struct kvm_xen_hvm_attr)", Arg::Bad),
    io("KVM_XEN_VCPU_GET_ATTR", 0xc048_aeca, "_IOWR(KVMIO, 0xca, struct kvm_xen_vcpu_attr)", Arg::Bad),
    io("KVM_XEN_VCPU_SET_ATTR", 0x4048_aecb, "_IOW(KVMIO, 0xcb, struct kvm_xen_vcpu_attr)", Arg::Bad),
    io("KVM_XEN_HVM_EVTCHN_SEND", 0x400c_aed0, "_IOW(KVMIO, 0xd0, struct kvm_irq_routing_xen_evtchn)", Arg::Bad),
    io("KVM_GET_SREGS2", 0x8140_aecc, "_IOR(KVMIO, 0xcc, struct kvm_sregs2)", Arg::Bad),
    io("KVM_SET_SREGS2", 0x4140_aecd, "_IOW(KVMIO, 0xcd, struct kvm_sregs2)", Arg::Bad),
    io("KVM_GET_STATS_FD", 0x0000_aece, "_IO(KVMIO, 0xce)", Arg::Int(0)), // the fd returned is closed
    io("KVM_GET_XSAVE2", 0x9000_aecf, "_IOR(KVMIO, 0xcf, struct kvm_xsave)", Arg::Bad),
    io("KVM_S390_PV_CPU_COMMAND", 0xc020_aed0, "s390:_IOWR(KVMIO, 0xd0, struct kvm_pv_cmd)", Arg::Bad),
    io("KVM_S390_ZPCI_OP", 0x4048_aed1, "s390:_IOW(KVMIO, 0xd1, struct kvm_s390_zpci_op)", Arg::Bad),
    io("KVM_SET_MEMORY_ATTRIBUTES", 0x4020_aed2, "_IOW(KVMIO, 0xd2, struct kvm_memory_attributes)", Arg::Bad),
    io("KVM_CREATE_GUEST_MEMFD", 0xc040_aed4, "_IOWR(KVMIO, 0xd4, struct kvm_create_guest_memfd)", Arg::Bad),
    io("KVM_PRE_FAULT_MEMORY", 0xc040_aed5, "_IOWR(KVMIO, 0xd5, struct kvm_pre_fault_memory)", Arg::Bad),
];

/// The kind of fd a probe is issued on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fd {
    /// The device (`/dev/nsvm`, `/dev/kvm`).
    System,
    /// A VM with one vCPU (id 0).
    Vm,
    /// A VM without vCPUs.
    VmNoVcpu,
    /// The vCPU of [`Fd::Vm`].
    Vcpu,
}

impl Fd {
    /// The name used in the table file and in `docs/uapi.md`.
    pub const fn name(self) -> &'static str {
        match self {
            Fd::System => "system",
            Fd::Vm => "vm",
            Fd::VmNoVcpu => "vm-novcpu",
            Fd::Vcpu => "vcpu",
        }
    }
    fn parse(s: &str) -> Option<Fd> {
        [Fd::System, Fd::Vm, Fd::VmNoVcpu, Fd::Vcpu].into_iter().find(|f| f.name() == s)
    }
}

/// The argument of an extra probe.
#[derive(Clone, Debug)]
pub enum PArg {
    /// This integer.
    Int(u64),
    /// A pointer to an unmapped page.
    Bad,
    /// A pointer to these bytes, followed by 64 KiB of zeros.
    Buf(Vec<u8>),
    /// A pointer to these bytes, which end where an unmapped page begins.
    Tail(Vec<u8>),
}

/// One ioctl issued by [`errno_table`].
#[derive(Clone, Debug)]
pub struct Probe {
    /// Where.
    pub fd: Fd,
    /// The ioctl's name, with the argument in parentheses for extra probes.
    pub label: String,
    /// The command.
    pub cmd: u32,
    /// The argument.
    pub arg: PArg,
    /// Whether a successful return value is recorded (`ok N`).
    pub value: bool,
}

fn le(words: &[(usize, u64, usize)], len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    for &(off, v, size) in words {
        b[off..off + size].copy_from_slice(&v.to_le_bytes()[..size]);
    }
    b
}

/// The error paths of the ioctls nsvm implements (and of the ones it
/// refuses as KVM does without an in-kernel irqchip, PIT or SEV), with
/// arguments that reach them. Issued in this order after the table; the
/// only state they leave is a slot created and deleted again, an interrupt
/// queued on a vCPU that never runs, and an FPU control word.
pub fn extra_probes() -> Vec<Probe> {
    use Fd::*;
    use PArg::*;
    let p = |fd: Fd, label: &str, cmd: u32, arg: PArg| Probe { fd, label: label.to_string(), cmd, arg, value: false };
    let v = |fd: Fd, label: &str, cmd: u32, arg: PArg| Probe { fd, label: label.to_string(), cmd, arg, value: true };
    let u32s = |w: &[u32]| w.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    // struct kvm_userspace_memory_region(2): slot, flags, gpa, size, uaddr
    // (then guest_memfd_offset, guest_memfd, padding).
    let region = |slot: u64, flags: u64, size: u64, len: usize| le(&[(0, slot, 4), (4, flags, 4), (8, 0x10_0000, 8), (16, size, 8), (24, 0x1000_0000, 8)], len);
    let mut region2_extra = region(3, 0, 0x1000, 160);
    region2_extra[32..40].copy_from_slice(&0x123u64.to_le_bytes());
    region2_extra[40..44].copy_from_slice(&7u32.to_le_bytes());
    region2_extra[100] = 0xaa;
    // struct kvm_msrs with entries { index, reserved, data }; data
    // pre-filled with ones so that a read of 0 shows as written.
    let msrs = |idx: &[u32]| {
        let mut b = u32s(&[idx.len() as u32, 0]);
        for i in idx {
            b.extend(u32s(&[*i, 0]));
            b.extend([0xff; 8]);
        }
        b
    };
    // struct kvm_fpu with fcw = 0x37f and MXCSR (offset 408) bit 31 set.
    let fpu = le(&[(128, 0x37f, 2), (408, 0x8000_1f80, 4)], 416);
    vec![
        p(System, "KVM_GET_API_VERSION(1)", kvm::GET_API_VERSION, Int(1)),
        p(System, "KVM_GET_VCPU_MMAP_SIZE(1)", kvm::GET_VCPU_MMAP_SIZE, Int(1)),
        v(System, "KVM_CHECK_EXTENSION(-1)", kvm::CHECK_EXTENSION, Int(u64::MAX)),
        p(System, "KVM_CREATE_VM(type 1<<32)", kvm::CREATE_VM, Int(1 << 32)),
        p(System, "KVM_GET_MSR_INDEX_LIST(nmsrs 0)", kvm::GET_MSR_INDEX_LIST, Buf(u32s(&[0]))),
        p(System, "KVM_GET_MSR_INDEX_LIST(indices unmapped)", kvm::GET_MSR_INDEX_LIST, Tail(u32s(&[1000]))),
        p(System, "KVM_GET_SUPPORTED_CPUID(nent 0)", kvm::GET_SUPPORTED_CPUID, Buf(u32s(&[0, 0]))),
        p(System, "KVM_GET_SUPPORTED_CPUID(nent 1)", kvm::GET_SUPPORTED_CPUID, Buf(u32s(&[1, 0]))),
        p(System, "KVM_GET_SUPPORTED_CPUID(entries unmapped)", kvm::GET_SUPPORTED_CPUID, Tail(u32s(&[256, 0]))),
        p(Vm, "KVM_CREATE_VCPU(4096)", kvm::CREATE_VCPU, Int(4096)),
        p(Vm, "KVM_CREATE_VCPU(1<<32)", kvm::CREATE_VCPU, Int(1 << 32)),
        v(Vm, "KVM_SET_TSS_ADDR(0xfffbd000)", kvm::SET_TSS_ADDR, Int(0xfffb_d000)),
        v(Vm, "KVM_SET_TSS_ADDR(0xffffd000)", kvm::SET_TSS_ADDR, Int(0xffff_d000)),
        p(Vm, "KVM_SET_TSS_ADDR(0xffffd001)", kvm::SET_TSS_ADDR, Int(0xffff_d001)),
        p(Vm, "KVM_SET_IDENTITY_MAP_ADDR(0xfeffc000)", kvm::SET_IDENTITY_MAP_ADDR, Buf(le(&[(0, 0xfeff_c000, 8)], 8))),
        p(Vm, "KVM_ENABLE_CAP(cap 0)", kvm::ENABLE_CAP, Buf(vec![0; 104])),
        p(Vm, "KVM_ENABLE_CAP(flags 1)", kvm::ENABLE_CAP, Buf(le(&[(4, 1, 4)], 104))),
        p(Vm, "KVM_GET_IRQCHIP(chip 0)", kvm::GET_IRQCHIP, Buf(vec![0; 520])),
        p(Vm, "KVM_SET_IRQCHIP(chip 0)", kvm::SET_IRQCHIP, Buf(vec![0; 520])),
        p(Vm, "KVM_GET_PIT(zeros)", kvm::GET_PIT, Buf(vec![0; 72])),
        p(Vm, "KVM_SET_PIT(zeros)", kvm::SET_PIT, Buf(vec![0; 72])),
        p(Vm, "KVM_SET_PIT2(zeros)", kvm::SET_PIT2, Buf(vec![0; 112])),
        p(Vm, "KVM_CREATE_PIT2(flags 0)", kvm::CREATE_PIT2, Buf(vec![0; 64])),
        p(Vm, "KVM_REINJECT_CONTROL(zeros)", kvm::REINJECT_CONTROL, Buf(vec![0; 32])),
        p(Vm, "KVM_IRQ_LINE(irq 4)", kvm::IRQ_LINE, Buf(u32s(&[4, 1]))),
        p(Vm, "KVM_IRQ_LINE_STATUS(irq 4)", kvm::IRQ_LINE_STATUS, Buf(u32s(&[4, 1]))),
        p(Vm, "KVM_SIGNAL_MSI(zeros)", kvm::SIGNAL_MSI, Buf(vec![0; 32])),
        p(Vm, "KVM_SET_GSI_ROUTING(nr 0)", kvm::SET_GSI_ROUTING, Buf(vec![0; 8])),
        p(Vm, "KVM_MEMORY_ENCRYPT_OP(NULL)", kvm::MEMORY_ENCRYPT_OP, Int(0)),
        p(Vm, "KVM_MEMORY_ENCRYPT_REG_REGION(zeros)", kvm::MEMORY_ENCRYPT_REG_REGION, Buf(vec![0; 16])),
        p(Vm, "KVM_MEMORY_ENCRYPT_UNREG_REGION(zeros)", kvm::MEMORY_ENCRYPT_UNREG_REGION, Buf(vec![0; 16])),
        p(Vm, "KVM_SET_USER_MEMORY_REGION(flag GUEST_MEMFD)", kvm::SET_USER_MEMORY_REGION, Buf(region(3, 4, 0x1000, 32))),
        v(Vm, "KVM_SET_USER_MEMORY_REGION2(guest_memfd fields without the flag)", kvm::SET_USER_MEMORY_REGION2, Buf(region2_extra)),
        v(Vm, "KVM_SET_USER_MEMORY_REGION2(delete it)", kvm::SET_USER_MEMORY_REGION2, Buf(region(3, 0, 0, 160))),
        p(Vm, "KVM_SET_USER_MEMORY_REGION(delete a missing slot)", kvm::SET_USER_MEMORY_REGION, Buf(region(3, 0, 0, 32))),
        p(VmNoVcpu, "KVM_SET_IDENTITY_MAP_ADDR", kvm::SET_IDENTITY_MAP_ADDR, Bad),
        v(VmNoVcpu, "KVM_SET_IDENTITY_MAP_ADDR(0xfeffc000)", kvm::SET_IDENTITY_MAP_ADDR, Buf(le(&[(0, 0xfeff_c000, 8)], 8))),
        p(VmNoVcpu, "KVM_GET_TSC_KHZ", kvm::GET_TSC_KHZ, Int(0)),
        p(Vcpu, "KVM_GET_MSRS(nmsrs 256)", kvm::GET_MSRS, Buf(u32s(&[256, 0]))),
        p(Vcpu, "KVM_SET_MSRS(nmsrs 256)", kvm::SET_MSRS, Buf(u32s(&[256, 0]))),
        p(Vcpu, "KVM_GET_MSRS(nmsrs 255 with entries unmapped)", kvm::GET_MSRS, Tail(u32s(&[255, 0]))),
        v(Vcpu, "KVM_GET_MSRS(EFER then an unknown MSR)", kvm::GET_MSRS, Buf(msrs(&[0xc000_0080, 0xdead_beef]))),
        v(Vcpu, "KVM_SET_MSRS(an unknown MSR)", kvm::SET_MSRS, Buf(msrs(&[0xdead_beef]))),
        p(Vcpu, "KVM_SET_CPUID2(nent 257)", kvm::SET_CPUID2, Buf(u32s(&[257, 0]))),
        p(Vcpu, "KVM_SET_CPUID2(entries unmapped)", kvm::SET_CPUID2, Tail(u32s(&[1, 0]))),
        p(Vcpu, "KVM_INTERRUPT(256)", kvm::INTERRUPT, Buf(u32s(&[256]))),
        v(Vcpu, "KVM_INTERRUPT(0x20)", kvm::INTERRUPT, Buf(u32s(&[0x20]))),
        p(Vcpu, "KVM_INTERRUPT(0x21 with 0x20 queued)", kvm::INTERRUPT, Buf(u32s(&[0x21]))),
        p(Vcpu, "KVM_ENABLE_CAP(cap 0)", kvm::ENABLE_CAP, Buf(vec![0; 104])),
        p(Vcpu, "KVM_MEMORY_ENCRYPT_OP(NULL)", kvm::MEMORY_ENCRYPT_OP, Int(0)),
        p(Vcpu, "KVM_GET_NESTED_STATE(size 0)", kvm::GET_NESTED_STATE, Buf(vec![0; 128])),
        p(Vcpu, "KVM_SET_NESTED_STATE(size 0)", kvm::SET_NESTED_STATE, Buf(le(&[(2, 1, 2)], 128))),
        p(Vcpu, "KVM_SET_NESTED_STATE(unknown flag)", kvm::SET_NESTED_STATE, Buf(le(&[(0, 0x8000, 2), (2, 1, 2), (4, 128, 4)], 128))),
        p(Vcpu, "KVM_SET_VCPU_EVENTS(unknown flag)", kvm::SET_VCPU_EVENTS, Buf(le(&[(20, 1 << 31, 4)], 64))),
        v(Vcpu, "KVM_SET_FPU(MXCSR bit 31)", kvm::SET_FPU, Buf(fpu)),
        p(Vcpu, "KVM_GET_REGS(NULL)", kvm::GET_REGS, Int(0)),
        p(Vcpu, "KVM_SET_DEBUGREGS(flags 1)", kvm::SET_DEBUGREGS, Buf(le(&[(40, 0x400, 8), (48, 1, 8)], 128))),
        p(Vcpu, "KVM_SET_DEBUGREGS(DR7 bit 32)", kvm::SET_DEBUGREGS, Buf(le(&[(40, 0x1_0000_0400, 8)], 128))),
        p(Vcpu, "KVM_SET_XCRS(nr_xcrs 17)", kvm::SET_XCRS, Buf(le(&[(0, 17, 4), (16, 1, 8)], 392))),
        p(Vcpu, "KVM_SET_XCRS(XCR0 0)", kvm::SET_XCRS, Buf(le(&[(0, 1, 4)], 392))),
        p(Vcpu, "KVM_SET_XSAVE(XCOMP_BV set)", kvm::SET_XSAVE, Buf(le(&[(0, 0x37f, 2), (24, 0x1f80, 4), (512, 3, 8), (520, 1 << 63, 8)], 4096))),
        v(Vcpu, "KVM_GET_CPUID2(nent 0)", kvm::GET_CPUID2, Buf(u32s(&[0, 0]))),
        p(System, "KVM_X86_GET_MCE_CAP_SUPPORTED(8-byte buffer)", kvm::X86_GET_MCE_CAP_SUPPORTED, Buf(vec![0; 8])),
        p(Vcpu, "KVM_X86_SETUP_MCE(0 banks)", kvm::X86_SETUP_MCE, Buf(le(&[(0, 0x100, 8)], 8))),
        p(Vcpu, "KVM_X86_SETUP_MCE(CMCI_P)", kvm::X86_SETUP_MCE, Buf(le(&[(0, 0x404, 8)], 8))),
        p(Vcpu, "KVM_X86_SET_MCE(bank 40)", kvm::X86_SET_MCE, Buf(le(&[(0, 1 << 63, 8), (32, 40, 1)], 64))),
        p(Vcpu, "KVM_X86_SET_MCE(no VAL)", kvm::X86_SET_MCE, Buf(le(&[(0, 1 << 61, 8), (32, 1, 1)], 64))),
        // struct kvm_coalesced_mmio_zone { addr, size, pio }: pio 0 or 1
        // only (also to unregister); unregistering what is not there is ok.
        p(Vm, "KVM_REGISTER_COALESCED_MMIO(pio 2)", kvm::REGISTER_COALESCED_MMIO, Buf(le(&[(0, 0x80, 8), (8, 4, 4), (12, 2, 4)], 16))),
        p(Vm, "KVM_UNREGISTER_COALESCED_MMIO(pio 2)", kvm::UNREGISTER_COALESCED_MMIO, Buf(le(&[(0, 0x80, 8), (8, 4, 4), (12, 2, 4)], 16))),
        p(Vm, "KVM_UNREGISTER_COALESCED_MMIO(none there)", kvm::UNREGISTER_COALESCED_MMIO, Buf(le(&[(0, 0x1_0000_0000, 8), (8, 8, 4)], 16))),
        p(Vm, "KVM_REGISTER_COALESCED_MMIO(pio 1 at 0x80)", kvm::REGISTER_COALESCED_MMIO, Buf(le(&[(0, 0x80, 8), (8, 4, 4), (12, 1, 4)], 16))),
        p(Vm, "KVM_REGISTER_COALESCED_MMIO(wrapping)", kvm::REGISTER_COALESCED_MMIO, Buf(le(&[(0, u64::MAX, 8), (8, 16, 4)], 16))),
        p(Vm, "KVM_REGISTER_COALESCED_MMIO(struct cut by an unmapped page)", kvm::REGISTER_COALESCED_MMIO, Tail(le(&[], 8))),
        // struct kvm_device_attr { flags, group, attr, addr }: the TSC
        // offset (group KVM_VCPU_TSC_CTRL 0, attr KVM_VCPU_TSC_OFFSET 0);
        // other groups and attributes are ENXIO; the value at an
        // unmapped address (8) is EFAULT.
        p(Vcpu, "KVM_HAS_DEVICE_ATTR(TSC_OFFSET)", kvm::HAS_DEVICE_ATTR, Buf(le(&[(0, 0xff, 4)], 24))),
        p(Vcpu, "KVM_HAS_DEVICE_ATTR(group 1)", kvm::HAS_DEVICE_ATTR, Buf(le(&[(4, 1, 4)], 24))),
        p(Vcpu, "KVM_HAS_DEVICE_ATTR(attr 1)", kvm::HAS_DEVICE_ATTR, Buf(le(&[(8, 1, 8)], 24))),
        p(Vcpu, "KVM_GET_DEVICE_ATTR(attr 1<<32)", kvm::GET_DEVICE_ATTR, Buf(le(&[(8, 1 << 32, 8)], 24))),
        p(Vcpu, "KVM_SET_DEVICE_ATTR(group 1<<31)", kvm::SET_DEVICE_ATTR, Buf(le(&[(4, 1 << 31, 4)], 24))),
        p(Vcpu, "KVM_GET_DEVICE_ATTR(TSC_OFFSET at addr 8)", kvm::GET_DEVICE_ATTR, Buf(le(&[(16, 8, 8)], 24))),
        p(Vcpu, "KVM_SET_DEVICE_ATTR(TSC_OFFSET at addr 8)", kvm::SET_DEVICE_ATTR, Buf(le(&[(16, 8, 8)], 24))),
        p(Vcpu, "KVM_SET_DEVICE_ATTR(struct cut by an unmapped page)", kvm::SET_DEVICE_ATTR, Tail(le(&[], 16))),
        p(Vm, "KVM_SET_CLOCK(flags 1)", kvm::SET_CLOCK, Buf(le(&[(8, 1, 4)], 48))),
        p(Vm, "KVM_IOEVENTFD(len 3)", kvm::IOEVENTFD, Buf(le(&[(8, 0x80, 8), (16, 3, 4), (20, 0xffff_ffff, 4), (24, 2, 4)], 64))),
        p(Vm, "KVM_IOEVENTFD(fd -1)", kvm::IOEVENTFD, Buf(le(&[(8, 0x80, 8), (16, 1, 4), (20, 0xffff_ffff, 4), (24, 2, 4)], 64))),
        p(Vm, "KVM_IOEVENTFD(deassign fd -1)", kvm::IOEVENTFD, Buf(le(&[(8, 0x80, 8), (16, 1, 4), (20, 0xffff_ffff, 4), (24, 6, 4)], 64))),
    ]
}

/// `--list-ioctls`: the table, one ioctl a line (number, name, definition,
/// argument).
pub fn list_ioctls() {
    for i in IOCTLS {
        let arg = match i.arg {
            Arg::Int(x) => format!("{x:#x}"),
            Arg::Bad => "unmapped pointer".to_string(),
        };
        println!("{:#010x} {:<32} {:<72} {arg}", i.cmd, i.name, i.def);
    }
}

/// The probes of the table: every ioctl on the system, VM and vCPU fds.
pub fn table_probes() -> Vec<Probe> {
    let mut v = Vec::new();
    for fd in [Fd::System, Fd::Vm, Fd::Vcpu] {
        for i in IOCTLS {
            let arg = match i.arg {
                Arg::Int(x) => PArg::Int(x),
                Arg::Bad => PArg::Bad,
            };
            v.push(Probe { fd, label: i.name.to_string(), cmd: i.cmd, arg, value: false });
        }
    }
    v
}

/// The errno's C name.
pub fn errno_name(e: i32) -> String {
    nsvm_core::uapi::errno_name(e).map_or_else(|| format!("errno{e}"), str::to_string)
}

/// 64 KiB of read-write memory followed by 64 KiB that is not accessible.
struct Guarded {
    base: *mut u8,
}

const HALF: usize = 0x10000;

impl Guarded {
    fn new() -> Guarded {
        // SAFETY: a fresh anonymous mapping, checked; the second half is
        // made inaccessible on purpose.
        let base = unsafe {
            let p = libc::mmap(std::ptr::null_mut(), 2 * HALF, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0);
            assert!(p != libc::MAP_FAILED);
            assert_eq!(libc::mprotect(p.cast::<u8>().add(HALF).cast(), HALF, libc::PROT_NONE), 0);
            p.cast::<u8>()
        };
        Guarded { base }
    }
    /// The accessible half.
    fn rw(&mut self) -> &mut [u8] {
        // SAFETY: the first half of our mapping, borrowed through `self`.
        unsafe { std::slice::from_raw_parts_mut(self.base, HALF) }
    }
    fn unmapped(&self) -> u64 {
        self.base as u64 + HALF as u64
    }
    /// Prepares the argument; returns it.
    fn place(&mut self, a: &PArg) -> u64 {
        self.rw().fill(0);
        match a {
            PArg::Int(x) => *x,
            PArg::Bad => self.unmapped(),
            PArg::Buf(b) => {
                self.rw()[..b.len()].copy_from_slice(b);
                self.base as u64
            }
            PArg::Tail(b) => {
                self.rw()[HALF - b.len()..].copy_from_slice(b);
                self.base as u64 + (HALF - b.len()) as u64
            }
        }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        // SAFETY: our mapping.
        unsafe { libc::munmap(self.base.cast(), 2 * HALF) };
    }
}

/// Commands whose success returns a new fd (closed at once).
const FD_RETURNING: &[u32] = &[kvm::CREATE_VM, kvm::CREATE_VCPU, kvm::GET_STATS_FD];

/// Issues the probes; returns (fd, label, result) in order.
fn run_probes(e: &Env, probes: &[Probe]) -> Result<Vec<(Fd, String, String)>, String> {
    let k = e.kvm();
    let vm = k.create_vm().map_err(|x| format!("create VM: {x}"))?;
    let vcpu = vm.create_vcpu(0).map_err(|x| format!("create vCPU 0: {x}"))?;
    let vm0 = k.create_vm().map_err(|x| format!("create VM: {x}"))?;
    let fd_of = |f: Fd| -> RawFd {
        match f {
            Fd::System => k.as_raw_fd(),
            Fd::Vm => vm.as_raw_fd(),
            Fd::VmNoVcpu => vm0.as_raw_fd(),
            Fd::Vcpu => vcpu.as_raw_fd(),
        }
    };
    let mut g = Guarded::new();
    let mut out = Vec::new();
    for p in probes {
        let arg = g.place(&p.arg);
        let before = g.rw().to_vec();
        let r = ioctl(fd_of(p.fd), p.cmd, arg);
        let written = matches!(p.arg, PArg::Buf(_) | PArg::Tail(_)) && g.rw() != before.as_slice();
        let mut res = match r {
            Ok(v) if FD_RETURNING.contains(&p.cmd) && v > 2 => {
                // SAFETY: the kernel just returned this new fd to us.
                drop(unsafe { OwnedFd::from_raw_fd(v as RawFd) });
                "ok".to_string()
            }
            Ok(v) if p.value => format!("ok {v}"),
            Ok(_) => "ok".to_string(),
            Err(x) => errno_name(x),
        };
        if written {
            res += " written";
        }
        out.push((p.fd, p.label.clone(), res));
    }
    Ok(out)
}

/// `errno_table`: runs every probe on this device and writes the results
/// (`fd<TAB>label<TAB>result` per line) to `--errnos FILE`. Fails if the
/// device does not answer KVM's own rules for unknown commands (the
/// comparison does the rest).
pub fn errno_table(e: &Env) -> R {
    let mut probes = table_probes();
    probes.extend(extra_probes());
    let res = run_probes(e, &probes)?;
    let text: String = res.iter().map(|(fd, l, r)| format!("{}\t{l}\t{r}\n", fd.name())).collect();
    match &e.errnos {
        Some(path) => std::fs::write(path, &text).map_err(|x| format!("{path}: {x}"))?,
        None => print!("{text}"),
    }
    let get = |fd: Fd, l: &str| res.iter().find(|(f, n, _)| *f == fd && n == l).map(|(_, _, r)| r.as_str()).unwrap_or("missing");
    let want = [
        (Fd::System, "KVM_RUN", "EINVAL"),
        (Fd::System, "KVM_GET_API_VERSION", "ok"),
        (Fd::Vm, "KVM_RUN", "ENOTTY"),
        (Fd::Vm, "KVM_GET_API_VERSION", "ENOTTY"),
        (Fd::Vcpu, "KVM_CREATE_VM", "EINVAL"),
        (Fd::Vcpu, "KVM_GET_REGS", "EFAULT"),
        (Fd::Vcpu, "KVM_RUN", "EINVAL"),
        (Fd::Vm, "KVM_CREATE_VCPU", "EEXIST"),
    ];
    let bad: Vec<String> = want.iter().filter(|(f, l, r)| get(*f, l) != *r).map(|(f, l, r)| format!("{} {l}: {} (expected {r})", f.name(), get(*f, l))).collect();
    println!("  {} probes ({} ioctl numbers on 3 fds, {} error paths)", res.len(), IOCTLS.len(), res.len() - 3 * IOCTLS.len());
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad.join("; "))
    }
}

/// The table file: (fd, label) -> result.
fn parse_results(text: &str) -> Result<BTreeMap<(Fd, String), String>, String> {
    let mut m = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split('\t').collect();
        let fd = (f.len() == 3).then(|| Fd::parse(f[0])).flatten().ok_or(format!("line {}: '{line}'", i + 1))?;
        if m.insert((fd, f[1].to_string()), f[2].to_string()).is_some() {
            return Err(format!("line {}: {} {} twice", i + 1, f[0], f[1]));
        }
    }
    Ok(m)
}

/// A row of the documented differences.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Justified {
    /// The fds the row covers.
    pub fds: Vec<Fd>,
    /// The probe labels (ioctl names) it covers.
    pub labels: Vec<String>,
    /// nsvm's result.
    pub nsvm: String,
    /// kvm_amd's result.
    pub kvm: String,
    /// Why.
    pub why: String,
}

/// `docs/uapi.md`, whose difference table is the list of justified ones.
pub const UAPI_MD: &str = include_str!("../../../docs/uapi.md");
const BEGIN: &str = "<!-- errno differences: begin -->";
const END: &str = "<!-- errno differences: end -->";

/// Parses the table between the markers of `doc`: `| fds | ioctls | nsvm |
/// kvm_amd | why |`, code spans stripped, several fds or ioctls separated by
/// `, `.
pub fn justified(doc: &str) -> Result<Vec<Justified>, String> {
    let a = doc.find(BEGIN).ok_or("no begin marker")? + BEGIN.len();
    let b = doc[a..].find(END).ok_or("no end marker")? + a;
    let mut rows = Vec::new();
    for line in doc[a..b].lines().map(str::trim).filter(|l| l.starts_with('|')) {
        let c: Vec<String> = line.trim_matches('|').split('|').map(|x| x.trim().replace('`', "")).collect();
        if c.len() != 5 {
            return Err(format!("not 5 columns: {line}"));
        }
        if c[0] == "fd" || c[0].starts_with("---") {
            continue;
        }
        let fds = c[0].split(", ").map(|f| Fd::parse(f).ok_or(format!("unknown fd '{f}' in: {line}"))).collect::<Result<Vec<_>, _>>()?;
        let labels = c[1].split(", ").map(str::to_string).collect();
        rows.push(Justified { fds, labels, nsvm: c[2].clone(), kvm: c[3].clone(), why: c[4].clone() });
    }
    Ok(rows)
}

/// Compares nsvm's table with kvm_amd's; the report and whether every
/// difference is justified by a row of `rows` and every row by a difference.
pub fn compare(nsvm: &str, kvm_amd: &str, rows: &[Justified]) -> (String, bool) {
    let (a, b) = match (parse_results(nsvm), parse_results(kvm_amd)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(x), _) => return (format!("nsvm's table: {x}\n"), false),
        (_, Err(x)) => return (format!("kvm_amd's table: {x}\n"), false),
    };
    let mut out = String::new();
    let mut ok = true;
    if a.keys().ne(b.keys()) {
        return (format!("the two tables do not hold the same probes ({} and {})\n", a.len(), b.len()), false);
    }
    let mut used = vec![false; rows.len()];
    let mut diffs = Vec::new();
    for ((fd, l), r) in &a {
        let k = &b[&(*fd, l.clone())];
        if r == k {
            continue;
        }
        let row = rows.iter().position(|j| j.fds.contains(fd) && j.labels.contains(l) && &j.nsvm == r && &j.kvm == k);
        let verdict = match row {
            Some(i) => {
                used[i] = true;
                format!("justified: {}", rows[i].why)
            }
            None => {
                ok = false;
                "NOT JUSTIFIED in docs/uapi.md".to_string()
            }
        };
        diffs.push(format!("{:<10} {:<62} {:<16} {:<16} {verdict}\n", fd.name(), l, r, k));
    }
    out += &format!("{} probes on each device, {} differences:\n", a.len(), diffs.len());
    out += &format!("{:<10} {:<62} {:<16} {:<16} verdict\n", "fd", "ioctl", "nsvm", "kvm_amd");
    out += &diffs.concat();
    for (i, j) in rows.iter().enumerate() {
        // A row must describe differences that exist, for each fd and label.
        let all_seen = j.fds.iter().all(|fd| {
            j.labels.iter().all(|l| matches!((a.get(&(*fd, l.clone())), b.get(&(*fd, l.clone()))), (Some(x), Some(y)) if *x == j.nsvm && *y == j.kvm))
        });
        if !used[i] || !all_seen {
            ok = false;
            out += &format!("STALE row in docs/uapi.md (not every fd and ioctl differs this way): {} {} {} {}\n", j.fds.iter().map(|f| f.name()).collect::<Vec<_>>().join(","), j.labels.join(","), j.nsvm, j.kvm);
        }
    }
    (out, ok)
}

/// `--compare-errnos NSVM KVM`: prints the differences; fails on any not
/// justified in `docs/uapi.md` and on rows there that no longer apply.
pub fn compare_files(nsvm: &str, kvm_amd: &str) -> R {
    let a = std::fs::read_to_string(nsvm).map_err(|x| format!("{nsvm}: {x}"))?;
    let b = std::fs::read_to_string(kvm_amd).map_err(|x| format!("{kvm_amd}: {x}"))?;
    let rows = justified(UAPI_MD)?;
    let (report, ok) = compare(&a, &b, &rows);
    print!("{report}");
    if ok {
        Ok(())
    } else {
        Err("errno differences not justified in docs/uapi.md (above)".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings as kb;
    use std::mem::size_of;

    fn entry(name: &str) -> &'static Ioctl {
        IOCTLS.iter().find(|i| i.name == name).unwrap_or_else(|| panic!("{name} not in the table"))
    }

    #[test]
    fn table_numbers_follow_their_definitions() {
        assert_eq!(IOCTLS.len(), 151);
        for i in IOCTLS {
            // _IOx(KVMIO, nr[, type]): direction and number from the text.
            let def = i.def.rsplit(':').next().unwrap();
            let (mac, rest) = def.split_once('(').unwrap();
            let dir = match mac {
                "_IO" => 0,
                "_IOW" => 1,
                "_IOR" => 2,
                "_IOWR" => 3,
                _ => panic!("{}", i.def),
            };
            let nr = u32::from_str_radix(rest.split(", ").nth(1).unwrap().trim_end_matches(')').trim_start_matches("0x"), 16).unwrap();
            assert_eq!(i.cmd >> 30, dir, "{}", i.name);
            assert_eq!(i.cmd & 0xffff, 0xae00 | nr, "{}", i.name);
            assert_eq!((i.cmd >> 16) & 0x3fff == 0, dir == 0, "{}", i.name);
            assert!(IOCTLS.iter().filter(|j| j.name == i.name).count() == 1, "{} twice", i.name);
        }
    }

    #[test]
    fn table_sizes_match_kvm_bindings() {
        let size = |n: &str| (entry(n).cmd >> 16) as usize & 0x3fff;
        let want: &[(&str, usize)] = &[
            ("KVM_GET_DIRTY_LOG", size_of::<kb::kvm_dirty_log>()),
            ("KVM_SET_USER_MEMORY_REGION2", size_of::<kb::kvm_userspace_memory_region2>()),
            ("KVM_IRQFD", size_of::<kb::kvm_irqfd>()),
            ("KVM_IOEVENTFD", size_of::<kb::kvm_ioeventfd>()),
            ("KVM_GET_CLOCK", size_of::<kb::kvm_clock_data>()),
            ("KVM_TRANSLATE", size_of::<kb::kvm_translation>()),
            ("KVM_GET_LAPIC", size_of::<kb::kvm_lapic_state>()),
            ("KVM_SET_GUEST_DEBUG", size_of::<kb::kvm_guest_debug>()),
            ("KVM_X86_SET_MCE", size_of::<kb::kvm_x86_mce>()),
            ("KVM_GET_DEBUGREGS", size_of::<kb::kvm_debugregs>()),
            ("KVM_GET_XSAVE", size_of::<kb::kvm_xsave>()),
            ("KVM_GET_XCRS", size_of::<kb::kvm_xcrs>()),
            ("KVM_GET_NESTED_STATE", size_of::<kb::kvm_nested_state>()),
            ("KVM_X86_SET_MSR_FILTER", size_of::<kb::kvm_msr_filter>()),
            ("KVM_GET_SREGS2", size_of::<kb::kvm_sregs2>()),
            ("KVM_CREATE_DEVICE", size_of::<kb::kvm_create_device>()),
            ("KVM_SET_DEVICE_ATTR", size_of::<kb::kvm_device_attr>()),
            ("KVM_CREATE_GUEST_MEMFD", size_of::<kb::kvm_create_guest_memfd>()),
            ("KVM_PRE_FAULT_MEMORY", size_of::<kb::kvm_pre_fault_memory>()),
            ("KVM_SET_MEMORY_ATTRIBUTES", size_of::<kb::kvm_memory_attributes>()),
            ("KVM_GET_VCPU_EVENTS", size_of::<kb::kvm_vcpu_events>()),
            ("KVM_GET_FPU", size_of::<kb::kvm_fpu>()),
        ];
        for (n, s) in want {
            assert_eq!(size(n), *s, "{n}");
        }
    }

    #[test]
    fn table_agrees_with_nsvm_core() {
        let core: &[(&str, u32)] = &[
            ("KVM_GET_API_VERSION", kvm::GET_API_VERSION),
            ("KVM_CREATE_VM", kvm::CREATE_VM),
            ("KVM_GET_MSR_INDEX_LIST", kvm::GET_MSR_INDEX_LIST),
            ("KVM_CHECK_EXTENSION", kvm::CHECK_EXTENSION),
            ("KVM_GET_VCPU_MMAP_SIZE", kvm::GET_VCPU_MMAP_SIZE),
            ("KVM_GET_SUPPORTED_CPUID", kvm::GET_SUPPORTED_CPUID),
            ("KVM_GET_MSR_FEATURE_INDEX_LIST", kvm::GET_MSR_FEATURE_INDEX_LIST),
            ("KVM_CREATE_VCPU", kvm::CREATE_VCPU),
            ("KVM_SET_USER_MEMORY_REGION", kvm::SET_USER_MEMORY_REGION),
            ("KVM_SET_TSS_ADDR", kvm::SET_TSS_ADDR),
            ("KVM_SET_IDENTITY_MAP_ADDR", kvm::SET_IDENTITY_MAP_ADDR),
            ("KVM_SET_USER_MEMORY_REGION2", kvm::SET_USER_MEMORY_REGION2),
            ("KVM_SET_CPUID2", kvm::SET_CPUID2),
            ("KVM_GET_CPUID2", kvm::GET_CPUID2),
            ("KVM_GET_VCPU_EVENTS", kvm::GET_VCPU_EVENTS),
            ("KVM_SET_VCPU_EVENTS", kvm::SET_VCPU_EVENTS),
            ("KVM_NMI", kvm::NMI),
            ("KVM_INTERRUPT", kvm::INTERRUPT),
            ("KVM_GET_STATS_FD", kvm::GET_STATS_FD),
            ("KVM_GET_MSRS", kvm::GET_MSRS),
            ("KVM_SET_MSRS", kvm::SET_MSRS),
            ("KVM_GET_FPU", kvm::GET_FPU),
            ("KVM_SET_FPU", kvm::SET_FPU),
            ("KVM_GET_NESTED_STATE", kvm::GET_NESTED_STATE),
            ("KVM_SET_NESTED_STATE", kvm::SET_NESTED_STATE),
            ("KVM_GET_TSC_KHZ", kvm::GET_TSC_KHZ),
            ("KVM_ENABLE_CAP", kvm::ENABLE_CAP),
            ("KVM_CREATE_PIT", kvm::CREATE_PIT),
            ("KVM_CREATE_PIT2", kvm::CREATE_PIT2),
            ("KVM_GET_IRQCHIP", kvm::GET_IRQCHIP),
            ("KVM_SET_IRQCHIP", kvm::SET_IRQCHIP),
            ("KVM_GET_PIT", kvm::GET_PIT),
            ("KVM_SET_PIT", kvm::SET_PIT),
            ("KVM_GET_PIT2", kvm::GET_PIT2),
            ("KVM_SET_PIT2", kvm::SET_PIT2),
            ("KVM_REINJECT_CONTROL", kvm::REINJECT_CONTROL),
            ("KVM_IRQ_LINE", kvm::IRQ_LINE),
            ("KVM_IRQ_LINE_STATUS", kvm::IRQ_LINE_STATUS),
            ("KVM_SIGNAL_MSI", kvm::SIGNAL_MSI),
            ("KVM_SET_GSI_ROUTING", kvm::SET_GSI_ROUTING),
            ("KVM_RESET_DIRTY_RINGS", kvm::RESET_DIRTY_RINGS),
            ("KVM_MEMORY_ENCRYPT_OP", kvm::MEMORY_ENCRYPT_OP),
            ("KVM_MEMORY_ENCRYPT_REG_REGION", kvm::MEMORY_ENCRYPT_REG_REGION),
            ("KVM_MEMORY_ENCRYPT_UNREG_REGION", kvm::MEMORY_ENCRYPT_UNREG_REGION),
            ("KVM_RUN", kvm::RUN),
            ("KVM_GET_REGS", kvm::GET_REGS),
            ("KVM_SET_REGS", kvm::SET_REGS),
            ("KVM_GET_SREGS", kvm::GET_SREGS),
            ("KVM_SET_SREGS", kvm::SET_SREGS),
        ];
        for (n, c) in core {
            assert_eq!(entry(n).cmd, *c, "{n}");
        }
    }

    #[test]
    fn documented_differences_name_real_probes() {
        let rows = justified(UAPI_MD).expect("docs/uapi.md's table parses");
        assert!(!rows.is_empty());
        let mut labels: Vec<(Fd, String)> = table_probes().into_iter().map(|p| (p.fd, p.label)).collect();
        labels.extend(extra_probes().into_iter().map(|p| (p.fd, p.label)));
        for j in &rows {
            assert_ne!(j.nsvm, j.kvm, "{j:?}");
            assert!(!j.why.is_empty(), "{j:?}");
            for fd in &j.fds {
                for l in &j.labels {
                    assert!(labels.contains(&(*fd, l.clone())), "docs/uapi.md names {} {l}, which no probe issues", fd.name());
                }
            }
        }
    }

    #[test]
    fn extra_probe_labels_are_unique() {
        let mut all: Vec<(Fd, String)> = table_probes().into_iter().map(|p| (p.fd, p.label)).collect();
        all.extend(extra_probes().into_iter().map(|p| (p.fd, p.label)));
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n);
        // Labels never hold the separators of the file or the doc table.
        assert!(all.iter().all(|(_, l)| !l.contains('\t') && !l.contains(", ") && !l.contains('|')));
    }

    #[test]
    fn comparison() {
        let doc = format!("{BEGIN}\n| fd | ioctl | nsvm | kvm_amd | why |\n|---|---|---|---|---|\n| vm, vcpu | `KVM_A`, `KVM_B` | `ENOTTY` | `EFAULT` | no A or B |\n{END}\n");
        let rows = justified(&doc).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].fds, vec![Fd::Vm, Fd::Vcpu]);
        let kvm = "vm\tKVM_A\tEFAULT\nvm\tKVM_B\tEFAULT\nvcpu\tKVM_A\tEFAULT\nvcpu\tKVM_B\tEFAULT\nsystem\tKVM_C\tEINVAL\n";
        let good = "vm\tKVM_A\tENOTTY\nvm\tKVM_B\tENOTTY\nvcpu\tKVM_A\tENOTTY\nvcpu\tKVM_B\tENOTTY\nsystem\tKVM_C\tEINVAL\n";
        assert!(compare(good, kvm, &rows).1);
        // A difference the doc does not list.
        let extra = good.replace("system\tKVM_C\tEINVAL", "system\tKVM_C\tENOTTY");
        let (r, ok) = compare(&extra, kvm, &rows);
        assert!(!ok && r.contains("NOT JUSTIFIED"), "{r}");
        // A listed difference that no longer exists on one fd: stale.
        let fixed = good.replace("vcpu\tKVM_B\tENOTTY", "vcpu\tKVM_B\tEFAULT");
        let (r, ok) = compare(&fixed, kvm, &rows);
        assert!(!ok && r.contains("STALE"), "{r}");
        // A different errno than the one documented is not justified.
        let other = good.replace("vm\tKVM_A\tENOTTY", "vm\tKVM_A\tEINVAL");
        assert!(!compare(&other, kvm, &rows).1);
        // Probes missing on one side.
        assert!(!compare(good, "vm\tKVM_A\tEFAULT\n", &rows).1);
    }
}
