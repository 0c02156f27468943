# The demo (make run): load nsvm, show `nsvm info` and the per-CPU state, unload.
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
case_ "rmmod nsvm"
check "unloaded" unload_nsvm
dmesg | grep nsvm | tail -n 1
nsvm cpus
finish
