//! `conversations`: what a chatbot said with users, as its platform logged it
//! to Coach (`POST /api/v1/conversations`). Keyed by the model name the bot
//! serves and the platform's own conversation id; later posts with the same
//! id append messages.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "conversations")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The registered model name the bot serves (a workflow's name).
    pub model_name: String,
    /// The platform's id for the conversation.
    pub external_id: String,
    pub channel: Option<String>,
    pub started_at: DateTimeUtc,
    pub received_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
