// SPDX-License-Identifier: GPL-2.0
//! kvmclock, KVM's paravirtual clock (Documentation/virt/kvm/x86/msr.rst of
//! the 7.2 source, `arch/x86/include/asm/pvclock-abi.h`): the guest learns
//! it from the paravirtual CPUID leaves 0x4000_0000/0x4000_0001, writes the
//! guest-physical address of a `pvclock_vcpu_time_info` per vCPU to
//! MSR_KVM_SYSTEM_TIME(_NEW) and of a `pvclock_wall_clock` to
//! MSR_KVM_WALL_CLOCK(_NEW), and reads time as
//! `system_time + scale(TSC - tsc_timestamp)` without exits.
//!
//! nsvm keeps one master clock per VM ([`Master`]: a host TSC reading and
//! the VM's clock in ns at that reading, KVM's "master clock"), so every
//! vCPU's record describes the same line and the guest may trust the TSC
//! across vCPUs ([`flags::TSC_STABLE`], offered only when the host's TSC is
//! constant and synchronized). `KVM_GET_CLOCK` reads the same line, so what
//! userspace saves is what the guest saw. The vCPU's TSC is the host's plus
//! its TSC offset (no TSC scaling), so only the offset differs per vCPU.

/// The kvmclock MSRs.
pub mod msr {
    /// Wall clock, first interface (KVM_FEATURE_CLOCKSOURCE).
    pub const WALL_CLOCK: u32 = 0x11;
    /// System time, first interface (KVM_FEATURE_CLOCKSOURCE).
    pub const SYSTEM_TIME: u32 = 0x12;
    /// Wall clock (KVM_FEATURE_CLOCKSOURCE2).
    pub const WALL_CLOCK_NEW: u32 = 0x4b56_4d00;
    /// System time (KVM_FEATURE_CLOCKSOURCE2).
    pub const SYSTEM_TIME_NEW: u32 = 0x4b56_4d01;
    /// Every kvmclock MSR, as `KVM_GET_MSR_INDEX_LIST` lists them.
    pub const ALL: [u32; 4] = [SYSTEM_TIME, WALL_CLOCK, SYSTEM_TIME_NEW, WALL_CLOCK_NEW];
}

/// One of the kvmclock MSRs.
pub const fn is_kvmclock_msr(index: u32) -> bool {
    matches!(index, msr::WALL_CLOCK | msr::SYSTEM_TIME | msr::WALL_CLOCK_NEW | msr::SYSTEM_TIME_NEW)
}

/// Whether a kvmclock MSR is a wall-clock one (the others: system time).
pub const fn is_wall_clock(index: u32) -> bool {
    matches!(index, msr::WALL_CLOCK | msr::WALL_CLOCK_NEW)
}

/// The paravirtual CPUID leaves.
pub mod leaf {
    /// Signature leaf: EAX = the highest paravirtual leaf, EBX:ECX:EDX =
    /// "KVMKVMKVM\0\0\0".
    pub const SIGNATURE: u32 = 0x4000_0000;
    /// Features leaf: EAX = `KVM_FEATURE_*` bits, EDX = hints.
    pub const FEATURES: u32 = 0x4000_0001;
}

/// `KVM_FEATURE_*` bits of CPUID 0x4000_0001 EAX that nsvm implements.
pub mod features {
    /// kvmclock at MSR 0x11/0x12.
    pub const CLOCKSOURCE: u32 = 1 << 0;
    /// Port 0x80 delays are not needed (nothing to implement: a hint).
    pub const NOP_IO_DELAY: u32 = 1 << 1;
    /// kvmclock at MSR 0x4b564d00/01.
    pub const CLOCKSOURCE2: u32 = 1 << 3;
    /// PVCLOCK_TSC_STABLE_BIT may be set in the vCPU records.
    pub const CLOCKSOURCE_STABLE_BIT: u32 = 1 << 24;
    /// What `KVM_GET_SUPPORTED_CPUID` offers. Not offered (not
    /// implemented): async page faults, steal time, PV EOI, PV unhalt, PV
    /// TLB flush, PV IPIs, poll control, PV sched yield, extended MSI
    /// destination IDs, the map-GPA-range hypercall.
    pub const OFFERED: u32 = CLOCKSOURCE | NOP_IO_DELAY | CLOCKSOURCE2 | CLOCKSOURCE_STABLE_BIT;
}

/// "KVMKVMKVM\0\0\0" as CPUID returns it in EBX, ECX, EDX.
pub const SIGNATURE: [u32; 3] = [
    u32::from_le_bytes(*b"KVMK"),
    u32::from_le_bytes(*b"VMKV"),
    u32::from_le_bytes([b'M', 0, 0, 0]),
];

/// `KVM_GET_SUPPORTED_CPUID`'s paravirtual leaves (KVM's values for the
/// features above; the hints in EDX are userspace's to set).
pub fn supported_leaf(leaf: u32) -> Option<[u32; 4]> {
    match leaf {
        leaf::SIGNATURE => Some([leaf::FEATURES, SIGNATURE[0], SIGNATURE[1], SIGNATURE[2]]),
        leaf::FEATURES => Some([features::OFFERED, 0, 0, 0]),
        _ => None,
    }
}

/// `pvclock_vcpu_time_info.flags`.
pub mod flags {
    /// The TSC is synchronized across vCPUs: no cross-vCPU monotonicity
    /// fix-up needed in the guest.
    pub const TSC_STABLE: u8 = 1 << 0;
    /// The VM was stopped by its VMM (`KVM_KVMCLOCK_CTRL`): the guest's
    /// watchdogs should not count the gap. The guest clears it.
    pub const GUEST_STOPPED: u8 = 1 << 1;
}

/// TSC ticks to ns as the guest computes it: `((delta << shift) * mul) >> 32`
/// (`>>` for a negative shift), with the 96-bit product of
/// `pvclock_scale_delta`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scale {
    /// `tsc_to_system_mul`: ns per (shifted) tick as a 0.32 fixed-point fraction.
    pub mul: u32,
    /// `tsc_shift`.
    pub shift: i8,
}

impl Scale {
    /// The scale for a TSC of `tsc_hz` ticks a second: the smallest shift
    /// that makes a shifted tick last less than 1 ns, which puts `mul` in
    /// [2^31, 2^32) for the most precision. `None` for a rate of 0.
    pub fn from_hz(tsc_hz: u64) -> Option<Self> {
        const NS: u128 = 1_000_000_000;
        if tsc_hz == 0 {
            return None;
        }
        let mut shift: i32 = 0;
        // Rate of shifted ticks as a fraction hz_num / 2^den_shift.
        let shifted = |s: i32| -> (u128, u32) { if s >= 0 { ((tsc_hz as u128) << s, 0) } else { (tsc_hz as u128, (-s) as u32) } };
        // Lower the shift while a shifted tick still lasts less than 1 ns
        // at the next lower shift, raise it while it lasts 1 ns or more.
        loop {
            let (n, d) = shifted(shift);
            if n <= NS << d {
                shift += 1;
                continue;
            }
            let (n2, d2) = shifted(shift - 1);
            if n2 > NS << d2 {
                shift -= 1;
                continue;
            }
            break;
        }
        let (n, d) = shifted(shift);
        // mul = 2^32 * 1e9 / (tsc_hz * 2^shift) = 2^32 * a / n with a < n
        // by the choice above, so < 2^32: the 32 quotient bits of a long
        // division (no 128-bit division: the kernel has no __udivti3).
        let (a, n) = ((NS << d) as u64, n as u64);
        let (mut r, mut mul) = (a, 0u32);
        for _ in 0..32 {
            r <<= 1;
            mul <<= 1;
            if r >= n {
                r -= n;
                mul |= 1;
            }
        }
        Some(Scale { mul, shift: shift as i8 })
    }

    /// ns for `delta` ticks (the guest's computation).
    pub fn ns(&self, delta: u64) -> u64 {
        let d = if self.shift >= 0 { delta << self.shift } else { delta >> -(self.shift as i32) };
        ((d as u128 * self.mul as u128) >> 32) as u64
    }
}

/// The VM's clock as a line through one point: at host TSC `host_tsc` the
/// clock read `ns`, and it advances with the host TSC at `scale`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Master {
    /// Host TSC at the reference point.
    pub host_tsc: u64,
    /// The VM's clock (ns) there.
    pub ns: u64,
    /// Host TSC ticks to ns.
    pub scale: Scale,
    /// The host's TSC is constant and synchronized across its CPUs.
    pub stable: bool,
}

impl Master {
    /// A master clock reading `ns` at host TSC `host_tsc`, for a host TSC
    /// of `tsc_khz` (`None` for 0).
    pub fn new(host_tsc: u64, ns: u64, tsc_khz: u32, stable: bool) -> Option<Self> {
        Some(Master { host_tsc, ns, scale: Scale::from_hz(u64::from(tsc_khz) * 1000)?, stable })
    }

    /// The clock at host TSC `host_tsc`. A reading from before the
    /// reference point (another CPU's TSC a little behind) gives the
    /// reference value: the clock never reads before it.
    pub fn read(&self, host_tsc: u64) -> u64 {
        self.ns.wrapping_add(self.scale.ns(host_tsc.saturating_sub(self.host_tsc)))
    }

    /// The record of a vCPU whose TSC is the host's plus `tsc_offset`;
    /// `stopped` adds [`flags::GUEST_STOPPED`].
    pub fn time_info(&self, tsc_offset: u64, stopped: bool) -> TimeInfo {
        let mut f = if self.stable { flags::TSC_STABLE } else { 0 };
        if stopped {
            f |= flags::GUEST_STOPPED;
        }
        TimeInfo { tsc_timestamp: self.host_tsc.wrapping_add(tsc_offset), system_time: self.ns, scale: self.scale, flags: f }
    }
}

/// `struct pvclock_vcpu_time_info` without its version.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeInfo {
    /// Guest TSC at `system_time`.
    pub tsc_timestamp: u64,
    /// The clock (ns) at `tsc_timestamp`.
    pub system_time: u64,
    /// TSC ticks to ns.
    pub scale: Scale,
    /// [`flags`].
    pub flags: u8,
}

/// `sizeof(struct pvclock_vcpu_time_info)`.
pub const TIME_INFO_SIZE: usize = 32;
/// Offset of `flags` in the record.
pub const TIME_INFO_FLAGS: usize = 29;
/// `sizeof(struct pvclock_wall_clock)`.
pub const WALL_CLOCK_SIZE: usize = 12;

impl TimeInfo {
    /// The packed record with `version`.
    pub fn to_bytes(&self, version: u32) -> [u8; TIME_INFO_SIZE] {
        let mut b = [0u8; TIME_INFO_SIZE];
        b[0..4].copy_from_slice(&version.to_le_bytes());
        b[8..16].copy_from_slice(&self.tsc_timestamp.to_le_bytes());
        b[16..24].copy_from_slice(&self.system_time.to_le_bytes());
        b[24..28].copy_from_slice(&self.scale.mul.to_le_bytes());
        b[28] = self.scale.shift as u8;
        b[TIME_INFO_FLAGS] = self.flags;
        b
    }

    /// Parses a record (for tests and tools): (version, record).
    pub fn from_bytes(b: &[u8; TIME_INFO_SIZE]) -> (u32, Self) {
        let w = |o: usize| u64::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3], b[o + 4], b[o + 5], b[o + 6], b[o + 7]]);
        let version = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let mul = u32::from_le_bytes([b[24], b[25], b[26], b[27]]);
        (version, TimeInfo { tsc_timestamp: w(8), system_time: w(16), scale: Scale { mul, shift: b[28] as i8 }, flags: b[TIME_INFO_FLAGS] })
    }

    /// The clock the guest computes from this record at guest TSC `tsc`.
    pub fn read(&self, tsc: u64) -> u64 {
        self.system_time.wrapping_add(self.scale.ns(tsc.wrapping_sub(self.tsc_timestamp)))
    }
}

/// The versions an update writes, from the version the guest's record
/// holds now: odd while the record changes, then the next even one (the
/// guest retries while it reads an odd version or the version changed
/// under its read). An odd version found (junk at the first write) is
/// stepped over.
pub const fn update_versions(current: u32) -> (u32, u32) {
    let odd = current.wrapping_add(1) | 1;
    (odd, odd.wrapping_add(1))
}

/// `struct pvclock_wall_clock`: the wall-clock time at which the VM's
/// clock read 0, for a host real time of `real_ns` and a VM clock of
/// `clock_ns` at the same instant, with `version`.
pub fn wall_clock_bytes(real_ns: u64, clock_ns: u64, version: u32) -> [u8; WALL_CLOCK_SIZE] {
    let epoch = real_ns.saturating_sub(clock_ns);
    let mut b = [0u8; WALL_CLOCK_SIZE];
    b[0..4].copy_from_slice(&version.to_le_bytes());
    // Seconds as u32: wraps in 2106, as in KVM's record.
    b[4..8].copy_from_slice(&((epoch / 1_000_000_000) as u32).to_le_bytes());
    b[8..12].copy_from_slice(&((epoch % 1_000_000_000) as u32).to_le_bytes());
    b
}

/// A vCPU's kvmclock state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuClock {
    /// MSR_KVM_SYSTEM_TIME(_NEW) as last written: the record's address,
    /// bit 0 = enabled.
    pub system_time: u64,
    /// A wall-clock record to write at this address before the guest runs.
    pub wall_pending: Option<u64>,
    /// The record must be written before the guest runs (enabled, moved,
    /// or the VM's clock was set).
    pub dirty: bool,
    /// `KVM_KVMCLOCK_CTRL` asked for [`flags::GUEST_STOPPED`] in the next write.
    pub stop_request: bool,
    /// The VM clock generation the record was last written for.
    pub generation: u64,
    /// The vCPU's TSC offset when the record was last written.
    pub tsc_offset: u64,
}

impl VcpuClock {
    /// The record's guest-physical address while enabled.
    pub const fn record_gpa(&self) -> Option<u64> {
        if self.system_time & 1 != 0 {
            Some(self.system_time & !1)
        } else {
            None
        }
    }

    /// Something must be written before the guest runs: a wall clock, or
    /// the enabled record is stale (dirty, the VM clock's `generation` or
    /// the vCPU's `tsc_offset` moved, a stop to report).
    pub fn needs_write(&self, generation: u64, tsc_offset: u64) -> bool {
        self.wall_pending.is_some()
            || (self.system_time & 1 != 0
                && (self.dirty || self.stop_request || generation != self.generation || tsc_offset != self.tsc_offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_matches_rates() {
        // 2 GHz: half a ns per tick, no shift.
        assert_eq!(Scale::from_hz(2_000_000_000), Some(Scale { mul: 1 << 31, shift: 0 }));
        // 1 GHz: one shift up, then half.
        assert_eq!(Scale::from_hz(1_000_000_000), Some(Scale { mul: 1 << 31, shift: 1 }));
        // 4 GHz: a shift down.
        assert_eq!(Scale::from_hz(4_000_000_000), Some(Scale { mul: 1 << 31, shift: -1 }));
        assert_eq!(Scale::from_hz(0), None);
        // Odd rates: mul in [2^31, 2^32) and one second of ticks within
        // a few ns of 1e9 (the fraction's rounding).
        for hz in [1u64, 999, 32_768, 14_318_180, 999_999_999, 1_000_000_001, 2_345_678_901, 3_999_999_999, 5_000_000_000, 9_000_000_000] {
            let s = Scale::from_hz(hz).unwrap();
            assert!(s.mul >= 1 << 31, "{hz}: mul {:#x}", s.mul);
            let one_s = s.ns(hz);
            assert!((999_999_990..=1_000_000_000).contains(&one_s), "{hz}: {one_s}");
            // An hour of ticks: within 1 ppm.
            let h = s.ns(hz * 3600);
            assert!(h.abs_diff(3_600_000_000_000) <= 3_600_000, "{hz}: {h}");
        }
    }

    #[test]
    fn master_and_records() {
        let m = Master::new(10_000, 5_000, 2_000_000, true).unwrap();
        assert_eq!(m.read(10_000), 5_000);
        assert_eq!(m.read(12_000), 6_000);
        // A TSC behind the reference reads the reference.
        assert_eq!(m.read(9_000), 5_000);
        // Two vCPUs with different offsets compute the same clock at the
        // same host instant.
        let (a, b) = (m.time_info(0, false), m.time_info(1u64.wrapping_neg() << 20, false));
        for host in [10_000u64, 12_345, 1 << 40] {
            assert_eq!(a.read(host), m.read(host));
            assert_eq!(b.read(host.wrapping_add(1u64.wrapping_neg() << 20)), m.read(host));
        }
        assert_eq!(a.flags, flags::TSC_STABLE);
        let u = Master { stable: false, ..m };
        assert_eq!(u.time_info(0, true).flags, flags::GUEST_STOPPED);
        assert_eq!(Master::new(0, 0, 0, true), None);
    }

    #[test]
    fn record_layout() {
        let t = TimeInfo { tsc_timestamp: 0x1122_3344_5566_7788, system_time: 0x99, scale: Scale { mul: 0x8000_0001, shift: -2 }, flags: 3 };
        let b = t.to_bytes(7);
        assert_eq!(&b[0..4], &[7, 0, 0, 0]);
        assert_eq!(&b[4..8], &[0; 4]);
        assert_eq!(b[28], 0xfe);
        assert_eq!(b[29], 3);
        assert_eq!(&b[30..32], &[0, 0]);
        assert_eq!(TimeInfo::from_bytes(&b), (7, t));
    }

    #[test]
    fn versions_and_wall_clock() {
        assert_eq!(update_versions(0), (1, 2));
        assert_eq!(update_versions(2), (3, 4));
        // Junk: an odd version is stepped over to the next odd one.
        assert_eq!(update_versions(5), (7, 8));
        assert_eq!(update_versions(u32::MAX), (1, 2));
        let w = wall_clock_bytes(1_700_000_000_123_456_789, 3_000_000_000, 2);
        assert_eq!(u32::from_le_bytes([w[0], w[1], w[2], w[3]]), 2);
        assert_eq!(u32::from_le_bytes([w[4], w[5], w[6], w[7]]), 1_699_999_997);
        assert_eq!(u32::from_le_bytes([w[8], w[9], w[10], w[11]]), 123_456_789);
    }

    #[test]
    fn leaves_and_state() {
        let s = supported_leaf(leaf::SIGNATURE).unwrap();
        assert_eq!(s[0], leaf::FEATURES);
        let mut sig = [0u8; 12];
        for (i, r) in s[1..].iter().enumerate() {
            sig[i * 4..i * 4 + 4].copy_from_slice(&r.to_le_bytes());
        }
        assert_eq!(&sig, b"KVMKVMKVM\0\0\0");
        assert_eq!(supported_leaf(leaf::FEATURES), Some([features::OFFERED, 0, 0, 0]));
        assert_eq!(supported_leaf(0x4000_0002), None);
        assert!(msr::ALL.iter().all(|&m| is_kvmclock_msr(m)));
        assert!(!is_kvmclock_msr(0x10));
        let mut c = VcpuClock::default();
        assert!(!c.needs_write(0, 0));
        c.system_time = 0x5000;
        assert_eq!(c.record_gpa(), None);
        assert!(!c.needs_write(1, 1), "disabled: nothing to write");
        c.system_time = 0x5001;
        assert_eq!(c.record_gpa(), Some(0x5000));
        assert!(!c.needs_write(0, 0));
        assert!(c.needs_write(1, 0) && c.needs_write(0, 1));
        c.wall_pending = Some(0x6000);
        c.system_time = 0;
        assert!(c.needs_write(0, 0));
    }
}
