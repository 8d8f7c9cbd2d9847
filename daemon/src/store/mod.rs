//! All state, through sea-orm: SQLite under the data directory by default
//! (WAL), PostgreSQL by URL. Migrations run on connect. Typed queries live
//! here; the store never calls back into the pipeline.

pub mod analyses;
pub mod conversation_reads;
pub mod conversations;
pub mod deployments;
pub mod entities;
pub mod experiments;
pub mod health;
pub mod lease;
pub mod migration;
pub mod outcomes;
pub mod queue;
pub mod review;
pub mod tokens;

use crate::core::conversation::{Conversation, snapshot_hash};
use crate::core::example::Example;
use crate::core::ids::{ModelRef, RunId};
use crate::core::output::StepOutput;
use crate::core::state::{RunState, StepState};
use anyhow::{Context, Result};
use chrono::Utc;
use entities::{
    dataset_conversations, dataset_versions, datasets, examples, models, run_metrics, run_steps,
    training_runs,
};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectOptions, ConnectionTrait, Database, DatabaseConnection,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set, TransactionTrait,
};
use sea_orm_migration::MigratorTrait;

pub use entities::models::Model as ModelRow;
pub use entities::run_metrics::Model as MetricRow;
pub use entities::run_steps::Model as StepRow;
pub use entities::training_runs::Model as RunRow;

#[derive(Debug, Clone)]
pub struct Store {
    db: DatabaseConnection,
    health: std::sync::Arc<outcomes::WriteHealth>,
    /// What logging and feedback queue for review (`[review]`), shared by
    /// every clone and changed by a config reload.
    review: std::sync::Arc<std::sync::RwLock<crate::config::ReviewSettings>>,
}

/// A new model's row, before the store numbers it.
#[derive(Debug, Clone)]
pub struct NewModel {
    pub name: String,
    pub run_id: RunId,
    pub trainer_plugin: String,
    pub trainer_version: String,
    pub plugin_hash: String,
    pub artifact_hash: String,
    pub artifact_size: i64,
    /// The snapshot it was trained on, if any.
    pub dataset_version_id: Option<i64>,
    pub data_hash: String,
    pub config_hash: String,
    pub metrics: serde_json::Value,
    pub intents: Vec<String>,
    /// The model this one continued from (warm start).
    pub base_model_id: Option<i64>,
}

/// A dataset and its newest snapshot, for the dashboard.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DatasetSummary {
    pub dataset_id: i64,
    pub name: String,
    /// The newest snapshot's id.
    pub version: i64,
    pub content_hash: String,
    pub examples: i64,
    pub intents: i64,
    pub conversations: i64,
    pub origin: serde_json::Value,
    pub created_at: chrono::DateTime<Utc>,
    /// Snapshots among the recent ones read.
    pub versions: u64,
}

impl Store {
    /// Connect and migrate. For SQLite the file's folder is created and the
    /// journal switched to WAL.
    pub async fn connect(url: &str) -> Result<Store> {
        Store::open(url, false).await
    }

    /// [`Store::connect`] for a daemon starting: a SQLite store's
    /// integrity is checked first ([`health::check_at_start`]).
    pub async fn connect_checked(url: &str) -> Result<Store> {
        Store::open(url, true).await
    }

    async fn open(url: &str, check: bool) -> Result<Store> {
        if let Some(path) = sqlite_file(url)
            && let Some(dir) = std::path::Path::new(path).parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
        }
        let mut opts = ConnectOptions::new(url.to_owned());
        opts.sqlx_logging(false)
            .max_connections(if url.starts_with("sqlite") { 4 } else { 10 });
        // Every pooled SQLite connection: WAL, so readers never block the
        // writer, and a wait instead of an error while another process
        // (a CLI command beside a running workflow) holds the write lock.
        opts.map_sqlx_sqlite_opts(|o| {
            o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .busy_timeout(std::time::Duration::from_secs(10))
                .foreign_keys(true)
        });
        // Opening a new SQLite file switches it to WAL, which needs the
        // write lock at once; processes opening the store together take
        // turns through a lock file until the schema is in place.
        let _lock = match sqlite_file(url) {
            Some(path) => Some(lock_file(&format!("{path}.migrate-lock")).await?),
            None => None,
        };
        let opened = async {
            let db = Database::connect(opts)
                .await
                .with_context(|| format!("cannot open the database {}", redact(url)))?;
            if check && let Some(path) = sqlite_file(url) {
                health::check_at_start(&db, std::path::Path::new(path)).await?;
            }
            migrate(&db, url).await?;
            anyhow::Ok(db)
        };
        let db = match opened.await {
            Ok(db) => db,
            // A full disk shows as many SQLite errors ("disk I/O error",
            // "database or disk is full"); say it plainly.
            Err(e) => {
                let path = sqlite_file(url).map(std::path::Path::new);
                if let Some(p) = path
                    && health::says_damaged(&e)
                {
                    return Err(health::damaged(
                        p,
                        &format!("SQLite cannot read it: {}", e.root_cause()),
                    ));
                }
                match path.and_then(health::full_disk) {
                    Some(full) => return Err(e.context(full)),
                    None => return Err(e),
                }
            }
        };
        Ok(Store {
            db,
            health: Default::default(),
            review: Default::default(),
        })
    }

    /// [`Store::connect`] for an owned URL (handy with `tokio::spawn`).
    pub async fn connect_owned(url: String) -> Result<Store> {
        Store::connect(&url).await
    }

    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Close every connection (SQLite folds its write-ahead log into the
    /// file when the last one closes).
    pub async fn close(self) -> Result<()> {
        Ok(self.db.close().await?)
    }

    /// Queue for review as `[review]` says (every clone, from now on).
    pub fn set_review_policy(&self, policy: crate::config::ReviewSettings) {
        use crate::core::sync::ReadWrite;
        *self.review.writing() = policy;
    }

    pub fn review_policy(&self) -> crate::config::ReviewSettings {
        use crate::core::sync::ReadWrite;
        *self.review.reading()
    }

    /// Whether recording runs' ends works (shared by every clone).
    pub fn write_health(&self) -> &outcomes::WriteHealth {
        &self.health
    }

    /// A write transaction. On SQLite it takes the write lock at `BEGIN`
    /// (waiting up to the busy timeout): a deferred transaction that reads
    /// first cannot wait its turn when it later writes and fails with
    /// "database is locked" whenever another connection wrote in between.
    pub(crate) async fn begin_write(&self) -> Result<sea_orm::DatabaseTransaction> {
        Ok(self
            .db
            .begin_with_options(sea_orm::TransactionOptions {
                sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
                ..Default::default()
            })
            .await?)
    }

    /// Store a dataset snapshot of examples unless an identical one
    /// exists; returns its id and content hash.
    pub async fn save_dataset_version(
        &self,
        dataset: &str,
        rows: &[Example],
        origin: serde_json::Value,
    ) -> Result<(i64, String)> {
        self.save_snapshot(dataset, rows, &[], origin).await
    }

    /// Store a dataset snapshot (examples and the conversations read beside
    /// them) unless an identical one exists; returns its id and content
    /// hash, which covers both.
    pub async fn save_snapshot(
        &self,
        dataset: &str,
        rows: &[Example],
        conversations: &[Conversation],
        origin: serde_json::Value,
    ) -> Result<(i64, String)> {
        use sea_orm::sea_query::OnConflict;
        let hash = snapshot_hash(rows, conversations);
        let tx = self.begin_write().await?;
        // Upserts: first runs of a new workflow racing on PostgreSQL each
        // insert-or-find the dataset and the version (a racer waits for the
        // first insert to commit, then finds it) instead of one failing on
        // the unique key.
        datasets::Entity::insert(datasets::ActiveModel {
            name: Set(dataset.to_owned()),
            created_at: Set(Utc::now()),
            ..Default::default()
        })
        .on_conflict(
            OnConflict::column(datasets::Column::Name)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&tx)
        .await?;
        let ds = datasets::Entity::find()
            .filter(datasets::Column::Name.eq(dataset))
            .one(&tx)
            .await?
            .with_context(|| format!("dataset `{dataset}` vanished while it was saved"))?;
        let intents = rows
            .iter()
            .map(|r| r.intent.as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        let inserted = dataset_versions::Entity::insert(dataset_versions::ActiveModel {
            dataset_id: Set(ds.id),
            content_hash: Set(hash.clone()),
            examples: Set(rows.len() as i64),
            intents: Set(intents as i64),
            conversations: Set(conversations.len() as i64),
            origin: Set(origin.to_string()),
            created_at: Set(Utc::now()),
            ..Default::default()
        })
        .on_conflict(
            OnConflict::columns([
                dataset_versions::Column::DatasetId,
                dataset_versions::Column::ContentHash,
            ])
            .do_nothing()
            .to_owned(),
        )
        .exec_without_returning(&tx)
        .await?;
        let version = dataset_versions::Entity::find()
            .filter(dataset_versions::Column::DatasetId.eq(ds.id))
            .filter(dataset_versions::Column::ContentHash.eq(&hash))
            .one(&tx)
            .await?
            .with_context(|| {
                format!("a version of dataset `{dataset}` vanished while it was saved")
            })?;
        if inserted == 0 {
            // An identical snapshot exists already.
            tx.commit().await?;
            return Ok((version.id, hash));
        }
        for (chunk_no, chunk) in rows.chunks(500).enumerate() {
            let models = chunk
                .iter()
                .enumerate()
                .map(|(i, r)| examples::ActiveModel {
                    dataset_version_id: Set(version.id),
                    position: Set((chunk_no * 500 + i) as i64),
                    text: Set(r.text.clone()),
                    intent: Set(r.intent.clone()),
                    entities: Set(r.entities_json()),
                    split: Set(r.split),
                    ..Default::default()
                });
            examples::Entity::insert_many(models).exec(&tx).await?;
        }
        for (chunk_no, chunk) in conversations.chunks(500).enumerate() {
            let models =
                chunk
                    .iter()
                    .enumerate()
                    .map(|(i, c)| dataset_conversations::ActiveModel {
                        dataset_version_id: Set(version.id),
                        position: Set((chunk_no * 500 + i) as i32),
                        external_id: Set(c.id.clone()),
                        messages: Set(serde_json::to_string(&c.turns).unwrap_or_default()),
                        ..Default::default()
                    });
            dataset_conversations::Entity::insert_many(models)
                .exec(&tx)
                .await?;
        }
        tx.commit().await?;
        Ok((version.id, hash))
    }

    /// The newest snapshot of dataset `name`, if any.
    pub async fn latest_dataset_version(&self, name: &str) -> Result<Option<i64>> {
        let Some(ds) = datasets::Entity::find()
            .filter(datasets::Column::Name.eq(name))
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        Ok(dataset_versions::Entity::find()
            .filter(dataset_versions::Column::DatasetId.eq(ds.id))
            .order_by_desc(dataset_versions::Column::Id)
            .one(&self.db)
            .await?
            .map(|v| v.id))
    }

    /// Keep that step `step` of run `run` held `gpus` GPUs of queue
    /// `queue` from `started` to `finished`.
    pub async fn record_gpu_usage(
        &self,
        run: i64,
        step: &str,
        queue: &str,
        gpus: u32,
        started: chrono::DateTime<Utc>,
        finished: chrono::DateTime<Utc>,
    ) -> Result<()> {
        use entities::gpu_usage;
        gpu_usage::ActiveModel {
            run_id: Set(run),
            step_id: Set(step.to_owned()),
            queue: Set(queue.to_owned()),
            gpus: Set(gpus as i32),
            started_at: Set(started),
            finished_at: Set(finished),
            ..Default::default()
        }
        .insert(&self.db)
        .await?;
        Ok(())
    }

    /// GPU-hours per queue of the leases that ended at or after `since`
    /// (the part of each after `since`), largest first.
    pub async fn gpu_hours_since(
        &self,
        since: chrono::DateTime<Utc>,
    ) -> Result<Vec<(String, f64)>> {
        use entities::gpu_usage;
        let rows = gpu_usage::Entity::find()
            .filter(gpu_usage::Column::FinishedAt.gte(since))
            .all(&self.db)
            .await?;
        let mut by: std::collections::BTreeMap<String, f64> = std::collections::BTreeMap::new();
        for r in rows {
            let from = r.started_at.max(since);
            let secs = (r.finished_at - from).num_milliseconds().max(0) as f64 / 1000.0;
            *by.entry(r.queue).or_default() += f64::from(r.gpus) * secs / 3600.0;
        }
        let mut out: Vec<(String, f64)> = by.into_iter().collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        Ok(out)
    }

    /// Datasets by name with their newest snapshot and how many they have,
    /// most recently changed first (at most `limit`).
    pub async fn dataset_summaries(&self, limit: u64) -> Result<Vec<DatasetSummary>> {
        let versions = dataset_versions::Entity::find()
            .order_by_desc(dataset_versions::Column::Id)
            .limit(limit * 20)
            .all(&self.db)
            .await?;
        let names: std::collections::BTreeMap<i64, String> = datasets::Entity::find()
            .all(&self.db)
            .await?
            .into_iter()
            .map(|d| (d.id, d.name))
            .collect();
        let mut out: Vec<DatasetSummary> = Vec::new();
        for v in versions {
            if let Some(s) = out.iter_mut().find(|s| s.dataset_id == v.dataset_id) {
                s.versions += 1;
                continue;
            }
            if out.len() as u64 >= limit {
                continue;
            }
            out.push(DatasetSummary {
                dataset_id: v.dataset_id,
                name: names.get(&v.dataset_id).cloned().unwrap_or_default(),
                version: v.id,
                content_hash: v.content_hash,
                examples: v.examples,
                intents: v.intents,
                conversations: v.conversations,
                origin: serde_json::from_str(&v.origin).unwrap_or(serde_json::Value::Null),
                created_at: v.created_at,
                versions: 1,
            });
        }
        Ok(out)
    }

    /// The newest snapshot of dataset `name` and the origin it was saved
    /// with (a source step's keeps the plugin's checkpoint).
    pub async fn latest_snapshot_origin(
        &self,
        name: &str,
    ) -> Result<Option<(i64, serde_json::Value)>> {
        let Some(id) = self.latest_dataset_version(name).await? else {
            return Ok(None);
        };
        let version = dataset_versions::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .with_context(|| format!("snapshot {id} of dataset `{name}` vanished"))?;
        let origin = serde_json::from_str(&version.origin).unwrap_or(serde_json::Value::Null);
        Ok(Some((id, origin)))
    }

    /// The conversations of snapshot `dataset_version_id`, in order.
    pub async fn load_snapshot_conversations(
        &self,
        dataset_version_id: i64,
    ) -> Result<Vec<Conversation>> {
        let rows = dataset_conversations::Entity::find()
            .filter(dataset_conversations::Column::DatasetVersionId.eq(dataset_version_id))
            .order_by_asc(dataset_conversations::Column::Position)
            .all(&self.db)
            .await?;
        rows.into_iter()
            .map(|r| {
                Ok(Conversation {
                    turns: serde_json::from_str(&r.messages).with_context(|| {
                        format!(
                            "conversation {} of snapshot {dataset_version_id} cannot be read",
                            r.external_id
                        )
                    })?,
                    id: r.external_id,
                    model: None,
                    channel: None,
                    outcome: None,
                    feedback: Vec::new(),
                })
            })
            .collect()
    }

    pub async fn load_examples(&self, dataset_version_id: i64) -> Result<Vec<Example>> {
        let rows = examples::Entity::find()
            .filter(examples::Column::DatasetVersionId.eq(dataset_version_id))
            .order_by_asc(examples::Column::Position)
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| Example {
                entities: Example::parse_entities(&r.entities),
                text: r.text,
                intent: r.intent,
                split: r.split,
            })
            .collect())
    }

    pub async fn finish_run(
        &self,
        run_id: RunId,
        state: RunState,
        error: Option<String>,
    ) -> Result<()> {
        training_runs::ActiveModel {
            id: Set(run_id.0),
            state: Set(state),
            error: Set(error),
            finished_at: Set(Some(Utc::now())),
            ..Default::default()
        }
        .update(&self.db)
        .await?;
        Ok(())
    }

    pub async fn start_step(
        &self,
        run_id: RunId,
        step_id: &str,
        action: &str,
        attempt: i32,
    ) -> Result<i64> {
        let s = run_steps::ActiveModel {
            run_id: Set(run_id.0),
            step_id: Set(step_id.to_owned()),
            action: Set(action.to_owned()),
            attempt: Set(attempt),
            state: Set(StepState::Running),
            error: Set(None),
            output: Set(None),
            started_at: Set(Utc::now()),
            finished_at: Set(None),
            handle: Set(None),
            ..Default::default()
        }
        .insert(&self.db)
        .await?;
        Ok(s.id)
    }

    /// Record a step attempt that ended as soon as it began (skipped, or
    /// failed before it could run).
    pub async fn record_step(
        &self,
        run_id: RunId,
        step_id: &str,
        action: &str,
        state: StepState,
        error: String,
    ) -> Result<()> {
        let row = self.start_step(run_id, step_id, action, 1).await?;
        self.finish_step(row, state, Some(error), None).await
    }

    /// Record what attempt `id` runs as outside the daemon.
    pub async fn set_step_handle(&self, id: i64, handle: &str) -> Result<()> {
        run_steps::ActiveModel {
            id: Set(id),
            handle: Set(Some(handle.to_owned())),
            ..Default::default()
        }
        .update(&self.db)
        .await?;
        Ok(())
    }

    /// The handle of the attempt before attempt `row` of a run's step, if
    /// the daemon interrupted it and it had one (a job to find again).
    pub async fn interrupted_handle(
        &self,
        run_id: RunId,
        step_id: &str,
        row: i64,
    ) -> Result<Option<String>> {
        Ok(run_steps::Entity::find()
            .filter(run_steps::Column::RunId.eq(run_id.0))
            .filter(run_steps::Column::StepId.eq(step_id))
            .filter(run_steps::Column::Id.lt(row))
            .order_by_desc(run_steps::Column::Id)
            .one(&self.db)
            .await?
            .filter(|r| r.state == StepState::Interrupted)
            .and_then(|r| r.handle))
    }

    pub async fn finish_step(
        &self,
        id: i64,
        state: StepState,
        error: Option<String>,
        output: Option<&StepOutput>,
    ) -> Result<()> {
        run_steps::ActiveModel {
            id: Set(id),
            state: Set(state),
            error: Set(error),
            output: Set(output.map(|o| o.to_json().to_string())),
            finished_at: Set(Some(Utc::now())),
            ..Default::default()
        }
        .update(&self.db)
        .await?;
        Ok(())
    }

    pub async fn add_metrics(
        &self,
        run_id: RunId,
        step_id: &str,
        metrics: &[(String, f64, u32)],
    ) -> Result<()> {
        let rows: Vec<_> = metrics
            .iter()
            .filter(|m| m.1.is_finite())
            .map(|(name, value, step)| run_metrics::ActiveModel {
                run_id: Set(run_id.0),
                step_id: Set(step_id.to_owned()),
                name: Set(name.clone()),
                value: Set(*value),
                step: Set(*step as i64),
                ..Default::default()
            })
            .collect();
        for chunk in rows.chunks(500) {
            run_metrics::Entity::insert_many(chunk.to_vec())
                .exec(&self.db)
                .await?;
        }
        Ok(())
    }

    /// Register a model as the next version of its name.
    pub async fn register_model(&self, m: NewModel) -> Result<ModelRow> {
        let tx = self.begin_write().await?;
        // Registrations of one name take turns, so two cannot both take
        // the next version.
        serialize_on(&tx, &format!("model:{}", m.name)).await?;
        let latest = models::Entity::find()
            .filter(models::Column::Name.eq(&m.name))
            .order_by_desc(models::Column::Version)
            .one(&tx)
            .await?;
        let row = models::ActiveModel {
            name: Set(m.name),
            version: Set(latest.map(|l| l.version + 1).unwrap_or(1)),
            run_id: Set(m.run_id.0),
            trainer_plugin: Set(m.trainer_plugin),
            trainer_version: Set(m.trainer_version),
            plugin_hash: Set(m.plugin_hash),
            artifact_hash: Set(m.artifact_hash),
            artifact_size: Set(m.artifact_size),
            dataset_version_id: Set(m.dataset_version_id),
            data_hash: Set(m.data_hash),
            config_hash: Set(m.config_hash),
            metrics: Set(m.metrics.to_string()),
            intents: Set(serde_json::to_string(&m.intents)?),
            created_at: Set(Utc::now()),
            base_model_id: Set(m.base_model_id),
            ..Default::default()
        }
        .insert(&tx)
        .await?;
        tx.commit().await?;
        Ok(row)
    }

    /// Every version of model `name`, newest first.
    pub async fn models_named(&self, name: &str) -> Result<Vec<ModelRow>> {
        Ok(models::Entity::find()
            .filter(models::Column::Name.eq(name))
            .order_by_desc(models::Column::Version)
            .all(&self.db)
            .await?)
    }

    pub async fn models(&self, limit: u64) -> Result<Vec<ModelRow>> {
        Ok(models::Entity::find()
            .order_by_desc(models::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?)
    }

    /// The model `r` names, if there is one.
    /// The models with these ids (those that exist), in id order.
    pub async fn models_by_id(&self, ids: &[i64]) -> Result<Vec<ModelRow>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        Ok(models::Entity::find()
            .filter(models::Column::Id.is_in(ids.iter().copied()))
            .order_by_asc(models::Column::Id)
            .all(&self.db)
            .await?)
    }

    pub async fn find_model(&self, r: &ModelRef) -> Result<Option<ModelRow>> {
        let q = models::Entity::find();
        Ok(match r {
            ModelRef::Latest => q.order_by_desc(models::Column::Id).one(&self.db).await?,
            ModelRef::Id(id) => q.filter(models::Column::Id.eq(*id)).one(&self.db).await?,
            ModelRef::Version(name, version) => {
                q.filter(models::Column::Name.eq(name.as_str()))
                    .filter(models::Column::Version.eq(*version))
                    .one(&self.db)
                    .await?
            }
            ModelRef::Name(name) => {
                q.filter(models::Column::Name.eq(name.as_str()))
                    .order_by_desc(models::Column::Version)
                    .one(&self.db)
                    .await?
            }
        })
    }

    pub async fn runs(&self, limit: u64) -> Result<Vec<RunRow>> {
        Ok(training_runs::Entity::find()
            .order_by_desc(training_runs::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?)
    }

    pub async fn run(&self, id: RunId) -> Result<Option<(RunRow, Vec<StepRow>, Vec<MetricRow>)>> {
        let Some(run) = training_runs::Entity::find_by_id(id.0)
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        let steps = self.steps_of(id).await?;
        let metrics = run_metrics::Entity::find()
            .filter(run_metrics::Column::RunId.eq(id.0))
            .order_by_asc(run_metrics::Column::Id)
            .all(&self.db)
            .await?;
        Ok(Some((run, steps, metrics)))
    }
}

/// Apply pending migrations, once, however many processes start at the same
/// time on a fresh database: SQLite under the lock file `connect` holds,
/// PostgreSQL through a transaction-scoped advisory lock. With nothing pending (the usual case) nothing is written.
async fn migrate(db: &DatabaseConnection, url: &str) -> Result<()> {
    let context = || format!("cannot migrate the database {}", redact(url));
    // Even reading the schema version may create sea-orm's bookkeeping
    // table, so the lock comes first.
    match db.get_database_backend() {
        sea_orm::DatabaseBackend::Postgres => {
            let tx = db.begin().await?;
            // Any constant works; this one spells "coach" in the low bytes.
            tx.execute_unprepared("SELECT pg_advisory_xact_lock(435627697000)")
                .await
                .with_context(context)?;
            if !migration::Migrator::get_pending_migrations(&tx)
                .await
                .with_context(context)?
                .is_empty()
            {
                migration::Migrator::up(&tx, None)
                    .await
                    .with_context(context)?;
            }
            tx.commit().await.with_context(context)?;
        }
        // SQLite: `connect` holds the lock file around this.
        _ => {
            if !migration::Migrator::get_pending_migrations(db)
                .await
                .with_context(context)?
                .is_empty()
            {
                migration::Migrator::up(db, None)
                    .await
                    .with_context(context)?;
            }
        }
    }
    Ok(())
}

/// An exclusive lock on `path` (created if missing), held until dropped;
/// waits while another process holds it.
async fn lock_file(path: &str) -> Result<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot create {path}"))?;
    // Uncontended (the usual case) it is taken here; only a wait for
    // another process goes to a blocking thread.
    match file.try_lock() {
        Ok(()) => return Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {}
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("cannot lock {path}"));
        }
    }
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || file.lock().map(|()| file))
        .await?
        .with_context(|| format!("cannot lock {path}"))
}

/// Make transactions that name the same `key` take turns until each
/// commits: a PostgreSQL transaction-scoped advisory lock. SQLite's write
/// transactions are exclusive already.
pub(crate) async fn serialize_on(tx: &sea_orm::DatabaseTransaction, key: &str) -> Result<()> {
    if tx.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        tx.execute_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            [key.into()],
        ))
        .await?;
    }
    Ok(())
}

/// The file of a `sqlite://` URL; `None` for in-memory databases.
pub fn sqlite_file(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && !path.contains(":memory:")).then_some(path)
}

/// A database URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}
