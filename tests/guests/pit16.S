/* Real-mode guest for the in-kernel PIT cases of nsvm-apitest
 * (tests/apitest/src/pit.rs), run on nsvm and on kvm_amd. The VMM puts the
 * case number in BX; the guest programs the 8254 through ports 0x40-0x43
 * and 0x61 (interrupts stay off: it polls), appends 16-bit results to the
 * log (count at 0x5f0, words from 0x600) and ends with OUT to port 0x10.
 * Port 0x61 reaches the kernel only with KVM_PIT_SPEAKER_DUMMY. */
	.code16
	.globl _start
	.set	LOG_N, 0x5f0
	.set	LOG, 0x600
_start:
	cli
	xor	%ax, %ax
	mov	%ax, %ds
	mov	%ax, %ss
	mov	$0x8000, %sp
	movw	$0, LOG_N
	cmp	$1, %bx
	je	c_mode2
	cmp	$2, %bx
	je	c_mode0
	cmp	$3, %bx
	je	c_latch
	cmp	$4, %bx
	je	c_gate2
	cmp	$5, %bx
	je	c_bcd
	cmp	$6, %bx
	je	c_read
	cmp	$7, %bx
	je	c_speaker
done:
	out	%al, $0x10
	hlt
	jmp	done

/* AX -> log. */
log:
	push	%bx
	mov	LOG_N, %bx
	shl	$1, %bx
	mov	%ax, LOG(%bx)
	incw	LOG_N
	pop	%bx
	ret

/* Latches channel 0 and reads its count (lo, hi) into AX. */
rd0:
	mov	$0x00, %al
	out	%al, $0x43
/* Reads channel 0's count (two bytes) into AX. */
rd0_nolatch:
	in	$0x40, %al
	mov	%al, %ah
	in	$0x40, %al
	xchg	%al, %ah
	ret

/* Latches channel 2 and reads its count into AX. */
rd2:
	mov	$0x80, %al
	out	%al, $0x43
	in	$0x42, %al
	mov	%al, %ah
	in	$0x42, %al
	xchg	%al, %ah
	ret

/* Writes AX to channel 0 (lo, hi). */
wr0:
	out	%al, $0x40
	mov	%ah, %al
	out	%al, $0x40
	ret

/* Spins CX times. */
delay:
	push	%cx
1:	loop	1b
	pop	%cx
	ret

/* Read-back of channel 0's status into AX (AH = 0). */
st0:
	mov	$0xe2, %al
	out	%al, $0x43
	in	$0x40, %al
	xor	%ah, %ah
	ret

/* 1: channel 0, mode 2, count 1000: 48 readings (in 1..1000, reloads). */
c_mode2:
	mov	$0x34, %al
	out	%al, $0x43
	mov	$1000, %ax
	call	wr0
	mov	$48, %si
1:	call	rd0
	call	log
	mov	$50, %cx
	call	delay
	dec	%si
	jnz	1b
	jmp	done

/* 2: channel 0, mode 0: count 0xffff read twice, status (OUT low); then
 * count 200: polls the status until OUT is high (iterations logged), the
 * status, the count after the wrap. */
c_mode0:
	mov	$0x30, %al
	out	%al, $0x43
	mov	$0xffff, %ax
	call	wr0
	call	rd0
	call	log
	mov	$200, %cx
	call	delay
	call	rd0
	call	log
	call	st0
	call	log
	mov	$0x30, %al
	out	%al, $0x43
	mov	$200, %ax
	call	wr0
	xor	%si, %si
1:	inc	%si
	jz	2f
	call	st0
	test	$0x80, %al
	jz	1b
2:	mov	%si, %ax
	call	log
	call	st0
	call	log
	call	rd0
	call	log
	jmp	done

/* 3: latch and read-back: status after the control word (null count),
 * a latched count (held while time passes), a second latched count, the status
 * after the count was loaded, a read-back count, then status and count
 * latched together by one read-back command. */
c_latch:
	mov	$0x30, %al
	out	%al, $0x43
	call	st0
	call	log
	mov	$0xffff, %ax
	call	wr0
	mov	$0x00, %al
	out	%al, $0x43
	mov	$2000, %cx
	call	delay
	call	rd0_nolatch
	call	log
	call	rd0
	call	log
	call	st0
	call	log
	mov	$0xd2, %al
	out	%al, $0x43
	call	rd0_nolatch
	call	log
	mov	$0xc2, %al
	out	%al, $0x43
	in	$0x40, %al
	xor	%ah, %ah
	call	log
	call	rd0_nolatch
	call	log
	jmp	done

/* 4: Linux's PIT calibration: channel 2 gate high, speaker off, mode 0,
 * count 1193 (1 ms); port 0x61 before, the polls until OUT2 (bit 5) is
 * high, port 0x61 after, channel 2's count after its wrap; then the gate
 * low again and port 0x61. */
c_gate2:
	in	$0x61, %al
	and	$0xfc, %al
	or	$0x01, %al
	out	%al, $0x61
	mov	$0xb0, %al
	out	%al, $0x43
	mov	$1193, %ax
	out	%al, $0x42
	mov	%ah, %al
	out	%al, $0x42
	in	$0x61, %al
	and	$0x23, %ax
	call	log
	xor	%si, %si
1:	inc	%si
	jz	2f
	in	$0x61, %al
	test	$0x20, %al
	jz	1b
2:	mov	%si, %ax
	call	log
	in	$0x61, %al
	and	$0x23, %ax
	call	log
	call	rd2
	call	log
	in	$0x61, %al
	and	$0xfc, %al
	out	%al, $0x61
	in	$0x61, %al
	and	$0x03, %ax
	call	log
	jmp	done

/* 5: BCD: channel 0, mode 0, BCD count 9999: two readings and the status. */
c_bcd:
	mov	$0x31, %al
	out	%al, $0x43
	mov	$0x9999, %ax
	call	wr0
	call	rd0
	call	log
	mov	$200, %cx
	call	delay
	call	rd0
	call	log
	call	st0
	call	log
	jmp	done

/* 6: no programming: channel 0 as KVM_SET_PIT2 left it, read twice, and
 * its status. */
c_read:
	call	rd0
	call	log
	mov	$200, %cx
	call	delay
	call	rd0
	call	log
	call	st0
	call	log
	jmp	done

/* 7: port 0x40 (in the kernel), then port 0x61 (the VMM's without
 * KVM_PIT_SPEAKER_DUMMY). */
c_speaker:
	in	$0x40, %al
	in	$0x61, %al
	jmp	done
