// SPDX-License-Identifier: GPL-2.0
//! The pure parts of booting Linux (`nsvm run --kernel`): where things go in
//! guest memory, the RAM ranges around the 32-bit PCI hole, the E820 map the
//! zero page (or the PVH start info) carries, and the Intel MultiProcessor
//! table that tells an SMP kernel about the vCPUs and the I/O APIC (the
//! guest has no ACPI tables). Unit-tested on the host.

/// The zero page (`struct boot_params`, Documentation/arch/x86/boot.rst).
pub const ZERO_PAGE: u64 = 0x7000;
/// Initial RSP of the boot vCPU (the kernel sets up its own stack).
pub const BOOT_STACK: u64 = 0x8ff0;
/// GDT and identity page tables (7 pages: GDT, PML4, PDPT, 4 PDs), as for
/// long-mode payloads (run.rs `setup_mode`).
pub const LOADER: u64 = 0x9000;
/// The PVH start info, its module list and memory map.
pub const PVH_INFO: u64 = 0x6000;
/// The kernel command line.
pub const CMDLINE: u64 = 0x20000;
/// Longest command line accepted (the kernel's own limit is the header's
/// `cmdline_size`, checked too).
pub const CMDLINE_MAX: usize = 0x10000;
/// Start of the EBDA: the MP table lives here, reserved in the E820 map up
/// to 1 MiB (the legacy VGA/BIOS area).
pub const EBDA: u64 = 0x9fc00;
/// Where the kernel is loaded (bzImage's protected-mode part).
pub const HIMEM: u64 = 0x10_0000;
/// The 32-bit hole below 4 GiB (I/O APIC, local APIC, PCI): no RAM here.
pub const HOLE_START: u64 = 0xc000_0000;
pub const HOLE_END: u64 = 0x1_0000_0000;
/// Local APIC and I/O APIC addresses (the MP table names them).
pub const LAPIC_ADDR: u32 = 0xfee0_0000;
pub const IOAPIC_ADDR: u32 = 0xfec0_0000;

/// E820 types.
pub const E820_RAM: u32 = 1;
pub const E820_RESERVED: u32 = 2;

/// Guest RAM for `mem` bytes: one range at 0 for payloads (which may use
/// any address below `mem`, as before), and for a Linux guest the part above
/// 3 GiB moved above 4 GiB so that the APICs' addresses are not RAM.
pub fn ram_ranges(mem: u64, linux: bool) -> Vec<(u64, u64)> {
    if !linux || mem <= HOLE_START {
        return vec![(0, mem)];
    }
    vec![(0, HOLE_START), (HOLE_END, mem - HOLE_START)]
}

/// The E820 map of RAM `ranges` (sorted, (start, length)): the range below
/// 1 MiB up to the EBDA is RAM, the EBDA up to 1 MiB reserved, the rest RAM.
pub fn e820(ranges: &[(u64, u64)]) -> Vec<(u64, u64, u32)> {
    let mut out = Vec::new();
    for &(start, len) in ranges {
        let end = start + len;
        if start < EBDA {
            out.push((start, end.min(EBDA) - start, E820_RAM));
        }
        if start < HIMEM && end > EBDA {
            out.push((EBDA.max(start), HIMEM - EBDA.max(start), E820_RESERVED));
        }
        if end > HIMEM {
            let s = start.max(HIMEM);
            out.push((s, end - s, E820_RAM));
        }
    }
    out
}

/// Where the initrd of `size` bytes goes: page-aligned, as high as it fits
/// below `limit` (the end of the first RAM range, capped by the header's
/// `initrd_addr_max`) and above `kernel_end`; `None` when it does not fit.
pub fn initrd_addr(size: u64, limit: u64, kernel_end: u64) -> Option<u64> {
    let at = limit.checked_sub(size)? & !0xfff;
    (at >= kernel_end).then_some(at)
}

/// The command line given, checked: no NUL, shorter than `max` bytes (the
/// kernel's `cmdline_size`, or [`CMDLINE_MAX`]).
pub fn check_cmdline(c: &str, max: usize) -> Result<(), String> {
    if c.contains('\0') {
        return Err("the kernel command line contains a NUL byte".into());
    }
    if c.len() >= max.min(CMDLINE_MAX) {
        return Err(format!("the kernel command line is {} bytes; this kernel takes at most {}", c.len(), max.min(CMDLINE_MAX) - 1));
    }
    Ok(())
}

fn checksum(b: &[u8]) -> u8 {
    0u8.wrapping_sub(b.iter().fold(0u8, |s, x| s.wrapping_add(*x)))
}

/// The MP floating pointer and configuration table (Intel MultiProcessor
/// Specification 1.4, chapter 4) for `ncpus` processors with local APIC
/// IDs 0..ncpus (CPU 0 the BSP), one ISA bus, the I/O APIC (ID `ncpus`) at
/// [`IOAPIC_ADDR`] with ISA IRQ n on pin n (the routes KVM_CREATE_IRQCHIP
/// installs), LINT0 ExtINT and LINT1 NMI. Placed at `base`; the bytes to
/// write there.
pub fn mptable(base: u64, ncpus: u8) -> Vec<u8> {
    let ioapic_id = ncpus;
    let mut entries: Vec<u8> = Vec::new();
    let mut count = 0u16;
    // Processor entries (20 bytes): type 0, APIC id, APIC version 0x14,
    // flags (EN, BP), signature, feature flags (FPU, APIC), reserved.
    for id in 0..ncpus {
        entries.extend_from_slice(&[0, id, 0x14, 1 | if id == 0 { 2 } else { 0 }]);
        entries.extend_from_slice(&0x600u32.to_le_bytes());
        entries.extend_from_slice(&((1u32 << 0) | (1 << 9)).to_le_bytes());
        entries.extend_from_slice(&[0; 8]);
        count += 1;
    }
    // Bus entry: type 1, bus 0, "ISA   ".
    entries.extend_from_slice(&[1, 0]);
    entries.extend_from_slice(b"ISA   ");
    count += 1;
    // I/O APIC entry: type 2, id, version 0x11, EN, address.
    entries.extend_from_slice(&[2, ioapic_id, 0x11, 1]);
    entries.extend_from_slice(&IOAPIC_ADDR.to_le_bytes());
    count += 1;
    // I/O interrupt entries: type 3, INT (0), flags 0 (conforms to the bus:
    // ISA is edge, active high), bus 0, IRQ, I/O APIC, pin.
    for irq in 0..16u8 {
        entries.extend_from_slice(&[3, 0, 0, 0, 0, irq, ioapic_id, irq]);
        count += 1;
    }
    // Local interrupt entries: type 4, ExtINT (3) to LINT0, NMI (1) to
    // LINT1, of every local APIC (0xff).
    entries.extend_from_slice(&[4, 3, 0, 0, 0, 0, 0xff, 0]);
    entries.extend_from_slice(&[4, 1, 0, 0, 0, 0, 0xff, 1]);
    count += 2;

    let table_addr = base + 16;
    let mut table = Vec::new();
    table.extend_from_slice(b"PCMP");
    table.extend_from_slice(&((44 + entries.len()) as u16).to_le_bytes());
    table.push(4); // spec revision 1.4
    table.push(0); // checksum, below
    table.extend_from_slice(b"NSVM    ");
    table.extend_from_slice(b"nsvm run    ");
    table.extend_from_slice(&0u32.to_le_bytes()); // OEM table pointer
    table.extend_from_slice(&0u16.to_le_bytes()); // OEM table size
    table.extend_from_slice(&count.to_le_bytes());
    table.extend_from_slice(&LAPIC_ADDR.to_le_bytes());
    table.extend_from_slice(&0u16.to_le_bytes()); // extended table length
    table.push(0); // extended table checksum
    table.push(0);
    table.extend_from_slice(&entries);
    table[7] = checksum(&table);

    let mut fp = Vec::with_capacity(16 + table.len());
    fp.extend_from_slice(b"_MP_");
    fp.extend_from_slice(&(table_addr as u32).to_le_bytes());
    fp.push(1); // length in 16-byte units
    fp.push(4); // spec revision
    fp.push(0); // checksum, below
    fp.extend_from_slice(&[0; 5]); // feature bytes: a configuration table follows, virtual wire mode
    fp[10] = checksum(&fp);
    fp.extend_from_slice(&table);
    fp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_leave_the_hole() {
        assert_eq!(ram_ranges(256 << 20, true), [(0, 256 << 20)]);
        assert_eq!(ram_ranges(4 << 30, false), [(0, 4 << 30)]);
        assert_eq!(ram_ranges(4 << 30, true), [(0, 3 << 30), (4 << 30, 1 << 30)]);
    }

    #[test]
    fn e820_reserves_the_ebda_and_bios_area() {
        let m = e820(&ram_ranges(256 << 20, true));
        assert_eq!(m, [(0, EBDA, E820_RAM), (EBDA, HIMEM - EBDA, E820_RESERVED), (HIMEM, (256 << 20) - HIMEM, E820_RAM)]);
        let m = e820(&ram_ranges(5 << 30, true));
        assert_eq!(m.len(), 4);
        assert_eq!(m[3], (4 << 30, 2 << 30, E820_RAM));
        // The entries never overlap and cover RAM only.
        for w in m.windows(2) {
            assert!(w[0].0 + w[0].1 <= w[1].0);
        }
    }

    #[test]
    fn initrd_goes_high_and_aligned() {
        assert_eq!(initrd_addr(0x1800, 0x100_0000, 0x20_0000), Some(0xffe000));
        assert_eq!(initrd_addr(0x100_0000, 0x100_0000, 0x20_0000), None);
        assert_eq!(initrd_addr(0x200_0000, 0x100_0000, 0), None);
    }

    #[test]
    fn cmdline_limits() {
        assert!(check_cmdline("console=ttyS0", 2048).is_ok());
        assert!(check_cmdline("a\0b", 2048).is_err());
        assert!(check_cmdline(&"x".repeat(2048), 2048).is_err());
        assert!(check_cmdline(&"x".repeat(2047), 2048).is_ok());
    }

    #[test]
    fn mptable_checksums_and_counts() {
        let t = mptable(EBDA, 2);
        assert_eq!(&t[..4], b"_MP_");
        assert_eq!(u32::from_le_bytes(t[4..8].try_into().unwrap()), EBDA as u32 + 16);
        assert_eq!(t[..16].iter().fold(0u8, |s, x| s.wrapping_add(*x)), 0);
        let table = &t[16..];
        assert_eq!(&table[..4], b"PCMP");
        let len = u16::from_le_bytes([table[4], table[5]]) as usize;
        assert_eq!(len, table.len());
        assert_eq!(table.iter().fold(0u8, |s, x| s.wrapping_add(*x)), 0);
        // 2 CPUs, bus, I/O APIC, 16 IRQs, 2 local interrupts.
        assert_eq!(u16::from_le_bytes([table[34], table[35]]), 22);
        assert_eq!(len, 44 + 2 * 20 + 8 + 8 + 16 * 8 + 2 * 8);
        // CPU 0 is the BSP, CPU 1 enabled only; the I/O APIC has ID 2.
        assert_eq!(table[44 + 3], 3);
        assert_eq!((table[64 + 1], table[64 + 3]), (1, 1));
        assert_eq!(&table[84 + 8..84 + 12], &[2, 2, 0x11, 1]);
        // Below 1 MiB (the reserved area) even with 64 vCPUs; the
        // floating pointer in the EBDA's first KiB, where Linux looks.
        assert!(EBDA + mptable(EBDA, 64).len() as u64 <= HIMEM);
    }
}
