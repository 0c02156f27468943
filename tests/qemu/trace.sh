# Tracepoints suite: nsvm's trace events (trace system nsvm, src/nsvm_trace.h)
# seen in tracefs while nested payloads run, compared with kvm_amd's events of
# the same shapes (trace system kvm) for the same payloads in the same boot;
# and `nsvm trace` (--count, --pid, --json, SIGTERM) reading them live.
. /tests/lib.sh
G=/guests
T=/sys/kernel/tracing

mount -t tracefs nodev $T 2>/dev/null

# tokens FILE PREFIX: the events of a tracefs `trace` file, one per line:
# EVENT (without PREFIX_), with ":REASON" for exits and reflected #VMEXITs.
tokens() {
    awk -v p="$2" '!/^#/ {
        for (i = 1; i <= NF; i++) if (index($i, p "_") == 1 && substr($i, length($i)) == ":") {
            ev = substr($i, length(p) + 2, length($i) - length(p) - 2); r = ""
            if (ev == "exit" || ev == "nested_vmexit") {
                for (j = i + 1; j < NF; j++) if ($j == "reason") { r = ":" $(j + 1); break }
            } else if (ev == "nested_vmexit_inject") r = ":" $(i + 2)
            print ev r; break
        } }' "$1"
}
# texts FILE EVENT: the text of each EVENT line (after "EVENT: ").
texts() { sed -n "s/.* $2: //p" "$1"; }
# traced DEVICE SYSTEM TAG PAYLOAD [ARGS]: runs the payload with the
# system's events on in the global buffer: /tmp/TAG.trace, /tmp/TAG.tok.
traced() {
    dev=$1; sys=$2; tag=$3; p=$4; shift 4
    echo 0 > $T/tracing_on; echo > $T/trace
    echo 8192 > $T/buffer_size_kb
    for e in entry exit nested_vmenter nested_vmexit nested_vmexit_inject nested_vmenter_failed inj_virq inj_exception npt02_fill npt02_flush msr; do
        [ -d $T/events/$sys/${sys}_$e ] && echo 1 > $T/events/$sys/${sys}_$e/enable
    done
    echo 1 > $T/tracing_on
    timeout 300 nsvm run --device $dev "$@" $G/$p.bin > /tmp/$tag.out 2> /tmp/$tag.err
    echo $? > /tmp/$tag.rc
    echo 0 > $T/tracing_on
    echo 0 > $T/events/$sys/enable
    cat $T/trace > /tmp/$tag.trace
    tokens /tmp/$tag.trace $sys > /tmp/$tag.tok
    tr '\n' ' ' < /tmp/$tag.tok > /tmp/$tag.seq
}
# expect_seq TAG WHAT "T1 T2 ...": the tokens appear next to each other.
expect_seq() {
    case " $(cat /tmp/$1.seq 2>/dev/null)" in
        *" $3 "*) ;;
        *) wrong_ "$2: no '$3' in /tmp/$1.seq (first tokens: '$(head -c 300 /tmp/$1.seq 2>/dev/null)')";;
    esac
}
# expect_order TAG "T1 T2 ...": the tokens appear in this order (others between).
expect_order() {
    awk -v want="$2" 'BEGIN { n = split(want, w, " "); k = 1 } k <= n && $0 == w[k] { k++ } END { exit k <= n }' /tmp/$1.tok \
        || { wrong_ "tokens of /tmp/$1.tok not in the order '$2'"
             echo "tokens of $1 (without the 'exit:io entry' pairs of L1's output):"
             sed 's/exit:io entry //g' /tmp/$1.seq | head -c 2000; echo; }
}
# The nested sequence every payload shows on both devices.
nested_checks() {
    tag=$1
    expect_status $tag 33
    expect_seq $tag "L1's VMRUN exit then the nested entry" "exit:vmrun nested_vmenter"
    expect_seq $tag "an L2 exit reflected to L1" "exit:cpuid nested_vmexit:cpuid nested_vmexit_inject:cpuid"
    expect_order $tag "exit:vmrun nested_vmenter entry exit:cpuid nested_vmexit:cpuid nested_vmexit_inject:cpuid entry exit:vmrun nested_vmenter entry exit:hypercall nested_vmexit:hypercall nested_vmexit_inject:hypercall exit:vmrun nested_vmenter entry exit:hypercall nested_vmexit:hypercall nested_vmexit_inject:hypercall"
}

case_ "load nsvm: its events are in tracefs with KVM's field names"
check "loaded" load_nsvm
for e in entry exit nested_vmenter nested_vmexit nested_vmexit_inject nested_vmenter_failed inj_virq inj_exception npt02_fill npt02_flush msr; do
    [ -f $T/events/nsvm/nsvm_$e/format ] || wrong_ "no $T/events/nsvm/nsvm_$e/format"
done
expect_line $T/events/nsvm/nsvm_nested_vmenter/format "field:u64 guest_pgd;"
expect_line $T/events/nsvm/nsvm_exit/format "field:u64 exit_reason;"
verdict

case_ "nested payload on nsvm: exit, nested_vmenter, nested_vmexit, nested_vmexit_inject in tracefs"
traced /dev/nsvm nsvm nsvm.smoke l1_smoke
nested_checks nsvm.smoke
expect_line /tmp/nsvm.smoke.trace "nsvm_nested_vmenter: rip: 0x[0-9a-f]\{16\} vmcb: 0x[0-9a-f]\{16\} nested_rip: 0x[0-9a-f]\{16\} int_ctl: 0x[0-9a-f]\{8\} event_inj: 0x00000000 nested_npt=n guest_cr3: 0x"
expect_line /tmp/nsvm.smoke.trace "nsvm_exit: vcpu 0 reason io rip 0x"
expect_num "nsvm_entry events" "$(grep -c 'nsvm_entry:' /tmp/nsvm.smoke.trace)" -gt 10
# L1 sets EFER.SVME and VM_HSAVE_PA (kvm_msr's format).
expect_line /tmp/nsvm.smoke.trace "nsvm_msr: msr_write c0000080 = 0x[0-9a-f]*1[0-9a-f]\{3\}$"
expect_line /tmp/nsvm.smoke.trace "nsvm_msr: msr_write c0010117 = 0x[0-9a-f]*000$"
verdict "$(wc -l < /tmp/nsvm.smoke.tok) events"

case_ "nested paging on nsvm: nested_npt=y, NPT02 fills, NPF reflected with its error code"
traced /dev/nsvm nsvm nsvm.npt l1_npt --mem 8M
expect_status nsvm.npt 33
expect_line /tmp/nsvm.npt.trace "nsvm_nested_vmenter: .* nested_npt=y nested_cr3: 0x"
expect_line /tmp/nsvm.npt.trace "nsvm_npt02_fill: vcpu 0 gpa 0x[0-9a-f]* l1_gpa 0x[0-9a-f]* hpa 0x[0-9a-f]* pages [1-8]"
expect_line /tmp/nsvm.npt.trace "nsvm_nested_vmexit_inject: reason: npf ext_inf1: 0x"
expect_seq nsvm.npt "an NPT12 fault reflected" "nested_vmexit:npf nested_vmexit_inject:npf"
expect_seq nsvm.npt "an NPT02 fill (L0's NPF)" "exit:npf nested_vmexit:npf npt02_fill entry"
expect_no_line /tmp/nsvm.npt.trace "nsvm_npt02_flush: .* pages 0$"
verdict "$(grep -c nsvm_npt02_fill /tmp/nsvm.npt.trace) fills, $(grep -c nsvm_npt02_flush /tmp/nsvm.npt.trace) flushes"

case_ "refused VMRUNs on nsvm: nested_vmenter_failed names the rule"
traced /dev/nsvm nsvm nsvm.refused l1_refused
expect_status nsvm.refused 33
expect_line /tmp/nsvm.refused.trace "nsvm_nested_vmenter_failed: efer_svme (rule 1)"
expect_line /tmp/nsvm.refused.trace "nsvm_nested_vmenter_failed: [a-z0-9_]* (rule [0-9]*)"
verdict "$(texts /tmp/nsvm.refused.trace nsvm_nested_vmenter_failed | sort -u | tr '\n' ',' )"

case_ "event injection on nsvm: vmcb12's EVENTINJ of each type at L2's entry"
traced /dev/nsvm nsvm nsvm.events l1_events
expect_status nsvm.events 33
expect_line /tmp/nsvm.events.trace "nsvm_inj_virq: IRQ 0x[0-9a-f]*"
expect_line /tmp/nsvm.events.trace "nsvm_inj_virq: Soft/INTn 0x[0-9a-f]*"
expect_line /tmp/nsvm.events.trace "nsvm_inj_exception: NMI has_error 0"
expect_line /tmp/nsvm.events.trace "nsvm_inj_exception: #GP has_error 1 error_code 0x"
# An injected event is in nested_vmenter's event_inj, then in nsvm_entry's intr_info.
expect_seq nsvm.events "VMRUN with EVENTINJ" "exit:vmrun nested_vmenter inj_exception entry"
verdict "$(grep -c nsvm_inj_ /tmp/nsvm.events.trace) injections"

# One line of each event (for the log; not asserted).
for e in entry exit nested_vmenter nested_vmexit nested_vmexit_inject nested_vmenter_failed inj_virq inj_exception npt02_fill npt02_flush msr; do
    grep -h -m 1 " nsvm_$e: " /tmp/nsvm.smoke.trace /tmp/nsvm.npt.trace /tmp/nsvm.refused.trace /tmp/nsvm.events.trace 2>/dev/null | head -1 | sed 's/^ */sample: /'
done

case_ "nsvm trace --count: live lines from trace_pipe, events off afterwards"
nsvm trace --count 40 --duration 120 > /tmp/tr.count.out 2> /tmp/tr.count.err &
tp=$!
sleep 1
nsvm run --device /dev/nsvm $G/l1_smoke.bin > /dev/null 2>&1
wait $tp; echo $? > /tmp/tr.count.rc
expect_status tr.count 0
expect_num "lines of nsvm trace --count 40" "$(wc -l < /tmp/tr.count.out)" -eq 40
expect_line /tmp/tr.count.out "^ *[0-9]*\.[0-9]\{6\} *[0-9]* nsvm_[a-z_0-9]* "
expect_line /tmp/tr.count.out " nsvm_nested_vmenter *rip: 0x"
expect_eq "instances left" "" "$(ls $T/instances)"
expect_eq "global nsvm enable" "0" "$(cat $T/events/nsvm/enable)"
verdict "$(sed -n 1p /tmp/tr.count.out)"

case_ "nsvm trace --pid --json: only the VMM's threads, one JSON object per event"
# Two VMMs run the same payload at once; each shell's PID becomes its nsvm
# run's (exec), traced from before it starts: only one VMM's nested entries
# may show (as many as in the single run above).
sh -c 'sleep 2; exec nsvm run --device /dev/nsvm /guests/l1_smoke.bin' > /dev/null 2>&1 &
vp=$!
sh -c 'sleep 2; exec nsvm run --device /dev/nsvm /guests/l1_smoke.bin' > /dev/null 2>&1 &
other=$!
nsvm trace --pid $vp --json --duration 120 > /tmp/tr.pid.out 2> /tmp/tr.pid.err
echo $? > /tmp/tr.pid.rc
wait $other
expect_status tr.pid 0
expect_line /tmp/tr.pid.err "process $vp exited"
expect_line /tmp/tr.pid.out '^{"time":[0-9.]*,"task":"[^"]*","pid":[0-9]*,"cpu":[0-9]*,"event":"nsvm_nested_vmenter","text":"rip: 0x'
expect_eq "nested entries traced" "$(grep -c nsvm_nested_vmenter: /tmp/nsvm.smoke.trace)" "$(grep -c '"event":"nsvm_nested_vmenter"' /tmp/tr.pid.out)"
expect_eq "reflected #VMEXITs traced" "$(grep -c nsvm_nested_vmexit_inject: /tmp/nsvm.smoke.trace)" "$(grep -c '"event":"nsvm_nested_vmexit_inject"' /tmp/tr.pid.out)"
verdict "$(wc -l < /tmp/tr.pid.out) events"

case_ "nsvm trace ends on SIGTERM and removes its instance"
nsvm trace > /tmp/tr.term.out 2>&1 &
tp=$!
sleep 1
kill -TERM $tp; wait $tp; echo $? > /tmp/tr.term.rc
expect_status tr.term 0
expect_eq "instances left" "" "$(ls $T/instances)"
verdict
check "unloaded" unload_nsvm

case_ "load kvm_amd nested=1 (reference)"
insmod $MODDIR/irqbypass.ko; insmod $MODDIR/kvm.ko
check "kvm_amd loaded" insmod $MODDIR/kvm-amd.ko nested=1

case_ "kvm_amd's events have the fields of nsvm's (same names)"
for e in entry exit nested_vmenter nested_vmexit nested_vmexit_inject inj_virq inj_exception; do
    sed -n 's/.*field:[^;]* \([a-z_0-9]*\);.*/\1/p' $T/events/kvm/kvm_$e/format | grep -v '^common_' | sort > /tmp/f.kvm
    sed -n 's/.*field:[^;]* \([a-z_0-9]*\);.*/\1/p' $T/events/nsvm/nsvm_$e/format 2>/dev/null | grep -v '^common_' | sort > /tmp/f.nsvm
    # kvm's own extras: isa (VMX or SVM), requests, immediate_exit.
    _m=$(grep -v -x -e isa -e requests -e immediate_exit /tmp/f.kvm | grep -v -x -F -f /tmp/f.nsvm | tr '\n' ' ')
    [ -z "$_m" ] || wrong_ "nsvm_$e lacks kvm_$e's fields: $_m"
done
verdict

case_ "nested payload on kvm_amd: the same sequence (kvm's events)"
traced /dev/kvm kvm kvm.smoke l1_smoke
nested_checks kvm.smoke
verdict "$(wc -l < /tmp/kvm.smoke.tok) events"

case_ "nsvm and kvm_amd: the same nested entries and #VMEXITs for L1 (event texts)"
texts /tmp/nsvm.smoke.trace nsvm_nested_vmenter > /tmp/n.enter; texts /tmp/kvm.smoke.trace kvm_nested_vmenter > /tmp/k.enter
texts /tmp/nsvm.smoke.trace nsvm_nested_vmexit_inject > /tmp/n.inject; texts /tmp/kvm.smoke.trace kvm_nested_vmexit_inject > /tmp/k.inject
expect_num "nested entries" "$(wc -l < /tmp/n.enter)" -ge 3
cmp -s /tmp/n.enter /tmp/k.enter || { wrong_ "nested_vmenter texts differ"; diff /tmp/n.enter /tmp/k.enter | head -10; }
cmp -s /tmp/n.inject /tmp/k.inject || { wrong_ "nested_vmexit_inject texts differ"; diff /tmp/n.inject /tmp/k.inject | head -10; }
verdict "$(wc -l < /tmp/n.enter) entries, $(wc -l < /tmp/n.inject) #VMEXITs"

case_ "nsvm trace --system kvm: kvm_amd's events live"
nsvm trace --system kvm --count 20 --duration 120 > /tmp/tr.kvm.out 2> /tmp/tr.kvm.err &
tp=$!
sleep 1
nsvm run --device /dev/kvm $G/l1_smoke.bin > /dev/null 2>&1
wait $tp; echo $? > /tmp/tr.kvm.rc
expect_status tr.kvm 0
expect_num "lines" "$(wc -l < /tmp/tr.kvm.out)" -eq 20
expect_line /tmp/tr.kvm.out " kvm_exit *vcpu 0 reason "
verdict
rmmod kvm_amd; rmmod kvm; rmmod irqbypass
finish
