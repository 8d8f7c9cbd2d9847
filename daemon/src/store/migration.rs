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
