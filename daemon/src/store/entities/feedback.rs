//! `feedback`: what users or reviewers said about the bot's answers — a
//! rating, a corrected intent, a comment — optionally tied to a message.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "feedback")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub model_name: String,
    pub conversation_id: Option<i64>,
    pub message_id: Option<i64>,
    /// `1` (helpful) or `-1` (not helpful).
    pub rating: Option<i32>,
    /// The intent the message should have been given.
    pub correction: Option<String>,
    pub comment: Option<String>,
    /// The user asked for a person.
    pub escalation: bool,
    pub at: DateTimeUtc,
    pub received_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::conversations::Entity",
        from = "Column::ConversationId",
        to = "super::conversations::Column::Id"
    )]
    Conversation,
    #[sea_orm(
        belongs_to = "super::messages::Entity",
        from = "Column::MessageId",
        to = "super::messages::Column::Id"
    )]
    Message,
}

impl ActiveModelBehavior for ActiveModel {}
