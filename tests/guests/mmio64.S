/* Long-mode guest: MMIO stores and loads of every width through several
 * encodings (MOV r/m,r; MOV r,r/m; MOV r/m,imm; MOVZX/MOVSX; moffs; SIB and
 * RIP-relative addressing; high-byte registers), at 0xd0000000 (no RAM there).
 * Run with --trace-mmio; the final registers hold the loaded values. */
	.code64
	.globl _start
	.set	MMIO, 0xd0000000
_start:
	mov	$MMIO, %rbx
	movb	$0x11, (%rbx)			/* C6 imm8 */
	movw	$0x2233, 2(%rbx)		/* 66 C7 imm16, disp8 */
	movl	$0x44556677, 4(%rbx)		/* C7 imm32 */
	movq	$-2, 8(%rbx)			/* REX.W C7, sign-extended imm32 */
	mov	$0x8899aabbccddeeff, %rcx
	mov	%rcx, 16(%rbx)			/* REX.W 89 */
	mov	%ecx, 24(%rbx)			/* 89 */
	mov	%cx, 28(%rbx)			/* 66 89 */
	mov	$0x5a, %ah
	mov	%ah, 30(%rbx)			/* 88 with AH */
	mov	$1, %rsi
	mov	%cl, 32(%rbx,%rsi,8)		/* SIB */
	movabs	%eax, 0xd0000040		/* A3 moffs64 */
	/* Loads. */
	mov	(%rbx), %r8b			/* REX 8A */
	mov	2(%rbx), %r9w			/* 66 REX 8B */
	mov	4(%rbx), %r10d			/* REX 8B */
	mov	8(%rbx), %r11			/* REX.W 8B */
	movzbl	16(%rbx), %r12d			/* 0F B6 */
	movswq	28(%rbx), %r13			/* REX.W 0F BF */
	movsbl	24(%rbx), %r14d			/* 0F BE */
	mov	$-1, %r15
	movzwq	2(%rbx), %r15			/* REX.W 0F B7 */
	mov	$-1, %rdx
	mov	30(%rbx), %dh			/* 8A into DH */
	mov	$-1, %rax
	movabs	0xd0000040, %eax		/* A1 moffs64, zero-extends */
	mov	$-1, %rdi
	mov	0x100(%rbx), %edi		/* nothing written there: 0xffffffff */
	mov	$0x501, %dx
	mov	$9, %al
	out	%al, %dx
	hlt
