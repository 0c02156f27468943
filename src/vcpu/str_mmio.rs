// SPDX-License-Identifier: GPL-2.0
//! LODS, MOVS and STOS with an element on MMIO (APM vol. 3), as KVM's
//! emulator shows them to userspace: one `KVM_EXIT_MMIO` of the element's
//! size per element on MMIO (in-kernel devices — the I/O APIC window, an
//! ioeventfd — take theirs without an exit). A read exit (LODS, MOVS from
//! MMIO) leaves the registers as they were; the next `KVM_RUN` puts the
//! data in rAX (LODS) or writes it to the destination (MOVS: RAM, or
//! another MMIO address, which is then a write exit), then moves
//! rSI/rDI/rCX. A write exit (STOS, MOVS to MMIO) comes after the element
//! is done, as KVM completes an instruction before exiting for its MMIO
//! write: rSI/rDI/rCX have moved, and RIP is past the instruction without
//! REP. A REP instruction keeps RIP (with RFLAGS.RF set) and runs again
//! for the next element, after the last one too: KVM's emulator checks
//! the count before an element, never after, so the processor ends the
//! instruction with rCX = 0 (the elements on RAM run in the guest). Register effects and
//! decoding: `nsvm_core::mmio::{StrAccess, decode_string}`.

use kernel::prelude::*;

use nsvm_core::mmio::{self, StrAccess, StrKind};
use nsvm_core::paging::PageFault;
use nsvm_core::stats::vcpu as st_idx;
use nsvm_core::user_exit::UserExit;
use nsvm_core::x86::{rflags, Gpr};

use super::{Next, Pending, Vcpu, VcpuState};
use crate::vm::VmMem;

/// A string instruction between its element's read exit and the next
/// `KVM_RUN`: what finishing the element needs.
#[derive(Clone, Copy)]
pub(super) struct StrCtx {
    s: StrAccess,
    /// RIP past the instruction (32-bit wrap outside 64-bit mode).
    next_rip: u64,
    df: bool,
    /// The destination's linear address (MOVS): translated once the
    /// source's data is there, as KVM's emulator writes after the read.
    dst_la: u64,
}

/// Where an element is in guest-physical memory.
enum Loc {
    /// RAM (writable RAM for a write): one or two pieces (`len` bytes at
    /// `gpa`; the second when the element crosses a page).
    Ram([(u64, usize); 2]),
    /// Not RAM: an MMIO access at this address.
    Mmio(u64),
    /// Across a page boundary and not all RAM: KVM splits such an access
    /// into two MMIO fragments; not emulated here.
    Split(u64),
}

impl VcpuState {
    /// Where the `size` bytes at linear `la` are (a #PF when the guest's
    /// page tables refuse them: its address and error).
    fn locate(&mut self, inner: &VmMem<'_>, la: u64, size: usize, write: bool) -> core::result::Result<Loc, (u64, PageFault)> {
        let is_ram = |g: u64| inner.slot(g).is_some_and(|sl| !(write && sl.readonly()));
        let g0 = self.translate(inner, la, write).map_err(|pf| (la, pf))?;
        let first = core::cmp::min(size, (0x1000 - (la & 0xfff)) as usize);
        if first == size {
            return Ok(if is_ram(g0) { Loc::Ram([(g0, size), (0, 0)]) } else { Loc::Mmio(g0) });
        }
        let la1 = la.wrapping_add(first as u64);
        let g1 = self.translate(inner, la1, write).map_err(|pf| (la1, pf))?;
        Ok(if is_ram(g0) && is_ram(g1) { Loc::Ram([(g0, first), (g1, size - first)]) } else { Loc::Split(g0) })
    }

    /// The register effects of the element (`StrAccess::advance`), and RIP
    /// past the instruction when it moves there now (returned: without
    /// REP; a REP instruction runs again, ended by the processor once rCX
    /// is 0). RFLAGS.RF as KVM writes it back (`rflags_after`) when
    /// `exiting` (a write exit) or the instruction is done; untouched
    /// between the elements of a REP done in the kernel, as KVM's emulator
    /// goes on to the next element without writing RFLAGS back.
    fn str_advance(&mut self, c: &StrCtx, exiting: bool) -> bool {
        let mut regs = self.all_gprs();
        let done = c.s.advance(&mut regs, c.df);
        self.set_all_gprs(&regs);
        let v = self.vmcb();
        if exiting || done {
            v.save.rflags = c.s.rflags_after(v.save.rflags);
        }
        if done {
            v.save.rip = c.next_rip;
            v.control.int_state &= !nsvm_core::vmcb::int_state::SHADOW;
        }
        done
    }
}

impl Vcpu {
    /// A nested page fault of LODS, MOVS or STOS (decoded as `s` from
    /// `bytes`) outside RAM: finds which element is on MMIO and does it.
    /// Neither on MMIO (the guest's page tables changed meanwhile) runs the
    /// instruction again.
    pub(super) fn string_mmio(&self, st: &mut VcpuState, inner: &VmMem<'_>, s: StrAccess, bytes: &[u8]) -> Result<Next> {
        let regs = st.all_gprs();
        let (rip, cs) = (st.vmcb().save.rip, st.code_size());
        let long = cs == mmio::CodeSize::Bits64;
        let df = st.vmcb().save.rflags & rflags::DF != 0;
        let mut next_rip = rip.wrapping_add(u64::from(s.len));
        if !long {
            next_rip &= 0xffff_ffff;
        }
        let size = usize::from(s.size);
        let dst_la = s.linear(st.string_segment_base(true, bytes), regs[Gpr::Rdi], long);
        let c = StrCtx { s, next_rip, df, dst_la };
        let fail = |st: &mut VcpuState, gpa: u64| {
            let rip = st.vmcb().save.rip;
            UserExit::emulation_failure(rip, &[gpa], bytes, Some(bytes.len()))
        };
        if s.kind == StrKind::Stos {
            return Ok(match st.locate(inner, dst_la, size, true) {
                Err((la, pf)) => st.page_fault(la, pf),
                Ok(Loc::Ram(_)) => Next::Guest,
                Ok(Loc::Mmio(dst)) => self.str_write(st, &c, dst, s.stos_value(&regs)),
                Ok(Loc::Split(g)) => self.user_exit(fail(st, g)),
            });
        }
        // LODS and MOVS: the source first (the processor reads before it
        // writes; for MOVS from MMIO the destination comes after the data).
        let src_la = s.linear(st.string_segment_base(false, bytes), regs[Gpr::Rsi], long);
        let parts = match st.locate(inner, src_la, size, false) {
            Err((la, pf)) => return Ok(st.page_fault(la, pf)),
            Ok(Loc::Mmio(src)) => return self.str_read(st, inner, c, src),
            Ok(Loc::Split(g)) => return Ok(self.user_exit(fail(st, g))),
            Ok(Loc::Ram(_)) if s.kind == StrKind::Lods => return Ok(Next::Guest),
            Ok(Loc::Ram(p)) => p,
        };
        // MOVS from RAM.
        let mut d = [0u8; 8];
        let mut at = 0;
        for (g, n) in parts {
            if n != 0 && !st.guest_mem(inner).read_bytes(g, &mut d[at..at + n]) {
                return Ok(self.user_exit(fail(st, g)));
            }
            at += n;
        }
        Ok(match st.locate(inner, dst_la, size, true) {
            Err((la, pf)) => st.page_fault(la, pf),
            Ok(Loc::Ram(_)) => Next::Guest,
            Ok(Loc::Mmio(dst)) => self.str_write(st, &c, dst, u64::from_le_bytes(d)),
            Ok(Loc::Split(g)) => self.user_exit(fail(st, g)),
        })
    }

    /// The element's read from MMIO at `src`: the I/O APIC answers in the
    /// kernel; anything else is a read exit, finished by the next
    /// `KVM_RUN` (`str_after_read`), the registers untouched until then.
    fn str_read(&self, st: &mut VcpuState, inner: &VmMem<'_>, c: StrCtx, src: u64) -> Result<Next> {
        let len = u32::from(c.s.size);
        if let Some(v) = self.vm.ioapic_mmio(src, false, len, 0) {
            return self.str_after_read(st, inner, c, v);
        }
        st.uexit.pending = Some(Pending::StrMmioRead(c));
        self.stats.bump(st_idx::MMIO_EXITS);
        Ok(self.user_exit(UserExit::Mmio { phys_addr: src, data: 0, len, is_write: false }))
    }

    /// The element's data `data` has been read from MMIO: LODS loads rAX,
    /// MOVS writes it to its destination (RAM here, MMIO by `str_write`),
    /// then the registers move. `Next::User` when that ends `KVM_RUN`
    /// again (the destination's write exit, a single step, a failure).
    pub(super) fn str_after_read(&self, st: &mut VcpuState, inner: &VmMem<'_>, c: StrCtx, data: u64) -> Result<Next> {
        let size = usize::from(c.s.size);
        let data = if size >= 8 { data } else { data & ((1u64 << (8 * size)) - 1) };
        if c.s.kind == StrKind::Lods {
            let mut regs = st.all_gprs();
            c.s.load_acc(&mut regs, data);
            st.set_all_gprs(&regs);
            return Ok(self.str_done(st, &c));
        }
        Ok(match st.locate(inner, c.dst_la, size, true) {
            // The destination refuses: #PF, the element not done (the
            // source was read, as on the processor).
            Err((la, pf)) => st.page_fault(la, pf),
            Ok(Loc::Ram(parts)) => {
                let b = data.to_le_bytes();
                let mut at = 0;
                for (g, n) in parts {
                    if n != 0 {
                        st.guest_mem(inner).write_bytes(g, &b[at..at + n]);
                    }
                    at += n;
                }
                self.str_done(st, &c)
            }
            Ok(Loc::Mmio(dst)) => self.str_write(st, &c, dst, data),
            Ok(Loc::Split(g)) => {
                let rip = st.vmcb().save.rip;
                self.user_exit(UserExit::emulation_failure(rip, &[c.dst_la, g], &[], None))
            }
        })
    }

    /// The element's write of `data` to MMIO at `dst`: the I/O APIC or an
    /// ioeventfd take it in the kernel; otherwise a write exit, the
    /// element done before it (KVM's order).
    fn str_write(&self, st: &mut VcpuState, c: &StrCtx, dst: u64, data: u64) -> Next {
        let len = u32::from(c.s.size);
        if self.vm.ioapic_mmio(dst, true, len, data).is_some() || self.vm.io_bus_write(nsvm_core::ioeventfd::Bus::Mmio, dst, len, data) {
            return self.str_done(st, c);
        }
        let finished = st.str_advance(c, true);
        st.uexit.pending = Some(Pending::Done { step: finished });
        self.stats.bump(st_idx::MMIO_EXITS);
        self.user_exit(UserExit::Mmio { phys_addr: dst, data, len, is_write: true })
    }

    /// The element done in the kernel: registers, RIP when complete, and
    /// then the single step a debugger may be waiting for.
    fn str_done(&self, st: &mut VcpuState, c: &StrCtx) -> Next {
        if st.str_advance(c, false) {
            return self.step_after_emulation(st).unwrap_or(Next::Guest);
        }
        Next::Guest
    }
}
