# KVM's x86 selftests of the 7.2 source, unmodified (issue 11 item 3;
# docs/selftests.md): each program of /selftests/LIST (tests/selftests/list,
# built by qemu-scripts/build-selftests.sh) runs on kvm_amd (nested=1), then
# on nsvm through a /dev/kvm node with nsvm's major:minor. For the nsvm half
# kvm.ko and kvm_amd stay loaded, idle: the selftest library reads
# /sys/module/kvm/parameters and some tests /sys/module/kvm_amd/parameters
# (avic, lbrv, npt), which exist only while the modules are loaded. kvm.ko
# takes enable_virt_at_load=0 (7.2): kvm_amd then enables SVM only for its
# first VM (kvm_create_vm -> x86_virt_get_ref), never at load, and nobody
# creates one (its /dev/kvm node is replaced), so EFER.SVME and VM_HSAVE_PA
# stay nsvm's; the case checks them through /dev/cpu/N/msr before nsvm
# loads (SVME clear), once it has (SVME set, its HSAVE page) and after the
# tests (unchanged). A table
# `test | kvm_amd | nsvm` follows (PASS, FAIL, SKIP with the reason; seconds
# of wall time); each test is a case that fails when it passes on kvm_amd
# but not on nsvm (a test that fails or skips on kvm_amd under TCG cannot
# judge nsvm: reported, not a case failure). The kernel log must stay clean
# on both devices.
. /tests/lib.sh
D=/selftests
T=${SELFTEST_TIMEOUT:-90}
R=/tmp/st
mkdir -p $R
TESTS=$(grep -v '^\s*\(#\|$\)' $D/LIST | awk '{print $1}')
# Only the named tests (nsvm_selftests=a,b on the kernel command line).
only=$(sed -n 's/.*nsvm_selftests=\([^ ]*\).*/\1/p' /proc/cmdline | tr , ' ')
[ -n "$only" ] && TESTS=$only

. /tests/selftestlib.sh

run_all() {
    dev=$1
    mark_log
    for t in $TESTS; do
        args=$(awk -v t="$t" '$1 == t {$1 = ""; print}' $D/LIST)
        s=$(date +%s)
        ( cd /tmp && timeout -s KILL $T $D/$t $args ) > $R/$dev.$t.out 2>&1
        rc=$?
        e=$(( $(date +%s) - s ))
        o=$(outcome $R/$dev.$t.out $rc)
        echo "$o" > $R/$dev.$t.res
        echo $e > $R/$dev.$t.sec
        echo "[$dev] $t: $o (${e}s)"
    done
    case_ "the kernel log stays clean while the selftests run on $dev"
    expect_clean_log
    verdict
}

case_ "load kvm_amd (nested=1)"
insmod $MODDIR/irqbypass.ko; insmod $MODDIR/kvm.ko
check "loaded" insmod $MODDIR/kvm-amd.ko nested=1
run_all kvm_amd
rmmod kvm_amd; rmmod kvm

# rdmsr CPU MSR: the MSR's value in hex (16 digits), through the msr driver.
rdmsr() {
    [ -e /dev/cpu/$1/msr ] || { mkdir -p /dev/cpu/$1; mknod /dev/cpu/$1/msr c 202 $1; }
    dd if=/dev/cpu/$1/msr bs=8 count=1 iflag=skip_bytes skip=$(($2)) 2>/dev/null | od -A n -t x8 | tr -d ' \n'
}
# The SVM ownership state of every CPU: "cpu:EFER.SVME:VM_HSAVE_PA ...".
svm_state() {
    for c in $(seq 0 $(($(grep -c ^processor /proc/cpuinfo) - 1))); do
        e=$(rdmsr $c 0xc0000080) h=$(rdmsr $c 0xc0010117)
        printf '%s:%s:%s ' $c $(( (0x${e:-0} >> 12) & 1 )) ${h:-?}
    done
}

case_ "kvm_amd loaded idle (kvm.ko enable_virt_at_load=0, kvm_amd nested=1) leaves SVM off, then nsvm loads beside it; /dev/kvm = nsvm's node"
insmod $MODDIR/kvm.ko enable_virt_at_load=0
expect "kvm_amd loaded" insmod $MODDIR/kvm-amd.ko nested=1
expect_eq "enable_virt_at_load" N "$(cat /sys/module/kvm/parameters/enable_virt_at_load 2>/dev/null)"
idle=$(svm_state)
echo "SVM state with kvm_amd idle: $idle"
expect "the MSRs readable ($idle)" eval '! echo "$idle" | grep -q ":?"'
expect "EFER.SVME clear on every CPU with kvm_amd idle ($idle)" eval '! echo "$idle" | grep -q ":1:"'
if load_nsvm; then
    ours=$(svm_state)
    echo "SVM state with nsvm loaded: $ours"
    expect "EFER.SVME set on every CPU once nsvm loaded ($ours)" eval '! echo "$ours" | grep -q ":0:"'
    rm -f /dev/kvm
    mknod /dev/kvm c $(tr ':' ' ' < /sys/class/misc/nsvm/dev)
    expect "kvm.ko loaded" loaded kvm
    expect "kvm_amd loaded" loaded kvm_amd
    expect "/sys/module/kvm_amd/parameters/avic readable" test -r /sys/module/kvm_amd/parameters/avic
    verdict
    run_all nsvm
    case_ "EFER.SVME and VM_HSAVE_PA stayed nsvm's while the selftests ran beside the idle kvm_amd"
    after=$(svm_state)
    echo "SVM state after the nsvm half: $after"
    expect_eq "SVM state" "$ours" "$after"
    verdict
    rm -f /dev/kvm
    unload_nsvm
else
    fail "nsvm did not load beside the idle kvm_amd"
fi
rmmod kvm_amd; rmmod kvm; rmmod irqbypass

# The failures' output on nsvm (the first lines), for the log.
for t in $TESTS; do
    case $(cat $R/nsvm.$t.res 2>/dev/null) in
        PASS*|SKIP*) ;;
        *) echo "--- output of $t on nsvm:"; head -25 $R/nsvm.$t.out;;
    esac
done

echo "=== KVM selftests: test | kvm_amd | nsvm (seconds kvm_amd/nsvm) ==="
for t in $TESTS; do
    echo "SELFTEST | $t | $(cat $R/kvm_amd.$t.res 2>/dev/null) | $(cat $R/nsvm.$t.res 2>/dev/null) | $(cat $R/kvm_amd.$t.sec 2>/dev/null)/$(cat $R/nsvm.$t.sec 2>/dev/null)"
done

# Known differences (tests/selftests/known-nsvm, each explained in
# docs/selftests.md): an "open" one passes its case while the test still
# does not pass on nsvm (and says so, with the reason); a "timing" one
# passes either way.
known() { awk -v t="$1" '$1 == t {print $2}' $D/KNOWN; }
why() { awk -v t="$1" '$1 == t {$1 = ""; $2 = ""; sub(/^ +/, ""); print}' $D/KNOWN; }
for t in $TESTS; do
    case_ "selftest $t: passes on nsvm where it passes on kvm_amd"
    k=$(cat $R/kvm_amd.$t.res 2>/dev/null) n=$(cat $R/nsvm.$t.res 2>/dev/null)
    kn=$(known $t)
    case $k in
        PASS*) case $n in
                   PASS*) if [ "$kn" = open ]; then pass "kvm_amd: $k; nsvm: $n; NOW PASSES: drop it from tests/selftests/known-nsvm"
                          else pass "kvm_amd: $k; nsvm: $n"; fi;;
                   *) case $kn in
                          open|timing) pass "KNOWN ($kn: $(why $t)): kvm_amd: $k; nsvm: $n";;
                          *) fail "kvm_amd: $k; nsvm: $n";;
                      esac;;
               esac;;
        *) pass "not judged: kvm_amd: $k; nsvm: $n";;
    esac
done
echo "selftests passing on kvm_amd: $(grep -l '^PASS' $R/kvm_amd.*.res 2>/dev/null | wc -l); of those passing on nsvm too: $(for t in $TESTS; do grep -q '^PASS' $R/kvm_amd.$t.res 2>/dev/null && grep -q '^PASS' $R/nsvm.$t.res 2>/dev/null && echo $t; done | wc -l)"
finish
