//! The built-in `curate` step's decisions: a dataset snapshot in, the
//! examples worth training on and a [`Report`] of every decision out.
//!
//! In order: personal data is replaced ([`pii`]) and entity spans moved to
//! match; exact duplicates are dropped and conflicts found, on the
//! normalised redacted text (so two texts that differ only in a phone
//! number are duplicates, as the trainer would see them); near duplicates
//! within an intent are dropped ([`minhash`]); intents left with too few
//! examples are reported. The first example of a group is always the one
//! kept.
//!
//! Pure and deterministic: no I/O, no clock, fixed hash seeds. Reading the
//! snapshot and storing the result are the step's business.

pub mod minhash;
pub mod pii;
mod report;

pub use report::*;

use crate::core::example::{EntitySpan, Example};
use pii::{PiiKind, Redaction};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The step's settings, as written in a workflow file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Drop an example whose word 3-shingles overlap those of an earlier
    /// kept example of the same intent by at least this Jaccard similarity.
    /// Between 0.6 and 1, or 0 to keep near duplicates. Default 0.9.
    pub near_duplicates: f64,
    /// Length of the MinHash signatures that find near-duplicate
    /// candidates: longer finds more of the pairs just above the threshold
    /// and takes proportionally longer. 16 to 1024. Default 128.
    pub num_perm: usize,
    /// Report intents left with fewer examples than this (they are not
    /// dropped). 0 reports none. Default 5.
    pub min_examples: usize,
    /// Replace personal data in texts by `<email>`, `<phone>`, `<card>`.
    /// Default true.
    pub redact: bool,
    /// Which personal data to replace: any of `email`, `phone`, `card`.
    /// Default all three.
    pub pii: Vec<PiiKind>,
    /// Drop every example of a text labelled with more than one intent.
    /// Default false: conflicts are reported, for a person to settle.
    pub drop_conflicts: bool,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            near_duplicates: 0.9,
            num_perm: 128,
            min_examples: 5,
            redact: true,
            pii: PiiKind::ALL.to_vec(),
            drop_conflicts: false,
        }
    }
}

impl Settings {
    /// Every problem with these settings, or none.
    pub fn check(&self) -> Result<(), SettingsError> {
        let mut problems = Vec::new();
        let t = self.near_duplicates;
        if t != 0.0 && !(0.6..=1.0).contains(&t) {
            // Below 0.6 the banding must let through so many unrelated
            // pairs that a large intent would be compared pair by pair.
            problems.push(format!(
                "`near_duplicates` is {t}; it must be between 0.6 and 1, or 0 to keep near duplicates"
            ));
        }
        if !(16..=1024).contains(&self.num_perm) {
            problems.push(format!(
                "`num_perm` is {}; it must be between 16 and 1024",
                self.num_perm
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(SettingsError { problems })
        }
    }
}

/// Settings that cannot be used, with every reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsError {
    pub problems: Vec<String>,
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "curate settings: {}", self.problems.join("; "))
    }
}

impl std::error::Error for SettingsError {}

/// What curation keeps, in input order, and why the rest went.
#[derive(Debug, Clone, PartialEq)]
pub struct Curated {
    pub examples: Vec<Example>,
    pub report: Report,
}

/// Curate `examples` under `settings`.
pub fn curate(examples: &[Example], settings: &Settings) -> Result<Curated, SettingsError> {
    settings.check()?;
    let mut report = Report::default();
    let mut fate: Vec<Option<DropReason>> = vec![None; examples.len()];

    // Redact; `cleaned[i]` is `None` where nothing was found.
    let kinds: &[PiiKind] = if settings.redact { &settings.pii } else { &[] };
    let cleaned: Vec<Option<Example>> = examples
        .iter()
        .enumerate()
        .map(|(index, e)| redact_example(index, e, kinds, &mut report))
        .collect();
    let example = |i: usize| cleaned[i].as_ref().unwrap_or(&examples[i]);

    // Exact duplicates and conflicts: group equal normalised texts, the
    // stable sort keeping each group in input order.
    let norms: Vec<String> = (0..examples.len())
        .map(|i| normalise(&example(i).text))
        .collect();
    let mut order: Vec<usize> = (0..examples.len()).collect();
    order.sort_by(|&a, &b| norms[a].cmp(&norms[b]));
    for group in order.chunk_by(|&a, &b| norms[a] == norms[b]) {
        let mut labels: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for &i in group {
            let same = labels.entry(example(i).intent.clone()).or_default();
            if let Some(&first) = same.first() {
                fate[i] = Some(DropReason::ExactDuplicate { of: first });
            }
            same.push(i);
        }
        if labels.len() > 1 {
            if settings.drop_conflicts {
                for &i in group {
                    fate[i].get_or_insert(DropReason::Conflict);
                }
            }
            report.conflicts.push(Conflict {
                text: norms[group[0]].clone(),
                labels,
            });
        }
    }
    drop(norms); // before the near-duplicate pass's own tables
    report
        .conflicts
        .sort_by_key(|c| c.labels.values().map(|v| v[0]).min());

    if settings.near_duplicates > 0.0 {
        near_duplicates(&example, &mut fate, settings);
    }

    let c = &mut report.counts;
    let mut per_intent: BTreeMap<&str, usize> = BTreeMap::new();
    for (index, reason) in fate.into_iter().enumerate() {
        match &reason {
            None => *per_intent.entry(&examples[index].intent).or_default() += 1,
            Some(DropReason::ExactDuplicate { .. }) => c.exact_duplicates += 1,
            Some(DropReason::NearDuplicate { .. }) => c.near_duplicates += 1,
            Some(DropReason::Conflict) => c.conflicting += 1,
        }
        if let Some(reason) = reason {
            report.dropped.push(Dropped { index, reason });
        }
    }
    (c.examples, c.conflicts) = (examples.len(), report.conflicts.len());
    c.kept = c.examples - report.dropped.len();
    c.redacted_examples = cleaned.iter().flatten().count();
    (c.redactions, c.spans_dropped) = (report.redactions.len(), report.spans_dropped.len());
    report.small_intents = per_intent
        .into_iter()
        .filter(|&(_, count)| count < settings.min_examples)
        .map(|(intent, count)| SmallIntent {
            intent: intent.into(),
            count,
        })
        .collect();
    report.counts.small_intents = report.small_intents.len();

    let mut dropped = report.dropped.iter().map(|d| d.index).peekable();
    let mut cleaned = cleaned;
    let examples = (0..examples.len())
        .filter(|&i| dropped.next_if_eq(&i).is_none())
        .map(|i| cleaned[i].take().unwrap_or_else(|| examples[i].clone()))
        .collect();
    Ok(Curated { examples, report })
}

/// Lower case, runs of white space made one space, trimmed: texts equal
/// under this are the same utterance.
pub fn normalise(text: &str) -> String {
    text.to_lowercase()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Drop each example too like an earlier kept one of the same intent,
/// naming the most similar (the earliest among equals).
fn near_duplicates<'a>(
    example: &impl Fn(usize) -> &'a Example,
    fate: &mut [Option<DropReason>],
    settings: &Settings,
) {
    let mut index = minhash::Index::new(settings.num_perm, settings.near_duplicates);
    // The kept examples' shingles, end to end; id `k` is example
    // `owner[k]`, its shingles `sets[bounds[k]..bounds[k + 1]]`.
    let (mut sets, mut bounds, mut owner) = (Vec::new(), vec![0], Vec::new());
    for (i, fate) in fate.iter_mut().enumerate() {
        if fate.is_some() {
            continue;
        }
        let e = example(i);
        let shingles = minhash::shingles(&e.text);
        if shingles.is_empty() {
            continue;
        }
        let keys = index.keys(&e.intent, &shingles);
        let mut best: Option<(usize, f64)> = None;
        for k in index.candidates(&keys) {
            let k = k as usize;
            let similarity = minhash::jaccard(&shingles, &sets[bounds[k]..bounds[k + 1]]);
            let better = best.is_none_or(|(_, s)| similarity > s);
            if similarity >= settings.near_duplicates
                && better
                && example(owner[k]).intent == e.intent
            {
                best = Some((owner[k], similarity));
            }
        }
        match best {
            Some((of, similarity)) => *fate = Some(DropReason::NearDuplicate { of, similarity }),
            None => {
                index.insert(&keys);
                owner.push(i);
                sets.extend_from_slice(&shingles);
                bounds.push(sets.len());
            }
        }
    }
}

/// `e` with personal data replaced and its spans moved to match, or `None`
/// when there is none; what was done goes into `report`.
fn redact_example(
    index: usize,
    e: &Example,
    kinds: &[PiiKind],
    report: &mut Report,
) -> Option<Example> {
    if kinds.is_empty() {
        return None;
    }
    let (text, found) = pii::redact_kinds(&e.text, kinds);
    if found.is_empty() {
        return None;
    }
    report
        .redactions
        .extend(found.iter().map(|r| RedactionLine {
            index,
            kind: r.kind,
            start: r.start,
            end: r.end,
        }));
    let mut entities = Vec::with_capacity(e.entities.len());
    for span in &e.entities {
        match shift(span, &found) {
            Some(moved) => entities.push(moved),
            None => report.spans_dropped.push(SpanDropped {
                index,
                entity: span.entity.clone(),
                start: span.start,
                end: span.end,
            }),
        }
    }
    Some(Example {
        text,
        entities,
        ..e.clone()
    })
}

/// `span` moved past the replacements before it, or `None` if it overlaps
/// one (its value is no longer in the text).
fn shift(span: &EntitySpan, found: &[Redaction]) -> Option<EntitySpan> {
    let (start, end) = (span.start as i64, span.end as i64);
    let mut by = 0i64;
    for r in found {
        let (r_start, r_end) = (r.start as i64, r.end as i64);
        if r_start < end && start < r_end {
            return None;
        }
        if r_end <= start {
            by += r.kind.placeholder().len() as i64 - (r_end - r_start);
        }
    }
    Some(EntitySpan {
        start: u32::try_from(start + by).ok()?,
        end: u32::try_from(end + by).ok()?,
        ..span.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::example::Split;

    fn ex(text: &str, intent: &str) -> Example {
        let (text, intent) = (text.into(), intent.into());
        Example {
            text,
            intent,
            entities: vec![],
            split: Split::Train,
        }
    }

    fn run(examples: &[Example], change: impl FnOnce(&mut Settings)) -> Curated {
        let mut settings = Settings::default();
        change(&mut settings);
        curate(examples, &settings).expect("valid settings")
    }

    fn texts(c: &Curated) -> Vec<&str> {
        c.examples.iter().map(|e| e.text.as_str()).collect()
    }

    fn reasons(c: &Curated) -> Vec<(usize, &DropReason)> {
        c.report
            .dropped
            .iter()
            .map(|d| (d.index, &d.reason))
            .collect()
    }

    #[test]
    fn exact_duplicates_keep_the_first() {
        let data = [
            ex("Book a table", "book"),
            ex("book  a TABLE ", "book"),
            ex("cancel it", "cancel"),
            ex("book a table", "book"),
        ];
        let c = run(&data, |_| {});
        assert_eq!(texts(&c), ["Book a table", "cancel it"]);
        let dup = DropReason::ExactDuplicate { of: 0 };
        assert_eq!(reasons(&c), [(1, &dup), (3, &dup)]);
        assert_eq!(
            (c.report.counts.exact_duplicates, c.report.counts.kept),
            (2, 2)
        );
    }

    #[test]
    fn conflicts_are_reported_and_dropped_on_request() {
        let data = [
            ex("what about tomorrow", "weather"),
            ex("hello", "greet"),
            ex("What about tomorrow", "book"),
            ex("what about tomorrow", "weather"),
        ];
        let c = run(&data, |_| {});
        assert_eq!(c.examples.len(), 3);
        let labels = BTreeMap::from([("book".into(), vec![2]), ("weather".into(), vec![0, 3])]);
        let text = "what about tomorrow".into();
        assert_eq!(c.report.conflicts, [Conflict { text, labels }]);

        let c = run(&data, |s| s.drop_conflicts = true);
        assert_eq!(texts(&c), ["hello"]);
        let (conflict, dup) = (DropReason::Conflict, DropReason::ExactDuplicate { of: 0 });
        assert_eq!(reasons(&c), [(0, &conflict), (2, &conflict), (3, &dup)]);
    }

    #[test]
    fn near_duplicates_within_an_intent_are_dropped() {
        let a = "book me a table for four people at eight tonight in town";
        let b = "book me a table for four people at eight tonight in Leeds";
        let data = [
            ex(a, "book"),
            ex(
                "what will the weather be like in Paris this weekend",
                "weather",
            ),
            ex(b, "book"),
            ex(b, "other"),
            ex(
                "how much is a return ticket to York on Friday morning",
                "book",
            ),
        ];
        let c = run(&data, |s| s.near_duplicates = 0.8);
        // One of 12 words changed at the end: 9 of 11 shingles shared. (In
        // the middle it would change three: 7 of 13, not near at 0.8.)
        let near = DropReason::NearDuplicate {
            of: 0,
            similarity: 9.0 / 11.0,
        };
        assert_eq!(reasons(&c), [(2, &near)]);
        assert!(
            run(&data, |s| s.near_duplicates = 0.0)
                .report
                .dropped
                .is_empty()
        );
    }

    #[test]
    fn redaction_moves_and_drops_spans() {
        let span = |entity: &str, start, end, value: &str| {
            let (entity, value) = (entity.into(), value.into());
            EntitySpan {
                entity,
                start,
                end,
                value,
            }
        };
        let text = "mail jo@x.io or 4111-1111-1111-1111 from Leeds";
        let mut e = ex(text, "contact");
        e.entities = vec![
            span("address", 5, 12, "jo@x.io"),
            span("city", 41, 46, "Leeds"),
        ];
        let c = run(&[e.clone()], |_| {});
        let out = &c.examples[0];
        assert_eq!(out.text, "mail <email> or <card> from Leeds");
        assert_eq!(out.entities, [span("city", 28, 33, "Leeds")]);
        assert_eq!(&out.text[28..33], "Leeds");
        let found: Vec<_> = c
            .report
            .redactions
            .iter()
            .map(|r| (r.kind, r.start, r.end))
            .collect();
        assert_eq!(found, [(PiiKind::Email, 5, 12), (PiiKind::Card, 16, 35)]);
        let gone = SpanDropped {
            index: 0,
            entity: "address".into(),
            start: 5,
            end: 12,
        };
        assert_eq!(c.report.spans_dropped, [gone]);
        assert!(
            !serde_json::to_string(&c.report)
                .unwrap()
                .contains("jo@x.io")
        );
        assert_eq!(run(&[e], |s| s.redact = false).examples[0].text, text);
    }

    #[test]
    fn texts_differing_only_in_personal_data_are_duplicates() {
        let data = [ex("write to a@b.io", "mail"), ex("write to c@d.io", "mail")];
        assert_eq!(texts(&run(&data, |_| {})), ["write to <email>"]);
    }

    #[test]
    fn small_intents_are_reported_not_dropped() {
        let mut data: Vec<Example> = (0..5).map(|i| ex(&format!("hi {i}"), "greet")).collect();
        data.push(ex("bye", "leave"));
        let c = run(&data, |_| {});
        assert_eq!(c.examples.len(), 6);
        let small = SmallIntent {
            intent: "leave".into(),
            count: 1,
        };
        assert_eq!(c.report.small_intents, [small]);
    }

    #[test]
    fn settings_have_defaults_and_name_every_problem() {
        let s: Settings = serde_json::from_str("{}").unwrap();
        assert_eq!(s, Settings::default());
        let s: Settings = serde_json::from_str(r#"{"pii": ["card"]}"#).unwrap();
        assert_eq!(s.pii, [PiiKind::Card]);
        assert!(serde_json::from_str::<Settings>(r#"{"treshold": 0.8}"#).is_err());
        let bad = Settings {
            near_duplicates: 0.3,
            num_perm: 4,
            ..Settings::default()
        };
        let err = curate(&[], &bad).unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err}");
    }

    /// Twelve-word texts over 50 intents; one in ten a copy of an earlier
    /// example, one in ten a copy with a word added. The same every time.
    fn synthetic(n: usize) -> Vec<Example> {
        let words: Vec<&str> = "book table flight weather today tomorrow cancel order please \
            my the a in for to Leeds Paris two four morning evening price refund account"
            .split_whitespace()
            .collect();
        let mut state = 1u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as usize
        };
        let mut out: Vec<Example> = Vec::with_capacity(n);
        for i in 0..n {
            let e = match i % 10 {
                3 if i > 10 => out[next() % i].clone(),
                7 if i > 10 => {
                    let mut e = out[next() % i].clone();
                    e.text.push_str(" now");
                    e
                }
                _ => {
                    let text: Vec<&str> = (0..12).map(|_| words[next() % words.len()]).collect();
                    ex(&text.join(" "), &format!("intent{}", next() % 50))
                }
            };
            out.push(e);
        }
        out
    }

    #[test]
    fn output_is_deterministic() {
        let data = synthetic(2_000);
        let (a, b) = (run(&data, |_| {}), run(&data, |_| {}));
        assert_eq!(a, b);
        assert!(a.report.counts.exact_duplicates >= 150);
        assert!(a.report.counts.near_duplicates >= 150);
    }

    /// A speed check, not a test (timings belong in benchmarks):
    /// `cargo test --release -- --ignored --nocapture curate_scales`.
    #[test]
    #[ignore]
    fn curate_scales() {
        let data = synthetic(200_000);
        let started = std::time::Instant::now();
        let c = run(&data, |_| {});
        let took = started.elapsed();
        eprintln!(
            "curated {} examples in {took:?}: {:?}",
            data.len(),
            c.report.counts
        );
        assert!(c.report.counts.exact_duplicates >= 19_000);
    }
}
