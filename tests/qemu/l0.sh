# L0 suite: guest payloads run with `nsvm run` on /dev/nsvm and then on
# /dev/kvm (kvm_amd) in the same boot; guest-visible results (serial output,
# register dumps, exit status, exits seen by userspace) must match, and each
# payload's own expectations must hold.
. /tests/lib.sh
G=/guests

# run_guest DEVICE NAME ARGS...: output in /tmp/DEV.NAME.{out,sum}, status in .rc
run_guest() {
    dev=$1; name=$2; shift 2
    tag=$(basename $dev)
    # A run stopped by the known QEMU TCG host-state issue (several vCPUs,
    # docs/architecture.md) is run again, twice at most.
    for attempt in 1 2 3; do
        timeout 120 nsvm run --device $dev --dump-regs --stats /tmp/$tag.$name.stats "$@" $G/$name.bin > /tmp/$tag.$name.out 2> /tmp/$tag.$name.err
        echo $? > /tmp/$tag.$name.rc
        grep -q "known QEMU TCG issue" /tmp/$tag.$name.err || break
        echo "note: $name on $dev hit the known QEMU TCG host-state issue (attempt $attempt)"
    done
    sed -e "s|on $dev|on DEVICE|" /tmp/$tag.$name.err > /tmp/$tag.$name.sum
}

PAYLOADS="real16 prot32 long64 triple irq16 mmio64 strio16 sens64 smp64 thp64 nested64"
# fpu32 is driven by nsvm-apitest (fpu_isolation).
args_for() {
    case $1 in
        prot32) echo "--mode protected";;
        irq16) echo "--irq-on-hlt 0x20:3";;
        mmio64) echo "--trace-mmio";;
        smp64) echo "--vcpus 3";;
        thp64) echo "--mem 64M";;
        *) echo "";;
    esac
}

tmp_used() { df -k /tmp | awk 'NR==2 {print $3}'; }
FREE0=$(free_kb); TMP0=$(tmp_used)
case_ "load nsvm"
check "loaded" load_nsvm
for p in $PAYLOADS; do run_guest /dev/nsvm $p $(args_for $p); done

case_ "real mode: serial output, port I/O of every size, CPUID vendor, debug exit"
o=/tmp/nsvm.real16.out
cat $o /tmp/nsvm.real16.err
[ "$(cat /tmp/nsvm.real16.rc)" = 42 ] && grep -q "^real mode: hello from the guest$" $o \
  && grep -q "^LSR=60$" $o && grep -q "^vendor: AuthenticAMD$" $o && pass || fail "rc=$(cat /tmp/nsvm.real16.rc)"

case_ "protected mode entry and CPUID leaf 1"
cat /tmp/nsvm.prot32.out /tmp/nsvm.prot32.err
[ "$(cat /tmp/nsvm.prot32.rc)" = 3 ] && grep -q "^protected mode: hello" /tmp/nsvm.prot32.out && pass || fail "rc=$(cat /tmp/nsvm.prot32.rc)"

case_ "long mode: MSR round trips, #GP/#UD/#PF through the guest's IDT"
cat /tmp/nsvm.long64.out /tmp/nsvm.long64.err
o=/tmp/nsvm.long64.out
[ "$(cat /tmp/nsvm.long64.rc)" = 7 ] && grep -q "MSR round trips ok" $o && grep -q "#GP for an unknown MSR" $o \
  && grep -q "#UD handled" $o && grep -q "#PF handled" $o && grep -q "r12=0x200000000 r13=0x500 r14=0x1122334455667788 r15=0x0" $o \
  && pass || fail "rc=$(cat /tmp/nsvm.long64.rc)"

case_ "HLT woken by injected interrupts; interrupt window after STI; injection order"
cat /tmp/nsvm.irq16.out /tmp/nsvm.irq16.err
# 3 HLT wake-ups (I), then A and B only after STI and the instruction in its shadow.
# Each of the 3 HLTs was woken (halt_wakeups) after some time halted in userspace.
grep -E "halt_|irq_" /tmp/nsvm.irq16.stats
[ "$(cat /tmp/nsvm.irq16.rc)" = 5 ] && grep -q "^III$" /tmp/nsvm.irq16.out && grep -q "^-sAB.$" /tmp/nsvm.irq16.out \
  && grep -qx "vcpu0.halt_exits 3" /tmp/nsvm.irq16.stats && grep -qx "vcpu0.halt_wakeups 3" /tmp/nsvm.irq16.stats \
  && grep -qx "vcpu0.irq_injections 5" /tmp/nsvm.irq16.stats && ! grep -qx "vcpu0.halt_wait_ns 0" /tmp/nsvm.irq16.stats \
  && pass || fail "rc=$(cat /tmp/nsvm.irq16.rc)"

case_ "MMIO stores and loads of every width through several encodings"
o=/tmp/nsvm.mmio64.out
cat $o /tmp/nsvm.mmio64.err
[ "$(cat /tmp/nsvm.mmio64.rc)" = 9 ] && [ "$(grep -c '^mmio write' $o)" = 10 ] && [ "$(grep -c '^mmio read' $o)" = 11 ] \
  && grep -q "^mmio write 0xd0000008 len 8 <- 0xfffffffffffffffe$" $o \
  && grep -q "^mmio write 0xd0000010 len 8 <- 0x8899aabbccddeeff$" $o \
  && grep -q "^mmio write 0xd000001e len 1 <- 0x5a$" $o \
  && grep -q "^r8=0x11 r9=0x2233 r10=0x44556677 r11=0xfffffffffffffffe$" $o \
  && grep -q "^r12=0xff r13=0xffffffffffffeeff r14=0xffffffff r15=0x2233$" $o \
  && pass || fail "rc=$(cat /tmp/nsvm.mmio64.rc)"

case_ "string port I/O: REP OUTS/INS of bytes and words, DF=1, segment override, REP with CX=0"
o=/tmp/nsvm.strio16.out
cat $o /tmp/nsvm.strio16.err
[ "$(cat /tmp/nsvm.strio16.rc)" = 11 ] && grep -q "^string out$" $o && grep -q "^words round trip ok$" $o \
  && grep -q "^abc$" $o && grep -q "^rax=0xb rbx=0x" $o && pass || fail "rc=$(cat /tmp/nsvm.strio16.rc)"

case_ "binary stats (KVM_GET_STATS_FD) count what the guest did"
s=/tmp/nsvm.real16.stats
grep -E "^vcpu0\.(exits|exit_cpuid|exit_ioio|io_exits|exits_userspace|npt_fills) |^vm\." $s
# real16: one CPUID, 68 port I/O exits (all to userspace), RAM faulted in.
grep -qx "vcpu0.exit_cpuid 1" $s && grep -qx "vcpu0.io_exits 68" $s && grep -qx "vcpu0.exit_ioio 68" $s \
  && grep -qx "vcpu0.exits_userspace 68" $s && grep -qx "vm.vcpus 1" $s && grep -qx "vm.memslots 1" $s \
  && [ "$(sed -n 's/^vm.npt_fills //p' $s)" -ge 2 ] && pass || fail "$(cat $s | head -20)"

case_ "nsvm stats --pid reads a running VMM's VM and vCPU"
nsvm run --quiet /guests/spin.bin & vmm=$!
sleep 2
nsvm stats --pid $vmm > /tmp/stats.txt 2>&1; rc=$?
nsvm stats --pid $vmm --json > /tmp/stats.json 2>&1
kill $vmm; wait $vmm 2>/dev/null
cat /tmp/stats.txt
[ $rc = 0 ] && grep -q "^vm (nsvm-$vmm):" /tmp/stats.txt && grep -q "^vcpu0 (nsvm-$vmm/vcpu-0):" /tmp/stats.txt \
  && grep -q "^  exit_intr [1-9]" /tmp/stats.txt && grep -q '"npt_fills"' /tmp/stats.json && pass || fail "rc=$rc"

case_ "nsvm bench runs (sanity; figures come from make bench)"
nsvm bench --iterations 20 > /tmp/bench.txt 2>&1; rc=$?
cat /tmp/bench.txt
[ $rc = 0 ] && [ "$(grep -cE '^(CPUID|RDMSR|IO|first|HLT|L2|nested).* [0-9.]+ +[0-9]+$' /tmp/bench.txt)" = 9 ] && pass || fail "rc=$rc"

case_ "sensitive-instruction policy: the guest cannot tell, the counters can"
ok=1
for p in sens64 long64 real16 strio16; do
    timeout 120 nsvm run --policy all --dump-regs --stats /tmp/pol.$p.stats $(args_for $p) $G/$p.bin > /tmp/pol.$p.out 2>/tmp/pol.$p.err
    echo $? > /tmp/pol.$p.rc
    if ! cmp -s /tmp/pol.$p.out /tmp/nsvm.$p.out || ! cmp -s /tmp/pol.$p.rc /tmp/nsvm.$p.rc; then
        ok=0; echo "$p differs with the policy:"; diff /tmp/nsvm.$p.out /tmp/pol.$p.out; cat /tmp/pol.$p.err
    fi
done
cat /tmp/nsvm.sens64.out
s=/tmp/pol.sens64.stats
grep -E "exit_(idtr|gdtr|ldtr|tr)_read|exit_read_cr0|exit_pushf|exit_popf|exit_rdtsc|exit_excp" $s /tmp/pol.long64.stats
# sens64 executes 1 SIDT, 1 SGDT, 1 SLDT, 1 STR, 3 SMSW + 1 MOV CR0, 3 PUSHF, 3 POPF, 2 RDTSC;
# long64 takes one #UD and one #PF from the processor, reflected to its own
# IDT; its #GP comes from L0's RDMSR emulation (an injected event, which
# exception intercepts do not see).
[ $ok = 1 ] && grep -qx "vcpu0.exit_idtr_read 1" $s && grep -qx "vcpu0.exit_gdtr_read 1" $s \
  && grep -qx "vcpu0.exit_ldtr_read 1" $s && grep -qx "vcpu0.exit_tr_read 1" $s \
  && grep -qx "vcpu0.exit_read_cr0 4" $s && grep -qx "vcpu0.exit_pushf 3" $s \
  && grep -qx "vcpu0.exit_popf 4" $s && grep -qx "vcpu0.exit_rdtsc 2" $s \
  && grep -qx "vcpu0.exit_excp_gp 0" /tmp/pol.long64.stats && grep -qx "vcpu0.exception_injections 3" /tmp/pol.long64.stats \
  && grep -qx "vcpu0.exit_excp_ud 1" /tmp/pol.long64.stats \
  && grep -qx "vcpu0.exit_excp_pf 1" /tmp/pol.long64.stats && grep -qx "vcpu0.exit_idtr_read 0" /tmp/nsvm.sens64.stats \
  && pass || fail "see above"

# dump_stopped GUEST OUT: runs GUEST, stops its VMM while the guest runs,
# writes `nsvm dump` of it to OUT and returns nsvm dump's status.
dump_stopped() {
    nsvm run --quiet "$1" & vmm=$!
    sleep 1
    kill -STOP $vmm; sleep 1
    nsvm dump --pid $vmm > "$2" 2>&1; r=$?
    kill -CONT $vmm; kill $vmm; wait $vmm 2>/dev/null
    return $r
}

case_ "debugfs vmcb01 dump of a stopped VMM (nsvm dump)"
dump_stopped /guests/spin.bin /tmp/dump.txt; rc=$?
head -12 /tmp/dump.txt
[ $rc = 0 ] && grep -q "vmcb01 of vCPU 0 (stopped in userspace)" /tmp/dump.txt && grep -q "intercepts: .*CPUID.*VMRUN" /tmp/dump.txt \
  && grep -q "  nested_ctl: 0x1$" /tmp/dump.txt && grep -q "^  cs    sel 0x0000" /tmp/dump.txt \
  && [ -z "$(ls /sys/kernel/debug/nsvm/)" ] && pass || fail "rc=$rc; left: $(ls /sys/kernel/debug/nsvm/)"

case_ "three vCPUs in one VM (nsvm run --vcpus 3)"
cat /tmp/nsvm.smp64.out | head -3; cat /tmp/nsvm.smp64.err
[ "$(cat /tmp/nsvm.smp64.rc)" = 3 ] && grep -q "^all vCPUs checked in, mask 7$" /tmp/nsvm.smp64.out \
  && grep -q "^vcpu2.exits " /tmp/nsvm.smp64.stats && pass || fail "rc=$(cat /tmp/nsvm.smp64.rc)"

case_ "2 MiB NPT mappings where transparent huge pages back guest memory (none with --no-thp)"
# The test kernel (tinyconfig) has no madvise(2), so MADV_HUGEPAGE cannot ask
# for THP: switch THP to "always" for this case.
echo always > /sys/kernel/mm/transparent_hugepage/enabled
nsvm run --mem 64M --stats /tmp/thp.stats $G/thp64.bin > /tmp/thp.out 2>&1; rc1=$?
nsvm run --mem 64M --no-thp --stats /tmp/nothp.stats $G/thp64.bin > /tmp/nothp.out 2>&1; rc=$?
echo madvise > /sys/kernel/mm/transparent_hugepage/enabled
s=/tmp/thp.stats
grep "^vm\." $s
grep "^vm\.npt" /tmp/nothp.stats
h=$(sed -n 's/^vm.npt_pages_2m //p' $s)
[ $rc1 = 21 ] && [ $rc = 21 ] && [ "$h" -ge 8 ] \
  && grep -qx "vm.npt_pages_2m 0" /tmp/nothp.stats && pass "$h mappings of 2 MiB" || fail "2m pages: '$h'"

case_ "first nested step: an L1 hypervisor runs L2 (no nested paging), exits reflected"
cat /tmp/nsvm.nested64.out | head -5; cat /tmp/nsvm.nested64.err
grep -E "exit_vmrun|nested_vmruns|l2_exits|vmrun_invalid_asid" /tmp/nsvm.nested64.stats
[ "$(cat /tmp/nsvm.nested64.rc)" = 33 ] && grep -q "^L2 exit 72$" /tmp/nsvm.nested64.out && grep -q "^L2 exit 81$" /tmp/nsvm.nested64.out \
  && grep -q "^L2 exit 78$" /tmp/nsvm.nested64.out && grep -q "VMEXIT_INVALID" /tmp/nsvm.nested64.out \
  && grep -q "^next_rip consistent with NRIPS$" /tmp/nsvm.nested64.out \
  && grep -qx "vcpu0.vmrun_invalid_asid_zero 1" /tmp/nsvm.nested64.stats \
  && grep -qx "vcpu0.nested_vmruns 3" /tmp/nsvm.nested64.stats && grep -qx "vcpu0.l2_exits_reflected 3" /tmp/nsvm.nested64.stats \
  && pass || fail "rc=$(cat /tmp/nsvm.nested64.rc)"

case_ "malicious L1: 100,000 VMRUNs of random vmcb12 contents and random NPT12 trees"
mark_log
timeout 600 nsvm run --mem 16M --max-exits 100000000 --stats /tmp/evil.stats $G/evil64.bin > /tmp/evil.out 2>&1; rc=$?
cat /tmp/evil.out
grep -E "exit_vmrun|vmrun_invalid_[a-z_]+ [1-9]|npt02|npt12" /tmp/evil.stats | head -20
inv=$(sed -n 's/.*VMEXIT_INVALID: \([0-9]*\),.*/\1/p' /tmp/evil.out)
oth=$(sed -n 's/.*in L2 exits: \([0-9]*\).*/\1/p' /tmp/evil.out)
# The random trees both fault (reflected NPFs) and translate (NPT02 fills).
f12=$(sed -n 's/^vcpu0.npt12_faults //p' /tmp/evil.stats); f02=$(sed -n 's/^vcpu0.npt02_fills //p' /tmp/evil.stats)
[ $rc = 44 ] && [ $((inv + oth)) = 100000 ] && [ "$oth" -gt 10000 ] && grep -qx "vcpu0.exit_vmrun 100000" /tmp/evil.stats \
  && [ "${f12:-0}" -gt 1000 ] && [ "${f02:-0}" -gt 100 ] \
  && ! new_log | grep -E 'WARNING:|BUG:|Oops|Call Trace' && pass "invalid $inv, ran $oth" || fail "rc=$rc inv=$inv oth=$oth"

case_ "debugfs shows vmcb12, vmcb02, what the merge changed, and the nested event log while L2 runs"
dump_stopped /guests/nestspin64.bin /tmp/ndump.txt; rc=$?
sed -n '/vmcb12 -> vmcb02/,$p' /tmp/ndump.txt
[ $rc = 0 ] && grep -q "^vmcb12 at 0x" /tmp/ndump.txt && grep -q "^vmcb02 (what L0 runs L2 with)" /tmp/ndump.txt \
  && grep -q "^  + intercept INTR" /tmp/ndump.txt && grep -q "^  asid: 0x1 -> 0x2" /tmp/ndump.txt \
  && grep -q "^nested events (the last 64 of [0-9]*, oldest first; KVM tracepoint formats)" /tmp/ndump.txt \
  && grep -q "^ *[0-9]* kvm_nested_vmexit: vcpu 0 reason intr rip 0x[0-9a-f]* info1 0x0000000000000000" /tmp/ndump.txt \
  && pass || fail "rc=$rc"

case_ "non-canonical WRMSR to LSTAR raises #GP (APM; kvm_amd on TCG differs, not compared)"
run_guest /dev/nsvm noncanon64
[ "$(cat /tmp/nsvm.noncanon64.rc)" = 13 ] && pass || fail "rc=$(cat /tmp/nsvm.noncanon64.rc): $(cat /tmp/nsvm.noncanon64.err)"

case_ "KVM UAPI conformance and 10,000 random ioctls on /dev/nsvm"
mark_log
nsvm-apitest --device /dev/nsvm --guests $G --fuzz 10000 > /tmp/nsvm.apitest 2>&1; rc=$?
cat /tmp/nsvm.apitest
[ $rc = 0 ] && grep -q "^PASS: fuzz" /tmp/nsvm.apitest && ! new_log | grep -E 'WARNING:|BUG:|Oops' && pass || fail "rc=$rc"

case_ "200 VMs created, run and destroyed leak no memory"
nsvm-apitest --device /dev/nsvm vm_churn > /dev/null 2>&1   # warm-up (slab caches)
before=$(free_kb)
nsvm-apitest --device /dev/nsvm vm_churn; rc=$?
after=$(free_kb)
delta=$((before - after))
echo "free memory before $before KiB, after $after KiB: $delta KiB less after 200 VMs (bound 256 KiB; one leaked page per VM would be 800 KiB)"
[ $rc = 0 ] && [ $delta -lt 256 ] && pass "delta $delta KiB" || fail "rc=$rc delta=$delta KiB"

case_ "hostile guests: random code, modes and registers (300 VMs)"
mark_log
nsvm-apitest --device /dev/nsvm guest_fuzz; rc=$?
[ $rc = 0 ] && ! new_log | grep -E 'WARNING:|BUG:|Oops|Call Trace' && pass || fail "rc=$rc"

case_ "triple fault is KVM_EXIT_SHUTDOWN"
cat /tmp/nsvm.triple.err
# KVM resets the vCPU after a shutdown intercept (the VMCB is undefined).
[ "$(cat /tmp/nsvm.triple.rc)" = 2 ] && grep -q "shut down" /tmp/nsvm.triple.err \
  && grep -q "^rip=0xfff0 " /tmp/nsvm.triple.out && pass || fail "rc=$(cat /tmp/nsvm.triple.rc)"

case_ "unload nsvm after the guests (nothing leaked a module reference)"
check "unloaded" unload_nsvm

case_ "no memory leaked by the VMs of this suite"
FREE1=$(free_kb); TMP1=$(tmp_used)
# The suite's own result files live in /tmp (tmpfs, i.e. RAM): not a leak.
delta=$((FREE0 - FREE1 - (TMP1 - TMP0)))
# A coarse check over the whole suite (slab caches grow with the 10,000
# random ioctls); the precise one is the 200-VM churn above.
echo "free memory before loading nsvm $FREE0 KiB, after all VMs and unloading $FREE1 KiB, /tmp grew $((TMP1 - TMP0)) KiB: $delta KiB unaccounted (bound 2048 KiB: catches guest pages left pinned or page tables left behind)"
[ $delta -lt 2048 ] && pass "delta $delta KiB" || fail "delta $delta KiB"

# ---------------------------------------------------------------- kvm_amd
case_ "load kvm_amd (reference)"
insmod $MODDIR/irqbypass.ko; insmod $MODDIR/kvm.ko
check "kvm_amd loaded" insmod $MODDIR/kvm-amd.ko
for p in $PAYLOADS; do run_guest /dev/kvm $p $(args_for $p); done
case_ "nsvm stats --pid reads kvm_amd's statistics too"
nsvm run --quiet --device /dev/kvm /guests/spin.bin & vmm=$!
sleep 2
nsvm stats --pid $vmm > /tmp/kstats.txt 2>&1; rc=$?
kill $vmm; wait $vmm 2>/dev/null
head -5 /tmp/kstats.txt
[ $rc = 0 ] && grep -q "^vm (kvm-$vmm" /tmp/kstats.txt && grep -q "^vcpu0 (kvm-$vmm" /tmp/kstats.txt && pass || fail "rc=$rc"
case_ "nsvm and kvm_amd count the same userspace I/O exits"
a=$(grep "^vcpu0.io_exits " /tmp/nsvm.real16.stats); b=$(grep "^vcpu0.io_exits " /tmp/kvm.real16.stats)
[ -n "$a" ] && [ "$a" = "$b" ] && pass "$a" || fail "nsvm '$a' kvm '$b'"
case_ "the same conformance cases pass on /dev/kvm"
nsvm-apitest --device /dev/kvm --guests $G > /tmp/kvm.apitest 2>&1; rc=$?
cat /tmp/kvm.apitest
[ $rc = 0 ] && pass || fail "rc=$rc (a failing case here means the test, not nsvm, is wrong)"
rmmod kvm_amd; rmmod kvm; rmmod irqbypass

for p in $PAYLOADS; do
    case_ "$p: same guest-visible result on nsvm and kvm_amd"
    if cmp -s /tmp/nsvm.$p.out /tmp/kvm.$p.out && cmp -s /tmp/nsvm.$p.rc /tmp/kvm.$p.rc \
       && cmp -s /tmp/nsvm.$p.sum /tmp/kvm.$p.sum; then
        pass
    else
        fail "differs"; diff /tmp/nsvm.$p.out /tmp/kvm.$p.out; diff /tmp/nsvm.$p.sum /tmp/kvm.$p.sum
        echo "rc nsvm=$(cat /tmp/nsvm.$p.rc) kvm=$(cat /tmp/kvm.$p.rc)"
    fi
done

case_ "kernel log has no warning, oops or BUG"
if dmesg | grep -E 'WARNING:|BUG:|Oops|Call Trace|general protection'; then fail "see above"; else pass; fi
finish
