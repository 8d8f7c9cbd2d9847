//! `review_labels`: one reviewer's answer for one review item (or the
//! adjudicator's, which decides a disputed item).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "review_labels")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub item_id: i64,
    /// The reviewer's token; `None` for a correction a workflow trusts.
    pub token_id: Option<i64>,
    /// The token's name when it labelled.
    pub reviewer: String,
    /// `label` or `reject` (not a training example at all).
    pub verdict: String,
    pub intent: Option<String>,
    /// JSON: entity spans.
    pub entities: String,
    pub adjudication: bool,
    pub at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::review_items::Entity",
        from = "Column::ItemId",
        to = "super::review_items::Column::Id"
    )]
    Item,
}

impl Related<super::review_items::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Item.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
