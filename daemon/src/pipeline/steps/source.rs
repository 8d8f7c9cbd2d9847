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
    read_from(host, step, spec, None).await
}

/// [`read`], resuming from `checkpoint` when there is one.
pub async fn read_from(
    host: Arc<PluginHost>,
    step: &Step,
    spec: JobSpec,
    checkpoint: Option<String>,
) -> Result<SourceOutput> {
    let id = step.action_name().to_owned();
    let config = Value::Object(step.with.clone()).to_string();
    Ok(tokio::task::spawn_blocking(move || {
        let limits = host.limits();
        host.source(&id, spec)?
            .read_from(&config, checkpoint.as_deref(), BATCH, &limits)
    })
    .await
    .context("the source job panicked")??)
}

/// What an incremental step starts from: the last snapshot's records and
/// the checkpoint the plugin gave when it was read.
struct Earlier {
    version: i64,
    checkpoint: Option<String>,
    examples: Vec<crate::core::example::Example>,
    conversations: Vec<crate::core::conversation::Conversation>,
}

async fn earlier(ctx: &StepCtx<'_>) -> Result<Option<Earlier>> {
    let store = &ctx.runner.store;
    let name = format!("{}/{}", ctx.wf.name, ctx.step.id);
    let Some((version, origin)) = store.latest_snapshot_origin(&name).await? else {
        return Ok(None);
    };
    // A snapshot read by another plugin is not this one's to resume.
    if origin.get("plugin").and_then(Value::as_str) != Some(ctx.step.action_name()) {
        return Ok(None);
    }
    Ok(Some(Earlier {
        version,
        checkpoint: origin
            .get("checkpoint")
            .and_then(Value::as_str)
            .map(str::to_owned),
        examples: store.load_examples(version).await?,
        conversations: store.load_snapshot_conversations(version).await?,
    }))
}

/// A line in the step's log (notes are warnings).
fn info(ctx: &StepCtx<'_>, message: String) {
    use crate::core::event::{LogLevel, StepEvent};
    ctx.reporter.step_event(
        &ctx.step.id,
        &StepEvent::Log {
            level: LogLevel::Info,
            message,
        },
    );
}

/// The share of bad records a source step accepts unless its `with` sets
/// `max_bad_fraction` (as `source-files` does).
const MAX_BAD_FRACTION: f64 = 0.05;

pub async fn run(ctx: &StepCtx<'_>) -> Result<Output> {
    let earlier = if ctx.step.incremental {
        earlier(ctx).await?
    } else {
        None
    };
    let checkpoint = earlier.as_ref().and_then(|e| e.checkpoint.clone());
    if let Some(e) = &earlier {
        info(
            ctx,
            format!(
                "resuming after snapshot {} ({} examples, {} conversations){}",
                e.version,
                e.examples.len(),
                e.conversations.len(),
                if checkpoint.is_some() {
                    ""
                } else {
                    "; it has no checkpoint, so the source reads from its start"
                }
            ),
        );
    }
    let out = read_from(ctx.runner.host.clone(), ctx.step, job_spec(ctx), checkpoint).await?;
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
    let new_records = out.examples.len() + out.conversations.len();
    let mut rows: Vec<_> = out
        .examples
        .iter()
        .map(crate::plugin::convert::from_guest)
        .collect();
    let mut conversations = out.conversations;
    if let Some(e) = earlier {
        // Examples accumulate; a conversation read again (a ticket
        // updated since) replaces the earlier copy.
        let mut all = e.examples;
        all.append(&mut rows);
        rows = all;
        let fresh: std::collections::HashSet<&str> =
            conversations.iter().map(|c| c.id.as_str()).collect();
        let mut kept: Vec<_> = e
            .conversations
            .into_iter()
            .filter(|c| !fresh.contains(c.id.as_str()))
            .collect();
        kept.append(&mut conversations);
        conversations = kept;
        info(
            ctx,
            format!("{new_records} new record(s) since the checkpoint"),
        );
    }
    if rows.is_empty() && conversations.is_empty() {
        bail!("the source produced no examples and no conversations");
    }
    let origin = json!({
        "step": ctx.step.id,
        "plugin": ctx.step.action_name(),
        "bad_records": out.bad_records,
        "first_bad": out.first_bad.iter().map(|(l, r)| json!({"location": l, "reason": r})).collect::<Vec<_>>(),
        "new_records": new_records,
        "checkpoint": out.checkpoint,
    });
    Ok(Output::Dataset(
        save_snapshot_with(ctx, rows, &conversations, origin).await?,
    ))
}
