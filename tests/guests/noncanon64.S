/* Long-mode guest: WRMSR of a non-canonical address to LSTAR must raise #GP
 * (APM vol. 2 6.1.1 / WRMSR: #GP for a non-canonical value in an MSR that
 * holds an address). kvm_amd passes LSTAR through to the processor, and
 * QEMU's TCG does not check canonicality, so on TCG kvm_amd lets the write
 * through: this case follows the APM and is not compared with kvm_amd. */
	.code64
	.globl _start
_start:
	lea	idt(%rip), %rdi
	lea	gp_handler(%rip), %rax
	mov	%ax, 13*16(%rdi)
	movw	$0x08, 13*16+2(%rdi)
	movw	$0x8e00, 13*16+4(%rdi)
	shr	$16, %rax
	mov	%ax, 13*16+6(%rdi)
	shr	$16, %rax
	mov	%eax, 13*16+8(%rdi)
	lidt	idtr(%rip)
	mov	$0xc0000082, %ecx
	mov	$0x00008000, %edx
	xor	%eax, %eax
	wrmsr
	mov	$0x501, %dx
	mov	$1, %al			/* no #GP */
	out	%al, %dx
	hlt
gp_handler:
	mov	$0x501, %dx
	mov	$13, %al		/* #GP seen */
	out	%al, %dx
	hlt
	.data
	.balign	16
idtr:	.word	256*16-1
	.quad	idt
	.balign	16
idt:	.fill	256*16, 1, 0
