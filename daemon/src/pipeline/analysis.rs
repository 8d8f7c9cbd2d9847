//! Conversations analysed by an analyzer plugin, in the sandbox, whoever
//! asks (`coach analyze`, the `analyze` step, the service): files'
//! conversations only shown, stored conversations' analyses kept.

use crate::core::analysis::Analysis;
use crate::core::conversation::Conversation;
use crate::plugin::{JobSpec, PluginHost};
use crate::store::Store;
use crate::store::analyses::NewAnalysis;
use crate::store::conversation_reads::{ConversationFilter, WHOLE_READ_BYTES};
use anyhow::{Context, Result};
use std::sync::Arc;

pub use crate::core::params::DEFAULT_ANALYZER;

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

/// The version analyses are kept under: the plugin's own version and the
/// start of its component's hash, so a rebuilt plugin that forgot to bump
/// its version still counts as another analyzer.
pub fn analyzer_version(host: &PluginHost, id: &str) -> Result<String> {
    let p = host.get(id)?;
    Ok(format!(
        "{}+{}",
        p.manifest.version,
        &p.wasm_sha256[..12.min(p.wasm_sha256.len())]
    ))
}

/// Most conversations analysed per sandbox job (and per store transaction);
/// fewer where they are long ([`Store::whole_reads`]).
const CHUNK: usize = 1000;

/// What analysing stored conversations did.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Stored {
    pub analyzer: String,
    pub analyzer_version: String,
    /// Conversations analysed now.
    pub analyzed: u64,
    /// Conversations this analyzer version had analysed before (left as
    /// they are unless asked to analyse again).
    pub skipped: u64,
    /// Conversations passed over for their length: more than
    /// [`WHOLE_READ_BYTES`] of stored text, more than one read holds.
    pub too_long: u64,
    pub mean_score: Option<f64>,
    pub mean_aspects: std::collections::BTreeMap<String, f64>,
}

/// Analyse the stored conversations `filter` picks with analyzer `id`
/// and keep the results (one row per conversation per analyzer version).
/// Conversations this version analysed before are skipped unless `again`.
pub async fn analyze_stored(
    store: &Store,
    host: Arc<PluginHost>,
    id: &str,
    config: serde_json::Value,
    filter: &ConversationFilter,
    again: bool,
    run: Option<i64>,
) -> Result<Stored> {
    let version = analyzer_version(&host, id)?;
    let mut ids = store.conversation_ids(filter).await?;
    let total = ids.len() as u64;
    if !again {
        let done = store.analysed(id, &version, &ids).await?;
        ids.retain(|i| !done.contains(i));
    }
    let skipped = total - ids.len() as u64;
    let (mut n, mut sum) = (0u64, 0.0);
    let mut aspects: std::collections::BTreeMap<String, (u64, f64)> = Default::default();
    let (chunks, too_long) = store
        .whole_reads(&ids, CHUNK, WHOLE_READ_BYTES, u64::MAX)
        .await?;
    let too_long = too_long as u64;
    if too_long > 0 {
        tracing::warn!(
            analyzer = id,
            too_long,
            "conversations of more than {WHOLE_READ_BYTES} bytes of stored text are passed over"
        );
    }
    for chunk in chunks {
        let whole = store.conversations_whole(&chunk).await?;
        let keys: Vec<(i64, String, chrono::DateTime<chrono::Utc>)> = whole
            .iter()
            .map(|c| (c.id, c.model.clone(), c.started_at))
            .collect();
        let conversations = whole.into_iter().map(|c| c.into_conversation()).collect();
        let analyses = analyze(host.clone(), id, config.clone(), conversations).await?;
        for a in &analyses {
            n += 1;
            sum += a.score;
            for x in a.aspects.iter().filter(|x| x.confidence > 0.0) {
                let e = aspects.entry(x.name.clone()).or_default();
                e.0 += 1;
                e.1 += x.score;
            }
        }
        let rows: Vec<NewAnalysis> = keys
            .into_iter()
            .zip(analyses)
            .map(
                |((conversation_id, model, started_at), analysis)| NewAnalysis {
                    conversation_id,
                    model,
                    started_at,
                    analysis,
                },
            )
            .collect();
        store.save_analyses(id, &version, run, &rows).await?;
    }
    Ok(Stored {
        analyzer: id.to_owned(),
        analyzer_version: version,
        analyzed: n,
        skipped,
        too_long,
        mean_score: (n > 0).then(|| sum / n as f64),
        mean_aspects: aspects
            .into_iter()
            .map(|(k, (c, s))| (k, s / c as f64))
            .collect(),
    })
}
