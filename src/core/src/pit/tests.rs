// SPDX-License-Identifier: GPL-2.0
//! Host tests of the 8254 model.

use super::*;

const T0: u64 = 1_000_000_000;

/// Host ns of `t` PIT clocks after T0.
fn at(t: u64) -> u64 {
    T0 + ticks_to_ns(t)
}

/// A PIT with channel `ch` programmed: control word `cw`, then the count.
fn programmed(ch: u16, cw: u8, count: u16) -> Pit {
    let mut p = Pit::new(0);
    p.write(3, cw, T0);
    match (cw >> 4) & 3 {
        1 => p.write(ch, count as u8, T0),
        2 => p.write(ch, (count >> 8) as u8, T0),
        _ => {
            p.write(ch, count as u8, T0);
            p.write(ch, (count >> 8) as u8, T0);
        }
    }
    p
}

fn read16(p: &mut Pit, ch: u16, now: u64) -> u16 {
    let lo = p.read(ch, now).unwrap();
    let hi = p.read(ch, now).unwrap();
    u16::from(lo) | u16::from(hi) << 8
}

#[test]
fn clock_conversion() {
    assert_eq!(ns_to_ticks(1_000_000_000), PIT_FREQ);
    assert_eq!(ns_to_ticks(0), 0);
    for t in [1u64, 2, 1000, 65536, 1 << 40] {
        assert_eq!(ns_to_ticks(ticks_to_ns(t)), t);
    }
    // No overflow far into the host's uptime.
    assert!(ns_to_ticks(u64::MAX) > 0);
}

#[test]
fn layouts_match_kvm_bindings() {
    use kvm_bindings as kb;
    assert_eq!(CHANNEL_STATE_SIZE, size_of::<kb::kvm_pit_channel_state>());
    assert_eq!(KVM_PIT_STATE_SIZE, size_of::<kb::kvm_pit_state>());
    assert_eq!(KVM_PIT_STATE2_SIZE, size_of::<kb::kvm_pit_state2>());
    assert_eq!(KVM_PIT_CONFIG_SIZE, size_of::<kb::kvm_pit_config>());
    assert_eq!(KVM_REINJECT_CONTROL_SIZE, size_of::<kb::kvm_reinject_control>());
    assert_eq!(KVM_PIT_SPEAKER_DUMMY, kb::KVM_PIT_SPEAKER_DUMMY);
    assert_eq!(KVM_PIT_FLAGS_HPET_LEGACY, kb::KVM_PIT_FLAGS_HPET_LEGACY);
    assert_eq!(KVM_PIT_FLAGS_SPEAKER_DATA_ON, kb::KVM_PIT_FLAGS_SPEAKER_DATA_ON);
    // Field offsets through a kvm-bindings value written as bytes.
    let mut k = kb::kvm_pit_state2::default();
    k.channels[1] = kb::kvm_pit_channel_state {
        count: 0x1_2345,
        latched_count: 0xabcd,
        count_latched: 1,
        status_latched: 2,
        status: 3,
        read_state: 4,
        write_state: 5,
        write_latch: 6,
        rw_mode: 7,
        mode: 8,
        bcd: 9,
        gate: 10,
        count_load_time: -5,
    };
    k.flags = 0x55;
    // SAFETY: a plain C struct without padding, read as its bytes.
    let b = unsafe { core::slice::from_raw_parts((&raw const k).cast::<u8>(), KVM_PIT_STATE2_SIZE) };
    let s = PitState2::from_bytes(b);
    let c = s.channels[1];
    assert_eq!((c.count, c.latched_count, c.count_latched, c.status_latched, c.status), (0x1_2345, 0xabcd, 1, 2, 3));
    assert_eq!((c.read_state, c.write_state, c.write_latch, c.rw_mode, c.mode, c.bcd, c.gate), (4, 5, 6, 7, 8, 9, 10));
    assert_eq!(c.count_load_time, -5);
    assert_eq!(s.flags, 0x55);
    assert_eq!(&s.to_bytes2()[..], b);
    assert_eq!(&s.to_bytes()[..], &b[..72]);
    assert_eq!(PitState2::from_bytes(&b[..72]).flags, 0);
    let mut cfg = [0u8; 64];
    cfg[0] = 3;
    assert_eq!(pit_config_flags(&cfg), 3);
    assert!(reinject_control(&[2u8; 32]));
    assert!(!reinject_control(&[0u8; 32]));
}

#[test]
fn reset_state_is_kvms() {
    let p = Pit::new(T0);
    let s = p.state();
    for (i, c) in s.channels.iter().enumerate() {
        assert_eq!(c.mode, 0xff);
        assert_eq!(c.count, 0x10000);
        assert_eq!(c.gate, u8::from(i != 2));
    }
    assert_eq!(s.flags, 0);
    assert_eq!(p.irq0_timer(), None);
}

#[test]
fn mode0_counts_down_wraps_and_raises_out() {
    // Channel 0, lo/hi, mode 0, binary; count 1000.
    let mut p = programmed(0, 0x30, 1000);
    assert!(!p.ch[0].out(T0));
    assert_eq!(read16(&mut p, 0, at(100)), 900);
    assert_eq!(read16(&mut p, 0, at(999)), 1);
    assert!(!p.ch[0].out(at(999)));
    assert!(p.ch[0].out(at(1000)));
    // Wraps to 0xffff and keeps counting; OUT stays high.
    assert_eq!(read16(&mut p, 0, at(1001)), 0xffff);
    assert!(p.ch[0].out(at(5000)));
    // One edge at terminal count.
    assert_eq!(p.irq0_timer(), Some(Irq0Timer { first_ns: at(1000), period_ns: 0 }));
        // A new count drops OUT again.
    p.write(0, 10, at(2000));
    p.write(0, 0, at(2000));
    assert!(!p.ch[0].out(at(2005)));
}

#[test]
fn mode2_reloads_and_pulses_low_once_per_period() {
    let mut p = programmed(0, 0x34, 100);
    assert_eq!(read16(&mut p, 0, at(0)), 100);
    assert_eq!(read16(&mut p, 0, at(99)), 1);
    assert_eq!(read16(&mut p, 0, at(100)), 100);
    assert_eq!(read16(&mut p, 0, at(150)), 50);
    assert!(p.ch[0].out(at(98)));
    assert!(!p.ch[0].out(at(99)));
    assert!(p.ch[0].out(at(100)));
    assert_eq!(p.irq0_timer().unwrap(), Irq0Timer { first_ns: at(100), period_ns: ticks_to_ns(100) });
}

#[test]
fn mode3_square_wave() {
    // Even count: N, N-2, ..., 2 in each half, OUT high then low.
    let mut p = programmed(0, 0x36, 10);
    assert_eq!(read16(&mut p, 0, at(0)), 10);
    assert_eq!(read16(&mut p, 0, at(1)), 8);
    assert_eq!(read16(&mut p, 0, at(4)), 2);
    assert!(p.ch[0].out(at(4)));
    assert_eq!(read16(&mut p, 0, at(5)), 10);
    assert!(!p.ch[0].out(at(5)));
    assert!(p.ch[0].out(at(10)));
    // Odd count: high (N+1)/2 clocks, low (N-1)/2.
    let p = programmed(0, 0x36, 7);
    let highs = (0..7).filter(|&t| p.ch[0].out(at(t))).count();
    assert_eq!(highs, 4);
    assert!(p.irq0_timer().unwrap().period_ns > 0);
}

#[test]
fn mode4_strobe() {
    let p = programmed(0, 0x38, 50);
    assert!(p.ch[0].out(at(49)));
    assert!(!p.ch[0].out(at(50)));
    assert!(p.ch[0].out(at(51)));
    assert_eq!(p.irq0_timer(), Some(Irq0Timer { first_ns: at(51), period_ns: 0 }));
}

#[test]
fn lsb_and_msb_only_access() {
    // LSB only: count 0x40; MSB only: count 0x4000.
    let mut p = programmed(1, 0x50, 0x40);
    assert_eq!(p.ch[1].s.count, 0x40);
    assert_eq!(p.read(1, at(0x10)).unwrap(), 0x30);
    let mut p = programmed(1, 0x60, 0x4000);
    assert_eq!(p.ch[1].s.count, 0x4000);
    assert_eq!(p.read(1, at(0x100)).unwrap(), 0x3f);
    // Count 0 is 0x10000.
    let p = programmed(1, 0x70, 0);
    assert_eq!(p.ch[1].s.count, 0x10000);
    assert_eq!(p.ch[1].value(at(1)), 0xffff);
}

#[test]
fn counter_latch_holds_until_read() {
    let mut p = programmed(0, 0x30, 1000);
    p.write(3, 0x00, at(100)); // latch channel 0
    // A second latch before the read is ignored.
    p.write(3, 0x00, at(300));
    assert_eq!(read16(&mut p, 0, at(500)), 900);
    // Unlatched again: live value.
    assert_eq!(read16(&mut p, 0, at(600)), 400);
    // Latched value read in the middle of a word read: KVM's order.
    p.write(3, 0x00, at(700));
    assert_eq!(p.read(0, at(800)).unwrap(), (300 & 0xff) as u8);
    assert_eq!(p.read(0, at(800)).unwrap(), (300 >> 8) as u8);
}

#[test]
fn read_back_status_and_count() {
    let mut p = Pit::new(0);
    p.write(3, 0x34, T0); // ch0 lo/hi mode 2
    // Control word written, no count: null count, OUT high (mode 2).
    p.write(3, 0xe2, T0); // read-back status of channel 0
    assert_eq!(p.read(0, T0).unwrap(), 0x80 | 0x40 | 0x30 | 0x04);
    p.write(0, 0x00, T0);
    p.write(0, 0x10, T0); // count 0x1000
    // Before the next clock the count is not loaded yet.
    p.write(3, 0xe2, T0);
    assert_eq!(p.read(0, T0).unwrap() & 0x40, 0x40);
    // Status and count latched together: status first, then the count.
    p.write(3, 0xc2, at(16));
    assert_eq!(p.read(0, at(20)).unwrap(), 0x80 | 0x30 | 0x04);
    assert_eq!(read16(&mut p, 0, at(30)), 0x1000 - 16);
    // Mode 0 status: OUT low, then high after terminal count; BCD bit.
    let mut p = programmed(2, 0xb1, 0x0010);
    p.speaker_write(1, T0);
    p.write(3, 0xe8, at(5));
    assert_eq!(p.read(2, at(5)).unwrap(), 0x30 | 0x01);
    p.write(3, 0xe8, at(10));
    assert_eq!(p.read(2, at(10)).unwrap(), 0x80 | 0x30 | 0x01);
    // Read-back of several channels at once.
    let mut p = Pit::new(0);
    p.write(3, 0x30, T0);
    p.write(3, 0x70, T0);
    p.write(3, 0xe6, T0);
    assert!(p.ch[0].s.status_latched != 0 && p.ch[1].s.status_latched != 0 && p.ch[2].s.status_latched == 0);
}

#[test]
fn bcd_counts_in_decimal() {
    // Mode 0, BCD, count 1234 (decimal).
    let mut p = programmed(0, 0x31, 0x1234);
    assert_eq!(read16(&mut p, 0, at(0)), 0x1234);
    assert_eq!(read16(&mut p, 0, at(35)), 0x1199);
    assert_eq!(read16(&mut p, 0, at(1234)), 0x0000);
    assert_eq!(read16(&mut p, 0, at(1235)), 0x9999);
    assert!(p.ch[0].out(at(1234)));
    // Count 0 in BCD is 10000.
    let p = programmed(0, 0x31, 0);
    assert_eq!(p.ch[0].value(at(1)), 0x9999);
    // Mode 2 in BCD.
    let mut p = programmed(0, 0x35, 0x0100);
    assert_eq!(read16(&mut p, 0, at(150)), 0x0050);
}

#[test]
fn channel2_gate_and_out_through_port_61() {
    // Linux's PIT calibration: gate high, speaker off, ch2 mode 0, count N;
    // poll port 0x61 bit 5.
    let mut p = Pit::new(0);
    p.speaker_write(0x01, T0);
    p.write(3, 0xb0, T0);
    p.write(2, 0x00, T0);
    p.write(2, 0x04, T0); // 1024
    assert_eq!(p.speaker_read(at(10)) & 0x21, 0x01);
    assert_eq!(p.speaker_read(at(1024)) & 0x21, 0x21);
    // Gate low stops counting in mode 0; high resumes where it stopped.
    let mut p = programmed(2, 0xb0, 1000);
    p.speaker_write(0x01, T0);
    p.write(2, 0xe8, T0);
    p.write(2, 0x03, T0);
    p.speaker_write(0x00, at(100));
    assert_eq!(p.ch[2].value(at(500)), 900);
    p.speaker_write(0x01, at(600));
    let v = p.ch[2].value(at(700));
    assert!((799..=801).contains(&v), "{v}");
    // Mode 1: nothing until the gate's rising edge, then OUT low for N.
    let mut p = programmed(2, 0xb2, 100);
    assert!(p.ch[2].out(at(200)));
    assert_eq!(p.ch[2].value(at(200)), 100);
    p.speaker_write(0x01, at(300));
    assert!(!p.ch[2].out(at(350)));
    assert_eq!(p.ch[2].value(at(350)), 50);
    assert!(p.ch[2].out(at(400)));
    // Mode 1 without a count written since the control word: no trigger.
    let mut p = Pit::new(0);
    p.write(3, 0xb2, T0);
    p.speaker_write(0x01, at(10));
    assert!(p.ch[2].out(at(20)));
    assert_eq!(p.ch[2].elapsed(at(20)), 0);
    // Mode 2 with gate low: OUT high, held; rising edge reloads.
    let mut p = programmed(2, 0xb4, 100);
    assert_eq!(p.ch[2].value(at(50)), 100);
    assert!(p.ch[2].out(at(99)));
    p.speaker_write(0x01, at(1000));
    assert_eq!(p.ch[2].value(at(1030)), 70);
    // Speaker data bit and refresh toggle.
    p.speaker_write(0x03, at(1000));
    assert_eq!(p.state().flags, KVM_PIT_FLAGS_SPEAKER_DATA_ON);
    assert_eq!(p.speaker_read(1 << 14) & 0x13, 0x13);
    assert_eq!(p.speaker_read(0) & 0x13, 0x03);
    p.speaker_write(0x01, at(1000));
    assert_eq!(p.state().flags, 0);
}

#[test]
fn channel0_gate_tied_high_never_triggers_mode1() {
    let p = programmed(0, 0x32, 100);
    assert_eq!(p.irq0_timer(), None);
    assert!(p.ch[0].out(at(1000)));
}

#[test]
fn set_state_restarts_counts_and_round_trips() {
    let mut p = programmed(0, 0x34, 1000);
    let mut st = p.state();
    st.channels[0].count = 500;
    st.channels[2].count = 0;
    st.flags = KVM_PIT_FLAGS_SPEAKER_DATA_ON;
    p.set_state(&st, at(2000));
    let got = p.state();
    assert_eq!(got.channels[0].count, 500);
    assert_eq!(got.channels[2].count, 0x10000);
    assert_eq!(got.channels[0].count_load_time, at(2000) as i64);
    assert_eq!(got.flags, KVM_PIT_FLAGS_SPEAKER_DATA_ON);
    assert_eq!(p.ch[0].value(at(2100)), 400);
    // HPET legacy: no IRQ 0 from the PIT.
    st.flags = KVM_PIT_FLAGS_HPET_LEGACY;
    p.set_state(&st, at(3000));
    assert_eq!(p.irq0_timer(), None);
}

#[test]
fn hostile_state_never_panics() {
    let mut p = Pit::new(0);
    for v in [0u8, 1, 2, 3, 4, 5, 6, 7, 8, 0x7f, 0xff] {
        let c = ChannelState {
            count: u32::MAX,
            latched_count: 0xffff,
            count_latched: v,
            status_latched: v,
            status: v,
            read_state: v,
            write_state: v,
            write_latch: v,
            rw_mode: v,
            mode: v,
            bcd: v,
            gate: v,
            count_load_time: i64::MIN,
        };
        let st = PitState2 { channels: [c; 3], flags: u32::MAX };
        p.set_state(&st, u64::MAX);
        for port in 0..4u16 {
            for t in [0, u64::MAX / 2, u64::MAX] {
                p.read(port, t);
                p.write(port, v, t);
                p.write(3, 0xfe, t);
                p.speaker_write(v, t);
                p.speaker_read(t);
                let _ = p.irq0_timer();
            }
        }
        let mut st2 = st;
        st2.flags = 0;
        st2.channels[0].count = 1;
        p.set_state(&st2, 5);
        let _ = p.irq0_timer();
    }
}

#[test]
fn reinjection_one_per_ack() {
    let mut r = Reinject::default();
    // Three ticks while the guest does not run: one raise now...
    r.tick();
    assert!(r.inject());
    r.tick();
    assert!(!r.inject());
    r.tick();
    assert!(!r.inject());
    assert_eq!(r.pending, 3);
    // ... and one per acknowledgement until none is pending.
    assert!(r.ack());
    assert!(r.inject());
    assert!(r.ack());
    assert!(r.inject());
    assert!(!r.ack());
    assert_eq!(r.pending, 0);
    // Off: every tick raises, acks are ignored.
    r.set(false);
    r.tick();
    assert!(r.inject());
    assert!(r.inject());
    assert!(!r.ack());
    assert_eq!(r.pending, 0);
    // On again: a clean start.
    r.set(true);
    assert_eq!(r, Reinject::default());
}
