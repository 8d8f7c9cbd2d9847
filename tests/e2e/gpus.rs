//! GPU work with a real daemon: a static inventory of fake GPUs, process
//! steps placed on them with `CUDA_VISIBLE_DEVICES`, the queue with its
//! reasons, and the faults (non-zero exits, garbage progress lines, a
//! process that ignores SIGTERM, requests that can never fit).

use crate::common::Home;
use crate::daemon::{Daemon, call, cli, daemon_home, token, wait_for_state};
use std::path::Path;
use std::time::{Duration, Instant};

/// Two fake 16 GiB GPUs at 2.50 EUR an hour, three runs at a time.
fn two_gpu_home() -> Home {
    daemon_home(
        "max_parallel_runs = 3\n\n[gpus]\ninventory = \"static\"\nprice_per_hour = 2.5\ncurrency = \"EUR\"\ndevices = [{ name = \"Fake GPU\", memory = \"16GiB\" }, { name = \"Fake GPU\", memory = \"16GiB\" }]\n",
    )
}

/// A workflow of one process step running `script` (sh) with `resources`.
fn process_workflow(home: &Home, name: &str, script: &str, resources: &str) {
    process_workflow_with(home, name, script, resources, "");
}

/// The same, with more top-level keys (`executor = "slurm"`).
pub(crate) fn process_workflow_with(
    home: &Home,
    name: &str,
    script: &str,
    resources: &str,
    top: &str,
) {
    let script_path = home.write(&format!("workflows/{name}.sh"), script);
    home.write(
        &format!("workflows/{name}.toml"),
        &format!(
            r#"version = 1
name = "{name}"
{top}

[trigger]
concurrency = "allow"

[[step]]
id = "finetune"
kind = "process"
command = ["sh", "{script}"]
env = {{ MARKERS = "{markers}" }}
resources = {resources}
"#,
            script = script_path.display(),
            markers = home.path("markers").display(),
        ),
    );
    std::fs::create_dir_all(home.path("markers")).unwrap();
}

/// `/metrics` holds every one of `lines`.
pub(crate) fn assert_metrics(d: &Daemon, tok: &str, lines: &[&str]) {
    let metrics = ureq::get(&format!("{}/metrics", d.url))
        .header("Authorization", &format!("Bearer {tok}"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    for line in lines {
        assert!(metrics.contains(line), "no `{line}` in\n{metrics}");
    }
}

pub(crate) fn wait_until<T>(what: &str, d: &Daemon, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "gave up waiting for {what}:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(crate) fn trigger(d: &Daemon, tok: &str, workflow: &str) -> i64 {
    let (s, v) = call(
        "POST",
        &format!("{}/api/v1/workflows/{workflow}/runs", d.url),
        tok,
    );
    assert_eq!(s, 202, "{v}");
    v["run"]["id"].as_i64().unwrap()
}

pub(crate) const TRAINER: &str = r#"set -eu
# A stand-in for a GPU trainer: says what it was given, speaks the progress
# protocol, and holds its GPU until the test lets it finish.
echo "$CUDA_VISIBLE_DEVICES" > "$MARKERS/run-$COACH_RUN.devices"
echo '{"progress": 0.0, "message": "loading"}'
echo "training on GPU $CUDA_VISIBLE_DEVICES"
while [ ! -e "$MARKERS/release" ] && [ ! -e "$MARKERS/release-$COACH_RUN" ]; do sleep 0.05; done
echo '{"metric": "loss", "value": 0.5, "step": 1}'
echo '{"metric": "loss", "value": 0.25, "step": 2}'
echo "weights of run $COACH_RUN" > "$COACH_CHECKPOINT_DIR/model.bin"
echo "{\"artifact\": \"$COACH_CHECKPOINT_DIR/model.bin\"}"
echo '{"progress": 1.0, "message": "done"}'
"#;

#[test]
fn three_one_gpu_steps_share_two_gpus_two_at_a_time() {
    let home = two_gpu_home();
    process_workflow(&home, "finetune", TRAINER, "{ gpus = 1 }");
    let tok = token(&home, "operator");
    let d = Daemon::start(&home);
    let (_, gpus) = call("GET", &format!("{}/api/v1/gpus", d.url), &tok);
    assert_eq!(gpus["source"], "static", "{gpus}");
    assert_eq!(gpus["gpus"].as_array().unwrap().len(), 2, "{gpus}");

    let runs: Vec<i64> = (0..3).map(|_| trigger(&d, &tok, "finetune")).collect();
    let markers = home.path("markers");
    let started = |markers: &Path| -> Vec<(i64, String)> {
        runs.iter()
            .filter_map(|r| {
                let text =
                    std::fs::read_to_string(markers.join(format!("run-{r}.devices"))).ok()?;
                Some((*r, text.trim().to_owned()))
            })
            .collect()
    };
    // Two start, on different GPUs; the third waits, and says why.
    let waiting = wait_until("two running and one waiting", &d, || {
        let (_, q) = call("GET", &format!("{}/api/v1/queue", d.url), &tok);
        let w = q["waiting"].as_array()?.clone();
        (started(&markers).len() == 2 && w.len() == 1 && q["running"].as_array()?.len() == 2)
            .then_some(w)
    });
    std::thread::sleep(Duration::from_millis(300));
    let first = started(&markers);
    assert_eq!(first.len(), 2, "still only two running: {first:?}");
    let mut devices: Vec<&str> = first.iter().map(|(_, d)| d.as_str()).collect();
    devices.sort();
    assert_eq!(devices, ["0", "1"], "distinct CUDA_VISIBLE_DEVICES");
    let w = &waiting[0];
    assert_eq!(w["position"], 1);
    assert_eq!(w["step"], "finetune");
    assert_eq!(w["reason"], "needs 1 GPU on one node, 0 free", "{w}");
    let third = runs
        .iter()
        .find(|r| !first.iter().any(|(f, _)| f == *r))
        .copied()
        .unwrap();
    assert_eq!(w["run"], third);
    // So do the metrics.
    assert_metrics(
        &d,
        &tok,
        &[
            "coach_gpu_allocations{gpu=\"0\",name=\"Fake GPU\"} 1",
            "coach_gpu_allocations{gpu=\"1\",name=\"Fake GPU\"} 1",
            "coach_gpu_queue_waiting 1",
        ],
    );
    // `coach queue` shows the same.
    let out = cli(&home, &d.url, &tok, &["queue"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        text.contains(&format!("1. run {third} step finetune"))
            && text.contains("needs 1 GPU on one node, 0 free"),
        "{text}"
    );

    // Let them finish: the third gets a GPU and runs.
    std::fs::write(markers.join("release"), "").unwrap();
    for r in &runs {
        assert_trained(&wait_for_state(
            &d,
            &tok,
            *r,
            &["succeeded", "failed", "cancelled"],
        ));
    }
    assert_eq!(started(&markers).len(), 3);
    let (_, q) = call("GET", &format!("{}/api/v1/queue", d.url), &tok);
    assert_eq!(q["waiting"].as_array().unwrap().len(), 0, "{q}");
    assert_eq!(q["running"].as_array().unwrap().len(), 0, "{q}");

    // The dashboard's overview counts the GPU-hours the three held this
    // month, and what they cost at the configured price.
    let mut b = crate::dashboard::Browser::new(&d.url);
    assert_eq!(b.sign_in(&tok).status, 303);
    let page = b.get("/").body;
    let at = page.find("id=\"gpu-hours\"").expect("the GPU-hours panel");
    let panel = &page[at..at + page[at..].find("</section>").unwrap()];
    assert!(panel.contains("<td>default</td>"), "{panel}");
    assert!(
        panel.contains("cost (EUR)") && panel.contains("2.50 EUR per GPU-hour"),
        "{panel}"
    );
    let hours: f64 = panel
        .split("<td class=\"num\">")
        .nth(1)
        .and_then(|c| c.split('<').next())
        .and_then(|h| h.parse().ok())
        .expect("GPU-hours in the panel");
    assert!(hours > 0.0, "three steps held a GPU each: {panel}");
}

#[test]
fn process_faults_fail_their_step_and_name_why() {
    let home = two_gpu_home();
    // Exits non-zero after garbage protocol lines.
    process_workflow(
        &home,
        "crashes",
        "echo '{\"progress\": 7}'\necho '{oops'\necho 'CUDA out of memory' >&2\nexit 3\n",
        "{ gpus = 1 }",
    );
    // Ignores SIGTERM (and so do its children).
    process_workflow(
        &home,
        "stubborn",
        "trap '' TERM\necho $$ > \"$MARKERS/stubborn.pid\"\nwhile true; do sleep 0.1; done\n",
        "{ gpus = 2 }",
    );
    // Asks for more GPUs than there are: refused at validation.
    process_workflow(&home, "greedy", "exit 0\n", "{ gpus = 3 }");
    let out = home.coach(&[
        "validate",
        &home.path("workflows/greedy.toml").display().to_string(),
    ]);
    out.expect_failure_with("greedy.toml:");
    out.expect_failure_with(
        "step `finetune` can never run here: it needs 3 GPUs on one node; the largest node has 2 healthy",
    );
    let tok = token(&home, "operator");
    let d = Daemon::start(&home);
    let (_, g) = call("GET", &format!("{}/api/v1/workflows/greedy", d.url), &tok);
    assert_eq!(g["valid"], false, "{g}");

    let crash = trigger(&d, &tok, "crashes");
    let v = wait_for_state(&d, &tok, crash, &["succeeded", "failed"]);
    assert_eq!(v["state"], "failed");
    let err = v["error"].as_str().unwrap();
    assert!(
        err.contains("exited with status 3") && err.contains("CUDA out of memory"),
        "{err}"
    );
    let (_, logs) = call("GET", &format!("{}/api/v1/runs/{crash}/logs", d.url), &tok);
    let lines: Vec<&str> = logs["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["message"].as_str())
        .collect();
    assert!(
        lines.iter().any(|l| l.starts_with(
            "stdout line 1 breaks the progress protocol (`progress` must be a number from 0 to 1"
        )) && lines
            .iter()
            .any(|l| l.starts_with("stdout line 2 breaks the progress protocol (not JSON")),
        "{lines:?}"
    );

    let pid = cancel_when_started(&d, &tok, &home, "stubborn", "stubborn.pid");
    // SIGKILL after the grace period took it and its children.
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "process {pid} outlived its cancelled step"
    );
    // Its GPUs are free again.
    let (_, q) = call("GET", &format!("{}/api/v1/queue", d.url), &tok);
    assert_eq!(q["running"].as_array().unwrap().len(), 0, "{q}");
}

#[test]
fn a_gpu_that_turns_unhealthy_is_drained_and_its_work_runs_on() {
    let home = two_gpu_home();
    process_workflow(&home, "finetune", TRAINER, "{ gpus = 1 }");
    let tok = token(&home, "operator");
    let d = Daemon::start(&home);
    let markers = home.path("markers");
    let devices_of = |run: i64| {
        std::fs::read_to_string(markers.join(format!("run-{run}.devices")))
            .ok()
            .map(|s| s.trim().to_owned())
    };
    let a = trigger(&d, &tok, "finetune");
    let gpu_a = wait_until("run A on a GPU", &d, || devices_of(a));
    // The operator drains A's GPU (the config is watched and reloaded).
    let healthy = "{ name = \"Fake GPU\", memory = \"16GiB\" }";
    let drained = "{ name = \"Fake GPU\", memory = \"16GiB\", healthy = false }";
    let config = std::fs::read_to_string(&home.config).unwrap();
    let set = |index: &str, entry: &str| {
        let list = if index == "0" {
            format!("[{entry}, {healthy}]")
        } else {
            format!("[{healthy}, {entry}]")
        };
        std::fs::write(
            &home.config,
            config.replace(&format!("[{healthy}, {healthy}]"), &list),
        )
        .unwrap();
    };
    set(&gpu_a, drained);
    wait_until("the GPU drained", &d, || {
        let (_, g) = call("GET", &format!("{}/api/v1/gpus", d.url), &tok);
        let gpu = g["gpus"]
            .as_array()?
            .iter()
            .find(|x| x["index"] == gpu_a.as_str())?
            .clone();
        (gpu["healthy"] == false).then_some(gpu)
    });
    // B gets the other GPU; C waits, though A's GPU is about to be free.
    let b = trigger(&d, &tok, "finetune");
    let gpu_b = wait_until("run B on a GPU", &d, || devices_of(b));
    assert_ne!(gpu_a, gpu_b);
    let c = trigger(&d, &tok, "finetune");
    std::fs::write(markers.join(format!("release-{a}")), "").unwrap();
    let v = wait_for_state(&d, &tok, a, &["succeeded", "failed"]);
    assert_eq!(
        v["state"], "succeeded",
        "work on a drained GPU runs on: {v}"
    );
    // A's GPU is free but drained: C still waits.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(devices_of(c), None, "C must not start on the drained GPU");
    let (_, q) = call("GET", &format!("{}/api/v1/queue", d.url), &tok);
    assert_eq!(q["waiting"][0]["run"], c, "{q}");
    std::fs::write(markers.join("release"), "").unwrap();
    // C gets B's GPU, never the drained one.
    let v = wait_for_state(&d, &tok, c, &["succeeded", "failed"]);
    assert_eq!(v["state"], "succeeded", "{v}");
    assert_eq!(devices_of(c).as_deref(), Some(gpu_b.as_str()));
}

#[test]
fn the_shipped_hugging_face_example_runs_dry_on_a_declared_gpu() {
    let home = Home::new(
        "\n[gpus]\ninventory = \"static\"\ndevices = [{ name = \"Fake GPU\", memory = \"16GiB\" }]\n",
    );
    let wf = crate::common::workspace().join("workflows/gpu/finetune.toml");
    let out = home.coach(&["run", wf.to_str().unwrap()]);
    out.expect_ok();
    let text = out.all();
    assert!(
        text.contains("dry run: CUDA_VISIBLE_DEVICES=0")
            && text.contains("eval_accuracy = 0.9000 (epoch 3)")
            && text.contains("on GPU 0, 6 metric values, 1 artifact file(s)"),
        "{text}"
    );
}

#[test]
fn a_relative_data_directory_gives_commands_an_absolute_checkpoint_folder() {
    // Commands run in their workflow's folder; the checkpoint folder must
    // still be the one under the data directory, not a copy beside the
    // workflow.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("coach.toml"), "data_dir = \"state\"\n").unwrap();
    std::fs::create_dir_all(dir.path().join("flows")).unwrap();
    std::fs::write(
        dir.path().join("flows/save.toml"),
        r#"version = 1
name = "save"

[[step]]
id = "save"
kind = "process"
command = ["sh", "-c", "case \"$COACH_CHECKPOINT_DIR\" in /*) echo saved > \"$COACH_CHECKPOINT_DIR/mark\";; *) exit 3;; esac"]
"#,
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_coach-cli"))
        .current_dir(dir.path())
        .args(["--config", "coach.toml", "run", "flows/save.toml"])
        .env_remove("COACH_DATA_DIR")
        .env_remove("COACH_DATABASE_URL")
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{all}");
    assert!(
        dir.path().join("state/work/run-1/save/mark").is_file(),
        "{all}"
    );
    assert!(!dir.path().join("flows/state").exists(), "{all}");
}

/// Run `v` of a [`TRAINER`] succeeded, with its metrics and artifact.
pub(crate) fn assert_trained(v: &serde_json::Value) {
    assert_eq!(v["state"], "succeeded", "{v}");
    let losses: Vec<f64> = v["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["name"] == "loss")
        .map(|m| m["value"].as_f64().unwrap())
        .collect();
    assert_eq!(losses, [0.5, 0.25], "{v}");
    let last = v["steps"].as_array().and_then(|s| s.last()).unwrap();
    assert_eq!(
        last["output"]["artifacts"][0]["bytes"],
        format!("weights of run {}\n", v["id"]).len(),
        "{v}"
    );
}

/// Saves a checkpoint when told to stop (SIGTERM), and says what it
/// resumed from.
const RESUMABLE: &str = r#"set -eu
ckpt="$COACH_CHECKPOINT_DIR/state"
if [ -e "$ckpt" ]; then echo "{\"metric\": \"resumed_from\", \"value\": $(cat "$ckpt")}"; fi
trap 'echo 3 > "$ckpt"; exit 143' TERM
echo "$CUDA_VISIBLE_DEVICES" > "$MARKERS/run-$COACH_RUN.devices"
while [ ! -e "$MARKERS/release-$COACH_RUN" ]; do sleep 0.05; done
echo '{"metric": "loss", "value": 0.1}'
"#;

/// A `nightly` workflow of low-priority preemptible work on `gpus` GPUs, a
/// critical `hotfix` on one (`top`: their executor), and a daemon with
/// `nightly` running: the daemon, a token and the nightly run.
pub(crate) fn start_preemptible(home: &Home, gpus: u32, top: &str) -> (Daemon, String, i64) {
    process_workflow_with(
        home,
        "nightly",
        RESUMABLE,
        &format!("{{ gpus = {gpus} }}\npriority = \"low\"\npreemptible = true"),
        top,
    );
    process_workflow_with(
        home,
        "hotfix",
        TRAINER,
        "{ gpus = 1 }\npriority = \"critical\"",
        top,
    );
    let tok = token(home, "operator");
    let d = Daemon::start(home);
    let low = trigger(&d, &tok, "nightly");
    wait_started(&d, home, low);
    (d, tok, low)
}

/// Wait for `run`'s trainer to start, and take its marker away so that
/// a start again is seen.
pub(crate) fn wait_started(d: &Daemon, home: &Home, run: i64) {
    let marker = home.path(&format!("markers/run-{run}.devices"));
    wait_until(&format!("run {run} started"), d, || {
        marker.exists().then_some(())
    });
    std::fs::remove_file(marker).unwrap();
}

/// The preempted run `low`, once started again, is let finish, and
/// succeeds after resuming from the checkpoint it saved.
pub(crate) fn finish_resumed(d: &Daemon, tok: &str, home: &Home, low: i64) {
    let marker = home.path(&format!("markers/run-{low}.devices"));
    wait_until("the preempted step running again", d, || {
        marker.exists().then_some(())
    });
    std::fs::write(home.path(&format!("markers/release-{low}")), "").unwrap();
    assert_resumed(&wait_for_state(d, tok, low, &["succeeded", "failed"]));
}

fn assert_resumed(v: &serde_json::Value) {
    assert_eq!(v["state"], "succeeded", "{v}");
    let names: Vec<&str> = v["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert_eq!(names, ["resumed_from", "loss"], "{v}");
    assert_eq!(v["metrics"][0]["value"], 3.0, "{v}");
}

/// Trigger `workflow`, whose process writes its pid to `markers/<pid>`,
/// cancel it once that is there, and wait for the run to end cancelled;
/// the pid.
pub(crate) fn cancel_when_started(
    d: &Daemon,
    tok: &str,
    home: &Home,
    workflow: &str,
    pid: &str,
) -> u32 {
    let run = trigger(d, tok, workflow);
    let pid_file = home.path(&format!("markers/{pid}"));
    let pid: u32 = wait_until("the process started", d, || {
        std::fs::read_to_string(&pid_file).ok()?.trim().parse().ok()
    });
    let (s, _) = call("POST", &format!("{}/api/v1/runs/{run}/cancel", d.url), tok);
    assert_eq!(s, 202);
    let v = wait_for_state(d, tok, run, &["cancelled", "failed", "succeeded"]);
    assert_eq!(v["state"], "cancelled", "{v}");
    pid
}

#[test]
fn critical_work_preempts_a_preemptible_step_which_resumes_from_its_checkpoint() {
    let home = daemon_home(
        "max_parallel_runs = 3\n\n[gpus]\ninventory = \"static\"\ndevices = [{ name = \"Fake GPU\", memory = \"16GiB\" }]\n",
    );
    let (d, tok, low) = start_preemptible(&home, 1, "");
    let markers = home.path("markers");
    let critical = trigger(&d, &tok, "hotfix");
    // The critical step takes the GPU; the preempted one waits behind it.
    wait_until("the critical step on the GPU", &d, || {
        markers
            .join(format!("run-{critical}.devices"))
            .exists()
            .then_some(())
    });
    // It asks again as soon as its process has stopped.
    wait_until("the preempted step waiting", &d, || {
        let (_, q) = call("GET", &format!("{}/api/v1/queue", d.url), &tok);
        (q["waiting"][0]["run"] == low).then_some(())
    });
    assert!(!markers.join(format!("run-{low}.devices")).exists());
    std::fs::write(markers.join(format!("release-{critical}")), "").unwrap();
    let v = wait_for_state(&d, &tok, critical, &["succeeded", "failed"]);
    assert_eq!(v["state"], "succeeded", "{v}");
    // Then the preempted step runs again, from its checkpoint.
    finish_resumed(&d, &tok, &home, low);
    let (_, logs) = call("GET", &format!("{}/api/v1/runs/{low}/logs", d.url), &tok);
    assert!(
        logs["lines"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["message"]
                .as_str()
                .unwrap_or("")
                .starts_with("preempted by higher-priority work on GPU 0")),
        "{logs}"
    );
}

#[test]
fn a_process_steps_artifacts_register_as_a_model_version() {
    let home = two_gpu_home();
    let script = home.write("workflows/finetune.sh", TRAINER);
    std::fs::create_dir_all(home.path("markers")).unwrap();
    std::fs::write(home.path("markers/release"), "").unwrap();
    home.write(
        "workflows/finetune.toml",
        &format!(
            r#"version = 1
name = "finetune"

[[step]]
id = "finetune"
kind = "process"
command = ["sh", "{script}"]
env = {{ MARKERS = "{markers}" }}
resources = {{ gpus = 1 }}

[[step]]
id = "register"
kind = "register"
needs = ["finetune"]
with = {{ name = "support-llm" }}
"#,
            script = script.display(),
            markers = home.path("markers").display(),
        ),
    );
    let tok = token(&home, "operator");
    let d = Daemon::start(&home);
    let run = trigger(&d, &tok, "finetune");
    let v = wait_for_state(&d, &tok, run, &["succeeded", "failed"]);
    assert_eq!(v["state"], "succeeded", "{v}");
    let (s, m) = call("GET", &format!("{}/api/v1/models/support-llm", d.url), &tok);
    assert_eq!(s, 200, "{m}");
    assert_eq!(m["version"], 1, "{m}");
    assert_eq!(m["run"], run, "{m}");
    assert_eq!(m["trainer"]["plugin"], "process", "{m}");
    assert_eq!(m["trainer"]["version"], "sh", "{m}");
    assert_eq!(m["metrics"]["loss"], 0.25, "the last value: {m}");
    assert_eq!(
        m["artifact"]["bytes"],
        format!("weights of run {run}\n").len(),
        "{m}"
    );
    // Coach keeps it, but does not pretend to serve it.
    let out = home.coach(&["predict", "--model", "support-llm", "hello"]);
    out.expect_failure_with("is the artifacts of a process step, not a model Coach can load");
    // A second run registers version 2, with its own weights.
    let again = trigger(&d, &tok, "finetune");
    wait_for_state(&d, &tok, again, &["succeeded", "failed"]);
    let (_, m2) = call("GET", &format!("{}/api/v1/models/support-llm", d.url), &tok);
    assert_eq!(m2["version"], 2, "{m2}");
    assert_ne!(
        m2["artifact"]["sha256"], m["artifact"]["sha256"],
        "weights differ by run: {m2}"
    );
}

#[test]
fn three_process_steps_of_one_run_share_two_gpus_two_at_a_time() {
    let home = two_gpu_home();
    // A sweep: three trainers, each writing its own markers.
    let script = home.write(
        "workflows/sweep.sh",
        r#"set -eu
echo "$CUDA_VISIBLE_DEVICES" > "$MARKERS/$COACH_STEP.devices"
while [ ! -e "$MARKERS/release" ]; do sleep 0.05; done
echo "{\"metric\": \"loss\", \"value\": 0.5}"
"#,
    );
    std::fs::create_dir_all(home.path("markers")).unwrap();
    let step = |id: &str| {
        format!(
            "[[step]]\nid = \"{id}\"\nkind = \"process\"\ncommand = [\"sh\", \"{}\"]\nenv = {{ MARKERS = \"{}\" }}\nresources = {{ gpus = 1 }}\n\n",
            script.display(),
            home.path("markers").display()
        )
    };
    home.write(
        "workflows/sweep.toml",
        &format!(
            "version = 1\nname = \"sweep\"\n\n{}{}{}",
            step("lr-1e-4"),
            step("lr-3e-4"),
            step("lr-1e-3")
        ),
    );
    let tok = token(&home, "operator");
    let d = Daemon::start(&home);
    let run = trigger(&d, &tok, "sweep");
    let markers = home.path("markers");
    let started = || -> Vec<(String, String)> {
        ["lr-1e-4", "lr-3e-4", "lr-1e-3"]
            .iter()
            .filter_map(|s| {
                let d = std::fs::read_to_string(markers.join(format!("{s}.devices"))).ok()?;
                Some((s.to_string(), d.trim().to_owned()))
            })
            .collect()
    };
    let waiting = wait_until("two steps running and one waiting", &d, || {
        let (_, q) = call("GET", &format!("{}/api/v1/queue", d.url), &tok);
        let w = q["waiting"].as_array()?.clone();
        (started().len() == 2 && w.len() == 1).then_some(w)
    });
    let mut devices: Vec<String> = started().into_iter().map(|(_, d)| d).collect();
    devices.sort();
    assert_eq!(devices, ["0", "1"], "distinct CUDA_VISIBLE_DEVICES");
    assert_eq!(waiting[0]["run"], run);
    assert_eq!(waiting[0]["reason"], "needs 1 GPU on one node, 0 free");
    std::fs::write(markers.join("release"), "").unwrap();
    let v = wait_for_state(&d, &tok, run, &["succeeded", "failed", "cancelled"]);
    assert_eq!(v["state"], "succeeded", "{v}");
    assert_eq!(started().len(), 3);
    assert_eq!(v["metrics"].as_array().unwrap().len(), 3, "{v}");
}
