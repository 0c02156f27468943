#!/usr/bin/env bash
# Install what a fresh Debian 12 machine lacks to build the test kernel, the
# module, the tool and to boot QEMU with SVM emulated. Idempotent: does nothing
# when everything is already there.
set -euo pipefail
. "$(dirname "$0")/common.sh"

need_pkgs=(make binutils gcc libc6-dev rsync flex bison bc libelf-dev libssl-dev cpio dwarves busybox-static
           xz-utils python3 rustc-web rust-web-src rust-web-clippy
           clang-19 llvm-19 lld-19 libclang-19-dev)

missing=()
for p in "${need_pkgs[@]}" qemu-system-x86; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
qemu_ok=0
if command -v qemu-system-x86_64 >/dev/null && qemu-system-x86_64 --version | grep -Eq 'version (9\.[1-9]|1[0-9])'; then
    qemu_ok=1
fi

SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo

# The Debian mirror this machine is configured with (never hard-coded here).
debian_mirror() {
    local f uri
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        # deb822: the stanza whose Suites name bookworm (not -security).
        uri=$(awk 'BEGIN{RS="";FS="\n"}
            /Suites:[^\n]*bookworm( |$|-updates)/ && !/security/ {
                for(i=1;i<=NF;i++) if ($i ~ /^URIs:/) { sub(/^URIs:[ \t]*/,"",$i); split($i,a," "); print a[1]; exit } }' "$f")
        [ -n "$uri" ] && { echo "$uri"; return; }
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        uri=$(awk '$1=="deb" && $0 ~ / bookworm / && $0 !~ /security/ {for(i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' "$f")
        [ -n "$uri" ] && { echo "$uri"; return; }
    done
    return 1
}

add_suites() {
    local mirror list=/etc/apt/sources.list.d/nsvm-backports.sources
    [ -f "$list" ] && return 0
    mirror=$(debian_mirror) || die "cannot find the configured Debian mirror in /etc/apt/sources.list*"
    log "adding bookworm-backports and trixie-backports from $mirror (low pin priority)"
    $SUDO tee "$list" >/dev/null <<SRC
Types: deb
URIs: $mirror
Suites: bookworm-backports trixie-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    $SUDO tee /etc/apt/preferences.d/nsvm-backports >/dev/null <<PIN
# nsvm: take only what is asked for explicitly from these suites.
Package: *
Pin: release n=trixie-backports
Pin-Priority: 50

Package: *
Pin: release n=bookworm-backports
Pin-Priority: 100
PIN
    APT_UPDATED=0
}

APT_UPDATED=${APT_UPDATED:-0}
apt_update() { [ "$APT_UPDATED" = 1 ] || { $SUDO apt-get update -qq; APT_UPDATED=1; }; }

add_suites
export DEBIAN_FRONTEND=noninteractive
if [ ${#missing[@]} -gt 0 ] || [ $qemu_ok = 0 ]; then
    apt_update
    log "installing: ${missing[*]} ${qemu_ok/1/}"
    $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
    $SUDO apt-get install -y -qq --no-install-recommends -t bookworm-backports qemu-system-x86 >/dev/null
fi
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing after install"

# bindgen for the kernel's Rust bindings (Linux 7.2 needs libclang >= 17).
if ! "$KBINDGEN" --version >/dev/null 2>&1; then
    log "installing bindgen-cli with cargo"
    cargo install --locked bindgen-cli --version 0.73.2 >/dev/null
fi
# clippy for the workspace (`make clippy`): the rustup toolchain's component.
# (The module is linted with Debian's /usr/bin/clippy-driver from
# rust-web-clippy, which matches the kernel's /usr/bin/rustc.)
if ! cargo clippy --version >/dev/null 2>&1 && command -v rustup >/dev/null; then
    log "adding the clippy component to the rustup toolchain"
    rustup component add clippy >/dev/null
fi
log "host ready: $("$KRUSTC" --version), $("$KBINDGEN" --version), $(qemu-system-x86_64 --version | head -1)"
