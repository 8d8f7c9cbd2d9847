//! A trainer step: the plugin learns from the train split (validation for
//! its own early stopping and calibration), optionally continuing from a
//! registered model (`warm_start`); the model's bytes are stored as an
//! artifact at once, so a resumed run finds them.
//!
//! [`train_and_predict`] is the same training with predictions on held-out
//! texts, for cross-validation and benchmarks.

use super::{StepCtx, dataset_for, job_spec};
use crate::core::example::{Example, Split};
use crate::core::hash::json_sha256;
use crate::core::ids::ModelRef;
use crate::core::output::ModelOutput;
use crate::pipeline::{Output, Trained};
use crate::plugin::convert::to_guest;
use crate::plugin::{JobSpec, PluginHost};
use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;

pub async fn run(ctx: &StepCtx<'_>) -> Result<Output> {
    let step = ctx.step;
    let id = step.action_name().to_owned();
    let data = dataset_for(ctx)?.clone();
    let train: Vec<_> = data
        .rows
        .iter()
        .filter(|r| r.split.trains())
        .map(to_guest)
        .collect();
    let validation: Vec<_> = data.of(Split::Validation).map(to_guest).collect();
    if train.is_empty() {
        bail!("the dataset has no training examples");
    }
    let plugin = ctx.runner.host.get(&id)?;
    let base = warm_start_base(ctx, &id).await?;
    let base_model = base.as_ref().map(|b| b.0);
    let base_intents = base.as_ref().map(|b| b.2.clone()).unwrap_or_default();
    let host = ctx.runner.host.clone();
    let spec = job_spec(ctx);
    let (pid, config) = (id.clone(), Value::Object(step.with.clone()).to_string());
    let out = tokio::task::spawn_blocking(move || {
        let mut job = host.trainer(&pid, spec)?;
        match base {
            Some((_, bytes, _)) => job.train_from(&config, &bytes, &train, &validation),
            None => job.train(&config, &train, &validation),
        }
    })
    .await
    .context("the training job panicked")??;
    let store = &ctx.runner.store;
    store
        .add_metrics(ctx.run, &step.id, &out.progress_metrics)
        .await?;
    let finals: Vec<(String, f64, u32)> = out
        .metrics
        .iter()
        .map(|(n, v)| (n.clone(), *v, 0))
        .collect();
    store.add_metrics(ctx.run, &step.id, &finals).await?;
    // A warm-started model also knows its base's intents.
    let intents: Vec<String> = data
        .rows
        .iter()
        .map(|r| r.intent.clone())
        .chain(base_intents)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let artifacts = ctx.runner.artifacts.clone();
    // A metric that is not a number (NaN, ∞) says nothing and could not be
    // stored as one.
    let metrics = out
        .metrics
        .iter()
        .filter(|(_, v)| v.is_finite())
        .cloned()
        .collect();
    let (bytes, artifact) = tokio::task::spawn_blocking(move || {
        let hash = artifacts.put(&out.model)?.to_string();
        Ok::<_, anyhow::Error>((out.model, hash))
    })
    .await
    .context("storing the model panicked")??;
    Ok(Output::Model(Arc::new(Trained {
        out: ModelOutput {
            artifact,
            model_bytes: bytes.len(),
            plugin: id,
            plugin_version: plugin.manifest.version.clone(),
            plugin_hash: plugin.wasm_sha256.clone(),
            config_hash: json_sha256(&Value::Object(step.with.clone())),
            dataset_version: data.out.dataset_version,
            intents,
            base_model,
            metrics,
        },
        bytes,
        dataset: data,
    })))
}

/// The registered model a warm start continues from: its id, bytes and
/// intents. Before the first one exists, training starts fresh.
async fn warm_start_base(
    ctx: &StepCtx<'_>,
    plugin: &str,
) -> Result<Option<(i64, Vec<u8>, Vec<String>)>> {
    let Some(selector) = &ctx.step.warm_start else {
        return Ok(None);
    };
    let model_ref: ModelRef = selector.parse().map_err(|e: String| anyhow!(e))?;
    match ctx.runner.store.find_model(&model_ref).await? {
        None => {
            ctx.reporter.step_note(
                &ctx.step.id,
                &format!("no model `{selector}` yet; training from scratch"),
            );
            Ok(None)
        }
        Some(m) if m.trainer_plugin != plugin => bail!(
            "cannot continue from model {} ({} v{}): it was trained by `{}`, not `{plugin}`",
            m.id,
            m.name,
            m.version,
            m.trainer_plugin
        ),
        Some(m) => {
            let bytes = ctx
                .runner
                .artifacts
                .get(&m.artifact_hash)
                .with_context(|| format!("model {} ({} v{})", m.id, m.name, m.version))?;
            let known: Vec<String> = serde_json::from_str(&m.intents).unwrap_or_default();
            Ok(Some((m.id, bytes, known)))
        }
    }
}

/// Train `plugin` with parameters `config` on `train` (with `validation`)
/// in one sandboxed job, and predict `held` with the model: `(intent,
/// confidence)` per text. Cross-validation and benchmarks train this way.
pub async fn train_and_predict(
    host: Arc<PluginHost>,
    plugin: &str,
    config: &Value,
    train: &[Example],
    validation: &[Example],
    held: Vec<String>,
    spec: JobSpec,
) -> Result<Vec<(String, f32)>> {
    let train: Vec<_> = train.iter().map(to_guest).collect();
    let validation: Vec<_> = validation.iter().map(to_guest).collect();
    let (plugin, config) = (plugin.to_owned(), config.to_string());
    tokio::task::spawn_blocking(move || -> Result<Vec<(String, f32)>> {
        let mut job = host.trainer(&plugin, spec)?;
        let trained = job.train(&config, &train, &validation)?;
        let handle = job.load_model(&trained.model)?;
        let preds = job.predict_all(handle, &held)?;
        Ok(preds
            .into_iter()
            .map(|p| (p.intent, p.confidence))
            .collect())
    })
    .await
    .context("the training job panicked")?
}
