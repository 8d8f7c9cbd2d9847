//! Experiments and canaries: starting one (checked against the deployment
//! in the transaction that records it), their state, ending one (with the
//! deployment change it decides, in the same transaction), and the per-arm
//! totals their results are computed from — one aggregate over the
//! conversations they answered, never a row loaded.

use super::Store;
use super::deployments::{self, Action, HistoryRow, How, NewChange};
use super::entities::{experiment_arms, experiment_units, experiments};
use crate::experiment::results::{RATIOS, Totals, VARIABLES};
use anyhow::Result;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, Statement,
};

pub use super::entities::experiments::Model as ExperimentRow;

/// An experiment's state.
pub const RUNNING: &str = "running";

/// Looks kept per experiment (the newest): days of looks a minute apart
/// that found something new.
pub const MAX_LOOKS: u64 = 2000;

/// An experiment or canary to start.
#[derive(Debug, Clone)]
pub struct NewExperiment {
    pub name: String,
    pub model_name: String,
    pub environment: String,
    /// `experiment` or `canary`.
    pub kind: String,
    pub spec: String,
    /// The version the environment must be serving.
    pub control_model_id: i64,
    /// The (first) treatment, for the history row.
    pub treatment_model_id: i64,
    pub source: String,
    pub created_by: String,
    pub how: How,
    pub reason: String,
    pub run: Option<i64>,
}

/// Why an experiment did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "`{model}` has no deployment to {environment}; deploy a version first (`coach deploy {model}:VERSION --env {environment}`)"
    )]
    NotDeployed { model: String, environment: String },
    #[error(
        "{environment} of `{model}` serves model {serving}, not the control's model {control}; name the version it serves"
    )]
    ControlNotServed {
        model: String,
        environment: String,
        serving: i64,
        control: i64,
    },
    #[error(
        "experiment `{running}` is already running on {environment} of `{model}`; stop it first"
    )]
    Busy {
        model: String,
        environment: String,
        running: String,
    },
    #[error("an experiment named `{0}` exists already ({1}); give the new one another name")]
    Exists(String, String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// How an experiment ends.
#[derive(Debug, Clone)]
pub struct End {
    /// `promoted`, `rolled_back` or `stopped`.
    pub state: &'static str,
    /// `promote`, `rollback` or `stop`.
    pub decision: &'static str,
    pub reason: String,
    /// The history row: a deploy that moves the deployment (promote), or
    /// a rollback of the treatment's traffic that leaves it.
    pub change: NewChange,
    pub moves: bool,
}

/// What ending did.
#[derive(Debug, Clone)]
pub enum Ended {
    Done(Box<HistoryRow>),
    /// It had ended already (another process ended it first).
    AlreadyEnded(String),
    /// The deployment moved under it (a promote that would overwrite it).
    Conflict,
}

impl Store {
    /// Start an experiment: in one transaction, check the deployment
    /// serves the control and no other experiment runs there, then record
    /// the experiment and a `split` in the deployment's history.
    pub async fn start_experiment(&self, e: NewExperiment) -> Result<ExperimentRow, StartError> {
        let tx = self.begin_write().await?;
        let Some(d) = deployments::touch(&tx, &e.model_name, &e.environment).await? else {
            return Err(StartError::NotDeployed {
                model: e.model_name,
                environment: e.environment,
            });
        };
        if d.model_id != e.control_model_id {
            return Err(StartError::ControlNotServed {
                model: e.model_name,
                environment: e.environment,
                serving: d.model_id,
                control: e.control_model_id,
            });
        }
        if let Some(other) = running_on(&tx, &e.model_name, &e.environment).await? {
            return Err(StartError::Busy {
                model: e.model_name,
                environment: e.environment,
                running: other.name,
            });
        }
        if let Some(old) = experiments::Entity::find()
            .filter(experiments::Column::Name.eq(&e.name))
            .one(&tx)
            .await
            .map_err(anyhow::Error::from)?
        {
            return Err(StartError::Exists(old.name, old.state));
        }
        let now = Utc::now();
        let row = experiments::ActiveModel {
            name: Set(e.name.clone()),
            model_name: Set(e.model_name.clone()),
            environment: Set(e.environment.clone()),
            kind: Set(e.kind),
            state: Set(RUNNING.to_owned()),
            spec: Set(e.spec),
            control_model_id: Set(e.control_model_id),
            source: Set(e.source),
            created_by: Set(e.created_by.clone()),
            started_at: Set(now),
            ended_at: Set(None),
            decision: Set(None),
            reason: Set(None),
            step: Set(0),
            step_started_at: Set(now),
            counters: Set(None),
            ..Default::default()
        }
        .insert(&tx)
        .await
        .map_err(anyhow::Error::from)?;
        deployments::record(
            &tx,
            Some(e.control_model_id),
            NewChange {
                model_name: e.model_name,
                environment: e.environment,
                to_model_id: e.treatment_model_id,
                expected_from: Some(e.control_model_id),
                action: Action::Split,
                how: e.how,
                actor: e.created_by,
                reason: Some(e.reason),
                run: e.run,
            },
        )
        .await?;
        tx.commit().await.map_err(anyhow::Error::from)?;
        Ok(row)
    }

    pub async fn experiment(&self, name: &str) -> Result<Option<ExperimentRow>> {
        Ok(experiments::Entity::find()
            .filter(experiments::Column::Name.eq(name))
            .one(&self.db)
            .await?)
    }

    /// Experiments, newest first (of one model name when given; running
    /// ones only when asked).
    pub async fn experiments(
        &self,
        model_name: Option<&str>,
        running_only: bool,
    ) -> Result<Vec<ExperimentRow>> {
        let mut q = experiments::Entity::find();
        if let Some(m) = model_name {
            q = q.filter(experiments::Column::ModelName.eq(m));
        }
        if running_only {
            q = q.filter(experiments::Column::State.eq(RUNNING));
        }
        Ok(q.order_by_desc(experiments::Column::Id)
            .all(&self.db)
            .await?)
    }

    /// The name of every experiment ever started, with where it came from.
    pub async fn experiment_names(&self) -> Result<std::collections::HashMap<String, String>> {
        Ok(experiments::Entity::find()
            .select_only()
            .column(experiments::Column::Name)
            .column(experiments::Column::Source)
            .into_tuple::<(String, String)>()
            .all(&self.db)
            .await?
            .into_iter()
            .collect())
    }

    /// The experiment running on `environment` of `model_name`, if one is.
    pub async fn running_experiment(
        &self,
        model_name: &str,
        environment: &str,
    ) -> Result<Option<ExperimentRow>> {
        running_on(&self.db, model_name, environment).await
    }

    /// Per-arm totals of experiment `id`, as logging keeps them: a row per
    /// arm, however many events it has seen.
    pub async fn experiment_totals(&self, id: i64) -> Result<Vec<(String, Totals)>> {
        experiment_arms::Entity::find()
            .filter(experiment_arms::Column::ExperimentId.eq(id))
            .order_by_asc(experiment_arms::Column::Arm)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|r| Ok((r.arm, serde_json::from_str(&r.totals)?)))
            .collect()
    }

    /// Per-arm totals of experiment `id` computed from its conversations
    /// (each unit's counters summed over its conversations, then per arm
    /// the sums, sums of squares and the ratio metrics' cross products):
    /// one query over every conversation, what the running totals must
    /// equal.
    pub async fn experiment_totals_scan(&self, id: i64) -> Result<Vec<(String, Totals)>> {
        let unit_columns = [
            "COUNT(*)",
            "SUM(user_messages)",
            "SUM(fallbacks)",
            "SUM(rated)",
            "SUM(positive)",
            "SUM(negative)",
            "SUM(corrections)",
            "SUM(CASE WHEN escalated THEN 1 ELSE 0 END)",
            "SUM(CASE WHEN outcome = 'resolved' THEN 1 ELSE 0 END)",
        ];
        debug_assert_eq!(unit_columns.len(), VARIABLES.len());
        let inner: Vec<String> = unit_columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c} AS v{i}"))
            .collect();
        let f = |e: String| format!("CAST(SUM({e}) AS DOUBLE PRECISION)");
        let mut outer = vec!["arm".to_owned(), "COUNT(*)".to_owned()];
        for i in 0..VARIABLES.len() {
            outer.push(f(format!("v{i}")));
        }
        for i in 0..VARIABLES.len() {
            outer.push(f(format!("v{i} * v{i}")));
        }
        for (_, m, d) in RATIOS {
            outer.push(f(format!("v{m} * v{d}")));
        }
        let backend = self.db.get_database_backend();
        let placeholder = match backend {
            sea_orm::DbBackend::Postgres => "$1",
            _ => "?",
        };
        let sql = format!(
            "SELECT {} FROM (SELECT arm, unit, {} FROM conversations WHERE experiment_id = {placeholder} GROUP BY arm, unit) u GROUP BY arm",
            outer.join(", "),
            inner.join(", ")
        );
        let rows = self
            .db
            .query_all_raw(Statement::from_sql_and_values(backend, sql, [id.into()]))
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let arm: String = r.try_get_by_index(0)?;
            let units: i64 = r.try_get_by_index(1)?;
            let mut t = Totals {
                units: units.max(0) as u64,
                ..Totals::default()
            };
            let get = |i: usize| -> Result<f64> {
                Ok(r.try_get_by_index::<Option<f64>>(i)?.unwrap_or(0.0))
            };
            let n = VARIABLES.len();
            for i in 0..n {
                t.sums[i] = get(2 + i)?;
                t.squares[i] = get(2 + n + i)?;
            }
            for i in 0..RATIOS.len() {
                t.cross[i] = get(2 + 2 * n + i)?;
            }
            out.push((arm, t));
        }
        Ok(out)
    }

    /// Rebuild experiment `id`'s running totals and unit counters from its
    /// conversations (a repair; logging keeps them otherwise).
    pub async fn rebuild_experiment_totals(&self, id: i64) -> Result<()> {
        let scan = self.experiment_totals_scan(id).await?;
        let tx = self.begin_write().await?;
        let backend = self.db.get_database_backend();
        let p = match backend {
            sea_orm::DbBackend::Postgres => "$1",
            _ => "?",
        };
        for table in ["experiment_units", "experiment_arms"] {
            tx.execute_raw(Statement::from_sql_and_values(
                backend,
                format!("DELETE FROM {table} WHERE experiment_id = {p}"),
                [id.into()],
            ))
            .await?;
        }
        tx.execute_raw(Statement::from_sql_and_values(
            backend,
            format!(
                "INSERT INTO experiment_units (experiment_id, arm, unit, counters) \
                 SELECT experiment_id, arm, unit, '[' || COUNT(*) || ',' || SUM(user_messages) || ',' || SUM(fallbacks) || ',' || SUM(rated) || ',' || SUM(positive) || ',' || SUM(negative) || ',' || SUM(corrections) || ',' || SUM(CASE WHEN escalated THEN 1 ELSE 0 END) || ',' || SUM(CASE WHEN outcome = 'resolved' THEN 1 ELSE 0 END) || ']' \
                 FROM conversations WHERE experiment_id = {p} AND arm IS NOT NULL AND unit IS NOT NULL GROUP BY experiment_id, arm, unit"
            ),
            [id.into()],
        ))
        .await?;
        for (arm, totals) in scan {
            experiment_arms::ActiveModel {
                experiment_id: Set(id),
                arm: Set(arm),
                totals: Set(serde_json::to_string(&totals)?),
                ..Default::default()
            }
            .insert(&tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Keep what a look at experiment `id` found (`primary`, JSON), and
    /// only the newest [`MAX_LOOKS`] of its looks.
    pub async fn save_look(&self, id: i64, primary: &str) -> Result<()> {
        use super::entities::experiment_looks;
        experiment_looks::ActiveModel {
            experiment_id: Set(id),
            at: Set(Utc::now()),
            primary: Set(primary.to_owned()),
            ..Default::default()
        }
        .insert(&self.db)
        .await?;
        let old = experiment_looks::Entity::find()
            .filter(experiment_looks::Column::ExperimentId.eq(id))
            .order_by_desc(experiment_looks::Column::Id)
            .offset(MAX_LOOKS)
            .limit(1)
            .one(&self.db)
            .await?;
        if let Some(o) = old {
            experiment_looks::Entity::delete_many()
                .filter(experiment_looks::Column::ExperimentId.eq(id))
                .filter(experiment_looks::Column::Id.lte(o.id))
                .exec(&self.db)
                .await?;
        }
        Ok(())
    }

    /// The looks kept of experiment `id`, oldest first: (when, JSON).
    pub async fn looks(&self, id: i64) -> Result<Vec<(DateTime<Utc>, serde_json::Value)>> {
        use super::entities::experiment_looks;
        Ok(experiment_looks::Entity::find()
            .filter(experiment_looks::Column::ExperimentId.eq(id))
            .order_by_asc(experiment_looks::Column::Id)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|l| (l.at, serde_json::from_str(&l.primary).unwrap_or_default()))
            .collect())
    }

    /// Save the serving daemon's request counts of experiment `id`.
    pub async fn save_experiment_counters(&self, id: i64, counters: &str) -> Result<()> {
        experiments::Entity::update_many()
            .col_expr(experiments::Column::Counters, Expr::value(counters))
            .filter(experiments::Column::Id.eq(id))
            .filter(experiments::Column::State.eq(RUNNING))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Move a canary to `step` (with its new spec: the weights) and record
    /// the split; `false` when it is no longer running at `from_step`.
    pub async fn advance_canary(
        &self,
        id: i64,
        from_step: i32,
        step: i32,
        spec: &str,
        change: NewChange,
    ) -> Result<bool> {
        let tx = self.begin_write().await?;
        let now = Utc::now();
        let done = experiments::Entity::update_many()
            .col_expr(experiments::Column::Step, Expr::value(step))
            .col_expr(experiments::Column::StepStartedAt, Expr::value(now))
            .col_expr(experiments::Column::Spec, Expr::value(spec))
            .col_expr(experiments::Column::Counters, Expr::value(None::<String>))
            .filter(experiments::Column::Id.eq(id))
            .filter(experiments::Column::State.eq(RUNNING))
            .filter(experiments::Column::Step.eq(from_step))
            .exec(&tx)
            .await?
            .rows_affected
            == 1;
        if !done {
            return Ok(false);
        }
        deployments::touch(&tx, &change.model_name, &change.environment).await?;
        let from = change.expected_from;
        deployments::record(&tx, from, change).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// End experiment `id` as `end` says, with its deployment change, in
    /// one transaction.
    pub async fn end_experiment(&self, id: i64, end: End) -> Result<Ended> {
        let tx = self.begin_write().await?;
        let now = Utc::now();
        let done = experiments::Entity::update_many()
            .col_expr(experiments::Column::State, Expr::value(end.state))
            .col_expr(experiments::Column::Decision, Expr::value(end.decision))
            .col_expr(experiments::Column::Reason, Expr::value(end.reason.clone()))
            .col_expr(experiments::Column::EndedAt, Expr::value(now))
            .filter(experiments::Column::Id.eq(id))
            .filter(experiments::Column::State.eq(RUNNING))
            .exec(&tx)
            .await?
            .rows_affected
            == 1;
        if !done {
            let state = experiments::Entity::find_by_id(id)
                .one(&tx)
                .await?
                .map(|e| e.state)
                .unwrap_or_default();
            return Ok(Ended::AlreadyEnded(state));
        }
        let history = if end.moves {
            match deployments::move_deployment(&tx, end.change).await? {
                deployments::Changed::Done(_, h) => *h,
                deployments::Changed::Unchanged(_)
                | deployments::Changed::Conflict(_)
                | deployments::Changed::Busy(..) => {
                    return Ok(Ended::Conflict);
                }
            }
        } else {
            deployments::touch(&tx, &end.change.model_name, &end.change.environment).await?;
            let from = end.change.expected_from;
            deployments::record(&tx, from, end.change).await?
        };
        tx.commit().await?;
        Ok(Ended::Done(Box::new(history)))
    }
}

/// Move unit `unit` of `arm` by a conversation whose counters went from
/// `old` to `new`, and the arm's totals with it (both rows locked until
/// the commit, unit first).
pub(crate) async fn move_unit(
    tx: &sea_orm::DatabaseTransaction,
    experiment: i64,
    arm: &str,
    unit: &str,
    old: &[f64; 9],
    new: &[f64; 9],
) -> Result<()> {
    // Rows are made first if missing (another transaction may be making
    // the same one: PostgreSQL does not serialise writers as SQLite does),
    // then locked, read and moved.
    let zero = serde_json::to_string(&[0.0; 9])?;
    let unit_row = || {
        experiment_units::Entity::find()
            .filter(experiment_units::Column::ExperimentId.eq(experiment))
            .filter(experiment_units::Column::Arm.eq(arm))
            .filter(experiment_units::Column::Unit.eq(unit))
            .lock_exclusive()
    };
    let row = match unit_row().one(tx).await? {
        Some(r) => r,
        None => {
            experiment_units::Entity::insert(experiment_units::ActiveModel {
                experiment_id: Set(experiment),
                arm: Set(arm.to_owned()),
                unit: Set(unit.to_owned()),
                counters: Set(zero),
                ..Default::default()
            })
            .on_conflict_do_nothing_on([
                experiment_units::Column::ExperimentId,
                experiment_units::Column::Arm,
                experiment_units::Column::Unit,
            ])
            .exec_without_returning(tx)
            .await?;
            unit_row()
                .one(tx)
                .await?
                .ok_or_else(|| anyhow::anyhow!("experiment unit `{unit}` vanished"))?
        }
    };
    let before: [f64; 9] = serde_json::from_str(&row.counters)?;
    let mut after = before;
    for i in 0..9 {
        after[i] += new[i] - old[i];
    }
    let mut a: experiment_units::ActiveModel = row.into();
    a.counters = Set(serde_json::to_string(&after)?);
    a.update(tx).await?;
    let arm_row = || {
        experiment_arms::Entity::find()
            .filter(experiment_arms::Column::ExperimentId.eq(experiment))
            .filter(experiment_arms::Column::Arm.eq(arm))
            .lock_exclusive()
    };
    let row = match arm_row().one(tx).await? {
        Some(r) => r,
        None => {
            experiment_arms::Entity::insert(experiment_arms::ActiveModel {
                experiment_id: Set(experiment),
                arm: Set(arm.to_owned()),
                totals: Set(serde_json::to_string(&Totals::default())?),
                ..Default::default()
            })
            .on_conflict_do_nothing_on([
                experiment_arms::Column::ExperimentId,
                experiment_arms::Column::Arm,
            ])
            .exec_without_returning(tx)
            .await?;
            arm_row()
                .one(tx)
                .await?
                .ok_or_else(|| anyhow::anyhow!("experiment arm `{arm}` vanished"))?
        }
    };
    let mut totals: Totals = serde_json::from_str(&row.totals)?;
    totals.move_unit(&before, &after);
    let mut a: experiment_arms::ActiveModel = row.into();
    a.totals = Set(serde_json::to_string(&totals)?);
    a.update(tx).await?;
    Ok(())
}

pub(crate) async fn running_on<C: ConnectionTrait>(
    db: &C,
    model_name: &str,
    environment: &str,
) -> Result<Option<ExperimentRow>> {
    Ok(experiments::Entity::find()
        .filter(experiments::Column::ModelName.eq(model_name))
        .filter(experiments::Column::Environment.eq(environment))
        .filter(experiments::Column::State.eq(RUNNING))
        .one(db)
        .await?)
}
