//! The seam between the erase and the machine: which devices may be erased, opening them,
//! their queue limits, NVMe and ATA passthrough, and the clock. [`SystemEraseHost`] is the
//! real machine; tests use `FakeEraseHost` (erase/fake.rs) or the real one restricted to
//! loop devices.

use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::ata::{AtaPassThrough, SgIoAta};
use super::io::{BlockIo, DeviceFile};
use super::nvme::{DevNvme, NvmeAdmin};
use anyhow::Context;

use crate::disks::sysfs::SysfsBlockDevices;
use crate::disks::{writable_candidates, BlockDevice, BlockDevices, DeviceKind};
use crate::init::running_as_init;
use crate::settings::Settings;

/// Monotonic time and sleeping, for polling a sanitize.
pub trait EraseClock: Send + Sync {
    fn now(&self) -> Instant;
    fn sleep(&self, duration: Duration);
}

/// Real time.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl EraseClock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration)
    }
}

/// What the block layer offers for a device (`/sys/block/<disk>/queue`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct QueueLimits {
    /// `discard_max_bytes` > 0: the device accepts discards.
    pub discard: bool,
    /// `write_zeroes_max_bytes` > 0: the device can write zeroes without data transfer.
    pub write_zeroes: bool,
}

/// The machine as the erase sees it.
pub trait EraseHost: Send + Sync {
    /// The devices a disk step may write: the only source of devices for the erase.
    fn candidates(&self) -> anyhow::Result<Vec<BlockDevice>>;
    fn open(&self, device: &BlockDevice, write: bool) -> io::Result<Box<dyn BlockIo>>;
    fn queue_limits(&self, device: &BlockDevice) -> QueueLimits;
    /// Admin passthrough to the controller of an NVMe namespace.
    fn nvme(&self, device: &BlockDevice) -> io::Result<Box<dyn NvmeAdmin>>;
    /// ATA pass-through to a (SATA, or SAT-bridged) drive.
    fn ata(&self, device: &BlockDevice) -> io::Result<Box<dyn AtaPassThrough>>;
    fn clock(&self) -> &dyn EraseClock;
    /// How often a running sanitize is polled.
    fn poll_interval(&self) -> Duration {
        Duration::from_secs(5)
    }
}

/// Where the device list comes from on the real machine.
pub type CandidateSource = Box<dyn Fn() -> anyhow::Result<Vec<BlockDevice>> + Send + Sync>;

/// This machine: devices from `candidates`, everything else from `/dev` and `/sys`.
pub struct SystemEraseHost {
    candidates: CandidateSource,
    sys_root: PathBuf,
    clock: SystemClock,
}

impl SystemEraseHost {
    /// This machine's block devices (sysfs), passed through `disks::writable_candidates`:
    /// in the ramdisk every device but the boot medium; as a normal process only the
    /// devices `rivet-host-disks` lists (and their partitions).
    pub fn for_settings(settings: &Settings) -> Self {
        let settings = settings.clone();
        SystemEraseHost::new(Box::new(move || {
            let devices = SysfsBlockDevices::from_settings(&settings);
            let all = devices.list().context("listing block devices from sysfs")?;
            Ok(writable_candidates(all, &settings, running_as_init()))
        }))
    }

    pub fn new(candidates: CandidateSource) -> Self {
        SystemEraseHost {
            candidates,
            sys_root: PathBuf::from("/sys"),
            clock: SystemClock,
        }
    }

    fn queue_value(&self, disk: &str, name: &str) -> u64 {
        let path = self
            .sys_root
            .join("block")
            .join(disk)
            .join("queue")
            .join(name);
        std::fs::read_to_string(&path)
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl EraseHost for SystemEraseHost {
    fn candidates(&self) -> anyhow::Result<Vec<BlockDevice>> {
        (self.candidates)()
    }

    fn open(&self, device: &BlockDevice, write: bool) -> io::Result<Box<dyn BlockIo>> {
        Ok(Box::new(DeviceFile::open(&device.path, write)?))
    }

    fn queue_limits(&self, device: &BlockDevice) -> QueueLimits {
        // A partition shares its disk's queue.
        let disk = match (device.kind, &device.parent) {
            (DeviceKind::Partition, Some(parent)) => parent.as_str(),
            _ => device.name.as_str(),
        };
        QueueLimits {
            discard: self.queue_value(disk, "discard_max_bytes") > 0,
            write_zeroes: self.queue_value(disk, "write_zeroes_max_bytes") > 0,
        }
    }

    fn nvme(&self, device: &BlockDevice) -> io::Result<Box<dyn NvmeAdmin>> {
        let file = DeviceFile::open(&device.path, false)?.into_file();
        Ok(Box::new(DevNvme::new(file, &device.name)))
    }

    fn ata(&self, device: &BlockDevice) -> io::Result<Box<dyn AtaPassThrough>> {
        let file = DeviceFile::open(&device.path, false)?.into_file();
        Ok(Box::new(SgIoAta::new(file, &device.name)))
    }

    fn clock(&self) -> &dyn EraseClock {
        &self.clock
    }
}
