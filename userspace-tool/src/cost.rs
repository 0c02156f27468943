// SPDX-License-Identifier: GPL-2.0
//! The hardware-weighted cost column of `nsvm bench --compare A B --cost
//! FILE`: FILE is what the TCG plugin of `make bench` (tools/tcg-cost)
//! wrote, instruction counts by class for each measurement window of each
//! run of `nsvm bench`; each class gets a weight in cycles for a Zen 3/Zen 4
//! core (WEIGHTS, sources in docs/bench.md), every other instruction one
//! cycle. The run marks its start and end for the plugin (`mark_run`).

/// Cycles charged per event of each class the plugin reports (its names,
/// tools/tcg-cost/classify.c). docs/bench.md gives the source of each
/// figure and says which ones are estimates.
pub const WEIGHTS: [(&str, f64); 18] = [
    ("base", 1.0),
    // VMRUN by L0 and the #VMEXIT that ends it: the world switch there and back.
    ("vmrun", 1200.0),
    ("vmload", 60.0),
    ("vmsave", 60.0),
    ("xsave", 100.0),
    ("xrstor", 100.0),
    ("wrmsr", 150.0),
    ("rdmsr", 40.0),
    ("mov_cr3", 150.0),
    ("mov_cr4", 100.0),
    ("invlpga", 100.0),
    ("clgi", 20.0),
    ("stgi", 20.0),
    ("xsetbv", 100.0),
    // Executed by a guest: it exits (its cost is L0's VMRUN round trip) or is
    // virtualized (STGI/CLGI with vGIF).
    ("guest_priv", 1.0),
    // Requested at a VMRUN through TLB_CONTROL (events, not instructions):
    // the refill of what the flush dropped.
    ("tlb_flush_all", 1000.0),
    ("tlb_flush_asid", 300.0),
    // A host VMRUN whose VMCB the plugin could not read: nothing to add, but
    // a nonzero count means the TLB-flush counts are incomplete.
    ("vmcb_unread", 0.0),
];

/// Classes that count events at a VMRUN, not executed instructions.
const EVENTS: [&str; 3] = ["tlb_flush_all", "tlb_flush_asid", "vmcb_unread"];

/// One measurement window: one row of one run of `nsvm bench`.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub tag: u64,
    pub row: u64,
    pub counts: Vec<(String, u64)>,
}

impl Window {
    pub fn count(&self, class: &str) -> u64 {
        self.counts.iter().find(|(c, _)| c == class).map_or(0, |(_, n)| *n)
    }

    /// Estimated cycles: every count times its class's weight.
    pub fn cycles(&self) -> Result<f64, String> {
        self.counts.iter().try_fold(0.0, |acc, (c, n)| {
            let w = WEIGHTS.iter().find(|(name, _)| name == c).ok_or_else(|| format!("the cost file has class {c}, which has no weight (userspace-tool/src/cost.rs)"))?;
            Ok(acc + w.1 * *n as f64)
        })
    }

    /// Executed instructions (weight 1 each): comparable with the guest TSC
    /// under -icount shift=0.
    pub fn instructions(&self) -> u64 {
        self.counts.iter().filter(|(c, _)| !EVENTS.contains(&c.as_str())).map(|(_, n)| n).sum()
    }
}

/// The windows of the plugin's output (lines `window tag=T row=R class=N...`;
/// `run` lines and anything else are skipped).
pub fn parse(text: &str) -> Result<Vec<Window>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let mut words = line.split_whitespace();
        if words.next() != Some("window") {
            continue;
        }
        let (mut tag, mut row, mut counts) = (None, None, Vec::new());
        for w in words {
            let (k, v) = w.split_once('=').ok_or_else(|| format!("cost file line {}: '{w}' is not name=value", i + 1))?;
            let v: u64 = v.parse().map_err(|_| format!("cost file line {}: '{w}' has no number", i + 1))?;
            match k {
                "tag" => tag = Some(v),
                "row" => row = Some(v),
                _ => counts.push((k.to_string(), v)),
            }
        }
        match (tag, row) {
            (Some(tag), Some(row)) => out.push(Window { tag, row, counts }),
            _ => return Err(format!("cost file line {}: a window without tag or row", i + 1)),
        }
    }
    Ok(out)
}

/// The window of one row of one run (the last one, should a run repeat it).
pub fn window(all: &[Window], tag: u64, row: u64) -> Option<&Window> {
    all.iter().rev().find(|w| w.tag == tag && w.row == row)
}

/// Per iteration of row `row` of run `tag`, less row 0 (the loop): the
/// estimated cycles, the instructions, and each class's count.
pub struct PerIteration {
    pub cycles: f64,
    pub instructions: f64,
    pub classes: Vec<(&'static str, f64)>,
}

pub fn per_iteration(all: &[Window], tag: u64, row: u64, iterations: u64) -> Result<Option<PerIteration>, String> {
    let (Some(w), Some(base)) = (window(all, tag, row), window(all, tag, 0)) else { return Ok(None) };
    let n = iterations.max(1) as f64;
    let classes = WEIGHTS.iter().map(|(c, _)| (*c, (w.count(c) as f64 - base.count(c) as f64) / n)).collect();
    Ok(Some(PerIteration { cycles: (w.cycles()? - base.cycles()?) / n, instructions: (w.instructions() as f64 - base.instructions() as f64) / n, classes }))
}

/// Tell the cost plugin that a run of `nsvm bench` starts (`end` false) or
/// ends, with its tag in RAX (tools/tcg-cost/classify.h: a 7-byte NOP,
/// `nopl 0x4e535610(%rax)` / `0x4e535611`). On hardware and under QEMU
/// without the plugin it is a NOP.
pub fn mark_run(tag: u64, end: bool) {
    if end {
        // SAFETY: `nopl 0x4e535611(%rax)` (0F 1F /0) is a NOP: its memory
        // operand is never accessed and it writes no register, flag or memory.
        unsafe { core::arch::asm!(".byte 0x0f, 0x1f, 0x80", ".long 0x4e535611", in("rax") tag, options(nomem, nostack, preserves_flags)) }
    } else {
        // SAFETY: as above, `nopl 0x4e535610(%rax)`.
        unsafe { core::arch::asm!(".byte 0x0f, 0x1f, 0x80", ".long 0x4e535610", in("rax") tag, options(nomem, nostack, preserves_flags)) }
    }
}

/// Open (`open` true, row in R14) or close the cost plugin's measurement
/// window (`nopl 0x4e535601(%rax)` / `0x4e535602`, classify.h): `nsvm
/// bench --window`, around a whole command. A NOP elsewhere.
pub fn mark_window(row: u64, open: bool) {
    if open {
        // SAFETY: `nopl 0x4e535601(%rax)` is a NOP (as in `mark_run`); R14
        // is only read (by the plugin).
        unsafe { core::arch::asm!(".byte 0x0f, 0x1f, 0x80", ".long 0x4e535601", in("r14") row, options(nomem, nostack, preserves_flags)) }
    } else {
        // SAFETY: as above, `nopl 0x4e535602(%rax)`.
        unsafe { core::arch::asm!(".byte 0x0f, 0x1f, 0x80", ".long 0x4e535602", options(nomem, nostack, preserves_flags)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "run tag=7\n\
        window tag=7 row=0 base=1000 vmrun=0 xsave=0 tlb_flush_all=0\n\
        window tag=7 row=1 base=3000 vmrun=10 xsave=20 tlb_flush_all=10\n\
        run tag=8\n\
        window tag=8 row=1 base=9 vmrun=1\n";

    #[test]
    fn parses_and_weighs() {
        let w = parse(SAMPLE).unwrap();
        assert_eq!(w.len(), 3);
        assert_eq!(window(&w, 7, 1).unwrap().count("xsave"), 20);
        assert_eq!(window(&w, 7, 1).unwrap().instructions(), 3030);
        let p = per_iteration(&w, 7, 1, 10).unwrap().unwrap();
        // (2000 base + 10 VMRUN + 20 XSAVE + 10 full flushes) / 10 iterations
        assert_eq!(p.cycles, (2000.0 + 10.0 * 1200.0 + 20.0 * 100.0 + 10.0 * 1000.0) / 10.0);
        assert_eq!(p.instructions, 203.0);
        // Tag 8 has no row 0: no figure.
        assert!(per_iteration(&w, 8, 1, 10).unwrap().is_none());
    }

    #[test]
    fn unknown_class_is_an_error() {
        let w = parse("window tag=1 row=0 base=1 frobnicate=2\n").unwrap();
        assert!(w[0].cycles().is_err());
        assert!(parse("window tag=1 row=0 base=x\n").is_err());
        assert!(parse("window row=0 base=1\n").is_err());
    }

    #[test]
    fn every_plugin_class_has_a_weight() {
        // The names of tools/tcg-cost/classify.c, in its order (the marker
        // class is never written).
        let src = include_str!("../../tools/tcg-cost/classify.c");
        let names: Vec<&str> = src.lines().filter_map(|l| l.trim().strip_prefix("[CLS_")).filter_map(|l| l.split('"').nth(1)).filter(|n| *n != "marker").collect();
        assert_eq!(names.len(), WEIGHTS.len());
        for (n, (w, _)) in names.iter().zip(WEIGHTS.iter()) {
            assert_eq!(n, w);
        }
    }
}
