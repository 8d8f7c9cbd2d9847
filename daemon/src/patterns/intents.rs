//! What the live traffic says of the intents the model knows: which pairs
//! it mixes up, which intents are weak, and which texts carry conflicting
//! labels.

use super::text;
use super::{Corpus, Message, MessageRef, Settings};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

/// Two intents the model mixes up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfusablePair {
    /// The two intents, in alphabetical order.
    pub intents: [String; 2],
    /// Live predictions whose top two intents were these two, closer than
    /// `margin`.
    pub low_margin: usize,
    /// Live messages predicted as one and corrected to the other.
    pub corrections: usize,
    /// The last evaluation's confusions between them, both ways.
    pub evaluation: usize,
    /// `low_margin + 2 × corrections + evaluation`: a correction weighs
    /// double, since a person made it.
    pub score: f64,
    /// Conversations with a live message counted here.
    pub conversations: usize,
    /// Up to `max_examples` live messages, corrected ones first.
    pub messages: Vec<MessageRef>,
}

/// An intent that needs attention, with the numbers behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeakIntent {
    pub intent: String,
    /// Live messages that are this intent as far as anyone knows:
    /// corrected to it, or predicted as it and not corrected.
    pub volume: usize,
    /// Live messages predicted as it.
    pub predicted: usize,
    /// Of those, corrected to another intent.
    pub corrected_away: usize,
    /// Live messages predicted as another intent, corrected to this one.
    pub corrected_to: usize,
    /// `corrected_away / predicted`; `None` when never predicted.
    pub correction_rate: Option<f64>,
    /// Recall in the last evaluation, where it was scored.
    pub recall: Option<f64>,
    /// Its training examples.
    pub training_examples: usize,
    /// Its share of the training examples.
    pub training_share: f64,
    /// Its share of the live messages with an intent.
    pub live_share: f64,
    /// `live_share / training_share`; `None` without training examples.
    pub representation: Option<f64>,
    /// Why it is reported, in words.
    pub reasons: Vec<String>,
    /// Conversations with a message of this intent.
    pub conversations: usize,
    /// Messages to label for it: those corrected to it, then its least
    /// confident predictions; at most `max_examples`.
    pub messages: Vec<MessageRef>,
}

/// One text given more than one intent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelConflict {
    /// The text's words as compared (lowercase, digits as `#`).
    pub text: String,
    /// Each intent it was given, and by whom.
    pub labels: Vec<LabelCount>,
    /// Conversations holding a corrected copy of it.
    pub conversations: usize,
    /// The corrected live messages, at most `max_examples`.
    pub messages: Vec<MessageRef>,
}

/// How often a text was given one intent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelCount {
    pub intent: String,
    /// Training examples with it.
    pub training: usize,
    /// Live corrections to it.
    pub corrections: usize,
}

#[derive(Default)]
struct PairTally<'m, 'a> {
    low_margin: usize,
    corrections: usize,
    evaluation: usize,
    conversations: HashSet<usize>,
    corrected: Vec<&'m Message<'a>>,
    ambiguous: Vec<&'m Message<'a>>,
}

fn pair<'s>(a: &'s str, b: &'s str) -> (&'s str, &'s str) {
    if a <= b { (a, b) } else { (b, a) }
}

/// Pairs from low-margin predictions, corrections and the evaluation's
/// confusions. Pairs with the out-of-scope label are fallbacks, not
/// confusions, and are left to the clusters.
pub(super) fn confusable_pairs(corpus: &Corpus, s: &Settings) -> Vec<ConfusablePair> {
    let mut tally: BTreeMap<(&str, &str), PairTally> = BTreeMap::new();
    let in_scope = |i: &str| i != s.oos_label;
    for m in &corpus.messages {
        if let [a, b, ..] = m.ranking
            && a.confidence - b.confidence < s.margin
            && a.intent != b.intent
            && in_scope(&a.intent)
            && in_scope(&b.intent)
        {
            let t = tally.entry(pair(&a.intent, &b.intent)).or_default();
            t.low_margin += 1;
            t.conversations.insert(m.conv);
            t.ambiguous.push(m);
        }
        if let (Some(p), Some(c)) = (m.intent, m.correction)
            && p != c
            && in_scope(p)
            && in_scope(c)
        {
            let t = tally.entry(pair(p, c)).or_default();
            t.corrections += 1;
            t.conversations.insert(m.conv);
            t.corrected.push(m);
        }
    }
    for c in corpus.evaluation.iter().flat_map(|r| &r.confusions) {
        if c.truth != c.predicted && in_scope(&c.truth) && in_scope(&c.predicted) {
            tally
                .entry(pair(&c.truth, &c.predicted))
                .or_default()
                .evaluation += c.count;
        }
    }
    let mut out: Vec<ConfusablePair> = tally
        .into_iter()
        .map(|((a, b), t)| ConfusablePair {
            intents: [a.to_owned(), b.to_owned()],
            low_margin: t.low_margin,
            corrections: t.corrections,
            evaluation: t.evaluation,
            score: (t.low_margin + 2 * t.corrections + t.evaluation) as f64,
            conversations: t.conversations.len(),
            messages: t
                .corrected
                .iter()
                .chain(&t.ambiguous)
                .take(s.max_examples)
                .map(|m| corpus.reference(m))
                .collect(),
        })
        .filter(|p| p.score >= s.min_pair_score)
        .collect();
    out.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.intents.cmp(&b.intents))
    });
    out
}

#[derive(Default)]
struct IntentTally<'m, 'a> {
    volume: usize,
    predicted: usize,
    corrected_away: usize,
    corrected_to: usize,
    conversations: HashSet<usize>,
    corrected: Vec<&'m Message<'a>>,
    uncertain: Vec<&'m Message<'a>>,
}

/// Intents with low recall, many corrections, or more live traffic than
/// their share of training examples, largest volume first.
pub(super) fn weak_intents(corpus: &Corpus, s: &Settings) -> Vec<WeakIntent> {
    let mut tally: BTreeMap<&str, IntentTally> = BTreeMap::new();
    let mut live_total = 0usize;
    for m in &corpus.messages {
        if let Some(label) = m.label() {
            let t = tally.entry(label).or_default();
            t.volume += 1;
            t.conversations.insert(m.conv);
            live_total += 1;
        }
        if let Some(p) = m.intent {
            let t = tally.entry(p).or_default();
            t.predicted += 1;
            match m.correction {
                Some(c) if c != p => t.corrected_away += 1,
                _ => t.uncertain.push(m),
            }
        }
        if let Some(c) = m.correction
            && m.intent != Some(c)
        {
            let t = tally.entry(c).or_default();
            t.corrected_to += 1;
            t.corrected.push(m);
        }
    }
    let mut training: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &corpus.training {
        *training.entry(e.intent.as_str()).or_default() += 1;
        tally.entry(e.intent.as_str()).or_default();
    }
    let scores: BTreeMap<&str, (f64, usize)> = corpus
        .evaluation
        .iter()
        .flat_map(|r| &r.per_intent)
        .map(|i| (i.intent.as_str(), (i.recall, i.support)))
        .collect();
    let training_total = corpus.training.len();
    let share = |n: usize, total: usize| {
        if total == 0 {
            0.0
        } else {
            n as f64 / total as f64
        }
    };
    let mut out = Vec::new();
    for (intent, mut t) in tally {
        if intent == s.oos_label {
            continue;
        }
        let examples = training.get(intent).copied().unwrap_or(0);
        let (training_share, live_share) =
            (share(examples, training_total), share(t.volume, live_total));
        let correction_rate = (t.predicted > 0).then(|| share(t.corrected_away, t.predicted));
        let representation = (examples > 0).then(|| live_share / training_share);
        let recall = scores.get(intent).map(|&(r, _)| r);
        let mut reasons = Vec::new();
        if let Some(&(r, support)) = scores.get(intent)
            && support >= s.min_support
            && r < s.weak_recall
        {
            reasons.push(format!(
                "recall {r:.2} on {support} evaluation examples, below {:.2}",
                s.weak_recall
            ));
        }
        if let Some(rate) = correction_rate
            && t.predicted >= s.min_support
            && rate > s.weak_correction_rate
        {
            reasons.push(format!(
                "{} of {} predictions ({:.0}%) corrected to another intent",
                t.corrected_away,
                t.predicted,
                rate * 100.0
            ));
        }
        if t.volume >= s.min_support && training_total > 0 {
            match representation {
                Some(r) if r > s.under_represented => reasons.push(format!(
                    "{:.1}% of live messages but {:.1}% of training examples ({r:.1}×)",
                    live_share * 100.0,
                    training_share * 100.0
                )),
                None => reasons.push(format!(
                    "{} live messages but no training examples",
                    t.volume
                )),
                _ => {}
            }
        }
        if reasons.is_empty() {
            continue;
        }
        t.uncertain.sort_by(|a, b| {
            a.confidence
                .unwrap_or(1.0)
                .total_cmp(&b.confidence.unwrap_or(1.0))
        });
        out.push(WeakIntent {
            intent: intent.to_owned(),
            volume: t.volume,
            predicted: t.predicted,
            corrected_away: t.corrected_away,
            corrected_to: t.corrected_to,
            correction_rate,
            recall,
            training_examples: examples,
            training_share,
            live_share,
            representation,
            reasons,
            conversations: t.conversations.len(),
            messages: t
                .corrected
                .iter()
                .chain(&t.uncertain)
                .take(s.max_examples)
                .map(|m| corpus.reference(m))
                .collect(),
        });
    }
    out.sort_by(|a, b| {
        b.volume
            .cmp(&a.volume)
            .then_with(|| a.intent.cmp(&b.intent))
    });
    out
}

#[derive(Default)]
struct Labels<'m, 'a> {
    /// intent → (training examples, corrections)
    counts: BTreeMap<&'a str, (usize, usize)>,
    corrected: Vec<&'m Message<'a>>,
}

/// Texts (compared by their words) that training examples or corrections
/// give different intents, most labels first.
pub(super) fn label_conflicts(corpus: &Corpus, s: &Settings) -> Vec<LabelConflict> {
    let mut by_text: BTreeMap<String, Labels> = BTreeMap::new();
    for e in &corpus.training {
        let l = by_text.entry(text::normalise(&e.text)).or_default();
        l.counts.entry(e.intent.as_str()).or_default().0 += 1;
    }
    for m in corpus.messages.iter().filter(|m| !m.corrections.is_empty()) {
        let l = by_text.entry(text::normalise(m.text)).or_default();
        for &c in &m.corrections {
            l.counts.entry(c).or_default().1 += 1;
        }
        l.corrected.push(m);
    }
    let mut out: Vec<LabelConflict> = by_text
        .into_iter()
        .filter(|(key, l)| l.counts.len() > 1 && !key.is_empty())
        .map(|(key, l)| LabelConflict {
            text: key,
            labels: l
                .counts
                .iter()
                .map(|(i, &(training, corrections))| LabelCount {
                    intent: (*i).to_owned(),
                    training,
                    corrections,
                })
                .collect(),
            conversations: l
                .corrected
                .iter()
                .map(|m| m.conv)
                .collect::<HashSet<_>>()
                .len(),
            messages: l
                .corrected
                .iter()
                .take(s.max_examples)
                .map(|m| corpus.reference(m))
                .collect(),
        })
        .collect();
    let weight = |c: &LabelConflict| {
        c.labels
            .iter()
            .map(|l| l.training + l.corrections)
            .sum::<usize>()
    };
    out.sort_by(|a, b| weight(b).cmp(&weight(a)).then_with(|| a.text.cmp(&b.text)));
    out
}
