#!/usr/bin/env bash
# Build KVM's x86 selftests of the cached kernel tree's source (Linux 7.2,
# unmodified), statically linked, for the selftests suite
# (tests/qemu/selftests.sh; docs/selftests.md). The UAPI headers are
# installed with `make headers_install` into the cache, the selftests built
# there with OUTPUT= (the source tree is not written to), and the programs
# named in tests/selftests/list are copied, stripped, into bin/. Cached
# under $NSVM_CACHE/selftests-<kernel build>-<key of compiler and list>; a
# cache hit is instant. Prints the bin/ directory on stdout.
# usage: build-selftests.sh KDIR
set -euo pipefail
. "$(dirname "$0")/common.sh"
[ $# = 1 ] || die "usage: $0 KDIR"
kdir=$1
src=$(readlink -f "$kdir/source")
[ -d "$src/tools/testing/selftests/kvm" ] || die "$kdir has no source link with tools/testing/selftests/kvm"
list=$NSVM_ROOT/tests/selftests/list
key=$( { gcc --version | head -1; cat "$list"; } | sha256sum | cut -c1-12)
out=$NSVM_CACHE/selftests-$(basename "$kdir")-$key
if [ -f "$out/.built" ]; then echo "$out/bin"; exit 0; fi
rm -rf "$out"; mkdir -p "$out"
log "building KVM's x86 selftests of $src in $out (about a minute)"
make -s -C "$src" O="$out/kout" ARCH=x86 INSTALL_HDR_PATH="$out/hdr" headers_install >&2
make -s -C "$src/tools/testing/selftests/kvm" ARCH=x86 OUTPUT="$out/build" \
    INSTALL_HDR_PATH="$out/hdr" USERLDFLAGS=-static -j"$JOBS" >&2
mkdir -p "$out/bin"
grep -v '^\s*\(#\|$\)' "$list" | while read -r t _; do
    b=$out/build/$t
    [ -x "$b" ] || b=$out/build/x86/$t
    [ -x "$b" ] || die "selftest $t (tests/selftests/list) was not built"
    strip -o "$out/bin/$t" "$b"
done
rm -rf "$out/kout" "$out/build"
touch "$out/.built"
# Older builds for this kernel go (the cache must not grow without bound).
for d in "$NSVM_CACHE"/selftests-"$(basename "$kdir")"-*; do
    [ "$d" = "$out" ] || rm -rf "$d"
done
echo "$out/bin"
