//! `coach bench intent` through the real binary, with the sklearn peer.

use crate::common::*;

#[test]
fn bench_intent_prints_scores_with_the_peer_beside_them() {
    let Some(data) = datasets() else { return };
    let home = Home::new("");
    let clinc = data.join("clinc150");
    let run = home.coach(&[
        "bench",
        "intent",
        "--dataset",
        "clinc150",
        "--data",
        clinc.to_str().unwrap(),
        "--variant",
        "small",
        "--peer",
        "sklearn",
        "--json",
    ]);
    run.expect_ok();
    let v: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    let r = &v[0];
    assert_eq!(r["dataset"], "clinc150/small");
    assert_eq!(r["split"], "validation");
    assert!(r["in_scope_accuracy"].as_f64().unwrap() > 0.85, "{r}");
    assert!(r["oos_recall"].as_f64().unwrap() > 0.2, "{r}");
    assert!(
        r["predict_per_second"]["one_per_call"].as_f64().unwrap() > 100.0,
        "{r}"
    );
    assert!(
        r["peer"]["in_scope_accuracy"].as_f64().unwrap() > 0.85,
        "{r}"
    );
    assert!(
        r["ratios"]["train_time_coach_over_peer"].as_f64().unwrap() > 0.0,
        "{r}"
    );
    // The benchmark keeps its own scratch store: the registry is untouched.
    let models = home.coach(&["models", "list", "--json"]);
    assert_eq!(models.expect_ok().stdout().trim(), "[]");
}

#[test]
fn bench_entities_scores_spans_per_type() {
    let Some(data) = datasets() else { return };
    let home = Home::new("");
    let dir = data.join("restaurant8k");
    let run = home.coach(&[
        "bench",
        "entities",
        "--dataset",
        "restaurant8k",
        "--data",
        dir.to_str().unwrap(),
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&run.expect_ok().stdout()).unwrap();
    assert_eq!(v["dataset"], "restaurant8k");
    assert!(v["spans"].as_u64().unwrap() > 500, "{v}");
    // A floor well under what the tagger reaches, to catch regressions.
    assert!(v["f1"].as_f64().unwrap() > 0.75, "{v}");
    let types: Vec<_> = v["per_entity"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["entity"].as_str().unwrap().to_owned())
        .collect();
    for t in ["date", "first_name", "last_name", "people", "time"] {
        assert!(types.iter().any(|x| x == t), "{types:?}");
    }
}
