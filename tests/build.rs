//! Builds the hostile fixture plugins from source (never checked in) and
//! lays them out as an installable plugin folder: `$OUT_DIR/plugins/<id>/`
//! with `plugin.toml` and `<id>.wasm`.

use std::path::PathBuf;

const FIXTURES: &[&str] = &[
    "loop-forever",
    "alloc-forever",
    "spam-output",
    "panicker",
    "read-outside",
];

include!("../daemon/build_support.rs");

fn main() {
    let here = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = here.parent().unwrap().to_path_buf();
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("plugins");
    println!("cargo:rerun-if-changed={}", here.join("fixtures").display());
    println!(
        "cargo:rerun-if-changed={}",
        root.join("plugin-sdk").display()
    );
    let packages: Vec<String> = FIXTURES.iter().map(|f| format!("fixture-{f}")).collect();
    let wasm_dir = build_plugins(
        &root,
        &root.join("target").join("wasm-fixtures"),
        packages.iter().map(String::as_str),
    );
    for f in FIXTURES {
        let dir = out.join(f);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(
            here.join("fixtures/plugins").join(f).join("plugin.toml"),
            dir.join("plugin.toml"),
        )
        .unwrap();
        let wasm = wasm_dir.join(format!("fixture_{}.wasm", f.replace('-', "_")));
        std::fs::copy(&wasm, dir.join(format!("{f}.wasm"))).unwrap();
    }
}
