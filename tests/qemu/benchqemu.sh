# The QEMU boot row of `make bench` (not part of `make test`): under
# -icount shift=0, QEMU 10 inside the test VM boots the test kernel to its
# init (tests/qemu/qemu.sh's inner guest, -smp 2, split irqchip: the same
# configuration on both devices; kvm_amd's in-kernel PIT stopped the test
# VM once, docs/architecture.md) on kvm_amd and then on nsvm. The inner
# kernel's uptime at its init counts its own TSC (tsc_early_khz=2000000,
# so guest seconds = TSC / 2e9), which under -icount advances with the
# instructions the emulated CPU executes: the whole boot's cost on each
# device, in the guest's units.
. /tests/lib.sh
RUNS=2
# Where each module's sections were loaded (qemu-scripts/bench-profile.py).
sections() {
    for m in "$@"; do
        for f in /sys/module/$m/sections/.text*; do
            [ -e "$f" ] && echo "NSVM-SECTION $m ${f##*/} $(cat "$f")"
        done
    done
}

inner_qemu() {
    # $1 log, $2 the cost plugin's row for this boot (nsvm bench --window:
    # the plugin's counts and profile of everything executed until QEMU
    # ends; a NOP without the plugin).
    nsvm bench --window "$2" -- timeout -s TERM 300 qemu-system-x86_64 -accel kvm,kernel-irqchip=split -cpu host -smp 2 -m 256 \
        -nographic -nodefaults -serial stdio -no-reboot -L /usr/share/qemu \
        -kernel /qemu/bzImage -initrd /qemu/inner.cpio \
        -append "console=ttyS0 panic=-1 tsc_early_khz=2000000 loglevel=4" > "$1" 2>&1
}

boot_runs() {
    for r in $(seq $RUNS); do
        t0=$(date +%s)
        inner_qemu /tmp/bq-$1-$r.log 1
        t1=$(date +%s)
        u=$(sed -n 's/.*NSVM-INNER-UP cpus=0-1 uptime=\([0-9.]*\).*/\1/p' /tmp/bq-$1-$r.log | head -n 1)
        tag=$(sed -n 's/^NSVM-BENCH-WINDOW tag=\([0-9]*\).*/\1/p' /tmp/bq-$1-$r.log)
        if [ -n "$u" ]; then
            echo "NSVM-BENCH-QEMU $1 run=$r uptime=$u wall=$((t1 - t0)) tag=$tag"
        else
            echo "QEMU on $1 did not reach the inner init:"; tail -n 20 /tmp/bq-$1-$r.log
            fail "QEMU boot on $1 (run $r)"
            return
        fi
    done
    pass
}

case_ "QEMU boots the test kernel on kvm_amd ($RUNS runs)"
insmod $MODDIR/irqbypass.ko; insmod $MODDIR/kvm.ko
if insmod $MODDIR/kvm-amd.ko nested=1; then
    sections kvm kvm_amd
    boot_runs kvm
else
    fail "kvm_amd did not load"
fi
rmmod kvm_amd 2>/dev/null; rmmod kvm 2>/dev/null; rmmod irqbypass 2>/dev/null

case_ "QEMU boots the test kernel on nsvm ($RUNS runs)"
if load_nsvm; then
    rm -f /dev/kvm
    mknod /dev/kvm c $(tr ':' ' ' < /sys/class/misc/nsvm/dev)
    sections nsvm
    boot_runs nsvm
    rm -f /dev/kvm
    unload_nsvm
else
    fail "nsvm did not load"
fi
finish
