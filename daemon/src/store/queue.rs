//! The durable run queue: runs are rows before they are work. A run is
//! written — with its workflow version, its trigger fire and the
//! workflow's concurrency policy, in one transaction — before anything
//! acts on it; claimed by a conditional update; and, when its process
//! stops or dies under it, put back in the queue (a daemon's runs) or
//! marked interrupted (a `coach run` process's).

use super::entities::{
    dataset_versions, models, run_logs, run_steps, training_runs, trigger_fires, workflow_versions,
};
use super::{ModelRow, RunRow, StepRow, Store};
use crate::core::example::Example;
use crate::core::ids::RunId;
use crate::core::state::{FireOutcome, RunState, StepState, TriggerKind};
use crate::events::LogLine;
use anyhow::Result;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Set, Statement,
};
use std::collections::BTreeMap;
use std::path::PathBuf;

pub use super::entities::run_logs::Model as LogRow;
pub use super::entities::trigger_fires::Model as FireRow;
pub use super::entities::workflow_versions::Model as WorkflowVersionRow;

/// Resumes after which a run the daemon was executing when it stopped is
/// failed instead of resumed again (a run that crashes the daemon would
/// otherwise crash every start).
pub const MAX_RESUMES: i32 = 10;

/// Filters for listing runs, newest first.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub workflow: Option<String>,
    pub state: Option<RunState>,
    /// Only runs with a smaller id (paging).
    pub before: Option<i64>,
    pub limit: u64,
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
    pub kind: TriggerKind,
    pub scheduled_for: DateTime<Utc>,
    pub outcome: FireOutcome,
    pub detail: Option<String>,
    pub run_id: Option<RunId>,
}

/// A run to write, with everything its row depends on.
#[derive(Debug, Clone)]
pub struct Submission<'a> {
    pub workflow: &'a str,
    /// The workflow's file, as the run names it.
    pub file: &'a str,
    /// The version: SHA-256 of the text and the scripts it uses.
    pub hash: &'a str,
    pub text: &'a str,
    pub scripts: &'a BTreeMap<PathBuf, String>,
    pub trigger: TriggerKind,
    pub scheduled_for: DateTime<Utc>,
    /// Why it fired (a condition script's reason).
    pub detail: Option<String>,
    /// The workflow's concurrency is `forbid`: refuse while a run of it is
    /// queued or running.
    pub exclusive: bool,
    /// `None`: queue it for a daemon. `Some(me)`: it starts now, run by
    /// executor `me` (a `coach run` process), and no daemon takes it.
    pub claimed_by: Option<&'a str>,
}

/// What a submission came to.
#[derive(Debug, Clone)]
pub enum Submitted {
    /// The run is written (queued, or running for its claimant).
    Run(RunRow),
    /// `exclusive`, and this run of the workflow is active; the fire is
    /// recorded as skipped.
    Refused { active: RunRow },
}

impl Store {
    pub async fn workflow_version(&self, hash: &str) -> Result<Option<WorkflowVersionRow>> {
        Ok(workflow_versions::Entity::find()
            .filter(workflow_versions::Column::Hash.eq(hash))
            .one(&self.db)
            .await?)
    }

    /// Write a run in one transaction (one commit per submission): apply
    /// the concurrency policy, keep the text of the workflow version and
    /// of the scripts it uses (once per hash), write the run, and record
    /// the fire with what came of it.
    ///
    /// Two submissions of an `exclusive` workflow never both pass: SQLite
    /// takes its write lock at `BEGIN`, and PostgreSQL takes an advisory
    /// lock on the workflow's name for the transaction, before either
    /// counts the active runs.
    pub async fn submit(&self, s: Submission<'_>) -> Result<Submitted> {
        let tx = self.begin_write().await?;
        if s.exclusive && tx.get_database_backend() == DbBackend::Postgres {
            tx.execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 4242))",
                [format!("coach-submit:{}", s.workflow).into()],
            ))
            .await?;
        }
        let fire = |outcome: FireOutcome, run: Option<i64>, detail: Option<String>| {
            trigger_fires::ActiveModel {
                workflow: Set(s.workflow.to_owned()),
                kind: Set(s.trigger),
                scheduled_for: Set(s.scheduled_for),
                fired_at: Set(Utc::now()),
                outcome: Set(outcome),
                detail: Set(detail),
                run_id: Set(run),
                ..Default::default()
            }
        };
        if s.exclusive
            && let Some(active) = training_runs::Entity::find()
                .filter(training_runs::Column::Workflow.eq(s.workflow))
                .filter(training_runs::Column::State.is_in([RunState::Queued, RunState::Running]))
                .order_by_asc(training_runs::Column::Id)
                .one(&tx)
                .await?
        {
            let why = format!(
                "run {} is {} and the workflow's concurrency is `forbid`",
                active.id, active.state
            );
            fire(FireOutcome::Skipped, None, Some(why))
                .insert(&tx)
                .await?;
            tx.commit().await?;
            return Ok(Submitted::Refused { active });
        }
        insert_version(&tx, &s).await?;
        let now = Utc::now();
        let run = training_runs::ActiveModel {
            workflow: Set(s.workflow.to_owned()),
            workflow_file: Set(s.file.to_owned()),
            workflow_hash: Set(s.hash.to_owned()),
            state: Set(if s.claimed_by.is_some() {
                RunState::Running
            } else {
                RunState::Queued
            }),
            error: Set(None),
            started_at: Set(now),
            finished_at: Set(None),
            trigger: Set(s.trigger),
            executor: Set(s.claimed_by.unwrap_or("daemon").to_owned()),
            queued_at: Set(Some(now)),
            resumes: Set(0),
            ..Default::default()
        }
        .insert(&tx)
        .await?;
        fire(FireOutcome::Queued, Some(run.id), s.detail.clone())
            .insert(&tx)
            .await?;
        tx.commit().await?;
        Ok(Submitted::Run(run))
    }

    /// Runs waiting for the executor, oldest first.
    pub async fn queued_runs(&self) -> Result<Vec<RunRow>> {
        Ok(training_runs::Entity::find()
            .filter(training_runs::Column::State.eq(RunState::Queued))
            .order_by_asc(training_runs::Column::Id)
            .all(&self.db)
            .await?)
    }

    /// Take a queued run for daemon `instance`; `false` when it is no longer
    /// queued (cancelled, or taken by another daemon).
    pub async fn claim_run(&self, id: RunId, instance: &str) -> Result<bool> {
        let res = training_runs::Entity::update_many()
            .col_expr(
                training_runs::Column::State,
                Expr::value(RunState::Running.as_str()),
            )
            .col_expr(training_runs::Column::Executor, Expr::value(instance))
            .col_expr(training_runs::Column::StartedAt, Expr::value(Utc::now()))
            .filter(training_runs::Column::Id.eq(id.0))
            .filter(training_runs::Column::State.eq(RunState::Queued))
            .exec(&self.db)
            .await?;
        Ok(res.rows_affected == 1)
    }

    /// Cancel a run that has not started; `false` when it is not queued.
    pub async fn cancel_queued(&self, id: RunId, reason: &str) -> Result<bool> {
        let res = training_runs::Entity::update_many()
            .col_expr(
                training_runs::Column::State,
                Expr::value(RunState::Cancelled.as_str()),
            )
            .col_expr(training_runs::Column::Error, Expr::value(reason))
            .col_expr(training_runs::Column::FinishedAt, Expr::value(Utc::now()))
            .filter(training_runs::Column::Id.eq(id.0))
            .filter(training_runs::Column::State.eq(RunState::Queued))
            .exec(&self.db)
            .await?;
        Ok(res.rows_affected == 1)
    }

    /// Put a run the daemon stopped between steps back in the queue.
    pub async fn requeue_run(&self, id: RunId) -> Result<()> {
        training_runs::Entity::update_many()
            .col_expr(
                training_runs::Column::State,
                Expr::value(RunState::Queued.as_str()),
            )
            .col_expr(training_runs::Column::Executor, Expr::value("daemon"))
            .col_expr(
                training_runs::Column::Resumes,
                Expr::col(training_runs::Column::Resumes).add(1),
            )
            .filter(training_runs::Column::Id.eq(id.0))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// At daemon start: every run daemon `instance` was executing when it
    /// stopped goes back in the queue, its running steps marked
    /// interrupted — unless it was resumed [`MAX_RESUMES`] times already:
    /// then it fails. Runs of other daemons sharing the database, and of
    /// `coach run` processes, are left alone.
    pub async fn recover_interrupted(&self, instance: &str) -> Result<Vec<Recovered>> {
        let tx = self.begin_write().await?;
        let runs = training_runs::Entity::find()
            .filter(training_runs::Column::State.eq(RunState::Running))
            .filter(training_runs::Column::Executor.eq(instance))
            .order_by_asc(training_runs::Column::Id)
            .all(&tx)
            .await?;
        let mut out = Vec::new();
        for run in runs {
            let steps = interrupt_steps(&tx, run.run_id()).await?;
            if run.resumes >= MAX_RESUMES {
                // A run that keeps taking the daemon down (memory, a
                // crash) would do it again at every start.
                let why = format!(
                    "the daemon stopped during this run {} times; it is not resumed again, so that it cannot keep taking the daemon down (see the daemon's log for what stopped it)",
                    run.resumes + 1
                );
                tracing::error!(run = run.id, workflow = %run.workflow, "{why}");
                training_runs::ActiveModel {
                    id: Set(run.id),
                    state: Set(RunState::Failed),
                    error: Set(Some(why)),
                    finished_at: Set(Some(Utc::now())),
                    ..Default::default()
                }
                .update(&tx)
                .await?;
                continue;
            }
            training_runs::Entity::update_many()
                .col_expr(
                    training_runs::Column::State,
                    Expr::value(RunState::Queued.as_str()),
                )
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

    /// Running runs whose executor starts with `prefix` (`cli:<host>:`:
    /// the `coach run` processes of one machine).
    pub async fn running_runs_of(&self, prefix: &str) -> Result<Vec<RunRow>> {
        Ok(training_runs::Entity::find()
            .filter(training_runs::Column::State.eq(RunState::Running))
            .filter(training_runs::Column::Executor.starts_with(prefix))
            .order_by_asc(training_runs::Column::Id)
            .all(&self.db)
            .await?)
    }

    /// End a running run whose process is gone for good: its running steps
    /// and the run become `interrupted`, with `why`. Only while it is still
    /// running for `executor`; returns what was interrupted then.
    pub async fn interrupt_run(
        &self,
        id: RunId,
        executor: &str,
        why: &str,
    ) -> Result<Option<Recovered>> {
        let tx = self.begin_write().await?;
        let Some(run) = training_runs::Entity::find_by_id(id.0)
            .filter(training_runs::Column::State.eq(RunState::Running))
            .filter(training_runs::Column::Executor.eq(executor))
            .one(&tx)
            .await?
        else {
            return Ok(None);
        };
        let steps = interrupt_steps(&tx, id).await?;
        training_runs::ActiveModel {
            id: Set(id.0),
            state: Set(RunState::Interrupted),
            error: Set(Some(why.to_owned())),
            finished_at: Set(Some(Utc::now())),
            ..Default::default()
        }
        .update(&tx)
        .await?;
        tx.commit().await?;
        Ok(Some(Recovered {
            run,
            handles: steps.iter().filter_map(|s| s.handle.clone()).collect(),
            steps: steps.into_iter().map(|s| s.step_id).collect(),
        }))
    }

    /// A run's state and error, if it exists.
    pub async fn run_state(&self, id: RunId) -> Result<Option<(RunState, Option<String>)>> {
        Ok(training_runs::Entity::find_by_id(id.0)
            .one(&self.db)
            .await?
            .map(|r| (r.state, r.error)))
    }

    /// Queued or running runs of `workflow`.
    pub async fn active_runs_of(&self, workflow: &str) -> Result<u64> {
        Ok(training_runs::Entity::find()
            .filter(training_runs::Column::Workflow.eq(workflow))
            .filter(training_runs::Column::State.is_in([RunState::Queued, RunState::Running]))
            .count(&self.db)
            .await?)
    }

    pub async fn list_runs(&self, f: &RunFilter) -> Result<Vec<RunRow>> {
        let mut q = training_runs::Entity::find();
        if let Some(w) = &f.workflow {
            q = q.filter(training_runs::Column::Workflow.eq(w.as_str()));
        }
        if let Some(s) = f.state {
            q = q.filter(training_runs::Column::State.eq(s));
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
    pub async fn run_counts(&self) -> Result<Vec<(RunState, i64)>> {
        Ok(training_runs::Entity::find()
            .select_only()
            .column(training_runs::Column::State)
            .column_as(training_runs::Column::Id.count(), "n")
            .group_by(training_runs::Column::State)
            .into_tuple::<(RunState, i64)>()
            .all(&self.db)
            .await?)
    }

    /// Every attempt of a run's steps, in order.
    pub async fn steps_of(&self, run_id: RunId) -> Result<Vec<StepRow>> {
        Ok(run_steps::Entity::find()
            .filter(run_steps::Column::RunId.eq(run_id.0))
            .order_by_asc(run_steps::Column::Id)
            .all(&self.db)
            .await?)
    }

    /// The evaluation of run `run_id`'s last evaluate step that
    /// succeeded, if it has one.
    pub async fn last_evaluation(
        &self,
        run_id: RunId,
    ) -> Result<Option<crate::core::evaluation::Report>> {
        use crate::core::output::{OutputKind, StepOutput};
        Ok(self
            .steps_of(run_id)
            .await?
            .into_iter()
            .filter(|s| s.action == "evaluate" && s.state == StepState::Succeeded)
            .filter_map(|s| {
                match StepOutput::from_stored(s.output.as_deref()?, OutputKind::Evaluation).ok()? {
                    StepOutput::Evaluation(r) => Some(r),
                    _ => None,
                }
            })
            .next_back())
    }

    pub async fn add_logs(&self, lines: &[LogLine]) -> Result<()> {
        for chunk in lines.chunks(500) {
            let rows = chunk.iter().map(|l| run_logs::ActiveModel {
                run_id: Set(l.run_id.0),
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
    pub async fn run_logs(&self, run_id: RunId, after: i64, limit: u64) -> Result<Vec<LogRow>> {
        Ok(run_logs::Entity::find()
            .filter(run_logs::Column::RunId.eq(run_id.0))
            .filter(run_logs::Column::Id.gt(after))
            .order_by_asc(run_logs::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?)
    }

    /// The model a run registered, if it did.
    pub async fn model_of_run(&self, run_id: RunId) -> Result<Option<ModelRow>> {
        Ok(models::Entity::find()
            .filter(models::Column::RunId.eq(run_id.0))
            .order_by_asc(models::Column::Id)
            .one(&self.db)
            .await?)
    }

    /// A dataset snapshot's content hash and examples.
    pub async fn dataset_version(&self, id: i64) -> Result<Option<(String, Vec<Example>)>> {
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
            run_id: Set(f.run_id.map(|r| r.0)),
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
            .filter(trigger_fires::Column::Kind.is_in([TriggerKind::Cron, TriggerKind::CatchUp]))
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

/// Write log lines to the store in batches until every sender is gone,
/// reporting each batch done (written or not) to `progress`.
pub async fn write_logs(
    store: Store,
    mut rx: tokio::sync::mpsc::Receiver<LogLine>,
    progress: std::sync::Arc<crate::events::LogProgress>,
) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, 512).await > 0 {
        if let Err(e) = store.add_logs(&batch).await {
            tracing::error!(lines = batch.len(), "cannot store run log lines: {e:#}");
        }
        progress.written(batch.len());
        batch.clear();
    }
}

/// Mark a run's running step attempts interrupted; returns them.
async fn interrupt_steps<C: ConnectionTrait>(db: &C, run: RunId) -> Result<Vec<StepRow>> {
    let steps = run_steps::Entity::find()
        .filter(run_steps::Column::RunId.eq(run.0))
        .filter(run_steps::Column::State.eq(StepState::Running))
        .all(db)
        .await?;
    run_steps::Entity::update_many()
        .col_expr(
            run_steps::Column::State,
            Expr::value(StepState::Interrupted.as_str()),
        )
        .col_expr(
            run_steps::Column::Error,
            Expr::value("the process running this step stopped while it ran"),
        )
        .col_expr(run_steps::Column::FinishedAt, Expr::value(Utc::now()))
        .filter(run_steps::Column::RunId.eq(run.0))
        .filter(run_steps::Column::State.eq(StepState::Running))
        .exec(db)
        .await?;
    Ok(steps)
}

/// Keep a workflow version's text unless it is kept already.
async fn insert_version<C: ConnectionTrait>(db: &C, s: &Submission<'_>) -> Result<()> {
    let scripts: serde_json::Map<String, serde_json::Value> = s
        .scripts
        .iter()
        .map(|(p, s)| (p.display().to_string(), serde_json::Value::from(s.as_str())))
        .collect();
    workflow_versions::Entity::insert(workflow_versions::ActiveModel {
        hash: Set(s.hash.to_owned()),
        workflow: Set(s.workflow.to_owned()),
        file: Set(s.file.to_owned()),
        content: Set(s.text.to_owned()),
        scripts: Set(Some(serde_json::Value::Object(scripts).to_string())),
        created_at: Set(Utc::now()),
        ..Default::default()
    })
    .on_conflict_do_nothing_on([workflow_versions::Column::Hash])
    .exec(db)
    .await?;
    Ok(())
}
