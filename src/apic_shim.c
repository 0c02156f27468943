// SPDX-License-Identifier: GPL-2.0
/*
 * The kernel objects an in-kernel local APIC needs and the kernel crate
 * has no abstraction for: a wait queue a halted vCPU sleeps on and the
 * hrtimer of its APIC timer. One `struct nsvm_apic_waiter` per vCPU id of
 * a VM, created with its first vCPU and freed with the VM (src/hw/apic.rs).
 */
#include <linux/hrtimer.h>
#include <linux/slab.h>
#include <linux/wait.h>
#include <linux/atomic.h>

#include "shim.h"

struct nsvm_apic_waiter {
	wait_queue_head_t wq;
	struct hrtimer timer;
	void *ctx;
	int id;
	atomic_t events;
};

static enum hrtimer_restart nsvm_apic_timer_fn(struct hrtimer *t)
{
	struct nsvm_apic_waiter *w = container_of(t, struct nsvm_apic_waiter, timer);

	nsvm_rs_apic_timer(w->ctx, w->id);
	return HRTIMER_NORESTART;
}

/* A new waiter whose timer calls back with `ctx` and `id`; NULL without memory. */
void *nsvm_apic_waiter_new(void *ctx, int id)
{
	struct nsvm_apic_waiter *w = kzalloc(sizeof(*w), GFP_KERNEL_ACCOUNT);

	if (!w)
		return NULL;
	init_waitqueue_head(&w->wq);
	hrtimer_setup(&w->timer, nsvm_apic_timer_fn, CLOCK_MONOTONIC, HRTIMER_MODE_ABS);
	w->ctx = ctx;
	w->id = id;
	atomic_set(&w->events, 0);
	return w;
}

/* Stops the timer (waiting for a running callback) and frees the waiter. */
void nsvm_apic_waiter_free(void *p)
{
	struct nsvm_apic_waiter *w = p;

	hrtimer_cancel(&w->timer);
	kfree(w);
}

/* Arms the timer at absolute CLOCK_MONOTONIC time `ns`. */
void nsvm_apic_timer_start(void *p, u64 ns)
{
	struct nsvm_apic_waiter *w = p;

	hrtimer_start(&w->timer, ns_to_ktime(ns), HRTIMER_MODE_ABS);
}

/* Stops the timer (waits for a running callback). */
void nsvm_apic_timer_cancel(void *p)
{
	struct nsvm_apic_waiter *w = p;

	hrtimer_cancel(&w->timer);
}

/* Notes an event and wakes a vCPU sleeping in nsvm_apic_wait (any context). */
void nsvm_apic_wake(void *p)
{
	struct nsvm_apic_waiter *w = p;

	atomic_set(&w->events, 1);
	wake_up_interruptible(&w->wq);
}

/*
 * Sleeps until an event was noted since the last return (consuming it) or
 * a signal arrives: 0, or -ERESTARTSYS for a signal.
 */
int nsvm_apic_wait(void *p)
{
	struct nsvm_apic_waiter *w = p;

	return wait_event_interruptible(w->wq, atomic_xchg(&w->events, 0) != 0);
}
