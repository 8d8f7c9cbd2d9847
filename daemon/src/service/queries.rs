//! Questions about what Coach has done, answered in the shapes of
//! [`views`](super::views): runs, their logs, models, workflows, GPUs,
//! plugins, the daemon's state. Both faces ask here.

use super::Service;
use super::views::{GpuView, LogView, ModelView, QueueView, RunDetail, RunView};
use crate::core::ids::{ModelRef, RunId};
use crate::core::state::RunState;
use crate::registry::deployments::{
    DeploymentView, HistoryEntry, deployment_views, history_entries,
};
use crate::store::Store;
use crate::store::conversation_reads::{ConversationFilter, ConversationPage, StoredConversation};
use crate::store::queue::{FireRow, RunFilter};
use anyhow::Result;
use serde_json::{Value, json};
use std::sync::atomic::Ordering;

/// Queries that need only the store: the command line answers them
/// without a daemon.
pub struct Records<'a>(pub &'a Store);

impl Records<'_> {
    /// Runs, newest first.
    pub async fn runs(&self, filter: &RunFilter) -> Result<Vec<RunView>> {
        Ok(self
            .0
            .list_runs(filter)
            .await?
            .iter()
            .map(RunView::from)
            .collect())
    }

    /// One run with its steps, metrics and the model it registered.
    pub async fn run(&self, id: RunId) -> Result<Option<RunDetail>> {
        let Some((run, steps, metrics)) = self.0.run(id).await? else {
            return Ok(None);
        };
        let model = self.0.model_of_run(id).await?;
        Ok(Some(RunDetail::new(&run, &steps, &metrics, model.as_ref())))
    }

    /// A run's state and error, if the run exists (a light read).
    pub async fn state_of(&self, id: RunId) -> Result<Option<(RunState, Option<String>)>> {
        self.0.run_state(id).await
    }

    /// A page of conversations, newest first.
    pub async fn conversations(&self, filter: &ConversationFilter) -> Result<ConversationPage> {
        self.0.list_conversations(filter).await
    }

    /// One conversation with up to `limit` of its turns from turn `from`,
    /// and its number of turns.
    pub async fn conversation(
        &self,
        id: i64,
        from: u64,
        limit: u64,
    ) -> Result<Option<(StoredConversation, u64)>> {
        self.0.conversation_turns(id, from, limit).await
    }

    /// The latest fires of a workflow's triggers, newest first.
    pub async fn fires(&self, workflow: &str, limit: u64) -> Result<Vec<FireRow>> {
        self.0.fires_of(workflow, limit).await
    }

    pub async fn logs(&self, id: RunId, after: i64, limit: u64) -> Result<Vec<LogView>> {
        Ok(self
            .0
            .run_logs(id, after, limit)
            .await?
            .iter()
            .map(LogView::from)
            .collect())
    }

    /// Registered models, newest first.
    pub async fn models(&self, limit: u64) -> Result<Vec<ModelView>> {
        Ok(self
            .0
            .models(limit)
            .await?
            .iter()
            .map(ModelView::from)
            .collect())
    }

    pub async fn model(&self, r: &ModelRef) -> Result<Option<ModelView>> {
        Ok(self.0.find_model(r).await?.as_ref().map(ModelView::from))
    }

    /// Deployments (of one model name when given).
    pub async fn deployments(&self, model: Option<&str>) -> Result<Vec<DeploymentView>> {
        deployment_views(self.0, self.0.deployments(model).await?).await
    }

    /// A model name's deployment history (one environment when given),
    /// newest first.
    pub async fn deployment_history(
        &self,
        model: &str,
        environment: Option<&str>,
        limit: u64,
    ) -> Result<Vec<HistoryEntry>> {
        history_entries(
            self.0,
            self.0.deployment_history(model, environment, limit).await?,
        )
        .await
    }
}

impl Service {
    pub fn records(&self) -> Records<'_> {
        Records(&self.store)
    }

    pub fn gpu_view(&self) -> GpuView {
        GpuView::of(self.gpus())
    }

    pub fn queue_view(&self) -> QueueView {
        QueueView {
            waiting: self.gpus().queue(),
            running: self.gpus().allocations(),
            slurm: self.slurm().jobs(),
        }
    }

    /// The Prometheus text, with the gauges read now.
    pub async fn metrics_text(&self) -> Result<String> {
        let metrics = self.bus.metrics();
        metrics.set_run_counts(&self.store.run_counts().await?);
        let gpus = self.gpu_view();
        metrics.set_gpus(&gpus.gauges(), self.gpus().queue().len());
        let jobs = self.slurm().jobs();
        metrics.set_slurm(jobs.iter().map(|j| j.state.as_str()));
        let counts = self.store.review_counts(None).await?;
        for (state, n) in [
            ("open", counts.open),
            ("disputed", counts.disputed),
            ("approved", counts.approved),
            ("rejected", counts.rejected),
        ] {
            metrics
                .review_items
                .get_or_create(&crate::events::metrics::StateLabels {
                    state: state.into(),
                })
                .set(n as i64);
        }
        for (model, mean, n) in self
            .store
            .quality_by_model(crate::core::params::DEFAULT_ANALYZER, 7)
            .await?
        {
            let labels = crate::events::metrics::ModelLabels { model };
            metrics.quality.get_or_create(&labels).set(mean);
            metrics
                .quality_conversations
                .get_or_create(&labels)
                .set(n as i64);
        }
        Ok(metrics.encode())
    }

    /// The installed plugins: what each asks for, what it is granted, the
    /// limits it runs under, and problems of plugins that did not load.
    pub fn plugins_view(&self) -> Value {
        let limits = self.host.limits();
        let list: Vec<Value> = self
            .host
            .plugins()
            .iter()
            .map(|p| {
                let m = &p.manifest;
                let (memory, timeout) = self.host.effective_limits(p, None);
                json!({
                    "id": p.id(),
                    "version": m.version,
                    "kind": m.kind.to_string(),
                    "api": m.api,
                    "description": m.description,
                    "origin": p.origin.to_string(),
                    "wasm_sha256": p.wasm_sha256,
                    "asks": {"filesystem": m.capabilities.filesystem.map(|_| "read"),
                             "memory": m.limits.memory, "timeout": m.limits.timeout},
                    "granted": {"read": self.host.grant(p.id()).read.iter().map(|r| r.display().to_string()).collect::<Vec<_>>()},
                    "limits": {"memory_bytes": memory, "timeout_ms": timeout.as_millis() as u64,
                               "output_bytes": limits.output, "hostcall_data_bytes": limits.hostcall_data},
                })
            })
            .collect();
        json!({"plugins": list, "problems": self.host.problems()})
    }

    /// The daemon's state at a glance.
    pub async fn status(&self) -> Result<Value> {
        use crate::core::sync::ReadWrite;
        let counts = self.store.run_counts().await?;
        let entries = self.workflows.entries();
        let active: Vec<Value> = self
            .executor
            .active()
            .iter()
            .map(|(id, a)| json!({"run": id.0, "workflow": a.workflow}))
            .collect();
        Ok(json!({
            "version": env!("CARGO_PKG_VERSION"),
            "ready": self.ready.load(Ordering::Relaxed),
            "uptime_seconds": self.started.elapsed().as_secs(),
            "runs": counts.into_iter().map(|(s, n)| (s.to_string(), n)).collect::<std::collections::BTreeMap<_, _>>(),
            "running": active,
            "workflows": {
                "total": entries.len(),
                "invalid": entries.iter().filter(|e| e.error.is_some()).count(),
            },
            "plugins": {
                "total": self.host.plugins().len(),
                "problems": self.host.problems(),
            },
            "config_problem": *self.config_problem.reading(),
        }))
    }
}
