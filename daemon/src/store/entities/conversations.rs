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
    /// The experiment (or canary) the conversation took part in, the arm
    /// that answered it and the unit (user or conversation) assigned.
    pub experiment_id: Option<i64>,
    pub arm: Option<String>,
    pub unit: Option<String>,
    /// Counters kept with the messages and feedback they count (in the
    /// same transaction): what experiments aggregate.
    pub user_messages: i32,
    pub fallbacks: i32,
    /// Feedback items with a rating, and of those the positive and negative.
    pub rated: i32,
    pub positive: i32,
    pub negative: i32,
    pub corrections: i32,
    /// The user asked for a person (a message or feedback said so).
    pub escalated: bool,
    /// What the bot reports: `resolved`, `escalated` or `abandoned`.
    pub outcome: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
