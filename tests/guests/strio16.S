/* Real-mode guest: string port I/O. REP OUTSB to COM1, REP OUTSW/INSW
 * through the tool's FIFO port (0x512), backwards with DF=1, a segment
 * override, a single OUTSB, and REP with CX=0. Registers at the end show
 * where SI/DI/CX were left. */
	.code16
	.globl _start
_start:
	cld
	mov	$0x3f8, %dx
	mov	$msg, %si
	mov	$msglen, %cx
	rep outsb				/* "string out\n" */
	/* Four words out and back in. */
	mov	$0x512, %dx
	mov	$words, %si
	mov	$4, %cx
	rep outsw
	mov	$back, %di
	mov	$4, %cx
	rep insw
	mov	$words, %si
	mov	$back, %di
	mov	$8, %cx
	repe cmpsb
	jne	bad
	mov	$okmsg, %si
	call	puts
	/* Backwards: DF=1, bytes out from the end, then in (also backwards). */
	mov	$0x512, %dx
	std
	mov	$abc+2, %si
	mov	$3, %cx
	rep outsb				/* FIFO: c b a */
	mov	$rev+2, %di
	mov	$3, %cx
	rep insb				/* rev[2]=c rev[1]=b rev[0]=a */
	cld
	mov	$rev, %si
	mov	$0x3f8, %dx
	mov	$3, %cx
	rep outsb				/* "abc" */
	/* Segment override: CS-relative OUTSB (CS = DS = 0 here, same bytes). */
	mov	$nl, %si
	cs outsb
	/* REP with CX = 0 does nothing. */
	xor	%cx, %cx
	mov	$msg, %si
	rep outsb
	mov	%si, %bx			/* unchanged */
	mov	$0x501, %dx
	mov	$11, %al
	outb	%al, %dx
	hlt
bad:	mov	$0x501, %dx
	mov	$1, %al
	outb	%al, %dx
	hlt
puts:	lodsb
	test	%al, %al
	jz	1f
	mov	$0x3f8, %dx
	outb	%al, %dx
	jmp	puts
1:	ret
msg:	.ascii	"string out\n"
	.set	msglen, . - msg
okmsg:	.asciz	"words round trip ok\n"
words:	.word	0x1111, 0x2222, 0x3333, 0x4444
back:	.word	0, 0, 0, 0
abc:	.ascii	"abc"
rev:	.ascii	"..."
nl:	.ascii	"\n"
