//! What steps pass to one another while a run is in memory: the typed
//! [`StepOutput`] a step stores, with what it names loaded (a dataset's
//! examples, a model's bytes). [`Output::stored`] is what goes to the
//! store; [`Output::restore`] loads it back when a run resumes.

use super::Runner;
use crate::core::evaluation::Report;
use crate::core::example::{Example, Split, SplitCounts};
use crate::core::ids::short;
use crate::core::output::{
    Analyzed, CurateCounts, DatasetOutput, Deployment, ModelOutput, ProcessOutput, Registration,
    RuleStats, StepOutput, Verdict,
};
use crate::store::ModelRow;
use anyhow::{Result, anyhow};
use std::sync::Arc;

/// A dataset snapshot: where it is stored, and its examples.
#[derive(Debug)]
pub struct Dataset {
    pub out: DatasetOutput,
    pub rows: Vec<Example>,
}

impl Dataset {
    pub fn new(version: i64, hash: String, rows: Vec<Example>) -> Dataset {
        Dataset {
            out: DatasetOutput {
                dataset_version: version,
                examples: rows.len(),
                hash,
                splits: Some(SplitCounts::of(&rows)),
                conversations: 0,
            },
            rows,
        }
    }

    /// The examples of `split`.
    pub fn of(&self, split: Split) -> impl Iterator<Item = &Example> {
        self.rows.iter().filter(move |r| r.split == split)
    }

    pub fn has(&self, split: Split) -> bool {
        self.rows.iter().any(|r| r.split == split)
    }
}

/// A model a trainer step produced: its stored record, its bytes, and the
/// dataset it was trained on.
#[derive(Debug)]
pub struct Trained {
    pub out: ModelOutput,
    pub bytes: Vec<u8>,
    pub dataset: Arc<Dataset>,
}

#[derive(Debug, Clone)]
pub enum Output {
    Dataset(Arc<Dataset>),
    /// A rules step's dataset, with what the rules did.
    Ruled(Arc<Dataset>, RuleStats),
    Model(Arc<Trained>),
    Evaluation(Arc<Report>),
    Registered(Box<ModelRow>),
    Verdict(Verdict),
    /// What a process step left: devices, time, metrics, artifacts.
    Process(Arc<ProcessOutput>),
    Deployed(Deployment),
    /// A curate step's dataset, with what curation did.
    Curated(Arc<Dataset>, CurateCounts),
    Analyzed(Analyzed),
}

impl Output {
    /// The dataset it is (or carries), if any.
    pub fn dataset(&self) -> Option<&Arc<Dataset>> {
        match self {
            Output::Dataset(d) | Output::Ruled(d, _) | Output::Curated(d, _) => Some(d),
            _ => None,
        }
    }

    /// What the store keeps of it.
    pub fn stored(&self) -> StepOutput {
        match self {
            Output::Dataset(d) => StepOutput::Dataset(d.out.clone()),
            Output::Ruled(d, stats) => StepOutput::Ruled {
                dataset: d.out.clone(),
                stats: *stats,
            },
            Output::Model(m) => StepOutput::Model(m.out.clone()),
            Output::Evaluation(r) => StepOutput::Evaluation((**r).clone()),
            Output::Registered(m) => StepOutput::Registered(Registration {
                model: m.id,
                name: m.name.clone(),
                version: m.version,
                artifact: m.artifact_hash.clone(),
            }),
            Output::Verdict(v) => StepOutput::Verdict(v.clone()),
            Output::Process(p) => StepOutput::Process((**p).clone()),
            Output::Deployed(d) => StepOutput::Deployed(d.clone()),
            Output::Curated(d, c) => StepOutput::Curated {
                dataset: d.out.clone(),
                curation: c.clone(),
            },
            Output::Analyzed(a) => StepOutput::Analyzed(a.clone()),
        }
    }

    /// One line for people: what the step came to.
    pub fn line(&self) -> String {
        match self {
            Output::Dataset(d) => {
                let c = SplitCounts::of(&d.rows);
                let conversations = match d.out.conversations {
                    0 => String::new(),
                    n => format!(", {n} conversations"),
                };
                format!(
                    "{} examples (train {}, validation {}, test {}){conversations}, snapshot {}",
                    d.rows.len(),
                    c.train + c.unspecified,
                    c.validation,
                    c.test,
                    short(&d.out.hash, 12)
                )
            }
            Output::Model(m) => {
                let mut s = format!(
                    "{} intents, {} KiB model",
                    m.out.intents.len(),
                    m.bytes.len() / 1024
                );
                // Cross-validated figures when the trainer has them: a
                // validation split it was fitted on says nothing.
                let metric = |k: &str| m.out.metrics.get(k).copied();
                if let Some(a) = metric("cv_accuracy") {
                    s.push_str(&format!(", cross-validated accuracy {:.1}%", a * 100.0));
                } else if let Some(a) = metric("val_accuracy") {
                    s.push_str(&format!(", validation accuracy {:.1}%", a * 100.0));
                }
                s
            }
            Output::Evaluation(r) => format!(
                "accuracy {:.1}% on {} {} examples",
                r.accuracy * 100.0,
                r.examples,
                r.split
            ),
            Output::Registered(m) => {
                format!("registered model {} ({} v{})", m.id, m.name, m.version)
            }
            Output::Verdict(v) => format!(
                "{}{}",
                if v.pass { "passed" } else { "said no" },
                v.reason
                    .as_ref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ),
            Output::Ruled(d, r) => format!(
                "kept {} examples, dropped {}, changed {}; snapshot {}",
                r.kept,
                r.dropped,
                r.changed,
                short(&d.out.hash, 12)
            ),
            Output::Process(p) => format!(
                "ran {:.1} s{}, {} metric values, {} artifact file(s)",
                p.seconds,
                if p.devices.is_empty() {
                    String::new()
                } else {
                    format!(" on GPU {}", p.devices.join(","))
                },
                p.metrics,
                p.artifacts.len()
            ),
            Output::Deployed(d) if d.changed => format!(
                "{} now serves {} v{} (model {})",
                d.environment, d.name, d.version, d.model
            ),
            Output::Deployed(d) => {
                format!("{} already served {} v{}", d.environment, d.name, d.version)
            }
            Output::Curated(d, c) => format!(
                "kept {} of {} examples ({} duplicates, {} near duplicates, {} conflicting texts, {} redactions); snapshot {}",
                c.kept,
                c.examples,
                c.exact_duplicates,
                c.near_duplicates,
                c.conflicts,
                c.redactions,
                short(&d.out.hash, 12)
            ),
            Output::Analyzed(a) => format!(
                "analysed {} conversations with {} {}{}{}",
                a.analyzed,
                a.analyzer,
                a.analyzer_version,
                a.mean_score
                    .map(|m| format!(", mean score {m:.1}"))
                    .unwrap_or_default(),
                if a.too_long > 0 {
                    format!(", {} passed over as too long to read whole", a.too_long)
                } else {
                    String::new()
                }
            ),
        }
    }

    /// Load what a stored output names: the dataset snapshot's examples,
    /// the model's bytes (verified against their hash), the registered
    /// model's row.
    pub async fn restore(runner: &Runner, stored: StepOutput) -> Result<Output> {
        let dataset = |id: i64| async move {
            let (hash, rows) = runner
                .store
                .dataset_version(id)
                .await?
                .ok_or_else(|| anyhow!("dataset snapshot {id} is gone"))?;
            Ok::<_, anyhow::Error>(Arc::new(Dataset::new(id, hash, rows)))
        };
        Ok(match stored {
            StepOutput::Dataset(d) => Output::Dataset(dataset(d.dataset_version).await?),
            StepOutput::Ruled { dataset: d, stats } => {
                Output::Ruled(dataset(d.dataset_version).await?, stats)
            }
            StepOutput::Model(out) => {
                let bytes = runner.artifacts.get(&out.artifact)?;
                let dataset = dataset(out.dataset_version).await?;
                Output::Model(Arc::new(Trained {
                    out,
                    bytes,
                    dataset,
                }))
            }
            StepOutput::Evaluation(r) => Output::Evaluation(Arc::new(r)),
            StepOutput::Verdict(v) => Output::Verdict(v),
            StepOutput::Registered(r) => {
                let m = runner
                    .store
                    .find_model(&crate::core::ids::ModelRef::Id(r.model))
                    .await?
                    .ok_or_else(|| anyhow!("model {} is gone", r.model))?;
                Output::Registered(Box::new(m))
            }
            StepOutput::Process(p) => Output::Process(Arc::new(p)),
            StepOutput::Deployed(d) => Output::Deployed(d),
            StepOutput::Curated {
                dataset: d,
                curation,
            } => Output::Curated(dataset(d.dataset_version).await?, curation),
            StepOutput::Analyzed(a) => Output::Analyzed(a),
        })
    }
}
