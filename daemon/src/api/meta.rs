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
    if !s.ready.load(Ordering::Relaxed) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not ready"})),
        );
    }
    match s.store.write_health().failing() {
        None => (StatusCode::OK, Json(json!({"status": "ready"}))),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not ready", "reason": why})),
        ),
    }
}

pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

pub async fn metrics(State(s): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics_text().await?,
    ))
}

pub async fn status(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(s.status().await?))
}
