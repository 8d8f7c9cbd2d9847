//! The review queue: items queued once per message (or text), claimed by
//! a reviewer for a while, labelled independently by as many reviewers as
//! the item needs, decided when they agree — or disputed, until an
//! adjudicator who did not label it decides. Approved items are the
//! `reviewed` source's examples.

use super::Store;
use super::entities::{review_claims, review_items, review_labels};
use crate::core::example::EntitySpan;
use anyhow::Result;
use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::{ExprTrait, OnConflict};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    Set,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How long a claimed item is held for its reviewer.
pub const CLAIM: Duration = Duration::minutes(15);
/// How many of the latest independent labels reviewer agreement is
/// measured over: it stays a look at how reviewers agree now, and a page
/// that shows it reads a bounded number of rows however long the queue
/// has run.
pub const AGREEMENT_LABELS: usize = 10_000;

/// The label a reviewer gives a message that belongs to no intent.
pub const OUT_OF_SCOPE: &str = "oos";

/// Why an item is in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// A user (or the platform) said the intent was wrong.
    Correction,
    /// The bot fell back.
    Fallback,
    /// The model was unsure.
    LowConfidence,
    /// A user rated the answer down.
    NegativeRating,
    /// A recommendation was turned into review items.
    Recommendation,
    /// Someone queued it by hand.
    Manual,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Correction => "correction",
            Origin::Fallback => "fallback",
            Origin::LowConfidence => "low_confidence",
            Origin::NegativeRating => "negative_rating",
            Origin::Recommendation => "recommendation",
            Origin::Manual => "manual",
        }
    }

    pub fn parse(s: &str) -> Option<Origin> {
        [
            Origin::Correction,
            Origin::Fallback,
            Origin::LowConfidence,
            Origin::NegativeRating,
            Origin::Recommendation,
            Origin::Manual,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
    }
}

/// Where an item stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemState {
    /// Waiting for labels.
    Open,
    /// Its reviewers disagreed: waiting for an adjudicator.
    Disputed,
    /// Decided: a training example with the decided intent.
    Approved,
    /// Decided: not a training example.
    Rejected,
}

impl ItemState {
    pub fn as_str(self) -> &'static str {
        match self {
            ItemState::Open => "open",
            ItemState::Disputed => "disputed",
            ItemState::Approved => "approved",
            ItemState::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<ItemState> {
        [
            ItemState::Open,
            ItemState::Disputed,
            ItemState::Approved,
            ItemState::Rejected,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
    }
}

/// A message to queue.
#[derive(Debug, Clone)]
pub struct NewItem {
    pub model: String,
    pub text: String,
    pub conversation_id: Option<i64>,
    pub message_id: Option<i64>,
    pub origin: Origin,
    pub reason: String,
    pub priority: f64,
    pub suggested_intent: Option<String>,
    pub recommendation_id: Option<i64>,
    pub reviews: i32,
}

impl NewItem {
    /// One item per message; a message-less text once per text.
    fn dedupe_key(&self) -> String {
        match self.message_id {
            Some(m) => format!("message:{m}"),
            None => format!(
                "text:{}",
                crate::core::hash::sha256_hex(crate::curate::normalise(&self.text).as_bytes())
            ),
        }
    }
}

/// One reviewer's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Label {
    pub reviewer: String,
    /// `label` or `reject`.
    pub verdict: Verdict,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entities: Vec<EntitySpan>,
    pub adjudication: bool,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// This intent (or out of scope), these entities.
    Label,
    /// Not a training example at all (noise, abuse, not a user message).
    Reject,
}

/// A review item as the API and the CLI show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub id: i64,
    pub model: String,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<i64>,
    pub origin: Origin,
    pub reason: String,
    pub priority: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suggested_intent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommendation_id: Option<i64>,
    pub reviews: i32,
    pub state: ItemState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entities: Vec<EntitySpan>,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<DateTime<Utc>>,
    pub labels: Vec<Label>,
}

/// Which items to list.
#[derive(Debug, Clone, Default)]
pub struct ItemFilter {
    pub model: Option<String>,
    pub state: Option<ItemState>,
    pub origin: Option<Origin>,
    /// Items with a smaller id (the page before).
    pub before: Option<i64>,
    pub limit: u64,
    /// The most valuable first (highest priority, then oldest) instead of
    /// the newest first; `before` does not apply.
    pub by_priority: bool,
}

/// A reviewer's answer to record.
#[derive(Debug, Clone)]
pub struct NewLabel {
    pub token_id: Option<i64>,
    pub reviewer: String,
    pub verdict: Verdict,
    pub intent: Option<String>,
    pub entities: Vec<EntitySpan>,
}

/// What recording a label did, or why it was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Labelled {
    /// Recorded; the item is now in this state.
    Recorded(Box<Item>),
    NoSuchItem,
    /// Refused, with the reason (a conflict with the item's state).
    Refused(String),
}

/// Queue sizes and what was decided, for trigger conditions and
/// `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct QueueCounts {
    pub open: u64,
    pub disputed: u64,
    pub approved: u64,
    pub rejected: u64,
}

/// An approved item as a training example, with where it came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReviewedExample {
    pub item: i64,
    pub text: String,
    pub intent: String,
    pub entities: Vec<EntitySpan>,
    pub message_id: Option<i64>,
    pub reviewers: Vec<String>,
    pub decided_at: Option<DateTime<Utc>>,
}

fn label_of(r: &review_labels::Model) -> Label {
    Label {
        reviewer: r.reviewer.clone(),
        verdict: if r.verdict == "reject" {
            Verdict::Reject
        } else {
            Verdict::Label
        },
        intent: r.intent.clone(),
        entities: serde_json::from_str(&r.entities).unwrap_or_default(),
        adjudication: r.adjudication,
        at: r.at,
    }
}

fn item_of(r: review_items::Model, labels: Vec<Label>) -> Item {
    Item {
        id: r.id,
        origin: Origin::parse(&r.origin).unwrap_or(Origin::Manual),
        state: ItemState::parse(&r.state).unwrap_or(ItemState::Open),
        entities: r
            .entities
            .as_deref()
            .and_then(|e| serde_json::from_str(e).ok())
            .unwrap_or_default(),
        model: r.model_name,
        text: r.text,
        conversation_id: r.conversation_id,
        message_id: r.message_id,
        reason: r.reason,
        priority: r.priority,
        suggested_intent: r.suggested_intent,
        recommendation_id: r.recommendation_id,
        reviews: r.reviews,
        intent: r.intent,
        created_at: r.created_at,
        decided_at: r.decided_at,
        labels,
    }
}

/// The answer of a label, to compare reviewers: its intent, or that it
/// was rejected.
fn answer(l: &review_labels::Model) -> String {
    match (l.verdict.as_str(), &l.intent) {
        ("reject", _) => "<rejected>".into(),
        (_, Some(i)) => i.clone(),
        (_, None) => OUT_OF_SCOPE.into(),
    }
}

impl Store {
    /// Queue `items` (in one transaction); a message (or a message-less
    /// text) already queued for the same model is not queued again.
    /// Returns how many were added.
    pub async fn queue_review(&self, items: &[NewItem]) -> Result<u64> {
        if items.is_empty() {
            return Ok(0);
        }
        let tx = self.begin_write().await?;
        let added = queue_in(&tx, items).await?;
        tx.commit().await?;
        Ok(added)
    }

    pub async fn review_items(&self, f: &ItemFilter) -> Result<(Vec<Item>, Option<i64>)> {
        use review_items::Column as C;
        let mut c = Condition::all();
        if let Some(m) = &f.model {
            c = c.add(C::ModelName.eq(m));
        }
        if let Some(s) = f.state {
            c = c.add(C::State.eq(s.as_str()));
        }
        if let Some(o) = f.origin {
            c = c.add(C::Origin.eq(o.as_str()));
        }
        if let Some(b) = f.before {
            c = c.add(C::Id.lt(b));
        }
        let limit = f.limit.clamp(1, 1000);
        let mut q = review_items::Entity::find().filter(c);
        q = if f.by_priority {
            q.order_by_desc(C::Priority).order_by_asc(C::Id)
        } else {
            q.order_by_desc(C::Id)
        };
        let mut rows = q.limit(limit + 1).all(&self.db).await?;
        let next =
            (rows.len() as u64 > limit && !f.by_priority).then(|| rows[limit as usize - 1].id);
        rows.truncate(limit as usize);
        let items = self.with_labels(rows).await?;
        Ok((items, next))
    }

    pub async fn review_item(&self, id: i64) -> Result<Option<Item>> {
        let Some(row) = review_items::Entity::find_by_id(id).one(&self.db).await? else {
            return Ok(None);
        };
        Ok(self.with_labels(vec![row]).await?.pop())
    }

    async fn with_labels(&self, rows: Vec<review_items::Model>) -> Result<Vec<Item>> {
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let mut labels: BTreeMap<i64, Vec<Label>> = BTreeMap::new();
        for chunk in ids.chunks(500) {
            for l in review_labels::Entity::find()
                .filter(review_labels::Column::ItemId.is_in(chunk.to_vec()))
                .order_by_asc(review_labels::Column::Id)
                .all(&self.db)
                .await?
            {
                labels.entry(l.item_id).or_default().push(label_of(&l));
            }
        }
        Ok(rows
            .into_iter()
            .map(|r| {
                let l = labels.remove(&r.id).unwrap_or_default();
                item_of(r, l)
            })
            .collect())
    }

    /// Hand reviewer `token` the most valuable item it may label now, and
    /// hold it for [`CLAIM`]: an open item it has not labelled whose
    /// labels and others' live claims are fewer than it needs — or, with
    /// `adjudicate`, a disputed item it did not label. Items in `skip`
    /// (the reviewer passed them over just now) are not handed out.
    pub async fn claim_review(
        &self,
        token: i64,
        model: Option<&str>,
        adjudicate: bool,
        skip: &[i64],
    ) -> Result<Option<Item>> {
        let now = Utc::now();
        let tx = self.begin_write().await?;
        review_claims::Entity::delete_many()
            .filter(review_claims::Column::Until.lt(now))
            .exec(&tx)
            .await?;
        let state = if adjudicate {
            ItemState::Disputed
        } else {
            ItemState::Open
        };
        // The caller's own labelled items are left out in SQL (a reviewer
        // with thousands of labels must not page past them under the
        // write lock); of the rest, the first whose labels and others'
        // live claims leave room.
        let mine = sea_orm::sea_query::Query::select()
            .column(review_labels::Column::ItemId)
            .from(review_labels::Entity)
            .and_where(review_labels::Column::TokenId.eq(token))
            .to_owned();
        let mut offset = 0;
        let page = 100;
        let chosen = loop {
            let mut q = review_items::Entity::find()
                .filter(review_items::Column::State.eq(state.as_str()))
                .filter(
                    sea_orm::sea_query::Expr::col(review_items::Column::Id)
                        .not_in_subquery(mine.clone()),
                )
                .order_by_desc(review_items::Column::Priority)
                .order_by_asc(review_items::Column::Id)
                .offset(offset)
                .limit(page);
            if let Some(m) = model {
                q = q.filter(review_items::Column::ModelName.eq(m));
            }
            if !skip.is_empty() {
                q = q.filter(review_items::Column::Id.is_not_in(skip.iter().copied()));
            }
            let candidates = q.all(&tx).await?;
            if candidates.is_empty() {
                break None;
            }
            let ids: Vec<i64> = candidates.iter().map(|c| c.id).collect();
            let labels = review_labels::Entity::find()
                .filter(review_labels::Column::ItemId.is_in(ids.clone()))
                .filter(review_labels::Column::Adjudication.eq(false))
                .all(&tx)
                .await?;
            let claims = review_claims::Entity::find()
                .filter(review_claims::Column::ItemId.is_in(ids))
                .filter(review_claims::Column::TokenId.ne(token))
                .all(&tx)
                .await?;
            let found = candidates.into_iter().find(|c| {
                let others = claims.iter().filter(|h| h.item_id == c.id).count() as i32;
                if adjudicate {
                    return others == 0;
                }
                let done = labels.iter().filter(|l| l.item_id == c.id).count() as i32;
                done + others < c.reviews
            });
            if found.is_some() {
                break found;
            }
            offset += page;
        };
        let Some(item) = chosen else {
            tx.commit().await?;
            return Ok(None);
        };
        // One claim per reviewer: taking the next item lets the last go.
        review_claims::Entity::delete_many()
            .filter(review_claims::Column::TokenId.eq(token))
            .exec(&tx)
            .await?;
        review_claims::ActiveModel {
            item_id: Set(item.id),
            token_id: Set(token),
            until: Set(now + CLAIM),
            ..Default::default()
        }
        .insert(&tx)
        .await?;
        tx.commit().await?;
        Ok(self.with_labels(vec![item]).await?.pop())
    }

    /// Record `label` for item `id` and decide the item when it has all
    /// the labels it needs: approved (or rejected) when they agree,
    /// disputed when they do not. An adjudication decides a disputed item.
    pub async fn label_review(
        &self,
        id: i64,
        label: &NewLabel,
        adjudication: bool,
    ) -> Result<Labelled> {
        let now = Utc::now();
        let tx = self.begin_write().await?;
        let Some(item) = review_items::Entity::find_by_id(id).one(&tx).await? else {
            return Ok(Labelled::NoSuchItem);
        };
        let state = ItemState::parse(&item.state).unwrap_or(ItemState::Open);
        let labels = review_labels::Entity::find()
            .filter(review_labels::Column::ItemId.eq(id))
            .order_by_asc(review_labels::Column::Id)
            .all(&tx)
            .await?;
        let by_me = |l: &review_labels::Model| match label.token_id {
            Some(t) => l.token_id == Some(t),
            None => l.token_id.is_none() && l.reviewer == label.reviewer,
        };
        if adjudication {
            if state != ItemState::Disputed {
                return Ok(Labelled::Refused(format!(
                    "item {id} is {}, not disputed: only a disputed item is adjudicated",
                    state.as_str()
                )));
            }
            if labels.iter().any(by_me) {
                return Ok(Labelled::Refused(format!(
                    "`{}` labelled item {id}: an adjudicator must be someone else",
                    label.reviewer
                )));
            }
        } else {
            if state != ItemState::Open {
                return Ok(Labelled::Refused(format!(
                    "item {id} is {} already",
                    state.as_str()
                )));
            }
            if labels.iter().any(by_me) {
                return Ok(Labelled::Refused(format!(
                    "`{}` has labelled item {id} already",
                    label.reviewer
                )));
            }
        }
        let row = review_labels::ActiveModel {
            item_id: Set(id),
            token_id: Set(label.token_id),
            reviewer: Set(label.reviewer.clone()),
            verdict: Set(match label.verdict {
                Verdict::Label => "label".into(),
                Verdict::Reject => "reject".into(),
            }),
            intent: Set(label.intent.clone()),
            entities: Set(serde_json::to_string(&label.entities)?),
            adjudication: Set(adjudication),
            at: Set(now),
            ..Default::default()
        }
        .insert(&tx)
        .await?;
        if let Some(t) = label.token_id {
            review_claims::Entity::delete_many()
                .filter(review_claims::Column::ItemId.eq(id))
                .filter(review_claims::Column::TokenId.eq(t))
                .exec(&tx)
                .await?;
        }
        let mut all = labels;
        all.push(row.clone());
        let independent: Vec<&review_labels::Model> =
            all.iter().filter(|l| !l.adjudication).collect();
        // The label that decides, if the item is decided now.
        let decisive = if adjudication {
            Some(&row)
        } else if independent.len() as i32 >= item.reviews {
            let first = answer(independent[0]);
            if independent.iter().all(|l| answer(l) == first) {
                Some(independent[0])
            } else {
                None
            }
        } else {
            None
        };
        let mut update: review_items::ActiveModel = item.clone().into();
        match decisive {
            Some(d) => {
                let rejected = d.verdict == "reject";
                update.state = Set(if rejected {
                    ItemState::Rejected
                } else {
                    ItemState::Approved
                }
                .as_str()
                .into());
                update.intent = Set((!rejected).then(|| answer(d)));
                update.entities = Set((!rejected).then(|| d.entities.clone()));
                update.decided_at = Set(Some(now));
            }
            None if independent.len() as i32 >= item.reviews => {
                update.state = Set(ItemState::Disputed.as_str().into());
            }
            None => {}
        }
        let updated = update.update(&tx).await?;
        tx.commit().await?;
        let labels = all.iter().map(label_of).collect();
        Ok(Labelled::Recorded(Box::new(item_of(updated, labels))))
    }

    /// How many items are in each state (of `model`, or all).
    pub async fn review_counts(&self, model: Option<&str>) -> Result<QueueCounts> {
        use sea_orm::sea_query::{Expr, ExprTrait};
        let mut q = review_items::Entity::find()
            .select_only()
            .column(review_items::Column::State)
            .expr(Expr::col(review_items::Column::Id).count())
            .group_by(review_items::Column::State);
        if let Some(m) = model {
            q = q.filter(review_items::Column::ModelName.eq(m));
        }
        let rows: Vec<(String, i64)> = q.into_tuple().all(&self.db).await?;
        let mut c = QueueCounts::default();
        for (state, n) in rows {
            let n = n as u64;
            match ItemState::parse(&state) {
                Some(ItemState::Open) => c.open = n,
                Some(ItemState::Disputed) => c.disputed = n,
                Some(ItemState::Approved) => c.approved = n,
                Some(ItemState::Rejected) => c.rejected = n,
                None => {}
            }
        }
        Ok(c)
    }

    /// Items of `model` approved at or after `since` (all approved ones
    /// when `None`).
    pub async fn approved_since(&self, model: &str, since: Option<DateTime<Utc>>) -> Result<u64> {
        use sea_orm::PaginatorTrait;
        let mut q = review_items::Entity::find()
            .filter(review_items::Column::ModelName.eq(model))
            .filter(review_items::Column::State.eq(ItemState::Approved.as_str()));
        if let Some(t) = since {
            q = q.filter(review_items::Column::DecidedAt.gte(t));
        }
        Ok(q.count(&self.db).await?)
    }

    /// Approved items (of `model`, or all) as training examples, oldest
    /// decision first.
    pub async fn reviewed_examples(&self, model: Option<&str>) -> Result<Vec<ReviewedExample>> {
        let mut q = review_items::Entity::find()
            .filter(review_items::Column::State.eq(ItemState::Approved.as_str()))
            .order_by_asc(review_items::Column::DecidedAt)
            .order_by_asc(review_items::Column::Id);
        if let Some(m) = model {
            q = q.filter(review_items::Column::ModelName.eq(m));
        }
        let rows = q.all(&self.db).await?;
        let items = self.with_labels(rows).await?;
        Ok(items
            .into_iter()
            .filter_map(|i| {
                Some(ReviewedExample {
                    intent: i.intent?,
                    reviewers: i.labels.iter().map(|l| l.reviewer.clone()).collect(),
                    item: i.id,
                    text: i.text,
                    entities: i.entities,
                    message_id: i.message_id,
                    decided_at: i.decided_at,
                })
            })
            .collect())
    }

    /// Every reviewer's answer on items that more than one reviewer
    /// labelled independently, among the last [`AGREEMENT_LABELS`]
    /// independent labels: `(item, reviewer, answer)` for agreement.
    pub async fn review_answers(&self, model: Option<&str>) -> Result<Vec<(i64, String, String)>> {
        let mut q = review_labels::Entity::find()
            .filter(review_labels::Column::Adjudication.eq(false))
            .order_by_desc(review_labels::Column::Id)
            .limit(AGREEMENT_LABELS as u64);
        if let Some(m) = model {
            use sea_orm::sea_query::{Expr, Query};
            q = q.filter(
                Expr::col(review_labels::Column::ItemId).in_subquery(
                    Query::select()
                        .column(review_items::Column::Id)
                        .from(review_items::Entity)
                        .and_where(review_items::Column::ModelName.eq(m))
                        .to_owned(),
                ),
            );
        }
        let mut labels = q.all(&self.db).await?;
        labels.reverse();
        let mut per_item: BTreeMap<i64, usize> = BTreeMap::new();
        for l in &labels {
            *per_item.entry(l.item_id).or_default() += 1;
        }
        Ok(labels
            .iter()
            .filter(|l| per_item.get(&l.item_id).copied().unwrap_or(0) > 1)
            .map(|l| (l.item_id, l.reviewer.clone(), answer(l)))
            .collect())
    }
}

/// Approve the open item of correction `item` with the user's intent
/// (a workflow that trusts corrections), inside `tx`.
pub(crate) async fn approve_correction(
    tx: &sea_orm::DatabaseTransaction,
    item: &NewItem,
) -> Result<()> {
    let Some(intent) = &item.suggested_intent else {
        return Ok(());
    };
    let Some(row) = review_items::Entity::find()
        .filter(review_items::Column::ModelName.eq(&item.model))
        .filter(review_items::Column::DedupeKey.eq(item.dedupe_key()))
        .filter(review_items::Column::State.eq(ItemState::Open.as_str()))
        .one(tx)
        .await?
    else {
        return Ok(());
    };
    let now = Utc::now();
    review_labels::ActiveModel {
        item_id: Set(row.id),
        token_id: Set(None),
        reviewer: Set("user correction".into()),
        verdict: Set("label".into()),
        intent: Set(Some(intent.clone())),
        entities: Set("[]".into()),
        adjudication: Set(false),
        at: Set(now),
        ..Default::default()
    }
    .insert(tx)
    .await?;
    let mut a: review_items::ActiveModel = row.into();
    a.state = Set(ItemState::Approved.as_str().into());
    a.intent = Set(Some(intent.clone()));
    a.entities = Set(Some("[]".into()));
    a.decided_at = Set(Some(now));
    a.update(tx).await?;
    Ok(())
}

/// Queue `items` inside `tx` (the feedback that caused them commits with
/// them). Returns how many were added.
pub(crate) async fn queue_in<C: sea_orm::ConnectionTrait>(
    tx: &C,
    items: &[NewItem],
) -> Result<u64> {
    let now = Utc::now();
    let rows: Vec<review_items::ActiveModel> = items
        .iter()
        .map(|i| review_items::ActiveModel {
            model_name: Set(i.model.clone()),
            dedupe_key: Set(i.dedupe_key()),
            text: Set(i.text.clone()),
            conversation_id: Set(i.conversation_id),
            message_id: Set(i.message_id),
            origin: Set(i.origin.as_str().into()),
            reason: Set(i.reason.clone()),
            priority: Set(i.priority),
            suggested_intent: Set(i.suggested_intent.clone()),
            recommendation_id: Set(i.recommendation_id),
            reviews: Set(Ord::max(i.reviews, 1)),
            state: Set(ItemState::Open.as_str().into()),
            intent: Set(None),
            entities: Set(None),
            created_at: Set(now),
            decided_at: Set(None),
            ..Default::default()
        })
        .collect();
    let mut added = 0;
    for chunk in rows.chunks(500) {
        added += review_items::Entity::insert_many(chunk.to_vec())
            .on_conflict(
                OnConflict::columns([
                    review_items::Column::ModelName,
                    review_items::Column::DedupeKey,
                ])
                .do_nothing()
                .to_owned(),
            )
            .exec_without_returning(tx)
            .await?;
    }
    // A user's correction says more than why the message was first queued
    // (a fallback, a low confidence): an open item takes its intent and
    // reason, so reviewers see what the user said.
    for i in items.iter().filter(|i| i.origin == Origin::Correction) {
        review_items::Entity::update_many()
            .col_expr(
                review_items::Column::SuggestedIntent,
                sea_orm::sea_query::Expr::value(i.suggested_intent.clone()),
            )
            .col_expr(
                review_items::Column::Origin,
                sea_orm::sea_query::Expr::value(Origin::Correction.as_str()),
            )
            .col_expr(
                review_items::Column::Reason,
                sea_orm::sea_query::Expr::value(i.reason.clone()),
            )
            .col_expr(
                review_items::Column::Priority,
                sea_orm::sea_query::Expr::value(i.priority),
            )
            .filter(review_items::Column::ModelName.eq(&i.model))
            .filter(review_items::Column::DedupeKey.eq(i.dedupe_key()))
            .filter(review_items::Column::State.eq(ItemState::Open.as_str()))
            .filter(review_items::Column::Origin.ne(Origin::Correction.as_str()))
            .exec(tx)
            .await?;
    }
    Ok(added)
}

/// A recommendation as kept: its row id, where it stands, and what the
/// patterns said.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredRecommendation {
    pub id: i64,
    pub key: String,
    pub model: String,
    pub kind: String,
    pub title: String,
    pub impact: i64,
    pub rank: f64,
    pub evidence: serde_json::Value,
    pub messages: serde_json::Value,
    /// `open`, `queued`, `dismissed`.
    pub state: String,
    pub found_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A recommendation to keep.
#[derive(Debug, Clone)]
pub struct NewRecommendation {
    pub key: String,
    pub kind: String,
    pub title: String,
    pub impact: i64,
    pub rank: f64,
    pub evidence: serde_json::Value,
    pub messages: serde_json::Value,
}

fn recommendation_of(r: super::entities::recommendations::Model) -> StoredRecommendation {
    StoredRecommendation {
        evidence: serde_json::from_str(&r.evidence).unwrap_or_default(),
        messages: serde_json::from_str(&r.messages).unwrap_or_default(),
        id: r.id,
        key: r.key,
        model: r.model_name,
        kind: r.kind,
        title: r.title,
        impact: r.impact,
        rank: r.rank,
        state: r.state,
        found_at: r.found_at,
        updated_at: r.updated_at,
    }
}

impl Store {
    /// Keep what the patterns of `model` recommend now: a recommendation
    /// found before (same key) is updated and keeps its state. Returns
    /// them as stored, in the order given.
    pub async fn save_recommendations(
        &self,
        model: &str,
        recs: &[NewRecommendation],
    ) -> Result<Vec<StoredRecommendation>> {
        use super::entities::recommendations as r;
        let now = Utc::now();
        let tx = self.begin_write().await?;
        let mut out = Vec::with_capacity(recs.len());
        for rec in recs {
            let found = r::Entity::find()
                .filter(r::Column::ModelName.eq(model))
                .filter(r::Column::Key.eq(&rec.key))
                .one(&tx)
                .await?;
            let row = match found {
                Some(f) => {
                    let mut a: r::ActiveModel = f.into();
                    a.title = Set(rec.title.clone());
                    a.impact = Set(rec.impact);
                    a.rank = Set(rec.rank);
                    a.evidence = Set(rec.evidence.to_string());
                    a.messages = Set(rec.messages.to_string());
                    a.updated_at = Set(now);
                    a.update(&tx).await?
                }
                None => {
                    r::ActiveModel {
                        key: Set(rec.key.clone()),
                        model_name: Set(model.to_owned()),
                        kind: Set(rec.kind.clone()),
                        title: Set(rec.title.clone()),
                        impact: Set(rec.impact),
                        rank: Set(rec.rank),
                        evidence: Set(rec.evidence.to_string()),
                        messages: Set(rec.messages.to_string()),
                        state: Set("open".into()),
                        found_at: Set(now),
                        updated_at: Set(now),
                        ..Default::default()
                    }
                    .insert(&tx)
                    .await?
                }
            };
            out.push(recommendation_of(row));
        }
        tx.commit().await?;
        Ok(out)
    }

    /// `model`'s recommendations (in `state`, or all), best first.
    pub async fn recommendations(
        &self,
        model: &str,
        state: Option<&str>,
    ) -> Result<Vec<StoredRecommendation>> {
        use super::entities::recommendations as r;
        let mut q = r::Entity::find()
            .filter(r::Column::ModelName.eq(model))
            .order_by_desc(r::Column::Rank)
            .limit(500);
        if let Some(s) = state {
            q = q.filter(r::Column::State.eq(s));
        }
        Ok(q.all(&self.db)
            .await?
            .into_iter()
            .map(recommendation_of)
            .collect())
    }

    pub async fn recommendation(&self, id: i64) -> Result<Option<StoredRecommendation>> {
        use super::entities::recommendations as r;
        Ok(r::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .map(recommendation_of))
    }

    /// Queue `items` for recommendation `id` and mark it queued, in one
    /// transaction. Returns how many items were added.
    pub async fn queue_recommendation(&self, id: i64, items: &[NewItem]) -> Result<u64> {
        use super::entities::recommendations as r;
        let tx = self.begin_write().await?;
        let added = queue_in(&tx, items).await?;
        if let Some(row) = r::Entity::find_by_id(id).one(&tx).await? {
            let mut a: r::ActiveModel = row.into();
            a.state = Set("queued".into());
            a.updated_at = Set(Utc::now());
            a.update(&tx).await?;
        }
        tx.commit().await?;
        Ok(added)
    }

    /// The id of message `turn` of `model`'s conversation `external`.
    pub async fn message_id(
        &self,
        model: &str,
        external: &str,
        turn: i32,
    ) -> Result<Option<(i64, i64)>> {
        use super::entities::{conversations, messages};
        let Some(c) = conversations::Entity::find()
            .filter(conversations::Column::ModelName.eq(model))
            .filter(conversations::Column::ExternalId.eq(external))
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        Ok(messages::Entity::find()
            .filter(messages::Column::ConversationId.eq(c.id))
            .filter(messages::Column::Position.eq(turn))
            .one(&self.db)
            .await?
            .map(|m| (c.id, m.id)))
    }
}
