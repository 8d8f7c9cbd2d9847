//! `recommendations`: what to do about a pattern found in a model's
//! traffic, kept by a stable key so finding it again updates it.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "recommendations")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Stable across computations: the kind and what it is about, hashed.
    pub key: String,
    pub model_name: String,
    /// `new_intent`, `add_examples`, `merge_or_split`, `fix_response`,
    /// `review_conflicts`.
    pub kind: String,
    pub title: String,
    /// Conversations it touches.
    pub impact: i64,
    /// Higher first.
    pub rank: f64,
    /// JSON: the pattern and its numbers.
    pub evidence: String,
    /// JSON: the messages to review, with a suggested intent.
    pub messages: String,
    /// `open`, `queued` (turned into review items), `dismissed`.
    pub state: String,
    pub found_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
