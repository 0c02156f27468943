/* 32-bit protected-mode guest (flat binary, --mode protected): COM1 output,
 * CPUID leaf 1 family signature check, HLT. */
	.code32
	.globl _start
_start:
	mov	$msg, %esi
	call	puts
	mov	$1, %eax
	cpuid
	mov	%eax, %edi
	mov	$0x501, %dx
	mov	$3, %al
	out	%al, %dx
	hlt
puts:	lodsb
	test	%al, %al
	jz	1f
	mov	$0x3f8, %dx
	out	%al, %dx
	jmp	puts
1:	ret
msg:	.asciz	"protected mode: hello from the guest\n"
