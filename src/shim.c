// SPDX-License-Identifier: GPL-2.0
/*
 * C shims for what the kernel's Rust crate does not wrap. One purpose per
 * function; the Rust side declares them in src/hw.rs.
 */
#include <linux/anon_inodes.h>
#include <linux/cpu.h>
#include <linux/debugfs.h>
#include <linux/entry-virt.h>
#include <linux/eventfd.h>
#include <linux/file.h>
#include <linux/cpuhotplug.h>
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/mmu_notifier.h>
#include <linux/slab.h>
#include <linux/module.h>
#include <linux/timekeeping.h>
#include <linux/preempt.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <asm/debugreg.h>
#include <asm/fpu/api.h>
#include <asm/fpu/xcr.h>
#include <asm/msr.h>
#include <asm/tsc.h>

#include "shim.h"

#ifndef CONFIG_PREEMPT_NOTIFIERS
#error "nsvm needs CONFIG_PREEMPT_NOTIFIERS (selected by CONFIG_KVM)"
#endif

/*
 * /dev/nsvm. Our own file_operations (not the Rust miscdevice vtable) so that
 * .owner pins the module while a file is open: rmmod then fails with EBUSY
 * instead of unloading code that open files still point to.
 */
static const struct file_operations nsvm_sys_fops = {
	.owner = THIS_MODULE,
	.open = nonseekable_open,
	.unlocked_ioctl = nsvm_rs_sys_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = noop_llseek,
};

static struct miscdevice nsvm_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "nsvm",
	.fops = &nsvm_sys_fops,
};

/* Register /dev/nsvm with the given mode (0 means the default, 0600). */
int nsvm_misc_register(umode_t mode)
{
	nsvm_misc.mode = mode;
	return misc_register(&nsvm_misc);
}

/* Remove /dev/nsvm. */
void nsvm_misc_deregister(void)
{
	misc_deregister(&nsvm_misc);
}

/* Run up/down on every online CPU now and on every CPU hotplug later. */
int nsvm_cpuhp_setup(int (*up)(unsigned int), int (*down)(unsigned int))
{
	return cpuhp_setup_state(CPUHP_AP_ONLINE_DYN, "nsvm:online", up, down);
}

/* Undo nsvm_cpuhp_setup: runs down on every online CPU. */
void nsvm_cpuhp_remove(int state)
{
	cpuhp_remove_state(state);
}

/* RDMSR that returns -EIO instead of faulting when the MSR does not exist. */
int nsvm_rdmsr_safe(u32 msr, u64 *val)
{
	return rdmsrq_safe(msr, val);
}

/* WRMSR that returns -EIO instead of faulting. */
int nsvm_wrmsr_safe(u32 msr, u64 val)
{
	return wrmsrq_safe(msr, val);
}

/* Physical address of a page. */
u64 nsvm_page_to_phys(struct page *page)
{
	return page_to_phys(page);
}

/* Number of online CPUs. */
unsigned int nsvm_num_online_cpus(void)
{
	return num_online_cpus();
}

/* ---- VM and vCPU file descriptors (anonymous inodes) ---- */

static const struct file_operations nsvm_vm_fops = {
	.owner = THIS_MODULE,
	.unlocked_ioctl = nsvm_rs_vm_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.release = nsvm_rs_vm_release,
	.llseek = noop_llseek,
};

/* The kvm_run page (pgoff 0) and the PIO data page (pgoff 1). */
static vm_fault_t nsvm_vcpu_fault(struct vm_fault *vmf)
{
	struct page *page = nsvm_rs_vcpu_page(vmf->vma->vm_file->private_data, vmf->pgoff);

	if (!page)
		return VM_FAULT_SIGBUS;
	get_page(page);
	vmf->page = page;
	return 0;
}

static const struct vm_operations_struct nsvm_vcpu_vm_ops = {
	.fault = nsvm_vcpu_fault,
};

static int nsvm_vcpu_mmap(struct file *file, struct vm_area_struct *vma)
{
	vma->vm_ops = &nsvm_vcpu_vm_ops;
	return 0;
}

static const struct file_operations nsvm_vcpu_fops = {
	.owner = THIS_MODULE,
	.unlocked_ioctl = nsvm_rs_vcpu_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.release = nsvm_rs_vcpu_release,
	.mmap = nsvm_vcpu_mmap,
	.llseek = noop_llseek,
};

/* A new fd for a VM; private_data = vm (owned by the file from now on). */
int nsvm_vm_fd(void *vm)
{
	return anon_inode_getfd("nsvm-vm", &nsvm_vm_fops, vm, O_RDWR | O_CLOEXEC);
}

/* A new fd for a vCPU; private_data = vcpu. */
int nsvm_vcpu_fd(void *vcpu)
{
	return anon_inode_getfd("nsvm-vcpu", &nsvm_vcpu_fops, vcpu, O_RDWR | O_CLOEXEC);
}

/* ---- memory ---- */

/* 2^order zeroed, physically contiguous pages, charged to the caller's memcg. */
void *nsvm_alloc_pages(unsigned int order, u64 *pa)
{
	void *va = (void *)__get_free_pages(GFP_KERNEL_ACCOUNT | __GFP_ZERO, order);

	if (va)
		*pa = __pa(va);
	return va;
}

/* Free what nsvm_alloc_pages returned. */
void nsvm_free_pages(void *va, unsigned int order)
{
	free_pages((unsigned long)va, order);
}

/* struct page of a direct-map address. */
struct page *nsvm_virt_to_page(void *va)
{
	return virt_to_page(va);
}

/* Direct-map address of a physical address. */
void *nsvm_va(u64 pa)
{
	return __va(pa);
}

/*
 * Page references nsvm holds now, and the most it held at once since load
 * or since page_refs_max was last written (debugfs; the test of "no
 * reference per mapping": NPT01 and NPT02 leaves hold none).
 */
static atomic_t nsvm_page_refs = ATOMIC_INIT(0);
static atomic_t nsvm_page_refs_max = ATOMIC_INIT(0);

static void nsvm_refs_add(int n)
{
	int now = atomic_add_return(n, &nsvm_page_refs);
	int max = atomic_read(&nsvm_page_refs_max);

	while (now > max && !atomic_try_cmpxchg(&nsvm_page_refs_max, &max, now))
		;
}

/*
 * Pin one page of the current process for a short use (vmcb12 while L1
 * runs the same VMCB, an NPT12 entry's accessed/dirty bits): FOLL_PIN
 * without FOLL_LONGTERM, released by nsvm_unpin_user_page.
 */
long nsvm_pin_user_page(unsigned long uaddr, int write, struct page **page)
{
	long r = pin_user_pages_fast(uaddr, 1, write ? FOLL_WRITE : 0, page);

	if (r == 1)
		nsvm_refs_add(1);
	return r;
}

/* Unpin a page pinned by nsvm_pin_user_page, marking it dirty if written. */
void nsvm_unpin_user_page(struct page *page, int dirty)
{
	unpin_user_pages_dirty_lock(&page, 1, dirty);
	nsvm_refs_add(-1);
}

/*
 * The page that the current process maps at `uaddr`, with a reference
 * (get_user_pages, not a pin) held only while nsvm maps it into an NPT, as
 * KVM's hva_to_pfn: a write fault faults the page in for writing; a read
 * fault of a writable slot takes the page writable when the process's PTE
 * already is (GUP-fast only, no fault), read-only otherwise (the zero page,
 * a KSM page, a page shared copy-on-write). *writable says which. With
 * `no_fault` (a prefetch) only what the process maps now, without faulting
 * anything in or sleeping (KVM prefetches with GUP-fast only too). Returns
 * 1, or -errno (-EFAULT for an address the process does not map).
 */
long nsvm_get_user_page(unsigned long uaddr, int write_fault, int may_write, int no_fault,
			struct page **page, int *writable)
{
	long r;

	*writable = 0;
	if (!write_fault && may_write && get_user_page_fast_only(uaddr, FOLL_WRITE, page)) {
		*writable = 1;
		nsvm_refs_add(1);
		return 1;
	}
	if (no_fault)
		r = get_user_pages_fast_only(uaddr, 1, write_fault ? FOLL_WRITE : 0, page);
	else
		r = get_user_pages_fast(uaddr, 1, write_fault ? FOLL_WRITE : 0, page);
	if (r == 1) {
		*writable = write_fault;
		nsvm_refs_add(1);
		return 1;
	}
	return r < 0 ? r : -EFAULT;
}

/*
 * Drops a reference from nsvm_get_user_page. A page mapped writable is
 * marked dirty first (as KVM releases a faulted-in page): the guest may
 * write it through the NPT without the process's PTE seeing it, and anon or
 * shmem memory cannot be cleaned without being unmapped first (which the
 * MMU notifier sees).
 */
void nsvm_put_user_page(struct page *page, int dirty)
{
	if (dirty && !PageReserved(page))
		set_page_dirty_lock(page);
	put_page(page);
	nsvm_refs_add(-1);
}

/*
 * Whether the current process maps `uaddr` with a PMD (or PUD) leaf, so
 * that the whole aligned 2 MiB around it is one huge page of the process.
 * A lockless walk as GUP-fast's (interrupts off: x86 frees page tables only
 * after an IPI or an RCU grace period); the caller revalidates under its
 * MMU-notifier sequence, since a split or collapse invalidates the range.
 */
int nsvm_user_pmd_mapped(unsigned long uaddr)
{
	struct mm_struct *mm = current->mm;
	unsigned long flags;
	pgd_t pgd;
	p4d_t p4d;
	pud_t pud;
	pmd_t pmd;
	int r = 0;

	if (!mm)
		return 0;
	local_irq_save(flags);
	pgd = pgdp_get(pgd_offset(mm, uaddr));
	if (pgd_none(pgd) || !pgd_present(pgd))
		goto out;
	p4d = p4dp_get(p4d_offset(&pgd, uaddr));
	if (p4d_none(p4d) || !p4d_present(p4d))
		goto out;
	pud = pudp_get(pud_offset(&p4d, uaddr));
	if (pud_none(pud) || !pud_present(pud))
		goto out;
	if (pud_leaf(pud)) {
		r = 1;
		goto out;
	}
	pmd = pmdp_get_lockless(pmd_offset(&pud, uaddr));
	if (pmd_present(pmd) && pmd_leaf(pmd))
		r = 1;
out:
	local_irq_restore(flags);
	return r;
}

/* Page reference counters in /sys/kernel/debug/nsvm. */
static void nsvm_debugfs_refs(struct dentry *root)
{
	debugfs_create_atomic_t("page_refs", 0400, root, &nsvm_page_refs);
	debugfs_create_atomic_t("page_refs_max", 0600, root, &nsvm_page_refs_max);
}

/* ---- MMU notifier: a VM's NPTs follow its creator's page tables ---- */

struct nsvm_mn {
	struct mmu_notifier mn;
	void *vm;
};

/*
 * Never sleeps (a spinlock, then waits for vCPUs to leave guest mode by
 * spinning), so it also serves non-blockable ranges (the OOM reaper) and
 * never fails: a notifier that may fail must not have invalidate_range_end.
 */
static int nsvm_mn_start(struct mmu_notifier *mn, const struct mmu_notifier_range *range)
{
	struct nsvm_mn *n = container_of(mn, struct nsvm_mn, mn);

	nsvm_rs_mmu_invalidate_start(n->vm, range->start, range->end);
	return 0;
}

static void nsvm_mn_end(struct mmu_notifier *mn, const struct mmu_notifier_range *range)
{
	struct nsvm_mn *n = container_of(mn, struct nsvm_mn, mn);

	nsvm_rs_mmu_invalidate_end(n->vm, range->start, range->end);
}

/* The address space is going away (exit_mmap, or unregistration). */
static void nsvm_mn_release(struct mmu_notifier *mn, struct mm_struct *mm)
{
	struct nsvm_mn *n = container_of(mn, struct nsvm_mn, mn);

	nsvm_rs_mmu_release(n->vm);
}

static const struct mmu_notifier_ops nsvm_mn_ops = {
	.release = nsvm_mn_release,
	.invalidate_range_start = nsvm_mn_start,
	.invalidate_range_end = nsvm_mn_end,
};

/*
 * Registers an MMU notifier for `vm` on the current process's mm; *err gets
 * the errno on failure (NULL returned). The callbacks receive `vm`.
 */
void *nsvm_mmu_notifier_register(void *vm, int *err)
{
	struct nsvm_mn *n = kzalloc(sizeof(*n), GFP_KERNEL_ACCOUNT);
	int r;

	if (!n) {
		*err = -ENOMEM;
		return NULL;
	}
	n->vm = vm;
	n->mn.ops = &nsvm_mn_ops;
	r = mmu_notifier_register(&n->mn, current->mm);
	if (r) {
		kfree(n);
		*err = r;
		return NULL;
	}
	return n;
}

/*
 * Unregisters and frees what nsvm_mmu_notifier_register returned; `mm` is
 * the mm it was registered on (kept by mmgrab). Runs ->release if exit_mmap
 * has not, then waits (SRCU) until no callback runs: after the return none
 * can reach the VM or this module again (as KVM's mmu_notifier_unregister).
 */
void nsvm_mmu_notifier_unregister(void *notifier, void *mm)
{
	struct nsvm_mn *n = notifier;

	mmu_notifier_unregister(&n->mn, mm);
	kfree(n);
}

/* ---- current task ---- */

/* Identity of the current address space (compared, never dereferenced). */
void *nsvm_current_mm(void)
{
	return current->mm;
}

/*
 * A counted reference to the current address space (mmgrab: the mm_struct
 * stays allocated, so its address cannot be reused by another process while
 * the reference is held); NULL for a kernel thread.
 */
void *nsvm_mm_grab_current(void)
{
	struct mm_struct *mm = current->mm;

	if (mm)
		mmgrab(mm);
	return mm;
}

/* Drops a reference taken by nsvm_mm_grab_current. */
void nsvm_mm_drop(void *mm)
{
	mmdrop(mm);
}

/*
 * Interrupts CPU `cpu` (a reschedule IPI, as KVM's vCPU kick sends): a vCPU
 * in guest mode there leaves it by #VMEXIT(INTR); one between CLGI and
 * VMRUN exits right after VMRUN. Not waited for: the caller watches the
 * vCPU's guest-mode word. Nothing is sent to the calling CPU (no vCPU of
 * it can be in guest mode while this runs) or to an offline one.
 */
void nsvm_kick_cpu(int cpu)
{
	if (cpu < 0 || cpu >= nr_cpu_ids || !cpu_online(cpu))
		return;
	if (cpu != get_cpu())
		arch_smp_send_reschedule(cpu);
	put_cpu();
}

/*
 * A reschedule IPI to the calling CPU, preemption off: sent with GIF clear
 * just before VMRUN it stays pending and ends the guest at once with
 * #VMEXIT(INTR) (an event was posted for the vCPU after it took its
 * mailbox); the host then takes it as an ordinary reschedule IPI.
 */
void nsvm_kick_self(void)
{
	arch_smp_send_reschedule(smp_processor_id());
}

/* Whether a signal is pending for the current task. */
int nsvm_signal_pending(void)
{
	return signal_pending(current);
}

/* Give the CPU away if the scheduler wants it. */
void nsvm_cond_resched(void)
{
	cond_resched();
}

/*
 * What the task owes before its vCPU enters the guest again, as KVM's
 * vcpu_run does it (xfer_to_guest_mode_handle_work): above all a
 * reschedule, lazy or not. cond_resched() is empty in a preemptible kernel,
 * and a wakeup's lazy reschedule (TIF_NEED_RESCHED_LAZY, PREEMPT_LAZY)
 * preempts no kernel code: a vCPU thread going from exit to entry would
 * keep the CPU from a woken task until the next scheduler tick upgrades
 * it. A pending signal is left to the caller (its -EINTR is dropped here).
 */
void nsvm_guest_mode_work(void)
{
	if (__xfer_to_guest_mode_work_pending())
		xfer_to_guest_mode_handle_work();
}

/*
 * Whether such work is pending (KVM checks it with interrupts off right
 * before entering: nsvm with GIF clear, ending the entry at once).
 */
int nsvm_guest_mode_work_pending(void)
{
	return __xfer_to_guest_mode_work_pending();
}

/* ---- FPU and interrupts around VMRUN ---- */

/* Save the task's FPU state; the FPU is ours until nsvm_fpu_end. */
void nsvm_fpu_begin(void)
{
	kernel_fpu_begin();
}

/* End of kernel FPU use; the task's state is restored lazily. */
void nsvm_fpu_end(void)
{
	kernel_fpu_end();
}

/*
 * ---- What of a vCPU stays loaded on the CPU between exits ----
 *
 * KVM keeps the guest's FPU registers loaded from the first entry of a
 * KVM_RUN until it returns to userspace or the thread is scheduled out
 * (fpu_swap_kvm_fpstate, exported to the kvm modules only). nsvm does the
 * same with the kernel-FPU API: the guest's image is loaded inside a
 * kernel-FPU section begun with interrupts disabled, so that
 * kernel_fpu_begin() takes no fpregs_lock() and the section can stay open
 * while the thread runs preemptible kernel code between exits. While it is
 * open:
 *  - the task's own FPU state is in its fpstate (kernel_fpu_begin saved it
 *    and set TIF_NEED_FPU_LOAD), so the context switch and the return to
 *    userspace restore it from there and never save the guest's registers
 *    into it;
 *  - kernel_fpu_allowed is false on this CPU: irq_fpu_usable() is false for
 *    interrupts and softirqs, so no kernel-mode FPU user runs over the
 *    guest's registers (they fall back to their non-SIMD code);
 *  - a preempt notifier closes it when the thread is scheduled out (sleep,
 *    preemption, migration): the guest's registers are saved into its image
 *    and the section ends on the CPU where it began, before the next task
 *    runs there.
 * nsvm_loaded_put() closes it at the end of KVM_RUN and whenever the image
 * is read or written. The same notifier forgets the host's VMSAVE state
 * (saved once per CPU entry of the thread: FS/GS/TR/LDTR, KernelGsBase,
 * the SYSCALL and SYSENTER MSRs), which belongs to the thread on that CPU.
 */
struct nsvm_loaded {
	struct preempt_notifier pn;
	void *area;		/* the guest's XSAVE image (a page) */
	u64 rfbm;		/* XSAVE components (the host's XCR0; 0: FXSAVE) */
	bool registered;	/* pn is on current's list */
	bool fpu;		/* the guest's registers are loaded */
	int host_cpu;		/* the host save page holds this CPU's state, or -1 */
	/*
	 * TSC_AUX (RDTSCP/RDPID; RDPID cannot be intercepted): the guest's
	 * value is in the MSR from the first entry of a KVM_RUN on a CPU until
	 * the thread is scheduled out or KVM_RUN ends, the host's saved here
	 * meanwhile (KVM's user-return MSR: the kernel itself never reads
	 * TSC_AUX, its paranoid entry avoids RDPID for this reason).
	 */
	u64 guest_tsc_aux;
	u64 host_tsc_aux;
	bool aux_loaded;
};

static bool nsvm_has_tsc_aux(void)
{
	return boot_cpu_has(X86_FEATURE_RDTSCP) || boot_cpu_has(X86_FEATURE_RDPID);
}

/* Interrupts or preemption disabled: the host's TSC_AUX back. */
static void __nsvm_loaded_put_aux(struct nsvm_loaded *l)
{
	if (!l->aux_loaded)
		return;
	if (l->host_tsc_aux != l->guest_tsc_aux)
		wrmsrq(MSR_TSC_AUX, l->host_tsc_aux);
	l->aux_loaded = false;
}

static void nsvm_xsave(struct nsvm_loaded *l)
{
	if (l->rfbm)
		asm volatile("xsave64 (%0)" : : "r"(l->area), "a"((u32)l->rfbm),
			     "d"((u32)(l->rfbm >> 32)) : "memory");
	else
		asm volatile("fxsave64 (%0)" : : "r"(l->area) : "memory");
}

static void nsvm_xrstor(struct nsvm_loaded *l)
{
	if (l->rfbm)
		asm volatile("xrstor64 (%0)" : : "r"(l->area), "a"((u32)l->rfbm),
			     "d"((u32)(l->rfbm >> 32)) : "memory");
	else
		asm volatile("fxrstor64 (%0)" : : "r"(l->area) : "memory");
}

/* Interrupts disabled: saves the guest's registers and ends the section. */
static void __nsvm_loaded_put_fpu(struct nsvm_loaded *l)
{
	if (!l->fpu)
		return;
	nsvm_xsave(l);
	kernel_fpu_end();
	l->fpu = false;
}

static void nsvm_sched_in(struct preempt_notifier *pn, int cpu)
{
}

static void nsvm_sched_out(struct preempt_notifier *pn, struct task_struct *next)
{
	struct nsvm_loaded *l = container_of(pn, struct nsvm_loaded, pn);

	__nsvm_loaded_put_fpu(l);
	__nsvm_loaded_put_aux(l);
	l->host_cpu = -1;
}

static struct preempt_ops nsvm_preempt_ops = {
	.sched_in = nsvm_sched_in,
	.sched_out = nsvm_sched_out,
};

/* Preemption on again after nsvm_loaded_enter (the Rust NoPreempt guard). */
void nsvm_preempt_enable(void)
{
	preempt_enable();
}

/* Enable preempt notifiers (a static key; KVM does the same at its load). */
void nsvm_preempt_notifiers_enable(void)
{
	preempt_notifier_inc();
}

void nsvm_preempt_notifiers_disable(void)
{
	preempt_notifier_dec();
}

/* The loaded-state record of a vCPU whose XSAVE image is the page `area`. */
void *nsvm_loaded_alloc(void *area, u64 rfbm)
{
	struct nsvm_loaded *l = kzalloc(sizeof(*l), GFP_KERNEL_ACCOUNT);

	if (!l)
		return NULL;
	preempt_notifier_init(&l->pn, &nsvm_preempt_ops);
	l->area = area;
	l->rfbm = rfbm;
	l->host_cpu = -1;
	return l;
}

/* Frees it; never registered then (nsvm_loaded_vcpu_put ran). */
void nsvm_loaded_free(void *p)
{
	struct nsvm_loaded *l = p;

	WARN_ON_ONCE(l->registered || l->fpu);
	kfree(l);
}

/*
 * The start of an entry, in the thread that runs the vCPU: disables
 * preemption (until nsvm_preempt_enable), loads the guest's FPU image unless
 * it is loaded, and tells whether the host save page must be written
 * (VMSAVE) for this entry: it does not hold this thread's state on this CPU,
 * or the task's LDT may change under it (LDTR not null: modify_ldt reloads
 * LDTR on running CPUs by IPI); records that it will. Returns the CPU number
 * with NSVM_ENTER_* bits. NSVM_ENTER_FPU_LOST: the registers had been taken
 * (a kernel-FPU section of someone else ran in this thread and ended ours:
 * they hold its data, not the guest's); the image is loaded again.
 */
#define NSVM_ENTER_FPU_LOADED	(1u << 24)
#define NSVM_ENTER_FPU_LOST	(1u << 25)
#define NSVM_ENTER_HOST_SAVE	(1u << 26)
unsigned int nsvm_loaded_enter(void *p)
{
	struct nsvm_loaded *l = p;
	unsigned long flags;
	unsigned short ldt;
	unsigned int cpu, r;

	preempt_disable();
	cpu = smp_processor_id();
	r = cpu;
	if (unlikely(!l->registered)) {
		preempt_notifier_register(&l->pn);
		l->registered = true;
	}
	if (l->fpu && unlikely(irq_fpu_usable())) {
		/* Ours keeps kernel_fpu_allowed false until we end it. */
		WARN_ONCE(1, "nsvm: the guest's FPU registers were taken by another kernel-FPU user\n");
		l->fpu = false;
		r |= NSVM_ENTER_FPU_LOST;
	}
	if (!l->fpu) {
		local_irq_save(flags);
		kernel_fpu_begin();
		nsvm_xrstor(l);
		l->fpu = true;
		local_irq_restore(flags);
		r |= NSVM_ENTER_FPU_LOADED;
	}
	if (!l->aux_loaded && nsvm_has_tsc_aux()) {
		rdmsrq(MSR_TSC_AUX, l->host_tsc_aux);
		if (l->host_tsc_aux != l->guest_tsc_aux)
			wrmsrq(MSR_TSC_AUX, l->guest_tsc_aux);
		l->aux_loaded = true;
	}
	asm volatile("sldt %0" : "=r"(ldt));
	if (l->host_cpu != (int)cpu || ldt) {
		l->host_cpu = cpu;
		r |= NSVM_ENTER_HOST_SAVE;
	}
	return r;
}

/* Saves the guest's registers into the image and ends the section. */
void nsvm_loaded_put(void *p)
{
	struct nsvm_loaded *l = p;
	unsigned long flags;

	local_irq_save(flags);
	__nsvm_loaded_put_fpu(l);
	local_irq_restore(flags);
}

/* The guest's TSC_AUX changed (WRMSR, KVM_SET_MSRS): into the MSR if loaded. */
void nsvm_loaded_set_tsc_aux(void *p, u64 v)
{
	struct nsvm_loaded *l = p;

	preempt_disable();
	l->guest_tsc_aux = v;
	if (l->aux_loaded)
		wrmsrq(MSR_TSC_AUX, v);
	preempt_enable();
}

/* The end of KVM_RUN: put, forget the host state, unregister. */
void nsvm_loaded_vcpu_put(void *p)
{
	struct nsvm_loaded *l = p;

	preempt_disable();
	nsvm_loaded_put(l);
	__nsvm_loaded_put_aux(l);
	l->host_cpu = -1;
	if (l->registered) {
		preempt_notifier_unregister(&l->pn);
		l->registered = false;
	}
	preempt_enable();
}

/* The host's XCR0 (0 without XSAVE). */
u64 nsvm_host_xcr0(void)
{
	return boot_cpu_has(X86_FEATURE_OSXSAVE) ? xgetbv(XCR_XFEATURE_ENABLED_MASK) : 0;
}

/* ---- statistics fds (KVM_GET_STATS_FD) ---- */

static const struct file_operations nsvm_vm_stats_fops = {
	.owner = THIS_MODULE,
	.read = nsvm_rs_vm_stats_read,
	.release = nsvm_rs_vm_stats_release,
	.llseek = noop_llseek,
};

static const struct file_operations nsvm_vcpu_stats_fops = {
	.owner = THIS_MODULE,
	.read = nsvm_rs_vcpu_stats_read,
	.release = nsvm_rs_vcpu_stats_release,
	.llseek = noop_llseek,
};

/* A read-only stats fd (pread works, as in KVM) for a VM or a vCPU. */
int nsvm_stats_fd(void *obj, int vcpu)
{
	struct file *file;
	int fd;

	fd = get_unused_fd_flags(O_CLOEXEC);
	if (fd < 0)
		return fd;
	file = anon_inode_getfile(vcpu ? "nsvm-vcpu-stats" : "nsvm-vm-stats",
				  vcpu ? &nsvm_vcpu_stats_fops : &nsvm_vm_stats_fops,
				  obj, O_RDONLY);
	if (IS_ERR(file)) {
		put_unused_fd(fd);
		return PTR_ERR(file);
	}
	file->f_mode |= FMODE_PREAD;
	fd_install(fd, file);
	return fd;
}

/* Host TSC frequency in kHz. */
unsigned int nsvm_tsc_khz(void)
{
	return tsc_khz;
}

/* ---- debugfs: /sys/kernel/debug/nsvm/<pid>-<n>/vcpu<id> (vmcb01 dumps) ---- */

static struct dentry *nsvm_debugfs_root;

static ssize_t nsvm_vmcb_read(struct file *file, char __user *buf, size_t len, loff_t *pos)
{
	return nsvm_rs_vmcb_read(file_inode(file)->i_private, buf, len, pos);
}

static const struct file_operations nsvm_vmcb_fops = {
	.owner = THIS_MODULE,
	.open = simple_open,
	.read = nsvm_vmcb_read,
	.llseek = default_llseek,
};

/* Create /sys/kernel/debug/nsvm (nothing happens without debugfs). */
void nsvm_debugfs_init(void)
{
	nsvm_debugfs_root = debugfs_create_dir("nsvm", NULL);
	nsvm_debugfs_refs(nsvm_debugfs_root);
}

/* Remove /sys/kernel/debug/nsvm and everything below. */
void nsvm_debugfs_exit(void)
{
	debugfs_remove(nsvm_debugfs_root);
	nsvm_debugfs_root = NULL;
}

/* A directory under /sys/kernel/debug/nsvm (parent NULL) or under `parent`. */
void *nsvm_debugfs_dir(const char *name, void *parent)
{
	return debugfs_create_dir(name, parent ? parent : nsvm_debugfs_root);
}

/* A read-only vmcb dump file for `vcpu` in `dir`. */
void *nsvm_debugfs_vmcb_file(const char *name, void *dir, void *vcpu)
{
	return debugfs_create_file(name, 0400, dir, vcpu, &nsvm_vmcb_fops);
}

/* Remove a debugfs entry (recursively); waits for readers to finish. */
void nsvm_debugfs_remove(void *dentry)
{
	if (!IS_ERR_OR_NULL(dentry))
		debugfs_remove(dentry);
}

/* Monotonic time in nanoseconds. */
u64 nsvm_ktime_ns(void)
{
	return ktime_get_ns();
}

/*
 * The host's timekeeping runs on the TSC and nothing marked the TSC
 * unstable: KVM's master-clock condition (the host clocksource is the TSC,
 * which the kernel keeps only while it is synchronized and stable), under
 * which kvmclock may tell guests their clock is stable and KVM_GET_CLOCK
 * reports the real time. Processors without CONSTANT_TSC qualify when the
 * kernel trusts their TSC (QEMU's EPYC model has no invariant TSC).
 */
int nsvm_tsc_stable(void)
{
	struct system_time_snapshot snap;

	if (check_tsc_unstable())
		return 0;
	ktime_get_snapshot_id(CLOCK_MONOTONIC, &snap);
	return snap.cs_id == CSID_X86_TSC;
}

/* Real (wall-clock) time, ns. */
u64 nsvm_realtime_ns(void)
{
	return ktime_get_real_ns();
}

/* ---- eventfds (KVM_IOEVENTFD) ---- */

/* A reference to the eventfd behind fd, or an ERR_PTR (EBADF, EINVAL). */
void *nsvm_eventfd_get(int fd)
{
	return eventfd_ctx_fdget(fd);
}

/* Adds 1 to the eventfd's counter and wakes its waiters. */
void nsvm_eventfd_signal(void *ctx)
{
	eventfd_signal(ctx);
}

/* Drops a reference from nsvm_eventfd_get. */
void nsvm_eventfd_put(void *ctx)
{
	eventfd_ctx_put(ctx);
}

/* ---- debug registers around VMRUN ---- */

/*
 * With interrupts held (GIF clear): the host's DR0-3 into host[], the
 * guest's from guest[] into the processor (VMRUN switches DR6/DR7 but not
 * DR0-3, APM vol. 2 15.5.1 and appendix B). Host breakpoints are disarmed
 * first so that none fires on a guest address.
 */
void nsvm_load_guest_db(const u64 *guest, u64 *host)
{
	if (hw_breakpoint_active())
		set_debugreg(0UL, 7);
	host[0] = native_get_debugreg(0);
	host[1] = native_get_debugreg(1);
	host[2] = native_get_debugreg(2);
	host[3] = native_get_debugreg(3);
	set_debugreg(guest[0], 0);
	set_debugreg(guest[1], 1);
	set_debugreg(guest[2], 2);
	set_debugreg(guest[3], 3);
}

/*
 * After #VMEXIT, still with GIF clear: the guest's DR0-3 back into guest[],
 * the host's from host[] with its DR6 and DR7 when it has breakpoints armed
 * (what hw_breakpoint_restore does, which is exported to KVM alone).
 */
void nsvm_save_guest_db(u64 *guest, const u64 *host)
{
	guest[0] = native_get_debugreg(0);
	guest[1] = native_get_debugreg(1);
	guest[2] = native_get_debugreg(2);
	guest[3] = native_get_debugreg(3);
	if (hw_breakpoint_active()) {
		set_debugreg(host[0], 0);
		set_debugreg(host[1], 1);
		set_debugreg(host[2], 2);
		set_debugreg(host[3], 3);
		set_debugreg(DR6_RESERVED, 6);
		set_debugreg(__this_cpu_read(cpu_dr7), 7);
	}
}
