//! `coach models list|show`.

use crate::app::{App, Mode};
use crate::cli::out;
use crate::config::Config;
use crate::core::ids::{ModelRef, short};
use anyhow::{Result, anyhow, bail};
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

pub async fn run(config: Config, cmd: Command) -> Result<ExitCode> {
    let app = App::open(config, Mode::Command).await?;
    let records = app.service.records();
    match cmd {
        Command::List { limit, json } => {
            let models = records.models(limit).await?;
            if json {
                out!("{}", serde_json::to_string_pretty(&models)?);
                return Ok(ExitCode::SUCCESS);
            }
            if models.is_empty() {
                out!("no models registered yet; run a workflow with a `register` step");
                return Ok(ExitCode::SUCCESS);
            }
            out!(
                "{:>4}  {:<24} {:>4}  {:<16} {:>9} {:>9}  created",
                "id",
                "name",
                "ver",
                "trainer",
                "accuracy",
                "in-scope"
            );
            for m in &models {
                let get = |k: &str| m.metric(k).map(super::pct).unwrap_or_else(|| "-".into());
                out!(
                    "{:>4}  {:<24} {:>4}  {:<16} {:>9} {:>9}  {}",
                    m.id,
                    m.name,
                    m.version,
                    m.trainer.plugin,
                    get("accuracy"),
                    get("in_scope_accuracy"),
                    m.created_at.format("%Y-%m-%d %H:%M:%S")
                );
            }
        }
        Command::Show { model, json } => {
            let r: ModelRef = model.parse().map_err(|e: String| anyhow!(e))?;
            let Some(m) = records.model(&r).await? else {
                bail!("no model `{model}`");
            };
            if json {
                out!("{}", serde_json::to_string_pretty(&m)?);
            } else {
                out!("model {} — {} v{}", m.id, m.name, m.version);
                out!(
                    "  trained by   {} {} (wasm {})",
                    m.trainer.plugin,
                    m.trainer.version,
                    short(&m.trainer.wasm_sha256, 16)
                );
                out!("  run          {}", m.run);
                match m.lineage.dataset_version {
                    Some(d) => out!(
                        "  data         dataset version {d} ({})",
                        short(&m.lineage.data_hash, 16)
                    ),
                    None => out!("  data         no dataset snapshot"),
                }
                out!(
                    "  artifact     {} ({} bytes)",
                    m.artifact.sha256,
                    m.artifact.bytes
                );
                out!("  config       {}", short(&m.lineage.config_hash, 16));
                if let Some(b) = m.lineage.base_model {
                    out!("  warm start   from model {b}");
                }
                out!("  created      {}", m.created_at.to_rfc3339());
                if let Some(obj) = m.metrics.as_object() {
                    out!("  metrics");
                    for (k, val) in obj {
                        out!("    {k:<32} {val}");
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
