//! Keeping the service current and honest: reloading config, plugins and
//! workflows (one reload at a time, whoever asks: a changed file or
//! SIGHUP), checking a workflow file as the daemon would, and — after a
//! crash — putting a daemon's interrupted runs back in the queue and
//! ending the runs of `coach run` processes that are gone.

use super::Service;
use crate::compute::process;
use crate::config::Config;
use crate::core::ids::{RunId, short};
use crate::core::sync::ReadWrite;
use crate::events::EventKind;
use crate::store::Store;
use crate::workflow::Workflow;
use crate::workflow::error::Errors;
use crate::workflow::set::{Change, Good};
use anyhow::Result;
use std::path::Path;
use std::time::Duration;

/// How this daemon marks the runs it executes: host and data directory
/// (one daemon per data directory), so daemons sharing a database each
/// resume only their own runs.
pub fn instance_name(data_dir: &Path) -> String {
    let dir = data_dir
        .canonicalize()
        .unwrap_or_else(|_| data_dir.to_path_buf());
    format!("daemon:{}:{}", host_name(), dir.display())
}

/// How a `coach run` process marks the run it executes: host, pid and the
/// process's start time — enough to tell later that it is gone.
pub fn cli_identity() -> String {
    format!("cli:{}:{}", host_name(), process::this_process())
}

pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
        .trim()
        .to_owned()
}

/// A run a crash left behind, and what became of it.
#[derive(Debug, Clone)]
pub struct LeftBehind {
    pub run: RunId,
    pub workflow: String,
    /// What was done about it, in a sentence.
    pub what: String,
}

/// Runs of `coach run` processes on this host that are gone — killed
/// outright, or the machine restarted — become `interrupted` (nobody will
/// resume them), their running steps too, and what is left of their
/// process groups is stopped. Every command that opens the store does
/// this, and so does the daemon.
pub async fn end_orphaned_cli_runs(store: &Store, grace: Duration) -> Result<Vec<LeftBehind>> {
    let prefix = format!("cli:{}:", host_name());
    let mut out = Vec::new();
    for run in store.running_runs_of(&prefix).await? {
        let identity = run.executor.strip_prefix(&prefix).unwrap_or_default();
        if process::is_running(identity) != Some(false) {
            continue;
        }
        let pid = identity.split(':').next().unwrap_or(identity);
        let why = format!(
            "the `coach run` process (pid {pid}) that ran it stopped before the run ended; marked interrupted"
        );
        let Some(ended) = store
            .interrupt_run(run.run_id(), &run.executor, &why)
            .await?
        else {
            continue;
        };
        for h in &ended.handles {
            if let Some(done) = process::reap(h, grace).await {
                tracing::warn!(
                    run = run.id,
                    "left over from the `coach run` that died: {done}"
                );
            }
        }
        out.push(LeftBehind {
            run: run.run_id(),
            workflow: run.workflow.clone(),
            what: why,
        });
    }
    Ok(out)
}

/// At daemon start: runs daemon `instance` was executing when it stopped go
/// back in the queue, and processes it left behind are stopped.
pub async fn requeue_interrupted(
    store: &Store,
    instance: &str,
    grace: Duration,
) -> Result<Vec<LeftBehind>> {
    let mut out = Vec::new();
    for r in store.recover_interrupted(instance).await? {
        tracing::warn!(run = r.run.id, workflow = %r.run.workflow, steps = ?r.steps, "run was interrupted when the daemon stopped; it is queued again and resumes where it stopped");
        // Processes a daemon killed outright left behind would hold their
        // GPUs beside the step's next attempt.
        for h in &r.handles {
            if let Some(done) = process::reap(h, grace).await {
                tracing::warn!(run = r.run.id, "left over from before the restart: {done}");
            }
        }
        out.push(LeftBehind {
            run: r.run.run_id(),
            workflow: r.run.workflow.clone(),
            what: "queued again; it resumes where it stopped".into(),
        });
    }
    Ok(out)
}

impl Service {
    /// Read and check a workflow file as the daemon would load it: every
    /// error, located, including GPU requests this machine can never hold.
    pub fn load_workflow_file(&self, file: &Path) -> Result<Good, Errors> {
        load_workflow_file(&self.config(), &self.host, self.gpus(), file)
    }

    /// Read the config, plugins and workflows again. One reload runs at a
    /// time; a second request waits for the first and then reads again.
    pub async fn reload(&self, why: &str) {
        let _one = self.reloading.lock().await;
        tracing::info!(reason = why, "reloading");
        let source = self.config().source;
        let mut recheck = false;
        match Config::load(source.as_deref()) {
            Ok(new) => {
                let old = self.config();
                if new.daemon.listen != old.daemon.listen
                    || new.data_dir != old.data_dir
                    || new.database_url() != old.database_url()
                    || new.daemon.max_parallel_runs != old.daemon.max_parallel_runs
                {
                    tracing::warn!(
                        "the listen address, data directory, database and max_parallel_runs change only at restart"
                    );
                }
                match self.host.reload(&new) {
                    Ok(changed) => {
                        if !changed.is_empty() {
                            tracing::info!(plugins = ?changed, "plugins reloaded");
                            recheck = true;
                        }
                    }
                    Err(e) => tracing::error!("cannot reload plugins: {e:#}"),
                }
                for (folder, why) in self.host.problems() {
                    tracing::error!(folder = %folder, "plugin rejected: {why}");
                }
                self.gpus().set_settings(new.gpus.clone());
                if new.slurm.default != old.slurm.default {
                    recheck = true;
                }
                self.slurm().set_settings(new.slurm.clone());
                self.store.set_review_policy(new.review);
                *self.config.writing() = new;
                *self.config_problem.writing() = None;
            }
            Err(e) => {
                let why = format!("{e:#}");
                tracing::error!("config rejected, keeping the one in service: {why}");
                *self.config_problem.writing() = Some(why);
            }
        }
        self.reload_workflows(recheck);
    }

    /// Read the workflow folders again (`recheck`: parse even unchanged
    /// files: the plugins or defaults under them changed).
    pub fn reload_workflows(&self, recheck: bool) {
        let config = self.config();
        let catalog = self.host.catalog();
        let gpus = self.gpus().clone();
        let slurm_default = config.slurm.default;
        let check = move |wf: &Workflow| wf.check_fits(slurm_default, &|r| gpus.never_message(r));
        for change in self
            .workflows
            .reload(&config.daemon.workflow_dirs, &catalog, &check, recheck)
        {
            match change {
                Change::Loaded { name, version } => {
                    tracing::info!(workflow = %name, version = %short(&version, 12), "workflow loaded");
                    self.bus
                        .emit(None, Some(&name), EventKind::WorkflowLoaded { version });
                }
                Change::Rejected { file, errors } => {
                    tracing::error!(file = %file.display(), "workflow rejected; the last good version stays in service:\n{errors}");
                    self.bus.emit(
                        None,
                        None,
                        EventKind::WorkflowRejected {
                            file: file.display().to_string(),
                            errors,
                        },
                    );
                }
                Change::Removed { name } => {
                    tracing::info!(workflow = %name, "workflow removed")
                }
            }
        }
    }
}

/// [`Service::load_workflow_file`] without a service: what `coach
/// validate` checks.
pub fn load_workflow_file(
    config: &Config,
    host: &crate::plugin::PluginHost,
    gpus: &crate::compute::gpus::GpuQueue,
    file: &Path,
) -> Result<Good, Errors> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        Errors(vec![crate::workflow::error::Located::file(
            file,
            format!("cannot read the workflow: {e}"),
        )])
    })?;
    let wf = Workflow::parse(file, &text, &host.catalog())?;
    wf.check_fits(config.slurm.default, &|r| gpus.never_message(r))?;
    Ok(Good::new(wf, text))
}
