//! Workflows: list, show (with validation state), trigger.

use super::AppState;
use super::error::ApiError;
use super::extract::Path;
use crate::service::workflows::Entry;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

fn entry_json(e: &Entry) -> Value {
    let mut v = json!({
        "name": e.name(),
        "file": e.file.display().to_string(),
        "valid": e.error.is_none(),
        "error": e.error,
    });
    if let Some(g) = &e.good {
        let wf = &g.workflow;
        let t = &wf.trigger;
        v["version"] = json!(wf.hash);
        v["description"] = json!(wf.description);
        v["loaded_at"] = json!(g.loaded_at);
        v["trigger"] = json!({
            "cron": t.cron.as_ref().map(|c| c.expr.clone()),
            "timezone": t.cron.as_ref().map(|c| c.timezone.name()),
            "catch_up": t.catch_up,
            "watch": t.watch.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "debounce_ms": t.debounce.as_millis() as u64,
            "on": t.on,
            "concurrency": t.concurrency,
        });
    }
    v
}

pub async fn list(State(s): State<AppState>) -> Json<Value> {
    let list: Vec<Value> = s.workflows.entries().iter().map(entry_json).collect();
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
    let mut v = entry_json(&e);
    if let Some(g) = &e.good {
        v["steps"] = g
            .workflow
            .steps
            .iter()
            .map(|st| {
                json!({
                    "id": st.id,
                    "action": match &st.action {
                        crate::workflow::Action::Plugin { id, .. } => id.clone(),
                        crate::workflow::Action::Builtin(b) => b.name().to_owned(),
                    },
                    "needs": st.needs,
                    "retries": st.retries,
                })
            })
            .collect();
    }
    let fires = s.store.fires_of(&e.name(), 20).await?;
    v["recent_fires"] = fires
        .iter()
        .map(|f| {
            json!({"kind": f.kind, "scheduled_for": f.scheduled_for, "fired_at": f.fired_at,
                   "outcome": f.outcome, "detail": f.detail, "run": f.run_id})
        })
        .collect();
    Ok(Json(v))
}

pub async fn trigger(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let run = crate::trigger::fire(&s, &name, "manual", chrono::Utc::now()).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "run": super::runs::run_json(&run) })),
    ))
}
