//! The `process` step: wait for the GPUs the scheduler allocates, run the
//! command on them (`executor::process`), store its metrics and the files
//! it names as artifacts.

use super::{Output, Reporter, Runner};
use crate::executor::gpus::{Need, Owner};
use crate::executor::process::{self, Event};
use crate::plugin::PluginEvent;
use crate::plugin::bindings::LogLevel;
use crate::workflow::{Step, Workflow};
use anyhow::{Context, Result, anyhow};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

impl Runner {
    pub(super) async fn run_process(
        &self,
        run_id: i64,
        wf: &Workflow,
        step: &Step,
        reporter: &Arc<dyn Reporter>,
        cancel: &Arc<AtomicBool>,
    ) -> Result<Output> {
        let spec = step
            .process
            .as_ref()
            .ok_or_else(|| anyhow!("a process step without a command"))?;
        let r = &step.resources;
        let lease = if r.gpus == 0 {
            None
        } else {
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
                run: run_id,
                workflow: wf.name.clone(),
                step: step.id.clone(),
            };
            reporter.step_event(
                &step.id,
                &PluginEvent::Log {
                    level: LogLevel::Info,
                    message: format!(
                        "asking for {} GPU{}",
                        r.gpus,
                        if r.gpus == 1 { "" } else { "s" }
                    ),
                },
            );
            let acquire = self.gpus.acquire(owner, need);
            tokio::pin!(acquire);
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tokio::select! {
                    lease = &mut acquire => break Some(lease.map_err(|never| anyhow!("it can never run on this machine: {never}"))?),
                    _ = tick.tick() => if cancel.load(Ordering::Relaxed) {
                        return Err(anyhow!(crate::plugin::PluginFailure::Cancelled { plugin: "process".into() }));
                    }
                }
            }
        };
        let devices = lease
            .as_ref()
            .map(|l| l.devices.clone())
            .unwrap_or_default();
        let checkpoints = self.work_dir.join(format!("run-{run_id}")).join(&step.id);
        std::fs::create_dir_all(&checkpoints)
            .with_context(|| format!("cannot create {}", checkpoints.display()))?;
        let command = process::Command {
            argv: spec.argv.clone(),
            workdir: spec.workdir.clone(),
            env: spec.env.clone(),
            timeout: step.timeout,
            grace: self.process_grace,
        };
        let extra = [
            ("COACH_RUN", run_id.to_string()),
            ("COACH_STEP", step.id.clone()),
            ("COACH_CHECKPOINT_DIR", checkpoints.display().to_string()),
        ];
        tracing::info!(run = run_id, step = %step.id, devices = %devices.join(","), command = ?spec.argv, "process starting");
        let metrics: Mutex<Vec<(String, f64, u32)>> = Mutex::new(Vec::new());
        let gpus = self.gpus.clone();
        let pid = Mutex::new(None);
        let on_event = |ev: &Event| {
            let log = |level, message: String| {
                reporter.step_event(&step.id, &PluginEvent::Log { level, message })
            };
            match ev {
                Event::Progress { fraction, message } => reporter.step_event(
                    &step.id,
                    &PluginEvent::Progress {
                        fraction: *fraction as f32,
                        message: message.clone(),
                    },
                ),
                Event::Metric {
                    name,
                    value,
                    step: s,
                } => {
                    metrics
                        .lock()
                        .expect("metrics lock")
                        .push((name.clone(), *value, *s));
                    reporter.step_event(
                        &step.id,
                        &PluginEvent::Metric {
                            name: name.clone(),
                            value: *value,
                            step: *s,
                        },
                    );
                }
                Event::Artifact(p) => log(LogLevel::Info, format!("artifact {}", p.display())),
                Event::Output(line) => log(LogLevel::Info, line.clone()),
                Event::Stderr(line) => log(LogLevel::Warn, line.clone()),
                Event::Bad { line, problem } => log(
                    LogLevel::Warn,
                    format!("stdout line {line} breaks the progress protocol ({problem}); ignored"),
                ),
            }
        };
        let started = |p: u32| {
            gpus.add_pid(p);
            *pid.lock().expect("pid lock") = Some(p);
        };
        let result = process::run(&command, &devices, &extra, cancel, &started, &on_event).await;
        if let Some(p) = *pid.lock().expect("pid lock") {
            self.gpus.remove_pid(p);
        }
        drop(lease);
        let metrics = std::mem::take(&mut *metrics.lock().expect("metrics lock"));
        self.store.add_metrics(run_id, &step.id, &metrics).await?;
        let outcome = match result {
            Ok(o) => o,
            Err(process::Failure::Cancelled) => {
                return Err(anyhow!(crate::plugin::PluginFailure::Cancelled {
                    plugin: "process".into()
                }));
            }
            Err(e) => return Err(anyhow!("`{}` {e}", spec.argv[0])),
        };
        let mut artifacts = Vec::new();
        for a in &outcome.artifacts {
            let path = process::resolve_artifact(&spec.workdir, a);
            artifacts.extend(self.store_artifact(&path).with_context(|| {
                format!("cannot store the artifact {} it named", path.display())
            })?);
        }
        Ok(Output::Process(Arc::new(json!({
            "devices": devices,
            "seconds": outcome.duration.as_secs_f64(),
            "metrics": metrics.len(),
            "bad_lines": outcome.bad_lines,
            "artifacts": artifacts,
            "checkpoint_dir": checkpoints.display().to_string(),
        }))))
    }

    /// Store a file, or every file under a folder, as artifacts.
    fn store_artifact(&self, path: &Path) -> Result<Vec<Value>> {
        let mut files = Vec::new();
        collect_files(path, &mut files)?;
        files.sort();
        files
            .into_iter()
            .map(|f| {
                let bytes =
                    std::fs::read(&f).with_context(|| format!("cannot read {}", f.display()))?;
                let sha256 = self.artifacts.put(&bytes)?;
                Ok(json!({"path": f.display().to_string(), "sha256": sha256, "bytes": bytes.len()}))
            })
            .collect()
    }
}

fn collect_files(path: &Path, out: &mut Vec<std::path::PathBuf>) -> Result<()> {
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
