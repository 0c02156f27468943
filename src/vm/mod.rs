// SPDX-License-Identifier: GPL-2.0
//! A VM: the object its fd and its vCPUs share — memory slots, NPT01, the
//! sensitive-instruction policy, its identity and statistics. The VM fd's
//! ioctls are in `uapi` (the one place above `vcpu`).

pub(crate) mod apic_bus;
mod clock;
mod coalesced;
mod dirty;
mod irq;
mod msr_filter;
pub(crate) mod irqchip;
pub(crate) mod pit;
mod uapi;

use kernel::prelude::*;
use kernel::sync::lock::mutex::MutexGuard;
use kernel::sync::lock::spinlock::SpinLockGuard;
use kernel::sync::{Arc, Mutex, SpinLock};
use kernel::{new_mutex, new_spinlock};

use nsvm_core::memslot::{Slot, SlotStorage, SlotTable, MAX_SLOTS};
use nsvm_core::paging;
use nsvm_core::sensitive::Policy;

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use crate::hw;
use crate::hw::pin::HostPage;
use crate::npt::{Mapped, Npt, TopUp};
use crate::vmrun::GuestMode;

/// Slot table entries on the heap (10 KiB: not for the kernel stack).
pub(crate) struct HeapSlots(KVec<Option<Slot>>);

impl SlotStorage for HeapSlots {
    fn slots(&self) -> &[Option<Slot>] {
        &self.0
    }
    fn slots_mut(&mut self) -> &mut [Option<Slot>] {
        &mut self.0
    }
}

/// VMs created since load (debugfs directory names).
static VM_SEQ: AtomicU64 = AtomicU64::new(0);

/// Most vCPUs per VM (`KVM_CAP_MAX_VCPUS`, KVM's `KVM_MAX_VCPUS`).
pub(crate) const MAX_VCPUS: u32 = nsvm_core::uapi::cap::KVM_MAX_VCPUS;

/// vCPU ids are below this (`KVM_CAP_MAX_VCPU_ID`, KVM's
/// `KVM_MAX_VCPU_IDS`).
pub(crate) const MAX_VCPU_IDS: u32 = nsvm_core::uapi::cap::KVM_MAX_VCPU_IDS;

/// State protected by the VM lock (a mutex): slot changes and vCPU
/// creation take it; a vCPU holds it while it uses guest memory through the
/// slots (user copies, page lookups that may fault and sleep), so that a
/// slot it found stays what it was until it is done (the part of KVM's SRCU
/// read side nsvm needs). The MMU notifier never takes it.
pub(crate) struct VmInner {
    /// Ids of the vCPUs created so far (bit per id; words up to the
    /// highest id used, so a small VM keeps a word or two).
    pub(super) vcpu_ids: KVec<u64>,
    /// vCPUs created so far, counting one being created (KVM's
    /// `created_vcpus`): at most `MAX_VCPUS`.
    pub(super) created_vcpus: u32,
    /// The boot CPU id (`KVM_SET_BOOT_CPU_ID`, 0 by default): the vCPU
    /// with this id is the reset BSP (`nsvm_core::bsp`). May equal
    /// the id limit, which no vCPU has (KVM accepts the limit itself).
    pub(super) bsp_vcpu_id: u32,
    /// `KVM_CAP_MAX_VCPU_ID` as enabled (0: not yet; the first vCPU fixes
    /// it at `MAX_VCPU_IDS`, KVM's `kvm_arch_vcpu_precreate`): vCPU ids must
    /// be below it.
    pub(super) max_vcpu_ids: u32,
    /// The MSI routes of `KVM_SET_GSI_ROUTING` (split irqchip).
    pub(crate) routes: KVec<nsvm_core::lapic::MsiRoute>,
}

/// State protected by the VM's MMU lock (a spinlock, KVM's `mmu_lock`):
/// what the MMU notifier reads and changes. Never held across a user
/// access, an allocation that may sleep, or a wait; changes of `slots` also
/// hold the VM lock, so a holder of either sees a stable table.
pub(crate) struct Mmu {
    /// Memory slots (entries on the heap).
    pub(crate) slots: SlotTable<HeapSlots>,
    /// NPT01.
    pub(crate) npt: Npt,
    /// Invalidations of the VMM's memory finished since creation (KVM's
    /// `mmu_invalidate_seq`).
    seq: u64,
    /// Invalidations begun and not yet finished, and the union of their
    /// host-virtual ranges (KVM's `mmu_invalidate_in_progress` and range).
    in_progress: u32,
    range: (u64, u64),
    /// The address space went away (the notifier's release): nothing is
    /// mapped any more.
    released: bool,
    /// Dirty bitmaps of the slots with `KVM_MEM_LOG_DIRTY_PAGES`, by slot
    /// id (`nsvm_core::dirty_log`; KVM's `memslot->dirty_bitmap`). While a
    /// slot logs, no NPT01 or NPT02 leaf of it is writable unless the
    /// page's bit is set: write faults set the bit before mapping the page
    /// writable, and `KVM_GET/CLEAR_DIRTY_LOG` write-protect every page
    /// whose bit they clear, under this lock, then `Vm::shootdown`.
    pub(crate) dirty: KVec<Option<KVVec<u64>>>,
    /// Pages newly marked dirty since creation (stat `dirty_pages_logged`).
    pub(crate) dirty_logged: u64,
    /// Per logging slot (by id, beside `dirty`): the pages mapped (NPT01
    /// or NPT02) since the slot began logging; all of them for a slot that
    /// began by a flag change, whose pages may have been mapped before.
    /// A read fault maps a page writable, and logs it, only the first time
    /// (`Mmu::log_first_map`): KVM's TDP MMU maps a read fault writable
    /// and logs it when the page has no SPTE, while the SPTEs present when
    /// logging begins or the log is read are write-protected, not removed,
    /// so reading such a page later logs nothing (KVM's
    /// nested_dirty_log_test). nsvm removes NPT01's leaves when logging
    /// begins and drops NPT02 when the log is read; this keeps KVM's answer.
    pub(crate) seen: KVec<Option<KVVec<u64>>>,
}

/// Module parameter `npt_huge`: 2 MiB NPT01 entries where the VMM maps 2 MiB.
pub(crate) static NPT_HUGE: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(true);

impl Mmu {
    /// Whether a page of the VMM at `uaddr` looked up when `seq` was the
    /// invalidation count may be out of date: an invalidation finished since,
    /// or one covering it is running (as KVM's `mmu_invalidate_retry_gfn`).
    pub(crate) fn retry(&self, seq: u64, uaddr: u64) -> bool {
        self.retry_range(seq, uaddr, uaddr + 1)
    }

    /// `retry` for the VMM's range `[lo, hi)` (a 2 MiB mapping).
    pub(crate) fn retry_range(&self, seq: u64, lo: u64, hi: u64) -> bool {
        self.released || self.seq != seq || (self.in_progress != 0 && lo < self.range.1 && hi > self.range.0)
    }

    /// Marks page `page` of the logging slot `id` dirty (KVM's
    /// `mark_page_dirty_in_slot`); nothing for a slot that does not log.
    pub(crate) fn mark_page(&mut self, id: u16, page: u64) {
        if let Some(Some(b)) = self.dirty.get_mut(usize::from(id)) {
            if nsvm_core::dirty_log::set_bit(b, page) {
                self.dirty_logged += 1;
            }
        }
    }

    /// A fault maps page `page` of the logging slot `id`: whether it is the
    /// page's first mapping since the slot began logging (`seen`), which a
    /// read fault may make writable (and log); the page counts as mapped
    /// from now on.
    pub(crate) fn log_first_map(&mut self, id: u16, page: u64) -> bool {
        match self.seen.get_mut(usize::from(id)) {
            Some(Some(b)) => nsvm_core::dirty_log::set_bit(b, page),
            _ => false,
        }
    }

    /// Marks the pages of `[gpa, gpa + len)` dirty when a logging slot
    /// holds them (a write L0 made into guest memory for the guest).
    pub(crate) fn mark_dirty(&mut self, gpa: u64, len: u64) {
        let Some(s) = self.slots.find(gpa).copied() else { return };
        if !s.logging() {
            return;
        }
        if let Some((first, last)) = nsvm_core::dirty_log::pages_of_write(s.gpa, s.size, gpa, len) {
            for p in first..=last {
                self.mark_page(s.id, p);
            }
        }
    }

    /// The invalidation count now (taken before a page lookup).
    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    /// Removes NPT01's leaves of the guest-physical ranges that the slots
    /// map from `[start, end)` of the VMM; whether `[start, end)` meets a
    /// slot (NPT02s and vmcb12 pins may be built from it even when NPT01
    /// maps none of it).
    fn unmap_hva(&mut self, start: u64, end: u64) -> bool {
        let mut hit = false;
        let Mmu { slots, npt, .. } = self;
        for s in slots.iter() {
            let (lo, hi) = (s.uaddr.max(start), s.uaddr.saturating_add(s.size).min(end));
            if lo >= hi {
                continue;
            }
            hit = true;
            // Whole pages: the range may start or end inside one.
            let g0 = s.gpa + ((lo - s.uaddr) & !0xfff);
            let g1 = s.gpa + ((hi - s.uaddr + 0xfff) & !0xfff).min(s.size);
            npt.unmap_range(g0, g1);
        }
        hit
    }
}

/// One VM.
#[pin_data(PinnedDrop)]
pub(crate) struct Vm {
    /// `/sys/kernel/debug/nsvm/<pid>-<n>/` (first field: removed first).
    pub(crate) debugfs: hw::debugfs::DebugfsEntry,
    /// `KVM_IRQFD`s: dropped before what their callbacks use (the bus).
    pub(crate) irqfds: hw::apic::IrqfdList,
    /// The in-kernel PIT (`KVM_CREATE_PIT2`, vm/pit.rs): before what its
    /// timer's work uses, so that its drop stops them first.
    #[pin]
    pub(crate) pit: pit::PitDev,
    /// The address space of the process that created the VM: every VM and
    /// vCPU ioctl must come from it (as in KVM), since guest memory is that
    /// process's memory.
    pub(crate) mm: hw::task::MmRef,
    /// Thread-group id of the creator, for the stats id (`nsvm-<pid>`).
    pub(crate) pid: i32,
    /// Sensitive-instruction policy: instruction bits and exception bitmap
    /// (`NSVM_SET_POLICY`), read by every vCPU before each entry.
    pub(crate) policy_insns: AtomicU64,
    pub(crate) policy_excs: AtomicU32,
    /// Bumped (under the VM lock, by `zap_done`) whenever an NPT01
    /// translation is removed or replaced (slot deleted, moved, flags
    /// changed): every vCPU flushes its TLB before its next entry
    /// (`vmrun::EntryTlb`), and one whose L2 runs on shadow NPT02 drops it
    /// (its leaves were composed from the old slots).
    pub(crate) memory_generation: AtomicU64,
    /// The MMU notifier on `mm` (unregistered first thing on drop).
    notifier: hw::mmu::Notifier,
    /// Split irqchip enabled (`KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP)`):
    /// vCPUs get an in-kernel local APIC; the reserved I/O APIC pins.
    pub(crate) irqchip_split: core::sync::atomic::AtomicBool,
    pub(crate) ioapic_pins: AtomicU32,
    /// The full irqchip exists (`KVM_CREATE_IRQCHIP`: PICs and I/O APIC in
    /// `irqchip` too), and the PICs' INTR output as last computed.
    pub(crate) irqchip_kernel: core::sync::atomic::AtomicBool,
    pub(crate) pic_output: core::sync::atomic::AtomicBool,
    /// The GSI routing table, PICs and I/O APIC (`irqchip.rs`).
    #[pin]
    pub(crate) irqchip: SpinLock<irqchip::Irqchip>,
    /// `KVM_CAP_X2APIC_API` flags enabled.
    pub(crate) x2apic_api: AtomicU32,
    /// `KVM_CAP_X86_TRIPLE_FAULT_EVENT` enabled: `KVM_GET/SET_VCPU_EVENTS`
    /// carry `triple_fault.pending`.
    pub(crate) triple_fault_event: AtomicBool,
    /// `KVM_CAP_EXCEPTION_PAYLOAD` enabled: pending exceptions and their
    /// payloads in `KVM_GET/SET_VCPU_EVENTS`.
    pub(crate) exception_payload: AtomicBool,
    /// Quirks disabled by `KVM_ENABLE_CAP(KVM_CAP_DISABLE_QUIRKS2)` (of
    /// `nsvm_core::uapi::quirks::SUPPORTED`).
    pub(crate) disabled_quirks: AtomicU64,
    /// `KVM_CAP_MSR_PLATFORM_INFO` (on by default, as KVM): the guest may
    /// read MSR_PLATFORM_INFO.
    pub(crate) platform_info_readable: AtomicBool,
    /// Bumped when `VmInner::routes` changes: vCPUs rescan them.
    pub(crate) routes_gen: AtomicU64,
    /// The APIC bus of the in-kernel local APICs (`apic_bus`); its timers
    /// call back with this VM, so it is dropped with it.
    pub(crate) apic: apic_bus::ApicBus,
    /// Guest mode of each vCPU (by vCPU id; a chunk allocated with the
    /// first vCPU of its range), for kicks and the TLB shootdown. After
    /// `apic`: the APIC timers' callbacks read it until `apic`'s drop has
    /// cancelled them.
    pub(crate) guest_modes: hw::idtable::IdTable<GuestMode>,
    #[pin]
    pub(crate) inner: Mutex<VmInner>,
    /// The VM's clock (`KVM_GET/SET_CLOCK`, the guest's kvmclock): 0 at
    /// creation, then on the host TSC (`nsvm_core::kvmclock::Master`).
    #[pin]
    pub(crate) kvmclock: SpinLock<nsvm_core::kvmclock::Master>,
    /// The matching of the vCPUs' TSC offsets (`nsvm_core::tsc`).
    #[pin]
    pub(crate) tsc_sync: SpinLock<nsvm_core::tsc::TscSync>,
    /// Bumped when `kvmclock` is set: the vCPUs rewrite their records.
    pub(crate) kvmclock_gen: AtomicU64,
    /// MSR_KVM_WALL_CLOCK(_NEW) as last written (KVM keeps one per VM).
    pub(crate) wall_clock_msr: AtomicU64,
    /// `KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2`'s flags (KVM's
    /// `manual_dirty_log_protect`).
    pub(crate) manual_dirty_log: AtomicU64,
    /// `KVM_CAP_X86_USER_SPACE_MSR`: the `KVM_MSR_EXIT_REASON_*` for which
    /// a failed guest RDMSR/WRMSR exits to userspace.
    pub(crate) user_space_msr: AtomicU32,
    /// `KVM_X86_SET_MSR_FILTER` (`msr_filter.rs`); `None`: no filter.
    #[pin]
    pub(crate) msr_filter: Mutex<Option<msr_filter::MsrFilter>>,
    /// `KVM_IOEVENTFD` registrations (`nsvm_core::ioeventfd` rules).
    #[pin]
    pub(crate) ioeventfds: Mutex<KVec<nsvm_core::ioeventfd::Entry<hw::eventfd::EventFd>>>,
    /// Coalesced MMIO/PIO zones (`coalesced.rs`); the lock also serializes
    /// the writers of the ring.
    #[pin]
    pub(crate) coalesced: Mutex<coalesced::Zones>,
    /// The coalesced-MMIO ring (`struct kvm_coalesced_mmio_ring`), one page
    /// per VM as in KVM, mapped at page 2 of every vCPU's mmap.
    pub(crate) coalesced_ring: hw::mem::KPages,
    #[pin]
    pub(crate) mmu: SpinLock<Mmu>,
}

/// Guest memory as a vCPU reaches it: the VM lock held (the slots cannot
/// change), the MMU lock taken for each lookup and never across a user
/// access.
pub(crate) struct VmMem<'a> {
    vm: &'a Vm,
    _slots: MutexGuard<'a, VmInner>,
}

impl<'a> VmMem<'a> {
    /// The MMU state (slots, NPT01), locked.
    pub(crate) fn mmu(&self) -> SpinLockGuard<'a, Mmu> {
        self.vm.mmu.lock()
    }

    /// The slot that holds `gpa`.
    pub(crate) fn slot(&self, gpa: u64) -> Option<Slot> {
        self.mmu().slots.find(gpa).copied()
    }

    /// Guest pages the slots hold.
    pub(crate) fn total_pages(&self) -> u64 {
        self.mmu().slots.total_pages()
    }

    /// Logs a write L0 made into guest memory at `[gpa, gpa + len)` (KVM's
    /// `mark_page_dirty`): string I/O and MMIO completions into RAM,
    /// VMSAVE, vmcb12's write-back, NPT12 accessed/dirty bits.
    pub(crate) fn mark_dirty(&self, gpa: u64, len: u64) {
        self.mmu().mark_dirty(gpa, len);
    }

    /// Reads guest memory through NPT01 (`Npt::read`).
    pub(crate) fn npt_read(&self, gpa: u64, out: &mut [u8]) -> bool {
        self.mmu().npt.read(gpa, out)
    }

    /// A guest quadword through NPT01 (`Npt::read_u64`).
    #[inline(always)]
    pub(crate) fn npt_read_u64(&self, gpa: u64) -> Option<u64> {
        self.mmu().npt.read_u64(gpa)
    }

    /// Maps the page of `gpa` (in `slot`) into NPT01 for a `write` or read
    /// fault, from the VMM's current page table entry, as KVM's fault path:
    /// the invalidation count is read, the page looked up (faulting it in:
    /// may sleep; a reference held meanwhile), then under the MMU lock the
    /// leaf is written only if no invalidation ran or runs over it since
    /// (`Mmu::retry`); otherwise nothing is mapped and the guest faults
    /// again. 2 MiB at once when the VMM maps a huge page there and the slot
    /// covers the aligned 2 MiB with the same alignment. `EFAULT` when the
    /// VMM does not map the address (munmap: `KVM_RUN` fails with it, as
    /// KVM's `kvm_handle_error_pfn`).
    pub(crate) fn fault_in(&self, slot: &Slot, gpa: u64, write: bool) -> Result {
        let vm = self.vm;
        let gpa = gpa & !0xfff;
        let may_write = !slot.readonly();
        let write = write && may_write;
        // A logging slot is mapped 4 KiB at a time, writable for a write
        // fault, and for a read fault the first time the page is mapped
        // since logging began when the VMM maps it writable now (KVM's
        // make_spte with GUP-fast's answer; `Mmu::seen`), and logged then
        // (`Mmu::dirty`). Pages the log write-protected stay mapped
        // read-only, so reads after KVM_GET_DIRTY_LOG log nothing.
        let logging = slot.logging();
        let seq = loop {
            let want = {
                let mut m = vm.mmu.lock();
                if m.npt.is_mapped(gpa, write) {
                    return Ok(());
                }
                match m.npt.topup_wanted() {
                    None => break m.seq(),
                    Some(w) => w,
                }
            };
            let mut t = TopUp::alloc(want.0, want.1)?;
            vm.mmu.lock().npt.topup(&mut t);
            drop(t);
        };
        let uaddr = slot.uaddr_of(gpa);
        let page = HostPage::get(uaddr, write, may_write)?;
        let base = gpa & !(paging::SIZE_2M - 1);
        let huge = (!logging
            && NPT_HUGE.load(Ordering::Relaxed)
            && base >= slot.gpa
            && base + paging::SIZE_2M <= slot.end()
            && slot.uaddr_of(base) % paging::SIZE_2M == 0
            && hw::pin::user_pmd_mapped(uaddr))
            .then(|| page.pa.wrapping_sub(gpa - base))
            .filter(|h| h % paging::SIZE_2M == 0);
        // The whole 2 MiB for a huge mapping (a split or collapse notifies
        // the whole PMD range anyway).
        let (lo, hi) = if huge.is_some() { (slot.uaddr_of(base), slot.uaddr_of(base) + paging::SIZE_2M) } else { (uaddr, uaddr + 0x1000) };
        let mapped = {
            let mut m = vm.mmu.lock();
            if m.retry_range(seq, lo, hi) {
                return Ok(());
            }
            let first = logging && m.log_first_map(slot.id, (gpa - slot.gpa) / nsvm_core::memslot::PAGE_SIZE);
            let writable = page.writable && (write || !logging || first);
            if logging && writable {
                m.mark_page(slot.id, (gpa - slot.gpa) / nsvm_core::memslot::PAGE_SIZE);
            }
            m.npt.map(gpa, page.pa, writable, huge)
        };
        if mapped == Mapped::Replaced {
            vm.shootdown();
        }
        Ok(())
    }
}

impl Vm {
    /// `KVM_CREATE_VM`: a new VM fd.
    pub(crate) fn create(vm_type: usize) -> Result<isize> {
        if vm_type != 0 {
            return Err(EINVAL);
        }
        let ring = hw::mem::KPages::page()?;
        let inner = VmInner { vcpu_ids: KVec::new(), created_vcpus: 0, bsp_vcpu_id: 0, max_vcpu_ids: 0, routes: KVec::new() };
        let mmu = Mmu {
            slots: SlotTable::with_storage(HeapSlots(KVec::from_elem(None, MAX_SLOTS, GFP_KERNEL_ACCOUNT)?)),
            npt: Npt::new()?,
            seq: 0,
            in_progress: 0,
            range: (0, 0),
            released: false,
            dirty: {
                let mut d = KVec::with_capacity(MAX_SLOTS, GFP_KERNEL_ACCOUNT)?;
                for _ in 0..MAX_SLOTS {
                    d.push(None, GFP_KERNEL_ACCOUNT)?;
                }
                d
            },
            dirty_logged: 0,
            seen: {
                let mut d = KVec::with_capacity(MAX_SLOTS, GFP_KERNEL_ACCOUNT)?;
                for _ in 0..MAX_SLOTS {
                    d.push(None, GFP_KERNEL_ACCOUNT)?;
                }
                d
            },
        };
        let vm = Arc::pin_init(
            pin_init!(Vm {
                debugfs: hw::debugfs::DebugfsEntry::empty(),
                irqfds: hw::apic::IrqfdList::new(),
                pit <- pit::PitDev::new(),
                mm: hw::task::MmRef::current(),
                pid: kernel::current!().tgid_nr_ns(None),
                policy_insns: AtomicU64::new(0),
                policy_excs: AtomicU32::new(0),
                memory_generation: AtomicU64::new(0),
                notifier: hw::mmu::Notifier::empty(),
                irqchip_split: core::sync::atomic::AtomicBool::new(false),
                ioapic_pins: AtomicU32::new(0),
                irqchip_kernel: core::sync::atomic::AtomicBool::new(false),
                pic_output: core::sync::atomic::AtomicBool::new(false),
                irqchip <- new_spinlock!(irqchip::Irqchip::new(), "nsvm_irqchip"),
                x2apic_api: AtomicU32::new(0),
                triple_fault_event: AtomicBool::new(false),
                exception_payload: AtomicBool::new(false),
                disabled_quirks: AtomicU64::new(0),
                platform_info_readable: AtomicBool::new(true),
                routes_gen: AtomicU64::new(0),
                apic: apic_bus::ApicBus::new(),
                guest_modes: hw::idtable::IdTable::new(),
                inner <- new_mutex!(inner, "nsvm_vm"),
                mmu <- new_spinlock!(mmu, "nsvm_mmu"),
                kvmclock <- new_spinlock!(clock::master_now(0), "nsvm_kvmclock"),
                kvmclock_gen: AtomicU64::new(0),
                tsc_sync <- new_spinlock!(nsvm_core::tsc::TscSync::default(), "nsvm_tsc_sync"),
                wall_clock_msr: AtomicU64::new(0),
                manual_dirty_log: AtomicU64::new(0),
                ioeventfds <- new_mutex!(KVec::new(), "nsvm_ioeventfds"),
                user_space_msr: AtomicU32::new(0),
                msr_filter <- new_mutex!(None, "nsvm_msr_filter"),
                coalesced <- new_mutex!(coalesced::Zones(KVec::new()), "nsvm_coalesced"),
                coalesced_ring: ring,
            }),
            GFP_KERNEL_ACCOUNT,
        )?;
        // SAFETY: the caller's mm is the one `vm.mm` holds (taken just
        // above); the VM is pinned in its `Arc` and unregisters the notifier
        // in its drop, before any of it goes.
        unsafe { vm.notifier.register(core::ptr::from_ref::<Vm>(&vm).cast())? };
        // debugfs directory "<pid>-<n>", n counting VMs since load.
        let mut name = [0u8; 24];
        let n = fmt_id(&mut name, vm.pid, None);
        let seq = VM_SEQ.fetch_add(1, Ordering::Relaxed);
        let mut dir = [0u8; 32];
        let mut k = 0;
        // The pid: the id without its "kvm-" prefix.
        for b in &name[STATS_ID_PREFIX.len()..n] {
            dir[k] = *b;
            k += 1;
        }
        dir[k] = b'-';
        k += 1;
        let mut digits = [0u8; 20];
        let mut d = digits.len();
        let mut s = seq;
        loop {
            d -= 1;
            digits[d] = b'0' + (s % 10) as u8;
            s /= 10;
            if s == 0 {
                break;
            }
        }
        for b in &digits[d..] {
            if k < dir.len() {
                dir[k] = *b;
                k += 1;
            }
        }
        vm.debugfs.make_dir(&dir[..k], None);
        vm.irqfds.init(Arc::as_ptr(&vm).cast())?;
        Ok(hw::files::new_fd(vm)? as isize)
    }

    /// The guest-mode word of vCPU `id`. Its chunk is allocated before the
    /// vCPU exists (`KVM_CREATE_VCPU`), so a vCPU always has its own; the
    /// fallback for an id without one is never entered.
    pub(crate) fn guest_mode(&self, id: u32) -> &GuestMode {
        static NO_MODE: GuestMode = GuestMode::new();
        self.guest_modes.get(id).unwrap_or(&NO_MODE)
    }

    /// The VM's guest memory for a vCPU (takes the VM lock).
    pub(crate) fn mem(&self) -> VmMem<'_> {
        VmMem { vm: self, _slots: self.inner.lock() }
    }

    /// Completes a removal or downgrade of translations of the VM's memory
    /// (NPT01 entries already gone from the tables; or a change that NPT02s
    /// and vmcb12 pins were built from): bumps the memory generation and
    /// makes every vCPU in guest mode leave it (`GuestMode::kick`), so that
    /// none can use an old translation any more and each flushes (and drops
    /// its NPT02) before it enters again. KVM does the same with its remote
    /// TLB flush. Never sleeps (the MMU notifier calls it, also for ranges
    /// that must not block); called without the MMU lock.
    pub(crate) fn shootdown(&self) {
        self.memory_generation.fetch_add(1, Ordering::SeqCst);
        for (_, m) in self.guest_modes.iter() {
            m.kick();
        }
    }

    /// The MMU notifier's `invalidate_range_start` (src/shim.c): the VMM's
    /// `[start, end)` is about to change. Later faults on it wait for
    /// `invalidate_end`; NPT01's leaves for it go, and when it meets a slot
    /// every vCPU is kicked out of guest mode and will drop its NPT02
    /// (generation) before this returns and the kernel frees the pages.
    /// Never sleeps and never fails, so non-blockable ranges are served as
    /// the others (a notifier that may fail must not have `invalidate_end`).
    pub(crate) fn invalidate_start(&self, start: u64, end: u64) {
        let hit = {
            let mut m = self.mmu.lock();
            if m.in_progress == 0 {
                m.range = (start, end);
            } else {
                m.range = (m.range.0.min(start), m.range.1.max(end));
            }
            m.in_progress += 1;
            m.unmap_hva(start, end)
        };
        if hit {
            self.shootdown();
        }
    }

    /// The MMU notifier's `invalidate_range_end`: faults may map the range
    /// again (with the new pages).
    pub(crate) fn invalidate_end(&self, _start: u64, _end: u64) {
        let mut m = self.mmu.lock();
        m.seq = m.seq.wrapping_add(1);
        m.in_progress = m.in_progress.saturating_sub(1);
    }

    /// The MMU notifier's `release`: the address space goes (the creator
    /// exits, or the VM is destroyed): everything is unmapped and nothing
    /// is mapped again.
    pub(crate) fn release(&self) {
        {
            let mut m = self.mmu.lock();
            m.released = true;
            m.npt.unmap_range(0, u64::MAX);
        }
        self.shootdown();
    }

    /// The current sensitive-instruction policy.
    pub(crate) fn policy(&self) -> Policy {
        Policy { instructions: self.policy_insns.load(Ordering::Relaxed), exceptions: self.policy_excs.load(Ordering::Relaxed) }
    }

    /// The binary stats file (KVM's format) with the current values.
    pub(crate) fn stats_file(&self) -> Result<KVec<u8>> {
        use nsvm_core::stats::{self, vm};
        let mut v = [0u64; vm::COUNT];
        v[vm::VCPUS] = self.inner.lock().vcpu_ids.iter().map(|w| u64::from(w.count_ones())).sum();
        {
            let g = self.mmu.lock();
            v[vm::MEMSLOTS] = g.slots.len() as u64;
            v[vm::NPT_PAGES] = g.npt.mapped_pages() as u64;
            v[vm::NPT_TABLES] = g.npt.table_pages() as u64;
            v[vm::NPT_FILLS] = g.npt.fills;
            v[vm::NPT_UNMAPS] = g.npt.unmaps;
            v[vm::NPT_PAGES_2M] = g.npt.huge_pages() as u64;
            v[vm::DIRTY_PAGES_LOGGED] = g.dirty_logged;
        }
        v[vm::PIT_IRQ0] = self.pit.irq0_edges.load(Ordering::Relaxed);
        let mut id = [0u8; 24];
        let n = fmt_id(&mut id, self.pid, None);
        let mut f = KVec::from_elem(0u8, stats::file_len(vm::COUNT), GFP_KERNEL)?;
        stats::write_file(&mut f, core::str::from_utf8(&id[..n]).unwrap_or("kvm"), |i| stats::VM_DESCS.get(i).copied(), &v);
        Ok(f)
    }
}

#[pinned_drop]
impl PinnedDrop for Vm {
    fn drop(self: Pin<&mut Self>) {
        // First, with the whole VM alive: after this no notifier callback
        // runs or will run (mmu_notifier_unregister waits for them).
        self.notifier.unregister(&self.mm);
    }
}

/// The stats ids' prefix (KVM's).
const STATS_ID_PREFIX: &[u8] = b"kvm-";

/// Writes the stats id `kvm-<pid>` or `kvm-<pid>/vcpu-<id>` into `out`
/// (KVM's ids: its selftests insist on the `kvm` prefix); returns its length.
pub(crate) fn fmt_id(out: &mut [u8; 24], pid: i32, vcpu: Option<u32>) -> usize {
    let mut n = 0;
    let mut put = |s: &[u8]| {
        for b in s {
            if n < out.len() {
                out[n] = *b;
                n += 1;
            }
        }
    };
    let num = |v: u64, buf: &mut [u8; 20]| -> usize {
        let mut i = buf.len();
        let mut v = v;
        loop {
            i -= 1;
            buf[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        i
    };
    let mut b = [0u8; 20];
    put(STATS_ID_PREFIX);
    let i = num(pid.max(0) as u64, &mut b);
    put(&b[i..]);
    if let Some(id) = vcpu {
        put(b"/vcpu-");
        let i = num(u64::from(id), &mut b);
        put(&b[i..]);
    }
    n
}

impl Vm {
    /// A guest write of `len` bytes of `val` to `addr` on `bus`: signals the
    /// `KVM_IOEVENTFD` registration it hits and returns true (the write is
    /// then complete: no exit to userspace), false when none does.
    pub(crate) fn ioeventfd_write(&self, bus: nsvm_core::ioeventfd::Bus, addr: u64, len: u32, val: u64) -> bool {
        let t = self.ioeventfds.lock();
        match nsvm_core::ioeventfd::find_hit(&t, bus, addr, len, val) {
            Some(i) => {
                t[i].h.signal();
                true
            }
            None => false,
        }
    }
}
