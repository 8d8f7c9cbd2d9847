//! `experiment_arms`: an experiment arm's running totals over its units
//! (`experiment::results::Totals` as JSON: units, sums, sums of squares,
//! cross products), moved in the transaction of every logged event that
//! changes a unit. Reading an experiment's results reads these rows.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "experiment_arms")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub experiment_id: i64,
    pub arm: String,
    pub totals: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
