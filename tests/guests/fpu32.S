/* 32-bit protected-mode guest for the FPU isolation test (nsvm-apitest
 * fpu_isolation): enables SSE and, when CPUID says AVX, XCR0 = x87|SSE|AVX;
 * loads XMM/YMM0-7 from [EBX], then forever: OUT 0x10 (userspace and other
 * vCPUs run), store the registers to [EBX+0x400], OUT 0x11 (userspace checks). */
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
	push	%ebx			/* CPUID overwrites EBX */
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
	mov	%eax, %esi
	test	$4, %esi
	jz	sse_load
	vmovdqu	0x00(%ebx), %ymm0
	vmovdqu	0x20(%ebx), %ymm1
	vmovdqu	0x40(%ebx), %ymm2
	vmovdqu	0x60(%ebx), %ymm3
	vmovdqu	0x80(%ebx), %ymm4
	vmovdqu	0xa0(%ebx), %ymm5
	vmovdqu	0xc0(%ebx), %ymm6
	vmovdqu	0xe0(%ebx), %ymm7
	jmp	loop
sse_load:
	movdqu	0x00(%ebx), %xmm0
	movdqu	0x20(%ebx), %xmm1
	movdqu	0x40(%ebx), %xmm2
	movdqu	0x60(%ebx), %xmm3
	movdqu	0x80(%ebx), %xmm4
	movdqu	0xa0(%ebx), %xmm5
	movdqu	0xc0(%ebx), %xmm6
	movdqu	0xe0(%ebx), %xmm7
loop:
	out	%al, $0x10
	test	$4, %esi
	jz	sse_store
	vmovdqu	%ymm0, 0x400(%ebx)
	vmovdqu	%ymm1, 0x420(%ebx)
	vmovdqu	%ymm2, 0x440(%ebx)
	vmovdqu	%ymm3, 0x460(%ebx)
	vmovdqu	%ymm4, 0x480(%ebx)
	vmovdqu	%ymm5, 0x4a0(%ebx)
	vmovdqu	%ymm6, 0x4c0(%ebx)
	vmovdqu	%ymm7, 0x4e0(%ebx)
	jmp	2f
sse_store:
	movdqu	%xmm0, 0x400(%ebx)
	movdqu	%xmm1, 0x420(%ebx)
	movdqu	%xmm2, 0x440(%ebx)
	movdqu	%xmm3, 0x460(%ebx)
	movdqu	%xmm4, 0x480(%ebx)
	movdqu	%xmm5, 0x4a0(%ebx)
	movdqu	%xmm6, 0x4c0(%ebx)
	movdqu	%xmm7, 0x4e0(%ebx)
2:	mov	%esi, %eax
	out	%al, $0x11
	jmp	loop
