# nsvm — entry points. `make run` is the demo, `make test` runs every test.
# Everything missing on a fresh Debian 12 machine is installed on the way
# (qemu-scripts/setup-host.sh); the kernel build is cached under
# $(NSVM_CACHE) (default ~/.cache/nsvm).
#
# KDIR=/path/to/kernel/build  builds the module against your own Rust-enabled
# kernel tree instead of the cached test kernel.

SHELL := /bin/bash
comma := ,
ROOT := $(CURDIR)
BUILD := $(ROOT)/build
KRUSTC ?= /usr/bin/rustc
KLLVM ?= -19
KBINDGEN ?= $(HOME)/.cargo/bin/bindgen
# Debian's clippy-driver (rust-web-clippy) matches $(KRUSTC); the rustup one
# in ~/.cargo/bin does not and must not lint the module.
KCLIPPY_DRIVER ?= /usr/bin/clippy-driver
export LIBCLANG_PATH ?= /usr/lib/llvm-19/lib
TOOL_TARGET := x86_64-unknown-linux-gnu
TOOL_BIN := $(ROOT)/target/$(TOOL_TARGET)/release/nsvm
APITEST_BIN := $(ROOT)/target/$(TOOL_TARGET)/release/nsvm-apitest
# l0 first: kvm_amd's refused load in foundation leaves its debugfs directory
# behind, and l0 reads kvm_amd's statistics through debugfs.
SUITES ?= l0 nested foundation apic pit irqchip msr dirtylog linux trace

.PHONY: selftests initramfs-selftests qemu-test-selftests
.PHONY: all deps kernel module tool guests initramfs run test host-test tcg-cost-test clippy clippy-workspace clippy-module qemu-test qemu-bug bench clean \
	kernel-debug module-debug initramfs-debug qemu-test-debug initramfs-qemu qemu-test-qemu initramfs-l1 qemu-test-l1 qemu-test-l1-run qemu-stress bench-l1 bench-l1-run

all: module tool

deps:
	@qemu-scripts/setup-host.sh

# The cached test kernel (prints nothing when it is up to date).
kernel: deps
	@qemu-scripts/build-kernel.sh < /dev/null > $(BUILD)/kdir.tmp && mv $(BUILD)/kdir.tmp $(BUILD)/kdir

$(BUILD):
	@mkdir -p $(BUILD)

kernel: | $(BUILD)

# build_module KDIR OUTDIR: nsvm.ko built against the kernel tree KDIR (a
# module is loaded only by the kernel it was built against).
define build_module
	@kdir=$(1); \
	 eval "$$(qemu-scripts/crate-src.py bitflags static_assertions)"; \
	 mkdir -p $(2); \
	 $(MAKE) -s -C $$kdir M=$(ROOT) MO=$(2) LLVM=$(KLLVM) RUSTC=$(KRUSTC) BINDGEN=$(KBINDGEN) \
	   NSVM_BITFLAGS_SRC=$$NSVM_BITFLAGS_SRC NSVM_STATIC_ASSERTIONS_SRC=$$NSVM_STATIC_ASSERTIONS_SRC modules && \
	 echo "built $(2)/nsvm.ko"
endef

module: kernel
	$(call build_module,$${KDIR:-$$(cat $(BUILD)/kdir)},$(BUILD)/module)

# The debug kernel (qemu-scripts/kernel-debug.config: KASAN, lockdep,
# kmemleak, ...), cached beside the normal one, and everything built against
# it under build/debug/.
kernel-debug: deps | $(BUILD)
	@qemu-scripts/build-kernel.sh debug < /dev/null > $(BUILD)/kdir-debug.tmp && mv $(BUILD)/kdir-debug.tmp $(BUILD)/kdir-debug

module-debug: kernel-debug
	$(call build_module,$$(cat $(BUILD)/kdir-debug),$(BUILD)/debug/module)

# Statically linked so it runs in the test initramfs as on any host.
tool:
	@CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static" \
	  cargo build -q --locked --release --target $(TOOL_TARGET) -p nsvm-tool -p nsvm-apitest

# Guest payloads (tests/guests/*.S): 16/32-bit ones as flat binaries loaded
# at 0x1000, 64-bit ones as ELF64 images.
# l1lib.S is not a payload: the L1 hypervisors of the nested suite include it.
GUEST_SRCS := $(filter-out tests/guests/l1lib.S,$(wildcard tests/guests/*.S))
GUEST_BINS := $(patsubst tests/guests/%.S,$(BUILD)/guests/%.bin,$(GUEST_SRCS))
$(BUILD)/guests/%.bin: tests/guests/%.S
	@mkdir -p $(dir $@)
	@if grep -q '^\s*\.code64' $<; then \
	   as --64 -I tests/guests -o $@.o $< && ld -m elf_x86_64 -static -nostdlib -Ttext=0x100000 -e _start -o $@ $@.o; \
	 else \
	   as --32 -o $@.o $< && ld -m elf_i386 -static -nostdlib -Ttext=0x1000 -e _start --oformat binary -o $@ $@.o; \
	 fi || { rm -f $@ $@.o; exit 1; }; rm -f $@.o
# Payloads that .include another one.
$(BUILD)/guests/nestspin64.bin: tests/guests/nested64.S
$(BUILD)/guests/xrstor_swap64.bin: tests/guests/xrstor_race64.S
$(filter $(BUILD)/guests/l1_%.bin,$(GUEST_BINS)): tests/guests/l1lib.S tests/guests/l1macros.inc
$(BUILD)/guests/bench64.bin: tests/guests/l1lib.S tests/guests/benchrow.inc tests/guests/benchidt.inc
$(BUILD)/guests/benchirq64.bin: tests/guests/benchrow.inc tests/guests/benchidt.inc
guests: $(GUEST_BINS)

initramfs: module tool guests
	@qemu-scripts/build-initramfs.sh $$(cat $(BUILD)/kdir) $(BUILD)/module/nsvm.ko "$(TOOL_BIN) $(APITEST_BIN)" $(BUILD)/initramfs.cpio $(BUILD)/guests

initramfs-debug: module-debug tool guests
	@mkdir -p $(BUILD)/debug
	@qemu-scripts/build-initramfs.sh $$(cat $(BUILD)/kdir-debug) $(BUILD)/debug/module/nsvm.ko "$(TOOL_BIN) $(APITEST_BIN)" $(BUILD)/debug/initramfs.cpio $(BUILD)/guests

# KVM's x86 selftests of the test kernel's source, unmodified and statically
# linked (qemu-scripts/build-selftests.sh; the programs of
# tests/selftests/list), cached under $(NSVM_CACHE) by kernel build; the
# directory of the programs goes to build/selftests-dir.
selftests: kernel
	@qemu-scripts/build-selftests.sh $$(cat $(BUILD)/kdir) > $(BUILD)/selftests-dir.tmp && mv $(BUILD)/selftests-dir.tmp $(BUILD)/selftests-dir

# The selftests suite (tests/qemu/selftests.sh, docs/selftests.md) boots its
# own initramfs, which carries the selftests (about 50 MB); `make qemu-test`
# runs it as its fourth boot (SELFTEST_SUITES), `make qemu-test-selftests`
# alone (SELFTESTS=a,b: only these programs).
initramfs-selftests: module tool guests selftests
	@NSVM_SELFTESTS=$$(cat $(BUILD)/selftests-dir) qemu-scripts/build-initramfs.sh $$(cat $(BUILD)/kdir) $(BUILD)/module/nsvm.ko "$(TOOL_BIN) $(APITEST_BIN)" $(BUILD)/initramfs-selftests.cpio $(BUILD)/guests

SELFTESTS_TIMEOUT ?= 2400
qemu-test-selftests: initramfs-selftests
	@qemu-scripts/run-qemu.sh --timeout $(SELFTESTS_TIMEOUT) --kernel $$(cat $(BUILD)/kdir)/arch/x86/boot/bzImage \
	   --initrd $(BUILD)/initramfs-selftests.cpio --log $(BUILD)/qemu-test-selftests.log $(if $(SELFTESTS),--append nsvm_selftests=$(SELFTESTS)) -- selftests

# The qemu suite (tests/qemu/qemu.sh): QEMU 10 inside the test VM, on
# kvm_amd and on nsvm; its own initramfs carries QEMU (~24 MB compressed),
# so other boots stay small, and the outer VM gets 3 GiB. QEMU boots the
# test kernel on kvm_amd and on nsvm (both CPUs up); `make qemu-test` runs
# it as its third boot (QEMU_SUITES), `make qemu-test-qemu` alone. That boot
# is run once more if the test VM's own kernel panics before the suite
# reports (run-qemu.sh --boot-again-if-host-dies): under MTTCG the race of
# docs/architecture.md took the test VM down once while kvm_amd ran the
# inner QEMU (idle-task oops, RIP 0). Single-threaded TCG avoids the race
# but stalls kvm_amd's inner full-irqchip boot (RCU stalls past 240 s).
initramfs-qemu: module tool guests
	@NSVM_WITH_QEMU=1 qemu-scripts/build-initramfs.sh $$(cat $(BUILD)/kdir) $(BUILD)/module/nsvm.ko "$(TOOL_BIN) $(APITEST_BIN)" $(BUILD)/initramfs-qemu.cpio $(BUILD)/guests

qemu-test-qemu: initramfs-qemu
	@qemu-scripts/run-qemu.sh --boot-again-if-host-dies --mem 3G --kernel $$(cat $(BUILD)/kdir)/arch/x86/boot/bzImage \
	   --initrd $(BUILD)/initramfs-qemu.cpio --log $(BUILD)/qemu-test-qemu.log -- qemu

# The l1 suite (tests/qemu/l1.sh, issue 11): real L1 hypervisors. QEMU
# inside the test VM runs an L1 Linux (the test kernel with the qemu
# initramfs) on kvm_amd, then on nsvm; in it kvm_amd and nsvm run the
# nested payloads, nsvm-apitest and QEMU booting an L2 Linux; results
# compared (KVM as L1 on nsvm = on kvm_amd; nsvm on nsvm = nsvm on the
# test VM's SVM). Its own boot (4 GiB: the L1 gets 1.5 GiB), about 6
# minutes; `make test` runs it beside the other boots (its L1 runs on one
# CPU of the test VM, so it mostly needs one host core) and prints its
# output after theirs. L1_APPEND adds kernel parameters (the suite's
# nsvml1_* knobs, tests/qemu/l1.sh).
L1_TIMEOUT ?= 3600
# Its initramfs is the qemu suite's plus the KVM selftests of
# tests/selftests/l1-list, which KVM as L1 runs in the L1.
initramfs-l1: module tool guests selftests
	@NSVM_WITH_QEMU=1 NSVM_SELFTESTS=$$(cat $(BUILD)/selftests-dir) NSVM_SELFTESTS_LIST=tests/selftests/l1-list \
	   qemu-scripts/build-initramfs.sh $$(cat $(BUILD)/kdir) $(BUILD)/module/nsvm.ko "$(TOOL_BIN) $(APITEST_BIN)" $(BUILD)/initramfs-l1.cpio $(BUILD)/guests
qemu-test-l1: initramfs-l1
	@$(MAKE) --no-print-directory qemu-test-l1-run
# (The boot alone, on the initramfs built above.)
qemu-test-l1-run:
	@set -o pipefail; qemu-scripts/run-qemu.sh --boot-again-if-host-dies --mem 4G --timeout $(L1_TIMEOUT) \
	   $(if $(L1_APPEND),--append "$(L1_APPEND)") --kernel $$(cat $(BUILD)/kdir)/arch/x86/boot/bzImage \
	   --initrd $(BUILD)/initramfs-l1.cpio --log $(BUILD)/qemu-test-l1.log -- l1 > $(BUILD)/qemu-test-l1.out 2>&1; rc=$$?; \
	 cat $(BUILD)/qemu-test-l1.out; \
	 sed -n 's/^qemu: \([0-9]*\) passed, \([0-9]*\) failed$$/\1 \2/p' $(BUILD)/qemu-test-l1.out | \
	   awk '{p += $$1; f += $$2} END {printf "QEMU l1 suite (real L1 hypervisors): %d passed, %d failed\n", p, f}'; \
	 exit $$rc

# The qemu boot under stress (tests/qemu/qemustress.sh, not in `make test`):
# STRESS_N inner boots of the test kernel per configuration (nsvm split and
# full irqchip, kvm_amd split), failures printed with the inner console and
# the test VM's kernel log. STRESS_TCG=single runs the test VM with one TCG
# thread (no MTTCG) to tell QEMU's MTTCG races from nsvm's own defects;
# STRESS_PIN=1 runs the inner QEMU on the test VM's CPU 1 only; STRESS_HOG=1
# adds a busy loop on that CPU; STRESS_ONLY=nsvm-split|nsvm-full|kvm-split
# runs one configuration; STRESS_MODPARAMS=npt_huge=0,flush_every_entry=1
# loads nsvm with these parameters.
STRESS_N ?= 10
qemu-stress: initramfs-qemu
	@qemu-scripts/run-qemu.sh $(if $(filter single,$(STRESS_TCG)),--tcg-single) --timeout 5400 --mem 3G \
	   --kernel $$(cat $(BUILD)/kdir)/arch/x86/boot/bzImage --initrd $(BUILD)/initramfs-qemu.cpio \
	   --append "log_buf_len=8M nsvm_stress_n=$(STRESS_N) $(if $(STRESS_PIN),nsvm_stress_pin=1) $(if $(STRESS_HOG),nsvm_stress_hog=1) $(if $(STRESS_ONLY),nsvm_stress_only=$(STRESS_ONLY)) $(if $(STRESS_MODPARAMS),nsvm_stress_modparams=$(STRESS_MODPARAMS))" --log $(BUILD)/qemu-stress.log -- qemustress

# The demo: boot the test kernel with SVM emulated, load nsvm, run `nsvm info`, unload.
run: initramfs
	@qemu-scripts/run-qemu.sh --kernel $$(cat $(BUILD)/kdir)/arch/x86/boot/bzImage \
	   --initrd $(BUILD)/initramfs.cpio --log $(BUILD)/demo.log -- demo

host-test: tcg-cost-test
	cargo test --locked --workspace

# Host test of the bench cost plugin's instruction classifier
# (tools/tcg-cost/classify_test.c, cases encoded by the assembler).
tcg-cost-test: | $(BUILD)
	@$(CC) -O2 -Wall -Wextra -Werror -o $(BUILD)/tcg-cost-test tools/tcg-cost/classify.c \
	   tools/tcg-cost/classify_test.c tools/tcg-cost/classify_cases.S && $(BUILD)/tcg-cost-test

# Lints, part of `make test`; any warning fails. The workspace: cargo clippy
# with the [workspace.lints] of Cargo.toml (undocumented unsafe blocks and
# unsafe operations in unsafe fns are errors). The module: the kernel's own
# clippy run (CLIPPY=1) of the crate root, with Linux 7.2's Rust flags
# (rust_common_flags: -Wclippy::all, -Wclippy::undocumented_unsafe_blocks,
# ...) and undocumented unsafe blocks made an error; any other warning of
# the build fails it too. It builds from scratch in its own MO dir (so
# warnings show on every run) and leaves build/module alone. The core crate
# is compiled by plain rustc there (Kbuild) and linted by the workspace run.
clippy: clippy-workspace clippy-module

clippy-workspace:
	cargo clippy --locked --workspace --all-targets -- -D warnings

clippy-module: kernel
	@kdir=$${KDIR:-$$(cat $(BUILD)/kdir)}; out=$(BUILD)/module-clippy; \
	 eval "$$(qemu-scripts/crate-src.py bitflags static_assertions)"; \
	 rm -rf $$out; mkdir -p $$out; \
	 $(MAKE) -s -C $$kdir M=$(ROOT) MO=$$out LLVM=$(KLLVM) RUSTC=$(KRUSTC) BINDGEN=$(KBINDGEN) \
	   CLIPPY=1 CLIPPY_DRIVER=$(KCLIPPY_DRIVER) RUSTFLAGS_MODULE=-Dclippy::undocumented_unsafe_blocks \
	   NSVM_BITFLAGS_SRC=$$NSVM_BITFLAGS_SRC NSVM_STATIC_ASSERTIONS_SRC=$$NSVM_STATIC_ASSERTIONS_SRC \
	   modules > $(BUILD)/clippy-module.log 2>&1; rc=$$?; \
	 cat $(BUILD)/clippy-module.log; \
	 n=$$(grep -E '(^|: )(warning|error)(\[[^]]*\])?:' $(BUILD)/clippy-module.log | grep -cvE 'warnings? emitted|aborting due to'); \
	 if [ $$rc != 0 ] || [ $$n != 0 ]; then \
	   echo "clippy: the module build has $$n warnings or errors (status $$rc; log in $(BUILD)/clippy-module.log)"; exit 1; fi; \
	 echo "clippy: module clean"

# The suites in one boot, then the shootdown suite in a second one with
# QEMU's single-threaded TCG (tests/qemu/shootdown.sh says why), then the
# qemu suite (QEMU inside the test VM) in a third, KVM's selftests in a
# fourth (SELFTEST_SUITES); the last line sums them.
SINGLE_SUITES ?= shootdown
QEMU_SUITES ?= qemu
SELFTEST_SUITES ?= selftests
qemu-test: initramfs $(if $(strip $(QEMU_SUITES)),initramfs-qemu) $(if $(strip $(SELFTEST_SUITES)),initramfs-selftests)
	@set -o pipefail; kernel=$$(cat $(BUILD)/kdir)/arch/x86/boot/bzImage; rc=0; \
	 : > $(BUILD)/qemu-test.summary; \
	 if [ -n "$(SUITES)" ]; then \
	   qemu-scripts/run-qemu.sh --kernel $$kernel --initrd $(BUILD)/initramfs.cpio \
	     --log $(BUILD)/qemu-test.log -- $(SUITES) | tee -a $(BUILD)/qemu-test.summary || rc=1; \
	 fi; \
	 if [ -n "$(SINGLE_SUITES)" ]; then \
	   qemu-scripts/run-qemu.sh --tcg-single --kernel $$kernel --initrd $(BUILD)/initramfs.cpio \
	     --log $(BUILD)/qemu-test-single.log -- $(SINGLE_SUITES) | tee -a $(BUILD)/qemu-test.summary || rc=1; \
	 fi; \
	 if [ -n "$(strip $(QEMU_SUITES))" ]; then \
	   qemu-scripts/run-qemu.sh --boot-again-if-host-dies --mem 3G --kernel $$kernel --initrd $(BUILD)/initramfs-qemu.cpio \
	     --log $(BUILD)/qemu-test-qemu.log -- $(QEMU_SUITES) | tee -a $(BUILD)/qemu-test.summary || rc=1; \
	 fi; \
	 if [ -n "$(strip $(SELFTEST_SUITES))" ]; then \
	   qemu-scripts/run-qemu.sh --timeout $(SELFTESTS_TIMEOUT) --kernel $$kernel --initrd $(BUILD)/initramfs-selftests.cpio \
	     --log $(BUILD)/qemu-test-selftests.log -- $(SELFTEST_SUITES) | tee -a $(BUILD)/qemu-test.summary || rc=1; \
	 fi; \
	 sed -n 's/^qemu: \([0-9]*\) passed, \([0-9]*\) failed$$/\1 \2/p' $(BUILD)/qemu-test.summary | \
	   awk '{p += $$1; f += $$2} END {printf "QEMU suites: %d passed, %d failed\n", p, f}'; \
	 exit $$rc

# The debug run: the debug kernel (nsvmdebug=1 on its command line) runs
# DEBUG_SUITES in one boot and DEBUG_SINGLE_SUITES (the shootdown suite,
# single-threaded TCG as in qemu-test) in a second one; each boot ends with
# kcheck, which scans for kmemleak reports and fails on any KASAN, lockdep,
# kmemleak, BUG or WARNING report in the kernel log (printed), and with its
# own "qemu: N passed, N failed". A new suite that should run on the debug
# kernel too joins one of the two lists. The first boot (MTTCG) is run once
# more when the test VM's kernel panics before the suites report (said on
# the output, first log kept as .1): seen once, a soft-lockup panic in
# kvm_amd's KVM_GET_DIRTY_LOG waiting 75 s for CPU 0 to answer a TLB-flush
# IPI (the MTTCG race of docs/architecture.md, which can leave CPU 0 with
# GIF clear, as in the qemu boot).
DEBUG_SUITES ?= l0 nested apic pit irqchip dirtylog
DEBUG_SINGLE_SUITES ?= shootdown
DEBUG_TIMEOUT ?= 2400
# loglevel=5: warnings (lockdep splats, WARN(), the stacks in KASAN
# reports) reach the serial log as they happen, where run-qemu.sh looks
# for them too, even when a deadlock stops the boot before kcheck.
DEBUG_APPEND := nsvmdebug=1 loglevel=5
qemu-test-debug: initramfs-debug
	@set -o pipefail; kernel=$$(cat $(BUILD)/kdir-debug)/arch/x86/boot/bzImage; rc=0; : > $(BUILD)/qemu-test-debug.summary; \
	 if [ -n "$(strip $(DEBUG_SUITES))" ]; then \
	   qemu-scripts/run-qemu.sh --boot-again-if-host-dies --timeout $(DEBUG_TIMEOUT) --append "$(DEBUG_APPEND)" --kernel $$kernel \
	     --initrd $(BUILD)/debug/initramfs.cpio --log $(BUILD)/qemu-test-debug.log -- $(DEBUG_SUITES) kcheck \
	     | tee -a $(BUILD)/qemu-test-debug.summary || rc=1; \
	 fi; \
	 if [ -n "$(strip $(DEBUG_SINGLE_SUITES))" ]; then \
	   qemu-scripts/run-qemu.sh --tcg-single --timeout $(DEBUG_TIMEOUT) --append "$(DEBUG_APPEND)" --kernel $$kernel \
	     --initrd $(BUILD)/debug/initramfs.cpio --log $(BUILD)/qemu-test-debug-single.log -- $(DEBUG_SINGLE_SUITES) kcheck \
	     | tee -a $(BUILD)/qemu-test-debug.summary || rc=1; \
	 fi; \
	 sed -n 's/^qemu: \([0-9]*\) passed, \([0-9]*\) failed$$/\1 \2/p' $(BUILD)/qemu-test-debug.summary | \
	   awk '{p += $$1; f += $$2} END {printf "QEMU suites on the debug kernel: %d passed, %d failed\n", p, f}'; \
	 exit $$rc

# Every test: host unit tests, lints, the QEMU suites, then the same on the
# debug kernel. Non-zero on any failure.
test: deps
	@$(MAKE) --no-print-directory host-test
	@$(MAKE) --no-print-directory clippy
	@$(MAKE) --no-print-directory initramfs-l1
	@rm -f $(BUILD)/qemu-test-l1.rc; \
	 ( $(MAKE) --no-print-directory qemu-test-l1-run > $(BUILD)/qemu-test-l1.all 2>&1; echo $$? > $(BUILD)/qemu-test-l1.rc ) & \
	 rc=0; \
	 $(MAKE) --no-print-directory qemu-test || rc=1; \
	 $(MAKE) --no-print-directory qemu-test-debug || rc=1; \
	 echo "=== the l1 suite's boot (run beside the others) ==="; \
	 wait; cat $(BUILD)/qemu-test-l1.all; \
	 [ "$$(cat $(BUILD)/qemu-test-l1.rc 2>/dev/null)" = 0 ] || rc=1; \
	 exit $$rc

# The QEMU TCG race behind "host state in a VMCB" (docs/architecture.md),
# shown without nsvm (not part of `make test`): kvm_amd runs the
# tests/guests/xrstor_race64 payload under QEMU's multi-threaded TCG, where
# it is expected to fail (tests/qemu/qemubug.sh). Succeeds when the bug
# shows: a failed run of the payload, or the test VM dying once the racing
# runs began (the L0 host's own state is hit too).
qemu-bug: initramfs
	@log=$(BUILD)/qemu-bug.log; \
	 qemu-scripts/run-qemu.sh --timeout 600 --kernel $$(cat $(BUILD)/kdir)/arch/x86/boot/bzImage \
	   --initrd $(BUILD)/initramfs.cpio --log $$log -- qemubug > /dev/null 2>&1; \
	 grep -a '^PASS: control\|^FAIL: control\|^qemubug:' $$log; \
	 if ! grep -aq '^PASS: control' $$log; then echo "qemu-bug: the control runs failed (see $$log)"; exit 1; fi; \
	 if grep -aq '^qemubug: reproduced' $$log; then echo "qemu-bug: reproduced (log: $$log)"; \
	 elif grep -aq '^qemubug: race started' $$log && ! grep -aq '^qemubug: race survived' $$log; then \
	   echo "qemu-bug: reproduced: the test VM died during the racing runs (log: $$log)"; \
	 else echo "qemu-bug: not reproduced (log: $$log)"; exit 1; fi

# Benchmark (not part of `make test`): nsvm vs kvm_amd in one boot under
# -icount shift=0; figures in build/bench.log (see docs/bench.md). The TCG
# plugin tools/tcg-cost counts the instructions of each measurement window
# by class; bench-report.sh then prints the comparison with the estimated
# hardware cycles (build/bench-cost.txt: the plugin's counts).
# BENCH_PROFILE=1 adds a profile: the functions (host kernel, nsvm, kvm,
# kvm_amd; guest and VMM as "[user half]") that execute the instructions of
# each row, per iteration and device (BENCH_TOP of them, default 15; with
# BENCH_DETAIL=TEXT, the blocks of the functions whose name has TEXT), from
# the plugin's per-block counts (build/bench-profile.txt); the plugin's
# callbacks slow the boot down a few times.
# BENCH_QEMU=0 leaves out the second boot: QEMU 10 inside the test VM
# booting the test kernel to its init on kvm_amd and on nsvm, timed by the
# inner kernel's uptime at init (tests/qemu/benchqemu.sh), a few minutes.
BENCH_N ?= 1000
BENCH_PROFILE ?=
BENCH_TOP ?= 15
BENCH_QEMU ?= 1
# BENCH_L1=0 leaves out the third boot (tests/qemu/benchl1.sh, `make
# bench-l1` alone): an L1 Linux with KVM (kvm_amd nested=1) as L1
# hypervisor, on kvm_amd and on nsvm as L0; in it nsvm bench on the L1's
# /dev/kvm (BENCH_L1_N iterations) and QEMU booting an L2 Linux, with the
# L0's exits per L2 exit. See docs/bench.md for its cost (a long boot).
BENCH_L1 ?= 1
BENCH_L1_N ?= 2000
# BENCH_L1_TRACE=msr: count the MSRs L1 makes nsvm handle during the L1's
# bench (tests/qemu/benchl1.sh; tracing skews that run's figures).
# BENCH_PROFILE=1 with bench-l1: the L1's bench run profiled per function
# (build/bench-l1-profile.log; no L2 boot in that run; kernel functions
# are the L0's and the L1's together, nsvm's are L0's, kvm's the L1's).
BENCH_L1_TRACE ?=
bench: initramfs $(if $(filter 1,$(BENCH_QEMU) $(BENCH_L1)),initramfs-qemu) $(BUILD)/tcg-cost.so
	@rm -f $(BUILD)/bench-cost.txt $(BUILD)/bench-profile.txt
	@qemu-scripts/run-qemu.sh --icount --smp 1 --kernel $$(cat $(BUILD)/kdir)/arch/x86/boot/bzImage \
	   --initrd $(BUILD)/initramfs.cpio --log $(BUILD)/bench.log --append "nsvmbench=$(BENCH_N) nokaslr $(if $(BENCH_MODPARAMS),nsvmbench_modparams=$(BENCH_MODPARAMS))" \
	   --plugin $(BUILD)/tcg-cost.so,out=$(BUILD)/bench-cost.txt$(if $(BENCH_PROFILE),$(comma)profile=$(BUILD)/bench-profile.txt) -- bench
	@qemu-scripts/bench-report.sh $(BUILD)/bench.log $(BUILD)/bench-cost.txt $(TOOL_BIN) | tee -a $(BUILD)/bench.log
	@if [ -n "$(BENCH_PROFILE)" ]; then kdir=$$(cat $(BUILD)/kdir); \
	   echo "=== where each row's instructions go (per iteration; qemu-scripts/bench-profile.py) ==="; \
	   qemu-scripts/bench-profile.py $(BUILD)/bench-profile.txt $(BUILD)/bench.log $$kdir/System.map $(BENCH_N) $(BENCH_TOP) \
	     nsvm=$(BUILD)/module/nsvm.ko kvm=$$kdir/arch/x86/kvm/kvm.ko kvm_amd=$$kdir/arch/x86/kvm/kvm-amd.ko $(if $(BENCH_DETAIL),"detail=$(BENCH_DETAIL)") | tee $(BUILD)/bench-profile.log; fi
	@if [ "$(BENCH_QEMU)" = 1 ]; then \
	   rm -f $(BUILD)/bench-qemu-cost.txt $(BUILD)/bench-qemu-profile.txt; \
	   qemu-scripts/run-qemu.sh --icount --smp 1 --mem 3G --timeout 3600 --kernel $$(cat $(BUILD)/kdir)/arch/x86/boot/bzImage \
	     --initrd $(BUILD)/initramfs-qemu.cpio --log $(BUILD)/bench-qemu.log --append nokaslr \
	     --plugin $(BUILD)/tcg-cost.so,out=$(BUILD)/bench-qemu-cost.txt$(if $(BENCH_PROFILE),$(comma)profile=$(BUILD)/bench-qemu-profile.txt) -- benchqemu > /dev/null; \
	   echo "=== QEMU 10 boots the test kernel to its init (inner -smp 2, split irqchip; guest s = the inner kernel's uptime at init, guest TSC / 2e9 under -icount; instr and VMRUNs: the whole QEMU run, from the cost plugin) ==="; \
	   awk 'FNR == NR {if ($$1 == "window") {split($$2, t, "="); c = 0; for (i = 4; i <= NF; i++) {split($$i, kv, "="); if (kv[1] !~ /^(tlb_flush_all|tlb_flush_asid|vmcb_unread)$$/) c += kv[2]; if (kv[1] == "vmrun") vr[t[2]] = kv[2]} ins[t[2]] = c}; next} \
	        /^NSVM-BENCH-QEMU / {split($$4, u, "="); split($$5, w, "="); split($$6, g, "="); s[$$2] += u[2]; n[$$2]++; wall[$$2] += w[2]; I[$$2] += ins[g[2]]; V[$$2] += vr[g[2]]} \
	        END {if (!n["nsvm"] || !n["kvm"]) {print "bench-qemu: a device has no boot (see build/bench-qemu.log)"; exit 1} \
	             printf "%-8s %12s %16s %12s %10s %6s\n", "device", "guest s", "instr/boot", "VMRUNs/boot", "wall s", "runs"; \
	             for (d in n) printf "%-8s %12.3f %16.0f %12.0f %10.1f %6d\n", d, s[d] / n[d], I[d] / n[d], V[d] / n[d], wall[d] / n[d], n[d]; \
	             printf "ratio nsvm / kvm_amd: guest s %.2f, instructions %.2f (goal <= 1.0)\n", (s["nsvm"] / n["nsvm"]) / (s["kvm"] / n["kvm"]), (I["nsvm"] / n["nsvm"]) / (I["kvm"] / n["kvm"])}' \
	     $(BUILD)/bench-qemu-cost.txt $(BUILD)/bench-qemu.log | tee -a $(BUILD)/bench.log; \
	   if [ -n "$(BENCH_PROFILE)" ]; then kdir=$$(cat $(BUILD)/kdir); \
	     echo "=== where a QEMU boot's instructions go (per boot, row 1; qemu-scripts/bench-profile.py) ==="; \
	     qemu-scripts/bench-profile.py $(BUILD)/bench-qemu-profile.txt $(BUILD)/bench-qemu.log $$kdir/System.map 2 $(BENCH_TOP) \
	       nsvm=$(BUILD)/module/nsvm.ko kvm=$$kdir/arch/x86/kvm/kvm.ko kvm_amd=$$kdir/arch/x86/kvm/kvm-amd.ko $(if $(BENCH_DETAIL),"detail=$(BENCH_DETAIL)") \
	       | tee $(BUILD)/bench-qemu-profile.log; fi; fi
	@if [ "$(BENCH_L1)" = 1 ]; then $(MAKE) --no-print-directory bench-l1-run; fi

bench-l1: initramfs-qemu $(if $(BENCH_PROFILE),$(BUILD)/tcg-cost.so)
	@$(MAKE) --no-print-directory bench-l1-run

# The L1 rows' boot (tests/qemu/benchl1.sh prints NSVM-BENCH-L1 lines per
# L0; the table is appended to build/bench.log).
bench-l1-run:
	@set -o pipefail; qemu-scripts/run-qemu.sh --icount --smp 1 --mem 4G --timeout 5400 --kernel $$(cat $(BUILD)/kdir)/arch/x86/boot/bzImage \
	   --initrd $(BUILD)/initramfs-qemu.cpio --log $(BUILD)/bench-l1.log --append "nsvmbench=$(BENCH_L1_N) nokaslr $(if $(BENCH_L1_TRACE),nsvmbenchtrace=$(BENCH_L1_TRACE)) $(if $(BENCH_PROFILE),nsvmbenchprofile=1) $(if $(BENCH_MODPARAMS),nsvmbench_modparams=$(BENCH_MODPARAMS))" \
	   $(if $(BENCH_PROFILE),--plugin $(BUILD)/tcg-cost.so$(comma)out=$(BUILD)/bench-l1-cost.txt$(comma)profile=$(BUILD)/bench-l1-profile.txt) -- benchl1 > /dev/null; \
	 qemu-scripts/bench-l1-report.sh $(BUILD)/bench-l1.log $(TOOL_BIN) | tee -a $(BUILD)/bench.log
	@if [ -n "$(BENCH_PROFILE)" ]; then kdir=$$(cat $(BUILD)/kdir); \
	   echo "=== where each row's instructions go in the L1's bench (per iteration of the L1's guest; kernel functions: L0's and L1's together) ==="; \
	   qemu-scripts/bench-profile.py $(BUILD)/bench-l1-profile.txt $(BUILD)/bench-l1.log $$kdir/System.map $(BENCH_L1_N) $(BENCH_TOP) \
	     nsvm=$(BUILD)/module/nsvm.ko kvm=$$kdir/arch/x86/kvm/kvm.ko kvm_amd=$$kdir/arch/x86/kvm/kvm-amd.ko $(if $(BENCH_DETAIL),"detail=$(BENCH_DETAIL)") | tee $(BUILD)/bench-l1-profile.log; fi

# The bench's TCG plugin, built against the installed QEMU's qemu-plugin.h
# (not packaged by Debian: qemu-scripts/plugin-header.sh takes it from the
# source package into the cache), then loaded once by that QEMU (the plugin
# refuses a QEMU whose plugin API is not its header's).
$(BUILD)/tcg-cost.so: tools/tcg-cost/cost.c tools/tcg-cost/classify.c tools/tcg-cost/classify.h | $(BUILD) deps
	@hdr=$$(qemu-scripts/plugin-header.sh) && \
	 $(CC) -shared -fPIC -O2 -Wall -Wextra -Werror -I$$hdr $$(pkg-config --cflags glib-2.0) \
	   -o $@.tmp tools/tcg-cost/cost.c tools/tcg-cost/classify.c && \
	 echo quit | qemu-system-x86_64 -M none -accel tcg -nodefaults -display none -monitor stdio \
	   -plugin file=$@.tmp,out=/dev/null > /dev/null && mv $@.tmp $@ && echo "built $@"

clean:
	rm -rf $(BUILD) target
