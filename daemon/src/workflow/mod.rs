//! Workflow files, schema version 1: what a workflow is ([`Workflow`],
//! [`Step`]), how a file becomes one ([`check`]: every problem at once,
//! each located), the typed parameters of the built-in step kinds
//! ([`params`]), triggers ([`trigger`]), and the daemon's folders of them
//! ([`set`]).

pub mod check;
pub mod error;
pub mod experiment;
pub mod params;
pub mod set;
pub mod trigger;

use crate::core::ids::{StepId, WorkflowName};
use crate::core::params::Kind;
use error::{Errors, Located};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::core::params::Catalog;
pub use check::check_computed_params;

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
    /// Point an environment at the registered model, after its health
    /// check.
    Deploy,
    /// Clean the datasets of the steps it needs, merged: duplicates, near
    /// duplicates, conflicting labels, personal data.
    Curate,
    /// Score stored conversations with an analyzer plugin and keep the
    /// analyses.
    Analyze,
    /// The examples people approved in the review queue, as a dataset.
    Reviewed,
}

impl Builtin {
    pub fn parse(s: &str) -> Option<Builtin> {
        match s {
            "split" => Some(Builtin::Split),
            "evaluate" => Some(Builtin::Evaluate),
            "register" => Some(Builtin::Register),
            "gate" => Some(Builtin::Gate),
            "rules" => Some(Builtin::Rules),
            "process" => Some(Builtin::Process),
            "deploy" => Some(Builtin::Deploy),
            "curate" => Some(Builtin::Curate),
            "analyze" => Some(Builtin::Analyze),
            "reviewed" => Some(Builtin::Reviewed),
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
            Builtin::Deploy => "deploy",
            Builtin::Curate => "curate",
            Builtin::Analyze => "analyze",
            Builtin::Reviewed => "reviewed",
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
    /// An environment moved to a model version.
    Deployment,
    /// Conversations analysed.
    Analysis,
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
            Action::Builtin(Builtin::Deploy) => Produces::Deployment,
            Action::Builtin(Builtin::Curate) | Action::Builtin(Builtin::Reviewed) => {
                Produces::Dataset
            }
            Action::Builtin(Builtin::Analyze) => Produces::Analysis,
        }
    }

    /// What a step needs before it (any one of these).
    pub fn requires(&self) -> Option<&'static [Produces]> {
        match self {
            Action::Plugin {
                kind: Kind::Trainer,
                ..
            } => Some(&[Produces::Dataset]),
            Action::Plugin { .. }
            | Action::Builtin(Builtin::Process)
            | Action::Builtin(Builtin::Analyze)
            | Action::Builtin(Builtin::Reviewed) => None,
            Action::Builtin(Builtin::Split)
            | Action::Builtin(Builtin::Rules)
            | Action::Builtin(Builtin::Curate) => Some(&[Produces::Dataset]),
            Action::Builtin(Builtin::Evaluate) | Action::Builtin(Builtin::Gate) => {
                Some(&[Produces::Model])
            }
            // A process step's artifacts register as a model too.
            Action::Builtin(Builtin::Register) => Some(&[Produces::Model, Produces::Artifact]),
            Action::Builtin(Builtin::Deploy) => Some(&[Produces::Registration]),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub id: StepId,
    pub action: Action,
    pub needs: Vec<StepId>,
    /// Parameters as JSON; `path` parameters are absolute.
    pub with: Map<String, Value>,
    /// Files and folders named by `path` parameters (absolute).
    pub read_paths: Vec<PathBuf>,
    pub timeout: Option<Duration>,
    pub retries: u32,
    /// Trainer steps: continue from this registered model (an id, a name,
    /// `name:version` or `latest`) when it exists.
    pub warm_start: Option<String>,
    /// Source steps: open the plugin with the checkpoint of this step's
    /// last snapshot and add what it reads to that snapshot's records.
    pub incremental: bool,
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

impl Step {
    /// What the step runs: its plugin's id or its built-in kind.
    pub fn action_name(&self) -> &str {
        match &self.action {
            Action::Plugin { id, .. } => id,
            Action::Builtin(b) => b.name(),
        }
    }
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

impl Resources {
    /// The request as a document with fixed keys: part of a process
    /// model's config hash, so it must not change when a field of this
    /// struct is renamed.
    pub fn lineage_json(&self) -> Value {
        json!({
            "gpus": self.gpus,
            "gpu_memory": self.gpu_memory,
            "cpus": self.cpus,
            "memory": self.memory,
            "exclusive": self.exclusive,
        })
    }
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
    pub name: WorkflowName,
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
        check::compile(file, text, catalog, scripts)
    }

    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id == id)
    }

    /// `id` and every step it needs, directly or not, in dependency order.
    pub fn upstream_of(&self, id: &str) -> Workflow {
        let mut keep: BTreeSet<&str> = BTreeSet::new();
        let mut todo = vec![id];
        while let Some(s) = todo.pop() {
            if keep.insert(s)
                && let Some(step) = self.step(s)
            {
                todo.extend(step.needs.iter().map(|n| n.as_str()));
            }
        }
        Workflow {
            steps: self
                .steps
                .iter()
                .filter(|s| keep.contains(s.id.as_str()))
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
        nearest_in(&self.steps, id, what)
    }
}

/// The nearest step of `steps` before `id` (through `needs`, breadth
/// first) that produces any of `what`.
pub fn nearest_in<'s>(steps: &'s [Step], id: &str, what: &[Produces]) -> Option<&'s Step> {
    let find = |id: &str| steps.iter().find(|s| s.id == id);
    let mut queue: Vec<&str> = find(id)?.needs.iter().map(|n| n.as_str()).collect();
    let mut seen = BTreeSet::new();
    while !queue.is_empty() {
        let mut next = Vec::new();
        for s in queue {
            if !seen.insert(s) {
                continue;
            }
            let step = find(s)?;
            if what.contains(&step.action.produces()) {
                return Some(step);
            }
            next.extend(step.needs.iter().map(|n| n.as_str()));
        }
        queue = next;
    }
    None
}

#[cfg(test)]
mod tests;
