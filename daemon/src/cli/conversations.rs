//! `coach conversations list|show|import|export`: from a running daemon
//! when `COACH_URL` (or `--url`) is set, else straight from the store.

use super::client::{Client, Remote};
use crate::app::{App, Mode};
use crate::cli::out;
use crate::config::Config;
use crate::core::conversation::Conversation;
use crate::core::conversation::formats::{self, Format};
use crate::core::text::printable;
use crate::service::conversations::ListQuery;
use crate::store::conversation_reads::StoredConversation;
use anyhow::{Context, Result, anyhow, bail};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// The filters `list` and `export` take.
#[derive(Debug, Clone, clap::Args)]
pub struct Filters {
    /// Only conversations of this model.
    #[arg(long)]
    model: Option<String>,
    /// A turn was answered by this model version.
    #[arg(long)]
    version: Option<i32>,
    #[arg(long)]
    channel: Option<String>,
    /// Started at or after (RFC 3339).
    #[arg(long)]
    since: Option<DateTime<Utc>>,
    /// Started before (RFC 3339).
    #[arg(long)]
    until: Option<DateTime<Utc>>,
    /// Only those where the bot fell back (`true`) or never did (`false`).
    #[arg(long)]
    fallback: Option<bool>,
    /// A user turn's confidence is at least this.
    #[arg(long)]
    min_confidence: Option<f64>,
    /// A user turn's confidence is at most this.
    #[arg(long)]
    max_confidence: Option<f64>,
    /// positive, negative, rated or unrated.
    #[arg(long)]
    rating: Option<String>,
    /// A user turn was predicted as this intent, or corrected to it.
    #[arg(long)]
    intent: Option<String>,
    /// resolved, escalated, abandoned or none.
    #[arg(long)]
    outcome: Option<String>,
    /// A turn's text contains this.
    #[arg(long)]
    search: Option<String>,
}

impl Filters {
    pub(super) fn query(self, limit: u64, before: Option<i64>) -> ListQuery {
        ListQuery {
            model: self.model,
            external: None,
            version: self.version,
            channel: self.channel,
            since: self.since,
            until: self.until,
            fallback: self.fallback,
            min_confidence: self.min_confidence,
            max_confidence: self.max_confidence,
            rating: self.rating,
            intent: self.intent,
            outcome: self.outcome,
            q: self.search,
            before,
            limit: Some(limit),
        }
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Conversations, newest first, with what happened in each.
    List {
        #[command(flatten)]
        filters: Filters,
        #[arg(long, default_value_t = 20)]
        limit: u64,
        /// Only conversations older than this id (the next page).
        #[arg(long)]
        before: Option<i64>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// One conversation: every turn with its prediction, confidence,
    /// entities and feedback.
    Show {
        /// Coach's id of the conversation (the first column of `list`).
        id: i64,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Log conversations from a file: Coach JSONL (what `export` writes),
    /// Rasa tracker-store dumps, or a CSV of turns. Conversations already
    /// logged are skipped; a file with any problem is not read at all.
    Import {
        file: PathBuf,
        /// The file's format (default: from its name and first line).
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// The model of conversations that do not name one.
        #[arg(long)]
        model: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Write conversations as Coach JSONL, one per line, oldest first (the
    /// newest `--limit` of those matching).
    Export {
        #[command(flatten)]
        filters: Filters,
        /// Write here instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// At most this many conversations.
        #[arg(long, default_value_t = 100_000)]
        limit: u64,
        #[command(flatten)]
        remote: Remote,
    },
}

/// Largest file `import` reads.
const MAX_IMPORT: u64 = 1 << 30;

pub async fn run(config: Config, cmd: Command) -> Result<ExitCode> {
    match cmd {
        Command::List {
            filters,
            limit,
            before,
            json,
            remote,
        } => {
            let query = filters.query(limit, before);
            let page = if remote.url.is_some() {
                Client::new(&remote, &config)
                    .get(&format!("/api/v1/conversations?{}", query.to_query()))?
            } else {
                let filter = query.filter().map_err(|e| anyhow!(e))?;
                let app = App::open(config, Mode::Command).await?;
                let page = app.service.records().conversations(&filter).await?;
                json!({"conversations": page.conversations, "next_before": page.next})
            };
            if json {
                out!("{}", serde_json::to_string_pretty(&page)?);
                return Ok(ExitCode::SUCCESS);
            }
            list(&page)?;
        }
        Command::Show { id, json, remote } => {
            let v = if remote.url.is_some() {
                remote_whole(&Client::new(&remote, &config), id)?
            } else {
                let app = App::open(config, Mode::Command).await?;
                let Some(c) = app.service.store.conversations_whole(&[id]).await?.pop() else {
                    bail!("no conversation {id}");
                };
                serde_json::to_value(c)?
            };
            if json {
                out!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            show(&v)?;
        }
        Command::Import {
            file,
            format,
            model,
            remote,
        } => {
            let conversations = read_file(&file, format)?;
            let done = if remote.url.is_some() {
                import_remote(
                    &Client::new(&remote, &config),
                    &conversations,
                    model.as_deref(),
                )?
            } else {
                let app = App::open(config, Mode::Command).await?;
                let done = crate::service::conversations::import(
                    &app.service.store,
                    &conversations,
                    model.as_deref(),
                )
                .await?;
                serde_json::to_value(done)?
            };
            out!(
                "imported {} conversations ({} messages, {} feedback) from {}{}",
                done["conversations"],
                done["messages"],
                done["feedback"],
                printable(&file.display().to_string()),
                match done["skipped"].as_u64() {
                    Some(n) if n > 0 => format!("; {n} already logged, skipped"),
                    _ => String::new(),
                }
            );
        }
        Command::Export {
            filters,
            output,
            limit,
            remote,
        } => {
            // A file is written beside its destination and moved into
            // place once whole: a failed export leaves what was there.
            let partial = match &output {
                Some(p) => {
                    let dir = p
                        .parent()
                        .filter(|d| !d.as_os_str().is_empty())
                        .unwrap_or(std::path::Path::new("."));
                    Some(
                        tempfile::NamedTempFile::new_in(dir)
                            .with_context(|| format!("cannot create {}", p.display()))?,
                    )
                }
                None => None,
            };
            let mut sink: Box<dyn Write> = match &partial {
                Some(f) => Box::new(std::io::BufWriter::new(f.as_file().try_clone()?)),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            // A closed pipe on stdout ends quietly; a file that cannot be
            // written is named.
            let file = output.clone();
            let failed = move |e: std::io::Error| -> anyhow::Error {
                match &file {
                    Some(p) => anyhow!("cannot write {}: {e}", p.display()),
                    None => crate::cli::OutputFailed(e).into(),
                }
            };
            let n = export(&config, filters, limit, &remote, &mut sink, &failed).await?;
            sink.flush().map_err(&failed)?;
            drop(sink);
            if let (Some(f), Some(p)) = (partial, &output) {
                f.persist(p)
                    .map_err(|e| anyhow!("cannot write {}: {}", p.display(), e.error))?;
            }
            if let Some(p) = output {
                crate::cli::note!("exported {n} conversations to {}", p.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Read and check a conversations file.
pub(super) fn read_file(
    file: &std::path::Path,
    format: Option<Format>,
) -> Result<Vec<Conversation>> {
    let meta =
        std::fs::metadata(file).with_context(|| format!("cannot read {}", file.display()))?;
    // A device or a pipe has no size to check against the bound (and may
    // never end): only regular files are read.
    if !meta.is_file() {
        bail!("{} is not a regular file", file.display());
    }
    let size = meta.len();
    if size > MAX_IMPORT {
        bail!(
            "{} is {} bytes; `import` reads files up to 1 GiB (split it)",
            file.display(),
            size
        );
    }
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read {} as UTF-8 text", file.display()))?;
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let format = format.unwrap_or_else(|| Format::guess(name, &text));
    formats::parse(format, &text).map_err(|problems| {
        let lines: Vec<String> = problems
            .iter()
            .map(|p| format!("  {}:{}", file.display(), printable(&p.to_string())))
            .collect();
        anyhow!(
            "{} has problems; nothing was imported:\n{}",
            file.display(),
            lines.join("\n")
        )
    })
}

/// Import through a daemon, in batches the API takes: each batch's
/// conversations, with their feedback, in one transaction, those already
/// there skipped (by the daemon, inside it). A failed batch leaves the
/// ones before it imported whole, so running the import again finishes
/// it.
fn import_remote(
    client: &Client,
    conversations: &[Conversation],
    default_model: Option<&str>,
) -> Result<Value> {
    /// Most conversations one request carries (the API takes 500)…
    const BATCH: usize = 200;
    /// …most bytes, under the API's 4 MiB bodies…
    const BATCH_BYTES: usize = 3 << 20;
    /// …and most turns and feedback items, as the API takes them.
    const BATCH_TURNS: usize = crate::core::conversation::MAX_TURNS;
    const BATCH_FEEDBACK: usize = 1000;
    // Reading the file refused a conversation with more feedback than
    // Coach keeps on one, so each fits a request.
    const _: () = assert!(crate::core::conversation::MAX_FEEDBACK <= BATCH_FEEDBACK);
    use crate::service::conversations::duplicate;
    // Every conversation is checked before anything is sent (reading the
    // file checked each as the route will: `Conversation::refuse`).
    let mut sizes = Vec::with_capacity(conversations.len());
    for c in conversations {
        let size = serde_json::to_string(c)?.len() + 1;
        sizes.push(size);
        if size > BATCH_BYTES {
            bail!(
                "conversation `{}` is {size} bytes as JSON; a daemon takes up to {BATCH_BYTES} a request (import it without COACH_URL, into the store)",
                printable(&c.id)
            );
        }
        match c.model.as_deref().or(default_model) {
            None => bail!(
                "conversation `{}` names no model; pass --model",
                printable(&c.id)
            ),
            Some(m) if !crate::core::ids::is_identifier(m) => bail!(
                "conversation `{}`: `{}` is not a model name",
                printable(&c.id),
                printable(m)
            ),
            Some(_) => {}
        }
    }
    if let Some(c) = duplicate(conversations, default_model) {
        bail!(
            "conversation `{}` is there twice for one model; an import takes each once",
            printable(&c.id)
        );
    }
    let (mut n, mut messages, mut feedback, mut skipped) = (0u64, 0u64, 0u64, 0u64);
    let mut sent = 0;
    let mut send = |batch: &mut Vec<Value>| -> Result<()> {
        let mut body = json!({"conversations": batch});
        if let Some(m) = default_model {
            body["model"] = json!(m);
        }
        let v = client
            .post_json("/api/v1/conversations/import", &body)
            .map_err(|e| {
                // A daemon older than the import route answers that the
                // path takes no POST (it reads as a conversation's id) or,
                // older still, that there is no such route.
                let said = format!("{e:#}");
                if sent == 0
                    && (said.contains("(method_not_allowed)") || said.contains("no such route"))
                {
                    return e.context(
                        "nothing was imported: the daemon has no conversation import route (it is older than this command line); upgrade it, or import into the store without COACH_URL",
                    );
                }
                e.context(format!(
                    "the batch of {} conversations after the first {sent} was not imported ({n} imported, {skipped} already logged); the batches before it are in whole: once the cause is fixed, run the import again (what is there is skipped)",
                    batch.len()
                ))
            })?;
        sent += batch.len();
        n += v["conversations"].as_u64().unwrap_or(0);
        messages += v["messages"].as_u64().unwrap_or(0);
        feedback += v["feedback"].as_u64().unwrap_or(0);
        skipped += v["skipped"].as_u64().unwrap_or(0);
        batch.clear();
        Ok(())
    };
    // One batch in memory at a time.
    let mut batch: Vec<Value> = Vec::new();
    let (mut bytes, mut turns, mut items) = (0, 0, 0);
    for (c, size) in conversations.iter().zip(sizes) {
        let fed = c.feedback_count();
        let full = batch.len() == BATCH
            || bytes + size > BATCH_BYTES
            || turns + c.turns.len() > BATCH_TURNS
            || items + fed > BATCH_FEEDBACK;
        if full {
            send(&mut batch)?;
            (bytes, turns, items) = (0, 0, 0);
        }
        bytes += size;
        turns += c.turns.len();
        items += fed;
        batch.push(serde_json::to_value(c)?);
    }
    if !batch.is_empty() {
        send(&mut batch)?;
    }
    Ok(json!({"conversations": n, "messages": messages, "feedback": feedback, "skipped": skipped}))
}

/// Conversation `id` through the daemon with all its turns: the pages of
/// turns it answers with, put together.
fn remote_whole(client: &Client, id: i64) -> Result<Value> {
    let page = |from: u64| {
        client.get(&format!(
            "/api/v1/conversations/{id}?turns_from={from}&turns_limit=1000"
        ))
    };
    let mut whole = page(0)?;
    while let Some(from) = whole["next_turns_from"].as_u64() {
        let have = whole["turns"].as_array().map_or(0, Vec::len) as u64;
        // Each page follows on from the last, and one conversation holds
        // at most 10,000 turns: a daemon cannot keep this going.
        if from != have || have > crate::core::conversation::MAX_TURNS as u64 {
            bail!(
                "the daemon's pages of conversation {id} do not follow on (turn {from} after {have})"
            );
        }
        let next = page(from)?;
        let turns = next["turns"].as_array().cloned().unwrap_or_default();
        if turns.is_empty() {
            bail!(
                "the daemon answered conversation {id} with no turns from turn {from}, though it said there were more"
            );
        }
        if let Some(all) = whole["turns"].as_array_mut() {
            all.extend(turns);
        }
        whole["next_turns_from"] = next["next_turns_from"].clone();
    }
    // Whole, it reads as the store's conversation does.
    if let Some(o) = whole.as_object_mut() {
        for paging in ["turns_from", "turns_total", "next_turns_from"] {
            o.remove(paging);
        }
    }
    Ok(whole)
}

/// Write conversations as Coach JSONL, a page at a time.
async fn export(
    config: &Config,
    filters: Filters,
    limit: u64,
    remote: &Remote,
    sink: &mut dyn Write,
    failed: &dyn Fn(std::io::Error) -> anyhow::Error,
) -> Result<u64> {
    let app = if remote.url.is_some() {
        None
    } else {
        Some(App::open(config.clone(), Mode::Command).await?)
    };
    let client = Client::new(remote, config);
    // The ids matching, newest first, a page at a time; then written
    // oldest first, so an import elsewhere keeps their order.
    let (mut before, mut ids) = (None, Vec::new());
    while (ids.len() as u64) < limit {
        let query = filters
            .clone()
            .query((limit - ids.len() as u64).min(1000), before);
        let next = match &app {
            Some(app) => {
                let filter = query.filter().map_err(|e| anyhow!(e))?;
                let page = app.service.records().conversations(&filter).await?;
                ids.extend(page.conversations.iter().map(|c| c.id));
                page.next
            }
            None => {
                let v = client.get(&format!("/api/v1/conversations?{}", query.to_query()))?;
                ids.extend(
                    v["conversations"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|c| c["id"].as_i64()),
                );
                v["next_before"].as_i64()
            }
        };
        match next {
            Some(n) => before = Some(n),
            None => break,
        }
    }
    let mut written = 0;
    ids.reverse();
    // Locally, three queries per 500 conversations (fewer where they are
    // long); through a daemon, one conversation at a time (it may be many
    // pages of turns).
    let chunks = match &app {
        Some(app) => {
            app.service
                .store
                .whole_reads(&ids, 500, u64::MAX, u64::MAX)
                .await?
                .0
        }
        None => ids.iter().map(|&id| vec![id]).collect(),
    };
    for chunk in chunks {
        let whole: Vec<StoredConversation> = match &app {
            Some(app) => app.service.store.conversations_whole(&chunk).await?,
            None => vec![
                serde_json::from_value(remote_whole(&client, chunk[0])?)
                    .context("the daemon's conversation is not one")?,
            ],
        };
        for stored in whole {
            // The file holds the conversation as the platform knows it.
            let mut line = serde_json::to_string(&stored.into_conversation())?;
            line.push('\n');
            sink.write_all(line.as_bytes()).map_err(failed)?;
            written += 1;
        }
    }
    Ok(written)
}

fn list(page: &Value) -> Result<(), crate::cli::OutputFailed> {
    let rows = page["conversations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if rows.is_empty() {
        out!("no conversations match");
        return Ok(());
    }
    for c in &rows {
        let s = |k: &str| printable(c[k].as_str().unwrap_or("")).into_owned();
        let mut flags = Vec::new();
        if c["fallbacks"].as_i64().unwrap_or(0) > 0 {
            flags.push(format!("{} fallback(s)", c["fallbacks"]));
        }
        if c["negative"].as_i64().unwrap_or(0) > 0 {
            flags.push("rated -".into());
        }
        if c["positive"].as_i64().unwrap_or(0) > 0 {
            flags.push("rated +".into());
        }
        if c["corrections"].as_i64().unwrap_or(0) > 0 {
            flags.push(format!("{} correction(s)", c["corrections"]));
        }
        if c["escalated"].as_bool() == Some(true) {
            flags.push("escalated".into());
        }
        if let Some(o) = c["outcome"].as_str() {
            flags.push(o.to_owned());
        }
        let low = c["lowest_confidence"]
            .as_f64()
            .map_or("    -".into(), |v| format!("{v:5.2}"));
        out!(
            "{:>6}  {:<16} {:<20} {:>3} turns  low {}  {}  {}",
            c["id"],
            s("model"),
            crate::core::text::clip(&s("external_id"), 20),
            c["turns"],
            low,
            crate::core::text::clip(&s("first_user_text"), 48),
            flags.join(", ")
        );
    }
    if let Some(next) = page["next_before"].as_i64() {
        out!("more: --before {next}");
    }
    Ok(())
}

fn show(v: &Value) -> Result<(), crate::cli::OutputFailed> {
    let s = |v: &Value, k: &str| printable(v[k].as_str().unwrap_or("")).into_owned();
    out!(
        "conversation {} — `{}` of model `{}`{}{}",
        v["id"],
        s(v, "external_id"),
        s(v, "model"),
        v["channel"]
            .as_str()
            .map(|c| format!(", channel {}", printable(c)))
            .unwrap_or_default(),
        v["outcome"]
            .as_str()
            .map(|o| format!(", {o}"))
            .unwrap_or_default()
    );
    for (i, t) in v["turns"].as_array().into_iter().flatten().enumerate() {
        let mut about = Vec::new();
        if let Some(intent) = t["intent"].as_str() {
            let conf = t["confidence"]
                .as_f64()
                .map(|c| format!(" {c:.2}"))
                .unwrap_or_default();
            about.push(format!("{}{conf}", printable(intent)));
        }
        if let Some([a, b, ..]) = t["ranking"].as_array().map(Vec::as_slice) {
            let m =
                a["confidence"].as_f64().unwrap_or(0.0) - b["confidence"].as_f64().unwrap_or(0.0);
            about.push(format!("margin {m:.2} over {}", s(b, "intent")));
        }
        if t["fallback"].as_bool() == Some(true) {
            about.push("fallback".into());
        }
        if t["escalation"].as_bool() == Some(true) {
            about.push("asked for a person".into());
        }
        for e in t["entities"].as_array().into_iter().flatten() {
            about.push(format!("{}={}", s(e, "entity"), s(e, "value")));
        }
        for f in t["feedback"].as_array().into_iter().flatten() {
            if let Some(r) = f["rating"].as_i64() {
                about.push(format!("rated {}", if r > 0 { "+" } else { "-" }));
            }
            if let Some(c) = f["correction"].as_str() {
                about.push(format!("corrected to {}", printable(c)));
            }
        }
        out!(
            "  {i:>3} {:<5} {}{}",
            s(t, "role"),
            s(t, "text"),
            if about.is_empty() {
                String::new()
            } else {
                format!("   [{}]", about.join("; "))
            }
        );
    }
    for f in v["feedback"].as_array().into_iter().flatten() {
        out!(
            "  feedback: {}",
            printable(&serde_json::to_string(f).unwrap_or_default())
        );
    }
    Ok(())
}
