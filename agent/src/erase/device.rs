//! Erasing one device: the plan's attempts in order, each with its read-back check, with
//! progress on the board and an attempt record for the report.

use std::io;
use std::time::{Instant, SystemTime};

use serde_json::{json, Value};

use super::ata_erase::{self, AtaErased};
use super::discard::discard_erase;
use super::host::EraseHost;
use super::io::BlockIo;
use super::metadata::erase_metadata;
use super::nvme::SanitizeAction;
use super::nvme_erase::{self, NvmeProbe, SanitizeTick};
use super::overwrite::{overwrite, passes, Tick};
use super::plan::{Attempt, DeviceFacts, EraseMode, Method, NvmeFacts, OnFailure};
use super::report::{timestamp, AttemptReport, EraseReport, Outcome};
use super::verify::{
    metadata_verification, new_nonce, read_back, write_markers, Expect, Samples, Verification,
};
use crate::disks::DeviceKind;
use crate::progress::{AbortSignal, Progress, ProgressBoard};

/// One device's erase and where it reports.
pub(super) struct DeviceJob<'a> {
    pub host: &'a dyn EraseHost,
    pub facts: &'a DeviceFacts,
    pub mode: EraseMode,
    pub progress: &'a ProgressBoard,
    pub abort: &'a AbortSignal,
}

/// What a successful attempt leaves for the report.
struct Done {
    detail: Value,
    verification: Option<Verification>,
}

/// Progress of one attempt on the board; also the abort check point.
struct Reporter<'a> {
    board: &'a ProgressBoard,
    abort: &'a AbortSignal,
    task: String,
    phase: String,
    started: Instant,
}

impl Reporter<'_> {
    fn check_abort(&self) -> io::Result<()> {
        if self.abort.is_requested() {
            return Err(io::Error::new(
                io::ErrorKind::Interrupted,
                "the erase was aborted (the agent is stopping)",
            ));
        }
        Ok(())
    }

    fn message(&self, message: impl Into<String>) {
        self.board.update(Progress {
            task: self.task.clone(),
            phase: self.phase.clone(),
            message: Some(message.into()),
            ..Progress::default()
        });
    }

    fn bytes(&self, done: u64, total: u64) -> io::Result<()> {
        let elapsed = self.started.elapsed().as_secs_f64();
        let rate = (elapsed > 0.0).then(|| done as f64 / elapsed);
        self.board.update(Progress {
            task: self.task.clone(),
            phase: self.phase.clone(),
            percent: (total > 0).then(|| done as f64 * 100.0 / total as f64),
            done_bytes: Some(done),
            total_bytes: Some(total),
            bytes_per_second: rate,
            eta_seconds: rate
                .filter(|r| *r > 0.0)
                .map(|r| total.saturating_sub(done) as f64 / r),
            message: None,
        });
        self.check_abort()
    }

    fn sanitize(&self, tick: &SanitizeTick) -> io::Result<()> {
        self.board.update(Progress {
            task: self.task.clone(),
            phase: self.phase.clone(),
            percent: Some(tick.percent),
            eta_seconds: tick
                .estimate
                .map(|e| e.saturating_sub(tick.elapsed).as_secs_f64()),
            message: Some(match tick.estimate {
                Some(e) => format!("controller estimate {} s", e.as_secs()),
                None => "the controller gives no estimate".to_string(),
            }),
            ..Progress::default()
        });
        self.check_abort()
    }
}

impl DeviceJob<'_> {
    fn open(&self, write: bool) -> Result<Box<dyn BlockIo>, String> {
        self.host
            .open(&self.facts.device, write)
            .map_err(|e| e.to_string())
    }

    fn nvme_probe(&self) -> Result<&NvmeProbe, String> {
        match &self.facts.nvme {
            NvmeFacts::Probed(probe) => Ok(probe),
            _ => Err("the NVMe controller was not identified".to_string()),
        }
    }

    /// Markers before a method that does not read back as zeroes by itself, and the check
    /// after it.
    fn with_markers(
        &self,
        expect: Expect,
        erase: impl FnOnce() -> Result<Value, String>,
    ) -> Result<Done, String> {
        let mut io = self.open(true)?;
        let samples = Samples::choose(io.size(), io.logical_block_size(), &mut rand::thread_rng());
        let nonce = new_nonce();
        write_markers(io.as_mut(), &samples, nonce)
            .map_err(|e| format!("writing the verification markers: {e}"))?;
        let detail = erase()?;
        io.sync().map_err(|e| e.to_string())?;
        let read = read_back(io.as_mut(), &samples, nonce)
            .map_err(|e| format!("reading back after the erase: {e}"))?;
        let verification = Verification::judge(expect, read);
        if !verification.passed {
            return Err(format!("verification failed: {}", verification.detail));
        }
        Ok(Done {
            detail,
            verification: Some(verification),
        })
    }

    fn run(&self, method: &Method, reporter: &Reporter<'_>) -> Result<Done, String> {
        let device = &self.facts.device;
        let name = device.path.display().to_string();
        match method {
            Method::SecureEraseUnavailable { reason } => Err(reason.clone()),
            Method::NvmeFormat {
                erase,
                all_namespaces,
            } => {
                let probe = self.nvme_probe()?;
                self.with_markers(Expect::MarkersGone, || {
                    reporter.message("Format NVM running (the controller reports no progress)");
                    let mut admin = self.host.nvme(device).map_err(|e| e.to_string())?;
                    let started = Instant::now();
                    nvme_erase::format(
                        admin.as_mut(),
                        probe,
                        *erase,
                        *all_namespaces,
                        device.size_bytes,
                    )
                    .map_err(|e| e.to_string())?;
                    Ok(json!({
                        "nsid": if *all_namespaces { "all".to_string() } else { probe.nsid.to_string() },
                        "controller": {"model": probe.controller.model, "serial": probe.controller.serial,
                                        "firmware": probe.controller.firmware, "fna": probe.controller.fna,
                                        "oacs": probe.controller.oacs, "sanicap": probe.controller.sanicap},
                        "seconds": started.elapsed().as_secs_f64(),
                    }))
                })
            }
            Method::NvmeSanitize { action } => {
                let probe = self.nvme_probe()?;
                self.with_markers(Expect::MarkersGone, || {
                    let mut admin = self.host.nvme(device).map_err(|e| e.to_string())?;
                    let passes = if *action == SanitizeAction::Overwrite { 1 } else { 0 };
                    let done = nvme_erase::sanitize(
                        admin.as_mut(),
                        *action,
                        passes,
                        self.host.clock(),
                        self.host.poll_interval(),
                        &mut |tick| reporter.sanitize(tick),
                    )
                    .map_err(|e| e.to_string())?;
                    Ok(json!({
                        "action": action.name(),
                        "controller_estimate_seconds": done.estimate.map(|e| e.as_secs()),
                        "seconds": done.took.as_secs_f64(),
                        "controller": {"model": probe.controller.model, "serial": probe.controller.serial},
                    }))
                })
            }
            Method::AtaSecurityErase { .. } => self.with_markers(Expect::MarkersGone, || {
                let mut ata = self.host.ata(device).map_err(|e| e.to_string())?;
                let mut on_start = |e: &AtaErased| {
                    reporter.message(format!(
                        "SECURITY ERASE UNIT{} running: drive estimate {:?}, timeout {} s",
                        if e.enhanced { " (enhanced)" } else { "" },
                        e.estimate,
                        e.timeout.as_secs()
                    ))
                };
                let done = ata_erase::security_erase(
                    ata.as_mut(),
                    &name,
                    device.size_bytes,
                    &mut on_start,
                )
                .map_err(|e| e.to_string())?;
                Ok(json!({
                    "enhanced": done.enhanced,
                    "drive_estimate": done.estimate,
                    "timeout_seconds": done.timeout.as_secs(),
                }))
            }),
            Method::Discard => {
                let mut io = self.open(true)?;
                let samples =
                    Samples::choose(io.size(), io.logical_block_size(), &mut rand::thread_rng());
                let limits = self.host.queue_limits(device);
                let outcome = discard_erase(
                    io.as_mut(),
                    &samples,
                    new_nonce(),
                    limits.write_zeroes,
                    &mut |done, total| reporter.bytes(done, total),
                )
                .map_err(|e| e.to_string())?;
                Ok(Done {
                    detail: json!({"secure": outcome.secure, "zeroed_out": outcome.zeroed_out}),
                    verification: Some(Verification::judge(Expect::Zeroes, outcome.read_back)),
                })
            }
            Method::Overwrite {
                passes: count,
                zeroize,
            } => {
                let plan = passes(*count, *zeroize);
                if plan.is_empty() {
                    return Ok(Done {
                        detail: json!({"written": 0, "note": "no pass to write"}),
                        verification: None,
                    });
                }
                let expect = if *zeroize {
                    Expect::Zeroes
                } else {
                    Expect::MarkersGone
                };
                let try_zeroout = self.host.queue_limits(device).write_zeroes;
                let mut offloaded = false;
                let mut done = self.with_markers(expect, || {
                    let mut io = self.open(true)?;
                    offloaded = overwrite(io.as_mut(), &plan, try_zeroout, &mut |t: Tick| {
                        reporter.bytes(t.done, t.total)
                    })
                    .map_err(|e| e.to_string())?;
                    Ok(Value::Null)
                })?;
                done.detail = json!({"passes": plan.len(), "zero_pass_offloaded": offloaded});
                Ok(done)
            }
            Method::Metadata => {
                let mut io = self.open(true)?;
                let outcome =
                    erase_metadata(io.as_mut(), &mut |done, total| reporter.bytes(done, total))
                        .map_err(|e| e.to_string())?;
                let verification = metadata_verification(&outcome);
                if !verification.passed {
                    return Err(format!("verification failed: {}", verification.detail));
                }
                Ok(Done {
                    detail: json!({
                        "signatures_removed": outcome.found_before,
                        "regions": outcome.regions,
                        "bytes_zeroed": outcome.bytes_zeroed,
                    }),
                    verification: Some(verification),
                })
            }
        }
    }

    /// Runs `attempts` and reports.
    pub fn erase(&self, attempts: &[Attempt], notes: Vec<String>) -> EraseReport {
        let device = &self.facts.device;
        let task = format!("erase {}", device.path.display());
        let mut report = EraseReport::new(device, self.mode.step_name(), Outcome::Failed);
        report.notes = notes;
        let started_wall = SystemTime::now();
        let started = Instant::now();
        report.started_at = Some(timestamp(started_wall));
        for attempt in attempts {
            let name = attempt.method.name();
            let reporter = Reporter {
                board: self.progress,
                abort: self.abort,
                task: task.clone(),
                phase: name.clone(),
                started: Instant::now(),
            };
            let attempt_start = SystemTime::now();
            let result = reporter
                .check_abort()
                .map_err(|e| e.to_string())
                .and_then(|()| {
                    reporter.message("starting");
                    tracing::info!("{task}: {name}");
                    self.run(&attempt.method, &reporter)
                });
            let finished = timestamp(SystemTime::now());
            match result {
                Ok(done) => {
                    report.attempts.push(AttemptReport {
                        method: name.clone(),
                        succeeded: true,
                        error: None,
                        detail: done.detail,
                        started_at: timestamp(attempt_start),
                        finished_at: finished,
                    });
                    report.outcome = Outcome::Erased;
                    report.method = Some(name);
                    report.verification = done.verification;
                    break;
                }
                Err(error) => {
                    tracing::warn!("{task}: {name} failed: {error}");
                    report.attempts.push(AttemptReport {
                        method: name,
                        succeeded: false,
                        error: Some(error.clone()),
                        detail: Value::Null,
                        started_at: timestamp(attempt_start),
                        finished_at: finished,
                    });
                    report.reason = Some(error);
                    if attempt.on_failure == OnFailure::Fail || self.abort.is_requested() {
                        break;
                    }
                }
            }
        }
        if report.outcome == Outcome::Erased {
            report.reason = None;
            if matches!(device.kind, DeviceKind::Disk | DeviceKind::Virtual) {
                self.reread_partitions(&mut report);
            }
        }
        report.finished_at = Some(timestamp(SystemTime::now()));
        report.seconds = Some(started.elapsed().as_secs_f64());
        let outcome = match &report.method {
            Some(method) => format!("erased by {method}"),
            None => format!("failed: {}", report.reason.clone().unwrap_or_default()),
        };
        self.progress.finish(&task, &outcome);
        report
    }

    /// The partition table is gone: the kernel should forget the old partitions.
    fn reread_partitions(&self, report: &mut EraseReport) {
        let result = self
            .host
            .open(&self.facts.device, false)
            .and_then(|mut io| io.reread_partitions());
        match result {
            Ok(()) => {}
            // Loop devices without partition scanning refuse it; nothing to reread there.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) => report
                .notes
                .push(format!("rereading the partition table: {e}")),
        }
    }
}
