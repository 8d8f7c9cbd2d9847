//! Conversations brought in whole (`coach conversations import`): each
//! becomes a logged conversation with its turns, predictions and
//! feedback, exactly as if the bot's platform had posted it. Importing a
//! file again skips what is already there.

use crate::core::conversation::Conversation;
use crate::core::conversation::Outcome;
use crate::store::Store;
use crate::store::conversation_reads::{ConversationFilter, RatingFilter};
use crate::store::conversations::{NewConversation, NewFeedback, NewMessage};
use anyhow::{Result, bail};
use chrono::{DateTime, Utc};

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Imported {
    pub conversations: u64,
    pub messages: u64,
    pub feedback: u64,
    /// Conversations already logged (same model and id), left as they are.
    pub skipped: u64,
}

/// Conversations stored per transaction.
pub const CHUNK: usize = 500;

/// The conversation as the store logs it, for model `model`, with its
/// feedback (message positions are the turns' indexes).
pub fn to_new(c: &Conversation, model: &str) -> (NewConversation, Vec<NewFeedback>) {
    let now = Utc::now();
    let messages = c
        .turns
        .iter()
        .map(|t| NewMessage {
            role: t.role.as_str(),
            text: t.text.clone(),
            intent: t.intent.clone(),
            confidence: t.confidence,
            fallback: t.fallback,
            model_version: t.model_version,
            escalation: t.escalation,
            at: t.at.unwrap_or(now),
            ranking: t.ranking.clone(),
            entities: t.entities.clone(),
        })
        .collect();
    let feedback = |f: &crate::core::conversation::Feedback, message: Option<i32>| NewFeedback {
        model: model.to_owned(),
        conversation: Some(c.id.clone()),
        message,
        rating: f.rating,
        correction: f.correction.clone(),
        comment: f.comment.clone(),
        escalation: f.escalation,
        at: f.at,
    };
    let mut items: Vec<NewFeedback> = c.feedback.iter().map(|f| feedback(f, None)).collect();
    for (i, t) in c.turns.iter().enumerate() {
        items.extend(t.feedback.iter().map(|f| feedback(f, Some(i as i32))));
    }
    (
        NewConversation {
            model: model.to_owned(),
            id: c.id.clone(),
            channel: c.channel.clone(),
            messages,
            outcome: c.outcome,
            assignment: None,
        },
        items,
    )
}

/// The first conversation that is there twice for one model (the same
/// id), if one is: an import would keep the first and skip the second,
/// and lose the feedback of both.
pub fn duplicate<'a>(
    conversations: &'a [Conversation],
    default_model: Option<&str>,
) -> Option<&'a Conversation> {
    let mut seen = std::collections::HashSet::new();
    conversations.iter().find(|c| {
        let model = c.model.as_deref().or(default_model).unwrap_or_default();
        !seen.insert((model.to_owned(), c.id.as_str()))
    })
}

/// The model a conversation is logged for: its own, else `default`.
fn model_of<'a>(c: &'a Conversation, default: Option<&'a str>) -> Result<&'a str> {
    match c.model.as_deref().or(default) {
        Some(m) if crate::core::ids::is_identifier(m) => Ok(m),
        Some(m) => bail!(
            "conversation `{}`: `{}` is not a model name",
            crate::core::text::printable(&c.id),
            crate::core::text::printable(m)
        ),
        None => bail!(
            "conversation `{}` names no model; pass --model",
            crate::core::text::printable(&c.id)
        ),
    }
}

/// Store `conversations` (each for its own model, else `default_model`),
/// in chunks of 500 per transaction; those already logged are skipped.
pub async fn import(
    store: &Store,
    conversations: &[Conversation],
    default_model: Option<&str>,
) -> Result<Imported> {
    // Every conversation names a model: checked before anything is
    // written.
    for c in conversations {
        model_of(c, default_model)?;
    }
    if let Some(c) = duplicate(conversations, default_model) {
        bail!(
            "conversation `{}` is there twice for one model; an import takes each once",
            crate::core::text::printable(&c.id)
        );
    }
    let mut done = Imported::default();
    for chunk in conversations.chunks(CHUNK) {
        let mut batch = Vec::with_capacity(chunk.len());
        let mut feedback = Vec::new();
        for c in chunk {
            let (new, items) = to_new(c, model_of(c, default_model)?);
            batch.push(new);
            feedback.extend(items);
        }
        // Skipped inside the transaction: two imports of one file at once
        // cannot both add a conversation.
        let (messages, stored_feedback, skipped) =
            store.import_conversations(&batch, &feedback).await?;
        done.messages += messages;
        done.feedback += stored_feedback;
        done.skipped += skipped.len() as u64;
        done.conversations += (batch.len() - skipped.len()) as u64;
    }
    Ok(done)
}

/// The conversation list's filters as the API's query string and the
/// command line's flags spell them.
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_confidence: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_confidence: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rating: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

/// Longest text search, in characters.
const MAX_SEARCH: usize = 256;

impl ListQuery {
    /// The filter, checked.
    pub fn filter(self) -> Result<ConversationFilter, String> {
        let bad = |m: String| Err(m);
        let limit = self.limit.unwrap_or(50);
        if !(1..=1000).contains(&limit) {
            return bad("`limit` must be between 1 and 1000".into());
        }
        for (name, v) in [
            ("min_confidence", self.min_confidence),
            ("max_confidence", self.max_confidence),
        ] {
            if let Some(v) = v
                && !(0.0..=1.0).contains(&v)
            {
                return bad(format!("`{name}` must be between 0 and 1, got {v}"));
            }
        }
        let rating = match self.rating.as_deref() {
            None => None,
            Some(r) => match RatingFilter::parse(r) {
                Some(r) => Some(r),
                None => {
                    return bad(format!(
                        "`rating` is `{}`; expected positive, negative, rated or unrated",
                        crate::core::text::printable(&crate::core::text::clip(r, 64))
                    ));
                }
            },
        };
        let outcome = match self.outcome.as_deref() {
            None => None,
            Some("none") => Some(None),
            Some(o) => match Outcome::parse(o) {
                Some(o) => Some(Some(o)),
                None => {
                    return bad(format!(
                        "`outcome` is `{}`; expected resolved, escalated, abandoned or none",
                        crate::core::text::printable(&crate::core::text::clip(o, 64))
                    ));
                }
            },
        };
        if let Some(q) = &self.q
            && (q.is_empty() || q.chars().count() > MAX_SEARCH)
        {
            return bad(format!("`q` must be 1 to {MAX_SEARCH} characters"));
        }
        if self
            .q
            .as_deref()
            .is_some_and(|q| q.chars().any(char::is_control))
        {
            return bad("`q` must not hold control characters".into());
        }
        for (name, v) in [
            ("model", &self.model),
            ("external", &self.external),
            ("channel", &self.channel),
            ("intent", &self.intent),
        ] {
            if v.as_ref().is_some_and(|v| v.len() > 256) {
                return bad(format!("`{name}` is longer than 256 bytes"));
            }
        }
        Ok(ConversationFilter {
            model: self.model,
            external: self.external,
            version: self.version,
            channel: self.channel,
            since: self.since,
            until: self.until,
            fallback: self.fallback,
            min_confidence: self.min_confidence,
            max_confidence: self.max_confidence,
            rating,
            intent: self.intent,
            outcome,
            text: self.q,
            before: self.before,
            limit,
        })
    }

    /// As a query string (`model=bot&q=card`), for a daemon.
    pub fn to_query(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        if let serde_json::Value::Object(o) = serde_json::to_value(self).unwrap_or_default() {
            for (k, v) in o {
                match v {
                    serde_json::Value::String(s) => q.append_pair(&k, &s),
                    other => q.append_pair(&k, &other.to_string()),
                };
            }
        }
        q.finish()
    }
}
