//! The places scripts run, each with its inputs and the return type it
//! must have (checked):
//!
//! - **verdicts** — `gate` steps and any step's `when`: `true`/`false`, or
//!   `#{ pass: bool, reason: "…" }`;
//! - **data rules** — a `rules` step's script defines `filter(example)`
//!   (keep it?) and/or `map(example)` (the example, changed);
//! - **parameter rules** — a step's `params` script returns a map of step
//!   parameters computed from the data.

use super::convert::to_dynamic;
use super::{Script, ScriptError, call, eval, evaluation};
use crate::core::example::{EntitySpan, Example, Split};
use rhai::{Dynamic, Map, Scope};
use serde_json::Value;

pub use crate::core::output::{RuleStats, Verdict};

fn whole(script: &Script, message: String) -> ScriptError {
    script.origin.error(rhai::Position::NONE, message)
}

fn wrong_type(script: &Script, what: &str, got: &Dynamic) -> ScriptError {
    whole(
        script,
        format!("{what}, but it returned {}", got.type_name()),
    )
}

/// Variables that hold a model: given to scripts as read-only `Model`
/// views.
const MODELS: &[&str] = &["candidate", "production"];

/// A scope holding `inputs` (JSON values become Rhai values; models become
/// views).
pub fn scope_of(inputs: &[(&str, &Value)]) -> Scope<'static> {
    let mut scope = Scope::new();
    for (name, v) in inputs {
        let d = if MODELS.contains(name) {
            super::views::ModelView::from_json(v)
        } else {
            to_dynamic(v)
        };
        // Variables, not constants: Rhai reads a constant's properties
        // from a copy, which for a model with hundreds of intents costs
        // milliseconds per access.
        scope.push_dynamic(name.to_string(), d);
    }
    scope
}

/// Evaluate a gate or `when` script.
pub fn verdict(
    script: &Script,
    run: &str,
    inputs: &[(&str, &Value)],
) -> Result<Verdict, ScriptError> {
    let mut scope = scope_of(inputs);
    let out = eval(script, run, &mut scope)?;
    const EXPECTED: &str =
        "a gate or `when` must return true/false or #{ pass: bool, reason: \"…\" }";
    if let Ok(pass) = out.as_bool() {
        return Ok(Verdict { pass, reason: None });
    }
    let Some(map) = out.clone().try_cast::<Map>() else {
        return Err(wrong_type(script, EXPECTED, &out));
    };
    let pass = map
        .get("pass")
        .and_then(|p| p.as_bool().ok())
        .ok_or_else(|| wrong_type(script, EXPECTED, &out))?;
    let reason = match map.get("reason") {
        None => None,
        Some(r) if r.is_unit() => None,
        Some(r) => Some(
            r.clone()
                .into_string()
                .map_err(|t| whole(script, format!("`reason` must be a string, not {t}")))?,
        ),
    };
    Ok(Verdict { pass, reason })
}

fn example_map(e: &Example) -> Map {
    let mut m = Map::new();
    m.insert("text".into(), e.text.clone().into());
    m.insert("intent".into(), e.intent.clone().into());
    m.insert("split".into(), e.split.as_str().into());
    let entities: rhai::Array = e
        .entities
        .iter()
        .map(|s| {
            let mut span = Map::new();
            span.insert("entity".into(), s.entity.clone().into());
            span.insert("start".into(), i64::from(s.start).into());
            span.insert("end".into(), i64::from(s.end).into());
            span.insert("value".into(), s.value.clone().into());
            Dynamic::from_map(span)
        })
        .collect();
    m.insert("entities".into(), entities.into());
    m
}

fn example_from(script: &Script, i: usize, d: Dynamic) -> Result<Example, ScriptError> {
    let bad = |what: String| whole(script, format!("`map` on example {i}: {what}"));
    let ty = d.type_name();
    let m = d
        .try_cast::<Map>()
        .ok_or_else(|| bad(format!("must return the example (a map), returned {ty}")))?;
    let text = |k: &str| -> Result<String, ScriptError> {
        m.get(k)
            .ok_or_else(|| bad(format!("the returned example has no `{k}`")))?
            .clone()
            .into_string()
            .map_err(|t| bad(format!("`{k}` must be a string, not {t}")))
    };
    let split = text("split")?;
    let split: Split = split.parse().map_err(|_| {
        bad(format!(
            "`split` is `{split}`; expected train, validation, test or unspecified"
        ))
    })?;
    let entities: Vec<EntitySpan> = match m.get("entities") {
        None => Vec::new(),
        Some(e) => rhai::serde::from_dynamic(e).map_err(|e| {
            bad(format!(
                "`entities` must be a list of #{{ entity, start, end, value }}: {e}"
            ))
        })?,
    };
    Ok(Example {
        text: text("text")?,
        intent: text("intent")?,
        entities,
        split,
    })
}

/// Apply a data rule (`filter` and/or `map`) to every example.
pub fn apply_rules(
    script: &Script,
    run: &str,
    examples: Vec<Example>,
) -> Result<(Vec<Example>, RuleStats), ScriptError> {
    let (has_filter, has_map) = (script.defines("filter", 1), script.defines("map", 1));
    if !has_filter && !has_map {
        return Err(whole(
            script,
            "a data rule defines `fn filter(example)`, `fn map(example)` or both".into(),
        ));
    }
    let mut scope = Scope::new();
    let mut stats = RuleStats::default();
    let mut out = Vec::with_capacity(examples.len());
    for (i, e) in examples.into_iter().enumerate() {
        let m = example_map(&e);
        if has_filter {
            let keep = evaluation(run, || call(script, &mut scope, "filter", (m.clone(),)))?;
            let keep = keep.as_bool().map_err(|t| {
                whole(
                    script,
                    format!("`filter` on example {i} must return true or false, returned {t}"),
                )
            })?;
            if !keep {
                stats.dropped += 1;
                continue;
            }
        }
        let e2 = if has_map {
            let d = evaluation(run, || call(script, &mut scope, "map", (m,)))?;
            example_from(script, i, d)?
        } else {
            e.clone()
        };
        if e2 != e {
            stats.changed += 1;
        }
        stats.kept += 1;
        out.push(e2);
    }
    Ok((out, stats))
}

/// Evaluate a parameter rule: a map of step parameters.
pub fn params(
    script: &Script,
    run: &str,
    inputs: &[(&str, &Value)],
) -> Result<serde_json::Map<String, Value>, ScriptError> {
    let mut scope = scope_of(inputs);
    let out = eval(script, run, &mut scope)?;
    if out.clone().try_cast::<Map>().is_none() {
        return Err(wrong_type(
            script,
            "a `params` script must return a map of step parameters, e.g. #{ epochs: 20 }",
            &out,
        ));
    }
    match rhai::serde::from_dynamic::<Value>(&out) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) | Err(_) => Err(wrong_type(
            script,
            "a `params` script must return a map of plain values",
            &out,
        )),
    }
}

/// The decision script Coach ships (see `docs/experiments.md`).
pub const DEFAULT_DECIDE: &str = include_str!("decide.rhai");

/// The shipped decision script, compiled.
pub fn default_decide() -> std::sync::Arc<Script> {
    super::compile(
        super::Origin::File("(built-in) decide.rhai".into()),
        super::Hook::Decide,
        DEFAULT_DECIDE,
    )
    .expect("the shipped decision script compiles")
}

/// Call a decision script's `decide(results)`.
pub fn decide(
    script: &Script,
    experiment: &str,
    results: &Value,
) -> Result<crate::experiment::results::Decision, ScriptError> {
    use crate::experiment::results::Decision;
    const EXPECTED: &str =
        "`decide` must return promote(arm, reason), rollback(reason) or keep_running(reason)";
    let mut scope = Scope::new();
    let out = evaluation(experiment, || {
        call(script, &mut scope, "decide", (to_dynamic(results),))
    })?;
    let Some(map) = out.clone().try_cast::<Map>() else {
        return Err(wrong_type(script, EXPECTED, &out));
    };
    let text = |k: &str| -> Option<String> {
        map.get(k)
            .filter(|v| !v.is_unit())
            .and_then(|v| v.clone().into_string().ok())
    };
    let reason = text("reason").unwrap_or_default();
    match text("decision").as_deref() {
        Some("promote") => {
            let arm = text("arm").ok_or_else(|| whole(script, "promote needs an arm".into()))?;
            Ok(Decision::Promote { arm, reason })
        }
        Some("rollback") => Ok(Decision::Rollback { reason }),
        Some("continue") => Ok(Decision::Continue { reason }),
        _ => Err(wrong_type(script, EXPECTED, &out)),
    }
}
