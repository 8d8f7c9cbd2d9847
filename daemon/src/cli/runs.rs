//! `coach runs list|show`.

use crate::Coach;
use crate::config::Config;
use anyhow::{Result, bail};
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Training runs, newest first.
    List {
        #[arg(long, default_value_t = 20)]
        limit: u64,
        #[arg(long)]
        json: bool,
    },
    /// One run with its steps and metrics.
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(config: Config, cmd: Command) -> Result<ExitCode> {
    let coach = Coach::open(config).await?;
    match cmd {
        Command::List { limit, json } => {
            let runs = coach.store.runs(limit).await?;
            if json {
                let v: Vec<_> = runs.iter().map(|r| serde_json::json!({"id": r.id, "workflow": r.workflow, "state": r.state, "error": r.error, "workflow_sha256": r.workflow_hash, "started_at": r.started_at.to_rfc3339(), "finished_at": r.finished_at.map(|t| t.to_rfc3339())})).collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            if runs.is_empty() {
                println!("no runs yet; try `coach run workflows/quickstart.toml`");
            }
            for r in &runs {
                let took = r
                    .finished_at
                    .map(|f| {
                        format!(
                            "{:.1}s",
                            (f - r.started_at).num_milliseconds() as f64 / 1000.0
                        )
                    })
                    .unwrap_or_else(|| "-".into());
                println!(
                    "{:>4}  {:<24} {:<10} {:>8}  {}",
                    r.id,
                    r.workflow,
                    r.state,
                    took,
                    r.started_at.format("%Y-%m-%d %H:%M:%S")
                );
            }
        }
        Command::Show { id, json } => {
            let Some((r, steps, metrics)) = coach.store.run(id).await? else {
                bail!("no run {id}");
            };
            if json {
                let v = serde_json::json!({
                    "id": r.id, "workflow": r.workflow, "file": r.workflow_file, "workflow_sha256": r.workflow_hash, "state": r.state, "error": r.error,
                    "steps": steps.iter().map(|s| serde_json::json!({"step": s.step_id, "action": s.action, "attempt": s.attempt, "state": s.state, "error": s.error,
                        "output": s.output.as_deref().and_then(|o| serde_json::from_str::<serde_json::Value>(o).ok())})).collect::<Vec<_>>(),
                    "metrics": metrics.iter().map(|m| serde_json::json!({"step": m.step_id, "name": m.name, "value": m.value, "epoch": m.step})).collect::<Vec<_>>(),
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "run {} — workflow `{}` ({}), {}",
                r.id, r.workflow, r.workflow_file, r.state
            );
            println!("  workflow version {}", r.workflow_hash);
            if let Some(e) = &r.error {
                println!("  error: {e}");
            }
            for s in &steps {
                let took = s
                    .finished_at
                    .map(|f| {
                        format!(
                            "{:.2}s",
                            (f - s.started_at).num_milliseconds() as f64 / 1000.0
                        )
                    })
                    .unwrap_or_else(|| "-".into());
                println!(
                    "  step {:<14} {:<16} attempt {} {:<10} {took}",
                    s.step_id, s.action, s.attempt, s.state
                );
                if let Some(e) = &s.error {
                    println!("      {e}");
                }
            }
            let finals: Vec<_> = metrics.iter().filter(|m| m.step == 0).collect();
            if !finals.is_empty() {
                println!("  metrics");
                for m in finals {
                    println!("    {:<10} {:<28} {:.4}", m.step_id, m.name, m.value);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
