//! Conversation logs and feedback pushed by chatbot platforms, and the
//! traffic they add up to per model.

use super::AppState;
use super::error::ApiError;
use super::extract::{Json, Path, Query};
use crate::core::conversation::{Conversation, MAX_RANKED, Ranked};
use crate::core::example::{EntitySpan, MAX_LABEL};
use crate::service::conversations::ListQuery;
use crate::store::conversation_reads::{MAX_TURNS_READ, StoredConversation};
use crate::store::conversations::{
    NewConversation, NewFeedback, NewMessage, Outcome, TooMuchFeedback, UnknownReference,
};
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

/// Most conversations (or feedback items) one request may carry.
const MAX_BATCH: usize = 1000;
/// Longest message text, in bytes.
const MAX_TEXT: usize = 64 * 1024; // characters

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConversationBatch {
    conversations: Vec<ConversationIn>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConversationIn {
    model: String,
    id: String,
    channel: Option<String>,
    #[serde(default)]
    messages: Vec<MessageIn>,
    /// What the conversation came to, as the bot reports it.
    outcome: Option<Outcome>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageIn {
    role: String,
    text: String,
    intent: Option<String>,
    confidence: Option<f64>,
    #[serde(default)]
    fallback: bool,
    model_version: Option<i32>,
    /// The user asked for a person.
    #[serde(default)]
    escalation: bool,
    at: Option<DateTime<Utc>>,
    /// The model's top intents, best first (user messages).
    #[serde(default)]
    ranking: Vec<RankedIn>,
    /// The entities the model found (user messages).
    #[serde(default)]
    entities: Vec<EntitySpan>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RankedIn {
    intent: String,
    confidence: f64,
}

/// A model name as workflows spell them (it is a workflow's name).
fn check_model(at: &str, model: &str) -> Result<(), String> {
    if crate::core::ids::is_identifier(model) {
        Ok(())
    } else {
        Err(format!(
            "{at}.model: `{model}` is not a model name (up to 64 letters, digits, `-` or `_`)"
        ))
    }
}

fn check_batch<T>(what: &str, items: &[T]) -> Result<(), ApiError> {
    if items.is_empty() {
        return Err(ApiError::Invalid(format!("{what}: is empty")));
    }
    if items.len() > MAX_BATCH {
        return Err(ApiError::Invalid(format!(
            "`{what}` has {} items; at most {MAX_BATCH} per request",
            items.len()
        )));
    }
    Ok(())
}

fn conversation(i: usize, c: ConversationIn) -> Result<NewConversation, String> {
    let at = format!("conversations[{i}]");
    check_model(&at, &c.model)?;
    if c.id.trim().is_empty() || c.id.chars().count() > 256 {
        return Err(format!("{at}.id: must be 1 to 256 characters"));
    }
    if c.messages.is_empty() && c.outcome.is_none() {
        return Err(format!(
            "{at}.messages: is empty (a conversation without new messages must report its `outcome`)"
        ));
    }
    let now = Utc::now();
    let messages = c
        .messages
        .into_iter()
        .enumerate()
        .map(|(j, m)| {
            let at = format!("{at}.messages[{j}]");
            let role = match m.role.as_str() {
                "user" => "user",
                "bot" => "bot",
                other => return Err(format!("{at}.role: `{other}`; expected `user` or `bot`")),
            };
            let chars = m.text.chars().count();
            if chars > MAX_TEXT {
                return Err(format!(
                    "{at}.text: takes at most {MAX_TEXT} characters, got {chars}"
                ));
            }
            if let Some(p) = m.confidence
                && !(0.0..=1.0).contains(&p)
            {
                return Err(format!("{at}.confidence: {p} is not between 0 and 1"));
            }
            if role == "bot"
                && (m.intent.is_some()
                    || m.confidence.is_some()
                    || m.fallback
                    || !m.ranking.is_empty()
                    || !m.entities.is_empty())
            {
                return Err(format!(
                    "{at}: `intent`, `confidence`, `fallback`, `ranking` and `entities` describe a user message, not the bot's"
                ));
            }
            if let Some(why) = m
                .intent
                .as_deref()
                .and_then(|i| crate::core::example::label_problem("intent", i))
            {
                return Err(format!("{at}: {why}"));
            }
            for (what, n) in [("ranking", m.ranking.len()), ("entities", m.entities.len())] {
                if n > MAX_RANKED {
                    return Err(format!("{at}.{what}: has {n} items; at most {MAX_RANKED}"));
                }
            }
            let mut ranking = Vec::with_capacity(m.ranking.len());
            for (k, r) in m.ranking.into_iter().enumerate() {
                if r.intent.is_empty() || r.intent.len() > MAX_LABEL {
                    return Err(format!(
                        "{at}.ranking[{k}].intent: must be 1 to {MAX_LABEL} bytes"
                    ));
                }
                // As an import of the export will check it.
                if let Some(why) = crate::core::example::label_problem("intent", &r.intent) {
                    return Err(format!("{at}.ranking[{k}]: {why}"));
                }
                if !(0.0..=1.0).contains(&r.confidence) {
                    return Err(format!(
                        "{at}.ranking[{k}].confidence: {} is not between 0 and 1",
                        r.confidence
                    ));
                }
                ranking.push(Ranked {
                    intent: r.intent,
                    confidence: r.confidence,
                });
            }
            for (k, e) in m.entities.iter().enumerate() {
                if let Some(why) = crate::core::example::span_problem(&m.text, e) {
                    return Err(format!("{at}.entities[{k}]: {why}"));
                }
            }
            Ok(NewMessage {
                role,
                text: m.text,
                intent: m.intent,
                confidence: m.confidence,
                fallback: m.fallback,
                model_version: m.model_version,
                escalation: m.escalation,
                at: m.at.unwrap_or(now),
                ranking,
                entities: m.entities,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(NewConversation {
        model: c.model,
        id: c.id,
        channel: c.channel,
        messages,
        outcome: c.outcome,
        assignment: None,
    })
}

/// `POST /api/v1/conversations`: log conversations (or more turns of ones
/// already logged). All or nothing.
pub async fn log(
    State(s): State<AppState>,
    Json(body): Json<ConversationBatch>,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    check_batch("conversations", &body.conversations)?;
    let batch = body
        .conversations
        .into_iter()
        .enumerate()
        .map(|(i, c)| conversation(i, c))
        .collect::<Result<Vec<_>, String>>()
        .map_err(ApiError::Invalid)?;
    let messages = s.store.log_conversations(&batch).await.map_err(|e| {
        match e.downcast::<crate::store::conversations::TooManyTurns>() {
            Ok(t) => ApiError::Invalid(t.to_string()),
            Err(e) => ApiError::Internal(e),
        }
    })?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({"conversations": batch.len(), "messages": messages})),
    ))
}

/// Most conversations one import request may carry: one transaction's
/// worth…
const MAX_IMPORT: usize = 500;
const _: () = assert!(MAX_IMPORT <= crate::service::conversations::CHUNK);
/// …most turns, and most feedback items (as `POST /api/v1/feedback`
/// takes), in all.
const MAX_IMPORT_TURNS: usize = crate::core::conversation::MAX_TURNS;
const MAX_IMPORT_FEEDBACK: usize = MAX_BATCH;

/// `POST /api/v1/conversations/import`: conversations in the shape
/// `coach conversations export` writes (Coach JSONL), feedback on their
/// turns included, as `coach conversations import` sends them to a
/// daemon.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportBatch {
    /// The model of conversations that name none.
    model: Option<String>,
    conversations: Vec<Conversation>,
}

/// `POST /api/v1/conversations/import`: store whole conversations with
/// their feedback in one transaction, as a local import does; one already
/// logged (the same model and id) is skipped with its feedback, so an
/// import that stopped part way can be run again. All or nothing.
pub async fn import(
    State(s): State<AppState>,
    Json(body): Json<ImportBatch>,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    if body.conversations.is_empty() || body.conversations.len() > MAX_IMPORT {
        return Err(ApiError::Invalid(format!(
            "conversations: has {} items; 1 to {MAX_IMPORT} per request",
            body.conversations.len()
        )));
    }
    if let Some(m) = &body.model
        && !crate::core::ids::is_identifier(m)
    {
        return Err(ApiError::Invalid(format!(
            "model: `{}` is not a model name",
            crate::core::text::printable(m)
        )));
    }
    for (i, c) in body.conversations.iter().enumerate() {
        let at = format!("conversations[{i}]");
        if let Some(why) = c.refuse() {
            return Err(ApiError::Invalid(format!("{at}: {why}")));
        }
        match c.model.as_deref().or(body.model.as_deref()) {
            Some(m) => check_model(&at, m).map_err(ApiError::Invalid)?,
            None => {
                return Err(ApiError::Invalid(format!(
                    "{at}.model: missing, and the request names no `model`"
                )));
            }
        }
    }
    use crate::service::conversations::duplicate;
    if let Some(c) = duplicate(&body.conversations, body.model.as_deref()) {
        return Err(ApiError::Invalid(format!(
            "conversations: `{}` is there twice for one model",
            crate::core::text::printable(&c.id)
        )));
    }
    let turns: usize = body.conversations.iter().map(|c| c.turns.len()).sum();
    let feedback: usize = body
        .conversations
        .iter()
        .map(Conversation::feedback_count)
        .sum();
    if turns > MAX_IMPORT_TURNS || feedback > MAX_IMPORT_FEEDBACK {
        return Err(ApiError::Invalid(format!(
            "conversations: {turns} turns and {feedback} feedback items; at most {MAX_IMPORT_TURNS} and {MAX_IMPORT_FEEDBACK} per request"
        )));
    }
    let done =
        crate::service::conversations::import(&s.store, &body.conversations, body.model.as_deref())
            .await
            .map_err(ApiError::Internal)?;
    Ok((
        StatusCode::CREATED,
        axum::Json(serde_json::to_value(done).map_err(|e| ApiError::Internal(e.into()))?),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackBatch {
    feedback: Vec<FeedbackIn>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedbackIn {
    model: String,
    conversation: Option<String>,
    message: Option<i32>,
    rating: Option<i32>,
    correction: Option<String>,
    comment: Option<String>,
    /// The user asked for a person.
    #[serde(default)]
    escalation: bool,
    at: Option<DateTime<Utc>>,
}

fn feedback(i: usize, f: FeedbackIn) -> Result<NewFeedback, String> {
    let at = format!("feedback[{i}]");
    check_model(&at, &f.model)?;
    if let Some(r) = f.rating
        && r != 1
        && r != -1
    {
        return Err(format!(
            "{at}.rating: {r}; expected 1 (helpful) or -1 (not helpful)"
        ));
    }
    if f.message.is_some() && f.conversation.is_none() {
        return Err(format!("{at}.message: needs `conversation`"));
    }
    if let Some(c) = &f.correction
        && c.trim().is_empty()
    {
        return Err(format!("{at}.correction: is empty"));
    }
    if f.rating.is_none() && f.correction.is_none() && f.comment.is_none() && !f.escalation {
        return Err(format!(
            "{at}: says nothing; give `rating`, `correction`, `comment` or `escalation`"
        ));
    }
    Ok(NewFeedback {
        model: f.model,
        conversation: f.conversation,
        message: f.message,
        rating: f.rating,
        correction: f.correction,
        comment: f.comment,
        escalation: f.escalation,
        at: f.at.unwrap_or_else(Utc::now),
    })
}

/// `POST /api/v1/feedback`: ratings, corrected intents and comments. All or
/// nothing: an item naming a conversation or message never logged rejects
/// the request.
pub async fn record(
    State(s): State<AppState>,
    Json(body): Json<FeedbackBatch>,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    check_batch("feedback", &body.feedback)?;
    let batch = body
        .feedback
        .into_iter()
        .enumerate()
        .map(|(i, f)| feedback(i, f))
        .collect::<Result<Vec<_>, String>>()
        .map_err(ApiError::Invalid)?;
    let n = s.store.record_feedback(&batch).await.map_err(|e| {
        let e = match e.downcast::<UnknownReference>() {
            Ok(u) => return ApiError::Invalid(u.to_string()),
            Err(e) => e,
        };
        match e.downcast::<TooMuchFeedback>() {
            Ok(t) => ApiError::Invalid(t.to_string()),
            Err(e) => ApiError::Internal(e),
        }
    })?;
    Ok((StatusCode::CREATED, axum::Json(json!({"feedback": n}))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficQuery {
    since: Option<DateTime<Utc>>,
}

/// `GET /api/v1/models/{name}/traffic`: what the model's users did since
/// `since` (RFC 3339; default: ever).
pub async fn traffic(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<TrafficQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    check_model("path", &name).map_err(ApiError::BadRequest)?;
    let t = s.store.traffic_since(&name, q.since).await?;
    let mut v = serde_json::to_value(&t).map_err(anyhow::Error::from)?;
    v["model"] = json!(name);
    v["since"] = json!(q.since);
    Ok(axum::Json(v))
}

/// `GET /api/v1/conversations`: conversations matching the filters,
/// newest first, a page at a time.
pub async fn list(
    State(s): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let filter = q.filter().map_err(ApiError::BadRequest)?;
    let page = s.records().conversations(&filter).await?;
    Ok(axum::Json(json!({
        "conversations": page.conversations,
        "next_before": page.next,
    })))
}

/// Which turns of a conversation to answer with.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TurnsQuery {
    turns_from: Option<u64>,
    turns_limit: Option<u64>,
}

/// `GET /api/v1/conversations/{id}`: one conversation, its turns (each
/// with its prediction, entities and feedback) a page at a time, the
/// feedback on the whole, and its analyses (newest first). Asked without
/// `turns_from` or `turns_limit`, as clients from before the pages ask, it
/// answers the conversation whole, or refuses one longer than a page: a
/// client that expects it whole never gets part of it.
pub async fn show(
    State(s): State<AppState>,
    Path(id): Path<i64>,
    Query(q): Query<TurnsQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let from = q.turns_from.unwrap_or(0);
    if from > crate::core::conversation::MAX_TURNS as u64 {
        return Err(ApiError::BadRequest(format!(
            "turns_from: at most {}, got {from}",
            crate::core::conversation::MAX_TURNS
        )));
    }
    let limit = q.turns_limit.unwrap_or(MAX_TURNS_READ);
    if !(1..=MAX_TURNS_READ).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "turns_limit: 1 to {MAX_TURNS_READ}, got {limit}"
        )));
    }
    let (c, total): (StoredConversation, u64) = s
        .records()
        .conversation(id, from, limit)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no conversation {id}")))?;
    if q.turns_from.is_none() && q.turns_limit.is_none() && total > MAX_TURNS_READ {
        return Err(ApiError::BadRequest(format!(
            "conversation {id} has {total} turns, more than one answer carries ({MAX_TURNS_READ}): ask for them a page at a time with turns_from and turns_limit"
        )));
    }
    let next = from + c.turns.len() as u64;
    let mut v = serde_json::to_value(&c).map_err(anyhow::Error::from)?;
    v["turns_from"] = json!(from);
    v["turns_total"] = json!(total);
    v["next_turns_from"] = json!((next < total && !c.turns.is_empty()).then_some(next));
    v["analyses"] = json!(s.store.analyses_of(id).await?);
    Ok(axum::Json(v))
}
