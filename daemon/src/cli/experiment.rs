//! `coach experiment list|show|start|stop|plan`: through a running daemon
//! when `COACH_URL` (or `--url`) is set, else on the store directly
//! (`plan` is arithmetic and needs neither).

use super::client::{Client, Remote};
use crate::app::{App, Mode};
use crate::cli::out;
use crate::config::Config;
use crate::core::text::printable;
use crate::experiment::stats::plan;
use crate::store::deployments::How;
use anyhow::{Result, anyhow, bail};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Experiments and canaries, newest first.
    List {
        /// Only this model name.
        #[arg(long)]
        model: Option<String>,
        /// Only those running.
        #[arg(long)]
        running: bool,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// An experiment with its results now, and what its decision script
    /// says of them.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Start the experiment a file defines (its name is the file's, unless
    /// `--name`). Files in `experiments/` beside the workflows start by
    /// themselves in the daemon.
    Start {
        file: PathBuf,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Stop an experiment or canary: the deployed version serves all
    /// traffic again.
    Stop {
        name: String,
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Drive a running experiment with synthetic users through the daemon
    /// (to rehearse one on a staging environment, or to see a decision
    /// taken): each user asks the predict route, then reports its
    /// conversation's outcome and a rating drawn from the rates of the arm
    /// that answered.
    Simulate {
        name: String,
        /// Users to simulate.
        #[arg(long, default_value_t = 1000)]
        users: usize,
        /// Per arm, in the experiment's order: the chance a conversation
        /// is resolved.
        #[arg(long, value_delimiter = ',', default_value = "0.4")]
        resolved: Vec<f64>,
        /// Per arm: the chance a user rates the answer -1 (else +1).
        #[arg(long, value_delimiter = ',', default_value = "0.1")]
        negative: Vec<f64>,
        /// Seed of the draws.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// A question the users ask.
        #[arg(long, default_value = "can you find us a photographer")]
        text: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// How many units each arm needs to see a change of a rate (a
    /// two-sided test at `--alpha` with `--power`).
    Plan {
        /// The control's rate now, such as 0.30 for 30% of conversations
        /// resolved.
        #[arg(long)]
        baseline: f64,
        /// The change to detect, relative (0.10: 30% → 33%), unless
        /// `--absolute`.
        #[arg(long)]
        lift: f64,
        /// `--lift` is in rate points (0.03: 30% → 33%).
        #[arg(long)]
        absolute: bool,
        #[arg(long, default_value_t = 0.05)]
        alpha: f64,
        #[arg(long, default_value_t = 0.8)]
        power: f64,
        /// Treatments beside the control (the level is split between them).
        #[arg(long, default_value_t = 1)]
        treatments: u32,
        /// Units a day across all arms, to say how long it takes.
        #[arg(long)]
        daily_units: Option<f64>,
        #[arg(long)]
        json: bool,
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

fn check_name(name: &str) -> Result<()> {
    if crate::experiment::spec::valid_name(name) {
        Ok(())
    } else {
        bail!("`{name}` is not an experiment name (up to 64 letters, digits, `-` or `_`)")
    }
}

pub async fn run(config: Config, cmd: Command) -> Result<ExitCode> {
    match cmd {
        Command::List {
            model,
            running,
            json,
            remote,
        } => {
            let rows: Value = if remote.url.is_some() {
                let mut q = format!(
                    "/api/v1/experiments?state={}",
                    if running { "running" } else { "all" }
                );
                if let Some(m) = &model {
                    q.push_str(&format!("&model={m}"));
                }
                Client::new(&remote, &config).get(&q)?["experiments"].take()
            } else {
                let app = App::open(config, Mode::Command).await?;
                serde_json::to_value(
                    app.service
                        .experiment_list(model.as_deref(), running)
                        .await?,
                )?
            };
            if json {
                out!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(ExitCode::SUCCESS);
            }
            let rows = rows.as_array().cloned().unwrap_or_default();
            if rows.is_empty() {
                out!(
                    "no experiments yet; put one in experiments/ beside the workflows, or `coach experiment start FILE`"
                );
                return Ok(ExitCode::SUCCESS);
            }
            out!(
                "{:<32} {:<10} {:<20} {:<12} {:<11} started",
                "name",
                "kind",
                "model",
                "environment",
                "state"
            );
            for e in rows {
                out!(
                    "{:<32} {:<10} {:<20} {:<12} {:<11} {}",
                    e["name"].as_str().unwrap_or(""),
                    e["kind"].as_str().unwrap_or(""),
                    e["model"].as_str().unwrap_or(""),
                    e["environment"].as_str().unwrap_or(""),
                    e["state"].as_str().unwrap_or(""),
                    e["started_at"]
                        .as_str()
                        .unwrap_or("")
                        .get(..19)
                        .unwrap_or("")
                );
            }
        }
        Command::Show { name, json, remote } => {
            check_name(&name)?;
            let v: Value = if remote.url.is_some() {
                Client::new(&remote, &config).get(&format!("/api/v1/experiments/{name}"))?
            } else {
                let app = App::open(config, Mode::Command).await?;
                serde_json::to_value(app.service.experiment(&name).await?)?
            };
            if json {
                out!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print_experiment(&v)?;
            }
        }
        Command::Start {
            file,
            name,
            json,
            remote,
        } => {
            let name = match name {
                Some(n) => n,
                None => file
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .ok_or_else(|| anyhow!("{} names no file", file.display()))?,
            };
            check_name(&name)?;
            let text = std::fs::read_to_string(&file)
                .map_err(|e| anyhow!("cannot read {}: {e}", file.display()))?;
            let spec = crate::workflow::experiment::parse(&file, &name, &text).map_err(|e| {
                anyhow!(
                    "{}",
                    e.0.iter()
                        .map(|l| l.render())
                        .collect::<Vec<_>>()
                        .join("\n")
                )
            })?;
            let v: Value = if remote.url.is_some() {
                if spec.stopping.decide.is_some() {
                    bail!(
                        "{}: a decision script can be used by an experiment file in the daemon's experiments/ folder, not sent through the API",
                        file.display()
                    );
                }
                let mut body: Value = toml::from_str(&text)?;
                body["name"] = json!(name);
                Client::new(&remote, &config).post_json("/api/v1/experiments", &body)?
            } else {
                let app = App::open(config, Mode::Command).await?;
                serde_json::to_value(
                    app.service
                        .start_experiment(
                            &name,
                            spec,
                            format!("file {}", file.display()),
                            local_actor(),
                            How::Manual,
                            None,
                        )
                        .await?,
                )?
            };
            if json {
                out!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                out!(
                    "experiment `{name}` started on {} of {}: {}",
                    v["environment"].as_str().unwrap_or(""),
                    v["model"].as_str().unwrap_or(""),
                    arms_line(&v)
                );
            }
        }
        Command::Stop {
            name,
            reason,
            json,
            remote,
        } => {
            check_name(&name)?;
            let v: Value = if remote.url.is_some() {
                let body = match &reason {
                    Some(r) => json!({ "reason": r }),
                    None => json!({}),
                };
                Client::new(&remote, &config)
                    .post_json(&format!("/api/v1/experiments/{name}/stop"), &body)?
            } else {
                let app = App::open(config, Mode::Command).await?;
                serde_json::to_value(
                    app.service
                        .stop_experiment(&name, local_actor(), reason)
                        .await?,
                )?
            };
            if json {
                out!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                out!(
                    "experiment `{name}` stopped; {} of {} serves v{} to everyone",
                    v["environment"].as_str().unwrap_or(""),
                    v["model"].as_str().unwrap_or(""),
                    v["spec"]["arms"][0]["version"]
                );
            }
        }
        Command::Simulate {
            name,
            users,
            resolved,
            negative,
            seed,
            text,
            remote,
        } => {
            check_name(&name)?;
            let client = Client::new(&remote, &config);
            simulate(&client, &name, users, &resolved, &negative, seed, &text)?;
        }
        Command::Plan {
            baseline,
            lift,
            absolute,
            alpha,
            power,
            treatments,
            daily_units,
            json,
        } => {
            let target = if absolute {
                baseline + lift
            } else {
                baseline * (1.0 + lift)
            };
            let per_test_alpha = alpha / f64::from(treatments.max(1));
            let p = plan::sample_size(baseline, target, per_test_alpha, power, 1.0).ok_or_else(
                || {
                    anyhow!(
                        "no plan: the rates ({baseline} → {target}), --alpha and --power must be between 0 and 1, and the rates must differ"
                    )
                },
            )?;
            let per_arm = p.n_control.ceil();
            let total = per_arm * f64::from(treatments + 1);
            let days = daily_units.filter(|d| *d > 0.0).map(|d| total / d);
            if json {
                out!(
                    "{}",
                    serde_json::to_string_pretty(&json!({
                        "baseline": baseline,
                        "target": target,
                        "alpha": alpha,
                        "alpha_per_comparison": per_test_alpha,
                        "power": power,
                        "cohens_h": p.cohens_h,
                        "units_per_arm": per_arm,
                        "units_total": total,
                        "days": days,
                    }))?
                );
            } else {
                out!(
                    "to see {:.2}% → {:.2}% with {:.0}% power at α = {alpha}{}:",
                    100.0 * baseline,
                    100.0 * target,
                    100.0 * power,
                    if treatments > 1 {
                        format!(" (split over {treatments} treatments: {per_test_alpha:.4} each)")
                    } else {
                        String::new()
                    }
                );
                out!(
                    "  {per_arm:.0} units per arm, {total:.0} in all (Cohen's h = {:.4})",
                    p.cohens_h
                );
                if let Some(d) = days {
                    out!(
                        "  about {d:.1} days at {:.0} units a day",
                        daily_units.unwrap_or(0.0)
                    );
                }
                out!(
                    "  a fixed-horizon plan: the always-valid sequential test that decides experiments may look every minute, and needs more units than this to reach the same power"
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn arms_line(v: &Value) -> String {
    v["spec"]["arms"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            format!(
                "{} v{} {:.0}%",
                a["name"].as_str().unwrap_or(""),
                a["version"],
                100.0 * a["weight"].as_f64().unwrap_or(0.0)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn num(v: &Value, digits: usize) -> String {
    match v.as_f64() {
        Some(x) => format!("{x:.digits$}"),
        None => "–".into(),
    }
}

fn print_experiment(v: &Value) -> Result<()> {
    out!(
        "{} `{}` on {} of {}: {}",
        v["kind"].as_str().unwrap_or(""),
        v["name"].as_str().unwrap_or(""),
        v["environment"].as_str().unwrap_or(""),
        v["model"].as_str().unwrap_or(""),
        v["state"].as_str().unwrap_or("")
    );
    if let Some(h) = v["spec"]["hypothesis"].as_str() {
        out!("  hypothesis: {}", printable(h));
    }
    out!(
        "  started {} by {} ({})",
        v["started_at"]
            .as_str()
            .unwrap_or("")
            .get(..19)
            .unwrap_or(""),
        printable(v["created_by"].as_str().unwrap_or("")),
        printable(v["source"].as_str().unwrap_or(""))
    );
    if let Some(p) = v["percent"].as_f64() {
        out!(
            "  canary step {}: {p}% of traffic",
            v["step"].as_u64().unwrap_or(0) + 1
        );
    }
    if let Some(d) = v["decision"].as_str() {
        out!(
            "  decided: {d}: {}",
            printable(v["reason"].as_str().unwrap_or(""))
        );
    }
    let r = &v["results"];
    out!("");
    out!(
        "  {:<12} {:>7} {:>7} {:>8} {:>13} {:>9} {:>8}",
        "arm",
        "version",
        "weight",
        "units",
        "conversations",
        "requests",
        "errors"
    );
    for a in r["arms"].as_array().into_iter().flatten() {
        out!(
            "  {:<12} {:>7} {:>7} {:>8} {:>13} {:>9} {:>8}",
            a["arm"].as_str().unwrap_or(""),
            format!("v{}", a["version"]),
            format!("{:.0}%", 100.0 * a["weight"].as_f64().unwrap_or(0.0)),
            a["units"].to_string(),
            a["conversations"].to_string(),
            a["requests"].to_string(),
            a["errors"].to_string()
        );
    }
    out!(
        "  sample ratio: χ² p = {}{}",
        num(&r["srm"]["p_value"], 4),
        if r["srm"]["flagged"] == true {
            "  MISMATCH: no automatic decision until it is explained"
        } else {
            ""
        }
    );
    out!("");
    out!(
        "  {:<22} {:<9} {:<8} {:>10} {:>10} {:>12} {:>10} {:>8}  verdict",
        "metric",
        "role",
        "arm",
        "control",
        "arm value",
        "change",
        "p (seq.)",
        "P(win)"
    );
    for m in r["metrics"].as_array().into_iter().flatten() {
        let control = &m["arms"][0]["value"];
        for (i, c) in m["comparisons"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let change = match (c["estimate"].as_f64(), c["lift"].as_f64()) {
                (_, Some(l)) => format!("{:+.1}%", 100.0 * l),
                (Some(e), None) => format!("{e:+.4}"),
                _ => "–".into(),
            };
            out!(
                "  {:<22} {:<9} {:<8} {:>10} {:>10} {:>12} {:>10} {:>8}  {}",
                m["metric"].as_str().unwrap_or(""),
                m["role"].as_str().unwrap_or(""),
                c["arm"].as_str().unwrap_or(""),
                num(control, 4),
                num(&m["arms"][i + 1]["value"], 4),
                change,
                num(
                    if c["p_adjusted"].is_null() {
                        &c["p_value"]
                    } else {
                        &c["p_adjusted"]
                    },
                    4
                ),
                num(&c["chance_to_win"], 3),
                match c["unavailable"].as_str() {
                    Some(u) => format!("({u})"),
                    None => c["verdict"].as_str().unwrap_or("").to_owned(),
                }
            );
        }
    }
    if let Some(d) = v["decision_now"].as_object() {
        out!("");
        out!(
            "  decision now: {}{}: {}",
            d.get("decision").and_then(Value::as_str).unwrap_or(""),
            d.get("arm")
                .and_then(Value::as_str)
                .map(|a| format!(" {a}"))
                .unwrap_or_default(),
            printable(d.get("reason").and_then(Value::as_str).unwrap_or(""))
        );
    }
    Ok(())
}

fn simulate(
    client: &Client,
    name: &str,
    users: usize,
    resolved: &[f64],
    negative: &[f64],
    seed: u64,
    text: &str,
) -> Result<()> {
    let e = client.get(&format!("/api/v1/experiments/{name}"))?;
    if e["state"] != "running" {
        bail!(
            "experiment `{name}` is {}, not running",
            e["state"].as_str().unwrap_or("?")
        );
    }
    let model = e["model"].as_str().unwrap_or_default().to_owned();
    let environment = e["environment"].as_str().unwrap_or_default().to_owned();
    let versions: Vec<i64> = e["spec"]["arms"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| a["version"].as_i64().unwrap_or(0))
        .collect();
    let rate = |rates: &[f64], arm: usize| -> f64 {
        rates
            .get(arm)
            .or(rates.last())
            .copied()
            .unwrap_or(0.0)
            .clamp(0.0, 1.0)
    };
    let mut draws = crate::experiment::draws::SplitMix(seed);
    let run = format!("{seed:x}");
    let mut per_arm = vec![0u64; versions.len()];
    let mut outside = 0u64;
    let mut ended = None;
    for u in 0..users {
        let (user, conversation) = (format!("sim-{run}-{u}"), format!("sim-{run}-c{u}"));
        let v = client.post_json(
            &format!("/api/v1/models/{model}/predict?env={environment}"),
            &json!({"text": text, "user_id": user, "conversation_id": conversation, "channel": "simulator"}),
        )?;
        if v["experiment"]["name"] != name {
            // Ended (or outside its coverage): counted nowhere.
            outside += 1;
            if ended.is_none() && v["experiment"].is_null() {
                let now = client.get(&format!("/api/v1/experiments/{name}"))?;
                if now["state"] != "running" {
                    ended = Some(u);
                    break;
                }
            }
            continue;
        }
        let version = v["version"].as_i64().unwrap_or(0);
        let arm = versions.iter().position(|x| *x == version).unwrap_or(0);
        per_arm[arm] += 1;
        let outcome = if draws.next() < rate(resolved, arm) {
            "resolved"
        } else {
            "abandoned"
        };
        client.post_json(
            "/api/v1/conversations",
            &json!({"conversations": [{"model": model, "id": conversation, "outcome": outcome}]}),
        )?;
        let rating = if draws.next() < rate(negative, arm) {
            -1
        } else {
            1
        };
        client.post_json(
            "/api/v1/feedback",
            &json!({"feedback": [{"model": model, "conversation": conversation, "rating": rating}]}),
        )?;
    }
    let arms: Vec<String> = per_arm
        .iter()
        .zip(&versions)
        .map(|(n, v)| format!("v{v}: {n}"))
        .collect();
    match ended {
        Some(u) => out!(
            "{u} simulated users ({}), then the experiment ended",
            arms.join(", ")
        ),
        None => out!(
            "{users} simulated users ({}{})",
            arms.join(", "),
            if outside > 0 {
                format!(", {outside} outside the experiment")
            } else {
                String::new()
            }
        ),
    }
    Ok(())
}
