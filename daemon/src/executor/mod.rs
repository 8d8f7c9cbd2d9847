//! The dispatcher: claims queued runs as the scheduler's plan allows and
//! hands each to the pipeline, on the workflow version it was queued with.
//! Cancels on request; on shutdown lets running steps finish up to a
//! deadline, then stops them and leaves their runs queued, to resume at the
//! next start. Every run it starts is a task of its tracker, under its
//! stop tree.

use crate::core::ids::{RunId, short};
use crate::core::state::RunState;
use crate::core::stop::{RunStop, StopReason};
use crate::core::sync::Lock;
use crate::events::{Bus, EventKind, Reporter, RunReporter};
use crate::pipeline::{RunSummary, Runner};
use crate::scheduler::{self, Queued, Snapshot};
use crate::store::RunRow;
use crate::store::outcomes::{OutcomeJournal, PendingEnd};
use crate::workflow::Workflow;
use crate::workflow::set::WorkflowSet;
use anyhow::Result;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A run executing now.
#[derive(Debug, Clone)]
pub struct Active {
    pub workflow: String,
    pub stop: RunStop,
}

/// What `cancel` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancelled {
    /// It was queued and is now cancelled.
    Dequeued,
    /// It is running; it stops at the plugin's next check.
    Stopping,
    /// It is not queued or running.
    NotActive,
}

pub struct Executor {
    pub runner: Arc<Runner>,
    /// This daemon's name in the store (`daemon:<host>:<data dir>`).
    pub instance: String,
    pub workflows: Arc<WorkflowSet>,
    pub bus: Bus,
    pub capacity: usize,
    active: Mutex<BTreeMap<RunId, Active>>,
    wake: Notify,
    /// The runs it started.
    tracker: TaskTracker,
    /// Cancelled: start nothing more.
    closed: CancellationToken,
    /// Every run's stop controls are children of these.
    runs: RunStop,
    /// Where runs' ends wait while the store cannot take them (daemons).
    journal: std::sync::OnceLock<Arc<OutcomeJournal>>,
}

impl Executor {
    /// An executor under `root`, the process's stop token: cancelling it
    /// closes the dispatcher and aborts every run.
    pub fn new(
        runner: Arc<Runner>,
        instance: String,
        workflows: Arc<WorkflowSet>,
        bus: Bus,
        capacity: usize,
        root: &CancellationToken,
    ) -> Executor {
        Executor {
            runner,
            instance,
            workflows,
            bus,
            capacity,
            active: Mutex::default(),
            wake: Notify::new(),
            tracker: TaskTracker::new(),
            closed: root.child_token(),
            runs: RunStop::under(root),
            journal: std::sync::OnceLock::new(),
        }
    }

    /// Look at the queue now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub fn active(&self) -> BTreeMap<RunId, Active> {
        self.active.locked().clone()
    }

    pub fn is_stopping(&self) -> bool {
        self.closed.is_cancelled()
    }

    /// Start queued runs as the scheduler allows, until shutdown. Polls
    /// now and then too, for runs queued by another process.
    pub async fn dispatch(self: Arc<Self>) {
        loop {
            if let Err(e) = self.clone().dispatch_once().await {
                tracing::error!("cannot read the run queue: {e:#}");
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = self.closed.cancelled() => break,
            }
        }
    }

    async fn dispatch_once(self: Arc<Self>) -> Result<()> {
        // Full: nothing can start, and a long queue is not worth reading.
        if self.closed.is_cancelled() || self.active().len() >= self.capacity {
            return Ok(());
        }
        let queued = self.runner.store.queued_runs().await?;
        if queued.is_empty() {
            return Ok(());
        }
        let snapshot = Snapshot {
            queued: queued
                .iter()
                .map(|r| Queued {
                    run: r.id,
                    workflow: r.workflow.clone(),
                })
                .collect(),
            running: self.active().values().map(|a| a.workflow.clone()).collect(),
            policies: self
                .workflows
                .good()
                .iter()
                .map(|g| (g.workflow.name.to_string(), g.workflow.trigger.concurrency))
                .collect(),
            capacity: self.capacity,
        };
        let (start, _) = scheduler::plan(&snapshot);
        for id in start {
            let Some(run) = queued.iter().find(|r| r.id == id).cloned() else {
                continue;
            };
            let id = RunId(id);
            // Stopping while this pass ran: leave the rest queued.
            if self.closed.is_cancelled() {
                break;
            }
            if !self.runner.store.claim_run(id, &self.instance).await? {
                continue;
            }
            let stop = self.runs.child();
            self.active.locked().insert(
                id,
                Active {
                    workflow: run.workflow.clone(),
                    stop: stop.clone(),
                },
            );
            let me = self.clone();
            self.tracker.spawn(async move {
                me.execute(run, stop).await;
            });
        }
        Ok(())
    }

    /// The workflow version a run was queued with.
    async fn version_of(&self, run: &RunRow) -> Result<Workflow, String> {
        let stored = self
            .runner
            .store
            .workflow_version(&run.workflow_hash)
            .await
            .map_err(|e| format!("{e:#}"))?
            .ok_or_else(|| {
                format!(
                    "workflow version {} of `{}` is not in the store",
                    short(&run.workflow_hash, 12),
                    run.workflow
                )
            })?;
        let scripts: std::collections::BTreeMap<std::path::PathBuf, String> = stored
            .scripts
            .as_deref()
            .and_then(|s| {
                serde_json::from_str::<std::collections::BTreeMap<String, String>>(s).ok()
            })
            .unwrap_or_default()
            .into_iter()
            .map(|(p, s)| (std::path::PathBuf::from(p), s))
            .collect();
        Workflow::parse_with_scripts(
            std::path::Path::new(&stored.file),
            &stored.content,
            &self.runner.host.catalog(),
            Some(&scripts),
        )
        .map_err(|e| {
            format!("the workflow version this run was queued with no longer validates:\n{e}")
        })
    }

    async fn execute(self: Arc<Self>, run: RunRow, stop: RunStop) {
        let id = run.run_id();
        let workflow = run.workflow.clone();
        self.bus.emit(
            Some(id),
            Some(&workflow),
            EventKind::RunStarted {
                resumes: run.resumes,
            },
        );
        let outcome = match self.version_of(&run).await {
            Err(why) => {
                tracing::error!(run = %id, workflow = %workflow, "{why}");
                self.record_end(id, RunState::Failed, Some(why.clone()))
                    .await;
                Ok((RunState::Failed, Some(why), None))
            }
            Ok(wf) => {
                let reporter = Arc::new(RunReporter::new(self.bus.clone(), id, &workflow));
                match self.runner.execute_run(id, &wf, reporter, &stop).await {
                    Ok(s) if s.state == RunState::Interrupted => {
                        match self.runner.store.requeue_run(id).await {
                            Ok(()) => tracing::warn!(
                                run = %id,
                                "run interrupted by shutdown; it resumes at the next start"
                            ),
                            Err(e) => tracing::error!(
                                run = %id,
                                "cannot put the interrupted run back in the queue: {e:#}"
                            ),
                        }
                        Ok((s.state, s.error, None))
                    }
                    Ok(s) => Ok((s.state, s.error, s.model.map(|m| m.id))),
                    Err(e) => Err(e),
                }
            }
        };
        let (state, error, model) = match outcome {
            Ok(x) => x,
            Err(e) => {
                // The store failed under the run; record what we can.
                let why = format!("the store failed under the run: {e:#}");
                tracing::error!(run = %id, "{why}");
                self.record_end(id, RunState::Failed, Some(why.clone()))
                    .await;
                (RunState::Failed, Some(why), None)
            }
        };
        self.active.locked().remove(&id);
        self.bus.emit(
            Some(id),
            Some(&workflow),
            EventKind::RunFinished {
                state,
                error,
                model,
            },
        );
        self.wake();
    }

    /// Keep runs' ends that the store cannot take in `journal` until it
    /// can (see [`OutcomeJournal`]).
    pub fn use_journal(&self, journal: Arc<OutcomeJournal>) {
        let _ = self.journal.set(journal);
    }

    /// Record that run `id` ended: retried, with the store marked unwritable
    /// meanwhile (`/readyz` not ready, triggers paused) and the end kept in
    /// the journal, until the store takes it or the daemon stops (the next
    /// start records it from the journal).
    async fn record_end(&self, id: RunId, state: RunState, error: Option<String>) {
        let store = &self.runner.store;
        let mut wait = Duration::from_secs(1);
        let mut journaled = false;
        let mut last_said: Option<std::time::Instant> = None;
        loop {
            match store.finish_run(id, state, error.clone()).await {
                Ok(()) => {
                    if journaled && let Some(j) = self.journal.get() {
                        let _ = j.forget(id.0);
                    }
                    if store.write_health().failing().is_some() {
                        tracing::info!(run = %id, state = %state, "the store takes writes again; the run's end is recorded");
                        store.write_health().set_ok();
                    }
                    return;
                }
                Err(e) => {
                    let why = format!("{e:#}");
                    // Journal first: once `/readyz` says the end cannot be
                    // recorded, a kill must find it in the journal.
                    if !journaled && let Some(j) = self.journal.get() {
                        journaled = true;
                        if let Err(je) = j.record(PendingEnd {
                            run: id.0,
                            state,
                            error: error.clone(),
                        }) {
                            tracing::error!(run = %id, "cannot keep the run's end in the journal either: {je}");
                        }
                    }
                    store
                        .write_health()
                        .set_failing(format!("the end of run {id} cannot be recorded: {why}"));
                    if last_said.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                        tracing::error!(run = %id, state = %state, "cannot record the run's end ({why}); not ready, triggers paused; retrying");
                        last_said = Some(std::time::Instant::now());
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.closed.cancelled() => {
                    tracing::warn!(run = %id, state = %state, "stopping with the run's end unrecorded; the journal keeps it for the next start");
                    return;
                }
            }
            wait = (wait * 2).min(Duration::from_secs(30));
        }
    }

    /// Execute a run this process has claimed already (`coach run`), to
    /// its end, reporting to `reporter`. Errors are only for the store
    /// failing.
    pub async fn run_claimed(
        &self,
        run: RunId,
        wf: &Workflow,
        reporter: Arc<dyn Reporter>,
        stop: &RunStop,
    ) -> Result<RunSummary> {
        self.runner.execute_run(run, wf, reporter, stop).await
    }

    /// Cancel run `id`.
    pub async fn cancel(&self, id: RunId) -> Result<Cancelled> {
        if let Some(a) = self.active().get(&id) {
            a.stop.abort(StopReason::Cancelled);
            return Ok(Cancelled::Stopping);
        }
        if self
            .runner
            .store
            .cancel_queued(id, "cancelled before it started")
            .await?
        {
            self.bus.emit(
                Some(id),
                None,
                EventKind::RunFinished {
                    state: RunState::Cancelled,
                    error: Some("cancelled before it started".into()),
                    model: None,
                },
            );
            return Ok(Cancelled::Dequeued);
        }
        Ok(Cancelled::NotActive)
    }

    /// Stop taking work; let running steps finish within `grace`, then stop
    /// them. Returns the runs that were stopped mid-step (they stay queued
    /// and resume at the next start).
    pub async fn shutdown(&self, grace: Duration) -> Vec<(RunId, String)> {
        self.closed.cancel();
        self.tracker.close();
        self.runs.drain();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok()
        {
            return Vec::new();
        }
        let stopped: Vec<(RunId, String)> = self
            .active()
            .into_iter()
            .map(|(id, a)| (id, a.workflow))
            .collect();
        self.runs.abort(StopReason::Shutdown);
        // A stopped plugin call ends at the next epoch tick; the store
        // writes after it are quick.
        if tokio::time::timeout(Duration::from_secs(10), self.tracker.wait())
            .await
            .is_err()
        {
            tracing::error!(
                "runs did not stop within 10 s of being cancelled; they resume at the next start"
            );
        }
        stopped
    }
}
