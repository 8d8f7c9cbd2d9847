//! What happens, as it happens: the event bus ([`Bus`]) that carries every
//! run's events to listeners (server-sent events) and its log lines to the
//! store; the [`Reporter`](report::Reporter) a run reports through; and the
//! Prometheus [`metrics`](metrics::Metrics).
//!
//! The log lines travel on a bounded channel: when the store falls behind
//! by [`LOG_BUFFER`] lines, further lines are dropped (and counted in
//! `coach_log_lines_dropped_total`) rather than held in memory without end.
//! A reader of the stored lines waits for those already sent
//! ([`Bus::logs_flushed`]), so a run that has finished shows all its lines.

pub mod metrics;
pub mod report;
pub mod stream;

use crate::core::ids::RunId;
use crate::core::state::RunState;
use chrono::{DateTime, Utc};
use metrics::Metrics;
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, broadcast, mpsc};

pub use report::{LogReporter, Reporter, RunReporter};

/// Log lines on their way to the store, at most.
pub const LOG_BUFFER: usize = 65_536;

/// A log line on its way to the store.
#[derive(Debug, Clone)]
pub struct LogLine {
    pub run_id: RunId,
    pub step_id: Option<String>,
    pub level: String,
    pub message: String,
    pub at: DateTime<Utc>,
}

/// One thing that happened.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Increases by one per event, for the SSE `id`.
    pub seq: u64,
    pub at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<RunId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type")]
pub enum EventKind {
    #[serde(rename = "run.queued")]
    RunQueued { trigger: String },
    #[serde(rename = "run.started")]
    RunStarted { resumes: i32 },
    #[serde(rename = "run.finished")]
    RunFinished {
        state: RunState,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        model: Option<i64>,
    },
    #[serde(rename = "step.started")]
    StepStarted {
        step: String,
        action: String,
        attempt: u32,
    },
    #[serde(rename = "step.finished")]
    StepFinished {
        step: String,
        ok: bool,
        summary: String,
    },
    #[serde(rename = "step.skipped")]
    StepSkipped { step: String, reason: String },
    #[serde(rename = "progress")]
    Progress {
        step: String,
        fraction: f32,
        message: String,
    },
    #[serde(rename = "metric")]
    Metric {
        step: String,
        name: String,
        value: f64,
        epoch: u32,
    },
    #[serde(rename = "log")]
    Log {
        #[serde(skip_serializing_if = "Option::is_none")]
        step: Option<String>,
        level: String,
        message: String,
    },
    #[serde(rename = "workflow.loaded")]
    WorkflowLoaded { version: String },
    #[serde(rename = "workflow.rejected")]
    WorkflowRejected { file: String, errors: String },
    #[serde(rename = "trigger.fired")]
    TriggerFired { kind: String, outcome: String },
    /// An experiment or canary started.
    #[serde(rename = "experiment.started")]
    ExperimentStarted {
        experiment: String,
        model: String,
        environment: String,
        kind: String,
    },
    /// An experiment's results changed (a compact summary; `coach
    /// experiment show` has everything).
    #[serde(rename = "experiment.results")]
    ExperimentResults {
        experiment: String,
        results: serde_json::Value,
    },
    /// A look decided: `promote`, `rollback` or `continue` (sent when the
    /// decision or its reason changes), or a canary moved a step.
    #[serde(rename = "experiment.decided")]
    ExperimentDecided {
        experiment: String,
        decision: String,
        reason: String,
    },
    /// An experiment file could not be read or started.
    #[serde(rename = "experiment.rejected")]
    ExperimentRejected { file: String, errors: String },
}

impl EventKind {
    /// The SSE `event:` name.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::RunQueued { .. } => "run.queued",
            EventKind::RunStarted { .. } => "run.started",
            EventKind::RunFinished { .. } => "run.finished",
            EventKind::StepStarted { .. } => "step.started",
            EventKind::StepFinished { .. } => "step.finished",
            EventKind::StepSkipped { .. } => "step.skipped",
            EventKind::Progress { .. } => "progress",
            EventKind::Metric { .. } => "metric",
            EventKind::Log { .. } => "log",
            EventKind::WorkflowLoaded { .. } => "workflow.loaded",
            EventKind::WorkflowRejected { .. } => "workflow.rejected",
            EventKind::TriggerFired { .. } => "trigger.fired",
            EventKind::ExperimentStarted { .. } => "experiment.started",
            EventKind::ExperimentResults { .. } => "experiment.results",
            EventKind::ExperimentDecided { .. } => "experiment.decided",
            EventKind::ExperimentRejected { .. } => "experiment.rejected",
        }
    }
}

/// How far the store's log writer has come: lines sent to it, lines it
/// has written (or given up on), and a wake-up for those waiting.
#[derive(Default)]
pub struct LogProgress {
    sent: AtomicU64,
    written: AtomicU64,
    wake: Notify,
}

impl LogProgress {
    /// The writer is done with `n` more lines.
    pub fn written(&self, n: usize) {
        self.written.fetch_add(n as u64, Ordering::AcqRel);
        self.wake.notify_waiters();
    }
}

/// Fans events out; cheap to clone.
#[derive(Clone)]
pub struct Bus {
    tx: broadcast::Sender<Arc<Event>>,
    seq: Arc<AtomicU64>,
    logs: mpsc::Sender<LogLine>,
    progress: Arc<LogProgress>,
    metrics: Arc<Metrics>,
}

impl Bus {
    /// A bus and the receiving end of its log lines (for the store's log
    /// writer, which reports what it has written to the progress).
    pub fn new(metrics: Arc<Metrics>) -> (Bus, mpsc::Receiver<LogLine>) {
        let (tx, _) = broadcast::channel(4096);
        let (logs, rx) = mpsc::channel(LOG_BUFFER);
        (
            Bus {
                tx,
                seq: Arc::new(AtomicU64::new(1)),
                logs,
                progress: Arc::default(),
                metrics,
            },
            rx,
        )
    }

    /// The log writer's progress, for the writer to report to.
    pub fn log_progress(&self) -> Arc<LogProgress> {
        self.progress.clone()
    }

    /// Wait until the store has every log line sent before this call, or
    /// `at_most` has passed (the store is far behind: the reader gets what
    /// is there).
    pub async fn logs_flushed(&self, at_most: Duration) {
        let p = &self.progress;
        let target = p.sent.load(Ordering::Acquire);
        let wait = async {
            loop {
                let woken = p.wake.notified();
                if p.written.load(Ordering::Acquire) >= target {
                    return;
                }
                woken.await;
            }
        };
        let _ = tokio::time::timeout(at_most, wait).await;
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    pub fn emit(&self, run: Option<RunId>, workflow: Option<&str>, kind: EventKind) {
        let at = Utc::now();
        if let (
            Some(run_id),
            EventKind::Log {
                step,
                level,
                message,
            },
        ) = (run, &kind)
        {
            let line = LogLine {
                run_id,
                step_id: step.clone(),
                level: level.clone(),
                message: message.clone(),
                at,
            };
            match self.logs.try_send(line) {
                Ok(()) => {
                    self.progress.sent.fetch_add(1, Ordering::AcqRel);
                }
                // The store is far behind: drop rather than grow.
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.metrics.log_lines_dropped.inc();
                }
                // The writer is gone: the daemon is exiting, and the line
                // is in the process log anyway.
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            };
        }
        let event = Event {
            seq: self.seq.fetch_add(1, Ordering::Relaxed),
            at,
            run,
            workflow: workflow.map(str::to_owned),
            kind,
        };
        // No subscriber is fine.
        let _ = self.tx.send(Arc::new(event));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(bus: &Bus, message: &str) {
        bus.emit(
            Some(RunId(1)),
            Some("wf"),
            EventKind::Log {
                step: None,
                level: "info".into(),
                message: message.into(),
            },
        );
    }

    #[tokio::test]
    async fn a_reader_waits_for_the_lines_already_sent_and_no_longer() {
        let (bus, mut rx) = Bus::new(Arc::new(Metrics::new()));
        // Nothing sent: no wait.
        let t = std::time::Instant::now();
        bus.logs_flushed(Duration::from_secs(5)).await;
        assert!(t.elapsed() < Duration::from_secs(1));
        log(&bus, "one");
        log(&bus, "two");
        let progress = bus.log_progress();
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let mut batch = Vec::new();
            let n = rx.recv_many(&mut batch, 10).await;
            progress.written(n);
            rx
        });
        let t = std::time::Instant::now();
        bus.logs_flushed(Duration::from_secs(5)).await;
        assert!(
            t.elapsed() >= Duration::from_millis(150),
            "{:?}",
            t.elapsed()
        );
        assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
        // A writer that is stuck: the reader gives up after the limit.
        let _rx = writer.await.unwrap();
        log(&bus, "three");
        let t = std::time::Instant::now();
        bus.logs_flushed(Duration::from_millis(300)).await;
        assert!(t.elapsed() >= Duration::from_millis(250));
    }
}
