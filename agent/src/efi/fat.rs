//! A read-only FAT12/16/32 reader, enough to find boot loaders on an EFI system partition
//! without mounting it: directory listings (long names included) and whole small files.

use std::fs::File;
use std::os::unix::fs::FileExt;

/// Files read at most (boot loader CSVs are a few hundred bytes).
const MAX_FILE: u32 = 1 << 20;
/// Directory entries read at most per directory.
const MAX_ENTRIES: usize = 65536;

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The long name when there is one, else the 8.3 name (`BOOTX64.EFI`).
    pub name: String,
    pub is_dir: bool,
    cluster: u32,
    size: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Fat12,
    Fat16,
    Fat32,
}

/// A FAT file system at `offset` of a file or device.
pub struct Fat<'a> {
    file: &'a File,
    offset: u64,
    kind: Kind,
    cluster_bytes: u64,
    fat_start: u64,
    root_start: u64,
    root_entries: u64,
    data_start: u64,
    root_cluster: u32,
    clusters: u32,
}

fn le16(b: &[u8], at: usize) -> u64 {
    u64::from(u16::from_le_bytes([b[at], b[at + 1]]))
}

fn le32(b: &[u8], at: usize) -> u64 {
    u64::from(u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]))
}

fn invalid(message: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message.into())
}

impl<'a> Fat<'a> {
    /// Reads the boot sector at `offset`.
    pub fn open(file: &'a File, offset: u64) -> std::io::Result<Fat<'a>> {
        let mut boot = [0u8; 512];
        file.read_exact_at(&mut boot, offset)?;
        if boot[510..512] != [0x55, 0xaa] {
            return Err(invalid("no FAT boot sector signature"));
        }
        let bytes_per_sector = le16(&boot, 11);
        let sectors_per_cluster = u64::from(boot[13]);
        let reserved = le16(&boot, 14);
        let fats = u64::from(boot[16]);
        let root_entries = le16(&boot, 17);
        let total = match le16(&boot, 19) {
            0 => le32(&boot, 32),
            n => n,
        };
        let fat_sectors = match le16(&boot, 22) {
            0 => le32(&boot, 36),
            n => n,
        };
        if !matches!(bytes_per_sector, 512 | 1024 | 2048 | 4096)
            || !sectors_per_cluster.is_power_of_two()
            || fats == 0
            || fat_sectors == 0
            || reserved == 0
        {
            return Err(invalid("not a FAT file system"));
        }
        let root_sectors = (root_entries * 32).div_ceil(bytes_per_sector);
        let data_sector = reserved + fats * fat_sectors + root_sectors;
        let clusters = total.saturating_sub(data_sector) / sectors_per_cluster;
        let kind = if clusters < 4085 {
            Kind::Fat12
        } else if clusters < 65525 {
            Kind::Fat16
        } else {
            Kind::Fat32
        };
        Ok(Fat {
            file,
            offset,
            kind,
            cluster_bytes: bytes_per_sector * sectors_per_cluster,
            fat_start: reserved * bytes_per_sector,
            root_start: (reserved + fats * fat_sectors) * bytes_per_sector,
            root_entries,
            data_start: data_sector * bytes_per_sector,
            root_cluster: if kind == Kind::Fat32 {
                le32(&boot, 44) as u32
            } else {
                0
            },
            clusters: clusters as u32,
        })
    }

    fn read(&self, at: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.file.read_exact_at(buf, self.offset + at)
    }

    /// The cluster after `cluster`, or `None` at the end of the chain.
    fn next(&self, cluster: u32) -> std::io::Result<Option<u32>> {
        let (at, len) = match self.kind {
            Kind::Fat12 => (u64::from(cluster) * 3 / 2, 2),
            Kind::Fat16 => (u64::from(cluster) * 2, 2),
            Kind::Fat32 => (u64::from(cluster) * 4, 4),
        };
        let mut raw = [0u8; 4];
        self.read(self.fat_start + at, &mut raw[..len])?;
        let value = u32::from_le_bytes(raw);
        let next = match self.kind {
            Kind::Fat12 if cluster & 1 == 1 => value >> 4,
            Kind::Fat12 => value & 0xfff,
            Kind::Fat16 => value & 0xffff,
            Kind::Fat32 => value & 0x0fff_ffff,
        };
        let end = match self.kind {
            Kind::Fat12 => 0xff8,
            Kind::Fat16 => 0xfff8,
            Kind::Fat32 => 0x0fff_fff8,
        };
        Ok((next >= 2 && next < end && next < self.clusters + 2).then_some(next))
    }

    /// The bytes of a cluster chain, at most `limit`.
    fn chain(&self, first: u32, limit: u64) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut cluster = (first >= 2).then_some(first);
        while let Some(c) = cluster {
            if out.len() as u64 >= limit {
                break;
            }
            let mut buf = vec![0u8; self.cluster_bytes as usize];
            self.read(
                self.data_start + u64::from(c - 2) * self.cluster_bytes,
                &mut buf,
            )?;
            out.extend_from_slice(&buf);
            cluster = self.next(c)?;
        }
        out.truncate(limit.min(out.len() as u64) as usize);
        Ok(out)
    }

    fn directory(&self, cluster: u32) -> std::io::Result<Vec<Entry>> {
        let raw = if cluster == 0 && self.kind != Kind::Fat32 {
            let mut buf = vec![0u8; (self.root_entries * 32) as usize];
            self.read(self.root_start, &mut buf)?;
            buf
        } else {
            let first = if cluster == 0 {
                self.root_cluster
            } else {
                cluster
            };
            self.chain(first, (MAX_ENTRIES * 32) as u64)?
        };
        Ok(parse_directory(&raw))
    }

    /// Lists the directory at `path` (`/`-separated, names compared case-insensitively).
    pub fn list(&self, path: &str) -> std::io::Result<Vec<Entry>> {
        let mut entries = self.directory(0)?;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            let dir = entries
                .iter()
                .find(|e| e.is_dir && e.name.eq_ignore_ascii_case(part))
                .ok_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!("no directory {path}"),
                    )
                })?;
            entries = self.directory(dir.cluster)?;
        }
        Ok(entries)
    }

    /// Reads the file `name` in `dir`.
    pub fn read_file(&self, dir: &str, name: &str) -> std::io::Result<Vec<u8>> {
        let entry = self
            .list(dir)?
            .into_iter()
            .find(|e| !e.is_dir && e.name.eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("no file {dir}/{name}"),
                )
            })?;
        if entry.size > MAX_FILE {
            return Err(invalid(format!("{dir}/{name} is too large")));
        }
        self.chain(entry.cluster, u64::from(entry.size))
    }
}

/// Directory entries, with long names assembled from their LFN entries.
fn parse_directory(raw: &[u8]) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut long: Vec<(u8, Vec<u16>)> = Vec::new();
    for e in raw.chunks_exact(32) {
        match e[0] {
            0x00 => break,
            0xe5 => {
                long.clear();
                continue;
            }
            _ => {}
        }
        let attributes = e[11];
        if attributes == 0x0f {
            let units: Vec<u16> = [1..11, 14..26, 28..32]
                .into_iter()
                .flat_map(|r| {
                    e[r].chunks_exact(2)
                        .map(|c| u16::from_le_bytes([c[0], c[1]]))
                        .collect::<Vec<_>>()
                })
                .take_while(|&u| u != 0 && u != 0xffff)
                .collect();
            long.push((e[0] & 0x1f, units));
            continue;
        }
        if attributes & 0x08 != 0 {
            long.clear();
            continue;
        }
        let name = if long.is_empty() {
            short_name(e)
        } else {
            long.sort_by_key(|(order, _)| *order);
            let units: Vec<u16> = long.iter().flat_map(|(_, u)| u.iter().copied()).collect();
            String::from_utf16_lossy(&units)
        };
        long.clear();
        if name == "." || name == ".." {
            continue;
        }
        let high = if attributes & 0x10 != 0 || le16(e, 20) != 0 {
            le16(e, 20) << 16
        } else {
            0
        };
        entries.push(Entry {
            name,
            is_dir: attributes & 0x10 != 0,
            cluster: (high | le16(e, 26)) as u32,
            size: le32(e, 28) as u32,
        });
    }
    entries
}

/// An 8.3 name; Windows NT's case bits (byte 12) mark an all-lowercase base or extension.
fn short_name(e: &[u8]) -> String {
    let mut base = String::from_utf8_lossy(&e[0..8]).trim_end().to_string();
    let mut ext = String::from_utf8_lossy(&e[8..11]).trim_end().to_string();
    if e[12] & 0x08 != 0 {
        base = base.to_ascii_lowercase();
    }
    if e[12] & 0x10 != 0 {
        ext = ext.to_ascii_lowercase();
    }
    if ext.is_empty() {
        base
    } else {
        format!("{base}.{ext}")
    }
}
