//! Daemon settings: the raw TOML ([`RawConfig`]) and the validated
//! [`Config`] every command uses. Environment overrides: `COACH_DATA_DIR`,
//! `COACH_DATABASE_URL`, `COACH_LISTEN`.
//!
//! Relative paths in a config file are resolved against the file's folder;
//! the embedded defaults resolve against the current directory.

pub mod units;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The defaults built into the binary: the same text as `config/coach.toml`,
/// with paths made relative to the directory Coach runs in.
pub const EMBEDDED_DEFAULTS: &str = r#"
data_dir = ".coach"
database_url = ""
plugin_dirs = ["plugins/installed"]

[limits]
memory = "2GiB"
timeout = "30m"
output = "64KiB"
hostcall_data = "256MiB"
reports = "1MiB"
source_examples = 10000000
http_requests = 10000
http_bytes = "1GiB"
http_timeout = "30s"

[grants.source-files]
read = ["workflows", "${COACH_DATASETS}"]

[daemon]
listen = "127.0.0.1:7878"
workflow_dirs = ["workflows"]
max_parallel_runs = 2
shutdown_grace = "30s"
"#;

/// `coach.toml` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Where the store, artifacts and compile cache live. Default `.coach`.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// Empty: SQLite under `data_dir`. Otherwise a `sqlite://` or `postgres://` URL.
    #[serde(default)]
    pub database_url: Option<String>,
    /// Folders of third-party plugins (one sub-folder per plugin).
    #[serde(default)]
    pub plugin_dirs: Vec<PathBuf>,
    #[serde(default)]
    pub limits: RawLimits,
    /// Capability grants by plugin id.
    #[serde(default)]
    pub grants: BTreeMap<String, RawGrant>,
    #[serde(default)]
    pub daemon: RawDaemon,
    #[serde(default)]
    pub gpus: RawGpus,
    #[serde(default)]
    pub slurm: RawSlurm,
    #[serde(default)]
    pub review: RawReview,
}

/// `[review]`: what enters the review queue and how many people label
/// each item.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReview {
    /// Independent labels an item needs; when they disagree an
    /// adjudicator decides. 1 to 5. Default 1.
    pub reviews: Option<i32>,
    /// User messages predicted with a confidence below this are queued
    /// when logged. 0 turns it off. Default 0.4.
    pub low_confidence: Option<f64>,
    /// Queue user messages the bot fell back on. Default true.
    pub fallbacks: Option<bool>,
    /// Queue messages users corrected or rated down. Default true.
    pub feedback: Option<bool>,
    /// Take users' corrections as labels: their items are approved at once
    /// (the `reviewed` source has them), no person asked. Default false.
    pub trust_corrections: Option<bool>,
}

/// Validated `[review]` settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReviewSettings {
    pub reviews: i32,
    pub low_confidence: f64,
    pub fallbacks: bool,
    pub feedback: bool,
    pub trust_corrections: bool,
}

impl Default for ReviewSettings {
    fn default() -> ReviewSettings {
        ReviewSettings {
            reviews: 1,
            low_confidence: 0.4,
            fallbacks: true,
            feedback: true,
            trust_corrections: false,
        }
    }
}

/// `[slurm]`: process steps placed by a Slurm cluster instead of this
/// machine's GPU queue.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSlurm {
    /// Send process steps of workflows that do not say `executor` to
    /// Slurm. Default false.
    pub default: Option<bool>,
    /// `--partition` for every job (default: the cluster's default).
    pub partition: Option<String>,
    /// Partition by step priority, over `partition`:
    /// `{ critical = "urgent" }`.
    #[serde(default)]
    pub partitions: BTreeMap<String, String>,
    /// `--account` for every job.
    pub account: Option<String>,
    /// Account by the step's `queue`, over `account`:
    /// `{ research = "lab-research" }`.
    #[serde(default)]
    pub accounts: BTreeMap<String, String>,
    /// `SLURM_CONF` for the client commands (default: the environment's).
    pub conf: Option<PathBuf>,
    /// Folder holding `sbatch`, `squeue`, `scontrol`, `sacct`, `scancel`
    /// (default: `PATH`).
    pub bin_dir: Option<PathBuf>,
    /// How often job states are read. Default `2s`.
    pub poll: Option<units::HumanDuration>,
    /// A client command that takes longer has failed (Slurm's commands
    /// block while the controller is down). Default `20s`.
    pub command_timeout: Option<units::HumanDuration>,
    /// More `sbatch` arguments, as given: `["--qos=normal"]`.
    #[serde(default)]
    pub sbatch_args: Vec<String>,
}

/// Validated `[slurm]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SlurmSettings {
    pub default: bool,
    pub partition: Option<String>,
    pub partitions: BTreeMap<crate::scheduler::gpu::Priority, String>,
    pub account: Option<String>,
    pub accounts: BTreeMap<String, String>,
    pub conf: Option<PathBuf>,
    pub bin_dir: Option<PathBuf>,
    pub poll: Duration,
    pub command_timeout: Duration,
    pub sbatch_args: Vec<String>,
}

impl Default for SlurmSettings {
    fn default() -> Self {
        SlurmSettings {
            default: false,
            partition: None,
            partitions: BTreeMap::new(),
            account: None,
            accounts: BTreeMap::new(),
            conf: None,
            bin_dir: None,
            poll: Duration::from_secs(2),
            command_timeout: Duration::from_secs(20),
            sbatch_args: Vec::new(),
        }
    }
}

fn slurm_settings(
    raw: &RawSlurm,
    resolve: &dyn Fn(&Path) -> PathBuf,
    errors: &mut Vec<String>,
) -> SlurmSettings {
    let d = SlurmSettings::default();
    let poll = raw.poll.map_or(d.poll, |p| p.0);
    let command_timeout = raw.command_timeout.map_or(d.command_timeout, |t| t.0);
    let mut partitions = BTreeMap::new();
    for (name, partition) in &raw.partitions {
        match crate::scheduler::gpu::Priority::parse(name) {
            Some(p) => {
                partitions.insert(p, partition.clone());
            }
            None => errors.push(format!(
                "slurm.partitions.{name}: not a priority; expected low, normal, high or critical"
            )),
        }
    }
    let nonempty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
    SlurmSettings {
        default: raw.default.unwrap_or(false),
        partition: nonempty(&raw.partition),
        partitions,
        account: nonempty(&raw.account),
        accounts: raw.accounts.clone(),
        conf: raw.conf.as_deref().map(resolve),
        bin_dir: raw.bin_dir.as_deref().map(resolve),
        poll: poll.max(Duration::from_millis(100)),
        command_timeout: command_timeout.max(Duration::from_secs(1)),
        sbatch_args: raw.sbatch_args.clone(),
    }
}

/// `[gpus]`: where the GPU inventory comes from, and how GPU work shares it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGpus {
    /// `auto` (default: NVML when the driver is there, else the `devices`
    /// declared here, else none), `nvml`, `static` or `none`.
    pub inventory: Option<String>,
    /// GPUs declared by hand, in `CUDA_VISIBLE_DEVICES` order:
    /// `[{ name = "A100", memory = "40GiB" }]`.
    #[serde(default)]
    pub devices: Vec<RawGpu>,
    /// How often the inventory is read again. Default `10s`.
    pub refresh: Option<units::HumanDuration>,
    /// Waiting this long raises a request one priority class (up to
    /// `high`). Default `1h`; `0s` turns aging off.
    pub aging: Option<units::HumanDuration>,
    /// Queues by name: `weight` (fair share, default 1), `gpus` (quota;
    /// default: no limit), `borrow` (use GPUs other queues leave idle;
    /// default true).
    #[serde(default)]
    pub queues: BTreeMap<String, RawQueue>,
    /// What one GPU-hour costs, for the dashboard's cost per queue
    /// (default: no price, GPU-hours only).
    pub price_per_hour: Option<f64>,
    /// The price's currency, as shown (default `USD`).
    pub currency: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGpu {
    pub name: String,
    pub memory: units::ByteSize,
    /// Declare a GPU drained. Default true.
    pub healthy: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQueue {
    pub weight: Option<f64>,
    pub gpus: Option<u32>,
    pub borrow: Option<bool>,
}

/// Where the GPU inventory comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InventoryKind {
    Auto,
    Nvml,
    Static,
    None,
}

/// One GPU declared in `[gpus] devices`.
#[derive(Debug, Clone, PartialEq)]
pub struct StaticGpu {
    pub name: String,
    pub memory: u64,
    pub healthy: bool,
}

/// Validated `[gpus]`.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuSettings {
    pub inventory: InventoryKind,
    pub devices: Vec<StaticGpu>,
    pub refresh: Duration,
    pub aging: Duration,
    pub queues: BTreeMap<String, crate::scheduler::gpu::Quota>,
    /// (price of one GPU-hour, currency), when set.
    pub price: Option<(f64, String)>,
}

impl Default for GpuSettings {
    fn default() -> Self {
        GpuSettings {
            inventory: InventoryKind::Auto,
            devices: Vec::new(),
            refresh: Duration::from_secs(10),
            aging: Duration::from_secs(3600),
            queues: BTreeMap::new(),
            price: None,
        }
    }
}

fn gpu_settings(raw: &RawGpus, errors: &mut Vec<String>) -> GpuSettings {
    let d = GpuSettings::default();
    let inventory = match raw.inventory.as_deref() {
        None | Some("auto") => InventoryKind::Auto,
        Some("nvml") => InventoryKind::Nvml,
        Some("static") => InventoryKind::Static,
        Some("none") => InventoryKind::None,
        Some(other) => {
            errors.push(format!(
                "gpus.inventory: `{other}`; expected auto, nvml, static or none"
            ));
            InventoryKind::Auto
        }
    };
    let devices = raw
        .devices
        .iter()
        .map(|g| StaticGpu {
            name: g.name.clone(),
            memory: g.memory.0,
            healthy: g.healthy.unwrap_or(true),
        })
        .collect::<Vec<_>>();
    if inventory == InventoryKind::Static && devices.is_empty() {
        errors.push("gpus.inventory is `static` but `gpus.devices` declares none".into());
    }
    let refresh = raw.refresh.map_or(d.refresh, |r| r.0);
    let aging = raw.aging.map_or(d.aging, |a| a.0);
    let queues = raw
        .queues
        .iter()
        .map(|(name, q)| {
            let weight = q.weight.unwrap_or(1.0);
            if !(weight > 0.0 && weight.is_finite()) {
                errors.push(format!("gpus.queues.{name}.weight must be above 0"));
            }
            (
                name.clone(),
                crate::scheduler::gpu::Quota {
                    weight,
                    gpus: q.gpus.unwrap_or(u32::MAX),
                    borrow: q.borrow.unwrap_or(true),
                },
            )
        })
        .collect();
    let price = match raw.price_per_hour {
        Some(p) if !(p >= 0.0 && p.is_finite()) => {
            errors.push(format!("gpus.price_per_hour must be 0 or more, not {p}"));
            None
        }
        Some(p) => {
            let currency = raw.currency.clone().unwrap_or_else(|| "USD".into());
            if currency.is_empty()
                || currency.len() > 8
                || !currency
                    .chars()
                    .all(|c| c.is_ascii_alphabetic() || "$€£¥".contains(c))
            {
                errors.push(format!(
                    "gpus.currency: `{}`; expected a code such as USD or EUR",
                    crate::core::text::printable(&crate::core::text::clip(&currency, 16))
                ));
            }
            Some((p, currency))
        }
        None => None,
    };
    GpuSettings {
        inventory,
        devices,
        refresh: refresh.max(Duration::from_millis(100)),
        aging,
        queues,
        price,
    }
}

/// `[daemon]`: the long-running service.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDaemon {
    /// Address the HTTP API listens on. Default `127.0.0.1:7878`;
    /// `COACH_LISTEN` overrides. Every route but `/healthz` and `/readyz`
    /// needs a token wherever it listens.
    pub listen: Option<String>,
    /// Folders whose `*.toml` files are the daemon's workflows. Default
    /// `workflows`.
    pub workflow_dirs: Option<Vec<PathBuf>>,
    /// Runs executed at the same time. Default 2.
    pub max_parallel_runs: Option<usize>,
    /// On SIGTERM/SIGINT, how long running steps may take to finish before
    /// they are cancelled (and resumed at the next start). Default `30s`.
    pub shutdown_grace: Option<units::HumanDuration>,
    /// How often running experiments and canaries are looked at: results
    /// computed, events sent, decisions taken. Default `60s`.
    pub experiment_interval: Option<units::HumanDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Linear memory per plugin instance. Default `2GiB`.
    pub memory: Option<units::ByteSize>,
    /// Wall-clock time per plugin call. Default `30m`.
    pub timeout: Option<units::HumanDuration>,
    /// Bytes of stdout + stderr per call. Default `64KiB`.
    pub output: Option<units::ByteSize>,
    /// Bytes a plugin may pass to the host per call. Default `256MiB`.
    pub hostcall_data: Option<units::ByteSize>,
    /// Bytes of log lines, progress messages and metric names a plugin may
    /// report per job. Default `1MiB`.
    pub reports: Option<units::ByteSize>,
    /// Examples one source step may produce. Default `10000000`.
    pub source_examples: Option<u64>,
    /// Bytes of examples one source step may produce. Default: a quarter of
    /// the machine's memory, at most `4GiB`.
    pub source_bytes: Option<units::ByteSize>,
    /// HTTP requests one plugin job may send. Default `10000`.
    pub http_requests: Option<u64>,
    /// Bytes of HTTP requests and responses (heads and bodies) one plugin
    /// job may send and receive. Default `1GiB`.
    pub http_bytes: Option<units::ByteSize>,
    /// Time one HTTP request may take, from connecting to the last byte of
    /// its response. Default `30s`.
    pub http_timeout: Option<units::HumanDuration>,
}

/// `private_network` as written: a flag or a list of names.
#[derive(Debug)]
pub enum RawPrivateNetwork {
    Flag(bool),
    Hosts(Vec<String>),
}

impl<'de> Deserialize<'de> for RawPrivateNetwork {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawPrivateNetwork;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("true, false or a list of host names")
            }
            fn visit_bool<E>(self, b: bool) -> Result<RawPrivateNetwork, E> {
                Ok(RawPrivateNetwork::Flag(b))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<RawPrivateNetwork, A::Error> {
                let mut hosts = Vec::new();
                while let Some(h) = seq.next_element::<String>()? {
                    hosts.push(h);
                }
                Ok(RawPrivateNetwork::Hosts(hosts))
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl Default for RawPrivateNetwork {
    fn default() -> Self {
        RawPrivateNetwork::Flag(false)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGrant {
    /// Folders under which steps may grant this plugin read-only files.
    /// `${NAME}` expands from the environment; an entry naming an unset
    /// variable grants nothing.
    #[serde(default)]
    pub read: Vec<PathBuf>,
    /// Host names the plugin may send HTTP requests to: `api.example.com`,
    /// `api.example.com:8443` (that port only), `*.example.com` (its
    /// subdomains). Nothing else, redirects included.
    #[serde(default)]
    pub http: Vec<String>,
    /// Which granted names may resolve to loopback, private, link-local
    /// or otherwise non-public addresses: `true` (all of them) or a list of
    /// names (those only). Default false: such a request is refused,
    /// wherever the name points.
    #[serde(default)]
    pub private_network: RawPrivateNetwork,
    /// Secrets the plugin may read, by name, as environment variables (the
    /// only ones it sees): a literal or `${NAME}` from Coach's environment.
    /// A plugin gets those its manifest asks for.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
}

/// Ceilings for every plugin job.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub memory: u64,
    /// For all the calls of one job (a step's plugin instance) together.
    pub timeout: Duration,
    pub output: u64,
    pub hostcall_data: u64,
    pub reports: u64,
    /// Records (examples and conversations) one source step may produce.
    pub source_examples: u64,
    pub source_bytes: u64,
    /// HTTP requests per job.
    pub http_requests: u64,
    /// Bytes of HTTP requests and responses per job.
    pub http_bytes: u64,
    /// Time per HTTP request, connecting to last byte.
    pub http_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory: 2 << 30,
            timeout: Duration::from_secs(30 * 60),
            output: 64 << 10,
            hostcall_data: 256 << 20,
            reports: 1 << 20,
            source_examples: 10_000_000,
            source_bytes: default_source_bytes(),
            http_requests: 10_000,
            http_bytes: 1 << 30,
            http_timeout: Duration::from_secs(30),
        }
    }
}

/// A quarter of the machine's memory, at most 4 GiB (1 GiB when the
/// machine does not say).
fn default_source_bytes() -> u64 {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let line = m.lines().find(|l| l.starts_with("MemTotal:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map(|kib| kib * 1024);
    match total {
        Some(t) => (t / 4).min(4 << 30),
        None => 1 << 30,
    }
}

/// Where datasets uploaded on the dashboard are kept, under `data_dir`,
/// one folder per dataset.
pub const UPLOADS: &str = "datasets";

/// What the operator grants one plugin.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Grant {
    /// Canonical folders under which files may be read.
    pub read: Vec<PathBuf>,
    /// Hosts HTTP requests may go to.
    pub http: Vec<crate::core::net::HostPattern>,
    /// Which of those hosts may be non-public addresses.
    pub private_network: crate::core::net::PrivateNetwork,
    /// Secrets by name, their values resolved.
    pub secrets: BTreeMap<String, String>,
}

/// A config error named by the key at fault and its place: sizes and
/// durations read themselves, so their errors come from the parser.
fn located(text: &str, e: &toml::de::Error) -> anyhow::Error {
    let Some(span) = e.span() else {
        return anyhow::anyhow!("{e}");
    };
    let at = span.start.min(text.len());
    let before = &text[..at];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line_no = before.matches('\n').count() + 1;
    let column = before[line_start..].chars().count() + 1;
    let line = text[line_start..].lines().next().unwrap_or("");
    let key = line
        .split('=')
        .next()
        .unwrap_or("")
        .trim()
        .trim_matches('"');
    let table = before[..line_start].lines().rev().find_map(|l| {
        let l = l.trim();
        l.starts_with('[')
            .then(|| l.trim_matches(['[', ']']).trim().to_owned())
    });
    let key = match table {
        Some(t) if !t.is_empty() && !key.is_empty() => format!("{t}.{key}"),
        _ => key.to_owned(),
    };
    anyhow::anyhow!(
        "`{key}` (line {line_no}, column {column}): {}",
        e.message().trim()
    )
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this came from; `None` for the embedded defaults.
    pub source: Option<PathBuf>,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub plugin_dirs: Vec<PathBuf>,
    pub limits: Limits,
    pub grants: BTreeMap<String, Grant>,
    /// Compiled plugins; `<data_dir>/cache/components`.
    pub compile_cache: PathBuf,
    pub daemon: DaemonSettings,
    pub gpus: GpuSettings,
    pub slurm: SlurmSettings,
    pub review: ReviewSettings,
}

/// Validated `[daemon]` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonSettings {
    pub listen: std::net::SocketAddr,
    pub workflow_dirs: Vec<PathBuf>,
    pub max_parallel_runs: usize,
    pub shutdown_grace: Duration,
    pub experiment_interval: Duration,
}

impl Config {
    /// Load `path`, or — when `path` is `None` — `config/coach.toml` if it
    /// exists, else the embedded defaults.
    pub fn load(path: Option<&Path>) -> Result<Config> {
        let (text, base, source) = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read config file {}", p.display()))?;
                (text, parent_of(p), Some(p.to_path_buf()))
            }
            None => {
                let default = Path::new("config/coach.toml");
                if default.is_file() {
                    let text = std::fs::read_to_string(default).with_context(|| {
                        format!("cannot read config file {}", default.display())
                    })?;
                    (text, parent_of(default), Some(default.to_path_buf()))
                } else {
                    (EMBEDDED_DEFAULTS.to_owned(), PathBuf::from("."), None)
                }
            }
        };
        let name = source
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "<embedded defaults>".into());
        Self::from_toml(&text, &base, source.clone()).with_context(|| format!("in config {name}"))
    }

    /// Parse and validate config text; relative paths resolve against `base`.
    pub fn from_toml(text: &str, base: &Path, source: Option<PathBuf>) -> Result<Config> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| located(text, &e))?;
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        let mut errors = Vec::new();
        let d = Limits::default();
        let l = &raw.limits;
        let memory = l.memory.map_or(d.memory, |m| m.0);
        let output = l.output.map_or(d.output, |o| o.0);
        let hostcall_data = l.hostcall_data.map_or(d.hostcall_data, |h| h.0);
        let reports = l.reports.map_or(d.reports, |r| r.0);
        let source_examples = l.source_examples.unwrap_or(d.source_examples);
        let source_bytes = l.source_bytes.map_or(d.source_bytes, |b| b.0);
        let timeout = l.timeout.map_or(d.timeout, |t| t.0);
        let http_requests = l.http_requests.unwrap_or(d.http_requests);
        let http_bytes = l.http_bytes.map_or(d.http_bytes, |b| b.0);
        let http_timeout = l.http_timeout.map_or(d.http_timeout, |t| t.0);
        if http_timeout.is_zero() {
            errors.push("limits.http_timeout must be above 0".into());
        }
        let mut grants = BTreeMap::new();
        for (plugin, g) in raw.grants {
            let mut http = Vec::new();
            for h in &g.http {
                match crate::core::net::HostPattern::parse(h) {
                    Ok(p) => http.push(p),
                    Err(e) => errors.push(format!("grants.{plugin}.http: {e}")),
                }
            }
            let private_network = match &g.private_network {
                RawPrivateNetwork::Flag(false) => crate::core::net::PrivateNetwork::No,
                RawPrivateNetwork::Flag(true) => crate::core::net::PrivateNetwork::All,
                RawPrivateNetwork::Hosts(names) => {
                    let mut hosts = Vec::new();
                    for h in names {
                        match crate::core::net::HostPattern::parse(h) {
                            // A name `http` does not grant is never asked
                            // for: most likely a typo.
                            Ok(p) if !http.iter().any(|g| g.covers(&p)) => errors.push(format!(
                                "grants.{plugin}.private_network: `{h}` is not among the hosts `http` grants"
                            )),
                            Ok(p) => hosts.push(p),
                            Err(e) => errors.push(format!("grants.{plugin}.private_network: {e}")),
                        }
                    }
                    crate::core::net::PrivateNetwork::Hosts(hosts)
                }
            };
            let mut secrets = BTreeMap::new();
            for (name, value) in &g.secrets {
                if !crate::core::net::is_secret_name(name) {
                    errors.push(format!(
                        "grants.{plugin}.secrets: `{name}` is not a name of letters, digits and `_` starting with a letter"
                    ));
                    continue;
                }
                // A secret naming an unset variable is not given.
                if let Ok(v) = expand_env(value) {
                    secrets.insert(name.clone(), v);
                }
            }
            let mut read = Vec::new();
            for p in g.read {
                // A grant naming an unset variable grants nothing.
                let Ok(p) = expand_env(&p.to_string_lossy()) else {
                    continue;
                };
                let full = resolve(Path::new(&p));
                // A granted folder that does not exist (yet) is kept as
                // written; it simply matches nothing.
                read.push(full.canonicalize().unwrap_or(full));
            }
            grants.insert(
                plugin,
                Grant {
                    read,
                    http,
                    private_network,
                    secrets,
                },
            );
        }
        let listen_text = match std::env::var("COACH_LISTEN") {
            Ok(l) if !l.is_empty() => l,
            _ => raw
                .daemon
                .listen
                .clone()
                .unwrap_or_else(|| "127.0.0.1:7878".into()),
        };
        let listen = listen_text.parse().unwrap_or_else(|e| {
            errors.push(format!(
                "daemon.listen: `{listen_text}` is not an address such as 127.0.0.1:7878 ({e})"
            ));
            std::net::SocketAddr::from(([127, 0, 0, 1], 7878))
        });
        let shutdown_grace = raw
            .daemon
            .shutdown_grace
            .map_or(Duration::from_secs(30), |g| g.0);
        let experiment_interval = raw
            .daemon
            .experiment_interval
            .map_or(Duration::from_secs(60), |g| g.0);
        if experiment_interval < Duration::from_millis(100) {
            errors.push("daemon.experiment_interval must be at least 100ms".into());
        }
        let max_parallel_runs = raw.daemon.max_parallel_runs.unwrap_or(2);
        if max_parallel_runs == 0 {
            errors.push("daemon.max_parallel_runs must be at least 1".into());
        }
        let daemon = DaemonSettings {
            listen,
            workflow_dirs: raw
                .daemon
                .workflow_dirs
                .clone()
                .unwrap_or_else(|| vec![PathBuf::from("workflows")])
                .iter()
                .map(|p| {
                    let p = resolve(p);
                    p.canonicalize().unwrap_or(p)
                })
                .collect(),
            max_parallel_runs,
            shutdown_grace,
            experiment_interval,
        };
        let gpus = gpu_settings(&raw.gpus, &mut errors);
        let slurm = slurm_settings(&raw.slurm, &resolve, &mut errors);
        let mut review = ReviewSettings::default();
        if let Some(n) = raw.review.reviews {
            if !(1..=5).contains(&n) {
                errors.push(format!("review.reviews must be 1 to 5, not {n}"));
            }
            review.reviews = n.clamp(1, 5);
        }
        if let Some(c) = raw.review.low_confidence {
            if !(0.0..=1.0).contains(&c) {
                errors.push(format!("review.low_confidence must be 0 to 1, not {c}"));
            }
            review.low_confidence = c.clamp(0.0, 1.0);
        }
        review.fallbacks = raw.review.fallbacks.unwrap_or(true);
        review.feedback = raw.review.feedback.unwrap_or(true);
        review.trust_corrections = raw.review.trust_corrections.unwrap_or(false);
        if !errors.is_empty() {
            bail!("{}", errors.join("; "));
        }
        let data_dir = match std::env::var_os("COACH_DATA_DIR") {
            Some(d) => PathBuf::from(d),
            None => resolve(&raw.data_dir.unwrap_or_else(|| PathBuf::from(".coach"))),
        };
        // Datasets uploaded on the dashboard are Coach's own files: the
        // built-in file source reads them, to check an upload and for the
        // workflows that name them.
        let uploads = data_dir.join(UPLOADS);
        grants
            .entry("source-files".to_owned())
            .or_default()
            .read
            .push(uploads.canonicalize().unwrap_or(uploads));
        let database_url = match std::env::var("COACH_DATABASE_URL") {
            Ok(url) if !url.is_empty() => url,
            _ => raw
                .database_url
                .filter(|u| !u.is_empty())
                .unwrap_or_default(),
        };
        Ok(Config {
            source,
            compile_cache: data_dir.join("cache").join("components"),
            data_dir,
            database_url,
            plugin_dirs: raw.plugin_dirs.iter().map(|p| resolve(p)).collect(),
            limits: Limits {
                memory,
                timeout,
                output,
                hostcall_data,
                reports,
                source_examples,
                source_bytes,
                http_requests,
                http_bytes,
                http_timeout,
            },
            grants,
            daemon,
            gpus,
            slurm,
            review,
        })
    }

    /// The database URL to connect to: the configured one, or SQLite under
    /// the data directory.
    pub fn database_url(&self) -> String {
        if self.database_url.is_empty() {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("coach.db").display()
            )
        } else {
            self.database_url.clone()
        }
    }

    pub fn artifacts_dir(&self) -> PathBuf {
        self.data_dir.join("artifacts")
    }

    /// Process steps' checkpoint folders.
    pub fn work_dir(&self) -> PathBuf {
        self.data_dir.join("work")
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.compile_cache.clone()
    }
}

/// Expand `${NAME}` with the environment; an unset or empty variable is an
/// error naming it.
pub fn expand_env(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("`${{` without a closing `}}` in `{text}`"))?;
        let name = &after[..end];
        match std::env::var(name) {
            Ok(v) if !v.is_empty() => out.push_str(&v),
            _ => {
                return Err(format!(
                    "environment variable `{name}` is not set (used in `{text}`)"
                ));
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn parent_of(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_are_valid() {
        let c = Config::from_toml(EMBEDDED_DEFAULTS, Path::new("."), None).unwrap();
        assert_eq!(c.limits.memory, 2 << 30);
        assert!(c.grants.contains_key("source-files"));
    }

    #[test]
    fn shipped_config_is_valid() {
        let text = include_str!("../../../config/coach.toml");
        let c = Config::from_toml(text, Path::new("config"), None).unwrap();
        assert_eq!(c.limits.output, 64 << 10);
    }

    #[test]
    fn environment_expansion() {
        assert_eq!(expand_env("a/b").unwrap(), "a/b");
        let e = expand_env("${COACH_SURELY_UNSET_VARIABLE}/x").unwrap_err();
        assert!(e.contains("COACH_SURELY_UNSET_VARIABLE"), "{e}");
        assert!(expand_env("${HOME").is_err());
    }

    #[test]
    fn slurm_settings_are_read_and_checked() {
        let c = Config::from_toml(
            "[slurm]\ndefault = true\npartition = \"gpu\"\npartitions = { critical = \"urgent\" }\nconf = \"slurm.conf\"\npoll = \"500ms\"",
            Path::new("/etc/coach"),
            None,
        )
        .unwrap();
        assert!(c.slurm.default);
        assert_eq!(c.slurm.partition.as_deref(), Some("gpu"));
        assert_eq!(
            c.slurm.partitions[&crate::scheduler::gpu::Priority::Critical],
            "urgent"
        );
        assert_eq!(c.slurm.conf, Some(PathBuf::from("/etc/coach/slurm.conf")));
        assert_eq!(c.slurm.poll, Duration::from_millis(500));
        let e = Config::from_toml(
            "[slurm]\npartitions = { urgent = \"x\" }",
            Path::new("."),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("slurm.partitions.urgent: not a priority"), "{e}");
        let e = Config::from_toml("[slurm]\ncommand_timeout = \"soon\"", Path::new("."), None)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "`slurm.command_timeout` (line 2, column 19): `soon` is not a duration like `30s` or `10m`"
        );
    }

    #[test]
    fn unknown_keys_and_bad_units_are_errors() {
        let e = Config::from_toml("data_dri = 'x'", Path::new("."), None).unwrap_err();
        assert!(e.to_string().contains("data_dri"), "{e}");
        let e = Config::from_toml("[limits]\nmemory = 'lots'", Path::new("."), None).unwrap_err();
        assert!(e.to_string().contains("limits.memory"), "{e}");
    }

    #[test]
    fn private_network_is_a_flag_or_the_names_it_covers() {
        use crate::core::net::PrivateNetwork;
        let grant = |private: &str| {
            let text = format!("[grants.p]\nhttp = ['api.example.com', 'intranet']\n{private}");
            Config::from_toml(&text, Path::new("."), None)
                .map(|c| c.grants["p"].private_network.clone())
        };
        assert_eq!(grant("").unwrap(), PrivateNetwork::No);
        assert_eq!(
            grant("private_network = true").unwrap(),
            PrivateNetwork::All
        );
        let only = grant("private_network = ['intranet']").unwrap();
        assert!(only.allows("intranet", 80) && !only.allows("api.example.com", 443));
        let e = grant("private_network = ['http://intranet']").unwrap_err();
        assert!(e.to_string().contains("grants.p.private_network"), "{e}");
        let e = grant("private_network = ['intranet.example.com']").unwrap_err();
        assert!(
            e.to_string().contains("not among the hosts `http` grants"),
            "{e}"
        );
        let e = grant("private_network = 'intranet'").unwrap_err();
        assert!(e.to_string().contains("a list of host names"), "{e}");
    }
}
