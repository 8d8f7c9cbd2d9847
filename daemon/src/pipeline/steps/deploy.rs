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
    let req = Request {
        how: How::Workflow,
        actor: format!("workflow {} run {}", ctx.wf.name, ctx.run),
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
