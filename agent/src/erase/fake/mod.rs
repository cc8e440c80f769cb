//! Fakes of the erase's machine access, for tests: an in-memory disk, an NVMe controller
//! and an ATA drive that act on it the way the real ones do (status codes, the security
//! state machine, the sanitize log), a host that serves them, and a virtual clock.

mod ata;
mod nvme;

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub use ata::{AtaSecurity, FakeAtaDrive};
pub use nvme::{FakeNvme, SanitizeBehaviour};

use super::ata::{AtaCommand, AtaError, AtaPassThrough, AtaRegisters, Transfer};
use super::host::{EraseClock, EraseHost, QueueLimits};
use super::io::{align_down, BlockIo};
use super::nvme::NvmeAdmin;
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
