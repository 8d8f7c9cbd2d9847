//! Recommendations: one action per pattern worth acting on, ranked by
//! estimated impact — the conversations it touches times how sure the
//! pattern is — each with the messages a reviewer would label.

use super::text::stable_id;
use super::{MessageRef, Patterns, Settings};
use crate::core::text::clip;
use serde::{Deserialize, Serialize};

/// What a recommendation asks an operator to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Label a fallback cluster's messages as a new intent.
    NewIntent,
    /// Label more messages as an existing intent.
    AddExamples,
    /// Merge two intents the model mixes up, or split them more clearly.
    MergeOrSplit,
    /// Rewrite a bot response users fail after.
    FixResponse,
    /// Settle a text given different intents.
    ReviewConflicts,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::NewIntent => "new_intent",
            Action::AddExamples => "add_examples",
            Action::MergeOrSplit => "merge_or_split",
            Action::FixResponse => "fix_response",
            Action::ReviewConflicts => "review_conflicts",
        }
    }
}

/// The pattern a recommendation comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// `fallback_cluster`, `weak_intent`, `confusable_pair`,
    /// `failure_point` or `label_conflict`.
    pub pattern: String,
    /// Which one: the cluster's id, the intent, the pair as `a|b`, the
    /// bot text's key, or the conflicting text.
    pub key: String,
    /// The numbers behind it, in words; the pattern itself (found by
    /// `key`) holds them all.
    pub summary: String,
}

/// A message to turn into a review item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewItem {
    /// The conversation's id.
    pub conversation: String,
    /// The turn's index in it, from 0.
    pub turn: usize,
    /// What the user wrote.
    pub text: String,
    /// The intent the recommendation suggests for it, if it has one.
    pub suggested_intent: Option<String>,
}

/// One thing to do, with why and how much it matters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    /// `rec-` and a hash of the action and the evidence's key: the same
    /// each time the same thing is found.
    pub id: String,
    pub action: Action,
    /// What to do, in a sentence.
    pub title: String,
    /// The intents it is about (for a new intent, the suggested name).
    pub intents: Vec<String>,
    pub evidence: Evidence,
    /// Conversations it touches (a conflict only in training data counts
    /// as one).
    pub impact: usize,
    /// How sure the pattern is, 0 to 1: for clusters their cohesion times
    /// their distance from (or, for examples, closeness to) the nearest
    /// intent; for failure points their failure rate; 0.8 for pairs and
    /// weak intents people corrected, 0.5 and 0.6 otherwise; 1 for
    /// conflicting labels.
    pub confidence: f64,
    /// `impact × confidence`: the rank.
    pub score: f64,
    /// Messages to review: the pattern's messages (at most `max_refs` for a
    /// cluster, `max_examples` for the others).
    pub items: Vec<ReviewItem>,
}

struct Draft {
    action: Action,
    title: String,
    intents: Vec<String>,
    pattern: &'static str,
    key: String,
    summary: String,
    impact: usize,
    confidence: f64,
    messages: Vec<MessageRef>,
    suggested: Option<String>,
}

/// Recommendations from `patterns`, best first, at most
/// `max_recommendations`.
pub fn recommend(patterns: &Patterns, s: &Settings) -> Vec<Recommendation> {
    let mut drafts: Vec<Draft> = Vec::new();
    for c in &patterns.fallback_clusters {
        let sim = c.nearest_intent.as_ref().map_or(0.0, |n| n.similarity);
        let example = clip(c.representatives.first().map_or("", String::as_str), 60);
        let (action, intent, title, confidence) = match &c.nearest_intent {
            Some(n) if !c.new_intent => (
                Action::AddExamples,
                n.intent.clone(),
                format!(
                    "Add {} fallback messages like “{example}” to `{}`",
                    c.size, n.intent
                ),
                c.cohesion * sim,
            ),
            _ => (
                Action::NewIntent,
                c.suggested_intent.clone(),
                format!(
                    "Label {} messages like “{example}” as a new intent `{}`",
                    c.size, c.suggested_intent
                ),
                c.cohesion * (1.0 - sim),
            ),
        };
        drafts.push(Draft {
            action,
            title,
            intents: vec![intent.clone()],
            pattern: "fallback_cluster",
            key: c.id.clone(),
            summary: format!(
                "{} unplaced messages in {} conversations; top terms {}; nearest intent {}",
                c.size,
                c.conversations,
                c.top_terms.join(", "),
                c.nearest_intent.as_ref().map_or("none".into(), |n| format!(
                    "`{}` ({:.2})",
                    n.intent, n.similarity
                ))
            ),
            impact: c.conversations,
            confidence,
            messages: c.messages.clone(),
            suggested: Some(intent),
        });
    }
    for w in &patterns.weak_intents {
        drafts.push(Draft {
            action: Action::AddExamples,
            title: format!("Add examples to `{}`: {}", w.intent, w.reasons.join("; ")),
            intents: vec![w.intent.clone()],
            pattern: "weak_intent",
            key: w.intent.clone(),
            summary: w.reasons.join("; "),
            impact: w.conversations,
            confidence: if w.corrected_to + w.corrected_away > 0 {
                0.8
            } else {
                0.6
            },
            messages: w.messages.clone(),
            suggested: Some(w.intent.clone()),
        });
    }
    for p in &patterns.confusable_pairs {
        let [a, b] = &p.intents;
        drafts.push(Draft {
            action: Action::MergeOrSplit,
            title: format!("Merge or separate `{a}` and `{b}`: the model mixes them up"),
            intents: p.intents.to_vec(),
            pattern: "confusable_pair",
            key: format!("{a}|{b}"),
            summary: format!(
                "{} ambiguous predictions, {} corrections between them, {} confusions in evaluation",
                p.low_margin, p.corrections, p.evaluation
            ),
            impact: p.conversations,
            confidence: if p.corrections + p.evaluation > 0 { 0.8 } else { 0.5 },
            messages: p.messages.clone(),
            suggested: None,
        });
    }
    for f in &patterns.failure_points {
        drafts.push(Draft {
            action: Action::FixResponse,
            title: format!(
                "Fix the response “{}”: users fail after it {:.0}% of {} times",
                clip(&f.text, 60),
                f.failure_rate * 100.0,
                f.occurrences
            ),
            intents: Vec::new(),
            pattern: "failure_point",
            key: f.key.clone(),
            summary: format!(
                "said {} times; then users rephrased {}, asked for a person {}, left {}",
                f.occurrences, f.rephrased, f.escalated, f.left
            ),
            impact: f.conversations,
            confidence: f.failure_rate,
            messages: f.messages.clone(),
            suggested: None,
        });
    }
    for c in &patterns.label_conflicts {
        let labels: Vec<String> = c
            .labels
            .iter()
            .map(|l| {
                format!(
                    "`{}` ({} in training, {} corrections)",
                    l.intent, l.training, l.corrections
                )
            })
            .collect();
        drafts.push(Draft {
            action: Action::ReviewConflicts,
            title: format!("Settle the intent of “{}”", clip(&c.text, 60)),
            intents: c.labels.iter().map(|l| l.intent.clone()).collect(),
            pattern: "label_conflict",
            key: c.text.clone(),
            summary: format!("given {}", labels.join(", ")),
            impact: c.conversations.max(1),
            confidence: 1.0,
            messages: c.messages.clone(),
            suggested: None,
        });
    }
    let mut out: Vec<Recommendation> = drafts.into_iter().map(finish).collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id)));
    out.truncate(s.max_recommendations);
    out
}

fn finish(d: Draft) -> Recommendation {
    let confidence = d.confidence.clamp(0.0, 1.0);
    Recommendation {
        id: stable_id("rec", &format!("{}\n{}", d.action.as_str(), d.key)),
        action: d.action,
        title: d.title,
        intents: d.intents,
        evidence: Evidence {
            pattern: d.pattern.into(),
            key: d.key,
            summary: d.summary,
        },
        impact: d.impact,
        confidence,
        score: d.impact as f64 * confidence,
        items: d
            .messages
            .into_iter()
            .map(|m| ReviewItem {
                conversation: m.conversation,
                turn: m.turn,
                text: m.text,
                suggested_intent: d.suggested.clone(),
            })
            .collect(),
    }
}
