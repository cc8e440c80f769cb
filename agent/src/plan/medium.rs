//! The report medium (docs/plan.md "Results"): a whole disk chosen by its serial number,
//! written raw at byte 0 with the JSON report, which is also the plan's completion record.
//!
//! Safety: the disk must be a plain whole disk (not the boot medium, not read-only), and it
//! is only ever written when its first 4 KiB are all zero or already hold a rivet report.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rivet_protocol::plan::report::{PlanReport, REPORT_MAGIC};

use crate::disks::{BlockDevice, BlockDevices, DeviceKind};

/// The bytes read to decide what a medium holds, and the unit reports are padded to.
pub const HEAD_LEN: usize = 4096;

/// Raw access to the start of a report medium.
pub trait ReportMedium: Send + Sync {
    /// What to call it on the console (`/dev/vdc (serial RIVET-REPORT)`).
    fn describe(&self) -> String;
    /// The device node, to keep it apart from the disks steps write.
    fn path(&self) -> &Path;
    fn size(&self) -> io::Result<u64>;
    fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>>;
    /// Writes and flushes to stable storage.
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()>;
}

/// A block device (or, in tests, a regular file) opened by path.
#[derive(Debug)]
pub struct DiskMedium {
    path: PathBuf,
    label: String,
}

impl DiskMedium {
    pub fn new(path: PathBuf, label: String) -> Self {
        DiskMedium { path, label }
    }

    fn open(&self, write: bool) -> io::Result<File> {
        OpenOptions::new().read(true).write(write).open(&self.path)
    }
}

impl ReportMedium for DiskMedium {
    fn describe(&self) -> String {
        self.label.clone()
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn size(&self) -> io::Result<u64> {
        use std::io::Seek;
        self.open(false)?.seek(io::SeekFrom::End(0))
    }

    fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.open(false)?.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let file = self.open(true)?;
        file.write_all_at(data, offset)?;
        file.sync_all()
    }
}

/// Finds report media by serial number.
pub trait MediaFinder: Send + Sync {
    fn find(&self, serial: &str) -> Result<Box<dyn ReportMedium>, String>;
}

/// The machine's disks, from [`BlockDevices`].
pub struct DiskFinder<'a>(pub &'a dyn BlockDevices);

impl MediaFinder for DiskFinder<'_> {
    fn find(&self, serial: &str) -> Result<Box<dyn ReportMedium>, String> {
        let devices = self
            .0
            .list()
            .map_err(|e| format!("listing block devices: {e}"))?;
        let device = choose(&devices, serial)?;
        Ok(Box::new(DiskMedium::new(
            device.path.clone(),
            format!("{} (serial {serial})", device.path.display()),
        )))
    }
}

/// The one whole, writable, non-boot disk with serial `serial`.
pub fn choose<'a>(devices: &'a [BlockDevice], serial: &str) -> Result<&'a BlockDevice, String> {
    let found: Vec<&BlockDevice> = devices
        .iter()
        .filter(|d| d.kind == DeviceKind::Disk && d.serial.as_deref() == Some(serial))
        .collect();
    let device = match found.as_slice() {
        [one] => *one,
        [] => return Err(format!("no disk has the serial number {serial}")),
        many => {
            let names: Vec<String> = many.iter().map(|d| d.path.display().to_string()).collect();
            return Err(format!(
                "disks {} all have the serial number {serial}: refusing to guess",
                names.join(", ")
            ));
        }
    };
    if device.is_boot_medium {
        return Err(format!(
            "{} (serial {serial}) is the boot medium; it is never written",
            device.path.display()
        ));
    }
    if device.read_only {
        return Err(format!(
            "{} (serial {serial}) is read-only",
            device.path.display()
        ));
    }
    Ok(device)
}

/// What the medium holds now: `Ok(None)` when blank, the report when it has one; an error
/// when it holds anything else (then it is never written).
pub fn read_report(medium: &dyn ReportMedium) -> Result<Option<PlanReport>, String> {
    let size = medium
        .size()
        .map_err(|e| format!("{}: finding its size: {e}", medium.describe()))?;
    let head_len = usize::try_from(size.min(1 << 20)).unwrap_or(HEAD_LEN);
    if head_len < HEAD_LEN {
        return Err(format!(
            "{}: {size} bytes is too small for a report medium",
            medium.describe()
        ));
    }
    let head = medium
        .read_at(0, head_len)
        .map_err(|e| format!("{}: reading its start: {e}", medium.describe()))?;
    if head[..HEAD_LEN].iter().all(|&b| b == 0) {
        return Ok(None);
    }
    if !head.starts_with(REPORT_MAGIC) {
        return Err(format!(
            "{} holds data that is not a rivet report: refusing to overwrite it",
            medium.describe()
        ));
    }
    // A report longer than what was read is read whole.
    let bytes = if head.contains(&0) || head.len() as u64 == size {
        head
    } else {
        let len = usize::try_from(size).map_err(|_| "medium too large".to_string())?;
        medium
            .read_at(0, len)
            .map_err(|e| format!("{}: reading its report: {e}", medium.describe()))?
    };
    PlanReport::from_medium(&bytes).map_err(|e| format!("{}: {e}", medium.describe()))
}

/// Writes `report` at byte 0 followed by NUL bytes up to the next [`HEAD_LEN`].
pub fn write_report(medium: &dyn ReportMedium, report: &PlanReport) -> Result<(), String> {
    let mut bytes = serde_json::to_vec(report).map_err(|e| format!("encoding the report: {e}"))?;
    let padded = (bytes.len() / HEAD_LEN + 1) * HEAD_LEN;
    bytes.resize(padded, 0);
    let size = medium
        .size()
        .map_err(|e| format!("{}: finding its size: {e}", medium.describe()))?;
    if bytes.len() as u64 > size {
        return Err(format!(
            "{}: the report takes {} bytes, the medium has {size}",
            medium.describe(),
            bytes.len()
        ));
    }
    medium
        .write_at(0, &bytes)
        .map_err(|e| format!("{}: writing the report: {e}", medium.describe()))
}
