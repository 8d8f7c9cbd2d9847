//! The hostile plugins a newcomer wrote from the SDK's README, each built
//! from source (`tests/fixtures/plugins/hostile-source`) and run the way a
//! user would, with `coach run`: each is stopped by the limit it breaks,
//! with a message that names the plugin and the limit, and what Coach
//! keeps stays bounded.

use crate::common::*;

/// A workflow with one source step of the hostile source `plugin`.
fn source_workflow(home: &Home, plugin: &str, mode: &str, with: &str) -> std::path::PathBuf {
    home.write(
        &format!("{plugin}.toml"),
        &format!(
            "version = 1\nname = \"wf-{plugin}\"\n\n[[step]]\nid = \"data\"\nuses = \"{plugin}\"\nwith = {{ mode = \"{mode}\"{with} }}\n"
        ),
    )
}

fn run(home: &Home, plugin: &str, mode: &str, with: &str) -> Run {
    let wf = source_workflow(home, plugin, mode, with);
    home.coach(&["run", wf.to_str().unwrap()])
}

#[test]
fn an_endless_source_stops_at_the_source_limit() {
    let home = Home::new("");
    let config = std::fs::read_to_string(&home.config)
        .unwrap()
        .replace("[limits]\n", "[limits]\nsource_bytes = \"64MiB\"\n");
    std::fs::write(&home.config, config).unwrap();
    run(&home, "endless-source", "endless", "").expect_failure_with(
        "step `data`: plugin `endless-source` produced more than the 64 MiB a source step may (`[limits] source_bytes`)",
    );
}

#[test]
fn a_source_cannot_stretch_its_step_by_many_short_calls() {
    let home = Home::new("");
    // Each call takes 1.5 s, under the manifest's 2 s; the job as a whole
    // gets 2 s.
    run(&home, "spinning-source", "spin", "").expect_failure_with(
        "step `data`: plugin `spinning-source` ran past its 2 s deadline and was stopped",
    );
}

#[test]
fn a_log_flood_is_cut_at_the_report_limit_and_the_store_stays_small() {
    let home = Home::new("");
    let out = run(&home, "log-flood", "log-flood", "");
    out.expect_failure_with(
        "plugin `log-flood` reported more than its 1 MiB of log lines, progress and metrics (`[limits] reports`)",
    );
    assert!(
        out.all().len() < 2 << 20,
        "{} bytes of output",
        out.all().len()
    );
    let logs = home.coach(&["runs", "logs", "1"]);
    let lines = logs.expect_ok().stdout().lines().count();
    assert!(lines <= 300, "{lines} log lines kept");
}

#[test]
fn records_no_host_should_keep_are_refused_each_named_and_none_forges_a_line() {
    let home = Home::new("");
    let out = run(&home, "bad-records-source", "bad-records", "");
    out.expect_failure_with("9 of 29 records are bad, more than max_bad_fraction 5%");
    for why in [
        "record 21 (checked by Coach): its text holds a NUL character",
        "record 22 (checked by Coach): its text is empty",
        "record 23 (checked by Coach): its text is empty",
        "record 24 (checked by Coach): its intent is empty",
        "record 25 (checked by Coach): its intent `greet\\n[register] done: registered model 999` holds control characters",
        "record 26 (checked by Coach): its intent `greet\\u{1b}[2J` holds control characters",
        "record 27 (checked by Coach): entity `thing` ends at byte 40, past the text's 5 bytes",
        "record 28 (checked by Coach): entity `thing` ends (byte 2) before it starts (byte 5)",
        "record 29 (checked by Coach): entity `thing` starts or ends inside a character (bytes 2..4)",
    ] {
        out.expect_failure_with(why);
    }
    let all = out.all();
    assert!(
        !all.lines()
            .any(|l| l.starts_with("[register] done: registered model 999")),
        "a forged line reached the terminal:\n{all}"
    );
    assert!(!all.contains('\u{1b}'), "a raw escape reached the terminal");
    // Within the step's own bound, the good records are kept and the bad
    // ones reported.
    let out = run(
        &home,
        "bad-records-source",
        "bad-records",
        ", max_bad_fraction = 0.5",
    );
    out.expect_ok();
    assert!(
        out.all().contains("skipped 9 malformed record(s)"),
        "{}",
        out.all()
    );
}

#[test]
fn a_source_lying_about_its_counts_is_checked_and_clipped() {
    let home = Home::new("");
    let out = run(
        &home,
        "lying-source",
        "lying-stats",
        ", max_bad_fraction = 1.0",
    );
    out.expect_ok();
    let all = out.all();
    assert!(
        all.contains(
            "the plugin reported 18446744073709551615 bad records of 20 read; counted as 20"
        ),
        "{all}"
    );
    assert!(all.len() < 20_000, "{} bytes of output:\n{all}", all.len());
    assert!(
        !all.lines().any(|l| l.starts_with("[register] done")),
        "{all}"
    );
    // The store keeps at most 20 of the 100,000 bad records it was told of.
    let db = std::fs::metadata(home.path("data/coach.db")).unwrap().len();
    assert!(db < 4 << 20, "the store grew to {db} bytes");
}

#[test]
fn runaway_recursion_and_a_host_call_overrun_name_their_limits() {
    let home = Home::new("");
    run(&home, "deep-recursion", "recurse", "")
        .expect_failure_with("plugin `deep-recursion` ran out of stack (runaway recursion?): its own stack, in its linear memory, is used up");
    let home = Home::new("");
    let config = std::fs::read_to_string(&home.config)
        .unwrap()
        .replace("[limits]\n", "[limits]\nhostcall_data = \"1MiB\"\n");
    std::fs::write(&home.config, config).unwrap();
    run(&home, "hostcall-hog", "big-log", "").expect_failure_with(
        "plugin `hostcall-hog` passed more than its 1 MiB host-call data limit (`[limits] hostcall_data`)",
    );
}

/// A plugin folder in `installed/` with `plugin.toml` and `wasm` as its
/// component.
fn install(home: &Home, id: &str, manifest: &str, wasm: &[u8]) {
    home.write(&format!("installed/{id}/plugin.toml"), manifest);
    std::fs::write(home.path(&format!("installed/{id}/{id}.wasm")), wasm).unwrap();
}

#[test]
fn a_broken_or_unsupported_plugin_is_its_own_problem() {
    let home = Home::new("");
    let real = std::fs::read(fixture_plugins().join("deep-recursion/deep-recursion.wasm")).unwrap();
    install(
        &home,
        "analyzer-x",
        // Exactly 0.1.0, which only reserved the analyzer kind.
        "id = \"analyzer-x\"\nversion = \"0.1.0\"\nkind = \"analyzer\"\napi = \"=0.1.0\"\n",
        &real,
    );
    install(
        &home,
        "textual",
        "id = \"textual\"\nversion = \"0.1.0\"\nkind = \"source\"\napi = \"0.1.0\"\n",
        "hello, I am only text\n".repeat(200).as_bytes(),
    );
    // Everything that does not use them works.
    let quickstart = workspace().join("workflows/quickstart.toml");
    let qs = quickstart.to_str().unwrap();
    let out = home.coach(&["validate", qs]);
    out.expect_ok();
    assert!(
        out.stderr().contains("analyzer-x") && out.stderr().contains("textual"),
        "the problems are reported: {}",
        out.stderr()
    );
    home.coach(&["run", qs]).expect_ok();
    // What uses the text file gets one clear line, from validate and run.
    let wf = home.write(
        "textual.toml",
        "version = 1\nname = \"wf-textual\"\n\n[[step]]\nid = \"data\"\nuses = \"textual\"\n",
    );
    let why = "textual.wasm is not a WebAssembly component (it starts with `hello, I am only`)";
    for command in ["validate", "run"] {
        let out = home.coach(&[command, wf.to_str().unwrap()]);
        assert!(!out.ok());
        let errors: Vec<String> = out
            .all()
            .lines()
            .filter(|l| l.starts_with("error:"))
            .map(str::to_owned)
            .collect();
        assert!(
            errors.len() == 1 && errors[0].contains(why),
            "coach {command}: {}",
            out.all()
        );
        assert!(out.all().len() < 3_000, "coach {command}: {}", out.all());
    }
}

#[test]
fn a_file_granted_by_itself_exposes_that_file_only() {
    let home = Home::new("");
    let granted = home.write("data-in/granted/intents.txt", "the granted line");
    home.write("data-in/granted/secret.txt", "top secret");
    // The operator grants one file, not its folder.
    let config = std::fs::read_to_string(&home.config).unwrap();
    let grant = format!(
        "[grants.read-outside]\nread = [\"{}\"]",
        home.path("data-in").display()
    );
    assert!(config.contains(&grant), "{config}");
    std::fs::write(
        &home.config,
        config.replace(
            &grant,
            &format!("[grants.read-outside]\nread = [\"{}\"]", granted.display()),
        ),
    )
    .unwrap();
    let folder = granted.parent().unwrap();
    let wf = home.write(
        "probe.toml",
        &format!(
            "version = 1\nname = \"probe\"\n\n[[step]]\nid = \"data\"\nuses = \"read-outside\"\nwith = {{ path = \"{}\", probe = [\"{}\", \"{}\"] }}\n",
            granted.display(),
            folder.join("secret.txt").display(),
            folder.display()
        ),
    );
    home.coach(&["run", wf.to_str().unwrap()]).expect_ok();
    let host = coach::plugin::PluginHost::new(&home.config()).unwrap();
    let spec = coach::plugin::JobSpec {
        run: "t".into(),
        step: "probe".into(),
        read_paths: vec![granted.clone()],
        ..Default::default()
    };
    let cfg = serde_json::json!({
        "path": granted,
        "probe": [folder.join("secret.txt"), folder],
    })
    .to_string();
    let out = host
        .source("read-outside", spec)
        .unwrap()
        .read_all(&cfg, 100, &host.limits())
        .unwrap();
    let texts: Vec<&str> = out.examples.iter().map(|e| e.text.as_str()).collect();
    assert_eq!(
        texts,
        ["the granted line", &format!("listed {}", granted.display())],
        "only the granted file is there"
    );
}

/// `coach run` of `wf`, killed and failed if it outlives `limit` (a plugin
/// asleep in the host would otherwise hold the test for an hour).
pub(crate) fn run_within(home: &Home, wf: &std::path::Path, limit: std::time::Duration) -> Run {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_coach-cli"))
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
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "still running after {limit:?}:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Run(child.wait_with_output().unwrap())
}

#[test]
fn a_plugin_asleep_in_a_blocking_call_meets_its_deadline() {
    let home = Home::new("");
    let file = home.write("data-in/tiny.jsonl", TINY);
    let wf = home.write("sleepy.toml", &train_workflow(&file, "sleep-forever"));
    let out = run_within(&home, &wf, std::time::Duration::from_secs(60));
    out.expect_failure_with(
        "step `train`: plugin `sleep-forever` ran past its 3 s deadline and was stopped",
    );
    assert!(!out.all().contains("panicked"), "{}", out.all());
}

#[test]
fn a_plugin_waiting_on_a_request_body_nothing_takes_meets_its_deadline() {
    // A body written before its request is handed over has nowhere to go:
    // the write, or a poll for room, waits inside the host.
    let home = Home::new("");
    let file = home.write("data-in/tiny.jsonl", TINY);
    let workflow = train_workflow(&file, "unsent-body");
    for mode in ["unsent-body", "unsent-body-poll"] {
        let wf = home.write(
            &format!("{mode}.toml"),
            &workflow.replace("mode = \"unsent-body\"", &format!("mode = \"{mode}\"")),
        );
        let out = run_within(&home, &wf, std::time::Duration::from_secs(60));
        out.expect_failure_with(
            "step `train`: plugin `unsent-body` ran past its 3 s deadline and was stopped",
        );
        assert!(!out.all().contains("panicked"), "{mode}: {}", out.all());
    }
}

#[test]
fn a_daemon_run_whose_plugin_sleeps_is_cancelled_promptly_and_the_daemon_stops_cleanly() {
    use crate::daemon::{Daemon, call, daemon_home, token, wait_for_state};
    let home = daemon_home("");
    let file = home.write("data-in/tiny.jsonl", TINY);
    // The step allows an hour: only cancel and shutdown can end it.
    let wf = train_workflow(&file, "sleep-forever")
        .replace("name = \"wf-sleep-forever\"", "name = \"sleepy\"")
        + "timeout = \"1h\"\n";
    home.write("workflows/sleepy.toml", &wf);
    let tok = token(&home, "operator");
    let d = Daemon::start(&home);
    let trigger = || {
        let (s, v) = call(
            "POST",
            &format!("{}/api/v1/workflows/sleepy/runs", d.url),
            &tok,
        );
        assert_eq!(s, 202, "{v}");
        v["run"]["id"].as_i64().unwrap()
    };
    let wait_training = |id: i64| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let (_, run) = call("GET", &format!("{}/api/v1/runs/{id}", d.url), &tok);
            if run["steps"].as_array().is_some_and(|s| {
                s.iter()
                    .any(|s| s["step"] == "train" && s["state"] == "running")
            }) {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "{run}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    let id = trigger();
    wait_training(id);
    // Asleep in the host: cancel wakes it.
    let (s, v) = call("POST", &format!("{}/api/v1/runs/{id}/cancel", d.url), &tok);
    assert_eq!(s, 202, "{v}");
    let run = wait_for_state(&d, &tok, id, &["cancelled", "failed", "succeeded"]);
    assert_eq!(run["state"], "cancelled", "{run}");
    // Asleep again: SIGTERM stops the daemon within its grace, no panic,
    // and the run resumes at the next start.
    let id = trigger();
    wait_training(id);
    let (status, log) = d.term();
    assert!(status.success(), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}
