//! `coach plugin run DIR`: the plugin in the real sandbox — the engine,
//! limits, grants and output checks a workflow step gets — and what it
//! produced, as Coach would take it:
//!
//! - a source: its records (after the host's checks), bad records, the
//!   checkpoint it would resume from;
//! - a trainer: trained on `--input` (Coach JSONL examples; `validation`
//!   examples go to validation, `test` ones are scored after), its metrics
//!   and model size, and predictions for `--text`;
//! - an analyzer: its analysis of each conversation in `--input`.

use super::{print_report, refuse};
use crate::cli::{note, out};
use crate::config::Config;
use crate::core::example::{EntitySpan, Example, Split, label_problem, span_problem};
use crate::core::text::printable;
use crate::plugin::inspect;
use crate::plugin::manifest::{Kind, Manifest, ParamType};
use crate::plugin::{JobSpec, PluginHost};
use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The plugin: a folder, its `plugin.toml`, or its `.wasm`.
    #[arg(default_value = ".")]
    pub target: PathBuf,
    /// A parameter, `KEY=VALUE` (VALUE read as JSON when it is: numbers,
    /// `true`, `["a","b"]`); as a step's `with` would set it.
    #[arg(long = "with", value_name = "KEY=VALUE")]
    pub with: Vec<String>,
    /// Trainers: labelled examples (Coach JSONL: `text`, `intent`, and
    /// optionally `split`, `entities`). Analyzers: conversations (Coach
    /// JSONL, Rasa tracker dump or CSV of turns).
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Trainers: a text to predict after training (repeatable).
    #[arg(long = "text")]
    pub texts: Vec<String>,
    /// Sources: resume from this checkpoint, as after a restart.
    #[arg(long)]
    pub checkpoint: Option<String>,
    /// Sources: records per batch.
    #[arg(long, default_value_t = 1024)]
    pub batch: u32,
    /// Let the plugin read PATH for this run only, as a grant in the
    /// config would (the config's grants apply as well).
    #[arg(long, value_name = "PATH")]
    pub grant: Vec<PathBuf>,
    /// Let the plugin send HTTP requests to HOST for this run only
    /// (`api.example.com`, `*.example.com`, `127.0.0.1:8080`), as
    /// `[grants.<id>] http` would.
    #[arg(long = "grant-http", value_name = "HOST")]
    pub grant_http: Vec<String>,
    /// Let granted hosts be loopback or private addresses (a server on
    /// this machine, for a test).
    #[arg(long)]
    pub private_network: bool,
    /// Give the plugin secret NAME, its value taken from Coach's
    /// environment variable of the same name.
    #[arg(long = "secret", value_name = "NAME")]
    pub secrets: Vec<String>,
    /// Records (or predictions) printed; everything goes in `--json`.
    #[arg(long, default_value_t = 10)]
    pub show: usize,
    /// The whole output as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(mut config: Config, a: Args) -> Result<ExitCode> {
    let manifest_path = inspect::manifest_path(&a.target);
    let text = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("cannot read {}", manifest_path.display()))?;
    // Only to know whose grants to extend; the check below says the rest.
    if let Ok(m) = Manifest::parse(&text, "plugin.toml") {
        let grant = config.grants.entry(m.id.to_string()).or_default();
        for g in &a.grant {
            let canonical = g
                .canonicalize()
                .with_context(|| format!("--grant {}: cannot open it", g.display()))?;
            grant.read.push(canonical);
        }
        for h in &a.grant_http {
            grant.http.push(
                crate::plugin::net::HostPattern::parse(h)
                    .map_err(|e| anyhow!("--grant-http: {e}"))?,
            );
        }
        if a.private_network {
            grant.private_network = crate::plugin::net::PrivateNetwork::All;
        }
        for name in &a.secrets {
            let value = std::env::var(name).map_err(|_| {
                anyhow!("--secret {name}: the environment variable `{name}` is not set")
            })?;
            grant.secrets.insert(name.clone(), value);
        }
    }
    let host = Arc::new(PluginHost::new(&config)?);
    let report = inspect::inspect(&host, &config, &a.target);
    if report.errors() > 0 {
        print_report(&report, false)?;
        return refuse(&report, "run");
    }
    let plugin = host.load_folder(&report.manifest_path)?;
    let manifest = plugin.manifest.clone();
    let (params, read_paths) = params(&manifest, &a.with)?;
    let (memory, timeout) = host.effective_limits(&plugin, None);
    let spec = JobSpec {
        run: "plugin-run".into(),
        step: manifest.id.to_string(),
        read_paths,
        ..Default::default()
    };
    if !a.json {
        note!(
            "{} {} ({}) in the sandbox: memory {}, time {}",
            manifest.id,
            manifest.version,
            manifest.kind,
            crate::config::units::format_size(memory),
            crate::config::units::format_duration(timeout)
        );
    }
    let started = Instant::now();
    match manifest.kind {
        Kind::Source => source(host, &manifest, params, spec, &a, started).await,
        Kind::Trainer => trainer(host, &manifest, params, spec, &a, started).await,
        Kind::Analyzer => analyzer(host, &manifest, params, &a, started).await,
    }
}

/// The step parameters from `--with`, checked against the manifest as a
/// workflow's would be; `path` parameters made absolute (from the current
/// folder) and returned apart, to be checked against the grants.
fn params(manifest: &Manifest, with: &[String]) -> Result<(Map<String, Value>, Vec<PathBuf>)> {
    let mut o = Map::new();
    let mut paths = Vec::new();
    for w in with {
        let (k, v) = w
            .split_once('=')
            .ok_or_else(|| anyhow!("--with `{}`: expected KEY=VALUE", printable(w)))?;
        let Some(p) = manifest.parameters.get(k) else {
            bail!(
                "--with {k}: `{}` has no parameter `{k}`; it takes: {}",
                manifest.id,
                if manifest.parameters.is_empty() {
                    "none".to_owned()
                } else {
                    manifest
                        .parameters
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            );
        };
        let mut value = match p.ty {
            ParamType::String | ParamType::Path => Value::String(v.to_owned()),
            _ => serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_owned())),
        };
        if p.ty == ParamType::Path {
            let path = Path::new(v);
            let absolute = std::path::absolute(path)
                .with_context(|| format!("--with {k}: cannot resolve {v}"))?;
            value = Value::String(absolute.display().to_string());
            paths.push(absolute);
        }
        if !p.ty.admits(&value) {
            bail!("--with {k}: must be {}, got {value}", p.ty);
        }
        if let Some(s) = value.as_str()
            && !p.one_of.is_empty()
            && !p.one_of.iter().any(|o| o == s)
        {
            bail!("--with {k}: `{s}` is not one of {}", p.one_of.join(", "));
        }
        o.insert(k.to_owned(), value);
    }
    for (name, p) in &manifest.parameters {
        if p.required && !o.contains_key(name) {
            bail!(
                "parameter `{name}` is required: --with {name}=…  ({})",
                p.description
            );
        }
    }
    Ok((o, paths))
}

fn example_json(e: &Example) -> Value {
    json!({
        "text": e.text,
        "intent": e.intent,
        "split": e.split.as_str(),
        "entities": e.entities,
    })
}

async fn source(
    host: Arc<PluginHost>,
    manifest: &Manifest,
    params: Map<String, Value>,
    spec: JobSpec,
    a: &Args,
    started: Instant,
) -> Result<ExitCode> {
    let id = manifest.id.to_string();
    let config = Value::Object(params).to_string();
    let (batch, checkpoint) = (a.batch.max(1), a.checkpoint.clone());
    let out = tokio::task::spawn_blocking(move || {
        let limits = host.limits();
        host.source(&id, spec)?
            .read_from(&config, checkpoint.as_deref(), batch, &limits)
    })
    .await
    .context("the source job panicked")??;
    let elapsed = started.elapsed();
    let examples: Vec<Example> = out
        .examples
        .iter()
        .map(crate::plugin::convert::from_guest)
        .collect();
    if a.json {
        let v = json!({
            "plugin": manifest.id.to_string(),
            "kind": "source",
            "seconds": elapsed.as_secs_f64(),
            "batches": out.batches,
            "examples": examples.iter().map(example_json).collect::<Vec<_>>(),
            "conversations": out.conversations,
            "records": out.records,
            "bad_records": out.bad_records,
            "first_bad": out.first_bad.iter().map(|(l, r)| json!({"location": l, "reason": r})).collect::<Vec<_>>(),
            "doubtful": out.doubtful,
            "checkpoint": out.checkpoint,
        });
        out!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    out!(
        "{} examples, {} conversations in {} batch(es) of at most {} in {:.0} ms; the plugin counted {} records, {} bad",
        examples.len(),
        out.conversations.len(),
        out.batches,
        a.batch.max(1),
        elapsed.as_secs_f64() * 1e3,
        out.records,
        out.bad_records
    );
    for e in examples.iter().take(a.show) {
        out!(
            "  {:<24} {:<11} {}",
            e.intent,
            e.split.as_str(),
            printable(&e.text)
        );
    }
    for c in out.conversations.iter().take(a.show) {
        out!(
            "  conversation {} ({} turns)",
            printable(&c.id),
            c.turns.len()
        );
    }
    let shown = examples.len().min(a.show) + out.conversations.len().min(a.show);
    if examples.len() + out.conversations.len() > shown {
        out!(
            "  … {} more (--show N, or --json for all)",
            examples.len() + out.conversations.len() - shown
        );
    }
    let mut intents: std::collections::BTreeMap<&str, usize> = Default::default();
    for e in &examples {
        *intents.entry(e.intent.as_str()).or_default() += 1;
    }
    if !intents.is_empty() {
        out!(
            "intents: {}",
            intents
                .iter()
                .map(|(i, n)| format!("{i} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for (l, r) in &out.first_bad {
        out!("bad record: {l}: {r}");
    }
    if let Some(d) = &out.doubtful {
        out!("note: {d}");
    }
    if let Some(c) = &out.checkpoint {
        out!(
            "checkpoint: {}  (`--checkpoint` resumes from here)",
            serde_json::to_string(c)?
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Labelled examples from a Coach JSONL file, every problem located.
fn read_examples(file: &Path) -> Result<Vec<Example>> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Line {
        text: String,
        intent: String,
        #[serde(default)]
        entities: Vec<EntitySpan>,
        #[serde(default)]
        split: Option<Split>,
    }
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut examples = Vec::new();
    let mut problems = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("{}:{}", file.display(), i + 1);
        match serde_json::from_str::<Line>(line) {
            Ok(l) => {
                let e = Example {
                    text: l.text,
                    intent: l.intent,
                    entities: l.entities,
                    split: l.split.unwrap_or(Split::Unspecified),
                };
                let why = label_problem("intent", &e.intent)
                    .or_else(|| e.entities.iter().find_map(|s| span_problem(&e.text, s)));
                match why {
                    Some(why) => problems.push(format!("{at}: {why}")),
                    None => examples.push(e),
                }
            }
            Err(e) => problems.push(format!("{at}: {e}")),
        }
        if problems.len() >= 20 {
            break;
        }
    }
    if !problems.is_empty() {
        bail!(
            "{} has problems:\n  {}",
            file.display(),
            problems.join("\n  ")
        );
    }
    if examples.is_empty() {
        bail!("{} holds no examples", file.display());
    }
    Ok(examples)
}

async fn trainer(
    host: Arc<PluginHost>,
    manifest: &Manifest,
    params: Map<String, Value>,
    spec: JobSpec,
    a: &Args,
    started: Instant,
) -> Result<ExitCode> {
    let Some(input) = &a.input else {
        bail!(
            "a trainer needs examples to train on: --input FILE (Coach JSONL: {{\"text\": …, \"intent\": …, \"split\": \"train\"|\"validation\"|\"test\"}})"
        );
    };
    let examples = read_examples(input)?;
    let to_guest = |split: &dyn Fn(Split) -> bool| -> Vec<_> {
        examples
            .iter()
            .filter(|e| split(e.split))
            .map(crate::plugin::convert::to_guest)
            .collect()
    };
    let train = to_guest(&|s| matches!(s, Split::Train | Split::Unspecified));
    let validation = to_guest(&|s| s == Split::Validation);
    let test: Vec<&Example> = examples.iter().filter(|e| e.split == Split::Test).collect();
    if train.is_empty() {
        bail!(
            "{} has no training examples (only validation or test)",
            input.display()
        );
    }
    let id = manifest.id.to_string();
    let config = Value::Object(params).to_string();
    let mut texts: Vec<String> = a.texts.clone();
    texts.extend(test.iter().map(|e| e.text.clone()));
    let (n_train, n_validation) = (train.len(), validation.len());
    let (trained, predictions, train_seconds) = tokio::task::spawn_blocking(move || {
        let mut job = host.trainer(&id, spec)?;
        let t = Instant::now();
        let trained = job.train(&config, &train, &validation)?;
        let seconds = t.elapsed().as_secs_f64();
        let predictions = if texts.is_empty() {
            Vec::new()
        } else {
            let model = job.load_model(&trained.model)?;
            job.predict_all(model, &texts)?
        };
        anyhow::Ok((trained, predictions, seconds))
    })
    .await
    .context("the trainer job panicked")??;
    let asked = a.texts.len();
    let correct = test
        .iter()
        .zip(&predictions[asked..])
        .filter(|(e, p)| e.intent == p.intent)
        .count();
    let test_accuracy = (!test.is_empty()).then(|| correct as f64 / test.len() as f64);
    let prediction_json = |text: &str, p: &crate::plugin::bindings::Prediction| {
        json!({
            "text": text,
            "intent": p.intent,
            "confidence": p.confidence,
            "ranking": p.ranking.iter().map(|r| json!({"intent": r.intent, "confidence": r.confidence})).collect::<Vec<_>>(),
            "entities": p.entities.iter().map(|e| json!({"entity": e.entity, "start": e.start, "end": e.end, "value": e.value})).collect::<Vec<_>>(),
        })
    };
    if a.json {
        let v = json!({
            "plugin": manifest.id.to_string(),
            "kind": "trainer",
            "seconds": started.elapsed().as_secs_f64(),
            "train_seconds": train_seconds,
            "train_examples": n_train,
            "validation_examples": n_validation,
            "model_bytes": trained.model.len(),
            "metrics": trained.metrics.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<Map<_, _>>(),
            "progress_metrics": trained.progress_metrics.iter().map(|(k, v, s)| json!({"name": k, "value": v, "step": s})).collect::<Vec<_>>(),
            "predictions": a.texts.iter().zip(&predictions).map(|(t, p)| prediction_json(t, p)).collect::<Vec<_>>(),
            "test_examples": test.len(),
            "test_accuracy": test_accuracy,
        });
        out!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    out!(
        "trained on {n_train} examples ({n_validation} validation) in {train_seconds:.2} s; model {}",
        crate::config::units::format_size(trained.model.len() as u64)
    );
    for (k, v) in &trained.metrics {
        out!("  {k:<24} {v:.4}");
    }
    let per_step = trained.progress_metrics.len();
    if per_step > 0 {
        out!("  ({per_step} per-epoch metrics reported)");
    }
    for (t, p) in a.texts.iter().zip(&predictions).take(a.show.max(asked)) {
        out!("  {:?} → {} ({:.2})", printable(t), p.intent, p.confidence);
    }
    if let Some(acc) = test_accuracy {
        out!(
            "test: {correct} of {} right ({})",
            test.len(),
            crate::cli::pct(acc)
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn analyzer(
    host: Arc<PluginHost>,
    manifest: &Manifest,
    params: Map<String, Value>,
    a: &Args,
    started: Instant,
) -> Result<ExitCode> {
    let Some(input) = &a.input else {
        bail!(
            "an analyzer needs conversations: --input FILE (Coach JSONL, a Rasa tracker dump or a CSV of turns)"
        );
    };
    let conversations = crate::cli::conversations::read_file(input, None)?;
    let n = conversations.len();
    let analyses = crate::pipeline::analysis::analyze(
        host,
        manifest.id.as_str(),
        Value::Object(params),
        conversations,
    )
    .await?;
    if a.json {
        let v = json!({
            "plugin": manifest.id.to_string(),
            "kind": "analyzer",
            "seconds": started.elapsed().as_secs_f64(),
            "conversations": n,
            "analyses": analyses,
        });
        out!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    for x in analyses.iter().take(a.show) {
        crate::cli::analyze::show(x)?;
    }
    let (overall, _) = crate::pipeline::analysis::means(&analyses);
    out!(
        "{n} conversations analysed in {:.0} ms, mean score {overall:.1}",
        started.elapsed().as_secs_f64() * 1e3
    );
    Ok(ExitCode::SUCCESS)
}
