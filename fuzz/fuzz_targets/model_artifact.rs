//! A model artifact as the trainer loads it for `predict` and warm starts:
//! any bytes either load into a model that answers, or are refused.
#![no_main]

use trainer_intent::model::IntentModel;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(model) = IntentModel::from_bytes(data) else {
        return;
    };
    for text in ["book a table for two at 7pm", "", "ÿ \u{301}x", "a a a a a"] {
        let p = model.predict_one(text);
        assert!(
            p.confidence.is_finite() || p.ranking.is_empty(),
            "confidence {} for {text:?}",
            p.confidence
        );
    }
    // What loads, saves to the same bytes' meaning: load it again.
    let again = IntentModel::from_bytes(&model.to_bytes()).expect("a saved model loads");
    assert_eq!(
        again.predict_one("book a table").intent,
        model.predict_one("book a table").intent
    );
});
