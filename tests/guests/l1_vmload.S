/* VMLOAD/VMSAVE (APM vol. 2 15.5.2): the state they move between a VMCB and
 * the processor is FS, GS, TR and LDTR with their hidden state (selector,
 * attributes, limit, base), KernelGsBase, STAR, LSTAR, CSTAR, SFMASK and
 * SYSENTER_CS/ESP/EIP.
 *
 * L1 saves its own state (VMSAVE into `orig`), VMLOADs known values from
 * `src`, reads them back with RDMSR and MOV/STR/SLDT, VMSAVEs into the zeroed
 * `dst`, restores its own state (VMLOAD `orig`) and compares. Every printed
 * value must equal the one written into `src` (SYSENTER_ESP/EIP are kept to
 * 32 bits: their upper halves are not architecturally kept on AMD). */
	.macro	MSRCHK name, msr, off
	.pushsection .data
9:	.asciz	" \name="
	.popsection
	mov	$\msr, %ecx
	rdmsr
	shl	$32, %rdx
	or	%rdx, %rax
	lea	9b(%rip), %rsi
	call	put_kv
	mov	src+\off(%rip), %rdx
	call	expect
	.endm

	.macro	FIELD name, off, width
	.pushsection .data
9:	.asciz	" \name="
	.popsection
	.if	\width == 2
	movzwl	dst+\off(%rip), %eax
	movzwl	src+\off(%rip), %edx
	.elseif	\width == 4
	mov	dst+\off(%rip), %eax
	mov	src+\off(%rip), %edx
	.else
	mov	dst+\off(%rip), %rax
	mov	src+\off(%rip), %rdx
	.endif
	lea	9b(%rip), %rsi
	call	put_kv
	call	expect
	.endm

	.macro	CASE name
	.pushsection .data
9:	.asciz	"case \name:"
	.popsection
	lea	9b(%rip), %rsi
	call	put_str
	.endm

	.macro	SEGCASE name, seg
	CASE	vmsave_\name
	FIELD	sel, \seg, 2
	FIELD	attr, \seg+2, 2
	FIELD	limit, \seg+4, 4
	FIELD	base, \seg+8, 8
	call	put_nl
	.endm

	.set	S_STAR, VMCB_SAVE+0x200
	.set	S_LSTAR, VMCB_SAVE+0x208
	.set	S_CSTAR, VMCB_SAVE+0x210
	.set	S_SFMASK, VMCB_SAVE+0x218
	.set	S_KGS, VMCB_SAVE+0x220
	.set	S_SYSENTER_CS, VMCB_SAVE+0x228
	.set	S_SYSENTER_ESP, VMCB_SAVE+0x230
	.set	S_SYSENTER_EIP, VMCB_SAVE+0x238

	.code64
	.globl _start
_start:
	call	l1_init
	lea	orig(%rip), %rax
	vmsave
	lea	src(%rip), %rax
	vmload
	/* The loaded state, as the processor now has it. */
	mov	%fs, %bx
	mov	%gs, %r12w
	str	%r13w
	sldt	%r14w
	CASE	vmload_rdmsr
	MSRCHK	fs_base, 0xc0000100, S_FS+8
	MSRCHK	gs_base, 0xc0000101, S_GS+8
	MSRCHK	kernel_gs_base, 0xc0000102, S_KGS
	MSRCHK	star, 0xc0000081, S_STAR
	MSRCHK	lstar, 0xc0000082, S_LSTAR
	MSRCHK	cstar, 0xc0000083, S_CSTAR
	MSRCHK	sfmask, 0xc0000084, S_SFMASK
	MSRCHK	sysenter_cs, 0x174, S_SYSENTER_CS
	MSRCHK	sysenter_esp, 0x175, S_SYSENTER_ESP
	MSRCHK	sysenter_eip, 0x176, S_SYSENTER_EIP
	call	put_nl
	lea	dst(%rip), %rax
	vmsave
	lea	orig(%rip), %rax
	vmload
	CASE	vmload_selectors
	lea	m_fs(%rip), %rsi
	movzwl	%bx, %eax
	movzwl	src+S_FS(%rip), %edx
	call	put_kv
	call	expect
	lea	m_gs(%rip), %rsi
	movzwl	%r12w, %eax
	movzwl	src+S_GS(%rip), %edx
	call	put_kv
	call	expect
	lea	m_tr(%rip), %rsi
	movzwl	%r13w, %eax
	movzwl	src+S_TR(%rip), %edx
	call	put_kv
	call	expect
	lea	m_ldtr(%rip), %rsi
	movzwl	%r14w, %eax
	movzwl	src+S_LDTR(%rip), %edx
	call	put_kv
	call	expect
	call	put_nl
	SEGCASE	fs, S_FS
	SEGCASE	gs, S_GS
	SEGCASE	tr, S_TR
	SEGCASE	ldtr, S_LDTR
	CASE	vmsave_msrs
	FIELD	kernel_gs_base, S_KGS, 8
	FIELD	star, S_STAR, 8
	FIELD	lstar, S_LSTAR, 8
	FIELD	cstar, S_CSTAR, 8
	FIELD	sfmask, S_SFMASK, 8
	FIELD	sysenter_cs, S_SYSENTER_CS, 8
	FIELD	sysenter_esp, S_SYSENTER_ESP, 8
	FIELD	sysenter_eip, S_SYSENTER_EIP, 8
	call	put_nl
	/* VMSAVE leaves the rest of the VMCB alone: a control-area and a
	 * save-area word outside the VMLOAD set keep their poison. */
	CASE	vmsave_untouched
	mov	dst+C_EXIT_CODE(%rip), %rax
	lea	m_exitcode(%rip), %rsi
	call	put_kv
	mov	$0x5a5a5a5a, %edx
	call	expect
	mov	dst+S_RIP(%rip), %rax
	lea	m_rip(%rip), %rsi
	call	put_kv
	mov	$0x5a5a5a5a, %edx
	call	expect
	call	put_nl
	jmp	l1_done

	.data
m_fs:		.asciz	" fs="
m_gs:		.asciz	" gs="
m_tr:		.asciz	" tr="
m_ldtr:		.asciz	" ldtr="
m_exitcode:	.asciz	" exit_code="
m_rip:		.asciz	" rip="
	.balign	4096
orig:	.fill	4096, 1, 0
dst:	.fill	0x70, 1, 0			/* up to C_EXIT_CODE */
	.quad	0x5a5a5a5a			/* exit code: poison */
	.org	dst+0x578			/* S_RIP */
	.quad	0x5a5a5a5a			/* RIP: poison */
	.org	dst+4096
src:	.fill	0x440, 1, 0			/* up to S_FS */
	/* FS: selector, attributes (G D/B P S type 3), limit, base */
	.word	0x0010, 0x0c93
	.long	0x000fffff
	.quad	0x0000111122223330
	/* GS */
	.word	0x0018, 0x0093
	.long	0x0000ffff
	.quad	0xffff800012345678
	.fill	0x10, 1, 0			/* GDTR */
	/* LDTR: type 2 (LDT), present */
	.word	0x0028, 0x0082
	.long	0x000000ff
	.quad	0x0000000000003000
	.fill	0x10, 1, 0			/* IDTR */
	/* TR: type 11 (busy 64-bit TSS), present */
	.word	0x0030, 0x008b
	.long	0x00000067
	.quad	0x0000000000104000
	.fill	0x200-0xa0, 1, 0
	.quad	0x0023001000000000		/* STAR */
	.quad	0xffffffff81000010		/* LSTAR */
	.quad	0xffffffff82000020		/* CSTAR */
	.quad	0x0000000000047700		/* SFMASK */
	.quad	0x0000777766665550		/* KernelGsBase */
	.quad	0x0000000000000010		/* SYSENTER_CS */
	.quad	0x0000000012345000		/* SYSENTER_ESP */
	.quad	0x0000000023456000		/* SYSENTER_EIP */
	.org	src+4096
	.include "l1lib.S"
