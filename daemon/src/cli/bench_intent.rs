//! `coach bench intent`: train and evaluate the default trainer on a public
//! dataset through the real pipeline, in a scratch store, and print the
//! scores beside the published table and, optionally, the sklearn peer run
//! on the very same examples.

use super::pct;
use crate::Coach;
use crate::config::Config;
use crate::pipeline::{Reporter, evaluate::Report};
use crate::plugin::JobSpec;
use crate::workflow::Workflow;
use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Dataset {
    Clinc150,
    Banking77,
    Hwu64,
    Snips,
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

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, value_enum)]
    pub dataset: Dataset,
    /// The dataset's folder (e.g. `…/datasets/clinc150`).
    #[arg(long)]
    pub data: PathBuf,
    /// CLINC150 variants to run (default: all four).
    #[arg(long, value_enum)]
    pub variant: Vec<Variant>,
    /// Also run this peer on the same examples, in the same invocation.
    #[arg(long, value_enum)]
    pub peer: Option<Peer>,
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

/// Step start and end times.
#[derive(Default)]
struct Timer(Mutex<BTreeMap<String, (Instant, Option<Duration>)>>);

impl Reporter for Timer {
    fn step_started(&self, step: &str, _action: &str, _attempt: u32) {
        self.0
            .lock()
            .expect("timer")
            .insert(step.to_owned(), (Instant::now(), None));
    }
    fn step_finished(&self, step: &str, _result: Result<&str, &str>) {
        if let Some(e) = self.0.lock().expect("timer").get_mut(step) {
            e.1 = Some(e.0.elapsed());
        }
    }
}

impl Timer {
    fn seconds(&self, step: &str) -> f64 {
        self.0
            .lock()
            .expect("timer")
            .get(step)
            .and_then(|e| e.1)
            .map(|d| d.as_secs_f64())
            .unwrap_or(f64::NAN)
    }
}

struct Outcome {
    name: String,
    report: Report,
    train_seconds: f64,
    predict_single: f64,
    predict_batched: f64,
    peer: Option<Value>,
}

/// The workflow for one dataset, written to `dir`.
fn workflow(dataset: Dataset, data: &Path, variant: Option<Variant>, with: &str) -> Result<String> {
    let (format, path, split) = match dataset {
        Dataset::Clinc150 => (
            "clinc150",
            data.join(variant.unwrap_or(Variant::Full).file()),
            r#"{ mode = "keep" }"#,
        ),
        Dataset::Banking77 => (
            "banking77",
            data.join("train.csv"),
            r#"{ mode = "stratified", validation = 0.1, test = 0.0, seed = 7 }"#,
        ),
        Dataset::Hwu64 => (
            "hwu64",
            data.join("trainset"),
            r#"{ mode = "stratified", validation = 0.1, test = 0.0, seed = 7 }"#,
        ),
        Dataset::Snips => (
            "snips",
            data.to_path_buf(),
            r#"{ mode = "stratified", validation = 0.1, test = 0.0, seed = 7 }"#,
        ),
    };
    if !path.exists() {
        bail!(
            "{} does not exist; --data must be the dataset's folder",
            path.display()
        );
    }
    let with: Value = serde_json::from_str(with).context("--with must be a JSON object")?;
    let Value::Object(with) = with else {
        bail!("--with must be a JSON object")
    };
    let with_toml = toml::to_string(&toml::Value::try_from(&with)?)?.replace('\n', ", ");
    let with_toml = with_toml.trim_end_matches(", ");
    Ok(format!(
        r#"version = 1
name = "bench"

[[step]]
id = "data"
uses = "source-files"
with = {{ format = "{format}", path = {path:?} }}

[[step]]
id = "split"
kind = "split"
needs = ["data"]
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
        path = path.canonicalize()?.display().to_string()
    ))
}

async fn run_one(
    base: &Config,
    dataset: Dataset,
    data: &Path,
    variant: Option<Variant>,
    args: &Args,
) -> Result<Outcome> {
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
    let coach = Coach::open(config).await?;
    let text = workflow(dataset, data, variant, &args.with)?;
    let file = scratch.path().join("bench.toml");
    std::fs::write(&file, &text)?;
    let wf = Workflow::parse(&file, &text, &coach.catalog()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let timer = Arc::new(Timer::default());
    let summary = coach
        .runner()
        .run(&wf, timer.clone(), Arc::new(AtomicBool::new(false)))
        .await?;
    if let Some(e) = summary.error {
        bail!("{e}");
    }
    let report = summary
        .evaluation
        .context("the run produced no evaluation")?;
    let model = summary.model.context("the run registered no model")?;

    // Prediction throughput through the plugin: one utterance per call, and
    // batches of 256.
    let rows = coach.store.load_examples(model.dataset_version_id).await?;
    let split = report.split.clone();
    let held: Vec<&crate::store::StoredExample> =
        rows.iter().filter(|r| r.split == split).collect();
    let texts: Vec<String> = held.iter().map(|r| r.text.clone()).collect();
    let bytes = coach.artifacts.get(&model.artifact_hash)?;
    let host = coach.host.clone();
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
        for chunk in texts.chunks(256) {
            job.predict(handle, chunk)?;
        }
        Ok((single, texts.len() as f64 / t.elapsed().as_secs_f64()))
    })
    .await??;

    let peer = match args.peer {
        None => None,
        Some(Peer::Sklearn) => {
            let train: Vec<&crate::store::StoredExample> = rows
                .iter()
                .filter(|r| r.split == "train" || r.split == "unspecified")
                .collect();
            Some(run_sklearn(
                scratch.path(),
                &train,
                &held,
                &report.oos_label,
            )?)
        }
    };
    let name = match (dataset, variant) {
        (Dataset::Clinc150, Some(v)) => format!("clinc150/{}", v.name()),
        (d, _) => format!("{d:?}").to_lowercase(),
    };
    Ok(Outcome {
        name,
        train_seconds: timer.seconds("train"),
        report: (*report).clone(),
        predict_single: single,
        predict_batched: batched,
        peer,
    })
}

fn run_sklearn(
    dir: &Path,
    train: &[&crate::store::StoredExample],
    held: &[&crate::store::StoredExample],
    oos: &str,
) -> Result<Value> {
    let write = |name: &str, rows: &[&crate::store::StoredExample]| -> Result<PathBuf> {
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
    std::fs::write(&script, include_str!("bench_sklearn_peer.py"))?;
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg(&train_path)
        .arg(&eval_path)
        .arg(oos)
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
            eprintln!(
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
                    "train_seconds": o.train_seconds,
                    "predict_per_second": {"one_per_call": o.predict_single, "batches_of_256": o.predict_batched},
                    "peer": o.peer,
                    "ratios": o.peer.as_ref().map(|p| json!({
                        "train_time_coach_over_peer": p["fit_seconds"].as_f64().map(|f| o.train_seconds / f),
                        "in_scope_accuracy_coach_minus_peer": p["in_scope_accuracy"].as_f64().zip(o.report.in_scope_accuracy).map(|(p, c)| c - p),
                    })),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let opt = |v: Option<f64>| v.map(pct).unwrap_or_else(|| "-".into());
    println!(
        "\n{:<22} {:>10} {:>9} {:>9} {:>9} {:>6} {:>8} {:>12} {:>12}",
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
        println!(
            "{:<22} {:>10} {:>9} {:>9} {:>9} {:>6.3} {:>8.2} {:>12.0} {:>12.0}",
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
        if let Some(p) = &o.peer {
            let fit = p["fit_seconds"].as_f64().unwrap_or(f64::NAN);
            println!(
                "{:<22} {:>10} {:>9} {:>9} {:>9} {:>6} {:>8.2} {:>12} {:>12.0}",
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
            let delta = p["in_scope_accuracy"]
                .as_f64()
                .zip(o.report.in_scope_accuracy)
                .map(|(p, c)| (c - p) * 100.0);
            println!(
                "{:<22} training time coach/peer = {:.2}x{}",
                "  ratio",
                o.train_seconds / fit,
                delta
                    .map(|d| format!(", in-scope accuracy coach − peer = {d:+.1} points"))
                    .unwrap_or_default()
            );
        }
    }
    if args.dataset == Dataset::Clinc150 {
        println!(
            "\npublished, CLINC150 Full test split, oos-train (Larson et al., EMNLP 2019, Table 2):"
        );
        for (name, acc, rec) in PUBLISHED {
            println!("  {name:<12} in-scope {acc:>5.1}%   OOS recall {rec:>5.1}%");
        }
        println!(
            "(Coach is scored on the split named above: the public test split is held back here.)"
        );
    }
    Ok(ExitCode::SUCCESS)
}
