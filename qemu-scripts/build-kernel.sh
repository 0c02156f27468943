#!/usr/bin/env bash
# Fetch Debian's Linux 7.2 source package (downloaded, never installed), configure
# it (tinyconfig + kernel.config) and build bzImage + modules (KVM, KVM_AMD) with
# Rust enabled. The build is cached under $NSVM_CACHE, keyed by the source package
# version, the config fragments and the compiler versions; a cache hit is instant.
# Prints the build directory (usable as KDIR) on stdout.
#
# usage: build-kernel.sh [debug]
# `debug` builds the second configuration, kernel.config + kernel-debug.config
# (KASAN, lockdep, kmemleak, ...), cached beside the first one under its own
# prefix (kdebug-KEY; the normal one is kbuild-KEY).
set -euo pipefail
. "$(dirname "$0")/common.sh"

variant=${1:-normal}
case $variant in
    normal) frags=("$NSVM_ROOT/qemu-scripts/kernel.config"); prefix=kbuild-;;
    debug) frags=("$NSVM_ROOT/qemu-scripts/kernel.config" "$NSVM_ROOT/qemu-scripts/kernel-debug.config"); prefix=kdebug-;;
    *) die "unknown kernel variant '$variant' (normal or debug)";;
esac

mkdir -p "$NSVM_CACHE/src"
cd "$NSVM_CACHE/src"

# 1. Source package.
ver=$(apt-cache policy "$NSVM_KERNEL_PKG" 2>/dev/null | awk '/Candidate:/{print $2}')
if [ -z "$ver" ] || [ "$ver" = "(none)" ]; then
    # apt lists may be missing on a fresh machine.
    apt-get update -qq >&2 || true
    ver=$(apt-cache policy "$NSVM_KERNEL_PKG" | awk '/Candidate:/{print $2}')
fi
[ -n "$ver" ] && [ "$ver" != "(none)" ] || die "$NSVM_KERNEL_PKG not found: run qemu-scripts/setup-host.sh (adds trixie-backports)"
srcdir="$NSVM_CACHE/src/$NSVM_KERNEL_PKG-$ver"
if [ ! -f "$srcdir/.unpacked" ]; then
    log "fetching $NSVM_KERNEL_PKG $ver"
    rm -rf "$srcdir" dl && mkdir -p dl "$srcdir"
    (cd dl && apt-get download "$NSVM_KERNEL_PKG=$ver" >&2)
    dpkg-deb -x dl/*.deb dl/x
    tarball=$(ls dl/x/usr/src/linux-source-*.tar.*)
    tar -xf "$tarball" -C "$srcdir" --strip-components=1
    rm -rf dl
    touch "$srcdir/.unpacked"
fi

# 2. Cache key: source version, fragments, compilers (for the normal kernel
# the same key as before the debug variant existed: its cache stays valid).
key=$( {
    echo "$ver"; cat "${frags[@]}"
    "$KRUSTC" --version; "$KBINDGEN" --version; clang$KLLVM --version | head -1
} | sha256sum | cut -c1-16)
out="$NSVM_CACHE/$prefix$key"
if [ -f "$out/.nsvm-built" ]; then
    log "kernel cache hit: $out"
    echo "$out"; exit 0
fi

# 3. Configure.
mapfile -t margs < <(kmake_args)
log "configuring kernel in $out"
mkdir -p "$out"
make -s -C "$srcdir" O="$out" "${margs[@]}" tinyconfig >&2
KCONFIG_CONFIG="$out/.config" "$srcdir/scripts/kconfig/merge_config.sh" -m -O "$out" \
    "$out/.config" "${frags[@]}" >&2
make -s -C "$srcdir" O="$out" "${margs[@]}" olddefconfig >&2
# Refuse a config that silently lost what the suites need (CONFIG_X=y/m/N
# must be there as written, CONFIG_X=n must be off).
for f in "${frags[@]}"; do
    while IFS= read -r line; do
        case "$line" in
            CONFIG_*=n) ! grep -q "^${line%=n}=" "$out/.config" || die "kernel config still has ${line%=n} on ($f wants it off)";;
            CONFIG_*=*) grep -qx "$line" "$out/.config" || die "kernel config lacks $line from $f (is Rust available? run: make -C $srcdir O=$out ${margs[*]} rustavailable)";;
        esac
    done < "$f"
done

# 4. Build.
log "building the $variant kernel: bzImage and modules with -j$JOBS (6 to 9 minutes on 2 cores, more when other jobs share them)"
make -s -C "$srcdir" O="$out" "${margs[@]}" -j"$JOBS" bzImage modules >&2
touch "$out/.nsvm-built"
# Drop older builds of this variant so the cache does not grow without bound.
for d in "$NSVM_CACHE/$prefix"*; do [ "$d" = "$out" ] || rm -rf "$d"; done
echo "$out"
