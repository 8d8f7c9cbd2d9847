//! Run the built plugin in Coach's own sandbox from a native test.
//!
//! [`crate::testing`] calls the plugin's Rust code directly; this module
//! runs what Coach will run: the crate is built for `wasm32-wasip2`
//! (`coach plugin build`) and the component is run by `coach plugin run`
//! — the same engine, limits, grants and output checks as a workflow step
//! — and what it produced comes back typed.
//!
//! It needs the `coach` binary: the one `COACH_BIN` names, else `coach` on
//! `PATH`.
//!
//! ```no_run
//! use coach_plugin_sdk::sandbox::Sandbox;
//!
//! let run = Sandbox::new(env!("CARGO_MANIFEST_DIR"))
//!     .with("intents", r#"["wifi"]"#)
//!     .source()
//!     .expect("runs in Coach's sandbox");
//! assert!(run.examples.iter().all(|e| e.intent == "wifi"));
//! ```

#![cfg(not(target_arch = "wasm32"))]

use crate::{EntitySpan, Example, Prediction, RankedIntent, Split};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// Why a sandbox run did not happen or failed.
#[derive(Debug, Clone, PartialEq)]
pub enum SandboxError {
    /// The `coach` binary could not be started.
    NoCoach(String),
    /// `coach plugin build` failed: cargo's and the check's messages.
    Build(String),
    /// `coach plugin run` failed: what it said.
    Run(String),
    /// Its output was not what this SDK understands.
    Output(String),
}

impl fmt::Display for SandboxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SandboxError::NoCoach(e) => write!(
                f,
                "cannot run `coach` ({e}); install Coach or set COACH_BIN to its binary"
            ),
            SandboxError::Build(e) => write!(f, "`coach plugin build` failed:\n{e}"),
            SandboxError::Run(e) => write!(f, "`coach plugin run` failed:\n{e}"),
            SandboxError::Output(e) => write!(f, "unexpected output of `coach plugin run`: {e}"),
        }
    }
}

impl std::error::Error for SandboxError {}

/// One run of the plugin in `dir` in Coach's sandbox.
#[derive(Debug, Clone)]
pub struct Sandbox {
    dir: PathBuf,
    args: Vec<String>,
}

/// What a source produced, after Coach's checks.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceRun {
    pub examples: Vec<Example>,
    /// Conversations, as Coach keeps them (JSON).
    pub conversations: Vec<Value>,
    /// Records the plugin reported reading.
    pub records: u64,
    /// Records skipped by the plugin or refused by Coach.
    pub bad_records: u64,
    /// `location: reason` of the first bad records.
    pub first_bad: Vec<String>,
    /// What the cursor's `checkpoint()` returned at the end.
    pub checkpoint: Option<String>,
    /// Calls of `next-batch`, the last (empty) one included.
    pub batches: u64,
}

/// What a trainer produced.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainerRun {
    pub model_bytes: u64,
    pub metrics: BTreeMap<String, f64>,
    /// For each [`Sandbox::text`], in order.
    pub predictions: Vec<Prediction>,
    /// Share of the input's `test` examples predicted right.
    pub test_accuracy: Option<f64>,
    pub train_seconds: f64,
}

fn coach() -> PathBuf {
    std::env::var_os("COACH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("coach"))
}

/// Each folder is built once per test process, however many tests run.
fn build_once(dir: &Path) -> Result<(), SandboxError> {
    static BUILT: OnceLock<Mutex<BTreeMap<PathBuf, Result<(), SandboxError>>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(r) = built.get(dir) {
        return r.clone();
    }
    let result = Command::new(coach())
        .args(["plugin", "build"])
        .arg(dir)
        .output()
        .map_err(|e| SandboxError::NoCoach(e.to_string()))
        .and_then(|o| {
            if o.status.success() {
                Ok(())
            } else {
                Err(SandboxError::Build(format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stderr),
                    String::from_utf8_lossy(&o.stdout)
                )))
            }
        });
    built.insert(dir.to_path_buf(), result.clone());
    result
}

impl Sandbox {
    /// The plugin crate in `dir` (a test passes `env!("CARGO_MANIFEST_DIR")`).
    pub fn new(dir: impl Into<PathBuf>) -> Sandbox {
        Sandbox {
            dir: dir.into(),
            args: Vec::new(),
        }
    }

    /// A step parameter, as `with = { key = value }` would set it; `value`
    /// is read as JSON when it is (`3`, `true`, `["a"]`), else as text.
    pub fn with(mut self, key: &str, value: impl fmt::Display) -> Sandbox {
        self.args.push("--with".into());
        self.args.push(format!("{key}={value}"));
        self
    }

    /// Trainers: the examples file (Coach JSONL); analyzers: the
    /// conversations file.
    pub fn input(mut self, path: impl AsRef<Path>) -> Sandbox {
        self.args.push("--input".into());
        self.args.push(path.as_ref().to_string_lossy().into_owned());
        self
    }

    /// Trainers: a text to predict after training.
    pub fn text(mut self, text: &str) -> Sandbox {
        self.args.push("--text".into());
        self.args.push(text.to_owned());
        self
    }

    /// Sources: resume from this checkpoint.
    pub fn checkpoint(mut self, checkpoint: &str) -> Sandbox {
        self.args.push("--checkpoint".into());
        self.args.push(checkpoint.to_owned());
        self
    }

    /// Let the plugin read `path` in this run (as an operator's grant).
    pub fn grant(mut self, path: impl AsRef<Path>) -> Sandbox {
        self.args.push("--grant".into());
        self.args.push(path.as_ref().to_string_lossy().into_owned());
        self
    }

    /// Build the plugin (once per process) and run it; the JSON that
    /// `coach plugin run --json` printed.
    pub fn run(&self) -> Result<Value, SandboxError> {
        build_once(&self.dir)?;
        let out = Command::new(coach())
            .args(["plugin", "run"])
            .arg(&self.dir)
            .arg("--json")
            .args(&self.args)
            .output()
            .map_err(|e| SandboxError::NoCoach(e.to_string()))?;
        if !out.status.success() {
            return Err(SandboxError::Run(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            )));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| SandboxError::Output(e.to_string()))
    }

    /// Run a source to its end.
    pub fn source(&self) -> Result<SourceRun, SandboxError> {
        let v = self.run()?;
        let examples = v["examples"]
            .as_array()
            .ok_or_else(|| SandboxError::Output("no `examples`".into()))?
            .iter()
            .map(example)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SourceRun {
            examples,
            conversations: v["conversations"].as_array().cloned().unwrap_or_default(),
            records: v["records"].as_u64().unwrap_or(0),
            bad_records: v["bad_records"].as_u64().unwrap_or(0),
            first_bad: v["first_bad"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|b| {
                    format!(
                        "{}: {}",
                        b["location"].as_str().unwrap_or(""),
                        b["reason"].as_str().unwrap_or("")
                    )
                })
                .collect(),
            checkpoint: v["checkpoint"].as_str().map(str::to_owned),
            batches: v["batches"].as_u64().unwrap_or(0),
        })
    }

    /// Train on [`Sandbox::input`] and predict each [`Sandbox::text`].
    pub fn trainer(&self) -> Result<TrainerRun, SandboxError> {
        let v = self.run()?;
        let predictions = v["predictions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(prediction)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TrainerRun {
            model_bytes: v["model_bytes"].as_u64().unwrap_or(0),
            metrics: v["metrics"]
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
                .collect(),
            predictions,
            test_accuracy: v["test_accuracy"].as_f64(),
            train_seconds: v["train_seconds"].as_f64().unwrap_or(0.0),
        })
    }

    /// Analyse the conversations of [`Sandbox::input`]: one analysis each
    /// (JSON: `conversation`, `score`, `aspects`, `findings`).
    pub fn analyzer(&self) -> Result<Vec<Value>, SandboxError> {
        let v = self.run()?;
        v["analyses"]
            .as_array()
            .cloned()
            .ok_or_else(|| SandboxError::Output("no `analyses`".into()))
    }
}

fn field<'a>(v: &'a Value, key: &str) -> Result<&'a str, SandboxError> {
    v[key]
        .as_str()
        .ok_or_else(|| SandboxError::Output(format!("no `{key}` in {v}")))
}

fn example(v: &Value) -> Result<Example, SandboxError> {
    Ok(Example {
        text: field(v, "text")?.to_owned(),
        intent: field(v, "intent")?.to_owned(),
        entities: spans(&v["entities"])?,
        split: match v["split"].as_str() {
            Some("train") => Split::Train,
            Some("validation") => Split::Validation,
            Some("test") => Split::Test,
            _ => Split::Unspecified,
        },
    })
}

fn spans(v: &Value) -> Result<Vec<EntitySpan>, SandboxError> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            Ok(EntitySpan {
                entity: field(s, "entity")?.to_owned(),
                start: s["start"].as_u64().unwrap_or(0) as u32,
                end: s["end"].as_u64().unwrap_or(0) as u32,
                value: field(s, "value")?.to_owned(),
            })
        })
        .collect()
}

fn prediction(v: &Value) -> Result<Prediction, SandboxError> {
    Ok(Prediction {
        intent: field(v, "intent")?.to_owned(),
        confidence: v["confidence"].as_f64().unwrap_or(0.0) as f32,
        ranking: v["ranking"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                Ok(RankedIntent {
                    intent: field(r, "intent")?.to_owned(),
                    confidence: r["confidence"].as_f64().unwrap_or(0.0) as f32,
                })
            })
            .collect::<Result<Vec<_>, SandboxError>>()?,
        entities: spans(&v["entities"])?,
    })
}
