/* Shared helpers for the L1 hypervisor payloads of the `nested` suite
 * (long mode, loaded by `nsvm run` with identity paging). Include it at the
 * END of a payload (`.include "l1lib.S"`): it switches sections.
 *
 * Conventions:
 * - Each case prints one line "case NAME: k=v k=v ..." with the values it
 *   observed (exit code, exit_info_1/2, EXITINTINFO...), so that the suite
 *   can compare the line on nsvm and on kvm_amd; when an observed value is
 *   not what the APM requires, the line also carries " FAIL(...)" and the
 *   failure count (l1_failures) grows.
 * - `l1_done` ends the run: exit status 33 when no case failed, 1 otherwise.
 * - VMCB offsets (APM vol. 2 appendix B): control area at 0, save area at
 *   0x400 (VMCB_SAVE).
 *
 * Routines (SysV-ish, all GPRs but RAX/RCX/RDX/RSI/RDI/R8-R11 preserved):
 *   l1_init            EFER.SVME=1, VM_HSAVE_PA = l1_hsave
 *   l1_init_hsave      RDI=host save area (4 KiB aligned, one per vCPU:
 *                      VM_HSAVE_PA is per CPU): EFER.SVME=1, VM_HSAVE_PA=RDI
 *   vmcb_init          RDI=vmcb, RSI=L2 RIP, RDX=L2 RSP: zeroes the VMCB and
 *                      gives L2 L1's own segments, CR0/3/4, EFER, GDT/IDT;
 *                      intercepts VMRUN and VMMCALL, ASID 1
 *   l1_vmrun           RDI=vmcb: VMRUN then STGI; returns exit code in RAX
 *                      (RBX, RDI kept; other GPRs hold what L2 left)
 *   put_str            RSI=NUL-terminated string
 *   put_hex            RAX printed in hex without leading zeros ("0" for 0)
 *   put_kv             RSI=" key=" string, RAX value
 *   put_nl
 *   idt_gate           RDI=gate (IDT + 16 * vector), RSI=handler: a 64-bit
 *                      interrupt gate (type 0Eh, DPL 0, present, CS 08h)
 *   npt12_identity     RDI=3 pages (PML4, PDPT, PD), RSI=a PT page or 0: an
 *                      identity NPT12 for 0-8 MiB (P|RW|US), 2 MiB pages, and
 *                      with RSI the 2-4 MiB range through 4 KiB entries
 *   l1_idt, l1_idtr    a 32-vector IDT for L1 (gates by idt_gate), l1_lidt
 *                      loads it
 *   l1_nmi_handler     NMI handler for the NMI payloads: counts in l1_nmis,
 *                      sets l1_nmi_nested when entered inside itself; when
 *                      l1_nmi_reraise is set (cleared on use) raises another
 *                      NMI (port 513h), and with l1_nmi_snapshot also asks
 *                      for a snapshot (port 502h), then spins before IRET
 *   expect             RAX=observed, RDX=expected, RSI=what: on mismatch
 *                      prints " FAIL(what)" and counts a failure
 */
	.set	VMCB_SAVE, 0x400
	.set	C_INTERCEPT_CR, 0x00
	.set	C_INTERCEPT_DR, 0x04
	.set	C_INTERCEPT_EXC, 0x08
	.set	C_INTERCEPT1, 0x0c
	.set	C_INTERCEPT2, 0x10
	.set	C_IOPM, 0x40
	.set	C_MSRPM, 0x48
	.set	C_TSC_OFFSET, 0x50
	.set	C_ASID, 0x58
	.set	C_TLB_CTL, 0x5c
	.set	C_INT_CTL, 0x60
	.set	C_INT_VECTOR, 0x64
	.set	C_INT_STATE, 0x68
	.set	C_EXIT_CODE, 0x70
	.set	C_EXIT_INFO1, 0x78
	.set	C_EXIT_INFO2, 0x80
	.set	C_EXIT_INT_INFO, 0x88
	.set	C_NESTED_CTL, 0x90
	.set	C_EVENTINJ, 0xa8
	.set	C_NCR3, 0xb0
	.set	C_CLEAN, 0xc0
	.set	C_NEXT_RIP, 0xc8
	.set	S_ES, VMCB_SAVE+0x00
	.set	S_CS, VMCB_SAVE+0x10
	.set	S_SS, VMCB_SAVE+0x20
	.set	S_DS, VMCB_SAVE+0x30
	.set	S_FS, VMCB_SAVE+0x40
	.set	S_GS, VMCB_SAVE+0x50
	.set	S_GDTR, VMCB_SAVE+0x60
	.set	S_LDTR, VMCB_SAVE+0x70
	.set	S_IDTR, VMCB_SAVE+0x80
	.set	S_TR, VMCB_SAVE+0x90
	.set	S_CPL, VMCB_SAVE+0xcb
	.set	S_EFER, VMCB_SAVE+0xd0
	.set	S_CR4, VMCB_SAVE+0x148
	.set	S_CR3, VMCB_SAVE+0x150
	.set	S_CR0, VMCB_SAVE+0x158
	.set	S_DR7, VMCB_SAVE+0x160
	.set	S_DR6, VMCB_SAVE+0x168
	.set	S_RFLAGS, VMCB_SAVE+0x170
	.set	S_RIP, VMCB_SAVE+0x178
	.set	S_RSP, VMCB_SAVE+0x1d8
	.set	S_RAX, VMCB_SAVE+0x1f8
	.set	S_CR2, VMCB_SAVE+0x240
	.set	S_G_PAT, VMCB_SAVE+0x268
	/* Exit codes (APM appendix C). */
	.set	EXIT_EXCP, 0x40
	.set	EXIT_INTR, 0x60
	.set	EXIT_NMI, 0x61
	.set	EXIT_VINTR, 0x64
	.set	EXIT_CPUID, 0x72
	.set	EXIT_HLT, 0x78
	.set	EXIT_IOIO, 0x7b
	.set	EXIT_MSR, 0x7c
	.set	EXIT_SHUTDOWN, 0x7f
	.set	EXIT_VMRUN, 0x80
	.set	EXIT_VMMCALL, 0x81
	.set	EXIT_NPF, 0x400
	.set	SERIAL, 0x3f8
	.set	DEBUG_EXIT, 0x501

	.text
l1_init:
	mov	$0xc0000080, %ecx
	rdmsr
	or	$0x1000, %eax
	wrmsr
	mov	$0xc0010117, %ecx
	lea	l1_hsave(%rip), %rax
	xor	%edx, %edx
	wrmsr
	ret

l1_init_hsave:
	mov	$0xc0000080, %ecx
	rdmsr
	or	$0x1000, %eax
	wrmsr
	mov	$0xc0010117, %ecx
	mov	%rdi, %rax
	mov	%rdi, %rdx
	shr	$32, %rdx
	wrmsr
	ret

vmcb_init:
	push	%rdi
	push	%rdx
	mov	%rdi, %r8
	xor	%eax, %eax
	mov	$512, %ecx
	rep stosq
	mov	%r8, %rdi
	pop	%rdx
	movl	$0x00000003, C_INTERCEPT2(%rdi)	/* VMRUN, VMMCALL */
	movl	$1, C_ASID(%rdi)
	movw	$0x08, S_CS(%rdi)
	movw	$0x0a9b, S_CS+2(%rdi)
	movl	$0xffffffff, S_CS+4(%rdi)
	.irp	seg, S_SS, S_DS, S_ES
	movw	$0x10, \seg(%rdi)
	movw	$0x0c93, \seg+2(%rdi)
	movl	$0xffffffff, \seg+4(%rdi)
	.endr
	sgdt	l1_dtr(%rip)
	movzwl	l1_dtr(%rip), %eax
	mov	%eax, S_GDTR+4(%rdi)
	mov	l1_dtr+2(%rip), %rax
	mov	%rax, S_GDTR+8(%rdi)
	sidt	l1_dtr(%rip)
	movzwl	l1_dtr(%rip), %eax
	mov	%eax, S_IDTR+4(%rdi)
	mov	l1_dtr+2(%rip), %rax
	mov	%rax, S_IDTR+8(%rdi)
	mov	%cr0, %rax
	mov	%rax, S_CR0(%rdi)
	mov	%cr3, %rax
	mov	%rax, S_CR3(%rdi)
	mov	%cr4, %rax
	mov	%rax, S_CR4(%rdi)
	push	%rdx
	mov	$0xc0000080, %ecx
	rdmsr
	pop	%rdx
	mov	%eax, S_EFER(%rdi)
	movq	$2, S_RFLAGS(%rdi)
	mov	%rsi, S_RIP(%rdi)
	mov	%rdx, S_RSP(%rdi)
	mov	$0xffff0ff0, %eax
	mov	%rax, S_DR6(%rdi)
	movq	$0x400, S_DR7(%rdi)
	mov	$0x0007040600070406, %rax
	mov	%rax, S_G_PAT(%rdi)
	pop	%rdi
	ret

/* L2 shares L1's GPRs except RAX and RSP (VMRUN/#VMEXIT switch only
 * those): RBX and RDI come back from L1's stack. */
l1_vmrun:
	push	%rbx
	push	%rdi
	mov	%rdi, %rax
	vmrun
	stgi
	pop	%rdi
	pop	%rbx
	mov	C_EXIT_CODE(%rdi), %rax
	ret

put_str:
	push	%rax
	push	%rdx
1:	lodsb
	test	%al, %al
	jz	2f
	mov	$SERIAL, %dx
	out	%al, %dx
	jmp	1b
2:	pop	%rdx
	pop	%rax
	ret

put_hex:
	push	%rax
	push	%rcx
	push	%rdx
	push	%rbx
	mov	%rax, %rbx
	mov	$60, %ecx
	xor	%edx, %edx			/* digits printed */
1:	mov	%rbx, %rax
	shr	%cl, %rax
	and	$0xf, %eax
	test	%ecx, %ecx
	jz	3f				/* the last digit always prints */
	test	%eax, %eax
	jnz	3f
	test	%edx, %edx
	jz	4f
3:	inc	%edx
	add	$'0', %al
	cmp	$'9', %al
	jbe	2f
	add	$39, %al
2:	push	%rdx
	mov	$SERIAL, %dx
	out	%al, %dx
	pop	%rdx
4:	sub	$4, %ecx
	jns	1b
	pop	%rbx
	pop	%rdx
	pop	%rcx
	pop	%rax
	ret

put_kv:
	call	put_str
	jmp	put_hex

put_nl:
	push	%rax
	push	%rdx
	mov	$'\n', %al
	mov	$SERIAL, %dx
	out	%al, %dx
	pop	%rdx
	pop	%rax
	ret

expect:
	cmp	%rdx, %rax
	je	1f
	push	%rsi
	lea	l1_m_fail(%rip), %rsi
	call	put_str
	pop	%rsi
	call	put_str
	push	%rsi
	lea	l1_m_close(%rip), %rsi
	call	put_str
	pop	%rsi
	incq	l1_failures(%rip)
1:	ret

idt_gate:
	push	%rax
	mov	%rsi, %rax
	mov	%ax, (%rdi)
	movw	$0x08, 2(%rdi)
	movw	$0x8e00, 4(%rdi)
	shr	$16, %rax
	mov	%ax, 6(%rdi)
	shr	$16, %rax
	mov	%eax, 8(%rdi)
	movl	$0, 12(%rdi)
	pop	%rax
	ret

npt12_identity:
	push	%rcx
	lea	0x1007(%rdi), %rax
	mov	%rax, (%rdi)
	lea	0x2007(%rdi), %rax
	mov	%rax, 0x1000(%rdi)
	xor	%ecx, %ecx
1:	mov	%rcx, %rax
	shl	$21, %rax
	or	$0x87, %rax			/* PS | P | RW | US */
	mov	%rax, 0x2000(%rdi,%rcx,8)
	inc	%ecx
	cmp	$4, %ecx
	jb	1b
	test	%rsi, %rsi
	jz	3f
	lea	7(%rsi), %rax
	mov	%rax, 0x2008(%rdi)
	xor	%ecx, %ecx
2:	mov	%rcx, %rax
	shl	$12, %rax
	add	$0x200007, %rax
	mov	%rax, (%rsi,%rcx,8)
	inc	%ecx
	cmp	$512, %ecx
	jb	2b
3:	pop	%rcx
	ret

l1_lidt:
	lidt	l1_idtr(%rip)
	ret

l1_nmi_handler:
	push	%rax
	push	%rdx
	push	%rcx
	cmpq	$0, l1_in_nmi(%rip)
	je	1f
	movq	$1, l1_nmi_nested(%rip)
1:	movq	$1, l1_in_nmi(%rip)
	incq	l1_nmis(%rip)
	cmpq	$0, l1_nmi_reraise(%rip)
	je	2f
	movq	$0, l1_nmi_reraise(%rip)
	mov	$0x513, %dx			/* another NMI: must wait for IRET */
	out	%al, %dx
	cmpq	$0, l1_nmi_snapshot(%rip)
	je	3f
	mov	$0x502, %dx			/* the snapshot, inside the handler */
	out	%al, %dx
3:	mov	$10000, %ecx
4:	loop	4b
2:	movq	$0, l1_in_nmi(%rip)
	pop	%rcx
	pop	%rdx
	pop	%rax
	iretq

l1_done:
	mov	$33, %al
	cmpq	$0, l1_failures(%rip)
	je	1f
	mov	$1, %al
1:	mov	$DEBUG_EXIT, %dx
	out	%al, %dx
	hlt
	jmp	l1_done

	.data
l1_m_fail:	.asciz	" FAIL("
l1_m_close:	.asciz	")"
	.balign	8
l1_failures:	.quad	0
l1_nmis:	.quad	0
l1_in_nmi:	.quad	0
l1_nmi_nested:	.quad	0
l1_nmi_reraise:	.quad	0
l1_nmi_snapshot:	.quad	0
l1_idtr:	.word	32*16-1
		.quad	l1_idt
	.balign	16
l1_idt:		.fill	32*16, 1, 0
l1_dtr:		.fill	10, 1, 0
	.balign	4096
l1_hsave:	.fill	4096, 1, 0
