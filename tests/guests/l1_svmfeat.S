/* SVM features offered to L1 beyond what the processor underneath has
 * (CPUID 8000_000Ah EDX; QEMU's TCG has none of them, nsvm emulates them):
 * - decode assists (bit 7, APM vol. 2 15.8): EXITINFO1 of MOV CRx/DRx
 *   (bit 63 and the GPR number), LMSW/SMSW (0), INTn (the vector), INVLPG
 *   (the linear address), and the Guest Instruction Bytes field (VMCB 0D0h:
 *   count, then up to 15 bytes) for #PF and #NPF of data accesses, count 0
 *   for every other exit;
 * - pause filter (bit 10, APM 15.14.4): with PAUSE intercepted and
 *   PAUSE_FILTER_COUNT = N, the (N+1)th PAUSE of L2 exits, the counter
 *   reloaded by every VMRUN;
 * - VMSAVE/VMLOAD virtualization (bit 15, APM 15.33.1): with 0B8h bit 1 and
 *   nested paging, L2's VMLOAD/VMSAVE act on the L2 physical address through
 *   NPT12 (a fault there is #VMEXIT(NPF)); without the bit on the L1
 *   physical address;
 * - virtual NMI (bit 25, APM 15.21.10): vmcb12's pending V_NMI is taken by
 *   L2 (V_NMI cleared, V_NMI_MASK set), a second one stays pending until
 *   the handler's IRET completes and is taken right after it, the IRET
 *   back to L2's code clears V_NMI_MASK; V_NMI_ENABLE without the NMI
 *   intercept is VMEXIT_INVALID.
 * kvm_amd under TCG offers none of these: a case of a feature not offered
 * prints "not offered" and every feature case carries [nsvm-only] (the
 * suite asserts nsvm's line and that kvm_amd printed the case). The case
 * vmload_unvirtualized is compared with kvm_amd as usual. */
	.code64
	.globl _start

	.include "l1macros.inc"

	.set	I1_INTN, 1 << 21
	.set	I1_PAUSE, 1 << 23
	.set	I1_INVLPG, 1 << 25
	.set	C_PAUSE_COUNT, 0x3e
	.set	C_VIRT_EXT, 0xb8
	.set	C_INSN_LEN, 0xd0
	.set	C_INSN_BYTES, 0xd1
	.set	STAR, 0xc0000081
	.set	DA, 7
	.set	PFILTER, 10
	.set	VLS, 15
	.set	VNMI, 25

	/* Skip to LABEL (printing "not offered") unless CPUID 8000_000Ah EDX
	 * has BIT; the instruction bytes field is pre-set to 0FFh so that an
	 * exit that does not write it shows. */
	.macro	NEED bit, label
	btl	$\bit, feat(%rip)
	jc	.Ln\@
	STR	%rsi, " not offered"
	call	put_str
	call	tag
	jmp	\label
.Ln\@:	movb	$0xff, C_INSN_LEN(%rbx)
	.endm
	/* " len=" the count of instruction bytes (bits 3:0 of 0D0h) */
	.macro	LEN val
	movzbl	C_INSN_LEN(%rbx), %eax
	and	$0xf, %eax
	KV	len, %rax
	EXPECT	\val, instruction byte count
	.endm

_start:
	call	l1_init
	mov	$0x8000000a, %eax
	cpuid
	mov	%edx, feat(%rip)
	/* L2 shares L1's IDT: vector 2 is L2's NMI handler. */
	lea	l1_idt+2*16(%rip), %rdi
	lea	l2_nmi(%rip), %rsi
	call	idt_gate
	call	l1_lidt

	/* 1. MOV to CR3 (WRITE_CR3 intercepted): EXITINFO1 = bit 63 | R9. */
	CASE	da_mov_to_cr3, l2_wcr3
	NEED	DA, 1f
	orl	$1 << 19, C_INTERCEPT_CR(%rbx)
	mov	%cr3, %r9
	RUN
	CODE	0x13
	KV	info1, C_EXIT_INFO1(%rbx)
	EXPECT	0x8000000000000009, exit_info_1
	LEN	0
	RIP	l2_wcr3, 0
	call	tag
1:
	/* 2. MOV from CR4 (READ_CR4 intercepted): exit 4, EXITINFO1 = bit 63
	 * | RAX. QEMU's TCG checks it against the CR0 read intercept and
	 * reports exit 0: L0 intercepts CR0 reads for L2 and decodes; L2's
	 * MOV from CR0 before it (not intercepted by L1) still reads CR0. */
	CASE	da_mov_from_cr4, l2_rcr4
	NEED	DA, 1f
	orl	$1 << 4, C_INTERCEPT_CR(%rbx)
	xor	%edx, %edx
	RUN
	mov	%rdx, %r12			/* L2's CR0 (printing uses RDX) */
	CODE	0x4
	KV	info1, C_EXIT_INFO1(%rbx)
	EXPECT	0x8000000000000000, exit_info_1
	RIP	l2_rcr4, 3
	mov	%cr0, %rdx
	cmp	%rdx, %r12
	sete	%al
	movzbl	%al, %eax
	KV	l2_cr0_ok, %rax
	EXPECT	1, L2 read CR0
	call	tag
1:
	/* 3. MOV from CR0 into R12, then SMSW (READ_CR0 intercepted): bit 63 |
	 * 12 for the MOV, 0 for SMSW (APM 15.8.1, MOV-from-CR0 special case). */
	CASE	da_mov_from_cr0_smsw, l2_rcr0
	NEED	DA, 1f
	orl	$1 << 0, C_INTERCEPT_CR(%rbx)
	RUN
	CODE	0x0
	KV	info1, C_EXIT_INFO1(%rbx)
	EXPECT	0x800000000000000c, exit_info_1
	addq	$4, S_RIP(%rbx)
	RUN
	CODE	0x0
	KV	smsw_info1, C_EXIT_INFO1(%rbx)
	EXPECT	0, smsw exit_info_1
	RIP	l2_rcr0, 4
	call	tag
1:
	/* 4. MOV to CR0 from RSI, then LMSW (WRITE_CR0 intercepted): bit 63 |
	 * 6, then 0 (MOV-to-CR0 special case). */
	CASE	da_mov_to_cr0_lmsw, l2_wcr0
	NEED	DA, 1f
	orl	$1 << 16, C_INTERCEPT_CR(%rbx)
	mov	%cr0, %rsi
	RUN
	CODE	0x10
	KV	info1, C_EXIT_INFO1(%rbx)
	EXPECT	0x8000000000000006, exit_info_1
	addq	$3, S_RIP(%rbx)
	RUN
	CODE	0x10
	KV	lmsw_info1, C_EXIT_INFO1(%rbx)
	EXPECT	0, lmsw exit_info_1
	RIP	l2_wcr0, 3
	call	tag
1:
	/* 5. MOV to DR7 from RSI (WRITE_DR7), then MOV from DR3 into R10
	 * (READ_DR3): EXITINFO1 = the GPR number, bit 63 clear. */
	CASE	da_mov_dr, l2_dr
	NEED	DA, 1f
	movl	$(1 << 23) | (1 << 3), C_INTERCEPT_DR(%rbx)
	mov	$0x400, %esi
	RUN
	CODE	0x37
	KV	info1, C_EXIT_INFO1(%rbx)
	EXPECT	6, exit_info_1
	addq	$3, S_RIP(%rbx)
	RUN
	CODE	0x23
	KV	dr3_info1, C_EXIT_INFO1(%rbx)
	EXPECT	10, dr3 exit_info_1
	call	tag
1:
	/* 6. INVLPG 0x123(%rsi,%rcx,2) with RSI=400000h, RCX=1000h: EXITINFO1
	 * = the linear address 402123h (APM 15.8.3). */
	CASE	da_invlpg, l2_invlpg
	NEED	DA, 1f
	orl	$I1_INVLPG, C_INTERCEPT1(%rbx)
	mov	$0x400000, %esi
	mov	$0x1000, %ecx
	RUN
	CODE	0x79
	KV	info1, C_EXIT_INFO1(%rbx)
	EXPECT	0x402123, exit_info_1
	RIP	l2_invlpg, 0
	call	tag
1:
	/* 7. INT 42h (INTn intercepted): EXITINFO1 = 42h (APM 15.8.2). */
	CASE	da_intn, l2_int
	NEED	DA, 1f
	orl	$I1_INTN, C_INTERCEPT1(%rbx)
	RUN
	CODE	0x75
	KV	info1, C_EXIT_INFO1(%rbx)
	EXPECT	0x42, exit_info_1
	RIP	l2_int, 0
	call	tag
1:
	/* 8. #PF of a data write (L2 on tables without 1-4 GiB): 15 bytes at
	 * CS:RIP, the first eight c7 00 01 00 00 00 0f 01 (movl $1,(%rax);
	 * vmmcall). */
	CASE	da_pf_data_bytes, l2_pf
	NEED	DA, 1f
	call	l2_tables
	mov	%rax, S_CR3(%rbx)
	movl	$1 << 14, C_INTERCEPT_EXC(%rbx)
	RUN
	CODE	EXIT_EXCP+14
	KV	info1, C_EXIT_INFO1(%rbx)
	EXPECT	2, exit_info_1
	LEN	15
	KV	bytes, C_INSN_BYTES(%rbx)
	EXPECT	0x010f0000000100c7, instruction bytes
	call	tag
1:
	/* 9. #PF of an instruction fetch (EFER.NXE: I/D set): no bytes
	 * ("instruction-fetch page faults provide no additional information"). */
	CASE	da_pf_fetch, l2_pf_fetch
	NEED	DA, 1f
	call	l2_tables
	mov	%rax, S_CR3(%rbx)
	orl	$0x800, S_EFER(%rbx)
	movl	$1 << 14, C_INTERCEPT_EXC(%rbx)
	mov	$0x40000000, %esi
	RUN
	CODE	EXIT_EXCP+14
	KV	info1, C_EXIT_INFO1(%rbx)
	EXPECT	0x10, exit_info_1
	LEN	0
	call	tag
1:
	/* 10. #NPF of a data write to L2 physical 900000h, beyond NPT12 (0-8
	 * MiB): EXITINFO1 = final translation | US | RW, the bytes of
	 * movl $2,(%rsi). */
	CASE	da_npf_data_bytes, l2_npf
	NEED	DA, 1f
	call	np_on
	mov	$0x900000, %esi
	RUN
	CODE	EXIT_NPF
	KV	info1, C_EXIT_INFO1(%rbx)
	EXPECT	0x100000006, exit_info_1
	KV	info2, C_EXIT_INFO2(%rbx)
	EXPECT	0x900000, exit_info_2
	LEN	15
	KV	bytes, C_INSN_BYTES(%rbx)
	EXPECT	0x010f0000000206c7, instruction bytes
	call	tag
1:
	/* 11. Pause filter: PAUSE intercepted, count 3: L2 counts its PAUSEs
	 * in RCX; the 4th exits. Resumed after it (RIP + 2): VMRUN reloads the
	 * counter, the 8th exits. Count 0: every PAUSE. */
	CASE	pause_filter, l2_pause
	NEED	PFILTER, 1f
	orl	$I1_PAUSE, C_INTERCEPT1(%rbx)
	movw	$3, C_PAUSE_COUNT(%rbx)
	xor	%ecx, %ecx
	RUN
	mov	%rcx, %r12			/* L2's count (printing uses RCX) */
	CODE	0x77
	KV	pauses, %r12
	EXPECT	4, pauses before the exit
	addq	$2, S_RIP(%rbx)
	mov	%r12, %rcx
	RUN
	mov	%rcx, %r12
	KV	after_vmrun, %r12
	EXPECT	8, pauses after the next VMRUN
	movw	$0, C_PAUSE_COUNT(%rbx)
	addq	$2, S_RIP(%rbx)
	mov	%r12, %rcx
	RUN
	mov	%rcx, %r12
	KV	count0, %r12
	EXPECT	9, pauses with count 0
	call	tag
1:
	/* 12. VMLOAD/VMSAVE without virtualization (0B8h clear), nested
	 * paging on, L2 physical 300000h remapped by NPT12 to `l2vmcb`: L2's
	 * VMLOAD and VMSAVE act on L1 physical 300000h (APM 15.5.2: a physical
	 * address). L1 sees STAR as L2 loaded it (#VMEXIT does not switch
	 * it); L2's VMSAVE of a changed STAR lands at L1's 300000h. Compared
	 * with kvm_amd. */
	CASE	vmload_unvirtualized, l2_vmload
	call	vls_prep
	call	np_on
	RUN
	CODE	EXIT_VMMCALL
	call	star
	EXPECT	0x11112222, STAR from L1 physical 300000h
	call	vls_vmsave
	KV	saved_l1pa, 0x300000+0x600
	EXPECT	0x55556666, VMSAVE into L1 physical 300000h
	call	vls_restore
	call	put_nl
	/* 13. The same with virtualization enabled: on L2 physical 300000h,
	 * i.e. `l2vmcb`. */
	CASE	vmload_virtualized, l2_vmload
	NEED	VLS, 1f
	call	vls_prep
	call	np_on
	movq	$2, C_VIRT_EXT(%rbx)
	RUN
	CODE	EXIT_VMMCALL
	call	star
	EXPECT	0x33334444, STAR from L2 physical 300000h
	call	vls_vmsave
	KV	saved_l2pa, l2vmcb+0x600(%rip)
	EXPECT	0x55556666, VMSAVE into L2 physical 300000h
	KV	l1pa, 0x300000+0x600
	EXPECT	0x11112222, L1 physical 300000h untouched
	call	vls_restore
	call	tag
1:
	/* 14. Virtualized VMLOAD of L2 physical A00000h, beyond NPT12:
	 * #VMEXIT(NPF), a read of the final address, not present. */
	CASE	vmload_virtualized_npf, l2_vmload_npf
	NEED	VLS, 1f
	call	np_on
	movq	$2, C_VIRT_EXT(%rbx)
	movq	$0xa00000, S_RAX(%rbx)
	RUN
	CODE	EXIT_NPF
	KV	info1, C_EXIT_INFO1(%rbx)
	EXPECT	0x100000004, exit_info_1
	KV	info2, C_EXIT_INFO2(%rbx)
	EXPECT	0xa00000, exit_info_2
	RIP	l2_vmload_npf, 0
	call	tag
1:
	/* 15. vNMI: NMI intercepted, V_NMI_ENABLE | V_NMI. L2 takes it at
	 * once (its handler counts in `nmis`, then VMMCALL): V_NMI clear,
	 * V_NMI_MASK set. L1 sets V_NMI again: masked, it is taken right after
	 * the handler's IRET (the handler runs again). The next IRET returns
	 * to L2's code, whose VMMCALL shows V_NMI_MASK clear. */
	CASE	vnmi, l2_vnmi
	NEED	VNMI, 1f
	orl	$2, C_INTERCEPT1(%rbx)
	movl	$(1 << 26) | (1 << 11), C_INT_CTL(%rbx)
	movq	$0, nmis(%rip)
	RUN
	CODE	EXIT_VMMCALL
	RIP	l2_nmi, 7
	call	vnmi_bits
	EXPECT	2, V_NMI_MASK set and V_NMI clear
	KV	nmis, nmis(%rip)
	EXPECT	1, one NMI
	mov	S_RSP(%rbx), %r13		/* the handler's stack depth */
	orl	$1 << 11, C_INT_CTL(%rbx)
	addq	$3, S_RIP(%rbx)
	RUN
	CODE	EXIT_VMMCALL
	RIP	l2_nmi, 7
	call	vnmi_bits
	EXPECT	2, second NMI taken after IRET
	KV	nmis, nmis(%rip)
	EXPECT	2, two NMIs
	/* Taken after the IRET, not inside the first handler: same depth. */
	cmp	S_RSP(%rbx), %r13
	sete	%al
	movzbl	%al, %eax
	KV	same_stack, %rax
	EXPECT	1, second NMI nested in the first
	addq	$3, S_RIP(%rbx)
	RUN
	CODE	EXIT_VMMCALL
	RIP	l2_vnmi, 0
	call	vnmi_bits
	EXPECT	0, V_NMI_MASK clear after IRET
	call	tag
1:
	/* 16. V_NMI_ENABLE without the NMI intercept: VMEXIT_INVALID (APM
	 * 15.21.10). */
	CASE	vnmi_needs_nmi_intercept, l2_vnmi
	NEED	VNMI, 1f
	movl	$(1 << 26), C_INT_CTL(%rbx)
	RUN
	CODE	0xffffffffffffffff
	call	tag
1:
	jmp	l1_done

/* " vnmi=" int_ctl bits 12:11 (V_NMI_MASK, V_NMI) in RAX */
vnmi_bits:
	mov	C_INT_CTL(%rbx), %eax
	shr	$11, %eax
	and	$3, %eax
	STR	%rsi, " vnmi="
	jmp	put_kv

/* RSI = L2 entry: vmcb12 from vmcb_init (RBX = vmcb12). */
setup:	lea	vmcb(%rip), %rdi
	lea	l2stack(%rip), %rdx
	call	vmcb_init
	mov	%rdi, %rbx
	ret

/* " [nsvm-only]" and the end of the line. */
tag:	STR	%rsi, " [nsvm-only]"
	call	put_str
	jmp	put_nl

/* Nested paging for L2: identity NPT12 for 0-8 MiB (2-4 MiB by 4 KiB
 * entries) with L2 physical 300000h on `l2vmcb`; ASID 1. */
np_on:	push	%rdi
	lea	npt12(%rip), %rdi
	lea	npt12_pt(%rip), %rsi
	call	npt12_identity
	lea	l2vmcb(%rip), %rax
	or	$7, %rax
	mov	%rax, npt12_pt+0x100*8(%rip)
	lea	npt12(%rip), %rax
	mov	%rax, C_NCR3(%rbx)
	movq	$1, C_NESTED_CTL(%rbx)
	pop	%rdi
	ret

/* Two VMCBs holding L1's own VMLOAD state (VMSAVE) but for STAR:
 * 11112222h at L1 physical 300000h, 33334444h in `l2vmcb`; L1's own state
 * kept in `l1own`. */
vls_prep:
	lea	l1own(%rip), %rax
	vmsave
	mov	$0x300000, %eax
	vmsave
	movq	$0x11112222, 0x300000+0x600
	lea	l2vmcb(%rip), %rax
	vmsave
	movq	$0x33334444, l2vmcb+0x600(%rip)
	movq	$0x300000, S_RAX(%rbx)
	ret

/* RAX = STAR */
star:	mov	$STAR, %ecx
	rdmsr
	shl	$32, %rdx
	or	%rdx, %rax
	STR	%rsi, " star="
	jmp	put_kv

/* L1 sets STAR to 55556666h and lets L2 VMSAVE it (L2 resumes after its
 * VMMCALL: VMSAVE, VMMCALL). */
vls_vmsave:
	mov	$STAR, %ecx
	mov	$0x55556666, %eax
	xor	%edx, %edx
	wrmsr
	addq	$3, S_RIP(%rbx)
	movq	$0x300000, S_RAX(%rbx)
	RUN
	ret

vls_restore:
	lea	l1own(%rip), %rax
	vmload
	ret

/* L2's page tables: copies of L1's PML4 and PDPT with PDPT entries 1-3
 * (1-4 GiB) not present; returns the PML4's address in RAX. */
l2_tables:
	mov	%cr3, %rsi
	and	$~0xfff, %rsi
	lea	l2_pml4(%rip), %rdi
	mov	$512, %ecx
	rep movsq
	mov	l2_pml4(%rip), %rsi
	mov	%rsi, %rdx
	and	$0xfff, %edx
	and	$~0xfff, %rsi
	lea	l2_pdpt(%rip), %rdi
	mov	$512, %ecx
	rep movsq
	lea	l2_pdpt(%rip), %rax
	or	%rdx, %rax
	mov	%rax, l2_pml4(%rip)
	movq	$0, l2_pdpt+8(%rip)
	movq	$0, l2_pdpt+16(%rip)
	movq	$0, l2_pdpt+24(%rip)
	lea	l2_pml4(%rip), %rax
	mov	%rbx, %rdi
	ret

/* L2 code. */
l2_wcr3:
	mov	%r9, %cr3			/* 41 0f 22 d9 */
	vmmcall
l2_rcr4:
	mov	%cr0, %rdx			/* 3 bytes */
	mov	%cr4, %rax
	vmmcall
l2_rcr0:
	mov	%cr0, %r12			/* 4 bytes */
	smsw	%eax
	vmmcall
l2_wcr0:
	mov	%rsi, %cr0			/* 3 bytes */
	lmsw	%si
	vmmcall
l2_dr:	mov	%rsi, %dr7			/* 3 bytes */
	mov	%dr3, %r10
	vmmcall
l2_invlpg:
	invlpg	0x123(%rsi,%rcx,2)
	vmmcall
l2_int:	int	$0x42
	vmmcall
l2_pf:	mov	$0x40000123, %eax		/* 5 bytes */
	movl	$1, (%rax)
	vmmcall
l2_pf_fetch:
	jmp	*%rsi
l2_npf:	movl	$2, (%rsi)
	vmmcall
l2_pause:
1:	inc	%ecx
	pause
	jmp	1b
l2_vmload:
	vmload
	vmmcall
	vmsave
	vmmcall
l2_vmload_npf:
	vmload
	vmmcall
l2_vnmi:
	vmmcall
	hlt
l2_nmi:	incq	nmis(%rip)			/* 7 bytes */
	vmmcall
	iretq

	.data
feat:	.quad	0
nmis:	.quad	0
	.balign	4096
vmcb:	.fill	4096, 1, 0
l1own:	.fill	4096, 1, 0
l2vmcb:	.fill	4096, 1, 0
npt12:	.fill	3*4096, 1, 0
npt12_pt: .fill	4096, 1, 0
l2_pml4: .fill	4096, 1, 0
l2_pdpt: .fill	4096, 1, 0
	.fill	4096, 1, 0
l2stack:
	.include "l1lib.S"
