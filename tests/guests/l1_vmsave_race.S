/* VMSAVE writes only what it owns (APM 15.5.2): two vCPUs (`nsvm run
 * --vcpus 2`). vCPU 0 (EFER.SVME set) executes VMSAVE to one page ROUNDS
 * times; meanwhile vCPU 1 increments a quadword of the same page that
 * VMSAVE does not own (the save area's RAX, 5F8h) with locked increments,
 * counting them, until vCPU 0 is done. Every increment must survive: a
 * VMSAVE emulated as "read the save area, merge, write it all back" loses
 * those that land between its read and its write. Also checked: VMSAVE
 * stored FS.base, which vCPU 0 set to a known value. */
	.set	ROUNDS, 3000
	.set	MAXV, 2
	.set	RAX_OFF, 0x5f8
	.set	FSBASE_OFF, 0x448

	.code64
	.globl _start
_start:
	mov	%edi, %ebp			/* vCPU index */
	mov	%esi, ncpus(%rip)
	test	%ebp, %ebp
	jz	cpu0
	cmp	$1, %ebp
	jne	park

	/* vCPU 1: increment until vCPU 0 is done, then publish the count. */
	xor	%r12d, %r12d
	lea	page+RAX_OFF(%rip), %rbx
	movb	$1, started(%rip)
1:	lock incq (%rbx)
	inc	%r12
	cmpb	$0, finished(%rip)
	je	1b
	mov	%r12, count1(%rip)
	movb	$1, published(%rip)
park:	cli
	hlt
	jmp	park

cpu0:
	call	l1_init
	/* FS.base: VMSAVE must store it (MSR FS_BASE = C000_0100h). */
	mov	$0xc0000100, %ecx
	mov	$0x5a5a1234, %eax
	mov	$0x77, %edx
	wrmsr
	/* Wait (bounded) for vCPU 1 to run, when there is one. */
	cmpl	$2, ncpus(%rip)
	jb	3f
	mov	$50000000, %ecx
2:	cmpb	$0, started(%rip)
	jne	3f
	pause
	dec	%ecx
	jnz	2b
3:	mov	$ROUNDS, %r12d
	lea	page(%rip), %rax
4:	vmsave	%rax
	dec	%r12d
	jnz	4b
	movb	$1, finished(%rip)
	/* Wait (bounded) for vCPU 1's count. */
	xor	%r13d, %r13d
	cmpl	$2, ncpus(%rip)
	jb	6f
	mov	$50000000, %ecx
5:	cmpb	$0, published(%rip)
	jne	7f
	pause
	dec	%ecx
	jnz	5b
	jmp	6f
7:	mov	count1(%rip), %r13
6:	lea	m_case(%rip), %rsi
	call	put_str
	/* Increments lost: vCPU 1's count minus what the page holds. */
	mov	%r13, %rax
	sub	page+RAX_OFF(%rip), %rax
	lea	m_k_lost(%rip), %rsi
	call	put_kv
	xor	%edx, %edx
	lea	m_lost(%rip), %rsi
	call	expect
	/* vCPU 1 ran concurrently (at least one increment). */
	xor	%eax, %eax
	test	%r13, %r13
	setnz	%al
	lea	m_k_ran(%rip), %rsi
	call	put_kv
	mov	$1, %edx
	lea	m_ran(%rip), %rsi
	call	expect
	mov	page+FSBASE_OFF(%rip), %rax
	lea	m_k_fs(%rip), %rsi
	call	put_kv
	mov	$0x775a5a1234, %rdx
	lea	m_fs(%rip), %rsi
	call	expect
	call	put_nl
	jmp	l1_done

	.data
m_case:		.asciz	"case vmsave_race:"
m_k_lost:	.asciz	" lost="
m_k_ran:	.asciz	" concurrent="
m_k_fs:		.asciz	" fs_base="
m_lost:		.asciz	"increments lost"
m_ran:		.asciz	"vcpu 1 ran"
m_fs:		.asciz	"fs base"
	.balign	8
ncpus:		.long	0
count1:		.quad	0
started:	.byte	0
finished:	.byte	0
published:	.byte	0
	.balign	4096
page:		.fill	4096, 1, 0
	.include "l1lib.S"
