//! The states a run and a step attempt go through. They are the store's
//! column types too (text columns holding the snake-case names), so a
//! state the code does not know can never be written.

use sea_orm::entity::prelude::StringLen;
use sea_orm::{DeriveActiveEnum, EnumIter};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Where a run is.
///
/// ```text
/// queued ──► running ──► succeeded | failed | cancelled
///   ▲           │
///   └───────────┘ the daemon stopped under it: queued again, resumes
/// running ──► interrupted   a `coach run` process died under it
/// ```
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(
    rs_type = "String",
    db_type = "String(StringLen::None)",
    rename_all = "snake_case"
)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Written, waiting for the executor.
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// Its process is gone and nobody will resume it (a `coach run` that
    /// was killed); the daemon's own interrupted runs go back to `queued`.
    Interrupted,
}

impl RunState {
    pub const ALL: [RunState; 6] = [
        RunState::Queued,
        RunState::Running,
        RunState::Succeeded,
        RunState::Failed,
        RunState::Cancelled,
        RunState::Interrupted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
            RunState::Interrupted => "interrupted",
        }
    }

    /// Queued or running: what the concurrency policy counts.
    pub fn is_active(self) -> bool {
        matches!(self, RunState::Queued | RunState::Running)
    }
}

/// Where a step attempt (a task) is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(
    rs_type = "String",
    db_type = "String(StringLen::None)",
    rename_all = "snake_case"
)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// Did not run: a gate before it said no, a step it needs was skipped,
    /// or its `when` was false.
    Skipped,
    /// The daemon stopped while it ran (crash or shutdown); the run
    /// resumes at this step and the attempt does not count as a failure.
    Interrupted,
}

impl StepState {
    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Running => "running",
            StepState::Succeeded => "succeeded",
            StepState::Failed => "failed",
            StepState::Cancelled => "cancelled",
            StepState::Skipped => "skipped",
            StepState::Interrupted => "interrupted",
        }
    }
}

macro_rules! text_enum {
    ($t:ty, $what:literal, [$($v:expr),+]) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $t {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, String> {
                let all = [$($v),+];
                all.iter().copied().find(|v| v.as_str() == s).ok_or_else(|| {
                    format!(
                        concat!("`{}` is not a ", $what, "; expected one of: {}"),
                        s,
                        all.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
                    )
                })
            }
        }
    };
}

text_enum!(
    RunState,
    "run state",
    [
        RunState::Queued,
        RunState::Running,
        RunState::Succeeded,
        RunState::Failed,
        RunState::Cancelled,
        RunState::Interrupted
    ]
);
text_enum!(
    StepState,
    "step state",
    [
        StepState::Running,
        StepState::Succeeded,
        StepState::Failed,
        StepState::Cancelled,
        StepState::Skipped,
        StepState::Interrupted
    ]
);

/// What started a run, or what a trigger fire was.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(
    rs_type = "String",
    db_type = "String(StringLen::None)",
    rename_all = "kebab-case"
)]
#[serde(rename_all = "kebab-case")]
pub enum TriggerKind {
    /// `coach run`, in its own process.
    Cli,
    /// A person, through the API or `coach trigger`.
    Manual,
    Cron,
    Watch,
    /// A `[trigger] when` script said so.
    Condition,
    /// A cron fire missed while the daemon was down, run at start.
    CatchUp,
}

impl TriggerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerKind::Cli => "cli",
            TriggerKind::Manual => "manual",
            TriggerKind::Cron => "cron",
            TriggerKind::Watch => "watch",
            TriggerKind::Condition => "condition",
            TriggerKind::CatchUp => "catch-up",
        }
    }
}

/// What came of a trigger fire.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(
    rs_type = "String",
    db_type = "String(StringLen::None)",
    rename_all = "snake_case"
)]
#[serde(rename_all = "snake_case")]
pub enum FireOutcome {
    /// A run was queued.
    Queued,
    /// The workflow's concurrency policy said no (`forbid`).
    Skipped,
    /// Something stopped it (an invalid workflow, the daemon stopping).
    Failed,
    /// A cron fire missed while the daemon was down and not caught up.
    Missed,
}

impl FireOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            FireOutcome::Queued => "queued",
            FireOutcome::Skipped => "skipped",
            FireOutcome::Failed => "failed",
            FireOutcome::Missed => "missed",
        }
    }
}

text_enum!(
    TriggerKind,
    "trigger kind",
    [
        TriggerKind::Cli,
        TriggerKind::Manual,
        TriggerKind::Cron,
        TriggerKind::Watch,
        TriggerKind::Condition,
        TriggerKind::CatchUp
    ]
);
text_enum!(
    FireOutcome,
    "fire outcome",
    [
        FireOutcome::Queued,
        FireOutcome::Skipped,
        FireOutcome::Failed,
        FireOutcome::Missed
    ]
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_read_back_what_they_write() {
        for s in RunState::ALL {
            assert_eq!(s.to_string().parse::<RunState>(), Ok(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert!("done".parse::<RunState>().unwrap_err().contains("queued"));
        assert_eq!("skipped".parse::<StepState>(), Ok(StepState::Skipped));
    }
}
