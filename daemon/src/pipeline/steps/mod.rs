//! What each step kind does, one file each. [`execute`] merges what a
//! step's `params` script computes into its `with` and hands the step to
//! its kind; the helpers here find a step's inputs among the outputs of
//! the steps it needs.
//!
//! A new step kind: a variant of [`crate::workflow::Builtin`] (with its
//! parameters in `workflow/params.rs`), a file here with its `run`, an arm
//! in [`execute`], and a [`crate::core::output::StepOutput`] variant if it
//! produces something new.

pub mod analyze;
pub mod curate;
pub mod deploy;
pub mod evaluate;
pub mod gate;
pub mod process;
pub mod register;
pub mod reviewed;
pub mod rules;
pub mod source;
pub mod split;
pub mod train;

use super::{Dataset, Output, Progress, Runner, StepCtx, Trained};
use crate::core::example::DatasetStats;
use crate::core::ids::RunId;
use crate::core::params::Kind;
use crate::plugin::{JobSpec, PluginEvent};
use crate::workflow::{Action, Builtin, Produces, Step, Workflow};
use anyhow::{Result, anyhow, bail};
use serde_json::{Value, json};
use std::sync::Arc;

/// Run one attempt of `ctx.step`.
pub async fn execute(ctx: &StepCtx<'_>) -> Result<Output> {
    let computed;
    let merged;
    let ctx = match &ctx.step.params {
        None => ctx,
        Some(script) => {
            computed = with_computed_params(ctx, script)?;
            merged = StepCtx {
                step: &computed,
                ..*ctx
            };
            &merged
        }
    };
    match &ctx.step.action {
        Action::Plugin {
            kind: Kind::Source, ..
        } => source::run(ctx).await,
        Action::Plugin {
            kind: Kind::Trainer,
            ..
        } => train::run(ctx).await,
        Action::Plugin { kind, .. } => bail!("{kind} plugins cannot run as steps yet"),
        Action::Builtin(Builtin::Split) => split::run(ctx).await,
        Action::Builtin(Builtin::Rules) => rules::run(ctx).await,
        Action::Builtin(Builtin::Evaluate) => evaluate::run(ctx).await,
        Action::Builtin(Builtin::Gate) => gate::run(ctx).await,
        Action::Builtin(Builtin::Register) => register::run(ctx).await,
        Action::Builtin(Builtin::Process) => process::run(ctx).await,
        Action::Builtin(Builtin::Deploy) => deploy::run(ctx).await,
        Action::Builtin(Builtin::Curate) => curate::run(ctx).await,
        Action::Builtin(Builtin::Analyze) => analyze::run(ctx).await,
        Action::Builtin(Builtin::Reviewed) => reviewed::run(ctx).await,
    }
}

/// The step with what its `params` script computes merged over `with`,
/// checked as `with` was at validation.
fn with_computed_params(ctx: &StepCtx<'_>, script: &crate::workflow::ScriptRef) -> Result<Step> {
    let step = ctx.step;
    let dataset = match nearest_dataset(ctx.wf, step, ctx.progress) {
        Some(d) => json!(DatasetStats::of(&d.rows)),
        None => Value::Null,
    };
    let run = json!({"id": ctx.run.0, "workflow": ctx.wf.name});
    let params = crate::script::hooks::params(
        &script.0,
        &ctx.run.to_string(),
        &[("run", &run), ("dataset", &dataset)],
    )?;
    crate::workflow::check_computed_params(&step.action, &ctx.runner.host.catalog(), &params)
        .map_err(|e| anyhow!("{}: {e}", script.0.origin))?;
    ctx.reporter.step_note(
        &step.id,
        &format!(
            "parameters from {}: {}",
            script.0.origin,
            Value::Object(params.clone())
        ),
    );
    let mut with = step.with.clone();
    with.extend(params);
    Ok(Step {
        with,
        ..step.clone()
    })
}

/// Why `step` should not run, if it should not: a step it needs was
/// skipped or said no, or its `when` is false.
pub async fn skip_reason(
    runner: &Runner,
    run: RunId,
    wf: &Workflow,
    step: &Step,
    progress: &Progress,
) -> Result<Option<String>> {
    if let Some(reason) = step
        .needs
        .iter()
        .find_map(|n| progress.blocked.get(n.as_str()))
    {
        return Ok(Some(reason.clone()));
    }
    match &step.when {
        Some(script) if step.action != Action::Builtin(Builtin::Gate) => {
            let v = gate::verdict(runner, run, wf, step, script, progress).await?;
            Ok((!v.pass).then(|| {
                format!(
                    "its `when` is false{}",
                    v.reason.map(|r| format!(": {r}")).unwrap_or_default()
                )
            }))
        }
        _ => Ok(None),
    }
}

/// The job a plugin call of this step runs as: its grants, its timeout,
/// the run's stop, and its events to the reporter.
fn job_spec(ctx: &StepCtx<'_>) -> JobSpec {
    let reporter = ctx.reporter.clone();
    let id = ctx.step.id.to_string();
    JobSpec {
        run: ctx.run.to_string(),
        step: ctx.step.id.to_string(),
        read_paths: ctx.step.read_paths.clone(),
        timeout: ctx.step.timeout,
        cancel: ctx.stop.abort_token().clone(),
        observer: Some(Arc::new(move |e: &PluginEvent| reporter.step_event(&id, e))),
    }
}

/// The dataset of the nearest step before `step` that produces one.
fn nearest_dataset<'o>(
    wf: &Workflow,
    step: &Step,
    progress: &'o Progress,
) -> Option<&'o Arc<Dataset>> {
    wf.nearest(&step.id, Produces::Dataset)
        .and_then(|s| progress.outputs.get(s.id.as_str()))
        .and_then(Output::dataset)
}

/// [`nearest_dataset`], or why there is none.
fn dataset_for<'o>(ctx: &StepCtx<'o>) -> Result<&'o Arc<Dataset>> {
    let src = ctx
        .wf
        .nearest(&ctx.step.id, Produces::Dataset)
        .ok_or_else(|| anyhow!("no dataset before this step"))?;
    ctx.progress
        .outputs
        .get(src.id.as_str())
        .and_then(Output::dataset)
        .ok_or_else(|| anyhow!("step `{}` produced no dataset", src.id))
}

/// The model of the nearest trainer step before this one.
fn model_for<'o>(ctx: &StepCtx<'o>) -> Result<&'o Arc<Trained>> {
    let src = ctx
        .wf
        .nearest(&ctx.step.id, Produces::Model)
        .ok_or_else(|| anyhow!("no trainer before this step"))?;
    match ctx.progress.outputs.get(src.id.as_str()) {
        Some(Output::Model(m)) => Ok(m),
        _ => bail!("step `{}` produced no model", src.id),
    }
}

/// The step's typed parameters (`with`, computed ones merged in), as
/// validation checked them.
fn builtin_params(
    ctx: &StepCtx<'_>,
    kind: Builtin,
) -> Result<crate::workflow::params::BuiltinParams> {
    crate::workflow::params::BuiltinParams::read(kind, &ctx.step.with).map_err(|problems| {
        anyhow!(
            "{}",
            problems
                .iter()
                .map(|p| p.message.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        )
    })
}

/// Store `rows` as a snapshot of the dataset `<workflow>/<step>`.
async fn save_snapshot(
    ctx: &StepCtx<'_>,
    rows: Vec<crate::core::example::Example>,
    origin: Value,
) -> Result<Arc<Dataset>> {
    save_snapshot_with(ctx, rows, &[], origin).await
}

/// [`save_snapshot`], with the conversations a source read.
async fn save_snapshot_with(
    ctx: &StepCtx<'_>,
    rows: Vec<crate::core::example::Example>,
    conversations: &[crate::core::conversation::Conversation],
    origin: Value,
) -> Result<Arc<Dataset>> {
    let (version, hash) = ctx
        .runner
        .store
        .save_snapshot(
            &format!("{}/{}", ctx.wf.name, ctx.step.id),
            &rows,
            conversations,
            origin,
        )
        .await?;
    let mut dataset = Dataset::new(version, hash, rows);
    dataset.out.conversations = conversations.len();
    Ok(Arc::new(dataset))
}
