/* Smallest L1 of the nested suite (and the template for others): L2 shares
 * L1's paging (no nested paging), executes CPUID and VMMCALL; L1 intercepts
 * CPUID (APM 15.9: exit code 72h) and VMMCALL (81h). */
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

	.data
m_case:		.asciz	"case "
m_cpuid:	.asciz	"cpuid_intercept:"
m_vmmcall:	.asciz	"vmmcall_intercept:"
m_k_code:	.asciz	" code="
m_k_i1:		.asciz	" info1="
m_k_i2:		.asciz	" info2="
m_k_ii:		.asciz	" intinfo="
m_code:		.asciz	"exit code"
	.balign	4096
vmcb:	.fill	4096, 1, 0
	.fill	4096, 1, 0
l2stack:
	.include "l1lib.S"
