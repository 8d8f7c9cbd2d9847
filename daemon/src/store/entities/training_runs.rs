//! `training_runs`: one execution of a workflow.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "training_runs")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub workflow: String,
    pub workflow_file: String,
    /// SHA-256 of the workflow file the run used.
    pub workflow_hash: String,
    /// `running`, `succeeded`, `failed` or `cancelled`.
    pub state: String,
    pub error: Option<String>,
    pub started_at: DateTimeUtc,
    pub finished_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
