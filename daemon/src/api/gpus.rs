//! The GPU inventory with its allocations, and the queue of steps waiting
//! for GPUs with the reason each waits.

use super::AppState;
use crate::service::views::{GpuView, QueueView};
use axum::Json;
use axum::extract::State;

/// `GET /api/v1/gpus`.
pub async fn inventory(State(s): State<AppState>) -> Json<GpuView> {
    Json(s.gpu_view())
}

/// `GET /api/v1/queue`.
pub async fn queue(State(s): State<AppState>) -> Json<QueueView> {
    Json(s.queue_view())
}
