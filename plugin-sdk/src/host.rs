//! The host's API, as plain functions.
//!
//! Inside a component these call the host's `coach:plugin/host` imports. In a
//! native build (`cargo test` of a plugin crate) they record into the
//! [`crate::testing`] harness instead, so plugin logic can be tested without
//! wasm.

pub use crate::base::coach::plugin::host::LogLevel;

/// Write a line to the host's log; the host tags it with run, step and plugin.
pub fn log(level: LogLevel, message: &str) {
    imp::log(level, message)
}

/// Log at `info`.
pub fn info(message: &str) {
    log(LogLevel::Info, message)
}

/// Log at `warn`.
pub fn warn(message: &str) {
    log(LogLevel::Warn, message)
}

/// Report progress of the current call, `fraction` in `0..=1`.
pub fn progress(fraction: f32, message: &str) {
    imp::progress(fraction.clamp(0.0, 1.0), message)
}

/// Record a metric; per-epoch metrics pass the epoch as `step`.
pub fn metric(name: &str, value: f64, step: u32) {
    imp::metric(name, value, step)
}

/// True once the host wants the current call to stop.
pub fn cancelled() -> bool {
    imp::cancelled()
}

/// Route panic messages through the host log before the guest traps, so the
/// step's error says what panicked and where.
#[cfg_attr(not(any(feature = "source", feature = "trainer")), allow(dead_code))]
pub(crate) fn install_panic_hook() {
    #[cfg(target_arch = "wasm32")]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            std::panic::set_hook(Box::new(|info| {
                log(LogLevel::Error, &format!("plugin panicked: {info}"));
            }));
        });
    }
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::LogLevel;
    use crate::base::coach::plugin::host as wit;

    pub fn log(level: LogLevel, message: &str) {
        wit::log(level, message)
    }
    pub fn progress(fraction: f32, message: &str) {
        wit::progress(fraction, message)
    }
    pub fn metric(name: &str, value: f64, step: u32) {
        wit::metric(name, value, step)
    }
    pub fn cancelled() -> bool {
        wit::cancelled()
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::LogLevel;
    use crate::testing::{Event, with_recorder};

    pub fn log(level: LogLevel, message: &str) {
        with_recorder(|r| {
            r.events.push(Event::Log {
                level,
                message: message.to_owned(),
            })
        })
    }
    pub fn progress(fraction: f32, message: &str) {
        with_recorder(|r| {
            r.events.push(Event::Progress {
                fraction,
                message: message.to_owned(),
            })
        })
    }
    pub fn metric(name: &str, value: f64, step: u32) {
        with_recorder(|r| {
            r.events.push(Event::Metric {
                name: name.to_owned(),
                value,
                step,
            })
        })
    }
    pub fn cancelled() -> bool {
        with_recorder(|r| r.cancelled)
    }
}
