//! `deployments`: which model version each environment of a model name
//! serves. One row per (model name, environment); every change to it is
//! also a row of `deployment_history`.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "deployments")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub model_name: String,
    /// `staging`, `production`, or any name an operator gives.
    pub environment: String,
    /// The version served.
    pub model_id: i64,
    /// Bumped by every change: servers compare it to know what to load.
    pub revision: i64,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::models::Entity",
        from = "Column::ModelId",
        to = "super::models::Column::Id"
    )]
    Model,
}

impl ActiveModelBehavior for ActiveModel {}
