/* QEMU TCG's FXRSTOR/XRSTOR race (docs/architecture.md, "Host state in a
 * VMCB under QEMU TCG"): two vCPUs (`nsvm run --vcpus 2 --pin-vcpus`),
 * each starting here with RDI = its index and RSI = the vCPU count.
 *
 * The exiter executes CPUID EXITS times: every CPUID is an exit to the
 * hypervisor (nsvm or kvm_amd), so its CPU runs VMRUN and #VMEXIT over and
 * over. The restorer executes FXRSTOR in a loop without exits until the
 * exiter is done. Under QEMU's multi-threaded TCG every FXRSTOR (also
 * FRSTOR, FLDENV, XRSTOR) clears IGNNE in the *first* CPU's hflags2 with a
 * plain read-modify-write from the restorer's host thread, which can undo
 * or redo the first CPU's own concurrent change of hflags2: a #VMEXIT
 * clearing nested paging (NPT) and GIF, a VMRUN setting them. So the
 * hypervisor on the first CPU sees its VMCB come back holding its own
 * host state (a second #VMEXIT, NPF, taken in host mode with NPT back on),
 * and nothing on any other CPU does.
 *
 * vCPU 0 is the exiter and vCPU 1 the restorer; xrstor_swap64.S swaps the
 * roles (SWAP = 1), which with --pin-vcpus puts the exiter on CPU 1.
 * The exiter checks a canary register after each exit, prints
 * "xrstor race: N exits, M restores\n" and ends the run with status 0
 * (1 when the canary changed). */
	.ifndef	SWAP
	.set	SWAP, 0
	.endif
	.set	EXITS, 200000
	.set	CANARY, 0x5a5aa5a5c3c33c3c

	.code64
	.globl _start
_start:
	mov	%esi, %r14d			/* vCPU count */
	cmp	$2, %esi
	jb	go				/* one vCPU: nothing to race with */
	xor	$SWAP, %edi
	test	%edi, %edi
	jnz	restorer

exiter:
1:	cmpb	$0, started(%rip)		/* the restorer is in its loop */
	jne	go
	pause
	jmp	1b
go:	movabs	$CANARY, %r13
	mov	$EXITS, %r12d
	xor	%r15d, %r15d			/* canary changes */
3:	xor	%eax, %eax
	cpuid
	movabs	$CANARY, %rax
	cmp	%rax, %r13
	je	4f
	inc	%r15d
	mov	%rax, %r13
4:	dec	%r12d
	jnz	3b
	movb	$1, done(%rip)
	cmp	$2, %r14d
	jb	8f
	mov	$100000000, %ecx		/* bounded wait for its count */
9:	cmpb	$0, parked(%rip)
	jne	8f
	pause
	dec	%ecx
	jnz	9b
8:	lea	msg1(%rip), %rsi
	call	puts
	mov	$EXITS, %eax
	call	putdec
	lea	msg2(%rip), %rsi
	call	puts
	mov	restores(%rip), %rax
	call	putdec
	lea	msg3(%rip), %rsi
	call	puts
	xor	%eax, %eax
	test	%r15d, %r15d
	setnz	%al
	mov	$0x501, %dx
	out	%al, %dx
	hlt

restorer:
	fxsave	area(%rip)
	movb	$1, started(%rip)
	xor	%ecx, %ecx
5:	fxrstor	area(%rip)
	inc	%rcx
	cmpb	$0, done(%rip)
	je	5b
	mov	%rcx, restores(%rip)
	movb	$1, parked(%rip)
park:	cli
	hlt
	jmp	park

/* Prints the NUL-terminated string at RSI on COM1. */
puts:	lodsb
	test	%al, %al
	jz	6f
	mov	$0x3f8, %dx
	out	%al, %dx
	jmp	puts
6:	ret

/* Prints RAX in decimal on COM1. */
putdec:	lea	digits+20(%rip), %rdi
	movb	$0, (%rdi)
	mov	$10, %rcx
7:	xor	%edx, %edx
	div	%rcx
	add	$'0', %dl
	dec	%rdi
	mov	%dl, (%rdi)
	test	%rax, %rax
	jnz	7b
	mov	%rdi, %rsi
	jmp	puts

	.data
msg1:	.asciz	"xrstor race: "
msg2:	.asciz	" exits, "
msg3:	.asciz	" restores\n"
started: .byte	0
done:	.byte	0
parked:	.byte	0
	.balign	8
restores: .quad	0
digits:	.skip	24
	.balign	16
area:	.skip	512
