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
//! [`TlbTracker`] is that decision for VMCBs sharing one ASID. nsvm now runs
//! every VMCB on its own ASID ([`VmcbAsid`], [`CpuAsids`], below); the
//! tracker stays as the model the shared-ASID case was tested with.

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

/// One CPU's ASID allocator (APM 15.16.1: the processor tags TLB entries
/// with the ASID; VMRUN with TLB_CONTROL = 1 flushes every ASID), as KVM's
/// `new_asid`: ASIDs 1 to `nasid - 1` (CPUID 0x8000000A EBX is the number of
/// ASIDs, 0 being the host's) are handed out in order within a generation;
/// when they run out the generation moves on, the entry that takes the
/// first ASID of the new generation flushes the whole TLB, and every VMCB
/// still holding an ASID of an older generation takes a new one at its next
/// entry on this CPU. So an ASID handed out in the current generation has
/// no translations cached on this CPU: nobody ran with it since the flush
/// that began the generation.
///
/// A fresh allocator (a CPU nsvm never ran a guest on, or one it may share
/// with an earlier owner of SVM) begins with a rollover: its first entry
/// flushes the whole TLB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuAsids {
    /// The current generation (never 0: 0 is "no ASID" in [`VmcbAsid`]).
    pub generation: u64,
    /// The next ASID to hand out.
    pub next: u32,
    /// The highest usable ASID (`nasid - 1`).
    pub max: u32,
    /// The generation rolled over and the whole TLB was not flushed yet.
    pub flush_all: bool,
}

impl CpuAsids {
    /// The allocator of a CPU with `nasid` ASIDs (CPUID 0x8000000A EBX;
    /// fewer than 2 is treated as 2: one guest ASID).
    pub const fn new(nasid: u32) -> Self {
        let max = if nasid < 2 { 1 } else { nasid - 1 };
        Self { generation: 1, next: max + 1, max, flush_all: true }
    }

    /// A new ASID and its generation.
    #[inline]
    fn alloc(&mut self) -> (u32, u64) {
        if self.next > self.max || self.next == 0 {
            self.generation = self.generation.wrapping_add(1).max(1);
            self.next = 1;
            self.flush_all = true;
        }
        let a = self.next;
        self.next += 1;
        (a, self.generation)
    }
}

/// What one VMCB (vmcb01 or vmcb02 of a vCPU) holds of its ASID and its
/// flushes. Its translations must not outlive (APM 15.16):
///
/// - a VM-wide removal or downgrade of translations (`Vm::shootdown`: the
///   VM's memory generation moved): the NPT01 leaves cached under the ASID;
/// - a change only this VMCB depends on ([`VmcbAsid::request`]): its shadow
///   NPT02 dropped, L1's INVLPGA or TLB_CONTROL, `KVM_SET_SREGS`, nested
///   state set.
///
/// Either flushes its ASID on the next entry: TLB_CONTROL = 3 where the
/// processor offers flush-by-ASID (CPUID 0x8000000A EDX bit 6, APM
/// 15.16.2), a new ASID where it does not (only TLB_CONTROL 0 and 1 are
/// defined then). Running on another CPU than last time takes a new ASID
/// there (ASIDs are per CPU; what this VMCB cached there before may be
/// older than what was invalidated since).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmcbAsid {
    cpu: Option<u32>,
    asid: u32,
    /// The CPU generation `asid` belongs to (0: none).
    generation: u64,
    /// The VM memory generation the ASID's translations are not older than.
    flushed_gen: u64,
    pending: bool,
}

/// What an entry runs with: the VMCB's ASID and TLB_CONTROL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AsidEntry {
    /// ASID field of the VMCB.
    pub asid: u32,
    /// TLB_CONTROL field of the VMCB (`vmcb::tlb_control`).
    pub tlb_ctl: u8,
}

impl Default for VmcbAsid {
    fn default() -> Self {
        Self::new()
    }
}

impl VmcbAsid {
    /// A VMCB that never ran: its first entry takes an ASID.
    pub const fn new() -> Self {
        Self { cpu: None, asid: 0, generation: 0, flushed_gen: 0, pending: false }
    }

    /// Something only this VMCB's translations depend on changed: its next
    /// entry runs on an ASID without them.
    #[inline]
    pub fn request(&mut self) {
        self.pending = true;
    }

    /// The ASID it ran with last (0: none yet).
    pub const fn asid(&self) -> u32 {
        self.asid
    }

    /// At an entry on `cpu`, whose allocator is `c`, with the VM's memory
    /// generation `vm_gen`: the ASID and TLB_CONTROL to run with.
    /// `flush_by_asid`: the processor offers TLB_CONTROL 3 and 7. Records
    /// the entry; when it does not happen after all (VMRUN refused it:
    /// VMEXIT_INVALID), [`VmcbAsid::not_entered`] undoes what it consumed.
    #[inline]
    pub fn prepare(&mut self, cpu: u32, c: &mut CpuAsids, vm_gen: u64, flush_by_asid: bool) -> AsidEntry {
        use crate::vmcb::tlb_control;
        if self.cpu != Some(cpu) {
            self.cpu = Some(cpu);
            self.generation = 0;
        }
        let must_flush = self.pending || vm_gen != self.flushed_gen;
        if must_flush && !flush_by_asid {
            self.generation = 0;
        }
        let mut fresh = false;
        if self.generation != c.generation {
            let (a, g) = c.alloc();
            self.asid = a;
            self.generation = g;
            fresh = true;
        }
        let tlb_ctl = if c.flush_all {
            c.flush_all = false;
            tlb_control::FLUSH_ALL
        } else if must_flush && !fresh {
            tlb_control::FLUSH_ASID
        } else {
            tlb_control::DO_NOTHING
        };
        self.pending = false;
        self.flushed_gen = vm_gen;
        AsidEntry { asid: self.asid, tlb_ctl }
    }

    /// The entry prepared as `e` did not run (VMRUN refused the VMCB before
    /// acting on TLB_CONTROL): what it was to flush is flushed by the next.
    #[inline]
    pub fn not_entered(&mut self, c: &mut CpuAsids, e: AsidEntry) {
        use crate::vmcb::tlb_control;
        match e.tlb_ctl {
            tlb_control::FLUSH_ALL => c.flush_all = true,
            tlb_control::DO_NOTHING => {}
            _ => self.pending = true,
        }
    }
}

/// Which levels of a vCPU L1's TLB requests for its guests concern
/// (`(l1, l2)`): TLB_CONTROL in vmcb12 at a nested VMRUN (APM 15.16.2: 1
/// flushes every ASID, L1's own too; 3 and 7 the guest's, when flush-by-ASID
/// is offered to L1; other values are ignored) — L2 runs on its vCPU's own
/// L2 ASID whatever vmcb12's ASID is, so a flush of any L1 guest ASID
/// flushes it.
pub const fn l1_tlb_control(tlb_ctl: u8, l1_flush_by_asid: bool) -> (bool, bool) {
    match tlb_ctl {
        crate::vmcb::tlb_control::FLUSH_ALL => (true, true),
        3 | 7 if l1_flush_by_asid => (false, true),
        _ => (false, false),
    }
}

/// Which levels L1's INVLPGA concerns (APM 15.16.3 and vol. 3 INVLPGA): ASID 0
/// is L1's own (host) mapping, any other ASID one of L1's guests, all run on
/// the vCPU's L2 ASID.
pub const fn l1_invlpga(asid: u32) -> (bool, bool) {
    if asid == 0 {
        (true, false)
    } else {
        (false, true)
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

    #[test]
    fn asids_per_cpu_flush_only_when_required() {
        use crate::vmcb::tlb_control::*;
        for fba in [true, false] {
            let mut c0 = CpuAsids::new(16);
            let mut c1 = CpuAsids::new(16);
            let (mut a, mut b) = (VmcbAsid::new(), VmcbAsid::new());
            // The first entry on a CPU flushes everything (earlier owners).
            let e = a.prepare(0, &mut c0, 0, fba);
            assert_eq!((e.asid, e.tlb_ctl), (1, FLUSH_ALL));
            assert_eq!(a.prepare(0, &mut c0, 0, fba), AsidEntry { asid: 1, tlb_ctl: DO_NOTHING });
            // Another VMCB: its own ASID, nothing flushed.
            assert_eq!(b.prepare(0, &mut c0, 0, fba), AsidEntry { asid: 2, tlb_ctl: DO_NOTHING });
            assert_eq!(a.prepare(0, &mut c0, 0, fba), AsidEntry { asid: 1, tlb_ctl: DO_NOTHING });
            // A local request: flush-by-ASID, or a new ASID.
            a.request();
            let e = a.prepare(0, &mut c0, 0, fba);
            if fba {
                assert_eq!(e, AsidEntry { asid: 1, tlb_ctl: FLUSH_ASID });
            } else {
                assert_eq!(e, AsidEntry { asid: 3, tlb_ctl: DO_NOTHING });
            }
            // The VM's generation moved: the same.
            let e = b.prepare(0, &mut c0, 1, fba);
            assert_eq!(e.tlb_ctl, if fba { FLUSH_ASID } else { DO_NOTHING });
            assert_ne!(e.asid, a.asid());
            // Migration: a new ASID on the other CPU (its first entry there flushes all).
            let e = a.prepare(1, &mut c1, 0, fba);
            assert_eq!((e.asid, e.tlb_ctl), (1, FLUSH_ALL));
            let e = a.prepare(0, &mut c0, 0, fba);
            assert_eq!(e.tlb_ctl, DO_NOTHING);
            assert!(e.asid > 2, "back on CPU 0: a new ASID there, not the old one");
        }
    }

    #[test]
    fn asid_rollover_flushes_all_once() {
        use crate::vmcb::tlb_control::*;
        let mut c = CpuAsids::new(3); // ASIDs 1 and 2
        let mut v = [VmcbAsid::new(); 3];
        assert_eq!(v[0].prepare(0, &mut c, 0, true).tlb_ctl, FLUSH_ALL);
        assert_eq!(v[1].prepare(0, &mut c, 0, true), AsidEntry { asid: 2, tlb_ctl: DO_NOTHING });
        // Out of ASIDs: a new generation, the whole TLB flushed once.
        assert_eq!(v[2].prepare(0, &mut c, 0, true), AsidEntry { asid: 1, tlb_ctl: FLUSH_ALL });
        // The others take new ASIDs of the new generation, without flushing.
        assert_eq!(v[0].prepare(0, &mut c, 0, true), AsidEntry { asid: 2, tlb_ctl: DO_NOTHING });
        assert_eq!(v[1].prepare(0, &mut c, 0, true), AsidEntry { asid: 1, tlb_ctl: FLUSH_ALL });
        // An entry refused by VMRUN leaves its flush to the next one.
        let e = v[2].prepare(0, &mut c, 0, true);
        assert_eq!(e, AsidEntry { asid: 2, tlb_ctl: DO_NOTHING });
        v[2].request();
        let e = v[2].prepare(0, &mut c, 0, true);
        assert_eq!(e.tlb_ctl, FLUSH_ASID);
        v[2].not_entered(&mut c, e);
        assert_eq!(v[2].prepare(0, &mut c, 0, true).tlb_ctl, FLUSH_ASID);
        let mut c = CpuAsids::new(16);
        let e = v[0].prepare(0, &mut c, 0, true);
        v[0].not_entered(&mut c, e);
        assert_eq!(v[1].prepare(0, &mut c, 0, true).tlb_ctl, FLUSH_ALL);
    }

    #[test]
    fn l1_requests() {
        assert_eq!(l1_tlb_control(0, true), (false, false));
        assert_eq!(l1_tlb_control(1, false), (true, true));
        assert_eq!(l1_tlb_control(3, true), (false, true));
        assert_eq!(l1_tlb_control(7, true), (false, true));
        assert_eq!(l1_tlb_control(3, false), (false, false));
        assert_eq!(l1_tlb_control(5, true), (false, false));
        assert_eq!(l1_invlpga(0), (true, false));
        assert_eq!(l1_invlpga(9), (false, true));
    }

    /// A model of per-CPU TLBs tagged by ASID (APM 15.16): each CPU caches
    /// translations tagged (ASID, owner VMCB, the owner's version of them).
    /// Two VMs of two vCPUs, each with vmcb01 and vmcb02 (L1 and L2),
    /// random entries on random CPUs (migrations), VM-wide shootdowns, L1's
    /// TLB_CONTROL in vmcb12 and INVLPGA, NPT02 drops, KVM_SET_SREGS, entries
    /// refused by VMRUN, few ASIDs (rollovers) or many, with and without
    /// flush-by-ASID (a processor without it ignores TLB_CONTROL 3, as TCG):
    /// an entry never finds, under its ASID on its CPU, a translation of
    /// another VMCB or one its VMCB may no longer use, and two VMCBs of the
    /// current generation of a CPU never share an ASID.
    #[test]
    fn asid_model_never_uses_a_stale_translation() {
        use crate::vmcb::tlb_control::*;
        const CPUS: usize = 3;
        const VMCBS: usize = 8; // VM k: vCPUs 2k, 2k+1; VMCB 2v is vmcb01, 2v+1 vmcb02
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let vm_of = |k: usize| k / 4;
        for round in 0..400 {
            let nasid = [2u32, 3, 4, 5, 16, 64][round % 6];
            let fba = round % 2 == 0;
            let l1_fba = rnd(2) == 0;
            let mut cpus = [CpuAsids::new(nasid); CPUS];
            let mut asids = [VmcbAsid::new(); VMCBS];
            let mut version = [0u64; VMCBS];
            let mut gen = [0u64; 2];
            let mut tlb: [Vec<(u32, usize, u64)>; CPUS] = Default::default();
            let bump = |version: &mut [u64; VMCBS], asids: &mut [VmcbAsid; VMCBS], k: usize| {
                version[k] += 1;
                asids[k].request();
            };
            for _ in 0..400 {
                let v = rnd(4) as usize * 2; // a vCPU's vmcb01
                match rnd(10) {
                    0 => {
                        // Vm::shootdown: every VMCB of the VM.
                        let vm = rnd(2) as usize;
                        gen[vm] += 1;
                        for (k, ver) in version.iter_mut().enumerate() {
                            if vm_of(k) == vm {
                                *ver += 1;
                            }
                        }
                    }
                    1 => {
                        let (a, b) = l1_tlb_control(rnd(8) as u8, l1_fba);
                        if a {
                            bump(&mut version, &mut asids, v);
                        }
                        if b {
                            bump(&mut version, &mut asids, v + 1);
                        }
                    }
                    2 => {
                        let (a, b) = l1_invlpga(rnd(3) as u32);
                        if a {
                            bump(&mut version, &mut asids, v);
                        }
                        if b {
                            bump(&mut version, &mut asids, v + 1);
                        }
                    }
                    3 => bump(&mut version, &mut asids, v + 1), // NPT02 dropped
                    4 => bump(&mut version, &mut asids, v + rnd(2) as usize), // KVM_SET_SREGS
                    _ => {
                        let k = v + rnd(2) as usize;
                        let c = rnd(CPUS as u64) as usize;
                        let e = asids[k].prepare(c as u32, &mut cpus[c], gen[vm_of(k)], fba);
                        assert!(e.asid >= 1 && e.asid < nasid.max(2), "ASID {} of {nasid}", e.asid);
                        if rnd(16) == 0 {
                            asids[k].not_entered(&mut cpus[c], e);
                            continue;
                        }
                        match e.tlb_ctl {
                            DO_NOTHING => {}
                            FLUSH_ALL => tlb[c].clear(),
                            FLUSH_ASID | FLUSH_ASID_LOCAL => {
                                assert!(fba, "TLB_CONTROL {} without flush-by-ASID", e.tlb_ctl);
                                tlb[c].retain(|t| t.0 != e.asid);
                            }
                            x => panic!("TLB_CONTROL {x}"),
                        }
                        for &(a, owner, ver) in &tlb[c] {
                            if a == e.asid {
                                assert!(owner == k && ver == version[k], "VMCB {k} on CPU {c} ASID {a} may use ({owner}, {ver}), now at {}", version[k]);
                            }
                        }
                        tlb[c].push((e.asid, k, version[k]));
                        for (j, o) in asids.iter().enumerate() {
                            if j != k && o.cpu == Some(c as u32) && o.generation == cpus[c].generation {
                                assert_ne!(o.asid, e.asid, "VMCBs {j} and {k} share ASID {} on CPU {c}", e.asid);
                            }
                        }
                    }
                }
            }
        }
    }
}
