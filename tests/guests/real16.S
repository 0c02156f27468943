/* Real-mode guest (flat binary at 0x1000, 16-bit): COM1 output, port I/O of
 * every size, CPUID, then exit status 42 through the debug-exit port. */
	.code16
	.globl _start
_start:
	mov	$msg, %si
	call	puts
	/* OUT of each size to an unhandled port, IN of each size from it. */
	mov	$0x1234, %ax
	mov	$0x510, %dx
	outb	%al, %dx
	outw	%ax, %dx
	mov	$0x89abcdef, %eax
	outl	%eax, %dx
	inb	%dx, %al
	inw	%dx, %ax
	inl	%dx, %eax
	/* LSR of COM1 says "transmitter empty". */
	mov	$0x3fd, %dx
	inb	%dx, %al
	call	puthex8
	/* CPUID 0: vendor string. */
	xor	%eax, %eax
	cpuid
	mov	%ebx, vendor
	mov	%edx, vendor+4
	mov	%ecx, vendor+8
	mov	$vmsg, %si
	call	puts
	mov	$vendor, %si
	call	puts
	mov	$nl, %si
	call	puts
	mov	$0x501, %dx
	mov	$42, %al
	outb	%al, %dx
	hlt

puts:	lodsb
	test	%al, %al
	jz	1f
	mov	$0x3f8, %dx
	outb	%al, %dx
	jmp	puts
1:	ret

/* Print AL as two hex digits and a newline. */
puthex8:
	mov	%al, %bl
	shr	$4, %al
	call	hexdig
	mov	%bl, %al
	and	$0xf, %al
	call	hexdig
	mov	$'\n', %al
	mov	$0x3f8, %dx
	outb	%al, %dx
	ret
hexdig:	add	$'0', %al
	cmp	$'9', %al
	jbe	1f
	add	$7, %al
1:	mov	$0x3f8, %dx
	outb	%al, %dx
	ret

msg:	.asciz	"real mode: hello from the guest\nLSR="
vmsg:	.asciz	"vendor: "
nl:	.asciz	"\n"
vendor:	.fill	13, 1, 0
