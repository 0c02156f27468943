#!/usr/bin/env bash
# Boot the test kernel under QEMU TCG with AMD SVM emulated and run, inside the
# guest, the named suites (tests/qemu/NAME.sh) or the demo. The serial log is
# kept in a file; the exit status is the in-guest result (0 only when every
# case passed and the kernel log shows no oops or warning).
#
# usage: run-qemu.sh --kernel bzImage --initrd initramfs.cpio [--log FILE]
#                    [--smp N] [--mem SIZE] [--timeout SEC] [--icount] [--tcg-single]
#                    [--append KERNEL-ARGS] [--plugin FILE[,ARG=V...]]
#                    [--boot-again-if-host-dies] -- SUITE...
set -euo pipefail
. "$(dirname "$0")/common.sh"

kernel="" initrd="" logf="" smp=2 mem=2G timeout=1200 icount=0 extra="" accel=tcg plugin="" again=0
while [ $# -gt 0 ]; do
    case $1 in
        --kernel) kernel=$2; shift 2;;
        --initrd) initrd=$2; shift 2;;
        --log) logf=$2; shift 2;;
        --smp) smp=$2; shift 2;;
        --mem) mem=$2; shift 2;;
        --timeout) timeout=$2; shift 2;;
        --icount) icount=1; shift;;
        # One host thread for every guest CPU (MTTCG off).
        --tcg-single) accel=tcg,thread=single; shift;;
        --append) extra="$extra $2"; shift 2;;
        # A TCG plugin (make bench's tools/tcg-cost) with its arguments.
        --plugin) plugin=$2; shift 2;;
        # Boot once more when the test VM's own kernel panicked before the
        # suites reported: the QEMU MTTCG race of docs/architecture.md can
        # take the test VM's kernel down while kvm_amd (or nsvm) runs a
        # guest. Said on the output; the first log is kept as LOG.1.
        --boot-again-if-host-dies) again=1; shift;;
        --) shift; break;;
        *) die "unknown option $1";;
    esac
done
[ $# -gt 0 ] || die "name at least one suite (or 'demo')"
[ -f "$kernel" ] && [ -f "$initrd" ] || die "kernel or initramfs missing: run 'make initramfs'"
[ -n "$logf" ] || logf=$(mktemp "${TMPDIR:-/tmp}/nsvm-qemu.XXXXXX.log")
suites=$(IFS=,; echo "$*")

# EPYC with what TCG's SVM really offers (NPT, vGIF, SVME_ADDR_CHK), minus the
# features TCG cannot emulate (which QEMU would drop with a warning anyway).
cpu=${NSVM_QEMU_CPU:-EPYC,+svm,+npt,+vgif,+svme-addr-chk,-nrip-save,-fxsr-opt,-misalignsse,-osvw,-topoext,-xsavec}
# Under -icount shift=0 the TSC counts one tick per instruction, 1 GHz of
# guest time: tell the kernel so, and keep the clocksource watchdog off the
# TSC. Otherwise the watchdog finds the TSC at half the declared 2 GHz a few
# seconds into the boot, switches the clocksource to HPET, and from then on
# every clock read (KVM's exit paths, userspace's clock_gettime) costs more:
# kvm_amd's userspace round trip went from ~2450 to ~5680 TSC mid-benchmark.
# Otherwise TCG's TSC is the host's (plus an offset): the kernel is told the
# host's rate (tools/tsc-khz, measured), so that its TSC stays its clocksource
# and counts as stable, as on hardware; told another rate, the kernel finds
# it drifting against the HPET, marks it unstable, and every TSC reader
# (nsvm's and kvm_amd's TSC matching, kvmclock, the inner guests) works
# with a clock the kernel does not trust.
root=$(cd "$(dirname "$0")/.." && pwd)
tsck="$root/build/tsc-khz"
if [ ! -x "$tsck" ] || [ "$tsck" -ot "$root/tools/tsc-khz/tsc_khz.c" ]; then
    mkdir -p "$root/build"
    ${CC:-cc} -O2 -Wall -Wextra -Werror -o "$tsck" "$root/tools/tsc-khz/tsc_khz.c" || die "cannot build tools/tsc-khz"
fi
khz=$("$tsck")
tsc="tsc_early_khz=$khz"
[ "$icount" = 1 ] && tsc="tsc_early_khz=1000000 tsc=reliable"
qemu_args=(-machine q35 -accel "$accel" -cpu "$cpu" -smp "$smp" -m "$mem"
           -nographic -no-reboot -kernel "$kernel" -initrd "$initrd"
           -append "console=ttyS0 panic=-1 oops=panic $tsc loglevel=4 nsvmtest=$suites$extra")
[ "$icount" = 1 ] && qemu_args+=(-icount shift=0)
[ -n "$plugin" ] && qemu_args+=(-plugin "file=$plugin")

for attempt in 1 2; do
    log "booting QEMU ($accel, -cpu $cpu, -smp $smp) for: $suites; serial log: $logf"
    set +e
    timeout --foreground -k 10 "$timeout" qemu-system-x86_64 "${qemu_args[@]}" < /dev/null 2>&1 | tee "$logf"
    qrc=${PIPESTATUS[0]}
    set -e
    tr -d '\r' < "$logf" > "$logf.clean" && mv "$logf.clean" "$logf"
    if [ "$again" = 1 ] && [ "$attempt" = 1 ] && ! grep -aq '^NSVM-RESULT:' "$logf" &&
       grep -aq 'Kernel panic - not syncing' "$logf"; then
        mv "$logf" "$logf.1"
        log "the test VM's kernel panicked before the suites reported (QEMU's MTTCG race, docs/architecture.md; that log: $logf.1): booting again, once"
        continue
    fi
    break
done

result=$(grep -a '^NSVM-RESULT:' "$logf" | tail -n 1 || true)
if [ -z "$result" ]; then
    if [ "$qrc" = 124 ]; then why="timed out after ${timeout}s"; else why="QEMU exited with status $qrc"; fi
    echo "qemu: 0 passed, 1 failed"
    die "no result from the guest ($why): see $logf"
fi
passed=$(sed -n 's/.*passed=\([0-9]*\).*/\1/p' <<<"$result")
failed=$(sed -n 's/.*failed=\([0-9]*\).*/\1/p' <<<"$result")
# kvm_amd's known TDP MMU warning (tests/qemu/lib.sh, drop_known_kvm_reports,
# says why) is left out here too, from its WARNING line to its end-of-trace
# line; nothing else is. (The suites name it on a line without "WARNING:".)
if awk '/^(\[[ 0-9.]*\] )?WARNING: .*arch\/x86\/kvm\/mmu\/tdp_mmu\.c:[0-9]+ / {skip = 1} !skip {print} skip && /---\[ end trace/ {skip = 0}' "$logf" |
    grep -aEq 'Kernel panic|BUG:|Oops|WARNING:|general protection fault|Call Trace'; then
    log "the kernel log shows an oops, a warning or a panic: see $logf"
    failed=$((failed + 1))
fi
echo "qemu: $passed passed, $failed failed"
[ "$failed" = 0 ] && [ "$passed" -gt 0 ]
