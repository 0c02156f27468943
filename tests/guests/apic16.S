/* Real-mode guest for the in-kernel local APIC cases of nsvm-apitest
 * (tests/apitest/src/apic.rs), run with KVM_CAP_SPLIT_IRQCHIP on nsvm and
 * on kvm_amd. The VMM moves the APIC page to 0x20000 (no memory slot there)
 * so that real-mode code reaches it through ES = 0x2000, and puts the case
 * number in BX. Every interrupt handler appends its vector to the log
 * (count at 0x5f0, bytes from 0x600), then EOIs (MMIO, or the x2APIC MSR
 * when the byte at 0x5f2 is set), except the one of vector 0x61. Results
 * leave through OUT to ports 0x10-0x1f (AX/EAX holds a value where said);
 * the VMM reads the log from guest memory and the APIC with KVM_GET_LAPIC. */
	.code16
	.globl _start
	.set	LOG_N, 0x5f0
	.set	X2, 0x5f2
	.set	LOG, 0x600
	.set	AP_LOG_N, 0x5f4
	.set	AP_CASE, 0x5f5
	.set	AP_READY, 0x5f6
	.set	AP_DONE, 0x5f7
	.set	FLOOD_N, 0x5f8
	.set	AP_LOG, 0x700
_start:
	cli
	/* BX = 0: an AP started by SIPI (vector 1: CS = 0x100, IP = 0). */
	test	%bx, %bx
	jz	ap
	xor	%ax, %ax
	mov	%ax, %ds
	mov	%ax, %ss
	mov	$0x8000, %sp
	movw	$h40, 0x40*4
	movw	$0, 0x40*4+2
	movw	$h50, 0x50*4
	movw	$0, 0x50*4+2
	movw	$h60, 0x60*4
	movw	$0, 0x60*4+2
	movw	$h61, 0x61*4
	movw	$0, 0x61*4+2
	movw	$h02, 0x02*4
	movw	$0, 0x02*4+2
	movw	$h0d, 0x0d*4
	movw	$0, 0x0d*4+2
	movw	$h45, 0x45*4
	movw	$0, 0x45*4+2
	movw	$h41, 0x41*4
	movw	$0, 0x41*4+2
	movw	$h42, 0x42*4
	movw	$0, 0x42*4+2
	movw	$h43, 0x43*4
	movw	$0, 0x43*4+2
	movw	$h44, 0x44*4
	movw	$0, 0x44*4+2
	movw	$h46, 0x46*4
	movw	$0, 0x46*4+2
	movw	$h47, 0x47*4
	movw	$0, 0x47*4+2
	movb	$0, AP_LOG_N
	movb	$0, AP_READY
	movb	$0, AP_DONE
	movw	$0, FLOOD_N
	mov	%bl, AP_CASE
	movb	$0, LOG_N
	movb	$0, X2
	mov	$0x2000, %ax
	mov	%ax, %es
	/* Software-enable the APIC, spurious vector 0xff. */
	movl	$0x1ff, %es:0xf0
	cmp	$1, %bx
	je	self_ipi
	cmp	$2, %bx
	je	one_shot
	cmp	$3, %bx
	je	periodic
	cmp	$4, %bx
	je	tsc_deadline
	cmp	$5, %bx
	je	x2apic
	cmp	$6, %bx
	je	nmi_ipi
	cmp	$7, %bx
	je	get_set
	cmp	$8, %bx
	je	no_eoi
	cmp	$9, %bx
	je	init_sipi
	cmp	$10, %bx
	je	msi
	cmp	$11, %bx
	je	ipi_modes
	cmp	$12, %bx
	je	hlt_cli
	cmp	$13, %bx
	je	injected
	out	%al, $0x1f
	jmp	.

/* 1: two self-IPIs held by TPR 0x50, then taken highest first when TPR
 * drops; each EOI lets the next one in. */
self_ipi:
	movl	$0x50, %es:0x80
	/* Accesses KVM ignores: a 2-byte and an unaligned write to TPR. */
	movw	$0x20, %es:0x80
	movl	$0x30, %es:0x84
	movl	$0x44040, %es:0x300	/* self, assert, fixed, vector 0x40 */
	movl	$0x44050, %es:0x300	/* vector 0x50 */
	sti
	nop
	nop
	cli
	movw	%es:0x32, %ax		/* a 2-byte read: LVR bits 31:16 */
	out	%al, $0x10		/* held: IRR 0x40, 0x50; log empty */
	sti
	movl	$0, %es:0x80
	nop
	nop
	cli
	mov	%es:0xa0, %eax		/* PPR after both EOIs */
	out	%al, $0x11
	jmp	.

/* 2: one-shot timer of 1 ms wakes HLT. */
one_shot:
	movl	$0xb, %es:0x3e0		/* divide by 1 */
	movl	$0x60, %es:0x320	/* one-shot, vector 0x60 */
	movl	$1000000, %es:0x380
	sti
1:	hlt
	cmpb	$0, LOG_N
	je	1b
	cli
	mov	%es:0x390, %eax		/* TMCCT: 0 once expired */
	out	%al, $0x12
	jmp	.

/* 3: periodic timer of 1 ms, at least five interrupts, then stopped. */
periodic:
	movl	$0xb, %es:0x3e0
	movl	$0x20060, %es:0x320	/* periodic, vector 0x60 */
	movl	$1000000, %es:0x380
1:	sti
	hlt
	cli
	cmpb	$5, LOG_N
	jb	1b
	movl	$0, %es:0x380		/* stop */
	out	%al, $0x13
	jmp	.

/* 4: TSC-deadline timer 2,000,000 cycles ahead. */
tsc_deadline:
	movl	$0x40060, %es:0x320	/* TSC-deadline, vector 0x60 */
	rdtsc
	add	$2000000, %eax
	adc	$0, %edx
	mov	$0x6e0, %ecx
	wrmsr
	sti
1:	hlt
	cmpb	$0, LOG_N
	je	1b
	cli
	mov	$0x6e0, %ecx
	rdmsr				/* 0 once fired */
	out	%al, $0x14
	jmp	.

/* 5: x2APIC: enable, read the ID, self-IPI, #GP reading EOI, the xAPIC
 * page reads all ones. */
x2apic:
	mov	$0x1b, %ecx
	rdmsr
	or	$0xc00, %eax
	wrmsr
	movb	$1, X2
	mov	$0x80f, %ecx		/* SPIV */
	mov	$0x1ff, %eax
	xor	%edx, %edx
	wrmsr
	mov	$0x802, %ecx		/* ID */
	rdmsr
	out	%al, $0x15
	mov	$0x83f, %ecx		/* SELF_IPI */
	mov	$0x40, %eax
	xor	%edx, %edx
	wrmsr
	sti
	nop
	cli
	mov	$0x80b, %ecx		/* EOI is write-only: #GP */
	rdmsr
	mov	%es:0x20, %eax		/* the page in x2APIC mode */
	out	%al, $0x16
	jmp	.

/* 6: NMI to self through the ICR. */
nmi_ipi:
	movl	$0x44400, %es:0x300	/* self, assert, NMI */
	nop
	nop
	out	%al, $0x17
	jmp	.

/* 7: a long one-shot timer; the VMM reads and rewrites the APIC
 * (KVM_GET/SET_LAPIC) while it counts, then HLT waits for it. */
get_set:
	movl	$0xa, %es:0x3e0		/* divide by 128 */
	movl	$0x60, %es:0x320
	movl	$0xffffffff, %es:0x380
	out	%al, $0x18
	sti
1:	hlt
	cmpb	$0, LOG_N
	je	1b
	cli
	out	%al, $0x19
	jmp	.

/* 8: a 1 ns periodic timer whose handler never EOIs: the vector stays in
 * service, so no second one is delivered while the guest spins. */
no_eoi:
	movl	$0xb, %es:0x3e0
	movl	$0x20061, %es:0x320	/* periodic, vector 0x61 */
	movl	$1, %es:0x380
	sti
	/* Long enough for the 200 us minimum period to pass many times even
	 * when TCG runs this loop at its fastest (a few ms for 2M rounds). */
	mov	$20000000, %ecx
1:	nop
	dec	%ecx
	jnz	1b
	cli
	movl	$0, %es:0x380
	out	%al, $0x1a
	jmp	.

/* 9: INIT then SIPI (vector 1) to all others; the AP sends vector 0x45
 * back to APIC ID 0. */
init_sipi:
	sti
	movl	$0, %es:0x310
	movl	$0xc4500, %es:0x300	/* all but self, assert, INIT */
	movl	$0xc4601, %es:0x300	/* all but self, SIPI, vector 1 */
1:	hlt
	cmpb	$0, LOG_N
	je	1b
	cli
	out	%al, $0x1b
	jmp	.

/* 10: MSIs from the VMM (KVM_SIGNAL_MSI): two, the second waking HLT. */
msi:
	out	%al, $0x1c
	sti
1:	hlt
	cmpb	$2, LOG_N
	jb	1b
	cli
	out	%al, $0x1e
	jmp	.

/* 11: IPIs between two vCPUs in several modes; the AP (started by
 * INIT/SIPI) has LDR bit 1 in the flat model, the BSP bit 0. */
ipi_modes:
	movl	$0x01000000, %es:0xd0	/* LDR: logical ID bit 0 */
	sti
	movl	$0, %es:0x310
	movl	$0xc4500, %es:0x300	/* INIT to all but self */
	movl	$0xc4601, %es:0x300	/* SIPI, vector 1 */
1:	pause
	cmpb	$0, AP_READY
	je	1b
	movl	$0x01000000, %es:0x310
	movl	$0x4041, %es:0x300	/* physical 1, fixed 0x41 */
	movl	$0x02000000, %es:0x310
	movl	$0x4842, %es:0x300	/* logical flat 0x02 (the AP), 0x42 */
	movl	$0x84043, %es:0x300	/* all including self, 0x43 */
	movl	$0x01000000, %es:0x310
	movl	$0x4400, %es:0x300	/* physical 1, NMI */
	movl	$0x03000000, %es:0x310
	movl	$0x4944, %es:0x300	/* logical 0x03, lowest priority, 0x44 */
	/* Flood: 5000 fixed IPIs 0x47 to the AP as fast as possible. */
	movl	$0x01000000, %es:0x310
	mov	$5000, %ecx
2:	movl	$0x4047, %es:0x300
	dec	%ecx
	jnz	2b
	movl	$0x4046, %es:0x300	/* 0x46: the AP stops */
	mov	$100000, %ecx
3:	dec	%ecx
	jnz	3b
	cli
	out	%al, $0x1b
	jmp	.

/* 12: HLT with IF = 0: only an NMI (or a signal, to userspace) ends it. */
hlt_cli:
	hlt
	out	%al, $0x10
	jmp	.

/* 13: LVT0 masked, then HLT with IF = 1 until an interrupt is logged: at
 * the first OUT the VMM restores an interrupt in delivery (vector 0x40 in
 * ISR, KVM_SET_VCPU_EVENTS interrupt.injected), which must be delivered. */
injected:
	movl	$0x10700, %es:0x350	/* LVT0: ExtINT, masked */
	out	%al, $0x10
	/* (An injected event is delivered at the entry, before the CLI:
	 * EVENTINJ does not look at RFLAGS.IF, APM 15.20.) */
1:	cli
	cmpb	$0, LOG_N
	jne	2f
	sti
	hlt				/* in STI's shadow: no wakeup lost */
	jmp	1b
2:	mov	%es:0xa0, %eax		/* PPR: 0 after the handler's EOI */
	out	%al, $0x11
	jmp	.

/* The AP of case 11. */
ap_modes:
	movl	$0x02000000, %es:0xd0	/* LDR: logical ID bit 1 */
	movb	$1, AP_READY
	sti
1:	hlt
	cmpb	$0, AP_DONE
	je	1b
	cli
	out	%al, $0x1d
	jmp	.

/* The AP (its APIC also at 0x20000): enable, IPI 0x45 to APIC ID 0. */
ap:
	xor	%ax, %ax
	mov	%ax, %ds
	mov	%ax, %ss
	mov	$0x7000, %sp
	mov	$0x2000, %ax
	mov	%ax, %es
	movl	$0x1ff, %es:0xf0
	cmpb	$11, AP_CASE
	je	ap_modes
	movl	$0, %es:0x310
	movl	$0x4045, %es:0x300	/* physical, assert, fixed, vector 0x45 */
	out	%al, $0x1d
	jmp	.

/* log(AL): append to this CPU's log (APIC ID 0: LOG, else AP_LOG). */
log:
	push	%bx
	cmpb	$0, X2			/* x2APIC: only the BSP runs */
	jne	2f
	movb	%es:0x23, %bl		/* APIC ID (MOV: nsvm decodes MOVs only) */
	test	%bl, %bl
	jnz	1f
2:
	movzbw	LOG_N, %bx
	and	$63, %bx
	mov	%al, LOG(%bx)
	incb	LOG_N
	pop	%bx
	ret
1:	movzbw	AP_LOG_N, %bx
	and	$63, %bx
	mov	%al, AP_LOG(%bx)
	incb	AP_LOG_N
	pop	%bx
	ret

eoi:
	cmpb	$0, X2
	jne	1f
	movl	$0, %es:0xb0
	ret
1:	push	%eax
	push	%ecx
	push	%edx
	mov	$0x80b, %ecx
	xor	%eax, %eax
	xor	%edx, %edx
	wrmsr
	pop	%edx
	pop	%ecx
	pop	%eax
	ret

h40:	push	%ax
	mov	$0x40, %al
	call	log
	call	eoi
	pop	%ax
	iret
h50:	push	%ax
	mov	$0x50, %al
	call	log
	call	eoi
	pop	%ax
	iret
h60:	push	%ax
	mov	$0x60, %al
	call	log
	call	eoi
	pop	%ax
	iret
h45:	push	%ax
	mov	$0x45, %al
	call	log
	call	eoi
	pop	%ax
	iret
h41:	push	%ax
	mov	$0x41, %al
	jmp	hcommon
h42:	push	%ax
	mov	$0x42, %al
	jmp	hcommon
h43:	push	%ax
	mov	$0x43, %al
	jmp	hcommon
h44:	push	%ax
	mov	$0x44, %al
	jmp	hcommon
hcommon:
	call	log
	call	eoi
	pop	%ax
	iret
h46:	movb	$1, AP_DONE
	call	eoi
	iret
h47:	incw	FLOOD_N
	call	eoi
	iret
h61:	push	%ax
	mov	$0x61, %al
	call	log
	pop	%ax
	iret
h02:	push	%ax
	mov	$0x02, %al
	call	log
	pop	%ax
	iret
/* #GP in real mode (no error code): log and skip the 2-byte RDMSR. */
h0d:	push	%ax
	push	%bp
	mov	%sp, %bp
	mov	$0x0d, %al
	call	log
	addw	$2, 4(%bp)
	pop	%bp
	pop	%ax
	iret
