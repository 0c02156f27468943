// SPDX-License-Identifier: GPL-2.0
//! The APIC timer's arithmetic (divide configuration, current count,
//! one-shot, periodic and TSC-deadline modes) from a time source passed in.

use super::{lvt, reg, Lapic};

/// The time an APIC timer computation needs: the host's monotonic clock
/// and the guest's TSC at the same moment, and the TSC rate.
#[derive(Clone, Copy, Debug, Default)]
pub struct Clock {
    /// Host monotonic time (ns).
    pub now_ns: u64,
    /// The guest's TSC at `now_ns`.
    pub guest_tsc: u64,
    /// TSC rate (kHz).
    pub tsc_khz: u64,
}

impl Clock {
    /// Nanoseconds from now until guest TSC value `deadline` (0 if past).
    pub fn ns_until_tsc(&self, deadline: u64) -> u64 {
        if deadline <= self.guest_tsc || self.tsc_khz == 0 {
            return 0;
        }
        // ticks * 10^6 / kHz without 128-bit division (none in the kernel).
        let ticks = deadline - self.guest_tsc;
        let (q, r) = (ticks / self.tsc_khz, ticks % self.tsc_khz);
        let r_ns = if self.tsc_khz < (1 << 40) { r * 1_000_000 / self.tsc_khz } else { 0 };
        q.saturating_mul(1_000_000).saturating_add(r_ns).min(u64::MAX / 2)
    }
}

/// KVM's APIC bus cycle (`APIC_BUS_CYCLE_NS_DEFAULT`): one timer tick per
/// divided nanosecond.
pub const BUS_CYCLE_NS: u64 = 1;
/// The shortest periodic timer KVM lets a guest program
/// (`min_timer_period_us`, 200 µs): a guest cannot flood the host.
pub const MIN_PERIOD_NS: u64 = 200_000;

/// The timer's running state (not in the register page).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timer {
    /// Absolute host time (ns) of the next expiry, if armed.
    pub expiry_ns: Option<u64>,
    /// Period (ns) of a periodic or one-shot count (0: stopped).
    pub period_ns: u64,
    /// TSC-deadline mode: IA32_TSC_DEADLINE (0: disarmed).
    pub tsc_deadline: u64,
}

impl Lapic {
    /// The divisor of TDCR (APM 16.4.1: bits 3 and 1:0; 0b111 is 1).
    pub fn divisor(&self) -> u64 {
        let t = self.get(reg::TDCR);
        let n = ((t & 3) | ((t & 8) >> 1)) + 1;
        1 << (n & 7)
    }
    /// The timer mode of LVTT (0 one-shot, 1 periodic, 2 TSC-deadline).
    pub fn timer_mode(&self) -> u32 {
        (self.get(reg::LVTT) >> lvt::TIMER_MODE_SHIFT) & 3
    }
    pub(super) fn tsc_deadline_mode(&self) -> bool {
        self.timer_mode() == 2
    }
    pub(super) fn timer_mode_mask(&self) -> u32 {
        if self.cpuid_tsc_deadline {
            3 << lvt::TIMER_MODE_SHIFT
        } else {
            1 << lvt::TIMER_MODE_SHIFT
        }
    }

    /// Starts counting TMICT down from `now` (one-shot or periodic).
    pub(super) fn start_count(&mut self, c: &Clock) {
        let tmict = u64::from(self.get(reg::TMICT));
        let mut period = tmict * BUS_CYCLE_NS * self.divisor();
        if period == 0 {
            self.timer.expiry_ns = None;
            self.timer.period_ns = 0;
            return;
        }
        if self.timer_mode() == 1 && period < MIN_PERIOD_NS {
            period = MIN_PERIOD_NS;
            self.period_clamped = true;
        }
        self.timer.period_ns = period;
        self.timer.expiry_ns = Some(c.now_ns.saturating_add(period));
    }

    /// Arms TSC-deadline mode from IA32_TSC_DEADLINE.
    fn start_deadline(&mut self, c: &Clock) {
        self.timer.period_ns = 0;
        self.timer.expiry_ns = (self.timer.tsc_deadline != 0).then(|| c.now_ns.saturating_add(c.ns_until_tsc(self.timer.tsc_deadline)));
    }

    /// When the host timer must fire next (absolute ns).
    pub fn timer_expiry(&self) -> Option<u64> {
        self.timer.expiry_ns
    }

    /// The current count (TMCCT): what is left of the period, in divided
    /// bus cycles; 0 when stopped or in TSC-deadline mode.
    pub fn current_count(&self, c: &Clock) -> u32 {
        if self.tsc_deadline_mode() || self.timer.period_ns == 0 {
            return 0;
        }
        let Some(exp) = self.timer.expiry_ns else { return 0 };
        if exp <= c.now_ns {
            return 0;
        }
        let left = (exp - c.now_ns) % self.timer.period_ns.max(1);
        let left = if left == 0 && exp > c.now_ns { self.timer.period_ns.min(exp - c.now_ns) } else { left };
        (left / (BUS_CYCLE_NS * self.divisor())) as u32
    }

    /// The host timer fired (or an entry noticed the expiry passed): if the
    /// expiry is due, request LVTT's vector unless masked, then rearm a
    /// periodic timer (skipping missed periods: a guest never makes the
    /// host catch up a backlog) or stop. Returns whether an interrupt was
    /// requested.
    pub fn timer_tick(&mut self, c: &Clock) -> bool {
        let Some(exp) = self.timer.expiry_ns else { return false };
        if exp > c.now_ns {
            return false;
        }
        let lvtt = self.get(reg::LVTT);
        let fired = lvtt & lvt::MASKED == 0 && self.accept_fixed(lvtt as u8, false, true);
        match self.timer_mode() {
            1 if self.timer.period_ns != 0 => {
                let p = self.timer.period_ns;
                let mut next = exp.saturating_add(p);
                if next <= c.now_ns {
                    next = c.now_ns.saturating_add(p);
                }
                self.timer.expiry_ns = Some(next);
            }
            2 => {
                self.timer.expiry_ns = None;
                self.timer.tsc_deadline = 0;
            }
            _ => {
                self.timer.expiry_ns = None;
            }
        }
        fired
    }

    /// IA32_TSC_DEADLINE read: the armed deadline in TSC-deadline mode, 0
    /// otherwise.
    pub fn read_tsc_deadline(&self) -> u64 {
        if self.hw_enabled() && self.tsc_deadline_mode() {
            self.timer.tsc_deadline
        } else {
            0
        }
    }
    /// IA32_TSC_DEADLINE write: ignored outside TSC-deadline mode (APM
    /// 16.4.2 / KVM); 0 disarms.
    pub fn write_tsc_deadline(&mut self, v: u64, c: &Clock) -> bool {
        if !self.hw_enabled() || !self.tsc_deadline_mode() {
            return false;
        }
        self.timer.tsc_deadline = v;
        self.start_deadline(c);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{clk, enabled};
    use super::super::*;

    #[test]
    fn timer_one_shot_periodic_and_count() {
        let mut a = enabled(0);
        a.write(reg::TDCR, 0xb, &clk(0)).unwrap(); // divide by 1
        assert_eq!(a.divisor(), 1);
        a.write(reg::TDCR, 0x0, &clk(0)).unwrap();
        assert_eq!(a.divisor(), 2);
        a.write(reg::TDCR, 0xa, &clk(0)).unwrap();
        assert_eq!(a.divisor(), 128);
        a.write(reg::TDCR, 0x3, &clk(0)).unwrap();
        assert_eq!(a.divisor(), 16);
        a.write(reg::LVTT, 0x40, &clk(0)).unwrap();
        let e = a.write(reg::TMICT, 1_000_000, &clk(1000)).unwrap();
        assert!(e.timer);
        assert_eq!(a.timer_expiry(), Some(1000 + 16_000_000));
        assert_eq!(a.read(reg::TMCCT, &clk(1000 + 8_000_000)), 500_000);
        assert!(!a.timer_tick(&clk(1000)));
        assert!(a.timer_tick(&clk(16_001_000)));
        assert!(a.irr(0x40));
        assert_eq!(a.timer_expiry(), None);
        assert_eq!(a.read(reg::TMCCT, &clk(17_000_000)), 0);
        // Periodic, with a 1 ns period clamped to the minimum.
        a.write(reg::TDCR, 0xb, &clk(0)).unwrap();
        a.write(reg::LVTT, 0x41 | lvt::TIMER_PERIODIC, &clk(0)).unwrap();
        a.write(reg::TMICT, 1, &clk(0)).unwrap();
        assert_eq!(a.timer.period_ns, MIN_PERIOD_NS);
        assert!(a.period_clamped);
        assert!(a.timer_tick(&clk(MIN_PERIOD_NS)));
        assert_eq!(a.timer_expiry(), Some(2 * MIN_PERIOD_NS));
        // Far behind: no backlog.
        assert!(a.timer_tick(&clk(100 * MIN_PERIOD_NS)));
        assert_eq!(a.timer_expiry(), Some(101 * MIN_PERIOD_NS));
        // Masked: counts, no interrupt.
        a.write(reg::LVTT, 0x41 | lvt::TIMER_PERIODIC | lvt::MASKED, &clk(0)).unwrap();
        assert!(!a.timer_tick(&clk(200 * MIN_PERIOD_NS)));
        // TMICT 0 stops.
        a.write(reg::TMICT, 0, &clk(0)).unwrap();
        assert_eq!(a.timer_expiry(), None);
    }

    #[test]
    fn timer_tsc_deadline() {
        let mut a = enabled(0);
        // Without the CPUID bit the mode field keeps one bit only.
        a.write(reg::LVTT, 0x42 | lvt::TIMER_TSCDEADLINE, &clk(0)).unwrap();
        assert_eq!(a.timer_mode(), 0);
        a.cpuid_tsc_deadline = true;
        a.write(reg::LVTT, 0x42 | lvt::TIMER_TSCDEADLINE, &clk(0)).unwrap();
        assert_eq!(a.timer_mode(), 2);
        // TMICT is ignored in this mode.
        a.write(reg::TMICT, 5, &clk(0)).unwrap();
        assert_eq!(a.get(reg::TMICT), 0);
        let c = clk(1000); // guest TSC 2000 at 2 GHz
        assert!(a.write_tsc_deadline(2000 + 2_000_000, &c));
        assert_eq!(a.timer_expiry(), Some(1000 + 1_000_000));
        assert_eq!(a.read_tsc_deadline(), 2_002_000);
        assert!(a.timer_tick(&clk(1_001_000)));
        assert!(a.irr(0x42));
        assert_eq!(a.read_tsc_deadline(), 0);
        // A deadline in the past fires at once.
        assert!(a.write_tsc_deadline(1, &clk(5000)));
        assert_eq!(a.timer_expiry(), Some(5000));
        // Leaving the mode stops the timer.
        a.write(reg::LVTT, 0x42, &clk(0)).unwrap();
        assert_eq!(a.timer_expiry(), None);
        assert!(!a.write_tsc_deadline(5, &clk(0)));
    }
}
