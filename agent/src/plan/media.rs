//! Images on a second medium (docs/plan.md "Images"): a `write_image` URL
//! `file:///run/rivet/media/<LABEL>/<path>` names a file system by its volume label (ISO 9660
//! or FAT). Before the steps run, each such file system is mounted read-only at
//! `/run/rivet/media/<LABEL>`; the image is then read and verified like any `file://` image.

use std::path::Path;

use rivet_protocol::plan::Plan;

use crate::disks::{read_labels, BlockDevices, DeviceKind};
use crate::vmedia::Mounter;

/// Where labelled media are mounted.
pub const MEDIA_ROOT: &str = "/run/rivet/media";

/// The labels the plan's `write_image` URLs name under [`MEDIA_ROOT`], each once.
pub fn wanted_labels(plan: &Plan) -> Vec<String> {
    let prefix = format!("file://{MEDIA_ROOT}/");
    let mut labels: Vec<String> = Vec::new();
    let urls = plan
        .steps
        .iter()
        .filter(|s| s.step == "write_image")
        .filter_map(|s| s.args.get("image_info")?.get("urls")?.as_array().cloned())
        .flatten();
    for url in urls {
        let Some(rest) = url.as_str().and_then(|u| u.strip_prefix(&prefix)) else {
            continue;
        };
        if let Some((label, _)) = rest.split_once('/') {
            let normal = !label.is_empty() && label != "." && label != "..";
            if normal && !labels.iter().any(|l| l == label) {
                labels.push(label.to_string());
            }
        }
    }
    labels
}

/// Mounts the media the plan needs under `root` (`/run/rivet/media`); returns one message
/// per medium that could not be mounted (its images then fail to open, naming the file).
pub fn mount_media(
    plan: &Plan,
    devices: &dyn BlockDevices,
    mounter: &dyn Mounter,
    root: &Path,
) -> Vec<String> {
    let labels = wanted_labels(plan);
    if labels.is_empty() {
        return Vec::new();
    }
    let listed = match devices.list() {
        Ok(listed) => listed,
        Err(e) => return vec![format!("image media: listing block devices: {e}")],
    };
    let mut errors = Vec::new();
    for label in labels {
        let found: Vec<(&Path, &str)> = listed
            .iter()
            .filter(|d| {
                matches!(
                    d.kind,
                    DeviceKind::Disk | DeviceKind::Partition | DeviceKind::Rom
                )
            })
            .filter_map(|d| {
                let labels = read_labels(&d.path).ok()?;
                if labels.iso9660.as_deref() == Some(label.as_str()) {
                    Some((d.path.as_path(), "iso9660"))
                } else if labels.fat.as_deref() == Some(label.as_str()) {
                    Some((d.path.as_path(), "vfat"))
                } else {
                    None
                }
            })
            .collect();
        let (device, fstype) = match found.as_slice() {
            [one] => *one,
            [] => {
                errors.push(format!(
                    "image medium {label}: no file system has that label"
                ));
                continue;
            }
            many => {
                let names: Vec<String> =
                    many.iter().map(|(p, _)| p.display().to_string()).collect();
                errors.push(format!(
                    "image medium {label}: {} all have that label; refusing to guess",
                    names.join(", ")
                ));
                continue;
            }
        };
        let target = root.join(&label);
        match mounter.mount_readonly(device, &target, fstype) {
            Ok(()) => tracing::info!(
                "image medium {label}: {} mounted read-only at {}",
                device.display(),
                target.display()
            ),
            Err(e) => errors.push(format!("image medium {label}: {e}")),
        }
    }
    errors
}
