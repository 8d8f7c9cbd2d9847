//! `messages`: the turns of a conversation, in order. A user turn carries
//! what the model predicted for it and whether the bot fell back.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "messages")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub conversation_id: i64,
    /// Kept beside the conversation's so traffic is counted without a join.
    pub model_name: String,
    /// 0-based position in the conversation.
    pub position: i32,
    /// `user` or `bot`.
    pub role: String,
    pub text: String,
    /// The intent the model predicted (user turns).
    pub intent: Option<String>,
    pub confidence: Option<f64>,
    /// The bot did not understand and fell back.
    pub fallback: bool,
    /// The version of the model that answered.
    pub model_version: Option<i32>,
    /// The user asked for a person here.
    pub escalation: bool,
    pub at: DateTimeUtc,
    pub received_at: DateTimeUtc,
    /// JSON: the model's top intents with their confidences, best first.
    pub ranking: Option<String>,
    /// JSON: the entity spans the model found (`entity`, `start`, `end`,
    /// `value`; byte offsets into `text`).
    pub entities: Option<String>,
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
