/* Two vCPUs, each an L1 running its own L2 (`nsvm run --vcpus 2`): every
 * vCPU starts here with RDI = its index and RSI = the vCPU count, on its own
 * stack (given by the loader). Each has its own VMCB, host save area
 * (VM_HSAVE_PA is per CPU) and L2 stack; its L2 loops on
 *     incq (%rsp); mov $(0x100 + index), %eax; cpuid
 * and L1 intercepts CPUID, checking each exit (code 72h, its own L2's RAX),
 * for RUNS VMRUNs. vCPU 1 publishes its result words and parks; vCPU 0 waits
 * for them (bounded), prints both lines and alone ends the run. */
	.set	RUNS, 200
	.set	MAXV, 2

	.code64
	.globl _start
_start:
	mov	%edi, %ebp			/* vCPU index */
	mov	%esi, ncpus(%rip)
	cmp	$MAXV, %ebp
	jae	park
	shl	$12, %rdi
	lea	hsaves(%rip), %rax
	add	%rax, %rdi
	call	l1_init_hsave
	mov	%ebp, %edi
	shl	$12, %rdi
	lea	vmcbs(%rip), %rax
	add	%rax, %rdi
	mov	%rdi, %r15			/* this vCPU's VMCB */
	lea	l2(%rip), %rsi
	mov	%ebp, %edx
	shl	$12, %rdx
	lea	l2stacks+4096-8(%rip), %rax
	add	%rax, %rdx			/* this L2's counter/stack top */
	mov	%rdx, %rbx
	movq	$0, (%rdx)
	call	vmcb_init
	orl	$0x00040000, C_INTERCEPT1(%rdi)	/* CPUID */
	lea	1(%rbp), %eax
	mov	%eax, C_ASID(%rdi)		/* ASID 1 or 2 */
	mov	%ebp, %eax
	add	$0x100, %eax
	mov	%rax, S_RAX(%rdi)		/* L2's tag, from its RAX */

	xor	%r12d, %r12d			/* VMRUNs */
	xor	%r13d, %r13d			/* exits not as expected */
	lea	0x100(%rbp), %r14
1:	mov	%r15, %rdi
	call	l1_vmrun
	cmp	$EXIT_CPUID, %rax
	jne	2f
	cmp	S_RAX(%r15), %r14
	je	3f
2:	inc	%r13d
3:	addq	$2, S_RIP(%r15)
	inc	%r12d
	cmp	$RUNS, %r12d
	jne	1b

	/* results[index] = {VMRUNs, L2 count, bad exits}, then done[index]. */
	lea	results(%rip), %rdi
	imul	$24, %rbp, %rax
	add	%rax, %rdi
	mov	%r12, (%rdi)
	mov	(%rbx), %rax
	mov	%rax, 8(%rdi)
	mov	%r13, 16(%rdi)
	lea	done(%rip), %rdi
	movb	$1, (%rdi,%rbp)
	test	%ebp, %ebp
	jnz	park

	/* vCPU 0: wait for vCPU 1 (when there is one), print both. */
	xor	%r12d, %r12d
	cmpl	$2, ncpus(%rip)
	jb	5f
	mov	$50000000, %ecx
4:	cmpb	$0, done+1(%rip)
	jne	5f
	pause
	dec	%ecx
	jnz	4b
5:	xor	%ebp, %ebp
6:	lea	m_case(%rip), %rsi
	call	put_str
	mov	%rbp, %rax
	call	put_hex
	lea	m_colon(%rip), %rsi
	call	put_str
	movzbl	done(%rbp), %eax
	lea	m_k_done(%rip), %rsi
	call	put_kv
	mov	$1, %edx
	lea	m_done(%rip), %rsi
	call	expect
	imul	$24, %rbp, %rbx
	lea	results(%rip), %rax
	add	%rax, %rbx
	mov	(%rbx), %rax
	lea	m_k_runs(%rip), %rsi
	call	put_kv
	mov	$RUNS, %edx
	lea	m_runs(%rip), %rsi
	call	expect
	mov	8(%rbx), %rax
	lea	m_k_count(%rip), %rsi
	call	put_kv
	mov	$RUNS, %edx
	lea	m_count(%rip), %rsi
	call	expect
	mov	16(%rbx), %rax
	lea	m_k_bad(%rip), %rsi
	call	put_kv
	xor	%edx, %edx
	lea	m_bad(%rip), %rsi
	call	expect
	call	put_nl
	inc	%ebp
	cmp	$MAXV, %ebp
	jne	6b
	jmp	l1_done

park:	cli
	hlt
	jmp	park

l2:	incq	(%rsp)
	cpuid
	jmp	l2

	.data
m_case:		.asciz	"case smp_vcpu"
m_colon:	.asciz	":"
m_k_done:	.asciz	" done="
m_k_runs:	.asciz	" vmruns="
m_k_count:	.asciz	" l2_count="
m_k_bad:	.asciz	" bad_exits="
m_done:		.asciz	"finished"
m_runs:		.asciz	"vmruns"
m_count:	.asciz	"l2 count"
m_bad:		.asciz	"bad exits"
	.balign	8
ncpus:		.long	0
	.balign	8
results:	.fill	24*MAXV, 1, 0
done:		.fill	MAXV, 1, 0
	.balign	4096
vmcbs:		.fill	4096*MAXV, 1, 0
hsaves:		.fill	4096*MAXV, 1, 0
l2stacks:	.fill	4096*MAXV, 1, 0
	.include "l1lib.S"
