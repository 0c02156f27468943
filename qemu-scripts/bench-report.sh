#!/usr/bin/env bash
# After `make bench`'s boot: the comparison again, with the hardware-cost
# columns. Takes the JSON of both runs from the serial log (tests/qemu/bench.sh
# prints them between NSVM-BENCH-JSON markers) and the counts the TCG plugin
# wrote (tools/tcg-cost), and runs the host's `nsvm bench --compare --cost`.
# usage: bench-report.sh LOG COST-FILE NSVM-BINARY
set -euo pipefail
. "$(dirname "$0")/common.sh"
logf=$1 costf=$2 tool=$3
dir=$(dirname "$costf")
for d in nsvm kvm; do
    sed -n "/^NSVM-BENCH-JSON-BEGIN $d\$/,/^NSVM-BENCH-JSON-END $d\$/p" "$logf" | sed '1d;$d' > "$dir/bench-$d.json"
    [ -s "$dir/bench-$d.json" ] || die "no $d JSON in $logf"
done
[ -s "$costf" ] || die "the cost plugin wrote nothing to $costf"
echo "=== nsvm bench --compare --cost (TSC per exit and estimated hardware cycles per exit) ==="
"$tool" bench --compare "$dir/bench-nsvm.json" "$dir/bench-kvm.json" --cost "$costf"
