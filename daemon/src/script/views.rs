//! Read-only views of models for scripts: `candidate` and `production` are
//! `Model` values, not copies of maps. Building one costs a few
//! microseconds however many intents it has, and reading
//! `candidate.per_intent[intent].f1` copies nothing.

use super::convert::to_dynamic;
use rhai::{Array, Dynamic, Engine, Map};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// One intent's scores.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: i64,
}

/// Scores by intent.
#[derive(Debug, Clone)]
pub struct PerIntent(Arc<BTreeMap<String, Scores>>);

#[derive(Debug)]
struct ModelData {
    id: Dynamic,
    version: Dynamic,
    plugin: Dynamic,
    created_at: Dynamic,
    lineage: Dynamic,
    metrics: Map,
    per_intent: PerIntent,
    intents: Array,
}

/// A model as a script sees it.
#[derive(Debug, Clone)]
pub struct ModelView(Arc<ModelData>);

fn num(v: &Value, k: &str) -> f64 {
    v.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN)
}

impl ModelView {
    /// A view of a model's JSON (`metrics`, `per_intent`, `intents`, …);
    /// `()` for `null`.
    pub fn from_json(v: &Value) -> Dynamic {
        let Value::Object(o) = v else {
            return to_dynamic(v);
        };
        let field = |k: &str| o.get(k).map(to_dynamic).unwrap_or(Dynamic::UNIT);
        let per_intent = o
            .get("per_intent")
            .and_then(Value::as_object)
            .map(|p| {
                p.iter()
                    .map(|(intent, s)| {
                        (
                            intent.clone(),
                            Scores {
                                precision: num(s, "precision"),
                                recall: num(s, "recall"),
                                f1: num(s, "f1"),
                                support: s.get("support").and_then(Value::as_i64).unwrap_or(0),
                            },
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let metrics = match o.get("metrics").map(to_dynamic) {
            Some(d) => d.try_cast::<Map>().unwrap_or_default(),
            None => Map::new(),
        };
        let intents = match o.get("intents").map(to_dynamic) {
            Some(d) => d.try_cast::<Array>().unwrap_or_default(),
            None => Array::new(),
        };
        Dynamic::from(ModelView(Arc::new(ModelData {
            id: field("id"),
            version: field("version"),
            // Registered models name it under `trainer`.
            plugin: o
                .get("plugin")
                .or_else(|| o.get("trainer").and_then(|t| t.get("plugin")))
                .map(to_dynamic)
                .unwrap_or(Dynamic::UNIT),
            created_at: field("created_at"),
            lineage: field("lineage"),
            metrics,
            per_intent: PerIntent(Arc::new(per_intent)),
            intents,
        })))
    }
}

/// Register the view types, their properties and functions.
pub fn register(e: &mut Engine) {
    e.register_type_with_name::<ModelView>("Model")
        .register_get("id", |m: &mut ModelView| m.0.id.clone())
        .register_get("version", |m: &mut ModelView| m.0.version.clone())
        .register_get("plugin", |m: &mut ModelView| m.0.plugin.clone())
        .register_get("created_at", |m: &mut ModelView| m.0.created_at.clone())
        .register_get("lineage", |m: &mut ModelView| m.0.lineage.clone())
        .register_get("metrics", |m: &mut ModelView| m.0.metrics.clone())
        .register_get("per_intent", |m: &mut ModelView| m.0.per_intent.clone())
        .register_get("intents", |m: &mut ModelView| m.0.intents.clone());
    e.register_type_with_name::<PerIntent>("PerIntent")
        .register_indexer_get(|p: &mut PerIntent, intent: &str| -> Dynamic {
            p.0.get(intent)
                .map(|s| Dynamic::from(*s))
                .unwrap_or(Dynamic::UNIT)
        })
        .register_fn("keys", |p: &mut PerIntent| -> Array {
            p.0.keys().map(|k| Dynamic::from(k.clone())).collect()
        })
        .register_fn("values", |p: &mut PerIntent| -> Array {
            p.0.values().map(|s| Dynamic::from(*s)).collect()
        })
        .register_fn("contains", |p: &mut PerIntent, intent: &str| {
            p.0.contains_key(intent)
        })
        .register_fn("len", |p: &mut PerIntent| p.0.len() as i64)
        .register_fn(
            "largest_drop",
            |before: &mut PerIntent,
             after: PerIntent,
             metric: &str|
             -> Result<Dynamic, Box<rhai::EvalAltResult>> {
                let get = |s: &Scores| -> Result<f64, Box<rhai::EvalAltResult>> {
                    match metric {
                        "f1" => Ok(s.f1),
                        "precision" => Ok(s.precision),
                        "recall" => Ok(s.recall),
                        other => Err(format!(
                            "largest_drop: no metric `{other}`; use f1, precision or recall"
                        )
                        .into()),
                    }
                };
                let mut worst: Option<(&String, f64, f64)> = None;
                for (intent, s) in before.0.iter() {
                    let was = get(s)?;
                    // An intent the new model lost counts as a drop to zero.
                    let now = match after.0.get(intent) {
                        Some(a) => get(a)?,
                        None => 0.0,
                    };
                    if worst.is_none_or(|(_, w, n)| was - now > w - n) {
                        worst = Some((intent, was, now));
                    }
                }
                Ok(match worst {
                    None => Dynamic::UNIT,
                    Some((intent, was, now)) => {
                        let mut m = Map::new();
                        m.insert("intent".into(), intent.clone().into());
                        m.insert("before".into(), was.into());
                        m.insert("after".into(), now.into());
                        m.insert("drop".into(), (was - now).into());
                        m.into()
                    }
                })
            },
        );
    e.register_type_with_name::<Scores>("Scores")
        .register_get("precision", |s: &mut Scores| s.precision)
        .register_get("recall", |s: &mut Scores| s.recall)
        .register_get("f1", |s: &mut Scores| s.f1)
        .register_get("support", |s: &mut Scores| s.support);
}
