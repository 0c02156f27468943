/* SPDX-License-Identifier: GPL-2.0 */
/* Instruction classes of the nsvm bench's hardware-cost estimate
 * (docs/bench.md, "Estimated hardware cycles"). Pure logic, no QEMU
 * dependency: the plugin (cost.c) and the host test (classify_test.c) use it. */
#ifndef NSVM_TCG_COST_CLASSIFY_H
#define NSVM_TCG_COST_CLASSIFY_H

#include <stddef.h>
#include <stdint.h>

/* One counter per class. The names are what the plugin writes and what
 * `nsvm bench --compare --cost` weighs (userspace-tool/src/cost.rs). */
enum cost_class {
	CLS_BASE,	/* every other instruction: one cycle */
	CLS_VMRUN,	/* VMRUN by the L0 (host) kernel: one world switch there and back */
	CLS_VMLOAD,
	CLS_VMSAVE,
	CLS_XSAVE,	/* XSAVE, XSAVEOPT, XSAVEC, XSAVES, FXSAVE */
	CLS_XRSTOR,	/* XRSTOR, XRSTORS, FXRSTOR */
	CLS_WRMSR,
	CLS_RDMSR,
	CLS_MOV_CR3,	/* MOV to CR3 */
	CLS_MOV_CR4,	/* MOV to CR4 */
	CLS_INVLPGA,
	CLS_CLGI,
	CLS_STGI,
	CLS_XSETBV,
	/* A privileged instruction of the classes above at a user-half address:
	 * in this bench only the guests (bench64.S, identity-mapped low memory)
	 * execute privileged code there. It exits to L0 (VMRUN, RDMSR...) or is
	 * virtualized (STGI/CLGI with vGIF): its cost is L0's world switch. */
	CLS_GUEST_PRIV,
	CLS_MARKER,	/* the bench's window and run markers: not counted */
	/* Counted at each host VMRUN from the VMCB's TLB_CONTROL (APM vol. 2
	 * 15.16.1, VMCB offset 5Ch), not from opcodes. */
	CLS_TLB_FLUSH_ALL,	/* TLB_CONTROL 1: every ASID */
	CLS_TLB_FLUSH_ASID,	/* TLB_CONTROL 3 or 7: the guest's ASID */
	CLS_VMCB_UNREAD,	/* a host VMRUN whose VMCB could not be read (expect 0) */
	CLS_COUNT
};

extern const char *const cost_class_name[CLS_COUNT];

/* The bench's markers: a 7-byte NOP, 0F 1F 80 + disp32, disp32 = MARKER_MAGIC | op. */
#define MARKER_MAGIC	0x4e535600u	/* "\0VSN" */
#define MARKER_OPEN	0x01	/* measurement window opens; row in R14 */
#define MARKER_CLOSE	0x02	/* measurement window closes */
#define MARKER_RUN	0x10	/* `nsvm bench` starts; its tag in RAX */
#define MARKER_RUN_END	0x11	/* `nsvm bench` ends; its tag in RAX */

/* The class of the instruction in bytes[0..len) (len as decoded by QEMU),
 * executed at a kernel-half address when kernel is nonzero. For a marker,
 * *marker_op is set to its op (else to 0). */
enum cost_class classify(const uint8_t *bytes, size_t len, int kernel, unsigned *marker_op);

#endif
