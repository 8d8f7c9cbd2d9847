//! Patterns found across logged conversations, and the ranked
//! recommendations made from them: fallback clusters (candidate new
//! intents), confusable intent pairs, weak intents, conflicting labels,
//! drift of live traffic from the training data, and the bot turns after
//! which users rephrase, escalate or leave.
//!
//! A pure decision layer: conversations, training examples and the last
//! evaluation come in, [`Patterns`] and [`Recommendation`]s go out. No I/O,
//! no clock (`now` is given), no randomness; the same input gives the same
//! output, ids included, so a stored recommendation can be recognised the
//! next time it is found.

mod cluster;
mod drift;
mod failures;
mod intents;
mod recommend;
mod text;

pub use cluster::{Direction, FallbackCluster, NearestIntent, Trend};
pub use drift::{Drift, DriftLevel, IntentShift, chi_squared_sf, psi};
pub use failures::FailurePoint;
pub use intents::{ConfusablePair, LabelConflict, LabelCount, WeakIntent};
pub use recommend::{Action, Evidence, Recommendation, ReviewItem, recommend};

use crate::core::conversation::{Conversation, Ranked, Role};
use crate::core::evaluation::Report;
use crate::core::example::Example;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What the patterns are found in.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// Live conversations, with the model's predictions on user turns.
    pub conversations: &'a [Conversation],
    /// The examples of the model in production; those of the train and
    /// unassigned splits are the training data. May be empty.
    pub examples: &'a [Example],
    /// The production model's last evaluation, if there is one.
    pub evaluation: Option<&'a Report>,
    /// The time trends are measured back from.
    pub now: DateTime<Utc>,
}

/// How patterns are found and recommendations ranked. Every field has a
/// default, so `{}` is a valid setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The out-of-scope intent: a prediction of it is a fallback.
    /// Default `oos`.
    pub oos_label: String,
    /// A prediction less confident than this is a fallback. Default 0.4.
    pub min_confidence: f64,
    /// A prediction whose top two intents are closer than this is
    /// ambiguous between them. Default 0.1.
    pub margin: f64,
    /// Cosine similarity (TF-IDF of words and word pairs) a message needs
    /// to its cluster. Default 0.4.
    pub cluster_similarity: f64,
    /// Smallest fallback cluster reported, in messages. Default 3.
    pub min_cluster: usize,
    /// A cluster less similar than this to every intent's examples is a
    /// candidate new intent; a closer one holds phrasings its nearest
    /// intent misses. Default 0.35.
    pub new_intent_similarity: f64,
    /// Days back from `now` that a cluster's trend looks at, compared
    /// half against half. Default 14.
    pub trend_days: u32,
    /// Fewest occurrences a failure point, an intent's live volume or an
    /// evaluation's support needs before it is judged. Default 5.
    pub min_support: usize,
    /// Smallest score of a confusable pair reported. Default 3.
    pub min_pair_score: f64,
    /// Evaluation recall below which an intent is weak. Default 0.7.
    pub weak_recall: f64,
    /// Share of an intent's predictions corrected away above which it is
    /// weak. Default 0.2.
    pub weak_correction_rate: f64,
    /// Live share over training share above which an intent is
    /// under-represented in training. Default 2.
    pub under_represented: f64,
    /// Word-set (Jaccard) similarity of two user turns that makes the
    /// second a rephrase of the first. Default 0.5.
    pub rephrase_similarity: f64,
    /// PSI above which the intent distribution has moved moderately
    /// (conventionally 0.1). Default 0.1.
    pub psi_moderate: f64,
    /// PSI above which the intent distribution has drifted (conventionally
    /// 0.2). Default 0.2.
    pub psi_major: f64,
    /// Share of live words unknown to the training data above which the
    /// vocabulary has drifted. Default 0.3.
    pub max_oov_rate: f64,
    /// Most message references a cluster keeps. Default 1000.
    pub max_refs: usize,
    /// Most example messages other patterns keep. Default 20.
    pub max_examples: usize,
    /// Most entries of each pattern kind reported. Default 100.
    pub max_patterns: usize,
    /// Most recommendations made. Default 50.
    pub max_recommendations: usize,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            oos_label: "oos".into(),
            min_confidence: 0.4,
            margin: 0.1,
            cluster_similarity: 0.4,
            min_cluster: 3,
            new_intent_similarity: 0.35,
            trend_days: 14,
            min_support: 5,
            min_pair_score: 3.0,
            weak_recall: 0.7,
            weak_correction_rate: 0.2,
            under_represented: 2.0,
            rephrase_similarity: 0.5,
            psi_moderate: 0.1,
            psi_major: 0.2,
            max_oov_rate: 0.3,
            max_refs: 1000,
            max_examples: 20,
            max_patterns: 100,
            max_recommendations: 50,
        }
    }
}

/// One user message of a logged conversation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MessageRef {
    /// The conversation's id.
    pub conversation: String,
    /// The turn's index in the conversation, from 0.
    pub turn: usize,
    /// What the user wrote.
    pub text: String,
}

/// Everything found, as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Patterns {
    /// When they were found (the `now` given).
    pub at: DateTime<Utc>,
    /// Conversations read.
    pub conversations: usize,
    /// User messages read.
    pub user_messages: usize,
    /// User messages the model could not place: fallbacks, out-of-scope
    /// or missing predictions, and predictions below `min_confidence`.
    pub unplaced: usize,
    /// Unplaced messages grouped by what they say, largest first.
    pub fallback_clusters: Vec<FallbackCluster>,
    /// Intents the model mixes up, most evidence first.
    pub confusable_pairs: Vec<ConfusablePair>,
    /// Intents that need attention, each with its reasons.
    pub weak_intents: Vec<WeakIntent>,
    /// Texts given different intents by training data or corrections.
    pub label_conflicts: Vec<LabelConflict>,
    /// Live traffic against the training data; `None` without either.
    pub drift: Option<Drift>,
    /// Bot turns after which users rephrase, escalate or leave, worst
    /// first.
    pub failure_points: Vec<FailurePoint>,
}

/// A user turn with what the model and people said of it.
#[derive(Debug, Clone)]
struct Message<'a> {
    conv: usize,
    turn: usize,
    text: &'a str,
    intent: Option<&'a str>,
    confidence: Option<f64>,
    ranking: &'a [Ranked],
    fallback: bool,
    at: Option<DateTime<Utc>>,
    /// The intent people last said it should have, if any.
    correction: Option<&'a str>,
    /// Every distinct intent people said it should have.
    corrections: Vec<&'a str>,
}

impl Message<'_> {
    /// The intent the turn belongs to as far as anyone knows: the
    /// correction, else the prediction.
    fn label(&self) -> Option<&str> {
        self.correction.or(self.intent)
    }

    fn unplaced(&self, s: &Settings) -> bool {
        self.fallback
            || self.intent.is_none_or(|i| i == s.oos_label)
            || self.confidence.is_some_and(|c| c < s.min_confidence)
    }
}

/// The input, read once for every pattern.
struct Corpus<'a> {
    conversations: &'a [Conversation],
    messages: Vec<Message<'a>>,
    training: Vec<&'a Example>,
    evaluation: Option<&'a Report>,
    now: DateTime<Utc>,
}

impl<'a> Corpus<'a> {
    fn read(input: &Input<'a>) -> Corpus<'a> {
        let mut messages = Vec::new();
        for (conv, c) in input.conversations.iter().enumerate() {
            for (turn, t) in c.turns.iter().enumerate() {
                if t.role != Role::User {
                    continue;
                }
                let top = t.ranking.first();
                let mut corrections: Vec<&str> = Vec::new();
                for f in &t.feedback {
                    if let Some(c) = f.correction.as_deref()
                        && !corrections.contains(&c)
                    {
                        corrections.push(c);
                    }
                }
                let correction = t
                    .feedback
                    .iter()
                    .rev()
                    .find_map(|f| f.correction.as_deref());
                messages.push(Message {
                    conv,
                    turn,
                    text: &t.text,
                    intent: t.intent.as_deref().or(top.map(|r| r.intent.as_str())),
                    confidence: t.confidence.or(top.map(|r| r.confidence)),
                    ranking: &t.ranking,
                    fallback: t.fallback,
                    at: t.at,
                    correction,
                    corrections,
                });
            }
        }
        let mut training: Vec<&Example> =
            input.examples.iter().filter(|e| e.split.trains()).collect();
        if training.is_empty() {
            // Data with only held-out splits still tells what the intents are.
            training = input.examples.iter().collect();
        }
        Corpus {
            conversations: input.conversations,
            messages,
            training,
            evaluation: input.evaluation,
            now: input.now,
        }
    }

    fn reference(&self, m: &Message) -> MessageRef {
        MessageRef {
            conversation: self.conversations[m.conv].id.clone(),
            turn: m.turn,
            text: m.text.to_owned(),
        }
    }
}

/// Find every pattern in `input`.
pub fn find(input: &Input, settings: &Settings) -> Patterns {
    let corpus = Corpus::read(input);
    let unplaced: Vec<&Message> = corpus
        .messages
        .iter()
        .filter(|m| m.unplaced(settings))
        .collect();
    let mut fallback_clusters = cluster::find(&corpus, &unplaced, settings);
    fallback_clusters.truncate(settings.max_patterns);
    let mut confusable_pairs = intents::confusable_pairs(&corpus, settings);
    confusable_pairs.truncate(settings.max_patterns);
    let mut weak_intents = intents::weak_intents(&corpus, settings);
    weak_intents.truncate(settings.max_patterns);
    let mut label_conflicts = intents::label_conflicts(&corpus, settings);
    label_conflicts.truncate(settings.max_patterns);
    let mut failure_points = failures::find(&corpus, settings);
    failure_points.truncate(settings.max_patterns);
    Patterns {
        at: corpus.now,
        conversations: corpus.conversations.len(),
        user_messages: corpus.messages.len(),
        unplaced: unplaced.len(),
        fallback_clusters,
        confusable_pairs,
        weak_intents,
        label_conflicts,
        drift: drift::find(&corpus, settings),
        failure_points,
    }
}

#[cfg(test)]
mod tests;
