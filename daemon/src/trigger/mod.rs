//! What starts runs: cron schedules ([`cron`]), changes under watched paths
//! ([`watch`]) and people (the API's `POST /api/v1/workflows/{name}/runs`,
//! `coach trigger`). Every fire goes through [`fire`], which applies the
//! workflow's concurrency policy, writes the run to the queue and records
//! the fire.

pub mod condition;
pub mod cron;
pub mod watch;

use crate::service::Service;
use crate::service::events::EventKind;
use crate::store::RunRow;
use crate::store::queue::NewFire;
use crate::workflow::trigger::Concurrency;
use chrono::{DateTime, Utc};

/// Why a fire started no run.
#[derive(Debug, thiserror::Error)]
pub enum FireError {
    #[error("no workflow named `{0}`")]
    Unknown(String),
    #[error("workflow `{name}` has no valid version to run:\n{errors}")]
    Invalid { name: String, errors: String },
    #[error("the daemon is shutting down")]
    ShuttingDown,
    #[error("workflow `{0}` already has a run queued or running and its concurrency is `forbid`")]
    Forbidden(String),
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

/// Queue a run of `name` for trigger `kind` (scheduled for `at`).
pub async fn fire(
    service: &Service,
    name: &str,
    kind: &str,
    at: DateTime<Utc>,
) -> Result<RunRow, FireError> {
    fire_with(service, name, kind, at, None).await
}

/// [`fire`], recording why (a condition script's reason).
pub async fn fire_with(
    service: &Service,
    name: &str,
    kind: &str,
    at: DateTime<Utc>,
    why: Option<String>,
) -> Result<RunRow, FireError> {
    let result = fire_inner(service, name, kind, at, why).await;
    let outcome = match &result {
        Ok(_) => "queued",
        Err(FireError::Forbidden(_)) => "skipped",
        Err(_) => "failed",
    };
    service.metrics.trigger_fired(kind, outcome);
    if !matches!(result, Err(FireError::Unknown(_))) {
        // A queued run's fire was recorded with it.
        if let Err(e) = &result {
            let record = NewFire {
                workflow: name.to_owned(),
                kind: kind.to_owned(),
                scheduled_for: at,
                outcome: outcome.to_owned(),
                detail: Some(e.to_string()),
                run_id: None,
            };
            if let Err(e) = service.store.record_fire(record).await {
                tracing::error!(workflow = name, "cannot record a trigger fire: {e:#}");
            }
        }
        service.bus.emit(
            result.as_ref().ok().map(|r| r.id),
            Some(name),
            EventKind::TriggerFired {
                kind: kind.to_owned(),
                outcome: outcome.to_owned(),
            },
        );
    }
    match &result {
        Ok(run) => tracing::info!(workflow = name, trigger = kind, run = run.id, "run queued"),
        Err(e) => tracing::warn!(
            workflow = name,
            trigger = kind,
            "trigger fired, no run: {e}"
        ),
    }
    result
}

async fn fire_inner(
    service: &Service,
    name: &str,
    kind: &str,
    at: DateTime<Utc>,
    why: Option<String>,
) -> Result<RunRow, FireError> {
    if service.executor.is_stopping() {
        return Err(FireError::ShuttingDown);
    }
    let entry = service
        .workflows
        .get(name)
        .ok_or_else(|| FireError::Unknown(name.to_owned()))?;
    let Some(good) = entry.good else {
        return Err(FireError::Invalid {
            name: name.to_owned(),
            errors: entry.error.unwrap_or_default(),
        });
    };
    let wf = &good.workflow;
    if wf.trigger.concurrency == Concurrency::Forbid
        && service.store.active_runs_of(name).await? > 0
    {
        return Err(FireError::Forbidden(name.to_owned()));
    }
    let file = wf.file.display().to_string();
    let run = service
        .store
        .enqueue_fired(
            (name, &file, &wf.hash, &good.text),
            &wf.script_files(),
            kind,
            at,
            why,
        )
        .await?;
    service.bus.emit(
        Some(run.id),
        Some(name),
        EventKind::RunQueued {
            trigger: kind.to_owned(),
        },
    );
    service.executor.wake();
    Ok(run)
}
