/* L1 with nested paging (APM 15.25): L1 builds NPT12 (long-mode format) in
 * its memory: 2 MiB identity pages for 0-8 MiB except 2-4 MiB, mapped with
 * 4 KiB pages through one page table (PT) so that single pages can be made
 * absent, read-only, NX, reserved or remapped. L2 runs on L1's own page
 * tables and code (identity through NPT12) and reports values by VMMCALL
 * (RAX; the faulting instructions address memory through RAX, which
 * VMRUN restores from the VMCB, unlike the other GPRs). Each case prints the #VMEXIT L1 saw: NPF error codes (EXITINFO1:
 * P=1 RW=2 US=4 RSVD=8 ID=10h, bit 32 final translation) and the L2
 * physical address (EXITINFO2). Needs --mem 8M. */
	.code64
	.globl _start
	.set	PTE, 7				/* P | RW | US */
	.set	NX, 63
_start:
	call	l1_init
	mov	$0xc0000080, %ecx		/* EFER.NXE, so NPT12's NX bit counts */
	rdmsr
	or	$0x800, %eax
	wrmsr
	lea	npt_pml4(%rip), %rdi
	lea	npt_pt(%rip), %rsi
	call	npt12_identity
	lea	nptb_pml4(%rip), %rdi
	lea	nptb_pt(%rip), %rsi
	call	npt12_identity
	lea	vmcb(%rip), %rdi
	lea	l2_read(%rip), %rsi
	lea	l2stack(%rip), %rdx
	call	vmcb_init
	movq	$1, C_NESTED_CTL(%rdi)		/* NP_ENABLE */
	lea	npt_pml4(%rip), %rax
	mov	%rax, C_NCR3(%rdi)
	/* Test data in L1 memory. */
	movq	$0x5555, 0x201010
	movq	$0x4444, 0x204000
	movq	$0xaaaa, 0x205000
	movq	$0xbbbb, 0x206000
	movb	$0xc3, 0x203000			/* ret */

	/* 1. A plain RW page: L2's store lands in L1 memory. */
	mov	$0x200008, %r12
	lea	l2_write(%rip), %rsi
	call	run_l2
	lea	m_rw(%rip), %rsi
	call	report
	mov	$EXIT_VMMCALL, %edx
	call	expect_code
	mov	0x200008, %rax
	lea	m_l1(%rip), %rsi
	call	put_kv
	mov	$0x1234, %edx
	lea	m_l1v(%rip), %rsi
	call	expect
	call	put_nl

	/* 2. Not present in NPT12: NPF US|final, then L1 maps it and L2 resumes. */
	movq	$0, npt_pt+8*1(%rip)
	mov	$0x201010, %r12
	lea	l2_read(%rip), %rsi
	call	run_l2
	lea	m_np(%rip), %rsi
	call	report_npf
	mov	$0x100000004, %rdx
	mov	$0x201010, %r8
	call	expect_npf
	movq	$0x201000 | PTE, npt_pt+8*1(%rip)
	call	resume
	call	report_resumed
	call	put_nl

	/* 3. Read-only: a write faults with P|RW|US|final. */
	movq	$0x202000 | 5, npt_pt+8*2(%rip)
	mov	$0x202000, %r12
	lea	l2_write(%rip), %rsi
	call	run_l2
	lea	m_wp(%rip), %rsi
	call	report_npf
	mov	$0x100000007, %rdx
	mov	$0x202000, %r8
	call	expect_npf
	movq	$0x202000 | PTE, npt_pt+8*2(%rip)
	call	resume_flush
	call	report_resumed
	call	put_nl

	/* 4. NX (L1's EFER.NXE set): a fetch faults with P|US|ID|final. */
	mov	$0x203000 | PTE, %rax
	bts	$NX, %rax
	mov	%rax, npt_pt+8*3(%rip)
	mov	$0x203000, %r12
	lea	l2_call(%rip), %rsi
	call	run_l2
	lea	m_nx(%rip), %rsi
	call	report_npf
	mov	$0x100000015, %rdx
	mov	$0x203000, %r8
	call	expect_npf
	movq	$0x203000 | PTE, npt_pt+8*3(%rip)
	call	resume_flush
	call	report_resumed
	call	put_nl

	/* 5. A reserved address bit (51): P|RSVD|US|final. */
	mov	$0x204000 | PTE, %rax
	bts	$51, %rax
	mov	%rax, npt_pt+8*4(%rip)
	mov	$0x204000, %r12
	lea	l2_read(%rip), %rsi
	call	run_l2
	lea	m_rsvd(%rip), %rsi
	call	report_npf
	mov	$0x10000000d, %rdx
	mov	$0x204000, %r8
	call	expect_npf
	movq	$0x204000 | PTE, npt_pt+8*4(%rip)
	call	resume_flush
	call	report_resumed
	call	put_nl

	/* 6. L1 remaps an L2 page and asks for a flush (TLB_CONTROL=1):
	 * L2 sees the new page. */
	mov	$0x205000, %r12
	lea	l2_read(%rip), %rsi
	call	run_l2
	mov	S_RAX(%rdi), %r13
	movq	$0x206000 | PTE, npt_pt+8*5(%rip)
	movb	$1, C_TLB_CTL(%rdi)
	lea	l2_read(%rip), %rsi
	call	run_l2
	movb	$0, C_TLB_CTL(%rdi)
	mov	S_RAX(%rdi), %r14
	lea	m_case(%rip), %rsi
	call	put_str
	lea	m_remap(%rip), %rsi
	call	put_str
	mov	%r13, %rax
	lea	m_before(%rip), %rsi
	call	put_kv
	mov	$0xaaaa, %edx
	call	expect
	mov	%r14, %rax
	lea	m_after(%rip), %rsi
	call	put_kv
	mov	$0xbbbb, %edx
	call	expect
	call	put_nl

	/* 7. Two L2s with their own NPT12 (L2 page 205000h -> L1 206000h in
	 * the first, 205000h in the second) and ASIDs, alternating. */
	lea	vmcb2(%rip), %rdi
	lea	l2_read(%rip), %rsi
	lea	l2stack2(%rip), %rdx
	call	vmcb_init
	movq	$1, C_NESTED_CTL(%rdi)
	lea	nptb_pml4(%rip), %rax
	mov	%rax, C_NCR3(%rdi)
	movl	$2, C_ASID(%rdi)
	lea	m_case(%rip), %rsi
	call	put_str
	lea	m_two(%rip), %rsi
	call	put_str
	mov	$3, %r15
1:	lea	vmcb(%rip), %rdi
	lea	l2_read(%rip), %rsi
	call	run_l2
	mov	S_RAX(%rdi), %rax
	lea	m_a(%rip), %rsi
	call	put_kv
	mov	$0xbbbb, %edx
	call	expect
	lea	vmcb2(%rip), %rdi
	lea	l2_read(%rip), %rsi
	call	run_l2
	mov	S_RAX(%rdi), %rax
	lea	m_b(%rip), %rsi
	call	put_kv
	mov	$0xaaaa, %edx
	call	expect
	dec	%r15
	jnz	1b
	call	put_nl

	/* 8. A fault while translating one of L2's own page tables: L2's
	 * PML4 (a copy of L1's top entry) at L2 physical 210000h, absent from
	 * NPT12: NPF with bit 33 (guest table walk) instead of bit 32. */
	lea	vmcb(%rip), %rdi
	mov	%cr3, %rax
	and	$~0xfff, %rax
	mov	(%rax), %rax
	mov	%rax, 0x210000
	movq	$0, npt_pt+8*0x10(%rip)
	mov	S_CR3(%rdi), %rbp
	movq	$0x210000, S_CR3(%rdi)
	mov	$0x201010, %r12
	lea	l2_read(%rip), %rsi
	call	run_l2
	lea	m_table(%rip), %rsi
	call	report_npf
	mov	C_EXIT_INFO1(%rdi), %rax
	mov	$0x200000000, %rdx
	and	%rdx, %rax
	lea	m_stage(%rip), %rsi
	call	expect
	mov	C_EXIT_INFO2(%rdi), %rax
	lea	m_i2(%rip), %rsi
	call	put_kv
	mov	$0x210000, %edx
	call	expect
	movq	$0x210000 | PTE, npt_pt+8*0x10(%rip)
	call	resume
	call	report_resumed
	mov	%rbp, S_CR3(%rdi)
	call	put_nl

	/* 9. NPT12 maps an L2 page to an L1 address without RAM (the VMM's
	 * MMIO scratch at D0000000h): L0 emulates L2's store and load there
	 * (userspace sees L1 physical addresses) without L1 seeing an exit. */
	mov	$0xd0000000 | PTE, %eax
	mov	%rax, npt_pt+8*7(%rip)
	mov	$0x207008, %r12
	lea	l2_write(%rip), %rsi
	call	run_l2
	lea	m_mmio(%rip), %rsi
	call	report
	mov	$EXIT_VMMCALL, %edx
	call	expect_code
	mov	S_RAX(%rdi), %rax
	lea	m_val(%rip), %rsi
	call	put_kv
	mov	$0x1234, %edx
	call	expect
	call	put_nl

	/* 10. Accessed and dirty bits (APM 15.25.5): the nested walk sets A
	 * in the entries it uses, and D in the leaf on a write. */
	lea	vmcb(%rip), %rdi
	movq	$0x209000 | PTE, npt_pt+8*9(%rip)
	mov	$0x209000, %r12
	lea	l2_read(%rip), %rsi
	call	run_l2
	mov	npt_pt+8*9(%rip), %r13
	lea	l2_write(%rip), %rsi
	call	run_l2
	mov	npt_pt+8*9(%rip), %r14
	lea	m_case(%rip), %rsi
	call	put_str
	lea	m_ad(%rip), %rsi
	call	put_str
	mov	npt_pml4+0x2000+8(%rip), %rax	/* PD entry of 2-4 MiB */
	and	$0x60, %eax
	lea	m_pde(%rip), %rsi
	call	put_kv
	mov	$0x20, %edx
	call	expect
	mov	%r13, %rax
	and	$0x60, %eax
	lea	m_aread(%rip), %rsi
	call	put_kv
	mov	$0x20, %edx
	call	expect
	mov	%r14, %rax
	and	$0x60, %eax
	lea	m_awrite(%rip), %rsi
	call	put_kv
	mov	$0x60, %edx
	call	expect
	call	put_nl

	/* 11. L1 remaps an L2 page L2 has just used, then runs L2 with an
	 * ASID it never used before and no TLB_CONTROL: no TLB can hold a
	 * translation for that ASID (APM 15.16), so L2 must see the new page. */
	lea	vmcb(%rip), %rdi
	mov	$0x205000, %r12
	lea	l2_read(%rip), %rsi
	call	run_l2				/* NPT12: 205000h -> 206000h (case 6) */
	mov	S_RAX(%rdi), %r13
	movq	$0x205000 | PTE, npt_pt+8*5(%rip)
	movl	$3, C_ASID(%rdi)		/* ASIDs 1 and 2 ran above */
	lea	l2_read(%rip), %rsi
	call	run_l2
	mov	S_RAX(%rdi), %r14
	lea	m_case(%rip), %rsi
	call	put_str
	lea	m_newasid(%rip), %rsi
	call	put_str
	mov	%r13, %rax
	lea	m_before(%rip), %rsi
	call	put_kv
	mov	$0xbbbb, %edx
	lea	m_before(%rip), %rsi		/* names the value in a FAIL( ) */
	call	expect
	mov	%r14, %rax
	lea	m_after(%rip), %rsi
	call	put_kv
	mov	$0xaaaa, %edx
	lea	m_after(%rip), %rsi		/* names the value in a FAIL( ) */
	call	expect
	call	put_nl

	/* 12. The same with flush-by-ASID (CPUID 8000_000Ah EDX bit 6, offered
	 * by nsvm and kvm_amd): same ASID, TLB_CONTROL=3 (flush this guest's
	 * translations, APM 15.16.2); L2 must see the new page. */
	lea	m_case(%rip), %rsi
	call	put_str
	lea	m_fbasid(%rip), %rsi
	call	put_str
	mov	$0x8000000a, %eax
	cpuid
	mov	%rdx, %rax
	shr	$6, %rax
	and	$1, %eax
	lea	m_fbabit(%rip), %rsi
	call	put_kv
	mov	$1, %edx
	lea	m_fbabit(%rip), %rsi		/* names the value in a FAIL( ) */
	call	expect
	lea	vmcb(%rip), %rdi
	mov	$0x205000, %r12
	lea	l2_read(%rip), %rsi
	call	run_l2				/* 205000h -> 205000h (case 11), ASID 3 */
	mov	S_RAX(%rdi), %rax
	lea	m_before(%rip), %rsi
	call	put_kv
	mov	$0xaaaa, %edx
	lea	m_before(%rip), %rsi		/* names the value in a FAIL( ) */
	call	expect
	movq	$0x206000 | PTE, npt_pt+8*5(%rip)
	movb	$3, C_TLB_CTL(%rdi)
	lea	l2_read(%rip), %rsi
	call	run_l2
	movb	$0, C_TLB_CTL(%rdi)
	mov	S_RAX(%rdi), %rax
	lea	m_after(%rip), %rsi
	call	put_kv
	mov	$0xbbbb, %edx
	lea	m_after(%rip), %rsi		/* names the value in a FAIL( ) */
	call	expect
	call	put_nl

	/* 13. String I/O that L0 emulates for L2 (L1 does not intercept the
	 * port): OUTSB from a page NPT12 lacks is a nested page fault for L1,
	 * US|final at the byte's L2 address (64-bit rSI above 64 KiB; at the
	 * page's start, where kvm_amd's page address and the APM's byte
	 * address agree); L1 maps the page and L2 goes on to its VMMCALL
	 * (its rSI then L1's: VMRUN restores only RAX). */
	lea	vmcb(%rip), %rdi
	lea	npt_pml4(%rip), %rax
	mov	%rax, C_NCR3(%rdi)
	movq	$0, npt_pt+8*1(%rip)
	mov	$0x201000, %r12
	lea	l2_outs(%rip), %rsi
	movb	$1, C_TLB_CTL(%rdi)
	call	run_l2
	movb	$0, C_TLB_CTL(%rdi)
	lea	m_outs(%rip), %rsi
	call	report_npf
	mov	$0x100000004, %rdx
	mov	$0x201000, %r8
	call	expect_npf
	movq	$0x201000 | PTE, npt_pt+8*1(%rip)
	call	resume_flush
	mov	C_EXIT_CODE(%rdi), %rax
	lea	m_then(%rip), %rsi
	call	put_kv
	mov	$EXIT_VMMCALL, %edx
	call	expect
	call	put_nl

	/* 14. L1 takes write permission away from a page L2 has written and
	 * flushes this ASID (TLB_CONTROL=3): L2's next write faults with
	 * P|RW|US|final (APM 15.16.2, 15.25.6), then succeeds once L1 gives
	 * the permission back. (L0 keeps NPT02 across such a flush where
	 * NPT12 still gives the same leaf: this is the leaf it must not keep.) */
	lea	vmcb(%rip), %rdi
	mov	$0x20a000, %r12
	lea	l2_write(%rip), %rsi
	call	run_l2
	lea	m_wpflush(%rip), %rsi
	call	report
	mov	$EXIT_VMMCALL, %edx
	call	expect_code
	movq	$0x20a000 | 5, npt_pt+8*10(%rip)
	movb	$3, C_TLB_CTL(%rdi)
	lea	l2_write(%rip), %rsi
	call	run_l2
	movb	$0, C_TLB_CTL(%rdi)
	mov	C_EXIT_INFO1(%rdi), %rax
	lea	m_i1(%rip), %rsi
	call	put_kv
	mov	$0x100000007, %rdx
	mov	$0x20a000, %r8
	call	expect_npf
	movq	$0x20a000 | PTE, npt_pt+8*10(%rip)
	call	resume_flush
	call	report_resumed
	call	put_nl

	/* 15. L1 clears the accessed bit of an NPT12 leaf L2 has used and
	 * flushes this ASID: L2's next access walks NPT12 again and sets it
	 * (APM 15.25.5: nested walks set A). */
	mov	$0x20b000, %r12
	lea	l2_read(%rip), %rsi
	call	run_l2
	lea	m_aflush(%rip), %rsi
	call	put_str
	mov	npt_pt+8*11(%rip), %rax
	and	$0x20, %eax
	lea	m_abit(%rip), %rsi
	call	put_kv
	mov	$0x20, %edx
	lea	m_abit(%rip), %rsi
	call	expect
	movq	$0x20b000 | PTE, npt_pt+8*11(%rip)	/* A clear */
	movb	$3, C_TLB_CTL(%rdi)
	lea	l2_read(%rip), %rsi
	call	run_l2
	movb	$0, C_TLB_CTL(%rdi)
	mov	npt_pt+8*11(%rip), %rax
	and	$0x20, %eax
	lea	m_abit(%rip), %rsi
	call	put_kv
	mov	$0x20, %edx
	lea	m_abit(%rip), %rsi
	call	expect
	call	put_nl
	jmp	l1_done

/* RDI = vmcb, RSI = L2 entry, R12 = L2's address argument (RBX in L2). */
run_l2:	mov	%rsi, S_RIP(%rdi)
	lea	l2stack(%rip), %rax
	lea	vmcb2(%rip), %rcx
	cmp	%rcx, %rdi
	jne	1f
	lea	l2stack2(%rip), %rax
1:	mov	%rax, S_RSP(%rdi)
	mov	%r12, l2_arg(%rip)
resume:	push	%rdi
	call	l1_vmrun
	pop	%rdi
	ret
resume_flush:
	movb	$1, C_TLB_CTL(%rdi)
	call	resume
	movb	$0, C_TLB_CTL(%rdi)
	ret

/* "case NAME: code=.." (RSI = name) */
report:	push	%rsi
	lea	m_case(%rip), %rsi
	call	put_str
	pop	%rsi
	call	put_str
	mov	C_EXIT_CODE(%rdi), %rax
	lea	m_code(%rip), %rsi
	jmp	put_kv
/* ... plus " info1=.. info2=.." */
report_npf:
	call	report
	mov	$EXIT_NPF, %edx
	call	expect_code
	mov	C_EXIT_INFO1(%rdi), %rax
	lea	m_i1(%rip), %rsi
	jmp	put_kv
expect_code:
	mov	C_EXIT_CODE(%rdi), %rax
	lea	m_code(%rip), %rsi
	jmp	expect
/* RDX = expected EXITINFO1, R8 = expected EXITINFO2 */
expect_npf:
	mov	C_EXIT_INFO1(%rdi), %rax
	lea	m_i1(%rip), %rsi
	call	expect
	mov	C_EXIT_INFO2(%rdi), %rax
	lea	m_i2(%rip), %rsi
	call	put_kv
	mov	%r8, %rdx
	jmp	expect
/* After a resume: L2 must have finished with VMMCALL. */
report_resumed:
	mov	C_EXIT_CODE(%rdi), %rax
	lea	m_then(%rip), %rsi
	call	put_kv
	mov	$EXIT_VMMCALL, %edx
	call	expect
	mov	S_RAX(%rdi), %rax
	lea	m_val(%rip), %rsi
	jmp	put_kv

/* L2 routines: the address is in l2_arg; the result goes out by VMMCALL. */
l2_read:
	mov	l2_arg(%rip), %rax
	mov	(%rax), %rax
	vmmcall
	hlt
l2_write:
	mov	l2_arg(%rip), %rax
	movq	$0x1234, (%rax)
	mov	(%rax), %rax
	vmmcall
	hlt
l2_outs:
	mov	l2_arg(%rip), %rsi
	mov	$0x80, %edx
	outsb
	mov	%rsi, %rax
	vmmcall
	hlt
l2_call:
	mov	l2_arg(%rip), %rax
	call	*%rax
	mov	$0xca11, %eax
	vmmcall
	hlt

	.data
m_case:		.asciz	"case "
m_rw:		.asciz	"np_rw:"
m_np:		.asciz	"np_not_present:"
m_wp:		.asciz	"np_write_protect:"
m_nx:		.asciz	"np_nx:"
m_rsvd:		.asciz	"np_reserved_bit:"
m_remap:	.asciz	"np_remap_tlb_control_flush:"
m_two:		.asciz	"np_two_l2_alternating:"
m_table:	.asciz	"np_guest_table_walk:"
m_mmio:		.asciz	"np_l2_mmio_through_npt12:"
m_ad:		.asciz	"np_accessed_dirty_bits:"
m_newasid:	.asciz	"np_remap_new_asid:"
m_fbasid:	.asciz	"np_remap_flush_by_asid:"
m_wpflush:	.asciz	"np_write_protect_flush_by_asid:"
m_aflush:	.asciz	"case np_accessed_bit_after_flush:"
m_abit:		.asciz	" a="
m_fbabit:	.asciz	" flush_by_asid="
m_outs:		.asciz	"np_string_io_not_present:"
m_pde:		.asciz	" pde_ad="
m_aread:	.asciz	" pte_ad_after_read="
m_awrite:	.asciz	" pte_ad_after_write="
m_stage:	.asciz	"bit 33"
m_code:		.asciz	" code="
m_i1:		.asciz	" info1="
m_i2:		.asciz	" info2="
m_then:		.asciz	" then="
m_val:		.asciz	" value="
m_l1:		.asciz	" l1_sees="
m_l1v:		.asciz	"L1 memory"
m_before:	.asciz	" before="
m_after:	.asciz	" after="
m_a:		.asciz	" a="
m_b:		.asciz	" b="
	.balign	8
l2_arg:		.quad	0
	.balign	4096
vmcb:		.fill	4096, 1, 0
vmcb2:		.fill	4096, 1, 0
npt_pml4:	.fill	3 * 4096, 1, 0
npt_pt:		.fill	4096, 1, 0
nptb_pml4:	.fill	3 * 4096, 1, 0
nptb_pt:	.fill	4096, 1, 0
	.fill	4096, 1, 0
l2stack:
	.fill	4096, 1, 0
l2stack2:
	.include "l1lib.S"
