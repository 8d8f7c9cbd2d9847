//! `coach bench intent` through the real binary, with the sklearn peer.

use crate::common::*;

#[test]
fn bench_intent_prints_scores_with_the_peer_beside_them() {
    let Some(data) = datasets() else { return };
    let home = Home::new("");
    let clinc = data.join("clinc150");
    let v = bench(
        &home,
        "intent",
        "clinc150",
        &clinc,
        &["--variant", "small", "--peer", "sklearn"],
    );
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
    // The peer is cross-validated too, on the examples Coach's figures are
    // out of (the training split, out-of-scope examples with it: the
    // validation split is scored, so it stays out) and with as many folds,
    // and the two are compared.
    let folds = r["cross_validated"]["folds"].as_u64().unwrap();
    assert!((2..=5).contains(&folds), "{r}");
    assert_eq!(r["peer"]["cv_folds"].as_u64(), Some(folds), "{r}");
    let small: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(clinc.join("data_small.json")).unwrap())
            .unwrap();
    let trained =
        small["train"].as_array().unwrap().len() + small["oos_train"].as_array().unwrap().len();
    assert_eq!(
        r["peer"]["cv_examples"].as_u64(),
        Some(trained as u64),
        "{r}"
    );
    assert!(
        r["peer"]["cv_in_scope_accuracy"].as_f64().unwrap() > 0.8,
        "{r}"
    );
    assert!(r["peer"]["cv_oos_recall"].as_f64().unwrap() > 0.0, "{r}");
    let cv_delta = r["cross_validated"]["in_scope_accuracy"].as_f64().unwrap()
        - r["peer"]["cv_in_scope_accuracy"].as_f64().unwrap();
    let reported = r["ratios"]["cross_validated_in_scope_accuracy_coach_minus_peer"]
        .as_f64()
        .unwrap();
    assert!((reported - cv_delta).abs() < 1e-9, "{r}");
    // The benchmark keeps its own scratch store: the registry is untouched.
    let models = home.coach(&["models", "list", "--json"]);
    assert_eq!(models.expect_ok().stdout().trim(), "[]");
}

/// `coach bench WHAT --dataset DATASET --data DATA ARGS --json`: its JSON
/// answer.
fn bench(
    home: &Home,
    what: &str,
    dataset: &str,
    data: &std::path::Path,
    args: &[&str],
) -> serde_json::Value {
    let mut all = vec!["bench", what, "--dataset", dataset];
    all.extend(["--data", data.to_str().unwrap()]);
    all.extend(args);
    all.push("--json");
    let run = home.coach(&all);
    serde_json::from_str(&run.expect_ok().stdout()).unwrap()
}

/// A CLINC150-layout folder that has a test split, as the public release
/// does: ten intents of the small variant, their validation examples cut
/// in two, one half standing in for the test split.
fn clinc_with_a_test_split(home: &Home, clinc: &std::path::Path) -> (std::path::PathBuf, usize) {
    let text = std::fs::read_to_string(clinc.join("data_small.json")).unwrap();
    let small: serde_json::Value = serde_json::from_str(&text).unwrap();
    let rows = |key: &str| small[key].as_array().unwrap().clone();
    let mut intents: Vec<String> = rows("train")
        .iter()
        .map(|r| r[1].as_str().unwrap().to_owned())
        .collect();
    intents.sort();
    intents.dedup();
    intents.truncate(10);
    let kept = |key: &str| -> Vec<serde_json::Value> {
        rows(key)
            .into_iter()
            .filter(|r| intents.iter().any(|i| r[1] == i.as_str()))
            .collect()
    };
    let halves = |all: Vec<serde_json::Value>| {
        let (a, b): (Vec<_>, Vec<_>) = all.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
        let strip = |v: Vec<(usize, serde_json::Value)>| -> Vec<serde_json::Value> {
            v.into_iter().map(|(_, r)| r).collect()
        };
        (strip(a), strip(b))
    };
    let (val, test) = halves(kept("val"));
    let (oos_val, oos_test) = halves(rows("oos_val"));
    let tested = test.len() + oos_test.len();
    let data = serde_json::json!({
        "train": kept("train"), "val": val, "test": test,
        "oos_train": rows("oos_train"), "oos_val": oos_val, "oos_test": oos_test,
    });
    let dir = home.path("clinc-with-test");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("data_full.json"), data.to_string()).unwrap();
    (dir, tested)
}

#[test]
fn bench_intent_scores_the_test_split_when_the_data_has_one_in_either_setting() {
    let Some(data) = datasets() else { return };
    let home = Home::new("");
    let (dir, tested) = clinc_with_a_test_split(&home, &data.join("clinc150"));
    for (setting, name) in [
        ("oos-train", "clinc150/full"),
        ("oos-threshold", "clinc150/full/oos-threshold"),
    ] {
        let v = bench(
            &home,
            "intent",
            "clinc150",
            &dir,
            &["--variant", "full", "--setting", setting],
        );
        let r = &v[0];
        assert_eq!(r["dataset"], name, "{r}");
        // The test split is scored, and with a test split to score the
        // final model may learn from validation too.
        assert_eq!(r["split"], "test", "{r}");
        assert_eq!(r["examples"].as_u64(), Some(tested as u64), "{r}");
        assert_eq!(r["validation_in_training"], true, "{r}");
        assert!(r["in_scope_accuracy"].as_f64().unwrap() > 0.8, "{r}");
        assert!(r["oos_recall"].as_f64().unwrap() > 0.2, "{r}");
        // Cross-validated figures beside the scored ones (out of scope
        // among them in either setting: validation keeps its out-of-scope
        // examples, which choose the threshold and are never fitted).
        let cv = &r["cross_validated"];
        for k in ["in_scope_accuracy", "top_intent_accuracy", "oos_recall"] {
            assert!(cv[k].as_f64().unwrap() > 0.8, "{k}: {r}");
        }
    }
}

/// Public Banking77, HWU64 and SNIPS folders with a few intents each and a
/// test split of their own beside the training data, under the upstream
/// names (`test.csv`, `testset/csv/`, `validate_<Intent>.json`): every fourth
/// example of an intent is a test example. Returns the folders and how
/// many test examples each has.
fn folders_with_test_files(
    home: &Home,
    data: &std::path::Path,
) -> Vec<(&'static str, std::path::PathBuf, usize)> {
    let quarter = |rows: Vec<String>| -> (Vec<String>, Vec<String>) {
        let (test, train): (Vec<_>, Vec<_>) =
            rows.into_iter().enumerate().partition(|(i, _)| i % 4 == 3);
        let strip = |v: Vec<(usize, String)>| v.into_iter().map(|(_, r)| r).collect();
        (strip(train), strip(test))
    };
    let mut out = Vec::new();

    // Banking77: `text,category`; records spread over lines (quoted) are left out.
    let dir = home.path("banking77-with-test");
    std::fs::create_dir_all(&dir).unwrap();
    let text = std::fs::read_to_string(data.join("banking77/train.csv")).unwrap();
    let (mut train, mut test) = (
        vec!["text,category".to_owned()],
        vec!["text,category".to_owned()],
    );
    for category in [
        "card_arrival",
        "lost_or_stolen_card",
        "exchange_rate",
        "top_up_failed",
        "pin_blocked",
    ] {
        let rows = text
            .lines()
            .filter(|l| !l.contains('"') && l.ends_with(&format!(",{category}")))
            .map(str::to_owned)
            .collect();
        let (a, b) = quarter(rows);
        train.extend(a);
        test.extend(b);
    }
    std::fs::write(dir.join("train.csv"), train.join("\n")).unwrap();
    std::fs::write(dir.join("test.csv"), test.join("\n")).unwrap();
    out.push(("banking77", dir, test.len() - 1));

    // HWU64: one `;`-separated file per intent under `trainset/` and `testset/csv/`.
    let dir = home.path("hwu64-with-test");
    let mut tested = 0;
    for name in [
        "alarm_set.csv",
        "weather_query.csv",
        "play_music.csv",
        "cooking_recipe.csv",
    ] {
        let text = std::fs::read_to_string(data.join("hwu64/trainset").join(name)).unwrap();
        let mut lines = text.lines().map(str::to_owned);
        let header = lines.next().unwrap();
        let (train, test) = quarter(lines.collect());
        tested += test.len();
        // The training files flattened (as the datasets folder has them),
        // the test files where upstream puts them.
        for (folder, rows) in [("trainset", train), ("testset/csv", test)] {
            std::fs::create_dir_all(dir.join(folder)).unwrap();
            let body = std::iter::once(header.clone())
                .chain(rows)
                .collect::<Vec<_>>();
            std::fs::write(dir.join(folder).join(name), body.join("\n")).unwrap();
        }
    }
    out.push(("hwu64", dir, tested));

    // SNIPS: `{Intent: [utterance, …]}` in `train_<Intent>.json` and `validate_<Intent>.json`.
    let dir = home.path("snips-with-test");
    std::fs::create_dir_all(&dir).unwrap();
    let mut tested = 0;
    for intent in ["GetWeather", "RateBook", "BookRestaurant"] {
        let bytes = std::fs::read(data.join(format!("snips/train_{intent}.json"))).unwrap();
        let v: serde_json::Value = serde_json::from_str(&String::from_utf8_lossy(&bytes)).unwrap();
        let rows = v[intent]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.to_string())
            .collect();
        let (train, test) = quarter(rows);
        tested += test.len();
        for (prefix, rows) in [("train", train), ("validate", test)] {
            std::fs::write(
                dir.join(format!("{prefix}_{intent}.json")),
                format!("{{\"{intent}\": [{}]}}", rows.join(",")),
            )
            .unwrap();
        }
    }
    out.push(("snips", dir, tested));
    out
}

#[test]
fn bench_intent_scores_the_public_test_files_of_the_closed_set_datasets() {
    let Some(data) = datasets() else { return };
    let home = Home::new("");
    let mut scored = std::collections::HashMap::new();
    for (dataset, dir, tested) in folders_with_test_files(&home, &data) {
        let v = bench(&home, "intent", dataset, &dir, &[]);
        scored.insert(dataset, v[0].clone());
        let r = &v[0];
        assert_eq!(r["dataset"], dataset, "{r}");
        assert_eq!(r["split"], "test", "{dataset}: {r}");
        assert_eq!(
            r["examples"].as_u64(),
            Some(tested as u64),
            "{dataset}: {r}"
        );
        // With a test split to score, the final model learns from
        // validation too.
        assert_eq!(r["validation_in_training"], true, "{dataset}: {r}");
        assert!(
            r["in_scope_accuracy"].as_f64().unwrap() > 0.8,
            "{dataset}: {r}"
        );
    }
    // SNIPS as upstream lays it out, a folder per intent: the same
    // examples, the same figures.
    let flat = home.path("snips-with-test");
    let nested = home.path("snips-upstream");
    for entry in std::fs::read_dir(&flat).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let intent = name.split_once('_').unwrap().1.trim_end_matches(".json");
        std::fs::create_dir_all(nested.join(intent)).unwrap();
        std::fs::copy(flat.join(&name), nested.join(intent).join(&name)).unwrap();
    }
    let v = bench(&home, "intent", "snips", &nested, &[]);
    for k in ["split", "examples", "in_scope_accuracy", "model_bytes"] {
        assert_eq!(v[0][k], scored["snips"][k], "{k}: {v}");
    }
    // Without the test files the validation split is scored, as before.
    let dir = home.path("banking77-with-test");
    std::fs::remove_file(dir.join("test.csv")).unwrap();
    let v = bench(&home, "intent", "banking77", &dir, &[]);
    assert_eq!(v[0]["split"], "validation", "{v}");
    assert_eq!(v[0]["validation_in_training"], false, "{v}");
}

#[test]
fn bench_entities_scores_spans_per_type() {
    let Some(data) = datasets() else { return };
    let home = Home::new("");
    let v = bench(
        &home,
        "entities",
        "restaurant8k",
        &data.join("restaurant8k"),
        &[],
    );
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

/// A `coach bench` run from the checkout (the learning benches serve its
/// workflows).
fn bench_in_checkout(home: &Home, args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_coach-cli"))
        .current_dir(workspace())
        .arg("--config")
        .arg(&home.config)
        .arg("bench")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn bench_analyze_and_bench_loop_measure_the_learning_loop() {
    let home = Home::new("");
    let v = bench_in_checkout(
        &home,
        &[
            "analyze",
            "--conversations",
            "300",
            "--messages",
            "3000",
            "--rate",
            "50",
            "--seconds",
            "1",
        ],
    );
    assert_eq!(v["analyze"]["conversations"], 300, "{v}");
    assert!(v["analyze"]["per_second"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v["clustering"]["clusters"].as_u64().unwrap() > 0, "{v}");
    let q = &v["feedback_to_queue_ms"];
    assert_eq!(q["posts"], 50, "{v}");
    assert_eq!(q["failed"], 0, "{v}");
    // Every correction is in the queue once its post has answered.
    assert_eq!(q["queued"], 50, "{v}");
    let v = bench_in_checkout(&home, &["loop"]);
    let stages = v["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 5, "{v}");
    assert!(v["total_seconds"].as_f64().unwrap() > 0.0, "{v}");
}
