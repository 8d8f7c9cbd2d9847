//! How runs come to be and how they end, with the real binary: one
//! document per thing whichever face shows it, the concurrency policy under
//! a barrage of fires (SQLite and PostgreSQL), a `coach run` killed while
//! sharing the daemon's store, and a run resumed after SIGKILL at every
//! step kind from the step outputs it stored.

use crate::common::{Home, Postgres, workspace};
use crate::daemon::{
    Daemon, call, daemon_home, token, wait_for_state, wedding_workflow as wedding,
};
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn json_of(out: &crate::common::Run) -> Value {
    serde_json::from_str(&out.expect_ok().stdout()).unwrap()
}

#[test]
fn the_cli_and_the_api_show_a_run_and_a_model_as_one_document() {
    let home = daemon_home("");
    home.write("workflows/doc.toml", &wedding("doc", 5, ""));
    let tok = token(&home, "operator");
    let d = Daemon::start(&home);
    let (s, v) = call(
        "POST",
        &format!("{}/api/v1/workflows/doc/runs", d.url),
        &tok,
    );
    assert_eq!(s, 202, "{v}");
    let id = v["run"]["id"].as_i64().unwrap();
    let api_run = wait_for_state(&d, &tok, id, &["succeeded"]);
    let model = api_run["model"]["id"].as_i64().expect("a registered model");
    // The CLI reads the store itself (no COACH_URL): same document.
    let cli_run = json_of(&home.coach(&["runs", "show", &id.to_string(), "--json"]));
    assert_eq!(cli_run, api_run);
    let (s, api_model) = call("GET", &format!("{}/api/v1/models/{model}", d.url), &tok);
    assert_eq!(s, 200);
    let cli_model = json_of(&home.coach(&["models", "show", &model.to_string(), "--json"]));
    assert_eq!(cli_model, api_model);
    assert_eq!(api_model["lineage"]["run"], id);
    // And the lists.
    let (_, api_models) = call("GET", &format!("{}/api/v1/models", d.url), &tok);
    let cli_models = json_of(&home.coach(&["models", "list", "--json"]));
    assert_eq!(cli_models, api_models["models"]);
    let (_, api_runs) = call("GET", &format!("{}/api/v1/runs", d.url), &tok);
    let cli_runs = json_of(&home.coach(&["runs", "list", "--json"]));
    assert_eq!(cli_runs, api_runs["runs"]);
}

/// 50 fires at once through the API while cron fires every second, for a
/// workflow whose concurrency is `forbid`: one run, every other fire
/// refused (409) or skipped.
fn forbid_holds_under_a_barrage(home: &Home) {
    // One step that takes its time, so the run is active throughout.
    home.write(
        "workflows/once.toml",
        r#"version = 1
name = "once"

[trigger]
cron = "* * * * * *"
concurrency = "forbid"

[[step]]
id = "wait"
kind = "process"
command = ["sleep", "60"]
"#,
    );
    let tok = token(home, "operator");
    let d = Daemon::start(home);
    let url = format!("{}/api/v1/workflows/once/runs", d.url);
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(50));
    let posts: Vec<_> = (0..50)
        .map(|_| {
            let (url, tok, barrier) = (url.clone(), tok.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                call("POST", &url, &tok).0
            })
        })
        .collect();
    let codes: Vec<u16> = posts.into_iter().map(|p| p.join().unwrap()).collect();
    assert!(
        codes.iter().all(|c| *c == 202 || *c == 409),
        "{codes:?}\n{}",
        d.log()
    );
    assert!(
        codes.iter().filter(|c| **c == 202).count() <= 1,
        "{codes:?}"
    );
    // Let cron keep firing for a few seconds more.
    std::thread::sleep(Duration::from_secs(3));
    let (_, runs) = call("GET", &format!("{}/api/v1/runs?workflow=once", d.url), &tok);
    let runs = runs["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "one run in all: {runs:?}\n{}", d.log());
    let (_, wf) = call("GET", &format!("{}/api/v1/workflows/once", d.url), &tok);
    let skipped = wf["recent_fires"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["outcome"] == "skipped")
        .count();
    assert!(skipped >= 19, "refused fires are recorded as skipped: {wf}");
    let id = runs[0]["id"].as_i64().unwrap();
    let (s, v) = call("POST", &format!("{}/api/v1/runs/{id}/cancel", d.url), &tok);
    assert!(s == 200 || s == 202, "{s} {v}\n{}", d.log());
    wait_for_state(&d, &tok, id, &["cancelled"]);
}

#[test]
fn forbid_starts_one_run_of_fifty_racing_fires_on_sqlite() {
    forbid_holds_under_a_barrage(&daemon_home(""));
}

#[test]
fn forbid_starts_one_run_of_fifty_racing_fires_on_postgres() {
    let pg = Postgres::create();
    let home = crate::daemon::postgres_home(&pg);
    forbid_holds_under_a_barrage(&home);
}

#[test]
fn a_killed_coach_run_sharing_the_daemons_store_is_marked_interrupted() {
    let home = daemon_home("");
    let slow = home.write(
        "slow.toml",
        &wedding("slow", 1500, "[trigger]\nconcurrency = \"forbid\""),
    );
    // The daemon serves the same workflow (another copy of the file).
    home.write(
        "workflows/slow.toml",
        &wedding("slow", 5, "[trigger]\nconcurrency = \"forbid\""),
    );
    let tok = token(&home, "operator");
    let d = Daemon::start(&home);
    let mut cli = Command::new(env!("CARGO_BIN_EXE_coach-cli"))
        .arg("--config")
        .arg(&home.config)
        .args(["run", slow.to_str().unwrap()])
        .env_remove("COACH_DATA_DIR")
        .env_remove("COACH_DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until it trains, as the daemon sees it in the shared store.
    let deadline = Instant::now() + Duration::from_secs(120);
    let id = loop {
        let (_, v) = call("GET", &format!("{}/api/v1/runs?workflow=slow", d.url), &tok);
        if let Some(r) = v["runs"].as_array().and_then(|r| r.first()) {
            let id = r["id"].as_i64().unwrap();
            let (_, run) = call("GET", &format!("{}/api/v1/runs/{id}", d.url), &tok);
            if run["steps"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["step"] == "train" && s["state"] == "running")
            {
                assert_eq!(run["trigger"], "cli");
                break id;
            }
        }
        assert!(Instant::now() < deadline, "coach run never trained");
        std::thread::sleep(Duration::from_millis(100));
    };
    // While it runs, the daemon's fires are refused: `forbid` counts it.
    let (s, v) = call(
        "POST",
        &format!("{}/api/v1/workflows/slow/runs", d.url),
        &tok,
    );
    assert_eq!(s, 409, "{v}");
    cli.kill().unwrap();
    cli.wait().unwrap();
    // The next coach command marks it interrupted and says so.
    let out = home.coach(&["runs", "show", &id.to_string(), "--json"]);
    let run = json_of(&out);
    assert_eq!(run["state"], "interrupted", "{run}");
    assert!(
        run["error"]
            .as_str()
            .unwrap()
            .contains("`coach run` process"),
        "{run}"
    );
    assert!(
        out.stderr().contains(&format!("run={id}")) && out.stderr().contains("marked interrupted"),
        "the command names the run it marked: {}",
        out.all()
    );
    let train = run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "train")
        .unwrap();
    assert_eq!(train["state"], "interrupted");
    // Nothing is stuck: the daemon runs the workflow now.
    let (s, v) = call(
        "POST",
        &format!("{}/api/v1/workflows/slow/runs", d.url),
        &tok,
    );
    assert_eq!(s, 202, "{v}");
    wait_for_state(&d, &tok, v["run"]["id"].as_i64().unwrap(), &["succeeded"]);
}

/// A process step that sleeps on its first attempt and passes at once on
/// the next (its checkpoint folder survives the restart). Nothing needs
/// it: it runs right after `after` because it comes first in the file,
/// before the step that consumes `after`'s output.
fn pause(id: &str, after: &str) -> String {
    format!(
        r#"
[[step]]
id = "{id}"
kind = "process"
needs = ["{after}"]
command = ["sh", "-c", "test -e \"$COACH_CHECKPOINT_DIR/seen\" && exit 0; touch \"$COACH_CHECKPOINT_DIR/seen\"; sleep 60"]
"#
    )
}

#[test]
fn a_run_killed_after_each_step_kind_resumes_from_what_each_stored() {
    let home = daemon_home("");
    let nlu = workspace().join("workflows/data/wedding/nlu.yml");
    let mut wf = format!(
        r#"version = 1
name = "resume"

[[step]]
id = "intents"
uses = "source-files"
with = {{ format = "rasa", path = "{nlu}" }}
"#,
        nlu = nlu.display()
    );
    wf += &pause("after-source", "intents");
    wf += r#"
[[step]]
id = "split"
kind = "split"
needs = ["intents"]
with = { mode = "stratified", validation = 0.15, test = 0.2, seed = 7 }
"#;
    wf += &pause("after-split", "split");
    wf += r#"
[[step]]
id = "train"
uses = "trainer-intent"
needs = ["split"]
with = { epochs = 5, seed = 7 }
"#;
    wf += &pause("after-train", "train");
    wf += r#"
[[step]]
id = "evaluate"
kind = "evaluate"
needs = ["train"]
"#;
    wf += &pause("after-evaluate", "evaluate");
    wf += r#"
[[step]]
id = "gate"
kind = "gate"
needs = ["evaluate"]
when = "candidate.metrics.accuracy > 0.1"
"#;
    wf += &pause("after-gate", "gate");
    wf += r#"
[[step]]
id = "register"
kind = "register"
needs = ["gate"]

[[step]]
id = "export"
kind = "process"
needs = ["register"]
command = ["sh", "-c", "echo weights > \"$COACH_CHECKPOINT_DIR/model.bin\"; echo \"{\\\"artifact\\\": \\\"$COACH_CHECKPOINT_DIR/model.bin\\\"}\""]
"#;
    wf += &pause("after-process", "export");
    wf += r#"
[[step]]
id = "register-export"
kind = "register"
needs = ["export"]
with = { name = "resume-export" }
"#;
    home.write("workflows/resume.toml", &wf);
    let tok = token(&home, "operator");
    let mut d = Daemon::start(&home);
    let (s, v) = call(
        "POST",
        &format!("{}/api/v1/workflows/resume/runs", d.url),
        &tok,
    );
    assert_eq!(s, 202, "{v}\n{}", d.log());
    let id = v["run"]["id"].as_i64().unwrap();
    for pause in [
        "after-source",
        "after-split",
        "after-train",
        "after-evaluate",
        "after-gate",
        "after-process",
    ] {
        // Killed while the pause after a step kind runs: that step is done
        // and stored, the pause is not.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (_, run) = call("GET", &format!("{}/api/v1/runs/{id}", d.url), &tok);
            let running = run["steps"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["step"] == pause && s["state"] == "running");
            if running {
                break;
            }
            assert_ne!(run["state"], "failed", "{run}\n{}", d.log());
            assert!(
                Instant::now() < deadline,
                "{pause} never ran: {run}\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        d.kill9();
        d = Daemon::start(&home);
    }
    let run = wait_for_state(&d, &tok, id, &["succeeded", "failed"]);
    assert_eq!(run["state"], "succeeded", "{run}\n{}", d.log());
    let attempts = |step: &str| -> Vec<String> {
        run["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["step"] == step)
            .map(|s| s["state"].as_str().unwrap().to_owned())
            .collect()
    };
    // Every real step ran once and was restored after each restart.
    for step in [
        "intents",
        "split",
        "train",
        "evaluate",
        "gate",
        "register",
        "export",
        "register-export",
    ] {
        assert_eq!(attempts(step), ["succeeded"], "{step}: {run}");
    }
    for pause in ["after-source", "after-train", "after-process"] {
        assert_eq!(attempts(pause), ["interrupted", "succeeded"], "{pause}");
    }
    assert_eq!(run["resumes"], 6);
    // Both registrations hold what their restored inputs named.
    let (_, models) = call("GET", &format!("{}/api/v1/models", d.url), &tok);
    let names: Vec<&str> = models["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["resume-export", "resume"]);
    assert!(d.log().contains("resumes where it stopped"), "{}", d.log());
}
