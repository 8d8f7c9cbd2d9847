//! A register step: the nearest trained model (or process step's
//! artifacts) becomes the next version of its name in the registry, with
//! its evaluation's metrics and its lineage.

use super::{StepCtx, builtin_params, model_for, nearest_dataset};
use crate::pipeline::Output;
use crate::registry::models::{self, ProcessLineage};
use crate::workflow::params::BuiltinParams;
use crate::workflow::{Builtin, Produces};
use anyhow::{Result, bail};

pub async fn run(ctx: &StepCtx<'_>) -> Result<Output> {
    let BuiltinParams::Register(p) = builtin_params(ctx, Builtin::Register)? else {
        bail!("a register step without register parameters");
    };
    let name = p.name.as_ref().map_or(ctx.wf.name.as_str(), |n| n.as_str());
    let store = &ctx.runner.store;
    if let Some(src) = ctx
        .wf
        .nearest_of(&ctx.step.id, &[Produces::Model, Produces::Artifact])
        && let Some(Output::Process(out)) = ctx.progress.outputs.get(src.id.as_str())
    {
        let spec = src.process.as_ref();
        let no_env = Default::default();
        let row = models::register_process(
            store,
            &ctx.runner.artifacts,
            ctx.run,
            name,
            &src.id,
            out,
            ProcessLineage {
                argv: spec.map_or(&[], |p| p.argv.as_slice()),
                env: spec.map_or(&no_env, |p| &p.env),
                resources: src.resources.lineage_json(),
                dataset: nearest_dataset(ctx.wf, src, ctx.progress)
                    .map(|d| (d.out.dataset_version, d.out.hash.clone())),
            },
        )
        .await?;
        return Ok(Output::Registered(Box::new(row)));
    }
    let model = model_for(ctx)?;
    let evaluation = ctx
        .wf
        .nearest(&ctx.step.id, Produces::Evaluation)
        .and_then(|s| match ctx.progress.outputs.get(s.id.as_str()) {
            Some(Output::Evaluation(r)) => Some(r.clone()),
            _ => None,
        });
    let row = models::register_trained(
        store,
        ctx.run,
        name,
        &model.out,
        &model.dataset.out.hash,
        evaluation.as_deref(),
    )
    .await?;
    Ok(Output::Registered(Box::new(row)))
}
