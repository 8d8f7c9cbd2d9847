//! The composition root: where Coach's parts are built — once — and wired
//! together. Every command that works on the store opens an [`App`]; the
//! daemon ([`run_daemon`]) adds what a long-running service has: the data
//! directory lock, triggers, the HTTP API, hot reload, signals.
//!
//! One cancellation tree and one task tracker hold everything that runs
//! in the background: stopping is cancelling the root and waiting for the
//! tracker, with a deadline, saying what did not stop.

use crate::compute::gpus::GpuQueue;
use crate::compute::slurm::Slurm;
use crate::config::Config;
use crate::events::Bus;
use crate::events::metrics::Metrics;
use crate::executor::Executor;
use crate::pipeline::Runner;
use crate::plugin::PluginHost;
use crate::registry::Artifacts;
use crate::service::Service;
use crate::service::lifecycle;
use crate::service::lock::DataDirLock;
use crate::store::Store;
use crate::store::lease::DatabaseLease;
use crate::store::outcomes::OutcomeJournal;
use crate::workflow::set::WorkflowSet;
use anyhow::{Context, Result};
use notify::Watcher;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Who opens the app: what its executor is called in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The daemon: it claims queued runs as `daemon:<host>:<data dir>`.
    Daemon,
    /// A command: a run it executes (`coach run`) is claimed as
    /// `cli:<host>:<pid>:<start time>`.
    Command,
}

/// Everything a command needs, built once.
pub struct App {
    pub config: Config,
    pub store: Store,
    pub host: Arc<PluginHost>,
    pub runner: Arc<Runner>,
    pub executor: Arc<Executor>,
    pub service: Arc<Service>,
    pub bus: Bus,
    /// The root of the cancellation tree.
    pub stop: CancellationToken,
    /// Every background task.
    pub tracker: TaskTracker,
    /// Writes run log lines to the store until every sender is gone.
    log_writer: tokio::task::JoinHandle<()>,
    mode: Mode,
}

impl App {
    /// Open the data directory and the store (migrated), discover plugins
    /// (a daemon compiles them meanwhile), build the runner, executor and
    /// service. Runs of `coach run` processes on this machine that died
    /// are marked interrupted.
    pub async fn open(config: Config, mode: Mode) -> Result<App> {
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!(
                "cannot create the data directory {}",
                config.data_dir.display()
            )
        })?;
        let url = config.database_url();
        if let Some(file) = crate::store::sqlite_file(&url) {
            crate::store::health::refuse_a_lost_store(
                std::path::Path::new(file),
                &config.artifacts_dir(),
            )?;
        }
        let host = Arc::new(PluginHost::new(&config)?);
        // A daemon compiles its plugins while the store is opened and
        // checked: both take a while at start, and neither needs the other.
        let warming = (mode == Mode::Daemon).then(|| {
            let host = host.clone();
            tokio::task::spawn_blocking(move || host.warm_up())
        });
        let store = match mode {
            Mode::Daemon => Store::connect_checked(&url).await?,
            Mode::Command => Store::connect(&url).await?,
        };
        store.set_review_policy(config.review);
        if let Some(warming) = warming {
            for (plugin, why) in warming.await? {
                tracing::error!(plugin = %plugin, "plugin cannot be loaded: {why}");
            }
        }
        let grace = config.daemon.shutdown_grace;
        for l in lifecycle::end_orphaned_cli_runs(&store, grace).await? {
            tracing::warn!(run = %l.run, workflow = %l.workflow, "{}", l.what);
        }
        let metrics = Arc::new(Metrics::new());
        let (bus, log_rx) = Bus::new(metrics);
        let log_writer = tokio::spawn(crate::store::queue::write_logs(
            store.clone(),
            log_rx,
            bus.log_progress(),
        ));
        let runner = Arc::new(Runner {
            host: host.clone(),
            store: store.clone(),
            artifacts: Artifacts::new(config.artifacts_dir()),
            gpus: GpuQueue::new(config.gpus.clone()),
            slurm: Arc::new(Slurm::new(config.slurm.clone())),
            work_dir: config.work_dir(),
            process_grace: grace,
        });
        let instance = match mode {
            Mode::Daemon => lifecycle::instance_name(&config.data_dir),
            Mode::Command => lifecycle::cli_identity(),
        };
        let stop = CancellationToken::new();
        let executor = Arc::new(Executor::new(
            runner.clone(),
            instance,
            Arc::new(WorkflowSet::default()),
            bus.clone(),
            config.daemon.max_parallel_runs,
            &stop,
        ));
        let service = Arc::new(Service::new(
            config.clone(),
            executor.clone(),
            bus.clone(),
            stop.child_token(),
        ));
        Ok(App {
            config,
            store,
            host,
            runner,
            executor,
            service,
            bus,
            stop,
            tracker: TaskTracker::new(),
            log_writer,
            mode,
        })
    }

    /// Stop everything this app started: cancel the tree, wait up to
    /// `deadline` for its tasks (saying how many did not stop), then let
    /// the log writer store what is left.
    pub async fn close(self, deadline: Duration) {
        self.stop.cancel();
        self.tracker.close();
        if tokio::time::timeout(deadline, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                tasks = self.tracker.len(),
                "background tasks did not stop within {deadline:?}; they end with the process"
            );
        }
        let App {
            log_writer,
            service,
            executor,
            runner,
            bus,
            store,
            config,
            mode,
            ..
        } = self;
        // The writer ends once every sender of the bus is gone.
        drop((service, executor, runner, bus));
        if tokio::time::timeout(Duration::from_secs(5), log_writer)
            .await
            .is_err()
        {
            tracing::warn!("run log lines still unwritten after 5 s are lost");
            return;
        }
        // A daemon that stops cleanly notes how it left a SQLite store, so
        // the next start need not check it again.
        if mode == Mode::Daemon {
            let url = config.database_url();
            match store.close().await {
                Ok(()) => {
                    if let Some(file) = crate::store::sqlite_file(&url) {
                        crate::store::health::mark_clean_stop(std::path::Path::new(file));
                    }
                }
                Err(e) => tracing::warn!("cannot close the store: {e:#}"),
            }
        }
    }
}

/// How often the daemon looks for runs of `coach run` processes on this
/// host that died.
const ORPHAN_SWEEP: Duration = Duration::from_secs(15);
/// How often the daemon adds newly logged messages to the text index.
const TEXT_INDEX_EVERY: Duration = Duration::from_secs(60);

/// Run the daemon until SIGTERM or SIGINT.
pub async fn run_daemon(config: Config) -> Result<()> {
    let started = Instant::now();
    let _lock = DataDirLock::acquire(&config.data_dir, &config.daemon.listen)?;
    let listen = config.daemon.listen;
    let holder = format!(
        "coach daemon {} pid {}",
        lifecycle::host_name(),
        std::process::id()
    );
    let database_url = config.database_url();
    let lease = DatabaseLease::acquire(&database_url, &holder).await?;
    let app = App::open(config, Mode::Daemon).await?;
    // Stopping asked for by the daemon itself (its database lock lost).
    let shutdown = app.stop.child_token();
    let lease_lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if let Some(lease) = lease {
        app.tracker.spawn(keep_lease(
            lease,
            database_url,
            holder,
            shutdown.clone(),
            lease_lost.clone(),
            app.stop.clone(),
        ));
    }
    // Runs' ends an earlier start could not record go in first: a run
    // that failed is never resumed.
    let (journal, left) = OutcomeJournal::open(&app.config.data_dir)?;
    for end in &left {
        app.store.record_pending_end(end).await.with_context(|| {
            format!(
                "cannot record the end of run {} kept in the outcome journal",
                end.run
            )
        })?;
        journal.forget(end.run)?;
    }
    app.executor.use_journal(Arc::new(journal));
    let grace = app.config.daemon.shutdown_grace;
    lifecycle::requeue_interrupted(&app.store, &app.executor.instance, grace).await?;
    let service = app.service.clone();
    service.reload_workflows(false);
    // Deployed versions are loaded before the daemon says it is ready.
    if let Err(e) = service.server.start().await {
        tracing::error!("cannot load the deployed models: {e:#}");
    }
    app.tracker
        .spawn(service.server.clone().follow(app.stop.child_token()));
    // Experiments and canaries are looked at, and decided, on a clock.
    {
        let (service, stop) = (service.clone(), app.stop.child_token());
        app.tracker.spawn(async move {
            loop {
                let every = service.config().daemon.experiment_interval;
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
                service.look_at_experiments().await;
            }
        });
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;

    // Triggers decide; the service acts on what they decide.
    let (fires, mut fire_rx) = mpsc::channel(crate::trigger::FIRE_BUFFER);
    let triggers_stop = app.stop.child_token();
    {
        let (service, stop) = (service.clone(), app.stop.clone());
        app.tracker.spawn(async move {
            loop {
                tokio::select! {
                    emitted = fire_rx.recv() => match emitted {
                        Some(crate::trigger::Emitted { fire, done }) => {
                            // `fire` logs and records the outcome.
                            let _ = service.fire(fire).await;
                            if let Some(done) = done {
                                let _ = done.send(());
                            }
                        }
                        None => return,
                    },
                    () = stop.cancelled() => return,
                }
            }
        });
    }
    let triggers = crate::trigger::Context {
        workflows: app.executor.workflows.clone(),
        store: app.store.clone(),
        host: app.host.clone(),
        bus: app.bus.clone(),
        fires,
        tracker: app.tracker.clone(),
        stop: triggers_stop.clone(),
    };
    // Fires missed while the daemon was down are queued before it says it
    // is ready.
    for fire in crate::trigger::cron::catch_up(&triggers).await? {
        // `fire` logs and records the outcome.
        let _ = service.fire(fire).await;
    }
    crate::trigger::start(triggers).await?;
    let _reload_watcher = watch_for_reload(&app)?;
    app.tracker.spawn(app.executor.clone().dispatch());
    // A `coach run` killed while the daemon runs leaves its run `running`;
    // a `forbid` workflow would wait on it for ever.
    {
        let (store, stop) = (app.store.clone(), app.stop.clone());
        app.tracker.spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(ORPHAN_SWEEP) => {}
                    () = stop.cancelled() => return,
                }
                match lifecycle::end_orphaned_cli_runs(&store, grace).await {
                    Ok(ended) => {
                        for l in ended {
                            tracing::warn!(run = %l.run, workflow = %l.workflow, "{}", l.what);
                        }
                    }
                    Err(e) => tracing::error!(
                        "cannot look for runs of `coach run` processes that are gone: {e:#}"
                    ),
                }
            }
        });
    }
    app.tracker
        .spawn(refresh_gpus(app.runner.gpus.clone(), app.stop.clone()));
    // The text index of logged messages keeps up with them (searches
    // scan only what it does not hold yet): at start, then every minute,
    // a short write at a time.
    {
        let (store, stop) = (app.store.clone(), app.stop.clone());
        app.tracker.spawn(async move {
            loop {
                loop {
                    match store.catch_up_text_index().await {
                        Ok(true) if !stop.is_cancelled() => tokio::task::yield_now().await,
                        Ok(_) => break,
                        Err(e) => {
                            tracing::warn!(
                                "cannot bring the messages' text index up to date: {e:#}"
                            );
                            break;
                        }
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(TEXT_INDEX_EVERY) => {}
                    () = stop.cancelled() => return,
                }
            }
        });
    }
    let router = crate::api::router(service.clone());
    let limits = crate::api::serve::ServeLimits::for_this_process();
    let server = app.tracker.spawn(crate::api::serve::serve(
        listener,
        router,
        limits,
        service.stopping.clone(),
    ));
    // Listening for SIGTERM and SIGHUP before anyone can know the daemon
    // is up: a signal sent the moment the address is printed must not
    // fall between installing the handler and subscribing to it.
    let signals = Signals::listen();
    service.ready.store(true, Ordering::Relaxed);
    tracing::info!(address = %addr, ms = started.elapsed().as_millis() as u64, "daemon ready");
    // Scripts and tests read the address from this line.
    // The address on stdout for whoever started the daemon; a closed
    // stdout is not the daemon's concern.
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "coach daemon listening on http://{addr}").and_then(|()| out.flush());
    }

    wait_for_stop(signals, &service, &shutdown).await;

    service.ready.store(false, Ordering::Relaxed);
    // The grace in service now (a reload may have changed it).
    let grace = service.config().daemon.shutdown_grace;
    tracing::info!(grace = ?grace, "stopping: no new runs; running steps may finish");
    triggers_stop.cancel();
    let stopped = app.executor.shutdown(grace).await;
    for (run, workflow) in &stopped {
        tracing::warn!(run = %run, workflow = %workflow, "run stopped mid-step by the shutdown; it resumes at the next start");
    }
    app.stop.cancel();
    if tokio::time::timeout(Duration::from_secs(6), server)
        .await
        .is_err()
    {
        tracing::warn!("the HTTP server did not stop within 6 s");
    }
    drop(service);
    app.close(Duration::from_secs(5)).await;
    tracing::info!(stopped = stopped.len(), "daemon stopped");
    if lease_lost.load(Ordering::Relaxed) {
        anyhow::bail!("stopped: the database lock was lost to another daemon");
    }
    Ok(())
}

/// Hold the database lock: ping it, take it again on a new connection if
/// the old one died, and stop the daemon if another daemon took it
/// meanwhile (two daemons would fire every trigger twice).
async fn keep_lease(
    mut lease: DatabaseLease,
    url: String,
    holder: String,
    shutdown: CancellationToken,
    lost: Arc<std::sync::atomic::AtomicBool>,
    stop: CancellationToken,
) {
    use crate::store::lease::PING;
    loop {
        tokio::select! {
            () = tokio::time::sleep(PING) => {}
            () = stop.cancelled() => {
                lease.release().await;
                return;
            }
        }
        let Err(e) = lease.ping().await else {
            continue;
        };
        tracing::warn!("{e:#}; taking the database lock again");
        loop {
            match DatabaseLease::acquire(&url, &holder).await {
                Ok(Some(l)) => {
                    tracing::info!("database lock taken again");
                    lease = l;
                    break;
                }
                Ok(None) => return,
                Err(e) if format!("{e:#}").contains("another Coach daemon") => {
                    tracing::error!("{e:#}; stopping");
                    lost.store(true, Ordering::Relaxed);
                    shutdown.cancel();
                    return;
                }
                Err(e) => tracing::warn!("{e:#}; trying again in {PING:?}"),
            }
            tokio::select! {
                () = tokio::time::sleep(PING) => {}
                () = stop.cancelled() => return,
            }
        }
    }
}

/// Read the GPU inventory again every `[gpus] refresh` (NVML calls block:
/// off the async threads).
async fn refresh_gpus(gpus: Arc<GpuQueue>, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(gpus.refresh_every()) => {}
            () = stop.cancelled() => return,
        }
        let g = gpus.clone();
        if tokio::task::spawn_blocking(move || g.refresh())
            .await
            .is_err()
        {
            tracing::error!("reading the GPU inventory panicked");
        }
    }
}

/// The daemon's subscriptions to SIGTERM and SIGHUP.
struct Signals(std::io::Result<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>);

impl Signals {
    fn listen() -> Signals {
        use tokio::signal::unix::{SignalKind, signal};
        Signals(
            signal(SignalKind::terminate()).and_then(|t| Ok((t, signal(SignalKind::hangup())?))),
        )
    }
}

/// Until SIGTERM or SIGINT (or the app is stopped); SIGHUP reloads.
async fn wait_for_stop(signals: Signals, service: &Arc<Service>, stop: &CancellationToken) {
    let Ok((mut term, mut hup)) = signals.0 else {
        tracing::error!("cannot install signal handlers; stop with Ctrl-C");
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM received"); return; }
            _ = tokio::signal::ctrl_c() => { tracing::info!("SIGINT received"); return; }
            _ = hup.recv() => service.reload("SIGHUP").await,
            () = stop.cancelled() => return,
        }
    }
}

/// Paths a watcher reports before the reloader reads them. A burst beyond
/// it is not dropped silently: it forces a reload (a change that matters
/// may have been among the paths not kept).
const RELOAD_BUFFER: usize = 1024;

/// Watch the config file, workflow folders and plugin folders; a change
/// reloads after 300 ms of quiet.
fn watch_for_reload(app: &App) -> Result<notify::RecommendedWatcher> {
    let (tx, mut rx) = mpsc::channel::<PathBuf>(RELOAD_BUFFER);
    let overflowed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let overflow = overflowed.clone();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res
            && !matches!(ev.kind, notify::EventKind::Access(_))
        {
            for p in ev.paths {
                if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(p) {
                    overflow.store(true, Ordering::Relaxed);
                }
            }
        }
    })?;
    let config = &app.config;
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
    // A plugin folder that does not exist yet is made, so that a plugin
    // installed into it later (`coach plugin install`) is seen.
    for dir in &config.plugin_dirs {
        if !dir.exists()
            && let Err(e) = std::fs::create_dir_all(dir)
        {
            tracing::warn!(path = %dir.display(), "cannot create the plugin folder: {e}");
        }
    }
    for (path, mode) in &watched {
        if path.exists()
            && let Err(e) = watcher.watch(path, *mode)
        {
            tracing::warn!(path = %path.display(), "cannot watch for changes: {e}");
        }
    }
    let config_file = config.source.clone().and_then(|s| s.canonicalize().ok());
    let plugin_dirs = config.plugin_dirs.clone();
    let (service, stop) = (app.service.clone(), app.stop.clone());
    app.tracker.spawn(async move {
        loop {
            let first = tokio::select! {
                p = rx.recv() => match p { Some(p) => p, None => return },
                () = stop.cancelled() => return,
            };
            let mut paths = vec![first];
            loop {
                tokio::select! {
                    more = tokio::time::timeout(Duration::from_millis(300), rx.recv()) => match more {
                        Ok(Some(p)) => paths.push(p),
                        _ => break,
                    },
                    () = stop.cancelled() => return,
                }
            }
            // Only files that matter: the config, workflows, scripts,
            // plugins (not the data beside them).
            let relevant = overflowed.swap(false, Ordering::Relaxed)
                || paths.iter().any(|p| {
                config_file
                    .as_ref()
                    .is_some_and(|c| p.canonicalize().ok().as_ref() == Some(c) || p == c)
                    || p.extension()
                        .is_some_and(|x| x == "toml" || x == "wasm" || x == "rhai")
                    || plugin_dirs.iter().any(|d| p.starts_with(d) && p != d)
            });
            if relevant && !stop.is_cancelled() {
                service.reload("files changed").await;
            }
        }
    });
    Ok(watcher)
}
