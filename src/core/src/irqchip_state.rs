// SPDX-License-Identifier: GPL-2.0
//! `struct kvm_irqchip` of `KVM_GET_IRQCHIP` / `KVM_SET_IRQCHIP`: a chip
//! id, padding, and 512 bytes holding `struct kvm_pic_state` (16 bytes) or
//! `struct kvm_ioapic_state` (24 + 24 * 8 bytes), little-endian.

/// `KVM_IRQCHIP_PIC_MASTER`.
pub const KVM_IRQCHIP_PIC_MASTER: u32 = 0;
/// `KVM_IRQCHIP_PIC_SLAVE`.
pub const KVM_IRQCHIP_PIC_SLAVE: u32 = 1;
/// `KVM_IRQCHIP_IOAPIC`.
pub const KVM_IRQCHIP_IOAPIC: u32 = 2;
/// `KVM_NR_IRQCHIPS`.
pub const KVM_NR_IRQCHIPS: u32 = 3;
/// `sizeof(struct kvm_irqchip)`.
pub const KVM_IRQCHIP_SIZE: usize = 520;
/// Offset of the chip union in it.
pub const CHIP_OFFSET: usize = 8;
/// `sizeof(struct kvm_pic_state)`.
pub const PIC_STATE_SIZE: usize = 16;
/// `KVM_IOAPIC_NUM_PINS`.
pub const IOAPIC_NUM_PINS: usize = 24;
/// `sizeof(struct kvm_ioapic_state)`.
pub const IOAPIC_STATE_SIZE: usize = 24 + IOAPIC_NUM_PINS * 8;

/// `struct kvm_pic_state`, field for field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PicState {
    /// Line levels seen (edge detection).
    pub last_irr: u8,
    /// Interrupt request register.
    pub irr: u8,
    /// Interrupt mask register (OCW1).
    pub imr: u8,
    /// In-service register.
    pub isr: u8,
    /// Pin of the highest priority (rotation).
    pub priority_add: u8,
    /// Vector base (ICW2).
    pub irq_base: u8,
    /// OCW3: read ISR (1) or IRR (0).
    pub read_reg_select: u8,
    /// OCW3: the next read polls.
    pub poll: u8,
    /// OCW3: special mask mode.
    pub special_mask: u8,
    /// Initialization step (0 done, 1-3 expecting ICW2-4).
    pub init_state: u8,
    /// ICW4: automatic EOI.
    pub auto_eoi: u8,
    /// OCW2: rotate on automatic EOI.
    pub rotate_on_auto_eoi: u8,
    /// ICW4: special fully nested mode.
    pub special_fully_nested_mode: u8,
    /// ICW1: ICW4 expected.
    pub init4: u8,
    /// PIIX edge/level control register.
    pub elcr: u8,
    /// Writable ELCR bits.
    pub elcr_mask: u8,
}

impl PicState {
    /// The 16 bytes, in the struct's order.
    pub const fn to_bytes(&self) -> [u8; PIC_STATE_SIZE] {
        [
            self.last_irr,
            self.irr,
            self.imr,
            self.isr,
            self.priority_add,
            self.irq_base,
            self.read_reg_select,
            self.poll,
            self.special_mask,
            self.init_state,
            self.auto_eoi,
            self.rotate_on_auto_eoi,
            self.special_fully_nested_mode,
            self.init4,
            self.elcr,
            self.elcr_mask,
        ]
    }

    /// From the 16 bytes (KVM copies them without checks).
    pub const fn from_bytes(b: &[u8; PIC_STATE_SIZE]) -> Self {
        Self {
            last_irr: b[0],
            irr: b[1],
            imr: b[2],
            isr: b[3],
            priority_add: b[4],
            irq_base: b[5],
            read_reg_select: b[6],
            poll: b[7],
            special_mask: b[8],
            init_state: b[9],
            auto_eoi: b[10],
            rotate_on_auto_eoi: b[11],
            special_fully_nested_mode: b[12],
            init4: b[13],
            elcr: b[14],
            elcr_mask: b[15],
        }
    }
}

/// `struct kvm_ioapic_state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoapicState {
    /// Base of the MMIO window.
    pub base_address: u64,
    /// IOREGSEL.
    pub ioregsel: u32,
    /// The I/O APIC id.
    pub id: u32,
    /// Requested pins (delivered edge pins left out).
    pub irr: u32,
    /// Padding.
    pub pad: u32,
    /// The redirection table entries (`redirtbl[i].bits`).
    pub redirtbl: [u64; IOAPIC_NUM_PINS],
}

impl Default for IoapicState {
    fn default() -> Self {
        Self { base_address: 0, ioregsel: 0, id: 0, irr: 0, pad: 0, redirtbl: [0; IOAPIC_NUM_PINS] }
    }
}

impl IoapicState {
    /// The bytes, little-endian.
    pub fn to_bytes(&self) -> [u8; IOAPIC_STATE_SIZE] {
        let mut b = [0u8; IOAPIC_STATE_SIZE];
        b[0..8].copy_from_slice(&self.base_address.to_le_bytes());
        b[8..12].copy_from_slice(&self.ioregsel.to_le_bytes());
        b[12..16].copy_from_slice(&self.id.to_le_bytes());
        b[16..20].copy_from_slice(&self.irr.to_le_bytes());
        b[20..24].copy_from_slice(&self.pad.to_le_bytes());
        for (i, e) in self.redirtbl.iter().enumerate() {
            b[24 + 8 * i..32 + 8 * i].copy_from_slice(&e.to_le_bytes());
        }
        b
    }

    /// From the bytes.
    pub fn from_bytes(b: &[u8; IOAPIC_STATE_SIZE]) -> Self {
        let q = |i: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(x)
        };
        let d = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut redirtbl = [0u64; IOAPIC_NUM_PINS];
        for (i, e) in redirtbl.iter_mut().enumerate() {
            *e = q(24 + 8 * i);
        }
        Self { base_address: q(0), ioregsel: d(8), id: d(12), irr: d(16), pad: d(20), redirtbl }
    }
}

/// The chip id of a `struct kvm_irqchip`.
pub fn chip_id(b: &[u8; KVM_IRQCHIP_SIZE]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// The PIC state in a `struct kvm_irqchip`.
pub fn pic_of(b: &[u8; KVM_IRQCHIP_SIZE]) -> PicState {
    let mut s = [0u8; PIC_STATE_SIZE];
    s.copy_from_slice(&b[CHIP_OFFSET..CHIP_OFFSET + PIC_STATE_SIZE]);
    PicState::from_bytes(&s)
}

/// The I/O APIC state in a `struct kvm_irqchip`.
pub fn ioapic_of(b: &[u8; KVM_IRQCHIP_SIZE]) -> IoapicState {
    let mut s = [0u8; IOAPIC_STATE_SIZE];
    s.copy_from_slice(&b[CHIP_OFFSET..CHIP_OFFSET + IOAPIC_STATE_SIZE]);
    IoapicState::from_bytes(&s)
}

/// Writes `state` into the union of `b` (the rest as the caller gave it,
/// as KVM copies the whole struct back).
pub fn put_chip(b: &mut [u8; KVM_IRQCHIP_SIZE], state: &[u8]) {
    let n = state.len().min(KVM_IRQCHIP_SIZE - CHIP_OFFSET);
    b[CHIP_OFFSET..CHIP_OFFSET + n].copy_from_slice(&state[..n]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};
    use kvm_bindings as kb;

    #[test]
    fn layouts_match_kvm() {
        assert_eq!(size_of::<kb::kvm_irqchip>(), KVM_IRQCHIP_SIZE);
        assert_eq!(offset_of!(kb::kvm_irqchip, chip), CHIP_OFFSET);
        assert_eq!(size_of::<kb::kvm_pic_state>(), PIC_STATE_SIZE);
        assert_eq!(size_of::<kb::kvm_ioapic_state>(), IOAPIC_STATE_SIZE);
        assert_eq!(offset_of!(kb::kvm_ioapic_state, redirtbl), 24);
        assert_eq!(offset_of!(kb::kvm_pic_state, elcr_mask), 15);
        assert_eq!(offset_of!(kb::kvm_pic_state, init4), 13);
        assert_eq!(offset_of!(kb::kvm_ioapic_state, irr), 16);
        assert_eq!(kb::KVM_IOAPIC_NUM_PINS as usize, IOAPIC_NUM_PINS);
        assert_eq!(kb::KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_IOAPIC);
        assert_eq!(kb::KVM_NR_IRQCHIPS, KVM_NR_IRQCHIPS);
    }

    #[test]
    fn round_trips() {
        let mut b = [0u8; KVM_IRQCHIP_SIZE];
        b[0] = 1;
        let p = PicState { irr: 3, imr: 0xfe, irq_base: 0x28, elcr_mask: 0xde, init4: 1, ..Default::default() };
        put_chip(&mut b, &p.to_bytes());
        assert_eq!(chip_id(&b), 1);
        assert_eq!(pic_of(&b), p);
        assert_eq!(b[CHIP_OFFSET + 2], 0xfe);
        let mut s = IoapicState { base_address: 0xfec0_0000, id: 3, irr: 5, ..Default::default() };
        s.redirtbl[23] = 0xff00_0000_0001_a031;
        put_chip(&mut b, &s.to_bytes());
        assert_eq!(ioapic_of(&b), s);
        assert_eq!(b[CHIP_OFFSET + 24 + 23 * 8], 0x31);
        assert_eq!(b[CHIP_OFFSET + 24 + 23 * 8 + 7], 0xff);
    }
}
