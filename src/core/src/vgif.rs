// SPDX-License-Identifier: GPL-2.0
//! L1's global interrupt flag on the processor's virtual GIF (APM vol. 2
//! 15.33.2), when the processor has vGIF.
//!
//! nsvm emulates SVM for L1: L1's GIF is the flag `VcpuState` keeps (APM
//! 15.17: cleared by CLGI and by #VMEXIT, set by STGI and by VMRUN). Without
//! vGIF every STGI and CLGI of L1 is intercepted to move that flag: two L0
//! exits on every round trip of L1's own guest (its #VMEXIT handler runs
//! between CLGI and STGI). With vGIF, vmcb01 carries the flag in V_GIF with
//! V_GIF_ENABLE set, and the processor's STGI/CLGI in the guest move V_GIF
//! instead of the GIF (APM 15.33.2), without an exit; L0 reads V_GIF back
//! after every #VMEXIT of L1 and writes it before every entry. Only one
//! case still needs an exit: an interrupt or NMI for L1 held by GIF = 0
//! must be delivered as soon as L1 sets GIF, so STGI is intercepted while
//! one waits (KVM does the same for NMIs; it relies on V_IRQ being held by
//! V_GIF for interrupts — one exit either way).
//!
//! While L1's EFER.SVME is clear, STGI and CLGI are #UD (APM 15.4); the
//! VMCB's EFER.SVME is always set (VMRUN requires it), so the processor
//! would run them: they stay intercepted then, and L0 raises #UD. (KVM
//! leaves them to the processor once vGIF is on, whatever L1's EFER.SVME.)
//!
//! vmcb02 is built from vmcb01's intercepts (`nested::merge_control`),
//! which forces STGI and CLGI on for L2: L2's are L0's to emulate (or L1's
//! to intercept), never the processor's GIF.

use crate::exit;
use crate::vmcb::{int_ctl, ControlArea};

/// How vmcb01 carries L1's GIF for one entry into L1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gif01 {
    /// V_GIF_ENABLE: V_GIF holds L1's GIF, STGI/CLGI move it.
    pub enable: bool,
    /// V_GIF: L1's GIF (meaningful with `enable`).
    pub v_gif: bool,
    /// STGI intercepted.
    pub stgi: bool,
    /// CLGI intercepted.
    pub clgi: bool,
}

/// vmcb01's GIF controls for an entry into L1. `host_vgif`: the processor
/// has vGIF; `svme`: L1 may execute STGI/CLGI (SVM offered, its EFER.SVME
/// set); `gif`: L1's GIF now; `waiting`: an interrupt or NMI for L1 (or a
/// window userspace asked for) waits for GIF.
pub const fn gif01(host_vgif: bool, svme: bool, gif: bool, waiting: bool) -> Gif01 {
    if !host_vgif || !svme {
        // Emulated GIF (STGI/CLGI exit) or #UD (SVME clear).
        return Gif01 { enable: false, v_gif: false, stgi: true, clgi: true };
    }
    Gif01 { enable: true, v_gif: gif, stgi: !gif && waiting, clgi: false }
}

impl Gif01 {
    /// Writes these controls into vmcb01's control area.
    pub fn apply(self, c: &mut ControlArea) {
        let bits = if self.enable { int_ctl::V_GIF_ENABLE | if self.v_gif { int_ctl::V_GIF } else { 0 } } else { 0 };
        c.int_ctl = (c.int_ctl & !(int_ctl::V_GIF_ENABLE | int_ctl::V_GIF)) | bits;
        for (on, code) in [(self.stgi, exit::STGI), (self.clgi, exit::CLGI)] {
            if on {
                c.intercepts.set(code);
            } else {
                c.intercepts.clear(code);
            }
        }
    }
}

/// L1's GIF after a #VMEXIT of L1 whose VMCB carried it in V_GIF (APM
/// 15.33.2: the processor's STGI/CLGI in the guest wrote V_GIF); `None`
/// when V_GIF_ENABLE was clear (the GIF is the emulated flag as it was).
pub const fn gif_after_exit(c: &ControlArea) -> Option<bool> {
    if c.int_ctl & int_ctl::V_GIF_ENABLE == 0 {
        return None;
    }
    Some(c.int_ctl & int_ctl::V_GIF != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_vgif_or_svme_both_exit() {
        for (vgif, svme) in [(false, true), (true, false), (false, false)] {
            for gif in [false, true] {
                for waiting in [false, true] {
                    let g = gif01(vgif, svme, gif, waiting);
                    assert_eq!(g, Gif01 { enable: false, v_gif: false, stgi: true, clgi: true });
                }
            }
        }
    }

    #[test]
    fn with_vgif_stgi_exits_only_for_a_waiting_event() {
        assert_eq!(gif01(true, true, true, false), Gif01 { enable: true, v_gif: true, stgi: false, clgi: false });
        assert_eq!(gif01(true, true, true, true), Gif01 { enable: true, v_gif: true, stgi: false, clgi: false });
        assert_eq!(gif01(true, true, false, false), Gif01 { enable: true, v_gif: false, stgi: false, clgi: false });
        assert_eq!(gif01(true, true, false, true), Gif01 { enable: true, v_gif: false, stgi: true, clgi: false });
    }

    #[test]
    fn apply_and_read_back() {
        let mut c = ControlArea::ZERO;
        c.int_ctl = int_ctl::V_INTR_MASKING | int_ctl::V_IRQ | 5;
        c.intercepts.set(exit::STGI);
        c.intercepts.set(exit::CLGI);
        c.intercepts.set(exit::VMRUN);
        gif01(true, true, false, true).apply(&mut c);
        assert_eq!(c.int_ctl, int_ctl::V_INTR_MASKING | int_ctl::V_IRQ | 5 | int_ctl::V_GIF_ENABLE);
        assert!(c.intercepts.test(exit::STGI) && !c.intercepts.test(exit::CLGI) && c.intercepts.test(exit::VMRUN));
        assert_eq!(gif_after_exit(&c), Some(false));
        // The guest's STGI sets V_GIF.
        c.int_ctl |= int_ctl::V_GIF;
        assert_eq!(gif_after_exit(&c), Some(true));
        gif01(true, true, true, false).apply(&mut c);
        assert!(!c.intercepts.test(exit::STGI) && !c.intercepts.test(exit::CLGI));
        assert_eq!(c.int_ctl & (int_ctl::V_GIF | int_ctl::V_GIF_ENABLE), int_ctl::V_GIF | int_ctl::V_GIF_ENABLE);
        // Back to emulation: both bits cleared, both intercepts on.
        gif01(true, false, true, false).apply(&mut c);
        assert_eq!(c.int_ctl, int_ctl::V_INTR_MASKING | int_ctl::V_IRQ | 5);
        assert!(c.intercepts.test(exit::STGI) && c.intercepts.test(exit::CLGI));
        assert_eq!(gif_after_exit(&c), None);
    }
}
