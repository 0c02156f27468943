// SPDX-License-Identifier: GPL-2.0
//! `KVM_GET_CLOCK` / `KVM_SET_CLOCK`: the VM's clock (what kvmclock shows
//! the guest), in nanoseconds since the VM was created. nsvm keeps it as a
//! line through a host TSC reading (`kvmclock::Master`), the line the
//! guest's kvmclock records describe, so what userspace saves is what the
//! guest saw; `struct kvm_clock_data` and the flag rule are KVM's.

/// `sizeof(struct kvm_clock_data)`: clock, flags, pad0, realtime, host_tsc, pad[4].
pub const KVM_CLOCK_DATA_SIZE: usize = 48;

/// `KVM_CLOCK_*` flags.
pub mod flags {
    /// The clock is stable across vCPUs (master clock).
    pub const TSC_STABLE: u32 = 1 << 1;
    /// `realtime` is valid.
    pub const REALTIME: u32 = 1 << 2;
    /// `host_tsc` is valid.
    pub const HOST_TSC: u32 = 1 << 3;
    /// What `KVM_SET_CLOCK` accepts, and `KVM_CAP_ADJUST_CLOCK`'s value.
    pub const VALID: u32 = TSC_STABLE | REALTIME | HOST_TSC;
}

/// `struct kvm_clock_data`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClockData {
    /// The VM's clock, ns.
    pub clock: u64,
    /// [`flags`].
    pub flags: u32,
    /// Host real time (ns) at the same instant, with [`flags::REALTIME`].
    pub realtime: u64,
    /// Host TSC at the same instant, with [`flags::HOST_TSC`].
    pub host_tsc: u64,
}

/// A refused `KVM_SET_CLOCK` (`EINVAL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Invalid;

impl ClockData {
    /// The struct's bytes (padding zero).
    pub fn to_bytes(&self) -> [u8; KVM_CLOCK_DATA_SIZE] {
        let mut b = [0u8; KVM_CLOCK_DATA_SIZE];
        b[0..8].copy_from_slice(&self.clock.to_ne_bytes());
        b[8..12].copy_from_slice(&self.flags.to_ne_bytes());
        b[16..24].copy_from_slice(&self.realtime.to_ne_bytes());
        b[24..32].copy_from_slice(&self.host_tsc.to_ne_bytes());
        b
    }

    /// Parses the struct (padding ignored, as KVM does).
    pub fn from_bytes(b: &[u8; KVM_CLOCK_DATA_SIZE]) -> Self {
        let w = |o: usize| u64::from_ne_bytes(b[o..o + 8].try_into().unwrap_or([0; 8]));
        ClockData { clock: w(0), flags: u32::from_ne_bytes([b[8], b[9], b[10], b[11]]), realtime: w(16), host_tsc: w(24) }
    }

    /// `KVM_SET_CLOCK`: the clock value to set now, with `real_ns` the
    /// host's real time now. `EINVAL` for unknown flags (those of
    /// `KVM_GET_CLOCK` are accepted back). With [`flags::REALTIME`] the
    /// clock advances by the real time elapsed since `realtime` (never
    /// backwards).
    pub fn value_now(&self, real_ns: u64) -> Result<u64, Invalid> {
        if self.flags & !flags::VALID != 0 {
            return Err(Invalid);
        }
        let mut clock = self.clock;
        if self.flags & flags::REALTIME != 0 && real_ns > self.realtime {
            clock = clock.wrapping_add(real_ns - self.realtime);
        }
        Ok(clock)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_values() {
        let d = ClockData { clock: 1_000, flags: 0, realtime: 0, host_tsc: 0 };
        assert_eq!(d.value_now(5_000), Ok(1_000));
        let bad = ClockData { flags: 1, ..d };
        assert_eq!(bad.value_now(5_000), Err(Invalid));
        // Realtime 300 ns in the past: the clock moves on by 300.
        let rt = ClockData { clock: 1_000, flags: flags::REALTIME | flags::TSC_STABLE, realtime: 700, host_tsc: 0 };
        assert_eq!(rt.value_now(1_000), Ok(1_300));
        // A realtime in the future does not move it back.
        assert_eq!(rt.value_now(500), Ok(1_000));
        // Without the flag the realtime is ignored.
        assert_eq!(ClockData { flags: 0, ..rt }.value_now(1_000), Ok(1_000));
        let b = rt.to_bytes();
        assert_eq!(ClockData::from_bytes(&b), rt);
    }
}
