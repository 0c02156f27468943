// SPDX-License-Identifier: GPL-2.0
//! `KVM_SET_GUEST_DEBUG` (QEMU's gdbstub) and `KVM_EXIT_DEBUG`: single
//! step, hardware and software breakpoints for L1 (`nsvm_core::guest_debug`
//! has the format and rules). Not while L2 runs: vmcb02's intercepts are
//! L1's and L0's merge, and the debugger's are applied to vmcb01 only.

use kernel::prelude::*;
use kernel::uaccess::{UserPtr, UserSlice};

use nsvm_core::event::{bits as ev, Event, EventType};
use nsvm_core::guest_debug::{GuestDebug, DR6_B0_3, DR6_BS, DR6_RESET, KVM_GUEST_DEBUG_SIZE};
use nsvm_core::user_exit::UserExit;
use nsvm_core::x86::rflags;

use super::run::Next;
use super::{Vcpu, VcpuState};

/// DR6.BD and DR6.BT, with BS and B0-B3 the bits a debug exception sets.
const DR6_EVENT: u64 = DR6_BS | DR6_B0_3 | (1 << 13) | (1 << 15);

impl Vcpu {
    /// `KVM_SET_GUEST_DEBUG`: `EFAULT`, then `EBUSY` for INJECT_DB/BP while
    /// an exception waits for delivery (KVM's order); no other refusal (KVM
    /// ignores unknown control bits; `KVM_CAP_SET_GUEST_DEBUG2` lists the
    /// valid ones).
    pub(super) fn set_guest_debug(&self, arg: usize) -> Result<isize> {
        let mut b = [0u8; KVM_GUEST_DEBUG_SIZE];
        UserSlice::new(UserPtr::from_addr(arg), KVM_GUEST_DEBUG_SIZE).reader().read_slice(&mut b)?;
        let g = GuestDebug::from_bytes(&b);
        let mut st = self.state.lock();
        if let Some(vector) = g.inject_vector() {
            let ei = st.vmcb().control.event_inj;
            let pending = ei & ev::VALID != 0 && Event { info: ei, error_code: 0 }.event_type() == Some(EventType::Exception);
            if pending || st.uexit.triple_fault {
                return Err(EBUSY);
            }
            st.inject(Event::new(EventType::Exception, vector, None));
        }
        st.mark_untrusted();
        let old = st.cpu.dbg;
        let new = g.effective();
        // RFLAGS as the guest set it (TF hidden while single-stepping).
        let mut rf = st.vmcb().save.rflags;
        if old.singlestep() {
            rf &= !rflags::TF;
        }
        if new.singlestep() {
            rf |= rflags::TF;
        }
        // DR7: the debugger's while its breakpoints are in use, the
        // guest's kept aside meanwhile.
        if old.hw_bp() {
            let d = st.cpu.dbg_guest_dr7;
            st.vmcb().save.dr7 = d;
        }
        if new.hw_bp() {
            st.cpu.dbg_guest_dr7 = st.vmcb().save.dr7;
            st.vmcb().save.dr7 = new.debugreg[7] & 0xffff_ffff;
        }
        st.vmcb().save.rflags = rf;
        st.cpu.dbg = new;
        Ok(0)
    }

    /// A #DB or #BP the debugger intercepts: `KVM_EXIT_DEBUG`. For #DB, DR6
    /// reports the bits this exception set (over the reset value, as KVM
    /// reports them) and the guest's DR6 is left as it was.
    pub(super) fn debug_exit(&self, st: &mut VcpuState, vector: u8) -> Result<Next> {
        let before = st.cpu.dbg_dr6;
        let v = st.vmcb();
        let pc = v.save.cs.base.wrapping_add(v.save.rip);
        if vector == 3 {
            return Ok(self.user_exit(UserExit::Debug { exception: 3, pc, dr6: 0, dr7: 0 }));
        }
        let dr6 = DR6_RESET | ((v.save.dr6 ^ before) & DR6_EVENT);
        v.save.dr6 = before;
        let dr7 = v.save.dr7;
        Ok(self.user_exit(UserExit::Debug { exception: 1, pc, dr6, dr7 }))
    }

    /// After an instruction L0 emulated and skipped: the single step the
    /// processor did not take for it (KVM's `kvm_vcpu_do_singlestep`).
    pub(super) fn step_after_emulation(&self, st: &mut VcpuState) -> Option<Next> {
        if st.nst.l2.is_some() || !st.cpu.dbg.singlestep() {
            return None;
        }
        let v = st.vmcb();
        let pc = v.save.cs.base.wrapping_add(v.save.rip);
        let dr7 = v.save.dr7;
        Some(self.user_exit(UserExit::Debug { exception: 1, pc, dr6: DR6_RESET | DR6_BS, dr7 }))
    }
}

impl VcpuState {
    /// Before an entry of L1: the #DB/#BP intercepts the debugger wants
    /// (the policy never takes these two vectors), and the guest's DR6 to
    /// tell what a #DB set.
    pub(super) fn apply_guest_debug(&mut self) {
        if self.nst.l2.is_some() {
            return;
        }
        let d = self.cpu.dbg;
        let v = self.cpu.vmcb.get();
        let mut x = v.control.intercepts.0[2] & !((1 << 1) | (1 << 3));
        if d.intercept_db() {
            x |= 1 << 1;
        }
        if d.intercept_bp() {
            x |= 1 << 3;
        }
        v.control.intercepts.0[2] = x;
        self.cpu.dbg_dr6 = v.save.dr6;
    }
}
