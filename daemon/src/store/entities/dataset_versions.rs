//! `dataset_versions`: content-hashed snapshots of a dataset.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "dataset_versions")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub dataset_id: i64,
    /// SHA-256 over the examples in order (text, intent, spans, split),
    /// then the conversations, when there are any.
    pub content_hash: String,
    pub examples: i64,
    pub intents: i64,
    /// JSON: where the records came from (step ids, plugins, bad records).
    pub origin: String,
    pub created_at: DateTimeUtc,
    /// Conversations the source read beside the examples.
    pub conversations: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::datasets::Entity",
        from = "Column::DatasetId",
        to = "super::datasets::Column::Id"
    )]
    Dataset,
}

impl ActiveModelBehavior for ActiveModel {}
