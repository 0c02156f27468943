// SPDX-License-Identifier: GPL-2.0
//! MSR exits to userspace and the MSR filter (`KVM_CAP_X86_USER_SPACE_MSR`,
//! `KVM_X86_SET_MSR_FILTER`; Documentation/virt/kvm/api.rst of Linux 7.2).
//!
//! [`FilterSpec`] is `struct kvm_msr_filter` as userspace passes it, with
//! KVM's validation ([`FilterSpec::check_header`], [`RangeSpec::check`]);
//! [`Filter`] is the installed filter, its bitmaps kept by the caller in one
//! byte buffer; [`Filter::allowed`] is KVM's lookup (the first range that
//! covers the MSR for the access type decides, else the default action;
//! x2APIC MSRs are never filtered). [`exit_reason`] decides whether a
//! failed guest RDMSR/WRMSR goes to userspace.

use crate::uapi::Errno;

/// `KVM_MSR_FILTER_READ`.
pub const READ: u32 = 1 << 0;
/// `KVM_MSR_FILTER_WRITE`.
pub const WRITE: u32 = 1 << 1;
/// `KVM_MSR_FILTER_RANGE_VALID_MASK`.
pub const RANGE_VALID_MASK: u32 = READ | WRITE;
/// `KVM_MSR_FILTER_DEFAULT_DENY` (`KVM_MSR_FILTER_DEFAULT_ALLOW` is 0).
pub const DEFAULT_DENY: u32 = 1 << 0;
/// `KVM_MSR_FILTER_VALID_MASK`.
pub const VALID_MASK: u32 = DEFAULT_DENY;
/// `KVM_MSR_FILTER_MAX_RANGES`.
pub const MAX_RANGES: usize = 16;
/// `KVM_MSR_FILTER_MAX_BITMAP_SIZE` (bytes of one range's bitmap).
pub const MAX_BITMAP_SIZE: usize = 0x600;
/// Size of `struct kvm_msr_filter_range` (flags, nmsrs, base, pad, bitmap pointer).
pub const RANGE_SIZE: usize = 24;
/// Size of `struct kvm_msr_filter` (flags, pad, 16 ranges).
pub const FILTER_SIZE: usize = 8 + MAX_RANGES * RANGE_SIZE;

/// `KVM_MSR_EXIT_REASON_*`: `msr.reason` of `KVM_EXIT_X86_RDMSR/WRMSR`, and
/// the mask `KVM_ENABLE_CAP(KVM_CAP_X86_USER_SPACE_MSR)` takes.
pub mod reason {
    /// An MSR KVM knows refused the access (#GP otherwise).
    pub const INVAL: u32 = 1 << 0;
    /// An MSR KVM does not handle.
    pub const UNKNOWN: u32 = 1 << 1;
    /// The MSR filter denied the access.
    pub const FILTER: u32 = 1 << 2;
    /// `KVM_MSR_EXIT_REASON_VALID_MASK`.
    pub const VALID_MASK: u64 = (INVAL | UNKNOWN | FILTER) as u64;
}

/// `KVM_ENABLE_CAP(KVM_CAP_X86_USER_SPACE_MSR)`: the reason mask, or
/// `EINVAL` for a bit outside [`reason::VALID_MASK`].
pub const fn user_space_msr_mask(arg0: u64) -> Result<u32, Errno> {
    if arg0 & !reason::VALID_MASK != 0 {
        Err(Errno::Einval)
    } else {
        Ok(arg0 as u32)
    }
}

/// Why an MSR access of the guest failed in the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The filter denied it.
    Filtered,
    /// An MSR the kernel does not emulate.
    Unknown,
    /// An MSR the kernel emulates refused the value or the access.
    Invalid,
}

impl Failure {
    /// The `KVM_MSR_EXIT_REASON_*` of the failure.
    pub const fn reason(self) -> u32 {
        match self {
            Failure::Filtered => reason::FILTER,
            Failure::Unknown => reason::UNKNOWN,
            Failure::Invalid => reason::INVAL,
        }
    }
}

/// The exit reason when userspace asked for this kind of failure (`mask`
/// from [`user_space_msr_mask`]), else `None`: the guest gets #GP.
pub const fn exit_reason(mask: u32, f: Failure) -> Option<u32> {
    let r = f.reason();
    if mask & r != 0 {
        Some(r)
    } else {
        None
    }
}

/// One `struct kvm_msr_filter_range` as userspace passed it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RangeSpec {
    /// `KVM_MSR_FILTER_READ` / `_WRITE`.
    pub flags: u32,
    /// Number of MSRs (bits of the bitmap).
    pub nmsrs: u32,
    /// First MSR.
    pub base: u32,
    /// User address of the bitmap.
    pub bitmap: u64,
}

impl RangeSpec {
    /// Bytes of the bitmap KVM copies: whole longs (`BITS_TO_LONGS(nmsrs)`).
    pub const fn bitmap_bytes(&self) -> usize {
        (self.nmsrs as usize).div_ceil(64) * 8
    }

    /// An empty range (`nmsrs` 0) is skipped, whatever else it holds.
    pub const fn is_empty(&self) -> bool {
        self.nmsrs == 0
    }

    /// KVM's checks of a non-empty range (`kvm_add_msr_filter`), before its
    /// bitmap is copied: unknown flags, no flag, a bitmap over
    /// [`MAX_BITMAP_SIZE`] are `EINVAL`.
    pub const fn check(&self) -> Result<(), Errno> {
        if self.flags & !RANGE_VALID_MASK != 0 || self.flags == 0 {
            return Err(Errno::Einval);
        }
        let n = self.bitmap_bytes();
        if n == 0 || n > MAX_BITMAP_SIZE {
            return Err(Errno::Einval);
        }
        Ok(())
    }
}

/// `struct kvm_msr_filter` as userspace passed it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FilterSpec {
    /// `KVM_MSR_FILTER_DEFAULT_DENY` or 0 (allow).
    pub flags: u32,
    /// The ranges, empty ones included.
    pub ranges: [RangeSpec; MAX_RANGES],
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

impl FilterSpec {
    /// Parses the struct's bytes (x86-64 layout).
    pub fn from_bytes(b: &[u8; FILTER_SIZE]) -> Self {
        let mut s = FilterSpec { flags: u32_at(b, 0), ..Default::default() };
        for (i, r) in s.ranges.iter_mut().enumerate() {
            let o = 8 + i * RANGE_SIZE;
            let mut p = [0u8; 8];
            p.copy_from_slice(&b[o + 16..o + 24]);
            *r = RangeSpec { flags: u32_at(b, o), nmsrs: u32_at(b, o + 4), base: u32_at(b, o + 8), bitmap: u64::from_ne_bytes(p) };
        }
        s
    }

    /// Accesses no range covers are allowed.
    pub const fn default_allow(&self) -> bool {
        self.flags & DEFAULT_DENY == 0
    }

    /// KVM's checks before any range (`kvm_vm_ioctl_set_msr_filter`):
    /// unknown flags, or default deny without any non-empty range, are
    /// `EINVAL`. The ranges are then checked one by one as their bitmaps
    /// are copied ([`RangeSpec::check`]), so a bad bitmap pointer of an
    /// earlier range is `EFAULT` before a later range's `EINVAL`.
    pub fn check_header(&self) -> Result<(), Errno> {
        if self.flags & !VALID_MASK != 0 {
            return Err(Errno::Einval);
        }
        if !self.default_allow() && self.ranges.iter().all(RangeSpec::is_empty) {
            return Err(Errno::Einval);
        }
        Ok(())
    }

    /// Total bytes of the non-empty ranges' bitmaps (at most 16 x 0x600
    /// once the ranges passed their checks).
    pub fn bitmaps_len(&self) -> usize {
        self.ranges.iter().filter(|r| !r.is_empty()).map(|r| r.bitmap_bytes().min(MAX_BITMAP_SIZE)).sum()
    }
}

/// One installed range: its bitmap at `off` in the filter's byte buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Range {
    flags: u32,
    base: u32,
    nmsrs: u32,
    off: usize,
}

/// An installed MSR filter. The bitmaps are in a separate byte buffer the
/// caller keeps with it, filled at the offsets [`Filter::push`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Filter {
    default_allow: bool,
    count: usize,
    ranges: [Range; MAX_RANGES],
    len: usize,
}

impl Filter {
    /// A filter without ranges.
    pub const fn new(default_allow: bool) -> Self {
        Filter { default_allow, count: 0, ranges: [Range { flags: 0, base: 0, nmsrs: 0, off: 0 }; MAX_RANGES], len: 0 }
    }

    /// Appends a non-empty, checked range; returns where its bitmap goes in
    /// the buffer (`off..off + r.bitmap_bytes()`). Empty ranges and ranges
    /// past [`MAX_RANGES`] are not added (`None`).
    pub fn push(&mut self, r: &RangeSpec) -> Option<core::ops::Range<usize>> {
        if r.is_empty() || self.count >= MAX_RANGES || r.check().is_err() {
            return None;
        }
        let off = self.len;
        self.ranges[self.count] = Range { flags: r.flags, base: r.base, nmsrs: r.nmsrs, off };
        self.count += 1;
        self.len += r.bitmap_bytes();
        Some(off..self.len)
    }

    /// Bytes of bitmap the filter uses.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// No ranges.
    pub const fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether the guest may access `index` (`READ` or `WRITE` in `ty`),
    /// as KVM's `kvm_msr_allowed`: x2APIC MSRs (0x800-0x8ff) always; else
    /// the first range covering the MSR with that access type decides by
    /// its bit (1 allows); else the default. The end of a range is
    /// computed in 32 bits as KVM does (a range that wraps covers nothing).
    pub fn allowed(&self, bits: &[u8], index: u32, ty: u32) -> bool {
        if (0x800..=0x8ff).contains(&index) {
            return true;
        }
        for r in &self.ranges[..self.count] {
            let end = r.base.wrapping_add(r.nmsrs);
            if index >= r.base && index < end && r.flags & ty != 0 {
                let bit = (index - r.base) as usize;
                return bits.get(r.off + bit / 8).is_some_and(|b| b & (1 << (bit % 8)) != 0);
            }
        }
        self.default_allow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(flags: u32, base: u32, nmsrs: u32) -> RangeSpec {
        RangeSpec { flags, nmsrs, base, bitmap: 0x1000 }
    }

    #[test]
    fn layout() {
        assert_eq!(FILTER_SIZE, core::mem::size_of::<kvm_bindings::kvm_msr_filter>());
        assert_eq!(RANGE_SIZE, core::mem::size_of::<kvm_bindings::kvm_msr_filter_range>());
        assert_eq!(MAX_BITMAP_SIZE as u32, kvm_bindings::KVM_MSR_FILTER_MAX_BITMAP_SIZE);
        assert_eq!(reason::VALID_MASK, 7);
        let mut b = [0u8; FILTER_SIZE];
        b[0] = 1;
        let o = 8 + RANGE_SIZE;
        b[o] = 2;
        b[o + 4] = 5;
        b[o + 8..o + 12].copy_from_slice(&0xc000_0080u32.to_ne_bytes());
        b[o + 16..o + 24].copy_from_slice(&0x1234_5678u64.to_ne_bytes());
        let s = FilterSpec::from_bytes(&b);
        assert_eq!(s.flags, 1);
        assert!(s.ranges[0].is_empty());
        assert_eq!(s.ranges[1], RangeSpec { flags: 2, nmsrs: 5, base: 0xc000_0080, bitmap: 0x1234_5678 });
    }

    #[test]
    fn validation_as_kvm() {
        // The test's loops: every flag bit alone.
        for i in 0..32 {
            let mut s = FilterSpec { flags: 1 << i, ..Default::default() };
            s.ranges[0] = range(READ, 0, 1);
            assert_eq!(s.check_header().is_ok(), (1u32 << i) & VALID_MASK != 0, "filter flag {i}");
            let r = range(1 << i, 0, 1);
            assert_eq!(r.check().is_ok(), (1u32 << i) & RANGE_VALID_MASK != 0, "range flag {i}");
        }
        // Default deny needs a non-empty range; default allow may be empty.
        assert_eq!(FilterSpec { flags: DEFAULT_DENY, ..Default::default() }.check_header(), Err(Errno::Einval));
        assert_eq!(FilterSpec::default().check_header(), Ok(()));
        // Range flags 0 and oversized bitmaps.
        assert_eq!(range(0, 0, 1).check(), Err(Errno::Einval));
        assert_eq!(range(READ, 0, 0x600 * 8).check(), Ok(()));
        assert_eq!(range(READ, 0, 0x600 * 8 + 1).check(), Err(Errno::Einval));
        // Whole longs copied.
        assert_eq!(range(READ, 0, 1).bitmap_bytes(), 8);
        assert_eq!(range(READ, 0, 65).bitmap_bytes(), 16);
    }

    #[test]
    fn lookup() {
        let mut f = Filter::new(false);
        let mut bits = [0u8; 64];
        // Range 0: reads of 0..64, all allowed but MSR 3.
        let a = f.push(&range(READ, 0, 64)).unwrap();
        bits[a.clone()].fill(0xff);
        bits[a.start] &= !(1 << 3);
        // Range 1: writes of 0..64, only MSR 5 allowed.
        let w = f.push(&range(WRITE, 0, 64)).unwrap();
        bits[w.start] = 1 << 5;
        assert!(f.push(&range(READ, 0, 0)).is_none());
        assert_eq!(f.len(), 16);
        assert!(f.allowed(&bits, 2, READ));
        assert!(!f.allowed(&bits, 3, READ));
        assert!(!f.allowed(&bits, 3, WRITE));
        assert!(f.allowed(&bits, 5, WRITE));
        // Outside all ranges: the default (deny); x2APIC always allowed.
        assert!(!f.allowed(&bits, 64, READ));
        assert!(f.allowed(&bits, 0x830, WRITE));
        // A range for both types: the first covering one decides.
        let mut g = Filter::new(true);
        let r = g.push(&range(READ | WRITE, 0xc000_0100, 1)).unwrap();
        bits[r.start] = 0;
        assert!(!g.allowed(&bits, 0xc000_0100, READ));
        assert!(!g.allowed(&bits, 0xc000_0100, WRITE));
        assert!(g.allowed(&bits, 0xc000_0101, READ));
        // A range that wraps the 32-bit end covers nothing (KVM's u32 end).
        let mut h = Filter::new(true);
        let r = h.push(&range(READ, 0xffff_fff0, 0x20)).unwrap();
        bits[r].fill(0);
        assert!(h.allowed(&bits, 0xffff_fff1, READ));
    }

    #[test]
    fn exit_reasons() {
        assert_eq!(user_space_msr_mask(7), Ok(7));
        for i in 3..64 {
            assert_eq!(user_space_msr_mask(1 << i), Err(Errno::Einval));
        }
        assert_eq!(exit_reason(reason::FILTER, Failure::Filtered), Some(4));
        assert_eq!(exit_reason(reason::FILTER, Failure::Unknown), None);
        assert_eq!(exit_reason(reason::UNKNOWN | reason::INVAL, Failure::Invalid), Some(1));
        assert_eq!(exit_reason(0, Failure::Invalid), None);
    }
}
