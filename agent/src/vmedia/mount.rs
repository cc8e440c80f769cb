//! Mounting a virtual-media volume read-only, behind [`Mounter`] so discovery is tested
//! without a kernel that has iso9660 or vfat.

use std::path::Path;

use nix::mount::{mount, umount, MsFlags};

/// Read-only mounts.
pub trait Mounter: Send + Sync {
    /// Mounts `device` (filesystem `fstype`) read-only at `target`, creating `target`.
    fn mount_readonly(&self, device: &Path, target: &Path, fstype: &str) -> Result<(), String>;
    fn unmount(&self, target: &Path) -> Result<(), String>;
}

/// mount(2) and umount(2). The filesystem's modules are loaded first when running as the
/// ramdisk's init (no module is loaded behind the kernel's back: it cannot run modprobe).
#[derive(Debug, Clone, Copy, Default)]
pub struct KernelMounter;

fn modules_for(fstype: &str) -> &'static [&'static str] {
    match fstype {
        "iso9660" => &["isofs"],
        "vfat" => &[
            "vfat",
            "nls_cp437",
            "nls_ascii",
            "nls_utf8",
            "nls_iso8859-1",
        ],
        _ => &[],
    }
}

impl Mounter for KernelMounter {
    fn mount_readonly(&self, device: &Path, target: &Path, fstype: &str) -> Result<(), String> {
        crate::init::load_modules(modules_for(fstype), "virtual media");
        std::fs::create_dir_all(target)
            .map_err(|e| format!("creating {}: {e}", target.display()))?;
        let flags =
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        mount(Some(device), target, Some(fstype), flags, None::<&str>).map_err(|e| {
            format!(
                "mounting {} ({fstype}) read-only at {}: {e}",
                device.display(),
                target.display()
            )
        })
    }

    fn unmount(&self, target: &Path) -> Result<(), String> {
        umount(target).map_err(|e| format!("unmounting {}: {e}", target.display()))
    }
}
