//! rivet's embedded config area (docs/config-area.md): the bundle `rivet-image-builder
//! customize` wrote into the ISO the ramdisk booted from. The highest-priority configuration
//! source: settings, network_data.json, a CA bundle and files.
//!
//! The boot medium is found with [`crate::disks`] (its volume label); its locator is read
//! from the raw device, read-only, at a fixed offset; the bundle is verified (length,
//! sha256, and the Ed25519 signature when the ramdisk has a key at
//! [`SIGNING_PUBKEY_PATH`]) and parsed completely before anything is used. A bundle that
//! does not fit, is corrupt or fails verification is refused as a whole with an error on
//! the console naming the problem; the agent boots with its other sources.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rivet_protocol::config_area::bundle::{Header, Verified, HEADER_LEN};
use rivet_protocol::config_area::keys::PublicKey;
use rivet_protocol::config_area::locator::{Locator, LOCATOR_LEN};
use rivet_protocol::config_area::payload::Contents;
use rivet_protocol::config_area::{CA_PATH, LOCATOR_OFFSET, SIGNING_PUBKEY_PATH};
use rivet_protocol::network_data::NetworkData;
use rivet_protocol::plan::Plan;

use crate::bootconfig::{BootConfig, ConfigFile};
use crate::disks::{BlockDevices, DeviceKind};
use crate::settings::SourceText;

/// What isolinux and GRUB pass as `BOOT_IMAGE` when they boot rivet's ISO.
const ISO_BOOT_IMAGE: &str = "BOOT_IMAGE=/boot/vmlinuz";

/// Where and how long to look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleOptions {
    /// The public key bundles must be signed with; no file: signatures are not checked.
    pub signing_pubkey: PathBuf,
    /// How long to wait for a boot medium with a config area to appear.
    pub wait: Duration,
    /// Time between two scans while waiting.
    pub poll: Duration,
}

impl BundleOptions {
    /// The ramdisk's paths. When the kernel command line shows the kernel came from rivet's
    /// ISO, the medium is waited for up to 10 s (a BMC's USB CD can appear late); otherwise
    /// (PXE) devices are looked at once.
    pub fn for_ramdisk(cmdline: &str) -> Self {
        let from_iso = cmdline.split_whitespace().any(|t| t == ISO_BOOT_IMAGE);
        BundleOptions {
            signing_pubkey: PathBuf::from(SIGNING_PUBKEY_PATH),
            wait: if from_iso {
                Duration::from_secs(10)
            } else {
                Duration::ZERO
            },
            poll: Duration::from_millis(500),
        }
    }
}

/// What one device holds.
#[derive(Debug)]
enum Area {
    /// No locator: not rivet's ISO.
    NoLocator,
    /// A config area without a bundle.
    Empty,
    Bundle(Contents, Verified),
}

/// A bundle refused, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

/// The ramdisk's signing key: `Ok(None)` when it has none.
fn ramdisk_key(path: &Path) -> Result<Option<PublicKey>, Refused> {
    match std::fs::read_to_string(path) {
        Ok(text) => PublicKey::from_pem(&text)
            .map(Some)
            .map_err(|e| Refused(format!("the ramdisk's signing key {}: {e}", path.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Refused(format!(
            "reading the ramdisk's signing key {}: {e}",
            path.display()
        ))),
    }
}

fn read_at(file: &File, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}

/// Reads and verifies the config area of the device (or image file) at `path`.
fn read_area(path: &Path, key: Option<&PublicKey>) -> Result<Area, Refused> {
    let io = |what: &str, e: io::Error| Refused(format!("{what}: {e}"));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| io("opening it read-only", e))?;
    let size = {
        use std::io::Seek;
        (&file)
            .seek(io::SeekFrom::End(0))
            .map_err(|e| io("finding its size", e))?
    };
    if size < LOCATOR_OFFSET + LOCATOR_LEN as u64 {
        return Ok(Area::NoLocator);
    }
    let raw =
        read_at(&file, LOCATOR_OFFSET, LOCATOR_LEN).map_err(|e| io("reading the locator", e))?;
    let refused = |e: rivet_protocol::config_area::FormatError| Refused(e.to_string());
    let Some(locator) = Locator::decode(&raw).map_err(refused)? else {
        return Ok(Area::NoLocator);
    };
    locator.check_within(size).map_err(refused)?;
    let head = read_at(&file, locator.area.offset, HEADER_LEN)
        .map_err(|e| io("reading the bundle header", e))?;
    let Some(header) = Header::decode(&head).map_err(refused)? else {
        return Ok(Area::Empty);
    };
    header.check_fits(locator.area.len).map_err(refused)?;
    let len = usize::try_from(header.payload_len)
        .map_err(|_| Refused("the payload length does not fit in memory".into()))?;
    let payload = read_at(&file, locator.area.offset + HEADER_LEN as u64, len)
        .map_err(|e| io("reading the bundle", e))?;
    let verified = header.verify(&payload, key).map_err(refused)?;
    let contents = Contents::from_tar(&payload).map_err(refused)?;
    Ok(Area::Bundle(contents, verified))
}

/// The bundle as a configuration source; refused whole when a part is unusable.
pub fn boot_config(device: &Path, contents: Contents) -> Result<BootConfig, Refused> {
    let source = format!("rivet config area on {}", device.display());
    let network_data = match &contents.network_data {
        Some(json) => Some(
            NetworkData::from_json(json).map_err(|e| Refused(format!("network_data.json: {e}")))?,
        ),
        None => None,
    };
    let plan = match &contents.plan {
        Some(json) => Some(Plan::from_json(json).map_err(|e| Refused(format!("plan.json: {e}")))?),
        None => None,
    };
    let mut settings: Vec<&str> = contents
        .settings
        .iter()
        .flat_map(|s| s.lines())
        .filter(|line| !line.trim_start().starts_with('#'))
        .collect();
    let cafile = format!("rivet-cafile={CA_PATH}");
    let mut files = Vec::new();
    if let Some(ca) = &contents.ca {
        files.push(ConfigFile::new(
            PathBuf::from(CA_PATH),
            ca.clone().into_bytes(),
        ));
        settings.push(&cafile);
    }
    let settings_texts = if settings.is_empty() {
        Vec::new()
    } else {
        vec![SourceText {
            path: PathBuf::from(format!("{}:config-area/settings", device.display())),
            text: settings.join("\n") + "\n",
        }]
    };
    files.extend(contents.files.into_iter().map(|f| ConfigFile {
        path: PathBuf::from(f.path),
        mode: f.mode,
        contents: f.data,
    }));
    Ok(BootConfig {
        source,
        network_data,
        settings_texts,
        files,
        plan,
        problems: Vec::new(),
    })
}

fn describe(config: &BootConfig, verified: Verified) -> String {
    let mut parts = Vec::new();
    if !config.settings_texts.is_empty() {
        parts.push("settings".to_string());
    }
    if config.network_data.is_some() {
        parts.push("network_data.json".to_string());
    }
    if !config.files.is_empty() {
        parts.push(format!("{} files", config.files.len()));
    }
    if let Some(plan) = &config.plan {
        parts.push(format!("plan {}", plan.name));
    }
    let trust = match (verified.signed, verified.signature_checked) {
        (true, true) => "signature verified",
        (true, false) => "signed, but this ramdisk has no key to check it",
        _ => "unsigned",
    };
    format!("{} ({trust})", parts.join(", "))
}

/// Looks for the bundle on the boot medium. `None`: no config area, an empty one, or a
/// refused bundle (logged as an error).
pub async fn discover(devices: &dyn BlockDevices, options: &BundleOptions) -> Option<BootConfig> {
    let key = match ramdisk_key(&options.signing_pubkey) {
        Ok(key) => key,
        Err(Refused(problem)) => {
            tracing::error!("config area: {problem}; no bundle is applied");
            return None;
        }
    };
    let deadline = tokio::time::Instant::now() + options.wait;
    let mut last_error = String::new();
    loop {
        let media = match devices.list() {
            Ok(list) => list
                .into_iter()
                .filter(|d| {
                    d.is_boot_medium && matches!(d.kind, DeviceKind::Disk | DeviceKind::Rom)
                })
                .collect(),
            Err(e) => {
                let error = e.to_string();
                if error != last_error {
                    tracing::warn!("config area: listing block devices: {error}");
                    last_error = error;
                }
                Vec::new()
            }
        };
        for medium in media {
            let path = &medium.path;
            let refused = |Refused(problem)| {
                tracing::error!(
                    "config area on {}: bundle refused: {problem}; booting without it",
                    path.display()
                );
                None
            };
            match read_area(path, key.as_ref()) {
                Ok(Area::NoLocator) => {
                    tracing::debug!("{}: no config-area locator", path.display());
                }
                Ok(Area::Empty) => {
                    tracing::info!("config area on {}: no bundle", path.display());
                    return None;
                }
                Ok(Area::Bundle(contents, verified)) => {
                    return match boot_config(path, contents) {
                        Ok(config) => {
                            tracing::info!(
                                "config area on {}: applying {}",
                                path.display(),
                                describe(&config, verified)
                            );
                            Some(config)
                        }
                        Err(e) => refused(e),
                    }
                }
                Err(e) => return refused(e),
            }
        }
        if tokio::time::Instant::now() >= deadline {
            if !options.wait.is_zero() {
                tracing::warn!(
                    "config area: no boot medium with a rivet config area appeared within {} s",
                    options.wait.as_secs()
                );
            }
            return None;
        }
        tokio::time::sleep(options.poll).await;
    }
}

#[cfg(test)]
mod tests;
