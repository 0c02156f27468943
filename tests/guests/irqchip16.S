/* Real-mode guest for the full in-kernel irqchip cases of nsvm-apitest
 * (tests/apitest/src/irqchip.rs), run after KVM_CREATE_IRQCHIP on nsvm and
 * on kvm_amd. The VMM puts the local APIC at 0x20000 (ES = 0x2000), the
 * I/O APIC is reached through FS (its base set to 0xfec00000 by the VMM)
 * and the case number is in BX. Handlers of vectors 0x20-0x2f (PICs) and
 * 0x50-0x57 (I/O APIC) append the vector to the log (count at 0x5f0,
 * bytes from 0x600) and, while the EOI budget at 0x5f3 is non-zero
 * (decremented), EOI: to the PICs (mode byte 0x5f1 = 0; slave first for
 * 0x28-0x2f) or to the local APIC (mode 1). Steps end with OUT to ports
 * 0x10-0x1f (AL/EAX holds a value where said); the VMM acts between
 * steps (raises lines, signals irqfds, reads and sets the chips). */
	.code16
	.globl _start
	.set	LOG_N, 0x5f0
	.set	MODE, 0x5f1
	.set	BUDGET, 0x5f3
	.set	LOG, 0x600
_start:
	cli
	xor	%ax, %ax
	mov	%ax, %ds
	mov	%ax, %ss
	mov	$0x8000, %sp
	mov	$0x2000, %ax
	mov	%ax, %es
	/* IVT: 0x20-0x2f and 0x50-0x57 to their 8-byte stubs. */
	mov	$0x20*4, %di
	mov	$stubs_pic, %ax
	mov	$16, %cx
1:	mov	%ax, (%di)
	movw	$0, 2(%di)
	add	$8, %ax
	add	$4, %di
	loop	1b
	mov	$0x50*4, %di
	mov	$stubs_io, %ax
	mov	$8, %cx
2:	mov	%ax, (%di)
	movw	$0, 2(%di)
	add	$8, %ax
	add	$4, %di
	loop	2b
	movb	$0, LOG_N
	movb	$0, MODE
	movb	$0xff, BUDGET
	cmp	$1, %bx
	je	pic
	cmp	$2, %bx
	je	ioapic
	out	%al, $0x1f
	jmp	.

/* Interrupts window: IF set for a while. */
spin:
	push	%cx
	mov	$20000, %cx
	sti
1:	nop
	loop	1b
	cli
	pop	%cx
	ret

/* 1: the PICs through their ports, lines raised by KVM_IRQ_LINE. */
pic:
	mov	$0x11, %al		/* ICW1: edge, cascade, ICW4 */
	out	%al, $0x20
	mov	$0x20, %al		/* ICW2: vectors 0x20-0x27 */
	out	%al, $0x21
	mov	$0x04, %al		/* ICW3: slave on IRQ 2 */
	out	%al, $0x21
	mov	$0x01, %al		/* ICW4: 8086, normal EOI */
	out	%al, $0x21
	mov	$0x11, %al
	out	%al, $0xa0
	mov	$0x28, %al
	out	%al, $0xa1
	mov	$0x02, %al
	out	%al, $0xa1
	mov	$0x01, %al
	out	%al, $0xa1
	xor	%al, %al		/* OCW1: all unmasked */
	out	%al, $0x21
	out	%al, $0xa1
	out	%al, $0x10		/* VMM pulses IRQ 3, 1 and 12 */
	call	spin			/* 0x21, 0x2c, 0x23 by priority */
	mov	$0x10, %al		/* mask IRQ 4 */
	out	%al, $0x21
	out	%al, $0x11		/* VMM pulses IRQ 4: masked */
	call	spin
	mov	$0x0a, %al		/* OCW3: read IRR */
	out	%al, $0x20
	in	$0x20, %al
	out	%al, $0x12		/* IRR 0x10 */
	xor	%al, %al		/* unmask: 0x24 */
	out	%al, $0x21
	call	spin
	mov	$0x20, %al		/* ELCR: IRQ 5 level-triggered */
	mov	$0x4d0, %dx
	out	%al, %dx
	movb	$0, BUDGET		/* no EOI by the handler */
	in	%dx, %al
	out	%al, $0x13		/* ELCR 0x20; VMM raises IRQ 5 (held) */
	call	spin			/* 0x25, left in service */
	call	spin
	mov	$0x20, %al		/* EOI: still high, 0x25 again */
	out	%al, $0x20
	call	spin
	out	%al, $0x14		/* VMM lowers IRQ 5 */
	mov	$0x20, %al
	out	%al, $0x20
	call	spin			/* nothing */
	mov	$0x0a, %al
	out	%al, $0x20
	in	$0x20, %al
	out	%al, $0x15		/* IRR 0; VMM: KVM_GET/SET_IRQCHIP */
	in	$0x21, %al
	out	%al, $0x16		/* the IMR the VMM set */
	jmp	.

/* 2: the I/O APIC through MMIO (FS), with the PICs masked. */
ioapic:
	mov	$0xff, %al
	out	%al, $0x21
	out	%al, $0xa1
	movl	$0x1ff, %es:0xf0	/* APIC software-enabled */
	movb	$1, MODE
	movl	$1, %fs:0		/* version register */
	mov	%fs:0x10, %eax
	out	%eax, $0x10
	movl	$0x22, %fs:0		/* pin 9: level, vector 0x51, APIC 0 */
	movl	$0x8051, %fs:0x10
	movl	$0x23, %fs:0
	movl	$0, %fs:0x10
	movl	$0x24, %fs:0		/* pin 10: edge, vector 0x52, APIC 0 */
	movl	$0x52, %fs:0x10
	movl	$0x25, %fs:0
	movl	$0, %fs:0x10
	movl	$0x26, %fs:0		/* pin 11: edge, vector 0x53, APIC 1 */
	movl	$0x53, %fs:0x10
	movl	$0x27, %fs:0
	movl	$0x01000000, %fs:0x10
	out	%al, $0x11		/* VMM raises 10, 11 (pulses), 9 (held) */
	movb	$2, BUDGET
	call	spin			/* 0x52, 0x51, 0x51 (not EOIed) */
	out	%al, $0x12		/* VMM: remote IRR of pin 9; lowers it */
	movl	$0, %es:0xb0		/* EOI: nothing more */
	call	spin
	out	%al, $0x13		/* VMM: resampling irqfd on GSI 9 */
	movb	$0xff, BUDGET
	call	spin			/* 0x51 once */
	out	%al, $0x14		/* VMM: resamplefd; irqfd on GSI 10 */
	call	spin			/* 0x52 */
	out	%al, $0x15		/* VMM: KVM_SET_IRQCHIP pin 10 -> 0x54 */
	call	spin			/* 0x54 */
	movl	$0x24, %fs:0
	mov	%fs:0x10, %eax
	out	%eax, $0x16		/* pin 10's low word */
	jmp	.

hcommon:
	push	%bx
	movzbw	LOG_N, %bx
	cmp	$64, %bx
	jae	1f
	mov	%al, LOG(%bx)
	incb	LOG_N
1:	cmpb	$0, BUDGET
	je	3f
	decb	BUDGET
	cmpb	$0, MODE
	jne	2f
	cmp	$0x28, %al
	mov	$0x20, %al
	jb	4f
	out	%al, $0xa0
4:	out	%al, $0x20
	jmp	3f
2:	movl	$0, %es:0xb0
3:	pop	%bx
	pop	%ax
	iret

	.balign	8
stubs_pic:
	.irp	v, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e, 0x2f
	.balign	8
	push	%ax
	mov	$\v, %al
	jmp	hcommon
	.endr
	.balign	8
stubs_io:
	.irp	v, 0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57
	.balign	8
	push	%ax
	mov	$\v, %al
	jmp	hcommon
	.endr
