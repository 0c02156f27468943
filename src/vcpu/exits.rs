// SPDX-License-Identifier: GPL-2.0
//! L0's exit handlers: what L0 does for an exit of the guest it runs (L1,
//! or L2 when L1 does not intercept it).

use kernel::prelude::*;

use nsvm_core::event::{Event, EventType};
use nsvm_core::exit::{self, IoioInfo, NpfInfo, SvmExit, SvmInsn};
use nsvm_core::insn::{self, Known};
use nsvm_core::user_exit::{run, UserExit};
use nsvm_core::mmio;
use nsvm_core::msr::efer;
use nsvm_core::stats::{self, vcpu as st_idx};
use nsvm_core::x86::{cr0, cr4, rflags, Gpr};

use super::guest_mem::DataFault;
use super::{Next, Pending, Vcpu, VcpuState};
use crate::hw;
use crate::vm::VmMem;

/// `-KVM_ENOSYS`, returned in RAX for an unknown hypercall (as KVM does).
const KVM_ENOSYS: u64 = 1000;

impl Vcpu {
    /// An event whose delivery the exit interrupted (EXITINTINFO) is
    /// delivered again at the next entry (APM 15.7.2), through the VMCB
    /// that ran (vmcb02 for an L2 exit L0 handles itself). A software
    /// interrupt (INTn, and INT3/INTO as #BP/#OF) is delivered again only
    /// when it is the event EVENTINJ injected at that entry, with the same
    /// NEXT_RIP; one raised by the guest's own instruction is not: without
    /// NRIPS the VMCB has no next RIP to push (APM 15.20), so the
    /// instruction, whose address is still RIP, simply executes again (as
    /// KVM does).
    #[inline]
    pub(super) fn requeue_interrupted(&self, st: &mut VcpuState) {
        // Inlined for what most exits have: nothing was being delivered.
        let c = &mut st.vmcb().control;
        c.event_inj = 0;
        if c.exit_int_info & nsvm_core::event::bits::VALID != 0 {
            self.requeue_event(st);
        }
    }

    fn requeue_event(&self, st: &mut VcpuState) {
        let (entry_inj, entry_next_rip) = st.entry_event;
        let vmcb = st.vmcb();
        let pending = Event { info: vmcb.control.exit_int_info, error_code: vmcb.control.exit_int_info_err };
        let soft = pending.event_type() == Some(EventType::SoftInt)
            || (pending.event_type() == Some(EventType::Exception) && matches!(pending.vector(), 3 | 4));
        let injected = entry_inj & nsvm_core::event::bits::VALID != 0 && pending.info == entry_inj;
        self.stats.log(nsvm_core::evlog::Kind::ExitIntInfo, vmcb.control.exit_code, vmcb.save.rip, u64::from(pending.info));
        if soft && !injected {
            return;
        }
        self.stats.bump(st_idx::REINJECTIONS);
        vmcb.control.event_inj = pending.info;
        vmcb.control.event_inj_err = pending.error_code;
        if soft {
            vmcb.control.next_rip = entry_next_rip;
        }
    }

    pub(super) fn handle_exit(&self, st: &mut VcpuState) -> Result<Next> {
        // `nsvm_exit` (kvm_exit's fields): every #VMEXIT L0 sees, of L1 or
        // of L2 (then followed by `nsvm_nested_vmexit`).
        hw::trace::exit(|| {
            let v = st.vmcb();
            let c = &v.control;
            (self.id, c.exit_code, v.save.rip, c.exit_info_1, c.exit_info_2, c.exit_int_info, c.exit_int_info_err)
        });
        if st.nst.l2.is_none() {
            self.stats.bump(st_idx::L1_EXITS);
        } else if let Some(next) = self.l2_exit_for_l1(st)? {
            return Ok(next);
        }
        if st.ev.iret_rip.is_some() && st.nst.l2.is_none() {
            let rip = st.cpu.vmcb.get().save.rip;
            st.ev.unmask_if_past_iret(rip);
        }
        let vmcb = st.vmcb();
        let code = vmcb.control.exit_code;
        let info1 = vmcb.control.exit_info_1;
        let info2 = vmcb.control.exit_info_2;
        self.stats.bump(st_idx::EXITS);
        self.stats.bump(stats::exit_counter(code));
        if super::EVENT_LOG.load(core::sync::atomic::Ordering::Relaxed) >= 2 {
            let c = vmcb.save.rflags | u64::from(vmcb.control.int_state & 1) << 32 | u64::from(vmcb.save.cpl) << 40;
            self.stats.log(nsvm_core::evlog::Kind::Exit, code, vmcb.save.rip, c);
            let segs = u64::from(vmcb.save.cs.selector) | u64::from(vmcb.save.ss.selector) << 16 | vmcb.save.rsp << 32;
            self.stats.log(nsvm_core::evlog::Kind::Segs, vmcb.save.gs.base, vmcb.save.kernel_gs_base, segs);
            // The guest's first #DF or #GP (intercepted for this): the log
            // keeps what led there.
            if matches!(code, 0x48 | 0x4d) {
                self.stats.log_freeze();
            }
        }
        self.requeue_interrupted(st);
        match SvmExit::decode(code, info1, info2) {
            SvmExit::Invalid => {
                // Name the rule (APM 15.5.1) in the log and the statistics
                // (vmcb01 always has EFER.SVME, whatever the CPUID offers).
                let mut f = st.features();
                f.efer |= nsvm_core::msr::efer::SVME;
                let v = st.vmcb();
                match nsvm_core::checks::check_vmrun(&v.save, &v.control, &f) {
                    Err(c) => {
                        self.stats.bump(stats::INVALID_BASE + c.index());
                        pr_warn!("vCPU {}: VMRUN refused the state: {} (APM 15.5.1)\n", self.id, c.name());
                    }
                    Ok(()) => {
                        self.stats.bump(stats::INVALID_PROCESSOR);
                        pr_warn!("vCPU {}: VMRUN refused the state (VMEXIT_INVALID) for a rule nsvm does not model\n", self.id)
                    }
                }
                let cpu = kernel::cpu::CpuId::current().as_u32();
                Ok(self.user_exit(UserExit::FailEntry { hardware_entry_failure_reason: code, cpu }))
            }
            SvmExit::Intr | SvmExit::Nmi | SvmExit::Smi => Ok(Next::Guest),
            SvmExit::Iret => {
                // Set by L0 while L1 handles an NMI: the IRET about to run
                // ends it. NMIs unmask once RIP has moved past it.
                if st.nst.l2.is_none() {
                    let v = st.cpu.vmcb.get();
                    v.control.intercepts.clear(exit::IRET);
                    st.ev.iret_intercepted(v.save.rip);
                } else {
                    // L2's IRET, which L1 does not intercept: L0's for
                    // vNMI (V_NMI_MASK clears once it completed).
                    st.vnmi_iret();
                }
                Ok(Next::Guest)
            }
            SvmExit::Vintr => {
                // The interrupt window is open (APM 15.21.4): drop the fake
                // V_IRQ; prepare_interrupts injects or reopens as needed.
                st.close_irq_window();
                Ok(Next::Guest)
            }
            SvmExit::Cpuid => {
                let leaf = st.vmcb().save.rax as u32;
                let sub = st.cpu.gprs[Gpr::Rcx] as u32;
                let r = st.cpuid_lookup(leaf, sub);
                let cr4 = st.vmcb().save.cr4;
                let xcr0 = st.cpu.xcr0;
                let r = nsvm_core::cpuid::runtime_adjust(leaf, sub, r, cr4, || xsave_size(xcr0));
                let r = self.cpuid_dynamic(st, leaf, r);
                st.vmcb().save.rax = u64::from(r[0]);
                st.cpu.gprs[Gpr::Rbx] = u64::from(r[1]);
                st.cpu.gprs[Gpr::Rcx] = u64::from(r[2]);
                st.cpu.gprs[Gpr::Rdx] = u64::from(r[3]);
                self.skip(st, Known::Cpuid)
            }
            SvmExit::Hlt => {
                if let Next::User = self.skip(st, Known::Hlt)? {
                    return Ok(Next::User);
                }
                self.stats.bump(st_idx::HALT_EXITS);
                if st.apic.is_some() {
                    // With an in-kernel APIC the vCPU waits in the kernel.
                    self.apic_halt(st);
                    return Ok(Next::Guest);
                }
                st.uexit.halted_since = Some(hw::task::now_ns());
                Ok(self.user_exit(UserExit::Hlt))
            }
            SvmExit::Ioio(io) => self.io(st, io),
            SvmExit::Shutdown => {
                // The VMCB is undefined after a shutdown intercept (APM
                // 15.12): reset the vCPU, as KVM does, and report it.
                let root = self.vm.mmu.lock().npt.root_pa();
                st.reset(root, true);
                Ok(self.user_exit(UserExit::Shutdown))
            }
            SvmExit::Npf(f) => self.npf(st, f),
            SvmExit::Msr { write } => self.msr(st, write),
            SvmExit::Vmmcall => {
                st.vmcb().save.rax = Self::hypercall(st);
                self.skip(st, Known::Vmmcall)
            }
            // #UD (always intercepted, as KVM does; L2's when L1 does not
            // intercept it): a VMCALL is fixed up to VMMCALL
            // (KVM_X86_QUIRK_FIX_HYPERCALL_INSN), which L2 then executes
            // for L1 to intercept, as under KVM.
            SvmExit::Exception { vector: 6, .. } => self.ud(st),
            SvmExit::Xsetbv => self.xsetbv(st),
            SvmExit::Sensitive(_) => self.sensitive(st, code),
            SvmExit::Exception { vector: v @ (1 | 3), .. }
                if st.nst.l2.is_none() && (if v == 1 { st.cpu.dbg.intercept_db() } else { st.cpu.dbg.intercept_bp() }) =>
            {
                self.debug_exit(st, v)
            }
            SvmExit::Exception { vector, error_code, cr2 } => {
                // An exception the policy intercepts: deliver it to the guest
                // unchanged (error code in EXITINFO1, #PF address in
                // EXITINFO2, APM 15.12). It supersedes an event whose
                // delivery it interrupted, as the hardware would have
                // delivered it next.
                if vector == 14 {
                    st.vmcb().save.cr2 = cr2;
                }
                let ec = nsvm_core::sensitive::has_error_code(vector).then_some(error_code);
                st.inject(Event::new(EventType::Exception, vector, ec));
                Ok(Next::Guest)
            }
            SvmExit::Invd => self.skip(st, Known::Invd),
            // With SVM offered and EFER.SVME set, L1's SVM instructions are
            // emulated (SKINIT is not offered); otherwise they are #UD (APM
            // 15.4), as RDPRU is (not offered either). MONITOR/MWAIT: KVM's
            // NOPs or #UD (`msr.rs`).
            SvmExit::SvmInsn(i) if i != SvmInsn::Skinit && st.nst.svm_exposed && st.efer() & efer::SVME != 0 => {
                self.svm_insn(st, i)
            }
            SvmExit::Other(exit::MONITOR) => self.monitor_mwait(st, Known::Monitor),
            SvmExit::Other(exit::MWAIT | exit::MWAIT_COND) => self.monitor_mwait(st, Known::Mwait),
            SvmExit::SvmInsn(_) | SvmExit::Other(exit::RDPRU) => {
                st.inject(Event::new(EventType::Exception, 6, None));
                Ok(Next::Guest)
            }
            SvmExit::Init | SvmExit::Other(_) => {
                pr_warn!("vCPU {}: unexpected exit {:#x} ({})\n", self.id, code, exit::name(code).unwrap_or("?"));
                Ok(self.user_exit(UserExit::unexpected_exit(code, info1, info2)))
            }
        }
    }

    /// Advances RIP past the intercepted instruction `which`, decoding its
    /// length from guest memory (no NRIPS). An undecodable instruction ends
    /// in `KVM_EXIT_INTERNAL_ERROR` (emulation failure), as in KVM.
    pub(super) fn skip(&self, st: &mut VcpuState, which: Known) -> Result<Next> {
        match self.next_rip_of(st, which) {
            Ok(rip) => {
                let v = st.vmcb();
                v.save.rip = rip;
                // Skipping an instruction ends an interrupt shadow.
                v.control.int_state &= !nsvm_core::vmcb::int_state::SHADOW;
                // Single-stepped by a debugger: this instruction counts as
                // a step (HLT ends in KVM_EXIT_HLT instead, as in KVM).
                if which != Known::Hlt {
                    if let Some(n) = self.step_after_emulation(st) {
                        return Ok(n);
                    }
                }
                Ok(Next::Guest)
            }
            Err(n) => Ok(n),
        }
    }

    /// The RIP after the intercepted instruction `which`, decoded from
    /// guest memory; when it does not decode, the emulation failure is
    /// reported (`KVM_EXIT_INTERNAL_ERROR`) and `Err` says to return.
    pub(super) fn next_rip_of(&self, st: &mut VcpuState, which: Known) -> core::result::Result<u64, Next> {
        let mut bytes = [0u8; 15];
        let n = {
            let inner = self.vm.mem();
            st.fetch(&inner, &mut bytes)
        };
        let long = st.vmcb().save.cs.attrib & nsvm_core::vmcb::seg_attr::L != 0
            && st.efer() & efer::LMA != 0;
        let rip = st.vmcb().save.rip;
        match insn::length_of(&bytes[..n], which, long) {
            Some(len) => {
                let next = rip.wrapping_add(len as u64);
                Ok(if long { next } else { next & 0xffff_ffff })
            }
            None => Err(self.user_exit(UserExit::emulation_failure(rip, &[], &bytes, Some(n)))),
        }
    }

    /// IOIO intercept (APM 15.10.2): EXITINFO1 has the port, size and
    /// direction; EXITINFO2 the RIP of the next instruction.
    pub(super) fn io(&self, st: &mut VcpuState, io: IoioInfo) -> Result<Next> {
        if io.string {
            return self.string_io(st, io);
        }
        // The in-kernel PIT's ports (vm/pit.rs) complete here.
        let rax = st.vmcb().save.rax;
        if let Some(r) = self.vm.pit_pio(io.port, io.size, (!io.is_in).then_some(rax as u8)) {
            if let Some(v) = r {
                let mut regs = st.all_gprs();
                mmio::load_into(&mut regs, mmio::Reg::new(Gpr::Rax), mmio::Extend::None, io.size, u64::from(v));
                st.set_all_gprs(&regs);
            }
            let v = st.vmcb();
            v.save.rip = io.next_rip;
            v.control.int_state &= !nsvm_core::vmcb::int_state::SHADOW;
            return Ok(self.step_after_emulation(st).unwrap_or(Next::Guest));
        }
        // The full irqchip's PICs and ELCRs (KVM's PIO bus devices).
        if let Some(v) = self.vm.pic_pio(io.port, io.is_in, u32::from(io.size), rax as u8) {
            let vm = st.vmcb();
            if io.is_in {
                let keep = u64::MAX << (8 * u32::from(io.size));
                vm.save.rax = (vm.save.rax & keep) | u64::from(v);
                if io.size == 4 {
                    vm.save.rax &= 0xffff_ffff;
                }
            }
            vm.save.rip = io.next_rip;
            vm.control.int_state &= !nsvm_core::vmcb::int_state::SHADOW;
            return Ok(self.step_after_emulation(st).unwrap_or(Next::Guest));
        }
        if !io.is_in {
            // A write an ioeventfd or a coalesced zone takes completes here
            // (KVM's PIO bus).
            let val = rax & (u64::MAX >> (64 - 8 * u32::from(io.size)));
            if self.vm.io_bus_write(nsvm_core::ioeventfd::Bus::Pio, u64::from(io.port), u32::from(io.size), val) {
                let v = st.vmcb();
                v.save.rip = io.next_rip;
                v.control.int_state &= !nsvm_core::vmcb::int_state::SHADOW;
                return Ok(self.step_after_emulation(st).unwrap_or(Next::Guest));
            }
            let d = rax.to_ne_bytes();
            self.pio.write(0, &d[..io.size as usize]);
        }
        st.uexit.pending = Some(Pending::Io { next_rip: io.next_rip, in_size: io.is_in.then_some(io.size) });
        self.stats.bump(st_idx::IO_EXITS);
        Ok(self.user_exit(UserExit::io(&io, 1)))
    }

    /// INS/OUTS, with or without REP (APM 15.10.2; EXITINFO1 bits 9:7 give
    /// the address size). As KVM: the data in the PIO page in execution
    /// order, RSI/RDI/RCX updated when userspace completes, and the
    /// instruction re-executed while RCX != 0.
    pub(super) fn string_io(&self, st: &mut VcpuState, io: IoioInfo) -> Result<Next> {
        let (is_in, rep, size, info2) = (io.is_in, io.rep, io.size, io.next_rip);
        let inner = self.vm.mem();
        let mut bytes = [0u8; 15];
        let n = st.fetch(&inner, &mut bytes);
        // The address size from the instruction (as KVM's emulator), not
        // EXITINFO1's (mmio::string_io_addr_bits: QEMU's TCG misreports it;
        // a 64-bit REP INSB ran with a 16-bit rDI/rCX, userspace_io_test).
        let code = st.code_size();
        let amask = match mmio::string_io_addr_bits(&bytes[..n], code) {
            Some(64) => u64::MAX,
            Some(32) => 0xffff_ffff,
            Some(_) => 0xffff,
            None => io.addr_mask(),
        };
        let regs = st.all_gprs();
        let mut count = if rep { regs[Gpr::Rcx] & amask } else { 1 };
        if count == 0 {
            // REP with rCX = 0: nothing happens.
            st.vmcb().save.rip = info2;
            return Ok(Next::Guest);
        }
        // Batching as KVM's emulator does it, so that userspace sees the same
        // exits on both: OUTS one element per exit; INS up to 1 KiB, within
        // the page of rDI (pio_in_emulated: min(bytes left in the page,
        // 1024 / size, count)).
        count = if is_in {
            let off = regs[Gpr::Rdi] & 0xfff;
            let df = st.vmcb().save.rflags & rflags::DF != 0;
            let in_page = if df { off } else { 4096 - off };
            core::cmp::min(core::cmp::min(in_page, 1024 / u64::from(size)), count).max(1)
        } else {
            1
        };
        // Segment: INS writes ES:rDI; OUTS reads DS:rSI or the override prefix.
        let seg_base = st.string_segment_base(is_in, &bytes[..n]);
        let idx = if is_in { Gpr::Rdi } else { Gpr::Rsi };
        let start = regs[idx] & amask;
        let df = st.vmcb().save.rflags & rflags::DF != 0;
        let la = |i: u64| {
            let off = if df { start.wrapping_sub(i) } else { start.wrapping_add(i) };
            seg_base.wrapping_add(off & amask)
        };
        // Translate every byte's page up front: a fault is delivered to the
        // guest (#PF with CR2) before anything reaches userspace.
        let total = count * u64::from(size);
        let mut gpas: KVec<u64> = KVec::with_capacity(total as usize, GFP_KERNEL)?;
        for i in 0..count {
            for b in 0..u64::from(size) {
                let elem = if df { la(i * u64::from(size)).wrapping_add(b) } else { la(i * u64::from(size) + b) };
                match st.translate_data(&inner, elem, is_in) {
                    Ok(g) => gpas.push(g, GFP_KERNEL)?,
                    Err(DataFault::Pf(pf)) => {
                        let v = st.vmcb();
                        v.save.cr2 = elem;
                        st.inject(Event::new(EventType::Exception, 14, Some(pf.error_code)));
                        return Ok(Next::Guest);
                    }
                    // L2's access faults in L1's NPT12: L1's #VMEXIT(NPF)
                    // (KVM's nested_tdp_fault_test).
                    Err(DataFault::Npf12 { gpa, info1 }) => return self.npf12_to_l1(st, &inner, gpa, info1),
                }
            }
        }
        let mem = st.guest_mem(&inner);
        if !is_in {
            for (k, g) in gpas.iter().enumerate() {
                let mut b = [0u8; 1];
                if !mem.read_bytes(*g, &mut b) {
                    let rip = st.vmcb().save.rip;
                    return Ok(self.user_exit(UserExit::internal_error(run::INTERNAL_ERROR_EMULATION, &[rip, io.exit_info_1(), *g])));
                }
                self.pio.write(k, &b);
            }
        }
        drop(inner);
        // One OUTS element an ioeventfd takes completes here, as a plain
        // OUT does (KVM's PIO bus sees each element).
        if !is_in && count == 1 {
            let mut d = [0u8; 8];
            for (k, b) in d.iter_mut().enumerate().take(size as usize) {
                *b = self.pio.read_u8(k);
            }
            if self.vm.io_bus_write(nsvm_core::ioeventfd::Bus::Pio, u64::from(io.port), u32::from(size), u64::from_le_bytes(d)) {
                return Ok(self.string_step(st, StrElem { next_rip: info2, rep, size, amask, df }, &[(idx, true)]));
            }
        }
        st.uexit.string_gpas = gpas;
        st.uexit.pending = Some(Pending::StrIo { next_rip: info2, is_in, rep, count, size, amask, idx, df });
        self.stats.bump(st_idx::IO_EXITS);
        Ok(self.user_exit(UserExit::io(&io, count as u32)))
    }

    /// Nested page fault on NPT01 (APM 15.25.6): RAM gets mapped; anything
    /// else (or a write to a read-only slot) is MMIO for userspace.
    pub(super) fn npf(&self, st: &mut VcpuState, f: NpfInfo) -> Result<Next> {
        let gpa = f.gpa;
        let inner = self.vm.mem();
        // The xAPIC page of an in-kernel APIC is never mapped: its
        // accesses are emulated (as KVM's APIC MMIO device comes first).
        if let Some(r) = self.apic_mmio(st, &inner, gpa) {
            return r;
        }
        if let Some(slot) = inner.slot(gpa) {
            if !(f.write() && slot.readonly()) {
                // The VMM's current page (or nothing when an invalidation
                // overtook the lookup: the guest faults again).
                inner.fault_in(&slot, gpa, f.write())?;
                self.stats.bump(st_idx::NPT_FILLS);
                return Ok(Next::Guest);
            }
        }
        // MMIO met while the processor delivered an event (EXITINTINFO
        // valid: an IDT or stack on MMIO): nothing to emulate, as KVM
        // (kvm_prepare_event_vectoring_exit): KVM_EXIT_INTERNAL_ERROR with
        // KVM_INTERNAL_ERROR_DELIVERY_EV and EXITINFO2, the exit code,
        // EXITINFO1, the GPA and the CPU (KVM's set_memory_region_test).
        let c = &st.vmcb().control;
        if c.exit_int_info & nsvm_core::event::bits::VALID != 0 {
            let d = [c.exit_info_2, c.exit_code, c.exit_info_1, gpa, u64::from(kernel::cpu::CpuId::current().as_u32())];
            return Ok(self.user_exit(UserExit::internal_error(run::INTERNAL_ERROR_DELIVERY_EV, &d)));
        }
        self.mmio(st, &inner, gpa)
    }

    /// An access of the running guest to `gpa` (L1 physical) that no RAM
    /// slot takes (MMIO, or a write to a read-only slot): decodes the
    /// instruction at RIP and exits to userspace with KVM_EXIT_MMIO.
    pub(super) fn mmio(&self, st: &mut VcpuState, inner: &VmMem<'_>, gpa: u64) -> Result<Next> {
        let mut bytes = [0u8; 15];
        let n = st.fetch(inner, &mut bytes);
        let cs = st.code_size();
        let rip = st.vmcb().save.rip;
        let acc = match mmio::decode(&bytes[..n], cs) {
            Ok(a) => a,
            Err(_) => {
                if let Ok(s) = mmio::decode_string(&bytes[..n], cs) {
                    return self.string_mmio(st, inner, s, &bytes[..n]);
                }
                return Ok(self.user_exit(UserExit::emulation_failure(rip, &[gpa], &bytes, Some(n))));
            }
        };
        let regs = st.all_gprs();
        let (is_write, data, read) = match acc.op {
            mmio::Op::Read { dst, ext } => (false, 0, Some((dst, ext, acc.size))),
            mmio::Op::WriteReg(r) => (true, mmio::store_value(&regs, r, acc.size), None),
            mmio::Op::WriteImm(v) => (true, v, None),
        };
        let mut next_rip = rip.wrapping_add(u64::from(acc.len));
        if cs != mmio::CodeSize::Bits64 {
            next_rip &= 0xffff_ffff;
        }
        // The full irqchip's I/O APIC window (KVM's MMIO bus device).
        let wval = if acc.size >= 8 { data } else { data & ((1u64 << (8 * u32::from(acc.size))) - 1) };
        if let Some(v) = self.vm.ioapic_mmio(gpa, is_write, u32::from(acc.size), wval) {
            if let Some((dst, ext, size)) = read {
                let mut regs = st.all_gprs();
                mmio::load_into(&mut regs, dst, ext, size, v);
                st.set_all_gprs(&regs);
            }
            let v = st.vmcb();
            v.save.rip = next_rip;
            v.control.int_state &= !nsvm_core::vmcb::int_state::SHADOW;
            return Ok(self.step_after_emulation(st).unwrap_or(Next::Guest));
        }
        if is_write {
            // A write an ioeventfd or a coalesced zone takes completes here
            // (KVM's MMIO bus).
            let val = if acc.size >= 8 { data } else { data & ((1u64 << (8 * u32::from(acc.size))) - 1) };
            if self.vm.io_bus_write(nsvm_core::ioeventfd::Bus::Mmio, gpa, u32::from(acc.size), val) {
                let v = st.vmcb();
                v.save.rip = next_rip;
                v.control.int_state &= !nsvm_core::vmcb::int_state::SHADOW;
                return Ok(self.step_after_emulation(st).unwrap_or(Next::Guest));
            }
        }
        if read.is_none() {
            // A store: KVM completes the instruction before it exits for
            // the write (x86_emulate_instruction), so RIP is already past
            // it at the exit.
            let v = st.vmcb();
            v.save.rip = next_rip;
            v.save.rflags &= !rflags::RF;
            v.control.int_state &= !nsvm_core::vmcb::int_state::SHADOW;
            st.uexit.pending = Some(Pending::Done { step: true });
        } else {
            st.uexit.pending = Some(Pending::Mmio { next_rip, read });
        }
        self.stats.bump(st_idx::MMIO_EXITS);
        Ok(self.user_exit(UserExit::Mmio { phys_addr: gpa, data, len: u32::from(acc.size), is_write }))
    }

    /// Completes one element of a string instruction in the kernel: the
    /// index registers of `regs` that are on move by `size` (down with DF),
    /// rCX counts down with REP, and RIP moves on once the count is done
    /// (only the address-size part changes; a 32-bit update zero-extends).
    fn string_step(&self, st: &mut VcpuState, e: StrElem, regs_on: &[(Gpr, bool)]) -> Next {
        let StrElem { next_rip, rep, size, amask, df } = e;
        let mut regs = st.all_gprs();
        let merge = |old: u64, new: u64| if amask == 0xffff_ffff { new & amask } else { (old & !amask) | (new & amask) };
        for &(r, on) in regs_on {
            if on {
                let moved = if df { regs[r].wrapping_sub(u64::from(size)) } else { regs[r].wrapping_add(u64::from(size)) };
                regs[r] = merge(regs[r], moved);
            }
        }
        let mut done = true;
        if rep {
            regs[Gpr::Rcx] = merge(regs[Gpr::Rcx], regs[Gpr::Rcx].wrapping_sub(1));
            done = regs[Gpr::Rcx] & amask == 0;
        }
        st.set_all_gprs(&regs);
        if !done {
            return Next::Guest;
        }
        let v = st.vmcb();
        v.save.rip = next_rip;
        v.control.int_state &= !nsvm_core::vmcb::int_state::SHADOW;
        self.step_after_emulation(st).unwrap_or(Next::Guest)
    }

    /// A sensitive instruction intercepted by the VM's policy: emulated with
    /// its architectural effect (`nsvm_core::sensitive`), so the guest sees
    /// what it would have seen; only the per-exit counters tell.
    pub(super) fn sensitive(&self, st: &mut VcpuState, code: u64) -> Result<Next> {
        use nsvm_core::sensitive;
        let inner = self.vm.mem();
        let mut bytes = [0u8; 15];
        let n = st.fetch(&inner, &mut bytes);
        let s = st.sens_state();
        let e = match sensitive::emulate(code, &bytes[..n], &s) {
            Ok(e) => e,
            Err(_) => return Ok(self.user_exit(UserExit::emulation_failure(s.rip, &[code], &bytes, None))),
        };
        let mut regs = s.regs;
        let mut rflags = s.rflags;
        if let Some((la, size)) = e.read {
            // POPF: read the stack, then compute the new flags.
            let mut d = [0u8; 8];
            for k in 0..size as usize {
                let a = la.wrapping_add(k as u64);
                match st.translate(&inner, a, false) {
                    Ok(g) => {
                        if !st.guest_mem(&inner).read_bytes(g, &mut d[k..k + 1]) {
                            return Ok(self.user_exit(UserExit::internal_error(run::INTERNAL_ERROR_EMULATION, &[s.rip, code, g])));
                        }
                    }
                    Err(pf) => return Ok(st.page_fault(a, pf)),
                }
            }
            let real = s.cs == Some(mmio::CodeSize::Bits16) && st.vmcb().save.cr0 & cr0::PE == 0;
            rflags = sensitive::popf_complete(s.rflags, u64::from_le_bytes(d), size, s.cpl, real);
        }
        if let Some((la, data, cnt)) = e.mem {
            // Translate every byte before writing any (a #PF leaves memory alone).
            let mut gpas = [0u64; 10];
            for (k, gpa) in gpas.iter_mut().enumerate().take(cnt as usize) {
                let a = la.wrapping_add(k as u64);
                match st.translate(&inner, a, true) {
                    Ok(g) => *gpa = g,
                    Err(pf) => return Ok(st.page_fault(a, pf)),
                }
            }
            for k in 0..cnt as usize {
                if !st.guest_mem(&inner).write_bytes(gpas[k], &data[k..k + 1]) {
                    return Ok(self.user_exit(UserExit::internal_error(run::INTERNAL_ERROR_EMULATION, &[s.rip, code, gpas[k]])));
                }
            }
        }
        drop(inner);
        if let Some((r, val, size)) = e.reg {
            mmio::load_into(&mut regs, mmio::Reg::new(r), mmio::Extend::None, size, val);
        }
        if code == exit::RDTSC {
            let tsc = hw::cpu::rdtsc().wrapping_add(st.vmcb().control.tsc_offset);
            regs[Gpr::Rax] = tsc & 0xffff_ffff;
            regs[Gpr::Rdx] = tsc >> 32;
        }
        if let Some(rsp) = e.rsp {
            regs[Gpr::Rsp] = rsp;
        }
        st.set_all_gprs(&regs);
        let long = s.cs == Some(mmio::CodeSize::Bits64);
        let v = st.vmcb();
        v.save.rflags = rflags;
        let mut rip = s.rip.wrapping_add(u64::from(e.len));
        if !long {
            rip &= 0xffff_ffff;
        }
        v.save.rip = rip;
        v.control.int_state &= !nsvm_core::vmcb::int_state::SHADOW;
        Ok(self.step_after_emulation(st).unwrap_or(Next::Guest))
    }

    /// XSETBV (intercepted: XCR0 is not switched by VMRUN).
    pub(super) fn xsetbv(&self, st: &mut VcpuState) -> Result<Next> {
        let v = (st.vmcb().save.rax & 0xffff_ffff) | (st.cpu.gprs[Gpr::Rdx] << 32);
        let ecx = st.cpu.gprs[Gpr::Rcx] as u32;
        let host = hw::cpu::host_xcr0();
        let cpl = st.vmcb().save.cpl;
        // XSETBV: #GP for ECX != 0, CPL > 0, or an XCR0 the processor the
        // guest sees refuses: x87 clear, AVX without SSE, a component its
        // CPUID leaf 0xD does not offer (within the host's XCR0), split
        // MPX/AVX-512/AMX groups (`xsave::xcr0_valid`, KVM's `__kvm_set_xcr`).
        let bad = ecx != 0 || cpl != 0 || !nsvm_core::xsave::xcr0_valid(v, st.guest_supported_xcr0());
        if host == 0 || st.vmcb().save.cr4 & cr4::OSXSAVE == 0 {
            st.inject(Event::new(EventType::Exception, 6, None));
            return Ok(Next::Guest);
        }
        if bad {
            st.inject(Event::new(EventType::Exception, 13, Some(0)));
            return Ok(Next::Guest);
        }
        st.cpu.xcr0 = v;
        self.skip(st, Known::Xsetbv)
    }
}

/// Size of the XSAVE area for `xcr0` (CPUID 0xD.0 EBX as the guest sees it).
pub(super) fn xsave_size(xcr0: u64) -> u32 {
    nsvm_core::cpuid::xsave_size(xcr0, |i| {
        let (a, b, ..) = hw::cpu::cpuid(0xd, i);
        (a, b)
    })
}

/// One element of a string instruction: where RIP goes once the count is
/// done, REP, element size, address-size mask, direction (RFLAGS.DF).
#[derive(Clone, Copy)]
struct StrElem {
    next_rip: u64,
    rep: bool,
    size: u8,
    amask: u64,
    df: bool,
}

/// `KVM_HC_SCHED_YIELD`.
const KVM_HC_SCHED_YIELD: u64 = 11;
/// `KVM_EPERM`.
const KVM_EPERM: u64 = 1;
/// `KVM_FEATURE_PV_SCHED_YIELD` (CPUID 0x40000001 EAX bit).
const KVM_FEATURE_PV_SCHED_YIELD: u32 = 1 << 13;

impl Vcpu {
    /// The RAX a VMMCALL returns (KVM's `kvm_emulate_hypercall`): a guest
    /// above CPL 0 gets `-KVM_EPERM`; `KVM_HC_SCHED_YIELD` yields the CPU
    /// and returns 0 (unless `KVM_CAP_ENFORCE_PV_FEATURE_CPUID` is on and
    /// CPUID 0x40000001 lacks PV_SCHED_YIELD: KVM's `guest_pv_has`); every
    /// other number `-KVM_ENOSYS` (nsvm implements no other hypercall). The
    /// number is RAX, its low 32 bits outside 64-bit mode.
    fn hypercall(st: &mut VcpuState) -> u64 {
        let long = st.code_size() == nsvm_core::mmio::CodeSize::Bits64;
        let v = st.vmcb();
        if v.save.cpl != 0 {
            return KVM_EPERM.wrapping_neg();
        }
        let nr = if long { v.save.rax } else { v.save.rax & 0xffff_ffff };
        let pv = |st: &VcpuState, bit: u32| !st.cpu.pv_enforce || st.cpu.cpuid.iter().find(|e| e.function == 0x4000_0001).is_some_and(|e| e.regs[0] & bit != 0);
        if nr == KVM_HC_SCHED_YIELD && pv(st, KVM_FEATURE_PV_SCHED_YIELD) {
            hw::task::cond_resched();
            return 0;
        }
        KVM_ENOSYS.wrapping_neg()
    }

    /// A #UD of the running level (L1's, or L2's that L1 does not
    /// intercept). With `KVM_X86_QUIRK_FIX_HYPERCALL_INSN` (on unless
    /// disabled by `KVM_CAP_DISABLE_QUIRKS2`) a VMCALL (0f 01 c1, Intel's
    /// hypercall) at CS:RIP is overwritten in guest memory with VMMCALL
    /// (0f 01 d9) and the guest resumes at the same RIP, where it executes
    /// the hypercall (KVM's `emulator_fix_hypercall`). The bytes are written
    /// through the guest's page tables as a data write by its CPL; where
    /// that fails (a read-only page), and for anything else, the guest
    /// gets its #UD.
    fn ud(&self, st: &mut VcpuState) -> Result<Next> {
        const VMCALL: [u8; 3] = [0x0f, 0x01, 0xc1];
        const VMMCALL: [u8; 3] = [0x0f, 0x01, 0xd9];
        let fix = self.vm.disabled_quirks.load(core::sync::atomic::Ordering::Relaxed) & nsvm_core::uapi::quirks::FIX_HYPERCALL_INSN == 0;
        if fix {
            let inner = self.vm.mem();
            let mut b = [0u8; 15];
            let (n, long) = st.fetch_insn(&inner, &mut b);
            if n >= 3 && b[..3] == VMCALL {
                let s = &st.vmcb().save;
                let la = if long { s.rip } else { s.cs.base.wrapping_add(s.rip) & 0xffff_ffff };
                // Byte by byte: the three may straddle a page boundary.
                let mut gpas = [0u64; 3];
                let mut ok = true;
                for (i, g) in gpas.iter_mut().enumerate() {
                    match st.translate(&inner, la.wrapping_add(i as u64), true) {
                        Ok(pa) => *g = pa,
                        Err(_) => ok = false,
                    }
                }
                if ok {
                    let mem = st.guest_mem(&inner);
                    if gpas.iter().zip(VMMCALL.iter()).all(|(g, v)| mem.write_bytes(*g, &[*v])) {
                        return Ok(Next::Guest);
                    }
                }
            }
        }
        st.inject(Event::new(EventType::Exception, 6, None));
        Ok(Next::Guest)
    }
}
