//! The EFI system partition image: a FAT file system holding `EFI/BOOT/BOOTX64.EFI` (GRUB
//! from `grub-mkimage`, with an embedded early config) and `EFI/BOOT/grub.cfg`. Made with
//! `mkfs.vfat -C` and mtools: no loop mounts, no root.
//!
//! Reproducible: fixed volume id and label, `mkfs.vfat --invariant`, and mtools stamp every
//! entry with `SOURCE_DATE_EPOCH` (FAT cannot store dates before 1980, so earlier epochs
//! are raised to 1980-01-01).

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use crate::bootcfg::{self, ESP_PREFIX};
use crate::hosttools::{self, GRUB_EFI_DIR};

/// FAT volume id and label of the ESP image. The label must differ from the ISO label.
pub const VOLUME_ID: &str = "52495654";
pub const VOLUME_LABEL: &str = "RIVET_ESP";
/// 1980-01-01T00:00:00Z, the earliest FAT timestamp.
const FAT_EPOCH_MIN: u64 = 315_532_800;
/// Free space left in the image beyond its files.
const HEADROOM: u64 = 512 * 1024;

/// Size in KiB of an image for `content` bytes: whole MiB with at least [`HEADROOM`] free.
pub fn image_kib(content: u64) -> u64 {
    let mib = (content + HEADROOM).div_ceil(1 << 20);
    mib.max(1) * 1024
}

/// Builds `out` (replacing it), using `work` for intermediate files.
pub fn build(work: &Path, out: &Path, epoch: u64) -> Result<()> {
    let early = work.join("early.cfg");
    fs::write(&early, bootcfg::early_grub_cfg())
        .with_context(|| format!("writing {}", early.display()))?;
    let efi = work.join("BOOTX64.EFI");
    hosttools::run(
        Command::new("grub-mkimage")
            .args([
                "-O",
                "x86_64-efi",
                "-d",
                GRUB_EFI_DIR,
                "-p",
                ESP_PREFIX,
                "-c",
            ])
            .arg(&early)
            .arg("-o")
            .arg(&efi)
            .args(bootcfg::GRUB_MODULES),
    )
    .context("building BOOTX64.EFI")?;
    let cfg = work.join("grub.cfg");
    fs::write(&cfg, bootcfg::esp_grub_cfg())
        .with_context(|| format!("writing {}", cfg.display()))?;

    let content = fs::metadata(&efi).map(|m| m.len()).unwrap_or(0)
        + fs::metadata(&cfg).map(|m| m.len()).unwrap_or(0);
    if out.exists() {
        fs::remove_file(out).with_context(|| format!("removing old {}", out.display()))?;
    }
    hosttools::run(
        Command::new("mkfs.vfat")
            .args(["--invariant", "-i", VOLUME_ID, "-n", VOLUME_LABEL, "-C"])
            .arg(out)
            .arg(image_kib(content).to_string()),
    )
    .context("creating the ESP image")?;
    let stamp = epoch.max(FAT_EPOCH_MIN).to_string();
    let mtools = |args: &[&str]| {
        let mut cmd = Command::new(args[0]);
        cmd.arg("-i")
            .arg(out)
            .args(&args[1..])
            .env("SOURCE_DATE_EPOCH", &stamp);
        // mtools reads ~/.mtoolsrc and /etc/mtools.conf; keep it from checking geometry.
        cmd.env("MTOOLS_SKIP_CHECK", "1");
        cmd
    };
    hosttools::run(&mut mtools(&["mmd", "::/EFI", "::/EFI/BOOT"]))
        .context("creating EFI/BOOT in the ESP image")?;
    for (src, dest) in [
        (&efi, "::/EFI/BOOT/BOOTX64.EFI"),
        (&cfg, "::/EFI/BOOT/grub.cfg"),
    ] {
        let mut cmd = mtools(&["mcopy"]);
        cmd.arg(src).arg(dest);
        hosttools::run(&mut cmd).with_context(|| format!("copying {dest} into the ESP image"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_size_rounds_to_mib_with_headroom() {
        assert_eq!(image_kib(0), 1024);
        assert_eq!(image_kib(512 * 1024), 1024);
        assert_eq!(image_kib(512 * 1024 + 1), 2048);
        assert_eq!(image_kib(2_000_000), 3072);
    }
}
