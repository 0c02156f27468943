/* vmcb12 consistency checks (APM vol. 2 15.5.1) and the VMRUN/VMLOAD/VMSAVE
 * preconditions that raise exceptions in L1 (APM 15.5, instruction reference).
 *
 * Consistency checks: for each rule, a VMCB that is good except for that one
 * rule; VMRUN must end at once in #VMEXIT with exit code VMEXIT_INVALID (-1)
 * written to the VMCB and L1 continuing after VMRUN (L2 would exit with
 * VMMCALL, 81h, had it run). Printed as "case vmrun_invalid_RULE: code=..".
 * The exit code field is poisoned before each VMRUN.
 *
 * Rules tied to nested paging (nCR3 beyond the physical address width, a
 * G_PAT entry that is not a memory type) only exist when NP is offered
 * (CPUID 8000_000Ah EDX[0]); without NP, NP_ENABLE is ignored and L2 runs.
 * Their line says "per_cpuid=ok" when the observed outcome is the one the
 * advertised features require; an "info" line (not a case) shows np= and
 * the exit code. The G_PAT line is tagged [apm]: kvm_amd (Linux 7.2) does
 * not check G_PAT while its shared-PAT quirk is on (docs/nested.md).
 *
 * Preconditions (L1's own IDT catches the exception, the handler skips the
 * 3-byte instruction): #UD for VMRUN/VMLOAD/VMSAVE with EFER.SVME = 0; #GP(0)
 * for an rAX that is not 4 KiB aligned or beyond the physical address width.
 */
/* INVALID name: starts a case with a fresh good VMCB in RDI. */
	.macro	INVALID name
	.pushsection .data
9:	.asciz	"vmrun_invalid_\name"
	.popsection
	call	prep
	lea	9b(%rip), %rsi
	push	%rsi
	.endm
	.macro	RUNINV
	pop	%rsi
	mov	$-1, %rdx
	call	run_case
	.endm

/* EXC name, insn, vector: RAX set by the caller; runs insn expecting the
 * exception `vector` with error code 0. */
	.macro	EXC name, insn, vec
	.pushsection .data
9:	.asciz	"\name"
	.popsection
	movq	$-1, last_vec(%rip)
	movq	$-1, last_err(%rip)
	\insn
	lea	9b(%rip), %rsi
	mov	$\vec, %edx
	call	exc_report
	.endm

	.code64
	.globl _start
_start:
	call	l1_init
	call	idt_init
	mov	$0x80000008, %eax
	cpuid
	movzbl	%al, %eax
	mov	%rax, phys(%rip)
	mov	$0x8000000a, %eax
	cpuid
	and	$1, %edx
	mov	%rdx, np(%rip)

	/* A good VMCB must run L2 (to its VMMCALL). */
	call	prep
	lea	m_good(%rip), %rsi
	mov	$EXIT_VMMCALL, %edx
	call	run_case

	INVALID	efer_svme
	andl	$~0x1000, S_EFER(%rdi)
	RUNINV

	INVALID	cr0_cd_nw
	btsq	$29, S_CR0(%rdi)
	RUNINV

	INVALID	cr0_high
	btsq	$32, S_CR0(%rdi)
	RUNINV

	INVALID	cr3_mbz
	btsq	$52, S_CR3(%rdi)
	RUNINV

	INVALID	cr4_mbz
	btsq	$15, S_CR4(%rdi)
	RUNINV

	INVALID	dr6_high
	btsq	$32, S_DR6(%rdi)
	RUNINV

	INVALID	dr7_high
	btsq	$32, S_DR7(%rdi)
	RUNINV

	INVALID	efer_mbz
	btsq	$63, S_EFER(%rdi)
	RUNINV

	INVALID	long_mode_no_pae
	btrq	$5, S_CR4(%rdi)
	RUNINV

	INVALID	long_mode_no_pe
	btrq	$0, S_CR0(%rdi)
	RUNINV

	INVALID	cs_l_and_d
	orw	$0x0400, S_CS+2(%rdi)
	RUNINV

	INVALID	vmrun_intercept
	andl	$~1, C_INTERCEPT2(%rdi)
	RUNINV

	/* MSRPM (8 KiB) starting one page below the top of the physical
	 * address space; IOPM (12 KiB) two pages below it. */
	INVALID	msrpm_address
	call	top
	sub	$0x1000, %rax
	mov	%rax, C_MSRPM(%rdi)
	RUNINV

	INVALID	iopm_address
	call	top
	sub	$0x2000, %rax
	mov	%rax, C_IOPM(%rdi)
	RUNINV

	/* EVENTINJ: exception type with vector 2 (NMI is not an exception). */
	INVALID	event_inj_vector
	movl	$0x80000302, C_EVENTINJ(%rdi)
	RUNINV

	/* EVENTINJ: exception type with reserved vector 15 (APM table 8-1). */
	INVALID	event_inj_reserved_vector
	movl	$0x8000030f, C_EVENTINJ(%rdi)
	RUNINV

	/* EVENTINJ: reserved type 1. */
	INVALID	event_inj_type
	movl	$0x80000120, C_EVENTINJ(%rdi)
	RUNINV

	INVALID	asid_zero
	movl	$0, C_ASID(%rdi)
	RUNINV

	/* NP_ENABLE with nCR3 at the top of the physical address space. */
	call	prep
	orq	$1, C_NESTED_CTL(%rdi)
	call	top
	mov	%rax, C_NCR3(%rdi)
	lea	m_ncr3(%rip), %rsi
	call	run_np_case

	/* NP_ENABLE with a good nCR3 and a G_PAT entry of type 2. */
	call	prep
	orq	$1, C_NESTED_CTL(%rdi)
	mov	%cr3, %rax
	mov	%rax, C_NCR3(%rdi)
	movb	$2, S_G_PAT+1(%rdi)
	lea	m_gpat(%rip), %rsi
	call	run_np_case_apm

	/* Preconditions raising exceptions in L1. */
	mov	$0xc0000080, %ecx
	rdmsr
	and	$~0x1000, %eax
	wrmsr
	lea	vmcb(%rip), %rax
	EXC	vmrun_ud_svme_off, vmrun, 6
	lea	vmcb(%rip), %rax
	EXC	vmload_ud_svme_off, vmload, 6
	lea	vmcb(%rip), %rax
	EXC	vmsave_ud_svme_off, vmsave, 6
	mov	$0xc0000080, %ecx
	rdmsr
	or	$0x1000, %eax
	wrmsr

	call	prep
	lea	vmcb+8(%rip), %rax
	EXC	vmrun_gp_unaligned, vmrun, 13
	lea	vmcb(%rip), %rax
	btsq	$11, %rax
	EXC	vmload_gp_unaligned, vmload, 13
	lea	vmcb+0x800(%rip), %rax
	EXC	vmsave_gp_unaligned, vmsave, 13
	call	top
	EXC	vmrun_gp_beyond_maxphys, vmrun, 13
	call	top
	EXC	vmload_gp_beyond_maxphys, vmload, 13

	/* VMRUN still works afterwards. */
	call	prep
	lea	m_after(%rip), %rsi
	mov	$EXIT_VMMCALL, %edx
	call	run_case
	jmp	l1_done

/* RAX = 1 << phys (first address beyond the physical address space). */
top:	mov	phys(%rip), %rcx
	mov	$1, %eax
	shl	%cl, %rax
	ret

/* RDI = vmcb, initialised for L2 (which executes VMMCALL). */
prep:	lea	vmcb(%rip), %rdi
	lea	l2(%rip), %rsi
	lea	l2stack(%rip), %rdx
	jmp	vmcb_init

/* RSI = name, RDX = expected exit code: VMRUN, print the case line. */
run_case:
	push	%rdx
	push	%rsi
	lea	vmcb(%rip), %rdi
	movq	$0x5a5a, C_EXIT_CODE(%rdi)
	call	l1_vmrun
	pop	%rsi
	push	%rax
	call	case_head
	pop	%rax
	lea	m_k_code(%rip), %rsi
	call	put_kv
	pop	%rdx
	lea	m_code(%rip), %rsi
	call	expect
	jmp	put_nl

/* RSI = name; VMCB with NP_ENABLE and one NP rule broken: VMEXIT_INVALID
 * when NP is offered, L2 runs to VMMCALL otherwise. */
run_np_case_apm:
	movb	$1, apm_tag(%rip)
run_np_case:
	push	%rsi
	lea	vmcb(%rip), %rdi
	movq	$0x5a5a, C_EXIT_CODE(%rdi)
	call	l1_vmrun
	mov	%rax, %rbx
	lea	m_info(%rip), %rsi
	call	put_str
	mov	(%rsp), %rsi
	call	put_str
	lea	m_colon(%rip), %rsi
	call	put_str
	mov	np(%rip), %rax
	lea	m_k_np(%rip), %rsi
	call	put_kv
	mov	%rbx, %rax
	lea	m_k_code(%rip), %rsi
	call	put_kv
	call	put_nl
	pop	%rsi
	call	case_head
	lea	m_k_percpuid(%rip), %rsi
	call	put_str
	mov	$-1, %rdx
	cmpq	$0, np(%rip)
	jne	1f
	mov	$EXIT_VMMCALL, %edx
1:	mov	%rbx, %rax
	cmp	%rdx, %rax
	jne	2f
	lea	m_ok(%rip), %rsi
	call	put_str
	jmp	3f
2:	lea	m_code(%rip), %rsi
	call	expect
3:	cmpb	$0, apm_tag(%rip)
	je	put_nl
	movb	$0, apm_tag(%rip)
	lea	m_apm(%rip), %rsi
	call	put_str
	jmp	put_nl

/* "case NAME:" with RSI = NAME. */
case_head:
	push	%rsi
	lea	m_case(%rip), %rsi
	call	put_str
	pop	%rsi
	call	put_str
	lea	m_colon(%rip), %rsi
	jmp	put_str

/* RSI = name, RDX = expected vector (error code 0 expected for #GP). */
exc_report:
	push	%rdx
	call	case_head
	mov	last_vec(%rip), %rax
	lea	m_k_vec(%rip), %rsi
	call	put_kv
	pop	%rdx
	lea	m_vec(%rip), %rsi
	call	expect
	cmp	$13, %edx
	jne	1f
	mov	last_err(%rip), %rax
	lea	m_k_err(%rip), %rsi
	call	put_kv
	xor	%edx, %edx
	lea	m_err(%rip), %rsi
	call	expect
1:	jmp	put_nl

/* L1's IDT: vectors 0-31, each handler records vector and error code and
 * resumes 3 bytes after the faulting instruction (VMRUN/VMLOAD/VMSAVE). */
idt_init:
	lea	l1_idt(%rip), %rdi
	lea	stubs(%rip), %rsi
	xor	%ecx, %ecx
1:	call	idt_gate
	add	$16, %rdi
	add	$16, %rsi
	inc	%ecx
	cmp	$32, %ecx
	jne	1b
	call	l1_lidt
	ret

	.balign	16
stubs:
	.irp	v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	.balign	16
	.if	(\v == 8) || (\v == 10) || (\v == 11) || (\v == 12) || (\v == 13) || (\v == 14) || (\v == 17) || (\v == 21) || (\v == 29) || (\v == 30)
	.else
	pushq	$0
	.endif
	pushq	$\v
	jmp	exc_common
	.endr
exc_common:
	push	%rax
	mov	8(%rsp), %rax
	mov	%rax, last_vec(%rip)
	mov	16(%rsp), %rax
	mov	%rax, last_err(%rip)
	addq	$3, 24(%rsp)
	pop	%rax
	add	$16, %rsp
	iretq

l2:	vmmcall
	hlt

	.data
m_case:		.asciz	"case "
m_info:		.asciz	"info "
m_colon:	.asciz	":"
m_good:		.asciz	"vmrun_valid_baseline"
m_after:	.asciz	"vmrun_valid_after_exceptions"
m_ncr3:		.asciz	"vmrun_invalid_nested_cr3"
m_gpat:		.asciz	"vmrun_invalid_guest_pat"
m_k_code:	.asciz	" code="
m_k_np:		.asciz	" np="
m_k_percpuid:	.asciz	" per_cpuid="
m_ok:		.asciz	"ok"
m_apm:		.asciz	" [apm]"
apm_tag:	.byte	0
m_k_vec:	.asciz	" vector="
m_k_err:	.asciz	" err="
m_code:		.asciz	"exit code"
m_vec:		.asciz	"vector"
m_err:		.asciz	"error code"
	.balign	8
phys:		.quad	0
np:		.quad	0
last_vec:	.quad	0
last_err:	.quad	0
	.balign	4096
vmcb:	.fill	4096, 1, 0
	.fill	4096, 1, 0
l2stack:
	.include "l1lib.S"
