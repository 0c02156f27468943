/* Real-mode guest that spins forever (for nsvm stats --pid). */
	.code16
	.globl _start
_start:
1:	jmp	1b
