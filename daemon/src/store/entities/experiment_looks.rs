//! `experiment_looks`: what each look at a running experiment found, when
//! it found something new: each treatment's p-value and chance to win on
//! the primary metric, for the dashboard's curves over time.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "experiment_looks")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub experiment_id: i64,
    pub at: DateTimeUtc,
    /// JSON: `[{"arm", "p_value", "chance_to_win", "units"}]`.
    pub primary: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::experiments::Entity",
        from = "Column::ExperimentId",
        to = "super::experiments::Column::Id"
    )]
    Experiment,
}

impl ActiveModelBehavior for ActiveModel {}
