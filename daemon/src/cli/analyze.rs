//! `coach analyze`: score conversations with an analyzer plugin in the
//! sandbox — from a file (Coach JSONL, Rasa tracker dumps, CSV of turns)
//! or the store's — and print each score with its reasons, or JSON.
//! Analyses of stored conversations are kept (one per conversation per
//! analyzer version), as the `analyze` step keeps them.

use super::conversations::{Filters, read_file};
use crate::app::{App, Mode};
use crate::cli::out;
use crate::config::Config;
use crate::core::analysis::Analysis;
use crate::core::conversation::formats::Format;
use crate::core::text::printable;
use crate::service::analysis::{DEFAULT_ANALYZER, analyze, analyzer_version, means};
use crate::store::analyses::NewAnalysis;
use anyhow::{Result, anyhow, bail};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Conversations from this file instead of the store.
    #[arg(long)]
    input: Option<PathBuf>,
    /// The file's format (default: from its name and first line).
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Which stored conversations (without `--input`).
    #[command(flatten)]
    filters: Filters,
    /// At most this many stored conversations, the newest.
    #[arg(long, default_value_t = 10_000)]
    limit: u64,
    /// The analyzer plugin.
    #[arg(long, default_value = DEFAULT_ANALYZER)]
    analyzer: String,
    /// An analyzer parameter, `KEY=VALUE` (VALUE read as JSON when it is).
    #[arg(long = "with", value_name = "KEY=VALUE")]
    with: Vec<String>,
    /// Every analysis as JSON.
    #[arg(long)]
    json: bool,
}

fn config(with: &[String]) -> Result<Value> {
    let mut o = serde_json::Map::new();
    for w in with {
        let (k, v) = w
            .split_once('=')
            .ok_or_else(|| anyhow!("--with `{}`: expected KEY=VALUE", printable(w)))?;
        let v = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_owned()));
        o.insert(k.to_owned(), v);
    }
    Ok(Value::Object(o))
}

pub async fn run(config_: Config, a: Args) -> Result<ExitCode> {
    let params = config(&a.with)?;
    let app = App::open(config_, Mode::Command).await?;
    // Stored conversations' ids, to keep their analyses.
    let mut keys = Vec::new();
    let conversations = match &a.input {
        Some(file) => read_file(file, a.format)?,
        None => {
            let records = app.service.records();
            let filter = a
                .filters
                .clone()
                .query(a.limit.min(1000), None)
                .filter()
                .map_err(|e| anyhow!(e))?;
            let mut found = Vec::new();
            let mut filter = filter;
            loop {
                let page = records.conversations(&filter).await?;
                let ids: Vec<i64> = page.conversations.iter().map(|s| s.id).collect();
                for c in app.service.store.conversations_whole(&ids).await? {
                    keys.push((c.id, c.model.clone(), c.started_at));
                    found.push(c.into_conversation());
                }
                match page.next {
                    Some(next) if (found.len() as u64) < a.limit => filter.before = Some(next),
                    _ => break,
                }
            }
            found.truncate(a.limit as usize);
            keys.truncate(a.limit as usize);
            found
        }
    };
    if conversations.is_empty() {
        bail!("no conversations to analyse");
    }
    let n = conversations.len();
    let analyses = analyze(app.service.host.clone(), &a.analyzer, params, conversations).await?;
    if !keys.is_empty() {
        let version = analyzer_version(&app.service.host, &a.analyzer)?;
        let rows: Vec<NewAnalysis> = keys
            .into_iter()
            .zip(&analyses)
            .map(|((conversation_id, model, started_at), x)| NewAnalysis {
                conversation_id,
                model,
                started_at,
                analysis: x.clone(),
            })
            .collect();
        app.service
            .store
            .save_analyses(&a.analyzer, &version, None, &rows)
            .await?;
    }
    let (overall, aspects) = means(&analyses);
    if a.json {
        out!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "analyzer": a.analyzer,
                "conversations": n,
                "mean_score": overall,
                "mean_aspects": aspects.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
                "analyses": analyses,
            }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    for x in &analyses {
        show(x)?;
    }
    out!(
        "{n} conversations, mean score {overall:.1} — {}",
        aspects
            .iter()
            .map(|(k, v)| format!("{k} {v:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(ExitCode::SUCCESS)
}

pub(super) fn show(a: &Analysis) -> Result<(), crate::cli::OutputFailed> {
    out!("{}  {:.1}", printable(&a.conversation), a.score);
    for x in &a.aspects {
        for e in &x.evidence {
            let turns: Vec<String> = e.turns.iter().map(u32::to_string).collect();
            out!(
                "    {:<20} -{:<4.0} {}{}",
                x.name,
                e.points,
                if turns.is_empty() {
                    String::new()
                } else {
                    format!("turn {}: ", turns.join(","))
                },
                e.reason
            );
        }
    }
    Ok(())
}
