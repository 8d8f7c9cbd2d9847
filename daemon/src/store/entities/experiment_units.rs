//! `experiment_units`: each unit (user or conversation) of an experiment
//! arm, with its counters summed over its conversations (JSON, in the
//! order of `experiment::results::VARIABLES`). Kept in the transaction that
//! logs what it counts, so the arm's totals can move by the unit's change.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "experiment_units")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub experiment_id: i64,
    pub arm: String,
    pub unit: String,
    pub counters: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
