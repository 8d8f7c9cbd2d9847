//! Conversations analysed by an analyzer plugin, in the sandbox, whoever
//! asks (`coach analyze`; the `analyze` step and the API next).

use crate::core::analysis::Analysis;
use crate::core::conversation::Conversation;
use crate::plugin::{JobSpec, PluginHost};
use anyhow::{Context, Result};
use std::sync::Arc;

/// The analyzer Coach ships.
pub const DEFAULT_ANALYZER: &str = "analyzer-quality";

/// Analyse `conversations` with analyzer `id` (its parameters `config`, a
/// JSON object), as peers: one analysis each, in order.
pub async fn analyze(
    host: Arc<PluginHost>,
    id: &str,
    config: serde_json::Value,
    conversations: Vec<Conversation>,
) -> Result<Vec<Analysis>> {
    let id = id.to_owned();
    let config = config.to_string();
    Ok(tokio::task::spawn_blocking(move || {
        let spec = JobSpec {
            run: String::new(),
            step: "analyze".into(),
            ..Default::default()
        };
        host.analyzer(&id, spec)?.analyze(&config, &conversations)
    })
    .await
    .context("the analyzer job panicked")??)
}

/// The mean of each aspect's score and of the overall score, for a
/// summary line.
pub fn means(analyses: &[Analysis]) -> (f64, Vec<(String, f64)>) {
    let n = analyses.len().max(1) as f64;
    let overall = analyses.iter().map(|a| a.score).sum::<f64>() / n;
    let mut names: Vec<String> = Vec::new();
    for a in analyses {
        for x in &a.aspects {
            if !names.contains(&x.name) {
                names.push(x.name.clone());
            }
        }
    }
    // An aspect no conversation had evidence for has no mean.
    let aspects = names
        .into_iter()
        .filter_map(|name| {
            let scores: Vec<f64> = analyses
                .iter()
                .filter_map(|a| a.aspect(&name))
                .filter(|x| x.confidence > 0.0)
                .map(|x| x.score)
                .collect();
            (!scores.is_empty()).then(|| (name, scores.iter().sum::<f64>() / scores.len() as f64))
        })
        .collect();
    (overall, aspects)
}
