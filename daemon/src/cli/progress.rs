//! How `coach run` shows a run: a progress bar per step on a terminal,
//! plain lines otherwise (CI logs, pipes).

use crate::pipeline::Reporter;
use crate::plugin::PluginEvent;
use crate::workflow::Workflow;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

pub struct Terminal {
    bar: Mutex<Option<ProgressBar>>,
    fancy: bool,
}

impl Terminal {
    pub fn new() -> Terminal {
        Terminal {
            bar: Mutex::new(None),
            fancy: std::io::stderr().is_terminal(),
        }
    }

    fn with_bar(&self, f: impl FnOnce(&ProgressBar)) {
        if let Some(b) = self.bar.lock().expect("progress lock").as_ref() {
            f(b)
        }
    }
}

impl Reporter for Terminal {
    fn run_started(&self, run_id: i64, wf: &Workflow) {
        eprintln!(
            "run {run_id}: workflow `{}` ({} steps, version {})",
            wf.name,
            wf.steps.len(),
            &wf.hash[..12]
        );
    }

    fn step_started(&self, step: &str, action: &str, attempt: u32) {
        let retry = if attempt > 1 {
            format!(" (attempt {attempt})")
        } else {
            String::new()
        };
        if self.fancy {
            let bar = ProgressBar::new(1000);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} {prefix:>12} [{bar:30}] {elapsed:>4} {msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_prefix(step.to_owned());
            bar.set_message(format!("{action}{retry}"));
            bar.enable_steady_tick(Duration::from_millis(120));
            *self.bar.lock().expect("progress lock") = Some(bar);
        } else {
            eprintln!("[{step}] started: {action}{retry}");
        }
    }

    fn step_event(&self, step: &str, event: &PluginEvent) {
        match event {
            PluginEvent::Progress { fraction, message } => {
                if self.fancy {
                    self.with_bar(|b| {
                        b.set_position((*fraction * 1000.0) as u64);
                        b.set_message(message.clone());
                    });
                }
            }
            PluginEvent::Metric {
                name,
                value,
                step: epoch,
            } => {
                let line = format!("[{step}] {name} = {value:.4} (epoch {epoch})");
                if self.fancy {
                    self.with_bar(|b| b.println(line));
                } else {
                    eprintln!("{line}");
                }
            }
            PluginEvent::Log { message, .. } => {
                let line = format!("[{step}] {message}");
                if self.fancy {
                    self.with_bar(|b| b.println(line));
                } else {
                    eprintln!("{line}");
                }
            }
        }
    }

    fn step_note(&self, step: &str, message: &str) {
        let line = format!("[{step}] warning: {message}");
        if self.fancy {
            self.with_bar(|b| b.println(line));
        } else {
            eprintln!("{line}");
        }
    }

    fn step_skipped(&self, step: &str, reason: &str) {
        eprintln!("[{step}] skipped: {reason}");
    }

    fn step_finished(&self, step: &str, result: Result<&str, &str>) {
        let bar = self.bar.lock().expect("progress lock").take();
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        match result {
            Ok(summary) => eprintln!("[{step}] done: {summary}"),
            Err(e) => eprintln!("[{step}] FAILED: {e}"),
        }
    }
}
