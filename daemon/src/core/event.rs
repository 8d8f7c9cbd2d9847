//! What a step's work reports while it runs — a plugin through its host
//! calls, a process through its progress protocol — in one vocabulary.

use serde::Serialize;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something a step reported during its work.
#[derive(Debug, Clone, PartialEq)]
pub enum StepEvent {
    Log {
        level: LogLevel,
        message: String,
    },
    Progress {
        fraction: f32,
        message: String,
    },
    /// `step` is the epoch (or other counter) the value belongs to.
    Metric {
        name: String,
        value: f64,
        step: u32,
    },
}
