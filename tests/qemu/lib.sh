# Helpers for the in-guest suites (busybox sh). Source it, call `case_ NAME`
# ... `pass`/`fail MSG`, and `finish` at the end.
PASSED=0
FAILED=0
CASE=""
MODDIR=/lib/modules

case_() { CASE=$1; WRONG=""; echo "--- $CASE"; }
pass() { PASSED=$((PASSED + 1)); echo "PASS: $CASE${1:+ ($1)}"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL: $CASE: $*"; }
# check DESCRIPTION COMMAND...: pass when the command succeeds.
check() { d=$1; shift; if "$@"; then pass "$d"; else fail "$d"; fi; }
finish() { echo "$PASSED passed, $FAILED failed"; }

# A case made of several conditions: each expect* below checks one and
# remembers one that does not hold, with the value observed; `verdict [NOTE]`
# ends the case: PASS when every condition held, else one FAIL line naming
# each condition that did not ("FAIL: CASE: rbx in FILE is '0x0', expected
# '0x107a'; ...").
WRONG=""
wrong_() { WRONG="$WRONG${WRONG:+; }$*"; }
verdict() { if [ -z "$WRONG" ]; then pass "$@"; else fail "$WRONG"; fi; }
# expect DESCRIPTION COMMAND...: the command succeeds.
expect() { _d=$1; shift; "$@" || wrong_ "$_d"; }
# expect_eq WHAT EXPECTED OBSERVED: the strings are equal.
expect_eq() { [ "$3" = "$2" ] || wrong_ "$1 is '$3', expected '$2'"; }
# expect_num WHAT OBSERVED OP BOUND: integer comparison (OP: -lt -le -gt -ge).
expect_num() {
    if [ "$2" -eq "$2" ] 2>/dev/null && [ "$2" "$3" "$4" ]; then return 0; fi
    wrong_ "$1 is '$2', expected $3 $4"
}
# expect_status TAG.NAME VALUE: the exit status run_guest-style runs left in
# /tmp/TAG.NAME.rc.
expect_status() { expect_eq "exit status of $1" "$2" "$(cat /tmp/$1.rc 2>/dev/null)"; }
# expect_line FILE PATTERN: a line of FILE matches the basic regular
# expression. On failure, the lines that share PATTERN's literal start (up
# to its first ':', '=' or regex character; else its first word) are shown
# as the observed value.
expect_line() {
    grep -q -e "$2" "$1" 2>/dev/null && return 0
    _o=""
    for _k in "$(printf '%s' "$2" | sed 's/^\^//; s/[]:=$*.[\\].*//')" \
              "$(printf '%s' "$2" | sed 's/^\^//; s/[^A-Za-z0-9_].*//')"; do
        [ -n "$_k" ] && _o=$(grep -F -e "$_k" "$1" 2>/dev/null | head -3 | tr '\n' '|')
        [ -n "$_o" ] && break
    done
    wrong_ "no line of $1 matches '$2'${_o:+, observed '${_o%|}'}"
}
# expect_no_line FILE PATTERN: no line of FILE matches.
expect_no_line() {
    _m=$(grep -m 1 -e "$2" "$1" 2>/dev/null)
    [ -z "$_m" ] || wrong_ "$1 has '$_m' (matches '$2')"
}
# expect_count FILE PATTERN N: exactly N lines of FILE match.
expect_count() {
    _n=$(grep -c -e "$2" "$1" 2>/dev/null)
    [ "$_n" = "$3" ] || wrong_ "${_n:-0} lines of $1 match '$2', expected $3"
}
# stat_of FILE NAME: the value of a "NAME VALUE" line (statistics files).
stat_of() { sed -n "s/^$2 //p" "$1" | head -1; }
# expect_stat FILE NAME VALUE: statistic NAME is VALUE.
expect_stat() {
    _v=$(stat_of "$1" "$2")
    [ "$_v" = "$3" ] || wrong_ "$2 is '${_v:-missing}' in $1, expected $3"
}
# reg FILE NAME: a register's value in an `nsvm run --dump-regs` dump.
reg() { tr ' ' '\n' < "$1" | sed -n "s/^$2=//p" | head -1; }
# expect_regs FILE NAME=VALUE...: registers of a dump.
expect_regs() {
    _f=$1; shift
    for _rv in "$@"; do expect_eq "${_rv%%=*} in $_f" "${_rv#*=}" "$(reg "$_f" "${_rv%%=*}")"; done
}

loaded() { grep -q "^$1 " /proc/modules; }
# Booted by `make qemu-test-debug` (the debug kernel: KASAN, lockdep, kmemleak...).
debug_kernel() { grep -q 'nsvmdebug=1' /proc/cmdline; }
# Each load's .text address goes to /tmp/nsvm.text: kmemleak prints the
# stack of an object nsvm leaked as bare addresses once nsvm is unloaded
# (kcheck shows the list).
load_nsvm() {
    insmod $MODDIR/nsvm.ko "$@" || return
    cat /sys/module/nsvm/sections/.text >> /tmp/nsvm.text 2>/dev/null
    return 0
}
unload_nsvm() { rmmod nsvm; }
# load_dev nsvm|kvm: a case that loads nsvm, or kvm_amd (the reference,
# with kvm and irqbypass); unload_dev undoes it.
load_dev() {
    if [ "$1" = nsvm ]; then
        case_ "load nsvm"
        check "loaded" load_nsvm
    else
        case_ "load kvm_amd (reference)"
        insmod $MODDIR/irqbypass.ko; insmod $MODDIR/kvm.ko
        check "kvm_amd loaded" insmod $MODDIR/kvm-amd.ko
    fi
}
unload_dev() { if [ "$1" = nsvm ]; then unload_nsvm; else rmmod kvm_amd; rmmod kvm; rmmod irqbypass; fi; }
# Lines of the kernel log since the last mark_log.
# The TSC rate the test kernel was told (run-qemu.sh: the host's, which
# TCG gives the test VM): the inner guests' TSC runs at it too, so the inner
# kernels are told the same (tsc_early_khz=$TSC_KHZ).
TSC_KHZ=$(sed -n 's/.*tsc_early_khz=\([0-9]*\).*/\1/p' /proc/cmdline)
TSC_KHZ=${TSC_KHZ:-2000000}
mark_log() { LOGMARK=$(dmesg | wc -l); }
new_log() { dmesg | tail -n +$((LOGMARK + 1)); }
# The kernel log since the last mark_log (all of it with LOGMARK=0) has no
# warning, BUG or oops; the lines that do are printed.
# A known kvm_amd report, not nsvm's: kvm_amd's TDP MMU warns once
# (WARN_ON_ONCE in tdp_mmu.c, kvm_tdp_mmu_map: a "spurious" fault whose
# pfn differs from the present SPTE's) when the reference runs on /dev/kvm
# re-back a slot's memory while vCPUs fault on it under QEMU's MTTCG (seen
# on main before any of nsvm's changes, in about 1 of 10 boots). Its
# report, from the WARNING line to the "end trace" line, is left out of the
# checks and named on stdout instead; nothing else is filtered.
drop_known_kvm_reports() {
    awk '/^(\[[ 0-9.]*\] )?WARNING: .*arch\/x86\/kvm\/mmu\/tdp_mmu\.c:[0-9]+ / {skip = 1; w = $0; sub(/WARNING: /, "", w); print "(known kvm_amd warning left out: " w ")" > "/dev/stderr"}
         !skip {print}
         skip && /---\[ end trace/ {skip = 0}'
}
expect_clean_log() {
    _b=$(new_log | drop_known_kvm_reports | grep -E 'WARNING:|BUG:|Oops|Call Trace|general protection')
    [ -z "$_b" ] && return 0
    echo "$_b"
    wrong_ "kernel log has '$(echo "$_b" | head -1)' ($(echo "$_b" | wc -l) such lines, above)"
}
# Free memory in KiB after dropping caches: free pages of every zone plus the
# pages parked on the per-CPU free lists (which MemFree does not count, and
# which make MemFree jump by megabytes between two reads).
free_kb() {
    sync; echo 3 > /proc/sys/vm/drop_caches
    # The debug kernel's KASAN keeps freed slab objects in a quarantine
    # (up to 1/32 of RAM): shrinking each cache empties its part. (The
    # normal kernel, SLUB_TINY, has no /sys/kernel/slab.)
    for _s in /sys/kernel/slab/*/shrink; do [ -e "$_s" ] && echo 1 > "$_s"; done 2>/dev/null
    # ... and its stack depot (the allocation and free stacks KASAN and
    # kmemleak record) only grows, in pools of 16 KiB: counted as free.
    _pools=$(sed -n 's/^pools: //p' /sys/kernel/debug/stackdepot/stats 2>/dev/null)
    awk -v pools="${_pools:-0}" '$1 == "nr_free_pages" {f += $2} $1 == "count:" {c += $2} END {print (f + c) * 4 + pools * 16}' /proc/zoneinfo
}
# Run a command as user nobody.
as_nobody() { su -s /bin/sh -c "$*" nobody; }

# apitest_both TAG CASE...: nsvm-apitest's CASEs on /dev/nsvm, then on
# /dev/kvm (kvm_amd) in the same boot (output in /tmp/DEV.TAG), the kernel
# log clean on each, then one case per CASE that must pass on both.
apitest_both() {
    _tag=$1; shift
    for dev in nsvm kvm; do
        load_dev $dev
        mark_log
        : > /tmp/$dev.$_tag
        for c in "$@"; do
            timeout 60 nsvm-apitest --device /dev/$dev --guests /guests $c > /tmp/case.out 2>&1 || echo "(exit status $? for $c)" >> /tmp/case.out
            cat /tmp/case.out >> /tmp/$dev.$_tag
        done
        sed "s/^/  [$dev] /" /tmp/$dev.$_tag
        case_ "the kernel log stays clean on /dev/$dev"
        expect_clean_log
        verdict
        unload_dev $dev
    done
    for c in "$@"; do
        case_ "$c: the same result on nsvm and kvm_amd"
        expect_line /tmp/kvm.$_tag "^PASS: $c$"
        expect_line /tmp/nsvm.$_tag "^PASS: $c$"
        verdict
    done
}
# A kvm_amd reference run on the test VM's second CPU only: kvm_amd has no
# defence against QEMU's MTTCG race on the first CPU's VMRUN/#VMEXIT state
# (docs/architecture.md, "Host state in a VMCB"); in session 16 it reset the
# whole test VM during kvm_amd's fuzz_mt (l0) and made kvm_amd's ELF boot of
# the test kernel triple-fault after 259 exits (linux).
KVM_REF_PIN="taskset -c 1"
