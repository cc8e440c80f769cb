//! Lists this machine's real block devices through sysfs, read-only: device nodes are only
//! opened read-only to read volume labels; nothing is written. Also checks the host safety
//! rule: as a normal process with default settings no device is writable.

use std::path::Path;

use rivet_agent::disks::sysfs::SysfsBlockDevices;
use rivet_agent::disks::{writable_candidates, BlockDevices};
use rivet_agent::settings::Settings;

#[test]
fn disks_of_this_machine_listed_read_only() {
    assert!(
        Path::new("/sys/class/block").is_dir(),
        "this test needs sysfs mounted at /sys"
    );
    let devices = SysfsBlockDevices::default()
        .list()
        .expect("listing /sys/class/block");
    assert!(!devices.is_empty(), "no block devices in /sys/class/block");
    for d in &devices {
        let entry = Path::new("/sys/class/block").join(&d.name);
        assert!(
            entry.exists(),
            "{} listed but {} is missing",
            d.name,
            entry.display()
        );
        assert_eq!(d.path, Path::new("/dev").join(&d.name));
        if d.size_bytes > 0 {
            assert!(d.logical_sector_size >= 512, "{d:?}");
        }
    }
    let host = writable_candidates(devices, &Settings::default(), false);
    assert!(host.is_empty(), "host disks writable by default: {host:?}");
}
