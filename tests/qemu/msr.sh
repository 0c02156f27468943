# msr suite: MSR exits to userspace and the MSR filter
# (KVM_CAP_X86_USER_SPACE_MSR, KVM_X86_SET_MSR_FILTER), the feature MSRs on
# the system fd, IA32_MISC_ENABLE and MONITOR/MWAIT with KVM's quirks
# (nsvm-apitest msr_* cases, tests/apitest/src/msr.rs) on /dev/nsvm and
# then on /dev/kvm (kvm_amd) in the same boot; every case must pass on both,
# and the kernel log must stay clean.
. /tests/lib.sh
G=/guests
CASES="msr_filter_errnos msr_user_exit msr_features msr_mwait_quirks"

for dev in nsvm kvm; do
    load_dev $dev
    mark_log
    : > /tmp/$dev.msr
    for c in $CASES; do
        timeout 60 nsvm-apitest --device /dev/$dev --guests $G $c > /tmp/case.out 2>&1 || echo "(exit status $? for $c)" >> /tmp/case.out
        cat /tmp/case.out >> /tmp/$dev.msr
    done
    sed "s/^/  [$dev] /" /tmp/$dev.msr
    case_ "the kernel log stays clean on /dev/$dev"
    expect_clean_log
    verdict
    unload_dev $dev
done

for c in $CASES; do
    case_ "$c: the same result on nsvm and kvm_amd"
    expect_line /tmp/kvm.msr "^PASS: $c$"
    expect_line /tmp/nsvm.msr "^PASS: $c$"
    verdict
done
finish
