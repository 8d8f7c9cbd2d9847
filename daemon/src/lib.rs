//! Coach keeps chatbots learning: it reads workflow files, runs their steps
//! — data sources, trainers and analyzers as sandboxed WebAssembly plugins,
//! built-in split / evaluate / register steps — and keeps every dataset
//! snapshot, run and model in its store.
//!
//! `coach daemon` ([`service`]) keeps doing that: triggers queue runs, the
//! executor runs them, the API shows them as they go.
//!
//! Data flows one way: `cli` / `api` / `trigger` → `scheduler` → `executor`
//! → `pipeline` → `plugin` / `store` / `registry`.

pub mod api;
pub mod cli;
pub mod config;
pub mod executor;
pub mod gpu;
pub mod pipeline;
pub mod plugin;
pub mod registry;
pub mod scheduler;
pub mod script;
pub mod service;
pub mod store;
pub mod trigger;
pub mod workflow;

use anyhow::Result;
use std::sync::Arc;

/// Everything a command needs: config, plugin host, store and artifacts.
pub struct Coach {
    pub config: config::Config,
    pub host: Arc<plugin::PluginHost>,
    pub store: store::Store,
    pub artifacts: registry::Artifacts,
    /// The GPU inventory and allocations (for process steps).
    pub gpus: Arc<executor::gpus::GpuQueue>,
}

impl Coach {
    /// Open the data directory, connect (and migrate) the store, discover
    /// plugins.
    pub async fn open(config: config::Config) -> Result<Coach> {
        use anyhow::Context;
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!(
                "cannot create the data directory {}",
                config.data_dir.display()
            )
        })?;
        let host = Arc::new(plugin::PluginHost::new(&config)?);
        let store = store::Store::connect(&config.database_url()).await?;
        let artifacts = registry::Artifacts::new(config.artifacts_dir());
        let gpus = executor::gpus::GpuQueue::new(config.gpus.clone());
        Ok(Coach {
            config,
            host,
            store,
            artifacts,
            gpus,
        })
    }

    /// The manifests workflows are checked against.
    pub fn catalog(&self) -> workflow::Catalog {
        catalog(&self.host)
    }

    pub fn runner(&self) -> pipeline::Runner {
        pipeline::Runner {
            host: self.host.clone(),
            store: self.store.clone(),
            artifacts: self.artifacts.clone(),
            gpus: self.gpus.clone(),
            slurm: Arc::new(executor::slurm::Slurm::new(self.config.slurm.clone())),
            work_dir: self.config.work_dir(),
            process_grace: self.config.daemon.shutdown_grace,
        }
    }
}

pub fn catalog(host: &plugin::PluginHost) -> workflow::Catalog {
    host.plugins()
        .iter()
        .map(|p| (p.id().to_owned(), p.manifest.clone()))
        .collect()
}
