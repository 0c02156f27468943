/* Long-mode guest for `nsvm bench`. For each row it reads the TSC, performs
 * the operation RBX times, reads the TSC again and reports the 64-bit delta
 * with OUT of EAX then EDX to ports 0x520/0x521 (row number in the low byte
 * of port 0x522 first). Before the first TSC read of a row it writes the row
 * number to port 0x524, so that the tool can read the vCPU statistics around
 * the row (L0 exits per iteration). Rows: 0 empty loop (overhead), 1 CPUID,
 * 2 RDMSR EFER, 3 OUT to userspace, 4 first-touch nested page fault, 5 HLT
 * woken by an injected interrupt (vector 0x20). RBX (iterations) is set by
 * the tool.
 *
 * Nested rows (only when the guest CPUID offers SVM; the guest is then an L1
 * hypervisor with helpers from l1lib.S, and L2 runs L1's code on L1's page
 * tables with its own stack):
 *   6 L2 exit reflected to L1: L2 loops on CPUID, L1 intercepts CPUID,
 *     advances L2's RIP by 2 (no NRIPS under TCG) and VMRUNs again; timed
 *     by L2's TSC around its loop (L2's TSC = L1's: TSC_OFFSET 0).
 *   7 L2 exit handled in L0: the same L2 loop, L1 does not intercept CPUID
 *     (L0 emulates it for L2); timed by L2.
 *   8 nested NPT fill: L1 enables nested paging (identity NPT12, 2 MiB
 *     pages, 0-1 GiB) and L2 writes once to each of RBX pages that L1
 *     touched beforehand (so L1's own mapping exists) but L2 never did:
 *     each is a first fill of the shadow NPT (NPT02); timed by L2.
 *   9 nested VMRUN alone: L1 VMRUNs an L2 whose first instruction is
 *     VMMCALL (intercepted): one VMRUN and one #VMEXIT per iteration; timed
 *     by L1.
 * L2 ends rows 6-8 with VMMCALL and its TSC delta in RAX; a nested row that
 * ends with another exit code reports that code on port 0x525 and stops. */
	.code64
	.globl _start
	.include "benchidt.inc"
	.set	TOUCH, 0x4000000		/* 64 MiB: never touched before row 4 */
_start:
	gate	0x20, isr
	lidt	idtr(%rip)
	mov	%rbx, %r15			/* iterations */

	/* row 0: empty loop */
	mov	$0, %r14
	call	start
1:	dec	%rcx
	jnz	1b
	call	stop

	/* row 1: CPUID */
	mov	$1, %r14
	call	start
1:	mov	%rcx, %r13
	xor	%eax, %eax
	xor	%ecx, %ecx
	cpuid
	mov	%r13, %rcx
	dec	%rcx
	jnz	1b
	call	stop

	/* row 2: RDMSR EFER */
	mov	$2, %r14
	call	start
1:	mov	%rcx, %r13
	mov	$0xc0000080, %ecx
	rdmsr
	mov	%r13, %rcx
	dec	%rcx
	jnz	1b
	call	stop

	/* row 3: OUT to userspace */
	mov	$3, %r14
	call	start
1:	mov	$0x523, %dx
	out	%al, %dx
	dec	%rcx
	jnz	1b
	call	stop

	/* row 4: first touch of a page (nested page fault) */
	mov	$4, %r14
	mov	$TOUCH, %rsi
	call	start
1:	movb	$1, (%rsi)
	add	$4096, %rsi
	dec	%rcx
	jnz	1b
	call	stop

	/* row 5: HLT woken by an injected interrupt */
	mov	$5, %r14
	call	start
1:	sti
	hlt
	cli
	dec	%rcx
	jnz	1b
	call	stop

	/* Nested rows: does the guest CPUID offer SVM (80000001h ECX 2)? */
	mov	$0x80000001, %eax
	xor	%ecx, %ecx
	cpuid
	bt	$2, %ecx
	jnc	done
	call	l1_init
	/* Row 8's pages, touched by L1 first: TOUCH + (RBX + 16) pages. */
	mov	%r15, %rsi
	add	$16, %rsi
	shl	$12, %rsi
	add	$TOUCH, %rsi
	mov	%rsi, touch2(%rip)
	mov	%r15, %rcx
1:	movb	$1, (%rsi)
	add	$4096, %rsi
	dec	%rcx
	jnz	1b
	call	build_npt12
	lea	vmcb(%rip), %rdi
	lea	l2_cpuid(%rip), %rsi
	lea	l2_stack_top(%rip), %rdx
	call	vmcb_init
	lea	vmcb_np(%rip), %rdi
	lea	l2_touch(%rip), %rsi
	lea	l2_stack_top(%rip), %rdx
	call	vmcb_init
	movq	$1, C_NESTED_CTL(%rdi)		/* NP_ENABLE */
	lea	npt12(%rip), %rax
	mov	%rax, C_NCR3(%rdi)
	movl	$2, C_ASID(%rdi)

	/* row 6: CPUID in L2, intercepted by L1 */
	mov	$6, %r14
	lea	vmcb(%rip), %rax
	orl	$(1 << (EXIT_CPUID - 0x60)), C_INTERCEPT1(%rax)
	call	mark
	call	l1_loop
	call	nested_report

	/* row 7: CPUID in L2, not intercepted by L1: L0 handles it */
	mov	$7, %r14
	lea	vmcb(%rip), %rax
	andl	$~(1 << (EXIT_CPUID - 0x60)), C_INTERCEPT1(%rax)
	lea	l2_cpuid(%rip), %rdx
	mov	%rdx, S_RIP(%rax)
	lea	l2_stack_top(%rip), %rdx
	mov	%rdx, S_RSP(%rax)
	call	mark
	call	l1_loop
	call	nested_report

	/* row 8: L2 with nested paging writes to pages it never touched */
	mov	$8, %r14
	mov	touch2(%rip), %rsi
	lea	vmcb_np(%rip), %rax
	call	mark
	call	l1_loop
	call	nested_report

	/* row 9: VMRUN of an L2 that exits at once (VMMCALL), timed by L1 */
	mov	$9, %r14
	lea	vmcb(%rip), %rax
	lea	l2_vmmcall(%rip), %rdx
	mov	%rdx, S_RIP(%rax)
	call	start
	lea	vmcb(%rip), %rax
1:	vmrun
	dec	%rcx
	jnz	1b
	call	tsc1
	stgi
	mov	%rax, %rbp
	lea	vmcb(%rip), %rax
	cmpq	$EXIT_VMMCALL, C_EXIT_CODE(%rax)
	jne	nested_fail
	call	report

done:	mov	$0x501, %dx
	xor	%al, %al
	out	%al, %dx
	hlt

/* L1: VMRUN the VMCB at RAX until L2 exits with something other than
 * CPUID; after CPUID, L2 resumes at the next instruction (RIP + 2). Only
 * RAX (restored by #VMEXIT) and the flags are L1's: L2 keeps the rest. */
l1_loop:
1:	vmrun
	cmpq	$EXIT_CPUID, C_EXIT_CODE(%rax)
	jne	2f
	addq	$2, S_RIP(%rax)
	jmp	1b
2:	stgi
	ret

/* L2 has ended a row with VMMCALL (TSC delta in RAX): report it. */
nested_report:
	cmpq	$EXIT_VMMCALL, C_EXIT_CODE(%rax)
	jne	nested_fail
	mov	S_RAX(%rax), %rbp
	jmp	report
nested_fail:
	mov	C_EXIT_CODE(%rax), %rax
	mov	$0x525, %dx
	out	%eax, %dx
	jmp	done

/* L2 code (rows 6 and 7): the row 1 loop, timed by L2. */
l2_cpuid:
	call	tsc0
1:	mov	%rcx, %r13
	xor	%eax, %eax
	xor	%ecx, %ecx
	cpuid
	mov	%r13, %rcx
	dec	%rcx
	jnz	1b
	call	tsc1
	vmmcall
/* L2 code (row 8): the row 4 loop from RSI, timed by L2. */
l2_touch:
	call	tsc0
1:	movb	$1, (%rsi)
	add	$4096, %rsi
	dec	%rcx
	jnz	1b
	call	tsc1
	vmmcall
/* L2 code (row 9). */
l2_vmmcall:
	vmmcall

/* Identity NPT12 for 0-1 GiB with 2 MiB pages (PML4, PDPT, PD). */
build_npt12:
	lea	npt12(%rip), %rdi
	lea	0x1000+7(%rdi), %rax
	mov	%rax, (%rdi)
	lea	0x2000+7(%rdi), %rax
	mov	%rax, 0x1000(%rdi)
	xor	%ecx, %ecx
1:	mov	%rcx, %rax
	shl	$21, %rax
	or	$0x87, %rax
	mov	%rax, 0x2000(%rdi,%rcx,8)
	inc	%ecx
	cmp	$512, %ecx
	jne	1b
	ret

	.include "benchrow.inc"
isr:	iretq
	.data
	.balign	8
touch2:	.quad	0
	.balign	4096
vmcb:	.fill	4096, 1, 0
vmcb_np: .fill	4096, 1, 0
npt12:	.fill	3*4096, 1, 0
l2_stack: .fill	4096, 1, 0
l2_stack_top:
	.include "l1lib.S"
