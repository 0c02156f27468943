# irqchip suite: the full in-kernel irqchip (KVM_CREATE_IRQCHIP: two 8259A
# PICs, the I/O APIC and the local APICs; nsvm-apitest irqchip_* cases,
# tests/apitest/src/irqchip.rs, payload irqchip16.bin) on /dev/nsvm and
# then on /dev/kvm (kvm_amd) in the same boot; every case must pass on
# both, and the kernel log must stay clean.
. /tests/lib.sh
G=/guests
CASES="irqchip_errnos irqchip_pic irqchip_ioapic"

for dev in nsvm kvm; do
    load_dev $dev
    mark_log
    : > /tmp/$dev.irqchip
    for c in $CASES; do
        timeout 60 nsvm-apitest --device /dev/$dev --guests $G $c > /tmp/case.out 2>&1 || echo "(exit status $? for $c)" >> /tmp/case.out
        cat /tmp/case.out >> /tmp/$dev.irqchip
    done
    sed "s/^/  [$dev] /" /tmp/$dev.irqchip
    case_ "the kernel log stays clean on /dev/$dev"
    expect_clean_log
    verdict
    unload_dev $dev
done

for c in $CASES; do
    case_ "$c: the same result on nsvm and kvm_amd"
    expect_line /tmp/kvm.irqchip "^PASS: $c$"
    expect_line /tmp/nsvm.irqchip "^PASS: $c$"
    verdict
done
finish
