// SPDX-License-Identifier: GPL-2.0
//! A VM: its memory slots, its NPT01 and its vCPUs (the VM fd of the KVM UAPI).

use kernel::prelude::*;
use kernel::sync::{Arc, Mutex};
use kernel::uaccess::{UserPtr, UserSlice};
use kernel::new_mutex;

use nsvm_core::memslot::{Change, SlotError, SlotTable};
use nsvm_core::uapi;

use crate::hw;
use crate::npt::Npt;
use crate::vcpu::Vcpu;

/// Most vCPUs per VM (`KVM_CAP_MAX_VCPUS`).
pub(crate) const MAX_VCPUS: u32 = 64;

/// State protected by the VM lock.
pub(crate) struct VmInner {
    /// Memory slots.
    pub(crate) slots: KBox<SlotTable>,
    /// NPT01.
    pub(crate) npt: Npt,
    /// Ids of the vCPUs created so far (bit per id).
    vcpu_ids: u64,
}

/// One VM.
#[pin_data]
pub(crate) struct Vm {
    /// The address space of the process that created the VM: every VM and
    /// vCPU ioctl must come from it (as in KVM), since guest memory is that
    /// process's memory.
    pub(crate) mm: usize,
    #[pin]
    pub(crate) inner: Mutex<VmInner>,
}

impl Vm {
    /// `KVM_CREATE_VM`: a new VM fd.
    pub(crate) fn create(vm_type: usize) -> Result<isize> {
        if vm_type != 0 {
            return Err(EINVAL);
        }
        let inner = VmInner {
            slots: KBox::new(SlotTable::new(), GFP_KERNEL_ACCOUNT)?,
            npt: Npt::new()?,
            vcpu_ids: 0,
        };
        let vm = Arc::pin_init(
            pin_init!(Vm { mm: hw::current_mm(), inner <- new_mutex!(inner, "nsvm_vm") }),
            GFP_KERNEL_ACCOUNT,
        )?;
        Ok(crate::fops::new_vm_fd(vm)? as isize)
    }

    /// Handles an ioctl on the VM fd.
    pub(crate) fn ioctl(self: &Arc<Self>, cmd: u32, arg: usize) -> Result<isize> {
        if hw::current_mm() != self.mm {
            return Err(EIO);
        }
        match cmd {
            uapi::kvm::CHECK_EXTENSION => Ok(uapi::cap::check_extension(arg as u64) as isize),
            uapi::kvm::CREATE_VCPU => self.create_vcpu(arg),
            uapi::kvm::SET_USER_MEMORY_REGION => {
                let mut b = [0u8; 32];
                UserSlice::new(UserPtr::from_addr(arg), 32).reader().read_slice(&mut b)?;
                self.set_memory(&nsvm_core::kvm::memory_region_from_bytes(&b))
            }
            uapi::kvm::SET_USER_MEMORY_REGION2 => {
                let mut b = [0u8; 160];
                UserSlice::new(UserPtr::from_addr(arg), 160).reader().read_slice(&mut b)?;
                // guest_memfd_offset, guest_memfd and the padding must be zero
                // (no private memory in nsvm).
                if b[32..].iter().any(|x| *x != 0) {
                    return Err(EINVAL);
                }
                let mut head = [0u8; 32];
                for (d, s) in head.iter_mut().zip(b.iter()) {
                    *d = *s;
                }
                self.set_memory(&nsvm_core::kvm::memory_region_from_bytes(&head))
            }
            // Intel-only in KVM; accepted as a no-op so VMMs written for both work.
            uapi::kvm::SET_TSS_ADDR => Ok(0),
            _ => Err(ENOTTY),
        }
    }

    fn set_memory(&self, r: &nsvm_core::memslot::Request) -> Result<isize> {
        let mut g = self.inner.lock();
        let inner = &mut *g;
        let change = inner.slots.apply(r).map_err(|e| match e {
            SlotError::Invalid(_) => EINVAL,
            SlotError::Overlap => EEXIST,
            SlotError::NoSpace => ENOSPC,
        })?;
        match change {
            Change::Delete(old) | Change::Move(old, _) | Change::Flags(old, _) => {
                inner.npt.unmap_range(old.gpa, old.end());
            }
            Change::Create(_) | Change::Unchanged => {}
        }
        Ok(0)
    }

    fn create_vcpu(self: &Arc<Self>, id: usize) -> Result<isize> {
        if id >= MAX_VCPUS as usize {
            return Err(EINVAL);
        }
        {
            let mut g = self.inner.lock();
            if g.vcpu_ids & (1 << id) != 0 {
                return Err(EEXIST);
            }
            g.vcpu_ids |= 1 << id;
        }
        let r = Vcpu::create(self.clone(), id as u32);
        if r.is_err() {
            self.inner.lock().vcpu_ids &= !(1 << id);
        }
        r
    }
}
