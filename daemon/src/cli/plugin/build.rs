//! `coach plugin build [DIR]`: cargo for `wasm32-wasip2` (the target is
//! added with rustup when missing), the component copied beside the
//! manifest, then checked as `coach plugin check` would.

use super::{print_report, refuse};
use crate::cli::note;
use crate::config::Config;
use crate::plugin::PluginHost;
use crate::plugin::inspect;
use crate::plugin::manifest::Manifest;
use anyhow::{Context, Result, anyhow, bail};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

pub const TARGET: &str = "wasm32-wasip2";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The plugin crate: a folder with `Cargo.toml` and `plugin.toml`.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Build with this cargo profile (default `release`).
    #[arg(long, default_value = "release")]
    pub profile: String,
}

pub fn run(config: Config, a: Args) -> Result<ExitCode> {
    let started = Instant::now();
    let wasm = build(&a.dir, &a.profile)?;
    note!(
        "built {} in {:.1} s",
        wasm.display(),
        started.elapsed().as_secs_f64()
    );
    let host = PluginHost::new(&config)?;
    let report = inspect::inspect(&host, &config, &a.dir);
    print_report(&report, false)?;
    if report.errors() > 0 {
        return refuse(&report, "ready to install");
    }
    Ok(ExitCode::SUCCESS)
}

/// Build the crate in `dir`; the component's path beside the manifest.
pub fn build(dir: &Path, profile: &str) -> Result<PathBuf> {
    let manifest_path = dir.join("plugin.toml");
    let text = std::fs::read_to_string(&manifest_path).with_context(|| {
        format!(
            "{} is not a plugin folder: cannot read {}",
            dir.display(),
            manifest_path.display()
        )
    })?;
    // Located errors are `check`'s job; here the id and file name suffice.
    let manifest = Manifest::parse(&text, &manifest_path.display().to_string())
        .map_err(|e| anyhow!("{e}\n(`coach plugin check` shows where)"))?;
    let cargo_toml = dir.join("Cargo.toml");
    if !cargo_toml.is_file() {
        bail!(
            "{} has no Cargo.toml: `coach plugin build` builds Rust crates; a component built otherwise goes beside plugin.toml as {}",
            dir.display(),
            inspect::wasm_path(&manifest_path, &manifest).display()
        );
    }
    ensure_target(dir)?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(dir)
        .args(["build", "--target", TARGET, "--profile", profile])
        .arg("--manifest-path")
        .arg(&cargo_toml)
        .args(["--message-format", "json-render-diagnostics"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    // Flags meant for a host build must not leak into the guest's.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    let mut child = cmd
        .spawn()
        .context("cannot run cargo (is Rust installed? https://rustup.rs)")?;
    let stdout = child.stdout.take().expect("piped");
    let own = std::fs::canonicalize(&cargo_toml).unwrap_or(cargo_toml.clone());
    let mut artifact: Option<PathBuf> = None;
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.context("cannot read cargo's output")?;
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        let is_own = msg["manifest_path"]
            .as_str()
            .and_then(|p| std::fs::canonicalize(p).ok())
            .is_some_and(|p| p == own);
        let is_cdylib = msg["target"]["kind"]
            .as_array()
            .is_some_and(|k| k.iter().any(|k| k == "cdylib"));
        if !(is_own && is_cdylib) {
            continue;
        }
        if let Some(files) = msg["filenames"].as_array() {
            artifact = files
                .iter()
                .filter_map(|f| f.as_str())
                .find(|f| f.ends_with(".wasm"))
                .map(PathBuf::from)
                .or(artifact);
        }
    }
    let status = child.wait().context("cargo did not finish")?;
    if !status.success() {
        bail!("cargo build failed (its messages are above)");
    }
    let artifact = artifact.ok_or_else(|| {
        anyhow!(
            "cargo built no component: {} needs `[lib] crate-type = [\"cdylib\"]`",
            cargo_toml.display()
        )
    })?;
    let dest = inspect::wasm_path(&manifest_path, &manifest);
    // Through a temporary file: a daemon watching this folder never reads
    // half a component.
    let tmp = dest.with_extension("wasm.tmp");
    std::fs::copy(&artifact, &tmp)
        .with_context(|| format!("cannot copy {} to {}", artifact.display(), tmp.display()))?;
    std::fs::rename(&tmp, &dest).with_context(|| format!("cannot write {}", dest.display()))?;
    Ok(dest)
}

/// Add the `wasm32-wasip2` target with rustup when the toolchain that
/// builds in `dir` lacks it.
fn ensure_target(dir: &Path) -> Result<()> {
    let Ok(listed) = Command::new("rustup")
        .current_dir(dir)
        .args(["target", "list", "--installed"])
        .output()
    else {
        // No rustup: the toolchain was set up some other way.
        return Ok(());
    };
    if String::from_utf8_lossy(&listed.stdout)
        .lines()
        .any(|l| l.trim() == TARGET)
    {
        return Ok(());
    }
    note!("adding the {TARGET} target (rustup target add {TARGET})");
    let status = Command::new("rustup")
        .current_dir(dir)
        .args(["target", "add", TARGET])
        .status()
        .context("cannot run rustup")?;
    if !status.success() {
        bail!("`rustup target add {TARGET}` failed");
    }
    Ok(())
}
