// SPDX-License-Identifier: GPL-2.0
//! Leaf module: the processor and the C shims (src/shim.c).
//!
//! Together with `svm.rs` and `fops.rs` this is where the module's `unsafe`
//! lives. Everything exported from here is safe to call except the writes that
//! hand memory to the processor ([`write_hsave_pa`]).

use kernel::error::to_result;
use kernel::ffi::{c_int, c_long, c_uint, c_ulong, c_void};
use kernel::page::Page;
use kernel::prelude::*;

extern "C" {
    fn nsvm_rdmsr_safe(msr: u32, val: *mut u64) -> c_int;
    fn nsvm_wrmsr_safe(msr: u32, val: u64) -> c_int;
    fn nsvm_cpuhp_setup(
        up: extern "C" fn(c_uint) -> c_int,
        down: extern "C" fn(c_uint) -> c_int,
    ) -> c_int;
    fn nsvm_cpuhp_remove(state: c_int);
    fn nsvm_page_to_phys(page: *mut c_void) -> u64;
    fn nsvm_num_online_cpus() -> c_uint;
    fn nsvm_misc_register(mode: u16) -> c_int;
    fn nsvm_misc_deregister();
    fn nsvm_vm_fd(vm: *mut c_void) -> c_int;
    fn nsvm_vcpu_fd(vcpu: *mut c_void) -> c_int;
    fn nsvm_alloc_pages(order: c_uint, pa: *mut u64) -> *mut c_void;
    fn nsvm_free_pages(va: *mut c_void, order: c_uint);
    fn nsvm_virt_to_page(va: *mut c_void) -> *mut c_void;
    fn nsvm_va(pa: u64) -> *mut c_void;
    fn nsvm_pin_user_page(uaddr: c_ulong, write: c_int, page: *mut *mut c_void) -> c_long;
    fn nsvm_pin_user_pages(uaddr: c_ulong, n: c_int, write: c_int, pages: *mut *mut c_void) -> c_long;
    fn nsvm_unpin_user_page(page: *mut c_void, dirty: c_int);
    fn nsvm_page_in_pmd_folio(page: *mut c_void) -> c_int;
    fn nsvm_pin_user_huge(uaddr: c_ulong, write: c_int, page: *mut *mut c_void) -> c_long;
    fn nsvm_current_mm() -> *mut c_void;
    fn nsvm_signal_pending() -> c_int;
    fn nsvm_cond_resched();
    fn nsvm_fpu_begin();
    fn nsvm_fpu_end();
    fn nsvm_host_xcr0() -> u64;
    fn nsvm_tsc_khz() -> c_uint;
    fn nsvm_ktime_ns() -> u64;
    fn nsvm_stats_fd(obj: *mut c_void, vcpu: c_int) -> c_int;
    fn nsvm_debugfs_init();
    fn nsvm_debugfs_exit();
    fn nsvm_debugfs_dir(name: *const u8, parent: *mut c_void) -> *mut c_void;
    fn nsvm_debugfs_vmcb_file(name: *const u8, dir: *mut c_void, vcpu: *mut c_void) -> *mut c_void;
    fn nsvm_debugfs_remove(dentry: *mut c_void);
}

/// Executes CPUID for `leaf`/`subleaf` on the current CPU: (EAX, EBX, ECX, EDX).
pub(crate) fn cpuid(leaf: u32, subleaf: u32) -> (u32, u32, u32, u32) {
    // SAFETY: CPUID exists on every x86-64 processor and has no side effects
    // beyond writing the four registers.
    #[allow(unused_unsafe)]
    let r = unsafe { core::arch::x86_64::__cpuid_count(leaf, subleaf) };
    (r.eax, r.ebx, r.ecx, r.edx)
}

/// Reads an MSR on the current CPU; `EIO` when it does not exist (#GP).
pub(crate) fn rdmsr(msr: u32) -> Result<u64> {
    let mut v = 0u64;
    // SAFETY: `v` is a valid u64 for the shim to write; a faulting RDMSR is
    // caught by the kernel's exception table and reported as an error.
    to_result(unsafe { nsvm_rdmsr_safe(msr, &mut v) })?;
    Ok(v)
}

/// Sets or clears EFER.SVME on the current CPU, leaving the other bits as they are.
pub(crate) fn set_efer_svme(on: bool) -> Result {
    let efer = rdmsr(nsvm_core::msr::EFER)?;
    let new = if on {
        efer | nsvm_core::msr::efer::SVME
    } else {
        efer & !nsvm_core::msr::efer::SVME
    };
    // SAFETY: only SVME changes; SVME affects nothing but the SVM instructions,
    // which only this module executes while it owns SVM (APM 15.4).
    to_result(unsafe { nsvm_wrmsr_safe(nsvm_core::msr::EFER, new) })
}

/// Writes VM_HSAVE_PA on the current CPU (APM 15.30.4).
///
/// # Safety
///
/// `pa` must be the physical address of a 4 KiB page that stays allocated and
/// unused by anyone else until VM_HSAVE_PA is written again: VMRUN stores host
/// state there.
pub(crate) unsafe fn write_hsave_pa(pa: u64) -> Result {
    // SAFETY: the caller guarantees the page's lifetime; the write faults
    // (caught) only for a misaligned or out-of-range address.
    to_result(unsafe { nsvm_wrmsr_safe(nsvm_core::msr::VM_HSAVE_PA, pa) })
}

/// Physical address of a page.
pub(crate) fn page_phys(page: &Page) -> u64 {
    // SAFETY: `page.as_ptr()` is a valid `struct page` for the life of `page`.
    unsafe { nsvm_page_to_phys(page.as_ptr().cast()) }
}

/// Number of online CPUs.
pub(crate) fn num_online_cpus() -> u32 {
    // SAFETY: reads a cpumask weight; no preconditions.
    unsafe { nsvm_num_online_cpus() }
}

/// CPU hotplug callbacks registered with the kernel.
///
/// # Invariants
///
/// `state` is the dynamic hotplug state returned by a successful
/// `cpuhp_setup_state`; it is removed exactly once, on drop.
pub(crate) struct CpuHotplug {
    state: c_int,
}

impl CpuHotplug {
    /// Registers `up`/`down`: `up` runs now on every online CPU (on that CPU)
    /// and whenever a CPU comes online; `down` when one goes offline. If `up`
    /// fails on a CPU, `down` runs on those that succeeded and the error is
    /// returned.
    pub(crate) fn setup(
        up: extern "C" fn(c_uint) -> c_int,
        down: extern "C" fn(c_uint) -> c_int,
    ) -> Result<Self> {
        // SAFETY: both callbacks are functions of this module, which stay valid
        // until the registration is dropped in the module's exit path.
        let r = unsafe { nsvm_cpuhp_setup(up, down) };
        to_result(r.min(0))?;
        // INVARIANT: `r` is the state of a successful registration.
        Ok(Self { state: r })
    }
}

impl Drop for CpuHotplug {
    fn drop(&mut self) {
        // SAFETY: by the type invariant the state is registered and removed once.
        unsafe { nsvm_cpuhp_remove(self.state) }
    }
}

/// The `/dev/nsvm` device node.
///
/// # Invariants
///
/// While a value exists the shim's miscdevice is registered; there is at most
/// one value (registering twice fails with `EBUSY` from `misc_register`).
pub(crate) struct DevNode(());

impl DevNode {
    /// Registers `/dev/nsvm` with permission bits `mode` (0: default 0600).
    pub(crate) fn register(mode: u16) -> Result<Self> {
        // SAFETY: registers the shim's static miscdevice; a second registration
        // of the same miscdevice is refused by the misc core.
        to_result(unsafe { nsvm_misc_register(mode) })?;
        Ok(Self(()))
    }
}

impl Drop for DevNode {
    fn drop(&mut self) {
        // SAFETY: by the type invariant the device is registered.
        unsafe { nsvm_misc_deregister() }
    }
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
    /// Writes `data` at `off` (ignored when out of bounds).
    pub(crate) fn write(&self, off: usize, data: &[u8]) {
        if self.in_bounds(off, data.len()) {
            for (i, b) in data.iter().enumerate() {
                // SAFETY: `off + i` is within the allocation (checked above).
                unsafe { core::ptr::write_volatile(self.va.add(off + i), *b) };
            }
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

/// Creates an fd whose private data is `ptr` with the VM file operations.
///
/// # Safety
///
/// `ptr` must come from `Arc::<Vm>::into_raw`; on success the file owns it
/// (released by `nsvm_rs_vm_release`).
pub(crate) unsafe fn vm_fd(ptr: *const c_void) -> Result<i32> {
    // SAFETY: per the caller.
    let fd = unsafe { nsvm_vm_fd(ptr.cast_mut()) };
    to_result(fd.min(0))?;
    Ok(fd)
}

/// Creates an fd with the vCPU file operations.
///
/// # Safety
///
/// `ptr` must come from `Arc::<Vcpu>::into_raw`; on success the file owns it.
pub(crate) unsafe fn vcpu_fd(ptr: *const c_void) -> Result<i32> {
    // SAFETY: per the caller.
    let fd = unsafe { nsvm_vcpu_fd(ptr.cast_mut()) };
    to_result(fd.min(0))?;
    Ok(fd)
}

/// Creates a stats fd whose private data is `ptr`.
///
/// # Safety
///
/// `ptr` must come from `Arc::into_raw` of a `Vm` (`vcpu == false`) or a
/// `Vcpu` (`vcpu == true`); on success the file owns it.
pub(crate) unsafe fn stats_fd(ptr: *const c_void, vcpu: bool) -> Result<i32> {
    // SAFETY: per the caller.
    let fd = unsafe { nsvm_stats_fd(ptr.cast_mut(), c_int::from(vcpu)) };
    to_result(fd.min(0))?;
    Ok(fd)
}

/// The current CR3 (this task's page-table root as the processor holds it).
pub(crate) fn read_cr3() -> u64 {
    let v: u64;
    // SAFETY: reading CR3 at CPL 0 has no side effect.
    unsafe { core::arch::asm!("mov {}, cr3", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Logs (once per load) a VMCB that came back from VMRUN with the host's
/// state (see `vmrun::enter`).
pub(crate) fn note_host_state_in_vmcb(vcpu: u32, exit_code: u64) {
    static SEEN: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
    if !SEEN.swap(true, core::sync::atomic::Ordering::Relaxed) {
        pr_warn!(
            "vCPU {}: VMCB back from VMRUN (exit {:#x}) holding the host's own state: known QEMU TCG issue with several vCPUs (docs/architecture.md); vCPU stopped with KVM_EXIT_INTERNAL_ERROR\n",
            vcpu,
            exit_code
        );
    }
}

/// Identity of the calling process's address space.
pub(crate) fn current_mm() -> usize {
    // SAFETY: reads `current->mm`; the value is only compared.
    unsafe { nsvm_current_mm() as usize }
}

/// Whether the calling task has a signal pending.
pub(crate) fn signal_pending() -> bool {
    // SAFETY: no preconditions.
    unsafe { nsvm_signal_pending() != 0 }
}

/// Lets the scheduler run something else if it wants to.
pub(crate) fn cond_resched() {
    // SAFETY: called from process context without spinlocks held.
    unsafe { nsvm_cond_resched() }
}

/// The host's XCR0.
pub(crate) fn host_xcr0() -> u64 {
    // SAFETY: no preconditions.
    unsafe { nsvm_host_xcr0() }
}

/// Monotonic time in nanoseconds.
pub(crate) fn now_ns() -> u64 {
    // SAFETY: reads the monotonic clock.
    unsafe { nsvm_ktime_ns() }
}

/// TSC frequency of the host in kHz.
pub(crate) fn tsc_khz() -> u32 {
    // SAFETY: reads a kernel variable.
    unsafe { nsvm_tsc_khz() }
}

/// Kernel FPU section: the task's FPU state is saved on entry; inside, the FPU
/// registers belong to nsvm (the guest's state is loaded there); preemption
/// and softirqs are off. Not `Send`: it must end on the CPU where it began.
pub(crate) struct FpuSection(core::marker::PhantomData<*mut ()>);

impl FpuSection {
    /// Begins the section.
    pub(crate) fn begin() -> Self {
        // SAFETY: process context; paired with `nsvm_fpu_end` in drop.
        unsafe { nsvm_fpu_begin() };
        Self(core::marker::PhantomData)
    }
}

impl Drop for FpuSection {
    fn drop(&mut self) {
        // SAFETY: paired with the `nsvm_fpu_begin` of `begin`.
        unsafe { nsvm_fpu_end() }
    }
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

/// Reads the time-stamp counter.
pub(crate) fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no side effects and is allowed in the kernel.
    #[allow(unused_unsafe)]
    unsafe {
        core::arch::x86_64::_rdtsc()
    }
}

/// `/sys/kernel/debug/nsvm` for the life of the module.
///
/// # Invariants
///
/// At most one exists; it is created before any VM and dropped after the
/// device is gone (field order in the module struct).
pub(crate) struct DebugfsRoot(());

impl DebugfsRoot {
    /// Creates the directory (a no-op without debugfs).
    pub(crate) fn new() -> Self {
        // SAFETY: called once at module load.
        unsafe { nsvm_debugfs_init() };
        Self(())
    }
}

impl Drop for DebugfsRoot {
    fn drop(&mut self) {
        // SAFETY: every VM (and so every entry below) is gone: the module
        // cannot unload while an fd is open.
        unsafe { nsvm_debugfs_exit() };
    }
}

/// A debugfs entry removed on drop (with everything below it).
///
/// # Invariants
///
/// `0` holds null or a dentry returned by the shim, removed once on drop.
pub(crate) struct DebugfsEntry(core::sync::atomic::AtomicPtr<c_void>);

impl DebugfsEntry {
    /// An empty entry.
    pub(crate) const fn empty() -> Self {
        Self(core::sync::atomic::AtomicPtr::new(core::ptr::null_mut()))
    }

    fn cname(name: &[u8], buf: &mut [u8; 32]) -> *const u8 {
        let n = name.len().min(31);
        buf[..n].copy_from_slice(&name[..n]);
        buf[n] = 0;
        buf.as_ptr()
    }

    /// Makes this entry the directory `name` under `parent` (or the root).
    pub(crate) fn make_dir(&self, name: &[u8], parent: Option<&DebugfsEntry>) {
        let mut b = [0u8; 32];
        let p = parent.map_or(core::ptr::null_mut(), |e| e.0.load(core::sync::atomic::Ordering::Acquire));
        // SAFETY: NUL-terminated name; `p` is null or a live dentry of ours
        // (the parent outlives the child: a vCPU holds its VM).
        let d = unsafe { nsvm_debugfs_dir(Self::cname(name, &mut b), p) };
        self.0.store(d, core::sync::atomic::Ordering::Release);
    }

    /// Makes this entry the vmcb dump file `name` of `vcpu` in `dir`.
    ///
    /// # Safety
    ///
    /// `vcpu` must stay valid until this entry is dropped (it must be a field
    /// of the vCPU that is dropped before the rest of it).
    pub(crate) unsafe fn make_vmcb_file(&self, name: &[u8], dir: &DebugfsEntry, vcpu: *const c_void) {
        let mut b = [0u8; 32];
        let p = dir.0.load(core::sync::atomic::Ordering::Acquire);
        // SAFETY: NUL-terminated name, live parent; the caller keeps `vcpu`
        // valid for the file's life, and removal waits for readers.
        let d = unsafe { nsvm_debugfs_vmcb_file(Self::cname(name, &mut b), p, vcpu.cast_mut()) };
        self.0.store(d, core::sync::atomic::Ordering::Release);
    }
}

impl Drop for DebugfsEntry {
    fn drop(&mut self) {
        let d = self.0.swap(core::ptr::null_mut(), core::sync::atomic::Ordering::AcqRel);
        if !d.is_null() {
            // SAFETY: by the type invariant `d` came from the shim.
            unsafe { nsvm_debugfs_remove(d) };
        }
    }
}
