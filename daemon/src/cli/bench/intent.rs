//! `coach bench intent`: train and evaluate the default trainer on a public
//! dataset through the real pipeline, in a scratch store, and print the
//! scores beside the published table and, optionally, the sklearn peer run
//! on the very same examples.

use crate::app::{App, Mode};
use crate::cli::pct;
use crate::cli::{note, out};
use crate::config::Config;
use crate::core::evaluation::Report;
use crate::core::example::Example;
use crate::core::stop::RunStop;
use crate::core::sync::Lock;
use crate::events::Reporter;
use crate::plugin::JobSpec;
use crate::workflow::Workflow;
use crate::workflow::set::Good;
use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Dataset {
    Clinc150,
    Banking77,
    Hwu64,
    Snips,
    /// Entities only (`coach bench entities`).
    Restaurant8k,
}

impl Dataset {
    /// Every message has an intent: no out-of-scope examples, in training
    /// or in the test split.
    fn closed_set(self) -> bool {
        matches!(self, Dataset::Banking77 | Dataset::Hwu64 | Dataset::Snips)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Variant {
    Full,
    Small,
    Imbalanced,
    OosPlus,
}

impl Variant {
    fn file(self) -> &'static str {
        match self {
            Variant::Full => "data_full.json",
            Variant::Small => "data_small.json",
            Variant::Imbalanced => "data_imbalanced.json",
            Variant::OosPlus => "data_oos_plus.json",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Variant::Full => "full",
            Variant::Small => "small",
            Variant::Imbalanced => "imbalanced",
            Variant::OosPlus => "oos_plus",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Peer {
    Sklearn,
}

/// Larson et al.'s two settings for out-of-scope data in training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Setting {
    /// Train with the out-of-scope training examples as their own class.
    #[default]
    OosTrain,
    /// Train without them: out of scope is only what the threshold rejects
    /// (validation keeps its out-of-scope examples, as in the paper).
    OosThreshold,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, value_enum)]
    pub dataset: Dataset,
    /// The dataset's folder (e.g. `…/datasets/clinc150`). Where it holds
    /// the public test split (CLINC150's `test` in its file, Banking77's
    /// `test.csv`, HWU64's `testset/` or `testset/csv/`, SNIPS's
    /// `validate_<Intent>.json`), that is what is scored; else the
    /// validation split.
    #[arg(long)]
    pub data: PathBuf,
    /// CLINC150 variants to run (default: all four).
    #[arg(long, value_enum)]
    pub variant: Vec<Variant>,
    /// Also run this peer on the same examples, in the same invocation,
    /// and cross-validate it on the trainer's training examples with as
    /// many folds as the trainer's own cross-validated figures.
    #[arg(long, value_enum)]
    pub peer: Option<Peer>,
    /// With or without out-of-scope examples in training (CLINC150).
    #[arg(long, value_enum, default_value_t)]
    pub setting: Setting,
    /// Trainer parameters as JSON (the workflow's `with` table).
    #[arg(long, default_value = "{}")]
    pub with: String,
    #[arg(long)]
    pub json: bool,
}

/// Larson et al. (EMNLP 2019), Table 2, CLINC150 Full, oos-train:
/// in-scope accuracy / out-of-scope recall.
const PUBLISHED: &[(&str, f64, f64)] = &[
    ("FastText", 89.0, 9.7),
    ("SVM", 91.0, 14.5),
    ("CNN", 91.2, 18.9),
    ("DialogFlow", 91.7, 14.0),
    ("Rasa", 91.5, 45.3),
    ("MLP (USE)", 93.5, 47.4),
    ("BERT", 96.9, 40.3),
];

/// Out-of-fold figures the trainer reports (`cv_*` metrics).
#[derive(Debug, Clone, Copy, Default)]
struct Cv {
    in_scope_accuracy: Option<f64>,
    oos_recall: Option<f64>,
    in_scope_rejected: Option<f64>,
    /// The top intent's accuracy before any rejection.
    top_accuracy: Option<f64>,
    validation_in_training: bool,
    /// How many folds the figures are out of (the peer's cross-validation
    /// uses as many).
    folds: Option<u32>,
}

impl Cv {
    /// Which examples the figures are out of.
    fn examples(&self) -> &'static str {
        if self.validation_in_training {
            "train+val"
        } else {
            "train"
        }
    }

    /// From a registered model's metrics (the trainer's are `train.*`).
    fn of(model: &crate::store::ModelRow) -> Cv {
        let m: Value = serde_json::from_str(&model.metrics).unwrap_or_default();
        let get = |k: &str| m[format!("train.{k}")].as_f64();
        Cv {
            in_scope_accuracy: get("cv_in_scope_accuracy"),
            oos_recall: get("cv_oos_recall"),
            in_scope_rejected: get("cv_in_scope_rejected"),
            top_accuracy: get("cv_top_accuracy"),
            validation_in_training: get("validation_in_training") == Some(1.0),
            folds: get("folds").filter(|k| *k >= 2.0).map(|k| k as u32),
        }
    }
}

/// Step start and end times.
#[derive(Default)]
struct Timer(Mutex<BTreeMap<String, (Instant, Option<Duration>)>>);

impl Reporter for Timer {
    fn step_started(&self, step: &str, _action: &str, _attempt: u32) {
        self.0
            .locked()
            .insert(step.to_owned(), (Instant::now(), None));
    }
    fn step_finished(&self, step: &str, _result: Result<&str, &str>) {
        if let Some(e) = self.0.locked().get_mut(step) {
            e.1 = Some(e.0.elapsed());
        }
    }
}

impl Timer {
    fn seconds(&self, step: &str) -> f64 {
        self.0
            .locked()
            .get(step)
            .and_then(|e| e.1)
            .map(|d| d.as_secs_f64())
            .unwrap_or(f64::NAN)
    }
}

struct Outcome {
    name: String,
    report: Report,
    /// The trainer's out-of-fold figures: in-scope accuracy, OOS recall,
    /// in-scope rejected.
    cv: Cv,
    model_bytes: i64,
    train_seconds: f64,
    predict_single: f64,
    predict_batched: f64,
    peer: Option<Value>,
}

/// Where a benchmark dataset's examples come from.
struct Layout {
    format: &'static str,
    /// The training data (and CLINC150's splits, all in one file).
    path: PathBuf,
    /// The split step's parameters.
    split: &'static str,
    /// The public test split, where the folder has it beside the training
    /// data (the upstream file names): then it is what is scored.
    test: Option<TestFiles>,
}

/// A dataset's test split in files of their own.
struct TestFiles {
    path: PathBuf,
    /// In a folder: the names to read (source-files' `files`).
    files: Option<&'static str>,
}

/// Source format, data path, split step and test files of a benchmark
/// dataset.
fn layout(dataset: Dataset, data: &Path, variant: Option<Variant>) -> Layout {
    const STRATIFIED: &str = r#"{ mode = "stratified", validation = 0.1, test = 0.0, seed = 7 }"#;
    // With a test split of its own, the data keeps it, and validation is
    // carved out of training as the stratified split would.
    const KEEP_TEST: &str = r#"{ mode = "keep", validation = 0.1, seed = 7 }"#;
    let file = |name: &str| Some(data.join(name)).filter(|p| p.is_file());
    let (format, path, test) = match dataset {
        Dataset::Clinc150 => {
            let path = data.join(variant.unwrap_or(Variant::Full).file());
            return Layout {
                format: "clinc150",
                path,
                split: r#"{ mode = "keep" }"#,
                test: None,
            };
        }
        Dataset::Banking77 => (
            "banking77",
            data.join("train.csv"),
            file("test.csv").map(|path| TestFiles { path, files: None }),
        ),
        // Upstream, HWU64's files are `trainset/csv/*.csv` and
        // `testset/csv/*.csv`; the `csv/` level may be flattened.
        Dataset::Hwu64 => {
            let csvs = |set: &str| {
                [data.join(set), data.join(set).join("csv")]
                    .into_iter()
                    .find(|dir| has_file(dir, "*.csv"))
            };
            (
                "hwu64",
                csvs("trainset").unwrap_or_else(|| data.join("trainset")),
                csvs("testset").map(|path| TestFiles { path, files: None }),
            )
        }
        // Upstream, SNIPS's held-out examples are `validate_<Intent>.json`,
        // in a folder per intent (source-files reads those where the
        // folder has no files of its own).
        Dataset::Snips => (
            "snips",
            data.to_path_buf(),
            ["test_*.json", "validate_*.json"]
                .into_iter()
                .find(|pattern| {
                    has_file(data, pattern)
                        || std::fs::read_dir(data).is_ok_and(|entries| {
                            entries.flatten().any(|e| has_file(&e.path(), pattern))
                        })
                })
                .map(|pattern| TestFiles {
                    path: data.to_path_buf(),
                    files: Some(pattern),
                }),
        ),
        Dataset::Restaurant8k => (
            "restaurant8k",
            data.join("train_0.json"),
            file("test.json").map(|path| TestFiles { path, files: None }),
        ),
    };
    Layout {
        format,
        path,
        split: if test.is_some() {
            KEEP_TEST
        } else {
            STRATIFIED
        },
        test,
    }
}

/// Whether `dir` has a file named `prefix*suffix` (`pattern` has one `*`).
fn has_file(dir: &Path, pattern: &str) -> bool {
    let (prefix, suffix) = pattern.split_once('*').unwrap_or((pattern, ""));
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            e.path().is_file()
                && name.len() >= prefix.len() + suffix.len()
                && name.starts_with(prefix)
                && name.ends_with(suffix)
        })
    })
}

/// The benchmark workflow: source → (rules) → split → train → evaluate →
/// register. `drop_oos_train` adds a rules step that leaves the
/// out-of-scope training examples out.
fn workflow(
    layout: &Layout,
    with: &serde_json::Map<String, Value>,
    drop_oos_train: bool,
) -> Result<String> {
    let Layout {
        format,
        path,
        split,
        test,
    } = layout;
    if !path.exists() {
        bail!(
            "{} does not exist; --data must be the dataset's folder",
            path.display()
        );
    }
    let with_toml = toml::to_string(&toml::Value::try_from(with)?)?.replace('\n', ", ");
    let with_toml = with_toml.trim_end_matches(", ");
    let (rules, mut split_needs) = if drop_oos_train {
        (
            "[[step]]\nid = \"no-oos-train\"\nkind = \"rules\"\nneeds = [\"data\"]\nwith = { script = \"no_oos_train.rhai\" }\n\n",
            "\"no-oos-train\"".to_owned(),
        )
    } else {
        ("", "\"data\"".to_owned())
    };
    let test_step = match test {
        None => String::new(),
        Some(t) => {
            split_needs.push_str(", \"test-data\"");
            let files = t
                .files
                .map(|f| format!(", files = {f:?}"))
                .unwrap_or_default();
            format!(
                "[[step]]\nid = \"test-data\"\nuses = \"source-files\"\nwith = {{ format = \"{format}\", path = {}, split = \"test\"{files} }}\n\n",
                toml_path(&t.path)?
            )
        }
    };
    Ok(format!(
        r#"version = 1
name = "bench"

[[step]]
id = "data"
uses = "source-files"
with = {{ format = "{format}", path = {path} }}

{test_step}{rules}[[step]]
id = "split"
kind = "split"
needs = [{split_needs}]
with = {split}

[[step]]
id = "train"
uses = "trainer-intent"
needs = ["split"]
with = {{ {with_toml} }}

[[step]]
id = "evaluate"
kind = "evaluate"
needs = ["train"]

[[step]]
id = "register"
kind = "register"
needs = ["evaluate"]
"#,
        path = toml_path(path)?
    ))
}

/// `path`, made absolute, as a TOML string (Rust's `{:?}` escapes are not
/// all TOML's: a combining accent in a folder name would be `\u{301}`).
fn toml_path(path: &Path) -> Result<String> {
    let path = path.canonicalize()?;
    let text = path
        .to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))?;
    Ok(toml::Value::String(text.to_owned()).to_string())
}

/// A finished benchmark run in its scratch store.
struct Prepared {
    coach: App,
    model: crate::store::ModelRow,
    /// The trainer's out-of-fold figures, from the model's metrics.
    cv: Cv,
    report: Report,
    held: Vec<Example>,
    /// What the final model was fitted on (the validation split too, when
    /// the trainer refits on it).
    fitted: Vec<Example>,
    train_seconds: f64,
    _scratch: tempfile::TempDir,
}

/// How one benchmark run is set up.
struct Plan {
    layout: Layout,
    with: serde_json::Map<String, Value>,
    drop_oos_train: bool,
}

async fn prepare(base: &Config, data: &Path, plan: &Plan) -> Result<Prepared> {
    let scratch = tempfile::tempdir()?;
    // A scratch store, so benchmarks never touch the registry; the compile
    // cache is shared, so compiling plugins is not counted as training.
    let mut config = base.clone();
    config.data_dir = scratch.path().join("data");
    config.database_url = String::new();
    config
        .grants
        .entry("source-files".into())
        .or_default()
        .read
        .push(data.canonicalize()?);
    let coach = App::open(config, Mode::Command).await?;
    let text = workflow(&plan.layout, &plan.with, plan.drop_oos_train)?;
    let file = scratch.path().join("bench.toml");
    std::fs::write(&file, &text)?;
    std::fs::write(
        scratch.path().join("no_oos_train.rhai"),
        "// Larson et al.'s oos-threshold setting: no out-of-scope examples in training.\n\
         fn filter(example) { !(example.intent == \"oos\" && example.split == \"train\") }\n",
    )?;
    let wf =
        Workflow::parse(&file, &text, &coach.host.catalog()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let timer = Arc::new(Timer::default());
    let summary = coach
        .service
        .run_here(&Good::new(wf, text), timer.clone(), &RunStop::new())
        .await?;
    if let Some(e) = summary.error {
        bail!("{e}");
    }
    let report = (*summary
        .evaluation
        .context("the run produced no evaluation")?)
    .clone();
    let model = summary.model.context("the run registered no model")?;
    let version = model
        .dataset_version_id
        .context("the registered model names no dataset")?;
    let rows = coach.store.load_examples(version).await?;
    let held = rows
        .iter()
        .filter(|r| r.split.as_str() == report.split)
        .cloned()
        .collect();
    let cv = Cv::of(&model);
    let refit = cv.validation_in_training;
    let fitted = rows
        .iter()
        .filter(|r| {
            r.split.trains() || (refit && r.split == crate::core::example::Split::Validation)
        })
        .filter(|r| !(plan.drop_oos_train && r.intent == report.oos_label))
        .cloned()
        .collect();
    Ok(Prepared {
        coach,
        model,
        cv,
        report,
        held,
        fitted,
        train_seconds: timer.seconds("train"),
        _scratch: scratch,
    })
}

/// Whether the run will be scored on its validation split: the data has
/// no test split (CLINC150's public file has one; the others have it in
/// files of its own, which the folder may lack).
fn scored_on_validation(dataset: Dataset, layout: &Layout) -> Result<bool> {
    if dataset != Dataset::Clinc150 {
        return Ok(layout.test.is_none());
    }
    let path = &layout.path;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let v: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    Ok(v["test"].as_array().is_none_or(|t| t.is_empty()))
}

/// The run for a dataset: its layout, the trainer's parameters, the rules.
fn plan(
    dataset: Dataset,
    data: &Path,
    variant: Option<Variant>,
    with: &str,
    setting: Setting,
) -> Result<Plan> {
    let layout = layout(dataset, data, variant);
    let with: Value = serde_json::from_str(with).context("--with must be a JSON object")?;
    let Value::Object(mut with) = with else {
        bail!("--with must be a JSON object")
    };
    // Without a test split the validation split is what is scored: it must
    // stay out of the final model (selection is cross-validated on train).
    if !with.contains_key("refit_on_validation") && scored_on_validation(dataset, &layout)? {
        with.insert("refit_on_validation".into(), Value::Bool(false));
    }
    // Banking77, HWU64 and SNIPS are closed-set: every message has an
    // intent, so the trainer's default rejection of what it does not know
    // would only cost accuracy there (it is measured on CLINC150).
    if dataset.closed_set() && !with.contains_key("oos_reject_rate") {
        with.insert("oos_reject_rate".into(), json!(0.0));
    }
    Ok(Plan {
        layout,
        with,
        drop_oos_train: dataset == Dataset::Clinc150 && setting == Setting::OosThreshold,
    })
}

async fn run_one(
    base: &Config,
    dataset: Dataset,
    data: &Path,
    variant: Option<Variant>,
    args: &Args,
) -> Result<Outcome> {
    let plan = plan(dataset, data, variant, &args.with, args.setting)?;
    let p = prepare(base, data, &plan).await?;

    // Prediction throughput through the plugin: one utterance per call, and
    // batches of 256.
    let texts: Vec<String> = p.held.iter().map(|r| r.text.clone()).collect();
    let bytes = p.coach.service.artifacts().get(&p.model.artifact_hash)?;
    let host = p.coach.host.clone();
    let (single, batched) = tokio::task::spawn_blocking(move || -> Result<(f64, f64)> {
        let mut job = host.trainer(
            "trainer-intent",
            JobSpec {
                run: "bench".into(),
                step: "predict".into(),
                ..Default::default()
            },
        )?;
        let handle = job.load_model(&bytes)?;
        let n = texts.len().min(3000);
        let t = Instant::now();
        for text in &texts[..n] {
            job.predict(handle, std::slice::from_ref(text))?;
        }
        let single = n as f64 / t.elapsed().as_secs_f64();
        let t = Instant::now();
        job.predict_all(handle, &texts)?;
        Ok((single, texts.len() as f64 / t.elapsed().as_secs_f64()))
    })
    .await??;

    let peer = match args.peer {
        None => None,
        Some(Peer::Sklearn) => {
            let train: Vec<&Example> = p.fitted.iter().collect();
            let held: Vec<&Example> = p.held.iter().collect();
            // Out of fold over what the final model was fitted on, as many
            // folds as the trainer's own figures, where it has them.
            let folds = p.cv.in_scope_accuracy.and(p.cv.folds);
            Some(run_sklearn(
                p._scratch.path(),
                &train,
                &held,
                &p.report.oos_label,
                folds,
            )?)
        }
    };
    let name = match (dataset, variant) {
        (Dataset::Clinc150, Some(v)) if args.setting == Setting::OosThreshold => {
            format!("clinc150/{}/oos-threshold", v.name())
        }
        (Dataset::Clinc150, Some(v)) => format!("clinc150/{}", v.name()),
        (d, _) => format!("{d:?}").to_lowercase(),
    };
    Ok(Outcome {
        name,
        cv: p.cv,
        model_bytes: p.model.artifact_size,
        train_seconds: p.train_seconds,
        report: p.report,
        predict_single: single,
        predict_batched: batched,
        peer,
    })
}

/// The peer's scores on `held` after fitting `train`, as JSON; with
/// `folds`, its out-of-fold scores over `train` too (`cv_*`).
fn run_sklearn(
    dir: &Path,
    train: &[&Example],
    held: &[&Example],
    oos: &str,
    folds: Option<u32>,
) -> Result<Value> {
    let write = |name: &str, rows: &[&Example]| -> Result<PathBuf> {
        let path = dir.join(name);
        let mut out = String::new();
        for r in rows {
            out.push_str(&json!({"text": r.text, "intent": r.intent}).to_string());
            out.push('\n');
        }
        std::fs::write(&path, out)?;
        Ok(path)
    };
    let train_path = write("peer-train.jsonl", train)?;
    let eval_path = write("peer-eval.jsonl", held)?;
    let script = dir.join("sklearn_peer.py");
    std::fs::write(&script, include_str!("sklearn_peer.py"))?;
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg(&train_path)
        .arg(&eval_path)
        .arg(oos)
        .args(folds.map(|k| k.to_string()))
        .output()
        .context("cannot run python3 for the sklearn peer")?;
    if !out.status.success() {
        bail!(
            "the sklearn peer failed (it needs python3 with scikit-learn: `pip install scikit-learn`): {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
    }
    serde_json::from_slice(&out.stdout).context("the sklearn peer printed no JSON")
}

pub async fn run(config: Config, args: Args) -> Result<ExitCode> {
    let variants: Vec<Option<Variant>> = match args.dataset {
        Dataset::Clinc150 if args.variant.is_empty() => [
            Variant::Full,
            Variant::Small,
            Variant::Imbalanced,
            Variant::OosPlus,
        ]
        .into_iter()
        .map(Some)
        .collect(),
        Dataset::Clinc150 => args.variant.iter().copied().map(Some).collect(),
        _ => vec![None],
    };
    let mut outcomes = Vec::new();
    for v in variants {
        if !args.json {
            note!(
                "running {:?}{} …",
                args.dataset,
                v.map(|v| format!(" {}", v.name())).unwrap_or_default()
            );
        }
        outcomes.push(run_one(&config, args.dataset, &args.data, v, &args).await?);
    }
    if args.json {
        let v: Vec<Value> = outcomes
            .iter()
            .map(|o| {
                json!({
                    "dataset": o.name, "split": o.report.split, "examples": o.report.examples,
                    "in_scope_accuracy": o.report.in_scope_accuracy, "oos_recall": o.report.oos_recall,
                    "accuracy": o.report.accuracy, "macro_f1": o.report.macro_f1, "ece": o.report.ece,
                    "cross_validated": {
                        "in_scope_accuracy": o.cv.in_scope_accuracy, "oos_recall": o.cv.oos_recall,
                        "in_scope_rejected": o.cv.in_scope_rejected,
                        "top_intent_accuracy": o.cv.top_accuracy, "folds": o.cv.folds,
                    },
                    "validation_in_training": o.cv.validation_in_training,
                    "train_seconds": o.train_seconds, "model_bytes": o.model_bytes,
                    "predict_per_second": {"one_per_call": o.predict_single, "batches_of_256": o.predict_batched},
                    "peer": o.peer,
                    "ratios": o.peer.as_ref().map(|p| json!({
                        "train_time_coach_over_peer": p["fit_seconds"].as_f64().map(|f| o.train_seconds / f),
                        "in_scope_accuracy_coach_minus_peer": p["in_scope_accuracy"].as_f64().zip(o.report.in_scope_accuracy).map(|(p, c)| c - p),
                        "cross_validated_in_scope_accuracy_coach_minus_peer": p["cv_in_scope_accuracy"].as_f64().zip(o.cv.in_scope_accuracy).map(|(p, c)| c - p),
                    })),
                })
            })
            .collect();
        out!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let opt = |v: Option<f64>| v.map(pct).unwrap_or_else(|| "-".into());
    out!(
        "\n{:<34} {:>10} {:>9} {:>9} {:>9} {:>6} {:>8} {:>12} {:>12}",
        "dataset",
        "split",
        "in-scope",
        "OOS rec.",
        "macro-F1",
        "ECE",
        "train s",
        "pred/s (1)",
        "pred/s (256)"
    );
    for o in &outcomes {
        out!(
            "{:<34} {:>10} {:>9} {:>9} {:>9} {:>6.3} {:>8.2} {:>12.0} {:>12.0}",
            format!("coach {}", o.name),
            o.report.split,
            opt(o.report.in_scope_accuracy),
            opt(o.report.oos_recall),
            pct(o.report.macro_f1),
            o.report.ece,
            o.train_seconds,
            o.predict_single,
            o.predict_batched
        );
        if o.cv.in_scope_accuracy.is_some() {
            out!(
                "{:<34} {:>10} {:>9} {:>9}   in-scope rejected {}, top intent {}, model {:.1} MB",
                "  cross-validated",
                o.cv.examples(),
                opt(o.cv.in_scope_accuracy),
                opt(o.cv.oos_recall),
                opt(o.cv.in_scope_rejected),
                opt(o.cv.top_accuracy),
                o.model_bytes as f64 / 1e6
            );
        }
        if let Some(p) = &o.peer {
            let fit = p["fit_seconds"].as_f64().unwrap_or(f64::NAN);
            out!(
                "{:<34} {:>10} {:>9} {:>9} {:>9} {:>6} {:>8.2} {:>12} {:>12.0}",
                "  sklearn peer",
                o.report.split,
                opt(p["in_scope_accuracy"].as_f64()),
                opt(p["oos_recall"].as_f64()),
                opt(p["macro_f1"].as_f64()),
                "-",
                fit,
                "-",
                p["predict_per_second"].as_f64().unwrap_or(f64::NAN)
            );
            let cv_in = p["cv_in_scope_accuracy"].as_f64();
            if cv_in.is_some() {
                out!(
                    "{:<34} {:>10} {:>9} {:>9}   {} folds over the {} examples the model was fitted on",
                    "  peer cross-validated",
                    o.cv.examples(),
                    opt(cv_in),
                    opt(p["cv_oos_recall"].as_f64()),
                    p["cv_folds"].as_u64().unwrap_or_default(),
                    p["cv_examples"].as_u64().unwrap_or_default()
                );
            } else if let Some(why) = p["cv_skipped"].as_str() {
                out!("{:<34} not cross-validated: {why}", "  peer");
            }
            let delta = |peer: Option<f64>, coach: Option<f64>, what: &str| {
                peer.zip(coach)
                    .map(|(p, c)| format!(", {what} coach − peer = {:+.1} points", (c - p) * 100.0))
                    .unwrap_or_default()
            };
            out!(
                "{:<34} training time coach/peer = {:.2}x{}{}",
                "  ratio",
                o.train_seconds / fit,
                delta(
                    p["in_scope_accuracy"].as_f64(),
                    o.report.in_scope_accuracy,
                    &format!("{} in-scope accuracy", o.report.split)
                ),
                delta(
                    cv_in,
                    o.cv.in_scope_accuracy,
                    "cross-validated in-scope accuracy"
                )
            );
        }
    }
    if args.dataset.closed_set() && !args.with.contains("oos_reject_rate") {
        out!(
            "\n{:?} is closed-set: the trainer's rejection of unknown messages is off (oos_reject_rate = 0; set it with --with)",
            args.dataset
        );
    }
    if args.dataset == Dataset::Clinc150 {
        out!(
            "\npublished, CLINC150 Full test split, oos-train (Larson et al., EMNLP 2019, Table 2):"
        );
        for (name, acc, rec) in PUBLISHED {
            out!("  {name:<12} in-scope {acc:>5.1}%   OOS recall {rec:>5.1}%");
        }
        if outcomes.iter().any(|o| o.report.split != "test") {
            out!(
                "(Coach is scored on the split named above: this folder's data has no test split.)"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
pub struct EntityArgs {
    /// restaurant8k, snips or hwu64 (the datasets with labelled spans).
    #[arg(long, value_enum)]
    pub dataset: Dataset,
    /// The dataset's folder.
    #[arg(long)]
    pub data: PathBuf,
    /// Trainer parameters as JSON (the workflow's `with` table).
    #[arg(long, default_value = "{}")]
    pub with: String,
    #[arg(long)]
    pub json: bool,
}

/// `coach bench entities`: span-level precision, recall and F1 (exact type
/// and offsets) of the trainer's entity extraction on held-out examples.
pub async fn run_entities(config: Config, args: EntityArgs) -> Result<ExitCode> {
    if matches!(args.dataset, Dataset::Clinc150 | Dataset::Banking77) {
        bail!(
            "{:?} has no entity annotations; use restaurant8k, snips or hwu64",
            args.dataset
        );
    }
    let plan = plan(
        args.dataset,
        &args.data,
        None,
        &args.with,
        Setting::OosTrain,
    )?;
    let p = prepare(&config, &args.data, &plan).await?;
    let held = &p.held;
    let texts: Vec<String> = held.iter().map(|e| e.text.clone()).collect();
    let bytes = p.coach.service.artifacts().get(&p.model.artifact_hash)?;
    let host = p.coach.host.clone();
    let (predicted, per_second) = tokio::task::spawn_blocking(move || -> Result<_> {
        let mut job = host.trainer(
            "trainer-intent",
            JobSpec {
                run: "bench".into(),
                step: "entities".into(),
                ..Default::default()
            },
        )?;
        let handle = job.load_model(&bytes)?;
        let t = Instant::now();
        let out: Vec<_> = job
            .predict_all(handle, &texts)?
            .into_iter()
            .map(|p| p.entities)
            .collect();
        Ok((out, texts.len() as f64 / t.elapsed().as_secs_f64()))
    })
    .await??;
    // Per entity type: (true positives, predicted, gold).
    let mut by_type: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
    for (e, got) in held.iter().zip(&predicted) {
        for g in &e.entities {
            by_type.entry(g.entity.clone()).or_default().2 += 1;
        }
        for s in got {
            let entry = by_type.entry(s.entity.clone()).or_default();
            entry.1 += 1;
            if e.entities
                .iter()
                .any(|g| g.entity == s.entity && g.start == s.start && g.end == s.end)
            {
                entry.0 += 1;
            }
        }
    }
    let prf = |tp: usize, pr: usize, gd: usize| {
        let p = if pr == 0 { 0.0 } else { tp as f64 / pr as f64 };
        let r = if gd == 0 { 0.0 } else { tp as f64 / gd as f64 };
        (
            p,
            r,
            if p + r == 0.0 {
                0.0
            } else {
                2.0 * p * r / (p + r)
            },
        )
    };
    let total = by_type
        .values()
        .fold((0, 0, 0), |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2));
    let (mp, mr, mf) = prf(total.0, total.1, total.2);
    let name = format!("{:?}", args.dataset).to_lowercase();
    if args.json {
        let v = json!({
            "dataset": name, "split": p.report.split, "examples": held.len(), "spans": total.2,
            "precision": mp, "recall": mr, "f1": mf,
            "train_seconds": p.train_seconds, "predict_per_second": per_second,
            "per_entity": by_type.iter().map(|(k, &(tp, pr, gd))| { let (p, r, f) = prf(tp, pr, gd); json!({"entity": k, "precision": p, "recall": r, "f1": f, "support": gd}) }).collect::<Vec<_>>(),
        });
        out!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    out!(
        "\n{name}: span-level scores on the {} split ({} examples, {} labelled spans); training {:.2} s, {:.0} utterances/s",
        p.report.split,
        held.len(),
        total.2,
        p.train_seconds,
        per_second
    );
    out!(
        "  {:<28} {:>9} {:>7} {:>6} {:>7}",
        "entity",
        "precision",
        "recall",
        "F1",
        "support"
    );
    for (k, &(tp, pr, gd)) in &by_type {
        let (p, r, f) = prf(tp, pr, gd);
        out!(
            "  {:<28} {:>9} {:>7} {:>6} {:>7}",
            k,
            pct(p),
            pct(r),
            pct(f),
            gd
        );
    }
    out!(
        "  {:<28} {:>9} {:>7} {:>6} {:>7}",
        "all (micro)",
        pct(mp),
        pct(mr),
        pct(mf),
        total.2
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_name_of_any_characters_reads_back_from_the_workflow() {
        let scratch = tempfile::tempdir().unwrap();
        // A decomposed accent, a no-break space, a quote and a backslash.
        let dir = scratch.path().join("Donne\u{301}es\u{a0}\"q\\b");
        std::fs::create_dir(&dir).unwrap();
        let text = format!("path = {}", toml_path(&dir).unwrap());
        let v: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(
            v["path"].as_str(),
            dir.canonicalize().unwrap().to_str(),
            "{text}"
        );
    }
}
