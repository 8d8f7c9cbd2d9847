//! One job of one plugin: a fresh `Store` with its WASI context, limits,
//! deadline and event sink, and the typed calls of each plugin kind.

use super::bindings::{self, Example, LogLevel, Prediction};
use super::{Installed, PluginFailure, PluginHost};
use crate::core::event::StepEvent;
use crate::core::text::{clip, printable};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use wasmtime::component::{InstancePre, ResourceAny, ResourceTable};
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// Something a plugin reported during a call.
pub type PluginEvent = StepEvent;

/// Receives a job's events as they happen (progress bars, the store).
pub type Observer = Arc<dyn Fn(&PluginEvent) + Send + Sync>;

/// What a step hands the host for one job.
#[derive(Clone, Default)]
pub struct JobSpec {
    /// Run and step ids, for log fields.
    pub run: String,
    pub step: String,
    /// Files and folders the plugin may read (checked against grants).
    pub read_paths: Vec<PathBuf>,
    /// The step's own timeout, if it sets one.
    pub timeout: Option<Duration>,
    /// Cancelled to ask the plugin to stop; also ends the call at the next
    /// epoch.
    pub cancel: CancellationToken,
    pub observer: Option<Observer>,
}

/// Longest log line kept from a plugin.
const MAX_LOG_LINE: usize = 4096;
/// Longest metric name kept from a plugin.
const MAX_METRIC_NAME: usize = 128;

/// The data of a job's `Store`.
pub struct JobState {
    wasi: WasiCtx,
    table: ResourceTable,
    http: wasmtime_wasi_http::WasiHttpCtx,
    net: super::net::NetHooks,
    limiter: MemoryLimiter,
    plugin: String,
    run: String,
    step: String,
    deadline: Instant,
    cancel: CancellationToken,
    observer: Option<Observer>,
    /// Where the plugin's monotonic clock starts.
    clock_base: Instant,
    /// Metrics reported during the job, in order.
    pub metrics: Vec<(String, f64, u32)>,
    last_error_log: Option<String>,
    /// Bytes of logs, progress and metrics reported so far, and the cap.
    reported: u64,
    reports_limit: u64,
    /// Set once the cap is passed: further reports are dropped and the
    /// call is stopped at its next epoch check.
    over_reports: bool,
}

impl WasiView for JobState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wasmtime_wasi_http::WasiHttpView for JobState {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.net,
        }
    }
}

/// Caps linear memory and remembers when the cap was hit, so the failure
/// can say so instead of reporting a bare trap.
struct MemoryLimiter {
    limit: u64,
    exceeded: Option<u64>,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.limit {
            self.exceeded = Some(desired as u64);
            return Err(wasmtime::format_err!(
                "memory limit of {} bytes reached",
                self.limit
            ));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }

    fn instances(&self) -> usize {
        16
    }

    fn tables(&self) -> usize {
        64
    }

    fn memories(&self) -> usize {
        16
    }
}

impl JobState {
    /// Charge `bytes` of reports (plus a fixed cost per call); false once
    /// the job is over its cap.
    fn charge(&mut self, bytes: usize) -> bool {
        self.reported = self.reported.saturating_add(bytes as u64 + 16);
        if self.reported > self.reports_limit {
            self.over_reports = true;
        }
        !self.over_reports
    }

    fn emit(&self, event: PluginEvent) {
        if let Some(o) = &self.observer {
            o(&event);
        }
    }
}

impl bindings::trainer::coach::plugin::types::Host for JobState {}

impl bindings::trainer::coach::plugin::host::Host for JobState {
    fn log(&mut self, level: LogLevel, message: String) {
        // One line of the plugin's, whatever it sent: control characters
        // escaped, so it can neither forge a line of Coach's output nor
        // drive a terminal.
        if !self.charge(message.len()) {
            return;
        }
        let message = printable(&clip(&message, MAX_LOG_LINE)).into_owned();
        let (plugin, run, step) = (&self.plugin, &self.run, &self.step);
        match level {
            LogLevel::Trace => tracing::trace!(plugin, run, step, "{message}"),
            LogLevel::Debug => tracing::debug!(plugin, run, step, "{message}"),
            LogLevel::Info => tracing::info!(plugin, run, step, "{message}"),
            LogLevel::Warn => tracing::warn!(plugin, run, step, "{message}"),
            LogLevel::Error => {
                tracing::error!(plugin, run, step, "{message}");
                self.last_error_log = Some(message.clone());
            }
        }
        self.emit(PluginEvent::Log {
            level: super::convert::log_level(level),
            message,
        });
    }

    fn progress(&mut self, fraction: f32, message: String) {
        let fraction = if fraction.is_finite() {
            fraction.clamp(0.0, 1.0)
        } else {
            0.0
        };
        if !self.charge(message.len()) {
            return;
        }
        let message = printable(&clip(&message, MAX_LOG_LINE)).into_owned();
        self.emit(PluginEvent::Progress { fraction, message });
    }

    fn metric(&mut self, name: String, value: f64, step: u32) {
        if !self.charge(name.len()) {
            return;
        }
        let name = printable(&clip(&name, MAX_METRIC_NAME)).into_owned();
        if self.metrics.len() < 100_000 {
            self.metrics.push((name.clone(), value, step));
        }
        self.emit(PluginEvent::Metric { name, value, step });
    }

    fn cancelled(&mut self) -> bool {
        self.cancel.is_cancelled()
    }
}

/// A job's store and what is needed to explain its failures.
struct Job {
    store: Store<JobState>,
    plugin: String,
    memory_limit: u64,
    timeout: Duration,
    /// When the job's time is up: the timeout bounds all its calls
    /// together, so a plugin cannot stretch a step by many short calls.
    ends: Instant,
    reports_limit: u64,
    /// A private folder holding files granted one by one (see
    /// [`PluginHost::check_read_paths`]), removed with the job.
    _granted: Vec<tempfile::TempDir>,
    output_limit: u64,
    hostcall_limit: u64,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
    flushed: (usize, usize),
    /// Set after a trap: the instance must not be entered again.
    poisoned: bool,
}

impl Job {
    fn new(host: &PluginHost, plugin: &Installed, spec: JobSpec) -> Result<Job, PluginFailure> {
        let id = plugin.id().to_owned();
        let (preopens, granted) = host.check_read_paths(plugin, &spec.read_paths)?;
        let (memory_limit, timeout) = host.effective_limits(plugin, spec.timeout);
        let output_limit = host.limits().output;
        let stdout = MemoryOutputPipe::new(output_limit as usize);
        let stderr = MemoryOutputPipe::new(output_limit as usize);
        // Nothing inherited: no args, no stdin, no sockets; as environment
        // only the secrets granted to this plugin.
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(stdout.clone()).stderr(stderr.clone());
        for (name, value) in host.secrets(plugin) {
            wasi.env(name, value);
        }
        let net = std::sync::Arc::new(host.net_policy(plugin));
        for (dir, guest) in &preopens {
            wasi.preopened_dir(dir, guest, FsPerms::ReadOnly)
                .map_err(|e| PluginFailure::NotGranted {
                    plugin: id.clone(),
                    path: guest.clone(),
                    reason: format!("{e:#}"),
                })?;
        }
        let state = JobState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            http: wasmtime_wasi_http::WasiHttpCtx::new(),
            net: super::net::NetHooks {
                policy: net.clone(),
                deadline: Instant::now() + timeout,
                cancel: spec.cancel.clone(),
            },
            limiter: MemoryLimiter {
                limit: memory_limit,
                exceeded: None,
            },
            plugin: id.clone(),
            run: spec.run,
            step: spec.step,
            deadline: Instant::now() + timeout,
            cancel: spec.cancel,
            observer: spec.observer,
            metrics: Vec::new(),
            last_error_log: None,
            reported: 0,
            reports_limit: host.limits().reports,
            over_reports: false,
            clock_base: Instant::now(),
        };
        let mut store = Store::new(host.engine(), state);
        store.limiter(|s| &mut s.limiter);
        store.set_hostcall_fuel(host.limits().hostcall_data as usize);
        store.epoch_deadline_callback(|ctx| {
            let s = ctx.data();
            if s.over_reports || Instant::now() >= s.deadline || s.cancel.is_cancelled() {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Continue(1))
            }
        });
        store.set_epoch_deadline(1);
        Ok(Job {
            store,
            plugin: id,
            memory_limit,
            timeout,
            ends: Instant::now() + timeout,
            reports_limit: host.limits().reports,
            _granted: granted,
            output_limit,
            hostcall_limit: host.limits().hostcall_data,
            stdout,
            stderr,
            flushed: (0, 0),
            poisoned: false,
        })
    }

    /// Run one call with a fresh deadline; turn any trap into a failure that
    /// names the plugin and the limit, and poison the instance.
    fn call<R>(
        &mut self,
        f: impl FnOnce(&mut Store<JobState>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginFailure> {
        if self.poisoned {
            return Err(PluginFailure::Trap {
                plugin: self.plugin.clone(),
                detail: "the instance is unusable after an earlier failure".into(),
            });
        }
        self.store.data_mut().deadline = self.ends;
        self.store.data_mut().net.deadline = self.ends;
        self.store.set_epoch_deadline(1);
        let result = f(&mut self.store);
        self.flush_output();
        result.map_err(|e| {
            self.poisoned = true;
            self.classify(e)
        })
    }

    fn classify(&mut self, e: wasmtime::Error) -> PluginFailure {
        let plugin = self.plugin.clone();
        let state = self.store.data();
        if state.over_reports {
            return PluginFailure::Reports {
                plugin,
                limit: self.reports_limit,
            };
        }
        // The trap itself, not the backtrace's heading.
        let root = e.chain().last().map(|c| c.to_string()).unwrap_or_default();
        if matches!(
            e.downcast_ref::<wasmtime::Trap>(),
            Some(wasmtime::Trap::StackOverflow)
        ) || root.contains("call stack exhausted")
        {
            return PluginFailure::Stack {
                plugin,
                detail: format!(
                    "the host's {} stack for WebAssembly is used up",
                    crate::config::units::format_size(super::MAX_WASM_STACK as u64)
                ),
            };
        }
        // A guest's own stack lives at the bottom of its linear memory and
        // grows down: running out of it shows as an access below address
        // 0, which wraps above 4 GiB.
        if let Some(addr) = format!("{e:#}")
            .split("memory fault at wasm address 0x")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            && addr >= 1 << 32
        {
            return PluginFailure::Stack {
                plugin,
                detail: "its own stack, in its linear memory, is used up (the plugin sets its size when it is built)".into(),
            };
        }
        if let Some(requested) = state.limiter.exceeded {
            return PluginFailure::Memory {
                plugin,
                limit: self.memory_limit,
                requested,
            };
        }
        if matches!(
            e.downcast_ref::<wasmtime::Trap>(),
            Some(wasmtime::Trap::Interrupt)
        ) || root == waits::TIME_UP
        {
            if state.cancel.is_cancelled() {
                return PluginFailure::Cancelled { plugin };
            }
            return PluginFailure::Timeout {
                plugin,
                limit: self.timeout,
            };
        }
        let chain = format!("{e:#}");
        if chain.contains("MemoryOutputPipe")
            || self.stdout.contents().len() as u64 >= self.output_limit
            || self.stderr.contents().len() as u64 >= self.output_limit
        {
            return PluginFailure::Output {
                plugin,
                limit: self.output_limit,
            };
        }
        if chain.contains("hostcall fuel")
            || chain.contains("hostcall_fuel")
            || chain.contains("fuel allocated for hostcalls")
        {
            return PluginFailure::HostcallData {
                plugin,
                limit: self.hostcall_limit,
            };
        }
        let trap = printable(&clip(root.trim(), 512)).into_owned();
        let detail = match &state.last_error_log {
            Some(m) => format!("{m} ({trap})"),
            None => trap,
        };
        PluginFailure::Trap { plugin, detail }
    }

    /// Send what the plugin printed since the last call to the log.
    fn flush_output(&mut self) {
        for (pipe, seen, stream) in [
            (&self.stdout, &mut self.flushed.0, "stdout"),
            (&self.stderr, &mut self.flushed.1, "stderr"),
        ] {
            let bytes = pipe.contents();
            if bytes.len() > *seen {
                let text = String::from_utf8_lossy(&bytes[*seen..]);
                for line in text.lines().take(200) {
                    let line = printable(&clip(line, MAX_LOG_LINE)).into_owned();
                    tracing::info!(plugin = %self.plugin, stream, "{line}");
                }
                *seen = bytes.len();
            }
        }
    }

    fn reported(&self, e: bindings::GuestError) -> PluginFailure {
        if e.code == "cancelled" {
            return PluginFailure::Cancelled {
                plugin: self.plugin.clone(),
            };
        }
        // A plugin reports a refused request in its own words; say what
        // Coach refused and why beside them.
        let mut message = printable(&clip(&e.message, MAX_LOG_LINE)).into_owned();
        if let Some(why) = self.store.data().net.policy.used.first_refusal() {
            message = format!("{message} (Coach refused a request: {why})");
        }
        PluginFailure::Reported {
            plugin: self.plugin.clone(),
            code: printable(&clip(&e.code, 64)).into_owned(),
            message,
        }
    }
}

fn instantiate_failure(plugin: &str, e: wasmtime::Error) -> PluginFailure {
    PluginFailure::Load {
        plugin: plugin.to_owned(),
        detail: format!("instantiation failed: {e:#}"),
    }
}

/// What a trainer returned.
#[derive(Debug, Clone)]
pub struct TrainOutput {
    pub model: Vec<u8>,
    pub metrics: Vec<(String, f64)>,
    /// Metrics reported through the host during training: (name, value, step).
    pub progress_metrics: Vec<(String, f64, u32)>,
}

/// A trainer instance: train, then load models and predict.
pub struct TrainerJob {
    job: Job,
    bindings: bindings::trainer::Trainer,
    /// The optional `warm-start` export, when the component has it.
    warm_start: Option<bindings::warm_start::WarmStartExport>,
}

impl TrainerJob {
    pub(super) fn new(
        host: &PluginHost,
        plugin: &Installed,
        pre: InstancePre<JobState>,
        spec: JobSpec,
    ) -> Result<TrainerJob, PluginFailure> {
        let mut job = Job::new(host, plugin, spec)?;
        let indices = bindings::trainer::TrainerIndices::new(&pre)
            .map_err(|e| instantiate_failure(&job.plugin, e))?;
        let warm_indices = bindings::warm_start::WarmStartExportIndices::new(&pre).ok();
        let instance = job.call(|s| pre.instantiate(s))?;
        let bindings = job.call(|s| indices.load(s, &instance))?;
        let warm_start = match warm_indices {
            Some(w) => Some(job.call(|s| w.load(s, &instance))?),
            None => None,
        };
        Ok(TrainerJob {
            job,
            bindings,
            warm_start,
        })
    }

    fn output(&mut self, trained: bindings::Trained) -> TrainOutput {
        TrainOutput {
            model: trained.model,
            metrics: trained
                .metrics
                .into_iter()
                .map(|m| (m.name, m.value))
                .collect(),
            progress_metrics: std::mem::take(&mut self.job.store.data_mut().metrics),
        }
    }

    /// Whether the plugin can continue from an earlier model.
    pub fn supports_warm_start(&self) -> bool {
        self.warm_start.is_some()
    }

    /// Train starting from `base`, model bytes this plugin produced before.
    pub fn train_from(
        &mut self,
        config_json: &str,
        base: &[u8],
        train: &[Example],
        validation: &[Example],
    ) -> Result<TrainOutput, PluginFailure> {
        let Some(warm) = &self.warm_start else {
            return Err(PluginFailure::Reported {
                plugin: self.job.plugin.clone(),
                code: "unsupported".into(),
                message: "it cannot continue from a model (it does not export `warm-start`)".into(),
            });
        };
        let api = warm.coach_plugin_warm_start();
        let config_json = config_json.to_owned();
        let result = self
            .job
            .call(|s| api.call_train_from(s, &config_json, base, train, validation))?;
        let trained = result.map_err(|e| self.job.reported(e))?;
        Ok(self.output(trained))
    }

    pub fn train(
        &mut self,
        config_json: &str,
        train: &[Example],
        validation: &[Example],
    ) -> Result<TrainOutput, PluginFailure> {
        let api = self.bindings.coach_plugin_trainer_api();
        let config_json = config_json.to_owned();
        let result = self
            .job
            .call(|s| api.call_train(s, &config_json, train, validation))?;
        let trained = result.map_err(|e| self.job.reported(e))?;
        Ok(self.output(trained))
    }

    /// Load model bytes into this instance.
    pub fn load_model(&mut self, bytes: &[u8]) -> Result<ResourceAny, PluginFailure> {
        let api = self.bindings.coach_plugin_trainer_api();
        let result = self.job.call(|s| api.model().call_load(s, bytes))?;
        result.map_err(|e| self.job.reported(e))
    }

    /// Predict any number of texts, in calls of at most 256.
    pub fn predict_all(
        &mut self,
        model: ResourceAny,
        texts: &[String],
    ) -> Result<Vec<Prediction>, PluginFailure> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(256) {
            out.extend(self.predict(model, chunk)?);
        }
        Ok(out)
    }

    /// For an instance that serves requests for a long time: the next
    /// call may take `per_call` from now, and its reports count against a
    /// fresh quota — each request is bounded on its own, as each step is.
    pub fn renew(&mut self, per_call: Duration) {
        self.job.ends = Instant::now() + per_call;
        let state = self.job.store.data_mut();
        state.reported = 0;
        state.over_reports = false;
    }

    /// False after a trap: the instance must be replaced.
    pub fn usable(&self) -> bool {
        !self.job.poisoned
    }

    pub fn predict(
        &mut self,
        model: ResourceAny,
        texts: &[String],
    ) -> Result<Vec<Prediction>, PluginFailure> {
        let api = self.bindings.coach_plugin_trainer_api();
        let got = self
            .job
            .call(|s| api.model().call_predict(s, model, texts))?;
        if got.len() != texts.len() {
            return Err(PluginFailure::Misbehaved {
                plugin: self.job.plugin.clone(),
                detail: format!(
                    "it returned {} predictions for {} texts",
                    got.len(),
                    texts.len()
                ),
            });
        }
        got.into_iter()
            .zip(texts)
            .map(|(p, text)| checked_prediction(&self.job.plugin, p, text))
            .collect()
    }
}

/// Most candidates and entities a prediction keeps.
const MAX_RANKED: usize = 20;

/// A prediction as Coach keeps it: an intent that is a label,
/// confidences clamped to 0..1, at most [`MAX_RANKED`] candidates, and
/// only entity spans that fit the text (at most [`MAX_RANKED`], values
/// clipped to 256 bytes) — predictions are logged with conversations and
/// shown to people.
fn checked_prediction(
    plugin: &str,
    mut p: Prediction,
    text: &str,
) -> Result<Prediction, PluginFailure> {
    use crate::core::example::{EntitySpan, label_problem, span_problem};
    let bad = |what: String| PluginFailure::Misbehaved {
        plugin: plugin.to_owned(),
        detail: what,
    };
    let unit = |c: f32| {
        if c.is_finite() {
            c.clamp(0.0, 1.0)
        } else {
            0.0
        }
    };
    if let Some(why) = label_problem("predicted intent", &p.intent) {
        return Err(bad(format!("a prediction's intent is not a label: {why}")));
    }
    p.confidence = unit(p.confidence);
    p.ranking.truncate(MAX_RANKED);
    for r in &mut p.ranking {
        if let Some(why) = label_problem("ranked intent", &r.intent) {
            return Err(bad(format!(
                "a prediction's ranking is not of labels: {why}"
            )));
        }
        r.confidence = unit(r.confidence);
    }
    p.entities.retain(|e| {
        let span = EntitySpan {
            entity: e.entity.clone(),
            start: e.start,
            end: e.end,
            value: String::new(),
        };
        span_problem(text, &span).is_none()
    });
    p.entities.truncate(MAX_RANKED);
    for e in &mut p.entities {
        e.value = clip(&e.value, 256).into_owned();
    }
    Ok(p)
}

/// What a source produced.
#[derive(Debug, Clone, Default)]
pub struct SourceOutput {
    pub examples: Vec<Example>,
    pub conversations: Vec<crate::core::conversation::Conversation>,
    pub records: u64,
    /// Bad records: those the plugin skipped and those the host refused.
    pub bad_records: u64,
    /// `(location, reason)` of the first bad records (at most
    /// [`MAX_FIRST_BAD`]).
    pub first_bad: Vec<(String, String)>,
    /// Counts the plugin reported that could not be true, said plainly.
    pub doubtful: Option<String>,
    /// Calls of `next-batch`, the last (empty) one included.
    pub batches: u64,
    /// What the cursor said after its last batch: opening with it resumes
    /// there. `None` when the plugin's checkpoint is unusable (too long,
    /// not text).
    pub checkpoint: Option<String>,
}

/// Longest checkpoint the host keeps from a source.
pub const MAX_CHECKPOINT: usize = 64 << 10;

/// Bad records shown, whatever a plugin reports.
pub const MAX_FIRST_BAD: usize = 20;

/// A source instance.
pub struct SourceJob {
    job: Job,
    bindings: bindings::source::Source,
}

impl SourceJob {
    pub(super) fn new(
        host: &PluginHost,
        plugin: &Installed,
        pre: InstancePre<JobState>,
        spec: JobSpec,
    ) -> Result<SourceJob, PluginFailure> {
        let mut job = Job::new(host, plugin, spec)?;
        let pre = bindings::source::SourcePre::new(pre)
            .map_err(|e| instantiate_failure(&job.plugin, e))?;
        let bindings = job.call(|s| pre.instantiate(s))?;
        Ok(SourceJob { job, bindings })
    }

    /// Open the source and read it to the end in batches of `batch`,
    /// within the source limits (`[limits] source_examples` and
    /// `source_bytes`). Examples the host refuses ([`convert::refuse`])
    /// count as bad records, named by their place in the stream.
    pub fn read_all(
        &mut self,
        config_json: &str,
        batch: u32,
        limits: &crate::config::Limits,
    ) -> Result<SourceOutput, PluginFailure> {
        self.read_from(config_json, None, batch, limits)
    }

    /// [`SourceJob::read_all`], resuming from `checkpoint` (what a cursor's
    /// `checkpoint()` returned before); the output says where it ended.
    pub fn read_from(
        &mut self,
        config_json: &str,
        checkpoint: Option<&str>,
        batch: u32,
        limits: &crate::config::Limits,
    ) -> Result<SourceOutput, PluginFailure> {
        use super::convert;
        let api = self.bindings.coach_plugin_source_api();
        let config_json = config_json.to_owned();
        let checkpoint = checkpoint.map(str::to_owned);
        let cursor = self
            .job
            .call(|s| api.call_open(s, &config_json, checkpoint.as_deref()))?
            .map_err(|e| self.job.reported(e))?;
        let plugin = self.job.plugin.clone();
        let mut out = SourceOutput::default();
        let (mut seen, mut bytes, mut refused) = (0u64, 0u64, Vec::new());
        loop {
            let b = self
                .job
                .call(|s| api.cursor().call_next_batch(s, cursor, batch))?
                .map_err(|e| self.job.reported(e))?;
            out.batches += 1;
            if b.examples.is_empty() && b.conversations.is_empty() {
                break;
            }
            let n = b.examples.len() + b.conversations.len();
            if n > batch as usize {
                return Err(PluginFailure::Misbehaved {
                    plugin,
                    detail: format!("it returned {n} records for a batch of at most {batch}"),
                });
            }
            for e in b.examples {
                seen += 1;
                if let Some(why) = convert::refuse(&e) {
                    refused.push((format!("record {seen} (checked by Coach)"), why));
                    continue;
                }
                bytes += convert::size(&e);
                out.examples.push(e);
            }
            for c in b.conversations {
                seen += 1;
                match convert::conversation_from_guest(c) {
                    Ok(c) => {
                        bytes += c.size();
                        out.conversations.push(c);
                    }
                    Err(why) => {
                        refused.push((format!("record {seen} (checked by Coach)"), why));
                    }
                }
            }
            if (out.examples.len() + out.conversations.len()) as u64 > limits.source_examples {
                return Err(PluginFailure::SourceLimit {
                    plugin,
                    limit: format!("{} examples", limits.source_examples),
                    key: "source_examples",
                });
            }
            if bytes > limits.source_bytes {
                return Err(PluginFailure::SourceLimit {
                    plugin,
                    limit: crate::config::units::format_size(limits.source_bytes),
                    key: "source_bytes",
                });
            }
        }
        let stats = self.job.call(|s| api.cursor().call_stats(s, cursor))?;
        let token = self.job.call(|s| api.cursor().call_checkpoint(s, cursor))?;
        out.checkpoint = (token.len() <= MAX_CHECKPOINT).then_some(token);
        out.records = stats.records;
        // What the plugin says is checked, clipped and escaped.
        let claimed_bad = stats.bad_records;
        let plausible = stats.records.max(seen);
        let plugin_bad = if claimed_bad > plausible {
            out.doubtful = Some(format!(
                "the plugin reported {claimed_bad} bad records of {} read; counted as {plausible}",
                stats.records
            ));
            plausible
        } else {
            claimed_bad
        };
        let clean = |s: &str| printable(&clip(s, 256)).into_owned();
        out.first_bad = refused
            .iter()
            .cloned()
            .chain(
                stats
                    .first_bad
                    .iter()
                    .map(|b| (clean(&b.location), clean(&b.reason))),
            )
            .take(MAX_FIRST_BAD)
            .collect();
        out.bad_records = plugin_bad + refused.len() as u64;
        self.job.call(|s| cursor.resource_drop(s))?;
        Ok(out)
    }
}

/// An analyzer instance.
pub struct AnalyzerJob {
    job: Job,
    bindings: bindings::analyzer::Analyzer,
}

/// Dialogues handed to an analyzer per call: the peers it may judge each
/// against.
pub const ANALYZE_BATCH: usize = 1000;
/// Most aspects, pieces of evidence per aspect, and findings the host
/// keeps of one analysis; reasons and messages are clipped to 512 bytes.
const MAX_ASPECTS: usize = 32;
const MAX_EVIDENCE: usize = 64;
const MAX_FINDINGS: usize = 64;
const MAX_REASON: usize = 512;

impl AnalyzerJob {
    pub(super) fn new(
        host: &PluginHost,
        plugin: &Installed,
        pre: InstancePre<JobState>,
        spec: JobSpec,
    ) -> Result<AnalyzerJob, PluginFailure> {
        let mut job = Job::new(host, plugin, spec)?;
        let pre = bindings::analyzer::AnalyzerPre::new(pre)
            .map_err(|e| instantiate_failure(&job.plugin, e))?;
        let bindings = job.call(|s| pre.instantiate(s))?;
        Ok(AnalyzerJob { job, bindings })
    }

    /// Analyse `conversations` as peers (in calls of [`ANALYZE_BATCH`]):
    /// one analysis each, in order. What the plugin returns is checked —
    /// one analysis per dialogue with its id, scores within 0–100, turns
    /// within the dialogue — and clipped and escaped.
    pub fn analyze(
        &mut self,
        config_json: &str,
        conversations: &[crate::core::conversation::Conversation],
    ) -> Result<Vec<crate::core::analysis::Analysis>, PluginFailure> {
        let api = self.bindings.coach_plugin_analyzer_api();
        let config_json = config_json.to_owned();
        let mut out = Vec::with_capacity(conversations.len());
        for chunk in conversations.chunks(ANALYZE_BATCH) {
            let dialogues: Vec<_> = chunk
                .iter()
                .map(super::convert::dialogue_to_guest)
                .collect();
            let got = self
                .job
                .call(|s| api.call_analyze(s, &config_json, &dialogues))?
                .map_err(|e| self.job.reported(e))?;
            if got.len() != chunk.len() {
                return Err(self.misbehaved(format!(
                    "it returned {} analyses for {} conversations",
                    got.len(),
                    chunk.len()
                )));
            }
            for (a, c) in got.into_iter().zip(chunk) {
                out.push(self.checked(a, c)?);
            }
        }
        Ok(out)
    }

    fn misbehaved(&self, detail: String) -> PluginFailure {
        PluginFailure::Misbehaved {
            plugin: self.job.plugin.clone(),
            detail,
        }
    }

    fn checked(
        &self,
        a: bindings::analyzer::coach::plugin::analysis::DialogueAnalysis,
        c: &crate::core::conversation::Conversation,
    ) -> Result<crate::core::analysis::Analysis, PluginFailure> {
        use crate::core::analysis::{Analysis, Aspect, Evidence, Finding};
        let clean = |s: &str| printable(&clip(s, MAX_REASON)).into_owned();
        if a.id != c.id {
            return Err(self.misbehaved(format!(
                "it answered conversation `{}` with an analysis of `{}`",
                clean(&c.id),
                clean(&a.id)
            )));
        }
        let unit = |what: &str, v: f32, max: f32| {
            if v.is_finite() && (0.0..=max).contains(&v) {
                Ok(f64::from(v))
            } else {
                Err(self.misbehaved(format!(
                    "{what} {v} of conversation `{}` is not within 0..{max}",
                    clean(&c.id)
                )))
            }
        };
        let turns = c.turns.len() as u32;
        let mut aspects = Vec::new();
        for x in a.aspects.into_iter().take(MAX_ASPECTS) {
            let mut evidence = Vec::new();
            for e in x.evidence.into_iter().take(MAX_EVIDENCE) {
                if let Some(t) = e.turns.iter().find(|t| **t >= turns) {
                    return Err(self.misbehaved(format!(
                        "its evidence names turn {t} of conversation `{}`, which has {turns}",
                        clean(&c.id)
                    )));
                }
                evidence.push(Evidence {
                    turns: e.turns.into_iter().take(MAX_EVIDENCE).collect(),
                    reason: clean(&e.reason),
                    points: unit("points lost", e.points, 100.0)?,
                });
            }
            aspects.push(Aspect {
                name: clean(&clip(&x.name, 64)),
                score: unit("aspect score", x.score, 100.0)?,
                confidence: unit("aspect confidence", x.confidence, 1.0)?,
                evidence,
            });
        }
        let findings = a
            .findings
            .into_iter()
            .take(MAX_FINDINGS)
            .map(|f| Finding {
                kind: clean(&clip(&f.kind, 64)),
                turn: f.turn.filter(|t| *t < turns),
                message: clean(&f.message),
            })
            .collect();
        Ok(Analysis {
            conversation: c.id.clone(),
            score: unit("score", a.score, 100.0)?,
            aspects,
            findings,
        })
    }
}

mod waits;

/// `wasi:clocks/monotonic-clock`, aware of the job's deadline and its
/// cancellation: a plugin that sleeps (`thread::sleep`, a blocking poll)
/// wakes when its time is up or the job is cancelled, and the epoch check
/// that follows stops it. Without this, a sleeping plugin blocks its
/// thread past every deadline, cancel and shutdown.
mod clocks {
    use super::JobState;
    use std::time::{Duration, Instant};
    use tokio_util::sync::CancellationToken;
    use wasmtime::component::Resource;
    use wasmtime_wasi::p2::bindings::clocks::monotonic_clock::{
        Duration as WasiDuration, Host, Instant as WasiInstant,
    };
    use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};

    /// A sleep that ends at its time, at the job's deadline or at cancel,
    /// whichever comes first.
    struct Nap {
        until: Option<tokio::time::Instant>,
        cancel: CancellationToken,
        yielded: bool,
    }

    #[async_trait::async_trait]
    impl Pollable for Nap {
        async fn ready(&mut self) {
            match self.until {
                // A zero sleep (a non-blocking poll) yields once, so a
                // plugin polling in a loop cannot starve the runtime.
                None if self.yielded => {}
                None => {
                    self.yielded = true;
                    tokio::task::yield_now().await;
                }
                Some(until) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(until) => {}
                        () = self.cancel.cancelled() => {}
                    }
                }
            }
        }
    }

    impl JobState {
        fn nap(&mut self, wanted: Duration) -> wasmtime::Result<Resource<DynPollable>> {
            let until = if wanted.is_zero() {
                None
            } else {
                let end = Instant::now()
                    .checked_add(wanted)
                    .map_or(self.deadline, |t| t.min(self.deadline));
                Some(tokio::time::Instant::from_std(end))
            };
            let nap = self.table.push(Nap {
                until,
                cancel: self.cancel.clone(),
                yielded: false,
            })?;
            subscribe(&mut self.table, nap)
        }

        fn clock_now(&self) -> WasiInstant {
            self.clock_base.elapsed().as_nanos() as u64
        }
    }

    impl Host for JobState {
        fn now(&mut self) -> wasmtime::Result<WasiInstant> {
            Ok(self.clock_now())
        }

        fn resolution(&mut self) -> wasmtime::Result<WasiDuration> {
            Ok(1)
        }

        fn subscribe_instant(
            &mut self,
            when: WasiInstant,
        ) -> wasmtime::Result<Resource<DynPollable>> {
            let wait = when.saturating_sub(self.clock_now());
            self.nap(Duration::from_nanos(wait))
        }

        fn subscribe_duration(
            &mut self,
            duration: WasiDuration,
        ) -> wasmtime::Result<Resource<DynPollable>> {
            self.nap(Duration::from_nanos(duration))
        }
    }
}

#[cfg(test)]
mod prediction_tests {
    use super::*;
    use crate::plugin::bindings::{EntitySpan, RankedIntent};

    fn prediction(intent: &str) -> Prediction {
        Prediction {
            intent: intent.into(),
            confidence: 1.5,
            ranking: (0..30)
                .map(|i| RankedIntent {
                    intent: format!("i{i}"),
                    confidence: f32::NAN,
                })
                .collect(),
            entities: vec![
                EntitySpan {
                    entity: "city".into(),
                    start: 5,
                    end: 10,
                    value: "Leeds".repeat(100),
                },
                EntitySpan {
                    entity: "city".into(),
                    start: 5,
                    end: 99,
                    value: "past the end".into(),
                },
            ],
        }
    }

    #[test]
    fn a_trainers_predictions_are_checked_clamped_and_clipped() {
        let p = checked_prediction("t", prediction("greet"), "Hi, Leeds!").unwrap();
        assert_eq!(p.confidence, 1.0);
        assert_eq!(p.ranking.len(), MAX_RANKED);
        assert!(p.ranking.iter().all(|r| r.confidence == 0.0));
        assert_eq!(p.entities.len(), 1);
        assert!(p.entities[0].value.len() <= 256 + 3);
        for bad in ["", "a\u{1b}[2Jb", &"x".repeat(200)] {
            let e = checked_prediction("t", prediction(bad), "Hi, Leeds!").unwrap_err();
            assert!(e.to_string().contains("intent is not a label"), "{e}");
        }
    }
}
