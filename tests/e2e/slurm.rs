//! Process steps placed by a real Slurm: the single-node cluster with two
//! fake GPUs that the shared recipe starts (`slurm-local-up.sh`), driven
//! by a real daemon through `sbatch`, `scontrol`, `sacct` and `scancel`.
//!
//! The recipe is found at `../shared/recipes/slurm` beside the workspace,
//! or at `COACH_SLURM_RECIPE`; without it these tests skip and say so.
//! One cluster serves them all, one test at a time.

use crate::common::{Home, workspace};
use crate::daemon::{Daemon, call, cli, daemon_home, token, wait_for_state};
use crate::gpus::{
    TRAINER, assert_metrics, assert_trained, cancel_when_started, finish_resumed,
    process_workflow_with, start_preemptible, trigger, wait_until,
};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

/// The cluster, while a test holds it.
pub(crate) struct Cluster {
    base: PathBuf,
    _turn: MutexGuard<'static, ()>,
}

impl Cluster {
    pub(crate) fn conf(&self) -> PathBuf {
        self.base.join("etc/slurm.conf")
    }

    fn client(&self, program: &str, args: &[&str]) -> String {
        let out = Command::new("timeout")
            .arg("10")
            .arg(program)
            .args(args)
            .env("SLURM_CONF", self.conf())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Stop the controller (its state is saved; jobs on the node run on).
    fn stop_controller(&self) {
        let pid = std::fs::read_to_string(self.base.join("slurmctld.pid")).unwrap();
        Command::new("kill").arg(pid.trim()).status().unwrap();
        wait_for("slurmctld to stop", || {
            !Path::new(&format!("/proc/{}", pid.trim())).exists()
        });
    }

    fn start_controller(&self) {
        let ok = Command::new("/usr/sbin/slurmctld")
            .arg("-f")
            .arg(self.conf())
            .env("SLURM_CONF", self.conf())
            .status()
            .unwrap()
            .success();
        assert!(ok, "slurmctld did not start again");
        wait_for("slurmctld to answer", || {
            !self.client("sinfo", &["-h", "-o", "%T"]).trim().is_empty()
        });
    }
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "gave up waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn recipe() -> Option<PathBuf> {
    let dir = std::env::var_os("COACH_SLURM_RECIPE")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("../shared/recipes/slurm"));
    dir.join("slurm-local-up.sh").is_file().then_some(dir)
}

/// Start the cluster once (or find it running), and take this test's turn
/// on it. `None`: no recipe here; the caller skips.
pub(crate) fn cluster() -> Option<Cluster> {
    static TURN: Mutex<()> = Mutex::new(());
    static UP: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let Some(recipe) = recipe() else {
        eprintln!("skipping: no Slurm recipe at ../shared/recipes/slurm (set COACH_SLURM_RECIPE)");
        return None;
    };
    let turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let base = UP
        .get_or_init(|| {
            let base = std::env::temp_dir().join("coach-slurm-test");
            let out = Command::new("bash")
                .arg(recipe.join("slurm-local-up.sh"))
                .env("BASE", &base)
                .env("NGPU", "2")
                .output()
                .map_err(|e| e.to_string())?;
            if !out.status.success() {
                return Err(format!(
                    "slurm-local-up.sh failed:\n{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            Ok(base)
        })
        .clone()
        .unwrap_or_else(|e| panic!("{e}"));
    let c = Cluster { base, _turn: turn };
    // A controller an earlier test stopped, or a queue it left behind.
    if c.client("sinfo", &["-h", "-o", "%T"]).trim().is_empty() {
        c.start_controller();
    }
    // Jobs a failed test left behind.
    let left = c.client("squeue", &["-h", "-o", "%i"]);
    let left: Vec<&str> = left.split_whitespace().collect();
    if !left.is_empty() {
        c.client("scancel", &left);
    }
    wait_for("an empty Slurm queue", || {
        c.client("squeue", &["-h"]).trim().is_empty()
    });
    Some(c)
}

/// A daemon home whose process steps go to `cluster`, followed closely.
fn slurm_home(cluster: &Cluster, extra: &str) -> Home {
    daemon_home(&format!(
        "max_parallel_runs = 3\n\n[slurm]\nconf = \"{}\"\npoll = \"200ms\"\ncommand_timeout = \"3s\"\n{extra}",
        cluster.conf().display()
    ))
}

fn log_lines(d: &Daemon, tok: &str, run: i64) -> Vec<String> {
    let (_, logs) = call("GET", &format!("{}/api/v1/runs/{run}/logs", d.url), tok);
    logs["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["message"].as_str().map(str::to_owned))
        .collect()
}

const SLURM: &str = "executor = \"slurm\"";

#[test]
fn the_gpu_workflow_runs_through_slurm_with_its_metrics_in_coach() {
    let Some(cluster) = cluster() else { return };
    let home = slurm_home(&cluster, "");
    process_workflow_with(&home, "finetune", TRAINER, "{ gpus = 1 }", SLURM);
    let tok = token(&home, "operator");
    let d = Daemon::start(&home);
    let markers = home.path("markers");
    let runs: Vec<i64> = (0..3).map(|_| trigger(&d, &tok, "finetune")).collect();
    let devices_of = |run: i64| {
        std::fs::read_to_string(markers.join(format!("run-{run}.devices")))
            .ok()
            .map(|s| s.trim().to_owned())
    };
    // Slurm runs two at a time on its two GPUs; the third job waits in
    // Slurm's queue, and the run's log says so.
    let first: Vec<(i64, String)> = wait_until("two jobs running in Slurm", &d, || {
        let on: Vec<(i64, String)> = runs
            .iter()
            .filter_map(|r| Some((*r, devices_of(*r)?)))
            .collect();
        (on.len() == 2).then_some(on)
    });
    let mut devices: Vec<&str> = first.iter().map(|(_, d)| d.as_str()).collect();
    devices.sort();
    assert_eq!(
        devices,
        ["0", "1"],
        "distinct CUDA_VISIBLE_DEVICES from Slurm"
    );
    let third = *runs
        .iter()
        .find(|r| !first.iter().any(|(f, _)| f == *r))
        .unwrap();
    wait_until("the third job pending for a GPU", &d, || {
        log_lines(&d, &tok, third)
            .into_iter()
            .find(|l| l.ends_with("is pending (Resources)"))
    });
    // `coach queue` and /metrics show the jobs with Slurm's word on them.
    let (_, q) = call("GET", &format!("{}/api/v1/queue", d.url), &tok);
    let jobs = q["slurm"].as_array().unwrap();
    assert_eq!(jobs.len(), 3, "{q}");
    let pending = jobs.iter().find(|j| j["run"] == third).unwrap();
    assert_eq!(
        (pending["state"].as_str(), pending["reason"].as_str()),
        (Some("pending"), Some("Resources")),
        "{q}"
    );
    let out = cli(&home, &d.url, &tok, &["queue"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "run {third} step finetune (finetune): 1 GPU(s), pending (Resources)"
        )),
        "{text}"
    );
    assert_metrics(
        &d,
        &tok,
        &[
            "coach_slurm_jobs{state=\"running\"} 2",
            "coach_slurm_jobs{state=\"pending\"} 1",
        ],
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(devices_of(third), None, "the third job must wait for a GPU");

    std::fs::write(markers.join("release"), "").unwrap();
    let mut jobs = Vec::new();
    for r in &runs {
        let v = wait_for_state(&d, &tok, *r, &["succeeded", "failed", "cancelled"]);
        assert_trained(&v);
        let out = &v["steps"][0]["output"];
        assert_eq!(out["executor"], "slurm", "{v}");
        let job = out["slurm_job"].as_u64().expect("a Slurm job id");
        let logs = log_lines(&d, &tok, *r);
        assert!(
            logs.iter()
                .any(|l| l == &format!("submitted to Slurm as job {job} (1 GPU)")),
            "{logs:?}"
        );
        jobs.push(job);
    }
    assert!(devices_of(third).is_some());
    // Slurm's own word on the jobs.
    let listed = cluster.client("scontrol", &["-o", "show", "job", &jobs[0].to_string()]);
    assert!(
        listed.contains("JobState=COMPLETED") && listed.contains("coach-r"),
        "{listed}"
    );
}

#[test]
fn slurm_failures_and_cancels_reach_the_run() {
    let Some(cluster) = cluster() else { return };
    let home = slurm_home(&cluster, "");
    process_workflow_with(
        &home,
        "crashes",
        "echo '{\"metric\": \"loss\", \"value\": 9.5}'\necho '{oops'\necho 'CUDA out of memory' >&2\nexit 3\n",
        "{ gpus = 1 }",
        SLURM,
    );
    process_workflow_with(
        &home,
        "endless",
        "echo $$ > \"$MARKERS/endless.pid\"\nwhile true; do sleep 0.1; done\n",
        "{ gpus = 2 }",
        SLURM,
    );
    process_workflow_with(&home, "greedy", "exit 0\n", "{ gpus = 5 }", SLURM);
    let tok = token(&home, "operator");
    let d = Daemon::start(&home);

    let crash = trigger(&d, &tok, "crashes");
    let v = wait_for_state(&d, &tok, crash, &["succeeded", "failed"]);
    assert_eq!(v["state"], "failed", "{v}");
    let err = v["error"].as_str().unwrap();
    assert!(
        err.contains("ended FAILED (exit status 3, NonZeroExitCode)")
            && err.contains("CUDA out of memory"),
        "{err}"
    );
    // What it reported before it failed is kept.
    assert_eq!(v["metrics"][0]["value"], 9.5, "{v}");
    assert!(
        log_lines(&d, &tok, crash)
            .iter()
            .any(|l| l.starts_with("stdout line 2 breaks the progress protocol (not JSON")),
    );

    // More GPUs than the cluster has: Slurm refuses it, the step says so.
    let greedy = trigger(&d, &tok, "greedy");
    let v = wait_for_state(&d, &tok, greedy, &["succeeded", "failed"]);
    assert_eq!(v["state"], "failed", "{v}");
    let err = v["error"].as_str().unwrap();
    assert!(err.contains("Slurm refused the job"), "{err}");

    let pid = cancel_when_started(&d, &tok, &home, "endless", "endless.pid");
    wait_for("the cancelled job's process to end", || {
        !Path::new(&format!("/proc/{pid}")).exists()
    });
    assert_eq!(cluster.client("squeue", &["-h"]).trim(), "");
}

#[test]
fn a_step_waits_out_slurm_being_down_and_the_daemon_stays_up() {
    let Some(cluster) = cluster() else { return };
    let home = slurm_home(&cluster, "");
    process_workflow_with(&home, "finetune", TRAINER, "{ gpus = 1 }", SLURM);
    std::fs::write(home.path("markers/release"), "").unwrap();
    let tok = token(&home, "operator");
    let d = Daemon::start(&home);
    cluster.stop_controller();
    let run = trigger(&d, &tok, "finetune");
    let said = wait_until("the step to say Slurm is down", &d, || {
        log_lines(&d, &tok, run)
            .into_iter()
            .find(|l| l.starts_with("Slurm is not answering"))
    });
    assert!(said.contains("the step waits and tries again"), "{said}");
    // The daemon answers meanwhile.
    let (s, v) = call("GET", &format!("{}/api/v1/runs/{run}", d.url), &tok);
    assert_eq!((s, v["state"].as_str()), (200, Some("running")), "{v}");
    let (s, _) = call("GET", &format!("{}/healthz", d.url), "");
    assert_eq!(s, 200);
    cluster.start_controller();
    let v = wait_for_state(&d, &tok, run, &["succeeded", "failed"]);
    assert_eq!(v["state"], "succeeded", "{v}");
}

#[test]
fn a_killed_daemon_finds_its_slurm_job_and_local_process_again() {
    let Some(cluster) = cluster() else { return };
    let home = slurm_home(
        &cluster,
        "\n[gpus]\ninventory = \"static\"\ndevices = [{ name = \"Fake GPU\", memory = \"16GiB\" }]\n",
    );
    process_workflow_with(&home, "remote", TRAINER, "{ gpus = 1 }", SLURM);
    // The local trainer leaves a child behind in its group, as real ones
    // (data loaders) do.
    let local = format!("sleep 600 &\necho $! > \"$MARKERS/child-$COACH_RUN.pid\"\n{TRAINER}");
    process_workflow_with(&home, "local", &local, "{ gpus = 1 }", "");
    let tok = token(&home, "operator");
    let d = Daemon::start(&home);
    let markers = home.path("markers");
    let remote = trigger(&d, &tok, "remote");
    let local = trigger(&d, &tok, "local");
    for r in [remote, local] {
        wait_until("both trainers running", &d, || {
            markers
                .join(format!("run-{r}.devices"))
                .exists()
                .then_some(())
        });
    }
    let child: u32 = wait_until("the local trainer's child", &d, || {
        std::fs::read_to_string(markers.join(format!("child-{local}.pid")))
            .ok()?
            .trim()
            .parse()
            .ok()
    });
    let (_, v) = call("GET", &format!("{}/api/v1/runs/{remote}", d.url), &tok);
    let logs = log_lines(&d, &tok, remote);
    let job: u64 = logs
        .iter()
        .find_map(|l| {
            l.strip_prefix("submitted to Slurm as job ")?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("{v}\n{logs:?}"));
    d.kill9();
    // The local process group outlives the daemon killed outright...
    assert!(Path::new(&format!("/proc/{child}")).exists());
    std::fs::remove_file(markers.join(format!("run-{local}.devices"))).unwrap();
    let d = Daemon::start(&home);
    // ...until the daemon comes back and stops it.
    wait_for("the orphaned process group to be stopped", || {
        !Path::new(&format!("/proc/{child}")).exists()
    });
    assert!(
        d.log().contains("left over from before the restart"),
        "{}",
        d.log()
    );
    // The local step runs again on the GPU; the Slurm job is followed, not
    // submitted again.
    wait_until("the local step running again", &d, || {
        markers
            .join(format!("run-{local}.devices"))
            .exists()
            .then_some(())
    });
    std::fs::write(markers.join("release"), "").unwrap();
    for r in [remote, local] {
        let v = wait_for_state(&d, &tok, r, &["succeeded", "failed", "cancelled"]);
        assert_eq!(v["state"], "succeeded", "{v}");
    }
    let (_, v) = call("GET", &format!("{}/api/v1/runs/{remote}", d.url), &tok);
    assert_eq!(v["steps"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(v["steps"][1]["output"]["slurm_job"], job, "{v}");
    let logs = log_lines(&d, &tok, remote);
    assert!(
        logs.iter().any(|l| l
            == &format!("following Slurm job {job} again (submitted before the daemon stopped)")),
        "{logs:?}"
    );
    assert_eq!(
        logs.iter()
            .filter(|l| l.starts_with("submitted to Slurm"))
            .count(),
        1,
        "{logs:?}"
    );
    let losses: Vec<f64> = v["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_f64().unwrap())
        .collect();
    assert_eq!(losses, [0.5, 0.25], "{v}");
}

#[test]
fn slurm_preempts_and_requeues_a_preemptible_step_which_resumes() {
    let Some(cluster) = cluster() else { return };
    // The recipe's `urgent` partition preempts (requeues) `debug` work.
    let home = slurm_home(&cluster, "partitions = { critical = \"urgent\" }\n");
    let (d, tok, low) = start_preemptible(&home, 2, SLURM);
    let markers = home.path("markers");
    let critical = trigger(&d, &tok, "hotfix");
    std::fs::write(markers.join(format!("release-{critical}")), "").unwrap();
    let v = wait_for_state(&d, &tok, critical, &["succeeded", "failed"]);
    assert_eq!(v["state"], "succeeded", "{v}");
    // Requeued by Slurm, the low job waits out Slurm's requeue delay (two
    // minutes; the operator lets it start now) and runs again, resuming.
    let job = wait_until("the requeued job waiting", &d, || {
        log_lines(&d, &tok, low).into_iter().find_map(|l| {
            l.strip_suffix(" is pending (BeginTime)")?
                .strip_prefix("Slurm job ")?
                .parse::<u64>()
                .ok()
        })
    });
    cluster.client(
        "scontrol",
        &["update", &format!("JobId={job}"), "StartTime=now"],
    );
    finish_resumed(&d, &tok, &home, low);
}

#[test]
fn bench_submit_measures_coach_and_slurm_side_by_side() {
    let Some(cluster) = cluster() else { return };
    let home = Home::new("");
    let conf = cluster.conf().display().to_string();
    let run = home.coach(&[
        "bench",
        "submit",
        "--jobs",
        "200",
        "--clients",
        "4",
        "--slurm-jobs",
        "40",
        "--slurm-conf",
        &conf,
        "--json",
    ]);
    run.expect_ok();
    let v: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(v["coach"]["accepted"], 200, "{v}");
    assert_eq!(v["slurm"]["accepted"], 40, "{v}");
    assert!(v["coach_over_slurm"].as_f64().unwrap() > 0.0, "{v}");
    // The cluster is left as it was.
    wait_for("the bench jobs gone", || {
        cluster
            .client("squeue", &["-h", "--name=coach-bench"])
            .trim()
            .is_empty()
    });
}

#[test]
fn a_clean_daemon_stop_leaves_the_slurm_job_running_to_be_followed_again() {
    let Some(cluster) = cluster() else { return };
    let home = slurm_home(&cluster, "");
    process_workflow_with(&home, "remote", TRAINER, "{ gpus = 1 }", SLURM);
    let tok = token(&home, "operator");
    let d = Daemon::start(&home);
    let run = trigger(&d, &tok, "remote");
    let marker = home.path(&format!("markers/run-{run}.devices"));
    wait_until("the job running", &d, || marker.exists().then_some(()));
    let (status, log) = d.term();
    assert!(status.success(), "{log}");
    // Still in Slurm, running.
    let listed = cluster.client("squeue", &["-h", "-o", "%j %T"]);
    assert_eq!(
        listed.trim(),
        format!("coach-r{run}-finetune RUNNING"),
        "{log}"
    );
    let d = Daemon::start(&home);
    std::fs::write(home.path("markers/release"), "").unwrap();
    let v = wait_for_state(&d, &tok, run, &["succeeded", "failed", "cancelled"]);
    assert_trained(&v);
    let logs = log_lines(&d, &tok, run);
    assert_eq!(
        logs.iter()
            .filter(|l| l.starts_with("submitted to Slurm"))
            .count(),
        1,
        "{logs:?}"
    );
    assert!(
        logs.iter()
            .any(|l| l.starts_with("the daemon is stopping; Slurm job")),
        "{logs:?}"
    );
    assert_eq!(
        v["steps"][0]["error"],
        "step `finetune`: the daemon stopped while it ran; it resumes at the next start",
        "{v}"
    );
}
