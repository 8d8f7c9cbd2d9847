//! A workflow file: TOML parsing, the checker (steps, plugins' parameters,
//! triggers, inline scripts) and the located error messages.
#![no_main]

use coach::core::params::{Catalog, PluginSpec};
use coach::plugin::manifest::Manifest;
use coach::workflow::Workflow;
use std::path::Path;
use std::sync::OnceLock;

fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| {
        let mut c = Catalog::new();
        for text in [
            include_str!("../../plugins/source-files/plugin.toml"),
            include_str!("../../plugins/trainer-intent/plugin.toml"),
        ] {
            let m = Manifest::parse(text, "plugin.toml").expect("first-party manifest");
            c.insert(
                m.id.to_string(),
                PluginSpec {
                    kind: m.kind,
                    parameters: m.parameters,
                    problem: None,
                },
            );
        }
        c
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Workflow::parse(Path::new("workflows/fuzz.toml"), text, catalog()) {
        Ok(w) => {
            let _ = w.model_name();
            for s in &w.steps {
                let _ = w.upstream_of(&s.id);
            }
        }
        Err(errors) => {
            assert!(!errors.0.is_empty(), "a refusal without an error");
            for e in &errors.0 {
                assert!(e.line <= text.lines().count() + 1, "{e:?} past the end");
            }
            let _ = errors.to_string();
        }
    }
});
