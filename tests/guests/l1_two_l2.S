/* Two L2 guests alternating under one L1 (issue 4 item 7): two VMCBs with
 * different RIPs, stacks and ASIDs (1 and 2). Each L2 loops on
 *     incq (%rsp); mov $TAG, %eax; cpuid
 * (its counter is the word at the top of its own stack, TAG is 0xa or 0xb);
 * L1 intercepts CPUID, checks at each exit that the VMCB it ran reports
 * exit code 72h and that L2's own TAG in RAX, steps RIP over CPUID (2
 * bytes; no NRIPS needed) and runs the other L2. After RUNS VMRUNs each
 * L2's counter must be RUNS/2 and no exit may have shown the other L2's
 * state. */
	.set	RUNS, 64

	.code64
	.globl _start
_start:
	call	l1_init
	lea	vmcb_a(%rip), %rdi
	lea	l2a(%rip), %rsi
	lea	cnt_a(%rip), %rdx
	call	vmcb_init
	orl	$0x00040000, C_INTERCEPT1(%rdi)	/* CPUID */
	movl	$1, C_ASID(%rdi)
	lea	vmcb_b(%rip), %rdi
	lea	l2b(%rip), %rsi
	lea	cnt_b(%rip), %rdx
	call	vmcb_init
	orl	$0x00040000, C_INTERCEPT1(%rdi)
	movl	$2, C_ASID(%rdi)

	xor	%r12d, %r12d			/* run number */
	xor	%r13d, %r13d			/* exits not as expected */
1:	lea	vmcb_a(%rip), %rdi
	mov	$0xa, %r14d
	test	$1, %r12d
	jz	2f
	lea	vmcb_b(%rip), %rdi
	mov	$0xb, %r14d
2:	mov	%rdi, %r15
	call	l1_vmrun
	cmp	$EXIT_CPUID, %rax
	jne	3f
	cmp	S_RAX(%r15), %r14
	je	4f
3:	inc	%r13d
4:	addq	$2, S_RIP(%r15)
	inc	%r12d
	cmp	$RUNS, %r12d
	jne	1b

	lea	m_name(%rip), %rsi
	call	put_str
	mov	%r12, %rax
	lea	m_k_runs(%rip), %rsi
	call	put_kv
	mov	cnt_a(%rip), %rax
	lea	m_k_a(%rip), %rsi
	call	put_kv
	mov	$RUNS/2, %edx
	lea	m_a(%rip), %rsi
	call	expect
	mov	cnt_b(%rip), %rax
	lea	m_k_b(%rip), %rsi
	call	put_kv
	mov	$RUNS/2, %edx
	lea	m_b(%rip), %rsi
	call	expect
	mov	%r13, %rax
	lea	m_k_bad(%rip), %rsi
	call	put_kv
	xor	%edx, %edx
	lea	m_bad(%rip), %rsi
	call	expect
	/* The last VMCB run (b) resumes at the jmp after its own CPUID. */
	mov	S_RIP(%r15), %rax
	lea	l2b(%rip), %rdx
	sub	%rdx, %rax
	lea	m_k_ripb(%rip), %rsi
	call	put_kv
	mov	$11, %edx			/* l2b+4+5: cpuid, +2: the jmp */
	lea	m_rip(%rip), %rsi
	call	expect
	call	put_nl
	jmp	l1_done

l2a:	incq	(%rsp)				/* 4 bytes */
	mov	$0xa, %eax			/* 5 bytes */
	cpuid
	jmp	l2a
l2b:	incq	(%rsp)
	mov	$0xb, %eax
	cpuid
	jmp	l2b

	.data
m_name:		.asciz	"case two_l2_alternating:"
m_k_runs:	.asciz	" runs="
m_k_a:		.asciz	" count_a="
m_k_b:		.asciz	" count_b="
m_k_bad:	.asciz	" bad_exits="
m_k_ripb:	.asciz	" rip_b_off="
m_a:		.asciz	"count_a"
m_b:		.asciz	"count_b"
m_bad:		.asciz	"bad exits"
m_rip:		.asciz	"rip"
	.balign	4096
vmcb_a:	.fill	4096, 1, 0
vmcb_b:	.fill	4096, 1, 0
	.fill	2048, 1, 0
cnt_a:	.quad	0
	.fill	2040, 1, 0
cnt_b:	.quad	0
	.include "l1lib.S"
