# Dirty page logging suite: KVM_MEM_LOG_DIRTY_PAGES, KVM_GET_DIRTY_LOG,
# KVM_CLEAR_DIRTY_LOG and KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 (nsvm-apitest
# dirty_log_* cases, tests/apitest/src/dirty_log.rs) on /dev/nsvm and then
# on /dev/kvm (kvm_amd) in the same boot; every case must pass on both, and
# the kernel log must stay clean.
. /tests/lib.sh
CASES="dirty_log_basic dirty_log_flags dirty_log_errnos dirty_log_manual dirty_log_vcpus dirty_log_nested"

for dev in nsvm kvm; do
    load_dev $dev
    mark_log
    : > /tmp/$dev.dirty
    for c in $CASES; do
        # A case stopped by the known QEMU MTTCG host-state race (nsvm's
        # "VMCB back from VMRUN not written by its #VMEXIT", the vCPU ending
        # with KVM_EXIT_INTERNAL_ERROR; docs/architecture.md) is run again,
        # twice at most, as the other suites do.
        for attempt in 1 2 3; do
            n0=$(dmesg | grep -c "VMCB back from VMRUN")
            timeout 120 nsvm-apitest --device /dev/$dev --guests /guests $c > /tmp/case.out 2>&1 || echo "(exit status $? for $c)" >> /tmp/case.out
            n1=$(dmesg | grep -c "VMCB back from VMRUN")
            if grep -q "^PASS: $c$" /tmp/case.out || [ "$n1" = "$n0" ]; then break; fi
            echo "note: $c on /dev/$dev hit the known QEMU TCG host-state race (attempt $attempt); run again" | tee -a /tmp/$dev.dirty
        done
        cat /tmp/case.out >> /tmp/$dev.dirty
    done
    sed "s/^/  [$dev] /" /tmp/$dev.dirty
    case_ "the kernel log stays clean on /dev/$dev"
    expect_clean_log
    verdict
    unload_dev $dev
done

for c in $CASES; do
    case_ "$c: the same result on nsvm and kvm_amd"
    expect_line /tmp/kvm.dirty "^PASS: $c$"
    expect_line /tmp/nsvm.dirty "^PASS: $c$"
    verdict
done
finish
