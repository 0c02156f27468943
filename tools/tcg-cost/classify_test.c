// SPDX-License-Identifier: GPL-2.0
/* Host test of classify() (run by `make host-test`): every case of
 * classify_cases.S, encoded by the assembler, must get its class. */
#include <stdio.h>
#include "classify.h"

extern const uint8_t cases[], cases_end[];

int main(void)
{
	int failed = 0, n = 0;
	for (const uint8_t *p = cases; p < cases_end; p += 4 + p[3]) {
		unsigned op;
		enum cost_class want = p[0], got = classify(p + 4, p[3], p[1], &op);
		n++;
		if (got != want || op != p[2]) {
			failed++;
			fprintf(stderr, "case %d (", n);
			for (unsigned i = 0; i < p[3]; i++)
				fprintf(stderr, "%s%02x", i ? " " : "", p[4 + i]);
			fprintf(stderr, ", %s half): class %s marker %#x, want %s marker %#x\n",
				p[1] ? "kernel" : "user", cost_class_name[got], op, cost_class_name[want], p[2]);
		}
	}
	printf("tcg-cost classify: %d cases, %d failed\n", n, failed);
	return failed != 0 || n < 50;
}
