// SPDX-License-Identifier: GPL-2.0
//! x86-64 page tables, used twice: nested page tables that L0 builds (NPT01,
//! APM vol. 2 15.25: same format as long-mode tables, all accesses "user"),
//! and walks of the guest's own tables when L0 must translate a guest
//! linear address (instruction fetch for decoding, string I/O) — APM vol. 2
//! 5.3 (long mode), 5.2 (PAE), 5.1.3 (legacy 32-bit).
//!
//! Table memory is reached only through [`TableMem`], so the same code runs in
//! the module (real pages) and in host tests (a map). Entries are
//! [`Pte`] values with the bits of [`crate::x86::pte`].

use crate::msr::efer;
use crate::x86::pte::{ADDR_MASK, NX, P, PS, RW, US};
use crate::x86::{cr0, cr4, Pte};

/// Access to page-table memory by physical address.
pub trait TableMem {
    /// Reads the 8-byte entry at physical address `pa` (8-byte aligned).
    fn read(&self, pa: u64) -> Option<u64>;
    /// Writes the 8-byte entry at `pa`; only called on tables from [`Self::alloc_table`].
    fn write(&mut self, pa: u64, v: u64);
    /// Allocates a zeroed table page; returns its physical address.
    fn alloc_table(&mut self) -> Option<u64>;
}

/// Index of `addr` in the table of `level` (4 = PML4 .. 1 = PT).
pub const fn index(addr: u64, level: u32) -> u64 {
    (addr >> (12 + 9 * (level - 1))) & 0x1ff
}

/// Failure to build an NPT mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// Out of memory for a table page.
    NoMemory,
    /// A large page is already mapped over the address.
    LargePage,
}

/// Maps the 4 KiB page at guest physical `gpa` to host physical `hpa` in the
/// 4-level NPT rooted at `root`, with `flags` (P is implied; NPT entries are
/// user entries, APM 15.25.5: "all nested page table accesses are user").
/// Intermediate tables get P|RW|US so the leaf alone decides permissions.
/// Returns the previous leaf entry (0 when there was none).
pub fn map_4k(mem: &mut impl TableMem, root: u64, gpa: u64, hpa: u64, flags: u64) -> Result<Pte, MapError> {
    let ea = table_at(mem, root, gpa, 1)? + 8 * index(gpa, 1);
    let old = Pte(mem.read(ea).ok_or(MapError::NoMemory)?);
    mem.write(ea, Pte::new(hpa, flags | P | US).0);
    Ok(old)
}

/// Maps a run of consecutive 4 KiB pages from `gpa` with one walk to their
/// page table: page `i` (at `gpa + i * 4 KiB`) gets `(hpa & ADDR_MASK) |
/// flags | P | US` from `pages[i] = Some((hpa, flags))`, but only where its
/// entry is not present, except page `force`, written whatever its entry
/// holds (as `map_4k` does). The run must stay in `gpa`'s page table (2 MiB
/// region): pages beyond it are not mapped. Returns the bitmask of the
/// pages whose entries were written. Equivalent to `map_4k` for `force` and
/// for each other given page whose `leaf` is `None` (unit-tested).
pub fn map_4k_run(mem: &mut impl TableMem, root: u64, gpa: u64, pages: &[Option<(u64, u64)>], force: usize) -> Result<u32, MapError> {
    let pt = table_at(mem, root, gpa, 1)?;
    let first = index(gpa, 1) as usize;
    let mut written = 0;
    for (i, p) in pages.iter().enumerate().take(32) {
        let Some((hpa, flags)) = *p else { continue };
        if first + i >= 512 {
            break;
        }
        let ea = pt + 8 * (first + i) as u64;
        let old = Pte(mem.read(ea).ok_or(MapError::NoMemory)?);
        if i != force && old.present() {
            continue;
        }
        mem.write(ea, Pte::new(hpa, flags | P | US).0);
        written |= 1 << i;
    }
    Ok(written)
}

/// The table at `level` (1 = PT, 2 = PD) on the way to `gpa`, creating the
/// missing tables above it with P|RW|US (the leaf alone decides
/// permissions); `LargePage` when a large page is in the way.
fn table_at(mem: &mut impl TableMem, root: u64, gpa: u64, level: u32) -> Result<u64, MapError> {
    let mut table = root;
    for l in (level + 1..=4).rev() {
        let ea = table + 8 * index(gpa, l);
        let e = Pte(mem.read(ea).ok_or(MapError::NoMemory)?);
        table = if !e.present() {
            let t = mem.alloc_table().ok_or(MapError::NoMemory)?;
            mem.write(ea, t | P | RW | US);
            t
        } else if e.large() {
            return Err(MapError::LargePage);
        } else {
            e.addr()
        };
    }
    Ok(table)
}

/// The existing table at `level` on the way to `gpa`, if every table above
/// it is present (no allocation).
fn find_table(mem: &impl TableMem, root: u64, gpa: u64, level: u32) -> Option<u64> {
    let mut table = root;
    for l in (level + 1..=4).rev() {
        match mem.read(table + 8 * index(gpa, l)).map(Pte) {
            Some(e) if e.present() && !e.large() => table = e.addr(),
            _ => return None,
        }
    }
    Some(table)
}

/// Page size of a large NPT mapping at the PD level.
pub const SIZE_2M: u64 = 1 << 21;

/// What the page-directory entry covering `gpa` holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PdState {
    /// No PD (or PDPT) yet, or an empty PD entry: a 2 MiB page can go there.
    Free,
    /// A page table of 4 KiB mappings.
    Table,
    /// A 2 MiB mapping.
    Large,
}

/// The state of the PD entry for `gpa` in the NPT at `root`.
pub fn pd_state(mem: &impl TableMem, root: u64, gpa: u64) -> PdState {
    let Some(pd) = find_table(mem, root, gpa, 2) else { return PdState::Free };
    match mem.read(pd + 8 * index(gpa, 2)).map(Pte) {
        Some(e) if e.present() && e.large() => PdState::Large,
        Some(e) if e.present() => PdState::Table,
        _ => PdState::Free,
    }
}

/// The present leaf entry (a 4 KiB PTE or a 2 MiB PDE with PS) that maps
/// `gpa` in a tree built by this module (intermediate entries always grant
/// read, write and user access, so the leaf decides the permissions); `None`
/// when `gpa` is not mapped. Cheaper than `walk_guest` on the fault path.
pub fn leaf(mem: &impl TableMem, root: u64, gpa: u64) -> Option<Pte> {
    let pd = find_table(mem, root, gpa, 2)?;
    let pde = Pte(mem.read(pd + 8 * index(gpa, 2))?);
    if !pde.present() {
        return None;
    }
    if pde.large() {
        return Some(pde);
    }
    let pte = Pte(mem.read(pde.addr() + 8 * index(gpa, 1))?);
    pte.present().then_some(pte)
}

/// Maps the 2 MiB page at `gpa` (2 MiB aligned) to `hpa` (2 MiB aligned)
/// with a PD entry with PS set (APM 15.25.5: nested page tables support the
/// same page sizes as long-mode tables). Fails with `LargePage` when a page
/// table of 4 KiB mappings is already there.
pub fn map_2m(mem: &mut impl TableMem, root: u64, gpa: u64, hpa: u64, flags: u64) -> Result<(), MapError> {
    let ea = table_at(mem, root, gpa, 2)? + 8 * index(gpa, 2);
    let e = Pte(mem.read(ea).ok_or(MapError::NoMemory)?);
    if e.present() {
        return Err(MapError::LargePage);
    }
    mem.write(ea, Pte::new(hpa & !(SIZE_2M - 1), flags | P | US | PS).0);
    Ok(())
}

/// Removes the 2 MiB mapping of `gpa`; returns the old PD entry (0 when none).
pub fn unmap_2m(mem: &mut impl TableMem, root: u64, gpa: u64) -> Pte {
    let Some(pd) = find_table(mem, root, gpa, 2) else { return Pte(0) };
    let ea = pd + 8 * index(gpa, 2);
    let old = Pte(mem.read(ea).unwrap_or(0));
    if old.present() && old.large() {
        mem.write(ea, 0);
        old
    } else {
        Pte(0)
    }
}

/// Removes the 4 KiB mapping of `gpa`; returns the old leaf (0 when none).
/// Table pages stay (freed with the whole tree).
pub fn unmap_4k(mem: &mut impl TableMem, root: u64, gpa: u64) -> Pte {
    let Some(pt) = find_table(mem, root, gpa, 1) else { return Pte(0) };
    let ea = pt + 8 * index(gpa, 1);
    let old = Pte(mem.read(ea).unwrap_or(0));
    if old.present() {
        mem.write(ea, 0);
    }
    old
}

/// What [`write_protect`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protected {
    /// Nothing was writable there (no leaf, or a read-only one).
    No,
    /// A writable 4 KiB leaf lost RW.
    Page,
    /// A writable 2 MiB leaf covered the page: it was removed whole (its
    /// other pages fault back in, 4 KiB at a time while logging).
    Large,
}

/// Takes write permission away from the page of `gpa` (dirty logging): a
/// writable 4 KiB leaf loses RW (APM 15.25.6: a write then takes a nested
/// page fault with EXITINFO1.RW and P set), a writable 2 MiB leaf over it
/// is removed.
pub fn write_protect(mem: &mut impl TableMem, root: u64, gpa: u64) -> Protected {
    let Some(pd) = find_table(mem, root, gpa, 2) else { return Protected::No };
    let pde_ea = pd + 8 * index(gpa, 2);
    let Some(pde) = mem.read(pde_ea).map(Pte) else { return Protected::No };
    if !pde.present() {
        return Protected::No;
    }
    if pde.large() {
        if !pde.writable() {
            return Protected::No;
        }
        mem.write(pde_ea, 0);
        return Protected::Large;
    }
    let ea = pde.addr() + 8 * index(gpa, 1);
    let Some(pte) = mem.read(ea).map(Pte) else { return Protected::No };
    if !pte.present() || !pte.writable() {
        return Protected::No;
    }
    mem.write(ea, pte.0 & !RW);
    Protected::Page
}

/// Removes every leaf (4 KiB PTE or 2 MiB PDE) of the 4-level NPT at `root`
/// that maps any part of `[start, end)` — a 2 MiB leaf that only overlaps
/// the range goes whole — calling `f(gpa, old leaf)` for each. Absent
/// tables are skipped whole, so the cost follows what is mapped, not the
/// size of the range. Table pages stay (freed with the whole tree).
pub fn unmap_range(mem: &mut impl TableMem, root: u64, start: u64, end: u64, mut f: impl FnMut(u64, Pte)) {
    fn level(mem: &mut impl TableMem, table: u64, l: u32, base: u64, start: u64, end: u64, f: &mut impl FnMut(u64, Pte)) {
        let span = 1u64 << (12 + 9 * (l - 1));
        for i in 0..512u64 {
            let lo = base + i * span;
            let hi = lo + span;
            if hi <= start || lo >= end {
                continue;
            }
            let ea = table + 8 * i;
            let Some(e) = mem.read(ea).map(Pte) else { continue };
            if !e.present() {
                continue;
            }
            if l == 1 || (l == 2 && e.large()) {
                mem.write(ea, 0);
                f(lo, e);
            } else if !e.large() {
                level(mem, e.addr(), l - 1, lo, start, end, f);
            }
        }
    }
    let end = end.min(1 << 48);
    if start < end {
        level(mem, root, 4, 0, start, end, &mut f);
    }
}

/// Paging mode of a guest, from its CR0/CR4/EFER.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// CR0.PG = 0: linear = physical.
    None,
    /// 32-bit paging (CR4.PAE = 0), with 4 MiB pages when CR4.PSE.
    Legacy {
        /// CR4.PSE: 4 MiB pages allowed.
        pse: bool,
    },
    /// PAE paging.
    Pae,
    /// 4-level long-mode paging.
    Long4,
    /// 5-level paging (CR4.LA57).
    Long5,
}

impl Mode {
    /// Derives the mode (APM vol. 2 5.1).
    pub const fn from_regs(cr0_v: u64, cr4_v: u64, efer_v: u64) -> Self {
        if cr0_v & cr0::PG == 0 {
            Mode::None
        } else if efer_v & efer::LMA != 0 {
            if cr4_v & cr4::LA57 != 0 {
                Mode::Long5
            } else {
                Mode::Long4
            }
        } else if cr4_v & cr4::PAE != 0 {
            Mode::Pae
        } else {
            Mode::Legacy { pse: cr4_v & cr4::PSE != 0 }
        }
    }
}

/// Kind of access being translated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// Write access.
    pub write: bool,
    /// User-mode (CPL 3) access.
    pub user: bool,
    /// Instruction fetch.
    pub fetch: bool,
}

/// A failed guest walk, with the #PF error code the guest should see
/// (APM vol. 2 8.4.2: P, W/R, U/S, RSV, I/D).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageFault {
    /// #PF error code.
    pub error_code: u32,
}

/// What decides a guest walk besides the table entries it reads: the mode,
/// CR3, the 4 KiB page of the linear address, the access, CR0.WP and
/// EFER.NXE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalkKey {
    /// Paging mode.
    pub mode: Mode,
    /// CR3.
    pub cr3: u64,
    /// The linear address's page (`la & !0xfff`).
    pub page: u64,
    /// The access.
    pub access: Access,
    /// CR0.WP.
    pub wp: bool,
    /// EFER.NXE.
    pub nxe: bool,
}

/// Most entries a walk reads (5-level paging).
const MEMO_READS: usize = 5;

/// The last successful guest walk for one key, with every table entry it
/// read (address and value). `walk_guest` is a pure function of the key and
/// of those values (each address read depends only on the key and the values
/// before it), so when re-reading the same addresses gives the same values
/// the result is the same: `WalkMemo::walk` then skips the walk logic, never
/// its memory reads (so it is exact even when the guest edits its tables
/// or changes CR3 without telling anyone). Used for the instruction fetches
/// of the emulated NRIPS and of L1's VMRUN, which repeat at the same RIP.
#[derive(Clone, Copy, Debug, Default)]
pub struct WalkMemo {
    key: Option<WalkKey>,
    reads: [(u64, u64); MEMO_READS],
    n: usize,
    gpa_page: u64,
}

/// A `TableMem` that records what it reads (for `WalkMemo`).
struct Recorder<'m, M: TableMem> {
    mem: &'m M,
    reads: core::cell::Cell<[(u64, u64); MEMO_READS]>,
    n: core::cell::Cell<usize>,
}

impl<M: TableMem> TableMem for Recorder<'_, M> {
    fn read(&self, pa: u64) -> Option<u64> {
        let v = self.mem.read(pa)?;
        let n = self.n.get();
        if n < MEMO_READS {
            let mut r = self.reads.get();
            r[n] = (pa, v);
            self.reads.set(r);
        }
        self.n.set(n + 1);
        Some(v)
    }
    fn write(&mut self, _pa: u64, _v: u64) {}
    fn alloc_table(&mut self) -> Option<u64> {
        None
    }
}

impl WalkMemo {
    /// `walk_guest(mem, key.mode, key.cr3, la, key.access, key.wp, key.nxe)`
    /// for `la` in `key.page`: from the memo when the key is the last one
    /// and every entry it read still holds the same value, by walking (and
    /// remembering a success) otherwise.
    pub fn walk(&mut self, mem: &impl TableMem, key: WalkKey, la: u64) -> Result<u64, PageFault> {
        if self.key == Some(key) && self.reads[..self.n].iter().all(|&(a, v)| mem.read(a) == Some(v)) {
            return Ok(self.gpa_page | (la & 0xfff));
        }
        self.key = None;
        let rec = Recorder { mem, reads: core::cell::Cell::new([(0, 0); MEMO_READS]), n: core::cell::Cell::new(0) };
        let r = walk_guest(&rec, key.mode, key.cr3, la, key.access, key.wp, key.nxe);
        if let Ok(gpa) = r {
            if rec.n.get() <= MEMO_READS && la & !0xfff == key.page {
                *self = WalkMemo { key: Some(key), reads: rec.reads.get(), n: rec.n.get(), gpa_page: gpa & !0xfff };
            }
        }
        r
    }
}

/// #PF error code bits.
pub mod pf {
    /// The fault was a protection violation (page present).
    pub const P: u32 = 1 << 0;
    /// Write access.
    pub const W: u32 = 1 << 1;
    /// User access.
    pub const U: u32 = 1 << 2;
    /// Reserved bit set in a paging structure.
    pub const RSV: u32 = 1 << 3;
    /// Instruction fetch.
    pub const ID: u32 = 1 << 4;
}

/// Translates the guest linear address `la` to a guest physical address by
/// walking the guest's tables at `cr3` in `mode`, checking present,
/// write (honouring CR0.WP for supervisor writes), user and NX (when
/// `nxe`). Accessed/dirty bits are not updated (L0 only reads the tables).
/// `mem.read` receives guest physical addresses.
pub fn walk_guest(
    mem: &impl TableMem,
    mode: Mode,
    cr3: u64,
    la: u64,
    acc: Access,
    wp: bool,
    nxe: bool,
) -> Result<u64, PageFault> {
    let err = |extra: u32| {
        let mut e = extra;
        if acc.write {
            e |= pf::W;
        }
        if acc.user {
            e |= pf::U;
        }
        if acc.fetch && (nxe || matches!(mode, Mode::Long4 | Mode::Long5 | Mode::Pae)) {
            e |= pf::ID;
        }
        PageFault { error_code: e }
    };
    let read = |pa: u64| mem.read(pa).ok_or(err(0));
    match mode {
        Mode::None => Ok(la & 0xffff_ffff),
        Mode::Legacy { pse } => {
            let la = la & 0xffff_ffff;
            let read32 = |pa: u64| -> Result<u64, PageFault> {
                // 4-byte entries: read the aligned quadword, pick the half.
                let q = read(pa & !7)?;
                Ok(if pa & 4 != 0 { q >> 32 } else { q & 0xffff_ffff })
            };
            // 32-bit entries (zero-extended): bits 31:12 are the address.
            let pde = Pte(read32((cr3 & 0xffff_f000) + 4 * ((la >> 22) & 0x3ff))?);
            if !pde.present() {
                return Err(err(0));
            }
            let mut rw = pde.writable();
            let mut us = pde.user();
            let pa = if pse && pde.large() {
                // 4 MiB page: bits 31:22 from the PDE (PSE-36 high bits ignored).
                pde.translate(la, 1 << 22)
            } else {
                let pte = Pte(read32(pde.addr() + 4 * ((la >> 12) & 0x3ff))?);
                if !pte.present() {
                    return Err(err(0));
                }
                rw &= pte.writable();
                us &= pte.user();
                pte.translate(la, 1 << 12)
            };
            check_perms(acc, rw, us, false, wp).map_err(|_| err(pf::P))?;
            Ok(pa)
        }
        Mode::Pae | Mode::Long4 | Mode::Long5 => {
            let (mut table, top) = match mode {
                Mode::Pae => {
                    let pdpte = Pte(read((cr3 & 0xffff_ffe0) + 8 * ((la >> 30) & 3))?);
                    if !pdpte.present() {
                        return Err(err(0));
                    }
                    // PDPTE reserved bits (APM 5.3.3 PAE): 2:1, 8:5, 63.
                    if pdpte.0 & (0x1e6 | NX) != 0 {
                        return Err(err(pf::P | pf::RSV));
                    }
                    (pdpte.addr(), 2)
                }
                Mode::Long4 => (cr3 & ADDR_MASK, 4),
                _ => (cr3 & ADDR_MASK, 5),
            };
            let (mut rw, mut us, mut nx) = (true, true, false);
            let mut level = top;
            loop {
                let e = Pte(read(table + 8 * index(la, level))?);
                if !e.present() {
                    return Err(err(0));
                }
                if !nxe && e.nx() {
                    return Err(err(pf::P | pf::RSV));
                }
                rw &= e.writable();
                us &= e.user();
                nx |= e.nx();
                let large = (2..=3).contains(&level) && e.large();
                if level == 1 || large {
                    let size_bits = 12 + 9 * (level - 1);
                    check_perms(acc, rw, us, nx && nxe, wp).map_err(|_| err(pf::P))?;
                    return Ok(e.translate(la, 1u64 << size_bits));
                }
                table = e.addr();
                level -= 1;
            }
        }
    }
}

fn check_perms(acc: Access, rw: bool, us: bool, nx: bool, wp: bool) -> Result<(), ()> {
    if acc.user && !us {
        return Err(());
    }
    if acc.write && !rw && (acc.user || wp) {
        return Err(());
    }
    if acc.fetch && nx {
        return Err(());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::x86::pte::{ADDR_MASK, NX, P, PS, RW, US};
    use std::collections::HashMap;

    #[derive(Default)]
    struct Mem {
        q: HashMap<u64, u64>,
        next: u64,
        allocs: usize,
        limit: Option<usize>,
    }
    impl TableMem for Mem {
        fn read(&self, pa: u64) -> Option<u64> {
            Some(*self.q.get(&pa).unwrap_or(&0))
        }
        fn write(&mut self, pa: u64, v: u64) {
            self.q.insert(pa, v);
        }
        fn alloc_table(&mut self) -> Option<u64> {
            if self.limit.is_some_and(|l| self.allocs >= l) {
                return None;
            }
            self.allocs += 1;
            self.next += 0x1000;
            Some(0x100_0000 + self.next)
        }
    }

    const R: Access = Access { write: false, user: false, fetch: false };
    const W: Access = Access { write: true, user: false, fetch: false };
    const X: Access = Access { write: false, user: false, fetch: true };
    const UR: Access = Access { write: false, user: true, fetch: false };

    #[test]
    fn unmap_range_removes_overlapping_leaves_only() {
        let mut m = Mem::default();
        let root = 0x1000;
        for g in [0x0u64, 0x1000, 0x2000, 0x3f_f000, 0x40_0000, 0x8000_0000] {
            map_4k(&mut m, root, g, 0x5000_0000 + g, RW).unwrap();
        }
        map_2m(&mut m, root, 0x60_0000, 0x4000_0000, RW).unwrap();
        let mut seen = std::vec::Vec::new();
        // [0x1000, 0x60_1000): 4 KiB pages from 0x1000 up to 0x40_0000, and
        // the 2 MiB page it overlaps by one page.
        unmap_range(&mut m, root, 0x1000, 0x60_1000, |g, e| seen.push((g, e.large())));
        seen.sort();
        assert_eq!(seen, [(0x1000, false), (0x2000, false), (0x3f_f000, false), (0x40_0000, false), (0x60_0000, true)]);
        assert!(leaf(&m, root, 0).is_some());
        assert!(leaf(&m, root, 0x8000_0000).is_some());
        for g in [0x1000u64, 0x2000, 0x3f_f000, 0x40_0000, 0x60_0000, 0x7f_f000] {
            assert!(leaf(&m, root, g).is_none(), "{g:#x}");
        }
        // Everything: the rest goes, twice is harmless.
        let mut n = 0;
        unmap_range(&mut m, root, 0, u64::MAX, |_, _| n += 1);
        unmap_range(&mut m, root, 0, u64::MAX, |_, _| n += 1);
        assert_eq!(n, 2);
        assert!(leaf(&m, root, 0).is_none());
    }

    #[test]
    fn write_protect_pages_and_large_leaves() {
        let mut m = Mem::default();
        let root = 0x1000;
        map_4k(&mut m, root, 0x1000, 0x5000_1000, RW).unwrap();
        map_4k(&mut m, root, 0x2000, 0x5000_2000, 0).unwrap();
        map_2m(&mut m, root, 0x60_0000, 0x4000_0000, RW).unwrap();
        assert_eq!(write_protect(&mut m, root, 0x1000), Protected::Page);
        let e = leaf(&m, root, 0x1000).unwrap();
        assert!(e.present() && !e.writable() && e.addr() == 0x5000_1000);
        assert_eq!(write_protect(&mut m, root, 0x1000), Protected::No);
        assert_eq!(write_protect(&mut m, root, 0x2000), Protected::No);
        assert_eq!(write_protect(&mut m, root, 0x3000), Protected::No);
        assert_eq!(write_protect(&mut m, root, 0x8000_0000), Protected::No);
        assert_eq!(write_protect(&mut m, root, 0x61_2000), Protected::Large);
        assert!(leaf(&m, root, 0x60_0000).is_none());
        // A write to the protected page faults; a read does not.
        let w = walk_nested_check(&m, root, 0x1000);
        assert_eq!(w, (true, false));
    }

    /// (readable, writable) of `gpa` per the leaf.
    fn walk_nested_check(m: &Mem, root: u64, gpa: u64) -> (bool, bool) {
        leaf(m, root, gpa).map_or((false, false), |e| (e.present(), e.writable()))
    }

    #[test]
    fn walk_memo_is_exact() {
        // A 4-level guest table: 0x40_1000 -> 0x9000 (4 KiB), 0x60_0000 2 MiB -> 0x80_0000.
        let mut m = Mem::default();
        m.write(0x1000, 0x2000 | P | RW | US);
        m.write(0x2000, 0x3000 | P | RW | US);
        m.write(0x3000 + 8 * 2, 0x4000 | P | RW | US);
        m.write(0x3000 + 8 * 3, 0x80_0000 | P | RW | US | PS);
        m.write(0x4000 + 8, 0x9000 | P | RW | US);
        let key = |la: u64, access| WalkKey { mode: Mode::Long4, cr3: 0x1000, page: la & !0xfff, access, wp: true, nxe: true };
        let mut memo = WalkMemo::default();
        for la in [0x40_1234u64, 0x40_1ff0, 0x60_5678, 0x40_1000] {
            for acc in [R, W, X, UR] {
                let want = walk_guest(&m, Mode::Long4, 0x1000, la, acc, true, true);
                // First (walks) and second (from the memo) give the walk's result.
                assert_eq!(memo.walk(&m, key(la, acc), la), want);
                assert_eq!(memo.walk(&m, key(la, acc), la), want);
                assert_eq!(memo.walk(&m, key(la, acc), la | 0xabc), walk_guest(&m, Mode::Long4, 0x1000, la | 0xabc, acc, true, true));
            }
        }
        // Any entry it read changes: the memo sees it.
        assert_eq!(memo.walk(&m, key(0x40_1000, R), 0x40_1000), Ok(0x9000));
        m.write(0x4000 + 8, 0xa000 | P | RW | US);
        assert_eq!(memo.walk(&m, key(0x40_1000, R), 0x40_1000), Ok(0xa000));
        m.write(0x3000 + 8 * 2, 0x5000 | P | RW | US); // PT moved (empty): not present
        assert!(memo.walk(&m, key(0x40_1000, R), 0x40_1000).is_err());
        m.write(0x3000 + 8 * 2, 0x4000 | P | RW | US);
        assert_eq!(memo.walk(&m, key(0x40_1000, R), 0x40_1000), Ok(0xa000));
        m.write(0x1000, 0x2000 | P | US); // read-only PML4E: a write now faults
        assert!(memo.walk(&m, key(0x40_1000, W), 0x40_1000).is_err());
        assert_eq!(memo.walk(&m, key(0x40_1000, R), 0x40_1000), Ok(0xa000));
        // Another CR3 or page is another key.
        let other = WalkKey { cr3: 0x7000, ..key(0x40_1000, R) };
        assert_eq!(memo.walk(&m, other, 0x40_1000), walk_guest(&m, Mode::Long4, 0x7000, 0x40_1000, R, true, true));
        assert_eq!(memo.walk(&m, key(0x40_1000, R), 0x40_1000), Ok(0xa000));
    }

    #[test]
    fn map_4k_run_equals_map_4k_page_by_page() {
        // Every mix of already-mapped neighbours, each page given or not,
        // and each forced page: the tree and the written mask are what
        // map_4k page by page produces (for the forced page always, for the
        // others only when unmapped).
        let base = 0x4020_8000u64;
        for premapped in [0u32, 0b1010_0101, 0xff, 0b0100_0000] {
            for given in [0xffu32, 0b0111_1110, 0b1000_0001] {
                for force in 0..8usize {
                    let (mut a, mut b) = (Mem::default(), Mem::default());
                    let (ra, rb) = (a.alloc_table().unwrap(), b.alloc_table().unwrap());
                    for i in 0..8u64 {
                        if premapped & (1 << i) != 0 {
                            map_4k(&mut a, ra, base + (i << 12), 0x9000_0000 + (i << 12), 0).unwrap();
                            map_4k(&mut b, rb, base + (i << 12), 0x9000_0000 + (i << 12), 0).unwrap();
                        }
                    }
                    let pages: Vec<Option<(u64, u64)>> =
                        (0..8u64).map(|i| (given & (1 << i) != 0).then_some((0x7000_0000 + (i << 12), RW | NX))).collect();
                    let mask = map_4k_run(&mut a, ra, base, &pages, force).unwrap();
                    let mut want = 0u32;
                    for (i, p) in pages.iter().enumerate() {
                        let g = base + ((i as u64) << 12);
                        if let Some((hpa, fl)) = p {
                            if i == force || leaf(&b, rb, g).is_none() {
                                map_4k(&mut b, rb, g, *hpa, *fl).unwrap();
                                want |= 1 << i;
                            }
                        }
                    }
                    assert_eq!(mask, want, "premapped {premapped:#x} given {given:#x} force {force}");
                    assert_eq!(a.q, b.q);
                }
            }
        }
        // A run that leaves the page table stops at its end.
        let mut m = Mem::default();
        let r = m.alloc_table().unwrap();
        let pages = [Some((0x5000, 0)); 8];
        assert_eq!(map_4k_run(&mut m, r, 0x1f_d000, &pages, 0), Ok(0b111));
        assert!(leaf(&m, r, 0x20_0000).is_none());
    }

    #[test]
    fn npt_map_then_walk_as_long_mode() {
        let mut m = Mem::default();
        let root = m.alloc_table().unwrap();
        assert_eq!(map_4k(&mut m, root, 0x1234_5000, 0xabc_d000, RW), Ok(Pte(0)));
        // Three intermediate tables were created.
        assert_eq!(m.allocs, 4);
        // The same tree walks like a long-mode guest table with user access.
        assert_eq!(walk_guest(&m, Mode::Long4, root, 0x1234_5678, UR, true, true), Ok(0xabc_d678));
        // A second page in the same 2 MiB region reuses the tables.
        map_4k(&mut m, root, 0x1234_6000, 0x5000, 0).unwrap();
        assert_eq!(m.allocs, 4);
        // Read-only leaf: writes fault with P|W|U.
        let f = walk_guest(&m, Mode::Long4, root, 0x1234_6000, Access { write: true, user: true, fetch: false }, true, true);
        assert_eq!(f, Err(PageFault { error_code: pf::P | pf::W | pf::U }));
        // Remap returns the old entry; unmap clears it.
        let old = map_4k(&mut m, root, 0x1234_5000, 0x7000, RW | NX).unwrap();
        assert_eq!(old.addr(), 0xabc_d000);
        assert_eq!(unmap_4k(&mut m, root, 0x1234_5000), Pte(0x7000 | P | RW | US | NX));
        assert_eq!(walk_guest(&m, Mode::Long4, root, 0x1234_5000, R, true, true), Err(PageFault { error_code: 0 }));
        assert_eq!(unmap_4k(&mut m, root, 0x1234_5000), Pte(0));
        assert_eq!(unmap_4k(&mut m, root, 0x9999_9000), Pte(0));
    }

    #[test]
    fn npt_leaf_lookup() {
        let mut m = Mem::default();
        let root = m.alloc_table().unwrap();
        assert_eq!(leaf(&m, root, 0x1234_5000), None);
        map_4k(&mut m, root, 0x1234_5000, 0xabc_d000, RW).unwrap();
        map_4k(&mut m, root, 0x1234_6000, 0x5000, 0).unwrap();
        let e = leaf(&m, root, 0x1234_5fff).unwrap();
        assert_eq!((e.addr(), e.writable(), e.user(), e.large()), (0xabc_d000, true, true, false));
        assert_eq!(e, Pte(0xabc_d000 | P | RW | US));
        assert!(!leaf(&m, root, 0x1234_6000).unwrap().writable());
        // Same page table, entry not present; other regions without tables.
        assert_eq!(leaf(&m, root, 0x1234_7000), None);
        assert_eq!(leaf(&m, root, 0x8000_0000), None);
        // A 2 MiB mapping is its own leaf for every address it covers.
        map_2m(&mut m, root, 0x20_0000, 0x4000_0000, RW).unwrap();
        let e = leaf(&m, root, 0x3f_f000).unwrap();
        assert_eq!((e.large(), e.addr()), (true, 0x4000_0000));
        assert_eq!(e, Pte(0x4000_0000 | P | RW | US | PS));
        unmap_4k(&mut m, root, 0x1234_5000);
        assert_eq!(leaf(&m, root, 0x1234_5000), None);
    }

    #[test]
    fn npt_out_of_memory_and_large_pages() {
        let mut m = Mem { limit: Some(2), ..Default::default() };
        let root = m.alloc_table().unwrap();
        assert_eq!(map_4k(&mut m, root, 0, 0x1000, RW), Err(MapError::NoMemory));
        let mut m = Mem::default();
        let root = m.alloc_table().unwrap();
        map_4k(&mut m, root, 0, 0x1000, RW).unwrap();
        // Turn the PD entry into a 2 MiB page: mapping under it is refused.
        let pdpt = m.read(root).unwrap() & ADDR_MASK;
        let pd = m.read(pdpt).unwrap() & ADDR_MASK;
        m.write(pd, 0x20_0000 | P | RW | US | PS);
        assert_eq!(map_4k(&mut m, root, 0x1000, 0x2000, RW), Err(MapError::LargePage));
        assert_eq!(walk_guest(&m, Mode::Long4, root, 0x1_2345, R, true, true), Ok(0x21_2345));
    }

    #[test]
    fn npt_2m_pages() {
        let mut m = Mem::default();
        let root = m.alloc_table().unwrap();
        assert_eq!(pd_state(&m, root, 0x20_0000), PdState::Free);
        map_2m(&mut m, root, 0x20_0000, 0x4000_0000, RW).unwrap();
        assert_eq!(pd_state(&m, root, 0x2f_f000), PdState::Large);
        assert_eq!(walk_guest(&m, Mode::Long4, root, 0x21_2345, UR, true, true), Ok(0x4001_2345));
        // 4 KiB mappings cannot go under it, nor a second 2 MiB one.
        assert_eq!(map_4k(&mut m, root, 0x20_1000, 0x1000, RW), Err(MapError::LargePage));
        assert_eq!(map_2m(&mut m, root, 0x20_0000, 0x6000_0000, RW), Err(MapError::LargePage));
        // A region with 4 KiB mappings is a Table and refuses a 2 MiB page.
        map_4k(&mut m, root, 0x40_0000, 0x1000, RW).unwrap();
        assert_eq!(pd_state(&m, root, 0x40_0000), PdState::Table);
        assert_eq!(map_2m(&mut m, root, 0x40_0000, 0x6000_0000, RW), Err(MapError::LargePage));
        assert_eq!(unmap_2m(&mut m, root, 0x20_0000), Pte(0x4000_0000 | P | RW | US | PS));
        assert_eq!(pd_state(&m, root, 0x20_0000), PdState::Free);
        assert_eq!(unmap_2m(&mut m, root, 0x40_0000), Pte(0)); // a table, not a large page
        assert_eq!(walk_guest(&m, Mode::Long4, root, 0x20_0000, R, true, true), Err(PageFault { error_code: 0 }));
    }

    #[test]
    fn modes() {
        assert_eq!(Mode::from_regs(0x11, 0, 0), Mode::None);
        assert_eq!(Mode::from_regs(0x8000_0011, 0x10, 0), Mode::Legacy { pse: true });
        assert_eq!(Mode::from_regs(0x8000_0011, 0x20, 0), Mode::Pae);
        assert_eq!(Mode::from_regs(0x8000_0011, 0x20, 0x500), Mode::Long4);
        assert_eq!(Mode::from_regs(0x8000_0011, 0x1020, 0x500), Mode::Long5);
        let m = Mem::default();
        assert_eq!(walk_guest(&m, Mode::None, 0, 0x1_0000_1234, R, true, false), Ok(0x1234));
    }

    #[test]
    fn legacy_32bit_walk() {
        let mut m = Mem::default();
        // PD at 0x1000, PT at 0x2000; 4-byte entries packed in quadwords.
        let put32 = |m: &mut Mem, pa: u64, v: u64| {
            let q = m.read(pa & !7).unwrap();
            let q = if pa & 4 != 0 { (q & 0xffff_ffff) | (v << 32) } else { (q & !0xffff_ffff) | v };
            m.write(pa & !7, q);
        };
        put32(&mut m, 0x1000 + 4, 0x2000 | P | RW); // la 0x0040_0000..: PT at 0x2000
        put32(&mut m, 0x2000 + 4 * 3, 0x9000 | P); // la 0x0040_3000 -> 0x9000, read-only
        put32(&mut m, 0x1000 + 4 * 2, 0x0c00_0000 | P | RW | PS | US); // 4 MiB page at la 0x0080_0000
        assert_eq!(walk_guest(&m, Mode::Legacy { pse: false }, 0x1000, 0x40_3abc, R, false, false), Ok(0x9abc));
        // CR0.WP = 0: supervisor writes ignore R/W.
        assert_eq!(walk_guest(&m, Mode::Legacy { pse: false }, 0x1000, 0x40_3abc, W, false, false), Ok(0x9abc));
        assert_eq!(
            walk_guest(&m, Mode::Legacy { pse: false }, 0x1000, 0x40_3abc, W, true, false),
            Err(PageFault { error_code: pf::P | pf::W })
        );
        assert_eq!(walk_guest(&m, Mode::Legacy { pse: true }, 0x1000, 0x81_2345, UR, true, false), Ok(0x0c01_2345));
        assert_eq!(walk_guest(&m, Mode::Legacy { pse: false }, 0x1000, 0x40_3abc, UR, true, false), Err(PageFault { error_code: pf::P | pf::U }));
        assert_eq!(walk_guest(&m, Mode::Legacy { pse: false }, 0x1000, 0xc0_0000, R, true, false), Err(PageFault { error_code: 0 }));
    }

    #[test]
    fn pae_and_nx() {
        let mut m = Mem::default();
        m.write(0x1000 + 8, 0x2000 | P); // PDPTE 1
        m.write(0x2000, 0x3000 | P | RW); // PDE 0
        m.write(0x3000 + 8 * 5, 0x8000 | P | RW | NX); // PTE 5
        let la = 0x4000_5010;
        assert_eq!(walk_guest(&m, Mode::Pae, 0x1000, la, R, true, true), Ok(0x8010));
        assert_eq!(walk_guest(&m, Mode::Pae, 0x1000, la, X, true, true), Err(PageFault { error_code: pf::P | pf::ID }));
        // NX set while EFER.NXE = 0 is a reserved-bit fault.
        assert_eq!(walk_guest(&m, Mode::Pae, 0x1000, la, R, true, false), Err(PageFault { error_code: pf::P | pf::RSV }));
        // Reserved PDPTE bits.
        m.write(0x1000 + 8, 0x2000 | P | RW);
        assert_eq!(walk_guest(&m, Mode::Pae, 0x1000, la, R, true, true), Err(PageFault { error_code: pf::P | pf::RSV }));
    }
}
