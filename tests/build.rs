//! Builds the hostile fixture plugins from source (never checked in) and
//! lays them out as installable plugin folders: `$OUT_DIR/plugins/<id>/`
//! with `plugin.toml` and `<id>.wasm`.

use std::path::PathBuf;

/// Installed plugin id → (fixture crate, its manifest under `fixtures/`).
const FIXTURES: &[(&str, &str, &str)] = &[
    (
        "loop-forever",
        "hostile-trainer",
        "manifests/loop-forever.toml",
    ),
    (
        "alloc-forever",
        "hostile-trainer",
        "manifests/alloc-forever.toml",
    ),
    (
        "spam-output",
        "hostile-trainer",
        "manifests/spam-output.toml",
    ),
    ("panicker", "hostile-trainer", "manifests/panicker.toml"),
    (
        "sleep-forever",
        "hostile-trainer",
        "manifests/sleep-forever.toml",
    ),
    (
        "endless-source",
        "hostile-source",
        "manifests/endless-source.toml",
    ),
    (
        "spinning-source",
        "hostile-source",
        "manifests/spinning-source.toml",
    ),
    (
        "bad-records-source",
        "hostile-source",
        "manifests/bad-records-source.toml",
    ),
    (
        "lying-source",
        "hostile-source",
        "manifests/lying-source.toml",
    ),
    ("log-flood", "hostile-source", "manifests/log-flood.toml"),
    (
        "deep-recursion",
        "hostile-source",
        "manifests/deep-recursion.toml",
    ),
    (
        "hostcall-hog",
        "hostile-source",
        "manifests/hostcall-hog.toml",
    ),
    (
        "read-outside",
        "read-outside",
        "plugins/read-outside/plugin.toml",
    ),
    ("unsent-body", "hostile-http", "manifests/unsent-body.toml"),
    ("api-0-1-0", "api-0-1-0", "manifests/api-0-1-0.toml"),
];

include!("../daemon/build_support.rs");

fn main() {
    let here = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = here.parent().unwrap().to_path_buf();
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("plugins");
    println!("cargo:rerun-if-changed={}", here.join("fixtures").display());
    for path in ["plugin-sdk", ".cargo/config.toml"] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }
    let mut packages: Vec<String> = FIXTURES
        .iter()
        .map(|f| format!("fixture-{}", f.1))
        .collect();
    packages.dedup();
    let wasm_dir = build_plugins(
        &root,
        &root.join("target").join("wasm-fixtures"),
        packages.iter().map(String::as_str),
    );
    for (id, crate_name, manifest) in FIXTURES {
        let dir = out.join(id);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(
            here.join("fixtures").join(manifest),
            dir.join("plugin.toml"),
        )
        .unwrap();
        let wasm = wasm_dir.join(format!("fixture_{}.wasm", crate_name.replace('-', "_")));
        std::fs::copy(&wasm, dir.join(format!("{id}.wasm"))).unwrap();
    }
}
