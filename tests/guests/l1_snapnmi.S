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
	lea	l1_idt+2*16(%rip), %rdi
	lea	l1_nmi_handler(%rip), %rsi
	call	idt_gate
	call	l1_lidt
	movq	$1, l1_nmi_reraise(%rip)	/* the handler raises NMI 2 ... */
	movq	$1, l1_nmi_snapshot(%rip)	/* ... and asks for the snapshot */
	mov	$NMI_PORT, %dx
	out	%al, %dx			/* NMI 1 */
	lea	m_case(%rip), %rsi		/* exits: NMI 2 arrives by now */
	call	put_str
	mov	l1_nmi_nested(%rip), %rax
	lea	m_nested(%rip), %rsi
	call	put_kv
	xor	%edx, %edx
	call	expect
	mov	l1_nmis(%rip), %rax
	lea	m_nmis(%rip), %rsi
	call	put_kv
	mov	$2, %edx
	call	expect
	call	put_nl
	jmp	l1_done

	.data
m_case:		.asciz	"case snapshot_with_nmi_pending_and_masked:"
m_nested:	.asciz	" nested="
m_nmis:		.asciz	" nmis="
	.balign	8
	.include "l1lib.S"
