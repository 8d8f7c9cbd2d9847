//! `gpu_usage`: the GPUs a step held on this machine, from when to when
//! (one row per lease: a preempted step that asks again has two).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "gpu_usage")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub run_id: i64,
    pub step_id: String,
    pub queue: String,
    pub gpus: i32,
    pub started_at: DateTimeUtc,
    pub finished_at: DateTimeUtc,
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
