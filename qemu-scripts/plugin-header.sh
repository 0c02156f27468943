#!/usr/bin/env bash
# Print the directory holding qemu-plugin.h for the installed QEMU (the TCG
# plugin of `make bench`, tools/tcg-cost, is built against it). Debian does
# not package the header: take it from the source package of exactly the
# installed qemu-system-x86 version (bookworm-backports, deb-src with the
# mirror setup-host.sh configured), with a private apt state under the cache
# so that the system's apt lists are left alone, and keep only
# include/qemu/qemu-plugin.h in $NSVM_CACHE/qemu-plugin/<version>/.
# Also installs libglib2.0-dev (the header includes <glib.h>) when missing.
set -euo pipefail
. "$(dirname "$0")/common.sh"

ver=$(dpkg-query -W -f='${Version}' qemu-system-x86 2>/dev/null) || die "qemu-system-x86 is not installed: run 'make deps'"
dir=$NSVM_CACHE/qemu-plugin/${ver//[:~+]/_}
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo

if ! dpkg-query -W -f='${Status}' libglib2.0-dev 2>/dev/null | grep -q "install ok installed"; then
    log "installing libglib2.0-dev (qemu-plugin.h includes glib.h)"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends libglib2.0-dev >/dev/null
fi

if [ ! -f "$dir/qemu-plugin.h" ]; then
    # The mirror setup-host.sh found (it wrote this file in `make deps`).
    mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/nsvm-backports.sources 2>/dev/null) ||
        true
    [ -n "$mirror" ] || die "no /etc/apt/sources.list.d/nsvm-backports.sources: run 'make deps' first"
    work=$NSVM_CACHE/qemu-plugin/apt
    rm -rf "$work"
    mkdir -p "$work"/{etc,lists/partial,cache/archives/partial,dl}
    cat > "$work/etc/src.sources" <<SRC
Types: deb-src
URIs: $mirror
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    apt_opts=(-o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$work/etc"
              -o Dir::State::Lists="$work/lists" -o Dir::Cache="$work/cache" -o APT::Sandbox::User=root)
    log "fetching the source of qemu $ver from $mirror for qemu-plugin.h"
    apt-get "${apt_opts[@]}" -qq update
    # Only the upstream tarball is needed (the header is upstream's); some
    # mirrors serve it but not the .dsc or the Debian tarball, so apt-get's
    # status is not the test: the tarball is.
    (cd "$work/dl" && apt-get "${apt_opts[@]}" -qq source --download-only "qemu=$ver" >/dev/null 2>"$work/source.err") ||
        log "apt-get source: $(tr '\n' ' ' < "$work/source.err")"
    orig=$(ls "$work"/dl/qemu_*.orig.tar.* 2>/dev/null | head -n 1)
    [ -n "$orig" ] || die "apt-get source gave no qemu orig tarball for $ver"
    mkdir -p "$dir"
    tar -xOf "$orig" --wildcards '*/include/qemu/qemu-plugin.h' > "$dir/qemu-plugin.h.tmp" ||
        die "no include/qemu/qemu-plugin.h in $orig"
    mv "$dir/qemu-plugin.h.tmp" "$dir/qemu-plugin.h"
    rm -rf "$work"
fi
# The header's plugin API must be what this QEMU offers; the plugin checks it
# again when QEMU loads it (qemu_plugin_install).
api=$(sed -n 's/^#define QEMU_PLUGIN_VERSION \([0-9]*\).*/\1/p' "$dir/qemu-plugin.h")
[ -n "$api" ] || die "$dir/qemu-plugin.h has no QEMU_PLUGIN_VERSION"
echo "$dir"
