// SPDX-License-Identifier: GPL-2.0
/* Classify an x86-64 instruction from its bytes for the bench's cost
 * estimate. Opcodes: AMD APM vol. 3 (appendix A, opcode maps) and vol. 2
 * chapter 15 for the SVM instructions (0F 01 D8-DF). */
#include "classify.h"

const char *const cost_class_name[CLS_COUNT] = {
	[CLS_BASE] = "base",
	[CLS_VMRUN] = "vmrun",
	[CLS_VMLOAD] = "vmload",
	[CLS_VMSAVE] = "vmsave",
	[CLS_XSAVE] = "xsave",
	[CLS_XRSTOR] = "xrstor",
	[CLS_WRMSR] = "wrmsr",
	[CLS_RDMSR] = "rdmsr",
	[CLS_MOV_CR3] = "mov_cr3",
	[CLS_MOV_CR4] = "mov_cr4",
	[CLS_INVLPGA] = "invlpga",
	[CLS_CLGI] = "clgi",
	[CLS_STGI] = "stgi",
	[CLS_XSETBV] = "xsetbv",
	[CLS_GUEST_PRIV] = "guest_priv",
	[CLS_MARKER] = "marker",
	[CLS_TLB_FLUSH_ALL] = "tlb_flush_all",
	[CLS_TLB_FLUSH_ASID] = "tlb_flush_asid",
	[CLS_VMCB_UNREAD] = "vmcb_unread",
};

/* Classes only CPL 0 can execute (the XSAVE family is not among them). */
static int privileged(enum cost_class c)
{
	return c != CLS_BASE && c != CLS_XSAVE && c != CLS_XRSTOR && c != CLS_MARKER;
}

static enum cost_class opcode_class(const uint8_t *b, size_t n, unsigned rex, unsigned pfx66,
				    unsigned pfxf3, unsigned pfxf2, unsigned *marker_op)
{
	if (n < 2 || b[0] != 0x0f)
		return CLS_BASE;
	uint8_t op = b[1];
	if (op == 0x30)
		return CLS_WRMSR;
	if (op == 0x32)
		return CLS_RDMSR;
	if (n < 3)
		return CLS_BASE;
	uint8_t modrm = b[2], mod = modrm >> 6, reg = (modrm >> 3) & 7;
	switch (op) {
	case 0x01:
		switch (modrm) {
		case 0xd1: return CLS_XSETBV;
		case 0xd8: return CLS_VMRUN;
		case 0xda: return CLS_VMLOAD;
		case 0xdb: return CLS_VMSAVE;
		case 0xdc: return CLS_STGI;
		case 0xdd: return CLS_CLGI;
		case 0xdf: return CLS_INVLPGA;
		}
		return CLS_BASE;
	case 0x22: {
		/* MOV CRn, reg: ModRM.reg (+ REX.R) is the control register;
		 * the mod field is ignored (always a register operand). */
		unsigned cr = reg | ((rex & 4) << 1);
		if (cr == 3)
			return CLS_MOV_CR3;
		if (cr == 4)
			return CLS_MOV_CR4;
		return CLS_BASE;
	}
	case 0xae:
		/* Group 15, memory forms without a mandatory prefix. */
		if (mod == 3 || pfx66 || pfxf3 || pfxf2)
			return CLS_BASE;
		if (reg == 0 || reg == 4 || reg == 6)	/* FXSAVE, XSAVE, XSAVEOPT */
			return CLS_XSAVE;
		if (reg == 1 || reg == 5)		/* FXRSTOR, XRSTOR */
			return CLS_XRSTOR;
		return CLS_BASE;
	case 0xc7:
		/* Group 9, memory forms: /3 XRSTORS, /4 XSAVEC, /5 XSAVES. */
		if (mod == 3 || pfx66 || pfxf3 || pfxf2)
			return CLS_BASE;
		if (reg == 3)
			return CLS_XRSTOR;
		if (reg == 4 || reg == 5)
			return CLS_XSAVE;
		return CLS_BASE;
	case 0x1f:
		/* NOP Ev: the marker is exactly 0F 1F 80 disp32 with the magic. */
		if (modrm == 0x80 && n == 7 && !rex && !pfx66) {
			uint32_t d = (uint32_t)b[3] | (uint32_t)b[4] << 8 | (uint32_t)b[5] << 16 |
				     (uint32_t)b[6] << 24;
			if ((d & 0xffffff00u) == MARKER_MAGIC && (d & 0xff) != 0) {
				*marker_op = d & 0xff;
				return CLS_MARKER;
			}
		}
		return CLS_BASE;
	}
	return CLS_BASE;
}

enum cost_class classify(const uint8_t *bytes, size_t len, int kernel, unsigned *marker_op)
{
	size_t i = 0;
	unsigned rex = 0, pfx66 = 0, pfxf3 = 0, pfxf2 = 0, prefixes = 0;

	*marker_op = 0;
	/* Legacy prefixes, then at most one REX right before the opcode. */
	for (; i < len; i++) {
		uint8_t p = bytes[i];
		if (p == 0x66)
			pfx66 = 1;
		else if (p == 0xf3)
			pfxf3 = 1;
		else if (p == 0xf2)
			pfxf2 = 1;
		else if (p == 0x67 || p == 0xf0 || p == 0x2e || p == 0x36 || p == 0x3e ||
			 p == 0x26 || p == 0x64 || p == 0x65)
			;
		else
			break;
		prefixes++;
	}
	if (i < len && (bytes[i] & 0xf0) == 0x40)
		rex = bytes[i++] & 0x0f;
	enum cost_class c = opcode_class(bytes + i, len - i, rex, pfx66, pfxf3, pfxf2, marker_op);
	if (c == CLS_MARKER && (prefixes || rex)) {
		*marker_op = 0;
		c = CLS_BASE;
	}
	if (!kernel && privileged(c))
		return CLS_GUEST_PRIV;
	return c;
}
