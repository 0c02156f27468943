// SPDX-License-Identifier: GPL-2.0
//! Memory nsvm owns: zeroed kernel pages (`KPages`, `VmcbPage`), the
//! direct map, and raw reads of guest pages that NPT01 keeps pinned.

use kernel::ffi::{c_uint, c_void};
use kernel::page::Page;
use kernel::prelude::*;

extern "C" {
    fn nsvm_page_to_phys(page: *mut c_void) -> u64;
    fn nsvm_alloc_pages(order: c_uint, pa: *mut u64) -> *mut c_void;
    fn nsvm_free_pages(va: *mut c_void, order: c_uint);
    fn nsvm_virt_to_page(va: *mut c_void) -> *mut c_void;
    fn nsvm_va(pa: u64) -> *mut c_void;
}

/// Physical address of a page.
pub(crate) fn page_phys(page: &Page) -> u64 {
    // SAFETY: `page.as_ptr()` is a valid `struct page` for the life of `page`.
    unsafe { nsvm_page_to_phys(page.as_ptr().cast()) }
}

/// Physically contiguous, zeroed kernel pages in the direct map.
///
/// # Invariants
///
/// `va` is the start of `PAGE_SIZE << order` bytes returned by
/// `nsvm_alloc_pages(order)`, owned by this value and freed on drop; `pa` is
/// their physical address. Accesses go through volatile reads and writes with
/// bounds checks, because other parties (the processor during VMRUN,
/// userspace through mmap) may access the same memory.
pub(crate) struct KPages {
    va: *mut u8,
    pa: u64,
    order: u32,
}

// SAFETY: the pages are plain memory owned by the value; every access is a
// bounds-checked volatile access, so sharing between threads cannot create
// references to changing memory.
unsafe impl Send for KPages {}
// SAFETY: as above.
unsafe impl Sync for KPages {}

impl KPages {
    /// Allocates `2^order` zeroed pages (charged to the caller's memory cgroup).
    pub(crate) fn alloc(order: u32) -> Result<Self> {
        let mut pa = 0u64;
        // SAFETY: `pa` is a valid u64 to write.
        let va = unsafe { nsvm_alloc_pages(order, &mut pa) };
        if va.is_null() {
            return Err(ENOMEM);
        }
        // INVARIANT: a fresh allocation of `order`, owned from now on.
        Ok(Self { va: va.cast(), pa, order })
    }
    /// One zeroed page.
    pub(crate) fn page() -> Result<Self> {
        Self::alloc(0)
    }
    /// Physical address.
    pub(crate) fn pa(&self) -> u64 {
        self.pa
    }
    /// Size in bytes.
    pub(crate) fn len(&self) -> usize {
        kernel::page::PAGE_SIZE << self.order
    }
    fn in_bounds(&self, off: usize, n: usize) -> bool {
        off.checked_add(n).is_some_and(|e| e <= self.len())
    }
    /// Reads `N` bytes at `off` (zeros when out of bounds).
    pub(crate) fn read<const N: usize>(&self, off: usize) -> [u8; N] {
        let mut out = [0u8; N];
        if self.in_bounds(off, N) {
            for (i, b) in out.iter_mut().enumerate() {
                // SAFETY: `off + i` is within the allocation (checked above).
                *b = unsafe { core::ptr::read_volatile(self.va.add(off + i)) };
            }
        }
        out
    }
    /// Reads `out.len()` bytes at `off` (zeros when out of bounds).
    pub(crate) fn read_slice(&self, off: usize, out: &mut [u8]) {
        if !self.in_bounds(off, out.len()) {
            out.fill(0);
            return;
        }
        for (i, b) in out.iter_mut().enumerate() {
            // SAFETY: `off + i` is within the allocation (checked above).
            *b = unsafe { core::ptr::read_volatile(self.va.add(off + i)) };
        }
    }
    /// Writes `data` at `off` (ignored when out of bounds).
    pub(crate) fn write(&self, off: usize, data: &[u8]) {
        if self.in_bounds(off, data.len()) {
            for (i, b) in data.iter().enumerate() {
                // SAFETY: `off + i` is within the allocation (checked above).
                unsafe { core::ptr::write_volatile(self.va.add(off + i), *b) };
            }
        }
    }
    /// Writes the naturally aligned integer `v` at `off` with one store
    /// (ignored when out of bounds or misaligned): the `kvm_run` fields.
    #[inline]
    pub(crate) fn write_int<T: Copy>(&self, off: usize, v: T) {
        let n = core::mem::size_of::<T>();
        if self.in_bounds(off, n) && off % n == 0 && n <= 8 {
            // SAFETY: `off + n` is within the allocation (checked above) and
            // `off` is a multiple of `T`'s size, so the store is aligned
            // (the allocation is page aligned); `T: Copy` is written by value.
            unsafe { core::ptr::write_volatile(self.va.add(off).cast::<T>(), v) };
        }
    }
    /// Start of the allocation, for instructions that take a memory operand
    /// (XSAVE); the pointer must only be used for accesses within `len()`.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.va
    }
    /// Reads a u64.
    pub(crate) fn read_u64(&self, off: usize) -> u64 {
        u64::from_ne_bytes(self.read::<8>(off))
    }
    /// Reads a u8.
    pub(crate) fn read_u8(&self, off: usize) -> u8 {
        self.read::<1>(off)[0]
    }
    /// Fills the whole allocation with `b`.
    pub(crate) fn fill(&self, b: u8) {
        for off in 0..self.len() {
            // SAFETY: `off` is within the allocation.
            unsafe { core::ptr::write_volatile(self.va.add(off), b) };
        }
    }
    /// The `struct page` of page `i` of the allocation (for mmap faults).
    /// Only order-0 allocations can be mapped: the tail pages of a
    /// non-compound block have no reference count of their own.
    pub(crate) fn struct_page(&self, i: usize) -> Option<*mut c_void> {
        if self.order != 0 || i != 0 {
            return None;
        }
        // SAFETY: the address is inside the allocation, in the direct map.
        Some(unsafe { nsvm_virt_to_page(self.va.add(i * kernel::page::PAGE_SIZE).cast()) })
    }
    /// The allocation as a typed value, for formats that fit in it and for
    /// which every bit pattern is valid (plain integer structs such as the VMCB).
    ///
    /// # Safety
    ///
    /// `T` must be a `repr(C)` type of integers and arrays of integers with
    /// `size_of::<T>() <= self.len()` and alignment at most 4096, and nobody
    /// else (processor, userspace) may access the memory while the reference lives.
    pub(crate) unsafe fn as_mut<T>(&mut self) -> &mut T {
        // SAFETY: per the caller's guarantees; the allocation is page aligned.
        unsafe { &mut *self.va.cast::<T>() }
    }
}

impl Drop for KPages {
    fn drop(&mut self) {
        // SAFETY: by the type invariant, `va` came from `nsvm_alloc_pages(order)`.
        unsafe { nsvm_free_pages(self.va.cast(), self.order) }
    }
}

/// The kernel virtual address (direct mapping) of host physical `pa`:
/// computing it needs no safety condition, using it does.
pub(crate) fn phys_to_va(pa: u64) -> usize {
    // SAFETY: `nsvm_va` is `__va`, plain arithmetic.
    unsafe { nsvm_va(pa) as usize }
}

/// Copies `out.len()` bytes of guest memory at kernel virtual address `va`
/// (a guest page's direct mapping, from [`phys_to_va`]).
///
/// # Safety
///
/// `[va, va + out.len())` must lie inside one page that stays pinned for
/// the duration of the call (a guest page mapped by NPT01, read under the
/// VM's lock). The guest may write the page concurrently: the bytes are
/// plain data (as with `copy_from_user`), any value is acceptable.
pub(crate) unsafe fn guest_read(va: usize, out: &mut [u8]) {
    // SAFETY: per the caller, the range is inside a live, pinned page.
    unsafe { core::ptr::copy_nonoverlapping(va as *const u8, out.as_mut_ptr(), out.len()) }
}

/// Reads the aligned 8 bytes of guest memory at `va` (a guest page-table
/// entry) without a `memcpy` call.
///
/// # Safety
///
/// As for [`guest_read`], with `va` 8-byte aligned.
pub(crate) unsafe fn guest_read_u64(va: usize) -> u64 {
    // SAFETY: per the caller, an aligned quadword of a live, pinned page.
    unsafe { core::ptr::read_volatile(va as *const u64) }
}

/// Reads an 8-byte entry of a page-table page of nsvm's own at physical `pa`.
///
/// # Safety
///
/// `pa` must be 8-byte aligned inside a live [`KPages`] allocation of nsvm.
pub(crate) unsafe fn table_read(pa: u64) -> u64 {
    // SAFETY: per the caller, `pa` is in a live direct-mapped allocation.
    unsafe { core::ptr::read_volatile(nsvm_va(pa).cast::<u64>()) }
}

/// Writes an 8-byte entry of a page-table page of nsvm's own.
///
/// # Safety
///
/// As for [`table_read`].
pub(crate) unsafe fn table_write(pa: u64, v: u64) {
    // SAFETY: per the caller, `pa` is in a live direct-mapped allocation.
    unsafe { core::ptr::write_volatile(nsvm_va(pa).cast::<u64>(), v) }
}

/// A VMCB page (APM appendix B) with typed access.
///
/// # Invariants
///
/// The page is only accessed through `&mut self` (typed) or by the processor
/// inside `vmrun::enter`, which also takes `&mut self`.
pub(crate) struct VmcbPage(KPages);

impl VmcbPage {
    /// A zeroed VMCB.
    pub(crate) fn new() -> Result<Self> {
        Ok(Self(KPages::page()?))
    }
    /// Physical address (for VMRUN).
    pub(crate) fn pa(&self) -> u64 {
        self.0.pa()
    }
    /// The page as bytes (copying a VMCB to and from guest memory).
    pub(crate) fn bytes(&mut self) -> &mut [u8; 4096] {
        // SAFETY: the page is 4096 bytes; as for `get`, nobody else accesses
        // it while this exclusive borrow lives.
        unsafe { self.0.as_mut::<[u8; 4096]>() }
    }
    /// The VMCB.
    pub(crate) fn get(&mut self) -> &mut nsvm_core::vmcb::Vmcb {
        // SAFETY: Vmcb is a repr(C) struct of integers, exactly one page, page
        // aligned; by the type invariant nobody else accesses the page while
        // this exclusive borrow lives.
        unsafe { self.0.as_mut::<nsvm_core::vmcb::Vmcb>() }
    }
}
