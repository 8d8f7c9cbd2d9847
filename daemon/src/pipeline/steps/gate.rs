//! A gate step, and every step's `when`: a Rhai verdict over what the run
//! has so far — the candidate model, the model in production, the nearest
//! evaluation and dataset, the steps' states (`docs/scripting.md`).

use super::{StepCtx, nearest_dataset};
use crate::core::evaluation::Report;
use crate::core::example::DatasetStats;
use crate::core::ids::RunId;
use crate::core::output::Verdict;
use crate::pipeline::{Output, Progress, Runner};
use crate::registry::ModelView;
use crate::workflow::{Produces, ScriptRef, Step, Workflow};
use anyhow::{Result, anyhow};
use serde_json::{Value, json};

pub async fn run(ctx: &StepCtx<'_>) -> Result<Output> {
    let script = ctx
        .step
        .when
        .as_ref()
        .ok_or_else(|| anyhow!("a gate without a `when` script"))?;
    Ok(Output::Verdict(
        verdict(ctx.runner, ctx.run, ctx.wf, ctx.step, script, ctx.progress).await?,
    ))
}

/// Evaluate a verdict script (a gate, or a `when`) for `step`.
pub async fn verdict(
    runner: &Runner,
    run: RunId,
    wf: &Workflow,
    step: &Step,
    script: &ScriptRef,
    progress: &Progress,
) -> Result<Verdict> {
    let inputs = inputs(runner, run, wf, step, progress).await?;
    let refs: Vec<(&str, &Value)> = inputs.iter().map(|(k, v)| (*k, v)).collect();
    Ok(crate::script::hooks::verdict(
        &script.0,
        &run.to_string(),
        &refs,
    )?)
}

/// What a verdict script sees (documented in `docs/scripting.md`).
async fn inputs(
    runner: &Runner,
    run: RunId,
    wf: &Workflow,
    step: &Step,
    progress: &Progress,
) -> Result<Vec<(&'static str, Value)>> {
    let near = |what: Produces| {
        wf.nearest(&step.id, what)
            .and_then(|s| progress.outputs.get(s.id.as_str()))
    };
    let evaluation = match near(Produces::Evaluation) {
        Some(Output::Evaluation(r)) => Some(r.clone()),
        _ => None,
    };
    let candidate = match near(Produces::Model) {
        Some(Output::Model(m)) => {
            let mut metrics = serde_json::Map::new();
            for (k, v) in &m.out.metrics {
                metrics.insert(format!("train.{k}"), json!(v));
            }
            if let Some(r) = &evaluation {
                for (k, v) in r.metrics() {
                    metrics.insert(k, json!(v));
                }
            }
            json!({
                "metrics": metrics,
                "per_intent": evaluation.as_ref().map(|r| per_intent(r)).unwrap_or_else(|| json!({})),
                "intents": m.out.intents,
                "plugin": m.out.plugin,
                "lineage": {
                    "run": run.0, "dataset_version": m.out.dataset_version,
                    "data_hash": m.dataset.out.hash, "config_hash": m.out.config_hash,
                    "plugin_hash": m.out.plugin_hash, "base_model": m.out.base_model,
                },
            })
        }
        _ => Value::Null,
    };
    let dataset = match nearest_dataset(wf, step, progress) {
        Some(d) => json!(DatasetStats::of(&d.rows)),
        None => Value::Null,
    };
    Ok(vec![
        ("run", json!({"id": run.0, "workflow": wf.name})),
        ("candidate", candidate),
        ("production", production(runner, run, wf).await?),
        (
            "evaluation",
            evaluation
                .map(|r| serde_json::to_value(r.as_ref()).unwrap_or(Value::Null))
                .unwrap_or(Value::Null),
        ),
        ("dataset", dataset),
        ("steps", json!(progress.states)),
        (
            "quality",
            json!(
                runner
                    .store
                    .quality_trend(wf.model_name(), crate::core::params::DEFAULT_ANALYZER)
                    .await?
            ),
        ),
        ("reviewed", reviewed_per_intent(runner, wf).await?),
    ])
}

/// How many approved review items each intent of the workflow's model
/// has: a gate can refuse a model that got worse where people taught it.
async fn reviewed_per_intent(runner: &Runner, wf: &Workflow) -> Result<Value> {
    let mut per: std::collections::BTreeMap<String, u64> = Default::default();
    for r in runner
        .store
        .reviewed_examples(Some(wf.model_name()))
        .await?
    {
        *per.entry(r.intent).or_default() += 1;
    }
    Ok(json!(per))
}

/// The model in service for `wf`: the version deployed to `production`
/// of the name its register step uses — or, when that name was never
/// deployed, the latest registered one (not one this run registered) —
/// with the per-intent scores of the evaluation in its run.
async fn production(runner: &Runner, run: RunId, wf: &Workflow) -> Result<Value> {
    let store = &runner.store;
    let deployed = match store.deployment(wf.model_name(), "production").await? {
        Some(d) => store.models_by_id(&[d.model_id]).await?.pop(),
        None => None,
    };
    let latest = || async {
        anyhow::Ok(
            store
                .models_named(wf.model_name())
                .await?
                .into_iter()
                .find(|m| m.run_id != run.0),
        )
    };
    let m = match deployed {
        Some(m) => Some(m),
        None => latest().await?,
    };
    let Some(m) = m else {
        return Ok(Value::Null);
    };
    let report = store.last_evaluation(RunId(m.run_id)).await?;
    let mut v = ModelView::from(&m).to_json();
    v["per_intent"] = report.as_ref().map(per_intent).unwrap_or_else(|| json!({}));
    Ok(v)
}

/// Per-intent scores of a report, by intent.
fn per_intent(r: &Report) -> Value {
    Value::Object(
        r.per_intent
            .iter()
            .map(|s| {
                (
                    s.intent.clone(),
                    json!({"precision": s.precision, "recall": s.recall, "f1": s.f1, "support": s.support}),
                )
            })
            .collect(),
    )
}
