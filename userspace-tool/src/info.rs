// SPDX-License-Identifier: GPL-2.0
//! `nsvm info`: what the host CPU and the device offer.

use std::collections::BTreeMap;
use std::path::Path;

use kvm_ioctls::Kvm;
use serde::{Deserialize, Serialize};

use nsvm_core::cpuid::{self, SvmLeaf};
use nsvm_core::uapi::{cap, host_flags, NsvmHostInfo};

use crate::sys::{self, errno_name};
use crate::cli::InfoArgs;
use crate::Failure;

fn cpuid(leaf: u32) -> (u32, u32, u32, u32) {
    // CPUID is unprivileged and exists on every x86-64 CPU.
    let r = unsafe_free_cpuid(leaf);
    (r.eax, r.ebx, r.ecx, r.edx)
}

#[allow(unused_unsafe)]
fn unsafe_free_cpuid(leaf: u32) -> core::arch::x86_64::CpuidResult {
    // SAFETY: CPUID is available on x86-64 and only writes registers.
    unsafe { core::arch::x86_64::__cpuid_count(leaf, 0) }
}

/// The host's SVM leaf, or `None` when the CPU has no SVM.
pub fn host_svm() -> Option<SvmLeaf> {
    let (max, ..) = cpuid(0x8000_0000);
    let (_, _, ecx, _) = cpuid(cpuid::LEAF_EXT_FEATURES);
    if max < cpuid::LEAF_SVM || ecx & cpuid::EXT_FEATURES_ECX_SVM == 0 {
        return None;
    }
    let (a, b, c, d) = cpuid(cpuid::LEAF_SVM);
    Some(SvmLeaf::decode(a, b, c, d))
}

/// A list of CPU numbers as ranges: "0-3,6".
pub fn cpu_ranges(cpus: impl Iterator<Item = usize>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut run: Option<(usize, usize)> = None;
    for c in cpus {
        run = match run {
            Some((s, e)) if c == e + 1 => Some((s, c)),
            Some((s, e)) => {
                out.push(if s == e { s.to_string() } else { format!("{s}-{e}") });
                Some((c, c))
            }
            None => Some((c, c)),
        };
    }
    if let Some((s, e)) = run {
        out.push(if s == e { s.to_string() } else { format!("{s}-{e}") });
    }
    if out.is_empty() {
        "none".into()
    } else {
        out.join(",")
    }
}

/// `nsvm info --json`: one object (documented in docs/tool.md).
#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub struct InfoJson {
    /// `/dev/nsvm` and `/dev/kvm`: whether each exists.
    pub devices: BTreeMap<String, bool>,
    /// The device asked (`--device`).
    pub device: String,
    /// The host CPU's SVM leaf; null when the CPU has no SVM.
    pub host_svm: Option<HostSvmJson>,
    /// Why the device could not be opened (then the next three are absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// KVM_GET_API_VERSION (12).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<i32>,
    /// KVM_CHECK_EXTENSION of every KVM_CAP_* nsvm knows, by name
    /// without the prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<BTreeMap<String, i32>>,
    /// NSVM_GET_HOST_INFO; null when the device is not nsvm or unavailable.
    #[serde(default)]
    pub module: Option<ModuleJson>,
    /// The L1 view: CPUID 0x8000000A as KVM_GET_SUPPORTED_CPUID offers it
    /// to a guest (the SVM features an L1 hypervisor sees); null when the
    /// device offers no SVM leaf or is unavailable.
    #[serde(default)]
    pub l1_svm: Option<L1SvmJson>,
}

/// The SVM features a guest (L1) is offered.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub struct L1SvmJson {
    pub revision: u8,
    pub nasid: u32,
    pub features_edx: u32,
    /// Names of the features offered.
    pub features: Vec<String>,
    /// Those of them the host CPU lacks: emulated by the device.
    pub emulated: Vec<String>,
}

/// The L1 view from the device's supported CPUID leaf 0x8000000A (`l1`)
/// and the host's leaf: every feature offered, and which of them the host
/// lacks (the device emulates them).
pub fn l1_view(l1: SvmLeaf, host: Option<SvmLeaf>) -> L1SvmJson {
    let host_f = host.map_or(cpuid::SvmFeatures::empty(), |h| h.features);
    let emulated = SvmLeaf { features: l1.features.difference(host_f), ..l1 };
    L1SvmJson {
        revision: l1.revision,
        nasid: l1.nasid,
        features_edx: l1.features.bits(),
        features: l1.feature_names().map(String::from).collect(),
        emulated: emulated.feature_names().map(String::from).collect(),
    }
}

fn l1_text(v: &L1SvmJson) -> String {
    format!(
        "L1 SVM view:    {} features offered to guests: {} (EDX={:#010x}); {} emulated beyond the host: {}\n",
        v.features.len(),
        if v.features.is_empty() { "none".to_string() } else { v.features.join(" ") },
        v.features_edx,
        v.emulated.len(),
        if v.emulated.is_empty() { "none".to_string() } else { v.emulated.join(" ") }
    )
}

/// CPUID 0x8000000A of the host.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub struct HostSvmJson {
    pub revision: u8,
    pub nasid: u32,
    pub features_edx: u32,
    /// Names of the feature bits set (Linux's /proc/cpuinfo names).
    pub features: Vec<String>,
}

/// The module's view (NSVM_GET_HOST_INFO).
#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub struct ModuleJson {
    pub svm_revision: u32,
    pub nasid: u32,
    pub svm_features_edx: u32,
    pub phys_bits: u32,
    pub cpus_online: u32,
    pub cpus_enabled: u32,
    /// The CPUs with SVM enabled by nsvm.
    pub cpus_svm: Vec<usize>,
    pub percpu_bytes: u64,
    pub hotplug_events: u64,
    pub vm_cr_unreadable: bool,
    pub vm_cr_locked: bool,
}

pub fn run(a: &InfoArgs) -> Result<(), Failure> {
    let device = &a.dev.device;
    let devices: Vec<(&str, bool)> =
        ["/dev/nsvm", "/dev/kvm"].iter().map(|p| (*p, Path::new(p).exists())).collect();
    let svm = host_svm();
    let f = sys::open_device(device);
    let mut j = InfoJson {
        devices: devices.iter().map(|(p, e)| (p.to_string(), *e)).collect(),
        device: device.clone(),
        host_svm: svm.map(|l| HostSvmJson {
            revision: l.revision,
            nasid: l.nasid,
            features_edx: l.features.bits(),
            features: l.feature_names().map(String::from).collect(),
        }),
        error: None,
        api_version: None,
        capabilities: None,
        module: None,
        l1_svm: None,
    };
    let mut text = String::new();
    let dev_line = devices
        .iter()
        .map(|(p, e)| format!("{p} {}", if *e { "present" } else { "absent" }))
        .collect::<Vec<_>>()
        .join(", ");
    text += &format!("devices:        {dev_line}\n");
    match &svm {
        Some(l) => {
            text += &format!("host SVM:       revision {}, {} ASIDs\n", l.revision, l.nasid);
            let names: Vec<_> = l.feature_names().collect();
            text += &format!(
                "SVM features:   {} (CPUID 0x8000000A EDX={:#010x})\n",
                if names.is_empty() { "none".to_string() } else { names.join(" ") },
                l.features.bits()
            );
        }
        None => text += "host SVM:       none (CPUID 0x80000001 ECX bit 2 clear): this CPU cannot run nsvm\n",
    }
    let result = match f {
        Err(e) => {
            j.error = Some(e.0.clone());
            text += &format!("{device}:      unavailable: {}\n", e.0);
            Err(e)
        }
        Ok(file) => {
            let cpath = std::ffi::CString::new(device.clone())
                .map_err(|_| Failure("the device path contains a NUL byte".into()))?;
            let kvm = Kvm::new_with_path(cpath)
                .map_err(|e| Failure(format!("cannot open {device}: {e}")))?;
            let api = kvm.get_api_version();
            let caps: Vec<(u32, &str, i32)> =
                cap::NAMED.iter().map(|(c, n)| (*c, *n, kvm.check_extension_raw(*c as _))).collect();
            let supported: Vec<String> =
                caps.iter().filter(|(_, _, v)| *v != 0).map(|(_, n, v)| format!("{n}={v}")).collect();
            text += &format!("API version:    {api}{}\n", if api == 12 { "" } else { " (KVM's is 12!)" });
            text += &format!(
                "capabilities:   {} of {} known KVM_CAP_* supported{}{}\n",
                supported.len(),
                caps.len(),
                if supported.is_empty() { "" } else { ": " },
                supported.join(" ")
            );
            j.api_version = Some(api);
            let leaf = kvm.get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES).ok().and_then(|c| {
                c.as_slice().iter().find(|e| e.function == cpuid::LEAF_SVM).map(|e| SvmLeaf::decode(e.eax, e.ebx, e.ecx, e.edx))
            });
            if let Some(l) = leaf {
                let v = l1_view(l, svm);
                text += &l1_text(&v);
                j.l1_svm = Some(v);
            }
            j.capabilities = Some(caps.iter().map(|(_, n, v)| (n.to_string(), *v)).collect());
            match sys::host_info(&file) {
                Ok(h) => {
                    text += &module_text(&h);
                    j.module = Some(module_json(&h));
                }
                Err(e) => {
                    text += &format!("nsvm module:    not nsvm ({device} answers NSVM_GET_HOST_INFO with {})\n", errno_name(e));
                }
            }
            Ok(())
        }
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&j)?);
    } else {
        print!("{text}");
    }
    result
}

fn module_text(h: &NsvmHostInfo) -> String {
    let enabled = cpu_ranges((0..nsvm_core::uapi::NSVM_MAX_CPUS).filter(|c| h.cpu_enabled(*c)));
    let mut s = format!(
        "nsvm module:    SVM enabled on {} of {} online CPUs ({enabled}), {} bytes of host save areas\n",
        h.cpus_enabled, h.cpus_online, h.percpu_bytes
    );
    s += &format!(
        "module view:    revision {}, {} ASIDs, EDX={:#010x}, {} physical address bits, {} hotplug events\n",
        h.svm_revision, h.nasid, h.svm_features, h.phys_bits, h.hotplug_events
    );
    if h.flags & host_flags::VM_CR_UNREADABLE != 0 {
        s += "note:           VM_CR is not readable on this CPU (emulator?); SVMDIS assumed clear\n";
    }
    if h.flags & host_flags::VM_CR_LOCKED != 0 {
        s += "note:           VM_CR.LOCK is set\n";
    }
    s
}

fn module_json(h: &NsvmHostInfo) -> ModuleJson {
    ModuleJson {
        svm_revision: h.svm_revision,
        nasid: h.nasid,
        svm_features_edx: h.svm_features,
        phys_bits: h.phys_bits,
        cpus_online: h.cpus_online,
        cpus_enabled: h.cpus_enabled,
        cpus_svm: (0..nsvm_core::uapi::NSVM_MAX_CPUS).filter(|c| h.cpu_enabled(*c)).collect(),
        percpu_bytes: h.percpu_bytes,
        hotplug_events: h.hotplug_events,
        vm_cr_unreadable: h.flags & host_flags::VM_CR_UNREADABLE != 0,
        vm_cr_locked: h.flags & host_flags::VM_CR_LOCKED != 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON of `nsvm info` round-trips through its schema and has the
    /// field names the suites grep for (tests/qemu/foundation.sh).
    #[test]
    fn json_schema() {
        let j = InfoJson {
            devices: [("/dev/nsvm".to_string(), true), ("/dev/kvm".to_string(), false)].into(),
            device: "/dev/nsvm".into(),
            host_svm: Some(HostSvmJson { revision: 1, nasid: 16, features_edx: 1, features: vec!["npt".into()] }),
            error: None,
            api_version: Some(12),
            capabilities: Some([("USER_MEMORY".to_string(), 1), ("NESTED_STATE".to_string(), 4224)].into()),
            module: Some(ModuleJson {
                svm_revision: 1,
                nasid: 16,
                svm_features_edx: 1,
                phys_bits: 40,
                cpus_online: 2,
                cpus_enabled: 2,
                cpus_svm: vec![0, 1],
                percpu_bytes: 8192,
                hotplug_events: 0,
                vm_cr_unreadable: true,
                vm_cr_locked: false,
            }),
            l1_svm: Some(l1_view(SvmLeaf::decode(1, 8, 0, 0x201_84e9), Some(SvmLeaf::decode(1, 16, 0, (1 << 16) | (1 << 28) | 1)))),
        };
        let text = serde_json::to_string_pretty(&j).unwrap();
        for l in ["\"api_version\": 12", "\"npt\"", "\"cpus_enabled\": 2", "\"USER_MEMORY\": 1", "\"NESTED_STATE\": 4224", "\"hotplug_events\": 0"] {
            assert!(text.lines().any(|t| t.contains(l)), "{l} missing in {text}");
        }
        assert_eq!(serde_json::from_str::<InfoJson>(&text).unwrap(), j);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(v.get("error").is_none());
        // The L1 view of nsvm on QEMU's TCG: nine features, seven beyond the host's.
        let l1 = j.l1_svm.as_ref().unwrap();
        assert_eq!(l1.features, ["npt", "nrip_save", "vmcb_clean", "flushbyasid", "decodeassists", "pausefilter", "v_vmsave_vmload", "vgif", "vnmi"]);
        assert_eq!(l1.emulated, ["nrip_save", "vmcb_clean", "flushbyasid", "decodeassists", "pausefilter", "v_vmsave_vmload", "vnmi"]);
        assert!(l1_text(l1).contains("9 features offered") && l1_text(l1).contains("7 emulated"));
    }

    #[test]
    fn ranges() {
        assert_eq!(cpu_ranges([0, 1, 2, 3, 6].into_iter()), "0-3,6");
        assert_eq!(cpu_ranges([1].into_iter()), "1");
        assert_eq!(cpu_ranges([].into_iter()), "none");
        assert_eq!(cpu_ranges([0, 2, 3].into_iter()), "0,2-3");
    }
}
