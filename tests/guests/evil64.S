/* A malicious L1 (long mode): 100,000 VMRUNs of a vmcb12 filled with
 * pseudo-random values (xorshift64), with VMRUN, HLT and SHUTDOWN
 * intercepted (an L2 triple fault L1 does not intercept shuts L1 down, APM
 * 15.12, which would end the run early) and an L2
 * RIP on a page of HLTs; one time in two the fields APM 15.5.1 checks are
 * repaired so that L2 really runs (real or protected mode, random segments),
 * and of those, one in two runs L2 with nested paging on a random NPT12 tree.
 * The tree lives in a sandbox at 4-8 MiB (needs --mem 16M, so that the
 * loader's tables and stack stay above it): 16 table pages
 * (4 per level: entries of each level point at the next level's pages, PT
 * entries at HLT pages) whose entries get random flags (mostly present and
 * user with random write/cache/accessed/dirty bits; one time in 8 each:
 * all low flags random incl. PS, NX, reserved address bits), 32 of them changed
 * before each VMRUN, and nCR3 on any sandbox page (mostly the top level).
 * L2 can only ever execute HLTs. L1 counts the outcomes, VMEXIT_INVALID or
 * any other exit code, and prints them. */
	.code64
	.globl _start
	.set	N, 100000
	.set	SANDBOX, 0x400000
_start:
	mov	$0xc0000080, %ecx
	rdmsr
	or	$0x1800, %eax			/* SVME, NXE (NPT12 NX bits count) */
	wrmsr
	mov	$0xc0010117, %ecx
	lea	hsave(%rip), %rax
	xor	%edx, %edx
	wrmsr
	mov	$0x9e3779b97f4a7c15, %r15	/* xorshift state */
	/* Sandbox: pages 16-1023 HLT, the 16 table pages random. */
	mov	$SANDBOX + 0x10000, %edi
	mov	$0x400000 - 0x10000, %ecx
	mov	$0xf4, %al
	rep stosb
	mov	$16 * 512, %ecx
0:	push	%rcx
	dec	%ecx
	call	npt_entry
	pop	%rcx
	loop	0b
	xor	%r13, %r13			/* VMEXIT_INVALID count */
	xor	%r14, %r14			/* other exits */
	mov	$N, %r12
next:	lea	vmcb(%rip), %rdi
	mov	$512, %ecx
1:	mov	%r15, %rax
	shl	$13, %rax
	xor	%rax, %r15
	mov	%r15, %rax
	shr	$7, %rax
	xor	%rax, %r15
	mov	%r15, %rax
	shl	$17, %rax
	xor	%rax, %r15
	mov	%r15, (%rdi)
	add	$8, %rdi
	dec	%ecx
	jnz	1b
	lea	vmcb(%rip), %rbx
	orl	$1, 0x10(%rbx)			/* VMRUN intercepted */
	orl	$0x81000000, 0x0c(%rbx)		/* HLT and SHUTDOWN intercepted */
	testb	$1, %r15b
	jz	2f
	/* One time in two, repair what APM 15.5.1 checks so that L2 runs, in
	 * real or protected mode with random segments, flags and controls. */
	movq	$0x1000, 0x4d0(%rbx)		/* EFER = SVME */
	mov	%r15, %rax
	and	$1, %eax
	or	$0x10, %eax
	mov	%rax, 0x558(%rbx)		/* CR0: ET, maybe PE */
	movq	$0, 0x550(%rbx)			/* CR3 */
	movq	$0, 0x548(%rbx)			/* CR4 */
	movl	$0, 0x56c(%rbx)			/* DR6[63:32] */
	movq	$0x400, 0x560(%rbx)		/* DR7 */
	mov	%r15, %rax
	and	$7, %eax
	inc	%eax
	mov	%eax, 0x58(%rbx)		/* ASID 1..8 */
	movq	$0, 0xa8(%rbx)			/* EVENTINJ */
	orl	$2, 0x0c(%rbx)			/* NMI intercepted (vNMI's rule) */
	movq	$0, 0x90(%rbx)			/* nested_ctl */
	mov	$0x0007040600070406, %rax
	mov	%rax, 0x668(%rbx)		/* G_PAT valid */
	lea	hsave(%rip), %rax
	mov	%rax, 0x40(%rbx)		/* IOPM */
	mov	%rax, 0x48(%rbx)		/* MSRPM */
	movw	$0x9b, 0x412(%rbx)		/* CS: present code */
	movl	$0xffffffff, 0x414(%rbx)
	movq	$0, 0x418(%rbx)			/* CS base 0 */
	mov	%r15, %rax
	and	$0x200, %eax
	or	$2, %eax
	mov	%rax, 0x570(%rbx)		/* RFLAGS: maybe IF */
	movb	$0, 0x4cb(%rbx)			/* CPL 0 */
	lea	hsave(%rip), %rax
	mov	%rax, 0x488(%rbx)		/* IDTR base: zeroed gates */
	mov	%rax, 0x468(%rbx)		/* GDTR base */
	test	$2, %r15b
	jz	2f
	/* Nested paging on the random tree: 32 entries changed, nCR3 on a
	 * top-level page (or, one time in 8, any sandbox page), L2 RIP in the
	 * HLT pages. */
	mov	$32, %ecx
0:	push	%rcx
	call	rnd
	and	$16 * 512 - 1, %eax
	mov	%eax, %ecx
	call	npt_entry
	pop	%rcx
	loop	0b
	movq	$1, 0x90(%rbx)			/* NP_ENABLE */
	call	rnd
	mov	%rax, %rcx
	and	$3, %eax
	test	$0x70, %cl
	jnz	0f
	mov	%rcx, %rax
	shr	$8, %rax
	and	$1023, %eax
0:	shl	$12, %rax
	add	$SANDBOX, %rax
	mov	%rax, 0xb0(%rbx)		/* nCR3 */
	call	rnd
	and	$0x3ef000, %eax
	add	$SANDBOX + 0x10000, %eax
	mov	%rax, 0x578(%rbx)		/* L2 RIP on a HLT page */
	jmp	5f
2:	lea	hltpage(%rip), %rax
	mov	%rax, 0x578(%rbx)		/* L2 RIP on HLTs */
5:	mov	%rbx, %rax
	vmrun
	stgi
	mov	0x70(%rbx), %rax
	cmp	$-1, %rax
	jne	3f
	inc	%r13
	jmp	4f
3:	inc	%r14
4:	dec	%r12
	jnz	next
	lea	msg(%rip), %rsi
	call	puts
	mov	%r13, %rax
	call	dec64
	lea	msg2(%rip), %rsi
	call	puts
	mov	%r14, %rax
	call	dec64
	mov	$'\n', %al
	mov	$0x3f8, %dx
	out	%al, %dx
	mov	$0x501, %dx
	mov	$44, %al
	out	%al, %dx
	hlt

/* xorshift64 step: RAX = new state. */
rnd:	mov	%r15, %rax
	shl	$13, %rax
	xor	%rax, %r15
	mov	%r15, %rax
	shr	$7, %rax
	xor	%rax, %r15
	mov	%r15, %rax
	shl	$17, %rax
	xor	%rax, %r15
	mov	%r15, %rax
	ret

/* Writes a random entry at index ECX (0..8191) of the table pages: page
 * ECX/512 belongs to level 4 - page/4; the entry points at a random page of
 * the next level (PT entries: at a random HLT page), with random flags and,
 * one time in 8, random reserved address bits (51:40). */
npt_entry:
	mov	%ecx, %edx
	shr	$9, %edx			/* table page 0..15 */
	call	rnd
	mov	%rax, %r8
	mov	%rax, %r9
	shr	$12, %r9
	cmp	$12, %edx
	jae	1f
	and	$3, %r9d			/* one of the next level's 4 pages */
	mov	%edx, %r10d
	and	$~3, %r10d
	add	$4, %r10d
	add	%r10, %r9
	jmp	2f
1:	and	$1023, %r9d			/* PT entry: a HLT page */
	cmp	$16, %r9d
	jae	2f
	add	$16, %r9d
2:	shl	$12, %r9
	add	$SANDBOX, %r9
	/* Flags: mostly P|US with random RW/PWT/PCD/A/D; one time in 8 all
	 * eight low bits random (P, US, PS included); NX one time in 8. */
	mov	%r8, %rax
	and	$0x7b, %eax			/* RW, PWT, PCD, A, D, P */
	or	$5, %eax			/* P, US */
	test	$0x7000000, %r8d
	jnz	4f
	mov	%r8, %rax
	and	$0xff, %eax
4:	or	%rax, %r9
	test	$0x38000000, %r8d
	jnz	5f
	bts	$63, %r9
5:
	test	$0x700000, %r8d
	jnz	3f
	mov	%r8, %rax
	mov	$0x000fff0000000000, %r10
	and	%r10, %rax
	or	%rax, %r9
3:	mov	%r9, SANDBOX(,%rcx,8)
	ret

/* Print RAX in decimal. */
dec64:	lea	buf+20(%rip), %rdi
	movb	$0, (%rdi)
	mov	$10, %rcx
5:	xor	%edx, %edx
	div	%rcx
	add	$'0', %dl
	dec	%rdi
	mov	%dl, (%rdi)
	test	%rax, %rax
	jnz	5b
	mov	%rdi, %rsi
puts:	lodsb
	test	%al, %al
	jz	6f
	mov	$0x3f8, %dx
	out	%al, %dx
	jmp	puts
6:	ret
	.data
msg:	.asciz	"VMRUNs ending in VMEXIT_INVALID: "
msg2:	.asciz	", in L2 exits: "
buf:	.fill	24, 1, 0
	.balign	4096
vmcb:	.fill	4096, 1, 0
hsave:	.fill	4096, 1, 0
hltpage: .fill	4096, 1, 0xf4
