//! How `coach run` shows a run: a progress bar per step on a terminal,
//! plain lines otherwise (CI logs, pipes).

use crate::cli::note;
use crate::core::event::StepEvent as PluginEvent;
use crate::core::sync::Lock;
use crate::events::Reporter;
use crate::events::report::RunStart;
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
        if let Some(b) = self.bar.locked().as_ref() {
            f(b)
        }
    }
}

impl Reporter for Terminal {
    fn run_started(&self, run: RunStart<'_>) {
        note!(
            "run {}: workflow `{}` ({} steps, version {})",
            run.run,
            run.workflow,
            run.steps,
            crate::core::ids::short(run.version, 12)
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
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_prefix(step.to_owned());
            bar.set_message(format!("{action}{retry}"));
            bar.enable_steady_tick(Duration::from_millis(120));
            *self.bar.locked() = Some(bar);
        } else {
            note!("[{step}] started: {action}{retry}");
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
                    note!("{line}");
                }
            }
            PluginEvent::Log { message, .. } => {
                let line = format!("[{step}] {message}");
                if self.fancy {
                    self.with_bar(|b| b.println(line));
                } else {
                    note!("{line}");
                }
            }
        }
    }

    fn step_note(&self, step: &str, message: &str) {
        let line = format!("[{step}] warning: {message}");
        if self.fancy {
            self.with_bar(|b| b.println(line));
        } else {
            note!("{line}");
        }
    }

    fn step_skipped(&self, step: &str, reason: &str) {
        note!("[{step}] skipped: {reason}");
    }

    fn step_finished(&self, step: &str, result: Result<&str, &str>) {
        let bar = self.bar.locked().take();
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        match result {
            Ok(summary) => note!("[{step}] done: {summary}"),
            Err(e) => note!("[{step}] FAILED: {e}"),
        }
    }
}
