//! `coach bench serve`: predictions from a real `coach daemon` on
//! loopback, a CLINC150 model (151 intents) deployed, under open-loop load
//! at fixed rates — and the same load against the usual way a team serves
//! the scikit-learn peer model (FastAPI on uvicorn, one worker per core),
//! in the same invocation on the same machine. Then deploys and a rollback
//! under 500 requests/s: failed requests and latency during the swaps.

use super::daemon::{agent, pct, start, stop};
use crate::app::{App, Mode};
use crate::cli::{note, out};
use crate::config::Config;
use crate::core::ids::{EnvironmentName, ModelRef};
use crate::core::stop::RunStop;
use crate::pipeline::deploy::Request;
use crate::store::deployments::How;
use crate::store::tokens::Role;
use crate::workflow::Workflow;
use crate::workflow::set::Good;
use anyhow::{Context, Result, bail};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The CLINC150 folder (default: `$COACH_DATASETS/clinc150`).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// The rate measured in full, requests per second.
    #[arg(long, default_value_t = 1000)]
    pub rate: u32,
    /// Seconds of load at `--rate` (and during the swaps).
    #[arg(long, default_value_t = 10)]
    pub seconds: u32,
    /// Rates tried, in order, for the highest one held with p99 ≤ 10 ms
    /// (5 s each; stops at the first that is not held).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "50,100,250,500,1000,1500,2000,3000,4000,6000"
    )]
    pub ramp: Vec<u32>,
    /// Skip the FastAPI peer.
    #[arg(long)]
    pub no_peer: bool,
    #[arg(long)]
    pub json: bool,
}

/// One open-loop measurement.
#[derive(Debug, Clone, serde::Serialize)]
struct Load {
    rate: u32,
    requests: usize,
    errors: usize,
    /// Latency from when each request was due (a slow answer delays none).
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

/// Requests due every 1/rate s for `seconds`, spread over worker threads
/// that each take the next due time, wait for it, send and record. `send`
/// posts request `i` and says whether it succeeded; the latencies are in
/// the order the requests were due.
fn open_loop(
    rate: u32,
    seconds: f64,
    send: impl Fn(&ureq::Agent, usize) -> bool + Send + Sync + 'static,
) -> (Vec<(f64, f64, bool)>, Instant) {
    let total = (f64::from(rate) * seconds) as usize;
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let start = Instant::now() + Duration::from_millis(200);
    let next = Arc::new(AtomicUsize::new(0));
    let send = Arc::new(send);
    let workers = 64;
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            let (next, send) = (next.clone(), send.clone());
            std::thread::spawn(move || {
                let a = agent();
                let mut out = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return out;
                    }
                    let due = start + interval * i as u32;
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let ok = send(&a, i);
                    let done = Instant::now();
                    out.push((
                        i,
                        (due - start).as_secs_f64(),
                        (done - due).as_secs_f64() * 1000.0,
                        ok,
                    ));
                }
            })
        })
        .collect();
    let mut all: Vec<(usize, f64, f64, bool)> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap_or_default())
        .collect();
    all.sort_by_key(|r| r.0);
    (
        all.into_iter()
            .map(|(_, at, ms, ok)| (at, ms, ok))
            .collect(),
        start,
    )
}

fn summarise(rate: u32, rows: &[(f64, f64, bool)]) -> Load {
    let mut ms: Vec<f64> = rows.iter().map(|r| r.1).collect();
    ms.sort_by(f64::total_cmp);
    Load {
        rate,
        requests: rows.len(),
        errors: rows.iter().filter(|r| !r.2).count(),
        p50_ms: pct(&ms, 0.5),
        p99_ms: pct(&ms, 0.99),
        max_ms: ms.last().copied().unwrap_or(f64::NAN),
    }
}

/// POST `{"text": texts[i % n]}` to `url`; true on 200.
fn poster(
    url: String,
    token: Option<String>,
    texts: Arc<Vec<String>>,
) -> impl Fn(&ureq::Agent, usize) -> bool + Send + Sync + 'static {
    move |a, i| {
        let mut req = a.post(&url);
        if let Some(t) = &token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        match req.send_json(json!({"text": texts[i % texts.len()]})) {
            Ok(mut r) => {
                let ok = r.status().as_u16() == 200;
                let _ = r.body_mut().read_to_vec();
                ok
            }
            Err(_) => false,
        }
    }
}

/// `--rate` for `--seconds`, then the ramp.
fn measure(
    url: &str,
    token: Option<&str>,
    texts: &Arc<Vec<String>>,
    args: &Args,
) -> (Load, Vec<Load>) {
    let send = || poster(url.to_owned(), token.map(str::to_owned), texts.clone());
    // Warm up: connections, caches, the first requests' allocations.
    let _ = open_loop(200, 2.0, send());
    let main = summarise(
        args.rate,
        &open_loop(args.rate, f64::from(args.seconds), send()).0,
    );
    let mut ramp = Vec::new();
    for &rate in &args.ramp {
        let l = summarise(rate, &open_loop(rate, 5.0, send()).0);
        let held = l.errors == 0 && l.p99_ms <= 10.0;
        ramp.push(l);
        if !held {
            break;
        }
    }
    (main, ramp)
}

fn highest_held(ramp: &[Load]) -> Option<u32> {
    ramp.iter()
        .filter(|l| l.errors == 0 && l.p99_ms <= 10.0)
        .map(|l| l.rate)
        .max()
}

fn write_jsonl(path: &Path, rows: &[crate::core::example::Example]) -> Result<()> {
    let mut out = String::new();
    for r in rows {
        out.push_str(&json!({"text": r.text, "intent": r.intent}).to_string());
        out.push('\n');
    }
    Ok(std::fs::write(path, out)?)
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The FastAPI peer, trained on `train`, serving on a free port.
struct Peer {
    child: std::process::Child,
    url: String,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

fn start_peer(dir: &Path, train: &[crate::core::example::Example]) -> Result<Peer> {
    let script = dir.join("serve_peer.py");
    std::fs::write(&script, include_str!("serve_peer.py"))?;
    let train_path = dir.join("peer-train.jsonl");
    write_jsonl(&train_path, train)?;
    let model = dir.join("peer-model.pickle");
    let out = Command::new("python3")
        .arg(&script)
        .arg("train")
        .arg(&train_path)
        .arg(&model)
        .output()
        .context("cannot run python3 for the FastAPI peer")?;
    if !out.status.success() {
        bail!(
            "the FastAPI peer could not train (it needs python3 with scikit-learn, fastapi and uvicorn: `pip install scikit-learn fastapi uvicorn`): {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
    }
    let port = free_port()?;
    let workers = crate::serving::instances_per_version();
    let child = Command::new("python3")
        .arg(&script)
        .arg("serve")
        .arg(port.to_string())
        .arg(workers.to_string())
        .arg(&model)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("peer.log"))?)
        .spawn()
        .context("cannot start the FastAPI peer")?;
    let peer = Peer {
        child,
        url: format!("http://127.0.0.1:{port}/predict"),
    };
    let a = agent();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(r) = a.post(&peer.url).send_json(json!({"text": "hello"}))
            && r.status().as_u16() == 200
        {
            return Ok(peer);
        }
        if Instant::now() > deadline {
            bail!(
                "the FastAPI peer did not answer within 120 s; see {}",
                dir.join("peer.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub async fn run(_config: Config, args: Args) -> Result<ExitCode> {
    let data = match &args.data {
        Some(d) => d.clone(),
        None => std::env::var_os("COACH_DATASETS")
            .map(|d| PathBuf::from(d).join("clinc150"))
            .context("--data (the CLINC150 folder) or COACH_DATASETS is needed")?,
    };
    let file = data.join("data_full.json");
    if !file.is_file() {
        bail!(
            "{} does not exist; --data must be the CLINC150 folder",
            file.display()
        );
    }
    let scratch = tempfile::tempdir()?;
    let workflows = scratch.path().join("workflows");
    std::fs::create_dir_all(&workflows)?;
    let cfg_path = scratch.path().join("coach.toml");
    std::fs::write(
        &cfg_path,
        format!(
            "data_dir = {:?}\nplugin_dirs = []\n[grants.source-files]\nread = [{:?}]\n[daemon]\nlisten = \"127.0.0.1:0\"\nworkflow_dirs = [{:?}]\n",
            scratch.path().join("data"),
            data.canonicalize()?,
            workflows
        ),
    )?;
    let config = Config::load(Some(&cfg_path))?;

    // Two versions of the CLINC150 model, the first deployed.
    note!("training the CLINC150 model twice (151 intents) …");
    let text = format!(
        "version = 1\nname = \"clinc150\"\n\n[[step]]\nid = \"data\"\nuses = \"source-files\"\nwith = {{ format = \"clinc150\", path = {:?} }}\n\n[[step]]\nid = \"split\"\nkind = \"split\"\nneeds = [\"data\"]\nwith = {{ mode = \"keep\" }}\n\n[[step]]\nid = \"train\"\nuses = \"trainer-intent\"\nneeds = [\"split\"]\n\n[[step]]\nid = \"register\"\nkind = \"register\"\nneeds = [\"train\"]\n",
        file.canonicalize()?.display().to_string()
    );
    let wf_file = scratch.path().join("clinc150.toml");
    std::fs::write(&wf_file, &text)?;
    let (texts, train, token) = {
        let app = App::open(config.clone(), Mode::Command).await?;
        let wf = Workflow::parse(&wf_file, &text, &app.host.catalog())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut model = None;
        for _ in 0..2 {
            let summary = app
                .service
                .run_here(
                    &Good::new(wf.clone(), text.clone()),
                    Arc::new(crate::events::report::LogReporter),
                    &RunStop::new(),
                )
                .await?;
            if let Some(e) = summary.error {
                bail!("{e}");
            }
            model = summary.model;
        }
        let model = model.context("the run registered no model")?;
        let rows = app
            .store
            .load_examples(
                model
                    .dataset_version_id
                    .context("the model names no dataset")?,
            )
            .await?;
        // Held-out texts (validation: the test split may be held back).
        let texts: Vec<String> = rows
            .iter()
            .filter(|r| !r.split.trains())
            .map(|r| r.text.clone())
            .collect();
        let train: Vec<_> = rows.into_iter().filter(|r| r.split.trains()).collect();
        let production = EnvironmentName::try_from("production").map_err(anyhow::Error::msg)?;
        app.service
            .deploy(
                &"clinc150:1"
                    .parse::<ModelRef>()
                    .map_err(anyhow::Error::msg)?,
                &production,
                Request {
                    how: How::Manual,
                    actor: "coach bench serve".into(),
                    reason: None,
                    run: None,
                },
            )
            .await?;
        let token = app.store.create_token("bench", Role::Operator).await?.1;
        (Arc::new(texts), train, token)
    };
    if texts.is_empty() {
        bail!("the CLINC150 data holds no held-out examples");
    }

    let log = scratch.path().join("daemon.log");
    let daemon = start(&cfg_path, &log)?;
    let url = format!("{}/api/v1/models/clinc150/predict", daemon.url);
    note!(
        "coach: {} requests/s for {} s, then the ramp …",
        args.rate,
        args.seconds
    );
    let (coach_main, coach_ramp) = {
        let (u, t, x) = (url.clone(), token.clone(), texts.clone());
        let a = args.clone();
        tokio::task::spawn_blocking(move || measure(&u, Some(&t), &x, &a)).await?
    };

    // Deploy v2, roll back, deploy v2 again, while 500 requests/s run.
    note!("swaps under 500 requests/s …");
    let swap_seconds = f64::from(args.seconds.max(6));
    let (swaps, swap_rows) = {
        let base = daemon.url.clone();
        let tok = token.clone();
        let send = poster(url.clone(), Some(token.clone()), texts.clone());
        tokio::task::spawn_blocking(move || {
            let swapper = std::thread::spawn(move || {
                let a = agent();
                let mut at = Vec::new();
                let t0 = Instant::now();
                for (i, (path, body)) in [
                    (
                        "/api/v1/deployments",
                        json!({"model": "clinc150:2", "environment": "production"}),
                    ),
                    (
                        "/api/v1/rollbacks",
                        json!({"model": "clinc150", "environment": "production"}),
                    ),
                    (
                        "/api/v1/deployments",
                        json!({"model": "clinc150:2", "environment": "production"}),
                    ),
                ]
                .into_iter()
                .enumerate()
                {
                    let due = Duration::from_secs_f64(swap_seconds / 4.0 * (i + 1) as f64);
                    if let Some(wait) = due.checked_sub(t0.elapsed()) {
                        std::thread::sleep(wait);
                    }
                    let started = t0.elapsed().as_secs_f64();
                    let ok = a
                        .post(&format!("{base}{path}"))
                        .header("Authorization", &format!("Bearer {tok}"))
                        .send_json(body)
                        .map(|r| r.status().as_u16() == 200)
                        .unwrap_or(false);
                    at.push((started, t0.elapsed().as_secs_f64(), ok));
                }
                at
            });
            let (rows, _) = open_loop(500, swap_seconds, send);
            (swapper.join().unwrap_or_default(), rows)
        })
        .await?
    };
    let swap_load = summarise(500, &swap_rows);
    // Requests due within a second after each swap began.
    let mut during: Vec<f64> = swap_rows
        .iter()
        .filter(|(at, _, _)| {
            swaps
                .iter()
                .any(|(s, _, _)| *at >= s - 0.2 && *at <= s + 1.0)
        })
        .map(|r| r.1)
        .collect();
    during.sort_by(f64::total_cmp);
    let swaps_ok = swaps.iter().all(|s| s.2);
    let swap_ms: Vec<f64> = swaps.iter().map(|s| (s.1 - s.0) * 1000.0).collect();
    let rss = rss_of(&daemon);
    stop(daemon)?;

    let peer = if args.no_peer {
        None
    } else {
        note!("FastAPI peer: training and starting it …");
        let peer = start_peer(scratch.path(), &train)?;
        note!(
            "peer: {} requests/s for {} s, then the ramp …",
            args.rate,
            args.seconds
        );
        let (u, x) = (peer.url.clone(), texts.clone());
        let a = args.clone();
        let r = tokio::task::spawn_blocking(move || measure(&u, None, &x, &a)).await?;
        drop(peer);
        Some(r)
    };

    let report = json!({
        "model": {"dataset": "clinc150", "intents": 151, "instances": crate::serving::instances_per_version()},
        "coach": {"at_rate": coach_main, "ramp": coach_ramp, "highest_rate_p99_le_10ms": highest_held(&coach_ramp), "rss_mib": rss},
        "swap_under_500_per_s": {"swaps": swaps.len(), "swaps_ok": swaps_ok, "swap_ms": swap_ms, "requests": swap_load.requests, "failed": swap_load.errors, "p99_ms": swap_load.p99_ms, "p99_ms_within_1s_of_a_swap": pct(&during, 0.99), "max_ms": swap_load.max_ms},
        "peer_fastapi_sklearn": peer.as_ref().map(|(m, r)| json!({"at_rate": m, "ramp": r, "highest_rate_p99_le_10ms": highest_held(r)})),
    });
    if args.json {
        out!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    let f = |v: f64| format!("{v:.2}");
    out!(
        "serve: CLINC150 model (151 intents) deployed; single-text predicts, open loop, load generator in the same run"
    );
    out!(
        "{:<22} {:>6} {:>9} {:>9} {:>9} {:>9} {:>7}",
        "",
        "rate/s",
        "requests",
        "p50 ms",
        "p99 ms",
        "max ms",
        "errors"
    );
    let row = |name: &str, l: &Load| -> Result<()> {
        out!(
            "{:<22} {:>6} {:>9} {:>9} {:>9} {:>9} {:>7}",
            name,
            l.rate,
            l.requests,
            f(l.p50_ms),
            f(l.p99_ms),
            f(l.max_ms),
            l.errors
        );
        Ok(())
    };
    row("coach", &coach_main)?;
    if let Some((m, _)) = &peer {
        row("fastapi + sklearn", m)?;
        out!(
            "  p99 ratio (peer / coach): {:.1}×   (target: coach p99 ≤ 5 ms at 1000/s)",
            m.p99_ms / coach_main.p99_ms
        );
    }
    let held = |r: &[Load]| highest_held(r).map_or("none".to_owned(), |x| x.to_string());
    out!(
        "highest rate with p99 ≤ 10 ms: coach {}{}",
        held(&coach_ramp),
        peer.as_ref()
            .map(|(_, r)| format!(", fastapi + sklearn {}", held(r)))
            .unwrap_or_default()
    );
    for l in &coach_ramp {
        row("  coach ramp", l)?;
    }
    if let Some((_, r)) = &peer {
        for l in r {
            row("  peer ramp", l)?;
        }
    }
    out!(
        "swaps (deploy v2, roll back, deploy v2) under 500/s: {} of {} requests failed; p99 {} ms overall, {} ms within 1 s of a swap; each swap took {} ms",
        swap_load.errors,
        swap_load.requests,
        f(swap_load.p99_ms),
        f(pct(&during, 0.99)),
        swap_ms
            .iter()
            .map(|m| format!("{m:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if !swaps_ok {
        bail!("a swap was refused; see the daemon's log");
    }
    Ok(ExitCode::SUCCESS)
}

fn rss_of(p: &super::daemon::Proc) -> Option<f64> {
    super::daemon::rss_mib(p.pid())
}
