# Helpers for the in-guest suites (busybox sh). Source it, call `case_ NAME`
# ... `pass`/`fail MSG`, and `finish` at the end.
PASSED=0
FAILED=0
CASE=""
MODDIR=/lib/modules

case_() { CASE=$1; echo "--- $CASE"; }
pass() { PASSED=$((PASSED + 1)); echo "PASS: $CASE${1:+ ($1)}"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL: $CASE: $*"; }
# check DESCRIPTION COMMAND...: pass when the command succeeds.
check() { d=$1; shift; if "$@"; then pass "$d"; else fail "$d"; fi; }
finish() { echo "$PASSED passed, $FAILED failed"; }

loaded() { grep -q "^$1 " /proc/modules; }
load_nsvm() { insmod $MODDIR/nsvm.ko "$@"; }
unload_nsvm() { rmmod nsvm; }
# Lines of the kernel log since the last mark_log.
mark_log() { LOGMARK=$(dmesg | wc -l); }
new_log() { dmesg | tail -n +$((LOGMARK + 1)); }
# Free memory in KiB after dropping caches: free pages of every zone plus the
# pages parked on the per-CPU free lists (which MemFree does not count, and
# which make MemFree jump by megabytes between two reads).
free_kb() {
    sync; echo 3 > /proc/sys/vm/drop_caches
    awk '$1 == "nr_free_pages" {f += $2} $1 == "count:" {c += $2} END {print (f + c) * 4}' /proc/zoneinfo
}
# Run a command as user nobody.
as_nobody() { su -s /bin/sh -c "$*" nobody; }
