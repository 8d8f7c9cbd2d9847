//! `experiments`: A/B experiments and canaries on one environment of a
//! model name — what they compare (the spec, as started), where they are
//! (a canary's step) and how they ended (decision and reason).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "experiments")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub name: String,
    pub model_name: String,
    pub environment: String,
    /// `experiment` or `canary`.
    pub kind: String,
    /// `running`, `promoted`, `rolled_back` or `stopped`.
    pub state: String,
    /// The spec as started (JSON): arms with their model ids, metrics,
    /// stopping rule.
    pub spec: String,
    /// The version the environment served when it started.
    pub control_model_id: i64,
    /// Where it was defined: a file, the API, a workflow run.
    pub source: String,
    pub created_by: String,
    pub started_at: DateTimeUtc,
    pub ended_at: Option<DateTimeUtc>,
    /// `promote`, `rollback` or `stop`.
    pub decision: Option<String>,
    pub reason: Option<String>,
    /// A canary's step (index into its traffic steps); 0 for experiments.
    pub step: i32,
    pub step_started_at: DateTimeUtc,
    /// Request, error and latency counts per arm (JSON), flushed by the
    /// serving daemon.
    pub counters: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::models::Entity",
        from = "Column::ControlModelId",
        to = "super::models::Column::Id"
    )]
    Control,
}

impl ActiveModelBehavior for ActiveModel {}
