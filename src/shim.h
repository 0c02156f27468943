/* SPDX-License-Identifier: GPL-2.0 */
/* Prototypes of the C shims (src/shim.c), declared again on the Rust side in src/hw.rs. */
#ifndef NSVM_SHIM_H
#define NSVM_SHIM_H
#include <linux/types.h>
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
#endif
