//! Health, readiness, status, metrics and the OpenAPI document.

use super::AppState;
use super::error::ApiError;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};
use std::sync::atomic::Ordering;

/// The OpenAPI document, kept beside the route table it describes.
pub const OPENAPI: &str = include_str!("openapi.json");

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

pub async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    if s.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, Json(json!({"status": "ready"})))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not ready"})),
        )
    }
}

pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

pub async fn metrics(State(s): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    s.metrics.set_run_counts(&s.store.run_counts().await?);
    s.metrics.set_gpus(s.gpus());
    s.metrics.set_slurm(&s.slurm().jobs());
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    ))
}

pub async fn status(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let counts = s.store.run_counts().await?;
    let entries = s.workflows.entries();
    let active: Vec<Value> = s
        .executor
        .active()
        .iter()
        .map(|(id, a)| json!({"run": id, "workflow": a.workflow}))
        .collect();
    Ok(Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "ready": s.ready.load(Ordering::Relaxed),
        "uptime_seconds": s.started.elapsed().as_secs(),
        "runs": counts.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
        "running": active,
        "workflows": {
            "total": entries.len(),
            "invalid": entries.iter().filter(|e| e.error.is_some()).count(),
        },
        "plugins": {
            "total": s.host.plugins().len(),
            "problems": s.host.problems(),
        },
        "config_problem": *s.config_problem.read().expect("config lock"),
    })))
}
