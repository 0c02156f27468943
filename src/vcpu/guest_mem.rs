// SPDX-License-Identifier: GPL-2.0
//! Guest memory as L0 reads and writes it: guest-physical addresses through
//! the VM's slots (L1) or through NPT12 first (L2 with nested paging),
//! linear addresses through the guest's page tables, instruction fetch.

use kernel::uaccess::{UserPtr, UserSlice};

use nsvm_core::msr::efer;
use nsvm_core::nested::npf;
use nsvm_core::paging::{self, Access, Mode, TableMem};
use nsvm_core::x86::cr0;
use nsvm_core::insn;
use nsvm_core::mmio;

use super::VcpuState;
use crate::vm::VmMem;

impl VcpuState {
    /// The physical memory of the guest that runs: L1's, or L2's (through
    /// NPT12 when L1 enabled nested paging for it).
    pub(super) fn guest_mem<'a>(&mut self, inner: &'a VmMem<'a>) -> GuestMem<'a> {
        if !self.l2_np() {
            return GuestMem::l1(inner);
        }
        let phys = crate::svm::phys_bits();
        let ncr3 = self.nst.vmcb12.get().control.nested_cr3;
        let nxe = self.cpu.vmcb.get().save.efer & efer::NXE != 0;
        GuestMem(inner, Some(Npt12View { ncr3, nxe, phys }))
    }

    /// Translates a guest linear address for a data access by the guest's
    /// current CPL (APM vol. 2 5.x walks in `paging::walk_guest`).
    pub(super) fn translate(&mut self, inner: &VmMem<'_>, la: u64, write: bool) -> core::result::Result<u64, paging::PageFault> {
        let efer_v = self.efer();
        let mem = self.guest_mem(inner);
        let v = self.vmcb();
        let s = &v.save;
        let mode = Mode::from_regs(s.cr0, s.cr4, efer_v);
        let acc = Access { write, user: s.cpl == 3, fetch: false };
        paging::walk_guest(&mem, mode, s.cr3, la, acc, s.cr0 & cr0::WP != 0, efer_v & efer::NXE != 0)
    }

    /// `translate` for L0's emulation of a data access of L2 (string I/O),
    /// with the nested page faults the processor's walk would take: under
    /// NPT12 each guest page-table access is translated as a write (the
    /// walk may set A/D bits: a read-only table faults, APM 15.25.5; KVM's
    /// walker the same), then the final address with the access's own
    /// rights (APM 15.25.6). A fault in NPT12 is L1's: `Npf12` with the
    /// L2 physical address (the table's page, as KVM reports it) and
    /// EXITINFO1.
    pub(super) fn translate_data(&mut self, inner: &VmMem<'_>, la: u64, write: bool) -> core::result::Result<u64, DataFault> {
        let Some(view) = self.guest_mem(inner).1 else {
            return self.translate(inner, la, write).map_err(DataFault::Pf);
        };
        let efer_v = self.efer();
        let v = self.vmcb();
        let s = &v.save;
        let mode = Mode::from_regs(s.cr0, s.cr4, efer_v);
        let acc = Access { write, user: s.cpl == 3, fetch: false };
        let tables = Npt12Tables { l1: GuestMem::l1(inner), view, fault: core::cell::Cell::new(None) };
        let r = paging::walk_guest(&tables, mode, s.cr3, la, acc, s.cr0 & cr0::WP != 0, efer_v & efer::NXE != 0);
        if let Some((gpa, info1)) = tables.fault.get() {
            return Err(DataFault::Npf12 { gpa, info1 });
        }
        let gpa = r.map_err(DataFault::Pf)?;
        let l1 = GuestMem::l1(inner);
        match nsvm_core::nested::walk_npt12(&l1, view.ncr3, gpa, write, false, view.nxe, view.phys, npf::FINAL) {
            Ok(_) => Ok(gpa),
            Err(info1) => Err(DataFault::Npf12 { gpa, info1 }),
        }
    }

    /// Base of the segment of a string I/O instruction: ES for INS; DS or
    /// the last segment-override prefix for OUTS (APM vol. 3 OUTS). In
    /// 64-bit mode only FS and GS have bases.
    pub(super) fn string_segment_base(&mut self, is_in: bool, bytes: &[u8]) -> u64 {
        let long = self.code_size() == mmio::CodeSize::Bits64;
        let v = self.vmcb();
        let s = &v.save;
        let mut seg = if is_in { 0x26 } else { 0x3e };
        if !is_in {
            for b in bytes.iter().take_while(|b| insn::is_legacy_prefix(**b)) {
                if matches!(b, 0x26 | 0x2e | 0x36 | 0x3e | 0x64 | 0x65) {
                    seg = *b;
                }
            }
        }
        let base = match seg {
            0x26 => s.es.base,
            0x2e => s.cs.base,
            0x36 => s.ss.base,
            0x64 => return s.fs.base,
            0x65 => return s.gs.base,
            _ => s.ds.base,
        };
        if long {
            0
        } else {
            base & 0xffff_ffff
        }
    }

    /// Fetches up to 15 bytes at CS:RIP through the guest's paging; returns
    /// how many could be read.
    #[inline(always)]
    pub(super) fn fetch(&mut self, inner: &VmMem<'_>, out: &mut [u8; 15]) -> usize {
        self.fetch_insn(inner, out).0
    }

    /// `fetch`, and whether the code is 64-bit (CS.L in long mode: the
    /// decoder's REX rule), which it works out anyway.
    pub(super) fn fetch_insn(&mut self, inner: &VmMem<'_>, out: &mut [u8; 15]) -> (usize, bool) {
        let efer_v = self.efer();
        let v = self.vmcb();
        let s = &v.save;
        let mode = Mode::from_regs(s.cr0, s.cr4, efer_v);
        let long = s.cs.attrib & nsvm_core::vmcb::seg_attr::L != 0 && efer_v & efer::LMA != 0;
        let la = if long { s.rip } else { s.cs.base.wrapping_add(s.rip) & 0xffff_ffff };
        let acc = Access { write: false, user: s.cpl == 3, fetch: true };
        let (cr3, wp, nxe) = (s.cr3, s.cr0 & cr0::WP != 0, efer_v & efer::NXE != 0);
        let mem = self.guest_mem(inner);
        let memo = &mut self.cpu.fetch_walks[usize::from(self.nst.l2.is_some())];
        let mut n = 0;
        while n < out.len() {
            let addr = la.wrapping_add(n as u64);
            let key = paging::WalkKey { mode, cr3, page: addr & !0xfff, access: acc, wp, nxe };
            let Ok(gpa) = memo.walk(&mem, key, addr) else { break };
            let chunk = core::cmp::min(out.len() - n, (4096 - (gpa & 0xfff)) as usize);
            if !mem.read_bytes(gpa, &mut out[n..n + chunk]) {
                break;
            }
            n += chunk;
        }
        (n, long)
    }
}

/// Why `translate_data` failed.
pub(super) enum DataFault {
    /// A #PF for the guest.
    Pf(paging::PageFault),
    /// A nested page fault in L1's NPT12: #VMEXIT(NPF) to L1 with
    /// EXITINFO2 `gpa` and EXITINFO1 `info1`.
    Npf12 { gpa: u64, info1: u64 },
}

/// L2's page tables read through NPT12 for `translate_data`: each table
/// access translated as a write (`npf::TABLE`); the first fault is kept.
struct Npt12Tables<'a> {
    l1: GuestMem<'a>,
    view: Npt12View,
    fault: core::cell::Cell<Option<(u64, u64)>>,
}

impl TableMem for Npt12Tables<'_> {
    fn read(&self, pa: u64) -> Option<u64> {
        if self.fault.get().is_some() {
            return None;
        }
        let v = self.view;
        match nsvm_core::nested::walk_npt12(&self.l1, v.ncr3, pa, true, false, v.nxe, v.phys, npf::TABLE) {
            Ok(t) => self.l1.read(t.l1_gpa),
            Err(info1) => {
                self.fault.set(Some((pa & !0xfff, info1)));
                None
            }
        }
    }
    fn write(&mut self, _pa: u64, _v: u64) {}
    fn alloc_table(&mut self) -> Option<u64> {
        None
    }
}

/// Guest-physical memory as seen through the VM's slots, for walking the
/// guest's page tables, fetching instructions and the emulated accesses
/// (string I/O, VMLOAD/VMSAVE, vmcb12). Reads and writes copy from and to
/// the VMM's memory, so they must run in the VMM process; writes never reach
/// read-only slots.
/// With an NPT12 view, addresses are L2 physical and go through L1's
/// nested page table first (an L2 running with nested paging).
pub(super) struct GuestMem<'a>(&'a VmMem<'a>, Option<Npt12View>);

/// L1's nested page table as L0 walks it for an L2 (APM 15.25.5: in the
/// long-mode format, NX per L1's EFER.NXE).
#[derive(Clone, Copy)]
struct Npt12View {
    ncr3: u64,
    nxe: bool,
    phys: u8,
}

impl<'a> GuestMem<'a> {
    /// L1 physical memory: the VM's slots.
    pub(super) fn l1(inner: &'a VmMem<'a>) -> Self {
        GuestMem(inner, None)
    }

    /// Calls `f` with the L1 physical address and length of each piece of
    /// `[gpa, gpa + len)` (split at 4 KiB boundaries under NPT12); false
    /// when a piece does not translate (or `f` fails).
    fn pieces(&self, gpa: u64, len: usize, write: bool, mut f: impl FnMut(u64, usize, usize) -> bool) -> bool {
        let Some(v) = self.1 else { return f(gpa, 0, len) };
        let l1 = GuestMem::l1(self.0);
        let mut done = 0;
        while done < len {
            let g = gpa.wrapping_add(done as u64);
            let n = core::cmp::min(len - done, (4096 - (g & 0xfff)) as usize);
            let t = nsvm_core::nested::walk_npt12(&l1, v.ncr3, g, write, false, v.nxe, v.phys, npf::FINAL);
            let Ok(t) = t else { return false };
            if !f(t.l1_gpa, done, n) {
                return false;
            }
            done += n;
        }
        true
    }

    pub(super) fn read_bytes(&self, gpa: u64, out: &mut [u8]) -> bool {
        if self.1.is_some() {
            let l1 = GuestMem::l1(self.0);
            let len = out.len();
            return self.pieces(gpa, len, false, |p, at, n| l1.read_bytes(p, &mut out[at..at + n]));
        }
        // Through NPT01's page when L1 has touched it (page-table pages,
        // code: the emulated NRIPS and instruction-length decodes).
        if self.0.npt_read(gpa, out) {
            return true;
        }
        // Otherwise a user copy, with the VM lock (the slot stays) and
        // without the MMU lock (the copy may fault and sleep).
        let Some(slot) = self.0.slot(gpa) else { return false };
        if gpa + out.len() as u64 > slot.end() {
            return false;
        }
        let ua = slot.uaddr_of(gpa) as usize;
        UserSlice::new(UserPtr::from_addr(ua), out.len()).reader().read_slice(out).is_ok()
    }
}

impl GuestMem<'_> {
    /// Writes guest RAM (not read-only slots); false when not possible.
    pub(super) fn write_bytes(&self, gpa: u64, data: &[u8]) -> bool {
        if self.1.is_some() {
            let l1 = GuestMem::l1(self.0);
            return self.pieces(gpa, data.len(), true, |p, at, n| l1.write_bytes(p, &data[at..at + n]));
        }
        let Some(slot) = self.0.slot(gpa) else { return false };
        if slot.readonly() || gpa + data.len() as u64 > slot.end() {
            return false;
        }
        let ua = slot.uaddr_of(gpa) as usize;
        let ok = UserSlice::new(UserPtr::from_addr(ua), data.len()).writer().write_slice(data).is_ok();
        if ok {
            // L0 wrote for the guest: logged as a guest write would be.
            self.0.mark_dirty(gpa, data.len() as u64);
        }
        ok
    }
}

impl TableMem for GuestMem<'_> {
    #[inline(always)]
    fn read(&self, pa: u64) -> Option<u64> {
        if self.1.is_none() {
            if let Some(v) = self.0.npt_read_u64(pa) {
                return Some(v);
            }
        }
        let mut b = [0u8; 8];
        self.read_bytes(pa, &mut b).then(|| u64::from_ne_bytes(b))
    }
    fn write(&mut self, _pa: u64, _v: u64) {}
    fn alloc_table(&mut self) -> Option<u64> {
        None
    }
}
