#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""`make bench BENCH_PROFILE=1`: where the instructions of each bench row go.

Reads the per-block counts the TCG plugin wrote (tools/tcg-cost, option
profile=: "tb run=T row=R pc=0x... insns=N execs=M"), the serial log of the
bench boot (tests/qemu/bench.sh prints, between NSVM-BENCH-JSON markers,
the JSON run of `nsvm bench` on each device, whose "cost_tag" names its
windows, and "NSVM-SECTION <module> <section> <address>" for
every section of nsvm, kvm and kvm_amd once loaded), the kernel's System.map
and the modules' .ko files, and prints for each row and device the functions
that executed the most instructions per iteration inside the row's TSC
windows. Host kernel addresses are exact (the bench boots with nokaslr);
module ones come from the module's sections as loaded; user-half addresses
are the guest's or the VMM's ("[user half]").

usage: bench-profile.py PROFILE LOG SYSTEM.MAP ITERATIONS TOP [module=file.ko ...]
                        [detail=TEXT]
With detail=TEXT, each function whose name contains TEXT is broken down by
translated block: its start (function+offset, for `llvm-objdump-19 -d
--start-address=...` of the .ko), instructions per iteration.
"""
import bisect
import collections
import re
import subprocess
import sys


def kernel_symbols(system_map):
    syms = []
    with open(system_map) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[1] in "tTwW":
                syms.append((int(parts[0], 16), parts[2]))
    return syms


def module_symbols(name, ko, sections):
    """Function symbols of `ko` at their loaded addresses."""
    names = {}
    for line in subprocess.run(["readelf", "-SW", ko], capture_output=True, text=True, check=True).stdout.splitlines():
        m = re.match(r"\s*\[\s*(\d+)\]\s+(\S+)", line)
        if m:
            names[int(m.group(1))] = m.group(2)
    found = []
    for line in subprocess.run(["readelf", "-sW", ko], capture_output=True, text=True, check=True).stdout.splitlines():
        p = line.split()
        if len(p) >= 8 and p[3] == "FUNC" and p[6].isdigit():
            sec = names.get(int(p[6]))
            if sec in sections:
                found.append((sections[sec] + int(p[1], 16), p[7]))
    return [(a, f"{name}:{d}") for (a, _), d in zip(found, demangle([n for _, n in found]))]


def demangle(names):
    """Rust (v0) and C++ names readable (llvm-cxxfilt of the kernel's LLVM),
    or as they are when it is missing."""
    try:
        out = subprocess.run(["llvm-cxxfilt-19"], input="\n".join(names), capture_output=True, text=True, check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return names
    return out if len(out) == len(names) else names


def main():
    prof, log, system_map, iterations, top = sys.argv[1:6]
    iterations, top = int(iterations), int(top)
    kos = dict(a.split("=", 1) for a in sys.argv[6:])
    detail = kos.pop("detail", None)
    runs, sections = {}, collections.defaultdict(dict)
    dev = None
    with open(log, errors="replace") as f:
        for line in f:
            m = re.match(r"NSVM-BENCH-JSON-(BEGIN|END) (\S+)", line)
            if m:
                dev = m.group(2) if m.group(1) == "BEGIN" else None
            m = re.search(r'"cost_tag": (\d+)', line)
            if m and dev:
                runs[int(m.group(1))] = dev
            # tests/qemu/benchqemu.sh: one window per QEMU boot.
            m = re.match(r"NSVM-BENCH-QEMU (\S+) .*tag=(\d+)", line)
            if m:
                runs[int(m.group(2))] = m.group(1)
            # tests/qemu/benchl1.sh: the L1's bench run on each L0, one line.
            m = re.search(r'^NSVM-BENCH-L1-JSON (\S+) .*"cost_tag": (\d+)', line)
            if m:
                runs[int(m.group(2))] = "L1-on-" + m.group(1)
            # (The L1's lines come prefixed by benchl1.sh.)
            m = re.search(r"NSVM-SECTION (\S+) (\S+) (0x[0-9a-f]+)", line)
            if m:
                sections[m.group(1)][m.group(2)] = int(m.group(3), 16)
    syms = kernel_symbols(system_map)
    for mod, ko in kos.items():
        if mod in sections:
            syms += module_symbols(mod, ko, sections[mod])
    syms.sort()
    addrs = [a for a, _ in syms]

    def name(pc):
        if pc < (1 << 63):
            return "[user half]"
        i = bisect.bisect_right(addrs, pc) - 1
        return syms[i][1] if i >= 0 else "?"

    # (device, row) -> function -> instructions, from the JSON run of each
    # device (bench.sh runs the tool twice per device, text and JSON).
    per = collections.defaultdict(collections.Counter)
    blocks = collections.defaultdict(collections.Counter)
    with open(prof) as f:
        for line in f:
            m = re.match(r"tb run=(\d+) row=(\d+) pc=0x([0-9a-f]+) insns=(\d+) execs=(\d+)", line)
            if not m:
                continue
            tag, row, pc, n, execs = int(m.group(1)), int(m.group(2)), int(m.group(3), 16), int(m.group(4)), int(m.group(5))
            if tag in runs:
                fn = name(pc)
                per[(runs[tag], row)][fn] += n * execs
                if detail and detail in fn:
                    blocks[(runs[tag], row, fn)][pc] += n * execs
    devs = sorted({d for d, _ in per})
    for row in sorted({r for _, r in per}):
        for dev in devs:
            c = per.get((dev, row))
            if not c:
                continue
            total = sum(c.values()) / iterations
            print(f"--- row {row} on {dev}: {total:.1f} instructions per iteration (loop overhead included)")
            for fn, v in c.most_common(top):
                print(f"  {v / iterations:9.1f}  {fn}")
                b = blocks.get((dev, row, fn))
                if b:
                    pcs = [pc for pc, _ in b.most_common(top)]
                    start = syms[bisect.bisect_right(addrs, pcs[0]) - 1][0] if pcs else 0
                    for pc in pcs:
                        print(f"  {'':9} {b[pc] / iterations:9.1f}  +{pc - start:#x}")


if __name__ == "__main__":
    main()
