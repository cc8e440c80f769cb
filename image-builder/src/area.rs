//! The config area at build time: its size, and the locator written into the ISO after
//! xorriso placed the files (docs/config-area.md).
//!
//! xorriso stores each file as one contiguous extent, so the zero-filled
//! [`iso::CONFIG_AREA`](crate::iso::CONFIG_AREA) file is the area, and the kernel-argument
//! fields are at known offsets inside the two boot loader configs. Their positions are
//! found by reading the ISO 9660 directories ([`crate::iso9660`]), checked against what was
//! staged, and written into the primary volume descriptor's Application Use field.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use rivet_protocol::config_area::keys::PublicKey;
use rivet_protocol::config_area::locator::{Extent, Locator, LOCATOR_LEN};
use rivet_protocol::config_area::LOCATOR_OFFSET;

use crate::bootcfg::{BootFile, KARGS_FIELD_LEN};
use crate::iso::{CONFIG_AREA, DEFAULT_KARGS};
use crate::iso9660::{self, FileExtent};

/// Default size of the config area: room for real deploy plans (coreos-installer's
/// 256 KiB was too small).
pub const DEFAULT_SIZE: u64 = 4 << 20;
/// The area must hold a header and a small payload.
pub const MIN_SIZE: u64 = 64 << 10;
/// The agent reads the whole bundle into memory.
pub const MAX_SIZE: u64 = 256 << 20;

/// Parses `--config-area-size`: bytes, or with a `K`/`KiB`/`M`/`MiB` suffix (powers of
/// 1024); a multiple of 2048 between [`MIN_SIZE`] and [`MAX_SIZE`].
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits = t.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = match &t[digits.len()..] {
        "" => 1,
        "K" | "KiB" | "k" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        other => return Err(format!("unknown unit {other:?} (use K or M)")),
    };
    let n: u64 = digits
        .parse()
        .map_err(|e| format!("{digits:?} is not a number: {e}"))?;
    let size = n
        .checked_mul(unit)
        .ok_or_else(|| format!("{text} is too large"))?;
    if !(MIN_SIZE..=MAX_SIZE).contains(&size) || size % 2048 != 0 {
        return Err(format!(
            "{size} bytes: the config area must be a multiple of 2048 between {} KiB and {} MiB",
            MIN_SIZE >> 10,
            MAX_SIZE >> 20
        ));
    }
    Ok(size)
}

/// A boot loader config staged into the ISO, with its kernel-argument field.
pub struct StagedConfig<'a> {
    /// Path inside the ISO.
    pub path: &'a str,
    pub file: &'a BootFile,
}

fn read_extent(iso: &mut (impl Read + Seek), extent: FileExtent) -> Result<Vec<u8>> {
    let mut data = vec![0u8; usize::try_from(extent.len).context("file too large")?];
    iso.seek(SeekFrom::Start(extent.offset))
        .and_then(|_| iso.read_exact(&mut data))
        .with_context(|| format!("reading {} bytes at {}", extent.len, extent.offset))?;
    Ok(data)
}

/// Finds the area, the default kernel arguments and the fields in the ISO at `path`,
/// checks each against what was staged, and writes the locator. Returns it.
pub fn write_locator(
    path: &Path,
    configs: &[StagedConfig<'_>],
    default_kargs: &str,
    area_size: u64,
    signing_key: Option<&PublicKey>,
) -> Result<Locator> {
    let mut iso = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;

    let area = iso9660::find_file(&mut iso, CONFIG_AREA)?;
    ensure!(
        area.len == area_size,
        "{CONFIG_AREA} has {} bytes in the ISO, {area_size} were staged",
        area.len
    );
    let mut chunk = vec![0u8; 1 << 20];
    iso.seek(SeekFrom::Start(area.offset))
        .context("seeking to the config area")?;
    let mut left = area.len;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        iso.read_exact(&mut chunk[..n])
            .context("reading the config area")?;
        ensure!(
            chunk[..n].iter().all(|&b| b == 0),
            "the config area is not zero-filled in the ISO"
        );
        left -= n as u64;
    }

    let kargs = iso9660::find_file(&mut iso, DEFAULT_KARGS)?;
    ensure!(
        read_extent(&mut iso, kargs)? == format!("{default_kargs}\n").as_bytes(),
        "{DEFAULT_KARGS} in the ISO is not what was staged"
    );

    let mut fields = Vec::new();
    for config in configs {
        let extent = iso9660::find_file(&mut iso, config.path)?;
        ensure!(
            read_extent(&mut iso, extent)? == config.file.text.as_bytes(),
            "{} in the ISO is not what was staged",
            config.path
        );
        fields.push(extent.offset + config.file.field_at as u64);
    }

    let mut app_use = [0u8; LOCATOR_LEN];
    iso.seek(SeekFrom::Start(LOCATOR_OFFSET))
        .and_then(|_| iso.read_exact(&mut app_use))
        .context("reading the Application Use field")?;
    if !app_use.iter().all(|&b| b == b' ' || b == 0) {
        bail!("the primary volume descriptor's Application Use field is already in use");
    }
    let locator = Locator {
        area: Extent {
            offset: area.offset,
            len: area.len,
        },
        default_kargs: Extent {
            offset: kargs.offset,
            len: default_kargs.len() as u64,
        },
        kargs_field_len: KARGS_FIELD_LEN as u32,
        kargs_fields: fields,
        signing_key_sha256: signing_key.map(PublicKey::sha256),
    };
    let bytes = locator.encode().context("encoding the locator")?;
    iso.seek(SeekFrom::Start(LOCATOR_OFFSET))
        .and_then(|_| iso.write_all(&bytes))
        .and_then(|_| iso.sync_all())
        .with_context(|| format!("writing the locator into {}", path.display()))?;
    Ok(locator)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_with_units() {
        assert_eq!(parse_size("4M"), Ok(4 << 20));
        assert_eq!(parse_size("4MiB"), Ok(4 << 20));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("65536"), Ok(65536));
        for bad in ["1K", "300M", "70000", "4G", "x", "4 M"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
