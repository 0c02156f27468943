/* Smallest L1 of the nested suite (and the template for others): L2 shares
 * L1's paging (no nested paging), executes CPUID and VMMCALL; L1 intercepts
 * CPUID (APM 15.9: exit code 72h) and VMMCALL (81h). Then L2 reads its TSC
 * with vmcb12's TSC_OFFSET at 2^40: it must see L1's TSC plus the offset
 * (APM 15.30.5; L0's own offset for L1 applies underneath). */
	.code64
	.globl _start
_start:
	call	l1_init
	lea	vmcb(%rip), %rdi
	lea	l2(%rip), %rsi
	lea	l2stack(%rip), %rdx
	call	vmcb_init
	orl	$0x00040000, C_INTERCEPT1(%rdi)	/* CPUID */
	call	l1_vmrun
	lea	m_cpuid(%rip), %rsi
	call	report
	mov	$EXIT_CPUID, %edx
	lea	m_code(%rip), %rsi
	call	expect
	call	put_nl
	lea	vmcb(%rip), %rdi
	addq	$2, S_RIP(%rdi)
	call	l1_vmrun
	lea	m_vmmcall(%rip), %rsi
	call	report
	mov	$EXIT_VMMCALL, %edx
	lea	m_code(%rip), %rsi
	call	expect
	call	put_nl

	lea	vmcb(%rip), %rdi
	lea	l2_tsc(%rip), %rax
	mov	%rax, S_RIP(%rdi)
	mov	$1, %eax
	shl	$40, %rax
	mov	%rax, C_TSC_OFFSET(%rdi)
	rdtsc
	shl	$32, %rdx
	or	%rax, %rdx
	mov	%rdx, %r12			/* L1's TSC before VMRUN */
	call	l1_vmrun
	mov	S_RAX(%rdi), %rax		/* L2's TSC (VMMCALL) */
	sub	%r12, %rax
	mov	$1, %edx
	shl	$40, %rdx
	sub	%rdx, %rax			/* time between the two reads */
	shr	$36, %rax			/* under 2^36 cycles: the offset applied once */
	sete	%al
	movzbl	%al, %eax
	lea	m_tsc(%rip), %rsi
	call	put_str
	lea	m_applied(%rip), %rsi
	call	put_kv
	mov	$1, %edx
	call	expect
	call	put_nl
	jmp	l1_done

/* "case NAME: code=.. info1=.. info2=.. intinfo=.."; RAX kept. */
report:	push	%rax
	push	%rsi
	lea	m_case(%rip), %rsi
	call	put_str
	pop	%rsi
	call	put_str
	lea	vmcb(%rip), %rdi
	lea	m_k_code(%rip), %rsi
	call	put_kv
	mov	C_EXIT_INFO1(%rdi), %rax
	lea	m_k_i1(%rip), %rsi
	call	put_kv
	mov	C_EXIT_INFO2(%rdi), %rax
	lea	m_k_i2(%rip), %rsi
	call	put_kv
	mov	C_EXIT_INT_INFO(%rdi), %rax
	lea	m_k_ii(%rip), %rsi
	call	put_kv
	pop	%rax
	ret

l2:	xor	%eax, %eax
	cpuid
	vmmcall
	hlt
l2_tsc:	rdtsc
	shl	$32, %rdx
	or	%rdx, %rax
	vmmcall
	hlt

	.data
m_case:		.asciz	"case "
m_cpuid:	.asciz	"cpuid_intercept:"
m_vmmcall:	.asciz	"vmmcall_intercept:"
m_k_code:	.asciz	" code="
m_k_i1:		.asciz	" info1="
m_k_i2:		.asciz	" info2="
m_k_ii:		.asciz	" intinfo="
m_code:		.asciz	"exit code"
m_tsc:		.asciz	"case tsc_offset_composed:"
m_applied:	.asciz	" l2_tsc_minus_l1_tsc_is_2^40_plus_elapsed="
	.balign	4096
vmcb:	.fill	4096, 1, 0
	.fill	4096, 1, 0
l2stack:
	.include "l1lib.S"
