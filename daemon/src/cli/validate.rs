//! `coach validate <paths…>`: check workflows (files, or folders of
//! `*.toml`), print every error with its location, exit 1 if any.

use crate::config::Config;
use crate::workflow::Workflow;
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
    let host = crate::plugin::PluginHost::new(&config)?;
    let catalog = crate::catalog(&host);
    // GPU requests are checked against this machine's inventory.
    let gpus = crate::executor::gpus::GpuQueue::new(config.gpus.clone());
    let fits = |r: &crate::workflow::Resources| gpus.never_message(r);
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
        match Workflow::load(f, &catalog)
            .and_then(|wf| wf.check_fits(config.slurm.default, &fits).map(|()| wf))
        {
            Ok(wf) => println!(
                "ok: {} ({}, {} steps)",
                f.display(),
                wf.name,
                wf.steps.len()
            ),
            Err(es) => {
                for e in &es.0 {
                    println!("{}\n", e.render());
                }
                errors += es.0.len();
            }
        }
    }
    if errors > 0 {
        println!("{errors} error(s) in {} file(s) checked", files.len());
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
