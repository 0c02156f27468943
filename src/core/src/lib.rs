// SPDX-License-Identifier: GPL-2.0
//! nsvm-core: the hardware formats and the pure logic of the nsvm hypervisor.
//!
//! This crate has no kernel dependency and no `unsafe`: it is compiled into
//! `nsvm.ko` (see `Kbuild`) and unit-tested on the host with `cargo test`.
//! Every hardware format is declared once here, with compile-time checks of
//! its layout against AMD64 Architecture Programmer's Manual (APM) vol. 2.

#![cfg_attr(not(test), no_std)]
#![cfg_attr(not(test), forbid(unsafe_code))]

pub mod bsp;
pub mod checks;
pub mod clock;
pub mod coalesced;
pub mod cpu_state;
pub mod cpuid;
pub mod dirty_log;
pub mod event;
pub mod evlog;
pub mod exit;
pub mod fpu;
pub mod guest_debug;
pub mod hoststate;
pub mod insn;
pub mod ioeventfd;
pub mod intercept;
pub mod ioapic;
pub mod irq_routing;
pub mod irqchip_state;
pub mod kvm;
pub mod kvmclock;
pub mod l1_assist;
pub mod lapic;
pub mod mce;
pub mod memslot;
pub mod mmio;
pub mod msr;
pub mod msr_emul;
pub mod msr_filter;
pub mod msr_misc;
pub mod mtrr;
pub mod nested;
pub mod nested_state;
pub mod paging;
pub mod pic;
pub mod pit;
pub mod reflect;
pub mod sensitive;
pub mod stats;
pub mod tlb;
pub mod trace;
pub mod tsc;
pub mod uapi;
pub mod user_exit;
pub mod vgif;
pub mod vmcb;
pub mod x86;
pub mod xsave;
