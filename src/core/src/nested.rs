// SPDX-License-Identifier: GPL-2.0
//! Groundwork for nested SVM (the nested-SVM issue): the pure parts of
//! building vmcb02 from L0's policy and L1's checked vmcb12, and of shadow
//! nested paging (NPT02 = NPT12 ∘ NPT01). Vocabulary as in KVM: vmcb01 (L0
//! runs L1), vmcb12 (L1's VMCB for L2), vmcb02 (what L0 runs for L2).

use crate::cpuid::SvmFeatures;
use crate::paging::{index, TableMem};
use crate::vmcb::{int_ctl, nested_ctl, tlb_control, ControlArea};
use crate::x86::pte::{self, A, D, NX, P, RW, US};
use crate::x86::Pte;

/// Bits of EXITINFO1 for #VMEXIT(NPF) (APM 15.25.6).
pub mod npf {
    /// The entry was present (protection or reserved-bit fault).
    pub const P: u64 = 1 << 0;
    /// The access was a write.
    pub const RW: u64 = 1 << 1;
    /// User access (always set: nested walks are user accesses, APM 15.25.5).
    pub const US: u64 = 1 << 2;
    /// A reserved bit was set in a nested table entry.
    pub const RSVD: u64 = 1 << 3;
    /// The access was an instruction fetch.
    pub const ID: u64 = 1 << 4;
    /// The fault happened translating the final guest physical address.
    pub const FINAL: u64 = 1 << 32;
    /// The fault happened translating a guest page-table access.
    pub const TABLE: u64 = 1 << 33;
}

/// A successful NPT12 translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Npt12Translation {
    /// L1 physical address of the byte.
    pub l1_gpa: u64,
    /// Writable through every level.
    pub writable: bool,
    /// Executable through every level.
    pub executable: bool,
    /// Size of the NPT12 page (4 KiB, 2 MiB or 1 GiB).
    pub page_size: u64,
    /// The leaf's dirty bit is set (or is being set by this write access):
    /// until then NPT02 maps the page read-only, so the first write comes
    /// back to L0, which sets D in NPT12 as the processor would.
    pub dirty: bool,
    /// L1 physical addresses of the entries the walk used, top level first
    /// (0 past the leaf), with the accessed/dirty bits the access must set
    /// in each (APM 15.25.5: nested walks set A in every level and D in the
    /// leaf on a write); 0 where nothing is to be set.
    pub ad_updates: [(u64, u64); 4],
}

impl Npt12Translation {
    /// The translation of `gpa` when it lies in the same large NPT12 leaf
    /// as `walked`, the address this translation is of: the walk would read
    /// the same entries (same indices above the leaf), so only the L1
    /// address moves. `None` for a 4 KiB leaf or another leaf.
    pub fn in_same_leaf(&self, walked: u64, gpa: u64) -> Option<Self> {
        let mask = self.page_size - 1;
        (self.page_size > 4096 && walked & !mask == gpa & !mask).then_some(Self { l1_gpa: (self.l1_gpa & !mask) | (gpa & mask), ..*self })
    }
}

/// Walks L1's nested page table (long-mode format, 4 levels, in L1 memory
/// read through `mem`) for the L2 physical address `gpa`. `write`/`fetch`
/// describe the access; `nxe` is L1's EFER.NXE; `phys_bits` the physical
/// address width offered to L1; `stage` is `npf::FINAL` or `npf::TABLE` as
/// the hardware reported for the access. On a fault returns EXITINFO1 for
/// the #VMEXIT(NPF) L1 must see (with EXITINFO2 = `gpa`). The parameters
/// are the walk's inputs as the hardware has them, hence their number.
#[allow(clippy::too_many_arguments)]
pub fn walk_npt12(
    mem: &impl TableMem,
    ncr3: u64,
    gpa: u64,
    write: bool,
    fetch: bool,
    nxe: bool,
    phys_bits: u8,
    stage: u64,
) -> Result<Npt12Translation, u64> {
    let mut base = npf::US | stage;
    if write {
        base |= npf::RW;
    }
    if fetch {
        base |= npf::ID;
    }
    // Bits above the physical address width (and below bit 52) are reserved.
    let rsvd_addr = pte::addr_reserved(phys_bits);
    let mut table = ncr3 & pte::ADDR_MASK;
    let (mut w, mut x) = (true, true);
    let mut ad = [(0u64, 0u64); 4];
    for level in (1..=4u32).rev() {
        let ea = table + 8 * index(gpa, level);
        let Some(e) = mem.read(ea).map(Pte) else { return Err(base) };
        if !e.present() {
            return Err(base);
        }
        let large = e.large() && (level == 2 || level == 3);
        // Reserved: address bits beyond the width, NX without EFER.NXE, PS
        // in a PML4E, and a large page's address bits below its size
        // (20:13 of a 2 MiB PDE, 29:13 of a 1 GiB PDPTE; bit 12 is PAT).
        let rsvd = e.0 & rsvd_addr != 0
            || (!nxe && e.nx())
            || (level == 4 && e.large())
            || (large && level == 2 && e.0 & 0x1f_e000 != 0)
            || (large && level == 3 && e.0 & 0x3fff_e000 != 0);
        if rsvd {
            return Err(base | npf::P | npf::RSVD);
        }
        // Nested accesses are user accesses: a supervisor-only entry faults.
        if !e.user() {
            return Err(base | npf::P);
        }
        w &= e.writable();
        x &= !(nxe && e.nx());
        let i = (4 - level) as usize;
        if level == 1 || large {
            if (write && !w) || (fetch && !x) {
                return Err(base | npf::P);
            }
            let size = 1u64 << (12 + 9 * (level - 1));
            let set = (if e.accessed() { 0 } else { A }) | (if write && !e.dirty() { D } else { 0 });
            ad[i] = (ea, set);
            let dirty = write || e.dirty();
            return Ok(Npt12Translation {
                l1_gpa: e.translate(gpa, size),
                writable: w,
                executable: x,
                page_size: size,
                dirty,
                ad_updates: ad,
            });
        }
        ad[i] = (ea, if e.accessed() { 0 } else { A });
        table = e.addr();
    }
    Err(base)
}

/// The NPT02 leaf for one 4 KiB page: host physical address from NPT01, the
/// weaker permissions of both levels (APM 15.25: the composed translation
/// may not grant more than either), read-only while NPT12's D bit is clear.
#[inline]
pub fn compose_leaf(t12: &Npt12Translation, hpa01: u64, writable01: bool, executable01: bool) -> Pte {
    let mut flags = P | US;
    // Writable only once NPT12's dirty bit is set (see `dirty`).
    if t12.writable && t12.dirty && writable01 {
        flags |= RW;
    }
    if !(t12.executable && executable01) {
        flags |= NX;
    }
    Pte::new(hpa01, flags)
}

/// Whether NPT02 leaf `old` for an L2 page still holds after L1 asked for
/// a flush of L2's translations (TLB_CONTROL, APM 15.16.2), given `t12`,
/// NPT12's translation of the page now (a read walk, `walk_npt12`; `None`
/// on a fault) and `hpa01`, the host page NPT01 maps for an L1 page (`None`
/// when not mapped). A kept leaf must be what a fill would compose now or
/// less: the same host page, no permission NPT12 no longer grants
/// (writable only with NPT12's D set, executable only if NPT12 allows it),
/// and no accessed bit for the processor to set on the next access (APM
/// 15.25.5: A in every level; a leaf whose walk would set one is dropped
/// and refaults, so the bit is set as the walker would).
pub fn npt02_leaf_current(old: Pte, t12: Option<&Npt12Translation>, hpa01: impl FnOnce(u64) -> Option<u64>) -> bool {
    let Some(t) = t12 else { return false };
    if t.ad_updates.iter().any(|&(_, bits)| bits != 0) {
        return false;
    }
    if old.writable() && !(t.writable && t.dirty) {
        return false;
    }
    if !old.nx() && !t.executable {
        return false;
    }
    hpa01(t.l1_gpa & !0xfff) == Some(old.addr())
}

/// L2 pages mapped in a shadow NPT02 since it was last emptied, while they
/// are few: what `npt02_leaf_current` checks on L1's flush. Beyond
/// [`Npt02Tracked::MAX`] pages the list stops (`full`) and a flush drops
/// NPT02 whole, as checking every leaf would cost more than refaulting the
/// pages L2 uses next.
#[derive(Clone, Copy, Debug)]
pub struct Npt02Tracked {
    pages: [u64; Self::MAX],
    n: usize,
    full: bool,
}

impl Default for Npt02Tracked {
    fn default() -> Self {
        Self { pages: [0; Self::MAX], n: 0, full: false }
    }
}

impl Npt02Tracked {
    /// Pages followed at most.
    pub const MAX: usize = 32;

    /// Records L2 page `gpa`, newly mapped.
    pub fn record(&mut self, gpa: u64) {
        if self.n < Self::MAX {
            self.pages[self.n] = gpa & !0xfff;
            self.n += 1;
        } else {
            self.full = true;
        }
    }

    /// NPT02 was emptied.
    pub fn clear(&mut self) {
        self.n = 0;
        self.full = false;
    }

    /// Whether more pages were mapped than the list holds.
    pub fn full(&self) -> bool {
        self.full
    }

    /// The pages recorded (each once if recorded once).
    pub fn pages(&self) -> &[u64] {
        &self.pages[..self.n]
    }
}

/// What a shadow NPT02 was built for: L1's nCR3 and ASID for L2, and the
/// generation of NPT01 (bumped when L0 removes or weakens a translation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Npt02Key {
    /// vmcb12's nCR3 (root of NPT12).
    pub ncr3: u64,
    /// vmcb12's ASID.
    pub asid: u32,
    /// `Vm::memory_generation` when the translations were composed.
    pub npt01_generation: u64,
}

/// Why L0 must drop shadow NPT02 before entering L2 (invalidation rules
/// that follow the TLB rules of APM 15.16 and 15.25), in the order checked:
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Npt02Stale {
    /// L1 asked for a flush in vmcb12's TLB_CONTROL: 1 (whole TLB), or 3 /
    /// 7 (this ASID's entries, all or non-global: NPT02 only holds
    /// L2-physical translations, so both drop it) when flush-by-ASID is
    /// offered (APM 15.16.2); without it only 1 is defined and other
    /// values are ignored.
    TlbControl,
    /// Built for another nCR3: another NPT12.
    Ncr3,
    /// Built for another ASID: the translations were walked for another
    /// ASID, whose TLB entries this one never had (APM 15.16.1; an L1 may
    /// change NPT12 and move a guest to a fresh ASID instead of flushing,
    /// as KVM does without flush-by-ASID).
    Asid,
    /// NPT01 changed (a slot went away): composed leaves may point at
    /// pages the L1 physical address no longer maps.
    Npt01,
}

/// Whether (and why) NPT02 built for `built` must be dropped before an
/// entry for `now` with vmcb12's TLB_CONTROL `tlb_ctl` ([`Npt02Stale`]);
/// `None` also when nothing was built.
pub fn npt02_stale(built: Option<Npt02Key>, now: Npt02Key, tlb_ctl: u8, flush_by_asid: bool) -> Option<Npt02Stale> {
    let b = built?;
    let asked = match tlb_ctl {
        tlb_control::FLUSH_ALL => true,
        3 | 7 => flush_by_asid,
        _ => false,
    };
    if asked {
        Some(Npt02Stale::TlbControl)
    } else if b.ncr3 != now.ncr3 {
        Some(Npt02Stale::Ncr3)
    } else if b.asid != now.asid {
        Some(Npt02Stale::Asid)
    } else if b.npt01_generation != now.npt01_generation {
        Some(Npt02Stale::Npt01)
    } else {
        None
    }
}

/// What L0 decides for an L2 entry (besides vmcb01's control area).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L0Policy {
    /// ASID L0 runs L2 with.
    pub asid: u32,
    /// Whether L0 must flush this ASID's translations on the entry.
    pub flush: bool,
    /// Root of shadow NPT02 (or of NPT01 when L1 does not use nested paging).
    pub ncr3: u64,
    /// SVM features nsvm offers L1 (vmcb12 fields of others are ignored).
    pub features: SvmFeatures,
}

/// Builds vmcb02's control area from L0's policy and L1's vmcb12 control
/// area (already copied and checked):
/// - intercepts: the union, so L0 keeps every exit it needs;
/// - IOPM/MSRPM: L0's (which intercept at least what L1's do: exits are then
///   reflected by `reflect::decide` according to L1's maps);
/// - TSC offset: L1's offset applied on top of L0's (TSC seen by L2 =
///   host TSC + offset01 + offset12);
/// - ASID and TLB flushes: L0's choice (L1's TLB_CONTROL is honoured by L0
///   flushing, since L2 runs in an ASID L0 owns);
/// - virtual interrupt state: L1's V_TPR, V_IRQ, V_INTR_PRIO, V_IGN_TPR,
///   vector and interrupt shadow, with V_INTR_MASKING forced on (L0 needs
///   physical interrupts while L2 runs); V_GIF_ENABLE/V_GIF when vGIF is
///   offered to L1;
/// - EVENTINJ: L1's; nested paging: on, with L0's root;
/// - NRIPS/pause filter fields only when offered to L1.
///
/// `c01` is vmcb01's control area (L0's intercepts, permission maps, TSC
/// offset); the result is written into `c` (no large copies on the stack:
/// this runs on the kernel stack). Only `c`'s defined fields are written
/// (each one once: merged, or zero): its reserved tail (148h on) is left
/// as it is, zero in vmcb02 (a zeroed page nothing else writes there), so
/// the result equals a merge into `ControlArea::ZERO` (unit-tested) without
/// clearing 1 KiB on every VMRUN.
pub fn merge_control(c: &mut ControlArea, p: &L0Policy, c01: &ControlArea, c12: &ControlArea) {
    // What the merge does not set: zero.
    c.reserved_018 = [0; 0x24];
    c.erap_ctl = 0;
    c.reserved_05e = [0; 2];
    c.reserved_06c = [0; 4];
    c.exit_code = 0;
    c.exit_info_1 = 0;
    c.exit_info_2 = 0;
    c.exit_int_info = 0;
    c.exit_int_info_err = 0;
    c.avic_vapic_bar = 0;
    c.ghcb_gpa = 0;
    c.virt_ext = 0;
    c.clean = 0;
    c.reserved_0c4 = 0;
    c.insn_len = 0;
    c.insn_bytes = [0; 15];
    c.avic_backing_page = 0;
    c.reserved_0e8 = [0; 8];
    c.avic_logical_id = 0;
    c.avic_physical_id = 0;
    c.reserved_100 = [0; 8];
    c.vmsa_pa = 0;
    c.vmgexit_rax = 0;
    c.vmgexit_cpl = 0;
    c.reserved_119 = [0; 7];
    c.bus_lock_counter = 0;
    c.reserved_122 = [0; 22];
    c.allowed_sev_features = 0;
    c.guest_sev_features = 0;
    c.intercepts = c01.intercepts.union(&c12.intercepts);
    // L2's STGI/CLGI are always L0's (emulated, or reflected to L1 when it
    // intercepts them), whatever vmcb01 holds: with the processor's vGIF
    // carrying L1's GIF, vmcb01 lets L1's run (`vgif`), and without V_GIF
    // in vmcb02 the processor's CLGI would clear the real GIF under L2.
    c.intercepts.set(crate::exit::STGI);
    c.intercepts.set(crate::exit::CLGI);
    c.iopm_base_pa = c01.iopm_base_pa;
    c.msrpm_base_pa = c01.msrpm_base_pa;
    c.tsc_offset = c01.tsc_offset.wrapping_add(c12.tsc_offset);
    c.asid = p.asid;
    c.tlb_ctl = if p.flush { tlb_control::FLUSH_ALL } else { tlb_control::DO_NOTHING };
    let keep = int_ctl::V_TPR_MASK | int_ctl::V_IRQ | int_ctl::V_INTR_PRIO_MASK | int_ctl::V_IGN_TPR;
    c.int_ctl = (c12.int_ctl & keep) | int_ctl::V_INTR_MASKING;
    // vGIF for L2 when offered and enabled by L1: V_GIF gates L2's virtual
    // interrupts (APM 15.33.2); L2's STGI/CLGI move it.
    if p.features.contains(SvmFeatures::VGIF) && c12.int_ctl & int_ctl::V_GIF_ENABLE != 0 {
        c.int_ctl |= c12.int_ctl & (int_ctl::V_GIF_ENABLE | int_ctl::V_GIF);
    }
    c.int_vector = c12.int_vector & 0xff;
    c.int_state = c12.int_state & crate::vmcb::int_state::SHADOW;
    c.event_inj = c12.event_inj;
    c.event_inj_err = c12.event_inj_err;
    c.nested_ctl = nested_ctl::NP_ENABLE;
    c.nested_cr3 = p.ncr3;
    c.next_rip = if p.features.contains(SvmFeatures::NRIPS) { c12.next_rip } else { 0 };
    c.pause_filter_count = if p.features.contains(SvmFeatures::PAUSE_FILTER) { c12.pause_filter_count } else { 0 };
    c.pause_filter_thresh = if p.features.contains(SvmFeatures::PAUSE_FILTER_THRESHOLD) { c12.pause_filter_thresh } else { 0 };
}

/// The int_ctl bits of a virtual interrupt's injection (KVM's
/// V_IRQ_INJECTION_BITS_MASK): V_IRQ, V_INTR_PRIO, V_IGN_TPR.
pub const V_IRQ_INJECTION_BITS: u32 = int_ctl::V_IRQ | int_ctl::V_INTR_PRIO_MASK | int_ctl::V_IGN_TPR;

/// vmcb12's int_ctl after an exit of L2 (KVM's
/// nested_sync_control_from_vmcb02, after every exit): the bits the
/// processor writes back in vmcb02 (APM 15.21.4: V_TPR, and V_IRQ cleared
/// once the virtual interrupt is taken; V_GIF with vGIF, APM 15.33.2) are
/// L2's. Except V_IRQ while `l0_window`: L0 then holds vmcb02's V_IRQ for
/// its own interrupt window (VINTR intercepted by L0, not by L1), and
/// vmcb12's V_IRQ is still pending as L1 set it (restored into vmcb02 by
/// [`restore_vintr`] when the window closes).
pub fn sync_int_ctl(int_ctl12: u32, int_ctl02: u32, l0_window: bool) -> u32 {
    let mut mask = int_ctl::V_TPR_MASK | int_ctl::V_IRQ;
    if l0_window {
        mask &= !int_ctl::V_IRQ;
    }
    if int_ctl12 & int_ctl::V_GIF_ENABLE != 0 {
        mask |= int_ctl::V_GIF;
    }
    (int_ctl12 & !mask) | (int_ctl02 & mask)
}

/// vmcb02's int_ctl and vector when L0 closes its interrupt window while L2
/// runs (KVM's svm_clear_vintr): L0's fake V_IRQ goes, L1's virtual
/// interrupt of vmcb12 (V_IRQ, V_INTR_PRIO, V_IGN_TPR, vector) comes back.
pub fn restore_vintr(int_ctl02: u32, int_ctl12: u32, vector12: u32) -> (u32, u32) {
    ((int_ctl02 & !V_IRQ_INJECTION_BITS) | (int_ctl12 & V_IRQ_INJECTION_BITS), vector12 & 0xff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit;
    use crate::intercept::Intercepts;
    use crate::x86::pte::PS;
    use std::collections::HashMap;

    #[derive(Default)]
    struct Mem(HashMap<u64, u64>);
    impl TableMem for Mem {
        fn read(&self, pa: u64) -> Option<u64> {
            Some(*self.0.get(&pa).unwrap_or(&0))
        }
        fn write(&mut self, pa: u64, v: u64) {
            self.0.insert(pa, v);
        }
        fn alloc_table(&mut self) -> Option<u64> {
            None
        }
    }

    /// NPT12 at 0x1000 mapping L2 0x40_0000..: PT page 0x5000 at L1 0x9000 (RW),
    /// page 0x6000 at L1 0xa000 (read-only, NX); 2 MiB at L2 0x60_0000 -> L1 0x80_0000.
    fn npt12() -> Mem {
        let mut m = Mem::default();
        m.write(0x1000, 0x2000 | P | RW | US);
        m.write(0x2000, 0x3000 | P | RW | US);
        m.write(0x3000 + 8 * 2, 0x4000 | P | RW | US); // PD index 2: 0x40_0000
        m.write(0x3000 + 8 * 3, 0x80_0000 | P | RW | US | PS); // 2 MiB at 0x60_0000
        m.write(0x4000 + 8 * 5, 0x9000 | P | RW | US);
        m.write(0x4000 + 8 * 6, 0xa000 | P | US | NX);
        m
    }

    #[test]
    fn vintr_sync_and_restore() {
        use int_ctl::{V_GIF, V_GIF_ENABLE, V_IGN_TPR, V_INTR_MASKING, V_IRQ};
        let prio1 = 1 << int_ctl::V_INTR_PRIO_SHIFT;
        // L1's pending V_IRQ taken by L2 (cleared in vmcb02), V_TPR moved.
        assert_eq!(sync_int_ctl(V_IRQ | prio1, prio1 | V_INTR_MASKING | 3, false), prio1 | 3);
        // L0's window holds vmcb02's V_IRQ: vmcb12's stays as L1 set it.
        assert_eq!(sync_int_ctl(V_IRQ | prio1, V_IRQ | V_IGN_TPR | (0xf << 16) | V_INTR_MASKING, true), V_IRQ | prio1);
        assert_eq!(sync_int_ctl(prio1, V_IRQ | V_IGN_TPR, true), prio1);
        // V_GIF only with vGIF enabled by L1.
        assert_eq!(sync_int_ctl(V_GIF_ENABLE | V_GIF, 0, false), V_GIF_ENABLE);
        assert_eq!(sync_int_ctl(0, V_GIF, false), 0);
        // Closing the window: L1's injection bits and vector come back,
        // the rest of vmcb02's (V_INTR_MASKING, V_TPR) stays.
        let l0 = V_IRQ | V_IGN_TPR | (0xf << 16) | V_INTR_MASKING | 2;
        assert_eq!(restore_vintr(l0, V_IRQ | prio1 | 7, 0x120), (V_IRQ | prio1 | V_INTR_MASKING | 2, 0x20));
        assert_eq!(restore_vintr(l0, 0, 0), (V_INTR_MASKING | 2, 0));
    }

    #[test]
    fn npt02_leaf_current_after_flush() {
        // Every entry accessed (as after a fill), the RW page dirty too.
        let mut m = npt12();
        for ea in [0x1000, 0x2000, 0x3000 + 8 * 2, 0x3000 + 8 * 3, 0x4000 + 8 * 5, 0x4000 + 8 * 6] {
            let v = m.read(ea).unwrap();
            m.write(ea, v | A);
        }
        let v = m.read(0x4000 + 8 * 5).unwrap();
        m.write(0x4000 + 8 * 5, v | D);
        let walk = |m: &Mem, gpa| walk_npt12(m, 0x1000, gpa, false, false, true, 48, npf::FINAL).ok();
        let host = |l1: u64| Some(0x100_0000 + l1);
        let rw = Pte::new(0x100_9000, P | US | RW);
        // Unchanged: kept, writable or not.
        assert!(npt02_leaf_current(rw, walk(&m, 0x40_5000).as_ref(), host));
        assert!(npt02_leaf_current(Pte::new(0x100_9000, P | US), walk(&m, 0x40_5000).as_ref(), host));
        // Another host page (NPT01 maps the L1 page elsewhere, or not at all).
        assert!(!npt02_leaf_current(rw, walk(&m, 0x40_5000).as_ref(), |l1| Some(0x200_0000 + l1)));
        assert!(!npt02_leaf_current(rw, walk(&m, 0x40_5000).as_ref(), |_| None));
        // Read-only, NX page: a writable or executable leaf no longer holds.
        let ro = Pte::new(0x100_a000, P | US | NX);
        assert!(npt02_leaf_current(ro, walk(&m, 0x40_6000).as_ref(), host));
        assert!(!npt02_leaf_current(Pte::new(0x100_a000, P | US | RW | NX), walk(&m, 0x40_6000).as_ref(), host));
        assert!(!npt02_leaf_current(Pte::new(0x100_a000, P | US), walk(&m, 0x40_6000).as_ref(), host));
        // 2 MiB NPT12 leaf: the 4 KiB page inside it.
        assert!(npt02_leaf_current(Pte::new(0x180_3000, P | US), walk(&m, 0x60_3000).as_ref(), host));
        // L1 remapped the page: another L1 page, another host page.
        let mut r = npt12();
        r.0.clone_from(&m.0);
        r.write(0x4000 + 8 * 5, 0xb000 | P | RW | US | A | D);
        assert!(!npt02_leaf_current(rw, walk(&r, 0x40_5000).as_ref(), host));
        // L1 took write permission away, or cleared D: only a read-only leaf stays.
        r.write(0x4000 + 8 * 5, 0x9000 | P | US | A | D);
        assert!(!npt02_leaf_current(rw, walk(&r, 0x40_5000).as_ref(), host));
        assert!(npt02_leaf_current(Pte::new(0x100_9000, P | US), walk(&r, 0x40_5000).as_ref(), host));
        r.write(0x4000 + 8 * 5, 0x9000 | P | RW | US | A);
        assert!(!npt02_leaf_current(rw, walk(&r, 0x40_5000).as_ref(), host));
        // L1 cleared an accessed bit (leaf or table): the walker would set it.
        r.write(0x4000 + 8 * 5, 0x9000 | P | RW | US | D);
        assert!(!npt02_leaf_current(Pte::new(0x100_9000, P | US), walk(&r, 0x40_5000).as_ref(), host));
        r.write(0x4000 + 8 * 5, 0x9000 | P | RW | US | A | D);
        r.write(0x2000, 0x3000 | P | RW | US);
        assert!(!npt02_leaf_current(Pte::new(0x100_9000, P | US), walk(&r, 0x40_5000).as_ref(), host));
        // L1 unmapped it: a fault, dropped.
        r.write(0x4000 + 8 * 5, 0);
        assert!(!npt02_leaf_current(rw, walk(&r, 0x40_5000).as_ref(), host));
    }

    #[test]
    fn npt12_translation_in_same_leaf_equals_a_walk() {
        let m = npt12();
        let walk = |gpa| walk_npt12(&m, 0x1000, gpa, false, false, true, 48, npf::FINAL).unwrap();
        let t = walk(0x60_3123);
        for gpa in [0x60_0000, 0x60_3000, 0x61_f000, 0x7f_f000] {
            assert_eq!(t.in_same_leaf(0x60_3123, gpa), Some(walk(gpa)));
        }
        assert_eq!(t.in_same_leaf(0x60_3123, 0x80_0000), None);
        assert_eq!(walk(0x40_5000).in_same_leaf(0x40_5000, 0x40_5008), None);
    }

    #[test]
    fn npt02_tracked_pages() {
        let mut t = Npt02Tracked::default();
        for i in 0..Npt02Tracked::MAX as u64 {
            t.record((i << 12) | 0x123);
        }
        assert!(!t.full());
        assert_eq!(t.pages().len(), Npt02Tracked::MAX);
        assert_eq!(t.pages()[3], 0x3000);
        for i in 0..=Npt02Tracked::MAX as u64 {
            t.record(i << 20);
        }
        assert!(t.full());
        t.clear();
        assert!(!t.full() && t.pages().is_empty());
    }

    #[test]
    fn npt12_walk_and_faults() {
        let m = npt12();
        let t = walk_npt12(&m, 0x1000, 0x40_5123, true, false, true, 40, npf::FINAL).unwrap();
        assert_eq!((t.l1_gpa, t.writable, t.executable, t.page_size, t.dirty), (0x9123, true, true, 4096, true));
        // A in every level, D in the leaf (a write); a read sets no D.
        assert_eq!(t.ad_updates, [(0x1000, A), (0x2000, A), (0x3000 + 16, A), (0x4000 + 40, A | D)]);
        let r = walk_npt12(&m, 0x1000, 0x40_5123, false, false, true, 40, npf::FINAL).unwrap();
        assert!(!r.dirty);
        assert_eq!(r.ad_updates[3], (0x4000 + 40, A));
        // Bits already set are not set again; a 2 MiB leaf is at level 2.
        let mut m5 = npt12();
        m5.write(0x1000, 0x2000 | P | RW | US | A);
        let t = walk_npt12(&m5, 0x1000, 0x61_2345, false, false, true, 40, npf::FINAL).unwrap();
        assert_eq!(t.ad_updates, [(0x1000, 0), (0x2000, A), (0x3000 + 24, A), (0, 0)]);
        let t = walk_npt12(&m, 0x1000, 0x61_2345, false, true, true, 40, npf::FINAL).unwrap();
        assert_eq!((t.l1_gpa, t.page_size), (0x81_2345, 2 << 20));
        // Not present: P clear, user bit and stage kept, write bit from the access.
        assert_eq!(walk_npt12(&m, 0x1000, 0x40_7000, true, false, true, 40, npf::FINAL), Err(npf::US | npf::RW | npf::FINAL));
        // Write to a read-only page during a guest table walk.
        assert_eq!(walk_npt12(&m, 0x1000, 0x40_6000, true, false, true, 40, npf::TABLE), Err(npf::P | npf::US | npf::RW | npf::TABLE));
        // Fetch from an NX page.
        assert_eq!(walk_npt12(&m, 0x1000, 0x40_6000, false, true, true, 40, npf::FINAL), Err(npf::P | npf::US | npf::ID | npf::FINAL));
        // NX set while L1's EFER.NXE is clear: reserved bit.
        assert_eq!(walk_npt12(&m, 0x1000, 0x40_6000, false, false, false, 40, npf::FINAL), Err(npf::P | npf::US | npf::RSVD | npf::FINAL));
        // An address bit beyond the physical width is reserved.
        let mut m2 = npt12();
        m2.write(0x4000 + 8 * 5, (1 << 45) | 0x9000 | P | RW | US);
        assert_eq!(walk_npt12(&m2, 0x1000, 0x40_5000, false, false, true, 40, npf::FINAL), Err(npf::P | npf::US | npf::RSVD | npf::FINAL));
        // PS in a PML4 entry is reserved; a supervisor-only entry faults.
        let mut m3 = npt12();
        m3.write(0x1000, 0x2000 | P | RW | US | PS);
        assert_eq!(walk_npt12(&m3, 0x1000, 0x40_5000, false, false, true, 40, npf::FINAL), Err(npf::P | npf::US | npf::RSVD | npf::FINAL));
        let mut m4 = npt12();
        m4.write(0x2000, 0x3000 | P | RW);
        assert_eq!(walk_npt12(&m4, 0x1000, 0x40_5000, false, false, true, 40, npf::FINAL), Err(npf::P | npf::US | npf::FINAL));
    }

    #[test]
    fn npt02_invalidation() {
        let k = Npt02Key { ncr3: 0x1000, asid: 1, npt01_generation: 4 };
        use Npt02Stale::*;
        assert_eq!(npt02_stale(None, k, 1, true), None);
        assert_eq!(npt02_stale(Some(k), k, 0, true), None);
        assert_eq!(npt02_stale(Some(k), k, 1, false), Some(TlbControl));
        assert_eq!(npt02_stale(Some(k), k, 3, true), Some(TlbControl));
        assert_eq!(npt02_stale(Some(k), k, 7, true), Some(TlbControl));
        assert_eq!(npt02_stale(Some(k), k, 3, false), None);
        assert_eq!(npt02_stale(Some(k), k, 2, true), None);
        assert_eq!(npt02_stale(Some(k), Npt02Key { ncr3: 0x2000, ..k }, 0, true), Some(Ncr3));
        assert_eq!(npt02_stale(Some(k), Npt02Key { asid: 2, ..k }, 0, true), Some(Asid));
        assert_eq!(npt02_stale(Some(k), Npt02Key { npt01_generation: 5, ..k }, 0, true), Some(Npt01));
    }

    #[test]
    fn composed_leaf_takes_the_weaker_permissions() {
        let t = Npt12Translation { l1_gpa: 0x9000, writable: true, executable: false, page_size: 4096, dirty: true, ad_updates: [(0, 0); 4] };
        let e = compose_leaf(&t, 0x7777_0000, false, true);
        assert_eq!(e, Pte(0x7777_0000 | P | US | NX));
        let t = Npt12Translation { writable: true, executable: true, ..t };
        let e = compose_leaf(&t, 0x1000, true, true);
        assert_eq!(e, Pte(0x1000 | P | US | RW));
        assert!(compose_leaf(&t, 0x1000, true, false).nx());
        // Clean page: read-only until the first write sets D.
        assert!(!compose_leaf(&Npt12Translation { dirty: false, ..t }, 0x1000, true, true).writable());
    }

    #[test]
    fn vmcb02_merge() {
        let mut c01 = ControlArea::ZERO;
        c01.intercepts.set(exit::INTR);
        c01.intercepts.set(exit::VMRUN);
        c01.intercepts.set(exit::MSR);
        c01.iopm_base_pa = 0x10000;
        c01.msrpm_base_pa = 0x20000;
        c01.tsc_offset = 1000;
        let mut c12 = ControlArea::ZERO;
        c12.intercepts.set(exit::CPUID);
        c12.intercepts.set(exit::VMRUN);
        c12.tsc_offset = (-300i64) as u64;
        c12.asid = 7;
        c12.int_ctl = 0x5 | int_ctl::V_IRQ | int_ctl::V_GIF_ENABLE | int_ctl::AVIC_ENABLE;
        c12.int_vector = 0x1_0030;
        c12.event_inj = 0x8000_0b0e;
        c12.event_inj_err = 6;
        c12.next_rip = 0x1234;
        c12.iopm_base_pa = 0xdead_0000;
        let p = L0Policy { asid: 3, flush: true, ncr3: 0x55000, features: SvmFeatures::NP };
        let mut c = ControlArea::ZERO;
        merge_control(&mut c, &p, &c01, &c12);
        // The union, with L2's STGI/CLGI always L0's (vmcb01 may let L1's
        // run on vGIF).
        let mut want: Intercepts = c01.intercepts.union(&c12.intercepts);
        want.set(exit::STGI);
        want.set(exit::CLGI);
        assert_eq!(c.intercepts, want);
        assert!(c.intercepts.test(exit::CPUID) && c.intercepts.test(exit::INTR));
        assert_eq!((c.iopm_base_pa, c.msrpm_base_pa), (0x10000, 0x20000));
        assert_eq!(c.tsc_offset, 700);
        assert_eq!(c.asid, 3);
        assert_eq!(c.tlb_ctl, tlb_control::FLUSH_ALL);
        // L1's virtual interrupt request survives; vGIF/AVIC (not offered) do not.
        assert_eq!(c.int_ctl, 0x5 | int_ctl::V_IRQ | int_ctl::V_INTR_MASKING);
        assert_eq!(c.int_vector, 0x30);
        assert_eq!((c.event_inj, c.event_inj_err), (0x8000_0b0e, 6));
        assert_eq!((c.nested_ctl, c.nested_cr3), (nested_ctl::NP_ENABLE, 0x55000));
        // NRIPS not offered: next_rip not taken from vmcb12.
        assert_eq!(c.next_rip, 0);
        let p2 = L0Policy { features: SvmFeatures::NP | SvmFeatures::NRIPS | SvmFeatures::VGIF, flush: false, ..p };
        let mut c2 = ControlArea::ZERO;
        merge_control(&mut c2, &p2, &c01, &c12);
        assert_eq!(c2.next_rip, 0x1234);
        // vGIF offered: L1's V_GIF_ENABLE (and V_GIF, clear here) survive.
        assert_eq!(c2.int_ctl, 0x5 | int_ctl::V_IRQ | int_ctl::V_INTR_MASKING | int_ctl::V_GIF_ENABLE);
        assert_eq!(c2.tlb_ctl, tlb_control::DO_NOTHING);
    }

    #[test]
    fn merge_over_a_used_vmcb02_equals_merge_from_scratch() {
        // vmcb02's control area after earlier runs: every defined byte set
        // (a previous merge, exit fields written by the processor), the
        // reserved tail zero as allocated.
        let mut c01 = ControlArea::ZERO;
        c01.intercepts.set(exit::INTR);
        c01.iopm_base_pa = 0x10000;
        let mut c12 = ControlArea::ZERO;
        c12.intercepts.set(exit::CPUID);
        c12.int_ctl = int_ctl::V_IRQ | int_ctl::V_GIF_ENABLE | int_ctl::V_GIF;
        c12.next_rip = 0x1234;
        c12.pause_filter_count = 9;
        for features in [SvmFeatures::NP, SvmFeatures::all(), SvmFeatures::empty()] {
            let p = L0Policy { asid: 2, flush: true, ncr3: 0x55000, features };
            let mut used = ControlArea::ZERO;
            // SAFETY: (test only) ControlArea is plain old data (repr(C),
            // integers and byte arrays): any byte pattern is a valid value.
            let bytes = unsafe { core::slice::from_raw_parts_mut((&mut used as *mut ControlArea).cast::<u8>(), core::mem::size_of::<ControlArea>()) };
            for (i, b) in bytes[..crate::vmcb::CONTROL_USED_END].iter_mut().enumerate() {
                *b = 0xa5 ^ i as u8;
            }
            let mut fresh = ControlArea::ZERO;
            merge_control(&mut used, &p, &c01, &c12);
            merge_control(&mut fresh, &p, &c01, &c12);
            assert_eq!(used, fresh);
        }
    }
}
