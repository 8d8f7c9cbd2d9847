//! The `process` step: run the command on GPUs this machine's queue
//! allocates (`executor::process`), or as a job Slurm places
//! (`executor::slurm`); store its metrics and the files it names as
//! artifacts.

use super::{Output, Reporter, Runner};
use crate::executor::gpus::{Need, Owner};
use crate::executor::process::{self, Event, Failure};
use crate::executor::slurm::{self, Job};
use crate::plugin::PluginEvent;
use crate::plugin::bindings::LogLevel;
use crate::workflow::{Executor, ProcessSpec, Step, Workflow};
use anyhow::{Context, Result, anyhow};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Turns protocol events into the step's log, progress and metrics.
struct Collector<'a> {
    reporter: &'a Arc<dyn Reporter>,
    step: &'a str,
    metrics: Mutex<Vec<(String, f64, u32)>>,
}

impl Collector<'_> {
    fn log(&self, level: LogLevel, message: String) {
        self.reporter
            .step_event(self.step, &PluginEvent::Log { level, message });
    }

    fn event(&self, ev: &Event) {
        match ev {
            Event::Progress { fraction, message } => self.reporter.step_event(
                self.step,
                &PluginEvent::Progress {
                    fraction: *fraction as f32,
                    message: message.clone(),
                },
            ),
            Event::Metric { name, value, step } => {
                self.metrics
                    .lock()
                    .expect("metrics lock")
                    .push((name.clone(), *value, *step));
                self.reporter.step_event(
                    self.step,
                    &PluginEvent::Metric {
                        name: name.clone(),
                        value: *value,
                        step: *step,
                    },
                );
            }
            Event::Artifact(p) => self.log(LogLevel::Info, format!("artifact {}", p.display())),
            Event::Output(line) => self.log(LogLevel::Info, line.clone()),
            Event::Stderr(line) => self.log(LogLevel::Warn, line.clone()),
            Event::Bad { line, problem } => self.log(
                LogLevel::Warn,
                format!("stdout line {line} breaks the progress protocol ({problem}); ignored"),
            ),
        }
    }
}

/// What a finished command left, wherever it ran.
struct Ran {
    outcome: process::Outcome,
    /// `devices` or `slurm_job`.
    placed: (&'static str, Value),
}

/// One attempt of a process step, as the executors need it.
struct Attempt<'a> {
    run_id: i64,
    /// Its `run_steps` row.
    row: i64,
    wf: &'a Workflow,
    step: &'a Step,
    spec: &'a ProcessSpec,
    /// Stable across attempts, so a trainer can resume from it.
    checkpoints: PathBuf,
    collector: Collector<'a>,
    cancel: &'a Arc<AtomicBool>,
    /// Set with `cancel` when the daemon stops: work outside it (a Slurm
    /// job) is left running, to be followed again after the restart.
    detach: &'a AtomicBool,
}

impl Attempt<'_> {
    /// What Coach tells the command about itself.
    fn coach_env(&self) -> [(&'static str, String); 3] {
        [
            ("COACH_RUN", self.run_id.to_string()),
            ("COACH_STEP", self.step.id.clone()),
            (
                "COACH_CHECKPOINT_DIR",
                self.checkpoints.display().to_string(),
            ),
        ]
    }

    fn failed(&self, e: Failure) -> anyhow::Error {
        match e {
            Failure::Cancelled => cancelled(),
            e => anyhow!("`{}` {e}", self.spec.argv[0]),
        }
    }
}

fn cancelled() -> anyhow::Error {
    anyhow!(crate::plugin::PluginFailure::Cancelled {
        plugin: "process".into()
    })
}

impl Runner {
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn run_process(
        &self,
        run_id: i64,
        row: i64,
        wf: &Workflow,
        step: &Step,
        reporter: &Arc<dyn Reporter>,
        control: &super::RunControl,
    ) -> Result<Output> {
        let spec = step
            .process
            .as_ref()
            .ok_or_else(|| anyhow!("a process step without a command"))?;
        let checkpoints = self.work_dir.join(format!("run-{run_id}")).join(&step.id);
        std::fs::create_dir_all(&checkpoints)
            .with_context(|| format!("cannot create {}", checkpoints.display()))?;
        let attempt = Attempt {
            run_id,
            row,
            wf,
            step,
            spec,
            checkpoints,
            collector: Collector {
                reporter,
                step: &step.id,
                metrics: Mutex::new(Vec::new()),
            },
            cancel: &control.cancel,
            detach: &control.shutdown,
        };
        let executor = wf.executor(self.slurm.settings().default);
        let result = match executor {
            Executor::Local => self.on_local_gpus(&attempt).await,
            Executor::Slurm => self.on_slurm(&attempt).await,
        };
        let metrics = std::mem::take(&mut *attempt.collector.metrics.lock().expect("metrics lock"));
        self.store.add_metrics(run_id, &step.id, &metrics).await?;
        let ran = result?;
        let mut artifacts = Vec::new();
        for a in &ran.outcome.artifacts {
            let path = process::resolve_artifact(&spec.workdir, a);
            artifacts.extend(self.store_artifact(&path).await.with_context(|| {
                format!("cannot store the artifact {} it named", path.display())
            })?);
        }
        // The last value of each metric: what a model registered from the
        // artifacts is judged by.
        let last: serde_json::Map<String, Value> = metrics
            .iter()
            .map(|(name, value, _)| (name.clone(), json!(value)))
            .collect();
        let mut out = json!({
            "executor": executor,
            "final_metrics": last,
            "devices": [],
            "seconds": ran.outcome.duration.as_secs_f64(),
            "metrics": metrics.len(),
            "bad_lines": ran.outcome.bad_lines,
            "artifacts": artifacts,
            "checkpoint_dir": attempt.checkpoints.display().to_string(),
        });
        out[ran.placed.0] = ran.placed.1;
        Ok(Output::Process(Arc::new(out)))
    }

    /// Wait for this machine's GPUs, run the command on them; a preempted
    /// run asks again and starts over (from its checkpoint folder).
    async fn on_local_gpus(&self, a: &Attempt<'_>) -> Result<Ran> {
        let (step, spec, collector) = (a.step, a.spec, &a.collector);
        let command = process::Command {
            argv: spec.argv.clone(),
            workdir: spec.workdir.clone(),
            env: spec.env.clone(),
            timeout: step.timeout,
            grace: self.process_grace,
        };
        let extra = a.coach_env();
        loop {
            let lease = self.lease(a).await?;
            let devices = lease
                .as_ref()
                .map(|l| l.devices.clone())
                .unwrap_or_default();
            let not_preempted = AtomicBool::new(false);
            let preempt = lease.as_ref().map_or(&not_preempted, |l| &*l.preempt);
            tracing::info!(run = a.run_id, step = %step.id, devices = %devices.join(","), command = ?spec.argv, "process starting");
            let gpus = self.gpus.clone();
            let pid = Mutex::new(None);
            let started = |p: u32| {
                gpus.add_pid(p);
                *pid.lock().expect("pid lock") = Some(p);
                // Kept so a daemon killed outright can stop the group when
                // it comes back.
                if let Some(handle) = process::handle(p) {
                    let (store, row) = (self.store.clone(), a.row);
                    tokio::spawn(async move {
                        if let Err(e) = store.set_step_handle(row, &handle).await {
                            tracing::warn!("cannot record process group {handle}: {e:#}");
                        }
                    });
                }
            };
            let result = process::run(
                &command,
                &devices,
                &extra,
                a.cancel,
                preempt,
                &started,
                &|ev| collector.event(ev),
            )
            .await;
            if let Some(p) = *pid.lock().expect("pid lock") {
                self.gpus.remove_pid(p);
            }
            drop(lease);
            match result {
                Ok(outcome) => {
                    return Ok(Ran {
                        outcome,
                        placed: ("devices", json!(devices)),
                    });
                }
                Err(Failure::Preempted) => collector.log(
                    LogLevel::Warn,
                    format!(
                        "preempted by higher-priority work on GPU {}; asks again and resumes from {}",
                        devices.join(","),
                        a.checkpoints.display()
                    ),
                ),
                Err(e) => return Err(a.failed(e)),
            }
        }
    }

    /// Wait until the GPU queue allocates the step's GPUs (none needed:
    /// no lease).
    async fn lease(&self, a: &Attempt<'_>) -> Result<Option<crate::executor::gpus::Lease>> {
        let step = a.step;
        let r = &step.resources;
        if r.gpus == 0 {
            return Ok(None);
        }
        let need = Need {
            gpus: r.gpus,
            gpu_memory: r.gpu_memory,
            exclusive: r.exclusive,
            priority: step.placement.priority,
            queue: step.placement.queue.clone(),
            preemptible: step.placement.preemptible,
            max_duration: step.placement.max_duration,
        };
        let owner = Owner {
            run: a.run_id,
            workflow: a.wf.name.clone(),
            step: step.id.clone(),
        };
        a.collector.log(
            LogLevel::Info,
            format!(
                "asking for {} GPU{}",
                r.gpus,
                if r.gpus == 1 { "" } else { "s" }
            ),
        );
        let acquire = self.gpus.acquire(owner, need);
        tokio::pin!(acquire);
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                lease = &mut acquire => return Ok(Some(lease.map_err(|never| anyhow!("it can never run on this machine: {never}"))?)),
                _ = tick.tick() => if a.cancel.load(Ordering::Relaxed) {
                    return Err(cancelled());
                }
            }
        }
    }

    /// Hand the command to Slurm, or find the job it already has for this
    /// step (submitted before the daemon stopped), and follow it to its end.
    async fn on_slurm(&self, a: &Attempt<'_>) -> Result<Ran> {
        let (step, spec, collector) = (a.step, a.spec, &a.collector);
        let mut env = spec.env.clone();
        env.extend(a.coach_env().map(|(k, v)| (k.to_owned(), v)));
        let job = Job {
            name: slurm::job_name(a.run_id, &step.id),
            argv: spec.argv.clone(),
            workdir: spec.workdir.clone(),
            env,
            dir: a.checkpoints.clone(),
            gpus: step.resources.gpus,
            cpus: step.resources.cpus,
            memory: step.resources.memory,
            time_limit: step.timeout.or(step.placement.max_duration),
            priority: step.placement.priority,
            queue: step.placement.queue.clone(),
            requeue: step.placement.preemptible,
        };
        let note = |m: String| collector.log(LogLevel::Info, m);
        let recorded = self
            .store
            .interrupted_handle(a.run_id, &step.id, a.row)
            .await?
            .and_then(|h| h.strip_prefix("slurm:")?.parse::<u64>().ok());
        let id = match recorded {
            Some(id) => {
                note(format!(
                    "following Slurm job {id} again (submitted before the daemon stopped)"
                ));
                id
            }
            None => self.submit(&job, a).await?,
        };
        self.store
            .set_step_handle(a.row, &format!("slurm:{id}"))
            .await?;
        let _shown = self.slurm.follow_as(
            id,
            Owner {
                run: a.run_id,
                workflow: a.wf.name.clone(),
                step: step.id.clone(),
            },
            step.resources.gpus,
        );
        let followed = slurm::follow(
            &self.slurm,
            &job,
            id,
            a.cancel,
            a.detach,
            &|ev| collector.event(ev),
            &note,
        )
        .await;
        followed
            .map(|outcome| Ran {
                outcome,
                placed: ("slurm_job", json!(id)),
            })
            .map_err(|e| a.failed(e))
    }

    /// Submit `job`, waiting out a cluster that does not answer. A job of
    /// this name already in Slurm (submitted, but its id never recorded)
    /// is taken instead of submitting twice.
    async fn submit(&self, job: &Job, a: &Attempt<'_>) -> Result<u64> {
        let collector = &a.collector;
        let mut down: Option<String> = None;
        loop {
            if a.cancel.load(Ordering::Relaxed) {
                return Err(cancelled());
            }
            let attempt = match self.slurm.find(&job.name).await {
                Ok(Some(id)) => {
                    collector.log(
                        LogLevel::Info,
                        format!("found Slurm job {id} already submitted for this step"),
                    );
                    return Ok(id);
                }
                Ok(None) => self.slurm.submit(job).await,
                Err(e) => Err(e),
            };
            match attempt {
                Ok(id) => {
                    collector.log(
                        LogLevel::Info,
                        format!(
                            "submitted to Slurm as job {id} ({} GPU{})",
                            job.gpus,
                            if job.gpus == 1 { "" } else { "s" }
                        ),
                    );
                    return Ok(id);
                }
                Err(e) if e.unreachable() => {
                    if down.is_none() {
                        collector.log(
                            LogLevel::Warn,
                            format!("Slurm is not answering ({e}); the step waits and tries again"),
                        );
                    }
                    down = Some(e.to_string());
                    tokio::time::sleep(self.slurm.settings().poll).await;
                }
                Err(e) => return Err(anyhow!("Slurm refused the job: {e}")),
            }
        }
    }

    /// Register a process step's artifacts as a model version: a manifest
    /// of its files (paths relative to their common folder, content
    /// hashes) is the model's artifact, its final metrics the model's
    /// metrics, its command and the dataset before it (if any) the lineage.
    pub(super) async fn register_process(
        &self,
        run_id: i64,
        wf: &Workflow,
        step: &Step,
        src: &Step,
        out: &Value,
        outputs: &std::collections::BTreeMap<String, Output>,
    ) -> Result<Output> {
        let files = out["artifacts"].as_array().cloned().unwrap_or_default();
        if files.is_empty() {
            anyhow::bail!(
                "step `{}` named no artifact to register; its command must print {{\"artifact\": \"path\"}}",
                src.id
            );
        }
        let paths: Vec<PathBuf> = files
            .iter()
            .filter_map(|f| f["path"].as_str().map(PathBuf::from))
            .collect();
        let root = common_folder(&paths);
        let listed: Vec<Value> = files
            .iter()
            .map(|f| {
                let path = Path::new(f["path"].as_str().unwrap_or(""));
                let rel = path.strip_prefix(&root).unwrap_or(path);
                json!({"path": rel.display().to_string(), "sha256": f["sha256"], "bytes": f["bytes"]})
            })
            .collect();
        let spec = src.process.as_ref();
        let command = json!({
            "command": spec.map(|p| &p.argv),
            "env": spec.map(|p| &p.env),
        });
        let manifest = json!({"kind": "process", "files": listed});
        let artifact_hash = self.artifacts.put(manifest.to_string().as_bytes())?;
        if let Some(m) = self.store.model_of_run(run_id).await?
            && m.artifact_hash == artifact_hash
        {
            return Ok(Output::Registered(Box::new(m)));
        }
        let dataset = wf
            .nearest(&src.id, crate::workflow::Produces::Dataset)
            .and_then(|d| match outputs.get(&d.id) {
                Some(Output::Dataset(d)) | Some(Output::Ruled(d, _)) => Some(d.clone()),
                _ => None,
            });
        let program = spec
            .and_then(|p| p.argv.first())
            .map(|a| {
                Path::new(a)
                    .file_name()
                    .map_or(a.clone(), |f| f.to_string_lossy().into_owned())
            })
            .unwrap_or_default();
        let metrics = out["final_metrics"].clone();
        let row = self
            .store
            .register_model(crate::store::NewModel {
                name: step
                    .with
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or(&wf.name)
                    .to_owned(),
                run_id,
                trainer_plugin: super::PROCESS_TRAINER.into(),
                trainer_version: program,
                plugin_hash: crate::plugin::sha256_hex(command.to_string().as_bytes()),
                artifact_hash,
                artifact_size: files.iter().filter_map(|f| f["bytes"].as_i64()).sum(),
                // 0: no dataset snapshot before the process.
                dataset_version_id: dataset.as_ref().map_or(0, |d| d.version_id),
                data_hash: dataset.map(|d| d.hash.clone()).unwrap_or_default(),
                config_hash: crate::plugin::sha256_hex(
                    json!({"command": command, "resources": format!("{:?}", src.resources)})
                        .to_string()
                        .as_bytes(),
                ),
                metrics: if metrics.is_object() {
                    metrics
                } else {
                    json!({})
                },
                intents: Vec::new(),
                base_model_id: None,
            })
            .await?;
        Ok(Output::Registered(Box::new(row)))
    }

    /// Store a file, or every file under a folder, as artifacts (streamed,
    /// off the async threads: checkpoints run to gigabytes).
    async fn store_artifact(&self, path: &Path) -> Result<Vec<Value>> {
        let mut files = Vec::new();
        collect_files(path, &mut files)?;
        files.sort();
        let mut out = Vec::new();
        for f in files {
            let artifacts = self.artifacts.clone();
            let file = f.clone();
            let (sha256, bytes) =
                tokio::task::spawn_blocking(move || artifacts.put_file(&file)).await??;
            out.push(json!({"path": f.display().to_string(), "sha256": sha256, "bytes": bytes}));
        }
        Ok(out)
    }
}

/// The deepest folder holding every path (a single file: its folder).
fn common_folder(paths: &[PathBuf]) -> PathBuf {
    let Some(first) = paths.first() else {
        return PathBuf::new();
    };
    let mut root = first.parent().map(Path::to_path_buf).unwrap_or_default();
    for p in &paths[1..] {
        while !p.starts_with(&root) {
            if !root.pop() {
                return PathBuf::new();
            }
        }
    }
    root
}

fn collect_files(path: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("{} is not there", path.display()))?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            collect_files(&entry?.path(), out)?;
        }
    } else {
        out.push(path.to_path_buf());
    }
    Ok(())
}
