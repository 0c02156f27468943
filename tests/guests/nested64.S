/* Long-mode L1 hypervisor: enables SVM, sets VM_HSAVE_PA, builds a VMCB for
 * an L2 that shares its page tables (no nested paging) and runs it. L2 does
 * CPUID, VMMCALL and HLT; L1 intercepts all three (and VMRUN), prints each
 * exit code, advances L2's RIP and resumes it; after HLT it also checks that
 * a VMCB with ASID 0 fails with VMEXIT_INVALID. Exit status 33 on success. */
	.code64
	.globl _start
	.set	VMCB_SAVE, 0x400
_start:
	mov	$0xc0000080, %ecx		/* EFER.SVME */
	rdmsr
	or	$0x1000, %eax
	wrmsr
	mov	$0xc0010117, %ecx		/* VM_HSAVE_PA */
	lea	hsave(%rip), %rax
	xor	%edx, %edx
	wrmsr
	lea	vmcb(%rip), %rbx
	movl	$0x01040000, 0x0c(%rbx)		/* intercept CPUID, HLT */
	movl	$0x00000003, 0x10(%rbx)		/* intercept VMRUN, VMMCALL */
	movl	$1, 0x58(%rbx)			/* ASID */
	/* L2 state: L1's own segments, control registers and EFER. */
	movw	$0x08, VMCB_SAVE+0x10(%rbx)	/* CS */
	movw	$0x0a9b, VMCB_SAVE+0x12(%rbx)
	movl	$0xffffffff, VMCB_SAVE+0x14(%rbx)
	movw	$0x10, VMCB_SAVE+0x20(%rbx)	/* SS */
	movw	$0x0c93, VMCB_SAVE+0x22(%rbx)
	movl	$0xffffffff, VMCB_SAVE+0x24(%rbx)
	movw	$0x10, VMCB_SAVE+0x30(%rbx)	/* DS */
	movw	$0x0c93, VMCB_SAVE+0x32(%rbx)
	movl	$0xffffffff, VMCB_SAVE+0x34(%rbx)
	sgdt	gdtr(%rip)
	movzwl	gdtr(%rip), %eax
	mov	%eax, VMCB_SAVE+0x64(%rbx)
	mov	gdtr+2(%rip), %rax
	mov	%rax, VMCB_SAVE+0x68(%rbx)
	mov	%cr0, %rax
	mov	%rax, VMCB_SAVE+0x158(%rbx)
	mov	%cr3, %rax
	mov	%rax, VMCB_SAVE+0x150(%rbx)
	mov	%cr4, %rax
	mov	%rax, VMCB_SAVE+0x148(%rbx)
	mov	$0xc0000080, %ecx
	rdmsr
	mov	%eax, VMCB_SAVE+0xd0(%rbx)
	movq	$2, VMCB_SAVE+0x170(%rbx)	/* RFLAGS */
	lea	l2(%rip), %rax
	mov	%rax, VMCB_SAVE+0x178(%rbx)	/* RIP */
	lea	l2stack(%rip), %rax
	mov	%rax, VMCB_SAVE+0x1d8(%rbx)	/* RSP */
	mov	$0xffff0ff0, %eax		/* DR6 (zero-extended) */
	mov	%rax, VMCB_SAVE+0x168(%rbx)
	movq	$0x400, VMCB_SAVE+0x160(%rbx)	/* DR7 */
	mov	$0x0007040600070406, %rax
	mov	%rax, VMCB_SAVE+0x268(%rbx)	/* G_PAT */
run:	mov	%rbx, %rax
	vmrun
	stgi
	lea	vmcb(%rip), %rbx
	mov	0x70(%rbx), %rax		/* exit code */
	mov	%rax, %r12
	lea	m_exit(%rip), %rsi
	call	puts
	mov	%r12, %rax
	call	hex2
	mov	$0x3f8, %dx
	mov	$'\n', %al
	out	%al, %dx
	cmp	$0x72, %r12
	je	skip2
	cmp	$0x81, %r12
	je	skip3
	cmp	$0x78, %r12
	je	invalid
	jmp	fail
skip2:	/* With NRIPS offered (CPUID 0x8000000A EDX[3]), next_rip must be
	 * the address after L2's CPUID; either way the same line is printed. */
	push	%rbx
	mov	$0x8000000a, %eax
	cpuid
	pop	%rbx
	test	$8, %edx
	mov	$0, %edx			/* the feature words differ between hypervisors */
	jz	1f
	mov	VMCB_SAVE+0x178(%rbx), %rax
	add	$2, %rax
	cmp	0xc8(%rbx), %rax
	jne	fail
1:	lea	m_nrip(%rip), %rsi
	call	puts
	addq	$2, VMCB_SAVE+0x178(%rbx)
	jmp	run
skip3:	addq	$3, VMCB_SAVE+0x178(%rbx)
	jmp	run
invalid:
	movl	$0, 0x58(%rbx)			/* ASID 0: VMRUN must fail */
	mov	%rbx, %rax
	vmrun
	stgi
	mov	0x70(%rbx), %rax
	cmp	$-1, %rax
	jne	fail
	lea	m_inv(%rip), %rsi
	call	puts
	mov	$0x501, %dx
	mov	$33, %al
	out	%al, %dx
	hlt
fail:	mov	$0x501, %dx
	mov	$1, %al
	out	%al, %dx
	hlt

	.ifdef	L2_SPIN
l2:	jmp	l2				/* nestspin64.S: no exit L1 intercepts */
	.else
l2:	xor	%eax, %eax
	cpuid
	vmmcall
	hlt
	jmp	l2
	.endif

/* Print AL as two hex digits. */
hex2:	push	%rax
	shr	$4, %al
	and	$0xf, %al
	call	hexd
	pop	%rax
	and	$0xf, %al
hexd:	add	$'0', %al
	cmp	$'9', %al
	jbe	1f
	add	$39, %al
1:	mov	$0x3f8, %dx
	out	%al, %dx
	ret
puts:	lodsb
	test	%al, %al
	jz	2f
	mov	$0x3f8, %dx
	out	%al, %dx
	jmp	puts
2:	ret
	.data
m_exit:	.asciz	"L2 exit "
m_inv:	.asciz	"VMRUN with ASID 0: VMEXIT_INVALID\n"
m_nrip:	.asciz	"next_rip consistent with NRIPS\n"
gdtr:	.fill	10, 1, 0
	.balign	4096
vmcb:	.fill	4096, 1, 0
hsave:	.fill	4096, 1, 0
	.fill	4096, 1, 0
l2stack:
