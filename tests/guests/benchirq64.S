/* Long-mode guest for the interrupt rows of `nsvm bench` (rows 10-13), run
 * in a VM with the in-kernel local APIC (KVM_CAP_SPLIT_IRQCHIP) and two
 * vCPUs; both use x2APIC. RBX = iterations, RDI = vCPU index (the tool's
 * loader). Rows are timed and reported by vCPU 0 as in bench64.S
 * (benchrow.inc):
 *  10 LAPIC timer: one-shot timer of 1 tick (divide by 1), STI; HLT until
 *     its interrupt (vector 0x30) has run; the handler EOIs.
 *  11 IPI round trip: vCPU 0 sends a fixed IPI (0x41) to vCPU 1, whose
 *     handler sends one (0x40) back and EOIs; vCPU 0 waits in HLT for it.
 *  12 ioeventfd write: OUT to port 0x526, which the tool registered as an
 *     ioeventfd (no exit to userspace).
 *  13 MSI through irqfd: OUT to port 0x527 (an exit to userspace), where the
 *     tool signals an irqfd whose GSI routes an MSI (vector 0x42) to vCPU 0;
 *     the guest waits in HLT for it. Row 13 less the bench's row 3 (an IO
 *     exit to userspace) is the irqfd's share.
 * vCPU 1 enables its APIC, sets `ready` and halts with interrupts on; at the
 * end vCPU 0 sends it 0x43, whose handler writes port 0x501 (done). */
	.code64
	.globl _start
	.include "benchidt.inc"
	.set	APIC_BASE_MSR, 0x1b
	.set	X2APIC_EOI, 0x80b
	.set	X2APIC_SVR, 0x80f
	.set	X2APIC_ICR, 0x830
	.set	X2APIC_LVTT, 0x832
	.set	X2APIC_TMICT, 0x838
	.set	X2APIC_TDCR, 0x83e

	/* WRMSR \msr <- \lo (EDX 0). */
	.macro	wrmsr_lo msr, lo
	mov	$\msr, %ecx
	mov	\lo, %eax
	xor	%edx, %edx
	wrmsr
	.endm

_start:
	cli
	mov	%rbx, %r15			/* iterations */
	mov	%rdi, %r13			/* vCPU index */
	/* Both vCPUs write the same gates. */
	gate	0x30, irq0
	gate	0x40, irq0
	gate	0x42, irq0
	gate	0x41, pong
	gate	0x43, quit
	lidt	idtr(%rip)
	/* x2APIC on (APIC_BASE: EN, EXTD), software-enabled (SVR bit 8). */
	mov	$APIC_BASE_MSR, %ecx
	rdmsr
	or	$0xc00, %eax
	wrmsr
	wrmsr_lo X2APIC_SVR, $0x1ff
	test	%r13, %r13
	jnz	ap

1:	pause
	cmpb	$0, ready(%rip)
	je	1b

	/* row 10: LAPIC timer, one-shot, 1 tick */
	wrmsr_lo X2APIC_TDCR, $0xb
	wrmsr_lo X2APIC_LVTT, $0x30
	mov	$10, %r14
	call	start
1:	mov	%rcx, %rbp
	mov	irqs(%rip), %rsi
	inc	%rsi
	wrmsr_lo X2APIC_TMICT, $1
	call	wait_irq
	mov	%rbp, %rcx
	dec	%rcx
	jnz	1b
	call	stop

	/* row 11: IPI round trip with vCPU 1 (APIC id 1) */
	mov	$11, %r14
	call	start
1:	mov	%rcx, %rbp
	mov	irqs(%rip), %rsi
	inc	%rsi
	mov	$X2APIC_ICR, %ecx
	mov	$0x41, %eax
	mov	$1, %edx
	wrmsr
	call	wait_irq
	mov	%rbp, %rcx
	dec	%rcx
	jnz	1b
	call	stop

	/* row 12: ioeventfd write */
	mov	$12, %r14
	call	start
1:	mov	$0x526, %dx
	out	%al, %dx
	dec	%rcx
	jnz	1b
	call	stop

	/* row 13: MSI through irqfd, after an IO exit to userspace */
	mov	$13, %r14
	call	start
1:	mov	irqs(%rip), %rsi
	inc	%rsi
	mov	$0x527, %dx
	out	%al, %dx
	call	wait_irq
	dec	%rcx
	jnz	1b
	call	stop

	/* vCPU 1 leaves (0x43), then vCPU 0 */
	mov	$X2APIC_ICR, %ecx
	mov	$0x43, %eax
	mov	$1, %edx
	wrmsr
	mov	$0x501, %dx
	out	%al, %dx
	cli
	hlt

/* STI; HLT until irqs >= RSI (interrupts off again on return). */
wait_irq:
1:	sti
	hlt
	cli
	cmp	irqs(%rip), %rsi
	ja	1b
	ret

/* vCPU 1: ready, then halt with interrupts on (pong and quit run). */
ap:	movb	$1, ready(%rip)
1:	sti
	hlt
	jmp	1b

/* vCPU 0's interrupts (timer, IPI reply, MSI): count and EOI. */
irq0:	push	%rax
	push	%rcx
	push	%rdx
	incq	irqs(%rip)
	wrmsr_lo X2APIC_EOI, $0
	pop	%rdx
	pop	%rcx
	pop	%rax
	iretq

/* vCPU 1: IPI 0x40 back to APIC id 0, then EOI. */
pong:	push	%rax
	push	%rcx
	push	%rdx
	wrmsr_lo X2APIC_ICR, $0x40
	wrmsr_lo X2APIC_EOI, $0
	pop	%rdx
	pop	%rcx
	pop	%rax
	iretq

/* vCPU 1: the run is over. */
quit:	mov	$0x501, %dx
	out	%al, %dx
	cli
1:	hlt
	jmp	1b

	.include "benchrow.inc"
	.data
	.balign	8
irqs:	.quad	0
ready:	.byte	0
