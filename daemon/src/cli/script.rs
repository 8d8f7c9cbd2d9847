//! `coach script eval`: try a script against inputs you give it, exactly as
//! a workflow would run it.

use crate::cli::out;
use crate::config::Config;
use crate::core::example::{EntitySpan, Example};
use crate::script::{Hook, hooks};
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Evaluate a script and print what it returned (JSON).
    Eval(EvalArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HookArg {
    /// A gate or a step's `when`: the input is an object of variables
    /// (`candidate`, `production`, `evaluation`, `dataset`, `run`, `steps`).
    Gate,
    /// A data rule: the input is an array of examples (`text`, `intent`,
    /// `split`, `entities`).
    Rules,
    /// A parameter rule: the input is an object of variables (`dataset`,
    /// `run`).
    Params,
    /// A trigger condition: the input is an object of variables (`now`,
    /// `last_run`, `model`, `data`).
    Trigger,
    /// An experiment's decision script: the input is the results object
    /// (`coach experiment show NAME --json`, field `results`).
    Decide,
}

#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// The `.rhai` file.
    pub file: PathBuf,
    /// A JSON file with the inputs (`-` for stdin). Missing variables are
    /// `()`.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Which hook to run it as.
    #[arg(long, value_enum, default_value_t = HookArg::Gate)]
    pub hook: HookArg,
}

pub fn run(_config: &Config, cmd: Command) -> Result<ExitCode> {
    let Command::Eval(a) = cmd;
    let input: Value = match &a.input {
        None => Value::Null,
        Some(p) if p.as_os_str() == "-" => {
            serde_json::from_reader(std::io::stdin()).context("the input on stdin is not JSON")?
        }
        Some(p) => serde_json::from_str(
            &std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?,
        )
        .with_context(|| format!("{} is not JSON", p.display()))?,
    };
    let hook = match a.hook {
        HookArg::Gate => Hook::Verdict,
        HookArg::Rules => Hook::Rules,
        HookArg::Params => Hook::Params,
        HookArg::Trigger => Hook::Trigger,
        HookArg::Decide => Hook::Decide,
    };
    let script = crate::script::compile_file(&a.file, hook)?;
    let variables = |input: &Value| -> Result<Vec<(String, Value)>> {
        let obj = match input {
            Value::Null => serde_json::Map::new(),
            Value::Object(o) => o.clone(),
            other => bail!("the input must be a JSON object of variables, not {other}"),
        };
        for k in obj.keys() {
            if !hook.variables().contains(&k.as_str()) {
                bail!(
                    "`{k}` is not a variable of this hook; it has: {}",
                    hook.variables().join(", ")
                );
            }
        }
        Ok(hook
            .variables()
            .iter()
            .map(|v| (v.to_string(), obj.get(*v).cloned().unwrap_or(Value::Null)))
            .collect())
    };
    let out = match hook {
        Hook::Decide => json!(hooks::decide(&script, "eval", &input)?),
        Hook::Verdict | Hook::Trigger => {
            let vars = variables(&input)?;
            let refs: Vec<(&str, &Value)> = vars.iter().map(|(k, v)| (k.as_str(), v)).collect();
            json!(hooks::verdict(&script, "eval", &refs)?)
        }
        Hook::Params => {
            let vars = variables(&input)?;
            let refs: Vec<(&str, &Value)> = vars.iter().map(|(k, v)| (k.as_str(), v)).collect();
            Value::Object(hooks::params(&script, "eval", &refs)?)
        }
        Hook::Rules => {
            let Value::Array(items) = input else {
                bail!("the input of a data rule is a JSON array of examples");
            };
            let mut examples = Vec::new();
            for (i, e) in items.iter().enumerate() {
                let text =
                    |k: &str, d: &str| e.get(k).and_then(Value::as_str).unwrap_or(d).to_owned();
                if e.get("text").and_then(Value::as_str).is_none() {
                    bail!("example {i} has no `text`");
                }
                let split = text("split", "unspecified")
                    .parse()
                    .map_err(|e| anyhow::anyhow!("example {i}: {e}"))?;
                let entities: Vec<EntitySpan> = match e.get("entities") {
                    None => Vec::new(),
                    Some(v) => serde_json::from_value(v.clone()).map_err(|err| {
                        anyhow::anyhow!(
                            "example {i}: `entities` must be a list of {{entity, start, end, value}}: {err}"
                        )
                    })?,
                };
                examples.push(Example {
                    text: text("text", ""),
                    intent: text("intent", ""),
                    split,
                    entities,
                });
            }
            let (kept, stats) = hooks::apply_rules(&script, "eval", examples)?;
            json!({
                "examples": kept.iter().map(|e| json!({"text": e.text, "intent": e.intent, "split": e.split,
                    "entities": e.entities})).collect::<Vec<_>>(),
                "kept": stats.kept, "dropped": stats.dropped, "changed": stats.changed,
            })
        }
    };
    out!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}
