//! Conversation files Coach reads (`coach conversations import`,
//! `coach analyze --input`) and writes (`export`):
//!
//! - **Coach JSONL**: one [`Conversation`] per line, as `export` writes it
//!   (`{"id", "model"?, "channel"?, "outcome"?, "turns": [{"role", "text",
//!   …}], "feedback"?}`); `source-files`' conversation lines
//!   (`{"conversation", "messages"}`) are read too.
//! - **Rasa tracker dumps**: a tracker (`{"sender_id", "events"}`), an
//!   array of them, or JSON lines of trackers or of events that carry
//!   `sender_id` (the event broker's shape). User events give the text and
//!   `parse_data` (intent, ranking, entities); `nlu_fallback` or an
//!   `action_default_fallback` marks a fallback.
//! - **CSV of turns**: a header naming `conversation_id`, `role`, `text`
//!   and optionally `model`, `channel`, `intent`, `confidence`, `fallback`,
//!   `at`, `rating`, `correction`; rows of one conversation in order.
//!
//! Every problem is reported with its line, and a file with any is not
//! read at all.

use super::{Conversation, Feedback, Outcome, Ranked, Role, Turn};
use crate::core::example::EntitySpan;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// The formats [`parse`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Coach JSONL (what `export` writes).
    Coach,
    /// Rasa tracker-store dumps.
    Rasa,
    /// A CSV of turns.
    Csv,
}

impl Format {
    /// The format a file's name and first bytes suggest.
    pub fn guess(name: &str, text: &str) -> Format {
        if name.ends_with(".csv") {
            return Format::Csv;
        }
        let first = text.trim_start().lines().next().unwrap_or("");
        if first.contains("\"sender_id\"") || first.trim_start().starts_with('[') {
            return Format::Rasa;
        }
        Format::Coach
    }
}

/// A located problem: the 1-based line and what is wrong there.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub line: usize,
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.what)
    }
}

/// Most problems collected before reading stops.
const MAX_PROBLEMS: usize = 20;

/// Read conversations from `text` in `format`: every conversation, or
/// every problem (up to 20) with its line.
pub fn parse(format: Format, text: &str) -> Result<Vec<Conversation>, Vec<Problem>> {
    let mut problems = Vec::new();
    let found = match format {
        Format::Coach => coach_jsonl(text, &mut problems),
        Format::Rasa => rasa(text, &mut problems),
        Format::Csv => csv_turns(text, &mut problems),
    };
    // Conversations are checked as they would be from any outside source.
    for (line, c) in &found {
        if let Some(why) = c.refuse() {
            problems.push(Problem {
                line: *line,
                what: format!(
                    "conversation `{}`: {why}",
                    crate::core::text::printable(&crate::core::text::clip(&c.id, 64))
                ),
            });
        }
    }
    if problems.is_empty() {
        Ok(found.into_iter().map(|(_, c)| c).collect())
    } else {
        problems.truncate(MAX_PROBLEMS);
        Err(problems)
    }
}

fn problem(problems: &mut Vec<Problem>, line: usize, what: impl Into<String>) {
    if problems.len() < MAX_PROBLEMS {
        problems.push(Problem {
            line,
            what: what.into(),
        });
    }
}

/// `source-files`' conversation line.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FilesConversation {
    conversation: String,
    messages: Vec<FilesMessage>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FilesMessage {
    role: String,
    text: String,
    #[serde(default)]
    intent: Option<String>,
    #[serde(default)]
    timestamp_ms: Option<i64>,
}

/// The JSON values of `text`'s non-empty lines with their line numbers;
/// a line that is not JSON is a problem.
fn json_lines(text: &str, problems: &mut Vec<Problem>) -> Vec<(usize, Value)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(v) => out.push((i + 1, v)),
            Err(e) => problem(problems, i + 1, format!("not JSON: {e}")),
        }
    }
    out
}

fn coach_jsonl(text: &str, problems: &mut Vec<Problem>) -> Vec<(usize, Conversation)> {
    let mut out = Vec::new();
    for (n, value) in json_lines(text, problems) {
        if value.get("conversation").is_some() {
            match serde_json::from_value::<FilesConversation>(value) {
                Ok(c) => {
                    let mut turns = Vec::new();
                    for m in c.messages {
                        let Some(role) = Role::parse(&m.role) else {
                            problem(
                                problems,
                                n,
                                format!("role `{}` is not user, bot or system", m.role),
                            );
                            continue;
                        };
                        let mut t = Turn::new(role, m.text);
                        t.intent = m.intent;
                        t.at = m
                            .timestamp_ms
                            .and_then(DateTime::<Utc>::from_timestamp_millis);
                        turns.push(t);
                    }
                    out.push((n, bare(c.conversation, turns)));
                }
                Err(e) => problem(problems, n, format!("not a conversation: {e}")),
            }
            continue;
        }
        match serde_json::from_value::<Conversation>(value) {
            Ok(c) => out.push((n, c)),
            Err(e) => problem(problems, n, format!("not a conversation: {e}")),
        }
    }
    out
}

fn bare(id: String, turns: Vec<Turn>) -> Conversation {
    Conversation {
        id,
        model: None,
        channel: None,
        outcome: None,
        turns,
        feedback: Vec::new(),
    }
}

fn rasa_time(v: &Value) -> Option<DateTime<Utc>> {
    let secs = v.get("timestamp")?.as_f64()?;
    DateTime::<Utc>::from_timestamp_millis((secs * 1000.0) as i64)
}

/// Add one Rasa event to `c`.
fn rasa_event(c: &mut Conversation, e: &Value) {
    match e.get("event").and_then(Value::as_str) {
        Some("user") => {
            let text = e.get("text").and_then(Value::as_str).unwrap_or("");
            let mut t = Turn::new(Role::User, text);
            t.at = rasa_time(e);
            if let Some(p) = e.get("parse_data") {
                let intent = &p["intent"];
                t.intent = intent["name"].as_str().map(str::to_owned);
                t.confidence = intent["confidence"].as_f64().map(|c| c.clamp(0.0, 1.0));
                t.ranking = p["intent_ranking"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .take(10)
                    .filter_map(|r| {
                        Some(Ranked {
                            intent: r["name"].as_str()?.to_owned(),
                            // Rasa's cosine confidences go below 0.
                            confidence: r["confidence"].as_f64()?.clamp(0.0, 1.0),
                        })
                    })
                    .collect();
                let entities = p["entities"].as_array().map_or(&[][..], Vec::as_slice);
                // Rasa counts characters; Coach's spans are bytes.
                let bytes: Vec<usize> = if entities.is_empty() {
                    Vec::new()
                } else {
                    text.char_indices()
                        .map(|(b, _)| b)
                        .chain([text.len()])
                        .collect()
                };
                t.entities = entities
                    .iter()
                    .filter_map(|x| {
                        let byte = |key: &str| {
                            let n = usize::try_from(x[key].as_u64()?).ok()?;
                            u32::try_from(*bytes.get(n)?).ok()
                        };
                        Some(EntitySpan {
                            entity: x["entity"].as_str()?.to_owned(),
                            start: byte("start")?,
                            end: byte("end")?,
                            value: match &x["value"] {
                                Value::String(s) => s.clone(),
                                other => other.to_string(),
                            },
                        })
                    })
                    .filter(|s| crate::core::example::span_problem(text, s).is_none())
                    .take(super::MAX_RANKED)
                    .collect();
                t.fallback = t.intent.as_deref() == Some("nlu_fallback");
            }
            c.turns.push(t);
        }
        Some("bot") => {
            let mut t = Turn::new(
                Role::Bot,
                e.get("text").and_then(Value::as_str).unwrap_or(""),
            );
            t.at = rasa_time(e);
            c.turns.push(t);
        }
        Some("action") => {
            let name = e.get("name").and_then(Value::as_str).unwrap_or("");
            if (name == "action_default_fallback" || name == "action_two_stage_fallback")
                && let Some(t) = c.turns.iter_mut().rev().find(|t| t.role == Role::User)
            {
                t.fallback = true;
            }
        }
        _ => {}
    }
}

fn rasa_tracker(v: &Value) -> Option<Conversation> {
    let id = v.get("sender_id")?.as_str()?.to_owned();
    let mut c = bare(id, Vec::new());
    for e in v.get("events")?.as_array()? {
        rasa_event(&mut c, e);
    }
    Some(c)
}

fn rasa(text: &str, problems: &mut Vec<Problem>) -> Vec<(usize, Conversation)> {
    let head = text.trim_start();
    // A whole JSON document: one tracker or an array of them.
    if head.starts_with('[')
        || (head.starts_with('{') && serde_json::from_str::<Value>(head).is_ok())
    {
        return match serde_json::from_str::<Value>(head) {
            Ok(Value::Array(trackers)) => trackers
                .iter()
                .enumerate()
                .filter_map(|(i, t)| {
                    let c = rasa_tracker(t);
                    if c.is_none() {
                        problem(
                            problems,
                            1,
                            format!("tracker {i} has no `sender_id` or `events`"),
                        );
                    }
                    c.map(|c| (1, c))
                })
                .collect(),
            Ok(t) => match rasa_tracker(&t) {
                Some(c) => vec![(1, c)],
                None => {
                    problem(problems, 1, "a tracker needs `sender_id` and `events`");
                    Vec::new()
                }
            },
            Err(e) => {
                problem(problems, e.line(), format!("not JSON: {e}"));
                Vec::new()
            }
        };
    }
    // JSON lines: trackers, or events carrying their `sender_id`.
    let mut order: Vec<String> = Vec::new();
    let mut by_sender: BTreeMap<String, (usize, Conversation)> = BTreeMap::new();
    let mut out = Vec::new();
    for (n, v) in json_lines(text, problems) {
        if v.get("events").is_some() {
            match rasa_tracker(&v) {
                Some(c) => out.push((n, c)),
                None => problem(problems, n, "a tracker needs `sender_id` and `events`"),
            }
            continue;
        }
        let Some(sender) = v.get("sender_id").and_then(Value::as_str) else {
            problem(problems, n, "an event without `sender_id`");
            continue;
        };
        let entry = by_sender.entry(sender.to_owned()).or_insert_with(|| {
            order.push(sender.to_owned());
            (n, bare(sender.to_owned(), Vec::new()))
        });
        rasa_event(&mut entry.1, &v);
    }
    for s in order {
        if let Some(c) = by_sender.remove(&s) {
            out.push(c);
        }
    }
    out
}

fn csv_turns(text: &str, problems: &mut Vec<Problem>) -> Vec<(usize, Conversation)> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .from_reader(text.as_bytes());
    let header = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            problem(problems, 1, format!("no header: {e}"));
            return Vec::new();
        }
    };
    let col = |name: &str| header.iter().position(|h| h.trim() == name);
    let (Some(id_col), Some(role_col), Some(text_col)) =
        (col("conversation_id"), col("role"), col("text"))
    else {
        problem(
            problems,
            1,
            "the header must name `conversation_id`, `role` and `text`",
        );
        return Vec::new();
    };
    let known = [
        "conversation_id",
        "role",
        "text",
        "model",
        "channel",
        "intent",
        "confidence",
        "fallback",
        "at",
        "rating",
        "correction",
        "outcome",
    ];
    for h in header.iter() {
        if !known.contains(&h.trim()) {
            problem(
                problems,
                1,
                format!("unknown column `{}`; known: {}", h.trim(), known.join(", ")),
            );
        }
    }
    let optional = |name| col(name);
    let (model, channel, intent, confidence, fallback, at, rating, correction, outcome) = (
        optional("model"),
        optional("channel"),
        optional("intent"),
        optional("confidence"),
        optional("fallback"),
        optional("at"),
        optional("rating"),
        optional("correction"),
        optional("outcome"),
    );
    let mut order: Vec<String> = Vec::new();
    let mut by_id: BTreeMap<String, (usize, Conversation)> = BTreeMap::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line() as usize);
                problem(problems, line, format!("not a CSV row: {e}"));
                continue;
            }
        };
        let n = record.position().map_or(0, |p| p.line() as usize);
        let get = |c: Option<usize>| {
            c.and_then(|c| record.get(c))
                .map(str::trim)
                .filter(|s| !s.is_empty())
        };
        let id = record.get(id_col).unwrap_or("").trim().to_owned();
        let Some(role) = Role::parse(record.get(role_col).unwrap_or("").trim()) else {
            problem(problems, n, "`role` must be user, bot or system");
            continue;
        };
        let mut t = Turn::new(role, record.get(text_col).unwrap_or(""));
        t.intent = get(intent).map(str::to_owned);
        if let Some(c) = get(confidence) {
            match c.parse::<f64>() {
                Ok(c) => t.confidence = Some(c),
                Err(_) => problem(problems, n, format!("`confidence` `{c}` is not a number")),
            }
        }
        if let Some(f) = get(fallback) {
            match f {
                "true" | "1" | "yes" => t.fallback = true,
                "false" | "0" | "no" => {}
                _ => problem(
                    problems,
                    n,
                    format!("`fallback` `{f}` is not true or false"),
                ),
            }
        }
        if let Some(a) = get(at) {
            match DateTime::parse_from_rfc3339(a) {
                Ok(a) => t.at = Some(a.with_timezone(&Utc)),
                Err(e) => problem(
                    problems,
                    n,
                    format!("`at` `{a}` is not an RFC 3339 time: {e}"),
                ),
            }
        }
        let rated = match get(rating) {
            None => None,
            Some("1") | Some("+1") => Some(1),
            Some("-1") => Some(-1),
            Some(r) => {
                problem(problems, n, format!("`rating` `{r}` is not 1 or -1"));
                None
            }
        };
        let corrected = get(correction).map(str::to_owned);
        if rated.is_some() || corrected.is_some() {
            t.feedback.push(Feedback {
                rating: rated,
                correction: corrected,
                comment: None,
                escalation: false,
                at: t.at.unwrap_or_else(Utc::now),
            });
        }
        let entry = by_id.entry(id.clone()).or_insert_with(|| {
            order.push(id.clone());
            (n, bare(id.clone(), Vec::new()))
        });
        let c = &mut entry.1;
        if c.model.is_none() {
            c.model = get(model).map(str::to_owned);
        }
        if c.channel.is_none() {
            c.channel = get(channel).map(str::to_owned);
        }
        if let Some(o) = get(outcome) {
            match Outcome::parse(o) {
                Some(o) => c.outcome = Some(o),
                None => problem(
                    problems,
                    n,
                    format!("`outcome` `{o}` is not resolved, escalated or abandoned"),
                ),
            }
        }
        c.turns.push(t);
    }
    order
        .into_iter()
        .filter_map(|id| by_id.remove(&id))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coach_jsonl_reads_what_export_writes_and_source_files_lines() {
        let text = concat!(
            r#"{"id":"a","model":"bot","turns":[{"role":"user","text":"hi","intent":"greet","confidence":0.9,"ranking":[{"intent":"greet","confidence":0.9},{"intent":"bye","confidence":0.05}]},{"role":"bot","text":"hello"}]}"#,
            "\n",
            r#"{"conversation":"b","messages":[{"role":"user","text":"where is my card"}]}"#,
            "\n"
        );
        let cs = parse(Format::Coach, text).unwrap();
        assert_eq!(cs.len(), 2);
        assert_eq!(cs[0].turns[0].margin(), Some(0.9 - 0.05));
        assert_eq!(cs[1].id, "b");
        let back = serde_json::to_string(&cs[0]).unwrap();
        assert_eq!(parse(Format::Coach, &back).unwrap()[0], cs[0]);
    }

    #[test]
    fn problems_are_located_and_nothing_is_read() {
        let text = "{\"id\":\"a\",\"turns\":[{\"role\":\"user\",\"text\":\"hi\"}]}\nnot json\n{\"id\":\"c\",\"turns\":[]}\n";
        let e = parse(Format::Coach, text).unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
        assert_eq!(e[0].line, 2);
        assert!(e[1].what.contains("no turns"), "{e:?}");
        assert_eq!(e[1].line, 3);
    }

    #[test]
    fn rasa_trackers_and_events_give_turns_predictions_and_fallbacks() {
        let tracker = r#"{"sender_id":"u1","events":[
            {"event":"action","name":"action_listen"},
            {"event":"user","text":"book a table","timestamp":1700000000.5,"parse_data":{"intent":{"name":"book","confidence":0.81},"intent_ranking":[{"name":"book","confidence":0.81},{"name":"cancel","confidence":0.1}],"entities":[{"entity":"thing","start":7,"end":12,"value":"table"}]}},
            {"event":"bot","text":"for how many?"},
            {"event":"user","text":"blorp","parse_data":{"intent":{"name":"nlu_fallback","confidence":0.2}}},
            {"event":"action","name":"action_default_fallback"}]}"#;
        let cs = parse(Format::Rasa, tracker).unwrap();
        assert_eq!(cs.len(), 1);
        let t = &cs[0].turns;
        assert_eq!(t.len(), 3);
        assert_eq!(t[0].intent.as_deref(), Some("book"));
        assert_eq!(t[0].entities[0].value, "table");
        assert!(t[2].fallback);
        // Rasa's offsets count characters: past an accent, bytes differ.
        let accented = r#"{"sender_id":"u3","events":[{"event":"user","text":"un café à Paris","parse_data":{"intent":{"name":"go","confidence":0.9},"entities":[{"entity":"city","start":10,"end":15,"value":"Paris"}]}}]}"#;
        let cs = parse(Format::Rasa, accented).unwrap();
        let span = &cs[0].turns[0].entities[0];
        assert_eq!((span.start, span.end), (12, 17));
        assert_eq!(&cs[0].turns[0].text[12..17], "Paris");
        let events = "{\"sender_id\":\"x\",\"event\":\"user\",\"text\":\"hi\"}\n{\"sender_id\":\"y\",\"event\":\"user\",\"text\":\"yo\"}\n{\"sender_id\":\"x\",\"event\":\"bot\",\"text\":\"hello\"}\n";
        let cs = parse(Format::Rasa, events).unwrap();
        assert_eq!(cs.len(), 2);
        assert_eq!(cs[0].turns.len(), 2);
        assert_eq!(Format::guess("dump.jsonl", events), Format::Rasa);
        assert_eq!(Format::guess("dump.json", tracker), Format::Rasa);
        // Cosine confidences below 0 read as 0; more than 20 entities on a
        // message keep the first 20 (the file is not refused for either).
        let spans: Vec<String> = (0..25)
            .map(|i| {
                format!(
                    r#"{{"entity":"n","start":{},"end":{},"value":"{i}"}}"#,
                    2 * i,
                    2 * i + 1
                )
            })
            .collect();
        let text: String = (0..25).map(|i| format!("{} ", i % 10)).collect();
        let tracker = format!(
            r#"{{"sender_id":"u2","events":[{{"event":"user","text":"{text}","parse_data":{{"intent":{{"name":"count","confidence":0.7}},"intent_ranking":[{{"name":"count","confidence":0.7}},{{"name":"other","confidence":-0.2}}],"entities":[{}]}}}}]}}"#,
            spans.join(",")
        );
        let cs = parse(Format::Rasa, &tracker).unwrap();
        let t = &cs[0].turns[0];
        assert_eq!(t.ranking[1].confidence, 0.0);
        assert_eq!(t.entities.len(), super::super::MAX_RANKED);
    }

    #[test]
    fn hostile_channels_and_feedback_are_refused_with_their_line() {
        let text = concat!(
            "{\"id\":\"a\",\"channel\":\"we\\u0000b\",\"turns\":[{\"role\":\"user\",\"text\":\"hi\"}]}\n",
            "{\"id\":\"b\",\"turns\":[{\"role\":\"user\",\"text\":\"hi\",\"feedback\":[{\"correction\":\"x\\u001b[2J\",\"at\":\"2026-01-01T00:00:00Z\"}]}]}\n",
            "{\"id\":\"c\",\"turns\":[{\"role\":\"user\",\"text\":\"hi\"}],\"feedback\":[{\"comment\":\"a\\u0000\",\"at\":\"2026-01-01T00:00:00Z\"}]}\n",
        );
        let e = parse(Format::Coach, text).unwrap_err();
        assert_eq!(
            e.iter().map(|p| p.line).collect::<Vec<_>>(),
            [1, 2, 3],
            "{e:?}"
        );
        assert!(e[0].what.contains("channel"), "{e:?}");
        assert!(e[1].what.contains("correction"), "{e:?}");
        assert!(e[2].what.contains("comment"), "{e:?}");
    }

    #[test]
    fn ratings_rankings_entities_and_versions_out_of_bounds_are_refused() {
        let at = r#""at":"2026-01-01T00:00:00Z""#;
        let lines = [
            format!(r#"{{"id":"a","turns":[{{"role":"user","text":"hi","feedback":[{{"rating":5,{at}}}]}}]}}"#),
            format!(r#"{{"id":"b","turns":[{{"role":"user","text":"hi"}}],"feedback":[{{{at}}}]}}"#),
            r#"{"id":"c","turns":[{"role":"user","text":"hi","ranking":[{"intent":"x","confidence":2.0}]}]}"#.into(),
            r#"{"id":"d","turns":[{"role":"user","text":"hi","entities":[{"entity":"e","start":0,"end":9,"value":"hi"}]}]}"#.into(),
            r#"{"id":"e","turns":[{"role":"user","text":"hi","model_version":0}]}"#.into(),
            r#"{"id":"  ","turns":[{"role":"user","text":"hi"}]}"#.into(),
            format!(r#"{{"id":"g","turns":[{{"role":"user","text":"hi","feedback":[{{"rating":-1,{at}}}]}}]}}"#),
            format!(r#"{{"id":"h","turns":[{{"role":"user","text":"hi"}}],"feedback":[{{"comment":"{}",{at}}}]}}"#, "x".repeat(4097)),
            r#"{"id":"i","turns":[{"role":"user","text":"hi","at":"1970-01-01T00:00:00Z"}]}"#.into(),
        ];
        let e = parse(Format::Coach, &(lines.join("\n") + "\n")).unwrap_err();
        assert_eq!(
            e.iter().map(|p| p.line).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5, 6, 8, 9],
            "{e:?}"
        );
        for (p, says) in e.iter().zip([
            "rating 5",
            "says nothing",
            "ranked confidence",
            "entity",
            "model version 0",
            "blank",
            "longer than 4096 characters",
            "years 2000 to 2100",
        ]) {
            assert!(p.what.contains(says), "{p:?} should say {says}");
        }
    }

    #[test]
    fn csv_rows_group_into_conversations_with_feedback() {
        let text = "conversation_id,role,text,intent,confidence,rating,correction\nc1,user,my card is lost,lost_card,0.7,,report_lost\nc1,bot,I blocked it,,,1,\nc2,user,hi,greet,0.99,,\n";
        let cs = parse(Format::Csv, text).unwrap();
        assert_eq!(cs.len(), 2);
        assert_eq!(
            cs[0].turns[0].feedback[0].correction.as_deref(),
            Some("report_lost")
        );
        assert_eq!(cs[0].turns[1].feedback[0].rating, Some(1));
        let bad = "conversation_id,role,text,mood\nc1,alien,hi,x\n";
        let e = parse(Format::Csv, bad).unwrap_err();
        assert!(
            e.iter().any(|p| p.line == 1 && p.what.contains("mood")),
            "{e:?}"
        );
        assert!(
            e.iter().any(|p| p.line == 2 && p.what.contains("role")),
            "{e:?}"
        );
    }
}
