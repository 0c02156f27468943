/* A malicious L1 (long mode): 100,000 VMRUNs of a vmcb12 filled with
 * pseudo-random values (xorshift64), with VMRUN and HLT intercepted and an L2
 * RIP on a page of HLTs; one time in two the fields APM 15.5.1 checks are
 * repaired so that L2 really runs (real or protected mode, random segments).
 * L1 counts the outcomes, VMEXIT_INVALID or any other exit code, and prints
 * them. */
	.code64
	.globl _start
	.set	N, 100000
_start:
	mov	$0xc0000080, %ecx
	rdmsr
	or	$0x1000, %eax
	wrmsr
	mov	$0xc0010117, %ecx
	lea	hsave(%rip), %rax
	xor	%edx, %edx
	wrmsr
	mov	$0x9e3779b97f4a7c15, %r15	/* xorshift state */
	xor	%r13, %r13			/* VMEXIT_INVALID count */
	xor	%r14, %r14			/* other exits */
	mov	$N, %r12
next:	lea	vmcb(%rip), %rdi
	mov	$512, %ecx
1:	mov	%r15, %rax
	shl	$13, %rax
	xor	%rax, %r15
	mov	%r15, %rax
	shr	$7, %rax
	xor	%rax, %r15
	mov	%r15, %rax
	shl	$17, %rax
	xor	%rax, %r15
	mov	%r15, (%rdi)
	add	$8, %rdi
	dec	%ecx
	jnz	1b
	lea	vmcb(%rip), %rbx
	orl	$1, 0x10(%rbx)			/* VMRUN intercepted */
	orl	$0x01000000, 0x0c(%rbx)		/* HLT intercepted */
	testb	$1, %r15b
	jz	2f
	/* One time in two, repair what APM 15.5.1 checks so that L2 runs, in
	 * real or protected mode with random segments, flags and controls. */
	movq	$0x1000, 0x4d0(%rbx)		/* EFER = SVME */
	mov	%r15, %rax
	and	$1, %eax
	or	$0x10, %eax
	mov	%rax, 0x558(%rbx)		/* CR0: ET, maybe PE */
	movq	$0, 0x550(%rbx)			/* CR3 */
	movq	$0, 0x548(%rbx)			/* CR4 */
	movl	$0, 0x56c(%rbx)			/* DR6[63:32] */
	movq	$0x400, 0x560(%rbx)		/* DR7 */
	mov	%r15, %rax
	and	$7, %eax
	inc	%eax
	mov	%eax, 0x58(%rbx)		/* ASID 1..8 */
	movq	$0, 0xa8(%rbx)			/* EVENTINJ */
	movq	$0, 0x90(%rbx)			/* nested_ctl */
	lea	hsave(%rip), %rax
	mov	%rax, 0x40(%rbx)		/* IOPM */
	mov	%rax, 0x48(%rbx)		/* MSRPM */
	movw	$0x9b, 0x412(%rbx)		/* CS: present code */
	movl	$0xffffffff, 0x414(%rbx)
	movq	$0, 0x418(%rbx)			/* CS base 0 */
	mov	%r15, %rax
	and	$0x200, %eax
	or	$2, %eax
	mov	%rax, 0x570(%rbx)		/* RFLAGS: maybe IF */
	movb	$0, 0x4cb(%rbx)			/* CPL 0 */
	lea	hsave(%rip), %rax
	mov	%rax, 0x488(%rbx)		/* IDTR base: zeroed gates */
	mov	%rax, 0x468(%rbx)		/* GDTR base */
2:	lea	hltpage(%rip), %rax
	mov	%rax, 0x578(%rbx)		/* L2 RIP on HLTs */
	mov	%rbx, %rax
	vmrun
	stgi
	mov	0x70(%rbx), %rax
	cmp	$-1, %rax
	jne	3f
	inc	%r13
	jmp	4f
3:	inc	%r14
4:	dec	%r12
	jnz	next
	lea	msg(%rip), %rsi
	call	puts
	mov	%r13, %rax
	call	dec64
	lea	msg2(%rip), %rsi
	call	puts
	mov	%r14, %rax
	call	dec64
	mov	$'\n', %al
	mov	$0x3f8, %dx
	out	%al, %dx
	mov	$0x501, %dx
	mov	$44, %al
	out	%al, %dx
	hlt

/* Print RAX in decimal. */
dec64:	lea	buf+20(%rip), %rdi
	movb	$0, (%rdi)
	mov	$10, %rcx
5:	xor	%edx, %edx
	div	%rcx
	add	$'0', %dl
	dec	%rdi
	mov	%dl, (%rdi)
	test	%rax, %rax
	jnz	5b
	mov	%rdi, %rsi
puts:	lodsb
	test	%al, %al
	jz	6f
	mov	$0x3f8, %dx
	out	%al, %dx
	jmp	puts
6:	ret
	.data
msg:	.asciz	"VMRUNs ending in VMEXIT_INVALID: "
msg2:	.asciz	", in L2 exits: "
buf:	.fill	24, 1, 0
	.balign	4096
vmcb:	.fill	4096, 1, 0
hsave:	.fill	4096, 1, 0
hltpage: .fill	4096, 1, 0xf4
