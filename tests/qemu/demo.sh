# The demo (make run): load nsvm, show `nsvm info` and the per-CPU state, unload.
. /tests/lib.sh
case_ "insmod nsvm.ko"
check "loaded" load_nsvm
dmesg | grep nsvm
case_ "nsvm info"
check "info runs" nsvm info
case_ "nsvm cpus"
check "cpus runs" nsvm cpus
case_ "rmmod nsvm"
check "unloaded" unload_nsvm
dmesg | grep nsvm | tail -n 1
nsvm cpus
finish
