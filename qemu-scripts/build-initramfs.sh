#!/usr/bin/env bash
# Build the test initramfs: busybox (static), nsvm.ko, the kvm modules of the
# same kernel (the reference), the static nsvm tool, the in-guest test runner
# (tests/qemu/init) and the suites (tests/qemu/*.sh).
# usage: build-initramfs.sh KDIR NSVM_KO "TOOL [TOOL...]" OUT.cpio [GUESTS_DIR]
# (the first TOOL is installed as /bin/nsvm, the others under their own names)
# With NSVM_WITH_QEMU=1 (the qemu suite only, tests/qemu/qemu.sh): also the
# host's qemu-system-x86_64 with the libraries ldd lists and their loader,
# its x86 firmware files, and /qemu/bzImage, /qemu/inner.cpio (links to the
# /linux/ files every initramfs has) for the guest QEMU boots (DESIGN.md
# section 5).
# With NSVM_SELFTESTS=DIR (the selftests suite, tests/qemu/selftests.sh, and
# the l1 suite): also KVM's selftests built by qemu-scripts/build-selftests.sh
# (DIR, about 1 MB each) under /selftests, those of the list
# NSVM_SELFTESTS_LIST (tests/selftests/list unless given) as LIST.
set -euo pipefail
. "$(dirname "$0")/common.sh"
[ $# -ge 4 ] || die "usage: $0 KDIR NSVM_KO TOOL OUT.cpio [GUESTS_DIR]"
kdir=$1 ko=$2 tool=$3 out=$4 guests=${5:-}
busybox=$(command -v busybox || true)
[ -n "$busybox" ] && file -L "$busybox" 2>/dev/null | grep -q static || busybox=/bin/busybox
[ -x "$busybox" ] || die "busybox-static is missing: run qemu-scripts/setup-host.sh"
for f in "$ko" $tool "$kdir/arch/x86/kvm/kvm.ko" "$kdir/arch/x86/kvm/kvm-amd.ko" "$kdir/virt/lib/irqbypass.ko"; do
    [ -f "$f" ] || die "$f is missing: run 'make module tool' (and 'make kernel')"
done

stage=$(mktemp -d "${TMPDIR:-/tmp}/nsvm-initramfs.XXXXXX")
trap 'rm -rf "$stage"' EXIT
chmod 755 "$stage"
mkdir -p "$stage"/{bin,sbin,dev,proc,sys,tmp,etc,lib/modules,tests}
cp "$busybox" "$stage/bin/busybox"
cp "$ko" "$stage/lib/modules/nsvm.ko"
cp "$kdir/arch/x86/kvm/kvm.ko" "$kdir/arch/x86/kvm/kvm-amd.ko" "$kdir/virt/lib/irqbypass.ko" "$stage/lib/modules/"
set -- $tool
cp "$1" "$stage/bin/nsvm"; shift
for t in "$@"; do cp "$t" "$stage/bin/"; done
cp "$NSVM_ROOT/tests/qemu/init" "$stage/init"
cp "$NSVM_ROOT"/tests/qemu/*.sh "$stage/tests/"
if [ -n "$guests" ]; then mkdir -p "$stage/guests" && cp "$guests"/*.bin "$stage/guests/"; fi
chmod +x "$stage/init" "$stage"/tests/*.sh
if [ "${NSVM_WITH_QEMU:-0}" = 1 ]; then
    qemu=$(command -v qemu-system-x86_64) || die "qemu-system-x86_64 is missing: run qemu-scripts/setup-host.sh"
    cp "$qemu" "$stage/bin/qemu-system-x86_64"
    # Libraries at the paths ldd resolves (the loader included), so the
    # binary's own search finds them.
    ldd "$qemu" | awk '/=> \//{print $3} $1 ~ /^\//{print $1}' | while read -r lib; do
        mkdir -p "$stage$(dirname "$lib")"
        cp -L "$lib" "$stage$lib"
    done
    mkdir -p "$stage/usr/share/qemu"
    for f in bios-256k.bin linuxboot_dma.bin kvmvapic.bin multiboot_dma.bin; do
        # (Debian links the BIOS from seabios's package; the link may be absent.)
        src=/usr/share/qemu/$f
        [ -e "$src" ] || src=/usr/share/seabios/$f
        cp -L "$src" "$stage/usr/share/qemu/"
    done
    # The test kernel and the inner initramfs (below), shared with nsvm run.
    mkdir -p "$stage/qemu"
    ln -s ../linux/bzImage "$stage/qemu/bzImage"
    ln -s ../linux/inner.cpio "$stage/qemu/inner.cpio"
fi
# The test kernel as /linux/bzImage (and /linux/vmlinux) and a tiny
# initramfs /linux/inner.cpio
# (busybox and an init that reports the CPUs it brought up and its uptime
# (make bench's QEMU boot row), then ends the guest): the guests of the
# linux suite (nsvm run --kernel) and of the qemu suite (/qemu/ links).
mkdir -p "$stage/linux"
cp "$kdir/arch/x86/boot/bzImage" "$stage/linux/bzImage"
# ... and the uncompressed kernel, stripped (~14 MB): the linux suite's ELF
# boot (linux-loader's ELF loader, the 64-bit boot protocol at its entry);
# not in the qemu suite's initramfs, which has no use for it.
[ "${NSVM_WITH_QEMU:-0}" = 1 ] || strip --strip-all -o "$stage/linux/vmlinux" "$kdir/vmlinux"
inner=$(mktemp -d "${TMPDIR:-/tmp}/nsvm-inner.XXXXXX")
mkdir -p "$inner"/{bin,proc,sys,dev}
cp "$busybox" "$inner/bin/busybox"
cat > "$inner/init" <<'INNER'
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
echo "NSVM-INNER-UP cpus=$(/bin/busybox cat /sys/devices/system/cpu/online) uptime=$(/bin/busybox cut -d' ' -f1 /proc/uptime)"
# Each CPU's LAPIC timer interrupts (LOC) and the IPIs taken (function
# calls, reschedules), from /proc/interrupts: the timer ticks on both CPUs
# and IPIs arrive (the qemu suite checks them).
loc=$(/bin/busybox awk '/^ *LOC:/ {print $2 "," $3}' /proc/interrupts)
ipi=$(/bin/busybox awk '/^ *(CAL|RES):/ {s += $2 + $3} END {print s + 0}' /proc/interrupts)
echo "NSVM-INNER-IRQ loc=$loc ipi=$ipi"
# The console UART's interrupts (IRQ 4, "ttyS0"): the linux suite checks
# that nsvm run's COM1 raised them (irqfd).
echo "NSVM-INNER-SERIAL irqs=$(/bin/busybox awk '/ttyS0/ {s += $2 + $3} END {print s + 0}' /proc/interrupts)"
# nsvm_verbose (the qemu-stress boots): the clocksource and the kernel's
# clock and TSC messages.
if /bin/busybox grep -q nsvm_verbose /proc/cmdline; then
    echo "NSVM-INNER-CLOCK $(/bin/busybox cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
    /bin/busybox dmesg | /bin/busybox grep -i -E "clocksource|tsc|kvm-clock|hpet|watchdog" | /bin/busybox head -n 20
fi
# With nsvm_stay on the command line (the qemu suite's migration case) the
# guest keeps writing its memory until QEMU is told to quit, and reports
# its counter every 2000 writes (the restore check).
if /bin/busybox grep -q nsvm_stay /proc/cmdline; then
    echo "NSVM-INNER-STAY"
    i=0
    while :; do
        i=$((i + 1)); echo $i > /counter
        [ $((i % 2000)) = 0 ] && echo "NSVM-INNER-TICK $i"
    done
fi
/bin/busybox reboot -f
INNER
chmod 755 "$inner/init"
(cd "$inner" && find . -print0 | sort -z | cpio --null -o -H newc --quiet) > "$stage/linux/inner.cpio"
rm -rf "$inner"
if [ -n "${NSVM_SELFTESTS:-}" ]; then
    mkdir -p "$stage/selftests"
    list=${NSVM_SELFTESTS_LIST:-$NSVM_ROOT/tests/selftests/list}
    for t in $(grep -v '^\s*\(#\|$\)' "$list" | awk '{print $1}'); do
        cp "$NSVM_SELFTESTS/$(basename "$t")" "$stage/selftests/" || die "selftest $t is not built (make selftests)"
    done
    cp "$list" "$stage/selftests/LIST"
    cp "$NSVM_ROOT/tests/selftests/known-nsvm" "$stage/selftests/KNOWN"
fi
echo 'root:x:0:0:root:/:/bin/sh' > "$stage/etc/passwd"
echo 'nobody:x:65534:65534:nobody:/:/bin/false' >> "$stage/etc/passwd"
echo 'root:x:0:' > "$stage/etc/group"
(cd "$stage" && find . -print0 | sort -z | cpio --null -o -H newc --quiet) > "$out.tmp"
mv "$out.tmp" "$out"
log "initramfs: $out ($(du -h "$out" | cut -f1))"
