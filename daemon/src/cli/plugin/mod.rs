//! `coach plugin …`: write, build, check, try and install plugins.
//!
//! `new` lays out a crate that builds as is; `build` compiles it for
//! `wasm32-wasip2` and checks the result; `check` says everything the host
//! would refuse or wonder about, located; `run` runs it in the real sandbox
//! with the real limits and prints what Coach would see; `install` copies
//! it into the config's plugin folder (a running daemon picks it up by hot
//! reload); `list` shows what is installed.

mod build;
mod install;
mod new;
mod run;

use crate::cli::{note, out};
use crate::config::Config;
use crate::plugin::PluginHost;
use crate::plugin::inspect::{self, Report, Severity};
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Start a plugin crate: manifest, a working example, a native test, a
    /// sandbox test and a README.
    New(new::Args),
    /// Build the plugin in DIR for wasm32-wasip2 and check the component.
    Build(build::Args),
    /// Check a plugin folder, manifest or component: every problem with
    /// its place.
    Check(CheckArgs),
    /// Run a plugin in Coach's sandbox, with the real limits and grants,
    /// and print what it produced.
    Run(run::Args),
    /// Install a checked plugin into the config's plugin folder.
    Install(install::InstallArgs),
    /// Installed and built-in plugins.
    List(install::ListArgs),
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// A plugin folder, its `plugin.toml`, or its `.wasm`.
    #[arg(default_value = ".")]
    pub target: PathBuf,
    /// The report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(config: Config, command: Command) -> Result<ExitCode> {
    match command {
        Command::New(a) => new::run(a),
        Command::Build(a) => build::run(config, a),
        Command::Check(a) => check(config, a),
        Command::Run(a) => run::run(config, a).await,
        Command::Install(a) => install::install(config, a),
        Command::List(a) => install::list(config, a),
    }
}

fn check(config: Config, a: CheckArgs) -> Result<ExitCode> {
    let host = PluginHost::new(&config)?;
    let report = inspect::inspect(&host, &config, &a.target);
    print_report(&report, a.json)?;
    Ok(if report.errors() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The report as `coach plugin check` prints it: the findings located
/// with their source lines, then a summary line.
pub(super) fn print_report(report: &Report, json: bool) -> Result<()> {
    if json {
        let v = serde_json::json!({
            "manifest": report.manifest_path,
            "id": report.manifest.as_ref().map(|m| m.id.to_string()),
            "version": report.manifest.as_ref().map(|m| m.version.clone()),
            "kind": report.manifest.as_ref().map(|m| m.kind.to_string()),
            "api": report.manifest.as_ref().map(|m| m.api.clone()),
            "built_against": report.built_against,
            "wasm": report.wasm_path,
            "sha256": report.wasm_sha256,
            "bytes": report.wasm_bytes,
            "exports": report.exports,
            "imports": report.imports,
            "warm_start": report.warm_start,
            "errors": report.errors(),
            "findings": report.findings.iter().map(|f| serde_json::json!({
                "severity": f.severity,
                "file": f.at.file,
                "line": f.at.line,
                "column": f.at.column,
                "message": f.at.message,
            })).collect::<Vec<_>>(),
        });
        out!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    for f in &report.findings {
        let text = f.at.render();
        let text = match f.severity {
            Severity::Error => text,
            Severity::Warning => text.replacen("error: ", "warning: ", 1),
        };
        out!("{text}\n");
    }
    let errors = report.errors();
    let warnings = report.findings.len() - errors;
    match &report.manifest {
        Some(m) if errors == 0 => {
            out!(
                "ok: {} {} ({}, built against coach:plugin@{}, {}, sha256 {}){}",
                m.id,
                m.version,
                m.kind,
                report.built_against.as_deref().unwrap_or("?"),
                crate::config::units::format_size(report.wasm_bytes),
                short(report.wasm_sha256.as_deref().unwrap_or("")),
                if warnings > 0 {
                    format!(", {warnings} warning(s)")
                } else {
                    String::new()
                }
            );
        }
        _ => {
            out!(
                "{errors} error(s), {warnings} warning(s) in {}",
                report.manifest_path.display()
            );
        }
    }
    Ok(())
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

/// The plugin folder a command works on: `target`, or the folder of the
/// manifest or component it names.
fn folder_of(target: &Path) -> PathBuf {
    inspect::manifest_path(target)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Say what a failed check means for the command that needed it.
fn refuse(report: &Report, what: &str) -> Result<ExitCode> {
    note!(
        "{} error(s): not {what} (`coach plugin check {}` shows them again)",
        report.errors(),
        folder_of(&report.manifest_path).display()
    );
    Ok(ExitCode::from(1))
}
