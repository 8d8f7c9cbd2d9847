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

use crate::experiment::assign;
use crate::experiment::results::Requests;
use crate::experiment::spec::{Key, Namespace, Spec};
use crate::plugin::bindings::Prediction;
use crate::plugin::{JobSpec, PluginFailure, PluginHost, TrainerJob};
use crate::registry::Artifacts;
use crate::store::experiments::ExperimentRow;
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

/// An arm of a route: a name and the loaded version that answers it.
pub struct RouteArm {
    pub name: String,
    pub served: Arc<Served>,
}

/// An experiment's or canary's split of a route's traffic.
pub struct Split {
    pub experiment: i64,
    pub name: String,
    pub canary: bool,
    key: Key,
    seed: String,
    ranges: Vec<(f64, f64)>,
    namespace: Option<Namespace>,
    /// Requests per arm since the last flush (shared across syncs).
    counters: Arc<Mutex<Vec<Requests>>>,
}

/// Where a request of a route goes.
pub struct Pick {
    pub arm: usize,
    /// The unit hashed, when the request takes part in the split.
    pub unit: Option<String>,
}

/// What one (model name, environment) serves: the deployed version (arm
/// 0), and the other arms while an experiment or canary runs there.
pub struct Route {
    pub arms: Vec<RouteArm>,
    pub split: Option<Split>,
}

impl Route {
    /// The arm for a request: sticky by its user (else conversation) as
    /// the experiment's key says. A request without the key, or outside
    /// the experiment's coverage or namespace, gets the deployed version
    /// and takes no part; a canary splits keyless requests at random.
    pub fn pick(&self, user_id: Option<&str>, conversation_id: Option<&str>) -> Pick {
        let outside = Pick { arm: 0, unit: None };
        let Some(split) = &self.split else {
            return outside;
        };
        // An empty id names no one.
        let (user_id, conversation_id) = (
            user_id.filter(|u| !u.is_empty()),
            conversation_id.filter(|c| !c.is_empty()),
        );
        let unit = match split.key {
            Key::UserId => user_id.or(conversation_id),
            Key::ConversationId => conversation_id,
        };
        let Some(unit) = unit else {
            if split.canary {
                let r = uuid::Uuid::new_v4().to_string();
                let arm = assign::assign(&split.seed, &r, &split.ranges).unwrap_or(0);
                return Pick { arm, unit: None };
            }
            return outside;
        };
        if let Some(ns) = &split.namespace
            && !assign::in_namespace(unit, &ns.name, ns.from, ns.to)
        {
            return outside;
        }
        match assign::assign(&split.seed, unit, &split.ranges) {
            Some(arm) if arm < self.arms.len() => Pick {
                arm,
                unit: Some(unit.to_owned()),
            },
            _ => outside,
        }
    }

    /// Count a request answered by `arm` of the split.
    pub fn record(&self, arm: usize, ok: bool, ms: f64) {
        if let Some(split) = &self.split {
            let mut c = split.counters.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(r) = c.get_mut(arm) {
                r.record(ok, ms);
            }
        }
    }
}

/// Routes from (model name, environment) to loaded versions.
pub struct Server {
    host: Arc<PluginHost>,
    store: Store,
    artifacts: Artifacts,
    instances: usize,
    routes: RwLock<HashMap<(String, String), Arc<Route>>>,
    loaded: Mutex<HashMap<i64, Arc<Served>>>,
    /// Request counts of running splits, by experiment id.
    counters: Mutex<HashMap<i64, Arc<Mutex<Vec<Requests>>>>>,
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
            counters: Mutex::new(HashMap::new()),
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

    /// What `environment` of `name` is served by, if loaded.
    pub fn route(&self, name: &str, environment: &str) -> Option<Arc<Route>> {
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

    /// Take the request counts of experiment `id` counted since the last
    /// take (per arm).
    pub fn take_counters(&self, id: i64) -> Vec<Requests> {
        let c = self
            .counters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned();
        match c {
            Some(c) => {
                let mut c = c.lock().unwrap_or_else(|e| e.into_inner());
                let fresh = vec![Requests::default(); c.len()];
                std::mem::replace(&mut *c, fresh)
            }
            None => Vec::new(),
        }
    }

    /// The request counts of experiment `id` not taken yet.
    pub fn peek_counters(&self, id: i64) -> Vec<Requests> {
        self.counters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .map(|c| c.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .unwrap_or_default()
    }

    /// Make the routes what the store's deployments and running
    /// experiments say: load what is new, swap the routes, unload what no
    /// route needs beyond [`MAX_LOADED`]. A version that cannot be loaded
    /// keeps its old route (and is logged); an experiment arm that cannot
    /// leaves the route unsplit; the others go on.
    pub async fn sync(&self) -> Result<()> {
        let _one = self.syncing.lock().await;
        let fingerprint = self.store.deployments_fingerprint().await?;
        let deployments = self.store.deployments(None).await?;
        let experiments = self.store.experiments(None, true).await?;
        let mut ids: Vec<i64> = deployments.iter().map(|d| d.model_id).collect();
        let mut specs = HashMap::new();
        for e in &experiments {
            match serde_json::from_str::<Spec>(&e.spec) {
                Ok(spec) => {
                    ids.extend(spec.arms.iter().filter_map(|a| a.model_id));
                    specs.insert((e.model_name.clone(), e.environment.clone()), (e, spec));
                }
                Err(err) => tracing::error!(experiment = %e.name, "unreadable spec: {err}"),
            }
        }
        let models: HashMap<i64, ModelRow> = self
            .store
            .models_by_id(&ids)
            .await?
            .into_iter()
            .map(|m| (m.id, m))
            .collect();
        let mut next = HashMap::new();
        let mut live_counters = std::collections::HashSet::new();
        for d in &deployments {
            let key = (d.model_name.clone(), d.environment.clone());
            let Some(model) = models.get(&d.model_id) else {
                continue;
            };
            let control = match self.load(model).await {
                Ok(served) => served,
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
                    continue;
                }
            };
            let mut route = Route {
                arms: vec![RouteArm {
                    name: "control".into(),
                    served: control,
                }],
                split: None,
            };
            if let Some((e, spec)) = specs
                .get(&key)
                .filter(|(e, _)| e.control_model_id == d.model_id)
            {
                match self.split_of(e, spec, &models, &mut route).await {
                    Ok(()) => {
                        live_counters.insert(e.id);
                    }
                    Err(err) => {
                        tracing::error!(experiment = %e.name, "cannot load an arm; the route serves the deployed version alone: {err:#}");
                        route.arms.truncate(1);
                        route.split = None;
                    }
                }
            }
            next.insert(key, Arc::new(route));
        }
        let routed: std::collections::HashSet<i64> = next
            .values()
            .flat_map(|r| r.arms.iter().map(|a| a.served.model.id))
            .collect();
        *self.routes.write().unwrap_or_else(|e| e.into_inner()) = next;
        self.counters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|id, _| live_counters.contains(id));
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

    /// Add experiment `e`'s treatment arms and split to `route`.
    async fn split_of(
        &self,
        e: &ExperimentRow,
        spec: &Spec,
        models: &HashMap<i64, ModelRow>,
        route: &mut Route,
    ) -> Result<()> {
        route.arms[0].name = spec.arms[0].name.clone();
        for arm in &spec.arms[1..] {
            let id = arm
                .model_id
                .with_context(|| format!("arm `{}` names no model", arm.name))?;
            let model = models
                .get(&id)
                .with_context(|| format!("arm `{}`: model {id} is gone", arm.name))?;
            route.arms.push(RouteArm {
                name: arm.name.clone(),
                served: self.load(model).await?,
            });
        }
        let counters = self
            .counters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(e.id)
            .or_insert_with(|| Arc::new(Mutex::new(vec![Requests::default(); spec.arms.len()])))
            .clone();
        {
            let mut c = counters.lock().unwrap_or_else(|e| e.into_inner());
            c.resize(spec.arms.len(), Requests::default());
        }
        let weights = spec.weights();
        route.split = Some(Split {
            experiment: e.id,
            name: e.name.clone(),
            canary: spec.canary.is_some(),
            key: spec.key,
            seed: spec.seed.clone(),
            ranges: assign::bucket_ranges(weights.len(), spec.coverage, Some(&weights)),
            namespace: spec.namespace.clone(),
            counters,
        });
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
