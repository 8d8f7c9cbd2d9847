//! `quality_analyses`: what an analyzer said about one conversation — one
//! row per conversation per analyzer version, replaced when the same
//! version analyses it again.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "quality_analyses")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub conversation_id: i64,
    /// The conversation's model, kept here so trends need no join.
    pub model_name: String,
    /// The analyzer plugin's id and version.
    pub analyzer: String,
    pub analyzer_version: String,
    /// 0–100.
    pub score: f64,
    /// JSON: the aspects with their evidence.
    pub aspects: String,
    /// JSON: the findings.
    pub findings: String,
    /// When the conversation started (trends are by conversation time).
    pub started_at: DateTimeUtc,
    pub analyzed_at: DateTimeUtc,
    /// The run whose `analyze` step wrote it, if one did.
    pub run_id: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::conversations::Entity",
        from = "Column::ConversationId",
        to = "super::conversations::Column::Id"
    )]
    Conversation,
}

impl ActiveModelBehavior for ActiveModel {}
