//! Schema migrations, applied at start. A migration, once released, never
//! changes: later schema changes are new migrations.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(M0001Initial),
            Box::new(M0002ModelBase),
            Box::new(M0003Daemon),
            Box::new(M0004VersionScripts),
            Box::new(M0005Conversations),
            Box::new(M0006StepHandles),
            Box::new(M0007ForeignKeys),
            Box::new(M0008Deployments),
            Box::new(M0009Experiments),
            Box::new(M0010ExperimentTotals),
            Box::new(M0011ConversationDetail),
            Box::new(M0012QualityAndReview),
            Box::new(M0013GpuUsageAndLooks),
            Box::new(M0014ConversationSearch),
            Box::new(M0015ReviewOrder),
            Box::new(M0016FeedbackLookups),
        ]
    }
}

// Names are written out: the derive would name every migration of this file
// after the file, and two migrations must never share a name.
struct M0001Initial;

impl MigrationName for M0001Initial {
    fn name(&self) -> &str {
        "m0001_initial"
    }
}

fn index(name: &str, table: &str, cols: &[&str], unique: bool) -> IndexCreateStatement {
    let mut i = Index::create();
    i.name(name).table(Alias::new(table)).if_not_exists();
    for c in cols {
        i.col(Alias::new(*c));
    }
    if unique {
        i.unique();
    }
    i.to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for M0001Initial {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let tables = [
            Table::create()
                .table("datasets")
                .if_not_exists()
                .col(big_pk_auto("id"))
                .col(string_uniq("name"))
                .col(timestamp_with_time_zone("created_at"))
                .to_owned(),
            Table::create()
                .table("dataset_versions")
                .if_not_exists()
                .col(big_pk_auto("id"))
                .col(big_integer("dataset_id"))
                .col(string("content_hash"))
                .col(big_integer("examples"))
                .col(big_integer("intents"))
                .col(text("origin"))
                .col(timestamp_with_time_zone("created_at"))
                .to_owned(),
            Table::create()
                .table("examples")
                .if_not_exists()
                .col(big_pk_auto("id"))
                .col(big_integer("dataset_version_id"))
                .col(big_integer("position"))
                .col(text("text"))
                .col(string("intent"))
                .col(text("entities"))
                .col(string("split"))
                .to_owned(),
            Table::create()
                .table("training_runs")
                .if_not_exists()
                .col(big_pk_auto("id"))
                .col(string("workflow"))
                .col(text("workflow_file"))
                .col(string("workflow_hash"))
                .col(string("state"))
                .col(text_null("error"))
                .col(timestamp_with_time_zone("started_at"))
                .col(timestamp_with_time_zone_null("finished_at"))
                .to_owned(),
            Table::create()
                .table("run_steps")
                .if_not_exists()
                .col(big_pk_auto("id"))
                .col(big_integer("run_id"))
                .col(string("step_id"))
                .col(string("action"))
                .col(integer("attempt"))
                .col(string("state"))
                .col(text_null("error"))
                .col(text_null("output"))
                .col(timestamp_with_time_zone("started_at"))
                .col(timestamp_with_time_zone_null("finished_at"))
                .to_owned(),
            Table::create()
                .table("run_metrics")
                .if_not_exists()
                .col(big_pk_auto("id"))
                .col(big_integer("run_id"))
                .col(string("step_id"))
                .col(string("name"))
                .col(double("value"))
                .col(big_integer("step"))
                .to_owned(),
            Table::create()
                .table("models")
                .if_not_exists()
                .col(big_pk_auto("id"))
                .col(string("name"))
                .col(integer("version"))
                .col(big_integer("run_id"))
                .col(string("trainer_plugin"))
                .col(string("trainer_version"))
                .col(string("plugin_hash"))
                .col(string("artifact_hash"))
                .col(big_integer("artifact_size"))
                .col(big_integer("dataset_version_id"))
                .col(string("data_hash"))
                .col(string("config_hash"))
                .col(text("metrics"))
                .col(text("intents"))
                .col(timestamp_with_time_zone("created_at"))
                .to_owned(),
        ];
        for t in tables {
            m.create_table(t).await?;
        }
        for i in [
            index(
                "ux_dataset_versions_hash",
                "dataset_versions",
                &["dataset_id", "content_hash"],
                true,
            ),
            index(
                "ix_examples_version",
                "examples",
                &["dataset_version_id", "position"],
                false,
            ),
            index("ix_run_steps_run", "run_steps", &["run_id"], false),
            index(
                "ix_run_metrics_run",
                "run_metrics",
                &["run_id", "step_id"],
                false,
            ),
            index(
                "ux_models_name_version",
                "models",
                &["name", "version"],
                true,
            ),
        ] {
            m.create_index(i).await?;
        }
        Ok(())
    }
}

/// Lineage of warm starts: the model a model was trained from.
struct M0002ModelBase;

impl MigrationName for M0002ModelBase {
    fn name(&self) -> &str {
        "m0002_model_base"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0002ModelBase {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table("models")
                .add_column(big_integer_null("base_model_id"))
                .to_owned(),
        )
        .await
    }
}

/// The daemon: a durable run queue (run trigger, executor, queue time,
/// resumes), the workflow versions runs were queued with, run logs, API
/// tokens and trigger fires.
struct M0003Daemon;

impl MigrationName for M0003Daemon {
    fn name(&self) -> &str {
        "m0003_daemon"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0003Daemon {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        for col in [
            string("trigger").default("cli").to_owned(),
            string("executor").default("cli").to_owned(),
            timestamp_with_time_zone_null("queued_at"),
            integer("resumes").default(0).to_owned(),
        ] {
            let mut col = col;
            m.alter_table(
                Table::alter()
                    .table("training_runs")
                    .add_column(&mut col)
                    .to_owned(),
            )
            .await?;
        }
        let tables = [
            Table::create()
                .table("workflow_versions")
                .if_not_exists()
                .col(big_pk_auto("id"))
                .col(string_uniq("hash"))
                .col(string("workflow"))
                .col(text("file"))
                .col(text("content"))
                .col(timestamp_with_time_zone("created_at"))
                .to_owned(),
            Table::create()
                .table("run_logs")
                .if_not_exists()
                .col(big_pk_auto("id"))
                .col(big_integer("run_id"))
                .col(string_null("step_id"))
                .col(string("level"))
                .col(text("message"))
                .col(timestamp_with_time_zone("at"))
                .to_owned(),
            Table::create()
                .table("api_tokens")
                .if_not_exists()
                .col(big_pk_auto("id"))
                .col(string("name"))
                .col(string("role"))
                .col(string_uniq("token_hash"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone_null("revoked_at"))
                .to_owned(),
            Table::create()
                .table("trigger_fires")
                .if_not_exists()
                .col(big_pk_auto("id"))
                .col(string("workflow"))
                .col(string("kind"))
                .col(timestamp_with_time_zone("scheduled_for"))
                .col(timestamp_with_time_zone("fired_at"))
                .col(string("outcome"))
                .col(text_null("detail"))
                .col(big_integer_null("run_id"))
                .to_owned(),
        ];
        for t in tables {
            m.create_table(t).await?;
        }
        for i in [
            index(
                "ix_training_runs_state",
                "training_runs",
                &["state", "id"],
                false,
            ),
            index(
                "ix_training_runs_workflow",
                "training_runs",
                &["workflow", "id"],
                false,
            ),
            index("ix_run_logs_run", "run_logs", &["run_id", "id"], false),
            index(
                "ix_trigger_fires_workflow",
                "trigger_fires",
                &["workflow", "kind", "id"],
                false,
            ),
            index("ix_models_run", "models", &["run_id"], false),
        ] {
            m.create_index(i).await?;
        }
        Ok(())
    }
}

/// A workflow version includes the scripts it uses (JSON: path → source).
struct M0004VersionScripts;

impl MigrationName for M0004VersionScripts {
    fn name(&self) -> &str {
        "m0004_version_scripts"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0004VersionScripts {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table("workflow_versions")
                .add_column(text_null("scripts"))
                .to_owned(),
        )
        .await
    }
}

/// Conversations, their messages and feedback, as chatbot platforms log them.
struct M0005Conversations;

impl MigrationName for M0005Conversations {
    fn name(&self) -> &str {
        "m0005_conversations"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0005Conversations {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let tables = [
            Table::create()
                .table("conversations")
                .if_not_exists()
                .col(big_pk_auto("id"))
                .col(string("model_name"))
                .col(string("external_id"))
                .col(string_null("channel"))
                .col(timestamp_with_time_zone("started_at"))
                .col(timestamp_with_time_zone("received_at"))
                .to_owned(),
            Table::create()
                .table("messages")
                .if_not_exists()
                .col(big_pk_auto("id"))
                .col(big_integer("conversation_id"))
                .col(string("model_name"))
                .col(integer("position"))
                .col(string("role"))
                .col(text("text"))
                .col(string_null("intent"))
                .col(double_null("confidence"))
                .col(boolean("fallback"))
                .col(integer_null("model_version"))
                .col(timestamp_with_time_zone("at"))
                .col(timestamp_with_time_zone("received_at"))
                .to_owned(),
            Table::create()
                .table("feedback")
                .if_not_exists()
                .col(big_pk_auto("id"))
                .col(string("model_name"))
                .col(big_integer_null("conversation_id"))
                .col(big_integer_null("message_id"))
                .col(integer_null("rating"))
                .col(string_null("correction"))
                .col(text_null("comment"))
                .col(timestamp_with_time_zone("at"))
                .col(timestamp_with_time_zone("received_at"))
                .to_owned(),
        ];
        for t in tables {
            m.create_table(t).await?;
        }
        for i in [
            index(
                "ux_conversations_external",
                "conversations",
                &["model_name", "external_id"],
                true,
            ),
            index(
                "ix_conversations_received",
                "conversations",
                &["model_name", "received_at"],
                false,
            ),
            index(
                "ux_messages_position",
                "messages",
                &["conversation_id", "position"],
                true,
            ),
            index(
                "ix_messages_received",
                "messages",
                &["model_name", "received_at"],
                false,
            ),
            index(
                "ix_feedback_received",
                "feedback",
                &["model_name", "received_at"],
                false,
            ),
        ] {
            m.create_index(i).await?;
        }
        Ok(())
    }
}

/// What a step attempt runs as outside the daemon (a local process group,
/// a Slurm job), so a restarted daemon can find it again.
struct M0006StepHandles;

impl MigrationName for M0006StepHandles {
    fn name(&self) -> &str {
        "m0006_step_handles"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0006StepHandles {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table("run_steps")
                .add_column(string_null("handle"))
                .to_owned(),
        )
        .await
    }
}

/// Foreign keys between runs, their steps, metrics, logs and fires,
/// datasets, their versions and examples, models, conversations, messages
/// and feedback; a model without a dataset snapshot says so with `NULL`
/// (earlier versions wrote 0).
///
/// PostgreSQL adds the constraints in place. SQLite cannot add a
/// constraint to a table, so each child table is rebuilt with them, in one
/// transaction: its own `CREATE` statement (read back from the schema, so
/// column types stay exactly as created) gains the `FOREIGN KEY` clauses,
/// the rows are copied, the old table is dropped, the new one renamed and
/// its indexes created again. Parents are rebuilt before any new
/// constraint points at them.
struct M0007ForeignKeys;

impl MigrationName for M0007ForeignKeys {
    fn name(&self) -> &str {
        "m0007_foreign_keys"
    }
}

/// A reference: `(column, parent table, nullable)`.
type Reference = (&'static str, &'static str, bool);

/// `(table, its references)`, parents first.
const FOREIGN_KEYS: &[(&str, &[Reference])] = &[
    ("dataset_versions", &[("dataset_id", "datasets", false)]),
    (
        "examples",
        &[("dataset_version_id", "dataset_versions", false)],
    ),
    (
        "models",
        &[
            ("run_id", "training_runs", false),
            ("dataset_version_id", "dataset_versions", true),
            ("base_model_id", "models", true),
        ],
    ),
    ("run_steps", &[("run_id", "training_runs", false)]),
    ("run_metrics", &[("run_id", "training_runs", false)]),
    ("run_logs", &[("run_id", "training_runs", false)]),
    ("trigger_fires", &[("run_id", "training_runs", true)]),
    ("messages", &[("conversation_id", "conversations", false)]),
    (
        "feedback",
        &[
            ("conversation_id", "conversations", true),
            ("message_id", "messages", true),
        ],
    ),
];

/// Rows whose `column` names no row of `parent`, as an SQL condition.
fn orphans(column: &str, parent: &str) -> String {
    format!("\"{column}\" IS NOT NULL AND \"{column}\" NOT IN (SELECT \"id\" FROM \"{parent}\")")
}

/// Before the constraints: an optional reference that names nothing (a
/// model's dataset written as 0, a fire's run that is gone) becomes NULL;
/// a required one stops the migration, naming the table, the column, how
/// many rows, and the query that shows them — nothing is deleted.
/// `models.dataset_version_id` is left to the caller (on SQLite it is
/// NOT NULL until its table is rebuilt).
async fn clear_orphans<C: ConnectionTrait>(db: &C) -> Result<(), DbErr> {
    use sea_orm::Statement;
    for (table, keys) in FOREIGN_KEYS {
        for (column, parent, nullable) in *keys {
            let bad = orphans(column, parent);
            if *nullable {
                if (*table, *column) != ("models", "dataset_version_id") {
                    db.execute_unprepared(&format!(
                        "UPDATE \"{table}\" SET \"{column}\" = NULL WHERE {bad}"
                    ))
                    .await?;
                }
                continue;
            }
            let backend = db.get_database_backend();
            let n = db
                .query_one_raw(Statement::from_string(
                    backend,
                    format!("SELECT COUNT(*) FROM \"{table}\" WHERE {bad}"),
                ))
                .await?
                .map(|r| r.try_get_by_index::<i64>(0))
                .transpose()?
                .unwrap_or(0);
            if n > 0 {
                return Err(DbErr::Migration(format!(
                    "{n} row(s) of `{table}` name a `{column}` that is no row of `{parent}`, so the foreign key cannot be added; nothing was changed. See them with: SELECT * FROM \"{table}\" WHERE {bad}"
                )));
            }
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for M0007ForeignKeys {
    /// One transaction on every backend: a rebuild half done must not stay.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        match db.get_database_backend() {
            sea_orm::DatabaseBackend::Postgres => {
                db.execute_unprepared(&format!(
                    "ALTER TABLE models ALTER COLUMN dataset_version_id DROP NOT NULL;
                     UPDATE models SET dataset_version_id = NULL WHERE {}",
                    orphans("dataset_version_id", "dataset_versions")
                ))
                .await?;
                clear_orphans(db).await?;
                for (table, keys) in FOREIGN_KEYS {
                    for (column, parent, _) in *keys {
                        db.execute_unprepared(&format!(
                            "ALTER TABLE \"{table}\" ADD CONSTRAINT \"fk_{table}_{column}\" \
                             FOREIGN KEY (\"{column}\") REFERENCES \"{parent}\" (\"id\")"
                        ))
                        .await?;
                    }
                }
            }
            _ => {
                clear_orphans(db).await?;
                for (table, keys) in FOREIGN_KEYS {
                    rebuild_sqlite_table(db, table, keys).await?;
                }
            }
        }
        for i in [
            index("ix_models_run", "models", &["run_id"], false),
            index("ix_trigger_fires_run", "trigger_fires", &["run_id"], false),
        ] {
            m.create_index(i).await?;
        }
        Ok(())
    }
}

/// Deployments (which version each environment of a model serves) and
/// their history.
struct M0008Deployments;

impl MigrationName for M0008Deployments {
    fn name(&self) -> &str {
        "m0008_deployments"
    }
}

fn foreign_key(table: &str, column: &str, parent: &str) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(format!("fk_{table}_{column}"))
        .from(Alias::new(table), Alias::new(column))
        .to(Alias::new(parent), Alias::new("id"))
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for M0008Deployments {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let tables = [
            Table::create()
                .table("deployments")
                .if_not_exists()
                .col(big_pk_auto("id"))
                .col(string("model_name"))
                .col(string("environment"))
                .col(big_integer("model_id"))
                .col(big_integer("revision"))
                .col(timestamp_with_time_zone("updated_at"))
                .foreign_key(&mut foreign_key("deployments", "model_id", "models"))
                .to_owned(),
            Table::create()
                .table("deployment_history")
                .if_not_exists()
                .col(big_pk_auto("id"))
                .col(string("model_name"))
                .col(string("environment"))
                .col(big_integer_null("from_model_id"))
                .col(big_integer("to_model_id"))
                .col(string("action"))
                .col(string("how"))
                .col(string("actor"))
                .col(text_null("reason"))
                .col(big_integer_null("run_id"))
                .col(timestamp_with_time_zone("at"))
                .foreign_key(&mut foreign_key(
                    "deployment_history",
                    "from_model_id",
                    "models",
                ))
                .foreign_key(&mut foreign_key(
                    "deployment_history",
                    "to_model_id",
                    "models",
                ))
                .foreign_key(&mut foreign_key(
                    "deployment_history",
                    "run_id",
                    "training_runs",
                ))
                .to_owned(),
        ];
        for t in tables {
            m.create_table(t).await?;
        }
        for i in [
            index(
                "ux_deployments_env",
                "deployments",
                &["model_name", "environment"],
                true,
            ),
            index(
                "ix_deployment_history_env",
                "deployment_history",
                &["model_name", "environment", "id"],
                false,
            ),
        ] {
            m.create_index(i).await?;
        }
        Ok(())
    }
}

/// Experiments and canaries, and what conversations add up to for them:
/// the arm a conversation was assigned to, and per-conversation counters
/// kept in the same transaction as the messages and feedback they count,
/// so an experiment's results are one aggregate over conversations.
struct M0009Experiments;

impl MigrationName for M0009Experiments {
    fn name(&self) -> &str {
        "m0009_experiments"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0009Experiments {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("experiments")
                .if_not_exists()
                .col(big_pk_auto("id"))
                .col(string_uniq("name"))
                .col(string("model_name"))
                .col(string("environment"))
                .col(string("kind"))
                .col(string("state"))
                .col(text("spec"))
                .col(big_integer("control_model_id"))
                .col(string("source"))
                .col(string("created_by"))
                .col(timestamp_with_time_zone("started_at"))
                .col(timestamp_with_time_zone_null("ended_at"))
                .col(string_null("decision"))
                .col(text_null("reason"))
                .col(integer("step"))
                .col(timestamp_with_time_zone("step_started_at"))
                .col(text_null("counters"))
                .foreign_key(&mut foreign_key(
                    "experiments",
                    "control_model_id",
                    "models",
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "ix_experiments_env",
            "experiments",
            &["model_name", "environment", "state"],
            false,
        ))
        .await?;
        // SQLite adds one column per statement.
        let columns = [
            big_integer_null("experiment_id"),
            string_null("arm"),
            string_null("unit"),
            integer("user_messages").default(0).to_owned(),
            integer("fallbacks").default(0).to_owned(),
            integer("rated").default(0).to_owned(),
            integer("positive").default(0).to_owned(),
            integer("negative").default(0).to_owned(),
            integer("corrections").default(0).to_owned(),
            boolean("escalated").default(false).to_owned(),
            string_null("outcome"),
        ];
        for mut c in columns {
            m.alter_table(
                Table::alter()
                    .table("conversations")
                    .add_column(&mut c)
                    .to_owned(),
            )
            .await?;
        }
        m.alter_table(
            Table::alter()
                .table("messages")
                .add_column(boolean("escalation").default(false))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table("feedback")
                .add_column(boolean("escalation").default(false))
                .to_owned(),
        )
        .await?;
        // Counters of conversations logged before: from their messages and
        // feedback, so a model's history stays comparable.
        m.get_connection()
            .execute_unprepared(
                "UPDATE conversations SET \
                 user_messages = (SELECT COUNT(*) FROM messages WHERE messages.conversation_id = conversations.id AND messages.role = 'user'), \
                 fallbacks = (SELECT COUNT(*) FROM messages WHERE messages.conversation_id = conversations.id AND messages.role = 'user' AND messages.fallback), \
                 rated = (SELECT COUNT(*) FROM feedback WHERE feedback.conversation_id = conversations.id AND feedback.rating IS NOT NULL), \
                 positive = (SELECT COUNT(*) FROM feedback WHERE feedback.conversation_id = conversations.id AND feedback.rating > 0), \
                 negative = (SELECT COUNT(*) FROM feedback WHERE feedback.conversation_id = conversations.id AND feedback.rating < 0), \
                 corrections = (SELECT COUNT(*) FROM feedback WHERE feedback.conversation_id = conversations.id AND feedback.correction IS NOT NULL)",
            )
            .await?;
        m.create_index(index(
            "ix_conversations_experiment",
            "conversations",
            &["experiment_id", "arm", "unit"],
            false,
        ))
        .await?;
        Ok(())
    }
}

/// Running totals per experiment arm and the per-unit counters they move
/// by, so an experiment's results read a row per arm however much traffic
/// it has seen.
struct M0010ExperimentTotals;

impl MigrationName for M0010ExperimentTotals {
    fn name(&self) -> &str {
        "m0010_experiment_totals"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0010ExperimentTotals {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            Table::create()
                .table("experiment_units")
                .if_not_exists()
                .col(big_pk_auto("id"))
                .col(big_integer("experiment_id"))
                .col(string("arm"))
                .col(string("unit"))
                .col(text("counters"))
                .to_owned(),
            Table::create()
                .table("experiment_arms")
                .if_not_exists()
                .col(big_pk_auto("id"))
                .col(big_integer("experiment_id"))
                .col(string("arm"))
                .col(text("totals"))
                .to_owned(),
        ] {
            m.create_table(t).await?;
        }
        for i in [
            index(
                "ux_experiment_units",
                "experiment_units",
                &["experiment_id", "arm", "unit"],
                true,
            ),
            index(
                "ux_experiment_arms",
                "experiment_arms",
                &["experiment_id", "arm"],
                true,
            ),
        ] {
            m.create_index(i).await?;
        }
        Ok(())
    }
}

/// What a prediction said beyond its top intent (the ranking and the
/// entities), so a conversation can be read back turn by turn; and the
/// conversations a source step read, kept with the dataset snapshot they
/// belong to.
struct M0011ConversationDetail;

impl MigrationName for M0011ConversationDetail {
    fn name(&self) -> &str {
        "m0011_conversation_detail"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0011ConversationDetail {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for mut c in [text_null("ranking"), text_null("entities")] {
            m.alter_table(
                Table::alter()
                    .table("messages")
                    .add_column(&mut c)
                    .to_owned(),
            )
            .await?;
        }
        m.create_table(
            Table::create()
                .table("dataset_conversations")
                .if_not_exists()
                .col(big_pk_auto("id"))
                .col(big_integer("dataset_version_id"))
                .col(integer("position"))
                .col(string("external_id"))
                .col(text("messages"))
                .foreign_key(&mut foreign_key(
                    "dataset_conversations",
                    "dataset_version_id",
                    "dataset_versions",
                ))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table("dataset_versions")
                .add_column(big_integer("conversations").default(0))
                .to_owned(),
        )
        .await?;
        for i in [
            index(
                "ux_dataset_conversations",
                "dataset_conversations",
                &["dataset_version_id", "position"],
                true,
            ),
            index(
                "ix_conversations_started",
                "conversations",
                &["started_at"],
                false,
            ),
        ] {
            m.create_index(i).await?;
        }
        Ok(())
    }
}

/// What the dashboard adds up or draws over time: the GPUs each step held
/// on this machine (GPU-hours and their cost), and what each look at an
/// experiment found.
struct M0013GpuUsageAndLooks;

impl MigrationName for M0013GpuUsageAndLooks {
    fn name(&self) -> &str {
        "m0013_gpu_usage_and_looks"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0013GpuUsageAndLooks {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("experiment_looks")
                .if_not_exists()
                .col(big_pk_auto("id"))
                .col(big_integer("experiment_id"))
                .col(timestamp_with_time_zone("at"))
                .col(text("primary"))
                .foreign_key(&mut foreign_key(
                    "experiment_looks",
                    "experiment_id",
                    "experiments",
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "ix_experiment_looks",
            "experiment_looks",
            &["experiment_id", "at"],
            false,
        ))
        .await?;
        m.create_table(
            Table::create()
                .table("gpu_usage")
                .if_not_exists()
                .col(big_pk_auto("id"))
                .col(big_integer("run_id"))
                .col(string("step_id"))
                .col(string("queue"))
                .col(integer("gpus"))
                .col(timestamp_with_time_zone("started_at"))
                .col(timestamp_with_time_zone("finished_at"))
                .foreign_key(&mut foreign_key("gpu_usage", "run_id", "training_runs"))
                .to_owned(),
        )
        .await?;
        m.create_index(index(
            "ix_gpu_usage_finished",
            "gpu_usage",
            &["finished_at"],
            false,
        ))
        .await
    }
}

/// What the learning loop keeps: analyses of conversations (one row per
/// conversation per analyzer version), the review queue with every
/// reviewer's label, and the recommendations made from patterns.
struct M0012QualityAndReview;

impl MigrationName for M0012QualityAndReview {
    fn name(&self) -> &str {
        "m0012_quality_and_review"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0012QualityAndReview {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let tables = [
            Table::create()
                .table("quality_analyses")
                .if_not_exists()
                .col(big_pk_auto("id"))
                .col(big_integer("conversation_id"))
                .col(string("model_name"))
                .col(string("analyzer"))
                .col(string("analyzer_version"))
                .col(double("score"))
                .col(text("aspects"))
                .col(text("findings"))
                .col(timestamp_with_time_zone("started_at"))
                .col(timestamp_with_time_zone("analyzed_at"))
                .col(big_integer_null("run_id"))
                .foreign_key(&mut foreign_key(
                    "quality_analyses",
                    "conversation_id",
                    "conversations",
                ))
                .foreign_key(&mut foreign_key(
                    "quality_analyses",
                    "run_id",
                    "training_runs",
                ))
                .to_owned(),
            Table::create()
                .table("recommendations")
                .if_not_exists()
                .col(big_pk_auto("id"))
                .col(string("key"))
                .col(string("model_name"))
                .col(string("kind"))
                .col(text("title"))
                .col(big_integer("impact"))
                .col(double("rank"))
                .col(text("evidence"))
                .col(text("messages"))
                .col(string("state"))
                .col(timestamp_with_time_zone("found_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .to_owned(),
            Table::create()
                .table("review_items")
                .if_not_exists()
                .col(big_pk_auto("id"))
                .col(string("model_name"))
                .col(string("dedupe_key"))
                .col(text("text"))
                .col(big_integer_null("conversation_id"))
                .col(big_integer_null("message_id"))
                .col(string("origin"))
                .col(text("reason"))
                .col(double("priority"))
                .col(string_null("suggested_intent"))
                .col(big_integer_null("recommendation_id"))
                .col(integer("reviews"))
                .col(string("state"))
                .col(string_null("intent"))
                .col(text_null("entities"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone_null("decided_at"))
                .foreign_key(&mut foreign_key(
                    "review_items",
                    "conversation_id",
                    "conversations",
                ))
                .foreign_key(&mut foreign_key("review_items", "message_id", "messages"))
                .foreign_key(&mut foreign_key(
                    "review_items",
                    "recommendation_id",
                    "recommendations",
                ))
                .to_owned(),
            Table::create()
                .table("review_labels")
                .if_not_exists()
                .col(big_pk_auto("id"))
                .col(big_integer("item_id"))
                .col(big_integer_null("token_id"))
                .col(string("reviewer"))
                .col(string("verdict"))
                .col(string_null("intent"))
                .col(text("entities"))
                .col(boolean("adjudication"))
                .col(timestamp_with_time_zone("at"))
                .foreign_key(&mut foreign_key("review_labels", "item_id", "review_items"))
                .foreign_key(&mut foreign_key("review_labels", "token_id", "api_tokens"))
                .to_owned(),
            Table::create()
                .table("review_claims")
                .if_not_exists()
                .col(big_pk_auto("id"))
                .col(big_integer("item_id"))
                .col(big_integer("token_id"))
                .col(timestamp_with_time_zone("until"))
                .foreign_key(&mut foreign_key("review_claims", "item_id", "review_items"))
                .foreign_key(&mut foreign_key("review_claims", "token_id", "api_tokens"))
                .to_owned(),
        ];
        for t in tables {
            m.create_table(t).await?;
        }
        for i in [
            index(
                "ux_quality_analyses",
                "quality_analyses",
                &["conversation_id", "analyzer", "analyzer_version"],
                true,
            ),
            index(
                "ix_quality_analyses_model",
                "quality_analyses",
                &["model_name", "started_at"],
                false,
            ),
            index(
                "ux_recommendations_key",
                "recommendations",
                &["model_name", "key"],
                true,
            ),
            index(
                "ux_review_items_dedupe",
                "review_items",
                &["model_name", "dedupe_key"],
                true,
            ),
            index(
                "ix_review_items_queue",
                "review_items",
                &["state", "priority"],
                false,
            ),
            index(
                "ux_review_labels",
                "review_labels",
                &["item_id", "token_id", "adjudication"],
                true,
            ),
            index(
                "ix_review_labels_token",
                "review_labels",
                &["token_id", "item_id"],
                false,
            ),
            index(
                "ux_review_claims",
                "review_claims",
                &["item_id", "token_id"],
                true,
            ),
        ] {
            m.create_index(i).await?;
        }
        Ok(())
    }
}

/// Rebuild SQLite table `table` with foreign keys on `keys`.
async fn rebuild_sqlite_table<C: ConnectionTrait>(
    db: &C,
    table: &str,
    keys: &[Reference],
) -> Result<(), DbErr> {
    use sea_orm::{DbBackend, Statement};
    let text = |row: &sea_orm::QueryResult, i: usize| row.try_get_by_index::<String>(i);
    let schema = |sql: &str| Statement::from_sql_and_values(DbBackend::Sqlite, sql, [table.into()]);
    let create = db
        .query_one_raw(schema(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?",
        ))
        .await?
        .ok_or_else(|| DbErr::Migration(format!("table {table} is missing")))?;
    let create = text(&create, 0)?;
    let indexes: Vec<String> = db
        .query_all_raw(schema(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL",
        ))
        .await?
        .iter()
        .map(|r| text(r, 0))
        .collect::<Result<_, _>>()?;
    let columns: Vec<String> = db
        .query_all_raw(schema("SELECT name FROM pragma_table_info(?) ORDER BY cid"))
        .await?
        .iter()
        .map(|r| text(r, 0))
        .collect::<Result<_, _>>()?;
    let new = format!("{table}_new");
    let Some(close) = create.rfind(')') else {
        return Err(DbErr::Migration(format!(
            "cannot read the definition of {table}"
        )));
    };
    let mut definition = create[..close].replacen(
        &format!("CREATE TABLE \"{table}\""),
        &format!("CREATE TABLE \"{new}\""),
        1,
    );
    if table == "models" {
        // No snapshot was written as 0; it is NULL now.
        let not_null = regex::Regex::new(r#""dataset_version_id" (\w+) NOT NULL"#)
            .map_err(|e| DbErr::Migration(e.to_string()))?;
        definition = not_null
            .replace(&definition, r#""dataset_version_id" $1 NULL"#)
            .into_owned();
    }
    for (column, parent, _) in keys {
        // A self-reference names the new table; the rename carries it over.
        let parent = if *parent == table {
            new.as_str()
        } else {
            parent
        };
        definition.push_str(&format!(
            ", FOREIGN KEY (\"{column}\") REFERENCES \"{parent}\" (\"id\")"
        ));
    }
    definition.push(')');
    let select: Vec<String> = columns
        .iter()
        .map(|c| {
            if table == "models" && c == "dataset_version_id" {
                // 0 (and anything else that names no snapshot) is NULL now.
                format!(
                    "(SELECT \"id\" FROM \"dataset_versions\" WHERE \"id\" = \"models\".\"{c}\")"
                )
            } else {
                format!("\"{c}\"")
            }
        })
        .collect();
    let quoted: Vec<String> = columns.iter().map(|c| format!("\"{c}\"")).collect();
    db.execute_unprepared(&definition).await?;
    db.execute_unprepared(&format!(
        // In id order: a row may name an earlier row of its own table.
        "INSERT INTO \"{new}\" ({}) SELECT {} FROM \"{table}\" ORDER BY \"id\"",
        quoted.join(", "),
        select.join(", ")
    ))
    .await
    .map_err(|e| {
        DbErr::Migration(format!(
            "cannot add foreign keys to {table}: a row points at something that is not there ({e})"
        ))
    })?;
    db.execute_unprepared(&format!("DROP TABLE \"{table}\""))
        .await?;
    db.execute_unprepared(&format!("ALTER TABLE \"{new}\" RENAME TO \"{table}\""))
        .await?;
    for sql in indexes {
        db.execute_unprepared(&sql).await?;
    }
    Ok(())
}

/// The conversation filters read what matches rather than every message:
/// indexes for a user turn's confidence and intent, a turn's model
/// version and a correction; and an index over the messages' text — on
/// SQLite a full-text table of trigrams (any substring of three
/// characters or more, case folded) filled as searches need it, on
/// PostgreSQL a trigram index on the lower-cased text where the `pg_trgm`
/// extension is there or may be created (without it the search scans, as
/// before).
struct M0014ConversationSearch;

impl MigrationName for M0014ConversationSearch {
    fn name(&self) -> &str {
        "m0014_conversation_search"
    }
}

/// PostgreSQL: `pg_trgm` and the index on the messages' lower-cased text,
/// its operator class named in the schema the extension lives in.
async fn trigram_index<C: ConnectionTrait>(db: &C) -> Result<(), DbErr> {
    use sea_orm::Statement;
    db.execute_unprepared("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        .await?;
    let schema: String = db
        .query_one_raw(Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT n.nspname FROM pg_extension e \
             JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_trgm'",
        ))
        .await?
        .ok_or_else(|| DbErr::Custom("pg_trgm is not installed".into()))?
        .try_get_by_index(0)?;
    db.execute_unprepared(&format!(
        "CREATE INDEX IF NOT EXISTS ix_messages_text_trgm ON messages \
         USING gin (lower(text) \"{}\".gin_trgm_ops)",
        schema.replace('"', "\"\"")
    ))
    .await?;
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for M0014ConversationSearch {
    /// One transaction on every backend: the trigram step's savepoint
    /// needs one.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        use sea_orm::Statement;
        for i in [
            index(
                "ix_messages_confidence",
                "messages",
                &["role", "confidence", "conversation_id"],
                false,
            ),
            index(
                "ix_messages_intent",
                "messages",
                &["role", "intent", "conversation_id"],
                false,
            ),
            index(
                "ix_messages_version",
                "messages",
                &["model_version", "conversation_id"],
                false,
            ),
            index(
                "ix_feedback_correction",
                "feedback",
                &["correction", "conversation_id"],
                false,
            ),
        ] {
            m.create_index(i).await?;
        }
        let db = m.get_connection();
        match db.get_database_backend() {
            sea_orm::DatabaseBackend::Sqlite => {
                // Filled by searches, not by writes: a message is added
                // when the next search needs it (see the store's
                // `catch_up_text_index`), so logging a turn pays nothing
                // for the index. `upto`: the last message id it holds.
                for sql in [
                    "CREATE VIRTUAL TABLE IF NOT EXISTS messages_text USING fts5(\
                     text, content='messages', content_rowid='id', tokenize='trigram')",
                    "CREATE TABLE IF NOT EXISTS messages_text_upto (upto INTEGER NOT NULL)",
                    "INSERT INTO messages_text_upto (upto) SELECT 0 \
                     WHERE NOT EXISTS (SELECT 1 FROM messages_text_upto)",
                ] {
                    db.execute_unprepared(sql).await?;
                }
            }
            sea_orm::DatabaseBackend::Postgres => {
                // pg_trgm is a trusted extension from PostgreSQL 13: any
                // role that may create in the database may add it.
                let can = db
                    .query_one_raw(Statement::from_string(
                        sea_orm::DatabaseBackend::Postgres,
                        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') \
                         OR (EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm') \
                             AND current_setting('server_version_num')::int >= 130000 \
                             AND has_database_privilege(current_database(), 'CREATE'))",
                    ))
                    .await?
                    .map(|r| r.try_get_by_index::<bool>(0))
                    .transpose()?
                    .unwrap_or(false);
                if can {
                    // A server may list the extension and still refuse it
                    // (an allow-list of its own): then the search scans,
                    // and the upgrade goes on.
                    db.execute_unprepared("SAVEPOINT coach_trgm").await?;
                    match trigram_index(db).await {
                        Ok(()) => {
                            db.execute_unprepared("RELEASE SAVEPOINT coach_trgm")
                                .await?
                        }
                        Err(e) => {
                            tracing::warn!(
                                "no trigram index for the conversations' text search (it scans): {e}"
                            );
                            db.execute_unprepared("ROLLBACK TO SAVEPOINT coach_trgm")
                                .await?
                        }
                    };
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// The review queue read in the orders it is read in, without sorting
/// the whole queue: most valuable first (priority down, then oldest), and
/// newest first, each within a state (and within a model's items).
struct M0015ReviewOrder;

impl MigrationName for M0015ReviewOrder {
    fn name(&self) -> &str {
        "m0015_review_order"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0015ReviewOrder {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let by_priority = |name: &str, cols: &[&str]| {
            let mut i = Index::create();
            i.name(name)
                .table(Alias::new("review_items"))
                .if_not_exists();
            for c in cols {
                i.col(Alias::new(*c));
            }
            i.col((Alias::new("priority"), IndexOrder::Desc))
                .col(Alias::new("id"))
                .to_owned()
        };
        for i in [
            by_priority("ix_review_items_priority", &["state"]),
            by_priority("ix_review_items_model_priority", &["model_name", "state"]),
            index(
                "ix_review_items_state",
                "review_items",
                &["state", "id"],
                false,
            ),
        ] {
            m.create_index(i).await?;
        }
        // Its first two columns were all it gave; the new ones cover it.
        m.drop_index(
            Index::drop()
                .name("ix_review_items_queue")
                .table(Alias::new("review_items"))
                .if_exists()
                .to_owned(),
        )
        .await
    }
}

/// Feedback found by its conversation or its message (a conversation's
/// read, the count that bounds its feedback, its size) without a scan of
/// all feedback.
struct M0016FeedbackLookups;

impl MigrationName for M0016FeedbackLookups {
    fn name(&self) -> &str {
        "m0016_feedback_lookups"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0016FeedbackLookups {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for (name, column) in [
            ("ix_feedback_conversation", "conversation_id"),
            ("ix_feedback_message", "message_id"),
        ] {
            m.create_index(index(name, "feedback", &[column], false))
                .await?;
        }
        Ok(())
    }
}
