// SPDX-License-Identifier: GPL-2.0
//! The nested event log: the last [`LOG_LEN`] nested world switches of a
//! vCPU, printed in the formats (and with the field names) of KVM's
//! `kvm_nested_vmenter`, `kvm_nested_vmexit` and `kvm_nested_vmexit_inject`
//! tracepoints, so that a trace from nsvm reads like one from kvm_amd.
//! Every L2 exit is a `kvm_nested_vmexit`; the ones reflected to L1 are
//! followed by a `kvm_nested_vmexit_inject` (the others L0 handled).

use core::fmt::{self, Write};

/// Entries kept per vCPU.
pub const LOG_LEN: usize = 64;

/// One logged event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Unused slot.
    Empty,
    /// L1's VMRUN entered L2.
    VmEnter {
        /// L1's RIP after the VMRUN (where L1 resumes; KVM's value).
        rip: u64,
        /// vmcb12's address.
        vmcb: u64,
        /// L2's RIP.
        nested_rip: u64,
        /// vmcb12's int_ctl.
        int_ctl: u32,
        /// vmcb12's EVENTINJ.
        event_inj: u32,
        /// L1 enabled nested paging.
        npt: bool,
        /// nCR3 with nested paging, L2's CR3 without.
        cr3: u64,
    },
    /// An exit of L2 (before the reflect-or-handle decision).
    VmExit {
        /// L2's RIP.
        rip: u64,
        /// Exit code.
        reason: u64,
        /// EXITINFO1.
        info1: u64,
        /// EXITINFO2.
        info2: u64,
        /// EXITINTINFO.
        intr_info: u32,
        /// EXITINTINFO's error code.
        error_code: u32,
    },
    /// A #VMEXIT delivered to L1 (what vmcb12 received).
    VmExitInject {
        /// Exit code.
        reason: u64,
        /// EXITINFO1.
        info1: u64,
        /// EXITINFO2.
        info2: u64,
        /// EXITINTINFO.
        exit_int_info: u32,
        /// EXITINTINFO's error code.
        exit_int_info_err: u32,
    },
}

/// A ring of events: `slots` has [`LOG_LEN`] entries, `count` how many
/// were ever recorded.
pub fn record(slots: &mut [Event], count: &mut u64, e: Event) {
    if slots.is_empty() {
        return;
    }
    let i = (*count % slots.len() as u64) as usize;
    slots[i] = e;
    *count += 1;
}

/// The recorded events oldest first, with their sequence numbers.
pub fn in_order(slots: &[Event], count: u64) -> impl Iterator<Item = (u64, &Event)> {
    let n = slots.len() as u64;
    let first = count.saturating_sub(n);
    (first..count).map(move |seq| (seq, &slots[(seq % n.max(1)) as usize]))
}

struct Reason(u64);

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // KVM prints the name of the exit (lower case), e.g. "cpuid".
        let mut s = ArrayStr::<40>::new();
        let _ = write!(s, "{}", crate::exit::describe(self.0));
        for c in s.as_str().chars() {
            f.write_char(c.to_ascii_lowercase())?;
        }
        Ok(())
    }
}

struct ArrayStr<const N: usize> {
    b: [u8; N],
    len: usize,
}

impl<const N: usize> ArrayStr<N> {
    fn new() -> Self {
        Self { b: [0; N], len: 0 }
    }
    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.b[..self.len]).unwrap_or("")
    }
}

impl<const N: usize> Write for ArrayStr<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(N - self.len);
        self.b[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// One line in KVM's tracepoint format (`vcpu` as in `kvm_nested_vmexit`).
pub fn write_line(w: &mut impl Write, vcpu: u32, e: &Event) -> fmt::Result {
    match *e {
        Event::Empty => Ok(()),
        Event::VmEnter { rip, vmcb, nested_rip, int_ctl, event_inj, npt, cr3 } => writeln!(
            w,
            "kvm_nested_vmenter: rip: {rip:#018x} vmcb: {vmcb:#018x} nested_rip: {nested_rip:#018x} int_ctl: {int_ctl:#010x} event_inj: {event_inj:#010x} nested_npt={} {}: {cr3:#018x}",
            if npt { "y" } else { "n" },
            if npt { "nested_cr3" } else { "guest_cr3" },
        ),
        Event::VmExit { rip, reason, info1, info2, intr_info, error_code } => writeln!(
            w,
            "kvm_nested_vmexit: vcpu {vcpu} reason {} rip {rip:#x} info1 {info1:#018x} info2 {info2:#018x} intr_info {intr_info:#010x} error_code {error_code:#010x}",
            Reason(reason),
        ),
        Event::VmExitInject { reason, info1, info2, exit_int_info, exit_int_info_err } => writeln!(
            w,
            "kvm_nested_vmexit_inject: reason: {} ext_inf1: {info1:#018x} ext_inf2: {info2:#018x} ext_int: {exit_int_info:#010x} ext_int_err: {exit_int_info_err:#010x}",
            Reason(reason),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_the_last_entries_in_order() {
        let mut slots = [Event::Empty; 4];
        let mut n = 0;
        for i in 0..6u64 {
            record(&mut slots, &mut n, Event::VmExitInject { reason: i, info1: 0, info2: 0, exit_int_info: 0, exit_int_info_err: 0 });
        }
        let seqs: std::vec::Vec<u64> = in_order(&slots, n).map(|(s, _)| s).collect();
        assert_eq!(seqs, [2, 3, 4, 5]);
        let reasons: std::vec::Vec<u64> = in_order(&slots, n)
            .map(|(_, e)| match e {
                Event::VmExitInject { reason, .. } => *reason,
                _ => 99,
            })
            .collect();
        assert_eq!(reasons, [2, 3, 4, 5]);
        assert_eq!(in_order(&slots, 2).count(), 2);
    }

    #[test]
    fn kvm_formats() {
        let mut s = std::string::String::new();
        write_line(&mut s, 0, &Event::VmEnter { rip: 0x100010, vmcb: 0x105000, nested_rip: 0x100200, int_ctl: 0, event_inj: 0, npt: true, cr3: 0x106000 }).unwrap();
        assert_eq!(s, "kvm_nested_vmenter: rip: 0x0000000000100010 vmcb: 0x0000000000105000 nested_rip: 0x0000000000100200 int_ctl: 0x00000000 event_inj: 0x00000000 nested_npt=y nested_cr3: 0x0000000000106000\n");
        s.clear();
        write_line(&mut s, 1, &Event::VmExit { rip: 0x100204, reason: crate::exit::CPUID, info1: 0, info2: 0, intr_info: 0, error_code: 0 }).unwrap();
        assert_eq!(s, "kvm_nested_vmexit: vcpu 1 reason cpuid rip 0x100204 info1 0x0000000000000000 info2 0x0000000000000000 intr_info 0x00000000 error_code 0x00000000\n");
        s.clear();
        write_line(&mut s, 0, &Event::VmExitInject { reason: crate::exit::NPF, info1: 0x1_0000_0004, info2: 0x201010, exit_int_info: 0, exit_int_info_err: 0 }).unwrap();
        assert_eq!(s, "kvm_nested_vmexit_inject: reason: npf ext_inf1: 0x0000000100000004 ext_inf2: 0x0000000000201010 ext_int: 0x00000000 ext_int_err: 0x00000000\n");
    }
}
