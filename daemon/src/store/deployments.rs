//! Deployments: the version each environment of a model name serves, and
//! the history of every change. A change is one write transaction: the
//! row moves and its history row is added together, or neither.

use super::Store;
use super::entities::{deployment_history, deployments};
use anyhow::Result;
use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};

pub use super::entities::deployment_history::Model as HistoryRow;
pub use super::entities::deployments::Model as DeploymentRow;

/// What a change did to the deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Deploy,
    Rollback,
    /// Traffic split between the version served and another (an
    /// experiment or a canary step); the deployment still names the
    /// version served.
    Split,
}

/// Who or what decided the change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum How {
    /// A person, through the command line or the API.
    Manual,
    /// A workflow's `deploy` step.
    Workflow,
    /// An experiment's decision.
    Experiment,
    /// A guardrail breach.
    Automatic,
    /// A canary's steps.
    Canary,
}

macro_rules! words {
    ($t:ty { $($v:ident => $s:literal),* $(,)? }) => {
        impl $t {
            pub fn as_str(self) -> &'static str {
                match self { $(<$t>::$v => $s),* }
            }
        }
        impl std::str::FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<$t, String> {
                match s {
                    $($s => Ok(<$t>::$v),)*
                    other => Err(format!("unknown value `{other}`")),
                }
            }
        }
    };
}

words!(Action { Deploy => "deploy", Rollback => "rollback", Split => "split" });
words!(How { Manual => "manual", Workflow => "workflow", Experiment => "experiment", Automatic => "automatic", Canary => "canary" });

/// A change to make.
#[derive(Debug, Clone)]
pub struct NewChange {
    pub model_name: String,
    pub environment: String,
    pub to_model_id: i64,
    /// The version the caller saw served (`None`: nothing deployed yet).
    /// If another change came first, nothing is written.
    pub expected_from: Option<i64>,
    pub action: Action,
    pub how: How,
    pub actor: String,
    pub reason: Option<String>,
    pub run: Option<i64>,
}

/// What [`Store::change_deployment`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Changed {
    Done(DeploymentRow, Box<HistoryRow>),
    /// The environment already serves that version: nothing written.
    Unchanged(DeploymentRow),
    /// Another change came first; it now serves this (or nothing).
    Conflict(Option<DeploymentRow>),
    /// An experiment or canary (named) decides what serves there.
    Busy(String, String),
}

impl Store {
    /// The deployment of `environment` of `model_name`.
    pub async fn deployment(
        &self,
        model_name: &str,
        environment: &str,
    ) -> Result<Option<DeploymentRow>> {
        Ok(deployments::Entity::find()
            .filter(deployments::Column::ModelName.eq(model_name))
            .filter(deployments::Column::Environment.eq(environment))
            .one(&self.db)
            .await?)
    }

    /// Every deployment (of one model name when given), by name then
    /// environment.
    pub async fn deployments(&self, model_name: Option<&str>) -> Result<Vec<DeploymentRow>> {
        let mut q = deployments::Entity::find();
        if let Some(name) = model_name {
            q = q.filter(deployments::Column::ModelName.eq(name));
        }
        Ok(q.order_by_asc(deployments::Column::ModelName)
            .order_by_asc(deployments::Column::Environment)
            .all(&self.db)
            .await?)
    }

    /// The history of `model_name` (one environment when given), newest
    /// first, at most `limit` rows.
    pub async fn deployment_history(
        &self,
        model_name: &str,
        environment: Option<&str>,
        limit: u64,
    ) -> Result<Vec<HistoryRow>> {
        let mut q = deployment_history::Entity::find()
            .filter(deployment_history::Column::ModelName.eq(model_name));
        if let Some(env) = environment {
            q = q.filter(deployment_history::Column::Environment.eq(env));
        }
        Ok(q.order_by_desc(deployment_history::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?)
    }

    /// Move a deployment and record it, in one transaction.
    pub async fn change_deployment(&self, c: NewChange) -> Result<Changed> {
        let tx = self.begin_write().await?;
        let changed = move_deployment(&tx, c).await?;
        if matches!(changed, Changed::Done(..)) {
            tx.commit().await?;
        }
        Ok(changed)
    }

    /// The largest deployment revision sum, a cheap fingerprint servers
    /// poll to notice changes made by other processes.
    pub async fn deployments_fingerprint(&self) -> Result<(u64, i64)> {
        let rows = deployments::Entity::find()
            .select_only()
            .column(deployments::Column::Revision)
            .into_tuple::<i64>()
            .all(&self.db)
            .await?;
        Ok((rows.len() as u64, rows.iter().sum()))
    }
}

/// Move a deployment and record it, inside `tx` (the caller commits).
pub(crate) async fn move_deployment(
    tx: &sea_orm::DatabaseTransaction,
    c: NewChange,
) -> Result<Changed> {
    // The row stays locked until the commit (PostgreSQL; SQLite's write
    // transaction is already exclusive), so two changes at once cannot
    // both pass the check below.
    let current = deployments::Entity::find()
        .filter(deployments::Column::ModelName.eq(&c.model_name))
        .filter(deployments::Column::Environment.eq(&c.environment))
        .lock_exclusive()
        .one(tx)
        .await?;
    let serving = current.as_ref().map(|d| d.model_id);
    if serving != c.expected_from {
        return Ok(Changed::Conflict(current));
    }
    if serving == Some(c.to_model_id) {
        return Ok(Changed::Unchanged(current.expect("serving is some")));
    }
    // Checked under the row's lock, so an experiment cannot start between
    // this check and the move (an experiment's own end marks it ended
    // first, in the same transaction).
    if let Some(e) = super::experiments::running_on(tx, &c.model_name, &c.environment).await? {
        return Ok(Changed::Busy(e.name, e.kind));
    }
    let now = Utc::now();
    let row = match current {
        Some(d) => {
            let revision = d.revision + 1;
            let mut d: deployments::ActiveModel = d.into();
            d.model_id = Set(c.to_model_id);
            d.revision = Set(revision);
            d.updated_at = Set(now);
            d.update(tx).await?
        }
        None => {
            deployments::ActiveModel {
                model_name: Set(c.model_name.clone()),
                environment: Set(c.environment.clone()),
                model_id: Set(c.to_model_id),
                revision: Set(1),
                updated_at: Set(now),
                ..Default::default()
            }
            .insert(tx)
            .await?
        }
    };
    let history = record(tx, serving, c).await?;
    Ok(Changed::Done(row, Box::new(history)))
}

/// Add a history row.
pub(crate) async fn record(
    tx: &sea_orm::DatabaseTransaction,
    from: Option<i64>,
    c: NewChange,
) -> Result<HistoryRow> {
    Ok(deployment_history::ActiveModel {
        model_name: Set(c.model_name),
        environment: Set(c.environment),
        from_model_id: Set(from),
        to_model_id: Set(c.to_model_id),
        action: Set(c.action.as_str().to_owned()),
        how: Set(c.how.as_str().to_owned()),
        actor: Set(c.actor),
        reason: Set(c.reason),
        run_id: Set(c.run),
        at: Set(Utc::now()),
        ..Default::default()
    }
    .insert(tx)
    .await?)
}

/// Bump a deployment's revision inside `tx` without moving it (its
/// traffic split changed), so serving processes sync. Returns the row.
pub(crate) async fn touch(
    tx: &sea_orm::DatabaseTransaction,
    model_name: &str,
    environment: &str,
) -> Result<Option<DeploymentRow>> {
    let Some(d) = deployments::Entity::find()
        .filter(deployments::Column::ModelName.eq(model_name))
        .filter(deployments::Column::Environment.eq(environment))
        .lock_exclusive()
        .one(tx)
        .await?
    else {
        return Ok(None);
    };
    let revision = d.revision + 1;
    let mut a: deployments::ActiveModel = d.into();
    a.revision = Set(revision);
    a.updated_at = Set(Utc::now());
    Ok(Some(a.update(tx).await?))
}
