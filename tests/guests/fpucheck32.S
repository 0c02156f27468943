/* 32-bit protected-mode guest for nsvm-apitest fpu_migration and
 * fpu_once_per_run: enables SSE and, when CPUID says AVX, XCR0 =
 * x87|SSE|AVX; loads XMM/YMM0-7 from [EBX], then repeats: [EBX+0x3f8]
 * times CPUID (an exit handled in L0) each followed by a check that the
 * registers still hold [EBX] (stored to [EBX+0x400], compared) and an
 * increment of the low four dwords of each register and of [EBX]'s copy
 * (with [EBX+0x3e0], four dwords of 1: an older image of the registers
 * never matches), then OUT 0x10. A mismatch ends in OUT 0x12 forever
 * (AL = iteration). */
	.code32
	.globl _start
_start:
	mov	%cr4, %eax
	or	$0x40600, %eax			/* OSFXSR, OSXMMEXCPT, OSXSAVE */
	mov	%eax, %cr4
	mov	%cr0, %eax
	and	$~0xc, %eax			/* EM = TS = 0 */
	or	$0x2, %eax			/* MP */
	mov	%eax, %cr0
	push	%ebx
	mov	$1, %eax
	cpuid
	pop	%ebx
	mov	$3, %eax
	test	$0x10000000, %ecx		/* AVX */
	jz	1f
	mov	$7, %eax
1:	xor	%edx, %edx
	xor	%ecx, %ecx
	xsetbv
	mov	%eax, 0x3f0(%ebx)
	test	$4, %eax
	jz	sse_load
	vmovdqu	0x00(%ebx), %ymm0
	vmovdqu	0x20(%ebx), %ymm1
	vmovdqu	0x40(%ebx), %ymm2
	vmovdqu	0x60(%ebx), %ymm3
	vmovdqu	0x80(%ebx), %ymm4
	vmovdqu	0xa0(%ebx), %ymm5
	vmovdqu	0xc0(%ebx), %ymm6
	vmovdqu	0xe0(%ebx), %ymm7
	jmp	round
sse_load:
	movdqu	0x00(%ebx), %xmm0
	movdqu	0x20(%ebx), %xmm1
	movdqu	0x40(%ebx), %xmm2
	movdqu	0x60(%ebx), %xmm3
	movdqu	0x80(%ebx), %xmm4
	movdqu	0xa0(%ebx), %xmm5
	movdqu	0xc0(%ebx), %xmm6
	movdqu	0xe0(%ebx), %xmm7
round:
	movl	$0, 0x3f4(%ebx)
next:
	push	%ebx
	xor	%eax, %eax
	cpuid
	pop	%ebx
	testl	$4, 0x3f0(%ebx)
	jz	sse_store
	vmovdqu	%ymm0, 0x400(%ebx)
	vmovdqu	%ymm1, 0x420(%ebx)
	vmovdqu	%ymm2, 0x440(%ebx)
	vmovdqu	%ymm3, 0x460(%ebx)
	vmovdqu	%ymm4, 0x480(%ebx)
	vmovdqu	%ymm5, 0x4a0(%ebx)
	vmovdqu	%ymm6, 0x4c0(%ebx)
	vmovdqu	%ymm7, 0x4e0(%ebx)
	jmp	compare
sse_store:
	movdqu	%xmm0, 0x400(%ebx)
	movdqu	%xmm1, 0x420(%ebx)
	movdqu	%xmm2, 0x440(%ebx)
	movdqu	%xmm3, 0x460(%ebx)
	movdqu	%xmm4, 0x480(%ebx)
	movdqu	%xmm5, 0x4a0(%ebx)
	movdqu	%xmm6, 0x4c0(%ebx)
	movdqu	%xmm7, 0x4e0(%ebx)
compare:
	cld
	mov	%ebx, %esi
	lea	0x400(%ebx), %edi
	mov	$64, %ecx			/* 256 bytes */
	repe cmpsl
	jne	bad
	paddd	0x3e0(%ebx), %xmm0		/* legacy SSE: YMM upper halves kept */
	paddd	0x3e0(%ebx), %xmm1
	paddd	0x3e0(%ebx), %xmm2
	paddd	0x3e0(%ebx), %xmm3
	paddd	0x3e0(%ebx), %xmm4
	paddd	0x3e0(%ebx), %xmm5
	paddd	0x3e0(%ebx), %xmm6
	paddd	0x3e0(%ebx), %xmm7
	xor	%ecx, %ecx
3:	addl	$1, (%ebx,%ecx)
	addl	$1, 4(%ebx,%ecx)
	addl	$1, 8(%ebx,%ecx)
	addl	$1, 12(%ebx,%ecx)
	add	$32, %ecx
	cmp	$256, %ecx
	jb	3b
	incl	0x3f4(%ebx)
	mov	0x3f4(%ebx), %eax
	cmp	0x3f8(%ebx), %eax
	jb	next
	out	%al, $0x10
	jmp	round
bad:
	mov	0x3f4(%ebx), %eax
	out	%al, $0x12
	jmp	bad
