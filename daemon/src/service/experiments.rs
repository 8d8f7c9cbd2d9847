//! Experiments and canaries, whoever asks: start one (from a file beside
//! the workflows, the API, the command line or a workflow's `deploy`
//! step), read its results, stop it, and — in the serving daemon, every
//! `experiment_interval` — look at each running one: results computed from
//! SQL sums, events sent, the decision script asked, and its decision
//! carried out through the deployment history.

use super::Service;
use crate::events::EventKind;
use crate::experiment::results::{self, ArmInput, Decision, Requests, Results};
use crate::experiment::spec::{Canary, Spec};
use crate::pipeline::experiment::{self, ExperimentError};
use crate::store::ModelRow;
use crate::store::deployments::{Action, How, NewChange};
use crate::store::experiments::{End, Ended, ExperimentRow};
use anyhow::Context;
use chrono::Utc;
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// What a canary does next.
enum CanaryNext {
    Decide(Decision),
    Advance(usize),
}

/// What the service remembers between looks: what it last said about
/// each experiment (so events go out on change only) and what it last
/// read of each experiment file.
#[derive(Default)]
pub struct Looks {
    said: Mutex<HashMap<i64, (String, String)>>,
    /// Experiment files that did not parse, with the text that did not.
    unparsable: Mutex<HashMap<PathBuf, String>>,
    /// Problems of experiment files already reported.
    reported: Mutex<std::collections::HashSet<(PathBuf, String)>>,
}

/// An experiment as every face shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ExperimentView {
    pub name: String,
    pub model: String,
    pub environment: String,
    pub kind: String,
    pub state: String,
    pub source: String,
    pub created_by: String,
    pub started_at: chrono::DateTime<Utc>,
    pub ended_at: Option<chrono::DateTime<Utc>>,
    pub decision: Option<String>,
    pub reason: Option<String>,
    /// A canary's step and the share of traffic the new version gets.
    pub step: Option<usize>,
    pub percent: Option<f64>,
    pub spec: Spec,
    /// At this look (`show` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub results: Option<Results>,
    /// What a look would decide now (`show` of a running one only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision_now: Option<Decision>,
}

fn spec_of(e: &ExperimentRow) -> anyhow::Result<Spec> {
    serde_json::from_str(&e.spec)
        .with_context(|| format!("experiment `{}` has an unreadable spec", e.name))
}

fn view(e: &ExperimentRow, spec: Spec, results: Option<Results>) -> ExperimentView {
    let canary = spec.canary.as_ref();
    ExperimentView {
        name: e.name.clone(),
        model: e.model_name.clone(),
        environment: e.environment.clone(),
        kind: e.kind.clone(),
        state: e.state.clone(),
        source: e.source.clone(),
        created_by: e.created_by.clone(),
        started_at: e.started_at,
        ended_at: e.ended_at,
        decision: e.decision.clone(),
        reason: e.reason.clone(),
        step: canary.map(|_| e.step as usize),
        percent: canary.and_then(|c| c.steps.get(e.step as usize).copied()),
        spec,
        results,
        decision_now: None,
    }
}

/// The persisted request counts of `e`, one per arm.
fn counters_of(e: &ExperimentRow, arms: usize) -> Vec<Requests> {
    let mut c: Vec<Requests> = e
        .counters
        .as_deref()
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default();
    c.resize(arms, Requests::default());
    c
}

impl Service {
    /// Start experiment `name` (see [`experiment::start`]); a serving
    /// daemon loads its arms first, so no request waits for a load.
    pub async fn start_experiment(
        &self,
        name: &str,
        spec: Spec,
        source: String,
        actor: String,
        how: How,
        run: Option<i64>,
    ) -> Result<ExperimentView, ExperimentError> {
        let preload = |models: Vec<ModelRow>| async move {
            if self.server.active() {
                for m in &models {
                    self.server.load(m).await?;
                }
            }
            anyhow::Ok(())
        };
        let (row, spec) = experiment::start(
            &self.executor.runner,
            name,
            spec,
            source,
            actor,
            how,
            run,
            preload,
        )
        .await?;
        self.bus.emit(
            None,
            None,
            EventKind::ExperimentStarted {
                experiment: name.to_owned(),
                model: spec.model.clone(),
                environment: spec.environment.clone(),
                kind: row.kind.clone(),
            },
        );
        self.routes_changed().await;
        Ok(view(&row, spec, None))
    }

    /// Start a canary of `to` on `environment`.
    pub async fn start_canary(
        &self,
        to: &ModelRow,
        environment: &str,
        canary: Canary,
        actor: String,
        run: Option<i64>,
    ) -> Result<ExperimentView, ExperimentError> {
        let (name, spec) = experiment::canary_spec(to, environment, canary)?;
        let source = match run {
            Some(r) => format!("run {r}"),
            None => "deploy --strategy canary".into(),
        };
        let how = if run.is_some() {
            How::Workflow
        } else {
            How::Manual
        };
        self.start_experiment(&name, spec, source, actor, how, run)
            .await
    }

    /// Start a canary of `model` (a reference) on `environment`.
    pub async fn canary(
        &self,
        model: &crate::core::ids::ModelRef,
        environment: &str,
        canary: Canary,
        actor: String,
    ) -> Result<ExperimentView, ExperimentError> {
        let Some(row) = self.store.find_model(model).await? else {
            return Err(ExperimentError::NotFound(format!("no model `{model}`")));
        };
        self.start_canary(&row, environment, canary, actor, None)
            .await
    }

    /// Experiments, newest first (of one model when given).
    pub async fn experiment_list(
        &self,
        model: Option<&str>,
        running_only: bool,
    ) -> anyhow::Result<Vec<ExperimentView>> {
        let rows = self.store.experiments(model, running_only).await?;
        rows.iter()
            .map(|e| Ok(view(e, spec_of(e)?, None)))
            .collect()
    }

    /// Experiment `name` with its results now.
    pub async fn experiment(&self, name: &str) -> Result<ExperimentView, ExperimentError> {
        let e = self.find_experiment(name).await?;
        let spec = spec_of(&e)?;
        let mut counters = counters_of(&e, spec.arms.len());
        if self.server.active() {
            // Counts not saved yet, without taking them.
            for (c, f) in counters.iter_mut().zip(self.server.peek_counters(e.id)) {
                c.add(&f);
            }
        }
        let results = self.results_of(&e, &spec, Some(&counters)).await?;
        let decision_now = (e.state == crate::store::experiments::RUNNING)
            .then(|| self.decide_now(&e, &spec, &results, &counters).0);
        let mut v = view(&e, spec, Some(results));
        v.decision_now = decision_now;
        Ok(v)
    }

    async fn find_experiment(&self, name: &str) -> Result<ExperimentRow, ExperimentError> {
        self.store
            .experiment(name)
            .await?
            .ok_or_else(|| ExperimentError::NotFound(format!("no experiment `{name}`")))
    }

    /// The results of `e` at this moment: the SQL totals per arm, the
    /// persisted request counts and (in the serving daemon) those not yet
    /// saved.
    async fn results_of(
        &self,
        e: &ExperimentRow,
        spec: &Spec,
        counters: Option<&[Requests]>,
    ) -> anyhow::Result<Results> {
        let totals: HashMap<String, results::Totals> = self
            .store
            .experiment_totals(e.id)
            .await?
            .into_iter()
            .collect();
        let saved;
        let counters = match counters {
            Some(c) => c,
            None => {
                saved = counters_of(e, spec.arms.len());
                &saved
            }
        };
        let arms: Vec<ArmInput> = spec
            .arms
            .iter()
            .enumerate()
            .map(|(i, a)| ArmInput {
                name: a.name.clone(),
                version: a.version.unwrap_or_default(),
                weight: a.weight,
                totals: totals.get(&a.name).cloned().unwrap_or_default(),
                requests: counters.get(i).cloned().unwrap_or_default(),
            })
            .collect();
        let elapsed = (Utc::now() - e.started_at).num_milliseconds().max(0) as f64 / 1000.0;
        Ok(results::results(spec, &arms, elapsed))
    }

    /// Stop experiment `name`: the control serves all traffic again.
    pub async fn stop_experiment(
        &self,
        name: &str,
        actor: String,
        reason: Option<String>,
    ) -> Result<ExperimentView, ExperimentError> {
        let e = self.find_experiment(name).await?;
        let spec = spec_of(&e)?;
        let reason = reason.unwrap_or_else(|| format!("stopped by {actor}"));
        self.end(
            &e,
            &spec,
            Decision::Rollback { reason },
            How::Manual,
            &actor,
            true,
        )
        .await?;
        let e = self.find_experiment(name).await?;
        Ok(view(&e, spec, None))
    }

    /// Carry out `decision` for `e` (promote or roll back) in one
    /// transaction with its deployment change.
    async fn end(
        &self,
        e: &ExperimentRow,
        spec: &Spec,
        decision: Decision,
        how: How,
        actor: &str,
        stopped: bool,
    ) -> Result<(), ExperimentError> {
        let control = e.control_model_id;
        let first_treatment = spec
            .arms
            .get(1)
            .and_then(|a| a.model_id)
            .context("an experiment without a treatment")?;
        let (end, said) = match &decision {
            Decision::Promote { arm, reason } => {
                let Some(a) = spec.arms.iter().position(|x| &x.name == arm) else {
                    return Err(ExperimentError::Invalid(format!(
                        "the decision promotes arm `{arm}`, which `{}` does not have",
                        e.name
                    )));
                };
                if a == 0 {
                    return Box::pin(self.end(
                        e,
                        spec,
                        Decision::Rollback {
                            reason: reason.clone(),
                        },
                        how,
                        actor,
                        stopped,
                    ))
                    .await;
                }
                let to = spec.arms[a].model_id.context("an arm without a model")?;
                (
                    End {
                        state: "promoted",
                        decision: "promote",
                        reason: reason.clone(),
                        change: NewChange {
                            model_name: e.model_name.clone(),
                            environment: e.environment.clone(),
                            to_model_id: to,
                            expected_from: Some(control),
                            action: Action::Deploy,
                            how,
                            actor: actor.to_owned(),
                            reason: Some(reason.clone()),
                            run: None,
                        },
                        moves: true,
                    },
                    "promote",
                )
            }
            Decision::Rollback { reason } | Decision::Continue { reason } => {
                let (state, said) = if stopped {
                    ("stopped", "stop")
                } else {
                    ("rolled_back", "rollback")
                };
                (
                    End {
                        state,
                        decision: said,
                        reason: reason.clone(),
                        change: NewChange {
                            model_name: e.model_name.clone(),
                            environment: e.environment.clone(),
                            to_model_id: control,
                            expected_from: Some(first_treatment),
                            action: Action::Rollback,
                            how,
                            actor: actor.to_owned(),
                            reason: Some(reason.clone()),
                            run: None,
                        },
                        moves: false,
                    },
                    said,
                )
            }
        };
        match self.store.end_experiment(e.id, end).await? {
            Ended::Done(_) => {}
            Ended::AlreadyEnded(state) => {
                return Err(ExperimentError::Conflict(format!(
                    "experiment `{}` has ended already ({state})",
                    e.name
                )));
            }
            Ended::Conflict => {
                return Err(ExperimentError::Conflict(format!(
                    "the deployment of `{}` to {} moved during experiment `{}`; nothing was changed",
                    e.model_name, e.environment, e.name
                )));
            }
        }
        tracing::info!(experiment = %e.name, decision = said, reason = decision.reason(), "experiment ended");
        self.bus.emit(
            None,
            None,
            EventKind::ExperimentDecided {
                experiment: e.name.clone(),
                decision: said.to_owned(),
                reason: decision.reason().to_owned(),
            },
        );
        self.routes_changed().await;
        Ok(())
    }

    /// Look at every running experiment once (the serving daemon does,
    /// every `experiment_interval`): save the request counts, compute the
    /// results, tell subscribers what changed, and act on the decision.
    pub async fn look_at_experiments(&self) {
        self.read_experiment_files().await;
        let running = match self.store.experiments(None, true).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("cannot read the running experiments: {e:#}");
                return;
            }
        };
        self.looks
            .said
            .lock()
            .unwrap_or_else(|x| x.into_inner())
            .retain(|id, _| running.iter().any(|e| e.id == *id));
        for e in running {
            if let Err(err) = self.look_at(&e).await {
                tracing::warn!(experiment = %e.name, "cannot look at the experiment: {err:#}");
            }
        }
    }

    async fn look_at(&self, e: &ExperimentRow) -> anyhow::Result<()> {
        let spec = spec_of(e)?;
        let mut counters = counters_of(e, spec.arms.len());
        let fresh = self.server.take_counters(e.id);
        if fresh.iter().any(|r| r.requests > 0) {
            for (c, f) in counters.iter_mut().zip(&fresh) {
                c.add(f);
            }
            self.store
                .save_experiment_counters(e.id, &serde_json::to_string(&counters)?)
                .await?;
        }
        let results = self.results_of(e, &spec, Some(&counters)).await?;
        let summary = serde_json::json!({
            "arms": results.arms,
            "srm": {"p_value": results.srm.p_value, "flagged": results.srm.flagged},
            "ready": results.ready,
            "primary": results.metrics.first(),
            "breaches": results.breaches,
            "winners": results.winners,
        });
        let (decision, advance) = self.decide_now(e, &spec, &results, &counters);
        let (summary_text, reason) = (summary.to_string(), decision.reason().to_owned());
        let (new_summary, new_reason) = {
            let mut said = self.looks.said.lock().unwrap_or_else(|x| x.into_inner());
            let before = said.get(&e.id).cloned().unwrap_or_default();
            said.insert(e.id, (summary_text.clone(), reason.clone()));
            (before.0 != summary_text, before.1 != reason)
        };
        if new_summary {
            // Kept for the dashboard's curves: each treatment's p-value and
            // chance to win on the primary metric at this look.
            if let Some(primary) = results.metrics.first() {
                let units: u64 = results.arms.iter().map(|a| a.units).sum();
                let look: Vec<serde_json::Value> = primary
                    .comparisons
                    .iter()
                    .map(|c| {
                        serde_json::json!({
                            "arm": c.arm, "p_value": c.p_adjusted.or(c.p_value),
                            "chance_to_win": c.chance_to_win, "units": units,
                        })
                    })
                    .collect();
                if let Err(err) = self
                    .store
                    .save_look(e.id, &serde_json::Value::from(look).to_string())
                    .await
                {
                    tracing::warn!(experiment = %e.name, "cannot keep the look: {err:#}");
                }
            }
            self.bus.emit(
                None,
                None,
                EventKind::ExperimentResults {
                    experiment: e.name.clone(),
                    results: summary,
                },
            );
        }
        if let Some(next) = advance {
            return self.advance(e, &spec, next).await;
        }
        match decision {
            Decision::Continue { reason } if new_reason => {
                self.bus.emit(
                    None,
                    None,
                    EventKind::ExperimentDecided {
                        experiment: e.name.clone(),
                        decision: "continue".into(),
                        reason,
                    },
                );
            }
            Decision::Continue { .. } => {}
            Decision::Promote { .. } | Decision::Rollback { .. } => {
                let how = match (&decision, spec.canary.is_some()) {
                    (Decision::Rollback { .. }, true) => How::Automatic,
                    (_, true) => How::Canary,
                    _ => How::Experiment,
                };
                let actor = format!("{} `{}`", e.kind, e.name);
                self.end(e, &spec, decision, how, &actor, false)
                    .await
                    .map_err(anyhow::Error::from)?;
            }
        }
        Ok(())
    }

    /// What a look at `results` decides: nothing while the sample ratio
    /// is off; a canary's steps; else the decision script. The second is
    /// the step a canary moves to.
    fn decide_now(
        &self,
        e: &ExperimentRow,
        spec: &Spec,
        results: &Results,
        counters: &[Requests],
    ) -> (Decision, Option<usize>) {
        // A harm is acted on even while the sample ratio is off: rolling
        // back is the safe direction, and a broken treatment (failing
        // requests that log nothing) is one cause of a mismatch.
        if let Some(b) = results.breaches.first() {
            let what = if spec.canary.is_some() {
                "canary"
            } else {
                "experiment"
            };
            return (
                Decision::Rollback {
                    reason: format!("{what} breached a guardrail on {}: {}", b.arm, b.reason),
                },
                None,
            );
        }
        if results.expired && (results.srm.flagged || spec.canary.is_some()) {
            return (
                Decision::Rollback {
                    reason: "ran its full duration without a decision; the control stays".into(),
                },
                None,
            );
        }
        if results.srm.flagged {
            let decision = Decision::Continue {
                reason: format!(
                    "sample ratio mismatch (χ² p = {:.2e} < {}): units per arm {:?} against weights {:?}; automatic decisions wait until it is explained",
                    results.srm.p_value,
                    crate::experiment::stats::srm::SRM_ALPHA,
                    results
                        .arms
                        .iter()
                        .map(|a| if spec.canary.is_some() {
                            a.requests
                        } else {
                            a.units
                        })
                        .collect::<Vec<_>>(),
                    spec.weights()
                ),
            };
            return (decision, None);
        }
        if spec.canary.is_some() {
            return match self.canary_decision(e, spec, results, counters) {
                CanaryNext::Decide(d) => (d, None),
                CanaryNext::Advance(next) => (
                    Decision::Continue {
                        reason: format!("canary moves to step {}", next + 1),
                    },
                    Some(next),
                ),
            };
        }
        (self.script_decision(e, spec, results), None)
    }

    /// What the experiment's decision script says (the shipped one unless
    /// its spec names another). A script that fails keeps it running and
    /// says why.
    fn script_decision(&self, e: &ExperimentRow, spec: &Spec, results: &Results) -> Decision {
        let script = match &spec.stopping.decide {
            Some(path) => crate::script::compile_file(Path::new(path), crate::script::Hook::Decide),
            None => Ok(crate::script::hooks::default_decide()),
        };
        let value = match serde_json::to_value(results) {
            Ok(v) => v,
            Err(err) => {
                return Decision::Continue {
                    reason: format!("the results cannot be given to the script: {err}"),
                };
            }
        };
        match script.and_then(|s| crate::script::hooks::decide(&s, &e.name, &value)) {
            Ok(d) => d,
            Err(err) if results.expired => Decision::Rollback {
                reason: format!(
                    "ran its full duration, and the decision script failed: {err}; the control stays"
                ),
            },
            Err(err) => Decision::Continue {
                reason: format!("the decision script failed, so nothing is decided: {err}"),
            },
        }
    }

    /// A canary: roll back at once on a breach; move to the next step when
    /// this one has seen enough requests for long enough; promote after
    /// the last step below 100%.
    fn canary_decision(
        &self,
        e: &ExperimentRow,
        spec: &Spec,
        results: &Results,
        counters: &[Requests],
    ) -> CanaryNext {
        let canary = spec.canary.as_ref().expect("a canary");
        let step = e.step as usize;
        let percent = canary.steps.get(step).copied().unwrap_or(100.0);
        if let Some(b) = results.breaches.first() {
            return CanaryNext::Decide(Decision::Rollback {
                reason: format!(
                    "canary breached a guardrail at {percent}% of traffic: {}",
                    b.reason
                ),
            });
        }
        // Guardrails on conversations need `min_units` of them per arm;
        // without them the canary moves on request guardrails alone, and
        // says so.
        let untested: Vec<&str> = results
            .metrics
            .iter()
            .filter(|m| m.role == "guardrail")
            .filter(|m| m.arms.iter().any(|a| a.units < results.min_units))
            .map(|m| m.metric.as_str())
            .collect();
        let caveat = if untested.is_empty() {
            String::new()
        } else {
            format!(
                " (not yet tested, fewer than {} units per arm: {})",
                results.min_units,
                untested.join(", ")
            )
        };
        let seen = counters.get(1).map_or(0, |r| r.requests);
        let held = (Utc::now() - e.step_started_at)
            .to_std()
            .unwrap_or_default()
            >= canary.hold;
        if seen < canary.min_requests || !held {
            return CanaryNext::Decide(Decision::Continue {
                reason: format!(
                    "canary at {percent}% of traffic: {seen} of {} requests, held {}",
                    canary.min_requests,
                    if held {
                        "long enough"
                    } else {
                        "not long enough yet"
                    }
                ),
            });
        }
        let next = step + 1;
        if canary.steps.get(next).is_none_or(|p| *p >= 100.0) {
            return CanaryNext::Decide(Decision::Promote {
                arm: spec.arms[1].name.clone(),
                reason: format!(
                    "canary passed every step up to {percent}% with no guardrail breached{caveat}; it serves all traffic now"
                ),
            });
        }
        CanaryNext::Advance(next)
    }

    /// Move a canary to step `next`.
    async fn advance(&self, e: &ExperimentRow, spec: &Spec, next: usize) -> anyhow::Result<()> {
        let canary = spec.canary.as_ref().context("not a canary")?;
        let p = canary.steps[next] / 100.0;
        let mut spec = spec.clone();
        spec.arms[0].weight = 1.0 - p;
        spec.arms[1].weight = p;
        let to = spec.arms[1].model_id.context("an arm without a model")?;
        let reason = format!(
            "canary `{}` step {}: {}% to v{}",
            e.name,
            next + 1,
            canary.steps[next],
            spec.arms[1].version.unwrap_or_default()
        );
        let moved = self
            .store
            .advance_canary(
                e.id,
                e.step,
                next as i32,
                &serde_json::to_string(&spec)?,
                NewChange {
                    model_name: e.model_name.clone(),
                    environment: e.environment.clone(),
                    to_model_id: to,
                    expected_from: Some(e.control_model_id),
                    action: Action::Split,
                    how: How::Canary,
                    actor: format!("canary `{}`", e.name),
                    reason: Some(reason.clone()),
                    run: None,
                },
            )
            .await?;
        if moved {
            // Counts start again at each step.
            self.server.take_counters(e.id);
            tracing::info!(experiment = %e.name, step = next + 1, percent = canary.steps[next], "canary advanced");
            self.bus.emit(
                None,
                None,
                EventKind::ExperimentDecided {
                    experiment: e.name.clone(),
                    decision: "advance".into(),
                    reason,
                },
            );
            self.routes_changed().await;
        }
        Ok(())
    }

    /// Start the experiments defined by files in `experiments/` under each
    /// workflow folder that have not started yet; report a file that
    /// cannot be read or started (once per content).
    pub async fn read_experiment_files(&self) {
        let dirs: Vec<PathBuf> = self
            .config()
            .daemon
            .workflow_dirs
            .iter()
            .map(|d| d.join(crate::workflow::experiment::FOLDER))
            .collect();
        let mut files: Vec<PathBuf> = dirs
            .iter()
            .filter_map(|d| std::fs::read_dir(d).ok())
            .flat_map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        // What is remembered of files that are gone is forgotten.
        self.looks
            .unparsable
            .lock()
            .unwrap_or_else(|x| x.into_inner())
            .retain(|f, _| files.contains(f));
        self.looks
            .reported
            .lock()
            .unwrap_or_else(|x| x.into_inner())
            .retain(|(f, _)| files.contains(f));
        if files.is_empty() {
            return;
        }
        // Files of experiments that started (and ended) are not read again.
        let Ok(started) = self.store.experiment_names().await else {
            return;
        };
        for file in files {
            let name = file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let outcome = if let Some(source) = started.get(&name) {
                if *source == format!("file {}", file.display()) {
                    // The experiment this file started.
                    continue;
                }
                // Said once: the file is not what runs.
                Err(format!(
                    "{}: experiment `{name}` has already run (or runs); it is not started again, even when its file changes: give a new experiment a new name",
                    file.display()
                ))
            } else {
                self.read_experiment_file(&file, &name).await
            };
            // Each problem is reported once, not at every look.
            if let Err(errors) = outcome
                && self
                    .looks
                    .reported
                    .lock()
                    .unwrap_or_else(|x| x.into_inner())
                    .insert((file.clone(), errors.clone()))
            {
                if started.contains_key(&name) {
                    tracing::warn!(file = %file.display(), "{errors}");
                    continue;
                }
                tracing::error!(file = %file.display(), "experiment not started:\n{errors}");
                self.bus.emit(
                    None,
                    None,
                    EventKind::ExperimentRejected {
                        file: file.display().to_string(),
                        errors,
                    },
                );
            }
        }
    }

    /// Read, check and start one experiment file. A file that did not
    /// parse is parsed again only once it changes (`Ok` meanwhile: it was
    /// reported); one that could not start (no deployment yet, say) is
    /// tried again at every look.
    async fn read_experiment_file(&self, file: &Path, name: &str) -> Result<(), String> {
        let text = read_bounded(file)?;
        let known_bad = self
            .looks
            .unparsable
            .lock()
            .unwrap_or_else(|x| x.into_inner())
            .get(file)
            .is_some_and(|t| *t == text);
        if known_bad {
            return Ok(());
        }
        let spec = match crate::workflow::experiment::parse(file, name, &text) {
            Ok(spec) => spec,
            Err(errors) => {
                self.looks
                    .unparsable
                    .lock()
                    .unwrap_or_else(|x| x.into_inner())
                    .insert(file.to_path_buf(), text);
                return Err(errors.to_string());
            }
        };
        let source = format!("file {}", file.display());
        self.start_experiment(name, spec, source.clone(), source, How::Experiment, None)
            .await
            .map(|_| ())
            .map_err(|e| format!("{}: cannot start: {e}", file.display()))
    }
}

/// Largest experiment file read.
const MAX_FILE_BYTES: u64 = 64 << 10;

/// An experiment file's text: at most [`MAX_FILE_BYTES`], UTF-8.
fn read_bounded(file: &Path) -> Result<String, String> {
    let meta =
        std::fs::metadata(file).map_err(|e| format!("{}: cannot read it: {e}", file.display()))?;
    if !meta.is_file() {
        return Err(format!("{}: is not a regular file", file.display()));
    }
    let len = meta.len();
    if len > MAX_FILE_BYTES {
        return Err(format!(
            "{}: {len} bytes; an experiment file takes at most {MAX_FILE_BYTES}",
            file.display()
        ));
    }
    let bytes =
        std::fs::read(file).map_err(|e| format!("{}: cannot read it: {e}", file.display()))?;
    String::from_utf8(bytes).map_err(|_| format!("{}: is not UTF-8 text", file.display()))
}
