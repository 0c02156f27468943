#!/usr/bin/env bash
# Build the test initramfs: busybox (static), nsvm.ko, the kvm modules of the
# same kernel (the reference), the static nsvm tool, the in-guest test runner
# (tests/qemu/init) and the suites (tests/qemu/*.sh).
# usage: build-initramfs.sh KDIR NSVM_KO "TOOL [TOOL...]" OUT.cpio [GUESTS_DIR]
# (the first TOOL is installed as /bin/nsvm, the others under their own names)
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
echo 'root:x:0:0:root:/:/bin/sh' > "$stage/etc/passwd"
echo 'nobody:x:65534:65534:nobody:/:/bin/false' >> "$stage/etc/passwd"
echo 'root:x:0:' > "$stage/etc/group"
(cd "$stage" && find . -print0 | sort -z | cpio --null -o -H newc --quiet) > "$out.tmp"
mv "$out.tmp" "$out"
log "initramfs: $out ($(du -h "$out" | cut -f1))"
