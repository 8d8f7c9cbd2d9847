//! Commands against a running daemon: `coach status`, `coach trigger`,
//! `coach cancel`.

use super::client::{Client, Remote, follow};
use crate::cli::out;
use crate::config::Config;
use anyhow::Result;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub remote: Remote,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct TriggerArgs {
    /// The workflow's name.
    pub workflow: String,
    /// Follow the run live until it finishes; exit non-zero unless it
    /// succeeds.
    #[arg(long, short)]
    pub follow: bool,
    #[command(flatten)]
    pub remote: Remote,
}

#[derive(Debug, clap::Args)]
pub struct CancelArgs {
    pub run: i64,
    #[command(flatten)]
    pub remote: Remote,
}

pub fn status(config: &Config, a: StatusArgs) -> Result<ExitCode> {
    let c = Client::new(&a.remote, config);
    let v = c.get("/api/v1/status")?;
    if a.json {
        out!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    out!(
        "coach daemon {}, {}, up {} s",
        v["version"].as_str().unwrap_or("?"),
        if v["ready"] == true {
            "ready"
        } else {
            "not ready"
        },
        v["uptime_seconds"]
    );
    let runs = v["runs"].as_object().cloned().unwrap_or_default();
    let counts: Vec<String> = runs.iter().map(|(k, n)| format!("{k} {n}")).collect();
    out!(
        "runs: {}",
        if counts.is_empty() {
            "none".into()
        } else {
            counts.join(", ")
        }
    );
    for r in v["running"].as_array().into_iter().flatten() {
        out!(
            "  running: run {} ({})",
            r["run"],
            r["workflow"].as_str().unwrap_or("")
        );
    }
    out!(
        "workflows: {} ({} invalid); plugins: {}",
        v["workflows"]["total"],
        v["workflows"]["invalid"],
        v["plugins"]["total"]
    );
    for (folder, why) in v["plugins"]["problems"].as_object().into_iter().flatten() {
        out!("  plugin problem: {folder}: {}", why.as_str().unwrap_or(""));
    }
    if let Some(p) = v["config_problem"].as_str() {
        out!("  config problem: {p}");
    }
    let workflows = c.get("/api/v1/workflows")?;
    for w in workflows["workflows"].as_array().into_iter().flatten() {
        if let Some(e) = w["error"].as_str() {
            out!(
                "workflow `{}` is not valid:\n{e}",
                w["name"].as_str().unwrap_or("")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn trigger(config: &Config, a: TriggerArgs) -> Result<ExitCode> {
    let c = Client::new(&a.remote, config);
    let v = c.post(&format!("/api/v1/workflows/{}/runs", a.workflow))?;
    let id = v["run"]["id"].as_i64().unwrap_or(0);
    out!("queued run {id} of {}", a.workflow);
    if !a.follow {
        return Ok(ExitCode::SUCCESS);
    }
    let state = follow(&c, id)?;
    Ok(if state == "succeeded" {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub fn cancel(config: &Config, a: CancelArgs) -> Result<ExitCode> {
    let c = Client::new(&a.remote, config);
    let v = c.post(&format!("/api/v1/runs/{}/cancel", a.run))?;
    out!("run {}: {}", a.run, v["state"].as_str().unwrap_or("?"));
    Ok(ExitCode::SUCCESS)
}
