//! The plan runner (docs/plan.md): runs a [`Plan`] on this machine with the same step engine
//! Ironic's commands use, for an embedded plan (offline mode) as for one received at lookup
//! (plan mode).
//!
//! In order: choose the plan's machine with the matchers; read the report medium (a
//! completed run of the same plan on this machine skips everything destructive); keep the
//! report medium out of every step's reach (`skip_block_devices`); run the steps, recording
//! each on the console, on the medium and in the report queue; on a failure stop, power off
//! or reboot as the plan says; before a power action, give queued reports time to leave.

mod identity;
pub mod live;
pub mod media;
mod medium;
mod queue;
pub mod watch;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rivet_protocol::plan::report::{PlanReport, RunState, StepRecord, StepState, REPORT_VERSION};
use rivet_protocol::plan::{Action, Identity, Machine, OnFailure, Plan, PlanStep, Rerun, StepKind};
use rivet_protocol::report::{PlanState, ReportBody};
use rivet_protocol::JsonObject;
use serde_json::{json, Value};

use crate::context::AgentContext;
use crate::power::Power;
use crate::steps::{HardwareManagers, StepCall};

pub use identity::{read_identity, DMI_DIR};
pub use medium::{
    choose as choose_medium, read_report, write_report, DiskFinder, DiskMedium, MediaFinder,
    ReportMedium, HEAD_LEN,
};
pub use queue::ReportQueue;

/// How long queued reports may hold up a power action when the plan does not say.
pub const DEFAULT_POST_WAIT: Duration = Duration::from_secs(30);

/// Collects the inventory for the `inspect` step. Blocking.
pub trait Inspector: Send + Sync {
    fn inventory(&self) -> Result<Value, String>;
}

/// Everything the runner works with.
pub struct PlanEnv {
    pub ctx: Arc<AgentContext>,
    pub managers: HardwareManagers,
    pub power: Arc<dyn Power>,
    pub media: Arc<dyn MediaFinder>,
    pub inspector: Arc<dyn Inspector>,
    pub identity: Identity,
    /// Where reports are posted, if anywhere.
    pub queue: Option<ReportQueue>,
    pub boot_id: String,
    /// The node as lookup returned it (plan mode); the plan's machine properties are
    /// merged into its `properties`.
    pub node: Option<Value>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// One run: the report and where it goes.
struct Run<'a> {
    env: &'a PlanEnv,
    plan: &'a Plan,
    report: PlanReport,
    medium: Option<Box<dyn ReportMedium>>,
}

impl Run<'_> {
    /// Writes the report to the medium (errors only logged: the console has it all).
    fn save(&self) {
        if let Some(medium) = &self.medium {
            let written = self.env.ctx.state().root_device;
            if written.as_deref() == Some(medium.path()) {
                tracing::error!(
                    "plan {}: {} is the disk the image went to: the report is not written there",
                    self.plan.name,
                    medium.describe()
                );
                return;
            }
            if let Err(e) = write_report(medium.as_ref(), &self.report) {
                tracing::error!("plan {}: report medium: {e}", self.plan.name);
            }
        }
    }

    fn post(&self, body: ReportBody) {
        if let Some(queue) = &self.env.queue {
            queue.push(body);
        }
    }

    /// Ends the run: state, console, medium, queue.
    fn finish(&mut self, state: RunState, message: Option<String>) {
        self.report.state = state;
        self.report.finished_at = Some(now());
        self.report.message = message.clone();
        self.save();
        let text = serde_json::to_string_pretty(&self.report).unwrap_or_default();
        tracing::info!("plan {}: report:\n{text}", self.plan.name);
        self.post(ReportBody::Event {
            message: format!("plan {} report", self.plan.name),
            data: serde_json::to_value(&self.report).ok(),
        });
        let plan_state = match state {
            RunState::Failed => PlanState::Failed,
            _ => PlanState::Done,
        };
        self.post(ReportBody::Plan {
            state: plan_state,
            message,
        });
    }
}

/// What the runner did last.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub report: PlanReport,
    /// The power action done (or refused) at the end, if any.
    pub power: Option<Action>,
}

/// Runs `plan` on this machine. Returns when the plan is over, unless a power action ended
/// the boot first.
pub async fn run_plan(plan: &Plan, env: &PlanEnv) -> Outcome {
    let digest = plan.digest();
    let mut run = Run {
        env,
        plan,
        medium: None,
        report: PlanReport {
            rivet_report: REPORT_VERSION,
            plan: plan.name.clone(),
            plan_sha256: digest.clone(),
            machine: None,
            identity: env.identity.clone(),
            boot_id: env.boot_id.clone(),
            started_at: now(),
            finished_at: None,
            state: RunState::Running,
            steps: Vec::new(),
            message: None,
            completed_at: None,
        },
    };
    tracing::info!(
        "plan {}: {} step(s), sha256 {digest}",
        plan.name,
        plan.steps.len()
    );
    let machine = match plan.select(&env.identity) {
        Ok(machine) => machine,
        Err(e) => return refuse(run, e.to_string()).await,
    };
    if let Some(machine) = machine {
        tracing::info!("plan {}: this machine is {}", plan.name, machine.name);
        run.report.machine = Some(machine.name.clone());
    }
    let mut previous = None;
    if let Some(wanted) = &plan.report.medium {
        let found = env
            .media
            .find(&wanted.serial)
            .and_then(|medium| read_report(medium.as_ref()).map(|old| (medium, old)));
        match found {
            Ok((medium, old)) => {
                tracing::info!("plan {}: report medium {}", plan.name, medium.describe());
                run.medium = Some(medium);
                previous = old;
            }
            Err(e) => return refuse(run, format!("report medium: {e}")).await,
        }
    }
    if let Some(previous) = previous.filter(|p| p.records_completion(&digest, &env.identity)) {
        if plan.rerun == Rerun::Never {
            return already_done(run, &previous).await;
        }
        tracing::info!(
            "plan {}: completed here before; running it again (rerun: always)",
            plan.name
        );
    }
    let node = node_for(env.node.as_ref(), machine, plan);
    run.save();
    for (index, step) in plan.steps.iter().enumerate() {
        let index = index as u32;
        if let Some(StepKind::Action(action @ (Action::Reboot | Action::PowerOff))) = step.kind() {
            run.report.steps.push(StepRecord {
                index,
                step: step.step.clone(),
                state: StepState::Done,
                seconds: None,
                result: None,
                error: None,
            });
            run.finish(RunState::Done, None);
            return power(run, action).await;
        }
        run.post(ReportBody::Step {
            index,
            name: step.step.clone(),
            state: StepState::Running,
            progress: None,
            message: None,
        });
        tracing::info!("plan {}: step {index} {}: running", plan.name, step.step);
        let started = Instant::now();
        // Tasks that ended before this step are not its own.
        env.ctx.progress.take_finished();
        let outcome = run_watched(&run, index, step, &node).await;
        let ended = watch::outcomes(&env.ctx.progress.take_finished());
        let seconds = started.elapsed().as_secs_f64();
        let (state, result, error) = match outcome {
            Ok(result) => (StepState::Done, Some(result).filter(|r| !r.is_null()), None),
            Err(error) => (StepState::Failed, None, Some(error)),
        };
        match &error {
            None => tracing::info!(
                "plan {}: step {index} {}: done in {seconds:.1} s",
                plan.name,
                step.step
            ),
            Some(e) => tracing::error!(
                "plan {}: step {index} {}: failed after {seconds:.1} s: {e}",
                plan.name,
                step.step
            ),
        }
        if step.step.starts_with("erase_devices") {
            post_erase_proofs(&run, result.as_ref());
        }
        if let (Some(StepKind::Inspect), Some(inventory)) = (step.kind(), &result) {
            run.post(ReportBody::Inventory {
                inventory: inventory.clone(),
            });
        }
        run.post(ReportBody::Step {
            index,
            name: step.step.clone(),
            state,
            progress: None,
            message: error.clone().or(ended),
        });
        run.report.steps.push(StepRecord {
            index,
            step: step.step.clone(),
            state,
            seconds: Some((seconds * 10.0).round() / 10.0),
            result,
            error: error.clone(),
        });
        if let Some(error) = error {
            if step.ignore_failure {
                run.save();
                continue;
            }
            run.finish(
                RunState::Failed,
                Some(format!("step {index} {} failed: {error}", step.step)),
            );
            return match plan.on_failure {
                OnFailure::Stop => stop(run).await,
                OnFailure::PowerOff => power(run, Action::PowerOff).await,
                OnFailure::Reboot => power(run, Action::Reboot).await,
            };
        }
        run.save();
    }
    run.finish(RunState::Done, None);
    tracing::info!("plan {}: done", plan.name);
    stop(run).await
}

/// One `erase` report per device of an erase step's result (device path: its report), the
/// proofs rivet-server keeps in the node's history.
fn post_erase_proofs(run: &Run<'_>, result: Option<&Value>) {
    let Some(devices) = result.and_then(Value::as_object) else {
        return;
    };
    for (device, report) in devices {
        let outcome = report.get("outcome").and_then(Value::as_str).unwrap_or("?");
        let method = report.get("method").and_then(Value::as_str).unwrap_or("?");
        run.post(ReportBody::Erase {
            message: format!("{device}: {outcome} ({method})"),
            data: report.clone(),
        });
    }
}

/// The node the steps see: lookup's node (plan mode) or a minimal one, with the machine's
/// properties and the report medium in `skip_block_devices`.
fn node_for(base: Option<&Value>, machine: Option<&Machine>, plan: &Plan) -> Value {
    let mut node = base.cloned().unwrap_or_else(|| {
        json!({
            "uuid": machine.map(|m| m.name.as_str()).unwrap_or(plan.name.as_str()),
            "properties": {},
            "instance_info": {},
            "driver_internal_info": {},
        })
    });
    if !node.get("properties").is_some_and(Value::is_object) {
        node["properties"] = json!({});
    }
    if let Some(machine) = machine {
        for (key, value) in &machine.properties {
            node["properties"][key] = value.clone();
        }
    }
    if let Some(medium) = &plan.report.medium {
        let skip = &mut node["properties"]["skip_block_devices"];
        if !skip.is_array() {
            *skip = json!([]);
        }
        if let Some(list) = skip.as_array_mut() {
            list.push(json!({"serial": medium.serial}));
        }
    }
    node
}

/// Runs a step; while it runs, posts its progress and heartbeats (see [`watch`]).
async fn run_watched(
    run: &Run<'_>,
    index: u32,
    step: &PlanStep,
    node: &Value,
) -> Result<Value, String> {
    let outcome = run_step(step, run.env, node);
    if run.env.queue.is_none() {
        return outcome.await;
    }
    tokio::pin!(outcome);
    let mut watch = watch::StepWatch::new(index, &step.step, Instant::now());
    let mut ticks = tokio::time::interval(watch::LOOK_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        tokio::select! {
            result = &mut outcome => return result,
            _ = ticks.tick() => {
                let tasks = run.env.ctx.progress.snapshot();
                if let Some(body) = watch.tick(&tasks, Instant::now()) {
                    run.post(body);
                }
            }
        }
    }
}

async fn run_step(step: &PlanStep, env: &PlanEnv, node: &Value) -> Result<Value, String> {
    match step.kind() {
        Some(StepKind::Engine) => {
            let managers = env.managers.clone();
            let ctx = env.ctx.clone();
            let name = step.step.clone();
            let args: JsonObject = step.args.clone();
            let node = node.clone();
            tokio::task::spawn_blocking(move || {
                let ports = json!([]);
                let call = StepCall {
                    args: &args,
                    node: &node,
                    ports: &ports,
                    progress: &ctx.progress,
                    ctx: &ctx,
                };
                managers.execute(&name, &call).map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| format!("the step's thread failed: {e}"))?
        }
        Some(StepKind::Inspect) => {
            let inspector = env.inspector.clone();
            tokio::task::spawn_blocking(move || inspector.inventory())
                .await
                .map_err(|e| format!("the inspection thread failed: {e}"))?
        }
        Some(StepKind::Action(Action::Wait)) => {
            let seconds = step.wait_seconds().unwrap_or(0.0);
            tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
            Ok(Value::Null)
        }
        Some(StepKind::Action(action)) => Err(format!(
            "{action:?} ends the boot and must be the plan's last step"
        )),
        None => Err(format!("{} is not a step rivet knows", step.step)),
    }
}

/// Nothing runs: the error goes to the console, the medium (when it is usable) and the queue.
async fn refuse(mut run: Run<'_>, message: String) -> Outcome {
    tracing::error!("plan {}: {message}; no step runs", run.plan.name);
    run.finish(RunState::Failed, Some(message));
    stop(run).await
}

async fn already_done(mut run: Run<'_>, previous: &PlanReport) -> Outcome {
    let when = previous.completion_time();
    tracing::warn!(
        "plan {}: already completed on this machine (at {} s after the epoch, boot {}); \
         nothing is erased or written again (set \"rerun\": \"always\" to run it again)",
        run.plan.name,
        when.unwrap_or(0),
        previous.boot_id
    );
    run.report.completed_at = when;
    run.finish(
        RunState::AlreadyDone,
        Some("completed on this machine before; nothing ran".into()),
    );
    let last = run.plan.steps.last().and_then(PlanStep::kind);
    if last == Some(StepKind::Action(Action::PowerOff)) {
        return power(run, Action::PowerOff).await;
    }
    stop(run).await
}

async fn post_wait(run: &Run<'_>) {
    let Some(queue) = &run.env.queue else {
        return;
    };
    let wait = run
        .plan
        .report
        .post_wait_seconds
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_POST_WAIT);
    if !queue.flush(wait).await {
        tracing::warn!(
            "plan {}: {} report(s) could not be posted to {} within {wait:?}",
            run.plan.name,
            queue.waiting(),
            queue.url()
        );
    }
}

/// The plan is over and the machine stays on: queued reports get `post_wait_seconds` to
/// leave before this returns (a process that ends next would drop them); whatever is left
/// keeps being posted in the background while the process lives.
async fn stop(run: Run<'_>) -> Outcome {
    post_wait(&run).await;
    Outcome {
        report: run.report,
        power: None,
    }
}

async fn power(run: Run<'_>, action: Action) -> Outcome {
    post_wait(&run).await;
    tracing::info!("plan {}: {action:?}", run.plan.name);
    let power = run.env.power.clone();
    let result = tokio::task::spawn_blocking(move || match action {
        Action::Reboot => power.reboot(),
        _ => power.power_off(),
    })
    .await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!("plan {}: {action:?} failed: {e}", run.plan.name),
        Err(e) => tracing::error!("plan {}: {action:?}: {e}", run.plan.name),
    }
    Outcome {
        report: run.report,
        power: Some(action),
    }
}

#[cfg(test)]
mod tests;
