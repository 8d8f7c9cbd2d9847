//! `deployment_history`: every change of a deployment — from which
//! version to which, who, when, why and how. Rows are only ever added.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "deployment_history")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub model_name: String,
    pub environment: String,
    /// The version served before; none for the first deployment.
    pub from_model_id: Option<i64>,
    pub to_model_id: i64,
    /// `deploy` or `rollback`.
    pub action: String,
    /// `manual`, `workflow`, `experiment` or `automatic`.
    pub how: String,
    /// Who: a token's name, `local` for a command on the daemon's machine,
    /// or the workflow and run.
    pub actor: String,
    pub reason: Option<String>,
    /// The run whose step made the change, if one did.
    pub run_id: Option<i64>,
    pub at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::models::Entity",
        from = "Column::FromModelId",
        to = "super::models::Column::Id"
    )]
    From,
    #[sea_orm(
        belongs_to = "super::models::Entity",
        from = "Column::ToModelId",
        to = "super::models::Column::Id"
    )]
    To,
    #[sea_orm(
        belongs_to = "super::training_runs::Entity",
        from = "Column::RunId",
        to = "super::training_runs::Column::Id"
    )]
    Run,
}

impl ActiveModelBehavior for ActiveModel {}
