//! [`BlockDevices`] from sysfs: `/sys/class/block/*` and the device chain above each entry.
//!
//! Device nodes under `dev_root` are only opened read-only, to read volume labels for boot
//! medium detection ([`super::boot`]). Tests point both roots at fixture trees.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::boot::{self, VolumeLabels};
use super::udev::{self, ScsiFacts, SysNode};
use super::{BlockDevice, BlockDevices, DeviceKind, DiskError};

/// Block devices as sysfs shows them; boot medium by volume label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysfsBlockDevices {
    /// `/sys`, or a fixture tree.
    pub sys_root: PathBuf,
    /// `/dev`, or a fixture directory whose files stand in for device nodes.
    pub dev_root: PathBuf,
    /// iso9660 labels that mark rivet's own boot medium (any case): `RIVET`, plus
    /// `rivet-boot-label`.
    pub boot_labels: Vec<String>,
}

impl Default for SysfsBlockDevices {
    fn default() -> Self {
        SysfsBlockDevices::new("/sys", "/dev")
    }
}

impl SysfsBlockDevices {
    /// Reads `sys_root` and `dev_root`; the boot label is rivet's default, `RIVET`.
    pub fn new(sys_root: impl Into<PathBuf>, dev_root: impl Into<PathBuf>) -> Self {
        SysfsBlockDevices {
            sys_root: sys_root.into(),
            dev_root: dev_root.into(),
            boot_labels: vec![boot::RIVET_LABEL.to_string()],
        }
    }

    /// The real `/sys` and `/dev`, with the boot label from the settings added.
    pub fn from_settings(settings: &crate::settings::Settings) -> Self {
        let mut devices = SysfsBlockDevices::default();
        devices
            .boot_labels
            .extend(settings.boot_label.iter().cloned());
        devices
    }

    fn chain(&self, dir: &Path) -> Result<Vec<SysNode>, DiskError> {
        let top = self.canonical(&self.sys_root.join("devices"))?;
        let root = self.canonical(&self.sys_root)?;
        let mut chain = Vec::new();
        let mut at = Some(dir);
        while let Some(p) = at.filter(|p| p.starts_with(&top) && *p != top) {
            if p.join("uevent").exists() {
                chain.push(SysNode {
                    sysname: file_name(p),
                    devpath: p.strip_prefix(&root).unwrap_or(p).display().to_string(),
                    subsystem: fs::read_link(p.join("subsystem"))
                        .ok()
                        .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned())),
                    devtype: read_attr(&p.join("uevent"))?.and_then(|u| {
                        u.lines()
                            .find_map(|l| l.strip_prefix("DEVTYPE=").map(String::from))
                    }),
                });
            }
            at = p.parent();
        }
        Ok(chain)
    }

    fn canonical(&self, path: &Path) -> Result<PathBuf, DiskError> {
        fs::canonicalize(path).map_err(|source| DiskError::Read {
            path: path.to_path_buf(),
            source,
        })
    }

    fn scsi_facts(&self, chain: &[SysNode], scsi_dev: &Path) -> Result<ScsiFacts, DiskError> {
        let root = self.canonical(&self.sys_root)?;
        let mut facts = ScsiFacts::default();
        if scsi_dev.join("sas_device").exists() {
            facts.transport_classes.push("sas_device".into());
        }
        let Some(host_at) = chain
            .iter()
            .position(|n| n.devtype.as_deref() == Some("scsi_host"))
        else {
            return Ok(facts);
        };
        let host = &chain[host_at];
        let host_dir = root.join(&host.devpath);
        for class in ["spi_host", "fc_host", "sas_host", "iscsi_host"] {
            if host_dir.join(class).exists() {
                facts.transport_classes.push(class.into());
            }
        }
        facts.proc_name = read_attr(
            &host_dir
                .join("scsi_host")
                .join(&host.sysname)
                .join("proc_name"),
        )?;
        if let Some(parent) = host_dir.parent() {
            facts.first_host = list_dir(parent)?
                .iter()
                .filter_map(|n| n.strip_prefix("host")?.parse::<u32>().ok())
                .min();
        }
        if let Some(ata) = chain
            .get(host_at + 1)
            .filter(|n| n.sysname.starts_with("ata"))
        {
            let port_no = root
                .join(&ata.devpath)
                .join("ata_port")
                .join(&ata.sysname)
                .join("port_no");
            facts.ata_port_no = read_attr(&port_no)?;
        }
        Ok(facts)
    }

    fn whole_device(&self, name: &str, dir: &Path) -> Result<BlockDevice, DiskError> {
        let root = self.canonical(&self.sys_root)?;
        let devpath = dir.strip_prefix(&root).unwrap_or(dir).display().to_string();
        let chain = self.chain(dir)?;
        let device = dir.join("device");
        let hctl = fs::read_link(&device)
            .ok()
            .map(|t| file_name(&t))
            .filter(|n| udev::parse_hctl(n).is_some());
        let kind = kind_of(name, &devpath, &device)?;
        let scsi = match &hctl {
            Some(_) => {
                let dev_dir = self.canonical(&device)?;
                let node = chain
                    .iter()
                    .find(|n| n.devtype.as_deref() == Some("scsi_device"));
                Some((
                    node.cloned().unwrap_or_default(),
                    self.scsi_facts(&chain, &dev_dir)?,
                ))
            }
            None => None,
        };
        let nvme = is_nvme_namespace(name);
        let serial = if nvme {
            read_attr(&device.join("serial"))?
        } else if scsi.is_some() {
            read_bytes(&device.join("vpd_pg80"))?.and_then(|p| udev::vpd80_serial(&p))
        } else {
            match read_attr(&dir.join("serial"))? {
                Some(s) => Some(s),
                None => read_attr(&device.join("serial"))?,
            }
        };
        let (wwn, wwn_vendor_extension, wwn_with_extension) = if nvme {
            let wwid = match read_attr(&dir.join("wwid"))? {
                Some(w) => Some(w),
                None => read_attr(&device.join("wwid"))?,
            };
            (wwid, None, None)
        } else if scsi.is_some() {
            let from_vpd = read_bytes(&device.join("vpd_pg83"))?.and_then(|p| udev::vpd83_wwn(&p));
            let found = match from_vpd {
                Some(w) => Some(w),
                None => read_attr(&device.join("wwid"))?.and_then(|w| udev::scsi_wwid_wwn(&w)),
            };
            match found {
                Some(w) => {
                    let with = w.with_extension();
                    (Some(w.wwn), w.vendor_extension, Some(with))
                }
                None => (None, None, None),
            }
        } else {
            (None, None, None)
        };
        let nsid = if nvme {
            read_attr(&dir.join("nsid"))?
        } else {
            None
        };
        let controller = match nvme_controller_number(name) {
            Some(n)
                if chain
                    .iter()
                    .any(|c| c.subsystem.as_deref() == Some("nvme-subsystem")) =>
            {
                let ctrl = self.sys_root.join("class/nvme").join(format!("nvme{n}"));
                Some(self.chain(&self.canonical(&ctrl)?)?)
            }
            _ => None,
        };
        let by_path = udev::path_id(
            &chain,
            scsi.as_ref().map(|(_, f)| f),
            nsid.as_deref(),
            controller.as_deref(),
        )
        .map(|id| format!("/dev/disk/by-path/{id}"));
        let tran = udev::transport(name, scsi.as_ref().map(|(n, f)| (n, f)));
        Ok(BlockDevice {
            name: name.to_string(),
            path: self.dev_root.join(name),
            kind,
            parent: None,
            partitions: Vec::new(),
            holders: list_dir(&dir.join("holders"))?,
            size_bytes: read_u64(&dir.join("size"))? * 512,
            logical_sector_size: read_u64(&dir.join("queue/logical_block_size"))? as u32,
            physical_sector_size: read_u64(&dir.join("queue/physical_block_size"))? as u32,
            rotational: read_u64(&dir.join("queue/rotational"))? == 1,
            read_only: read_u64(&dir.join("ro"))? == 1,
            removable: read_u64(&dir.join("removable"))? == 1,
            model: read_attr(&device.join("model"))?,
            vendor: read_attr(&device.join("vendor"))?,
            serial,
            wwn,
            wwn_with_extension,
            wwn_vendor_extension,
            hctl,
            by_path,
            tran,
            is_boot_medium: false,
        })
    }

    fn partition(
        &self,
        name: &str,
        dir: &Path,
        disk: &BlockDevice,
    ) -> Result<BlockDevice, DiskError> {
        let number = read_u64(&dir.join("partition"))?;
        Ok(BlockDevice {
            name: name.to_string(),
            path: self.dev_root.join(name),
            kind: DeviceKind::Partition,
            parent: Some(disk.name.clone()),
            partitions: Vec::new(),
            holders: list_dir(&dir.join("holders"))?,
            size_bytes: read_u64(&dir.join("size"))? * 512,
            logical_sector_size: disk.logical_sector_size,
            physical_sector_size: disk.physical_sector_size,
            rotational: disk.rotational,
            read_only: read_u64(&dir.join("ro"))? == 1,
            removable: disk.removable,
            model: None,
            vendor: None,
            serial: None,
            wwn: None,
            wwn_with_extension: None,
            wwn_vendor_extension: None,
            hctl: None,
            by_path: disk.by_path.as_ref().map(|p| format!("{p}-part{number}")),
            tran: None,
            is_boot_medium: false,
        })
    }

    fn labels(&self, device: &BlockDevice) -> Option<VolumeLabels> {
        let readable = matches!(
            device.kind,
            DeviceKind::Disk | DeviceKind::Rom | DeviceKind::Partition
        );
        if !readable || device.size_bytes < boot::MIN_LABELLED_SIZE {
            return None;
        }
        match boot::read_labels(&device.path) {
            Ok(labels) => Some(labels),
            Err(err) => {
                tracing::warn!(
                    "reading the volume label of {}: {err}",
                    device.path.display()
                );
                None
            }
        }
    }
}

impl BlockDevices for SysfsBlockDevices {
    fn list(&self) -> Result<Vec<BlockDevice>, DiskError> {
        let class = self.sys_root.join("class/block");
        let mut wholes: BTreeMap<String, BlockDevice> = BTreeMap::new();
        let mut parts: Vec<(String, PathBuf)> = Vec::new();
        if !class.is_dir() {
            return Err(io_error(
                &class,
                std::io::Error::new(ErrorKind::NotFound, "no such directory: is sysfs mounted?"),
            ));
        }
        for name in list_dir(&class)? {
            let dir = self.canonical(&class.join(&name))?;
            if read_attr(&dir.join("hidden"))?.as_deref() == Some("1") {
                continue;
            }
            if dir.join("partition").exists() {
                parts.push((name, dir));
            } else {
                let device = self.whole_device(&name, &dir)?;
                wholes.insert(name, device);
            }
        }
        let mut partitions: HashMap<String, Vec<(u64, BlockDevice)>> = HashMap::new();
        for (name, dir) in parts {
            let parent = dir.parent().map(file_name).unwrap_or_default();
            let Some(disk) = wholes.get(&parent) else {
                return Err(DiskError::Parse {
                    path: dir,
                    content: format!("partition {name} of {parent}, which is not listed"),
                });
            };
            let number = read_u64(&dir.join("partition"))?;
            let part = self.partition(&name, &dir, disk)?;
            partitions.entry(parent).or_default().push((number, part));
        }
        let mut out = Vec::new();
        for (name, mut disk) in wholes {
            let mut own = partitions.remove(&name).unwrap_or_default();
            own.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.name.cmp(&b.1.name)));
            disk.partitions = own.iter().map(|(_, p)| p.name.clone()).collect();
            out.push(disk);
            out.extend(own.into_iter().map(|(_, p)| p));
        }
        let labels: HashMap<String, VolumeLabels> = out
            .iter()
            .filter_map(|d| Some((d.name.clone(), self.labels(d)?)))
            .collect();
        boot::mark_boot_media(&mut out, &labels, &self.boot_labels);
        Ok(out)
    }
}

/// NVMe namespaces: `nvme<ctrl>n<ns>`; not the hidden per-path `nvme<ctrl>c<path>n<ns>`.
fn is_nvme_namespace(name: &str) -> bool {
    nvme_controller_number(name).is_some()
}

fn nvme_controller_number(name: &str) -> Option<u32> {
    let (ctrl, ns) = name.strip_prefix("nvme")?.split_once('n')?;
    ns.parse::<u32>().ok()?;
    ctrl.parse().ok()
}

fn kind_of(name: &str, devpath: &str, device: &Path) -> Result<DeviceKind, DiskError> {
    if name.starts_with("md") && devpath.starts_with("devices/virtual/") {
        return Ok(DeviceKind::Raid);
    }
    if name.starts_with("sr") || read_attr(&device.join("type"))?.as_deref() == Some("5") {
        return Ok(DeviceKind::Rom);
    }
    if is_nvme_namespace(name) {
        return Ok(DeviceKind::Disk);
    }
    if devpath.starts_with("devices/virtual/") || name.starts_with("fd") {
        return Ok(DeviceKind::Virtual);
    }
    Ok(DeviceKind::Disk)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn io_error(path: &Path, source: std::io::Error) -> DiskError {
    DiskError::Read {
        path: path.to_path_buf(),
        source,
    }
}

/// Entry names of a directory, sorted; a missing directory has none.
fn list_dir(dir: &Path) -> Result<Vec<String>, DiskError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(dir, e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// A binary attribute; `None` when absent, or when the kernel answers ENXIO or ENODEV: the device
/// lacks the data (e.g. `device/wwid` of a CD drive without VPD page 0x83, as QEMU's ATAPI
/// and USB CD drives are, so every VM booted from virtual media has one).
fn read_bytes(path: &Path) -> Result<Option<Vec<u8>>, DiskError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENXIO) | Some(libc::ENODEV)) => Ok(None),
        Err(e) => Err(io_error(path, e)),
    }
}

/// A text attribute, trimmed; `None` when absent or blank.
fn read_attr(path: &Path) -> Result<Option<String>, DiskError> {
    Ok(read_bytes(path)?.and_then(|bytes| {
        let text = String::from_utf8_lossy(&bytes);
        let text = text.trim_matches(|c: char| c.is_whitespace() || c == '\0');
        (!text.is_empty()).then(|| text.to_string())
    }))
}

/// A required decimal attribute.
fn read_u64(path: &Path) -> Result<u64, DiskError> {
    let text = read_attr(path)?.ok_or_else(|| {
        io_error(
            path,
            std::io::Error::new(ErrorKind::NotFound, "missing or empty"),
        )
    })?;
    text.parse().map_err(|_| DiskError::Parse {
        path: path.to_path_buf(),
        content: text,
    })
}

#[cfg(test)]
#[path = "sysfs_tests.rs"]
mod tests;
