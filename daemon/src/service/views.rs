//! The documents Coach shows things as — one shape per thing, whichever
//! face asks: `GET /api/v1/runs/{id}` and `coach runs show --json` return
//! the same [`RunDetail`], `GET /api/v1/models/{id}` and `coach models show
//! --json` the same [`ModelView`], and so on. A face renders these; it
//! never builds its own.

use crate::compute::gpus::{AllocationEntry, GpuQueue, QueueEntry};
use crate::compute::inventory::Gpu;
use crate::compute::slurm::Followed;
use crate::core::state::{RunState, StepState, TriggerKind};
use crate::events::metrics::GpuGauge;
use crate::store::queue::{FireRow, LogRow};
use crate::store::{MetricRow, ModelRow, RunRow, StepRow};
use crate::workflow::set::Entry;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};

pub use crate::registry::ModelView;

/// A run, as lists show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunView {
    pub id: i64,
    pub workflow: String,
    pub workflow_file: String,
    /// The workflow version's hash.
    pub version: String,
    pub state: RunState,
    pub error: Option<String>,
    pub trigger: TriggerKind,
    pub queued_at: Option<DateTime<Utc>>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Times it was interrupted and resumed.
    pub resumes: i32,
}

impl From<&RunRow> for RunView {
    fn from(r: &RunRow) -> RunView {
        RunView {
            id: r.id,
            workflow: r.workflow.clone(),
            workflow_file: r.workflow_file.clone(),
            version: r.workflow_hash.clone(),
            state: r.state,
            error: r.error.clone(),
            trigger: r.trigger,
            queued_at: r.queued_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            resumes: r.resumes,
        }
    }
}

/// A run with its step attempts, metrics and the model it registered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunDetail {
    #[serde(flatten)]
    pub run: RunView,
    pub steps: Vec<StepView>,
    pub metrics: Vec<MetricView>,
    pub model: Option<ModelRef>,
}

/// One attempt of one step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepView {
    pub step: String,
    pub action: String,
    pub attempt: i32,
    pub state: StepState,
    pub error: Option<String>,
    /// What it produced (a step output, as stored).
    pub output: Option<Value>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<&StepRow> for StepView {
    fn from(s: &StepRow) -> StepView {
        StepView {
            step: s.step_id.clone(),
            action: s.action.clone(),
            attempt: s.attempt,
            state: s.state,
            error: s.error.clone(),
            output: s
                .output
                .as_deref()
                .and_then(|o| serde_json::from_str::<Value>(o).ok()),
            started_at: s.started_at,
            finished_at: s.finished_at,
        }
    }
}

/// A metric a step reported; `epoch` 0 is a final value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricView {
    pub step: String,
    pub name: String,
    pub value: f64,
    pub epoch: i64,
}

impl From<&MetricRow> for MetricView {
    fn from(m: &MetricRow) -> MetricView {
        MetricView {
            step: m.step_id.clone(),
            name: m.name.clone(),
            value: m.value,
            epoch: m.step,
        }
    }
}

/// A model named briefly.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelRef {
    pub id: i64,
    pub name: String,
    pub version: i32,
}

impl From<&ModelRow> for ModelRef {
    fn from(m: &ModelRow) -> ModelRef {
        ModelRef {
            id: m.id,
            name: m.name.clone(),
            version: m.version,
        }
    }
}

impl RunDetail {
    pub fn new(
        run: &RunRow,
        steps: &[StepRow],
        metrics: &[MetricRow],
        model: Option<&ModelRow>,
    ) -> RunDetail {
        RunDetail {
            run: RunView::from(run),
            steps: steps.iter().map(StepView::from).collect(),
            metrics: metrics.iter().map(MetricView::from).collect(),
            model: model.map(ModelRef::from),
        }
    }
}

/// A run's log line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogView {
    pub id: i64,
    pub step: Option<String>,
    pub level: String,
    pub message: String,
    pub at: DateTime<Utc>,
}

impl From<&LogRow> for LogView {
    fn from(l: &LogRow) -> LogView {
        LogView {
            id: l.id,
            step: l.step_id.clone(),
            level: l.level.clone(),
            message: l.message.clone(),
            at: l.at,
        }
    }
}

/// A workflow file as the daemon sees it: its version in service, or why
/// it has none.
pub fn workflow(e: &Entry) -> Value {
    let mut v = json!({
        "name": e.name(),
        "file": e.file.display().to_string(),
        "valid": e.error.is_none(),
        "error": e.error,
    });
    if let Some(g) = &e.good {
        let wf = &g.workflow;
        let t = &wf.trigger;
        v["version"] = json!(wf.hash);
        v["description"] = json!(wf.description);
        v["loaded_at"] = json!(g.loaded_at);
        v["trigger"] = json!({
            "cron": t.cron.as_ref().map(|c| c.expr.clone()),
            "timezone": t.cron.as_ref().map(|c| c.timezone.name()),
            "catch_up": t.catch_up,
            "watch": t.watch.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "debounce_ms": t.debounce.as_millis() as u64,
            "on": t.on,
            "concurrency": t.concurrency,
        });
    }
    v
}

/// [`workflow`], with its steps and recent trigger fires.
pub fn workflow_detail(e: &Entry, fires: &[FireRow]) -> Value {
    let mut v = workflow(e);
    if let Some(g) = &e.good {
        v["steps"] = g
            .workflow
            .steps
            .iter()
            .map(|st| {
                json!({
                    "id": st.id,
                    "action": st.action_name(),
                    "needs": st.needs,
                    "retries": st.retries,
                })
            })
            .collect();
    }
    v["recent_fires"] = fires
        .iter()
        .map(|f| {
            json!({"kind": f.kind, "scheduled_for": f.scheduled_for, "fired_at": f.fired_at,
                   "outcome": f.outcome, "detail": f.detail, "run": f.run_id})
        })
        .collect();
    v
}

/// One GPU with the steps allocated to it.
#[derive(Debug, Clone, Serialize)]
pub struct GpuEntry {
    #[serde(flatten)]
    pub gpu: Gpu,
    pub allocated_to: Vec<Value>,
}

/// The GPU inventory and its allocations.
#[derive(Debug, Clone, Serialize)]
pub struct GpuView {
    pub source: crate::compute::inventory::Source,
    pub reason: String,
    pub driver: Option<String>,
    pub at: DateTime<Utc>,
    pub gpus: Vec<GpuEntry>,
    pub allocations: Vec<AllocationEntry>,
}

impl GpuView {
    pub fn of(q: &GpuQueue) -> GpuView {
        let inv = q.inventory();
        let allocations = q.allocations();
        let gpus = inv
            .gpus
            .iter()
            .map(|g| GpuEntry {
                gpu: g.clone(),
                allocated_to: allocations
                    .iter()
                    .filter(|a| a.devices.contains(&g.index))
                    .map(|a| json!({"run": a.owner.run, "step": a.owner.step, "job": a.job}))
                    .collect(),
            })
            .collect();
        GpuView {
            source: inv.source,
            reason: inv.reason.clone(),
            driver: inv.driver.clone(),
            at: inv.at,
            gpus,
            allocations,
        }
    }

    /// What the GPU gauges of `/metrics` show.
    pub fn gauges(&self) -> Vec<GpuGauge> {
        self.gpus
            .iter()
            .map(|g| GpuGauge {
                index: g.gpu.index.clone(),
                name: g.gpu.name.clone(),
                allocations: g.allocated_to.len(),
                memory_used: g.gpu.memory_used,
                memory_total: g.gpu.memory_total,
                utilization: g.gpu.utilization,
                healthy: g.gpu.healthy,
            })
            .collect()
    }
}

/// Steps waiting for GPUs (with why), the allocations, and the Slurm jobs
/// Coach follows.
#[derive(Debug, Clone, Serialize)]
pub struct QueueView {
    pub waiting: Vec<QueueEntry>,
    pub running: Vec<AllocationEntry>,
    pub slurm: Vec<Followed>,
}
