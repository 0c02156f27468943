#!/bin/sh
# The qemu suite (not in `make test`: `make qemu-test-qemu`): QEMU 10 itself,
# the host's binary copied into this initramfs (NSVM_WITH_QEMU=1), boots the
# test kernel as a guest with -smp 2, with -accel kvm,kernel-irqchip=split
# and with the full in-kernel irqchip: on kvm_amd (the reference, its PIT
# left out, below), then on nsvm through a /dev/kvm node with nsvm's
# major:minor (DESIGN.md section 5) with QEMU's plain default -accel kvm
# (full irqchip and in-kernel PIT): on both, the inner kernel must reach
# its init with both CPUs online (NSVM-INNER-UP cpus=0-1), the LAPIC timer
# having ticked on both and IPIs arrived (NSVM-INNER-IRQ); each case
# records its wall time. Then, on each, QEMU saves a running guest with
# migrate (dirty logging, migrate_case).
. /tests/lib.sh

# The inner QEMU runs on the test VM's second CPU only, on both devices: the
# QEMU MTTCG race of docs/architecture.md ("Host state in a VMCB") corrupts
# the VMRUN/#VMEXIT state of the test VM's first CPU only, so with every
# VMRUN (nsvm's or kvm_amd's) on CPU 1 it cannot hit these boots. Measured
# with `make qemu-stress`: unpinned, 2 of 24 nsvm boots failed (one host-state
# stop, one inner oops at RIP 0); pinned, 25 of 25 came up.
PIN="taskset -c 1"

inner_qemu() {
    # $1: log file, $2: the -accel options and any more (default: QEMU's
    # own default, kernel-irqchip=on: the full in-kernel irqchip and PIT).
    # -nodefaults/-serial stdio: the guest's console on stdout.
    # shellcheck disable=SC2086
    timeout -s TERM 240 $PIN qemu-system-x86_64 -accel ${2:-kvm} -cpu host -smp 2 -m 256 \
        -nographic -nodefaults -serial stdio -no-reboot -L /usr/share/qemu \
        -kernel /qemu/bzImage -initrd /qemu/inner.cpio \
        -append "console=ttyS0 panic=-1 tsc_early_khz=$TSC_KHZ loglevel=4" > "$1" 2>&1
    echo $? > "$1.rc"
}

# One boot as a case: $1 device (kvm or nsvm), $2 log file, $3 -accel
# options. On nsvm the boot is retried (twice at most) when QEMU reports
# nsvm's host-state stop: QEMU's MTTCG race (docs/architecture.md, "host
# state after VMRUN"), where the test VM's CPU 0 can lose its own
# VMRUN/#VMEXIT state when CPU 1 executes FXRSTOR/XRSTOR; nsvm detects it
# and stops that vCPU with KVM_EXIT_INTERNAL_ERROR carrying "nsvmHOST"
# (0x6e73766d484f5354), which QEMU prints. Any other failure counts at once.
boot_case() {
    mark_log
    for attempt in 1 2 3; do
        t0=$(date +%s)
        inner_qemu "$2" "$3"
        t1=$(date +%s)
        [ "$1" = nsvm ] && grep -q "0x6e73766d484f5354" "$2" && [ $attempt -lt 3 ] || break
        echo "attempt $attempt hit the known QEMU TCG host-state race (nsvmHOST); booting again"
    done
    grep -q "NSVM-INNER-UP cpus=0-1" "$2" || {
        echo "QEMU on $1 said:"; grep -v '^\s*$' "$2" | head -n 60; }
    tail -n 5 "$2"
    expect_line "$2" "NSVM-INNER-UP cpus=0-1"
    # The LAPIC timer ticked on both CPUs and IPIs arrived (the inner init's
    # /proc/interrupts: LOC per CPU, CAL+RES).
    expect_line "$2" "NSVM-INNER-IRQ loc=[1-9][0-9]*,[1-9][0-9]* ipi=[1-9]"
    [ "$1" = nsvm ] && expect_clean_log
    verdict "$((t1 - t0)) s"
}

# mig_diag TAG PID: what the hypervisor (nsvm only) knows of QEMU PID's
# VM when its guest stopped reporting: counters and the vCPUs' state.
mig_diag() {
    echo "QEMU $2's threads (state, wait channel, kernel stack):"
    for t in /proc/$2/task/*; do
        echo "  $(cat $t/comm 2>/dev/null) $(sed 's/.*) \(.\).*/\1/' $t/stat 2>/dev/null) $(cat $t/wchan 2>/dev/null)"
        sed 's/^/    /' $t/stack 2>/dev/null | head -n 12
    done
    ls -l /proc/$2/fd 2>/dev/null | sed -n 's/.*-> /  fd -> /p' | sort | uniq -c
    [ "$1" = nsvm ] || return 0
    echo "nsvm's view of QEMU $2's VM:"
    nsvm stats --pid "$2" --all 2>&1 | head -n 120
    nsvm dump --pid "$2" 2>&1 | head -n 300
}

# migrate_case TAG: QEMU runs the guest (which keeps writing its memory:
# nsvm_stay) with its monitor on FIFOs, saves it with the monitor's
# `migrate file:` (RAM sent while the guest runs: dirty logging through
# KVM_GET_DIRTY_LOG / KVM_CLEAR_DIRTY_LOG, manual protection and
# INITIALLY_SET when offered), which must complete; then `quit`, and a new
# QEMU restores the saved state and the guest goes on.
# Sets MIG_PID to QEMU's pid while it runs (for nsvm stats) via MIG_HOOK.
migrate_case() {
    rm -f /tmp/mon.in /tmp/mon.out /tmp/mig-$1.bin
    mkfifo /tmp/mon.in /tmp/mon.out
    timeout -s TERM 400 $PIN qemu-system-x86_64 -accel kvm,kernel-irqchip=split -cpu host -smp 2 -m 256 \
        -nographic -nodefaults -serial stdio -no-reboot -L /usr/share/qemu \
        -chardev pipe,id=mon,path=/tmp/mon -mon chardev=mon,mode=readline \
        -kernel /qemu/bzImage -initrd /qemu/inner.cpio \
        -append "console=ttyS0 panic=-1 tsc_early_khz=$TSC_KHZ loglevel=4 nsvm_stay" > /tmp/mig-$1.log 2>&1 &
    MIG_PID=$!
    cat /tmp/mon.out > /tmp/mon-$1.log &
    catpid=$!
    n=0
    while [ $n -lt 240 ] && ! grep -q NSVM-INNER-STAY /tmp/mig-$1.log; do sleep 1; n=$((n + 1)); done
    grep -q NSVM-INNER-STAY /tmp/mig-$1.log || {
        echo "QEMU on $1 said (no NSVM-INNER-STAY):"; tail -n 40 /tmp/mig-$1.log; mig_diag $1 $MIG_PID; }
    expect_line /tmp/mig-$1.log "NSVM-INNER-STAY"
    # The save starts once the guest writes its memory: after its first
    # report (2000 writes, 2 to 4 s here). A guest that never reports is a
    # failure of its own, printed with what QEMU and nsvm show of it.
    n=0
    while [ $n -lt 60 ] && ! grep -q NSVM-INNER-TICK /tmp/mig-$1.log; do sleep 1; n=$((n + 1)); done
    grep -q NSVM-INNER-TICK /tmp/mig-$1.log || {
        echo "the guest on $1 reported no count 60 s after NSVM-INNER-STAY:"; tail -n 20 /tmp/mig-$1.log; mig_diag $1 $MIG_PID; }
    expect_line /tmp/mig-$1.log "NSVM-INNER-TICK"
    echo "migrate file:/tmp/mig-$1.bin" > /tmp/mon.in
    n=0
    while [ $n -lt 120 ] && ! grep -q "[Ss]tatus:[[:space:]]*\(completed\|failed\)" /tmp/mon-$1.log; do
        sleep 2; n=$((n + 1)); echo "info migrate" > /tmp/mon.in
    done
    [ -n "$MIG_HOOK" ] && $MIG_HOOK
    echo "quit" > /tmp/mon.in
    wait $MIG_PID; echo "QEMU exit status $?"
    kill $catpid 2>/dev/null
    grep "[Ss]tatus:" /tmp/mon-$1.log | tail -n 2
    expect_line /tmp/mon-$1.log "[Ss]tatus:[[:space:]]*completed"
    sz=$(wc -c < /tmp/mig-$1.bin 2>/dev/null || echo 0)
    echo "saved $sz bytes"
    [ "$sz" -gt 1000000 ] || wrong_ "the saved state has $sz bytes"
    # Restore: a new QEMU takes the state (-incoming file:) and the guest
    # goes on where it was saved: its counter's next report is above the
    # last one before the save, and it does not boot again.
    last=$(sed -n 's/.*NSVM-INNER-TICK \([0-9]*\).*/\1/p' /tmp/mig-$1.log | tail -n 1)
    timeout -s TERM 300 $PIN qemu-system-x86_64 -accel kvm,kernel-irqchip=split -cpu host -smp 2 -m 256 \
        -nographic -nodefaults -serial stdio -no-reboot -L /usr/share/qemu \
        -kernel /qemu/bzImage -initrd /qemu/inner.cpio \
        -append "console=ttyS0 panic=-1 tsc_early_khz=$TSC_KHZ loglevel=4 nsvm_stay" \
        -incoming "file:/tmp/mig-$1.bin" > /tmp/res-$1.log 2>&1 &
    rpid=$!
    n=0 next=""
    while [ $n -lt 240 ] && [ -z "$next" ] && kill -0 $rpid 2>/dev/null; do
        sleep 1; n=$((n + 1))
        next=$(sed -n 's/.*NSVM-INNER-TICK \([0-9]*\).*/\1/p' /tmp/res-$1.log | head -n 1)
    done
    [ -z "$next" ] && { echo "the restored guest said:"; tail -n 20 /tmp/res-$1.log; mig_diag $1 $rpid; }
    kill $rpid 2>/dev/null; wait $rpid
    echo "counter: last reported before the save ${last:-none}, first after the restore ${next:-none} (${n} s)"
    [ -n "$next" ] && [ "$next" -gt "${last:-0}" ] || wrong_ "the restored guest did not go on (last ${last:-none}, next ${next:-none})"
    ! grep -q NSVM-INNER-UP /tmp/res-$1.log || wrong_ "the restored guest booted again"
    rm -f /tmp/mig-$1.bin
}

case_ "QEMU boots the test kernel on kvm_amd (split irqchip, 2 vCPUs)"
insmod $MODDIR/irqbypass.ko; insmod $MODDIR/kvm.ko
if insmod $MODDIR/kvm-amd.ko nested=1; then
    boot_case kvm /tmp/qemu-kvm.log kvm,kernel-irqchip=split
    # kvm_amd's reference for the full irqchip leaves its in-kernel PIT
    # out: with it (QEMU's plain default) the whole test VM went idle and
    # stopped (no timer fired, the inner QEMU's 240 s timeout neither) in
    # the one run tried, 2026-12-01; not investigated (docs/architecture.md).
    case_ "QEMU boots the test kernel on kvm_amd with the full irqchip (kernel-irqchip=on, pit=off, 2 vCPUs)"
    boot_case kvm /tmp/qemu-kvm-full.log "kvm,kernel-irqchip=on -machine pit=off"
else
    fail "kvm_amd did not load"
fi
if [ -e /dev/kvm ]; then
    case_ "QEMU saves a running guest with migrate and restores it on kvm_amd (dirty logging)"
    MIG_HOOK= migrate_case kvm
    verdict
fi
rmmod kvm_amd 2>/dev/null; rmmod kvm 2>/dev/null; rmmod irqbypass 2>/dev/null

case_ "QEMU boots the test kernel on nsvm through /dev/kvm (split irqchip, 2 vCPUs)"
if load_nsvm; then
    rm -f /dev/kvm
    mknod /dev/kvm c $(tr ':' ' ' < /sys/class/misc/nsvm/dev)
    boot_case nsvm /tmp/qemu-nsvm.log kvm,kernel-irqchip=split
    case_ "QEMU boots the test kernel on nsvm with its default -accel kvm (full irqchip, in-kernel PIT, 2 vCPUs)"
    boot_case nsvm /tmp/qemu-nsvm-full.log kvm
    case_ "QEMU saves a running guest with migrate and restores it on nsvm (dirty logging: vm.dirty_pages_logged > 0)"
    mark_log
    mig_stats() { nsvm stats --pid $MIG_PID --all > /tmp/mig-stats.txt 2>&1; }
    MIG_HOOK=mig_stats migrate_case nsvm
    logged=$(sed -n "/^vm /,/^[^ ]/p" /tmp/mig-stats.txt | sed -n "s/^  dirty_pages_logged //p" | head -n 1)
    echo "vm.dirty_pages_logged: ${logged:-missing}"
    [ "${logged:-0}" -gt 0 ] 2>/dev/null || wrong_ "vm.dirty_pages_logged is '${logged:-missing}' after the migration"
    expect_clean_log
    verdict
    rm -f /dev/kvm
    unload_nsvm
else
    fail "nsvm did not load"
fi
finish
