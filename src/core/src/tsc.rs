// SPDX-License-Identifier: GPL-2.0
//! TSC offsets of a VM's vCPUs as KVM sets them (`kvm_synchronize_tsc` in
//! `arch/x86/kvm/x86.c` of 7.2 is the reference for the behaviour): a
//! vCPU's TSC is the host's plus its offset (APM 15.30.5; no TSC scaling
//! in nsvm, so one rate for all), and the offsets that vCPU creation and
//! userspace's writes of MSR_IA32_TSC produce are matched across vCPUs.
//!
//! Userspace writes each vCPU's TSC separately (QEMU writes 0 to every vCPU
//! at reset, a saved value at restore), one after the other, so a plain
//! `offset = value - host TSC` gives each vCPU a TSC a little behind the
//! previous one's: the guest then measures a TSC warp between its CPUs,
//! stops trusting the TSC and falls back to a slower clock (HPET reads exit
//! to the VMM). KVM's rule, kept here: a write of 0 (and vCPU creation,
//! which writes 0), or once userspace has written any value, a
//! write within one second's worth of cycles of what the last write's
//! value would have become since, takes the offset of the current
//! "generation" instead (on a host whose TSC is stable; otherwise the
//! value is advanced by the time elapsed); any other write starts a new
//! generation with its own offset. Guest WRMSRs of the TSC change only
//! that vCPU's offset (`msr_emul`).
//!
//! On a host whose TSC the kernel does not trust, KVM also catches each
//! vCPU's TSC up, whenever it loads the vCPU, to where the generation's
//! first value would be at the nominal rate (`compute_guest_tsc` from
//! `this_tsc_write`/`this_tsc_nsec`, `tsc_catchup`): the matched writes
//! above advance each written value by the time since the *last* write,
//! so in a second round of zero writes (QEMU's reset after vCPU creation)
//! every vCPU after the first gets a value advanced only by the time since
//! the previous vCPU's write and falls behind by the time between the
//! rounds; the catch-up brings them level again ([`catchup`]).
//! (Measured under QEMU TCG, whose test kernel does not trust its TSC: the
//! second vCPU 0.06-0.1 s behind the first after QEMU's reset writes.) Only
//! forward, as KVM: a TSC ahead of the curve is left alone.


/// The VM-wide state of the matching (KVM's `last_tsc_*`/`cur_tsc_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TscSync {
    /// A write was made (KVM's `last_tsc_khz` non-zero): the first one,
    /// the first vCPU's creation, never matches.
    written: bool,
    /// Host clock (ns) at the last write.
    last_ns: u64,
    /// The value of the last write.
    last_write: u64,
    /// The offset of the current generation.
    cur_offset: u64,
    /// Userspace has written a value (the one-second slop applies only
    /// then: a restore's first value is not matched to creation's 0).
    user_set: bool,
    /// The current generation's first value and host clock then (KVM's
    /// `cur_tsc_write`, `cur_tsc_nsec`).
    gen_write: u64,
    gen_ns: u64,
    /// The offset the last write gave (KVM's `last_tsc_offset`): a
    /// `KVM_VCPU_TSC_OFFSET` equal to it stays in the generation.
    last_offset: u64,
}

/// `KVM_HAS/GET/SET_DEVICE_ATTR` on a vCPU fd (`struct kvm_device_attr`,
/// Documentation/virt/kvm/devices/vcpu.rst section 4): x86 has one group,
/// `KVM_VCPU_TSC_CTRL`, with one attribute, `KVM_VCPU_TSC_OFFSET` (the
/// guest's TSC minus the host's, a u64 at `addr`).
pub mod vcpu_attr {
    use crate::uapi::Errno;

    /// Size of `struct kvm_device_attr` (flags, group, attr, addr).
    pub const SIZE: usize = 24;
    /// `KVM_VCPU_TSC_CTRL`.
    pub const TSC_CTRL: u32 = 0;
    /// `KVM_VCPU_TSC_OFFSET`.
    pub const TSC_OFFSET: u64 = 0;

    /// The fields of `struct kvm_device_attr` (`flags` is ignored, as KVM).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct DeviceAttr {
        /// `group`.
        pub group: u32,
        /// `attr`.
        pub attr: u64,
        /// `addr`: the user address of the value.
        pub addr: u64,
    }

    impl DeviceAttr {
        /// Parses the struct as userspace passed it.
        pub fn parse(b: &[u8; SIZE]) -> Self {
            let u32_at = |o: usize| u32::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
            let u64_at = |o: usize| u64::from(u32_at(o)) | u64::from(u32_at(o + 4)) << 32;
            Self { group: u32_at(4), attr: u64_at(8), addr: u64_at(16) }
        }

        /// Whether the attribute exists: `Ok` for the TSC offset, `ENXIO`
        /// for any other group or attribute (`kvm_vcpu_ioctl_device_attr`,
        /// `kvm_arch_tsc_has_attr`), for the three ioctls alike.
        pub fn check(&self) -> Result<(), Errno> {
            if self.group != TSC_CTRL || self.attr != TSC_OFFSET {
                return Err(Errno::Enxio);
            }
            Ok(())
        }
    }
}

/// Where a vCPU's TSC stands against its generation's curve: the TSC
/// cycles to add to its offset so that it reads no less than
/// `gen_write + (now_ns - gen_ns)` at `khz` (0 when it is there or ahead;
/// KVM's catch-up only moves a TSC forward). `gen` is (`gen_write`,
/// `gen_ns`) of the generation the vCPU last took an offset from.
pub fn catchup(gen: (u64, u64), guest_tsc: u64, now_ns: u64, khz: u64) -> u64 {
    if khz == 0 || now_ns < gen.1 {
        return 0;
    }
    let target = gen.0.wrapping_add(ns_to_cycles(now_ns - gen.1, khz));
    let behind = target.wrapping_sub(guest_tsc) as i64;
    if behind > 0 {
        behind as u64
    } else {
        0
    }
}

/// `ns` of host time in cycles at `khz` (no 128-bit division).
pub fn ns_to_cycles(ns: u64, khz: u64) -> u64 {
    (ns / 1_000_000).saturating_mul(khz).saturating_add((ns % 1_000_000) * khz / 1_000_000)
}

impl TscSync {
    /// A write of `value` to a vCPU's TSC (`user`: by userspace, otherwise
    /// the vCPU's creation with 0) at host TSC `host_tsc` and host time
    /// `now_ns`, for a TSC of `khz` (0: unknown, nothing matches);
    /// `stable`: the host's TSC is synchronized across CPUs. Returns the
    /// vCPU's new offset.
    pub fn write(&mut self, value: u64, user: bool, host_tsc: u64, now_ns: u64, khz: u64, stable: bool) -> u64 {
        let elapsed = ns_to_cycles(now_ns.saturating_sub(self.last_ns), khz);
        let synchronizing = khz != 0
            && (value == 0 || {
                let expected = self.last_write.wrapping_add(elapsed);
                let slop = khz.saturating_mul(1000);
                self.user_set && value < expected.saturating_add(slop) && value.saturating_add(slop) > expected
            });
        let mut value = value;
        let (offset, matched) = if synchronizing && self.written {
            if stable {
                (self.cur_offset, true)
            } else {
                // Unstable host TSC: the value advanced by the elapsed
                // time at the nominal rate, as KVM's. (Keeping the offset
                // here was tried: under QEMU TCG, whose TSC runs at the
                // real host's rate while the test kernel is told 2 GHz,
                // the inner Linux then kept its TSC until the watchdog
                // found the rate wrong at run time, and the switch to the
                // HPET stalled CPU 1's timers for 40-170 s.)
                value = value.wrapping_add(elapsed);
                (value.wrapping_sub(host_tsc), true)
            }
        } else {
            (value.wrapping_sub(host_tsc), false)
        };
        if user {
            self.user_set = true;
        }
        self.written = true;
        self.last_ns = now_ns;
        self.last_write = value;
        self.last_offset = offset;
        if !matched {
            self.cur_offset = offset;
            self.gen_write = value;
            self.gen_ns = now_ns;
        }
        offset
    }

    /// `KVM_SET_DEVICE_ATTR(KVM_VCPU_TSC_OFFSET)`: the vCPU's offset is
    /// `offset`, exactly, and it counts as a userspace write of the value
    /// it gives (host TSC + offset) for later matching: it stays in the
    /// current generation when a write was made and the last one gave the
    /// same offset, otherwise it starts one (KVM's `kvm_arch_tsc_set_attr`
    /// with `__kvm_synchronize_tsc`).
    pub fn set_offset(&mut self, offset: u64, host_tsc: u64, now_ns: u64, khz: u64) -> u64 {
        let value = host_tsc.wrapping_add(offset);
        let matched = khz != 0 && self.written && self.last_offset == offset;
        self.written = true;
        self.user_set = true;
        self.last_ns = now_ns;
        self.last_write = value;
        self.last_offset = offset;
        if !matched {
            self.cur_offset = offset;
            self.gen_write = value;
            self.gen_ns = now_ns;
        }
        offset
    }

    /// The current generation (`gen_write`, `gen_ns`): what a vCPU that
    /// took its offset from the last write catches up to ([`catchup`]).
    pub fn generation(&self) -> (u64, u64) {
        (self.gen_write, self.gen_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KHZ: u64 = 2_000_000;

    #[test]
    fn creation_and_zero_writes_match() {
        let mut s = TscSync::default();
        // The first vCPU: TSC 0 at creation.
        let o0 = s.write(0, false, 1_000_000, 500, KHZ, true);
        assert_eq!(o0, 0u64.wrapping_sub(1_000_000));
        // A second vCPU 10 ms later, then userspace's 0 on each at
        // different times: all share the first offset.
        assert_eq!(s.write(0, false, 21_000_000, 10_000_500, KHZ, true), o0);
        assert_eq!(s.write(0, true, 41_000_000, 20_000_500, KHZ, true), o0);
        assert_eq!(s.write(0, true, 61_000_000, 30_000_500, KHZ, true), o0);
    }

    #[test]
    fn restored_values_match_within_a_second() {
        let mut s = TscSync::default();
        s.write(0, false, 0, 0, KHZ, true);
        // A restore writes 5e9 on vCPU 0 at host TSC 1e9: new generation.
        let o = s.write(5_000_000_000, true, 1_000_000_000, 500_000_000, KHZ, true);
        assert_eq!(o, 4_000_000_000);
        // vCPU 1 gets the same value 100 ms later: matched, same offset
        // (its TSC equals vCPU 0's, not 100 ms behind).
        assert_eq!(s.write(5_000_000_000, true, 1_200_000_000, 600_000_000, KHZ, true), o);
        // A value 10 s away is meant: its own offset.
        let far = s.write(25_000_000_000, true, 1_400_000_000, 700_000_000, KHZ, true);
        assert_eq!(far, 25_000_000_000 - 1_400_000_000);
        // The first non-zero value is never matched to creation's 0.
        let mut t = TscSync::default();
        t.write(0, false, 0, 0, KHZ, true);
        assert_eq!(t.write(1_000, true, 50, 25, KHZ, true), 950);
    }

    #[test]
    fn unstable_host_advances_the_value() {
        let mut s = TscSync::default();
        s.write(0, false, 1_000, 0, KHZ, false);
        // 1 ms later (2,000,000 cycles at the nominal rate): 0 becomes
        // 2e6 against this host TSC, whatever the host TSC did meanwhile.
        assert_eq!(s.write(0, true, 2_601_000, 1_000_000, KHZ, false), 2_000_000u64.wrapping_sub(2_601_000));
        // Unknown rate: nothing matches.
        let mut u = TscSync::default();
        u.write(0, false, 100, 0, 0, true);
        assert_eq!(u.write(0, true, 300, 10, 0, true), 0u64.wrapping_sub(300));
    }

    #[test]
    fn second_zero_round_then_catchup() {
        // Creation writes 0 on vCPU 0 then vCPU 1, then userspace writes
        // 0 on each again 100 ms later: the host TSC (10 cycles/ns here,
        // 10 GHz) runs at the nominal rate, the host unstable.
        let khz = 10_000_000;
        let mut s = TscSync::default();
        let t = |ns: u64| ns * 10;
        let o0 = s.write(0, false, t(1_000), 1_000, khz, false);
        let o1 = s.write(0, false, t(2_000), 2_000, khz, false);
        let gen = s.generation();
        assert_eq!(gen, (0, 1_000));
        // Level after the first round.
        assert_eq!(t(5_000).wrapping_add(o0), t(5_000).wrapping_add(o1));
        let n0 = s.write(0, true, t(100_000_000), 100_000_000, khz, false);
        let n1 = s.write(0, true, t(100_001_000), 100_001_000, khz, false);
        // The generation did not change (every write matched).
        assert_eq!(s.generation(), gen);
        let now = 100_002_000;
        let (g0, g1) = (t(now).wrapping_add(n0), t(now).wrapping_add(n1));
        // vCPU 1 (written second, its value advanced only by the time
        // since vCPU 0's write) is behind by the time between the rounds...
        assert!(g0 > g1 && g0 - g1 > t(90_000_000));
        // ...and the catch-up brings both onto the generation's curve.
        let c0 = catchup(gen, g0, now, khz);
        let c1 = catchup(gen, g1, now, khz);
        assert_eq!(g0 + c0, t(now - 1_000));
        assert_eq!(g1 + c1, t(now - 1_000));
        // Never backwards; nothing without a rate or before the generation.
        assert_eq!(catchup(gen, t(now), now, khz), 0);
        assert_eq!(catchup(gen, 0, now, 0), 0);
        assert_eq!(catchup((0, 5_000), 0, 4_000, khz), 0);
    }

    #[test]
    fn offset_attribute() {
        let khz = 2_000_000;
        let mut s = TscSync::default();
        let off0 = s.write(0, false, 1000, 0, khz, true);
        assert_eq!(off0, 0u64.wrapping_sub(1000));
        // The offset is taken as given; a new one starts a generation.
        let off = 180 * 1_000_000_000u64;
        assert_eq!(s.set_offset(off, 5000, 10, khz), off);
        assert_eq!(s.generation(), (5000 + off, 10));
        // The same offset again (the next vCPU): the same generation.
        assert_eq!(s.set_offset(off, 9000, 20, khz), off);
        assert_eq!(s.generation(), (5000 + off, 10));
        // A negative one (wrapping), then a creation's zero write matches it.
        let neg = 0u64.wrapping_sub(off);
        assert_eq!(s.set_offset(neg, 10_000, 30, khz), neg);
        assert_eq!(s.generation(), (10_000u64.wrapping_add(neg), 30));
        assert_eq!(s.write(0, false, 11_000, 31, khz, true), neg);
        // The struct and the ENXIO rule.
        let mut b = [0u8; vcpu_attr::SIZE];
        b[0..4].copy_from_slice(&7u32.to_ne_bytes());
        b[16..24].copy_from_slice(&0x1234_5678_9abc_u64.to_ne_bytes());
        let a = vcpu_attr::DeviceAttr::parse(&b);
        assert_eq!(a, vcpu_attr::DeviceAttr { group: 0, attr: 0, addr: 0x1234_5678_9abc });
        assert_eq!(a.check(), Ok(()));
        b[4] = 1;
        assert_eq!(vcpu_attr::DeviceAttr::parse(&b).check(), Err(crate::uapi::Errno::Enxio));
        b[4] = 0;
        b[8] = 1;
        assert_eq!(vcpu_attr::DeviceAttr::parse(&b).check(), Err(crate::uapi::Errno::Enxio));
        b[8] = 0;
        b[15] = 0x80;
        assert_eq!(vcpu_attr::DeviceAttr::parse(&b).check(), Err(crate::uapi::Errno::Enxio));
    }

    #[test]
    fn cycles() {
        assert_eq!(ns_to_cycles(1_000_000_000, KHZ), 2_000_000_000);
        assert_eq!(ns_to_cycles(1, KHZ), 2);
        assert_eq!(ns_to_cycles(u64::MAX, KHZ), u64::MAX);
    }
}
