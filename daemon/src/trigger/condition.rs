//! Condition triggers: `[trigger] when = "scripts/should_retrain.rhai"`,
//! checked every `check_every`. A run starts when the script says so — but
//! not while one is active, and not sooner than `min_interval` after the
//! last run started (a debounce).
//!
//! The script sees `now`, `last_run`, `recent_runs`, `model` (the latest registered model
//! of the workflow's name) and `data`: the workflow's sources read now
//! (through their plugins, in the sandbox) against what its last
//! successful run read; `conversations` and `feedback`: what the model's
//! users did since that run started (logged through the API); `reviews`:
//! the model's review queue, with the items approved since that run
//! started; `quality`: its conversations' quality trend.

use super::Context;
use crate::core::ids::RunId;
use crate::core::output::OutputKind;
use crate::core::params::Kind;
use crate::core::state::{RunState, StepState, TriggerKind};
use crate::core::sync::Lock;
use crate::pipeline::steps::source;
use crate::plugin::JobSpec;
use crate::registry::ModelView;
use crate::service::Fire;
use crate::store::RunRow;
use crate::store::conversations::Traffic;
use crate::store::queue::RunFilter;
use crate::workflow::{Action, Workflow};
use anyhow::Result;
use chrono::Utc;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

struct Checking {
    version: String,
    stop: CancellationToken,
}

#[derive(Default)]
pub struct ConditionTriggers {
    checking: Mutex<BTreeMap<String, Checking>>,
}

impl ConditionTriggers {
    /// Make the checks match the workflows' `trigger.when`; once stopping,
    /// end them all.
    pub fn sync(&self, ctx: &Context) {
        let wanted: BTreeMap<String, Arc<Workflow>> = if ctx.stop.is_cancelled() {
            BTreeMap::new()
        } else {
            ctx.workflows
                .good()
                .into_iter()
                .filter(|g| g.workflow.trigger.when.is_some())
                .map(|g| (g.workflow.name.to_string(), g.workflow.clone()))
                .collect()
        };
        let mut checking = self.checking.locked();
        checking.retain(|name, c| {
            let keep = wanted.get(name).is_some_and(|w| w.hash == c.version);
            if !keep {
                c.stop.cancel();
            }
            keep
        });
        for (name, wf) in wanted {
            if checking.contains_key(&name) {
                continue;
            }
            tracing::info!(workflow = %name, every = ?wf.trigger.check_every, "checking the retrain condition");
            let stop = ctx.stop.child_token();
            ctx.tracker
                .spawn(check_loop(ctx.clone(), wf.clone(), stop.clone()));
            checking.insert(
                name,
                Checking {
                    version: wf.hash.clone(),
                    stop,
                },
            );
        }
    }
}

async fn check_loop(ctx: Context, wf: Arc<Workflow>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(wf.trigger.check_every.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        let checked = tokio::select! {
            checked = check(&ctx, &wf) => checked,
            // A check reads sources through plugins: stopping does not
            // wait for it (the plugin job is cancelled too).
            () = stop.cancelled() => return,
        };
        match checked {
            // Not checked again before the service has queued the run:
            // the next check must see it active.
            Ok(Some(fire)) => {
                if !ctx.emit_and_wait(fire).await {
                    return;
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(workflow = %wf.name, "cannot check the retrain condition: {e:#}")
            }
        }
    }
}

/// Seconds since 1970, as scripts take times.
fn secs(t: chrono::DateTime<Utc>) -> f64 {
    t.timestamp_micros() as f64 / 1e6
}

/// A run as condition scripts see it.
fn run_input(r: &RunRow) -> Value {
    json!({
        "id": r.id, "state": r.state, "trigger": r.trigger,
        "started_at": secs(r.started_at), "finished_at": r.finished_at.map(secs),
        "hours_ago": (Utc::now() - r.started_at).num_seconds() as f64 / 3600.0,
    })
}

/// Whether `wf` should run now: a fire when its script says so.
async fn check(ctx: &Context, wf: &Workflow) -> Result<Option<Fire>> {
    let Some(script) = &wf.trigger.when else {
        return Ok(None);
    };
    let store = &ctx.store;
    if store.active_runs_of(&wf.name).await? > 0 {
        return Ok(None);
    }
    let runs = store
        .list_runs(&RunFilter {
            workflow: Some(wf.name.to_string()),
            limit: 200,
            ..Default::default()
        })
        .await?;
    let last = runs.first();
    if let Some(l) = last {
        let since = (Utc::now() - l.started_at).to_std().unwrap_or_default();
        if since < wf.trigger.min_interval {
            return Ok(None);
        }
    }
    let last_run = last.map(run_input).unwrap_or(Value::Null);
    let recent_runs: Vec<Value> = runs.iter().take(10).map(run_input).collect();
    let model = match store.models_named(wf.model_name()).await?.first() {
        None => Value::Null,
        Some(m) => {
            let mut v = ModelView::from(m).to_json();
            v["age_hours"] = json!((Utc::now() - m.created_at).num_seconds() as f64 / 3600.0);
            v
        }
    };
    let last_ok = runs.iter().find(|r| r.state == RunState::Succeeded);
    let data = data_now(ctx, wf, last_ok.map(RunRow::run_id)).await?;
    let traffic = store
        .traffic_since(wf.model_name(), last_ok.map(|r| r.started_at))
        .await?;
    let since = last_ok.map(|r| r.started_at);
    let counts = store.review_counts(Some(wf.model_name())).await?;
    let reviews = json!({
        "open": counts.open,
        "disputed": counts.disputed,
        "approved": counts.approved,
        "rejected": counts.rejected,
        "approved_since_last_run": store.approved_since(wf.model_name(), since).await?,
    });
    let quality = json!(
        store
            .quality_trend(wf.model_name(), crate::core::params::DEFAULT_ANALYZER)
            .await?
    );
    let inputs = [
        ("now", json!(secs(Utc::now()))),
        ("reviews", reviews),
        ("quality", quality),
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
    if !verdict.pass {
        return Ok(None);
    }
    tracing::info!(workflow = %wf.name, reason = verdict.reason.as_deref().unwrap_or(""), "retrain condition met");
    Ok(Some(Fire {
        workflow: wf.name.to_string(),
        kind: TriggerKind::Condition,
        at: Utc::now(),
        why: verdict.reason,
    }))
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
async fn data_now(ctx: &Context, wf: &Workflow, last_ok: Option<RunId>) -> Result<Value> {
    let before: BTreeMap<String, i64> = match last_ok {
        None => BTreeMap::new(),
        Some(run) => ctx
            .store
            .steps_of(run)
            .await?
            .into_iter()
            .filter(|s| s.state == StepState::Succeeded)
            .filter_map(|s| {
                let kind = wf.step(&s.step_id).map(crate::pipeline::output_kind)?;
                if !matches!(kind, OutputKind::Dataset | OutputKind::Ruled) {
                    return None;
                }
                let out = crate::core::output::StepOutput::from_stored(s.output.as_deref()?, kind)
                    .ok()?;
                Some((s.step_id, out.dataset()?.examples as i64))
            })
            .collect(),
    };
    let mut per_source = serde_json::Map::new();
    let (mut now_total, mut then_total) = (0i64, 0i64);
    for step in &wf.steps {
        let Action::Plugin {
            kind: Kind::Source, ..
        } = &step.action
        else {
            continue;
        };
        let spec = JobSpec {
            run: "trigger".into(),
            step: step.id.to_string(),
            read_paths: step.read_paths.clone(),
            timeout: step.timeout,
            cancel: ctx.stop.child_token(),
            ..Default::default()
        };
        let out = source::read(ctx.host.clone(), step, spec).await?;
        let now = out.examples.len() as i64;
        let then = before.get(step.id.as_str()).copied().unwrap_or(0);
        now_total += now;
        then_total += then;
        per_source.insert(
            step.id.to_string(),
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
