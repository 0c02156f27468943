// SPDX-License-Identifier: GPL-2.0
//! Dirty page logging with KVM's semantics (Linux 7.2
//! `virt/kvm/kvm_main.c`, `Documentation/virt/kvm/api.rst` 4.8
//! `KVM_GET_DIRTY_LOG`, 4.117 `KVM_CLEAR_DIRTY_LOG`, 7.18
//! `KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2`): the UAPI structs, the slot-number
//! and range rules with their errnos, and the bitmap operations over one
//! slot's bitmap (one bit per 4 KiB page, in 64-bit words, bit `i % 64` of
//! word `i / 64` for page `i` of the slot, as KVM's `unsigned long` bitmap
//! on x86-64). The module keeps a bitmap per logging slot under the MMU
//! lock and write-protects what these functions report.

/// `sizeof(struct kvm_dirty_log)`.
pub const KVM_DIRTY_LOG_SIZE: usize = 16;
/// `sizeof(struct kvm_clear_dirty_log)`.
pub const KVM_CLEAR_DIRTY_LOG_SIZE: usize = 24;
/// `KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE`.
pub const MANUAL_PROTECT_ENABLE: u64 = 1 << 0;
/// `KVM_DIRTY_LOG_INITIALLY_SET`.
pub const INITIALLY_SET: u64 = 1 << 1;
/// `KVM_DIRTY_LOG_MANUAL_CAPS` on x86: what `KVM_CHECK_EXTENSION(
/// KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2)` answers.
pub const MANUAL_CAPS: u64 = MANUAL_PROTECT_ENABLE | INITIALLY_SET;
/// x86's `KVM_USER_MEM_SLOTS` (`SHRT_MAX` − 3 internal slots): ids at or
/// above are `EINVAL`, ids below that no slot holds `ENOENT`.
pub const KVM_USER_MEM_SLOTS: u32 = 32764;

/// `struct kvm_dirty_log`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirtyLog {
    /// Address space in bits 31:16, slot id in 15:0.
    pub slot: u32,
    /// User pointer to the bitmap.
    pub dirty_bitmap: u64,
}

impl DirtyLog {
    /// Parses the struct (native endianness, x86-64 layout).
    pub fn from_bytes(b: &[u8; KVM_DIRTY_LOG_SIZE]) -> Self {
        Self { slot: u32::from_ne_bytes([b[0], b[1], b[2], b[3]]), dirty_bitmap: u64::from_ne_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]) }
    }
}

/// `struct kvm_clear_dirty_log`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClearDirtyLog {
    /// Address space in bits 31:16, slot id in 15:0.
    pub slot: u32,
    /// Pages to clear.
    pub num_pages: u32,
    /// First page (of the slot) to clear: a multiple of 64.
    pub first_page: u64,
    /// User pointer to the mask (bit 0 of its first word: `first_page`).
    pub dirty_bitmap: u64,
}

impl ClearDirtyLog {
    /// Parses the struct.
    pub fn from_bytes(b: &[u8; KVM_CLEAR_DIRTY_LOG_SIZE]) -> Self {
        let q = |o: usize| u64::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3], b[o + 4], b[o + 5], b[o + 6], b[o + 7]]);
        Self { slot: u32::from_ne_bytes([b[0], b[1], b[2], b[3]]), num_pages: u32::from_ne_bytes([b[4], b[5], b[6], b[7]]), first_page: q(8), dirty_bitmap: q(16) }
    }

    /// Bytes of the user mask KVM copies: `num_pages` rounded up to 64 bits.
    pub const fn mask_bytes(&self) -> usize {
        (self.num_pages as usize).div_ceil(64) * 8
    }
}

/// Why a dirty-log request fails; the errno follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogError {
    /// `EINVAL`.
    Invalid,
    /// `ENOENT`: no such slot, or it does not log.
    NoEnt,
}

/// The slot id of `slot` (`KVM_GET/CLEAR_DIRTY_LOG`'s first checks):
/// an address space other than 0, or an id at or above
/// `KVM_USER_MEM_SLOTS`, is `EINVAL`. (KVM on a VM with SMM has a second
/// address space, in which no slot can exist on nsvm: nsvm refuses it with
/// `EINVAL` as `KVM_SET_USER_MEMORY_REGION` does, where kvm_amd answers
/// `ENOENT`; docs/uapi.md.)
pub fn slot_id(slot: u32) -> Result<u16, LogError> {
    let (as_id, id) = (slot >> 16, slot & 0xffff);
    if as_id != 0 || id >= KVM_USER_MEM_SLOTS {
        return Err(LogError::Invalid);
    }
    Ok(id as u16)
}

/// Words (u64) of the bitmap of a slot of `npages` pages.
pub const fn bitmap_words(npages: u64) -> usize {
    npages.div_ceil(64) as usize
}

/// Bytes `KVM_GET_DIRTY_LOG` copies out (`kvm_dirty_bitmap_bytes`).
pub const fn bitmap_bytes(npages: u64) -> usize {
    bitmap_words(npages) * 8
}

/// `KVM_CLEAR_DIRTY_LOG`'s check that depends on nothing but the request
/// (made before the slot is looked up, as KVM): `first_page` aligned to 64.
pub fn check_clear_alignment(c: &ClearDirtyLog) -> Result<(), LogError> {
    if !c.first_page.is_multiple_of(64) {
        return Err(LogError::Invalid);
    }
    Ok(())
}

/// `KVM_CLEAR_DIRTY_LOG`'s range check against the slot's size: inside the
/// slot, and `num_pages` a multiple of 64 unless the range ends at the
/// slot's end.
pub fn check_clear_range(c: &ClearDirtyLog, npages: u64) -> Result<(), LogError> {
    let n = u64::from(c.num_pages);
    if c.first_page > npages || n > npages - c.first_page || (n < npages - c.first_page && !n.is_multiple_of(64)) {
        return Err(LogError::Invalid);
    }
    Ok(())
}

/// Whether `KVM_ENABLE_CAP(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2)` accepts
/// `flags` and `args[0]`: flags 0; `INITIALLY_SET` only together with
/// `MANUAL_PROTECT_ENABLE`; no other bit. (0 turns manual mode off.)
pub fn manual_protect_valid(flags: u32, arg0: u64) -> bool {
    let allowed = if arg0 & MANUAL_PROTECT_ENABLE != 0 { MANUAL_CAPS } else { MANUAL_PROTECT_ENABLE };
    flags == 0 && arg0 & !allowed == 0
}

/// Sets the bit of page `page`; true when it was clear (a page newly
/// logged). Pages beyond the bitmap are ignored.
pub fn set_bit(bitmap: &mut [u64], page: u64) -> bool {
    let Some(w) = bitmap.get_mut((page / 64) as usize) else { return false };
    let bit = 1u64 << (page % 64);
    let was = *w & bit != 0;
    *w |= bit;
    !was
}

/// Whether page `page`'s bit is set.
pub fn test_bit(bitmap: &[u64], page: u64) -> bool {
    bitmap.get((page / 64) as usize).is_some_and(|w| w & (1 << (page % 64)) != 0)
}

/// Sets the bits of pages `0..npages` (`KVM_DIRTY_LOG_INITIALLY_SET`);
/// bits beyond stay clear.
pub fn set_all(bitmap: &mut [u64], npages: u64) {
    for (i, w) in bitmap.iter_mut().enumerate() {
        let lo = i as u64 * 64;
        *w = if npages >= lo + 64 {
            u64::MAX
        } else if npages > lo {
            (1u64 << (npages - lo)) - 1
        } else {
            0
        };
    }
}

/// `KVM_GET_DIRTY_LOG` without manual protection: moves the bitmap into
/// `out` (same length) and clears it; calls `protect(page)` for every page
/// whose bit was set (to write-protect it again). Returns whether any was.
pub fn take(bitmap: &mut [u64], out: &mut [u64], mut protect: impl FnMut(u64)) -> bool {
    let mut any = false;
    for (i, (w, o)) in bitmap.iter_mut().zip(out.iter_mut()).enumerate() {
        let m = core::mem::take(w);
        *o = m;
        if m != 0 {
            any = true;
            for_each_bit(m, |b| protect(i as u64 * 64 + b));
        }
    }
    any
}

/// `KVM_CLEAR_DIRTY_LOG`'s work once checked: for each word of `mask`
/// (bit 0 of word 0 is page `first_page`, a multiple of 64), clears the
/// bits set both there and in `bitmap` and calls `protect(page)` for each
/// of them. Mask bits beyond the slot never match (they are clear in the
/// bitmap). Returns whether any bit was cleared.
pub fn clear(bitmap: &mut [u64], first_page: u64, mask: &[u64], mut protect: impl FnMut(u64)) -> bool {
    let base = (first_page / 64) as usize;
    let mut any = false;
    for (k, m) in mask.iter().enumerate() {
        let Some(w) = bitmap.get_mut(base + k) else { break };
        let hit = *w & *m;
        if hit == 0 {
            continue;
        }
        *w &= !hit;
        any = true;
        for_each_bit(hit, |b| protect((base + k) as u64 * 64 + b));
    }
    any
}

fn for_each_bit(mut m: u64, mut f: impl FnMut(u64)) {
    while m != 0 {
        let b = u64::from(m.trailing_zeros());
        f(b);
        m &= m - 1;
    }
}

/// The pages of the slot `[gpa, gpa + size)` that a write of `len` bytes at
/// `at` touches, as page indices of the slot (`first..=last`); `None` when
/// the write is not inside the slot.
pub fn pages_of_write(slot_gpa: u64, slot_size: u64, at: u64, len: u64) -> Option<(u64, u64)> {
    if len == 0 || at < slot_gpa || at.checked_add(len)? > slot_gpa + slot_size {
        return None;
    }
    Some(((at - slot_gpa) / 4096, (at + len - 1 - slot_gpa) / 4096))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structs_match_kvm_bindings() {
        use kvm_bindings as kb;
        assert_eq!(KVM_DIRTY_LOG_SIZE, size_of::<kb::kvm_dirty_log>());
        assert_eq!(KVM_CLEAR_DIRTY_LOG_SIZE, size_of::<kb::kvm_clear_dirty_log>());
        let mut c = kb::kvm_clear_dirty_log { slot: 0x0001_0005, num_pages: 100, first_page: 64, ..Default::default() };
        c.__bindgen_anon_1.padding2 = 0x7fff_1234_5000;
        // SAFETY: a plain C struct viewed as its bytes.
        let b: [u8; 24] = unsafe { core::mem::transmute(c) };
        let p = ClearDirtyLog::from_bytes(&b);
        assert_eq!(p, ClearDirtyLog { slot: 0x0001_0005, num_pages: 100, first_page: 64, dirty_bitmap: 0x7fff_1234_5000 });
        assert_eq!(p.mask_bytes(), 16);
        let mut d = kb::kvm_dirty_log { slot: 7, ..Default::default() };
        d.__bindgen_anon_1.padding2 = 0xdead_b000;
        // SAFETY: as above.
        let b: [u8; 16] = unsafe { core::mem::transmute(d) };
        assert_eq!(DirtyLog::from_bytes(&b), DirtyLog { slot: 7, dirty_bitmap: 0xdead_b000 });
        assert_eq!(MANUAL_PROTECT_ENABLE, u64::from(kb::KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE));
        assert_eq!(INITIALLY_SET, u64::from(kb::KVM_DIRTY_LOG_INITIALLY_SET));
    }

    #[test]
    fn slot_numbers() {
        assert_eq!(slot_id(5), Ok(5));
        assert_eq!(slot_id(300), Ok(300)); // looked up: ENOENT
        assert_eq!(slot_id(KVM_USER_MEM_SLOTS - 1), Ok(32763));
        assert_eq!(slot_id(KVM_USER_MEM_SLOTS), Err(LogError::Invalid));
        assert_eq!(slot_id(0xffff), Err(LogError::Invalid));
        assert_eq!(slot_id(1 << 16), Err(LogError::Invalid));
        assert_eq!(slot_id(2 << 16), Err(LogError::Invalid));
    }

    #[test]
    fn sizes() {
        assert_eq!(bitmap_bytes(1), 8);
        assert_eq!(bitmap_bytes(64), 8);
        assert_eq!(bitmap_bytes(65), 16);
        assert_eq!(bitmap_words(0), 0);
    }

    #[test]
    fn clear_rules() {
        let c = |first_page, num_pages| ClearDirtyLog { slot: 0, num_pages, first_page, dirty_bitmap: 0 };
        assert_eq!(check_clear_alignment(&c(1, 1)), Err(LogError::Invalid));
        assert_eq!(check_clear_alignment(&c(64, 1)), Ok(()));
        // 100 pages: aligned ranges, or any length that ends at the end.
        assert_eq!(check_clear_range(&c(0, 64), 100), Ok(()));
        assert_eq!(check_clear_range(&c(0, 100), 100), Ok(()));
        assert_eq!(check_clear_range(&c(64, 36), 100), Ok(()));
        assert_eq!(check_clear_range(&c(0, 0), 100), Ok(()));
        assert_eq!(check_clear_range(&c(0, 10), 100), Err(LogError::Invalid));
        assert_eq!(check_clear_range(&c(64, 37), 100), Err(LogError::Invalid));
        assert_eq!(check_clear_range(&c(128, 0), 100), Err(LogError::Invalid));
        assert_eq!(check_clear_range(&c(0, 128), 100), Err(LogError::Invalid));
        // first_page == npages with nothing to clear is accepted, as KVM.
        assert_eq!(check_clear_range(&c(64, 0), 64), Ok(()));
    }

    #[test]
    fn manual_flags() {
        assert!(manual_protect_valid(0, 0));
        assert!(manual_protect_valid(0, 1));
        assert!(manual_protect_valid(0, 3));
        assert!(!manual_protect_valid(0, 2));
        assert!(!manual_protect_valid(0, 4));
        assert!(!manual_protect_valid(0, 5));
        assert!(!manual_protect_valid(1, 1));
    }

    #[test]
    fn bit_ops() {
        let mut b = [0u64; 2];
        assert!(set_bit(&mut b, 0));
        assert!(!set_bit(&mut b, 0));
        assert!(set_bit(&mut b, 70));
        assert!(!set_bit(&mut b, 128)); // beyond: ignored
        assert!(test_bit(&b, 70) && !test_bit(&b, 71) && !test_bit(&b, 1000));
        let mut out = [0u64; 2];
        let mut seen = Vec::new();
        assert!(take(&mut b, &mut out, |p| seen.push(p)));
        assert_eq!(out, [1, 1 << 6]);
        assert_eq!(b, [0, 0]);
        assert_eq!(seen, [0, 70]);
        assert!(!take(&mut b, &mut out, |_| panic!()));
        assert_eq!(out, [0, 0]);
        set_all(&mut b, 70);
        assert_eq!(b, [u64::MAX, 0x3f]);
        set_all(&mut b, 128);
        assert_eq!(b, [u64::MAX, u64::MAX]);
        set_all(&mut b, 3);
        assert_eq!(b, [7, 0]);
    }

    #[test]
    fn clear_masks() {
        let mut b = [0u64; 3];
        set_all(&mut b, 150);
        let mut seen = Vec::new();
        // Clears only set bits; mask bits beyond the slot (150..192) match nothing.
        assert!(clear(&mut b, 64, &[0b1010, u64::MAX], |p| seen.push(p)));
        assert_eq!(seen.len(), 2 + 22);
        assert_eq!(&seen[..3], &[65, 67, 128]);
        assert_eq!(b, [u64::MAX, !0b1010, 0]);
        seen.clear();
        assert!(!clear(&mut b, 64, &[0b1010], |p| seen.push(p)));
        assert!(seen.is_empty());
        // A mask longer than the bitmap stops at its end.
        assert!(!clear(&mut b, 128, &[1, 1, 1], |_| {}));
    }

    #[test]
    fn write_pages() {
        assert_eq!(pages_of_write(0x10000, 0x4000, 0x10ff8, 16), Some((0, 1)));
        assert_eq!(pages_of_write(0x10000, 0x4000, 0x13fff, 1), Some((3, 3)));
        assert_eq!(pages_of_write(0x10000, 0x4000, 0x13fff, 2), None);
        assert_eq!(pages_of_write(0x10000, 0x4000, 0xffff, 2), None);
        assert_eq!(pages_of_write(0x10000, 0x4000, 0x10000, 0), None);
    }
}
