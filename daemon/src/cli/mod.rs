//! The `coach` command line: one file per subcommand.

mod analyze;
mod bench;
mod client;
mod conversations;
mod daemon;
mod deploy;
mod evaluate;
mod experiment;
mod gpu;
mod models;
mod plugin;
mod predict;
mod progress;
mod remote;
mod run;
mod runs;
mod script;
mod token;
mod validate;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "coach",
    version,
    about = "Coach keeps chatbots learning: workflows, sandboxed plugins, a model registry."
)]
pub struct Cli {
    /// Configuration file. Default: `config/coach.toml` if present, else the
    /// built-in defaults.
    #[arg(long, global = true, env = "COACH_CONFIG")]
    pub config: Option<PathBuf>,

    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// More logging (-v: debug, -vv: trace). `RUST_LOG` overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a workflow now, in this process, and print its evaluation.
    Run(run::Args),
    /// Run the service: triggers, the run queue, the HTTP API.
    Daemon(daemon::Args),
    /// A running daemon's state (`COACH_URL`, `COACH_TOKEN`).
    Status(remote::StatusArgs),
    /// Queue a run of a workflow on the running daemon.
    Trigger(remote::TriggerArgs),
    /// Cancel a queued or running run on the running daemon.
    Cancel(remote::CancelArgs),
    /// The GPU inventory: NVML, static or none (the daemon's, with its
    /// allocations, when `COACH_URL` is set).
    Gpu(gpu::GpuArgs),
    /// Steps waiting for GPUs on the running daemon, with why each waits.
    Queue(gpu::QueueArgs),
    /// API tokens for the daemon.
    #[command(subcommand)]
    Token(token::Command),
    /// Cross-validate a workflow's trainer on its data (`--folds K`).
    Evaluate(evaluate::Args),
    /// Check workflow files; print every error with file:line:column.
    Validate(validate::Args),
    /// Registered models.
    #[command(subcommand)]
    Models(models::Command),
    /// Deploy a model version to an environment, after its health check
    /// (through the daemon when `COACH_URL` is set).
    Deploy(deploy::DeployArgs),
    /// Roll an environment back to the version before, or `--to` one.
    Rollback(deploy::RollbackArgs),
    /// What each environment serves, and the history of every change.
    #[command(subcommand)]
    Deployments(deploy::Command),
    /// A/B experiments and canaries: list, show results, start, stop, and
    /// plan how many units one needs.
    #[command(subcommand)]
    Experiment(experiment::Command),
    /// Training runs (from the daemon when `COACH_URL` is set).
    #[command(subcommand)]
    Runs(runs::Command),
    /// Score conversations with an analyzer plugin (from `--input FILE` or
    /// the store), with the reasons for every point lost.
    Analyze(analyze::Args),
    /// Logged conversations: list with filters, show one turn by turn,
    /// import (Coach JSONL, Rasa tracker dumps, CSV) and export (JSONL).
    #[command(subcommand)]
    Conversations(conversations::Command),
    /// Predict intents with a registered model.
    Predict(predict::Args),
    /// Write, build, check, try and install plugins.
    #[command(subcommand)]
    Plugin(plugin::Command),
    /// Try a Rhai script against inputs you give it.
    #[command(subcommand)]
    Script(script::Command),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(bench::Command),
}

fn init_tracing(format: LogFormat, verbose: u8, quiet_default: bool) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 if quiet_default => "warn",
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{default},sqlx=warn,sea_orm=warn,sea_orm_migration=warn,wasmtime=warn,cranelift=warn"
        ))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => {
            use std::io::IsTerminal;
            builder
                .with_target(false)
                .with_ansi(std::io::stderr().is_terminal())
                .init()
        }
    }
}

/// A line on stdout, its control characters escaped (see
/// [`crate::core::text::terminal_safe`]); a failed write ends the command
/// with [`OutputFailed`], which [`main`] turns into a quiet exit (a closed
/// pipe) or one line (a full device) — never a panic.
macro_rules! out {
    () => {
        $crate::cli::write_out(format_args!(""))?
    };
    ($($t:tt)*) => {
        $crate::cli::write_out(format_args!($($t)*))?
    };
}
pub(crate) use out;

/// A line on stderr (progress, warnings, errors), its control characters
/// escaped. A failed write is ignored: there is nowhere left to say it.
macro_rules! note {
    ($($t:tt)*) => {
        $crate::cli::write_note(format_args!($($t)*))
    };
}
pub(crate) use note;

/// Standard output could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the output: {0}")]
pub struct OutputFailed(pub std::io::Error);

pub(crate) fn write_out(line: std::fmt::Arguments) -> Result<(), OutputFailed> {
    let text = line.to_string();
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", crate::core::text::terminal_safe(&text)).map_err(OutputFailed)
}

pub(crate) fn write_note(line: std::fmt::Arguments) {
    let text = line.to_string();
    let _ = writeln!(
        std::io::stderr().lock(),
        "{}",
        crate::core::text::terminal_safe(&text)
    );
}

/// The exit for a command's error: a closed pipe on stdout is the reader's
/// choice (`coach runs list | head -1`), so exit quietly; anything else is
/// one line on stderr.
fn fail(e: &anyhow::Error) -> ExitCode {
    if let Some(OutputFailed(io)) = e.downcast_ref::<OutputFailed>()
        && io.kind() == std::io::ErrorKind::BrokenPipe
    {
        return ExitCode::SUCCESS;
    }
    note!("error: {e:#}");
    ExitCode::from(1)
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Help and version go to stdout, through the same writer as every
        // command's output.
        Err(e) if !e.use_stderr() => {
            return match write_out(format_args!("{}", e.render().to_string().trim_end())) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => fail(&err.into()),
            };
        }
        Err(e) => e.exit(),
    };
    // Commands report their own progress; log lines would only interleave
    // with it, so their default level is `warn`. The daemon logs at `info`.
    let quiet = !matches!(cli.command, Command::Daemon(_));
    init_tracing(cli.log_format, cli.verbose, quiet);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            note!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => fail(&e),
    }
}

async fn dispatch(cli: Cli) -> Result<ExitCode> {
    let config = crate::config::Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Run(a) => run::run(config, a).await,
        Command::Daemon(a) => daemon::run(config, a).await,
        Command::Status(a) => remote::status(&config, a),
        Command::Trigger(a) => remote::trigger(&config, a),
        Command::Cancel(a) => remote::cancel(&config, a),
        Command::Gpu(a) => gpu::gpu(&config, a),
        Command::Queue(a) => gpu::queue(&config, a),
        Command::Token(c) => token::run(config, c).await,
        Command::Script(c) => script::run(&config, c),
        Command::Validate(a) => validate::run(config, a),
        Command::Evaluate(a) => evaluate::run(config, a).await,
        Command::Models(c) => models::run(config, c).await,
        Command::Runs(c) => runs::run(config, c).await,
        Command::Conversations(c) => conversations::run(config, c).await,
        Command::Analyze(a) => analyze::run(config, a).await,
        Command::Deploy(a) => deploy::deploy(config, a).await,
        Command::Rollback(a) => deploy::rollback(config, a).await,
        Command::Deployments(c) => deploy::run(config, c).await,
        Command::Experiment(c) => experiment::run(config, c).await,
        Command::Predict(a) => predict::run(config, a).await,
        Command::Plugin(c) => plugin::run(config, c).await,
        Command::Bench(c) => bench::run(config, c).await,
    }
}

/// `0.9312` → `93.1%`.
pub(crate) fn pct(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}
