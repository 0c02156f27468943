/* SPDX-License-Identifier: GPL-2.0 */
/* Test table for classify(): each case is the expected class, whether it
 * runs at a kernel-half address, the expected marker op, the length and
 * the bytes of one instruction, encoded by the assembler from its mnemonic
 * (so the test checks the classifier against the assembler, not against
 * hand-written bytes). Class numbers: enum cost_class in classify.h. */
	.set	BASE, 0
	.set	VMRUN, 1
	.set	VMLOAD, 2
	.set	VMSAVE, 3
	.set	XSAVE, 4
	.set	XRSTOR, 5
	.set	WRMSR, 6
	.set	RDMSR, 7
	.set	CR3, 8
	.set	CR4, 9
	.set	INVLPGA, 10
	.set	CLGI, 11
	.set	STGI, 12
	.set	XSETBV, 13
	.set	GUEST, 14
	.set	MARKER, 15

	.macro	T cls, kernel, mop, insn:vararg
	.byte	\cls, \kernel, \mop, 772f - 771f
771:	\insn
772:
	.endm

	.section .rodata
	.globl	cases, cases_end
	.code64
cases:
	/* SVM instructions in L0 (kernel half) and in a guest (user half). */
	T VMRUN, 1, 0, vmrun
	T VMRUN, 1, 0, vmrun %rax
	T GUEST, 0, 0, vmrun
	T VMLOAD, 1, 0, vmload
	T VMSAVE, 1, 0, vmsave
	T GUEST, 0, 0, vmsave
	T STGI, 1, 0, stgi
	T CLGI, 1, 0, clgi
	T GUEST, 0, 0, stgi
	T INVLPGA, 1, 0, invlpga
	T BASE, 1, 0, vmmcall
	T BASE, 0, 0, vmmcall
	T BASE, 1, 0, skinit
	/* MSRs */
	T WRMSR, 1, 0, wrmsr
	T RDMSR, 1, 0, rdmsr
	T GUEST, 0, 0, rdmsr
	T BASE, 1, 0, rdtsc
	T BASE, 1, 0, rdtscp
	T BASE, 1, 0, rdpmc
	/* Control registers: writes to CR3/CR4 only. */
	T CR3, 1, 0, mov %rax, %cr3
	T CR3, 1, 0, mov %r15, %cr3
	T CR4, 1, 0, mov %rdi, %cr4
	T BASE, 1, 0, mov %rax, %cr0
	T BASE, 1, 0, mov %rax, %cr2
	T BASE, 1, 0, mov %rax, %cr8
	T BASE, 1, 0, mov %cr3, %rax
	T BASE, 1, 0, mov %cr4, %rax
	T GUEST, 0, 0, mov %rax, %cr3
	/* The XSAVE family, also allowed at CPL 3 (so not a guest class). */
	T XSAVE, 1, 0, xsave (%rdi)
	T XSAVE, 1, 0, xsave64 (%rdi)
	T XSAVE, 1, 0, xsaveopt64 0x40(%rsi)
	T XSAVE, 1, 0, xsavec64 (%rdi)
	T XSAVE, 1, 0, xsaves64 (%rdi)
	T XSAVE, 1, 0, fxsave64 (%rdi)
	T XSAVE, 0, 0, xsave64 (%rdi)
	T XRSTOR, 1, 0, xrstor64 (%rdi)
	T XRSTOR, 1, 0, xrstor (%r12)
	T XRSTOR, 1, 0, xrstors64 (%rdi)
	T XRSTOR, 1, 0, fxrstor64 (%rdi)
	T XRSTOR, 0, 0, xrstor64 (%rdi)
	T XSETBV, 1, 0, xsetbv
	T BASE, 1, 0, xgetbv
	/* Group 15 / group 9 neighbours that are not state saves. */
	T BASE, 1, 0, clflush (%rdi)
	T BASE, 1, 0, clflushopt (%rdi)
	T BASE, 1, 0, clwb (%rdi)
	T BASE, 1, 0, lfence
	T BASE, 1, 0, mfence
	T BASE, 1, 0, sfence
	T BASE, 1, 0, ldmxcsr (%rdi)
	T BASE, 1, 0, stmxcsr (%rdi)
	T BASE, 1, 0, rdrand %rax
	T BASE, 1, 0, rdseed %rax
	T BASE, 1, 0, cmpxchg16b (%rdi)
	T BASE, 1, 0, rdfsbase %rax
	T BASE, 1, 0, wrgsbase %rax
	/* 0F 01 neighbours of the SVM opcodes. */
	T BASE, 1, 0, invlpg (%rax)
	T BASE, 1, 0, swapgs
	T BASE, 1, 0, lgdt (%rax)
	T BASE, 1, 0, monitorx
	T BASE, 1, 0, clzero
	/* Plain instructions and NOPs. */
	T BASE, 1, 0, cpuid
	T BASE, 0, 0, cpuid
	T BASE, 1, 0, mov %rax, (%rdi)
	T BASE, 1, 0, lock cmpxchg %rcx, (%rdi)
	T BASE, 1, 0, out %al, %dx
	T BASE, 1, 0, hlt
	T BASE, 1, 0, nopl 0x12345601(%rax)
	T BASE, 1, 0, nopl 0x4e535600(%rax)
	T BASE, 1, 0, nopl 0x4e535601(%rcx)
	T BASE, 1, 0, nopw 0x4e535601(%rax)
	T BASE, 1, 0, nopl 0x4e535601(%rax,%rax,1)
	/* The markers (0F 1F 80 + magic | op), from any address. */
	T MARKER, 0, 1, nopl 0x4e535601(%rax)
	T MARKER, 1, 2, nopl 0x4e535602(%rax)
	T MARKER, 0, 0x10, nopl 0x4e535610(%rax)
	T MARKER, 0, 0x11, nopl 0x4e535611(%rax)
cases_end:
	.section .note.GNU-stack, "", @progbits
