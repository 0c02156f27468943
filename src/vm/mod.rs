// SPDX-License-Identifier: GPL-2.0
//! A VM: the object its fd and its vCPUs share — memory slots, NPT01, the
//! sensitive-instruction policy, its identity and statistics. The VM fd's
//! ioctls are in `uapi` (the one place above `vcpu`).

mod uapi;

use kernel::prelude::*;
use kernel::sync::{Arc, Mutex};
use kernel::new_mutex;

use nsvm_core::memslot::{Slot, SlotStorage, SlotTable, MAX_SLOTS};
use nsvm_core::sensitive::Policy;

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::hw;
use crate::npt::Npt;
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

/// Most vCPUs per VM (`KVM_CAP_MAX_VCPUS`).
pub(crate) const MAX_VCPUS: u32 = 64;

/// State protected by the VM lock.
pub(crate) struct VmInner {
    /// Memory slots (entries on the heap).
    pub(crate) slots: SlotTable<HeapSlots>,
    /// NPT01.
    pub(crate) npt: Npt,
    /// Ids of the vCPUs created so far (bit per id).
    vcpu_ids: u64,
}

/// One VM.
#[pin_data]
pub(crate) struct Vm {
    /// `/sys/kernel/debug/nsvm/<pid>-<n>/` (first field: removed first).
    pub(crate) debugfs: hw::debugfs::DebugfsEntry,
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
    /// Guest mode of each vCPU (index: vCPU id), for the TLB shootdown.
    pub(crate) guest_modes: [GuestMode; MAX_VCPUS as usize],
    #[pin]
    pub(crate) inner: Mutex<VmInner>,
    /// The VM's clock as an offset from the host's boot-time clock
    /// (`KVM_GET/SET_CLOCK`, `nsvm_core::clock`); 0 at creation.
    pub(crate) kvmclock_offset: core::sync::atomic::AtomicI64,
    /// `KVM_IOEVENTFD` registrations (`nsvm_core::ioeventfd` rules).
    #[pin]
    pub(crate) ioeventfds: Mutex<KVec<nsvm_core::ioeventfd::Entry<hw::eventfd::EventFd>>>,
}

impl Vm {
    /// `KVM_CREATE_VM`: a new VM fd.
    pub(crate) fn create(vm_type: usize) -> Result<isize> {
        if vm_type != 0 {
            return Err(EINVAL);
        }
        let inner = VmInner {
            slots: SlotTable::with_storage(HeapSlots(KVec::from_elem(None, MAX_SLOTS, GFP_KERNEL_ACCOUNT)?)),
            npt: Npt::new()?,
            vcpu_ids: 0,
        };
        let vm = Arc::pin_init(
            pin_init!(Vm {
                debugfs: hw::debugfs::DebugfsEntry::empty(),
                mm: hw::task::MmRef::current(),
                pid: kernel::current!().tgid_nr_ns(None),
                policy_insns: AtomicU64::new(0),
                policy_excs: AtomicU32::new(0),
                memory_generation: AtomicU64::new(0),
                guest_modes: [const { GuestMode::new() }; MAX_VCPUS as usize],
                inner <- new_mutex!(inner, "nsvm_vm"),
                kvmclock_offset: core::sync::atomic::AtomicI64::new((hw::task::boottime_ns() as i64).wrapping_neg()),
                ioeventfds <- new_mutex!(KVec::new(), "nsvm_ioeventfds"),
            }),
            GFP_KERNEL_ACCOUNT,
        )?;
        // debugfs directory "<pid>-<n>", n counting VMs since load.
        let mut name = [0u8; 24];
        let n = fmt_id(&mut name, vm.pid, None);
        let seq = VM_SEQ.fetch_add(1, Ordering::Relaxed);
        let mut dir = [0u8; 32];
        let mut k = 0;
        for b in &name[5..n] {
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
        Ok(hw::files::new_fd(vm)? as isize)
    }

    /// Completes a removal or downgrade of translations of the VM's memory
    /// (NPT01 entries already gone from the tables, their pages still
    /// pinned; or a slot change that NPT02s and vmcb12 pins were built
    /// from): bumps the memory generation, makes every vCPU in guest mode
    /// leave it (`GuestMode::kick`), so that none can use an old
    /// translation any more and each flushes (and drops its NPT02) before
    /// it enters again, then releases NPT01's pages. KVM does the same with
    /// its remote TLB flush before freeing. Called with the VM lock held
    /// (`inner`), which keeps vCPUs from mapping the range again meanwhile.
    pub(crate) fn shootdown(&self, inner: &mut VmInner) {
        self.memory_generation.fetch_add(1, Ordering::SeqCst);
        for m in self.guest_modes.iter() {
            m.kick();
        }
        inner.npt.release_stale();
    }

    /// The current sensitive-instruction policy.
    pub(crate) fn policy(&self) -> Policy {
        Policy { instructions: self.policy_insns.load(Ordering::Relaxed), exceptions: self.policy_excs.load(Ordering::Relaxed) }
    }

    /// The binary stats file (KVM's format) with the current values.
    pub(crate) fn stats_file(&self) -> Result<KVec<u8>> {
        use nsvm_core::stats::{self, vm};
        let mut v = [0u64; vm::COUNT];
        {
            let g = self.inner.lock();
            v[vm::VCPUS] = u64::from(g.vcpu_ids.count_ones());
            v[vm::MEMSLOTS] = g.slots.len() as u64;
            v[vm::NPT_PAGES] = g.npt.mapped_pages() as u64;
            v[vm::NPT_TABLES] = g.npt.table_pages() as u64;
            v[vm::NPT_FILLS] = g.npt.fills;
            v[vm::NPT_UNMAPS] = g.npt.unmaps;
            v[vm::NPT_PAGES_2M] = g.npt.huge_pages() as u64;
        }
        let mut id = [0u8; 24];
        let n = fmt_id(&mut id, self.pid, None);
        let mut f = KVec::from_elem(0u8, stats::file_len(vm::COUNT), GFP_KERNEL)?;
        stats::write_file(&mut f, core::str::from_utf8(&id[..n]).unwrap_or("nsvm"), |i| stats::VM_DESCS.get(i).copied(), &v);
        Ok(f)
    }
}


/// Writes the stats id `nsvm-<pid>` or `nsvm-<pid>/vcpu-<id>` into `out`;
/// returns its length.
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
    put(b"nsvm-");
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
