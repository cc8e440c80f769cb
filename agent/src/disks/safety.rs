//! Which devices disk steps may write: the one gate between listing and writing.

use std::path::Path;

use super::BlockDevice;
use crate::settings::Settings;

/// The devices a disk step (erase, image writing, root device selection) may touch.
///
/// In the ramdisk (`in_ramdisk`, i.e. [`crate::init::running_as_init`]): every device
/// except the boot medium. As a normal process on a host: only the devices listed in the
/// `rivet-host-disks` setting, and the partitions of listed disks (an empty list means
/// none), so running the agent on a developer's machine can never touch its disks by
/// accident. The boot medium is never returned.
pub fn writable_candidates(
    devices: Vec<BlockDevice>,
    settings: &Settings,
    in_ramdisk: bool,
) -> Vec<BlockDevice> {
    let listed: Vec<String> = if in_ramdisk {
        Vec::new()
    } else {
        devices
            .iter()
            .filter(|d| settings.host_disks.iter().any(|p| same_device(p, &d.path)))
            .map(|d| d.name.clone())
            .collect()
    };
    devices
        .into_iter()
        .filter(|d| !d.is_boot_medium)
        .filter(|d| {
            in_ramdisk
                || listed.contains(&d.name)
                || d.parent.as_ref().is_some_and(|p| listed.contains(p))
        })
        .collect()
}

/// Whether a configured path names the device at `path` (also through a symlink such as
/// `/dev/disk/by-id/...`).
fn same_device(configured: &Path, path: &Path) -> bool {
    configured == path || std::fs::canonicalize(configured).is_ok_and(|c| c == path)
}

#[cfg(test)]
#[path = "safety_tests.rs"]
mod tests;
