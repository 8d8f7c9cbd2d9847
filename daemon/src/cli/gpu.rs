//! `coach gpu`: the GPU inventory (from the running daemon with
//! `COACH_URL`, with its allocations; else probed here) and `coach queue`:
//! steps waiting for GPUs on the daemon, with why.

use super::client::{Client, Remote};
use crate::cli::out;
use crate::config::Config;
use anyhow::Result;
use serde_json::Value;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct GpuArgs {
    #[command(flatten)]
    pub remote: Remote,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct QueueArgs {
    #[command(flatten)]
    pub remote: Remote,
    #[arg(long)]
    pub json: bool,
}

fn gib(v: &Value) -> String {
    format!("{:.1} GiB", v.as_f64().unwrap_or(0.0) / (1u64 << 30) as f64)
}

pub fn gpu(config: &Config, a: GpuArgs) -> Result<ExitCode> {
    let v = if a.remote.url.is_some() {
        Client::new(&a.remote, config).get("/api/v1/gpus")?
    } else {
        let q = crate::compute::gpus::GpuQueue::new(config.gpus.clone());
        serde_json::to_value(crate::service::views::GpuView::of(&q))?
    };
    if a.json {
        out!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    out!(
        "inventory: {} — {}",
        v["source"].as_str().unwrap_or("?"),
        v["reason"].as_str().unwrap_or("")
    );
    if let Some(d) = v["driver"].as_str() {
        out!("driver: {d}");
    }
    for g in v["gpus"].as_array().into_iter().flatten() {
        let users: Vec<String> = g["allocated_to"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| format!("run {} step {}", a["run"], a["step"].as_str().unwrap_or("")))
            .collect();
        out!(
            "  {:>3}  {:<24} {} of {} used{}{}{}",
            g["index"].as_str().unwrap_or("?"),
            g["name"].as_str().unwrap_or(""),
            gib(&g["memory_used"]),
            gib(&g["memory_total"]),
            g["utilization"]
                .as_u64()
                .map(|u| format!(", {u}% busy"))
                .unwrap_or_default(),
            if g["healthy"] == true {
                String::new()
            } else {
                format!(
                    ", UNHEALTHY: {}",
                    g["problem"].as_str().unwrap_or("drained")
                )
            },
            if users.is_empty() {
                String::new()
            } else {
                format!(" — {}", users.join(", "))
            },
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn queue(config: &Config, a: QueueArgs) -> Result<ExitCode> {
    let v = Client::new(&a.remote, config).get("/api/v1/queue")?;
    if a.json {
        out!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let waiting = v["waiting"].as_array().cloned().unwrap_or_default();
    if waiting.is_empty() {
        out!("nothing waits for GPUs here");
    }
    for w in &waiting {
        out!(
            "{:>3}. run {} step {} ({}, {} priority, queue {}): {} GPU(s) — {}",
            w["position"],
            w["run"],
            w["step"].as_str().unwrap_or(""),
            w["workflow"].as_str().unwrap_or(""),
            w["priority"].as_str().unwrap_or(""),
            w["queue"].as_str().unwrap_or(""),
            w["gpus"],
            w["reason"].as_str().unwrap_or("")
        );
    }
    for j in v["slurm"].as_array().into_iter().flatten() {
        let reason = j["reason"].as_str().unwrap_or("");
        out!(
            "slurm: job {} — run {} step {} ({}): {} GPU(s), {}{}",
            j["job"],
            j["run"],
            j["step"].as_str().unwrap_or(""),
            j["workflow"].as_str().unwrap_or(""),
            j["gpus"],
            j["state"].as_str().unwrap_or(""),
            if reason.is_empty() {
                String::new()
            } else {
                format!(" ({reason})")
            }
        );
    }
    for r in v["running"].as_array().into_iter().flatten() {
        let devices: Vec<&str> = r["devices"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        out!(
            "running: run {} step {} on GPU {}",
            r["run"],
            r["step"].as_str().unwrap_or(""),
            devices.join(",")
        );
    }
    Ok(ExitCode::SUCCESS)
}
