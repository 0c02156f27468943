/* Long-mode guest: writes one byte in each of 16 consecutive 2 MiB regions
 * (16..48 MiB) and reads them back; run with --mem 64M. With transparent huge
 * pages behind guest memory, nsvm maps each region with one 2 MiB NPT entry. */
	.code64
	.globl _start
_start:
	mov	$0x1000000, %rbx
	mov	$16, %ecx
1:	mov	%cl, 0x1234(%rbx)
	add	$0x200000, %rbx
	dec	%ecx
	jnz	1b
	mov	$0x1000000, %rbx
	mov	$16, %ecx
2:	cmp	%cl, 0x1234(%rbx)
	jne	bad
	add	$0x200000, %rbx
	dec	%ecx
	jnz	2b
	lea	msg(%rip), %rsi
3:	lodsb
	test	%al, %al
	jz	4f
	mov	$0x3f8, %dx
	out	%al, %dx
	jmp	3b
4:	mov	$0x501, %dx
	mov	$21, %al
	out	%al, %dx
	hlt
bad:	mov	$0x501, %dx
	mov	$1, %al
	out	%al, %dx
	hlt
	.data
msg:	.asciz	"16 regions of 2 MiB written and read back\n"
