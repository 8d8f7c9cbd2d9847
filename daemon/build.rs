//! Builds the first-party plugins in `plugins/` for `wasm32-wasip2` and
//! embeds them: `coach` then runs its own workflows with nothing installed.
//!
//! Each plugin is built by its own nested cargo (one invocation per plugin,
//! so the SDK's per-kind features never unify) into `target/wasm-plugins`,
//! a target folder of its own so it never waits on the outer build's lock.
//! The `wasm32-wasip2` target is installed with rustup when it is missing.

use std::path::PathBuf;

const PLUGINS: &[(&str, &str)] = &[
    ("analyzer-quality", "analyzer_quality"),
    ("source-files", "source_files"),
    ("source-helpdesk", "source_helpdesk"),
    ("source-rasa", "source_rasa"),
    ("source-slack", "source_slack"),
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
        ".cargo/config.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    let wasm_dir = build_plugins(
        &root,
        &root.join("target").join("wasm-plugins"),
        PLUGINS.iter().map(|p| p.0),
    );
    let mut code = String::from("pub const BUILTIN: &[BuiltIn] = &[\n");
    for (package, artifact) in PLUGINS {
        let wasm = wasm_dir.join(format!("{artifact}.wasm"));
        let manifest = root.join("plugins").join(package).join("plugin.toml");
        // The hash is taken here, so that a start that finds the compiled
        // component in its cache never reads the embedded bytes at all.
        let sha256 = {
            use sha2::Digest;
            let bytes = std::fs::read(&wasm).unwrap();
            sha2::Sha256::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        code.push_str(&format!(
            "    BuiltIn {{ name: {package:?}, manifest: include_str!({:?}), wasm: include_bytes!({:?}), sha256: {sha256:?} }},\n",
            manifest.display().to_string(),
            wasm.display().to_string()
        ));
    }
    code.push_str("];\n");
    std::fs::write(out_dir.join("builtin_plugins.rs"), code).unwrap();
}

include!("build_support.rs");
