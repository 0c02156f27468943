/* SPDX-License-Identifier: GPL-2.0 */
/* Prototypes of the C shims (src/shim.c), declared again on the Rust side in src/hw.rs. */
#ifndef NSVM_SHIM_H
#define NSVM_SHIM_H
#include <linux/types.h>
#include <linux/compiler_types.h>
struct file;
struct page;
long nsvm_rs_sys_ioctl(struct file *file, unsigned int cmd, unsigned long arg);
int nsvm_misc_register(umode_t mode);
void nsvm_misc_deregister(void);
int nsvm_cpuhp_setup(int (*up)(unsigned int), int (*down)(unsigned int));
void nsvm_cpuhp_remove(int state);
int nsvm_rdmsr_safe(u32 msr, u64 *val);
int nsvm_wrmsr_safe(u32 msr, u64 val);
u64 nsvm_page_to_phys(struct page *page);
unsigned int nsvm_num_online_cpus(void);

struct inode;
struct vm_area_struct;
long nsvm_rs_vm_ioctl(struct file *file, unsigned int cmd, unsigned long arg);
int nsvm_rs_vm_release(struct inode *inode, struct file *file);
long nsvm_rs_vcpu_ioctl(struct file *file, unsigned int cmd, unsigned long arg);
int nsvm_rs_vcpu_release(struct inode *inode, struct file *file);
struct page *nsvm_rs_vcpu_page(void *vcpu, unsigned long pgoff);
int nsvm_vm_fd(void *vm);
int nsvm_vcpu_fd(void *vcpu);
void *nsvm_alloc_pages(unsigned int order, u64 *pa);
void nsvm_free_pages(void *va, unsigned int order);
struct page *nsvm_virt_to_page(void *va);
void *nsvm_va(u64 pa);
long nsvm_pin_user_page(unsigned long uaddr, int write, struct page **page);
long nsvm_get_user_page(unsigned long uaddr, int write_fault, int may_write, int no_fault, struct page **page, int *writable);
void nsvm_put_user_page(struct page *page, int dirty);
int nsvm_user_pmd_mapped(unsigned long uaddr);
void nsvm_rs_mmu_invalidate_start(void *vm, unsigned long start, unsigned long end);
void nsvm_rs_mmu_invalidate_end(void *vm, unsigned long start, unsigned long end);
void nsvm_rs_mmu_release(void *vm);
void *nsvm_mmu_notifier_register(void *vm, int *err);
void nsvm_mmu_notifier_unregister(void *notifier, void *mm);
void nsvm_unpin_user_page(struct page *page, int dirty);
void *nsvm_current_mm(void);
void *nsvm_mm_grab_current(void);
void nsvm_mm_drop(void *mm);
void nsvm_kick_cpu(int cpu);
void nsvm_kick_self(void);
int nsvm_signal_pending(void);
void nsvm_cond_resched(void);
void nsvm_guest_mode_work(void);
int nsvm_guest_mode_work_pending(void);
void nsvm_fpu_begin(void);
void nsvm_fpu_end(void);
u64 nsvm_host_xcr0(void);
void nsvm_preempt_enable(void);
void nsvm_preempt_notifiers_enable(void);
void nsvm_preempt_notifiers_disable(void);
void *nsvm_loaded_alloc(void *area, u64 rfbm);
void nsvm_loaded_free(void *p);
unsigned int nsvm_loaded_enter(void *p);
void nsvm_loaded_put(void *p);
void nsvm_loaded_vcpu_put(void *p);
void nsvm_loaded_set_tsc_aux(void *p, u64 v);
ssize_t nsvm_rs_vm_stats_read(struct file *file, char __user *buf, size_t len, loff_t *pos);
int nsvm_rs_vm_stats_release(struct inode *inode, struct file *file);
ssize_t nsvm_rs_vcpu_stats_read(struct file *file, char __user *buf, size_t len, loff_t *pos);
int nsvm_rs_vcpu_stats_release(struct inode *inode, struct file *file);
int nsvm_stats_fd(void *obj, int vcpu);
unsigned int nsvm_tsc_khz(void);
int nsvm_tsc_stable(void);
ssize_t nsvm_rs_vmcb_read(void *vcpu, char __user *buf, size_t len, loff_t *pos);
void nsvm_debugfs_init(void);
void nsvm_debugfs_exit(void);
void *nsvm_debugfs_dir(const char *name, void *parent);
void *nsvm_debugfs_vmcb_file(const char *name, void *dir, void *vcpu);
void nsvm_debugfs_remove(void *dentry);
u64 nsvm_ktime_ns(void);
/* src/pit_shim.c: the PIT's hrtimer and work. */
void nsvm_rs_pit_timer(void *vm);
void nsvm_rs_pit_work(void *vm);
void *nsvm_pit_timer_new(void *vm);
void nsvm_pit_timer_free(void *q);
void nsvm_pit_timer_start(void *q, u64 first, u64 period);
void nsvm_pit_timer_cancel(void *q);
void nsvm_pit_kick(void *q);

/* src/apic_shim.c: a vCPU's wait queue and APIC hrtimer. */
void nsvm_rs_apic_timer(void *ctx, int id);
void *nsvm_apic_waiter_new(void *ctx, int id);
void nsvm_apic_waiter_free(void *p);
void nsvm_apic_timer_start(void *p, u64 ns);
void nsvm_apic_timer_cancel(void *p);
void nsvm_apic_wake(void *p);
int nsvm_apic_wait(void *p);
int nsvm_apic_waiter_debug(void *p, u64 *expires_ns);
void nsvm_rs_irqfd_fire(void *vm, u32 lo, u32 hi, u32 data);
void nsvm_rs_irqfd_inject(void *vm, u32 gsi, int resample);
void *nsvm_irqfds_new(void *vm);
int nsvm_irqfd_assign(void *p, int fd, u32 gsi, int valid, u32 lo, u32 hi, u32 data, int resamplefd);
int nsvm_irqfds_has_resampler(void *p, u32 gsi);
void nsvm_irqfds_resample(void *p, u32 gsi);
int nsvm_irqfd_deassign(void *p, int fd, u32 gsi);
void nsvm_irqfds_reroute(void *p, const u32 *routes, u32 n);
void nsvm_irqfds_free(void *p);
u64 nsvm_realtime_ns(void);
void *nsvm_eventfd_get(int fd);
void nsvm_eventfd_signal(void *ctx);
void nsvm_eventfd_put(void *ctx);
void nsvm_load_guest_db(const u64 *guest, u64 *host);
void nsvm_save_guest_db(u64 *guest, const u64 *host);
#endif
