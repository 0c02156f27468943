// SPDX-License-Identifier: GPL-2.0
//! Pages of the VMM process pinned for the guest (`PinnedPage`) and
//! constant-size readers/writers of them.

use kernel::ffi::{c_int, c_long, c_ulong, c_void};
use kernel::prelude::*;

extern "C" {
    fn nsvm_page_to_phys(page: *mut c_void) -> u64;
    fn nsvm_va(pa: u64) -> *mut c_void;
    fn nsvm_pin_user_page(uaddr: c_ulong, write: c_int, page: *mut *mut c_void) -> c_long;
    fn nsvm_pin_user_pages(uaddr: c_ulong, n: c_int, write: c_int, pages: *mut *mut c_void) -> c_long;
    fn nsvm_unpin_user_page(page: *mut c_void, dirty: c_int);
    fn nsvm_page_in_pmd_folio(page: *mut c_void) -> c_int;
    fn nsvm_pin_user_huge(uaddr: c_ulong, write: c_int, page: *mut *mut c_void) -> c_long;
}

/// A page of the calling process pinned for the guest.
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

    /// Pins the consecutive pages from user address `uaddr` into `out` in
    /// one call (up to 8); returns how many were pinned (a prefix of `out`).
    pub(crate) fn pin_run(uaddr: u64, writable: bool, out: &mut [Option<PinnedPage>]) -> usize {
        let mut pages = [core::ptr::null_mut::<c_void>(); 8];
        let n = out.len().min(8);
        // SAFETY: `pages` has room for `n` page pointers; the kernel checks
        // the addresses.
        let r = unsafe { nsvm_pin_user_pages(uaddr as c_ulong, n as c_int, c_int::from(writable), pages.as_mut_ptr()) };
        let got = if r < 0 { 0 } else { (r as usize).min(n) };
        for (slot, page) in out.iter_mut().zip(pages.iter()).take(got) {
            // SAFETY: `page` was pinned just now.
            let pa = unsafe { nsvm_page_to_phys(*page) };
            // INVARIANT: each pinned page is owned by one value.
            *slot = Some(Self { page: *page, pa, writable });
        }
        got
    }

    /// Whether the page belongs to a folio of 2 MiB or more (a transparent
    /// huge page), so that the 2 MiB around it may be mapped at once.
    pub(crate) fn in_huge_folio(&self) -> bool {
        // SAFETY: by the type invariant the page is pinned (so its folio is live).
        unsafe { nsvm_page_in_pmd_folio(self.page) != 0 }
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

impl PinnedPage {
    /// Pins the 2 MiB at the 2 MiB-aligned user address `uaddr` if a
    /// transparent huge page backs it (`Ok(None)` otherwise). One pin of the
    /// folio's first page holds all of it; `pa` is its 2 MiB-aligned start.
    pub(crate) fn pin_huge(uaddr: u64, writable: bool) -> Result<Option<Self>> {
        let mut page: *mut c_void = core::ptr::null_mut();
        // SAFETY: `page` is a valid slot for one page pointer; the kernel
        // checks the address.
        let r = unsafe { nsvm_pin_user_huge(uaddr as c_ulong, c_int::from(writable), &mut page) };
        if r < 0 {
            return Err(Error::from_errno(r as c_int));
        }
        if r == 0 || page.is_null() {
            return Ok(None);
        }
        // SAFETY: `page` is pinned.
        let pa = unsafe { nsvm_page_to_phys(page) };
        // INVARIANT: pinned just now; unpinning the first page releases the folio.
        Ok(Some(Self { page, pa, writable }))
    }
}

impl Drop for PinnedPage {
    fn drop(&mut self) {
        // SAFETY: by the type invariant the page is pinned by us.
        unsafe { nsvm_unpin_user_page(self.page, c_int::from(self.writable)) }
    }
}
