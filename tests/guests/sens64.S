/* Long-mode guest for the sensitive-instruction experiment: executes SIDT,
 * SGDT, SLDT, STR, SMSW (memory and register), MOV from CR0, PUSHF/POPF and
 * RDTSC and prints what it saw. Its output must be the same with and without
 * nsvm's interception policy (and on kvm_amd); only nsvm's counters differ. */
	.code64
	.globl _start
_start:
	lea	buf(%rip), %rbx
	sidt	(%rbx)
	mov	$10, %ecx
	lea	m_sidt(%rip), %rsi
	call	dump
	sgdt	(%rbx)
	mov	$10, %ecx
	lea	m_sgdt(%rip), %rsi
	call	dump
	movq	$0, (%rbx)
	sldt	(%rbx)
	mov	$2, %ecx
	lea	m_sldt(%rip), %rsi
	call	dump
	str	(%rbx)
	mov	$2, %ecx
	lea	m_str(%rip), %rsi
	call	dump
	smsw	(%rbx)
	mov	$2, %ecx
	lea	m_smswm(%rip), %rsi
	call	dump
	mov	$-1, %rax
	smsw	%rax
	mov	%rax, (%rbx)
	mov	$8, %ecx
	lea	m_smswr(%rip), %rsi
	call	dump
	mov	$-1, %rax
	smsw	%eax
	mov	%rax, (%rbx)
	mov	$8, %ecx
	lea	m_smsw32(%rip), %rsi
	call	dump
	mov	%cr0, %r9
	mov	%r9, (%rbx)
	mov	$8, %ecx
	lea	m_cr0(%rip), %rsi
	call	dump
	/* PUSHF/POPF: set AC and CF through POPF, read back through PUSHF. */
	pushfq
	pushq	$0x40203
	popfq
	pushfq
	pop	%rax
	popfq
	mov	%rax, (%rbx)
	mov	$8, %ecx
	lea	m_flags(%rip), %rsi
	call	dump
	/* 16-bit PUSHF/POPF. */
	pushw	$0x0ad7
	popfw
	pushfw
	popw	%ax
	mov	%ax, (%rbx)
	mov	$2, %ecx
	lea	m_flags16(%rip), %rsi
	call	dump
	pushq	$2
	popfq
	/* RDTSC moves forward. */
	rdtsc
	shl	$32, %rdx
	or	%rdx, %rax
	mov	%rax, %r8
	rdtsc
	shl	$32, %rdx
	or	%rdx, %rax
	cmp	%r8, %rax
	jbe	bad
	lea	m_tsc(%rip), %rsi
	call	puts
	xor	%eax, %eax		/* TSC values differ run to run */
	xor	%edx, %edx
	xor	%r8d, %r8d
	mov	$0x501, %dx
	mov	$17, %al
	out	%al, %dx
	hlt
bad:	mov	$0x501, %dx
	mov	$1, %al
	out	%al, %dx
	hlt

/* Print the string at RSI, then RCX bytes at RBX in hex, then a newline. */
dump:	push	%rcx
	call	puts
	pop	%rcx
	xor	%edi, %edi
1:	movzbl	(%rbx,%rdi), %eax
	push	%rax
	shr	$4, %al
	call	hex
	pop	%rax
	and	$0xf, %al
	call	hex
	inc	%rdi
	cmp	%rcx, %rdi
	jb	1b
	mov	$'\n', %al
	mov	$0x3f8, %dx
	out	%al, %dx
	ret
hex:	add	$'0', %al
	cmp	$'9', %al
	jbe	2f
	add	$39, %al
2:	mov	$0x3f8, %dx
	out	%al, %dx
	ret
puts:	lodsb
	test	%al, %al
	jz	3f
	mov	$0x3f8, %dx
	out	%al, %dx
	jmp	puts
3:	ret
	.data
m_sidt:	.asciz	"sidt   "
m_sgdt:	.asciz	"sgdt   "
m_sldt:	.asciz	"sldt   "
m_str:	.asciz	"str    "
m_smswm: .asciz	"smsw m "
m_smswr: .asciz	"smsw r "
m_smsw32: .asciz "smsw e "
m_cr0:	.asciz	"cr0    "
m_flags: .asciz	"pushf  "
m_flags16: .asciz "pushfw "
m_tsc:	.asciz	"rdtsc moves forward\n"
	.balign	16
buf:	.fill	16, 1, 0
