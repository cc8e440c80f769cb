//! `inventory.memory`: `total` from `/proc/meminfo` (what psutil reports to IPA) and
//! `physical_mb` from the SMBIOS memory devices (what lshw reports to IPA), falling back to
//! the kernel's online memory blocks when the firmware has no SMBIOS tables.

use rivet_protocol::inventory::Memory;
use rivet_protocol::JsonObject;

use super::hostfs::HostFs;
use super::smbios::Smbios;
use super::InventoryError;

pub fn collect(fs: &HostFs, smbios: Option<&Smbios>) -> Result<Memory, InventoryError> {
    let meminfo = fs.read("proc/meminfo")?;
    let total_kb = meminfo_value_kb(&meminfo, "MemTotal").ok_or_else(|| InventoryError::Parse {
        path: fs.path("proc/meminfo"),
        reason: "no `MemTotal: <n> kB` line".to_string(),
    })?;
    let physical_mb = smbios
        .and_then(Smbios::installed_memory_mib)
        .or_else(|| online_memory_blocks_mib(fs));
    Ok(Memory {
        total: total_kb * 1024,
        physical_mb,
        extra: JsonObject::new(),
    })
}

/// `<key>: <n> kB` of a meminfo file (also the per-node `Node 0 MemTotal:` form).
pub fn meminfo_value_kb(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        if name.split_whitespace().last() != Some(key) {
            return None;
        }
        let mut words = value.split_whitespace();
        let number: u64 = words.next()?.parse().ok()?;
        match words.next() {
            Some("kB") | None => Some(number),
            Some(_) => None,
        }
    })
}

/// Online memory blocks times the block size (`/sys/devices/system/memory`), in MiB.
fn online_memory_blocks_mib(fs: &HostFs) -> Option<u64> {
    let dir = "sys/devices/system/memory";
    let block_size = u64::from_str_radix(
        fs.attribute(&format!("{dir}/block_size_bytes"))?.as_str(),
        16,
    )
    .ok()?;
    let online = fs
        .numbered(dir, "memory")
        .into_iter()
        .filter(|(_, name)| {
            fs.attribute(&format!("{dir}/{name}/online")).as_deref() == Some("1")
                || fs.attribute(&format!("{dir}/{name}/state")).as_deref() == Some("online")
        })
        .count() as u64;
    (online > 0).then(|| online * block_size / (1024 * 1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_lines() {
        let text = "MemTotal:       16314784 kB\nMemFree:  1 kB\nHugePages_Total:       0\n";
        assert_eq!(meminfo_value_kb(text, "MemTotal"), Some(16314784));
        assert_eq!(meminfo_value_kb(text, "HugePages_Total"), Some(0));
        assert_eq!(meminfo_value_kb(text, "Missing"), None);
        assert_eq!(
            meminfo_value_kb("Node 1 MemTotal:  2048 kB\n", "MemTotal"),
            Some(2048)
        );
    }
}
