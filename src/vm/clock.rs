// SPDX-License-Identifier: GPL-2.0
//! The VM's clock: `KVM_GET_CLOCK` / `KVM_SET_CLOCK` and the master clock
//! the vCPUs' kvmclock records describe (`nsvm_core::kvmclock`).

use kernel::prelude::*;
use kernel::uaccess::{UserPtr, UserSlice};

use nsvm_core::clock::{flags, ClockData, KVM_CLOCK_DATA_SIZE};
use nsvm_core::kvmclock::Master;

use core::sync::atomic::Ordering;

use super::Vm;
use crate::hw;

/// A master clock reading `ns` now, on the host TSC at the host's rate.
/// A host without a calibrated TSC rate (tsc_khz 0, which the kernel does
/// not leave on a CPU with SVM) gets 1 GHz rather than a stopped clock.
pub(super) fn master_now(ns: u64) -> Master {
    let khz = hw::cpu::tsc_khz();
    let stable = hw::cpu::tsc_stable();
    let tsc = hw::cpu::rdtsc();
    Master::new(tsc, ns, if khz == 0 { 1_000_000 } else { khz }, stable && khz != 0).unwrap_or_default()
}

impl Vm {
    /// The master clock (copied: the records are written outside the lock).
    pub(crate) fn kvmclock_master(&self) -> Master {
        *self.kvmclock.lock()
    }

    /// A write of `value` to a vCPU's TSC by userspace (`user`) or at its
    /// creation (0): the offset the vCPU gets, matched with the other
    /// vCPUs' as KVM matches them (`nsvm_core::tsc`), and the generation
    /// it belongs to (what `Vcpu::tsc_catchup` brings it up to).
    pub(crate) fn tsc_write(&self, value: u64, user: bool) -> (u64, (u64, u64)) {
        let khz = u64::from(hw::cpu::tsc_khz());
        let stable = hw::cpu::tsc_stable();
        let mut s = self.tsc_sync.lock();
        let (tsc, now) = (hw::cpu::rdtsc(), hw::task::now_ns());
        let off = s.write(value, user, tsc, now, khz, stable);
        (off, s.generation())
    }

    /// `KVM_SET_DEVICE_ATTR(KVM_VCPU_TSC_OFFSET)`: the vCPU's offset is
    /// `offset`, recorded as a userspace write for the matching
    /// (`nsvm_core::tsc::TscSync::set_offset`); the offset and generation
    /// as [`Vm::tsc_write`].
    pub(crate) fn tsc_set_offset(&self, offset: u64) -> (u64, (u64, u64)) {
        let khz = u64::from(hw::cpu::tsc_khz());
        let mut s = self.tsc_sync.lock();
        let (tsc, now) = (hw::cpu::rdtsc(), hw::task::now_ns());
        let off = s.set_offset(offset, tsc, now, khz);
        (off, s.generation())
    }

    /// `KVM_GET_CLOCK`: the clock now, from the same line as the guest's
    /// kvmclock; the host TSC it was computed from (HOST_TSC) and, when the
    /// TSC is stable, the host's real time (REALTIME) read with it, as KVM
    /// reports them with a master clock.
    pub(super) fn get_clock(&self, arg: usize) -> Result<isize> {
        let m = self.kvmclock_master();
        let tsc = hw::cpu::rdtsc();
        let realtime = hw::task::realtime_ns();
        let mut d = ClockData { clock: m.read(tsc), flags: flags::HOST_TSC, realtime: 0, host_tsc: tsc };
        if m.stable {
            d.flags |= flags::TSC_STABLE | flags::REALTIME;
            d.realtime = realtime;
        }
        UserSlice::new(UserPtr::from_addr(arg), KVM_CLOCK_DATA_SIZE).writer().write_slice(&d.to_bytes())?;
        Ok(0)
    }

    /// `KVM_SET_CLOCK`: a new line through (now, the value asked for);
    /// every vCPU rewrites its record before it runs again.
    pub(super) fn set_clock(&self, arg: usize) -> Result<isize> {
        let mut b = [0u8; KVM_CLOCK_DATA_SIZE];
        UserSlice::new(UserPtr::from_addr(arg), KVM_CLOCK_DATA_SIZE).reader().read_slice(&mut b)?;
        let ns = ClockData::from_bytes(&b).value_now(hw::task::realtime_ns()).map_err(|_| EINVAL)?;
        *self.kvmclock.lock() = master_now(ns);
        self.kvmclock_gen.fetch_add(1, Ordering::Release);
        Ok(0)
    }
}
