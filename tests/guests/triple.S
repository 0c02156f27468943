/* Real-mode guest that triple-faults: an empty IDT and INT3. */
	.code16
	.globl _start
_start:
	lidt	idtr
	int3
	hlt
idtr:	.word	0
	.long	0
