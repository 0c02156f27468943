// SPDX-License-Identifier: GPL-2.0
//! `KVM_GET_CLOCK` / `KVM_SET_CLOCK`: the VM's clock (what kvmclock would
//! show a guest), in nanoseconds since the VM was created, kept as an
//! offset from the host's boot-time clock (KVM's `kvmclock_offset`). nsvm
//! offers no kvmclock to guests (no paravirtual CPUID leaves), so this is
//! the value userspace saves and restores; `struct kvm_clock_data` and the
//! flag rule are KVM's.

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

    /// `KVM_SET_CLOCK`: the new offset from the host clock reading
    /// `now_ns`, with `real_ns` the host's real time. `EINVAL` for unknown
    /// flags (those of `KVM_GET_CLOCK` are accepted back). With
    /// [`flags::REALTIME`] the clock advances by the real time elapsed since
    /// `realtime` (never backwards).
    pub fn offset(&self, now_ns: u64, real_ns: u64) -> Result<i64, Invalid> {
        if self.flags & !flags::VALID != 0 {
            return Err(Invalid);
        }
        let mut clock = self.clock;
        if self.flags & flags::REALTIME != 0 && real_ns > self.realtime {
            clock = clock.wrapping_add(real_ns - self.realtime);
        }
        Ok(clock.wrapping_sub(now_ns) as i64)
    }
}

/// The VM's clock at host time `now_ns` for `offset`.
pub fn read(now_ns: u64, offset: i64) -> u64 {
    now_ns.wrapping_add(offset as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_and_read() {
        let d = ClockData { clock: 1_000, flags: 0, realtime: 0, host_tsc: 0 };
        let off = d.offset(5_000, 0).unwrap();
        assert_eq!(read(5_000, off), 1_000);
        assert_eq!(read(6_000, off), 2_000);
        let bad = ClockData { flags: 1, ..d };
        assert_eq!(bad.offset(5_000, 0), Err(Invalid));
        // Realtime 300 ns in the past: the clock moves on by 300.
        let rt = ClockData { clock: 1_000, flags: flags::REALTIME | flags::TSC_STABLE, realtime: 700, host_tsc: 0 };
        assert_eq!(read(5_000, rt.offset(5_000, 1_000).unwrap()), 1_300);
        // A realtime in the future does not move it back.
        assert_eq!(read(5_000, rt.offset(5_000, 500).unwrap()), 1_000);
        let b = rt.to_bytes();
        assert_eq!(ClockData::from_bytes(&b), rt);
    }
}
