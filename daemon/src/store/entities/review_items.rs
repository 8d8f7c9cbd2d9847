//! `review_items`: a message waiting for people to label it, why it was
//! queued, and — once decided — the label it got.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "review_items")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub model_name: String,
    /// One item per message (`message:<id>`) or per text (`text:<hash>`).
    pub dedupe_key: String,
    pub text: String,
    pub conversation_id: Option<i64>,
    pub message_id: Option<i64>,
    /// `correction`, `fallback`, `low_confidence`, `negative_rating`,
    /// `recommendation`, `manual`.
    pub origin: String,
    pub reason: String,
    /// Expected value of a label: higher first.
    pub priority: f64,
    pub suggested_intent: Option<String>,
    pub recommendation_id: Option<i64>,
    /// Independent labels needed before it is decided.
    pub reviews: i32,
    /// `open`, `disputed`, `approved`, `rejected`.
    pub state: String,
    /// The decided intent.
    pub intent: Option<String>,
    /// JSON: the decided entity spans.
    pub entities: Option<String>,
    pub created_at: DateTimeUtc,
    pub decided_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::review_labels::Entity")]
    Labels,
}

impl Related<super::review_labels::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Labels.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
