// SPDX-License-Identifier: GPL-2.0
//! Binary statistics in KVM's format (`KVM_GET_STATS_FD`,
//! `Documentation/virt/kvm/api.rst` 4.133): a header, an id string, one
//! descriptor per statistic, then the u64 values. The layout is built here;
//! the module fills the values.

use crate::exit;

/// `KVM_STATS_NAME_SIZE`.
pub const NAME_SIZE: usize = 48;
/// Size of `struct kvm_stats_header`.
pub const HEADER_SIZE: usize = 24;
/// Size of one descriptor in the file (`struct kvm_stats_desc` + name).
pub const DESC_SIZE: usize = 16 + NAME_SIZE;
/// `KVM_STATS_TYPE_CUMULATIVE`.
pub const TYPE_CUMULATIVE: u32 = 0;
/// `KVM_STATS_TYPE_INSTANT`.
pub const TYPE_INSTANT: u32 = 1;
/// `KVM_STATS_TYPE_PEAK`.
pub const TYPE_PEAK: u32 = 2;
/// `KVM_STATS_UNIT_BYTES`.
pub const UNIT_BYTES: u32 = 1 << 4;
/// `KVM_STATS_UNIT_SECONDS` (with exponent -9 in the descriptor: nanoseconds).
pub const UNIT_SECONDS_NS: u32 = 2 << 4;

/// One statistic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Desc {
    /// Name, NUL padded.
    pub name: [u8; NAME_SIZE],
    /// Type, unit and base flags.
    pub flags: u32,
}

impl Desc {
    const fn new(name: &str, flags: u32) -> Self {
        let mut n = [0u8; NAME_SIZE];
        let b = name.as_bytes();
        let mut i = 0;
        while i < b.len() && i < NAME_SIZE - 1 {
            n[i] = b[i];
            i += 1;
        }
        Self { name: n, flags }
    }
    /// The name as text.
    pub fn name_str(&self) -> &str {
        let end = self.name.iter().position(|c| *c == 0).unwrap_or(NAME_SIZE);
        core::str::from_utf8(&self.name[..end]).unwrap_or("?")
    }
}

/// VM statistics, in file order.
pub mod vm {
    /// vCPUs created.
    pub const VCPUS: usize = 0;
    /// Memory slots in use.
    pub const MEMSLOTS: usize = 1;
    /// Guest pages mapped in NPT01 now.
    pub const NPT_PAGES: usize = 2;
    /// NPT01 page tables allocated now.
    pub const NPT_TABLES: usize = 3;
    /// Pages mapped on nested page faults since creation.
    pub const NPT_FILLS: usize = 4;
    /// Pages unmapped (slot deleted or moved).
    pub const NPT_UNMAPS: usize = 5;
    /// 2 MiB mappings in NPT01 now.
    pub const NPT_PAGES_2M: usize = 6;
    /// IRQ 0 edges the in-kernel PIT raised (channel 0, after reinjection).
    pub const PIT_IRQ0: usize = 7;
    /// Pages newly marked dirty in the logs of `KVM_MEM_LOG_DIRTY_PAGES`
    /// slots (a bit set that was clear), by guest writes or L0's.
    pub const DIRTY_PAGES_LOGGED: usize = 8;
    /// Number of VM statistics.
    pub const COUNT: usize = 9;
}

/// The VM descriptors.
pub const VM_DESCS: [Desc; vm::COUNT] = [
    Desc::new("vcpus", TYPE_INSTANT),
    Desc::new("memslots", TYPE_INSTANT),
    Desc::new("npt_pages", TYPE_INSTANT),
    Desc::new("npt_tables", TYPE_INSTANT),
    Desc::new("npt_fills", TYPE_CUMULATIVE),
    Desc::new("npt_unmaps", TYPE_CUMULATIVE),
    Desc::new("npt_pages_2m", TYPE_INSTANT),
    Desc::new("pit_irq0", TYPE_CUMULATIVE),
    Desc::new("dirty_pages_logged", TYPE_CUMULATIVE),
];

/// vCPU statistics that are not per exit code, in file order; the per-exit
/// counters (`exit_<name>` for every named SVM exit code, then `exit_other`)
/// follow from [`vcpu::EXIT_BASE`].
pub mod vcpu {
    /// #VMEXITs of any kind.
    pub const EXITS: usize = 0;
    /// Returns to userspace (KVM_RUN completing).
    pub const EXITS_USERSPACE: usize = 1;
    /// KVM_EXIT_HLT.
    pub const HALT_EXITS: usize = 2;
    /// KVM_EXIT_IO.
    pub const IO_EXITS: usize = 3;
    /// KVM_EXIT_MMIO.
    pub const MMIO_EXITS: usize = 4;
    /// KVM_RUN interrupted by a signal.
    pub const SIGNAL_EXITS: usize = 5;
    /// KVM_EXIT_IRQ_WINDOW_OPEN.
    pub const IRQ_WINDOW_EXITS: usize = 6;
    /// External interrupts injected.
    pub const IRQ_INJECTIONS: usize = 7;
    /// Exceptions injected by L0 (#GP, #UD, #PF from emulation).
    pub const EXCEPTION_INJECTIONS: usize = 8;
    /// Events re-injected from EXITINTINFO.
    pub const REINJECTIONS: usize = 9;
    /// Nested page faults that mapped RAM.
    pub const NPT_FILLS: usize = 10;
    /// KVM_RUN calls that resumed a vCPU whose last exit was HLT (no
    /// in-kernel irqchip: the VMM does the waiting, nsvm counts the wake-ups).
    pub const HALT_WAKEUPS: usize = 11;
    /// Nanoseconds vCPUs stayed halted: from a HLT exit to the next KVM_RUN.
    pub const HALT_WAIT_NS: usize = 12;
    /// VMRUNs of L1 that entered L2.
    pub const NESTED_VMRUNS: usize = 13;
    /// L2 exits reflected to L1 (#VMEXIT emulated).
    pub const L2_EXITS_REFLECTED: usize = 14;
    /// L2 exits handled in L0 (L2 resumed without L1 seeing them).
    pub const L2_EXITS_L0: usize = 15;
    /// Pages mapped in shadow NPT02 (L2 faults resolved by L0).
    pub const NPT02_FILLS: usize = 16;
    /// Times shadow NPT02 was dropped (TLB_CONTROL, nCR3/ASID change, NPT01
    /// change, size limit).
    pub const NPT02_FLUSHES: usize = 17;
    /// L2 nested page faults reflected to L1 (a fault in NPT12).
    pub const NPT12_FAULTS: usize = 18;
    /// #VMEXITs of L1 itself (the others, `exits` minus these, are L2's).
    pub const L1_EXITS: usize = 19;
    /// First per-exit-code counter.
    pub const EXIT_BASE: usize = 20;
}

const VCPU_FIXED: [Desc; vcpu::EXIT_BASE] = [
    Desc::new("exits", TYPE_CUMULATIVE),
    Desc::new("exits_userspace", TYPE_CUMULATIVE),
    Desc::new("halt_exits", TYPE_CUMULATIVE),
    Desc::new("io_exits", TYPE_CUMULATIVE),
    Desc::new("mmio_exits", TYPE_CUMULATIVE),
    Desc::new("signal_exits", TYPE_CUMULATIVE),
    Desc::new("irq_window_exits", TYPE_CUMULATIVE),
    Desc::new("irq_injections", TYPE_CUMULATIVE),
    Desc::new("exception_injections", TYPE_CUMULATIVE),
    Desc::new("reinjections", TYPE_CUMULATIVE),
    Desc::new("npt_fills", TYPE_CUMULATIVE),
    Desc::new("halt_wakeups", TYPE_CUMULATIVE),
    Desc::new("halt_wait_ns", TYPE_CUMULATIVE | UNIT_SECONDS_NS),
    Desc::new("nested_vmruns", TYPE_CUMULATIVE),
    Desc::new("l2_exits_reflected", TYPE_CUMULATIVE),
    Desc::new("l2_exits_l0", TYPE_CUMULATIVE),
    Desc::new("npt02_fills", TYPE_CUMULATIVE),
    Desc::new("npt02_flushes", TYPE_CUMULATIVE),
    Desc::new("npt12_faults", TYPE_CUMULATIVE),
    Desc::new("l1_exits", TYPE_CUMULATIVE),
];

/// First of the 32 per-exception counters (`exit_excp_<name>`), after the
/// named exit codes; `exit_other` is the last counter.
pub const EXCP_BASE: usize = vcpu::EXIT_BASE + exit::NAMED.len();

/// First of the per-rule counters of refused VMRUNs (`vmrun_invalid_<rule>`,
/// `checks::Check` order), after `exit_other`.
pub const INVALID_BASE: usize = EXCP_BASE + 32 + 1;

/// `vmrun_invalid_processor`: VMRUNs the processor refused (VMEXIT_INVALID)
/// although the state broke none of nsvm's rules (`checks`); the VMCB's
/// state as it was before VMRUN is kept, whatever the processor wrote.
pub const INVALID_PROCESSOR: usize = INVALID_BASE + crate::checks::Check::ALL.len();

/// `fpu_loads`: entries that loaded the guest's FPU image into the
/// registers (the first of a `KVM_RUN`, and the first after the vCPU thread
/// was scheduled out); the others found it loaded.
pub const FPU_LOADS: usize = INVALID_PROCESSOR + 1;

/// `host_state_saves`: entries that saved the host's VMSAVE state (the first
/// of the vCPU thread on a CPU in a `KVM_RUN`, and every one while the task
/// has an LDT); the others reused it.
pub const HOST_STATE_SAVES: usize = INVALID_PROCESSOR + 2;

/// `kvmclock_updates`: kvmclock records written into guest memory (enable,
/// the VM clock set, the TSC offset changed, a stop reported).
pub const KVMCLOCK_UPDATES: usize = INVALID_PROCESSOR + 3;

/// `suspect_injections`: external interrupts found in EVENTINJ at VMRUN
/// while the guest had RFLAGS.IF = 0 or an interrupt shadow, which nsvm
/// must never do (`evlog::Record::is_suspect`); 0 unless nsvm has a defect.
pub const SUSPECT_INJECTIONS: usize = INVALID_PROCESSOR + 4;

/// `pauses_filtered`: PAUSEs of an L2 that L1 intercepts which the
/// emulated pause filter (APM 15.14.4) completed in L0, the counter VMRUN
/// loaded from vmcb12 not yet below zero.
pub const PAUSES_FILTERED: usize = INVALID_PROCESSOR + 5;

/// `npt02_syncs`: flushes L1 asked for in vmcb12's TLB_CONTROL that L0
/// met by checking NPT02's leaves against NPT12 (`nested::npt02_leaf_current`)
/// instead of dropping NPT02 (counted in `npt02_flushes` otherwise).
pub const NPT02_SYNCS: usize = INVALID_PROCESSOR + 6;

/// `injection_guards`: entries that left a self-IPI pending after an
/// external interrupt in EVENTINJ (module parameter `exit_after_injection`,
/// QEMU's TCG only), each normally ending in a #VMEXIT(INTR) right after the
/// delivery: the exits a processor with NRIPS does not take.
pub const INJECTION_GUARDS: usize = INVALID_PROCESSOR + 7;

/// `injections_virq`: entries that gave EVENTINJ's external interrupt to
/// the guest as its virtual interrupt instead (`exit_after_injection`'s form
/// without an exit, `event::VirqInjection`, QEMU's TCG only), whether or
/// not the guest took it before the exit.
pub const INJECTIONS_VIRQ: usize = INVALID_PROCESSOR + 8;

/// Number of vCPU statistics.
pub const VCPU_COUNT: usize = INVALID_PROCESSOR + 9;

/// The vCPU descriptor `i` (`None` beyond [`VCPU_COUNT`]).
pub fn vcpu_desc(i: usize) -> Option<Desc> {
    if i < vcpu::EXIT_BASE {
        return Some(VCPU_FIXED[i]);
    }
    let mut n = [0u8; NAME_SIZE];
    let mut w = 0;
    let mut put = |s: &[u8]| {
        for c in s {
            if w < NAME_SIZE - 1 {
                n[w] = c.to_ascii_lowercase();
                w += 1;
            }
        }
    };
    if i == FPU_LOADS {
        return Some(Desc::new("fpu_loads", TYPE_CUMULATIVE));
    }
    if i == HOST_STATE_SAVES {
        return Some(Desc::new("host_state_saves", TYPE_CUMULATIVE));
    }
    if i == KVMCLOCK_UPDATES {
        return Some(Desc::new("kvmclock_updates", TYPE_CUMULATIVE));
    }
    if i == SUSPECT_INJECTIONS {
        return Some(Desc::new("suspect_injections", TYPE_CUMULATIVE));
    }
    if i == PAUSES_FILTERED {
        return Some(Desc::new("pauses_filtered", TYPE_CUMULATIVE));
    }
    if i == NPT02_SYNCS {
        return Some(Desc::new("npt02_syncs", TYPE_CUMULATIVE));
    }
    if i == INJECTION_GUARDS {
        return Some(Desc::new("injection_guards", TYPE_CUMULATIVE));
    }
    if i == INJECTIONS_VIRQ {
        return Some(Desc::new("injections_virq", TYPE_CUMULATIVE));
    }
    if (INVALID_BASE..=INVALID_PROCESSOR).contains(&i) {
        put(b"vmrun_invalid_");
        match crate::checks::Check::ALL.get(i - INVALID_BASE) {
            Some(c) => put(c.name().as_bytes()),
            None => put(b"processor"),
        }
        return Some(Desc { name: n, flags: TYPE_CUMULATIVE });
    }
    put(b"exit_");
    if i < EXCP_BASE {
        put(exit::NAMED[i - vcpu::EXIT_BASE].1.as_bytes());
    } else if i < EXCP_BASE + 32 {
        let v = (i - EXCP_BASE) as u8;
        put(b"excp_");
        match exit::exception_name(v) {
            Some(name) => put(name.as_bytes()),
            None => put(&[b'0' + v / 10, b'0' + v % 10]),
        }
    } else if i == EXCP_BASE + 32 {
        put(b"other");
    } else {
        return None;
    }
    Some(Desc { name: n, flags: TYPE_CUMULATIVE })
}

/// Counter index of each exit code below 0x100 (`EXIT_TABLE_NONE`: not
/// named), built at compile time from `exit::NAMED`.
const EXIT_TABLE: [u16; 0x100] = {
    let mut t = [EXIT_TABLE_NONE; 0x100];
    let mut k = 0;
    while k < exit::NAMED.len() {
        let c = exit::NAMED[k].0;
        if c < 0x100 {
            t[c as usize] = (vcpu::EXIT_BASE + k) as u16;
        }
        k += 1;
    }
    t
};
const EXIT_TABLE_NONE: u16 = u16::MAX;

/// Counter index of a code above the table, found at compile time.
const fn named_counter(code: u64) -> usize {
    let mut k = 0;
    while k < exit::NAMED.len() {
        if exit::NAMED[k].0 == code {
            return vcpu::EXIT_BASE + k;
        }
        k += 1;
    }
    EXCP_BASE + 32
}
const NPF_COUNTER: usize = named_counter(exit::NPF);
const INVALID_COUNTER: usize = named_counter(exit::INVALID);

/// Index of the counter for exit code `code` (a named one, or `exit_other`).
/// Called on every exit: codes below 0x100 are a table lookup (a linear
/// search of `exit::NAMED` cost ~600 instructions for CPUID or VMRUN).
pub fn exit_counter(code: u64) -> usize {
    if code < 0x100 {
        if (exit::EXCP_BASE..exit::EXCP_BASE + 32).contains(&code) {
            return EXCP_BASE + (code - exit::EXCP_BASE) as usize;
        }
        return match EXIT_TABLE[code as usize] {
            EXIT_TABLE_NONE => EXCP_BASE + 32,
            k => k as usize,
        };
    }
    // The frequent ones above 0xff are constants too (a search of NAMED
    // cost ~520 instructions per nested page fault). QEMU TCG stores
    // VMEXIT_INVALID as 0xffffffff.
    match code {
        exit::NPF => return NPF_COUNTER,
        exit::INVALID | 0xffff_ffff => return INVALID_COUNTER,
        _ => {}
    }
    match exit::NAMED.iter().position(|(c, _)| *c == code) {
        Some(k) => vcpu::EXIT_BASE + k,
        None => EXCP_BASE + 32,
    }
}

/// Size of a stats file with `n` statistics.
pub const fn file_len(n: usize) -> usize {
    HEADER_SIZE + NAME_SIZE + n * DESC_SIZE + 8 * n
}

/// Writes the complete stats file for `id`, descriptors from `desc(i)` and
/// `values` into `out` (which must be `file_len(values.len())` long).
pub fn write_file(out: &mut [u8], id: &str, desc: impl Fn(usize) -> Option<Desc>, values: &[u64]) {
    let n = values.len();
    let id_off = HEADER_SIZE;
    let desc_off = id_off + NAME_SIZE;
    let data_off = desc_off + n * DESC_SIZE;
    let put = |out: &mut [u8], at: usize, v: &[u8]| out[at..at + v.len()].copy_from_slice(v);
    for (i, v) in [0u32, NAME_SIZE as u32, n as u32, id_off as u32, desc_off as u32, data_off as u32].iter().enumerate() {
        put(out, 4 * i, &v.to_ne_bytes());
    }
    for (i, b) in id.bytes().take(NAME_SIZE - 1).enumerate() {
        out[id_off + i] = b;
    }
    for (i, value) in values.iter().enumerate().take(n) {
        let d = desc(i).unwrap_or(Desc::new("unknown", 0));
        let at = desc_off + i * DESC_SIZE;
        put(out, at, &d.flags.to_ne_bytes());
        let exponent: i16 = if d.flags & (0xf << 4) == UNIT_SECONDS_NS { -9 } else { 0 };
        put(out, at + 4, &exponent.to_ne_bytes()); // exponent (base 10)
        put(out, at + 6, &1u16.to_ne_bytes()); // size: one u64
        put(out, at + 8, &((8 * i) as u32).to_ne_bytes()); // offset in the data block
        put(out, at + 12, &0u32.to_ne_bytes()); // bucket_size
        put(out, at + 16, &d.name);
        put(out, data_off + 8 * i, &value.to_ne_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layout_matches_kvm_bindings() {
        assert_eq!(HEADER_SIZE, size_of::<kvm_bindings::kvm_stats_header>());
        assert_eq!(DESC_SIZE - NAME_SIZE, size_of::<kvm_bindings::kvm_stats_desc>());
    }

    #[test]
    fn file_round_trip() {
        let vals = [3u64, 1, 77, 5, 9, 2, 0, 4, 6];
        let mut f = vec![0u8; file_len(vals.len())];
        write_file(&mut f, "kvm-42", |i| VM_DESCS.get(i).copied(), &vals);
        let u32_at = |o: usize| u32::from_ne_bytes(f[o..o + 4].try_into().unwrap());
        assert_eq!(u32_at(4), 48);
        assert_eq!(u32_at(8), 9);
        let (idoff, doff, dataoff) = (u32_at(12) as usize, u32_at(16) as usize, u32_at(20) as usize);
        assert_eq!(&f[idoff..idoff + 6], b"kvm-42");
        // Third descriptor: npt_pages, instant, value 77.
        let d = doff + 2 * DESC_SIZE;
        assert_eq!(u32_at(d), TYPE_INSTANT);
        assert_eq!(&f[d + 16..d + 16 + 9], b"npt_pages");
        let off = u32_at(d + 8) as usize;
        assert_eq!(u64::from_ne_bytes(f[dataoff + off..dataoff + off + 8].try_into().unwrap()), 77);
    }

    #[test]
    fn vcpu_descs() {
        assert_eq!(vcpu_desc(0).unwrap().name_str(), "exits");
        assert_eq!(vcpu_desc(exit_counter(exit::CPUID)).unwrap().name_str(), "exit_cpuid");
        assert_eq!(vcpu_desc(exit_counter(exit::NPF)).unwrap().name_str(), "exit_npf");
        assert_eq!(vcpu_desc(exit_counter(0xffff_ffff)).unwrap().name_str(), "exit_invalid");
        assert_eq!(vcpu_desc(exit_counter(0x3ff)).unwrap().name_str(), "exit_other");
        assert_eq!(vcpu_desc(exit_counter(0x4d)).unwrap().name_str(), "exit_excp_gp");
        assert_eq!(vcpu_desc(exit_counter(0x40)).unwrap().name_str(), "exit_excp_de");
        assert_eq!(vcpu_desc(exit_counter(0x40 + 22)).unwrap().name_str(), "exit_excp_22");
        assert_eq!(vcpu_desc(exit_counter(exit::IDTR_READ)).unwrap().name_str(), "exit_idtr_read");
        assert_eq!(exit_counter(0x3ff), INVALID_BASE - 1);
        assert_eq!(vcpu_desc(INVALID_BASE + crate::checks::Check::CsLAndD.index()).unwrap().name_str(), "vmrun_invalid_cs_l_and_d");
        assert_eq!(vcpu_desc(INVALID_PROCESSOR).unwrap().name_str(), "vmrun_invalid_processor");
        assert!(vcpu_desc(VCPU_COUNT).is_none());
        assert_eq!(vcpu_desc(INVALID_PROCESSOR).unwrap().name_str(), "vmrun_invalid_processor");
        assert_eq!(vcpu_desc(FPU_LOADS).unwrap().name_str(), "fpu_loads");
        assert_eq!(vcpu_desc(HOST_STATE_SAVES).unwrap().name_str(), "host_state_saves");
        assert_eq!(vcpu_desc(KVMCLOCK_UPDATES).unwrap().name_str(), "kvmclock_updates");
        // Names are unique.
        for i in 0..VCPU_COUNT {
            for j in i + 1..VCPU_COUNT {
                assert_ne!(vcpu_desc(i).unwrap().name_str(), vcpu_desc(j).unwrap().name_str());
            }
        }
    }

    #[test]
    fn exit_counter_table_matches_the_names() {
        // The lookup table gives what a search of exit::NAMED gives.
        let by_search = |code: u64| {
            let code = if code == 0xffff_ffff { exit::INVALID } else { code };
            if (exit::EXCP_BASE..exit::EXCP_BASE + 32).contains(&code) {
                return EXCP_BASE + (code - exit::EXCP_BASE) as usize;
            }
            exit::NAMED.iter().position(|(c, _)| *c == code).map_or(EXCP_BASE + 32, |k| vcpu::EXIT_BASE + k)
        };
        for code in (0..0x600).chain([0xffff_ffff, exit::INVALID, u64::MAX - 1]) {
            assert_eq!(exit_counter(code), by_search(code), "code {code:#x}");
        }
    }
}
