/* STGI/CLGI with a pending external interrupt (APM vol. 2 15.17): with GIF
 * clear, interrupts are held pending whatever RFLAGS.IF says; STGI lets
 * them in. The interrupt comes from the VMM: a write of the vector to port
 * 0x511 makes `nsvm run` queue it for KVM_INTERRUPT, injected as soon as
 * the vCPU can take it.
 *
 * Cases (vector 0x40, L1's handler counts and records where it landed):
 *   gif_baseline      GIF=1 IF=1: delivered (count=1)
 *   gif0_holds_intr   CLGI, STI, interrupt raised, 20000 iterations later
 *                     still pending (before=0); after STGI it arrives
 *                     (after=1) at an instruction after STGI (in_window=1)
 *   gif1_if0_holds    CLGI, CLI, raised, STGI: still pending (before=0,
 *                     IF=0); STI lets it in (after=1, in_window=1)
 */
	.set	VEC, 0x40
	.set	IRQ_PORT, 0x511

/* Waits (bounded) for the interrupt, inline: the interrupted RIP must fall
 * inside the window that follows STGI/STI. */
	.macro	WAIT_IRQ
	mov	$1000000, %ecx
8:	cmpl	$0, count(%rip)
	jne	9f
	pause
	dec	%ecx
	jnz	8b
9:
	.endm

	.code64
	.globl _start
_start:
	call	l1_init
	call	idt_init

	/* Baseline: GIF=1, IF=1. */
	movl	$0, count(%rip)
	sti
	mov	$VEC, %al
	mov	$IRQ_PORT, %dx
	out	%al, %dx
	call	wait_irq
	cli
	lea	m_base(%rip), %rsi
	call	case_head
	mov	count(%rip), %eax
	lea	m_k_count(%rip), %rsi
	call	put_kv
	mov	$1, %edx
	lea	m_count(%rip), %rsi
	call	expect
	call	put_nl

	/* GIF=0, IF=1. */
	movl	$0, count(%rip)
	clgi
	sti
	mov	$VEC, %al
	mov	$IRQ_PORT, %dx
	out	%al, %dx
	call	spin
	mov	count(%rip), %ebx
	lea	win1(%rip), %rax
	mov	%rax, win_lo(%rip)
	stgi
win1:	WAIT_IRQ
	lea	win1_end(%rip), %rax
win1_end:
	cli
	mov	%rax, win_hi(%rip)
	lea	m_gif0(%rip), %rsi
	call	report

	/* GIF=0, IF=0, then STGI (still IF=0), then STI. */
	movl	$0, count(%rip)
	clgi
	mov	$VEC, %al
	mov	$IRQ_PORT, %dx
	out	%al, %dx
	call	spin
	stgi
	call	spin
	mov	count(%rip), %ebx
	lea	win2(%rip), %rax
	mov	%rax, win_lo(%rip)
	sti
win2:	WAIT_IRQ
	lea	win2_end(%rip), %rax
win2_end:
	cli
	mov	%rax, win_hi(%rip)
	lea	m_if0(%rip), %rsi
	call	report
	jmp	l1_done

/* RSI = name, EBX = count before the window: "before= after= in_window=". */
report:	call	case_head
	mov	%ebx, %eax
	lea	m_k_before(%rip), %rsi
	call	put_kv
	xor	%edx, %edx
	lea	m_before(%rip), %rsi
	call	expect
	mov	count(%rip), %eax
	lea	m_k_after(%rip), %rsi
	call	put_kv
	mov	$1, %edx
	lea	m_after(%rip), %rsi
	call	expect
	xor	%eax, %eax
	mov	irq_rip(%rip), %rcx
	cmp	win_lo(%rip), %rcx
	jb	1f
	cmp	win_hi(%rip), %rcx
	ja	1f
	mov	$1, %eax
1:	lea	m_k_win(%rip), %rsi
	call	put_kv
	mov	$1, %edx
	lea	m_win(%rip), %rsi
	call	expect
	jmp	put_nl

/* A fixed stretch of instructions. */
spin:	mov	$20000, %ecx
1:	pause
	dec	%ecx
	jnz	1b
	ret

/* Waits (bounded) for the interrupt. */
wait_irq:
	mov	$1000000, %ecx
1:	cmpl	$0, count(%rip)
	jne	2f
	pause
	dec	%ecx
	jnz	1b
2:	ret

case_head:
	push	%rsi
	lea	m_case(%rip), %rsi
	call	put_str
	pop	%rsi
	call	put_str
	lea	m_colon(%rip), %rsi
	jmp	put_str

/* IDT with VEC only (other vectors not present: an unexpected event ends in
 * a shutdown, which fails the run). */
idt_init:
	lea	idt+VEC*16(%rip), %rdi
	lea	irq_handler(%rip), %rsi
	call	idt_gate
	lidt	idtr(%rip)
	ret

irq_handler:
	incl	count(%rip)
	push	%rax
	mov	8(%rsp), %rax
	mov	%rax, irq_rip(%rip)
	pop	%rax
	iretq

	.data
m_case:		.asciz	"case "
m_colon:	.asciz	":"
m_base:		.asciz	"gif_baseline"
m_gif0:		.asciz	"gif0_holds_intr"
m_if0:		.asciz	"gif1_if0_holds"
m_k_count:	.asciz	" count="
m_k_before:	.asciz	" before="
m_k_after:	.asciz	" after="
m_k_win:	.asciz	" in_window="
m_count:	.asciz	"count"
m_before:	.asciz	"held"
m_after:	.asciz	"delivered"
m_win:		.asciz	"where"
	.balign	8
count:		.quad	0
irq_rip:	.quad	0
win_lo:		.quad	0
win_hi:		.quad	0
idtr:		.word	(VEC+1)*16-1
		.quad	idt
	.balign	4096
idt:		.fill	(VEC+1)*16, 1, 0
	.include "l1lib.S"
