//! How a run is asked to stop, as one tree of cancellation tokens.
//!
//! The executor holds a `drain` and an `abort` token; every run it starts
//! gets children of both, so one call reaches every run. `drain` means
//! "finish the step that is running, start no other"; `abort` means "stop
//! the running step's work now" (plugin calls end at their next epoch,
//! processes get SIGTERM). Why a run stopped decides its end: a person's
//! cancel ends it `cancelled`; the daemon's own stop interrupts it, and it
//! resumes at the next start.

use std::sync::{Arc, OnceLock};
use tokio_util::sync::CancellationToken;

/// Why a run was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// Someone cancelled it (`coach cancel`, the API, Ctrl-C).
    Cancelled,
    /// The daemon is stopping; the run resumes at its next start.
    Shutdown,
}

/// The stop controls of one run (or of all runs, for the executor).
#[derive(Debug, Clone, Default)]
pub struct RunStop {
    drain: CancellationToken,
    abort: CancellationToken,
    reason: Arc<OnceLock<StopReason>>,
}

impl RunStop {
    pub fn new() -> RunStop {
        RunStop::default()
    }

    /// Controls whose drain and abort are both children of `root`:
    /// cancelling `root` aborts (for [`StopReason::Shutdown`]) everything
    /// under them.
    pub fn under(root: &CancellationToken) -> RunStop {
        RunStop {
            drain: root.child_token(),
            abort: root.child_token(),
            reason: Arc::new(OnceLock::new()),
        }
    }

    /// Controls for one run under these: stopping these stops it too.
    pub fn child(&self) -> RunStop {
        RunStop {
            drain: self.drain.child_token(),
            abort: self.abort.child_token(),
            reason: Arc::new(OnceLock::new()),
        }
    }

    /// Stop now, for `reason` (the first reason given to these controls
    /// stands; a child stopped through its parent stops for
    /// [`StopReason::Shutdown`] unless given a reason of its own).
    pub fn abort(&self, reason: StopReason) {
        let _ = self.reason.set(reason);
        self.drain.cancel();
        self.abort.cancel();
    }

    /// Let the running step finish; start no other. A drained run is
    /// interrupted (it resumes later).
    pub fn drain(&self) {
        let _ = self.reason.set(StopReason::Shutdown);
        self.drain.cancel();
    }

    /// The token plugin calls and processes watch.
    pub fn abort_token(&self) -> &CancellationToken {
        &self.abort
    }

    pub fn is_aborted(&self) -> bool {
        self.abort.is_cancelled()
    }

    /// Asked to stop at all (drain or abort).
    pub fn is_stopping(&self) -> bool {
        self.drain.is_cancelled() || self.abort.is_cancelled()
    }

    /// Why it was asked to stop; `None` while it was not. A run stopped
    /// through its parent (the executor's shutdown) stops for
    /// [`StopReason::Shutdown`].
    pub fn reason(&self) -> Option<StopReason> {
        if !self.is_stopping() {
            return None;
        }
        Some(self.reason.get().copied().unwrap_or(StopReason::Shutdown))
    }

    /// Wait until asked to stop now.
    pub async fn aborted(&self) {
        self.abort.cancelled().await
    }

    /// Wait until asked to stop at all.
    pub async fn stopping(&self) {
        self.drain.cancelled().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancel_is_the_runs_own_a_parents_stop_is_a_shutdown() {
        let all = RunStop::new();
        let (a, b) = (all.child(), all.child());
        a.abort(StopReason::Cancelled);
        assert_eq!(a.reason(), Some(StopReason::Cancelled));
        assert_eq!(b.reason(), None);
        all.drain();
        assert!(b.is_stopping() && !b.is_aborted());
        assert_eq!(b.reason(), Some(StopReason::Shutdown));
        all.abort(StopReason::Shutdown);
        assert!(b.is_aborted());
        // The first reason stands.
        assert_eq!(a.reason(), Some(StopReason::Cancelled));
    }
}
