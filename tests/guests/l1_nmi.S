/* NMIs of L1 (raised through the tool's port 513h, KVM_NMI): held while
 * L1's GIF is clear (APM 15.17.1) and taken right after STGI; masked while
 * L1's NMI handler runs, until its IRET (APM 8.5); and, while L2 runs with
 * L1 intercepting NMIs, ending L2 with #VMEXIT(NMI) (APM 15.21.3), the NMI
 * itself staying pending for L1 until it sets GIF. */
	.code64
	.globl _start
	.set	NMI_PORT, 0x513
_start:
	call	l1_init
	/* IDT: vector 2 -> nmi_handler (64-bit interrupt gate, CS 08h). */
	lea	l1_idt+2*16(%rip), %rdi
	lea	l1_nmi_handler(%rip), %rsi
	call	idt_gate
	call	l1_lidt

	/* 1. GIF=0 holds the NMI; STGI lets it in. */
	clgi
	mov	$NMI_PORT, %dx
	out	%al, %dx
	mov	$10000, %ecx
1:	loop	1b
	mov	l1_nmis(%rip), %r12
	stgi
	nop
	mov	l1_nmis(%rip), %r13
	lea	m_gif(%rip), %rsi
	call	put_str
	mov	%r12, %rax
	lea	m_before(%rip), %rsi
	call	put_kv
	xor	%edx, %edx
	call	expect
	mov	%r13, %rax
	lea	m_after(%rip), %rsi
	call	put_kv
	mov	$1, %edx
	call	expect
	call	put_nl

	/* 2. An NMI raised inside the handler waits for its IRET. */
	movq	$1, l1_nmi_reraise(%rip)
	mov	$NMI_PORT, %dx
	out	%al, %dx
	lea	m_iret(%rip), %rsi		/* an exit after the IRET */
	call	put_str
	mov	l1_nmi_nested(%rip), %rax
	lea	m_nested(%rip), %rsi
	call	put_kv
	xor	%edx, %edx
	call	expect
	mov	l1_nmis(%rip), %rax
	lea	m_count(%rip), %rsi
	call	put_kv
	mov	$3, %edx
	call	expect
	call	put_nl

	/* 3. L2 runs, L1 intercepts NMI: #VMEXIT(NMI), then the NMI reaches
	 * L1 after its STGI (l1_vmrun). */
	lea	vmcb(%rip), %rdi
	lea	l2(%rip), %rsi
	lea	l2stack(%rip), %rdx
	call	vmcb_init
	orl	$0x2, C_INTERCEPT1(%rdi)	/* NMI */
	call	l1_vmrun
	mov	%rax, %r12
	mov	l1_nmis(%rip), %r13
	lea	m_icpt(%rip), %rsi
	call	put_str
	mov	%r12, %rax
	lea	m_code(%rip), %rsi
	call	put_kv
	mov	$EXIT_NMI, %edx
	call	expect
	mov	%r13, %rax
	lea	m_count(%rip), %rsi
	call	put_kv
	mov	$4, %edx
	call	expect
	call	put_nl
	jmp	l1_done

l2:	mov	$NMI_PORT, %dx
	out	%al, %dx
	mov	$100000, %ecx
1:	loop	1b
	vmmcall
	hlt

	.data
m_gif:		.asciz	"case nmi_held_by_gif:"
m_iret:		.asciz	"case nmi_masked_until_iret:"
m_icpt:		.asciz	"case nmi_intercepted_while_l2_runs:"
m_before:	.asciz	" before_stgi="
m_after:	.asciz	" after_stgi="
m_nested:	.asciz	" nested="
m_count:	.asciz	" nmis="
m_code:		.asciz	" code="
	.balign	4096
vmcb:	.fill	4096, 1, 0
	.fill	4096, 1, 0
l2stack:
	.include "l1lib.S"
