// SPDX-License-Identifier: GPL-2.0
//! Leaf modules over the processor and the kernel (with the C shims of
//! src/shim.c), one per concern. Together with `svm`, `vmrun` and `fops`
//! this is where the module's `unsafe` lives; everything exported is safe to
//! call except what hands memory to the processor or reads raw guest pages
//! (each with its `# Safety` contract).

pub(crate) mod cpu;
pub(crate) mod debugfs;
pub(crate) mod eventfd;
pub(crate) mod idtable;
pub(crate) mod files;
pub(crate) mod mem;
pub(crate) mod mmu;
pub(crate) mod pin;
pub(crate) mod task;
pub(crate) mod apic;
pub(crate) mod pit;
pub(crate) mod trace;
