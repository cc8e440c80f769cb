//! The hardware inventory IPA reports (spec §7.1), read from procfs, sysfs, the SMBIOS
//! tables and ioctls, without lshw, lsblk, udev or ipmitool. docs/inventory.md lists where
//! each field comes from.
//!
//! [`collect`] times each part and keeps going when one fails: the failure is reported in
//! [`Collected::errors`] (inspection's `error`) and the part keeps an empty value.

pub mod bmc;
pub mod cpu;
pub mod disks;
pub mod dmi;
pub mod hostfs;
pub mod ipmi;
pub mod memory;
pub mod nics;
pub mod numa;
pub mod pci;
pub mod smbios;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rivet_protocol::inventory::{
    BootInfo, BootMode, Cpu, Firmware, Inventory, LldpTlv, Memory, NetworkInterface, SystemVendor,
};
use rivet_protocol::JsonObject;

use crate::disks::{BlockDevices, DiskError};
use crate::net::interfaces::{NetError, NetInfo, SysfsNetInfo};
pub use hostfs::HostFs;
use ipmi::{DevIpmi, Ipmi};
use smbios::{Smbios, SmbiosError};

/// Errors of one inventory part.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("listing {path}: {source}")]
    List {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(transparent)]
    Disk(#[from] DiskError),
    #[error(transparent)]
    Smbios(#[from] SmbiosError),
}

/// Where the inventory comes from.
#[derive(Clone)]
pub struct HostSources {
    /// `/` on a machine; a fixture tree in tests.
    pub fs: HostFs,
    /// `uname -m`.
    pub machine: String,
    pub net: Arc<dyn NetInfo>,
    pub disks: Arc<dyn BlockDevices>,
    pub ipmi: Arc<dyn Ipmi>,
}

impl HostSources {
    /// This machine, with the given block device listing.
    pub fn live(disks: Arc<dyn BlockDevices>) -> Self {
        HostSources {
            fs: HostFs::new("/"),
            machine: machine(),
            net: Arc::new(SysfsNetInfo::default()),
            disks,
            ipmi: Arc::new(DevIpmi::find(std::path::Path::new("/"))),
        }
    }
}

/// `uname -m`.
pub fn machine() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.machine().to_string_lossy().into_owned())
        .unwrap_or_else(|_| std::env::consts::ARCH.to_string())
}

/// Choices that do not come from the hardware.
#[derive(Debug, Clone, Default)]
pub struct InventoryOptions {
    /// Lookup said `agent_skip_bmc_detect` (Redfish management): BMC fields stay null.
    pub skip_bmc: bool,
    /// `BOOTIF`, reported verbatim as `boot.pxe_interface`.
    pub bootif: Option<String>,
    /// Raw LLDP per interface for `interfaces[].lldp` (`ipa-collect-lldp`); `None` leaves
    /// it null.
    pub interface_lldp: Option<BTreeMap<String, Vec<LldpTlv>>>,
}

/// An inventory and how it was collected.
#[derive(Debug, Clone)]
pub struct Collected {
    pub inventory: Inventory,
    /// The parsed SMBIOS tables (for the `dmi-decode` collector); `None` when unreadable.
    pub smbios: Option<Smbios>,
    /// One message per part that failed.
    pub errors: Vec<String>,
    /// How long each part took, in collection order.
    pub timings: Vec<(&'static str, Duration)>,
}

/// Collects the inventory. The BMC (IPMI round trips) and the disks are read on their own
/// threads while the rest is read from files.
pub fn collect(sources: &HostSources, options: &InventoryOptions) -> Collected {
    let mut errors = Vec::new();
    let mut timings = Vec::new();
    let (bmc, disks, rest) = std::thread::scope(|scope| {
        let bmc = (!options.skip_bmc).then(|| {
            scope.spawn(|| timed(|| Ok::<_, InventoryError>(bmc::detect(sources.ipmi.as_ref()))))
        });
        let disks = scope.spawn(|| {
            timed(|| {
                let devices = sources.disks.list()?;
                Ok::<_, InventoryError>(disks::inventory_disks(&devices))
            })
        });
        let rest = collect_files(sources, options);
        (bmc.map(|h| h.join()), disks.join(), rest)
    });
    let FileParts {
        smbios,
        system_vendor,
        cpu,
        memory,
        interfaces,
        hostname,
        report,
    } = rest;
    timings.extend(report.iter().map(|(name, took, _)| (*name, *took)));
    errors.extend(report.into_iter().filter_map(|(_, _, error)| error));

    let disks = match disks {
        Ok((Ok(disks), took)) => {
            timings.push(("disks", took));
            disks
        }
        Ok((Err(e), took)) => {
            timings.push(("disks", took));
            errors.push(format!("disks: {e}"));
            Vec::new()
        }
        Err(_) => {
            errors.push("disks: the listing thread panicked".to_string());
            Vec::new()
        }
    };
    let bmc = match bmc {
        None => bmc::BmcAddresses::default(),
        Some(Ok((Ok(found), took))) => {
            timings.push(("bmc", took));
            found
        }
        Some(Ok((Err(e), took))) => {
            timings.push(("bmc", took));
            errors.push(format!("bmc: {e}"));
            bmc::BmcAddresses::default()
        }
        Some(Err(_)) => {
            errors.push("bmc: the IPMI thread panicked".to_string());
            bmc::BmcAddresses::default()
        }
    };
    let inventory = Inventory {
        interfaces,
        cpu,
        disks,
        memory,
        bmc_address: bmc.v4,
        bmc_v6address: bmc.v6,
        bmc_mac: bmc.mac,
        system_vendor,
        boot: BootInfo {
            current_boot_mode: if sources.fs.is_dir("sys/firmware/efi") {
                BootMode::Uefi
            } else {
                BootMode::Bios
            },
            pxe_interface: options.bootif.clone(),
            extra: JsonObject::new(),
        },
        hostname,
        extra: JsonObject::new(),
    };
    Collected {
        inventory,
        smbios,
        errors,
        timings,
    }
}

/// What [`collect_files`] reads, with (part, time taken, error) for each part.
struct FileParts {
    smbios: Option<Smbios>,
    system_vendor: SystemVendor,
    cpu: Cpu,
    memory: Memory,
    interfaces: Vec<NetworkInterface>,
    hostname: String,
    report: Vec<(&'static str, Duration, Option<String>)>,
}

/// The parts read from files (and the ethtool ioctl of interface listing).
fn collect_files(sources: &HostSources, options: &InventoryOptions) -> FileParts {
    let fs = &sources.fs;
    let mut report = Vec::new();
    let mut part = |name: &'static str, took: Duration, error: Option<String>| {
        report.push((name, took, error.map(|e| format!("{name}: {e}"))));
    };

    let (smbios, took) = timed(|| Smbios::read(fs.root()));
    let smbios = match smbios {
        Ok(tables) => {
            part("smbios", took, None);
            Some(tables)
        }
        Err(SmbiosError::Read { path, source })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            // Firmware without SMBIOS (some VMs, some ARM boards): not an error, as lshw
            // reports nothing either.
            tracing::info!(
                "no SMBIOS tables at {}: DMI fields stay empty",
                path.display()
            );
            part("smbios", took, None);
            None
        }
        Err(e) => {
            part("smbios", took, Some(e.to_string()));
            None
        }
    };
    let system_vendor = system_vendor(smbios.as_ref());

    let (cpu, took) = timed(|| cpu::collect(fs, &sources.machine, smbios.as_ref()));
    let cpu = match cpu {
        Ok(cpu) => {
            part("cpu", took, None);
            cpu
        }
        Err(e) => {
            part("cpu", took, Some(e.to_string()));
            empty_cpu(&sources.machine)
        }
    };

    let (memory, took) = timed(|| memory::collect(fs, smbios.as_ref()));
    let memory = match memory {
        Ok(memory) => {
            part("memory", took, None);
            memory
        }
        Err(e) => {
            part("memory", took, Some(e.to_string()));
            Memory {
                total: 0,
                physical_mb: None,
                extra: JsonObject::new(),
            }
        }
    };

    let (interfaces, took) =
        timed(|| nics::collect(fs, sources.net.as_ref(), options.interface_lldp.as_ref()));
    let interfaces = match interfaces {
        Ok(interfaces) => {
            part("interfaces", took, None);
            interfaces
        }
        Err(e) => {
            part("interfaces", took, Some(e.to_string()));
            Vec::new()
        }
    };

    let hostname = fs.attribute("proc/sys/kernel/hostname").unwrap_or_default();
    FileParts {
        smbios,
        system_vendor,
        cpu,
        memory,
        interfaces,
        hostname,
        report,
    }
}

/// `system_vendor` as lshw reports it to IPA: the product name carries the SKU in
/// parentheses when the firmware gives one; unknown values are empty strings.
pub fn system_vendor(smbios: Option<&Smbios>) -> SystemVendor {
    let system = smbios.and_then(Smbios::system);
    let bios = smbios.and_then(Smbios::bios);
    let product_name = match &system {
        Some(s) if !s.sku.is_empty() && !s.product_name.is_empty() => {
            format!("{} ({})", s.product_name, s.sku)
        }
        Some(s) => s.product_name.clone(),
        None => String::new(),
    };
    SystemVendor {
        product_name,
        serial_number: system
            .as_ref()
            .map(|s| s.serial_number.clone())
            .unwrap_or_default(),
        manufacturer: system
            .as_ref()
            .map(|s| s.manufacturer.clone())
            .unwrap_or_default(),
        firmware: Firmware {
            vendor: bios.as_ref().map(|b| b.vendor.clone()).unwrap_or_default(),
            version: bios.as_ref().map(|b| b.version.clone()).unwrap_or_default(),
            build_date: bios.map(|b| b.release_date).unwrap_or_default(),
            extra: JsonObject::new(),
        },
        extra: JsonObject::new(),
    }
}

fn empty_cpu(machine: &str) -> Cpu {
    Cpu {
        model_name: None,
        frequency: None,
        count: 0,
        architecture: machine.to_string(),
        flags: Vec::new(),
        socket_count: 0,
        extra: JsonObject::new(),
    }
}

fn timed<T>(work: impl FnOnce() -> T) -> (T, Duration) {
    let started = Instant::now();
    let value = work();
    (value, started.elapsed())
}

/// IPA's aggregated error text: `The following errors were encountered:\n* ...`; `None`
/// when there are none.
pub fn error_text(errors: &[String]) -> Option<String> {
    if errors.is_empty() {
        return None;
    }
    let items: Vec<String> = errors.iter().map(|e| format!("* {e}")).collect();
    Some(format!(
        "The following errors were encountered:\n{}",
        items.join("\n")
    ))
}
