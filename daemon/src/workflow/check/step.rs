//! One step by itself: its id, what it runs (`uses` a plugin or a built-in
//! `kind`), `needs`, timeout and retries, its scripts, its parameters
//! (checked against the plugin's manifest, or typed and range-checked for
//! a built-in kind), a process step's command, resources and placement.

use super::{Checker, Table, kind_of};
use crate::config::units;
use crate::core::ids::StepId;
use crate::core::params::{Kind, ParamType, Parameter};
use crate::workflow::error::Located;
use crate::workflow::params::BuiltinParams;
use crate::workflow::{
    Action, Builtin, Catalog, Placement, ProcessSpec, Resources, ScriptRef, Step,
};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;
use toml::de::DeValue;

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

/// A step as declared: enough of it for the graph checks even when the
/// step itself has errors.
pub(super) struct Declared {
    /// `None`: no usable id (missing, or not a name).
    pub id: Option<StepId>,
    pub id_span: Range<usize>,
    /// Each `needs` entry with where it is written.
    pub needs: Vec<(String, Range<usize>)>,
    /// The step, when it has no errors of its own.
    pub step: Option<Step>,
}

impl Checker<'_> {
    pub(super) fn step(
        &mut self,
        item: &Spanned<DeValue<'_>>,
        catalog: &Catalog,
        wf_dir: &Path,
    ) -> Declared {
        let DeValue::Table(t) = item.get_ref() else {
            self.error(item.span(), "each step must be a table");
            return Declared {
                id: None,
                id_span: item.span(),
                needs: Vec::new(),
                step: None,
            };
        };
        self.unknown_keys(t, STEP_KEYS, "a step");
        let before = self.errors.len();
        let (id, id_span) = self.step_id(t, item.span());
        let what = format!("step `{}`", id.as_deref().unwrap_or(""));
        let action = self.action(t, &what, id_span.clone(), catalog);
        let needs = self.needs(t);
        let timeout = self.timeout(t);
        let retries = self.retries(t);
        let warm_start = self.warm_start(t, action.as_ref(), &what);
        let (when, params) = self.step_scripts(t, action.as_ref(), &what, id_span.clone(), wf_dir);
        let (with, read_paths) = match &action {
            Some(action) => self.with(t, action, catalog, &what, id_span.clone(), wf_dir),
            None => (Map::new(), Vec::new()),
        };
        let rules = self.rules(t, action.as_ref(), &what, id_span.clone(), wf_dir);
        let is_process = matches!(action, Some(Action::Builtin(Builtin::Process)));
        let process = self.process(t, &what, is_process, id_span.clone(), wf_dir);
        let (resources, resources_at) = self.resources(t, &what, is_process);
        let placement = self.placement(t);
        let step = match (&id, action) {
            (Some(id), Some(action)) if self.errors.len() == before => Some(Step {
                id: id.clone(),
                action,
                needs: needs
                    .iter()
                    .filter_map(|(n, _)| StepId::try_from(n.as_str()).ok())
                    .collect(),
                with,
                read_paths,
                timeout,
                retries,
                warm_start,
                when,
                params,
                rules,
                process,
                resources,
                placement,
                resources_at,
            }),
            _ => None,
        };
        Declared {
            id,
            id_span,
            needs,
            step,
        }
    }

    fn step_id(&mut self, t: &Table<'_>, span: Range<usize>) -> (Option<StepId>, Range<usize>) {
        match t.get("id") {
            None => {
                self.error(span.start..span.start, "step without an `id`");
                (None, span)
            }
            Some(v) => {
                let id = self.string(v, "`id`");
                let checked = id.as_deref().and_then(|s| StepId::try_from(s).ok());
                if let Some(id) = id.filter(|i| !i.is_empty())
                    && checked.is_none()
                {
                    self.error(
                        v.span(),
                        format!("step id `{id}` must be letters, digits, `-` or `_`"),
                    );
                }
                (checked, v.span())
            }
        }
    }

    /// `uses = "<plugin>"` or `kind = "<built-in>"`, one of them.
    fn action(
        &mut self,
        t: &Table<'_>,
        what: &str,
        id_span: Range<usize>,
        catalog: &Catalog,
    ) -> Option<Action> {
        match (t.get("uses"), t.get("kind")) {
            (Some(_), Some(k)) => {
                self.error(k.span(), format!("{what} has both `uses` and `kind`; a step is either a plugin or a built-in"));
                None
            }
            (None, None) => {
                self.error(id_span, format!("{what} needs `uses = \"<plugin>\"` or `kind = \"split|evaluate|gate|rules|register|process\"`"));
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
        }
    }

    /// `needs`: step ids, each with where it is written (checked against
    /// the workflow's steps in the graph pass).
    fn needs(&mut self, t: &Table<'_>) -> Vec<(String, Range<usize>)> {
        let Some(n) = t.get("needs") else {
            return Vec::new();
        };
        match n.get_ref() {
            DeValue::Array(a) => a
                .iter()
                .filter_map(|x| Some((self.string(x, "each entry of `needs`")?, x.span())))
                .collect(),
            DeValue::String(s) => vec![(s.to_string(), n.span())],
            other => {
                self.error(
                    n.span(),
                    format!(
                        "`needs` must be an array of step ids, found {}",
                        kind_of(other)
                    ),
                );
                Vec::new()
            }
        }
    }

    fn timeout(&mut self, t: &Table<'_>) -> Option<Duration> {
        let v = t.get("timeout")?;
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
    }

    fn retries(&mut self, t: &Table<'_>) -> u32 {
        let Some(v) = t.get("retries") else {
            return 0;
        };
        match v.get_ref() {
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
        }
    }

    fn warm_start(&mut self, t: &Table<'_>, action: Option<&Action>, what: &str) -> Option<String> {
        let v = t.get("warm_start")?;
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
        if let Err(e) = s.parse::<crate::core::ids::ModelRef>() {
            self.error(v.span(), format!("`warm_start`: {e}"));
        }
        Some(s)
    }

    /// `when` (a gate's verdict, or any step's condition) and `params`.
    fn step_scripts(
        &mut self,
        t: &Table<'_>,
        action: Option<&Action>,
        what: &str,
        id_span: Range<usize>,
        wf_dir: &Path,
    ) -> (Option<ScriptRef>, Option<ScriptRef>) {
        use crate::script::Hook;
        let when = t
            .get("when")
            .and_then(|v| self.script_ref(v, Hook::Verdict, wf_dir, true));
        if matches!(action, Some(Action::Builtin(Builtin::Gate))) && t.get("when").is_none() {
            self.error(
                id_span,
                format!(
                    "{what} is a gate: give it `when = \"scripts/<gate>.rhai\"` (or an expression)"
                ),
            );
        }
        let params = t
            .get("params")
            .and_then(|v| self.script_ref(v, Hook::Params, wf_dir, true));
        (when, params)
    }

    /// `with`: checked against the plugin's parameters or the built-in
    /// kind's, as JSON; the paths it names (absolute).
    fn with(
        &mut self,
        t: &Table<'_>,
        action: &Action,
        catalog: &Catalog,
        what: &str,
        id_span: Range<usize>,
        wf_dir: &Path,
    ) -> (Map<String, Value>, Vec<PathBuf>) {
        let (table, span) = match t.get("with") {
            Some(w) => match w.get_ref() {
                DeValue::Table(wt) => (Some(wt), w.span()),
                other => {
                    self.error(
                        w.span(),
                        format!("`with` must be a table, found {}", kind_of(other)),
                    );
                    return (Map::new(), Vec::new());
                }
            },
            // Required parameters are checked even when `with` is absent.
            None => (None, id_span),
        };
        let empty = Table::new();
        let table = table.unwrap_or(&empty);
        let before = self.errors.len();
        let (with, paths) = self.parameters(table, span.clone(), action, catalog, what, wf_dir);
        // Ranges, once names and types are right.
        if let Action::Builtin(kind) = action
            && self.errors.len() == before
            && let Err(problems) = BuiltinParams::read(*kind, &with)
        {
            for p in problems {
                let at = p
                    .key
                    .and_then(|k| table.get(k))
                    .map(|v| v.span())
                    .unwrap_or_else(|| span.clone());
                self.error(at, format!("{what}: {}", p.message));
            }
        }
        (with, paths)
    }

    /// A rules step's `with.script`: a compiled data rule.
    fn rules(
        &mut self,
        t: &Table<'_>,
        action: Option<&Action>,
        what: &str,
        id_span: Range<usize>,
        wf_dir: &Path,
    ) -> Option<ScriptRef> {
        if action != Some(&Action::Builtin(Builtin::Rules)) {
            return None;
        }
        let w = t.get("with");
        let script = w.and_then(|w| match w.get_ref() {
            DeValue::Table(wt) => wt.get("script"),
            _ => None,
        });
        let Some(v) = script else {
            self.error(
                id_span,
                format!("{what} is a rules step: give it `with = {{ script = \"scripts/<rules>.rhai\" }}`"),
            );
            return None;
        };
        let rules = self.script_ref(v, crate::script::Hook::Rules, wf_dir, false)?;
        if !rules.0.defines("filter", 1)
            && !rules.0.defines("map", 1)
            && let Some(w) = w
        {
            self.error(
                w.span(),
                format!(
                    "{}: a data rule defines `fn filter(example)`, `fn map(example)` or both",
                    rules.0.origin
                ),
            );
        }
        Some(rules)
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
            if crate::core::ids::is_identifier(&s) {
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
            Action::Plugin { id, .. } => catalog
                .get(id)
                .map(|p| p.parameters.clone())
                .unwrap_or_default(),
            Action::Builtin(b) => b.parameters(),
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
            if !spec.ty.admits(&json) {
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
}

/// Check parameters a `params` script computed for a step of `action`:
/// known names, the right types, accepted values; no paths (those are
/// granted at validation, so they belong in `with`). A built-in kind's
/// ranges are checked with the step's whole `with` when the step reads
/// its parameters.
pub fn check_computed_params(
    action: &Action,
    catalog: &Catalog,
    params: &Map<String, Value>,
) -> Result<(), String> {
    let known: BTreeMap<String, Parameter> = match action {
        Action::Plugin { id, .. } => catalog
            .get(id)
            .map(|p| p.parameters.clone())
            .unwrap_or_default(),
        Action::Builtin(b) => b.parameters(),
    };
    for (name, value) in params {
        let Some(p) = known.get(name) else {
            return Err(format!(
                "unknown parameter `{name}`; expected one of: {}",
                known.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        };
        if p.ty == ParamType::Path {
            return Err(format!(
                "parameter `{name}` is a path; paths go in `with`, where they are checked against the grants"
            ));
        }
        if !p.ty.admits(value) {
            return Err(format!("parameter `{name}` must be {}, got {value}", p.ty));
        }
        if let Some(s) = value.as_str()
            && !p.one_of.is_empty()
            && !p.one_of.iter().any(|o| o == s)
        {
            return Err(format!(
                "parameter `{name}` is `{s}`; expected one of: {}",
                p.one_of.join(", ")
            ));
        }
    }
    Ok(())
}
