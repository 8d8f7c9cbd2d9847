//! Workflows: list, show (with validation state), trigger.

use super::AppState;
use super::error::ApiError;
use super::extract::Path;
use crate::core::state::TriggerKind;
use crate::service::Fire;
use crate::service::views::{self, RunView};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

pub async fn list(State(s): State<AppState>) -> Json<Value> {
    let list: Vec<Value> = s.workflows.entries().iter().map(views::workflow).collect();
    Json(json!({ "workflows": list }))
}

pub async fn show(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let e = s
        .workflows
        .get(&name)
        .ok_or_else(|| ApiError::NotFound(format!("no workflow named `{name}`")))?;
    let fires = s.records().fires(&e.name(), 20).await?;
    Ok(Json(views::workflow_detail(&e, &fires)))
}

pub async fn trigger(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let run = s.fire(Fire::now(&name, TriggerKind::Manual)).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "run": RunView::from(&run) })),
    ))
}
