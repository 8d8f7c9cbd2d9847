//! `coach bench scripts`: what a script costs once compiled — a gate
//! evaluation (the shipped `beats_production.rhai` against a candidate and
//! a production model with 150 intents each) and a data rule (`filter` and
//! `map` of the shipped `redact.rhai`) over 100,000 examples.

use crate::cli::out;
use crate::config::Config;
use crate::core::example::{Example, Split};
use crate::script::{Hook, hooks};
use anyhow::{Result, bail};
use serde_json::{Value, json};
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Intents in the candidate and production models the gate compares
    /// (the quickstart has 17, CLINC150 150).
    #[arg(long, default_value_t = 150)]
    pub intents: usize,
    /// Gate evaluations to time.
    #[arg(long, default_value_t = 20_000)]
    pub gates: usize,
    /// Examples the data rule runs over.
    #[arg(long, default_value_t = 100_000)]
    pub examples: usize,
    /// Also time building the gate's inputs alone (a gate returning `true`
    /// with the same inputs) and converting one model.
    #[arg(long)]
    pub breakdown: bool,
    #[arg(long)]
    pub json: bool,
}

fn model(acc: f64, intents: usize) -> Value {
    let per: serde_json::Map<String, Value> = (0..intents)
        .map(|i| {
            (
                format!("intent_{i}"),
                json!({"precision": 0.9, "recall": 0.9, "f1": acc - (i % 7) as f64 * 0.001, "support": 20}),
            )
        })
        .collect();
    json!({"version": 3, "metrics": {"in_scope_accuracy": acc, "oos_recall": 0.4}, "per_intent": per})
}

pub fn run(_config: &Config, a: Args) -> Result<ExitCode> {
    let dir = Path::new("workflows/scripts");
    if !dir.is_dir() {
        bail!("run `coach bench scripts` from the Coach checkout (it uses workflows/scripts/)");
    }
    let t = Instant::now();
    let gate = crate::script::compile_file(&dir.join("beats_production.rhai"), Hook::Verdict)?;
    let compile_us = t.elapsed().as_secs_f64() * 1e6;
    let (candidate, production) = (model(0.935, a.intents), model(0.93, a.intents));
    let inputs = [("candidate", &candidate), ("production", &production)];
    // Warm up, then time each evaluation.
    for _ in 0..100 {
        hooks::verdict(&gate, "bench", &inputs)?;
    }
    let mut times = Vec::with_capacity(a.gates);
    let mut verdict = None;
    for _ in 0..a.gates {
        let t = Instant::now();
        verdict = Some(hooks::verdict(&gate, "bench", &inputs)?);
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    times.sort_by(f64::total_cmp);
    if a.breakdown {
        let trivial = crate::script::compile(
            crate::script::Origin::File("trivial.rhai".into()),
            Hook::Verdict,
            "true",
        )?;
        let t = Instant::now();
        for _ in 0..1000 {
            hooks::verdict(&trivial, "bench", &inputs)?;
        }
        out!(
            "      inputs alone (a gate returning true): {:.1} µs",
            t.elapsed().as_secs_f64() * 1e3
        );
        let t = Instant::now();
        for _ in 0..1000 {
            let _ = std::hint::black_box(crate::script::views::ModelView::from_json(&candidate));
        }
        out!(
            "      one model's view built: {:.1} µs",
            t.elapsed().as_secs_f64() * 1e3
        );
    }
    let pct = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];

    let rules = crate::script::compile_file(&dir.join("redact.rhai"), Hook::Rules)?;
    let texts = [
        "can you book the string quartet for the ceremony",
        "email me the menu at anna.m@example.org please",
        "hi",
        "call me back on +44 7700 900123 about the venue",
        "what is the weather going to be like on saturday",
    ];
    let examples: Vec<Example> = (0..a.examples)
        .map(|i| Example {
            text: format!("{} {i}", texts[i % texts.len()]),
            intent: format!("intent_{}", i % 150),
            entities: Vec::new(),
            split: Split::Train,
        })
        .collect();
    let t = Instant::now();
    let (_, stats) = hooks::apply_rules(&rules, "bench", examples)?;
    let rules_s = t.elapsed().as_secs_f64();

    let report = json!({
        "gate": {"script": "workflows/scripts/beats_production.rhai", "intents": a.intents, "compile_us": compile_us,
                 "evaluations": a.gates, "mean_us": times.iter().sum::<f64>() / times.len() as f64,
                 "p50_us": pct(0.5), "p99_us": pct(0.99), "verdict": verdict},
        "rules": {"script": "workflows/scripts/redact.rhai", "examples": a.examples, "seconds": rules_s,
                  "per_example_us": rules_s * 1e6 / a.examples as f64,
                  "kept": stats.kept, "dropped": stats.dropped, "changed": stats.changed},
    });
    if a.json {
        out!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    let g = &report["gate"];
    out!(
        "gate  beats_production.rhai, {} intents: compile {:.0} µs; evaluation mean {:.1} µs, p50 {:.1} µs, p99 {:.1} µs over {} runs   (target ≤ 50 µs)",
        a.intents,
        compile_us,
        g["mean_us"].as_f64().unwrap_or(f64::NAN),
        pct(0.5),
        pct(0.99),
        a.gates
    );
    out!(
        "rules redact.rhai (filter + map): {} examples in {:.3} s ({:.2} µs each); kept {}, dropped {}, changed {}   (target ≤ 1 s)",
        a.examples,
        rules_s,
        rules_s * 1e6 / a.examples as f64,
        stats.kept,
        stats.dropped,
        stats.changed
    );
    Ok(ExitCode::SUCCESS)
}
