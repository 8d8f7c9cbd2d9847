//! Registered models: the one document a model is shown as
//! ([`ModelView`]: the API, `coach models --json`, scripts and trigger
//! conditions all read it), and registering a step's output as the next
//! version of a model name, with its lineage.

use super::artifacts::Artifacts;
use crate::core::evaluation::Report;
use crate::core::hash::{json_sha256, sha256_hex};
use crate::core::ids::RunId;
use crate::core::output::{ArtifactFile, ModelOutput, ProcessOutput};
use crate::store::{ModelRow, NewModel, Store};
use anyhow::{Result, bail};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};

/// `trainer.plugin` of a model registered from a process step's artifacts.
pub const PROCESS_TRAINER: &str = "process";

/// A registered model as every face shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelView {
    pub id: i64,
    pub name: String,
    pub version: i32,
    /// The run that registered it.
    pub run: i64,
    pub trainer: TrainerView,
    pub artifact: ArtifactView,
    pub lineage: Lineage,
    /// Evaluation and training metrics (fractions), by name.
    pub metrics: Value,
    /// The intents the model knows.
    pub intents: Vec<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrainerView {
    /// The trainer plugin's id, or `process`.
    pub plugin: String,
    pub version: String,
    /// SHA-256 of the trainer component (of the command, for `process`).
    pub wasm_sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArtifactView {
    pub sha256: String,
    pub bytes: i64,
}

/// Where a model came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lineage {
    pub run: i64,
    /// The dataset snapshot it was trained on, if any.
    pub dataset_version: Option<i64>,
    pub data_hash: String,
    pub config_hash: String,
    pub plugin_hash: String,
    /// The model training continued from (warm start).
    pub base_model: Option<i64>,
}

impl From<&ModelRow> for ModelView {
    fn from(m: &ModelRow) -> ModelView {
        ModelView {
            id: m.id,
            name: m.name.clone(),
            version: m.version,
            run: m.run_id,
            trainer: TrainerView {
                plugin: m.trainer_plugin.clone(),
                version: m.trainer_version.clone(),
                wasm_sha256: m.plugin_hash.clone(),
            },
            artifact: ArtifactView {
                sha256: m.artifact_hash.clone(),
                bytes: m.artifact_size,
            },
            lineage: Lineage {
                run: m.run_id,
                dataset_version: m.dataset_version_id,
                data_hash: m.data_hash.clone(),
                config_hash: m.config_hash.clone(),
                plugin_hash: m.plugin_hash.clone(),
                base_model: m.base_model_id,
            },
            // Written by `register` as a JSON object; an unreadable value
            // shows as null rather than failing the whole listing.
            metrics: serde_json::from_str(&m.metrics).unwrap_or(Value::Null),
            intents: serde_json::from_str(&m.intents).unwrap_or_default(),
            created_at: m.created_at,
        }
    }
}

impl ModelView {
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// A metric by name, if it is a number.
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.metrics.get(name).and_then(Value::as_f64)
    }

    /// Whether Coach can load it to predict (a process step's files
    /// cannot be).
    pub fn loadable(&self) -> bool {
        self.trainer.plugin != PROCESS_TRAINER
    }
}

/// The metrics a registered model carries: its evaluation's (with the
/// split it was evaluated on) and the trainer's own, as `train.<name>`.
pub fn model_metrics(evaluation: Option<&Report>, trained: &ModelOutput) -> Map<String, Value> {
    let mut metrics = Map::new();
    if let Some(r) = evaluation {
        metrics.insert("evaluated_on".into(), json!(r.split));
        for (k, v) in r.metrics() {
            metrics.insert(k, json!(v));
        }
    }
    for (k, v) in &trained.metrics {
        metrics.insert(format!("train.{k}"), json!(v));
    }
    metrics
}

/// Register what a trainer step produced as the next version of `name`.
/// A run resumed after a crash between registering and recording the step
/// finds the version it registered instead of registering it twice.
pub async fn register_trained(
    store: &Store,
    run: RunId,
    name: &str,
    trained: &ModelOutput,
    data_hash: &str,
    evaluation: Option<&Report>,
) -> Result<ModelRow> {
    if let Some(m) = store.model_of_run(run).await?
        && m.artifact_hash == trained.artifact
    {
        return Ok(m);
    }
    store
        .register_model(NewModel {
            name: name.to_owned(),
            run_id: run,
            trainer_plugin: trained.plugin.clone(),
            trainer_version: trained.plugin_version.clone(),
            plugin_hash: trained.plugin_hash.clone(),
            artifact_hash: trained.artifact.clone(),
            artifact_size: trained.model_bytes as i64,
            dataset_version_id: Some(trained.dataset_version),
            data_hash: data_hash.to_owned(),
            config_hash: trained.config_hash.clone(),
            metrics: Value::Object(model_metrics(evaluation, trained)),
            intents: trained.intents.clone(),
            base_model_id: trained.base_model,
        })
        .await
}

/// What ran to produce a process step's artifacts, for its lineage.
#[derive(Debug, Clone)]
pub struct ProcessLineage<'a> {
    /// The command, as the workflow gives it.
    pub argv: &'a [String],
    pub env: &'a std::collections::BTreeMap<String, String>,
    /// The step's resources, as a JSON document with fixed keys.
    pub resources: Value,
    /// The dataset snapshot before the process, if any: (id, content hash).
    pub dataset: Option<(i64, String)>,
}

/// Register a process step's artifacts as a model version: a manifest of
/// its files (paths relative to their common folder, content hashes) is
/// the model's artifact, its final metrics the model's metrics, its command
/// and the dataset before it (if any) the lineage.
pub async fn register_process(
    store: &Store,
    artifacts: &Artifacts,
    run: RunId,
    name: &str,
    step: &str,
    out: &ProcessOutput,
    lineage: ProcessLineage<'_>,
) -> Result<ModelRow> {
    if out.artifacts.is_empty() {
        bail!(
            "step `{step}` named no artifact to register; its command must print {{\"artifact\": \"path\"}}"
        );
    }
    let manifest = process_manifest(&out.artifacts);
    let artifact_hash = artifacts.put(manifest.to_string().as_bytes())?.to_string();
    if let Some(m) = store.model_of_run(run).await?
        && m.artifact_hash == artifact_hash
    {
        return Ok(m);
    }
    let command = json!({"command": lineage.argv, "env": lineage.env});
    let program = lineage
        .argv
        .first()
        .map(|a| {
            Path::new(a)
                .file_name()
                .map_or(a.clone(), |f| f.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    let (dataset_version_id, data_hash) = match lineage.dataset {
        Some((id, hash)) => (Some(id), hash),
        None => (None, String::new()),
    };
    store
        .register_model(NewModel {
            name: name.to_owned(),
            run_id: run,
            trainer_plugin: PROCESS_TRAINER.into(),
            trainer_version: program,
            plugin_hash: sha256_hex(command.to_string().as_bytes()),
            artifact_hash,
            artifact_size: out.artifacts.iter().map(|f| f.bytes as i64).sum(),
            dataset_version_id,
            data_hash,
            config_hash: json_sha256(&json!({"command": command, "resources": lineage.resources})),
            metrics: json!(out.final_metrics),
            intents: Vec::new(),
            base_model_id: None,
        })
        .await
}

/// `{"kind": "process", "files": [{path, sha256, bytes}]}` with paths
/// relative to the files' common folder.
fn process_manifest(files: &[ArtifactFile]) -> Value {
    let paths: Vec<PathBuf> = files.iter().map(|f| PathBuf::from(&f.path)).collect();
    let root = common_folder(&paths);
    let listed: Vec<Value> = files
        .iter()
        .map(|f| {
            let path = Path::new(&f.path);
            let rel = path.strip_prefix(&root).unwrap_or(path);
            json!({"path": rel.display().to_string(), "sha256": f.sha256, "bytes": f.bytes})
        })
        .collect();
    json!({"kind": "process", "files": listed})
}

/// The deepest folder holding every path (a single file: its folder).
fn common_folder(paths: &[PathBuf]) -> PathBuf {
    let Some(first) = paths.first() else {
        return PathBuf::new();
    };
    let mut root = first.parent().map(Path::to_path_buf).unwrap_or_default();
    for p in &paths[1..] {
        while !p.starts_with(&root) {
            if !root.pop() {
                return PathBuf::new();
            }
        }
    }
    root
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_names_files_from_their_common_folder() {
        let f = |p: &str| ArtifactFile {
            path: p.into(),
            sha256: "ab".repeat(32),
            bytes: 3,
        };
        let m = process_manifest(&[f("/w/run-1/out/model.bin"), f("/w/run-1/out/tok/vocab.txt")]);
        let paths: Vec<&str> = m["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["path"].as_str().unwrap())
            .collect();
        assert_eq!(paths, ["model.bin", "tok/vocab.txt"]);
    }
}
