//! Just enough ISO 9660 to find where a file's bytes are in an image: the primary volume
//! descriptor, directory records, single-extent files. Used after xorriso wrote the ISO, to
//! record the config area and the kernel-argument fields in the locator.
//!
//! Names are matched against the ISO 9660 names (not Rock Ridge or Joliet): the path's
//! components compared case-insensitively with the `;1` version and a trailing `.` removed,
//! so the files looked up must have 8.3-compatible names (xorriso's default ISO level).

use std::io::{Read, Seek, SeekFrom};

use anyhow::{bail, ensure, Context, Result};
use rivet_protocol::config_area::{PVD_LEN, PVD_OFFSET};

/// Where a file's contents are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileExtent {
    pub offset: u64,
    pub len: u64,
}

const DIRECTORY: u8 = 0x02;
const MULTI_EXTENT: u8 = 0x80;
/// Directories bigger than this are not ours (rivet's ISO has a handful of entries).
const MAX_DIR_LEN: u32 = 1 << 20;

/// One directory record.
#[derive(Debug)]
struct Record {
    name: Vec<u8>,
    extent: u32,
    len: u32,
    flags: u8,
}

/// Parses the record at the start of `b` (its length byte is non-zero).
fn record(b: &[u8]) -> Result<Record> {
    let len = usize::from(b[0]);
    ensure!(
        len >= 34 && len <= b.len(),
        "directory record of {len} bytes"
    );
    let name_len = usize::from(b[32]);
    ensure!(
        33 + name_len <= len,
        "directory record name overruns its record"
    );
    Ok(Record {
        name: b[33..33 + name_len].to_vec(),
        extent: u32::from_le_bytes([b[2], b[3], b[4], b[5]]),
        len: u32::from_le_bytes([b[10], b[11], b[12], b[13]]),
        flags: b[25],
    })
}

/// Whether ISO 9660 name `raw` (`GRUB.CFG;1`, `BOOT`) is `wanted` (`grub.cfg`, `boot`).
fn same_name(raw: &[u8], wanted: &str) -> bool {
    let name = String::from_utf8_lossy(raw);
    let name = name.split(';').next().unwrap_or_default();
    let name = name.strip_suffix('.').unwrap_or(name);
    name.eq_ignore_ascii_case(wanted)
}

fn read_at(img: &mut (impl Read + Seek), offset: u64, len: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    img.seek(SeekFrom::Start(offset))
        .and_then(|_| img.read_exact(&mut buf))
        .with_context(|| format!("reading {len} bytes at offset {offset}"))?;
    Ok(buf)
}

/// The records of the directory at `extent`/`len` (blocks of `block` bytes).
fn list_dir(
    img: &mut (impl Read + Seek),
    block: u64,
    extent: u32,
    len: u32,
) -> Result<Vec<Record>> {
    ensure!(len <= MAX_DIR_LEN, "directory of {len} bytes is too large");
    let data = read_at(img, u64::from(extent) * block, len as usize)?;
    let mut records = Vec::new();
    let mut at = 0usize;
    while at < data.len() {
        if data[at] == 0 {
            // Records do not cross block boundaries: the rest of this block is padding.
            at = (at / block as usize + 1) * block as usize;
            continue;
        }
        let rec = record(&data[at..]).with_context(|| format!("directory at block {extent}"))?;
        at += usize::from(data[at]);
        records.push(rec);
    }
    Ok(records)
}

/// Where the file at `path` (`/boot/grub/grub.cfg`) is in the image.
pub fn find_file(img: &mut (impl Read + Seek), path: &str) -> Result<FileExtent> {
    let pvd = read_at(img, PVD_OFFSET, PVD_LEN).context("reading the primary volume descriptor")?;
    ensure!(
        pvd[0] == 1 && &pvd[1..6] == b"CD001",
        "no ISO 9660 primary volume descriptor at offset {PVD_OFFSET}"
    );
    let block = u64::from(u16::from_le_bytes([pvd[128], pvd[129]]));
    ensure!(block == 2048, "logical block size {block} (2048 expected)");
    let mut current = record(&pvd[156..190]).context("the root directory record")?;
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    for (i, part) in parts.iter().enumerate() {
        ensure!(
            current.flags & DIRECTORY != 0,
            "{part}'s parent is not a directory"
        );
        let records = list_dir(img, block, current.extent, current.len)?;
        current = records
            .into_iter()
            .skip(2) // `.` and `..`
            .find(|r| same_name(&r.name, part))
            .with_context(|| format!("{path}: no {part} in /{}", parts[..i].join("/")))?;
    }
    if current.flags & DIRECTORY != 0 {
        bail!("{path} is a directory");
    }
    ensure!(
        current.flags & MULTI_EXTENT == 0,
        "{path} is stored in several extents"
    );
    Ok(FileExtent {
        offset: u64::from(current.extent) * block,
        len: u64::from(current.len),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Cursor;

    /// A directory record.
    fn rec(name: &[u8], extent: u32, len: u32, flags: u8) -> Vec<u8> {
        let mut r = vec![0u8; 33];
        r.extend_from_slice(name);
        if r.len() % 2 == 1 {
            r.push(0);
        }
        r[0] = r.len() as u8;
        r[2..6].copy_from_slice(&extent.to_le_bytes());
        r[6..10].copy_from_slice(&extent.to_be_bytes());
        r[10..14].copy_from_slice(&len.to_le_bytes());
        r[14..18].copy_from_slice(&len.to_be_bytes());
        r[25] = flags;
        r[32] = name.len() as u8;
        r
    }

    fn put(img: &mut [u8], at: usize, bytes: &[u8]) {
        img[at..at + bytes.len()].copy_from_slice(bytes);
    }

    /// An image with `/BOOT/GRUB.CFG;1` at block 22 and `/BOOT/BIG.IMG;1` starting in the
    /// second block of the directory (after padding).
    pub(crate) fn image() -> Vec<u8> {
        let mut img = vec![0u8; 2048 * 24];
        let pvd = 16 * 2048;
        put(&mut img, pvd, b"\x01CD001\x01");
        put(&mut img, pvd + 128, &2048u16.to_le_bytes());
        put(&mut img, pvd + 156, &rec(b"\0", 18, 2048, DIRECTORY));
        let root = [
            rec(b"\0", 18, 2048, DIRECTORY),
            rec(b"\x01", 18, 2048, DIRECTORY),
            rec(b"BOOT", 19, 4096, DIRECTORY),
        ]
        .concat();
        put(&mut img, 18 * 2048, &root);
        let boot = [
            rec(b"\0", 19, 4096, DIRECTORY),
            rec(b"\x01", 18, 2048, DIRECTORY),
            rec(b"GRUB.CFG;1", 22, 11, 0),
        ]
        .concat();
        put(&mut img, 19 * 2048, &boot);
        put(&mut img, 20 * 2048, &rec(b"BIG.IMG;1", 23, 2048, 0));
        put(&mut img, 22 * 2048, b"set x=1\nabc");
        img
    }

    #[test]
    fn finds_files_in_subdirectories_across_directory_blocks() {
        let mut img = Cursor::new(image());
        let grub = find_file(&mut img, "/boot/grub.cfg").unwrap();
        assert_eq!(
            grub,
            FileExtent {
                offset: 22 * 2048,
                len: 11
            }
        );
        let big = find_file(&mut img, "boot/big.img").unwrap();
        assert_eq!(big.offset, 23 * 2048);
    }

    #[test]
    fn missing_files_and_directories_are_errors() {
        let mut img = Cursor::new(image());
        let err = find_file(&mut img, "/boot/nope.cfg")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "/boot/nope.cfg: no nope.cfg in /boot");
        let err = find_file(&mut img, "/boot").unwrap_err().to_string();
        assert!(err.contains("is a directory"), "{err}");
        let err = format!(
            "{:#}",
            find_file(&mut Cursor::new(vec![0u8; 2048 * 17]), "/x").unwrap_err()
        );
        assert!(
            err.contains("no ISO 9660 primary volume descriptor"),
            "{err}"
        );
    }
}
