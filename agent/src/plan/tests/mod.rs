//! The plan runner on fakes: a recording hardware manager, report media in temporary files
//! (through the real [`DiskMedium`]), [`FakePower`], and a real HTTP server on loopback
//! receiving the queued reports.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rivet_protocol::plan::report::{PlanReport, RunState, StepState};
use rivet_protocol::plan::{Action, Identity, Plan};
use rivet_protocol::report::{ReportBatch, ReportBody};
use rivet_protocol::steps::{Step, StepType};
use serde_json::{json, Value};

use super::*;
use crate::power::{FakePower, PowerAction};
use crate::settings::Settings;
use crate::steps::{HardwareManager, HardwareSupport, StepError};

const MEDIUM_SERIAL: &str = "RIVET-REPORT";
const MEDIUM_SIZE: u64 = 1 << 20;
/// The step the recorder runs slowly, with progress on the board.
const SLOW_STEP: &str = "inject_files";

/// Records every step it runs with the node it saw; fails the steps named in `failing`.
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<(String, Value, Value)>>,
    failing: Vec<&'static str>,
}

impl Recorder {
    fn names(&self) -> Vec<String> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|c| c.0.clone())
            .collect()
    }
}

struct Shared(Arc<Recorder>);

impl HardwareManager for Shared {
    fn name(&self) -> &str {
        "recorder"
    }
    fn class_name(&self) -> &str {
        "Recorder"
    }
    fn version(&self) -> &str {
        "1"
    }
    fn support(&self) -> HardwareSupport {
        HardwareSupport::GENERIC
    }
    fn steps(&self) -> Vec<(StepType, Step)> {
        Vec::new()
    }
    fn execute(&self, step: &str, call: &StepCall<'_>) -> Result<Value, StepError> {
        self.0.calls.lock().unwrap().push((
            step.to_string(),
            call.node.clone(),
            Value::Object(call.args.clone()),
        ));
        if self.0.failing.contains(&step) {
            return Err(StepError::Failed(format!("{step} broke")));
        }
        if step.starts_with("erase_devices") {
            return Ok(json!({"/dev/sda": {"outcome": "erased", "method": "metadata"}}));
        }
        if step == SLOW_STEP {
            // Progress on the board, then long enough for the runner to look at it twice.
            let task = "write_image to /dev/vda";
            call.progress.update(crate::progress::Progress {
                task: task.into(),
                phase: "download".into(),
                percent: Some(25.0),
                done_bytes: Some(512 << 20),
                total_bytes: Some(2 << 30),
                ..Default::default()
            });
            std::thread::sleep(super::watch::PROGRESS_EVERY + Duration::from_millis(1500));
            call.progress.finish(task, "2048 MiB written");
        }
        Ok(json!({"ran": step}))
    }
}

struct FixedInventory;

impl Inspector for FixedInventory {
    fn inventory(&self) -> Result<Value, String> {
        Ok(json!({"cpu": {"count": 2}}))
    }
}

/// Report media by serial: temporary files.
struct FileMedia(HashMap<String, PathBuf>);

impl MediaFinder for FileMedia {
    fn find(&self, serial: &str) -> Result<Box<dyn ReportMedium>, String> {
        let path = self
            .0
            .get(serial)
            .ok_or_else(|| format!("no disk has the serial number {serial}"))?;
        Ok(Box::new(DiskMedium::new(
            path.clone(),
            path.display().to_string(),
        )))
    }
}

struct Bench {
    _dir: tempfile::TempDir,
    medium: PathBuf,
    recorder: Arc<Recorder>,
    power: Arc<FakePower>,
}

impl Bench {
    fn new(failing: Vec<&'static str>) -> Bench {
        let dir = tempfile::tempdir().unwrap();
        let medium = dir.path().join("report.img");
        std::fs::File::create(&medium)
            .unwrap()
            .set_len(MEDIUM_SIZE)
            .unwrap();
        Bench {
            _dir: dir,
            medium,
            recorder: Arc::new(Recorder {
                calls: Mutex::default(),
                failing,
            }),
            power: Arc::new(FakePower::new()),
        }
    }

    fn env(&self, queue: Option<ReportQueue>) -> PlanEnv {
        PlanEnv {
            ctx: Arc::new(AgentContext::new(Settings::default())),
            managers: HardwareManagers::new(vec![Arc::new(Shared(self.recorder.clone()))]),
            power: self.power.clone(),
            media: Arc::new(FileMedia(HashMap::from([(
                MEDIUM_SERIAL.to_string(),
                self.medium.clone(),
            )]))),
            inspector: Arc::new(FixedInventory),
            identity: me(),
            queue,
            boot_id: "boot-1".into(),
            node: None,
        }
    }

    fn medium_report(&self) -> Option<PlanReport> {
        let bytes = std::fs::read(&self.medium).unwrap();
        PlanReport::from_medium(&bytes).unwrap()
    }
}

fn me() -> Identity {
    Identity {
        macs: vec!["52:54:00:aa:00:01".into()],
        system_uuid: Some("1b4e28ba-2fa1-11d2-883f-0016d3cca427".into()),
        serial: Some("SN-1".into()),
    }
}

fn plan(steps: Value, extra: Value) -> Plan {
    let mut doc = json!({
        "version": 1,
        "name": "deploy",
        "machines": [
            {"name": "other", "match": {"mac": "52:54:00:aa:00:99"}},
            {"name": "node-1", "match": {"system_uuid": "1B4E28BA-2FA1-11D2-883F-0016D3CCA427"},
             "properties": {"root_device": {"serial": "TARGET"}}}
        ],
        "steps": steps,
        "report": {"medium": {"serial": MEDIUM_SERIAL}, "post_wait_seconds": 5},
    });
    for (k, v) in extra.as_object().unwrap() {
        doc[k] = v.clone();
    }
    Plan::from_value(&doc).unwrap()
}

fn deploy_steps() -> Value {
    json!([
        {"step": "inspect"},
        {"step": "erase_devices_express"},
        {"step": "write_image", "args": {"image_info": {"id": "img", "urls": ["file:///x"]}}},
        {"step": "wait", "args": {"seconds": 0}},
        {"step": "poweroff"}
    ])
}

#[tokio::test]
async fn a_plan_runs_its_steps_through_the_engine_and_records_completion() {
    let bench = Bench::new(vec![]);
    let plan = plan(deploy_steps(), json!({}));
    let outcome = run_plan(&plan, &bench.env(None)).await;

    assert_eq!(
        bench.recorder.names(),
        ["erase_devices_express", "write_image"]
    );
    let calls = bench.recorder.calls.lock().unwrap().clone();
    let node = &calls[0].1;
    assert_eq!(node["uuid"], "node-1");
    assert_eq!(
        node["properties"]["root_device"],
        json!({"serial": "TARGET"})
    );
    assert_eq!(
        node["properties"]["skip_block_devices"],
        json!([{"serial": MEDIUM_SERIAL}]),
        "the report medium is kept out of every step's reach"
    );
    assert_eq!(calls[1].2["image_info"]["id"], "img");

    assert_eq!(outcome.power, Some(Action::PowerOff));
    assert_eq!(bench.power.calls(), [PowerAction::PowerOff]);
    let report = outcome.report;
    assert_eq!(report.state, RunState::Done);
    assert_eq!(report.machine.as_deref(), Some("node-1"));
    let states: Vec<(&str, StepState)> = report
        .steps
        .iter()
        .map(|s| (s.step.as_str(), s.state))
        .collect();
    assert_eq!(
        states,
        [
            ("inspect", StepState::Done),
            ("erase_devices_express", StepState::Done),
            ("write_image", StepState::Done),
            ("wait", StepState::Done),
            ("poweroff", StepState::Done)
        ]
    );
    assert_eq!(report.steps[0].result, Some(json!({"cpu": {"count": 2}})));
    assert_eq!(bench.medium_report(), Some(report));
}

#[tokio::test]
async fn a_completed_plan_does_not_erase_or_write_again_unless_it_says_so() {
    let bench = Bench::new(vec![]);
    let plan = plan(deploy_steps(), json!({}));
    let first = run_plan(&plan, &bench.env(None)).await;
    assert_eq!(first.report.state, RunState::Done);
    let finished = first.report.finished_at;

    let second = run_plan(&plan, &bench.env(None)).await;
    assert_eq!(second.report.state, RunState::AlreadyDone);
    assert_eq!(second.report.completed_at, finished);
    assert_eq!(
        bench.recorder.names().len(),
        2,
        "nothing ran the second time"
    );
    assert_eq!(
        bench.power.calls(),
        [PowerAction::PowerOff, PowerAction::PowerOff],
        "the plan's final poweroff is repeated"
    );
    // Already-done is itself a completion record: a third boot still does nothing.
    let third = run_plan(&plan, &bench.env(None)).await;
    assert_eq!(third.report.state, RunState::AlreadyDone);
    assert_eq!(bench.recorder.names().len(), 2);

    // Another plan, or the same with rerun: always, runs.
    let again = self::plan(deploy_steps(), json!({"rerun": "always"}));
    let rerun = run_plan(&again, &bench.env(None)).await;
    assert_eq!(rerun.report.state, RunState::Done);
    assert_eq!(bench.recorder.names().len(), 4);
}

#[tokio::test]
async fn a_failed_step_ends_the_plan_as_on_failure_says() {
    let bench = Bench::new(vec!["erase_devices_express"]);
    let plan = plan(deploy_steps(), json!({"on_failure": "reboot"}));
    let outcome = run_plan(&plan, &bench.env(None)).await;
    assert_eq!(
        bench.recorder.names(),
        ["erase_devices_express"],
        "write_image never ran"
    );
    assert_eq!(outcome.report.state, RunState::Failed);
    let failed = &outcome.report.steps[1];
    assert_eq!(failed.state, StepState::Failed);
    assert_eq!(failed.error.as_deref(), Some("erase_devices_express broke"));
    assert!(outcome
        .report
        .message
        .as_deref()
        .unwrap()
        .contains("step 1 erase_devices_express failed"));
    assert_eq!(bench.power.calls(), [PowerAction::Reboot]);
    assert_eq!(bench.medium_report().unwrap().state, RunState::Failed);

    // A failed run is no completion: the next boot runs it again. With stop, the machine
    // stays on.
    let stop = self::plan(deploy_steps(), json!({}));
    let outcome = run_plan(&stop, &bench.env(None)).await;
    assert_eq!(outcome.power, None);
    assert_eq!(bench.recorder.names().len(), 2);
}

#[tokio::test]
async fn ignored_failures_are_recorded_and_the_plan_goes_on() {
    let bench = Bench::new(vec!["verify_wiring"]);
    let steps = json!([
        {"step": "verify_wiring", "args": {"expected": []}, "ignore_failure": true},
        {"step": "erase_devices_metadata"}
    ]);
    let outcome = run_plan(&plan(steps, json!({})), &bench.env(None)).await;
    assert_eq!(
        bench.recorder.names(),
        ["verify_wiring", "erase_devices_metadata"]
    );
    assert_eq!(outcome.report.state, RunState::Done);
    assert_eq!(outcome.report.steps[0].state, StepState::Failed);
    assert_eq!(outcome.power, None);
}

#[tokio::test]
async fn nothing_runs_without_a_matching_machine_or_a_usable_medium() {
    let bench = Bench::new(vec![]);
    let mut env = bench.env(None);
    env.identity = Identity {
        macs: vec!["52:54:00:aa:00:42".into()],
        ..Identity::default()
    };
    let outcome = run_plan(&plan(deploy_steps(), json!({})), &env).await;
    assert_eq!(outcome.report.state, RunState::Failed);
    assert!(outcome
        .report
        .message
        .unwrap()
        .contains("no machine of plan deploy"));
    assert!(bench.recorder.names().is_empty());
    assert!(bench.power.calls().is_empty());

    // A medium holding something else is never written, and nothing runs.
    let foreign = b"\xebX\x90mkfs.fat  some file system";
    std::fs::write(&bench.medium, foreign).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&bench.medium)
        .unwrap()
        .set_len(MEDIUM_SIZE)
        .unwrap();
    let outcome = run_plan(&plan(deploy_steps(), json!({})), &bench.env(None)).await;
    assert_eq!(outcome.report.state, RunState::Failed);
    assert!(
        outcome
            .report
            .message
            .as_deref()
            .unwrap()
            .contains("not a rivet report"),
        "{:?}",
        outcome.report.message
    );
    assert!(bench.recorder.names().is_empty());
    assert!(std::fs::read(&bench.medium).unwrap().starts_with(foreign));

    // A medium that is not there.
    let mut env = bench.env(None);
    env.media = Arc::new(FileMedia(HashMap::new()));
    let outcome = run_plan(&plan(deploy_steps(), json!({})), &env).await;
    assert!(outcome
        .report
        .message
        .unwrap()
        .contains("no disk has the serial number"));
    assert!(bench.recorder.names().is_empty());
}

/// A report receiver on loopback that refuses the first `refuse` posts with 503.
async fn receiver(refuse: usize) -> (String, Arc<Mutex<Vec<ReportBatch>>>) {
    use axum::http::StatusCode;
    let got: Arc<Mutex<Vec<ReportBatch>>> = Arc::default();
    let seen = got.clone();
    let refused = Arc::new(Mutex::new(0usize));
    let app = axum::Router::new().route(
        "/reports",
        axum::routing::post(move |axum::Json(batch): axum::Json<ReportBatch>| {
            let seen = seen.clone();
            let refused = refused.clone();
            async move {
                let mut count = refused.lock().unwrap();
                if *count < refuse {
                    *count += 1;
                    return StatusCode::SERVICE_UNAVAILABLE;
                }
                seen.lock().unwrap().push(batch);
                StatusCode::ACCEPTED
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/reports", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

#[tokio::test]
async fn reports_are_queued_until_the_url_accepts_them_and_sent_before_power_off() {
    let (url, got) = receiver(2).await;
    let queue = ReportQueue::start(url, None, "boot-1".into(), reqwest::Client::new());
    let bench = Bench::new(vec![]);
    let outcome = run_plan(
        &plan(deploy_steps(), json!({})),
        &bench.env(Some(queue.clone())),
    )
    .await;
    assert_eq!(outcome.power, Some(Action::PowerOff));
    assert_eq!(
        queue.waiting(),
        0,
        "everything was accepted before the power-off"
    );
    let batches = got.lock().unwrap().clone();
    let reports: Vec<_> = batches.iter().flat_map(|b| b.reports.clone()).collect();
    let seqs: Vec<u64> = reports.iter().map(|r| r.seq).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "in order, once each"
    );
    assert!(batches.iter().all(|b| b.boot_id == "boot-1"));
    let kinds: Vec<String> = reports
        .iter()
        .map(|r| match &r.body {
            ReportBody::Step { name, state, .. } => format!("{name}:{}", state.as_str()),
            ReportBody::Event { .. } => "event".into(),
            ReportBody::Plan { state, .. } => format!("plan:{state:?}"),
            ReportBody::Erase { .. } => "erase".into(),
            ReportBody::Heartbeat {} => "heartbeat".into(),
            ReportBody::Inventory { .. } => "inventory".into(),
        })
        .collect();
    assert_eq!(
        kinds[..3],
        ["inspect:running", "inventory", "inspect:done"],
        "the inventory goes to the server before the step's end"
    );
    let ReportBody::Inventory { inventory } = &reports[1].body else {
        panic!("not an inventory report");
    };
    assert_eq!(inventory["cpu"]["count"], 2);
    let erase = kinds
        .iter()
        .position(|k| k == "erase")
        .expect("an erase proof");
    assert_eq!(kinds[erase - 1], "erase_devices_express:running");
    assert_eq!(kinds[erase + 1], "erase_devices_express:done");
    let ReportBody::Erase { message, data } = &reports[erase].body else {
        panic!("not an erase report");
    };
    assert_eq!(message, "/dev/sda: erased (metadata)");
    assert_eq!(data["method"], "metadata");
    assert_eq!(kinds[kinds.len() - 2], "event");
    assert_eq!(kinds.last().map(String::as_str), Some("plan:Done"));
    let ReportBody::Event {
        data: Some(data), ..
    } = &reports[reports.len() - 2].body
    else {
        panic!("no final report event");
    };
    assert_eq!(data["state"], "done");
}

#[tokio::test]
async fn a_long_step_posts_its_progress_while_it_runs() {
    let (url, got) = receiver(0).await;
    let queue = ReportQueue::start(url, None, "boot-1".into(), reqwest::Client::new());
    let bench = Bench::new(vec![]);
    let steps = json!([{"step": SLOW_STEP}]);
    let outcome = run_plan(&plan(steps, json!({})), &bench.env(Some(queue))).await;
    assert_eq!(outcome.report.state, RunState::Done);
    let reports: Vec<ReportBody> = got
        .lock()
        .unwrap()
        .iter()
        .flat_map(|b| b.reports.iter().map(|r| r.body.clone()))
        .collect();
    let steps: Vec<_> = reports
        .iter()
        .filter_map(|body| match body {
            ReportBody::Step {
                state,
                progress,
                message,
                ..
            } => Some((*state, *progress, message.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        steps,
        vec![
            (StepState::Running, None, None),
            (
                StepState::Running,
                Some(0.25),
                Some("512 MiB of 2.0 GiB".to_string())
            ),
            (StepState::Done, None, Some("2048 MiB written".to_string())),
        ],
        "start, the progress once (it did not change), end with the outcome: {reports:?}"
    );
}

mod media;
