//! `dataset_conversations`: the conversations a source step read, kept
//! with the dataset snapshot they belong to (covered by its content hash).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "dataset_conversations")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub dataset_version_id: i64,
    /// 0-based order in the snapshot.
    pub position: i32,
    /// The source's id for the conversation.
    pub external_id: String,
    /// JSON: the turns (`role`, `text`, `intent`, `timestamp_ms`).
    pub messages: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::dataset_versions::Entity",
        from = "Column::DatasetVersionId",
        to = "super::dataset_versions::Column::Id"
    )]
    DatasetVersion,
}

impl ActiveModelBehavior for ActiveModel {}
