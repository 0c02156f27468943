// SPDX-License-Identifier: GPL-2.0
//! `NSVM_GET_HOST_INFO`'s struct: what the module found and owns on the host.

use core::mem::size_of;
use static_assertions::const_assert_eq;

/// ABI version of [`NsvmHostInfo`]; bumped on incompatible changes.
pub const NSVM_HOST_INFO_VERSION: u32 = 1;
/// Number of CPUs [`NsvmHostInfo::cpus_svm`] can describe.
pub const NSVM_MAX_CPUS: usize = 256;

/// `NSVM_GET_HOST_INFO`: what the module found and owns on the host.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NsvmHostInfo {
    /// [`NSVM_HOST_INFO_VERSION`].
    pub version: u32,
    /// SVM revision (CPUID 0x8000000A EAX 7:0).
    pub svm_revision: u32,
    /// Number of ASIDs (CPUID 0x8000000A EBX).
    pub nasid: u32,
    /// SVM features (CPUID 0x8000000A EDX).
    pub svm_features: u32,
    /// Physical address bits (CPUID 0x80000008 EAX 7:0).
    pub phys_bits: u32,
    /// Number of online CPUs.
    pub cpus_online: u32,
    /// Number of CPUs on which nsvm has EFER.SVME set and a host save area.
    pub cpus_enabled: u32,
    /// Flags, see [`host_flags`].
    pub flags: u32,
    /// CPU hotplug transitions nsvm handled since load (online + offline).
    pub hotplug_events: u64,
    /// Bytes the module holds for per-CPU SVM state (host save areas).
    pub percpu_bytes: u64,
    /// Bit n set: CPU n has SVM enabled by nsvm.
    pub cpus_svm: [u64; NSVM_MAX_CPUS / 64],
}

const_assert_eq!(size_of::<NsvmHostInfo>(), 80);

/// Bits of [`NsvmHostInfo::flags`].
pub mod host_flags {
    /// VM_CR could not be read (e.g. not emulated); SVMDIS was assumed clear.
    pub const VM_CR_UNREADABLE: u32 = 1 << 0;
    /// VM_CR.LOCK was set.
    pub const VM_CR_LOCKED: u32 = 1 << 1;
}

impl NsvmHostInfo {
    /// All zero.
    pub const ZERO: Self = Self {
        version: 0,
        svm_revision: 0,
        nasid: 0,
        svm_features: 0,
        phys_bits: 0,
        cpus_online: 0,
        cpus_enabled: 0,
        flags: 0,
        hotplug_events: 0,
        percpu_bytes: 0,
        cpus_svm: [0; NSVM_MAX_CPUS / 64],
    };
    /// Whether CPU `cpu` is marked as SVM-enabled.
    pub const fn cpu_enabled(&self, cpu: usize) -> bool {
        cpu < NSVM_MAX_CPUS && self.cpus_svm[cpu / 64] & (1 << (cpu % 64)) != 0
    }
    /// Marks CPU `cpu` SVM-enabled (ignored beyond [`NSVM_MAX_CPUS`]).
    pub fn set_cpu_enabled(&mut self, cpu: usize) {
        if cpu < NSVM_MAX_CPUS {
            self.cpus_svm[cpu / 64] |= 1 << (cpu % 64);
        }
    }
    /// The struct as bytes, for copying to userspace.
    pub fn to_bytes(&self) -> [u8; size_of::<Self>()] {
        let mut b = [0u8; size_of::<Self>()];
        let mut put = |off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
        put(0, &self.version.to_ne_bytes());
        put(4, &self.svm_revision.to_ne_bytes());
        put(8, &self.nasid.to_ne_bytes());
        put(12, &self.svm_features.to_ne_bytes());
        put(16, &self.phys_bits.to_ne_bytes());
        put(20, &self.cpus_online.to_ne_bytes());
        put(24, &self.cpus_enabled.to_ne_bytes());
        put(28, &self.flags.to_ne_bytes());
        put(32, &self.hotplug_events.to_ne_bytes());
        put(40, &self.percpu_bytes.to_ne_bytes());
        for (i, w) in self.cpus_svm.iter().enumerate() {
            put(48 + 8 * i, &w.to_ne_bytes());
        }
        b
    }
    /// Parses bytes written by [`Self::to_bytes`].
    pub fn from_bytes(b: &[u8; size_of::<Self>()]) -> Self {
        let u32_at = |o: usize| u32::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u64_at = |o: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[o..o + 8]);
            u64::from_ne_bytes(x)
        };
        let mut cpus_svm = [0u64; NSVM_MAX_CPUS / 64];
        for (i, w) in cpus_svm.iter_mut().enumerate() {
            *w = u64_at(48 + 8 * i);
        }
        Self {
            version: u32_at(0),
            svm_revision: u32_at(4),
            nasid: u32_at(8),
            svm_features: u32_at(12),
            phys_bits: u32_at(16),
            cpus_online: u32_at(20),
            cpus_enabled: u32_at(24),
            flags: u32_at(28),
            hotplug_events: u64_at(32),
            percpu_bytes: u64_at(40),
            cpus_svm,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_info_bytes_round_trip() {
        let mut h = NsvmHostInfo::ZERO;
        h.version = NSVM_HOST_INFO_VERSION;
        h.svm_revision = 1;
        h.nasid = 16;
        h.svm_features = 0x1001_0001;
        h.phys_bits = 40;
        h.cpus_online = 2;
        h.cpus_enabled = 2;
        h.flags = host_flags::VM_CR_UNREADABLE;
        h.hotplug_events = 7;
        h.percpu_bytes = 8192;
        h.set_cpu_enabled(0);
        h.set_cpu_enabled(1);
        h.set_cpu_enabled(200);
        h.set_cpu_enabled(9999);
        assert!(h.cpu_enabled(200) && !h.cpu_enabled(2) && !h.cpu_enabled(9999));
        let b = h.to_bytes();
        assert_eq!(&b[0..4], &1u32.to_ne_bytes());
        assert_eq!(NsvmHostInfo::from_bytes(&b), h);
    }
}
