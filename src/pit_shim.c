// SPDX-License-Identifier: GPL-2.0
/*
 * The kernel objects of the in-kernel PIT (src/vm/pit.rs): channel 0's
 * hrtimer and the work item that raises IRQ 0 in process context (KVM's
 * kvm-pit kthread work). One `struct nsvm_pit_timer` per VM with a PIT,
 * freed with the VM (src/hw/pit.rs).
 */
#include <linux/hrtimer.h>
#include <linux/slab.h>
#include <linux/workqueue.h>

#include "shim.h"

struct nsvm_pit_timer {
	struct hrtimer timer;
	struct work_struct work;
	void *vm;
	/* Period in ns of a periodic timer, 0 for a single expiry; written
	 * only while the timer is cancelled. */
	u64 period;
};

static enum hrtimer_restart nsvm_pit_timer_fn(struct hrtimer *t)
{
	struct nsvm_pit_timer *p = container_of(t, struct nsvm_pit_timer, timer);
	u64 period = READ_ONCE(p->period);

	nsvm_rs_pit_timer(p->vm);
	schedule_work(&p->work);
	if (!period)
		return HRTIMER_NORESTART;
	hrtimer_add_expires_ns(t, period);
	return HRTIMER_RESTART;
}

static void nsvm_pit_work_fn(struct work_struct *w)
{
	struct nsvm_pit_timer *p = container_of(w, struct nsvm_pit_timer, work);

	nsvm_rs_pit_work(p->vm);
}

/* A new PIT timer whose expiries and work call back with `vm`; NULL without memory. */
void *nsvm_pit_timer_new(void *vm)
{
	struct nsvm_pit_timer *p = kzalloc(sizeof(*p), GFP_KERNEL_ACCOUNT);

	if (!p)
		return NULL;
	hrtimer_setup(&p->timer, nsvm_pit_timer_fn, CLOCK_MONOTONIC, HRTIMER_MODE_ABS);
	INIT_WORK(&p->work, nsvm_pit_work_fn);
	p->vm = vm;
	return p;
}

/* Stops the timer, waits for the work, frees. */
void nsvm_pit_timer_free(void *q)
{
	struct nsvm_pit_timer *p = q;

	hrtimer_cancel(&p->timer);
	cancel_work_sync(&p->work);
	kfree(p);
}

/* Arms the timer at absolute CLOCK_MONOTONIC `first` ns, then every `period` ns (0: once). */
void nsvm_pit_timer_start(void *q, u64 first, u64 period)
{
	struct nsvm_pit_timer *p = q;

	hrtimer_cancel(&p->timer);
	WRITE_ONCE(p->period, period);
	hrtimer_start(&p->timer, ns_to_ktime(first), HRTIMER_MODE_ABS);
}

/* Stops the timer (waits for a running expiry). */
void nsvm_pit_timer_cancel(void *q)
{
	struct nsvm_pit_timer *p = q;

	hrtimer_cancel(&p->timer);
}

/* Queues the work (any context). */
void nsvm_pit_kick(void *q)
{
	struct nsvm_pit_timer *p = q;

	schedule_work(&p->work);
}
