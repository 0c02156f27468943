// SPDX-License-Identifier: GPL-2.0
//! NPT01: the nested page table through which L0 backs a VM's guest-physical
//! memory with pages of the VMM process (APM vol. 2 15.25). Built lazily, one
//! 4 KiB page per nested page fault; the table format and walks are in
//! `nsvm_core::paging`.

use core::cell::Cell;

use kernel::prelude::*;

use nsvm_core::memslot::Slot;
use nsvm_core::paging::{self, TableMem};
use nsvm_core::x86::pte::{NX, RW};
use nsvm_core::x86::Pte;

use crate::hw;
use crate::hw::mem::KPages;
use crate::hw::pin::PinnedPage;

/// A VM's NPT01 and the pages it maps.
///
/// # Invariants
///
/// Every table reachable from `root` is `root` or one of `tables`; every leaf
/// maps exactly one page of `pinned` (or `huge`), which stays pinned while
/// mapped and until the VM's TLB shootdown after its leaf is removed
/// (`stale`: pins whose leaf is gone, released by `release_stale`).
pub(crate) struct Npt {
    root: KPages,
    tables: KVec<KPages>,
    /// 4 KiB mappings: (gpa, page).
    pinned: KVec<(u64, PinnedPage)>,
    /// 2 MiB mappings: (gpa, first page of the folio).
    huge: KVec<(u64, PinnedPage)>,
    /// Some pins lost their leaf and wait for `release_stale` (after the
    /// VM's TLB shootdown: a vCPU in guest mode may still use the old
    /// translation until it has left guest mode).
    stale: bool,
    /// Pages mapped on faults since creation.
    pub(crate) fills: u64,
    /// Pages unmapped since creation.
    pub(crate) unmaps: u64,
    /// Recent lookups for `read`: (guest page | 1, its host page's kernel
    /// virtual address), direct-mapped on the guest page number; emptied
    /// whenever a translation is removed or replaced.
    lookups: [Cell<(u64, usize)>; LOOKUPS],
}

/// Entries of `Npt::lookups`.
const LOOKUPS: usize = 8;

struct Tables<'a> {
    root: u64,
    tables: &'a mut KVec<KPages>,
}

impl Tables<'_> {
    fn owns(&self, pa: u64) -> bool {
        let page = pa & !0xfff;
        page == self.root || self.tables.iter().any(|t| t.pa() == page)
    }
}

/// Read-only view of NPT01's tables (lookups through a shared reference).
struct TablesRef<'a> {
    root: u64,
    tables: &'a KVec<KPages>,
}

impl TableMem for TablesRef<'_> {
    fn read(&self, pa: u64) -> Option<u64> {
        let page = pa & !0xfff;
        if pa % 8 != 0 || !(page == self.root || self.tables.iter().any(|t| t.pa() == page)) {
            return None;
        }
        // SAFETY: `pa` is an aligned entry of a live table page of ours.
        Some(unsafe { hw::mem::table_read(pa) })
    }
    fn write(&mut self, _pa: u64, _v: u64) {}
    fn alloc_table(&mut self) -> Option<u64> {
        None
    }
}

impl TableMem for Tables<'_> {
    fn read(&self, pa: u64) -> Option<u64> {
        if !self.owns(pa) || pa % 8 != 0 {
            return None;
        }
        // SAFETY: `pa` is an aligned entry of a live table page of ours.
        Some(unsafe { hw::mem::table_read(pa) })
    }
    fn write(&mut self, pa: u64, v: u64) {
        if self.owns(pa) && pa % 8 == 0 {
            // SAFETY: as in `read`.
            unsafe { hw::mem::table_write(pa, v) }
        }
    }
    fn alloc_table(&mut self) -> Option<u64> {
        let t = KPages::page().ok()?;
        let pa = t.pa();
        self.tables.push(t, GFP_KERNEL_ACCOUNT).ok()?;
        Some(pa)
    }
}

impl Npt {
    /// An empty NPT.
    pub(crate) fn new() -> Result<Self> {
        Ok(Self { root: KPages::page()?, tables: KVec::new(), pinned: KVec::new(), huge: KVec::new(), stale: false, fills: 0, unmaps: 0, lookups: Default::default() })
    }

    /// nCR3 for the VMCB.
    pub(crate) fn root_pa(&self) -> u64 {
        self.root.pa()
    }

    /// Guest pages mapped now, in 4 KiB units.
    pub(crate) fn mapped_pages(&self) -> usize {
        self.pinned.len() + 512 * self.huge.len()
    }

    /// 2 MiB mappings now.
    pub(crate) fn huge_pages(&self) -> usize {
        self.huge.len()
    }

    /// Page-table pages now (root included).
    pub(crate) fn table_pages(&self) -> usize {
        self.tables.len() + 1
    }

    fn mem(&mut self) -> Tables<'_> {
        Tables { root: self.root.pa(), tables: &mut self.tables }
    }

    /// Kernel virtual address (direct mapping) of the host page that backs
    /// the guest page of `gpa`, when NPT01 maps it.
    /// Inlined (a hit is a few instructions; page-table reads of the
    /// instruction fetches go through here).
    #[inline(always)]
    fn host_va(&self, gpa: u64) -> Option<usize> {
        // NPT01 is a 4-level table: it translates bits 47:0 only, and an
        // address above would alias a low one (random NPT12 entries of a
        // malicious L1 point there; the slots have no such address).
        if gpa >> 48 != 0 {
            return None;
        }
        let page = gpa & !0xfff;
        let (tag, va) = self.lookups[(page >> 12) as usize % LOOKUPS].get();
        if tag == page | 1 {
            return Some(va);
        }
        self.host_va_miss(gpa)
    }

    /// `host_va` when `lookups` has no entry: NPT01's leaf, remembered.
    #[inline(never)]
    fn host_va_miss(&self, gpa: u64) -> Option<usize> {
        let page = gpa & !0xfff;
        let c = &self.lookups[(page >> 12) as usize % LOOKUPS];
        let root = self.root.pa();
        let e = paging::leaf(&TablesRef { root, tables: &self.tables }, root, gpa)?;
        let hpa = if e.large() { e.translate(page, paging::SIZE_2M) } else { e.addr() };
        let va = hw::mem::phys_to_va(hpa);
        c.set((page | 1, va));
        Some(va)
    }

    /// Reads guest memory at `gpa` through NPT01's pinned page (no slot
    /// lookup, no user copy); false when the range leaves the page or NPT01
    /// does not map it (callers then go through the slots).
    pub(crate) fn read(&self, gpa: u64, out: &mut [u8]) -> bool {
        let off = (gpa & 0xfff) as usize;
        if off + out.len() > 4096 {
            return false;
        }
        let Some(va) = self.host_va(gpa) else { return false };
        // SAFETY: NPT01 maps the page, so it is pinned (`pinned` or `huge`)
        // until unmapped, which needs `&mut self` (the VM's lock, held by the
        // caller for `&self`); the range is inside the page.
        unsafe { hw::mem::guest_read(va + off, out) };
        true
    }

    /// The aligned quadword of guest memory at `gpa` (a guest page-table
    /// entry), as `read`.
    #[inline(always)]
    pub(crate) fn read_u64(&self, gpa: u64) -> Option<u64> {
        if gpa % 8 != 0 {
            return None;
        }
        let va = self.host_va(gpa)?;
        // SAFETY: as in `read`; aligned, inside the page.
        Some(unsafe { hw::mem::guest_read_u64(va + (gpa & 0xfff) as usize) })
    }

    fn forget_lookups(&mut self) {
        for c in &self.lookups {
            c.set((0, 0));
        }
    }

    /// Whether `gpa` is mapped (with write permission when `write`).
    pub(crate) fn is_mapped(&mut self, gpa: u64, write: bool) -> bool {
        let root = self.root.pa();
        paging::leaf(&self.mem(), root, gpa).is_some_and(|e| !write || e.writable())
    }

    /// Maps the page of `gpa` from `slot` (pinning the VMM's page). Read-only
    /// slots map read-only; writes to them exit to userspace as MMIO.
    pub(crate) fn map(&mut self, slot: &Slot, gpa: u64) -> Result {
        let gpa = gpa & !0xfff;
        if self.is_mapped(gpa, !slot.readonly()) {
            return Ok(());
        }
        let pin = PinnedPage::pin(slot.uaddr_of(gpa), !slot.readonly())?;
        // The 2 MiB path is tried only when a huge folio backs the page: its
        // checks (another walk, a second pin) cost ~5% of a 4 KiB fault
        // (docs/bench.md), too much to pay on memory that has no THP.
        if pin.in_huge_folio() && self.try_map_2m(slot, gpa)? {
            return Ok(());
        }
        let flags = if slot.readonly() { 0 } else { RW };
        let root = self.root.pa();
        let hpa = pin.pa;
        self.pinned.push((gpa, pin), GFP_KERNEL_ACCOUNT)?;
        match paging::map_4k(&mut self.mem(), root, gpa, hpa, flags & !NX) {
            Ok(old) if old.present() => {
                // Replaced a mapping (e.g. upgrade): the previous pin waits
                // for the VM's TLB shootdown (`has_stale`, the caller's).
                self.stale |= old.addr() != hpa;
                self.forget_lookups();
                Ok(())
            }
            Ok(_) => {
                self.fills += 1;
                Ok(())
            }
            Err(_) => {
                self.pinned.pop();
                Err(ENOMEM)
            }
        }
    }

    /// Maps the 2 MiB around `gpa` with one entry when the slot covers all of
    /// it with the same alignment in the VMM and a transparent huge page backs
    /// it (as KVM maps at the host's page size), and no 4 KiB mapping exists
    /// there yet. Returns whether it did.
    fn try_map_2m(&mut self, slot: &Slot, gpa: u64) -> Result<bool> {
        let base = gpa & !(paging::SIZE_2M - 1);
        let end = base + paging::SIZE_2M;
        if base < slot.gpa || end > slot.end() || slot.uaddr_of(base) % paging::SIZE_2M != 0 {
            return Ok(false);
        }
        let root = self.root.pa();
        if paging::pd_state(&self.mem(), root, base) != paging::PdState::Free {
            return Ok(false);
        }
        let Some(pin) = PinnedPage::pin_huge(slot.uaddr_of(base), !slot.readonly())? else { return Ok(false) };
        let hpa = pin.pa;
        let flags = if slot.readonly() { 0 } else { RW };
        self.huge.push((base, pin), GFP_KERNEL_ACCOUNT)?;
        if paging::map_2m(&mut self.mem(), root, base, hpa, flags).is_err() {
            self.huge.pop();
            return Ok(false);
        }
        self.fills += 1;
        Ok(true)
    }

    /// Unmaps and unpins everything in `[start, end)`.
    pub(crate) fn unmap_range(&mut self, start: u64, end: u64) {
        let root = self.root.pa();
        let mut unmaps = 0;
        let mut t = Tables { root, tables: &mut self.tables };
        for (gpa, _) in self.pinned.iter().filter(|(g, _)| *g >= start && *g < end) {
            paging::unmap_4k(&mut t, root, *gpa);
            unmaps += 1;
        }
        for (gpa, _) in self.huge.iter().filter(|(g, _)| *g >= start && *g < end) {
            paging::unmap_2m(&mut t, root, *gpa);
            unmaps += 1;
        }
        self.unmaps += unmaps;
        if unmaps != 0 {
            self.stale = true;
            self.forget_lookups();
        }
    }

    /// Whether pins lost their leaf since the last `release_stale`.
    pub(crate) fn has_stale(&self) -> bool {
        self.stale
    }

    /// Unpins the pages whose leaf was removed or replaced. Only after the
    /// VM's TLB shootdown (`Vm::shootdown`): until then a vCPU in guest
    /// mode may still reach them through a cached translation.
    pub(crate) fn release_stale(&mut self) {
        if !self.stale {
            return;
        }
        self.stale = false;
        let root = self.root.pa();
        let t = TablesRef { root, tables: &self.tables };
        let keep = |gpa: u64, pa: u64, large: bool| {
            paging::leaf(&t, root, gpa).is_some_and(|e| e.large() == large && (if large { e.page_base(paging::SIZE_2M) } else { e.addr() }) == pa)
        };
        self.pinned.retain(|(gpa, p)| keep(*gpa, p.pa, false));
        self.huge.retain(|(gpa, p)| keep(*gpa, p.pa, true));
    }

}

/// Shadow NPT02 of one vCPU: what L0 runs an L2 with when L1 enables nested
/// paging (APM 15.25): L2 physical → host physical, composed lazily, one
/// 4 KiB page per nested page fault, from L1's NPT12 and the VM's slots
/// (nsvm_core::nested::{walk_npt12, compose_leaf}). A cache: dropped whole
/// whenever it may be stale (`nsvm_core::nested::npt02_must_flush`).
///
/// # Invariants
///
/// Every table reachable from `root` is `root` or one of `tables`; every leaf
/// maps a page of `pins` (its own pin: a leaf never outlives its page, even
/// when NPT01 drops the slot).
pub(crate) struct ShadowNpt {
    root: KPages,
    tables: KVec<KPages>,
    pins: KVec<PinnedPage>,
    /// What the translations were built for (nCR3, ASID, NPT01 generation).
    pub(crate) key: Option<nsvm_core::nested::Npt02Key>,
}

impl ShadowNpt {
    /// An empty NPT02.
    pub(crate) fn new() -> Result<Self> {
        Ok(Self { root: KPages::page()?, tables: KVec::new(), pins: KVec::new(), key: None })
    }

    /// nCR3 for vmcb02.
    pub(crate) fn root_pa(&self) -> u64 {
        self.root.pa()
    }

    /// Pages mapped now.
    pub(crate) fn mapped_pages(&self) -> usize {
        self.pins.len()
    }

    /// Drops every translation (and the tables and pins behind them).
    pub(crate) fn flush(&mut self) {
        self.root.fill(0);
        self.tables.clear();
        self.pins.clear();
    }

    /// Maps the run of up to 8 L2 physical pages from `gpa` (in one 2 MiB
    /// region) with one table walk (`paging::map_4k_run`): page `i` to
    /// `pins[i]` with the composed leaf flags of `leaves[i]`, where not
    /// mapped yet, and page `force` (the faulting one) in any case. Pins of
    /// pages left as they were are released. Returns how many were mapped.
    /// Flushes first when more than `limit` pages are mapped (as `map`).
    pub(crate) fn map_run(&mut self, gpa: u64, pins: [Option<PinnedPage>; 8], leaves: &[Pte; 8], force: usize, limit: usize) -> Result<usize> {
        if self.pins.len() + 8 >= limit {
            self.flush();
        }
        let mut pages = [None; 8];
        for (i, p) in pins.iter().enumerate() {
            if let Some(p) = p {
                pages[i] = Some((p.pa, leaves[i].0 & (RW | NX)));
            }
        }
        // Room for every pin first, so that recording them cannot fail
        // once the entries are written.
        self.pins.reserve(8, GFP_KERNEL_ACCOUNT)?;
        let root = self.root.pa();
        let mut t = Tables { root, tables: &mut self.tables };
        let written = paging::map_4k_run(&mut t, root, gpa & !0xfff, &pages, force).map_err(|_| ENOMEM)?;
        let mut n = 0;
        for (i, p) in pins.into_iter().enumerate() {
            let Some(p) = p else { continue };
            if written & (1 << i) == 0 {
                continue;
            }
            if self.pins.push(p, GFP_KERNEL_ACCOUNT).is_err() {
                // Not reached (reserved above); a leaf never outlives its pin.
                let mut t = Tables { root, tables: &mut self.tables };
                paging::unmap_4k(&mut t, root, (gpa & !0xfff) + ((i as u64) << 12));
                continue;
            }
            n += 1;
        }
        Ok(n)
    }

    /// Maps L2 physical page `gpa` to the page `pin` with the composed leaf
    /// flags of `leaf` (address bits ignored). When more than `limit` pages
    /// are mapped, everything is dropped first: a malicious L1 can alias one
    /// page at any number of L2 addresses, and this is only a cache.
    pub(crate) fn map(&mut self, gpa: u64, pin: PinnedPage, leaf: Pte, limit: usize) -> Result {
        if self.pins.len() >= limit {
            self.flush();
        }
        let hpa = pin.pa;
        self.pins.push(pin, GFP_KERNEL_ACCOUNT)?;
        let root = self.root.pa();
        let mut t = Tables { root, tables: &mut self.tables };
        let flags = leaf.0 & (RW | NX);
        if paging::map_4k(&mut t, root, gpa & !0xfff, hpa, flags).is_err() {
            self.pins.pop();
            return Err(ENOMEM);
        }
        Ok(())
    }
}
