// SPDX-License-Identifier: GPL-2.0
//! `nsvm run --kernel`: loads a Linux kernel with linux-loader into guest
//! memory (vm-memory) the way rust-vmm VMMs do: a bzImage through the 64-bit
//! boot protocol (Documentation/arch/x86/boot.rst: zero page, command line,
//! initrd, E820 map), an ELF vmlinux through PVH when it has the PVH note
//! (32-bit entry, `hvm_start_info`) and through the 64-bit protocol
//! otherwise. The MP table (bootlayout.rs) describes the vCPUs and the I/O
//! APIC of the in-kernel irqchip.

use std::fs::File;

use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::pvh::PvhBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, setup_header};
use linux_loader::loader::elf::start_info::{hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info};
use linux_loader::loader::{load_cmdline, BzImage, Cmdline, Elf, KernelLoader, PvhBootCapability};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

use crate::bootlayout as lay;
use crate::run::{GuestMemoryMmap, StartMode};
use crate::Failure;

/// How to start the boot vCPU.
#[derive(Debug)]
pub struct LinuxEntry {
    pub rip: u64,
    pub mode: StartMode,
    /// RSI (64-bit protocol: the zero page) and RBX (PVH: the start info).
    pub rsi: u64,
    pub rbx: u64,
    /// "bzImage", "ELF (PVH)", "ELF (64-bit boot protocol)".
    pub kind: &'static str,
}

const HDR_MAGIC: u32 = 0x5372_6448; // "HdrS"
const BOOT_FLAG: u16 = 0xaa55;
const LOADER_UNDEFINED: u8 = 0xff;
const XLF_KERNEL_64: u16 = 1;
const PVH_MAGIC: u32 = 0x336e_c578;

/// The RAM ranges of `mem` (start, length), sorted.
pub fn ranges(mem: &GuestMemoryMmap) -> Vec<(u64, u64)> {
    let mut r: Vec<(u64, u64)> = mem.iter().map(|r| (r.start_addr().raw_value(), r.len())).collect();
    r.sort_unstable();
    r
}

/// Loads the kernel, initrd and command line of `kernel`, writes the boot
/// structures and the MP table for `ncpus` vCPUs.
pub fn load(mem: &GuestMemoryMmap, kernel: &str, initrd: Option<&str>, cmdline: &str, ncpus: u32) -> Result<LinuxEntry, Failure> {
    let mut f = File::open(kernel).map_err(|e| Failure(format!("cannot read kernel {kernel}: {e}")))?;
    let mut magic = [0u8; 4];
    std::io::Read::read_exact(&mut f, &mut magic).map_err(|e| Failure(format!("cannot read kernel {kernel}: {e}")))?;
    let himem = Some(GuestAddress(lay::HIMEM));
    let elf = magic == *b"\x7fELF";
    let r = if elf { Elf::load(mem, None, &mut f, himem) } else { BzImage::load(mem, None, &mut f, himem) }
        .map_err(|e| Failure(format!("cannot load kernel {kernel}: {e} (a bzImage or an ELF64 vmlinux that fits in --mem is needed)")))?;
    let ram = ranges(mem);
    let low_end = ram[0].0 + ram[0].1;

    let hdr = r.setup_header.unwrap_or_default();
    let cmdline_max = if hdr.cmdline_size != 0 { hdr.cmdline_size as usize + 1 } else { lay::CMDLINE_MAX };
    lay::check_cmdline(cmdline, cmdline_max).map_err(Failure)?;
    let mut c = Cmdline::new(lay::CMDLINE_MAX).map_err(|e| Failure(format!("kernel command line: {e}")))?;
    if !cmdline.is_empty() {
        c.insert_str(cmdline).map_err(|e| Failure(format!("kernel command line '{cmdline}': {e}")))?;
    }
    load_cmdline(mem, GuestAddress(lay::CMDLINE), &c).map_err(|e| Failure(format!("kernel command line: {e}")))?;

    // The initrd: as high as possible in the first range (below the header's
    // initrd_addr_max for a bzImage), above the kernel.
    let initrd = match initrd {
        None => None,
        Some(p) => {
            let bytes = std::fs::read(p).map_err(|e| Failure(format!("cannot read initrd {p}: {e}")))?;
            let max = if hdr.initrd_addr_max != 0 { u64::from(hdr.initrd_addr_max) + 1 } else { u64::from(u32::MAX) + 1 };
            let at = lay::initrd_addr(bytes.len() as u64, low_end.min(max), r.kernel_end.max(lay::CMDLINE + lay::CMDLINE_MAX as u64))
                .ok_or_else(|| Failure(format!("the initrd {p} ({} bytes) does not fit in guest memory above the kernel: raise --mem", bytes.len())))?;
            mem.write_slice(&bytes, GuestAddress(at)).map_err(|e| Failure(format!("cannot place the initrd: {e}")))?;
            Some((at, bytes.len() as u64))
        }
    };

    let table = lay::mptable(lay::EBDA, ncpus as u8);
    mem.write_slice(&table, GuestAddress(lay::EBDA)).map_err(|e| Failure(format!("cannot write the MP table: {e}")))?;
    let e820 = lay::e820(&ram);

    if let (true, PvhBootCapability::PvhEntryPresent(entry)) = (elf, r.pvh_boot_cap) {
        let memmap: Vec<hvm_memmap_table_entry> = e820.iter().map(|&(addr, size, type_)| hvm_memmap_table_entry { addr, size, type_, reserved: 0 }).collect();
        let modlist_at = lay::PVH_INFO + 0x40;
        let memmap_at = lay::PVH_INFO + 0x80;
        let info = hvm_start_info {
            magic: PVH_MAGIC,
            version: 1,
            cmdline_paddr: lay::CMDLINE,
            memmap_paddr: memmap_at,
            memmap_entries: memmap.len() as u32,
            nr_modules: u32::from(initrd.is_some()),
            modlist_paddr: modlist_at,
            ..Default::default()
        };
        let mut p = BootParams::new(&info, GuestAddress(lay::PVH_INFO));
        p.set_sections(&memmap, GuestAddress(memmap_at));
        if let Some((paddr, size)) = initrd {
            p.set_modules(&[hvm_modlist_entry { paddr, size, ..Default::default() }], GuestAddress(modlist_at));
        }
        PvhBootConfigurator::write_bootparams::<GuestMemoryMmap>(&p, mem).map_err(|e| Failure(format!("cannot write the PVH start info: {e}")))?;
        return Ok(LinuxEntry { rip: entry.raw_value(), mode: StartMode::Protected, rsi: 0, rbx: lay::PVH_INFO, kind: "ELF (PVH)" });
    }

    let mut params = boot_params { hdr: fill_header(hdr, c.as_cstring().map(|s| s.as_bytes().len()).unwrap_or(0), initrd), ..Default::default() };
    if !elf && hdr.xloadflags & XLF_KERNEL_64 == 0 {
        return Err(Failure(format!("{kernel} has no 64-bit entry point (boot protocol XLF_KERNEL_64): build it for x86-64")));
    }
    if e820.len() > params.e820_table.len() {
        return Err(Failure("too many E820 entries".into()));
    }
    for (i, &(addr, size, type_)) in e820.iter().enumerate() {
        params.e820_table[i] = boot_e820_entry { addr, size, r#type: type_ };
    }
    params.e820_entries = e820.len() as u8;
    LinuxBootConfigurator::write_bootparams::<GuestMemoryMmap>(&BootParams::new(&params, GuestAddress(lay::ZERO_PAGE)), mem)
        .map_err(|e| Failure(format!("cannot write the zero page: {e}")))?;
    // The 64-bit entry is 0x200 past the protected-mode code of a bzImage
    // (boot.rst, "64-bit boot protocol"); an ELF's entry is its own.
    let (rip, kind) = if elf { (r.kernel_load.raw_value(), "ELF (64-bit boot protocol)") } else { (r.kernel_load.raw_value() + 0x200, "bzImage") };
    Ok(LinuxEntry { rip, mode: StartMode::Long, rsi: lay::ZERO_PAGE, rbx: 0, kind })
}

/// The setup header as the boot loader hands it over: the kernel's own
/// (bzImage) with the loader's fields filled in.
fn fill_header(mut h: setup_header, cmdline_len: usize, initrd: Option<(u64, u64)>) -> setup_header {
    h.header = HDR_MAGIC;
    h.boot_flag = BOOT_FLAG;
    h.type_of_loader = LOADER_UNDEFINED;
    h.cmd_line_ptr = lay::CMDLINE as u32;
    if h.cmdline_size == 0 {
        h.cmdline_size = cmdline_len as u32;
    }
    if h.kernel_alignment == 0 {
        h.kernel_alignment = 0x100_0000;
    }
    h.vid_mode = 0xffff; // "normal"
    if let Some((at, size)) = initrd {
        h.ramdisk_image = at as u32;
        h.ramdisk_size = size as u32;
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::ByteValued;

    /// A minimal bzImage: one setup sector after the boot sector, the
    /// header fields linux-loader and the boot protocol look at, then
    /// 0x1000 bytes of "kernel".
    fn fake_bzimage(xloadflags: u16) -> Vec<u8> {
        let mut b = vec![0u8; 0x400 + 0x1000];
        b[0x1f1] = 1; // setup_sects
        b[0x202..0x206].copy_from_slice(b"HdrS");
        b[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        b[0x211] = 1; // loadflags: LOADED_HIGH
        b[0x214..0x218].copy_from_slice(&0x10_0000u32.to_le_bytes());
        b[0x22c..0x230].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
        b[0x236..0x238].copy_from_slice(&xloadflags.to_le_bytes());
        b[0x238..0x23c].copy_from_slice(&2047u32.to_le_bytes());
        b[0x400..].fill(0xcc);
        b
    }

    fn tmp(name: &str, bytes: &[u8]) -> String {
        let p = std::env::temp_dir().join(format!("nsvm-linux-test-{}-{name}", std::process::id()));
        std::fs::write(&p, bytes).unwrap();
        p.to_string_lossy().into_owned()
    }

    fn memory(mem: u64) -> GuestMemoryMmap {
        let r: Vec<(GuestAddress, usize)> = lay::ram_ranges(mem, true).iter().map(|&(a, l)| (GuestAddress(a), l as usize)).collect();
        GuestMemoryMmap::from_ranges(&r).unwrap()
    }

    #[test]
    fn bzimage_boot_protocol() {
        let k = tmp("bz", &fake_bzimage(XLF_KERNEL_64));
        let i = tmp("initrd", &[0x5a; 0x1800]);
        let mem = memory(64 << 20);
        let e = load(&mem, &k, Some(&i), "console=ttyS0 reboot=k", 2).map_err(|f| f.0).unwrap();
        assert_eq!((e.rip, e.rsi, e.mode, e.kind), (0x10_0200, lay::ZERO_PAGE, StartMode::Long, "bzImage"));
        let p: boot_params = mem.read_obj(GuestAddress(lay::ZERO_PAGE)).unwrap();
        let h = p.hdr;
        assert_eq!({ h.header }, HDR_MAGIC);
        assert_eq!({ h.boot_flag }, BOOT_FLAG);
        assert_eq!({ h.type_of_loader }, 0xff);
        assert_eq!({ h.cmd_line_ptr }, lay::CMDLINE as u32);
        assert_eq!({ h.ramdisk_size }, 0x1800);
        assert_eq!({ h.ramdisk_image }, (64 << 20) - 0x2000);
        let mut rd = [0u8; 0x1800];
        mem.read_slice(&mut rd, GuestAddress(u64::from(h.ramdisk_image))).unwrap();
        assert!(rd.iter().all(|b| *b == 0x5a));
        assert_eq!(p.e820_entries, 3);
        let e2 = p.e820_table[2];
        assert_eq!(({ e2.addr }, { e2.size }, { e2.r#type }), (lay::HIMEM, (64 << 20) - lay::HIMEM, lay::E820_RAM));
        let mut c = [0u8; 23];
        mem.read_slice(&mut c, GuestAddress(lay::CMDLINE)).unwrap();
        assert_eq!(&c, b"console=ttyS0 reboot=k\0");
        assert_eq!(mem.read_obj::<u8>(GuestAddress(lay::HIMEM)).unwrap(), 0xcc);
        let mut mp = [0u8; 4];
        mem.read_slice(&mut mp, GuestAddress(lay::EBDA)).unwrap();
        assert_eq!(&mp, b"_MP_");
        assert!(boot_params::default().as_slice().len() == 4096);
        std::fs::remove_file(k).ok();
        std::fs::remove_file(i).ok();
    }

    /// A minimal ELF64 kernel: one PT_LOAD of 0x100 bytes at 1 MiB (entry
    /// there), and with `pvh` a PT_NOTE with the PVH entry note (Xen
    /// XEN_ELFNOTE_PHYS32_ENTRY, 18) pointing 0x40 into it.
    fn fake_elf(pvh: bool) -> Vec<u8> {
        let mut b = vec![0u8; 0x300];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2; // ELFCLASS64
        b[5] = 1; // little endian
        b[6] = 1;
        b[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        b[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86-64
        b[20..24].copy_from_slice(&1u32.to_le_bytes());
        b[24..32].copy_from_slice(&0x10_0000u64.to_le_bytes()); // e_entry
        b[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        b[52..54].copy_from_slice(&64u16.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&(1 + u16::from(pvh)).to_le_bytes());
        let phdr = |b: &mut Vec<u8>, at: usize, ty: u32, off: u64, paddr: u64, size: u64, align: u64| {
            b[at..at + 4].copy_from_slice(&ty.to_le_bytes());
            b[at + 8..at + 16].copy_from_slice(&off.to_le_bytes());
            b[at + 16..at + 24].copy_from_slice(&paddr.to_le_bytes());
            b[at + 24..at + 32].copy_from_slice(&paddr.to_le_bytes());
            b[at + 32..at + 40].copy_from_slice(&size.to_le_bytes());
            b[at + 40..at + 48].copy_from_slice(&size.to_le_bytes());
            b[at + 48..at + 56].copy_from_slice(&align.to_le_bytes());
        };
        phdr(&mut b, 64, 1, 0x200, 0x10_0000, 0x100, 0x1000);
        if pvh {
            phdr(&mut b, 120, 4, 0x100, 0, 24, 4);
            b[0x100..0x104].copy_from_slice(&4u32.to_le_bytes()); // namesz
            b[0x104..0x108].copy_from_slice(&4u32.to_le_bytes()); // descsz
            b[0x108..0x10c].copy_from_slice(&18u32.to_le_bytes()); // type
            b[0x10c..0x110].copy_from_slice(b"Xen\0");
            b[0x110..0x114].copy_from_slice(&0x10_0040u32.to_le_bytes());
        }
        b[0x200..0x300].fill(0x90);
        b
    }

    #[test]
    fn elf_kernels_pvh_and_64_bit() {
        let mem = memory(32 << 20);
        let k = tmp("pvh", &fake_elf(true));
        let i = tmp("pvh-initrd", &[1; 0x1000]);
        let e = load(&mem, &k, Some(&i), "console=ttyS0", 1).map_err(|f| f.0).unwrap();
        assert_eq!((e.rip, e.rbx, e.mode, e.kind), (0x10_0040, lay::PVH_INFO, StartMode::Protected, "ELF (PVH)"));
        let si: hvm_start_info = mem.read_obj(GuestAddress(lay::PVH_INFO)).unwrap();
        assert_eq!((si.magic, si.version, si.cmdline_paddr, si.memmap_entries, si.nr_modules), (PVH_MAGIC, 1, lay::CMDLINE, 3, 1));
        let m: hvm_modlist_entry = mem.read_obj(GuestAddress(si.modlist_paddr)).unwrap();
        assert_eq!((m.paddr, m.size), ((32 << 20) - 0x1000, 0x1000));
        let e2: hvm_memmap_table_entry = mem.read_obj(GuestAddress(si.memmap_paddr + 2 * 24)).unwrap();
        assert_eq!((e2.addr, e2.type_), (lay::HIMEM, lay::E820_RAM));
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0x10_0000)).unwrap(), 0x90);

        let mem = memory(32 << 20);
        let k64 = tmp("elf64", &fake_elf(false));
        let e = load(&mem, &k64, None, "", 1).map_err(|f| f.0).unwrap();
        assert_eq!((e.rip, e.rsi, e.mode, e.kind), (0x10_0000, lay::ZERO_PAGE, StartMode::Long, "ELF (64-bit boot protocol)"));
        let p: boot_params = mem.read_obj(GuestAddress(lay::ZERO_PAGE)).unwrap();
        assert_eq!(({ p.hdr.header }, p.e820_entries), (HDR_MAGIC, 3));
        for f in [k, i, k64] {
            std::fs::remove_file(f).ok();
        }
    }

    #[test]
    fn refused_kernels_and_command_lines() {
        let mem = memory(16 << 20);
        let k32 = tmp("bz32", &fake_bzimage(0));
        assert!(load(&mem, &k32, None, "", 1).map_err(|f| f.0).unwrap_err().contains("64-bit"));
        let junk = tmp("junk", &[0u8; 0x2000]);
        assert!(load(&mem, &junk, None, "", 1).map_err(|f| f.0).unwrap_err().contains("cannot load kernel"));
        let k = tmp("bz64", &fake_bzimage(XLF_KERNEL_64));
        assert!(load(&mem, &k, None, &"x".repeat(2048), 1).is_err());
        let big = tmp("bigrd", &vec![0u8; 17 << 20]);
        assert!(load(&mem, &k, Some(&big), "", 1).map_err(|f| f.0).unwrap_err().contains("does not fit"));
        for f in [k32, junk, k, big] {
            std::fs::remove_file(f).ok();
        }
    }
}
