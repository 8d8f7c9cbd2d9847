//! Conversations read back: a filtered, paged list of summaries, and one
//! conversation whole (every turn with its prediction, its entities and
//! the feedback on it).

use super::Store;
use super::entities::{conversations, feedback, messages};
use crate::core::conversation::{
    Conversation, Feedback, MAX_FEEDBACK, Outcome, Ranked, Role, Turn,
};
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Func, LikeExpr, Query};
use sea_orm::{
    ColumnTrait, Condition, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use std::collections::BTreeMap;

/// Which conversations to list. Every field narrows the list; none set
/// lists them all, newest first.
#[derive(Debug, Clone, Default)]
pub struct ConversationFilter {
    pub model: Option<String>,
    /// The platform's id, exactly.
    pub external: Option<String>,
    /// A turn was answered by this model version.
    pub version: Option<i32>,
    pub channel: Option<String>,
    /// Started at or after.
    pub since: Option<DateTime<Utc>>,
    /// Started before.
    pub until: Option<DateTime<Utc>>,
    /// The bot fell back at least once (`true`) or never (`false`).
    pub fallback: Option<bool>,
    /// A user turn's confidence is at least / at most this.
    pub min_confidence: Option<f64>,
    pub max_confidence: Option<f64>,
    pub rating: Option<RatingFilter>,
    /// A user turn was predicted as this intent, or corrected to it.
    pub intent: Option<String>,
    /// `None` inside: the bot reported no outcome.
    pub outcome: Option<Option<Outcome>>,
    /// A turn's text contains this (case-insensitive for ASCII letters).
    pub text: Option<String>,
    /// Only conversations with a smaller id (the page before).
    pub before: Option<i64>,
    pub limit: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RatingFilter {
    Positive,
    Negative,
    Rated,
    Unrated,
}

impl RatingFilter {
    pub fn parse(s: &str) -> Option<RatingFilter> {
        match s {
            "positive" => Some(RatingFilter::Positive),
            "negative" => Some(RatingFilter::Negative),
            "rated" => Some(RatingFilter::Rated),
            "unrated" => Some(RatingFilter::Unrated),
            _ => None,
        }
    }
}

/// One conversation in a list.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConversationSummary {
    /// Coach's id (what `GET /api/v1/conversations/{id}` takes).
    pub id: i64,
    /// The platform's id.
    pub external_id: String,
    pub model: String,
    pub channel: Option<String>,
    pub started_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub turns: u64,
    pub user_turns: i32,
    pub fallbacks: i32,
    /// The lowest confidence of a user turn.
    pub lowest_confidence: Option<f64>,
    pub positive: i32,
    pub negative: i32,
    pub corrections: i32,
    pub escalated: bool,
    pub outcome: Option<String>,
    /// The first user turn, clipped.
    pub first_user_text: Option<String>,
}

/// A page of conversations and where the next starts.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConversationPage {
    pub conversations: Vec<ConversationSummary>,
    /// Pass as `before` for the next (older) page; `None` at the end.
    pub next: Option<i64>,
}

/// One conversation whole, as the API shows it: Coach's id and the
/// platform's, when it arrived, and the experiment arm that answered.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StoredConversation {
    pub id: i64,
    pub external_id: String,
    pub model: String,
    pub channel: Option<String>,
    pub outcome: Option<Outcome>,
    pub started_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub experiment: Option<i64>,
    pub arm: Option<String>,
    pub turns: Vec<Turn>,
    /// Feedback on the conversation as a whole.
    pub feedback: Vec<Feedback>,
}

impl StoredConversation {
    /// The conversation as the platform knows it (Coach JSONL's shape).
    pub fn into_conversation(self) -> Conversation {
        Conversation {
            id: self.external_id,
            model: Some(self.model),
            channel: self.channel,
            outcome: self.outcome,
            turns: self.turns,
            feedback: self.feedback,
        }
    }
}

/// A stored conversation of its row, its turns and the feedback on the
/// whole.
fn stored(
    row: conversations::Model,
    turns: Vec<Turn>,
    feedback: Vec<Feedback>,
) -> StoredConversation {
    StoredConversation {
        id: row.id,
        turns,
        feedback,
        external_id: row.external_id,
        model: row.model_name,
        channel: row.channel,
        outcome: row.outcome.as_deref().and_then(Outcome::parse),
        started_at: row.started_at,
        received_at: row.received_at,
        experiment: row.experiment_id,
        arm: row.arm,
    }
}

/// Most turns one read of a conversation returns
/// ([`Store::conversation_turns`]).
pub const MAX_TURNS_READ: u64 = 1000;

/// Most conversation ids one bulk read walks.
pub const MAX_IDS: u64 = 1_000_000;

/// About the most bytes of stored text one read of whole conversations
/// holds: a conversation may hold 10,000 turns of 64 KiB, so a count of
/// conversations alone does not bound a read.
pub const WHOLE_READ_BYTES: u64 = 64 * 1024 * 1024;

/// What a turn costs a read beside the bytes of its text, intent, ranking
/// and entities (its other fields, and the memory they take once read),
/// for [`Store::conversation_bytes`].
const TURN_BYTES: u64 = 256;

/// What a feedback item costs a read beside its correction and comment.
const FEEDBACK_BYTES: u64 = 128;

/// Of `ids` (newest first), those to read whole into memory together: none
/// of more than `one` bytes (a longer one is passed over, so that it cannot
/// crowd out the rest), and together at most `total` (the oldest past it
/// are left out).
fn within(ids: &[i64], sizes: &BTreeMap<i64, u64>, one: u64, total: u64) -> Vec<i64> {
    let mut held = 0u64;
    let mut kept = Vec::new();
    for &id in ids {
        let size = sizes.get(&id).copied().unwrap_or(0);
        if size > one {
            continue;
        }
        if held.saturating_add(size) > total {
            break;
        }
        held += size;
        kept.push(id);
    }
    kept
}

/// `ids`, in order, cut into runs of at most `most` conversations whose
/// `sizes` add up to at most `bytes`; a conversation larger than `bytes`
/// is a run of its own. Ids without a size count as empty.
fn runs(ids: &[i64], sizes: &BTreeMap<i64, u64>, most: usize, bytes: u64) -> Vec<Vec<i64>> {
    let mut out = Vec::new();
    let (mut run, mut held) = (Vec::new(), 0u64);
    for &id in ids {
        let size = sizes.get(&id).copied().unwrap_or(0);
        if !run.is_empty() && (run.len() >= most.max(1) || held.saturating_add(size) > bytes) {
            out.push(std::mem::take(&mut run));
            held = 0;
        }
        run.push(id);
        held = held.saturating_add(size);
    }
    if !run.is_empty() {
        out.push(run);
    }
    out
}

/// How much of the first user turn a summary shows, in characters.
const PREVIEW: usize = 160;

/// Messages whose lower-cased text contains `needle`, by scanning. Both
/// sides are lower-cased; SQLite's `lower()` folds ASCII letters only, so
/// there the needle is also tried with only its ASCII letters folded:
/// text whose other letters are as typed (`ÉTÉ` for `ÉTÉ`) is found as
/// well as all-lower-case text.
fn text_scan(needle: &str, backend: DbBackend) -> Condition {
    let like = |pattern: &str| {
        Expr::expr(Func::lower(Expr::col(messages::Column::Text))).like(like_pattern(pattern))
    };
    let (lower, ascii) = (needle.to_lowercase(), needle.to_ascii_lowercase());
    let mut c = Condition::any().add(like(&lower));
    if backend == DbBackend::Sqlite && ascii != lower {
        c = c.add(like(&ascii));
    }
    c
}

/// `%needle%` with LIKE's own characters escaped.
fn like_pattern(needle: &str) -> LikeExpr {
    let mut p = String::from("%");
    for c in needle.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    LikeExpr::new(p).escape('\\')
}

/// `needle` as one FTS5 phrase: the text index's tokenizer makes it
/// match wherever it occurs inside a message, whatever the case.
fn fts_phrase(needle: &str) -> String {
    format!("\"{}\"", needle.replace('"', "\"\""))
}

fn user_turns() -> sea_orm::sea_query::SelectStatement {
    Query::select()
        .column(messages::Column::ConversationId)
        .from(messages::Entity)
        .and_where(messages::Column::Role.eq("user"))
        .to_owned()
}

impl ConversationFilter {
    fn condition(&self, backend: DbBackend) -> Condition {
        use conversations::Column as C;
        let mut c = Condition::all();
        if let Some(m) = &self.model {
            c = c.add(C::ModelName.eq(m));
        }
        if let Some(e) = &self.external {
            c = c.add(C::ExternalId.eq(e));
        }
        if let Some(ch) = &self.channel {
            c = c.add(C::Channel.eq(ch));
        }
        if let Some(t) = self.since {
            c = c.add(C::StartedAt.gte(t));
        }
        if let Some(t) = self.until {
            c = c.add(C::StartedAt.lt(t));
        }
        match self.fallback {
            Some(true) => c = c.add(C::Fallbacks.gt(0)),
            Some(false) => c = c.add(C::Fallbacks.eq(0)),
            None => {}
        }
        match self.rating {
            Some(RatingFilter::Positive) => c = c.add(C::Positive.gt(0)),
            Some(RatingFilter::Negative) => c = c.add(C::Negative.gt(0)),
            Some(RatingFilter::Rated) => c = c.add(C::Rated.gt(0)),
            Some(RatingFilter::Unrated) => c = c.add(C::Rated.eq(0)),
            None => {}
        }
        match self.outcome {
            Some(Some(o)) => c = c.add(C::Outcome.eq(o.as_str())),
            Some(None) => c = c.add(C::Outcome.is_null()),
            None => {}
        }
        if let Some(before) = self.before {
            c = c.add(C::Id.lt(before));
        }
        if let Some(text) = &self.text {
            let mut q = Query::select()
                .column(messages::Column::ConversationId)
                .from(messages::Entity)
                .to_owned();
            // First of the turn filters, so that SQLite starts from the
            // few conversations it finds. Three characters or more make a
            // trigram SQLite's text index can look up; shorter ones, and
            // other stores, match by LIKE (PostgreSQL's trigram index
            // serves that where it exists).
            let scan = text_scan(text, backend);
            if indexed_search(backend, self) {
                // What the index holds, and the messages written since it
                // was last filled by scanning.
                q.cond_where(
                    Condition::any()
                        .add(Expr::cust_with_values(
                            "\"messages\".\"id\" IN \
                             (SELECT rowid FROM messages_text WHERE messages_text MATCH ?)",
                            [fts_phrase(text)],
                        ))
                        .add(
                            Condition::all()
                                .add(Expr::cust(
                                    "\"messages\".\"id\" > (SELECT upto FROM messages_text_upto)",
                                ))
                                .add(scan),
                        ),
                );
            } else {
                q.cond_where(scan);
            }
            c = c.add(Expr::col(C::Id).in_subquery(q));
        }
        if let Some(v) = self.version {
            let q = Query::select()
                .column(messages::Column::ConversationId)
                .from(messages::Entity)
                .and_where(messages::Column::ModelVersion.eq(v))
                .to_owned();
            c = c.add(Expr::col(C::Id).in_subquery(q));
        }
        if self.min_confidence.is_some() || self.max_confidence.is_some() {
            let mut q = user_turns();
            if let Some(min) = self.min_confidence {
                q.and_where(messages::Column::Confidence.gte(min));
            }
            if let Some(max) = self.max_confidence {
                q.and_where(messages::Column::Confidence.lte(max));
            }
            c = c.add(Expr::col(C::Id).in_subquery(q));
        }
        if let Some(intent) = &self.intent {
            let predicted = user_turns()
                .and_where(messages::Column::Intent.eq(intent))
                .to_owned();
            let corrected = Query::select()
                .column(feedback::Column::ConversationId)
                .from(feedback::Entity)
                .and_where(feedback::Column::Correction.eq(intent))
                .and_where(feedback::Column::ConversationId.is_not_null())
                .to_owned();
            c = c.add(
                Condition::any()
                    .add(Expr::col(C::Id).in_subquery(predicted))
                    .add(Expr::col(C::Id).in_subquery(corrected)),
            );
        }
        c
    }
}

fn turn_of(m: &messages::Model) -> Turn {
    let mut t = Turn::new(Role::parse(&m.role).unwrap_or(Role::User), m.text.clone());
    t.intent = m.intent.clone();
    t.confidence = m.confidence;
    t.ranking = m
        .ranking
        .as_deref()
        .and_then(|r| serde_json::from_str::<Vec<Ranked>>(r).ok())
        .unwrap_or_default();
    t.entities = m
        .entities
        .as_deref()
        .and_then(|e| serde_json::from_str(e).ok())
        .unwrap_or_default();
    t.fallback = m.fallback;
    t.escalation = m.escalation;
    t.model_version = m.model_version;
    t.at = Some(m.at);
    t
}

fn feedback_of(f: &feedback::Model) -> Feedback {
    Feedback {
        rating: f.rating,
        correction: f.correction.clone(),
        comment: f.comment.clone(),
        escalation: f.escalation,
        at: f.at,
    }
}

/// Messages [`Store::catch_up_text_index`] adds to the text index in one
/// write (about 0.1 s).
pub const TEXT_INDEX_SLICE: i64 = 20_000;

/// Whether SQLite's text index serves `filter`'s text search.
fn indexed_search(backend: DbBackend, filter: &ConversationFilter) -> bool {
    backend == DbBackend::Sqlite && filter.text.as_ref().is_some_and(|t| t.chars().count() >= 3)
}

impl Store {
    /// Add up to [`TEXT_INDEX_SLICE`] of the messages written since the
    /// last call to SQLite's text index, in one short write; whether more
    /// are left (always `false` on other stores). The daemon calls it at
    /// start and every minute, so logging a turn pays nothing for the
    /// index, and a long backlog never holds the store's writers for
    /// long. Searches only read: what the index does not hold yet they
    /// match by scanning. Messages never change once written, so what
    /// the index holds stays right.
    pub async fn catch_up_text_index(&self) -> Result<bool> {
        use sea_orm::{ConnectionTrait, Statement};
        async fn behind<C: ConnectionTrait>(db: &C) -> Result<Option<(i64, i64)>> {
            let row = db
                .query_one_raw(Statement::from_string(
                    DbBackend::Sqlite,
                    "SELECT (SELECT upto FROM messages_text_upto), \
                     (SELECT COALESCE(MAX(id), 0) FROM messages)",
                ))
                .await?
                .context("the text index has no progress row")?;
            let (upto, last): (i64, i64) = (row.try_get_by_index(0)?, row.try_get_by_index(1)?);
            Ok((last > upto).then_some((upto, last)))
        }
        if self.db.get_database_backend() != DbBackend::Sqlite || behind(&self.db).await?.is_none()
        {
            return Ok(false);
        }
        let tx = self.begin_write().await?;
        let mut more = false;
        if let Some((upto, last)) = behind(&tx).await? {
            let to = std::cmp::min(last, upto + TEXT_INDEX_SLICE);
            tx.execute_unprepared(&format!(
                "INSERT INTO messages_text (rowid, text) \
                 SELECT id, text FROM messages WHERE id > {upto} AND id <= {to} ORDER BY id"
            ))
            .await?;
            tx.execute_unprepared(&format!("UPDATE messages_text_upto SET upto = {to}"))
                .await?;
            more = to < last;
        }
        tx.commit().await?;
        Ok(more)
    }

    /// A page of conversations matching `filter`, newest first.
    pub async fn list_conversations(
        &self,
        filter: &ConversationFilter,
    ) -> Result<ConversationPage> {
        let limit = filter.limit.clamp(1, 1000);
        let rows = conversations::Entity::find()
            .filter(filter.condition(self.db.get_database_backend()))
            .order_by_desc(conversations::Column::Id)
            .limit(limit + 1)
            .all(&self.db)
            .await?;
        let more = rows.len() as u64 > limit;
        let rows: Vec<_> = rows.into_iter().take(limit as usize).collect();
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        // Per conversation: how many turns, the first user turn, the
        // lowest user confidence — one grouped query for the page.
        let mut stats: BTreeMap<i64, (u64, Option<i32>, Option<f64>)> = BTreeMap::new();
        if !ids.is_empty() {
            use messages::Column as M;
            let grouped: Vec<(i64, i64, Option<i32>, Option<f64>)> = messages::Entity::find()
                .select_only()
                .column(M::ConversationId)
                .expr(Expr::col(M::Id).count())
                .expr(
                    Expr::case(M::Role.eq("user"), Expr::col(M::Position))
                        .finally(Expr::null())
                        .min(),
                )
                .expr(
                    Expr::case(M::Role.eq("user"), Expr::col(M::Confidence))
                        .finally(Expr::null())
                        .min(),
                )
                .filter(M::ConversationId.is_in(ids.clone()))
                .group_by(M::ConversationId)
                .into_tuple()
                .all(&self.db)
                .await?;
            for (id, n, first, low) in grouped {
                stats.insert(id, (n as u64, first, low));
            }
        }
        let mut previews: BTreeMap<i64, String> = BTreeMap::new();
        let firsts: Vec<(i64, i32)> = stats
            .iter()
            .filter_map(|(id, (_, first, _))| first.map(|p| (*id, p)))
            .collect();
        if !firsts.is_empty() {
            // One flat query (an OR per conversation nests past SQLite's
            // expression depth and the daemon's stack on a full page):
            // the page's conversations at the few first positions there
            // are, kept where the position is that conversation's first.
            let wanted: BTreeMap<i64, i32> = firsts.iter().copied().collect();
            let positions: std::collections::BTreeSet<i32> =
                firsts.iter().map(|(_, p)| *p).collect();
            for m in messages::Entity::find()
                .filter(messages::Column::ConversationId.is_in(wanted.keys().copied()))
                .filter(messages::Column::Position.is_in(positions))
                .all(&self.db)
                .await?
            {
                if wanted.get(&m.conversation_id) == Some(&m.position) {
                    let text: String = m.text.chars().take(PREVIEW).collect();
                    previews.insert(m.conversation_id, text);
                }
            }
        }
        let next = if more { ids.last().copied() } else { None };
        let conversations = rows
            .into_iter()
            .map(|r| {
                let (turns, _, low) = stats.get(&r.id).copied().unwrap_or((0, None, None));
                ConversationSummary {
                    first_user_text: previews.remove(&r.id),
                    id: r.id,
                    external_id: r.external_id,
                    model: r.model_name,
                    channel: r.channel,
                    started_at: r.started_at,
                    received_at: r.received_at,
                    turns,
                    user_turns: r.user_messages,
                    fallbacks: r.fallbacks,
                    lowest_confidence: low,
                    positive: r.positive,
                    negative: r.negative,
                    corrections: r.corrections,
                    escalated: r.escalated,
                    outcome: r.outcome,
                }
            })
            .collect();
        Ok(ConversationPage {
            conversations,
            next,
        })
    }

    /// The ids of the conversations matching `filter` (its `limit` up to
    /// [`MAX_IDS`]), newest first: what a bulk reader walks.
    pub async fn conversation_ids(&self, filter: &ConversationFilter) -> Result<Vec<i64>> {
        Ok(conversations::Entity::find()
            .select_only()
            .column(conversations::Column::Id)
            .filter(filter.condition(self.db.get_database_backend()))
            .order_by_desc(conversations::Column::Id)
            .limit(filter.limit.clamp(1, MAX_IDS))
            .into_tuple()
            .all(&self.db)
            .await?)
    }

    /// Whether `model` has a conversation with the platform's id `external`.
    pub async fn conversation_exists(&self, model: &str, external: &str) -> Result<bool> {
        use sea_orm::PaginatorTrait;
        Ok(conversations::Entity::find()
            .filter(conversations::Column::ModelName.eq(model))
            .filter(conversations::Column::ExternalId.eq(external))
            .count(&self.db)
            .await?
            > 0)
    }

    /// Conversation `id`, if there is one, with at most `limit` of its turns
    /// (up to [`MAX_TURNS_READ`]) from turn `from` on, the feedback on those
    /// turns and on the whole (each the first [`MAX_FEEDBACK`], as many as
    /// a conversation may hold); and how many turns it has in all. A
    /// conversation may hold 10,000 turns of 64 KiB: one read never holds
    /// them all.
    pub async fn conversation_turns(
        &self,
        id: i64,
        from: u64,
        limit: u64,
    ) -> Result<Option<(StoredConversation, u64)>> {
        use sea_orm::PaginatorTrait;
        let Some(row) = conversations::Entity::find_by_id(id).one(&self.db).await? else {
            return Ok(None);
        };
        let of_it = || messages::Entity::find().filter(messages::Column::ConversationId.eq(id));
        let total = of_it().count(&self.db).await?;
        let messages = of_it()
            .order_by_asc(messages::Column::Position)
            .offset(from)
            .limit(limit.clamp(1, MAX_TURNS_READ))
            .all(&self.db)
            .await?;
        let at: BTreeMap<i64, usize> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| (m.id, i))
            .collect();
        let mut turns: Vec<Turn> = messages.iter().map(turn_of).collect();
        let on_turns = if at.is_empty() {
            Vec::new()
        } else {
            feedback::Entity::find()
                .filter(feedback::Column::MessageId.is_in(at.keys().copied()))
                .order_by_asc(feedback::Column::Id)
                .limit(MAX_FEEDBACK as u64)
                .all(&self.db)
                .await?
        };
        for f in &on_turns {
            if let Some(&i) = f.message_id.and_then(|m| at.get(&m)) {
                turns[i].feedback.push(feedback_of(f));
            }
        }
        let whole = feedback::Entity::find()
            .filter(feedback::Column::ConversationId.eq(id))
            .filter(feedback::Column::MessageId.is_null())
            .order_by_asc(feedback::Column::Id)
            .limit(MAX_FEEDBACK as u64)
            .all(&self.db)
            .await?;
        let whole = whole.iter().map(feedback_of).collect();
        Ok(Some((stored(row, turns, whole), total)))
    }

    /// The conversations `ids` whole, in the order given (ids that name
    /// none are left out): three queries per 500, not three per
    /// conversation.
    pub async fn conversations_whole(&self, ids: &[i64]) -> Result<Vec<StoredConversation>> {
        let mut found: BTreeMap<i64, StoredConversation> = BTreeMap::new();
        for chunk in ids.chunks(500) {
            let rows = conversations::Entity::find()
                .filter(conversations::Column::Id.is_in(chunk.to_vec()))
                .all(&self.db)
                .await?;
            let messages = messages::Entity::find()
                .filter(messages::Column::ConversationId.is_in(chunk.to_vec()))
                .order_by_asc(messages::Column::ConversationId)
                .order_by_asc(messages::Column::Position)
                .all(&self.db)
                .await?;
            let feedback = feedback::Entity::find()
                .filter(feedback::Column::ConversationId.is_in(chunk.to_vec()))
                .order_by_asc(feedback::Column::Id)
                .all(&self.db)
                .await?;
            let mut turns: BTreeMap<i64, Vec<Turn>> = BTreeMap::new();
            // Where each message sits: its conversation and turn index.
            let mut at: BTreeMap<i64, (i64, usize)> = BTreeMap::new();
            for m in &messages {
                let list = turns.entry(m.conversation_id).or_default();
                at.insert(m.id, (m.conversation_id, list.len()));
                list.push(turn_of(m));
            }
            let mut whole: BTreeMap<i64, Vec<Feedback>> = BTreeMap::new();
            for f in &feedback {
                match f.message_id.and_then(|m| at.get(&m)) {
                    Some(&(c, i)) => {
                        if let Some(t) = turns.get_mut(&c).and_then(|t| t.get_mut(i)) {
                            t.feedback.push(feedback_of(f));
                        }
                    }
                    None => {
                        if let Some(c) = f.conversation_id {
                            whole.entry(c).or_default().push(feedback_of(f));
                        }
                    }
                }
            }
            for row in rows {
                let id = row.id;
                let (t, f) = (
                    turns.remove(&id).unwrap_or_default(),
                    whole.remove(&id).unwrap_or_default(),
                );
                found.insert(id, stored(row, t, f));
            }
        }
        Ok(ids.iter().filter_map(|id| found.remove(id)).collect())
    }

    /// The stored size of each of conversations `ids` that has turns: the
    /// bytes of its turns' text, intents, rankings and entities and of its
    /// feedback's corrections and comments, and [`TURN_BYTES`] a turn and
    /// [`FEEDBACK_BYTES`] a feedback item for the rest. Two grouped queries
    /// per 500 conversations.
    pub async fn conversation_bytes(&self, ids: &[i64]) -> Result<BTreeMap<i64, u64>> {
        let backend = self.db.get_database_backend();
        // The sum of the columns' lengths in bytes (NULL: none).
        let bytes = |cols: &[&str]| {
            let each: Vec<String> = cols
                .iter()
                .map(|c| match backend {
                    sea_orm::DbBackend::Postgres => format!("COALESCE(OCTET_LENGTH(\"{c}\"), 0)"),
                    _ => format!("COALESCE(LENGTH(CAST(\"{c}\" AS BLOB)), 0)"),
                })
                .collect();
            Expr::cust(format!("SUM({})", each.join(" + ")))
        };
        let as_u64 = |n: Option<i64>| u64::try_from(n.unwrap_or(0)).unwrap_or(0);
        let mut sizes = BTreeMap::new();
        for chunk in ids.chunks(500) {
            use messages::Column as M;
            let turns: Vec<(i64, i64, Option<i64>)> = messages::Entity::find()
                .select_only()
                .column(M::ConversationId)
                .expr(Expr::col(M::Id).count())
                .expr(bytes(&["text", "intent", "ranking", "entities"]))
                .filter(M::ConversationId.is_in(chunk.to_vec()))
                .group_by(M::ConversationId)
                .into_tuple()
                .all(&self.db)
                .await?;
            for (id, n, held) in turns {
                let size = (n as u64).saturating_mul(TURN_BYTES) + as_u64(held);
                sizes.insert(id, size);
            }
            use feedback::Column as F;
            let feedback: Vec<(Option<i64>, i64, Option<i64>)> = feedback::Entity::find()
                .select_only()
                .column(F::ConversationId)
                .expr(Expr::col(F::Id).count())
                .expr(bytes(&["correction", "comment"]))
                .filter(F::ConversationId.is_in(chunk.to_vec()))
                .group_by(F::ConversationId)
                .into_tuple()
                .all(&self.db)
                .await?;
            for (id, n, held) in feedback {
                if let Some(id) = id {
                    *sizes.entry(id).or_default() +=
                        (n as u64).saturating_mul(FEEDBACK_BYTES) + as_u64(held);
                }
            }
        }
        Ok(sizes)
    }

    /// Conversations `ids` (newest first) to read whole with
    /// [`Store::conversations_whole`], in runs of at most `most`
    /// conversations and about [`WHOLE_READ_BYTES`] (see [`runs`]): none of
    /// more than `one` bytes and at most `total` in all (see [`within`]).
    /// Also how many of `ids` are left out.
    pub async fn whole_reads(
        &self,
        ids: &[i64],
        most: usize,
        one: u64,
        total: u64,
    ) -> Result<(Vec<Vec<i64>>, usize)> {
        let sizes = self.conversation_bytes(ids).await?;
        let kept = within(ids, &sizes, one, total);
        let left_out = ids.len() - kept.len();
        Ok((runs(&kept, &sizes, most, WHOLE_READ_BYTES), left_out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_keep_the_order_and_are_cut_by_count_and_by_bytes() {
        let sizes: BTreeMap<i64, u64> = [(1, 40), (2, 40), (3, 500), (4, 10), (5, 10)].into();
        assert_eq!(
            runs(&[1, 2, 3, 4, 5], &sizes, 10, 100),
            [vec![1, 2], vec![3], vec![4, 5]]
        );
        assert_eq!(runs(&[1, 2, 4, 5], &sizes, 2, 1000), [[1, 2], [4, 5]]);
        // Unknown ids weigh nothing; nothing gives no runs.
        assert_eq!(runs(&[9, 8, 7], &sizes, 10, 0), [[9, 8, 7]]);
        assert!(runs(&[], &sizes, 10, 100).is_empty());
        assert_eq!(runs(&[5, 4], &sizes, 0, 100), [[5], [4]]);
    }

    #[test]
    fn a_conversation_too_long_to_hold_is_passed_over_and_the_oldest_left_out() {
        let sizes: BTreeMap<i64, u64> = [(5, 40), (4, 900), (3, 40), (2, 40), (1, 10)].into();
        let ids = [5, 4, 3, 2, 1];
        assert_eq!(within(&ids, &sizes, 100, 100), [5, 3]);
        assert_eq!(within(&ids, &sizes, 100, 1000), [5, 3, 2, 1]);
        assert_eq!(within(&ids, &sizes, 1000, 1000), [5, 4, 3]);
        assert!(within(&ids, &sizes, 100, 10).is_empty());
    }
}
