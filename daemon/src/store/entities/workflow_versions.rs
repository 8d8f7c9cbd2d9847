//! `workflow_versions`: the exact text of every workflow version a run was
//! queued with, so a run resumes on the version it started with even after
//! the file changed.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "workflow_versions")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// SHA-256 of `content`.
    pub hash: String,
    pub workflow: String,
    pub file: String,
    pub content: String,
    pub created_at: DateTimeUtc,
    /// JSON object: script path → source, for the scripts the version uses.
    pub scripts: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
