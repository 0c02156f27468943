// SPDX-License-Identifier: GPL-2.0
//! The vCPU's architectural state: the VMCB of the running level, GPRs,
//! EFER as the guest sees it, RESET/INIT, registers and MSRs for the ioctls
//! and the exit handlers, and the sensitive-instruction policy.

use kernel::prelude::*;

use nsvm_core::checks::Features;
use nsvm_core::exit;
use nsvm_core::kvm::{Regs, Sregs};
use nsvm_core::mmio;
use nsvm_core::msr::efer;
use nsvm_core::vmcb::{int_ctl, Vmcb};
use nsvm_core::x86::{cr0, Gpr, Gprs};
use nsvm_core::{cpu_state, fpu, msr_emul};

use super::{VcpuState, NPT02_PREV};
use crate::npt::ShadowNpt;
use crate::hw::mem::KPages;
use crate::hw;
use crate::vmrun;

/// `KVM_CPUID_FLAG_SIGNIFCANT_INDEX`.
const CPUID_FLAG_SIGNIFICANT_INDEX: u32 = 1;

/// The host processor's features for the reserved-bit rules (APM 15.5.1):
/// its CPUID, leaves beyond its maximum read as zeros, and the physical
/// address width probed at load.
fn host_features() -> Features {
    let max = |leaf: u32| hw::cpu::cpuid(leaf & 0x8000_0000, 0).0;
    let f = Features::from_cpuid(|leaf, sub| {
        if leaf > max(leaf) {
            return [0; 4];
        }
        let (a, b, c, d) = hw::cpu::cpuid(leaf, sub);
        [a, b, c, d]
    });
    Features { phys_bits: crate::svm::phys_bits(), ..f }
}

/// A vCPU's features: what its CPUID table (`KVM_SET_CPUID2`; empty before
/// the first) and the host both offer, as KVM combines its capabilities and
/// the guest's CPUID.
pub(super) fn vcpu_features(table: &[super::CpuidEntry]) -> Features {
    let lookup = |leaf: u32, sub: u32| {
        table
            .iter()
            .find(|e| e.function == leaf && (e.flags & CPUID_FLAG_SIGNIFICANT_INDEX == 0 || e.index == sub))
            .map_or([0; 4], |e| e.regs)
    };
    host_features().and(Features::from_cpuid(lookup))
}

impl VcpuState {
    /// The VMCB. The processor touches it only inside `vmrun::run`, which
    /// needs `&mut self` too.
    pub(super) fn vmcb(&mut self) -> &mut Vmcb {
        if self.nst.l2.is_some() {
            self.nst.vmcb02.get()
        } else {
            self.cpu.vmcb.get()
        }
    }

    /// EFER of the guest that runs: L1's as nsvm keeps it (SVME as L1 set
    /// it), or L2's from vmcb02 while L2 runs.
    pub(super) fn efer(&mut self) -> u64 {
        if self.nst.l2.is_some() {
            self.nst.vmcb02.get().save.efer
        } else {
            self.l1_efer()
        }
    }

    /// L1's EFER: the bits nsvm keeps, with LMA from vmcb01. LMA is the
    /// processor's: it sets and clears it when the guest toggles CR0.PG
    /// with EFER.LME set (APM vol. 2 14.6.2), which a guest does without
    /// an exit (a kernel entering long mode on its own, Linux's
    /// decompressor under QEMU's boot ROM).
    pub(super) fn l1_efer(&mut self) -> u64 {
        (self.cpu.guest_efer & !efer::LMA) | (self.cpu.vmcb.get().save.efer & efer::LMA)
    }

    /// Sets the running guest's EFER; the VMCB always has SVME (VMRUN
    /// requires it, APM 15.5.1).
    pub(super) fn set_efer(&mut self, e: u64) {
        if self.nst.l2.is_none() {
            self.cpu.guest_efer = e;
        }
        self.vmcb().save.efer = cpu_state::vmcb_efer(e);
    }

    /// The running VMCB's state was set from outside the processor: the
    /// next entry saves it first (`run::enter`).
    pub(super) fn mark_untrusted(&mut self) {
        self.cpu.entry_untrusted[usize::from(self.nst.l2.is_some())] = true;
    }

    /// Drops shadow NPT02 (its pins with it): the next entry flushes the
    /// TLB, which may hold its translations (APM 15.16). `why` goes to the
    /// `nsvm_npt02_flush` tracepoint (not when NPT02 was empty).
    pub(super) fn drop_npt02(&mut self, why: crate::hw::trace::Npt02Flush) {
        if crate::hw::trace::npt02_flush_on() {
            let pages = self.nst.npt02.mapped_pages() as u64;
            if pages != 0 {
                crate::hw::trace::npt02_flush(|| (why as u32, pages));
            }
        }
        self.nst.npt02.flush();
        self.cpu.asids[1].request();
    }

    /// Makes `npt02` the NPT02 built for nCR3 `ncr3` and vmcb12 ASID
    /// `asid`: the current one, one of `npt02_prev` (swapped in), or an
    /// empty one, the current going first into `npt02_prev` (the least
    /// recent there emptied and reused). L1 alternating between NPT12s (KVM
    /// as L1 running an L3: its L2's NPT and its shadow of the L2's NPT for
    /// the L3) then keeps each one's leaves instead of refaulting them at
    /// every switch. The caller still applies `npt02_stale` to what it gets
    /// (NPT01 generation, TLB_CONTROL). Any switch flushes the L2 ASID: its
    /// TLB entries came from the other table.
    pub(super) fn select_npt02(&mut self, ncr3: u64, asid: u32) -> Result {
        let same = |k: Option<nsvm_core::nested::Npt02Key>| k.is_some_and(|k| k.ncr3 == ncr3 && k.asid == asid);
        if self.nst.npt02.key.is_none() || same(self.nst.npt02.key) {
            return Ok(());
        }
        let next = match self.nst.npt02_prev.iter().position(|p| p.as_ref().is_some_and(|p| same(p.key))) {
            Some(i) => self.nst.npt02_prev[i].take(),
            None => None,
        };
        let mut next = match next {
            Some(n) => n,
            None if self.nst.npt02_prev.iter().any(|p| p.is_none()) => KBox::new(ShadowNpt::new()?, GFP_KERNEL_ACCOUNT)?,
            None => {
                // All kept: the least recent is emptied and reused.
                let mut old = self.nst.npt02_prev[NPT02_PREV - 1].take().ok_or(EINVAL)?;
                old.flush();
                old.key = None;
                old
            }
        };
        core::mem::swap(&mut self.nst.npt02, &mut next);
        // `next` is the one that was current: most recent of the others.
        let mut carry = Some(next);
        for slot in self.nst.npt02_prev.iter_mut() {
            carry = core::mem::replace(slot, carry);
            if carry.is_none() {
                break;
            }
        }
        // (Nothing is left over: one slot was emptied above.)
        self.cpu.asids[1].request();
        Ok(())
    }

    /// Flushes what vmcb01's (`l1`) and vmcb02's (`l2`) ASIDs hold before
    /// their next entries (APM 15.16).
    pub(super) fn request_tlb_flush(&mut self, l1: bool, l2: bool) {
        if l1 {
            self.cpu.asids[0].request();
        }
        if l2 {
            self.cpu.asids[1].request();
        }
    }

    /// Puts the guest's FPU registers back into its image if this thread
    /// has them loaded (`hw::cpu::Loaded::put`; the next entry loads them
    /// again). The preempt notifier does it whenever the vCPU thread is
    /// scheduled out, so a sleep needs no call; code that blocks the vCPU
    /// thread for long (HLT in the kernel) may call it first so that the
    /// registers are given back at once.
    pub(crate) fn put_guest_fpu(&mut self) {
        self.cpu.loaded.put();
    }

    /// The guest's XSAVE image, current: the registers are put back first
    /// (for `KVM_GET/SET_FPU`, `KVM_GET/SET_XSAVE`, reset). Writes go to
    /// the image and are loaded at the next entry.
    pub(crate) fn guest_fpu_image(&mut self) -> &KPages {
        self.put_guest_fpu();
        &self.cpu.fpu
    }

    /// Sets the intercepts the policy asks for (vmcb01 keeps its own).
    pub(super) fn apply_policy(&mut self, p: nsvm_core::sensitive::Policy) {
        use nsvm_core::sensitive::bits;
        // vmcb02's intercepts are the union built at VMRUN (vmcb01's, with
        // the policy, and L1's); rewriting them here would drop L1's.
        if self.nst.l2.is_some() || self.cpu.applied_policy == Some(p) {
            return;
        }
        self.cpu.applied_policy = Some(p);
        let v = self.vmcb();
        let i = &mut v.control.intercepts;
        for (bit, code) in [
            (bits::SIDT, exit::IDTR_READ),
            (bits::SGDT, exit::GDTR_READ),
            (bits::SLDT, exit::LDTR_READ),
            (bits::STR, exit::TR_READ),
            (bits::CR0_READ, exit::READ_CR0),
            (bits::PUSHF, exit::PUSHF),
            (bits::POPF, exit::POPF),
            (bits::RDTSC, exit::RDTSC),
        ] {
            if p.instructions & bit != 0 {
                i.set(code);
            } else {
                i.clear(code);
            }
        }
        // event_log=2: the guest's #DF and #GP are intercepted (and
        // delivered unchanged) to freeze the event log there.
        let freeze = if super::EVENT_LOG.load(core::sync::atomic::Ordering::Relaxed) >= 2 { 1 << 8 | 1 << 13 } else { 0 };
        // #UD always (as KVM): VMCALL's fix-up (exits.rs `ud`).
        i.0[2] = p.exceptions | freeze | 1 << 6;
    }

    /// Guest state for `sensitive::emulate`.
    pub(super) fn sens_state(&mut self) -> nsvm_core::sensitive::State {
        let regs = self.all_gprs();
        let cs = self.code_size();
        let v = self.vmcb();
        let s = &v.save;
        nsvm_core::sensitive::State {
            regs,
            rip: s.rip,
            rflags: s.rflags,
            cpl: s.cpl,
            cs: Some(cs),
            ss_big: s.ss.attrib & nsvm_core::vmcb::seg_attr::DB != 0,
            seg_base: [s.es.base, s.cs.base, s.ss.base, s.ds.base, s.fs.base, s.gs.base],
            idtr: (s.idtr.base, s.idtr.limit as u16),
            gdtr: (s.gdtr.base, s.gdtr.limit as u16),
            ldtr: s.ldtr.selector,
            tr: s.tr.selector,
            cr0: s.cr0,
            cr2: s.cr2,
            cr3: s.cr3,
            cr4: s.cr4,
            cr8: u64::from(v.control.int_ctl & int_ctl::V_TPR_MASK),
        }
    }

    /// `struct kvm_fpu` from the FXSAVE part of the guest's XSAVE image.
    pub(super) fn get_fpu(&mut self) -> [u8; fpu::KVM_FPU_SIZE] {
        fpu::to_kvm_fpu(&self.guest_fpu_image().read::<{ fpu::FXSAVE_SIZE }>(0))
    }

    /// Writes `struct kvm_fpu` into the guest's image. MXCSR reserved bits
    /// are refused (`EINVAL`): XRSTOR of such an image would fault in L0.
    pub(super) fn set_fpu(&mut self, f: &[u8; fpu::KVM_FPU_SIZE]) -> Result {
        let mut img: [u8; fpu::IMAGE_PREFIX_SIZE] = self.guest_fpu_image().read(0);
        fpu::from_kvm_fpu(f, vmrun::mxcsr_mask(), &mut img).map_err(|_| EINVAL)?;
        self.guest_fpu_image().write(0, &img);
        Ok(())
    }

    /// RESET (`init == false`) or INIT (`init == true`) state, as KVM's
    /// `kvm_vcpu_reset` (`cpu_state::reset` has the rules, APM vol. 2
    /// 14.1.3): a running L2 is left first (without a #VMEXIT), so vmcb01
    /// is what gets the state; INIT keeps CR0.CD/NW, the PAT, XCR0, the FPU
    /// state and VM_HSAVE_PA.
    pub(super) fn reset(&mut self, npt_root: u64, init: bool) {
        self.cpu.entry_untrusted = [true; 2];
        self.nst.l2 = None;
        self.nst.gif = true;
        self.nst.vmcb12_pin = None;
        self.nst.run_pending = false;
        self.drop_npt02(crate::hw::trace::Npt02Flush::Reset);
        self.nst.npt02.key = None;
        self.nst.npt02_prev = Default::default();
        self.nst.l2_asid12 = None;
        // New paging state from outside the processor.
        self.request_tlb_flush(true, true);
        let cfg = cpu_state::ResetConfig {
            iopm_pa: crate::svm::iopm_pa(),
            msrpm_pa: crate::svm::msrpm_pa(),
            npt_root,
            cpuid1_eax: self.cpu.cpuid.iter().find(|e| e.function == 1).map(|e| e.regs[0]),
        };
        // The intercepts are rebuilt: the next entry applies the policy.
        self.cpu.applied_policy = None;
        cpu_state::reset(self.cpu.vmcb.get(), &mut self.cpu.gprs, init, &cfg);
        // DR0-3 are zero after RESET and INIT (DR6/DR7 are in the VMCB).
        self.cpu.db = [0; 4];
        self.cpu.guest_efer = 0;
        // kvmclock off after RESET and INIT (KVM's kvmclock_reset).
        self.cpu.kvmclock = nsvm_core::kvmclock::VcpuClock::default();
        self.ev = cpu_state::PendingEvents::NONE;
        self.uexit.pending = None;
        self.apic_reset(init);
        if !init {
            self.nst.hsave_pa = 0;
            self.cpu.xcr0 = fpu::XCR0_RESET;
            let image = self.guest_fpu_image();
            image.fill(0);
            image.write(0, &fpu::default_image());
        }
    }

    /// The 16 GPRs by hardware number (RAX and RSP from the VMCB).
    pub(super) fn all_gprs(&mut self) -> Gprs {
        let mut g = self.cpu.gprs;
        let v = self.vmcb();
        g[Gpr::Rax] = v.save.rax;
        g[Gpr::Rsp] = v.save.rsp;
        g
    }

    pub(super) fn set_all_gprs(&mut self, g: &Gprs) {
        self.cpu.gprs = *g;
        let v = self.vmcb();
        v.save.rax = g[Gpr::Rax];
        v.save.rsp = g[Gpr::Rsp];
    }

    /// Size of the code segment the guest runs in (APM vol. 2 4.8).
    pub(super) fn code_size(&mut self) -> mmio::CodeSize {
        let lma = self.efer() & efer::LMA != 0;
        let v = self.vmcb();
        let a = v.save.cs.attrib;
        if v.save.cr0 & cr0::PE == 0 {
            mmio::CodeSize::Bits16
        } else if lma && a & nsvm_core::vmcb::seg_attr::L != 0 {
            mmio::CodeSize::Bits64
        } else if a & nsvm_core::vmcb::seg_attr::DB != 0 {
            mmio::CodeSize::Bits32
        } else {
            mmio::CodeSize::Bits16
        }
    }

    pub(super) fn get_regs(&mut self) -> Regs {
        let g = self.cpu.gprs;
        cpu_state::get_regs(&self.vmcb().save, &g)
    }

    pub(super) fn set_regs(&mut self, r: &Regs) {
        self.mark_untrusted();
        let mut g = self.cpu.gprs;
        cpu_state::set_regs(&mut self.vmcb().save, &mut g, r);
        self.cpu.gprs = g;
    }

    pub(super) fn get_sregs(&mut self) -> Sregs {
        let (efer, apic) = (self.efer(), self.cpu.apic_base);
        cpu_state::get_sregs(self.vmcb(), efer, apic)
    }

    /// `KVM_SET_SREGS`: refused with `EINVAL`, changing nothing, when the
    /// state breaks a rule of `kvm::check_sregs` for this vCPU's features.
    pub(super) fn set_sregs(&mut self, s: &Sregs) -> Result {
        nsvm_core::kvm::check_sregs(s, &self.cpu.features).map_err(|_| EINVAL)?;
        // An APIC_BASE the in-kernel APIC refuses is EINVAL (KVM's
        // __set_sregs), checked before anything changes.
        if let Some(a) = self.apic.as_ref() {
            a.m.check_base(s.apic_base, true, u32::from(crate::svm::phys_bits())).map_err(|_| EINVAL)?;
        }
        self.mark_untrusted();
        // New paging registers from outside the guest: nothing the TLB holds
        // for the old ones may be used (KVM requests a flush too): the
        // running level's ASID is flushed.
        let l2 = self.nst.l2.is_some();
        self.request_tlb_flush(!l2, l2);
        self.set_efer(s.efer);
        self.cpu.apic_base = s.apic_base;
        cpu_state::set_sregs(self.vmcb(), s);
        if self.apic.is_some() {
            // With an in-kernel APIC, CR8 is its TPR and APIC_BASE its
            // base (KVM's __set_sregs).
            let _ = self.apic_msr_write(nsvm_core::msr::APIC_BASE, s.apic_base, true);
            if let Some(a) = self.apic.as_mut() {
                a.m.set_tpr(((s.cr8 & 0xf) << 4) as u32);
                self.cpu.apic_base = a.m.base;
            }
            // KVM's rule for userspace that resets a vCPU by hand: a BSP
            // (APIC_BASE as now set) put at the reset vector in real mode
            // becomes runnable (nsvm_core::bsp::sregs_make_runnable).
            let (base, rip) = (self.cpu.apic_base, self.vmcb().save.rip);
            if nsvm_core::bsp::sregs_make_runnable(base, rip, s.cs.selector, s.cs.base, s.cr0) {
                if let Some(a) = self.apic.as_mut() {
                    a.mp = nsvm_core::bsp::mp::RUNNABLE;
                }
            }
        }
        Ok(())
    }

    /// Sets L1's TSC offset (vmcb01), and L2's (vmcb02: L1's plus
    /// vmcb12's, APM 15.30.5 applied twice) while L2 runs.
    pub(super) fn set_l1_tsc_offset(&mut self, off: u64) {
        self.mark_untrusted();
        self.cpu.vmcb.get().control.tsc_offset = off;
        if self.nst.l2.is_some() {
            let off12 = self.nst.vmcb12.get().control.tsc_offset;
            self.nst.vmcb02.get().control.tsc_offset = off.wrapping_add(off12);
        }
    }

    /// The features the reserved-bit rules use (`checks::Features`).
    pub(super) fn features(&self) -> Features {
        self.cpu.features
    }

    pub(super) fn cpuid_lookup(&self, leaf: u32, sub: u32) -> [u32; 4] {
        self.cpu.cpuid
            .iter()
            .find(|e| e.function == leaf && (e.flags & CPUID_FLAG_SIGNIFICANT_INDEX == 0 || e.index == sub))
            .map_or([0; 4], |e| e.regs)
    }

    /// TSC_AUX is the guest's only with RDTSCP or RDPID in its CPUID
    /// (`msr_emul::tsc_aux_allowed`).
    fn tsc_aux_allowed(&self, host: bool) -> bool {
        msr_emul::tsc_aux_allowed(host, self.cpuid_lookup(0x8000_0001, 0)[3], self.cpuid_lookup(7, 0)[2])
    }

    /// RDMSR of the running guest, or `KVM_GET_MSRS` (`msr_emul` has the
    /// rules); `None` for an MSR nsvm does not emulate (#GP).
    pub(super) fn read_msr(&mut self, index: u32) -> Option<u64> {
        self.read_msr_as(index, false)
    }

    /// RDMSR, or `KVM_GET_MSRS` when `host` (some MSRs read differently
    /// for userspace, as in KVM).
    pub(super) fn read_msr_as(&mut self, index: u32, host: bool) -> Option<u64> {
        if index == nsvm_core::msr::TSC_AUX && !self.tsc_aux_allowed(host) {
            return None;
        }
        // Readable whatever the CPUID says, as KVM.
        if index == nsvm_core::msr::TSC_ADJUST {
            return Some(self.cpu.tsc_adjust);
        }
        if nsvm_core::mce::is_mce_msr(index) {
            return self.cpu.mce.read(index, host);
        }
        if nsvm_core::mtrr::is_mtrr(index) {
            return self.cpu.mtrr.read(index);
        }
        if let Some(r) = self.apic_msr_read(index) {
            return r;
        }
        msr_emul::read(self, index, hw::cpu::rdtsc)
    }

    /// WRMSR of the running guest, or `KVM_SET_MSRS`; false when refused
    /// (#GP for the guest).
    pub(super) fn write_msr(&mut self, index: u32, val: u64) -> bool {
        self.write_msr_as(index, val, false)
    }

    /// WRMSR, or `KVM_SET_MSRS` when `host`.
    pub(super) fn write_msr_as(&mut self, index: u32, val: u64, host: bool) -> bool {
        if index == nsvm_core::msr::TSC_AUX && !self.tsc_aux_allowed(host) {
            return false;
        }
        if nsvm_core::mce::is_mce_msr(index) {
            let amd = self.amd_vendor();
            return self.cpu.mce.write(index, val, host, amd).is_ok();
        }
        if nsvm_core::mtrr::is_mtrr(index) {
            let bits = self.cpu.features.phys_bits;
            return self.cpu.mtrr.write(index, val, bits).is_ok();
        }
        if let Some(ok) = self.apic_msr_write(index, val, host) {
            return ok;
        }
        if index == nsvm_core::msr::TSC_ADJUST {
            self.write_tsc_adjust(val, host);
            return true;
        }
        self.mark_untrusted();
        // L2's WRMSR of the TSC that L1 does not intercept sets L1's TSC to
        // the value (L2's then follows with vmcb12's offset), and moves
        // IA32_TSC_ADJUST by as much: KVM's rule (kvm_set_msr_common with
        // kvm_compute_l1_tsc_offset; KVM's nested_tsc_adjust_test).
        if index == nsvm_core::msr::TSC && !host && self.nst.l2.is_some() {
            let old = self.cpu.vmcb.get().control.tsc_offset;
            let new = val.wrapping_sub(hw::cpu::rdtsc());
            self.set_l1_tsc_offset(new);
            self.cpu.tsc_adjust = self.cpu.tsc_adjust.wrapping_add(new.wrapping_sub(old));
            return true;
        }
        // The guest's own TSC writes move IA32_TSC_ADJUST by as much (KVM's
        // rule, Intel SDM 17.17.3).
        let l1_tsc_write = index == nsvm_core::msr::TSC && !host;
        let old_off = self.cpu.vmcb.get().control.tsc_offset;
        let ok = msr_emul::write(self, index, val, crate::svm::phys_bits(), hw::cpu::rdtsc).is_ok();
        if ok && l1_tsc_write {
            let new_off = self.cpu.vmcb.get().control.tsc_offset;
            self.cpu.tsc_adjust = self.cpu.tsc_adjust.wrapping_add(new_off.wrapping_sub(old_off));
        }
        if ok && index == nsvm_core::msr::TSC_AUX {
            // RDTSCP/RDPID read the MSR itself (RDPID cannot be intercepted).
            let v = self.cpu.tsc_aux;
            self.cpu.loaded.set_tsc_aux(v);
        }
        ok
    }
}

impl VcpuState {
    /// WRMSR of IA32_TSC_ADJUST (KVM's rules): from userspace the value
    /// only; from the guest, when its CPUID has TSC_ADJUST (leaf 7 EBX bit
    /// 1), L1's TSC moves by the difference too, and without it the write
    /// is ignored (no #GP, as KVM).
    fn write_tsc_adjust(&mut self, val: u64, host: bool) {
        if host {
            self.cpu.tsc_adjust = val;
            return;
        }
        let has = self.cpu.cpuid.iter().find(|e| e.function == 7 && e.index == 0).is_some_and(|e| e.regs[1] & (1 << 1) != 0);
        if !has {
            return;
        }
        self.mark_untrusted();
        let adj = val.wrapping_sub(self.cpu.tsc_adjust);
        let off = self.cpu.vmcb.get().control.tsc_offset.wrapping_add(adj);
        self.set_l1_tsc_offset(off);
        self.cpu.tsc_adjust = val;
    }

    /// The vendor of the vCPU's CPUID leaf 0 is AMD or Hygon (KVM's
    /// `guest_cpuid_is_amd_compatible`; without a table: no).
    pub(super) fn amd_vendor(&self) -> bool {
        self.cpu.cpuid.iter().find(|e| e.function == 0).is_some_and(|e| matches!(e.regs[1], 0x6874_7541 | 0x6f67_7948))
    }
}

impl msr_emul::MsrTarget for VcpuState {
    fn vmcb(&mut self) -> &mut Vmcb {
        VcpuState::vmcb(self)
    }
    fn efer(&mut self) -> u64 {
        VcpuState::efer(self)
    }
    fn set_efer(&mut self, e: u64) {
        VcpuState::set_efer(self, e)
    }
    fn apic_base(&mut self) -> &mut u64 {
        &mut self.cpu.apic_base
    }
    fn tsc_aux(&mut self) -> &mut u64 {
        &mut self.cpu.tsc_aux
    }
    fn hsave_pa(&mut self) -> &mut u64 {
        &mut self.nst.hsave_pa
    }
    fn svm_exposed(&self) -> bool {
        self.nst.svm_exposed
    }
    fn efer_allowed(&self) -> u64 {
        self.cpu.features.efer
    }
}
