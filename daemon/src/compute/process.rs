//! Runs a step's command as a real process: in its own process group (so
//! cancel and timeout stop its children too), with `CUDA_VISIBLE_DEVICES`
//! set to exactly its allocation, a cleared environment plus what the step
//! grants, and the JSON-lines progress protocol read from stdout
//! (`docs/gpus.md`).

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;

/// Longest line kept from a process's stdout or stderr; the rest of a
/// longer line is dropped (a line without end cannot grow the daemon).
pub const MAX_LINE: usize = 64 << 10;

/// Lines of at most `max` bytes (a longer one is cut, with `…`), control
/// characters escaped. Cancel-safe: a line read in part is kept for the
/// next call.
pub struct BoundedLines<R> {
    reader: R,
    line: Vec<u8>,
    cut: bool,
    max: usize,
}

impl<R: AsyncBufRead + Unpin> BoundedLines<R> {
    pub fn new(reader: R, max: usize) -> Self {
        BoundedLines {
            reader,
            line: Vec::new(),
            cut: false,
            max,
        }
    }

    pub async fn next_line(&mut self) -> std::io::Result<Option<String>> {
        loop {
            // The only wait: what it returns is used before the next one.
            let available = self.reader.fill_buf().await?;
            if available.is_empty() {
                if self.line.is_empty() && !self.cut {
                    return Ok(None);
                }
                return Ok(Some(self.take()));
            }
            let (chunk, end) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (&available[..i], Some(i + 1)),
                None => (available, None),
            };
            let room = self.max.saturating_sub(self.line.len());
            if chunk.len() > room {
                self.cut = true;
            }
            self.line.extend_from_slice(&chunk[..chunk.len().min(room)]);
            let used = end.unwrap_or(available.len());
            self.reader.consume(used);
            if end.is_some() {
                return Ok(Some(self.take()));
            }
        }
    }

    fn take(&mut self) -> String {
        let mut text = String::from_utf8_lossy(&self.line).into_owned();
        if text.ends_with('\r') {
            text.pop();
        }
        let mut text = crate::core::text::printable(&text).into_owned();
        if self.cut {
            text.push('…');
        }
        self.line.clear();
        self.cut = false;
        text
    }
}

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// Program and arguments; no shell.
    pub argv: Vec<String>,
    pub workdir: PathBuf,
    /// Granted environment (on top of `PATH`, `HOME`, `LANG`).
    pub env: BTreeMap<String, String>,
    pub timeout: Option<Duration>,
    /// Between SIGTERM and SIGKILL.
    pub grace: Duration,
}

/// A protocol line, or what the process printed.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Progress {
        fraction: f64,
        message: String,
    },
    Metric {
        name: String,
        value: f64,
        step: u32,
    },
    Artifact(PathBuf),
    /// A line that is not JSON: the process's own output.
    Output(String),
    /// Stderr.
    Stderr(String),
    /// A JSON line that breaks the protocol; ignored with a warning.
    Bad {
        line: usize,
        problem: String,
    },
}

/// Parse stdout line `n` (1-based).
pub fn parse_line(n: usize, line: &str) -> Event {
    let trimmed = line.trim();
    if !trimmed.starts_with('{') {
        return Event::Output(line.to_owned());
    }
    let bad = |problem: String| Event::Bad { line: n, problem };
    let v: serde_json::Value = match serde_json::from_str(trimmed) {
        Ok(v) => v,
        Err(e) => return bad(format!("not JSON: {e}")),
    };
    let Some(o) = v.as_object() else {
        return bad("not a JSON object".into());
    };
    if let Some(p) = o.get("progress") {
        return match p.as_f64() {
            Some(f) if (0.0..=1.0).contains(&f) => Event::Progress {
                fraction: f,
                message: o
                    .get("message")
                    .and_then(|m| m.as_str())
                    .unwrap_or("")
                    .to_owned(),
            },
            _ => bad(format!("`progress` must be a number from 0 to 1, got {p}")),
        };
    }
    if let Some(name) = o.get("metric") {
        let Some(name) = name.as_str().filter(|s| !s.is_empty()) else {
            return bad(format!("`metric` must be a name, got {name}"));
        };
        let Some(value) = o
            .get("value")
            .and_then(|v| v.as_f64())
            .filter(|v| v.is_finite())
        else {
            return bad(format!("metric `{name}` needs a finite number `value`"));
        };
        let step = match o.get("step") {
            None => 0,
            Some(s) => match s.as_u64().and_then(|s| u32::try_from(s).ok()) {
                Some(s) => s,
                None => return bad(format!("metric `{name}`: `step` must be a whole number")),
            },
        };
        return Event::Metric {
            name: name.to_owned(),
            value,
            step,
        };
    }
    if let Some(a) = o.get("artifact") {
        return match a.as_str().filter(|s| !s.is_empty()) {
            Some(p) => Event::Artifact(PathBuf::from(p)),
            None => bad(format!("`artifact` must be a path, got {a}")),
        };
    }
    bad("a JSON line needs `progress`, `metric` or `artifact`".into())
}

/// How the process ended, when it did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("cannot start `{program}`: {error}")]
    Spawn { program: String, error: String },
    #[error("exited with status {code}{tail}")]
    Exit { code: i32, tail: String },
    #[error("killed by signal {signal}{tail}")]
    Signal { signal: i32, tail: String },
    #[error("ran past its timeout of {0:?} and was stopped")]
    Timeout(Duration),
    #[error("cancelled")]
    Cancelled,
    /// Stopped to make room for higher-priority work.
    #[error("preempted")]
    Preempted,
    #[error("Slurm job {job} ended {state}{detail}{tail}")]
    Slurm {
        job: u64,
        state: String,
        detail: String,
        tail: String,
    },
}

/// What a successful process left.
#[derive(Debug, Default)]
pub struct Outcome {
    pub artifacts: Vec<PathBuf>,
    pub bad_lines: usize,
    pub duration: Duration,
}

/// Reads a command's output as the protocol says: numbers the stdout
/// lines, collects the artifacts and bad lines, keeps the last 20 lines of
/// stderr for the failure message.
#[derive(Debug, Default)]
pub struct Reader {
    lines: usize,
    pub outcome: Outcome,
    stderr: std::collections::VecDeque<String>,
}

impl Reader {
    pub fn stdout(&mut self, line: &str) -> Event {
        self.lines += 1;
        let ev = parse_line(self.lines, line);
        match &ev {
            Event::Artifact(p) => self.outcome.artifacts.push(p.clone()),
            Event::Bad { .. } => self.outcome.bad_lines += 1,
            _ => {}
        }
        ev
    }

    pub fn stderr(&mut self, line: String) -> Event {
        if self.stderr.len() == 20 {
            self.stderr.pop_front();
        }
        self.stderr.push_back(line.clone());
        Event::Stderr(line)
    }

    /// The output starts over (the command was started again).
    pub fn restart(&mut self) {
        self.lines = 0;
    }

    /// The last stderr lines, for a failure message.
    pub fn tail(&self) -> String {
        if self.stderr.is_empty() {
            String::new()
        } else {
            format!(
                "; last stderr:\n{}",
                self.stderr.iter().cloned().collect::<Vec<_>>().join("\n")
            )
        }
    }
}

/// How long output is still read after the leader exits, before what it
/// left in its group is killed.
const LEFTOVER_OUTPUT: Duration = Duration::from_secs(1);

/// Signal the whole process group (gone already: nothing to do).
fn signal_group(pgid: u32, signal: Signal) {
    let _ = killpg(Pid::from_raw(pgid as i32), signal);
}

/// Kills the group if the step is dropped mid-run (daemon shutdown).
struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            signal_group(pgid, Signal::SIGKILL);
        }
    }
}

/// Run `cmd` with `devices` visible; `on_event` sees every event as it
/// happens; `started` gets the pid. Stops on `cancel`, on `preempt` or at
/// the timeout: SIGTERM to the group, then SIGKILL after the grace period.
pub async fn run(
    cmd: &Command,
    devices: &[String],
    extra_env: &[(&str, String)],
    cancel: &CancellationToken,
    preempt: &AtomicBool,
    started: &(dyn Fn(u32) + Send + Sync),
    on_event: &(dyn Fn(&Event) + Send + Sync),
) -> Result<Outcome, Failure> {
    let program = cmd.argv.first().cloned().unwrap_or_default();
    let mut c = tokio::process::Command::new(&program);
    c.args(&cmd.argv[1..])
        .current_dir(&cmd.workdir)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    for key in ["PATH", "HOME", "LANG", "TZ"] {
        if let Some(v) = std::env::var_os(key) {
            c.env(key, v);
        }
    }
    c.envs(&cmd.env);
    for (k, v) in extra_env {
        c.env(k, v);
    }
    c.env("CUDA_VISIBLE_DEVICES", devices.join(","));
    let begin = Instant::now();
    let mut child = c.spawn().map_err(|e| Failure::Spawn {
        program: program.clone(),
        error: e.to_string(),
    })?;
    let pid = child.id().unwrap_or(0);
    let mut guard = GroupGuard(Some(pid));
    started(pid);
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(Failure::Spawn {
            program,
            error: "its output could not be captured".into(),
        });
    };
    let mut out_lines = BoundedLines::new(BufReader::new(stdout), MAX_LINE);
    let mut err_lines = BoundedLines::new(BufReader::new(stderr), MAX_LINE);
    let mut reader = Reader::default();
    let (mut out_open, mut err_open) = (true, true);
    // Set once SIGTERM was sent: (when, why).
    let mut stopping: Option<(Instant, Failure)> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    // The leader's exit status, and when it came. Its children (data
    // loaders, a stray `&`) may hold stdout open: their output is read
    // for a moment more, then the group goes.
    let mut exited: Option<(std::io::Result<std::process::ExitStatus>, Instant)> = None;
    let status = loop {
        if !out_open
            && !err_open
            && let Some((status, _)) = exited.take()
        {
            break status;
        }
        tokio::select! {
            line = out_lines.next_line(), if out_open => match line {
                Ok(Some(line)) => on_event(&reader.stdout(&line)),
                _ => out_open = false,
            },
            line = err_lines.next_line(), if err_open => match line {
                Ok(Some(line)) => on_event(&reader.stderr(line)),
                _ => err_open = false,
            },
            status = child.wait(), if exited.is_none() => exited = Some((status, Instant::now())),
            _ = tick.tick() => {
                if let Some((_, at)) = &exited {
                    if at.elapsed() >= LEFTOVER_OUTPUT {
                        signal_group(pid, Signal::SIGKILL);
                    }
                    // Held open by something outside the group.
                    if at.elapsed() >= LEFTOVER_OUTPUT * 4
                        && let Some((status, _)) = exited.take()
                    {
                        break status;
                    }
                } else if let Some((since, _)) = &stopping {
                    if since.elapsed() >= cmd.grace {
                        signal_group(pid, Signal::SIGKILL);
                    }
                } else if cancel.is_cancelled() {
                    signal_group(pid, Signal::SIGTERM);
                    stopping = Some((Instant::now(), Failure::Cancelled));
                } else if preempt.load(Ordering::Relaxed) {
                    signal_group(pid, Signal::SIGTERM);
                    stopping = Some((Instant::now(), Failure::Preempted));
                } else if let Some(t) = cmd.timeout.filter(|t| begin.elapsed() >= *t) {
                    signal_group(pid, Signal::SIGTERM);
                    stopping = Some((Instant::now(), Failure::Timeout(t)));
                }
            }
        }
    };
    // The leader is gone; whatever it left in its group goes too.
    signal_group(pid, Signal::SIGKILL);
    guard.0 = None;
    reader.outcome.duration = begin.elapsed();
    if let Some((_, why)) = stopping {
        return Err(why);
    }
    let status = status.map_err(|e| Failure::Spawn {
        program,
        error: e.to_string(),
    })?;
    use std::os::unix::process::ExitStatusExt;
    let tail = reader.tail();
    match (status.code(), status.signal()) {
        (Some(0), _) => Ok(reader.outcome),
        (Some(code), _) => Err(Failure::Exit { code, tail }),
        (None, Some(signal)) => Err(Failure::Signal { signal, tail }),
        (None, None) => Err(Failure::Exit { code: -1, tail }),
    }
}

/// What the store keeps of a started process group: `local:<pgid>:<the
/// leader's start time>` (Linux; `None` elsewhere).
pub fn handle(pid: u32) -> Option<String> {
    start_time(pid).map(|t| format!("local:{pid}:{t}"))
}

/// This process as the store names a process that runs work: its pid and
/// start time, `<pid>:<start>` (Linux; the pid alone elsewhere).
pub fn this_process() -> String {
    let pid = std::process::id();
    match start_time(pid) {
        Some(t) => format!("{pid}:{t}"),
        None => pid.to_string(),
    }
}

/// Whether the process [`this_process`] named as `identity` still runs:
/// the pid is alive and started when it did (a reused pid is another
/// process). `None` when `identity` cannot be read.
pub fn is_running(identity: &str) -> Option<bool> {
    let mut parts = identity.split(':');
    let pid: u32 = parts.next()?.parse().ok()?;
    let started: Option<u64> = match parts.next() {
        Some(t) => Some(t.parse().ok()?),
        None => None,
    };
    // EPERM: the process is there, owned by someone else.
    let alive = !matches!(
        nix::sys::signal::kill(Pid::from_raw(pid as i32), None),
        Err(nix::errno::Errno::ESRCH)
    );
    Some(match (alive, started, start_time(pid)) {
        (false, _, _) => false,
        (true, Some(s), Some(now)) => s == now,
        // Alive, and nothing to tell it from another: assume it is.
        (true, _, _) => true,
    })
}

/// A process's start time in clock ticks since boot (`/proc/<pid>/stat`
/// field 22): with the pid, it names one process for good.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    rest.split(' ').nth(19)?.parse().ok()
}

fn group_alive(pgid: u32) -> bool {
    killpg(Pid::from_raw(pgid as i32), None).is_ok()
}

/// Stop what is left of a process group a daemon started before it was
/// killed outright (`handle`): SIGTERM, then SIGKILL after `grace`. A
/// group whose id now belongs to some other process is left alone. Says
/// what it did.
pub async fn reap(handle: &str, grace: Duration) -> Option<String> {
    let mut parts = handle.strip_prefix("local:")?.split(':');
    let pgid: u32 = parts.next()?.parse().ok()?;
    let started: u64 = parts.next()?.parse().ok()?;
    if pgid <= 1 || !group_alive(pgid) {
        return None;
    }
    // The leader still there: it must be the one Coach started. Gone: the
    // id cannot be reused while its group lives, so the group is ours.
    if start_time(pgid).is_some_and(|t| t != started) {
        return None;
    }
    signal_group(pgid, Signal::SIGTERM);
    let begin = Instant::now();
    while group_alive(pgid) && begin.elapsed() < grace {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if group_alive(pgid) {
        signal_group(pgid, Signal::SIGKILL);
        Some(format!("killed process group {pgid} (it ignored SIGTERM)"))
    } else {
        Some(format!("stopped process group {pgid}"))
    }
}

/// An artifact path as the process named it: relative to its working
/// directory.
pub fn resolve_artifact(workdir: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        workdir.join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_bounded_escaped_and_survive_small_reads() {
        let long = "x".repeat(100);
        let input = format!("short\r\n{long}\nesc\u{1b}[2J\nlast");
        // One byte at a time: every line spans many reads.
        let reader = BufReader::with_capacity(1, input.as_bytes());
        let mut lines = BoundedLines::new(reader, 10);
        let mut got = Vec::new();
        while let Some(l) = lines.next_line().await.unwrap() {
            got.push(l);
        }
        assert_eq!(got, ["short", "xxxxxxxxxx…", "esc\\u{1b}[2J", "last"]);
    }

    #[test]
    fn protocol_lines_parse_and_bad_ones_are_named() {
        assert_eq!(
            parse_line(1, r#"{"progress": 0.4, "message": "epoch 2"}"#),
            Event::Progress {
                fraction: 0.4,
                message: "epoch 2".into()
            }
        );
        assert_eq!(
            parse_line(2, r#"{"metric": "loss", "value": 0.25, "step": 10}"#),
            Event::Metric {
                name: "loss".into(),
                value: 0.25,
                step: 10
            }
        );
        assert_eq!(
            parse_line(3, r#"{"artifact": "out/model.safetensors"}"#),
            Event::Artifact("out/model.safetensors".into())
        );
        assert_eq!(
            parse_line(4, "Epoch 1: 100%|####|"),
            Event::Output("Epoch 1: 100%|####|".into())
        );
        for (line, problem) in [
            (
                r#"{"progress": 1.5}"#,
                "`progress` must be a number from 0 to 1",
            ),
            (
                r#"{"progress": "half"}"#,
                "`progress` must be a number from 0 to 1",
            ),
            (
                r#"{"metric": "loss"}"#,
                "metric `loss` needs a finite number `value`",
            ),
            (
                r#"{"metric": "loss", "value": 1, "step": -1}"#,
                "`step` must be a whole number",
            ),
            (r#"{"artifact": 3}"#, "`artifact` must be a path"),
            (
                r#"{"hello": 1}"#,
                "needs `progress`, `metric` or `artifact`",
            ),
            (r#"{"progress": 0.5"#, "not JSON"),
        ] {
            match parse_line(7, line) {
                Event::Bad {
                    line: 7,
                    problem: p,
                } => {
                    assert!(p.contains(problem), "{line}: {p}")
                }
                other => panic!("{line}: {other:?}"),
            }
        }
    }
}
