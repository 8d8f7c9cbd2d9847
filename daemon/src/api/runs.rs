//! Runs: list with filters, show with steps and metrics, cancel, logs.

use super::AppState;
use super::error::ApiError;
use super::extract::{Path, Query};
use crate::core::ids::RunId;
use crate::core::state::RunState;
use crate::executor::Cancelled;
use crate::service::views::RunDetail;
use crate::store::queue::RunFilter;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

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
    let state = q
        .state
        .as_deref()
        .map(str::parse::<RunState>)
        .transpose()
        .map_err(ApiError::BadRequest)?;
    let runs = s
        .records()
        .runs(&RunFilter {
            workflow: q.workflow,
            state,
            before: q.before,
            limit,
        })
        .await?;
    let next = (runs.len() as u64 == limit)
        .then(|| runs.last().map(|r| r.id))
        .flatten();
    Ok(Json(json!({
        "runs": runs,
        "next_before": next,
    })))
}

pub async fn show(
    State(s): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<RunDetail>, ApiError> {
    let run = s
        .records()
        .run(RunId(id))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no run {id}")))?;
    Ok(Json(run))
}

pub async fn cancel(
    State(s): State<AppState>,
    Path(id): Path<i64>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    match s.cancel(RunId(id)).await? {
        Cancelled::Dequeued => Ok((
            StatusCode::OK,
            Json(json!({"run": id, "state": "cancelled"})),
        )),
        Cancelled::Stopping => Ok((
            StatusCode::ACCEPTED,
            Json(json!({"run": id, "state": "stopping"})),
        )),
        Cancelled::NotActive => match s.records().state_of(RunId(id)).await? {
            None => Err(ApiError::NotFound(format!("no run {id}"))),
            Some((state, _)) => Err(ApiError::Conflict(format!(
                "run {id} is {state}; only queued or running runs can be cancelled"
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

/// How long a read of a run's log lines waits for those on their way to
/// the store.
pub(crate) const LOGS_FLUSH_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

pub async fn logs(
    State(s): State<AppState>,
    Path(id): Path<i64>,
    Query(q): Query<LogQuery>,
) -> Result<Json<Value>, ApiError> {
    let id = RunId(id);
    if s.records().state_of(id).await?.is_none() {
        return Err(ApiError::NotFound(format!("no run {id}")));
    }
    // The lines already logged are stored before they are read (a run that
    // has just failed shows why).
    s.bus.logs_flushed(LOGS_FLUSH_WAIT).await;
    let lines = s
        .records()
        .logs(
            id,
            q.after.unwrap_or(0),
            q.limit.unwrap_or(1000).min(10_000),
        )
        .await?;
    Ok(Json(json!({ "lines": lines })))
}
