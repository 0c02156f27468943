// SPDX-License-Identifier: GPL-2.0
//! When an entry must flush the TLB (APM vol. 2 15.16 "TLB Control").
//!
//! The processor tags TLB entries with the ASID they were created under and
//! keeps them across VMRUN and #VMEXIT; VMRUN flushes only what the VMCB's
//! TLB_CONTROL asks for. Every nsvm L1 runs on ASID 1 and every L2 on ASID 2
//! (per-vCPU ASIDs are future work), so an entry whose VMCB may find
//! translations it must not use flushes the whole TLB. That is the case when:
//!
//! - the CPU last ran another VMCB (another vCPU, VM or level under the same
//!   ASID may have left its translations there);
//! - the vCPU last ran on another CPU (what it cached here before may be
//!   older than what its guest has invalidated since, on the other CPU);
//! - the VM removed or downgraded a nested translation since the vCPU last
//!   flushed (its generation moved: slot deleted, moved or made read-only);
//! - something only this vCPU depends on changed (`request`): its shadow
//!   NPT02 was dropped, L1 asked for a flush in vmcb12 or by INVLPGA, or
//!   userspace replaced its control registers.
//!
//! nsvm flushes on every entry unless the `flush_every_entry` module
//! parameter is 0; the decision below is what the parameter switches on.

/// What one vCPU remembers about its flushes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlbTracker {
    last_cpu: Option<u32>,
    flushed_gen: u64,
    pending: bool,
}

impl Default for TlbTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl TlbTracker {
    /// A vCPU that never ran: its first entry flushes.
    pub const fn new() -> Self {
        Self { last_cpu: None, flushed_gen: 0, pending: true }
    }

    /// Something only this vCPU's translations depend on changed: the next
    /// entry flushes.
    #[inline]
    pub fn request(&mut self) {
        self.pending = true;
    }

    /// At an entry of the VMCB at `vmcb` on `cpu`, whose previous entry ran
    /// `cpu_last_vmcb` (0: none known), with the VM's translation generation
    /// `gen`: whether this entry must flush. Records the entry.
    #[inline]
    pub fn must_flush(&mut self, cpu: u32, cpu_last_vmcb: u64, vmcb: u64, gen: u64) -> bool {
        let flush = self.pending || self.last_cpu != Some(cpu) || cpu_last_vmcb != vmcb || gen != self.flushed_gen;
        self.pending = false;
        self.last_cpu = Some(cpu);
        self.flushed_gen = gen;
        flush
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_entry_flushes_then_only_on_change() {
        let mut t = TlbTracker::new();
        assert!(t.must_flush(0, 0, 0x1000, 0));
        assert!(!t.must_flush(0, 0x1000, 0x1000, 0));
        assert!(t.must_flush(1, 0x1000, 0x1000, 0), "migration");
        assert!(t.must_flush(1, 0x2000, 0x1000, 0), "the CPU ran another VMCB");
        assert!(t.must_flush(1, 0x1000, 0x1000, 1), "the VM zapped translations");
        assert!(!t.must_flush(1, 0x1000, 0x1000, 1));
        t.request();
        assert!(t.must_flush(1, 0x1000, 0x1000, 1), "a local request");
        assert!(!t.must_flush(1, 0x1000, 0x1000, 1));
    }

    /// A model of a TLB shared by every VMCB of one ASID: each CPU caches
    /// translations tagged with (owner VMCB, the owner's version of them).
    /// Random entries, migrations, VM-wide zaps and local invalidations: a
    /// VMCB must never run on a CPU holding a translation it may not use.
    #[test]
    fn random_sequences_never_use_a_stale_translation() {
        const CPUS: usize = 3;
        const VMCBS: usize = 4; // two vCPUs of one VM, one level each... and others
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..200 {
            // version[v]: the translations VMCB v may use now. A zap of the
            // VM (vmcbs 0 and 1) bumps both and its generation; a local
            // change bumps one and requests a flush for it.
            let mut version = [0u64; VMCBS];
            let mut gen = 0u64; // the VM of vmcbs 0 and 1; others never zap
            let mut trackers = [TlbTracker::new(); VMCBS];
            let mut cpu_last = [0u64; CPUS];
            // What each CPU's TLB holds: (owner, version) entries.
            let mut tlb: [Vec<(usize, u64)>; CPUS] = Default::default();
            for _ in 0..300 {
                match rnd(4) {
                    0 => {
                        gen += 1;
                        version[0] += 1;
                        version[1] += 1;
                    }
                    1 => {
                        let v = rnd(VMCBS as u64) as usize;
                        version[v] += 1;
                        trackers[v].request();
                    }
                    _ => {
                        let v = rnd(VMCBS as u64) as usize;
                        let c = rnd(CPUS as u64) as usize;
                        let pa = 0x1000 * (v as u64 + 1);
                        let g = if v < 2 { gen } else { 0 };
                        if trackers[v].must_flush(c as u32, cpu_last[c], pa, g) {
                            tlb[c].clear();
                        }
                        cpu_last[c] = pa;
                        // Under one ASID the VMCB can hit any entry there.
                        for &(owner, ver) in &tlb[c] {
                            assert!(owner == v && ver == version[v], "VMCB {v} on CPU {c} may use ({owner}, {ver}), now at {}", version[v]);
                        }
                        tlb[c].push((v, version[v]));
                    }
                }
            }
        }
    }
}
