//! `run_logs`: what a run said as it ran: plugin log lines, step notes and
//! failures, in order.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "run_logs")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub run_id: i64,
    pub step_id: Option<String>,
    /// `trace`, `debug`, `info`, `warn` or `error`.
    pub level: String,
    pub message: String,
    pub at: DateTimeUtc,
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
