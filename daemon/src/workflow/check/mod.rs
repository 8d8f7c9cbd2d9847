//! From a workflow file's text to a [`Workflow`], reporting *every*
//! problem at once, each at its file, line and column with a caret.
//!
//! The file is read into a spanned TOML tree and checked by hand rather
//! than by `serde`, one pass per concern, each pass running whatever the
//! others found:
//!
//! 1. syntax (a broken document stops here: what follows would mislead);
//! 2. the workflow's own keys: `version`, `name`, `executor`, the trigger
//!    ([`trigger`](self::trigger));
//! 3. each step by itself: its action, parameters (typed and range-checked
//!    for built-in kinds), scripts, command, resources ([`step`]);
//! 4. the graph of steps: duplicate ids, unknown `needs`, cycles — over
//!    every declared step, even one with errors of its own ([`graph`]);
//! 5. inputs: each step has what it consumes among the steps it needs
//!    (only when every step compiled: otherwise a broken producer would
//!    show up here again).

mod graph;
mod process;
mod step;
mod trigger;
mod with;

use super::error::{Errors, Located};
use super::{Catalog, Executor, ScriptRef, Workflow, scripts_of, version_hash};
use crate::core::ids::WorkflowName;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

pub use with::check_computed_params;

const TOP_KEYS: &[&str] = &[
    "version",
    "name",
    "description",
    "executor",
    "trigger",
    "step",
];

/// Compile workflow `text` (from `file`); script files are read from
/// `scripts` when given (a stored version), else from the disk.
pub fn compile(
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
        id_spans: BTreeMap::new(),
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

struct Checker<'a> {
    file: &'a Path,
    text: &'a str,
    scripts: Option<&'a BTreeMap<PathBuf, String>>,
    errors: Vec<Located>,
    /// Where each step's id is written.
    id_spans: BTreeMap<String, Range<usize>>,
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
            // No program argument, path, variable or name can hold one:
            // refused here rather than when the step starts.
            DeValue::String(s) if s.contains('\0') => {
                self.error(
                    v.span(),
                    format!("{what} contains a NUL character (\\u0000)"),
                );
                None
            }
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
        self.version(&doc);
        let name = self.name(&doc, doc_span.start);
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
            None => super::trigger::Trigger::default(),
        };
        let executor = self.executor(&doc);

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
        let declared: Vec<step::Declared> = items
            .iter()
            .map(|item| self.step(item, catalog, &wf_dir))
            .collect();
        let ordered = self.graph(declared)?;
        self.check_inputs(&ordered);
        let mut all_scripts = scripts_of(&ordered);
        if let Some(r) = &trigger.when
            && let crate::script::Origin::File(f) = &r.0.origin
        {
            all_scripts.insert(f.clone(), r.0.source.clone());
        }
        Some(Workflow {
            file: self.file.to_path_buf(),
            hash: version_hash(self.text, &all_scripts),
            name: name?,
            description,
            trigger,
            executor,
            steps: ordered,
        })
    }

    fn version(&mut self, doc: &Table<'_>) {
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
    }

    fn name(&mut self, doc: &Table<'_>, doc_start: usize) -> Option<WorkflowName> {
        match doc.get("name") {
            None => {
                self.error(doc_start..doc_start, "missing `name`");
                None
            }
            Some(v) => {
                let n = self.string(v, "`name`")?;
                match WorkflowName::try_from(n.as_str()) {
                    Ok(name) => Some(name),
                    Err(_) => {
                        self.error(
                            v.span(),
                            format!("name `{n}` must be letters, digits, `-` or `_`"),
                        );
                        None
                    }
                }
            }
        }
    }

    fn executor(&mut self, doc: &Table<'_>) -> Option<Executor> {
        let v = doc.get("executor")?;
        match self.string(v, "`executor`")?.as_str() {
            "local" => Some(Executor::Local),
            "slurm" => Some(Executor::Slurm),
            other => {
                self.error(
                    v.span(),
                    format!("`executor` is `{other}`; expected `local` or `slurm`"),
                );
                None
            }
        }
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
