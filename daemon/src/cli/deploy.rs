//! `coach deploy`, `coach rollback`, `coach deployments list|history`:
//! through a running daemon when `COACH_URL` (or `--url`) is set, else on
//! the store directly.

use super::client::{Client, Remote};
use crate::app::{App, Mode};
use crate::cli::out;
use crate::config::Config;
use crate::core::ids::{EnvironmentName, ModelName, ModelRef};
use crate::pipeline::deploy::Request;
use crate::store::deployments::How;
use anyhow::{Result, anyhow};
use serde_json::{Value, json};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    /// The model: an id, a name (its latest version) or `name:version`.
    pub model: String,
    /// The environment: `staging`, `production`, or any name.
    #[arg(long, default_value = "production")]
    pub env: String,
    /// Why, for the history.
    #[arg(long)]
    pub reason: Option<String>,
    /// `direct`: all traffic moves once the version is healthy. `canary`:
    /// it moves in steps, each guarded, and a breach rolls back.
    #[arg(long, default_value = "direct", value_parser = ["direct", "canary"])]
    pub strategy: String,
    /// A canary's steps, in percent of traffic (the last 100).
    #[arg(long, value_delimiter = ',')]
    pub steps: Option<Vec<f64>>,
    /// Requests the new version answers at each canary step before the
    /// next.
    #[arg(long)]
    pub min_requests: Option<u64>,
    /// Shortest time at each canary step, such as `5m`.
    #[arg(long)]
    pub hold: Option<String>,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub remote: Remote,
}

#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    /// The model name.
    pub model: String,
    #[arg(long, default_value = "production")]
    pub env: String,
    /// The version to serve. Default: the one served before the current
    /// one was deployed.
    #[arg(long)]
    pub to: Option<i32>,
    #[arg(long)]
    pub reason: Option<String>,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub remote: Remote,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Which version each environment serves (of one model when named).
    List {
        model: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Every change of a model's deployments, newest first.
    History {
        model: String,
        /// Only this environment.
        #[arg(long)]
        env: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u64,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
}

/// Who a change made on this machine's store is recorded as.
fn local_actor() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "someone".into());
    format!(
        "{user}@{} (command line)",
        crate::service::lifecycle::host_name()
    )
}

fn env(s: &str) -> Result<EnvironmentName> {
    EnvironmentName::try_from(s).map_err(|e| anyhow!(e))
}

fn name(s: &str) -> Result<ModelName> {
    ModelName::try_from(s).map_err(|e| anyhow!(e))
}

/// The rows to print as a table; `None` when they were printed as JSON,
/// or there are none (then `empty` says so).
fn to_list(rows: Value, json: bool, empty: &str) -> Result<Option<Vec<Value>>> {
    if json {
        out!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(None);
    }
    let rows = rows.as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        out!("{empty}");
        return Ok(None);
    }
    Ok(Some(rows))
}

/// A body without the options not given (the API takes a field or its
/// absence, not `null`).
fn without_nulls(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.retain(|_, x| !x.is_null());
    }
    v
}

fn print_outcome(v: &Value, json: bool) -> Result<()> {
    if json {
        out!("{}", serde_json::to_string_pretty(v)?);
        return Ok(());
    }
    let (model, environment, version) = (
        v["model"].as_str().unwrap_or(""),
        v["environment"].as_str().unwrap_or(""),
        &v["version"],
    );
    if v["changed"] != true {
        out!("{environment} already serves {model} v{version}; nothing changed");
        return Ok(());
    }
    let from = match v["history"]["from"]["version"].as_i64() {
        Some(f) => format!("v{f}"),
        None => "nothing".into(),
    };
    out!(
        "{environment}: {model} {from} → v{version} ({}, health check {}/{} probes right)",
        v["history"]["action"].as_str().unwrap_or(""),
        v["health"]["correct"],
        v["health"]["probes"]
    );
    Ok(())
}

pub async fn deploy(config: Config, a: DeployArgs) -> Result<ExitCode> {
    let environment = env(&a.env)?;
    if a.strategy == "canary" {
        return canary(config, a, environment).await;
    }
    if a.steps.is_some() || a.min_requests.is_some() || a.hold.is_some() {
        return Err(anyhow!(
            "--steps, --min-requests and --hold set a canary; add --strategy canary"
        ));
    }
    let outcome = if a.remote.url.is_some() {
        Client::new(&a.remote, &config).post_json(
            "/api/v1/deployments",
            &without_nulls(
                json!({"model": a.model, "environment": environment.as_str(), "reason": a.reason}),
            ),
        )?
    } else {
        let model: ModelRef = a.model.parse().map_err(|e: String| anyhow!(e))?;
        let app = App::open(config, Mode::Command).await?;
        let req = Request {
            how: How::Manual,
            actor: local_actor(),
            reason: a.reason,
            run: None,
        };
        serde_json::to_value(app.service.deploy(&model, &environment, req).await?)?
    };
    print_outcome(&outcome, a.json)?;
    Ok(ExitCode::SUCCESS)
}

async fn canary(config: Config, a: DeployArgs, environment: EnvironmentName) -> Result<ExitCode> {
    let settings = without_nulls(json!({
        "steps": a.steps,
        "min_requests": a.min_requests,
        "hold": a.hold,
    }));
    let v = if a.remote.url.is_some() {
        Client::new(&a.remote, &config).post_json(
            "/api/v1/deployments",
            &without_nulls(json!({
                "model": a.model,
                "environment": environment.as_str(),
                "reason": a.reason,
                "strategy": "canary",
                "canary": settings,
            })),
        )?
    } else {
        let model: ModelRef = a.model.parse().map_err(|e: String| anyhow!(e))?;
        let canary =
            crate::workflow::params::canary_params(Some(&settings)).map_err(|e| anyhow!(e))?;
        let app = App::open(config, Mode::Command).await?;
        serde_json::to_value(
            app.service
                .canary(&model, &environment, canary, local_actor())
                .await?,
        )?
    };
    if a.json {
        out!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let steps: Vec<String> = v["spec"]["canary"]["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| format!("{p}%"))
            .collect();
        out!(
            "canary `{}` started: {} v{} takes {} of {} traffic, then {} as each step passes its guardrails; `coach experiment show {}` follows it",
            v["name"].as_str().unwrap_or(""),
            v["model"].as_str().unwrap_or(""),
            v["spec"]["arms"][1]["version"],
            steps.first().map(String::as_str).unwrap_or(""),
            environment,
            steps.get(1..).unwrap_or_default().join(" → "),
            v["name"].as_str().unwrap_or("")
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn rollback(config: Config, a: RollbackArgs) -> Result<ExitCode> {
    let environment = env(&a.env)?;
    let model = name(&a.model)?;
    let outcome = if a.remote.url.is_some() {
        Client::new(&a.remote, &config).post_json(
            "/api/v1/rollbacks",
            &without_nulls(json!({"model": model.as_str(), "environment": environment.as_str(), "to": a.to, "reason": a.reason})),
        )?
    } else {
        let app = App::open(config, Mode::Command).await?;
        let req = Request {
            how: How::Manual,
            actor: local_actor(),
            reason: a.reason,
            run: None,
        };
        serde_json::to_value(
            app.service
                .rollback(&model, &environment, a.to, req)
                .await?,
        )?
    };
    print_outcome(&outcome, a.json)?;
    Ok(ExitCode::SUCCESS)
}

pub async fn run(config: Config, cmd: Command) -> Result<ExitCode> {
    match cmd {
        Command::List {
            model,
            json,
            remote,
        } => {
            let model = model.as_deref().map(name).transpose()?;
            let rows: Value = if remote.url.is_some() {
                let q = match &model {
                    Some(m) => format!("/api/v1/deployments?model={m}"),
                    None => "/api/v1/deployments".into(),
                };
                Client::new(&remote, &config).get(&q)?["deployments"].take()
            } else {
                let app = App::open(config, Mode::Command).await?;
                serde_json::to_value(app.service.records().deployments(model.as_deref()).await?)?
            };
            let Some(rows) = to_list(
                rows,
                json,
                "nothing deployed yet; `coach deploy <model> --env production` deploys one",
            )?
            else {
                return Ok(ExitCode::SUCCESS);
            };
            out!(
                "{:<24} {:<16} {:>7} {:>6}  since",
                "model",
                "environment",
                "version",
                "id"
            );
            for d in rows {
                out!(
                    "{:<24} {:<16} {:>7} {:>6}  {}",
                    d["model"].as_str().unwrap_or(""),
                    d["environment"].as_str().unwrap_or(""),
                    format!("v{}", d["serving"]["version"]),
                    d["serving"]["id"],
                    d["since"].as_str().unwrap_or("")
                );
            }
        }
        Command::History {
            model,
            env: environment,
            limit,
            json,
            remote,
        } => {
            let model = name(&model)?;
            let environment = environment.as_deref().map(env).transpose()?;
            let limit = limit.clamp(1, 1000);
            let rows: Value = if remote.url.is_some() {
                let mut q = format!("/api/v1/deployments/{model}/history?limit={limit}");
                if let Some(e) = &environment {
                    q.push_str(&format!("&environment={e}"));
                }
                Client::new(&remote, &config).get(&q)?["history"].take()
            } else {
                let app = App::open(config, Mode::Command).await?;
                serde_json::to_value(
                    app.service
                        .records()
                        .deployment_history(&model, environment.as_deref(), limit)
                        .await?,
                )?
            };
            let Some(rows) = to_list(rows, json, &format!("`{model}` was never deployed"))? else {
                return Ok(ExitCode::SUCCESS);
            };
            for h in rows {
                let from = match h["from"]["version"].as_i64() {
                    Some(f) => format!("v{f}"),
                    None => "—".into(),
                };
                out!(
                    "{}  {:<12} {:<8} {:>4} → v{:<4} {:<10} by {}{}",
                    h["at"].as_str().unwrap_or("").get(..19).unwrap_or(""),
                    h["environment"].as_str().unwrap_or(""),
                    h["action"].as_str().unwrap_or(""),
                    from,
                    h["to"]["version"],
                    h["how"].as_str().unwrap_or(""),
                    crate::core::text::printable(h["actor"].as_str().unwrap_or("")),
                    h["reason"]
                        .as_str()
                        .map(|r| format!(": {}", crate::core::text::printable(r)))
                        .unwrap_or_default()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
