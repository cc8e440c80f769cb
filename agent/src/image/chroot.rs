//! [`SystemBootHost`]: mounts with mount(2), programs run with chroot(2) in the child, no
//! `mount` or `chroot` binary needed in the ramdisk.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::grub::{BootHost, MountKind};

/// This machine.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemBootHost;

/// Block-device file systems the kernel knows (`/proc/filesystems` lines without `nodev`).
fn block_filesystems() -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string("/proc/filesystems")
        .map_err(|e| format!("reading /proc/filesystems: {e}"))?;
    Ok(text
        .lines()
        .filter(|l| !l.starts_with("nodev"))
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect())
}

impl BootHost for SystemBootHost {
    fn make_workdir(&self) -> Result<PathBuf, String> {
        let base = std::env::temp_dir().join(format!("rivet-root-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&base).map_err(|e| format!("creating {}: {e}", base.display()))?;
        Ok(base)
    }

    fn mount(&self, kind: MountKind, source: &Path, target: &Path) -> Result<(), String> {
        let what = format!("mounting {} on {}", source.display(), target.display());
        match kind {
            MountKind::Bind => mount(
                Some(source),
                target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| format!("{what} (bind): {e}")),
            MountKind::Sysfs => mount(
                Some("none"),
                target,
                Some("sysfs"),
                MsFlags::empty(),
                None::<&str>,
            )
            .map_err(|e| format!("{what} (sysfs): {e}")),
            MountKind::Device => {
                // Root file systems of partition images; the ramdisk loads none at boot.
                // crc32c first: ext4 and XFS ask the kernel for it by alias at mount time,
                // which a ramdisk without modprobe cannot answer.
                // vfat (the ESP) needs its default codepage and iocharset.
                crate::init::load_modules(
                    &[
                        "crc32c_generic",
                        "ext4",
                        "xfs",
                        "vfat",
                        "nls_cp437",
                        "nls_ascii",
                        "nls_utf8",
                    ],
                    "mounting the image",
                );
                let mut tried = Vec::new();
                for fs in block_filesystems()? {
                    match mount(
                        Some(source),
                        target,
                        Some(fs.as_str()),
                        MsFlags::empty(),
                        None::<&str>,
                    ) {
                        Ok(()) => return Ok(()),
                        Err(e) => tried.push(format!("{fs}: {e}")),
                    }
                }
                Err(format!(
                    "{what}: no file system the kernel knows fits ({})",
                    tried.join(", ")
                ))
            }
        }
    }

    fn umount(&self, target: &Path) -> Result<(), String> {
        umount2(target, MntFlags::empty())
            .map_err(|e| format!("unmounting {}: {e}", target.display()))
    }

    fn run_in_chroot(&self, root: &Path, argv: &[String]) -> Result<String, String> {
        let (program, args) = argv.split_first().ok_or("no command to run")?;
        let root_c = std::ffi::CString::new(root.as_os_str().as_bytes())
            .map_err(|e| format!("{}: {e}", root.display()))?;
        let mut command = Command::new(program);
        command.args(args).env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        );
        // SAFETY: between fork and exec the child only calls chroot(2) and chdir(2), both
        // async-signal-safe, on C strings made before the fork (no allocation in the child).
        unsafe {
            command.pre_exec(move || {
                if libc::chroot(root_c.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let output = command
            .output()
            .map_err(|e| format!("running {} in {}: {e}", argv.join(" "), root.display()))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if output.status.success() {
            Ok(text)
        } else {
            Err(format!(
                "{} failed ({}): {}",
                argv.join(" "),
                output.status,
                text.trim()
            ))
        }
    }

    fn remove_workdir(&self, dir: &Path) {
        if let Err(e) = std::fs::remove_dir(dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "removing the mount point");
        }
    }
}
