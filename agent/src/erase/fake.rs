//! Fakes of the erase's machine access, for tests: an in-memory disk, an NVMe controller
//! and an ATA drive that act on it the way the real ones do (status codes, the security
//! state machine, the sanitize log), a host that serves them, and a virtual clock.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::ata::{
    AtaCommand, AtaError, AtaPassThrough, AtaRegisters, Transfer, CMD_IDENTIFY_DEVICE,
    CMD_SECURITY_DISABLE_PASSWORD, CMD_SECURITY_ERASE_PREPARE, CMD_SECURITY_ERASE_UNIT,
    CMD_SECURITY_SET_PASSWORD, CMD_SECURITY_UNLOCK, ERROR_ABRT,
};
use super::host::{EraseClock, EraseHost, QueueLimits};
use super::io::{align_down, BlockIo};
use super::nvme::{
    AdminCommand, NvmeAdmin, NvmeError, NvmeStatus, CNS_ACTIVE_NAMESPACES, CNS_CONTROLLER,
    CNS_NAMESPACE, LID_SANITIZE_STATUS, OPC_FORMAT_NVM, OPC_GET_LOG_PAGE, OPC_IDENTIFY,
    OPC_SANITIZE,
};
use crate::disks::{BlockDevice, DeviceKind};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What a fake disk does with discards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscardBehaviour {
    /// No discard support (EOPNOTSUPP).
    None,
    /// Discarded blocks read back as zeroes.
    Zeroes,
    /// Discard is accepted but the old data stays readable.
    KeepsData,
}

/// Shared state of an in-memory disk.
#[derive(Debug)]
struct DiskState {
    data: Vec<u8>,
    writes: usize,
    read_only: bool,
}

/// An in-memory disk; clones share the content.
#[derive(Debug, Clone)]
pub struct FakeDisk {
    state: Arc<Mutex<DiskState>>,
    pub logical_block_size: u32,
    pub discard: DiscardBehaviour,
    pub secure_discard: bool,
    pub write_zeroes: bool,
}

impl FakeDisk {
    /// A disk of `size` bytes filled with `fill`.
    pub fn new(size: usize, logical_block_size: u32, fill: u8) -> Self {
        FakeDisk {
            state: Arc::new(Mutex::new(DiskState {
                data: vec![fill; size],
                writes: 0,
                read_only: false,
            })),
            logical_block_size,
            discard: DiscardBehaviour::None,
            secure_discard: false,
            write_zeroes: false,
        }
    }

    pub fn contents(&self) -> Vec<u8> {
        lock(&self.state).data.clone()
    }

    /// Writes done through [`BlockIo`] (setup writes with [`FakeDisk::poke`] do not count).
    pub fn writes(&self) -> usize {
        lock(&self.state).writes
    }

    /// Puts bytes on the disk without counting a write.
    pub fn poke(&self, offset: usize, bytes: &[u8]) {
        lock(&self.state).data[offset..offset + bytes.len()].copy_from_slice(bytes);
    }

    pub fn fill(&self, byte: u8) {
        lock(&self.state).data.fill(byte);
    }

    /// Makes writes fail with EROFS (the kernel's answer for a read-only device).
    pub fn set_read_only(&self) {
        lock(&self.state).read_only = true;
    }

    pub fn size(&self) -> usize {
        lock(&self.state).data.len()
    }

    /// An open handle on the disk.
    pub fn open(&self) -> Box<dyn BlockIo> {
        Box::new(FakeDiskIo { disk: self.clone() })
    }
}

/// An open [`FakeDisk`]; checks the alignment `O_DIRECT` would demand.
struct FakeDiskIo {
    disk: FakeDisk,
}

impl FakeDiskIo {
    fn check(&self, offset: u64, len: u64) -> io::Result<()> {
        let lbs = u64::from(self.disk.logical_block_size);
        let size = self.size();
        if align_down(offset, lbs) != offset || align_down(len, lbs) != len {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        if offset + len > size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{len} bytes at {offset} pass the end ({size})"),
            ));
        }
        Ok(())
    }
}

impl BlockIo for FakeDiskIo {
    fn size(&self) -> u64 {
        self.disk.size() as u64
    }

    fn logical_block_size(&self) -> u32 {
        self.disk.logical_block_size
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.check(offset, buf.len() as u64)?;
        let state = lock(&self.disk.state);
        buf.copy_from_slice(&state.data[offset as usize..offset as usize + buf.len()]);
        Ok(())
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.check(offset, buf.len() as u64)?;
        let mut state = lock(&self.disk.state);
        if state.read_only {
            return Err(io::Error::from_raw_os_error(libc::EROFS));
        }
        state.data[offset as usize..offset as usize + buf.len()].copy_from_slice(buf);
        state.writes += 1;
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn discard(&mut self, offset: u64, len: u64, secure: bool) -> io::Result<()> {
        self.check(offset, len)?;
        if self.disk.discard == DiscardBehaviour::None || (secure && !self.disk.secure_discard) {
            return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
        }
        if self.disk.discard == DiscardBehaviour::Zeroes {
            let mut state = lock(&self.disk.state);
            state.data[offset as usize..(offset + len) as usize].fill(0);
        }
        Ok(())
    }

    fn zero_out(&mut self, offset: u64, len: u64) -> io::Result<()> {
        self.check(offset, len)?;
        if !self.disk.write_zeroes {
            return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
        }
        let mut state = lock(&self.disk.state);
        state.data[offset as usize..(offset + len) as usize].fill(0);
        state.writes += 1;
        Ok(())
    }

    fn reread_partitions(&mut self) -> io::Result<()> {
        Ok(())
    }
}

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

/// The security state of a fake ATA drive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtaSecurity {
    pub supported: bool,
    pub frozen: bool,
    pub enhanced: bool,
    pub password: Option<[u8; 32]>,
    pub locked: bool,
    pub prepared: bool,
    /// ERASE UNIT is aborted.
    pub erase_fails: bool,
}

/// A fake ATA drive: an IDENTIFY template with word 128 kept up to date, and the security
/// state machine of ACS-3 acting on a [`FakeDisk`].
#[derive(Debug, Clone)]
pub struct FakeAtaDrive {
    pub disk: FakeDisk,
    identify: Vec<u8>,
    state: Arc<Mutex<(AtaSecurity, Vec<u8>)>>,
}

impl FakeAtaDrive {
    pub fn new(disk: FakeDisk, identify: Vec<u8>, security: AtaSecurity) -> Self {
        FakeAtaDrive {
            disk,
            identify,
            state: Arc::new(Mutex::new((security, Vec::new()))),
        }
    }

    pub fn security(&self) -> AtaSecurity {
        lock(&self.state).0.clone()
    }

    /// Command opcodes received, in order.
    pub fn commands(&self) -> Vec<u8> {
        lock(&self.state).1.clone()
    }

    fn identify_page(&self, s: &AtaSecurity) -> Vec<u8> {
        let mut page = self.identify.clone();
        let mut w128 = u16::from_le_bytes([page[256], page[257]]) & !0x2F;
        let bits = [
            (s.supported, 0x01),
            (s.password.is_some(), 0x02),
            (s.locked, 0x04),
            (s.frozen, 0x08),
            (s.enhanced, 0x20),
        ];
        for (on, bit) in bits {
            if on {
                w128 |= bit;
            }
        }
        page[256..258].copy_from_slice(&w128.to_le_bytes());
        if page[510] == 0xA5 {
            let sum = page[..511].iter().fold(0u8, |a, &b| a.wrapping_add(b));
            page[511] = 0u8.wrapping_sub(sum);
        }
        page
    }
}

impl AtaPassThrough for FakeAtaDrive {
    fn execute(
        &mut self,
        cmd: &AtaCommand,
        data: Transfer<'_>,
        _timeout: Duration,
    ) -> Result<AtaRegisters, AtaError> {
        let mut guard = lock(&self.state);
        guard.1.push(cmd.command);
        let s = &mut guard.0;
        let abort = || AtaError::Aborted {
            what: format!("ATA command {:#04x}", cmd.command),
            status: 0x51,
            error: ERROR_ABRT,
        };
        let password = |data: &Transfer<'_>| -> Option<([u8; 32], u8)> {
            match data {
                Transfer::Out(block) if block.len() >= 34 => {
                    let mut p = [0u8; 32];
                    p.copy_from_slice(&block[2..34]);
                    Some((p, block[0]))
                }
                _ => None,
            }
        };
        let ok = Ok(AtaRegisters {
            status: 0x50,
            ..AtaRegisters::default()
        });
        if cmd.command != CMD_IDENTIFY_DEVICE && !s.supported {
            return Err(abort());
        }
        match cmd.command {
            CMD_IDENTIFY_DEVICE => {
                let page = self.identify_page(s);
                if let Transfer::In(buf) = data {
                    let n = buf.len().min(page.len());
                    buf[..n].copy_from_slice(&page[..n]);
                }
                ok
            }
            CMD_SECURITY_SET_PASSWORD => {
                if s.frozen || s.locked {
                    return Err(abort());
                }
                let (p, _) = password(&data).ok_or_else(abort)?;
                s.password = Some(p);
                ok
            }
            CMD_SECURITY_UNLOCK => {
                if s.frozen {
                    return Err(abort());
                }
                let (p, _) = password(&data).ok_or_else(abort)?;
                if s.password == Some(p) {
                    s.locked = false;
                    ok
                } else {
                    Err(abort())
                }
            }
            CMD_SECURITY_ERASE_PREPARE => {
                if s.frozen {
                    return Err(abort());
                }
                s.prepared = true;
                ok
            }
            CMD_SECURITY_ERASE_UNIT => {
                let prepared = std::mem::replace(&mut s.prepared, false);
                let (p, control) = password(&data).ok_or_else(abort)?;
                if s.frozen || !prepared || s.password != Some(p) || s.erase_fails {
                    return Err(abort());
                }
                if control & 0x2 != 0 && !s.enhanced {
                    return Err(abort());
                }
                self.disk.fill(0);
                s.password = None;
                s.locked = false;
                ok
            }
            CMD_SECURITY_DISABLE_PASSWORD => {
                let (p, _) = password(&data).ok_or_else(abort)?;
                if s.frozen || s.locked || s.password != Some(p) {
                    return Err(abort());
                }
                s.password = None;
                ok
            }
            _ => Err(abort()),
        }
    }
}

/// A virtual clock: sleeping advances it at once.
#[derive(Debug)]
pub struct FakeClock {
    now: Mutex<Instant>,
}

impl Default for FakeClock {
    fn default() -> Self {
        FakeClock {
            now: Mutex::new(Instant::now()),
        }
    }
}

impl EraseClock for FakeClock {
    fn now(&self) -> Instant {
        *lock(&self.now)
    }

    fn sleep(&self, duration: Duration) {
        *lock(&self.now) += duration;
    }
}

/// One device of a [`FakeEraseHost`].
#[derive(Debug, Clone)]
pub struct FakeDevice {
    pub device: BlockDevice,
    pub disk: FakeDisk,
    pub nvme: Option<FakeNvme>,
    pub ata: Option<FakeAtaDrive>,
}

impl FakeDevice {
    /// A device named `name` of `kind` backed by `disk`.
    pub fn new(name: &str, kind: DeviceKind, disk: FakeDisk) -> Self {
        FakeDevice {
            device: block_device(name, kind, disk.size() as u64, disk.logical_block_size),
            disk,
            nvme: None,
            ata: None,
        }
    }
}

/// A [`BlockDevice`] with the given basics and nothing else.
pub fn block_device(name: &str, kind: DeviceKind, size: u64, lbs: u32) -> BlockDevice {
    BlockDevice {
        name: name.to_string(),
        path: format!("/dev/{name}").into(),
        kind,
        parent: None,
        partitions: Vec::new(),
        holders: Vec::new(),
        size_bytes: size,
        logical_sector_size: lbs,
        physical_sector_size: lbs,
        rotational: false,
        read_only: false,
        removable: false,
        model: Some(format!("Fake {name}")),
        vendor: None,
        serial: Some(format!("SN-{name}")),
        wwn: None,
        wwn_with_extension: None,
        wwn_vendor_extension: None,
        hctl: None,
        by_path: None,
        tran: None,
        is_boot_medium: false,
    }
}

/// Serves [`FakeDevice`]s; records which devices were opened for writing.
#[derive(Debug, Default)]
pub struct FakeEraseHost {
    pub devices: Vec<FakeDevice>,
    pub clock: FakeClock,
    /// `Some` makes `candidates` fail with this message.
    pub list_error: Option<String>,
    opened_for_write: Mutex<Vec<String>>,
}

impl FakeEraseHost {
    pub fn new(devices: Vec<FakeDevice>) -> Self {
        FakeEraseHost {
            devices,
            ..FakeEraseHost::default()
        }
    }

    /// Names of the devices opened for writing, in order (repeats included).
    pub fn opened_for_write(&self) -> Vec<String> {
        lock(&self.opened_for_write).clone()
    }

    fn find(&self, device: &BlockDevice) -> io::Result<&FakeDevice> {
        self.devices
            .iter()
            .find(|d| d.device.name == device.name)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no fake device {}", device.name),
                )
            })
    }
}

impl EraseHost for FakeEraseHost {
    fn candidates(&self) -> anyhow::Result<Vec<BlockDevice>> {
        if let Some(error) = &self.list_error {
            anyhow::bail!("{error}");
        }
        Ok(self.devices.iter().map(|d| d.device.clone()).collect())
    }

    fn open(&self, device: &BlockDevice, write: bool) -> io::Result<Box<dyn BlockIo>> {
        let found = self.find(device)?;
        if write {
            lock(&self.opened_for_write).push(device.name.clone());
        }
        Ok(found.disk.open())
    }

    fn queue_limits(&self, device: &BlockDevice) -> QueueLimits {
        match self.find(device) {
            Ok(d) => QueueLimits {
                discard: d.disk.discard != DiscardBehaviour::None,
                write_zeroes: d.disk.write_zeroes,
            },
            Err(_) => QueueLimits::default(),
        }
    }

    fn nvme(&self, device: &BlockDevice) -> io::Result<Box<dyn NvmeAdmin>> {
        match &self.find(device)?.nvme {
            Some(nvme) => Ok(Box::new(nvme.clone())),
            None => Err(io::Error::from_raw_os_error(libc::ENOTTY)),
        }
    }

    fn ata(&self, device: &BlockDevice) -> io::Result<Box<dyn AtaPassThrough>> {
        match &self.find(device)?.ata {
            Some(ata) => Ok(Box::new(ata.clone())),
            None => Ok(Box::new(NoAta(device.name.clone()))),
        }
    }

    fn clock(&self) -> &dyn EraseClock {
        &self.clock
    }

    fn poll_interval(&self) -> Duration {
        Duration::from_secs(5)
    }
}

/// A device without ATA pass-through (what SG_IO answers for virtio or loop: ENOTTY).
struct NoAta(String);

impl AtaPassThrough for NoAta {
    fn execute(
        &mut self,
        cmd: &AtaCommand,
        _data: Transfer<'_>,
        _timeout: Duration,
    ) -> Result<AtaRegisters, AtaError> {
        Err(AtaError::Unsupported {
            what: format!("ATA command {:#04x} on /dev/{}", cmd.command, self.0),
            detail: "SG_IO: ENOTTY: Inappropriate ioctl for device".into(),
        })
    }
}
