//! The registry: content-addressed [`artifacts`] (model bytes, process
//! outputs), and registered [`models`] with their lineage — how a model is
//! registered and the one document every face shows it as — and their
//! [`deployments`].

pub mod artifacts;
pub mod deployments;
pub mod models;

pub use artifacts::{ArtifactError, Artifacts};
pub use models::{ModelView, PROCESS_TRAINER};
