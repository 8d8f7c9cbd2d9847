//! Asking a registered model: load its artifact (verified against its
//! hash) into a fresh sandbox of the plugin that trained it, and predict.

use crate::plugin::bindings::Prediction;
use crate::plugin::{JobSpec, PluginFailure, PluginHost};
use crate::registry::{Artifacts, PROCESS_TRAINER};
use crate::store::ModelRow;
use anyhow::{Context, Result, bail};
use std::sync::Arc;

/// Load a registered model's artifact (verified) and predict `texts`.
pub async fn predict(
    host: Arc<PluginHost>,
    artifacts: &Artifacts,
    model: &ModelRow,
    texts: Vec<String>,
) -> Result<Vec<Prediction>> {
    if model.trainer_plugin == PROCESS_TRAINER {
        bail!(
            "model {} ({} v{}) is the artifacts of a process step, not a model Coach can load; `coach models show {}` lists its files",
            model.id,
            model.name,
            model.version,
            model.id
        );
    }
    let bytes = artifacts
        .get(&model.artifact_hash)
        .with_context(|| format!("model {} ({} v{})", model.id, model.name, model.version))?;
    let plugin = host.get(&model.trainer_plugin)?;
    if plugin.wasm_sha256 != model.plugin_hash {
        tracing::warn!(model = model.id, plugin = %model.trainer_plugin, "the model was trained by a different build of its plugin; loading it anyway");
    }
    let plugin_id = model.trainer_plugin.clone();
    let preds = tokio::task::spawn_blocking(move || -> Result<_, PluginFailure> {
        let mut job = host.trainer(
            &plugin_id,
            JobSpec {
                run: String::new(),
                step: "predict".into(),
                ..Default::default()
            },
        )?;
        let handle = job.load_model(&bytes)?;
        job.predict(handle, &texts)
    })
    .await
    .context("the prediction job panicked")??;
    Ok(preds)
}
