# APIC suite: the in-kernel local APIC with the split irqchip (nsvm-apitest
# apic_* cases, tests/apitest/src/apic.rs, payload apic16.bin) on /dev/nsvm
# and then on /dev/kvm (kvm_amd, KVM_CAP_SPLIT_IRQCHIP enabled by the test
# program) in the same boot; every case must pass on both, and the kernel
# log must stay clean.
. /tests/lib.sh
G=/guests
CASES="apic_caps apic_self_ipi apic_timer_oneshot apic_timer_periodic apic_tsc_deadline apic_x2apic apic_nmi_ipi apic_get_set_lapic apic_no_eoi apic_init_sipi apic_msi apic_x2apic_api apic_ipi_modes apic_hlt_signal apic_injected_restore apic_irqfd apic_irq_line apic_boot_cpu apic_many_vcpus"

for dev in nsvm kvm; do
    load_dev $dev
    mark_log
    : > /tmp/$dev.apic
    # A case that times out is run once more, and the log says so: two
    # vCPUs under QEMU's multi-threaded TCG are exposed to its host-state
    # race (docs/architecture.md), which can leave a guest stuck; one
    # stuck run of a two-vCPU case was seen on each of nsvm and kvm_amd
    # in about 20 boots, none in 16 repeated runs.
    for c in $CASES; do
        timeout 60 nsvm-apitest --device /dev/$dev --guests $G $c > /tmp/case.out 2>&1; rc=$?
        if [ $rc = 124 ] || [ $rc = 143 ]; then
            echo "note: $c on /dev/$dev timed out; run again"
            timeout 60 nsvm-apitest --device /dev/$dev --guests $G $c > /tmp/case.out 2>&1 || echo "(exit status $? for $c)" >> /tmp/case.out
        fi
        cat /tmp/case.out >> /tmp/$dev.apic
    done
    sed "s/^/  [$dev] /" /tmp/$dev.apic
    case_ "the kernel log stays clean on /dev/$dev"
    expect_clean_log
    verdict
    unload_dev $dev
done

# The vCPU event log (docs/uapi.md "debugfs"): with event_log=2 a run of
# the one-shot timer case leaves, when its vCPU goes, the log in the kernel
# log: the timer's vector taken from the APIC, injected at VMRUN with IF = 1
# and ended by the guest's EOI, among #VMEXIT records.
case_ "event_log=2: the timer case's interrupts in the vCPU event log"
if load_nsvm event_log=2; then
    mark_log
    nsvm-apitest --device /dev/nsvm --guests $G apic_timer_oneshot > /tmp/case.out 2>&1 || echo "(apic_timer_oneshot failed)"
    new_log | grep "nsvm evlog vcpu0:" > /tmp/evlog.txt
    unload_nsvm
    sed -n '1,3p;$p' /tmp/evlog.txt
    grep -q "PASS: apic_timer_oneshot" /tmp/case.out || WRONG="$WRONG case"
    grep -q "timer expired" /tmp/evlog.txt || WRONG="$WRONG no-timer-record"
    grep -q "inject INTR 0x[0-9a-f]* at rip 0x[0-9a-f]* rflags 0x[0-9a-f]*[2367abef][0-9a-f][0-9a-f]\b" /tmp/evlog.txt || WRONG="$WRONG no-injection-with-IF"
    grep -q " eoi 0x" /tmp/evlog.txt || WRONG="$WRONG no-eoi"
    grep -q " exit 0x[0-9a-f]* at rip" /tmp/evlog.txt || WRONG="$WRONG no-exit-records"
    grep -q "IF=0 or shadow" /tmp/evlog.txt && WRONG="$WRONG suspect-injection"
    verdict
else
    fail "nsvm did not load with event_log=2"
fi

for c in $CASES; do
    case_ "$c: the same result on nsvm and kvm_amd"
    expect_line /tmp/kvm.apic "^PASS: $c$"
    expect_line /tmp/nsvm.apic "^PASS: $c$"
    verdict
done
finish
