// SPDX-License-Identifier: GPL-2.0
//! Per-VM tables indexed by vCPU id (up to `KVM_CAP_MAX_VCPU_ID`, 4096)
//! without a small VM paying for the largest: a fixed array of pointers to
//! chunks of [`CHUNK`] entries, a chunk allocated when the first vCPU of
//! its range is created and freed with the table. Chunks are published with
//! release and looked up with acquire and never move or go before the
//! table, so readers in any context (hardirq: the APIC timer) take no lock
//! and never block.

use core::marker::PhantomData;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

use kernel::prelude::*;

use nsvm_core::uapi::cap::KVM_MAX_VCPU_IDS;

/// Entries per chunk.
pub(crate) const CHUNK: usize = 64;

/// Chunk pointers per table (512 bytes of pointers per table).
const CHUNKS: usize = (KVM_MAX_VCPU_IDS as usize).div_ceil(CHUNK);

/// One chunk: `CHUNK` entries, on the heap (kmalloc or vmalloc: a chunk of
/// mailboxes is about 9 KiB).
type Chunk<T> = [T; CHUNK];

/// A table of `T` by vCPU id.
///
/// # Invariants
///
/// Each pointer of `chunks` is null or came from `KVBox::into_raw` of a
/// fully initialised `Chunk<T>` owned by the table; once non-null it never
/// changes until the table is dropped, which frees it.
pub(crate) struct IdTable<T> {
    chunks: [AtomicPtr<Chunk<T>>; CHUNKS],
    /// One more than the highest id [`IdTable::ensure`] was called for
    /// (raised after its chunk is published): [`IdTable::iter`] looks at
    /// no id beyond it, so a small VM's scans (APIC delivery) stay short.
    limit: AtomicU32,
    /// Owns `Chunk<T>`s: Send/Sync as they are.
    _owns: PhantomData<KVBox<Chunk<T>>>,
}

impl<T> IdTable<T> {
    /// An empty table (no chunk allocated).
    pub(crate) const fn new() -> Self {
        Self { chunks: [const { AtomicPtr::new(core::ptr::null_mut()) }; CHUNKS], limit: AtomicU32::new(0), _owns: PhantomData }
    }

    /// The entry of `id`, if its chunk exists (any context, lock-free).
    #[inline]
    pub(crate) fn get(&self, id: u32) -> Option<&T> {
        let c = self.chunks.get(id as usize / CHUNK)?.load(Ordering::Acquire);
        if c.is_null() {
            return None;
        }
        // SAFETY: non-null: a live, initialised chunk that stays until the
        // table is dropped (type invariant), which cannot happen while
        // `self` is borrowed; only shared references are handed out.
        Some(unsafe { &(*c)[id as usize % CHUNK] })
    }

    /// Allocates the chunk of `id` (each entry from `init`) unless it
    /// exists; `EINVAL` for an id beyond the table. Process context (may
    /// sleep); concurrent callers are fine (one chunk wins).
    pub(crate) fn ensure(&self, id: u32, init: impl Fn() -> T) -> Result {
        let slot = self.chunks.get(id as usize / CHUNK).ok_or(EINVAL)?;
        if !slot.load(Ordering::Acquire).is_null() {
            self.limit.fetch_max(id + 1, Ordering::AcqRel);
            return Ok(());
        }
        let mut b = KVBox::<Chunk<T>>::new_uninit(GFP_KERNEL_ACCOUNT)?;
        let p = b.as_mut_ptr().cast::<MaybeUninit<T>>();
        for i in 0..CHUNK {
            // SAFETY: `p` points to the box's `CHUNK` uninitialised
            // entries (an array of `T` has `T`'s layout per element), `i`
            // is in bounds; each entry is written once, in place (a chunk
            // is too big for the kernel stack).
            unsafe { (*p.add(i)).write(init()) };
        }
        // SAFETY: every entry was written just above.
        let b = unsafe { b.assume_init() };
        let raw = KVBox::into_raw(b);
        if slot.compare_exchange(core::ptr::null_mut(), raw, Ordering::AcqRel, Ordering::Acquire).is_err() {
            // SAFETY: `raw` came from `into_raw` above and was never
            // published: still ours alone.
            drop(unsafe { KVBox::from_raw(raw) });
        }
        self.limit.fetch_max(id + 1, Ordering::AcqRel);
        Ok(())
    }

    /// Every entry of the allocated chunks, with its id, in id order, up
    /// to the highest id ensured: ids 0 to that one, without the unallocated
    /// chunks' (a 2-vCPU VM scans 2 entries, not a chunk of 64).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &T)> + '_ {
        let limit = self.limit.load(Ordering::Acquire);
        (0..limit).filter_map(move |id| self.get(id).map(|e| (id, e)))
    }
}

impl<T> Drop for IdTable<T> {
    fn drop(&mut self) {
        for p in &self.chunks {
            let p = p.swap(core::ptr::null_mut(), Ordering::AcqRel);
            if !p.is_null() {
                // SAFETY: from `KVBox::into_raw` and owned by the table
                // (type invariant); taken out above, so freed once.
                drop(unsafe { KVBox::from_raw(p) });
            }
        }
    }
}
