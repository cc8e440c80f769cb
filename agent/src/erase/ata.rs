//! ATA commands through SCSI generic (`SG_IO`) with the ATA PASS-THROUGH (16) CDB of SAT,
//! with no hdparm: CDB encoding, sense decoding, IDENTIFY DEVICE parsing (security status,
//! erase time estimates) and the security command payloads (spec §8.5).
//!
//! Everything here is pure except [`SgIoAta`], the real [`AtaPassThrough`]. The security
//! erase procedure is in `ata_erase.rs`.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::time::Duration;

pub const CMD_IDENTIFY_DEVICE: u8 = 0xEC;
pub const CMD_SECURITY_SET_PASSWORD: u8 = 0xF1;
pub const CMD_SECURITY_UNLOCK: u8 = 0xF2;
pub const CMD_SECURITY_ERASE_PREPARE: u8 = 0xF3;
pub const CMD_SECURITY_ERASE_UNIT: u8 = 0xF4;
pub const CMD_SECURITY_DISABLE_PASSWORD: u8 = 0xF6;

/// The ATA PASS-THROUGH (16) operation code.
const ATA_16: u8 = 0x85;

/// SAT protocol field values.
const PROTOCOL_NON_DATA: u8 = 3;
const PROTOCOL_PIO_IN: u8 = 4;
const PROTOCOL_PIO_OUT: u8 = 5;

/// ATA status bits.
const STATUS_ERR: u8 = 0x01;
const STATUS_DF: u8 = 0x20;
/// ATA error bit: command aborted.
pub const ERROR_ABRT: u8 = 0x04;

/// Data moved by a command: 512-byte blocks in or out, or nothing.
#[derive(Debug)]
pub enum Transfer<'a> {
    None,
    In(&'a mut [u8]),
    Out(&'a [u8]),
}

/// A 28-bit ATA command (the security set and IDENTIFY need no more).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AtaCommand {
    pub command: u8,
    pub features: u8,
    pub count: u8,
    pub lba: u32,
    pub device: u8,
}

impl AtaCommand {
    pub fn new(command: u8) -> Self {
        AtaCommand {
            command,
            ..AtaCommand::default()
        }
    }
}

/// The ATA PASS-THROUGH (16) CDB for `cmd` moving `blocks` 512-byte blocks in `direction`.
/// CK_COND is set so the device's status registers come back in the sense data.
pub fn cdb16(cmd: &AtaCommand, direction: Direction) -> [u8; 16] {
    let (protocol, flags) = match direction {
        // T_LENGTH 0: no data.
        Direction::None => (PROTOCOL_NON_DATA, 0x00),
        // T_DIR 1 (from device), BYT_BLOK 1, T_LENGTH 2 (in the count field).
        Direction::In => (PROTOCOL_PIO_IN, 0x0E),
        // T_DIR 0, BYT_BLOK 1, T_LENGTH 2.
        Direction::Out => (PROTOCOL_PIO_OUT, 0x06),
    };
    let mut cdb = [0u8; 16];
    cdb[0] = ATA_16;
    cdb[1] = protocol << 1;
    cdb[2] = 0x20 | flags;
    cdb[4] = cmd.features;
    cdb[6] = cmd.count;
    cdb[8] = (cmd.lba & 0xFF) as u8;
    cdb[10] = ((cmd.lba >> 8) & 0xFF) as u8;
    cdb[12] = ((cmd.lba >> 16) & 0xFF) as u8;
    cdb[13] = cmd.device | (((cmd.lba >> 24) & 0x0F) as u8);
    cdb[14] = cmd.command;
    cdb
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    None,
    In,
    Out,
}

impl Transfer<'_> {
    pub fn direction(&self) -> Direction {
        match self {
            Transfer::None => Direction::None,
            Transfer::In(_) => Direction::In,
            Transfer::Out(_) => Direction::Out,
        }
    }
}

/// The ATA registers a command ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AtaRegisters {
    pub status: u8,
    pub error: u8,
    pub count: u8,
}

/// What the sense data says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sense {
    pub key: u8,
    pub asc: u8,
    pub ascq: u8,
    /// The ATA Status Return descriptor (or the fixed-format equivalent), when present.
    pub ata: Option<AtaRegisters>,
}

/// Decodes descriptor-format (0x72/0x73) or fixed-format (0x70/0x71) sense data.
pub fn parse_sense(sense: &[u8]) -> Option<Sense> {
    let code = *sense.first()? & 0x7F;
    match code {
        0x72 | 0x73 => {
            let key = sense.get(1)? & 0x0F;
            let asc = *sense.get(2)?;
            let ascq = *sense.get(3)?;
            let add_len = usize::from(*sense.get(7)?);
            let descriptors = sense.get(8..(8 + add_len).min(sense.len()))?;
            let mut ata = None;
            let mut rest = descriptors;
            while rest.len() >= 2 {
                let (kind, len) = (rest[0], usize::from(rest[1]) + 2);
                if kind == 0x09 && rest.len() >= 14 {
                    ata = Some(AtaRegisters {
                        error: rest[3],
                        count: rest[5],
                        status: rest[13],
                    });
                }
                rest = rest.get(len..).unwrap_or(&[]);
            }
            Some(Sense {
                key,
                asc,
                ascq,
                ata,
            })
        }
        0x70 | 0x71 => {
            let key = sense.get(2)? & 0x0F;
            let asc = *sense.get(12).unwrap_or(&0);
            let ascq = *sense.get(13).unwrap_or(&0);
            // SAT: with "ATA pass through information available" (00h/1Dh) the INFORMATION
            // field holds ERROR, STATUS, DEVICE, COUNT(7:0).
            let ata = (asc == 0x00 && ascq == 0x1D && sense.len() >= 7).then(|| AtaRegisters {
                error: sense[3],
                status: sense[4],
                count: sense[6],
            });
            Some(Sense {
                key,
                asc,
                ascq,
                ata,
            })
        }
        _ => None,
    }
}

/// Why an ATA command did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum AtaError {
    /// The device or its driver does not pass ATA commands through (not an ATA device,
    /// or a bridge without SAT support).
    #[error("{what}: ATA pass-through is not available: {detail}")]
    Unsupported { what: String, detail: String },
    /// The drive rejected the command (ATA status ERR; ABRT in the error register).
    #[error("{what}: the drive aborted the command (status {status:#04x}, error {error:#04x})")]
    Aborted { what: String, status: u8, error: u8 },
    #[error("{what}: {detail}")]
    Failed { what: String, detail: String },
}

impl AtaError {
    pub fn is_unsupported(&self) -> bool {
        matches!(self, AtaError::Unsupported { .. })
    }
}

/// Sends ATA commands to one drive. The real one is [`SgIoAta`]; tests use `FakeAtaDrive`
/// (erase/fake.rs).
pub trait AtaPassThrough: Send {
    fn execute(
        &mut self,
        cmd: &AtaCommand,
        data: Transfer<'_>,
        timeout: Duration,
    ) -> Result<AtaRegisters, AtaError>;
}

/// Judges a finished SG_IO request: SCSI status, host and driver status, sense data.
pub fn judge(
    what: &str,
    scsi_status: u8,
    host_status: u16,
    driver_status: u16,
    sense: &[u8],
) -> Result<AtaRegisters, AtaError> {
    const DRIVER_SENSE: u16 = 0x08;
    const CHECK_CONDITION: u8 = 0x02;
    if host_status != 0 {
        let meaning = match host_status {
            0x01 => "no connect",
            0x03 => "timed out",
            0x07 => "error",
            _ => "host adapter error",
        };
        return Err(AtaError::Failed {
            what: what.to_string(),
            detail: format!("host status {host_status:#x} ({meaning})"),
        });
    }
    if driver_status & !DRIVER_SENSE != 0 {
        return Err(AtaError::Failed {
            what: what.to_string(),
            detail: format!("driver status {driver_status:#x}"),
        });
    }
    let parsed = parse_sense(sense);
    if let Some(regs) = parsed.and_then(|s| s.ata) {
        if regs.status & (STATUS_ERR | STATUS_DF) != 0 {
            return Err(AtaError::Aborted {
                what: what.to_string(),
                status: regs.status,
                error: regs.error,
            });
        }
        return Ok(regs);
    }
    match (scsi_status, parsed) {
        (0, _) => Ok(AtaRegisters::default()),
        (CHECK_CONDITION, Some(s)) if s.key == 0x05 => Err(AtaError::Unsupported {
            what: what.to_string(),
            detail: format!(
                "ILLEGAL REQUEST (additional sense {:02x}h/{:02x}h)",
                s.asc, s.ascq
            ),
        }),
        (CHECK_CONDITION, Some(s)) if s.key == 0x0B => Err(AtaError::Aborted {
            what: what.to_string(),
            status: STATUS_ERR,
            error: ERROR_ABRT,
        }),
        (_, Some(s)) => Err(AtaError::Failed {
            what: what.to_string(),
            detail: format!(
                "SCSI status {scsi_status:#04x}, sense key {:#x}, additional sense {:02x}h/{:02x}h",
                s.key, s.asc, s.ascq
            ),
        }),
        (_, None) => Err(AtaError::Failed {
            what: what.to_string(),
            detail: format!("SCSI status {scsi_status:#04x} without sense data"),
        }),
    }
}

/// `struct sg_io_hdr` of <scsi/sg.h>.
#[repr(C)]
struct SgIoHdr {
    interface_id: libc::c_int,
    dxfer_direction: libc::c_int,
    cmd_len: u8,
    mx_sb_len: u8,
    iovec_count: u16,
    dxfer_len: u32,
    dxferp: *mut libc::c_void,
    cmdp: *mut u8,
    sbp: *mut u8,
    timeout: u32,
    flags: u32,
    pack_id: libc::c_int,
    usr_ptr: *mut libc::c_void,
    status: u8,
    masked_status: u8,
    msg_status: u8,
    sb_len_wr: u8,
    host_status: u16,
    driver_status: u16,
    resid: libc::c_int,
    duration: u32,
    info: u32,
}

const SG_DXFER_NONE: libc::c_int = -1;
const SG_DXFER_TO_DEV: libc::c_int = -2;
const SG_DXFER_FROM_DEV: libc::c_int = -3;

// SG_IO = 0x2285 (a plain number in <scsi/sg.h>, not built with _IOWR).
nix::ioctl_readwrite_bad!(sg_io, 0x2285, SgIoHdr);

/// ATA pass-through on an open SCSI block device (`/dev/sda`).
#[derive(Debug)]
pub struct SgIoAta {
    file: File,
    name: String,
}

impl SgIoAta {
    pub fn new(file: File, name: &str) -> Self {
        SgIoAta {
            file,
            name: name.to_string(),
        }
    }
}

impl AtaPassThrough for SgIoAta {
    fn execute(
        &mut self,
        cmd: &AtaCommand,
        data: Transfer<'_>,
        timeout: Duration,
    ) -> Result<AtaRegisters, AtaError> {
        let what = format!("ATA command {:#04x} on /dev/{}", cmd.command, self.name);
        let mut cdb = cdb16(cmd, data.direction());
        let mut sense = [0u8; 32];
        let (direction, ptr, len) = match data {
            Transfer::None => (SG_DXFER_NONE, std::ptr::null_mut(), 0),
            Transfer::In(buf) => (
                SG_DXFER_FROM_DEV,
                buf.as_mut_ptr().cast::<libc::c_void>(),
                buf.len(),
            ),
            // The kernel only reads a TO_DEV buffer; the cast to *mut is what the struct needs.
            Transfer::Out(buf) => (
                SG_DXFER_TO_DEV,
                buf.as_ptr().cast_mut().cast::<libc::c_void>(),
                buf.len(),
            ),
        };
        let mut hdr = SgIoHdr {
            interface_id: libc::c_int::from(b'S'),
            dxfer_direction: direction,
            cmd_len: cdb.len() as u8,
            mx_sb_len: sense.len() as u8,
            iovec_count: 0,
            dxfer_len: len as u32,
            dxferp: ptr,
            cmdp: cdb.as_mut_ptr(),
            sbp: sense.as_mut_ptr(),
            timeout: timeout.as_millis().min(u128::from(u32::MAX - 1)) as u32,
            flags: 0,
            pack_id: 0,
            usr_ptr: std::ptr::null_mut(),
            status: 0,
            masked_status: 0,
            msg_status: 0,
            sb_len_wr: 0,
            host_status: 0,
            driver_status: 0,
            resid: 0,
            duration: 0,
            info: 0,
        };
        // SAFETY: `hdr` points at `cdb` (16 bytes), `sense` (mx_sb_len bytes) and the data
        // buffer (dxfer_len bytes, borrowed for the whole call, written only for FROM_DEV,
        // where it is borrowed mutably); all outlive the synchronous ioctl.
        let rc = unsafe { sg_io(self.file.as_raw_fd(), &mut hdr) };
        if let Err(errno) = rc {
            return Err(match errno {
                nix::errno::Errno::ENOTTY | nix::errno::Errno::EINVAL => AtaError::Unsupported {
                    what,
                    detail: format!("SG_IO: {errno}"),
                },
                other => AtaError::Failed {
                    what,
                    detail: format!("SG_IO: {other}"),
                },
            });
        }
        let written = usize::from(hdr.sb_len_wr).min(sense.len());
        judge(
            &what,
            hdr.status,
            hdr.host_status,
            hdr.driver_status,
            &sense[..written],
        )
    }
}

/// A drive's erase time estimate (IDENTIFY words 89 and 90).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EraseTime {
    NotReported,
    Minutes(u32),
    /// "More than" this many minutes (the field's largest value).
    MoreThan(u32),
}

impl EraseTime {
    /// Decodes word 89/90: bit 15 set is the extended format (bits 14:0 × 2 minutes, 32767
    /// meaning more than 65532), else bits 7:0 × 2 minutes (255 meaning more than 508).
    pub fn from_word(word: u16) -> Self {
        let (value, max) = if word & 0x8000 != 0 {
            (u32::from(word & 0x7FFF), 0x7FFF)
        } else {
            (u32::from(word & 0xFF), 0xFF)
        };
        match value {
            0 => EraseTime::NotReported,
            v if v == max => EraseTime::MoreThan(2 * (max - 1)),
            v => EraseTime::Minutes(2 * v),
        }
    }

    /// How long to let SECURITY ERASE UNIT run: the drive's estimate × 1.5 plus 15
    /// minutes, never less than a pessimistic 10 MB/s over the whole drive when the
    /// estimate is missing or open-ended.
    pub fn timeout(self, size_bytes: u64) -> Duration {
        let by_size = Duration::from_secs(size_bytes / 10_000_000 + 900);
        match self {
            EraseTime::Minutes(m) => Duration::from_secs(u64::from(m) * 90 + 900),
            EraseTime::MoreThan(m) => by_size.max(Duration::from_secs(u64::from(m) * 90 + 900)),
            EraseTime::NotReported => by_size,
        }
    }
}

/// IDENTIFY word 128 and the words around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SecurityState {
    pub supported: bool,
    pub enabled: bool,
    pub locked: bool,
    pub frozen: bool,
    pub count_expired: bool,
    pub enhanced_erase_supported: bool,
    /// Security level maximum (else high).
    pub level_maximum: bool,
    pub normal_erase_time: EraseTime,
    pub enhanced_erase_time: EraseTime,
}

/// The IDENTIFY DEVICE fields the erase needs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AtaIdentify {
    pub model: String,
    pub serial: String,
    pub firmware: String,
    /// User addressable sectors (words 100-103 with 48-bit addressing, else 60-61).
    pub sectors: u64,
    pub security: SecurityState,
    /// DSM TRIM supported (word 169 bit 0) with deterministic zeroes after TRIM (word 69
    /// bits 14 and 5).
    pub trim_reads_zero: bool,
}

fn word(data: &[u8], index: usize) -> u16 {
    u16::from_le_bytes([data[2 * index], data[2 * index + 1]])
}

/// An ATA string: two characters per word, the first in the high byte.
fn ata_string(data: &[u8], first: usize, last: usize) -> String {
    let mut bytes = Vec::with_capacity(2 * (last - first + 1));
    for i in first..=last {
        let w = word(data, i);
        bytes.push((w >> 8) as u8);
        bytes.push((w & 0xFF) as u8);
    }
    String::from_utf8_lossy(&bytes)
        .trim_matches(|c: char| c == ' ' || c == '\0')
        .to_string()
}

impl AtaIdentify {
    pub fn parse(data: &[u8]) -> Result<Self, AtaError> {
        let bad = |detail: String| AtaError::Failed {
            what: "IDENTIFY DEVICE data".to_string(),
            detail,
        };
        if data.len() < 512 {
            return Err(bad(format!("{} bytes, expected 512", data.len())));
        }
        let integrity = word(data, 255);
        if integrity & 0xFF == 0xA5 {
            let sum = data[..512].iter().fold(0u8, |a, &b| a.wrapping_add(b));
            if sum != 0 {
                return Err(bad(format!("checksum mismatch (sum {sum:#04x})")));
            }
        }
        if word(data, 0) & 0x8000 != 0 {
            return Err(bad("word 0 says this is not an ATA device".to_string()));
        }
        let w128 = word(data, 128);
        let lba48 = word(data, 83) & (1 << 10) != 0;
        let sectors = if lba48 {
            (0..4).fold(0u64, |acc, i| {
                acc | (u64::from(word(data, 100 + i)) << (16 * i))
            })
        } else {
            u64::from(word(data, 60)) | (u64::from(word(data, 61)) << 16)
        };
        let w69 = word(data, 69);
        Ok(AtaIdentify {
            model: ata_string(data, 27, 46),
            serial: ata_string(data, 10, 19),
            firmware: ata_string(data, 23, 26),
            sectors,
            security: SecurityState {
                supported: w128 & 0x1 != 0 || word(data, 82) & 0x2 != 0,
                enabled: w128 & 0x2 != 0,
                locked: w128 & 0x4 != 0,
                frozen: w128 & 0x8 != 0,
                count_expired: w128 & 0x10 != 0,
                enhanced_erase_supported: w128 & 0x20 != 0,
                level_maximum: w128 & 0x100 != 0,
                normal_erase_time: EraseTime::from_word(word(data, 89)),
                enhanced_erase_time: EraseTime::from_word(word(data, 90)),
            },
            trim_reads_zero: word(data, 169) & 0x1 != 0
                && w69 & (1 << 14) != 0
                && w69 & (1 << 5) != 0,
        })
    }
}

/// The 32-byte password rivet sets and uses: all zeroes, which is what `hdparm` sends for
/// the password `NULL` (IPA's), so a drive left locked by either can be unlocked by both.
pub const PASSWORD: [u8; 32] = [0; 32];

/// The 512-byte payload of SET PASSWORD, UNLOCK, ERASE UNIT and DISABLE PASSWORD: word 0
/// (bit 0 identifier: user 0 / master 1; bit 1 enhanced erase for ERASE UNIT), words 1-16
/// the password.
pub fn security_payload(enhanced: bool, password: &[u8; 32]) -> [u8; 512] {
    let mut block = [0u8; 512];
    // User password (bit 0 = 0); high security level (SET PASSWORD bit 8 = 0).
    block[0] = if enhanced { 0x02 } else { 0x00 };
    block[2..34].copy_from_slice(password);
    block
}

#[cfg(test)]
#[path = "tests/ata.rs"]
mod tests;
