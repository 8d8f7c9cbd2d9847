//! A curate step: the datasets of the steps it needs, merged in `needs`
//! order, cleaned (duplicates, near duplicates, conflicting labels,
//! personal data) and stored as a new snapshot. Every decision is kept in
//! the snapshot's origin, naming each example by its position in the
//! merged input, whose snapshots the origin names too: nothing is lost.

use super::{StepCtx, builtin_params, save_snapshot};
use crate::pipeline::Output;
use crate::workflow::params::BuiltinParams;
use crate::workflow::{Builtin, Produces};
use anyhow::{Context, Result, anyhow, bail};
use serde_json::json;

pub async fn run(ctx: &StepCtx<'_>) -> Result<Output> {
    let BuiltinParams::Curate(settings) = builtin_params(ctx, Builtin::Curate)? else {
        bail!("a curate step without curate settings");
    };
    let mut inputs = Vec::new();
    let mut rows = Vec::new();
    for need in &ctx.step.needs {
        let src = match ctx.wf.step(need) {
            Some(s) if s.action.produces() == Produces::Dataset => s,
            Some(s) => match ctx.wf.nearest(&s.id, Produces::Dataset) {
                Some(n) => n,
                None => continue,
            },
            None => continue,
        };
        let dataset = ctx
            .progress
            .outputs
            .get(src.id.as_str())
            .and_then(Output::dataset)
            .ok_or_else(|| anyhow!("step `{}` produced no dataset", src.id))?;
        if inputs
            .iter()
            .any(|(_, v, _): &(String, i64, String)| *v == dataset.out.dataset_version)
        {
            continue;
        }
        inputs.push((
            src.id.to_string(),
            dataset.out.dataset_version,
            dataset.out.hash.clone(),
        ));
        rows.extend(dataset.rows.iter().cloned());
    }
    if inputs.is_empty() {
        bail!("no dataset before this step");
    }
    let min_examples = settings.min_examples;
    let (curated, input_rows) = tokio::task::spawn_blocking(move || {
        let out = crate::curate::curate(&rows, &settings);
        (out, rows.len())
    })
    .await
    .context("curation panicked")?;
    let curated = curated?;
    if curated.examples.is_empty() {
        bail!("curation kept none of the {input_rows} examples");
    }
    let counts = curated.report.counts.clone();
    ctx.reporter.step_note(
        &ctx.step.id,
        &format!(
            "{} conflicting text(s), {} intent(s) with fewer than {} examples",
            counts.conflicts, counts.small_intents, min_examples
        ),
    );
    let origin = json!({
        "step": ctx.step.id,
        "kind": "curate",
        "inputs": inputs
            .iter()
            .map(|(step, version, hash)| json!({"step": step, "dataset_version": version, "hash": hash}))
            .collect::<Vec<_>>(),
        "report": curated.report,
    });
    let dataset = save_snapshot(ctx, curated.examples, origin).await?;
    Ok(Output::Curated(dataset, counts))
}
