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

/// Longest intent or entity name the host keeps, in bytes.
pub const MAX_LABEL: usize = 128;

/// Why the host refuses an example a source produced, if it does: the
/// source's word is not taken for it.
pub fn refuse(e: &bindings::Example) -> Option<String> {
    let label = |what: &str, name: &str| -> Option<String> {
        if name.trim().is_empty() {
            return Some(format!("its {what} is empty"));
        }
        if name.chars().any(char::is_control) {
            return Some(format!(
                "its {what} `{}` holds control characters",
                crate::core::text::printable(&crate::core::text::clip(name, 64))
            ));
        }
        (name.len() > MAX_LABEL).then(|| format!("its {what} is longer than {MAX_LABEL} bytes"))
    };
    if e.text.contains('\0') {
        return Some("its text holds a NUL character".into());
    }
    if e.text.trim().is_empty() {
        return Some("its text is empty".into());
    }
    if let Some(why) = label("intent", &e.intent) {
        return Some(why);
    }
    for s in &e.entities {
        if let Some(why) = label("entity name", &s.entity) {
            return Some(why);
        }
        let (start, end) = (s.start as usize, s.end as usize);
        let name = crate::core::text::printable(&s.entity);
        if end <= start {
            return Some(format!(
                "entity `{name}` ends (byte {end}) before it starts (byte {start})"
            ));
        }
        if end > e.text.len() {
            return Some(format!(
                "entity `{name}` ends at byte {end}, past the text's {} bytes",
                e.text.len()
            ));
        }
        if !e.text.is_char_boundary(start) || !e.text.is_char_boundary(end) {
            return Some(format!(
                "entity `{name}` starts or ends inside a character (bytes {start}..{end})"
            ));
        }
    }
    None
}

/// The bytes an example takes, for the source limits.
pub fn size(e: &bindings::Example) -> u64 {
    (e.text.len()
        + e.intent.len()
        + e.entities
            .iter()
            .map(|s| s.entity.len() + s.value.len() + 8)
            .sum::<usize>()) as u64
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
