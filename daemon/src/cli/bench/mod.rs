//! `coach bench …`: measurements of Coach itself, printed as a table, with
//! the peer each is compared against measured in the same invocation. One
//! file per benchmark. They stay in the product binary (not a crate of
//! their own) because users run them as `coach bench` on their own
//! machines; they live in this folder so the rest of `cli/` stays small.

use crate::cli::out;
mod daemon;
mod dashboard;
mod experiment;
mod intent;
mod learning;
mod scheduler;
mod scripts;
mod serve;
mod submit;

use crate::config::Config;
use crate::plugin::cache::CacheOutcome;
use crate::plugin::{JobSpec, PluginHost};
use anyhow::{Result, bail};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Intent classification on a public dataset through the real pipeline
    /// (source plugin → split → trainer plugin → evaluate), with the
    /// published CLINC150 results and, with `--peer sklearn`, the
    /// scikit-learn peer measured in the same invocation.
    Intent(intent::Args),
    /// Entity extraction on a dataset with labelled spans: span-level
    /// precision, recall and F1 per entity type.
    Entities(intent::EntityArgs),
    /// The daemon as a service: start to ready, idle memory, API latency at
    /// a fixed rate over many stored runs, trigger to first step, event
    /// delivery.
    Daemon(daemon::Args),
    /// The dashboard's pages over a store of 10,000 runs, 100 models and
    /// 100,000 conversations: server time per page, page and asset
    /// weight, and first contentful paint in headless Chromium.
    Dashboard(dashboard::Args),
    /// Predictions from a deployed CLINC150 model on a real daemon under
    /// fixed-rate load, beside FastAPI serving the scikit-learn peer; and
    /// deploys and a rollback under load.
    Serve(serve::Args),
    /// Experiments: assigning users to arms, and the results of an
    /// experiment with 1,000,000 logged events.
    Experiment(experiment::Args),
    /// Script costs: a gate evaluation and a data rule over 100,000
    /// examples, after compilation.
    Scripts(scripts::Args),
    /// GPU placement: one pass over a long queue, and a simulated day
    /// (utilisation, p95 wait per priority class, fair share).
    Scheduler(scheduler::Args),
    /// GPU job submission to a running daemon, jobs per second, with
    /// Slurm's `sbatch` measured beside it.
    Submit(submit::Args),
    /// Conversation analysis through the analyzer plugin, fallback
    /// clustering of 100,000 messages, and feedback reaching the review
    /// queue under 200 posts a second to a real daemon.
    Analyze(learning::AnalyzeArgs),
    /// The whole learning loop on a real daemon: corrections posted,
    /// reviewed by two people, the retrained, gated, deployed model
    /// answering the new intent — with each stage's share.
    Loop(learning::LoopArgs),
    /// Plugin host costs: compile (cache miss), compile-cache hit, and a
    /// fresh sandboxed instance per job.
    Plugins {
        /// Plugins to measure (default: every installed plugin).
        #[arg(long)]
        plugin: Vec<String>,
        /// Repetitions of the cheap measurements.
        #[arg(long, default_value_t = 200)]
        iterations: usize,
        #[arg(long)]
        json: bool,
    },
}

fn stats(mut v: Vec<Duration>) -> (f64, f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mean = v.iter().map(|d| ms(*d)).sum::<f64>() / v.len().max(1) as f64;
    let p50 = ms(v[v.len() / 2]);
    let p99 = ms(v[((v.len() as f64 * 0.99) as usize).min(v.len() - 1)]);
    (mean, p50, p99)
}

pub async fn run(config: Config, cmd: Command) -> Result<ExitCode> {
    match cmd {
        Command::Intent(args) => return intent::run(config, args).await,
        Command::Entities(args) => return intent::run_entities(config, args).await,
        Command::Daemon(args) => return daemon::run(config, args).await,
        Command::Dashboard(args) => return dashboard::run(config, args).await,
        Command::Serve(args) => return serve::run(config, args).await,
        Command::Experiment(args) => return experiment::run(config, args).await,
        Command::Scripts(args) => return scripts::run(&config, args),
        Command::Scheduler(args) => return scheduler::run(&config, args),
        Command::Submit(args) => return submit::run(config, args).await,
        Command::Analyze(args) => return learning::analyze(config, args).await,
        Command::Loop(args) => return learning::learning_loop(config, args).await,
        Command::Plugins {
            plugin,
            iterations,
            json,
        } => {
            let host = PluginHost::new(&config)?;
            let ids: Vec<String> = if plugin.is_empty() {
                host.plugins().iter().map(|p| p.id().to_owned()).collect()
            } else {
                plugin
            };
            let iterations = iterations.max(1);
            let mut rows = Vec::new();
            for id in &ids {
                let p = host.get(id)?.clone();
                // Cold: remove the cached compile first.
                let _ = std::fs::remove_file(host.cache().path_for(&p.wasm_sha256));
                let miss = host.compile_uncached_memo(id)?;
                if miss.outcome != CacheOutcome::Miss {
                    bail!("expected a cache miss for `{id}`");
                }
                let mut hits = Vec::new();
                for _ in 0..iterations.min(50) {
                    let t = host.compile_uncached_memo(id)?;
                    hits.push(t.elapsed);
                }
                let mut inst = Vec::new();
                for i in 0..=iterations {
                    let start = Instant::now();
                    let spec = JobSpec {
                        run: "bench".into(),
                        step: "bench".into(),
                        ..Default::default()
                    };
                    match p.manifest.kind {
                        crate::plugin::manifest::Kind::Trainer => drop(host.trainer(id, spec)?),
                        crate::plugin::manifest::Kind::Source => drop(host.source(id, spec)?),
                        crate::plugin::manifest::Kind::Analyzer => drop(host.analyzer(id, spec)?),
                    }
                    // The first job also links the plugin; it is not a per-job cost.
                    if i > 0 {
                        inst.push(start.elapsed());
                    }
                }
                rows.push((
                    id.clone(),
                    p.wasm.len(),
                    miss.elapsed,
                    stats(hits),
                    stats(inst),
                ));
            }
            if json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|(id, size, miss, hit, inst)| {
                        serde_json::json!({
                            "plugin": id, "wasm_bytes": size,
                            "compile_ms": miss.as_secs_f64() * 1000.0,
                            "cache_hit_ms": {"mean": hit.0, "p50": hit.1, "p99": hit.2},
                            "instantiate_ms": {"mean": inst.0, "p50": inst.1, "p99": inst.2},
                            "iterations": iterations,
                        })
                    })
                    .collect();
                out!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                out!("plugin host ({iterations} jobs per plugin; times in ms)");
                out!(
                    "{:<16} {:>9} {:>12} {:>18} {:>26}",
                    "plugin",
                    "wasm KiB",
                    "compile",
                    "cache hit p50/p99",
                    "instance per job mean/p50/p99"
                );
                for (id, size, miss, hit, inst) in &rows {
                    out!(
                        "{:<16} {:>9} {:>12.1} {:>10.2} / {:<6.2} {:>11.3} / {:.3} / {:.3}",
                        id,
                        size / 1024,
                        miss.as_secs_f64() * 1000.0,
                        hit.1,
                        hit.2,
                        inst.0,
                        inst.1,
                        inst.2
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
