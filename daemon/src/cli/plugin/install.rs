//! `coach plugin install` and `coach plugin list`.
//!
//! Installing copies a checked plugin (manifest and component, nothing
//! else) into `<first plugin folder>/<id>/`, through a temporary folder
//! renamed into place, so a daemon watching the folder never loads half a
//! plugin; it picks the new one up by hot reload.

use super::{print_report, refuse, short};
use crate::cli::{note, out};
use crate::config::Config;
use crate::plugin::inspect;
use crate::plugin::{Origin, PluginHost};
use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    /// A plugin folder, its `plugin.toml`, or its `.wasm` (beside the
    /// manifest).
    pub target: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// The list as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn install(config: Config, a: InstallArgs) -> Result<ExitCode> {
    let Some(root) = config.plugin_dirs.first().cloned() else {
        bail!(
            "the config ({}) names no plugin folder: add `plugin_dirs = [\"<folder>\"]`",
            config_name(&config)
        );
    };
    let host = PluginHost::new(&config)?;
    let report = inspect::inspect(&host, &config, &a.target);
    if report.errors() > 0 {
        print_report(&report, false)?;
        return refuse(&report, "installed");
    }
    for f in &report.findings {
        note!("{}", f.at.render().replacen("error: ", "warning: ", 1));
    }
    let (Some(manifest), Some(wasm), Some(sha)) = (
        report.manifest.as_ref(),
        report.wasm_path.as_ref(),
        report.wasm_sha256.as_ref(),
    ) else {
        bail!("the check found no component to install");
    };
    let id = manifest.id.to_string();
    let dest = root.join(&id);
    let mut replaced = None;
    if let Ok(existing) = host.get(&id) {
        match &existing.origin {
            Origin::BuiltIn => bail!(
                "`{id}` is a plugin built into Coach; give yours another id in {}",
                report.manifest_path.display()
            ),
            Origin::Dir(d) if !same_folder(d, &dest) => bail!(
                "`{id}` is already installed in {}; remove it there first",
                d.display()
            ),
            Origin::Dir(_) => {
                replaced = Some((
                    existing.manifest.version.clone(),
                    existing.wasm_sha256.clone(),
                ))
            }
        }
    }
    std::fs::create_dir_all(&root)
        .with_context(|| format!("cannot create the plugin folder {}", root.display()))?;
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{id}.installing-"))
        .tempdir_in(&root)
        .with_context(|| format!("cannot write in {}", root.display()))?;
    let wasm_name = inspect::wasm_path(&report.manifest_path, manifest)
        .file_name()
        .map(|n| n.to_owned())
        .unwrap_or_else(|| format!("{id}.wasm").into());
    std::fs::copy(&report.manifest_path, staging.path().join("plugin.toml"))
        .with_context(|| format!("cannot copy {}", report.manifest_path.display()))?;
    std::fs::copy(wasm, staging.path().join(&wasm_name))
        .with_context(|| format!("cannot copy {}", wasm.display()))?;
    // The copy is what was checked: the same bytes.
    let copied = std::fs::read(staging.path().join(&wasm_name))?;
    if crate::core::hash::sha256_hex(&copied) != *sha {
        bail!(
            "{} changed while it was installed; build it again",
            wasm.display()
        );
    }
    let staged = staging.keep();
    let old = root.join(format!(".{id}.replaced"));
    if dest.exists() {
        let _ = std::fs::remove_dir_all(&old);
        std::fs::rename(&dest, &old)
            .with_context(|| format!("cannot move the installed {} aside", dest.display()))?;
    }
    if let Err(e) = std::fs::rename(&staged, &dest) {
        // Put the old one back: installing fails whole or not at all.
        if old.exists() {
            let _ = std::fs::rename(&old, &dest);
        }
        let _ = std::fs::remove_dir_all(&staged);
        return Err(e).with_context(|| format!("cannot install into {}", dest.display()));
    }
    let _ = std::fs::remove_dir_all(&old);
    match replaced {
        Some((version, old_sha)) => out!(
            "installed {id} {} into {} (sha256 {}), replacing {version} (sha256 {})",
            manifest.version,
            dest.display(),
            short(sha),
            short(&old_sha)
        ),
        None => out!(
            "installed {id} {} ({}) into {} (sha256 {})",
            manifest.version,
            manifest.kind,
            dest.display(),
            short(sha)
        ),
    }
    out!("a running daemon watching {} loads it now", root.display());
    Ok(ExitCode::SUCCESS)
}

fn same_folder(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

fn config_name(config: &Config) -> String {
    config
        .source
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "the built-in defaults".into())
}

pub fn list(config: Config, a: ListArgs) -> Result<ExitCode> {
    let host = PluginHost::new(&config)?;
    let plugins = host.plugins();
    let problems = host.problems();
    if a.json {
        let v = serde_json::json!({
            "plugin_dirs": config.plugin_dirs,
            "plugins": plugins.iter().map(|p| serde_json::json!({
                "id": p.id(),
                "version": p.manifest.version,
                "kind": p.manifest.kind.to_string(),
                "api": p.manifest.api,
                "origin": p.origin.to_string(),
                "sha256": p.wasm_sha256,
                "description": p.manifest.description,
            })).collect::<Vec<_>>(),
            "problems": problems,
        });
        out!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    out!(
        "{:<24} {:<10} {:<9} {:<8} {:<14} ORIGIN",
        "ID",
        "VERSION",
        "KIND",
        "API",
        "SHA256"
    );
    for p in &plugins {
        out!(
            "{:<24} {:<10} {:<9} {:<8} {:<14} {}",
            p.id(),
            p.manifest.version,
            p.manifest.kind.to_string(),
            p.manifest.api,
            short(&p.wasm_sha256),
            p.origin
        );
    }
    for (folder, why) in &problems {
        out!("not loaded: {folder}: {why}");
    }
    if config.plugin_dirs.is_empty() {
        out!("(the config names no plugin folder)");
    } else {
        out!(
            "plugin folders: {}",
            config
                .plugin_dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
