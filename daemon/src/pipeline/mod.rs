//! The step runner and the built-in steps.
//!
//! A run executes a workflow's steps in dependency order. Every state change
//! (run started, step attempt started / finished, metrics) is written to the
//! store as it happens. Plugin calls run on blocking threads, each job in a
//! fresh sandbox; outputs pass between steps in memory and every dataset
//! snapshot and registered model is persisted with its lineage.

pub mod evaluate;
mod process;
pub mod split;

use crate::plugin::bindings::{EntitySpan, Example, Split};
use crate::plugin::{JobSpec, PluginEvent, PluginFailure, PluginHost};
use crate::registry::Artifacts;
use crate::store::{ModelRow, NewModel, Store, StoredExample, state};
use crate::workflow::{Action, Builtin, Produces, Step, Workflow};
use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Receives what a run does, as it does it (terminal, logs, tests).
pub trait Reporter: Send + Sync {
    fn run_started(&self, _run_id: i64, _workflow: &Workflow) {}
    fn step_started(&self, _step: &str, _action: &str, _attempt: u32) {}
    fn step_event(&self, _step: &str, _event: &PluginEvent) {}
    fn step_note(&self, _step: &str, _message: &str) {}
    fn step_finished(&self, _step: &str, _result: Result<&str, &str>) {}
    /// A step did not run: a gate before it said no, a step it needs was
    /// skipped, or its `when` was false.
    fn step_skipped(&self, _step: &str, _reason: &str) {}
    /// A step's plugin failed; called before `step_finished`.
    fn plugin_failed(&self, _step: &str, _failure: &PluginFailure) {}
}

/// A reporter that only logs.
pub struct LogReporter;

impl Reporter for LogReporter {
    fn step_started(&self, step: &str, action: &str, attempt: u32) {
        tracing::info!(step, action, attempt, "step started");
    }
    fn step_note(&self, step: &str, message: &str) {
        tracing::warn!(step, "{message}");
    }
    fn step_finished(&self, step: &str, result: Result<&str, &str>) {
        match result {
            Ok(summary) => tracing::info!(step, "step finished: {summary}"),
            Err(e) => tracing::error!(step, "step failed: {e}"),
        }
    }
    fn step_skipped(&self, step: &str, reason: &str) {
        tracing::info!(step, "step skipped: {reason}");
    }
}

/// A dataset snapshot passed between steps.
#[derive(Debug)]
pub struct DatasetOut {
    pub version_id: i64,
    pub hash: String,
    pub rows: Vec<StoredExample>,
}

/// A trained model passed between steps.
#[derive(Debug)]
pub struct ModelOut {
    pub bytes: Vec<u8>,
    /// The bytes are also stored as this artifact, so a resumed run finds
    /// them.
    pub artifact_hash: String,
    pub plugin: String,
    pub plugin_version: String,
    pub plugin_hash: String,
    pub config_hash: String,
    pub dataset: Arc<DatasetOut>,
    pub metrics: Vec<(String, f64)>,
    pub intents: Vec<String>,
    /// The registered model training continued from.
    pub base_model_id: Option<i64>,
}

#[derive(Debug, Clone)]
pub enum Output {
    Dataset(Arc<DatasetOut>),
    Model(Arc<ModelOut>),
    Evaluation(Arc<evaluate::Report>),
    Registered(Box<ModelRow>),
    Verdict(crate::script::hooks::Verdict),
    /// A rules step's dataset, with what the rules did.
    Ruled(Arc<DatasetOut>, crate::script::hooks::RuleStats),
    /// What a process step left: devices, time, metrics, artifacts.
    Process(Arc<Value>),
}

impl Output {
    fn summary(&self) -> Value {
        match self {
            Output::Dataset(d) => {
                json!({"dataset_version": d.version_id, "examples": d.rows.len(), "hash": d.hash})
            }
            Output::Model(m) => {
                json!({"model_bytes": m.bytes.len(), "artifact": m.artifact_hash, "plugin": m.plugin,
                    "plugin_version": m.plugin_version, "plugin_hash": m.plugin_hash, "config_hash": m.config_hash,
                    "dataset_version": m.dataset.version_id, "intents": m.intents, "base_model": m.base_model_id,
                    "metrics": m.metrics.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>()})
            }
            Output::Evaluation(r) => serde_json::to_value(r.as_ref()).unwrap_or(Value::Null),
            Output::Registered(m) => {
                json!({"model": m.id, "name": m.name, "version": m.version, "artifact": m.artifact_hash})
            }
            Output::Verdict(v) => json!(v),
            Output::Ruled(d, r) => {
                json!({"dataset_version": d.version_id, "examples": d.rows.len(), "hash": d.hash,
                       "kept": r.kept, "dropped": r.dropped, "changed": r.changed})
            }
            Output::Process(v) => (**v).clone(),
        }
    }

    fn line(&self) -> String {
        match self {
            Output::Dataset(d) => {
                let count = |s: &str| d.rows.iter().filter(|r| r.split == s).count();
                format!(
                    "{} examples (train {}, validation {}, test {}), snapshot {}",
                    d.rows.len(),
                    count("train") + count("unspecified"),
                    count("validation"),
                    count("test"),
                    &d.hash[..12]
                )
            }
            Output::Model(m) => {
                let get = |k: &str| m.metrics.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
                let mut s = format!(
                    "{} intents, {} KiB model",
                    m.intents.len(),
                    m.bytes.len() / 1024
                );
                if let Some(a) = get("val_accuracy") {
                    s.push_str(&format!(", validation accuracy {:.1}%", a * 100.0));
                }
                s
            }
            Output::Evaluation(r) => format!(
                "accuracy {:.1}% on {} {} examples",
                r.accuracy * 100.0,
                r.examples,
                r.split
            ),
            Output::Registered(m) => {
                format!("registered model {} ({} v{})", m.id, m.name, m.version)
            }
            Output::Verdict(v) => format!(
                "{}{}",
                if v.pass { "passed" } else { "said no" },
                v.reason
                    .as_ref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ),
            Output::Ruled(d, r) => format!(
                "kept {} examples, dropped {}, changed {}; snapshot {}",
                r.kept,
                r.dropped,
                r.changed,
                &d.hash[..12]
            ),
            Output::Process(v) => {
                let devices: Vec<&str> = v["devices"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                format!(
                    "ran {:.1} s{}, {} metric values, {} artifact file(s)",
                    v["seconds"].as_f64().unwrap_or(0.0),
                    if devices.is_empty() {
                        String::new()
                    } else {
                        format!(" on GPU {}", devices.join(","))
                    },
                    v["metrics"],
                    v["artifacts"].as_array().map_or(0, Vec::len)
                )
            }
        }
    }
}

/// What one step of a run came to.
enum StepEnd {
    /// Succeeded now, or in an earlier attempt of the run (restored).
    Done(Output),
    /// Did not run, and why.
    Skipped(String),
    /// The run stops here: its state, why, and the step at fault (none
    /// when it stopped before the step began).
    Stop {
        state: &'static str,
        error: String,
        step: Option<String>,
    },
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub run_id: i64,
    pub state: String,
    pub error: Option<String>,
    pub failed_step: Option<String>,
    pub evaluation: Option<Arc<evaluate::Report>>,
    pub model: Option<ModelRow>,
    /// What each gate decided, in order.
    pub verdicts: Vec<(String, crate::script::hooks::Verdict)>,
    /// Steps that did not run, and why.
    pub skipped: Vec<(String, String)>,
}

pub struct Runner {
    pub host: Arc<PluginHost>,
    pub store: Store,
    pub artifacts: Artifacts,
    /// GPU allocations for process steps.
    pub gpus: Arc<crate::executor::gpus::GpuQueue>,
    /// The Slurm client, for workflows whose process steps Slurm places.
    pub slurm: Arc<crate::executor::slurm::Slurm>,
    /// Process steps' checkpoint folders: `<work_dir>/run-<id>/<step>`.
    pub work_dir: std::path::PathBuf,
    /// Between SIGTERM and SIGKILL when a process is stopped.
    pub process_grace: std::time::Duration,
}

pub fn to_stored(e: &Example) -> StoredExample {
    let entities: Vec<Value> = e
        .entities
        .iter()
        .map(|s| json!({"entity": s.entity, "start": s.start, "end": s.end, "value": s.value}))
        .collect();
    StoredExample {
        text: e.text.clone(),
        intent: e.intent.clone(),
        entities: Value::Array(entities).to_string(),
        split: match e.split {
            Split::Train => "train",
            Split::Validation => "validation",
            Split::Test => "test",
            Split::Unspecified => "unspecified",
        }
        .to_owned(),
    }
}

pub fn to_example(r: &StoredExample) -> Example {
    let entities = serde_json::from_str::<Vec<Value>>(&r.entities)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|v| {
            Some(EntitySpan {
                entity: v.get("entity")?.as_str()?.to_owned(),
                start: v.get("start")?.as_u64()? as u32,
                end: v.get("end")?.as_u64()? as u32,
                value: v.get("value")?.as_str()?.to_owned(),
            })
        })
        .collect();
    Example {
        text: r.text.clone(),
        intent: r.intent.clone(),
        entities,
        split: match r.split.as_str() {
            "train" => Split::Train,
            "validation" => Split::Validation,
            "test" => Split::Test,
            _ => Split::Unspecified,
        },
    }
}

fn action_name(a: &Action) -> String {
    match a {
        Action::Plugin { id, .. } => id.clone(),
        Action::Builtin(b) => b.name().to_owned(),
    }
}

/// Canonical JSON (sorted keys) of step parameters, hashed.
/// `trainer_plugin` of a model registered from a process step's artifacts.
pub const PROCESS_TRAINER: &str = "process";

fn config_hash(with: &serde_json::Map<String, Value>) -> String {
    let sorted: BTreeMap<&String, &Value> = with.iter().collect();
    crate::plugin::sha256_hex(
        serde_json::to_string(&sorted)
            .unwrap_or_default()
            .as_bytes(),
    )
}

/// How a run is asked to stop.
///
/// `cancel` reaches into the plugin call that is running (it ends at the next
/// epoch); `drain` lets the running step finish and stops before the next;
/// `shutdown` says a stop is the daemon's, not the user's: the run is then
/// interrupted (and resumes later) rather than cancelled.
#[derive(Debug, Clone, Default)]
pub struct RunControl {
    pub cancel: Arc<AtomicBool>,
    pub drain: Arc<AtomicBool>,
    pub shutdown: Arc<AtomicBool>,
}

impl RunControl {
    fn stop_state(&self) -> &'static str {
        if self.shutdown.load(Ordering::Relaxed) {
            state::INTERRUPTED
        } else {
            state::CANCELLED
        }
    }
}

impl Runner {
    /// Run `wf` to the end in this process; the returned summary says how it
    /// ended. Errors are only for the store itself failing.
    pub async fn run(
        &self,
        wf: &Workflow,
        reporter: Arc<dyn Reporter>,
        cancel: Arc<AtomicBool>,
    ) -> Result<RunSummary> {
        let run_id = self
            .store
            .start_run(&wf.name, &wf.file.display().to_string(), &wf.hash)
            .await?;
        let control = RunControl {
            cancel,
            ..Default::default()
        };
        self.execute_run(run_id, wf, reporter, &control).await
    }

    /// Execute run `run_id` (already in the store, claimed) of `wf`. Steps
    /// that succeeded in an earlier attempt of this run are not run again:
    /// their outputs are restored from the store. An `interrupted` summary
    /// leaves the run's row for the caller to put back in the queue.
    pub async fn execute_run(
        &self,
        run_id: i64,
        wf: &Workflow,
        reporter: Arc<dyn Reporter>,
        control: &RunControl,
    ) -> Result<RunSummary> {
        tracing::info!(run = run_id, workflow = %wf.name, version = %&wf.hash[..12], "run started");
        reporter.run_started(run_id, wf);
        let earlier = self.store.steps_of(run_id).await?;
        let mut outputs: BTreeMap<String, Output> = BTreeMap::new();
        let mut summary = RunSummary {
            run_id,
            state: state::SUCCEEDED.to_owned(),
            error: None,
            failed_step: None,
            evaluation: None,
            model: None,
            verdicts: Vec::new(),
            skipped: Vec::new(),
        };
        // Steps that will not run (and why); what every step came to.
        let mut blocked: BTreeMap<String, String> = BTreeMap::new();
        let mut states: BTreeMap<String, String> = BTreeMap::new();
        let mut next = 0;
        while next < wf.steps.len() {
            // Process steps whose inputs are all settled run side by side: a
            // sweep of trainers on GPUs (or in Slurm) does not wait one for
            // another. Other steps run one at a time, in order.
            let mut group = vec![&wf.steps[next]];
            if wf.steps[next].action == Action::Builtin(Builtin::Process) {
                while let Some(s) = wf.steps.get(next + group.len())
                    && s.action == Action::Builtin(Builtin::Process)
                    && s.needs.iter().all(|n| states.contains_key(n))
                {
                    group.push(s);
                }
            }
            next += group.len();
            let ends = futures_util::future::join_all(group.iter().map(|step| {
                self.step_once(
                    run_id, wf, step, &earlier, &outputs, &blocked, &states, &reporter, control,
                )
            }))
            .await;
            let mut stop = None;
            for (step, end) in group.iter().zip(ends) {
                match end? {
                    StepEnd::Done(out) => {
                        self.note_output(step, &out, &mut summary, &mut blocked, &mut states);
                        outputs.insert(step.id.clone(), out);
                    }
                    StepEnd::Skipped(reason) => {
                        summary.skipped.push((step.id.clone(), reason.clone()));
                        states.insert(step.id.clone(), state::SKIPPED.to_owned());
                        blocked.insert(step.id.clone(), reason);
                    }
                    StepEnd::Stop { state, error, step } => {
                        stop.get_or_insert((state, error, step));
                    }
                }
            }
            if let Some((st, error, step)) = stop {
                summary.state = st.to_owned();
                summary.error = Some(error);
                summary.failed_step = step;
                break;
            }
        }
        if summary.state != state::INTERRUPTED {
            self.store
                .finish_run(run_id, &summary.state, summary.error.clone())
                .await?;
        }
        tracing::info!(run = run_id, state = %summary.state, "run finished");
        Ok(summary)
    }

    /// Run one step of run `run_id` (or restore it, or skip it), with its
    /// retries; what it came to, for the caller to fold into the run.
    /// Errors are only for the store itself failing.
    #[allow(clippy::too_many_arguments)]
    async fn step_once(
        &self,
        run_id: i64,
        wf: &Workflow,
        step: &Step,
        earlier: &[crate::store::StepRow],
        outputs: &BTreeMap<String, Output>,
        blocked: &BTreeMap<String, String>,
        states: &BTreeMap<String, String>,
        reporter: &Arc<dyn Reporter>,
        control: &RunControl,
    ) -> Result<StepEnd> {
        let cancel = &control.cancel;
        let tries: Vec<&crate::store::StepRow> =
            earlier.iter().filter(|r| r.step_id == step.id).collect();
        // (reason, whether to record it): a skip recorded by an earlier
        // attempt of the run stands.
        let skip = if let Some(r) = tries.iter().find(|r| r.state == state::SKIPPED) {
            Some((r.error.clone().unwrap_or_default(), false))
        } else if tries.iter().any(|r| r.state == state::SUCCEEDED) {
            None
        } else {
            match self
                .skip_reason(run_id, wf, step, blocked, outputs, states)
                .await
            {
                Ok(r) => r.map(|r| (r, true)),
                Err(e) => {
                    // A `when` that cannot be evaluated fails its step.
                    let message = format!("step `{}`: {e:#}", step.id);
                    self.store
                        .record_step(
                            run_id,
                            &step.id,
                            &action_name(&step.action),
                            state::FAILED,
                            message.clone(),
                        )
                        .await?;
                    reporter.step_finished(&step.id, Err(&message));
                    return Ok(StepEnd::Stop {
                        state: state::FAILED,
                        error: message,
                        step: Some(step.id.clone()),
                    });
                }
            }
        };
        if let Some((reason, record)) = skip {
            if record {
                self.store
                    .record_step(
                        run_id,
                        &step.id,
                        &action_name(&step.action),
                        state::SKIPPED,
                        reason.clone(),
                    )
                    .await?;
            }
            reporter.step_skipped(&step.id, &reason);
            return Ok(StepEnd::Skipped(reason));
        }
        if let Some(done) = tries.iter().find(|r| r.state == state::SUCCEEDED) {
            let out = self
                .restore(step, done)
                .await
                .with_context(|| format!("cannot resume step `{}`", step.id))?;
            reporter.step_finished(&step.id, Ok(&format!("{} (done before)", out.line())));
            return Ok(StepEnd::Done(out));
        }
        // Attempts the daemon interrupted were not the step's fault and
        // do not count against its retries.
        let failures = tries.iter().filter(|r| r.state == state::FAILED).count() as u32;
        let mut attempt = tries.len() as u32;
        let attempts = step.retries + 1;
        let mut failed = failures;
        while failed < attempts {
            attempt += 1;
            if cancel.load(Ordering::Relaxed) || control.drain.load(Ordering::Relaxed) {
                let st = if control.drain.load(Ordering::Relaxed) && !cancel.load(Ordering::Relaxed)
                {
                    state::INTERRUPTED
                } else {
                    control.stop_state()
                };
                return Ok(StepEnd::Stop {
                    state: st,
                    error: format!("stopped before step `{}`", step.id),
                    step: None,
                });
            }
            let action = action_name(&step.action);
            let row = self
                .store
                .start_step(run_id, &step.id, &action, attempt as i32)
                .await?;
            reporter.step_started(&step.id, &action, attempt);
            match self
                .execute(run_id, row, wf, step, outputs, states, reporter, control)
                .await
            {
                Ok(out) => {
                    self.store
                        .finish_step(row, state::SUCCEEDED, None, Some(out.summary()))
                        .await?;
                    reporter.step_finished(&step.id, Ok(&out.line()));
                    return Ok(StepEnd::Done(out));
                }
                Err(e) => {
                    let stopped = cancel.load(Ordering::Relaxed)
                        || matches!(
                            e.downcast_ref::<PluginFailure>(),
                            Some(PluginFailure::Cancelled { .. })
                        );
                    let st = if stopped {
                        control.stop_state()
                    } else {
                        state::FAILED
                    };
                    if let Some(pf) = e.downcast_ref::<PluginFailure>() {
                        reporter.plugin_failed(&step.id, pf);
                    }
                    let message = if st == state::INTERRUPTED {
                        format!(
                            "step `{}`: the daemon stopped while it ran; it resumes at the next start",
                            step.id
                        )
                    } else {
                        format!("step `{}`: {e:#}", step.id)
                    };
                    self.store
                        .finish_step(row, st, Some(message.clone()), None)
                        .await?;
                    reporter.step_finished(&step.id, Err(&message));
                    failed += 1;
                    if stopped || failed >= attempts {
                        return Ok(StepEnd::Stop {
                            state: st,
                            error: message,
                            step: Some(step.id.clone()),
                        });
                    }
                    tracing::warn!(run = run_id, step = %step.id, attempt, "step failed; retrying");
                }
            }
        }
        // Only reached when earlier attempts already used up the retries.
        Ok(StepEnd::Stop {
            state: state::FAILED,
            error: format!("step `{}` failed {failed} time(s)", step.id),
            step: Some(step.id.clone()),
        })
    }

    /// Fold a step's output into the run's summary; a gate that said no
    /// blocks the steps after it.
    fn note_output(
        &self,
        step: &Step,
        out: &Output,
        summary: &mut RunSummary,
        blocked: &mut BTreeMap<String, String>,
        states: &mut BTreeMap<String, String>,
    ) {
        states.insert(step.id.clone(), state::SUCCEEDED.to_owned());
        match out {
            Output::Evaluation(r) => summary.evaluation = Some(r.clone()),
            Output::Registered(m) => summary.model = Some((**m).clone()),
            Output::Verdict(v) => {
                summary.verdicts.push((step.id.clone(), v.clone()));
                if !v.pass {
                    blocked.insert(
                        step.id.clone(),
                        format!(
                            "gate `{}` said no{}",
                            step.id,
                            v.reason
                                .as_ref()
                                .map(|r| format!(": {r}"))
                                .unwrap_or_default()
                        ),
                    );
                }
            }
            _ => {}
        }
    }

    /// Why `step` should not run, if it should not.
    async fn skip_reason(
        &self,
        run_id: i64,
        wf: &Workflow,
        step: &Step,
        blocked: &BTreeMap<String, String>,
        outputs: &BTreeMap<String, Output>,
        states: &BTreeMap<String, String>,
    ) -> Result<Option<String>> {
        if let Some(reason) = step.needs.iter().find_map(|n| blocked.get(n)) {
            return Ok(Some(reason.clone()));
        }
        match &step.when {
            Some(script) if !matches!(step.action, Action::Builtin(Builtin::Gate)) => {
                let v = self
                    .verdict(run_id, wf, step, script, outputs, states)
                    .await?;
                Ok((!v.pass).then(|| {
                    format!(
                        "its `when` is false{}",
                        v.reason.map(|r| format!(": {r}")).unwrap_or_default()
                    )
                }))
            }
            _ => Ok(None),
        }
    }

    /// Evaluate a verdict script (a gate, or a `when`) for `step`.
    async fn verdict(
        &self,
        run_id: i64,
        wf: &Workflow,
        step: &Step,
        script: &crate::workflow::ScriptRef,
        outputs: &BTreeMap<String, Output>,
        states: &BTreeMap<String, String>,
    ) -> Result<crate::script::hooks::Verdict> {
        let inputs = self
            .verdict_inputs(run_id, wf, step, outputs, states)
            .await?;
        let refs: Vec<(&str, &Value)> = inputs.iter().map(|(k, v)| (*k, v)).collect();
        Ok(crate::script::hooks::verdict(
            &script.0,
            &run_id.to_string(),
            &refs,
        )?)
    }

    /// What a verdict script sees (documented in `docs/scripting.md`).
    async fn verdict_inputs(
        &self,
        run_id: i64,
        wf: &Workflow,
        step: &Step,
        outputs: &BTreeMap<String, Output>,
        states: &BTreeMap<String, String>,
    ) -> Result<Vec<(&'static str, Value)>> {
        let near = |what: Produces| wf.nearest(&step.id, what).and_then(|s| outputs.get(&s.id));
        let evaluation = match near(Produces::Evaluation) {
            Some(Output::Evaluation(r)) => Some(r.clone()),
            _ => None,
        };
        let candidate = match near(Produces::Model) {
            Some(Output::Model(m)) => {
                let mut metrics = serde_json::Map::new();
                for (k, v) in &m.metrics {
                    metrics.insert(format!("train.{k}"), json!(v));
                }
                if let Some(r) = &evaluation {
                    for (k, v) in r.metrics() {
                        metrics.insert(k, json!(v));
                    }
                }
                json!({
                    "metrics": metrics,
                    "per_intent": evaluation.as_ref().map(|r| per_intent(r)).unwrap_or_else(|| json!({})),
                    "intents": m.intents,
                    "plugin": m.plugin,
                    "lineage": {
                        "run": run_id, "dataset_version": m.dataset.version_id,
                        "data_hash": m.dataset.hash, "config_hash": m.config_hash,
                        "plugin_hash": m.plugin_hash, "base_model": m.base_model_id,
                    },
                })
            }
            _ => Value::Null,
        };
        let dataset = match near(Produces::Dataset) {
            Some(Output::Dataset(d)) | Some(Output::Ruled(d, _)) => dataset_stats(&d.rows),
            _ => Value::Null,
        };
        let production = self.production(run_id, wf).await?;
        Ok(vec![
            ("run", json!({"id": run_id, "workflow": wf.name})),
            ("candidate", candidate),
            ("production", production),
            (
                "evaluation",
                evaluation
                    .map(|r| serde_json::to_value(r.as_ref()).unwrap_or(Value::Null))
                    .unwrap_or(Value::Null),
            ),
            ("dataset", dataset),
            ("steps", json!(states)),
        ])
    }

    /// The model in service for `wf`: until deployments exist, the latest
    /// registered model of the name its register step uses (not one this
    /// run registered), with the per-intent scores of the evaluation in its
    /// run.
    async fn production(&self, run_id: i64, wf: &Workflow) -> Result<Value> {
        let name = wf.model_name().to_owned();
        let Some(m) = self
            .store
            .models_named(&name)
            .await?
            .into_iter()
            .find(|m| m.run_id != run_id)
        else {
            return Ok(Value::Null);
        };
        let report = self
            .store
            .steps_of(m.run_id)
            .await?
            .into_iter()
            .filter(|s| s.action == "evaluate" && s.state == state::SUCCEEDED)
            .filter_map(|s| serde_json::from_str::<evaluate::Report>(s.output.as_deref()?).ok())
            .next_back();
        Ok(json!({
            "id": m.id,
            "version": m.version,
            "metrics": serde_json::from_str::<Value>(&m.metrics).unwrap_or(Value::Null),
            "per_intent": report.as_ref().map(per_intent).unwrap_or_else(|| json!({})),
            "intents": serde_json::from_str::<Value>(&m.intents).unwrap_or(Value::Null),
            "plugin": m.trainer_plugin,
            "created_at": m.created_at,
            "lineage": {
                "run": m.run_id, "dataset_version": m.dataset_version_id,
                "data_hash": m.data_hash, "config_hash": m.config_hash,
                "plugin_hash": m.plugin_hash, "base_model": m.base_model_id,
            },
        }))
    }

    /// The output of a step that succeeded in an earlier attempt of the run,
    /// rebuilt from what its summary points at in the store.
    async fn restore(&self, step: &Step, row: &crate::store::StepRow) -> Result<Output> {
        let out: Value = serde_json::from_str(row.output.as_deref().unwrap_or("null"))
            .context("its stored output is not JSON")?;
        let int = |k: &str| {
            out.get(k)
                .and_then(Value::as_i64)
                .ok_or_else(|| anyhow!("its stored output has no `{k}`"))
        };
        let text = |k: &str| out.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let dataset = |id: i64| async move {
            let (hash, rows) = self
                .store
                .dataset_version(id)
                .await?
                .ok_or_else(|| anyhow!("dataset snapshot {id} is gone"))?;
            Ok::<_, anyhow::Error>(Arc::new(DatasetOut {
                version_id: id,
                hash,
                rows,
            }))
        };
        Ok(match step.action.produces() {
            Produces::Artifact => Output::Process(Arc::new(out)),
            Produces::Dataset if step.action == Action::Builtin(Builtin::Rules) => {
                let stats = crate::script::hooks::RuleStats {
                    kept: int("kept")? as usize,
                    dropped: int("dropped")? as usize,
                    changed: int("changed")? as usize,
                };
                Output::Ruled(dataset(int("dataset_version")?).await?, stats)
            }
            Produces::Dataset => Output::Dataset(dataset(int("dataset_version")?).await?),
            Produces::Model => {
                let artifact = text("artifact");
                let bytes = self.artifacts.get(&artifact)?;
                let metrics = out
                    .get("metrics")
                    .and_then(Value::as_object)
                    .map(|m| {
                        m.iter()
                            .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
                            .collect()
                    })
                    .unwrap_or_default();
                let intents = out
                    .get("intents")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                Output::Model(Arc::new(ModelOut {
                    bytes,
                    artifact_hash: artifact,
                    plugin: text("plugin"),
                    plugin_version: text("plugin_version"),
                    plugin_hash: text("plugin_hash"),
                    config_hash: text("config_hash"),
                    dataset: dataset(int("dataset_version")?).await?,
                    metrics,
                    intents,
                    base_model_id: out.get("base_model").and_then(Value::as_i64),
                }))
            }
            Produces::Evaluation => Output::Evaluation(Arc::new(
                serde_json::from_value(out).context("its stored evaluation does not parse")?,
            )),
            Produces::Verdict => Output::Verdict(
                serde_json::from_value(out).context("its stored verdict does not parse")?,
            ),
            Produces::Registration => {
                let id = int("model")?;
                let m = self
                    .store
                    .find_model(&id.to_string())
                    .await?
                    .ok_or_else(|| anyhow!("model {id} is gone"))?;
                Output::Registered(Box::new(m))
            }
        })
    }

    fn spec(
        &self,
        run_id: i64,
        step: &Step,
        reporter: &Arc<dyn Reporter>,
        cancel: &Arc<AtomicBool>,
    ) -> JobSpec {
        let r = reporter.clone();
        let id = step.id.clone();
        JobSpec {
            run: run_id.to_string(),
            step: step.id.clone(),
            read_paths: step.read_paths.clone(),
            timeout: step.timeout,
            cancel: cancel.clone(),
            observer: Some(Arc::new(move |e: &PluginEvent| r.step_event(&id, e))),
        }
    }

    fn dataset_for<'o>(
        &self,
        wf: &Workflow,
        step: &Step,
        outputs: &'o BTreeMap<String, Output>,
    ) -> Result<&'o Arc<DatasetOut>> {
        let src = wf
            .nearest(&step.id, Produces::Dataset)
            .ok_or_else(|| anyhow!("no dataset before this step"))?;
        match outputs.get(&src.id) {
            Some(Output::Dataset(d)) | Some(Output::Ruled(d, _)) => Ok(d),
            _ => bail!("step `{}` produced no dataset", src.id),
        }
    }

    fn model_for<'o>(
        &self,
        wf: &Workflow,
        step: &Step,
        outputs: &'o BTreeMap<String, Output>,
    ) -> Result<&'o Arc<ModelOut>> {
        let src = wf
            .nearest(&step.id, Produces::Model)
            .ok_or_else(|| anyhow!("no trainer before this step"))?;
        match outputs.get(&src.id) {
            Some(Output::Model(m)) => Ok(m),
            _ => bail!("step `{}` produced no model", src.id),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn execute(
        &self,
        run_id: i64,
        row: i64,
        wf: &Workflow,
        step: &Step,
        outputs: &BTreeMap<String, Output>,
        states: &BTreeMap<String, String>,
        reporter: &Arc<dyn Reporter>,
        control: &RunControl,
    ) -> Result<Output> {
        let cancel = &control.cancel;
        // A `params` script computes parameters from the data, merged over
        // `with`.
        let computed;
        let step = match &step.params {
            None => step,
            Some(script) => {
                let dataset = match wf
                    .nearest(&step.id, Produces::Dataset)
                    .and_then(|s| outputs.get(&s.id))
                {
                    Some(Output::Dataset(d)) | Some(Output::Ruled(d, _)) => dataset_stats(&d.rows),
                    _ => Value::Null,
                };
                let run = json!({"id": run_id, "workflow": wf.name});
                let params = crate::script::hooks::params(
                    &script.0,
                    &run_id.to_string(),
                    &[("run", &run), ("dataset", &dataset)],
                )?;
                crate::workflow::check_computed_params(
                    &step.action,
                    &crate::catalog(&self.host),
                    &params,
                )
                .map_err(|e| anyhow!("{}: {e}", script.0.origin))?;
                reporter.step_note(
                    &step.id,
                    &format!(
                        "parameters from {}: {}",
                        script.0.origin,
                        Value::Object(params.clone())
                    ),
                );
                let mut with = step.with.clone();
                with.extend(params);
                computed = Step {
                    with,
                    ..step.clone()
                };
                &computed
            }
        };
        match &step.action {
            Action::Builtin(Builtin::Process) => {
                self.run_process(run_id, row, wf, step, reporter, control)
                    .await
            }
            Action::Builtin(Builtin::Gate) => {
                let script = step
                    .when
                    .as_ref()
                    .ok_or_else(|| anyhow!("a gate without a `when` script"))?;
                Ok(Output::Verdict(
                    self.verdict(run_id, wf, step, script, outputs, states)
                        .await?,
                ))
            }
            Action::Builtin(Builtin::Rules) => {
                let script = step
                    .rules
                    .as_ref()
                    .ok_or_else(|| anyhow!("a rules step without a script"))?
                    .0
                    .clone();
                let rows = self.dataset_for(wf, step, outputs)?.rows.clone();
                let run = run_id.to_string();
                let (rows, stats) = tokio::task::spawn_blocking(move || {
                    crate::script::hooks::apply_rules(&script, &run, rows)
                })
                .await
                .context("the data rules panicked")??;
                if rows.is_empty() {
                    bail!("the data rules dropped every example");
                }
                let origin = json!({"step": step.id, "kind": "rules", "kept": stats.kept, "dropped": stats.dropped, "changed": stats.changed});
                let (version_id, hash) = self
                    .store
                    .save_dataset_version(&format!("{}/{}", wf.name, step.id), &rows, origin)
                    .await?;
                Ok(Output::Ruled(
                    Arc::new(DatasetOut {
                        version_id,
                        hash,
                        rows,
                    }),
                    stats,
                ))
            }
            Action::Plugin {
                id,
                kind: crate::plugin::manifest::Kind::Source,
            } => {
                let host = self.host.clone();
                let spec = self.spec(run_id, step, reporter, cancel);
                let (id, config) = (id.clone(), Value::Object(step.with.clone()).to_string());
                let out = tokio::task::spawn_blocking(move || {
                    host.source(&id, spec)?.read_all(&config, 1024)
                })
                .await
                .context("the source job panicked")??;
                if out.bad_records > 0 {
                    let first: Vec<String> = out
                        .first_bad
                        .iter()
                        .take(5)
                        .map(|(l, r)| format!("{l}: {r}"))
                        .collect();
                    reporter.step_note(
                        &step.id,
                        &format!(
                            "skipped {} malformed record(s): {}",
                            out.bad_records,
                            first.join("; ")
                        ),
                    );
                }
                if out.examples.is_empty() {
                    bail!("the source produced no examples");
                }
                let rows: Vec<StoredExample> = out.examples.iter().map(to_stored).collect();
                let origin = json!({"step": step.id, "plugin": action_name(&step.action), "bad_records": out.bad_records,
                    "first_bad": out.first_bad.iter().map(|(l, r)| json!({"location": l, "reason": r})).collect::<Vec<_>>()});
                let (version_id, hash) = self
                    .store
                    .save_dataset_version(&format!("{}/{}", wf.name, step.id), &rows, origin)
                    .await?;
                Ok(Output::Dataset(Arc::new(DatasetOut {
                    version_id,
                    hash,
                    rows,
                })))
            }
            Action::Plugin {
                id,
                kind: crate::plugin::manifest::Kind::Trainer,
            } => {
                let data = self.dataset_for(wf, step, outputs)?.clone();
                let train: Vec<Example> = data
                    .rows
                    .iter()
                    .filter(|r| r.split == "train" || r.split == "unspecified")
                    .map(to_example)
                    .collect();
                let validation: Vec<Example> = data
                    .rows
                    .iter()
                    .filter(|r| r.split == "validation")
                    .map(to_example)
                    .collect();
                if train.is_empty() {
                    bail!("the dataset has no training examples");
                }
                let plugin = self.host.get(id)?;
                // A warm start continues from a registered model of the same
                // plugin; before the first one exists, training starts fresh.
                let base = match &step.warm_start {
                    None => None,
                    Some(selector) => match self.store.find_model(selector).await? {
                        None => {
                            reporter.step_note(
                                &step.id,
                                &format!("no model `{selector}` yet; training from scratch"),
                            );
                            None
                        }
                        Some(m) if m.trainer_plugin != *id => bail!(
                            "cannot continue from model {} ({} v{}): it was trained by `{}`, not `{id}`",
                            m.id,
                            m.name,
                            m.version,
                            m.trainer_plugin
                        ),
                        Some(m) => {
                            let bytes =
                                self.artifacts.get(&m.artifact_hash).with_context(|| {
                                    format!("model {} ({} v{})", m.id, m.name, m.version)
                                })?;
                            let known: Vec<String> =
                                serde_json::from_str(&m.intents).unwrap_or_default();
                            Some((m.id, bytes, known))
                        }
                    },
                };
                let base_model_id = base.as_ref().map(|b| b.0);
                let base_intents = base.as_ref().map(|b| b.2.clone()).unwrap_or_default();
                let host = self.host.clone();
                let spec = self.spec(run_id, step, reporter, cancel);
                let (pid, config) = (id.clone(), Value::Object(step.with.clone()).to_string());
                let out = tokio::task::spawn_blocking(move || {
                    let mut job = host.trainer(&pid, spec)?;
                    match base {
                        Some((_, bytes, _)) => job.train_from(&config, &bytes, &train, &validation),
                        None => job.train(&config, &train, &validation),
                    }
                })
                .await
                .context("the training job panicked")??;
                self.store
                    .add_metrics(run_id, &step.id, &out.progress_metrics)
                    .await?;
                let out_metrics = out.metrics.clone();
                let finals: Vec<(String, f64, u32)> = out
                    .metrics
                    .iter()
                    .map(|(n, v)| (n.clone(), *v, 0))
                    .collect();
                self.store.add_metrics(run_id, &step.id, &finals).await?;
                // A warm-started model also knows its base's intents.
                let intents: Vec<String> = data
                    .rows
                    .iter()
                    .map(|r| r.intent.clone())
                    .chain(base_intents)
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                let artifacts = self.artifacts.clone();
                let (bytes, artifact_hash) = tokio::task::spawn_blocking(move || {
                    let hash = artifacts.put(&out.model)?;
                    Ok::<_, anyhow::Error>((out.model, hash))
                })
                .await
                .context("storing the model panicked")??;
                Ok(Output::Model(Arc::new(ModelOut {
                    bytes,
                    artifact_hash,
                    plugin: id.clone(),
                    plugin_version: plugin.manifest.version.clone(),
                    plugin_hash: plugin.wasm_sha256.clone(),
                    config_hash: config_hash(&step.with),
                    dataset: data,
                    metrics: out_metrics,
                    intents,
                    base_model_id,
                })))
            }
            Action::Plugin { kind, .. } => bail!("{kind} plugins cannot run as steps yet"),
            Action::Builtin(Builtin::Split) => {
                let mut rows: Vec<StoredExample> = Vec::new();
                let mut direct = 0;
                for n in &step.needs {
                    if let Some(Output::Dataset(d)) | Some(Output::Ruled(d, _)) = outputs.get(n) {
                        rows.extend(d.rows.iter().cloned());
                        direct += 1;
                    }
                }
                if direct == 0 {
                    rows = self.dataset_for(wf, step, outputs)?.rows.clone();
                }
                let get_f = |k: &str, d: f64| step.with.get(k).and_then(Value::as_f64).unwrap_or(d);
                let has_splits = rows.iter().any(|r| r.split != "unspecified");
                let mode = match step.with.get("mode").and_then(Value::as_str) {
                    Some("stratified") => split::Mode::Stratified,
                    Some("keep") => split::Mode::Keep,
                    _ if has_splits => split::Mode::Keep,
                    _ => split::Mode::Stratified,
                };
                let cfg = split::SplitConfig {
                    mode,
                    validation: get_f("validation", 0.1),
                    test: get_f(
                        "test",
                        if mode == split::Mode::Stratified {
                            0.1
                        } else {
                            0.0
                        },
                    ),
                    seed: step.with.get("seed").and_then(Value::as_u64).unwrap_or(7),
                };
                if !(0.0..1.0).contains(&cfg.validation)
                    || !(0.0..1.0).contains(&cfg.test)
                    || cfg.validation + cfg.test >= 1.0
                {
                    bail!(
                        "validation ({}) and test ({}) must be fractions that leave some training data",
                        cfg.validation,
                        cfg.test
                    );
                }
                split::apply(&mut rows, &cfg);
                let origin = json!({"step": step.id, "kind": "split", "mode": format!("{mode:?}").to_lowercase(), "validation": cfg.validation, "test": cfg.test, "seed": cfg.seed});
                let (version_id, hash) = self
                    .store
                    .save_dataset_version(&format!("{}/{}", wf.name, step.id), &rows, origin)
                    .await?;
                Ok(Output::Dataset(Arc::new(DatasetOut {
                    version_id,
                    hash,
                    rows,
                })))
            }
            Action::Builtin(Builtin::Evaluate) => {
                let model = self.model_for(wf, step, outputs)?.clone();
                let on = step
                    .with
                    .get("on")
                    .and_then(Value::as_str)
                    .unwrap_or("auto");
                let has = |s: &str| model.dataset.rows.iter().any(|r| r.split == s);
                let split = match on {
                    "auto" if has("test") => "test",
                    "auto" => "validation",
                    other => other,
                };
                let held: Vec<&StoredExample> = model
                    .dataset
                    .rows
                    .iter()
                    .filter(|r| r.split == split)
                    .collect();
                if held.is_empty() {
                    bail!(
                        "the dataset has no {split} examples to evaluate on; add a `split` step or data with a {split} split"
                    );
                }
                let texts: Vec<String> = held.iter().map(|r| r.text.clone()).collect();
                let host = self.host.clone();
                let spec = self.spec(run_id, step, reporter, cancel);
                let m = model.clone();
                let preds = tokio::task::spawn_blocking(
                    move || -> Result<Vec<(String, f32)>, PluginFailure> {
                        let mut job = host.trainer(&m.plugin, spec)?;
                        let handle = job.load_model(&m.bytes)?;
                        let preds = job.predict_all(handle, &texts)?;
                        Ok(preds
                            .into_iter()
                            .map(|p| (p.intent, p.confidence))
                            .collect())
                    },
                )
                .await
                .context("the evaluation job panicked")??;
                let oos = step
                    .with
                    .get("oos_label")
                    .and_then(Value::as_str)
                    .unwrap_or("oos");
                let top = step
                    .with
                    .get("top_confusions")
                    .and_then(Value::as_u64)
                    .unwrap_or(10) as usize;
                let rows: Vec<(String, String, f32)> = held
                    .iter()
                    .zip(preds)
                    .map(|(r, (p, c))| (r.intent.clone(), p, c))
                    .collect();
                let report = evaluate::score(split, &rows, oos, top);
                let metrics: Vec<(String, f64, u32)> = report
                    .metrics()
                    .into_iter()
                    .map(|(n, v)| (n, v, 0))
                    .collect();
                self.store.add_metrics(run_id, &step.id, &metrics).await?;
                Ok(Output::Evaluation(Arc::new(report)))
            }
            Action::Builtin(Builtin::Register) => {
                if let Some(src) = wf.nearest_of(&step.id, &[Produces::Model, Produces::Artifact])
                    && let Some(Output::Process(out)) = outputs.get(&src.id)
                {
                    return self
                        .register_process(run_id, wf, step, src, out, outputs)
                        .await;
                }
                let model = self.model_for(wf, step, outputs)?.clone();
                let evaluation = wf.nearest(&step.id, Produces::Evaluation).and_then(|s| {
                    match outputs.get(&s.id) {
                        Some(Output::Evaluation(r)) => Some(r.clone()),
                        _ => None,
                    }
                });
                let artifact_hash = model.artifact_hash.clone();
                // A run resumed after a crash between registering and
                // recording the step must not register the model twice.
                if let Some(m) = self.store.model_of_run(run_id).await?
                    && m.artifact_hash == artifact_hash
                {
                    return Ok(Output::Registered(Box::new(m)));
                }
                let mut metrics = serde_json::Map::new();
                if let Some(r) = &evaluation {
                    metrics.insert("evaluated_on".into(), json!(r.split));
                    for (k, v) in r.metrics() {
                        metrics.insert(k, json!(v));
                    }
                }
                for (k, v) in &model.metrics {
                    metrics.insert(format!("train.{k}"), json!(v));
                }
                let name = step
                    .with
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or(&wf.name)
                    .to_owned();
                let row = self
                    .store
                    .register_model(NewModel {
                        name,
                        run_id,
                        trainer_plugin: model.plugin.clone(),
                        trainer_version: model.plugin_version.clone(),
                        plugin_hash: model.plugin_hash.clone(),
                        artifact_hash,
                        artifact_size: model.bytes.len() as i64,
                        dataset_version_id: model.dataset.version_id,
                        data_hash: model.dataset.hash.clone(),
                        config_hash: model.config_hash.clone(),
                        metrics: Value::Object(metrics),
                        intents: model.intents.clone(),
                        base_model_id: model.base_model_id,
                    })
                    .await?;
                Ok(Output::Registered(Box::new(row)))
            }
        }
    }
}

/// Load a registered model's artifact (verified) and predict `texts`.
pub async fn predict(
    host: Arc<PluginHost>,
    artifacts: &Artifacts,
    model: &ModelRow,
    texts: Vec<String>,
) -> Result<Vec<crate::plugin::bindings::Prediction>> {
    if model.trainer_plugin == PROCESS_TRAINER {
        bail!(
            "model {} ({} v{}) is the artifacts of a process step, not a model Coach can load; `coach models show {}` lists its files",
            model.id,
            model.name,
            model.version,
            model.id
        );
    }
    let bytes = artifacts
        .get(&model.artifact_hash)
        .with_context(|| format!("model {} ({} v{})", model.id, model.name, model.version))?;
    let plugin = host.get(&model.trainer_plugin)?;
    if plugin.wasm_sha256 != model.plugin_hash {
        tracing::warn!(model = model.id, plugin = %model.trainer_plugin, "the model was trained by a different build of its plugin; loading it anyway");
    }
    let plugin_id = model.trainer_plugin.clone();
    let preds = tokio::task::spawn_blocking(move || -> Result<_, PluginFailure> {
        let mut job = host.trainer(
            &plugin_id,
            JobSpec {
                run: String::new(),
                step: "predict".into(),
                ..Default::default()
            },
        )?;
        let handle = job.load_model(&bytes)?;
        job.predict(handle, &texts)
    })
    .await
    .context("the prediction job panicked")??;
    Ok(preds)
}

/// Per-intent scores of a report, by intent.
fn per_intent(r: &evaluate::Report) -> Value {
    Value::Object(
        r.per_intent
            .iter()
            .map(|s| {
                (
                    s.intent.clone(),
                    json!({"precision": s.precision, "recall": s.recall, "f1": s.f1, "support": s.support}),
                )
            })
            .collect(),
    )
}

/// What scripts see of a dataset.
pub fn dataset_stats(rows: &[StoredExample]) -> Value {
    let mut per_intent: BTreeMap<&str, u64> = BTreeMap::new();
    let mut splits: BTreeMap<&str, u64> = BTreeMap::new();
    for r in rows {
        *per_intent.entry(r.intent.as_str()).or_default() += 1;
        *splits.entry(r.split.as_str()).or_default() += 1;
    }
    json!({
        "examples": rows.len(),
        "intents": per_intent.len(),
        "per_intent": per_intent,
        "splits": {
            "train": splits.get("train").copied().unwrap_or(0),
            "validation": splits.get("validation").copied().unwrap_or(0),
            "test": splits.get("test").copied().unwrap_or(0),
            "unspecified": splits.get("unspecified").copied().unwrap_or(0),
        },
    })
}
