// SPDX-License-Identifier: GPL-2.0
//! `KVM_CAP_SYNC_REGS`: the register sets userspace reads and writes in the
//! `kvm_run` page instead of through ioctls (KVM's `sync_regs` and
//! `store_regs`, `Documentation/virt/kvm/api.rst` "kvm_valid_regs"), and
//! the register and event conversions the ioctls share with it.

use kernel::prelude::*;

use nsvm_core::kvm::{self, Regs, Sregs, VcpuEvents};
use nsvm_core::user_exit::sync_regs as sr;

use core::sync::atomic::Ordering;

use super::{Vcpu, VcpuState};

impl Vcpu {
    /// `struct kvm_regs` as userspace sees it (`KVM_GET_REGS`): the TF of
    /// single-stepping is the debugger's and hidden (KVM hides it).
    pub(super) fn user_regs(st: &mut VcpuState) -> Regs {
        let mut r = st.get_regs();
        if st.cpu.dbg.singlestep() {
            r.r[17] &= !nsvm_core::x86::rflags::TF;
        }
        r
    }

    /// `KVM_SET_REGS`: the single-step TF is kept.
    pub(super) fn set_user_regs(st: &mut VcpuState, r: &Regs) {
        let mut r = *r;
        if st.cpu.dbg.singlestep() {
            r.r[17] |= nsvm_core::x86::rflags::TF;
        }
        st.set_regs(&r);
    }

    /// `KVM_GET_VCPU_EVENTS`, with the triple fault KVM_RUN owes once
    /// `KVM_CAP_X86_TRIPLE_FAULT_EVENT` is enabled (KVM's
    /// `KVM_REQ_TRIPLE_FAULT`).
    pub(super) fn user_events(&self, st: &mut VcpuState) -> VcpuEvents {
        let mut e = st.get_events(self.vm.exception_payload.load(Ordering::Relaxed));
        if self.vm.triple_fault_event.load(Ordering::Relaxed) {
            e.flags |= kvm::vcpu_events::VALID_TRIPLE_FAULT;
            e.triple_fault = st.uexit.triple_fault;
        }
        e
    }

    /// `KVM_SET_VCPU_EVENTS`. `VALID_TRIPLE_FAULT` without the capability
    /// is `EINVAL`, refused here before anything changes (KVM refuses it
    /// after applying the rest).
    pub(super) fn set_user_events(&self, st: &mut VcpuState, e: &VcpuEvents) -> Result {
        let tf = e.flags & kvm::vcpu_events::VALID_TRIPLE_FAULT != 0;
        if tf && !self.vm.triple_fault_event.load(Ordering::Relaxed) {
            return Err(EINVAL);
        }
        st.set_events(e, self.vm.exception_payload.load(Ordering::Relaxed))?;
        if tf {
            st.uexit.triple_fault = e.triple_fault;
        }
        Ok(())
    }

    /// At `KVM_RUN`, before anything else: `kvm_valid_regs` and
    /// `kvm_dirty_regs` name only `KVM_SYNC_X86_REGS`, `_SREGS`, `_EVENTS`
    /// (`EINVAL` otherwise), and the sets marked dirty are loaded from the
    /// page in that order, each dirty bit cleared once its set is loaded; a
    /// set refused (`KVM_SET_SREGS`' or `KVM_SET_VCPU_EVENTS`' checks)
    /// ends `KVM_RUN` with `EINVAL`, the sets before it loaded (KVM's
    /// `sync_regs`).
    pub(super) fn sync_regs_in(&self, st: &mut VcpuState) -> Result {
        let valid = self.run.read_u64(sr::VALID_REGS);
        let dirty = self.run.read_u64(sr::DIRTY_REGS);
        if valid & !sr::VALID_FIELDS != 0 || dirty & !sr::VALID_FIELDS != 0 {
            return Err(EINVAL);
        }
        if dirty & sr::REGS != 0 {
            let b: [u8; Regs::SIZE] = self.run.read(sr::S_REGS);
            Self::set_user_regs(st, &Regs::from_bytes(&b));
            self.clear_dirty(sr::REGS);
        }
        if dirty & sr::SREGS != 0 {
            let b: [u8; Sregs::SIZE] = self.run.read(sr::S_SREGS);
            st.set_sregs(&Sregs::from_bytes(&b)).map_err(|_| EINVAL)?;
            self.clear_dirty(sr::SREGS);
        }
        if dirty & sr::EVENTS != 0 {
            let b: [u8; kvm::vcpu_events::SIZE] = self.run.read(sr::S_EVENTS);
            self.set_user_events(st, &VcpuEvents::from_bytes(&b)).map_err(|_| EINVAL)?;
            self.clear_dirty(sr::EVENTS);
        }
        Ok(())
    }

    fn clear_dirty(&self, bit: u64) {
        let d = self.run.read_u64(sr::DIRTY_REGS);
        self.run.write_int(sr::DIRTY_REGS, d & !bit);
    }

    /// When `KVM_RUN` returns, whatever its result: the sets named in
    /// `kvm_valid_regs` are stored in the page (KVM's `store_regs`).
    pub(super) fn sync_regs_out(&self, st: &mut VcpuState) {
        let valid = self.run.read_u64(sr::VALID_REGS);
        if valid & sr::REGS != 0 {
            self.run.write(sr::S_REGS, &Self::user_regs(st).to_bytes());
        }
        if valid & sr::SREGS != 0 {
            self.run.write(sr::S_SREGS, &st.get_sregs().to_bytes());
        }
        if valid & sr::EVENTS != 0 {
            self.run.write(sr::S_EVENTS, &self.user_events(st).to_bytes());
        }
    }
}
