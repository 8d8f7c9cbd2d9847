//! `examples`: the records of a dataset version.

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
    /// `train`, `validation`, `test` or `unspecified`.
    pub split: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
