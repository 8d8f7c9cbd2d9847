//! A step's `with`: each parameter checked against the plugin's manifest
//! (or the built-in kind's schema) — known name, type, accepted values;
//! paths made absolute and remembered for the grants — and the same check
//! for parameters a `params` script computes at run time.

use super::{Checker, Table, kind_of};
use crate::core::params::{ParamType, Parameter};
use crate::workflow::{Action, Catalog};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

impl Checker<'_> {
    /// Check `with` against the plugin's manifest (or the built-in kind's
    /// parameters) and convert it to JSON.
    pub(super) fn parameters(
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
