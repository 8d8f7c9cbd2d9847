//! The event bus: everything a run does, as it does it, to every listener
//! (server-sent events) and — for log lines — to the store, in batches.

use crate::pipeline::Reporter;
use crate::plugin::{PluginEvent, PluginFailure};
use crate::service::metrics::Metrics;
use crate::store::Store;
use crate::store::queue::NewLog;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc};

/// One thing that happened.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Increases by one per event, for the SSE `id`.
    pub seq: u64,
    pub at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<i64>,
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
        state: String,
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
        }
    }
}

/// Fans events out; cheap to clone.
#[derive(Clone)]
pub struct Bus {
    tx: broadcast::Sender<Arc<Event>>,
    seq: Arc<AtomicU64>,
    logs: mpsc::UnboundedSender<NewLog>,
}

impl Bus {
    /// A bus and the receiving end of its log lines (for [`write_logs`]).
    pub fn new() -> (Bus, mpsc::UnboundedReceiver<NewLog>) {
        let (tx, _) = broadcast::channel(4096);
        let (logs, rx) = mpsc::unbounded_channel();
        (
            Bus {
                tx,
                seq: Arc::new(AtomicU64::new(1)),
                logs,
            },
            rx,
        )
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    pub fn emit(&self, run: Option<i64>, workflow: Option<&str>, kind: EventKind) {
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
            // The writer outlives every emitter; a send can only fail while
            // the daemon exits, when the line is in the process log anyway.
            let _ = self.logs.send(NewLog {
                run_id,
                step_id: step.clone(),
                level: level.clone(),
                message: message.clone(),
                at,
            });
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

/// Write log lines to the store in batches until every sender is gone.
pub async fn write_logs(store: Store, mut rx: mpsc::UnboundedReceiver<NewLog>) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, 512).await > 0 {
        if let Err(e) = store.add_logs(&batch).await {
            tracing::error!(lines = batch.len(), "cannot store run log lines: {e:#}");
        }
        batch.clear();
    }
}

/// Progress events are sent at most this often per step (the last one, 100%,
/// always goes out).
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

/// Turns what a run does into events and metrics.
pub struct RunReporter {
    pub bus: Bus,
    pub metrics: Arc<Metrics>,
    pub run_id: i64,
    pub workflow: String,
    started: Mutex<BTreeMap<String, (Instant, String)>>,
    last_progress: Mutex<BTreeMap<String, Instant>>,
}

impl RunReporter {
    pub fn new(bus: Bus, metrics: Arc<Metrics>, run_id: i64, workflow: &str) -> RunReporter {
        RunReporter {
            bus,
            metrics,
            run_id,
            workflow: workflow.to_owned(),
            started: Mutex::default(),
            last_progress: Mutex::default(),
        }
    }

    fn emit(&self, kind: EventKind) {
        self.bus.emit(Some(self.run_id), Some(&self.workflow), kind);
    }

    fn log(&self, step: &str, level: &str, message: &str) {
        self.emit(EventKind::Log {
            step: Some(step.to_owned()),
            level: level.to_owned(),
            message: message.to_owned(),
        });
    }
}

impl Reporter for RunReporter {
    fn step_started(&self, step: &str, action: &str, attempt: u32) {
        tracing::info!(run = self.run_id, step, action, attempt, "step started");
        self.started
            .lock()
            .expect("step clock lock")
            .insert(step.to_owned(), (Instant::now(), action.to_owned()));
        self.metrics.step_started(action);
        self.emit(EventKind::StepStarted {
            step: step.to_owned(),
            action: action.to_owned(),
            attempt,
        });
    }

    fn step_event(&self, step: &str, event: &PluginEvent) {
        match event {
            PluginEvent::Log { level, message } => self.log(step, level_name(*level), message),
            PluginEvent::Progress { fraction, message } => {
                let now = Instant::now();
                {
                    let mut last = self.last_progress.lock().expect("progress clock lock");
                    if let Some(t) = last.get(step)
                        && now.duration_since(*t) < PROGRESS_INTERVAL
                        && *fraction < 1.0
                    {
                        return;
                    }
                    last.insert(step.to_owned(), now);
                }
                self.emit(EventKind::Progress {
                    step: step.to_owned(),
                    fraction: *fraction,
                    message: message.clone(),
                });
            }
            PluginEvent::Metric {
                name,
                value,
                step: epoch,
            } => self.emit(EventKind::Metric {
                step: step.to_owned(),
                name: name.clone(),
                value: *value,
                epoch: *epoch,
            }),
        }
    }

    fn step_note(&self, step: &str, message: &str) {
        tracing::warn!(run = self.run_id, step, "{message}");
        self.log(step, "warn", message);
    }

    fn plugin_failed(&self, _step: &str, failure: &PluginFailure) {
        self.metrics.plugin_failed(failure);
    }

    fn step_finished(&self, step: &str, result: Result<&str, &str>) {
        let begun = self.started.lock().expect("step clock lock").remove(step);
        if let Some((t, action)) = &begun {
            self.metrics
                .step_finished(action, result.is_ok(), t.elapsed().as_secs_f64());
        }
        match result {
            Ok(summary) => {
                tracing::info!(run = self.run_id, step, "step finished: {summary}");
                self.emit(EventKind::StepFinished {
                    step: step.to_owned(),
                    ok: true,
                    summary: summary.to_owned(),
                });
            }
            Err(e) => {
                tracing::error!(run = self.run_id, step, "step failed: {e}");
                self.log(step, "error", e);
                self.emit(EventKind::StepFinished {
                    step: step.to_owned(),
                    ok: false,
                    summary: e.to_owned(),
                });
            }
        }
    }

    fn step_skipped(&self, step: &str, reason: &str) {
        tracing::info!(run = self.run_id, step, "step skipped: {reason}");
        self.emit(EventKind::StepSkipped {
            step: step.to_owned(),
            reason: reason.to_owned(),
        });
    }
}

fn level_name(level: crate::plugin::bindings::LogLevel) -> &'static str {
    use crate::plugin::bindings::LogLevel;
    match level {
        LogLevel::Trace => "trace",
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    }
}
