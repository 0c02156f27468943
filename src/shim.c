// SPDX-License-Identifier: GPL-2.0
/*
 * C shims for what the kernel's Rust crate does not wrap. One purpose per
 * function; the Rust side declares them in src/hw.rs.
 */
#include <linux/cpu.h>
#include <linux/cpuhotplug.h>
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <asm/msr.h>

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
