# What one run of a KVM selftest gave, for the selftests suite
# (selftests.sh) and the l1 suite's run inside the L1 (l1inner.sh).
# outcome FILE STATUS: "PASS", "SKIP: reason" or "FAIL: reason" of a run.
outcome() {
    _f=$1 _rc=$2
    _sk=$(grep -c '^ok [0-9]* # SKIP' "$_f")
    case $_rc in
        0)  if [ "$_sk" != 0 ]; then echo "PASS ($_sk subtests skipped: $(grep '^ok [0-9]* # SKIP' "$_f" | sed 's/^ok [0-9]* # SKIP *//' | head -2 | tr '\n' ';' | cut -c1-100))"
            else echo PASS; fi;;
        4)  echo "SKIP: $(grep -m1 '# SKIP' "$_f" | sed 's/.*# SKIP *-* *//' | cut -c1-120)";;
        124|137|143) echo "FAIL: timeout after ${T}s";;
        *)  _a=$(grep -A1 '==== Test Assertion Failure ====' "$_f" | sed -n '2{s/^ *//;p}' | sed 's/^.*selftests\/kvm\///')
            _m=$(awk '/==== Test Assertion Failure ====/ {a = 1; next} a && /^  [^ ]/ && !/pid=|^  [^ ]*:[0-9]+:/ {m = $0} END {print m}' "$_f" | sed 's/^ *//')
            [ -z "$_a" ] && _a=$(grep -m1 -E '^not ok|FAIL|rror' "$_f")
            echo "FAIL: status $_rc${_a:+: $_a}${_m:+ ($_m)}" | cut -c1-200;;
    esac
}
