//! A source step: read the plugin's records (in the sandbox), keep the
//! examples and conversations as a dataset snapshot, and say which records
//! were malformed.

use super::{StepCtx, job_spec, save_snapshot_with};
use crate::pipeline::Output;
use crate::plugin::job::SourceOutput;
use crate::plugin::{JobSpec, PluginHost};
use crate::workflow::Step;
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::sync::Arc;

/// Batches a source hands over per call.
const BATCH: u32 = 1024;

/// Read everything step `step`'s source plugin produces, as job `spec`.
/// The source step and trigger conditions (which compare the data now with
/// the last run's) read through here.
pub async fn read(host: Arc<PluginHost>, step: &Step, spec: JobSpec) -> Result<SourceOutput> {
    let id = step.action_name().to_owned();
    let config = Value::Object(step.with.clone()).to_string();
    Ok(tokio::task::spawn_blocking(move || {
        let limits = host.limits();
        host.source(&id, spec)?.read_all(&config, BATCH, &limits)
    })
    .await
    .context("the source job panicked")??)
}

/// The share of bad records a source step accepts unless its `with` sets
/// `max_bad_fraction` (as `source-files` does).
const MAX_BAD_FRACTION: f64 = 0.05;

pub async fn run(ctx: &StepCtx<'_>) -> Result<Output> {
    let out = read(ctx.runner.host.clone(), ctx.step, job_spec(ctx)).await?;
    if let Some(doubt) = &out.doubtful {
        ctx.reporter.step_note(&ctx.step.id, doubt);
    }
    let total = out.examples.len() as u64 + out.bad_records;
    let allowed = ctx
        .step
        .with
        .get("max_bad_fraction")
        .and_then(Value::as_f64)
        .unwrap_or(MAX_BAD_FRACTION);
    if total > 0 && out.bad_records as f64 / total as f64 > allowed {
        let first: Vec<String> = out
            .first_bad
            .iter()
            .take(10)
            .map(|(l, r)| format!("{l}: {r}"))
            .collect();
        bail!(
            "{} of {total} records are bad, more than max_bad_fraction {}%: {}",
            out.bad_records,
            allowed * 100.0,
            first.join("; ")
        );
    }
    if out.bad_records > 0 {
        let first: Vec<String> = out
            .first_bad
            .iter()
            .take(5)
            .map(|(l, r)| format!("{l}: {r}"))
            .collect();
        ctx.reporter.step_note(
            &ctx.step.id,
            &format!(
                "skipped {} malformed record(s): {}",
                out.bad_records,
                first.join("; ")
            ),
        );
    }
    if out.examples.is_empty() && out.conversations.is_empty() {
        bail!("the source produced no examples and no conversations");
    }
    let rows = out
        .examples
        .iter()
        .map(crate::plugin::convert::from_guest)
        .collect();
    let origin = json!({
        "step": ctx.step.id,
        "plugin": ctx.step.action_name(),
        "bad_records": out.bad_records,
        "first_bad": out.first_bad.iter().map(|(l, r)| json!({"location": l, "reason": r})).collect::<Vec<_>>(),
    });
    Ok(Output::Dataset(
        save_snapshot_with(ctx, rows, &out.conversations, origin).await?,
    ))
}
