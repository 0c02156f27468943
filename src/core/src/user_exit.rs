// SPDX-License-Identifier: GPL-2.0
//! Exits to userspace: what `KVM_RUN` reports in the vCPU's `struct kvm_run`
//! page (`include/uapi/linux/kvm.h` of Linux 7.2, x86), as one enum,
//! [`UserExit`], whose [`UserExit::encode`] writes `exit_reason` and exactly
//! the fields of its member of the exit union, and [`RunCommon`], the fields
//! written on every return to userspace. Both write through [`RunPage`], so
//! the module stores straight into its mmapped page. The offsets ([`run`])
//! are checked against `kvm-bindings` in the tests.

use crate::exit::IoioInfo;

/// `KVM_CAP_SYNC_REGS` in `struct kvm_run`: the `kvm_valid_regs` and
/// `kvm_dirty_regs` words after the exit union, then `s.regs` (x86's
/// `struct kvm_sync_regs`: `kvm_regs`, `kvm_sregs`, `kvm_vcpu_events`).
pub mod sync_regs {
    /// `kvm_valid_regs` (u64).
    pub const VALID_REGS: usize = super::run::EXIT + 256;
    /// `kvm_dirty_regs` (u64).
    pub const DIRTY_REGS: usize = VALID_REGS + 8;
    /// `s.regs.regs` (`struct kvm_regs`, 144 bytes).
    pub const S_REGS: usize = DIRTY_REGS + 8;
    /// `s.regs.sregs` (`struct kvm_sregs`, 312 bytes).
    pub const S_SREGS: usize = S_REGS + 144;
    /// `s.regs.events` (`struct kvm_vcpu_events`, 64 bytes).
    pub const S_EVENTS: usize = S_SREGS + 312;
    /// `KVM_SYNC_X86_REGS`.
    pub const REGS: u64 = 1;
    /// `KVM_SYNC_X86_SREGS`.
    pub const SREGS: u64 = 2;
    /// `KVM_SYNC_X86_EVENTS`.
    pub const EVENTS: u64 = 4;
    /// `KVM_SYNC_X86_VALID_FIELDS`, what `KVM_CHECK_EXTENSION(KVM_CAP_SYNC_REGS)` reports.
    pub const VALID_FIELDS: u64 = REGS | SREGS | EVENTS;
}

/// `struct kvm_run` offsets and exit reasons (x86).
pub mod run {
    /// `request_interrupt_window` (u8).
    pub const REQUEST_INTERRUPT_WINDOW: usize = 0;
    /// `immediate_exit` (u8).
    pub const IMMEDIATE_EXIT: usize = 1;
    /// `exit_reason` (u32).
    pub const EXIT_REASON: usize = 8;
    /// `ready_for_interrupt_injection` (u8).
    pub const READY_FOR_INTERRUPT_INJECTION: usize = 12;
    /// `if_flag` (u8).
    pub const IF_FLAG: usize = 13;
    /// `flags` (u16).
    pub const FLAGS: usize = 14;
    /// `cr8` (u64).
    pub const CR8: usize = 16;
    /// `apic_base` (u64).
    pub const APIC_BASE: usize = 24;
    /// Start of the exit-specific union.
    pub const EXIT: usize = 32;
    /// `io.direction` (u8).
    pub const IO_DIRECTION: usize = EXIT;
    /// `io.size` (u8).
    pub const IO_SIZE: usize = EXIT + 1;
    /// `io.port` (u16).
    pub const IO_PORT: usize = EXIT + 2;
    /// `io.count` (u32).
    pub const IO_COUNT: usize = EXIT + 4;
    /// `io.data_offset` (u64).
    pub const IO_DATA_OFFSET: usize = EXIT + 8;
    /// `mmio.phys_addr` (u64).
    pub const MMIO_PHYS_ADDR: usize = EXIT;
    /// `mmio.data` (8 bytes).
    pub const MMIO_DATA: usize = EXIT + 8;
    /// `mmio.len` (u32).
    pub const MMIO_LEN: usize = EXIT + 16;
    /// `mmio.is_write` (u8).
    pub const MMIO_IS_WRITE: usize = EXIT + 20;
    /// `fail_entry.hardware_entry_failure_reason` (u64).
    pub const FAIL_ENTRY_REASON: usize = EXIT;
    /// `debug.arch.exception` (u32; then pad, `pc`, `dr6`, `dr7`, u64 each).
    pub const DEBUG_EXCEPTION: usize = EXIT;
    /// `debug.arch.pc`.
    pub const DEBUG_PC: usize = EXIT + 8;
    /// `debug.arch.dr6`.
    pub const DEBUG_DR6: usize = EXIT + 16;
    /// `debug.arch.dr7`.
    pub const DEBUG_DR7: usize = EXIT + 24;
    /// `fail_entry.cpu` (u32).
    pub const FAIL_ENTRY_CPU: usize = EXIT + 8;
    /// `internal.suberror` (u32).
    pub const INTERNAL_SUBERROR: usize = EXIT;
    /// `internal.ndata` (u32).
    pub const INTERNAL_NDATA: usize = EXIT + 4;
    /// `internal.data[16]` (u64 each).
    pub const INTERNAL_DATA: usize = EXIT + 8;
    /// `hypercall.nr` (u64).
    pub const HYPERCALL_NR: usize = EXIT;
    /// `hypercall.args[6]`.
    pub const HYPERCALL_ARGS: usize = EXIT + 8;
    /// `hypercall.ret`.
    pub const HYPERCALL_RET: usize = EXIT + 56;
    /// `hypercall.flags` / `longmode`.
    pub const HYPERCALL_FLAGS: usize = EXIT + 64;
    /// `msr.error` (u8, userspace to kernel).
    pub const MSR_ERROR: usize = EXIT;
    /// `msr.reason` (u32).
    pub const MSR_REASON: usize = EXIT + 8;
    /// `msr.index` (u32).
    pub const MSR_INDEX: usize = EXIT + 12;
    /// `msr.data` (u64).
    pub const MSR_DATA: usize = EXIT + 16;
    /// Size of the exit union.
    pub const EXIT_SIZE: usize = 256;

    /// `KVM_EXIT_UNKNOWN`.
    pub const EXIT_UNKNOWN: u32 = 0;
    /// `KVM_EXIT_EXCEPTION`.
    pub const EXIT_EXCEPTION: u32 = 1;
    /// `KVM_EXIT_IO`.
    pub const EXIT_IO: u32 = 2;
    /// `KVM_EXIT_HYPERCALL`.
    pub const EXIT_HYPERCALL: u32 = 3;
    /// `KVM_EXIT_DEBUG`.
    pub const EXIT_DEBUG: u32 = 4;
    /// `KVM_EXIT_HLT`.
    pub const EXIT_HLT: u32 = 5;
    /// `KVM_EXIT_MMIO`.
    pub const EXIT_MMIO: u32 = 6;
    /// `KVM_EXIT_IRQ_WINDOW_OPEN`.
    pub const EXIT_IRQ_WINDOW_OPEN: u32 = 7;
    /// `KVM_EXIT_SHUTDOWN`.
    pub const EXIT_SHUTDOWN: u32 = 8;
    /// `KVM_EXIT_FAIL_ENTRY`.
    pub const EXIT_FAIL_ENTRY: u32 = 9;
    /// `KVM_EXIT_INTR`.
    pub const EXIT_INTR: u32 = 10;
    /// `KVM_EXIT_INTERNAL_ERROR`.
    pub const EXIT_INTERNAL_ERROR: u32 = 17;
    /// `KVM_EXIT_IOAPIC_EOI`.
    pub const EXIT_IOAPIC_EOI: u32 = 26;
    /// `eoi.vector` of `KVM_EXIT_IOAPIC_EOI` (the union's start).
    pub const EOI_VECTOR: usize = 32;
    /// `KVM_EXIT_X86_RDMSR`.
    pub const EXIT_X86_RDMSR: u32 = 29;
    /// `KVM_EXIT_X86_WRMSR`.
    pub const EXIT_X86_WRMSR: u32 = 30;
    /// `KVM_EXIT_IO_IN`.
    pub const IO_IN: u8 = 0;
    /// `KVM_EXIT_IO_OUT`.
    pub const IO_OUT: u8 = 1;
    /// `KVM_INTERNAL_ERROR_EMULATION`.
    pub const INTERNAL_ERROR_EMULATION: u32 = 1;
    /// `KVM_INTERNAL_ERROR_DELIVERY_EV`.
    pub const INTERNAL_ERROR_DELIVERY_EV: u32 = 3;
    /// `KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON`.
    pub const INTERNAL_ERROR_UNEXPECTED_EXIT_REASON: u32 = 4;
    /// First data word of the internal error nsvm reports when a VMCB came
    /// back from VMRUN holding the host's own state (ASCII "nsvmHOST"): a
    /// QEMU TCG issue seen with several vCPUs (docs/architecture.md).
    pub const HOST_STATE_IN_VMCB: u64 = 0x6e73_766d_484f_5354;
    /// Offset of the PIO data page in the vCPU mmap (`KVM_PIO_PAGE_OFFSET` pages).
    pub const PIO_PAGE_OFFSET: u64 = 1;
    /// `io.data_offset` of every I/O exit: the PIO data page, in bytes from
    /// the start of the vCPU mmap.
    pub const PIO_DATA_OFFSET: u64 = PIO_PAGE_OFFSET * 4096;
    /// Size of the vCPU mmap: the run page, the PIO data page and the VM's
    /// coalesced-MMIO ring (`crate::coalesced::PAGE_OFFSET`), as KVM on x86.
    pub const MMAP_SIZE: usize = 3 * 4096;

    /// Name of an exit reason.
    pub fn exit_name(r: u32) -> &'static str {
        match r {
            EXIT_UNKNOWN => "UNKNOWN",
            EXIT_EXCEPTION => "EXCEPTION",
            EXIT_IO => "IO",
            EXIT_HYPERCALL => "HYPERCALL",
            EXIT_DEBUG => "DEBUG",
            EXIT_HLT => "HLT",
            EXIT_MMIO => "MMIO",
            EXIT_IRQ_WINDOW_OPEN => "IRQ_WINDOW_OPEN",
            EXIT_SHUTDOWN => "SHUTDOWN",
            EXIT_FAIL_ENTRY => "FAIL_ENTRY",
            EXIT_INTR => "INTR",
            EXIT_INTERNAL_ERROR => "INTERNAL_ERROR",
            EXIT_IOAPIC_EOI => "IOAPIC_EOI",
            EXIT_X86_RDMSR => "X86_RDMSR",
            EXIT_X86_WRMSR => "X86_WRMSR",
            _ => "OTHER",
        }
    }
}

/// Byte-wise writes into a vCPU's `kvm_run` page.
pub trait RunPage {
    /// Stores `bytes` at byte offset `off` of the page.
    fn put(&mut self, off: usize, bytes: &[u8]);
    /// Stores a byte (a page may do it with one store).
    #[inline]
    fn put_u8(&mut self, off: usize, v: u8) {
        self.put(off, &[v]);
    }
    /// Stores a naturally aligned u16.
    #[inline]
    fn put_u16(&mut self, off: usize, v: u16) {
        self.put(off, &v.to_ne_bytes());
    }
    /// Stores a naturally aligned u32.
    #[inline]
    fn put_u32(&mut self, off: usize, v: u32) {
        self.put(off, &v.to_ne_bytes());
    }
    /// Stores a naturally aligned u64.
    #[inline]
    fn put_u64(&mut self, off: usize, v: u64) {
        self.put(off, &v.to_ne_bytes());
    }
}

impl RunPage for [u8] {
    fn put(&mut self, off: usize, bytes: &[u8]) {
        self[off..off + bytes.len()].copy_from_slice(bytes);
    }
}

/// Number of words in `internal.data`.
pub const INTERNAL_DATA_MAX: usize = 16;

/// An exit to userspace: the `exit_reason` and its member of the exit union.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserExit {
    /// `KVM_EXIT_IO`: port I/O, the data in the PIO page at `data_offset`
    /// (`count` elements of `size` bytes).
    Io {
        /// `KVM_EXIT_IO_IN` (else `KVM_EXIT_IO_OUT`).
        is_in: bool,
        /// Element size: 1, 2 or 4.
        size: u8,
        /// Port.
        port: u16,
        /// Number of elements.
        count: u32,
        /// Offset of the data in the vCPU mmap ([`run::PIO_DATA_OFFSET`]).
        data_offset: u64,
    },
    /// `KVM_EXIT_MMIO`.
    Mmio {
        /// Guest (L1) physical address.
        phys_addr: u64,
        /// The written bytes in memory order (x86: little-endian), stored
        /// as all 8 bytes of `mmio.data`; 0 for a read.
        data: u64,
        /// Access size in bytes.
        len: u32,
        /// Write (else read).
        is_write: bool,
    },
    /// `KVM_EXIT_HLT`.
    Hlt,
    /// `KVM_EXIT_SHUTDOWN`.
    Shutdown,
    /// `KVM_EXIT_IRQ_WINDOW_OPEN`.
    IrqWindowOpen,
    /// `KVM_EXIT_INTR` (a signal is pending).
    Intr,
    /// `KVM_EXIT_IOAPIC_EOI`: the guest EOIed a level-triggered vector
    /// routed through the userspace I/O APIC (split irqchip).
    IoapicEoi {
        /// The vector.
        vector: u8,
    },
    /// `KVM_EXIT_FAIL_ENTRY`: VMRUN refused the state.
    FailEntry {
        /// The exit code VMRUN returned (`VMEXIT_INVALID`).
        hardware_entry_failure_reason: u64,
        /// The CPU that tried.
        cpu: u32,
    },
    /// `KVM_EXIT_DEBUG` (`KVM_SET_GUEST_DEBUG`): the exception that
    /// stopped the guest (1: single step or hardware breakpoint, 3: INT3).
    Debug {
        /// `DB_VECTOR` or `BP_VECTOR`.
        exception: u32,
        /// Linear address of the instruction (CS base + RIP).
        pc: u64,
        /// DR6 at the exit (0 for #BP).
        dr6: u64,
        /// DR7 at the exit (0 for #BP).
        dr7: u64,
    },
    /// `KVM_EXIT_X86_RDMSR` / `KVM_EXIT_X86_WRMSR` (`KVM_CAP_X86_USER_SPACE_MSR`):
    /// `msr.error` and its padding cleared, `reason`, `index`, `data` (0
    /// for a read).
    X86Msr {
        /// WRMSR (else RDMSR).
        write: bool,
        /// `KVM_MSR_EXIT_REASON_*`.
        reason: u32,
        /// The MSR.
        index: u32,
        /// The value written.
        data: u64,
    },
    /// `KVM_EXIT_INTERNAL_ERROR`: `suberror` and the first `ndata` words of
    /// `data` (only those are written).
    InternalError {
        /// `KVM_INTERNAL_ERROR_*`.
        suberror: u32,
        /// Number of valid words in `data` (at most [`INTERNAL_DATA_MAX`]).
        ndata: u32,
        /// The words.
        data: [u64; INTERNAL_DATA_MAX],
    },
}

/// Packs instruction bytes little-endian into two words, as the
/// emulation-failure data carries them: bytes 0..7 in the first word (byte 0
/// lowest), 8..15 in the second; bytes past 16 are dropped.
pub fn pack_insn(bytes: &[u8]) -> [u64; 2] {
    let mut w = [0u64; 2];
    for (i, b) in bytes.iter().take(16).enumerate() {
        w[i / 8] |= u64::from(*b) << (8 * (i % 8));
    }
    w
}

impl UserExit {
    /// The `exit_reason` (`KVM_EXIT_*`).
    pub const fn reason(&self) -> u32 {
        match self {
            UserExit::Io { .. } => run::EXIT_IO,
            UserExit::Mmio { .. } => run::EXIT_MMIO,
            UserExit::Hlt => run::EXIT_HLT,
            UserExit::Shutdown => run::EXIT_SHUTDOWN,
            UserExit::IrqWindowOpen => run::EXIT_IRQ_WINDOW_OPEN,
            UserExit::Intr => run::EXIT_INTR,
            UserExit::IoapicEoi { .. } => run::EXIT_IOAPIC_EOI,
            UserExit::FailEntry { .. } => run::EXIT_FAIL_ENTRY,
            UserExit::InternalError { .. } => run::EXIT_INTERNAL_ERROR,
            UserExit::Debug { .. } => run::EXIT_DEBUG,
            UserExit::X86Msr { write: false, .. } => run::EXIT_X86_RDMSR,
            UserExit::X86Msr { write: true, .. } => run::EXIT_X86_WRMSR,
        }
    }

    /// Port I/O of `count` elements for the access `io`, the data in the
    /// PIO page.
    #[inline]
    pub const fn io(io: &IoioInfo, count: u32) -> Self {
        UserExit::Io { is_in: io.is_in, size: io.size, port: io.port, count, data_offset: run::PIO_DATA_OFFSET }
    }

    /// `KVM_EXIT_INTERNAL_ERROR` with `suberror` and `data` (words past
    /// [`INTERNAL_DATA_MAX`] are dropped).
    pub fn internal_error(suberror: u32, data: &[u64]) -> Self {
        let mut e = UserExit::InternalError { suberror, ndata: 0, data: [0; INTERNAL_DATA_MAX] };
        for &d in data {
            e.push(d);
        }
        e
    }

    /// Appends a word to the data of an internal error (nothing when full or
    /// for other exits).
    fn push(&mut self, word: u64) {
        if let UserExit::InternalError { ndata, data, .. } = self {
            if let Some(slot) = data.get_mut(*ndata as usize) {
                *slot = word;
                *ndata += 1;
            }
        }
    }

    /// `KVM_INTERNAL_ERROR_EMULATION` for an instruction L0 could not
    /// decode: `data = [rip, extra..., len, w0, w1]` with `w0, w1` =
    /// [`pack_insn`]`(insn)`, and without the `len` word when `len` is
    /// `None`. `insn` is the fetch buffer (all of it is packed); `len` how
    /// many bytes the fetch got.
    pub fn emulation_failure(rip: u64, extra: &[u64], insn: &[u8], len: Option<usize>) -> Self {
        let mut e = Self::internal_error(run::INTERNAL_ERROR_EMULATION, &[rip]);
        for &d in extra {
            e.push(d);
        }
        if let Some(n) = len {
            e.push(n as u64);
        }
        let [w0, w1] = pack_insn(insn);
        e.push(w0);
        e.push(w1);
        e
    }

    /// `KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON` for an exit L0 does not
    /// handle: `data = [code, info1, info2]`.
    pub fn unexpected_exit(code: u64, info1: u64, info2: u64) -> Self {
        Self::internal_error(run::INTERNAL_ERROR_UNEXPECTED_EXIT_REASON, &[code, info1, info2])
    }

    /// `KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON` for a VMCB that came back
    /// from VMRUN holding the host's state: `data = [`
    /// [`run::HOST_STATE_IN_VMCB`]`, code, rip]`.
    pub fn host_state_in_vmcb(code: u64, rip: u64) -> Self {
        Self::internal_error(run::INTERNAL_ERROR_UNEXPECTED_EXIT_REASON, &[run::HOST_STATE_IN_VMCB, code, rip])
    }

    /// Writes `exit_reason` and the fields of this exit's union member, and
    /// nothing else (the rest of the page keeps its bytes, as in KVM).
    #[inline]
    pub fn encode<P: RunPage + ?Sized>(&self, page: &mut P) {
        page.put_u32(run::EXIT_REASON, self.reason());
        match *self {
            UserExit::Io { is_in, size, port, count, data_offset } => {
                page.put_u8(run::IO_DIRECTION, if is_in { run::IO_IN } else { run::IO_OUT });
                page.put_u8(run::IO_SIZE, size);
                page.put_u16(run::IO_PORT, port);
                page.put_u32(run::IO_COUNT, count);
                page.put_u64(run::IO_DATA_OFFSET, data_offset);
            }
            UserExit::Mmio { phys_addr, data, len, is_write } => {
                page.put_u64(run::MMIO_PHYS_ADDR, phys_addr);
                page.put_u64(run::MMIO_DATA, data);
                page.put_u32(run::MMIO_LEN, len);
                page.put_u8(run::MMIO_IS_WRITE, u8::from(is_write));
            }
            UserExit::Hlt | UserExit::Shutdown | UserExit::IrqWindowOpen | UserExit::Intr => {}
            UserExit::IoapicEoi { vector } => page.put_u8(run::EOI_VECTOR, vector),
            UserExit::FailEntry { hardware_entry_failure_reason, cpu } => {
                page.put_u64(run::FAIL_ENTRY_REASON, hardware_entry_failure_reason);
                page.put_u32(run::FAIL_ENTRY_CPU, cpu);
            }
            UserExit::Debug { exception, pc, dr6, dr7 } => {
                page.put_u32(run::DEBUG_EXCEPTION, exception);
                page.put_u64(run::DEBUG_PC, pc);
                page.put_u64(run::DEBUG_DR6, dr6);
                page.put_u64(run::DEBUG_DR7, dr7);
            }
            UserExit::X86Msr { reason, index, data, .. } => {
                page.put_u64(run::MSR_ERROR, 0);
                page.put_u32(run::MSR_REASON, reason);
                page.put_u32(run::MSR_INDEX, index);
                page.put_u64(run::MSR_DATA, data);
            }
            UserExit::InternalError { suberror, ndata, ref data } => {
                let n = core::cmp::min(ndata as usize, INTERNAL_DATA_MAX);
                page.put_u32(run::INTERNAL_SUBERROR, suberror);
                page.put_u32(run::INTERNAL_NDATA, n as u32);
                for (i, d) in data[..n].iter().enumerate() {
                    page.put_u64(run::INTERNAL_DATA + 8 * i, *d);
                }
            }
        }
    }
}

/// The fields of `kvm_run` written on every return from `KVM_RUN`, whatever
/// the exit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunCommon {
    /// `if_flag`: the guest's RFLAGS.IF.
    pub if_flag: bool,
    /// `ready_for_interrupt_injection`: `KVM_INTERRUPT` would be taken now.
    pub ready_for_interrupt_injection: bool,
    /// `cr8`: the task priority (V_TPR).
    pub cr8: u64,
    /// `apic_base`: the APIC base MSR.
    pub apic_base: u64,
}

impl RunCommon {
    /// Writes the four fields and nothing else.
    #[inline]
    pub fn encode<P: RunPage + ?Sized>(&self, page: &mut P) {
        page.put_u8(run::IF_FLAG, u8::from(self.if_flag));
        page.put_u8(run::READY_FOR_INTERRUPT_INJECTION, u8::from(self.ready_for_interrupt_injection));
        page.put_u64(run::CR8, self.cr8);
        page.put_u64(run::APIC_BASE, self.apic_base);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};
    use kvm_bindings as kb;
    use std::collections::BTreeSet;

    type Io = kb::kvm_run__bindgen_ty_1__bindgen_ty_4;
    type Mmio = kb::kvm_run__bindgen_ty_1__bindgen_ty_6;
    type FailEntry = kb::kvm_run__bindgen_ty_1__bindgen_ty_2;
    type Internal = kb::kvm_run__bindgen_ty_1__bindgen_ty_13;

    /// Size of the field `f` returns a reference to.
    fn size_of_field<T, F>(_: fn(&T) -> &F) -> usize {
        size_of::<F>()
    }

    /// Byte range in `kvm_run` of a field of `kvm_run`.
    macro_rules! top {
        ($f:ident) => {
            (offset_of!(kb::kvm_run, $f), size_of_field(|r: &kb::kvm_run| &r.$f))
        };
    }
    /// Byte range in `kvm_run` of a field of a member of the exit union.
    macro_rules! exit_field {
        ($t:ty, $f:ident) => {
            (offset_of!(kb::kvm_run, __bindgen_anon_1) + offset_of!($t, $f), size_of_field(|s: &$t| &s.$f))
        };
    }

    #[test]
    fn sync_regs_offsets_match_kvm_run() {
        use crate::kvm::{vcpu_events, Regs, Sregs};
        assert_eq!(sync_regs::VALID_REGS, offset_of!(kb::kvm_run, kvm_valid_regs));
        assert_eq!(sync_regs::DIRTY_REGS, offset_of!(kb::kvm_run, kvm_dirty_regs));
        let s = offset_of!(kb::kvm_run, s);
        assert_eq!(sync_regs::S_REGS, s + offset_of!(kb::kvm_sync_regs, regs));
        assert_eq!(sync_regs::S_SREGS, s + offset_of!(kb::kvm_sync_regs, sregs));
        assert_eq!(sync_regs::S_EVENTS, s + offset_of!(kb::kvm_sync_regs, events));
        assert_eq!((Regs::SIZE, Sregs::SIZE, vcpu_events::SIZE), (size_of::<kb::kvm_regs>(), size_of::<kb::kvm_sregs>(), size_of::<kb::kvm_vcpu_events>()));
        assert_eq!(sync_regs::VALID_FIELDS, u64::from(kb::KVM_SYNC_X86_VALID_FIELDS));
        assert_eq!(sync_regs::S_EVENTS + vcpu_events::SIZE, s + size_of::<kb::kvm_sync_regs>());
        // VcpuEvents::to_bytes puts triple_fault.pending at byte 28.
        assert_eq!(offset_of!(kb::kvm_vcpu_events, triple_fault), 28);
        let e = crate::kvm::VcpuEvents { triple_fault: true, ..Default::default() };
        assert_eq!(crate::kvm::VcpuEvents::from_bytes(&e.to_bytes()), e);
        assert_eq!(e.to_bytes()[28], 1);
    }

    /// A run page that records which bytes were written (and checks no byte
    /// is written twice).
    struct Recorder {
        bytes: Vec<u8>,
        written: BTreeSet<usize>,
    }

    impl Recorder {
        fn new() -> Self {
            Self { bytes: vec![0xa5; size_of::<kb::kvm_run>()], written: BTreeSet::new() }
        }
        /// The bytes as KVM's struct.
        fn run(&self) -> kb::kvm_run {
            assert_eq!(self.bytes.len(), size_of::<kb::kvm_run>());
            // SAFETY: kvm_run is plain old data (integers, arrays and unions
            // of them) and the buffer holds exactly its size; the read is
            // unaligned-safe.
            unsafe { core::ptr::read_unaligned(self.bytes.as_ptr().cast::<kb::kvm_run>()) }
        }
    }

    impl RunPage for Recorder {
        fn put(&mut self, off: usize, b: &[u8]) {
            for i in off..off + b.len() {
                assert!(self.written.insert(i), "byte {i} written twice");
            }
            self.bytes.put(off, b);
        }
    }

    fn encode(e: &UserExit) -> Recorder {
        let mut r = Recorder::new();
        e.encode(&mut r);
        r
    }

    /// The bytes of the given ranges.
    fn bytes_of(ranges: &[(usize, usize)]) -> BTreeSet<usize> {
        ranges.iter().flat_map(|&(o, n)| o..o + n).collect()
    }

    #[test]
    fn offsets_match_kvm_bindings() {
        assert_eq!(top!(request_interrupt_window), (run::REQUEST_INTERRUPT_WINDOW, 1));
        assert_eq!(top!(immediate_exit), (run::IMMEDIATE_EXIT, 1));
        assert_eq!(top!(exit_reason), (run::EXIT_REASON, 4));
        assert_eq!(top!(ready_for_interrupt_injection), (run::READY_FOR_INTERRUPT_INJECTION, 1));
        assert_eq!(top!(if_flag), (run::IF_FLAG, 1));
        assert_eq!(top!(flags), (run::FLAGS, 2));
        assert_eq!(top!(cr8), (run::CR8, 8));
        assert_eq!(top!(apic_base), (run::APIC_BASE, 8));
        assert_eq!(top!(__bindgen_anon_1), (run::EXIT, run::EXIT_SIZE));
        assert_eq!(exit_field!(Io, direction), (run::IO_DIRECTION, 1));
        assert_eq!(exit_field!(Io, size), (run::IO_SIZE, 1));
        assert_eq!(exit_field!(Io, port), (run::IO_PORT, 2));
        assert_eq!(exit_field!(Io, count), (run::IO_COUNT, 4));
        assert_eq!(exit_field!(Io, data_offset), (run::IO_DATA_OFFSET, 8));
        assert_eq!(exit_field!(Mmio, phys_addr), (run::MMIO_PHYS_ADDR, 8));
        assert_eq!(exit_field!(Mmio, data), (run::MMIO_DATA, 8));
        assert_eq!(exit_field!(Mmio, len), (run::MMIO_LEN, 4));
        assert_eq!(exit_field!(Mmio, is_write), (run::MMIO_IS_WRITE, 1));
        assert_eq!(exit_field!(FailEntry, hardware_entry_failure_reason), (run::FAIL_ENTRY_REASON, 8));
        assert_eq!(exit_field!(FailEntry, cpu), (run::FAIL_ENTRY_CPU, 4));
        assert_eq!(exit_field!(Internal, suberror), (run::INTERNAL_SUBERROR, 4));
        assert_eq!(exit_field!(Internal, ndata), (run::INTERNAL_NDATA, 4));
        assert_eq!(exit_field!(Internal, data), (run::INTERNAL_DATA, 8 * INTERNAL_DATA_MAX));
        {
            type Dbg = kb::kvm_run__bindgen_ty_1__bindgen_ty_5;
            let base = offset_of!(kb::kvm_run, __bindgen_anon_1) + offset_of!(Dbg, arch);
            assert_eq!(base + offset_of!(kb::kvm_debug_exit_arch, exception), run::DEBUG_EXCEPTION);
            assert_eq!(base + offset_of!(kb::kvm_debug_exit_arch, pc), run::DEBUG_PC);
            assert_eq!(base + offset_of!(kb::kvm_debug_exit_arch, dr6), run::DEBUG_DR6);
            assert_eq!(base + offset_of!(kb::kvm_debug_exit_arch, dr7), run::DEBUG_DR7);
        }
        type Hc = kb::kvm_run__bindgen_ty_1__bindgen_ty_8;
        assert_eq!(exit_field!(Hc, nr).0, run::HYPERCALL_NR);
        assert_eq!(exit_field!(Hc, args).0, run::HYPERCALL_ARGS);
        assert_eq!(exit_field!(Hc, ret).0, run::HYPERCALL_RET);
        assert_eq!(offset_of!(kb::kvm_run, __bindgen_anon_1) + offset_of!(Hc, __bindgen_anon_1), run::HYPERCALL_FLAGS);
        {
            type Msr = kb::kvm_run__bindgen_ty_1__bindgen_ty_23;
            assert_eq!(exit_field!(Msr, error), (run::MSR_ERROR, 1));
            assert_eq!(exit_field!(Msr, reason), (run::MSR_REASON, 4));
            assert_eq!(exit_field!(Msr, index), (run::MSR_INDEX, 4));
            assert_eq!(exit_field!(Msr, data), (run::MSR_DATA, 8));
        }
        assert_eq!(kb::KVM_PIO_PAGE_OFFSET as u64, run::PIO_PAGE_OFFSET);
        assert_eq!(u32::from(run::IO_IN), kb::KVM_EXIT_IO_IN);
        assert_eq!(u32::from(run::IO_OUT), kb::KVM_EXIT_IO_OUT);
        assert_eq!(run::INTERNAL_ERROR_EMULATION, kb::KVM_INTERNAL_ERROR_EMULATION);
        assert_eq!(run::INTERNAL_ERROR_DELIVERY_EV, kb::KVM_INTERNAL_ERROR_DELIVERY_EV);
        assert_eq!(run::INTERNAL_ERROR_UNEXPECTED_EXIT_REASON, kb::KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON);
    }

    #[test]
    fn exit_reasons_match_kvm_bindings() {
        let none = [0u64; INTERNAL_DATA_MAX];
        let cases = [
            (UserExit::Io { is_in: true, size: 1, port: 0, count: 1, data_offset: 0 }, kb::KVM_EXIT_IO),
            (UserExit::Mmio { phys_addr: 0, data: 0, len: 1, is_write: false }, kb::KVM_EXIT_MMIO),
            (UserExit::Hlt, kb::KVM_EXIT_HLT),
            (UserExit::Shutdown, kb::KVM_EXIT_SHUTDOWN),
            (UserExit::IrqWindowOpen, kb::KVM_EXIT_IRQ_WINDOW_OPEN),
            (UserExit::Intr, kb::KVM_EXIT_INTR),
            (UserExit::IoapicEoi { vector: 0x31 }, kb::KVM_EXIT_IOAPIC_EOI),
            (UserExit::FailEntry { hardware_entry_failure_reason: 0, cpu: 0 }, kb::KVM_EXIT_FAIL_ENTRY),
            (UserExit::InternalError { suberror: 1, ndata: 0, data: none }, kb::KVM_EXIT_INTERNAL_ERROR),
            (UserExit::Debug { exception: 1, pc: 0, dr6: 0, dr7: 0 }, kb::KVM_EXIT_DEBUG),
            (UserExit::X86Msr { write: false, reason: 4, index: 0xc000_0100, data: 0 }, kb::KVM_EXIT_X86_RDMSR),
            (UserExit::X86Msr { write: true, reason: 2, index: 0xdead_beef, data: 0x1234 }, kb::KVM_EXIT_X86_WRMSR),
        ];
        for (e, want) in cases {
            assert_eq!(e.reason(), want, "{e:?}");
            let r = encode(&e);
            assert_eq!(r.run().exit_reason, want, "{e:?}");
            assert_ne!(run::exit_name(want), "OTHER", "{e:?}");
        }
        for (r, k) in [
            (run::EXIT_UNKNOWN, kb::KVM_EXIT_UNKNOWN),
            (run::EXIT_EXCEPTION, kb::KVM_EXIT_EXCEPTION),
            (run::EXIT_HYPERCALL, kb::KVM_EXIT_HYPERCALL),
            (run::EXIT_DEBUG, kb::KVM_EXIT_DEBUG),
        ] {
            assert_eq!(r, k);
        }
    }

    #[test]
    fn io_encoding() {
        let reason = top!(exit_reason);
        let io = crate::exit::IoioInfo::decode((0x3f8 << 16) | (1 << 4) | 1, 0);
        let e = UserExit::io(&io, 1);
        assert_eq!(e, UserExit::Io { is_in: true, size: 1, port: 0x3f8, count: 1, data_offset: 4096 });
        let r = encode(&e);
        // SAFETY: reading the member the encoding wrote.
        let k = unsafe { r.run().__bindgen_anon_1.io };
        assert_eq!((k.direction, k.size, k.port, k.count, k.data_offset), (0, 1, 0x3f8, 1, 4096));
        let all = [reason, exit_field!(Io, direction), exit_field!(Io, size), exit_field!(Io, port), exit_field!(Io, count), exit_field!(Io, data_offset)];
        assert_eq!(r.written, bytes_of(&all));
        // OUTSW, 7 elements.
        let e = UserExit::Io { is_in: false, size: 2, port: 0x1f0, count: 7, data_offset: run::PIO_DATA_OFFSET };
        let r = encode(&e);
        // SAFETY: as above.
        let k = unsafe { r.run().__bindgen_anon_1.io };
        assert_eq!((k.direction, k.size, k.port, k.count, k.data_offset), (1, 2, 0x1f0, 7, 4096));
        assert_eq!(r.written, bytes_of(&all));
    }

    #[test]
    fn mmio_encoding() {
        let e = UserExit::Mmio { phys_addr: 0xfee0_0300, data: 0x1122_3344_5566_7788, len: 4, is_write: true };
        let r = encode(&e);
        assert_eq!(r.run().exit_reason, kb::KVM_EXIT_MMIO);
        // SAFETY: reading the member the encoding wrote.
        let k = unsafe { r.run().__bindgen_anon_1.mmio };
        assert_eq!((k.phys_addr, k.len, k.is_write), (0xfee0_0300, 4, 1));
        // Memory order: the low byte first.
        assert_eq!(k.data, [0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]);
        let all = [top!(exit_reason), exit_field!(Mmio, phys_addr), exit_field!(Mmio, data), exit_field!(Mmio, len), exit_field!(Mmio, is_write)];
        assert_eq!(r.written, bytes_of(&all));
        let r = encode(&UserExit::Mmio { phys_addr: 1, data: 0, len: 8, is_write: false });
        // SAFETY: as above.
        let k = unsafe { r.run().__bindgen_anon_1.mmio };
        assert_eq!((k.phys_addr, k.data, k.len, k.is_write), (1, [0; 8], 8, 0));
        assert_eq!(r.written, bytes_of(&all));
    }

    #[test]
    fn reason_only_exits_write_only_the_reason() {
        for e in [UserExit::Hlt, UserExit::Shutdown, UserExit::IrqWindowOpen, UserExit::Intr] {
            let r = encode(&e);
            assert_eq!(r.written, bytes_of(&[top!(exit_reason)]), "{e:?}");
            assert_eq!(r.run().exit_reason, e.reason());
        }
    }

    #[test]
    fn fail_entry_encoding() {
        let e = UserExit::FailEntry { hardware_entry_failure_reason: u64::MAX, cpu: 3 };
        let r = encode(&e);
        // SAFETY: reading the member the encoding wrote.
        let k = unsafe { r.run().__bindgen_anon_1.fail_entry };
        assert_eq!((k.hardware_entry_failure_reason, k.cpu), (u64::MAX, 3));
        let all = [top!(exit_reason), exit_field!(FailEntry, hardware_entry_failure_reason), exit_field!(FailEntry, cpu)];
        assert_eq!(r.written, bytes_of(&all));
    }

    #[test]
    fn internal_error_encoding_writes_ndata_words() {
        let e = UserExit::unexpected_exit(0x3ff, 0x11, 0x22);
        let r = encode(&e);
        // SAFETY: reading the member the encoding wrote.
        let k = unsafe { r.run().__bindgen_anon_1.internal };
        assert_eq!((k.suberror, k.ndata), (kb::KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON, 3));
        assert_eq!(k.data[..3], [0x3ff, 0x11, 0x22]);
        // The words past ndata keep what the page held.
        assert_eq!(k.data[3], 0xa5a5_a5a5_a5a5_a5a5);
        let (d, _) = exit_field!(Internal, data);
        let all = [top!(exit_reason), exit_field!(Internal, suberror), exit_field!(Internal, ndata), (d, 3 * 8)];
        assert_eq!(r.written, bytes_of(&all));
        // No data: only suberror and ndata.
        let r = encode(&UserExit::internal_error(run::INTERNAL_ERROR_DELIVERY_EV, &[]));
        assert_eq!(r.written, bytes_of(&all[..3]));
        // Full: 16 words, more are dropped.
        let words: Vec<u64> = (1..=20).collect();
        let e = UserExit::internal_error(1, &words);
        let r = encode(&e);
        // SAFETY: as above.
        let k = unsafe { r.run().__bindgen_anon_1.internal };
        assert_eq!(k.ndata, 16);
        assert_eq!(k.data[..], words[..16]);
        assert_eq!(r.written, bytes_of(&[all[0], all[1], all[2], exit_field!(Internal, data)]));
        // An inconsistent ndata never writes past data[16].
        let e = UserExit::InternalError { suberror: 1, ndata: 99, data: [7; INTERNAL_DATA_MAX] };
        let r = encode(&e);
        // SAFETY: as above.
        assert_eq!(unsafe { r.run().__bindgen_anon_1.internal }.ndata, 16);
        assert_eq!(r.written, bytes_of(&[all[0], all[1], all[2], exit_field!(Internal, data)]));
    }

    fn data_of(e: &UserExit) -> Vec<u64> {
        let UserExit::InternalError { ndata, data, .. } = e else { panic!("{e:?}") };
        data[..*ndata as usize].to_vec()
    }

    #[test]
    fn emulation_failure_layouts() {
        // The fetch buffer: VMRUN then two bytes; the rest as fetched.
        let mut buf = [0u8; 15];
        buf[..5].copy_from_slice(&[0x0f, 0x01, 0xd8, 0x90, 0xcc]);
        buf[14] = 0xee;
        assert_eq!(pack_insn(&buf), [0x0000_00cc_90d8_010f, 0x00ee_0000_0000_0000]);
        assert_eq!(pack_insn(&[0xff; 20]), [u64::MAX, u64::MAX]);
        assert_eq!(pack_insn(&[]), [0, 0]);
        let (w0, w1) = (0x0000_00cc_90d8_010f, 0x00ee_0000_0000_0000);
        // Skipping an instruction: [rip, n, w0, w1].
        let e = UserExit::emulation_failure(0x1000, &[], &buf, Some(5));
        assert_eq!(data_of(&e), [0x1000, 5, w0, w1]);
        // MMIO: [rip, gpa, n, w0, w1].
        let e = UserExit::emulation_failure(0x1000, &[0xfee0_0000], &buf, Some(5));
        assert_eq!(data_of(&e), [0x1000, 0xfee0_0000, 5, w0, w1]);
        // Sensitive instructions: [rip, exit code, w0, w1].
        let e = UserExit::emulation_failure(0x1000, &[crate::exit::POPF], &buf, None);
        assert_eq!(data_of(&e), [0x1000, crate::exit::POPF, w0, w1]);
        let UserExit::InternalError { suberror, .. } = e else { panic!() };
        assert_eq!(suberror, kb::KVM_INTERNAL_ERROR_EMULATION);
        // The host-state report.
        let e = UserExit::host_state_in_vmcb(0x72, 0x2000);
        assert_eq!(data_of(&e), [run::HOST_STATE_IN_VMCB, 0x72, 0x2000]);
        assert_eq!(&run::HOST_STATE_IN_VMCB.to_be_bytes(), b"nsvmHOST");
    }

    #[test]
    fn common_fields_encoding() {
        let c = RunCommon { if_flag: true, ready_for_interrupt_injection: false, cr8: 0xf, apic_base: 0xfee0_0900 };
        let mut r = Recorder::new();
        c.encode(&mut r);
        let k = r.run();
        assert_eq!((k.if_flag, k.ready_for_interrupt_injection, k.cr8, k.apic_base), (1, 0, 0xf, 0xfee0_0900));
        assert_eq!(r.written, bytes_of(&[top!(if_flag), top!(ready_for_interrupt_injection), top!(cr8), top!(apic_base)]));
        // With an exit: disjoint, and exit_reason is the only other field.
        UserExit::Hlt.encode(&mut r);
        assert_eq!(r.run().exit_reason, kb::KVM_EXIT_HLT);
        assert_eq!(r.run().flags, 0xa5a5);
    }

    #[test]
    fn encodes_into_a_plain_byte_slice() {
        let mut page = [0u8; 4096];
        UserExit::FailEntry { hardware_entry_failure_reason: 0xffff_ffff, cpu: 1 }.encode(&mut page[..]);
        assert_eq!(page[run::EXIT_REASON..run::EXIT_REASON + 4], kb::KVM_EXIT_FAIL_ENTRY.to_ne_bytes());
        assert_eq!(page[run::FAIL_ENTRY_REASON..run::FAIL_ENTRY_REASON + 8], 0xffff_ffffu64.to_ne_bytes());
        assert_eq!(page[run::FAIL_ENTRY_CPU..run::FAIL_ENTRY_CPU + 4], 1u32.to_ne_bytes());
    }
}
