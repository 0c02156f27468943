// SPDX-License-Identifier: GPL-2.0
//! The legacy devices of `nsvm run`, from vm-superio: COM1 (an 8250 UART
//! whose transmitter output goes to stdout) and the i8042 controller (its
//! CPU-reset command, 0xfe to port 0x64, ends the run). With the full
//! in-kernel irqchip the UART's interrupt goes to IRQ 4 through an irqfd
//! (KVM_IRQFD on GSI 4: the PIC's and I/O APIC's pin 4 by KVM's default
//! routes); otherwise the guest polls the line status register.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use vm_superio::{I8042Device, Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

/// COM1 base port; data at +0, line status at +5.
pub const COM1: u16 = 0x3f8;
/// COM1's ISA IRQ (GSI).
pub const COM1_IRQ: u32 = 4;
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

/// Standard output, flushed at each newline by std's line writer.
pub struct Out;

impl Write for Out {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        std::io::stdout().write(b)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().flush()
    }
}

/// The devices shared by the vCPU threads.
pub struct Legacy {
    pub serial: Serial<IrqLine, vm_superio::serial::NoEvents, Out>,
    pub i8042: I8042Device<ResetRequest>,
}

impl Legacy {
    pub fn new(line: IrqLine) -> Self {
        Legacy { serial: Serial::new(line, Out), i8042: I8042Device::new(ResetRequest::default()) }
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
            _ => false,
        }
    }

    /// An IN the devices answer; false when the port is not theirs.
    pub fn inp(&mut self, port: u16, data: &mut [u8]) -> bool {
        match port {
            p if (COM1..COM1 + 8).contains(&p) => data.iter_mut().for_each(|b| *b = self.serial.read((p - COM1) as u8)),
            I8042_DATA | I8042_CMD => data.iter_mut().for_each(|b| *b = self.i8042.read((port - I8042_DATA) as u8)),
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
    fn thr_empty_interrupt_reaches_the_irqfd() {
        let e = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let mut d = Legacy::new(IrqLine::Irqfd(e.try_clone().unwrap()));
        assert!(matches!(d.serial.interrupt_evt(), IrqLine::Irqfd(_)));
        assert!(d.out(COM1 + 1, &[0x02])); // IER: THR empty
        assert!(d.out(COM1, b"x"));
        assert!(e.read().unwrap() >= 1);
    }
}
