# Shared settings for the qemu-scripts. Sourced, never executed.
# shellcheck shell=bash

NSVM_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Everything built or downloaded lives outside the work tree, so a clean clone
# reuses a previous kernel build on the same machine.
NSVM_CACHE=${NSVM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nsvm}
# Kernel package to fetch from Debian (source only, never installed).
NSVM_KERNEL_PKG=${NSVM_KERNEL_PKG:-linux-source-7.2}
# Toolchain for the kernel: Debian's rustc-web (with its core sources) and LLVM 19.
KRUSTC=${KRUSTC:-/usr/bin/rustc}
KLLVM=${KLLVM:--19}
CARGO_BIN=${CARGO_HOME:-$HOME/.cargo}/bin
KBINDGEN=${KBINDGEN:-$CARGO_BIN/bindgen}
export LIBCLANG_PATH=${LIBCLANG_PATH:-/usr/lib/llvm-19/lib}
JOBS=${JOBS:-$(( $(nproc) + 1 ))}
export PATH="$CARGO_BIN:$PATH"

log() { printf '[nsvm] %s\n' "$*" >&2; }
die() { printf '[nsvm] error: %s\n' "$*" >&2; exit 1; }

# Arguments every kernel / module make invocation needs.
kmake_args() {
    printf '%s\n' "LLVM=$KLLVM" "RUSTC=$KRUSTC" "BINDGEN=$KBINDGEN"
}
