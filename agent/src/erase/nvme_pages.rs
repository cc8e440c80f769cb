//! The NVMe data structures the erase reads: Identify Controller, Identify Namespace, the
//! active namespace list and the Sanitize Status log page (NVMe Base Specification 2.0,
//! figures 275 and 287; NVM Command Set Specification figure 97). Pure parsing.

use std::time::Duration;

use super::nvme::{NvmeError, SanitizeAction, IDENTIFY_LEN};

fn u16_at(page: &[u8], offset: usize) -> u16 {
    u16::from_le_bytes([page[offset], page[offset + 1]])
}

fn u32_at(page: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes([
        page[offset],
        page[offset + 1],
        page[offset + 2],
        page[offset + 3],
    ])
}

fn u64_at(page: &[u8], offset: usize) -> u64 {
    u64::from(u32_at(page, offset)) | (u64::from(u32_at(page, offset + 4)) << 32)
}

/// An ASCII field, space padded.
fn ascii(page: &[u8], offset: usize, len: usize) -> String {
    String::from_utf8_lossy(&page[offset..offset + len])
        .trim_matches(|c: char| c == ' ' || c == '\0')
        .to_string()
}

fn check_len(page: &[u8], want: usize, what: &str) -> Result<(), NvmeError> {
    if page.len() < want {
        return Err(NvmeError::Parse {
            what: what.to_string(),
            message: format!("{} bytes, expected {want}", page.len()),
        });
    }
    Ok(())
}

/// What Sanitize can do (SANICAP, bytes 328-331).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct SanitizeCaps {
    /// Bit 0: Crypto Erase.
    pub crypto_erase: bool,
    /// Bit 1: Block Erase.
    pub block_erase: bool,
    /// Bit 2: Overwrite.
    pub overwrite: bool,
    /// Bit 29: No-Deallocate Inhibited.
    pub no_deallocate_inhibited: bool,
}

impl SanitizeCaps {
    pub fn from_sanicap(sanicap: u32) -> Self {
        SanitizeCaps {
            crypto_erase: sanicap & 1 != 0,
            block_erase: sanicap & 2 != 0,
            overwrite: sanicap & 4 != 0,
            no_deallocate_inhibited: sanicap & (1 << 29) != 0,
        }
    }

    pub fn any(&self) -> bool {
        self.crypto_erase || self.block_erase || self.overwrite
    }
}

/// The Identify Controller fields the erase needs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ControllerInfo {
    /// VID (bytes 0-1).
    pub vendor_id: u16,
    /// SN (4-23), MN (24-63), FR (64-71).
    pub serial: String,
    pub model: String,
    pub firmware: String,
    /// OACS (256-257).
    pub oacs: u16,
    /// SANICAP (328-331).
    pub sanicap: u32,
    /// NN (516-519).
    pub namespaces: u32,
    /// FNA (524).
    pub fna: u8,
}

impl ControllerInfo {
    pub fn parse(page: &[u8]) -> Result<Self, NvmeError> {
        check_len(page, IDENTIFY_LEN, "Identify Controller data")?;
        Ok(ControllerInfo {
            vendor_id: u16_at(page, 0),
            serial: ascii(page, 4, 20),
            model: ascii(page, 24, 40),
            firmware: ascii(page, 64, 8),
            oacs: u16_at(page, 256),
            sanicap: u32_at(page, 328),
            namespaces: u32_at(page, 516),
            fna: page[524],
        })
    }

    /// OACS bit 1.
    pub fn format_supported(&self) -> bool {
        self.oacs & 0x2 != 0
    }

    /// FNA bit 0: a format of one namespace formats every namespace.
    pub fn format_applies_to_all(&self) -> bool {
        self.fna & 0x1 != 0
    }

    /// FNA bit 1: a secure erase during format erases every namespace.
    pub fn secure_erase_applies_to_all(&self) -> bool {
        self.fna & 0x2 != 0
    }

    /// FNA bit 2.
    pub fn crypto_erase_supported(&self) -> bool {
        self.fna & 0x4 != 0
    }

    pub fn sanitize(&self) -> SanitizeCaps {
        SanitizeCaps::from_sanicap(self.sanicap)
    }
}

/// One LBA Format entry (LBAF0.. at byte 128, 4 bytes each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LbaFormat {
    /// MS: metadata bytes per block.
    pub metadata_size: u16,
    /// LBADS: log2 of the block size.
    pub lba_data_size_log2: u8,
    /// RP: relative performance (0 best).
    pub relative_performance: u8,
}

/// The Identify Namespace fields the erase needs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NamespaceInfo {
    /// NSZE (0-7), in blocks.
    pub size_blocks: u64,
    /// FLBAS bits 3:0 and 6:5: the format in use.
    pub lba_format_index: u8,
    /// FLBAS bit 4: metadata at the end of each block (MSET).
    pub metadata_at_end: bool,
    /// DPS bits 2:0: protection information type (0 none).
    pub pi_type: u8,
    /// DPS bit 3: protection information first in the metadata (PIL).
    pub pi_first: bool,
    /// DLFEAT (33).
    pub dlfeat: u8,
    /// LBAF0..LBAF<NLBAF>.
    pub lba_formats: Vec<LbaFormat>,
}

impl NamespaceInfo {
    pub fn parse(page: &[u8]) -> Result<Self, NvmeError> {
        check_len(page, IDENTIFY_LEN, "Identify Namespace data")?;
        let flbas = page[26];
        let nlbaf = usize::from(page[25]) + 1;
        let lba_formats = (0..nlbaf.min(64))
            .map(|i| {
                let raw = u32_at(page, 128 + 4 * i);
                LbaFormat {
                    metadata_size: (raw & 0xFFFF) as u16,
                    lba_data_size_log2: ((raw >> 16) & 0xFF) as u8,
                    relative_performance: ((raw >> 24) & 0x3) as u8,
                }
            })
            .collect::<Vec<_>>();
        let info = NamespaceInfo {
            size_blocks: u64_at(page, 0),
            lba_format_index: (flbas & 0xF) | (((flbas >> 5) & 0x3) << 4),
            metadata_at_end: flbas & 0x10 != 0,
            pi_type: page[29] & 0x7,
            pi_first: page[29] & 0x8 != 0,
            dlfeat: page[33],
            lba_formats,
        };
        if info.current_format().is_none() {
            return Err(NvmeError::Parse {
                what: "Identify Namespace data".to_string(),
                message: format!(
                    "format index {} is beyond the {} formats listed",
                    info.lba_format_index, nlbaf
                ),
            });
        }
        Ok(info)
    }

    pub fn current_format(&self) -> Option<LbaFormat> {
        self.lba_formats
            .get(usize::from(self.lba_format_index))
            .copied()
    }

    /// Bytes per logical block of the current format.
    pub fn block_size(&self) -> u64 {
        self.current_format()
            .map(|f| 1u64 << f.lba_data_size_log2.min(63))
            .unwrap_or(512)
    }

    /// DLFEAT bits 2:0 = 001b: deallocated blocks read back as zeroes.
    pub fn deallocated_reads_zero(&self) -> bool {
        self.dlfeat & 0x7 == 0x1
    }
}

/// The active namespace IDs of an Identify CNS 02h page (a zero-terminated list).
pub fn parse_namespace_list(page: &[u8]) -> Vec<u32> {
    page.chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .take_while(|&id| id != 0)
        .collect()
}

/// SSTAT bits 2:0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SanitizeState {
    /// 0: never sanitized.
    Never,
    /// 1: the most recent sanitize completed successfully.
    Completed,
    /// 2: in progress.
    InProgress,
    /// 3: the most recent sanitize failed.
    Failed,
    /// 4: completed successfully with deallocation inhibited (No-Deallocate).
    CompletedNoDeallocate,
    /// Reserved values.
    Other(u8),
}

/// The Sanitize Status log page (0x81).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SanitizeLog {
    /// SPROG: progress of the running sanitize, in 1/65536.
    pub progress: u16,
    pub state: SanitizeState,
    /// SSTAT bits 7:3.
    pub overwrite_passes_done: u8,
    /// SSTAT bit 8: no user data written since the last sanitize or manufacture.
    pub global_data_erased: bool,
    /// SCDW10 of the sanitize this log reports on.
    pub cdw10: u32,
    /// ETO, ETBE, ETCE (seconds; 0xFFFFFFFF none, 0 "done with the command").
    pub estimate_overwrite: u32,
    pub estimate_block_erase: u32,
    pub estimate_crypto_erase: u32,
}

/// "No time period is reported" in the estimate fields.
pub const NO_ESTIMATE: u32 = 0xFFFF_FFFF;

impl SanitizeLog {
    pub fn parse(page: &[u8]) -> Result<Self, NvmeError> {
        check_len(page, 32, "Sanitize Status log")?;
        let sstat = u16_at(page, 2);
        let state = match (sstat & 0x7) as u8 {
            0 => SanitizeState::Never,
            1 => SanitizeState::Completed,
            2 => SanitizeState::InProgress,
            3 => SanitizeState::Failed,
            4 => SanitizeState::CompletedNoDeallocate,
            other => SanitizeState::Other(other),
        };
        Ok(SanitizeLog {
            progress: u16_at(page, 0),
            state,
            overwrite_passes_done: ((sstat >> 3) & 0x1F) as u8,
            global_data_erased: sstat & 0x100 != 0,
            cdw10: u32_at(page, 4),
            estimate_overwrite: u32_at(page, 8),
            estimate_block_erase: u32_at(page, 12),
            estimate_crypto_erase: u32_at(page, 16),
        })
    }

    /// Percent done of the running sanitize.
    pub fn percent(&self) -> f64 {
        f64::from(self.progress) * 100.0 / 65536.0
    }

    /// The controller's estimate for `action`, when it gives one.
    pub fn estimate(&self, action: SanitizeAction) -> Option<Duration> {
        let raw = match action {
            SanitizeAction::CryptoErase => self.estimate_crypto_erase,
            SanitizeAction::BlockErase => self.estimate_block_erase,
            SanitizeAction::Overwrite => self.estimate_overwrite,
            SanitizeAction::ExitFailureMode => NO_ESTIMATE,
        };
        (raw != NO_ESTIMATE).then(|| Duration::from_secs(u64::from(raw)))
    }
}
