#!/bin/sh
# The qemu suite (not in `make test`: `make qemu-test-qemu`): QEMU 10 itself,
# the host's binary copied into this initramfs (NSVM_WITH_QEMU=1), boots the
# test kernel as a guest with -accel kvm,kernel-irqchip=split -smp 2 on
# kvm_amd (the reference), then on nsvm through a /dev/kvm node with nsvm's
# major:minor (DESIGN.md section 5): on both, the inner kernel must reach
# its init with both CPUs online (NSVM-INNER-UP cpus=0-1); each case
# records its wall time.
. /tests/lib.sh

inner_qemu() {
    # $1: log file. -nodefaults/-serial stdio: the guest's console on stdout.
    timeout -s TERM 240 qemu-system-x86_64 -accel kvm,kernel-irqchip=split -cpu host -smp 2 -m 256 \
        -nographic -nodefaults -serial stdio -no-reboot -L /usr/share/qemu \
        -kernel /qemu/bzImage -initrd /qemu/inner.cpio \
        -append "console=ttyS0 panic=-1 tsc_early_khz=2000000 loglevel=4" > "$1" 2>&1
    echo $? > "$1.rc"
}

# migrate_case TAG: QEMU runs the guest (which keeps writing its memory:
# nsvm_stay) with its monitor on FIFOs, saves it with the monitor's
# `migrate file:` (RAM sent while the guest runs: dirty logging through
# KVM_GET_DIRTY_LOG / KVM_CLEAR_DIRTY_LOG, manual protection and
# INITIALLY_SET when offered), which must complete; then `cont` and `quit`.
# Sets MIG_PID to QEMU's pid while it runs (for nsvm stats) via MIG_HOOK.
migrate_case() {
    rm -f /tmp/mon.in /tmp/mon.out /tmp/mig-$1.bin
    mkfifo /tmp/mon.in /tmp/mon.out
    timeout -s TERM 400 qemu-system-x86_64 -accel kvm,kernel-irqchip=split -cpu host -smp 2 -m 256 \
        -nographic -nodefaults -serial stdio -no-reboot -L /usr/share/qemu \
        -chardev pipe,id=mon,path=/tmp/mon -mon chardev=mon,mode=readline \
        -kernel /qemu/bzImage -initrd /qemu/inner.cpio \
        -append "console=ttyS0 panic=-1 tsc_early_khz=2000000 loglevel=4 nsvm_stay" > /tmp/mig-$1.log 2>&1 &
    MIG_PID=$!
    cat /tmp/mon.out > /tmp/mon-$1.log &
    catpid=$!
    n=0
    while [ $n -lt 240 ] && ! grep -q NSVM-INNER-STAY /tmp/mig-$1.log; do sleep 1; n=$((n + 1)); done
    expect_line /tmp/mig-$1.log "NSVM-INNER-STAY"
    echo "migrate file:/tmp/mig-$1.bin" > /tmp/mon.in
    n=0
    while [ $n -lt 120 ] && ! grep -q "[Ss]tatus:[[:space:]]*\(completed\|failed\)" /tmp/mon-$1.log; do
        sleep 2; n=$((n + 1)); echo "info migrate" > /tmp/mon.in
    done
    [ -n "$MIG_HOOK" ] && $MIG_HOOK
    echo "cont" > /tmp/mon.in
    sleep 2
    echo "quit" > /tmp/mon.in
    wait $MIG_PID; echo "QEMU exit status $?"
    kill $catpid 2>/dev/null
    grep "[Ss]tatus:" /tmp/mon-$1.log | tail -n 2
    expect_line /tmp/mon-$1.log "[Ss]tatus:[[:space:]]*completed"
    sz=$(wc -c < /tmp/mig-$1.bin 2>/dev/null || echo 0)
    echo "saved $sz bytes"
    [ "$sz" -gt 1000000 ] || wrong_ "the saved state has $sz bytes"
    rm -f /tmp/mig-$1.bin
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
if [ -e /dev/kvm ]; then
    case_ "QEMU saves a running guest with migrate on kvm_amd (dirty logging)"
    MIG_HOOK= migrate_case kvm
    verdict
fi
rmmod kvm_amd 2>/dev/null; rmmod kvm 2>/dev/null; rmmod irqbypass 2>/dev/null

case_ "QEMU boots the test kernel on nsvm through /dev/kvm (split irqchip, 2 vCPUs)"
if load_nsvm; then
    rm -f /dev/kvm
    mknod /dev/kvm c $(tr ':' ' ' < /sys/class/misc/nsvm/dev)
    mark_log
    # QEMU's MTTCG race (docs/architecture.md, "host state after VMRUN"):
    # the test VM's CPU 0 can lose its own VMRUN/#VMEXIT state when CPU 1
    # executes FXRSTOR/XRSTOR; nsvm detects it and stops that vCPU with
    # KVM_EXIT_INTERNAL_ERROR carrying "nsvmHOST" (0x6e73766d484f5354),
    # which QEMU prints. That boot is retried (twice at most) and the retry
    # said; any other failure counts at once.
    for attempt in 1 2 3; do
        t0=$(date +%s)
        inner_qemu /tmp/qemu-nsvm.log
        t1=$(date +%s)
        grep -q "0x6e73766d484f5354" /tmp/qemu-nsvm.log && [ $attempt -lt 3 ] || break
        echo "attempt $attempt hit the known QEMU TCG host-state race (nsvmHOST); booting again"
    done
    grep -q "NSVM-INNER-UP cpus=0-1" /tmp/qemu-nsvm.log || {
        echo "QEMU on nsvm said:"; grep -v '^\s*$' /tmp/qemu-nsvm.log | head -n 60; }
    tail -n 5 /tmp/qemu-nsvm.log
    expect_line /tmp/qemu-nsvm.log "NSVM-INNER-UP cpus=0-1"
    expect_clean_log
    verdict "$((t1 - t0)) s"
    case_ "QEMU saves a running guest with migrate on nsvm (dirty logging: vm.dirty_pages_logged > 0)"
    mark_log
    mig_stats() { nsvm stats --pid $MIG_PID --all > /tmp/mig-stats.txt 2>&1; }
    MIG_HOOK=mig_stats migrate_case nsvm
    logged=$(sed -n "/^vm /,/^[^ ]/p" /tmp/mig-stats.txt | sed -n "s/^  dirty_pages_logged //p" | head -n 1)
    echo "vm.dirty_pages_logged: ${logged:-missing}"
    [ "${logged:-0}" -gt 0 ] 2>/dev/null || wrong_ "vm.dirty_pages_logged is '${logged:-missing}' after the migration"
    expect_clean_log
    verdict
    case_ "QEMU's default kernel-irqchip=on on nsvm stops at KVM_CREATE_IRQCHIP (ENODEV, docs/uapi.md)"
    timeout -s TERM 60 qemu-system-x86_64 -accel kvm -cpu host -m 256 -nographic -nodefaults \
        -serial stdio -no-reboot -L /usr/share/qemu -kernel /qemu/bzImage > /tmp/qemu-nsvm-full.log 2>&1
    cat /tmp/qemu-nsvm-full.log
    expect_line /tmp/qemu-nsvm-full.log "Create kernel irqchip failed: No such device"
    rm -f /dev/kvm
    unload_nsvm
    verdict
else
    fail "nsvm did not load"
fi
finish
