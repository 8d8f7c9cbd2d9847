//! Deployments through the real binary on a real store: deploy, roll
//! back and the history from the command line and the API, a version that
//! fails its health check refused while the old one keeps serving, the
//! `deploy` workflow step, and a gate's `production` meaning the deployed
//! version.

use crate::common::{Home, Postgres};
use crate::daemon::{Daemon, call, daemon_home, post_json, token, wedding_workflow};
use serde_json::{Value, json};

/// `support` trained twice: versions 1 and 2.
pub(crate) fn two_versions(home: &Home) {
    let wf = home.write(
        "workflows/support.toml",
        &wedding_workflow("support", 3, ""),
    );
    for _ in 0..2 {
        home.coach(&["run", wf.to_str().unwrap()]).expect_ok();
    }
}

pub(crate) fn history(home: &Home) -> Vec<Value> {
    let out = home.coach(&["deployments", "history", "support", "--json"]);
    out.expect_ok();
    serde_json::from_str::<Value>(&out.stdout())
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// `coach args…` succeeds and prints `needle`.
#[track_caller]
fn says(home: &Home, args: &[&str], needle: &str) {
    let out = home.coach(args);
    assert!(out.expect_ok().stdout().contains(needle), "{}", out.all());
}

fn deploy_and_roll_back_on_the_command_line(home: &Home) {
    two_versions(home);
    let production = ["--env", "production"];
    says(
        home,
        &[
            "deploy",
            "support:1",
            "--env",
            "production",
            "--reason",
            "first",
        ],
        "production: support nothing → v1",
    );
    says(
        home,
        &[&["deploy", "support:2"][..], &production].concat(),
        "v1 → v2",
    );
    says(
        home,
        &[&["deploy", "support:2"][..], &production].concat(),
        "already serves support v2",
    );
    says(
        home,
        &[&["rollback", "support"][..], &production].concat(),
        "v2 → v1 (rollback",
    );
    home.coach(&["rollback", "support", "--env", "production"])
        .expect_failure_with("nothing to roll back to");
    home.coach(&["rollback", "support", "--env", "nowhere"])
        .expect_failure_with("no deployment of `support` to nowhere");
    home.coach(&["deploy", "support:9", "--env", "production"])
        .expect_failure_with("no model `support:9`");
    home.coach(&["deploy", "support:1", "--env", "bad env"])
        .expect_failure_with("environment `bad env`");

    let h = history(home);
    let steps: Vec<(Value, Value, &str)> = h
        .iter()
        .map(|e| {
            (
                e["from"]["version"].clone(),
                e["to"]["version"].clone(),
                e["action"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            (json!(2), json!(1), "rollback"),
            (json!(1), json!(2), "deploy"),
            (Value::Null, json!(1), "deploy"),
        ],
        "{h:?}"
    );
    assert!(h.iter().all(|e| e["how"] == "manual"));
    assert!(h[0]["actor"].as_str().unwrap().ends_with("(command line)"));
    assert_eq!(h[2]["reason"], "first");

    let out = home.coach(&["deployments", "list", "--json"]);
    let list: Value = serde_json::from_str(&out.expect_ok().stdout()).unwrap();
    assert_eq!(list[0]["environment"], "production");
    assert_eq!(list[0]["serving"]["version"], 1);
}

#[test]
fn deploy_and_roll_back_on_the_command_line_on_sqlite() {
    deploy_and_roll_back_on_the_command_line(&daemon_home(""));
}

#[test]
fn deploy_and_roll_back_on_the_command_line_on_postgres() {
    let pg = Postgres::create();
    let home = crate::daemon::postgres_home(&pg);
    deploy_and_roll_back_on_the_command_line(&home);
}

#[test]
fn the_api_deploys_as_the_token_and_refuses_what_it_cannot_do() {
    let home = daemon_home("");
    two_versions(&home);
    let operator = token(&home, "operator");
    let viewer = token(&home, "viewer");
    let d = Daemon::start(&home);
    let url = |p: &str| format!("{}{p}", d.url);

    let (s, v) = post_json(
        &url("/api/v1/deployments"),
        &operator,
        &json!({"model": "support:2", "environment": "staging", "reason": "try it"}),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["changed"], true);
    assert_eq!(v["version"], 2);
    assert_eq!(v["history"]["actor"], "e2e", "the token's name: {v}");
    assert!(v["health"]["probes"].as_u64().unwrap() > 0, "{v}");

    let (s, v) = post_json(
        &url("/api/v1/deployments"),
        &viewer,
        &json!({"model": "support:1", "environment": "staging"}),
    );
    assert_eq!(s, 403, "{v}");
    for (body, status, names) in [
        (
            json!({"model": "nope:1", "environment": "staging"}),
            404,
            "nope:1",
        ),
        (
            json!({"model": "support:1", "environment": "no such"}),
            422,
            "environment",
        ),
        (
            json!({"model": "support", "environment": "staging", "extra": 1}),
            400,
            "extra",
        ),
    ] {
        let (s, v) = post_json(&url("/api/v1/deployments"), &operator, &body);
        assert_eq!(s, status, "{body}: {v}");
        assert!(v["message"].as_str().unwrap().contains(names), "{v}");
    }
    let (s, v) = post_json(
        &url("/api/v1/rollbacks"),
        &operator,
        &json!({"model": "support", "environment": "staging"}),
    );
    assert_eq!(s, 409, "nothing before v2 in staging: {v}");
    let (s, v) = post_json(
        &url("/api/v1/rollbacks"),
        &operator,
        &json!({"model": "support", "environment": "staging", "to": 1, "reason": "v2 is worse"}),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["history"]["action"], "rollback");

    let (s, v) = call("GET", &url("/api/v1/deployments"), &viewer);
    assert_eq!(s, 200);
    assert_eq!(v["deployments"][0]["serving"]["version"], 1, "{v}");
    let (s, v) = call(
        "GET",
        &url("/api/v1/deployments/support/history?environment=staging"),
        &viewer,
    );
    assert_eq!(s, 200);
    assert_eq!(v["history"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(v["history"][0]["reason"], "v2 is worse");
}

#[test]
fn a_version_that_fails_its_health_check_is_refused_and_the_old_one_keeps_serving() {
    let home = daemon_home("");
    two_versions(&home);
    home.coach(&["deploy", "support:1", "--env", "production"])
        .expect_ok();
    // Damage version 2's artifact on disk.
    let out = home.coach(&["models", "show", "support:2", "--json"]);
    let m: Value = serde_json::from_str(&out.expect_ok().stdout()).unwrap();
    let sha = m["artifact"]["sha256"].as_str().unwrap();
    let file = walk(&home.path("data"))
        .into_iter()
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(sha))
        })
        .expect("the artifact file");
    std::fs::write(&file, b"not a model").unwrap();
    home.coach(&["deploy", "support:2", "--env", "production"])
        .expect_failure_with("failed its health check");
    let h = history(&home);
    assert_eq!(h.len(), 1, "no change recorded: {h:?}");
    let out = home.coach(&["deployments", "list", "support", "--json"]);
    let list: Value = serde_json::from_str(&out.expect_ok().stdout()).unwrap();
    assert_eq!(list[0]["serving"]["version"], 1);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_deploy_step_deploys_what_the_run_registered_and_says_who() {
    let home = daemon_home("");
    let mut wf = wedding_workflow("support", 3, "");
    wf.push_str(
        r#"
[[step]]
id = "deploy"
kind = "deploy"
needs = ["register"]
with = { env = "staging", reason = "nightly" }
"#,
    );
    let path = home.write("workflows/support.toml", &wf);
    let out = home.coach(&["run", path.to_str().unwrap()]);
    assert!(
        out.expect_ok()
            .all()
            .contains("staging now serves support v1"),
        "{}",
        out.all()
    );
    let h = history(&home);
    assert_eq!(h[0]["how"], "workflow");
    assert_eq!(h[0]["reason"], "nightly");
    assert!(
        h[0]["actor"]
            .as_str()
            .unwrap()
            .starts_with("workflow support run ")
    );
    assert_eq!(h[0]["run"], 1);

    // Checked like every step: a deploy needs a register step, an `env`,
    // and a strategy it knows.
    for (with, needs, error) in [
        (
            "{ env = \"staging\" }",
            "train",
            "needs a registered model (a register step)",
        ),
        ("{ reason = \"x\" }", "register", "`env` is required"),
        (
            "{ env = \"staging\", strategy = \"blue\" }",
            "register",
            "strategy",
        ),
        (
            "{ env = \"staging\", strategy = \"canary\", canary = { steps = [50, 20] } }",
            "register",
            "canary.steps",
        ),
    ] {
        let bad = format!(
            "{}\n[[step]]\nid = \"deploy\"\nkind = \"deploy\"\nneeds = [\"{needs}\"]\nwith = {with}\n",
            wedding_workflow("bad", 3, "")
        );
        let p = home.write("workflows/bad.toml", &bad);
        home.coach(&["validate", p.to_str().unwrap()])
            .expect_failure_with(error);
    }
}

#[test]
fn a_gates_production_is_the_version_deployed_to_production() {
    let home = daemon_home("");
    two_versions(&home);
    let register = "[[step]]\nid = \"register\"\nkind = \"register\"\nneeds = [\"evaluate\"]\n";
    let base = wedding_workflow("support", 3, "");
    assert!(base.contains(register));
    let gated = base.replace(
        register,
        "[[step]]\nid = \"gate\"\nkind = \"gate\"\nneeds = [\"evaluate\"]\nwhen = \"production.version == 1\"\n\n[[step]]\nid = \"register\"\nkind = \"register\"\nneeds = [\"gate\"]\n",
    );
    let path = home.write("workflows/gated.toml", &gated);
    // Nothing deployed: production falls back to the latest, v2.
    let out = home.coach(&["run", path.to_str().unwrap()]);
    assert!(
        out.expect_ok().stdout().contains("gate `gate`: NO"),
        "{}",
        out.all()
    );
    home.coach(&["deploy", "support:1", "--env", "production"])
        .expect_ok();
    let out = home.coach(&["run", path.to_str().unwrap()]);
    assert!(
        out.expect_ok().stdout().contains("gate `gate`: PASS"),
        "{}",
        out.all()
    );
}

/// A daemon serving `support` v1 in production (v2 registered), and an
/// operator token.
fn serving_v1() -> (Home, String, Daemon) {
    let home = daemon_home("");
    two_versions(&home);
    home.coach(&["deploy", "support:1", "--env", "production"])
        .expect_ok();
    let tok = token(&home, "operator");
    let d = Daemon::start(&home);
    (home, tok, d)
}

fn predict(d: &Daemon, tok: &str, path: &str, body: &Value) -> (u16, Value) {
    post_json(&format!("{}{path}", d.url), tok, body)
}

#[test]
fn the_daemon_serves_the_deployed_version_and_follows_every_change() {
    let (home, tok, d) = serving_v1();
    let ask = |body: Value| predict(&d, &tok, "/api/v1/models/support/predict", &body);

    let (s, v) = ask(
        json!({"text": "can you book a dj for the party", "conversation_id": "c-1", "channel": "web"}),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["version"], 1);
    assert!(
        v["intent"].is_string() && v["confidence"].is_number(),
        "{v}"
    );
    assert!(v["ranking"].is_array() && v["entities"].is_array(), "{v}");
    // The prediction was logged as a turn of conversation c-1.
    let (_, traffic) = call(
        "GET",
        &format!("{}/api/v1/models/support/traffic", d.url),
        &tok,
    );
    assert_eq!(traffic["messages"], 1, "{traffic}");

    let (s, v) = ask(json!({"texts": ["hello", "how much is a photographer"]}));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["predictions"].as_array().unwrap().len(), 2);

    // Deployed through the API: the next prediction is the new version's.
    let (s, v) = post_json(
        &format!("{}/api/v1/deployments", d.url),
        &tok,
        &json!({"model": "support:2", "environment": "production"}),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(ask(json!({"text": "hello"})).1["version"], 2);

    // Rolled back on the store by another process: the daemon follows.
    home.coach(&["rollback", "support", "--env", "production"])
        .expect_ok();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while ask(json!({"text": "hello"})).1["version"] != 1 {
        assert!(std::time::Instant::now() < deadline, "{}", d.log());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    // Bad requests: each a clear 4xx naming what is wrong; nothing logged.
    for (path, body, status, names) in [
        (
            "/api/v1/models/nope/predict",
            json!({"text": "hi"}),
            404,
            "no deployment of `nope`",
        ),
        (
            "/api/v1/models/support/predict?env=nowhere",
            json!({"text": "hi"}),
            404,
            "nowhere",
        ),
        (
            "/api/v1/models/support/predict",
            json!({"texts": vec!["hi"; 10_000]}),
            422,
            "texts",
        ),
        (
            "/api/v1/models/support/predict",
            json!({"text": "a".repeat(1 << 20)}),
            422,
            "text",
        ),
        (
            "/api/v1/models/support/predict",
            json!({"text": "hi", "texts": ["hi"]}),
            422,
            "text",
        ),
        ("/api/v1/models/support/predict", json!({}), 422, "text"),
    ] {
        let (s, v) = predict(&d, &tok, path, &body);
        assert_eq!(s, status, "{path}: {v}");
        assert!(v["message"].as_str().unwrap().contains(names), "{v}");
    }
    let (_, traffic) = call(
        "GET",
        &format!("{}/api/v1/models/support/traffic", d.url),
        &tok,
    );
    assert_eq!(traffic["messages"], 1, "{traffic}");
}

#[test]
fn deploys_and_rollbacks_under_load_lose_no_request() {
    let (_home, tok, d) = serving_v1();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (url, tok, stop) = (d.url.clone(), tok.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut seen = std::collections::BTreeMap::<i64, u32>::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let (s, v) = post_json(
                        &format!("{url}/api/v1/models/support/predict"),
                        &tok,
                        &json!({"text": "can you book a dj"}),
                    );
                    assert_eq!(s, 200, "a request failed during a swap: {v}");
                    *seen.entry(v["version"].as_i64().unwrap()).or_default() += 1;
                }
                seen
            })
        })
        .collect();
    for (i, body) in [
        json!({"model": "support:2", "environment": "production"}),
        json!({"model": "support:1", "environment": "production"}),
        json!({"model": "support:2", "environment": "production"}),
    ]
    .into_iter()
    .enumerate()
    {
        std::thread::sleep(std::time::Duration::from_millis(300));
        let (s, v) = post_json(&format!("{}/api/v1/deployments", d.url), &tok, &body);
        assert_eq!(s, 200, "swap {i}: {v}");
    }
    let (s, v) = post_json(
        &format!("{}/api/v1/rollbacks", d.url),
        &tok,
        &json!({"model": "support", "environment": "production"}),
    );
    assert_eq!(s, 200, "{v}");
    std::thread::sleep(std::time::Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = std::collections::BTreeMap::<i64, u32>::new();
    for c in clients {
        for (v, n) in c.join().unwrap() {
            *total.entry(v).or_default() += n;
        }
    }
    assert_eq!(
        total.keys().copied().collect::<Vec<_>>(),
        [1, 2],
        "{total:?}"
    );
}
