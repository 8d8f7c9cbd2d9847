//! An analyze step: the stored conversations of a model from the last
//! days, scored by an analyzer plugin in the sandbox, the analyses kept
//! (one per conversation per analyzer version; what this version analysed
//! before is skipped unless `again`).

use super::{StepCtx, builtin_params};
use crate::core::output::Analyzed;
use crate::pipeline::Output;
use crate::store::conversation_reads::ConversationFilter;
use crate::workflow::Builtin;
use crate::workflow::params::BuiltinParams;
use anyhow::{Result, bail};

pub async fn run(ctx: &StepCtx<'_>) -> Result<Output> {
    let BuiltinParams::Analyze(p) = builtin_params(ctx, Builtin::Analyze)? else {
        bail!("an analyze step without analyze parameters");
    };
    let model = p
        .model
        .as_ref()
        .map_or(ctx.wf.model_name(), |m| m.as_str())
        .to_owned();
    let filter = ConversationFilter {
        model: Some(model),
        since: Some(chrono::Utc::now() - chrono::Duration::days(i64::from(p.days))),
        limit: p.limit,
        ..Default::default()
    };
    let done = crate::pipeline::analysis::analyze_stored(
        &ctx.runner.store,
        ctx.runner.host.clone(),
        &p.analyzer,
        serde_json::Value::Object(p.config),
        &filter,
        p.again,
        Some(ctx.run.0),
    )
    .await?;
    Ok(Output::Analyzed(Analyzed {
        analyzer: done.analyzer,
        analyzer_version: done.analyzer_version,
        analyzed: done.analyzed,
        skipped: done.skipped,
        too_long: done.too_long,
        mean_score: done.mean_score,
        mean_aspects: done.mean_aspects,
    }))
}
