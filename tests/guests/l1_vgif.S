/* vGIF offered to L1 (CPUID 8000_000Ah EDX bit 16, APM 15.33): L1 enables
 * V_GIF_ENABLE with V_GIF set in vmcb12 and does not intercept STGI/CLGI;
 * L2 executes CLGI, exits by VMMCALL (L1 reads V_GIF clear in vmcb12's
 * int_ctl), then STGI and VMMCALL again (V_GIF set). */
	.code64
	.globl _start
_start:
	call	l1_init
	mov	$0x8000000a, %eax
	cpuid
	bt	$16, %edx
	jc	1f
	lea	m_novgif(%rip), %rsi
	call	put_str
	incq	l1_failures(%rip)
	jmp	l1_done
1:	lea	vmcb(%rip), %rdi
	lea	l2(%rip), %rsi
	lea	l2stack(%rip), %rdx
	call	vmcb_init
	movl	$0x02000200, C_INT_CTL(%rdi)	/* V_GIF_ENABLE, V_GIF */
	call	l1_vmrun
	lea	m_clgi(%rip), %rsi
	call	report
	xor	%edx, %edx
	call	expect
	call	put_nl
	addq	$3, S_RIP(%rdi)
	call	l1_vmrun
	lea	m_stgi(%rip), %rsi
	call	report
	mov	$0x200, %edx
	call	expect
	call	put_nl
	jmp	l1_done

/* "case NAME code=.. v_gif=.." with RAX = the V_GIF bit of int_ctl */
report:	push	%rsi
	lea	m_case(%rip), %rsi
	call	put_str
	pop	%rsi
	call	put_str
	mov	C_EXIT_CODE(%rdi), %rax
	lea	m_code(%rip), %rsi
	call	put_kv
	mov	C_INT_CTL(%rdi), %eax
	and	$0x200, %eax
	lea	m_vgif(%rip), %rsi
	call	put_kv
	lea	m_vgif_name(%rip), %rsi
	ret

l2:	clgi
	vmmcall
	stgi
	vmmcall
	hlt

	.data
m_case:		.asciz	"case "
m_clgi:		.asciz	"vgif_l2_clgi:"
m_stgi:		.asciz	"vgif_l2_stgi:"
m_code:		.asciz	" code="
m_vgif:		.asciz	" v_gif="
m_vgif_name:	.asciz	"V_GIF"
m_novgif:	.asciz	"vGIF not offered\n"
	.balign	4096
vmcb:	.fill	4096, 1, 0
	.fill	4096, 1, 0
l2stack:
	.include "l1lib.S"
