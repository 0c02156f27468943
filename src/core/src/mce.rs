// SPDX-License-Identifier: GPL-2.0
//! Machine-check architecture offered to a vCPU (AMD APM vol. 2 chapter 9):
//! MCG_CAP/MCG_STATUS/MCG_CTL, 32 banks of MCi_CTL/STATUS/ADDR/MISC, HWCR
//! (whose McStatusWrEn lets software write MCi_STATUS, APM vol. 2 9.3.2),
//! and `KVM_X86_SETUP_MCE` / `KVM_X86_SET_MCE` with KVM's rules
//! (`arch/x86/kvm/x86.c`: `set_msr_mce`, `get_msr_mce`, the two ioctls).
//! No error is ever real: banks hold what the guest and userspace write,
//! and errors are the ones userspace injects.

/// MCG_CAP (179h).
pub const MCG_CAP: u32 = 0x179;
/// MCG_STATUS (17Ah).
pub const MCG_STATUS: u32 = 0x17a;
/// MCG_CTL (17Bh).
pub const MCG_CTL: u32 = 0x17b;
/// MC0_CTL (400h); bank i at 400h + 4i: CTL, STATUS, ADDR, MISC.
pub const MC0_CTL: u32 = 0x400;
/// MC0_CTL2 (280h; CMCI, never offered: always refused here as by KVM on AMD).
pub const MC0_CTL2: u32 = 0x280;
/// P5_MC_ADDR (0) and P5_MC_TYPE (1): read as 0.
pub const P5_MC_ADDR: u32 = 0;
/// P5_MC_TYPE.
pub const P5_MC_TYPE: u32 = 1;
/// HWCR (C001_0015h).
pub const HWCR: u32 = 0xc001_0015;
/// Banks (`KVM_CAP_MCE`).
pub const MAX_BANKS: usize = 32;

/// MCG_CAP bits.
pub mod cap {
    /// MCG_CTL present.
    pub const CTL_P: u64 = 1 << 8;
    /// CMCI present.
    pub const CMCI_P: u64 = 1 << 10;
    /// Software error recovery present.
    pub const SER_P: u64 = 1 << 24;
}
/// What `KVM_X86_GET_MCE_CAP_SUPPORTED` reports (KVM on AMD).
pub const SUPPORTED_CAP: u64 = cap::CTL_P | cap::SER_P;

/// MCi_STATUS bits.
pub mod status {
    /// Valid.
    pub const VAL: u64 = 1 << 63;
    /// Overflow: an earlier error was lost.
    pub const OVER: u64 = 1 << 62;
    /// Uncorrected.
    pub const UC: u64 = 1 << 61;
    /// Processor context corrupt.
    pub const PCC: u64 = 1 << 57;
    /// Signalled as a machine check.
    pub const S: u64 = 1 << 56;
    /// Action required.
    pub const AR: u64 = 1 << 55;
}
/// MCG_STATUS.MCIP: a machine check is in progress.
pub const MCG_STATUS_MCIP: u64 = 1 << 2;
/// HWCR.McStatusWrEn.
pub const HWCR_MCSTATUSWREN: u64 = 1 << 18;
/// HWCR.TscFreqSel.
pub const HWCR_TSCFREQSEL: u64 = 1 << 24;

/// `sizeof(struct kvm_x86_mce)`.
pub const KVM_X86_MCE_SIZE: usize = 64;

/// `struct kvm_x86_mce`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct X86Mce {
    /// MCi_STATUS.
    pub status: u64,
    /// MCi_ADDR.
    pub addr: u64,
    /// MCi_MISC.
    pub misc: u64,
    /// MCG_STATUS.
    pub mcg_status: u64,
    /// The bank.
    pub bank: u8,
}

impl X86Mce {
    /// Parses the struct (padding ignored, as KVM does).
    pub fn from_bytes(b: &[u8; KVM_X86_MCE_SIZE]) -> Self {
        let w = |i: usize| u64::from_ne_bytes(b[8 * i..8 * i + 8].try_into().unwrap_or([0; 8]));
        X86Mce { status: w(0), addr: w(1), misc: w(2), mcg_status: w(3), bank: b[32] }
    }
}

/// A refused ioctl argument (`EINVAL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Invalid;

/// What `KVM_X86_SET_MCE` asks of the vCPU besides the bank update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Nothing to deliver (corrected error, or reporting disabled).
    None,
    /// Raise #MC (vector 18).
    MachineCheck,
    /// A machine check while one is in progress or CR4.MCE clear: shutdown
    /// (APM vol. 2 9.3.4 and 8.2.16).
    Shutdown,
}

/// Machine-check state of one vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mce {
    /// MCG_CAP (32 banks, nothing else, until `KVM_X86_SETUP_MCE`).
    pub mcg_cap: u64,
    /// MCG_STATUS.
    pub mcg_status: u64,
    /// MCG_CTL.
    pub mcg_ctl: u64,
    /// MCi_CTL, STATUS, ADDR, MISC of each bank.
    pub banks: [u64; 4 * MAX_BANKS],
    /// HWCR.
    pub hwcr: u64,
}

impl Default for Mce {
    fn default() -> Self {
        Mce { mcg_cap: MAX_BANKS as u64, mcg_status: 0, mcg_ctl: 0, banks: [0; 4 * MAX_BANKS], hwcr: 0 }
    }
}

/// Whether `index` is an MSR this module handles.
pub const fn is_mce_msr(index: u32) -> bool {
    matches!(index, P5_MC_ADDR | P5_MC_TYPE | MCG_CAP | MCG_STATUS | MCG_CTL | HWCR)
        || (index >= MC0_CTL2 && index < MC0_CTL2 + MAX_BANKS as u32)
        || (index >= MC0_CTL && index < MC0_CTL + 4 * MAX_BANKS as u32)
}

impl Mce {
    fn nbanks(&self) -> u32 {
        (self.mcg_cap & 0xff) as u32
    }

    /// `KVM_X86_SETUP_MCE`: 1..=32 banks, only supported capability bits
    /// (and the bank count and extended-count fields); MCG_CTL and every
    /// MCi_CTL become all ones.
    pub fn setup(&mut self, mcg_cap: u64) -> Result<(), Invalid> {
        let n = (mcg_cap & 0xff) as usize;
        if n == 0 || n > MAX_BANKS || mcg_cap & !(SUPPORTED_CAP | 0xff | 0xff_0000) != 0 {
            return Err(Invalid);
        }
        self.mcg_cap = mcg_cap;
        if mcg_cap & cap::CTL_P != 0 {
            self.mcg_ctl = u64::MAX;
        }
        for b in 0..n {
            self.banks[4 * b] = u64::MAX;
        }
        Ok(())
    }

    /// RDMSR (`host`: from `KVM_GET_MSRS`); `None` is #GP / not processed.
    pub fn read(&self, index: u32, host: bool) -> Option<u64> {
        Some(match index {
            P5_MC_ADDR | P5_MC_TYPE => 0,
            MCG_CAP => self.mcg_cap,
            MCG_CTL if self.mcg_cap & cap::CTL_P == 0 && !host => return None,
            MCG_CTL => self.mcg_ctl,
            MCG_STATUS => self.mcg_status,
            HWCR => self.hwcr,
            // CMCI is never offered: only a host read of an existing bank's
            // CTL2 succeeds (0).
            i if (MC0_CTL2..MC0_CTL2 + MAX_BANKS as u32).contains(&i) => {
                if i - MC0_CTL2 >= self.nbanks() || !host {
                    return None;
                }
                0
            }
            i if (MC0_CTL..MC0_CTL + 4 * MAX_BANKS as u32).contains(&i) => {
                let off = i - MC0_CTL;
                if off >= 4 * self.nbanks() {
                    return None;
                }
                self.banks[off as usize]
            }
            _ => return None,
        })
    }

    /// WRMSR (`host`: from `KVM_SET_MSRS`; `amd`: the guest's CPUID
    /// vendor is AMD-compatible, where HWCR.McStatusWrEn allows non-zero
    /// MCi_STATUS writes). `Err` is #GP / not processed.
    pub fn write(&mut self, index: u32, val: u64, host: bool, amd: bool) -> Result<(), Invalid> {
        match index {
            MCG_STATUS => self.mcg_status = val,
            MCG_CTL => {
                if self.mcg_cap & cap::CTL_P == 0 && (val != 0 || !host) {
                    return Err(Invalid);
                }
                if val != 0 && val != u64::MAX {
                    return Err(Invalid);
                }
                self.mcg_ctl = val;
            }
            HWCR => {
                // KVM ignores writes to the flush-filter (6), IGNNE emulation
                // (8) and TLB-cache (3) disables; besides, only McStatusWrEn
                // and TscFreqSel (24, which Linux guests want set) may be set.
                let v = val & !((1 << 6) | (1 << 8) | (1 << 3));
                if v & !(HWCR_MCSTATUSWREN | HWCR_TSCFREQSEL) != 0 {
                    return Err(Invalid);
                }
                self.hwcr = v;
            }
            i if (MC0_CTL2..MC0_CTL2 + MAX_BANKS as u32).contains(&i) => {
                if i - MC0_CTL2 >= self.nbanks() || val != 0 || !host {
                    return Err(Invalid);
                }
            }
            i if (MC0_CTL..MC0_CTL + 4 * MAX_BANKS as u32).contains(&i) => {
                let off = i - MC0_CTL;
                if off >= 4 * self.nbanks() {
                    return Err(Invalid);
                }
                // MCi_CTL: 0 or all ones (bits 10 and 0 may be clear, which
                // old Linux and UnixWare write, as KVM allows).
                if off.is_multiple_of(4) && val != 0 && (val | (1 << 10) | 1) != u64::MAX {
                    return Err(Invalid);
                }
                // MCi_STATUS: the guest may write only 0 unless
                // HWCR.McStatusWrEn is set on an AMD-compatible vCPU.
                if off % 4 == 1 && !host && val != 0 && !(amd && self.hwcr & HWCR_MCSTATUSWREN != 0) {
                    return Err(Invalid);
                }
                self.banks[off as usize] = val;
            }
            _ => return Err(Invalid),
        }
        Ok(())
    }

    /// `KVM_X86_SET_MCE`: records an error in its bank and says what to
    /// deliver. `EINVAL` for a bank beyond MCG_CAP's count or a status
    /// without VAL. `cr4_mce`: CR4.MCE of the running guest.
    pub fn inject(&mut self, m: &X86Mce, cr4_mce: bool) -> Result<Delivery, Invalid> {
        use status::*;
        let n = self.nbanks() as usize;
        let b = m.bank as usize;
        if b >= n || m.status & VAL == 0 {
            return Err(Invalid);
        }
        let base = 4 * b;
        let mut st = m.status;
        // Uncorrected, no action (UCNA): recorded, nothing delivered (no
        // CMCI on AMD).
        if m.mcg_status == 0 && st & (PCC | S | AR) == 0 && st & UC != 0 {
            self.banks[base + 1] = st;
            self.banks[base + 2] = m.addr;
            self.banks[base + 3] = m.misc;
            self.mcg_status = m.mcg_status;
            return Ok(Delivery::None);
        }
        if st & UC != 0 {
            // Reporting disabled by MCG_CTL or MCi_CTL: dropped.
            if (self.mcg_cap & cap::CTL_P != 0 && self.mcg_ctl != u64::MAX) || self.banks[base] != u64::MAX {
                return Ok(Delivery::None);
            }
            if self.mcg_status & MCG_STATUS_MCIP != 0 || !cr4_mce {
                return Ok(Delivery::Shutdown);
            }
            if self.banks[base + 1] & VAL != 0 {
                st |= OVER;
            }
            self.banks[base + 2] = m.addr;
            self.banks[base + 3] = m.misc;
            self.mcg_status = m.mcg_status;
            self.banks[base + 1] = st;
            return Ok(Delivery::MachineCheck);
        }
        let cur = self.banks[base + 1];
        if cur & VAL == 0 || cur & UC == 0 {
            if cur & VAL != 0 {
                st |= OVER;
            }
            self.banks[base + 2] = m.addr;
            self.banks[base + 3] = m.misc;
            self.banks[base + 1] = st;
        } else {
            // A corrected error does not replace an uncorrected one.
            self.banks[base + 1] |= OVER;
        }
        Ok(Delivery::None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_rules() {
        let mut m = Mce::default();
        assert_eq!(m.read(MCG_CAP, false), Some(32));
        assert_eq!(m.read(MC0_CTL, true), Some(0), "banks exist before SETUP_MCE");
        assert_eq!(m.setup(0), Err(Invalid));
        assert_eq!(m.setup(33), Err(Invalid));
        assert_eq!(m.setup(cap::CMCI_P | 4), Err(Invalid), "CMCI not supported on AMD");
        m.setup(cap::CTL_P | cap::SER_P | 10).unwrap();
        assert_eq!(m.read(MCG_CTL, false), Some(u64::MAX));
        assert_eq!(m.read(MC0_CTL + 4 * 9, false), Some(u64::MAX));
        assert_eq!(m.read(MC0_CTL + 4 * 10, false), None);
        assert_eq!(m.read(MC0_CTL2, false), None);
        assert_eq!(m.read(MC0_CTL2, true), Some(0));
    }

    #[test]
    fn msr_writes() {
        let mut m = Mce::default();
        assert_eq!(m.write(MCG_CTL, 0, true, true), Ok(()), "host may write 0 without CTL_P");
        assert_eq!(m.write(MCG_CTL, 0, false, true), Err(Invalid));
        m.setup(cap::CTL_P | 2).unwrap();
        assert_eq!(m.write(MCG_CTL, 5, false, true), Err(Invalid));
        assert_eq!(m.write(MC0_CTL, 5, false, true), Err(Invalid));
        assert_eq!(m.write(MC0_CTL, !(1 << 10), false, true), Ok(()));
        assert_eq!(m.write(MC0_CTL + 1, 7, false, true), Err(Invalid), "STATUS without McStatusWrEn");
        assert_eq!(m.write(MC0_CTL + 1, 7, true, true), Ok(()), "host may");
        assert_eq!(m.write(HWCR, HWCR_MCSTATUSWREN | (1 << 6), false, true), Ok(()));
        assert_eq!(m.read(HWCR, false), Some(HWCR_MCSTATUSWREN));
        assert_eq!(m.write(MC0_CTL + 1, 7, false, true), Ok(()));
        assert_eq!(m.write(MC0_CTL + 1, 7, false, false), Err(Invalid), "not for a non-AMD vendor");
        assert_eq!(m.write(HWCR, 1 << 17, false, true), Err(Invalid));
        assert_eq!(m.write(HWCR, HWCR_TSCFREQSEL, false, true), Ok(()));
        assert_eq!(m.write(MC0_CTL + 8, 0, true, true), Err(Invalid), "bank 2 of 2");
    }

    #[test]
    fn injection() {
        use status::*;
        let mut m = Mce::default();
        m.setup(cap::CTL_P | 4).unwrap();
        let e = |st: u64, bank: u8, mcg: u64| X86Mce { status: st, addr: 0x1000, misc: 2, mcg_status: mcg, bank };
        assert_eq!(m.inject(&e(UC, 0, 0), true), Err(Invalid), "no VAL");
        assert_eq!(m.inject(&e(VAL, 4, 0), true), Err(Invalid), "bank 4 of 4");
        // Uncorrected with MCG_STATUS set: #MC; again while MCIP: shutdown.
        assert_eq!(m.inject(&e(VAL | UC | PCC, 1, 5), true), Ok(Delivery::MachineCheck));
        assert_eq!(m.read(MC0_CTL + 5, false), Some(VAL | UC | PCC));
        assert_eq!(m.read(MC0_CTL + 6, false), Some(0x1000));
        assert_eq!(m.read(MCG_STATUS, false), Some(5));
        assert_eq!(m.inject(&e(VAL | UC | PCC, 2, 5), true), Ok(Delivery::Shutdown));
        m.write(MCG_STATUS, 0, true, true).unwrap();
        assert_eq!(m.inject(&e(VAL | UC | PCC, 2, 5), false), Ok(Delivery::Shutdown), "CR4.MCE clear");
        // Corrected over a corrected one: overflow.
        assert_eq!(m.inject(&e(VAL, 3, 0), true), Ok(Delivery::None));
        assert_eq!(m.inject(&e(VAL | 1, 3, 0), true), Ok(Delivery::None));
        assert_eq!(m.read(MC0_CTL + 13, false), Some(VAL | OVER | 1));
        // Corrected over the uncorrected one of bank 1: only OVER is added.
        assert_eq!(m.inject(&e(VAL, 1, 0), true), Ok(Delivery::None));
        assert_eq!(m.read(MC0_CTL + 5, false), Some(VAL | UC | PCC | OVER));
        // UCNA: recorded, not delivered.
        assert_eq!(m.inject(&e(VAL | UC, 0, 0), true), Ok(Delivery::None));
        assert_eq!(m.read(MC0_CTL + 1, false), Some(VAL | UC));
        // Reporting disabled in MC2_CTL: dropped.
        m.write(MC0_CTL + 8, 0, true, true).unwrap();
        assert_eq!(m.inject(&e(VAL | UC | S, 2, 5), true), Ok(Delivery::None));
        assert_eq!(m.read(MC0_CTL + 9, false), Some(0));
        let b = {
            let mut b = [0u8; 64];
            b[0..8].copy_from_slice(&(VAL | UC).to_ne_bytes());
            b[24..32].copy_from_slice(&5u64.to_ne_bytes());
            b[32] = 3;
            b
        };
        assert_eq!(X86Mce::from_bytes(&b), X86Mce { status: VAL | UC, addr: 0, misc: 0, mcg_status: 5, bank: 3 });
    }
}
