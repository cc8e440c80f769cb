//! The ephemeral partition of a partition image (`ephemeral_mb`, label `ephemeral0`): which
//! file system `ephemeral_format` asks for, decided and checked before anything is written
//! to the disk, and ext2/ext3/ext4 made by the `mke2fs` the image builder bundles into the
//! ramdisk ([`MKE2FS_PATH`]) through [`FsMaker`]. IPA runs `mkfs -t <format> -L ephemeral0`
//! (`-F` for ext3/ext4, `-n` for the label of vfat, `mkswap` for swap); rivet writes vfat
//! (FAT32) and swap natively ([`super::fs`]) and has no other mkfs.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rivet_protocol::ramdisk::MKE2FS_PATH;

/// The label IPA gives the ephemeral file system.
pub const LABEL: &str = "ephemeral0";

/// The `ephemeral_format` values rivet can make.
pub const SUPPORTED: &str = "ext2, ext3, ext4, vfat, swap";

/// An ext file system type, as `mke2fs -t` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtFs {
    Ext2,
    Ext3,
    Ext4,
}

impl ExtFs {
    pub fn name(self) -> &'static str {
        match self {
            ExtFs::Ext2 => "ext2",
            ExtFs::Ext3 => "ext3",
            ExtFs::Ext4 => "ext4",
        }
    }
}

/// How the ephemeral file system is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EphemeralFs {
    /// By the ramdisk's `mke2fs`, once the partition table is in place.
    Ext(ExtFs),
    /// FAT32, written natively.
    Vfat,
    /// A swap signature, written natively.
    Swap,
}

/// The file system for `ephemeral_format` (as Ironic sends it: lower case, ext4 by
/// default); anything rivet cannot make is refused naming the format.
pub fn decide(format: &str) -> Result<EphemeralFs, String> {
    Ok(match format {
        "ext2" => EphemeralFs::Ext(ExtFs::Ext2),
        "ext3" => EphemeralFs::Ext(ExtFs::Ext3),
        "ext4" => EphemeralFs::Ext(ExtFs::Ext4),
        "vfat" => EphemeralFs::Vfat,
        "swap" => EphemeralFs::Swap,
        other => {
            return Err(format!(
                "ephemeral_format {other:?}: the ramdisk has no mkfs.{other}; supported \
                 ephemeral formats: {SUPPORTED}"
            ))
        }
    })
}

/// Makes the ext file systems the agent does not write itself.
pub trait FsMaker: Send + Sync {
    /// Fails, saying why, unless [`FsMaker::mke2fs`] can run; called before the disk is
    /// touched.
    fn check(&self, fs: ExtFs) -> Result<(), String>;
    /// `mke2fs -t <fs> -F -L <label> <device>`. The whole disk must not be held open with
    /// `O_EXCL` meanwhile: mke2fs claims the partition exclusively, which the kernel
    /// refuses for a partition of a disk someone else holds so.
    fn mke2fs(&self, fs: ExtFs, device: &Path, label: &str) -> Result<(), String>;
}

/// The `mke2fs` program at a fixed path: [`MKE2FS_PATH`] in the ramdisk (where the image
/// builder puts it; Debian hosts have it there too).
#[derive(Debug, Clone)]
pub struct Mke2fs {
    pub program: PathBuf,
}

impl Default for Mke2fs {
    fn default() -> Self {
        Mke2fs {
            program: PathBuf::from(MKE2FS_PATH),
        }
    }
}

impl FsMaker for Mke2fs {
    fn check(&self, fs: ExtFs) -> Result<(), String> {
        let program = self.program.display();
        match std::fs::metadata(&self.program) {
            Ok(meta) if meta.is_file() && meta.permissions().mode() & 0o111 != 0 => Ok(()),
            Ok(_) => Err(format!(
                "ephemeral_format {}: {program} is not an executable file",
                fs.name()
            )),
            Err(e) => Err(format!(
                "ephemeral_format {}: the ramdisk has no {program} ({e}); was it built with \
                 rivet-image-builder --no-mke2fs? Supported ephemeral formats without it: \
                 vfat, swap",
                fs.name()
            )),
        }
    }

    fn mke2fs(&self, fs: ExtFs, device: &Path, label: &str) -> Result<(), String> {
        let mut command = Command::new(&self.program);
        command
            .args(["-t", fs.name(), "-F", "-L", label])
            .arg(device)
            .env("LC_ALL", "C")
            .stdin(Stdio::null());
        let shown = format!(
            "{} -t {} -F -L {label} {}",
            self.program.display(),
            fs.name(),
            device.display()
        );
        let output = command
            .output()
            .map_err(|e| format!("running {shown}: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{shown} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::testutil::blkid;

    #[test]
    fn ironic_formats_map_to_how_rivet_makes_them() {
        assert_eq!(decide("ext4"), Ok(EphemeralFs::Ext(ExtFs::Ext4)));
        assert_eq!(decide("ext3"), Ok(EphemeralFs::Ext(ExtFs::Ext3)));
        assert_eq!(decide("ext2"), Ok(EphemeralFs::Ext(ExtFs::Ext2)));
        assert_eq!(decide("vfat"), Ok(EphemeralFs::Vfat));
        assert_eq!(decide("swap"), Ok(EphemeralFs::Swap));
        assert_eq!(
            decide("xfs"),
            Err(
                "ephemeral_format \"xfs\": the ramdisk has no mkfs.xfs; supported ephemeral \
                 formats: ext2, ext3, ext4, vfat, swap"
                    .into()
            )
        );
        for other in ["btrfs", "ntfs", "EXT4", "", "msdos"] {
            let err = decide(other).unwrap_err();
            assert!(err.contains(&format!("no mkfs.{other};")), "{err}");
        }
    }

    #[test]
    fn a_missing_or_non_executable_mke2fs_fails_the_check() {
        let dir = tempfile::tempdir().unwrap();
        let missing = Mke2fs {
            program: dir.path().join("mke2fs"),
        };
        let err = missing.check(ExtFs::Ext4).unwrap_err();
        assert!(
            err.starts_with("ephemeral_format ext4: the ramdisk has no "),
            "{err}"
        );
        assert!(err.contains("--no-mke2fs"), "{err}");
        std::fs::write(dir.path().join("mke2fs"), b"").unwrap();
        let err = missing.check(ExtFs::Ext3).unwrap_err();
        assert!(err.ends_with("mke2fs is not an executable file"), "{err}");
        assert_eq!(Mke2fs::default().program, Path::new("/usr/sbin/mke2fs"));
    }

    #[test]
    fn mke2fs_makes_the_labelled_file_system_and_reports_failures() {
        let maker = Mke2fs::default();
        maker
            .check(ExtFs::Ext4)
            .expect("/usr/sbin/mke2fs (Debian package e2fsprogs) is required by this test");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("part");
        std::fs::File::create(&path)
            .unwrap()
            .set_len(32 << 20)
            .unwrap();
        for fs in [ExtFs::Ext2, ExtFs::Ext3, ExtFs::Ext4] {
            maker.mke2fs(fs, &path, LABEL).unwrap();
            assert_eq!(blkid(&path, "TYPE"), fs.name());
            assert_eq!(blkid(&path, "LABEL"), LABEL);
        }
        let err = maker
            .mke2fs(ExtFs::Ext4, &dir.path().join("none"), LABEL)
            .unwrap_err();
        assert!(
            err.starts_with(&format!(
                "/usr/sbin/mke2fs -t ext4 -F -L ephemeral0 {}/none failed (exit status: 1): ",
                dir.path().display()
            )),
            "{err}"
        );
    }
}
