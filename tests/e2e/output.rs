//! Every subcommand's output on a closed pipe (`coach runs list | head -0`)
//! and on a full device (`coach runs list > /dev/full`): a quiet exit for
//! the pipe, one clear line for the device, never a panic.

use crate::common::{Home, workspace};
use crate::daemon::{Daemon, daemon_home, token, wedding_workflow};
use std::process::{Command, Stdio};

/// Where a command's stdout goes.
enum Sink {
    Captured,
    ClosedPipe,
    FullDevice,
}

fn coach(home: &Home, env: &[(&str, &str)], args: &[&str], sink: Sink) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_coach-cli"));
    // From the checkout, as `coach bench scripts` needs.
    cmd.current_dir(workspace())
        .arg("--config")
        .arg(&home.config)
        .args(args)
        .env_remove("COACH_URL")
        .env_remove("COACH_TOKEN")
        .envs(env.iter().copied())
        .stderr(Stdio::piped());
    match sink {
        Sink::Captured => {
            cmd.stdout(Stdio::piped());
        }
        Sink::ClosedPipe => {
            let (reader, writer) = std::io::pipe().unwrap();
            drop(reader);
            cmd.stdout(writer);
        }
        Sink::FullDevice => {
            cmd.stdout(
                std::fs::OpenOptions::new()
                    .write(true)
                    .open("/dev/full")
                    .unwrap(),
            );
        }
    }
    cmd.output().unwrap()
}

/// `args` prints something, exits 0 quietly on a closed pipe, and says one
/// line (exit 1) on a full device.
fn check(home: &Home, env: &[(&str, &str)], args: &[&str]) {
    let what = args.join(" ");
    let out = coach(home, env, args, Sink::Captured);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "coach {what}: {stderr}");
    assert!(
        !out.stdout.is_empty(),
        "coach {what} printed nothing, so this proves nothing"
    );

    let out = coach(home, env, args, Sink::ClosedPipe);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success() && !stderr.contains("panicked") && !stderr.contains("error:"),
        "coach {what} | head -0: {:?}\n{stderr}",
        out.status
    );

    let out = coach(home, env, args, Sink::FullDevice);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(
        out.status.code(),
        Some(1),
        "coach {what} > /dev/full: {stderr}"
    );
    assert_eq!(
        errors,
        ["error: cannot write the output: No space left on device (os error 28)"],
        "coach {what} > /dev/full: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "coach {what}: {stderr}");
}

#[test]
fn every_subcommand_survives_a_closed_pipe_and_a_full_device() {
    let home = daemon_home("");
    let quickstart = workspace().join("workflows/quickstart.toml");
    let qs = quickstart.to_str().unwrap();
    home.write("workflows/slow.toml", &wedding_workflow("slow", 1500, ""));
    home.write("workflows/quick.toml", &wedding_workflow("quick", 3, ""));
    let script = home.write("gate.rhai", "candidate.metrics.accuracy > 0.5");
    let inputs = home.write(
        "inputs.json",
        r#"{"candidate": {"metrics": {"accuracy": 0.9}}}"#,
    );
    home.coach(&["run", qs]).expect_ok();
    let talks = home.write(
        "talks.jsonl",
        r#"{"id":"t1","turns":[{"role":"user","text":"hi","intent":"greet","confidence":0.9},{"role":"bot","text":"hello"}]}"#,
    );
    let talks = talks.to_str().unwrap();
    let local: &[&[&str]] = &[
        &["--help"],
        &["--version"],
        &["validate", qs],
        &["run", qs],
        &["evaluate", "--folds", "2", qs],
        &["models", "list"],
        &["models", "show", "1"],
        &["deploy", "wedding-assistant:1", "--env", "staging"],
        &[
            "rollback",
            "wedding-assistant",
            "--env",
            "staging",
            "--to",
            "1",
        ],
        &["deployments", "list"],
        &["deployments", "history", "wedding-assistant"],
        &["runs", "list"],
        &["runs", "show", "1"],
        &["conversations", "import", talks, "--model", "bot"],
        &["conversations", "list"],
        &["conversations", "show", "1"],
        &["conversations", "export"],
        &["predict", "--model", "1", "book a dj for the party"],
        &["token", "create", "--role", "viewer", "--name", "o"],
        &["token", "list"],
        &["gpu"],
        &[
            "script",
            "eval",
            script.to_str().unwrap(),
            "--hook",
            "gate",
            "--input",
            inputs.to_str().unwrap(),
        ],
        &[
            "bench",
            "scripts",
            "--gates",
            "10",
            "--examples",
            "100",
            "--intents",
            "3",
        ],
        &[
            "bench",
            "scheduler",
            "--queued",
            "50",
            "--nodes",
            "1",
            "--gpus-per-node",
            "2",
            "--jobs-per-hour",
            "1",
        ],
    ];
    for args in local {
        check(&home, &[], args);
    }

    // The commands that talk to a running daemon.
    let tok = token(&home, "operator");
    let d = Daemon::start(&home);
    let env = [("COACH_URL", d.url.as_str()), ("COACH_TOKEN", tok.as_str())];
    for args in [
        &["status"][..],
        &["runs", "list"],
        &["queue"],
        &["gpu"],
        &["deploy", "wedding-assistant:1", "--env", "production"],
        &["deployments", "history", "wedding-assistant"],
        &["trigger", "quick", "--follow"],
        &["trigger", "slow"],
    ] {
        check(&home, &env, args);
    }
    // Three runs of `slow` were queued above; cancel each through a
    // different sink.
    let list = coach(&home, &env, &["runs", "list", "--json"], Sink::Captured);
    let runs: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let ids: Vec<String> = runs
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["workflow"] == "slow")
        .map(|r| r["id"].to_string())
        .collect();
    assert_eq!(ids.len(), 3, "{runs}");
    let out = coach(&home, &env, &["cancel", &ids[0]], Sink::Captured);
    assert!(out.status.success(), "{out:?}");
    let out = coach(&home, &env, &["cancel", &ids[1]], Sink::ClosedPipe);
    assert!(out.status.success(), "{out:?}");
    let out = coach(&home, &env, &["cancel", &ids[2]], Sink::FullDevice);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot write the output"),
        "{out:?}"
    );
}
