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
 * For the debugfs dump: bit 0 the timer is queued, bit 1 an event is
 * noted; *expires_ns the timer's expiry (CLOCK_MONOTONIC).
 */
int nsvm_apic_waiter_debug(void *p, u64 *expires_ns)
{
	struct nsvm_apic_waiter *w = p;

	*expires_ns = ktime_to_ns(hrtimer_get_expires(&w->timer));
	return (hrtimer_is_queued(&w->timer) ? 1 : 0) | (atomic_read(&w->events) ? 2 : 0);
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

/*
 * irqfd (KVM_IRQFD without resample, which KVM offers only with the full
 * irqchip): an eventfd whose signal raises the MSI of a GSI's route. One
 * `struct nsvm_irqfds` per VM (src/hw/apic.rs: IrqfdList), freed with it.
 */
#include <linux/eventfd.h>
#include <linux/file.h>
#include <linux/poll.h>
#include <linux/workqueue.h>
#include <linux/mutex.h>

struct nsvm_irqfd {
	struct list_head link;
	struct eventfd_ctx *eventfd;
	wait_queue_entry_t wait;
	poll_table pt;
	struct nsvm_irqfds *owner;
	u32 gsi;
	/* The route's MSI (under owner->lock): valid, address_lo/hi, data. */
	int valid;
	u32 lo, hi, data;
	/* The eventfd was released (EPOLLHUP): never fires again. */
	int dead;
	/*
	 * Full irqchip: a GSI without an MSI route is raised from process
	 * context (nsvm_rs_irqfd_inject, as KVM's irqfd_inject work), with
	 * the resample eventfd (KVM_IRQFD_FLAG_RESAMPLE) or NULL.
	 */
	struct work_struct inject;
	struct eventfd_ctx *resamplefd;
	/* What hooking into the eventfd's wait queue gave (-EBUSY: taken). */
	int queued;
};

struct nsvm_irqfds {
	spinlock_t lock;
	/*
	 * Held (outside `lock`) by every change of `items`, so that the
	 * resample eventfds can be signalled walking `items` under it alone:
	 * never under `lock`, which the eventfd wake-ups take.
	 */
	struct mutex rlock;
	struct list_head items;
	void *vm;
};

void *nsvm_irqfds_new(void *vm)
{
	struct nsvm_irqfds *l = kzalloc(sizeof(*l), GFP_KERNEL_ACCOUNT);

	if (!l)
		return NULL;
	spin_lock_init(&l->lock);
	mutex_init(&l->rlock);
	INIT_LIST_HEAD(&l->items);
	l->vm = vm;
	return l;
}

/* Takes the MSI to raise, if any, and raises it (any context). */
static void nsvm_irqfd_fire(struct nsvm_irqfd *f)
{
	unsigned long flags;
	int valid;
	u32 lo, hi, data;

	spin_lock_irqsave(&f->owner->lock, flags);
	valid = f->valid && !f->dead;
	lo = f->lo;
	hi = f->hi;
	data = f->data;
	spin_unlock_irqrestore(&f->owner->lock, flags);
	if (valid)
		nsvm_rs_irqfd_fire(f->owner->vm, lo, hi, data);
	else if (!f->dead)
		schedule_work(&f->inject);
}

static void nsvm_irqfd_inject(struct work_struct *w)
{
	struct nsvm_irqfd *f = container_of(w, struct nsvm_irqfd, inject);

	nsvm_rs_irqfd_inject(f->owner->vm, f->gsi, f->resamplefd != NULL);
}

/* Wait-queue callback of the eventfd (its wait-queue lock held). */
static int nsvm_irqfd_wakeup(wait_queue_entry_t *wait, unsigned int mode, int sync, void *key)
{
	struct nsvm_irqfd *f = container_of(wait, struct nsvm_irqfd, wait);
	__poll_t flags = key_to_poll(key);
	unsigned long irqf;
	u64 cnt;

	if (flags & EPOLLIN) {
		eventfd_ctx_do_read(f->eventfd, &cnt);
		nsvm_irqfd_fire(f);
	}
	if (flags & EPOLLHUP) {
		spin_lock_irqsave(&f->owner->lock, irqf);
		f->dead = 1;
		spin_unlock_irqrestore(&f->owner->lock, irqf);
	}
	return 0;
}

static void nsvm_irqfd_queue(struct file *file, wait_queue_head_t *wqh, poll_table *pt)
{
	struct nsvm_irqfd *f = container_of(pt, struct nsvm_irqfd, pt);

	/*
	 * Exclusive, as KVM's irqfds: an eventfd another irqfd (of any VM,
	 * nsvm's or KVM's) already drives is -EBUSY.
	 */
	f->queued = add_wait_queue_priority_exclusive(wqh, &f->wait);
}

/* Unhooks and frees an irqfd no list holds any more (process context). */
static void nsvm_irqfd_free(struct nsvm_irqfd *f)
{
	u64 cnt;

	eventfd_ctx_remove_wait_queue(f->eventfd, &f->wait, &cnt);
	cancel_work_sync(&f->inject);
	eventfd_ctx_put(f->eventfd);
	if (f->resamplefd)
		eventfd_ctx_put(f->resamplefd);
	kfree(f);
}

/*
 * KVM_IRQFD assign: -EBADF for a bad fd, -EINVAL for a file that is not
 * an eventfd, then the resample eventfd's errors when `resamplefd` >= 0,
 * -EBUSY for an eventfd already assigned in this VM or driving an irqfd
 * of another VM (as KVM). The route (valid, lo,
 * hi, data) is the GSI's now; a pending signal fires at once.
 */
int nsvm_irqfd_assign(void *p, int fd, u32 gsi, int valid, u32 lo, u32 hi, u32 data, int resamplefd)
{
	struct eventfd_ctx *rctx = NULL;
	struct nsvm_irqfds *l = p;
	struct nsvm_irqfd *f, *o;
	struct eventfd_ctx *ctx;
	struct file *file;
	__poll_t events;
	int ret = 0;

	file = fget(fd);
	if (!file)
		return -EBADF;
	ctx = eventfd_ctx_fileget(file);
	if (IS_ERR(ctx)) {
		fput(file);
		return PTR_ERR(ctx);
	}
	if (resamplefd >= 0) {
		rctx = eventfd_ctx_fdget(resamplefd);
		if (IS_ERR(rctx)) {
			ret = PTR_ERR(rctx);
			rctx = NULL;
			goto put;
		}
	}
	f = kzalloc(sizeof(*f), GFP_KERNEL_ACCOUNT);
	if (!f) {
		ret = -ENOMEM;
		goto put;
	}
	f->eventfd = ctx;
	f->resamplefd = rctx;
	INIT_WORK(&f->inject, nsvm_irqfd_inject);
	f->owner = l;
	f->gsi = gsi;
	f->valid = valid;
	f->lo = lo;
	f->hi = hi;
	f->data = data;
	INIT_LIST_HEAD(&f->link);
	init_waitqueue_func_entry(&f->wait, nsvm_irqfd_wakeup);
	init_poll_funcptr(&f->pt, nsvm_irqfd_queue);
	mutex_lock(&l->rlock);
	spin_lock_irq(&l->lock);
	list_for_each_entry(o, &l->items, link) {
		if (o->eventfd == ctx && !o->dead) {
			spin_unlock_irq(&l->lock);
			mutex_unlock(&l->rlock);
			kfree(f);
			ret = -EBUSY;
			goto put;
		}
	}
	list_add_tail(&f->link, &l->items);
	spin_unlock_irq(&l->lock);
	mutex_unlock(&l->rlock);
	events = vfs_poll(file, &f->pt);
	if (f->queued) {
		ret = f->queued;
		mutex_lock(&l->rlock);
		spin_lock_irq(&l->lock);
		list_del(&f->link);
		spin_unlock_irq(&l->lock);
		mutex_unlock(&l->rlock);
		kfree(f);
		goto put;
	}
	if (events & EPOLLIN) {
		u64 cnt;

		eventfd_ctx_do_read(ctx, &cnt);
		nsvm_irqfd_fire(f);
	}
	fput(file);
	return 0;
put:
	if (rctx)
		eventfd_ctx_put(rctx);
	eventfd_ctx_put(ctx);
	fput(file);
	return ret;
}

/* Live resampling irqfds of `gsi` (any context). */
int nsvm_irqfds_has_resampler(void *p, u32 gsi)
{
	struct nsvm_irqfds *l = p;
	struct nsvm_irqfd *f;
	unsigned long flags;
	int n = 0;

	spin_lock_irqsave(&l->lock, flags);
	list_for_each_entry(f, &l->items, link)
		if (f->resamplefd && f->gsi == gsi && !f->dead)
			n++;
	spin_unlock_irqrestore(&l->lock, flags);
	return n;
}

/*
 * Signals the resample eventfd of every resampling irqfd of `gsi`
 * (process context, no spinlock held): under `rlock` only, so that no
 * eventfd wait-queue lock is taken under `lock`.
 */
void nsvm_irqfds_resample(void *p, u32 gsi)
{
	struct nsvm_irqfds *l = p;
	struct nsvm_irqfd *f;

	mutex_lock(&l->rlock);
	list_for_each_entry(f, &l->items, link)
		if (f->resamplefd && f->gsi == gsi && !READ_ONCE(f->dead))
			eventfd_signal(f->resamplefd);
	mutex_unlock(&l->rlock);
}

/*
 * KVM_IRQFD deassign: -EBADF or -EINVAL for a bad fd (as KVM); the irqfds of
 * that eventfd and GSI go; 0 also when there is none.
 */
int nsvm_irqfd_deassign(void *p, int fd, u32 gsi)
{
	struct nsvm_irqfds *l = p;
	struct nsvm_irqfd *f, *t;
	struct eventfd_ctx *ctx;
	LIST_HEAD(gone);

	ctx = eventfd_ctx_fdget(fd);
	if (IS_ERR(ctx))
		return PTR_ERR(ctx);
	mutex_lock(&l->rlock);
	spin_lock_irq(&l->lock);
	list_for_each_entry_safe(f, t, &l->items, link) {
		if (f->eventfd == ctx && f->gsi == gsi)
			list_move(&f->link, &gone);
	}
	spin_unlock_irq(&l->lock);
	mutex_unlock(&l->rlock);
	list_for_each_entry_safe(f, t, &gone, link)
		nsvm_irqfd_free(f);
	eventfd_ctx_put(ctx);
	return 0;
}

/*
 * New routes: each irqfd takes the MSI of its GSI from `routes` (n
 * quadruples gsi, address_lo, address_hi, data), or none.
 */
void nsvm_irqfds_reroute(void *p, const u32 *routes, u32 n)
{
	struct nsvm_irqfds *l = p;
	struct nsvm_irqfd *f;
	u32 i;

	spin_lock_irq(&l->lock);
	list_for_each_entry(f, &l->items, link) {
		f->valid = 0;
		for (i = 0; i < n; i++) {
			if (routes[4 * i] == f->gsi) {
				f->valid = 1;
				f->lo = routes[4 * i + 1];
				f->hi = routes[4 * i + 2];
				f->data = routes[4 * i + 3];
				break;
			}
		}
	}
	spin_unlock_irq(&l->lock);
}

/* The VM goes away: every irqfd is unhooked and freed, then the list. */
void nsvm_irqfds_free(void *p)
{
	struct nsvm_irqfds *l = p;
	struct nsvm_irqfd *f, *t;
	LIST_HEAD(gone);

	mutex_lock(&l->rlock);
	spin_lock_irq(&l->lock);
	list_splice_init(&l->items, &gone);
	spin_unlock_irq(&l->lock);
	mutex_unlock(&l->rlock);
	list_for_each_entry_safe(f, t, &gone, link)
		nsvm_irqfd_free(f);
	kfree(l);
}
