//! Which modules go into the ramdisk: the default table (documented in
//! docs/image-builder.md, kept in sync by a test), `--add-module`, `--drop-module`, and
//! the closure over `depends=` (required) and `softdep=` (taken when present).

use std::collections::{BTreeMap, BTreeSet};

use crate::modindex::ModuleIndex;
use crate::modinfo::normalize;

/// One row of the default selection: a path below `lib/modules/<version>/kernel/`, either
/// a directory (every module below it) or one `.ko` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultEntry {
    pub path: &'static str,
    pub why: &'static str,
}

const fn row(path: &'static str, why: &'static str) -> DefaultEntry {
    DefaultEntry { path, why }
}

/// The default driver set: operators boot unknown servers, so every storage controller,
/// NIC, USB mass-storage path, CD-ROM and the filesystems the agent mounts.
pub const DEFAULT_MODULES: &[DefaultEntry] = &[
    row("drivers/net/ethernet", "wired NICs of every vendor"),
    row("drivers/net/virtio_net.ko", "virtio NIC (VMs)"),
    row("drivers/net/vmxnet3", "VMware NIC"),
    row("drivers/net/bonding", "bonds from network_data.json"),
    row("net/8021q", "VLANs from network_data.json"),
    row(
        "drivers/scsi",
        "SAS/SATA/RAID/FC HBAs, SCSI disks (sd_mod) and CDs (sr_mod), virtio-scsi",
    ),
    row("drivers/message/fusion", "LSI MPT Fusion HBAs"),
    row("drivers/ata", "SATA/PATA controllers (ahci, ata_piix)"),
    row("drivers/nvme/host/nvme.ko", "NVMe disks over PCIe"),
    row("drivers/block/virtio_blk.ko", "virtio disks (VMs)"),
    row("drivers/block/xen-blkfront.ko", "Xen disks"),
    row("drivers/block/mtip32xx", "Micron PCIe SSDs"),
    row(
        "drivers/block/floppy.ko",
        "Ironic's ir-vfd-dev virtual floppy",
    ),
    row("drivers/block/loop.ko", "loop devices for image files"),
    row("drivers/virtio", "virtio transports (PCI, MMIO)"),
    row(
        "drivers/usb/host",
        "USB host controllers (xHCI, EHCI, OHCI, UHCI)",
    ),
    row(
        "drivers/usb/storage",
        "USB mass storage and UAS: BMC virtual media, USB sticks",
    ),
    row("drivers/cdrom", "CD-ROM layer"),
    row("fs/isofs", "the boot ISO and config-2 drives"),
    row("fs/fat", "vfat: virtual floppy, ESPs"),
    row("fs/nls/nls_cp437.ko", "vfat's default codepage"),
    row("fs/nls/nls_ascii.ko", "vfat's default iocharset"),
    row("fs/nls/nls_utf8.ko", "UTF-8 names (iocharset=utf8)"),
    row("fs/nls/nls_iso8859-1.ko", "Latin-1 names"),
    row("fs/efivarfs", "EFI variables (boot entries)"),
    row(
        "fs/ext4",
        "ext4 root file systems of partition images (GRUB install)",
    ),
    row(
        "fs/xfs",
        "XFS root file systems of partition images (GRUB install)",
    ),
    row(
        "crypto/crc32c_generic.ko",
        "crc32c: ext4 and XFS metadata checksums",
    ),
];

/// Why a selection cannot be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectionError {
    #[error("no module or alias named {0} in this kernel")]
    Unknown(String),
    #[error("cannot drop {dropped}: {} depend on it", .needed_by.join(", "))]
    DroppedButNeeded {
        dropped: String,
        needed_by: Vec<String>,
    },
    #[error("{module} depends on {dependency}, which is neither a module nor built in")]
    MissingDependency { module: String, dependency: String },
}

/// The chosen modules (canonical names) and remarks worth printing.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Selection {
    pub modules: BTreeSet<String>,
    pub notes: Vec<String>,
}

fn matches_entry(rel_path: &str, entry: &DefaultEntry) -> bool {
    let Some(below) = rel_path.strip_prefix("kernel/") else {
        return false;
    };
    below == entry.path
        || below
            .strip_prefix(entry.path)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Computes the module set from `defaults`, then `add`, minus `drop`, closed over
/// dependencies. `add` takes names or aliases; `drop` takes names.
pub fn select(
    index: &ModuleIndex,
    defaults: &[DefaultEntry],
    add: &[String],
    drop: &[String],
) -> Result<Selection, SelectionError> {
    let mut notes = Vec::new();
    let mut seeds = BTreeSet::new();
    for entry in defaults {
        let before = seeds.len();
        let mut matched = false;
        for m in index
            .modules
            .values()
            .filter(|m| matches_entry(&m.rel_path, entry))
        {
            matched = true;
            seeds.insert(m.name.clone());
        }
        if !matched {
            notes.push(format!(
                "default entry {} matches no module in this kernel",
                entry.path
            ));
        } else if seeds.len() == before {
            notes.push(format!("default entry {} adds nothing new", entry.path));
        }
    }
    for wanted in add {
        let name = normalize(wanted);
        if index.modules.contains_key(&name) {
            seeds.insert(name);
        } else if index.builtin.contains(&name) {
            notes.push(format!("{wanted} is built into the kernel: nothing to add"));
        } else {
            let owners = index.by_alias(wanted);
            if owners.is_empty() {
                return Err(SelectionError::Unknown(wanted.clone()));
            }
            notes.push(format!("{wanted} is an alias of {}", owners.join(", ")));
            seeds.extend(owners.into_iter().map(str::to_owned));
        }
    }
    let mut dropped = BTreeSet::new();
    for unwanted in drop {
        let name = normalize(unwanted);
        if !index.modules.contains_key(&name) {
            return Err(SelectionError::Unknown(unwanted.clone()));
        }
        seeds.remove(&name);
        dropped.insert(name);
    }

    let mut selected = BTreeSet::new();
    let mut needed_by: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut work: Vec<String> = seeds.into_iter().collect();
    while let Some(name) = work.pop() {
        if !selected.insert(name.clone()) {
            continue;
        }
        let Some(module) = index.modules.get(&name) else {
            continue;
        };
        for dep in &module.info.depends {
            if dropped.contains(dep) {
                needed_by
                    .entry(dep.clone())
                    .or_default()
                    .insert(name.clone());
            } else if index.modules.contains_key(dep) {
                work.push(dep.clone());
            } else if !index.builtin.contains(dep) {
                return Err(SelectionError::MissingDependency {
                    module: name.clone(),
                    dependency: dep.clone(),
                });
            }
        }
        for soft in module.info.softdep_names() {
            let soft_name = normalize(&soft);
            if index.modules.contains_key(&soft_name) {
                if !dropped.contains(&soft_name) {
                    work.push(soft_name);
                }
            } else if !index.builtin.contains(&soft_name) {
                let owners = index.by_alias(&soft);
                if owners.is_empty() {
                    notes.push(format!(
                        "{name}: optional softdep {soft} is not in this kernel"
                    ));
                }
                work.extend(
                    owners
                        .into_iter()
                        .filter(|o| !dropped.contains(*o))
                        .map(str::to_owned),
                );
            }
        }
    }
    if let Some((dropped, users)) = needed_by.into_iter().next() {
        return Err(SelectionError::DroppedButNeeded {
            dropped,
            needed_by: users.into_iter().collect(),
        });
    }
    for name in &dropped {
        notes.push(format!("dropped {name}"));
    }
    Ok(Selection {
        modules: selected,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modindex::Module;
    use crate::modinfo::ModInfo;

    /// A synthetic kernel shaped like the lab notes' NVMe and CD chains.
    fn index() -> ModuleIndex {
        let m = |path: &str, depends: &[&str], softdeps: &[&str], aliases: &[&str]| {
            let name = normalize(path.rsplit('/').next().unwrap().trim_end_matches(".ko"));
            Module {
                name: name.clone(),
                rel_path: format!("kernel/{path}"),
                info: ModInfo {
                    name,
                    depends: depends.iter().map(|d| normalize(d)).collect(),
                    softdeps: softdeps.iter().map(|s| s.to_string()).collect(),
                    aliases: aliases.iter().map(|s| s.to_string()).collect(),
                    firmware: vec![],
                },
            }
        };
        ModuleIndex::new(
            vec![
                m(
                    "drivers/nvme/host/nvme.ko",
                    &["nvme-core"],
                    &[],
                    &["pci:v*d*sv*sd*bc01sc08i02*"],
                ),
                m("drivers/nvme/host/nvme-core.ko", &["t10-pi"], &[], &[]),
                m(
                    "block/t10-pi.ko",
                    &["crc-t10dif", "crc64-rocksoft"],
                    &[],
                    &[],
                ),
                m(
                    "lib/crc-t10dif.ko",
                    &["crct10dif_common"],
                    &["pre: crct10dif"],
                    &[],
                ),
                m(
                    "crypto/crct10dif_generic.ko",
                    &["crct10dif_common"],
                    &[],
                    &["crct10dif"],
                ),
                m("crypto/crct10dif_common.ko", &[], &[], &[]),
                m("lib/crc64-rocksoft.ko", &["crc64"], &[], &[]),
                m("lib/crc64.ko", &[], &[], &[]),
                m(
                    "fs/isofs/isofs.ko",
                    &["cdrom"],
                    &[],
                    &["iso9660", "fs-iso9660"],
                ),
                m("drivers/cdrom/cdrom.ko", &[], &[], &[]),
                m(
                    "drivers/scsi/sr_mod.ko",
                    &["cdrom", "scsi_mod"],
                    &["pre: missing_thing"],
                    &[],
                ),
                m("drivers/net/ethernet/intel/e1000/e1000.ko", &[], &[], &[]),
                m(
                    "drivers/net/ethernet/intel/e1000e/e1000e.ko",
                    &["ptp"],
                    &[],
                    &[],
                ),
            ],
            // scsi_mod and ptp are built in here.
            BTreeSet::from(["scsi_mod".to_owned(), "ptp".to_owned()]),
        )
        .unwrap()
    }

    fn names(s: &Selection) -> Vec<&str> {
        s.modules.iter().map(String::as_str).collect()
    }

    const NVME: &[DefaultEntry] = &[row("drivers/nvme/host/nvme.ko", "test")];

    #[test]
    fn closes_over_depends_and_softdeps() {
        let s = select(&index(), NVME, &[], &[]).unwrap();
        assert_eq!(
            names(&s),
            [
                "crc64",
                "crc64_rocksoft",
                "crc_t10dif",
                "crct10dif_common",
                "crct10dif_generic", // softdep by alias crypto-crct10dif (dash kept)
                "nvme",
                "nvme_core",
                "t10_pi",
            ]
        );
        assert!(s.notes.is_empty(), "{:?}", s.notes);
    }

    #[test]
    fn directories_match_whole_components_only() {
        let dirs = [row("drivers/net/ethernet/intel/e1000", "test")];
        assert_eq!(
            names(&select(&index(), &dirs, &[], &[]).unwrap()),
            ["e1000"]
        );
        let all = [
            row("drivers/net/ethernet", "test"),
            row("drivers/nowhere", "test"),
        ];
        let s = select(&index(), &all, &[], &[]).unwrap();
        assert_eq!(names(&s), ["e1000", "e1000e"]); // ptp is built in
        assert_eq!(
            s.notes,
            ["default entry drivers/nowhere matches no module in this kernel"]
        );
    }

    #[test]
    fn add_by_name_or_alias() {
        let s = select(&index(), &[], &["iso9660".into(), "sr-mod".into()], &[]).unwrap();
        assert_eq!(names(&s), ["cdrom", "isofs", "sr_mod"]);
        assert!(s.notes.contains(&"iso9660 is an alias of isofs".to_owned()));
        assert!(s
            .notes
            .contains(&"sr_mod: optional softdep missing_thing is not in this kernel".to_owned()));
        let s = select(&index(), &[], &["scsi_mod".into()], &[]).unwrap();
        assert!(s.modules.is_empty());
        assert_eq!(
            s.notes,
            ["scsi_mod is built into the kernel: nothing to add"]
        );
        assert_eq!(
            select(&index(), &[], &["nosuch".into()], &[]),
            Err(SelectionError::Unknown("nosuch".into()))
        );
    }

    #[test]
    fn drop_removes_leaves_and_refuses_needed_modules() {
        let s = select(&index(), NVME, &[], &["crct10dif_generic".into()]).unwrap();
        assert!(!s.modules.contains("crct10dif_generic"));
        assert_eq!(s.notes, ["dropped crct10dif_generic"]);
        let err = select(&index(), NVME, &[], &["crc64".into()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot drop crc64: crc64_rocksoft depend on it"
        );
        let both = [row("fs/isofs", "t"), row("drivers/scsi/sr_mod.ko", "t")];
        let err = select(&index(), &both, &[], &["cdrom".into()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot drop cdrom: isofs, sr_mod depend on it"
        );
        let s = select(&index(), &both, &[], &["isofs".into()]).unwrap();
        assert_eq!(names(&s), ["cdrom", "sr_mod"]);
        assert!(matches!(
            select(&index(), NVME, &[], &["nope".into()]),
            Err(SelectionError::Unknown(_))
        ));
    }

    #[test]
    fn missing_hard_dependency_is_an_error() {
        let mut idx = index();
        idx.builtin.remove("ptp");
        let err = select(&idx, &[row("drivers/net/ethernet", "t")], &[], &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "e1000e depends on ptp, which is neither a module nor built in"
        );
    }

    /// docs/image-builder.md carries the same table; they must not drift.
    #[test]
    fn default_table_is_documented() {
        let doc = include_str!("../../docs/image-builder.md");
        let start = doc
            .find("<!-- default-modules:start -->")
            .expect("start marker");
        let end = doc
            .find("<!-- default-modules:end -->")
            .expect("end marker");
        let rows: Vec<&str> = doc[start..end]
            .lines()
            .filter(|l| l.starts_with("| `"))
            .collect();
        let want: Vec<String> = DEFAULT_MODULES
            .iter()
            .map(|e| format!("| `{}` | {} |", e.path, e.why))
            .collect();
        assert_eq!(
            rows, want,
            "docs/image-builder.md and DEFAULT_MODULES differ"
        );
    }
}
