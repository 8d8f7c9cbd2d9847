//! The GPU inventory with its allocations, and the queue of steps waiting
//! for GPUs with the reason each waits.

use super::AppState;
use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

/// `GET /api/v1/gpus`.
pub async fn inventory(State(s): State<AppState>) -> Json<Value> {
    Json(gpus_json(s.gpus()))
}

pub fn gpus_json(q: &crate::executor::gpus::GpuQueue) -> Value {
    let inv = q.inventory();
    let allocations = q.allocations();
    let gpus: Vec<Value> = inv
        .gpus
        .iter()
        .map(|g| {
            let mut v = serde_json::to_value(g).unwrap_or(Value::Null);
            v["allocated_to"] = json!(
                allocations
                    .iter()
                    .filter(|a| a.devices.contains(&g.index))
                    .map(|a| json!({"run": a.owner.run, "step": a.owner.step, "job": a.job}))
                    .collect::<Vec<_>>()
            );
            v
        })
        .collect();
    json!({
        "source": inv.source,
        "reason": inv.reason,
        "driver": inv.driver,
        "at": inv.at,
        "gpus": gpus,
        "allocations": allocations,
    })
}

/// `GET /api/v1/queue`.
pub async fn queue(State(s): State<AppState>) -> Json<Value> {
    let q = s.gpus();
    Json(json!({
        "waiting": q.queue(),
        "running": q.allocations(),
        "slurm": s.slurm().jobs(),
    }))
}
