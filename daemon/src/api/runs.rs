//! Runs: list with filters, show with steps and metrics, cancel, logs.

use super::AppState;
use super::error::ApiError;
use super::extract::{Path, Query};
use crate::executor::Cancelled;
use crate::store::queue::RunFilter;
use crate::store::{RunRow, StepRow};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

pub fn run_json(r: &RunRow) -> Value {
    json!({
        "id": r.id,
        "workflow": r.workflow,
        "workflow_file": r.workflow_file,
        "version": r.workflow_hash,
        "state": r.state,
        "error": r.error,
        "trigger": r.trigger,
        "queued_at": r.queued_at,
        "started_at": r.started_at,
        "finished_at": r.finished_at,
        "resumes": r.resumes,
    })
}

pub fn step_json(s: &StepRow) -> Value {
    json!({
        "step": s.step_id,
        "action": s.action,
        "attempt": s.attempt,
        "state": s.state,
        "error": s.error,
        "output": s.output.as_deref().and_then(|o| serde_json::from_str::<Value>(o).ok()),
        "started_at": s.started_at,
        "finished_at": s.finished_at,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    workflow: Option<String>,
    state: Option<String>,
    before: Option<i64>,
    limit: Option<u64>,
}

pub async fn list(
    State(s): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::BadRequest(
            "`limit` must be between 1 and 1000".into(),
        ));
    }
    let runs = s
        .store
        .list_runs(&RunFilter {
            workflow: q.workflow,
            state: q.state,
            before: q.before,
            limit,
        })
        .await?;
    let next = (runs.len() as u64 == limit)
        .then(|| runs.last().map(|r| r.id))
        .flatten();
    Ok(Json(json!({
        "runs": runs.iter().map(run_json).collect::<Vec<_>>(),
        "next_before": next,
    })))
}

pub async fn show(State(s): State<AppState>, Path(id): Path<i64>) -> Result<Json<Value>, ApiError> {
    let (run, steps, metrics) = s
        .store
        .run(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no run {id}")))?;
    let model = s.store.model_of_run(id).await?;
    let mut v = run_json(&run);
    v["steps"] = steps.iter().map(step_json).collect();
    v["metrics"] = metrics
        .iter()
        .map(|m| json!({"step": m.step_id, "name": m.name, "value": m.value, "epoch": m.step}))
        .collect();
    v["model"] = match model {
        Some(m) => json!({"id": m.id, "name": m.name, "version": m.version}),
        None => Value::Null,
    };
    Ok(Json(v))
}

pub async fn cancel(
    State(s): State<AppState>,
    Path(id): Path<i64>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    match s.executor.cancel(id).await? {
        Cancelled::Dequeued => Ok((
            StatusCode::OK,
            Json(json!({"run": id, "state": "cancelled"})),
        )),
        Cancelled::Stopping => Ok((
            StatusCode::ACCEPTED,
            Json(json!({"run": id, "state": "stopping"})),
        )),
        Cancelled::NotActive => match s.store.run(id).await? {
            None => Err(ApiError::NotFound(format!("no run {id}"))),
            Some((r, _, _)) => Err(ApiError::Conflict(format!(
                "run {id} is {}; only queued or running runs can be cancelled",
                r.state
            ))),
        },
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    after: Option<i64>,
    limit: Option<u64>,
}

pub async fn logs(
    State(s): State<AppState>,
    Path(id): Path<i64>,
    Query(q): Query<LogQuery>,
) -> Result<Json<Value>, ApiError> {
    if s.store.run(id).await?.is_none() {
        return Err(ApiError::NotFound(format!("no run {id}")));
    }
    let lines = s
        .store
        .run_logs(
            id,
            q.after.unwrap_or(0),
            q.limit.unwrap_or(1000).min(10_000),
        )
        .await?;
    Ok(Json(json!({
        "lines": lines
            .iter()
            .map(|l| json!({"id": l.id, "step": l.step_id, "level": l.level, "message": l.message, "at": l.at}))
            .collect::<Vec<_>>(),
    })))
}
