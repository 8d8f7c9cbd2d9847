//! One step by itself: its id, what it runs (`uses` a plugin or a built-in
//! `kind`), `needs`, timeout and retries, its scripts, its parameters
//! ([`with`](super::with): checked against the plugin's manifest, typed and
//! range-checked for a built-in kind), a process step's command, resources
//! and placement ([`process`](super::process)).

use super::{Checker, Table, kind_of};
use crate::config::units;
use crate::core::ids::StepId;
use crate::core::params::Kind;
use crate::workflow::params::BuiltinParams;
use crate::workflow::{Action, Builtin, Catalog, ScriptRef, Step};
use serde_json::{Map, Value};
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
    "incremental",
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
        let incremental = self.incremental(t, action.as_ref(), &what);
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
                incremental,
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
                Some(m) if m.problem.is_some() => {
                    self.error(
                        u.span(),
                        format!("{what}: {}", m.problem.as_deref().unwrap_or_default()),
                    );
                    None
                }
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

    /// `incremental = true`: a source step that resumes from its last
    /// checkpoint and adds what is new to its dataset.
    fn incremental(&mut self, t: &Table<'_>, action: Option<&Action>, what: &str) -> bool {
        let Some(v) = t.get("incremental") else {
            return false;
        };
        let DeValue::Boolean(b) = v.get_ref() else {
            self.error(
                v.span(),
                format!(
                    "`incremental` must be true or false, found {}",
                    super::kind_of(v.get_ref())
                ),
            );
            return false;
        };
        if *b
            && !matches!(
                action,
                Some(Action::Plugin {
                    kind: Kind::Source,
                    ..
                })
            )
        {
            self.error(
                v.span(),
                format!("`incremental` is for source steps; {what} is not one"),
            );
        }
        *b
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
}
