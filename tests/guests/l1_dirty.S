/* L1 with nested paging for the dirty-log case (nsvm-apitest
 * dirty_log_nested): L1 builds an identity NPT12 for 0-8 MiB (2-4 MiB
 * through 4 KiB entries, the rest 2 MiB pages) and runs L2 on it again and
 * again. L2 walks the list of quadwords at 0x600000 that the host writes
 * (an address: INC of the quadword there, a write; address | 1: a read of
 * it; 0 ends) and leaves with VMMCALL; L1 then reports to the host with an
 * OUT to port 505h, where the host reads the dirty log of the slot, checks
 * it and writes the next list, and starts L2 again with the same vmcb12
 * (same nCR3 and ASID: nothing asks for a flush, so only the log read
 * itself may take write access away from what L2's NPT02 maps). Any other
 * exit is printed and ends the run (DEBUG_EXIT 1). Needs 8 MiB. */
	.code64
	.globl _start
	.set	SYNC_PORT, 0x505
	.set	OPS, 0x600000
_start:
	call	l1_init
	lea	npt_pml4(%rip), %rdi
	lea	npt_pt(%rip), %rsi
	call	npt12_identity
	lea	vmcb(%rip), %rbx
again:
	mov	%rbx, %rdi
	lea	l2_body(%rip), %rsi
	lea	l2stack(%rip), %rdx
	call	vmcb_init
	movq	$1, C_NESTED_CTL(%rbx)		/* NP_ENABLE */
	lea	npt_pml4(%rip), %rax
	mov	%rax, C_NCR3(%rbx)
	mov	%rbx, %rdi
	call	l1_vmrun
	cmp	$EXIT_VMMCALL, %rax
	jne	bad
	mov	$SYNC_PORT, %dx
	out	%al, %dx
	jmp	again
bad:
	lea	m_bad(%rip), %rsi
	call	put_kv
	mov	C_EXIT_INFO1(%rbx), %rax
	lea	m_i1(%rip), %rsi
	call	put_kv
	mov	C_EXIT_INFO2(%rbx), %rax
	lea	m_i2(%rip), %rsi
	call	put_kv
	call	put_nl
	incq	l1_failures(%rip)
	jmp	l1_done

l2_body:
	mov	$OPS, %rsi
1:	mov	(%rsi), %rax
	test	%rax, %rax
	jz	3f
	add	$8, %rsi
	test	$1, %al
	jnz	2f
	incq	(%rax)
	jmp	1b
2:	and	$-2, %rax
	mov	(%rax), %rcx
	jmp	1b
3:	vmmcall
	jmp	l2_body

	.data
m_bad:		.asciz	"l1_dirty: unexpected exit code="
m_i1:		.asciz	" info1="
m_i2:		.asciz	" info2="
	.balign	4096
vmcb:		.fill	4096, 1, 0
npt_pml4:	.fill	3 * 4096, 1, 0
npt_pt:		.fill	4096, 1, 0
	.fill	4096, 1, 0
l2stack:
	.include "l1lib.S"
