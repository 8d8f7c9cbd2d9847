//! `coach run <workflow.toml>`: run a workflow in this process and print its
//! evaluation. Ctrl-C cancels the run cleanly.

use super::pct;
use crate::app::{App, Mode};
use crate::cli::{note, out};
use crate::config::Config;
use crate::core::evaluation::Report;
use crate::core::stop::{RunStop, StopReason};
use anyhow::Result;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The workflow file.
    pub workflow: PathBuf,
    /// Print the run summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Rows of the per-intent table (worst F1 first); 0 shows all.
    #[arg(long, default_value_t = 10)]
    pub intents: usize,
}

pub async fn run(config: Config, args: Args) -> Result<ExitCode> {
    let app = App::open(config, Mode::Command).await?;
    let good = match app.service.load_workflow_file(&args.workflow) {
        Ok(good) => good,
        Err(errors) => {
            for e in &errors.0 {
                note!("{}\n", e.render());
            }
            note!("{} error(s); nothing was run", errors.0.len());
            return Ok(ExitCode::from(1));
        }
    };
    let stop = RunStop::new();
    {
        let (stop, quit) = (stop.clone(), app.stop.clone());
        app.tracker.spawn(async move {
            tokio::select! {
                r = tokio::signal::ctrl_c() => if r.is_err() { return },
                () = quit.cancelled() => return,
            }
            note!("cancelling the run (Ctrl-C again to stop at once)");
            stop.abort(StopReason::Cancelled);
            tokio::select! {
                r = tokio::signal::ctrl_c() => if r.is_ok() { std::process::exit(130) },
                () = quit.cancelled() => {}
            }
        });
    }
    let summary = app
        .service
        .run_here(&good, Arc::new(super::progress::Terminal::new()), &stop)
        .await;
    app.close(std::time::Duration::from_secs(5)).await;
    let summary = summary?;
    if args.json {
        let v = serde_json::json!({
            "run": summary.run_id,
            "state": summary.state,
            "error": summary.error,
            "evaluation": summary.evaluation.as_deref(),
            "model": summary.model.as_ref().map(|m| serde_json::json!({"id": m.id, "name": m.name, "version": m.version, "artifact": m.artifact_hash})),
            "gates": summary.verdicts.iter().map(|(s, v)| serde_json::json!({"step": s, "pass": v.pass, "reason": v.reason})).collect::<Vec<_>>(),
            "skipped": summary.skipped.iter().map(|(s, r)| serde_json::json!({"step": s, "reason": r})).collect::<Vec<_>>(),
        });
        out!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        if let Some(r) = &summary.evaluation {
            print_report(r, args.intents)?;
        }
        for (step, v) in &summary.verdicts {
            out!(
                "\ngate `{step}`: {}{}",
                if v.pass { "PASS" } else { "NO" },
                v.reason
                    .as_ref()
                    .map(|r| format!(" — {r}"))
                    .unwrap_or_default()
            );
        }
        for (step, why) in &summary.skipped {
            out!("skipped `{step}`: {why}");
        }
        if let Some(m) = &summary.model {
            out!(
                "\nregistered model {} — {} v{} (artifact {})",
                m.id,
                m.name,
                m.version,
                crate::core::ids::short(&m.artifact_hash, 16)
            );
            out!("try: coach predict --model {} \"<an utterance>\"", m.id);
        }
    }
    match summary.error {
        None => Ok(ExitCode::SUCCESS),
        Some(e) => {
            note!("run {} {}: {e}", summary.run_id, summary.state);
            Ok(ExitCode::from(1))
        }
    }
}

/// The evaluation table.
pub fn print_report(r: &Report, rows: usize) -> Result<(), crate::cli::OutputFailed> {
    out!(
        "\nevaluation on the {} split ({} examples)",
        r.split,
        r.examples
    );
    out!("  accuracy            {}", pct(r.accuracy));
    out!("  macro-F1            {}", pct(r.macro_f1));
    if let Some(v) = r.in_scope_accuracy {
        out!("  in-scope accuracy   {}", pct(v));
    }
    if let Some(v) = r.oos_recall {
        out!(
            "  out-of-scope recall {}  (label `{}`)",
            pct(v),
            r.oos_label
        );
    }
    out!("  mean confidence     {:.3}", r.mean_confidence);
    out!("  calibration error   {:.3}  (ECE, 15 bins)", r.ece);
    let mut per = r.per_intent.clone();
    per.sort_by(|a, b| a.f1.total_cmp(&b.f1).then_with(|| a.intent.cmp(&b.intent)));
    let shown = if rows == 0 {
        per.len()
    } else {
        rows.min(per.len())
    };
    if shown > 0 {
        let w = per.iter().map(|s| s.intent.len()).max().unwrap_or(6).max(6);
        out!(
            "\n  {:<w$}  precision  recall     F1  support{}",
            "intent",
            if shown < per.len() {
                format!("   ({shown} lowest F1 of {})", per.len())
            } else {
                String::new()
            }
        );
        for s in per.iter().take(shown) {
            out!(
                "  {:<w$}  {:>9}  {:>6}  {:>5}  {:>7}",
                s.intent,
                pct(s.precision),
                pct(s.recall),
                pct(s.f1),
                s.support
            );
        }
    }
    if !r.confusions.is_empty() {
        out!("\n  most frequent confusions (truth → predicted)");
        for c in &r.confusions {
            out!("  {:>4} × {} → {}", c.count, c.truth, c.predicted);
        }
    }
    Ok(())
}
