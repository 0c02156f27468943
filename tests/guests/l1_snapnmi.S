/* Snapshot with events in flight (KVM_GET/SET_VCPU_EVENTS through `nsvm
 * run --snapshot/--restore`): the guest's NMI handler raises a second NMI
 * (pending: NMIs are masked until the handler's IRET, APM 8.5) and asks for
 * the snapshot right then (OUT to port 502h). The run continued from the
 * snapshot must still deliver the second NMI after the IRET, not during the
 * handler: both the pending NMI and the masking travel in the snapshot. */
	.code64
	.globl _start
	.set	NMI_PORT, 0x513
_start:
	lea	idt+2*16(%rip), %rdi
	lea	nmi_handler(%rip), %rsi
	call	idt_gate
	lidt	idtr(%rip)
	mov	$NMI_PORT, %dx
	out	%al, %dx			/* NMI 1 */
	lea	m_case(%rip), %rsi		/* exits: NMI 2 arrives by now */
	call	put_str
	mov	nested(%rip), %rax
	lea	m_nested(%rip), %rsi
	call	put_kv
	xor	%edx, %edx
	call	expect
	mov	nmis(%rip), %rax
	lea	m_nmis(%rip), %rsi
	call	put_kv
	mov	$2, %edx
	call	expect
	call	put_nl
	jmp	l1_done

nmi_handler:
	push	%rax
	push	%rdx
	push	%rcx
	cmpq	$0, in_nmi(%rip)
	je	1f
	movq	$1, nested(%rip)
1:	movq	$1, in_nmi(%rip)
	incq	nmis(%rip)
	cmpq	$1, nmis(%rip)
	jne	2f
	mov	$NMI_PORT, %dx			/* NMI 2: pending until IRET */
	out	%al, %dx
	mov	$0x502, %dx			/* the snapshot, inside the handler */
	out	%al, %dx
	mov	$10000, %ecx
3:	loop	3b
2:	movq	$0, in_nmi(%rip)
	pop	%rcx
	pop	%rdx
	pop	%rax
	iretq

	.data
m_case:		.asciz	"case snapshot_with_nmi_pending_and_masked:"
m_nested:	.asciz	" nested="
m_nmis:		.asciz	" nmis="
	.balign	8
nmis:		.quad	0
in_nmi:		.quad	0
nested:		.quad	0
idtr:		.word	32*16-1
		.quad	idt
	.balign	16
idt:		.fill	32*16, 1, 0
	.include "l1lib.S"
