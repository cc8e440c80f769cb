//! The hybrid ISO: isolinux for BIOS (El Torito + isohybrid MBR for USB), the ESP image for
//! UEFI (El Torito + GPT for USB), combined by xorriso as in the lab notes' recipe, which
//! booted BIOS and UEFI from CD, USB disk and USB CD (BMC virtual media).
//!
//! Reproducible: staged files are sorted by xorriso, Rock Ridge owners are rationalised
//! (`-r`), and every date (files, volume, El Torito catalog, MBR id, GPT GUIDs) comes from
//! `SOURCE_DATE_EPOCH`. File dates are set on the staged files themselves and taken with
//! `--set_all_file_dates set_to_mtime`: xorriso ignores an explicit date of 0 (1970), which
//! is the default epoch.
//!
//! The file list is a plain table ([`IsoFile`]) so that a later reserved config area (a
//! zero-filled file with a locator) is one more entry here.

use std::fs::{self, FileTimes};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};

use crate::bootcfg::ISO_LABEL;
use crate::hosttools::{self, ISOHDPFX, ISOLINUX_BIN, LDLINUX_C32};

/// Paths inside the ISO that the xorriso command line names.
pub const ISOLINUX_DIR: &str = "isolinux";
pub const BOOT_CATALOG: &str = "isolinux/boot.cat";
pub const ISOLINUX_IMAGE: &str = "isolinux/isolinux.bin";
pub const EFI_IMAGE: &str = "boot/efiboot.img";

/// Where a staged file's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Copy(PathBuf),
    Text(String),
}

/// One file of the ISO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsoFile {
    /// Path inside the ISO, without a leading `/`.
    pub path: String,
    pub source: Source,
}

/// The files of rivet's ISO.
pub fn layout(
    vmlinuz: &Path,
    initramfs: &Path,
    esp: &Path,
    isolinux_cfg: String,
    grub_cfg: String,
) -> Vec<IsoFile> {
    let f = |path: &str, source| IsoFile {
        path: path.to_owned(),
        source,
    };
    vec![
        f(ISOLINUX_IMAGE, Source::Copy(ISOLINUX_BIN.into())),
        f("isolinux/ldlinux.c32", Source::Copy(LDLINUX_C32.into())),
        f("isolinux/isolinux.cfg", Source::Text(isolinux_cfg)),
        f("boot/vmlinuz", Source::Copy(vmlinuz.to_owned())),
        f("boot/initramfs.img", Source::Copy(initramfs.to_owned())),
        f("boot/grub/grub.cfg", Source::Text(grub_cfg)),
        f(EFI_IMAGE, Source::Copy(esp.to_owned())),
    ]
}

/// `--modification-date=` / `--set_all_file_dates` form of an epoch: YYYYMMDDhhmmsscc (GMT).
pub fn xorriso_date(epoch: u64) -> Result<String> {
    let secs = i64::try_from(epoch).context("SOURCE_DATE_EPOCH is too large")?;
    let t = time::OffsetDateTime::from_unix_timestamp(secs)
        .with_context(|| format!("SOURCE_DATE_EPOCH {epoch} is out of range"))?;
    Ok(format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}00",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    ))
}

/// The xorriso arguments for staging directory `root` and output `out`.
pub fn xorriso_args(root: &Path, out: &Path, date: &str) -> Vec<String> {
    let mut args: Vec<String> = ["-as", "mkisofs", "-o"].map(str::to_owned).to_vec();
    args.push(out.display().to_string());
    args.extend(
        [
            "-V",
            ISO_LABEL,
            "-r",
            "-J",
            "-isohybrid-mbr",
            ISOHDPFX,
            "-c",
            BOOT_CATALOG,
            "-b",
            ISOLINUX_IMAGE,
            "-no-emul-boot",
            "-boot-load-size",
            "4",
            "-boot-info-table",
            "-eltorito-alt-boot",
            "-e",
            EFI_IMAGE,
            "-no-emul-boot",
            "-isohybrid-gpt-basdat",
        ]
        .map(str::to_owned),
    );
    args.push(format!("--modification-date={date}"));
    args.extend(["--set_all_file_dates", "set_to_mtime"].map(str::to_owned));
    args.push(root.display().to_string());
    args
}

/// Sets access and modification time of `path` and everything below it to `when`.
fn set_times(path: &Path, when: SystemTime) -> Result<()> {
    let meta = fs::symlink_metadata(path).with_context(|| format!("stat {}", path.display()))?;
    if meta.is_dir() {
        for entry in fs::read_dir(path).with_context(|| format!("listing {}", path.display()))? {
            set_times(
                &entry
                    .with_context(|| format!("listing {}", path.display()))?
                    .path(),
                when,
            )?;
        }
    }
    fs::File::open(path)
        .and_then(|f| f.set_times(FileTimes::new().set_accessed(when).set_modified(when)))
        .with_context(|| format!("setting the times of {}", path.display()))
}

/// Stages `files` under `work/iso-root` and writes the ISO to `out`.
pub fn build(work: &Path, out: &Path, files: &[IsoFile], epoch: u64) -> Result<()> {
    let root = work.join("iso-root");
    for file in files {
        let dest = root.join(&file.path);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        match &file.source {
            Source::Copy(src) => fs::copy(src, &dest)
                .map(|_| ())
                .with_context(|| format!("copying {} to {}", src.display(), dest.display()))?,
            Source::Text(text) => {
                fs::write(&dest, text).with_context(|| format!("writing {}", dest.display()))?
            }
        }
    }
    set_times(&root, SystemTime::UNIX_EPOCH + Duration::from_secs(epoch))?;
    if out.exists() {
        fs::remove_file(out).with_context(|| format!("removing old {}", out.display()))?;
    }
    let date = xorriso_date(epoch)?;
    hosttools::run(
        Command::new("xorriso")
            .args(xorriso_args(&root, out, &date))
            .env("SOURCE_DATE_EPOCH", epoch.to_string()),
    )
    .context("writing the ISO")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_in_xorriso_form() {
        assert_eq!(xorriso_date(0).unwrap(), "1970010100000000");
        assert_eq!(xorriso_date(1_700_000_000).unwrap(), "2023111422132000");
    }

    #[test]
    fn command_line_follows_the_lab_recipe() {
        let args = xorriso_args(Path::new("/s"), Path::new("/o.iso"), "1970010100000000");
        let line = args.join(" ");
        assert!(
            line.starts_with("-as mkisofs -o /o.iso -V RIVET -r -J -isohybrid-mbr "),
            "{line}"
        );
        assert!(
            line.contains(
                "-c isolinux/boot.cat -b isolinux/isolinux.bin -no-emul-boot -boot-load-size 4 \
             -boot-info-table -eltorito-alt-boot -e boot/efiboot.img -no-emul-boot \
             -isohybrid-gpt-basdat"
            ),
            "{line}"
        );
        assert!(
            line.ends_with(
                "--modification-date=1970010100000000 --set_all_file_dates set_to_mtime /s"
            ),
            "{line}"
        );
    }
}
