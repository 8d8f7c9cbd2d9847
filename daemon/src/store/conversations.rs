//! Conversations, messages and feedback as chatbot platforms log them, and
//! the traffic counts that trigger conditions read (what arrived since the
//! last run, how often the bot fell back).

use super::Store;
use super::entities::{conversations, feedback, messages};
use anyhow::Result;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseTransaction, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QueryTrait, Set,
};
use std::collections::HashMap;

/// One conversation (or more turns of one already logged), checked.
#[derive(Debug, Clone)]
pub struct NewConversation {
    /// The model name the bot serves.
    pub model: String,
    /// The platform's id of the conversation.
    pub id: String,
    pub channel: Option<String>,
    pub messages: Vec<NewMessage>,
    /// What the bot reports the conversation came to, when it does.
    pub outcome: Option<Outcome>,
    /// The experiment arm that answered it (set once: the first
    /// assignment stays).
    pub assignment: Option<Assignment>,
}

pub use crate::core::conversation::Outcome;

/// An experiment's assignment of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub experiment: i64,
    pub arm: String,
    /// The unit hashed: the user, else the conversation.
    pub unit: String,
}

#[derive(Debug, Clone)]
pub struct NewMessage {
    /// `user` or `bot`.
    pub role: &'static str,
    pub text: String,
    pub intent: Option<String>,
    pub confidence: Option<f64>,
    pub fallback: bool,
    pub model_version: Option<i32>,
    /// The user asked for a person.
    pub escalation: bool,
    pub at: DateTime<Utc>,
    /// The model's top intents, best first (user turns).
    pub ranking: Vec<crate::core::conversation::Ranked>,
    /// The entities the model found (user turns).
    pub entities: Vec<crate::core::example::EntitySpan>,
}

/// One piece of feedback, checked.
#[derive(Debug, Clone)]
pub struct NewFeedback {
    pub model: String,
    /// The platform's id of the conversation it is about.
    pub conversation: Option<String>,
    /// The message's position in that conversation.
    pub message: Option<i32>,
    pub rating: Option<i32>,
    pub correction: Option<String>,
    pub comment: Option<String>,
    /// The user asked for a person.
    pub escalation: bool,
    pub at: DateTime<Utc>,
}

/// Feedback that names a conversation or message Coach has not been sent.
#[derive(Debug, thiserror::Error)]
#[error("feedback[{index}]: {what}")]
pub struct UnknownReference {
    pub index: usize,
    pub what: String,
}

/// Feedback that would take a conversation past
/// [`crate::core::conversation::MAX_FEEDBACK`] items.
#[derive(Debug, thiserror::Error)]
#[error("feedback[{index}]: conversation `{id}` would hold more than {max} feedback items", max = crate::core::conversation::MAX_FEEDBACK)]
pub struct TooMuchFeedback {
    pub index: usize,
    pub id: String,
}

/// A batch that would take a conversation past
/// [`crate::core::conversation::MAX_TURNS`] turns.
#[derive(Debug, thiserror::Error)]
#[error("conversations[{index}]: conversation `{id}` would have {turns} turns; at most {max}", max = crate::core::conversation::MAX_TURNS)]
pub struct TooManyTurns {
    pub index: usize,
    pub id: String,
    pub turns: usize,
}

/// What a model's users did in a window: the trigger conditions' inputs.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Traffic {
    pub conversations: u64,
    pub messages: u64,
    pub user_messages: u64,
    pub fallbacks: u64,
    /// `fallbacks / user_messages`; 0 when there were none.
    pub fallback_rate: f64,
    pub feedback: u64,
    pub positive: u64,
    pub negative: u64,
    pub corrections: u64,
}

/// Add a batch of messages to its conversation's counters (and its
/// outcome and assignment), in the transaction that stores them.
async fn count_messages(
    tx: &DatabaseTransaction,
    id: i64,
    c: &NewConversation,
    assign: bool,
) -> Result<()> {
    use conversations::Column as C;
    let users = c.messages.iter().filter(|m| m.role == "user");
    let n = users.clone().count() as i32;
    let fallbacks = users.filter(|m| m.fallback).count() as i32;
    let escalation =
        c.messages.iter().any(|m| m.escalation) || c.outcome == Some(Outcome::Escalated);
    let mut q = conversations::Entity::update_many()
        .col_expr(C::UserMessages, Expr::col(C::UserMessages).add(n))
        .col_expr(C::Fallbacks, Expr::col(C::Fallbacks).add(fallbacks));
    if escalation {
        q = q.col_expr(C::Escalated, Expr::value(true));
    }
    if let Some(o) = c.outcome {
        q = q.col_expr(C::Outcome, Expr::value(o.as_str()));
    }
    if assign && let Some(a) = &c.assignment {
        q = q
            .col_expr(C::ExperimentId, Expr::value(a.experiment))
            .col_expr(C::Arm, Expr::value(a.arm.clone()))
            .col_expr(C::Unit, Expr::value(a.unit.clone()));
    }
    q.filter(C::Id.eq(id)).exec(tx).await?;
    Ok(())
}

/// A conversation's counters in the order of [`VARIABLES`] (itself
/// counting one conversation).
fn counters_of(c: &conversations::Model) -> [f64; 9] {
    [
        1.0,
        f64::from(c.user_messages),
        f64::from(c.fallbacks),
        f64::from(c.rated),
        f64::from(c.positive),
        f64::from(c.negative),
        f64::from(c.corrections),
        f64::from(u8::from(c.escalated)),
        f64::from(u8::from(c.outcome.as_deref() == Some("resolved"))),
    ]
}

/// Move conversation `id`'s experiment unit, and its arm's totals, by what
/// its counters changed since `before` (all of them when it was not yet in
/// the experiment). In the caller's transaction: an event is counted with
/// the write that stores it, once.
async fn account(
    tx: &DatabaseTransaction,
    id: i64,
    before: Option<&conversations::Model>,
) -> Result<()> {
    let Some(now) = conversations::Entity::find_by_id(id).one(tx).await? else {
        return Ok(());
    };
    let (Some(experiment), Some(arm), Some(unit)) = (now.experiment_id, &now.arm, &now.unit) else {
        return Ok(());
    };
    let old = match before {
        Some(b) if b.experiment_id == Some(experiment) && b.arm.as_ref() == Some(arm) => {
            counters_of(b)
        }
        _ => [0.0; 9],
    };
    let new = counters_of(&now);
    if old == new {
        return Ok(());
    }
    super::experiments::move_unit(tx, experiment, arm, unit, &old, &new).await
}

/// Add one piece of feedback to its conversation's counters.
async fn count_feedback(tx: &DatabaseTransaction, id: i64, f: &NewFeedback) -> Result<()> {
    use conversations::Column as C;
    let add = |col: C, n: bool| Expr::col(col).add(i32::from(n));
    let mut q = conversations::Entity::update_many()
        .col_expr(C::Rated, add(C::Rated, f.rating.is_some()))
        .col_expr(
            C::Positive,
            add(C::Positive, f.rating.is_some_and(|r| r > 0)),
        )
        .col_expr(
            C::Negative,
            add(C::Negative, f.rating.is_some_and(|r| r < 0)),
        )
        .col_expr(C::Corrections, add(C::Corrections, f.correction.is_some()));
    if f.escalation {
        q = q.col_expr(C::Escalated, Expr::value(true));
    }
    q.filter(C::Id.eq(id)).exec(tx).await?;
    Ok(())
}

/// How many times a write that lost a race is run again. Writers of one
/// conversation take its lock first ([`lock_conversations`]), so on
/// PostgreSQL they wait for each other rather than race; should one still
/// find a row another added since it looked (the unique index refuses
/// it), or be ended by PostgreSQL as half of a deadlock, it runs again
/// from the start and finds what the other added. (SQLite's writes take the
/// database's lock at their start and never race.)
const RACES: usize = 10;

/// The error is a unique index refusing a row another transaction added,
/// or PostgreSQL ending one of two writers that waited on each other
/// (deadlock, 40P01) or could not be serialised (40001).
fn lost_race(e: &anyhow::Error) -> bool {
    use sea_orm::{DbErr, RuntimeErr, SqlErr};
    e.chain().any(|c| {
        let Some(d) = c.downcast_ref::<DbErr>() else {
            return false;
        };
        if matches!(d.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) {
            return true;
        }
        let (DbErr::Exec(RuntimeErr::SqlxError(x)) | DbErr::Query(RuntimeErr::SqlxError(x))) = d
        else {
            return false;
        };
        x.as_database_error()
            .and_then(|db| db.code())
            .is_some_and(|code| code == "40P01" || code == "40001")
    })
}

impl Store {
    /// Log conversations in one transaction; a conversation already logged
    /// (same model and id) gets the new messages appended. Returns the
    /// number of messages stored.
    pub async fn log_conversations(&self, batch: &[NewConversation]) -> Result<u64> {
        let (tx, stored, _) = self.logged(batch, false).await?;
        tx.commit().await?;
        Ok(stored)
    }

    /// [`log_in`] in a transaction of its own, run again should it lose a
    /// race ([`RACES`]); the transaction is left open for the caller to
    /// add to and commit.
    async fn logged(
        &self,
        batch: &[NewConversation],
        skip_existing: bool,
    ) -> Result<(DatabaseTransaction, u64, Vec<usize>)> {
        let policy = self.review_policy();
        let mut lost = 0;
        loop {
            let tx = self.begin_write().await?;
            match log_in(&tx, batch, &policy, skip_existing).await {
                Ok((stored, skipped)) => return Ok((tx, stored, skipped)),
                Err(e) if lost_race(&e) && lost < RACES => {
                    tx.rollback().await?;
                    lost += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Store feedback in one transaction: all of it, or (when an item names
    /// a conversation or message that was never logged) none of it.
    pub async fn record_feedback(&self, batch: &[NewFeedback]) -> Result<u64> {
        let tx = self.begin_write().await?;
        let n = feedback_in(&tx, batch, &self.review_policy()).await?;
        tx.commit().await?;
        Ok(n)
    }

    /// Import whole conversations and their feedback in one transaction,
    /// skipping (inside it, so two imports at once cannot both add one)
    /// those already logged. Returns the messages and feedback stored and
    /// the indexes of `batch` skipped.
    pub async fn import_conversations(
        &self,
        batch: &[NewConversation],
        feedback: &[NewFeedback],
    ) -> Result<(u64, u64, Vec<usize>)> {
        let policy = self.review_policy();
        let (tx, stored, skipped) = self.logged(batch, true).await?;
        let skipped_ids: std::collections::HashSet<(&str, &str)> = skipped
            .iter()
            .map(|&i| (batch[i].model.as_str(), batch[i].id.as_str()))
            .collect();
        let kept: Vec<NewFeedback> = feedback
            .iter()
            .filter(|f| {
                !f.conversation
                    .as_deref()
                    .is_some_and(|c| skipped_ids.contains(&(f.model.as_str(), c)))
            })
            .cloned()
            .collect();
        let n = feedback_in(&tx, &kept, &policy).await?;
        tx.commit().await?;
        Ok((stored, n, skipped))
    }
}

/// On PostgreSQL, take a lock for the transaction on each conversation
/// `keys` names (model and id, by a hash of them), all in one order, before
/// reading any: writers of the same conversations then wait for each
/// other's commit and see what it added, where they would both add it or
/// lock each other's rows in opposite orders (a deadlock). SQLite's writes
/// already take the database's lock at their start.
async fn lock_conversations<'a>(
    tx: &DatabaseTransaction,
    keys: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<()> {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    if tx.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    // Keyed as `Store::submit` keys its lock; a model name holds no `/`.
    let names: Vec<sea_orm::Value> = keys
        .into_iter()
        .map(|(model, id)| format!("coach-conversation:{model}/{id}").into())
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    let params = (1..=names.len())
        .map(|i| format!("(${i})"))
        .collect::<Vec<_>>()
        .join(",");
    tx.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        format!(
            "SELECT count(pg_advisory_xact_lock(k)) FROM (SELECT DISTINCT hashtextextended(t, 4242) AS k FROM (VALUES {params}) AS v(t) ORDER BY k) AS sorted"
        ),
        names,
    ))
    .await?;
    Ok(())
}

/// Log `batch` inside `tx`: a conversation already logged gets the new
/// messages appended — or, with `skip_existing`, is left alone and its
/// index returned.
async fn log_in(
    tx: &DatabaseTransaction,
    batch: &[NewConversation],
    policy: &crate::config::ReviewSettings,
    skip_existing: bool,
) -> Result<(u64, Vec<usize>)> {
    lock_conversations(tx, batch.iter().map(|c| (c.model.as_str(), c.id.as_str()))).await?;
    let now = Utc::now();
    let mut stored = 0;
    let mut skipped = Vec::new();
    let mut queue = Vec::new();
    for (index, c) in batch.iter().enumerate() {
        let existing = conversations::Entity::find()
            .filter(conversations::Column::ModelName.eq(&c.model))
            .filter(conversations::Column::ExternalId.eq(&c.id))
            .one(tx)
            .await?;
        if skip_existing && existing.is_some() {
            skipped.push(index);
            continue;
        }
        let assign_now = existing
            .as_ref()
            .is_some_and(|row| row.experiment_id.is_none());
        // What the conversation counted before this batch (nothing, new).
        let before = existing.clone();
        let (conversation, mut position) = match existing {
            Some(row) => {
                let last = messages::Entity::find()
                    .filter(messages::Column::ConversationId.eq(row.id))
                    .order_by_desc(messages::Column::Position)
                    .one(tx)
                    .await?;
                (row.id, last.map_or(0, |m| m.position + 1))
            }
            None => {
                let started = c.messages.iter().map(|m| m.at).min().unwrap_or(now);
                let row = conversations::ActiveModel {
                    model_name: Set(c.model.clone()),
                    external_id: Set(c.id.clone()),
                    channel: Set(c.channel.clone()),
                    started_at: Set(started),
                    received_at: Set(now),
                    experiment_id: Set(c.assignment.as_ref().map(|a| a.experiment)),
                    arm: Set(c.assignment.as_ref().map(|a| a.arm.clone())),
                    unit: Set(c.assignment.as_ref().map(|a| a.unit.clone())),
                    user_messages: Set(0),
                    fallbacks: Set(0),
                    rated: Set(0),
                    positive: Set(0),
                    negative: Set(0),
                    corrections: Set(0),
                    escalated: Set(false),
                    outcome: Set(None),
                    ..Default::default()
                }
                .insert(tx)
                .await?;
                (row.id, 0)
            }
        };
        // Appending is bounded as importing is: a conversation read back
        // whole must stay a bounded answer.
        let turns = position as usize + c.messages.len();
        if turns > crate::core::conversation::MAX_TURNS {
            return Err(TooManyTurns {
                index,
                id: crate::core::text::printable(&crate::core::text::clip(&c.id, 64)).into_owned(),
                turns,
            }
            .into());
        }
        let rows: Vec<messages::ActiveModel> = c
            .messages
            .iter()
            .map(|m| {
                let row = messages::ActiveModel {
                    conversation_id: Set(conversation),
                    model_name: Set(c.model.clone()),
                    position: Set(position),
                    role: Set(m.role.to_owned()),
                    text: Set(m.text.clone()),
                    intent: Set(m.intent.clone()),
                    confidence: Set(m.confidence),
                    fallback: Set(m.fallback),
                    model_version: Set(m.model_version),
                    escalation: Set(m.escalation),
                    at: Set(m.at),
                    received_at: Set(now),
                    ranking: Set((!m.ranking.is_empty())
                        .then(|| serde_json::to_string(&m.ranking).unwrap_or_default())),
                    entities: Set((!m.entities.is_empty())
                        .then(|| serde_json::to_string(&m.entities).unwrap_or_default())),
                    ..Default::default()
                };
                position += 1;
                row
            })
            .collect();
        stored += rows.len() as u64;
        let first = position - rows.len() as i32;
        // Chunks keep each statement under SQLite's bound-parameter limit.
        for chunk in rows.chunks(500) {
            messages::Entity::insert_many(chunk.to_vec())
                .exec(tx)
                .await?;
        }
        let worth_review = |m: &NewMessage| {
            m.role == "user"
                && ((policy.fallbacks && m.fallback)
                    || m.confidence.is_some_and(|x| x < policy.low_confidence))
        };
        if c.messages.iter().any(worth_review) {
            let stored_now = messages::Entity::find()
                .filter(messages::Column::ConversationId.eq(conversation))
                .filter(messages::Column::Position.gte(first))
                .filter(messages::Column::Role.eq("user"))
                .all(tx)
                .await?;
            for m in stored_now {
                let fell_back = policy.fallbacks && m.fallback;
                let unsure = m.confidence.is_some_and(|x| x < policy.low_confidence);
                if !(fell_back || unsure) {
                    continue;
                }
                queue.push(super::review::NewItem {
                    model: c.model.clone(),
                    text: m.text.clone(),
                    conversation_id: Some(conversation),
                    message_id: Some(m.id),
                    origin: if fell_back {
                        super::review::Origin::Fallback
                    } else {
                        super::review::Origin::LowConfidence
                    },
                    reason: match (fell_back, m.confidence) {
                        (true, _) => "the bot fell back".into(),
                        (false, Some(x)) => format!(
                            "predicted `{}` with confidence {x:.2}",
                            m.intent.as_deref().unwrap_or("?")
                        ),
                        (false, None) => "the model was unsure".into(),
                    },
                    priority: crate::review::priority(
                        if fell_back { None } else { m.confidence },
                        1,
                    ),
                    suggested_intent: (!fell_back).then(|| m.intent.clone()).flatten(),
                    recommendation_id: None,
                    reviews: policy.reviews,
                });
            }
        }
        count_messages(tx, conversation, c, assign_now).await?;
        account(tx, conversation, before.as_ref()).await?;
    }
    super::review::queue_in(tx, &queue).await?;
    Ok((stored, skipped))
}

/// Store `batch` of feedback inside `tx`: all of it, or (when an item
/// names a conversation or message that was never logged) an error.
async fn feedback_in(
    tx: &DatabaseTransaction,
    batch: &[NewFeedback],
    policy: &crate::config::ReviewSettings,
) -> Result<u64> {
    use sea_orm::PaginatorTrait;
    // Writers of feedback on one conversation count its feedback one after
    // the other, so that together they cannot pass the bound.
    lock_conversations(
        tx,
        batch
            .iter()
            .filter_map(|f| Some((f.model.as_str(), f.conversation.as_deref()?))),
    )
    .await?;
    let now = Utc::now();
    let mut rows = Vec::with_capacity(batch.len());
    let mut queue = Vec::new();
    // Each conversation's feedback so far, stored and in this batch.
    let mut held: HashMap<i64, u64> = HashMap::new();
    for (index, f) in batch.iter().enumerate() {
        let unknown = |what: String| UnknownReference { index, what };
        let mut conversation_id = None;
        let mut message_id = None;
        if let Some(external) = &f.conversation {
            let c = conversations::Entity::find()
                .filter(conversations::Column::ModelName.eq(&f.model))
                .filter(conversations::Column::ExternalId.eq(external))
                .one(tx)
                .await?
                .ok_or_else(|| {
                    unknown(format!(
                        "no conversation `{external}` has been logged for model `{}`",
                        f.model
                    ))
                })?;
            conversation_id = Some(c.id);
            let items = match held.entry(c.id) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => e.insert(
                    feedback::Entity::find()
                        .filter(feedback::Column::ConversationId.eq(c.id))
                        .count(tx)
                        .await?,
                ),
            };
            *items += 1;
            if *items > crate::core::conversation::MAX_FEEDBACK as u64 {
                return Err(TooMuchFeedback {
                    index,
                    id: crate::core::text::printable(&crate::core::text::clip(external, 64))
                        .into_owned(),
                }
                .into());
            }
            if let Some(position) = f.message {
                let m = messages::Entity::find()
                    .filter(messages::Column::ConversationId.eq(c.id))
                    .filter(messages::Column::Position.eq(position))
                    .one(tx)
                    .await?
                    .ok_or_else(|| {
                        unknown(format!(
                            "conversation `{external}` has no message {position}"
                        ))
                    })?;
                message_id = Some(m.id);
                let corrected = f.correction.is_some();
                let rated_down = f.rating.is_some_and(|r| r < 0);
                if policy.feedback && m.role == "user" && (corrected || rated_down) {
                    queue.push(super::review::NewItem {
                        model: f.model.clone(),
                        text: m.text.clone(),
                        conversation_id: Some(c.id),
                        message_id: Some(m.id),
                        origin: if corrected {
                            super::review::Origin::Correction
                        } else {
                            super::review::Origin::NegativeRating
                        },
                        reason: match &f.correction {
                            Some(to) => format!(
                                "a user corrected `{}` to `{to}`",
                                m.intent.as_deref().unwrap_or("?")
                            ),
                            None => format!(
                                "a user rated the answer to `{}` down",
                                m.intent.as_deref().unwrap_or("?")
                            ),
                        },
                        // A correction is as unsure as a prediction gets.
                        priority: crate::review::priority(None, 1),
                        suggested_intent: f.correction.clone().or_else(|| m.intent.clone()),
                        recommendation_id: None,
                        reviews: policy.reviews,
                    });
                }
            }
        }
        rows.push(feedback::ActiveModel {
            model_name: Set(f.model.clone()),
            conversation_id: Set(conversation_id),
            message_id: Set(message_id),
            rating: Set(f.rating),
            correction: Set(f.correction.clone()),
            comment: Set(f.comment.clone()),
            escalation: Set(f.escalation),
            at: Set(f.at),
            received_at: Set(now),
            ..Default::default()
        });
    }
    let n = rows.len() as u64;
    for chunk in rows.chunks(500) {
        feedback::Entity::insert_many(chunk.to_vec())
            .exec(tx)
            .await?;
    }
    for (row, f) in rows.iter().zip(batch) {
        if let sea_orm::ActiveValue::Set(Some(id)) = row.conversation_id {
            let before = conversations::Entity::find_by_id(id).one(tx).await?;
            count_feedback(tx, id, f).await?;
            account(tx, id, before.as_ref()).await?;
        }
    }
    super::review::queue_in(tx, &queue).await?;
    if policy.trust_corrections {
        // Corrections are taken as labels: their items are approved at
        // once, the user's correction the deciding label.
        for item in queue
            .iter()
            .filter(|i| i.origin == super::review::Origin::Correction)
        {
            super::review::approve_correction(tx, item).await?;
        }
    }
    Ok(n)
}

impl Store {
    /// Traffic of `model` received at or after `since` (all of it when
    /// `None`). Counted by when Coach received it, so logs sent late still
    /// count once.
    pub async fn traffic_since(
        &self,
        model: &str,
        since: Option<DateTime<Utc>>,
    ) -> Result<Traffic> {
        let db = &self.db;
        let conversations = conversations::Entity::find()
            .filter(conversations::Column::ModelName.eq(model))
            .apply_if(since, |q, t| {
                q.filter(conversations::Column::ReceivedAt.gte(t))
            })
            .count(db)
            .await?;
        let msgs = || {
            messages::Entity::find()
                .filter(messages::Column::ModelName.eq(model))
                .apply_if(since, |q, t| q.filter(messages::Column::ReceivedAt.gte(t)))
        };
        let messages = msgs().count(db).await?;
        let user_messages = msgs()
            .filter(messages::Column::Role.eq("user"))
            .count(db)
            .await?;
        let fallbacks = msgs()
            .filter(messages::Column::Role.eq("user"))
            .filter(messages::Column::Fallback.eq(true))
            .count(db)
            .await?;
        let fb = || {
            feedback::Entity::find()
                .filter(feedback::Column::ModelName.eq(model))
                .apply_if(since, |q, t| q.filter(feedback::Column::ReceivedAt.gte(t)))
        };
        let feedback = fb().count(db).await?;
        let positive = fb()
            .filter(feedback::Column::Rating.gt(0))
            .count(db)
            .await?;
        let negative = fb()
            .filter(feedback::Column::Rating.lt(0))
            .count(db)
            .await?;
        let corrections = fb()
            .filter(feedback::Column::Correction.is_not_null())
            .count(db)
            .await?;
        Ok(Traffic {
            conversations,
            messages,
            user_messages,
            fallbacks,
            fallback_rate: if user_messages == 0 {
                0.0
            } else {
                fallbacks as f64 / user_messages as f64
            },
            feedback,
            positive,
            negative,
            corrections,
        })
    }
}
