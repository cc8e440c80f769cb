//! A fake NVMe controller with one namespace on a [`FakeDisk`]: Identify from fixture
//! pages, Format NVM and Sanitize with the status codes a real controller answers, and a
//! Sanitize Status log that advances as it is read.

use std::sync::{Arc, Mutex};

use super::{lock, FakeDisk};
use crate::erase::nvme::{
    AdminCommand, NvmeAdmin, NvmeError, NvmeStatus, CNS_ACTIVE_NAMESPACES, CNS_CONTROLLER,
    CNS_NAMESPACE, LID_SANITIZE_STATUS, OPC_FORMAT_NVM, OPC_GET_LOG_PAGE, OPC_IDENTIFY,
    OPC_SANITIZE,
};

/// How the fake controller runs a sanitize.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SanitizeBehaviour {
    /// Sanitize is an invalid opcode and the log an invalid field (QEMU 7.2).
    Unsupported,
    /// Completes after this many log reads, 1/n of the way per read.
    CompletesAfter(u16),
    /// Fails after this many log reads.
    FailsAfter(u16),
    /// Stays in progress at 1 %.
    Never,
}

#[derive(Debug)]
struct NvmeState {
    commands: Vec<AdminCommand>,
    sanitize_reads: u16,
    sanitize_running: Option<u32>,
    sanitize_failed: bool,
    sanitize_done_cdw10: Option<u32>,
    /// Status to answer the next Format NVM with.
    format_status: Option<u16>,
}

/// A fake NVMe controller with one namespace backed by a [`FakeDisk`].
#[derive(Debug, Clone)]
pub struct FakeNvme {
    pub disk: FakeDisk,
    pub nsid: u32,
    pub controller_page: Vec<u8>,
    pub namespace_page: Vec<u8>,
    pub active_namespaces: Vec<u32>,
    pub sanitize: SanitizeBehaviour,
    /// Format NVM succeeds without touching the media (what a format without a secure
    /// erase setting does on real drives).
    pub format_is_a_no_op: bool,
    /// ETCE/ETBE/ETO the log reports.
    pub estimates: [u32; 3],
    state: Arc<Mutex<NvmeState>>,
}

impl FakeNvme {
    pub fn new(disk: FakeDisk, controller_page: Vec<u8>, namespace_page: Vec<u8>) -> Self {
        FakeNvme {
            disk,
            nsid: 1,
            controller_page,
            namespace_page,
            active_namespaces: vec![1],
            sanitize: SanitizeBehaviour::Unsupported,
            format_is_a_no_op: false,
            estimates: [u32::MAX; 3],
            state: Arc::new(Mutex::new(NvmeState {
                commands: Vec::new(),
                sanitize_reads: 0,
                sanitize_running: None,
                sanitize_failed: false,
                sanitize_done_cdw10: None,
                format_status: None,
            })),
        }
    }

    /// Every admin command received, in order.
    pub fn commands(&self) -> Vec<AdminCommand> {
        lock(&self.state).commands.clone()
    }

    /// The next Format NVM fails with `status`.
    pub fn fail_format_with(&self, status: u16) {
        lock(&self.state).format_status = Some(status);
    }

    fn status(what: &str, status: u16) -> NvmeError {
        NvmeError::Status {
            what: what.to_string(),
            status: NvmeStatus(status),
        }
    }

    /// The media after an erase: zeroes for a user-data erase, a crypto erase's garbage
    /// (a fixed non-zero pattern) otherwise.
    fn erase_media(&self, crypto: bool) {
        self.disk.fill(if crypto { 0xC3 } else { 0 });
    }

    fn sanitize_log(&self, state: &mut NvmeState, page: &mut [u8]) -> Result<u32, NvmeError> {
        if self.sanitize == SanitizeBehaviour::Unsupported {
            return Err(Self::status("Get Log Page 0x81", 0x4002));
        }
        page.fill(0);
        let (mut sprog, mut sstat) = (0xFFFFu16, 0u16);
        if let Some(cdw10) = state.sanitize_running {
            state.sanitize_reads += 1;
            let reads = state.sanitize_reads;
            sstat = 2;
            match self.sanitize {
                SanitizeBehaviour::CompletesAfter(n) if reads >= n => {
                    state.sanitize_running = None;
                    state.sanitize_done_cdw10 = Some(cdw10);
                    self.erase_media(cdw10 & 0x7 == 4);
                    sstat = 1 | 0x100;
                }
                SanitizeBehaviour::CompletesAfter(n) => {
                    sprog = (u32::from(reads) * 65536 / u32::from(n)) as u16;
                }
                SanitizeBehaviour::FailsAfter(n) if reads >= n => {
                    state.sanitize_running = None;
                    state.sanitize_failed = true;
                    sstat = 3;
                }
                _ => sprog = 655,
            }
            page[4..8].copy_from_slice(&cdw10.to_le_bytes());
        } else if state.sanitize_failed {
            sstat = 3;
        } else if let Some(cdw10) = state.sanitize_done_cdw10 {
            sstat = 1 | 0x100;
            page[4..8].copy_from_slice(&cdw10.to_le_bytes());
        }
        page[0..2].copy_from_slice(&sprog.to_le_bytes());
        page[2..4].copy_from_slice(&sstat.to_le_bytes());
        page[8..12].copy_from_slice(&self.estimates[2].to_le_bytes());
        page[12..16].copy_from_slice(&self.estimates[1].to_le_bytes());
        page[16..20].copy_from_slice(&self.estimates[0].to_le_bytes());
        Ok(0)
    }
}

impl NvmeAdmin for FakeNvme {
    fn namespace_id(&self) -> Result<u32, NvmeError> {
        Ok(self.nsid)
    }

    fn admin(&mut self, cmd: &AdminCommand, data: &mut [u8]) -> Result<u32, NvmeError> {
        let mut state = lock(&self.state);
        state.commands.push(*cmd);
        match cmd.opcode {
            OPC_IDENTIFY => {
                let page = match (cmd.cdw10 & 0xFF) as u8 {
                    CNS_CONTROLLER => self.controller_page.clone(),
                    CNS_NAMESPACE if cmd.nsid == self.nsid => self.namespace_page.clone(),
                    CNS_NAMESPACE => return Err(Self::status("Identify", 0x400B)),
                    CNS_ACTIVE_NAMESPACES => {
                        let mut list = vec![0u8; 4096];
                        for (i, id) in self.active_namespaces.iter().enumerate() {
                            list[4 * i..4 * i + 4].copy_from_slice(&id.to_le_bytes());
                        }
                        list
                    }
                    _ => return Err(Self::status("Identify", 0x4002)),
                };
                let n = data.len().min(page.len());
                data[..n].copy_from_slice(&page[..n]);
                Ok(0)
            }
            OPC_GET_LOG_PAGE if (cmd.cdw10 & 0xFF) as u8 == LID_SANITIZE_STATUS => {
                self.sanitize_log(&mut state, data)
            }
            OPC_GET_LOG_PAGE => Err(Self::status("Get Log Page", 0x4009)),
            OPC_FORMAT_NVM => {
                if let Some(status) = state.format_status.take() {
                    return Err(Self::status("Format NVM", status));
                }
                let oacs =
                    u16::from_le_bytes([self.controller_page[256], self.controller_page[257]]);
                if oacs & 0x2 == 0 {
                    return Err(Self::status("Format NVM", 0x4001));
                }
                let ses = (cmd.cdw10 >> 9) & 0x7;
                if ses == 2 && self.controller_page[524] & 0x4 == 0 {
                    return Err(Self::status("Format NVM", 0x410A));
                }
                if !self.format_is_a_no_op {
                    self.erase_media(ses == 2);
                }
                Ok(0)
            }
            OPC_SANITIZE => {
                if self.sanitize == SanitizeBehaviour::Unsupported {
                    return Err(Self::status("Sanitize", 0x4001));
                }
                let action = cmd.cdw10 & 0x7;
                if action == 1 {
                    state.sanitize_failed = false;
                    return Ok(0);
                }
                let sanicap = u32::from_le_bytes([
                    self.controller_page[328],
                    self.controller_page[329],
                    self.controller_page[330],
                    self.controller_page[331],
                ]);
                let supported = match action {
                    2 => sanicap & 2 != 0,
                    3 => sanicap & 4 != 0,
                    4 => sanicap & 1 != 0,
                    _ => false,
                };
                if !supported {
                    return Err(Self::status("Sanitize", 0x4002));
                }
                if state.sanitize_running.is_some() {
                    return Err(Self::status("Sanitize", 0x401D));
                }
                state.sanitize_failed = false;
                state.sanitize_reads = 0;
                state.sanitize_running = Some(cmd.cdw10);
                Ok(0)
            }
            _ => Err(Self::status("admin", 0x4001)),
        }
    }
}
