# Foundation suite: module bring-up, /dev/nsvm, `nsvm info`, load/unload
# leaks, exclusion with kvm_amd, CPU hotplug, system-fd ioctls.
. /tests/lib.sh
NCPU=$(grep -c ^processor /proc/cpuinfo)

# ---------------------------------------------------------------- load
case_ "module loads and /dev/nsvm appears"
mark_log
expect "insmod succeeds" load_nsvm
expect "/dev/nsvm is a character device" [ -c /dev/nsvm ]
expect "nsvm is in /proc/modules" loaded nsvm
[ -z "$WRONG" ] || new_log
verdict

case_ "/dev/nsvm is root-only by default"
m=$(stat -c %a /dev/nsvm)
expect_eq "mode of /dev/nsvm" 600 "$m"
verdict "mode $m"

case_ "non-root user is refused with a sentence"
as_nobody nsvm info > /tmp/nobody.out 2>&1; rc=$?
cat /tmp/nobody.out
expect_num "status of nsvm info as nobody" $rc -ne 0
expect_line /tmp/nobody.out "permission denied.*root-only.*dev_mode=0666"
verdict

case_ "load message names revision, ASIDs and CPUs"
new_log > /tmp/load.log
# The module's CPUID must read what `nsvm info` reads in userspace.
rev=$(nsvm info | sed -n 's/^host SVM: *revision \([0-9]*\), \([0-9]*\) ASIDs.*/\1/p')
nasid=$(nsvm info | sed -n 's/^host SVM: *revision \([0-9]*\), \([0-9]*\) ASIDs.*/\2/p')
expect_line /tmp/load.log "nsvm: SVM revision $rev, $nasid ASIDs, .* enabled on $NCPU of $NCPU CPUs"
[ -z "$WRONG" ] || cat /tmp/load.log
verdict "revision $rev, $nasid ASIDs"

# ---------------------------------------------------------------- info
case_ "nsvm info shows API version, SVM and NPT"
nsvm info > /tmp/info.txt; cat /tmp/info.txt
expect_line /tmp/info.txt "^API version:    12$"
expect_line /tmp/info.txt "^host SVM:       revision [0-9]*, [1-9][0-9]* ASIDs"
expect_line /tmp/info.txt "^SVM features:   .*npt"
expect_line /tmp/info.txt "SVM enabled on $NCPU of $NCPU online CPUs"
expect_line /tmp/info.txt "/dev/nsvm present"
verdict

case_ "nsvm info --json agrees with CPUID"
nsvm info --json > /tmp/info.json
expect_line /tmp/info.json '"api_version": 12'
expect_line /tmp/info.json '"npt"'
expect_line /tmp/info.json "\"cpus_enabled\": $NCPU"
expect_line /tmp/info.json '"USER_MEMORY": 1'
expect_line /tmp/info.json '"NESTED_STATE": 4224'
[ -z "$WRONG" ] || cat /tmp/info.json
verdict

case_ "every online CPU has EFER.SVME and a page-aligned host save area"
out=$(nsvm cpus); echo "$out"
echo "$out" > /tmp/cpus.txt
expect_no_line /tmp/cpus.txt "online.*svme=0"
expect_count /tmp/cpus.txt "online svme=1 hsave_pa=0x[0-9a-f]*000 nsvm=1" $NCPU
expect_no_line /tmp/cpus.txt "hsave_pa=0x0 "
verdict

# ---------------------------------------------------------------- ioctls
ioc() { nsvm ioctl "$@"; }
expect_ioctl() { # DESCRIPTION EXPECTED ARGS...
    d=$1; e=$2; shift 2
    got=$(ioc "$@" | cut -c1-${#e})
    expect_eq "nsvm ioctl $*" "$e" "$got"
    verdict "$d"
}
case_ "KVM_GET_API_VERSION"; expect_ioctl "returns 12" "ok 12" 0xae00
case_ "KVM_GET_API_VERSION with a non-zero argument (as KVM)"; expect_ioctl "EINVAL" "err EINVAL" 0xae00 0xdeadbeef
case_ "KVM_CHECK_EXTENSION(USER_MEMORY)"; expect_ioctl "1" "ok 1" 0xae03 3
case_ "KVM_CHECK_EXTENSION(NESTED_STATE): the largest state, as KVM"; expect_ioctl "4224" "ok 4224" 0xae03 157
case_ "KVM_CHECK_EXTENSION(unknown cap)"; expect_ioctl "0" "ok 0" 0xae03 0xffffffffffff
case_ "unknown KVM ioctl (as KVM's kvm_dev_ioctl)"; expect_ioctl "EINVAL" "err EINVAL" 0xae99
case_ "KVM_CREATE_VM with an unknown machine type"; expect_ioctl "EINVAL" "err EINVAL" 0xae01 5
case_ "KVM_GET_VCPU_MMAP_SIZE: three pages (kvm_run, PIO data, coalesced MMIO ring), as kvm_amd"; expect_ioctl "12288" "ok 12288" 0xae04
case_ "API_VERSION number with a read direction and size"; expect_ioctl "EINVAL" "err EINVAL" 0x8004ae00
case_ "random command"; expect_ioctl "EINVAL" "err EINVAL" 0xdeadbeef
case_ "NSVM_GET_HOST_INFO fills the buffer"; expect_ioctl "version 1" "ok 0 data 01 00 00 00" 0x8050b700 --out 80
case_ "NSVM_GET_HOST_INFO with a kernel pointer"; expect_ioctl "EFAULT" "err EFAULT" 0x8050b700 --bad-ptr
case_ "NSVM_GET_HOST_INFO with NULL"; expect_ioctl "EFAULT" "err EFAULT" 0x8050b700 0
case_ "NSVM_GET_HOST_INFO with a wrong size"; expect_ioctl "EINVAL" "err EINVAL" 0x8051b700 --out 81
case_ "NSVM_GET_HOST_INFO as a write"; expect_ioctl "EINVAL" "err EINVAL" 0x4050b700 --out 80

case_ "module cannot be unloaded while /dev/nsvm is open"
sleep 30 < /dev/nsvm & holder=$!
sleep 1
if rmmod nsvm 2>/dev/null; then
    fail "rmmod succeeded with an open file"
else
    kill $holder; wait $holder 2>/dev/null
    expect "rmmod works once /dev/nsvm is closed" rmmod nsvm
    verdict
fi

case_ "unload gives SVM back: EFER.SVME clear and VM_HSAVE_PA restored everywhere"
nsvm cpus > /tmp/cpus.txt 2>/dev/null; cat /tmp/cpus.txt
expect_count /tmp/cpus.txt "online svme=0 hsave_pa=0x0 " $NCPU
expect "/dev/nsvm is gone" [ ! -e /dev/nsvm ]
verdict

case_ "dev_mode=0666 widens /dev/nsvm to every user"
if load_nsvm dev_mode=0666; then
    expect_eq "mode of /dev/nsvm" 666 "$(stat -c %a /dev/nsvm)"
    expect_eq "KVM_GET_API_VERSION as nobody" "ok 12" "$(as_nobody nsvm ioctl 0xae00)"
    verdict
    unload_nsvm
else
    fail "load with dev_mode=0666 failed"
fi

case_ "dev_mode outside 0..0777 is refused with EINVAL"
mark_log
if load_nsvm dev_mode=01000 2>/tmp/err; then
    fail "loaded"; unload_nsvm
else
    new_log > /tmp/load.log
    expect_line /tmp/err "Invalid argument"
    expect_line /tmp/load.log "dev_mode=0o1000 is not a permission mode"
    [ -z "$WRONG" ] || cat /tmp/load.log
    verdict
fi

# ---------------------------------------------------------------- leaks
case_ "50 load/unload cycles leave no leak"
for i in 1 2 3 4 5; do load_nsvm && unload_nsvm; done
# Free memory moves by tens of KiB between two reads (caches of earlier
# suites settling): the 50 cycles are measured up to three times and the
# smallest loss counts. A real leak (a page or more per cycle) shows in
# every measurement.
ok=1
best=999999
deltas=""
for rep in 1 2 3; do
    before=$(free_kb)
    i=0
    while [ $i -lt 50 ]; do
        load_nsvm || { ok=0; break; }
        nsvm ioctl 0xae00 > /dev/null
        unload_nsvm || { ok=0; break; }
        i=$((i + 1))
    done
    after=$(free_kb)
    delta=$((before - after))
    deltas="$deltas $delta"
    [ $delta -lt $best ] && best=$delta
    [ $best -lt 192 ] && break
done
echo "free memory lost over 50 cycles, per measurement (KiB):$deltas (bound: 192 KiB, below one leaked page per cycle; leaking one host save area per CPU per cycle would be $((50 * NCPU * 4)) KiB)"
expect "every load and unload succeeded" [ $ok = 1 ]
expect_num "smallest loss over 50 cycles (KiB)" $best -lt 192
verdict "delta ${best} KiB"

# ---------------------------------------------------------------- kvm_amd
case_ "kvm_amd is refused while nsvm owns SVM"
load_nsvm
insmod $MODDIR/irqbypass.ko
insmod $MODDIR/kvm.ko
mark_log
if insmod $MODDIR/kvm-amd.ko 2>/tmp/err; then
    fail "kvm_amd loaded over nsvm"; rmmod kvm_amd
else
    # KVM finds EFER.SVME set (EBUSY from its per-CPU enable) and fails to
    # load; nsvm must still own SVM everywhere afterwards.
    cat /tmp/err; new_log
    nsvm cpus > /tmp/cpus.txt; cat /tmp/cpus.txt
    expect "kvm_amd is not in /proc/modules" eval '! loaded kvm_amd'
    expect_count /tmp/cpus.txt "online svme=1 hsave_pa=0x[0-9a-f]*000 nsvm=1" $NCPU
    verdict "refused, nsvm intact"
fi

case_ "kvm_amd loads once nsvm is gone"
unload_nsvm
check "kvm_amd loads" insmod $MODDIR/kvm-amd.ko
nsvm info --device /dev/kvm > /tmp/kinfo.txt 2>&1
expect "/dev/kvm is a character device" [ -c /dev/kvm ]
expect_line /tmp/kinfo.txt "API version:    12"
verdict "/dev/kvm answers"

case_ "nsvm is refused with EBUSY while kvm_amd is loaded, naming it"
mark_log
if load_nsvm 2>/tmp/err; then
    fail "nsvm loaded over kvm_amd"; unload_nsvm
else
    cat /tmp/err
    new_log > /tmp/load.log
    expect_line /tmp/err "busy"
    expect_line /tmp/load.log "EFER.SVME is already set: another hypervisor owns SVM (likely kvm_amd"
    expect "no /dev/nsvm" [ ! -e /dev/nsvm ]
    [ -z "$WRONG" ] || cat /tmp/load.log
    verdict
fi

case_ "nsvm loads again once kvm_amd is gone"
rmmod kvm_amd; rmmod kvm; rmmod irqbypass
check "nsvm loads" load_nsvm
nsvm cpus > /tmp/cpus.txt
expect_count /tmp/cpus.txt "svme=1 hsave_pa=0x[0-9a-f]*000 nsvm=1" $NCPU
verdict "all CPUs"

# ---------------------------------------------------------------- hotplug
if [ -e /sys/devices/system/cpu/cpu1/online ]; then
    case_ "CPU 1 offline: nsvm drops it"
    ev0=$(nsvm info --json | sed -n 's/.*"hotplug_events": \([0-9]*\).*/\1/p')
    echo 0 > /sys/devices/system/cpu/cpu1/online
    nsvm cpus > /tmp/cpus.txt; cat /tmp/cpus.txt
    nsvm info --json > /tmp/info.json
    expect_line /tmp/cpus.txt '^cpu1 offline'
    expect_line /tmp/cpus.txt '^cpu0 online svme=1'
    expect_line /tmp/info.json "\"cpus_enabled\": $((NCPU - 1))"
    verdict

    case_ "CPU 1 online again: SVM enabled with a fresh host save area"
    echo 1 > /sys/devices/system/cpu/cpu1/online
    nsvm cpus > /tmp/cpus.txt; cat /tmp/cpus.txt
    ev1=$(nsvm info --json | sed -n 's/.*"hotplug_events": \([0-9]*\).*/\1/p')
    expect_line /tmp/cpus.txt '^cpu1 online svme=1 hsave_pa=0x[0-9a-f]*000 nsvm=1'
    # One offline and one online event.
    expect_eq "hotplug events since the offline ($ev0 before)" 2 $((ev1 - ev0))
    verdict "events $ev0 -> $ev1"

    case_ "unload after hotplug gives SVM back on every CPU"
    unload_nsvm
    nsvm cpus > /tmp/cpus.txt 2>/dev/null; cat /tmp/cpus.txt
    expect_count /tmp/cpus.txt 'online svme=0 hsave_pa=0x0 ' $NCPU
    verdict

    case_ "CPU offline before load, online after load"
    echo 0 > /sys/devices/system/cpu/cpu1/online
    load_nsvm
    echo 1 > /sys/devices/system/cpu/cpu1/online
    nsvm cpus > /tmp/cpus.txt; cat /tmp/cpus.txt
    expect_line /tmp/cpus.txt '^cpu1 online svme=1 hsave_pa=0x[0-9a-f]*000 nsvm=1'
    verdict
    unload_nsvm
else
    case_ "CPU hotplug"; fail "no /sys/devices/system/cpu/cpu1/online: boot with -smp 2 and CONFIG_HOTPLUG_CPU"
fi

# ---------------------------------------------------------------- log
case_ "kernel log has no warning, oops or BUG"
LOGMARK=0
expect_clean_log
verdict
finish
