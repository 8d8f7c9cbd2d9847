//! A reviewed step: the examples people approved in the review queue for
//! a model, as a dataset snapshot like any source's. Each example's
//! provenance (the review item, its message, its reviewers, when it was
//! decided) is kept in the snapshot's origin.

use super::{StepCtx, builtin_params};
use crate::core::example::{Example, Split};
use crate::pipeline::{Dataset, Output};
use crate::workflow::Builtin;
use crate::workflow::params::BuiltinParams;
use anyhow::{Result, bail};
use serde_json::json;
use std::sync::Arc;

pub async fn run(ctx: &StepCtx<'_>) -> Result<Output> {
    let BuiltinParams::Reviewed(p) = builtin_params(ctx, Builtin::Reviewed)? else {
        bail!("a reviewed step without its parameters");
    };
    let model = p
        .model
        .as_ref()
        .map_or(ctx.wf.model_name(), |m| m.as_str())
        .to_owned();
    let reviewed = ctx.runner.store.reviewed_examples(Some(&model)).await?;
    let rows: Vec<Example> = reviewed
        .iter()
        .map(|r| Example {
            text: r.text.clone(),
            intent: r.intent.clone(),
            entities: r.entities.clone(),
            split: Split::Unspecified,
        })
        .collect();
    let origin = json!({
        "step": ctx.step.id,
        "kind": "reviewed",
        "model": model,
        "provenance": reviewed
            .iter()
            .map(|r| json!({
                "item": r.item,
                "message": r.message_id,
                "reviewers": r.reviewers,
                "decided_at": r.decided_at,
            }))
            .collect::<Vec<_>>(),
    });
    let name = p
        .dataset
        .clone()
        .unwrap_or_else(|| format!("{model}-reviewed"));
    let (version, hash) = ctx
        .runner
        .store
        .save_snapshot(&name, &rows, &[], origin)
        .await?;
    ctx.reporter.step_note(
        &ctx.step.id,
        &format!("{} approved example(s) of `{model}`", rows.len()),
    );
    Ok(Output::Dataset(Arc::new(Dataset::new(version, hash, rows))))
}
