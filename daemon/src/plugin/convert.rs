//! Between Coach's own types and the `coach:plugin@0.1` interface's:
//! examples as the store keeps them and as plugins read and write them,
//! and log levels. A later interface version adds its own conversions here,
//! and nothing outside the host changes.

use super::bindings;
use crate::core::conversation::{Conversation, Role, Turn};
use crate::core::event::LogLevel;
use crate::core::example::{EntitySpan, Example, Split, label_problem, span_problem};

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

/// Why the host refuses an example a source produced, if it does: the
/// source's word is not taken for it.
pub fn refuse(e: &bindings::Example) -> Option<String> {
    if e.text.contains('\0') {
        return Some("its text holds a NUL character".into());
    }
    if e.text.trim().is_empty() {
        return Some("its text is empty".into());
    }
    if let Some(why) = label_problem("intent", &e.intent) {
        return Some(why);
    }
    e.entities.iter().find_map(|s| {
        span_problem(
            &e.text,
            &EntitySpan {
                entity: s.entity.clone(),
                start: s.start,
                end: s.end,
                value: String::new(),
            },
        )
    })
}

/// A conversation a source produced, in Coach's shape; or why the host
/// refuses it (an unknown role, a NUL, a turn too long: see
/// [`Conversation::refuse`]).
pub fn conversation_from_guest(c: bindings::Conversation) -> Result<Conversation, String> {
    let mut turns = Vec::with_capacity(c.messages.len());
    for (i, m) in c.messages.into_iter().enumerate() {
        let Some(role) = Role::parse(&m.role) else {
            return Err(format!(
                "turn {i}: role `{}` is not user, bot or system",
                crate::core::text::printable(&crate::core::text::clip(&m.role, 32))
            ));
        };
        let mut t = Turn::new(role, m.text);
        t.intent = m.intent;
        // A time outside the years Coach keeps (a source that sends 0
        // for "unknown") is read as unknown: the turn is kept without it,
        // not the conversation refused.
        t.at = m
            .timestamp_ms
            .and_then(chrono::DateTime::<chrono::Utc>::from_timestamp_millis)
            .filter(|at| crate::core::conversation::year_problem(*at).is_none());
        turns.push(t);
    }
    let c = Conversation {
        id: c.id,
        model: None,
        channel: None,
        outcome: None,
        turns,
        feedback: Vec::new(),
    };
    match c.refuse() {
        Some(why) => Err(why),
        None => Ok(c),
    }
}

/// A conversation as an analyzer reads it: turn feedback folded into a
/// rating and a correction per turn (the last of each).
pub fn dialogue_to_guest(
    c: &Conversation,
) -> bindings::analyzer::coach::plugin::analysis::Dialogue {
    use bindings::analyzer::coach::plugin::analysis as a;
    a::Dialogue {
        id: c.id.clone(),
        turns: c
            .turns
            .iter()
            .map(|t| a::Turn {
                role: t.role.as_str().to_owned(),
                text: t.text.clone(),
                intent: t.intent.clone(),
                confidence: t.confidence.map(|c| c as f32),
                ranking: t
                    .ranking
                    .iter()
                    .map(|r| bindings::RankedIntent {
                        intent: r.intent.clone(),
                        confidence: r.confidence as f32,
                    })
                    .collect(),
                fallback: t.fallback,
                escalation: t.escalation,
                timestamp_ms: t.at.map(|at| at.timestamp_millis()),
                rating: t.feedback.iter().rev().find_map(|f| f.rating),
                correction: t.feedback.iter().rev().find_map(|f| f.correction.clone()),
            })
            .collect(),
        outcome: c.outcome.map(|o| o.as_str().to_owned()),
        ratings: c.feedback.iter().filter_map(|f| f.rating).collect(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn message(timestamp_ms: Option<i64>) -> bindings::Message {
        bindings::Message {
            role: "user".into(),
            text: "hello".into(),
            intent: None,
            timestamp_ms,
        }
    }

    #[test]
    fn a_sources_unknown_or_stray_times_are_read_as_unknown() {
        let c = conversation_from_guest(bindings::Conversation {
            id: "c1".into(),
            messages: vec![
                message(Some(0)),
                message(Some(-5)),
                message(Some(i64::MAX)),
                message(Some(1_764_000_000_000)),
                message(None),
            ],
        })
        .unwrap();
        let times: Vec<_> = c
            .turns
            .iter()
            .map(|t| t.at.map(|a| a.timestamp()))
            .collect();
        assert_eq!(times, [None, None, None, Some(1_764_000_000), None]);
    }
}
