//! What starts a workflow: a cron schedule, changes under watched paths,
//! named events, or a person (always possible). And what happens when a
//! trigger fires while a run of the workflow is active.

use std::path::PathBuf;
use std::time::Duration;

pub use crate::core::policy::Concurrency;

/// A cron fire missed while the daemon was down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CatchUp {
    /// Run once at start, however many fires were missed. The default.
    #[default]
    Once,
    /// Record the miss and wait for the next fire.
    Skip,
}

/// A cron schedule: six fields (seconds first) or seven (with years), in an
/// explicit time zone.
#[derive(Debug, Clone, PartialEq)]
pub struct Cron {
    pub expr: String,
    pub timezone: chrono_tz::Tz,
}

impl Cron {
    /// The next fire strictly after `after`.
    pub fn next_after(
        &self,
        after: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        let cron = parse_cron(&self.expr).ok()?;
        cron.find_next_occurrence(&after.with_timezone(&self.timezone), false)
            .ok()
            .map(|t| t.with_timezone(&chrono::Utc))
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Trigger {
    pub cron: Option<Cron>,
    pub catch_up: CatchUp,
    /// Folders or files whose changes start a run (absolute).
    pub watch: Vec<PathBuf>,
    /// Quiet time after the last change before a watch fires.
    pub debounce: Duration,
    /// Named events (`feedback.threshold`, …) that start a run.
    pub on: Vec<String>,
    pub concurrency: Concurrency,
    /// A condition script, checked every `check_every`: a run starts when
    /// it says so, but never sooner than `min_interval` after the last.
    pub when: Option<super::ScriptRef>,
    pub check_every: Duration,
    pub min_interval: Duration,
}

pub const DEFAULT_DEBOUNCE: Duration = Duration::from_secs(2);
pub const DEFAULT_CHECK_EVERY: Duration = Duration::from_secs(300);
pub const DEFAULT_MIN_INTERVAL: Duration = Duration::from_secs(3600);

/// Parse a cron expression exactly as the scheduler will: seconds required,
/// day-of-month and day-of-week both honoured.
pub fn parse_cron(expr: &str) -> Result<croner::Cron, String> {
    let fields = expr.split_whitespace().count();
    if !(6..=7).contains(&fields) {
        return Err(format!(
            "cron `{expr}` has {fields} fields; Coach's cron has six (seconds first: `sec min hour day month weekday`) or seven (with years)"
        ));
    }
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(expr)
        .map_err(|e| format!("cron `{expr}`: {e}"))
}
