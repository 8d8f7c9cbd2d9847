//! A process step: run the command on GPUs this machine's queue allocates
//! ([`crate::compute::process`]), or as a job Slurm places
//! ([`crate::compute::slurm`]); store its metrics and the files it names
//! as artifacts.

use super::StepCtx;
use crate::compute::gpus::{Lease, Need, Owner};
use crate::compute::process::{self, Event, Failure};
use crate::compute::slurm::{self, Job};
use crate::core::event::{LogLevel, StepEvent};
use crate::core::ids::RunId;
use crate::core::output::{ArtifactFile, ProcessOutput};
use crate::core::stop::RunStop;
use crate::core::sync::Lock;
use crate::events::Reporter;
use crate::pipeline::{Output, Runner};
use crate::workflow::{Executor, ProcessSpec, Step, Workflow};
use anyhow::{Context, Result, anyhow};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

/// Turns protocol events into the step's log, progress and metrics.
struct Collector<'a> {
    reporter: &'a Arc<dyn Reporter>,
    step: &'a str,
    metrics: Mutex<Vec<(String, f64, u32)>>,
}

impl Collector<'_> {
    fn log(&self, level: LogLevel, message: String) {
        self.reporter
            .step_event(self.step, &StepEvent::Log { level, message });
    }

    fn event(&self, ev: &Event) {
        match ev {
            Event::Progress { fraction, message } => self.reporter.step_event(
                self.step,
                &StepEvent::Progress {
                    fraction: *fraction as f32,
                    message: message.clone(),
                },
            ),
            Event::Metric { name, value, step } => {
                self.metrics.locked().push((name.clone(), *value, *step));
                self.reporter.step_event(
                    self.step,
                    &StepEvent::Metric {
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

/// Where a finished command ran.
enum Placed {
    Devices(Vec<String>),
    SlurmJob(u64),
}

/// What a finished command left, wherever it ran.
struct Ran {
    outcome: process::Outcome,
    placed: Placed,
}

/// One attempt of a process step, as the executors need it.
struct Attempt<'a> {
    run_id: RunId,
    /// Its `run_steps` row.
    row: i64,
    wf: &'a Workflow,
    step: &'a Step,
    spec: &'a ProcessSpec,
    /// Stable across attempts, so a trainer can resume from it.
    checkpoints: PathBuf,
    collector: Collector<'a>,
    /// A daemon stop leaves work outside it (a Slurm job) running, to be
    /// followed again after the restart; a cancel ends it.
    stop: &'a RunStop,
}

impl Attempt<'_> {
    /// What Coach tells the command about itself.
    fn coach_env(&self) -> [(&'static str, String); 3] {
        [
            ("COACH_RUN", self.run_id.to_string()),
            ("COACH_STEP", self.step.id.to_string()),
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

pub async fn run(ctx: &StepCtx<'_>) -> Result<Output> {
    ctx.runner
        .run_process(ctx.run, ctx.row, ctx.wf, ctx.step, ctx.reporter, ctx.stop)
        .await
}

impl Runner {
    async fn run_process(
        &self,
        run_id: RunId,
        row: i64,
        wf: &Workflow,
        step: &Step,
        reporter: &Arc<dyn Reporter>,
        stop: &RunStop,
    ) -> Result<Output> {
        let spec = step
            .process
            .as_ref()
            .ok_or_else(|| anyhow!("a process step without a command"))?;
        let checkpoints = self
            .work_dir
            .join(format!("run-{run_id}"))
            .join(step.id.as_str());
        std::fs::create_dir_all(&checkpoints)
            .with_context(|| format!("cannot create {}", checkpoints.display()))?;
        // The command runs in its workflow's folder: a relative data
        // directory (the embedded defaults' `.coach`) must not follow it.
        let checkpoints = std::path::absolute(&checkpoints)
            .with_context(|| format!("cannot resolve {}", checkpoints.display()))?;
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
            stop,
        };
        let executor = wf.executor(self.slurm.settings().default);
        let result = match executor {
            Executor::Local => self.on_local_gpus(&attempt).await,
            Executor::Slurm => self.on_slurm(&attempt).await,
        };
        let metrics = std::mem::take(&mut *attempt.collector.metrics.locked());
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
        let final_metrics: BTreeMap<String, f64> = metrics
            .iter()
            .map(|(name, value, _)| (name.clone(), *value))
            .collect();
        let (devices, slurm_job) = match ran.placed {
            Placed::Devices(d) => (d, None),
            Placed::SlurmJob(id) => (Vec::new(), Some(id)),
        };
        Ok(Output::Process(Arc::new(ProcessOutput {
            executor: match executor {
                Executor::Local => "local",
                Executor::Slurm => "slurm",
            }
            .to_owned(),
            devices,
            slurm_job,
            seconds: ran.outcome.duration.as_secs_f64(),
            metrics: metrics.len(),
            final_metrics,
            bad_lines: ran.outcome.bad_lines as u64,
            artifacts,
            checkpoint_dir: attempt.checkpoints.display().to_string(),
        })))
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
            let held_since = chrono::Utc::now();
            let devices = lease
                .as_ref()
                .map(|l| l.devices.clone())
                .unwrap_or_default();
            let not_preempted = AtomicBool::new(false);
            let preempt = lease.as_ref().map_or(&not_preempted, |l| &*l.preempt);
            tracing::info!(run = %a.run_id, step = %step.id, devices = %devices.join(","), command = ?spec.argv, "process starting");
            let gpus = self.gpus.clone();
            let pid = Mutex::new(None);
            let (pid_tx, mut pid_rx) = tokio::sync::watch::channel(None::<u32>);
            let started = |p: u32| {
                gpus.add_pid(p);
                *pid.locked() = Some(p);
                pid_tx.send_replace(Some(p));
            };
            let on_event = |ev: &Event| collector.event(ev);
            let result = {
                let running = process::run(
                    &command,
                    &devices,
                    &extra,
                    a.stop.abort_token(),
                    preempt,
                    &started,
                    &on_event,
                );
                tokio::pin!(running);
                let mut recorded = false;
                loop {
                    tokio::select! {
                        r = &mut running => break r,
                        Ok(()) = pid_rx.changed(), if !recorded => {
                            recorded = true;
                            // Kept so a process killed outright (the daemon,
                            // or `coach run`) can have its group stopped
                            // when Coach comes back.
                            let started = *pid_rx.borrow();
                            if let Some(handle) = started.and_then(process::handle)
                                && let Err(e) = self.store.set_step_handle(a.row, &handle).await
                            {
                                tracing::warn!("cannot record process group {handle}: {e:#}");
                            }
                        }
                    }
                }
            };
            if let Some(p) = *pid.locked() {
                self.gpus.remove_pid(p);
            }
            if !devices.is_empty()
                && let Err(e) = self
                    .store
                    .record_gpu_usage(
                        a.run_id.0,
                        &step.id,
                        &step.placement.queue,
                        devices.len() as u32,
                        held_since,
                        chrono::Utc::now(),
                    )
                    .await
            {
                // The step's outcome matters more than its bookkeeping.
                tracing::warn!(run = %a.run_id, step = %step.id, "cannot record GPU usage: {e:#}");
            }
            // Released only now, with nothing left to wait for before a
            // preempted step asks again: the queue never shows it gone.
            drop(lease);
            match result {
                Ok(outcome) => {
                    return Ok(Ran {
                        outcome,
                        placed: Placed::Devices(devices),
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
    async fn lease(&self, a: &Attempt<'_>) -> Result<Option<Lease>> {
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
            run: a.run_id.0,
            workflow: a.wf.name.to_string(),
            step: step.id.to_string(),
        };
        a.collector.log(
            LogLevel::Info,
            format!(
                "asking for {} GPU{}",
                r.gpus,
                if r.gpus == 1 { "" } else { "s" }
            ),
        );
        tokio::select! {
            lease = self.gpus.acquire(owner, need) => Ok(Some(lease.map_err(|never| anyhow!("it can never run on this machine: {never}"))?)),
            // Draining (the daemon stops): a step that has not started
            // does not start now; it waits again after the restart.
            () = a.stop.stopping() => Err(cancelled()),
        }
    }

    /// Hand the command to Slurm, or find the job it already has for this
    /// step (submitted before the daemon stopped), and follow it to its end.
    async fn on_slurm(&self, a: &Attempt<'_>) -> Result<Ran> {
        let (step, spec, collector) = (a.step, a.spec, &a.collector);
        let mut env = spec.env.clone();
        env.extend(a.coach_env().map(|(k, v)| (k.to_owned(), v)));
        let job = Job {
            name: slurm::job_name(a.run_id.0, &step.id),
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
                run: a.run_id.0,
                workflow: a.wf.name.to_string(),
                step: step.id.to_string(),
            },
            step.resources.gpus,
        );
        let followed = slurm::follow(
            &self.slurm,
            &job,
            id,
            a.stop,
            &|ev| collector.event(ev),
            &note,
        )
        .await;
        followed
            .map(|outcome| Ran {
                outcome,
                placed: Placed::SlurmJob(id),
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
            if a.stop.is_aborted() {
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

    /// Store a file, or every file under a folder, as artifacts (streamed,
    /// off the async threads: checkpoints run to gigabytes).
    async fn store_artifact(&self, path: &Path) -> Result<Vec<ArtifactFile>> {
        let mut files = Vec::new();
        collect_files(path, &mut files)?;
        files.sort();
        let mut out = Vec::new();
        for f in files {
            let artifacts = self.artifacts.clone();
            let file = f.clone();
            let (sha256, bytes) =
                tokio::task::spawn_blocking(move || artifacts.put_file(&file)).await??;
            out.push(ArtifactFile {
                path: f.display().to_string(),
                sha256: sha256.to_string(),
                bytes,
            });
        }
        Ok(out)
    }
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
