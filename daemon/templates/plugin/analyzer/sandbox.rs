//! The plugin as Coach runs it: built for wasm32-wasip2 and run in Coach's
//! own sandbox, with its limits, by `coach plugin run` (the `coach` on
//! PATH, or the one `COACH_BIN` names).

use coach_plugin_sdk::sandbox::Sandbox;

#[test]
fn scores_conversations_in_coachs_sandbox() {
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/conversations.jsonl");
    let run = Sandbox::new(env!("CARGO_MANIFEST_DIR"))
        .input(data)
        .analyzer()
        .expect("the plugin runs in Coach's sandbox");
    assert_eq!(run.len(), 2);
    assert_eq!(run[0]["score"], 100.0);
    assert_eq!(run[1]["score"], 75.0);
}
