/* L1 with nested paging aliasing one L1 page at 1,024 L2 addresses: NPT12
 * maps 2-6 MiB with 4 KiB pages through two page tables whose every entry
 * points at the L1 page 0x205000 (holding 0x77 at offset 0). L2 reads the
 * first quadword of each of the 1,024 L2 pages and reports the sum by
 * VMMCALL (1,024 * 0x77 = 0x1dc00); L0 fills 1,024 NPT02 entries that all
 * map one host page. Run twice (the second run on the filled NPT02). The
 * l0 suite checks on nsvm that NPT02's entries hold no page reference
 * (debugfs page_refs_max). Needs --mem 8M. */
	.code64
	.globl _start
	.set	PTE, 7				/* P | RW | US */
_start:
	call	l1_init
	lea	npt_pml4(%rip), %rdi
	lea	npt_pt(%rip), %rsi
	call	npt12_identity
	/* PD[2] (4-6 MiB) through a second page table. */
	lea	npt_pt2+PTE(%rip), %rax
	mov	%rax, npt_pml4+0x2000+8*2(%rip)
	/* Every entry of both tables: the L1 page 0x205000. */
	lea	npt_pt(%rip), %rsi
	xor	%ecx, %ecx
1:	movq	$0x205000 | PTE, (%rsi,%rcx,8)
	inc	%ecx
	cmp	$1024, %ecx
	jb	1b
	movq	$0x77, 0x205000
	lea	vmcb(%rip), %rdi
	lea	l2_sum(%rip), %rsi
	lea	l2stack(%rip), %rdx
	call	vmcb_init
	movq	$1, C_NESTED_CTL(%rdi)		/* NP_ENABLE */
	lea	npt_pml4(%rip), %rax
	mov	%rax, C_NCR3(%rdi)
	lea	m_first(%rip), %r12
	call	one_run
	lea	m_second(%rip), %r12
	call	one_run
	jmp	l1_done

/* One run of L2 from l2_sum; prints "case NAME: code=.. value=.." (R12 = name). */
one_run:
	lea	l2_sum(%rip), %rax
	mov	%rax, S_RIP(%rdi)
	lea	l2stack(%rip), %rax
	mov	%rax, S_RSP(%rdi)
	push	%rdi
	call	l1_vmrun
	pop	%rdi
	lea	m_case(%rip), %rsi
	call	put_str
	mov	%r12, %rsi
	call	put_str
	mov	C_EXIT_CODE(%rdi), %rax
	lea	m_code(%rip), %rsi
	call	put_kv
	mov	$EXIT_VMMCALL, %edx
	call	expect
	mov	S_RAX(%rdi), %rax
	lea	m_val(%rip), %rsi
	call	put_kv
	mov	$0x1dc00, %edx
	call	expect
	jmp	put_nl

/* L2: the sum of the first quadword of each 4 KiB page from 2 to 6 MiB. */
l2_sum:
	xor	%eax, %eax
	mov	$0x200000, %rsi
1:	add	(%rsi), %rax
	add	$0x1000, %rsi
	cmp	$0x600000, %rsi
	jb	1b
	vmmcall
	hlt

	.data
m_case:		.asciz	"case "
m_first:	.asciz	"alias_1024_l2_pages_one_l1_page:"
m_second:	.asciz	"alias_again_on_filled_npt02:"
m_code:		.asciz	" code="
m_val:		.asciz	" value="
	.balign	4096
vmcb:		.fill	4096, 1, 0
npt_pml4:	.fill	3 * 4096, 1, 0
npt_pt:		.fill	4096, 1, 0
npt_pt2:	.fill	4096, 1, 0
	.fill	4096, 1, 0
l2stack:
	.include "l1lib.S"
