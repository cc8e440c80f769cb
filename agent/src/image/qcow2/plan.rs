//! The qcow2 header and the conversion plan built from the L1 and L2 tables.

use sha2::{Digest, Sha256};

use super::{refused, Qcow2Error};
use crate::image::source::SourceError;

const MAGIC: &[u8; 4] = b"QFI\xfb";
/// qemu's limit on the L1 table (QCOW_MAX_L1_SIZE).
const MAX_L1_BYTES: u64 = 32 << 20;
/// Entries of the plan at most (24 bytes each).
pub const MAX_EXTENTS: usize = 8 << 20;
/// L2 tables fetched in one random read at most.
const MAX_TABLE_READ: u64 = 16 << 20;

const INCOMPAT_DIRTY: u64 = 1 << 0;
const INCOMPAT_CORRUPT: u64 = 1 << 1;
const INCOMPAT_DATA_FILE: u64 = 1 << 2;
const INCOMPAT_COMPRESSION: u64 = 1 << 3;
const INCOMPAT_EXTL2: u64 = 1 << 4;

const EXT_END: u32 = 0;
const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;
const EXT_CRYPTO: u32 = 0x0537_be77;
const EXT_DATA_FILE: u32 = 0x4441_5441;

const L1_OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
const L1_RESERVED: u64 = 0x7f00_0000_0000_01ff;
const L2_COPIED: u64 = 1 << 63;
const L2_COMPRESSED: u64 = 1 << 62;
const L2_ZERO: u64 = 1;
const L2_OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
const L2_RESERVED: u64 = 0x3f00_0000_0000_01fe;

/// How compressed clusters are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressionType {
    /// Raw deflate (zlib without header), the default.
    Deflate,
    Zstd,
}

/// What the conversion needs from the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub version: u32,
    pub cluster_bits: u32,
    /// Virtual disk size in bytes.
    pub size: u64,
    pub l1_size: u32,
    pub l1_offset: u64,
    pub compression: CompressionType,
    /// Bytes of the header and its extensions (checked against the stream).
    pub header_len: u64,
}

impl Header {
    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    fn l2_entries(&self) -> u64 {
        self.cluster_size() / 8
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(word)
}

fn be64(b: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(word)
}

/// Parses and checks the header in `head`, the first bytes of the file (the header and its
/// extensions must lie inside it).
pub fn parse_header(head: &[u8]) -> Result<Header, Qcow2Error> {
    if head.len() < 72 || &head[..4] != MAGIC {
        return Err(refused("not a qcow2 header"));
    }
    let version = be32(head, 4);
    if version != 2 && version != 3 {
        return Err(refused(format!("version {version} (only 2 and 3 exist)")));
    }
    if be64(head, 8) != 0 {
        return Err(refused("it has a backing file"));
    }
    let cluster_bits = be32(head, 20);
    if !(9..=21).contains(&cluster_bits) {
        return Err(refused(format!("cluster_bits {cluster_bits} (9 to 21)")));
    }
    let size = be64(head, 24);
    if be32(head, 32) != 0 {
        return Err(refused("it is encrypted"));
    }
    let l1_size = be32(head, 36);
    let l1_offset = be64(head, 40);
    let mut header = Header {
        version,
        cluster_bits,
        size,
        l1_size,
        l1_offset,
        compression: CompressionType::Deflate,
        header_len: 72,
    };
    if version == 3 {
        if head.len() < 104 {
            return Err(refused("the v3 header is cut short"));
        }
        let incompatible = be64(head, 72);
        let known = INCOMPAT_DIRTY
            | INCOMPAT_CORRUPT
            | INCOMPAT_DATA_FILE
            | INCOMPAT_COMPRESSION
            | INCOMPAT_EXTL2;
        if incompatible & !known != 0 {
            return Err(refused(format!(
                "unknown incompatible features {:#x}",
                incompatible & !known
            )));
        }
        if incompatible & INCOMPAT_CORRUPT != 0 {
            return Err(refused("it is marked corrupt"));
        }
        if incompatible & INCOMPAT_DATA_FILE != 0 {
            return Err(refused("it has an external data file"));
        }
        if incompatible & INCOMPAT_EXTL2 != 0 {
            return Err(refused(
                "extended L2 entries (subclusters) are not supported",
            ));
        }
        let header_length = be32(head, 100) as u64;
        if header_length < 104 || header_length > header.cluster_size() {
            return Err(refused(format!("header_length {header_length}")));
        }
        if incompatible & INCOMPAT_COMPRESSION != 0 {
            if header_length < 105 || head.len() < 105 {
                return Err(refused("the compression type is missing"));
            }
            header.compression = match head[104] {
                0 => CompressionType::Deflate,
                1 => CompressionType::Zstd,
                other => return Err(refused(format!("compression type {other}"))),
            };
        }
        header.header_len = header_length;
    }
    header.header_len = parse_extensions(head, &header)?;

    let per_l1 = header.l2_entries() * header.cluster_size();
    let needed = size.div_ceil(per_l1);
    if u64::from(l1_size) < needed {
        return Err(refused(format!(
            "the L1 table has {l1_size} entries; {needed} are needed for {size} bytes"
        )));
    }
    if u64::from(l1_size) * 8 > MAX_L1_BYTES {
        return Err(refused(format!("the L1 table has {l1_size} entries")));
    }
    if l1_size > 0 && (l1_offset == 0 || l1_offset & (header.cluster_size() - 1) != 0) {
        return Err(refused(format!("L1 table offset {l1_offset:#x}")));
    }
    Ok(header)
}

/// Walks the header extensions; returns where they end.
fn parse_extensions(head: &[u8], header: &Header) -> Result<u64, Qcow2Error> {
    let mut at = header.header_len as usize;
    loop {
        if at + 8 > head.len() || at as u64 + 8 > header.cluster_size() {
            return Err(refused(
                "the header extensions do not end in the first bytes read",
            ));
        }
        let kind = be32(head, at);
        let len = be32(head, at + 4) as usize;
        at += 8;
        match kind {
            EXT_END => return Ok(at as u64),
            EXT_DATA_FILE => return Err(refused("it has an external data file")),
            EXT_CRYPTO => return Err(refused("it is encrypted")),
            EXT_BACKING_FORMAT => return Err(refused("it names a backing file format")),
            _ => {}
        }
        at += len.div_ceil(8) * 8;
    }
}

/// What one host byte range holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtentKind {
    /// Guest bytes starting at `guest`, stored as they are.
    Data { guest: u64 },
    /// One compressed cluster for the guest cluster at `guest`.
    Compressed { guest: u64 },
    /// Table bytes the plan was built from: their SHA-256.
    Check { sha256: [u8; 32] },
}

/// A host byte range and what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub host: u64,
    pub len: u64,
    pub kind: ExtentKind,
}

/// Everything [`super::convert`] needs: the extents sorted by host offset, and the guest
/// ranges that read as zeros (merged, in guest order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub header: Header,
    pub extents: Vec<Extent>,
    pub zeros: Vec<(u64, u64)>,
}

struct Builder<'a> {
    header: &'a Header,
    file_len: Option<u64>,
    extents: Vec<Extent>,
    zeros: Vec<(u64, u64)>,
}

impl Builder<'_> {
    fn push(&mut self, extent: Extent) -> Result<(), Qcow2Error> {
        if let Some(len) = self.file_len {
            let end = extent.host.saturating_add(extent.len);
            // A compressed cluster's size is rounded up to whole sectors: it may run past
            // the end of the file; the stream returns what there is.
            let start_inside = extent.host < len;
            if end > len && !(matches!(extent.kind, ExtentKind::Compressed { .. }) && start_inside)
            {
                return Err(refused(format!(
                    "bytes {}..{end} are outside the {len}-byte file",
                    extent.host
                )));
            }
        }
        if let (Some(last), ExtentKind::Data { guest }) = (self.extents.last_mut(), extent.kind) {
            if let ExtentKind::Data { guest: last_guest } = last.kind {
                if last.host + last.len == extent.host && last_guest + last.len == guest {
                    last.len += extent.len;
                    return Ok(());
                }
            }
        }
        if self.extents.len() >= MAX_EXTENTS {
            return Err(refused(format!(
                "it is too fragmented (more than {MAX_EXTENTS} cluster runs)"
            )));
        }
        self.extents.push(extent);
        Ok(())
    }

    fn zero(&mut self, guest: u64, len: u64) {
        match self.zeros.last_mut() {
            Some((start, run)) if *start + *run == guest => *run += len,
            _ => self.zeros.push((guest, len)),
        }
    }

    fn check(&mut self, host: u64, bytes: &[u8]) -> Result<(), Qcow2Error> {
        let sha256: [u8; 32] = Sha256::digest(bytes).into();
        self.push(Extent {
            host,
            len: bytes.len() as u64,
            kind: ExtentKind::Check { sha256 },
        })
    }

    /// One L2 entry for the guest cluster at `guest` (`len` bytes of it are inside the disk).
    fn l2_entry(&mut self, entry: u64, guest: u64, len: u64) -> Result<(), Qcow2Error> {
        let h = self.header;
        if entry & L2_COMPRESSED != 0 {
            let shift = 62 - (h.cluster_bits - 8);
            let offset = entry & ((1u64 << shift) - 1);
            let sectors = ((entry & !(L2_COPIED | L2_COMPRESSED)) >> shift) + 1;
            let csize = sectors * 512 - (offset & 511);
            if offset == 0 {
                return Err(refused(format!(
                    "compressed cluster at offset 0 (guest {guest})"
                )));
            }
            return self.push(Extent {
                host: offset,
                len: csize,
                kind: ExtentKind::Compressed { guest },
            });
        }
        if entry & L2_RESERVED != 0 {
            return Err(refused(format!(
                "L2 entry {entry:#x} has reserved bits set"
            )));
        }
        let offset = entry & L2_OFFSET_MASK;
        if entry & L2_ZERO != 0 || offset == 0 {
            self.zero(guest, len);
            return Ok(());
        }
        if offset & (h.cluster_size() - 1) != 0 {
            return Err(refused(format!(
                "data cluster offset {offset:#x} is not aligned"
            )));
        }
        self.push(Extent {
            host: offset,
            len,
            kind: ExtentKind::Data { guest },
        })
    }
}

/// Random reads of the image file: fills the buffer from the offset.
pub type ReadAt<'a> = dyn FnMut(u64, &mut [u8]) -> Result<(), SourceError> + 'a;

/// Reads the L1 and L2 tables with `read_at` and builds the plan. `file_len`: the image
/// file's length when known.
pub fn plan(
    header: Header,
    file_len: Option<u64>,
    read_at: &mut ReadAt<'_>,
) -> Result<Plan, Qcow2Error> {
    let cluster = header.cluster_size();
    let mut builder = Builder {
        header: &header,
        file_len,
        extents: Vec::new(),
        zeros: Vec::new(),
    };
    // The header bytes themselves came from the stream: nothing to check.
    let mut l1_bytes = vec![0u8; header.l1_size as usize * 8];
    if !l1_bytes.is_empty() {
        read_at(header.l1_offset, &mut l1_bytes)?;
        builder.check(header.l1_offset, &l1_bytes)?;
    }
    let per_l2 = header.l2_entries() * cluster;
    let l1_used = header.size.div_ceil(per_l2) as usize;
    // (L1 index, L2 table offset) of the tables to read, in file order for coalescing.
    let mut tables: Vec<(usize, u64)> = Vec::new();
    for (index, raw) in l1_bytes.chunks_exact(8).take(l1_used).enumerate() {
        let entry = be64(raw, 0);
        if entry & L1_RESERVED != 0 {
            return Err(refused(format!(
                "L1 entry {index} ({entry:#x}) has reserved bits set"
            )));
        }
        let offset = entry & L1_OFFSET_MASK;
        let guest = index as u64 * per_l2;
        if offset == 0 {
            builder.zero(guest, per_l2.min(header.size - guest));
        } else if offset & (cluster - 1) != 0 {
            return Err(refused(format!(
                "L2 table offset {offset:#x} is not aligned"
            )));
        } else {
            tables.push((index, offset));
        }
    }
    // Unallocated L2 ranges were recorded in guest order above; table contents come next and
    // may interleave, so zeros are sorted and merged at the end.
    tables.sort_by_key(|&(_, offset)| offset);
    let mut i = 0;
    while i < tables.len() {
        let mut j = i + 1;
        while j < tables.len()
            && tables[j].1 == tables[j - 1].1 + cluster
            && (j - i + 1) as u64 * cluster <= MAX_TABLE_READ
        {
            j += 1;
        }
        let start = tables[i].1;
        let mut bytes = vec![0u8; (j - i) * cluster as usize];
        read_at(start, &mut bytes)?;
        builder.check(start, &bytes)?;
        for (k, &(index, _)) in tables[i..j].iter().enumerate() {
            let table = &bytes[k * cluster as usize..(k + 1) * cluster as usize];
            let first_guest = index as u64 * per_l2;
            for (n, raw) in table.chunks_exact(8).enumerate() {
                let guest = first_guest + n as u64 * cluster;
                if guest >= header.size {
                    break;
                }
                let len = cluster.min(header.size - guest);
                builder.l2_entry(be64(raw, 0), guest, len)?;
            }
        }
        i = j;
    }
    let Builder {
        mut extents,
        mut zeros,
        ..
    } = builder;
    extents.sort_by_key(|e| e.host);
    for pair in extents.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let overlap = b.host < a.host + a.len;
        let both_compressed_or_checked = !matches!(a.kind, ExtentKind::Data { .. })
            && !matches!(b.kind, ExtentKind::Data { .. });
        if overlap && !both_compressed_or_checked {
            return Err(refused(format!(
                "host bytes at {:#x} are used more than once",
                b.host
            )));
        }
    }
    zeros.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(zeros.len());
    for (start, len) in zeros {
        match merged.last_mut() {
            Some((s, l)) if *s + *l == start => *l += len,
            _ => merged.push((start, len)),
        }
    }
    Ok(Plan {
        header,
        extents,
        zeros: merged,
    })
}
