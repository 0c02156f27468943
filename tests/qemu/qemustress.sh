#!/bin/sh
# The qemu boot under stress (not in `make test`: `make qemu-stress`,
# STRESS_N boots per configuration): QEMU boots the test kernel again and
# again, on nsvm (split irqchip, then the default full irqchip) and then on
# kvm_amd (split irqchip), to tell how often an inner boot fails on each. A
# failed boot prints the inner guest's console and the test VM's new kernel
# log lines; the closing table gives the counts per configuration.
. /tests/lib.sh
N=$(sed -n 's/.*nsvm_stress_n=\([0-9]*\).*/\1/p' /proc/cmdline)
N=${N:-10}
# nsvm_stress_pin=1: the inner QEMU runs on the test VM's CPU 1 only.
PIN=""
grep -q "nsvm_stress_pin=1" /proc/cmdline && PIN="taskset -c 1"
# nsvm_stress_hog=1: a busy loop on the test VM's CPU 1 competes with the
# inner QEMU (vCPU threads preempted at any point).
if grep -q "nsvm_stress_hog=1" /proc/cmdline; then
    taskset -c 1 sh -c 'while :; do :; done' &
fi

# one_boot LOG ACCEL: one inner boot; a QEMU still running after 60 s has
# its vCPUs' registers (QEMU's monitor), its threads' kernel stacks and
# nsvm's counters (twice, 2 s apart) printed, then it is stopped. SLOW=1
# then.
one_boot() {
    SLOW=0
    rm -f /tmp/smon.in /tmp/smon.out
    mkfifo /tmp/smon.in /tmp/smon.out
    # shellcheck disable=SC2086
    $PIN qemu-system-x86_64 -accel $2 -cpu host -smp 2 -m 256 \
        -nographic -nodefaults -serial stdio -no-reboot -L /usr/share/qemu \
        -chardev pipe,id=mon,path=/tmp/smon -mon chardev=mon,mode=readline \
        -kernel /qemu/bzImage -initrd /qemu/inner.cpio \
        -append "console=ttyS0 panic=-1 tsc_early_khz=$TSC_KHZ loglevel=4 nsvm_verbose" > "$1" 2>&1 &
    qpid=$!
    cat /tmp/smon.out > /tmp/smon.log &
    catpid=$!
    n=0
    while kill -0 $qpid 2>/dev/null && [ $n -lt 60 ]; do sleep 1; n=$((n + 1)); done
    if kill -0 $qpid 2>/dev/null; then
        SLOW=1
        {
            echo "--- still running after 60 s; its console:"
            grep -v '^\s*$' "$1" | tail -n 30
            echo "--- nsvm stats (then again 2 s later):"
            timeout 10 nsvm stats --pid $qpid 2>&1 | head -n 60
            sleep 2
            timeout 10 nsvm stats --pid $qpid 2>&1 | head -n 60
            echo "--- nsvm's debugfs (vCPUs in KVM_RUN: their mailbox and timer; with event_log=1 their last events):"
            for f in /sys/kernel/debug/nsvm/*/vcpu*; do [ -f "$f" ] && { echo "$f:"; timeout 5 cat "$f" | head -n 4; timeout 5 cat "$f" | sed -n '/^event log/,$p' | tail -n 120; }; done
            echo "--- threads:"
            for t in /proc/$qpid/task/*; do
                echo "$(cat $t/comm 2>/dev/null) wchan=$(cat $t/wchan 2>/dev/null) state=$(sed -n 's/^State:[[:space:]]*//p' $t/status 2>/dev/null)"
                cat $t/stack 2>/dev/null | head -n 12
            done
            # (A FIFO write blocks while nobody reads it: QEMU may be gone.)
            for c in "info registers -a" "info lapic 0" "info lapic 1"; do
                timeout 5 sh -c "echo '$c' > /tmp/smon.in"
            done
            sleep 5
            echo "--- QEMU's monitor:"
            cat /tmp/smon.log
        } > /tmp/slow.txt 2>&1
        kill $qpid 2>/dev/null
    fi
    wait $qpid
    kill $catpid 2>/dev/null
}

# nsvm_stress_only=TAG: only that configuration (nsvm-split, nsvm-full, kvm-split).
ONLY=$(sed -n 's/.*nsvm_stress_only=\([^ ]*\).*/\1/p' /proc/cmdline)

# stress TAG ACCEL: N boots, prints and records the failures.
stress() {
    [ -z "$ONLY" ] || [ "$ONLY" = "$1" ] || return 0
    ok=0 bad=0 slow=0 i=0
    while [ $i -lt "$N" ]; do
        i=$((i + 1))
        # Each boot's kernel log from empty (the event logs of event_log=2
        # would otherwise scroll the mark out of the ring).
        dmesg -c > /dev/null
        mark_log
        t0=$(date +%s)
        one_boot /tmp/stress.log "$2"
        t1=$(date +%s)
        # event_log=2: the TSC writes, kvmclock MSR writes and record updates of every boot.
        new_log | grep -E "nsvm evlog.*(kvmclock|tsc = )" | sed 's/^\[[^]]*\] //' | head -n 16
        if [ "$SLOW" = 1 ]; then
            slow=$((slow + 1)); echo "$1 boot $i: SLOW (stopped after 60 s)"
            cat /tmp/slow.txt
            echo "... the test VM's kernel log since the boot began:"
            new_log | tail -n 40
        elif grep -q "NSVM-INNER-UP cpus=0-1" /tmp/stress.log && [ -z "$(new_log | drop_known_kvm_reports 2>/dev/null | grep -E 'WARNING:|BUG:|Oops|Call Trace')" ]; then
            ok=$((ok + 1)); echo "$1 boot $i: up ($((t1 - t0)) s; inner $(grep -ao 'uptime=[0-9.]*' /tmp/stress.log | head -n 1))"
            [ $i = 1 ] && sed -n '/NSVM-INNER-CLOCK/,$p' /tmp/stress.log | head -n 22
        else
            bad=$((bad + 1)); echo "$1 boot $i: FAILED ($((t1 - t0)) s); the inner console:"
            grep -v '^\s*$' /tmp/stress.log | tail -n 80
            echo "... the test VM's kernel log since the boot began (without event-log lines):"
            new_log | grep -v "nsvm evlog" | tail -n 80
            echo "... the vCPUs' event logs (module parameter event_log=2):"
            new_log | grep "nsvm evlog" | sed 's/^\[[^]]*\] //' | tail -n 600
        fi
    done
    echo "STRESS $1: $ok up, $bad failed, $slow stopped after 60 s, of $N"
    echo "$1 $ok $bad $slow" >> /tmp/stress.table
}

rm -f /tmp/stress.table
case_ "inner boots on nsvm, split irqchip and full irqchip, $N each"
# nsvm_stress_modparams=a=1,b=2: nsvm's module parameters.
MODPARAMS=$(sed -n 's/.*nsvm_stress_modparams=\([^ ]*\).*/\1/p' /proc/cmdline | tr , ' ')
# shellcheck disable=SC2086
if load_nsvm $MODPARAMS; then
    rm -f /dev/kvm
    mknod /dev/kvm c $(tr ':' ' ' < /sys/class/misc/nsvm/dev)
    stress nsvm-split kvm,kernel-irqchip=split
    stress nsvm-full kvm
    rm -f /dev/kvm
    unload_nsvm
    verdict
else
    fail "nsvm did not load"
fi
case_ "inner boots on kvm_amd, split irqchip, $N"
insmod $MODDIR/irqbypass.ko; insmod $MODDIR/kvm.ko
if insmod $MODDIR/kvm-amd.ko nested=1; then
    stress kvm-split kvm,kernel-irqchip=split
    verdict
else
    fail "kvm_amd did not load"
fi
rmmod kvm_amd 2>/dev/null; rmmod kvm 2>/dev/null; rmmod irqbypass 2>/dev/null
echo "configuration | up | failed | stopped after 60 s"
while read -r t o b w; do echo "$t | $o | $b | $w"; done < /tmp/stress.table
finish
