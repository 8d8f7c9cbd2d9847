//! Serving deployed models: each deployed version stays loaded as a pool
//! of ready plugin instances (the model's artifact loaded into each), so a
//! prediction never waits for a compile or a load.
//!
//! Lifecycle of a version: **loaded** off the request path (when its
//! deployment appears, or before a deploy moves traffic to it), **routed**
//! once its pool is full (the route is swapped atomically: requests in
//! flight finish on the version they started on, new ones take the new
//! one), **unloaded** when no deployment routes to it and it is the least
//! recently used of more than [`MAX_LOADED`] loaded versions. An instance
//! that traps is replaced by a fresh one; the request that hit the trap
//! fails with the plugin's error and no other does.
//!
//! The routes follow the store: the daemon syncs them at start, right
//! after a change it makes itself, and when a change made by another
//! process (a `coach deploy` on the store) shows in the deployments'
//! fingerprint, checked every [`POLL`].

use crate::plugin::bindings::Prediction;
use crate::plugin::{JobSpec, PluginFailure, PluginHost, TrainerJob};
use crate::registry::Artifacts;
use crate::store::{ModelRow, Store};
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use wasmtime::component::ResourceAny;

/// Versions kept loaded beyond those deployed.
pub const MAX_LOADED: usize = 8;
/// How long one prediction call may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the store's deployments are checked for outside changes.
pub const POLL: Duration = Duration::from_secs(1);
/// Most texts one predict request may carry.
pub const MAX_TEXTS: usize = 256;

/// Ready instances per loaded version: one per core (at most 8), so every
/// core can answer at once and memory stays bounded.
pub fn instances_per_version() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 8)
}

/// One plugin instance with the model loaded.
struct Instance {
    job: TrainerJob,
    model: ResourceAny,
}

/// A loaded model version: its pool of instances.
pub struct Served {
    pub model: ModelRow,
    host: Arc<PluginHost>,
    bytes: Arc<Vec<u8>>,
    free: Mutex<Vec<Instance>>,
    permits: tokio::sync::Semaphore,
    last_used: Mutex<Instant>,
}

fn new_instance(
    host: &PluginHost,
    model: &ModelRow,
    bytes: &[u8],
) -> Result<Instance, PluginFailure> {
    let mut job = host.trainer(
        &model.trainer_plugin,
        JobSpec {
            run: String::new(),
            step: format!("serve {} v{}", model.name, model.version),
            ..Default::default()
        },
    )?;
    job.renew(CALL_TIMEOUT * 4);
    let handle = job.load_model(bytes)?;
    Ok(Instance { job, model: handle })
}

impl Served {
    /// Load `model` into `instances` fresh instances (blocking: run it off
    /// the async threads).
    fn load(
        host: Arc<PluginHost>,
        artifacts: &Artifacts,
        model: ModelRow,
        instances: usize,
    ) -> Result<Served> {
        crate::registry::deployments::servable(&model).map_err(anyhow::Error::msg)?;
        let bytes = artifacts
            .get(&model.artifact_hash)
            .with_context(|| format!("model {} ({} v{})", model.id, model.name, model.version))?;
        let mut pool = Vec::with_capacity(instances);
        for _ in 0..instances {
            pool.push(new_instance(&host, &model, &bytes)?);
        }
        Ok(Served {
            permits: tokio::sync::Semaphore::new(pool.len()),
            free: Mutex::new(pool),
            model,
            host,
            bytes: Arc::new(bytes),
            last_used: Mutex::new(Instant::now()),
        })
    }

    /// Predict `texts` on a free instance (waiting for one while all are
    /// busy).
    pub async fn predict(
        self: &Arc<Self>,
        texts: Vec<String>,
    ) -> Result<Vec<Prediction>, PluginFailure> {
        let _permit = self
            .permits
            .acquire()
            .await
            .expect("the semaphore is never closed");
        *self.last_used.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        let instance = self
            .free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .expect("a permit means a free instance");
        let me = self.clone();
        let (instance, result) = tokio::task::spawn_blocking(move || {
            let mut instance = instance;
            instance.job.renew(CALL_TIMEOUT);
            let result = instance.job.predict(instance.model, &texts);
            if !instance.job.usable() {
                // The trap poisoned it: a fresh one takes its place.
                match new_instance(&me.host, &me.model, &me.bytes) {
                    Ok(fresh) => instance = fresh,
                    Err(e) => tracing::error!(
                        model = me.model.id,
                        "cannot replace a failed serving instance: {e}"
                    ),
                }
            }
            (instance, result)
        })
        .await
        .map_err(|e| PluginFailure::Trap {
            plugin: self.model.trainer_plugin.clone(),
            detail: format!("the prediction task ended: {e}"),
        })?;
        self.free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(instance);
        result
    }
}

/// Routes from (model name, environment) to loaded versions.
pub struct Server {
    host: Arc<PluginHost>,
    store: Store,
    artifacts: Artifacts,
    instances: usize,
    routes: RwLock<HashMap<(String, String), Arc<Served>>>,
    loaded: Mutex<HashMap<i64, Arc<Served>>>,
    /// One sync or load at a time.
    syncing: tokio::sync::Mutex<()>,
    fingerprint: Mutex<Option<(u64, i64)>>,
    /// Set when the daemon serves: a command-line process loads nothing.
    active: std::sync::atomic::AtomicBool,
}

impl Server {
    pub fn new(host: Arc<PluginHost>, store: Store, artifacts: Artifacts) -> Server {
        Server {
            host,
            store,
            artifacts,
            instances: instances_per_version(),
            routes: RwLock::new(HashMap::new()),
            loaded: Mutex::new(HashMap::new()),
            syncing: tokio::sync::Mutex::new(()),
            fingerprint: Mutex::new(None),
            active: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Whether this process serves (the daemon does, after its first sync).
    pub fn active(&self) -> bool {
        self.active.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Start serving: load every deployed version and route to it.
    pub async fn start(&self) -> Result<()> {
        self.active
            .store(true, std::sync::atomic::Ordering::Release);
        self.sync().await
    }

    /// The version `environment` of `name` is served by, if loaded.
    pub fn route(&self, name: &str, environment: &str) -> Option<Arc<Served>> {
        self.routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(name.to_owned(), environment.to_owned()))
            .cloned()
    }

    /// `model` loaded (now, off the async threads, unless it already is).
    pub async fn load(&self, model: &ModelRow) -> Result<Arc<Served>> {
        if let Some(s) = self
            .loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&model.id)
        {
            return Ok(s.clone());
        }
        let (host, artifacts, row, n) = (
            self.host.clone(),
            self.artifacts.clone(),
            model.clone(),
            self.instances,
        );
        let started = Instant::now();
        let served = tokio::task::spawn_blocking(move || Served::load(host, &artifacts, row, n))
            .await
            .context("loading the model panicked")??;
        tracing::info!(
            model = model.id,
            name = %model.name,
            version = model.version,
            instances = n,
            ms = started.elapsed().as_millis() as u64,
            "model version loaded for serving"
        );
        let served = Arc::new(served);
        self.loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(model.id, served.clone());
        Ok(served)
    }

    /// Make the routes what the store's deployments say: load what is
    /// new, swap the routes, unload what no route needs beyond
    /// [`MAX_LOADED`]. A version that cannot be loaded keeps its old route
    /// (and is logged); the others go on.
    pub async fn sync(&self) -> Result<()> {
        let _one = self.syncing.lock().await;
        let fingerprint = self.store.deployments_fingerprint().await?;
        let deployments = self.store.deployments(None).await?;
        let ids: Vec<i64> = deployments.iter().map(|d| d.model_id).collect();
        let models: HashMap<i64, ModelRow> = self
            .store
            .models_by_id(&ids)
            .await?
            .into_iter()
            .map(|m| (m.id, m))
            .collect();
        let mut next = HashMap::new();
        for d in &deployments {
            let key = (d.model_name.clone(), d.environment.clone());
            let Some(model) = models.get(&d.model_id) else {
                continue;
            };
            match self.load(model).await {
                Ok(served) => {
                    next.insert(key, served);
                }
                Err(e) => {
                    tracing::error!(
                        model = model.id,
                        name = %d.model_name,
                        environment = %d.environment,
                        "cannot load the deployed version; the route keeps what it had: {e:#}"
                    );
                    if let Some(old) = self.route(&key.0, &key.1) {
                        next.insert(key, old);
                    }
                }
            }
        }
        let routed: std::collections::HashSet<i64> = next.values().map(|s| s.model.id).collect();
        *self.routes.write().unwrap_or_else(|e| e.into_inner()) = next;
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if loaded.len() > MAX_LOADED {
            let mut idle: Vec<(Instant, i64)> = loaded
                .values()
                .filter(|s| !routed.contains(&s.model.id))
                .map(|s| {
                    (
                        *s.last_used.lock().unwrap_or_else(|e| e.into_inner()),
                        s.model.id,
                    )
                })
                .collect();
            idle.sort();
            let excess = loaded.len() - MAX_LOADED;
            for (_, id) in idle.into_iter().take(excess) {
                loaded.remove(&id);
                tracing::info!(model = id, "model version unloaded (least recently used)");
            }
        }
        *self.fingerprint.lock().unwrap_or_else(|e| e.into_inner()) = Some(fingerprint);
        Ok(())
    }

    /// Follow changes made by other processes until `stop`.
    pub async fn follow(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(POLL) => {}
            }
            let now = match self.store.deployments_fingerprint().await {
                Ok(f) => f,
                Err(e) => {
                    tracing::debug!("cannot read the deployments' fingerprint: {e:#}");
                    continue;
                }
            };
            let known = *self.fingerprint.lock().unwrap_or_else(|e| e.into_inner());
            if known != Some(now)
                && let Err(e) = self.sync().await
            {
                tracing::warn!("cannot sync the served models with the store: {e:#}");
            }
        }
    }
}
