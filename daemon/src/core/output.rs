//! What a step produced, as it is stored with the step attempt
//! (`run_steps.output`) and read back when a run resumes, when a trigger
//! condition compares data, and when the API shows a run.
//!
//! One serde type, tagged by `kind`: a field renamed here is renamed for
//! every reader at once, and a stored output that does not match fails to
//! parse with the reason instead of reading as empty. The large things an
//! output points at (a dataset snapshot, a model's bytes) stay in the store
//! and the artifact folder; the output names them.
//!
//! Outputs written before the tag existed are read through
//! [`StepOutput::from_stored`], which supplies the tag from the step's kind.

use super::evaluation::Report;
use super::example::SplitCounts;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a gate or a `when` decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub pass: bool,
    pub reason: Option<String>,
}

/// What a data rule did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleStats {
    pub kept: usize,
    pub dropped: usize,
    pub changed: usize,
}

/// A dataset snapshot a step stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetOutput {
    pub dataset_version: i64,
    pub examples: usize,
    /// The snapshot's content hash.
    pub hash: String,
    /// How many examples are in each split (absent in outputs stored
    /// before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub splits: Option<SplitCounts>,
    /// Conversations the snapshot holds beside its examples.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub conversations: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// What a curate step did, counted (each decision is listed in the
/// snapshot's origin).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurateCounts {
    pub examples: usize,
    pub kept: usize,
    pub exact_duplicates: usize,
    pub near_duplicates: usize,
    /// Examples dropped for a conflict (only with `drop_conflicts`).
    pub conflicting: usize,
    /// Texts labelled with more than one intent.
    pub conflicts: usize,
    /// Examples with at least one redaction, and redactions in all.
    pub redacted_examples: usize,
    pub redactions: usize,
    pub spans_dropped: usize,
    /// Intents with fewer examples than the step's `min_examples`.
    #[serde(default)]
    pub small_intents: usize,
}

/// What an analyze step did: stored conversations analysed and kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analyzed {
    pub analyzer: String,
    pub analyzer_version: String,
    /// Conversations analysed now.
    pub analyzed: u64,
    /// Conversations this analyzer version had analysed before.
    pub skipped: u64,
    /// Conversations passed over for their length (more stored text than
    /// one read holds).
    #[serde(default)]
    pub too_long: u64,
    pub mean_score: Option<f64>,
    #[serde(deserialize_with = "numbers")]
    pub mean_aspects: BTreeMap<String, f64>,
}

/// A model a trainer step produced (stored as an artifact, not yet
/// registered).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelOutput {
    /// SHA-256 of the model's bytes: the artifact that holds them.
    pub artifact: String,
    pub model_bytes: usize,
    pub plugin: String,
    pub plugin_version: String,
    pub plugin_hash: String,
    pub config_hash: String,
    /// The snapshot it was trained on.
    pub dataset_version: i64,
    pub intents: Vec<String>,
    /// The registered model training continued from.
    pub base_model: Option<i64>,
    /// The trainer's final metrics (`val_accuracy`, …).
    #[serde(deserialize_with = "numbers")]
    pub metrics: BTreeMap<String, f64>,
}

/// A model version a register step created (or found already created by
/// an earlier attempt of the run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    pub model: i64,
    pub name: String,
    pub version: i32,
    pub artifact: String,
}

/// What a deploy step did: the environment serves this model version
/// (`changed` false when it already did).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    pub model: i64,
    pub name: String,
    pub version: i32,
    pub environment: String,
    pub changed: bool,
}

/// One file a process step named as an artifact, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtifactFile {
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
}

/// What a process step's command left.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessOutput {
    /// `local` or `slurm`.
    pub executor: String,
    /// The GPUs it ran on (local).
    #[serde(default)]
    pub devices: Vec<String>,
    /// The Slurm job that ran it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm_job: Option<u64>,
    pub seconds: f64,
    /// How many metric values it reported.
    pub metrics: usize,
    /// The last value of each metric.
    #[serde(deserialize_with = "numbers")]
    pub final_metrics: BTreeMap<String, f64>,
    pub bad_lines: u64,
    pub artifacts: Vec<ArtifactFile>,
    /// Where it could keep checkpoints across attempts.
    pub checkpoint_dir: String,
}

/// Metrics as stored: a value that was not a number (NaN written as
/// `null` by earlier versions) is left out rather than failing the read.
fn numbers<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, f64>, D::Error> {
    let raw: BTreeMap<String, Option<f64>> = Deserialize::deserialize(d)?;
    Ok(raw.into_iter().filter_map(|(k, v)| Some((k, v?))).collect())
}

/// What a step produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StepOutput {
    /// A source or split step: a dataset snapshot.
    Dataset(DatasetOutput),
    /// A rules step: a dataset snapshot, and what the rules did.
    Ruled {
        #[serde(flatten)]
        dataset: DatasetOutput,
        #[serde(flatten)]
        stats: RuleStats,
    },
    Model(ModelOutput),
    Evaluation(Report),
    Verdict(Verdict),
    Registered(Registration),
    Process(ProcessOutput),
    Deployed(Deployment),
    /// A curate step: a dataset snapshot, and what curation did.
    Curated {
        #[serde(flatten)]
        dataset: DatasetOutput,
        curation: CurateCounts,
    },
    Analyzed(Analyzed),
}

/// The kind of output a step kind produces, for outputs stored before the
/// `kind` tag existed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    Dataset,
    Ruled,
    Model,
    Evaluation,
    Verdict,
    Registered,
    Process,
    Deployed,
    Curated,
    Analyzed,
}

impl OutputKind {
    fn tag(self) -> &'static str {
        match self {
            OutputKind::Dataset => "dataset",
            OutputKind::Ruled => "ruled",
            OutputKind::Model => "model",
            OutputKind::Evaluation => "evaluation",
            OutputKind::Verdict => "verdict",
            OutputKind::Registered => "registered",
            OutputKind::Process => "process",
            OutputKind::Deployed => "deployed",
            OutputKind::Curated => "curated",
            OutputKind::Analyzed => "analyzed",
        }
    }
}

impl StepOutput {
    /// Read a stored output. `kind` is what the step produces; it tags
    /// outputs written before the tag existed.
    pub fn from_stored(text: &str, kind: OutputKind) -> Result<StepOutput, String> {
        let mut v: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| format!("the stored output is not JSON: {e}"))?;
        if let Some(o) = v.as_object_mut()
            && !o.contains_key("kind")
        {
            o.insert("kind".into(), kind.tag().into());
        }
        let out: StepOutput = serde_json::from_value(v)
            .map_err(|e| format!("the stored output does not read as {}: {e}", kind.tag()))?;
        if out.kind() != kind {
            return Err(format!(
                "the stored output is {}, not {}",
                out.kind().tag(),
                kind.tag()
            ));
        }
        Ok(out)
    }

    pub fn kind(&self) -> OutputKind {
        match self {
            StepOutput::Dataset(_) => OutputKind::Dataset,
            StepOutput::Ruled { .. } => OutputKind::Ruled,
            StepOutput::Model(_) => OutputKind::Model,
            StepOutput::Evaluation(_) => OutputKind::Evaluation,
            StepOutput::Verdict(_) => OutputKind::Verdict,
            StepOutput::Registered(_) => OutputKind::Registered,
            StepOutput::Process(_) => OutputKind::Process,
            StepOutput::Deployed(_) => OutputKind::Deployed,
            StepOutput::Curated { .. } => OutputKind::Curated,
            StepOutput::Analyzed(_) => OutputKind::Analyzed,
        }
    }

    /// The dataset snapshot it names, if it is one.
    pub fn dataset(&self) -> Option<&DatasetOutput> {
        match self {
            StepOutput::Dataset(d)
            | StepOutput::Ruled { dataset: d, .. }
            | StepOutput::Curated { dataset: d, .. } => Some(d),
            _ => None,
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        // A derived `Serialize` of plain fields and finite numbers cannot
        // fail; NaN metrics serialise as `null`.
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::evaluation::score;

    fn dataset() -> DatasetOutput {
        DatasetOutput {
            dataset_version: 3,
            examples: 120,
            hash: "ab".repeat(32),
            splits: Some(SplitCounts {
                train: 100,
                validation: 10,
                test: 10,
                unspecified: 0,
            }),
            conversations: 0,
        }
    }

    /// Every kind of output, as a run would store it.
    pub fn every_kind() -> Vec<StepOutput> {
        vec![
            StepOutput::Dataset(dataset()),
            StepOutput::Ruled {
                dataset: dataset(),
                stats: RuleStats {
                    kept: 118,
                    dropped: 2,
                    changed: 5,
                },
            },
            StepOutput::Model(ModelOutput {
                artifact: "cd".repeat(32),
                model_bytes: 4096,
                plugin: "trainer-intent".into(),
                plugin_version: "0.1.0".into(),
                plugin_hash: "ef".repeat(32),
                config_hash: "01".repeat(32),
                dataset_version: 3,
                intents: vec!["greet".into(), "oos".into()],
                base_model: Some(1),
                metrics: [("val_accuracy".to_owned(), 0.9)].into(),
            }),
            StepOutput::Evaluation(score(
                "test",
                &[
                    ("greet".into(), "greet".into(), 0.9),
                    ("oos".into(), "greet".into(), 0.4),
                ],
                "oos",
                5,
            )),
            StepOutput::Verdict(Verdict {
                pass: false,
                reason: Some("not better".into()),
            }),
            StepOutput::Registered(Registration {
                model: 7,
                name: "bot".into(),
                version: 2,
                artifact: "cd".repeat(32),
            }),
            StepOutput::Process(ProcessOutput {
                executor: "slurm".into(),
                devices: vec![],
                slurm_job: Some(42),
                seconds: 12.5,
                metrics: 3,
                final_metrics: [("loss".to_owned(), 0.25)].into(),
                bad_lines: 0,
                artifacts: vec![ArtifactFile {
                    path: "/work/run-1/train/model.bin".into(),
                    sha256: "12".repeat(32),
                    bytes: 10,
                }],
                checkpoint_dir: "/work/run-1/train".into(),
            }),
            StepOutput::Deployed(Deployment {
                model: 4,
                name: "support".into(),
                version: 2,
                environment: "production".into(),
                changed: true,
            }),
            StepOutput::Curated {
                dataset: dataset(),
                curation: CurateCounts {
                    examples: 130,
                    kept: 120,
                    exact_duplicates: 8,
                    near_duplicates: 2,
                    redactions: 3,
                    redacted_examples: 3,
                    ..Default::default()
                },
            },
            StepOutput::Analyzed(Analyzed {
                analyzer: "analyzer-quality".into(),
                analyzer_version: "0.1.0+0123456789ab".into(),
                analyzed: 40,
                skipped: 2,
                too_long: 1,
                mean_score: Some(81.5),
                mean_aspects: [("task_completion".to_owned(), 77.0)].into(),
            }),
        ]
    }

    #[test]
    fn every_kind_reads_back_what_it_wrote() {
        for out in every_kind() {
            let text = out.to_json().to_string();
            assert_eq!(
                StepOutput::from_stored(&text, out.kind()),
                Ok(out.clone()),
                "{text}"
            );
        }
    }

    #[test]
    fn untagged_outputs_of_earlier_versions_still_read() {
        let old = r#"{"dataset_version": 3, "examples": 120, "hash": "x", "kept": 1, "dropped": 2, "changed": 0}"#;
        let out = StepOutput::from_stored(old, OutputKind::Ruled).unwrap();
        assert_eq!(out.dataset().unwrap().dataset_version, 3);
        let old = r#"{"executor":"local","final_metrics":{"loss":0.5},"devices":["0"],"seconds":1.5,"metrics":1,"bad_lines":0,"artifacts":[],"checkpoint_dir":"/c"}"#;
        assert!(matches!(
            StepOutput::from_stored(old, OutputKind::Process),
            Ok(StepOutput::Process(p)) if p.devices == ["0"]
        ));
    }

    #[test]
    fn metrics_that_were_not_numbers_are_left_out() {
        let old = r#"{"artifact":"a","model_bytes":1,"plugin":"p","plugin_version":"1","plugin_hash":"h","config_hash":"c","dataset_version":1,"intents":[],"base_model":null,"metrics":{"loss":null,"val_accuracy":0.5}}"#;
        let Ok(StepOutput::Model(m)) = StepOutput::from_stored(old, OutputKind::Model) else {
            panic!("an old model output reads")
        };
        assert_eq!(m.metrics, [("val_accuracy".to_owned(), 0.5)].into());
    }

    #[test]
    fn a_mismatched_or_damaged_output_says_so() {
        let e = StepOutput::from_stored(r#"{"pass": true}"#, OutputKind::Dataset).unwrap_err();
        assert!(e.contains("does not read as dataset"), "{e}");
        let text = StepOutput::Verdict(Verdict {
            pass: true,
            reason: None,
        })
        .to_json()
        .to_string();
        let e = StepOutput::from_stored(&text, OutputKind::Model).unwrap_err();
        assert!(e.contains("is verdict, not model"), "{e}");
        assert!(StepOutput::from_stored("{", OutputKind::Model).is_err());
    }
}
