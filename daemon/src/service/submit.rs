//! Submitting runs: the one way a run comes to be. A trigger's fire, a
//! person's `POST /api/v1/workflows/{name}/runs`, and `coach run` all go
//! through [`Service::submit`]: one store transaction keeps the workflow
//! version, applies its concurrency policy, writes the run and records the
//! fire. And cancelling one.

use super::Service;
use crate::core::ids::RunId;
use crate::core::state::{FireOutcome, TriggerKind};
use crate::events::EventKind;
use crate::executor::Cancelled;
use crate::store::RunRow;
use crate::store::queue::{NewFire, Submission, Submitted};
use crate::workflow::set::Good;
use crate::workflow::trigger::Concurrency;
use chrono::{DateTime, Utc};

/// A request for a run of a workflow in service.
#[derive(Debug, Clone)]
pub struct Fire {
    pub workflow: String,
    pub kind: TriggerKind,
    /// When it was due (a cron fire's scheduled second).
    pub at: DateTime<Utc>,
    /// Why (a condition script's reason).
    pub why: Option<String>,
}

impl Fire {
    pub fn now(workflow: &str, kind: TriggerKind) -> Fire {
        Fire {
            workflow: workflow.to_owned(),
            kind,
            at: Utc::now(),
            why: None,
        }
    }
}

/// Why a submission started no run.
#[derive(Debug, thiserror::Error)]
pub enum FireError {
    #[error("no workflow named `{0}`")]
    Unknown(String),
    #[error("workflow `{name}` has no valid version to run:\n{errors}")]
    Invalid { name: String, errors: String },
    #[error("the daemon is shutting down")]
    ShuttingDown,
    /// Triggers pause while the store cannot be written.
    #[error("triggers are paused: {0}")]
    StoreUnwritable(String),
    #[error(
        "workflow `{name}` already has a run queued or running (run {active}) and its concurrency is `forbid`"
    )]
    Forbidden { name: String, active: i64 },
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

impl FireError {
    fn outcome(&self) -> FireOutcome {
        match self {
            FireError::Forbidden { .. } => FireOutcome::Skipped,
            _ => FireOutcome::Failed,
        }
    }
}

/// Who runs a submitted run.
#[derive(Debug, Clone, Copy)]
pub enum RunBy<'a> {
    /// A daemon, from the queue.
    Queue,
    /// This process, at once: `coach run`, named by its executor identity.
    Here(&'a str),
}

impl Service {
    /// Queue a run of workflow `fire.workflow` (as in service now).
    pub async fn fire(&self, fire: Fire) -> Result<RunRow, FireError> {
        let result = match self.good_version(&fire) {
            Ok(good) => self.submit(&good, &fire, RunBy::Queue).await,
            Err(e) => Err(e),
        };
        self.record_outcome(&fire, &result).await;
        result
    }

    /// The version in service of the workflow `fire` names.
    fn good_version(&self, fire: &Fire) -> Result<Good, FireError> {
        if self.executor.is_stopping() {
            return Err(FireError::ShuttingDown);
        }
        if let Some(why) = self.store.write_health().failing() {
            return Err(FireError::StoreUnwritable(why));
        }
        let entry = self
            .workflows
            .get(&fire.workflow)
            .ok_or_else(|| FireError::Unknown(fire.workflow.clone()))?;
        entry.good.ok_or_else(|| FireError::Invalid {
            name: fire.workflow.clone(),
            errors: entry.error.unwrap_or_default(),
        })
    }

    /// Write a run of `good` (one transaction: version, policy, run, fire
    /// record) for `by`.
    pub async fn submit(
        &self,
        good: &Good,
        fire: &Fire,
        by: RunBy<'_>,
    ) -> Result<RunRow, FireError> {
        let wf = &good.workflow;
        let file = wf.file.display().to_string();
        let scripts = wf.script_files();
        let submitted = self
            .store
            .submit(Submission {
                workflow: &wf.name,
                file: &file,
                hash: &wf.hash,
                text: &good.text,
                scripts: &scripts,
                trigger: fire.kind,
                scheduled_for: fire.at,
                detail: fire.why.clone(),
                exclusive: wf.trigger.concurrency == Concurrency::Forbid,
                claimed_by: match by {
                    RunBy::Queue => None,
                    RunBy::Here(me) => Some(me),
                },
            })
            .await?;
        match submitted {
            Submitted::Run(run) => {
                self.bus.emit(
                    Some(run.run_id()),
                    Some(&run.workflow),
                    EventKind::RunQueued {
                        trigger: fire.kind.to_string(),
                    },
                );
                if matches!(by, RunBy::Queue) {
                    self.executor.wake();
                }
                Ok(run)
            }
            Submitted::Refused { active } => Err(FireError::Forbidden {
                name: wf.name.to_string(),
                active: active.id,
            }),
        }
    }

    /// Metrics, events, logs and — for fires the store did not see — a
    /// fire record, for what a fire came to.
    async fn record_outcome(&self, fire: &Fire, result: &Result<RunRow, FireError>) {
        let outcome = match result {
            Ok(_) => FireOutcome::Queued,
            Err(e) => e.outcome(),
        };
        self.bus
            .metrics()
            .trigger_fired(fire.kind.as_str(), outcome.as_str());
        let name = fire.workflow.as_str();
        if let Err(FireError::Unknown(_)) = result {
            tracing::warn!(workflow = name, trigger = %fire.kind, "trigger fired, no run: no such workflow");
            return;
        }
        // Queued and refused fires were recorded with the submission.
        if let Err(
            e @ (FireError::Invalid { .. } | FireError::ShuttingDown | FireError::Store(_)),
        ) = result
        {
            let record = NewFire {
                workflow: name.to_owned(),
                kind: fire.kind,
                scheduled_for: fire.at,
                outcome,
                detail: Some(e.to_string()),
                run_id: None,
            };
            if let Err(e) = self.store.record_fire(record).await {
                tracing::error!(workflow = name, "cannot record a trigger fire: {e:#}");
            }
        }
        self.bus.emit(
            result.as_ref().ok().map(RunRow::run_id),
            Some(name),
            EventKind::TriggerFired {
                kind: fire.kind.to_string(),
                outcome: outcome.to_string(),
            },
        );
        match result {
            Ok(run) => {
                tracing::info!(workflow = name, trigger = %fire.kind, run = run.id, "run queued")
            }
            Err(e) => {
                tracing::warn!(workflow = name, trigger = %fire.kind, "trigger fired, no run: {e}")
            }
        }
    }

    /// Run `good` in this process, to its end: submitted like every run
    /// (its version kept, its workflow's concurrency policy applied, the
    /// fire recorded) but claimed at once by this process, so no daemon
    /// sharing the store takes it. `coach run` runs this way.
    pub async fn run_here(
        &self,
        good: &Good,
        reporter: std::sync::Arc<dyn crate::events::Reporter>,
        stop: &crate::core::stop::RunStop,
    ) -> Result<crate::pipeline::RunSummary, FireError> {
        let fire = Fire::now(&good.workflow.name, TriggerKind::Cli);
        let run = self
            .submit(good, &fire, RunBy::Here(&self.executor.instance))
            .await?;
        Ok(self
            .executor
            .run_claimed(run.run_id(), &good.workflow, reporter, stop)
            .await?)
    }

    /// Cancel run `id`: a queued run at once, a running one at its next
    /// check.
    pub async fn cancel(&self, id: RunId) -> anyhow::Result<Cancelled> {
        self.executor.cancel(id).await
    }
}
