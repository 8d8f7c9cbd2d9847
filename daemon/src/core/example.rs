//! A labelled example as Coach keeps it, independent of any plugin
//! interface version: the text, its intent, entity spans, and the split it
//! belongs to. Dataset snapshots are lists of these, named by their content
//! hash.

use sea_orm::entity::prelude::StringLen;
use sea_orm::{DeriveActiveEnum, EnumIter};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// Which part of a dataset an example belongs to.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    Deserialize,
)]
#[sea_orm(
    rs_type = "String",
    db_type = "String(StringLen::None)",
    rename_all = "snake_case"
)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    Train,
    Validation,
    Test,
    /// Not assigned yet: trains unless a `split` step assigns it.
    Unspecified,
}

impl Split {
    pub const ALL: [Split; 4] = [
        Split::Train,
        Split::Validation,
        Split::Test,
        Split::Unspecified,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Validation => "validation",
            Split::Test => "test",
            Split::Unspecified => "unspecified",
        }
    }

    /// Whether a trainer learns from it: train, or not assigned.
    pub fn trains(self) -> bool {
        matches!(self, Split::Train | Split::Unspecified)
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Split {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Split::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                format!("`{s}` is not a split; expected train, validation, test or unspecified")
            })
    }
}

/// Longest intent or entity name Coach keeps, in bytes.
pub const MAX_LABEL: usize = 128;

/// Why a label (an intent or entity name) is refused, if it is.
pub fn label_problem(what: &str, name: &str) -> Option<String> {
    if name.trim().is_empty() {
        return Some(format!("its {what} is empty"));
    }
    if name.chars().any(char::is_control) {
        return Some(format!(
            "its {what} `{}` holds control characters",
            super::text::printable(&super::text::clip(name, 64))
        ));
    }
    if name.chars().any(super::text::is_hidden) {
        return Some(format!(
            "its {what} `{}` holds hidden formatting characters (bidirectional or zero-width)",
            super::text::printable(&super::text::clip(name, 64))
        ));
    }
    (name.len() > MAX_LABEL).then(|| format!("its {what} is longer than {MAX_LABEL} bytes"))
}

/// Why entity span `s` does not fit `text`, if it does not.
pub fn span_problem(text: &str, s: &EntitySpan) -> Option<String> {
    if let Some(why) = label_problem("entity name", &s.entity) {
        return Some(why);
    }
    let (start, end) = (s.start as usize, s.end as usize);
    let name = super::text::printable(&s.entity);
    if end <= start {
        return Some(format!(
            "entity `{name}` ends (byte {end}) before it starts (byte {start})"
        ));
    }
    if end > text.len() {
        return Some(format!(
            "entity `{name}` ends at byte {end}, past the text's {} bytes",
            text.len()
        ));
    }
    if !text.is_char_boundary(start) || !text.is_char_boundary(end) {
        return Some(format!(
            "entity `{name}` starts or ends inside a character (bytes {start}..{end})"
        ));
    }
    None
}

/// A labelled entity: `value` is `text[start..end]` (byte offsets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntitySpan {
    pub entity: String,
    pub start: u32,
    pub end: u32,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    pub text: String,
    pub intent: String,
    pub entities: Vec<EntitySpan>,
    pub split: Split,
}

impl Example {
    /// The spans as the store keeps them: a JSON list of objects with
    /// their keys in order (`end`, `entity`, `start`, `value`). Part of the
    /// dataset's content hash, so it never changes shape.
    pub fn entities_json(&self) -> String {
        let spans: Vec<Value> = self
            .entities
            .iter()
            .map(|s| json!({"entity": s.entity, "start": s.start, "end": s.end, "value": s.value}))
            .collect();
        super::hash::canonical_json(&Value::Array(spans))
    }

    /// Read spans back from [`Example::entities_json`]. Spans that do not
    /// have the four fields are dropped (the store never writes such).
    pub fn parse_entities(text: &str) -> Vec<EntitySpan> {
        serde_json::from_str::<Vec<Value>>(text)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect()
    }
}

/// The content hash of a dataset snapshot: SHA-256 over each example's
/// text, intent, spans and split, each prefixed with its length.
pub fn dataset_hash(examples: &[Example]) -> String {
    let mut h = Sha256::new();
    for e in examples {
        for part in [
            e.text.as_str(),
            e.intent.as_str(),
            &e.entities_json(),
            e.split.as_str(),
        ] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
    }
    hex::encode(h.finalize())
}

/// What scripts and summaries see of a dataset.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasetStats {
    pub examples: usize,
    pub intents: usize,
    pub per_intent: BTreeMap<String, u64>,
    pub splits: SplitCounts,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SplitCounts {
    pub train: u64,
    pub validation: u64,
    pub test: u64,
    pub unspecified: u64,
}

impl SplitCounts {
    pub fn of(examples: &[Example]) -> SplitCounts {
        let mut c = SplitCounts::default();
        for e in examples {
            match e.split {
                Split::Train => c.train += 1,
                Split::Validation => c.validation += 1,
                Split::Test => c.test += 1,
                Split::Unspecified => c.unspecified += 1,
            }
        }
        c
    }
}

impl DatasetStats {
    pub fn of(examples: &[Example]) -> DatasetStats {
        let mut per_intent: BTreeMap<String, u64> = BTreeMap::new();
        for e in examples {
            *per_intent.entry(e.intent.clone()).or_default() += 1;
        }
        DatasetStats {
            examples: examples.len(),
            intents: per_intent.len(),
            per_intent,
            splits: SplitCounts::of(examples),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(split: Split) -> Example {
        Example {
            text: "book a table in Leeds".into(),
            intent: "book".into(),
            entities: vec![EntitySpan {
                entity: "city".into(),
                start: 16,
                end: 21,
                value: "Leeds".into(),
            }],
            split,
        }
    }

    /// The hash names every stored snapshot: it must not change when the
    /// code around it does. The figure was computed by the code that wrote
    /// the first snapshots.
    #[test]
    fn the_content_hash_is_stable() {
        let e = example(Split::Train);
        assert_eq!(
            e.entities_json(),
            r#"[{"end":21,"entity":"city","start":16,"value":"Leeds"}]"#
        );
        assert_eq!(
            dataset_hash(&[e, example(Split::Unspecified)]),
            "80a00d18bc1b24c6d54444a38ea428d9232d0bd534a4866a5a8359a4cd432e13"
        );
    }

    #[test]
    fn spans_read_back() {
        let e = example(Split::Test);
        assert_eq!(Example::parse_entities(&e.entities_json()), e.entities);
        assert!(Example::parse_entities("not json").is_empty());
    }

    #[test]
    fn stats_count_intents_and_splits() {
        let s = DatasetStats::of(&[example(Split::Train), example(Split::Test)]);
        assert_eq!((s.examples, s.intents), (2, 1));
        assert_eq!((s.splits.train, s.splits.test), (1, 1));
    }
}
