// SPDX-License-Identifier: GPL-2.0
//! The in-kernel PIT (i8254) of a VM: `KVM_CREATE_PIT(2)`, `KVM_GET/SET_PIT(2)`,
//! `KVM_REINJECT_CONTROL` with KVM's errnos (`kvm_arch_vm_ioctl`), guest
//! port I/O on 0x40-0x43 (and 0x61 with `KVM_PIT_SPEAKER_DUMMY`) handled in
//! the kernel, channel 0's interrupt on an hrtimer with KVM's reinjection
//! accounting. The 8254 itself is `nsvm_core::pit`; the timer and the work
//! that raises IRQ 0 in process context are `hw::pit` (C: pit_shim.c).

use kernel::prelude::*;
use kernel::sync::Mutex;
use kernel::uaccess::{UserPtr, UserSlice};
use kernel::new_mutex;

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use nsvm_core::pit::{self, Irq0Timer, Pit, PitState2, Reinject};

use super::Vm;
use crate::hw;

/// What the PIT mutex protects.
pub(crate) struct PitInner {
    /// The 8254, once created.
    dev: Option<Pit>,
    /// Reinjection accounting of IRQ 0.
    reinject: Reinject,
    /// Port 0x61 is handled too (`KVM_PIT_SPEAKER_DUMMY`).
    speaker: bool,
    /// What the timer is armed for.
    armed: Option<Irq0Timer>,
}

/// A VM's PIT. The timer is the first field: dropped first, it stops the
/// hrtimer and waits for the work before anything they use goes.
#[pin_data]
pub(crate) struct PitDev {
    timer: hw::pit::PitTimer,
    /// A PIT exists (read without the lock on every guest port access).
    on: AtomicBool,
    /// Timer expiries and IRQ 0 acknowledgements not yet seen by the work.
    fired: AtomicU32,
    acked: AtomicU32,
    /// IRQ 0 edges raised (see `pit_raise_irq0`).
    pub(crate) irq0_edges: AtomicU64,
    #[pin]
    inner: Mutex<PitInner>,
}

impl PitDev {
    /// No PIT yet.
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            timer: hw::pit::PitTimer::new(),
            on: AtomicBool::new(false),
            fired: AtomicU32::new(0),
            acked: AtomicU32::new(0),
            irq0_edges: AtomicU64::new(0),
            inner <- new_mutex!(PitInner { dev: None, reinject: Reinject::default(), speaker: false, armed: None }, "nsvm_pit"),
        })
    }
}

/// Reads `N` bytes of the ioctl argument (`EFAULT`).
fn read_arg<const N: usize>(arg: usize) -> Result<[u8; N]> {
    let mut b = [0u8; N];
    UserSlice::new(UserPtr::from_addr(arg), N).reader().read_slice(&mut b)?;
    Ok(b)
}

impl Vm {
    /// Whether a PIT may be created: KVM requires the in-kernel PIC
    /// (`pic_in_kernel`, i.e. `KVM_CREATE_IRQCHIP` done), else `ENOENT`.
    fn pit_irqchip_ok(&self) -> bool {
        // LEAD: after the irqchip merge this is `self.pic_in_kernel()` (the
        // full irqchip exists; the split one does not count, as in KVM).
        // Until then only the test-only module parameter lets a PIT exist.
        *crate::module_parameters::pit_without_irqchip.value() != 0
    }

    /// `KVM_CREATE_PIT` (flags `KVM_PIT_SPEAKER_DUMMY`) and `KVM_CREATE_PIT2`
    /// (`struct kvm_pit_config` read first, `EFAULT`; flags other than
    /// SPEAKER_DUMMY ignored, as KVM): `EEXIST` when a PIT exists, `ENOENT`
    /// without the in-kernel PIC, in KVM's order.
    pub(super) fn create_pit(&self, arg: Option<usize>) -> Result<isize> {
        let flags = match arg {
            Some(a) => pit::pit_config_flags(&read_arg::<{ pit::KVM_PIT_CONFIG_SIZE }>(a)?),
            None => pit::KVM_PIT_SPEAKER_DUMMY,
        };
        let mut g = self.pit.inner.lock();
        if g.dev.is_some() {
            return Err(EEXIST);
        }
        if !self.pit_irqchip_ok() {
            return Err(ENOENT);
        }
        self.pit.timer.init(core::ptr::from_ref::<Vm>(self).cast())?;
        g.dev = Some(Pit::new(hw::task::now_ns()));
        g.reinject = Reinject::default();
        g.speaker = flags & pit::KVM_PIT_SPEAKER_DUMMY != 0;
        g.armed = None;
        self.pit.on.store(true, Ordering::Release);
        Ok(0)
    }

    /// `KVM_GET_PIT` (`struct kvm_pit_state` read first, then `ENXIO`
    /// without a PIT), `KVM_GET_PIT2` (`ENXIO` first).
    pub(super) fn get_pit(&self, arg: usize, v2: bool) -> Result<isize> {
        if !v2 {
            read_arg::<{ pit::KVM_PIT_STATE_SIZE }>(arg)?;
        }
        let st = self.pit.inner.lock().dev.as_ref().ok_or(ENXIO)?.state();
        let mut w = UserSlice::new(UserPtr::from_addr(arg), if v2 { pit::KVM_PIT_STATE2_SIZE } else { pit::KVM_PIT_STATE_SIZE }).writer();
        if v2 {
            w.write_slice(&st.to_bytes2())?;
        } else {
            w.write_slice(&st.to_bytes())?;
        }
        Ok(0)
    }

    /// `KVM_SET_PIT` / `KVM_SET_PIT2`: the struct read first (`EFAULT`),
    /// `ENXIO` without a PIT; every count loaded again from now (KVM).
    /// `KVM_SET_PIT` keeps the flags.
    pub(super) fn set_pit(&self, arg: usize, v2: bool) -> Result<isize> {
        let st = if v2 {
            PitState2::from_bytes(&read_arg::<{ pit::KVM_PIT_STATE2_SIZE }>(arg)?)
        } else {
            PitState2::from_bytes(&read_arg::<{ pit::KVM_PIT_STATE_SIZE }>(arg)?)
        };
        let mut g = self.pit.inner.lock();
        let now = hw::task::now_ns();
        let dev = g.dev.as_mut().ok_or(ENXIO)?;
        let st = if v2 { st } else { PitState2 { flags: dev.flags, ..st } };
        dev.set_state(&st, now);
        self.pit_rearm(&mut g);
        Ok(0)
    }

    /// `KVM_REINJECT_CONTROL`: the struct read first (`EFAULT`), `ENXIO`
    /// without a PIT.
    pub(super) fn reinject_control(&self, arg: usize) -> Result<isize> {
        let on = pit::reinject_control(&read_arg::<{ pit::KVM_REINJECT_CONTROL_SIZE }>(arg)?);
        let mut g = self.pit.inner.lock();
        if g.dev.is_none() {
            return Err(ENXIO);
        }
        g.reinject.set(on);
        Ok(0)
    }

    /// Arms (or stops) channel 0's timer when what it must do changed (a
    /// count loaded, a control word, a restored state); pending ticks are
    /// forgotten then, as in KVM's `create_pit_timer`. Periodic timers run
    /// at least `MIN_PERIOD_NS` apart (KVM's `min_timer_period_us`): a
    /// guest cannot flood the host.
    fn pit_rearm(&self, g: &mut PitInner) {
        let Some(dev) = g.dev.as_ref() else { return };
        let want = dev.irq0_timer();
        if want == g.armed {
            return;
        }
        g.armed = want;
        g.reinject.reset();
        self.pit.fired.store(0, Ordering::Relaxed);
        match want {
            Some(t) => {
                let period = if t.period_ns == 0 { 0 } else { t.period_ns.max(pit::MIN_PERIOD_NS) };
                self.pit.timer.start(t.first_ns, period);
            }
            None => self.pit.timer.cancel(),
        }
    }

    /// A guest port access the PIT takes: `port`/`size` of an IN (`write`
    /// None) or OUT (the low byte of the data, as KVM's devices use). None
    /// when no PIT device covers it (the access goes on as before); for an
    /// IN `Some(Some(v))` with the value (zero-extended), `Some(None)` for
    /// the control-word port, which writes nothing (KVM's: the register
    /// keeps its value).
    pub(crate) fn pit_pio(&self, port: u16, size: u8, write: Option<u8>) -> Option<Option<u8>> {
        if !self.pit.on.load(Ordering::Acquire) {
            return None;
        }
        let end = u32::from(port) + u32::from(size);
        let pit_range = port >= pit::PIT_BASE && end <= u32::from(pit::PIT_BASE) + 4;
        let speaker = port == pit::SPEAKER_PORT && end <= u32::from(pit::SPEAKER_PORT) + 4;
        if !pit_range && !speaker {
            return None;
        }
        let mut g = self.pit.inner.lock();
        if speaker && !g.speaker {
            return None;
        }
        let now = hw::task::now_ns();
        let dev = g.dev.as_mut()?;
        let r = match (speaker, write) {
            (true, Some(v)) => {
                dev.speaker_write(v, now);
                None
            }
            (true, None) => Some(dev.speaker_read(now)),
            (false, Some(v)) => {
                dev.write(port, v, now);
                // A count or control word of channel 0 may change its timer.
                if port & 3 == 0 || port & 3 == 3 {
                    self.pit_rearm(&mut g);
                }
                None
            }
            (false, None) => dev.read(port, now),
        };
        Some(r)
    }

    /// The timer expired (hardirq context, `nsvm_rs_pit_timer`): counted
    /// for the work the C side queues next.
    pub(crate) fn pit_timer_fired(&self) {
        self.pit.fired.fetch_add(1, Ordering::AcqRel);
    }

    /// The GSI 0 interrupt was acknowledged (EOI) by the PIC or I/O APIC
    /// (KVM's `kvm_pit_ack_irq`; any context): the work decides whether a
    /// pending tick is raised again.
    // LEAD: the irqchip calls this on the EOI of GSI 0 (its empty
    // src/vm/pit_hook.rs goes); then the allow below goes too.
    #[allow(dead_code)]
    pub(crate) fn pit_irq_acked(&self) {
        if self.pit.on.load(Ordering::Acquire) {
            self.pit.acked.fetch_add(1, Ordering::AcqRel);
            self.pit.timer.kick();
        }
    }

    /// The PIT's work (process context, `nsvm_rs_pit_work`; KVM's
    /// `pit_do_work`): the expiries and acknowledgements since the last
    /// run go through the reinjection accounting, which allows at most one
    /// IRQ 0 edge per run.
    pub(crate) fn pit_work(&self) {
        let raise = {
            let mut g = self.pit.inner.lock();
            if g.dev.is_none() {
                return;
            }
            let fired = self.pit.fired.swap(0, Ordering::AcqRel);
            let acked = self.pit.acked.swap(0, Ordering::AcqRel);
            for _ in 0..fired {
                g.reinject.tick();
            }
            let mut again = false;
            for _ in 0..acked {
                again |= g.reinject.ack();
            }
            (fired != 0 || again) && g.reinject.inject()
        };
        if raise {
            self.pit_raise_irq0();
        }
    }

    /// Raises one IRQ 0 edge (GSI 0 high then low, KVM's `pit_do_work`).
    fn pit_raise_irq0(&self) {
        self.pit.irq0_edges.fetch_add(1, Ordering::Relaxed);
        // LEAD: with the irqchip merged, raise the edge here (the constant
        // from wherever the irqchip branch puts it in nsvm_core):
        //     self.set_irq(KVM_PIT_IRQ_SOURCE_ID, 0, true);
        //     self.set_irq(KVM_PIT_IRQ_SOURCE_ID, 0, false);
        // (no PIT lock is held here; set_irq may take the irqchip's locks).
        // KVM also delivers an NMI to every vCPU whose LVT0 is in NMI mode
        // (kvm_apic_nmi_wd_deliver): not done.
    }
}
