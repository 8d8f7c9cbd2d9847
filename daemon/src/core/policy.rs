//! Policies shared by the layers that decide and the layers that act.

/// What to do when a trigger fires while a run of the workflow is queued or
/// running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Concurrency {
    /// Start another run beside it.
    Allow,
    /// Skip the fire (it is recorded as skipped).
    Forbid,
    /// Queue the run; runs of the workflow go one at a time. The default:
    /// nothing is dropped and nothing overlaps.
    #[default]
    Queue,
}
