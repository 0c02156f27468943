#!/bin/sh
# Runs inside the L1 Linux that the bench's L1 boot (tests/qemu/benchl1.sh)
# starts with QEMU on kvm_amd or on nsvm (L0), under -icount shift=0: KVM
# (kvm_amd nested=1) is the L1 hypervisor. It measures
# 1. QEMU in L1 booting the test kernel (L2, -smp 2) to its init: the L2
#    kernel's uptime at NSVM-INNER-UP (tsc_early_khz=2000000: guest s =
#    TSC / 2e9);
# 2. nsvm bench on the L1's /dev/kvm (its guest is an L2: the CPUID row is
#    an L2 CPUID exit handled by L1 KVM; the nested rows run an L3).
# (In that order: once, with the bench first, the L2 QEMU on kvm_amd as L0
# reset in SeaBIOS.)
# Around each part it prints "NSVM-L1-SAMPLE NAME" and waits 0.5 s, so that
# the outer suite, which reads this console live, samples the L0's
# statistics of this L1 VM (nsvm stats --pid); the pair idle0/idle1 (no
# work between) measures what a marker and the sleep cost alone. The L2
# exits of part 2 (L1 KVM's view) are read when the L2 init reports, with
# the L2 QEMU stopped (SIGSTOP) so nothing runs between the two samples.
. /tests/lib.sh
N=$(sed -n 's/.*nsvmbench=\([0-9]*\).*/\1/p' /proc/cmdline)
N=${N:-2000}
# The wait after a marker spins (0.5 s of the L1's clock, reading
# /proc/uptime) instead of sleeping: twice an idle L1 (-smp 1) on kvm_amd
# under -icount did not wake from `sleep 2`.
sample() {
    echo "NSVM-L1-SAMPLE $1"
    awk 'function up(  t, a) {getline t < "/proc/uptime"; close("/proc/uptime"); split(t, a, " "); return a[1]}
         BEGIN {s = up(); while (up() - s < 0.5) {}}'
}
# exits_of FILE: the exits of an nsvm stats --json sample: the "vm" group's
# (kvm_amd's debugfs VM directory sums its vCPUs), else the vCPUs' sum (nsvm).
exits_of() { awk '/^  "[^"]*": \{/ {g = $1; next} /"exits": \{/ {f = 1; next} f && /"value"/ {gsub(/[^0-9]/, ""); if (g ~ /"vm"/) vm = $0; else s += $0; f = 0} END {print (vm != "" ? vm : s) + 0}' "$1"; }
insmod $MODDIR/irqbypass.ko; insmod $MODDIR/kvm.ko
insmod $MODDIR/kvm-amd.ko nested=1 || { echo "NSVM-BENCH-L1-ERR kvm_amd did not load in L1"; exit 1; }
# make bench-l1 BENCH_PROFILE=1 (benchl1.sh): where kvm and kvm_amd were
# loaded, no L2 boot, and the bench's run tag (its pid) made to differ
# between the two L0s' boots, which -icount may otherwise make equal.
PROFILE=$(sed -n 's/.*nsvmbenchprofile=\(1\).*/\1/p' /proc/cmdline)
if [ -n "$PROFILE" ]; then
    for m in kvm kvm_amd; do
        for f in /sys/module/$m/sections/.text*; do echo "NSVM-SECTION $m ${f##*/} $(cat "$f")"; done
    done
fi
echo "NSVM-BENCH-L1-INFO svm-flags $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -xE 'svm|npt|nrip_save|vgif|flushbyasid|decodeassists|pausefilter|v_vmsave_vmload|vnmi' | sort | tr '\n' ' ')"
sample idle0
sample idle1
# Up to 5 tries: on kvm_amd as L0 the L2 QEMU sometimes resets in SeaBIOS
# (docs/bench.md) or hangs; each try is sampled on its own.
up=""
TRIES="1 2 3 4 5"; [ -n "$PROFILE" ] && TRIES=""
for try in $TRIES; do
    sample boot0
    rm -f /tmp/l2.fifo /tmp/l2.log; mkfifo /tmp/l2.fifo
    # nsvm_stay: the L2 init keeps running after its report (build-initramfs.sh),
    # so that its VM is still there to be read.
    # A try that has not reached the init after 120 s of the L1's time is
    # stopped: one on kvm_amd as L0 made no progress for 16 minutes of host
    # time (session 15; not examined) and held the whole bench.
    { timeout -s KILL 120 qemu-system-x86_64 -accel kvm,kernel-irqchip=split -cpu host -smp 2 -m 256 \
        -nographic -nodefaults -serial stdio -no-reboot -L /usr/share/qemu \
        -kernel /qemu/bzImage -initrd /qemu/inner.cpio \
        -append "console=ttyS0 panic=-1 tsc_early_khz=2000000 loglevel=4 nsvm_stay"; echo "NSVM-L2-QEMU-EXIT rc=$?"; } > /tmp/l2.fifo 2>&1 &
    while IFS= read -r l; do
        echo "$l" >> /tmp/l2.log
        case "$l" in
            *NSVM-INNER-UP*)
                qpid=$(pidof qemu-system-x86_64)
                kill -STOP $qpid
                nsvm stats --pid $qpid --json > /tmp/l2stats.json 2>&1
                up=$(echo "$l" | sed -n 's/.*uptime=\([0-9.]*\).*/\1/p')
                sample boot1
                kill -KILL $qpid
                break;;
        esac
    done < /tmp/l2.fifo
    wait
    [ -n "$up" ] && break
    echo "NSVM-BENCH-L1-INFO L2 boot try $try did not reach the init: $(grep -a -o 'NSVM-L2-QEMU-EXIT.*' /tmp/l2.log)"
done
if [ -n "$PROFILE" ]; then
    echo "NSVM-BENCH-L1-INFO profile run: no L2 boot"
elif [ -n "$up" ]; then
    echo "NSVM-BENCH-L1-BOOT uptime=$up l2exits=$(exits_of /tmp/l2stats.json) try=$try"
else
    echo "NSVM-BENCH-L1-ERR the L2 Linux did not reach its init"; tail -n 20 /tmp/l2.log; dmesg | tail -n 20
fi
if [ -n "$PROFILE" ] && grep -q nsvmbenchl0=nsvm /proc/cmdline; then
    for i in 1 2 3 4 5; do /bin/sh -c :; done
fi
sample bench0
nsvm bench --device /dev/kvm --iterations $N --json > /tmp/b.json 2> /tmp/b.err
echo "NSVM-BENCH-L1-INFO bench rc=$?"
sample bench1
head -n 5 /tmp/b.err
# The figures, then the JSON on one line (the console is slow here: every
# byte is an exit of the L1 to its L0's QEMU).
# L2 exits of the run (L1 KVM's view): each row's exits per iteration times
# N (VM set-up and row 0 left out).
echo "NSVM-BENCH-L1-RUN cpuid=$(awk '/"row": "CPUID exit"/ {f = 1; next} f && /tsc_per_exit/ {gsub(/[^0-9.]/, "", $2); print $2; exit}' /tmp/b.json) l2exits=$(awk -v n=$N '/"exits": / && !/exits_per_sec/ {gsub(/[^0-9.]/, "", $2); s += $2} END {printf "%.0f", s * n}' /tmp/b.json)"
echo "NSVM-BENCH-L1-JSON $(sed 's/^ *//' /tmp/b.json | tr -d '\n')"
rmmod kvm_amd; rmmod kvm; rmmod irqbypass
echo "0 passed, 0 failed"
