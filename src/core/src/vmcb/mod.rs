// SPDX-License-Identifier: GPL-2.0
//! The Virtual Machine Control Block (VMCB), APM vol. 2 appendix B.
//!
//! The VMCB is one 4 KiB page: the control area at offset 0 (table B-1, 1 KiB)
//! followed by the state save area at offset 0x400 (table B-2). Every field's
//! offset is asserted at compile time, beside its struct; a wrong offset
//! fails the build of both the module and the host tests.
//!
//! The control area and its fields' bits are in `control`, the save area
//! and segments in `save`, what the world switches read and write of a
//! VMCB in `world_switch`, the readable dump in `dump` (all re-exported).

use core::mem::{offset_of, size_of};
use static_assertions::const_assert_eq;

/// Size of a VMCB: one page (APM 15.5).
pub const VMCB_SIZE: usize = 4096;
/// Size of the control area (APM table B-1: 000h–3FFh).
pub const CONTROL_AREA_SIZE: usize = 0x400;
/// Size of the state save area (APM table B-2: from 400h to the end of the page).
pub const SAVE_AREA_SIZE: usize = VMCB_SIZE - CONTROL_AREA_SIZE;

macro_rules! assert_offsets {
    ($ty:ty { $($field:ident : $off:expr),* $(,)? }) => {
        $( const_assert_eq!(offset_of!($ty, $field), $off); )*
    };
}

mod control;
mod dump;
mod save;
mod world_switch;

pub use control::{clean, int_ctl, int_state, nested_ctl, tlb_control, virt_ext, ControlArea};
pub use dump::{diff, dump};
pub use save::{seg_attr, SaveArea, Segment, VMRUN_LEN};
pub use world_switch::{EntryState, CONTROL_USED_END, EXIT_WRITEBACK, INVALID_WRITEBACK, SAVE_USED_END, VMRUN_READ, VMSAVE_STATE};

/// A whole VMCB page.
#[repr(C, align(4096))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vmcb {
    /// Control area at offset 0.
    pub control: ControlArea,
    /// State save area at offset 400h.
    pub save: SaveArea,
}

const_assert_eq!(size_of::<Vmcb>(), VMCB_SIZE);
const_assert_eq!(offset_of!(Vmcb, save), 0x400);

impl Vmcb {
    /// An all-zero VMCB.
    pub const ZERO: Self = Self { control: ControlArea::ZERO, save: SaveArea::ZERO };

    /// True when the exit code means VMEXIT_INVALID. Hardware stores -1; QEMU
    /// 10.0.2 TCG stores `0x0000_0000_ffff_ffff` (docs/architecture.md, "QEMU TCG"), so both count.
    pub const fn exit_is_invalid(exit_code: u64) -> bool {
        exit_code == u64::MAX || exit_code == 0xffff_ffff
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod dump_tests;
