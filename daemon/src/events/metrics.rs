//! Prometheus metrics: runs by state, queue depth, step durations, plugin
//! calls and traps, trigger fires, HTTP latency, GPUs, Slurm jobs, dropped
//! log lines. Served at `/metrics`.

use crate::core::state::RunState;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    pub action: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    pub action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TrapLabels {
    pub plugin: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FireLabels {
    pub kind: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    pub route: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    pub model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GpuLabels {
    pub gpu: String,
    pub name: String,
}

/// One GPU as the gauges show it.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuGauge {
    pub index: String,
    pub name: String,
    /// Steps allocated to it.
    pub allocations: usize,
    pub memory_used: u64,
    pub memory_total: u64,
    pub utilization: Option<u32>,
    pub healthy: bool,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    pub runs: Family<StateLabels, Gauge>,
    pub queue_depth: Gauge,
    pub steps_started: Family<ActionLabels, Counter>,
    pub step_seconds: Histograms<StepLabels>,
    pub plugin_failures: Family<TrapLabels, Counter>,
    pub trigger_fires: Family<FireLabels, Counter>,
    pub http_seconds: Histograms<HttpLabels>,
    pub gpu_allocations: Family<GpuLabels, Gauge>,
    pub gpu_memory_used: Family<GpuLabels, Gauge>,
    pub gpu_memory_total: Family<GpuLabels, Gauge>,
    pub gpu_utilization: Family<GpuLabels, Gauge>,
    pub gpu_healthy: Family<GpuLabels, Gauge>,
    pub gpu_waiting: Gauge,
    pub slurm_jobs: Family<StateLabels, Gauge>,
    pub log_lines_dropped: Counter,
    pub review_items: Family<StateLabels, Gauge>,
    pub quality: Family<ModelLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub quality_conversations: Family<ModelLabels, Gauge>,
}

fn step_histogram() -> Histogram {
    // 10 ms … about 23 hours.
    Histogram::new(exponential_buckets(0.01, 3.0, 14))
}

fn http_histogram() -> Histogram {
    // 100 µs … about 3 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("coach");
        let m = Metrics {
            runs: Family::default(),
            queue_depth: Gauge::default(),
            steps_started: Family::default(),
            step_seconds: Family::new_with_constructor(step_histogram),
            plugin_failures: Family::default(),
            trigger_fires: Family::default(),
            http_seconds: Family::new_with_constructor(http_histogram),
            gpu_allocations: Family::default(),
            gpu_memory_used: Family::default(),
            gpu_memory_total: Family::default(),
            gpu_utilization: Family::default(),
            gpu_healthy: Family::default(),
            gpu_waiting: Gauge::default(),
            slurm_jobs: Family::default(),
            log_lines_dropped: Counter::default(),
            review_items: Family::default(),
            quality: Family::default(),
            quality_conversations: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "review_items",
            "Review queue items, by state",
            m.review_items.clone(),
        );
        registry.register(
            "conversation_quality_score",
            "Mean analyzer-quality score of each model's conversations of the last 7 days",
            m.quality.clone(),
        );
        registry.register(
            "conversation_quality_conversations",
            "Conversations of the last 7 days with an analysis, by model",
            m.quality_conversations.clone(),
        );
        registry.register("runs", "Runs in the store, by state", m.runs.clone());
        registry.register(
            "queue_depth",
            "Runs waiting in the queue",
            m.queue_depth.clone(),
        );
        registry.register(
            "steps_started",
            "Step attempts started, by plugin id or built-in kind (plugin calls)",
            m.steps_started.clone(),
        );
        registry.register(
            "step_duration_seconds",
            "Step attempt durations, by action and outcome",
            m.step_seconds.clone(),
        );
        registry.register(
            "plugin_failures",
            "Plugin calls that failed, by plugin and reason (timeout, memory, output, trap are sandbox traps)",
            m.plugin_failures.clone(),
        );
        registry.register(
            "trigger_fires",
            "Trigger fires, by kind and outcome",
            m.trigger_fires.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency, by method, route and status",
            m.http_seconds.clone(),
        );
        for (name, help, family) in [
            (
                "gpu_allocations",
                "Steps allocated to each GPU",
                &m.gpu_allocations,
            ),
            (
                "gpu_memory_used_bytes",
                "GPU memory in use (all processes)",
                &m.gpu_memory_used,
            ),
            (
                "gpu_memory_total_bytes",
                "GPU memory installed",
                &m.gpu_memory_total,
            ),
            (
                "gpu_utilization_percent",
                "GPU utilisation the driver reports",
                &m.gpu_utilization,
            ),
            ("gpu_healthy", "1 healthy, 0 drained", &m.gpu_healthy),
        ] {
            registry.register(name, help, family.clone());
        }
        registry.register(
            "gpu_queue_waiting",
            "Steps waiting for GPUs",
            m.gpu_waiting.clone(),
        );
        registry.register(
            "slurm_jobs",
            "Slurm jobs of process steps Coach follows, by Slurm state",
            m.slurm_jobs.clone(),
        );
        registry.register(
            "log_lines_dropped",
            "Run log lines dropped because the store fell behind",
            m.log_lines_dropped.clone(),
        );
        Metrics { registry, ..m }
    }

    /// GPU gauges, at scrape time: one entry per GPU, and how many steps
    /// wait for GPUs.
    pub fn set_gpus(&self, gpus: &[GpuGauge], waiting: usize) {
        for g in gpus {
            let l = GpuLabels {
                gpu: g.index.clone(),
                name: g.name.clone(),
            };
            self.gpu_allocations
                .get_or_create(&l)
                .set(g.allocations as i64);
            self.gpu_memory_used
                .get_or_create(&l)
                .set(g.memory_used as i64);
            self.gpu_memory_total
                .get_or_create(&l)
                .set(g.memory_total as i64);
            if let Some(u) = g.utilization {
                self.gpu_utilization.get_or_create(&l).set(i64::from(u));
            }
            self.gpu_healthy.get_or_create(&l).set(i64::from(g.healthy));
        }
        self.gpu_waiting.set(waiting as i64);
    }

    /// Followed Slurm jobs by Slurm state, at scrape time.
    pub fn set_slurm<'a>(&self, states: impl IntoIterator<Item = &'a str>) {
        self.slurm_jobs.clear();
        for state in states {
            self.slurm_jobs
                .get_or_create(&StateLabels {
                    state: state.to_owned(),
                })
                .inc();
        }
    }

    pub fn step_started(&self, action: &str) {
        self.steps_started
            .get_or_create(&ActionLabels {
                action: action.to_owned(),
            })
            .inc();
    }

    pub fn step_finished(&self, action: &str, ok: bool, seconds: f64) {
        self.step_seconds
            .get_or_create(&StepLabels {
                action: action.to_owned(),
                outcome: if ok { "succeeded" } else { "failed" }.to_owned(),
            })
            .observe(seconds);
    }

    /// A plugin call failed; `reason` is a short label (`timeout`,
    /// `memory`, `trap`, …).
    pub fn plugin_failed(&self, plugin: &str, reason: &str) {
        self.plugin_failures
            .get_or_create(&TrapLabels {
                plugin: plugin.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    pub fn trigger_fired(&self, kind: &str, outcome: &str) {
        self.trigger_fires
            .get_or_create(&FireLabels {
                kind: kind.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Set the run gauges from the store's counts.
    pub fn set_run_counts(&self, counts: &[(RunState, i64)]) {
        self.runs.clear();
        let mut queued = 0;
        for (state, n) in counts {
            self.runs
                .get_or_create(&StateLabels {
                    state: state.to_string(),
                })
                .set(*n);
            if *state == RunState::Queued {
                queued = *n;
            }
        }
        self.queue_depth.set(queued);
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
