// Shared by the build scripts of `coach` (first-party plugins) and of the
// test crate (hostile fixtures): build plugin crates of this workspace for
// wasm32-wasip2, each by a nested cargo of its own.

use std::path::Path;
use std::process::Command;

/// Build `packages` of the workspace at `root` for wasm32-wasip2 with the
/// `plugin` profile; returns the folder holding the `.wasm` files.
pub fn build_plugins<'a>(root: &Path, target_dir: &Path, packages: impl Iterator<Item = &'a str>) -> std::path::PathBuf {
    ensure_wasm_target();
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
            .arg(target_dir);
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
