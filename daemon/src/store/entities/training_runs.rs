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
    /// `queued`, `running`, `succeeded`, `failed` or `cancelled`.
    pub state: String,
    pub error: Option<String>,
    /// When the run was created (queued, or started by `coach run`); reset
    /// to the start time when it leaves the queue.
    pub started_at: DateTimeUtc,
    pub finished_at: Option<DateTimeUtc>,
    /// What started it: `cli`, `manual`, `cron`, `watch` or `catch-up`.
    pub trigger: String,
    /// Who executes it: `cli` (a `coach run` process, never touched by a
    /// daemon), `daemon` (queued, not yet claimed) or `daemon:<instance>`
    /// (claimed by that daemon, which resumes it after a crash).
    pub executor: String,
    pub queued_at: Option<DateTimeUtc>,
    /// Times the run was interrupted (daemon stopped or killed) and resumed.
    pub resumes: i32,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
