//! Hostile plugins, built from source: each is stopped by the limit it
//! breaks, the message names the plugin and the limit, and the process and
//! its stored data survive.

use crate::common::*;
use coach::plugin::{JobSpec, PluginHost};

fn run_hostile(home: &Home, trainer: &str) -> Run {
    let file = home.write("data-in/tiny.jsonl", TINY);
    let wf = home.write(&format!("{trainer}.toml"), &train_workflow(&file, trainer));
    home.coach(&["run", wf.to_str().unwrap()])
}

#[test]
fn hostile_trainers_are_stopped_at_their_limits_and_stored_data_survives() {
    let home = Home::new("");
    // Something worth keeping, before the attacks.
    let quickstart = workspace().join("workflows/quickstart.toml");
    home.coach(&["run", quickstart.to_str().unwrap()])
        .expect_ok();

    run_hostile(&home, "loop-forever").expect_failure_with(
        "step `train`: plugin `loop-forever` ran past its 1 s deadline and was stopped",
    );
    run_hostile(&home, "alloc-forever").expect_failure_with(
        "step `train`: plugin `alloc-forever` exceeded its 64 MiB memory limit",
    );
    run_hostile(&home, "spam-output").expect_failure_with(
        "step `train`: plugin `spam-output` wrote more than its 64 KiB output limit",
    );
    run_hostile(&home, "panicker")
        .expect_failure_with("plugin `panicker` crashed: plugin panicked")
        .expect_failure_with("fixture panicked on purpose (first = None)");

    // Every failed run is recorded as failed, with its reason; the model
    // registered before is still there and still predicts.
    let runs = home.coach(&["runs", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&runs.expect_ok().stdout()).unwrap();
    let states: Vec<_> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["state"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        states,
        ["failed", "failed", "failed", "failed", "succeeded"]
    );
    let p = home.coach(&[
        "predict",
        "--model",
        "1",
        "--json",
        "book a dj for the party",
    ]);
    let v: serde_json::Value = serde_json::from_str(&p.expect_ok().stdout()).unwrap();
    assert_eq!(v[0]["intent"], "book_music");
}

#[test]
fn a_source_sees_only_its_granted_file_no_other_files_no_network_and_no_environment() {
    let home = Home::new("");
    let granted = home.write("data-in/granted.txt", "the granted line");
    let elsewhere = tempfile::tempdir().unwrap();
    let secret = elsewhere.path().join("secret.txt");
    std::fs::write(&secret, "top secret").unwrap();
    let config = home.config();
    let host = PluginHost::new(&config).unwrap();
    let probes = [
        secret.display().to_string(),
        elsewhere.path().display().to_string(),
        "/etc/passwd".to_owned(),
        "/".to_owned(),
        format!("{}/../coach.toml", granted.parent().unwrap().display()),
        workspace().join("Cargo.toml").display().to_string(),
    ];
    let spec = JobSpec {
        run: "t".into(),
        step: "probe".into(),
        read_paths: vec![granted.clone()],
        ..Default::default()
    };
    let mut job = host.source("read-outside", spec).unwrap();
    // A real listener on loopback, so a connection would succeed if allowed.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let open_port = listener.local_addr().unwrap().to_string();
    let cfg =
        serde_json::json!({"path": granted, "probe": probes, "connect": [open_port]}).to_string();
    let out = job.read_all(&cfg, 100, &config.limits).unwrap();
    let leaks: Vec<_> = out
        .examples
        .iter()
        .filter(|e| e.intent != "granted")
        .map(|e| e.text.clone())
        .collect();
    assert!(leaks.is_empty(), "the sandbox leaked: {leaks:#?}");
    assert_eq!(out.examples.len(), 1);
    assert_eq!(out.examples[0].text, "the granted line");
}

#[test]
fn a_trap_poisons_only_its_own_job() {
    let home = Home::new("");
    let host = PluginHost::new(&home.config()).unwrap();
    let spec = || JobSpec {
        run: "t".into(),
        step: "s".into(),
        ..Default::default()
    };
    let mut job = host.trainer("panicker", spec()).unwrap();
    let mode = r#"{"mode": "panicker"}"#;
    let e = job.train(mode, &[], &[]).unwrap_err().to_string();
    assert!(e.contains("plugin `panicker` crashed"), "{e}");
    let e = job.train(mode, &[], &[]).unwrap_err().to_string();
    assert!(e.contains("unusable after an earlier failure"), "{e}");
    // A new job of the same plugin starts clean.
    let e = host
        .trainer("panicker", spec())
        .unwrap()
        .train(mode, &[], &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("fixture panicked on purpose"), "{e}");
}

#[test]
fn ctrl_c_cancels_a_running_step_and_records_it() {
    let home = Home::new("");
    let file = home.write("data-in/tiny.jsonl", TINY);
    // The step allows 60 s, far past the manifest's 1 s, so only the
    // interrupt can end it early.
    let wf = train_workflow(&file, "loop-forever") + "timeout = \"60s\"\n";
    let wf = home.write("cancel.toml", &wf);
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_coach-cli"))
        .args([
            "--config",
            home.config.to_str().unwrap(),
            "run",
            wf.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the training step is running, then interrupt.
    let db = home.path("data/coach.db");
    let started = std::time::Instant::now();
    let mut child = child;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "coach run ended early ({status}):\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let out = home.coach(&["runs", "show", "1", "--json"]);
        if out.ok() && out.stdout().contains("\"step\": \"train\"") {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "the run never reached `train` ({})",
            db.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("plugin `loop-forever` was cancelled"),
        "{stderr}"
    );
    let show = home.coach(&["runs", "show", "1", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&show.expect_ok().stdout()).unwrap();
    assert_eq!(v["state"], "cancelled", "{v}");
    assert_eq!(v["steps"][1]["state"], "cancelled", "{v}");
}
