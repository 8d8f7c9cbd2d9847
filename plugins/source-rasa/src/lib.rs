//! `source-rasa`: conversations from a Rasa tracker-store dump.
//!
//! Two shapes, in `.json` or `.jsonl` files:
//!
//! - trackers, as Rasa's HTTP API (`GET /conversations/<id>/tracker`) and
//!   tracker-store exports give them: `{"sender_id": "...", "events":
//!   [...]}`, one per line or a JSON list of them;
//! - events, as the event broker (`rasa export`) publishes them: one per
//!   line, each with its `sender_id`.
//!
//! `user` events are the user side, with the intent Rasa predicted
//! (`parse_data.intent.name`); `bot` events the bot side; everything else
//! (actions, slots, `action_listen`) is left out. A sender's events split
//! into one conversation per Rasa session (`session_started`) —
//! `<sender_id>` for the first, `<sender_id>#2` and so on after it.
//!
//! Conversations are handed out oldest last event first; the checkpoint is
//! the last event time and conversation id handed out. Opening with it hands
//! out the conversations that gained events since — whole, so that an
//! incremental step replaces its copy of a session that went on.

use coach_plugin_sdk::resume::Ordered;
use coach_plugin_sdk::{
    BadRecord, Conversation, Message, PluginError, Source, SourceStats, host, parse_config,
};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub path: PathBuf,
    #[serde(default = "yes")]
    pub sessions: bool,
    #[serde(default = "default_max_bad_fraction")]
    pub max_bad_fraction: f64,
}

fn yes() -> bool {
    true
}

fn default_max_bad_fraction() -> f64 {
    0.05
}

/// A sender's events as read, in file order.
#[derive(Default)]
struct Sender {
    events: Vec<Value>,
}

/// A conversation with the time of its last event.
pub struct Session {
    pub last_ms: i64,
    pub conversation: Conversation,
}

fn bad(stats: &mut SourceStats, location: String, reason: String) {
    stats.bad_records += 1;
    if stats.first_bad.len() < 20 {
        stats.first_bad.push(BadRecord { location, reason });
    }
}

fn files(path: &Path) -> Result<Vec<PathBuf>, PluginError> {
    let meta =
        std::fs::metadata(path).map_err(|e| PluginError::io(format!("{}: {e}", path.display())))?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| PluginError::io(format!("{}: {e}", path.display())))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "json" || e == "jsonl"))
        .collect();
    out.sort();
    if out.is_empty() {
        return Err(PluginError::bad_data(format!(
            "{} holds no .json or .jsonl files",
            path.display()
        )));
    }
    Ok(out)
}

/// Take one JSON value: a tracker, a list of trackers, or an event.
fn take(v: Value, location: &str, senders: &mut BTreeMap<String, Sender>, stats: &mut SourceStats) {
    match v {
        Value::Array(items) => {
            for (i, item) in items.into_iter().enumerate() {
                take(item, &format!("{location}[{i}]"), senders, stats);
            }
        }
        Value::Object(mut o) => {
            let Some(sender) = o
                .get("sender_id")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty() && s.len() <= 256)
                .map(str::to_owned)
            else {
                return bad(stats, location.to_owned(), "no `sender_id`".into());
            };
            let entry = senders.entry(sender).or_default();
            match o.remove("events") {
                Some(Value::Array(events)) => {
                    stats.records += 1;
                    entry.events.extend(events);
                }
                Some(_) => bad(stats, location.to_owned(), "`events` is not a list".into()),
                None if o.contains_key("event") => {
                    stats.records += 1;
                    entry.events.push(Value::Object(o));
                }
                None => bad(
                    stats,
                    location.to_owned(),
                    "neither a tracker (`events`) nor an event (`event`)".into(),
                ),
            }
        }
        _ => bad(stats, location.to_owned(), "not a JSON object".into()),
    }
}

fn event_ms(e: &Value) -> Option<i64> {
    let t = e.get("timestamp")?.as_f64()?;
    t.is_finite().then(|| (t * 1000.0).round() as i64)
}

/// A sender's events as conversations, one per session.
fn sessions(sender: &str, events: &[Value], split: bool) -> Vec<Session> {
    let mut out = Vec::new();
    let mut messages: Vec<Message> = Vec::new();
    let mut last_ms = i64::MIN;
    let mut n = 1;
    let close = |messages: &mut Vec<Message>, last_ms: i64, n: usize, out: &mut Vec<Session>| {
        if !messages.is_empty() {
            let id = if n == 1 {
                sender.to_owned()
            } else {
                format!("{sender}#{n}")
            };
            out.push(Session {
                last_ms,
                conversation: Conversation {
                    id,
                    messages: std::mem::take(messages),
                },
            });
        }
    };
    for e in events {
        let kind = e.get("event").and_then(Value::as_str).unwrap_or("");
        if kind == "session_started" && split {
            if !messages.is_empty() {
                close(&mut messages, last_ms, n, &mut out);
                n += 1;
            }
            continue;
        }
        let ms = event_ms(e);
        if let Some(ms) = ms {
            last_ms = last_ms.max(ms);
        }
        let role = match kind {
            "user" => "user",
            "bot" => "bot",
            _ => continue,
        };
        let text = e.get("text").and_then(Value::as_str).unwrap_or("").trim();
        if text.is_empty() {
            continue;
        }
        let intent = (role == "user")
            .then(|| {
                e.pointer("/parse_data/intent/name")
                    .and_then(Value::as_str)
                    .filter(|i| !i.is_empty())
                    .map(str::to_owned)
            })
            .flatten();
        messages.push(Message {
            role: role.into(),
            text: text.to_owned(),
            intent,
            timestamp_ms: ms,
        });
    }
    close(&mut messages, last_ms, n, &mut out);
    out
}

/// A sender's events in time order, whatever file and order they came
/// in (an event without a time stays after the one before it), each
/// once: a tracker dump and the broker's events may both hold it.
fn in_time_order(events: &mut Vec<Value>) -> Vec<Value> {
    let mut last = i64::MIN;
    let mut keyed: Vec<(i64, usize, Value)> = Vec::with_capacity(events.len());
    for (i, mut e) in std::mem::take(events).into_iter().enumerate() {
        last = event_ms(&e).unwrap_or(last);
        if let Some(o) = e.as_object_mut() {
            o.remove("sender_id");
        }
        keyed.push((last, i, e));
    }
    keyed.sort_by_key(|(t, i, _)| (*t, *i));
    let mut seen = std::collections::HashSet::new();
    keyed
        .into_iter()
        .filter(|(_, _, e)| seen.insert(e.to_string()))
        .map(|(_, _, e)| e)
        .collect()
}

/// The dump read into conversations ordered by their last event.
pub fn read_dump(config: &Config) -> Result<(Vec<Session>, SourceStats), PluginError> {
    let files = files(&config.path)?;
    let mut senders: BTreeMap<String, Sender> = BTreeMap::new();
    let mut stats = SourceStats::default();
    for (i, file) in files.iter().enumerate() {
        if host::cancelled() {
            return Err(PluginError::cancelled());
        }
        host::progress(
            i as f32 / files.len() as f32,
            &format!("reading {}", file.display()),
        );
        let text = std::fs::read_to_string(file)
            .map_err(|e| PluginError::io(format!("{}: {e}", file.display())))?;
        let name = file.display().to_string();
        // One JSON document (a tracker, pretty-printed or not, or a list),
        // else JSON lines: a second value on the next line fails the whole
        // parse at once.
        match serde_json::from_str::<Value>(&text).ok() {
            Some(v) => take(v, &name, &mut senders, &mut stats),
            None => {
                for (n, line) in text.lines().enumerate() {
                    if line.trim().is_empty() {
                        continue;
                    }
                    let location = format!("{name}:{}", n + 1);
                    match serde_json::from_str::<Value>(line) {
                        Ok(v) => take(v, &location, &mut senders, &mut stats),
                        Err(e) => bad(&mut stats, location, format!("not JSON: {e}")),
                    }
                }
            }
        }
    }
    let total = stats.records + stats.bad_records;
    if total == 0 {
        return Err(PluginError::bad_data(format!(
            "{} holds no trackers or events",
            config.path.display()
        )));
    }
    if stats.bad_records as f64 / total as f64 > config.max_bad_fraction {
        return Err(PluginError::bad_data(format!(
            "{} of {total} records are malformed, more than the allowed {:.1}%; first: {}: {}",
            stats.bad_records,
            config.max_bad_fraction * 100.0,
            stats.first_bad[0].location,
            stats.first_bad[0].reason
        )));
    }
    let mut out: Vec<Session> = senders
        .iter_mut()
        .flat_map(|(id, s)| sessions(id, &in_time_order(&mut s.events), config.sessions))
        .collect();
    out.sort_by(|a, b| (a.last_ms, &a.conversation.id).cmp(&(b.last_ms, &b.conversation.id)));
    Ok((out, stats))
}

/// Conversations by (last event, id).
pub type RasaCursor = Ordered<(i64, String)>;

pub struct Rasa;

impl Source for Rasa {
    type Cursor = RasaCursor;

    fn open(config: &str, checkpoint: Option<String>) -> Result<RasaCursor, PluginError> {
        let config: Config = parse_config(config)?;
        let (all, stats) = read_dump(&config)?;
        let total = all.len();
        let items = all
            .into_iter()
            .map(|s| ((s.last_ms, s.conversation.id.clone()), s.conversation))
            .collect();
        let cursor = Ordered::new(items, checkpoint, stats)?;
        host::info(&format!(
            "{total} conversation(s) in the dump, {} to hand over",
            cursor.remaining()
        ));
        Ok(cursor)
    }
}

coach_plugin_sdk::export_source!(Rasa);

#[cfg(test)]
mod tests {
    use super::*;
    use coach_plugin_sdk::Cursor;

    const TRACKER: &str = r#"{"sender_id":"u1","events":[
        {"event":"action","name":"action_session_start","timestamp":1795947300.0},
        {"event":"session_started","timestamp":1795947300.1},
        {"event":"action","name":"action_listen","timestamp":1795947300.2},
        {"event":"user","text":"book a table","timestamp":1795947301.5,"parse_data":{"intent":{"name":"book","confidence":0.81}}},
        {"event":"bot","text":"for how many?","timestamp":1795947302.0},
        {"event":"session_started","timestamp":1796033700.0},
        {"event":"user","text":"cancel it","timestamp":1796033701.0,"parse_data":{"intent":{"name":"cancel","confidence":0.9}}}
    ]}"#;

    fn dump(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("rasa-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("dump.jsonl"), text).unwrap();
        dir
    }

    fn config(path: &Path) -> String {
        serde_json::json!({"path": path, "max_bad_fraction": 0.5}).to_string()
    }

    #[test]
    fn trackers_and_broker_events_become_sessions() {
        let events = "{\"sender_id\":\"u2\",\"event\":\"user\",\"text\":\"hi\",\"timestamp\":1795947000}\nnot json\n{\"sender_id\":\"u2\",\"event\":\"bot\",\"text\":\"hello!\",\"timestamp\":1795947001}\n";
        let dir = dump("both", &format!("{}\n{events}", TRACKER.replace('\n', "")));
        let (sessions, stats) = read_dump(&parse_config(&config(&dir)).unwrap()).unwrap();
        assert_eq!(stats.bad_records, 1);
        assert!(
            stats.first_bad[0].location.ends_with("dump.jsonl:3"),
            "{:?}",
            stats.first_bad
        );
        let ids: Vec<&str> = sessions
            .iter()
            .map(|s| s.conversation.id.as_str())
            .collect();
        assert_eq!(ids, ["u2", "u1", "u1#2"]);
        let first = &sessions[1].conversation.messages;
        assert_eq!(first.len(), 2);
        assert_eq!(first[0].intent.as_deref(), Some("book"));
        assert_eq!(first[0].timestamp_ms, Some(1_795_947_301_500));
        assert_eq!(first[1].role, "bot");
        assert_eq!(sessions[2].conversation.messages[0].text, "cancel it");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn events_from_several_files_are_put_in_time_order_once() {
        let dir = dump("order", &TRACKER.replace('\n', ""));
        // Read first (sorted by name), newer, and repeating one event.
        std::fs::write(
            dir.join("a-broker.jsonl"),
            "{\"sender_id\":\"u1\",\"event\":\"user\",\"text\":\"and a dessert\",\"timestamp\":1795947303.0}\n{\"sender_id\":\"u1\",\"event\":\"bot\",\"text\":\"for how many?\",\"timestamp\":1795947302.0}\n",
        )
        .unwrap();
        let (sessions, _) = read_dump(&parse_config(&config(&dir)).unwrap()).unwrap();
        let texts: Vec<&str> = sessions[0]
            .conversation
            .messages
            .iter()
            .map(|m| m.text.as_str())
            .collect();
        assert_eq!(texts, ["book a table", "for how many?", "and a dessert"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_checkpoint_hands_over_only_sessions_with_newer_events() {
        let dir = dump("ckpt", &TRACKER.replace('\n', ""));
        let mut c = Rasa::open(&config(&dir), None).unwrap();
        assert_eq!(c.next_batch(1).unwrap().conversations[0].id, "u1");
        let mut resumed = Rasa::open(&config(&dir), Some(c.checkpoint())).unwrap();
        let rest = resumed.next_batch(10).unwrap();
        assert_eq!(rest.conversations.len(), 1);
        assert_eq!(rest.conversations[0].id, "u1#2");
        let mut done = Rasa::open(&config(&dir), Some(resumed.checkpoint())).unwrap();
        assert!(done.next_batch(10).unwrap().conversations.is_empty());
        assert!(Rasa::open(&config(&dir), Some("nope".into())).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
