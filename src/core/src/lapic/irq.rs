// SPDX-License-Identifier: GPL-2.0
//! Interrupt requests to local APICs: the ICR decoded into an IPI, MSIs and
//! the MSI routes of `KVM_SET_GSI_ROUTING`, and destination matching
//! (physical, flat and cluster logical, x2APIC cluster).

use super::Refused;

/// Delivery modes of the ICR, LVTs and MSIs (APM 16.5 table 16-3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryMode {
    /// Fixed: the vector to every destination.
    Fixed,
    /// Lowest priority: the vector to one destination.
    LowestPriority,
    /// System management interrupt.
    Smi,
    /// Remote read (reserved on AMD; KVM treats it as a PV unhalt).
    RemoteRead,
    /// Non-maskable interrupt.
    Nmi,
    /// INIT.
    Init,
    /// Startup IPI (SIPI): the vector is the start page.
    Startup,
    /// External interrupt (the 8259's vector).
    ExtInt,
}

impl DeliveryMode {
    /// From the 3-bit field.
    pub const fn from_bits(b: u32) -> Self {
        match b & 7 {
            0 => Self::Fixed,
            1 => Self::LowestPriority,
            2 => Self::Smi,
            3 => Self::RemoteRead,
            4 => Self::Nmi,
            5 => Self::Init,
            6 => Self::Startup,
            _ => Self::ExtInt,
        }
    }
}

/// Destination shorthand (ICR bits 19:18).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shorthand {
    /// The destination field addresses the targets.
    None,
    /// The sender only.
    SelfOnly,
    /// Every APIC, the sender included.
    AllIncludingSelf,
    /// Every APIC but the sender.
    AllExcludingSelf,
}

/// An interrupt request to deliver to local APICs: from the ICR (an IPI),
/// an LVT, or an MSI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Irq {
    /// Vector.
    pub vector: u8,
    /// Delivery mode.
    pub mode: DeliveryMode,
    /// Logical destination mode.
    pub logical: bool,
    /// Level asserted (ICR bit 14).
    pub level: bool,
    /// Level triggered (ICR bit 15).
    pub trigger_level: bool,
    /// Destination shorthand.
    pub shorthand: Shorthand,
    /// Destination: 8 bits in xAPIC mode, 32 in x2APIC mode.
    pub dest: u32,
    /// Sent by a local APIC (an IPI): broadcast IDs are the sender's mode's.
    pub ipi: bool,
}

impl Irq {
    /// Decodes an ICR write (`low`, `high` = ICR2 or x2APIC bits 63:32),
    /// as the sending APIC's mode reads the destination (APM 16.5).
    pub const fn from_icr(low: u32, high: u32, x2apic: bool) -> Self {
        Self {
            vector: low as u8,
            mode: DeliveryMode::from_bits(low >> 8),
            logical: low & (1 << 11) != 0,
            level: low & (1 << 14) != 0,
            trigger_level: low & (1 << 15) != 0,
            shorthand: match (low >> 18) & 3 {
                0 => Shorthand::None,
                1 => Shorthand::SelfOnly,
                2 => Shorthand::AllIncludingSelf,
                _ => Shorthand::AllExcludingSelf,
            },
            dest: if x2apic { high } else { high >> 24 },
            ipi: true,
        }
    }

    /// Decodes an MSI (address, data) as the APIC bus sees it (APM 16.4.6
    /// does not define MSIs; the format is the x86 one KVM's
    /// `kvm_set_msi_irq` reads): destination ID in address bits 19:12
    /// (with bits 11:5 as extended ID when `x2apic_format`: KVM's
    /// `address_hi` bits 31:8), logical mode in bit 2; vector, delivery
    /// mode, level and trigger in the data.
    pub const fn from_msi(address_lo: u32, address_hi: u32, data: u32, x2apic_format: bool) -> Self {
        let mut dest = (address_lo >> 12) & 0xff;
        if x2apic_format {
            dest |= address_hi & 0xffff_ff00;
        }
        Self {
            vector: data as u8,
            mode: DeliveryMode::from_bits(data >> 8),
            logical: address_lo & (1 << 2) != 0,
            level: data & (1 << 14) != 0,
            trigger_level: data & (1 << 15) != 0,
            shorthand: Shorthand::None,
            dest,
            ipi: false,
        }
    }
}

/// What decides whether an APIC accepts an interrupt addressed to it: its
/// mode and IDs (shared with other vCPUs so that a sender can match
/// without the target's lock).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DestInfo {
    /// IA32_APIC_BASE.AE.
    pub hw_enabled: bool,
    /// SPIV.APIC software enable: fixed interrupts are accepted.
    pub sw_enabled: bool,
    /// x2APIC mode.
    pub x2apic: bool,
    /// xAPIC ID (bits 31:24 of the ID register) or the x2APIC ID.
    pub id: u32,
    /// Logical destination register.
    pub ldr: u32,
    /// Destination format register (xAPIC).
    pub dfr: u32,
}

impl DestInfo {
    /// Packs into one word for an atomic (x2APIC ID and LDR are derived
    /// from the vCPU id in x2APIC mode, so `id` and `ldr` are kept in 32
    /// bits each and `dfr` only as flat/cluster).
    pub const fn pack(self) -> (u64, u64) {
        let a = (self.id as u64) | ((self.ldr as u64) << 32);
        let b = (self.hw_enabled as u64) | ((self.x2apic as u64) << 1) | ((self.sw_enabled as u64) << 2) | ((self.dfr as u64) << 32);
        (a, b)
    }
    /// The inverse of `pack`.
    pub const fn unpack(a: u64, b: u64) -> Self {
        Self { id: a as u32, ldr: (a >> 32) as u32, hw_enabled: b & 1 != 0, x2apic: b & 2 != 0, sw_enabled: b & 4 != 0, dfr: (b >> 32) as u32 }
    }

    /// Whether an interrupt with destination `dest` (mode `logical`, no
    /// shorthand) reaches this APIC (APM 16.6.1 and 16.11, KVM's
    /// `kvm_apic_match_dest`): the broadcast ID of the target's mode, the
    /// physical ID, or the logical ID in flat, cluster or x2APIC cluster
    /// model. A non-IPI broadcast 0xff reaches x2APIC targets too (KVM's
    /// broadcast quirk, on unless KVM_CAP_X2APIC_API disables it).
    pub const fn matches(&self, dest: u32, logical: bool, ipi: bool, broadcast_quirk: bool) -> bool {
        if !self.hw_enabled {
            return false;
        }
        let mda = if broadcast_quirk && !ipi && dest == 0xff && self.x2apic { 0xffff_ffff } else { dest };
        let bcast = if self.x2apic { 0xffff_ffff } else { 0xff };
        if mda == bcast {
            return true;
        }
        if !logical {
            // KVM does not alias x2APIC IDs above 0xff onto xAPIC IDs.
            return mda == self.id;
        }
        if self.x2apic {
            return (self.ldr >> 16) == (mda >> 16) && (self.ldr & mda & 0xffff) != 0;
        }
        let lid = self.ldr >> 24;
        match self.dfr {
            0xffff_ffff => lid & mda != 0,
            0x0fff_ffff => (lid >> 4) == (mda >> 4) && (lid & mda & 0xf) != 0,
            _ => false,
        }
    }
}

/// `KVM_MAX_IRQ_ROUTES`: GSIs are below it.
pub const MAX_IRQ_ROUTES: u32 = 4096;
/// Size of `struct kvm_irq_routing_entry`.
pub const ROUTING_ENTRY_SIZE: usize = 48;
/// `KVM_IRQ_ROUTING_MSI`.
pub const ROUTING_MSI: u32 = 2;
/// `KVM_MSI_VALID_DEVID`.
pub const MSI_VALID_DEVID: u32 = 1;

/// An MSI route of `KVM_SET_GSI_ROUTING`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MsiRoute {
    /// The GSI.
    pub gsi: u32,
    /// MSI address, low and high halves.
    pub address_lo: u32,
    /// High half (x2APIC destination bits 31:8 with KVM_CAP_X2APIC_API).
    pub address_hi: u32,
    /// MSI data.
    pub data: u32,
}

impl MsiRoute {
    /// Checks one `struct kvm_irq_routing_entry` as KVM does with the split
    /// irqchip (`kvm_set_irq_routing`, `kvm_set_routing_entry`): the GSI
    /// below [`MAX_IRQ_ROUTES`], only `KVM_MSI_VALID_DEVID` among the flags
    /// of an MSI and no flag for other types, and only MSI routes (I/O
    /// APIC and PIC pins are userspace's; Hyper-V and Xen routes are not
    /// offered); with the x2APIC API format, address_hi bits 7:0 clear.
    /// Every refusal is `EINVAL`.
    pub fn parse(e: &[u8; ROUTING_ENTRY_SIZE], x2apic_format: bool) -> Result<Self, Refused> {
        let w = |i: usize| u32::from_le_bytes([e[i], e[i + 1], e[i + 2], e[i + 3]]);
        let (gsi, ty, flags) = (w(0), w(4), w(8));
        if gsi >= MAX_IRQ_ROUTES {
            return Err(Refused);
        }
        let bad_flags = if ty == ROUTING_MSI { flags & !MSI_VALID_DEVID != 0 } else { flags != 0 };
        if bad_flags || ty != ROUTING_MSI {
            return Err(Refused);
        }
        let r = Self { gsi, address_lo: w(16), address_hi: w(20), data: w(24) };
        if x2apic_format && r.address_hi & 0xff != 0 {
            return Err(Refused);
        }
        Ok(r)
    }

    /// The interrupt the route raises.
    pub const fn irq(&self, x2apic_format: bool) -> Irq {
        Irq::from_msi(self.address_lo, self.address_hi, self.data, x2apic_format)
    }
}

/// The x2APIC logical ID of x2APIC ID `id` (APM 16.11: cluster in bits
/// 31:16, one bit of the low four ID bits in 15:0).
pub const fn x2apic_ldr(id: u32) -> u32 {
    ((id >> 4) << 16) | (1 << (id & 0xf))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{clk, enabled};
    use super::super::*;

    #[test]
    fn icr_decoding() {
        let i = Irq::from_icr(0x000c_4031, 0x0300_0000, false);
        assert_eq!(i.vector, 0x31);
        assert_eq!(i.mode, DeliveryMode::Fixed);
        assert_eq!(i.shorthand, Shorthand::AllExcludingSelf);
        assert!(i.level);
        assert_eq!(i.dest, 3);
        let n = Irq::from_icr(0x0000_0c00, 0x5, true);
        assert_eq!(n.mode, DeliveryMode::Nmi);
        assert!(n.logical);
        assert_eq!(n.dest, 5);
        assert_eq!(Irq::from_icr(0x4500, 0, false).mode, DeliveryMode::Init);
        assert_eq!(Irq::from_icr(0x0608, 0, false).mode, DeliveryMode::Startup);
        assert_eq!(Irq::from_icr(0x0608, 0, false).vector, 8);
        // The xAPIC write clears the delivery-status bit.
        let mut a = enabled(0);
        let e = a.write(reg::ICR, 0x1031, &clk(0)).unwrap();
        assert_eq!(a.get(reg::ICR), 0x31);
        assert_eq!(e.ipi.unwrap().vector, 0x31);
    }

    #[test]
    fn msi_decoding() {
        let m = Irq::from_msi(0xfee0_3004, 0, 0x4041, false);
        assert_eq!(m.dest, 3);
        assert!(m.logical);
        assert_eq!(m.vector, 0x41);
        assert!(m.level);
        assert!(!m.ipi);
        let x = Irq::from_msi(0xfee0_1000, 0x100, 0x30, true);
        assert_eq!(x.dest, 0x101);
    }

    #[test]
    fn routing_entries() {
        let mut e = [0u8; ROUTING_ENTRY_SIZE];
        let put = |e: &mut [u8; ROUTING_ENTRY_SIZE], o: usize, v: u32| e[o..o + 4].copy_from_slice(&v.to_le_bytes());
        put(&mut e, 0, 5);
        put(&mut e, 4, ROUTING_MSI);
        put(&mut e, 16, 0xfee0_1000);
        put(&mut e, 24, 0x8041);
        let r = MsiRoute::parse(&e, false).unwrap();
        assert_eq!((r.gsi, r.address_lo, r.data), (5, 0xfee0_1000, 0x8041));
        let i = r.irq(false);
        assert_eq!((i.dest, i.vector, i.trigger_level), (1, 0x41, true));
        let mut f = e;
        put(&mut f, 8, MSI_VALID_DEVID);
        assert!(MsiRoute::parse(&f, false).is_ok());
        put(&mut f, 8, 2);
        assert_eq!(MsiRoute::parse(&f, false), Err(Refused), "unknown flag");
        let mut g = e;
        put(&mut g, 0, MAX_IRQ_ROUTES);
        assert_eq!(MsiRoute::parse(&g, false), Err(Refused), "GSI too big");
        let mut h = e;
        put(&mut h, 4, 1);
        assert_eq!(MsiRoute::parse(&h, false), Err(Refused), "irqchip route with the split irqchip");
        let mut x = e;
        put(&mut x, 20, 0x101);
        assert!(MsiRoute::parse(&x, false).is_ok());
        assert_eq!(MsiRoute::parse(&x, true), Err(Refused), "address_hi low byte with the x2APIC format");
    }

    #[test]
    fn destinations() {
        let phys = DestInfo { hw_enabled: true, sw_enabled: true, x2apic: false, id: 2, ldr: 0x0400_0000, dfr: 0xffff_ffff };
        assert!(phys.matches(2, false, true, true));
        assert!(!phys.matches(3, false, true, true));
        assert!(phys.matches(0xff, false, true, true));
        // Flat: any common bit.
        assert!(phys.matches(0x06, true, true, true));
        assert!(!phys.matches(0x03, true, true, true));
        // Cluster: cluster 0 member bit 2 of LDR 0x04.
        let cl = DestInfo { dfr: 0x0fff_ffff, ldr: 0x1200_0000, ..phys };
        assert!(cl.matches(0x12, true, true, true));
        assert!(cl.matches(0x13, true, true, true));
        assert!(!cl.matches(0x22, true, true, true));
        let x2 = DestInfo { hw_enabled: true, sw_enabled: false, x2apic: true, id: 0x21, ldr: x2apic_ldr(0x21), dfr: 0 };
        assert_eq!(x2.ldr, 0x0002_0002);
        assert!(x2.matches(0x21, false, true, true));
        assert!(x2.matches(0x0002_0003, true, true, true));
        assert!(!x2.matches(0x0001_0002, true, true, true));
        assert!(x2.matches(0xffff_ffff, false, true, true));
        // 0xff is not a broadcast for x2APIC IPIs; for MSIs with the quirk it is.
        assert!(!x2.matches(0xff, false, true, true));
        assert!(x2.matches(0xff, false, false, true));
        assert!(!x2.matches(0xff, false, false, false));
        let off = DestInfo { hw_enabled: false, ..phys };
        assert!(!off.matches(0xff, false, true, true));
        let (a, b) = x2.pack();
        assert_eq!(DestInfo::unpack(a, b), x2);
    }
}
