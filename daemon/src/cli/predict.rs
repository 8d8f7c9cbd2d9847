//! `coach predict --model <id|name|latest> <text…>`.

use crate::app::{App, Mode};
use crate::cli::out;
use crate::config::Config;
use crate::core::ids::ModelRef;
use anyhow::{Result, anyhow, bail};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// An id, a name (its latest version), `name:version`, or `latest`.
    #[arg(long, default_value = "latest")]
    pub model: String,
    /// Utterances to classify.
    #[arg(required = true)]
    pub texts: Vec<String>,
    #[arg(long)]
    pub json: bool,
}

pub async fn run(config: Config, args: Args) -> Result<ExitCode> {
    let app = App::open(config, Mode::Command).await?;
    let r: ModelRef = args.model.parse().map_err(|e: String| anyhow!(e))?;
    let Some(model) = app.store.find_model(&r).await? else {
        bail!(
            "no model `{}`; list them with `coach models list`",
            args.model
        );
    };
    let preds = crate::pipeline::predict(
        app.host.clone(),
        app.service.artifacts(),
        &model,
        args.texts.clone(),
    )
    .await?;
    if args.json {
        let v: Vec<_> = args
            .texts
            .iter()
            .zip(&preds)
            .map(|(t, p)| {
                serde_json::json!({
                    "text": t,
                    "intent": p.intent,
                    "confidence": p.confidence,
                    "ranking": p.ranking.iter().map(|r| serde_json::json!({"intent": r.intent, "confidence": r.confidence})).collect::<Vec<_>>(),
                    "entities": p.entities.iter().map(|e| serde_json::json!({"entity": e.entity, "start": e.start, "end": e.end, "value": e.value})).collect::<Vec<_>>(),
                    "model": model.id,
                })
            })
            .collect();
        out!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    for (t, p) in args.texts.iter().zip(&preds) {
        out!("{t}\n  → {} ({:.3})", p.intent, p.confidence);
        let alts: Vec<String> = p
            .ranking
            .iter()
            .skip(1)
            .take(3)
            .map(|r| format!("{} {:.3}", r.intent, r.confidence))
            .collect();
        if !alts.is_empty() {
            out!("    next: {}", alts.join(", "));
        }
        for e in &p.entities {
            out!(
                "    entity {} = \"{}\" [{}..{}]",
                e.entity,
                e.value,
                e.start,
                e.end
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
