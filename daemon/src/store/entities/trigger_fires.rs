//! `trigger_fires`: every time a trigger fired, what it was scheduled for and
//! what came of it (a queued run, a skip, a missed fire).

use crate::core::state::{FireOutcome, TriggerKind};
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "trigger_fires")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub workflow: String,
    pub kind: TriggerKind,
    /// Cron fires: the scheduled time. Others: the time of the fire.
    pub scheduled_for: DateTimeUtc,
    pub fired_at: DateTimeUtc,
    pub outcome: FireOutcome,
    pub detail: Option<String>,
    pub run_id: Option<i64>,
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
