//! Condition triggers: `[trigger] when = "scripts/should_retrain.rhai"`,
//! checked every `check_every`. A run starts when the script says so — but
//! not while one is active, and not sooner than `min_interval` after the
//! last run started (a debounce).
//!
//! The script sees `now`, `last_run`, `recent_runs`, `model` (the latest registered model
//! of the workflow's name) and `data`: the workflow's sources read now
//! (through their plugins, in the sandbox) against what its last
//! successful run read; `conversations` and `feedback`: what the model's
//! users did since that run started (logged through the API).

use crate::plugin::JobSpec;
use crate::service::Service;
use crate::store::conversations::Traffic;
use crate::store::state;
use crate::workflow::{Action, Workflow};
use anyhow::Result;
use chrono::Utc;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

struct Checking {
    version: String,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
pub struct ConditionTriggers {
    checking: Mutex<BTreeMap<String, Checking>>,
}

impl ConditionTriggers {
    /// Make the checks match the workflows' `trigger.when`.
    pub fn sync(&self, service: &Arc<Service>) {
        let wanted: BTreeMap<String, Arc<Workflow>> = service
            .workflows
            .entries()
            .into_iter()
            .filter_map(|e| e.good)
            .filter(|g| g.workflow.trigger.when.is_some())
            .map(|g| (g.workflow.name.clone(), g.workflow.clone()))
            .collect();
        let mut checking = self.checking.lock().expect("condition table lock");
        checking.retain(|name, c| {
            let keep = wanted.get(name).is_some_and(|w| w.hash == c.version);
            if !keep {
                c.task.abort();
            }
            keep
        });
        for (name, wf) in wanted {
            if checking.contains_key(&name) {
                continue;
            }
            tracing::info!(workflow = %name, every = ?wf.trigger.check_every, "checking the retrain condition");
            let task = tokio::spawn(check_loop(Arc::downgrade(service), wf.clone()));
            checking.insert(
                name,
                Checking {
                    version: wf.hash.clone(),
                    task,
                },
            );
        }
    }

    pub fn shutdown(&self) {
        for (_, c) in std::mem::take(&mut *self.checking.lock().expect("condition table lock")) {
            c.task.abort();
        }
    }
}

async fn check_loop(service: Weak<Service>, wf: Arc<Workflow>) {
    let mut tick = tokio::time::interval(wf.trigger.check_every.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(service) = service.upgrade() else {
            return;
        };
        if let Err(e) = check(&service, &wf).await {
            tracing::error!(workflow = %wf.name, "cannot check the retrain condition: {e:#}");
        }
    }
}

async fn check(service: &Service, wf: &Workflow) -> Result<()> {
    let Some(script) = &wf.trigger.when else {
        return Ok(());
    };
    if service.store.active_runs_of(&wf.name).await? > 0 {
        return Ok(());
    }
    let runs = service
        .store
        .list_runs(&crate::store::queue::RunFilter {
            workflow: Some(wf.name.clone()),
            limit: 200,
            ..Default::default()
        })
        .await?;
    let last = runs.first();
    if let Some(l) = last {
        let since = (Utc::now() - l.started_at).to_std().unwrap_or_default();
        if since < wf.trigger.min_interval {
            return Ok(());
        }
    }
    let secs = |t: chrono::DateTime<Utc>| t.timestamp_micros() as f64 / 1e6;
    let run_json = |r: &crate::store::RunRow| {
        json!({
            "id": r.id, "state": r.state, "trigger": r.trigger,
            "started_at": secs(r.started_at), "finished_at": r.finished_at.map(secs),
            "hours_ago": (Utc::now() - r.started_at).num_seconds() as f64 / 3600.0,
        })
    };
    let last_run = last.map(run_json).unwrap_or(Value::Null);
    let recent_runs: Vec<Value> = runs.iter().take(10).map(run_json).collect();
    let model = match service.store.models_named(wf.model_name()).await?.first() {
        None => Value::Null,
        Some(m) => json!({
            "id": m.id, "version": m.version, "created_at": secs(m.created_at),
            "age_hours": (Utc::now() - m.created_at).num_seconds() as f64 / 3600.0,
            "metrics": serde_json::from_str::<Value>(&m.metrics).unwrap_or(Value::Null),
        }),
    };
    let last_ok = runs.iter().find(|r| r.state == state::SUCCEEDED);
    let data = data_now(service, wf, last_ok.map(|r| r.id)).await?;
    let traffic = service
        .store
        .traffic_since(wf.model_name(), last_ok.map(|r| r.started_at))
        .await?;
    let inputs = [
        ("now", json!(secs(Utc::now()))),
        ("last_run", last_run),
        ("recent_runs", json!(recent_runs)),
        ("model", model),
        ("data", data),
        ("conversations", conversations_input(&traffic)),
        ("feedback", feedback_input(&traffic)),
    ];
    let owned: Vec<(String, Value)> = inputs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    let script = script.0.clone();
    let verdict = tokio::task::spawn_blocking(move || {
        let refs: Vec<(&str, &Value)> = owned.iter().map(|(k, v)| (k.as_str(), v)).collect();
        crate::script::hooks::verdict(&script, "trigger", &refs)
    })
    .await??;
    if verdict.pass {
        tracing::info!(workflow = %wf.name, reason = verdict.reason.as_deref().unwrap_or(""), "retrain condition met");
        super::fire_with(service, &wf.name, "condition", Utc::now(), verdict.reason).await?;
    }
    Ok(())
}

/// `conversations`: the model's logged traffic since the last successful
/// run started.
pub fn conversations_input(t: &Traffic) -> Value {
    json!({
        "count": t.conversations,
        "messages": t.messages,
        "user_messages": t.user_messages,
        "fallbacks": t.fallbacks,
        "fallback_rate": t.fallback_rate,
    })
}

/// `feedback`: what was said about the model's answers since the last
/// successful run started.
pub fn feedback_input(t: &Traffic) -> Value {
    json!({
        "total": t.feedback,
        "positive": t.positive,
        "negative": t.negative,
        "corrections": t.corrections,
    })
}

/// The workflow's sources read now, against what its last successful run
/// read: `#{ examples, examples_at_last_run, new_examples, per_source }`.
async fn data_now(service: &Service, wf: &Workflow, last_ok: Option<i64>) -> Result<Value> {
    let before: BTreeMap<String, i64> = match last_ok {
        None => BTreeMap::new(),
        Some(run) => service
            .store
            .steps_of(run)
            .await?
            .into_iter()
            .filter(|s| s.state == state::SUCCEEDED)
            .filter_map(|s| {
                let out: Value = serde_json::from_str(s.output.as_deref()?).ok()?;
                Some((s.step_id, out.get("examples")?.as_i64()?))
            })
            .collect(),
    };
    let mut per_source = serde_json::Map::new();
    let (mut now_total, mut then_total) = (0i64, 0i64);
    for step in &wf.steps {
        let Action::Plugin {
            id,
            kind: crate::plugin::manifest::Kind::Source,
        } = &step.action
        else {
            continue;
        };
        let host = service.host.clone();
        let spec = JobSpec {
            run: "trigger".into(),
            step: step.id.clone(),
            read_paths: step.read_paths.clone(),
            timeout: step.timeout,
            ..Default::default()
        };
        let (id, config) = (id.clone(), Value::Object(step.with.clone()).to_string());
        let out =
            tokio::task::spawn_blocking(move || host.source(&id, spec)?.read_all(&config, 1024))
                .await??;
        let now = out.examples.len() as i64;
        let then = before.get(&step.id).copied().unwrap_or(0);
        now_total += now;
        then_total += then;
        per_source.insert(
            step.id.clone(),
            json!({"examples": now, "examples_at_last_run": then}),
        );
    }
    Ok(json!({
        "examples": now_total,
        "examples_at_last_run": then_total,
        "new_examples": (now_total - then_total).max(0),
        "per_source": per_source,
    }))
}
