// SPDX-License-Identifier: GPL-2.0
//! A vCPU: its vmcb01, its registers, the run loop and the exit handlers
//! (the vCPU fd of the KVM UAPI).
//!
//! Exit handling follows KVM's semantics for userspace (KVM_EXIT_IO,
//! KVM_EXIT_HLT, KVM_EXIT_SHUTDOWN, ...), with the architectural rules of
//! APM vol. 2 chapter 15 for what the guest sees.

use kernel::prelude::*;
use kernel::sync::{Arc, Mutex};
use kernel::uaccess::{UserPtr, UserSlice};
use kernel::new_mutex;

use nsvm_core::event::{Event, EventType};
use nsvm_core::exit;
use nsvm_core::insn::{self, Known};
use nsvm_core::mmio;
use nsvm_core::intercept::Intercepts;
use nsvm_core::kvm::{self, reg, run, KvmSegment, Regs, SegKind, Sregs};
use nsvm_core::msr::{self, efer};
use nsvm_core::paging::{self, Access, Mode, TableMem};
use nsvm_core::uapi;
use nsvm_core::vmcb::{int_ctl, nested_ctl, tlb_control, Segment, Vmcb};

use core::sync::atomic::{AtomicU64, Ordering};

use nsvm_core::stats::{self, vcpu as st_idx};

use crate::hw::{self, KPages, PinnedPage, VmcbPage};
use crate::npt::ShadowNpt;
use nsvm_core::cpuid::SvmFeatures;
use nsvm_core::nested::{npf, Npt02Key};
use nsvm_core::trace::Event as TraceEvent;
use crate::vm::{Vm, VmInner};
use crate::vmrun::{self, Gprs};

/// Default guest PAT (power-on value).
const PAT_DEFAULT: u64 = 0x0007_0406_0007_0406;
/// Most CPUID entries `KVM_SET_CPUID2` accepts (KVM's limit).
const MAX_CPUID_ENTRIES: usize = 256;
/// `KVM_CPUID_FLAG_SIGNIFCANT_INDEX`.
const CPUID_FLAG_SIGNIFICANT_INDEX: u32 = 1;
/// `-KVM_ENOSYS`, returned in RAX for an unknown hypercall (as KVM does).
const KVM_ENOSYS: u64 = 1000;

/// One `struct kvm_cpuid_entry2`.
#[derive(Clone, Copy, Default)]
struct CpuidEntry {
    function: u32,
    index: u32,
    flags: u32,
    regs: [u32; 4],
}

/// State behind the vCPU lock.
pub(crate) struct VcpuState {
    vmcb: VmcbPage,
    host_save: KPages,
    fpu: KPages,
    gprs: Gprs,
    /// EFER as the guest sees it; the VMCB copy always has SVME (APM 15.5.1).
    guest_efer: u64,
    /// The guest's XCR0.
    xcr0: u64,
    apic_base: u64,
    tsc_aux: u64,
    cpuid: KVec<CpuidEntry>,
    /// Port I/O that userspace completes: on the next `KVM_RUN` an IN's data
    /// is taken from the PIO page and RIP moves past the instruction (KVM
    /// advances RIP only then, so userspace sees RIP at the I/O instruction).
    pending: Option<Pending>,
    /// Guest physical address of every byte of a pending INS/OUTS.
    string_gpas: KVec<u64>,
    /// External interrupt queued by `KVM_INTERRUPT`, not yet injected.
    pending_irq: Option<u8>,
    /// NMI queued by `KVM_NMI`, not yet injected.
    pending_nmi: bool,
    /// L1 is in its NMI handler: further NMIs wait for its IRET (APM 8.5;
    /// tracked through the IRET intercept, as KVM does without vNMI).
    nmi_masked: bool,
    /// RIP of the IRET that ends the NMI handler: NMIs unmask once the
    /// guest is past it.
    iret_rip: Option<u64>,
    /// When the last exit was HLT: the time it happened (ns).
    halted_since: Option<u64>,
    /// The sensitive-instruction policy vmcb01's intercepts reflect (`None`
    /// after a reset rebuilt them), so entries rewrite them only on change.
    applied_policy: Option<nsvm_core::sensitive::Policy>,
    /// Nested SVM: vmcb02 (L0 runs L2 with it) and L1's vmcb12, copied once
    /// at VMRUN (never given to the processor).
    vmcb02: VmcbPage,
    vmcb12: VmcbPage,
    /// SVM offered to L1 (CPUID 0x80000001 ECX bit 2 in its table).
    svm_exposed: bool,
    /// vmcb12's page pinned (its address, the VM's memory generation then,
    /// the pin), kept while L1 VMRUNs the same VMCB, as KVM maps it: VMRUN
    /// reads and #VMEXIT writes it with plain copies, no user-copy or slot
    /// lookup per field.
    vmcb12_pin: Option<(u64, u64, PinnedPage)>,
    /// The SVM features L1 was offered: its CPUID 0x8000000A EDX limited
    /// to what nsvm implements (`cpuid::L1_FEATURES`); vmcb12 fields of
    /// the others are ignored, as the APM and KVM do.
    l1_features: SvmFeatures,
    /// Shadow NPT02 for an L2 whose L1 enabled nested paging.
    npt02: ShadowNpt,
    /// L1's VM_HSAVE_PA.
    hsave_pa: u64,
    /// L1's global interrupt flag as nsvm emulates it (APM 15.17).
    gif: bool,
    /// While L2 runs: vmcb12's address and L1's RIP after its VMRUN.
    nested: Option<(u64, u64)>,
    /// Nested event log (`nsvm_core::trace`): a ring of LOG_LEN entries and
    /// how many were ever recorded.
    nlog: KVec<TraceEvent>,
    nlog_count: u64,
    /// The last instruction-fetch walk of L1 ([0]) and of L2 ([1])
    /// (`paging::WalkMemo`: exact, it re-reads the entries).
    fetch_walks: [paging::WalkMemo; 2],
    /// Root of the VM's NPT01 (fixed for the VM's life: `Npt::root`), so
    /// that building vmcb02 needs no lock for it.
    npt01_root: u64,
    /// L1's VMRUN was emulated but L2 not entered yet (vmcb02's EVENTINJ
    /// still holds vmcb12's event): KVM_STATE_NESTED_RUN_PENDING.
    run_pending: bool,
    stats: Arc<VcpuStats>,
}

/// RFLAGS.IF.
const RFLAGS_IF: u64 = 1 << 9;

/// The vCPU's counters (`nsvm_core::stats` order), readable through the
/// stats fd while the vCPU runs.
pub(crate) struct VcpuStats {
    v: KVec<AtomicU64>,
}

impl VcpuStats {
    fn new() -> Result<Self> {
        let mut v = KVec::with_capacity(stats::VCPU_COUNT, GFP_KERNEL_ACCOUNT)?;
        for _ in 0..stats::VCPU_COUNT {
            v.push(AtomicU64::new(0), GFP_KERNEL_ACCOUNT)?;
        }
        Ok(Self { v })
    }
    fn bump(&self, i: usize) {
        self.add(i, 1);
    }
    fn add(&self, i: usize, n: u64) {
        if let Some(c) = self.v.get(i) {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// An exit to userspace that the next `KVM_RUN` completes.
#[derive(Clone, Copy)]
enum Pending {
    /// Port I/O; `in_size` is the size of an IN (None for OUT).
    Io { next_rip: u64, in_size: Option<u8> },
    /// MMIO; `read` says where a load's data goes.
    Mmio { next_rip: u64, read: Option<(mmio::Reg, mmio::Extend, u8)> },
    /// INS/OUTS of `count` elements; the guest addresses are in `string_gpas`.
    StrIo { next_rip: u64, is_in: bool, rep: bool, count: u64, size: u8, amask: u64, idx: u8, df: bool },
}

/// One vCPU.
#[pin_data]
pub(crate) struct Vcpu {
    /// debugfs vmcb01 dump file; first field, so it is removed (waiting for
    /// readers) before anything it reads goes away.
    debugfs: hw::DebugfsEntry,
    pub(crate) vm: Arc<Vm>,
    id: u32,
    /// `struct kvm_run` (mmap offset 0).
    run: KPages,
    /// PIO data (mmap offset `KVM_PIO_PAGE_OFFSET` pages). A separate order-0
    /// page: each mapped page needs its own reference count.
    pio: KPages,
    stats: Arc<VcpuStats>,
    #[pin]
    state: Mutex<VcpuState>,
}

/// How L0 resolved a nested page fault of an L2 on shadow NPT02.
enum Npf02 {
    /// The NPT02 leaf was composed: resume L2.
    Filled,
    /// A fault in NPT12: #VMEXIT(NPF) to L1 with this EXITINFO1.
    Fault(u64),
    /// NPT12 leads to this L1 physical address, which no RAM slot backs
    /// (or a write to a read-only slot).
    Unbacked(u64),
}

/// What an exit handler decided.
enum Next {
    /// Re-enter the guest.
    Guest,
    /// Return to userspace (exit_reason already written).
    User,
}

impl Vcpu {
    /// `KVM_CREATE_VCPU`: a new vCPU fd.
    pub(crate) fn create(vm: Arc<Vm>, id: u32) -> Result<isize> {
        let stats = Arc::new(VcpuStats::new()?, GFP_KERNEL_ACCOUNT)?;
        let mut st = VcpuState {
            stats: stats.clone(),
            vmcb: VmcbPage::new()?,
            host_save: KPages::page()?,
            fpu: KPages::page()?,
            gprs: [0; 16],
            guest_efer: 0,
            xcr0: 1,
            apic_base: 0xfee0_0000 | (1 << 11) | if id == 0 { 1 << 8 } else { 0 },
            tsc_aux: 0,
            cpuid: KVec::new(),
            pending: None,
            string_gpas: KVec::new(),
            pending_irq: None,
            pending_nmi: false,
            nmi_masked: false,
            iret_rip: None,
            halted_since: None,
            applied_policy: None,
            vmcb02: VmcbPage::new()?,
            vmcb12: VmcbPage::new()?,
            svm_exposed: false,
            vmcb12_pin: None,
            l1_features: SvmFeatures::empty(),
            npt02: ShadowNpt::new()?,
            hsave_pa: 0,
            gif: true,
            nested: None,
            run_pending: false,
            nlog: KVec::from_elem(TraceEvent::Empty, nsvm_core::trace::LOG_LEN, GFP_KERNEL_ACCOUNT)?,
            nlog_count: 0,
            fetch_walks: Default::default(),
            npt01_root: vm.inner.lock().npt.root_pa(),
        };
        let npt_root = st.npt01_root;
        st.reset(npt_root, false);
        let vcpu = Arc::pin_init(
            try_pin_init!(Vcpu { debugfs: hw::DebugfsEntry::empty(), vm, id, run: KPages::page()?, pio: KPages::page()?, stats, state <- new_mutex!(st, "nsvm_vcpu") }),
            GFP_KERNEL_ACCOUNT,
        )?;
        let mut name = *b"vcpu\0\0\0";
        let mut k = 4;
        if id >= 10 {
            name[k] = b'0' + (id / 10) as u8;
            k += 1;
        }
        name[k] = b'0' + (id % 10) as u8;
        k += 1;
        // SAFETY: the file is the vCPU's first field, removed before the rest
        // of the vCPU is dropped.
        unsafe { vcpu.debugfs.make_vmcb_file(&name[..k], &vcpu.vm.debugfs, Arc::as_ptr(&vcpu).cast()) };
        Ok(crate::fops::new_vcpu_fd(vcpu)? as isize)
    }

    /// The page behind offset `pgoff` of the vCPU mmap.
    pub(crate) fn mmap_page(&self, pgoff: usize) -> Option<*mut kernel::ffi::c_void> {
        match pgoff as u64 {
            0 => self.run.struct_page(0),
            run::PIO_PAGE_OFFSET => self.pio.struct_page(0),
            _ => None,
        }
    }

    /// Handles an ioctl on the vCPU fd.
    pub(crate) fn ioctl(self: &Arc<Self>, cmd: u32, arg: usize) -> Result<isize> {
        // As for the VM fd: statistics are readable from other processes.
        if cmd == uapi::kvm::GET_STATS_FD {
            return Ok(crate::fops::new_vcpu_stats_fd(self.clone())? as isize);
        }
        if hw::current_mm() != self.vm.mm {
            return Err(EIO);
        }
        let user = |len: usize| UserSlice::new(UserPtr::from_addr(arg), len);
        match cmd {
            uapi::kvm::RUN => {
                if arg != 0 {
                    return Err(EINVAL);
                }
                self.run()
            }
            uapi::kvm::GET_REGS => {
                let r = self.state.lock().get_regs();
                user(Regs::SIZE).writer().write_slice(&r.to_bytes())?;
                Ok(0)
            }
            uapi::kvm::SET_REGS => {
                let mut b = [0u8; Regs::SIZE];
                user(Regs::SIZE).reader().read_slice(&mut b)?;
                self.state.lock().set_regs(&Regs::from_bytes(&b));
                Ok(0)
            }
            uapi::kvm::GET_SREGS => {
                let s = self.state.lock().get_sregs();
                user(Sregs::SIZE).writer().write_slice(&s.to_bytes())?;
                Ok(0)
            }
            uapi::kvm::SET_SREGS => {
                let mut b = [0u8; Sregs::SIZE];
                user(Sregs::SIZE).reader().read_slice(&mut b)?;
                let s = Sregs::from_bytes(&b);
                kvm::check_sregs(&s).map_err(|_| EINVAL)?;
                self.state.lock().set_sregs(&s);
                Ok(0)
            }
            uapi::kvm::SET_CPUID2 => self.set_cpuid(arg),
            uapi::kvm::GET_VCPU_EVENTS => {
                let e = self.state.lock().get_events();
                user(kvm::vcpu_events::SIZE).writer().write_slice(&e.to_bytes())?;
                Ok(0)
            }
            uapi::kvm::SET_VCPU_EVENTS => {
                let mut b = [0u8; kvm::vcpu_events::SIZE];
                user(kvm::vcpu_events::SIZE).reader().read_slice(&mut b)?;
                let e = kvm::VcpuEvents::from_bytes(&b);
                if !e.check_set() {
                    return Err(EINVAL);
                }
                self.state.lock().set_events(&e)?;
                Ok(0)
            }
            uapi::kvm::GET_NESTED_STATE => self.get_nested_state(arg),
            uapi::kvm::SET_NESTED_STATE => self.set_nested_state(arg),
            uapi::kvm::INTERRUPT => self.interrupt(arg),
            uapi::kvm::NMI => {
                // KVM_NMI: queued; delivered when L1's GIF and NMI masking
                // allow (or as #VMEXIT(NMI) when L2 runs and L1 intercepts).
                self.state.lock().pending_nmi = true;
                Ok(0)
            }
            uapi::kvm::GET_MSRS | uapi::kvm::SET_MSRS => self.msrs(arg, cmd == uapi::kvm::SET_MSRS),
            uapi::kvm::GET_FPU => {
                let b = self.state.lock().get_fpu();
                user(416).writer().write_slice(&b)?;
                Ok(0)
            }
            uapi::kvm::SET_FPU => {
                let mut b = [0u8; 416];
                user(416).reader().read_slice(&mut b)?;
                self.state.lock().set_fpu(&b)?;
                Ok(0)
            }
            uapi::kvm::GET_TSC_KHZ => Ok(hw::tsc_khz() as isize),
            uapi::kvm::GET_STATS_FD => {
                Ok(crate::fops::new_vcpu_stats_fd(self.clone())? as isize)
            }
            // KVM's kvm_arch_vcpu_ioctl answers unknown vCPU ioctls with EINVAL.
            _ => Err(EINVAL),
        }
    }

    fn set_cpuid(&self, arg: usize) -> Result<isize> {
        let mut hdr = [0u8; 8];
        UserSlice::new(UserPtr::from_addr(arg), 8).reader().read_slice(&mut hdr)?;
        let nent = u32::from_ne_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]) as usize;
        if nent > MAX_CPUID_ENTRIES {
            return Err(E2BIG);
        }
        let mut r = UserSlice::new(UserPtr::from_addr(arg + 8), nent * 40).reader();
        let mut v = KVec::with_capacity(nent, GFP_KERNEL_ACCOUNT)?;
        for _ in 0..nent {
            let mut e = [0u8; 40];
            r.read_slice(&mut e)?;
            let w = |i: usize| u32::from_ne_bytes([e[4 * i], e[4 * i + 1], e[4 * i + 2], e[4 * i + 3]]);
            v.push(
                CpuidEntry { function: w(0), index: w(1), flags: w(2), regs: [w(3), w(4), w(5), w(6)] },
                GFP_KERNEL_ACCOUNT,
            )?;
        }
        let mut st = self.state.lock();
        st.svm_exposed = v.iter().any(|e| e.function == 0x8000_0001 && e.regs[2] & nsvm_core::cpuid::EXT_FEATURES_ECX_SVM != 0);
        let edx = v.iter().find(|e| e.function == nsvm_core::cpuid::LEAF_SVM).map_or(0, |e| e.regs[3]);
        st.l1_features = if st.svm_exposed { SvmFeatures::from_bits_truncate(edx) & nsvm_core::cpuid::L1_FEATURES } else { SvmFeatures::empty() };
        st.cpuid = v;
        Ok(0)
    }

    /// `KVM_GET_NESTED_STATE` (nsvm_core::nested_state has the format): in
    /// guest mode the header, vmcb12's cached controls and L1's saved state;
    /// otherwise the header alone. A buffer smaller than the state gets its
    /// `size` set to what is needed and E2BIG, as in KVM.
    fn get_nested_state(&self, arg: usize) -> Result<isize> {
        use nsvm_core::nested_state::{get_header, HEADER_SIZE, VMCB_SIZE};
        let user = |off: usize, len: usize| UserSlice::new(UserPtr::from_addr(arg + off), len);
        let mut b = [0u8; 4];
        user(4, 4).reader().read_slice(&mut b)?;
        let room = u32::from_ne_bytes(b) as usize;
        let mut st = self.state.lock();
        let h = get_header(st.nested.map(|(pa, _)| pa), st.run_pending, st.gif);
        if room < h.size as usize {
            user(4, 4).writer().write_slice(&h.size.to_ne_bytes())?;
            return Err(E2BIG);
        }
        user(0, HEADER_SIZE).writer().write_slice(&h.to_bytes())?;
        let Some((_, next)) = st.nested else { return Ok(0) };
        // Built in vmcb02's scratch neighbour: a page, not the kernel stack.
        let mut page = VmcbPage::new()?;
        {
            let out = page.get();
            out.control = st.vmcb12.get().control;
            out.save = st.vmcb.get().save;
            // L1's own view: RIP after its VMRUN, EFER as it set it.
            out.save.rip = next;
            out.save.efer = st.guest_efer;
        }
        user(HEADER_SIZE, VMCB_SIZE).writer().write_slice(&page.bytes()[..])?;
        Ok(0)
    }

    /// `KVM_SET_NESTED_STATE`: KVM's checks (nsvm_core::nested_state), then
    /// in guest mode the vCPU's current state becomes L2's (unless it is in
    /// guest mode already), L1's saved state goes to vmcb01, the controls to
    /// vmcb12's cache, and vmcb02 is rebuilt as VMRUN would. Outside guest
    /// mode, a running L2 is dropped and GIF set as given.
    fn set_nested_state(&self, arg: usize) -> Result<isize> {
        use nsvm_core::nested_state::{check_data, check_header, flags, Header, HEADER_SIZE, VMCB_SIZE};
        let user = |off: usize, len: usize| UserSlice::new(UserPtr::from_addr(arg + off), len);
        let mut hb = [0u8; HEADER_SIZE];
        user(0, HEADER_SIZE).reader().read_slice(&mut hb)?;
        let h = Header::from_bytes(&hb);
        let phys = crate::svm::phys_bits();
        let mut guard = self.state.lock();
        let st = &mut *guard;
        if !st.svm_exposed {
            return Err(EINVAL);
        }
        let svme = st.efer() & efer::SVME != 0;
        let guest_mode = check_header(&h, svme, phys).map_err(|_| EINVAL)?;
        let gif = h.flags & flags::GIF_SET != 0;
        if !guest_mode {
            if st.nested.take().is_some() {
                // Leave L2 without a #VMEXIT (KVM's svm_leave_nested).
                st.run_pending = false;
            }
            st.gif = gif;
            return Ok(0);
        }
        let mut page = VmcbPage::new()?;
        user(HEADER_SIZE, VMCB_SIZE).reader().read_slice(&mut page.bytes()[..])?;
        let np_offered = st.l1_features.contains(SvmFeatures::NP);
        {
            let d = page.get();
            d.control.nested_ctl &= if np_offered { nested_ctl::NP_ENABLE } else { 0 };
            check_data(&d.control, &d.save, phys).map_err(|_| EINVAL)?;
            if d.save.efer & efer::LMA == 0 && d.control.nested_ctl & nested_ctl::NP_ENABLE != 0 {
                return Err(EINVAL); // NPT12 walks are long-mode only (docs/nested.md)
            }
        }
        // The current state is L2's (when not already in guest mode).
        if st.nested.is_none() {
            let (v01, v02) = (st.vmcb.get(), st.vmcb02.get());
            v02.save = v01.save;
        }
        let next = {
            let d = page.get();
            let v01 = st.vmcb.get();
            v01.save = d.save;
            v01.save.efer = d.save.efer | efer::SVME;
            let c12 = st.vmcb12.get();
            c12.control = d.control;
            c12.save = nsvm_core::vmcb::SaveArea::ZERO;
            d.save.rip
        };
        st.guest_efer = page.get().save.efer;
        // vmcb01's policy intercepts are rebuilt before the next entry.
        st.applied_policy = None;
        st.apply_policy(self.vm.policy());
        st.nested = Some((h.vmcb_pa, next));
        if let Some(Next::User) = self.build_vmcb02(st, false)? {
            st.nested = None;
            return Err(EINVAL);
        }
        st.run_pending = h.flags & flags::RUN_PENDING != 0;
        if !st.run_pending {
            // vmcb12's event was delivered when L2 first ran.
            let c = &mut st.vmcb02.get().control;
            c.event_inj = 0;
            c.event_inj_err = 0;
        }
        st.gif = gif;
        Ok(0)
    }

    /// The binary stats file (KVM's format) with the current values.
    pub(crate) fn stats_file(&self) -> Result<KVec<u8>> {
        let mut vals = KVec::with_capacity(stats::VCPU_COUNT, GFP_KERNEL)?;
        for c in self.stats.v.iter() {
            vals.push(c.load(Ordering::Relaxed), GFP_KERNEL)?;
        }
        let mut id = [0u8; 24];
        let n = crate::vm::fmt_id(&mut id, self.vm.pid, Some(self.id));
        let mut f = KVec::from_elem(0u8, stats::file_len(vals.len()), GFP_KERNEL)?;
        stats::write_file(&mut f, core::str::from_utf8(&id[..n]).unwrap_or("nsvm"), stats::vcpu_desc, &vals);
        Ok(f)
    }

    /// The text of the debugfs vmcb01 dump, or a note while the vCPU runs
    /// (its VMCB belongs to the processor then).
    pub(crate) fn vmcb_dump(&self) -> Result<KVec<u8>> {
        let mut out = TextBuf(KVec::new());
        match self.state.try_lock() {
            Some(mut st) => {
                let _ = core::fmt::Write::write_fmt(&mut out, format_args!("vmcb01 of vCPU {} (stopped in userspace)\n", self.id));
                let _ = nsvm_core::vmcb::dump(st.vmcb.get(), &mut out);
                if let Some((pa, _)) = st.nested {
                    let _ = core::fmt::Write::write_fmt(&mut out, format_args!("\nvmcb12 at {:#x} (L0's checked copy, as of VMRUN)\n", pa));
                    let _ = nsvm_core::vmcb::dump(st.vmcb12.get(), &mut out);
                    let _ = core::fmt::Write::write_str(&mut out, "\nvmcb02 (what L0 runs L2 with)\n");
                    let _ = nsvm_core::vmcb::dump(st.vmcb02.get(), &mut out);
                    let _ = core::fmt::Write::write_str(&mut out, "\nvmcb12 -> vmcb02 (what the merge and L2's run changed)\n");
                    let s = &mut *st;
                    let _ = nsvm_core::vmcb::diff(s.vmcb12.get(), s.vmcb02.get(), &mut out);
                }
            }
            None => {
                let _ = core::fmt::Write::write_str(&mut out, "vCPU is in KVM_RUN: read again while it is stopped in userspace\n");
            }
        }
        if let Some(st) = self.state.try_lock() {
            if st.nlog_count != 0 {
                let _ = core::fmt::Write::write_fmt(
                    &mut out,
                    format_args!("\nnested events (the last {} of {}, oldest first; KVM tracepoint formats)\n", st.nlog.len().min(st.nlog_count as usize), st.nlog_count),
                );
                for (seq, e) in nsvm_core::trace::in_order(&st.nlog, st.nlog_count) {
                    let _ = core::fmt::Write::write_fmt(&mut out, format_args!("{seq:>8} "));
                    let _ = nsvm_core::trace::write_line(&mut out, self.id, e);
                }
            }
        }
        Ok(out.0)
    }

    fn run_u8(&self, off: usize) -> u8 {
        self.run.read_u8(off)
    }
    fn run_put(&self, off: usize, v: &[u8]) {
        self.run.write(off, v);
    }
    fn set_exit(&self, reason: u32) {
        self.run_put(run::EXIT_REASON, &reason.to_ne_bytes());
    }

    /// `KVM_RUN`.
    fn run(&self) -> Result<isize> {
        let mut st = self.state.lock();
        // Complete port I/O: an IN's data from the PIO page goes to RAX, and
        // RIP moves past the instruction.
        let next_rip = match st.pending.take() {
            Some(Pending::Io { next_rip, in_size }) => {
                if let Some(size) = in_size {
                    let d = self.pio.read_u64(0);
                    let mut regs = st.all_gprs();
                    mmio::load_into(&mut regs, mmio::Reg { num: 0, high8: false }, mmio::Extend::None, size, d);
                    st.set_all_gprs(&regs);
                }
                Some(next_rip)
            }
            Some(Pending::Mmio { next_rip, read }) => {
                if let Some((dst, ext, size)) = read {
                    let d = self.run.read_u64(run::MMIO_DATA);
                    let mut regs = st.all_gprs();
                    mmio::load_into(&mut regs, dst, ext, size, d);
                    st.set_all_gprs(&regs);
                }
                Some(next_rip)
            }
            Some(Pending::StrIo { next_rip, is_in, rep, count, size, amask, idx, df }) => {
                if is_in {
                    let inner = self.vm.inner.lock();
                    let mem = st.guest_mem(&inner);
                    for (k, g) in st.string_gpas.iter().enumerate() {
                        let b = [self.pio.read_u8(k)];
                        mem.write_bytes(*g, &b);
                    }
                }
                let mut regs = st.all_gprs();
                let step = count * u64::from(size);
                let i = idx as usize;
                let moved = if df { regs[i].wrapping_sub(step) } else { regs[i].wrapping_add(step) };
                // Only the address-size part of the registers changes; a
                // 32-bit update zero-extends (APM vol. 3 INS/OUTS).
                let merge = |old: u64, new: u64| if amask == 0xffff_ffff { new & amask } else { (old & !amask) | (new & amask) };
                regs[i] = merge(regs[i], moved);
                let mut done = true;
                if rep {
                    regs[1] = merge(regs[1], regs[1].wrapping_sub(count));
                    done = regs[1] & amask == 0;
                }
                st.set_all_gprs(&regs);
                st.string_gpas.clear();
                done.then_some(next_rip)
            }
            None => None,
        };
        if let Some(rip) = next_rip {
            let vmcb = st.vmcb();
            vmcb.save.rip = rip;
            vmcb.control.int_state &= !nsvm_core::vmcb::int_state::SHADOW;
        }
        if let Some(t) = st.halted_since.take() {
            self.stats.bump(st_idx::HALT_WAKEUPS);
            self.stats.add(st_idx::HALT_WAIT_NS, hw::now_ns().saturating_sub(t));
        }
        // immediate_exit: back at once with EINTR, exit_reason untouched (as KVM).
        if self.run_u8(run::IMMEDIATE_EXIT) != 0 {
            return Err(EINTR);
        }
        let r = loop {
            if hw::signal_pending() {
                self.set_exit(run::EXIT_INTR);
                self.stats.bump(st_idx::SIGNAL_EXITS);
                break Err(EINTR);
            }
            hw::cond_resched();
            let window = self.run_u8(run::REQUEST_INTERRUPT_WINDOW) != 0;
            // An interrupt or NMI for L1 while L2 runs, which L1 intercepts:
            // #VMEXIT(INTR/NMI) to L1 (APM 15.21.1, 15.21.3), the event
            // staying pending for L1 (taken once it sets GIF).
            if st.nested.is_some() && !st.run_pending {
                if let Some(code) = st.l1_event_exit() {
                    let inner = self.vm.inner.lock();
                    {
                        let c = &mut st.vmcb02.get().control;
                        // An event L0 was about to deliver to L2 is reported
                        // as interrupted (EXITINTINFO).
                        let pending = c.event_inj & nsvm_core::event::bits::VALID != 0;
                        c.exit_int_info = if pending { c.event_inj } else { 0 };
                        c.exit_int_info_err = if pending { c.event_inj_err } else { 0 };
                        c.event_inj = 0;
                        c.exit_code = code;
                        c.exit_info_1 = 0;
                        c.exit_info_2 = 0;
                    }
                    if let Some(Next::User) = self.reflect_to_l1(&mut st, &inner, code)? {
                        break Ok(0);
                    }
                }
            }
            st.prepare_interrupts(window);
            st.apply_policy(self.vm.policy());
            if st.l2_np() {
                self.sync_npt02(&mut st);
            }
            if !st.enter() {
                // The guest's state is gone (replaced by the host's): stop
                // the vCPU with a recognizable error rather than run it.
                let (code, rip) = (st.vmcb().control.exit_code, st.vmcb().save.rip);
                hw::note_host_state_in_vmcb(self.id, code);
                self.internal_error(run::INTERNAL_ERROR_UNEXPECTED_EXIT_REASON, &[run::HOST_STATE_IN_VMCB, code, rip]);
                break Ok(0);
            }
            st.run_pending = false;
            match self.handle_exit(&mut st)? {
                Next::Guest => {
                    // KVM: with an open window requested, return as soon as
                    // an interrupt can be injected.
                    if window && st.ready_for_injection() {
                        self.set_exit(run::EXIT_IRQ_WINDOW_OPEN);
                        self.stats.bump(st_idx::IRQ_WINDOW_EXITS);
                        break Ok(0);
                    }
                }
                Next::User => break Ok(0),
            }
        };
        self.stats.bump(st_idx::EXITS_USERSPACE);
        let rflags = st.vmcb().save.rflags;
        self.run_put(run::IF_FLAG, &[u8::from(rflags & RFLAGS_IF != 0)]);
        self.run_put(run::READY_FOR_INTERRUPT_INJECTION, &[u8::from(st.ready_for_injection())]);
        self.run_put(run::CR8, &u64::from(st.vmcb().control.int_ctl & int_ctl::V_TPR_MASK).to_ne_bytes());
        self.run_put(run::APIC_BASE, &st.apic_base.to_ne_bytes());
        r
    }

    /// `KVM_GET_MSRS` / `KVM_SET_MSRS`: `struct kvm_msrs { u32 nmsrs; u32 pad;
    /// struct kvm_msr_entry { u32 index; u32 reserved; u64 data; } entries[]; }`.
    /// Returns how many were processed, stopping at the first refused one.
    fn msrs(&self, arg: usize, set: bool) -> Result<isize> {
        let mut hdr = [0u8; 8];
        UserSlice::new(UserPtr::from_addr(arg), 8).reader().read_slice(&mut hdr)?;
        let n = u32::from_ne_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]) as usize;
        if n > 256 {
            return Err(E2BIG);
        }
        let mut st = self.state.lock();
        for i in 0..n {
            let at = arg + 8 + 16 * i;
            let mut e = [0u8; 16];
            UserSlice::new(UserPtr::from_addr(at), 16).reader().read_slice(&mut e)?;
            let index = u32::from_ne_bytes([e[0], e[1], e[2], e[3]]);
            let mut d = [0u8; 8];
            d.copy_from_slice(&e[8..16]);
            if set {
                if !st.write_msr(index, u64::from_ne_bytes(d)) {
                    return Ok(i as isize);
                }
            } else {
                match st.read_msr(index) {
                    Some(v) => UserSlice::new(UserPtr::from_addr(at + 8), 8).writer().write_slice(&v.to_ne_bytes())?,
                    None => return Ok(i as isize),
                }
            }
        }
        Ok(n as isize)
    }

    /// `KVM_INTERRUPT` (no in-kernel irqchip): queue external interrupt
    /// `irq`, injected when the guest can take it.
    fn interrupt(&self, arg: usize) -> Result<isize> {
        let mut b = [0u8; 4];
        UserSlice::new(UserPtr::from_addr(arg), 4).reader().read_slice(&mut b)?;
        let irq = u32::from_ne_bytes(b);
        if irq >= 256 {
            return Err(EINVAL);
        }
        let mut st = self.state.lock();
        if st.pending_irq.is_some() {
            return Err(ENXIO);
        }
        st.pending_irq = Some(irq as u8);
        Ok(0)
    }

    fn handle_exit(&self, st: &mut VcpuState) -> Result<Next> {
        if st.nested.is_none() {
            self.stats.bump(st_idx::L1_EXITS);
        } else if let Some(next) = self.l2_exit_for_l1(st)? {
            return Ok(next);
        }
        if let Some(r) = st.iret_rip {
            if st.nested.is_none() && st.vmcb.get().save.rip != r {
                st.iret_rip = None;
                st.nmi_masked = false;
            }
        }
        let vmcb = st.vmcb();
        let code = vmcb.control.exit_code;
        let info1 = vmcb.control.exit_info_1;
        let info2 = vmcb.control.exit_info_2;
        // An event interrupted during delivery is delivered again (APM 15.7.2).
        let pending = Event { info: vmcb.control.exit_int_info, error_code: vmcb.control.exit_int_info_err };
        vmcb.control.event_inj = 0;
        self.stats.bump(st_idx::EXITS);
        self.stats.bump(stats::exit_counter(code));
        // Software interrupts (INTn, and INT3/INTO as #BP/#OF) interrupted
        // during delivery are not injected again: without NRIPS the VMCB
        // has no next RIP to push (APM 15.20), so the instruction, whose
        // address is still RIP, simply executes again (as KVM does).
        let soft = pending.event_type() == Some(EventType::SoftInt)
            || (pending.event_type() == Some(EventType::Exception) && matches!(pending.vector(), 3 | 4));
        if pending.valid() && !soft {
            self.stats.bump(st_idx::REINJECTIONS);
            vmcb.control.event_inj = pending.info;
            vmcb.control.event_inj_err = pending.error_code;
        }
        if Vmcb::exit_is_invalid(code) {
            // Name the rule (APM 15.5.1) in the log and the statistics.
            let phys = crate::svm::phys_bits();
            let v = st.vmcb();
            match nsvm_core::checks::check_vmrun(&v.save, &v.control, phys) {
                Err(c) => {
                    self.stats.bump(stats::INVALID_BASE + c.index());
                    pr_warn!("vCPU {}: VMRUN refused the state: {} (APM 15.5.1)\n", self.id, c.name());
                }
                Ok(()) => pr_warn!("vCPU {}: VMRUN refused the state (VMEXIT_INVALID) for a rule nsvm does not model\n", self.id),
            }
            self.set_exit(run::EXIT_FAIL_ENTRY);
            self.run_put(run::FAIL_ENTRY_REASON, &code.to_ne_bytes());
            let cpu = kernel::cpu::CpuId::current().as_u32();
            self.run_put(run::FAIL_ENTRY_CPU, &cpu.to_ne_bytes());
            return Ok(Next::User);
        }
        match code {
            exit::INTR | exit::NMI | exit::SMI => Ok(Next::Guest),
            exit::IRET => {
                // Set by L0 while L1 handles an NMI: the IRET about to run
                // ends it. NMIs unmask once RIP has moved past it.
                if st.nested.is_none() {
                    let v = st.vmcb.get();
                    v.control.intercepts.clear(exit::IRET);
                    st.iret_rip = Some(v.save.rip);
                }
                Ok(Next::Guest)
            }
            exit::VINTR => {
                // The interrupt window is open (APM 15.21.4): drop the fake
                // V_IRQ; prepare_interrupts injects or reopens as needed.
                st.close_irq_window();
                Ok(Next::Guest)
            }
            exit::CPUID => {
                let leaf = vmcb.save.rax as u32;
                let sub = st.gprs[1] as u32;
                let r = st.cpuid_lookup(leaf, sub);
                let cr4 = st.vmcb().save.cr4;
                let r = nsvm_core::cpuid::runtime_adjust(leaf, sub, r, cr4, xsave_size(st.xcr0));
                st.vmcb().save.rax = u64::from(r[0]);
                st.gprs[3] = u64::from(r[1]);
                st.gprs[1] = u64::from(r[2]);
                st.gprs[2] = u64::from(r[3]);
                self.skip(st, Known::Cpuid)
            }
            exit::HLT => {
                if let Next::User = self.skip(st, Known::Hlt)? {
                    return Ok(Next::User);
                }
                self.set_exit(run::EXIT_HLT);
                self.stats.bump(st_idx::HALT_EXITS);
                st.halted_since = Some(hw::now_ns());
                Ok(Next::User)
            }
            exit::IOIO => self.io(st, info1, info2),
            exit::SHUTDOWN => {
                // The VMCB is undefined after a shutdown intercept (APM
                // 15.12): reset the vCPU, as KVM does, and report it.
                let root = self.vm.inner.lock().npt.root_pa();
                st.reset(root, true);
                self.set_exit(run::EXIT_SHUTDOWN);
                Ok(Next::User)
            }
            exit::NPF => self.npf(st, info1, info2),
            exit::MSR => self.msr(st, info1 & 1 != 0),
            exit::VMMCALL => {
                // No hypercalls yet: KVM answers unknown ones with -KVM_ENOSYS.
                st.vmcb().save.rax = KVM_ENOSYS.wrapping_neg();
                self.skip(st, Known::Vmmcall)
            }
            exit::XSETBV => self.xsetbv(st),
            exit::IDTR_READ | exit::GDTR_READ | exit::LDTR_READ | exit::TR_READ | exit::READ_CR0
            | exit::PUSHF | exit::POPF | exit::RDTSC => self.sensitive(st, code),
            c if (exit::EXCP_BASE..exit::EXCP_BASE + 32).contains(&c) => {
                // An exception the policy intercepts: deliver it to the guest
                // unchanged (error code in EXITINFO1, #PF address in
                // EXITINFO2, APM 15.12). It supersedes an event whose
                // delivery it interrupted, as the hardware would have
                // delivered it next.
                let vec = (c - exit::EXCP_BASE) as u8;
                if vec == 14 {
                    st.vmcb().save.cr2 = info2;
                }
                let ec = nsvm_core::sensitive::has_error_code(vec).then_some(info1 as u32);
                st.inject(Event::new(EventType::Exception, vec, ec));
                Ok(Next::Guest)
            }
            exit::INVD => self.skip(st, Known::Invd),
            // SVM is not exposed to the guest (yet): its instructions are #UD
            // (APM 15.4: with EFER.SVME = 0 they raise #UD).
            exit::VMRUN | exit::VMLOAD | exit::VMSAVE | exit::STGI | exit::CLGI | exit::INVLPGA
                if st.svm_exposed && st.efer() & efer::SVME != 0 =>
            {
                self.svm_insn(st, code)
            }
            exit::VMRUN | exit::VMLOAD | exit::VMSAVE | exit::STGI | exit::CLGI | exit::SKINIT
            | exit::INVLPGA | exit::MONITOR | exit::MWAIT | exit::MWAIT_COND | exit::RDPRU => {
                st.inject(Event::new(EventType::Exception, 6, None));
                Ok(Next::Guest)
            }
            _ => {
                pr_warn!("vCPU {}: unexpected exit {:#x} ({})\n", self.id, code, exit::name(code).unwrap_or("?"));
                self.internal_error(run::INTERNAL_ERROR_UNEXPECTED_EXIT_REASON, &[code, info1, info2]);
                Ok(Next::User)
            }
        }
    }

    fn internal_error(&self, sub: u32, data: &[u64]) {
        self.set_exit(run::EXIT_INTERNAL_ERROR);
        self.run_put(run::INTERNAL_SUBERROR, &sub.to_ne_bytes());
        self.run_put(run::INTERNAL_NDATA, &(data.len() as u32).to_ne_bytes());
        for (i, d) in data.iter().enumerate() {
            self.run_put(run::INTERNAL_DATA + 8 * i, &d.to_ne_bytes());
        }
    }

    /// Advances RIP past the intercepted instruction `which`, decoding its
    /// length from guest memory (no NRIPS). An undecodable instruction ends
    /// in `KVM_EXIT_INTERNAL_ERROR` (emulation failure), as in KVM.
    fn skip(&self, st: &mut VcpuState, which: Known) -> Result<Next> {
        let mut bytes = [0u8; 15];
        let n = {
            let inner = self.vm.inner.lock();
            st.fetch(&inner, &mut bytes)
        };
        let long = st.vmcb().save.cs.attrib & nsvm_core::vmcb::seg_attr::L != 0
            && st.efer() & efer::LMA != 0;
        match insn::length_of(&bytes[..n], which, long) {
            Some(len) => {
                let v = st.vmcb();
                v.save.rip = v.save.rip.wrapping_add(len as u64);
                if !long {
                    v.save.rip &= 0xffff_ffff;
                }
                // Skipping an instruction ends an interrupt shadow.
                v.control.int_state &= !nsvm_core::vmcb::int_state::SHADOW;
                Ok(Next::Guest)
            }
            None => {
                let rip = st.vmcb().save.rip;
                let mut w = [0u64; 2];
                for (i, b) in bytes.iter().enumerate() {
                    w[i / 8] |= u64::from(*b) << (8 * (i % 8));
                }
                self.internal_error(run::INTERNAL_ERROR_EMULATION, &[rip, n as u64, w[0], w[1]]);
                Ok(Next::User)
            }
        }
    }

    /// IOIO intercept (APM 15.10.2): EXITINFO1 has the port, size and
    /// direction; EXITINFO2 the RIP of the next instruction.
    fn io(&self, st: &mut VcpuState, info1: u64, info2: u64) -> Result<Next> {
        let is_in = info1 & 1 != 0;
        let string = info1 & (1 << 2) != 0;
        let size: u8 = if info1 & (1 << 4) != 0 {
            1
        } else if info1 & (1 << 5) != 0 {
            2
        } else {
            4
        };
        let port = (info1 >> 16) as u16;
        if string {
            return self.string_io(st, info1, info2, is_in, size, port);
        }
        self.run_put(run::IO_DIRECTION, &[if is_in { run::IO_IN } else { run::IO_OUT }]);
        self.run_put(run::IO_SIZE, &[size]);
        self.run_put(run::IO_PORT, &port.to_ne_bytes());
        self.run_put(run::IO_COUNT, &1u32.to_ne_bytes());
        self.run_put(run::IO_DATA_OFFSET, &(run::PIO_PAGE_OFFSET * 4096).to_ne_bytes());
        if !is_in {
            let d = st.vmcb().save.rax.to_ne_bytes();
            self.pio.write(0, &d[..size as usize]);
        }
        st.pending = Some(Pending::Io { next_rip: info2, in_size: is_in.then_some(size) });
        self.set_exit(run::EXIT_IO);
        self.stats.bump(st_idx::IO_EXITS);
        Ok(Next::User)
    }

    /// INS/OUTS, with or without REP (APM 15.10.2; EXITINFO1 bits 9:7 give
    /// the address size). As KVM: the data in the PIO page in execution
    /// order, RSI/RDI/RCX updated when userspace completes, and the
    /// instruction re-executed while RCX != 0.
    fn string_io(&self, st: &mut VcpuState, info1: u64, info2: u64, is_in: bool, size: u8, port: u16) -> Result<Next> {
        let rep = info1 & (1 << 3) != 0;
        let asize: u8 = if info1 & (1 << 9) != 0 { 8 } else if info1 & (1 << 8) != 0 { 4 } else { 2 };
        let amask = if asize == 8 { u64::MAX } else { (1u64 << (8 * asize)) - 1 };
        let regs = st.all_gprs();
        let mut count = if rep { regs[1] & amask } else { 1 };
        if count == 0 {
            // REP with rCX = 0: nothing happens.
            st.vmcb().save.rip = info2;
            return Ok(Next::Guest);
        }
        // Batching as KVM's emulator does it, so that userspace sees the same
        // exits on both: OUTS one element per exit; INS up to 1 KiB, within
        // the page of rDI (pio_in_emulated: min(bytes left in the page,
        // 1024 / size, count)).
        count = if is_in {
            let off = regs[7] & 0xfff;
            let df = st.vmcb().save.rflags & (1 << 10) != 0;
            let in_page = if df { off } else { 4096 - off };
            core::cmp::min(core::cmp::min(in_page, 1024 / u64::from(size)), count).max(1)
        } else {
            1
        };
        let inner = self.vm.inner.lock();
        // Segment: INS writes ES:rDI; OUTS reads DS:rSI or the override prefix.
        let mut bytes = [0u8; 15];
        let n = st.fetch(&inner, &mut bytes);
        let seg_base = st.string_segment_base(is_in, &bytes[..n]);
        let idx = if is_in { 7 } else { 6 };
        let start = regs[idx] & amask;
        let df = st.vmcb().save.rflags & (1 << 10) != 0;
        let la = |i: u64| {
            let off = if df { start.wrapping_sub(i) } else { start.wrapping_add(i) };
            seg_base.wrapping_add(off & amask)
        };
        // Translate every byte's page up front: a fault is delivered to the
        // guest (#PF with CR2) before anything reaches userspace.
        let total = count * u64::from(size);
        let mut gpas: KVec<u64> = KVec::with_capacity(total as usize, GFP_KERNEL)?;
        for i in 0..count {
            for b in 0..u64::from(size) {
                let elem = if df { la(i * u64::from(size)).wrapping_add(b) } else { la(i * u64::from(size) + b) };
                match st.translate(&inner, elem, is_in) {
                    Ok(g) => gpas.push(g, GFP_KERNEL)?,
                    Err(pf) => {
                        let v = st.vmcb();
                        v.save.cr2 = elem;
                        st.inject(Event::new(EventType::Exception, 14, Some(pf.error_code)));
                        return Ok(Next::Guest);
                    }
                }
            }
        }
        let mem = st.guest_mem(&inner);
        if !is_in {
            for (k, g) in gpas.iter().enumerate() {
                let mut b = [0u8; 1];
                if !mem.read_bytes(*g, &mut b) {
                    let rip = st.vmcb().save.rip;
                    self.internal_error(run::INTERNAL_ERROR_EMULATION, &[rip, info1, *g]);
                    return Ok(Next::User);
                }
                self.pio.write(k, &b);
            }
        }
        drop(inner);
        self.run_put(run::IO_DIRECTION, &[if is_in { run::IO_IN } else { run::IO_OUT }]);
        self.run_put(run::IO_SIZE, &[size]);
        self.run_put(run::IO_PORT, &port.to_ne_bytes());
        self.run_put(run::IO_COUNT, &(count as u32).to_ne_bytes());
        self.run_put(run::IO_DATA_OFFSET, &(run::PIO_PAGE_OFFSET * 4096).to_ne_bytes());
        st.string_gpas = gpas;
        st.pending = Some(Pending::StrIo { next_rip: info2, is_in, rep, count, size, amask, idx: idx as u8, df });
        self.set_exit(run::EXIT_IO);
        self.stats.bump(st_idx::IO_EXITS);
        Ok(Next::User)
    }

    /// Nested page fault on NPT01 (APM 15.25.6): RAM gets mapped; anything
    /// else is MMIO for userspace (decoding comes next).
    fn npf(&self, st: &mut VcpuState, info1: u64, gpa: u64) -> Result<Next> {
        let write = info1 & (1 << 1) != 0;
        let mut inner = self.vm.inner.lock();
        let inner = &mut *inner;
        if let Some(slot) = inner.slots.find(gpa).copied() {
            if !(write && slot.readonly()) {
                inner.npt.map(&slot, gpa)?;
                self.stats.bump(st_idx::NPT_FILLS);
                return Ok(Next::Guest);
            }
        }
        self.mmio(st, inner, gpa)
    }

    /// An access of the running guest to `gpa` (L1 physical) that no RAM
    /// slot takes (MMIO, or a write to a read-only slot): decodes the
    /// instruction at RIP and exits to userspace with KVM_EXIT_MMIO.
    fn mmio(&self, st: &mut VcpuState, inner: &VmInner, gpa: u64) -> Result<Next> {
        let mut bytes = [0u8; 15];
        let n = st.fetch(inner, &mut bytes);
        let cs = st.code_size();
        let rip = st.vmcb().save.rip;
        let acc = match mmio::decode(&bytes[..n], cs) {
            Ok(a) => a,
            Err(_) => {
                let mut w = [0u64; 2];
                for (i, b) in bytes.iter().enumerate() {
                    w[i / 8] |= u64::from(*b) << (8 * (i % 8));
                }
                self.internal_error(run::INTERNAL_ERROR_EMULATION, &[rip, gpa, n as u64, w[0], w[1]]);
                return Ok(Next::User);
            }
        };
        let regs = st.all_gprs();
        let (is_write, data, read) = match acc.op {
            mmio::Op::Read { dst, ext } => (false, 0, Some((dst, ext, acc.size))),
            mmio::Op::WriteReg(r) => (true, mmio::store_value(&regs, r, acc.size), None),
            mmio::Op::WriteImm(v) => (true, v, None),
        };
        self.run_put(run::MMIO_PHYS_ADDR, &gpa.to_ne_bytes());
        self.run_put(run::MMIO_DATA, &data.to_ne_bytes());
        self.run_put(run::MMIO_LEN, &u32::from(acc.size).to_ne_bytes());
        self.run_put(run::MMIO_IS_WRITE, &[u8::from(is_write)]);
        let mut next_rip = rip.wrapping_add(u64::from(acc.len));
        if cs != mmio::CodeSize::Bits64 {
            next_rip &= 0xffff_ffff;
        }
        st.pending = Some(Pending::Mmio { next_rip, read });
        self.set_exit(run::EXIT_MMIO);
        self.stats.bump(st_idx::MMIO_EXITS);
        Ok(Next::User)
    }

    /// RDMSR/WRMSR (APM 15.11): the MSRs a 64-bit OS needs; others #GP.
    fn msr(&self, st: &mut VcpuState, write: bool) -> Result<Next> {
        let index = st.gprs[1] as u32;
        let value = (st.vmcb().save.rax & 0xffff_ffff) | (st.gprs[2] << 32);
        let ok = if write { st.write_msr(index, value) } else {
            match st.read_msr(index) {
                Some(v) => {
                    st.vmcb().save.rax = v & 0xffff_ffff;
                    st.gprs[2] = v >> 32;
                    true
                }
                None => false,
            }
        };
        if !ok {
            st.inject(Event::new(EventType::Exception, 13, Some(0)));
            return Ok(Next::Guest);
        }
        self.skip(st, if write { Known::Wrmsr } else { Known::Rdmsr })
    }

    /// A sensitive instruction intercepted by the VM's policy: emulated with
    /// its architectural effect (`nsvm_core::sensitive`), so the guest sees
    /// what it would have seen; only the per-exit counters tell.
    fn sensitive(&self, st: &mut VcpuState, code: u64) -> Result<Next> {
        use nsvm_core::sensitive;
        let inner = self.vm.inner.lock();
        let mut bytes = [0u8; 15];
        let n = st.fetch(&inner, &mut bytes);
        let s = st.sens_state();
        let e = match sensitive::emulate(code, &bytes[..n], &s) {
            Ok(e) => e,
            Err(_) => {
                let mut w = [0u64; 2];
                for (i, b) in bytes.iter().enumerate() {
                    w[i / 8] |= u64::from(*b) << (8 * (i % 8));
                }
                self.internal_error(run::INTERNAL_ERROR_EMULATION, &[s.rip, code, w[0], w[1]]);
                return Ok(Next::User);
            }
        };
        let mut regs = s.regs;
        let mut rflags = s.rflags;
        if let Some((la, size)) = e.read {
            // POPF: read the stack, then compute the new flags.
            let mut d = [0u8; 8];
            for k in 0..size as usize {
                let a = la.wrapping_add(k as u64);
                match st.translate(&inner, a, false) {
                    Ok(g) => {
                        if !st.guest_mem(&inner).read_bytes(g, &mut d[k..k + 1]) {
                            self.internal_error(run::INTERNAL_ERROR_EMULATION, &[s.rip, code, g]);
                            return Ok(Next::User);
                        }
                    }
                    Err(pf) => return Ok(st.page_fault(a, pf)),
                }
            }
            let real = s.cs == Some(mmio::CodeSize::Bits16) && st.vmcb().save.cr0 & kvm::cr::CR0_PE == 0;
            rflags = sensitive::popf_complete(s.rflags, u64::from_le_bytes(d), size, s.cpl, real);
        }
        if let Some((la, data, cnt)) = e.mem {
            // Translate every byte before writing any (a #PF leaves memory alone).
            let mut gpas = [0u64; 10];
            for k in 0..cnt as usize {
                let a = la.wrapping_add(k as u64);
                match st.translate(&inner, a, true) {
                    Ok(g) => gpas[k] = g,
                    Err(pf) => return Ok(st.page_fault(a, pf)),
                }
            }
            for k in 0..cnt as usize {
                if !st.guest_mem(&inner).write_bytes(gpas[k], &data[k..k + 1]) {
                    self.internal_error(run::INTERNAL_ERROR_EMULATION, &[s.rip, code, gpas[k]]);
                    return Ok(Next::User);
                }
            }
        }
        drop(inner);
        if let Some((r, val, size)) = e.reg {
            mmio::load_into(&mut regs, mmio::Reg { num: r, high8: false }, mmio::Extend::None, size, val);
        }
        if code == exit::RDTSC {
            let tsc = hw::rdtsc().wrapping_add(st.vmcb().control.tsc_offset);
            regs[0] = tsc & 0xffff_ffff;
            regs[2] = tsc >> 32;
        }
        if let Some(rsp) = e.rsp {
            regs[4] = rsp;
        }
        st.set_all_gprs(&regs);
        let long = s.cs == Some(mmio::CodeSize::Bits64);
        let v = st.vmcb();
        v.save.rflags = rflags;
        let mut rip = s.rip.wrapping_add(u64::from(e.len));
        if !long {
            rip &= 0xffff_ffff;
        }
        v.save.rip = rip;
        v.control.int_state &= !nsvm_core::vmcb::int_state::SHADOW;
        Ok(Next::Guest)
    }

    /// An exit of L2: when L1 asked for it (`reflect::decide` on vmcb12's
    /// intercepts and L1's permission maps), performs the #VMEXIT L1 expects
    /// (APM 15.6): L2's state and the exit information go to vmcb12 in L1's
    /// memory, L1 resumes after its VMRUN with GIF clear. Returns whether it
    /// did (or what else ended the exit); `None`: L0 handles it for L2.
    fn l2_exit_for_l1(&self, st: &mut VcpuState) -> Result<Option<Next>> {
        use nsvm_core::reflect::{decide, Decision};
        let (code, info1) = {
            let v = st.vmcb02.get();
            (v.control.exit_code, v.control.exit_info_1)
        };
        let e = {
            let v = st.vmcb02.get();
            let c = &v.control;
            TraceEvent::VmExit { rip: v.save.rip, reason: code, info1, info2: c.exit_info_2, intr_info: c.exit_int_info, error_code: c.exit_int_info_err }
        };
        st.log(e);
        // L2 on shadow NPT02: the fault is either in NPT12 (L1's to see, as
        // #VMEXIT(NPF) with the error code of the NPT12 walk), or L0's to
        // resolve by composing the missing NPT02 leaf.
        let mut npf12 = false;
        if code == exit::NPF && st.l2_np() {
            match self.npf02(st)? {
                Npf02::Filled => {
                    self.stats.bump(st_idx::L2_EXITS_L0);
                    // Counted as every other exit L0 handles (`exits`).
                    self.stats.bump(st_idx::EXITS);
                    self.stats.bump(stats::exit_counter(code));
                    return Ok(Some(Next::Guest));
                }
                Npf02::Fault(info1) => {
                    st.vmcb02.get().control.exit_info_1 = info1;
                    self.stats.bump(st_idx::NPT12_FAULTS);
                    npf12 = true;
                }
                Npf02::Unbacked(l1_gpa) => {
                    // L2 reaches L1's MMIO through NPT12: userspace sees the
                    // L1 physical address (as with KVM), the instruction is
                    // fetched and decoded through L2's paging and NPT12.
                    self.stats.bump(st_idx::L2_EXITS_L0);
                    self.stats.bump(st_idx::EXITS);
                    self.stats.bump(stats::exit_counter(code));
                    let inner = self.vm.inner.lock();
                    return self.mmio(st, &inner, l1_gpa).map(Some);
                }
            }
        }
        let inner = self.vm.inner.lock();
        let mem = GuestMem::l1(&inner);
        let (iopm, msrpm, l1_intercepts) = {
            let c12 = &st.vmcb12.get().control;
            (c12.iopm_base_pa & !0xfff, c12.msrpm_base_pa & !0xfff, c12.intercepts)
        };
        let bit = |base: u64, n: u32| {
            let mut b = [0u8; 1];
            mem.read_bytes(base + u64::from(n / 8), &mut b).then(|| b[0] & (1 << (n % 8)) != 0)
        };
        let msr_index = st.gprs[1] as u32;
        let mut d = decide(code, info1, &l1_intercepts, |n| bit(msrpm, n), |n| bit(iopm, n), msr_index);
        // L2's shutdown goes to L1 only when L1 intercepts it (`decide`);
        // otherwise L1 itself shuts down (APM 15.12; KVM: KVM_EXIT_SHUTDOWN).
        if Vmcb::exit_is_invalid(code) || npf12 {
            d = Decision::L1;
        }
        if d == Decision::L0 {
            self.stats.bump(st_idx::L2_EXITS_L0);
            return Ok(None);
        }
        self.reflect_to_l1(st, &inner, code)
    }

    /// The #VMEXIT L1 expects for the exit in vmcb02's exit fields (APM
    /// 15.6): what #VMEXIT writes goes to vmcb12 in L1's memory, L1 resumes
    /// after its VMRUN with GIF clear.
    fn reflect_to_l1(&self, st: &mut VcpuState, inner: &VmInner, code: u64) -> Result<Option<Next>> {
        let mem = GuestMem::l1(inner);
        self.stats.bump(st_idx::L2_EXITS_REFLECTED);
        // NRIPS for L1 (emulated, APM 15.7.1): the next RIP of an intercepted
        // instruction, decoded by L0 (no NRIPS under TCG), 0 otherwise.
        let nrip = st.l2_next_rip(inner, code);
        let Some((pa12, next)) = st.nested.take() else { return Ok(None) };
        // vmcb12 := L2's state and the exit information (field by field from
        // the pages: no 4 KiB copies on the kernel stack).
        {
            let v02 = st.vmcb02.get();
            let c12 = st.vmcb12.get();
            let c = &mut c12.control;
            c.exit_code = if Vmcb::exit_is_invalid(v02.control.exit_code) { exit::INVALID } else { v02.control.exit_code };
            c.exit_info_1 = v02.control.exit_info_1;
            c.exit_info_2 = v02.control.exit_info_2;
            c.exit_int_info = v02.control.exit_int_info;
            c.exit_int_info_err = v02.control.exit_int_info_err;
            c.int_state = v02.control.int_state;
            let virq = int_ctl::V_TPR_MASK | int_ctl::V_IRQ | if c.int_ctl & int_ctl::V_GIF_ENABLE != 0 { int_ctl::V_GIF } else { 0 };
            c.int_ctl = (c.int_ctl & !virq) | (v02.control.int_ctl & virq);
            c.event_inj = 0;
            c.event_inj_err = 0;
            c.next_rip = nrip;
        }
        // Only what #VMEXIT writes (APM 15.6): L1's edits to the rest of
        // vmcb12 while L2 ran stay.
        let c = &st.vmcb12.get().control;
        let e = TraceEvent::VmExitInject { reason: c.exit_code, info1: c.exit_info_1, info2: c.exit_info_2, exit_int_info: c.exit_int_info, exit_int_info_err: c.exit_int_info_err };
        st.log(e);
        // Control fields from vmcb12's cache (just updated), state from
        // vmcb02; into the pinned page when it is still vmcb12's.
        let gen = self.vm.memory_generation.load(Ordering::Acquire);
        let pin = st.vmcb12_pin.as_ref().filter(|(g, n, _)| *g == pa12 && *n == gen).map(|(_, _, p)| p);
        let (b12, b02) = (st.vmcb12.bytes(), st.vmcb02.bytes());
        let src = |o: usize, l: usize| if o >= 0x400 { &b02[o..o + l] } else { &b12[o..o + l] };
        let ok = match pin.and_then(|p| p.writer()) {
            // Each range as a constant-size write (unrolled over the table).
            Some(w) => {
                use nsvm_core::vmcb::EXIT_WRITEBACK as WB;
                macro_rules! put {
                    ($($k:literal)*) => { true $(&& {
                        const R: (usize, usize) = WB[$k];
                        <&[u8; R.1]>::try_from(src(R.0, R.1)).is_ok_and(|d| w.put(R.0, d))
                    })* };
                }
                const _: () = assert!(WB.len() == 14);
                put!(0 1 2 3 4 5 6 7 8 9 10 11 12 13)
            }
            None => nsvm_core::vmcb::EXIT_WRITEBACK.iter().all(|&(o, l)| mem.write_bytes(pa12 + o as u64, src(o, l))),
        };
        // What VMLOAD/VMSAVE move is not switched by #VMEXIT: L1 goes on
        // with L2's values until it loads its own (APM 15.5.2).
        let (v1, v2) = (st.vmcb.get(), st.vmcb02.get());
        v1.save.copy_vmload_state(&v2.save);
        v1.save.rip = next;
        v1.control.event_inj = 0;
        st.gif = false;
        if !ok {
            // vmcb12 is no longer writable RAM: L1 cannot be told; stop.
            self.internal_error(run::INTERNAL_ERROR_EMULATION, &[next, pa12]);
            return Ok(Some(Next::User));
        }
        self.stats.bump(st_idx::EXITS);
        self.stats.bump(stats::exit_counter(code));
        Ok(Some(Next::Guest))
    }


    /// VMRUN, VMLOAD, VMSAVE, STGI, CLGI, INVLPGA executed by L1 with
    /// EFER.SVME set (APM 15.5, 15.5.2, 15.17, 15.16.4).
    fn svm_insn(&self, st: &mut VcpuState, code: u64) -> Result<Next> {
        // The same instructions executed by an L2 that L1 lets run them (it
        // must intercept VMRUN, APM 15.5.1) act on L2's own state.
        let l2 = st.nested.is_some();
        if st.vmcb().save.cpl != 0 {
            st.inject(Event::new(EventType::Exception, 13, Some(0)));
            return Ok(Next::Guest);
        }
        let byte = match code {
            exit::VMRUN => 0xd8,
            exit::VMLOAD => 0xda,
            exit::VMSAVE => 0xdb,
            exit::STGI => 0xdc,
            exit::CLGI => 0xdd,
            _ => 0xdf, // INVLPGA
        };
        let rip = st.vmcb().save.rip;
        let len = {
            let inner = self.vm.inner.lock();
            let mut b = [0u8; 15];
            let (n, long) = st.fetch_insn(&inner, &mut b);
            insn::length_of(&b[..n], Known::Svm(byte), long)
        };
        let Some(len) = len else {
            self.internal_error(run::INTERNAL_ERROR_EMULATION, &[rip, code]);
            return Ok(Next::User);
        };
        let next = rip.wrapping_add(len as u64);
        match code {
            exit::STGI | exit::CLGI => {
                // L2's: with vGIF enabled by L1 they move V_GIF (APM 15.33.2);
                // otherwise L2's own GIF is not modelled (docs/nested.md).
                if !l2 {
                    st.gif = code == exit::STGI;
                } else {
                    let c = &mut st.vmcb02.get().control;
                    if c.int_ctl & int_ctl::V_GIF_ENABLE != 0 {
                        c.int_ctl = if code == exit::STGI { c.int_ctl | int_ctl::V_GIF } else { c.int_ctl & !int_ctl::V_GIF };
                    }
                }
                st.vmcb().save.rip = next;
                Ok(Next::Guest)
            }
            exit::INVLPGA => {
                // Every entry flushes the whole TLB: nothing to do.
                st.vmcb().save.rip = next;
                Ok(Next::Guest)
            }
            exit::VMLOAD | exit::VMSAVE => self.vmload_vmsave(st, code == exit::VMLOAD, next),
            _ if l2 => {
                // Unreachable: VMRUN intercepted by L1 is a checked rule.
                self.internal_error(run::INTERNAL_ERROR_EMULATION, &[rip, code]);
                Ok(Next::User)
            }
            _ => self.vmrun_l1(st, next),
        }
    }

    /// Checks RAX as a VMCB address for VMRUN/VMLOAD/VMSAVE (APM 15.5: #GP
    /// unless page aligned and within the physical address width).
    fn vmcb_address(st: &mut VcpuState) -> Option<u64> {
        let pa = st.vmcb().save.rax;
        let phys = crate::svm::phys_bits();
        if pa & 0xfff != 0 || pa >> phys != 0 {
            st.inject(Event::new(EventType::Exception, 13, Some(0)));
            return None;
        }
        Some(pa)
    }

    /// VMLOAD/VMSAVE (APM 15.5.2): FS, GS, TR, LDTR with their hidden state,
    /// KernelGsBase, STAR, LSTAR, CSTAR, SFMASK, SYSENTER_CS/ESP/EIP between
    /// the VMCB at RAX (in the running guest's physical memory) and the
    /// running guest's state (L1's, or L2's when L1 does not intercept).
    fn vmload_vmsave(&self, st: &mut VcpuState, load: bool, next: u64) -> Result<Next> {
        let Some(pa) = Self::vmcb_address(st) else { return Ok(Next::Guest) };
        // L1 runs: vmcb12's cache is free to serve as the scratch copy. L2
        // runs (rare): a page of its own, vmcb12's cache is in use.
        let mut own = if st.nested.is_some() { Some(VmcbPage::new()?) } else { None };
        let inner = self.vm.inner.lock();
        let mem = st.guest_mem(&inner);
        let ok = {
            let (scratch, cur) = match own.as_mut() {
                Some(p) => (p, &mut st.vmcb02),
                None => (&mut st.vmcb12, &mut st.vmcb),
            };
            // Only the save area holds what VMLOAD loads and VMSAVE stores.
            if !mem.read_bytes(pa + 0x400, &mut scratch.bytes()[0x400..]) {
                false
            } else if load {
                cur.get().save.copy_vmload_state(&scratch.get().save);
                true
            } else {
                scratch.get().save.copy_vmload_state(&cur.get().save);
                // Only the save area holds what VMSAVE stores.
                mem.write_bytes(pa + 0x400, &scratch.bytes()[0x400..])
            }
        };
        drop(inner);
        if !ok {
            st.inject(Event::new(EventType::Exception, 13, Some(0)));
            return Ok(Next::Guest);
        }
        st.vmcb().save.rip = next;
        Ok(Next::Guest)
    }

    /// VMRUN by L1 (APM 15.5): vmcb12 is copied once into L0's cache and
    /// checked there (APM 15.5.1; a failure is #VMEXIT(VMEXIT_INVALID) in
    /// vmcb12, L1 continuing after VMRUN); otherwise vmcb02 is built from
    /// L0's policy and the copy, and L2 runs.
    fn vmrun_l1(&self, st: &mut VcpuState, next: u64) -> Result<Next> {
        let Some(pa) = Self::vmcb_address(st) else { return Ok(Next::Guest) };
        // No host save area set up by L1: #GP (as KVM and the issue specify).
        if st.hsave_pa == 0 {
            st.inject(Event::new(EventType::Exception, 13, Some(0)));
            return Ok(Next::Guest);
        }
        {
            let inner = self.vm.inner.lock();
            // What VMRUN uses (vmcb::VMRUN_READ): the control area's
            // defined fields and the state VMRUN loads; not the VMLOAD state
            // nor the reserved ranges (the cache's keep other values).
            use nsvm_core::vmcb::VMRUN_READ as RD;
            let read = if self.pin_vmcb12(st, &inner, pa) {
                st.vmcb12_pin.as_ref().is_some_and(|(_, _, p)| {
                    let (r, b) = (p.reader(), st.vmcb12.bytes());
                    // Each range as a constant-size read (unrolled).
                    macro_rules! get {
                        ($($k:literal)*) => { true $(&& {
                            const R: (usize, usize) = RD[$k];
                            <&mut [u8; R.1]>::try_from(&mut b[R.0..R.0 + R.1]).is_ok_and(|d| r.get(R.0, d))
                        })* };
                    }
                    const _: () = assert!(RD.len() == 15);
                    get!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14)
                })
            } else {
                let (mem, b) = (GuestMem::l1(&inner), st.vmcb12.bytes());
                RD.iter().all(|&(o, l)| mem.read_bytes(pa + o as u64, &mut b[o..o + l]))
            };
            if !read {
                drop(inner);
                st.inject(Event::new(EventType::Exception, 13, Some(0)));
                return Ok(Next::Guest);
            }
        }
        let phys = crate::svm::phys_bits();
        // Fields of features not offered to L1 are ignored: of nested_ctl
        // only NP_ENABLE, and only when nested paging is offered.
        let np_offered = st.l1_features.contains(SvmFeatures::NP);
        st.vmcb12.get().control.nested_ctl &= if np_offered { nested_ctl::NP_ENABLE } else { 0 };
        let checked = {
            let c12 = st.vmcb12.get();
            nsvm_core::checks::check_vmrun(&c12.save, &c12.control, phys)
        };
        if let Err(c) = checked {
            self.stats.bump(stats::INVALID_BASE + c.index());
            let inner = self.vm.inner.lock();
            let mem = GuestMem::l1(&inner);
            let mut e = [0u8; 24];
            e[..8].copy_from_slice(&exit::INVALID.to_ne_bytes());
            let _ = mem.write_bytes(pa + 0x70, &e);
            drop(inner);
            let v1 = st.vmcb.get();
            v1.save.rip = next;
            st.gif = false;
            return Ok(Next::Guest);
        }
        if let Some(stop) = self.build_vmcb02(st, true)? {
            return Ok(stop);
        }
        st.nested = Some((pa, next));
        st.run_pending = true;
        st.gif = true;
        let e = {
            let (v01, v12, v02) = (st.vmcb.get(), st.vmcb12.get(), st.vmcb02.get());
            let npt = v12.control.nested_ctl & nested_ctl::NP_ENABLE != 0;
            TraceEvent::VmEnter {
                rip: v01.save.rip,
                vmcb: pa,
                nested_rip: v02.save.rip,
                int_ctl: v12.control.int_ctl,
                event_inj: v12.control.event_inj,
                npt,
                cr3: if npt { v12.control.nested_cr3 } else { v12.save.cr3 },
            }
        };
        st.log(e);
        self.stats.bump(st_idx::NESTED_VMRUNS);
        Ok(Next::Guest)
    }

    /// Makes `st.vmcb12_pin` hold vmcb12's page at `pa` (kept from the last
    /// VMRUN when the address and the VM's slots are unchanged); false when
    /// `pa` is not writable RAM (callers then copy through the slots).
    fn pin_vmcb12(&self, st: &mut VcpuState, inner: &VmInner, pa: u64) -> bool {
        let gen = self.vm.memory_generation.load(Ordering::Acquire);
        if st.vmcb12_pin.as_ref().is_some_and(|(g, n, _)| *g == pa && *n == gen) {
            return true;
        }
        st.vmcb12_pin = None;
        let Some(slot) = inner.slots.find(pa).copied() else { return false };
        if slot.readonly() {
            return false;
        }
        match PinnedPage::pin(slot.uaddr_of(pa), true) {
            Ok(p) => {
                st.vmcb12_pin = Some((pa, gen, p));
                true
            }
            Err(_) => false,
        }
    }

    /// vmcb02 from vmcb01, the checked vmcb12 copy and L0's policy: merged
    /// controls (`nested::merge_control`), nested paging on shadow NPT02 or
    /// L2 on NPT01, and with `from_vmrun` L2's state from vmcb12 (VMRUN);
    /// without it vmcb02's state is kept (KVM_SET_NESTED_STATE: it is the
    /// vCPU's current state). `Some` when the vCPU must stop instead.
    fn build_vmcb02(&self, st: &mut VcpuState, from_vmrun: bool) -> Result<Option<Next>> {
        let root = st.npt01_root;
        let np = st.vmcb12.get().control.nested_ctl & nested_ctl::NP_ENABLE != 0;
        let mut ncr3 = root;
        if np {
            // NPT12 is walked in the format of L1's paging mode at VMRUN
            // (APM 15.25.5: the host's CR4.PAE/EFER.LMA); nsvm walks the
            // long-mode format only.
            if st.vmcb.get().save.efer & efer::LMA == 0 {
                let rip = st.vmcb.get().save.rip;
                self.internal_error(run::INTERNAL_ERROR_EMULATION, &[rip, exit::VMRUN, u64::from(nested_ctl::NP_ENABLE)]);
                return Ok(Some(Next::User));
            }
            let c12 = &st.vmcb12.get().control;
            let key = Npt02Key { ncr3: c12.nested_cr3, asid: c12.asid, npt01_generation: self.vm.memory_generation.load(Ordering::Acquire) };
            let tlb = c12.tlb_ctl;
            if nsvm_core::nested::npt02_must_flush(st.npt02.key, key, tlb, st.l1_features.contains(SvmFeatures::FLUSH_BY_ASID)) {
                st.npt02.flush();
                self.stats.bump(st_idx::NPT02_FLUSHES);
            }
            st.npt02.key = Some(key);
            ncr3 = st.npt02.root_pa();
        }
        let policy = nsvm_core::nested::L0Policy { asid: 2, flush: true, ncr3, features: st.l1_features };
        if from_vmrun {
            // L2's state: the save area's defined fields but the VMLOAD
            // state, which comes from vmcb01 below (neither the reserved
            // ranges).
            let (v12, v02) = (st.vmcb12.get(), st.vmcb02.get());
            v02.save.copy_vmrun_state(&v12.save);
        }
        {
            let (v01, v12, v02) = (st.vmcb.get(), st.vmcb12.get(), st.vmcb02.get());
            nsvm_core::nested::merge_control(&mut v02.control, &policy, &v01.control, &v12.control);
            if from_vmrun {
                // VMRUN does not load what VMLOAD does: L2 starts with L1's
                // current FS, GS, TR, LDTR and syscall MSRs (APM 15.5.2).
                v02.save.copy_vmload_state(&v01.save);
                // Without nested paging L2 runs on NPT01 with L1's guest
                // PAT; with it, G_PAT is L2's (APM 15.25.8).
                if !np {
                    v02.save.g_pat = v01.save.g_pat;
                }
            }
        }
        Ok(None)
    }

    /// A nested page fault of an L2 on shadow NPT02 (APM 15.25.6): walks
    /// L1's NPT12 for the L2 physical address (EXITINFO2) with the access
    /// the hardware reported (EXITINFO1: write, fetch, and whether the final
    /// address or a guest table was being translated). A fault there is
    /// L1's; otherwise the page is pinned from the VM's slot and the
    /// composed leaf (weaker permissions of NPT12 and the slot) goes into
    /// NPT02, 4 KiB whatever the NPT12 page size.
    fn npf02(&self, st: &mut VcpuState) -> Result<Npf02> {
        use nsvm_core::nested::{compose_leaf, walk_npt12};
        let (info1, gpa) = {
            let c = &st.vmcb02.get().control;
            (c.exit_info_1, c.exit_info_2)
        };
        let ncr3 = st.vmcb12.get().control.nested_cr3;
        let nxe = st.vmcb.get().save.efer & efer::NXE != 0;
        let phys = crate::svm::phys_bits();
        let (write, fetch) = (info1 & npf::RW != 0, info1 & npf::ID != 0);
        let stage = info1 & (npf::FINAL | npf::TABLE);
        let inner = self.vm.inner.lock();
        let t = match walk_npt12(&GuestMem::l1(&inner), ncr3, gpa, write, fetch, nxe, phys, stage) {
            Ok(t) => t,
            Err(code) => return Ok(Npf02::Fault(code)),
        };
        // The walk's accessed/dirty bits go into NPT12 (APM 15.25.5), as the
        // processor's nested walker sets them; NPT02 keeps a clean page
        // read-only so that its first write comes back here for D.
        for &(ea, bits) in t.ad_updates.iter().filter(|(_, b)| *b != 0) {
            let Some(s12) = inner.slots.find(ea).copied() else { continue };
            if s12.readonly() {
                continue;
            }
            if let Ok(p) = PinnedPage::pin(s12.uaddr_of(ea & !0xfff), true) {
                p.fetch_or_u64((ea & 0xfff) as usize, bits);
            }
        }
        let Some(slot) = inner.slots.find(t.l1_gpa).copied() else { return Ok(Npf02::Unbacked(t.l1_gpa)) };
        if write && slot.readonly() {
            return Ok(Npf02::Unbacked(t.l1_gpa));
        }
        // At most twice the VM's memory in L2 mappings (then start over).
        let limit = 2 * inner.slots.total_pages() as usize + 1024;
        if st.npt02.mapped_pages() + 8 >= limit {
            self.stats.bump(st_idx::NPT02_FLUSHES);
            st.npt02.flush();
        }
        // Prefetch, as KVM's shadow MMU does for a large guest page shadowed
        // by 4 KiB entries (PTE_PREFETCH_NUM = 8): the aligned 8-page block
        // lies in the same NPT12 leaf, just used, so its pages translate
        // with the same permissions (a processor may load translations ahead
        // of use), and to consecutive L1 pages: one pin call for all eight.
        // Not for 4 KiB NPT12 leaves, whose neighbours L1 may still edit
        // without a flush.
        let (block, l1_block) = (gpa & !0x7fff, (t.l1_gpa & !0xfff).wrapping_sub(gpa & 0x7000));
        if t.page_size > 4096 && slot.contains(l1_block) && slot.contains(l1_block + 0x7fff) {
            let mut pins: [Option<PinnedPage>; 8] = Default::default();
            let got = PinnedPage::pin_run(slot.uaddr_of(l1_block), !slot.readonly(), &mut pins);
            let force = ((gpa >> 12) & 7) as usize;
            if got > force {
                // One walk to the NPT02 page table for the block; pages
                // already mapped there keep their entries (and their pins).
                let mut leaves = [0u64; 8];
                for (i, pin) in pins.iter().enumerate() {
                    let Some(pin) = pin else { break };
                    let t2 = nsvm_core::nested::Npt12Translation { l1_gpa: l1_block + ((i as u64) << 12), ..t };
                    leaves[i] = compose_leaf(&t2, pin.pa, !slot.readonly(), true);
                }
                let n = st.npt02.map_run(block, pins, &leaves, force, limit)?;
                self.stats.add(st_idx::NPT02_FILLS, n as u64);
                return Ok(Npf02::Filled);
            }
        }
        let pin = PinnedPage::pin(slot.uaddr_of(t.l1_gpa & !0xfff), !slot.readonly())?;
        let leaf = compose_leaf(&t, pin.pa, !slot.readonly(), true);
        st.npt02.map(gpa, pin, leaf, limit)?;
        self.stats.bump(st_idx::NPT02_FILLS);
        Ok(Npf02::Filled)
    }

    /// Drops NPT02 when the VM's slots changed since it was composed.
    fn sync_npt02(&self, st: &mut VcpuState) {
        let g = self.vm.memory_generation.load(Ordering::Acquire);
        if let Some(k) = st.npt02.key {
            if k.npt01_generation != g {
                st.npt02.flush();
                st.npt02.key = Some(Npt02Key { npt01_generation: g, ..k });
                self.stats.bump(st_idx::NPT02_FLUSHES);
            }
        }
    }

    /// XSETBV (intercepted: XCR0 is not switched by VMRUN).
    fn xsetbv(&self, st: &mut VcpuState) -> Result<Next> {
        let v = (st.vmcb().save.rax & 0xffff_ffff) | (st.gprs[2] << 32);
        let ecx = st.gprs[1] as u32;
        let host = hw::host_xcr0();
        let cpl = st.vmcb().save.cpl;
        // SDM XSETBV: #GP for ECX != 0, CPL > 0, x87 clear, AVX without SSE,
        // or bits the processor (here: the host) does not support.
        let bad = ecx != 0 || cpl != 0 || v & 1 == 0 || (v & 4 != 0 && v & 2 == 0) || v & !host != 0;
        if host == 0 || st.vmcb().save.cr4 & kvm::cr::CR4_OSXSAVE == 0 {
            st.inject(Event::new(EventType::Exception, 6, None));
            return Ok(Next::Guest);
        }
        if bad {
            st.inject(Event::new(EventType::Exception, 13, Some(0)));
            return Ok(Next::Guest);
        }
        st.xcr0 = v;
        self.skip(st, Known::Xsetbv)
    }
}

impl VcpuState {
    /// The VMCB. The processor touches it only inside `vmrun::run`, which
    /// needs `&mut self` too.
    fn vmcb(&mut self) -> &mut Vmcb {
        if self.nested.is_some() {
            self.vmcb02.get()
        } else {
            self.vmcb.get()
        }
    }

    /// The physical memory of the guest that runs: L1's, or L2's (through
    /// NPT12 when L1 enabled nested paging for it).
    fn guest_mem<'a>(&mut self, inner: &'a VmInner) -> GuestMem<'a> {
        if !self.l2_np() {
            return GuestMem::l1(inner);
        }
        let phys = crate::svm::phys_bits();
        let ncr3 = self.vmcb12.get().control.nested_cr3;
        let nxe = self.vmcb.get().save.efer & efer::NXE != 0;
        GuestMem(inner, Some(Npt12View { ncr3, nxe, phys }))
    }

    /// `KVM_GET_VCPU_EVENTS` of the running level: the event in delivery
    /// (vmcb EVENTINJ), the interrupt queued by `KVM_INTERRUPT` (KVM reports
    /// it as injected), NMI pending/masked, the interrupt shadow.
    fn get_events(&mut self) -> kvm::VcpuEvents {
        use kvm::vcpu_events::*;
        let mut e = kvm::VcpuEvents { flags: VALID_NMI_PENDING | VALID_SHADOW, ..Default::default() };
        let (inj, err, shadow) = {
            let c = &self.vmcb().control;
            (Event { info: c.event_inj, error_code: c.event_inj_err }, c.event_inj_err, c.int_state & nsvm_core::vmcb::int_state::SHADOW != 0)
        };
        if inj.valid() {
            match inj.event_type() {
                Some(EventType::Exception) => e.exception = (true, inj.vector(), inj.info & nsvm_core::event::bits::EV != 0, err),
                Some(EventType::Nmi) => e.nmi_injected = true,
                Some(EventType::SoftInt) => e.interrupt = (true, inj.vector(), true),
                _ => e.interrupt = (true, inj.vector(), false),
            }
        } else if let Some(irq) = self.pending_irq {
            e.interrupt = (true, irq, false);
        }
        e.shadow = if shadow { 3 } else { 0 };
        e.nmi_pending = self.pending_nmi;
        e.nmi_masked = self.nmi_masked;
        e
    }

    /// `KVM_SET_VCPU_EVENTS` (checked by `VcpuEvents::check_set`): an
    /// exception or NMI in delivery goes back into EVENTINJ, an external
    /// interrupt is queued again (injected when the guest can take it),
    /// NMI pending/masked and the shadow as given.
    fn set_events(&mut self, e: &kvm::VcpuEvents) -> Result {
        use kvm::vcpu_events::*;
        let mut inj = None;
        if e.exception.0 || e.exception_pending {
            let ev = Event::new(EventType::Exception, e.exception.1, e.exception.2.then_some(e.exception.3));
            if ev.check_injectable().is_err() {
                return Err(EINVAL);
            }
            inj = Some(ev);
        } else if e.nmi_injected {
            inj = Some(Event::new(EventType::Nmi, 2, None));
        } else if e.interrupt.0 && e.interrupt.2 {
            inj = Some(Event::new(EventType::SoftInt, e.interrupt.1, None));
        }
        self.pending_irq = (e.interrupt.0 && !e.interrupt.2).then_some(e.interrupt.1);
        if e.flags & VALID_NMI_PENDING != 0 {
            self.pending_nmi = e.nmi_pending;
        }
        self.nmi_masked = e.nmi_masked;
        self.iret_rip = None;
        if self.nested.is_none() {
            // Masked NMIs end at the handler's IRET (intercepted).
            let i = &mut self.vmcb.get().control.intercepts;
            if e.nmi_masked {
                i.set(exit::IRET);
            } else {
                i.clear(exit::IRET);
            }
        }
        let c = &mut self.vmcb().control;
        match inj {
            Some(ev) => {
                c.event_inj = ev.info;
                c.event_inj_err = ev.error_code;
            }
            None => c.event_inj = 0,
        }
        if e.flags & VALID_SHADOW != 0 {
            c.int_state = (c.int_state & !nsvm_core::vmcb::int_state::SHADOW) | u32::from(e.shadow != 0);
        }
        Ok(())
    }

    /// The running L2 was entered with nested paging (on NPT02): vmcb12's
    /// NP_ENABLE, masked at VMRUN to what L1 was offered.
    fn l2_np(&mut self) -> bool {
        self.nested.is_some() && self.vmcb12.get().control.nested_ctl & nested_ctl::NP_ENABLE != 0
    }

    /// Records a nested event in the log.
    fn log(&mut self, e: TraceEvent) {
        nsvm_core::trace::record(&mut self.nlog, &mut self.nlog_count, e);
    }

    /// EFER of the guest that runs: L1's as nsvm keeps it (SVME as L1 set
    /// it), or L2's from vmcb02 while L2 runs.
    fn efer(&mut self) -> u64 {
        if self.nested.is_some() {
            self.vmcb02.get().save.efer
        } else {
            self.guest_efer
        }
    }

    /// Sets the running guest's EFER; the VMCB always has SVME (VMRUN
    /// requires it, APM 15.5.1).
    fn set_efer(&mut self, e: u64) {
        if self.nested.is_none() {
            self.guest_efer = e;
        }
        self.vmcb().save.efer = e | efer::SVME;
    }

    /// The next RIP of the L2 instruction that caused exit `code` (for L1's
    /// vmcb12.next_rip): IOIO gives it in EXITINFO2; the instructions L0
    /// can decode are decoded; everything else reports 0.
    fn l2_next_rip(&mut self, inner: &VmInner, code: u64) -> u64 {
        let which = match code {
            exit::IOIO => return self.vmcb02.get().control.exit_info_2,
            exit::CPUID => Known::Cpuid,
            exit::HLT => Known::Hlt,
            exit::MSR => {
                if self.vmcb02.get().control.exit_info_1 & 1 != 0 {
                    Known::Wrmsr
                } else {
                    Known::Rdmsr
                }
            }
            exit::VMMCALL => Known::Vmmcall,
            exit::XSETBV => Known::Xsetbv,
            exit::INVD => Known::Invd,
            exit::WBINVD => Known::Wbinvd,
            exit::RDTSC => Known::Rdtsc,
            exit::VMRUN => Known::Svm(0xd8),
            exit::VMLOAD => Known::Svm(0xda),
            exit::VMSAVE => Known::Svm(0xdb),
            exit::STGI => Known::Svm(0xdc),
            exit::CLGI => Known::Svm(0xdd),
            exit::INVLPGA => Known::Svm(0xdf),
            _ => return 0,
        };
        let mut b = [0u8; 15];
        let (n, long) = self.fetch_insn(inner, &mut b);
        match insn::length_of(&b[..n], which, long) {
            Some(len) => self.vmcb02.get().save.rip.wrapping_add(len as u64),
            None => 0,
        }
    }

    /// Sets the intercepts the policy asks for (vmcb01 keeps its own).
    fn apply_policy(&mut self, p: nsvm_core::sensitive::Policy) {
        use nsvm_core::sensitive::bits;
        // vmcb02's intercepts are the union built at VMRUN (vmcb01's, with
        // the policy, and L1's); rewriting them here would drop L1's.
        if self.nested.is_some() || self.applied_policy == Some(p) {
            return;
        }
        self.applied_policy = Some(p);
        let v = self.vmcb();
        let i = &mut v.control.intercepts;
        for (bit, code) in [
            (bits::SIDT, exit::IDTR_READ),
            (bits::SGDT, exit::GDTR_READ),
            (bits::SLDT, exit::LDTR_READ),
            (bits::STR, exit::TR_READ),
            (bits::CR0_READ, exit::READ_CR0),
            (bits::PUSHF, exit::PUSHF),
            (bits::POPF, exit::POPF),
            (bits::RDTSC, exit::RDTSC),
        ] {
            if p.instructions & bit != 0 {
                i.set(code);
            } else {
                i.clear(code);
            }
        }
        i.0[2] = p.exceptions;
    }

    /// Guest state for `sensitive::emulate`.
    fn sens_state(&mut self) -> nsvm_core::sensitive::State {
        let regs = self.all_gprs();
        let cs = self.code_size();
        let v = self.vmcb();
        let s = &v.save;
        nsvm_core::sensitive::State {
            regs,
            rip: s.rip,
            rflags: s.rflags,
            cpl: s.cpl,
            cs: Some(cs),
            ss_big: s.ss.attrib & nsvm_core::vmcb::seg_attr::DB != 0,
            seg_base: [s.es.base, s.cs.base, s.ss.base, s.ds.base, s.fs.base, s.gs.base],
            idtr: (s.idtr.base, s.idtr.limit as u16),
            gdtr: (s.gdtr.base, s.gdtr.limit as u16),
            ldtr: s.ldtr.selector,
            tr: s.tr.selector,
            cr0: s.cr0,
            cr2: s.cr2,
            cr3: s.cr3,
            cr4: s.cr4,
            cr8: u64::from(v.control.int_ctl & int_ctl::V_TPR_MASK),
        }
    }

    /// Delivers a #PF for linear address `la` to the guest.
    fn page_fault(&mut self, la: u64, pf: paging::PageFault) -> Next {
        self.vmcb().save.cr2 = la;
        self.inject(Event::new(EventType::Exception, 14, Some(pf.error_code)));
        Next::Guest
    }

    /// Whether the guest can take an external interrupt now: RFLAGS.IF set,
    /// no interrupt shadow, nothing being injected, nothing queued.
    fn ready_for_injection(&mut self) -> bool {
        if let Some(ok) = self.l1_takes_intr() {
            return self.pending_irq.is_none() && ok;
        }
        let queued = self.pending_irq.is_some();
        let gif = self.gif || self.nested.is_some();
        let v = self.vmcb();
        !queued
            && gif
            && v.save.rflags & RFLAGS_IF != 0
            && v.control.int_state & nsvm_core::vmcb::int_state::SHADOW == 0
            && v.control.event_inj & nsvm_core::event::bits::VALID == 0
    }

    /// Before an entry: inject a queued interrupt if the guest can take it,
    /// otherwise (or when userspace asked for a window) ask for a #VMEXIT
    /// when it can, with a virtual interrupt that ignores the TPR and the
    /// VINTR intercept (APM 15.21.4), as KVM's `svm_enable_irq_window` does.
    fn prepare_interrupts(&mut self, window_requested: bool) {
        // With GIF clear (L1 after #VMEXIT or CLGI) interrupts and NMIs
        // stay pending (APM 15.17).
        let gif = self.gif || self.nested.is_some();
        if self.pending_nmi && gif && (self.nested.is_some() || !self.nmi_masked) {
            let v = self.vmcb();
            if v.control.int_state & nsvm_core::vmcb::int_state::SHADOW == 0 && v.control.event_inj & nsvm_core::event::bits::VALID == 0 {
                self.pending_nmi = false;
                self.inject(Event::new(EventType::Nmi, 2, None));
                if self.nested.is_none() {
                    // Masked until the handler's IRET (intercepted).
                    self.nmi_masked = true;
                    self.vmcb.get().control.intercepts.set(exit::IRET);
                }
                return;
            }
        }
        // L1 intercepts INTR while L2 runs: L1's interrupts end L2 by
        // #VMEXIT (run loop), they are never injected into L2.
        if self.l1_takes_intr().is_some() {
            return;
        }
        let v = self.vmcb();
        let interruptible = v.save.rflags & RFLAGS_IF != 0
            && v.control.int_state & nsvm_core::vmcb::int_state::SHADOW == 0
            && v.control.event_inj & nsvm_core::event::bits::VALID == 0
            && gif;
        if !gif {
            // L1's GIF is emulated: the processor's GIF is set while L1
            // runs, so a VINTR window would exit at once, before every
            // instruction, and L1 would never reach its STGI. STGI is always
            // intercepted (svm_insn): the next entry after it injects or
            // opens the window.
            self.close_irq_window();
            return;
        }
        if let Some(irq) = self.pending_irq {
            if interruptible {
                self.pending_irq = None;
                self.inject(Event::new(EventType::Intr, irq, None));
                self.stats.bump(st_idx::IRQ_INJECTIONS);
                return;
            }
            self.open_irq_window();
        } else if window_requested {
            // As KVM: an open window is requested unconditionally; if the
            // guest is already interruptible the VINTR exit comes at once.
            self.open_irq_window();
        }
    }

    /// While L2 runs and L1 intercepts INTR: whether L1 can take an
    /// interrupt now, i.e. L1's IF (with V_INTR_MASKING, as it was at
    /// VMRUN) or L2's (without). `None` otherwise.
    fn l1_takes_intr(&mut self) -> Option<bool> {
        self.nested?;
        let c12 = &self.vmcb12.get().control;
        if !c12.intercepts.test(exit::INTR) {
            return None;
        }
        let (intercepts, int_ctl12) = (c12.intercepts, c12.int_ctl);
        let l1_if = self.vmcb.get().save.rflags & RFLAGS_IF != 0;
        let l2_if = self.vmcb02.get().save.rflags & RFLAGS_IF != 0;
        Some(nsvm_core::reflect::intr_exit_due(&intercepts, int_ctl12, l1_if, l2_if))
    }

    /// The #VMEXIT a pending event of L1 causes while L2 runs: NMI when L1
    /// intercepts NMIs, INTR when it intercepts INTR and can take one.
    fn l1_event_exit(&mut self) -> Option<u64> {
        if self.pending_nmi && self.vmcb12.get().control.intercepts.test(exit::NMI) {
            return Some(exit::NMI);
        }
        if self.pending_irq.is_some() && self.l1_takes_intr() == Some(true) {
            return Some(exit::INTR);
        }
        None
    }

    fn open_irq_window(&mut self) {
        let v = self.vmcb();
        v.control.int_ctl |= int_ctl::V_IRQ | int_ctl::V_IGN_TPR;
        v.control.int_vector = 0;
        v.control.intercepts.set(exit::VINTR);
    }

    fn close_irq_window(&mut self) {
        let v = self.vmcb();
        v.control.int_ctl &= !(int_ctl::V_IRQ | int_ctl::V_IGN_TPR);
        v.control.intercepts.clear(exit::VINTR);
    }

    fn inject(&mut self, e: Event) {
        if e.event_type() == Some(EventType::Exception) {
            self.stats.bump(st_idx::EXCEPTION_INJECTIONS);
        }
        let v = self.vmcb();
        v.control.event_inj = e.info;
        v.control.event_inj_err = e.error_code;
    }

    /// `struct kvm_fpu` from the FXSAVE part of the guest's XSAVE image.
    fn get_fpu(&mut self) -> [u8; 416] {
        let x: [u8; 512] = self.fpu.read(0);
        let mut f = [0u8; 416];
        for r in 0..8 {
            f[16 * r..16 * r + 10].copy_from_slice(&x[32 + 16 * r..32 + 16 * r + 10]);
        }
        f[128..130].copy_from_slice(&x[0..2]); // fcw
        f[130..132].copy_from_slice(&x[2..4]); // fsw
        f[132] = x[4]; // ftwx (abridged tag word)
        f[134..136].copy_from_slice(&x[6..8]); // last opcode
        f[136..144].copy_from_slice(&x[8..16]); // last ip
        f[144..152].copy_from_slice(&x[16..24]); // last dp
        f[152..408].copy_from_slice(&x[160..416]); // xmm0-15
        f[408..412].copy_from_slice(&x[24..28]); // mxcsr
        f
    }

    /// Writes `struct kvm_fpu` into the guest's image. MXCSR reserved bits
    /// are refused (`EINVAL`): XRSTOR of such an image would fault in L0.
    fn set_fpu(&mut self, f: &[u8; 416]) -> Result {
        let mxcsr = u32::from_ne_bytes([f[408], f[409], f[410], f[411]]);
        if mxcsr & !vmrun::mxcsr_mask() != 0 {
            return Err(EINVAL);
        }
        for r in 0..8 {
            self.fpu.write(32 + 16 * r, &f[16 * r..16 * r + 10]);
        }
        self.fpu.write(0, &f[128..132]);
        self.fpu.write(4, &[f[132]]);
        self.fpu.write(6, &f[134..136]);
        self.fpu.write(8, &f[136..152]);
        self.fpu.write(160, &f[152..408]);
        self.fpu.write(24, &f[408..412]);
        // XSTATE_BV: x87 and SSE now come from the image, not the init state.
        let bv = self.fpu.read_u64(512) | 3;
        self.fpu.write(512, &bv.to_ne_bytes());
        Ok(())
    }

    /// RESET (`init == false`) or INIT (`init == true`) state, as KVM's
    /// `kvm_vcpu_reset`: real mode at F000:FFF0; INIT keeps CR0.CD/NW, the
    /// PAT, XCR0 and the FPU state (APM vol. 2 14.1.3).
    fn reset(&mut self, npt_root: u64, init: bool) {
        let iopm = crate::svm::iopm_pa();
        let msrpm = crate::svm::msrpm_pa();
        // The intercepts are rebuilt below: the next entry applies the policy.
        self.applied_policy = None;
        let v = self.vmcb();
        let old_cr0 = v.save.cr0;
        let old_pat = v.save.g_pat;
        *v = Vmcb::ZERO;
        let mut i = Intercepts::NONE;
        for c in [
            exit::INTR, exit::NMI, exit::SMI, exit::CPUID, exit::HLT, exit::IOIO, exit::MSR,
            exit::SHUTDOWN, exit::INVD, exit::VMRUN, exit::VMMCALL, exit::VMLOAD, exit::VMSAVE,
            exit::STGI, exit::CLGI, exit::SKINIT, exit::INVLPGA, exit::MONITOR, exit::MWAIT,
            exit::MWAIT_COND, exit::XSETBV, exit::RDPRU,
        ] {
            i.set(c);
        }
        v.control.intercepts = i;
        v.control.iopm_base_pa = iopm;
        v.control.msrpm_base_pa = msrpm;
        v.control.asid = 1;
        v.control.tlb_ctl = tlb_control::FLUSH_ALL;
        v.control.int_ctl = int_ctl::V_INTR_MASKING;
        v.control.nested_ctl = nested_ctl::NP_ENABLE;
        v.control.nested_cr3 = npt_root;
        // Reset segments (APM 14.1.3): present read/write data, and CS a
        // present execute/read code segment, none marked accessed.
        let data = Segment { selector: 0, attrib: 0x92, limit: 0xffff, base: 0 };
        v.save.cs = Segment { selector: 0xf000, attrib: 0x9a, limit: 0xffff, base: 0xffff_0000 };
        v.save.ds = data;
        v.save.es = data;
        v.save.ss = data;
        v.save.fs = data;
        v.save.gs = data;
        v.save.gdtr = Segment { limit: 0xffff, ..Segment::ZERO };
        v.save.idtr = Segment { limit: 0xffff, ..Segment::ZERO };
        v.save.ldtr = Segment { selector: 0, attrib: 0x82, limit: 0xffff, base: 0 };
        v.save.tr = Segment { selector: 0, attrib: 0x8b, limit: 0xffff, base: 0 };
        let cd_nw = kvm::cr::CR0_NW | kvm::cr::CR0_CD;
        v.save.cr0 = kvm::cr::CR0_ET | if init { old_cr0 & cd_nw } else { cd_nw };
        v.save.efer = efer::SVME;
        v.save.rflags = 2;
        v.save.rip = 0xfff0;
        v.save.dr6 = 0xffff_0ff0;
        v.save.dr7 = 0x400;
        v.save.g_pat = if init { old_pat } else { PAT_DEFAULT };
        self.gprs = [0; 16];
        // RDX at reset: the processor signature (CPUID 1 EAX), 0x600 without a table.
        self.gprs[2] = self.cpuid.iter().find(|e| e.function == 1).map_or(0x600, |e| u64::from(e.regs[0]));
        self.guest_efer = 0;
        self.pending_irq = None;
        self.pending_nmi = false;
        self.nmi_masked = false;
        self.iret_rip = None;
        self.pending = None;
        self.gif = true;
        self.nested = None;
        self.vmcb12_pin = None;
        self.run_pending = false;
        self.npt02.flush();
        self.npt02.key = None;
        if !init {
            self.hsave_pa = 0;
        }
        if !init {
            self.xcr0 = 1;
            // FXSAVE image defaults: FCW 0x37f, MXCSR 0x1f80 (XSAVE header
            // zero = every component in its initial state).
            self.fpu.fill(0);
            self.fpu.write(0, &0x37fu16.to_ne_bytes());
            self.fpu.write(24, &0x1f80u32.to_ne_bytes());
        }
    }

    /// The 16 GPRs by hardware number (RAX and RSP from the VMCB).
    fn all_gprs(&mut self) -> [u64; 16] {
        let mut g = self.gprs;
        let v = self.vmcb();
        g[0] = v.save.rax;
        g[4] = v.save.rsp;
        g
    }

    fn set_all_gprs(&mut self, g: &[u64; 16]) {
        self.gprs = *g;
        let v = self.vmcb();
        v.save.rax = g[0];
        v.save.rsp = g[4];
    }

    /// Size of the code segment the guest runs in (APM vol. 2 4.8).
    fn code_size(&mut self) -> mmio::CodeSize {
        let lma = self.efer() & efer::LMA != 0;
        let v = self.vmcb();
        let a = v.save.cs.attrib;
        if v.save.cr0 & kvm::cr::CR0_PE == 0 {
            mmio::CodeSize::Bits16
        } else if lma && a & nsvm_core::vmcb::seg_attr::L != 0 {
            mmio::CodeSize::Bits64
        } else if a & nsvm_core::vmcb::seg_attr::DB != 0 {
            mmio::CodeSize::Bits32
        } else {
            mmio::CodeSize::Bits16
        }
    }

    fn get_regs(&mut self) -> Regs {
        let g = self.gprs;
        let v = self.vmcb();
        let mut r = Regs::default();
        r.r[reg::RAX] = v.save.rax;
        r.r[reg::RBX] = g[3];
        r.r[reg::RCX] = g[1];
        r.r[reg::RDX] = g[2];
        r.r[reg::RSI] = g[6];
        r.r[reg::RDI] = g[7];
        r.r[reg::RSP] = v.save.rsp;
        r.r[reg::RBP] = g[5];
        for i in 0..8 {
            r.r[reg::R8 + i] = g[8 + i];
        }
        r.r[reg::RIP] = v.save.rip;
        r.r[reg::RFLAGS] = v.save.rflags;
        r
    }

    fn set_regs(&mut self, r: &Regs) {
        let g = &mut self.gprs;
        g[3] = r.r[reg::RBX];
        g[1] = r.r[reg::RCX];
        g[2] = r.r[reg::RDX];
        g[6] = r.r[reg::RSI];
        g[7] = r.r[reg::RDI];
        g[5] = r.r[reg::RBP];
        for i in 0..8 {
            g[8 + i] = r.r[reg::R8 + i];
        }
        let v = self.vmcb();
        v.save.rax = r.r[reg::RAX];
        v.save.rsp = r.r[reg::RSP];
        v.save.rip = r.r[reg::RIP];
        // RFLAGS bit 1 is always 1; reserved bits are 0 (APM 3.1.6).
        v.save.rflags = (r.r[reg::RFLAGS] & 0x3f_7fd5) | 2;
    }

    fn get_sregs(&mut self) -> Sregs {
        let efer = self.efer();
        let apic_base = self.apic_base;
        let v = self.vmcb();
        let s = &v.save;
        let mut ss = KvmSegment::from_vmcb_as(&s.ss, SegKind::Ss);
        // KVM reports SS.DPL as the CPL (symmetric with set_sregs).
        ss.dpl = s.cpl;
        Sregs {
            cs: KvmSegment::from_vmcb_as(&s.cs, SegKind::Cs),
            ds: KvmSegment::from_vmcb_as(&s.ds, SegKind::Data),
            es: KvmSegment::from_vmcb_as(&s.es, SegKind::Data),
            fs: KvmSegment::from_vmcb_as(&s.fs, SegKind::Data),
            gs: KvmSegment::from_vmcb_as(&s.gs, SegKind::Data),
            ss,
            tr: KvmSegment::from_vmcb_as(&s.tr, SegKind::Tr),
            ldt: KvmSegment::from_vmcb_as(&s.ldtr, SegKind::Ldt),
            gdt: kvm::Dtable { base: s.gdtr.base, limit: s.gdtr.limit as u16 },
            idt: kvm::Dtable { base: s.idtr.base, limit: s.idtr.limit as u16 },
            cr0: s.cr0,
            cr2: s.cr2,
            cr3: s.cr3,
            cr4: s.cr4,
            cr8: u64::from(v.control.int_ctl & int_ctl::V_TPR_MASK),
            efer,
            apic_base,
            interrupt_bitmap: [0; 4],
        }
    }

    fn set_sregs(&mut self, s: &Sregs) {
        self.set_efer(s.efer);
        self.apic_base = s.apic_base;
        let v = self.vmcb();
        v.save.cs = s.cs.to_vmcb();
        v.save.ds = s.ds.to_vmcb();
        v.save.es = s.es.to_vmcb();
        v.save.fs = s.fs.to_vmcb();
        v.save.gs = s.gs.to_vmcb();
        v.save.ss = s.ss.to_vmcb();
        v.save.tr = s.tr.to_vmcb();
        v.save.ldtr = s.ldt.to_vmcb();
        v.save.gdtr = Segment { base: s.gdt.base, limit: u32::from(s.gdt.limit), ..Segment::ZERO };
        v.save.idtr = Segment { base: s.idt.base, limit: u32::from(s.idt.limit), ..Segment::ZERO };
        v.save.cr0 = s.cr0;
        v.save.cr2 = s.cr2;
        v.save.cr3 = s.cr3;
        v.save.cr4 = s.cr4;
        // The CPL is the DPL of SS (APM 15.5.1 takes it from the VMCB).
        v.save.cpl = s.ss.dpl & 3;
        v.control.int_ctl = (v.control.int_ctl & !int_ctl::V_TPR_MASK) | (s.cr8 as u32 & 0xf);
    }

    fn cpuid_lookup(&self, leaf: u32, sub: u32) -> [u32; 4] {
        self.cpuid
            .iter()
            .find(|e| e.function == leaf && (e.flags & CPUID_FLAG_SIGNIFICANT_INDEX == 0 || e.index == sub))
            .map_or([0; 4], |e| e.regs)
    }

    fn read_msr(&mut self, index: u32) -> Option<u64> {
        let efer_v = self.efer();
        let apic = self.apic_base;
        let aux = self.tsc_aux;
        let (svm, hsave) = (self.svm_exposed, self.hsave_pa);
        let v = self.vmcb();
        let s = &v.save;
        Some(match index {
            msr::EFER => efer_v,
            msr::STAR => s.star,
            msr::LSTAR => s.lstar,
            msr::CSTAR => s.cstar,
            msr::SFMASK => s.sfmask,
            msr::KERNEL_GS_BASE => s.kernel_gs_base,
            msr::FS_BASE => s.fs.base,
            msr::GS_BASE => s.gs.base,
            msr::SYSENTER_CS => s.sysenter_cs,
            msr::SYSENTER_ESP => s.sysenter_esp,
            msr::SYSENTER_EIP => s.sysenter_eip,
            msr::PAT => s.g_pat,
            msr::APIC_BASE => apic,
            msr::TSC_AUX => aux,
            msr::VM_HSAVE_PA if svm => hsave,
            msr::VM_CR if svm => 0,
            msr::TSC => hw::rdtsc().wrapping_add(v.control.tsc_offset),
            _ => return None,
        })
    }

    fn write_msr(&mut self, index: u32, val: u64) -> bool {
        match index {
            msr::EFER => {
                // Reserved bits, and SVME unless SVM is offered, are #GP; LMA
                // is read-only and follows LME && CR0.PG (APM 14.6).
                if val & efer::RESERVED != 0 || (val & efer::SVME != 0 && !self.svm_exposed) {
                    return false;
                }
                let pg = self.vmcb().save.cr0 & kvm::cr::CR0_PG != 0;
                let cur = self.efer();
                if pg && (val ^ cur) & efer::LME != 0 {
                    return false; // changing LME with paging on is #GP
                }
                self.set_efer((val & !efer::LMA) | (cur & efer::LMA));
                true
            }
            msr::TSC_AUX => {
                if val >> 32 != 0 {
                    return false;
                }
                self.tsc_aux = val;
                true
            }
            msr::APIC_BASE => {
                self.apic_base = val;
                true
            }
            // APM 15.30.4: page aligned, within the physical address width.
            msr::VM_HSAVE_PA if self.svm_exposed => {
                let phys = crate::svm::phys_bits();
                if !msr::hsave_pa_valid(val, phys) {
                    return false;
                }
                self.hsave_pa = val;
                true
            }
            // VM_CR: SVMDIS and LOCK stay clear (APM 15.30.1).
            msr::VM_CR if self.svm_exposed => val & (msr::vm_cr::SVMDIS | msr::vm_cr::LOCK) == 0,
            msr::TSC => {
                let v = self.vmcb();
                v.control.tsc_offset = val.wrapping_sub(hw::rdtsc());
                true
            }
            _ => {
                let canonical = ((val as i64) << 16 >> 16) as u64 == val;
                let v = self.vmcb();
                let s = &mut v.save;
                match index {
                    msr::STAR => s.star = val,
                    msr::LSTAR | msr::CSTAR | msr::KERNEL_GS_BASE | msr::FS_BASE | msr::GS_BASE
                    | msr::SYSENTER_ESP | msr::SYSENTER_EIP
                        if !canonical =>
                    {
                        return false
                    }
                    msr::LSTAR => s.lstar = val,
                    msr::CSTAR => s.cstar = val,
                    msr::SFMASK => s.sfmask = val & 0xffff_ffff,
                    msr::KERNEL_GS_BASE => s.kernel_gs_base = val,
                    msr::FS_BASE => s.fs.base = val,
                    msr::GS_BASE => s.gs.base = val,
                    msr::SYSENTER_CS => s.sysenter_cs = val & 0xffff,
                    msr::SYSENTER_ESP => s.sysenter_esp = val,
                    msr::SYSENTER_EIP => s.sysenter_eip = val,
                    msr::PAT => {
                        // Each byte must be a valid memory type (0,1,4,5,6,7).
                        if (0..8).any(|i| matches!((val >> (8 * i)) & 0xff, 2 | 3 | 8..)) {
                            return false;
                        }
                        s.g_pat = val;
                    }
                    _ => return false,
                }
                true
            }
        }
    }

    /// Translates a guest linear address for a data access by the guest's
    /// current CPL (APM vol. 2 5.x walks in `paging::walk_guest`).
    fn translate(&mut self, inner: &VmInner, la: u64, write: bool) -> core::result::Result<u64, paging::PageFault> {
        let efer_v = self.efer();
        let mem = self.guest_mem(inner);
        let v = self.vmcb();
        let s = &v.save;
        let mode = Mode::from_regs(s.cr0, s.cr4, efer_v);
        let acc = Access { write, user: s.cpl == 3, fetch: false };
        paging::walk_guest(&mem, mode, s.cr3, la, acc, s.cr0 & kvm::cr::CR0_WP != 0, efer_v & efer::NXE != 0)
    }

    /// Base of the segment of a string I/O instruction: ES for INS; DS or
    /// the last segment-override prefix for OUTS (APM vol. 3 OUTS). In
    /// 64-bit mode only FS and GS have bases.
    fn string_segment_base(&mut self, is_in: bool, bytes: &[u8]) -> u64 {
        let long = self.code_size() == mmio::CodeSize::Bits64;
        let v = self.vmcb();
        let s = &v.save;
        let mut seg = if is_in { 0x26 } else { 0x3e };
        if !is_in {
            for b in bytes.iter().take_while(|b| insn::is_legacy_prefix(**b)) {
                if matches!(b, 0x26 | 0x2e | 0x36 | 0x3e | 0x64 | 0x65) {
                    seg = *b;
                }
            }
        }
        let base = match seg {
            0x26 => s.es.base,
            0x2e => s.cs.base,
            0x36 => s.ss.base,
            0x64 => return s.fs.base,
            0x65 => return s.gs.base,
            _ => s.ds.base,
        };
        if long {
            0
        } else {
            base & 0xffff_ffff
        }
    }

    /// Fetches up to 15 bytes at CS:RIP through the guest's paging; returns
    /// how many could be read.
    #[inline(always)]
    fn fetch(&mut self, inner: &VmInner, out: &mut [u8; 15]) -> usize {
        self.fetch_insn(inner, out).0
    }

    /// `fetch`, and whether the code is 64-bit (CS.L in long mode: the
    /// decoder's REX rule), which it works out anyway.
    fn fetch_insn(&mut self, inner: &VmInner, out: &mut [u8; 15]) -> (usize, bool) {
        let efer_v = self.efer();
        let v = self.vmcb();
        let s = &v.save;
        let mode = Mode::from_regs(s.cr0, s.cr4, efer_v);
        let long = s.cs.attrib & nsvm_core::vmcb::seg_attr::L != 0 && efer_v & efer::LMA != 0;
        let la = if long { s.rip } else { s.cs.base.wrapping_add(s.rip) & 0xffff_ffff };
        let acc = Access { write: false, user: s.cpl == 3, fetch: true };
        let (cr3, wp, nxe) = (s.cr3, s.cr0 & kvm::cr::CR0_WP != 0, efer_v & efer::NXE != 0);
        let mem = self.guest_mem(inner);
        let memo = &mut self.fetch_walks[usize::from(self.nested.is_some())];
        let mut n = 0;
        while n < out.len() {
            let addr = la.wrapping_add(n as u64);
            let key = paging::WalkKey { mode, cr3, page: addr & !0xfff, access: acc, wp, nxe };
            let Ok(gpa) = memo.walk(&mem, key, addr) else { break };
            let chunk = core::cmp::min(out.len() - n, (4096 - (gpa & 0xfff)) as usize);
            if !mem.read_bytes(gpa, &mut out[n..n + chunk]) {
                break;
            }
            n += chunk;
        }
        (n, long)
    }

    /// Enters the guest once and returns at its next #VMEXIT; false when the
    /// VMCB came back holding the host's state (`vmrun::enter`).
    fn enter(&mut self) -> bool {
        // Flush on every entry: one ASID for all guests and no flush-by-ASID
        // under TCG; per-VM ASIDs come with nested SVM.
        self.vmcb().control.tlb_ctl = tlb_control::FLUSH_ALL;
        let xcr0 = self.xcr0;
        let page = if self.nested.is_some() { &mut self.vmcb02 } else { &mut self.vmcb };
        vmrun::enter(page, &mut self.host_save, &mut self.fpu, &mut self.gprs, xcr0)
    }

}

/// Guest-physical memory as seen through the VM's slots (reads only), for
/// walking the guest's page tables and fetching instructions. Reads copy from
/// the VMM's memory, so they must run in the VMM process.
/// With an NPT12 view, addresses are L2 physical and go through L1's
/// nested page table first (an L2 running with nested paging).
struct GuestMem<'a>(&'a VmInner, Option<Npt12View>);

/// L1's nested page table as L0 walks it for an L2 (APM 15.25.5: in the
/// long-mode format, NX per L1's EFER.NXE).
#[derive(Clone, Copy)]
struct Npt12View {
    ncr3: u64,
    nxe: bool,
    phys: u8,
}

impl<'a> GuestMem<'a> {
    /// L1 physical memory: the VM's slots.
    fn l1(inner: &'a VmInner) -> Self {
        GuestMem(inner, None)
    }

    /// Calls `f` with the L1 physical address and length of each piece of
    /// `[gpa, gpa + len)` (split at 4 KiB boundaries under NPT12); false
    /// when a piece does not translate (or `f` fails).
    fn pieces(&self, gpa: u64, len: usize, write: bool, mut f: impl FnMut(u64, usize, usize) -> bool) -> bool {
        let Some(v) = self.1 else { return f(gpa, 0, len) };
        let l1 = GuestMem::l1(self.0);
        let mut done = 0;
        while done < len {
            let g = gpa.wrapping_add(done as u64);
            let n = core::cmp::min(len - done, (4096 - (g & 0xfff)) as usize);
            let t = nsvm_core::nested::walk_npt12(&l1, v.ncr3, g, write, false, v.nxe, v.phys, npf::FINAL);
            let Ok(t) = t else { return false };
            if !f(t.l1_gpa, done, n) {
                return false;
            }
            done += n;
        }
        true
    }

    fn read_bytes(&self, gpa: u64, out: &mut [u8]) -> bool {
        if self.1.is_some() {
            let l1 = GuestMem::l1(self.0);
            let len = out.len();
            return self.pieces(gpa, len, false, |p, at, n| l1.read_bytes(p, &mut out[at..at + n]));
        }
        // Through NPT01's pinned page when L1 has touched it (page-table
        // pages, code: the emulated NRIPS and instruction-length decodes).
        if self.0.npt.read(gpa, out) {
            return true;
        }
        let Some(slot) = self.0.slots.find(gpa) else { return false };
        if gpa + out.len() as u64 > slot.end() {
            return false;
        }
        let ua = slot.uaddr_of(gpa) as usize;
        UserSlice::new(UserPtr::from_addr(ua), out.len()).reader().read_slice(out).is_ok()
    }
}

impl GuestMem<'_> {
    /// Writes guest RAM (not read-only slots); false when not possible.
    fn write_bytes(&self, gpa: u64, data: &[u8]) -> bool {
        if self.1.is_some() {
            let l1 = GuestMem::l1(self.0);
            return self.pieces(gpa, data.len(), true, |p, at, n| l1.write_bytes(p, &data[at..at + n]));
        }
        let Some(slot) = self.0.slots.find(gpa) else { return false };
        if slot.readonly() || gpa + data.len() as u64 > slot.end() {
            return false;
        }
        let ua = slot.uaddr_of(gpa) as usize;
        UserSlice::new(UserPtr::from_addr(ua), data.len()).writer().write_slice(data).is_ok()
    }
}

impl TableMem for GuestMem<'_> {
    #[inline(always)]
    fn read(&self, pa: u64) -> Option<u64> {
        if self.1.is_none() {
            if let Some(v) = self.0.npt.read_u64(pa) {
                return Some(v);
            }
        }
        let mut b = [0u8; 8];
        self.read_bytes(pa, &mut b).then(|| u64::from_ne_bytes(b))
    }
    fn write(&mut self, _pa: u64, _v: u64) {}
    fn alloc_table(&mut self) -> Option<u64> {
        None
    }
}

/// Size of the XSAVE area for `xcr0` (CPUID 0xD.0 EBX as the guest sees it).
fn xsave_size(xcr0: u64) -> u32 {
    nsvm_core::cpuid::xsave_size(xcr0, |i| {
        let (a, b, ..) = hw::cpuid(0xd, i);
        (a, b)
    })
}

/// A growable text buffer for `core::fmt`.
struct TextBuf(KVec<u8>);

impl core::fmt::Write for TextBuf {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.0.extend_from_slice(s.as_bytes(), GFP_KERNEL).map_err(|_| core::fmt::Error)
    }
}

