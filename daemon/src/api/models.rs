//! Registered models and installed plugins.

use super::AppState;
use super::error::ApiError;
use super::extract::{Path, Query};
use crate::store::ModelRow;
use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

fn model_json(m: &ModelRow) -> Value {
    json!({
        "id": m.id,
        "name": m.name,
        "version": m.version,
        "run": m.run_id,
        "trainer": {"plugin": m.trainer_plugin, "version": m.trainer_version, "hash": m.plugin_hash},
        "artifact": {"sha256": m.artifact_hash, "bytes": m.artifact_size},
        "lineage": {"dataset_version": m.dataset_version_id, "data_hash": m.data_hash,
                    "config_hash": m.config_hash, "base_model": m.base_model_id},
        "metrics": serde_json::from_str::<Value>(&m.metrics).unwrap_or(Value::Null),
        "intents": serde_json::from_str::<Value>(&m.intents).unwrap_or(Value::Null),
        "created_at": m.created_at,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    limit: Option<u64>,
}

pub async fn list(
    State(s): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let models = s.store.models(q.limit.unwrap_or(50).min(1000)).await?;
    Ok(Json(
        json!({"models": models.iter().map(model_json).collect::<Vec<_>>()}),
    ))
}

/// A model by id, `name`, `name:version` or `latest`.
pub async fn show(
    State(s): State<AppState>,
    Path(selector): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let m = s
        .store
        .find_model(&selector)
        .await
        .map_err(|e| ApiError::BadRequest(format!("{e:#}")))?
        .ok_or_else(|| ApiError::NotFound(format!("no model `{selector}`")))?;
    Ok(Json(model_json(&m)))
}

pub async fn plugins(State(s): State<AppState>) -> Json<Value> {
    let limits = s.host.limits();
    let list: Vec<Value> = s
        .host
        .plugins()
        .iter()
        .map(|p| {
            let m = &p.manifest;
            let (memory, timeout) = s.host.effective_limits(p, None);
            json!({
                "id": p.id(),
                "version": m.version,
                "kind": m.kind.to_string(),
                "api": m.api,
                "description": m.description,
                "origin": p.origin.to_string(),
                "wasm_sha256": p.wasm_sha256,
                "asks": {"filesystem": m.capabilities.filesystem.map(|_| "read"),
                         "memory": m.limits.memory, "timeout": m.limits.timeout},
                "granted": {"read": s.host.grant(p.id()).read.iter().map(|r| r.display().to_string()).collect::<Vec<_>>()},
                "limits": {"memory_bytes": memory, "timeout_ms": timeout.as_millis() as u64,
                           "output_bytes": limits.output, "hostcall_data_bytes": limits.hostcall_data},
            })
        })
        .collect();
    Json(json!({"plugins": list, "problems": s.host.problems()}))
}
