//! A small SMBIOS (DMI) table parser: the raw structure table the kernel exports as
//! `/sys/firmware/dmi/tables/DMI` and its entry point `smbios_entry_point` (DMTF DSP0134).
//!
//! Pure functions over bytes; [`Smbios::read`] is the only I/O. Only the structure types the
//! inventory uses are decoded: 0 (BIOS), 1 (system), 2 (baseboard), 4 (processor),
//! 16 (physical memory array) and 17 (memory device). Every other structure is kept raw.

use std::path::{Path, PathBuf};

/// Errors reading or parsing the tables.
#[derive(Debug, thiserror::Error)]
pub enum SmbiosError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("SMBIOS structure at byte {offset}: {reason}")]
    Malformed { offset: usize, reason: String },
}

/// One structure: its formatted area (header included) and its strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Structure {
    pub kind: u8,
    pub handle: u16,
    /// The formatted area, starting with the 4-byte header.
    pub data: Vec<u8>,
    /// The string set; string number `n` (1-based) is `strings[n - 1]`.
    pub strings: Vec<String>,
}

impl Structure {
    pub fn byte(&self, offset: usize) -> Option<u8> {
        self.data.get(offset).copied()
    }

    pub fn word(&self, offset: usize) -> Option<u16> {
        let bytes = self.data.get(offset..offset + 2)?;
        Some(u16::from_le_bytes([bytes[0], bytes[1]]))
    }

    pub fn dword(&self, offset: usize) -> Option<u32> {
        let bytes = self.data.get(offset..offset + 4)?;
        Some(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    pub fn qword(&self, offset: usize) -> Option<u64> {
        let bytes = self.data.get(offset..offset + 8)?;
        let mut array = [0u8; 8];
        array.copy_from_slice(bytes);
        Some(u64::from_le_bytes(array))
    }

    /// The string whose number is stored at `offset`, trimmed; `None` for number 0, a
    /// number past the string set, or a field the structure is too short to have.
    pub fn string(&self, offset: usize) -> Option<&str> {
        let number = self.byte(offset)? as usize;
        if number == 0 {
            return None;
        }
        self.strings.get(number - 1).map(|s| s.trim())
    }

    /// Like [`Structure::string`], with an empty string for a missing one (how IPA reports
    /// unknown DMI values).
    pub fn text(&self, offset: usize) -> String {
        self.string(offset).unwrap_or_default().to_string()
    }
}

/// The structures of one machine, with the version from the entry point when known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Smbios {
    /// (major, minor) from `smbios_entry_point`.
    pub version: Option<(u8, u8)>,
    pub structures: Vec<Structure>,
}

impl Smbios {
    /// Reads `<root>/sys/firmware/dmi/tables/{DMI,smbios_entry_point}`. A missing entry point
    /// only leaves the version unknown.
    pub fn read(root: &Path) -> Result<Smbios, SmbiosError> {
        let dir = root.join("sys/firmware/dmi/tables");
        let table_path = dir.join("DMI");
        let table = std::fs::read(&table_path).map_err(|source| SmbiosError::Read {
            path: table_path,
            source,
        })?;
        let version = std::fs::read(dir.join("smbios_entry_point"))
            .ok()
            .and_then(|bytes| parse_entry_point(&bytes));
        Ok(Smbios {
            version,
            structures: parse_table(&table)?,
        })
    }

    /// Every structure of `kind`, in table order.
    pub fn of_kind(&self, kind: u8) -> impl Iterator<Item = &Structure> {
        self.structures.iter().filter(move |s| s.kind == kind)
    }

    pub fn first(&self, kind: u8) -> Option<&Structure> {
        self.of_kind(kind).next()
    }

    pub fn bios(&self) -> Option<BiosInfo> {
        self.first(0).map(|s| BiosInfo {
            vendor: s.text(0x04),
            version: s.text(0x05),
            release_date: s.text(0x08),
        })
    }

    pub fn system(&self) -> Option<SystemInfo> {
        self.first(1).map(|s| SystemInfo {
            manufacturer: s.text(0x04),
            product_name: s.text(0x05),
            version: s.text(0x06),
            serial_number: s.text(0x07),
            uuid: s.data.get(0x08..0x18).and_then(format_uuid),
            sku: s.text(0x19),
            family: s.text(0x1A),
        })
    }

    pub fn baseboard(&self) -> Option<Baseboard> {
        self.first(2).map(|s| Baseboard {
            manufacturer: s.text(0x04),
            product: s.text(0x05),
            version: s.text(0x06),
            serial_number: s.text(0x07),
        })
    }

    /// Populated processor sockets (status bit 6 set), in table order.
    pub fn processors(&self) -> Vec<Processor> {
        self.of_kind(4)
            .filter(|s| s.byte(0x18).is_some_and(|status| status & 0x40 != 0))
            .map(|s| Processor {
                handle: s.handle,
                socket: s.text(0x04),
                manufacturer: s.text(0x07),
                version: s.text(0x10),
                max_speed_mhz: s.word(0x14).filter(|v| *v != 0),
                current_speed_mhz: s.word(0x16).filter(|v| *v != 0),
                core_count: count(s, 0x23, 0x2A),
                core_enabled: count(s, 0x24, 0x2C),
                thread_count: count(s, 0x25, 0x2E),
                serial_number: s.text(0x20),
                asset_tag: s.text(0x21),
                part_number: s.text(0x22),
            })
            .collect()
    }

    /// Memory arrays (type 16).
    pub fn memory_arrays(&self) -> Vec<MemoryArray> {
        self.of_kind(16)
            .map(|s| MemoryArray {
                handle: s.handle,
                usage: s.byte(0x05).unwrap_or(0),
                max_capacity_kb: match s.dword(0x07) {
                    Some(0x8000_0000) => s.qword(0x0F).map(|bytes| bytes / 1024),
                    other => other.map(u64::from),
                },
                devices: s.word(0x0D).unwrap_or(0),
            })
            .collect()
    }

    /// Memory devices (type 17), installed or not.
    pub fn memory_devices(&self) -> Vec<MemoryDevice> {
        self.of_kind(17)
            .map(|s| MemoryDevice {
                handle: s.handle,
                array_handle: s.word(0x04).unwrap_or(0xFFFF),
                size: memory_size(s),
                locator: s.text(0x10),
                bank_locator: s.text(0x11),
                memory_type: s.byte(0x12).unwrap_or(0x02),
                speed_mts: speed(s, 0x15, 0x54),
                manufacturer: s.text(0x17),
                serial_number: s.text(0x18),
                asset_tag: s.text(0x19),
                part_number: s.text(0x1A),
                configured_speed_mts: speed(s, 0x20, 0x58),
            })
            .collect()
    }

    /// Installed system memory in MiB: the sum of the type 17 devices that belong to a
    /// type 16 array used as system memory (usage 3). `None` when the table lists no sized
    /// device of such an array.
    pub fn installed_memory_mib(&self) -> Option<u64> {
        let arrays = self.memory_arrays();
        let system_arrays: Vec<u16> = arrays
            .iter()
            .filter(|a| a.usage == MEMORY_USAGE_SYSTEM)
            .map(|a| a.handle)
            .collect();
        let mut total = None;
        for device in self.memory_devices() {
            // Without any type 16 (old or sloppy firmware), count every device.
            if !arrays.is_empty() && !system_arrays.contains(&device.array_handle) {
                continue;
            }
            if let MemorySize::Bytes(bytes) = device.size {
                *total.get_or_insert(0) += bytes / (1024 * 1024);
            }
        }
        total
    }
}

/// Type 16 "Use" value for system memory.
pub const MEMORY_USAGE_SYSTEM: u8 = 0x03;

/// BIOS information (type 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BiosInfo {
    pub vendor: String,
    pub version: String,
    pub release_date: String,
}

/// System information (type 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemInfo {
    pub manufacturer: String,
    pub product_name: String,
    pub version: String,
    pub serial_number: String,
    /// Lower case, `None` when the firmware reports none (all 0x00 or all 0xFF).
    pub uuid: Option<String>,
    pub sku: String,
    pub family: String,
}

/// Baseboard information (type 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Baseboard {
    pub manufacturer: String,
    pub product: String,
    pub version: String,
    pub serial_number: String,
}

/// A populated processor socket (type 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Processor {
    pub handle: u16,
    pub socket: String,
    pub manufacturer: String,
    /// The processor's own name (`Intel(R) Xeon(R) ...`).
    pub version: String,
    pub max_speed_mhz: Option<u16>,
    pub current_speed_mhz: Option<u16>,
    pub core_count: Option<u16>,
    pub core_enabled: Option<u16>,
    pub thread_count: Option<u16>,
    pub serial_number: String,
    pub asset_tag: String,
    pub part_number: String,
}

/// A physical memory array (type 16).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryArray {
    pub handle: u16,
    /// 3 = system memory, 4 = video, 5 = flash, 6 = NVRAM, 7 = cache.
    pub usage: u8,
    /// `None` when unknown.
    pub max_capacity_kb: Option<u64>,
    pub devices: u16,
}

/// The size a type 17 structure reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemorySize {
    NotInstalled,
    Unknown,
    Bytes(u64),
}

/// A memory device (type 17).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryDevice {
    pub handle: u16,
    pub array_handle: u16,
    pub size: MemorySize,
    pub locator: String,
    pub bank_locator: String,
    /// SMBIOS memory type code (0x1A = DDR4, 0x22 = DDR5, 0x07 = RAM, ...).
    pub memory_type: u8,
    pub speed_mts: Option<u32>,
    pub manufacturer: String,
    pub serial_number: String,
    pub asset_tag: String,
    pub part_number: String,
    pub configured_speed_mts: Option<u32>,
}

/// The name dmidecode gives a type 17 memory type code.
pub fn memory_type_name(code: u8) -> &'static str {
    const NAMES: [&str; 0x24] = [
        "",
        "Other",
        "Unknown",
        "DRAM",
        "EDRAM",
        "VRAM",
        "SRAM",
        "RAM",
        "ROM",
        "Flash",
        "EEPROM",
        "FEPROM",
        "EPROM",
        "CDRAM",
        "3DRAM",
        "SDRAM",
        "SGRAM",
        "RDRAM",
        "DDR",
        "DDR2",
        "DDR2 FB-DIMM",
        "Reserved",
        "Reserved",
        "Reserved",
        "DDR3",
        "FBD2",
        "DDR4",
        "LPDDR",
        "LPDDR2",
        "LPDDR3",
        "LPDDR4",
        "Logical non-volatile device",
        "HBM",
        "HBM2",
        "DDR5",
        "LPDDR5",
    ];
    NAMES.get(code as usize).copied().unwrap_or("Unknown")
}

/// A core/thread count: the byte at `short`, or the word at `long` when the byte says 0xFF
/// (SMBIOS 3.0 for more than 255); `None` for 0 (unknown) or a structure too short.
fn count(s: &Structure, short: usize, long: usize) -> Option<u16> {
    match s.byte(short)? {
        0 => None,
        0xFF => s.word(long).filter(|v| *v != 0).or(Some(0xFF)),
        n => Some(u16::from(n)),
    }
}

/// A speed in MT/s: the word at `short`, or the dword at `long` when the word is 0xFFFF.
fn speed(s: &Structure, short: usize, long: usize) -> Option<u32> {
    match s.word(short)? {
        0 => None,
        0xFFFF => s.dword(long).filter(|v| *v != 0),
        n => Some(u32::from(n)),
    }
}

fn memory_size(s: &Structure) -> MemorySize {
    match s.word(0x0C) {
        None | Some(0xFFFF) => MemorySize::Unknown,
        Some(0) => MemorySize::NotInstalled,
        // Extended Size (SMBIOS 2.7): MiB in bits 30:0.
        Some(0x7FFF) => match s.dword(0x1C) {
            Some(mib) => MemorySize::Bytes(u64::from(mib & 0x7FFF_FFFF) << 20),
            None => MemorySize::Unknown,
        },
        // Bit 15 set: the unit is KiB, else MiB.
        Some(size) if size & 0x8000 != 0 => MemorySize::Bytes(u64::from(size & 0x7FFF) << 10),
        Some(size) => MemorySize::Bytes(u64::from(size) << 20),
    }
}

/// SMBIOS >= 2.6 encodes the first three UUID fields little-endian, as every firmware the
/// kernel's `product_uuid` supports does.
fn format_uuid(bytes: &[u8]) -> Option<String> {
    if bytes.len() != 16 || bytes.iter().all(|b| *b == 0) || bytes.iter().all(|b| *b == 0xFF) {
        return None;
    }
    let order = [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15];
    let mut text = String::with_capacity(36);
    for (i, index) in order.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            text.push('-');
        }
        text.push_str(&format!("{:02x}", bytes[*index]));
    }
    Some(text)
}

/// (major, minor) from a 2.x (`_SM_`) or 3.x (`_SM3_`) entry point.
pub fn parse_entry_point(bytes: &[u8]) -> Option<(u8, u8)> {
    if bytes.starts_with(b"_SM3_") {
        Some((*bytes.get(7)?, *bytes.get(8)?))
    } else if bytes.starts_with(b"_SM_") {
        Some((*bytes.get(6)?, *bytes.get(7)?))
    } else {
        None
    }
}

/// Splits the structure table. Stops at the end-of-table structure (type 127) or the end of
/// the bytes; a structure that does not fit is an error naming its offset.
pub fn parse_table(table: &[u8]) -> Result<Vec<Structure>, SmbiosError> {
    let mut structures = Vec::new();
    let mut offset = 0;
    while offset + 4 <= table.len() {
        let malformed = |reason: String| SmbiosError::Malformed { offset, reason };
        let kind = table[offset];
        let length = table[offset + 1] as usize;
        let handle = u16::from_le_bytes([table[offset + 2], table[offset + 3]]);
        if length < 4 {
            return Err(malformed(format!(
                "type {kind} declares a length of {length} (< 4)"
            )));
        }
        let formatted_end = offset + length;
        if formatted_end > table.len() {
            return Err(malformed(format!(
                "type {kind} needs {length} bytes, only {} remain",
                table.len() - offset
            )));
        }
        // The string set ends with two NULs; a structure without strings has just those.
        let rest = &table[formatted_end..];
        let Some(end) = rest.windows(2).position(|w| w == [0, 0]) else {
            return Err(malformed(format!(
                "type {kind}: the string set is not terminated"
            )));
        };
        let strings = rest[..end]
            .split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect();
        structures.push(Structure {
            kind,
            handle,
            data: table[offset..formatted_end].to_vec(),
            strings,
        });
        offset = formatted_end + end + 2;
        if kind == 127 {
            break;
        }
    }
    Ok(structures)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A structure with the given formatted area (after the header) and strings.
    pub(crate) fn structure(kind: u8, handle: u16, body: &[u8], strings: &[&str]) -> Vec<u8> {
        let mut out = vec![kind, (body.len() + 4) as u8];
        out.extend_from_slice(&handle.to_le_bytes());
        out.extend_from_slice(body);
        for s in strings {
            out.extend_from_slice(s.as_bytes());
            out.push(0);
        }
        if strings.is_empty() {
            out.push(0);
        }
        out.push(0);
        out
    }

    #[test]
    fn strings_are_one_based_and_zero_means_none() {
        let bytes = structure(0, 0, &[1, 2, 0, 0, 3], &["Vendor ", "1.2", "01/02/2025"]);
        let table = parse_table(&bytes).unwrap();
        let bios = Smbios {
            version: None,
            structures: table,
        }
        .bios()
        .unwrap();
        assert_eq!(bios.vendor, "Vendor");
        assert_eq!(bios.version, "1.2");
        assert_eq!(bios.release_date, "01/02/2025");
        let none = parse_table(&structure(0, 0, &[0, 9, 0, 0, 0], &[])).unwrap();
        assert_eq!(none[0].string(4), None);
        assert_eq!(none[0].string(5), None, "string 9 of an empty set");
    }

    #[test]
    fn memory_sizes_in_every_encoding() {
        let device = |size: u16, extended: u32| {
            let mut body = vec![0u8; 0x1C - 4 + 4];
            body[0x0C - 4..0x0E - 4].copy_from_slice(&size.to_le_bytes());
            body[0x1C - 4..0x20 - 4].copy_from_slice(&extended.to_le_bytes());
            parse_table(&structure(17, 1, &body, &[]))
                .unwrap()
                .remove(0)
        };
        assert_eq!(memory_size(&device(0, 0)), MemorySize::NotInstalled);
        assert_eq!(memory_size(&device(0xFFFF, 0)), MemorySize::Unknown);
        assert_eq!(
            memory_size(&device(16384, 0)),
            MemorySize::Bytes(16 << 30),
            "MiB"
        );
        assert_eq!(
            memory_size(&device(0x8000 | 512, 0)),
            MemorySize::Bytes(512 << 10),
            "KiB"
        );
        assert_eq!(
            memory_size(&device(0x7FFF, 65536)),
            MemorySize::Bytes(64 << 30),
            "extended"
        );
    }

    #[test]
    fn broken_tables_are_errors_with_the_offset() {
        let mut bytes = structure(0, 0, &[1, 0, 0, 0, 0], &["x"]);
        let second = bytes.len();
        bytes.extend_from_slice(&[1, 30, 0, 0, 1, 2]);
        let error = parse_table(&bytes).unwrap_err().to_string();
        assert!(error.contains(&format!("byte {second}")), "{error}");
        assert!(error.contains("needs 30 bytes"), "{error}");
        let unterminated = [0u8, 4, 0, 0, b'a'];
        assert!(parse_table(&unterminated)
            .unwrap_err()
            .to_string()
            .contains("not terminated"));
        let short = [0u8, 2, 0, 0, 0, 0];
        assert!(parse_table(&short)
            .unwrap_err()
            .to_string()
            .contains("(< 4)"));
    }

    #[test]
    fn uuid_byte_order_and_absent_values() {
        let bytes: Vec<u8> = (0u8..16).collect();
        assert_eq!(
            format_uuid(&bytes).unwrap(),
            "03020100-0504-0706-0809-0a0b0c0d0e0f"
        );
        assert_eq!(format_uuid(&[0; 16]), None);
        assert_eq!(format_uuid(&[0xFF; 16]), None);
    }

    #[test]
    fn entry_point_versions() {
        let mut v3 = b"_SM3_".to_vec();
        v3.extend_from_slice(&[0, 0x18, 3, 2, 0]);
        assert_eq!(parse_entry_point(&v3), Some((3, 2)));
        let mut v2 = b"_SM_".to_vec();
        v2.extend_from_slice(&[0, 0x1F, 2, 8]);
        assert_eq!(parse_entry_point(&v2), Some((2, 8)));
        assert_eq!(parse_entry_point(b"junk"), None);
    }
}
