#!/bin/sh
# The qemu suite (not in `make test`: `make qemu-test-qemu`): QEMU 10 itself,
# the host's binary copied into this initramfs (NSVM_WITH_QEMU=1), boots the
# test kernel as a guest with -accel kvm,kernel-irqchip=split -smp 2 on
# kvm_amd (the reference: both CPUs must come up), then on nsvm through a
# /dev/kvm node with nsvm's major:minor (DESIGN.md section 5). nsvm does not
# boot a QEMU guest yet: the case records how far QEMU gets and requires
# that it gets at least as far as this tree allows, i.e. past every
# capability nsvm offers, to the first one it lacks (NEXT_MISSING below;
# update it when the in-kernel LAPIC lands).
. /tests/lib.sh

# The first thing QEMU 10 asks for that nsvm does not have: KVM_CAP_MP_STATE,
# the third of kvm_arch_required_capabilities (target/i386/kvm/kvm.c), which
# comes with the in-kernel LAPIC (branch lapic), as do SIGNAL_MSI and
# IRQ_ROUTING after it; every other required capability is answered
# (checked by answering those three in a throwaway build: QEMU then passed
# kvm_init and kvm_arch_init and stopped at "KVM does not support userspace
# APIC", because with KVM_CAP_IRQCHIP 0 kvm_irqchip_create skips the
# irqchip; next it needs KVM_CAP_IRQCHIP, KVM_CAP_IRQFD and
# KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP), the LAPIC's too).
NEXT_MISSING="kvm does not support KVM_CAP_MP_STATE"

inner_qemu() {
    # $1: log file. -nodefaults/-serial stdio: the guest's console on stdout.
    timeout -s TERM 240 qemu-system-x86_64 -accel kvm,kernel-irqchip=split -cpu host -smp 2 -m 256 \
        -nographic -nodefaults -serial stdio -no-reboot -L /usr/share/qemu \
        -kernel /qemu/bzImage -initrd /qemu/inner.cpio \
        -append "console=ttyS0 panic=-1 tsc_early_khz=2000000 loglevel=4" > "$1" 2>&1
    echo $? > "$1.rc"
}

case_ "QEMU boots the test kernel on kvm_amd (split irqchip, 2 vCPUs)"
insmod $MODDIR/irqbypass.ko; insmod $MODDIR/kvm.ko
if insmod $MODDIR/kvm-amd.ko nested=1; then
    t0=$(date +%s)
    inner_qemu /tmp/qemu-kvm.log
    t1=$(date +%s)
    tail -n 5 /tmp/qemu-kvm.log
    expect_line /tmp/qemu-kvm.log "NSVM-INNER-UP cpus=0-1"
    verdict "$((t1 - t0)) s"
else
    fail "kvm_amd did not load"
fi
rmmod kvm_amd 2>/dev/null; rmmod kvm 2>/dev/null; rmmod irqbypass 2>/dev/null

case_ "QEMU on nsvm through /dev/kvm gets to the next missing piece"
if load_nsvm; then
    rm -f /dev/kvm
    mknod /dev/kvm c $(tr ':' ' ' < /sys/class/misc/nsvm/dev)
    inner_qemu /tmp/qemu-nsvm.log
    echo "QEMU on nsvm said:"; cat /tmp/qemu-nsvm.log | tail -n 8
    expect_line /tmp/qemu-nsvm.log "$NEXT_MISSING"
    rm -f /dev/kvm
    unload_nsvm
    verdict "$(grep -m1 'kvm' /tmp/qemu-nsvm.log)"
else
    fail "nsvm did not load"
fi
finish
