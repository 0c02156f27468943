# Debug-kernel checks: the last suite of every debug boot (make
# qemu-test-debug, kernel qemu-scripts/kernel-debug.config). The checkers
# are on, a kmemleak scan after all the other suites finds no leaked
# object, and the kernel log of the whole boot holds no report of KASAN,
# lockdep, the list and sleep-in-atomic checks, kmemleak, BUG or WARNING.
# Any report is printed.
. /tests/lib.sh
KMEMLEAK=/sys/kernel/debug/kmemleak
# kvm_amd's own known TDP MMU warning is left out (lib.sh says why).
dmesg | drop_known_kvm_reports > /tmp/kcheck.dmesg

case_ "the debug kernel's checkers are on (KASAN, lockdep, kmemleak)"
expect_line /tmp/kcheck.dmesg "KernelAddressSanitizer initialized (generic)"
# Lockdep switches itself off (debug_locks 0) after its first report.
expect_eq "lockdep's debug_locks" 1 "$(sed -n 's/^ *debug_locks: *//p' /proc/lockdep_stats 2>/dev/null)"
expect "kmemleak's debugfs file is readable" cat $KMEMLEAK > /dev/null
verdict

case_ "kmemleak: no unreferenced object left by the suites"
# An object is reported when one scan finds nothing pointing to it and its
# contents did not change since the previous scan (and it is older than
# 5 s): two scans, the second one reports.
t0=$(date +%s)
echo scan > $KMEMLEAK; sleep 1; echo scan > $KMEMLEAK
cat $KMEMLEAK > /tmp/kmemleak.txt
n=$(grep -c '^unreferenced object' /tmp/kmemleak.txt)
echo "kmemleak: two scans in $(($(date +%s) - t0)) s, $n unreferenced objects"
if [ "$n" != 0 ]; then
    head -n 120 /tmp/kmemleak.txt
    # Frames in an unloaded module are bare addresses: their offset from
    # the .text of that load names them on the host
    # (llvm-addr2line-19 -fe build/debug/module/nsvm.ko OFFSET).
    echo "nsvm.ko's .text was at (one line per load): $(cat /tmp/nsvm.text 2>/dev/null | tr '\n' ' ')"
fi
expect_eq "unreferenced objects" 0 "$n"
verdict

case_ "kernel log of the whole boot: no KASAN, lockdep, list, sleep-in-atomic, kmemleak, BUG or WARNING report"
dmesg | drop_known_kvm_reports > /tmp/kcheck.dmesg
# Report headers: KASAN ("BUG: KASAN: ..."), lockdep ("WARNING: possible
# circular locking dependency", "inconsistent lock state", "suspicious RCU
# usage", "INFO: trying to register non-static key"), DEBUG_ATOMIC_SLEEP
# ("BUG: sleeping function called from invalid context"), DEBUG_LIST
# ("list_add corruption", then a WARNING or BUG), DEBUG_PAGEALLOC (a fault
# on an unmapped page: "BUG: unable to handle page fault"), kmemleak, any
# WARN(), oops or stack dump.
PAT='BUG:|WARNING:|KASAN:|Oops|general protection|Call Trace|kmemleak: .*(suspected|disabled)|lock held|locking dependency|lock state|RCU usage|non-static key|corruption|INFO: task'
n=$(grep -cE "$PAT" /tmp/kcheck.dmesg)
if [ "$n" != 0 ]; then
    echo "the kernel log reports (each report from its first line, 60 lines at most):"
    awk -v pat="$PAT" '$0 ~ pat && left <= 0 && shown < 6 {left = 60; shown++; print "----"} left > 0 {print; left--}' /tmp/kcheck.dmesg
fi
expect_eq "report lines in the kernel log" 0 "$n"
verdict
finish
