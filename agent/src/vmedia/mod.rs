//! Ironic's virtual-media configuration (spec §9.2-§9.4), found without udev.
//!
//! - `ir_pub_id=<uuid>` on the kernel command line: wait up to 30 s, checking once a second
//!   (like IPA's `ironic-agent-resolve-config-drive` unit), for an ISO labelled `config-2`
//!   whose publisher id is that uuid; mount it read-only at `/mnt/config` and read
//!   `openstack/latest/network_data.json`.
//! - `boot_method=vmedia`: copy every file under `etc/ironic-python-agent/` and
//!   `etc/ironic-python-agent.d/` of the `config-2` (or `vmedia_boot_iso`) ISO into `/etc`
//!   (so `[DEFAULT] cafile` of `ironic-tls.conf` and the CA file it names take effect once the
//!   settings are read again), and read `parameters.txt` from the VFAT floppy or USB stick
//!   labelled `ir-vfd-dev` (or whose model says "virtual media").
//!
//! Labels and publishers come from the ISO 9660 primary volume descriptor and the FAT boot
//! sector of candidate block devices ([`devices`]); volumes are mounted through [`Mounter`].

pub mod devices;
pub mod labels;
pub mod mount;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rivet_protocol::network_data::NetworkData;

use crate::bootconfig::BootConfig;
use crate::settings::{Settings, SourceText};
use devices::{Candidate, SysfsBlockDevices};
pub use mount::{KernelMounter, Mounter};

/// The files copied from the ISO, relative to its root.
const CONFIG_DIRS: [&str; 2] = ["etc/ironic-python-agent", "etc/ironic-python-agent.d"];
const NETWORK_DATA: &str = "openstack/latest/network_data.json";
/// Larger files on the config drive are not copied (the drive holds a CA and a few .conf).
const MAX_FILE_BYTES: u64 = 1 << 20;

/// When and where to look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmediaOptions {
    /// `ir_pub_id`: read network_data from the `config-2` ISO with this publisher.
    pub ir_pub_id: Option<String>,
    /// `boot_method=vmedia`: copy the agent's config files and read `parameters.txt`.
    pub vmedia: bool,
    /// How long to wait for the `ir_pub_id` ISO to appear.
    pub wait: Duration,
    /// Time between two scans while waiting.
    pub poll: Duration,
    /// Where the ISO is mounted.
    pub iso_mount: PathBuf,
    /// Where the floppy is mounted.
    pub floppy_mount: PathBuf,
    /// Where `etc/ironic-python-agent*/` files go.
    pub etc: PathBuf,
}

impl VmediaOptions {
    /// From the kernel command line settings; the paths of the ramdisk.
    pub fn from_settings(settings: &Settings) -> Self {
        VmediaOptions {
            ir_pub_id: settings.ir_pub_id.clone().filter(|id| !id.is_empty()),
            vmedia: settings.boot_method.as_deref() == Some("vmedia"),
            wait: Duration::from_secs(30),
            poll: Duration::from_secs(1),
            iso_mount: PathBuf::from("/mnt/config"),
            floppy_mount: PathBuf::from("/mnt/ir-vfd-dev"),
            etc: PathBuf::from("/etc"),
        }
    }

    /// Whether there is anything to look for.
    pub fn enabled(&self) -> bool {
        self.ir_pub_id.is_some() || self.vmedia
    }
}

/// The `config-2` ISO this boot wants.
fn wanted_iso(devices: &SysfsBlockDevices, options: &VmediaOptions) -> Option<(Candidate, bool)> {
    for candidate in devices.candidates() {
        let Some(iso) = devices.identify(&candidate).iso else {
            continue;
        };
        let config_2 = iso.label.eq_ignore_ascii_case("config-2");
        let ours = options
            .ir_pub_id
            .as_deref()
            .is_some_and(|id| config_2 && iso.publisher.eq_ignore_ascii_case(id));
        let any_config = config_2 || iso.label.eq_ignore_ascii_case("vmedia_boot_iso");
        if ours || (options.ir_pub_id.is_none() && any_config) {
            tracing::info!(
                "vmedia: {} is the config ISO (label {:?}, publisher {:?})",
                candidate.node.display(),
                iso.label,
                iso.publisher
            );
            return Some((candidate, ours));
        }
    }
    None
}

/// Looks for Ironic's virtual media; `None` when the command line asks for none.
pub async fn discover(
    devices: &SysfsBlockDevices,
    mounter: &dyn Mounter,
    options: &VmediaOptions,
) -> Option<BootConfig> {
    if !options.enabled() {
        return None;
    }
    let mut config = BootConfig {
        source: "Ironic virtual media".into(),
        ..BootConfig::default()
    };
    let deadline = tokio::time::Instant::now() + options.wait;
    let found = loop {
        if let Some(found) = wanted_iso(devices, options) {
            break Some(found);
        }
        if options.ir_pub_id.is_none() || tokio::time::Instant::now() >= deadline {
            break None;
        }
        tokio::time::sleep(options.poll).await;
    };
    match found {
        Some((iso, ours)) => {
            config.source = format!("config ISO {}", iso.node.display());
            read_iso(&iso, ours, mounter, options, &mut config);
        }
        None => config.problems.push(match &options.ir_pub_id {
            Some(id) => format!(
                "no ISO labelled config-2 with publisher {id} appeared within {} s; no \
                 network_data.json",
                options.wait.as_secs()
            ),
            None => "no ISO labelled config-2 or vmedia_boot_iso; no config files copied".into(),
        }),
    }
    if options.vmedia {
        read_floppy(devices, mounter, options, &mut config);
    }
    for problem in &config.problems {
        tracing::warn!("vmedia: {problem}");
    }
    Some(config)
}

fn read_iso(
    iso: &Candidate,
    ours: bool,
    mounter: &dyn Mounter,
    options: &VmediaOptions,
    config: &mut BootConfig,
) {
    let root = &options.iso_mount;
    if let Err(e) = mounter.mount_readonly(&iso.node, root, "iso9660") {
        config.problems.push(e);
        return;
    }
    if ours {
        let path = root.join(NETWORK_DATA);
        match std::fs::read_to_string(&path) {
            Ok(text) => match NetworkData::from_json(&text) {
                Ok(data) => config.network_data = Some(data),
                Err(e) => config.problems.push(format!(
                    "{NETWORK_DATA} on {}: {e}; not used",
                    iso.node.display()
                )),
            },
            Err(e) => config.problems.push(format!(
                "reading {NETWORK_DATA} from {}: {e}",
                iso.node.display()
            )),
        }
    }
    if options.vmedia {
        for dir in CONFIG_DIRS {
            let below = Path::new(dir).strip_prefix("etc").unwrap_or(Path::new(dir));
            copy_tree(&root.join(dir), &options.etc.join(below), config);
        }
    }
    if let Err(e) = mounter.unmount(root) {
        config.problems.push(e);
    }
}

/// Collects the regular files under `from` (recursively) as files to install under `to`.
fn copy_tree(from: &Path, to: &Path, config: &mut BootConfig) {
    let Ok(entries) = std::fs::read_dir(from) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let target = to.join(entry.file_name());
        match entry.file_type() {
            Ok(kind) if kind.is_dir() => copy_tree(&path, &target, config),
            Ok(kind) if kind.is_file() => {
                let size = entry.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
                if size > MAX_FILE_BYTES {
                    config.problems.push(format!(
                        "{} is {size} bytes, more than {MAX_FILE_BYTES}; not copied",
                        path.display()
                    ));
                    continue;
                }
                match std::fs::read(&path) {
                    Ok(contents) => config.files.push((target, contents)),
                    Err(e) => config
                        .problems
                        .push(format!("reading {}: {e}; not copied", path.display())),
                }
            }
            _ => tracing::debug!("vmedia: {} is not a regular file; skipped", path.display()),
        }
    }
}

/// `parameters.txt` from the `ir-vfd-dev` floppy (or a device whose model says "virtual
/// media" and that is not an ISO).
fn read_floppy(
    devices: &SysfsBlockDevices,
    mounter: &dyn Mounter,
    options: &VmediaOptions,
    config: &mut BootConfig,
) {
    let candidates = devices.candidates();
    let identities: Vec<_> = candidates.iter().map(|c| devices.identify(c)).collect();
    let by_label = candidates.iter().zip(&identities).find(|(_, id)| {
        id.fat_label
            .as_deref()
            .is_some_and(|l| l.eq_ignore_ascii_case("ir-vfd-dev"))
    });
    let by_model = || {
        candidates.iter().zip(&identities).find(|(c, id)| {
            id.iso.is_none()
                && c.model
                    .as_deref()
                    .is_some_and(|m| m.to_ascii_lowercase().contains("virtual media"))
        })
    };
    let Some((floppy, _)) = by_label.or_else(by_model) else {
        tracing::info!("vmedia: no ir-vfd-dev parameters device");
        return;
    };
    let root = &options.floppy_mount;
    if let Err(e) = mounter.mount_readonly(&floppy.node, root, "vfat") {
        config.problems.push(e);
        return;
    }
    let path = root.join("parameters.txt");
    match std::fs::read(&path) {
        Ok(bytes) => {
            tracing::info!("vmedia: parameters.txt from {}", floppy.node.display());
            config.settings_texts.push(SourceText {
                path: path.clone(),
                text: String::from_utf8_lossy(&bytes).into_owned(),
            })
        }
        Err(e) => config.problems.push(format!(
            "reading parameters.txt from {}: {e}",
            floppy.node.display()
        )),
    }
    if let Err(e) = mounter.unmount(root) {
        config.problems.push(e);
    }
}

#[cfg(test)]
mod tests;
