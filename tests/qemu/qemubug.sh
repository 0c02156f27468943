# QEMU's TCG race behind "host state in a VMCB" (docs/architecture.md), shown
# without nsvm: kvm_amd (nested=1) runs tests/guests/xrstor_race64, whose
# vCPU 0 exits (CPUID) 200,000 times while vCPU 1 executes FXRSTOR in a
# loop, each vCPU pinned to the CPU of its number. Not part of `make test`:
# run by `make qemu-bug` under QEMU's multi-threaded TCG, where it is
# expected to fail (kvm_amd's vCPU on CPU 0 triple-faults or stops with an
# internal error, or the whole test VM dies), while the same payload with
# the roles swapped (xrstor_swap64: the exits on CPU 1) runs clean.
#
# The race: every FXRSTOR/XRSTOR/FRSTOR/FLDENV (with FSW.ES clear) runs
# QEMU's cpu_clear_ignne(), a plain read-modify-write of the *first* CPU's
# env->hflags2 from whichever vCPU thread executes it. A concurrent VMRUN
# or #VMEXIT on CPU 0, which sets or clears GIF and nested paging (NPT) in
# the same word, can be undone.
. /tests/lib.sh
G=/guests

insmod $MODDIR/irqbypass.ko; insmod $MODDIR/kvm.ko
case_ "load kvm_amd nested=1"
check "loaded" insmod $MODDIR/kvm-amd.ko nested=1

case_ "control: exits on CPU 1, FXRSTOR loop on CPU 0 (xrstor_swap64, 3 runs): every run completes"
for i in 1 2 3; do
    timeout 120 nsvm run --device /dev/kvm --vcpus 2 --pin-vcpus $G/xrstor_swap64.bin > /tmp/swap.out 2> /tmp/swap.err
    expect_eq "exit status of run $i" 0 $?
    expect_line /tmp/swap.out "^xrstor race: 200000 exits"
done
verdict

case_ "race: exits on CPU 0, FXRSTOR loop on CPU 1 (xrstor_race64, at most 5 runs): kvm_amd's vCPU fails"
echo "qemubug: race started"
shown=""
for i in 1 2 3 4 5; do
    timeout 120 nsvm run --device /dev/kvm --vcpus 2 --pin-vcpus $G/xrstor_race64.bin > /tmp/race.out 2> /tmp/race.err
    rc=$?
    if [ $rc != 0 ] || ! grep -q "^xrstor race: 200000 exits" /tmp/race.out; then
        shown="run $i, status $rc: $(tail -n 1 /tmp/race.err)"
        break
    fi
done
if [ -n "$shown" ]; then
    echo "qemubug: reproduced ($shown)"
else
    echo "qemubug: race survived 5 runs"
    wrong_ "every run completed: the race did not show"
fi
verdict
finish
