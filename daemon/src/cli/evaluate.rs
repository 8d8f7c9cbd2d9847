//! `coach evaluate --folds K <workflow.toml>`: stratified K-fold
//! cross-validation of a workflow's trainer on the workflow's own data —
//! what `rasa test nlu --cross-validation` gives.
//!
//! The steps up to the trainer's dataset run in a scratch store; the test
//! split, if any, stays held back. In each fold the trainer gets the other
//! folds (a stratified tenth of them as its validation split) and predicts
//! the held fold; the predictions of all folds are scored together.

use super::pct;
use crate::app::{App, Mode};
use crate::cli::{note, out};
use crate::config::Config;
use crate::core::evaluation::score;
use crate::core::example::Split;
use crate::core::params::Kind;
use crate::core::stop::RunStop;
use crate::events::LogReporter;
use crate::pipeline::steps::split::{self, SplitConfig};
use crate::pipeline::steps::train::train_and_predict;
use crate::plugin::JobSpec;
use crate::workflow::params::SplitMode;
use crate::workflow::set::Good;
use crate::workflow::{Action, Produces};
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The workflow whose data and trainer to cross-validate.
    pub workflow: PathBuf,
    /// Number of folds.
    #[arg(long, default_value_t = 5)]
    pub folds: usize,
    /// The trainer step (default: the workflow's first trainer).
    #[arg(long)]
    pub step: Option<String>,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Rows of the per-intent table (worst F1 first); 0 shows all.
    #[arg(long, default_value_t = 10)]
    pub intents: usize,
    #[arg(long)]
    pub json: bool,
}

pub async fn run(base: Config, args: Args) -> Result<ExitCode> {
    if args.folds < 2 {
        bail!("--folds must be at least 2");
    }
    let scratch = tempfile::tempdir()?;
    let mut config = base.clone();
    config.data_dir = scratch.path().join("data");
    config.database_url = String::new();
    let app = App::open(config, Mode::Command).await?;
    let good = app
        .service
        .load_workflow_file(&args.workflow)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let wf = &good.workflow;
    let trainer = match &args.step {
        Some(id) => wf
            .step(id)
            .with_context(|| format!("no step `{id}` in {}", wf.file.display()))?,
        None => wf
            .steps
            .iter()
            .find(|s| {
                matches!(
                    s.action,
                    Action::Plugin {
                        kind: Kind::Trainer,
                        ..
                    }
                )
            })
            .with_context(|| format!("{} has no trainer step", wf.file.display()))?,
    };
    let Action::Plugin {
        id: plugin,
        kind: Kind::Trainer,
    } = &trainer.action
    else {
        bail!("step `{}` is not a trainer", trainer.id);
    };
    let data_step = wf
        .nearest(&trainer.id, Produces::Dataset)
        .context("the trainer has no dataset")?;
    let upstream = Good::new(wf.upstream_of(&data_step.id), good.text.to_string());
    let summary = app
        .service
        .run_here(&upstream, Arc::new(LogReporter), &RunStop::new())
        .await?;
    if let Some(e) = summary.error {
        bail!("preparing the data failed: {e}");
    }
    let version = app
        .store
        .latest_dataset_version(&format!("{}/{}", wf.name, data_step.id))
        .await?
        .context("the data steps stored no dataset")?;
    let rows: Vec<_> = app
        .store
        .load_examples(version)
        .await?
        .into_iter()
        .filter(|r| r.split != Split::Test)
        .collect();
    let fold_of = split::folds(&rows, args.folds, args.seed);
    let config_json = Value::Object(trainer.with.clone());
    let oos = trainer
        .with
        .get("oos_label")
        .and_then(Value::as_str)
        .unwrap_or("oos")
        .to_owned();

    let mut scored: Vec<(String, String, f32)> = Vec::new();
    let mut per_fold = Vec::new();
    for fold in 0..args.folds {
        let mut train: Vec<_> = rows
            .iter()
            .zip(&fold_of)
            .filter(|(_, f)| **f != fold)
            .map(|(r, _)| r.clone())
            .collect();
        let held: Vec<_> = rows
            .iter()
            .zip(&fold_of)
            .filter(|(_, f)| **f == fold)
            .map(|(r, _)| r.clone())
            .collect();
        split::apply(
            &mut train,
            &SplitConfig {
                mode: SplitMode::Stratified,
                validation: 0.1,
                test: 0.0,
                seed: args.seed,
            },
        );
        let train_set: Vec<_> = train
            .iter()
            .filter(|r| r.split == Split::Train)
            .cloned()
            .collect();
        let validation: Vec<_> = train
            .iter()
            .filter(|r| r.split == Split::Validation)
            .cloned()
            .collect();
        let texts: Vec<String> = held.iter().map(|r| r.text.clone()).collect();
        let spec = JobSpec {
            run: "cross-validation".into(),
            step: format!("fold {}", fold + 1),
            timeout: trainer.timeout,
            ..Default::default()
        };
        let preds = train_and_predict(
            app.host.clone(),
            plugin,
            &config_json,
            &train_set,
            &validation,
            texts,
            spec,
        )
        .await?;
        let rows_fold: Vec<(String, String, f32)> = held
            .iter()
            .zip(preds)
            .map(|(r, (p, c))| (r.intent.clone(), p, c))
            .collect();
        let r = score("fold", &rows_fold, &oos, 0);
        if !args.json {
            note!(
                "fold {}/{}: accuracy {} on {} examples",
                fold + 1,
                args.folds,
                pct(r.accuracy),
                r.examples
            );
        }
        per_fold.push(r.accuracy);
        scored.extend(rows_fold);
    }
    let report = score(
        &format!("{}-fold cross-validation", args.folds),
        &scored,
        &oos,
        10,
    );
    debug_assert_eq!(scored.len(), rows.len());
    let mean = per_fold.iter().sum::<f64>() / per_fold.len() as f64;
    let sd = (per_fold.iter().map(|a| (a - mean).powi(2)).sum::<f64>()
        / (per_fold.len() - 1) as f64)
        .sqrt();
    if args.json {
        let mut v = serde_json::to_value(&report)?;
        v["fold_accuracy"] = json!(per_fold);
        v["fold_accuracy_mean"] = json!(mean);
        v["fold_accuracy_sd"] = json!(sd);
        out!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        out!(
            "\nper-fold accuracy {} ± {} (mean ± sd over {} folds)",
            pct(mean),
            pct(sd),
            args.folds
        );
        super::run::print_report(&report, args.intents)?;
    }
    Ok(ExitCode::SUCCESS)
}
