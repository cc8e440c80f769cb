//! A tiny ISO made by the real xorriso with the builder's own layout, boot loader configs
//! and locator, with small stand-ins for the kernel, initramfs and ESP: what tests of
//! `customize` and of servers that hand out per-node ISOs use instead of a full build. It
//! does not boot.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rivet_protocol::config_area::keys::PublicKey;

use crate::area::{self, StagedConfig};
use crate::{bootcfg, hosttools, iso};

/// The kernel arguments a sample ISO is built with.
pub const CMDLINE: &str = "console=tty0 console=ttyS0,115200n8 ipa-debug=1";

/// Builds `dir/base.iso` with a config area of `area_size` bytes whose ramdisk trusts
/// `signing` (bundles must then be signed with it). Needs xorriso (docs/image-builder.md).
pub fn build(dir: &Path, area_size: u64, signing: Option<&PublicKey>) -> Result<PathBuf> {
    hosttools::check(&[hosttools::ALWAYS]).context("the builder's host tools")?;
    let work = dir.join("work");
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let stand_in = |name: &str, len: usize| -> Result<PathBuf> {
        let path = work.join(name);
        fs::write(&path, vec![0x5a; len]).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    };
    let vmlinuz = stand_in("vmlinuz", 5000)?;
    let initramfs = stand_in("initramfs", 9000)?;
    let esp = stand_in("esp.img", 64 << 10)?;
    let isolinux = bootcfg::isolinux_cfg(CMDLINE)?;
    let grub = bootcfg::iso_grub_cfg(CMDLINE)?;
    let files = iso::layout(
        &vmlinuz,
        &initramfs,
        &esp,
        isolinux.text.clone(),
        grub.text.clone(),
        CMDLINE,
        area_size,
    );
    let out = dir.join("base.iso");
    iso::build(&work, &out, &files, 0)?;
    let configs = [
        StagedConfig {
            path: iso::ISOLINUX_CFG,
            file: &isolinux,
        },
        StagedConfig {
            path: iso::GRUB_CFG,
            file: &grub,
        },
    ];
    area::write_locator(&out, &configs, CMDLINE, area_size, signing)?;
    fs::remove_dir_all(&work).with_context(|| format!("removing {}", work.display()))?;
    Ok(out)
}
