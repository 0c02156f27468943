//! NPT01: the nested page table through which L0 backs a VM's guest-physical
//! memory with pages of the VMM process (APM vol. 2 15.25). Built lazily, one
//! page (4 KiB, or 2 MiB where the process maps a huge page) per nested page
//! fault; the table format and walks are in `nsvm_core::paging`. Leaves hold
//! no page reference: they follow the process's page tables, and the VM's
//! MMU notifier removes them before the process's page changes
//! (`Vm::invalidate_start`). NPT01 lives under the VM's MMU spinlock, so
//! nothing here sleeps or allocates: table pages come from a cache filled
//! outside the lock (`TopUp`).

use core::cell::Cell;

use kernel::prelude::*;

use nsvm_core::paging::{self, TableMem};
use nsvm_core::x86::pte::RW;
use nsvm_core::x86::Pte;

use crate::hw;
use crate::hw::mem::KPages;

/// Table pages one 4 KiB mapping may need below the root (PDPT, PD, PT).
const MAP_TABLES: usize = 3;

/// A VM's NPT01.
///
/// # Invariants
///
/// Every table reachable from `root` is `root` or one of `tables` (sorted
/// by address); every
/// leaf maps a page (4 KiB) or a 2 MiB huge page that the VM's creator maps
/// at the slot's address for that guest-physical address, with no more
/// permission than the process has: it was so when the leaf was written
/// under the MMU lock with no invalidation of the range running or run
/// since the page was looked up (`Mmu::retry`), and every invalidation
/// removes the leaves of its range under the MMU lock before the process's
/// page changes. `tables` always has room for `MAP_TABLES` more entries
/// when `cache` is full (`topup`), so `map` never allocates.
pub(crate) struct Npt {
    root: KPages,
    tables: KVec<KPages>,
    /// Pages of `tables` recently walked through (`owns`); its pages are
    /// never freed before the NPT.
    seen: Seen,
    /// Zeroed table pages for `map`, filled outside the lock.
    cache: [Option<KPages>; MAP_TABLES],
    /// 4 KiB leaves now.
    pages_4k: usize,
    /// 2 MiB leaves now.
    pages_2m: usize,
    /// Pages mapped on faults since creation.
    pub(crate) fills: u64,
    /// Pages unmapped since creation.
    pub(crate) unmaps: u64,
    /// Recent lookups for `read`: (guest page | `lookup_gen` << 1 | 1, its
    /// host page's kernel virtual address), direct-mapped on the guest page
    /// number; an entry counts only with the current `lookup_gen`, which
    /// moves whenever a translation is removed or replaced (all entries are
    /// emptied when it wraps).
    lookups: [Cell<(u64, usize)>; LOOKUPS],
    /// The generation of `lookups` (1..=LOOKUP_GENS).
    lookup_gen: u64,
}

/// Entries of `Npt::lookups`: a nested VMRUN, the VMLOAD/VMSAVE around it
/// and the decode of L2's instruction for NRIPS (L2's page walk through
/// NPT12) read a dozen or more L1 pages per L2 exit; with 8 entries they
/// evicted each other, 64 still collided (`make bench-l1 BENCH_PROFILE=1`).
/// Forgetting them all is a generation increment (`forget_lookups`).
const LOOKUPS: usize = 256;

/// Generations of `Npt::lookups` before they are emptied: what the tag's
/// bits 11:1 (below the page number) hold.
const LOOKUP_GENS: u64 = 0x7ff;

/// What `Npt::topup` takes: table pages and a larger table list, allocated
/// outside the MMU lock (with `GFP_KERNEL`: reclaim may call the MMU
/// notifier, which takes that lock). What is not used is freed by the
/// caller, after the lock.
pub(crate) struct TopUp {
    pages: [Option<KPages>; MAP_TABLES],
    tables: Option<KVec<KPages>>,
}

impl TopUp {
    /// `pages` zeroed table pages and, when `capacity` is given, an empty
    /// list with room for that many table pages.
    pub(crate) fn alloc(pages: usize, capacity: Option<usize>) -> Result<Self> {
        let mut t = TopUp { pages: Default::default(), tables: None };
        for p in t.pages.iter_mut().take(pages) {
            *p = Some(KPages::page()?);
        }
        if let Some(c) = capacity {
            t.tables = Some(KVec::with_capacity(c, GFP_KERNEL_ACCOUNT)?);
        }
        Ok(t)
    }
}

struct Tables<'a> {
    root: u64,
    tables: &'a mut KVec<KPages>,
    /// The NPT's `seen` (see `owns`).
    seen: &'a Seen,
    /// NPT01: pages from its cache, recorded within the list's capacity
    /// (no allocation). NPT02 (`None`): allocated here.
    cache: Option<&'a mut [Option<KPages>; MAP_TABLES]>,
}

impl Tables<'_> {
    fn owns(&self, pa: u64) -> bool {
        owns(self.root, self.tables, self.seen, pa)
    }

    /// Records table page `t` in the list, kept sorted by address for
    /// `owns`; within the list's capacity (the caller made room).
    fn record(&mut self, t: KPages) -> Option<u64> {
        let pa = t.pa();
        let at = self.tables.partition_point(|p| p.pa() < pa);
        self.tables.insert_within_capacity(at, t).ok()?;
        Some(pa)
    }
}

/// Table pages of an NPT recently found in its list, direct-mapped on the
/// page number (an entry is a page address, or 1 for none). Invariant
/// (upheld by the NPTs that own one): every page it holds is in the NPT's
/// `tables`; it is emptied whenever table pages are freed.
type Seen = [Cell<u64>; SEEN];

/// Entries of a `Seen` cache: the upper tables every walk reads, and the
/// last page tables.
const SEEN: usize = 16;

/// An empty `Seen` cache.
const fn seen_empty() -> Seen {
    [const { Cell::new(1) }; SEEN]
}

/// Whether `pa` lies in `root` or one of `tables` (sorted by address). Every
/// table walk step asks: first the `seen` cache, then a binary search (a
/// scan of the list cost an L1 Linux's NPT01 of a few hundred tables
/// thousands of instructions per walk, `make bench-l1 BENCH_PROFILE=1`, and
/// a binary search alone more than the scan did for a small VM's list,
/// whose upper tables came first).
#[inline(always)]
fn owns(root: u64, tables: &[KPages], seen: &Seen, pa: u64) -> bool {
    let page = pa & !0xfff;
    if page == root {
        return true;
    }
    let c = &seen[(page >> 12) as usize % SEEN];
    if c.get() == page {
        return true;
    }
    let found = tables.binary_search_by_key(&page, |t| t.pa()).is_ok();
    if found {
        c.set(page);
    }
    found
}

/// Read-only view of NPT01's tables (lookups through a shared reference).
struct TablesRef<'a> {
    root: u64,
    tables: &'a KVec<KPages>,
    seen: &'a Seen,
}

impl TableMem for TablesRef<'_> {
    fn read(&self, pa: u64) -> Option<u64> {
        if pa % 8 != 0 || !owns(self.root, self.tables, self.seen, pa) {
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
        match self.cache.as_mut() {
            Some(cache) => {
                let t = cache.iter_mut().find_map(|c| c.take())?;
                // Within capacity (`Npt::topup`): no allocation under the lock.
                self.record(t)
            }
            None => {
                let t = KPages::page().ok()?;
                self.tables.reserve(1, GFP_KERNEL_ACCOUNT).ok()?;
                self.record(t)
            }
        }
    }
}

/// Guest memory read through NPT01 alone as a `TableMem` (the caller holds
/// the MMU lock for the `&Npt`): walks of L1's tables, one lock for all of
/// them; an address NPT01 does not map reads as absent.
pub(crate) struct Npt01Reader<'a>(pub(crate) &'a Npt);

impl TableMem for Npt01Reader<'_> {
    fn read(&self, pa: u64) -> Option<u64> {
        self.0.read_u64(pa)
    }
    fn write(&mut self, _pa: u64, _v: u64) {}
    fn alloc_table(&mut self) -> Option<u64> {
        None
    }
}

/// Result of `Npt::map`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mapped {
    /// The leaf is there (written now, or already).
    Done,
    /// A leaf for another page was replaced: vCPUs must be kicked
    /// (`Vm::shootdown`) before anything relies on the old page being gone.
    Replaced,
    /// The table cache ran dry (another vCPU used it): top up and retry.
    NoTables,
}

impl Npt {
    /// An empty NPT.
    pub(crate) fn new() -> Result<Self> {
        Ok(Self {
            root: KPages::page()?,
            tables: KVec::with_capacity(16, GFP_KERNEL_ACCOUNT)?,
            seen: seen_empty(),
            cache: Default::default(),
            pages_4k: 0,
            pages_2m: 0,
            fills: 0,
            unmaps: 0,
            lookups: [const { Cell::new((0, 0)) }; LOOKUPS],
            lookup_gen: 1,
        })
    }

    /// nCR3 for the VMCB.
    pub(crate) fn root_pa(&self) -> u64 {
        self.root.pa()
    }

    /// Guest pages mapped now, in 4 KiB units.
    pub(crate) fn mapped_pages(&self) -> usize {
        self.pages_4k + 512 * self.pages_2m
    }

    /// 2 MiB mappings now.
    pub(crate) fn huge_pages(&self) -> usize {
        self.pages_2m
    }

    /// Page-table pages now (root included).
    pub(crate) fn table_pages(&self) -> usize {
        self.tables.len() + 1
    }

    fn mem(&mut self) -> Tables<'_> {
        Tables { root: self.root.pa(), tables: &mut self.tables, seen: &self.seen, cache: Some(&mut self.cache) }
    }

    /// What a `map` may need that is missing: (table pages, a table list
    /// capacity), for `TopUp::alloc`; `None` when nothing is.
    pub(crate) fn topup_wanted(&self) -> Option<(usize, Option<usize>)> {
        let pages = self.cache.iter().filter(|c| c.is_none()).count();
        let room = self.tables.capacity() - self.tables.len() >= MAP_TABLES;
        let capacity = (!room).then(|| 2 * self.tables.capacity() + MAP_TABLES);
        (pages != 0 || capacity.is_some()).then_some((pages, capacity))
    }

    /// Takes what `t` brings (under the lock, without allocating): table
    /// pages into empty cache entries, a larger table list in place of the
    /// current one (the old list, now empty, stays in `t` to be freed).
    pub(crate) fn topup(&mut self, t: &mut TopUp) {
        for (c, p) in self.cache.iter_mut().zip(t.pages.iter_mut()) {
            if c.is_none() {
                *c = p.take();
            }
        }
        if let Some(mut v) = t.tables.take() {
            if v.capacity() >= self.tables.len() + MAP_TABLES && v.capacity() > self.tables.capacity() {
                for p in self.tables.drain_all() {
                    // Within capacity (checked above).
                    if let Err(e) = v.push_within_capacity(p) {
                        // Not reached; a table page is never freed while mapped.
                        core::mem::forget(e);
                    }
                }
                core::mem::swap(&mut self.tables, &mut v);
            }
            t.tables = Some(v);
        }
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
        if tag == page | self.lookup_gen << 1 | 1 {
            return Some(va);
        }
        self.host_va_miss(gpa)
    }

    /// `host_va` when `lookups` has no entry: NPT01's leaf, remembered.
    #[inline(never)]
    fn host_va_miss(&self, gpa: u64) -> Option<usize> {
        let page = gpa & !0xfff;
        let c = &self.lookups[(page >> 12) as usize % LOOKUPS];
        let va = hw::mem::phys_to_va(self.host_page(page)?);
        c.set((page | self.lookup_gen << 1 | 1, va));
        Some(va)
    }

    /// The host page NPT01 maps for the guest page of `gpa` (a 4 KiB page,
    /// inside a 2 MiB leaf or not), if it maps one.
    pub(crate) fn host_page(&self, gpa: u64) -> Option<u64> {
        let page = gpa & !0xfff;
        let root = self.root.pa();
        let e = paging::leaf(&TablesRef { root, tables: &self.tables, seen: &self.seen }, root, page)?;
        Some(if e.large() { e.translate(page, paging::SIZE_2M) } else { e.addr() })
    }

    /// Reads guest memory at `gpa` through NPT01's page (no slot lookup, no
    /// user copy); false when the range leaves the page or NPT01 does not
    /// map it (callers then go through the slots).
    pub(crate) fn read(&self, gpa: u64, out: &mut [u8]) -> bool {
        let off = (gpa & 0xfff) as usize;
        if off + out.len() > 4096 {
            return false;
        }
        let Some(va) = self.host_va(gpa) else { return false };
        // SAFETY: NPT01 maps the page, so the VMM process maps it too (type
        // invariant) and it cannot be freed before an invalidation has
        // removed the leaf, which needs the MMU lock the caller holds for
        // `&self`; the range is inside the page.
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
        if self.lookup_gen < LOOKUP_GENS {
            self.lookup_gen += 1;
            return;
        }
        self.lookup_gen = 1;
        for c in &self.lookups {
            c.set((0, 0));
        }
    }

    /// Whether `gpa` is mapped (with write permission when `write`).
    pub(crate) fn is_mapped(&mut self, gpa: u64, write: bool) -> bool {
        let root = self.root.pa();
        paging::leaf(&self.mem(), root, gpa).is_some_and(|e| !write || e.writable())
    }

    /// Maps the page of `gpa` to host page `hpa` (writable or not), or,
    /// with `huge` (the 2 MiB-aligned host address of a huge page the
    /// process maps, which the slot covers whole with the same alignment),
    /// the whole 2 MiB around it with one entry when no 4 KiB mapping is
    /// there yet (as KVM maps at the host's page size). Called under the
    /// MMU lock after `Mmu::retry` said the page is current.
    pub(crate) fn map(&mut self, gpa: u64, hpa: u64, writable: bool, huge: Option<u64>) -> Mapped {
        let gpa = gpa & !0xfff;
        let flags = if writable { RW } else { 0 };
        let root = self.root.pa();
        if let Some(hpa2m) = huge {
            let base = gpa & !(paging::SIZE_2M - 1);
            match paging::pd_state(&self.mem(), root, base) {
                paging::PdState::Free => {
                    if paging::map_2m(&mut self.mem(), root, base, hpa2m, flags).is_ok() {
                        self.pages_2m += 1;
                        self.fills += 1;
                        return Mapped::Done;
                    }
                    return Mapped::NoTables;
                }
                paging::PdState::Large => {
                    // A 2 MiB leaf already (read-only, now wanted writable,
                    // or another vCPU's): replaced in place.
                    let old = paging::unmap_2m(&mut self.mem(), root, base);
                    self.forget_lookups();
                    if paging::map_2m(&mut self.mem(), root, base, hpa2m, flags).is_err() {
                        self.pages_2m -= 1;
                        return Mapped::Replaced;
                    }
                    return if old.page_base(paging::SIZE_2M) != hpa2m & !(paging::SIZE_2M - 1) { Mapped::Replaced } else { Mapped::Done };
                }
                paging::PdState::Table => {}
            }
        }
        match paging::map_4k(&mut self.mem(), root, gpa, hpa, flags) {
            Ok(old) if old.present() => {
                // An upgrade (read-only to writable) of the same page, or,
                // should the process have changed the page without an
                // invalidation, another page: the caller kicks the vCPUs.
                self.forget_lookups();
                if old.addr() != hpa {
                    Mapped::Replaced
                } else {
                    Mapped::Done
                }
            }
            Ok(_) => {
                self.pages_4k += 1;
                self.fills += 1;
                Mapped::Done
            }
            Err(paging::MapError::LargePage) => {
                // A 2 MiB leaf covers it (mapped by another vCPU meanwhile):
                // drop it, the fault comes back and maps again.
                let base = gpa & !(paging::SIZE_2M - 1);
                if paging::unmap_2m(&mut self.mem(), root, base).present() {
                    self.pages_2m -= 1;
                    self.unmaps += 1;
                }
                self.forget_lookups();
                Mapped::Replaced
            }
            Err(paging::MapError::NoMemory) => Mapped::NoTables,
        }
    }

    /// Takes write permission away from the page of `gpa` (dirty logging:
    /// `paging::write_protect`; a 2 MiB leaf over it goes whole). The
    /// caller runs `Vm::shootdown` after the MMU lock: until then a vCPU
    /// may still write through a cached translation, which is fine as the
    /// page is reported dirty by the same request.
    pub(crate) fn write_protect(&mut self, gpa: u64) {
        let root = self.root.pa();
        if paging::write_protect(&mut self.mem(), root, gpa) == paging::Protected::Large {
            self.pages_2m -= 1;
            self.unmaps += 1;
            self.forget_lookups();
        }
    }

    /// Removes every leaf mapping part of `[start, end)`; returns whether
    /// there was one (the caller then kicks the vCPUs before the pages may
    /// change: `Vm::shootdown`).
    pub(crate) fn unmap_range(&mut self, start: u64, end: u64) -> bool {
        let root = self.root.pa();
        let (mut small, mut large) = (0usize, 0usize);
        let mut t = Tables { root, tables: &mut self.tables, seen: &self.seen, cache: None };
        paging::unmap_range(&mut t, root, start, end, |_, e| if e.large() { large += 1 } else { small += 1 });
        self.pages_4k -= small;
        self.pages_2m -= large;
        self.unmaps += (small + large) as u64;
        if small + large != 0 {
            self.forget_lookups();
        }
        small + large != 0
    }
}

/// Shadow NPT02 of one vCPU: what L0 runs an L2 with when L1 enables nested
/// paging (APM 15.25): L2 physical → host physical, composed lazily, one
/// 4 KiB page per nested page fault, from L1's NPT12 and the VM's slots
/// (nsvm_core::nested::{walk_npt12, compose_leaf}). A cache: dropped whole
/// whenever it may be stale (`nsvm_core::nested::npt02_stale`), in
/// particular whenever the VM's memory generation moves (an invalidation of
/// the VMM's memory, a slot change): its leaves hold no page reference.
///
/// # Invariants
///
/// Every table reachable from `root` is `root` or one of `tables` (sorted
/// by address); every
/// leaf maps a page the VMM mapped for that L1 address when the leaf was
/// written with no invalidation of it running or run since its lookup
/// (checked after writing, the leaf removed otherwise), and the vCPU enters
/// L2 only after comparing the VM's memory generation with `key`'s in guest
/// mode (`vmrun::enter`): a later invalidation makes it drop the whole
/// table first.
pub(crate) struct ShadowNpt {
    root: KPages,
    tables: KVec<KPages>,
    /// Pages of `tables` recently walked through (`owns`), emptied by
    /// `flush` with them.
    seen: Seen,
    mapped: usize,
    /// The L2 pages mapped since the last flush, while few (`resync`).
    tracked: nsvm_core::nested::Npt02Tracked,
    /// What the translations were built for (nCR3, ASID, NPT01 generation).
    pub(crate) key: Option<nsvm_core::nested::Npt02Key>,
}

impl ShadowNpt {
    /// An empty NPT02.
    pub(crate) fn new() -> Result<Self> {
        Ok(Self { root: KPages::page()?, tables: KVec::new(), seen: seen_empty(), mapped: 0, tracked: Default::default(), key: None })
    }

    /// nCR3 for vmcb02.
    pub(crate) fn root_pa(&self) -> u64 {
        self.root.pa()
    }

    /// Pages mapped now.
    pub(crate) fn mapped_pages(&self) -> usize {
        self.mapped
    }

    /// Drops every translation (and the tables behind them).
    pub(crate) fn flush(&mut self) {
        self.root.fill(0);
        self.seen = seen_empty();
        self.tables.clear();
        self.mapped = 0;
        self.tracked.clear();
    }

    /// L1 asked for a flush of L2's translations (vmcb12's TLB_CONTROL):
    /// keeps the leaves that `keep` (given the L2 page and its leaf) finds
    /// current and removes the others; returns how many were removed. The
    /// caller flushes L2's ASID, as L1 asked. `None` when more pages were
    /// mapped than followed (`Npt02Tracked::MAX`): the caller drops NPT02
    /// instead.
    pub(crate) fn resync(&mut self, mut keep: impl FnMut(u64, Pte) -> bool) -> Option<usize> {
        if self.tracked.full() {
            return None;
        }
        let root = self.root.pa();
        let was = self.tracked;
        self.tracked.clear();
        let mut removed = 0;
        for &gpa in was.pages() {
            // Gone already (a fill an invalidation overtook, `unmap`).
            let Some(e) = paging::leaf(&self.mem(), root, gpa) else { continue };
            if keep(gpa, e) {
                self.tracked.record(gpa);
            } else if paging::unmap_4k(&mut self.mem(), root, gpa).present() {
                self.mapped -= 1;
                removed += 1;
            }
        }
        Some(removed)
    }

    fn mem(&mut self) -> Tables<'_> {
        Tables { root: self.root.pa(), tables: &mut self.tables, seen: &self.seen, cache: None }
    }

    /// Maps the run of up to 8 L2 physical pages from `gpa` (in one 2 MiB
    /// region) with one table walk (`paging::map_4k_run`): page `i` to
    /// host page `pages[i]` with the composed leaf flags of `leaves[i]`,
    /// where not mapped yet, and page `force` (the faulting one) in any
    /// case. Returns the mask of pages mapped. Flushes first when more than
    /// `limit` pages are mapped (as `map`).
    pub(crate) fn map_run(&mut self, gpa: u64, pages: &[Option<u64>; 8], leaves: &[Pte; 8], force: usize, limit: usize) -> Result<u32> {
        if self.mapped + 8 >= limit {
            self.flush();
        }
        let mut run = [None; 8];
        for (i, p) in pages.iter().enumerate() {
            if let Some(pa) = p {
                run[i] = Some((*pa, leaves[i].0 & (RW | nsvm_core::x86::pte::NX)));
            }
        }
        let root = self.root.pa();
        let written = paging::map_4k_run(&mut self.mem(), root, gpa & !0xfff, &run, force).map_err(|_| ENOMEM)?;
        self.mapped += written.count_ones() as usize;
        for i in (0..8u64).filter(|i| written & (1 << i) != 0) {
            self.tracked.record((gpa & !0xfff) + (i << 12));
        }
        Ok(written)
    }

    /// Maps L2 physical page `gpa` to host page `hpa` with the composed
    /// leaf flags of `leaf` (address bits ignored). When more than `limit`
    /// pages are mapped, everything is dropped first: a malicious L1 can
    /// alias one page at any number of L2 addresses, and this is only a
    /// cache.
    pub(crate) fn map(&mut self, gpa: u64, hpa: u64, leaf: Pte, limit: usize) -> Result {
        if self.mapped >= limit {
            self.flush();
        }
        let root = self.root.pa();
        let flags = leaf.0 & (RW | nsvm_core::x86::pte::NX);
        let old = paging::map_4k(&mut self.mem(), root, gpa & !0xfff, hpa, flags).map_err(|_| ENOMEM)?;
        if !old.present() {
            self.mapped += 1;
            self.tracked.record(gpa);
        }
        Ok(())
    }

    /// Removes the 4 KiB leaves of the pages of `mask` from `gpa` (a fill
    /// that an invalidation overtook).
    pub(crate) fn unmap(&mut self, gpa: u64, mask: u32) {
        let root = self.root.pa();
        for i in 0..32u64 {
            if mask & (1 << i) != 0 && paging::unmap_4k(&mut self.mem(), root, (gpa & !0xfff) + (i << 12)).present() {
                self.mapped -= 1;
            }
        }
    }
}
