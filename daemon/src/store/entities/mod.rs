//! sea-orm entities, one file per table. Names follow the design's schema.

pub mod api_tokens;
pub mod conversations;
pub mod dataset_conversations;
pub mod dataset_versions;
pub mod datasets;
pub mod deployment_history;
pub mod deployments;
pub mod examples;
pub mod experiment_arms;
pub mod experiment_units;
pub mod experiments;
pub mod feedback;
pub mod messages;
pub mod models;
pub mod quality_analyses;
pub mod recommendations;
pub mod review_claims;
pub mod review_items;
pub mod review_labels;
pub mod run_logs;
pub mod run_metrics;
pub mod run_steps;
pub mod training_runs;
pub mod trigger_fires;
pub mod workflow_versions;
