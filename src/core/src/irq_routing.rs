// SPDX-License-Identifier: GPL-2.0
//! The GSI routing table of `KVM_SET_GSI_ROUTING` with irqchip (PIC master,
//! PIC slave, I/O APIC pin) and MSI entries, with KVM's rules
//! (virt/kvm/irqchip.c `kvm_set_irq_routing`, `setup_routing_entry`;
//! arch/x86/kvm/irq.c `kvm_set_routing_entry`), and KVM's default table
//! that `KVM_CREATE_IRQCHIP` installs (`kvm_setup_default_irq_routing`:
//! GSI 0-15 to the PIC pin and the I/O APIC pin of the same number, GSI
//! 16-23 to the I/O APIC only).

use crate::irqchip_state::{IOAPIC_NUM_PINS, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, KVM_NR_IRQCHIPS};
use crate::lapic::{MsiRoute, Refused, MAX_IRQ_ROUTES, MSI_VALID_DEVID, ROUTING_ENTRY_SIZE};

/// `KVM_IRQ_ROUTING_IRQCHIP`.
pub const ROUTING_IRQCHIP: u32 = 1;
/// `KVM_IRQ_ROUTING_MSI`.
pub const ROUTING_MSI: u32 = 2;
/// `KVM_USERSPACE_IRQ_SOURCE_ID` (`KVM_IRQ_LINE`, plain irqfds).
pub const KVM_USERSPACE_IRQ_SOURCE_ID: u32 = 0;
/// `KVM_IRQFD_RESAMPLE_IRQ_SOURCE_ID` (resampling irqfds).
pub const KVM_IRQFD_RESAMPLE_IRQ_SOURCE_ID: u32 = 1;
/// `KVM_PIT_IRQ_SOURCE_ID` (the in-kernel PIT).
pub const KVM_PIT_IRQ_SOURCE_ID: u32 = 2;
/// `KVM_IRQCHIP_NUM_PINS` (the chip -> GSI map's width).
pub const KVM_IRQCHIP_NUM_PINS: usize = IOAPIC_NUM_PINS;

/// One routing entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// A pin of an irqchip: `chip` is `KVM_IRQCHIP_*`; `pin` is the pin
    /// as KVM keeps it (slave pins 8-15 as PIC pins, I/O APIC 0-23).
    Irqchip {
        /// The GSI.
        gsi: u32,
        /// `KVM_IRQCHIP_PIC_MASTER`, `_PIC_SLAVE` or `_IOAPIC`.
        chip: u32,
        /// The pin (PIC 0-15, I/O APIC 0-23).
        pin: u32,
    },
    /// An MSI (as the split irqchip's).
    Msi(MsiRoute),
}

impl Route {
    /// The GSI.
    pub const fn gsi(&self) -> u32 {
        match self {
            Route::Irqchip { gsi, .. } => *gsi,
            Route::Msi(m) => m.gsi,
        }
    }

    /// Checks one `struct kvm_irq_routing_entry` as KVM does: the GSI below
    /// `KVM_MAX_IRQ_ROUTES`, flags (`KVM_MSI_VALID_DEVID` for an MSI, none
    /// otherwise), irqchip entries refused with the split irqchip, PIC pins
    /// below 8, I/O APIC pins below 24, a known chip; MSIs as
    /// [`MsiRoute::parse`].
    pub fn parse(e: &[u8; ROUTING_ENTRY_SIZE], split: bool, x2apic_format: bool) -> Result<Self, Refused> {
        let w = |i: usize| u32::from_le_bytes([e[i], e[i + 1], e[i + 2], e[i + 3]]);
        let (gsi, ty, flags) = (w(0), w(4), w(8));
        if gsi >= MAX_IRQ_ROUTES {
            return Err(Refused);
        }
        match ty {
            ROUTING_MSI => {
                if flags & !MSI_VALID_DEVID != 0 {
                    return Err(Refused);
                }
                MsiRoute::parse(e, x2apic_format).map(Route::Msi)
            }
            ROUTING_IRQCHIP => {
                if flags != 0 || split {
                    return Err(Refused);
                }
                let (chip, pin) = (w(16), w(20));
                let pin = match chip {
                    KVM_IRQCHIP_PIC_MASTER | KVM_IRQCHIP_PIC_SLAVE if pin < 8 => pin + 8 * chip,
                    KVM_IRQCHIP_IOAPIC if (pin as usize) < IOAPIC_NUM_PINS => pin,
                    _ => return Err(Refused),
                };
                Ok(Route::Irqchip { gsi, chip, pin })
            }
            _ => Err(Refused),
        }
    }

    /// Whether `self` may join a table that has `other` for the same GSI
    /// (`setup_routing_entry`): only irqchip entries of different chips.
    pub fn compatible(&self, other: &Route) -> bool {
        if self.gsi() != other.gsi() {
            return true;
        }
        match (self, other) {
            (Route::Irqchip { chip: a, .. }, Route::Irqchip { chip: b, .. }) => a != b,
            _ => false,
        }
    }
}

/// KVM's default table (`default_routing`): GSI 0-15 on the PIC and the
/// I/O APIC, 16-23 on the I/O APIC.
pub fn default_routes() -> [Route; 40] {
    let mut r = [Route::Irqchip { gsi: 0, chip: 0, pin: 0 }; 40];
    let mut k = 0;
    for gsi in 0..24u32 {
        if gsi < 16 {
            let chip = if gsi < 8 { KVM_IRQCHIP_PIC_MASTER } else { KVM_IRQCHIP_PIC_SLAVE };
            r[k] = Route::Irqchip { gsi, chip, pin: gsi };
            k += 1;
        }
        r[k] = Route::Irqchip { gsi, chip: KVM_IRQCHIP_IOAPIC, pin: gsi };
        k += 1;
    }
    r
}

/// KVM's chip/pin -> GSI map of a table (`rt->chip`): the GSI of the
/// last entry for that pin, -1 for none.
pub fn chip_map(routes: &[Route]) -> [[i32; KVM_IRQCHIP_NUM_PINS]; KVM_NR_IRQCHIPS as usize] {
    let mut m = [[-1i32; KVM_IRQCHIP_NUM_PINS]; KVM_NR_IRQCHIPS as usize];
    for r in routes {
        if let Route::Irqchip { gsi, chip, pin } = *r {
            // The PIC's map is indexed by the pin as KVM stores it.
            if let Some(row) = m.get_mut(chip as usize) {
                if let Some(c) = row.get_mut(pin as usize) {
                    *c = gsi as i32;
                }
            }
        }
    }
    m
}

/// KVM's `kvm_set_irq` sum of the per-entry results: entries returning
/// < 0 are skipped; -1 when none returned >= 0.
pub fn sum_results(results: impl Iterator<Item = i32>) -> i32 {
    let mut ret = -1;
    for r in results {
        if r < 0 {
            continue;
        }
        ret = r + if ret < 0 { 0 } else { ret };
    }
    ret
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(gsi: u32, ty: u32, flags: u32, a: u32, b: u32) -> [u8; ROUTING_ENTRY_SIZE] {
        let mut e = [0u8; ROUTING_ENTRY_SIZE];
        for (o, v) in [(0, gsi), (4, ty), (8, flags), (16, a), (20, b)] {
            e[o..o + 4].copy_from_slice(&v.to_le_bytes());
        }
        e
    }

    #[test]
    fn parse_irqchip_entries() {
        assert_eq!(Route::parse(&entry(3, 1, 0, 0, 3), false, false), Ok(Route::Irqchip { gsi: 3, chip: 0, pin: 3 }));
        assert_eq!(Route::parse(&entry(9, 1, 0, 1, 1), false, false), Ok(Route::Irqchip { gsi: 9, chip: 1, pin: 9 }));
        assert_eq!(Route::parse(&entry(30, 1, 0, 2, 23), false, false), Ok(Route::Irqchip { gsi: 30, chip: 2, pin: 23 }));
        assert_eq!(Route::parse(&entry(3, 1, 0, 0, 8), false, false), Err(Refused), "PIC pin 8");
        assert_eq!(Route::parse(&entry(3, 1, 0, 2, 24), false, false), Err(Refused), "I/O APIC pin 24");
        assert_eq!(Route::parse(&entry(3, 1, 0, 3, 0), false, false), Err(Refused), "chip 3");
        assert_eq!(Route::parse(&entry(3, 1, 1, 0, 0), false, false), Err(Refused), "flags");
        assert_eq!(Route::parse(&entry(3, 1, 0, 0, 0), true, false), Err(Refused), "split irqchip");
        assert_eq!(Route::parse(&entry(4096, 1, 0, 0, 0), false, false), Err(Refused), "GSI");
        assert_eq!(Route::parse(&entry(3, 5, 0, 0, 0), false, false), Err(Refused), "type");
        assert!(matches!(Route::parse(&entry(3, 2, 1, 0xfee0_0000, 0), false, false), Ok(Route::Msi(_))));
    }

    #[test]
    fn compatibility_and_defaults() {
        let a = Route::Irqchip { gsi: 1, chip: 0, pin: 1 };
        let b = Route::Irqchip { gsi: 1, chip: 2, pin: 1 };
        let c = Route::Irqchip { gsi: 1, chip: 2, pin: 5 };
        let m = Route::Msi(MsiRoute { gsi: 1, ..Default::default() });
        assert!(a.compatible(&b));
        assert!(!b.compatible(&c));
        assert!(!a.compatible(&m) && !m.compatible(&m));
        assert!(m.compatible(&Route::Irqchip { gsi: 2, chip: 0, pin: 2 }));
        let d = default_routes();
        assert_eq!(d[0], Route::Irqchip { gsi: 0, chip: 0, pin: 0 });
        assert_eq!(d[1], Route::Irqchip { gsi: 0, chip: 2, pin: 0 });
        assert_eq!(d[17], Route::Irqchip { gsi: 8, chip: 2, pin: 8 });
        assert_eq!(d[16], Route::Irqchip { gsi: 8, chip: 1, pin: 8 });
        assert_eq!(d[39], Route::Irqchip { gsi: 23, chip: 2, pin: 23 });
        let map = chip_map(&d);
        assert_eq!(map[2][23], 23);
        assert_eq!(map[1][9], 9);
        assert_eq!(map[0][9], -1);
        assert_eq!(map[0][16], -1);
    }

    #[test]
    fn kvm_set_irq_sum() {
        assert_eq!(sum_results([-1, -1].into_iter()), -1);
        assert_eq!(sum_results([-1, 0].into_iter()), 0);
        assert_eq!(sum_results([1, 1].into_iter()), 2);
        assert_eq!(sum_results([1, -1, 0].into_iter()), 1);
        assert_eq!(sum_results(core::iter::empty()), -1);
    }
}
