/* L1 hypervisor payload run with the split irqchip (`nsvm run --irqchip
 * split`): L1's own in-kernel local APIC (x2APIC) times out while L2 runs
 * and L1 intercepts INTR: the timer interrupt for L1 ends L2 with
 * #VMEXIT(INTR) (60h) (APM 15.21.1), and stays requested in L1's APIC
 * (L1 keeps IF = 0), as with a physical interrupt. */
	.code64
	.globl _start

	.include "l1macros.inc"

	.set	I1_INTR, 1 << 0

_start:
	call	l1_init
	/* x2APIC mode, software enabled; timer: one-shot, vector 41h,
	 * divide by 1, 1 ms. */
	mov	$0x1b, %ecx
	rdmsr
	or	$0xc00, %eax
	wrmsr
	xor	%edx, %edx
	mov	$0x80f, %ecx
	mov	$0x1ff, %eax
	wrmsr
	mov	$0x83e, %ecx
	mov	$0xb, %eax
	wrmsr
	mov	$0x832, %ecx
	mov	$0x41, %eax
	wrmsr
	CASE	apic_timer, l2_spin
	orl	$I1_INTR, C_INTERCEPT1(%rbx)
	mov	$0x838, %ecx			/* TMICT: the timer starts now */
	mov	$1000000, %eax
	xor	%edx, %edx
	wrmsr
	RUN
	CODE	EXIT_INTR
	/* The vector waits in L1's IRR (L1 has IF = 0). */
	mov	$0x822, %ecx			/* IRR bits 95:64 */
	rdmsr
	and	$0x2, %eax			/* vector 41h */
	KV	irr41, %rax
	EXPECT	2, irr41
	call	put_nl

	jmp	l1_done

setup:	lea	vmcb(%rip), %rdi
	lea	l2stack(%rip), %rdx
	call	vmcb_init
	mov	%rdi, %rbx
	ret

l2_spin:
	sti
	mov	$100000000, %ecx		/* bounded: no INTR exit is a failure */
1:	pause
	loop	1b
	vmmcall

	.data
	.balign	4096
vmcb:	.fill	4096, 1, 0
	.fill	4096, 1, 0
l2stack:
	.include "l1lib.S"
