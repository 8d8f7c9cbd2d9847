//! The durable run queue: runs are rows before they are work. A run is
//! queued (written) before anything acts on it, claimed by a conditional
//! update, and — when the daemon stops or dies under it — put back in the
//! queue at start with its running steps marked interrupted.

use super::entities::{
    dataset_versions, models, run_logs, run_steps, training_runs, trigger_fires, workflow_versions,
};
use super::{ModelRow, RunRow, StepRow, Store, StoredExample, state};
use anyhow::Result;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};

pub use super::entities::run_logs::Model as LogRow;
pub use super::entities::trigger_fires::Model as FireRow;
pub use super::entities::workflow_versions::Model as WorkflowVersionRow;

/// Filters for listing runs, newest first.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub workflow: Option<String>,
    pub state: Option<String>,
    /// Only runs with a smaller id (paging).
    pub before: Option<i64>,
    pub limit: u64,
}

/// A log line on its way to the store.
#[derive(Debug, Clone)]
pub struct NewLog {
    pub run_id: i64,
    pub step_id: Option<String>,
    pub level: String,
    pub message: String,
    pub at: DateTime<Utc>,
}

/// A run the daemon found interrupted at start.
#[derive(Debug, Clone)]
pub struct Recovered {
    pub run: RunRow,
    /// Steps that were running, now marked interrupted.
    pub steps: Vec<String>,
    /// Their handles (`run_steps.handle`), where they had one.
    pub handles: Vec<String>,
}

/// A trigger fire to record.
#[derive(Debug, Clone)]
pub struct NewFire {
    pub workflow: String,
    pub kind: String,
    pub scheduled_for: DateTime<Utc>,
    pub outcome: String,
    pub detail: Option<String>,
    pub run_id: Option<i64>,
}

impl Store {
    pub async fn workflow_version(&self, hash: &str) -> Result<Option<WorkflowVersionRow>> {
        Ok(workflow_versions::Entity::find()
            .filter(workflow_versions::Column::Hash.eq(hash))
            .one(&self.db)
            .await?)
    }

    /// What a trigger fire does when it queues a run, in one write
    /// transaction (one commit per submission): keep the text of the
    /// workflow version and of the scripts it uses (once per hash), queue
    /// the run, record the fire with the run's id.
    #[allow(clippy::too_many_arguments)]
    pub async fn enqueue_fired(
        &self,
        version: (&str, &str, &str, &str),
        scripts: &std::collections::BTreeMap<std::path::PathBuf, String>,
        trigger: &str,
        scheduled_for: DateTime<Utc>,
        detail: Option<String>,
    ) -> Result<RunRow> {
        let tx = self.begin_write().await?;
        insert_version(&tx, version, scripts).await?;
        let run = insert_run(&tx, version.0, version.1, version.2, trigger).await?;
        let workflow = version.0;
        let now = run.queued_at.unwrap_or_else(Utc::now);
        trigger_fires::ActiveModel {
            workflow: Set(workflow.to_owned()),
            kind: Set(trigger.to_owned()),
            scheduled_for: Set(scheduled_for),
            fired_at: Set(now),
            outcome: Set("queued".to_owned()),
            detail: Set(detail),
            run_id: Set(Some(run.id)),
            ..Default::default()
        }
        .insert(&tx)
        .await?;
        tx.commit().await?;
        Ok(run)
    }

    /// Runs waiting for the executor, oldest first.
    pub async fn queued_runs(&self) -> Result<Vec<RunRow>> {
        Ok(training_runs::Entity::find()
            .filter(training_runs::Column::State.eq(state::QUEUED))
            .order_by_asc(training_runs::Column::Id)
            .all(&self.db)
            .await?)
    }

    /// Take a queued run for daemon `instance`; `false` when it is no longer
    /// queued (cancelled, or taken by another daemon).
    pub async fn claim_run(&self, id: i64, instance: &str) -> Result<bool> {
        let res = training_runs::Entity::update_many()
            .col_expr(training_runs::Column::State, Expr::value(state::RUNNING))
            .col_expr(training_runs::Column::Executor, Expr::value(instance))
            .col_expr(training_runs::Column::StartedAt, Expr::value(Utc::now()))
            .filter(training_runs::Column::Id.eq(id))
            .filter(training_runs::Column::State.eq(state::QUEUED))
            .exec(&self.db)
            .await?;
        Ok(res.rows_affected == 1)
    }

    /// Cancel a run that has not started; `false` when it is not queued.
    pub async fn cancel_queued(&self, id: i64, reason: &str) -> Result<bool> {
        let res = training_runs::Entity::update_many()
            .col_expr(training_runs::Column::State, Expr::value(state::CANCELLED))
            .col_expr(training_runs::Column::Error, Expr::value(reason))
            .col_expr(training_runs::Column::FinishedAt, Expr::value(Utc::now()))
            .filter(training_runs::Column::Id.eq(id))
            .filter(training_runs::Column::State.eq(state::QUEUED))
            .exec(&self.db)
            .await?;
        Ok(res.rows_affected == 1)
    }

    /// Put a run the daemon stopped between steps back in the queue.
    pub async fn requeue_run(&self, id: i64) -> Result<()> {
        training_runs::Entity::update_many()
            .col_expr(training_runs::Column::State, Expr::value(state::QUEUED))
            .col_expr(training_runs::Column::Executor, Expr::value("daemon"))
            .col_expr(
                training_runs::Column::Resumes,
                Expr::col(training_runs::Column::Resumes).add(1),
            )
            .filter(training_runs::Column::Id.eq(id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// At daemon start: every run daemon `instance` was executing when it
    /// stopped goes back in the queue, its running steps marked
    /// interrupted. Runs of other daemons sharing the database, and of
    /// `coach run` processes, are left alone.
    pub async fn recover_interrupted(&self, instance: &str) -> Result<Vec<Recovered>> {
        let tx = self.begin_write().await?;
        let runs = training_runs::Entity::find()
            .filter(training_runs::Column::State.eq(state::RUNNING))
            .filter(training_runs::Column::Executor.eq(instance))
            .order_by_asc(training_runs::Column::Id)
            .all(&tx)
            .await?;
        let mut out = Vec::new();
        for run in runs {
            let steps = run_steps::Entity::find()
                .filter(run_steps::Column::RunId.eq(run.id))
                .filter(run_steps::Column::State.eq(state::RUNNING))
                .all(&tx)
                .await?;
            run_steps::Entity::update_many()
                .col_expr(run_steps::Column::State, Expr::value(state::INTERRUPTED))
                .col_expr(
                    run_steps::Column::Error,
                    Expr::value("the daemon stopped while this step ran"),
                )
                .col_expr(run_steps::Column::FinishedAt, Expr::value(Utc::now()))
                .filter(run_steps::Column::RunId.eq(run.id))
                .filter(run_steps::Column::State.eq(state::RUNNING))
                .exec(&tx)
                .await?;
            training_runs::Entity::update_many()
                .col_expr(training_runs::Column::State, Expr::value(state::QUEUED))
                .col_expr(training_runs::Column::Executor, Expr::value("daemon"))
                .col_expr(
                    training_runs::Column::Resumes,
                    Expr::col(training_runs::Column::Resumes).add(1),
                )
                .filter(training_runs::Column::Id.eq(run.id))
                .exec(&tx)
                .await?;
            out.push(Recovered {
                run,
                handles: steps.iter().filter_map(|s| s.handle.clone()).collect(),
                steps: steps.into_iter().map(|s| s.step_id).collect(),
            });
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Queued or running runs of `workflow`.
    pub async fn active_runs_of(&self, workflow: &str) -> Result<u64> {
        Ok(training_runs::Entity::find()
            .filter(training_runs::Column::Workflow.eq(workflow))
            .filter(training_runs::Column::State.is_in([state::QUEUED, state::RUNNING]))
            .count(&self.db)
            .await?)
    }

    pub async fn list_runs(&self, f: &RunFilter) -> Result<Vec<RunRow>> {
        let mut q = training_runs::Entity::find();
        if let Some(w) = &f.workflow {
            q = q.filter(training_runs::Column::Workflow.eq(w.as_str()));
        }
        if let Some(s) = &f.state {
            q = q.filter(training_runs::Column::State.eq(s.as_str()));
        }
        if let Some(b) = f.before {
            q = q.filter(training_runs::Column::Id.lt(b));
        }
        Ok(q.order_by_desc(training_runs::Column::Id)
            .limit(f.limit)
            .all(&self.db)
            .await?)
    }

    /// How many runs are in each state.
    pub async fn run_counts(&self) -> Result<Vec<(String, i64)>> {
        Ok(training_runs::Entity::find()
            .select_only()
            .column(training_runs::Column::State)
            .column_as(training_runs::Column::Id.count(), "n")
            .group_by(training_runs::Column::State)
            .into_tuple::<(String, i64)>()
            .all(&self.db)
            .await?)
    }

    /// Every attempt of a run's steps, in order.
    pub async fn steps_of(&self, run_id: i64) -> Result<Vec<StepRow>> {
        Ok(run_steps::Entity::find()
            .filter(run_steps::Column::RunId.eq(run_id))
            .order_by_asc(run_steps::Column::Id)
            .all(&self.db)
            .await?)
    }

    pub async fn add_logs(&self, lines: &[NewLog]) -> Result<()> {
        for chunk in lines.chunks(500) {
            let rows = chunk.iter().map(|l| run_logs::ActiveModel {
                run_id: Set(l.run_id),
                step_id: Set(l.step_id.clone()),
                level: Set(l.level.clone()),
                message: Set(l.message.clone()),
                at: Set(l.at),
                ..Default::default()
            });
            run_logs::Entity::insert_many(rows).exec(&self.db).await?;
        }
        Ok(())
    }

    /// A run's log lines after line id `after`, oldest first.
    pub async fn run_logs(&self, run_id: i64, after: i64, limit: u64) -> Result<Vec<LogRow>> {
        Ok(run_logs::Entity::find()
            .filter(run_logs::Column::RunId.eq(run_id))
            .filter(run_logs::Column::Id.gt(after))
            .order_by_asc(run_logs::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?)
    }

    /// The model a run registered, if it did.
    pub async fn model_of_run(&self, run_id: i64) -> Result<Option<ModelRow>> {
        Ok(models::Entity::find()
            .filter(models::Column::RunId.eq(run_id))
            .order_by_asc(models::Column::Id)
            .one(&self.db)
            .await?)
    }

    /// A dataset snapshot's content hash and examples.
    pub async fn dataset_version(&self, id: i64) -> Result<Option<(String, Vec<StoredExample>)>> {
        let Some(v) = dataset_versions::Entity::find_by_id(id)
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        Ok(Some((v.content_hash, self.load_examples(id).await?)))
    }

    pub async fn record_fire(&self, f: NewFire) -> Result<()> {
        trigger_fires::ActiveModel {
            workflow: Set(f.workflow),
            kind: Set(f.kind),
            scheduled_for: Set(f.scheduled_for),
            fired_at: Set(Utc::now()),
            outcome: Set(f.outcome),
            detail: Set(f.detail),
            run_id: Set(f.run_id),
            ..Default::default()
        }
        .insert(&self.db)
        .await?;
        Ok(())
    }

    /// The latest scheduled time a cron trigger of `workflow` was handled
    /// (fired, skipped or recorded as missed).
    pub async fn last_cron_fire(&self, workflow: &str) -> Result<Option<DateTime<Utc>>> {
        Ok(trigger_fires::Entity::find()
            .filter(trigger_fires::Column::Workflow.eq(workflow))
            .filter(trigger_fires::Column::Kind.is_in(["cron", "catch-up"]))
            .order_by_desc(trigger_fires::Column::ScheduledFor)
            .one(&self.db)
            .await?
            .map(|f| f.scheduled_for))
    }

    pub async fn fires_of(&self, workflow: &str, limit: u64) -> Result<Vec<FireRow>> {
        Ok(trigger_fires::Entity::find()
            .filter(trigger_fires::Column::Workflow.eq(workflow))
            .order_by_desc(trigger_fires::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?)
    }
}

/// Keep a workflow version's text unless it is kept already.
async fn insert_version<C: sea_orm::ConnectionTrait>(
    db: &C,
    (workflow, file, hash, content): (&str, &str, &str, &str),
    scripts: &std::collections::BTreeMap<std::path::PathBuf, String>,
) -> Result<()> {
    let scripts: serde_json::Map<String, serde_json::Value> = scripts
        .iter()
        .map(|(p, s)| (p.display().to_string(), serde_json::Value::from(s.as_str())))
        .collect();
    workflow_versions::Entity::insert(workflow_versions::ActiveModel {
        hash: Set(hash.to_owned()),
        workflow: Set(workflow.to_owned()),
        file: Set(file.to_owned()),
        content: Set(content.to_owned()),
        scripts: Set(Some(serde_json::Value::Object(scripts).to_string())),
        created_at: Set(Utc::now()),
        ..Default::default()
    })
    .on_conflict_do_nothing_on([workflow_versions::Column::Hash])
    .exec(db)
    .await?;
    Ok(())
}

/// A queued run of workflow version `hash`.
async fn insert_run<C: sea_orm::ConnectionTrait>(
    db: &C,
    workflow: &str,
    file: &str,
    hash: &str,
    trigger: &str,
) -> Result<RunRow> {
    let now = Utc::now();
    Ok(training_runs::ActiveModel {
        workflow: Set(workflow.to_owned()),
        workflow_file: Set(file.to_owned()),
        workflow_hash: Set(hash.to_owned()),
        state: Set(state::QUEUED.to_owned()),
        error: Set(None),
        started_at: Set(now),
        finished_at: Set(None),
        trigger: Set(trigger.to_owned()),
        executor: Set("daemon".to_owned()),
        queued_at: Set(Some(now)),
        resumes: Set(0),
        ..Default::default()
    }
    .insert(db)
    .await?)
}
