//! The `write_image` deploy step (spec §5): `image_info` and `configdrive` in, the image on
//! the root device, `{"result": "prepare_image: image (<id>) written to device <dev>
//! root_uuid=<uuid>"}` out, and `standby.get_partition_uuids` answering `{"root uuid": ...}`.
//!
//! The root device comes only from [`writable_candidates`] (never the boot medium; on a
//! host only `rivet-host-disks`) through the root device hints of the node
//! (`instance_info.root_device`, else `properties.root_device`; strict mode refuses
//! ambiguous hints). Partition images (`image_type: partition`) get IPA's layout
//! ([`super::partition`]) and the image in their root partition.

use std::sync::Arc;
use std::time::Instant;

use base64::Engine;
use rivet_protocol::image_info::{ConfigDrive, ImageInfo, WriteImageArgs};
use serde_json::{json, Value};

use super::checksum::{self, ExpectedDigest, ExpectedSource};
use super::disklabel::{self, MAX_CONFIG_DRIVE};
use super::meter::Meter;
use super::partition::deploy::{finish as finish_partitions, make_ext_ephemeral, plan_for, Plan};
use super::partition::ephemeral::{EphemeralFs, FsMaker, Mke2fs};
use super::partition::layout::Role;
use super::partition::Slice;
use super::pipeline::{self, WriteRequest};
use super::source::{self, DownloadOptions};
use super::target::{DiskFile, Target};
use super::writer::wipe;
use super::ImageError;
use crate::disks::hints::{parse_hints, parse_skip_list, select_root_device};
use crate::disks::{writable_candidates, BlockDevice, BlockDevices};
use crate::net::http::HttpTls;
use crate::settings::Settings;
use crate::steps::{StepCall, StepError};

/// Checksum files larger than this are refused.
const MAX_CHECKSUM_FILE: usize = 16 << 20;

fn ipa(type_: &str, code: u16, message: &str, details: impl Into<String>) -> StepError {
    StepError::Ipa {
        type_: type_.to_string(),
        code,
        message: message.to_string(),
        details: details.into(),
    }
}

fn invalid(details: impl Into<String>) -> StepError {
    ipa(
        "InvalidCommandParamsError",
        400,
        "Invalid command parameters",
        details,
    )
}

fn device_not_found(details: impl Into<String>) -> StepError {
    ipa(
        "DeviceNotFound",
        404,
        "Error finding the disk or partition device to deploy the image onto",
        details,
    )
}

fn write_failed(details: impl Into<String>) -> StepError {
    ipa(
        "ImageWriteError",
        500,
        "Error writing image to device",
        details,
    )
}

fn image_error(e: ImageError) -> StepError {
    let details = e.to_string();
    // After several attempts the last failure decides the kind.
    let kind = match e {
        ImageError::Exhausted { last, .. } => *last,
        other => other,
    };
    match kind {
        ImageError::Mismatch { .. } => ipa(
            "ImageChecksumError",
            500,
            "Error verifying image checksum",
            details,
        ),
        ImageError::Checksum(_) => invalid(details),
        ImageError::Format(_) | ImageError::Qcow2(_) => {
            ipa("InvalidImage", 500, "The image is invalid", details)
        }
        ImageError::Write(_) => write_failed(details),
        ImageError::Source(_) | ImageError::Decode(_) | ImageError::Exhausted { .. } => ipa(
            "ImageDownloadError",
            500,
            "Error downloading image",
            details,
        ),
    }
}

/// The node's root device hints and skip list, then the device they choose among the
/// writable candidates.
pub fn choose_device(
    devices: &dyn BlockDevices,
    settings: &Settings,
    in_ramdisk: bool,
    node: &Value,
) -> Result<BlockDevice, StepError> {
    let listed = devices
        .list()
        .map_err(|e| device_not_found(format!("listing block devices: {e}")))?;
    let writable = writable_candidates(listed, settings, in_ramdisk);
    if writable.is_empty() && !in_ramdisk {
        return Err(device_not_found(
            "no disk may be written: rivet-agent runs as a normal process and no device listed \
             in rivet-host-disks exists",
        ));
    }
    let present = |v: &&Value| !v.is_null();
    let hints = node
        .pointer("/instance_info/root_device")
        .filter(present)
        .or_else(|| node.pointer("/properties/root_device"))
        .unwrap_or(&Value::Null);
    let hints = parse_hints(hints).map_err(|e| invalid(e.to_string()))?;
    let skip = node
        .pointer("/properties/skip_block_devices")
        .unwrap_or(&Value::Null);
    let skip = parse_skip_list(skip).map_err(|e| invalid(e.to_string()))?;
    select_root_device(&writable, &hints, &skip, settings.strict_root_hints)
        .cloned()
        .map_err(|e| device_not_found(e.to_string()))
}

/// IPA's download settings plus what `image_info` adds (auth, proxies).
pub fn download_options(
    settings: &Settings,
    info: &ImageInfo,
) -> Result<DownloadOptions, StepError> {
    let authorization = match &info.image_request_authorization {
        Some(encoded) => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
                .and_then(|raw| String::from_utf8(raw).ok())
                .ok_or_else(|| {
                    invalid("image_request_authorization is not base64 of a header value")
                })?;
            Some(decoded)
        }
        None if info.image_server_auth_strategy.as_deref() == Some("http_basic") => {
            let user = info.image_server_user.clone().flatten();
            let password = info.image_server_password.clone().flatten();
            let (Some(user), Some(password)) = (user, password) else {
                return Err(invalid(
                    "image_server_auth_strategy is http_basic but image_server_user or \
                     image_server_password is missing",
                ));
            };
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            Some(format!("Basic {token}"))
        }
        None => None,
    };
    let proxy = |scheme: &str| {
        info.proxies
            .as_ref()
            .and_then(|p| p.get(scheme))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    Ok(DownloadOptions {
        timeout: settings.image_download_connection_timeout,
        retries: settings.image_download_connection_retries,
        retry_interval: settings.image_download_connection_retry_interval,
        deadline: settings
            .image_download_max_duration
            .map(|d| Instant::now() + d),
        tls: HttpTls::from_settings(settings),
        authorization,
        http_proxy: proxy("http"),
        https_proxy: proxy("https"),
        no_proxy: info.no_proxy.clone(),
    })
}

/// The digest the image must have, fetching a checksum file when given one.
fn expected_digest(
    info: &ImageInfo,
    md5_enabled: bool,
    options: &DownloadOptions,
) -> Result<ExpectedDigest, StepError> {
    let expected = checksum::expected(info, md5_enabled).map_err(|e| invalid(e.to_string()))?;
    match expected.source {
        ExpectedSource::Value(hex) => {
            let algorithm = match expected.algorithm {
                Some(algorithm) => algorithm,
                None => checksum::checked_algorithm(&hex, md5_enabled)
                    .map_err(|e| invalid(e.to_string()))?,
            };
            Ok(ExpectedDigest { algorithm, hex })
        }
        ExpectedSource::Url { url, file_name } => {
            let body = source::fetch_bytes(&url, options, MAX_CHECKSUM_FILE).map_err(|e| {
                ipa(
                    "ImageDownloadError",
                    500,
                    "Error downloading image",
                    format!("checksum file: {e}"),
                )
            })?;
            let text = String::from_utf8_lossy(&body);
            checksum::resolve_from_file(
                expected.algorithm,
                &source::redact_url(&url),
                &text,
                &file_name,
                md5_enabled,
            )
            .map_err(|e| {
                ipa(
                    "ImageChecksumError",
                    500,
                    "Error verifying image checksum",
                    e.to_string(),
                )
            })
        }
    }
}

/// The config drive's bytes, from base64 or a URL.
fn config_drive(drive: &ConfigDrive, options: &DownloadOptions) -> Result<Vec<u8>, StepError> {
    let text = drive.0.trim();
    let from_url = text.starts_with("http://") || text.starts_with("https://");
    let raw = if from_url {
        // Base64 of 64 MiB is about 86 MiB.
        source::fetch_bytes(text, options, MAX_CONFIG_DRIVE / 3 * 4 + 4096)
            .map_err(|e| write_failed(format!("downloading the config drive: {e}")))?
    } else {
        text.as_bytes().to_vec()
    };
    disklabel::decode_config_drive(&raw, from_url).map_err(|e| invalid(e.to_string()))
}

/// After the verified image: GPT backup to the end, at least one partition (as IPA checks),
/// the config drive, the disk identifier.
fn finish_disk(disk: &DiskFile, drive: Option<&[u8]>) -> Result<String, disklabel::LabelError> {
    if disklabel::partition_count(disk.file())? == 0 {
        return Err(disklabel::LabelError::Invalid(format!(
            "no partitions found on {} after writing the whole-disk image",
            disk.name()
        )));
    }
    if disklabel::fix_gpt(disk.file())? {
        tracing::info!(device = %disk.name(), "moved the GPT backup to the end of the disk");
    }
    if let Some(drive) = drive {
        let placed = disklabel::write_config_drive(disk.file(), drive)?;
        tracing::info!(
            device = %disk.name(),
            partition = placed.number,
            reused = placed.reused,
            bytes = drive.len(),
            "config drive written"
        );
    }
    if let Err(e) = disk.reread_partitions() {
        tracing::warn!(device = %disk.name(), error = %e, "re-reading the partition table failed");
    }
    disklabel::disk_identifier(disk.file())
}

/// What `write_image` needs from the machine besides the step call.
pub struct WriteHost<'a> {
    pub devices: &'a dyn BlockDevices,
    /// The agent is PID 1 of its ramdisk (see [`writable_candidates`]).
    pub in_ramdisk: bool,
    /// `/sys/firmware/efi` exists: the ramdisk booted in UEFI mode.
    pub firmware_uefi: bool,
    /// Makes an ext ephemeral partition's file system.
    pub fs_maker: &'a dyn FsMaker,
}

/// Runs the step on this machine. `in_ramdisk`: the agent is PID 1 of its ramdisk (see
/// [`writable_candidates`]).
pub fn write_image(
    devices: &dyn BlockDevices,
    in_ramdisk: bool,
    call: &StepCall<'_>,
) -> Result<Value, StepError> {
    let host = WriteHost {
        devices,
        in_ramdisk,
        firmware_uefi: std::path::Path::new("/sys/firmware/efi").is_dir(),
        fs_maker: &Mke2fs::default(),
    };
    write_image_on(&host, call)
}

/// Runs the step with the machine access in `host`.
pub fn write_image_on(host: &WriteHost<'_>, call: &StepCall<'_>) -> Result<Value, StepError> {
    let args: WriteImageArgs = serde_json::from_value(Value::Object(call.args.clone()))
        .map_err(|e| invalid(format!("write_image arguments: {e}")))?;
    let info = &args.image_info;
    let state = call.ctx.state();
    info.validate(state.md5_enabled)
        .map_err(|e| invalid(e.to_string()))?;
    let settings = &call.ctx.settings;
    let device = choose_device(host.devices, settings, host.in_ramdisk, call.node)?;
    let options = download_options(settings, info)?;
    let expected = expected_digest(info, state.md5_enabled, &options)?;
    let drive = match &args.configdrive {
        Some(drive) => Some(config_drive(drive, &options)?),
        None => None,
    };
    let id = info.id.clone().unwrap_or_default();
    let dev = device.path.display().to_string();
    tracing::info!(image = %id, device = %dev, algorithm = expected.algorithm.name(), partition_image = info.is_partition_image(), "writing image");

    let disk = Arc::new(
        DiskFile::open(&device.path).map_err(|e| write_failed(format!("opening {dev}: {e}")))?,
    );
    // A partition image: the layout first (nothing written yet), the image into the root
    // partition's place.
    let plan = if info.is_partition_image() {
        let drive_len = drive.as_ref().map_or(0, |d| d.len() as u64);
        let plan = plan_for(
            info,
            call.node,
            host.firmware_uefi,
            disk.size(),
            drive_len,
            host.fs_maker,
        )
        .map_err(invalid)?;
        wipe(disk.as_ref()).map_err(|e| write_failed(format!("clearing {dev}: {e}")))?;
        Some(plan)
    } else {
        None
    };
    let target: Arc<dyn Target> = match plan.as_ref().and_then(|p| p.layout.get(Role::Root)) {
        Some(root) => Arc::new(Slice::new(
            disk.clone(),
            root.start,
            root.len,
            format!("{dev} root partition {}", root.number),
        )),
        None => disk.clone(),
    };
    let task = format!("write_image {id} to {dev}");
    let urls = info.urls.clone().unwrap_or_default();
    let request = WriteRequest {
        urls: &urls,
        expected,
        declared_format: info.disk_format(),
        permitted_formats: &state.permitted_image_formats,
        download: options,
        known_zero: false,
        meter: Some(Meter {
            board: call.progress,
            task: &task,
        }),
    };
    let started = Instant::now();
    let written = match pipeline::write_image(target, &request) {
        Ok(written) => written,
        Err(e) => {
            call.progress.finish(&task, "failed");
            if plan.is_some() {
                if let Err(wiped) = wipe(disk.as_ref()) {
                    tracing::error!(device = %dev, error = %wiped, "clearing the disk after a failure");
                }
            }
            return Err(image_error(e));
        }
    };
    let finished = match &plan {
        Some(plan) => finish_partitions(
            &disk,
            &device.path,
            plan,
            u64::from(device.logical_sector_size.max(512)),
            drive.as_deref(),
        ),
        None => finish_disk(&disk, drive.as_deref())
            .map(|uuid| {
                let mut uuids = serde_json::Map::new();
                uuids.insert("root uuid".into(), Value::String(uuid));
                uuids
            })
            .map_err(|e| e.to_string()),
    };
    let uuids = match finished {
        Ok(uuids) => uuids,
        Err(e) => {
            call.progress.finish(&task, "failed");
            if let Err(wiped) = wipe(disk.as_ref()) {
                tracing::error!(device = %dev, error = %wiped, "clearing the partition table after a failure");
            }
            return Err(write_failed(e));
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    if let Some(plan) = plan
        .as_ref()
        .filter(|p| matches!(p.ephemeral, Some(EphemeralFs::Ext(_))))
    {
        if let Err(e) = close_and_make_ext_ephemeral(disk, &device.path, plan, host.fs_maker) {
            call.progress.finish(&task, "failed");
            match DiskFile::open(&device.path) {
                Ok(disk) => {
                    if let Err(wiped) = wipe(&disk) {
                        tracing::error!(device = %dev, error = %wiped, "clearing the partition table after a failure");
                    }
                }
                Err(open) => {
                    tracing::error!(device = %dev, error = %open, "reopening the disk to clear it after a failure");
                }
            }
            return Err(write_failed(e));
        }
    }
    call.progress.finish(
        &task,
        &format!(
            "{} MiB of {} written in {seconds:.1} s at {:.1} MiB/s ({} MiB downloaded)",
            written.image_bytes >> 20,
            written.detected,
            written.image_bytes as f64 / 1_048_576.0 / seconds.max(0.001),
            written.file_bytes >> 20
        ),
    );
    let root_uuid = uuids
        .get("root uuid")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let esp_uuid = uuids
        .get("efi system partition uuid")
        .and_then(Value::as_str)
        .map(str::to_string);
    call.ctx.update_state(|s| {
        s.partition_uuids = Some(uuids);
        s.root_device = Some(device.path.clone());
    });
    Ok(
        json!({ "result": format!("prepare_image: {}", result_message(info, &id, &dev, &root_uuid, esp_uuid.as_deref(), plan.as_ref())) }),
    )
}

/// Closes the disk (its `O_EXCL` hold would make mke2fs's exclusive open of the partition
/// fail) and makes the ext ephemeral file system.
fn close_and_make_ext_ephemeral(
    disk: Arc<DiskFile>,
    device: &std::path::Path,
    plan: &Plan,
    fs_maker: &dyn FsMaker,
) -> Result<(), String> {
    drop(Arc::try_unwrap(disk).map_err(|_| {
        format!(
            "{} is still held open elsewhere in the agent; mke2fs could not claim its \
             ephemeral partition",
            device.display()
        )
    })?);
    make_ext_ephemeral(device, plan, fs_maker)
}

/// IPA's `_message_format`: the ESP's UUID is added when `image_info.deploy_boot_mode` is
/// uefi and there is one.
fn result_message(
    info: &ImageInfo,
    id: &str,
    dev: &str,
    root_uuid: &str,
    esp_uuid: Option<&str>,
    plan: Option<&Plan>,
) -> String {
    let message = format!("image ({id}) written to device {dev} root_uuid={root_uuid}");
    let uefi_info = info.deploy_boot_mode.clone().flatten().as_deref() == Some("uefi");
    match esp_uuid {
        Some(esp) if uefi_info && plan.is_some_and(|p| p.uefi) => {
            format!("{message} efi_system_partition_uuid={esp}")
        }
        _ => message,
    }
}

#[cfg(test)]
#[path = "step_tests.rs"]
mod tests;
