//! The plugin as Coach runs it: built for wasm32-wasip2 and run in Coach's
//! own sandbox, with its limits, by `coach plugin run` (the `coach` on
//! PATH, or the one `COACH_BIN` names).

use coach_plugin_sdk::sandbox::Sandbox;

#[test]
fn coach_reads_every_example_in_its_sandbox() {
    let run = Sandbox::new(env!("CARGO_MANIFEST_DIR"))
        .source()
        .expect("the plugin runs in Coach's sandbox");
    assert_eq!(run.examples.len(), {{crate}}::EXAMPLES.len());
    assert_eq!(run.bad_records, 0);
    assert_eq!(run.checkpoint.as_deref(), Some(run.examples.len().to_string().as_str()));
}

#[test]
fn parameters_reach_the_plugin() {
    let run = Sandbox::new(env!("CARGO_MANIFEST_DIR"))
        .with("intents", r#"["wifi"]"#)
        .source()
        .expect("the plugin runs in Coach's sandbox");
    assert!(!run.examples.is_empty());
    assert!(run.examples.iter().all(|e| e.intent == "wifi"));
}
