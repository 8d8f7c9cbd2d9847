//! The parameters of the built-in step kinds, typed: what each kind takes
//! (the schema `coach validate` checks names and types against), its
//! defaults, and its ranges. The same [`BuiltinParams::read`] runs when a
//! workflow is validated and when a step runs (after a `params` script
//! has added its own), so a value that would fail a run is refused by
//! `coach validate` first.

use super::Builtin;
use crate::core::ids::{EnvironmentName, ModelName};
use crate::core::params::{ParamType, Parameter};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A parameter that is out of range, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamError {
    /// The parameter at fault (`None`: the combination).
    pub key: Option<&'static str>,
    pub message: String,
}

/// How a split step assigns splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitMode {
    /// Stratified by intent, seeded.
    Stratified,
    /// Keep the splits the data came with.
    Keep,
}

/// `kind = "split"`.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitParams {
    /// `None`: keep the data's own splits when it has any, else stratify.
    pub mode: Option<SplitMode>,
    /// Share of each intent for validation. Default 0.1.
    pub validation: f64,
    /// Share of each intent held back for the test. Default 0.1 when
    /// stratifying, 0 when keeping.
    pub test: Option<f64>,
    /// Default 7.
    pub seed: u64,
}

impl SplitParams {
    pub const DEFAULT_VALIDATION: f64 = 0.1;
    pub const DEFAULT_TEST: f64 = 0.1;
    pub const DEFAULT_SEED: u64 = 7;

    /// The mode for a dataset that has (or has not) splits of its own.
    pub fn mode_for(&self, data_has_splits: bool) -> SplitMode {
        self.mode.unwrap_or(if data_has_splits {
            SplitMode::Keep
        } else {
            SplitMode::Stratified
        })
    }

    /// The test share in `mode`.
    pub fn test_for(&self, mode: SplitMode) -> f64 {
        self.test.unwrap_or(match mode {
            SplitMode::Stratified => Self::DEFAULT_TEST,
            SplitMode::Keep => 0.0,
        })
    }
}

/// Which split an evaluate step scores on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvaluateOn {
    /// The test split when the data has one, else validation.
    Auto,
    Test,
    Validation,
}

/// `kind = "evaluate"`.
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluateParams {
    pub on: EvaluateOn,
    /// The intent that means "out of scope". Default `oos`.
    pub oos_label: String,
    /// How many of the most frequent confusions to keep. Default 10.
    pub top_confusions: usize,
}

/// `kind = "register"`.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisterParams {
    /// The model name; default the workflow's name.
    pub name: Option<ModelName>,
}

/// `kind = "deploy"`.
#[derive(Debug, Clone, PartialEq)]
pub struct DeployParams {
    /// The environment to point at the registered model (required).
    pub environment: Option<EnvironmentName>,
    /// Why, for the deployment history.
    pub reason: Option<String>,
    /// Set for `strategy = "canary"`: its steps (defaults filled in).
    pub canary: Option<crate::experiment::spec::Canary>,
}

/// `kind = "analyze"`.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalyzeParams {
    /// Whose conversations; default the model the workflow registers (its
    /// name).
    pub model: Option<ModelName>,
    /// The analyzer plugin; default `analyzer-quality`.
    pub analyzer: String,
    /// Conversations started in the last this many days. Default 7.
    pub days: u32,
    /// At most this many, the newest. Default 100,000.
    pub limit: u64,
    /// Analyse again what this analyzer version analysed before. Default
    /// false.
    pub again: bool,
    /// The analyzer's parameters.
    pub config: Map<String, Value>,
}

/// `kind = "reviewed"`.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewedParams {
    /// Whose approved review items; default the model the workflow
    /// registers (its name).
    pub model: Option<ModelName>,
    /// The dataset the snapshot is kept under; default `<model>-reviewed`.
    pub dataset: Option<String>,
}

/// The typed parameters of a built-in step.
#[derive(Debug, Clone, PartialEq)]
pub enum BuiltinParams {
    Split(SplitParams),
    Evaluate(EvaluateParams),
    Register(RegisterParams),
    Deploy(DeployParams),
    Curate(crate::curate::Settings),
    Analyze(AnalyzeParams),
    Reviewed(ReviewedParams),
    /// The kinds whose settings are keys of their own (`when`, `command`)
    /// or a script (`with.script`).
    Other,
}

/// `(name, type, accepted values)` of each built-in kind's parameters.
type Schema = &'static [(&'static str, ParamType, &'static [&'static str])];

impl Builtin {
    fn schema(self) -> Schema {
        match self {
            Builtin::Split => &[
                ("mode", ParamType::String, &["keep", "stratified"]),
                ("validation", ParamType::Float, &[]),
                ("test", ParamType::Float, &[]),
                ("seed", ParamType::Integer, &[]),
            ],
            Builtin::Evaluate => &[
                ("on", ParamType::String, &["auto", "test", "validation"]),
                ("oos_label", ParamType::String, &[]),
                ("top_confusions", ParamType::Integer, &[]),
            ],
            Builtin::Register => &[("name", ParamType::String, &[])],
            Builtin::Rules => &[("script", ParamType::String, &[])],
            Builtin::Gate => &[],
            // `direct` moves all traffic once the version is healthy;
            // `canary` moves it in steps, guarded (docs/deployments.md).
            Builtin::Deploy => &[
                ("env", ParamType::String, &[]),
                ("strategy", ParamType::String, &["direct", "canary"]),
                ("reason", ParamType::String, &[]),
                ("canary", ParamType::Table, &[]),
            ],
            // A process takes `command`, `env` and `workdir` instead.
            Builtin::Process => &[],
            // docs/analysis.md: curation's settings, each with its default.
            Builtin::Curate => &[
                ("near_duplicates", ParamType::Float, &[]),
                ("num_perm", ParamType::Integer, &[]),
                ("min_examples", ParamType::Integer, &[]),
                ("redact", ParamType::Boolean, &[]),
                ("pii", ParamType::Array, &[]),
                ("drop_conflicts", ParamType::Boolean, &[]),
            ],
            Builtin::Analyze => &[
                ("model", ParamType::String, &[]),
                ("analyzer", ParamType::String, &[]),
                ("days", ParamType::Integer, &[]),
                ("limit", ParamType::Integer, &[]),
                ("again", ParamType::Boolean, &[]),
                ("config", ParamType::Table, &[]),
            ],
            Builtin::Reviewed => &[
                ("model", ParamType::String, &[]),
                ("dataset", ParamType::String, &[]),
            ],
        }
    }

    /// The parameters the kind accepts, as a plugin manifest declares its
    /// own.
    pub fn parameters(self) -> BTreeMap<String, Parameter> {
        self.schema()
            .iter()
            .map(|(name, ty, one_of)| {
                (
                    (*name).to_owned(),
                    Parameter {
                        ty: *ty,
                        required: false,
                        one_of: one_of.iter().map(|s| (*s).to_owned()).collect(),
                        description: String::new(),
                    },
                )
            })
            .collect()
    }
}

impl BuiltinParams {
    /// Read the parameters of a `kind` step from `with` (names and types
    /// already checked against the schema): defaults filled in, ranges
    /// checked. Every problem is returned, not only the first.
    pub fn read(
        kind: Builtin,
        with: &Map<String, Value>,
    ) -> Result<BuiltinParams, Vec<ParamError>> {
        let mut errors = Vec::new();
        let params = match kind {
            Builtin::Split => BuiltinParams::Split(split(with, &mut errors)),
            Builtin::Evaluate => BuiltinParams::Evaluate(evaluate(with, &mut errors)),
            Builtin::Register => BuiltinParams::Register(register(with, &mut errors)),
            Builtin::Deploy => BuiltinParams::Deploy(deploy(with, &mut errors)),
            Builtin::Curate => BuiltinParams::Curate(curate(with, &mut errors)),
            Builtin::Analyze => BuiltinParams::Analyze(analyze(with, &mut errors)),
            Builtin::Reviewed => BuiltinParams::Reviewed(reviewed(with, &mut errors)),
            Builtin::Gate | Builtin::Rules | Builtin::Process => BuiltinParams::Other,
        };
        if errors.is_empty() {
            Ok(params)
        } else {
            Err(errors)
        }
    }
}

fn error(errors: &mut Vec<ParamError>, key: &'static str, message: String) {
    errors.push(ParamError {
        key: Some(key),
        message,
    });
}

/// A fraction in `[0, 1)`.
fn fraction(
    with: &Map<String, Value>,
    key: &'static str,
    errors: &mut Vec<ParamError>,
) -> Option<f64> {
    let v = with.get(key)?.as_f64()?;
    if (0.0..1.0).contains(&v) {
        Some(v)
    } else {
        error(
            errors,
            key,
            format!("`{key}` is {v}; it must be a fraction from 0 up to (not including) 1"),
        );
        None
    }
}

fn split(with: &Map<String, Value>, errors: &mut Vec<ParamError>) -> SplitParams {
    let mode = with.get("mode").and_then(Value::as_str).map(|m| match m {
        "keep" => SplitMode::Keep,
        _ => SplitMode::Stratified,
    });
    let validation = fraction(with, "validation", errors);
    let test = fraction(with, "test", errors);
    let seed = match with.get("seed").map(|v| (v, v.as_u64())) {
        None => SplitParams::DEFAULT_SEED,
        Some((_, Some(s))) => s,
        Some((v, None)) => {
            error(
                errors,
                "seed",
                format!("`seed` is {v}; it must be 0 or more"),
            );
            SplitParams::DEFAULT_SEED
        }
    };
    let p = SplitParams {
        mode,
        validation: validation.unwrap_or(SplitParams::DEFAULT_VALIDATION),
        test,
        seed,
    };
    // With no mode given, the data decides at run time: judge the sum as
    // stratified (a test share is carved then), the stricter case, so a
    // split that could fail a run fails validation instead.
    let sum_mode = p.mode.unwrap_or(SplitMode::Stratified);
    let total = p.validation + p.test_for(sum_mode);
    if errors.is_empty() && total >= 1.0 {
        errors.push(ParamError {
            key: None,
            message: format!(
                "`validation` ({}) and `test` ({}) together take every example; leave some for training",
                p.validation,
                p.test_for(sum_mode)
            ),
        });
    }
    p
}

fn evaluate(with: &Map<String, Value>, errors: &mut Vec<ParamError>) -> EvaluateParams {
    let on = match with.get("on").and_then(Value::as_str) {
        Some("test") => EvaluateOn::Test,
        Some("validation") => EvaluateOn::Validation,
        _ => EvaluateOn::Auto,
    };
    let oos_label = match with.get("oos_label").and_then(Value::as_str) {
        None => "oos".to_owned(),
        Some("") => {
            error(errors, "oos_label", "`oos_label` is empty".into());
            "oos".to_owned()
        }
        Some(l) => l.to_owned(),
    };
    let top_confusions = match with.get("top_confusions") {
        None => 10,
        Some(v) => match v.as_u64().filter(|n| *n <= 10_000) {
            Some(n) => n as usize,
            None => {
                error(
                    errors,
                    "top_confusions",
                    format!("`top_confusions` is {v}; it must be between 0 and 10000"),
                );
                10
            }
        },
    };
    EvaluateParams {
        on,
        oos_label,
        top_confusions,
    }
}

fn register(with: &Map<String, Value>, errors: &mut Vec<ParamError>) -> RegisterParams {
    let name = with.get("name").and_then(Value::as_str).and_then(|n| {
        ModelName::try_from(n)
            .map_err(|e| error(errors, "name", e))
            .ok()
    });
    RegisterParams { name }
}

fn model_param(with: &Map<String, Value>, errors: &mut Vec<ParamError>) -> Option<ModelName> {
    with.get("model").and_then(Value::as_str).and_then(|n| {
        ModelName::try_from(n)
            .map_err(|e| error(errors, "model", e))
            .ok()
    })
}

fn curate(with: &Map<String, Value>, errors: &mut Vec<ParamError>) -> crate::curate::Settings {
    let settings: crate::curate::Settings =
        match serde_json::from_value(Value::Object(with.clone())) {
            Ok(s) => s,
            Err(e) => {
                errors.push(ParamError {
                    key: None,
                    message: e.to_string(),
                });
                return Default::default();
            }
        };
    if let Err(e) = settings.check() {
        for message in e.problems {
            errors.push(ParamError { key: None, message });
        }
    }
    settings
}

fn analyze(with: &Map<String, Value>, errors: &mut Vec<ParamError>) -> AnalyzeParams {
    let analyzer = with
        .get("analyzer")
        .and_then(Value::as_str)
        .unwrap_or(crate::core::params::DEFAULT_ANALYZER)
        .to_owned();
    let days = with.get("days").and_then(Value::as_i64).unwrap_or(7);
    if !(1..=3660).contains(&days) {
        error(errors, "days", "`days` must be 1 to 3660".into());
    }
    let limit = with.get("limit").and_then(Value::as_i64).unwrap_or(100_000);
    if !(1..=1_000_000).contains(&limit) {
        error(errors, "limit", "`limit` must be 1 to 1000000".into());
    }
    AnalyzeParams {
        model: model_param(with, errors),
        analyzer,
        days: days.clamp(1, 3660) as u32,
        limit: limit.clamp(1, 1_000_000) as u64,
        again: with.get("again").and_then(Value::as_bool).unwrap_or(false),
        config: with
            .get("config")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
    }
}

fn reviewed(with: &Map<String, Value>, errors: &mut Vec<ParamError>) -> ReviewedParams {
    let dataset = with
        .get("dataset")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if let Some(d) = &dataset
        && !crate::core::ids::is_identifier(d)
    {
        error(
            errors,
            "dataset",
            format!(
                "`{}` is not a dataset name (letters, digits, `-`, `_`)",
                crate::core::text::printable(d)
            ),
        );
    }
    ReviewedParams {
        model: model_param(with, errors),
        dataset,
    }
}

fn deploy(with: &Map<String, Value>, errors: &mut Vec<ParamError>) -> DeployParams {
    let environment = match with.get("env").and_then(Value::as_str) {
        Some(e) => EnvironmentName::try_from(e)
            .map_err(|m| error(errors, "env", m))
            .ok(),
        None => {
            error(
                errors,
                "env",
                "`env` is required: the environment to deploy to (`staging`, `production`, …)"
                    .into(),
            );
            None
        }
    };
    let reason = with
        .get("reason")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if reason.as_ref().is_some_and(|r| r.chars().count() > 1000) {
        error(
            errors,
            "reason",
            "`reason` is longer than 1000 characters".into(),
        );
    }
    let canary = match with.get("strategy").and_then(Value::as_str) {
        Some("canary") => match canary_params(with.get("canary")) {
            Ok(c) => Some(c),
            Err(m) => {
                error(errors, "canary", m);
                None
            }
        },
        _ => {
            if with.contains_key("canary") {
                error(
                    errors,
                    "canary",
                    "`canary` settings need `strategy = \"canary\"`".into(),
                );
            }
            None
        }
    };
    DeployParams {
        environment,
        reason,
        canary,
    }
}

/// A canary's settings: `steps` (percentages, increasing, ending at 100),
/// `min_requests` per step, `hold` (shortest time per step).
pub fn canary_params(v: Option<&Value>) -> Result<crate::experiment::spec::Canary, String> {
    let mut c = crate::experiment::spec::Canary::default();
    let Some(v) = v else { return Ok(c) };
    let Some(t) = v.as_object() else {
        return Err("`canary` must be a table".into());
    };
    for (k, v) in t {
        match k.as_str() {
            "steps" => {
                let steps: Option<Vec<f64>> = v
                    .as_array()
                    .map(|a| a.iter().map(Value::as_f64).collect::<Option<Vec<_>>>())
                    .unwrap_or(None);
                let steps = steps.ok_or("`canary.steps` must be a list of percentages")?;
                c.steps = steps;
            }
            "min_requests" => {
                c.min_requests = v
                    .as_u64()
                    .filter(|n| (1..=100_000_000).contains(n))
                    .ok_or("`canary.min_requests` must be an integer from 1 to 100000000")?;
            }
            "hold" => {
                let text = v
                    .as_str()
                    .ok_or("`canary.hold` must be a duration such as \"5m\"")?;
                c.hold = crate::config::units::parse_duration(text)
                    .map_err(|e| format!("`canary.hold`: {e}"))?;
                if c.hold > std::time::Duration::from_secs(24 * 3600) {
                    return Err(
                        "`canary.hold` is at most 24h (a canary blocks deploys while it runs)"
                            .into(),
                    );
                }
            }
            other => {
                return Err(format!(
                    "unknown key `{other}` in `canary`; expected one of: steps, min_requests, hold"
                ));
            }
        }
    }
    check_steps(&c.steps)?;
    Ok(c)
}

/// Canary steps: percentages above 0, increasing, the last 100.
pub fn check_steps(steps: &[f64]) -> Result<(), String> {
    let increasing = steps.windows(2).all(|w| w[0] < w[1]);
    if steps.len() < 2 || !increasing || steps[0] <= 0.0 || steps.last() != Some(&100.0) {
        return Err(format!(
            "`canary.steps` {steps:?} must be at least two increasing percentages above 0, the last 100"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(kind: Builtin, with: Value) -> Result<BuiltinParams, Vec<ParamError>> {
        BuiltinParams::read(kind, with.as_object().unwrap())
    }

    #[test]
    fn defaults_fill_what_is_not_given() {
        let Ok(BuiltinParams::Split(s)) = read(Builtin::Split, json!({})) else {
            panic!()
        };
        assert_eq!((s.mode, s.validation, s.test, s.seed), (None, 0.1, None, 7));
        assert_eq!(s.mode_for(true), SplitMode::Keep);
        assert_eq!(s.test_for(SplitMode::Stratified), 0.1);
        let Ok(BuiltinParams::Evaluate(e)) = read(Builtin::Evaluate, json!({})) else {
            panic!()
        };
        assert_eq!(
            (e.on, e.oos_label.as_str(), e.top_confusions),
            (EvaluateOn::Auto, "oos", 10)
        );
    }

    #[test]
    fn out_of_range_values_are_refused_each_by_name() {
        let e = read(Builtin::Split, json!({"validation": 1.5, "test": -0.1})).unwrap_err();
        assert_eq!(
            e.iter().map(|e| e.key).collect::<Vec<_>>(),
            [Some("validation"), Some("test")]
        );
        assert!(e[0].message.contains("1.5"), "{}", e[0].message);
        let e = read(
            Builtin::Split,
            json!({"mode": "stratified", "validation": 0.5, "test": 0.5}),
        )
        .unwrap_err();
        assert_eq!(e[0].key, None);
        let e = read(Builtin::Register, json!({"name": "a b"})).unwrap_err();
        assert_eq!(e[0].key, Some("name"));
        assert!(read(Builtin::Evaluate, json!({"top_confusions": -1})).is_err());
    }
}
