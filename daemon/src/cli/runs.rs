//! `coach runs list|show|logs`: from a running daemon when `COACH_URL` (or
//! `--url`) is set, else straight from the store.

use super::client::{Client, Remote, follow};
use crate::app::{App, Mode};
use crate::cli::out;
use crate::config::Config;
use crate::core::ids::RunId;
use crate::core::state::RunState;
use crate::store::queue::RunFilter;
use anyhow::{Result, anyhow, bail};
use serde_json::Value;
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Training runs, newest first.
    List {
        #[arg(long, default_value_t = 20)]
        limit: u64,
        /// Only runs of this workflow.
        #[arg(long)]
        workflow: Option<String>,
        /// Only runs in this state (queued, running, succeeded, failed,
        /// cancelled).
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// One run with its steps and metrics.
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// A run's log lines; `--follow` streams them (and its steps) until the
    /// run finishes.
    Logs {
        id: i64,
        #[arg(long, short)]
        follow: bool,
        #[command(flatten)]
        remote: Remote,
    },
}

pub async fn run(config: Config, cmd: Command) -> Result<ExitCode> {
    match cmd {
        Command::List {
            limit,
            workflow,
            state,
            json,
            remote,
        } => {
            let runs: Vec<Value> = if remote.url.is_some() {
                let mut q = format!("/api/v1/runs?limit={limit}");
                if let Some(w) = &workflow {
                    q.push_str(&format!("&workflow={w}"));
                }
                if let Some(s) = &state {
                    q.push_str(&format!("&state={s}"));
                }
                let v = Client::new(&remote, &config).get(&q)?;
                v["runs"].as_array().cloned().unwrap_or_default()
            } else {
                let state = state
                    .as_deref()
                    .map(str::parse::<RunState>)
                    .transpose()
                    .map_err(|e| anyhow!(e))?;
                let app = App::open(config, Mode::Command).await?;
                let runs = app
                    .service
                    .records()
                    .runs(&RunFilter {
                        workflow,
                        state,
                        before: None,
                        limit,
                    })
                    .await?;
                runs.iter()
                    .map(serde_json::to_value)
                    .collect::<Result<_, _>>()?
            };
            if json {
                out!("{}", serde_json::to_string_pretty(&runs)?);
                return Ok(ExitCode::SUCCESS);
            }
            if runs.is_empty() {
                out!("no runs yet; try `coach run workflows/quickstart.toml`");
            }
            for r in &runs {
                out!(
                    "{:>4}  {:<24} {:<10} {:<8} {:>8}  {}",
                    r["id"],
                    r["workflow"].as_str().unwrap_or(""),
                    r["state"].as_str().unwrap_or(""),
                    r["trigger"].as_str().unwrap_or(""),
                    took(&r["started_at"], &r["finished_at"], 1),
                    r["started_at"]
                        .as_str()
                        .and_then(|t| t.get(..19))
                        .unwrap_or("")
                        .replace('T', " ")
                );
            }
        }
        Command::Show { id, json, remote } => {
            let v = if remote.url.is_some() {
                Client::new(&remote, &config).get(&format!("/api/v1/runs/{id}"))?
            } else {
                let app = App::open(config, Mode::Command).await?;
                let Some(run) = app.service.records().run(RunId(id)).await? else {
                    bail!("no run {id}");
                };
                serde_json::to_value(run)?
            };
            if json {
                out!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            show(&v)?;
        }
        Command::Logs {
            id,
            follow: f,
            remote,
        } => {
            let lines: Vec<Value> = if remote.url.is_some() || f {
                let c = Client::new(&remote, &config);
                let v = c.get(&format!("/api/v1/runs/{id}/logs"))?;
                v["lines"].as_array().cloned().unwrap_or_default()
            } else {
                let app = App::open(config.clone(), Mode::Command).await?;
                let lines = app.service.records().logs(RunId(id), 0, 100_000).await?;
                lines
                    .iter()
                    .map(serde_json::to_value)
                    .collect::<Result<_, _>>()?
            };
            for l in &lines {
                out!(
                    "{} [{}] {}: {}",
                    l["at"].as_str().and_then(|t| t.get(11..19)).unwrap_or(""),
                    l["level"].as_str().unwrap_or(""),
                    l["step"].as_str().unwrap_or("-"),
                    l["message"].as_str().unwrap_or("")
                );
            }
            if f {
                let state = follow(&Client::new(&remote, &config), id)?;
                if state != "succeeded" {
                    return Ok(ExitCode::from(1));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Seconds between two RFC 3339 times, or `-`.
fn took(start: &Value, end: &Value, decimals: usize) -> String {
    let parse = |v: &Value| {
        v.as_str()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
    };
    match (parse(start), parse(end)) {
        (Some(s), Some(e)) => format!(
            "{:.*}s",
            decimals,
            (e - s).num_milliseconds() as f64 / 1000.0
        ),
        _ => "-".into(),
    }
}

fn show(v: &Value) -> Result<(), crate::cli::OutputFailed> {
    let s =
        |v: &Value, k: &str| crate::core::text::printable(v[k].as_str().unwrap_or("")).into_owned();
    out!(
        "run {} — workflow `{}` ({}), {}",
        v["id"],
        s(v, "workflow"),
        s(v, "workflow_file"),
        s(v, "state")
    );
    out!(
        "  workflow version {}, trigger {}{}",
        s(v, "version"),
        s(v, "trigger"),
        match v["resumes"].as_i64() {
            Some(n) if n > 0 => format!(", resumed {n} time(s)"),
            _ => String::new(),
        }
    );
    if let Some(e) = v["error"].as_str() {
        out!("  error: {e}");
    }
    for st in v["steps"].as_array().into_iter().flatten() {
        out!(
            "  step {:<14} {:<16} attempt {} {:<11} {}",
            s(st, "step"),
            s(st, "action"),
            st["attempt"],
            s(st, "state"),
            took(&st["started_at"], &st["finished_at"], 2)
        );
        if let Some(e) = st["error"].as_str() {
            out!("      {e}");
        }
    }
    let finals: Vec<&Value> = v["metrics"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["epoch"] == 0)
        .collect();
    if !finals.is_empty() {
        out!("  metrics");
        for m in finals {
            out!(
                "    {:<10} {:<28} {:.4}",
                s(m, "step"),
                s(m, "name"),
                m["value"].as_f64().unwrap_or(f64::NAN)
            );
        }
    }
    Ok(())
}
