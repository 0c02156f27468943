// SPDX-License-Identifier: GPL-2.0
//! The 8254 programmable interval timer (the PC's PIT at ports 0x40-0x43,
//! channel 2's gate and output at port 0x61) as KVM's in-kernel PIT offers
//! it (`KVM_CREATE_PIT2`, `KVM_GET/SET_PIT2`, `KVM_REINJECT_CONTROL`).
//!
//! Behaviour follows the Intel 8254 datasheet (order no. 231164): three
//! 16-bit down counters clocked at 1.193 MHz, six modes, counter latch and
//! read-back commands, BCD counting, the null-count status bit and the gate
//! inputs; KVM's choices where the datasheet leaves room or where the UAPI
//! fixes the state (`struct kvm_pit_channel_state` is the state userspace
//! reads and writes). Time is passed in (host monotonic nanoseconds): the
//! counters are functions of the time elapsed since their count was loaded,
//! so nothing ticks in software; channel 0's interrupt edges are computed
//! ([`Pit::irq0_timer`]) for an hrtimer.
//!
//! Where this model follows the datasheet and KVM's `i8254.c` does not (the
//! guest can tell): BCD counts count in decimal; status bit 6 (null count)
//! is set from a control word or count write until the count is loaded
//! into the counting element (the next clock; modes 1 and 5: the trigger);
//! a control word stops the counter until a count is written; a low gate
//! stops counting in modes 0, 2, 3 and 4 and holds OUT high in 2 and 3;
//! modes 1 and 5 start on the gate's rising edge only (channel 0, whose gate
//! is tied high, never triggers); mode 2's OUT is low for the one clock at
//! count 1 (KVM's is high there only); mode 3 counts down by two.

/// The PIT's input clock in Hz (KVM's `KVM_PIT_FREQ`; 1.193181666 MHz).
pub const PIT_FREQ: u64 = 1_193_181;
/// First PIT port (channel 0); channel 1, 2 and the control word follow.
pub const PIT_BASE: u16 = 0x40;
/// The speaker port: bit 0 channel 2's gate, bit 1 speaker data, bit 4 the
/// refresh toggle, bit 5 channel 2's OUT.
pub const SPEAKER_PORT: u16 = 0x61;
/// `KVM_PIT_SPEAKER_DUMMY` (`struct kvm_pit_config` flags): port 0x61 is
/// handled in the kernel too (set by `KVM_CREATE_PIT`).
pub const KVM_PIT_SPEAKER_DUMMY: u32 = 1;
/// `KVM_PIT_FLAGS_HPET_LEGACY`: the HPET replaces channel 0's interrupt.
pub const KVM_PIT_FLAGS_HPET_LEGACY: u32 = 1;
/// `KVM_PIT_FLAGS_SPEAKER_DATA_ON`: port 0x61 bit 1 was written set.
pub const KVM_PIT_FLAGS_SPEAKER_DATA_ON: u32 = 2;
/// Shortest period of a periodic channel 0 interrupt (KVM's
/// `min_timer_period_us`, 200 µs): a guest cannot flood the host.
pub const MIN_PERIOD_NS: u64 = 200_000;

/// `struct kvm_pit_channel_state` size.
pub const CHANNEL_STATE_SIZE: usize = 24;
/// `struct kvm_pit_state` size (three channels).
pub const KVM_PIT_STATE_SIZE: usize = 72;
/// `struct kvm_pit_state2` size (channels, flags, reserved[9]).
pub const KVM_PIT_STATE2_SIZE: usize = 112;
/// `struct kvm_pit_config` size.
pub const KVM_PIT_CONFIG_SIZE: usize = 64;
/// `struct kvm_reinject_control` size.
pub const KVM_REINJECT_CONTROL_SIZE: usize = 32;

/// Read/write states (KVM's `RW_STATE_*`; the access field of a control
/// word is one of the first three).
pub mod rw {
    /// Low byte only.
    pub const LSB: u8 = 1;
    /// High byte only.
    pub const MSB: u8 = 2;
    /// Low byte, then high byte: the low byte is next.
    pub const WORD0: u8 = 3;
    /// Low byte, then high byte: the high byte is next.
    pub const WORD1: u8 = 4;
}

/// Host nanoseconds to PIT clocks (no 128-bit division: the kernel has none).
pub fn ns_to_ticks(ns: u64) -> u64 {
    const NS: u64 = 1_000_000_000;
    (ns / NS) * PIT_FREQ + (ns % NS) * PIT_FREQ / NS
}

/// PIT clocks to host nanoseconds (rounded up: `ns_to_ticks` of the result
/// is `ticks` again; saturating).
pub fn ticks_to_ns(ticks: u64) -> u64 {
    const NS: u64 = 1_000_000_000;
    (ticks / PIT_FREQ).saturating_mul(NS).saturating_add((ticks % PIT_FREQ * NS).div_ceil(PIT_FREQ))
}

/// `struct kvm_pit_channel_state`: one channel as `KVM_GET/SET_PIT(2)` carry
/// it. `count` is the initial count (1..=0x10000 once loaded: 0 is 0x10000,
/// KVM's convention also in BCD); `count_load_time` the host monotonic time
/// in ns at which counting started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChannelState {
    /// Initial count (0x10000 for 0).
    pub count: u32,
    /// Count held by a counter latch.
    pub latched_count: u16,
    /// A latched count is pending: the `rw` state of its next byte.
    pub count_latched: u8,
    /// A latched status byte is pending.
    pub status_latched: u8,
    /// The latched status byte.
    pub status: u8,
    /// Next byte a read returns (`rw`).
    pub read_state: u8,
    /// Next byte a write sets (`rw`).
    pub write_state: u8,
    /// Low byte of a two-byte count being written.
    pub write_latch: u8,
    /// Access field of the last control word (1-3).
    pub rw_mode: u8,
    /// Mode (0-5; 0xff before any control word).
    pub mode: u8,
    /// BCD counting (bit 0).
    pub bcd: u8,
    /// Gate input level.
    pub gate: u8,
    /// Host monotonic ns at which counting started.
    pub count_load_time: i64,
}

impl ChannelState {
    /// Decodes the 24 bytes of `struct kvm_pit_channel_state`.
    pub fn from_bytes(b: &[u8]) -> Self {
        let mut a = [0u8; CHANNEL_STATE_SIZE];
        a.copy_from_slice(&b[..CHANNEL_STATE_SIZE]);
        Self {
            count: u32::from_ne_bytes([a[0], a[1], a[2], a[3]]),
            latched_count: u16::from_ne_bytes([a[4], a[5]]),
            count_latched: a[6],
            status_latched: a[7],
            status: a[8],
            read_state: a[9],
            write_state: a[10],
            write_latch: a[11],
            rw_mode: a[12],
            mode: a[13],
            bcd: a[14],
            gate: a[15],
            count_load_time: i64::from_ne_bytes([a[16], a[17], a[18], a[19], a[20], a[21], a[22], a[23]]),
        }
    }

    /// Encodes `struct kvm_pit_channel_state` into `out` (24 bytes).
    pub fn write_bytes(&self, out: &mut [u8]) {
        out[0..4].copy_from_slice(&self.count.to_ne_bytes());
        out[4..6].copy_from_slice(&self.latched_count.to_ne_bytes());
        out[6] = self.count_latched;
        out[7] = self.status_latched;
        out[8] = self.status;
        out[9] = self.read_state;
        out[10] = self.write_state;
        out[11] = self.write_latch;
        out[12] = self.rw_mode;
        out[13] = self.mode;
        out[14] = self.bcd;
        out[15] = self.gate;
        out[16..24].copy_from_slice(&self.count_load_time.to_ne_bytes());
    }
}

/// `struct kvm_pit_state2` (`struct kvm_pit_state` is its first 72 bytes,
/// without `flags`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PitState2 {
    /// The three channels.
    pub channels: [ChannelState; 3],
    /// `KVM_PIT_FLAGS_*`.
    pub flags: u32,
}

impl PitState2 {
    /// Decodes `struct kvm_pit_state2` (112 bytes) or, with 72 bytes,
    /// `struct kvm_pit_state` (flags then 0).
    pub fn from_bytes(b: &[u8]) -> Self {
        let ch = |i: usize| ChannelState::from_bytes(&b[i * CHANNEL_STATE_SIZE..]);
        let flags = if b.len() >= KVM_PIT_STATE2_SIZE { u32::from_ne_bytes([b[72], b[73], b[74], b[75]]) } else { 0 };
        Self { channels: [ch(0), ch(1), ch(2)], flags }
    }

    /// `struct kvm_pit_state2` (reserved words zero, as KVM writes them).
    pub fn to_bytes2(&self) -> [u8; KVM_PIT_STATE2_SIZE] {
        let mut b = [0u8; KVM_PIT_STATE2_SIZE];
        for (i, c) in self.channels.iter().enumerate() {
            c.write_bytes(&mut b[i * CHANNEL_STATE_SIZE..(i + 1) * CHANNEL_STATE_SIZE]);
        }
        b[72..76].copy_from_slice(&self.flags.to_ne_bytes());
        b
    }

    /// `struct kvm_pit_state`: the three channels.
    pub fn to_bytes(&self) -> [u8; KVM_PIT_STATE_SIZE] {
        let mut b = [0u8; KVM_PIT_STATE_SIZE];
        b.copy_from_slice(&self.to_bytes2()[..KVM_PIT_STATE_SIZE]);
        b
    }
}

/// `struct kvm_pit_config`: the flags word (the 15 pad words are ignored,
/// as KVM ignores them and every flag but `KVM_PIT_SPEAKER_DUMMY`).
pub fn pit_config_flags(b: &[u8]) -> u32 {
    u32::from_ne_bytes([b[0], b[1], b[2], b[3]])
}

/// `struct kvm_reinject_control`: `pit_reinject` (byte 0; any non-zero
/// value turns reinjection on, the reserved bytes are ignored, as KVM).
pub fn reinject_control(b: &[u8]) -> bool {
    b[0] != 0
}

/// Decodes a BCD count (four digits, and the fifth of KVM's 0x10000 for
/// 0; digits above 9 weigh what they say, as a counter would step them).
fn from_bcd(v: u32) -> u64 {
    let mut r = 0u64;
    let mut m = 1u64;
    let mut v = v;
    for _ in 0..5 {
        r += u64::from(v & 0xf) * m;
        m *= 10;
        v >>= 4;
    }
    r
}

/// Encodes 0..=9999 as four BCD digits.
fn to_bcd(v: u64) -> u16 {
    let v = v % 10_000;
    ((v / 1000) << 12 | (v / 100 % 10) << 8 | (v / 10 % 10) << 4 | (v % 10)) as u16
}

/// One channel: the UAPI state plus what the datasheet needs beyond it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Channel {
    /// The state `KVM_GET/SET_PIT2` carry.
    pub s: ChannelState,
    /// The counting element runs (a count was loaded and, in modes 1 and
    /// 5, triggered), from `s.count_load_time`.
    counting: bool,
    /// Clocks counted when a low gate stopped the counter (modes 0, 2, 3, 4).
    frozen: Option<u64>,
    /// A control word or count was written and not yet loaded.
    null_count: bool,
    /// A count was written since the last control word (modes 1 and 5
    /// trigger only then).
    armed: bool,
}

impl Channel {
    /// The mode as the datasheet numbers them (6 and 7 are 2 and 3), or
    /// None for a mode never programmed (KVM's reset value 0xff).
    fn mode(&self) -> Option<u8> {
        match self.s.mode {
            m @ 0..=5 => Some(m),
            6 | 7 => Some(self.s.mode - 4),
            _ => None,
        }
    }

    fn gate(&self) -> bool {
        self.s.gate != 0
    }

    /// The initial count in clocks (BCD decoded), at least 1.
    fn n(&self) -> u64 {
        let c = if self.s.count == 0 { 0x10000 } else { self.s.count };
        let n = if self.s.bcd & 1 != 0 { from_bcd(c) } else { u64::from(c) };
        n.max(1)
    }

    /// The counter's modulus: 10^4 in BCD, 2^16 in binary.
    fn modulus(&self) -> u64 {
        if self.s.bcd & 1 != 0 {
            10_000
        } else {
            0x10000
        }
    }

    fn start_ns(&self) -> u64 {
        self.s.count_load_time as u64
    }

    /// Clocks counted since the count was loaded (0 when not counting).
    pub fn elapsed(&self, now: u64) -> u64 {
        if !self.counting {
            return 0;
        }
        self.frozen.unwrap_or_else(|| ns_to_ticks(now.saturating_sub(self.start_ns())))
    }

    /// The counting element's value (what a read returns, encoded: BCD
    /// digits in BCD mode).
    pub fn value(&self, now: u64) -> u16 {
        let n = self.n();
        let m = self.modulus();
        let d = self.elapsed(now);
        let v = match self.mode() {
            _ if !self.counting => n % m,
            Some(0 | 1 | 4 | 5) => (n % m + m - d % m) % m,
            Some(2) => n - d % n,
            Some(_) => {
                // Mode 3: down by two from the even part of N, OUT high for
                // the first (N+1)/2 clocks, low for the rest.
                let p = d % n;
                let h = n.div_ceil(2);
                let e = n & !1;
                let q = if p < h { p } else { p - h };
                e.saturating_sub(2 * q)
            }
            None => n % m,
        };
        if self.s.bcd & 1 != 0 {
            to_bcd(v)
        } else {
            v as u16
        }
    }

    /// The OUT pin.
    pub fn out(&self, now: u64) -> bool {
        let n = self.n();
        let d = self.elapsed(now);
        match self.mode() {
            None => false,
            Some(0) => self.counting && d >= n,
            Some(1) => !self.counting || d >= n,
            Some(2) => !self.counting || !self.gate() || n < 2 || d % n != n - 1,
            Some(3) => !self.counting || !self.gate() || d % n < n.div_ceil(2),
            Some(_) => !self.counting || d != n,
        }
    }

    /// Status bit 6: the last written count is not in the counting
    /// element yet.
    pub fn null_count(&self, now: u64) -> bool {
        self.null_count && !(self.counting && ns_to_ticks(now.saturating_sub(self.start_ns())) >= 1)
    }

    /// Loads a count (KVM's `pit_load_count`: 0 stands for 0x10000).
    /// Modes 1 and 5 wait for the gate's rising edge unless `start` (a
    /// restored state continues counting).
    fn load(&mut self, val: u32, now: u64, start: bool) {
        self.s.count = if val == 0 { 0x10000 } else { val };
        self.null_count = true;
        self.armed = true;
        self.s.count_load_time = now as i64;
        self.counting = start || !matches!(self.mode(), Some(1 | 5));
        self.frozen = (self.counting && !self.gate() && matches!(self.mode(), Some(0 | 2 | 3 | 4))).then_some(0);
    }

    /// A new gate level (channel 2 through port 0x61).
    fn set_gate(&mut self, gate: bool, now: u64) {
        let was = self.gate();
        self.s.gate = u8::from(gate);
        match (was, gate, self.mode()) {
            (false, true, Some(1 | 5)) if self.armed => {
                self.counting = true;
                self.frozen = None;
                self.s.count_load_time = now as i64;
            }
            (false, true, Some(2 | 3)) if self.counting => {
                self.frozen = None;
                self.s.count_load_time = now as i64;
            }
            (false, true, Some(0 | 4)) => {
                if let Some(f) = self.frozen.take() {
                    self.s.count_load_time = now.saturating_sub(ticks_to_ns(f)) as i64;
                }
            }
            (true, false, Some(0 | 2 | 3 | 4)) if self.counting => self.frozen = Some(self.elapsed(now)),
            _ => {}
        }
    }

    fn latch_count(&mut self, now: u64) {
        if self.s.count_latched == 0 {
            self.s.latched_count = self.value(now);
            self.s.count_latched = self.s.rw_mode;
        }
    }

    fn latch_status(&mut self, now: u64) {
        if self.s.status_latched == 0 {
            self.s.status = u8::from(self.out(now)) << 7
                | u8::from(self.null_count(now)) << 6
                | (self.s.rw_mode & 3) << 4
                | (self.s.mode & 7) << 1
                | (self.s.bcd & 1);
            self.s.status_latched = 1;
        }
    }

    fn read(&mut self, now: u64) -> u8 {
        if self.s.status_latched != 0 {
            self.s.status_latched = 0;
            return self.s.status;
        }
        let lc = self.s.latched_count;
        match self.s.count_latched {
            0 => {}
            rw::MSB => {
                self.s.count_latched = 0;
                return (lc >> 8) as u8;
            }
            rw::WORD0 => {
                self.s.count_latched = rw::MSB;
                return lc as u8;
            }
            _ => {
                self.s.count_latched = 0;
                return lc as u8;
            }
        }
        let v = self.value(now);
        match self.s.read_state {
            rw::MSB => (v >> 8) as u8,
            rw::WORD0 => {
                self.s.read_state = rw::WORD1;
                v as u8
            }
            rw::WORD1 => {
                self.s.read_state = rw::WORD0;
                (v >> 8) as u8
            }
            _ => v as u8,
        }
    }

    fn write(&mut self, val: u8, now: u64) {
        match self.s.write_state {
            rw::MSB => self.load(u32::from(val) << 8, now, false),
            rw::WORD0 => {
                self.s.write_latch = val;
                self.s.write_state = rw::WORD1;
            }
            rw::WORD1 => {
                self.load(u32::from(self.s.write_latch) | u32::from(val) << 8, now, false);
                self.s.write_state = rw::WORD0;
            }
            _ => self.load(u32::from(val), now, false),
        }
    }
}

/// When channel 0's OUT next rises (the edge IRQ 0 sees): absolute host
/// ns of the first edge, and the period in ns for the periodic modes (2
/// and 3), 0 for a single edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Irq0Timer {
    /// Absolute host monotonic ns of the first edge.
    pub first_ns: u64,
    /// Period in ns, 0 for a single edge.
    pub period_ns: u64,
}

/// The whole PIT.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pit {
    /// The three channels.
    pub ch: [Channel; 3],
    /// `KVM_PIT_FLAGS_*` (`KVM_GET/SET_PIT2`).
    pub flags: u32,
}

impl Pit {
    /// The PIT after KVM's `kvm_pit_reset`: no mode programmed (0xff),
    /// counts 0x10000, gates of channels 0 and 1 high, channel 2's low.
    pub fn new(now: u64) -> Self {
        let mut p = Self::default();
        for (i, c) in p.ch.iter_mut().enumerate() {
            c.s.mode = 0xff;
            c.s.gate = u8::from(i != 2);
            c.load(0, now, false);
            c.null_count = false;
        }
        p
    }

    /// A guest write to port `0x40 + (port & 3)`.
    pub fn write(&mut self, port: u16, val: u8, now: u64) {
        let port = port & 3;
        if port != 3 {
            self.ch[port as usize].write(val, now);
            return;
        }
        let sel = val >> 6;
        if sel == 3 {
            // Read-back: bit 5 clear latches counts, bit 4 clear statuses,
            // bits 1-3 select channels 0-2.
            for i in 0..3 {
                if val & (2 << i) != 0 {
                    if val & 0x20 == 0 {
                        self.ch[i].latch_count(now);
                    }
                    if val & 0x10 == 0 {
                        self.ch[i].latch_status(now);
                    }
                }
            }
            return;
        }
        let c = &mut self.ch[sel as usize];
        let access = (val >> 4) & 3;
        if access == 0 {
            c.latch_count(now);
            return;
        }
        // A control word: new mode and access, OUT to its initial level, the
        // counter stopped until a count is written.
        c.s.rw_mode = access;
        c.s.read_state = access;
        c.s.write_state = access;
        c.s.mode = (val >> 1) & 7;
        if c.s.mode > 5 {
            c.s.mode -= 4;
        }
        c.s.bcd = val & 1;
        c.counting = false;
        c.frozen = None;
        c.null_count = true;
        c.armed = false;
    }

    /// A guest read of port `0x40 + (port & 3)`; None for the control-word
    /// port, which drives nothing (KVM leaves the destination register as
    /// it was).
    pub fn read(&mut self, port: u16, now: u64) -> Option<u8> {
        match port & 3 {
            3 => None,
            p => Some(self.ch[p as usize].read(now)),
        }
    }

    /// A guest write to port 0x61: bit 0 is channel 2's gate, bit 1 the
    /// speaker data (`KVM_PIT_FLAGS_SPEAKER_DATA_ON`).
    pub fn speaker_write(&mut self, val: u8, now: u64) {
        if val & 2 != 0 {
            self.flags |= KVM_PIT_FLAGS_SPEAKER_DATA_ON;
        } else {
            self.flags &= !KVM_PIT_FLAGS_SPEAKER_DATA_ON;
        }
        self.ch[2].set_gate(val & 1 != 0, now);
    }

    /// A guest read of port 0x61: gate 2, speaker data, the refresh toggle
    /// (about 15 µs on a PC, KVM's 2^14 ns), OUT 2.
    pub fn speaker_read(&self, now: u64) -> u8 {
        let data = u8::from(self.flags & KVM_PIT_FLAGS_SPEAKER_DATA_ON != 0);
        let refresh = ((now >> 14) & 1) as u8;
        u8::from(self.ch[2].gate()) | data << 1 | refresh << 4 | u8::from(self.ch[2].out(now)) << 5
    }

    /// `KVM_GET_PIT2`.
    pub fn state(&self) -> PitState2 {
        PitState2 { channels: [self.ch[0].s, self.ch[1].s, self.ch[2].s], flags: self.flags }
    }

    /// `KVM_SET_PIT2` (and `KVM_SET_PIT` with `flags` unchanged): every
    /// field taken as given, then each count loaded again from `now`, the
    /// channels counting (KVM's `kvm_vm_ioctl_set_pit2`).
    pub fn set_state(&mut self, st: &PitState2, now: u64) {
        self.flags = st.flags;
        for (c, s) in self.ch.iter_mut().zip(st.channels.iter()) {
            c.s = *s;
            c.load(s.count, now, true);
        }
    }

    /// When channel 0 raises IRQ 0, or None (not counting, stopped by its
    /// gate, a mode never programmed, or the HPET's legacy replacement on).
    /// Modes 0 and 1 rise at terminal count, 4 and 5 one clock later (a
    /// single edge each), 2 and 3 every N clocks. A function of the state
    /// only, not of the time: it changes exactly when the timer must be
    /// armed anew.
    pub fn irq0_timer(&self) -> Option<Irq0Timer> {
        let c = &self.ch[0];
        if self.flags & KVM_PIT_FLAGS_HPET_LEGACY != 0 || !c.counting || c.frozen.is_some() {
            return None;
        }
        let n = c.n();
        let (at, period_ns) = match c.mode()? {
            0 | 1 => (n, 0),
            4 | 5 => (n + 1, 0),
            _ => (n, ticks_to_ns(n)),
        };
        Some(Irq0Timer { first_ns: c.start_ns().saturating_add(ticks_to_ns(at)), period_ns })
    }
}

/// KVM's reinjection accounting of channel 0's interrupts (`pit_timer_fn`,
/// `pit_do_work`, `kvm_pit_ack_irq`): with reinjection on (the default,
/// `KVM_REINJECT_CONTROL`), every tick is counted as pending and IRQ 0 is
/// raised again only after the previous one was acknowledged (EOI), once
/// per pending tick, so a guest that was not running loses none; with it
/// off, every tick raises IRQ 0 and late ones merge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reinject {
    /// Reinjection on (`KVM_REINJECT_CONTROL`).
    pub reinject: bool,
    /// Ticks not yet acknowledged (the one raised included).
    pub pending: u32,
    /// The last raised interrupt was acknowledged.
    pub irq_ack: bool,
}

impl Default for Reinject {
    fn default() -> Self {
        Self { reinject: true, pending: 0, irq_ack: true }
    }
}

impl Reinject {
    /// Forgets pending ticks (a new count, KVM's `kvm_pit_reset_reinject`).
    pub fn reset(&mut self) {
        self.pending = 0;
        self.irq_ack = true;
    }

    /// `KVM_REINJECT_CONTROL`: turning it on starts from a clean state.
    pub fn set(&mut self, on: bool) {
        if self.reinject != on {
            if on {
                self.reset();
            }
            self.reinject = on;
        }
    }

    /// The timer expired: the injection step ([`Reinject::inject`]) runs next.
    pub fn tick(&mut self) {
        if self.reinject {
            self.pending = self.pending.saturating_add(1);
        }
    }

    /// The injection step: whether IRQ 0 is raised (an edge) now.
    pub fn inject(&mut self) -> bool {
        if self.reinject {
            let acked = self.irq_ack;
            self.irq_ack = false;
            return acked;
        }
        true
    }

    /// The guest acknowledged IRQ 0 (only counted with reinjection on):
    /// whether the injection step must run again (ticks still pending).
    pub fn ack(&mut self) -> bool {
        if !self.reinject {
            return false;
        }
        self.irq_ack = true;
        if self.pending > 0 {
            self.pending -= 1;
            return self.pending > 0;
        }
        false
    }
}

#[cfg(test)]
mod tests;
