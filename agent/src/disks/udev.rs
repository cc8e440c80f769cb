//! What udev and lsblk would say about a block device, derived from sysfs alone: serial and
//! WWN from SCSI VPD pages, the lsblk transport and udev's `path_id` (`/dev/disk/by-path`).
//!
//! Everything here is a pure function over bytes or over [`SysNode`]s, the device chain
//! from the block device up to the root of `/sys/devices`, which `sysfs.rs` reads.
//! docs/disks.md says which rule each value follows.

/// One device directory in the chain above a block device (a directory with `uevent`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SysNode {
    /// Directory name, e.g. `0000:00:1f.2`, `2:0:0:0`, `host2`, `nvme0`.
    pub sysname: String,
    /// Path below the sysfs root, e.g. `devices/pci0000:00/0000:00:1f.2/ata1/host0`.
    pub devpath: String,
    /// Name of the `subsystem` link's target: `pci`, `scsi`, `usb`, `virtio`, `nvme`, ...
    pub subsystem: Option<String>,
    /// `DEVTYPE=` of its `uevent`: `scsi_device`, `scsi_host`, `usb_interface`, ...
    pub devtype: Option<String>,
}

/// The SCSI facts `path_id` and lsblk need, read from sysfs by the caller.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScsiFacts {
    /// `port_no` of the ATA port (`ataN/ata_port/ataN/port_no`), for ATA disks.
    pub ata_port_no: Option<String>,
    /// Smallest `hostN` number among the siblings of the SCSI host, for `scsi-H:C:T:L`.
    pub first_host: Option<u32>,
    /// Which transport classes the SCSI host has: `fc_host`, `sas_host`, `iscsi_host`,
    /// `spi_host` directories, or a `sas_device` directory on the SCSI device.
    pub transport_classes: Vec<String>,
    /// `scsi_host/hostN/proc_name`, the low-level driver (`ahci`, `ata_piix`, `virtio_scsi`).
    pub proc_name: Option<String>,
}

/// Unit serial number from VPD page 0x80 (`device/vpd_pg80`), trimmed.
pub fn vpd80_serial(page: &[u8]) -> Option<String> {
    if page.len() < 4 || page[1] != 0x80 {
        return None;
    }
    let len = u16::from_be_bytes([page[2], page[3]]) as usize;
    let body = page.get(4..4 + len).unwrap_or(&page[4..]);
    let text = String::from_utf8_lossy(body);
    let serial = text.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    (!serial.is_empty()).then(|| serial.to_string())
}

/// WWN as udev's `scsi_id` sets it: `(ID_WWN, ID_WWN_VENDOR_EXTENSION)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wwn {
    /// `0x` + the first 8 bytes of the NAA designator, lowercase hex.
    pub wwn: String,
    /// `0x` + bytes 8..16 of an NAA 6 (registered extended) designator.
    pub vendor_extension: Option<String>,
}

impl Wwn {
    /// `ID_WWN_WITH_EXTENSION`: the WWN followed by the extension's hex digits.
    pub fn with_extension(&self) -> String {
        match &self.vendor_extension {
            Some(ext) => format!("{}{}", self.wwn, ext.trim_start_matches("0x")),
            None => self.wwn.clone(),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The logical unit's NAA designator from VPD page 0x83 (`device/vpd_pg83`).
pub fn vpd83_wwn(page: &[u8]) -> Option<Wwn> {
    if page.len() < 4 || page[1] != 0x83 {
        return None;
    }
    let end = (4 + u16::from_be_bytes([page[2], page[3]]) as usize).min(page.len());
    let mut at = 4;
    while at + 4 <= end {
        let association = (page[at + 1] >> 4) & 0x3;
        let designator_type = page[at + 1] & 0xf;
        let len = page[at + 3] as usize;
        let body = page.get(at + 4..at + 4 + len)?;
        // Type 3 = NAA, association 0 = the logical unit (not the port or target).
        if designator_type == 3 && association == 0 && len >= 8 {
            return Some(naa_wwn(body));
        }
        at += 4 + len;
    }
    None
}

fn naa_wwn(body: &[u8]) -> Wwn {
    let naa = body[0] >> 4;
    let vendor_extension =
        (naa == 6 && body.len() >= 16).then(|| format!("0x{}", hex(&body[8..16])));
    Wwn {
        wwn: format!("0x{}", hex(&body[..8])),
        vendor_extension,
    }
}

/// The kernel's SCSI `device/wwid` (`naa.5000c500a0b1c2d3`) as a WWN, for SCSI devices
/// without `vpd_pg83`. Other designator kinds (`t10.`, `eui.`) are not WWNs for udev.
pub fn scsi_wwid_wwn(wwid: &str) -> Option<Wwn> {
    let digits = wwid.trim().strip_prefix("naa.")?.to_ascii_lowercase();
    if digits.len() < 16 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let vendor_extension =
        (digits.starts_with('6') && digits.len() >= 32).then(|| format!("0x{}", &digits[16..32]));
    Some(Wwn {
        wwn: format!("0x{}", &digits[..16]),
        vendor_extension,
    })
}

/// HCTL of a SCSI device name such as `2:0:0:0`.
pub fn parse_hctl(name: &str) -> Option<[u32; 4]> {
    let mut parts = name.split(':').map(|p| p.parse::<u32>().ok());
    let hctl = [
        parts.next()??,
        parts.next()??,
        parts.next()??,
        parts.next()??,
    ];
    parts.next().is_none().then_some(hctl)
}

/// lsblk's TRAN column (util-linux `get_transport`): SCSI transports by host class, then by
/// the name of the block device.
pub fn transport(name: &str, scsi: Option<(&SysNode, &ScsiFacts)>) -> Option<String> {
    if let Some((dev, facts)) = scsi {
        let has = |class: &str| facts.transport_classes.iter().any(|c| c == class);
        let tran = if has("spi_host") {
            Some("spi")
        } else if has("fc_host") {
            Some("fc")
        } else if has("sas_host") || has("sas_device") {
            Some("sas")
        } else if has("iscsi_host") {
            Some("iscsi")
        } else if dev.devpath.contains("usb") {
            Some("usb")
        } else {
            let proc_name = facts.proc_name.as_deref().unwrap_or("");
            if proc_name.starts_with("ahci") || proc_name.starts_with("sata") {
                Some("sata")
            } else if proc_name.contains("ata") {
                Some("ata")
            } else {
                None
            }
        };
        return tran.map(String::from);
    }
    let tran = if name.starts_with("nvme") {
        "nvme"
    } else if name.starts_with("vd") {
        "virtio"
    } else if name.starts_with("mmcblk") {
        "mmc"
    } else {
        return None;
    };
    Some(tran.to_string())
}

/// udev's `path_id` for a whole disk: the `ID_PATH` whose link is
/// `/dev/disk/by-path/<ID_PATH>`. `chain` starts at the block device and goes up; `nsid` is
/// the namespace's `nsid` for NVMe; `nvme_controller` is the chain of the real controller
/// (`/sys/class/nvme/nvmeN`) when the namespace sits under `nvme-subsystem` (multipath).
pub fn path_id(
    chain: &[SysNode],
    scsi: Option<&ScsiFacts>,
    nsid: Option<&str>,
    nvme_controller: Option<&[SysNode]>,
) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    let mut supported_parent = false;
    let mut supported_transport = false;
    let mut nodes: &[SysNode] = chain;
    let mut i = 0;
    while i < nodes.len() {
        let node = &nodes[i];
        match node.subsystem.as_deref() {
            Some("scsi") if node.devtype.as_deref() == Some("scsi_device") => {
                supported_transport = true;
                let facts = scsi?;
                let [host, bus, target, lun] = parse_hctl(&node.sysname)?;
                let path = &node.devpath;
                if path.contains("/rport-")
                    || path.contains("/end_device-")
                    || path.contains("/session")
                {
                    // Fibre Channel, SAS and iSCSI names need the transport's remote port
                    // attributes; rivet does not derive them (docs/disks.md).
                    return None;
                }
                if path.contains("/ata") {
                    let port = facts.ata_port_no.as_deref()?;
                    parts.push(format!("ata-{port}"));
                } else {
                    let host = host.checked_sub(facts.first_host?)?;
                    parts.push(format!("scsi-{host}:{bus}:{target}:{lun}"));
                    // Continue above the SCSI host.
                    i = nodes
                        .iter()
                        .position(|n| n.devtype.as_deref() == Some("scsi_host"))?;
                }
            }
            Some("usb")
                if matches!(
                    node.devtype.as_deref(),
                    Some("usb_interface" | "usb_device")
                ) =>
            {
                let port = node.sysname.split_once('-').map(|(_, p)| p)?;
                parts.push(format!("usb-0:{port}"));
                supported_transport = true;
                i = skip_subsystem(nodes, i, "usb");
            }
            Some("pci") => {
                parts.push(format!("pci-{}", node.sysname));
                supported_parent = true;
                i = skip_subsystem(nodes, i, "pci");
            }
            Some("platform") => {
                parts.push(format!("platform-{}", node.sysname));
                supported_parent = true;
                i = skip_subsystem(nodes, i, "platform");
            }
            Some("acpi") => {
                parts.push(format!("acpi-{}", node.sysname));
                supported_parent = true;
                i = skip_subsystem(nodes, i, "acpi");
            }
            Some("virtio") => {
                supported_transport = true;
                i = skip_subsystem(nodes, i, "virtio");
            }
            Some(sub @ ("nvme" | "nvme-subsystem")) => {
                if let Some(nsid) = nsid {
                    parts.push(format!("nvme-{nsid}"));
                    supported_parent = true;
                    supported_transport = true;
                    if sub == "nvme-subsystem" {
                        nodes = nvme_controller?;
                        i = 0;
                    }
                    i = skip_subsystem(nodes, i, "nvme");
                }
            }
            _ => {}
        }
        i += 1;
    }
    if parts.is_empty() || !supported_parent || !supported_transport {
        return None;
    }
    parts.reverse();
    Some(parts.join("-"))
}

/// Index of the last node, from `i` upwards, that belongs to `subsystem`.
fn skip_subsystem(nodes: &[SysNode], mut i: usize, subsystem: &str) -> usize {
    while i + 1 < nodes.len() && nodes[i + 1].subsystem.as_deref() == Some(subsystem) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(devpath: &str, subsystem: &str, devtype: Option<&str>) -> SysNode {
        SysNode {
            sysname: devpath.rsplit('/').next().unwrap_or(devpath).to_string(),
            devpath: devpath.to_string(),
            subsystem: Some(subsystem.to_string()),
            devtype: devtype.map(String::from),
        }
    }

    #[test]
    fn vpd80_serial_is_trimmed() {
        let mut page = vec![0, 0x80, 0, 12];
        page.extend_from_slice(b"  S3Z1NB0K  ");
        assert_eq!(vpd80_serial(&page).as_deref(), Some("S3Z1NB0K"));
        assert_eq!(vpd80_serial(&[0, 0x83, 0, 0]), None);
        assert_eq!(vpd80_serial(&[0, 0x80, 0, 2, b' ', 0]), None);
    }

    #[test]
    fn vpd83_takes_the_logical_unit_naa() {
        // A T10 vendor id descriptor, a port NAA (association 1), then the LU's NAA 6.
        let mut page = vec![0, 0x83, 0, 0];
        page.extend_from_slice(&[0x02, 0x01, 0, 4]);
        page.extend_from_slice(b"ATA ");
        page.extend_from_slice(&[0x01, 0x13, 0, 8, 0x51, 1, 2, 3, 4, 5, 6, 7]);
        page.extend_from_slice(&[0x01, 0x03, 0, 16]);
        page.extend_from_slice(&[0x60, 0x0a, 0x0b, 0x80, 0, 0x11, 0x11, 0x55]);
        page.extend_from_slice(&[0, 0, 0xe1, 0xc3, 0x4d, 0x1b, 0x6b, 0x92]);
        let len = (page.len() - 4) as u16;
        page[2..4].copy_from_slice(&len.to_be_bytes());
        let wwn = vpd83_wwn(&page).expect("an NAA designator");
        assert_eq!(wwn.wwn, "0x600a0b8000111155");
        assert_eq!(wwn.vendor_extension.as_deref(), Some("0x0000e1c34d1b6b92"));
        assert_eq!(wwn.with_extension(), "0x600a0b80001111550000e1c34d1b6b92");
    }

    #[test]
    fn kernel_wwid_naa_forms() {
        let wwn = scsi_wwid_wwn("naa.5000C500A0B1C2D3\n").expect("naa");
        assert_eq!(
            (wwn.wwn.as_str(), wwn.vendor_extension),
            ("0x5000c500a0b1c2d3", None)
        );
        assert_eq!(scsi_wwid_wwn("t10.ATA     QEMU HARDDISK"), None);
    }

    #[test]
    fn hctl_needs_four_numbers() {
        assert_eq!(parse_hctl("1:0:0:0"), Some([1, 0, 0, 0]));
        assert_eq!(parse_hctl("target1:0:0"), None);
        assert_eq!(parse_hctl("1:0:0:0:0"), None);
    }

    #[test]
    fn lsblk_transports() {
        let dev = node(
            "devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0",
            "scsi",
            None,
        );
        let facts = |proc_name: &str, classes: &[&str]| ScsiFacts {
            proc_name: Some(proc_name.into()),
            transport_classes: classes.iter().map(|c| c.to_string()).collect(),
            ..ScsiFacts::default()
        };
        let tran = |f: &ScsiFacts| transport("sda", Some((&dev, f)));
        assert_eq!(tran(&facts("ahci", &[])).as_deref(), Some("sata"));
        assert_eq!(tran(&facts("ata_piix", &[])).as_deref(), Some("ata"));
        assert_eq!(tran(&facts("virtio_scsi", &[])), None);
        assert_eq!(
            tran(&facts("mpt3sas", &["sas_host"])).as_deref(),
            Some("sas")
        );
        assert_eq!(tran(&facts("qla2xxx", &["fc_host"])).as_deref(), Some("fc"));
        assert_eq!(
            tran(&facts("iscsi_tcp", &["iscsi_host"])).as_deref(),
            Some("iscsi")
        );
        let usb = node(
            "devices/pci0000:00/0000:00:04.0/usb1/1-1/1-1:1.0/host6/target6:0:0/6:0:0:0",
            "scsi",
            None,
        );
        assert_eq!(
            transport("sdb", Some((&usb, &facts("usb-storage", &[])))).as_deref(),
            Some("usb")
        );
        assert_eq!(transport("nvme0n1", None).as_deref(), Some("nvme"));
        assert_eq!(transport("vda", None).as_deref(), Some("virtio"));
        assert_eq!(transport("loop0", None), None);
    }

    #[test]
    fn path_id_of_usb_storage() {
        let chain = vec![
            node("devices/pci0000:00/0000:00:04.0/usb1/1-1/1-1:1.0/host6/target6:0:0/6:0:0:0/block/sdb", "block", Some("disk")),
            node("devices/pci0000:00/0000:00:04.0/usb1/1-1/1-1:1.0/host6/target6:0:0/6:0:0:0", "scsi", Some("scsi_device")),
            node("devices/pci0000:00/0000:00:04.0/usb1/1-1/1-1:1.0/host6/target6:0:0", "scsi", Some("scsi_target")),
            node("devices/pci0000:00/0000:00:04.0/usb1/1-1/1-1:1.0/host6", "scsi", Some("scsi_host")),
            node("devices/pci0000:00/0000:00:04.0/usb1/1-1/1-1:1.0", "usb", Some("usb_interface")),
            node("devices/pci0000:00/0000:00:04.0/usb1/1-1", "usb", Some("usb_device")),
            node("devices/pci0000:00/0000:00:04.0/usb1", "usb", Some("usb_device")),
            node("devices/pci0000:00/0000:00:04.0", "pci", None),
        ];
        let facts = ScsiFacts {
            first_host: Some(6),
            ..ScsiFacts::default()
        };
        assert_eq!(
            path_id(&chain, Some(&facts), None, None).as_deref(),
            Some("pci-0000:00:04.0-usb-0:1:1.0-scsi-0:0:0:0")
        );
    }

    #[test]
    fn path_id_needs_a_known_parent_and_transport() {
        let loop0 = vec![node("devices/virtual/block/loop0", "block", Some("disk"))];
        assert_eq!(path_id(&loop0, None, None, None), None);
        let md = vec![
            node("devices/platform/foo/block/mmcblk0", "block", Some("disk")),
            node("devices/platform/foo", "platform", None),
        ];
        assert_eq!(
            path_id(&md, None, None, None),
            None,
            "platform parent, no transport"
        );
    }
}
