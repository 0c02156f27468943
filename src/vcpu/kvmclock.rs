// SPDX-License-Identifier: GPL-2.0
//! kvmclock for the vCPU (`nsvm_core::kvmclock` has the formats and the
//! rules): the four MSRs, for the guest and for `KVM_GET/SET_MSRS`, the
//! records written into guest memory before the guest runs, and
//! `KVM_KVMCLOCK_CTRL`.
//!
//! As in KVM, an MSR write only records the address; the record is written
//! before the next entry (KVM's KVM_REQ_CLOCK_UPDATE), in the VMM's process
//! (guest memory is the VMM's), and again whenever what it describes moves:
//! the VM's clock set (`KVM_SET_CLOCK`), the vCPU's TSC offset changed
//! (WRMSR to the TSC, `KVM_SET_MSRS`, a restored state), a stop reported.
//! The MSRs are accepted whatever the guest's CPUID says, as KVM does
//! without `KVM_CAP_ENFORCE_PV_FEATURE_CPUID`.

use kernel::prelude::*;

use nsvm_core::kvmclock::{self as kc, update_versions, TIME_INFO_FLAGS, TIME_INFO_SIZE};

use core::sync::atomic::Ordering;

use super::guest_mem::GuestMem;
use super::{Vcpu, VcpuState};
use crate::hw;

/// MSR_PLATFORM_INFO (Intel's; KVM emulates it on AMD too).
const MSR_PLATFORM_INFO: u32 = 0xce;

impl Vcpu {
    /// At each `KVM_RUN` on a host whose TSC the kernel does not trust: the
    /// vCPU's TSC caught up to its generation's curve if it fell behind
    /// (`nsvm_core::tsc::catchup`, KVM's `tsc_catchup` at vCPU load).
    pub(super) fn tsc_catchup(&self, st: &mut VcpuState) {
        if hw::cpu::tsc_stable() {
            return;
        }
        let off = st.cpu.vmcb.get().control.tsc_offset;
        let khz = u64::from(hw::cpu::tsc_khz());
        let (tsc, now) = (hw::cpu::rdtsc(), hw::task::now_ns());
        let add = nsvm_core::tsc::catchup(st.cpu.tsc_gen, tsc.wrapping_add(off), now, khz);
        if add != 0 {
            st.set_l1_tsc_offset(off.wrapping_add(add));
            self.stats.log(nsvm_core::evlog::Kind::TscCatchup, add, off.wrapping_add(add), 0);
        }
    }


    /// RDMSR/WRMSR or `KVM_GET/SET_MSRS` of a kvmclock MSR or of
    /// MSR_PLATFORM_INFO (the MSRs that follow the VM's settings): `None` for
    /// another MSR; `Some(None)` refused (#GP; only with
    /// `KVM_CAP_ENFORCE_PV_FEATURE_CPUID`), for a write `Some(Some(0))`, for
    /// a read the value. `host`: from `KVM_GET/SET_MSRS` (for the event log).
    pub(super) fn kvmclock_msr(&self, st: &mut VcpuState, index: u32, write: Option<u64>, host: bool) -> Option<Option<u64>> {
        if index == MSR_PLATFORM_INFO {
            return Some(self.platform_info_msr(st, write, host));
        }
        if let Some(r) = self.misc_msr(st, index, write, host).or_else(|| self.pat_msr(st, index, write, host)) {
            return Some(r);
        }
        if !kc::is_kvmclock_msr(index) {
            return None;
        }
        // KVM_CAP_ENFORCE_PV_FEATURE_CPUID: without the feature in CPUID
        // 0x40000001 EAX (CLOCKSOURCE for 0x11/0x12, CLOCKSOURCE2 for the
        // 0x4b564d0x pair) the MSR does not exist, for the guest (#GP) and
        // for KVM_GET/SET_MSRS alike (KVM's guest_pv_has checks).
        if st.cpu.pv_enforce {
            let eax = st.cpu.cpuid.iter().find(|e| e.function == 0x4000_0001).map_or(0, |e| e.regs[0]);
            let bit = if index >= 0x4b56_4d00 { 3 } else { 0 };
            if eax & (1 << bit) == 0 {
                return Some(None);
            }
        }
        if let Some(v) = write {
            let rip = if host { u64::MAX } else { st.vmcb().save.rip };
            self.stats.log(nsvm_core::evlog::Kind::KvmclockMsr, u64::from(index), v, rip);
        }
        let c = &mut st.cpu.kvmclock;
        Some(Some(match (write, kc::is_wall_clock(index)) {
            (None, true) => self.vm.wall_clock_msr.load(Ordering::Relaxed),
            (None, false) => c.system_time,
            (Some(v), true) => {
                // One value per VM; the record is written at this address
                // (KVM writes it at once; here before the guest runs).
                self.vm.wall_clock_msr.store(v, Ordering::Relaxed);
                c.wall_pending = (v != 0).then_some(v);
                0
            }
            (Some(v), false) => {
                c.system_time = v;
                c.dirty = true;
                0
            }
        }))
    }

    /// MSR_PLATFORM_INFO (KVM's rules): userspace reads and writes any
    /// value; the guest reads it while `KVM_CAP_MSR_PLATFORM_INFO` allows
    /// (the default) and never writes it (#GP). Deviation: 0 at creation,
    /// where KVM sets CPUID_FAULT (bit 31): nsvm has no CPUID faulting
    /// (MSR_MISC_FEATURES_ENABLES) to offer.
    fn platform_info_msr(&self, st: &mut VcpuState, write: Option<u64>, host: bool) -> Option<u64> {
        match write {
            Some(v) if host => {
                st.cpu.platform_info = v;
                Some(0)
            }
            Some(_) => None,
            None if host || self.vm.platform_info_readable.load(Ordering::Relaxed) => Some(st.cpu.platform_info),
            None => None,
        }
    }

    /// `KVM_KVMCLOCK_CTRL`: the VMM tells the guest it was stopped
    /// (PVCLOCK_GUEST_STOPPED in the next record); `EINVAL` while the
    /// guest has no kvmclock, as KVM.
    pub(super) fn kvmclock_ctrl(&self) -> Result<isize> {
        let mut st = self.state.lock();
        if st.cpu.kvmclock.record_gpa().is_none() {
            return Err(EINVAL);
        }
        st.cpu.kvmclock.stop_request = true;
        Ok(0)
    }

    /// Before an entry: writes what kvmclock owes the guest (a cheap test
    /// first: most entries owe nothing).
    #[inline]
    pub(super) fn kvmclock_sync(&self, st: &mut VcpuState) {
        let off = st.cpu.vmcb.get().control.tsc_offset;
        if st.cpu.kvmclock.needs_write(self.vm.kvmclock_gen.load(Ordering::Acquire), off) {
            self.kvmclock_write(st, off);
        }
    }

    #[inline(never)]
    fn kvmclock_write(&self, st: &mut VcpuState, tsc_offset: u64) {
        let inner = self.vm.mem();
        // L1 physical addresses, whoever runs (kvmclock is L1's).
        let mem = GuestMem::l1(&inner);
        let c = &mut st.cpu.kvmclock;
        self.stats.log(nsvm_core::evlog::Kind::KvmclockWrite, c.record_gpa().unwrap_or(u64::MAX), c.wall_pending.unwrap_or(u64::MAX), 0);
        if let Some(gpa) = c.wall_pending.take() {
            let mut v = [0u8; 4];
            if mem.read_bytes(gpa, &mut v) {
                let (odd, even) = update_versions(u32::from_le_bytes(v));
                let clock = self.vm.kvmclock_master().read(hw::cpu::rdtsc());
                let real = hw::task::realtime_ns();
                // Version odd, the record, version even (the guest retries
                // on an odd or changed version).
                let _ = mem.write_bytes(gpa, &odd.to_le_bytes())
                    && mem.write_bytes(gpa, &kc::wall_clock_bytes(real, clock, odd))
                    && mem.write_bytes(gpa, &even.to_le_bytes());
            }
        }
        let generation = self.vm.kvmclock_gen.load(Ordering::Acquire);
        let Some(gpa) = c.record_gpa() else { return };
        let master = self.vm.kvmclock_master();
        let mut cur = [0u8; TIME_INFO_SIZE];
        // A record that is not in guest RAM is not written (KVM's cache
        // fails to activate): the guest then reads no clock from it.
        if mem.read_bytes(gpa, &mut cur) {
            let (odd, even) = update_versions(u32::from_le_bytes([cur[0], cur[1], cur[2], cur[3]]));
            // GUEST_STOPPED stays until the guest clears it (KVM keeps the
            // guest's copy of the bit).
            let stopped = c.stop_request || cur[TIME_INFO_FLAGS] & kc::flags::GUEST_STOPPED != 0;
            let rec = master.time_info(tsc_offset, stopped).to_bytes(odd);
            let _ = mem.write_bytes(gpa, &odd.to_le_bytes())
                && mem.write_bytes(gpa, &rec)
                && mem.write_bytes(gpa, &even.to_le_bytes());
        }
        c.dirty = false;
        c.stop_request = false;
        c.generation = generation;
        c.tsc_offset = tsc_offset;
        self.stats.bump(nsvm_core::stats::KVMCLOCK_UPDATES);
    }
}
