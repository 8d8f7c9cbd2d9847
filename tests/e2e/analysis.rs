//! Conversation analysis through the real analyzer plugin in the sandbox:
//! `coach analyze` on a file and on the store, with a score and the reason
//! for every point lost; real dialogues (Schema-Guided Dialogue) scored
//! sensibly; and a plugin built against the older interface version
//! (0.1.0, from its own copy of that WIT) still loads and runs.

use crate::common::{Home, datasets, workspace};
use serde_json::Value;

const TALKS: &str = concat!(
    r#"{"id":"good","turns":[{"role":"user","text":"I need a table for two tonight at Andes Cafe"},{"role":"bot","text":"Your table for 2 at Andes Cafe is booked for 7 pm."},{"role":"user","text":"Perfect, thank you!"},{"role":"bot","text":"Enjoy your meal."}]}"#,
    "\n",
    r#"{"id":"bad","turns":[{"role":"user","text":"I need a table for two tonight at Andes Cafe"},{"role":"bot","text":"Sorry, I could not make that reservation."},{"role":"user","text":"I said a table for two tonight at Andes Cafe"},{"role":"bot","text":"Sorry, I could not make that reservation."},{"role":"user","text":"this is useless, let me talk to a human"}]}"#,
    "\n",
    r#"{"id":"guessed","turns":[{"role":"user","text":"can I pay with my watch","intent":"card_payment","confidence":0.31,"ranking":[{"intent":"card_payment","confidence":0.31},{"intent":"apple_pay","confidence":0.3}],"feedback":[{"correction":"apple_pay","at":"2026-11-01T10:00:00Z"}]},{"role":"bot","text":"You can pay by card."}],"outcome":"escalated"}"#,
    "\n"
);

fn analyses(json: &str) -> Vec<Value> {
    let v: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
    v["analyses"].as_array().unwrap().clone()
}

fn aspect<'a>(a: &'a Value, name: &str) -> &'a Value {
    a["aspects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {a}"))
}

#[test]
fn coach_analyze_scores_a_file_and_the_store_with_reasons() {
    let home = Home::new("");
    let file = home.write("talks.jsonl", TALKS);
    let out = home.coach(&["analyze", "--input", file.to_str().unwrap(), "--json"]);
    out.expect_ok();
    let all = analyses(&out.stdout());
    assert_eq!(all.len(), 3);
    let (good, bad, guessed) = (&all[0], &all[1], &all[2]);
    assert_eq!(good["conversation"], "good");
    let score = |a: &Value| a["score"].as_f64().unwrap();
    assert!(score(good) > score(bad) + 20.0, "{good}\n{bad}");
    for a in &all {
        assert!((0.0..=100.0).contains(&score(a)), "{a}");
    }
    let sat = aspect(bad, "user_satisfaction");
    let reasons: Vec<&str> = sat["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("asked for a person")),
        "{reasons:?}"
    );
    let ir = aspect(guessed, "intent_recognition");
    assert!(ir["confidence"].as_f64().unwrap() > 0.0, "{ir}");
    assert!(
        ir["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["reason"]
                .as_str()
                .unwrap()
                .contains("corrected `card_payment` to `apple_pay`")),
        "{ir}"
    );
    assert!(
        guessed["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["kind"] == "correction"),
        "{guessed}"
    );
    // The people-readable form names the reasons too.
    let out = home.coach(&["analyze", "--input", file.to_str().unwrap()]);
    out.expect_ok();
    assert!(
        out.stdout().contains("asked for a person") && out.stdout().contains("3 conversations"),
        "{}",
        out.stdout()
    );
    // The same conversations from the store.
    home.coach(&[
        "conversations",
        "import",
        file.to_str().unwrap(),
        "--model",
        "bot",
    ])
    .expect_ok();
    let out = home.coach(&["analyze", "--model", "bot", "--json"]);
    out.expect_ok();
    let stored = analyses(&out.stdout());
    assert_eq!(stored.len(), 3);
    let bad_again = stored.iter().find(|a| a["conversation"] == "bad").unwrap();
    assert!((score(bad_again) - score(bad)).abs() < 1e-6);
    home.coach(&["analyze", "--model", "nobody"])
        .expect_failure_with("no conversations to analyse");
    home.coach(&[
        "analyze",
        "--input",
        file.to_str().unwrap(),
        "--analyzer",
        "source-files",
    ])
    .expect_failure_with("source-files");
}

#[test]
fn schema_guided_dialogues_that_fail_the_user_score_lower() {
    let Some(data) = datasets() else { return };
    let home = Home::new("");
    let mut lines = String::new();
    let mut failed = Vec::new();
    for entry in std::fs::read_dir(data.join("sgd")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("dialogues_") {
            continue;
        }
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for d in v.as_array().unwrap() {
            let id = d["dialogue_id"].as_str().unwrap().to_owned();
            let turns: Vec<Value> = d["turns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| {
                    let role = if t["speaker"] == "USER" {
                        "user"
                    } else {
                        "bot"
                    };
                    serde_json::json!({"role": role, "text": t["utterance"]})
                })
                .collect();
            // The dataset's own record of failure: the system told the
            // user it could not do what was asked.
            let nothing = d["turns"].as_array().unwrap().iter().any(|t| {
                t["frames"].as_array().into_iter().flatten().any(|f| {
                    f["actions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|a| a["act"] == "NOTIFY_FAILURE")
                })
            });
            if nothing {
                failed.push(id.clone());
            }
            lines.push_str(&serde_json::json!({"id": id, "turns": turns}).to_string());
            lines.push('\n');
        }
    }
    let file = home.write("sgd.jsonl", &lines);
    let out = home.coach(&["analyze", "--input", file.to_str().unwrap(), "--json"]);
    out.expect_ok();
    let all = analyses(&out.stdout());
    assert_eq!(all.len(), lines.lines().count());
    let (mut f, mut ok) = (Vec::new(), Vec::new());
    for a in &all {
        let s = a["score"].as_f64().unwrap();
        if failed.contains(&a["conversation"].as_str().unwrap().to_owned()) {
            f.push(s);
        } else {
            ok.push(s);
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    assert!(!f.is_empty() && !ok.is_empty());
    assert!(
        mean(&f) < mean(&ok),
        "dialogues where the system reported a failure: {:.1} ({}), the rest: {:.1} ({})",
        mean(&f),
        f.len(),
        mean(&ok),
        ok.len()
    );
}

#[test]
fn a_plugin_built_against_api_0_1_0_still_runs() {
    let home = Home::new("");
    let wf = home.write(
        "old.toml",
        "version = 1\nname = \"old-api\"\n\n[[step]]\nid = \"data\"\nuses = \"api-0-1-0\"\n",
    );
    home.coach(&["validate", wf.to_str().unwrap()]).expect_ok();
    let out = home.coach(&["run", wf.to_str().unwrap()]);
    out.expect_ok();
    let runs = home.coach(&["runs", "show", "1", "--json"]);
    let v: Value = serde_json::from_str(&runs.stdout()).unwrap();
    assert_eq!(v["state"], "succeeded", "{v}");
    assert_eq!(v["steps"][0]["output"]["examples"], 6, "{v}");
    // And the quickstart, whose plugins are built against 0.1.1, beside it.
    let qs = workspace().join("workflows/quickstart.toml");
    home.coach(&["run", qs.to_str().unwrap()]).expect_ok();
}
