// SPDX-License-Identifier: GPL-2.0
//! The legacy devices of `nsvm run`, from vm-superio: COM1 (an 8250 UART
//! whose transmitter output goes to stdout) and the i8042 controller (its
//! CPU-reset command, 0xfe to port 0x64, ends the run). With the full
//! in-kernel irqchip the UART's interrupt goes to IRQ 4 through an irqfd
//! (KVM_IRQFD on GSI 4: the PIC's and I/O APIC's pin 4 by KVM's default
//! routes); otherwise the guest polls the line status register. Beside
//! them a read-only MC146818 CMOS clock (ports 0x70/0x71) with the host's
//! UTC time, which rust-vmm has no crate for on x86: Linux reads it at boot
//! and polls its update flag.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use vm_superio::{I8042Device, Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

/// COM1 base port; data at +0, line status at +5.
pub const COM1: u16 = 0x3f8;
/// COM1's ISA IRQ (GSI).
pub const COM1_IRQ: u32 = 4;
/// CMOS index and data ports.
pub const CMOS_INDEX: u16 = 0x70;
pub const CMOS_DATA: u16 = 0x71;
/// i8042 data and command/status ports.
pub const I8042_DATA: u16 = 0x60;
pub const I8042_CMD: u16 = 0x64;

/// The UART's interrupt line: an irqfd, or nothing (polled).
pub enum IrqLine {
    Polled,
    Irqfd(EventFd),
}

impl Trigger for IrqLine {
    type E = std::io::Error;
    fn trigger(&self) -> std::io::Result<()> {
        match self {
            IrqLine::Polled => Ok(()),
            IrqLine::Irqfd(e) => e.write(1),
        }
    }
}

/// The i8042's reset request.
#[derive(Default)]
pub struct ResetRequest(AtomicBool);

impl Trigger for ResetRequest {
    type E = std::convert::Infallible;
    fn trigger(&self) -> Result<(), Self::E> {
        self.0.store(true, Ordering::SeqCst);
        Ok(())
    }
}

/// Where the UART's output goes: standard output (flushed at each newline
/// by std's line writer), or nowhere (unit tests).
pub enum Out {
    Stdout,
    #[cfg(test)]
    Discard,
}

impl Write for Out {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match self {
            Out::Stdout => std::io::stdout().write(b),
            #[cfg(test)]
            Out::Discard => Ok(b.len()),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Out::Stdout => std::io::stdout().flush(),
            #[cfg(test)]
            Out::Discard => Ok(()),
        }
    }
}

/// The devices shared by the vCPU threads.
pub struct Legacy {
    pub serial: Serial<IrqLine, vm_superio::serial::NoEvents, Out>,
    pub i8042: I8042Device<ResetRequest>,
    /// The CMOS register selected by port 0x70 (bit 7, NMI disable, left out).
    cmos_index: u8,
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar.
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn bcd(v: u32) -> u8 {
    (((v / 10) % 10) << 4 | (v % 10)) as u8
}

/// CMOS register `index` at `unix` seconds (UTC): the clock in BCD, 24-hour
/// mode (status B 0x02), never in an update (status A 0x26: UIP clear),
/// valid (status D 0x80); other registers 0.
pub fn cmos_reg(index: u8, unix: u64) -> u8 {
    let days = (unix / 86_400) as i64;
    let secs = (unix % 86_400) as u32;
    let (y, m, d) = civil(days);
    match index {
        0x00 => bcd(secs % 60),
        0x02 => bcd(secs / 60 % 60),
        0x04 => bcd(secs / 3600),
        0x06 => bcd(((days + 4).rem_euclid(7) + 1) as u32), // 1 = Sunday
        0x07 => bcd(d),
        0x08 => bcd(m),
        0x09 => bcd((y % 100) as u32),
        0x32 => bcd((y / 100) as u32),
        0x0a => 0x26,
        0x0b => 0x02,
        0x0d => 0x80,
        _ => 0,
    }
}

impl Legacy {
    pub fn new(line: IrqLine) -> Self {
        Self::with_output(line, Out::Stdout)
    }

    fn with_output(line: IrqLine, out: Out) -> Self {
        Legacy { serial: Serial::new(line, out), i8042: I8042Device::new(ResetRequest::default()), cmos_index: 0 }
    }

    /// An OUT the devices take (every element of a string OUT in turn);
    /// false when the port is not theirs.
    pub fn out(&mut self, port: u16, data: &[u8]) -> bool {
        match port {
            p if (COM1..COM1 + 8).contains(&p) => {
                for b in data {
                    // An irqfd that cannot be written loses the interrupt only.
                    let _ = self.serial.write((p - COM1) as u8, *b);
                }
                true
            }
            I8042_DATA | I8042_CMD => {
                for b in data {
                    let _ = self.i8042.write((port - I8042_DATA) as u8, *b);
                }
                true
            }
            CMOS_INDEX => {
                self.cmos_index = data.last().copied().unwrap_or(0) & 0x7f;
                true
            }
            // Writes of the clock (setting the time) are ignored.
            CMOS_DATA => true,
            _ => false,
        }
    }

    /// An IN the devices answer; false when the port is not theirs.
    pub fn inp(&mut self, port: u16, data: &mut [u8]) -> bool {
        match port {
            p if (COM1..COM1 + 8).contains(&p) => data.iter_mut().for_each(|b| *b = self.serial.read((p - COM1) as u8)),
            I8042_DATA | I8042_CMD => data.iter_mut().for_each(|b| *b = self.i8042.read((port - I8042_DATA) as u8)),
            CMOS_INDEX => data.fill(self.cmos_index),
            CMOS_DATA => {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
                data.fill(cmos_reg(self.cmos_index, now));
            }
            _ => return false,
        }
        true
    }

    /// The guest asked the i8042 for a CPU reset.
    pub fn reset_requested(&self) -> bool {
        self.i8042.reset_evt().0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsr_says_transmitter_empty_and_reset_is_0xfe_to_0x64() {
        let mut d = Legacy::new(IrqLine::Polled);
        let mut b = [0u8];
        assert!(d.inp(COM1 + 5, &mut b));
        assert_eq!(b[0], 0x60);
        assert!(!d.reset_requested());
        assert!(d.out(I8042_CMD, &[0xfe]));
        assert!(d.reset_requested());
        assert!(!d.out(0x501, &[1]));
    }

    #[test]
    fn cmos_clock() {
        // 2026-12-01 12:34:56 UTC, a Tuesday.
        let t = 1_796_128_496;
        let r: Vec<u8> = [0x00, 0x02, 0x04, 0x06, 0x07, 0x08, 0x09, 0x32, 0x0a, 0x0b].iter().map(|i| cmos_reg(*i, t)).collect();
        assert_eq!(r, [0x56, 0x34, 0x12, 0x03, 0x01, 0x12, 0x26, 0x20, 0x26, 0x02]);
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(11_016), (2000, 2, 29));
        let mut d = Legacy::new(IrqLine::Polled);
        let mut b = [0u8];
        assert!(d.out(CMOS_INDEX, &[0x80 | 0x0b]));
        assert!(d.inp(CMOS_DATA, &mut b));
        assert_eq!(b[0], 0x02);
    }

    #[test]
    fn thr_empty_interrupt_reaches_the_irqfd() {
        let e = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let mut d = Legacy::with_output(IrqLine::Irqfd(e.try_clone().unwrap()), Out::Discard);
        assert!(matches!(d.serial.interrupt_evt(), IrqLine::Irqfd(_)));
        assert!(d.out(COM1 + 1, &[0x02])); // IER: THR empty
        assert!(d.out(COM1, b"x"));
        assert!(e.read().unwrap() >= 1);
    }
}
