//! The runner: executes a workflow's steps in dependency order, with their
//! retries, skips and stops, and resumes a run at the step where it was
//! interrupted. What each step kind does is in [`steps`], one file each.
//!
//! Every state change (step attempt started / finished, metrics) is written
//! to the store as it happens. A step that succeeded stores its output as a
//! typed [`StepOutput`]; a resumed run reads it back and reloads what it
//! names (a dataset snapshot, a model's bytes) instead of running the step
//! again. Plugin calls run on blocking threads, each job in a fresh
//! sandbox.

pub mod analysis;
pub mod deploy;
pub mod experiment;
mod output;
pub mod predict;
pub mod steps;

pub use output::{Dataset, Output, Trained};
pub use predict::predict;

use crate::compute::gpus::GpuQueue;
use crate::compute::slurm::Slurm;
use crate::core::ids::RunId;
use crate::core::output::{OutputKind, StepOutput, Verdict};
use crate::core::state::{RunState, StepState};
use crate::core::stop::{RunStop, StopReason};
use crate::events::Reporter;
use crate::events::report::RunStart;
use crate::plugin::{PluginFailure, PluginHost};
use crate::registry::Artifacts;
use crate::store::{ModelRow, StepRow, Store};
use crate::workflow::{Action, Builtin, Step, Workflow};
use anyhow::{Context, Result, anyhow};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What the runner needs to run steps: built once, by the composition root.
pub struct Runner {
    pub host: Arc<PluginHost>,
    pub store: Store,
    pub artifacts: Artifacts,
    /// GPU allocations for process steps.
    pub gpus: Arc<GpuQueue>,
    /// The Slurm client, for workflows whose process steps Slurm places.
    pub slurm: Arc<Slurm>,
    /// Process steps' checkpoint folders: `<work_dir>/run-<id>/<step>`.
    pub work_dir: std::path::PathBuf,
    /// Between SIGTERM and SIGKILL when a process is stopped.
    pub process_grace: std::time::Duration,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub run_id: RunId,
    pub state: RunState,
    pub error: Option<String>,
    pub failed_step: Option<String>,
    pub evaluation: Option<Arc<crate::core::evaluation::Report>>,
    pub model: Option<ModelRow>,
    /// What each gate decided, in order.
    pub verdicts: Vec<(String, Verdict)>,
    /// Steps that did not run, and why.
    pub skipped: Vec<(String, String)>,
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
        state: RunState,
        error: String,
        step: Option<String>,
    },
}

/// What the steps of a run have come to so far.
#[derive(Default)]
pub struct Progress {
    /// Outputs of the steps that succeeded, by step id.
    pub outputs: BTreeMap<String, Output>,
    /// What every settled step came to.
    pub states: BTreeMap<String, StepState>,
    /// Steps that will not run, and why (a gate said no, a `when` was
    /// false): the steps after them are skipped for that reason.
    blocked: BTreeMap<String, String>,
}

/// One attempt of one step, as a step kind sees it.
pub struct StepCtx<'a> {
    pub runner: &'a Runner,
    pub run: RunId,
    /// The attempt's `run_steps` row.
    pub row: i64,
    pub wf: &'a Workflow,
    /// The step, with parameters a `params` script computed merged in.
    pub step: &'a Step,
    pub progress: &'a Progress,
    pub reporter: &'a Arc<dyn Reporter>,
    pub stop: &'a RunStop,
}

/// The state a run (or step) ends in when it was asked to stop: the
/// daemon's own stop interrupts it (it resumes later); anything else is a
/// cancel.
fn stop_state(stop: &RunStop) -> RunState {
    match stop.reason() {
        Some(StopReason::Shutdown) => RunState::Interrupted,
        Some(StopReason::Cancelled) | None => RunState::Cancelled,
    }
}

/// What a step that ended in an error comes to: stopped (cancelled or
/// interrupted) only when the run was asked to stop — a plugin that says
/// it was cancelled on its own has failed. A step waiting for GPUs gives
/// up as soon as the run drains, with a cancellation of its own.
fn failed_as(stop: &RunStop, failure: Option<&PluginFailure>) -> RunState {
    let stopped = stop.is_aborted()
        || (stop.is_stopping() && matches!(failure, Some(PluginFailure::Cancelled { .. })));
    if stopped {
        stop_state(stop)
    } else {
        RunState::Failed
    }
}

/// A run's state as a step's.
fn step_state(s: RunState) -> StepState {
    match s {
        RunState::Cancelled => StepState::Cancelled,
        RunState::Interrupted => StepState::Interrupted,
        _ => StepState::Failed,
    }
}

/// The kind of output `step` produces.
pub fn output_kind(step: &Step) -> OutputKind {
    use crate::core::params::Kind;
    match &step.action {
        Action::Plugin {
            kind: Kind::Trainer,
            ..
        } => OutputKind::Model,
        Action::Plugin { .. } => OutputKind::Dataset,
        Action::Builtin(Builtin::Split) => OutputKind::Dataset,
        Action::Builtin(Builtin::Rules) => OutputKind::Ruled,
        Action::Builtin(Builtin::Evaluate) => OutputKind::Evaluation,
        Action::Builtin(Builtin::Gate) => OutputKind::Verdict,
        Action::Builtin(Builtin::Register) => OutputKind::Registered,
        Action::Builtin(Builtin::Process) => OutputKind::Process,
        Action::Builtin(Builtin::Deploy) => OutputKind::Deployed,
        Action::Builtin(Builtin::Curate) => OutputKind::Curated,
        Action::Builtin(Builtin::Analyze) => OutputKind::Analyzed,
        Action::Builtin(Builtin::Reviewed) => OutputKind::Dataset,
    }
}

impl Runner {
    /// Execute run `run` (in the store, claimed by the caller) of `wf`.
    /// Steps that succeeded in an earlier attempt of the run are not run
    /// again: their outputs are restored from the store. An `interrupted`
    /// summary leaves the run's row for the caller (the daemon queues it
    /// again). Errors are only for the store itself failing.
    pub async fn execute_run(
        &self,
        run: RunId,
        wf: &Workflow,
        reporter: Arc<dyn Reporter>,
        stop: &RunStop,
    ) -> Result<RunSummary> {
        tracing::info!(run = %run, workflow = %wf.name, version = %crate::core::ids::short(&wf.hash, 12), "run started");
        reporter.run_started(RunStart {
            run,
            workflow: &wf.name,
            steps: wf.steps.len(),
            version: &wf.hash,
        });
        let earlier = self.store.steps_of(run).await?;
        let mut progress = Progress::default();
        let mut summary = RunSummary {
            run_id: run,
            state: RunState::Succeeded,
            error: None,
            failed_step: None,
            evaluation: None,
            model: None,
            verdicts: Vec::new(),
            skipped: Vec::new(),
        };
        let mut next = 0;
        while next < wf.steps.len() {
            // Process steps whose inputs are all settled run side by side: a
            // sweep of trainers on GPUs (or in Slurm) does not wait one for
            // another. Other steps run one at a time, in order.
            let mut group = vec![&wf.steps[next]];
            if wf.steps[next].action == Action::Builtin(Builtin::Process) {
                while let Some(s) = wf.steps.get(next + group.len())
                    && s.action == Action::Builtin(Builtin::Process)
                    && s.needs
                        .iter()
                        .all(|n| progress.states.contains_key(n.as_str()))
                {
                    group.push(s);
                }
            }
            next += group.len();
            let ends =
                futures_util::future::join_all(group.iter().map(|step| {
                    self.step_once(run, wf, step, &earlier, &progress, &reporter, stop)
                }))
                .await;
            let mut halt = None;
            for (step, end) in group.iter().zip(ends) {
                match end? {
                    StepEnd::Done(out) => note_output(step, out, &mut summary, &mut progress),
                    StepEnd::Skipped(reason) => {
                        summary.skipped.push((step.id.to_string(), reason.clone()));
                        progress
                            .states
                            .insert(step.id.to_string(), StepState::Skipped);
                        progress.blocked.insert(step.id.to_string(), reason);
                    }
                    StepEnd::Stop { state, error, step } => {
                        halt.get_or_insert((state, error, step));
                    }
                }
            }
            if let Some((state, error, step)) = halt {
                summary.state = state;
                summary.error = Some(error);
                summary.failed_step = step;
                break;
            }
        }
        if summary.state != RunState::Interrupted {
            self.store
                .finish_run(run, summary.state, summary.error.clone())
                .await?;
        }
        tracing::info!(run = %run, state = %summary.state, "run finished");
        Ok(summary)
    }

    /// Run one step of run `run` (or restore it, or skip it), with its
    /// retries; what it came to, for the caller to fold into the run.
    /// Errors are only for the store itself failing.
    #[allow(clippy::too_many_arguments)]
    async fn step_once(
        &self,
        run: RunId,
        wf: &Workflow,
        step: &Step,
        earlier: &[StepRow],
        progress: &Progress,
        reporter: &Arc<dyn Reporter>,
        stop: &RunStop,
    ) -> Result<StepEnd> {
        let tries: Vec<&StepRow> = earlier.iter().filter(|r| r.step_id == step.id).collect();
        let action = step.action_name();
        // A skip recorded by an earlier attempt of the run stands.
        if let Some(r) = tries.iter().find(|r| r.state == StepState::Skipped) {
            let reason = r.error.clone().unwrap_or_default();
            reporter.step_skipped(&step.id, &reason);
            return Ok(StepEnd::Skipped(reason));
        }
        if let Some(done) = tries.iter().find(|r| r.state == StepState::Succeeded) {
            let out = self
                .restore(step, done)
                .await
                .with_context(|| format!("cannot resume step `{}`", step.id))?;
            reporter.step_finished(&step.id, Ok(&format!("{} (done before)", out.line())));
            return Ok(StepEnd::Done(out));
        }
        match steps::skip_reason(self, run, wf, step, progress).await {
            Ok(None) => {}
            Ok(Some(reason)) => {
                self.store
                    .record_step(run, &step.id, action, StepState::Skipped, reason.clone())
                    .await?;
                reporter.step_skipped(&step.id, &reason);
                return Ok(StepEnd::Skipped(reason));
            }
            Err(e) => {
                // A `when` that cannot be evaluated fails its step.
                let message = format!("step `{}`: {e:#}", step.id);
                self.store
                    .record_step(run, &step.id, action, StepState::Failed, message.clone())
                    .await?;
                reporter.step_finished(&step.id, Err(&message));
                return Ok(StepEnd::Stop {
                    state: RunState::Failed,
                    error: message,
                    step: Some(step.id.to_string()),
                });
            }
        }
        // Attempts the daemon interrupted were not the step's fault and
        // do not count against its retries.
        let mut failed = tries
            .iter()
            .filter(|r| r.state == StepState::Failed)
            .count() as u32;
        let mut attempt = tries.len() as u32;
        let attempts = step.retries + 1;
        while failed < attempts {
            attempt += 1;
            if stop.is_stopping() {
                return Ok(StepEnd::Stop {
                    state: stop_state(stop),
                    error: format!("stopped before step `{}`", step.id),
                    step: None,
                });
            }
            let row = self
                .store
                .start_step(run, &step.id, action, attempt as i32)
                .await?;
            reporter.step_started(&step.id, action, attempt);
            let ctx = StepCtx {
                runner: self,
                run,
                row,
                wf,
                step,
                progress,
                reporter,
                stop,
            };
            match steps::execute(&ctx).await {
                Ok(out) => {
                    self.store
                        .finish_step(row, StepState::Succeeded, None, Some(&out.stored()))
                        .await?;
                    reporter.step_finished(&step.id, Ok(&out.line()));
                    return Ok(StepEnd::Done(out));
                }
                Err(e) => {
                    let plugin_failure = e.downcast_ref::<PluginFailure>();
                    let state = failed_as(stop, plugin_failure);
                    let stopped = state != RunState::Failed;
                    if let Some(pf) = plugin_failure {
                        reporter.plugin_failed(&step.id, pf.plugin(), pf.reason());
                    }
                    let message = if state == RunState::Interrupted {
                        format!(
                            "step `{}`: the daemon stopped while it ran; it resumes at the next start",
                            step.id
                        )
                    } else {
                        format!("step `{}`: {e:#}", step.id)
                    };
                    self.store
                        .finish_step(row, step_state(state), Some(message.clone()), None)
                        .await?;
                    reporter.step_finished(&step.id, Err(&message));
                    failed += 1;
                    if stopped || failed >= attempts {
                        return Ok(StepEnd::Stop {
                            state,
                            error: message,
                            step: Some(step.id.to_string()),
                        });
                    }
                    tracing::warn!(run = %run, step = %step.id, attempt, "step failed; retrying");
                }
            }
        }
        // Only reached when earlier attempts already used up the retries.
        Ok(StepEnd::Stop {
            state: RunState::Failed,
            error: format!("step `{}` failed {failed} time(s)", step.id),
            step: Some(step.id.to_string()),
        })
    }

    /// The output of a step that succeeded in an earlier attempt of the
    /// run: its stored [`StepOutput`], and what that names reloaded.
    async fn restore(&self, step: &Step, row: &StepRow) -> Result<Output> {
        let text = row
            .output
            .as_deref()
            .ok_or_else(|| anyhow!("it stored no output"))?;
        let stored = StepOutput::from_stored(text, output_kind(step)).map_err(|e| anyhow!(e))?;
        Output::restore(self, stored).await
    }
}

/// Fold a step's output into the run's summary; a gate that said no
/// blocks the steps after it.
fn note_output(step: &Step, out: Output, summary: &mut RunSummary, progress: &mut Progress) {
    let id = step.id.to_string();
    progress.states.insert(id.clone(), StepState::Succeeded);
    match &out {
        Output::Evaluation(r) => summary.evaluation = Some(r.clone()),
        Output::Registered(m) => summary.model = Some((**m).clone()),
        Output::Verdict(v) => {
            summary.verdicts.push((id.clone(), v.clone()));
            if !v.pass {
                progress.blocked.insert(
                    id.clone(),
                    format!(
                        "gate `{id}` said no{}",
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
    progress.outputs.insert(id, out);
}

#[cfg(test)]
mod tests;
