//! `examples`: the records of a dataset version.

use crate::core::example::Split;
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "examples")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub dataset_version_id: i64,
    pub position: i64,
    pub text: String,
    pub intent: String,
    /// JSON list of `{entity, start, end, value}`.
    pub entities: String,
    pub split: Split,
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
