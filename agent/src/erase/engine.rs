//! One erase step from start to end: the devices (only from the host's candidates), what
//! probing finds without writing, the plan of each, a refusal of the whole step before any
//! write when a device must not be erased, then the erase of every device in parallel
//! (bounded by `disk_erasure_concurrency`), and the reports.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

use super::ata_erase;
use super::device::DeviceJob;
use super::host::EraseHost;
use super::knobs::Knobs;
use super::nvme_erase;
use super::plan::{plan, AtaFacts, DeviceFacts, EraseMode, NvmeFacts, Plan};
use super::report::{timestamp, EraseReport, Outcome, StepReports};
use super::signatures;
use crate::disks::hints::matches_all;
use crate::disks::{BlockDevice, DeviceKind};
use crate::progress::{AbortSignal, ProgressBoard};

/// How an erase step ended.
#[derive(Debug)]
pub struct StepOutcome {
    pub reports: StepReports,
    pub error: Option<EraseFailure>,
}

/// Why the step failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EraseFailure {
    /// The device list could not be read.
    Devices(String),
    /// A device holds a protected partition or file system (IPA's `ProtectedDeviceError`).
    Protected(String),
    /// A device must not be erased (read-only) or its erase failed (IPA's
    /// `BlockDeviceEraseError`).
    Device(String),
}

impl std::fmt::Display for EraseFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EraseFailure::Devices(m) | EraseFailure::Protected(m) | EraseFailure::Device(m) => {
                f.write_str(m)
            }
        }
    }
}

fn is_nvme_disk(device: &BlockDevice) -> bool {
    device.kind == DeviceKind::Disk && device.name.starts_with("nvme")
}

/// Reads what the plan needs; nothing is written.
fn gather(
    host: &dyn EraseHost,
    device: BlockDevice,
    knobs: &Knobs,
    mode: EraseMode,
) -> DeviceFacts {
    let limits = host.queue_limits(&device);
    let protected = if knobs.guard_special_filesystems && device.kind != DeviceKind::Rom {
        match host
            .open(&device, false)
            .and_then(|mut io| signatures::protected(io.as_mut()))
        {
            Ok(found) => found.map(str::to_string),
            Err(e) => {
                tracing::warn!(
                    "checking {} for protected partitions: {e}",
                    device.path.display()
                );
                None
            }
        }
    } else {
        None
    };
    let nvme =
        if mode != EraseMode::Metadata && knobs.enable_nvme_secure_erase && is_nvme_disk(&device) {
            match host
                .nvme(&device)
                .map_err(|e| e.to_string())
                .and_then(|mut admin| nvme_erase::probe(admin.as_mut()).map_err(|e| e.to_string()))
            {
                Ok(probe) => NvmeFacts::Probed(Box::new(probe)),
                Err(e) => NvmeFacts::Failed(e),
            }
        } else {
            NvmeFacts::NotProbed
        };
    let ata = if mode == EraseMode::Full
        && knobs.enable_ata_secure_erase
        && device.kind == DeviceKind::Disk
        && !is_nvme_disk(&device)
    {
        match host
            .ata(&device)
            .map_err(|e| e.to_string())
            .and_then(|mut ata| ata_erase::identify(ata.as_mut()).map_err(|e| e.to_string()))
        {
            Ok(id) => AtaFacts::Identified(Box::new(id)),
            Err(e) => AtaFacts::Unavailable(e),
        }
    } else {
        AtaFacts::NotProbed
    };
    DeviceFacts {
        device,
        nvme,
        ata,
        limits,
        protected,
    }
}

/// Work units: devices that must be done one after the other. A disk's partitions come
/// before the disk (reverse name order, as IPA), so they are wiped before the partition
/// table that defines them; different disks are independent.
fn units(facts: &[DeviceFacts]) -> Vec<Vec<usize>> {
    let mut by_disk: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (index, f) in facts.iter().enumerate() {
        let key = match (&f.device.kind, &f.device.parent) {
            (DeviceKind::Partition, Some(parent)) => parent.clone(),
            _ => f.device.name.clone(),
        };
        by_disk.entry(key).or_default().push(index);
    }
    by_disk
        .into_values()
        .map(|mut unit| {
            unit.sort_by(|a, b| facts[*b].device.name.cmp(&facts[*a].device.name));
            unit
        })
        .collect()
}

/// Runs one erase step.
pub fn run_erase(
    host: &dyn EraseHost,
    mode: EraseMode,
    knobs: &Knobs,
    progress: &ProgressBoard,
    abort: &AbortSignal,
) -> StepOutcome {
    let started_at = timestamp(SystemTime::now());
    let finish = |devices: Vec<EraseReport>, error: Option<EraseFailure>| StepOutcome {
        reports: StepReports {
            step: mode.step_name(),
            started_at: started_at.clone(),
            finished_at: timestamp(SystemTime::now()),
            devices,
        },
        error,
    };
    let devices = match host.candidates() {
        Ok(devices) => devices,
        Err(e) => {
            return finish(
                Vec::new(),
                Some(EraseFailure::Devices(format!(
                    "listing block devices: {e:#}"
                ))),
            )
        }
    };
    // Devices the node says to leave alone, with their partitions.
    let skipped: Vec<String> = devices
        .iter()
        .filter(|d| knobs.skip_block_devices.iter().any(|h| matches_all(h, d)))
        .map(|d| d.name.clone())
        .collect();
    // erase_devices works on whole devices only (IPA lists disks).
    let devices: Vec<BlockDevice> = devices
        .into_iter()
        .filter(|d| mode != EraseMode::Full || d.kind != DeviceKind::Partition)
        .filter(|d| {
            let skip =
                skipped.contains(&d.name) || d.parent.as_ref().is_some_and(|p| skipped.contains(p));
            if skip {
                tracing::info!(
                    "{}: leaving {} alone: listed in properties.skip_block_devices",
                    mode.step_name(),
                    d.path.display()
                );
            }
            !skip
        })
        .collect();
    tracing::info!(
        "{}: {} candidate device(s): {}",
        mode.step_name(),
        devices.len(),
        devices
            .iter()
            .map(|d| d.path.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let facts: Vec<DeviceFacts> = devices
        .into_iter()
        .map(|d| gather(host, d, knobs, mode))
        .collect();
    let plans: Vec<Plan> = facts.iter().map(|f| plan(f, knobs, mode)).collect();

    let refusals: Vec<(String, bool)> = plans
        .iter()
        .filter_map(|p| match p {
            Plan::Refuse { reason, protected } => Some((reason.clone(), *protected)),
            _ => None,
        })
        .collect();
    if !refusals.is_empty() {
        let reports = facts
            .iter()
            .zip(&plans)
            .map(|(f, p)| match p {
                Plan::Skip { reason } => {
                    EraseReport::new(&f.device, mode.step_name(), Outcome::Skipped)
                        .with_reason(reason.clone())
                }
                Plan::Refuse { reason, .. } => {
                    EraseReport::new(&f.device, mode.step_name(), Outcome::Refused)
                        .with_reason(reason.clone())
                }
                Plan::Erase { .. } => {
                    EraseReport::new(&f.device, mode.step_name(), Outcome::NotStarted)
                        .with_reason("another device was refused; nothing was erased")
                }
            })
            .collect();
        let text = refusals
            .iter()
            .map(|(r, _)| r.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        let error = if refusals.iter().any(|(_, protected)| *protected) {
            EraseFailure::Protected(text)
        } else {
            EraseFailure::Device(text)
        };
        return finish(reports, Some(error));
    }

    let reports: Vec<Mutex<Option<EraseReport>>> = facts.iter().map(|_| Mutex::new(None)).collect();
    let units = units(&facts);
    let workers = knobs
        .concurrency
        .unwrap_or(units.len())
        .clamp(1, units.len().max(1));
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::SeqCst);
                let Some(unit) = units.get(index) else {
                    break;
                };
                for &i in unit {
                    let f = &facts[i];
                    let report = match &plans[i] {
                        Plan::Skip { reason } => {
                            tracing::info!(
                                "{}: skipping {}: {reason}",
                                mode.step_name(),
                                f.device.path.display()
                            );
                            EraseReport::new(&f.device, mode.step_name(), Outcome::Skipped)
                                .with_reason(reason.clone())
                        }
                        Plan::Erase { attempts, notes } => DeviceJob {
                            host,
                            facts: f,
                            mode,
                            progress,
                            abort,
                        }
                        .erase(attempts, notes.clone()),
                        Plan::Refuse { reason, .. } => {
                            EraseReport::new(&f.device, mode.step_name(), Outcome::Refused)
                                .with_reason(reason.clone())
                        }
                    };
                    let mut slot = reports[i].lock().unwrap_or_else(|p| p.into_inner());
                    *slot = Some(report);
                }
            });
        }
    });
    let reports: Vec<EraseReport> = reports
        .into_iter()
        .zip(&facts)
        .map(|(slot, f)| {
            slot.into_inner()
                .unwrap_or_else(|p| p.into_inner())
                .unwrap_or_else(|| {
                    EraseReport::new(&f.device, mode.step_name(), Outcome::Failed)
                        .with_reason("the erase worker stopped before this device")
                })
        })
        .collect();
    let failures: Vec<String> = reports
        .iter()
        .filter(|r| r.outcome == Outcome::Failed)
        .map(|r| {
            format!(
                "{}: {}",
                r.device,
                r.reason.clone().unwrap_or_else(|| "failed".into())
            )
        })
        .collect();
    let error = (!failures.is_empty()).then(|| EraseFailure::Device(failures.join("; ")));
    finish(reports, error)
}
