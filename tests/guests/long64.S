/* Long-mode guest (ELF64, started in 64-bit mode by the loader): COM1 output,
 * MSR round trips, its own IDT handling #UD, #GP and #PF, then HLT. */
	.code64
	.globl _start
_start:
	lea	msg(%rip), %rsi
	call	puts
	/* IDT: vectors 6 (#UD), 13 (#GP) and 14 (#PF) go to handlers. */
	lea	idt(%rip), %rdi
	mov	$6, %ecx
	lea	ud_handler(%rip), %rax
	call	set_gate
	mov	$13, %ecx
	lea	gp_handler(%rip), %rax
	call	set_gate
	mov	$14, %ecx
	lea	pf_handler(%rip), %rax
	call	set_gate
	lidt	idtr(%rip)
	/* MSR round trips: STAR, LSTAR, SFMASK, KERNEL_GS_BASE. */
	mov	$0xc0000081, %ecx
	mov	$0x00230010, %edx
	xor	%eax, %eax
	wrmsr
	xor	%edx, %edx
	rdmsr
	cmp	$0x00230010, %edx
	jne	fail
	mov	$0xc0000082, %ecx
	mov	$0xffffffff, %edx
	mov	$0x81000000, %eax
	wrmsr
	xor	%eax, %eax
	xor	%edx, %edx
	rdmsr
	cmp	$0x81000000, %eax
	jne	fail
	lea	msrok(%rip), %rsi
	call	puts
	/* An unknown MSR is #GP. */
	movb	$0, gp_seen(%rip)
	mov	$0xdeadbeef, %ecx
	rdmsr
	cmpb	$1, gp_seen(%rip)
	jne	fail
	lea	gpok(%rip), %rsi
	call	puts
	/* #UD from UD2, handled by the guest. */
	ud2
	lea	udok(%rip), %rsi
	call	puts
	/* #PF: an address beyond the identity map (4 GiB). */
	movabs	$0x200000000, %rbx
	mov	(%rbx), %rax
	lea	pfok(%rip), %rsi
	call	puts
	mov	%cr2, %rax
	mov	%rax, %r12
	mov	$0xc0000080, %ecx
	rdmsr
	mov	%rax, %r13
	mov	$0x1122334455667788, %r14
	mov	$0x501, %dx
	mov	$7, %al
	out	%al, %dx
	hlt

fail:	lea	failmsg(%rip), %rsi
	call	puts
	mov	$0x501, %dx
	mov	$1, %al
	out	%al, %dx
	hlt

/* RCX = vector, RAX = handler, RDI = IDT base: 64-bit interrupt gate, CS 0x08. */
set_gate:
	shl	$4, %rcx
	add	%rdi, %rcx
	mov	%ax, (%rcx)
	movw	$0x08, 2(%rcx)
	movw	$0x8e00, 4(%rcx)
	shr	$16, %rax
	mov	%ax, 6(%rcx)
	shr	$16, %rax
	mov	%eax, 8(%rcx)
	movl	$0, 12(%rcx)
	ret

ud_handler:
	addq	$2, (%rsp)		/* skip UD2 */
	iretq
gp_handler:
	movb	$1, gp_seen(%rip)
	add	$8, %rsp		/* error code */
	addq	$2, (%rsp)		/* skip WRMSR/RDMSR */
	iretq
pf_handler:
	mov	(%rsp), %r15		/* error code */
	add	$8, %rsp
	addq	$3, (%rsp)		/* skip mov (%rbx), %rax */
	iretq

puts:	lodsb
	test	%al, %al
	jz	1f
	mov	$0x3f8, %dx
	out	%al, %dx
	jmp	puts
1:	ret

	.data
msg:	.asciz	"long mode: hello from the guest\n"
msrok:	.asciz	"MSR round trips ok\n"
gpok:	.asciz	"#GP for an unknown MSR delivered to the guest IDT\n"
udok:	.asciz	"#UD handled by the guest\n"
pfok:	.asciz	"#PF handled by the guest\n"
failmsg: .asciz	"FAILED\n"
gp_seen: .byte	0
	.balign	16
idtr:	.word	256*16-1
	.quad	idt
	.balign	16
idt:	.fill	256*16, 1, 0
