//! `coach daemon`: the long-running service. Owns a directory of workflows,
//! starts runs when their triggers fire, serves the HTTP API, and never
//! loses a run however it is stopped.
//!
//! Start: lock the data directory (one daemon per data directory), open and
//! migrate the store, load plugins (compiled now, from the cache when warm),
//! put runs a previous daemon left running back in the queue, load the
//! workflows, catch up on missed cron fires, listen. Stop (SIGTERM/SIGINT):
//! refuse new runs, let running steps finish within `shutdown_grace`, stop
//! the rest (they resume at the next start), report what was stopped.
//! Reload (a changed file, or SIGHUP): config, plugins and workflows; what
//! fails validation is rejected with its errors and the last good version
//! stays in service.

pub mod events;
pub mod lock;
pub mod metrics;
pub mod workflows;

use crate::config::Config;
use crate::executor::Executor;
use crate::plugin::PluginHost;
use crate::store::Store;
use crate::trigger::cron::CronTriggers;
use crate::trigger::watch::WatchTriggers;
use anyhow::{Context, Result};
use events::{Bus, EventKind};
use metrics::Metrics;
use notify::Watcher;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use workflows::{Change, WorkflowSet};

/// Everything the daemon's parts share.
pub struct Service {
    pub config: RwLock<Config>,
    pub store: Store,
    pub host: Arc<PluginHost>,
    pub workflows: Arc<WorkflowSet>,
    pub executor: Arc<Executor>,
    pub bus: Bus,
    pub metrics: Arc<Metrics>,
    pub cron: CronTriggers,
    pub watch: WatchTriggers,
    pub conditions: crate::trigger::condition::ConditionTriggers,
    pub ready: AtomicBool,
    pub started: Instant,
    /// Ends long-lived responses (event streams) at shutdown.
    pub stopping: CancellationToken,
    /// Problems of the last config reload.
    pub config_problem: RwLock<Option<String>>,
}

impl Service {
    pub fn config(&self) -> Config {
        self.config.read().expect("config lock").clone()
    }

    /// The GPU inventory and queue.
    pub fn gpus(&self) -> &Arc<crate::executor::gpus::GpuQueue> {
        &self.executor.runner.gpus
    }

    pub fn slurm(&self) -> &Arc<crate::executor::slurm::Slurm> {
        &self.executor.runner.slurm
    }

    /// Read the config, plugins and workflows again.
    pub async fn reload(self: &Arc<Self>, why: &str) {
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
                *self.config.write().expect("config lock") = new;
                *self.config_problem.write().expect("config lock") = None;
            }
            Err(e) => {
                let why = format!("{e:#}");
                tracing::error!("config rejected, keeping the one in service: {why}");
                *self.config_problem.write().expect("config lock") = Some(why);
            }
        }
        self.reload_workflows(recheck).await;
    }

    async fn reload_workflows(self: &Arc<Self>, recheck: bool) {
        let dirs = self.config().daemon.workflow_dirs;
        let catalog = crate::catalog(&self.host);
        let gpus = self.gpus().clone();
        let slurm_default = self.config().slurm.default;
        let check = move |wf: &crate::workflow::Workflow| {
            wf.check_fits(slurm_default, &|r| gpus.never_message(r))
        };
        for change in self.workflows.reload(&dirs, &catalog, &check, recheck) {
            match change {
                Change::Loaded { name, version } => {
                    tracing::info!(workflow = %name, version = %&version[..12], "workflow loaded");
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
        self.cron.sync(self).await;
        self.watch.sync(self);
        self.conditions.sync(self);
    }
}

impl Service {
    /// Open the store (migrated), load plugins (compiled now) and
    /// workflows, and put runs a previous daemon left running back in the
    /// queue. Nothing listens and nothing is dispatched yet. The handle is
    /// the run-log writer, which ends once the service is dropped.
    pub async fn open(config: Config) -> Result<(Arc<Service>, tokio::task::JoinHandle<()>)> {
        let store = Store::connect(&config.database_url()).await?;
        let host = Arc::new(PluginHost::new(&config)?);
        for (plugin, why) in host.warm_up() {
            tracing::error!(plugin = %plugin, "plugin cannot be loaded: {why}");
        }
        let instance = instance_name(&config.data_dir);
        for r in store.recover_interrupted(&instance).await? {
            tracing::warn!(run = r.run.id, workflow = %r.run.workflow, steps = ?r.steps, "run was interrupted when the daemon stopped; it is queued again and resumes where it stopped");
            // Processes a daemon killed outright left behind would hold
            // their GPUs beside the step's next attempt.
            for h in &r.handles {
                if let Some(done) =
                    crate::executor::process::reap(h, config.daemon.shutdown_grace).await
                {
                    tracing::warn!(run = r.run.id, "left over from before the restart: {done}");
                }
            }
        }
        let (bus, log_rx) = Bus::new();
        let log_writer = tokio::spawn(events::write_logs(store.clone(), log_rx));
        let metrics = Arc::new(Metrics::new());
        let workflows = Arc::new(WorkflowSet::default());
        let gpus = crate::executor::gpus::GpuQueue::new(config.gpus.clone());
        let runner = crate::pipeline::Runner {
            host: host.clone(),
            store: store.clone(),
            artifacts: crate::registry::Artifacts::new(config.artifacts_dir()),
            gpus: gpus.clone(),
            slurm: Arc::new(crate::executor::slurm::Slurm::new(config.slurm.clone())),
            work_dir: config.work_dir(),
            process_grace: config.daemon.shutdown_grace,
        };
        let catalog_host = host.clone();
        let executor = Arc::new(Executor::new(
            runner,
            instance,
            workflows.clone(),
            Arc::new(move || crate::catalog(&catalog_host)),
            bus.clone(),
            metrics.clone(),
            config.daemon.max_parallel_runs,
        ));
        let service = Arc::new(Service {
            config: RwLock::new(config),
            store,
            host,
            workflows,
            executor,
            bus,
            metrics,
            cron: CronTriggers::start().await?,
            watch: WatchTriggers::default(),
            conditions: Default::default(),
            ready: AtomicBool::new(false),
            started: Instant::now(),
            stopping: CancellationToken::new(),
            config_problem: RwLock::new(None),
        });
        service.reload_workflows(false).await;
        Ok((service, log_writer))
    }
}

/// How this daemon marks the runs it executes: host and data directory
/// (one daemon per data directory), so daemons sharing a database each
/// resume only their own runs.
fn instance_name(data_dir: &std::path::Path) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    let dir = data_dir
        .canonicalize()
        .unwrap_or_else(|_| data_dir.to_path_buf());
    format!("daemon:{}:{}", host.trim(), dir.display())
}

/// Run the daemon until SIGTERM or SIGINT.
/// Read the GPU inventory again every `[gpus] refresh` (NVML calls block:
/// off the async threads).
async fn refresh_gpus(gpus: Arc<crate::executor::gpus::GpuQueue>) {
    loop {
        tokio::time::sleep(gpus.refresh_every()).await;
        let g = gpus.clone();
        if tokio::task::spawn_blocking(move || g.refresh())
            .await
            .is_err()
        {
            tracing::error!("reading the GPU inventory panicked");
        }
    }
}

pub async fn run(config: Config) -> Result<()> {
    let started = Instant::now();
    let _lock = lock::DataDirLock::acquire(&config.data_dir, &config.daemon.listen)?;
    let listen = config.daemon.listen;
    let (service, log_writer) = Service::open(config).await?;
    let executor = service.executor.clone();
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    crate::trigger::cron::catch_up(&service).await?;
    let _reload_watcher = watch_for_reload(&service)?;
    let dispatcher = tokio::spawn(executor.clone().dispatch());
    let gpu_refresh = tokio::spawn(refresh_gpus(service.gpus().clone()));

    let app = crate::api::router(service.clone());
    let stopping = service.stopping.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { stopping.cancelled().await })
            .await
    });
    service.ready.store(true, Ordering::Relaxed);
    tracing::info!(address = %addr, ms = started.elapsed().as_millis() as u64, "daemon ready");
    // Scripts and tests read the address from this line.
    println!("coach daemon listening on http://{addr}");

    wait_for_stop(&service).await;

    service.ready.store(false, Ordering::Relaxed);
    let grace = service.config().daemon.shutdown_grace;
    tracing::info!(grace = ?grace, "stopping: no new runs; running steps may finish");
    service.cron.shutdown().await;
    service.watch.shutdown();
    service.conditions.shutdown();
    let stopped = executor.shutdown(grace).await;
    for (run, workflow) in &stopped {
        tracing::warn!(run, workflow = %workflow, "run stopped mid-step by the shutdown; it resumes at the next start");
    }
    service.stopping.cancel();
    gpu_refresh.abort();
    let _ = dispatcher.await;
    match tokio::time::timeout(Duration::from_secs(5), server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::error!("the HTTP server failed: {e}"),
        _ => tracing::warn!("the HTTP server did not stop within 5 s"),
    }
    // The bus's log sender lives in the service: drop it so the writer
    // drains and ends.
    drop(service);
    drop(executor);
    let _ = tokio::time::timeout(Duration::from_secs(5), log_writer).await;
    tracing::info!(stopped = stopped.len(), "daemon stopped");
    Ok(())
}

/// Until SIGTERM or SIGINT; SIGHUP reloads.
async fn wait_for_stop(service: &Arc<Service>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with Ctrl-C");
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM received"); return; }
            _ = tokio::signal::ctrl_c() => { tracing::info!("SIGINT received"); return; }
            _ = hup.recv() => service.reload("SIGHUP").await,
        }
    }
}

/// Watch the config file, workflow folders and plugin folders; a change
/// reloads after 300 ms of quiet.
fn watch_for_reload(service: &Arc<Service>) -> Result<notify::RecommendedWatcher> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res
            && !matches!(ev.kind, notify::EventKind::Access(_))
        {
            for p in ev.paths {
                let _ = tx.send(p);
            }
        }
    })?;
    let config = service.config();
    let watched: Vec<(PathBuf, notify::RecursiveMode)> = config
        .daemon
        .workflow_dirs
        .iter()
        // Recursive: scripts live in sub-folders (`scripts/`).
        .map(|d| (d.clone(), notify::RecursiveMode::Recursive))
        .chain(
            config
                .plugin_dirs
                .iter()
                .map(|d| (d.clone(), notify::RecursiveMode::Recursive)),
        )
        .chain(config.source.iter().filter_map(|s| {
            s.parent()
                .map(|p| (p.to_path_buf(), notify::RecursiveMode::NonRecursive))
        }))
        .collect();
    for (path, mode) in &watched {
        if path.exists()
            && let Err(e) = watcher.watch(path, *mode)
        {
            tracing::warn!(path = %path.display(), "cannot watch for changes: {e}");
        }
    }
    let config_file = config.source.clone().and_then(|s| s.canonicalize().ok());
    let plugin_dirs = config.plugin_dirs.clone();
    let weak = Arc::downgrade(service);
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut paths = vec![first];
            while let Ok(Some(p)) =
                tokio::time::timeout(Duration::from_millis(300), rx.recv()).await
            {
                paths.push(p);
            }
            // Only files that matter: the config, workflows, scripts,
            // plugins (not the data beside them).
            let relevant = paths.iter().any(|p| {
                config_file
                    .as_ref()
                    .is_some_and(|c| p.canonicalize().ok().as_ref() == Some(c) || p == c)
                    || p.extension()
                        .is_some_and(|x| x == "toml" || x == "wasm" || x == "rhai")
                    || plugin_dirs.iter().any(|d| p.starts_with(d) && p != d)
            });
            if !relevant {
                continue;
            }
            let Some(service) = weak.upgrade() else {
                return;
            };
            service.reload("files changed").await;
        }
    });
    Ok(watcher)
}
