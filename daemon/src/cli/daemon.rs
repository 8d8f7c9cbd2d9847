//! `coach daemon`: run the service until SIGTERM or SIGINT.

use crate::config::Config;
use anyhow::Result;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(config: Config, _args: Args) -> Result<ExitCode> {
    crate::app::run_daemon(config).await?;
    Ok(ExitCode::SUCCESS)
}
