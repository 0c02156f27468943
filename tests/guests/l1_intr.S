/* L1 hypervisor payload: #VMEXIT(INTR) (APM 15.21.1): a physical
 * interrupt for L1 (KVM_INTERRUPT, raised through the tool's port 0x511)
 * while L2 runs and L1 intercepts INTR.
 *
 * Tagged [apm]: kvm_amd with a userspace interrupt controller (what `nsvm
 * run` uses: KVM_INTERRUPT, no in-kernel LAPIC) queues the interrupt as
 * already injected and delivers it into L2 without checking L1's INTR
 * intercept; L2 (no IDT of its own) then triple-faults and, L1 not
 * intercepting SHUTDOWN, the VM shuts down. nsvm follows the APM. */
	.code64
	.globl _start

	.include "l1macros.inc"

	.set	I1_INTR, 1 << 0

_start:
	call	l1_init
	/* The interrupt stays pending for L1 afterwards (L1 runs with IF=0
	 * to the end). L1 intercepts INTR without
	 * V_INTR_MASKING, so L2's IF masks physical interrupts (APM 15.21.1);
	 * L2 sets IF, asks the tool for external interrupt 41h (port 0x511)
	 * and spins: the interrupt ends L2 with #VMEXIT(INTR) (60h). */
	CASE	intr, l2_intr
	orl	$I1_INTR, C_INTERCEPT1(%rbx)
	RUN
	CODE	EXIT_INTR
	STR	%rsi, " [apm]"
	call	put_str
	call	put_nl

	jmp	l1_done

setup:	lea	vmcb(%rip), %rdi
	lea	l2stack(%rip), %rdx
	call	vmcb_init
	mov	%rdi, %rbx
	ret

l2_intr:
	sti
	mov	$0x511, %dx
	mov	$0x41, %al
	out	%al, %dx
	mov	$1000000, %ecx			/* bounded: no INTR exit is a failure */
1:	pause
	loop	1b
	vmmcall

	.data
	.balign	4096
vmcb:	.fill	4096, 1, 0
	.fill	4096, 1, 0
l2stack:
	.include "l1lib.S"
