#!/usr/bin/env bash
# The L1 rows of `make bench` from the serial log of tests/qemu/benchl1.sh:
# usage: bench-l1-report.sh bench-l1.log NSVM-TOOL
# Prints the table (kvm_amd L0, nsvm L0, ratio nsvm / kvm_amd) and the
# L1's nsvm bench comparison; exits 1 when a boot has no figures.
set -euo pipefail
log=$1 tool=$2
echo "=== L1 rows: KVM (kvm_amd nested=1) as L1 in an L1 Linux (-smp 2) on each L0 (tests/qemu/benchl1.sh; -icount shift=0, guest TSC) ==="
awk '/^NSVM-BENCH-L1 / {for (i = 3; i <= NF; i++) {split($i, kv, "="); v[$2, kv[1]] = kv[2]}; n[$2] = 1}
     function row(name, k, fmt,   a, b) {a = v["kvm", k]; b = v["nsvm", k]
         printf "%-44s " fmt " " fmt " %7.2f\n", name, a, b, (a > 0 ? b / a : 0)}
     # per(NAME, L0, L2[, G]): L0 exits (less counter G, when given) per L2 exit.
     function per(name, l0, l2, g,   a, b) {a = (v["kvm", l2] > 0 ? (v["kvm", l0] - v["kvm", g]) / v["kvm", l2] : 0); b = (v["nsvm", l2] > 0 ? (v["nsvm", l0] - v["nsvm", g]) / v["nsvm", l2] : 0)
         printf "%-44s %12.2f %12.2f %7.2f\n", name, a, b, (a > 0 ? b / a : 0)}
     END {if (!n["kvm"] || !n["nsvm"]) {print "bench-l1: an L0 has no figures (see the serial log)"; exit 1}
          printf "%-44s %12s %12s %7s\n", "row", "kvm_amd L0", "nsvm L0", "ratio"
          row("L2 CPUID exit under L1 KVM (TSC/exit)", "cpuid", "%12.1f")
          row("L2 Linux boot to init (guest s)", "boot_s", "%12.3f")
          row("L2 exits, bench run (L1 KVM view)", "bench_l2", "%12d")
          row("L0 exits, bench run", "bench_l0", "%12d")
          per("L0 exits per L2 exit, bench run", "bench_l0", "bench_l2")
          row("  of them TCG injection guards (nsvm)", "bench_guards", "%12d")
          per("  the same without them", "bench_l0", "bench_l2", "bench_guards")
          row("L2 exits, L2 boot (L1 KVM view)", "boot_l2", "%12d")
          row("L0 exits, L2 boot", "boot_l0", "%12d")
          per("L0 exits per L2 exit, L2 boot", "boot_l0", "boot_l2")
          row("  of them TCG injection guards (nsvm)", "boot_guards", "%12d")
          per("  the same without them", "boot_l0", "boot_l2", "boot_guards")
          row("L0 exits, idle pair (subtracted)", "idle_l0", "%12d")
          print "ratio = nsvm L0 / kvm_amd L0 (goal <= 1.0); L0 exits: the L1 VM'"'"'s exits counter (nsvm stats --pid) around each part, less the idle pair; injection guards: #VMEXIT(INTR)s nsvm provokes after injecting an interrupt (exit_after_injection, needed by QEMU TCG only, docs/architecture.md)"}' "$log"
tmp=$(mktemp -d)
for d in kvm nsvm; do
    sed -n "s/^NSVM-BENCH-L1-JSON $d //p" "$log" > "$tmp/$d.json"
done
echo "=== nsvm bench in L1 on /dev/kvm (its guest an L2; nested rows run an L3): ratio = L1 on nsvm / L1 on kvm_amd ==="
"$tool" bench --compare "$tmp/nsvm.json" "$tmp/kvm.json" || echo "bench-l1: compare failed"
rm -rf "$tmp"
