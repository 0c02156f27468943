// SPDX-License-Identifier: GPL-2.0
//! nsvm's tracepoints (trace system `nsvm`, declared in src/nsvm_trace.h and
//! defined in src/trace.c), as the kernel crate's `declare_trace!` calls
//! them: the event's static key is tested here, in Rust (a patched-out
//! branch with CONFIG_JUMP_LABEL, nothing else when the event is off), and
//! only an enabled event computes its fields (the closure) and calls C's
//! `rust_do_trace_<event>()`. Without CONFIG_TRACEPOINTS everything here is
//! empty.

#[cfg(CONFIG_TRACEPOINTS)]
use kernel::bindings::tracepoint;

/// For each event: the Rust function (its fields from a closure evaluated
/// only when the event is enabled), the function telling whether it is
/// enabled, the C tracepoint and its `rust_do_trace_` function.
macro_rules! tracepoints {
    ($($(#[$m:meta])* $name:ident, $on:ident, $tp:ident, $do:ident ($($a:ident: $t:ty),* $(,)?);)*) => {
        // The statics are only addressed (their static keys), never read
        // as values: `tracepoint`'s zero-length arrays do not matter.
        #[cfg(CONFIG_TRACEPOINTS)]
        #[allow(improper_ctypes)]
        extern "C" {
            $(
                static $tp: tracepoint;
                fn $do($($a: $t),*);
            )*
        }
        $(
            /// Whether the event is enabled (a static branch).
            #[inline(always)]
            #[allow(dead_code)]
            pub(crate) fn $on() -> bool {
                #[cfg(CONFIG_TRACEPOINTS)]
                {
                    // SAFETY: `$tp` is a tracepoint defined by C
                    // (src/trace.c), whose `key` is a static key: reading
                    // it is always allowed.
                    unsafe { kernel::static_branch_unlikely!($tp, tracepoint, key) }
                }
                #[cfg(not(CONFIG_TRACEPOINTS))]
                {
                    false
                }
            }

            $(#[$m])*
            #[inline(always)]
            pub(crate) fn $name(f: impl FnOnce() -> ($($t,)*)) {
                #[cfg(CONFIG_TRACEPOINTS)]
                if $on() {
                    // Out of line: the caller's code around the branch
                    // stays as without tracing.
                    #[cold]
                    #[inline(never)]
                    fn record(f: impl FnOnce() -> ($($t,)*)) {
                        let ($($a,)*) = f();
                        // SAFETY: the generated C function takes these
                        // scalars by value and records them; callable in
                        // any context the vCPU thread runs in
                        // (tracepoints are).
                        unsafe { $do($($a),*) };
                    }
                    record(f);
                }
                #[cfg(not(CONFIG_TRACEPOINTS))]
                let _ = f;
            }
        )*
    };
}

tracepoints! {
    /// `nsvm_entry`: vCPU id, RIP, EVENTINJ and its error code at VMRUN.
    entry, entry_on, __tracepoint_nsvm_entry, rust_do_trace_nsvm_entry(vcpu_id: u32, rip: u64, intr_info: u32, error_code: u32);
    /// `nsvm_exit`: vCPU id, exit code, RIP, EXITINFO1/2, EXITINTINFO and its error code.
    exit, exit_on, __tracepoint_nsvm_exit, rust_do_trace_nsvm_exit(vcpu_id: u32, exit_reason: u64, guest_rip: u64, info1: u64, info2: u64, intr_info: u32, error_code: u32);
    /// `nsvm_nested_vmexit`: an exit of L2, fields as `nsvm_exit`.
    nested_vmexit, nested_vmexit_on, __tracepoint_nsvm_nested_vmexit, rust_do_trace_nsvm_nested_vmexit(vcpu_id: u32, exit_reason: u64, guest_rip: u64, info1: u64, info2: u64, intr_info: u32, error_code: u32);
    /// `nsvm_nested_vmenter`: L1's RIP, vmcb12's address, L2's RIP, int_ctl, EVENTINJ, NP, nCR3 or L2's CR3.
    nested_vmenter, nested_vmenter_on, __tracepoint_nsvm_nested_vmenter, rust_do_trace_nsvm_nested_vmenter(rip: u64, vmcb: u64, nested_rip: u64, int_ctl: u32, event_inj: u32, tdp_enabled: bool, guest_pgd: u64);
    /// `nsvm_nested_vmexit_inject`: the #VMEXIT vmcb12 received.
    nested_vmexit_inject, nested_vmexit_inject_on, __tracepoint_nsvm_nested_vmexit_inject, rust_do_trace_nsvm_nested_vmexit_inject(exit_code: u64, exit_info1: u64, exit_info2: u64, exit_int_info: u32, exit_int_info_err: u32);
    /// `nsvm_inj_virq`: vector, software interrupt, re-delivered from EXITINTINFO.
    inj_virq, inj_virq_on, __tracepoint_nsvm_inj_virq, rust_do_trace_nsvm_inj_virq(vector: u32, soft: bool, reinjected: bool);
    /// `nsvm_inj_exception`: vector (2: NMI), error code valid, error code, re-delivered.
    inj_exception, inj_exception_on, __tracepoint_nsvm_inj_exception, rust_do_trace_nsvm_inj_exception(exception: u32, has_error: bool, error_code: u32, reinjected: bool);
    /// `nsvm_npt02_fill`: vCPU id, L2 physical address, L1 physical address, host page, leaves.
    npt02_fill, npt02_fill_on, __tracepoint_nsvm_npt02_fill, rust_do_trace_nsvm_npt02_fill(vcpu_id: u32, gpa: u64, l1_gpa: u64, hpa: u64, pages: u32);
    /// `nsvm_msr`: write (1) or read (0), the MSR, the value, #GP raised.
    msr, msr_on, __tracepoint_nsvm_msr, rust_do_trace_nsvm_msr(write: u32, ecx: u32, data: u64, exception: bool);
    /// `nsvm_npt02_flush`: why ([`Npt02Flush`]), leaves that were mapped.
    npt02_flush, npt02_flush_on, __tracepoint_nsvm_npt02_flush, rust_do_trace_nsvm_npt02_flush(reason: u32, pages: u64);
}

#[cfg(CONFIG_TRACEPOINTS)]
#[allow(improper_ctypes)]
extern "C" {
    static __tracepoint_nsvm_nested_vmenter_failed: tracepoint;
    fn rust_do_trace_nsvm_nested_vmenter_failed(msg: *const kernel::ffi::c_char, err: u32);
}

/// `nsvm_nested_vmenter_failed`: L1's VMRUN ended in VMEXIT_INVALID; `msg`
/// names the rule (`checks::Check::name`), `err` its number (0: refused
/// by the processor, not by nsvm's checks).
#[inline(always)]
pub(crate) fn nested_vmenter_failed(msg: &str, err: u32) {
    #[cfg(CONFIG_TRACEPOINTS)]
    {
        // SAFETY: a tracepoint defined by C (src/trace.c): its static key
        // may always be read.
        if unsafe { kernel::static_branch_unlikely!(__tracepoint_nsvm_nested_vmenter_failed, tracepoint, key) } {
            let mut b = [0u8; 64];
            let n = msg.len().min(b.len() - 1);
            b[..n].copy_from_slice(&msg.as_bytes()[..n]);
            // SAFETY: `b` is NUL-terminated (at most 63 bytes of `msg`) and
            // lives across the call, which copies the string.
            unsafe { rust_do_trace_nsvm_nested_vmenter_failed(b.as_ptr().cast(), err) };
        }
    }
    #[cfg(not(CONFIG_TRACEPOINTS))]
    let _ = (msg, err);
}

/// A nested event of the debugfs ring (`VcpuState::log`) to its
/// tracepoint. Inlined where `e` is built: one static branch, that of its
/// event; the rest out of line.
#[inline(always)]
pub(crate) fn nested(id: u32, e: &nsvm_core::trace::Event) {
    use nsvm_core::trace::Event;
    let on = match e {
        Event::Empty => false,
        Event::VmEnter { .. } => nested_vmenter_on(),
        Event::VmExit { .. } => nested_vmexit_on(),
        Event::VmExitInject { .. } => nested_vmexit_inject_on(),
    };
    if on {
        nested_slow(id, e);
    }
}

#[cold]
#[inline(never)]
fn nested_slow(id: u32, e: &nsvm_core::trace::Event) {
    use nsvm_core::trace::Event;
    match *e {
        Event::Empty => {}
        Event::VmEnter { rip, vmcb, nested_rip, int_ctl, event_inj, npt, cr3 } => {
            nested_vmenter(|| (rip, vmcb, nested_rip, int_ctl, event_inj, npt, cr3))
        }
        Event::VmExit { rip, reason, info1, info2, intr_info, error_code } => {
            nested_vmexit(|| (id, reason, rip, info1, info2, intr_info, error_code))
        }
        Event::VmExitInject { reason, info1, info2, exit_int_info, exit_int_info_err } => {
            nested_vmexit_inject(|| (reason, info1, info2, exit_int_info, exit_int_info_err))
        }
    }
}

/// Why NPT02 was dropped (`nsvm_npt02_flush`'s `reason`, printed by name).
#[derive(Clone, Copy)]
#[repr(u32)]
pub(crate) enum Npt02Flush {
    /// vCPU reset or INIT.
    Reset = 0,
    /// L1's VMRUN with a TLB_CONTROL flush.
    TlbControl = 1,
    /// The mapping limit was reached.
    Full = 2,
    /// The VM's memory changed (slots, invalidations).
    Memslots = 3,
    /// L1's VMRUN with another nCR3.
    Ncr3 = 4,
    /// L1's VMRUN with another ASID.
    Asid = 5,
    /// L1's VMRUN after NPT01 changed since NPT02 was composed.
    Npt01 = 6,
    /// L1's TLB_CONTROL flush met by checking the leaves
    /// (`Vcpu::resync_npt02`): `pages` leaves were removed, not all.
    Sync = 7,
}

impl From<nsvm_core::nested::Npt02Stale> for Npt02Flush {
    fn from(w: nsvm_core::nested::Npt02Stale) -> Self {
        use nsvm_core::nested::Npt02Stale as S;
        match w {
            S::TlbControl => Self::TlbControl,
            S::Ncr3 => Self::Ncr3,
            S::Asid => Self::Asid,
            S::Npt01 => Self::Npt01,
        }
    }
}
