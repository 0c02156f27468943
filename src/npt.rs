// SPDX-License-Identifier: GPL-2.0
//! NPT01: the nested page table through which L0 backs a VM's guest-physical
//! memory with pages of the VMM process (APM vol. 2 15.25). Built lazily, one
//! 4 KiB page per nested page fault; the table format and walks are in
//! `nsvm_core::paging`.

use kernel::prelude::*;

use nsvm_core::memslot::Slot;
use nsvm_core::paging::{self, Access, Mode, TableMem, NX, RW};

use crate::hw::{self, KPages, PinnedPage};

/// A VM's NPT01 and the pages it maps.
///
/// # Invariants
///
/// Every table reachable from `root` is `root` or one of `tables`; every leaf
/// maps exactly one page of `pinned`, which stays pinned while mapped.
pub(crate) struct Npt {
    root: KPages,
    tables: KVec<KPages>,
    pinned: KVec<(u64, PinnedPage)>,
    /// Bumped whenever a translation is removed or weakened: vCPUs flush
    /// their TLB (TLB_CONTROL) before the next VMRUN when it changed.
    pub(crate) generation: u64,
    /// Pages mapped on faults since creation.
    pub(crate) fills: u64,
    /// Pages unmapped since creation.
    pub(crate) unmaps: u64,
}

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

impl TableMem for Tables<'_> {
    fn read(&self, pa: u64) -> Option<u64> {
        if !self.owns(pa) || pa % 8 != 0 {
            return None;
        }
        // SAFETY: `pa` is an aligned entry of a live table page of ours.
        Some(unsafe { hw::table_read(pa) })
    }
    fn write(&mut self, pa: u64, v: u64) {
        if self.owns(pa) && pa % 8 == 0 {
            // SAFETY: as in `read`.
            unsafe { hw::table_write(pa, v) }
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
        Ok(Self { root: KPages::page()?, tables: KVec::new(), pinned: KVec::new(), generation: 0, fills: 0, unmaps: 0 })
    }

    /// nCR3 for the VMCB.
    pub(crate) fn root_pa(&self) -> u64 {
        self.root.pa()
    }

    /// Guest pages mapped now.
    pub(crate) fn mapped_pages(&self) -> usize {
        self.pinned.len()
    }

    /// Page-table pages now (root included).
    pub(crate) fn table_pages(&self) -> usize {
        self.tables.len() + 1
    }

    fn mem(&mut self) -> Tables<'_> {
        Tables { root: self.root.pa(), tables: &mut self.tables }
    }

    /// Whether `gpa` is mapped (with write permission when `write`).
    pub(crate) fn is_mapped(&mut self, gpa: u64, write: bool) -> bool {
        let root = self.root.pa();
        let acc = Access { write, user: true, fetch: false };
        paging::walk_guest(&self.mem(), Mode::Long4, root, gpa, acc, true, true).is_ok()
    }

    /// Maps the page of `gpa` from `slot` (pinning the VMM's page). Read-only
    /// slots map read-only; writes to them exit to userspace as MMIO.
    pub(crate) fn map(&mut self, slot: &Slot, gpa: u64) -> Result {
        let gpa = gpa & !0xfff;
        if self.is_mapped(gpa, !slot.readonly()) {
            return Ok(());
        }
        let pin = PinnedPage::pin(slot.uaddr_of(gpa), !slot.readonly())?;
        let flags = if slot.readonly() { 0 } else { RW };
        let root = self.root.pa();
        let hpa = pin.pa;
        self.pinned.push((gpa, pin), GFP_KERNEL_ACCOUNT)?;
        match paging::map_4k(&mut self.mem(), root, gpa, hpa, flags & !NX) {
            Ok(old) if old & paging::P != 0 => {
                // Replaced a mapping (e.g. upgrade): drop the previous pin.
                let old_pa = old & paging::ADDR_MASK;
                let last = self.pinned.len() - 1;
                let mut i = 0;
                while i < last {
                    if self.pinned[i].0 == gpa && self.pinned[i].1.pa == old_pa {
                        let _ = self.pinned.remove(i);
                        break;
                    }
                    i += 1;
                }
                self.generation += 1;
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

    /// Unmaps and unpins everything in `[start, end)`.
    pub(crate) fn unmap_range(&mut self, start: u64, end: u64) {
        let root = self.root.pa();
        let mut removed = false;
        let mut unmaps = 0;
        let mut pinned = core::mem::take(&mut self.pinned);
        pinned.retain(|(gpa, _)| {
            if *gpa >= start && *gpa < end {
                paging::unmap_4k(&mut Tables { root, tables: &mut self.tables }, root, *gpa);
                removed = true;
                unmaps += 1;
                false
            } else {
                true
            }
        });
        self.pinned = pinned;
        self.unmaps += unmaps;
        if removed {
            self.generation += 1;
        }
    }
}
