//! `coach bench submit`: how fast a running daemon accepts GPU jobs, with
//! Slurm's `sbatch` measured beside it in the same invocation.
//!
//! Coach: a scratch `coach daemon` on loopback (SQLite, a static inventory
//! of 8 GPUs) and a workflow of one 1-GPU process step; `--clients`
//! threads POST `/api/v1/workflows/{name}/runs` until `--jobs` runs are
//! queued. Each answer (202) means the run is stored and queued.
//!
//! Slurm: the same number of client threads run `sbatch --parsable
//! --gres=gpu:1 --wrap true` until `--slurm-jobs` are accepted. Each answer
//! means the controller holds the job. Both systems start their jobs while
//! submissions go on, as they would in use.

use super::daemon::{agent, pct, start, stop};
use crate::cli::{note, out};
use crate::config::Config;
use anyhow::{Result, bail};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Runs to submit to Coach.
    #[arg(long, default_value_t = 5000)]
    pub jobs: usize,
    /// Concurrent submitting clients (for both systems).
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Jobs to submit to Slurm; 0 skips the peer.
    #[arg(long, default_value_t = 1000)]
    pub slurm_jobs: usize,
    /// `SLURM_CONF` of the cluster to measure (default: the environment's).
    #[arg(long)]
    pub slurm_conf: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

/// Run `n` submissions over `clients` threads; per-submission latencies
/// (ms, sorted), failures (the first error kept), and the wall time.
fn hammer(
    n: usize,
    clients: usize,
    submit: Arc<dyn Fn() -> Result<(), String> + Send + Sync>,
) -> (Vec<f64>, usize, Option<String>, Duration) {
    let next = Arc::new(AtomicUsize::new(0));
    let begin = Instant::now();
    let handles: Vec<_> = (0..clients.max(1))
        .map(|_| {
            let next = next.clone();
            let submit = submit.clone();
            std::thread::spawn(move || {
                let mut out = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    let t = Instant::now();
                    let r = submit();
                    out.push((t.elapsed().as_secs_f64() * 1000.0, r.err()));
                }
                out
            })
        })
        .collect();
    let mut lat = Vec::new();
    let mut failures = 0;
    let mut first_error = None;
    for h in handles {
        for (ms, err) in h.join().unwrap_or_default() {
            lat.push(ms);
            if let Some(e) = err {
                failures += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    let wall = begin.elapsed();
    lat.sort_by(f64::total_cmp);
    (lat, failures, first_error, wall)
}

fn summary(lat: &[f64], failures: usize, error: Option<String>, wall: Duration) -> Value {
    let accepted = lat.len() - failures;
    json!({
        "submitted": lat.len(),
        "accepted": accepted,
        "failed": failures,
        "first_error": error,
        "seconds": wall.as_secs_f64(),
        "per_second": accepted as f64 / wall.as_secs_f64(),
        "latency_ms": {"p50": pct(lat, 0.5), "p99": pct(lat, 0.99), "max": lat.last()},
    })
}

/// Slurm beside Coach, or why it was not measured.
fn slurm(args: &Args, scratch: &std::path::Path) -> Value {
    if args.slurm_jobs == 0 {
        return json!({"skipped": "--slurm-jobs 0"});
    }
    let conf = args.slurm_conf.clone();
    let client = move |program: &str| {
        let mut c = Command::new("timeout");
        c.arg("20").arg(program);
        if let Some(conf) = &conf {
            c.env("SLURM_CONF", conf);
        }
        c
    };
    match client("sinfo").args(["-h", "-o", "%T"]).output() {
        Ok(o) if o.status.success() && !o.stdout.is_empty() => {}
        Ok(o) => {
            return json!({"skipped": format!("no Slurm cluster answers: {}", String::from_utf8_lossy(&o.stderr).trim())});
        }
        Err(e) => return json!({"skipped": format!("cannot run sinfo: {e}")}),
    }
    let out = scratch.join("slurm-%j.out");
    let submit = Arc::new(move || {
        let o = client("sbatch")
            .args(["--parsable", "--gres=gpu:1", "--mem=10M", "-t", "1", "-J"])
            .arg("coach-bench")
            .arg(format!("--output={}", out.display()))
            .args(["--wrap", "true"])
            .output()
            .map_err(|e| e.to_string())?;
        if o.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&o.stderr).trim().to_owned())
        }
    });
    let (lat, failures, error, wall) = hammer(args.slurm_jobs, args.clients, submit);
    // Leave the cluster as it was.
    let mut cancel = Command::new("timeout");
    cancel.arg("20").arg("scancel").arg("--name=coach-bench");
    if let Some(conf) = &args.slurm_conf {
        cancel.env("SLURM_CONF", conf);
    }
    let _ = cancel.output();
    summary(&lat, failures, error, wall)
}

/// Measures its own scratch daemon; the caller's config is not used.
pub async fn run(_config: Config, args: Args) -> Result<ExitCode> {
    let scratch = tempfile::tempdir()?;
    let workflows = scratch.path().join("workflows");
    std::fs::create_dir_all(&workflows)?;
    std::fs::write(
        workflows.join("submit.toml"),
        r#"version = 1
name = "submit"
description = "One GPU job that does nothing: what is measured is its submission."

[trigger]
concurrency = "allow"

[[step]]
id = "job"
kind = "process"
command = ["true"]
resources = { gpus = 1 }
"#,
    )?;
    let gpus = (0..8)
        .map(|_| "{ name = \"Bench GPU\", memory = \"80GiB\" }")
        .collect::<Vec<_>>()
        .join(", ");
    let cfg_path = scratch.path().join("coach.toml");
    std::fs::write(
        &cfg_path,
        format!(
            "data_dir = {:?}\nplugin_dirs = []\n[daemon]\nlisten = \"127.0.0.1:0\"\nworkflow_dirs = [{:?}]\nmax_parallel_runs = 8\n[gpus]\ninventory = \"static\"\ndevices = [{gpus}]\n",
            scratch.path().join("data"),
            workflows,
        ),
    )?;
    let bench_config = Config::load(Some(&cfg_path))?;
    let store = crate::store::Store::connect(&bench_config.database_url()).await?;
    let token = store
        .create_token("bench", crate::store::tokens::Role::Operator)
        .await?
        .1;
    drop(store);
    let daemon = start(&cfg_path, &scratch.path().join("daemon.log"))?;
    let url = format!("{}/api/v1/workflows/submit/runs", daemon.url);
    let auth = format!("Bearer {token}");
    note!("coach: {} jobs from {} clients …", args.jobs, args.clients);
    let submit = Arc::new(move || {
        thread_local! {
            static AGENT: ureq::Agent = agent();
        }
        AGENT.with(
            |a| match a.post(&url).header("Authorization", &auth).send_empty() {
                Ok(mut r) if r.status().as_u16() == 202 => {
                    let _ = r.body_mut().read_to_vec();
                    Ok(())
                }
                Ok(mut r) => Err(format!(
                    "{}: {}",
                    r.status(),
                    r.body_mut().read_to_string().unwrap_or_default()
                )),
                Err(e) => Err(e.to_string()),
            },
        )
    });
    let (lat, failures, error, wall) =
        tokio::task::spawn_blocking(move || hammer(args.jobs, args.clients, submit)).await?;
    stop(daemon)?;
    let coach = summary(&lat, failures, error, wall);
    if coach["accepted"] == 0 {
        bail!("Coach accepted no job: {}", coach["first_error"]);
    }
    note!(
        "slurm: {} jobs from {} clients …",
        args.slurm_jobs,
        args.clients
    );
    let (clients, as_json) = (args.clients, args.json);
    let slurm = {
        let scratch = scratch.path().to_path_buf();
        tokio::task::spawn_blocking(move || slurm(&args, &scratch)).await?
    };
    let ratio = match (coach["per_second"].as_f64(), slurm["per_second"].as_f64()) {
        (Some(c), Some(s)) if s > 0.0 => Some(c / s),
        _ => None,
    };
    let report =
        json!({"clients": clients, "coach": coach, "slurm": slurm, "coach_over_slurm": ratio});
    if as_json {
        out!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    let line = |name: &str, v: &Value| {
        if let Some(why) = v["skipped"].as_str() {
            return format!("  {name:<7} not measured: {why}");
        }
        format!(
            "  {name:<7} {:>6} of {:>6} accepted in {:>6.2} s = {:>7.0} jobs/s   latency p50 {:.2} ms, p99 {:.2} ms{}",
            v["accepted"],
            v["submitted"],
            v["seconds"].as_f64().unwrap_or(0.0),
            v["per_second"].as_f64().unwrap_or(0.0),
            v["latency_ms"]["p50"].as_f64().unwrap_or(f64::NAN),
            v["latency_ms"]["p99"].as_f64().unwrap_or(f64::NAN),
            v["first_error"]
                .as_str()
                .map(|e| format!("; first error: {e}"))
                .unwrap_or_default()
        )
    };
    out!(
        "GPU job submission to a running scheduler, {clients} concurrent clients (target: Coach ≥ 500 jobs/s)"
    );
    out!("{}", line("coach", &report["coach"]));
    out!("{}", line("slurm", &report["slurm"]));
    if let Some(r) = ratio {
        out!("  Coach / Slurm: {r:.2}×");
    }
    Ok(ExitCode::SUCCESS)
}
