// SPDX-License-Identifier: GPL-2.0
//! `KVM_SET_GUEST_DEBUG` (QEMU's gdbstub): `struct kvm_guest_debug`, KVM's
//! argument rules, and what a debugged vCPU intercepts. Single-stepping
//! sets RFLAGS.TF (hidden from `KVM_GET_REGS`, as KVM hides it), hardware
//! breakpoints put the debugger's DR0-3 and DR7 in the processor while the
//! guest runs, software breakpoints intercept #BP; the #DB or #BP then ends
//! `KVM_RUN` with `KVM_EXIT_DEBUG` instead of reaching the guest (APM vol. 2
//! 13.1 for the debug registers and DR6 bits, 15.12 for exception
//! intercepts).

/// `sizeof(struct kvm_guest_debug)`: control, pad, debugreg[8].
pub const KVM_GUEST_DEBUG_SIZE: usize = 72;

/// `KVM_GUESTDBG_*`.
pub mod flags {
    /// Debugging on (without it, everything else is ignored).
    pub const ENABLE: u32 = 1 << 0;
    /// Stop after every instruction.
    pub const SINGLESTEP: u32 = 1 << 1;
    /// Block interrupts while single-stepping.
    pub const BLOCKIRQ: u32 = 1 << 3;
    /// Intercept #BP (INT3).
    pub const USE_SW_BP: u32 = 1 << 16;
    /// Use `debugreg` as DR0-3 and DR7.
    pub const USE_HW_BP: u32 = 1 << 17;
    /// Queue a #DB for the guest.
    pub const INJECT_DB: u32 = 1 << 18;
    /// Queue a #BP for the guest.
    pub const INJECT_BP: u32 = 1 << 19;
    /// Every flag x86 KVM accepts (`KVM_GUESTDBG_VALID_MASK`).
    pub const VALID: u32 = ENABLE | SINGLESTEP | BLOCKIRQ | USE_SW_BP | USE_HW_BP | INJECT_DB | INJECT_BP;
}

/// DR6.BS: the #DB is a single-step trap (APM vol. 2 13.1.1.5).
pub const DR6_BS: u64 = 1 << 14;
/// DR6 bits B0-B3: which breakpoint matched.
pub const DR6_B0_3: u64 = 0xf;
/// DR6 as RESET leaves it (the value KVM puts in the VMCB before entries).
pub const DR6_RESET: u64 = 0xffff_0ff0;

/// `struct kvm_guest_debug`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestDebug {
    /// [`flags`], 0 when [`flags::ENABLE`] was not given.
    pub control: u32,
    /// DR0-DR3, DR6 (unused), DR7 for [`flags::USE_HW_BP`].
    pub debugreg: [u64; 8],
}

/// An invalid request (`EINVAL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Invalid;

impl GuestDebug {
    /// Parses the struct (pad ignored).
    pub fn from_bytes(b: &[u8; KVM_GUEST_DEBUG_SIZE]) -> Self {
        let mut r = GuestDebug { control: u32::from_ne_bytes([b[0], b[1], b[2], b[3]]), debugreg: [0; 8] };
        for (i, d) in r.debugreg.iter_mut().enumerate() {
            *d = u64::from_ne_bytes(b[8 + 8 * i..16 + 8 * i].try_into().unwrap_or([0; 8]));
        }
        r
    }

    /// What the vCPU keeps of a request: `control` cleared without
    /// [`flags::ENABLE`] (KVM's rule); the one-shot INJECT flags are not
    /// kept (they queue an exception at the ioctl).
    pub fn effective(&self) -> Self {
        if self.control & flags::ENABLE == 0 {
            return GuestDebug::default();
        }
        GuestDebug { control: self.control & !(flags::INJECT_DB | flags::INJECT_BP), debugreg: self.debugreg }
    }

    /// The vector to queue for the INJECT flags (#DB before #BP, as KVM).
    pub fn inject_vector(&self) -> Option<u8> {
        if self.control & flags::INJECT_DB != 0 {
            Some(1)
        } else if self.control & flags::INJECT_BP != 0 {
            Some(3)
        } else {
            None
        }
    }

    /// Single-stepping.
    pub const fn singlestep(&self) -> bool {
        self.control & flags::SINGLESTEP != 0
    }

    /// The debugger's hardware breakpoints are in use.
    pub const fn hw_bp(&self) -> bool {
        self.control & flags::USE_HW_BP != 0
    }

    /// #DB ends `KVM_RUN` (single step or hardware breakpoints).
    pub const fn intercept_db(&self) -> bool {
        self.control & (flags::SINGLESTEP | flags::USE_HW_BP) != 0
    }

    /// #BP ends `KVM_RUN`.
    pub const fn intercept_bp(&self) -> bool {
        self.control & flags::USE_SW_BP != 0
    }
}

/// Control bits KVM refuses (`EINVAL`), checked before anything changes.
pub fn check(control: u32) -> Result<(), Invalid> {
    if control & !flags::VALID != 0 {
        Err(Invalid)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_rules() {
        let mut b = [0u8; KVM_GUEST_DEBUG_SIZE];
        b[0..4].copy_from_slice(&(flags::ENABLE | flags::USE_HW_BP | flags::INJECT_BP).to_ne_bytes());
        b[8..16].copy_from_slice(&0x1234u64.to_ne_bytes());
        b[64..72].copy_from_slice(&0x402u64.to_ne_bytes());
        let g = GuestDebug::from_bytes(&b);
        assert_eq!(g.debugreg[0], 0x1234);
        assert_eq!(g.debugreg[7], 0x402);
        assert_eq!(g.inject_vector(), Some(3));
        let e = g.effective();
        assert!(e.hw_bp() && e.intercept_db() && !e.intercept_bp() && !e.singlestep());
        assert_eq!(e.inject_vector(), None);
        // Without ENABLE nothing stays.
        let off = GuestDebug { control: flags::SINGLESTEP, debugreg: [1; 8] };
        assert_eq!(off.effective(), GuestDebug::default());
        assert_eq!(check(flags::VALID), Ok(()));
        assert_eq!(check(1 << 2), Err(Invalid));
        assert_eq!(check(1 << 20), Err(Invalid));
    }
}
