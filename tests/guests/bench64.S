/* Long-mode guest for `nsvm bench`. For each row it reads the TSC, performs
 * the operation RBX times, reads the TSC again and reports the 64-bit delta
 * with OUT of EAX then EDX to ports 0x520/0x521 (row number in the low byte
 * of port 0x522 first). Rows: 0 empty loop (overhead), 1 CPUID, 2 RDMSR EFER,
 * 3 OUT to userspace, 4 first-touch nested page fault, 5 HLT woken by an
 * injected interrupt (vector 0x20). RBX (iterations) is set by the tool. */
	.code64
	.globl _start
	.set	TOUCH, 0x4000000		/* 64 MiB: never touched before row 4 */
_start:
	lea	idt(%rip), %rdi
	lea	isr(%rip), %rax
	mov	%ax, 0x20*16(%rdi)
	movw	$0x08, 0x20*16+2(%rdi)
	movw	$0x8e00, 0x20*16+4(%rdi)
	shr	$16, %rax
	mov	%ax, 0x20*16+6(%rdi)
	shr	$16, %rax
	mov	%eax, 0x20*16+8(%rdi)
	lidt	idtr(%rip)
	mov	%rbx, %r15			/* iterations */

	/* row 0: empty loop */
	mov	$0, %r14
	call	start
1:	dec	%rcx
	jnz	1b
	call	stop

	/* row 1: CPUID */
	mov	$1, %r14
	call	start
1:	mov	%rcx, %r13
	xor	%eax, %eax
	xor	%ecx, %ecx
	cpuid
	mov	%r13, %rcx
	dec	%rcx
	jnz	1b
	call	stop

	/* row 2: RDMSR EFER */
	mov	$2, %r14
	call	start
1:	mov	%rcx, %r13
	mov	$0xc0000080, %ecx
	rdmsr
	mov	%r13, %rcx
	dec	%rcx
	jnz	1b
	call	stop

	/* row 3: OUT to userspace */
	mov	$3, %r14
	call	start
1:	mov	$0x523, %dx
	out	%al, %dx
	dec	%rcx
	jnz	1b
	call	stop

	/* row 4: first touch of a page (nested page fault) */
	mov	$4, %r14
	mov	$TOUCH, %rsi
	call	start
1:	movb	$1, (%rsi)
	add	$4096, %rsi
	dec	%rcx
	jnz	1b
	call	stop

	/* row 5: HLT woken by an injected interrupt */
	mov	$5, %r14
	call	start
1:	sti
	hlt
	cli
	dec	%rcx
	jnz	1b
	call	stop

	mov	$0x501, %dx
	xor	%al, %al
	out	%al, %dx
	hlt

/* TSC into R12, RCX = iterations. */
start:	lfence
	rdtsc
	shl	$32, %rdx
	or	%rdx, %rax
	mov	%rax, %r12
	mov	%r15, %rcx
	ret
/* Report TSC - R12 for row R14. */
stop:	rdtsc
	lfence
	shl	$32, %rdx
	or	%rdx, %rax
	sub	%r12, %rax
	mov	%rax, %rbp
	mov	%r14, %rax
	mov	$0x522, %dx
	out	%al, %dx
	mov	%rbp, %rax
	mov	$0x520, %dx
	out	%eax, %dx
	shr	$32, %rax
	mov	$0x521, %dx
	out	%eax, %dx
	ret
isr:	iretq
	.data
	.balign	16
idtr:	.word	256*16-1
	.quad	idt
	.balign	16
idt:	.fill	256*16, 1, 0
