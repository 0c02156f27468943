# The demo (make run): load nsvm, show `nsvm info` and the per-CPU state, run a
# guest and an L1 hypervisor with its L2s, unload.
. /tests/lib.sh
case_ "insmod nsvm.ko"
check "loaded" load_nsvm
dmesg | grep nsvm
case_ "nsvm info"
check "info runs" nsvm info
case_ "nsvm cpus"
check "cpus runs" nsvm cpus
case_ "a guest on /dev/nsvm (nsvm run, real mode, exits with status 42)"
nsvm run --stats /tmp/demo.stats /guests/real16.bin; rc=$?
grep -E "^vcpu0\.(exits|io_exits|exit_cpuid|npt_fills) " /tmp/demo.stats
[ $rc = 42 ] && pass || fail "status $rc"
case_ "an L1 hypervisor on /dev/nsvm running L2 guests with nested paging (l1_npt)"
nsvm run --mem 8M --stats /tmp/demo.nested.stats /guests/l1_npt.bin; rc=$?
echo "per-level counters (nested VMRUNs, L2 exits reflected to L1 or handled in L0, shadow NPT02):"
grep -E "^vcpu0\.(l1_exits|nested_vmruns|l2_exits_reflected|l2_exits_l0|npt02_fills|npt02_flushes|npt12_faults) " /tmp/demo.nested.stats
[ $rc = 33 ] && pass || fail "status $rc"
case_ "rmmod nsvm"
check "unloaded" unload_nsvm
dmesg | grep nsvm | tail -n 1
nsvm cpus
finish
