//! `coach validate <paths…>`: check workflows (files, or folders of
//! `*.toml`), print every error with its location, exit 1 if any.

use crate::cli::out;
use crate::compute::gpus::GpuQueue;
use crate::config::Config;
use crate::plugin::PluginHost;
use crate::service::lifecycle::load_workflow_file;
use anyhow::Result;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Workflow files or folders holding them.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

pub fn run(config: Config, args: Args) -> Result<ExitCode> {
    // No store: a workflow can be checked anywhere. GPU requests are
    // checked against this machine's inventory.
    // Plugin folders that cannot be loaded are warned about as the host
    // reads them; only a workflow that uses one fails.
    let host = PluginHost::new(&config)?;
    let gpus = GpuQueue::new(config.gpus.clone());
    let mut files = Vec::new();
    for p in &args.paths {
        if p.is_dir() {
            let mut inner: Vec<PathBuf> = std::fs::read_dir(p)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "toml"))
                .collect();
            inner.sort();
            files.extend(inner);
        } else {
            files.push(p.clone());
        }
    }
    let mut errors = 0;
    for f in &files {
        match load_workflow_file(&config, &host, &gpus, f) {
            Ok(good) => {
                // Each plugin the workflow uses must load: a component
                // that compiles, links and exports what its kind needs.
                let mut broken = 0;
                for step in &good.workflow.steps {
                    if let crate::workflow::Action::Plugin { id, .. } = &step.action
                        && let Err(e) = host.check(id)
                    {
                        out!("{}: step `{}`: {e}", f.display(), step.id);
                        broken += 1;
                    }
                }
                if broken == 0 {
                    out!(
                        "ok: {} ({}, {} steps)",
                        f.display(),
                        good.workflow.name,
                        good.workflow.steps.len()
                    );
                }
                errors += broken;
            }
            Err(es) => {
                for e in &es.0 {
                    out!("{}\n", e.render());
                }
                errors += es.0.len();
            }
        }
    }
    if errors > 0 {
        out!("{errors} error(s) in {} file(s) checked", files.len());
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
