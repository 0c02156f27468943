// SPDX-License-Identifier: GPL-2.0
/*
 * C shims for what the kernel's Rust crate does not wrap. One purpose per
 * function; the Rust side declares them in src/hw.rs.
 */
#include <linux/anon_inodes.h>
#include <linux/cpu.h>
#include <linux/debugfs.h>
#include <linux/eventfd.h>
#include <linux/file.h>
#include <linux/cpuhotplug.h>
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/sched/signal.h>
#include <asm/debugreg.h>
#include <asm/fpu/api.h>
#include <asm/fpu/xcr.h>
#include <asm/msr.h>
#include <asm/tsc.h>

#include "shim.h"

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

/* Pin one page of the current process for guest use. */
long nsvm_pin_user_page(unsigned long uaddr, int write, struct page **page)
{
	return pin_user_pages_fast(uaddr, 1, (write ? FOLL_WRITE : 0) | FOLL_LONGTERM, page);
}

/* Pin n consecutive pages of the current process (GUP-fast, one call);
 * returns how many were pinned (a prefix), or -errno. */
long nsvm_pin_user_pages(unsigned long uaddr, int n, int write, struct page **pages)
{
	return pin_user_pages_fast(uaddr, n, (write ? FOLL_WRITE : 0) | FOLL_LONGTERM, pages);
}

/* Whether a pinned page is part of a PMD-sized (or larger) folio. */
int nsvm_page_in_pmd_folio(struct page *page)
{
	return folio_size(page_folio(page)) >= PMD_SIZE;
}

/* Unpin a page pinned by nsvm_pin_user_page, marking it dirty if written. */
void nsvm_unpin_user_page(struct page *page, int dirty)
{
	unpin_user_pages_dirty_lock(&page, 1, dirty);
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

/*
 * Pin the page at the 2 MiB-aligned user address `uaddr` and report whether
 * it starts a physically contiguous, 2 MiB-aligned folio of at least 2 MiB
 * (a transparent huge page): then one pin holds the whole 2 MiB and it can be
 * mapped with a single NPT entry. Returns 1 (pinned, huge), 0 (not huge,
 * nothing pinned) or -errno.
 */
long nsvm_pin_user_huge(unsigned long uaddr, int write, struct page **page)
{
	struct folio *folio;
	long r;

	r = pin_user_pages_fast(uaddr, 1, (write ? FOLL_WRITE : 0) | FOLL_LONGTERM, page);
	if (r != 1)
		return r < 0 ? r : -EFAULT;
	folio = page_folio(*page);
	if (folio_size(folio) >= PMD_SIZE && folio_page(folio, 0) == *page &&
	    IS_ALIGNED(page_to_pfn(*page), PMD_SIZE >> PAGE_SHIFT))
		return 1;
	unpin_user_page(*page);
	return 0;
}

/* Monotonic time in nanoseconds. */
u64 nsvm_ktime_ns(void)
{
	return ktime_get_ns();
}

/* Boot-time clock (counts suspend), ns: the base of KVM_GET/SET_CLOCK. */
u64 nsvm_boottime_ns(void)
{
	return ktime_get_boottime_ns();
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
