//! `coach bench daemon`: the daemon as a user runs it — a real `coach
//! daemon` process on loopback — measured from outside: start to ready
//! (cold and warm compile cache), idle memory, `GET /api/v1/runs?limit=50`
//! latency at a fixed request rate over a store of many runs, trigger to
//! first step, and server-sent event delivery.

use crate::cli::{note, out};
use crate::config::Config;
use crate::core::state::{RunState, TriggerKind};
use crate::store::Store;
use crate::store::entities::training_runs;
use crate::store::tokens::Role;
use anyhow::{Context, Result, bail};
use chrono::Utc;
use sea_orm::{EntityTrait, Set};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Finished runs stored before the API is measured.
    #[arg(long, default_value_t = 10_000)]
    pub runs: usize,
    /// Requests per second, sent on a fixed schedule (open loop: latency
    /// counts from when a request was due, so a slow answer delays none).
    #[arg(long, default_value_t = 500)]
    pub rate: u32,
    /// Seconds of load.
    #[arg(long, default_value_t = 10)]
    pub seconds: u32,
    /// Runs of the quickstart workflow to time from trigger to first step.
    #[arg(long, default_value_t = 20)]
    pub triggers: usize,
    #[arg(long)]
    pub json: bool,
}

pub(super) struct Proc {
    child: Child,
    pub(super) url: String,
    ready_after: Duration,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(super) fn start(config: &Path, log: &Path) -> Result<Proc> {
    let t = Instant::now();
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--config")
        .arg(config)
        .arg("daemon")
        .env_remove("COACH_DATA_DIR")
        .env_remove("COACH_DATABASE_URL")
        .env_remove("COACH_LISTEN")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log)?)
        .spawn()
        .context("cannot start `coach daemon`")?;
    let out = child
        .stdout
        .take()
        .context("cannot read the daemon's output")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(u) = line.strip_prefix("coach daemon listening on ") {
                let _ = tx.send(u.to_owned());
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(120))
        .with_context(|| format!("the daemon did not start; see {}", log.display()))?;
    Ok(Proc {
        child,
        url,
        ready_after: t.elapsed(),
    })
}

pub(super) fn stop(mut p: Proc) -> Result<Duration> {
    let t = Instant::now();
    Command::new("kill")
        .arg("-TERM")
        .arg(p.child.id().to_string())
        .status()?;
    p.child.wait()?;
    Ok(t.elapsed())
}

impl Proc {
    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }
}

pub(super) fn rss_mib(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = s
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

pub(super) fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

pub(super) fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

pub(super) async fn seed(config: &Config, runs: usize) -> Result<String> {
    let store = Store::connect(&config.database_url()).await?;
    let now = Utc::now();
    for chunk in (0..runs).collect::<Vec<_>>().chunks(1000) {
        let rows = chunk.iter().map(|i| training_runs::ActiveModel {
            workflow: Set(format!("bench-{}", i % 20)),
            workflow_file: Set("workflows/bench.toml".into()),
            workflow_hash: Set(format!("{:064x}", i % 7)),
            state: Set(if i % 10 == 0 {
                RunState::Failed
            } else {
                RunState::Succeeded
            }),
            error: Set(
                (i % 10 == 0).then(|| "step `train`: plugin `x` ran past its 30m deadline".into())
            ),
            started_at: Set(now - chrono::Duration::seconds((runs - i) as i64 * 60)),
            finished_at: Set(Some(
                now - chrono::Duration::seconds((runs - i) as i64 * 60 - 30),
            )),
            trigger: Set(TriggerKind::Cron),
            executor: Set("daemon".into()),
            queued_at: Set(Some(
                now - chrono::Duration::seconds((runs - i) as i64 * 60),
            )),
            resumes: Set(0),
            ..Default::default()
        });
        training_runs::Entity::insert_many(rows)
            .exec(store.connection())
            .await?;
    }
    Ok(store.create_token("bench", Role::Admin).await?.1)
}

/// Open-loop load: requests due every 1/rate s; each worker takes the next
/// due time, waits for it, sends, and records (latency from due, service
/// time, status).
fn load(url: &str, token: &str, rate: u32, seconds: u32) -> (Vec<f64>, Vec<f64>, usize) {
    let total = (rate * seconds) as usize;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = Instant::now() + Duration::from_millis(200);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers = 32;
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            let next = next.clone();
            let url = format!("{url}/api/v1/runs?limit=50");
            let auth = format!("Bearer {token}");
            std::thread::spawn(move || {
                let a = agent();
                let mut out = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= total {
                        return out;
                    }
                    let due = start + interval * i as u32;
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let sent = Instant::now();
                    let ok = match a.get(&url).header("Authorization", &auth).call() {
                        Ok(mut r) => {
                            let ok = r.status().as_u16() == 200;
                            let _ = r.body_mut().read_to_vec();
                            ok
                        }
                        Err(_) => false,
                    };
                    let done = Instant::now();
                    out.push((
                        (done - due).as_secs_f64() * 1000.0,
                        (done - sent).as_secs_f64() * 1000.0,
                        ok,
                    ));
                }
            })
        })
        .collect();
    let mut from_due = Vec::new();
    let mut service = Vec::new();
    let mut errors = 0;
    for h in handles {
        for (d, s, ok) in h.join().unwrap_or_default() {
            from_due.push(d);
            service.push(s);
            errors += usize::from(!ok);
        }
    }
    from_due.sort_by(f64::total_cmp);
    service.sort_by(f64::total_cmp);
    (from_due, service, errors)
}

/// Trigger the quickstart `n` times, one after another; for each, the time
/// from sending the POST to receiving `step.started`, and every event's
/// delivery delay (receipt minus the server's `at`).
fn triggers(url: &str, token: &str, n: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    let (tx, rx) = mpsc::channel::<(String, Value, chrono::DateTime<Utc>)>();
    let events_url = format!("{url}/api/v1/events");
    let auth = format!("Bearer {token}");
    let a = agent();
    let res = a
        .get(&events_url)
        .header("Authorization", &auth)
        .call()
        .context("cannot open the event stream")?;
    std::thread::spawn(move || {
        let _ = crate::events::stream::read(res.into_body().into_reader(), |event, v| {
            tx.send((event.to_owned(), v.clone(), Utc::now())).is_ok()
        });
    });
    let mut to_step = Vec::new();
    let mut delivery = Vec::new();
    for _ in 0..n {
        let sent = Instant::now();
        let mut r = a
            .post(format!("{url}/api/v1/workflows/wedding-assistant/runs"))
            .header("Authorization", &auth)
            .send_empty()?;
        let v: Value = r.body_mut().read_json()?;
        let Some(id) = v["run"]["id"].as_i64() else {
            bail!("trigger failed: {v}");
        };
        let mut first_step = None;
        loop {
            let (event, v, received) = rx
                .recv_timeout(Duration::from_secs(120))
                .context("no event for 120 s")?;
            if let Some(at) = v["at"]
                .as_str()
                .and_then(|t| t.parse::<chrono::DateTime<Utc>>().ok())
            {
                delivery.push((received - at).num_microseconds().unwrap_or(0) as f64 / 1000.0);
            }
            if v["run"] != id {
                continue;
            }
            if event == "step.started" && first_step.is_none() {
                first_step = Some(sent.elapsed());
            }
            if event == "run.finished" {
                if v["state"] != "succeeded" {
                    bail!("run {id} {}: {}", v["state"], v["error"]);
                }
                break;
            }
        }
        to_step.push(first_step.unwrap_or_default().as_secs_f64() * 1000.0);
    }
    to_step.sort_by(f64::total_cmp);
    delivery.sort_by(f64::total_cmp);
    Ok((to_step, delivery))
}

/// A scratch installation serving the checkout's workflows: (its folder,
/// its config file, the config, the daemon's log file).
pub(super) fn scratch(
    bench: &str,
) -> Result<(
    tempfile::TempDir,
    std::path::PathBuf,
    Config,
    std::path::PathBuf,
)> {
    let scratch = tempfile::tempdir()?;
    let workflows = std::env::current_dir()?.join("workflows");
    if !workflows.join("quickstart.toml").is_file() {
        bail!("run `coach bench {bench}` from the Coach checkout (it serves workflows/)");
    }
    let text = format!(
        "data_dir = {:?}\nplugin_dirs = []\n[grants.source-files]\nread = [{:?}]\n[daemon]\nlisten = \"127.0.0.1:0\"\nworkflow_dirs = [{:?}]\n",
        scratch.path().join("data"),
        workflows,
        workflows
    );
    let cfg_path = scratch.path().join("coach.toml");
    std::fs::write(&cfg_path, text)?;
    let config = Config::load(Some(&cfg_path))?;
    let log = scratch.path().join("daemon.log");
    Ok((scratch, cfg_path, config, log))
}

/// Measures its own scratch daemon; the caller's config is not used.
pub async fn run(_config: Config, args: Args) -> Result<ExitCode> {
    let (_scratch, cfg_path, bench_config, log) = scratch("daemon")?;
    note!("seeding {} runs …", args.runs);
    let token = seed(&bench_config, args.runs).await?;

    let cold = start(&cfg_path, &log)?;
    let cold_ready = cold.ready_after;
    stop(cold)?;
    let warm = start(&cfg_path, &log)?;
    std::thread::sleep(Duration::from_secs(2));
    let idle_rss = rss_mib(warm.child.id());
    note!("load: {} requests/s for {} s …", args.rate, args.seconds);
    let url = warm.url.clone();
    let (tok, rate, secs) = (token.clone(), args.rate, args.seconds);
    let (from_due, service, errors) =
        tokio::task::spawn_blocking(move || load(&url, &tok, rate, secs)).await?;
    let loaded_rss = rss_mib(warm.child.id());
    note!("triggers: {} quickstart runs …", args.triggers);
    let url = warm.url.clone();
    let (tok, n) = (token.clone(), args.triggers);
    let (to_step, delivery) =
        tokio::task::spawn_blocking(move || triggers(&url, &tok, n)).await??;
    let warm_ready = warm.ready_after;
    let stop_time = stop(warm)?;

    let sent = from_due.len();
    let report = json!({
        "runs_stored": args.runs,
        "start_to_ready_ms": {"cold_cache": cold_ready.as_secs_f64() * 1000.0, "warm_cache": warm_ready.as_secs_f64() * 1000.0},
        "idle_rss_mib": idle_rss,
        "rss_after_load_mib": loaded_rss,
        "get_runs_limit_50": {
            "rate_per_s": args.rate, "seconds": args.seconds, "requests": sent, "errors": errors,
            "latency_from_due_ms": {"p50": pct(&from_due, 0.5), "p90": pct(&from_due, 0.9), "p99": pct(&from_due, 0.99), "max": from_due.last()},
            "service_time_ms": {"p50": pct(&service, 0.5), "p99": pct(&service, 0.99)},
        },
        "trigger_to_first_step_ms": {"n": to_step.len(), "p50": pct(&to_step, 0.5), "p99": pct(&to_step, 0.99), "max": to_step.last()},
        "sse_delivery_ms": {"events": delivery.len(), "p50": pct(&delivery, 0.5), "p99": pct(&delivery, 0.99), "max": delivery.last()},
        "shutdown_ms": stop_time.as_secs_f64() * 1000.0,
    });
    if args.json {
        out!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    let f = |v: &Value| {
        v.as_f64()
            .map(|x| format!("{x:.2}"))
            .unwrap_or_else(|| "-".into())
    };
    out!("coach daemon on loopback, {} runs stored", args.runs);
    out!(
        "  start to ready        cold cache {} ms, warm cache {} ms   (target ≤ 1000 ms warm)",
        f(&report["start_to_ready_ms"]["cold_cache"]),
        f(&report["start_to_ready_ms"]["warm_cache"])
    );
    out!(
        "  memory                idle {} MiB, after load {} MiB   (target ≤ 60 MiB idle)",
        f(&report["idle_rss_mib"]),
        f(&report["rss_after_load_mib"])
    );
    let g = &report["get_runs_limit_50"];
    out!(
        "  GET /api/v1/runs?limit=50 at {}/s for {} s: {} requests, {} errors",
        args.rate,
        args.seconds,
        sent,
        errors
    );
    out!(
        "      latency from due  p50 {} ms, p90 {} ms, p99 {} ms, max {} ms   (target p99 ≤ 10 ms)",
        f(&g["latency_from_due_ms"]["p50"]),
        f(&g["latency_from_due_ms"]["p90"]),
        f(&g["latency_from_due_ms"]["p99"]),
        f(&g["latency_from_due_ms"]["max"])
    );
    out!(
        "      service time      p50 {} ms, p99 {} ms",
        f(&g["service_time_ms"]["p50"]),
        f(&g["service_time_ms"]["p99"])
    );
    let t = &report["trigger_to_first_step_ms"];
    out!(
        "  trigger → first step  p50 {} ms, p99 {} ms, max {} ms over {} runs   (target ≤ 100 ms)",
        f(&t["p50"]),
        f(&t["p99"]),
        f(&t["max"]),
        t["n"]
    );
    let s = &report["sse_delivery_ms"];
    out!(
        "  SSE delivery          p50 {} ms, p99 {} ms, max {} ms over {} events   (target ≤ 500 ms)",
        f(&s["p50"]),
        f(&s["p99"]),
        f(&s["max"]),
        s["events"]
    );
    out!("  SIGTERM to exit       {} ms", f(&report["shutdown_ms"]));
    Ok(ExitCode::SUCCESS)
}
