/* L1 hypervisor payload: each intercept as L1 sees it when it sets it in
 * vmcb12 (APM 15.9-15.13), one L2 run per case, L2 sharing L1's paging:
 * CPUID, HLT, port IO through L1's IOPM (intercepted ports, an access
 * straddling into an intercepted port, and ports L1 leaves open, which L0
 * must handle itself), MSRs through L1's MSRPM (read bit vs write bit of the
 * same MSR, an MSR outside the map), exceptions through the exception
 * bitmap (#UD, #DE, #GP and #PF with their EXITINFO), VINTR and SHUTDOWN
 * (INTR is in l1_intr.S). Values printed are the architectural ones: exit code, EXITINFO1/2
 * where the APM defines them, L2's RIP at the exit (as an offset from the
 * case's L2 entry point) and registers L2 left. */
	.code64
	.globl _start

	.include "l1macros.inc"

	.set	I1_VINTR, 1 << 4
	.set	I1_CPUID, 1 << 18
	.set	I1_HLT, 1 << 24
	.set	I1_IOIO, 1 << 27
	.set	I1_MSR, 1 << 28
	.set	I1_SHUTDOWN, 1 << 31
	.set	STAR, 0xc0000081
	/* STAR's two MSRPM bits: byte 0x800 + 0x81*2/8, bits 2 (read) and 3 (write) */
	.set	STAR_BYTE, 0x820

_start:
	call	l1_init
	/* L1's IOPM: ports 0x80 and 0x81 intercepted, all others open;
	 * L1's MSRPM: filled per case. */
	movb	$0x03, iopm+0x10(%rip)

	/* CPUID (exit 72h) */
	CASE	cpuid, l2_cpuid
	orl	$I1_CPUID, C_INTERCEPT1(%rbx)
	RUN
	CODE	EXIT_CPUID
	RIP	l2_cpuid, 5
	call	put_nl

	/* HLT (exit 78h) */
	CASE	hlt, l2_hlt
	orl	$I1_HLT, C_INTERCEPT1(%rbx)
	RUN
	CODE	EXIT_HLT
	RIP	l2_hlt, 0
	call	put_nl

	/* IN AL, 80h through the IOPM (exit 7Bh): EXITINFO1 = port << 16,
	 * SZ8 (bit 4), TYPE=IN (bit 0). The address-size bits 7-9 are left
	 * out (printed as info1_noasz): TCG sets them for string I/O only,
	 * real processors report the instruction's address size. EXITINFO2
	 * (next RIP) is not printed. */
	CASE	io_in_intercepted, l2_io_in
	call	io_on
	RUN
	CODE	EXIT_IOIO
	call	io_info1
	EXPECT	0x800011, exit_info_1
	RIP	l2_io_in, 0
	call	put_nl

	/* OUT DX=7Fh, AX: a 2-byte access whose second byte (port 0x80) is
	 * intercepted (APM 15.10.1: every byte's bit counts). */
	CASE	io_out_straddle, l2_io_straddle
	call	io_on
	RUN
	CODE	EXIT_IOIO
	call	io_info1
	EXPECT	0x7f0020, exit_info_1
	RIP	l2_io_straddle, 5
	call	put_nl

	/* Ports L1 leaves open: L2 writes "Z" to COM1 itself (L0 prints it),
	 * reads port 90h (no device: 0xff, into AL only), then VMMCALL. */
	CASE	io_open, l2_io_open
	call	io_on
	STR	%rsi, " l2_out="
	call	put_str
	RUN
	CODE	EXIT_VMMCALL
	KV	rax, S_RAX(%rbx)
	EXPECT	0x12345ff, L2 rax after IN
	call	put_nl

	/* MSRPM: write bit of STAR only: L2's RDMSR passes (L0 does it),
	 * WRMSR exits (7Ch, EXITINFO1 = 1); ECX is L2's. */
	CASE	msr_write_bit, l2_msr_rd_wr
	call	msr_on
	orb	$0x08, msrpm+STAR_BYTE(%rip)
	RUN
	CODE	EXIT_MSR
	KV	info1, C_EXIT_INFO1(%rbx)
	EXPECT	1, exit_info_1
	KV	ecx, %rcx
	EXPECT	STAR, ecx
	RIP	l2_msr_rd_wr, 7
	call	put_nl

	/* MSRPM: read bit of STAR only: WRMSR passes, RDMSR exits (EXITINFO1 = 0). */
	CASE	msr_read_bit, l2_msr_wr_rd
	call	msr_on
	orb	$0x04, msrpm+STAR_BYTE(%rip)
	RUN
	CODE	EXIT_MSR
	KV	info1, C_EXIT_INFO1(%rbx)
	EXPECT	0, exit_info_1
	RIP	l2_msr_wr_rd, 7
	call	put_nl

	/* An MSR outside the three MSRPM ranges: always intercepted. */
	CASE	msr_outside_map, l2_msr_outside
	call	msr_on
	RUN
	CODE	EXIT_MSR
	KV	info1, C_EXIT_INFO1(%rbx)
	EXPECT	0, exit_info_1
	KV	ecx, %rcx
	EXPECT	0x40000000, ecx
	RIP	l2_msr_outside, 5
	call	put_nl

	/* Exceptions through the exception bitmap (exit 40h + vector). */
	CASE	exc_ud, l2_ud
	movl	$1 << 6, C_INTERCEPT_EXC(%rbx)
	RUN
	CODE	EXIT_EXCP+6
	RIP	l2_ud, 0
	call	put_nl

	CASE	exc_de, l2_de
	movl	$1 << 0, C_INTERCEPT_EXC(%rbx)
	RUN
	CODE	EXIT_EXCP+0
	RIP	l2_de, 2
	call	put_nl

	/* No #BP case: QEMU's TCG checks INT3 against the INTn intercept,
	 * never against the exception bitmap, so #VMEXIT(43h) cannot happen
	 * here on any L0 (the #BP is delivered to L2 instead). */

	/* #GP loading FS with a selector beyond the GDT limit: error code =
	 * the selector (EXITINFO1). */
	CASE	exc_gp, l2_gp
	movl	$1 << 13, C_INTERCEPT_EXC(%rbx)
	RUN
	CODE	EXIT_EXCP+13
	KV	info1, C_EXIT_INFO1(%rbx)
	EXPECT	0x1238, exit_info_1
	RIP	l2_gp, 5
	call	put_nl

	/* #PF: L2 runs on a copy of L1's tables without the 1-4 GiB range
	 * (PDPT entries 1-3 cleared); a write to 0x40000123 faults not-present:
	 * EXITINFO1 = error code 2 (W), EXITINFO2 = the address. */
	CASE	exc_pf, l2_pf
	call	l2_tables
	mov	%rax, S_CR3(%rbx)
	movl	$1 << 14, C_INTERCEPT_EXC(%rbx)
	RUN
	CODE	EXIT_EXCP+14
	KV	info1, C_EXIT_INFO1(%rbx)
	EXPECT	2, exit_info_1
	KV	info2, C_EXIT_INFO2(%rbx)
	EXPECT	0x40000123, exit_info_2
	RIP	l2_pf, 5
	call	put_nl

	/* VINTR: V_IRQ set by L1 (vector 30h, priority 15, ignoring the TPR,
	 * V_INTR_MASKING), VINTR intercepted: no exit while L2's IF=0 nor in
	 * the STI shadow, exit 64h before the instruction after it, with
	 * V_IRQ still set in vmcb12 (the interrupt was not taken). */
	CASE	vintr, l2_vintr
	orl	$I1_VINTR, C_INTERCEPT1(%rbx)
	movl	$0x011f0100, C_INT_CTL(%rbx)
	movl	$0x30, C_INT_VECTOR(%rbx)
	RUN
	CODE	EXIT_VINTR
	RIP	l2_vintr, 4
	mov	C_INT_CTL(%rbx), %eax
	shr	$8, %eax
	and	$1, %eax
	STR	%rsi, " v_irq="
	call	put_kv
	EXPECT	1, V_IRQ
	call	put_nl

	/* SHUTDOWN: L2's #UD meets an empty IDT (limit 0): #GP, #DF, triple
	 * fault; L1 intercepts shutdown (exit 7Fh). */
	CASE	shutdown, l2_ud
	orl	$I1_SHUTDOWN, C_INTERCEPT1(%rbx)
	movl	$0, S_IDTR+4(%rbx)
	movq	$0, S_IDTR+8(%rbx)
	RUN
	CODE	EXIT_SHUTDOWN
	call	put_nl

	jmp	l1_done

/* RSI = L2 entry: vmcb12 from vmcb_init (RBX = vmcb12), L2 stack 16-byte
 * aligned. */
setup:	lea	vmcb(%rip), %rdi
	lea	l2stack(%rip), %rdx
	call	vmcb_init
	mov	%rdi, %rbx
	ret

/* IOIO_PROT with L1's IOPM. */
io_on:	orl	$I1_IOIO, C_INTERCEPT1(%rbx)
	lea	iopm(%rip), %rax
	mov	%rax, C_IOPM(%rbx)
	ret

/* " info1_noasz=" EXITINFO1 without the address-size bits 7-9, in RAX. */
io_info1:
	mov	C_EXIT_INFO1(%rbx), %rax
	and	$~0x380, %rax
	STR	%rsi, " info1_noasz="
	jmp	put_kv

/* MSR_PROT with L1's MSRPM, cleared. */
msr_on:	orl	$I1_MSR, C_INTERCEPT1(%rbx)
	lea	msrpm(%rip), %rdi
	mov	%rdi, C_MSRPM(%rbx)
	xor	%eax, %eax
	mov	$8192/8, %ecx
	rep stosq
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
	ret

/* L2 code. */
l2_cpuid:
	mov	$0, %eax			/* 5 bytes */
	cpuid
	vmmcall
l2_hlt:	hlt
	vmmcall
l2_io_in:
	in	$0x80, %al
	vmmcall
l2_io_straddle:
	mov	$0x7f, %edx			/* 5 bytes */
	out	%ax, %dx
	vmmcall
l2_io_open:
	mov	$'Z', %al
	mov	$SERIAL, %dx
	out	%al, %dx
	mov	$0x1234500, %eax
	in	$0x90, %al
	vmmcall
l2_msr_rd_wr:
	mov	$STAR, %ecx			/* 5 bytes */
	rdmsr
	wrmsr
	vmmcall
l2_msr_wr_rd:
	mov	$STAR, %ecx
	wrmsr
	rdmsr
	vmmcall
l2_msr_outside:
	mov	$0x40000000, %ecx
	rdmsr
	vmmcall
l2_ud:	ud2
	vmmcall
l2_de:	xor	%ecx, %ecx			/* 2 bytes */
	div	%ecx
	vmmcall
l2_gp:	mov	$0x1238, %eax			/* 5 bytes */
	mov	%ax, %fs
	vmmcall
l2_pf:	mov	$0x40000123, %eax		/* 5 bytes */
	movl	$1, (%rax)
	vmmcall
l2_vintr:
	nop
	nop
	sti
	nop					/* STI shadow */
	vmmcall					/* +4: the exit comes before this */
	.data
	.balign	4096
vmcb:	.fill	4096, 1, 0
iopm:	.fill	3*4096, 1, 0
msrpm:	.fill	2*4096, 1, 0
l2_pml4: .fill	4096, 1, 0
l2_pdpt: .fill	4096, 1, 0
	.fill	4096, 1, 0
l2stack:
	.include "l1lib.S"
