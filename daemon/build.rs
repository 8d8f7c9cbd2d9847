//! Builds the first-party plugins in `plugins/` for `wasm32-wasip2` and
//! embeds them: `coach` then runs its own workflows with nothing installed.
//!
//! Each plugin is built by its own nested cargo (one invocation per plugin,
//! so the SDK's per-kind features never unify) into `target/wasm-plugins`,
//! a target folder of its own so it never waits on the outer build's lock.
//! The `wasm32-wasip2` target is installed with rustup when it is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

const PLUGINS: &[(&str, &str)] = &[
    ("source-files", "source_files"),
    ("trainer-intent", "trainer_intent"),
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    for dir in [
        "plugins",
        "plugin-sdk/src",
        "plugin-sdk/wit",
        "plugin-sdk/Cargo.toml",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    let wasm_dir = build_plugins(&root, PLUGINS.iter().map(|p| p.0));
    let mut code = String::from("pub const BUILTIN: &[BuiltIn] = &[\n");
    for (package, artifact) in PLUGINS {
        let wasm = wasm_dir.join(format!("{artifact}.wasm"));
        let manifest = root.join("plugins").join(package).join("plugin.toml");
        code.push_str(&format!(
            "    BuiltIn {{ name: {package:?}, manifest: include_str!({:?}), wasm: include_bytes!({:?}) }},\n",
            manifest.display().to_string(),
            wasm.display().to_string()
        ));
    }
    code.push_str("];\n");
    std::fs::write(out_dir.join("builtin_plugins.rs"), code).unwrap();
}

/// Build `packages` of the workspace at `root` for wasm32-wasip2 with the
/// `plugin` profile; returns the folder holding the `.wasm` files.
pub fn build_plugins<'a>(root: &Path, packages: impl Iterator<Item = &'a str>) -> PathBuf {
    ensure_wasm_target();
    let target_dir = root.join("target").join("wasm-plugins");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for package in packages {
        let mut cmd = Command::new(&cargo);
        cmd.current_dir(root)
            .args([
                "build",
                "--quiet",
                "--target",
                "wasm32-wasip2",
                "--profile",
                "plugin",
                "-p",
                package,
            ])
            .arg("--target-dir")
            .arg(&target_dir);
        // Flags meant for the host build must not leak into the guest build.
        for var in [
            "CARGO_ENCODED_RUSTFLAGS",
            "RUSTFLAGS",
            "CARGO_BUILD_TARGET",
            "CARGO_TARGET_DIR",
            "RUSTC_WORKSPACE_WRAPPER",
            "CARGO_PRIMARY_PACKAGE",
        ] {
            cmd.env_remove(var);
        }
        let status = cmd.status().expect("run cargo to build a plugin");
        if !status.success() {
            panic!("building plugin `{package}` for wasm32-wasip2 failed");
        }
    }
    target_dir.join("wasm32-wasip2").join("plugin")
}

fn ensure_wasm_target() {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("wasm32-wasip2"))
        // Without rustup, assume the toolchain was set up by other means.
        .unwrap_or(true);
    if !installed {
        let status = Command::new("rustup")
            .args(["target", "add", "wasm32-wasip2"])
            .status()
            .expect("run rustup");
        assert!(status.success(), "`rustup target add wasm32-wasip2` failed");
    }
}
