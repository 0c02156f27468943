# PIT suite: the in-kernel PIT (i8254; nsvm-apitest pit_* cases,
# tests/apitest/src/pit.rs, payload pit16.bin) on /dev/nsvm and then on
# /dev/kvm (kvm_amd, with KVM_CREATE_IRQCHIP first as KVM requires) in the
# same boot; every case must pass on both, the kernel log must stay clean
# and the module must unload after VMs died with their PIT timers running.
# Until nsvm has the full irqchip, its PIT exists only with the module
# parameter pit_without_irqchip=1: pit_needs_irqchip runs without it (KVM's
# ENOENT), the other cases with it.
. /tests/lib.sh
G=/guests
FIRST="pit_needs_irqchip"
# nsvm only: its pit_irq0 statistic shows channel 0's timer and reinjection.
NSVM_ONLY="pit_irq0_timer"
CASES="pit_caps pit_errnos pit_mode2 pit_mode0 pit_latch pit_gate2 pit_speaker_port pit_bcd pit_set_count pit_state pit_teardown"

for dev in nsvm kvm; do
    if [ $dev = nsvm ]; then
        case_ "load nsvm"
        check "loaded" load_nsvm
    else
        case_ "load kvm_amd (reference)"
        insmod $MODDIR/irqbypass.ko; insmod $MODDIR/kvm.ko
        check "kvm_amd loaded" insmod $MODDIR/kvm-amd.ko
    fi
    mark_log
    : > /tmp/$dev.pit
    timeout 60 nsvm-apitest --device /dev/$dev --guests $G $FIRST >> /tmp/$dev.pit 2>&1
    if [ $dev = nsvm ]; then
        case_ "nsvm reloaded with pit_without_irqchip=1 (no full irqchip yet)"
        unload_nsvm
        check "reloaded" load_nsvm pit_without_irqchip=1
    fi
    for c in $CASES; do
        timeout 60 nsvm-apitest --device /dev/$dev --guests $G $c >> /tmp/$dev.pit 2>&1 || echo "(exit status $? for $c)" >> /tmp/$dev.pit
    done
    if [ $dev = nsvm ]; then
        for c in $NSVM_ONLY; do
            timeout 60 nsvm-apitest --device /dev/$dev --guests $G $c >> /tmp/$dev.pit 2>&1 || echo "(exit status $? for $c)" >> /tmp/$dev.pit
        done
    fi
    sed "s/^/  [$dev] /" /tmp/$dev.pit
    case_ "the kernel log stays clean on /dev/$dev"
    expect_clean_log
    verdict
    if [ $dev = nsvm ]; then
        case_ "nsvm unloads after VMs died with PIT timers running"
        check "unloaded" unload_nsvm
    else
        rmmod kvm_amd; rmmod kvm; rmmod irqbypass
    fi
done

for c in $FIRST $CASES; do
    case_ "$c: the same result on nsvm and kvm_amd"
    expect_line /tmp/kvm.pit "^PASS: $c$"
    expect_line /tmp/nsvm.pit "^PASS: $c$"
    verdict
done
for c in $NSVM_ONLY; do
    case_ "$c (nsvm only)"
    expect_line /tmp/nsvm.pit "^PASS: $c$"
    verdict
done
finish
