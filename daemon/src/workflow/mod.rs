//! Workflow files, schema version 1: parse, check, and compile into a
//! [`Workflow`] whose steps are in dependency order.
//!
//! The file is read into a spanned TOML tree and checked by hand rather than
//! by `serde`, so that *every* problem is reported at once, each with
//! file:line:column: syntax errors, unknown keys, wrong types, unknown
//! plugins, step kinds and parameters, unknown `needs`, cycles, and steps
//! whose inputs no earlier step produces.

pub mod error;
pub mod trigger;

use crate::config::units;
use crate::plugin::manifest::{Kind, Manifest, ParamType, Parameter};
use error::{Errors, Located};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// The plugins a workflow may name, by id.
pub type Catalog = BTreeMap<String, Manifest>;

/// A built-in step kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    /// Assign train/validation/test splits (stratified, seeded), or keep the
    /// dataset's own.
    Split,
    /// Score a trained model on held-out data.
    Evaluate,
    /// Store the model as a content-addressed artifact with its lineage.
    Register,
    /// Decide with a script (`when`) whether the run goes on.
    Gate,
    /// Filter and change examples with a script (`with.script`).
    Rules,
    /// Run a command as a process (a GPU trainer, say) on the GPUs the
    /// scheduler allocates.
    Process,
}

impl Builtin {
    fn parse(s: &str) -> Option<Builtin> {
        match s {
            "split" => Some(Builtin::Split),
            "evaluate" => Some(Builtin::Evaluate),
            "register" => Some(Builtin::Register),
            "gate" => Some(Builtin::Gate),
            "rules" => Some(Builtin::Rules),
            "process" => Some(Builtin::Process),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Builtin::Split => "split",
            Builtin::Evaluate => "evaluate",
            Builtin::Register => "register",
            Builtin::Gate => "gate",
            Builtin::Rules => "rules",
            Builtin::Process => "process",
        }
    }

    /// The parameters each built-in kind accepts.
    fn parameters(self) -> Vec<(&'static str, ParamType, &'static [&'static str])> {
        match self {
            Builtin::Split => vec![
                ("mode", ParamType::String, &["keep", "stratified"]),
                ("validation", ParamType::Float, &[]),
                ("test", ParamType::Float, &[]),
                ("seed", ParamType::Integer, &[]),
            ],
            Builtin::Evaluate => vec![
                ("on", ParamType::String, &["auto", "test", "validation"]),
                ("oos_label", ParamType::String, &[]),
                ("top_confusions", ParamType::Integer, &[]),
            ],
            Builtin::Register => vec![("name", ParamType::String, &[])],
            Builtin::Gate => vec![],
            Builtin::Rules => vec![("script", ParamType::String, &[])],
            // A process takes `command`, `env` and `workdir` instead.
            Builtin::Process => vec![],
        }
    }
}

/// What a step does.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Plugin { id: String, kind: Kind },
    Builtin(Builtin),
}

/// What a step's output is, for checking that inputs exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Produces {
    Dataset,
    Model,
    Evaluation,
    Registration,
    Verdict,
    /// A process's files and metrics.
    Artifact,
}

impl Action {
    pub fn produces(&self) -> Produces {
        match self {
            Action::Plugin {
                kind: Kind::Trainer,
                ..
            } => Produces::Model,
            Action::Plugin { .. } => Produces::Dataset,
            Action::Builtin(Builtin::Split) => Produces::Dataset,
            Action::Builtin(Builtin::Evaluate) => Produces::Evaluation,
            Action::Builtin(Builtin::Register) => Produces::Registration,
            Action::Builtin(Builtin::Gate) => Produces::Verdict,
            Action::Builtin(Builtin::Rules) => Produces::Dataset,
            Action::Builtin(Builtin::Process) => Produces::Artifact,
        }
    }

    /// What a step needs before it (any one of these).
    fn requires(&self) -> Option<&'static [Produces]> {
        match self {
            Action::Plugin {
                kind: Kind::Trainer,
                ..
            } => Some(&[Produces::Dataset]),
            Action::Plugin { .. } | Action::Builtin(Builtin::Process) => None,
            Action::Builtin(Builtin::Split) | Action::Builtin(Builtin::Rules) => {
                Some(&[Produces::Dataset])
            }
            Action::Builtin(Builtin::Evaluate) | Action::Builtin(Builtin::Gate) => {
                Some(&[Produces::Model])
            }
            // A process step's artifacts register as a model too.
            Action::Builtin(Builtin::Register) => Some(&[Produces::Model, Produces::Artifact]),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub id: String,
    pub action: Action,
    pub needs: Vec<String>,
    /// Parameters as JSON; `path` parameters are absolute.
    pub with: Map<String, Value>,
    /// Files and folders named by `path` parameters (absolute).
    pub read_paths: Vec<PathBuf>,
    pub timeout: Option<Duration>,
    pub retries: u32,
    /// Trainer steps: continue from this registered model (an id, a name,
    /// `name:version` or `latest`) when it exists.
    pub warm_start: Option<String>,
    /// Gate steps: the verdict; other steps: run only if true.
    pub when: Option<ScriptRef>,
    /// Computes parameters merged over `with`.
    pub params: Option<ScriptRef>,
    /// Rules steps: the `filter`/`map` script.
    pub rules: Option<ScriptRef>,
    /// Process steps: what to run.
    pub process: Option<ProcessSpec>,
    pub resources: Resources,
    pub placement: Placement,
    /// Where `resources` is written, for errors found later (a request no
    /// GPU inventory can hold).
    pub resources_at: Option<Located>,
}

/// A process step's command.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessSpec {
    /// Program and arguments (no shell); a relative program path is
    /// relative to the working directory.
    pub argv: Vec<String>,
    /// Absolute; default the workflow's folder.
    pub workdir: PathBuf,
    /// Granted environment.
    pub env: BTreeMap<String, String>,
}

/// What a step needs to run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Resources {
    pub gpus: u32,
    /// Bytes of GPU memory per GPU; 0: not declared.
    pub gpu_memory: u64,
    pub cpus: Option<u32>,
    /// Bytes of host memory.
    pub memory: Option<u64>,
    /// Whole GPUs (default), or shared by GPU memory.
    pub exclusive: bool,
}

/// How a step competes for GPUs.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    pub priority: crate::scheduler::gpu::Priority,
    pub queue: String,
    pub preemptible: bool,
    /// Declared maximum run time (lets short work backfill).
    pub max_duration: Option<Duration>,
}

impl Default for Placement {
    fn default() -> Self {
        Placement {
            priority: crate::scheduler::gpu::Priority::Normal,
            queue: "default".into(),
            preemptible: false,
            max_duration: None,
        }
    }
}

/// A compiled script a step uses; equal when origin and content are.
#[derive(Debug, Clone)]
pub struct ScriptRef(pub std::sync::Arc<crate::script::Script>);

impl PartialEq for ScriptRef {
    fn eq(&self, other: &ScriptRef) -> bool {
        self.0.origin == other.0.origin && self.0.hash == other.0.hash
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Workflow {
    pub file: PathBuf,
    /// SHA-256 of the file's bytes: the workflow version a run used.
    pub hash: String,
    pub name: String,
    pub description: String,
    pub trigger: trigger::Trigger,
    /// Where process steps run; `None`: as the config says.
    pub executor: Option<Executor>,
    /// Steps in an order where every step comes after what it needs.
    pub steps: Vec<Step>,
}

/// Where a workflow's process steps run: on this machine's GPUs, or placed
/// by a Slurm cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Executor {
    Local,
    Slurm,
}

impl Workflow {
    /// The script files the workflow uses, with their sources (they are
    /// part of its version).
    pub fn script_files(&self) -> BTreeMap<PathBuf, String> {
        let mut out = scripts_of(&self.steps);
        if let Some(r) = &self.trigger.when
            && let crate::script::Origin::File(f) = &r.0.origin
        {
            out.insert(f.clone(), r.0.source.clone());
        }
        out
    }

    /// Where this workflow's process steps run, given the config's default
    /// (`[slurm] default`).
    pub fn executor(&self, slurm_by_default: bool) -> Executor {
        self.executor.unwrap_or(if slurm_by_default {
            Executor::Slurm
        } else {
            Executor::Local
        })
    }

    /// Every step whose GPU request this machine can never hold (`never`
    /// says why, for a step's resources), as located errors. Work placed
    /// by Slurm is the cluster's to judge (`sbatch` refuses what it can
    /// never place).
    pub fn check_fits(
        &self,
        slurm_by_default: bool,
        never: &dyn Fn(&Resources) -> Option<String>,
    ) -> Result<(), Errors> {
        if self.executor(slurm_by_default) == Executor::Slurm {
            return Ok(());
        }
        let errors: Vec<Located> = self
            .steps
            .iter()
            .filter(|s| s.resources.gpus > 0)
            .filter_map(|s| {
                let why = never(&s.resources)?;
                let mut at = s
                    .resources_at
                    .clone()
                    .unwrap_or_else(|| Located::file(&self.file, ""));
                at.message = format!("step `{}` {why}", s.id);
                Some(at)
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Errors(errors))
        }
    }

    /// The name the workflow registers its model under: its register step's
    /// `name`, else the workflow's name. Traffic and feedback are logged
    /// against it.
    pub fn model_name(&self) -> &str {
        self.steps
            .iter()
            .find(|s| s.action == Action::Builtin(Builtin::Register))
            .and_then(|s| s.with.get("name").and_then(serde_json::Value::as_str))
            .unwrap_or(&self.name)
    }
}

fn scripts_of(steps: &[Step]) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    for s in steps {
        for r in [&s.when, &s.params, &s.rules].into_iter().flatten() {
            if let crate::script::Origin::File(f) = &r.0.origin {
                out.insert(f.clone(), r.0.source.clone());
            }
        }
    }
    out
}

/// The version of a workflow: SHA-256 over its text and, after it, each
/// script file it uses (path and source), so editing a script is a new
/// version too.
pub fn version_hash(text: &str, scripts: &BTreeMap<PathBuf, String>) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(text.as_bytes());
    for (path, source) in scripts {
        h.update(b"\0");
        h.update(path.to_string_lossy().as_bytes());
        h.update(b"\0");
        h.update(source.as_bytes());
    }
    hex::encode(h.finalize())
}

impl Workflow {
    /// Read and compile `file`.
    pub fn load(file: &Path, catalog: &Catalog) -> Result<Workflow, Errors> {
        let text = std::fs::read_to_string(file).map_err(|e| {
            Errors(vec![Located::file(
                file,
                format!("cannot read the workflow: {e}"),
            )])
        })?;
        Workflow::parse(file, &text, catalog)
    }

    /// Compile workflow `text`; `file` names it in errors and anchors
    /// relative paths.
    pub fn parse(file: &Path, text: &str, catalog: &Catalog) -> Result<Workflow, Errors> {
        Workflow::parse_with_scripts(file, text, catalog, None)
    }

    /// [`Workflow::parse`], reading script files from `scripts` (path →
    /// source) instead of the disk: how a run resumes on the exact version
    /// it was queued with.
    pub fn parse_with_scripts(
        file: &Path,
        text: &str,
        catalog: &Catalog,
        scripts: Option<&BTreeMap<PathBuf, String>>,
    ) -> Result<Workflow, Errors> {
        let mut c = Checker {
            file,
            text,
            scripts,
            errors: Vec::new(),
        };
        let wf = c.workflow(catalog);
        let mut errors = c.errors;
        match wf {
            Some(wf) if errors.is_empty() => Ok(wf),
            _ => {
                errors.sort_by_key(|e| (e.line, e.column));
                errors.dedup();
                Err(Errors(errors))
            }
        }
    }

    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id == id)
    }

    /// `id` and every step it needs, directly or not, in dependency order.
    pub fn upstream_of(&self, id: &str) -> Workflow {
        let mut keep = BTreeSet::new();
        let mut todo = vec![id.to_owned()];
        while let Some(s) = todo.pop() {
            if keep.insert(s.clone())
                && let Some(step) = self.step(&s)
            {
                todo.extend(step.needs.iter().cloned());
            }
        }
        Workflow {
            steps: self
                .steps
                .iter()
                .filter(|s| keep.contains(&s.id))
                .cloned()
                .collect(),
            ..self.clone()
        }
    }

    /// The nearest step before `id` (through `needs`, breadth first) that
    /// produces `what`.
    pub fn nearest(&self, id: &str, what: Produces) -> Option<&Step> {
        self.nearest_of(id, &[what])
    }

    /// The nearest step before `id` that produces any of `what`.
    pub fn nearest_of(&self, id: &str, what: &[Produces]) -> Option<&Step> {
        let mut queue: Vec<&str> = self.step(id)?.needs.iter().map(String::as_str).collect();
        let mut seen = BTreeSet::new();
        while !queue.is_empty() {
            let mut next = Vec::new();
            for s in queue {
                if !seen.insert(s) {
                    continue;
                }
                let step = self.step(s)?;
                if what.contains(&step.action.produces()) {
                    return Some(step);
                }
                next.extend(step.needs.iter().map(String::as_str));
            }
            queue = next;
        }
        None
    }
}

const TOP_KEYS: &[&str] = &[
    "version",
    "name",
    "description",
    "executor",
    "trigger",
    "step",
];
const STEP_KEYS: &[&str] = &[
    "id",
    "uses",
    "kind",
    "needs",
    "with",
    "timeout",
    "retries",
    "warm_start",
    "when",
    "params",
    "command",
    "workdir",
    "env",
    "resources",
    "priority",
    "queue",
    "preemptible",
    "max_duration",
];
const TRIGGER_KEYS: &[&str] = &[
    "cron",
    "timezone",
    "catch_up",
    "watch",
    "debounce",
    "on",
    "concurrency",
    "when",
    "check_every",
    "min_interval",
];

struct Checker<'a> {
    file: &'a Path,
    text: &'a str,
    scripts: Option<&'a BTreeMap<PathBuf, String>>,
    errors: Vec<Located>,
}

type Table<'i> = DeTable<'i>;

fn kind_of(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// A name as workflows, steps and models are named: up to 64 letters,
/// digits, `-` or `_`, starting with a letter or digit.
pub fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
}

impl<'a> Checker<'a> {
    fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.errors
            .push(Located::at(self.file, self.text, span, message));
    }

    fn unknown_keys(&mut self, table: &Table<'_>, allowed: &[&str], what: &str) {
        for (k, _) in table.iter() {
            if !allowed.contains(&k.get_ref().as_ref()) {
                self.error(
                    k.span(),
                    format!(
                        "unknown key `{}` in {what}; expected one of: {}",
                        k.get_ref(),
                        allowed.join(", ")
                    ),
                );
            }
        }
    }

    fn string(&mut self, v: &Spanned<DeValue<'_>>, what: &str) -> Option<String> {
        match v.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            other => {
                self.error(
                    v.span(),
                    format!("{what} must be a string, found {}", kind_of(other)),
                );
                None
            }
        }
    }

    fn workflow(&mut self, catalog: &Catalog) -> Option<Workflow> {
        let (doc, syntax) = DeTable::parse_recoverable(self.text);
        for e in syntax {
            let span = e.span().unwrap_or(0..0);
            self.error(span, format!("TOML syntax: {}", e.message().trim()));
        }
        if !self.errors.is_empty() {
            // A broken document yields misleading follow-on errors.
            return None;
        }
        let doc_span = doc.span();
        let doc = doc.into_inner();
        self.unknown_keys(&doc, TOP_KEYS, "the workflow");

        match doc.get("version") {
            None => self.error(0..0, "missing `version = 1` (the workflow schema version)"),
            Some(v) => {
                match v.get_ref() {
                    DeValue::Integer(i) if i.as_str() == "1" => {}
                    other => {
                        let shown = match other {
                            DeValue::Integer(i) => i.as_str().to_owned(),
                            other => kind_of(other).to_owned(),
                        };
                        self.error(
                        v.span(),
                        format!("unsupported workflow version {shown}; this Coach reads `version = 1`"),
                    )
                    }
                }
            }
        }
        let name = match doc.get("name") {
            None => {
                self.error(doc_span.start..doc_span.start, "missing `name`");
                String::new()
            }
            Some(v) => {
                let n = self.string(v, "`name`").unwrap_or_default();
                if !n.is_empty() && !is_identifier(&n) {
                    self.error(
                        v.span(),
                        format!("name `{n}` must be letters, digits, `-` or `_`"),
                    );
                }
                n
            }
        };
        let description = doc
            .get("description")
            .and_then(|v| self.string(v, "`description`"))
            .unwrap_or_default();
        let wf_dir = self
            .file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let trigger = match doc.get("trigger") {
            Some(t) => self.trigger(t, &wf_dir),
            None => trigger::Trigger::default(),
        };
        let executor =
            doc.get("executor")
                .and_then(|v| match self.string(v, "`executor`")?.as_str() {
                    "local" => Some(Executor::Local),
                    "slurm" => Some(Executor::Slurm),
                    other => {
                        self.error(
                            v.span(),
                            format!("`executor` is `{other}`; expected `local` or `slurm`"),
                        );
                        None
                    }
                });

        let Some(steps_value) = doc.get("step") else {
            self.error(0..0, "no steps: add at least one `[[step]]`");
            return None;
        };
        let DeValue::Array(items) = steps_value.get_ref() else {
            self.error(
                steps_value.span(),
                "`step` must be an array of tables: write `[[step]]`",
            );
            return None;
        };
        let mut steps = Vec::new();
        let mut spans: BTreeMap<String, (Range<usize>, Vec<Range<usize>>)> = BTreeMap::new();
        let mut failed: BTreeSet<String> = BTreeSet::new();
        let all_ids: BTreeSet<String> = items
            .iter()
            .filter_map(|item| match item.get_ref() {
                DeValue::Table(t) => t.get("id").and_then(|v| match v.get_ref() {
                    DeValue::String(s) => Some(s.to_string()),
                    _ => None,
                }),
                _ => None,
            })
            .collect();
        for item in items.iter() {
            let DeValue::Table(t) = item.get_ref() else {
                self.error(item.span(), "each step must be a table");
                continue;
            };
            let declared = t.get("id").and_then(|v| match v.get_ref() {
                DeValue::String(s) => Some(s.to_string()),
                _ => None,
            });
            let Some((step, id_span, need_spans)) =
                self.step(t, item.span(), catalog, &wf_dir, &all_ids)
            else {
                failed.extend(declared);
                continue;
            };
            {
                if spans.contains_key(&step.id) {
                    self.error(id_span, format!("step id `{}` is used twice", step.id));
                    continue;
                }
                spans.insert(step.id.clone(), (id_span, need_spans));
                steps.push(step);
            }
        }
        let ordered = self.order(steps, &spans, &failed)?;
        self.check_inputs(&ordered, &spans);
        Some(Workflow {
            file: self.file.to_path_buf(),
            hash: version_hash(self.text, &{
                let mut all = scripts_of(&ordered);
                if let Some(r) = &trigger.when
                    && let crate::script::Origin::File(f) = &r.0.origin
                {
                    all.insert(f.clone(), r.0.source.clone());
                }
                all
            }),
            name,
            description,
            trigger,
            executor,
            steps: ordered,
        })
    }

    fn trigger(&mut self, t: &Spanned<DeValue<'_>>, wf_dir: &Path) -> trigger::Trigger {
        use trigger::{CatchUp, Concurrency, Cron, Trigger};
        let mut out = Trigger {
            debounce: trigger::DEFAULT_DEBOUNCE,
            check_every: trigger::DEFAULT_CHECK_EVERY,
            min_interval: trigger::DEFAULT_MIN_INTERVAL,
            ..Trigger::default()
        };
        let DeValue::Table(table) = t.get_ref() else {
            self.error(t.span(), "`trigger` must be a table");
            return out;
        };
        self.unknown_keys(table, TRIGGER_KEYS, "`trigger`");
        let timezone = match table.get("timezone") {
            None => chrono_tz::UTC,
            Some(v) => match self.string(v, "`trigger.timezone`") {
                None => chrono_tz::UTC,
                Some(name) => name.parse::<chrono_tz::Tz>().unwrap_or_else(|_| {
                    self.error(
                        v.span(),
                        format!("unknown time zone `{name}`; use an IANA name such as `UTC` or `Europe/Berlin`"),
                    );
                    chrono_tz::UTC
                }),
            },
        };
        if let Some(c) = table.get("cron")
            && let Some(expr) = self.string(c, "`trigger.cron`")
        {
            match trigger::parse_cron(&expr) {
                Ok(_) => out.cron = Some(Cron { expr, timezone }),
                Err(e) => self.error(c.span(), e),
            }
        }
        let mut choice = |key: &str, allowed: &[&str]| -> Option<String> {
            let v = table.get(key)?;
            let s = self.string(v, &format!("`trigger.{key}`"))?;
            if allowed.contains(&s.as_str()) {
                Some(s)
            } else {
                self.error(
                    v.span(),
                    format!(
                        "`trigger.{key}` is `{s}`; expected one of: {}",
                        allowed.join(", ")
                    ),
                );
                None
            }
        };
        out.catch_up = match choice("catch_up", &["once", "skip"]).as_deref() {
            Some("skip") => CatchUp::Skip,
            _ => CatchUp::Once,
        };
        out.concurrency = match choice("concurrency", &["allow", "forbid", "queue"]).as_deref() {
            Some("allow") => Concurrency::Allow,
            Some("forbid") => Concurrency::Forbid,
            _ => Concurrency::Queue,
        };
        for (key, slot) in [
            ("debounce", &mut out.debounce),
            ("check_every", &mut out.check_every),
            ("min_interval", &mut out.min_interval),
        ] {
            if let Some(v) = table.get(key)
                && let Some(s) = self.string(v, &format!("`trigger.{key}`"))
            {
                match units::parse_duration(&s) {
                    Ok(d) => *slot = d,
                    Err(e) => self.error(v.span(), format!("`trigger.{key}`: {e}")),
                }
            }
        }
        if let Some(v) = table.get("when") {
            out.when = self.script_ref(v, crate::script::Hook::Trigger, wf_dir, true);
        }
        for key in ["watch", "on"] {
            if let Some(v) = table.get(key) {
                match v.get_ref() {
                    DeValue::Array(a) => {
                        for x in a.iter() {
                            let Some(s) = self.string(x, &format!("each entry of `trigger.{key}`"))
                            else {
                                continue;
                            };
                            if key == "on" {
                                // Better refused than accepted and never
                                // fired: no part of Coach emits named
                                // events yet.
                                self.error(
                                    x.span(),
                                    format!("`trigger.on = [\"{s}\"]`: event triggers are not available in this version of Coach; use `cron` or `watch`"),
                                );
                                out.on.push(s);
                                continue;
                            }
                            match crate::config::expand_env(&s) {
                                Ok(p) => {
                                    let p = Path::new(&p);
                                    out.watch.push(if p.is_absolute() {
                                        p.to_path_buf()
                                    } else {
                                        wf_dir.join(p)
                                    });
                                }
                                Err(e) => self.error(x.span(), e),
                            }
                        }
                    }
                    other => self.error(
                        v.span(),
                        format!(
                            "`trigger.{key}` must be an array of strings, found {}",
                            kind_of(other)
                        ),
                    ),
                }
            }
        }
        out
    }

    /// A script named by `v`: a `.rhai` file (relative to the workflow) or,
    /// where `inline` is allowed, an expression. Compile errors are located
    /// in the script file, or in the workflow for expressions.
    fn script_ref(
        &mut self,
        v: &Spanned<DeValue<'_>>,
        hook: crate::script::Hook,
        wf_dir: &Path,
        inline: bool,
    ) -> Option<ScriptRef> {
        let text = self.string(v, "a script")?;
        let result = if text.trim_end().ends_with(".rhai") {
            let path = wf_dir.join(text.trim());
            match self.scripts.and_then(|m| m.get(&path)) {
                Some(source) => {
                    crate::script::compile(crate::script::Origin::File(path), hook, source)
                }
                None => crate::script::compile_file(&path, hook),
            }
        } else if inline {
            let at = Located::at(self.file, self.text, v.span(), "");
            crate::script::compile(
                crate::script::Origin::Inline {
                    file: self.file.to_path_buf(),
                    line: at.line,
                    column: at.column,
                },
                hook,
                &text,
            )
        } else {
            self.error(v.span(), format!("`{text}` is not a `.rhai` file"));
            return None;
        };
        match result {
            Ok(s) => Some(ScriptRef(s)),
            Err(e) => {
                self.errors.push(script_located(&e));
                None
            }
        }
    }

    fn step(
        &mut self,
        t: &Table<'_>,
        span: Range<usize>,
        catalog: &Catalog,
        wf_dir: &Path,
        declared: &BTreeSet<String>,
    ) -> Option<(Step, Range<usize>, Vec<Range<usize>>)> {
        self.unknown_keys(t, STEP_KEYS, "a step");
        let before = self.errors.len();
        let (id, id_span) = match t.get("id") {
            None => {
                self.error(span.start..span.start, "step without an `id`");
                (String::new(), span.clone())
            }
            Some(v) => {
                let id = self.string(v, "`id`").unwrap_or_default();
                if !id.is_empty() && !is_identifier(&id) {
                    self.error(
                        v.span(),
                        format!("step id `{id}` must be letters, digits, `-` or `_`"),
                    );
                }
                (id, v.span())
            }
        };
        let what = format!("step `{id}`");
        let action = match (t.get("uses"), t.get("kind")) {
            (Some(_), Some(k)) => {
                self.error(k.span(), format!("{what} has both `uses` and `kind`; a step is either a plugin or a built-in"));
                None
            }
            (None, None) => {
                self.error(id_span.clone(), format!("{what} needs `uses = \"<plugin>\"` or `kind = \"split|evaluate|gate|rules|register|process\"`"));
                None
            }
            (Some(u), None) => self.string(u, "`uses`").and_then(|p| match catalog.get(&p) {
                Some(m) => Some(Action::Plugin { id: p, kind: m.kind }),
                None => {
                    self.error(
                        u.span(),
                        format!(
                            "unknown plugin `{p}` in {what}; installed: {}",
                            catalog.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    );
                    None
                }
            }),
            (None, Some(k)) => self.string(k, "`kind`").and_then(|s| match Builtin::parse(&s) {
                Some(b) => Some(Action::Builtin(b)),
                None => {
                    self.error(k.span(), format!("unknown step kind `{s}` in {what}; expected split, evaluate, gate, rules, register or process"));
                    None
                }
            }),
        };
        let mut needs = Vec::new();
        let mut need_spans = Vec::new();
        if let Some(n) = t.get("needs") {
            match n.get_ref() {
                DeValue::Array(a) => {
                    for x in a.iter() {
                        if let Some(s) = self.string(x, "each entry of `needs`") {
                            needs.push(s);
                            need_spans.push(x.span());
                        }
                    }
                }
                DeValue::String(s) => {
                    needs.push(s.to_string());
                    need_spans.push(n.span());
                }
                other => self.error(
                    n.span(),
                    format!(
                        "`needs` must be an array of step ids, found {}",
                        kind_of(other)
                    ),
                ),
            }
        }
        for (n, span) in needs.iter().zip(&need_spans) {
            if !declared.contains(n) {
                self.error(
                    span.clone(),
                    format!("{what} needs `{n}`, which is not a step of this workflow"),
                );
            } else if *n == id {
                self.error(span.clone(), format!("{what} needs itself"));
            }
        }
        let timeout = t.get("timeout").and_then(|v| {
            let s = self.string(v, "`timeout`")?;
            match units::parse_duration(&s) {
                Ok(d) if d > Duration::ZERO => Some(d),
                Ok(_) => {
                    self.error(v.span(), "`timeout` must be longer than zero");
                    None
                }
                Err(e) => {
                    self.error(v.span(), e);
                    None
                }
            }
        });
        let retries = match t.get("retries") {
            None => 0,
            Some(v) => match v.get_ref() {
                DeValue::Integer(i) => match i.as_str().parse::<u32>() {
                    Ok(n) if n <= 10 => n,
                    _ => {
                        self.error(v.span(), "`retries` must be between 0 and 10");
                        0
                    }
                },
                other => {
                    self.error(
                        v.span(),
                        format!("`retries` must be an integer, found {}", kind_of(other)),
                    );
                    0
                }
            },
        };
        let warm_start = t.get("warm_start").and_then(|v| {
            let s = self.string(v, "`warm_start`")?;
            if !matches!(
                action,
                Some(Action::Plugin {
                    kind: Kind::Trainer,
                    ..
                })
            ) {
                self.error(
                    v.span(),
                    format!("`warm_start` is for trainer steps; {what} is not one"),
                );
            }
            Some(s)
        });
        use crate::script::Hook;
        let is_gate = matches!(action, Some(Action::Builtin(Builtin::Gate)));
        let when = t.get("when").and_then(|v| {
            let hook = Hook::Verdict;
            self.script_ref(v, hook, wf_dir, true)
        });
        if is_gate && t.get("when").is_none() {
            self.error(
                id_span.clone(),
                format!(
                    "{what} is a gate: give it `when = \"scripts/<gate>.rhai\"` (or an expression)"
                ),
            );
        }
        let params = t
            .get("params")
            .and_then(|v| self.script_ref(v, Hook::Params, wf_dir, true));
        let mut with = Map::new();
        let mut read_paths = Vec::new();
        if let Some(w) = t.get("with") {
            match w.get_ref() {
                DeValue::Table(wt) => {
                    if let Some(action) = &action {
                        (with, read_paths) =
                            self.parameters(wt, w.span(), action, catalog, &what, wf_dir);
                    }
                }
                other => self.error(
                    w.span(),
                    format!("`with` must be a table, found {}", kind_of(other)),
                ),
            }
        } else if let Some(action) = &action {
            // Required parameters are checked even when `with` is absent.
            let empty = Table::new();
            (with, read_paths) =
                self.parameters(&empty, id_span.clone(), action, catalog, &what, wf_dir);
        }
        let rules = match (&action, t.get("with")) {
            (Some(Action::Builtin(Builtin::Rules)), w) => {
                let script = w.and_then(|w| match w.get_ref() {
                    DeValue::Table(wt) => wt.get("script"),
                    _ => None,
                });
                match script {
                    Some(v) => self.script_ref(v, Hook::Rules, wf_dir, false),
                    None => {
                        self.error(
                            id_span.clone(),
                            format!("{what} is a rules step: give it `with = {{ script = \"scripts/<rules>.rhai\" }}`"),
                        );
                        None
                    }
                }
            }
            _ => None,
        };
        if let Some(r) = &rules
            && !r.0.defines("filter", 1)
            && !r.0.defines("map", 1)
            && let Some(v) = t.get("with")
        {
            self.error(
                v.span(),
                format!(
                    "{}: a data rule defines `fn filter(example)`, `fn map(example)` or both",
                    r.0.origin
                ),
            );
        }
        let is_process = matches!(action, Some(Action::Builtin(Builtin::Process)));
        let process = self.process(t, &what, is_process, id_span.clone(), wf_dir);
        let (resources, resources_at) = self.resources(t, &what, is_process);
        let placement = self.placement(t);
        if self.errors.len() > before {
            return None;
        }
        Some((
            Step {
                when,
                params,
                rules,
                process,
                resources,
                placement,
                resources_at,
                id,
                action: action?,
                needs,
                with,
                read_paths,
                timeout,
                retries,
                warm_start,
            },
            id_span,
            need_spans,
        ))
    }

    /// `command`, `workdir` and `env`: only process steps have them, and
    /// they must have a command.
    fn process(
        &mut self,
        t: &Table<'_>,
        what: &str,
        is_process: bool,
        id_span: Range<usize>,
        wf_dir: &Path,
    ) -> Option<ProcessSpec> {
        if !is_process {
            for key in ["command", "workdir", "env"] {
                if let Some((k, _)) = t.get_key_value(key) {
                    self.error(
                        k.span(),
                        format!("`{key}` is for `kind = \"process\"` steps; {what} is not one"),
                    );
                }
            }
            return None;
        }
        let argv = match t.get("command") {
            None => {
                self.error(
                    id_span,
                    format!(
                        "{what} is a process step: give it `command = [\"program\", \"arg\", …]`"
                    ),
                );
                None
            }
            Some(v) => match v.get_ref() {
                DeValue::Array(a) if !a.is_empty() => {
                    let args: Vec<String> = a
                        .iter()
                        .filter_map(|x| self.string(x, "each part of `command`"))
                        .collect();
                    if args.first().is_some_and(String::is_empty) {
                        self.error(v.span(), "`command` starts with an empty program");
                    }
                    Some(args)
                }
                DeValue::Array(_) => {
                    self.error(v.span(), "`command` is empty");
                    None
                }
                other => {
                    self.error(
                        v.span(),
                        format!(
                            "`command` must be an array such as [\"python3\", \"train.py\"] (no shell), found {}",
                            kind_of(other)
                        ),
                    );
                    None
                }
            },
        };
        let workdir = match t.get("workdir") {
            None => wf_dir.to_path_buf(),
            Some(v) => {
                let w = PathBuf::from(self.string(v, "`workdir`").unwrap_or_default());
                let w = if w.is_absolute() { w } else { wf_dir.join(w) };
                if !w.is_dir() {
                    self.error(
                        v.span(),
                        format!("`workdir` {} is not a folder", w.display()),
                    );
                }
                w
            }
        };
        let mut env = BTreeMap::new();
        if let Some(v) = t.get("env") {
            match v.get_ref() {
                DeValue::Table(et) => {
                    for (k, val) in et.iter() {
                        let key = k.get_ref().to_string();
                        let ok = !key.is_empty()
                            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                            && !key.starts_with(|c: char| c.is_ascii_digit());
                        if !ok {
                            self.error(
                                k.span(),
                                format!("`{key}` is not an environment variable name"),
                            );
                        } else if key == "CUDA_VISIBLE_DEVICES" || key.starts_with("COACH_") {
                            self.error(
                                k.span(),
                                format!("`{key}` is set by Coach (to the step's allocation and run); leave it out"),
                            );
                        } else if let Some(x) = self.string(val, &format!("`env.{key}`")) {
                            env.insert(key, x);
                        }
                    }
                }
                other => self.error(
                    v.span(),
                    format!("`env` must be a table of strings, found {}", kind_of(other)),
                ),
            }
        }
        Some(ProcessSpec {
            argv: argv?,
            workdir,
            env,
        })
    }

    /// `resources = { gpus, gpu_memory, cpus, memory, exclusive }`.
    fn resources(
        &mut self,
        t: &Table<'_>,
        what: &str,
        is_process: bool,
    ) -> (Resources, Option<Located>) {
        let mut r = Resources {
            exclusive: true,
            ..Default::default()
        };
        let Some(v) = t.get("resources") else {
            return (r, None);
        };
        let at = Located::at(self.file, self.text, v.span(), "");
        let DeValue::Table(rt) = v.get_ref() else {
            self.error(
                v.span(),
                format!("`resources` must be a table such as {{ gpus = 1, gpu_memory = \"20GiB\" }}, found {}", kind_of(v.get_ref())),
            );
            return (r, None);
        };
        self.unknown_keys(
            rt,
            &["gpus", "gpu_memory", "cpus", "memory", "exclusive"],
            "`resources`",
        );
        let int = |c: &mut Self, key: &str, min: u32| -> Option<u32> {
            let v = rt.get(key)?;
            match v.get_ref() {
                DeValue::Integer(i) => match i.as_str().parse::<u32>() {
                    Ok(n) if n >= min => Some(n),
                    _ => {
                        c.error(
                            v.span(),
                            format!("`resources.{key}` must be a whole number of at least {min}"),
                        );
                        None
                    }
                },
                other => {
                    c.error(
                        v.span(),
                        format!(
                            "`resources.{key}` must be a whole number, found {}",
                            kind_of(other)
                        ),
                    );
                    None
                }
            }
        };
        let size = |c: &mut Self, key: &str| -> Option<u64> {
            let v = rt.get(key)?;
            let s = c.string(v, &format!("`resources.{key}`"))?;
            match units::parse_size(&s) {
                Ok(n) if n > 0 => Some(n),
                Ok(_) => {
                    c.error(
                        v.span(),
                        format!("`resources.{key}` must be more than zero"),
                    );
                    None
                }
                Err(e) => {
                    c.error(v.span(), e);
                    None
                }
            }
        };
        r.gpus = int(self, "gpus", 0).unwrap_or(0);
        r.cpus = int(self, "cpus", 1);
        r.gpu_memory = size(self, "gpu_memory").unwrap_or(0);
        r.memory = size(self, "memory");
        // Declaring GPU memory asks for a share of a GPU, unless told otherwise.
        r.exclusive = match rt.get("exclusive") {
            None => r.gpu_memory == 0,
            Some(v) => match v.get_ref() {
                DeValue::Boolean(b) => *b,
                other => {
                    self.error(
                        v.span(),
                        format!(
                            "`resources.exclusive` must be true or false, found {}",
                            kind_of(other)
                        ),
                    );
                    true
                }
            },
        };
        if r.gpus > 0 && !is_process {
            self.error(
                v.span(),
                format!("{what} asks for GPUs, but plugins run in the sandbox on the CPU; GPU work runs as a `kind = \"process\"` step"),
            );
        }
        if r.gpus == 0 && r.gpu_memory > 0 {
            self.error(v.span(), "`resources.gpu_memory` without `gpus`");
        }
        (r, Some(at))
    }

    /// `priority`, `queue`, `preemptible`, `max_duration`.
    fn placement(&mut self, t: &Table<'_>) -> Placement {
        use crate::scheduler::gpu::Priority;
        let mut p = Placement::default();
        if let Some(v) = t.get("priority")
            && let Some(s) = self.string(v, "`priority`")
        {
            p.priority = Priority::parse(&s).unwrap_or_else(|| {
                self.error(
                    v.span(),
                    format!("`priority` is `{s}`; expected low, normal, high or critical"),
                );
                Priority::Normal
            });
        }
        if let Some(v) = t.get("queue")
            && let Some(s) = self.string(v, "`queue`")
        {
            if is_identifier(&s) {
                p.queue = s;
            } else {
                self.error(
                    v.span(),
                    format!("queue `{s}` must be letters, digits, `-` or `_`"),
                );
            }
        }
        if let Some(v) = t.get("preemptible") {
            match v.get_ref() {
                DeValue::Boolean(b) => p.preemptible = *b,
                other => self.error(
                    v.span(),
                    format!(
                        "`preemptible` must be true or false, found {}",
                        kind_of(other)
                    ),
                ),
            }
        }
        if let Some(v) = t.get("max_duration")
            && let Some(s) = self.string(v, "`max_duration`")
        {
            match units::parse_duration(&s) {
                Ok(d) if d > Duration::ZERO => p.max_duration = Some(d),
                Ok(_) => self.error(v.span(), "`max_duration` must be longer than zero"),
                Err(e) => self.error(v.span(), e),
            }
        }
        p
    }

    /// Check `with` against the plugin's manifest (or the built-in kind's
    /// parameters) and convert it to JSON.
    fn parameters(
        &mut self,
        table: &Table<'_>,
        span: Range<usize>,
        action: &Action,
        catalog: &Catalog,
        what: &str,
        wf_dir: &Path,
    ) -> (Map<String, Value>, Vec<PathBuf>) {
        let specs: BTreeMap<String, Parameter> = match action {
            Action::Plugin { id, .. } => catalog[id].parameters.clone(),
            Action::Builtin(b) => b
                .parameters()
                .into_iter()
                .map(|(n, ty, one_of)| {
                    (
                        n.to_owned(),
                        Parameter {
                            ty,
                            required: false,
                            one_of: one_of.iter().map(|s| s.to_string()).collect(),
                            description: String::new(),
                        },
                    )
                })
                .collect(),
        };
        let owner = match action {
            Action::Plugin { id, .. } => format!("plugin `{id}`"),
            Action::Builtin(b) => format!("step kind `{}`", b.name()),
        };
        let mut out = Map::new();
        let mut paths = Vec::new();
        for (k, v) in table.iter() {
            let key = k.get_ref().to_string();
            let Some(spec) = specs.get(&key) else {
                let known = specs.keys().cloned().collect::<Vec<_>>().join(", ");
                self.error(
                    k.span(),
                    format!(
                        "unknown parameter `{key}` for {owner} in {what}; it takes: {}",
                        if known.is_empty() {
                            "none".into()
                        } else {
                            known
                        }
                    ),
                );
                continue;
            };
            let Some(mut json) = self.json_of(v) else {
                continue;
            };
            let type_ok = match (spec.ty, &json) {
                (ParamType::String | ParamType::Path, Value::String(_)) => true,
                (ParamType::Integer, Value::Number(n)) => n.is_i64(),
                (ParamType::Float, Value::Number(_)) => true,
                (ParamType::Boolean, Value::Bool(_)) => true,
                (ParamType::Array, Value::Array(_)) => true,
                (ParamType::Table, Value::Object(_)) => true,
                _ => false,
            };
            if !type_ok {
                self.error(
                    v.span(),
                    format!(
                        "parameter `{key}` of {what} must be {}, found {}",
                        spec.ty,
                        kind_of(v.get_ref())
                    ),
                );
                continue;
            }
            if let Value::String(s) = &json
                && !spec.one_of.is_empty()
                && !spec.one_of.contains(s)
            {
                self.error(
                    v.span(),
                    format!(
                        "parameter `{key}` of {what} is `{s}`; expected one of: {}",
                        spec.one_of.join(", ")
                    ),
                );
                continue;
            }
            if spec.ty == ParamType::Path
                && let Value::String(s) = &json
            {
                let expanded = match crate::config::expand_env(s) {
                    Ok(e) => e,
                    Err(e) => {
                        self.error(v.span(), format!("parameter `{key}` of {what}: {e}"));
                        continue;
                    }
                };
                let p = Path::new(&expanded);
                let full = if p.is_absolute() {
                    p.to_path_buf()
                } else {
                    wf_dir.join(p)
                };
                let full = full.canonicalize().unwrap_or(full);
                json = Value::String(full.to_string_lossy().into_owned());
                paths.push(full);
            }
            out.insert(key, json);
        }
        for (name, spec) in &specs {
            if spec.required && !out.contains_key(name) && !table.contains_key(name.as_str()) {
                self.error(
                    span.clone(),
                    format!("{what} is missing the required parameter `{name}` of {owner}"),
                );
            }
        }
        (out, paths)
    }

    fn json_of(&mut self, v: &Spanned<DeValue<'_>>) -> Option<Value> {
        Some(match v.get_ref() {
            DeValue::String(s) => Value::String(s.to_string()),
            DeValue::Integer(i) => {
                let digits = i.as_str().replace('_', "");
                let digits = digits
                    .trim_start_matches("0x")
                    .trim_start_matches("0o")
                    .trim_start_matches("0b");
                match i64::from_str_radix(digits, i.radix()) {
                    Ok(n) => Value::from(n),
                    Err(_) => {
                        self.error(v.span(), "integer out of range");
                        return None;
                    }
                }
            }
            DeValue::Float(f) => match f.as_str().replace('_', "").parse::<f64>() {
                Ok(x) if x.is_finite() => Value::from(x),
                _ => {
                    self.error(v.span(), "parameters must be finite numbers");
                    return None;
                }
            },
            DeValue::Boolean(b) => Value::Bool(*b),
            DeValue::Datetime(d) => Value::String(d.to_string()),
            DeValue::Array(a) => Value::Array(
                a.iter()
                    .map(|x| self.json_of(x))
                    .collect::<Option<Vec<_>>>()?,
            ),
            DeValue::Table(t) => {
                let mut m = Map::new();
                for (k, x) in t.iter() {
                    m.insert(k.get_ref().to_string(), self.json_of(x)?);
                }
                Value::Object(m)
            }
        })
    }

    /// Topological order (stable: file order among ready steps); reports
    /// unknown `needs` and cycles.
    fn order(
        &mut self,
        steps: Vec<Step>,
        spans: &BTreeMap<String, (Range<usize>, Vec<Range<usize>>)>,
        failed: &BTreeSet<String>,
    ) -> Option<Vec<Step>> {
        // Unknown needs were reported per step; steps with errors of their
        // own make cycle and input checks moot.
        if !failed.is_empty() {
            return None;
        }
        let mut done: BTreeSet<String> = BTreeSet::new();
        let mut ordered = Vec::new();
        let mut rest = steps;
        while !rest.is_empty() {
            let (ready, blocked): (Vec<Step>, Vec<Step>) = rest
                .into_iter()
                .partition(|s| s.needs.iter().all(|n| done.contains(n)));
            if ready.is_empty() {
                let cycle = find_cycle(&blocked);
                let first = &cycle[0];
                let (span, _) = &spans[first];
                self.error(
                    span.clone(),
                    format!("steps form a cycle: {}", cycle.join(" → ")),
                );
                return None;
            }
            for s in &ready {
                done.insert(s.id.clone());
            }
            ordered.extend(ready);
            rest = blocked;
        }
        Some(ordered)
    }

    fn check_inputs(
        &mut self,
        steps: &[Step],
        spans: &BTreeMap<String, (Range<usize>, Vec<Range<usize>>)>,
    ) {
        let wf = Workflow {
            file: PathBuf::new(),
            hash: String::new(),
            name: String::new(),
            description: String::new(),
            trigger: trigger::Trigger::default(),
            executor: None,
            steps: steps.to_vec(),
        };
        for s in steps {
            if let Some(need) = s.action.requires()
                && wf.nearest_of(&s.id, need).is_none()
            {
                let what = match need {
                    [Produces::Dataset] => "a dataset (a source or split step)",
                    [Produces::Model] => "a trained model (a trainer step)",
                    [Produces::Model, Produces::Artifact] => {
                        "a trained model (a trainer step, or a process step's artifacts)"
                    }
                    _ => "an input",
                };
                self.error(
                    spans[&s.id].0.clone(),
                    format!("step `{}` needs {what} among the steps it `needs`", s.id),
                );
            }
        }
    }
}

/// One cycle among steps that can never become ready.
fn find_cycle(blocked: &[Step]) -> Vec<String> {
    let by_id: BTreeMap<&str, &Step> = blocked.iter().map(|s| (s.id.as_str(), s)).collect();
    let mut path: Vec<String> = Vec::new();
    let mut current = blocked[0].id.clone();
    loop {
        if let Some(pos) = path.iter().position(|p| *p == current) {
            let mut cycle = path[pos..].to_vec();
            cycle.push(current);
            return cycle;
        }
        path.push(current.clone());
        let step = by_id[current.as_str()];
        // A blocked step has at least one blocked need.
        current = step
            .needs
            .iter()
            .find(|n| by_id.contains_key(n.as_str()))
            .cloned()
            .unwrap_or_else(|| step.id.clone());
    }
}

#[cfg(test)]
mod tests;

/// Check parameters a `params` script computed for a step of `action`:
/// known names, the right types, accepted values; no paths (those are
/// granted at validation, so they belong in `with`).
pub fn check_computed_params(
    action: &Action,
    catalog: &Catalog,
    params: &Map<String, Value>,
) -> Result<(), String> {
    let known: Vec<(String, ParamType, Vec<String>)> = match action {
        Action::Plugin { id, .. } => catalog
            .get(id)
            .map(|m| {
                m.parameters
                    .iter()
                    .map(|(k, p)| (k.clone(), p.ty, p.one_of.clone()))
                    .collect()
            })
            .unwrap_or_default(),
        Action::Builtin(b) => b
            .parameters()
            .into_iter()
            .map(|(k, t, o)| (k.to_owned(), t, o.iter().map(|s| s.to_string()).collect()))
            .collect(),
    };
    for (name, value) in params {
        let Some((_, ty, one_of)) = known.iter().find(|(k, _, _)| k == name) else {
            return Err(format!(
                "unknown parameter `{name}`; expected one of: {}",
                known
                    .iter()
                    .map(|k| k.0.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        };
        let ok = match ty {
            ParamType::String => value.is_string(),
            ParamType::Integer => value.is_i64() || value.is_u64(),
            ParamType::Float => value.is_number(),
            ParamType::Boolean => value.is_boolean(),
            ParamType::Array => value.is_array(),
            ParamType::Table => value.is_object(),
            ParamType::Path => {
                return Err(format!(
                    "parameter `{name}` is a path; paths go in `with`, where they are checked against the grants"
                ));
            }
        };
        if !ok {
            return Err(format!("parameter `{name}` must be {ty}, got {value}"));
        }
        if let Some(s) = value.as_str()
            && !one_of.is_empty()
            && !one_of.iter().any(|o| o == s)
        {
            return Err(format!(
                "parameter `{name}` is `{s}`; expected one of: {}",
                one_of.join(", ")
            ));
        }
    }
    Ok(())
}

/// A script error as a located workflow error, with the script's line and a
/// caret where the position is known.
fn script_located(e: &crate::script::ScriptError) -> Located {
    let snippet = (e.line > 0)
        .then(|| std::fs::read_to_string(&e.file).ok())
        .flatten()
        .and_then(|src| src.lines().nth(e.line - 1).map(str::to_owned))
        .map(|text| (text, e.column.max(1), 1));
    Located {
        file: e.file.clone(),
        line: e.line.max(1),
        column: e.column.max(1),
        message: e.message.clone(),
        snippet,
    }
}
