//! What a curation decided, one line per decision, each naming the
//! example by its index in the input snapshot so it can be reviewed and
//! undone.
//!
//! The report holds no personal data, so it can be shown and logged
//! freely: redactions and dropped spans are byte ranges into the original
//! text, never the values; conflict texts are taken after redaction.
//! Nothing else is needed to undo a decision: the input snapshot is kept
//! by its content hash, and `input[index]` is the example as it was.
//! Whether that snapshot may keep personal data is the store's retention
//! policy, not this report's.

use super::pii::PiiKind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub counts: Counts,
    /// Dropped examples, by index.
    pub dropped: Vec<Dropped>,
    /// Replaced personal data, by index and then position.
    pub redactions: Vec<RedactionLine>,
    /// Entity spans dropped because they overlapped replaced data.
    pub spans_dropped: Vec<SpanDropped>,
    /// Texts labelled with more than one intent, by first index.
    pub conflicts: Vec<Conflict>,
    /// Intents with fewer kept examples than `min_examples`, by name.
    /// Reported only: they still train.
    pub small_intents: Vec<SmallIntent>,
}

/// The counts, kept with the step's output too.
pub use crate::core::output::CurateCounts as Counts;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dropped {
    pub index: usize,
    #[serde(flatten)]
    pub reason: DropReason,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum DropReason {
    /// Same normalised text and intent as example `of`, the first such.
    /// That one is kept unless it is itself a near duplicate or conflicts.
    ExactDuplicate { of: usize },
    /// Same intent as example `of`, which is kept, and word 3-shingles
    /// that overlap it by `similarity` (Jaccard).
    NearDuplicate { of: usize, similarity: f64 },
    /// Its text carries another intent elsewhere; see `conflicts`.
    Conflict,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedactionLine {
    pub index: usize,
    pub kind: PiiKind,
    /// Byte range in the original text.
    pub start: usize,
    pub end: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpanDropped {
    pub index: usize,
    pub entity: String,
    /// Byte range in the original text.
    pub start: u32,
    pub end: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    /// The normalised text (lower case, single spaces), after redaction.
    pub text: String,
    /// Each intent it carries → the indexes of the examples carrying it.
    pub labels: BTreeMap<String, Vec<usize>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmallIntent {
    pub intent: String,
    pub count: usize,
}
