//! What Coach does when asked, whoever asks — the HTTP API, the command
//! line, a trigger: submit a run ([`submit`]: one transaction with the
//! workflow's concurrency policy), cancel one, answer queries in the one
//! shape each thing has ([`views`], [`queries`]), and keep itself current
//! and honest ([`lifecycle`]: reload, recovery after a crash).
//!
//! The service is built by the composition root (`app`) from parts it
//! does not own the making of; it calls down (executor, pipeline, store),
//! never up.

pub mod conversations;
pub mod datasets;
pub mod deployments;
pub mod experiments;
pub mod lifecycle;
pub mod lock;
pub mod predict;
pub mod queries;
pub mod review;
pub mod submit;
pub mod tokens;
pub mod views;

use crate::compute::gpus::GpuQueue;
use crate::compute::slurm::Slurm;
use crate::config::Config;
use crate::core::sync::ReadWrite;
use crate::events::Bus;
use crate::executor::Executor;
use crate::plugin::PluginHost;
use crate::store::Store;
use crate::workflow::set::WorkflowSet;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};
use std::time::Instant;
use tokio_util::sync::CancellationToken;

pub use submit::{Fire, FireError};

/// Conversations analysed (for the CLI and API; the pipeline owns it,
/// as the `analyze` step runs it).
pub use crate::pipeline::analysis;

/// Everything the service answers from.
pub struct Service {
    config: RwLock<Config>,
    pub store: Store,
    pub host: Arc<PluginHost>,
    pub workflows: Arc<WorkflowSet>,
    pub executor: Arc<Executor>,
    pub bus: Bus,
    pub ready: AtomicBool,
    pub started: Instant,
    /// Cancelled when the process stops: ends long-lived answers (event
    /// streams). A child of the process's own token.
    pub stopping: CancellationToken,
    /// Problems of the last config reload.
    pub config_problem: RwLock<Option<String>>,
    /// Held while reloading: one reload at a time, whoever asks.
    reloading: tokio::sync::Mutex<()>,
    /// The deployed versions, loaded and routed (the daemon serves them).
    pub server: Arc<crate::serving::Server>,
    /// What the experiment looks last said.
    looks: experiments::Looks,
    /// Tokens recently checked.
    tokens: tokens::TokenCache,
}

impl Service {
    pub fn new(
        config: Config,
        executor: Arc<Executor>,
        bus: Bus,
        stopping: CancellationToken,
    ) -> Service {
        let runner = executor.runner.clone();
        Service {
            config: RwLock::new(config),
            store: runner.store.clone(),
            host: runner.host.clone(),
            workflows: executor.workflows.clone(),
            executor,
            bus,
            ready: AtomicBool::new(false),
            started: Instant::now(),
            stopping,
            config_problem: RwLock::new(None),
            reloading: tokio::sync::Mutex::new(()),
            server: Arc::new(crate::serving::Server::new(
                runner.host.clone(),
                runner.store.clone(),
                runner.artifacts.clone(),
            )),
            looks: experiments::Looks::default(),
            tokens: tokens::TokenCache::default(),
        }
    }

    pub fn config(&self) -> Config {
        self.config.reading().clone()
    }

    /// The GPU inventory and queue.
    pub fn gpus(&self) -> &Arc<GpuQueue> {
        &self.executor.runner.gpus
    }

    pub fn slurm(&self) -> &Arc<Slurm> {
        &self.executor.runner.slurm
    }

    pub fn artifacts(&self) -> &crate::registry::Artifacts {
        &self.executor.runner.artifacts
    }
}
