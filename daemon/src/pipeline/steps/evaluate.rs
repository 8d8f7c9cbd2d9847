//! An evaluate step: the nearest trained model predicts the held-out split
//! (the test split when the data has one, else validation) in a fresh
//! sandbox, and is scored: accuracy, macro-F1, in-scope accuracy and
//! out-of-scope recall, per-intent scores, confusions, calibration.

use super::{StepCtx, builtin_params, job_spec, model_for};
use crate::core::evaluation::score;
use crate::core::event::{LogLevel, StepEvent};
use crate::core::example::Split;
use crate::pipeline::Output;
use crate::plugin::PluginFailure;
use crate::workflow::Builtin;
use crate::workflow::params::{BuiltinParams, EvaluateOn};
use anyhow::{Context, Result, bail};
use std::sync::Arc;

pub async fn run(ctx: &StepCtx<'_>) -> Result<Output> {
    let BuiltinParams::Evaluate(p) = builtin_params(ctx, Builtin::Evaluate)? else {
        bail!("an evaluate step without evaluate parameters");
    };
    let model = model_for(ctx)?.clone();
    let split = match p.on {
        EvaluateOn::Auto if model.dataset.has(Split::Test) => Split::Test,
        EvaluateOn::Auto | EvaluateOn::Validation => Split::Validation,
        EvaluateOn::Test => Split::Test,
    };
    if split == Split::Validation && model.out.metrics.get("validation_in_training") == Some(&1.0) {
        ctx.reporter.step_event(
            &ctx.step.id,
            &StepEvent::Log {
                level: LogLevel::Warn,
                message: "the trainer fitted the validation split, so these figures are optimistic: give the data a test split, or set `refit_on_validation = false` on the training step".into(),
            },
        );
    }
    let held: Vec<_> = model.dataset.of(split).collect();
    if held.is_empty() {
        bail!(
            "the dataset has no {split} examples to evaluate on; add a `split` step or data with a {split} split"
        );
    }
    let texts: Vec<String> = held.iter().map(|r| r.text.clone()).collect();
    let host = ctx.runner.host.clone();
    let spec = job_spec(ctx);
    let m = model.clone();
    let preds =
        tokio::task::spawn_blocking(move || -> Result<Vec<(String, f32)>, PluginFailure> {
            let mut job = host.trainer(&m.out.plugin, spec)?;
            let handle = job.load_model(&m.bytes)?;
            let preds = job.predict_all(handle, &texts)?;
            Ok(preds
                .into_iter()
                .map(|p| (p.intent, p.confidence))
                .collect())
        })
        .await
        .context("the evaluation job panicked")??;
    let rows: Vec<(String, String, f32)> = held
        .iter()
        .zip(preds)
        .map(|(r, (p, c))| (r.intent.clone(), p, c))
        .collect();
    let report = score(split.as_str(), &rows, &p.oos_label, p.top_confusions);
    let metrics: Vec<(String, f64, u32)> = report
        .metrics()
        .into_iter()
        .map(|(n, v)| (n, v, 0))
        .collect();
    ctx.runner
        .store
        .add_metrics(ctx.run, &ctx.step.id, &metrics)
        .await?;
    Ok(Output::Evaluation(Arc::new(report)))
}
