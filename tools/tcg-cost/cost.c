// SPDX-License-Identifier: GPL-2.0
/* QEMU TCG plugin for `make bench`: counts the instructions the emulated CPU
 * executes, by class (classify.c), inside the bench's measurement windows.
 *
 * The windows are the guest's own TSC windows: bench64.S executes a marker
 * (a 7-byte NOP, classify.h) right after the RDTSC that starts a row and
 * right before the one that ends it, so a window holds every instruction
 * the CPU executed in between: the guests' (L1, L2), the L0 kernel's (nsvm
 * or kvm_amd) and the VMM's. `nsvm bench` executes a run marker with its
 * tag in RAX when it starts and ends, so that each window is attributed to
 * one run of the tool (and through the tag in its JSON, to one device).
 *
 * At each VMRUN executed at a kernel-half address (L0's), the plugin reads
 * RAX (the VMCB's physical address) and the VMCB through the kernel's
 * direct map (page_offset_base, 0xffff888000000000 with 4-level paging and
 * no KASLR; option direct_map=) to count the TLB flushes requested through
 * TLB_CONTROL (APM vol. 2 15.16.1). The read is checked: the VMCB must have
 * a nonzero ASID and EFER.SVME set in its save area (VMRUN refuses
 * anything else, APM 15.5.1); a VMRUN whose VMCB fails the check counts in
 * vmcb_unread.
 *
 * Output (option out=FILE), one line per run start and per closed window:
 *   run tag=T
 *   window tag=T row=R base=N vmrun=N ... (every class of classify.h)
 *
 * With profile=FILE, every translation block also counts how often it ran
 * inside the windows of each row of each of the first PROF_RUNS runs, and
 * FILE gets at QEMU's exit one line per block, run and row that ran:
 *   tb run=T row=R pc=0x... insns=N execs=M
 * (N instructions per execution; qemu-scripts/bench-profile.py turns them
 * into instructions per iteration by function).
 * Usage: -plugin file=tcg-cost.so,out=FILE[,direct_map=0x...][,profile=FILE] */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <glib.h>
#include <qemu-plugin.h>

#include "classify.h"

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

struct counts {
	uint64_t c[CLS_COUNT];
};

static struct qemu_plugin_scoreboard *board;
static struct qemu_plugin_register *reg_rax, *reg_r14;
static FILE *out;
static uint64_t direct_map = 0xffff888000000000ull;
static GMutex lock;
/* Run and window state (under lock). */
static int run_open, window_open;
static uint64_t run_tag, window_row;
static uint64_t snap[CLS_COUNT];

/* The profile (option profile=): per translated block, executions inside
 * the windows of each row of each run. The state the block callbacks read
 * (prof_slot: run ordinal * PROF_ROWS + row, or -1 outside a window) is
 * written under lock by the markers and read without it: the bench runs
 * one emulated CPU, which executes the markers itself. */
#define PROF_RUNS	8
#define PROF_ROWS	16
struct prof_tb {
	uint64_t pc;
	uint32_t insns;
	uint64_t execs[PROF_RUNS * PROF_ROWS];
};
static FILE *prof_out;
static GHashTable *prof_tbs;	/* (pc, insns) key -> struct prof_tb */
static int prof_slot = -1;
static int prof_runs;
static uint64_t prof_tags[PROF_RUNS];

/* VMCB control-area offsets (APM vol. 2 appendix B, table B-1) and the
 * save-area EFER (table B-2: save area at 400h, EFER at 0D0h). */
#define VMCB_ASID		0x58
#define VMCB_TLB_CONTROL	0x5c
#define VMCB_SAVE_EFER		(0x400 + 0xd0)
#define EFER_SVME		(1ull << 12)

static qemu_plugin_u64 entry(enum cost_class c)
{
	return qemu_plugin_scoreboard_u64_in_struct(board, struct counts, c[c]);
}

static int read_reg(struct qemu_plugin_register *r, uint64_t *v)
{
	GByteArray *buf = g_byte_array_new();
	int n = qemu_plugin_read_register(r, buf);
	int ok = n == 8;
	if (ok)
		memcpy(v, buf->data, 8);
	g_byte_array_free(buf, TRUE);
	return ok;
}

static int read_mem(uint64_t va, void *dst, size_t len)
{
	GByteArray *buf = g_byte_array_new();
	int ok = qemu_plugin_read_memory_vaddr(va, buf, len) && buf->len >= len;
	if (ok)
		memcpy(dst, buf->data, len);
	g_byte_array_free(buf, TRUE);
	return ok;
}

/* A host VMRUN: which TLB flush does its VMCB request? */
static void vmrun_exec(unsigned int vcpu, void *udata)
{
	(void)udata;
	uint64_t pa, efer = 0;
	uint32_t asid = 0;
	uint8_t tlb = 0;
	int ok = read_reg(reg_rax, &pa) && pa < (1ull << 52);
	if (ok) {
		uint64_t va = direct_map + pa;
		ok = read_mem(va + VMCB_ASID, &asid, 4) && read_mem(va + VMCB_TLB_CONTROL, &tlb, 1) &&
		     read_mem(va + VMCB_SAVE_EFER, &efer, 8) && asid != 0 && (efer & EFER_SVME);
	}
	if (!ok)
		qemu_plugin_u64_add(entry(CLS_VMCB_UNREAD), vcpu, 1);
	else if (tlb == 1)
		qemu_plugin_u64_add(entry(CLS_TLB_FLUSH_ALL), vcpu, 1);
	else if (tlb == 3 || tlb == 7)
		qemu_plugin_u64_add(entry(CLS_TLB_FLUSH_ASID), vcpu, 1);
}

static void sum(uint64_t *dst)
{
	for (int c = 0; c < CLS_COUNT; c++)
		dst[c] = qemu_plugin_u64_sum(entry(c));
}

static void marker_exec(unsigned int vcpu, void *udata)
{
	(void)vcpu;
	unsigned op = (unsigned)(uintptr_t)udata;
	uint64_t v = 0, now[CLS_COUNT];

	g_mutex_lock(&lock);
	switch (op) {
	case MARKER_RUN:
		if (read_reg(reg_rax, &v)) {
			run_open = 1;
			window_open = 0;
			run_tag = v;
			prof_slot = -1;
			if (prof_runs < PROF_RUNS)
				prof_tags[prof_runs] = v;
			prof_runs++;
			fprintf(out, "run tag=%" PRIu64 "\n", v);
		}
		break;
	case MARKER_RUN_END:
		run_open = window_open = 0;
		prof_slot = -1;
		break;
	case MARKER_OPEN:
		if (run_open && read_reg(reg_r14, &v)) {
			window_open = 1;
			window_row = v;
			sum(snap);
			if (prof_runs >= 1 && prof_runs <= PROF_RUNS && v < PROF_ROWS)
				prof_slot = (prof_runs - 1) * PROF_ROWS + (int)v;
		}
		break;
	case MARKER_CLOSE:
		if (window_open) {
			window_open = 0;
			prof_slot = -1;
			sum(now);
			fprintf(out, "window tag=%" PRIu64 " row=%" PRIu64, run_tag, window_row);
			for (int c = 0; c < CLS_COUNT; c++)
				if (c != CLS_MARKER)
					fprintf(out, " %s=%" PRIu64, cost_class_name[c], now[c] - snap[c]);
			fputc('\n', out);
			fflush(out);
		}
		break;
	}
	g_mutex_unlock(&lock);
}

static void prof_exec(unsigned int vcpu, void *udata)
{
	(void)vcpu;
	int slot = prof_slot;
	if (slot >= 0)
		((struct prof_tb *)udata)->execs[slot]++;
}

/* The profile's record of a block (one per start address and length, kept
 * across retranslations), under lock. */
static struct prof_tb *prof_tb(uint64_t pc, uint32_t insns)
{
	uint64_t key = pc ^ ((uint64_t)insns << 56);
	g_mutex_lock(&lock);
	struct prof_tb *t = g_hash_table_lookup(prof_tbs, &key);
	if (!t) {
		t = g_new0(struct prof_tb, 1);
		t->pc = pc;
		t->insns = insns;
		uint64_t *k = g_new(uint64_t, 1);
		*k = key;
		g_hash_table_insert(prof_tbs, k, t);
	}
	g_mutex_unlock(&lock);
	return t;
}

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
	(void)id;
	size_t n = qemu_plugin_tb_n_insns(tb);
	if (prof_out)
		qemu_plugin_register_vcpu_tb_exec_cb(tb, prof_exec, QEMU_PLUGIN_CB_NO_REGS,
						     prof_tb(qemu_plugin_tb_vaddr(tb), (uint32_t)n));
	for (size_t i = 0; i < n; i++) {
		struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
		uint8_t b[16];
		size_t len = qemu_plugin_insn_data(insn, b, sizeof(b));
		int kernel = (qemu_plugin_insn_vaddr(insn) >> 63) & 1;
		unsigned op;
		enum cost_class c = classify(b, len, kernel, &op);
		if (c == CLS_MARKER) {
			qemu_plugin_register_vcpu_insn_exec_cb(insn, marker_exec, QEMU_PLUGIN_CB_R_REGS,
							       (void *)(uintptr_t)op);
			continue;
		}
		qemu_plugin_register_vcpu_insn_exec_inline_per_vcpu(insn, QEMU_PLUGIN_INLINE_ADD_U64, entry(c), 1);
		if (c == CLS_VMRUN)
			qemu_plugin_register_vcpu_insn_exec_cb(insn, vmrun_exec, QEMU_PLUGIN_CB_R_REGS, NULL);
	}
}

static void vcpu_init(qemu_plugin_id_t id, unsigned int vcpu)
{
	(void)id;
	(void)vcpu;
	if (reg_rax && reg_r14)
		return;
	GArray *regs = qemu_plugin_get_registers();
	for (guint i = 0; i < regs->len; i++) {
		qemu_plugin_reg_descriptor *d = &g_array_index(regs, qemu_plugin_reg_descriptor, i);
		if (!strcmp(d->name, "rax"))
			reg_rax = d->handle;
		else if (!strcmp(d->name, "r14"))
			reg_r14 = d->handle;
	}
	g_array_free(regs, TRUE);
	if (!reg_rax || !reg_r14) {
		fprintf(stderr, "tcg-cost: the vCPU has no register rax or r14\n");
		exit(1);
	}
}

static void at_exit(qemu_plugin_id_t id, void *p)
{
	(void)id;
	(void)p;
	if (out)
		fclose(out);
	out = NULL;
	if (prof_out) {
		GHashTableIter it;
		gpointer k, v;
		g_hash_table_iter_init(&it, prof_tbs);
		while (g_hash_table_iter_next(&it, &k, &v)) {
			struct prof_tb *t = v;
			for (int i = 0; i < PROF_RUNS * PROF_ROWS; i++)
				if (t->execs[i])
					fprintf(prof_out, "tb run=%" PRIu64 " row=%d pc=0x%" PRIx64 " insns=%u execs=%" PRIu64 "\n",
						prof_tags[i / PROF_ROWS], i % PROF_ROWS, t->pc, t->insns, t->execs[i]);
		}
		fclose(prof_out);
		prof_out = NULL;
	}
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
	const char *path = NULL;
	/* The header this plugin was built with must be the installed QEMU's
	 * (qemu-scripts/plugin-header.sh fetches the source of that version). */
	if (info->version.cur != QEMU_PLUGIN_VERSION) {
		fprintf(stderr, "tcg-cost: built for plugin API %d, this QEMU has %d (min %d): rebuild it with this QEMU's qemu-plugin.h\n",
			QEMU_PLUGIN_VERSION, info->version.cur, info->version.min);
		return -1;
	}
	if (!info->system_emulation || strcmp(info->target_name, "x86_64")) {
		fprintf(stderr, "tcg-cost: x86_64 system emulation only\n");
		return -1;
	}
	for (int i = 0; i < argc; i++) {
		if (!strncmp(argv[i], "out=", 4))
			path = argv[i] + 4;
		else if (!strncmp(argv[i], "direct_map=", 11))
			direct_map = strtoull(argv[i] + 11, NULL, 0);
		else if (!strncmp(argv[i], "profile=", 8)) {
			if (!(prof_out = fopen(argv[i] + 8, "w"))) {
				fprintf(stderr, "tcg-cost: cannot write the profile to %s\n", argv[i] + 8);
				return -1;
			}
			prof_tbs = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, g_free);
		}
		else {
			fprintf(stderr, "tcg-cost: unknown option %s\n", argv[i]);
			return -1;
		}
	}
	if (!path || !(out = fopen(path, "w"))) {
		fprintf(stderr, "tcg-cost: give a writable out=FILE\n");
		return -1;
	}
	board = qemu_plugin_scoreboard_new(sizeof(struct counts));
	qemu_plugin_register_vcpu_init_cb(id, vcpu_init);
	qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
	qemu_plugin_register_atexit_cb(id, at_exit, NULL);
	return 0;
}
