/* Nested state save/restore (KVM_GET/SET_NESTED_STATE through `nsvm run
 * --snapshot/--restore`): L1 runs L2 with nested paging (identity NPT12,
 * 2 MiB pages over 0-8 MiB) and intercepts CPUID. L2 counts in R12 (a GPR:
 * part of the vCPU's registers, L2's while it runs), writes a word on a new
 * page at each step, exits to L1 with CPUID, and at step 4 asks the VMM for
 * a snapshot (OUT to port 502h, which L1 does not intercept: L0 takes it
 * while L2 runs). L1 prints each step; at the end L2 sums its words and
 * reports by VMMCALL. Without --snapshot the OUT is ignored: the output of
 * a run cut by a snapshot and continued by --restore must be the same as
 * that of an uninterrupted run. Needs --mem 8M. */
	.code64
	.globl _start
	.set	PTE, 7
	.set	STEPS, 8
_start:
	call	l1_init
	lea	npt(%rip), %rdi			/* identity NPT12, 2 MiB pages */
	xor	%esi, %esi
	call	npt12_identity
	lea	vmcb(%rip), %rdi
	lea	l2(%rip), %rsi
	lea	l2stack(%rip), %rdx
	call	vmcb_init
	orl	$0x00040000, C_INTERCEPT1(%rdi)	/* CPUID */
	movq	$1, C_NESTED_CTL(%rdi)
	lea	npt(%rip), %rax
	mov	%rax, C_NCR3(%rdi)
	movq	$0, l1_steps(%rip)
run:	lea	vmcb(%rip), %rdi
	call	l1_vmrun
	cmp	$EXIT_CPUID, %rax
	je	step
	cmp	$EXIT_VMMCALL, %rax
	je	end
	lea	m_bad(%rip), %rsi
	call	put_kv
	incq	l1_failures(%rip)
	call	put_nl
	jmp	l1_done
step:	incq	l1_steps(%rip)
	lea	m_step(%rip), %rsi
	call	put_str
	mov	%r12, %rax			/* L2's counter (shared GPR) */
	call	put_hex
	mov	l1_steps(%rip), %rax
	lea	m_l1(%rip), %rsi
	call	put_kv
	call	put_nl
	lea	vmcb(%rip), %rdi
	addq	$2, S_RIP(%rdi)
	jmp	run
end:	lea	m_case(%rip), %rsi
	call	put_str
	mov	S_RAX(%rdi), %rax
	lea	m_sum(%rip), %rsi
	call	put_kv
	mov	$0x1111 * (STEPS * (STEPS - 1) / 2), %edx
	call	expect
	mov	l1_steps(%rip), %rax
	lea	m_steps(%rip), %rsi
	call	put_kv
	mov	$STEPS, %edx
	call	expect
	call	put_nl
	jmp	l1_done

l2:	xor	%r12d, %r12d
1:	mov	%r12, %rax
	imul	$0x1111, %rax
	mov	%r12, %rbx
	shl	$12, %rbx
	mov	%rax, 0x300000(%rbx)		/* a new page each step */
	cmp	$4, %r12
	jne	2f
	mov	$0x502, %dx			/* snapshot here (L0 -> VMM) */
	out	%al, %dx
2:	cpuid					/* to L1 */
	inc	%r12
	cmp	$STEPS, %r12
	jb	1b
	xor	%eax, %eax
	xor	%r12d, %r12d
3:	mov	%r12, %rbx
	shl	$12, %rbx
	add	0x300000(%rbx), %rax
	inc	%r12
	cmp	$STEPS, %r12
	jb	3b
	vmmcall
	hlt

	.data
m_case:		.asciz	"case snapshot_resume_mid_l2:"
m_step:		.asciz	"L2 step "
m_l1:		.asciz	" L1 count="
m_sum:		.asciz	" sum="
m_steps:	.asciz	" steps="
m_bad:		.asciz	"unexpected exit "
	.balign	8
l1_steps:	.quad	0
	.balign	4096
vmcb:		.fill	4096, 1, 0
npt:		.fill	3 * 4096, 1, 0
	.fill	4096, 1, 0
l2stack:
	.include "l1lib.S"
