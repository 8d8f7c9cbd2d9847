//! A conversation as Coach reads it back: every turn with what the model
//! predicted for it and what users said about it. One shape for the API's
//! `GET /api/v1/conversations/{id}`, `coach conversations export` (one per
//! line: Coach JSONL) and import, and what analyzers are given.

pub mod formats;

use super::example::EntitySpan;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How a conversation ended, as the bot reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Resolved,
    Escalated,
    Abandoned,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Resolved => "resolved",
            Outcome::Escalated => "escalated",
            Outcome::Abandoned => "abandoned",
        }
    }

    pub fn parse(s: &str) -> Option<Outcome> {
        match s {
            "resolved" => Some(Outcome::Resolved),
            "escalated" => Some(Outcome::Escalated),
            "abandoned" => Some(Outcome::Abandoned),
            _ => None,
        }
    }
}

/// Who spoke a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    User,
    Bot,
    System,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Bot => "bot",
            Role::System => "system",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "user" => Some(Role::User),
            "bot" => Some(Role::Bot),
            "system" => Some(Role::System),
            _ => None,
        }
    }
}

/// One candidate intent of a prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ranked {
    pub intent: String,
    pub confidence: f64,
}

/// What a user (or a reviewer) said about a conversation or one turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feedback {
    /// `1` helpful, `-1` not helpful.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rating: Option<i32>,
    /// The intent the turn should have been given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correction: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub escalation: bool,
    pub at: DateTime<Utc>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One turn, with the prediction made for it (user turns) and the
/// feedback on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    pub role: Role,
    pub text: String,
    /// The intent predicted (or labelled, for data from files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    /// The model's top intents, best first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ranking: Vec<Ranked>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entities: Vec<EntitySpan>,
    /// The bot did not understand and fell back.
    #[serde(default, skip_serializing_if = "is_false")]
    pub fallback: bool,
    /// The user asked for a person.
    #[serde(default, skip_serializing_if = "is_false")]
    pub escalation: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_version: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub feedback: Vec<Feedback>,
}

impl Turn {
    pub fn new(role: Role, text: impl Into<String>) -> Turn {
        Turn {
            role,
            text: text.into(),
            intent: None,
            confidence: None,
            ranking: Vec::new(),
            entities: Vec::new(),
            fallback: false,
            escalation: false,
            model_version: None,
            at: None,
            feedback: Vec::new(),
        }
    }

    /// The margin between the top two intents, when the ranking has two.
    pub fn margin(&self) -> Option<f64> {
        match self.ranking.as_slice() {
            [a, b, ..] => Some(a.confidence - b.confidence),
            _ => None,
        }
    }
}

/// A whole conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    /// The platform's (or the file's) id.
    pub id: String,
    /// The model the bot serves; absent for data read from files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    pub turns: Vec<Turn>,
    /// Feedback on the conversation as a whole.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub feedback: Vec<Feedback>,
}

/// Longest conversation id kept, in bytes.
pub const MAX_ID: usize = 256;
/// Most turns one conversation may have.
pub const MAX_TURNS: usize = 10_000;
/// Most ranked intents, or entities, one turn may carry.
pub const MAX_RANKED: usize = 20;
/// Longest feedback comment, in characters (as the API takes it).
pub const MAX_COMMENT: usize = 4096;
/// Most feedback items one conversation may hold, on the whole and on its
/// turns together: a conversation is read with its feedback, so that read
/// stays bounded however often a client rates it.
pub const MAX_FEEDBACK: usize = 1000;
/// Longest entity value, in characters (as the API takes it).
pub const MAX_ENTITY_VALUE: usize = 1024;

/// Why a time is refused: Coach keeps years 2000 to 2100 (as the API
/// takes them), so a stray epoch or a typed year cannot skew a window.
pub(crate) fn year_problem(at: DateTime<Utc>) -> Option<String> {
    use chrono::Datelike;
    let year = at.year();
    (!(2000..=2100).contains(&year))
        .then(|| format!("its time {at} is not in the years 2000 to 2100"))
}
/// Longest turn text, in bytes.
pub const MAX_TEXT: usize = 64 * 1024;

impl Conversation {
    /// Its feedback items, on the whole and on its turns.
    pub fn feedback_count(&self) -> usize {
        self.feedback.len() + self.turns.iter().map(|t| t.feedback.len()).sum::<usize>()
    }

    /// Why Coach refuses this conversation from outside (a source plugin,
    /// an import file), if it does.
    pub fn refuse(&self) -> Option<String> {
        if self.id.trim().is_empty() || self.id.len() > MAX_ID {
            return Some(format!("its id is blank or longer than {MAX_ID} bytes"));
        }
        if self.id.chars().any(char::is_control) {
            return Some("its id holds control characters".into());
        }
        if let Some(c) = &self.channel
            && (c.len() > MAX_ID || c.chars().any(char::is_control))
        {
            return Some(format!(
                "its channel is longer than {MAX_ID} bytes or holds control characters"
            ));
        }
        for f in self
            .turns
            .iter()
            .flat_map(|t| &t.feedback)
            .chain(&self.feedback)
        {
            if let Some(why) = f
                .correction
                .as_deref()
                .and_then(|c| super::example::label_problem("correction", c))
            {
                return Some(format!("feedback: {why}"));
            }
            if f.comment
                .as_ref()
                .is_some_and(|c| c.contains('\0') || c.len() > MAX_TEXT)
            {
                return Some(format!(
                    "feedback: its comment holds a NUL or is longer than {MAX_TEXT} bytes"
                ));
            }
            if f.comment
                .as_ref()
                .is_some_and(|c| c.chars().count() > MAX_COMMENT)
            {
                return Some(format!(
                    "feedback: its comment is longer than {MAX_COMMENT} characters"
                ));
            }
            if let Some(why) = year_problem(f.at) {
                return Some(format!("feedback: {why}"));
            }
            if let Some(r) = f.rating
                && r != 1
                && r != -1
            {
                return Some(format!(
                    "feedback: rating {r}; expected 1 (helpful) or -1 (not helpful)"
                ));
            }
            if f.rating.is_none() && f.correction.is_none() && f.comment.is_none() && !f.escalation
            {
                return Some(
                    "feedback: says nothing; give a rating, correction, comment or escalation"
                        .into(),
                );
            }
        }
        let feedback = self.feedback_count();
        if feedback > MAX_FEEDBACK {
            return Some(format!(
                "it carries {feedback} feedback items; at most {MAX_FEEDBACK}"
            ));
        }
        if self.turns.is_empty() {
            return Some("it has no turns".into());
        }
        if self.turns.len() > MAX_TURNS {
            return Some(format!(
                "it has {} turns; at most {MAX_TURNS}",
                self.turns.len()
            ));
        }
        for (i, t) in self.turns.iter().enumerate() {
            if t.text.contains('\0') {
                return Some(format!("turn {i}: its text holds a NUL character"));
            }
            if t.text.len() > MAX_TEXT {
                return Some(format!(
                    "turn {i}: its text is longer than {MAX_TEXT} bytes"
                ));
            }
            if let Some(why) = t
                .intent
                .as_deref()
                .and_then(|i| super::example::label_problem("intent", i))
            {
                return Some(format!("turn {i}: {why}"));
            }
            if let Some(c) = t.confidence
                && !(0.0..=1.0).contains(&c)
            {
                return Some(format!("turn {i}: confidence {c} is not within 0..1"));
            }
            if let Some(v) = t.model_version
                && v < 1
            {
                return Some(format!("turn {i}: model version {v}; versions start at 1"));
            }
            for (what, n) in [("ranking", t.ranking.len()), ("entities", t.entities.len())] {
                if n > MAX_RANKED {
                    return Some(format!(
                        "turn {i}: {what} has {n} items; at most {MAX_RANKED}"
                    ));
                }
            }
            for r in &t.ranking {
                if let Some(why) = super::example::label_problem("ranked intent", &r.intent) {
                    return Some(format!("turn {i}: {why}"));
                }
                if !(0.0..=1.0).contains(&r.confidence) {
                    return Some(format!(
                        "turn {i}: ranked confidence {} is not within 0..1",
                        r.confidence
                    ));
                }
            }
            for e in &t.entities {
                if let Some(why) = super::example::span_problem(&t.text, e) {
                    return Some(format!("turn {i}: entity: {why}"));
                }
                if e.value.contains('\0') || e.value.chars().count() > MAX_ENTITY_VALUE {
                    return Some(format!(
                        "turn {i}: entity: its value holds a NUL or is longer than {MAX_ENTITY_VALUE} characters"
                    ));
                }
            }
            if let Some(why) = t.at.and_then(year_problem) {
                return Some(format!("turn {i}: {why}"));
            }
        }
        None
    }

    /// The bytes it takes, for the source limits.
    pub fn size(&self) -> u64 {
        (self.id.len()
            + self
                .turns
                .iter()
                .map(|t| t.text.len() + t.intent.as_ref().map_or(0, String::len) + 16)
                .sum::<usize>()) as u64
    }

    pub fn user_turns(&self) -> impl Iterator<Item = &Turn> {
        self.turns.iter().filter(|t| t.role == Role::User)
    }
}

/// A snapshot's content hash: the examples' ([`dataset_hash`]) when it has
/// no conversations, so snapshots of examples alone keep their hashes;
/// else SHA-256 over that hash and every conversation's turns in order.
///
/// [`dataset_hash`]: super::example::dataset_hash
pub fn snapshot_hash(
    examples: &[super::example::Example],
    conversations: &[Conversation],
) -> String {
    use sha2::{Digest, Sha256};
    let examples = super::example::dataset_hash(examples);
    if conversations.is_empty() {
        return examples;
    }
    let mut h = Sha256::new();
    h.update(examples.as_bytes());
    for c in conversations {
        let turns = serde_json::to_string(&c.turns).unwrap_or_default();
        for part in [c.id.as_str(), turns.as_str()] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
    }
    hex::encode(h.finalize())
}
