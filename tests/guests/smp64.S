/* Long-mode guest for several vCPUs (nsvm run --vcpus N): every vCPU starts
 * here with RDI = its index and RSI = N, adds itself to a shared counter and
 * a shared bitmask with locked instructions; the others then halt, and vCPU 0
 * waits for all of them and prints what it saw, then exits with status N. */
	.code64
	.globl _start
_start:
	lock incl	count(%rip)
	mov	%edi, %ecx
	mov	$1, %eax
	shl	%cl, %eax
	lock orl	%eax, mask(%rip)
	test	%edi, %edi
	jnz	park
1:	pause
	mov	count(%rip), %eax
	cmp	%esi, %eax
	jne	1b
	lea	msg(%rip), %rsi
	call	puts
	mov	mask(%rip), %eax
	add	$'0', %al			/* N <= 3 vCPUs: mask fits one digit 1..7 */
	mov	$0x3f8, %dx
	out	%al, %dx
	mov	$'\n', %al
	out	%al, %dx
	mov	count(%rip), %eax
	mov	$0x501, %dx
	out	%al, %dx
	hlt
park:	cli
	hlt
	jmp	park
puts:	lodsb
	test	%al, %al
	jz	2f
	mov	$0x3f8, %dx
	out	%al, %dx
	jmp	puts
2:	ret
	.data
msg:	.asciz	"all vCPUs checked in, mask "
	.balign	4
count:	.long	0
mask:	.long	0
