/* Real-mode guest: LODS from MMIO and MOVS between two MMIO addresses,
 * for nsvm-apitest string_mmio_kvm (run on /dev/nsvm and /dev/kvm, every
 * exit and the registers at it compared). MMIO is at segments 0x2000 and
 * 0x3000 (linear 0x20000 and 0x30000: no RAM there); the test answers
 * each read. Each scenario ends with OUT to port 0x11, 0x12, ... (AL as
 * the scenario left it), then HLT. Also: MOVS MMIO -> RAM -> MMIO, STOS,
 * a MOV store (RIP at its exit), a segment override, REP with CX = 0,
 * DF = 1, 16-bit wrap and 32-bit addresses (67), CX vs ECX counts. */
	.code16
	.globl _start
	.set	MMIO_A, 0x2000
	.set	MMIO_B, 0x3000
_start:
	cld
	mov	$MMIO_A, %ax
	mov	%ax, %ds
	mov	$MMIO_B, %ax
	mov	%ax, %es
	/* 1: LODSB. */
	mov	$0x10, %si
	lodsb
	out	%al, $0x11
	/* 2: LODSW backwards. */
	std
	mov	$0x20, %si
	lodsw
	cld
	out	%al, $0x12
	/* 3: LODSD (66). */
	mov	$0x30, %si
	lodsl
	out	%al, $0x13
	/* 4: REP LODSB, 3 elements: CX counts, ECX's upper half stays. */
	mov	$0x50003, %ecx
	mov	$0x40, %si
	rep lodsb
	out	%al, $0x14
	/* 5: REP LODSW backwards, 2 elements. */
	std
	mov	$2, %cx
	mov	$0x52, %si
	rep lodsw
	cld
	out	%al, $0x15
	/* 6: REP LODSB with CX = 0: nothing read, nothing moves. */
	xor	%cx, %cx
	mov	$0x60, %si
	mov	$0x77, %al
	rep lodsb
	out	%al, $0x16
	/* 7: 16-bit addresses: SI wraps, ESI's upper half stays. */
	mov	$0x1234ffff, %esi
	lodsb
	out	%al, $0x17
	/* 8: 32-bit addresses (67): ESI carries into bit 16. */
	mov	$0xfffe, %esi
	addr32 lodsb
	addr32 lodsb
	out	%al, $0x18
	/* 9: MOVSB from MMIO to MMIO: a read, then a write of its data. */
	mov	$0x70, %si
	mov	$0x80, %di
	movsb
	out	%al, $0x19
	/* 10: REP MOVSW, MMIO to MMIO, 2 elements. */
	mov	$2, %cx
	mov	$0x90, %si
	mov	$0xa0, %di
	rep movsw
	out	%al, $0x1a
	/* 11: REP MOVSD (66) backwards, MMIO to MMIO. */
	std
	mov	$2, %cx
	mov	$0xb4, %si
	mov	$0xc4, %di
	rep movsl
	cld
	out	%al, $0x1b
	/* 12: 32-bit addresses and count (67 REP MOVSB) across 0xffff. */
	mov	$2, %ecx
	mov	$0xfffe, %esi
	mov	$0xfffe, %edi
	addr32 rep movsb
	out	%al, $0x1c
	/* 13: REP MOVSB from MMIO to RAM (ES = 0: 0:5000). */
	xor	%ax, %ax
	mov	%ax, %es
	mov	$2, %cx
	mov	$0xd0, %si
	mov	$0x5000, %di
	rep movsb
	out	%al, $0x1d
	/* 14: MOVSW from RAM (0:5000, what 13 stored) to MMIO. */
	xor	%ax, %ax
	mov	%ax, %ds
	mov	$MMIO_B, %ax
	mov	%ax, %es
	mov	$0x5000, %si
	mov	$0xe0, %di
	movsw
	out	%al, $0x1e
	/* 15: STOSW to MMIO, then a MOV store to MMIO. */
	mov	$0x1122, %ax
	mov	$0xf0, %di
	stosw
	movb	$0x33, %es:0x100
	out	%al, $0x1f
	/* 16: LODSB with an ES override (ES:SI = 3000:0110). */
	mov	$0x110, %si
	es lodsb
	out	%al, $0x20
	hlt
