// SPDX-License-Identifier: GPL-2.0
/*
 * Prints this machine's TSC frequency in kHz, measured against
 * CLOCK_MONOTONIC_RAW (median of five 50 ms windows), rounded to the MHz
 * when within 100 ppm of it. QEMU's TCG gives its guests the host's TSC
 * (plus an offset), so run-qemu.sh tells the test kernel this rate
 * (tsc_early_khz): a kernel told another rate finds its TSC drifting
 * against the HPET and marks it unstable.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <x86intrin.h>

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC_RAW, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

int main(void)
{
	uint64_t khz[5];
	struct timespec d = { 0, 50 * 1000 * 1000 };

	for (int i = 0; i < 5; i++) {
		uint64_t n0 = now_ns(), t0 = __rdtsc();

		nanosleep(&d, NULL);
		uint64_t n1 = now_ns(), t1 = __rdtsc();

		khz[i] = (t1 - t0) * 1000000ull / (n1 - n0);
	}
	qsort(khz, 5, sizeof(khz[0]), cmp);
	uint64_t k = khz[2], mhz = (k + 500) / 1000 * 1000;

	if (k * 10000 > mhz * 9999 && k * 10000 < mhz * 10001)
		k = mhz;
	printf("%llu\n", (unsigned long long)k);
	return 0;
}
