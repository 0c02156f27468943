# Nested suite: L1 hypervisor payloads (tests/guests/l1_*.S, built on
# l1lib.S) run on /dev/nsvm and then on /dev/kvm with kvm_amd nested=1 in the
# same boot. Each payload prints one line per case, "case NAME: values";
# a case passes when the payload found the values the APM requires (no
# "FAIL(" on the line) and kvm_amd printed the very same line. A line tagged
# "[apm]" is one where kvm_amd is known to differ from the APM (documented in
# docs/nested.md): only nsvm's line is asserted, kvm_amd's is shown.
. /tests/lib.sh
G=/guests

NESTED="l1_smoke l1_npt l1_checks l1_vmload l1_gif l1_two_l2 l1_smp"
args_for() {
    case $1 in
        l1_npt) echo "--mem 8M";;
        l1_smp) echo "--vcpus 2";;
        *) echo "";;
    esac
}
run_all() {
    dev=$1; tag=$2
    for p in $NESTED; do
        timeout 300 nsvm run --device $dev --stats /tmp/$tag.$p.stats $(args_for $p) $G/$p.bin \
            > /tmp/$tag.$p.out 2> /tmp/$tag.$p.err
        echo $? > /tmp/$tag.$p.rc
    done
}

case_ "load nsvm"
check "loaded" load_nsvm
run_all /dev/nsvm nsvm
check "unloaded after the nested payloads" unload_nsvm
case_ "load kvm_amd nested=1 (reference)"
insmod $MODDIR/irqbypass.ko; insmod $MODDIR/kvm.ko
check "kvm_amd loaded" insmod $MODDIR/kvm-amd.ko nested=1
run_all /dev/kvm kvm
rmmod kvm_amd; rmmod kvm; rmmod irqbypass

for p in $NESTED; do
    case_ "$p: runs to the end on both (status 33)"
    cat /tmp/nsvm.$p.err
    # "info" lines are not cases: shown for diagnosis only.
    grep "^info " /tmp/nsvm.$p.out | sed 's/^/nsvm: /'
    grep "^info " /tmp/kvm.$p.out | sed 's/^/kvm_amd: /'
    # On kvm_amd a payload may fail (status 1) only on lines tagged [apm].
    krc=$(cat /tmp/kvm.$p.rc)
    if [ "$krc" = 1 ] && ! grep "FAIL(" /tmp/kvm.$p.out | grep -qv "\[apm\]" \
        && grep -q "FAIL(" /tmp/kvm.$p.out; then krc="33 (FAIL only on [apm] lines)"; fi
    [ "$(cat /tmp/nsvm.$p.rc)" = 33 ] && [ "${krc%% *}" = 33 ] && pass "kvm_amd: $krc" \
        || fail "status nsvm=$(cat /tmp/nsvm.$p.rc) kvm=$krc"
    n=0
    while IFS= read -r line; do
        case "$line" in "case "*) ;; *) continue;; esac
        n=$((n + 1))
        name=${line#case }; name=${name%%:*}
        case_ "$p: $name"
        k=$(grep "^case $name:" /tmp/kvm.$p.out)
        case "$line" in
            *"FAIL("*) fail "nsvm: $line";;
            *"[apm]"*) pass "$line; kvm_amd: $k";;
            *) if [ "$line" = "$k" ]; then pass "$line"; else fail "nsvm: $line; kvm_amd: $k"; fi;;
        esac
    done < /tmp/nsvm.$p.out
    case_ "$p: same cases on both"
    a=$(grep -c "^case " /tmp/nsvm.$p.out); b=$(grep -c "^case " /tmp/kvm.$p.out)
    [ "$n" -gt 0 ] && [ "$a" = "$b" ] && pass "$a cases" || fail "nsvm $a cases, kvm_amd $b"
done

case_ "l1_npt: per-level statistics (NPT02 fills and flushes, NPT12 faults reflected)"
grep -E "npt02|npt12|nested_vmruns|l2_exits" /tmp/nsvm.l1_npt.stats
# 5 faults in NPT12 (cases 2-5 and 8); flushes: the first VMRUN, three
# TLB_CONTROL resumes, the remap, five switches between the two L2s and the
# switch back for case 8.
grep -qx "vcpu0.npt12_faults 5" /tmp/nsvm.l1_npt.stats && grep -qx "vcpu0.npt02_flushes 11" /tmp/nsvm.l1_npt.stats \
  && [ "$(sed -n 's/^vcpu0.npt02_fills //p' /tmp/nsvm.l1_npt.stats)" -gt 10 ] && pass || fail "see the counters above"

case_ "kernel log has no warning, oops or BUG"
if dmesg | grep -E 'WARNING:|BUG:|Oops|Call Trace|general protection'; then fail "see above"; else pass; fi
finish
