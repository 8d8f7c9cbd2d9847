//! Experiment files: `experiments/NAME.toml` in a workflow folder (or an
//! API body in the same shape), read into an [`experiment::spec::Spec`]
//! with every problem located at its line and column.

use super::error::{Errors, Located};
use crate::core::text::printable;
use crate::experiment::spec::{
    ArmSpec, Key, MAX_ARMS, Metric, Metrics, Namespace, Spec, Stopping, WEIGHT_TOLERANCE,
};
use serde::Deserialize;
use std::path::Path;
use std::time::Duration;
use toml::Spanned;

/// The smallest share an arm may have (as through the API).
const MIN_WEIGHT: f64 = 0.0001;
/// The longest an experiment may run.
const MAX_DURATION: Duration = Duration::from_secs(365 * 86400);

/// The folder, inside a workflow folder, that holds experiment files.
pub const FOLDER: &str = "experiments";

/// The file's shape. Spanned where a check needs to point at a value.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    model: Spanned<String>,
    environment: Option<Spanned<String>>,
    hypothesis: Option<Spanned<String>>,
    key: Option<Key>,
    coverage: Option<Spanned<f64>>,
    seed: Option<Spanned<String>>,
    namespace: Option<Spanned<NamespaceIn>>,
    arms: Spanned<Vec<Spanned<ArmIn>>>,
    metrics: MetricsIn,
    #[serde(default)]
    stopping: StoppingIn,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NamespaceIn {
    name: String,
    range: [f64; 2],
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArmIn {
    name: Spanned<String>,
    version: Option<Spanned<i64>>,
    weight: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricsIn {
    primary: Spanned<String>,
    #[serde(default)]
    secondary: Vec<Spanned<String>>,
    #[serde(default)]
    guardrails: Vec<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoppingIn {
    alpha: Option<Spanned<f64>>,
    min_units: Option<Spanned<i64>>,
    max_duration: Option<Spanned<String>>,
    decide: Option<Spanned<String>>,
}

/// Whether `name` may name an experiment (it is a file stem and a URL
/// segment).
pub use crate::experiment::spec::valid_name;

/// Read experiment `name` from `text` (the file `file`), reporting every
/// problem located.
pub fn parse(file: &Path, name: &str, text: &str) -> Result<Spec, Errors> {
    read(file, name, text, true)
}

/// Read an experiment sent through the API: the same shape, but no
/// `stopping.decide` (a script names a file on the daemon's machine).
pub fn parse_request(name: &str, body: &serde_json::Value) -> Result<Spec, String> {
    let text = toml::to_string(body).map_err(|e| format!("cannot read the experiment: {e}"))?;
    read(Path::new("request"), name, &text, false).map_err(|errors| {
        errors
            .0
            .iter()
            .map(|e| e.message.clone())
            .collect::<Vec<_>>()
            .join("; ")
    })
}

fn read(file: &Path, name: &str, text: &str, scripts: bool) -> Result<Spec, Errors> {
    let mut errors = Vec::new();
    let mut at = |span: std::ops::Range<usize>, message: String| {
        errors.push(Located::at(file, text, span, message));
    };
    let f: File = match toml::from_str(text) {
        Ok(f) => f,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            at(span, e.message().trim().to_owned());
            return Err(Errors(errors));
        }
    };
    let mut whole = Vec::new();
    if !valid_name(name) {
        whole.push(Located::file(
            file,
            format!(
                "`{name}` cannot name an experiment: use up to 64 letters, digits, `-` or `_` in the file name"
            ),
        ));
    }
    if !crate::core::ids::is_identifier(f.model.get_ref()) {
        at(
            f.model.span(),
            format!(
                "model: `{}` is not a model name",
                printable(f.model.get_ref())
            ),
        );
    }
    let environment = match &f.environment {
        Some(e) => match crate::core::ids::EnvironmentName::try_from(e.get_ref().as_str()) {
            Ok(_) => e.get_ref().clone(),
            Err(why) => {
                at(e.span(), format!("environment: {why}"));
                e.get_ref().clone()
            }
        },
        None => "production".to_owned(),
    };
    let coverage = f.coverage.as_ref().map_or(1.0, |c| *c.get_ref());
    if let Some(c) = &f.coverage
        && !(*c.get_ref() > 0.0 && *c.get_ref() <= 1.0)
    {
        at(
            c.span(),
            format!("coverage: {} must be above 0 and at most 1", c.get_ref()),
        );
    }
    let namespace = f.namespace.as_ref().map(|n| {
        let [from, to] = n.get_ref().range;
        if !(0.0..=1.0).contains(&from) || !(0.0..=1.0).contains(&to) || from >= to {
            at(
                n.span(),
                format!("namespace.range: [{from}, {to}] must be within [0, 1] and increasing"),
            );
        }
        let ns = &n.get_ref().name;
        if ns.is_empty() || ns.chars().count() > 64 || ns.chars().any(char::is_control) {
            at(
                n.span(),
                "namespace.name: 1 to 64 characters, no control characters".to_owned(),
            );
        }
        Namespace {
            name: n.get_ref().name.clone(),
            from,
            to,
        }
    });
    let arms_in = f.arms.get_ref();
    if arms_in.len() < 2 || arms_in.len() > MAX_ARMS {
        at(
            f.arms.span(),
            format!(
                "arms: an experiment has a control and 1 to {} treatments; found {} arm(s)",
                MAX_ARMS - 1,
                arms_in.len()
            ),
        );
    }
    let given: Vec<bool> = arms_in
        .iter()
        .map(|a| a.get_ref().weight.is_some())
        .collect();
    if given.iter().any(|g| *g) && !given.iter().all(|g| *g) {
        at(
            f.arms.span(),
            "arms: give every arm a `weight`, or none (equal shares)".to_owned(),
        );
    }
    let equal = 1.0 / arms_in.len().max(1) as f64;
    let mut arms = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    for (i, a) in arms_in.iter().enumerate() {
        let a = a.get_ref();
        if !crate::core::ids::is_identifier(a.name.get_ref()) {
            at(
                a.name.span(),
                format!(
                    "arms[{i}].name: `{}` is not an arm name",
                    printable(a.name.get_ref())
                ),
            );
        }
        if !names.insert(a.name.get_ref().clone()) {
            at(
                a.name.span(),
                format!("arms[{i}].name: `{}` is named twice", a.name.get_ref()),
            );
        }
        let version = match &a.version {
            Some(v) if *v.get_ref() < 1 || *v.get_ref() > i64::from(i32::MAX) => {
                at(
                    v.span(),
                    format!("arms[{i}].version: {} is not a version", v.get_ref()),
                );
                None
            }
            Some(v) => Some(*v.get_ref() as i32),
            None if i > 0 => {
                at(
                    a.name.span(),
                    format!(
                        "arms[{i}].version: treatment `{}` needs a `version` (only the control defaults to what the environment serves)",
                        a.name.get_ref()
                    ),
                );
                None
            }
            None => None,
        };
        let weight = match &a.weight {
            Some(w) => {
                if !(MIN_WEIGHT..=1.0 - MIN_WEIGHT).contains(w.get_ref()) {
                    at(
                        w.span(),
                        format!(
                            "arms[{i}].weight: {:.6} must be between {MIN_WEIGHT} and {}",
                            w.get_ref(),
                            1.0 - MIN_WEIGHT
                        ),
                    );
                }
                *w.get_ref()
            }
            None => equal,
        };
        arms.push(ArmSpec {
            name: a.name.get_ref().clone(),
            version,
            weight,
            model_id: None,
        });
    }
    let sum: f64 = arms.iter().map(|a| a.weight).sum();
    if given.iter().all(|g| *g) && (sum - 1.0).abs() > WEIGHT_TOLERANCE {
        at(
            f.arms.span(),
            format!("arms: the weights sum to {sum}; they must sum to 1"),
        );
    }
    let mut metric = |s: &Spanned<String>, what: &str, field: &str| -> Option<Metric> {
        let m = Metric::parse(s.get_ref());
        match m {
            Some(m) if m.from_requests() && what == "primary" => {
                at(
                    s.span(),
                    format!(
                        "{field}: `{}` is counted per request, so it can guard an experiment but not be its primary metric",
                        m.name()
                    ),
                );
                None
            }
            Some(m) => Some(m),
            None => {
                at(
                    s.span(),
                    format!(
                        "{field}: unknown {what} metric `{}`; expected one of: {}",
                        printable(s.get_ref()),
                        Metric::ALL.map(Metric::name).join(", ")
                    ),
                );
                None
            }
        }
    };
    let primary = metric(&f.metrics.primary, "primary", "metrics.primary");
    let secondary: Vec<Metric> = f
        .metrics
        .secondary
        .iter()
        .enumerate()
        .filter_map(|(i, s)| metric(s, "secondary", &format!("metrics.secondary[{i}]")))
        .collect();
    let guardrails: Vec<Metric> = f
        .metrics
        .guardrails
        .iter()
        .enumerate()
        .filter_map(|(i, s)| metric(s, "guardrail", &format!("metrics.guardrails[{i}]")))
        .collect();
    let mut stopping = Stopping::default();
    if let Some(a) = &f.stopping.alpha {
        if !(*a.get_ref() > 0.0 && *a.get_ref() < 0.5) {
            at(
                a.span(),
                format!(
                    "stopping.alpha: {} must be above 0 and below 0.5",
                    a.get_ref()
                ),
            );
        }
        stopping.alpha = *a.get_ref();
    }
    if let Some(n) = &f.stopping.min_units {
        if *n.get_ref() < 2 {
            at(
                n.span(),
                "stopping.min_units: must be at least 2".to_owned(),
            );
        }
        if *n.get_ref() > 1_000_000_000 {
            at(
                n.span(),
                "stopping.min_units: at most 1000000000".to_owned(),
            );
        }
        stopping.min_units = (*n.get_ref()).max(2) as u64;
    }
    if let Some(d) = &f.stopping.max_duration {
        match parse_duration(d.get_ref()) {
            Ok(v) if v > MAX_DURATION => at(
                d.span(),
                "stopping.max_duration: at most 365d (an experiment blocks deploys while it runs)"
                    .to_owned(),
            ),
            Ok(v) => stopping.max_duration = v,
            Err(why) => at(
                d.span(),
                format!("stopping.max_duration: {}", printable(&why)),
            ),
        }
    }
    // Free text is one line of printable characters, as through the API.
    let mut line = |what: &str, s: Option<&Spanned<String>>, max: usize| {
        if let Some(s) = s {
            let chars = s.get_ref().chars().count();
            if chars > max || s.get_ref().chars().any(char::is_control) {
                at(
                    s.span(),
                    format!("{what}: at most {max} characters, no control characters"),
                );
            }
        }
    };
    line("hypothesis", f.hypothesis.as_ref(), 1000);
    line("seed", f.seed.as_ref(), 128);
    if let Some(d) = &f.stopping.decide
        && !scripts
    {
        at(
            d.span(),
            "stopping.decide: a decision script can be named in an experiment file only, not through the API".to_owned(),
        );
    } else if let Some(d) = &f.stopping.decide {
        let folder = file.parent().unwrap_or(Path::new("."));
        // Scripts live beside the experiments: in the experiment file's
        // folder or the one above it (the workflow folder), no further.
        let home = folder.parent().unwrap_or(folder);
        let home = home.canonicalize().unwrap_or(home.to_path_buf());
        // Absolute, so the daemon finds it whoever started the experiment.
        let path = folder.join(d.get_ref());
        let path = path.canonicalize().unwrap_or(path);
        let compiled = if path.starts_with(&home) && path.is_file() {
            crate::script::compile_file(&path, crate::script::Hook::Decide)
                .map_err(|e| e.to_string())
        } else {
            Err(format!(
                "stopping.decide: `{}` is not a script file inside {}",
                printable(d.get_ref()),
                home.display()
            ))
        };
        match compiled {
            Ok(s) if !s.defines("decide", 1) => at(
                d.span(),
                format!("{} does not define `decide(results)`", path.display()),
            ),
            Ok(_) => stopping.decide = Some(path.display().to_string()),
            Err(e) => at(d.span(), e),
        }
    }
    errors.extend(whole);
    if !errors.is_empty() {
        errors.sort_by_key(|e| (e.line, e.column));
        return Err(Errors(errors));
    }
    Ok(Spec {
        model: f.model.into_inner(),
        environment,
        hypothesis: f.hypothesis.map(Spanned::into_inner),
        key: f.key.unwrap_or_default(),
        coverage,
        seed: f.seed.map_or_else(|| name.to_owned(), Spanned::into_inner),
        namespace,
        arms,
        metrics: Metrics {
            primary: primary.expect("no errors: the primary metric parsed"),
            secondary,
            guardrails,
        },
        stopping,
        canary: None,
    })
}

/// `30s`, `10m`, `2h`, `14d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    match text.trim().strip_suffix('d') {
        Some(days) => days
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|d| *d > 0.0)
            .and_then(|d| Duration::try_from_secs_f64(d * 86400.0).ok())
            .ok_or_else(|| format!("`{text}` is not a duration like `12h` or `14d`")),
        None => crate::config::units::parse_duration(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
model = "wedding-assistant"
hypothesis = "v2 resolves more conversations"

[[arms]]
name = "control"
weight = 0.5

[[arms]]
name = "v2"
version = 2
weight = 0.5

[metrics]
primary = "task_success"
guardrails = ["fallback_rate", "negative_rating_rate"]

[stopping]
min_units = 50
max_duration = "7d"
"#;

    #[test]
    fn a_good_file_reads_with_its_defaults() {
        let s = parse(Path::new("x.toml"), "v2-vs-v1", GOOD).unwrap();
        assert_eq!(s.environment, "production");
        assert_eq!(s.seed, "v2-vs-v1");
        assert_eq!(s.key, Key::UserId);
        assert_eq!(s.arms[0].version, None);
        assert_eq!(s.arms[1].version, Some(2));
        assert_eq!(s.metrics.primary, Metric::TaskSuccess);
        assert_eq!(s.stopping.min_units, 50);
        assert_eq!(s.stopping.max_duration, Duration::from_secs(7 * 86400));
        // Stored as JSON and read back unchanged.
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Spec>(&json).unwrap(), s);
    }

    fn errors_of(text: &str) -> String {
        parse(Path::new("exp.toml"), "exp", text)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn every_problem_is_located() {
        let bad = GOOD
            .replace("weight = 0.5\n\n[[arms]]", "weight = 0.6\n\n[[arms]]")
            .replace("\"task_success\"", "\"happiness\"");
        let e = errors_of(&bad);
        assert!(
            e.contains("exp.toml:5:1: arms: the weights sum to 1.1"),
            "{e}"
        );
        assert!(
            e.contains("exp.toml:15:11: metrics.primary: unknown primary metric `happiness`"),
            "{e}"
        );
        let e = errors_of(&GOOD.replace("version = 2\n", ""));
        assert!(e.contains("treatment `v2` needs a `version`"), "{e}");
        let e = errors_of(&GOOD.replace("min_units = 50", "min_units = 50\nsurprise = 1"));
        assert!(e.contains("exp.toml:20:1: unknown field `surprise`"), "{e}");
        let e = errors_of(&GOOD.replace("\"task_success\"", "\"latency_p99\""));
        assert!(
            e.contains("can guard an experiment but not be its primary"),
            "{e}"
        );
    }
}
