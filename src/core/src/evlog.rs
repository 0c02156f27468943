// SPDX-License-Identifier: GPL-2.0
//! A vCPU's event log: the last [`LEN`] interrupt-related events of one
//! vCPU (injections and what the VMCB said around them, EXITINTINFO
//! re-deliveries, HLT and its wake-up, TSC-deadline writes, timer expiries,
//! vectors accepted from the APIC bus, IPIs sent, EOIs), recorded while the
//! module parameter `event_log` is 1 and printed in the vCPU's debugfs file
//! (also while it is in `KVM_RUN`). For finding what went wrong with
//! interrupt delivery in a guest that hangs or crashes, where the counters
//! say too little. The kernel keeps the records as four words each
//! (`Record::to_words`), written by the vCPU's thread only.

use core::fmt::{self, Write};

use crate::event::{bits, Event, EventType};
use crate::x86::rflags;

/// Records kept per vCPU.
pub const LEN: usize = 256;

/// What a record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// An event in EVENTINJ at VMRUN: `a` EVENTINJ (low 32 bits) with its
    /// error code (high), `b` RIP, `c` RFLAGS with the interrupt shadow in
    /// bit 32.
    Inject = 1,
    /// An exit that interrupted an event's delivery: `a` exit code, `b` RIP,
    /// `c` EXITINTINFO (low 32 bits).
    ExitIntInfo = 2,
    /// A WRMSR of IA32_TSC_DEADLINE: `a` the deadline, `b` the guest TSC
    /// then, `c` RIP.
    TscDeadline = 3,
    /// HLT: the vCPU waits in the kernel; `a` RIP, `b` RFLAGS.
    Halt = 4,
    /// The halted vCPU runs again after `a` ns.
    Wake = 5,
    /// The APIC timer expired (`a`: 1 from the host timer, 0 found expired
    /// at an entry, 2 its new deadline already past when it was armed).
    Timer = 6,
    /// A vector accepted into IRR from the APIC bus: `a` vector, `b` 1 if
    /// level-triggered.
    Accept = 7,
    /// An IPI sent: `a` vector | delivery mode << 8 | shorthand << 16 |
    /// logical << 24, `b` destination.
    Ipi = 8,
    /// An EOI: `a` the vector it ended (`u64::MAX`: none in service).
    Eoi = 9,
    /// NMI, INIT or SIPI taken from the APIC bus: `a` the mailbox flags.
    Flags = 10,
    /// A kvmclock MSR written: `a` the MSR, `b` the value, `c` RIP (guest
    /// WRMSR) or `u64::MAX` (`KVM_SET_MSRS`).
    KvmclockMsr = 11,
    /// kvmclock records written into guest memory: `a` the system-time
    /// record's address (`u64::MAX`: none), `b` the wall clock's (same).
    KvmclockWrite = 12,
    /// A #VMEXIT (`event_log=2` only): `a` exit code, `b` RIP, `c` RFLAGS
    /// with the interrupt shadow in bit 32 and the CPL in bits 47:40.
    Exit = 13,
    /// With each `Exit` (`event_log=2`): `a` GS base, `b` KernelGsBase,
    /// `c` CS selector | SS selector << 16 | RSP << 32 (its low 32 bits).
    Segs = 14,
    /// A write of IA32_TSC: `a` the value, `b` the TSC offset it gave,
    /// `c` RIP (guest WRMSR) or `u64::MAX` (`KVM_SET_MSRS`).
    TscWrite = 15,
    /// The TSC caught up to its generation's curve (host TSC not trusted):
    /// `a` cycles added, `b` the new offset.
    TscCatchup = 16,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Inject,
            2 => Self::ExitIntInfo,
            3 => Self::TscDeadline,
            4 => Self::Halt,
            5 => Self::Wake,
            6 => Self::Timer,
            7 => Self::Accept,
            8 => Self::Ipi,
            9 => Self::Eoi,
            10 => Self::Flags,
            11 => Self::KvmclockMsr,
            12 => Self::KvmclockWrite,
            13 => Self::Exit,
            14 => Self::Segs,
            15 => Self::TscWrite,
            16 => Self::TscCatchup,
            _ => return None,
        })
    }
}

/// One event, at monotonic time `ns`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// What happened.
    pub kind: Kind,
    /// When (CLOCK_MONOTONIC, ns).
    pub ns: u64,
    /// The kind's values (see [`Kind`]).
    pub a: u64,
    /// Second value.
    pub b: u64,
    /// Third value.
    pub c: u64,
}

impl Record {
    /// A record of `kind` at `ns`.
    pub const fn new(kind: Kind, ns: u64, a: u64, b: u64, c: u64) -> Self {
        Self { kind, ns, a, b, c }
    }

    /// The record as stored: kind in the low byte of the first word, the
    /// time above it (2^56 ns: over two years of uptime).
    pub fn to_words(&self) -> [u64; 4] {
        [self.kind as u64 | (self.ns << 8), self.a, self.b, self.c]
    }

    /// The record back from its words; `None` for an empty slot.
    pub fn from_words(w: [u64; 4]) -> Option<Self> {
        let kind = Kind::from_u8(w[0] as u8)?;
        Some(Self { kind, ns: w[0] >> 8, a: w[1], b: w[2], c: w[3] })
    }

    /// Whether this record shows nsvm doing what the architecture never
    /// does: an external interrupt delivered while the guest had
    /// RFLAGS.IF = 0 or was in an interrupt shadow (APM vol. 2 15.20: the
    /// VMM injects an interrupt only when the guest can take it; one
    /// interrupted during delivery is re-delivered before the guest ran
    /// again, with the flags it had when it was first injected).
    pub fn is_suspect(&self) -> bool {
        if self.kind != Kind::Inject {
            return false;
        }
        let e = Event { info: self.a as u32, error_code: 0 };
        e.event_type() == Some(EventType::Intr) && (self.c & rflags::IF == 0 || self.c & (1 << 32) != 0)
    }

    /// One line of the debugfs dump (without the newline).
    pub fn write(&self, out: &mut dyn Write) -> fmt::Result {
        write!(out, "{:>6}.{:06} ", self.ns / 1_000_000_000, (self.ns / 1000) % 1_000_000)?;
        match self.kind {
            Kind::Inject => {
                let e = Event { info: self.a as u32, error_code: (self.a >> 32) as u32 };
                let ty = match e.event_type() {
                    Some(EventType::Intr) => "INTR",
                    Some(EventType::Nmi) => "NMI",
                    Some(EventType::Exception) => "EXC",
                    Some(EventType::SoftInt) => "SOFT",
                    None => "?",
                };
                write!(out, "inject {ty} {:#04x}", e.vector())?;
                if e.info & bits::EV != 0 {
                    write!(out, " err {:#x}", e.error_code)?;
                }
                write!(out, " at rip {:#x} rflags {:#x}", self.b, self.c & 0xffff_ffff)?;
                if self.c & (1 << 32) != 0 {
                    write!(out, " shadow")?;
                }
                if self.is_suspect() {
                    write!(out, " <- IF=0 or shadow: never right for INTR")?;
                }
                Ok(())
            }
            Kind::ExitIntInfo => write!(out, "exit {:#x} at rip {:#x} interrupted delivery of {:#x}", self.a, self.b, self.c as u32),
            Kind::TscDeadline => {
                let delta = self.a.wrapping_sub(self.b) as i64;
                write!(out, "tsc-deadline {} at guest tsc {} ({:+}) rip {:#x}", self.a, self.b, delta, self.c)
            }
            Kind::Halt => write!(out, "hlt at rip {:#x} rflags {:#x}", self.a, self.b),
            Kind::Wake => write!(out, "wake after {} us", self.a / 1000),
            Kind::Timer => write!(
                out,
                "timer expired ({})",
                match self.a {
                    0 => "at entry",
                    1 => "host timer",
                    _ => "deadline past when armed",
                }
            ),
            Kind::Accept => write!(out, "accept {:#04x}{}", self.a, if self.b != 0 { " level" } else { "" }),
            Kind::Ipi => {
                let (v, mode, sh, logical) = (self.a & 0xff, (self.a >> 8) & 0xff, (self.a >> 16) & 0xff, (self.a >> 24) & 1);
                write!(out, "ipi vector {v:#04x} mode {mode} shorthand {sh} dest {:#x}{}", self.b, if logical != 0 { " logical" } else { "" })
            }
            Kind::Eoi => match self.a {
                u64::MAX => write!(out, "eoi (nothing in service)"),
                v => write!(out, "eoi {v:#04x}"),
            },
            Kind::Flags => write!(out, "bus flags {:#x}", self.a),
            Kind::KvmclockMsr => match self.c {
                u64::MAX => write!(out, "kvmclock msr {:#x} = {:#x} (KVM_SET_MSRS)", self.a, self.b),
                rip => write!(out, "kvmclock msr {:#x} = {:#x} (guest WRMSR at rip {rip:#x})", self.a, self.b),
            },
            Kind::Exit => {
                write!(out, "exit {:#x} at rip {:#x} rflags {:#x} cpl {}", self.a, self.b, self.c & 0xffff_ffff, (self.c >> 40) & 0xff)?;
                if self.c & (1 << 32) != 0 {
                    write!(out, " shadow")?;
                }
                Ok(())
            }
            Kind::Segs => write!(
                out,
                "  gs.base {:#x} kernel_gs_base {:#x} cs {:#x} ss {:#x} rsp(low) {:#x}",
                self.a,
                self.b,
                self.c & 0xffff,
                (self.c >> 16) & 0xffff,
                self.c >> 32
            ),
            Kind::TscWrite => match self.c {
                u64::MAX => write!(out, "tsc = {} (KVM_SET_MSRS): offset {:#x}", self.a, self.b),
                rip => write!(out, "tsc = {} (guest WRMSR at rip {rip:#x}): offset {:#x}", self.a, self.b),
            },
            Kind::TscCatchup => write!(out, "tsc caught up by {} cycles: offset {:#x}", self.a, self.b),
            Kind::KvmclockWrite => write!(out, "kvmclock records written: system time at {:#x}, wall clock at {:#x}", self.a, self.b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct S(std::string::String);
    impl Write for S {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            self.0.push_str(s);
            Ok(())
        }
    }

    fn line(r: &Record) -> std::string::String {
        let mut s = S(std::string::String::new());
        r.write(&mut s).unwrap();
        s.0
    }

    #[test]
    fn words_round_trip() {
        let r = Record::new(Kind::TscDeadline, 123_456_789_012, 5000, 4000, 0xffff_ffff_8100_0000);
        assert_eq!(Record::from_words(r.to_words()), Some(r));
        assert_eq!(Record::from_words([0; 4]), None);
        assert_eq!(Record::from_words([0xff, 0, 0, 0]), None);
        for k in 1..=16u64 {
            assert_eq!(Record::from_words([k | 5 << 8, 1, 2, 3]).map(|r| r.kind as u64), Some(k));
        }
    }

    #[test]
    fn suspect_injections() {
        let intr = Event::new(EventType::Intr, 0x21, None).info as u64;
        let ok = Record::new(Kind::Inject, 0, intr, 0x1000, 0x202);
        assert!(!ok.is_suspect());
        let if0 = Record::new(Kind::Inject, 0, intr, 0x1000, 0x2);
        assert!(if0.is_suspect());
        let shadow = Record::new(Kind::Inject, 0, intr, 0x1000, 0x202 | 1 << 32);
        assert!(shadow.is_suspect());
        // An exception may be delivered with IF = 0.
        let pf = Event::new(EventType::Exception, 14, Some(2));
        let exc = Record::new(Kind::Inject, 0, pf.info as u64 | u64::from(pf.error_code) << 32, 0x1000, 0x2);
        assert!(!exc.is_suspect());
        assert!(line(&if0).contains("inject INTR 0x21 at rip 0x1000 rflags 0x2 <- IF=0"));
        assert!(line(&exc).contains("inject EXC 0x0e err 0x2"));
    }

    #[test]
    fn lines() {
        let r = Record::new(Kind::TscDeadline, 1_500_000_000, 1000, 1500, 0x10);
        assert_eq!(line(&r), "     1.500000 tsc-deadline 1000 at guest tsc 1500 (-500) rip 0x10");
        let r = Record::new(Kind::Ipi, 0, 0xfd | 2 << 16, 0, 0);
        assert!(line(&r).ends_with("ipi vector 0xfd mode 0 shorthand 2 dest 0x0"));
        assert!(line(&Record::new(Kind::Eoi, 0, u64::MAX, 0, 0)).ends_with("eoi (nothing in service)"));
        let exit = Record::new(Kind::Exit, 0, 0x60, 0x40a680, 0x246 | 3 << 40 | 1 << 32);
        assert!(line(&exit).ends_with("exit 0x60 at rip 0x40a680 rflags 0x246 cpl 3 shadow"));
        let segs = Record::new(Kind::Segs, 0, 0, 0xffff_8880_8db6_e000, 0x33 | 0x2b << 16 | 0x1234 << 32);
        assert!(line(&segs).ends_with("gs.base 0x0 kernel_gs_base 0xffff88808db6e000 cs 0x33 ss 0x2b rsp(low) 0x1234"));
        let m = Record::new(Kind::KvmclockMsr, 0, 0x4b56_4d01, 0x1001, u64::MAX);
        assert!(line(&m).ends_with("kvmclock msr 0x4b564d01 = 0x1001 (KVM_SET_MSRS)"));
        for (a, how) in [(0, "at entry"), (1, "host timer"), (2, "deadline past when armed")] {
            assert!(line(&Record::new(Kind::Timer, 0, a, 0, 0)).ends_with(&std::format!("timer expired ({how})")));
        }
    }
}
