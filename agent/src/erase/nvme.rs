//! NVMe admin commands through the kernel's passthrough ioctl (`NVME_IOCTL_ADMIN_CMD`), with
//! no nvme-cli: command encoding, status decoding and the parsing of the Identify pages and
//! the Sanitize Status log (NVMe Base Specification 2.0; spec §8.5).
//!
//! Everything here is pure except [`DevNvme`], the real [`NvmeAdmin`]. The pages the
//! commands return are parsed in `nvme_pages.rs` (re-exported here); the erase procedures
//! that use these commands are in `nvme_erase.rs`.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::time::Duration;

pub use super::nvme_pages::{
    parse_namespace_list, ControllerInfo, LbaFormat, NamespaceInfo, SanitizeCaps, SanitizeLog,
    SanitizeState, NO_ESTIMATE,
};

/// Admin opcodes.
pub const OPC_GET_LOG_PAGE: u8 = 0x02;
pub const OPC_IDENTIFY: u8 = 0x06;
pub const OPC_FORMAT_NVM: u8 = 0x80;
pub const OPC_SANITIZE: u8 = 0x84;

/// Identify CNS values.
pub const CNS_NAMESPACE: u8 = 0x00;
pub const CNS_CONTROLLER: u8 = 0x01;
pub const CNS_ACTIVE_NAMESPACES: u8 = 0x02;

/// The Sanitize Status log page.
pub const LID_SANITIZE_STATUS: u8 = 0x81;

/// "Every namespace" in the NSID field.
pub const NSID_ALL: u32 = 0xFFFF_FFFF;

/// Size of every Identify data structure.
pub const IDENTIFY_LEN: usize = 4096;
/// Size of the Sanitize Status log page.
pub const SANITIZE_LOG_LEN: usize = 512;

/// One admin command as the erase code builds it; the transfer buffer is passed separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AdminCommand {
    pub opcode: u8,
    pub nsid: u32,
    pub cdw10: u32,
    pub cdw11: u32,
    pub cdw12: u32,
    pub cdw13: u32,
    pub cdw14: u32,
    pub cdw15: u32,
    /// How long the kernel lets the command run before aborting it.
    pub timeout: Duration,
}

impl AdminCommand {
    /// Identify (CNS in CDW10[7:0]).
    pub fn identify(cns: u8, nsid: u32) -> Self {
        AdminCommand {
            opcode: OPC_IDENTIFY,
            nsid,
            cdw10: u32::from(cns),
            timeout: Duration::from_secs(10),
            ..AdminCommand::default()
        }
    }

    /// Get Log Page of `len` bytes: CDW10 = LID[7:0] | NUMDL[31:16] (dwords minus one), RAE 0.
    pub fn get_log_page(lid: u8, len: usize) -> Self {
        let numd = (len / 4).saturating_sub(1) as u32;
        AdminCommand {
            opcode: OPC_GET_LOG_PAGE,
            nsid: NSID_ALL,
            cdw10: u32::from(lid) | ((numd & 0xFFFF) << 16),
            cdw11: numd >> 16,
            timeout: Duration::from_secs(10),
            ..AdminCommand::default()
        }
    }

    /// Format NVM of namespace `nsid` (or [`NSID_ALL`]).
    pub fn format_nvm(nsid: u32, cdw10: u32, timeout: Duration) -> Self {
        AdminCommand {
            opcode: OPC_FORMAT_NVM,
            nsid,
            cdw10,
            timeout,
            ..AdminCommand::default()
        }
    }

    /// Sanitize; it always acts on the whole NVM subsystem, NSID is ignored (0).
    pub fn sanitize(cdw10: u32, overwrite_pattern: u32) -> Self {
        AdminCommand {
            opcode: OPC_SANITIZE,
            nsid: 0,
            cdw10,
            cdw11: overwrite_pattern,
            // The command completes once the operation has started; it runs in the background.
            timeout: Duration::from_secs(60),
            ..AdminCommand::default()
        }
    }

    /// Whether the command reads data from the controller (opcode bits 1:0 = 10b).
    pub fn reads_data(&self) -> bool {
        self.opcode & 0x3 == 0x2
    }
}

/// The Secure Erase Settings of Format NVM (CDW10 SES[11:9]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SecureErase {
    /// 1: User Data Erase.
    UserData,
    /// 2: Cryptographic Erase.
    Cryptographic,
}

impl SecureErase {
    pub fn ses(self) -> u32 {
        match self {
            SecureErase::UserData => 1,
            SecureErase::Cryptographic => 2,
        }
    }
}

/// The Sanitize Action (CDW10 SANACT[2:0]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SanitizeAction {
    /// 1: leave the failure mode of a failed sanitize.
    ExitFailureMode,
    /// 2.
    BlockErase,
    /// 3.
    Overwrite,
    /// 4.
    CryptoErase,
}

impl SanitizeAction {
    pub fn sanact(self) -> u32 {
        match self {
            SanitizeAction::ExitFailureMode => 1,
            SanitizeAction::BlockErase => 2,
            SanitizeAction::Overwrite => 3,
            SanitizeAction::CryptoErase => 4,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SanitizeAction::ExitFailureMode => "exit-failure-mode",
            SanitizeAction::BlockErase => "block-erase",
            SanitizeAction::Overwrite => "overwrite",
            SanitizeAction::CryptoErase => "crypto-erase",
        }
    }
}

/// Format NVM CDW10 that keeps the namespace's current format: LBAF[3:0], MSET[4], PI[7:5],
/// PIL[8], SES[11:9], LBAFU[13:12].
pub fn format_cdw10(ns: &NamespaceInfo, erase: SecureErase) -> u32 {
    let lbaf = u32::from(ns.lba_format_index);
    (lbaf & 0xF)
        | (u32::from(ns.metadata_at_end) << 4)
        | ((u32::from(ns.pi_type) & 0x7) << 5)
        | (u32::from(ns.pi_first) << 8)
        | (erase.ses() << 9)
        | (((lbaf >> 4) & 0x3) << 12)
}

/// Sanitize CDW10: SANACT[2:0], AUSE[3], OWPASS[7:4] (0 means 16), OIPBP[8], NDAS[9].
/// rivet sets AUSE (a failed sanitize can be left with Exit Failure Mode) and never NDAS.
pub fn sanitize_cdw10(action: SanitizeAction, overwrite_passes: u8) -> u32 {
    let owpass = if action == SanitizeAction::Overwrite {
        u32::from(overwrite_passes.clamp(1, 16)) & 0xF
    } else {
        0
    };
    action.sanact() | (1 << 3) | (owpass << 4)
}

/// A completion status other than success, as the ioctl returns it: SC[7:0], SCT[10:8],
/// CRD[12:11], More[13], DNR[14].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NvmeStatus(pub u16);

impl NvmeStatus {
    pub fn code(self) -> u8 {
        (self.0 & 0xFF) as u8
    }

    pub fn code_type(self) -> u8 {
        ((self.0 >> 8) & 0x7) as u8
    }

    pub fn do_not_retry(self) -> bool {
        self.0 & (1 << 14) != 0
    }

    /// The controller does not implement the command.
    pub fn is_invalid_opcode(self) -> bool {
        self.code_type() == 0 && self.code() == 0x01
    }

    /// What the status means, for error messages.
    pub fn meaning(self) -> &'static str {
        match (self.code_type(), self.code()) {
            (0, 0x01) => "Invalid Command Opcode",
            (0, 0x02) => "Invalid Field in Command",
            (0, 0x04) => "Data Transfer Error",
            (0, 0x05) => "Commands Aborted due to Power Loss Notification",
            (0, 0x06) => "Internal Error",
            (0, 0x07) => "Command Abort Requested",
            (0, 0x0B) => "Invalid Namespace or Format",
            (0, 0x0C) => "Command Sequence Error",
            (0, 0x1C) => "Sanitize Failed",
            (0, 0x1D) => "Sanitize In Progress",
            (0, 0x20) => "Namespace is Write Protected",
            (0, 0x21) => "Command Interrupted",
            (1, 0x0A) => "Invalid Format",
            (1, 0x15) => "Namespace Insufficient Capacity",
            (1, 0x23) => "Sanitize Prohibited While Persistent Memory Region is Enabled",
            (3, 0x71) => "Host Aborted Command (timeout)",
            (2, _) => "Media and Data Integrity Error",
            (1, _) => "Command Specific Error",
            _ => "unknown status",
        }
    }
}

impl std::fmt::Display for NvmeStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (status {:#06x}: type {}, code {:#04x}{})",
            self.meaning(),
            self.0,
            self.code_type(),
            self.code(),
            if self.do_not_retry() {
                ", do not retry"
            } else {
                ""
            }
        )
    }
}

/// Why an admin command did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum NvmeError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{what}: the controller answered {status}")]
    Status { what: String, status: NvmeStatus },
    #[error("{what}: {message}")]
    Parse { what: String, message: String },
}

/// Sends admin commands to one namespace's controller. The real one is [`DevNvme`]; tests
/// use `FakeNvme` (erase/fake.rs).
pub trait NvmeAdmin: Send {
    /// The namespace this handle was opened on.
    fn namespace_id(&self) -> Result<u32, NvmeError>;
    /// Runs `cmd` with `data` as the transfer buffer (read or written per the opcode; empty
    /// for none). Returns completion dword 0, or the status the controller answered.
    fn admin(&mut self, cmd: &AdminCommand, data: &mut [u8]) -> Result<u32, NvmeError>;
}

/// `struct nvme_admin_cmd` (= `nvme_passthru_cmd`) of <linux/nvme_ioctl.h>, 72 bytes.
#[repr(C)]
#[derive(Debug, Default)]
pub struct NvmeAdminCmd {
    pub opcode: u8,
    pub flags: u8,
    pub rsvd1: u16,
    pub nsid: u32,
    pub cdw2: u32,
    pub cdw3: u32,
    pub metadata: u64,
    pub addr: u64,
    pub metadata_len: u32,
    pub data_len: u32,
    pub cdw10: u32,
    pub cdw11: u32,
    pub cdw12: u32,
    pub cdw13: u32,
    pub cdw14: u32,
    pub cdw15: u32,
    pub timeout_ms: u32,
    pub result: u32,
}

// NVME_IOCTL_ID = _IO('N', 0x40); NVME_IOCTL_ADMIN_CMD = _IOWR('N', 0x41, struct nvme_admin_cmd).
nix::ioctl_none!(nvme_ioctl_id, b'N', 0x40);
nix::ioctl_readwrite!(nvme_ioctl_admin_cmd, b'N', 0x41, NvmeAdminCmd);

/// The real controller behind an open NVMe namespace block device (`/dev/nvme0n1`).
#[derive(Debug)]
pub struct DevNvme {
    file: File,
    name: String,
}

impl DevNvme {
    /// Uses `file`, an open handle on the namespace block device `name`.
    pub fn new(file: File, name: &str) -> Self {
        DevNvme {
            file,
            name: name.to_string(),
        }
    }
}

impl NvmeAdmin for DevNvme {
    fn namespace_id(&self) -> Result<u32, NvmeError> {
        // SAFETY: NVME_IOCTL_ID takes no argument; the fd is open for the call's duration.
        match unsafe { nvme_ioctl_id(self.file.as_raw_fd()) } {
            Ok(nsid) if nsid > 0 => Ok(nsid as u32),
            Ok(other) => Err(NvmeError::Parse {
                what: format!("NVME_IOCTL_ID on /dev/{}", self.name),
                message: format!("namespace id {other}"),
            }),
            Err(errno) => Err(NvmeError::Io {
                what: format!("NVME_IOCTL_ID on /dev/{}", self.name),
                source: errno.into(),
            }),
        }
    }

    fn admin(&mut self, cmd: &AdminCommand, data: &mut [u8]) -> Result<u32, NvmeError> {
        let what = || {
            format!(
                "NVMe admin command {:#04x} (cdw10 {:#010x}) on /dev/{}",
                cmd.opcode, cmd.cdw10, self.name
            )
        };
        let mut raw = NvmeAdminCmd {
            opcode: cmd.opcode,
            nsid: cmd.nsid,
            addr: if data.is_empty() {
                0
            } else {
                data.as_mut_ptr() as u64
            },
            data_len: data.len() as u32,
            cdw10: cmd.cdw10,
            cdw11: cmd.cdw11,
            cdw12: cmd.cdw12,
            cdw13: cmd.cdw13,
            cdw14: cmd.cdw14,
            cdw15: cmd.cdw15,
            timeout_ms: cmd.timeout.as_millis().min(u128::from(u32::MAX)) as u32,
            ..NvmeAdminCmd::default()
        };
        // SAFETY: `raw` is a valid nvme_admin_cmd; `addr`/`data_len` describe `data`, which
        // is borrowed mutably for the whole call, so the kernel may read or write all of it.
        match unsafe { nvme_ioctl_admin_cmd(self.file.as_raw_fd(), &mut raw) } {
            Ok(0) => Ok(raw.result),
            Ok(status) => Err(NvmeError::Status {
                what: what(),
                status: NvmeStatus(status as u16),
            }),
            Err(errno) => Err(NvmeError::Io {
                what: what(),
                source: errno.into(),
            }),
        }
    }
}

#[cfg(test)]
#[path = "tests/nvme.rs"]
mod tests;
