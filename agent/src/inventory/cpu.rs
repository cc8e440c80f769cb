//! `inventory.cpu` from `/proc/cpuinfo`, `/sys/devices/system/cpu` and SMBIOS type 4: what
//! IPA gets from `lscpu`, without running it.

use std::collections::BTreeSet;

use rivet_protocol::inventory::Cpu;
use rivet_protocol::JsonObject;

use super::hostfs::{parse_cpu_list, HostFs};
use super::smbios::Smbios;
use super::InventoryError;

/// Builds the CPU summary. `machine` is `uname -m`. Fails only when `/proc/cpuinfo` cannot
/// be read; every other source has a fallback.
pub fn collect(fs: &HostFs, machine: &str, smbios: Option<&Smbios>) -> Result<Cpu, InventoryError> {
    let cpuinfo = fs.read("proc/cpuinfo")?;
    let blocks = cpuinfo_blocks(&cpuinfo);
    let first = blocks.first().cloned().unwrap_or_default();
    let get = |key: &str| {
        first
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    let flags: Vec<String> = get("flags")
        .or_else(|| get("features"))
        .map(|text| text.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    let processors = smbios.map(Smbios::processors).unwrap_or_default();
    let model_name = get("model name")
        .or_else(|| get("cpu model"))
        .or_else(|| get("cpu"))
        .or_else(|| arm_core_name(get("cpu implementer")?.as_str(), get("cpu part")?.as_str()))
        .or_else(|| {
            processors
                .iter()
                .map(|p| p.version.clone())
                .find(|v| !v.is_empty())
        });
    let processor_blocks = blocks
        .iter()
        .filter(|block| block.iter().any(|(k, _)| k == "processor"))
        .count() as u32;
    let count = fs
        .attribute("sys/devices/system/cpu/present")
        .and_then(|text| parse_cpu_list(&text))
        .map(|cpus| cpus.len() as u32)
        .filter(|n| *n > 0)
        .unwrap_or(processor_blocks);
    let virtualised = flags.iter().any(|f| f == "hypervisor");
    let frequency = max_cpufreq_mhz(fs)
        .map(|mhz| format!("{mhz:.4}"))
        .or_else(|| {
            // A hypervisor makes SMBIOS up (QEMU says 2000 MHz whatever the host runs at).
            (!virtualised)
                .then(|| processors.iter().filter_map(|p| p.max_speed_mhz).max())
                .flatten()
                .map(|mhz| format!("{mhz}.0000"))
        })
        .or_else(|| get("cpu mhz"));
    let socket_count = socket_count(fs, &blocks, processors.len());
    Ok(Cpu {
        model_name,
        frequency,
        count,
        architecture: machine.to_string(),
        flags,
        socket_count,
        extra: JsonObject::new(),
    })
}

/// `/proc/cpuinfo` as blocks (one per processor, plus trailing machine-wide blocks on some
/// architectures) of (lower-case key, value).
fn cpuinfo_blocks(text: &str) -> Vec<Vec<(String, String)>> {
    let mut blocks = Vec::new();
    let mut current = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                blocks.push(std::mem::take(&mut current));
            }
            continue;
        }
        if let Some((key, value)) = line.split_once(':') {
            current.push((key.trim().to_lowercase(), value.trim().to_string()));
        }
    }
    if !current.is_empty() {
        blocks.push(current);
    }
    blocks
}

/// The highest `cpuinfo_max_freq` (kHz) of any cpufreq policy, in MHz.
fn max_cpufreq_mhz(fs: &HostFs) -> Option<f64> {
    let mut paths: Vec<String> = fs
        .numbered("sys/devices/system/cpu/cpufreq", "policy")
        .into_iter()
        .map(|(_, name)| format!("sys/devices/system/cpu/cpufreq/{name}/cpuinfo_max_freq"))
        .collect();
    paths.extend(
        fs.numbered("sys/devices/system/cpu", "cpu")
            .into_iter()
            .map(|(_, name)| format!("sys/devices/system/cpu/{name}/cpufreq/cpuinfo_max_freq")),
    );
    paths
        .iter()
        .filter_map(|path| fs.attribute(path)?.parse::<u64>().ok())
        .max()
        .filter(|khz| *khz > 0)
        .map(|khz| khz as f64 / 1000.0)
}

/// The core name lscpu prints for an ARM `CPU implementer` / `CPU part` pair, for the
/// cores found in servers (and in the fixtures); `None` for others.
fn arm_core_name(implementer: &str, part: &str) -> Option<String> {
    let implementer = u32::from_str_radix(implementer.trim_start_matches("0x"), 16).ok()?;
    let part = u32::from_str_radix(part.trim_start_matches("0x"), 16).ok()?;
    let name = match (implementer, part) {
        (0x41, 0xd03) => "Cortex-A53",
        (0x41, 0xd07) => "Cortex-A57",
        (0x41, 0xd08) => "Cortex-A72",
        (0x41, 0xd0c) => "Neoverse-N1",
        (0x41, 0xd40) => "Neoverse-V1",
        (0x41, 0xd46) => "Cortex-A510",
        (0x41, 0xd47) => "Cortex-A710",
        (0x41, 0xd49) => "Neoverse-N2",
        (0x41, 0xd4d) => "Cortex-A715",
        (0x41, 0xd4e) => "Cortex-X3",
        (0x41, 0xd4f) => "Neoverse-V2",
        (0x41, 0xd8e) => "Neoverse-N3",
        (0x43, 0x0af) => "ThunderX2 99xx",
        (0x48, 0xd01) => "TaiShan-v110",
        (0xc0, 0xac3) => "Ampere-1",
        (0xc0, 0xac4) => "Ampere-1a",
        _ => return None,
    };
    Some(name.to_string())
}

/// Distinct `physical_package_id`s; where the kernel reports -1 (POWER), distinct
/// `core_siblings_list`s as lscpu counts them; else distinct `physical id`s of cpuinfo;
/// else the populated SMBIOS sockets; else 1.
fn socket_count(fs: &HostFs, blocks: &[Vec<(String, String)>], smbios_sockets: usize) -> u32 {
    let cpus = fs.numbered("sys/devices/system/cpu", "cpu");
    let topology = |name: &str, file: &str| {
        fs.attribute(&format!("sys/devices/system/cpu/{name}/topology/{file}"))
    };
    let packages: BTreeSet<i64> = cpus
        .iter()
        .filter_map(|(_, name)| topology(name, "physical_package_id")?.parse().ok())
        .filter(|id: &i64| *id >= 0)
        .collect();
    if !packages.is_empty() {
        return packages.len() as u32;
    }
    let sibling_sets: BTreeSet<String> = cpus
        .iter()
        .filter_map(|(_, name)| topology(name, "core_siblings_list"))
        .collect();
    if !sibling_sets.is_empty() {
        return sibling_sets.len() as u32;
    }
    let physical_ids: BTreeSet<&str> = blocks
        .iter()
        .flatten()
        .filter(|(k, _)| k == "physical id")
        .map(|(_, v)| v.as_str())
        .collect();
    if !physical_ids.is_empty() {
        return physical_ids.len() as u32;
    }
    (smbios_sockets as u32).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuinfo_blocks_split_on_blank_lines_and_lower_case_keys() {
        let blocks = cpuinfo_blocks("processor\t: 0\nModel Name\t: X\n\nprocessor\t: 1\n\n\n");
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0][1], ("model name".to_string(), "X".to_string()));
    }
}
