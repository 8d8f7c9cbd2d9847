//! Between Coach's own types and the `coach:plugin@0.1.0` interface's:
//! examples as the store keeps them and as plugins read and write them,
//! and log levels. A later interface version adds its own conversions here,
//! and nothing outside the host changes.

use super::bindings;
use crate::core::event::LogLevel;
use crate::core::example::{EntitySpan, Example, Split};

pub fn to_guest(e: &Example) -> bindings::Example {
    bindings::Example {
        text: e.text.clone(),
        intent: e.intent.clone(),
        entities: e
            .entities
            .iter()
            .map(|s| bindings::EntitySpan {
                entity: s.entity.clone(),
                start: s.start,
                end: s.end,
                value: s.value.clone(),
            })
            .collect(),
        split: match e.split {
            Split::Train => bindings::Split::Train,
            Split::Validation => bindings::Split::Validation,
            Split::Test => bindings::Split::Test,
            Split::Unspecified => bindings::Split::Unspecified,
        },
    }
}

pub fn from_guest(e: &bindings::Example) -> Example {
    Example {
        text: e.text.clone(),
        intent: e.intent.clone(),
        entities: e
            .entities
            .iter()
            .map(|s| EntitySpan {
                entity: s.entity.clone(),
                start: s.start,
                end: s.end,
                value: s.value.clone(),
            })
            .collect(),
        split: match e.split {
            bindings::Split::Train => Split::Train,
            bindings::Split::Validation => Split::Validation,
            bindings::Split::Test => Split::Test,
            bindings::Split::Unspecified => Split::Unspecified,
        },
    }
}

pub fn log_level(l: bindings::LogLevel) -> LogLevel {
    match l {
        bindings::LogLevel::Trace => LogLevel::Trace,
        bindings::LogLevel::Debug => LogLevel::Debug,
        bindings::LogLevel::Info => LogLevel::Info,
        bindings::LogLevel::Warn => LogLevel::Warn,
        bindings::LogLevel::Error => LogLevel::Error,
    }
}
