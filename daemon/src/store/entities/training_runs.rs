//! `training_runs`: one execution of a workflow.

use crate::core::state::{RunState, TriggerKind};
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
    pub state: RunState,
    pub error: Option<String>,
    /// When the run was created; reset to the start time when it leaves
    /// the queue.
    pub started_at: DateTimeUtc,
    pub finished_at: Option<DateTimeUtc>,
    /// What started it.
    pub trigger: TriggerKind,
    /// Who executes it: `daemon` (queued, not yet claimed),
    /// `daemon:<host>:<data dir>` (claimed by that daemon, which resumes it
    /// after a crash), or `cli:<host>:<pid>:<start time>` (a `coach run`
    /// process; a later `coach` start on that host marks the run
    /// interrupted once the process is gone). `cli` alone: a `coach run`
    /// of a version before process identities were recorded.
    pub executor: String,
    pub queued_at: Option<DateTimeUtc>,
    /// Times the run was interrupted (daemon stopped or killed) and resumed.
    pub resumes: i32,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl Model {
    pub fn run_id(&self) -> crate::core::ids::RunId {
        crate::core::ids::RunId(self.id)
    }
}
