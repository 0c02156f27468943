/* VMRUN refused: vmcb12 keeps what L1 wrote (APM vol. 2 15.5.1).
 *
 * A VMRUN whose guest state breaks a consistency rule ends at once in
 * #VMEXIT with exit code VMEXIT_INVALID. No guest state was loaded, so none
 * is saved: the VMCB gets the exit code (-1), EXITINFO1/2 (0) and EVENTINJ
 * cleared (as KVM writes them) and nothing else. Whatever refused it (L0's checks of
 * vmcb12, or the processor refusing vmcb02), and whatever the processor
 * wrote into vmcb02 (QEMU's TCG saves its own host state there when a check
 * it makes after saving the host state fails), vmcb12 must not change.
 *
 * Each case starts from a good VMCB (L2 would exit with VMMCALL, 81h),
 * breaks one rule, keeps a copy of the whole 4 KiB page, runs VMRUN, and
 * compares the page with the copy quadword by quadword: "changed=" names
 * every field that differs (segments, GDTR/IDTR, CPL, EFER, CRn, DRn,
 * RFLAGS, RIP, RSP, RAX, int_ctl..., or "@offset" for any other quadword)
 * or says "none"; the exit fields (exit code, EXITINFO1/2, EVENTINJ) are
 * printed and checked apart. A changed case also shows vmcb12's RIP, RSP
 * and CR3 as found (after "|").
 *
 * The states:
 * - CR3 in long mode with each bit from MAXPHYADDR (CPUID 8000_0008h
 *   EAX[7:0]) up to 63 set (MBZ: APM 3.1.2, 5.3.2);
 * - CR4 with each bit set that is reserved on this processor: undefined on
 *   AMD64 (13-15, 19, 24-63) or tied to a feature CPUID does not report
 *   (UMIP 7.ECX[2], LA57 7.ECX[16], FSGSBASE 7.EBX[0], PCIDE 1.ECX[17],
 *   OSXSAVE 1.ECX[26], SMEP 7.EBX[7], SMAP 7.EBX[20], PKE 7.ECX[3], CET
 *   7.ECX[7]) (APM 3.1.3);
 * - EFER with each such bit set but SVME/LME/LMA (rules of their own):
 *   defined are SCE, NXE (8000_0001.EDX[20]), LMSLE (unless 8000_0008.EBX
 *   [20]), FFXSR (8000_0001.EDX[25]), TCE (8000_0001.ECX[17]), MCOMMIT
 *   (8000_0008.EBX[8]), INTWB (8000_0008.EBX[13]), UAIE and AIBRSE
 *   (8000_0021.EAX[7], [8]) (APM 3.1.7);
 * - CR0 bits 32 and 63, NW without CD, DR6 bit 32, DR7 bit 63, EFER.SVME
 *   clear, long mode without PAE or without PE, CS.L with CS.D, EVENTINJ
 *   of reserved type 1, exception vector 2 (NMI) and reserved vector 31.
 *   These are the rules QEMU's TCG checks too, so that the same lines come
 *   out when the module runs with vmcb12_checks=0 (the processor refusing
 *   vmcb02, tests/qemu/nested.sh).
 * - EFER.LMSLE when CPUID reports it supported: the APM allows it, QEMU's
 *   TCG refuses it (VMEXIT_INVALID after loading most of the guest state,
 *   with the host's RIP): "code=" is 81 on a processor that implements it,
 *   -1 under TCG, and vmcb12 must stay as L1 wrote it either way. Tagged
 *   [apm]: kvm_amd copies what the processor left in vmcb02 into vmcb12.
 */
/* FEAT var, fbit, bit: sets bit `bit` of R8 when bit `fbit` of `var` is. */
	.macro	FEAT var, fbit, bit
	btl	$\fbit, \var(%rip)
	jnc	1f
	bts	$\bit, %r8
1:
	.endm
/* FIELDENT off, name: an entry of `fields`. */
	.macro	FIELDENT off, name
	.quad	\off, n_\name
	.endm

	.code64
	.globl _start
_start:
	call	l1_init
	call	probe
	lea	m_info_f(%rip), %rsi
	call	put_str
	mov	phys(%rip), %rax
	lea	m_k_phys(%rip), %rsi
	call	put_kv
	mov	cr4_ok(%rip), %rax
	lea	m_k_cr4ok(%rip), %rsi
	call	put_kv
	mov	efer_ok(%rip), %rax
	lea	m_k_eferok(%rip), %rsi
	call	put_kv
	call	put_nl

	/* A good VMCB runs L2 to its VMMCALL and comes back as L2 left it. */
	call	prep
	lea	m_good(%rip), %rsi
	mov	$-1, %rax
	mov	$EXIT_VMMCALL, %edx
	call	run_case

	/* CR3: each bit from MAXPHYADDR up, in long mode. */
	mov	phys(%rip), %r12
1:	call	prep
	bts	%r12, S_CR3(%rdi)
	lea	m_cr3(%rip), %rsi
	mov	%r12, %rax
	call	refused
	inc	%r12
	cmp	$64, %r12
	jb	1b

	/* CR4: each bit reserved on this processor. */
	xor	%r12d, %r12d
2:	bt	%r12, cr4_ok(%rip)
	jc	3f
	call	prep
	bts	%r12, S_CR4(%rdi)
	lea	m_cr4(%rip), %rsi
	mov	%r12, %rax
	call	refused
3:	inc	%r12
	cmp	$64, %r12
	jb	2b

	/* EFER: each bit reserved on this processor but SVME, LME, LMA. */
	xor	%r12d, %r12d
4:	bt	%r12, efer_ok(%rip)
	jc	5f
	cmp	$8, %r12
	je	5f
	cmp	$10, %r12
	je	5f
	cmp	$12, %r12
	je	5f
	call	prep
	bts	%r12, S_EFER(%rdi)
	lea	m_efer(%rip), %rsi
	mov	%r12, %rax
	call	refused
5:	inc	%r12
	cmp	$64, %r12
	jb	4b

	.macro	REFUSED name
	.pushsection .data
9:	.asciz	"refused_\name"
	.popsection
	call	prep
	lea	9b(%rip), %rsi
	push	%rsi
	.endm
	.macro	RUNREF
	pop	%rsi
	mov	$-1, %rax
	call	refused
	.endm

	REFUSED	cr0_bit32
	btsq	$32, S_CR0(%rdi)
	RUNREF
	REFUSED	cr0_bit63
	btsq	$63, S_CR0(%rdi)
	RUNREF
	REFUSED	cr0_nw_without_cd
	btrq	$30, S_CR0(%rdi)
	btsq	$29, S_CR0(%rdi)
	RUNREF
	REFUSED	dr6_bit32
	btsq	$32, S_DR6(%rdi)
	RUNREF
	REFUSED	dr7_bit63
	btsq	$63, S_DR7(%rdi)
	RUNREF
	REFUSED	efer_svme_clear
	btrq	$12, S_EFER(%rdi)
	RUNREF
	REFUSED	long_mode_without_pae
	btrq	$5, S_CR4(%rdi)
	RUNREF
	REFUSED	long_mode_without_pe
	btrq	$0, S_CR0(%rdi)
	RUNREF
	REFUSED	cs_l_and_d
	orw	$0x0400, S_CS+2(%rdi)
	RUNREF
	REFUSED	event_inj_type1
	movl	$0x80000120, C_EVENTINJ(%rdi)
	RUNREF
	REFUSED	event_inj_exception_vector2
	movl	$0x80000302, C_EVENTINJ(%rdi)
	RUNREF
	REFUSED	event_inj_exception_vector31
	movl	$0x8000031f, C_EVENTINJ(%rdi)
	RUNREF

	/* EFER.LMSLE where CPUID reports it: the processor decides. */
	btq	$13, efer_ok(%rip)
	jnc	6f
	call	prep
	btsq	$13, S_EFER(%rdi)
	lea	m_lmsle(%rip), %rsi
	call	lmsle_case
6:
	/* VMRUN still works afterwards. */
	call	prep
	lea	m_after(%rip), %rsi
	mov	$-1, %rax
	mov	$EXIT_VMMCALL, %edx
	call	run_case
	jmp	l1_done

/* CPUID: phys = MAXPHYADDR, cr4_ok / efer_ok = the bits that may be set. */
probe:
	push	%rbx
	mov	$36, %eax
	mov	%rax, phys(%rip)
	mov	$0x80000000, %eax
	cpuid
	mov	%eax, maxext(%rip)
	cmp	$0x80000008, %eax
	jb	1f
	mov	$0x80000008, %eax
	cpuid
	movzbl	%al, %eax
	mov	%rax, phys(%rip)
	mov	%ebx, ext8_ebx(%rip)
1:	cmpl	$0x80000021, maxext(%rip)
	jb	2f
	mov	$0x80000021, %eax
	xor	%ecx, %ecx
	cpuid
	mov	%eax, ext21_eax(%rip)
2:	mov	$0x80000001, %eax
	cpuid
	mov	%ecx, ext1_ecx(%rip)
	mov	%edx, ext1_edx(%rip)
	mov	$1, %eax
	cpuid
	mov	%ecx, l1_ecx(%rip)
	xor	%eax, %eax
	cpuid
	cmp	$7, %eax
	jb	3f
	mov	$7, %eax
	xor	%ecx, %ecx
	cpuid
	mov	%ebx, l7_ebx(%rip)
	mov	%ecx, l7_ecx(%rip)
3:	/* CR4: VME..OSXMMEXCPT always; the others by feature. */
	mov	$0x7ff, %r8d
	.irp	pair, "l7_ecx,2,11", "l7_ecx,16,12", "l7_ebx,0,16", "l1_ecx,17,17", "l1_ecx,26,18", "l7_ebx,7,20", "l7_ebx,20,21", "l7_ecx,3,22", "l7_ecx,7,23"
	FEAT	\pair
	.endr
	mov	%r8, cr4_ok(%rip)
	/* EFER: SCE, SVME (L1 has SVM), LME/LMA (L1 is in long mode), and
	 * the others by feature; LMSLE unless reported unsupported. */
	mov	$0x1501, %r8d
	.irp	pair, "ext1_edx,20,11", "ext1_edx,25,14", "ext1_ecx,17,15", "ext8_ebx,8,17", "ext8_ebx,13,18", "ext21_eax,7,20", "ext21_eax,8,21"
	FEAT	\pair
	.endr
	btl	$20, ext8_ebx(%rip)
	jc	4f
	bts	$13, %r8
4:	mov	%r8, efer_ok(%rip)
	pop	%rbx
	ret

/* RDI = vmcb, initialised for L2 (which executes VMMCALL). */
prep:	lea	vmcb(%rip), %rdi
	lea	l2(%rip), %rsi
	lea	l2stack(%rip), %rdx
	jmp	vmcb_init

/* RSI = name, RAX = number to append (hex) or -1: a refused VMRUN. */
refused:
	mov	$-1, %rdx
	jmp	run_case

/* RSI = name, RAX = suffix or -1, RDX = expected exit code: poisons the
 * exit fields, copies the page, VMRUN, prints the case line. */
run_case:
	push	%rbx
	push	%r13
	push	%rdx
	push	%rax
	push	%rsi
	call	snap
	lea	vmcb(%rip), %rdi
	call	l1_vmrun
	mov	%rax, %rbx
	pop	%rsi
	pop	%rax
	call	case_head
	mov	%rbx, %rax
	lea	m_k_code(%rip), %rsi
	call	put_kv
	pop	%rdx
	push	%rdx
	lea	m_code(%rip), %rsi
	call	expect
	pop	%rdx
	cmp	$EXIT_VMMCALL, %rdx
	je	1f
	call	exit_fields
	call	compare
1:	call	put_nl
	pop	%r13
	pop	%rbx
	ret

/* The LMSLE case: RSI = name; exit code 81 (L2 ran) or -1 with nothing
 * changed. */
lmsle_case:
	push	%rbx
	push	%rsi
	call	snap
	lea	vmcb(%rip), %rdi
	call	l1_vmrun
	mov	%rax, %rbx
	pop	%rsi
	mov	$-1, %rax
	call	case_head
	mov	%rbx, %rax
	lea	m_k_code(%rip), %rsi
	call	put_kv
	cmp	$EXIT_VMMCALL, %rbx
	je	1f
	mov	$-1, %rdx
	lea	m_code(%rip), %rsi
	call	expect
	call	exit_fields
	call	compare
1:	lea	m_apm(%rip), %rsi
	call	put_str
	call	put_nl
	pop	%rbx
	ret

/* Poisons exit code and EXITINFO1/2, then copies the VMCB page to `copy`. */
snap:
	lea	vmcb(%rip), %rdi
	movq	$0x5a5a, C_EXIT_CODE(%rdi)
	movq	$0x5a5b, C_EXIT_INFO1(%rdi)
	movq	$0x5a5c, C_EXIT_INFO2(%rdi)
	cmpl	$0, C_EVENTINJ(%rdi)		/* no event: a marker L0 must clear */
	jne	1f
	movl	$0x5a5d, C_EVENTINJ+4(%rdi)
1:
	lea	vmcb(%rip), %rsi
	lea	copy(%rip), %rdi
	mov	$512, %ecx
	rep movsq
	ret

/* " info1=.. info2=.. eventinj=..": a failed VMRUN writes 0 into
 * EXITINFO1/2 and clears EVENTINJ (with its error code). */
exit_fields:
	mov	vmcb+C_EVENTINJ(%rip), %rax
	lea	m_k_inj(%rip), %rsi
	call	put_kv
	xor	%edx, %edx
	lea	m_inj(%rip), %rsi
	call	expect
	mov	vmcb+C_EXIT_INFO1(%rip), %rax
	lea	m_k_info1(%rip), %rsi
	call	put_kv
	xor	%edx, %edx
	lea	m_info1(%rip), %rsi
	call	expect
	mov	vmcb+C_EXIT_INFO2(%rip), %rax
	lea	m_k_info2(%rip), %rsi
	call	put_kv
	xor	%edx, %edx
	lea	m_info2(%rip), %rsi
	jmp	expect

/* " changed=F,G,.." (or "none"): every quadword of the page but the exit
 * fields compared with the copy, named by `fields`. */
compare:
	push	%rbx
	push	%r12
	push	%r13
	push	%r14
	lea	m_k_changed(%rip), %rsi
	call	put_str
	xor	%r13d, %r13d			/* fields printed */
	xor	%r14d, %r14d			/* last name printed */
	xor	%ebx, %ebx			/* offset */
1:	cmp	$C_EVENTINJ, %ebx
	je	5f
	cmp	$C_EXIT_CODE, %ebx
	jb	2f
	cmp	$C_EXIT_INFO2, %ebx
	jbe	5f
2:	lea	vmcb(%rip), %rax
	mov	(%rax,%rbx), %rax
	lea	copy(%rip), %rdx
	cmp	(%rdx,%rbx), %rax
	je	5f
	call	field_name			/* RSI = name or 0 */
	test	%rsi, %rsi
	jz	3f
	cmp	%rsi, %r14
	je	5f
	mov	%rsi, %r14
3:	test	%r13, %r13
	jz	4f
	push	%rsi
	lea	m_comma(%rip), %rsi
	call	put_str
	pop	%rsi
4:	inc	%r13
	test	%rsi, %rsi
	jz	6f
	call	put_str
	jmp	5f
6:	lea	m_at(%rip), %rsi
	call	put_str
	mov	%rbx, %rax
	call	put_hex
5:	add	$8, %ebx
	cmp	$4096, %ebx
	jb	1b
	test	%r13, %r13
	jnz	7f
	lea	m_none(%rip), %rsi
	call	put_str
7:	mov	%r13, %rax
	xor	%edx, %edx
	lea	m_vmcb12(%rip), %rsi
	call	expect
	test	%r13, %r13
	jz	8f
	/* What vmcb12 holds now, for the log: " | info ... rip= rsp= cr3=". */
	lea	m_info_now(%rip), %rsi
	call	put_str
	mov	vmcb+S_RIP(%rip), %rax
	lea	m_k_rip(%rip), %rsi
	call	put_kv
	mov	vmcb+S_RSP(%rip), %rax
	lea	m_k_rsp(%rip), %rsi
	call	put_kv
	mov	vmcb+S_CR3(%rip), %rax
	lea	m_k_cr3(%rip), %rsi
	call	put_kv
8:	pop	%r14
	pop	%r13
	pop	%r12
	pop	%rbx
	ret

/* RBX = quadword offset: RSI = its field's name, 0 when it has none. */
field_name:
	lea	fields(%rip), %rsi
1:	mov	(%rsi), %rax
	cmp	$-1, %rax
	je	2f
	cmp	%rbx, %rax
	je	3f
	add	$16, %rsi
	jmp	1b
2:	xor	%esi, %esi
	ret
3:	mov	8(%rsi), %rsi
	ret

/* "case NAME[SUFFIX]:" with RSI = NAME, RAX = SUFFIX (hex) or -1. */
case_head:
	push	%rax
	push	%rsi
	lea	m_case(%rip), %rsi
	call	put_str
	pop	%rsi
	call	put_str
	pop	%rax
	cmp	$-1, %rax
	je	1f
	call	put_hex
1:	lea	m_colon(%rip), %rsi
	jmp	put_str

l2:	vmmcall
	hlt

	.data
m_case:		.asciz	"case "
m_colon:	.asciz	":"
m_comma:	.asciz	","
m_at:		.asciz	"@"
m_none:		.asciz	"none"
m_apm:		.asciz	" [apm]"
m_info_f:	.asciz	"info features:"
m_info_now:	.asciz	" | info vmcb12 now:"
m_k_phys:	.asciz	" phys="
m_k_cr4ok:	.asciz	" cr4_allowed="
m_k_eferok:	.asciz	" efer_allowed="
m_k_code:	.asciz	" code="
m_k_info1:	.asciz	" info1="
m_k_info2:	.asciz	" info2="
m_k_inj:	.asciz	" eventinj="
m_inj:		.asciz	"EVENTINJ"
m_k_changed:	.asciz	" changed="
m_k_rip:	.asciz	" rip="
m_k_rsp:	.asciz	" rsp="
m_k_cr3:	.asciz	" cr3="
m_code:		.asciz	"exit code"
m_info1:	.asciz	"EXITINFO1"
m_info2:	.asciz	"EXITINFO2"
m_vmcb12:	.asciz	"vmcb12 changed"
m_good:		.asciz	"vmrun_valid_baseline"
m_after:	.asciz	"vmrun_valid_after_refusals"
m_cr3:		.asciz	"refused_cr3_bit_"
m_cr4:		.asciz	"refused_cr4_bit_"
m_efer:		.asciz	"refused_efer_bit_"
m_lmsle:	.asciz	"processor_decides_efer_lmsle"
	/* Field names of the quadwords #VMEXIT writes (and their neighbours). */
	.irp	f, es,cs,ss,ds,fs,gs,gdtr,ldtr,idtr,tr,cpl,efer,cr4,cr3,cr0,dr7,dr6,rflags,rip,rsp,rax,cr2,int_ctl,int_state,exit_int_info,event_inj,next_rip,g_pat
n_\f:	.asciz	"\f"
	.endr
	.balign	8
fields:
	.irp	pair, "0x400,es", "0x408,es", "0x410,cs", "0x418,cs", "0x420,ss", "0x428,ss", "0x430,ds", "0x438,ds", "0x440,fs", "0x448,fs", "0x450,gs", "0x458,gs", "0x460,gdtr", "0x468,gdtr", "0x470,ldtr", "0x478,ldtr", "0x480,idtr", "0x488,idtr", "0x490,tr", "0x498,tr", "0x4c8,cpl", "0x4d0,efer", "0x548,cr4", "0x550,cr3", "0x558,cr0", "0x560,dr7", "0x568,dr6", "0x570,rflags", "0x578,rip", "0x5d8,rsp", "0x5f8,rax", "0x640,cr2", "0x668,g_pat", "0x60,int_ctl", "0x68,int_state", "0x88,exit_int_info", "0xa8,event_inj", "0xc8,next_rip"
	FIELDENT \pair
	.endr
	.quad	-1, 0
maxext:		.long	0
ext1_ecx:	.long	0
ext1_edx:	.long	0
ext8_ebx:	.long	0
ext21_eax:	.long	0
l1_ecx:		.long	0
l7_ebx:		.long	0
l7_ecx:		.long	0
	.balign	8
phys:		.quad	0
cr4_ok:		.quad	0
efer_ok:	.quad	0
	.balign	4096
vmcb:	.fill	4096, 1, 0
copy:	.fill	4096, 1, 0
	.fill	4096, 1, 0
l2stack:
	.include "l1lib.S"
