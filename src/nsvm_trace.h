/* SPDX-License-Identifier: GPL-2.0 */
/*
 * nsvm's tracepoints: trace system "nsvm" (/sys/kernel/tracing/events/nsvm/).
 * The events of exits and nested SVM have the shapes and field names of
 * KVM's (arch/x86/kvm/trace.h: kvm_entry, kvm_exit, kvm_nested_vmenter,
 * kvm_nested_vmexit, kvm_nested_vmexit_inject, kvm_inj_virq,
 * kvm_inj_exception, kvm_nested_vmenter_failed) with the prefix nsvm_
 * instead of kvm_, so a trace of nsvm reads like one of kvm_amd; NPT02
 * fills and flushes are nsvm's own. docs/architecture.md ("Tracepoints")
 * lists them.
 *
 * Defined once (src/trace.c, with CREATE_TRACE_POINTS and
 * CREATE_RUST_TRACE_POINTS): the Rust code (src/hw/trace.rs) tests each
 * event's static key itself (a patched-out branch with CONFIG_JUMP_LABEL)
 * and only then calls rust_do_trace_<event>(), which records it.
 */
#undef TRACE_SYSTEM
#define TRACE_SYSTEM nsvm

#if !defined(NSVM_TRACE_H) || defined(TRACE_HEADER_MULTI_READ)
#define NSVM_TRACE_H

#include <linux/tracepoint.h>
#include <asm/svm.h>

/* Exit codes by the names KVM prints (SVM_EXIT_REASONS of uapi/asm/svm.h). */
#define nsvm_print_exit_reason(code) __print_symbolic_u64(code, SVM_EXIT_REASONS)

/* VMRUN of the guest L0 runs (L1, or L2 through vmcb02). */
TRACE_EVENT(nsvm_entry,
	TP_PROTO(unsigned int vcpu_id, u64 rip, u32 intr_info, u32 error_code),
	TP_ARGS(vcpu_id, rip, intr_info, error_code),
	TP_STRUCT__entry(
		__field(unsigned int, vcpu_id)
		__field(unsigned long, rip)
		__field(u32, intr_info)
		__field(u32, error_code)
	),
	TP_fast_assign(
		__entry->vcpu_id = vcpu_id;
		__entry->rip = rip;
		__entry->intr_info = intr_info;
		__entry->error_code = error_code;
	),
	TP_printk("vcpu %u, rip 0x%lx intr_info 0x%08x error_code 0x%08x",
		  __entry->vcpu_id, __entry->rip, __entry->intr_info, __entry->error_code)
);

/* An exit (nsvm_exit: every #VMEXIT L0 sees; nsvm_nested_vmexit: L2's). */
DECLARE_EVENT_CLASS(nsvm_exit_class,
	TP_PROTO(unsigned int vcpu_id, u64 exit_reason, u64 guest_rip, u64 info1, u64 info2,
		 u32 intr_info, u32 error_code),
	TP_ARGS(vcpu_id, exit_reason, guest_rip, info1, info2, intr_info, error_code),
	TP_STRUCT__entry(
		__field(u64, exit_reason)
		__field(unsigned long, guest_rip)
		__field(u64, info1)
		__field(u64, info2)
		__field(u32, intr_info)
		__field(u32, error_code)
		__field(unsigned int, vcpu_id)
	),
	TP_fast_assign(
		__entry->exit_reason = exit_reason;
		__entry->guest_rip = guest_rip;
		__entry->info1 = info1;
		__entry->info2 = info2;
		__entry->intr_info = intr_info;
		__entry->error_code = error_code;
		__entry->vcpu_id = vcpu_id;
	),
	TP_printk("vcpu %u reason %s rip 0x%lx info1 0x%016llx info2 0x%016llx intr_info 0x%08x error_code 0x%08x",
		  __entry->vcpu_id, nsvm_print_exit_reason(__entry->exit_reason), __entry->guest_rip,
		  __entry->info1, __entry->info2, __entry->intr_info, __entry->error_code)
);

DEFINE_EVENT(nsvm_exit_class, nsvm_exit,
	TP_PROTO(unsigned int vcpu_id, u64 exit_reason, u64 guest_rip, u64 info1, u64 info2,
		 u32 intr_info, u32 error_code),
	TP_ARGS(vcpu_id, exit_reason, guest_rip, info1, info2, intr_info, error_code));

DEFINE_EVENT(nsvm_exit_class, nsvm_nested_vmexit,
	TP_PROTO(unsigned int vcpu_id, u64 exit_reason, u64 guest_rip, u64 info1, u64 info2,
		 u32 intr_info, u32 error_code),
	TP_ARGS(vcpu_id, exit_reason, guest_rip, info1, info2, intr_info, error_code));

/* L1's VMRUN entered L2 (guest_pgd: nCR3 with nested paging, else L2's CR3). */
TRACE_EVENT(nsvm_nested_vmenter,
	TP_PROTO(u64 rip, u64 vmcb, u64 nested_rip, u32 int_ctl, u32 event_inj,
		 bool tdp_enabled, u64 guest_pgd),
	TP_ARGS(rip, vmcb, nested_rip, int_ctl, event_inj, tdp_enabled, guest_pgd),
	TP_STRUCT__entry(
		__field(u64, rip)
		__field(u64, vmcb)
		__field(u64, nested_rip)
		__field(u32, int_ctl)
		__field(u32, event_inj)
		__field(bool, tdp_enabled)
		__field(u64, guest_pgd)
	),
	TP_fast_assign(
		__entry->rip = rip;
		__entry->vmcb = vmcb;
		__entry->nested_rip = nested_rip;
		__entry->int_ctl = int_ctl;
		__entry->event_inj = event_inj;
		__entry->tdp_enabled = tdp_enabled;
		__entry->guest_pgd = guest_pgd;
	),
	TP_printk("rip: 0x%016llx vmcb: 0x%016llx nested_rip: 0x%016llx int_ctl: 0x%08x event_inj: 0x%08x nested_npt=%s %s: 0x%016llx",
		  __entry->rip, __entry->vmcb, __entry->nested_rip, __entry->int_ctl,
		  __entry->event_inj, __entry->tdp_enabled ? "y" : "n",
		  __entry->tdp_enabled ? "nested_cr3" : "guest_cr3", __entry->guest_pgd)
);

/* A #VMEXIT delivered to L1: what vmcb12 received. */
TRACE_EVENT(nsvm_nested_vmexit_inject,
	TP_PROTO(u64 exit_code, u64 exit_info1, u64 exit_info2, u32 exit_int_info,
		 u32 exit_int_info_err),
	TP_ARGS(exit_code, exit_info1, exit_info2, exit_int_info, exit_int_info_err),
	TP_STRUCT__entry(
		__field(u64, exit_code)
		__field(u64, exit_info1)
		__field(u64, exit_info2)
		__field(u32, exit_int_info)
		__field(u32, exit_int_info_err)
	),
	TP_fast_assign(
		__entry->exit_code = exit_code;
		__entry->exit_info1 = exit_info1;
		__entry->exit_info2 = exit_info2;
		__entry->exit_int_info = exit_int_info;
		__entry->exit_int_info_err = exit_int_info_err;
	),
	TP_printk("reason: %s ext_inf1: 0x%016llx ext_inf2: 0x%016llx ext_int: 0x%08x ext_int_err: 0x%08x",
		  nsvm_print_exit_reason(__entry->exit_code), __entry->exit_info1,
		  __entry->exit_info2, __entry->exit_int_info, __entry->exit_int_info_err)
);

/*
 * L1's VMRUN failed (#VMEXIT(VMEXIT_INVALID) to L1): msg names the
 * consistency rule of APM 15.5.1 nsvm's checks found broken (err: its
 * number, nsvm_core::checks::Check::index() + 1), or says that the
 * processor refused vmcb02 (err 0).
 */
TRACE_EVENT(nsvm_nested_vmenter_failed,
	TP_PROTO(const char *msg, u32 err),
	TP_ARGS(msg, err),
	TP_STRUCT__entry(
		__string(msg, msg)
		__field(u32, err)
	),
	TP_fast_assign(
		__assign_str(msg);
		__entry->err = err;
	),
	TP_printk("%s (rule %u)", __get_str(msg), __entry->err)
);

/* An external (or software, soft=1) interrupt in EVENTINJ at VMRUN. */
TRACE_EVENT(nsvm_inj_virq,
	TP_PROTO(unsigned int vector, bool soft, bool reinjected),
	TP_ARGS(vector, soft, reinjected),
	TP_STRUCT__entry(
		__field(unsigned int, vector)
		__field(bool, soft)
		__field(bool, reinjected)
	),
	TP_fast_assign(
		__entry->vector = vector;
		__entry->soft = soft;
		__entry->reinjected = reinjected;
	),
	TP_printk("%s 0x%x%s", __entry->soft ? "Soft/INTn" : "IRQ", __entry->vector,
		  __entry->reinjected ? " [reinjected]" : "")
);

/* An exception (or NMI, vector 2) in EVENTINJ at VMRUN; the error code is a field. */
#define NSVM_EXCEPTIONS \
	{ 0, "#DE" }, { 1, "#DB" }, { 2, "NMI" }, { 3, "#BP" }, { 4, "#OF" }, { 5, "#BR" }, \
	{ 6, "#UD" }, { 7, "#NM" }, { 8, "#DF" }, { 10, "#TS" }, { 11, "#NP" }, { 12, "#SS" }, \
	{ 13, "#GP" }, { 14, "#PF" }, { 16, "#MF" }, { 17, "#AC" }, { 18, "#MC" }, { 19, "#XM" }, \
	{ 20, "#VE" }, { 21, "#CP" }, { 28, "#HV" }, { 29, "#VC" }, { 30, "#SX" }

TRACE_EVENT(nsvm_inj_exception,
	TP_PROTO(unsigned int exception, bool has_error, u32 error_code, bool reinjected),
	TP_ARGS(exception, has_error, error_code, reinjected),
	TP_STRUCT__entry(
		__field(u8, exception)
		__field(u8, has_error)
		__field(u32, error_code)
		__field(bool, reinjected)
	),
	TP_fast_assign(
		__entry->exception = exception;
		__entry->has_error = has_error;
		__entry->error_code = error_code;
		__entry->reinjected = reinjected;
	),
	TP_printk("%s has_error %u error_code 0x%x%s",
		  __print_symbolic(__entry->exception, NSVM_EXCEPTIONS), __entry->has_error,
		  __entry->error_code, __entry->reinjected ? " [reinjected]" : "")
);

/*
 * Shadow NPT02 leaves composed for an NPF of L2: `pages` 4 KiB leaves
 * (a prefetched block, or 1) around L2 physical address gpa, which NPT12
 * translated to L1 physical address l1_gpa; hpa is the host page of gpa.
 */
TRACE_EVENT(nsvm_npt02_fill,
	TP_PROTO(unsigned int vcpu_id, u64 gpa, u64 l1_gpa, u64 hpa, u32 pages),
	TP_ARGS(vcpu_id, gpa, l1_gpa, hpa, pages),
	TP_STRUCT__entry(
		__field(unsigned int, vcpu_id)
		__field(u64, gpa)
		__field(u64, l1_gpa)
		__field(u64, hpa)
		__field(u32, pages)
	),
	TP_fast_assign(
		__entry->vcpu_id = vcpu_id;
		__entry->gpa = gpa;
		__entry->l1_gpa = l1_gpa;
		__entry->hpa = hpa;
		__entry->pages = pages;
	),
	TP_printk("vcpu %u gpa 0x%llx l1_gpa 0x%llx hpa 0x%llx pages %u",
		  __entry->vcpu_id, __entry->gpa, __entry->l1_gpa, __entry->hpa, __entry->pages)
);

/* Shadow NPT02 dropped whole (`pages` leaves were mapped, never 0), and why;
 * or, reason "sync", L1's TLB_CONTROL flush met by checking NPT02's leaves
 * against NPT12: `pages` leaves no longer current were removed (never 0). */
#define NSVM_NPT02_FLUSH_REASONS \
	{ 0, "reset" }, { 1, "tlb_control" }, { 2, "full" }, { 3, "memslots" }, \
	{ 4, "ncr3" }, { 5, "asid" }, { 6, "npt01" }, { 7, "sync" }

TRACE_EVENT(nsvm_npt02_flush,
	TP_PROTO(u32 reason, u64 pages),
	TP_ARGS(reason, pages),
	TP_STRUCT__entry(
		__field(u32, reason)
		__field(u64, pages)
	),
	TP_fast_assign(
		__entry->reason = reason;
		__entry->pages = pages;
	),
	TP_printk("reason %s pages %llu",
		  __print_symbolic(__entry->reason, NSVM_NPT02_FLUSH_REASONS), __entry->pages)
);

/* A RDMSR or WRMSR L0 handled (KVM's kvm_msr): the MSR, the value written
 * or read, and whether it raised #GP. */
TRACE_EVENT(nsvm_msr,
	TP_PROTO(unsigned int write, u32 ecx, u64 data, bool exception),
	TP_ARGS(write, ecx, data, exception),
	TP_STRUCT__entry(
		__field(unsigned int, write)
		__field(u32, ecx)
		__field(u64, data)
		__field(u8, exception)
	),
	TP_fast_assign(
		__entry->write = write;
		__entry->ecx = ecx;
		__entry->data = data;
		__entry->exception = exception;
	),
	TP_printk("msr_%s %x = 0x%llx%s", __entry->write ? "write" : "read",
		  __entry->ecx, __entry->data, __entry->exception ? " (#GP)" : "")
);

#endif /* NSVM_TRACE_H */

#undef TRACE_INCLUDE_PATH
#define TRACE_INCLUDE_PATH .
#undef TRACE_INCLUDE_FILE
#define TRACE_INCLUDE_FILE nsvm_trace
#include <trace/define_trace.h>
