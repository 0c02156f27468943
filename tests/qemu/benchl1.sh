# The L1 rows of `make bench` (not part of `make test`; issue 11 item 5):
# under -icount shift=0 QEMU 10 in the test VM runs an L1 Linux (the test
# kernel with this initramfs, -smp 2) on kvm_amd nested=1 and then on nsvm
# (a /dev/kvm node), as the l1 suite does (tests/qemu/l1.sh); inside, KVM
# (kvm_amd nested=1) is the L1 hypervisor and tests/qemu/benchl1inner.sh
# measures nsvm bench on the L1's /dev/kvm and QEMU booting an L2 Linux.
# At each "NSVM-L1-SAMPLE NAME" line of the L1's console this suite reads
# the L0's statistics of the L1 VM (nsvm stats --pid: binary statistics on
# nsvm, debugfs on kvm_amd); it prints per L0 one line
#   NSVM-BENCH-L1 L0 cpuid=TSC bench_l2=.. bench_l0=.. boot_s=.. boot_l2=.. boot_l0=.. idle_l0=..
#     bench_guards=.. boot_guards=..
# and the L1's bench JSON on a line "NSVM-BENCH-L1-JSON L0 {...}",
# which the Makefile turns into the table of build/bench.log.
. /tests/lib.sh
N=$(sed -n 's/.*nsvmbench=\([0-9]*\).*/\1/p' /proc/cmdline)
N=${N:-2000}
exits_of() { awk '/^  "[^"]*": \{/ {g = $1; next} /"exits": \{/ {f = 1; next} f && /"value"/ {gsub(/[^0-9]/, ""); if (g ~ /"vm"/) vm = $0; else s += $0; f = 0} END {print (vm != "" ? vm : s) + 0}' "$1"; }
# ctr FILE NAME: statistic NAME summed over the vCPUs of an nsvm stats
# --json file (0 when absent, as on kvm_amd for nsvm's own counters).
ctr() { awk -v n="\"$2\": {" 'index($0, n) {f = 1; next} f && /"value"/ {gsub(/[^0-9]/, ""); s += $0; f = 0} END {print s + 0}' "$1"; }

# The L1's initramfs: this one, read back from the rootfs (l1.sh).
(cd / && find . -xdev \( -path ./proc -o -path ./sys -o -path ./dev -o -path ./tmp \) -prune -print -o -print \
    | cpio -o -H newc > /tmp/l1.cpio 2>/dev/null)

# nsvmbenchtrace=msr (make bench-l1 BENCH_L1_TRACE=msr): with nsvm as L0,
# the nsvm_msr and NPT02 tracepoints are on from sample bench0 to bench1
# (the bench run in L1) and the MSRs L1 made L0 handle, the NPT02 fills and
# flushes (by reason) are counted: what each L2 exit costs. Tracing adds L0 instructions that -icount counts:
# the figures of such a run are not comparable with kvm_amd's.
TRACE_MSR=$(sed -n 's/.*nsvmbenchtrace=\(msr\).*/\1/p' /proc/cmdline)
# nsvmbenchprofile=1 (make bench-l1 BENCH_PROFILE=1): the boot runs under
# the cost plugin's profile; the L1 skips its L2 boot (the bench run alone is
# profiled) and prints where its kvm and kvm_amd were loaded; nsvm is loaded
# here after an idle kvm and kvm_amd (kvm.enable_virt_at_load=0, as in the
# selftests suite) so that its text lies above the L1's kvm modules, which
# the L1 loads in the same order at the same addresses (nokaslr): an address
# of the profile then names one module (qemu-scripts/bench-profile.py).
PROFILE=$(sed -n 's/.*nsvmbenchprofile=\(1\).*/\1/p' /proc/cmdline)
# nsvm's module parameters for the L1 boot (make bench-l1
# BENCH_MODPARAMS=a=1,b=2); none by default.
MODPARAMS=$(sed -n 's/.*nsvmbench_modparams=\([^ ]*\).*/\1/p' /proc/cmdline | tr , ' ')
trace_msr() {
    _t=/sys/kernel/tracing
    case $1 in
        bench0) mount -t tracefs nodev $_t 2>/dev/null; echo 0 > $_t/tracing_on; echo > $_t/trace
                echo 32768 > $_t/buffer_size_kb
                for e in msr npt02_fill npt02_flush; do echo 1 > $_t/events/nsvm/nsvm_$e/enable; done
                echo 1 > $_t/tracing_on;;
        bench1) echo 0 > $_t/tracing_on; echo 0 > $_t/events/nsvm/enable
                { sed -n 's/.* nsvm_msr: \(msr_[a-z]*\) \([0-9a-f]*\) .*/\1 \2/p' $_t/trace
                  sed -n 's/.* nsvm_npt02_flush: \(.*\) pages .*/npt02_flush \1/p; s/.* nsvm_npt02_fill: .*/npt02_fill/p' $_t/trace
                } | sort | uniq -c | sort -rn > /tmp/bl1-msrs.txt;;
    esac
}

# l1_boot L0: the L1 Linux on the test VM's kvm_amd or nsvm; its console in
# /tmp/bl1-L0.log, the L0's samples in /tmp/bl1-L0-NAME.json. The test VM
# has one CPU (the bench boots run -smp 1): no pinning. The L1 has two, as
# in the l1 suite: with one, QEMU in the L1 on kvm_amd as L0 never booted
# its L2 (reset in SeaBIOS, three runs).
l1_boot() {
    if [ $1 = nsvm ]; then
        # With its defaults, as the l1 suite and the QEMU boot row
        # (benchqemu.sh) load it (exit_after_injection on).
        if [ -n "$PROFILE" ]; then
            insmod $MODDIR/irqbypass.ko; insmod $MODDIR/kvm.ko enable_virt_at_load=0; insmod $MODDIR/kvm-amd.ko nested=1
        fi
        # shellcheck disable=SC2086
        load_nsvm $MODPARAMS; rm -f /dev/kvm; mknod /dev/kvm c $(tr ':' ' ' < /sys/class/misc/nsvm/dev)
    else
        insmod $MODDIR/irqbypass.ko; insmod $MODDIR/kvm.ko; insmod $MODDIR/kvm-amd.ko nested=1
    fi
    [ -n "$PROFILE" ] && [ $1 = nsvm ] && for f in /sys/module/nsvm/sections/.text*; do echo "NSVM-SECTION nsvm ${f##*/} $(cat "$f")"; done
    rm -f /tmp/bl1-$1*
    t0=$(date +%s)
    timeout -s TERM 3000 qemu-system-x86_64 -accel kvm,kernel-irqchip=split -cpu host -smp 2 -m 1536 \
        -nographic -nodefaults -serial stdio -no-reboot -L /usr/share/qemu \
        -kernel /qemu/bzImage -initrd /tmp/l1.cpio \
        -append "console=ttyS0 panic=-1 tsc_early_khz=$TSC_KHZ tsc=reliable loglevel=4 nsvmtest=benchl1inner nsvmbench=$N${PROFILE:+ nsvmbenchprofile=1 nsvmbenchl0=$1}" 2>&1 \
        | tr -d '\r' | while IFS= read -r line; do
            echo "$line" >> /tmp/bl1-$1.log
            case "$line" in
                NSVM-L1-SAMPLE\ *)
                    name=${line#NSVM-L1-SAMPLE }
                    nsvm stats --pid "$(pidof qemu-system-x86_64)" --json > /tmp/bl1-$1-$name.json 2>&1
                    [ $1 = nsvm ] && [ -n "$TRACE_MSR" ] && trace_msr $name
                    echo "[L1 on $1] sample $name: L0 exits $(exits_of /tmp/bl1-$1-$name.json)";;
                NSVM-BENCH-L1-JSON*) echo "[L1 on $1] (the bench JSON, $(echo "$line" | wc -c) bytes)";;
                *) echo "[L1 on $1] $line";;
            esac
        done
    echo "L1 on $1: $(( $(date +%s) - t0 )) s (test VM's clock)"
    if [ $1 = nsvm ]; then
        rm -f /dev/kvm; unload_nsvm
        [ -n "$PROFILE" ] && { rmmod kvm_amd; rmmod kvm; rmmod irqbypass; }
    else rmmod kvm_amd; rmmod kvm; rmmod irqbypass; fi
}

# top L0 A B: the L0's 20 counters (every group's, summed) that changed most
# between samples A and B (nsvm's exit_* per exit code say which exits).
top() {
    for f in /tmp/bl1-$1-$2.json /tmp/bl1-$1-$3.json; do
        awk '/^  "[^"]*": \{/ {next} /": \{/ {k = $1; gsub(/[":{]/, "", k); next} /"value"/ {gsub(/[^0-9]/, ""); s[k] += $0} END {for (k in s) print k, s[k]}' $f | sort
    done | awk '{if ($1 in a) {d = $2 - a[$1]; if (d > 0) print d, $1} else a[$1] = $2}' | sort -rn | head -n 20 | awk '{printf "%s=%s ", $2, $1}'
}
# d L0 A B: L0 exits between samples A and B.
d() { echo $(( $(exits_of /tmp/bl1-$1-$3.json) - $(exits_of /tmp/bl1-$1-$2.json) )); }
# g L0 A B: entries nsvm guarded with a self-IPI (exit_after_injection,
# statistic injection_guards) between samples A and B: #VMEXIT(INTR)s that
# only QEMU's TCG needs (0 on kvm_amd, which has no such counter).
g() { echo $(( $(ctr /tmp/bl1-$1-$3.json injection_guards) - $(ctr /tmp/bl1-$1-$2.json injection_guards) )); }
# (A trace run measures nsvm as L0 only: its figures compare with nothing.)
L0S="kvm nsvm"; [ -n "$TRACE_MSR" ] && L0S=nsvm
for l0 in $L0S; do
    case_ "L1 Linux on $l0: KVM as L1 runs nsvm bench ($N iterations) and boots an L2 Linux"
    l1_boot $l0
    # Named by the L0 for nsvm bench --compare's columns ("kvm-on-nsvm").
    sed -n 's/^NSVM-BENCH-L1-JSON //p' /tmp/bl1-$l0.log | sed "s|\"device\": *\"/dev/kvm\"|\"device\": \"kvm-on-$l0\"|" > /tmp/bl1-$l0.bench.json
    run=$(grep -m1 '^NSVM-BENCH-L1-RUN ' /tmp/bl1-$l0.log)
    boot=$(grep -m1 '^NSVM-BENCH-L1-BOOT ' /tmp/bl1-$l0.log)
    expect_line /tmp/bl1-$l0.log "^NSVM-BENCH-L1-INFO bench rc=0$"
    expect_line /tmp/bl1-$l0.log "^NSVM-BENCH-L1-RUN cpuid=[0-9]"
    [ -n "$boot" ] || [ -n "$PROFILE" ] || wrong_ "no L2 boot report"
    for s in idle0 idle1 bench0 bench1 $([ -z "$PROFILE" ] && echo boot0 boot1); do
        [ "$(exits_of /tmp/bl1-$l0-$s.json)" -gt 0 ] 2>/dev/null || wrong_ "no L0 sample $s"
    done
    if [ -z "$WRONG" ]; then
        idle=$(d $l0 idle0 idle1)
        idleg=$(g $l0 idle0 idle1)
        bl2=$(echo "$run" | sed -n 's/.*l2exits=\([0-9]*\).*/\1/p')
        cpuid=$(echo "$run" | sed -n 's/.*cpuid=\([0-9.]*\).*/\1/p')
        up=$(echo "$boot" | sed -n 's/.*uptime=\([0-9.]*\).*/\1/p')
        l2=$(echo "$boot" | sed -n 's/.*l2exits=\([0-9]*\).*/\1/p')
        echo "NSVM-BENCH-L1 $l0 cpuid=$cpuid bench_l2=$bl2 bench_l0=$(( $(d $l0 bench0 bench1) - idle )) boot_s=$up boot_l2=$l2 boot_l0=$(( $(d $l0 boot0 boot1) - idle )) idle_l0=$idle bench_guards=$(( $(g $l0 bench0 bench1) - idleg )) boot_guards=$(( $(g $l0 boot0 boot1) - idleg ))"
        echo "NSVM-BENCH-L1-JSON $l0 $(cat /tmp/bl1-$l0.bench.json)"
        echo "L0 $l0, bench run, counters that changed most: $(top $l0 bench0 bench1)"
        echo "L0 $l0, L2 boot, counters that changed most: $(top $l0 boot0 boot1)"
        if [ $l0 = nsvm ] && [ -n "$TRACE_MSR" ]; then
            echo "L0 nsvm, bench run, MSRs L0 handled and NPT02 fills/flushes (count, what; nsvmbenchtrace=msr: these figures include tracing):"
            head -n 15 /tmp/bl1-msrs.txt
        fi
    else
        tail -n 40 /tmp/bl1-$l0.log; dmesg | tail -n 20
    fi
    verdict "$boot"
done
[ -n "$TRACE_MSR" ] && { finish; exit; }
case_ "nsvm bench in L1: L0 nsvm / L0 kvm_amd"
echo "=== nsvm bench --compare in L1 (TSC per exit of the L1's guest, an L2; first = L1 on nsvm, second = L1 on kvm_amd) ==="
check "compare" nsvm bench --compare /tmp/bl1-nsvm.bench.json /tmp/bl1-kvm.bench.json
finish
