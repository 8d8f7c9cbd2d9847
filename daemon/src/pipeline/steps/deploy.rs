//! A deploy step: point an environment at the model the run registered,
//! once that version loads and answers its health check. Usually after a
//! gate, so only a model that beat production gets there; deploying the
//! version already served changes nothing, so a resumed run is safe.

use super::{StepCtx, builtin_params};
use crate::core::output::Deployment;
use crate::pipeline::Output;
use crate::pipeline::deploy::{Request, deploy};
use crate::store::deployments::{Action, How};
use crate::workflow::params::BuiltinParams;
use crate::workflow::{Builtin, Produces};
use anyhow::{Result, anyhow, bail};

pub async fn run(ctx: &StepCtx<'_>) -> Result<Output> {
    let BuiltinParams::Deploy(p) = builtin_params(ctx, Builtin::Deploy)? else {
        bail!("a deploy step without deploy parameters");
    };
    let environment = p
        .environment
        .ok_or_else(|| anyhow!("a deploy step without `env`"))?;
    let src = ctx
        .wf
        .nearest(&ctx.step.id, Produces::Registration)
        .ok_or_else(|| anyhow!("no register step before this step"))?;
    let Some(Output::Registered(model)) = ctx.progress.outputs.get(src.id.as_str()) else {
        bail!("step `{}` registered no model", src.id);
    };
    let actor = format!("workflow {} run {}", ctx.wf.name, ctx.run);
    if let Some(canary) = p.canary {
        return canary_step(ctx, model, &environment, canary, actor).await;
    }
    let req = Request {
        how: How::Workflow,
        actor,
        reason: p.reason,
        run: Some(ctx.run.0),
    };
    let outcome = deploy(ctx.runner, model, &environment, Action::Deploy, req).await?;
    Ok(Output::Deployed(Deployment {
        model: outcome.model_id,
        name: outcome.model,
        version: outcome.version,
        environment: outcome.environment,
        changed: outcome.changed,
    }))
}

/// `strategy = "canary"`: start a canary of the registered version (the
/// daemon moves it through its steps and promotes or rolls it back). A
/// resumed run whose canary already started, or a version already served,
/// changes nothing.
async fn canary_step(
    ctx: &StepCtx<'_>,
    model: &crate::store::ModelRow,
    environment: &str,
    canary: crate::experiment::spec::Canary,
    actor: String,
) -> Result<Output> {
    let store = &ctx.runner.store;
    let serving = store.deployment(&model.name, environment).await?;
    let unchanged = || {
        Output::Deployed(Deployment {
            model: model.id,
            name: model.name.clone(),
            version: model.version,
            environment: environment.to_owned(),
            changed: false,
        })
    };
    if serving.as_ref().is_some_and(|d| d.model_id == model.id) {
        return Ok(unchanged());
    }
    if let Some(running) = store.running_experiment(&model.name, environment).await? {
        let spec: crate::experiment::spec::Spec = serde_json::from_str(&running.spec)?;
        if running.kind == "canary" && spec.arms.get(1).and_then(|a| a.model_id) == Some(model.id) {
            ctx.reporter.step_note(
                &ctx.step.id,
                &format!(
                    "canary `{}` of this version is already running",
                    running.name
                ),
            );
            return Ok(unchanged());
        }
    }
    if serving.is_none() {
        bail!(
            "a canary needs a version already serving {environment} to compare against; deploy `{}` there first (strategy = \"direct\")",
            model.name
        );
    }
    let (name, spec) = crate::pipeline::experiment::canary_spec(model, environment, canary)?;
    let (row, _) = crate::pipeline::experiment::start(
        ctx.runner,
        &name,
        spec,
        format!("run {}", ctx.run),
        actor,
        How::Workflow,
        Some(ctx.run.0),
        |_| async { anyhow::Ok(()) },
    )
    .await?;
    ctx.reporter.step_note(
        &ctx.step.id,
        &format!(
            "canary `{}` started: v{} takes traffic in steps; `coach experiment show {}` follows it",
            row.name, model.version, row.name
        ),
    );
    Ok(unchanged())
}
