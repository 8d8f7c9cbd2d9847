//! How a run tells the world what it does: the [`Reporter`] the pipeline
//! calls as steps start, report and end, and its two everyday forms — the
//! daemon's [`RunReporter`] (events, logs, metrics) and [`LogReporter`]
//! (tracing only). `coach run`'s terminal display is a third, in `cli`.

use super::metrics::Metrics;
use super::{Bus, EventKind};
use crate::core::event::StepEvent;
use crate::core::ids::RunId;
use crate::core::sync::Lock;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A run as it starts: what a reporter shows first.
#[derive(Debug, Clone, Copy)]
pub struct RunStart<'a> {
    pub run: RunId,
    pub workflow: &'a str,
    pub steps: usize,
    /// The workflow version's hash.
    pub version: &'a str,
}

/// Receives what a run does, as it does it (terminal, logs, tests).
pub trait Reporter: Send + Sync {
    fn run_started(&self, _run: RunStart<'_>) {}
    fn step_started(&self, _step: &str, _action: &str, _attempt: u32) {}
    fn step_event(&self, _step: &str, _event: &StepEvent) {}
    fn step_note(&self, _step: &str, _message: &str) {}
    fn step_finished(&self, _step: &str, _result: Result<&str, &str>) {}
    /// A step did not run: a gate before it said no, a step it needs was
    /// skipped, or its `when` was false.
    fn step_skipped(&self, _step: &str, _reason: &str) {}
    /// A step's plugin failed (`reason`: a short label such as `timeout`);
    /// called before `step_finished`.
    fn plugin_failed(&self, _step: &str, _plugin: &str, _reason: &str) {}
}

/// A reporter that only logs.
pub struct LogReporter;

impl Reporter for LogReporter {
    fn step_started(&self, step: &str, action: &str, attempt: u32) {
        tracing::info!(step, action, attempt, "step started");
    }
    fn step_note(&self, step: &str, message: &str) {
        tracing::warn!(step, "{message}");
    }
    fn step_finished(&self, step: &str, result: Result<&str, &str>) {
        match result {
            Ok(summary) => tracing::info!(step, "step finished: {summary}"),
            Err(e) => tracing::error!(step, "step failed: {e}"),
        }
    }
    fn step_skipped(&self, step: &str, reason: &str) {
        tracing::info!(step, "step skipped: {reason}");
    }
}

/// Progress events are sent at most this often per step (the last one, 100%,
/// always goes out).
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

/// Turns what a run does into events and metrics.
pub struct RunReporter {
    pub bus: Bus,
    pub run_id: RunId,
    pub workflow: String,
    started: Mutex<BTreeMap<String, (Instant, String)>>,
    last_progress: Mutex<BTreeMap<String, Instant>>,
}

impl RunReporter {
    pub fn new(bus: Bus, run_id: RunId, workflow: &str) -> RunReporter {
        RunReporter {
            bus,
            run_id,
            workflow: workflow.to_owned(),
            started: Mutex::default(),
            last_progress: Mutex::default(),
        }
    }

    fn metrics(&self) -> &Metrics {
        self.bus.metrics()
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
        tracing::info!(run = %self.run_id, step, action, attempt, "step started");
        self.started
            .locked()
            .insert(step.to_owned(), (Instant::now(), action.to_owned()));
        self.metrics().step_started(action);
        self.emit(EventKind::StepStarted {
            step: step.to_owned(),
            action: action.to_owned(),
            attempt,
        });
    }

    fn step_event(&self, step: &str, event: &StepEvent) {
        match event {
            StepEvent::Log { level, message } => self.log(step, level.as_str(), message),
            StepEvent::Progress { fraction, message } => {
                let now = Instant::now();
                {
                    let mut last = self.last_progress.locked();
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
            StepEvent::Metric {
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
        tracing::warn!(run = %self.run_id, step, "{message}");
        self.log(step, "warn", message);
    }

    fn plugin_failed(&self, _step: &str, plugin: &str, reason: &str) {
        self.metrics().plugin_failed(plugin, reason);
    }

    fn step_finished(&self, step: &str, result: Result<&str, &str>) {
        let begun = self.started.locked().remove(step);
        if let Some((t, action)) = &begun {
            self.metrics()
                .step_finished(action, result.is_ok(), t.elapsed().as_secs_f64());
        }
        match result {
            Ok(summary) => {
                tracing::info!(run = %self.run_id, step, "step finished: {summary}");
                self.emit(EventKind::StepFinished {
                    step: step.to_owned(),
                    ok: true,
                    summary: summary.to_owned(),
                });
            }
            Err(e) => {
                tracing::error!(run = %self.run_id, step, "step failed: {e}");
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
        tracing::info!(run = %self.run_id, step, "step skipped: {reason}");
        self.emit(EventKind::StepSkipped {
            step: step.to_owned(),
            reason: reason.to_owned(),
        });
    }
}
