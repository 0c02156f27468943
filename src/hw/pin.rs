// SPDX-License-Identifier: GPL-2.0
//! Pages of the VMM process that nsvm holds for a short while: a page
//! referenced while it is being mapped into an NPT (`HostPage`, dropped once
//! the leaf is written: leaves hold no reference, the MMU notifier removes
//! them before the page changes), and a page pinned across a nested VMRUN
//! or an NPT12 accessed/dirty update (`PinnedPage`), with constant-size
//! readers/writers.

use kernel::ffi::{c_int, c_long, c_ulong, c_void};
use kernel::prelude::*;

extern "C" {
    fn nsvm_page_to_phys(page: *mut c_void) -> u64;
    fn nsvm_va(pa: u64) -> *mut c_void;
    fn nsvm_pin_user_page(uaddr: c_ulong, write: c_int, page: *mut *mut c_void) -> c_long;
    fn nsvm_unpin_user_page(page: *mut c_void, dirty: c_int);
    fn nsvm_get_user_page(uaddr: c_ulong, write_fault: c_int, may_write: c_int, no_fault: c_int, page: *mut *mut c_void, writable: *mut c_int) -> c_long;
    fn nsvm_put_user_page(page: *mut c_void, dirty: c_int);
    fn nsvm_user_pmd_mapped(uaddr: c_ulong) -> c_int;
}

/// A page of the calling process with a reference (not a pin) held while
/// nsvm maps it into an NPT, as KVM's `hva_to_pfn`: the leaf keeps no
/// reference; the VM's MMU notifier removes it before the process's page
/// changes, and the fault protocol (`Vm::fault_in`) refuses a page an
/// invalidation may have overtaken.
///
/// # Invariants
///
/// `page` was referenced by `nsvm_get_user_page` and is released once, on
/// drop (marked dirty when `writable`).
pub(crate) struct HostPage {
    page: *mut c_void,
    /// Physical address.
    pub(crate) pa: u64,
    /// The process maps it writable (and it may be mapped so).
    pub(crate) writable: bool,
}

impl HostPage {
    /// The page the calling process maps at `uaddr`: faulted in for
    /// writing on a write fault; on a read fault with `may_write`, writable
    /// when the process's PTE already is, read-only otherwise (the zero
    /// page, KSM, copy-on-write). `EFAULT` when the process does not map it.
    pub(crate) fn get(uaddr: u64, write_fault: bool, may_write: bool) -> Result<Self> {
        Self::lookup(uaddr, write_fault, may_write, false)
    }

    /// `get` for a prefetch: only a page the process maps now (GUP-fast,
    /// nothing faulted in, no sleep).
    pub(crate) fn get_mapped(uaddr: u64, may_write: bool) -> Result<Self> {
        Self::lookup(uaddr, false, may_write, true)
    }

    fn lookup(uaddr: u64, write_fault: bool, may_write: bool, no_fault: bool) -> Result<Self> {
        let mut page: *mut c_void = core::ptr::null_mut();
        let mut writable: c_int = 0;
        // SAFETY: `page` and `writable` are valid slots; the kernel checks
        // the address.
        let r = unsafe { nsvm_get_user_page(uaddr as c_ulong, c_int::from(write_fault), c_int::from(may_write), c_int::from(no_fault), &mut page, &mut writable) };
        if r < 0 {
            return Err(Error::from_errno(r as c_int));
        }
        if page.is_null() {
            return Err(EFAULT);
        }
        // SAFETY: `page` is referenced.
        let pa = unsafe { nsvm_page_to_phys(page) };
        // INVARIANT: referenced just now, owned by the value.
        Ok(Self { page, pa, writable: writable != 0 })
    }
}

// SAFETY: a page reference may be dropped from any thread.
unsafe impl Send for HostPage {}

impl Drop for HostPage {
    fn drop(&mut self) {
        // SAFETY: by the type invariant the reference is ours.
        unsafe { nsvm_put_user_page(self.page, c_int::from(self.writable)) }
    }
}

/// Whether the calling process maps `uaddr` with a 2 MiB (or larger) page
/// (a transparent huge page mapped by a PMD): then the aligned 2 MiB around
/// it may go into one NPT entry. Only a hint: the caller maps under the
/// MMU-notifier sequence, which a split or collapse moves.
pub(crate) fn user_pmd_mapped(uaddr: u64) -> bool {
    // SAFETY: a lockless read of the current process's page tables.
    unsafe { nsvm_user_pmd_mapped(uaddr as c_ulong) != 0 }
}

/// A page of the calling process pinned for a short use (FOLL_PIN without
/// FOLL_LONGTERM): vmcb12 from L1's VMRUN until the VM's memory generation
/// moves, an NPT12 entry during its accessed/dirty update.
///
/// # Invariants
///
/// `page` was pinned by `nsvm_pin_user_page` and is unpinned once, on drop.
pub(crate) struct PinnedPage {
    page: *mut c_void,
    /// Physical address.
    pub(crate) pa: u64,
    /// Pinned for writing (unpinned as dirty).
    pub(crate) writable: bool,
}

// SAFETY: a pinned page reference may be released from any thread.
unsafe impl Send for PinnedPage {}
// SAFETY: shared access only reads the plain fields.
unsafe impl Sync for PinnedPage {}

impl PinnedPage {
    /// Pins the page at user address `uaddr` of the current process.
    pub(crate) fn pin(uaddr: u64, writable: bool) -> Result<Self> {
        let mut page: *mut c_void = core::ptr::null_mut();
        // SAFETY: `page` is a valid slot for one page pointer; the address is
        // checked by the kernel (EFAULT for non-user addresses).
        let r = unsafe { nsvm_pin_user_page(uaddr as c_ulong, c_int::from(writable), &mut page) };
        if r < 0 {
            return Err(Error::from_errno(r as c_int));
        }
        if r != 1 || page.is_null() {
            return Err(EFAULT);
        }
        // SAFETY: `page` is a pinned page.
        let pa = unsafe { nsvm_page_to_phys(page) };
        // INVARIANT: pinned just now, owned by the value.
        Ok(Self { page, pa, writable })
    }
}

impl PinnedPage {
    /// For several small writes into a page pinned writable (`None` when
    /// read-only): the page's address is computed once, and each write has
    /// a constant size (inline moves, no `memcpy` call): the #VMEXIT
    /// write-back of 14 fields into vmcb12.
    pub(crate) fn writer(&self) -> Option<PageWriter<'_>> {
        // SAFETY: `nsvm_va` is `__va`, plain arithmetic.
        self.writable.then(|| PageWriter { base: unsafe { nsvm_va(self.pa) }.cast::<u8>(), _page: core::marker::PhantomData })
    }
}

impl PinnedPage {
    /// For several small reads of the page: its address computed once, each
    /// read of a constant size (inline moves): VMRUN's copy of vmcb12.
    pub(crate) fn reader(&self) -> PageReader<'_> {
        // SAFETY: `nsvm_va` is `__va`, plain arithmetic.
        PageReader { base: unsafe { nsvm_va(self.pa) }.cast::<u8>(), _page: core::marker::PhantomData }
    }
}

/// Reads from a pinned page (from [`PinnedPage::reader`]).
///
/// # Invariants
///
/// `base` is the direct mapping of a pinned page, which the borrowed
/// [`PinnedPage`] keeps pinned while this lives.
pub(crate) struct PageReader<'a> {
    base: *const u8,
    _page: core::marker::PhantomData<&'a PinnedPage>,
}

impl PageReader<'_> {
    /// Copies the `N` bytes at offset `off` into `out`; false (nothing
    /// copied) when the range leaves the page.
    #[inline(always)]
    pub(crate) fn get<const N: usize>(&self, off: usize, out: &mut [u8; N]) -> bool {
        if off.checked_add(N).is_none_or(|e| e > 4096) {
            return false;
        }
        if N % 8 == 0 && off % 8 == 0 {
            // Aligned quadwords, volatile (guest memory; and no rewrite of
            // the loop into a memcpy call, ~30 instructions per range).
            for i in 0..N / 8 {
                // The guest may write the page concurrently (as with
                // copy_from_user): plain data, any value is acceptable.
                // SAFETY: the page is pinned and mapped at `base` (type
                // invariant); `off + 8 * i + 8 <= 4096`, aligned; `out` holds N.
                unsafe {
                    let v = core::ptr::read_volatile(self.base.add(off + 8 * i).cast::<u64>());
                    out.as_mut_ptr().add(8 * i).cast::<u64>().write_unaligned(v);
                }
            }
        } else {
            // SAFETY: as above, for the whole range.
            unsafe { core::ptr::copy_nonoverlapping(self.base.add(off), out.as_mut_ptr(), N) };
        }
        true
    }
}

/// Writes into a pinned, writable page (from [`PinnedPage::writer`]).
///
/// # Invariants
///
/// `base` is the direct mapping of a page pinned for writing, which the
/// borrowed [`PinnedPage`] keeps pinned while this lives.
pub(crate) struct PageWriter<'a> {
    base: *mut u8,
    _page: core::marker::PhantomData<&'a PinnedPage>,
}

impl PageWriter<'_> {
    /// Writes the `N` bytes of `data` at offset `off`; false (nothing
    /// written) when the range leaves the page.
    #[inline(always)]
    pub(crate) fn put<const N: usize>(&self, off: usize, data: &[u8; N]) -> bool {
        if off.checked_add(N).is_none_or(|e| e > 4096) {
            return false;
        }
        if N % 8 == 0 && off % 8 == 0 {
            // Aligned quadwords, volatile (as in `PageReader::get`).
            for i in 0..N / 8 {
                // The guest may access the page concurrently (as with
                // copy_to_user); the page is dirtied on unpin.
                // SAFETY: the page is pinned for writing and mapped at `base`
                // (type invariant); `off + 8 * i + 8 <= 4096`, aligned; `data` holds N.
                unsafe {
                    let q = data.as_ptr().add(8 * i).cast::<u64>().read_unaligned();
                    core::ptr::write_volatile(self.base.add(off + 8 * i).cast::<u64>(), q);
                }
            }
        } else {
            // SAFETY: as above, for the whole range.
            unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), self.base.add(off), N) };
        }
        true
    }
}

impl PinnedPage {
    /// Atomically ORs `bits` into the aligned quadword at offset `off` of a
    /// page pinned writable (a nested page-table entry whose accessed/dirty
    /// bits L0 sets as the processor would, with a locked RMW like its page
    /// walker); false when misaligned, out of the page or read-only.
    pub(crate) fn fetch_or_u64(&self, off: usize, bits: u64) -> bool {
        if !self.writable || off % 8 != 0 || off + 8 > 4096 {
            return false;
        }
        // SAFETY: by the type invariant the page is pinned, so its direct
        // mapping is valid; the quadword is aligned and inside it. The guest
        // may access it concurrently from other CPUs, hence the atomic RMW.
        let a = unsafe { &*(nsvm_va(self.pa).cast::<u8>().add(off).cast::<core::sync::atomic::AtomicU64>()) };
        a.fetch_or(bits, core::sync::atomic::Ordering::SeqCst);
        true
    }
}

impl Drop for PinnedPage {
    fn drop(&mut self) {
        // SAFETY: by the type invariant the page is pinned by us.
        unsafe { nsvm_unpin_user_page(self.page, c_int::from(self.writable)) }
    }
}
