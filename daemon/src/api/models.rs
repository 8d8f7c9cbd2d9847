//! Registered models and installed plugins.

use super::AppState;
use super::error::ApiError;
use super::extract::{Path, Query};
use crate::core::ids::ModelRef;
use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    limit: Option<u64>,
}

pub async fn list(
    State(s): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let models = s.records().models(q.limit.unwrap_or(50).min(1000)).await?;
    Ok(Json(json!({ "models": models })))
}

/// A model by id, `name`, `name:version` or `latest`.
pub async fn show(
    State(s): State<AppState>,
    Path(selector): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let r: ModelRef = selector.parse().map_err(ApiError::BadRequest)?;
    let m = s
        .records()
        .model(&r)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no model `{selector}`")))?;
    Ok(Json(m.to_json()))
}

pub async fn plugins(State(s): State<AppState>) -> Json<Value> {
    Json(s.plugins_view())
}
