//! `coach bench scheduler`: one scheduling pass over a large queue, and a
//! simulated day of arrivals on a simulated cluster: GPU utilisation, wait
//! per priority class, and each queue's share of GPU-hours against its
//! weight.

use crate::cli::out;
use crate::config::Config;
use crate::scheduler::gpu::{
    Allocation, Priority, Quota, Request, Snapshot, plan, uniform_cluster,
};
use anyhow::Result;
use serde_json::json;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Queued requests in the single-pass measurement.
    #[arg(long, default_value_t = 10_000)]
    pub queued: usize,
    /// Nodes, and GPUs per node.
    #[arg(long, default_value_t = 8)]
    pub nodes: u32,
    #[arg(long, default_value_t = 8)]
    pub gpus_per_node: u32,
    /// Arrivals per hour in the simulated day (15: about 90% of the
    /// default cluster's GPU-hours; more saturates it and shows fair share).
    #[arg(long, default_value_t = 15)]
    pub jobs_per_hour: u64,
    #[arg(long)]
    pub json: bool,
}

const GIB: u64 = 1 << 30;
const QUEUES: [(&str, f64); 3] = [("research", 2.0), ("production", 1.0), ("batch", 1.0)];
const CLASSES: [Priority; 4] = [
    Priority::Low,
    Priority::Normal,
    Priority::High,
    Priority::Critical,
];

/// A small deterministic generator (xorshift), so runs compare.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn request(rng: &mut Rng, job: u64, now: u64) -> Request {
    let gpus = [1, 1, 1, 1, 2, 2, 4, 8][rng.below(8) as usize];
    let exclusive = gpus > 1 || rng.below(2) == 0;
    Request {
        job,
        queue: QUEUES[rng.below(3) as usize].0.into(),
        priority: CLASSES[[0, 1, 1, 1, 1, 2, 2, 3][rng.below(8) as usize]],
        gpus,
        gpu_memory: if exclusive {
            0
        } else {
            (10 + rng.below(30)) * GIB
        },
        exclusive,
        preemptible: rng.below(4) == 0,
        submitted: now,
        max_duration: Some(600 + rng.below(4 * 3600)),
    }
}

pub fn run(_config: &Config, a: Args) -> Result<ExitCode> {
    let devices = uniform_cluster(a.nodes, a.gpus_per_node, 80 * GIB);
    let quotas: BTreeMap<String, Quota> = QUEUES
        .iter()
        .map(|(q, w)| {
            let gpus = (devices.len() as f64 * w / 4.0).round() as u32;
            (
                q.to_string(),
                Quota {
                    weight: *w,
                    gpus,
                    borrow: true,
                },
            )
        })
        .collect();

    // One pass over a long queue with the cluster half busy.
    let mut rng = Rng(0x5eed);
    let waiting: Vec<Request> = (0..a.queued as u64)
        .map(|j| request(&mut rng, j, j))
        .collect();
    let running: Vec<Allocation> = devices
        .iter()
        .step_by(2)
        .enumerate()
        .map(|(i, d)| Allocation {
            job: 1_000_000 + i as u64,
            queue: QUEUES[i % 3].0.into(),
            priority: Priority::Normal,
            preemptible: i % 4 == 0,
            exclusive: true,
            devices: vec![d.id.clone()],
            gpu_memory: 0,
            started: 0,
            max_duration: Some(3600),
        })
        .collect();
    let snapshot = Snapshot {
        now: a.queued as u64,
        devices: devices.clone(),
        running,
        waiting,
        quotas: quotas.clone(),
        aging: 1800,
    };
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..20 {
        let t = Instant::now();
        last = Some(plan(&snapshot));
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    let pass = last.unwrap_or_default();

    // A simulated day, one pass a minute; a job asks 2.5 GPUs for about
    // 1.6 hours on average.
    let mut rng = Rng(0xda7);
    let mut now = 0u64;
    let mut next_job = 0u64;
    let mut waiting: Vec<Request> = Vec::new();
    let mut running: Vec<(Allocation, u64)> = Vec::new();
    let mut waits: BTreeMap<Priority, Vec<f64>> = BTreeMap::new();
    let mut gpu_seconds: BTreeMap<String, f64> = BTreeMap::new();
    let mut busy_gpu_seconds = 0.0;
    let day = 24 * 3600;
    while now < day {
        // Poisson-like arrivals: each of 60 seconds has a chance.
        for _ in 0..60 {
            if rng.below(3600) < a.jobs_per_hour {
                waiting.push(request(&mut rng, next_job, now));
                next_job += 1;
            }
        }
        running.retain(|(a, ends)| *ends > now || a.job == u64::MAX);
        let snapshot = Snapshot {
            now,
            devices: devices.clone(),
            running: running.iter().map(|(a, _)| a.clone()).collect(),
            waiting: waiting.clone(),
            quotas: quotas.clone(),
            aging: 1800,
        };
        let p = plan(&snapshot);
        for victim in &p.preempt {
            if let Some(pos) = running.iter().position(|(a, _)| a.job == *victim) {
                let (a, _) = running.remove(pos);
                // Requeued: it resumes from its checkpoint later.
                waiting.push(Request {
                    job: a.job,
                    queue: a.queue,
                    priority: a.priority,
                    gpus: a.devices.len() as u32,
                    gpu_memory: a.gpu_memory,
                    exclusive: a.exclusive,
                    preemptible: true,
                    submitted: now,
                    max_duration: a.max_duration,
                });
            }
        }
        for (job, ids) in p.start {
            let Some(pos) = waiting.iter().position(|r| r.job == job) else {
                continue;
            };
            let r = waiting.remove(pos);
            waits
                .entry(r.priority)
                .or_default()
                .push((now - r.submitted) as f64 / 60.0);
            // Jobs run a random part of their declared maximum.
            let max = r.max_duration.unwrap_or(3600);
            let took = max / 2 + rng.below(max / 2 + 1);
            running.push((
                Allocation {
                    job,
                    queue: r.queue,
                    priority: r.priority,
                    preemptible: r.preemptible,
                    exclusive: r.exclusive,
                    devices: ids,
                    gpu_memory: r.gpu_memory,
                    started: now,
                    max_duration: r.max_duration,
                },
                now + took,
            ));
        }
        waiting.retain(|r| !p.rejected.iter().any(|(j, _)| *j == r.job));
        for (a, _) in &running {
            let share = if a.exclusive {
                1.0
            } else {
                a.gpu_memory as f64 / (80 * GIB) as f64
            };
            let g = a.devices.len() as f64 * share * 60.0;
            busy_gpu_seconds += g;
            *gpu_seconds.entry(a.queue.clone()).or_default() += g;
        }
        now += 60;
    }
    let utilisation = busy_gpu_seconds / (devices.len() as f64 * day as f64);
    let total_weight: f64 = QUEUES.iter().map(|(_, w)| w).sum();
    let total_gpu: f64 = gpu_seconds.values().sum();
    let p95 = |v: &Vec<f64>| {
        let mut v = v.clone();
        v.sort_by(f64::total_cmp);
        v.get(((v.len() as f64 * 0.95) as usize).min(v.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    let report = json!({
        "pass": {"queued": a.queued, "gpus": devices.len(), "nodes": a.nodes,
                 "p50_ms": times[times.len() / 2], "max_ms": times.last(),
                 "started": pass.start.len(), "waiting": pass.waiting.len(), "rejected": pass.rejected.len(), "preempted": pass.preempt.len()},
        "day": {
            "jobs": next_job, "still_waiting": waiting.len(), "mean_gpu_utilisation": utilisation,
            "p95_wait_minutes": waits.iter().map(|(p, v)| (format!("{p:?}").to_lowercase(), json!(p95(v)))).collect::<serde_json::Map<_, _>>(),
            "share": QUEUES.iter().map(|(q, w)| (q.to_string(), json!({
                "weight_share": w / total_weight,
                "gpu_hours_share": gpu_seconds.get(*q).copied().unwrap_or(0.0) / total_gpu.max(1.0),
                "gpu_hours": gpu_seconds.get(*q).copied().unwrap_or(0.0) / 3600.0,
            }))).collect::<serde_json::Map<_, _>>(),
        },
    });
    if a.json {
        out!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    out!(
        "one pass: {} queued over {} GPUs in {} nodes: p50 {:.2} ms, max {:.2} ms (started {}, waiting {}, rejected {}, preempted {})   (target ≤ 10 ms)",
        a.queued,
        devices.len(),
        a.nodes,
        times[times.len() / 2],
        times.last().copied().unwrap_or(0.0),
        report["pass"]["started"],
        report["pass"]["waiting"],
        report["pass"]["rejected"],
        report["pass"]["preempted"]
    );
    out!(
        "a simulated day at {} arrivals/hour: {} jobs, mean GPU utilisation {:.1}%, {} still waiting at the end (preempted jobs are requeued and counted again below)",
        a.jobs_per_hour,
        next_job,
        utilisation * 100.0,
        waiting.len()
    );
    for (p, v) in &waits {
        out!(
            "  p95 wait {:<9} {:>7.1} min over {} jobs",
            format!("{p:?}").to_lowercase(),
            p95(v),
            v.len()
        );
    }
    for (q, w) in QUEUES {
        let got = gpu_seconds.get(q).copied().unwrap_or(0.0);
        out!(
            "  queue {q:<11} weight share {:>5.1}%, GPU-hours share {:>5.1}% ({:.0} GPU-hours)",
            w / total_weight * 100.0,
            got / total_gpu.max(1.0) * 100.0,
            got / 3600.0
        );
    }
    Ok(ExitCode::SUCCESS)
}
