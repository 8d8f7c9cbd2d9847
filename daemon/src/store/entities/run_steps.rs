//! `run_steps`: one attempt (task) of one step of a run.

use crate::core::state::StepState;
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "run_steps")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub run_id: i64,
    pub step_id: String,
    /// The plugin id or built-in kind.
    pub action: String,
    pub attempt: i32,
    pub state: StepState,
    pub error: Option<String>,
    /// What the step produced: a `StepOutput` as JSON.
    pub output: Option<String>,
    pub started_at: DateTimeUtc,
    pub finished_at: Option<DateTimeUtc>,
    /// What the attempt runs as outside the daemon: `local:<pgid>:<start>`
    /// (a process group and its leader's start time) or `slurm:<job id>`.
    pub handle: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::training_runs::Entity",
        from = "Column::RunId",
        to = "super::training_runs::Column::Id"
    )]
    Run,
}

impl ActiveModelBehavior for ActiveModel {}
