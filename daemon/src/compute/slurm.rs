//! Process steps placed by Slurm: submitted with `sbatch --gres=gpu:N`,
//! followed with `scontrol` (and `sacct` once the controller has forgotten
//! the job), cancelled with `scancel`. The job's stdout file carries the
//! same JSON-lines protocol as a local process (`docs/gpus.md`).
//!
//! Every client command runs under `[slurm] command_timeout`: Slurm's
//! commands block while the controller is down, and a step waiting on a
//! dead cluster must say so rather than hang.

use super::process::{Event, Failure, Outcome, Reader};
use crate::config::SlurmSettings;
use crate::core::stop::{RunStop, StopReason};
use crate::core::sync::{Lock, ReadWrite};
use crate::scheduler::gpu::Priority;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// A Slurm client command that did not do its job.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SlurmError {
    #[error("`{command}` did not answer within {timeout:?}; is slurmctld up?")]
    Timeout { command: String, timeout: Duration },
    #[error("cannot run `{command}`: {error}")]
    Spawn { command: String, error: String },
    #[error("`{command}` failed: {stderr}")]
    Failed { command: String, stderr: String },
}

impl SlurmError {
    /// Whether the cluster could not be reached (worth waiting for), as
    /// opposed to refusing what it was asked.
    pub fn unreachable(&self) -> bool {
        match self {
            SlurmError::Timeout { .. } | SlurmError::Spawn { .. } => true,
            SlurmError::Failed { stderr, .. } => {
                let s = stderr.to_ascii_lowercase();
                [
                    "unable to contact slurm controller",
                    "connection refused",
                    "socket timed out",
                    "communication connection failure",
                    "munge",
                ]
                .iter()
                .any(|m| s.contains(m))
            }
        }
    }
}

/// What to submit.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// `--job-name`; Coach finds a job it submitted but did not record by
    /// this name.
    pub name: String,
    pub argv: Vec<String>,
    pub workdir: PathBuf,
    /// Granted environment and Coach's own variables.
    pub env: BTreeMap<String, String>,
    /// Where the batch script, stdout and stderr files go.
    pub dir: PathBuf,
    pub gpus: u32,
    pub cpus: Option<u32>,
    pub memory: Option<u64>,
    pub time_limit: Option<Duration>,
    pub priority: Priority,
    /// The step's queue (organization): picks the account.
    pub queue: String,
    /// Slurm may requeue it (preemption).
    pub requeue: bool,
}

impl Job {
    pub fn stdout(&self, id: u64) -> PathBuf {
        self.dir.join(format!("slurm-{id}.out"))
    }

    pub fn stderr(&self, id: u64) -> PathBuf {
        self.dir.join(format!("slurm-{id}.err"))
    }

    fn script_path(&self) -> PathBuf {
        self.dir.join("slurm-job.sh")
    }
}

/// Quote for a POSIX shell.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The batch script: the granted environment, the working directory, and
/// the command (exec'd, so Slurm's signals reach it).
pub fn batch_script(job: &Job) -> String {
    let mut s = String::from("#!/bin/sh\n# Written by Coach; Slurm runs it.\n");
    for (k, v) in &job.env {
        s.push_str(&format!("export {k}={}\n", sh_quote(v)));
    }
    s.push_str(&format!(
        "cd {} || exit 111\n",
        sh_quote(&job.workdir.display().to_string())
    ));
    s.push_str("exec");
    for a in &job.argv {
        s.push(' ');
        s.push_str(&sh_quote(a));
    }
    s.push('\n');
    s
}

/// `sbatch` arguments for `job` under `settings` (the script path last).
pub fn sbatch_args(job: &Job, settings: &SlurmSettings) -> Vec<String> {
    let mut a = vec![
        "--parsable".to_owned(),
        format!("--job-name={}", job.name),
        format!("--output={}", job.dir.join("slurm-%j.out").display()),
        format!("--error={}", job.dir.join("slurm-%j.err").display()),
        format!("--chdir={}", job.workdir.display()),
        "--export=NONE".to_owned(),
        "--nodes=1".to_owned(),
        if job.requeue {
            "--requeue"
        } else {
            "--no-requeue"
        }
        .to_owned(),
    ];
    if job.gpus > 0 {
        a.push(format!("--gres=gpu:{}", job.gpus));
    }
    if let Some(c) = job.cpus {
        a.push(format!("--cpus-per-task={c}"));
    }
    if let Some(m) = job.memory {
        a.push(format!("--mem={}M", m.div_ceil(1 << 20).max(1)));
    }
    if let Some(t) = job.time_limit {
        a.push(format!("--time={}", t.as_secs().div_ceil(60).max(1)));
    }
    if let Some(p) = settings
        .partitions
        .get(&job.priority)
        .or(settings.partition.as_ref())
    {
        a.push(format!("--partition={p}"));
    }
    if let Some(acct) = settings
        .accounts
        .get(&job.queue)
        .or(settings.account.as_ref())
    {
        a.push(format!("--account={acct}"));
    }
    a.extend(settings.sbatch_args.iter().cloned());
    a.push(job.script_path().display().to_string());
    a
}

/// Where a job stands.
#[derive(Debug, Clone, PartialEq)]
pub enum JobState {
    /// Pending, requeued, suspended…: `state` and Slurm's reason.
    Waiting {
        state: String,
        reason: String,
    },
    Running {
        state: String,
        restarts: u32,
    },
    Completed,
    /// Ended without success.
    Ended {
        state: String,
        reason: String,
        exit_code: i32,
        signal: i32,
    },
    /// Neither the controller nor accounting knows the job.
    Unknown,
}

impl JobState {
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Ended { .. } | JobState::Unknown
        )
    }
}

/// Map a Slurm job state (`JobState=`, `sacct`'s State) to ours.
pub fn job_state(state: &str, reason: &str, exit: &str, restarts: u32) -> JobState {
    // sacct writes `CANCELLED by 0`.
    let state = state.split_whitespace().next().unwrap_or("").to_owned();
    let reason = if reason == "None" || reason == "(null)" {
        String::new()
    } else {
        reason.to_owned()
    };
    let (code, signal) = exit
        .split_once(':')
        .map(|(c, s)| (c.parse().unwrap_or(-1), s.parse().unwrap_or(0)))
        .unwrap_or((-1, 0));
    match state.as_str() {
        "COMPLETED" => JobState::Completed,
        "RUNNING" | "COMPLETING" | "STAGE_OUT" | "SIGNALING" => {
            JobState::Running { state, restarts }
        }
        "PENDING" | "CONFIGURING" | "REQUEUED" | "REQUEUE_FED" | "REQUEUE_HOLD" | "RESIZING"
        | "SUSPENDED" | "STOPPED" | "RESV_DEL_HOLD" | "SPECIAL_EXIT" => {
            JobState::Waiting { state, reason }
        }
        _ => JobState::Ended {
            state,
            reason,
            exit_code: code,
            signal,
        },
    }
}

/// `scontrol -o show job` output: `Key=Value` fields on one line.
pub fn parse_scontrol(text: &str) -> Option<JobState> {
    let line = text.lines().find(|l| l.contains("JobState="))?;
    let field = |key: &str| {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or("")
    };
    Some(job_state(
        field("JobState"),
        field("Reason"),
        field("ExitCode"),
        field("Restarts").parse().unwrap_or(0),
    ))
}

/// A job Coach follows, as `coach queue` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Followed {
    pub job: u64,
    #[serde(flatten)]
    pub owner: super::gpus::Owner,
    pub gpus: u32,
    /// Slurm's state, lower case (`pending`, `running`, …); `unknown`
    /// until it is read, or while Slurm does not answer.
    pub state: String,
    /// Slurm's reason (`Resources`, `Priority`, `BeginTime`), or why the
    /// state is unknown.
    pub reason: String,
    pub since: chrono::DateTime<chrono::Utc>,
}

/// The Slurm client, with its settings (replaced on a config reload), and
/// the jobs being followed.
pub struct Slurm {
    settings: RwLock<SlurmSettings>,
    followed: std::sync::Mutex<BTreeMap<u64, Followed>>,
    /// The last `squeue` over every followed job: when, and each job's
    /// (state, reason). One query serves all the steps that poll.
    live: tokio::sync::Mutex<Option<(Instant, LiveStates)>>,
}

/// Job id → (Slurm state, reason), as `squeue` lists them.
type LiveStates = BTreeMap<u64, (String, String)>;

/// Stops showing a job when its step stops following it.
pub struct Following<'a> {
    slurm: &'a Slurm,
    job: u64,
}

impl Drop for Following<'_> {
    fn drop(&mut self) {
        self.slurm.followed().remove(&self.job);
    }
}

impl Slurm {
    pub fn new(settings: SlurmSettings) -> Slurm {
        Slurm {
            settings: RwLock::new(settings),
            followed: Default::default(),
            live: Default::default(),
        }
    }

    fn followed(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Followed>> {
        self.followed.locked()
    }

    /// Show job `job` of `owner` (in `coach queue`) while the guard lives.
    pub fn follow_as(&self, job: u64, owner: super::gpus::Owner, gpus: u32) -> Following<'_> {
        self.followed().insert(
            job,
            Followed {
                job,
                owner,
                gpus,
                state: "unknown".into(),
                reason: String::new(),
                since: chrono::Utc::now(),
            },
        );
        Following { slurm: self, job }
    }

    fn set_state(&self, job: u64, state: &str, reason: &str) {
        if let Some(f) = self.followed().get_mut(&job) {
            f.state = state.to_lowercase();
            f.reason = reason.to_owned();
        }
    }

    /// The jobs being followed, by job id.
    pub fn jobs(&self) -> Vec<Followed> {
        self.followed().values().cloned().collect()
    }

    pub fn settings(&self) -> SlurmSettings {
        self.settings.reading().clone()
    }

    pub fn set_settings(&self, s: SlurmSettings) {
        *self.settings.writing() = s;
    }

    /// Run a client command; its stdout.
    async fn output(&self, program: &str, args: &[String]) -> Result<String, SlurmError> {
        let s = self.settings();
        let path = match &s.bin_dir {
            Some(d) => d.join(program),
            None => PathBuf::from(program),
        };
        let command = format!("{program} {}", args.join(" "));
        let mut c = tokio::process::Command::new(&path);
        c.args(args)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        if let Some(conf) = &s.conf {
            c.env("SLURM_CONF", conf);
        }
        let out = match tokio::time::timeout(s.command_timeout, c.output()).await {
            Err(_) => {
                return Err(SlurmError::Timeout {
                    command,
                    timeout: s.command_timeout,
                });
            }
            Ok(Err(e)) => {
                return Err(SlurmError::Spawn {
                    command,
                    error: e.to_string(),
                });
            }
            Ok(Ok(o)) => o,
        };
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
            Err(SlurmError::Failed {
                command,
                stderr: if stderr.is_empty() {
                    format!("exit status {}", out.status)
                } else {
                    stderr
                },
            })
        }
    }

    /// Write the batch script and submit it; the job id.
    pub async fn submit(&self, job: &Job) -> Result<u64, SlurmError> {
        let script = job.script_path();
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(&job.dir)?;
            std::fs::write(&script, batch_script(job))?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
        };
        write().map_err(|e| SlurmError::Spawn {
            command: format!("sbatch {}", script.display()),
            error: format!("cannot write the batch script: {e}"),
        })?;
        let args = sbatch_args(job, &self.settings());
        let out = self.output("sbatch", &args).await?;
        // `--parsable`: `id` or `id;cluster`.
        let id = out.trim().split(';').next().unwrap_or("");
        id.parse().map_err(|_| SlurmError::Failed {
            command: "sbatch".into(),
            stderr: format!("answered `{}`, not a job id", out.trim()),
        })
    }

    /// A live (pending or running) job named `name`.
    pub async fn find(&self, name: &str) -> Result<Option<u64>, SlurmError> {
        let out = self
            .output(
                "squeue",
                &[
                    "-h".into(),
                    format!("--name={name}"),
                    "-o".into(),
                    "%i".into(),
                ],
            )
            .await?;
        Ok(out.lines().filter_map(|l| l.trim().parse().ok()).max())
    }

    /// Where job `id` stands. While it waits or runs, from one `squeue`
    /// shared by every followed job (read at most once per `poll`); once
    /// it ends, in detail from [`Slurm::state_of`].
    pub async fn state(&self, id: u64) -> Result<JobState, SlurmError> {
        let poll = self.settings().poll;
        let (state, reason) = {
            let mut live = self.live.lock().await;
            let stale = live
                .as_ref()
                .is_none_or(|(at, jobs)| at.elapsed() >= poll / 2 || !jobs.contains_key(&id));
            if stale {
                let mut ids: Vec<u64> = self.followed().keys().copied().collect();
                if !ids.contains(&id) {
                    ids.push(id);
                }
                *live = Some((Instant::now(), self.squeue(&ids).await?));
            }
            match live.as_ref().and_then(|(_, jobs)| jobs.get(&id)) {
                Some(s) => s.clone(),
                None => return self.state_of(id).await,
            }
        };
        match job_state(&state, &reason, "", 0) {
            st if st.is_final() => self.state_of(id).await,
            st => Ok(st),
        }
    }

    /// `squeue` over `ids`: each known job's (state, reason).
    async fn squeue(&self, ids: &[u64]) -> Result<LiveStates, SlurmError> {
        let list: Vec<String> = ids.iter().map(u64::to_string).collect();
        let args = [
            "-h".to_owned(),
            "--states=all".into(),
            format!("--jobs={}", list.join(",")),
            "-o".into(),
            "%i|%T|%r".into(),
        ];
        match self.output("squeue", &args).await {
            Ok(out) => Ok(out
                .lines()
                .filter_map(|l| {
                    let mut f = l.trim().split('|');
                    let id = f.next()?.parse().ok()?;
                    Some((
                        id,
                        (f.next()?.to_owned(), f.next().unwrap_or("").to_owned()),
                    ))
                })
                .collect()),
            // None of them is known any more.
            Err(SlurmError::Failed { stderr, .. }) if stderr.contains("Invalid job id") => {
                Ok(BTreeMap::new())
            }
            Err(e) => Err(e),
        }
    }

    /// Where job `id` stands, in detail (exit status, restarts): the
    /// controller's word while it remembers the job (`MinJobAge`), then
    /// accounting's.
    pub async fn state_of(&self, id: u64) -> Result<JobState, SlurmError> {
        match self
            .output(
                "scontrol",
                &["-o".into(), "show".into(), "job".into(), id.to_string()],
            )
            .await
        {
            Ok(out) => {
                if let Some(st) = parse_scontrol(&out) {
                    return Ok(st);
                }
            }
            Err(SlurmError::Failed { stderr, .. }) if stderr.contains("Invalid job id") => {}
            Err(e) => return Err(e),
        }
        // Accounting through slurmdbd, else the job completion log.
        let fields = [
            "-n".to_owned(),
            "-P".into(),
            "-X".into(),
            "-j".into(),
            id.to_string(),
            "-o".into(),
            "JobID,State,ExitCode".into(),
        ];
        let from_sacct = |out: &str| {
            out.lines().find_map(|l| {
                let f: Vec<&str> = l.split('|').collect();
                (f.len() >= 3 && f[0] == id.to_string()).then(|| job_state(f[1], "", f[2], 0))
            })
        };
        if let Ok(out) = self.output("sacct", &fields).await
            && let Some(st) = from_sacct(&out)
        {
            return Ok(st);
        }
        let mut completion = vec!["-c".to_owned()];
        completion.extend(fields);
        match self.output("sacct", &completion).await {
            Ok(out) => Ok(from_sacct(&out).unwrap_or(JobState::Unknown)),
            Err(e) if e.unreachable() => Err(e),
            Err(_) => Ok(JobState::Unknown),
        }
    }

    pub async fn cancel(&self, id: u64) -> Result<(), SlurmError> {
        self.output("scancel", &[id.to_string()]).await.map(|_| ())
    }
}

/// Reads what a job appended to a file since the last read, in whole
/// lines. A file that shrank was started again (a requeued job).
struct Tail {
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
    restarted: bool,
}

impl Tail {
    fn new(path: PathBuf) -> Tail {
        Tail {
            path,
            offset: 0,
            partial: Vec::new(),
            restarted: false,
        }
    }

    fn lines(&mut self) -> Vec<String> {
        use std::io::{Read, Seek, SeekFrom};
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return Vec::new();
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len < self.offset {
            self.offset = 0;
            self.partial.clear();
            self.restarted = true;
        }
        let mut buf = Vec::new();
        if f.seek(SeekFrom::Start(self.offset)).is_err() || f.read_to_end(&mut buf).is_err() {
            return Vec::new();
        }
        self.offset += buf.len() as u64;
        self.partial.extend_from_slice(&buf);
        let mut out = Vec::new();
        while let Some(i) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=i).collect();
            out.push(String::from_utf8_lossy(&line[..i]).into_owned());
        }
        out
    }

    /// The unterminated last line, at the end.
    fn rest(&mut self) -> Option<String> {
        (!self.partial.is_empty()).then(|| {
            let s = String::from_utf8_lossy(&self.partial).into_owned();
            self.partial.clear();
            s
        })
    }
}

/// Follow job `id` to its end: stream its stdout through the protocol
/// (`on_event`), say what changes (`note`), cancel it when `stop` aborts —
/// unless the daemon is stopping: then the job is left to run, and the
/// restarted daemon follows it again. A cluster that stops answering is
/// waited for, and said so once.
pub async fn follow(
    slurm: &Slurm,
    job: &Job,
    id: u64,
    stop: &RunStop,
    on_event: &(dyn Fn(&Event) + Send + Sync),
    note: &(dyn Fn(String) + Send + Sync),
) -> Result<Outcome, Failure> {
    let begin = Instant::now();
    let mut out = Tail::new(job.stdout(id));
    let mut err = Tail::new(job.stderr(id));
    let mut reader = Reader::default();
    let mut last: Option<JobState> = None;
    let mut unreachable: Option<SlurmError> = None;
    let mut cancelled_at: Option<Instant> = None;
    let read = |out: &mut Tail, err: &mut Tail, end: bool, reader: &mut Reader| {
        let mut lines = out.lines();
        if out.restarted {
            out.restarted = false;
            reader.restart();
            note(format!(
                "Slurm started job {id} again; its output starts over"
            ));
        }
        if end {
            lines.extend(out.rest());
        }
        for line in lines {
            on_event(&reader.stdout(&line));
        }
        let mut lines = err.lines();
        if end {
            lines.extend(err.rest());
        }
        for line in lines {
            on_event(&reader.stderr(line));
        }
    };
    loop {
        if stop.is_aborted() && stop.reason() == Some(StopReason::Shutdown) {
            read(&mut out, &mut err, false, &mut reader);
            note(format!(
                "the daemon is stopping; Slurm job {id} runs on and is followed again at the next start"
            ));
            return Err(Failure::Cancelled);
        }
        if stop.is_aborted() && cancelled_at.is_none() {
            match slurm.cancel(id).await {
                Ok(()) => note(format!("cancelling Slurm job {id}")),
                Err(e) => note(format!("cannot cancel Slurm job {id} yet: {e}")),
            }
            cancelled_at = Some(Instant::now());
        }
        let state = slurm.state(id).await;
        read(&mut out, &mut err, false, &mut reader);
        match state {
            Err(e) => {
                if unreachable.is_none() {
                    note(format!(
                        "Slurm is not answering about job {id} ({e}); still waiting"
                    ));
                }
                slurm.set_state(id, "unknown", &format!("Slurm is not answering: {e}"));
                unreachable = Some(e);
                if let Some(at) = cancelled_at
                    && at.elapsed() > slurm.settings().command_timeout * 3
                {
                    note(format!(
                        "gave up waiting for Slurm to confirm job {id} is cancelled; it may still run"
                    ));
                    return Err(Failure::Cancelled);
                }
            }
            Ok(st) => {
                if unreachable.take().is_some() {
                    note(format!("Slurm answers again about job {id}"));
                }
                if st.is_final() {
                    read(&mut out, &mut err, true, &mut reader);
                    reader.outcome.duration = begin.elapsed();
                    let tail = reader.tail();
                    return match st {
                        JobState::Completed => Ok(reader.outcome),
                        _ if cancelled_at.is_some() => Err(Failure::Cancelled),
                        JobState::Ended {
                            state,
                            reason,
                            exit_code,
                            signal,
                        } => Err(Failure::Slurm {
                            job: id,
                            state,
                            detail: describe_end(&reason, exit_code, signal),
                            tail,
                        }),
                        _ => Err(Failure::Slurm {
                            job: id,
                            state: "UNKNOWN".into(),
                            detail: " (neither the controller nor accounting knows it any more)"
                                .into(),
                            tail,
                        }),
                    };
                }
                match &st {
                    JobState::Waiting { state, reason } => slurm.set_state(id, state, reason),
                    JobState::Running { state, .. } => slurm.set_state(id, state, ""),
                    _ => {}
                }
                if last.as_ref() != Some(&st) {
                    match &st {
                        JobState::Waiting { state, reason } if reason.is_empty() => {
                            note(format!("Slurm job {id} is {}", state.to_lowercase()))
                        }
                        JobState::Waiting { state, reason } => note(format!(
                            "Slurm job {id} is {} ({reason})",
                            state.to_lowercase()
                        )),
                        JobState::Running { restarts, .. }
                            if !matches!(last, Some(JobState::Running { .. })) =>
                        {
                            note(if *restarts > 0 {
                                format!("Slurm job {id} is running (restart {restarts})")
                            } else {
                                format!("Slurm job {id} is running")
                            })
                        }
                        _ => {}
                    }
                    last = Some(st);
                }
            }
        }
        tokio::time::sleep(slurm.settings().poll).await;
    }
}

fn describe_end(reason: &str, exit_code: i32, signal: i32) -> String {
    let mut d = String::new();
    if signal > 0 {
        d.push_str(&format!(" (signal {signal}"));
    } else if exit_code >= 0 {
        d.push_str(&format!(" (exit status {exit_code}"));
    } else {
        d.push_str(" (");
    }
    if !reason.is_empty() {
        if !d.ends_with('(') {
            d.push_str(", ");
        }
        d.push_str(reason);
    }
    if d == " (" { String::new() } else { d + ")" }
}

/// `run-<run>` and the step id make a job name unique per step of a run.
pub fn job_name(run: i64, step: &str) -> String {
    format!("coach-r{run}-{step}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Job {
        Job {
            name: "coach-r7-train".into(),
            argv: vec!["python3".into(), "train.py".into(), "it's".into()],
            workdir: "/srv/bots".into(),
            env: [("HF_HOME".to_owned(), "/data/hf".to_owned())].into(),
            dir: "/var/coach/work/run-7/train".into(),
            gpus: 2,
            cpus: Some(8),
            memory: Some(3 << 30),
            time_limit: Some(Duration::from_secs(90)),
            priority: Priority::Critical,
            queue: "research".into(),
            requeue: true,
        }
    }

    #[test]
    fn the_batch_script_quotes_what_it_runs() {
        let s = batch_script(&job());
        assert!(s.contains("export HF_HOME='/data/hf'\n"), "{s}");
        assert!(s.contains("cd '/srv/bots' || exit 111\n"), "{s}");
        assert!(s.ends_with("exec 'python3' 'train.py' 'it'\\''s'\n"), "{s}");
    }

    #[test]
    fn sbatch_asks_for_what_the_step_declares() {
        let settings = SlurmSettings {
            partition: Some("debug".into()),
            partitions: [(Priority::Critical, "urgent".to_owned())].into(),
            account: Some("bots".into()),
            accounts: [("research".to_owned(), "lab".to_owned())].into(),
            sbatch_args: vec!["--qos=normal".into()],
            ..SlurmSettings::default()
        };
        let a = sbatch_args(&job(), &settings);
        for want in [
            "--job-name=coach-r7-train",
            "--gres=gpu:2",
            "--cpus-per-task=8",
            "--mem=3072M",
            "--time=2",
            "--partition=urgent",
            "--account=lab",
            "--requeue",
            "--export=NONE",
            "--output=/var/coach/work/run-7/train/slurm-%j.out",
            "--qos=normal",
        ] {
            assert!(a.iter().any(|x| x == want), "{want} not in {a:?}");
        }
        assert_eq!(
            a.last().unwrap(),
            "/var/coach/work/run-7/train/slurm-job.sh"
        );
        let mut low = job();
        low.priority = Priority::Low;
        low.requeue = false;
        low.queue = "default".into();
        let a = sbatch_args(&low, &settings);
        assert!(a.iter().any(|x| x == "--partition=debug"), "{a:?}");
        assert!(a.iter().any(|x| x == "--account=bots"), "{a:?}");
        assert!(a.iter().any(|x| x == "--no-requeue"), "{a:?}");
    }

    #[test]
    fn slurm_states_map_to_ours() {
        let line = "JobId=12 JobName=coach-r7-train UserId=root(0) Priority=1 JobState=FAILED Reason=NonZeroExitCode Dependency=(null) Requeue=1 Restarts=0 BatchFlag=1 ExitCode=3:0";
        assert_eq!(
            parse_scontrol(line),
            Some(JobState::Ended {
                state: "FAILED".into(),
                reason: "NonZeroExitCode".into(),
                exit_code: 3,
                signal: 0
            })
        );
        let pending = "JobId=13 JobState=PENDING Reason=Resources Restarts=0 ExitCode=0:0";
        assert_eq!(
            parse_scontrol(pending),
            Some(JobState::Waiting {
                state: "PENDING".into(),
                reason: "Resources".into()
            })
        );
        assert_eq!(
            parse_scontrol("JobId=14 JobState=RUNNING Reason=None Restarts=2 ExitCode=0:0"),
            Some(JobState::Running {
                state: "RUNNING".into(),
                restarts: 2
            })
        );
        assert_eq!(job_state("COMPLETED", "", "0:0", 0), JobState::Completed);
        assert!(matches!(
            job_state("CANCELLED by 0", "", "0:15", 0),
            JobState::Ended { ref state, signal: 15, .. } if state == "CANCELLED"
        ));
        assert!(parse_scontrol("slurm_load_jobs error: Invalid job id specified").is_none());
        assert_eq!(
            describe_end("NonZeroExitCode", 3, 0),
            " (exit status 3, NonZeroExitCode)"
        );
        assert_eq!(describe_end("", 0, 9), " (signal 9)");
    }

    #[test]
    fn unreachable_is_told_from_refused() {
        let down = SlurmError::Failed {
            command: "sbatch".into(),
            stderr: "sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)".into(),
        };
        assert!(down.unreachable());
        let refused = SlurmError::Failed {
            command: "sbatch".into(),
            stderr: "sbatch: error: Batch job submission failed: Requested node configuration is not available".into(),
        };
        assert!(!refused.unreachable());
    }

    #[test]
    fn the_tail_reads_whole_lines_and_notices_a_restart() {
        let dir = std::env::temp_dir().join(format!("coach-tail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("out");
        std::fs::write(&f, "a\nb").unwrap();
        let mut t = Tail::new(f.clone());
        assert_eq!(t.lines(), ["a"]);
        std::fs::write(&f, "a\nbc\nd\n").unwrap();
        assert_eq!(t.lines(), ["bc", "d"]);
        std::fs::write(&f, "x\n").unwrap();
        assert_eq!(t.lines(), ["x"]);
        assert!(t.restarted);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
