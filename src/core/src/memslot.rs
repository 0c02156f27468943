// SPDX-License-Identifier: GPL-2.0
//! Guest memory slots with KVM's semantics for `KVM_SET_USER_MEMORY_REGION`
//! and `KVM_SET_USER_MEMORY_REGION2` (Linux 7.2 `virt/kvm/kvm_main.c`,
//! `Documentation/virt/kvm/api.rst` 4.35): create, move, change flags, delete
//! with size 0, `EINVAL` for misalignment, unknown flags, bad ids or changes
//! KVM does not allow, `EEXIST` for overlaps.
//!
//! The table is pure data: the module pins and maps the backing pages; this
//! file only decides what a request means.

/// Page size of guest memory.
pub const PAGE_SIZE: u64 = 4096;
/// `KVM_MEM_LOG_DIRTY_PAGES`.
pub const KVM_MEM_LOG_DIRTY_PAGES: u32 = 1 << 0;
/// `KVM_MEM_READONLY`.
pub const KVM_MEM_READONLY: u32 = 1 << 1;
/// `KVM_MEM_GUEST_MEMFD` (not supported by nsvm: no private memory).
pub const KVM_MEM_GUEST_MEMFD: u32 = 1 << 2;
/// Flags nsvm implements: dirty logging (`crate::dirty_log`) and
/// read-only slots.
pub const SUPPORTED_FLAGS: u32 = KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY;
/// Number of user memory slots per VM (`KVM_CAP_NR_MEMSLOTS`).
pub const MAX_SLOTS: usize = 256;
/// Largest slot: 2^40 bytes of guest memory (KVM caps slots at 2^31 pages).
pub const MAX_SLOT_BYTES: u64 = 1 << 40;
/// Highest user address + 1 on x86-64 with 4-level paging (`TASK_SIZE_MAX`).
pub const USER_ADDR_END: u64 = (1 << 47) - PAGE_SIZE;

/// One memory slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    /// Slot id (low 16 bits of `kvm_userspace_memory_region.slot`).
    pub id: u16,
    /// `KVM_MEM_*` flags.
    pub flags: u32,
    /// First guest physical address.
    pub gpa: u64,
    /// Size in bytes (multiple of [`PAGE_SIZE`], not zero).
    pub size: u64,
    /// Userspace address of the first byte.
    pub uaddr: u64,
}

impl Slot {
    /// One past the last guest physical address.
    pub const fn end(&self) -> u64 {
        self.gpa + self.size
    }
    /// Whether `gpa` falls in this slot.
    pub const fn contains(&self, gpa: u64) -> bool {
        gpa >= self.gpa && gpa < self.end()
    }
    /// Whether the slot is read-only for the guest.
    pub const fn readonly(&self) -> bool {
        self.flags & KVM_MEM_READONLY != 0
    }
    /// Whether the slot logs dirty pages (`KVM_MEM_LOG_DIRTY_PAGES`).
    pub const fn logging(&self) -> bool {
        self.flags & KVM_MEM_LOG_DIRTY_PAGES != 0
    }
    /// Pages in the slot.
    pub const fn npages(&self) -> u64 {
        self.size / PAGE_SIZE
    }
    /// Userspace address backing `gpa` (which must be in the slot).
    pub const fn uaddr_of(&self, gpa: u64) -> u64 {
        self.uaddr + (gpa - self.gpa)
    }
}

/// A `KVM_SET_USER_MEMORY_REGION(2)` request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// `slot`: address space in bits 31:16, id in 15:0.
    pub slot: u32,
    /// `flags`.
    pub flags: u32,
    /// `guest_phys_addr`.
    pub gpa: u64,
    /// `memory_size`; 0 deletes.
    pub size: u64,
    /// `userspace_addr`.
    pub uaddr: u64,
}

/// Why a request is refused; maps to an errno.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotError {
    /// Bad id, address space, alignment, flags or size, or a change KVM forbids: `EINVAL`.
    Invalid(&'static str),
    /// Overlaps another slot: `EEXIST`.
    Overlap,
    /// No room for another slot: `ENOSPC`.
    NoSpace,
}

/// What a successful request did, so the caller can update mappings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// New slot.
    Create(Slot),
    /// Slot removed (old value).
    Delete(Slot),
    /// Slot moved to another guest address (old, new).
    Move(Slot, Slot),
    /// Only flags changed (old, new).
    Flags(Slot, Slot),
    /// Nothing changed.
    Unchanged,
}

/// Where a [`SlotTable`] keeps its `MAX_SLOTS` entries: an array on the
/// host, heap memory in the kernel (the table is 10 KiB: too big to build on
/// a kernel stack).
pub trait SlotStorage {
    /// The entries.
    fn slots(&self) -> &[Option<Slot>];
    /// The entries, mutably.
    fn slots_mut(&mut self) -> &mut [Option<Slot>];
}

impl SlotStorage for [Option<Slot>; MAX_SLOTS] {
    fn slots(&self) -> &[Option<Slot>] {
        self
    }
    fn slots_mut(&mut self) -> &mut [Option<Slot>] {
        self
    }
}

/// The slots of one VM (one address space: nsvm has no SMM).
#[derive(Clone, Debug)]
pub struct SlotTable<S: SlotStorage = [Option<Slot>; MAX_SLOTS]> {
    slots: S,
    /// 4 KiB pages in all slots (kept by `apply`: summing over the
    /// `MAX_SLOTS` entries costs ~1300 instructions, once per NPT02 fill).
    pages: u64,
    /// One past the highest slot id in use: lookups (`find`, on every
    /// guest-memory access L0 emulates) scan only `slots[..end]`.
    end: usize,
    /// The id of the slot `find` last found (KVM's `last_used_slot`): tried
    /// first, as most lookups in a row hit the same slot (an L1 Linux's
    /// RAM among the VMM's dozen slots).
    last: core::cell::Cell<usize>,
}

impl Default for SlotTable {
    fn default() -> Self {
        Self::new()
    }
}

impl SlotTable {
    /// An empty table in an array.
    pub const fn new() -> Self {
        Self { slots: [None; MAX_SLOTS], pages: 0, end: 0, last: core::cell::Cell::new(0) }
    }
}

impl<S: SlotStorage> SlotTable<S> {
    /// A table over `storage`, which must hold `MAX_SLOTS` empty entries.
    pub fn with_storage(storage: S) -> Self {
        Self { slots: storage, pages: 0, end: 0, last: core::cell::Cell::new(0) }
    }

    /// Checks a request against the table and applies it.
    pub fn apply(&mut self, r: &Request) -> Result<Change, SlotError> {
        use SlotError::Invalid;
        let as_id = r.slot >> 16;
        let id = (r.slot & 0xffff) as usize;
        if as_id != 0 {
            return Err(Invalid("address space id must be 0 (no SMM)"));
        }
        if id >= MAX_SLOTS {
            return Err(Invalid("slot id beyond KVM_CAP_NR_MEMSLOTS"));
        }
        if r.flags & !SUPPORTED_FLAGS != 0 {
            return Err(Invalid("unknown or unsupported flags"));
        }
        if !r.size.is_multiple_of(PAGE_SIZE) {
            return Err(Invalid("memory_size is not a multiple of the page size"));
        }
        if !r.gpa.is_multiple_of(PAGE_SIZE) {
            return Err(Invalid("guest_phys_addr is not page aligned"));
        }
        if !r.uaddr.is_multiple_of(PAGE_SIZE) {
            return Err(Invalid("userspace_addr is not page aligned"));
        }
        if id >= self.slots.slots().len() {
            return Err(Invalid("slot id beyond KVM_CAP_NR_MEMSLOTS"));
        }
        let old = self.slots.slots()[id];
        if r.size == 0 {
            // api.rst: "a memory_size of zero deletes the slot"; KVM refuses
            // to delete a slot that does not exist.
            return match old {
                Some(o) => {
                    self.slots.slots_mut()[id] = None;
                    self.pages -= o.size / PAGE_SIZE;
                    self.end = self.slots.slots().iter().rposition(|s| s.is_some()).map_or(0, |i| i + 1);
                    Ok(Change::Delete(o))
                }
                None => Err(Invalid("deleting a slot that does not exist")),
            };
        }
        if r.size > MAX_SLOT_BYTES {
            return Err(Invalid("memory_size too large"));
        }
        if r.gpa.checked_add(r.size).is_none_or(|e| e > (1 << 52)) {
            return Err(Invalid("guest range beyond the physical address space"));
        }
        if r.uaddr.checked_add(r.size).is_none_or(|e| e > USER_ADDR_END) {
            return Err(Invalid("userspace range is not in user space"));
        }
        let new = Slot { id: id as u16, flags: r.flags, gpa: r.gpa, size: r.size, uaddr: r.uaddr };
        if let Some(o) = old {
            // kvm_main.c: an existing slot may move or change flags, but not
            // its size, its userspace address or its READONLY flag.
            if o.size != new.size || o.uaddr != new.uaddr {
                return Err(Invalid("an existing slot cannot change size or userspace_addr"));
            }
            if (o.flags ^ new.flags) & KVM_MEM_READONLY != 0 {
                return Err(Invalid("KVM_MEM_READONLY cannot change on an existing slot"));
            }
        }
        let moving = old.is_none_or(|o| o.gpa != new.gpa);
        if moving && self.overlaps(id, new.gpa, new.end()) {
            return Err(SlotError::Overlap);
        }
        self.slots.slots_mut()[id] = Some(new);
        if old.is_none() {
            self.pages += new.size / PAGE_SIZE;
            self.end = self.end.max(id + 1);
        }
        Ok(match old {
            None => Change::Create(new),
            Some(o) if o.gpa != new.gpa => Change::Move(o, new),
            Some(o) if o.flags != new.flags => Change::Flags(o, new),
            Some(_) => Change::Unchanged,
        })
    }

    fn overlaps(&self, except: usize, start: u64, end: u64) -> bool {
        self.slots
            .slots()
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != except)
            .filter_map(|(_, s)| s.as_ref())
            .any(|s| start < s.end() && s.gpa < end)
    }

    /// The slot containing `gpa`.
    pub fn find(&self, gpa: u64) -> Option<&Slot> {
        let slots = &self.slots.slots()[..self.end];
        if let Some(Some(s)) = slots.get(self.last.get()) {
            if s.contains(gpa) {
                return Some(s);
            }
        }
        let (i, s) = slots.iter().enumerate().find_map(|(i, s)| s.as_ref().filter(|s| s.contains(gpa)).map(|s| (i, s)))?;
        self.last.set(i);
        Some(s)
    }

    /// The slot with id `id`.
    pub fn by_id(&self, id: u16) -> Option<&Slot> {
        self.slots.slots().get(usize::from(id))?.as_ref()
    }

    /// Number of 4 KiB pages in all slots.
    pub fn total_pages(&self) -> u64 {
        self.pages
    }

    /// Every slot.
    pub fn iter(&self) -> impl Iterator<Item = &Slot> {
        self.slots.slots()[..self.end].iter().flatten()
    }

    /// Number of slots in use.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether no slot is in use.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(slot: u32, gpa: u64, size: u64, uaddr: u64) -> Request {
        Request { slot, flags: 0, gpa, size, uaddr }
    }

    #[test]
    fn create_find_delete() {
        let mut t = SlotTable::new();
        let c = t.apply(&req(0, 0, 0x10000, 0x7000_0000)).unwrap();
        assert!(matches!(c, Change::Create(s) if s.size == 0x10000));
        let s = t.find(0x1234).unwrap();
        assert_eq!(s.uaddr_of(0x1234), 0x7000_1234);
        assert!(t.find(0x10000).is_none());
        assert_eq!(t.len(), 1);
        assert!(matches!(t.apply(&req(0, 0, 0, 0)), Ok(Change::Delete(_))));
        assert!(t.is_empty());
        assert_eq!(t.apply(&req(0, 0, 0, 0)), Err(SlotError::Invalid("deleting a slot that does not exist")));
    }

    #[test]
    fn total_pages_follows_create_move_delete() {
        let mut t = SlotTable::new();
        t.apply(&req(0, 0, 0x10000, 0x7000_0000)).unwrap();
        t.apply(&req(3, 0x100000, 0x3000, 0x7100_0000)).unwrap();
        assert_eq!(t.total_pages(), 19);
        t.apply(&req(3, 0x200000, 0x3000, 0x7100_0000)).unwrap(); // move
        assert!(t.apply(&req(3, 0x200000, 0x4000, 0x7100_0000)).is_err()); // resize refused
        assert_eq!(t.total_pages(), 19);
        t.apply(&req(0, 0, 0, 0)).unwrap();
        assert_eq!(t.total_pages(), 3);
        assert_eq!(t.total_pages(), t.iter().map(|s| s.size / PAGE_SIZE).sum::<u64>());
    }

    #[test]
    fn lookups_see_every_slot_in_use() {
        let mut t = SlotTable::new();
        t.apply(&req(200, 0x100000, 0x1000, 0x7000_0000)).unwrap();
        t.apply(&req(5, 0, 0x1000, 0x7100_0000)).unwrap();
        assert_eq!(t.find(0x100800).map(|s| s.id), Some(200));
        assert_eq!(t.find(0x800).map(|s| s.id), Some(5));
        // Deleting the highest slot keeps the lower one reachable.
        t.apply(&req(200, 0x100000, 0, 0x7000_0000)).unwrap();
        assert_eq!(t.find(0x100800), None);
        assert_eq!(t.find(0x800).map(|s| s.id), Some(5));
        assert_eq!(t.iter().count(), 1);
        t.apply(&req(255, 0x200000, 0x1000, 0x7200_0000)).unwrap();
        assert_eq!(t.find(0x200000).map(|s| s.id), Some(255));
    }

    #[test]
    fn alignment_and_flags() {
        let mut t = SlotTable::new();
        assert!(matches!(t.apply(&req(0, 0x800, 0x1000, 0x1000)), Err(SlotError::Invalid(_))));
        assert!(matches!(t.apply(&req(0, 0, 0x1800, 0x1000)), Err(SlotError::Invalid(_))));
        assert!(matches!(t.apply(&req(0, 0, 0x1000, 0x1001)), Err(SlotError::Invalid(_))));
        let mut r = req(0, 0, 0x1000, 0x1000);
        r.flags = 1 << 7;
        assert!(matches!(t.apply(&r), Err(SlotError::Invalid(_))));
        r.flags = KVM_MEM_GUEST_MEMFD;
        assert!(matches!(t.apply(&r), Err(SlotError::Invalid(_))));
        r.flags = KVM_MEM_READONLY;
        assert!(t.apply(&r).is_ok());
        assert!(t.find(0).unwrap().readonly());
    }

    #[test]
    fn ids_and_sizes() {
        let mut t = SlotTable::new();
        assert!(matches!(t.apply(&req(1 << 16, 0, 0x1000, 0x1000)), Err(SlotError::Invalid(_))));
        assert!(matches!(t.apply(&req(MAX_SLOTS as u32, 0, 0x1000, 0x1000)), Err(SlotError::Invalid(_))));
        assert!(matches!(t.apply(&req(0, 0, MAX_SLOT_BYTES + PAGE_SIZE, 0x1000)), Err(SlotError::Invalid(_))));
        assert!(matches!(t.apply(&req(0, u64::MAX - 0xfff, 0x2000, 0x1000)), Err(SlotError::Invalid(_))));
        assert!(matches!(t.apply(&req(0, 0, 0x2000, USER_ADDR_END - 0x1000)), Err(SlotError::Invalid(_))));
        assert!(matches!(t.apply(&req(0, 0, 0x2000, 0xffff_8000_0000_0000)), Err(SlotError::Invalid(_))));
        // Every id up to the limit works.
        for i in 0..MAX_SLOTS as u64 {
            t.apply(&req(i as u32, i * 0x1000, 0x1000, 0x1000_0000 + i * 0x1000)).unwrap();
        }
        assert_eq!(t.len(), MAX_SLOTS);
    }

    #[test]
    fn heap_storage() {
        struct V(Vec<Option<Slot>>);
        impl SlotStorage for V {
            fn slots(&self) -> &[Option<Slot>] {
                &self.0
            }
            fn slots_mut(&mut self) -> &mut [Option<Slot>] {
                &mut self.0
            }
        }
        let mut t = SlotTable::with_storage(V(vec![None; MAX_SLOTS]));
        t.apply(&req(7, 0x1000, 0x1000, 0x2000)).unwrap();
        assert_eq!(t.find(0x1800).unwrap().id, 7);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn overlap_is_eexist() {
        let mut t = SlotTable::new();
        t.apply(&req(0, 0x10000, 0x10000, 0x1000)).unwrap();
        assert_eq!(t.apply(&req(1, 0x1f000, 0x2000, 0x100000)), Err(SlotError::Overlap));
        assert_eq!(t.apply(&req(1, 0xf000, 0x2000, 0x100000)), Err(SlotError::Overlap));
        assert_eq!(t.apply(&req(1, 0, 0x100000, 0x100000)), Err(SlotError::Overlap));
        assert!(t.apply(&req(1, 0x20000, 0x1000, 0x100000)).is_ok());
        assert!(t.apply(&req(2, 0xf000, 0x1000, 0x200000)).is_ok());
    }

    #[test]
    fn modify_rules() {
        let mut t = SlotTable::new();
        t.apply(&req(3, 0x10000, 0x4000, 0x1000)).unwrap();
        // Same values: unchanged.
        assert_eq!(t.apply(&req(3, 0x10000, 0x4000, 0x1000)), Ok(Change::Unchanged));
        // Move.
        assert!(matches!(t.apply(&req(3, 0x40000, 0x4000, 0x1000)), Ok(Change::Move(o, n)) if o.gpa == 0x10000 && n.gpa == 0x40000));
        assert!(t.find(0x10000).is_none() && t.find(0x40000).is_some());
        // Size or uaddr change refused.
        assert!(matches!(t.apply(&req(3, 0x40000, 0x8000, 0x1000)), Err(SlotError::Invalid(_))));
        assert!(matches!(t.apply(&req(3, 0x40000, 0x4000, 0x2000)), Err(SlotError::Invalid(_))));
        // Dirty logging flag alone may change; READONLY may not.
        let mut r = req(3, 0x40000, 0x4000, 0x1000);
        r.flags = KVM_MEM_LOG_DIRTY_PAGES;
        assert!(matches!(t.apply(&r), Ok(Change::Flags(_, _))));
        r.flags = KVM_MEM_READONLY;
        assert!(matches!(t.apply(&r), Err(SlotError::Invalid(_))));
        // Moving onto another slot overlaps.
        t.apply(&req(4, 0x80000, 0x1000, 0x9000)).unwrap();
        assert_eq!(t.apply(&req(3, 0x7e000, 0x4000, 0x1000)), Err(SlotError::Overlap));
    }
}
