//! Reading a volume's identity without udev or blkid: the ISO 9660 primary volume
//! descriptor (label and publisher id, what udev calls `ID_FS_LABEL` and
//! `ID_FS_PUBLISHER_ID`) and the FAT boot sector's volume label.

/// Where the primary volume descriptor starts: sector 16 of 2048 bytes.
pub const PVD_OFFSET: u64 = 16 * 2048;
/// Bytes of a volume descriptor.
pub const PVD_LEN: usize = 2048;
/// Bytes of a FAT boot sector.
pub const BOOT_SECTOR_LEN: usize = 512;

/// Label and publisher of an ISO 9660 volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsoIdentity {
    /// Volume identifier (offset 40, 32 bytes), trailing spaces removed.
    pub label: String,
    /// Publisher identifier (offset 318, 128 bytes), trailing spaces removed.
    pub publisher: String,
}

fn field(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .trim_end_matches([' ', '\0'])
        .to_string()
}

/// Parses a primary volume descriptor (type 1, `CD001`, version 1); anything else is not an
/// ISO 9660 volume.
pub fn parse_pvd(descriptor: &[u8]) -> Option<IsoIdentity> {
    if descriptor.len() < PVD_LEN || descriptor[0] != 1 || &descriptor[1..6] != b"CD001" {
        return None;
    }
    Some(IsoIdentity {
        label: field(&descriptor[40..72]),
        publisher: field(&descriptor[318..446]),
    })
}

/// The volume label of a FAT12/16/32 boot sector (`mkfs.vfat -n`), if it has one.
pub fn parse_fat_label(sector: &[u8]) -> Option<String> {
    if sector.len() < BOOT_SECTOR_LEN || sector[510..512] != [0x55, 0xaa] {
        return None;
    }
    let bytes_per_sector = u16::from_le_bytes([sector[11], sector[12]]);
    if !matches!(bytes_per_sector, 512 | 1024 | 2048 | 4096) || sector[13] == 0 {
        return None;
    }
    let fat16_size = u16::from_le_bytes([sector[22], sector[23]]);
    // FAT32 has no 16-bit FAT size; its extended BPB comes later.
    let (signature, label) = if fat16_size == 0 { (66, 71) } else { (38, 43) };
    if sector[signature] != 0x29 {
        return None;
    }
    let label = field(&sector[label..label + 11]);
    (!label.is_empty() && label != "NO NAME").then_some(label)
}
