// SPDX-License-Identifier: GPL-2.0
//! Shadow NPT02 for an L2 with nested paging (APM 15.25): its nested page
//! faults, resolved by walking L1's NPT12 and composing the NPT02 leaf, or
//! reflected to L1; NPT02 dropped when the VM's slots change.

use kernel::prelude::*;

use core::sync::atomic::Ordering;

use nsvm_core::msr::efer;
use nsvm_core::nested::{npf, Npt02Key};
use nsvm_core::stats::vcpu as st_idx;
use nsvm_core::vmcb::nested_ctl;

use super::guest_mem::GuestMem;
use crate::hw::pin::{HostPage, PinnedPage};
use super::{Vcpu, VcpuState};
use crate::hw::trace::{self, Npt02Flush};
use crate::vm::VmMem;

/// How L0 resolved a nested page fault of an L2 on shadow NPT02.
pub(super) enum Npf02 {
    /// The NPT02 leaf was composed: resume L2.
    Filled,
    /// A fault in NPT12: #VMEXIT(NPF) to L1 with this EXITINFO1.
    Fault(u64),
    /// NPT12 leads to this L1 physical address, which no RAM slot backs
    /// (or a write to a read-only slot).
    Unbacked(u64),
}

impl Vcpu {
    /// A nested page fault of an L2 on shadow NPT02 (APM 15.25.6): walks
    /// L1's NPT12 for the L2 physical address (EXITINFO2) with the access
    /// the hardware reported (EXITINFO1: write, fetch, and whether the final
    /// address or a guest table was being translated). A fault there is
    /// L1's; otherwise the page is pinned from the VM's slot and the
    /// composed leaf (weaker permissions of NPT12 and the slot) goes into
    /// NPT02, 4 KiB whatever the NPT12 page size.
    pub(super) fn npf02(&self, st: &mut VcpuState) -> Result<Npf02> {
        use nsvm_core::nested::{compose_leaf, walk_npt12};
        let (info1, gpa) = {
            let c = &st.nst.vmcb02.get().control;
            (c.exit_info_1, c.exit_info_2)
        };
        let ncr3 = st.nst.vmcb12.get().control.nested_cr3;
        let nxe = st.cpu.vmcb.get().save.efer & efer::NXE != 0;
        let phys = crate::svm::phys_bits();
        let (write, fetch) = (info1 & npf::RW != 0, info1 & npf::ID != 0);
        let stage = info1 & (npf::FINAL | npf::TABLE);
        let inner = self.vm.mem();
        let t = match walk_npt12(&GuestMem::l1(&inner), ncr3, gpa, write, fetch, nxe, phys, stage) {
            Ok(t) => t,
            Err(code) => return Ok(Npf02::Fault(code)),
        };
        // The walk's accessed/dirty bits go into NPT12 (APM 15.25.5), as the
        // processor's nested walker sets them; NPT02 keeps a clean page
        // read-only so that its first write comes back here for D. (A pin
        // for the update only.)
        for &(ea, bits) in t.ad_updates.iter().filter(|(_, b)| *b != 0) {
            let Some(s12) = inner.slot(ea) else { continue };
            if s12.readonly() {
                continue;
            }
            if let Ok(p) = PinnedPage::pin(s12.uaddr_of(ea & !0xfff), true) {
                if p.fetch_or_u64((ea & 0xfff) as usize, bits) {
                    inner.mark_dirty(ea, 8);
                }
            }
        }
        let Some(slot) = inner.slot(t.l1_gpa) else { return Ok(Npf02::Unbacked(t.l1_gpa)) };
        if write && slot.readonly() {
            return Ok(Npf02::Unbacked(t.l1_gpa));
        }
        // At most twice the VM's memory in L2 mappings (then start over).
        let limit = 2 * inner.total_pages() as usize + 1024;
        if st.nst.npt02.mapped_pages() + 8 >= limit {
            self.stats.bump(st_idx::NPT02_FLUSHES);
            st.drop_npt02(Npt02Flush::Full);
        }
        // The VMM's pages are looked up as for NPT01 (`VmMem::fault_in`):
        // the invalidation count first, then the pages (a reference each
        // while mapping), then the leaves, checked afterwards under the MMU
        // lock and removed again if an invalidation overtook the lookup (the
        // guest then faults again). The leaves keep no reference: any later
        // invalidation bumps the memory generation, and the vCPU drops NPT02
        // before it enters L2 again (`vmrun::enter` checks in guest mode).
        let seq = inner.mmu().seq();
        let may_write = !slot.readonly();
        // A logging slot: only the faulting page of a write fault is mapped
        // writable, and logged (as NPT01's `VmMem::fault_in`); GET/CLEAR of
        // the log bump the memory generation, which drops NPT02.
        let logging = slot.logging();
        // In a logging slot, a read fault maps the page writable (and logs
        // it) as NPT01 does for L1 (`VmMem::fault_in`, KVM's make_spte)
        // the first time it is mapped since logging began (`Mmu::seen`:
        // NPT02 is dropped when the log is read, where KVM's shadow entry
        // stays, write-protected; KVM's nested_dirty_log_test).
        let log_writable = if logging {
            let first = inner.mmu().log_first_map(slot.id, ((t.l1_gpa & !0xfff) - slot.gpa) >> 12);
            write || first
        } else {
            write
        };
        // Prefetch, as KVM's shadow MMU does for a large guest page shadowed
        // by 4 KiB entries (PTE_PREFETCH_NUM = 8): the aligned 8-page block
        // lies in the same NPT12 leaf, just used, so its pages translate
        // with the same permissions (a processor may load translations ahead
        // of use), and to consecutive L1 pages. Not for 4 KiB NPT12 leaves,
        // whose neighbours L1 may still edit without a flush.
        let (block, l1_block) = (gpa & !0x7fff, (t.l1_gpa & !0xfff).wrapping_sub(gpa & 0x7000));
        let force = ((gpa >> 12) & 7) as usize;
        let mut pages: [Option<HostPage>; 8] = Default::default();
        let run = t.page_size > 4096 && slot.contains(l1_block) && slot.contains(l1_block + 0x7fff);
        if run {
            for (i, p) in pages.iter_mut().enumerate() {
                let ua = slot.uaddr_of(l1_block + ((i as u64) << 12));
                // The faulting page as for NPT01; its neighbours only if
                // the VMM maps them now (nothing faulted in for a prefetch).
                let r = if i == force { HostPage::get(ua, write, may_write) } else { HostPage::get_mapped(ua, may_write) };
                match r {
                    Ok(h) => *p = Some(h),
                    Err(e) if i == force => return Err(e),
                    Err(_) => {}
                }
            }
            let mut leaves = [nsvm_core::x86::Pte(0); 8];
            let mut pas = [None; 8];
            for (i, p) in pages.iter().enumerate() {
                let Some(p) = p else { continue };
                let t2 = nsvm_core::nested::Npt12Translation { l1_gpa: l1_block + ((i as u64) << 12), ..t };
                let w = p.writable && (!logging || (i == force && log_writable));
                leaves[i] = compose_leaf(&t2, p.pa, w, true);
                pas[i] = Some(p.pa);
            }
            let mask = st.nst.npt02.map_run(block, &pas, &leaves, force, limit)?;
            let stale = {
                let mut m = inner.mmu();
                let stale = (0..8).any(|i| mask & (1 << i) != 0 && m.retry(seq, slot.uaddr_of(l1_block + ((i as u64) << 12))));
                if !stale && leaves[force].writable() && logging {
                    m.mark_page(slot.id, (l1_block + ((force as u64) << 12) - slot.gpa) >> 12);
                }
                stale
            };
            if stale {
                st.nst.npt02.unmap(block, mask);
                return Ok(Npf02::Filled);
            }
            self.stats.add(st_idx::NPT02_FILLS, u64::from(mask.count_ones()));
            trace::npt02_fill(|| (self.id, gpa, t.l1_gpa, pas[force].unwrap_or(0), mask.count_ones()));
            return Ok(Npf02::Filled);
        }
        let uaddr = slot.uaddr_of(t.l1_gpa & !0xfff);
        let page = HostPage::get(uaddr, write, may_write)?;
        let leaf = compose_leaf(&t, page.pa, page.writable && (!logging || log_writable), true);
        st.nst.npt02.map(gpa, page.pa, leaf, limit)?;
        {
            let mut m = inner.mmu();
            if m.retry(seq, uaddr) {
                drop(m);
                st.nst.npt02.unmap(gpa, 1);
                return Ok(Npf02::Filled);
            }
            if logging && leaf.writable() {
                m.mark_page(slot.id, ((t.l1_gpa & !0xfff) - slot.gpa) >> 12);
            }
        }
        self.stats.bump(st_idx::NPT02_FILLS);
        trace::npt02_fill(|| (self.id, gpa, t.l1_gpa, page.pa, 1));
        Ok(Npf02::Filled)
    }

    /// A nested page fault in NPT12 met by L0's emulation of an access of
    /// L2 (`translate_data`): the #VMEXIT(NPF) the processor's walk would
    /// give L1 (APM 15.25.6: EXITINFO1 the fault's error code, EXITINFO2
    /// the L2 physical address), no event being delivered.
    pub(super) fn npf12_to_l1(&self, st: &mut VcpuState, inner: &VmMem<'_>, gpa: u64, info1: u64) -> Result<super::Next> {
        {
            let c = &mut st.nst.vmcb02.get().control;
            c.exit_code = nsvm_core::exit::NPF;
            c.exit_info_1 = info1;
            c.exit_info_2 = gpa;
            c.exit_int_info = 0;
            c.exit_int_info_err = 0;
        }
        self.stats.bump(st_idx::NPT12_FAULTS);
        Ok(self.reflect_to_l1(st, inner, nsvm_core::exit::NPF)?.unwrap_or(super::Next::Guest))
    }

    /// L1 asked for a flush of L2's translations (TLB_CONTROL) with NPT12,
    /// ASID and NPT01 unchanged: instead of dropping NPT02 and refaulting
    /// every page L2 uses next (KVM's nested transitions ask for one each
    /// time, `nested_svm_transition_tlb_flush`), each leaf of the few pages
    /// mapped since the last drop is checked against NPT12 as it is now and
    /// kept when a fill would compose it again
    /// (`nsvm_core::nested::npt02_leaf_current`: same host page through
    /// NPT01, no permission NPT12 took away, no accessed bit to set). The
    /// flush of L2's ASID that L1 asked for still happens (`vmrun_l1`).
    /// False when NPT02 follows too many pages: the caller drops it.
    pub(super) fn resync_npt02(&self, st: &mut VcpuState, ncr3: u64) -> bool {
        use nsvm_core::nested::{npt02_leaf_current, walk_npt12};
        let nxe = st.cpu.vmcb.get().save.efer & efer::NXE != 0;
        let phys = crate::svm::phys_bits();
        let inner = self.vm.mem();
        // NPT12 read through NPT01 under one hold of the MMU lock (an
        // NPT12 entry NPT01 does not map reads as absent: that leaf goes).
        let mmu = inner.mmu();
        let l1 = crate::npt::Npt01Reader(&mmu.npt);
        // The pages of a run (`npf02`'s prefetch) lie in one large NPT12
        // leaf: one walk for them all.
        let mut last: Option<(u64, nsvm_core::nested::Npt12Translation)> = None;
        let r = st.nst.npt02.resync(|gpa, old| {
            let t = match last.and_then(|(w, t)| t.in_same_leaf(w, gpa)) {
                Some(t) => Some(t),
                None => {
                    let t = walk_npt12(&l1, ncr3, gpa, false, false, nxe, phys, npf::FINAL).ok();
                    last = t.map(|t| (gpa, t));
                    t
                }
            };
            npt02_leaf_current(old, t.as_ref(), |l1_page| mmu.npt.host_page(l1_page))
        });
        drop(mmu);
        let Some(removed) = r else { return false };
        self.stats.bump(nsvm_core::stats::NPT02_SYNCS);
        if removed != 0 {
            trace::npt02_flush(|| (Npt02Flush::Sync as u32, removed as u64));
        }
        true
    }

    /// Drops NPT02 when the VM's slots changed since it was composed.
    pub(super) fn sync_npt02(&self, st: &mut VcpuState) {
        let g = self.vm.memory_generation.load(Ordering::Acquire);
        if let Some(k) = st.nst.npt02.key {
            if k.npt01_generation != g {
                st.drop_npt02(Npt02Flush::Memslots);
                st.nst.npt02.key = Some(Npt02Key { npt01_generation: g, ..k });
                self.stats.bump(st_idx::NPT02_FLUSHES);
            }
        }
    }
}

impl VcpuState {
    /// The running L2 was entered with nested paging (on NPT02): vmcb12's
    /// NP_ENABLE, masked at VMRUN to what L1 was offered.
    pub(super) fn l2_np(&mut self) -> bool {
        self.nst.l2.is_some() && self.nst.vmcb12.get().control.nested_ctl & nested_ctl::NP_ENABLE != 0
    }
}
