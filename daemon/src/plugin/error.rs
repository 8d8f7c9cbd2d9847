//! Why a plugin call failed, in words that name the plugin and the limit.

use crate::config::units::{format_duration, format_size};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum PluginFailure {
    #[error("plugin `{plugin}` is not installed (known: {known})")]
    Unknown { plugin: String, known: String },

    #[error("plugin `{plugin}` is a {actual} plugin, not a {expected}")]
    WrongKind {
        plugin: String,
        expected: String,
        actual: String,
    },

    #[error("plugin `{plugin}` cannot be loaded: {detail}")]
    Load { plugin: String, detail: String },

    #[error("plugin `{plugin}` ran past its {} deadline and was stopped", format_duration(*limit))]
    Timeout { plugin: String, limit: Duration },

    #[error("plugin `{plugin}` exceeded its {} memory limit (it asked for {})", format_size(*limit), format_size(*requested))]
    Memory {
        plugin: String,
        limit: u64,
        requested: u64,
    },

    #[error("plugin `{plugin}` wrote more than its {} output limit to stdout/stderr", format_size(*limit))]
    Output { plugin: String, limit: u64 },

    #[error("plugin `{plugin}` passed more than its {} host-call data limit (`[limits] hostcall_data`)", format_size(*limit))]
    HostcallData { plugin: String, limit: u64 },

    #[error("plugin `{plugin}` reported more than its {} of log lines, progress and metrics (`[limits] reports`)", format_size(*limit))]
    Reports { plugin: String, limit: u64 },

    #[error("plugin `{plugin}` ran out of stack (runaway recursion?): {detail}")]
    Stack { plugin: String, detail: String },

    #[error(
        "plugin `{plugin}` produced more than the {limit} a source step may (`[limits] {key}`)"
    )]
    SourceLimit {
        plugin: String,
        limit: String,
        key: &'static str,
    },

    #[error("plugin `{plugin}` broke the plugin protocol: {detail}")]
    Misbehaved { plugin: String, detail: String },

    #[error("plugin `{plugin}` was cancelled")]
    Cancelled { plugin: String },

    #[error("plugin `{plugin}` crashed: {detail}")]
    Trap { plugin: String, detail: String },

    #[error("plugin `{plugin}` reported an error ({code}): {message}")]
    Reported {
        plugin: String,
        code: String,
        message: String,
    },

    #[error("plugin `{plugin}` may not read {path}: {reason}")]
    NotGranted {
        plugin: String,
        path: String,
        reason: String,
    },
}

impl PluginFailure {
    /// The plugin that failed.
    pub fn plugin(&self) -> &str {
        match self {
            PluginFailure::Unknown { plugin, .. }
            | PluginFailure::WrongKind { plugin, .. }
            | PluginFailure::Load { plugin, .. }
            | PluginFailure::Timeout { plugin, .. }
            | PluginFailure::Memory { plugin, .. }
            | PluginFailure::Output { plugin, .. }
            | PluginFailure::HostcallData { plugin, .. }
            | PluginFailure::Reports { plugin, .. }
            | PluginFailure::Stack { plugin, .. }
            | PluginFailure::SourceLimit { plugin, .. }
            | PluginFailure::Misbehaved { plugin, .. }
            | PluginFailure::Cancelled { plugin }
            | PluginFailure::Trap { plugin, .. }
            | PluginFailure::Reported { plugin, .. }
            | PluginFailure::NotGranted { plugin, .. } => plugin,
        }
    }

    /// A short name for the failure, for metrics labels.
    pub fn reason(&self) -> &'static str {
        match self {
            PluginFailure::Unknown { .. } => "unknown",
            PluginFailure::WrongKind { .. } => "wrong_kind",
            PluginFailure::Load { .. } => "load",
            PluginFailure::Timeout { .. } => "timeout",
            PluginFailure::Memory { .. } => "memory",
            PluginFailure::Output { .. } => "output",
            PluginFailure::HostcallData { .. } => "hostcall_data",
            PluginFailure::Reports { .. } => "reports",
            PluginFailure::Stack { .. } => "stack",
            PluginFailure::SourceLimit { .. } => "source_limit",
            PluginFailure::Misbehaved { .. } => "misbehaved",
            PluginFailure::Cancelled { .. } => "cancelled",
            PluginFailure::Trap { .. } => "trap",
            PluginFailure::Reported { .. } => "reported",
            PluginFailure::NotGranted { .. } => "not_granted",
        }
    }

    /// The sandbox stopped the plugin (a limit or a crash), as opposed to the
    /// plugin reporting an error or the host refusing to start it.
    pub fn is_trap(&self) -> bool {
        matches!(
            self,
            PluginFailure::Timeout { .. }
                | PluginFailure::Memory { .. }
                | PluginFailure::Output { .. }
                | PluginFailure::HostcallData { .. }
                | PluginFailure::Reports { .. }
                | PluginFailure::Stack { .. }
                | PluginFailure::SourceLimit { .. }
                | PluginFailure::Trap { .. }
        )
    }
}
