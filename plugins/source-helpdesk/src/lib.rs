//! `source-helpdesk`: support tickets as conversations, from a helpdesk REST
//! API shaped like Zendesk's cursor-based incremental export.
//!
//! Two endpoints, both under `<base_url>/api/v2`:
//!
//! - `GET incremental/tickets/cursor.json?start_time=<unix>&per_page=<n>`,
//!   then `?cursor=<after_cursor>`: `{"tickets": [...], "after_cursor":
//!   "...", "end_of_stream": bool}`. A ticket updated again shows up again,
//!   later in the stream.
//! - `GET tickets/<id>/comments.json`: `{"comments": [...], "next_page":
//!   url | null}`, oldest first.
//!
//! A ticket becomes a conversation `ticket-<id>`: the requester's comments
//! are the `user` side, everyone else's (agents, triggers) the `bot` side;
//! private notes are left out unless `include_private`. The checkpoint is
//! the export's cursor and how many tickets of its page were handed over,
//! so opening with it resumes exactly after the last batch — across
//! restarts, and for the next run's new and updated tickets.

use coach_plugin_sdk::{
    BadRecord, Batch, Conversation, Cursor, Message, PluginError, Source, SourceStats, host, http,
    parse_config,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The step's parameters.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub base_url: String,
    #[serde(default)]
    pub start_time: i64,
    #[serde(default = "default_per_page")]
    pub per_page: u32,
    #[serde(default)]
    pub max_pages: Option<u32>,
    #[serde(default)]
    pub include_private: bool,
    #[serde(default = "default_max_bad_fraction")]
    pub max_bad_fraction: f64,
}

fn default_per_page() -> u32 {
    100
}

fn default_max_bad_fraction() -> f64 {
    0.05
}

/// The secret holding the API token.
pub const TOKEN: &str = "HELPDESK_TOKEN";

/// Retries of a request the server rate-limits (429) or fails (5xx).
const RETRIES: u32 = 3;

/// Where the export stands: the page to ask for and how many of its
/// tickets were already handed over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// `None`: the first page, from `start_time`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    #[serde(default)]
    pub start_time: i64,
    #[serde(default)]
    pub skip: usize,
}

/// One page of the export, read.
struct Page {
    tickets: Vec<Value>,
    after_cursor: Option<String>,
    end_of_stream: bool,
}

pub struct HelpdeskCursor {
    config: Config,
    token: String,
    /// The page being handed out, and where it came from.
    at: Checkpoint,
    page: Option<Page>,
    pages_read: u32,
    done: bool,
    stats: SourceStats,
}

pub struct Helpdesk;

impl Source for Helpdesk {
    type Cursor = HelpdeskCursor;

    fn open(config: &str, checkpoint: Option<String>) -> Result<HelpdeskCursor, PluginError> {
        let config: Config = parse_config(config)?;
        if !(1..=1000).contains(&config.per_page) {
            return Err(PluginError::bad_config(format!(
                "per_page {} is not 1 to 1000",
                config.per_page
            )));
        }
        let base = config.base_url.trim_end_matches('/');
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(PluginError::bad_config(format!(
                "base_url `{}` is not an http(s) address",
                config.base_url
            )));
        }
        let at = match checkpoint.filter(|c| !c.is_empty()) {
            None => Checkpoint {
                cursor: None,
                start_time: config.start_time,
                skip: 0,
            },
            Some(c) => serde_json::from_str(&c).map_err(|e| {
                PluginError::bad_config(format!("checkpoint `{c}` is not this plugin's: {e}"))
            })?,
        };
        if at.cursor.is_some() {
            host::info("resuming the export from its checkpoint");
        }
        Ok(HelpdeskCursor {
            token: http::secret(TOKEN).unwrap_or_default(),
            config,
            at,
            page: None,
            pages_read: 0,
            done: false,
            stats: SourceStats::default(),
        })
    }
}

impl HelpdeskCursor {
    fn api(&self, path: &str) -> String {
        format!(
            "{}/api/v2/{path}",
            self.config.base_url.trim_end_matches('/')
        )
    }

    /// GET `url` as JSON, retrying what the server asks to retry.
    fn get(&self, url: &str) -> Result<Value, PluginError> {
        let mut attempt = 0;
        loop {
            if host::cancelled() {
                return Err(PluginError::cancelled());
            }
            let response = http::get(url)
                .bearer(&self.token)
                .header("accept", "application/json")
                .send()?;
            let retry = response.status == 429 || response.status >= 500;
            if retry && attempt < RETRIES {
                attempt += 1;
                let wait = response
                    .header("retry-after")
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .unwrap_or(1)
                    .min(60);
                host::warn(&format!(
                    "{url} answered {}; retrying in {wait}s ({attempt}/{RETRIES})",
                    response.status
                ));
                std::thread::sleep(std::time::Duration::from_secs(wait));
                continue;
            }
            return response.ok()?.json();
        }
    }

    fn fetch_page(&mut self) -> Result<(), PluginError> {
        let per_page = self.config.per_page;
        let url = match &self.at.cursor {
            Some(c) => self.api(&format!(
                "incremental/tickets/cursor.json?per_page={per_page}&cursor={}",
                encode(c)
            )),
            None => self.api(&format!(
                "incremental/tickets/cursor.json?per_page={per_page}&start_time={}",
                self.at.start_time
            )),
        };
        let body = self.get(&url)?;
        let tickets = match body.get("tickets") {
            Some(Value::Array(t)) => t.clone(),
            _ => {
                return Err(PluginError::bad_data(format!(
                    "{url}: the answer has no `tickets` list"
                )));
            }
        };
        let after_cursor = body
            .get("after_cursor")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let end_of_stream = body
            .get("end_of_stream")
            .and_then(Value::as_bool)
            .unwrap_or(after_cursor.is_none());
        self.pages_read += 1;
        host::info(&format!(
            "page {}: {} ticket(s){}",
            self.pages_read,
            tickets.len(),
            if end_of_stream { ", end of stream" } else { "" }
        ));
        self.page = Some(Page {
            tickets,
            after_cursor,
            end_of_stream,
        });
        Ok(())
    }

    /// A ticket and its comments as a conversation; `Err` names what is
    /// wrong with the record (it is skipped and counted).
    fn conversation(&self, ticket: &Value) -> Result<Result<Conversation, String>, PluginError> {
        let Some(id) = ticket.get("id").and_then(Value::as_u64) else {
            return Ok(Err("a ticket without a numeric `id`".into()));
        };
        let requester = ticket.get("requester_id").and_then(Value::as_u64);
        let mut messages = Vec::new();
        let mut url = Some(self.api(&format!("tickets/{id}/comments.json")));
        let mut pages = 0;
        while let Some(u) = url.take() {
            pages += 1;
            if pages > 1000 {
                return Ok(Err(format!(
                    "ticket {id}: more than 1000 pages of comments"
                )));
            }
            let body = self.get(&u)?;
            let Some(comments) = body.get("comments").and_then(Value::as_array) else {
                return Ok(Err(format!(
                    "ticket {id}: the comments answer has no `comments` list"
                )));
            };
            for c in comments {
                if !self.config.include_private
                    && c.get("public").and_then(Value::as_bool) == Some(false)
                {
                    continue;
                }
                let text = c
                    .get("plain_body")
                    .or_else(|| c.get("body"))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .trim();
                if text.is_empty() {
                    continue;
                }
                let author = c.get("author_id").and_then(Value::as_u64);
                let role = if author.is_some() && author == requester {
                    "user"
                } else {
                    "bot"
                };
                messages.push(Message {
                    role: role.into(),
                    text: text.to_owned(),
                    intent: None,
                    timestamp_ms: c
                        .get("created_at")
                        .and_then(Value::as_str)
                        .and_then(rfc3339_ms),
                });
            }
            // Another page only on the same server.
            url = body
                .get("next_page")
                .and_then(Value::as_str)
                .filter(|n| n.starts_with(self.config.base_url.trim_end_matches('/')))
                .map(str::to_owned);
        }
        if messages.is_empty() {
            return Ok(Err(format!("ticket {id}: no public comments")));
        }
        Ok(Ok(Conversation {
            id: format!("ticket-{id}"),
            messages,
        }))
    }
}

impl Cursor for HelpdeskCursor {
    fn next_batch(&mut self, max: u32) -> Result<Batch, PluginError> {
        let mut batch = Batch::default();
        while !self.done && batch.conversations.len() < max.max(1) as usize {
            if host::cancelled() {
                return Err(PluginError::cancelled());
            }
            if self.page.is_none() {
                if self.config.max_pages.is_some_and(|m| self.pages_read >= m) {
                    self.done = true;
                    break;
                }
                self.fetch_page()?;
            }
            let page = self.page.as_ref().expect("fetched above");
            if self.at.skip >= page.tickets.len() {
                // The page is handed over: the next one starts after it.
                let (end, next) = (page.end_of_stream, page.after_cursor.clone());
                self.page = None;
                if let Some(next) = next {
                    self.at = Checkpoint {
                        cursor: Some(next),
                        start_time: self.at.start_time,
                        skip: 0,
                    };
                }
                if end {
                    self.done = true;
                }
                continue;
            }
            let ticket = page.tickets[self.at.skip].clone();
            self.at.skip += 1;
            match self.conversation(&ticket)? {
                Ok(c) => {
                    self.stats.records += 1;
                    batch.conversations.push(c);
                }
                Err(reason) if reason.ends_with("no public comments") => {
                    // A ticket nobody wrote in yet is not malformed.
                    self.stats.records += 1;
                }
                Err(reason) => {
                    self.stats.bad_records += 1;
                    if self.stats.first_bad.len() < 20 {
                        self.stats.first_bad.push(BadRecord {
                            location: format!("page {} ticket {}", self.pages_read, self.at.skip),
                            reason,
                        });
                    }
                    let total = self.stats.records + self.stats.bad_records;
                    if total >= 20
                        && self.stats.bad_records as f64 / total as f64
                            > self.config.max_bad_fraction
                    {
                        return Err(PluginError::bad_data(format!(
                            "{} of {total} tickets are malformed, more than the allowed {:.1}%; first: {}",
                            self.stats.bad_records,
                            self.config.max_bad_fraction * 100.0,
                            self.stats.first_bad[0].reason
                        )));
                    }
                }
            }
        }
        Ok(batch)
    }

    fn checkpoint(&self) -> String {
        serde_json::to_string(&self.at).expect("a checkpoint serializes")
    }

    fn stats(&self) -> SourceStats {
        self.stats.clone()
    }
}

/// Percent-encode a query value.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `2026-11-29T10:15:00Z` (or with `+hh:mm`, fractions) as milliseconds
/// since the Unix epoch.
pub fn rfc3339_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    let (date, rest) = s.split_once(['T', ' '])?;
    let mut d = date.split('-');
    let (y, m, day): (i64, i64, i64) = (
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
    );
    let (time, offset) = match rest.find(['Z', 'z', '+', '-']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "Z"),
    };
    let mut t = time.split(':');
    let (hh, mm): (i64, i64) = (t.next()?.parse().ok()?, t.next()?.parse().ok()?);
    let sec: f64 = t.next().unwrap_or("0").parse().ok()?;
    let offset_min = match offset {
        "Z" | "z" => 0,
        o => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            let (oh, om) = o[1..].split_once(':').unwrap_or((&o[1..], "0"));
            sign * (oh.parse::<i64>().ok()? * 60 + om.parse::<i64>().ok()?)
        }
    };
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 - offset_min * 60;
    Some(secs * 1000 + (sec * 1000.0).round() as i64)
}

coach_plugin_sdk::export_source!(Helpdesk);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse() {
        assert_eq!(rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(rfc3339_ms("2026-11-29T10:15:00Z"), Some(1_795_947_300_000));
        assert_eq!(
            rfc3339_ms("2026-11-29T11:15:00.5+01:00"),
            Some(1_795_947_300_500)
        );
        assert_eq!(rfc3339_ms("yesterday"), None);
    }

    #[test]
    fn checkpoints_round_trip_and_foreign_ones_are_refused() {
        let config = r#"{"base_url": "https://h.example.com"}"#;
        let cursor = Helpdesk::open(config, None).unwrap();
        let c = cursor.checkpoint();
        assert_eq!(c, r#"{"start_time":0,"skip":0}"#);
        let resumed = Helpdesk::open(config, Some(r#"{"cursor":"abc","skip":2}"#.into())).unwrap();
        assert_eq!(resumed.at.cursor.as_deref(), Some("abc"));
        assert_eq!(resumed.at.skip, 2);
        assert!(Helpdesk::open(config, Some("17".into())).is_err());
        assert!(Helpdesk::open(r#"{"base_url": "ftp://x"}"#, None).is_err());
        assert!(Helpdesk::open(r#"{"base_url": "https://x", "per_page": 0}"#, None).is_err());
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }
}
