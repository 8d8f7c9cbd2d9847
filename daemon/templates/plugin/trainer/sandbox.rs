//! The plugin as Coach runs it: built for wasm32-wasip2 and run in Coach's
//! own sandbox, with its limits, by `coach plugin run` (the `coach` on
//! PATH, or the one `COACH_BIN` names).

use coach_plugin_sdk::sandbox::Sandbox;

#[test]
fn trains_and_predicts_in_coachs_sandbox() {
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/examples.jsonl");
    let run = Sandbox::new(env!("CARGO_MANIFEST_DIR"))
        .input(data)
        .text("what is the wifi password")
        .text("completely unrelated gibberish xqzt")
        .trainer()
        .expect("the plugin runs in Coach's sandbox");
    assert!(run.model_bytes > 0);
    assert_eq!(run.predictions[0].intent, "wifi");
    assert_eq!(run.predictions[1].intent, "oos");
    assert!(run.test_accuracy.unwrap() >= 0.5, "{run:?}");
}
