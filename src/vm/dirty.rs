// SPDX-License-Identifier: GPL-2.0
//! Dirty page logging (KVM's `KVM_GET_DIRTY_LOG`, `KVM_CLEAR_DIRTY_LOG`,
//! `KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2`): the bitmaps live in `Mmu::dirty`
//! (rules and bit operations in `nsvm_core::dirty_log`). A page of a
//! logging slot is writable in NPT01 or NPT02 only while its bit is set;
//! taking bits away write-protects the pages under the MMU lock and then
//! goes through `Vm::shootdown` (memory generation bumped: NPT02s dropped,
//! every vCPU kicked out of guest mode and flushing its ASIDs before it
//! enters again), as KVM flushes remote TLBs before the bitmap reaches
//! userspace.

use kernel::prelude::*;
use kernel::uaccess::{UserPtr, UserSlice};

use core::sync::atomic::Ordering;

use nsvm_core::dirty_log::{self, ClearDirtyLog, DirtyLog, LogError};
use nsvm_core::memslot::{Change, Request, Slot, MAX_SLOT_BYTES, PAGE_SIZE};

use super::{Mmu, Vm};

/// A bitmap of `words` zeroed words, allocated outside the MMU lock.
pub(super) fn new_bitmap(words: usize) -> Result<KVVec<u64>> {
    Ok(KVVec::from_elem(0u64, words, GFP_KERNEL_ACCOUNT)?)
}

/// The bitmap a slot request may need (it logs, and its size is one the
/// slot table can accept), allocated before the MMU lock is taken; the
/// caller holds the VM lock.
pub(super) fn bitmap_for(r: &Request) -> Result<Option<KVVec<u64>>> {
    let logs = r.flags & nsvm_core::memslot::KVM_MEM_LOG_DIRTY_PAGES != 0;
    if !logs || r.size == 0 || r.size > MAX_SLOT_BYTES || r.size % PAGE_SIZE != 0 {
        return Ok(None);
    }
    new_bitmap(dirty_log::bitmap_words(r.size / PAGE_SIZE)).map(Some)
}

impl Mmu {
    /// After a slot change (under the MMU lock): a slot that starts logging
    /// gets `fresh` (all set with `KVM_DIRTY_LOG_INITIALLY_SET` in manual
    /// mode, as KVM's `kvm_prepare_memory_region`), one that stops or goes
    /// loses its bitmap; a moved slot keeps its own. Returns what must be
    /// freed after the lock (a bitmap may be vmalloc'ed).
    pub(super) fn dirty_after(&mut self, change: &Change, fresh: &mut Option<KVVec<u64>>, manual: u64) -> Option<KVVec<u64>> {
        let install = |s: &Slot, fresh: &mut Option<KVVec<u64>>| {
            let mut b = fresh.take();
            if let Some(b) = b.as_mut() {
                if manual & dirty_log::MANUAL_PROTECT_ENABLE != 0 && manual & dirty_log::INITIALLY_SET != 0 {
                    dirty_log::set_all(b, s.npages());
                }
            }
            b
        };
        match *change {
            Change::Create(s) if s.logging() => {
                let b = install(&s, fresh);
                core::mem::replace(&mut self.dirty[usize::from(s.id)], b)
            }
            Change::Flags(o, n) if n.logging() && !o.logging() => {
                let b = install(&n, fresh);
                core::mem::replace(&mut self.dirty[usize::from(n.id)], b)
            }
            Change::Flags(o, n) if !n.logging() => self.dirty[usize::from(o.id)].take(),
            Change::Delete(o) => self.dirty[usize::from(o.id)].take(),
            _ => None,
        }
    }
}

impl Mmu {
    /// After a slot change (under the MMU lock), `Mmu::seen`: a slot
    /// created logging gets `fresh` clear (nothing mapped yet), one that
    /// begins logging by a flag change gets it all set (its pages may have
    /// been mapped), one that stops or goes loses it. Returns what must be
    /// freed after the lock.
    pub(super) fn seen_after(&mut self, change: &Change, fresh: &mut Option<KVVec<u64>>) -> Option<KVVec<u64>> {
        match *change {
            Change::Create(s) if s.logging() => core::mem::replace(&mut self.seen[usize::from(s.id)], fresh.take()),
            Change::Flags(o, n) if n.logging() && !o.logging() => {
                let mut b = fresh.take();
                if let Some(b) = b.as_mut() {
                    dirty_log::set_all(b, n.npages());
                }
                core::mem::replace(&mut self.seen[usize::from(n.id)], b)
            }
            Change::Flags(o, n) if !n.logging() => self.seen[usize::from(o.id)].take(),
            Change::Delete(o) => self.seen[usize::from(o.id)].take(),
            _ => None,
        }
    }
}

impl Vm {
    /// The slot `id` and its bitmap's length, when it logs (`ENOENT`
    /// otherwise). The VM lock must be held (the slot stays).
    fn logging_slot(&self, id: u16) -> Result<Slot> {
        let m = self.mmu.lock();
        let s = m.slots.by_id(id).copied().ok_or(ENOENT)?;
        if m.dirty.get(usize::from(id)).is_none_or(|b| b.is_none()) {
            return Err(ENOENT);
        }
        Ok(s)
    }

    /// `KVM_GET_DIRTY_LOG`: the slot's bitmap to userspace (bitmap bytes:
    /// its pages rounded up to 64 bits). Without manual protection the
    /// bits are taken (cleared) and their pages write-protected, and every
    /// vCPU is out of guest mode with its TLB to be flushed before the
    /// bitmap is copied out; in manual mode the bitmap is copied as it is.
    pub(super) fn get_dirty_log(&self, arg: usize) -> Result<isize> {
        let mut b = [0u8; dirty_log::KVM_DIRTY_LOG_SIZE];
        UserSlice::new(UserPtr::from_addr(arg), b.len()).reader().read_slice(&mut b)?;
        let l = DirtyLog::from_bytes(&b);
        let id = dirty_log::slot_id(l.slot).map_err(errno)?;
        let _g = self.inner.lock();
        let s = self.logging_slot(id)?;
        let mut buf = new_bitmap(dirty_log::bitmap_words(s.npages()))?;
        let manual = self.manual_dirty_log.load(Ordering::Relaxed) & dirty_log::MANUAL_PROTECT_ENABLE != 0;
        let flush = {
            let mut m = self.mmu.lock();
            let Mmu { dirty, npt, .. } = &mut *m;
            let Some(Some(bm)) = dirty.get_mut(usize::from(id)) else { return Err(ENOENT) };
            if manual {
                // Element by element (same length): `copy_from_slice`'s
                // length-mismatch panic path trips objtool.
                for (d, w) in buf.iter_mut().zip(bm.iter()) {
                    *d = *w;
                }
                false
            } else {
                dirty_log::take(bm, &mut buf, |p| npt.write_protect(s.gpa + p * PAGE_SIZE))
            }
        };
        if flush {
            self.shootdown();
        }
        write_words(l.dirty_bitmap, &buf)?;
        Ok(0)
    }

    /// `KVM_CLEAR_DIRTY_LOG`, with KVM's order of checks: the struct
    /// (`EFAULT`), the slot number and `first_page`'s alignment (`EINVAL`),
    /// the slot (`ENOENT`), the range (`EINVAL`), then the mask (`EFAULT`);
    /// each page whose bit the mask clears is write-protected again.
    /// Works whether or not manual protection is enabled, as KVM.
    pub(super) fn clear_dirty_log(&self, arg: usize) -> Result<isize> {
        let mut b = [0u8; dirty_log::KVM_CLEAR_DIRTY_LOG_SIZE];
        UserSlice::new(UserPtr::from_addr(arg), b.len()).reader().read_slice(&mut b)?;
        let c = ClearDirtyLog::from_bytes(&b);
        let id = dirty_log::slot_id(c.slot).map_err(errno)?;
        dirty_log::check_clear_alignment(&c).map_err(errno)?;
        let _g = self.inner.lock();
        let s = self.logging_slot(id)?;
        dirty_log::check_clear_range(&c, s.npages()).map_err(errno)?;
        if c.num_pages == 0 {
            return Ok(0);
        }
        let mut mask = new_bitmap(c.mask_bytes() / 8)?;
        read_words(c.dirty_bitmap, &mut mask)?;
        let flush = {
            let mut m = self.mmu.lock();
            let Mmu { dirty, npt, .. } = &mut *m;
            let Some(Some(bm)) = dirty.get_mut(usize::from(id)) else { return Err(ENOENT) };
            dirty_log::clear(bm, c.first_page, &mask, |p| npt.write_protect(s.gpa + p * PAGE_SIZE))
        };
        if flush {
            self.shootdown();
        }
        Ok(0)
    }

    /// `KVM_ENABLE_CAP(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2)` (flags already
    /// checked to be 0): the mode for the next reads and new bitmaps.
    pub(super) fn enable_manual_dirty_log(&self, arg0: u64) -> Result<isize> {
        if !dirty_log::manual_protect_valid(0, arg0) {
            return Err(EINVAL);
        }
        self.manual_dirty_log.store(arg0, Ordering::Relaxed);
        Ok(0)
    }
}

fn errno(e: LogError) -> Error {
    match e {
        LogError::Invalid => EINVAL,
        LogError::NoEnt => ENOENT,
    }
}

/// Copies `words` to the user address `to` (native byte order), in chunks
/// through a small stack buffer.
fn write_words(to: u64, words: &[u64]) -> Result {
    let mut w = UserSlice::new(UserPtr::from_addr(to as usize), words.len() * 8).writer();
    let mut chunk = [0u8; 256];
    for part in words.chunks(chunk.len() / 8) {
        for (i, v) in part.iter().enumerate() {
            chunk[8 * i..8 * i + 8].copy_from_slice(&v.to_ne_bytes());
        }
        w.write_slice(&chunk[..8 * part.len()])?;
    }
    Ok(())
}

/// Reads `words.len()` words from the user address `from`.
fn read_words(from: u64, words: &mut [u64]) -> Result {
    let mut r = UserSlice::new(UserPtr::from_addr(from as usize), words.len() * 8).reader();
    let mut chunk = [0u8; 256];
    for part in words.chunks_mut(chunk.len() / 8) {
        let n = 8 * part.len();
        r.read_slice(&mut chunk[..n])?;
        for (i, v) in part.iter_mut().enumerate() {
            *v = u64::from_ne_bytes([chunk[8 * i], chunk[8 * i + 1], chunk[8 * i + 2], chunk[8 * i + 3], chunk[8 * i + 4], chunk[8 * i + 5], chunk[8 * i + 6], chunk[8 * i + 7]]);
        }
    }
    Ok(())
}
