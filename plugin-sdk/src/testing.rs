//! A native stand-in for the host, for unit tests of plugin logic.
//!
//! In a native build every [`crate::host`] call is recorded here, per thread.
//! Tests read what the plugin reported and can ask it to stop:
//!
//! ```
//! use coach_plugin_sdk::{host, testing};
//!
//! testing::reset();
//! host::metric("loss", 0.5, 1);
//! assert_eq!(testing::metrics("loss"), vec![(1, 0.5)]);
//! testing::set_cancelled(true);
//! assert!(host::cancelled());
//! ```

use crate::host::LogLevel;
use std::cell::RefCell;

/// One call a plugin made to the host.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Log { level: LogLevel, message: String },
    Progress { fraction: f32, message: String },
    Metric { name: String, value: f64, step: u32 },
}

#[derive(Debug, Default)]
pub(crate) struct Recorder {
    pub(crate) events: Vec<Event>,
    pub(crate) cancelled: bool,
}

thread_local! {
    static RECORDER: RefCell<Recorder> = RefCell::new(Recorder::default());
}

#[allow(dead_code)] // used by the native host stand-in only
pub(crate) fn with_recorder<R>(f: impl FnOnce(&mut Recorder) -> R) -> R {
    RECORDER.with(|r| f(&mut r.borrow_mut()))
}

/// Forget everything recorded on this thread and clear the cancel flag.
pub fn reset() {
    with_recorder(|r| *r = Recorder::default())
}

/// Make [`crate::host::cancelled`] return `value` on this thread.
pub fn set_cancelled(value: bool) {
    with_recorder(|r| r.cancelled = value)
}

/// Everything recorded on this thread, in order.
pub fn events() -> Vec<Event> {
    with_recorder(|r| r.events.clone())
}

/// `(step, value)` of every metric named `name`, in order.
pub fn metrics(name: &str) -> Vec<(u32, f64)> {
    with_recorder(|r| {
        r.events
            .iter()
            .filter_map(|e| match e {
                Event::Metric {
                    name: n,
                    value,
                    step,
                } if n == name => Some((*step, *value)),
                _ => None,
            })
            .collect()
    })
}

/// Messages logged on this thread at `level` or above.
pub fn logs(min: LogLevel) -> Vec<String> {
    let rank = |l: &LogLevel| match l {
        LogLevel::Trace => 0,
        LogLevel::Debug => 1,
        LogLevel::Info => 2,
        LogLevel::Warn => 3,
        LogLevel::Error => 4,
    };
    with_recorder(|r| {
        r.events
            .iter()
            .filter_map(|e| match e {
                Event::Log { level, message } if rank(level) >= rank(&min) => Some(message.clone()),
                _ => None,
            })
            .collect()
    })
}

/// A dialogue for an analyzer's tests: `turns` as `(role, text)` pairs
/// (`user`, `bot`, `system`), nothing else known.
///
/// ```
/// # #[cfg(feature = "analyzer")] {
/// let d = coach_plugin_sdk::testing::dialogue("c-1", &[("user", "hi"), ("bot", "hello")]);
/// assert_eq!(d.turns[1].role, "bot");
/// # }
/// ```
#[cfg(feature = "analyzer")]
pub fn dialogue(id: &str, turns: &[(&str, &str)]) -> crate::analysis::Dialogue {
    crate::analysis::Dialogue {
        id: id.to_owned(),
        turns: turns
            .iter()
            .map(|(role, text)| crate::analysis::Turn {
                role: (*role).to_owned(),
                text: (*text).to_owned(),
                intent: None,
                confidence: None,
                ranking: Vec::new(),
                fallback: false,
                escalation: false,
                timestamp_ms: None,
                rating: None,
                correction: None,
            })
            .collect(),
        outcome: None,
        ratings: Vec::new(),
    }
}
