//! `source-slack`: conversations from a Slack workspace export.
//!
//! An export (the zip Slack mails, or the folder it unpacks to) holds
//! `channels.json` (and `groups.json`, `dms.json`, `mpims.json` for private
//! ones), `users.json`, and per channel a folder of `YYYY-MM-DD.json` files,
//! each a list of messages. A thread (a root message and its replies) is a
//! conversation `slack:<channel>:<thread ts>`; a channel's other messages of
//! one day are one `slack:<channel>:<day>` — or, with `group = "day"`,
//! everything of a channel's day is. Messages from bots (`bot_id`,
//! `subtype = "bot_message"`, users marked `is_bot`, or `bot_users`) are
//! the bot side; joins, leaves, topic changes and other system messages
//! are left out. Slack's markup is turned into text (`<@U1>` → `@alice`,
//! `<https://x|label>` → `label`, `&amp;` → `&`).
//!
//! Conversations are handed out oldest last message first; the checkpoint
//! is the last message time and id handed out. Opening with it hands out
//! the conversations that gained messages since — whole, so that an
//! incremental step replaces its copy of a thread that got new replies.

use coach_plugin_sdk::resume::Ordered;
use coach_plugin_sdk::{
    BadRecord, Conversation, Message, PluginError, Source, SourceStats, host, parse_config,
};
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub path: PathBuf,
    #[serde(default)]
    pub channels: Option<Vec<String>>,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub bot_users: Vec<String>,
    #[serde(default = "default_max_bad_fraction")]
    pub max_bad_fraction: f64,
}

fn default_max_bad_fraction() -> f64 {
    0.05
}

/// Largest export member read (a day of one channel).
const MAX_MEMBER: u64 = 256 << 20;

/// An export's files: name (inside the export) → bytes, read lazily.
trait Export {
    fn names(&self) -> Vec<String>;
    fn read(&mut self, name: &str) -> Result<Vec<u8>, PluginError>;
}

struct Folder(PathBuf);

impl Export for Folder {
    fn names(&self) -> Vec<String> {
        let mut out = Vec::new();
        let Ok(top) = std::fs::read_dir(&self.0) else {
            return out;
        };
        for e in top.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            if path.is_dir() {
                if let Ok(inner) = std::fs::read_dir(&path) {
                    for f in inner.flatten() {
                        out.push(format!("{name}/{}", f.file_name().to_string_lossy()));
                    }
                }
            } else {
                out.push(name);
            }
        }
        out.sort();
        out
    }

    fn read(&mut self, name: &str) -> Result<Vec<u8>, PluginError> {
        let path = self.0.join(name);
        let len = std::fs::metadata(&path)
            .map_err(|e| PluginError::io(format!("{}: {e}", path.display())))?
            .len();
        if len > MAX_MEMBER {
            return Err(PluginError::bad_data(format!(
                "{name} is {len} bytes, more than a day of a channel should be"
            )));
        }
        std::fs::read(&path).map_err(|e| PluginError::io(format!("{}: {e}", path.display())))
    }
}

struct Zip(zip::ZipArchive<std::fs::File>);

impl Export for Zip {
    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .0
            .file_names()
            .filter_map(|n| n.ok().map(|n| n.into_owned()))
            .collect();
        names.sort();
        names
    }

    fn read(&mut self, name: &str) -> Result<Vec<u8>, PluginError> {
        let file = self
            .0
            .by_name(name)
            .map_err(|e| PluginError::bad_data(format!("{name}: {e}")))?;
        let mut out = Vec::new();
        // Read at most one byte past the limit: a zip bomb stops there.
        file.take(MAX_MEMBER + 1)
            .read_to_end(&mut out)
            .map_err(|e| PluginError::bad_data(format!("{name}: {e}")))?;
        if out.len() as u64 > MAX_MEMBER {
            return Err(PluginError::bad_data(format!(
                "{name} inflates to more than {MAX_MEMBER} bytes"
            )));
        }
        Ok(out)
    }
}

fn open_export(path: &Path) -> Result<Box<dyn Export>, PluginError> {
    let meta =
        std::fs::metadata(path).map_err(|e| PluginError::io(format!("{}: {e}", path.display())))?;
    if meta.is_dir() {
        return Ok(Box::new(Folder(path.to_path_buf())));
    }
    let file = std::fs::File::open(path)
        .map_err(|e| PluginError::io(format!("{}: {e}", path.display())))?;
    let archive = zip::ZipArchive::new(file).map_err(|e| {
        PluginError::bad_data(format!(
            "{} is neither a folder nor a zip file: {e}",
            path.display()
        ))
    })?;
    Ok(Box::new(Zip(archive)))
}

/// Message subtypes that are people or bots talking; the rest (joins,
/// topics, pins, …) are not conversation.
const SPOKEN: &[&str] = &[
    "bot_message",
    "thread_broadcast",
    "me_message",
    "file_share",
];

/// What a message becomes, or why it is skipped.
struct Said {
    channel: String,
    ts: String,
    thread: Option<String>,
    bot: bool,
    text: String,
}

/// A conversation with the time of its last message.
pub struct Grouped {
    pub last: String,
    pub conversation: Conversation,
}

/// The export read into conversations ordered by their last message,
/// with the records it skipped.
pub fn read_export(config: &Config) -> Result<(Vec<Grouped>, SourceStats), PluginError> {
    let mut export = open_export(&config.path)?;
    let names = export.names();
    // Some exports put everything under one top folder.
    let prefix = names
        .iter()
        .find(|n| n.ends_with("users.json") || n.ends_with("channels.json"))
        .map(|n| n[..n.rfind('/').map_or(0, |i| i + 1)].to_owned())
        .unwrap_or_default();
    let mut users: HashMap<String, (String, bool)> = HashMap::new();
    if names.contains(&format!("{prefix}users.json")) {
        let bytes = export.read(&format!("{prefix}users.json"))?;
        let list: Vec<Value> = serde_json::from_slice(&bytes)
            .map_err(|e| PluginError::bad_data(format!("users.json: {e}")))?;
        for u in list {
            if let Some(id) = u.get("id").and_then(Value::as_str) {
                let name = u
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or(id)
                    .to_owned();
                let bot = u.get("is_bot").and_then(Value::as_bool).unwrap_or(false);
                users.insert(id.to_owned(), (name, bot));
            }
        }
    }
    let bot_users: HashSet<&str> = config.bot_users.iter().map(String::as_str).collect();
    let wanted: Option<HashSet<&str>> = config
        .channels
        .as_ref()
        .map(|c| c.iter().map(String::as_str).collect());
    let by_day = match config.group.as_deref() {
        None | Some("thread") => false,
        Some("day") => true,
        Some(other) => {
            return Err(PluginError::bad_config(format!(
                "group `{other}` is not `thread` or `day`"
            )));
        }
    };
    let days: Vec<&String> = names
        .iter()
        .filter(|n| {
            let Some(rest) = n.strip_prefix(&prefix) else {
                return false;
            };
            let Some((channel, file)) = rest.split_once('/') else {
                return false;
            };
            !file.contains('/')
                && file.ends_with(".json")
                && file.len() == "YYYY-MM-DD.json".len()
                && wanted.as_ref().is_none_or(|w| w.contains(channel))
        })
        .collect();
    if days.is_empty() {
        return Err(PluginError::bad_data(format!(
            "{} holds no channel folders of `YYYY-MM-DD.json` files{}: is it a Slack export?",
            config.path.display(),
            if wanted.is_some() {
                " for the channels asked for"
            } else {
                ""
            }
        )));
    }
    let mut stats = SourceStats::default();
    let mut said: Vec<Said> = Vec::new();
    for (i, name) in days.iter().enumerate() {
        if host::cancelled() {
            return Err(PluginError::cancelled());
        }
        host::progress(i as f32 / days.len() as f32, &format!("reading {name}"));
        let channel = name[prefix.len()..]
            .split('/')
            .next()
            .unwrap_or("")
            .to_owned();
        let bytes = export.read(name)?;
        let messages: Vec<Value> = match serde_json::from_slice(&bytes) {
            Ok(Value::Array(m)) => m,
            Ok(_) | Err(_) => {
                bad(
                    &mut stats,
                    name.to_string(),
                    "not a JSON list of messages".into(),
                );
                continue;
            }
        };
        for (j, m) in messages.iter().enumerate() {
            let location = format!("{name}[{j}]");
            let subtype = m.get("subtype").and_then(Value::as_str);
            if subtype.is_some_and(|s| !SPOKEN.contains(&s)) {
                continue;
            }
            let Some(ts) = m
                .get("ts")
                .and_then(Value::as_str)
                .filter(|t| ts_key(t).is_some())
            else {
                bad(&mut stats, location, "a message without a `ts` time".into());
                continue;
            };
            let text = clean(m.get("text").and_then(Value::as_str).unwrap_or(""), &users);
            if text.trim().is_empty() {
                continue;
            }
            let user = m.get("user").and_then(Value::as_str).map(str::to_owned);
            let bot = m.get("bot_id").is_some()
                || subtype == Some("bot_message")
                || user.as_deref().is_some_and(|u| {
                    bot_users.contains(u)
                        || users.get(u).is_some_and(|(name, is_bot)| {
                            *is_bot || bot_users.contains(name.as_str())
                        })
                });
            let thread = m
                .get("thread_ts")
                .and_then(Value::as_str)
                .map(str::to_owned);
            stats.records += 1;
            said.push(Said {
                channel: channel.clone(),
                ts: ts.to_owned(),
                thread,
                bot,
                text: text.trim().to_owned(),
            });
        }
    }
    let total = stats.records + stats.bad_records;
    if total > 0 && stats.bad_records as f64 / total as f64 > config.max_bad_fraction {
        return Err(PluginError::bad_data(format!(
            "{} of {total} messages are malformed, more than the allowed {:.1}%; first: {}: {}",
            stats.bad_records,
            config.max_bad_fraction * 100.0,
            stats.first_bad[0].location,
            stats.first_bad[0].reason
        )));
    }
    // Group: threads (by root ts, which is the root's own ts), else days.
    let threads: HashSet<(String, String)> = said
        .iter()
        .filter_map(|s| Some((s.channel.clone(), s.thread.clone()?)))
        .collect();
    let mut groups: BTreeMap<String, Vec<Said>> = BTreeMap::new();
    for s in said {
        let key = if !by_day
            && let Some(root) = s.thread.clone().or_else(|| {
                threads
                    .contains(&(s.channel.clone(), s.ts.clone()))
                    .then(|| s.ts.clone())
            }) {
            format!("slack:{}:{root}", s.channel)
        } else {
            format!("slack:{}:{}", s.channel, day_of(&s.ts))
        };
        groups.entry(key).or_default().push(s);
    }
    let mut out: Vec<Grouped> = groups
        .into_iter()
        .map(|(id, mut msgs)| {
            msgs.sort_by_key(|m| ts_key(&m.ts));
            let last = msgs.last().map(|m| m.ts.clone()).unwrap_or_default();
            let messages = msgs
                .into_iter()
                .map(|m| Message {
                    role: if m.bot { "bot" } else { "user" }.into(),
                    text: m.text,
                    intent: None,
                    timestamp_ms: ts_key(&m.ts).map(|(s, us)| s * 1000 + (us / 1000) as i64),
                })
                .collect();
            Grouped {
                last,
                conversation: Conversation { id, messages },
            }
        })
        .collect();
    out.sort_by(|a, b| {
        (ts_key(&a.last), &a.conversation.id).cmp(&(ts_key(&b.last), &b.conversation.id))
    });
    Ok((out, stats))
}

fn bad(stats: &mut SourceStats, location: String, reason: String) {
    stats.bad_records += 1;
    if stats.first_bad.len() < 20 {
        stats.first_bad.push(BadRecord { location, reason });
    }
}

/// Slack's `ts` (`"1701234567.000200"`) as (seconds, microseconds), for
/// ordering without floating point.
pub fn ts_key(ts: &str) -> Option<(i64, u32)> {
    let (s, frac) = ts.split_once('.').unwrap_or((ts, "0"));
    let secs = s.parse::<i64>().ok()?;
    let mut us = frac.chars().take(6).collect::<String>();
    while us.len() < 6 {
        us.push('0');
    }
    Some((secs, us.parse().ok()?))
}

/// The UTC day of a `ts`, `YYYY-MM-DD`.
fn day_of(ts: &str) -> String {
    let days = ts_key(ts).map_or(0, |(s, _)| s.div_euclid(86_400));
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    format!("{:04}-{m:02}-{d:02}", if m <= 2 { y + 1 } else { y })
}

/// Slack's markup as the text people saw.
pub fn clean(text: &str, users: &HashMap<String, (String, bool)>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('>') else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let inner = &rest[start + 1..start + end];
        let (target, label) = match inner.split_once('|') {
            Some((t, l)) => (t, Some(l)),
            None => (inner, None),
        };
        let shown = if let Some(id) = target.strip_prefix('@') {
            format!(
                "@{}",
                label.unwrap_or_else(|| users.get(id).map_or(id, |(n, _)| n.as_str()))
            )
        } else if let Some(ch) = target.strip_prefix('#') {
            format!("#{}", label.unwrap_or(ch))
        } else if let Some(special) = target.strip_prefix('!') {
            format!("@{}", label.unwrap_or(special))
        } else {
            label.unwrap_or(target).to_owned()
        };
        out.push_str(&shown);
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Conversations by (last message: seconds, microseconds; id).
pub type SlackCursor = Ordered<(i64, u32, String)>;

pub struct Slack;

impl Source for Slack {
    type Cursor = SlackCursor;

    fn open(config: &str, checkpoint: Option<String>) -> Result<SlackCursor, PluginError> {
        let config: Config = parse_config(config)?;
        let (all, stats) = read_export(&config)?;
        let total = all.len();
        let items = all
            .into_iter()
            .map(|g| {
                let (secs, micros) = ts_key(&g.last).unwrap_or_default();
                ((secs, micros, g.conversation.id.clone()), g.conversation)
            })
            .collect();
        let cursor = Ordered::new(items, checkpoint, stats)?;
        host::info(&format!(
            "{total} conversation(s) in the export, {} to hand over",
            cursor.remaining()
        ));
        Ok(cursor)
    }
}

coach_plugin_sdk::export_source!(Slack);

#[cfg(test)]
mod tests {
    use super::*;
    use coach_plugin_sdk::Cursor;

    fn export(dir: &Path) {
        let w = |p: &str, t: &str| {
            let path = dir.join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, t).unwrap();
        };
        w(
            "users.json",
            r#"[{"id":"U1","name":"alice"},{"id":"U2","name":"helpbot","is_bot":true},{"id":"U3","name":"bob"}]"#,
        );
        w("channels.json", r#"[{"id":"C1","name":"support"}]"#);
        w(
            "support/2026-11-29.json",
            r#"[
            {"type":"message","user":"U1","text":"my card &amp; pin don't work <@U2>","ts":"1795947300.000100","thread_ts":"1795947300.000100"},
            {"type":"message","user":"U2","text":"Sorry! Try <https://help.example.com/reset|resetting the pin>.","ts":"1795947305.000200","thread_ts":"1795947300.000100"},
            {"type":"message","subtype":"channel_join","user":"U3","text":"<@U3> has joined","ts":"1795947310.000000"},
            {"type":"message","user":"U3","text":"anyone here?","ts":"1795947320.000000"},
            {"type":"message","bot_id":"B1","subtype":"bot_message","text":"Hi bob, how can I help?","ts":"1795947321.000000"},
            {"type":"message","user":"U1","text":"no ts"}
        ]"#,
        );
        w(
            "support/2026-11-30.json",
            r#"[{"type":"message","user":"U1","text":"it works now, thanks","ts":"1796033700.000000","thread_ts":"1795947300.000100"}]"#,
        );
    }

    fn config(path: &Path) -> String {
        serde_json::json!({"path": path, "max_bad_fraction": 0.5}).to_string()
    }

    #[test]
    fn threads_and_days_become_conversations_with_bots_on_the_bot_side() {
        let dir = std::env::temp_dir().join(format!("slack-test-{}", std::process::id()));
        export(&dir);
        let (convs, stats) = read_export(&parse_config(&config(&dir)).unwrap()).unwrap();
        assert_eq!(stats.bad_records, 1, "{:?}", stats.first_bad);
        assert!(
            stats.first_bad[0]
                .location
                .ends_with("support/2026-11-29.json[5]")
        );
        let ids: Vec<&str> = convs.iter().map(|c| c.conversation.id.as_str()).collect();
        // Ordered by last message: the day's chatter, then the thread that
        // got a reply the next day.
        assert_eq!(
            ids,
            [
                "slack:support:2026-11-29",
                "slack:support:1795947300.000100"
            ]
        );
        let thread = &convs[1].conversation.messages;
        assert_eq!(thread.len(), 3);
        assert_eq!(thread[0].role, "user");
        assert_eq!(thread[0].text, "my card & pin don't work @helpbot");
        assert_eq!(thread[1].role, "bot");
        assert_eq!(thread[1].text, "Sorry! Try resetting the pin.");
        assert_eq!(thread[0].timestamp_ms, Some(1_795_947_300_000));
        let day = &convs[0].conversation.messages;
        assert_eq!(
            day.iter().map(|m| m.role.as_str()).collect::<Vec<_>>(),
            ["user", "bot"]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_checkpoint_hands_over_only_conversations_with_newer_messages() {
        let dir = std::env::temp_dir().join(format!("slack-ckpt-{}", std::process::id()));
        export(&dir);
        let mut c = Slack::open(&config(&dir), None).unwrap();
        let first = c.next_batch(1).unwrap();
        assert_eq!(first.conversations[0].id, "slack:support:2026-11-29");
        let checkpoint = c.checkpoint();
        let mut resumed = Slack::open(&config(&dir), Some(checkpoint)).unwrap();
        let rest = resumed.next_batch(10).unwrap();
        assert_eq!(rest.conversations.len(), 1);
        assert_eq!(rest.conversations[0].id, "slack:support:1795947300.000100");
        assert!(resumed.next_batch(10).unwrap().conversations.is_empty());
        // At the end, the checkpoint hands over nothing until new messages.
        let mut done = Slack::open(&config(&dir), Some(resumed.checkpoint())).unwrap();
        assert!(done.next_batch(10).unwrap().conversations.is_empty());
        assert!(Slack::open(&config(&dir), Some("7".into())).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn days_and_markup() {
        assert_eq!(day_of("1795947300.000100"), "2026-11-29");
        assert_eq!(day_of("0"), "1970-01-01");
        let users = HashMap::from([("U9".to_owned(), ("zed".to_owned(), false))]);
        assert_eq!(
            clean("<!here> ask <@U9> in <#C1|general> &lt;3", &users),
            "@here ask @zed in #general <3"
        );
        assert_eq!(ts_key("1.5"), Some((1, 500_000)));
    }
}
