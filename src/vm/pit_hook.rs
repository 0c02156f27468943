// SPDX-License-Identifier: GPL-2.0
//! The in-kernel PIT's ack hook (placeholder). The irqchip calls
//! `pit_irq_acked` after the guest acknowledged GSI 0 (PIC INTA/EOI or the
//! I/O APIC's EOI of that pin's vector; KVM's ack notifier on GSI 0 that
//! `kvm_pit` registers for reinjection). The PIT (branch `pit`) replaces
//! this file with its own implementation when merged.

use super::Vm;

impl Vm {
    /// GSI 0 was acknowledged by the guest. Process context, no irqchip
    /// lock held: may call `set_irq`.
    pub(crate) fn pit_irq_acked(&self) {}
}
