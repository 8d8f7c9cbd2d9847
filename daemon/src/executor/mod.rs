//! Carries out the scheduler's plan: claims queued runs and executes them
//! with the pipeline, each on the workflow version it was queued with.
//! Cancels on request; on shutdown lets running steps finish up to a
//! deadline, then stops them and leaves their runs queued, to resume at the
//! next start.

pub mod gpus;
pub mod process;
pub mod slurm;

use crate::pipeline::{RunControl, Runner};
use crate::scheduler::{self, Queued, Snapshot};
use crate::service::events::{Bus, EventKind, RunReporter};
use crate::service::metrics::Metrics;
use crate::service::workflows::WorkflowSet;
use crate::store::{RunRow, state};
use crate::workflow::{Catalog, Workflow};
use anyhow::Result;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A run executing now.
#[derive(Debug, Clone)]
pub struct Active {
    pub workflow: String,
    pub control: RunControl,
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
    pub runner: Runner,
    /// This daemon's name in the store (`daemon:<host>:<data dir>`).
    pub instance: String,
    pub workflows: Arc<WorkflowSet>,
    pub catalog: Arc<dyn Fn() -> Catalog + Send + Sync>,
    pub bus: Bus,
    pub metrics: Arc<Metrics>,
    pub capacity: usize,
    active: Mutex<BTreeMap<i64, Active>>,
    wake: Notify,
    tracker: TaskTracker,
    stop: CancellationToken,
}

impl Executor {
    pub fn new(
        runner: Runner,
        instance: String,
        workflows: Arc<WorkflowSet>,
        catalog: Arc<dyn Fn() -> Catalog + Send + Sync>,
        bus: Bus,
        metrics: Arc<Metrics>,
        capacity: usize,
    ) -> Executor {
        Executor {
            runner,
            instance,
            workflows,
            catalog,
            bus,
            metrics,
            capacity,
            active: Mutex::default(),
            wake: Notify::new(),
            tracker: TaskTracker::new(),
            stop: CancellationToken::new(),
        }
    }

    /// Look at the queue now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub fn active(&self) -> BTreeMap<i64, Active> {
        self.active.lock().expect("active runs lock").clone()
    }

    pub fn is_stopping(&self) -> bool {
        self.stop.is_cancelled()
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
                _ = self.stop.cancelled() => break,
            }
        }
    }

    async fn dispatch_once(self: Arc<Self>) -> Result<()> {
        // Full: nothing can start, and a long queue is not worth reading.
        if self.stop.is_cancelled() || self.active().len() >= self.capacity {
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
                .entries()
                .iter()
                .filter_map(|e| e.good.as_ref())
                .map(|g| (g.workflow.name.clone(), g.workflow.trigger.concurrency))
                .collect(),
            capacity: self.capacity,
        };
        let (start, _) = scheduler::plan(&snapshot);
        for id in start {
            let Some(run) = queued.iter().find(|r| r.id == id).cloned() else {
                continue;
            };
            if !self.runner.store.claim_run(id, &self.instance).await? {
                continue;
            }
            let control = RunControl::default();
            self.active.lock().expect("active runs lock").insert(
                id,
                Active {
                    workflow: run.workflow.clone(),
                    control: control.clone(),
                },
            );
            let me = self.clone();
            self.tracker.spawn(async move {
                me.execute(run, control).await;
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
                    &run.workflow_hash[..12.min(run.workflow_hash.len())],
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
            &(self.catalog)(),
            Some(&scripts),
        )
        .map_err(|e| {
            format!("the workflow version this run was queued with no longer validates:\n{e}")
        })
    }

    async fn execute(self: Arc<Self>, run: RunRow, control: RunControl) {
        let id = run.id;
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
                tracing::error!(run = id, workflow = %workflow, "{why}");
                let _ = self
                    .runner
                    .store
                    .finish_run(id, state::FAILED, Some(why.clone()))
                    .await;
                Ok((state::FAILED.to_owned(), Some(why), None))
            }
            Ok(wf) => {
                let reporter = Arc::new(RunReporter::new(
                    self.bus.clone(),
                    self.metrics.clone(),
                    id,
                    &workflow,
                ));
                match self.runner.execute_run(id, &wf, reporter, &control).await {
                    Ok(s) if s.state == state::INTERRUPTED => {
                        match self.runner.store.requeue_run(id).await {
                            Ok(()) => tracing::warn!(
                                run = id,
                                "run interrupted by shutdown; it resumes at the next start"
                            ),
                            Err(e) => tracing::error!(
                                run = id,
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
        let (st, error, model) = match outcome {
            Ok(x) => x,
            Err(e) => {
                // The store failed under the run; record what we can.
                let why = format!("{e:#}");
                tracing::error!(run = id, "run failed in the store: {why}");
                let _ = self
                    .runner
                    .store
                    .finish_run(id, state::FAILED, Some(why.clone()))
                    .await;
                (state::FAILED.to_owned(), Some(why), None)
            }
        };
        self.active.lock().expect("active runs lock").remove(&id);
        self.bus.emit(
            Some(id),
            Some(&workflow),
            EventKind::RunFinished {
                state: st,
                error,
                model,
            },
        );
        self.wake();
    }

    /// Cancel run `id`.
    pub async fn cancel(&self, id: i64) -> Result<Cancelled> {
        if let Some(a) = self.active().get(&id) {
            a.control.cancel.store(true, Ordering::Relaxed);
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
                    state: state::CANCELLED.into(),
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
    pub async fn shutdown(&self, grace: Duration) -> Vec<(i64, String)> {
        self.stop.cancel();
        self.tracker.close();
        for a in self.active().values() {
            a.control.drain.store(true, Ordering::Relaxed);
        }
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok()
        {
            return Vec::new();
        }
        let stopped: Vec<(i64, String)> = self
            .active()
            .into_iter()
            .map(|(id, a)| {
                a.control.shutdown.store(true, Ordering::Relaxed);
                a.control.cancel.store(true, Ordering::Relaxed);
                (id, a.workflow)
            })
            .collect();
        // A cancelled plugin call ends at the next epoch tick; the store
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
