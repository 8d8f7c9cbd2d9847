//! `models`: registered models with their lineage.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "models")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The model name (the workflow name unless `register` sets one).
    pub name: String,
    /// 1, 2, … per name.
    pub version: i32,
    pub run_id: i64,
    pub trainer_plugin: String,
    pub trainer_version: String,
    /// SHA-256 of the trainer component that produced the model.
    pub plugin_hash: String,
    /// SHA-256 of the model bytes; names the artifact file.
    pub artifact_hash: String,
    pub artifact_size: i64,
    /// The snapshot it was trained on; none for a process step's
    /// artifacts registered without a dataset before them.
    pub dataset_version_id: Option<i64>,
    /// Content hash of the training data.
    pub data_hash: String,
    /// SHA-256 of the trainer parameters (canonical JSON).
    pub config_hash: String,
    /// JSON object of evaluation and training metrics.
    pub metrics: String,
    /// JSON list of the intents the model knows.
    pub intents: String,
    pub created_at: DateTimeUtc,
    /// The model this one was warm-started from, if any.
    pub base_model_id: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::training_runs::Entity",
        from = "Column::RunId",
        to = "super::training_runs::Column::Id"
    )]
    Run,
    #[sea_orm(
        belongs_to = "super::dataset_versions::Entity",
        from = "Column::DatasetVersionId",
        to = "super::dataset_versions::Column::Id"
    )]
    DatasetVersion,
    #[sea_orm(belongs_to = "Entity", from = "Column::BaseModelId", to = "Column::Id")]
    BaseModel,
}

impl ActiveModelBehavior for ActiveModel {}
