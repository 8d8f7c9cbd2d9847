//! The plugin host: wasmtime engine, manifests, capability grants, limits,
//! the compile cache and the bindings of every supported interface version.
//!
//! Lifecycle of a plugin, and how often each phase runs:
//! 1. **discovered** — once at start: its manifest is read and checked
//!    (built-in plugins come with the binary, others from `plugin_dirs`);
//! 2. **compiled** — once per process, on first use: from the compile cache
//!    when it holds this component for this engine, else by Cranelift;
//!    linked into an `InstancePre`;
//! 3. **instantiated** — once per job: a fresh `Store` with its own WASI
//!    context, memory limit and deadline ([`job`]);
//! 4. **called** — any number of times within the job, each call with a
//!    fresh deadline;
//! 5. **dropped** — with the job, or at once after any trap.
//!
//! Nothing is granted by default: no environment, no network, no stdin, no
//! files. A plugin gets read access to the paths a step names only when its
//! manifest asks for `filesystem = "read"` *and* the operator's config grants
//! a folder that holds them ([`PluginHost::check_read_paths`]).

pub mod bindings;
pub mod builtin;
pub mod cache;
pub mod convert;
pub mod error;
pub mod inspect;
pub mod job;
pub mod manifest;
pub mod net;

use crate::config::{Config, Grant, Limits};
use crate::core::sync::ReadWrite;
use anyhow::{Context, Result};
use cache::{CacheOutcome, CompileCache};
use manifest::{FsAccess, Kind, Manifest};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};
use wasmtime::component::{HasSelf, InstancePre, Linker};
use wasmtime::{Engine, EngineWeak};

pub use error::PluginFailure;
pub use job::{AnalyzerJob, JobSpec, Observer, PluginEvent, SourceJob, TrainerJob};

/// How often the epoch ticker advances; deadlines are checked at this grain.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Where a plugin came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    BuiltIn,
    Dir(PathBuf),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::BuiltIn => f.write_str("built-in"),
            Origin::Dir(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A discovered plugin. Compiled lazily, once.
pub struct Installed {
    pub manifest: Manifest,
    pub origin: Origin,
    pub wasm_sha256: String,
    pub wasm: Wasm,
    pre: OnceLock<Result<InstancePre<job::JobState>, String>>,
}

impl Installed {
    pub fn id(&self) -> &str {
        self.manifest.id.as_str()
    }
}

/// How long compiling (or loading from the cache) took, for `coach bench`.
#[derive(Debug, Clone, Copy)]
pub struct LoadTiming {
    pub outcome: CacheOutcome,
    pub elapsed: Duration,
}

pub struct PluginHost {
    engine: Engine,
    linker: Linker<job::JobState>,
    /// `linker` and `wasi:http`, for plugins that ask for `http`.
    linker_http: Linker<job::JobState>,
    cache: CompileCache,
    // Swapped whole on reload; jobs hold their own `Arc<Installed>`, so a
    // reload never changes a plugin under a running job.
    plugins: RwLock<BTreeMap<String, Arc<Installed>>>,
    limits: RwLock<Limits>,
    grants: RwLock<BTreeMap<String, Grant>>,
    /// Why the last discovery or reload could not take a plugin folder, by
    /// folder.
    problems: RwLock<BTreeMap<String, String>>,
    _ticker: EpochTicker,
}

/// A component's bytes: embedded in the binary (read only when they must
/// be compiled, so a start from the compile cache leaves them on disk), or
/// read from a plugin folder.
#[derive(Clone)]
pub enum Wasm {
    Embedded(&'static [u8]),
    Read(Arc<[u8]>),
}

impl std::ops::Deref for Wasm {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Wasm::Embedded(b) => b,
            Wasm::Read(b) => b,
        }
    }
}

/// A plugin found (built in, or a folder read from disk), not yet
/// installed.
struct Found {
    manifest: Manifest,
    origin: Origin,
    wasm: Wasm,
    sha256: String,
}

/// Advances the engine's epoch on a thread of its own; stops when dropped.
struct EpochTicker {
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl EpochTicker {
    fn start(engine: EngineWeak) -> Result<EpochTicker> {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("coach-epoch".into())
            .spawn(move || {
                while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match engine.upgrade() {
                        Some(e) => e.increment_epoch(),
                        None => break,
                    }
                }
            })
            .context("cannot start the plugin host's epoch thread")?;
        Ok(EpochTicker { stop })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

use crate::core::hash::sha256_hex;

/// Folders to open for a job, as (folder on the host, path the plugin
/// sees), and the private folders behind some of them.
pub type Preopens = (Vec<(PathBuf, String)>, Vec<tempfile::TempDir>);

/// The stack a plugin's WebAssembly may use.
pub const MAX_WASM_STACK: usize = 1 << 20;

impl PluginHost {
    /// One engine for the process; discovers built-in and installed plugins.
    pub fn new(config: &Config) -> Result<PluginHost> {
        let mut wcfg = wasmtime::Config::new();
        // Calls are synchronous; the component model's concurrency support
        // would cost 2-4x per call for nothing.
        wcfg.epoch_interruption(true)
            .concurrency_support(false)
            .max_wasm_stack(MAX_WASM_STACK)
            .memory_init_cow(true);
        let engine = Engine::new(&wcfg).map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| anyhow::anyhow!("{e:#}"))?;
        // The monotonic clock, polls and streams are the job's own: their
        // sleeps and waits end at the job's deadline or cancel (see
        // `job::clocks` and `job::waits`).
        linker.allow_shadowing(true);
        wasmtime_wasi::p2::bindings::clocks::monotonic_clock::add_to_linker::<_, HasSelf<_>>(
            &mut linker,
            |s| s,
        )
        .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        wasmtime_wasi::p2::bindings::sync::io::poll::add_to_linker::<_, HasSelf<_>>(
            &mut linker,
            |s| s,
        )
        .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        wasmtime_wasi::p2::bindings::sync::io::streams::add_to_linker::<_, HasSelf<_>>(
            &mut linker,
            |s| s,
        )
        .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        linker.allow_shadowing(false);
        bindings::trainer::Trainer::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        // Outgoing HTTP is linked only for plugins whose manifest asks for
        // it, and checked request by request (`net`): one without a grant
        // gets "request denied", never a connection. Others cannot even
        // build a request.
        let mut linker_http = linker.clone();
        wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut linker_http)
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let ticker = EpochTicker::start(engine.weak())?;
        let host = PluginHost {
            cache: CompileCache::new(&engine, config.cache_dir()),
            engine,
            linker,
            linker_http,
            plugins: RwLock::new(BTreeMap::new()),
            limits: RwLock::new(config.limits.clone()),
            grants: RwLock::new(config.grants.clone()),
            problems: RwLock::new(BTreeMap::new()),
            _ticker: ticker,
        };
        let (found, problems) = discover(&config.plugin_dirs)?;
        let mut plugins = BTreeMap::new();
        for f in found {
            let id = f.manifest.id.to_string();
            if let Some(existing) = plugins.get(&id) {
                let existing: &Arc<Installed> = existing;
                anyhow::bail!(
                    "plugin `{id}` is installed twice: {} and {}",
                    existing.origin,
                    f.origin
                );
            }
            plugins.insert(id, Arc::new(Installed::from(f)));
        }
        // A broken or unsupported plugin is that plugin's problem: it is
        // reported, and everything that does not use it works.
        for (folder, why) in &problems {
            tracing::warn!(folder = %folder, "plugin not loaded: {why}");
        }
        *host.plugins.writing() = plugins;
        *host.problems.writing() = problems;
        Ok(host)
    }

    /// Read the plugin folders and the config again. A plugin whose files
    /// changed is compiled before it replaces the old one; if it does not
    /// compile (or its folder cannot be read), the old one stays and the
    /// problem is returned — and kept for [`PluginHost::problems`].
    /// Returns the ids that were added, replaced or removed.
    pub fn reload(&self, config: &Config) -> Result<Vec<String>> {
        *self.limits.writing() = config.limits.clone();
        *self.grants.writing() = config.grants.clone();
        let (found, mut problems) = discover(&config.plugin_dirs)?;
        let old = self.plugins.reading().clone();
        let mut next: BTreeMap<String, Arc<Installed>> = BTreeMap::new();
        let mut changed = Vec::new();
        for f in found {
            let id = f.manifest.id.to_string();
            if let Some(existing) = next.get(&id) {
                problems.insert(
                    f.origin.to_string(),
                    format!(
                        "plugin `{id}` is already installed from {}",
                        existing.origin
                    ),
                );
                continue;
            }
            match old.get(&id) {
                Some(o) if o.wasm_sha256 == f.sha256 && o.manifest == f.manifest => {
                    next.insert(id, o.clone());
                }
                previous => {
                    let candidate = Arc::new(Installed::from(f));
                    if let (Some(prev), Err(e)) = (previous, self.instance_pre(&candidate)) {
                        problems.insert(
                            candidate.origin.to_string(),
                            format!("{e}; still using the version loaded before"),
                        );
                        next.insert(id, prev.clone());
                        continue;
                    }
                    changed.push(id.clone());
                    next.insert(id, candidate);
                }
            }
        }
        // A plugin whose folder became unreadable stays as it was.
        for (id, o) in &old {
            if !next.contains_key(id) {
                if let Some(why) = problems.get_mut(&o.origin.to_string()) {
                    why.push_str("; still using the version loaded before");
                    next.insert(id.clone(), o.clone());
                } else {
                    changed.push(id.clone());
                }
            }
        }
        *self.plugins.writing() = next;
        *self.problems.writing() = problems;
        Ok(changed)
    }

    /// Compile and link every source and trainer now (the daemon does this
    /// at start so the first run does not wait); returns the plugins that
    /// failed. Analyzers load at their first use.
    pub fn warm_up(&self) -> Vec<(String, String)> {
        // Analyzers run in batches, where compiling at first use costs
        // nothing anyone waits on; they do not slow every start.
        self.plugins()
            .iter()
            .filter(|p| p.manifest.kind != Kind::Analyzer)
            .filter_map(|p| {
                self.instance_pre(p)
                    .err()
                    .map(|e| (p.id().to_owned(), e.to_string()))
            })
            .collect()
    }

    /// Load the plugin whose manifest is `manifest_path` for this process
    /// only, in place of any plugin of the same id (`coach plugin run`
    /// tries a plugin before it is installed).
    pub fn load_folder(&self, manifest_path: &Path) -> Result<Arc<Installed>> {
        let folder = manifest_path.parent().unwrap_or(Path::new("."));
        let installed = Arc::new(Installed::from(read_folder(folder, manifest_path)?));
        self.plugins
            .writing()
            .insert(installed.id().to_owned(), installed.clone());
        Ok(installed)
    }

    /// Problems of the last reload, by plugin folder.
    pub fn problems(&self) -> BTreeMap<String, String> {
        self.problems.reading().clone()
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn plugins(&self) -> Vec<Arc<Installed>> {
        self.plugins.reading().values().cloned().collect()
    }

    pub fn get(&self, id: &str) -> Result<Arc<Installed>, PluginFailure> {
        let plugins = self.plugins.reading();
        if let Some(p) = plugins.get(id) {
            return Ok(p.clone());
        }
        // Installed but not loadable: say why.
        if let Some((_, _, why)) = self.broken().into_iter().find(|(b, _, _)| b == id) {
            return Err(PluginFailure::Load {
                plugin: id.to_owned(),
                detail: why,
            });
        }
        Err(PluginFailure::Unknown {
            plugin: id.to_owned(),
            known: plugins.keys().cloned().collect::<Vec<_>>().join(", "),
        })
    }

    /// Check that plugin `id` loads: a component that compiles, links, and
    /// exports what its kind needs. What `coach validate` checks for each
    /// plugin a workflow uses.
    pub fn check(&self, id: &str) -> Result<(), PluginFailure> {
        let plugin = self.get(id)?;
        let pre = self.instance_pre(&plugin)?;
        let missing = |e: wasmtime::Error| PluginFailure::Load {
            plugin: id.to_owned(),
            detail: format!(
                "it does not export what a {} plugin must: {}",
                plugin.manifest.kind,
                first_line(&format!("{e:#}"))
            ),
        };
        match plugin.manifest.kind {
            Kind::Trainer => {
                bindings::trainer::TrainerIndices::new(&pre).map_err(missing)?;
            }
            Kind::Source => {
                bindings::source::SourcePre::new(pre).map_err(missing)?;
            }
            Kind::Analyzer => {
                bindings::analyzer::AnalyzerPre::new(pre).map_err(missing)?;
            }
        }
        Ok(())
    }

    /// What the operator grants `id`.
    pub fn grant(&self, id: &str) -> Grant {
        self.grants.reading().get(id).cloned().unwrap_or_default()
    }

    /// Compile (or fetch from the cache) and link a plugin, once.
    fn instance_pre(
        &self,
        plugin: &Installed,
    ) -> Result<InstancePre<job::JobState>, PluginFailure> {
        let result = plugin.pre.get_or_init(|| {
            let start = Instant::now();
            let (component, outcome) = self
                .cache
                .load(&self.engine, &plugin.wasm, &plugin.wasm_sha256)
                .map_err(|e| format!("{e:#}"))?;
            let pre = self
                .linker_for(&plugin.manifest)
                .instantiate_pre(&component)
                .map_err(|e| format!("its imports cannot be satisfied: {e:#}"))?;
            let elapsed = start.elapsed();
            tracing::debug!(plugin = plugin.id(), cache = ?outcome, ms = elapsed.as_millis() as u64, "plugin compiled and linked");
            Ok(pre)
        });
        result.clone().map_err(|detail| PluginFailure::Load {
            plugin: plugin.id().to_owned(),
            detail,
        })
    }

    /// Compile from scratch or from the cache, bypassing the per-process
    /// memo; for benchmarks.
    pub fn compile_uncached_memo(&self, id: &str) -> Result<LoadTiming> {
        let plugin = self.get(id)?;
        let start = Instant::now();
        let (component, outcome) =
            self.cache
                .load(&self.engine, &plugin.wasm, &plugin.wasm_sha256)?;
        self.linker_for(&plugin.manifest)
            .instantiate_pre(&component)
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        Ok(LoadTiming {
            outcome,
            elapsed: start.elapsed(),
        })
    }

    /// What a plugin is linked against: WASI and Coach's interfaces, and
    /// `wasi:http` when its manifest asks for it.
    pub fn linker_for(&self, manifest: &Manifest) -> &Linker<job::JobState> {
        if manifest.capabilities.http {
            &self.linker_http
        } else {
            &self.linker
        }
    }

    pub fn cache(&self) -> &CompileCache {
        &self.cache
    }

    /// Check the paths a step hands `plugin` against its manifest and its
    /// grant; the folders to open for it, read-only, as (folder on the
    /// host, path the plugin sees), and the private folders made for files
    /// granted one by one (removed when dropped).
    ///
    /// WASI opens folders, not files. A file inside a granted folder is
    /// reached through its own folder, which the grant covers anyway. A
    /// file granted by itself is not: the plugin gets a private folder
    /// holding only that file (a hard link, or a copy when the file is on
    /// another file system), seen at the file's own path — its siblings
    /// stay out of reach.
    pub fn check_read_paths(
        &self,
        plugin: &Installed,
        paths: &[PathBuf],
    ) -> Result<Preopens, PluginFailure> {
        let mut preopens: Vec<(PathBuf, String)> = Vec::new();
        let mut private: BTreeMap<PathBuf, tempfile::TempDir> = BTreeMap::new();
        if paths.is_empty() {
            return Ok((preopens, Vec::new()));
        }
        let id = plugin.id().to_owned();
        let not_granted = |path: &Path, reason: String| PluginFailure::NotGranted {
            plugin: id.clone(),
            path: path.display().to_string(),
            reason,
        };
        if plugin.manifest.capabilities.filesystem != Some(FsAccess::Read) {
            return Err(not_granted(
                &paths[0],
                "its manifest does not ask for filesystem access".into(),
            ));
        }
        let grant = self.grant(plugin.id());
        let roots = grant.read.as_slice();
        for path in paths {
            let canonical = path
                .canonicalize()
                .map_err(|e| not_granted(path, format!("it cannot be opened: {e}")))?;
            // A pipe, socket or device would hold whoever reads it (the
            // plugin, or the host handing a file over) for as long as
            // nothing writes to it, past the job's deadline.
            let kind = std::fs::metadata(&canonical)
                .map_err(|e| not_granted(path, format!("it cannot be opened: {e}")))?;
            if !kind.is_file() && !kind.is_dir() {
                return Err(not_granted(
                    path,
                    "it is not a plain file or a folder (a pipe, socket or device could keep its reader waiting past any deadline)".into(),
                ));
            }
            if !roots.iter().any(|r| canonical.starts_with(r)) {
                let granted = if roots.is_empty() {
                    "no folders are granted to it in the config".to_owned()
                } else {
                    format!(
                        "it is outside the folders granted to it ({})",
                        roots
                            .iter()
                            .map(|r| r.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                return Err(not_granted(path, granted));
            }
            if kind.is_dir() {
                let guest = canonical.to_string_lossy().into_owned();
                if !preopens.iter().any(|(h, _)| *h == canonical) {
                    preopens.push((canonical, guest));
                }
                continue;
            }
            let Some(parent) = canonical.parent().map(Path::to_path_buf) else {
                return Err(not_granted(path, "it has no folder".into()));
            };
            if roots.iter().any(|r| parent.starts_with(r)) {
                let guest = parent.to_string_lossy().into_owned();
                if !preopens.iter().any(|(h, _)| *h == parent) {
                    preopens.push((parent, guest));
                }
                continue;
            }
            // Granted by itself: a private folder with this file only.
            let dir = match private.entry(parent.clone()) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    let made = tempfile::Builder::new()
                        .prefix("coach-grant-")
                        .tempdir()
                        .map_err(|e| {
                            not_granted(path, format!("cannot make its private folder: {e}"))
                        })?;
                    preopens.push((
                        made.path().to_path_buf(),
                        parent.to_string_lossy().into_owned(),
                    ));
                    e.insert(made)
                }
            };
            let Some(name) = canonical.file_name() else {
                return Err(not_granted(path, "it has no file name".into()));
            };
            let target = dir.path().join(name);
            if !target.exists() {
                std::fs::hard_link(&canonical, &target)
                    .or_else(|_| std::fs::copy(&canonical, &target).map(|_| ()))
                    .map_err(|e| not_granted(path, format!("cannot hand it over: {e}")))?;
            }
        }
        Ok((preopens, private.into_values().collect()))
    }

    /// The memory and time a call of `plugin` gets: what it asks for (or the
    /// step sets), never more than the operator's ceiling.
    pub fn effective_limits(
        &self,
        plugin: &Installed,
        step_timeout: Option<Duration>,
    ) -> (u64, Duration) {
        let limits = self.limits();
        let memory = plugin
            .manifest
            .wanted_memory()
            .ok()
            .flatten()
            .unwrap_or(limits.memory)
            .min(limits.memory);
        let timeout = step_timeout
            .or(plugin.manifest.wanted_timeout().ok().flatten())
            .unwrap_or(limits.timeout)
            .min(limits.timeout);
        (memory, timeout)
    }

    pub fn limits(&self) -> Limits {
        self.limits.reading().clone()
    }

    /// What one job of `plugin` may do over HTTP: the granted hosts when
    /// its manifest asks for `http`, none otherwise.
    pub fn net_policy(&self, plugin: &Installed) -> net::NetPolicy {
        let limits = self.limits();
        let grant = self.grant(plugin.id());
        let mut policy = net::NetPolicy::none(plugin.id());
        if plugin.manifest.capabilities.http {
            policy.hosts = grant.http;
            policy.private_network = grant.private_network;
        }
        policy.max_requests = limits.http_requests;
        policy.max_bytes = limits.http_bytes;
        policy.timeout = limits.http_timeout;
        policy
    }

    /// The secrets `plugin` gets: those its manifest names that the
    /// operator's grant gives.
    pub fn secrets(&self, plugin: &Installed) -> Vec<(String, String)> {
        let grant = self.grant(plugin.id());
        plugin
            .manifest
            .capabilities
            .secrets
            .iter()
            .filter_map(|name| Some((name.clone(), grant.secrets.get(name)?.clone())))
            .collect()
    }

    fn expect_kind(&self, plugin: &Installed, kind: Kind) -> Result<(), PluginFailure> {
        if plugin.manifest.kind != kind {
            return Err(PluginFailure::WrongKind {
                plugin: plugin.id().to_owned(),
                expected: kind.to_string(),
                actual: plugin.manifest.kind.to_string(),
            });
        }
        Ok(())
    }

    /// The plugins workflows may name, with what a step must give each.
    pub fn catalog(&self) -> crate::core::params::Catalog {
        let mut catalog: crate::core::params::Catalog = self
            .broken()
            .into_iter()
            .map(|(id, kind, why)| {
                (
                    id,
                    crate::core::params::PluginSpec {
                        kind,
                        parameters: BTreeMap::new(),
                        problem: Some(why),
                    },
                )
            })
            .collect();
        for p in self.plugins() {
            catalog.insert(
                p.id().to_owned(),
                crate::core::params::PluginSpec {
                    kind: p.manifest.kind,
                    parameters: p.manifest.parameters.clone(),
                    problem: None,
                },
            );
        }
        catalog
    }

    /// Plugins installed in a folder that could not be loaded, when their
    /// manifest says at least who they are: (id, kind, why).
    fn broken(&self) -> Vec<(String, Kind, String)> {
        self.problems
            .reading()
            .iter()
            .filter_map(|(folder, why)| {
                let text = std::fs::read_to_string(Path::new(folder).join("plugin.toml")).ok()?;
                let v: toml::Value = toml::from_str(&text).ok()?;
                let id = v.get("id")?.as_str()?.to_owned();
                let kind = match v.get("kind")?.as_str()? {
                    "trainer" => Kind::Trainer,
                    "analyzer" => Kind::Analyzer,
                    _ => Kind::Source,
                };
                Some((id, kind, why.clone()))
            })
            .collect()
    }

    /// A fresh trainer instance for one job.
    pub fn trainer(&self, id: &str, spec: JobSpec) -> Result<TrainerJob, PluginFailure> {
        let plugin = self.get(id)?;
        self.expect_kind(&plugin, Kind::Trainer)?;
        let pre = self.instance_pre(&plugin)?;
        TrainerJob::new(self, &plugin, pre, spec)
    }

    /// A fresh analyzer instance for one job.
    pub fn analyzer(&self, id: &str, spec: JobSpec) -> Result<AnalyzerJob, PluginFailure> {
        let plugin = self.get(id)?;
        self.expect_kind(&plugin, Kind::Analyzer)?;
        let pre = self.instance_pre(&plugin)?;
        AnalyzerJob::new(self, &plugin, pre, spec)
    }

    /// A fresh source instance for one job.
    pub fn source(&self, id: &str, spec: JobSpec) -> Result<SourceJob, PluginFailure> {
        let plugin = self.get(id)?;
        self.expect_kind(&plugin, Kind::Source)?;
        let pre = self.instance_pre(&plugin)?;
        SourceJob::new(self, &plugin, pre, spec)
    }
}

impl From<Found> for Installed {
    fn from(f: Found) -> Installed {
        Installed {
            wasm_sha256: f.sha256,
            manifest: f.manifest,
            origin: f.origin,
            wasm: f.wasm,
            pre: OnceLock::new(),
        }
    }
}

/// The built-in plugins, then every sub-folder of `dirs` with a
/// `plugin.toml` (a missing dir holds none). Folders that cannot be read
/// are returned apart, by folder, with the reason.
fn discover(dirs: &[PathBuf]) -> Result<(Vec<Found>, BTreeMap<String, String>)> {
    let mut found = Vec::new();
    for b in builtin::BUILTIN {
        let manifest = Manifest::parse(b.manifest, &format!("built-in {}", b.name))
            .map_err(anyhow::Error::msg)?;
        found.push(Found {
            manifest,
            origin: Origin::BuiltIn,
            wasm: Wasm::Embedded(b.wasm),
            sha256: b.sha256.to_owned(),
        });
    }
    let mut problems = BTreeMap::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut folders: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        folders.sort();
        for folder in folders {
            // Hidden folders are work in progress (`coach plugin install`
            // stages there before it renames into place).
            if folder
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            {
                continue;
            }
            let manifest_path = folder.join("plugin.toml");
            if !manifest_path.is_file() {
                continue;
            }
            match read_folder(&folder, &manifest_path) {
                Ok(f) => found.push(f),
                Err(e) => {
                    problems.insert(folder.display().to_string(), format!("{e:#}"));
                }
            }
        }
    }
    Ok((found, problems))
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// A component starts with `\0asm`, then version 0x0d and layer 1.
fn is_component(wasm: &[u8]) -> bool {
    wasm.len() >= 8 && wasm[..4] == *b"\0asm" && wasm[4..8] == [0x0d, 0x00, 0x01, 0x00]
}

fn read_folder(folder: &Path, manifest_path: &Path) -> Result<Found> {
    let text = std::fs::read_to_string(manifest_path)
        .with_context(|| format!("cannot read {}", manifest_path.display()))?;
    let manifest =
        Manifest::parse(&text, &manifest_path.display().to_string()).map_err(anyhow::Error::msg)?;
    let wasm_name = manifest
        .wasm
        .clone()
        .unwrap_or_else(|| format!("{}.wasm", manifest.id));
    let wasm_path = folder.join(&wasm_name);
    let wasm = std::fs::read(&wasm_path).with_context(|| {
        format!(
            "plugin `{}`: cannot read {}",
            manifest.id,
            wasm_path.display()
        )
    })?;
    if !is_component(&wasm) {
        anyhow::bail!(
            "plugin `{}` cannot be loaded: {} is not a WebAssembly component ({})",
            manifest.id,
            wasm_path.display(),
            if wasm.starts_with(b"\0asm") {
                "it is a core module; build it for wasm32-wasip2".to_owned()
            } else {
                format!(
                    "it starts with `{}`",
                    crate::core::text::printable(&String::from_utf8_lossy(
                        &wasm[..wasm.len().min(16)]
                    ))
                )
            }
        );
    }
    Ok(Found {
        manifest,
        origin: Origin::Dir(folder.to_path_buf()),
        sha256: sha256_hex(&wasm),
        wasm: Wasm::Read(Arc::from(wasm)),
    })
}
