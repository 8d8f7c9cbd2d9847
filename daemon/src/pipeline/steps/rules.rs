//! A rules step: the workflow's data rule (`filter` and/or `map`, in Rhai)
//! over every example of the nearest dataset, stored as a new snapshot.

use super::{StepCtx, dataset_for, save_snapshot};
use crate::pipeline::Output;
use anyhow::{Context, Result, anyhow, bail};
use serde_json::json;

pub async fn run(ctx: &StepCtx<'_>) -> Result<Output> {
    let script = ctx
        .step
        .rules
        .as_ref()
        .ok_or_else(|| anyhow!("a rules step without a script"))?
        .0
        .clone();
    let rows = dataset_for(ctx)?.rows.clone();
    let run = ctx.run.to_string();
    let (rows, stats) =
        tokio::task::spawn_blocking(move || crate::script::hooks::apply_rules(&script, &run, rows))
            .await
            .context("the data rules panicked")??;
    if rows.is_empty() {
        bail!("the data rules dropped every example");
    }
    let origin = json!({
        "step": ctx.step.id,
        "kind": "rules",
        "kept": stats.kept,
        "dropped": stats.dropped,
        "changed": stats.changed,
    });
    Ok(Output::Ruled(
        save_snapshot(ctx, rows, origin).await?,
        stats,
    ))
}
