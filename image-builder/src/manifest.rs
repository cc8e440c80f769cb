//! `manifest.json` (what went in, what came out, with sha256) and the size report.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::cache::sha256_file;

/// One input or output file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileRecord {
    /// What it is (`agent`, `kernel-deb`, `vmlinuz`, ...).
    pub name: String,
    /// File name only (no directory, so the manifest does not depend on where the build
    /// ran): of the input, or of the output in the output directory.
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

impl FileRecord {
    /// Hashes the file at `path`.
    pub fn of(name: &str, path: &Path) -> Result<Self> {
        let (sha256, size) =
            sha256_file(path).with_context(|| format!("hashing {}", path.display()))?;
        let file_name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        Ok(FileRecord {
            name: name.to_owned(),
            path: file_name,
            size,
            sha256,
        })
    }
}

/// The kernel the image was built from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KernelInfo {
    /// `uname -r` of the kernel.
    pub version: String,
    /// Debian package and version, when the kernel came from a package.
    pub package: Option<String>,
    pub package_version: Option<String>,
}

/// What the initramfs holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RamdiskInfo {
    pub modules: usize,
    pub module_bytes: u64,
    pub firmware_files: usize,
    pub uncompressed_bytes: u64,
    pub zstd_level: i32,
    /// Firmware files named by shipped modules but not in the image (`--add-firmware`).
    pub firmware_missing: Vec<String>,
    /// Host tools and their libraries in the image (ramdisk paths; empty with
    /// `--no-mke2fs`), and their bytes.
    pub host_files: Vec<String>,
    pub host_file_bytes: u64,
}

/// The ISO's config area (docs/config-area.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigAreaInfo {
    /// Byte offset and length of the area in `rivet.iso`.
    pub offset: u64,
    pub size: u64,
    /// Length of each kernel-argument field.
    pub kargs_field_size: u32,
    /// sha256 (hex) of the raw Ed25519 key bundles must be signed with, when there is one.
    pub signing_key_sha256: Option<String>,
}

/// The whole manifest. Deterministic: same inputs, same JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Manifest {
    pub builder_version: String,
    pub source_date_epoch: u64,
    pub kernel: KernelInfo,
    pub kernel_cmdline: String,
    pub added_modules: Vec<String>,
    pub dropped_modules: Vec<String>,
    pub ramdisk: RamdiskInfo,
    pub config_area: ConfigAreaInfo,
    pub inputs: Vec<FileRecord>,
    pub outputs: Vec<FileRecord>,
}

impl Manifest {
    pub fn to_json(&self) -> Result<String> {
        let mut text = serde_json::to_string_pretty(self).context("serialising the manifest")?;
        text.push('\n');
        Ok(text)
    }
}

/// Bytes in a short human form (decimal megabytes, as the lab notes quote sizes).
pub fn human(bytes: u64) -> String {
    if bytes >= 1_000_000 {
        format!("{:.1} MB", bytes as f64 / 1e6)
    } else {
        format!("{:.1} kB", bytes as f64 / 1e3)
    }
}

/// The report printed after a build.
pub fn size_report(m: &Manifest) -> String {
    let mut out = format!(
        "rivet image for kernel {} ({} modules, {} uncompressed in the ramdisk)\n",
        m.kernel.version,
        m.ramdisk.modules,
        human(m.ramdisk.uncompressed_bytes)
    );
    for o in &m.outputs {
        out.push_str(&format!(
            "  {:<32} {:>9}  {:>11} bytes\n",
            o.path,
            human(o.size),
            o.size
        ));
    }
    out.push_str(&format!(
        "  config area: {} bytes at offset {} of rivet.iso{}\n",
        m.config_area.size,
        m.config_area.offset,
        if m.config_area.signing_key_sha256.is_some() {
            ", signed bundles only"
        } else {
            ""
        }
    ));
    if !m.ramdisk.host_files.is_empty() {
        out.push_str(&format!(
            "  host tools: {} files, {} uncompressed (mke2fs; --no-mke2fs leaves it out)\n",
            m.ramdisk.host_files.len(),
            human(m.ramdisk.host_file_bytes)
        ));
    }
    if !m.ramdisk.firmware_missing.is_empty() {
        out.push_str(&format!(
            "  note: shipped modules name {} firmware files that are not in the image \
             (listed in manifest.json; add them with --add-firmware)\n",
            m.ramdisk.firmware_missing.len()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            builder_version: "0.1.0".into(),
            source_date_epoch: 0,
            kernel: KernelInfo {
                version: "6.1.0-48-amd64".into(),
                package: None,
                package_version: None,
            },
            kernel_cmdline: "console=tty0".into(),
            added_modules: vec![],
            dropped_modules: vec![],
            ramdisk: RamdiskInfo {
                modules: 3,
                module_bytes: 10,
                firmware_files: 0,
                uncompressed_bytes: 2_500_000,
                zstd_level: 19,
                firmware_missing: vec!["a.bin".into()],
                host_files: vec!["usr/sbin/mke2fs".into()],
                host_file_bytes: 3_100_000,
            },
            config_area: ConfigAreaInfo {
                offset: 40960,
                size: 4 << 20,
                kargs_field_size: 1024,
                signing_key_sha256: None,
            },
            inputs: vec![],
            outputs: vec![FileRecord {
                name: "vmlinuz".into(),
                path: "vmlinuz".into(),
                size: 8_193_024,
                sha256: "00".into(),
            }],
        }
    }

    #[test]
    fn report_lists_sizes_and_missing_firmware() {
        let r = size_report(&manifest());
        assert!(
            r.starts_with("rivet image for kernel 6.1.0-48-amd64 (3 modules, 2.5 MB uncompressed"),
            "{r}"
        );
        assert!(
            r.contains("vmlinuz") && r.contains("8.2 MB") && r.contains("8193024 bytes"),
            "{r}"
        );
        assert!(r.contains("name 1 firmware files"), "{r}");
        assert!(
            r.contains("host tools: 1 files, 3.1 MB uncompressed (mke2fs;"),
            "{r}"
        );
        assert!(
            r.contains("config area: 4194304 bytes at offset 40960 of rivet.iso\n"),
            "{r}"
        );
        assert_eq!(human(999), "1.0 kB");
    }

    #[test]
    fn records_name_size_and_hash_without_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rivet-agent");
        std::fs::write(&path, b"abc").unwrap();
        let r = FileRecord::of("agent", &path).unwrap();
        assert_eq!((r.path.as_str(), r.size), ("rivet-agent", 3));
        assert_eq!(
            r.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn json_is_stable() {
        let a = manifest().to_json().unwrap();
        assert_eq!(a, manifest().to_json().unwrap());
        let v: serde_json::Value = serde_json::from_str(&a).unwrap();
        assert_eq!(v["outputs"][0]["size"], 8_193_024);
        assert_eq!(v["kernel"]["package"], serde_json::Value::Null);
    }
}
