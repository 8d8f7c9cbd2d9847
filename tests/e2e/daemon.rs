//! `coach daemon` as a real process: HTTP, server-sent events, SIGKILL and
//! restart, cron, hot reload, and the ways it refuses to start.

use crate::common::{Home, fixture_plugins, workspace};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running daemon.
pub(crate) struct Daemon {
    child: Child,
    pub(crate) url: String,
    log: std::path::PathBuf,
}

impl Daemon {
    /// Start `coach daemon` on `home` and wait for its address.
    pub(crate) fn start(home: &Home) -> Daemon {
        Daemon::start_in(home, &[])
    }

    /// [`Daemon::start`] through `wrapper` (such as `nsenter … --`), which
    /// must exec the daemon in its own place.
    pub(crate) fn start_in(home: &Home, wrapper: &[&str]) -> Daemon {
        let log = home.path(&format!(
            "daemon-{}.log",
            Instant::now().elapsed().as_nanos() ^ std::process::id() as u128 ^ rand_suffix()
        ));
        let coach = env!("CARGO_BIN_EXE_coach-cli");
        let mut cmd = match wrapper {
            [] => Command::new(coach),
            [first, rest @ ..] => {
                let mut c = Command::new(first);
                c.args(rest).arg(coach);
                c
            }
        };
        let mut child = cmd
            .arg("--config")
            .arg(&home.config)
            .arg("daemon")
            .env_remove("COACH_DATA_DIR")
            .env_remove("COACH_DATABASE_URL")
            .env_remove("COACH_LISTEN")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("coach daemon listening on ") {
                    let _ = tx.send(url.to_owned());
                }
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "the daemon did not start:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        Daemon { child, url, log }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub(crate) fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then wait; the exit status.
    pub(crate) fn term(mut self) -> (std::process::ExitStatus, String) {
        signal(&self.child, "TERM");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, self.log());
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not stop:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

pub(crate) fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} failed");
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

pub(crate) fn call(method: &str, url: &str, token: &str) -> (u16, Value) {
    let a = agent();
    let auth = format!("Bearer {token}");
    let res = match method {
        "GET" => a.get(url).header("Authorization", &auth).call(),
        "POST" => a.post(url).header("Authorization", &auth).send_empty(),
        _ => unreachable!(),
    };
    let mut res = res.unwrap();
    let status = res.status().as_u16();
    let body = res.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// Read server-sent events from `url` until `stop` says so; the events as
/// (name, data).
pub(crate) fn sse(
    url: &str,
    token: &str,
    mut stop: impl FnMut(&str, &Value) -> bool,
) -> Vec<(String, Value)> {
    let res = agent()
        .get(url)
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let mut out = Vec::new();
    coach::events::stream::read(res.into_body().into_reader(), |event, v| {
        let done = stop(event, v);
        out.push((event.to_owned(), v.clone()));
        !done
    })
    .unwrap();
    out
}

/// A home whose daemon listens on a free port and owns `workflows/`.
pub(crate) fn post_json(url: &str, token: &str, body: &Value) -> (u16, Value) {
    let mut res = agent()
        .post(url)
        .header("Authorization", &format!("Bearer {token}"))
        .send_json(body)
        .unwrap();
    let status = res.status().as_u16();
    let body = res.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// [`daemon_home`] whose store is the database `pg`.
pub(crate) fn postgres_home(pg: &crate::common::Postgres) -> Home {
    let home = daemon_home("");
    let config = std::fs::read_to_string(&home.config).unwrap();
    std::fs::write(
        &home.config,
        format!("database_url = \"{}\"\n{config}", pg.url),
    )
    .unwrap();
    home
}

/// A daemon home whose plugins may run as long as the slow workflow's own
/// step timeout (10 minutes). That workflow trains 1,500 epochs so as to
/// be interrupted, and a resumed step trains them all again: on a slow
/// or busy machine that takes longer than the other homes' 2-minute
/// plugin limit.
fn slow_home() -> Home {
    let home = daemon_home("");
    let text = std::fs::read_to_string(&home.config).unwrap();
    assert!(text.contains("timeout = \"2m\""), "{text}");
    std::fs::write(
        &home.config,
        text.replace("timeout = \"2m\"", "timeout = \"10m\""),
    )
    .unwrap();
    home
}

pub(crate) fn daemon_home(extra: &str) -> Home {
    let home = Home::new(&format!(
        "[daemon]\nlisten = \"127.0.0.1:0\"\nworkflow_dirs = [\"{}\"]\nshutdown_grace = \"2s\"\n{extra}",
        Path::new(&std::env::temp_dir()).join("unused").display()
    ));
    // The workflow folder lives in the home; rewrite the placeholder.
    let text = std::fs::read_to_string(&home.config).unwrap().replace(
        &Path::new(&std::env::temp_dir())
            .join("unused")
            .display()
            .to_string(),
        &home.path("workflows").display().to_string(),
    );
    std::fs::write(&home.config, text).unwrap();
    std::fs::create_dir_all(home.path("workflows")).unwrap();
    home
}

/// The wedding assistant's data, trained for `epochs` (with no early stop).
pub(crate) fn wedding_workflow(name: &str, epochs: u32, trigger: &str) -> String {
    let data = workspace().join("workflows/data/wedding");
    format!(
        r#"version = 1
name = "{name}"
{trigger}

[[step]]
id = "intents"
uses = "source-files"
with = {{ format = "rasa", path = "{nlu}" }}

[[step]]
id = "split"
kind = "split"
needs = ["intents"]
with = {{ mode = "stratified", validation = 0.15, test = 0.2, seed = 7 }}

[[step]]
id = "train"
uses = "trainer-intent"
needs = ["split"]
with = {{ epochs = {epochs}, patience = {epochs}, seed = 7 }}
# Long runs are made long on purpose (to be interrupted); the deadline
# leaves a slow or busy machine time to finish them.
timeout = "10m"

[[step]]
id = "evaluate"
kind = "evaluate"
needs = ["train"]

[[step]]
id = "register"
kind = "register"
needs = ["evaluate"]
"#,
        nlu = data.join("nlu.yml").display()
    )
}

pub(crate) fn token(home: &Home, role: &str) -> String {
    let out = home.coach(&["token", "create", "--role", role, "--name", "e2e"]);
    out.expect_ok();
    out.stdout().trim().to_owned()
}

pub(crate) fn wait_for_state(d: &Daemon, token: &str, run: i64, states: &[&str]) -> Value {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let (s, v) = call("GET", &format!("{}/api/v1/runs/{run}", d.url), token);
        assert_eq!(s, 200, "{v}");
        if states.contains(&v["state"].as_str().unwrap_or("")) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "run {run} stayed {}:\n{}",
            v["state"],
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn runs_stream_live_and_survive_sigkill_exactly_once() {
    let home = slow_home();
    home.write("workflows/quick.toml", &wedding_workflow("quick", 30, ""));
    home.write("workflows/slow.toml", &wedding_workflow("slow", 1500, ""));
    let tok = token(&home, "operator");
    let d = Daemon::start(&home);

    // A run, followed live on the firehose from before it is queued.
    let url = d.url.clone();
    let t = tok.clone();
    let watcher = std::thread::spawn(move || {
        sse(&format!("{url}/api/v1/events"), &t, |e, v| {
            e == "run.finished" && v["workflow"] == "quick"
        })
    });
    std::thread::sleep(Duration::from_millis(300));
    let (s, v) = call(
        "POST",
        &format!("{}/api/v1/workflows/quick/runs", d.url),
        &tok,
    );
    assert_eq!(s, 202, "{v}");
    let first = v["run"]["id"].as_i64().unwrap();
    let events = watcher.join().unwrap();
    let names: Vec<&str> = events
        .iter()
        .filter(|(_, v)| v["run"] == first)
        .map(|(e, _)| e.as_str())
        .collect();
    for needed in [
        "run.queued",
        "run.started",
        "step.started",
        "progress",
        "metric",
        "log",
        "step.finished",
        "run.finished",
    ] {
        assert!(names.contains(&needed), "no `{needed}` event in {names:?}");
    }
    let (_, last) = events.last().unwrap();
    assert_eq!(last["state"], "succeeded", "{last}");
    // The run's own stream of a finished run ends at once with its state.
    let after = sse(
        &format!("{}/api/v1/runs/{first}/events", d.url),
        &tok,
        |e, _| e == "run.finished",
    );
    assert_eq!(after.last().unwrap().1["state"], "succeeded");

    // A second run, killed with SIGKILL while it trains.
    let (s, v) = call(
        "POST",
        &format!("{}/api/v1/workflows/slow/runs", d.url),
        &tok,
    );
    assert_eq!(s, 202, "{v}");
    let second = v["run"]["id"].as_i64().unwrap();
    sse(
        &format!("{}/api/v1/runs/{second}/events", d.url),
        &tok,
        |e, v| e == "step.started" && v["step"] == "train",
    );
    d.kill9();

    // Restarted, the daemon resumes it at the interrupted step.
    let d = Daemon::start(&home);
    let run = wait_for_state(&d, &tok, second, &["succeeded", "failed", "cancelled"]);
    assert_eq!(run["state"], "succeeded", "{run}\n{}", d.log());
    assert_eq!(run["resumes"], 1, "{run}");
    let attempts = |step: &str| -> Vec<String> {
        run["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["step"] == step)
            .map(|s| s["state"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        attempts("intents"),
        ["succeeded"],
        "done steps are not run again"
    );
    assert_eq!(attempts("split"), ["succeeded"]);
    assert_eq!(attempts("train"), ["interrupted", "succeeded"]);
    assert_eq!(attempts("evaluate"), ["succeeded"]);
    assert_eq!(attempts("register"), ["succeeded"]);
    // Exactly once: two runs in all, one model per run.
    let (_, runs) = call("GET", &format!("{}/api/v1/runs", d.url), &tok);
    assert_eq!(runs["runs"].as_array().unwrap().len(), 2, "{runs}");
    let (_, models) = call("GET", &format!("{}/api/v1/models", d.url), &tok);
    let of = |r: i64| {
        models["models"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["run"] == r)
            .count()
    };
    assert_eq!((of(first), of(second)), (1, 1), "{models}");
    assert!(d.log().contains("interrupted"), "{}", d.log());
    let (status, log) = d.term();
    assert!(status.success(), "{log}");
}

#[test]
fn a_cron_workflow_fires_on_schedule() {
    let home = daemon_home("");
    let mut wf = wedding_workflow(
        "every-two-seconds",
        1,
        "[trigger]\ncron = \"*/2 * * * * *\"\ntimezone = \"Europe/Berlin\"\nconcurrency = \"forbid\"",
    );
    // Data only: the schedule is what is under test.
    wf.truncate(wf.find("[[step]]\nid = \"train\"").unwrap());
    home.write("workflows/cron.toml", &wf);
    let tok = token(&home, "viewer");
    let d = Daemon::start(&home);
    let deadline = Instant::now() + Duration::from_secs(30);
    let fires = loop {
        let (_, v) = call(
            "GET",
            &format!("{}/api/v1/workflows/every-two-seconds", d.url),
            &tok,
        );
        let fires: Vec<Value> = v["recent_fires"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["kind"] == "cron" && f["outcome"] == "queued")
            .cloned()
            .collect();
        if fires.len() >= 2 {
            break fires;
        }
        assert!(
            Instant::now() < deadline,
            "cron fired {} time(s) in 30 s:\n{}",
            fires.len(),
            d.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let times: Vec<chrono::DateTime<chrono::Utc>> = fires
        .iter()
        .map(|f| f["scheduled_for"].as_str().unwrap().parse().unwrap())
        .collect();
    for t in &times {
        assert_eq!(
            chrono::Timelike::second(t) % 2,
            0,
            "fired off schedule at {t}"
        );
    }
    let gap = (times[0] - times[1]).num_seconds();
    assert!(gap >= 2 && gap % 2 == 0, "fires {gap} s apart");
    let (_, runs) = call(
        "GET",
        &format!("{}/api/v1/runs?workflow=every-two-seconds", d.url),
        &tok,
    );
    assert!(
        runs["runs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["trigger"] == "cron"),
        "{runs}"
    );
    let (status, log) = d.term();
    assert!(status.success() && log.contains("daemon stopped"), "{log}");
}

#[test]
fn an_invalid_edit_keeps_the_last_good_version_running() {
    let home = daemon_home("");
    let file = home.write("workflows/wf.toml", &wedding_workflow("edited", 5, ""));
    let tok = token(&home, "operator");
    let d = Daemon::start(&home);
    let (_, v) = call("GET", &format!("{}/api/v1/workflows/edited", d.url), &tok);
    let good = v["version"].as_str().unwrap().to_owned();

    // Break it: an unknown plugin on line 18.
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace("uses = \"trainer-intent\"", "uses = \"trainer-nope\""),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let v = loop {
        let (_, v) = call("GET", &format!("{}/api/v1/workflows/edited", d.url), &tok);
        if v["valid"] == false {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "the edit was not noticed:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let err = v["error"].as_str().unwrap();
    assert!(
        err.contains("wf.toml:18:8") && err.contains("trainer-nope"),
        "{err}"
    );
    assert_eq!(
        v["version"],
        good.as_str(),
        "the good version stays in service"
    );
    let (s, v) = call(
        "POST",
        &format!("{}/api/v1/workflows/edited/runs", d.url),
        &tok,
    );
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["run"]["version"], good.as_str());
    let run = wait_for_state(
        &d,
        &tok,
        v["run"]["id"].as_i64().unwrap(),
        &["succeeded", "failed"],
    );
    assert_eq!(run["state"], "succeeded", "{run}");

    // Fixed, the new version goes into service.
    std::fs::write(&file, text.replace("epochs = 5,", "epochs = 6,")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, v) = call("GET", &format!("{}/api/v1/workflows/edited", d.url), &tok);
        if v["valid"] == true && v["version"] != good.as_str() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the fix was not noticed:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_plugin_replaced_by_garbage_keeps_the_old_one() {
    let home = daemon_home("");
    let src = fixture_plugins().join("panicker");
    let dst = home.path("installed/panicker-copy");
    std::fs::create_dir_all(&dst).unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let text_or_bytes = std::fs::read(entry.path()).unwrap();
        if name == "plugin.toml" {
            let t = String::from_utf8(text_or_bytes).unwrap().replace(
                "id = \"panicker\"",
                "id = \"panicker-copy\"\nwasm = \"panicker.wasm\"",
            );
            std::fs::write(dst.join(&name), t).unwrap();
        } else {
            std::fs::write(dst.join(&name), text_or_bytes).unwrap();
        }
    }
    let tok = token(&home, "viewer");
    let d = Daemon::start(&home);
    let plugin = |d: &Daemon| {
        let (_, v) = call("GET", &format!("{}/api/v1/plugins", d.url), &tok);
        let p = v["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == "panicker-copy")
            .cloned();
        (p, v["problems"].clone())
    };
    let (before, _) = plugin(&d);
    let before = before.expect("the copy is installed");
    std::fs::write(dst.join("panicker.wasm"), b"\0asm garbage, not a component").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let problems = loop {
        let (_, problems) = plugin(&d);
        if problems.as_object().is_some_and(|o| !o.is_empty()) {
            break problems;
        }
        assert!(
            Instant::now() < deadline,
            "the garbage was not noticed:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let why = problems.to_string();
    assert!(
        why.contains("panicker-copy")
            && why.contains("cannot be loaded")
            && why.contains("still using"),
        "{why}"
    );
    let (after, _) = plugin(&d);
    assert_eq!(
        after.unwrap()["wasm_sha256"],
        before["wasm_sha256"],
        "the old build stays in service"
    );
}

#[test]
fn a_second_daemon_on_the_same_data_directory_refuses_to_start() {
    let home = daemon_home("");
    let _first = Daemon::start(&home);
    let out = Command::new(env!("CARGO_BIN_EXE_coach-cli"))
        .arg("--config")
        .arg(&home.config)
        .arg("daemon")
        .env_remove("COACH_DATA_DIR")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("another Coach daemon is using the data directory"),
        "{err}"
    );
}

#[test]
fn a_second_daemon_on_the_same_postgres_database_refuses_to_start_until_the_first_dies() {
    let pg = crate::common::Postgres::create();
    let on_pg = || postgres_home(&pg);
    // Two data directories, one database.
    let (a, b) = (on_pg(), on_pg());
    let first = Daemon::start(&a);
    let out = Command::new(env!("CARGO_BIN_EXE_coach-cli"))
        .arg("--config")
        .arg(&b.config)
        .arg("daemon")
        .env_remove("COACH_DATA_DIR")
        .env_remove("COACH_DATABASE_URL")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("another Coach daemon serves the database")
            && err.contains(&format!("coach daemon {}", host())),
        "the holder is named: {err}"
    );
    assert!(
        err.contains(&format!("pid {}", first.pid())),
        "the holder is named: {err}"
    );
    // A killed holder's lock dies with its session.
    first.kill9();
    let second = Daemon::start(&b);
    let (status, log) = second.term();
    assert!(status.success(), "{log}");
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// Start the daemon on a data directory that is a fresh tmpfs mounted by
/// `setup` in a private mount namespace; `None` where mounting is not
/// allowed (not root).
fn daemon_on_mount(home: &Home, setup: &str) -> Option<std::process::Output> {
    let probe = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            "mount -t tmpfs tmpfs /mnt",
        ])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("skipping: mounting a tmpfs in a private mount namespace is not allowed here");
        return None;
    }
    let data = home.path("data");
    std::fs::create_dir_all(&data).unwrap();
    let script = format!(
        "{setup} && exec \"$0\" --config \"$1\" daemon",
        setup = setup.replace("DATA", &data.display().to_string())
    );
    Some(
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .arg(env!("CARGO_BIN_EXE_coach-cli"))
            .arg(&home.config)
            .env_remove("COACH_DATA_DIR")
            .output()
            .unwrap(),
    )
}

#[test]
fn a_read_only_data_directory_is_a_clear_error() {
    let home = daemon_home("");
    let Some(out) = daemon_on_mount(&home, "mount -t tmpfs -o ro tmpfs DATA") else {
        return;
    };
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot write to the data directory") && err.contains("Read-only file system"),
        "{err}"
    );
}

#[test]
fn a_full_disk_is_a_clear_error() {
    let home = daemon_home("");
    let Some(out) = daemon_on_mount(
        &home,
        "mount -t tmpfs -o size=64k tmpfs DATA && (dd if=/dev/zero of=DATA/fill bs=4k 2>/dev/null; true)",
    ) else {
        return;
    };
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the disk holding")
            && err.contains("is full")
            && err.contains("No space left"),
        "{err}"
    );
}

/// A data directory that served a daemon and holds a model: the store,
/// the artifacts and `daemon.lock`.
fn served_home() -> Home {
    let home = daemon_home("");
    home.write("workflows/quick.toml", &wedding_workflow("quick", 3, ""));
    let tok = token(&home, "operator");
    let d = Daemon::start(&home);
    let (s, v) = call(
        "POST",
        &format!("{}/api/v1/workflows/quick/runs", d.url),
        &tok,
    );
    assert_eq!(s, 202, "{v}");
    let run = wait_for_state(
        &d,
        &tok,
        v["run"]["id"].as_i64().unwrap(),
        &["succeeded", "failed"],
    );
    assert_eq!(run["state"], "succeeded", "{run}");
    let (status, log) = d.term();
    assert!(status.success(), "{log}");
    home
}

fn start_fails(home: &Home) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_coach-cli"))
        .arg("--config")
        .arg(&home.config)
        .arg("daemon")
        .env_remove("COACH_DATA_DIR")
        .env_remove("COACH_DATABASE_URL")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    err
}

#[test]
fn a_full_disk_under_an_existing_store_is_named_at_start() {
    let home = served_home();
    let seed = home.path("seed");
    std::fs::rename(home.path("data"), &seed).unwrap();
    let Some(out) = daemon_on_mount(
        &home,
        &format!(
            "mount -t tmpfs -o size=16m tmpfs DATA && cp -a {}/. DATA/ && (dd if=/dev/zero of=DATA/fill bs=4k 2>/dev/null; true)",
            seed.display()
        ),
    ) else {
        return;
    };
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("the disk holding {}", home.path("data").display()))
            && err.contains("is full"),
        "{err}"
    );
}

fn ready(d: &Daemon) -> (u16, Value) {
    call("GET", &format!("{}/readyz", d.url), "")
}

fn wait_until(what: &str, d: &Daemon, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !ok() {
        assert!(Instant::now() < deadline, "{what}:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Trigger `nap` and wait until its step runs; the run's id.
fn nap_started(d: &Daemon, tok: &str) -> i64 {
    let (s, v) = call("POST", &format!("{}/api/v1/workflows/nap/runs", d.url), tok);
    assert_eq!(s, 202, "{v}");
    let id = v["run"]["id"].as_i64().unwrap();
    wait_until("the step starts", d, || {
        let (_, run) = call("GET", &format!("{}/api/v1/runs/{id}", d.url), tok);
        run["steps"][0]["state"] == "running"
    });
    id
}

/// Make the store refuse to record runs' ends, as a full or read-only
/// disk does (`on`), or take them again.
fn refuse_ends(home: &Home, on: bool) {
    let sql = if on {
        "CREATE TRIGGER refuse_ends BEFORE UPDATE OF state ON training_runs \
         BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;"
    } else {
        "DROP TRIGGER refuse_ends;"
    };
    // The daemon may hold the write lock at that moment: wait for it, as
    // the daemon's own connections do.
    let out = Command::new("sqlite3")
        .args(["-cmd", ".timeout 10000"])
        .arg(home.path("data/coach.db"))
        .arg(sql)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn a_runs_end_outlasts_an_unwritable_store_and_is_never_resumed_into_success() {
    if Command::new("sqlite3").arg("--version").output().is_err() {
        eprintln!("skipped: the sqlite3 command is needed to make the store refuse writes");
        return;
    }
    let home = daemon_home("");
    home.write(
        "workflows/nap.toml",
        "version = 1\nname = \"nap\"\n\n[[step]]\nid = \"nap\"\nkind = \"process\"\ncommand = [\"sleep\", \"2\"]\n",
    );
    let tok = token(&home, "operator");
    let d = Daemon::start(&home);
    assert_eq!(ready(&d).0, 200);
    assert_eq!(
        std::fs::metadata(home.path("data/outcomes.journal"))
            .unwrap()
            .len(),
        256 << 10,
        "the journal's space is taken at start"
    );

    // The store stops taking writes while a run is in its step.
    let id = nap_started(&d, &tok);
    refuse_ends(&home, true);
    wait_until("/readyz says not ready", &d, || ready(&d).0 == 503);
    let (_, why) = ready(&d);
    assert!(
        why["reason"].as_str().is_some_and(|r| r
            .contains(&format!("the end of run {id} cannot be recorded"))
            && r.contains("database or disk is full")),
        "{why}"
    );
    // Triggers pause; the run is not reported ended before it is recorded.
    let (s, v) = call(
        "POST",
        &format!("{}/api/v1/workflows/nap/runs", d.url),
        &tok,
    );
    assert_eq!(s, 503, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .starts_with("triggers are paused"),
        "{v}"
    );
    let (_, run) = call("GET", &format!("{}/api/v1/runs/{id}", d.url), &tok);
    assert_eq!(run["state"], "running", "{run}");
    // Writes work again: the end is recorded (the store failed under the
    // run, so it failed), and the daemon is ready.
    refuse_ends(&home, false);
    let run = wait_for_state(&d, &tok, id, &["failed", "succeeded"]);
    assert_eq!(run["state"], "failed", "{run}");
    assert!(
        run["error"]
            .as_str()
            .unwrap()
            .contains("the store failed under the run"),
        "{run}"
    );
    wait_until("/readyz says ready again", &d, || ready(&d).0 == 200);

    // The daemon killed while the store refuses: the next start records the
    // failure from the journal instead of resuming the run.
    let id = nap_started(&d, &tok);
    refuse_ends(&home, true);
    wait_until("/readyz says not ready", &d, || ready(&d).0 == 503);
    d.kill9();
    refuse_ends(&home, false);
    let d = Daemon::start(&home);
    let (_, run) = call("GET", &format!("{}/api/v1/runs/{id}", d.url), &tok);
    assert_eq!(run["state"], "failed", "{run}\n{}", d.log());
    std::thread::sleep(Duration::from_secs(3));
    let (_, run) = call("GET", &format!("{}/api/v1/runs/{id}", d.url), &tok);
    assert_eq!(run["state"], "failed", "never resumed: {run}");
    assert!(
        d.log()
            .contains("recorded the end of a run that the store could not take"),
        "{}",
        d.log()
    );
}

#[test]
fn an_emptied_store_beside_artifacts_is_refused() {
    let home = served_home();
    std::fs::write(home.path("data/coach.db"), "").unwrap();
    let err = start_fails(&home);
    assert!(
        err.contains("coach.db is empty, but")
            && err.contains("model artifact file(s): the database was lost or replaced"),
        "{err}"
    );
    // Nothing was created beside the artifacts.
    assert_eq!(
        std::fs::metadata(home.path("data/coach.db")).unwrap().len(),
        0
    );
}

#[test]
fn a_damaged_store_is_refused_at_start() {
    let home = served_home();
    let db = home.path("data/coach.db");
    let mut bytes = std::fs::read(&db).unwrap();
    assert!(bytes.len() > 80_000, "{} bytes", bytes.len());
    let middle = bytes.len() / 2;
    for (i, b) in bytes[middle..middle + 20_000].iter_mut().enumerate() {
        *b = (i * 7 + 13) as u8;
    }
    std::fs::write(&db, bytes).unwrap();
    let err = start_fails(&home);
    // Found by the check, or by SQLite itself when the damage is on a page
    // it reads while opening: the same message either way.
    assert!(
        err.contains("coach.db is damaged (SQLite") && err.contains(".recover"),
        "{err}"
    );
}

#[test]
fn new_data_under_a_watched_folder_starts_one_run() {
    let home = daemon_home("");
    let mut wf = wedding_workflow(
        "watcher",
        1,
        &format!(
            "[trigger]\nwatch = [\"{}\"]\ndebounce = \"500ms\"",
            home.path("data-in").display()
        ),
    );
    wf.truncate(wf.find("[[step]]\nid = \"train\"").unwrap());
    home.write("workflows/watch.toml", &wf);
    let tok = token(&home, "viewer");
    let d = Daemon::start(&home);
    // A burst of changes is one fire.
    for i in 0..5 {
        home.write(&format!("data-in/batch-{i}.jsonl"), crate::common::TINY);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let runs = loop {
        let (_, v) = call(
            "GET",
            &format!("{}/api/v1/runs?workflow=watcher", d.url),
            &tok,
        );
        let runs = v["runs"].as_array().unwrap().clone();
        if !runs.is_empty() {
            break runs;
        }
        assert!(
            Instant::now() < deadline,
            "no run after new data:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    std::thread::sleep(Duration::from_secs(2));
    let (_, v) = call(
        "GET",
        &format!("{}/api/v1/runs?workflow=watcher", d.url),
        &tok,
    );
    assert_eq!(
        v["runs"].as_array().unwrap().len(),
        1,
        "debounced into one run: {v}"
    );
    assert_eq!(runs[0]["trigger"], "watch");
}

#[test]
fn sigterm_stops_a_run_mid_step_and_the_next_start_resumes_it() {
    let home = slow_home();
    home.write("workflows/slow.toml", &wedding_workflow("slow", 1500, ""));
    let tok = token(&home, "operator");
    let d = Daemon::start(&home);
    let (_, v) = call(
        "POST",
        &format!("{}/api/v1/workflows/slow/runs", d.url),
        &tok,
    );
    let id = v["run"]["id"].as_i64().unwrap();
    sse(
        &format!("{}/api/v1/runs/{id}/events", d.url),
        &tok,
        |e, v| e == "step.started" && v["step"] == "train",
    );
    // The grace period (2 s) is shorter than the training.
    let (status, log) = d.term();
    assert!(status.success(), "{log}");
    assert!(log.contains("stopped mid-step by the shutdown"), "{log}");
    let d = Daemon::start(&home);
    let run = wait_for_state(&d, &tok, id, &["succeeded", "failed", "cancelled"]);
    assert_eq!(run["state"], "succeeded", "{run}");
    let train: Vec<&str> = run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["step"] == "train")
        .map(|s| s["state"].as_str().unwrap())
        .collect();
    assert_eq!(train, ["interrupted", "succeeded"], "{run}");
}

#[test]
fn a_cron_fire_missed_while_stopped_runs_once_at_start() {
    let home = daemon_home("");
    let mut wf = wedding_workflow(
        "nightly",
        1,
        "[trigger]\ncron = \"*/2 * * * * *\"\ncatch_up = \"once\"\nconcurrency = \"queue\"",
    );
    wf.truncate(wf.find("[[step]]\nid = \"train\"").unwrap());
    home.write("workflows/cron.toml", &wf);
    let tok = token(&home, "viewer");
    let d = Daemon::start(&home);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, v) = call("GET", &format!("{}/api/v1/workflows/nightly", d.url), &tok);
        if v["recent_fires"].as_array().is_some_and(|f| !f.is_empty()) {
            break;
        }
        assert!(Instant::now() < deadline, "no fire:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, log) = d.term();
    assert!(status.success(), "{log}");
    // Several fires fall while it is down.
    std::thread::sleep(Duration::from_secs(5));
    let d = Daemon::start(&home);
    let (_, v) = call("GET", &format!("{}/api/v1/workflows/nightly", d.url), &tok);
    let catch_up: Vec<&Value> = v["recent_fires"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "catch-up")
        .collect();
    assert_eq!(catch_up.len(), 1, "one catch-up for all missed fires: {v}");
    assert_eq!(catch_up[0]["outcome"], "queued", "{v}");
    assert!(
        d.log().contains("missed while the daemon was down"),
        "{}",
        d.log()
    );
}

#[test]
fn sighup_reloads_the_config_and_a_broken_one_is_rejected() {
    let home = daemon_home("");
    let tok = token(&home, "viewer");
    let d = Daemon::start(&home);
    let timeout_of = |d: &Daemon| {
        let (_, v) = call("GET", &format!("{}/api/v1/plugins", d.url), &tok);
        v["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == "trainer-intent")
            .unwrap()["limits"]["timeout_ms"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(timeout_of(&d), 120_000);
    let text = std::fs::read_to_string(&home.config).unwrap();
    std::fs::write(
        &home.config,
        text.replace("timeout = \"2m\"", "timeout = \"90s\""),
    )
    .unwrap();
    signal(&d.child, "HUP");
    let deadline = Instant::now() + Duration::from_secs(20);
    while timeout_of(&d) != 90_000 {
        assert!(
            Instant::now() < deadline,
            "the new limit was not applied:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::write(
        &home.config,
        text.replace("timeout = \"2m\"", "timeout = \"soon\""),
    )
    .unwrap();
    signal(&d.child, "HUP");
    let deadline = Instant::now() + Duration::from_secs(20);
    let problem = loop {
        let (_, v) = call("GET", &format!("{}/api/v1/status", d.url), &tok);
        if let Some(p) = v["config_problem"].as_str() {
            break p.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "the broken config was not reported:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        problem.contains("limits.timeout") && problem.contains("soon"),
        "{problem}"
    );
    assert_eq!(timeout_of(&d), 90_000, "the config in service stays");
}

/// `coach <args>` against the daemon at `url`.
pub(crate) fn cli(home: &Home, url: &str, token: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_coach-cli"))
        .arg("--config")
        .arg(&home.config)
        .args(args)
        .env("COACH_URL", url)
        .env("COACH_TOKEN", token)
        .output()
        .unwrap()
}

#[test]
fn the_cli_triggers_follows_and_cancels_runs_on_a_running_daemon() {
    let home = daemon_home("");
    home.write("workflows/quick.toml", &wedding_workflow("quick", 10, ""));
    home.write("workflows/slow.toml", &wedding_workflow("slow", 1500, ""));
    let tok = token(&home, "operator");
    let d = Daemon::start(&home);

    let out = cli(&home, &d.url, &tok, &["trigger", "quick", "--follow"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("✓ register: registered model") && text.contains("succeeded"),
        "{text}"
    );
    assert!(
        text.contains("train epoch 1: "),
        "per-epoch metrics on one line: {text}"
    );

    let out = cli(&home, &d.url, &tok, &["trigger", "slow"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let id: i64 = text.split_whitespace().nth(2).unwrap().parse().unwrap();
    sse(
        &format!("{}/api/v1/runs/{id}/events", d.url),
        &tok,
        |e, v| e == "step.started" && v["step"] == "train",
    );
    let out = cli(&home, &d.url, &tok, &["cancel", &id.to_string()]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("run {id}: stopping")
    );
    let out = cli(
        &home,
        &d.url,
        &tok,
        &["runs", "logs", &id.to_string(), "--follow"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a cancelled run is not a success: {text}"
    );
    let run = wait_for_state(&d, &tok, id, &["cancelled", "succeeded", "failed"]);
    assert_eq!(run["state"], "cancelled", "{run}");
    let out = cli(&home, &d.url, &tok, &["cancel", &id.to_string()]);
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("only queued or running runs can be cancelled")
    );

    let out = cli(&home, &d.url, &tok, &["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ready") && text.contains("cancelled 1") && text.contains("succeeded 1"),
        "{text}"
    );
    let out = cli(&home, &d.url, &tok, &["runs", "list"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
    let out = cli(&home, &d.url, "coach_not_a_token", &["status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown or revoked token"));
}

#[test]
fn a_hostile_script_fails_its_run_and_nothing_else() {
    let home = daemon_home("");
    let mut bad = wedding_workflow("bad-gate", 5, "");
    bad.push_str("\n[[step]]\nid = \"gate\"\nkind = \"gate\"\nneeds = [\"evaluate\"]\nwhen = 'let s = \"boom\"; loop { s += s; }'\n");
    home.write("workflows/bad.toml", &bad);
    home.write("workflows/quick.toml", &wedding_workflow("quick", 5, ""));
    let tok = token(&home, "operator");
    let d = Daemon::start(&home);
    let (_, b) = call(
        "POST",
        &format!("{}/api/v1/workflows/bad-gate/runs", d.url),
        &tok,
    );
    let (_, q) = call(
        "POST",
        &format!("{}/api/v1/workflows/quick/runs", d.url),
        &tok,
    );
    let b = wait_for_state(
        &d,
        &tok,
        b["run"]["id"].as_i64().unwrap(),
        &["succeeded", "failed"],
    );
    let q = wait_for_state(
        &d,
        &tok,
        q["run"]["id"].as_i64().unwrap(),
        &["succeeded", "failed"],
    );
    assert_eq!(b["state"], "failed", "{b}");
    let err = b["error"].as_str().unwrap();
    assert!(
        err.contains("step `gate`")
            && err.contains("bad.toml:")
            && err.contains("exceeds its limit"),
        "{err}"
    );
    assert_eq!(q["state"], "succeeded", "{q}");
    let (s, _) = call("GET", &format!("{}/healthz", d.url), &tok);
    assert_eq!(s, 200);
}

/// A workflow `name` reading `data-in/inbox.jsonl` (returned), started by
/// the condition `when` (TOML, quoted) checked every 200 ms.
fn condition_workflow(home: &Home, name: &str, when: &str) -> std::path::PathBuf {
    let inbox = home.write("data-in/inbox.jsonl", crate::common::TINY);
    home.write(
        &format!("workflows/{name}.toml"),
        &format!(
            r#"version = 1
name = "{name}"

[trigger]
when = {when}
check_every = "200ms"
min_interval = "1s"

[[step]]
id = "inbox"
uses = "source-files"
with = {{ format = "jsonl", path = "{}" }}
"#,
            inbox.display()
        ),
    );
    inbox
}

pub(crate) fn runs_of(d: &Daemon, tok: &str, workflow: &str) -> Vec<Value> {
    let (_, v) = call(
        "GET",
        &format!("{}/api/v1/runs?workflow={workflow}", d.url),
        tok,
    );
    v["runs"].as_array().unwrap().clone()
}

/// Waits until the workflow has `n` runs, all succeeded.
fn wait_for_succeeded(d: &Daemon, tok: &str, workflow: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = runs_of(d, tok, workflow);
        if r.len() >= n && r.iter().all(|r| r["state"] == "succeeded") {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "{} run(s), wanted {n}:\n{}",
            r.len(),
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The workflow as the API shows it, and the details of its recent fires.
fn fire_details(d: &Daemon, tok: &str, workflow: &str) -> (Value, Vec<String>) {
    let (_, v) = call(
        "GET",
        &format!("{}/api/v1/workflows/{workflow}", d.url),
        tok,
    );
    let details = v["recent_fires"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["detail"].as_str().map(str::to_owned))
        .collect();
    (v, details)
}

#[test]
fn a_retrain_condition_fires_when_new_data_arrives() {
    let home = daemon_home("");
    let inbox = condition_workflow(
        &home,
        "conditional",
        "'#{ pass: data.new_examples >= 3, reason: `${data.new_examples} new examples` }'",
    );
    let tok = token(&home, "viewer");
    let d = Daemon::start(&home);
    let runs = |d: &Daemon| runs_of(d, &tok, "conditional");
    let wait_for = |d: &Daemon, n: usize| wait_for_succeeded(d, &tok, "conditional", n);
    // Everything is new at first.
    let first = wait_for(&d, 1);
    assert_eq!(first[0]["trigger"], "condition");
    // Nothing new: no further run, however long it is checked.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(runs(&d).len(), 1, "no new data, no run");
    // Three new examples: a second run.
    let mut text = std::fs::read_to_string(&inbox).unwrap();
    text.push_str("{\"text\": \"hey\", \"intent\": \"greet\"}\n{\"text\": \"farewell\", \"intent\": \"goodbye\"}\n{\"text\": \"yo\", \"intent\": \"greet\"}\n");
    std::fs::write(&inbox, text).unwrap();
    wait_for(&d, 2);
    let (v, details) = fire_details(&d, &tok, "conditional");
    assert!(
        details.iter().any(|d| d == "6 new examples")
            && details.iter().any(|d| d == "3 new examples"),
        "{v}"
    );
}

#[test]
fn a_retrain_condition_fires_on_fallbacks_and_on_feedback() {
    let home = daemon_home("");
    condition_workflow(
        &home,
        "listening",
        r#""""
if recent_runs.len() >= 2 { return false; }
if feedback.corrections >= 2 { return #{ pass: true, reason: `${feedback.corrections} corrections` }; }
if conversations.user_messages >= 4 && conversations.fallback_rate > 0.5 {
    return #{ pass: true, reason: `fallback rate ${conversations.fallback_rate}` };
}
false
""""#,
    );
    let tok = token(&home, "operator");
    let d = Daemon::start(&home);
    let runs = |d: &Daemon| runs_of(d, &tok, "listening");
    let wait_for = |d: &Daemon, n: usize| wait_for_succeeded(d, &tok, "listening", n);
    let log = |messages: Value| {
        let (s, v) = post_json(
            &format!("{}/api/v1/conversations", d.url),
            &tok,
            &serde_json::json!({"conversations": [{"model": "listening", "id": "c1", "messages": messages}]}),
        );
        assert_eq!(s, 201, "{v}");
    };
    let user =
        |fallback: bool| serde_json::json!({"role": "user", "text": "hm", "fallback": fallback});
    // Quiet: no traffic, no run.
    std::thread::sleep(Duration::from_secs(1));
    assert!(runs(&d).is_empty(), "no traffic, no run");
    // 2 of 4 messages fell back: 50% is not above 50%.
    log(serde_json::json!([
        user(true),
        user(false),
        user(true),
        user(false)
    ]));
    std::thread::sleep(Duration::from_secs(1));
    assert!(runs(&d).is_empty(), "a 50% fallback rate does not fire");
    // One more fallback: 3 of 5.
    log(serde_json::json!([user(true)]));
    let first = wait_for(&d, 1);
    assert_eq!(first[0]["trigger"], "condition");
    // After the run, its traffic no longer counts; one correction is not enough.
    let feedback = |message: i64| {
        let (s, v) = post_json(
            &format!("{}/api/v1/feedback", d.url),
            &tok,
            &serde_json::json!({"feedback": [{"model": "listening", "conversation": "c1",
                                               "message": message, "correction": "greet"}]}),
        );
        assert_eq!(s, 201, "{v}");
    };
    feedback(0);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(runs(&d).len(), 1, "old traffic and one correction: no run");
    feedback(2);
    wait_for(&d, 2);
    let (v, details) = fire_details(&d, &tok, "listening");
    assert!(
        details.iter().any(|d| d == "fallback rate 0.6")
            && details.iter().any(|d| d == "2 corrections"),
        "{v}"
    );
    // The script reads the recent runs: two are enough for it.
    feedback(3);
    feedback(4);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(runs(&d).len(), 2, "recent_runs holds it back");
}

/// SIGTERM sent the moment the daemon prints where it listens stops it,
/// every time: the daemon subscribes to the signal before it says it is up.
#[test]
fn sigterm_right_after_start_stops_the_daemon() {
    let home = daemon_home("");
    for _ in 0..20 {
        let (status, log) = Daemon::start(&home).term();
        assert!(status.success(), "{status:?}\n{log}");
    }
}
