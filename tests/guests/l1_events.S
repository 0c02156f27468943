/* L1 hypervisor payload: event injection into L2 through vmcb12's EVENTINJ
 * (APM 15.20) of every type, and EXITINTINFO when the delivery of an
 * injected event is interrupted by an intercepted exception (APM 15.7.2).
 *
 * L2 shares L1's paging and segments but has its own IDT: 256 interrupt
 * gates to stubs that record the vector, whether an error code was pushed
 * (from the frame size: 64-bit delivery aligns RSP to 16 and pushes 5 or 6
 * quadwords), the error code and the return RIP, then VMMCALL. L1 prints
 * what L2 saw. L2's RIP is never executed (the event is delivered first). */
	.code64
	.globl _start

	.include "l1macros.inc"

	.set	I1_SHUTDOWN, 1 << 31
	.set	VALID, 0x80000000
	.set	T_INTR, 0 << 8
	.set	T_NMI, 2 << 8
	.set	T_EXC, 3 << 8
	.set	T_SOFT, 4 << 8
	.set	EV, 1 << 11
	.set	NRIPS, 3

	/* Inject EVENTINJ = INFO (error code ERR) into L2; print what L2's
	 * handler saw; expect vector VEC and error code EC (-1: none). */
	.macro	INJECT name, info, err, vec, ec
	CASE	\name, l2_entry
	movl	$\info, C_EVENTINJ(%rbx)
	movl	$\err, C_EVENTINJ+4(%rbx)
	lea	l2_entry(%rip), %rax
	mov	%rax, C_NEXT_RIP(%rbx)
	mov	$\info, %eax
	STR	%rsi, " eventinj="
	call	put_kv
	RUN
	CODE	EXIT_VMMCALL
	KV	vec, l2_seen_vec(%rip)
	EXPECT	\vec, vector
	mov	l2_seen_ec(%rip), %rax
	cmp	$-1, %rax
	jne	1f
	STR	%rsi, " ec=none"
	call	put_str
	jmp	2f
1:	STR	%rsi, " ec="
	call	put_kv
2:	EXPECT	\ec, error code
	mov	l2_seen_rip(%rip), %rax
	lea	l2_entry(%rip), %rdx
	sub	%rdx, %rax
	STR	%rsi, " ret_rip=+"
	call	put_kv
	EXPECT	0, return RIP
	call	put_nl
	.endm

	/* INJECT with NEXT_RIP = l2_entry + NEXT (NRIPS offered, else "not
	 * offered"): L2's handler must see return RIP l2_entry + RET. */
	.macro	INJECT_NRIP name, info, next, vec, ret
	CASE	\name, l2_entry
	btl	$NRIPS, feat(%rip)
	jc	.Ln\@
	STR	%rsi, " not offered"
	call	put_str
	jmp	.Le\@
.Ln\@:	movl	$\info, C_EVENTINJ(%rbx)
	lea	l2_entry+\next(%rip), %rax
	mov	%rax, C_NEXT_RIP(%rbx)
	RUN
	CODE	EXIT_VMMCALL
	KV	vec, l2_seen_vec(%rip)
	EXPECT	\vec, vector
	mov	l2_seen_rip(%rip), %rax
	lea	l2_entry(%rip), %rdx
	sub	%rdx, %rax
	STR	%rsi, " ret_rip=+"
	call	put_kv
	EXPECT	\ret, return RIP
.Le\@:	call	tag
	.endm

_start:
	call	l1_init
	call	build_idt

	/* Every type (APM 15.20, table 15-?: 0 INTR, 2 NMI, 3 exception,
	 * 4 software interrupt). */
	INJECT	inject_intr, VALID|T_INTR|0x20, 0, 0x20, -1
	INJECT	inject_nmi, VALID|T_NMI|2, 0, 2, -1
	INJECT	inject_gp_errcode, VALID|EV|T_EXC|13, 0x1234, 13, 0x1234
	INJECT	inject_pf_errcode, VALID|EV|T_EXC|14, 0x1b, 14, 0x1b
	INJECT	inject_ud, VALID|T_EXC|6, 0, 6, -1
	INJECT	inject_softint, VALID|T_SOFT|0x80, 0, 0x80, -1

	/* With NRIPS (CPUID 8000_000Ah EDX bit 3) the return address pushed
	 * for an injected software interrupt, and for INT3/INTO's #BP/#OF
	 * (type 3), is NEXT_RIP, not RIP (APM 15.7.1, 15.20); for any other
	 * exception it stays RIP. kvm_amd under TCG does not offer NRIPS
	 * (nor does it emulate it): [nsvm-only] cases. */
	mov	$0x8000000a, %eax
	cpuid
	mov	%edx, feat(%rip)
	INJECT_NRIP	nrip_softint, VALID|T_SOFT|0x80, 2, 0x80, 2
	INJECT_NRIP	nrip_bp, VALID|T_EXC|3, 1, 3, 1
	INJECT_NRIP	nrip_of, VALID|T_EXC|4, 1, 4, 1
	INJECT_NRIP	nrip_ud_ignored, VALID|T_EXC|6, 2, 6, 0
	/* Its delivery interrupted (short IDT, #GP intercepted): EXITINTINFO
	 * holds it and L2's RIP is still the injection's RIP, not NEXT_RIP. */
	CASE	nrip_softint_interrupted, l2_entry
	btl	$NRIPS, feat(%rip)
	jc	1f
	STR	%rsi, " not offered"
	call	put_str
	jmp	2f
1:	movw	$0x2ff, S_IDTR+4(%rbx)
	movl	$1 << 13, C_INTERCEPT_EXC(%rbx)
	movl	$VALID|T_SOFT|0x80, C_EVENTINJ(%rbx)
	lea	l2_entry+2(%rip), %rax
	mov	%rax, C_NEXT_RIP(%rbx)
	RUN
	CODE	EXIT_EXCP+13
	KV	intinfo, C_EXIT_INT_INFO(%rbx)
	EXPECT	VALID|T_SOFT|0x80, exit_int_info
	RIP	l2_entry, 0
2:	call	tag

	/* Interrupted delivery: external interrupt 30h with L2's IDT limit
	 * ending at vector 2Fh: #GP with the IDT selector error code
	 * (30h*8 + IDT bit 2; the EXT bit 0 is not checked, see below),
	 * intercepted by L1: exit 4Dh with EXITINTINFO = the event. */
	CASE	exitintinfo_intr, l2_entry
	movw	$0x2ff, S_IDTR+4(%rbx)
	movl	$1 << 13, C_INTERCEPT_EXC(%rbx)
	movl	$VALID|T_INTR|0x30, C_EVENTINJ(%rbx)
	RUN
	CODE	EXIT_EXCP+13
	KV	intinfo, C_EXIT_INT_INFO(%rbx)
	EXPECT	VALID|T_INTR|0x30, exit_int_info
	call	info1_idt
	EXPECT	0x182, exit_info_1 (IDT bit and index)
	RIP	l2_entry, 0
	call	put_nl

	/* The same with a software interrupt INT 80h (type 4): EXITINTINFO
	 * type 4, #GP error code 80h*8 + 2. */
	CASE	exitintinfo_softint, l2_entry
	movw	$0x2ff, S_IDTR+4(%rbx)
	movl	$1 << 13, C_INTERCEPT_EXC(%rbx)
	movl	$VALID|T_SOFT|0x80, C_EVENTINJ(%rbx)
	lea	l2_entry(%rip), %rax
	mov	%rax, C_NEXT_RIP(%rbx)
	RUN
	CODE	EXIT_EXCP+13
	KV	intinfo, C_EXIT_INT_INFO(%rbx)
	EXPECT	VALID|T_SOFT|0x80, exit_int_info
	call	info1_idt
	EXPECT	0x402, exit_info_1 (IDT bit and index)
	RIP	l2_entry, 0
	call	put_nl

	/* An exception with error code interrupted: #GP (error code 1234h)
	 * injected while L2's gate 13 is not present: #NP (error code 13*8+2),
	 * intercepted (exit 4Bh); EXITINTINFO = the #GP with EV and its error
	 * code in the upper half (offset 8Ch). */
	CASE	exitintinfo_exc_errcode, l2_entry
	andb	$0x7f, l2_idt+13*16+5(%rip)
	movl	$1 << 11, C_INTERCEPT_EXC(%rbx)
	movl	$VALID|EV|T_EXC|13, C_EVENTINJ(%rbx)
	movl	$0x1234, C_EVENTINJ+4(%rbx)
	RUN
	orb	$0x80, l2_idt+13*16+5(%rip)
	CODE	EXIT_EXCP+11
	KV	intinfo, C_EXIT_INT_INFO(%rbx)
	EXPECT	0x1234<<32|VALID|EV|T_EXC|13, exit_int_info
	call	info1_idt
	EXPECT	13*8+2, exit_info_1 (IDT bit and index)
	RIP	l2_entry, 0
	call	put_nl

	/* Not intercepted: the #GP of an interrupted delivery meets the same
	 * short IDT, so #DF and a triple fault follow: SHUTDOWN (7Fh). */
	CASE	interrupted_unhandled_shutdown, l2_entry
	movw	$0, S_IDTR+4(%rbx)
	orl	$I1_SHUTDOWN, C_INTERCEPT1(%rbx)
	movl	$VALID|T_INTR|0x30, C_EVENTINJ(%rbx)
	RUN
	CODE	EXIT_SHUTDOWN
	call	put_nl

	jmp	l1_done

/* " [nsvm-only]" and the end of the line. */
tag:	STR	%rsi, " [nsvm-only]"
	call	put_str
	jmp	put_nl

/* Prints " info1=" EXITINFO1 and returns it in RAX without bit 0 (EXT):
 * the APM/SDM selector error code sets EXT for events external to the
 * program (external interrupts, NMI, exceptions); QEMU's TCG never sets it
 * for faults in IDT lookups, so only the IDT bit and the index are checked.
 * Both hypervisors print what the processor gave. */
info1_idt:
	KV	info1, C_EXIT_INFO1(%rbx)
	and	$~1, %rax
	ret

/* RSI = L2 entry: vmcb12 from vmcb_init (RBX = vmcb12), L2's own IDT, the
 * L2 stack top 16-byte aligned, the handler's record cleared. */
setup:	lea	vmcb(%rip), %rdi
	lea	l2stack(%rip), %rdx
	call	vmcb_init
	mov	%rdi, %rbx
	lea	l2_idt(%rip), %rax
	mov	%rax, S_IDTR+8(%rbx)
	movl	$0xfff, S_IDTR+4(%rbx)
	movq	$-1, l2_seen_vec(%rip)
	movq	$-1, l2_seen_ec(%rip)
	movq	$-1, l2_seen_rip(%rip)
	ret

/* L2's IDT: 256 64-bit interrupt gates (type 0Eh, DPL 0, selector 08h)
 * to l2_stubs + 16 * vector. */
build_idt:
	lea	l2_idt(%rip), %rdi
	lea	l2_stubs(%rip), %rsi
	mov	$256, %ecx
1:	call	idt_gate
	add	$16, %rsi
	add	$16, %rdi
	loop	1b
	ret

/* L2 */
l2_entry:
	ud2				/* never reached: the event comes first */
	vmmcall

	.balign	16
l2_stubs:
	.set	vec, 0
	.rept	256
	.balign	16
	movq	$vec, l2_seen_vec(%rip)	/* 11 bytes */
	jmp	l2_common		/* 5 at most: a stub fits 16 */
	.set	vec, vec+1
	.endr
l2_common:
	lea	l2stack(%rip), %rax
	sub	%rsp, %rax
	cmp	$48, %rax
	jne	1f
	pop	%rax
	mov	%rax, l2_seen_ec(%rip)
1:	mov	(%rsp), %rax
	mov	%rax, l2_seen_rip(%rip)
	vmmcall
	hlt

	.data
	.balign	8
l2_seen_vec:	.quad	0
l2_seen_ec:	.quad	0
l2_seen_rip:	.quad	0
feat:		.long	0
	.balign	4096
vmcb:	.fill	4096, 1, 0
l2_idt:	.fill	4096, 1, 0
	.fill	4096, 1, 0
l2stack:
	.include "l1lib.S"
