//! Locating the kernel image and its modules in an unpacked kernel package or a directory.
//!
//! Accepted layouts (also below `usr/` for merged-/usr trees):
//! - `boot/vmlinuz-<version>` + `lib/modules/<version>/` (an unpacked `linux-image-*` .deb
//!   or a root filesystem);
//! - `vmlinuz` + `lib/modules/<version>/`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use tempfile::TempDir;

use crate::hosttools;

/// A kernel ready to use; keeps its unpack directory alive while it exists.
#[derive(Debug)]
pub struct KernelTree {
    pub version: String,
    pub vmlinuz: PathBuf,
    /// `.../lib/modules/<version>`.
    pub moddir: PathBuf,
    _unpacked: Option<TempDir>,
}

impl KernelTree {
    /// Finds the kernel in `root` (see the module documentation for the layouts).
    pub fn from_dir(root: &Path) -> Result<Self> {
        let modules_parent = ["lib/modules", "usr/lib/modules"]
            .iter()
            .map(|p| root.join(p))
            .find(|p| p.is_dir())
            .with_context(|| format!("{} has no lib/modules directory", root.display()))?;
        let mut versions = Vec::new();
        for entry in fs::read_dir(&modules_parent)
            .with_context(|| format!("listing {}", modules_parent.display()))?
        {
            let entry = entry.with_context(|| format!("listing {}", modules_parent.display()))?;
            if entry.path().join("kernel").is_dir() {
                versions.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        versions.sort();
        let version = match versions.as_slice() {
            [one] => one.clone(),
            [] => bail!(
                "no kernel module tree (<version>/kernel) in {}",
                modules_parent.display()
            ),
            many => bail!(
                "{} holds modules of several kernels ({}); give a tree with one",
                modules_parent.display(),
                many.join(", ")
            ),
        };
        let candidates = [
            root.join(format!("boot/vmlinuz-{version}")),
            root.join(format!("usr/boot/vmlinuz-{version}")),
            root.join("vmlinuz"),
        ];
        let vmlinuz = candidates
            .iter()
            .find(|p| p.is_file())
            .cloned()
            .with_context(|| {
                format!(
                    "no kernel image in {} (looked for boot/vmlinuz-{version} and vmlinuz)",
                    root.display()
                )
            })?;
        let moddir = modules_parent.join(&version);
        Ok(KernelTree {
            version,
            vmlinuz,
            moddir,
            _unpacked: None,
        })
    }

    /// Unpacks `deb` with `dpkg-deb -x` into a temporary directory under `tmp_parent`.
    pub fn from_deb(deb: &Path, tmp_parent: &Path) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("kernel-")
            .tempdir_in(tmp_parent)
            .with_context(|| format!("creating a directory in {}", tmp_parent.display()))?;
        hosttools::run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(dir.path()))
            .with_context(|| format!("unpacking {}", deb.display()))?;
        let tree = Self::from_dir(dir.path())
            .with_context(|| format!("{} is not a kernel package", deb.display()))?;
        Ok(KernelTree {
            _unpacked: Some(dir),
            ..tree
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(root: &Path, rel: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, b"x").unwrap();
    }

    #[test]
    fn finds_package_layout() {
        let d = tempfile::tempdir().unwrap();
        touch(d.path(), "boot/vmlinuz-6.1.0-48-amd64");
        touch(
            d.path(),
            "lib/modules/6.1.0-48-amd64/kernel/fs/isofs/isofs.ko",
        );
        let k = KernelTree::from_dir(d.path()).unwrap();
        assert_eq!(k.version, "6.1.0-48-amd64");
        assert!(k.vmlinuz.ends_with("boot/vmlinuz-6.1.0-48-amd64"));
        assert!(k.moddir.ends_with("lib/modules/6.1.0-48-amd64"));
    }

    #[test]
    fn finds_flat_layout_under_usr() {
        let d = tempfile::tempdir().unwrap();
        touch(d.path(), "vmlinuz");
        touch(d.path(), "usr/lib/modules/6.1.0/kernel/a.ko");
        let k = KernelTree::from_dir(d.path()).unwrap();
        assert_eq!(k.version, "6.1.0");
        assert!(k.vmlinuz.ends_with("vmlinuz"));
    }

    #[test]
    fn explains_what_is_missing() {
        let d = tempfile::tempdir().unwrap();
        let err = KernelTree::from_dir(d.path()).unwrap_err().to_string();
        assert!(err.ends_with("has no lib/modules directory"), "{err}");
        touch(d.path(), "lib/modules/1/kernel/a.ko");
        let err = KernelTree::from_dir(d.path()).unwrap_err().to_string();
        assert!(err.contains("no kernel image in"), "{err}");
        touch(d.path(), "lib/modules/2/kernel/a.ko");
        let err = KernelTree::from_dir(d.path()).unwrap_err().to_string();
        assert!(err.contains("modules of several kernels (1, 2)"), "{err}");
    }
}
