//! `coach models list|show`.

use crate::Coach;
use crate::config::Config;
use anyhow::{Result, bail};
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Registered models, newest first.
    List {
        #[arg(long, default_value_t = 20)]
        limit: u64,
        #[arg(long)]
        json: bool,
    },
    /// One model: metrics and lineage. MODEL: an id, a name (latest
    /// version), `name:version`, or `latest`.
    Show {
        model: String,
        #[arg(long)]
        json: bool,
    },
}

pub fn model_json(m: &crate::store::ModelRow) -> serde_json::Value {
    serde_json::json!({
        "id": m.id, "name": m.name, "version": m.version, "run": m.run_id,
        "trainer": {"plugin": m.trainer_plugin, "version": m.trainer_version, "wasm_sha256": m.plugin_hash},
        "artifact": {"sha256": m.artifact_hash, "bytes": m.artifact_size},
        "data": {"dataset_version": m.dataset_version_id, "sha256": m.data_hash},
        "config_sha256": m.config_hash,
        "base_model": m.base_model_id,
        "metrics": serde_json::from_str::<serde_json::Value>(&m.metrics).unwrap_or_default(),
        "intents": serde_json::from_str::<serde_json::Value>(&m.intents).unwrap_or_default(),
        "created_at": m.created_at.to_rfc3339(),
    })
}

pub async fn run(config: Config, cmd: Command) -> Result<ExitCode> {
    let coach = Coach::open(config).await?;
    match cmd {
        Command::List { limit, json } => {
            let models = coach.store.models(limit).await?;
            if json {
                let v: Vec<_> = models.iter().map(model_json).collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            if models.is_empty() {
                println!("no models registered yet; run a workflow with a `register` step");
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:>4}  {:<24} {:>4}  {:<16} {:>9} {:>9}  created",
                "id", "name", "ver", "trainer", "accuracy", "in-scope"
            );
            for m in &models {
                let metrics: serde_json::Value =
                    serde_json::from_str(&m.metrics).unwrap_or_default();
                let get = |k: &str| {
                    metrics
                        .get(k)
                        .and_then(|v| v.as_f64())
                        .map(super::pct)
                        .unwrap_or_else(|| "-".into())
                };
                println!(
                    "{:>4}  {:<24} {:>4}  {:<16} {:>9} {:>9}  {}",
                    m.id,
                    m.name,
                    m.version,
                    m.trainer_plugin,
                    get("accuracy"),
                    get("in_scope_accuracy"),
                    m.created_at.format("%Y-%m-%d %H:%M:%S")
                );
            }
        }
        Command::Show { model, json } => {
            let Some(m) = coach.store.find_model(&model).await? else {
                bail!("no model `{model}`");
            };
            let v = model_json(&m);
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("model {} — {} v{}", m.id, m.name, m.version);
                println!(
                    "  trained by   {} {} (wasm {})",
                    m.trainer_plugin,
                    m.trainer_version,
                    &m.plugin_hash[..16]
                );
                println!("  run          {}", m.run_id);
                println!(
                    "  data         dataset version {} ({})",
                    m.dataset_version_id,
                    &m.data_hash[..16]
                );
                println!(
                    "  artifact     {} ({} bytes)",
                    m.artifact_hash, m.artifact_size
                );
                println!("  config       {}", &m.config_hash[..16]);
                if let Some(b) = m.base_model_id {
                    println!("  warm start   from model {b}");
                }
                println!("  created      {}", m.created_at.to_rfc3339());
                if let Some(obj) = v["metrics"].as_object() {
                    println!("  metrics");
                    for (k, val) in obj {
                        println!("    {k:<32} {val}");
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
