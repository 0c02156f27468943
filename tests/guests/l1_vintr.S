/* L1 hypervisor payload: L1's virtual interrupt for L2 (V_IRQ of vmcb12,
 * APM 15.21.4) while L0 needs an interrupt window of its own for a
 * physical interrupt of L1 that L2 takes (KVM's svm_int_ctl_test).
 *
 * vmcb12 has V_IRQ (vector 21h, priority 1) without V_INTR_MASKING and
 * without the INTR and VINTR intercepts, so L1's physical interrupts are
 * delivered into L2, masked by L2's IF (APM 15.21.1). L2 (IF=0, an IDT of
 * its own) asks the tool for external interrupt 31h (port 0x511,
 * KVM_INTERRUPT once an interrupt window opens), then STI: both
 * interrupts must reach L2, the physical one first (order=12: handler
 * 31h, then 21h), and vmcb12's V_IRQ is clear after the #VMEXIT (taken). */
	.code64
	.globl _start

	.include "l1macros.inc"

_start:
	call	l1_init
	CASE	vintr_with_window, l2_vintr
	movl	$(1 << 8) | (1 << 16), C_INT_CTL(%rbx)	/* V_IRQ, V_INTR_PRIO 1 */
	movl	$0x21, C_INT_VECTOR(%rbx)
	lea	l2_idt(%rip), %rax
	mov	%rax, S_IDTR+8(%rbx)
	movl	$256 * 16 - 1, S_IDTR+4(%rbx)
	lea	l2_idt+16*0x21(%rip), %rdi
	lea	l2_h21(%rip), %rsi
	call	idt_gate
	lea	l2_idt+16*0x31(%rip), %rdi
	lea	l2_h31(%rip), %rsi
	call	idt_gate
	RUN
	CODE	EXIT_VMMCALL
	KV	order, S_RAX(%rbx)
	EXPECT	0x12, order
	mov	C_INT_CTL(%rbx), %eax
	shr	$8, %eax
	and	$1, %eax
	KV	v_irq, %rax
	EXPECT	0, v_irq
	call	put_nl

	jmp	l1_done

setup:	lea	vmcb(%rip), %rdi
	lea	l2stack(%rip), %rdx
	call	vmcb_init
	mov	%rdi, %rbx
	ret

l2_vintr:
	mov	$0x511, %dx
	mov	$0x31, %al
	out	%al, %dx
	sti
	nop
	mov	$100000, %ecx			/* bounded: a lost interrupt is a failure */
1:	pause
	loop	1b
	cli
	mov	l2_order(%rip), %rax
	vmmcall
	hlt
l2_h21:	shlq	$4, l2_order(%rip)
	orq	$2, l2_order(%rip)
	iretq
l2_h31:	shlq	$4, l2_order(%rip)
	orq	$1, l2_order(%rip)
	iretq

	.data
	.balign	8
l2_order:	.quad	0
	.balign	4096
l2_idt:	.fill	4096, 1, 0
vmcb:	.fill	4096, 1, 0
	.fill	4096, 1, 0
l2stack:
	.include "l1lib.S"
