/* Real-mode guest: HLT woken by injected interrupts (run with
 * --irq-on-hlt 0x20:3), then an interrupt raised while IF=0 that must wait for
 * the interrupt window (after STI and its one-instruction shadow), and the
 * order of two queued interrupts. Handlers print their letter. */
	.code16
	.globl _start
_start:
	movw	$h20, 0x20*4
	movw	$0, 0x20*4+2
	movw	$h21, 0x21*4
	movw	$0, 0x21*4+2
	movw	$h22, 0x22*4
	movw	$0, 0x22*4+2
1:	sti
	hlt
	cmpw	$3, count
	jb	1b
	cli
	mov	$nl, %si
	call	puts
	/* Raise 0x21 then 0x22 with IF=0: nothing may arrive before STI+1. */
	mov	$0x511, %dx
	mov	$0x21, %al
	outb	%al, %dx
	mov	$0x22, %al
	outb	%al, %dx
	mov	$'-', %al
	mov	$0x3f8, %dx
	outb	%al, %dx
	mov	$'s', %al
	sti
	outb	%al, %dx		/* in the STI shadow: before any interrupt */
	mov	$'.', %al
	outb	%al, %dx
	nop
	nop
	cli
	mov	$nl, %si
	call	puts
	mov	$0x501, %dx
	mov	count, %ax
	outb	%al, %dx
	hlt

h20:	incw	count
	push	%ax
	push	%dx
	mov	$'I', %al
	mov	$0x3f8, %dx
	outb	%al, %dx
	pop	%dx
	pop	%ax
	iret
h21:	incw	count
	push	%ax
	push	%dx
	mov	$'A', %al
	mov	$0x3f8, %dx
	outb	%al, %dx
	pop	%dx
	pop	%ax
	iret
h22:	incw	count
	push	%ax
	push	%dx
	mov	$'B', %al
	mov	$0x3f8, %dx
	outb	%al, %dx
	pop	%dx
	pop	%ax
	iret

puts:	lodsb
	test	%al, %al
	jz	1f
	mov	$0x3f8, %dx
	outb	%al, %dx
	jmp	puts
1:	ret
nl:	.asciz	"\n"
count:	.word	0
