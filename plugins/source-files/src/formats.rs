//! One parser per layout. Each appends good records to [`Parsed`] and a
//! located [`BadRecord`] for every record it cannot use.

use crate::{Config, bad};
use coach_plugin_sdk::{BadRecord, Conversation, EntitySpan, Example, Message, PluginError, Split};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::path::Path;

/// The layouts this source reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Coach's own JSON lines (see `docs/formats.md`).
    Jsonl,
    /// CSV with a header; `text_column` / `intent_column` name the columns.
    Csv,
    /// CLINC150 (`data_full.json` …): `{split: [[text, intent], …]}`.
    Clinc150,
    /// Banking77: CSV `text,category`.
    Banking77,
    /// Rasa NLU YAML: `nlu:` / `- intent:` / `examples: |`.
    Rasa,
    /// SNIPS: `{Intent: [{data: [{text, entity?}]}]}`.
    Snips,
    /// HWU64: `;`-separated CSV with inline `[type : value]` annotations.
    Hwu64,
    /// Restaurant8k: `[{userInput: {text}, labels: [{slot, valueSpan}]}]`;
    /// every utterance gets intent `inform`.
    Restaurant8k,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
            Format::Clinc150 => "clinc150",
            Format::Banking77 => "banking77",
            Format::Rasa => "rasa",
            Format::Snips => "snips",
            Format::Hwu64 => "hwu64",
            Format::Restaurant8k => "restaurant8k",
        }
    }

    /// Whether a file inside a folder `path` is read for this format.
    pub fn reads(self, path: &Path, include_full: bool) -> bool {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        match self {
            Format::Jsonl => ext == "jsonl",
            Format::Csv | Format::Banking77 | Format::Hwu64 => ext == "csv",
            Format::Clinc150 => ext == "json" && name.starts_with("data_"),
            Format::Restaurant8k => ext == "json" && name.starts_with("train_"),
            Format::Rasa => ext == "yml" || ext == "yaml",
            Format::Snips => {
                ext == "json"
                    && name.starts_with("train_")
                    && (include_full || !name.ends_with("_full.json"))
            }
        }
    }
}

/// What parsing produced so far.
#[derive(Debug, Default)]
pub struct Parsed {
    pub examples: Vec<Example>,
    pub conversations: Vec<Conversation>,
    pub bad: Vec<BadRecord>,
}

/// Parse one file's bytes in the configured format.
pub fn parse_file(
    config: &Config,
    file: &Path,
    bytes: &[u8],
    out: &mut Parsed,
) -> Result<(), PluginError> {
    let split = config.default_split()?;
    // SNIPS ships one file that is not valid UTF-8; every reader decodes
    // lossily and leaves the replacement character to the data.
    let text = String::from_utf8_lossy(bytes);
    match config.format {
        Format::Jsonl => jsonl(file, &text, split, out),
        Format::Csv => {
            let delimiter = match config.delimiter.as_deref() {
                None => b',',
                Some(d) if d.len() == 1 => d.as_bytes()[0],
                Some(d) => {
                    return Err(PluginError::bad_config(format!(
                        "delimiter `{d}` must be one ASCII character"
                    )));
                }
            };
            let text_col = config.text_column.as_deref().unwrap_or("text");
            let intent_col = config.intent_column.as_deref().unwrap_or("intent");
            csv_columns(file, &text, delimiter, text_col, intent_col, split, out)
        }
        Format::Banking77 => csv_columns(file, &text, b',', "text", "category", split, out),
        Format::Clinc150 => clinc150(file, &text, out),
        Format::Rasa => {
            rasa(file, &text, split, out);
            Ok(())
        }
        Format::Snips => snips(file, &text, split, out),
        Format::Hwu64 => hwu64(file, &text, split, out),
        Format::Restaurant8k => restaurant8k(file, &text, split, out),
    }
}

fn example(text: String, intent: String, entities: Vec<EntitySpan>, split: Split) -> Example {
    Example {
        text,
        intent,
        entities,
        split,
    }
}

fn split_named(name: &str) -> Option<Split> {
    match name {
        "train" => Some(Split::Train),
        "validation" | "val" | "valid" | "dev" => Some(Split::Validation),
        "test" => Some(Split::Test),
        "" | "unspecified" => Some(Split::Unspecified),
        _ => None,
    }
}

// --- Coach JSONL ------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonlExample {
    text: String,
    intent: String,
    #[serde(default)]
    entities: Vec<JsonlEntity>,
    #[serde(default)]
    split: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonlEntity {
    entity: String,
    start: u32,
    end: u32,
    #[serde(default)]
    value: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonlConversation {
    conversation: String,
    messages: Vec<JsonlMessage>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonlMessage {
    role: String,
    text: String,
    #[serde(default)]
    intent: Option<String>,
    #[serde(default)]
    timestamp_ms: Option<i64>,
}

fn jsonl(file: &Path, text: &str, split: Split, out: &mut Parsed) -> Result<(), PluginError> {
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with("//") {
            continue;
        }
        let value: serde_json::Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                out.bad.push(bad(file, n, format!("not JSON: {e}")));
                continue;
            }
        };
        if value.get("conversation").is_some() {
            match serde_json::from_value::<JsonlConversation>(value) {
                Ok(c) => out.conversations.push(Conversation {
                    id: c.conversation,
                    messages: c
                        .messages
                        .into_iter()
                        .map(|m| Message {
                            role: m.role,
                            text: m.text,
                            intent: m.intent,
                            timestamp_ms: m.timestamp_ms,
                        })
                        .collect(),
                }),
                Err(e) => out.bad.push(bad(file, n, format!("bad conversation: {e}"))),
            }
            continue;
        }
        let record = match serde_json::from_value::<JsonlExample>(value) {
            Ok(r) => r,
            Err(e) => {
                out.bad.push(bad(file, n, format!("bad example: {e}")));
                continue;
            }
        };
        if record.text.trim().is_empty() || record.intent.trim().is_empty() {
            out.bad.push(bad(file, n, "empty text or intent"));
            continue;
        }
        let record_split = match record.split.as_deref() {
            None => split,
            Some(s) => match split_named(s) {
                Some(s) => s,
                None => {
                    out.bad.push(bad(file, n, format!("unknown split `{s}`")));
                    continue;
                }
            },
        };
        let mut entities = Vec::new();
        let mut ok = true;
        for e in record.entities {
            let (s, t) = (e.start as usize, e.end as usize);
            if s >= t
                || t > record.text.len()
                || !record.text.is_char_boundary(s)
                || !record.text.is_char_boundary(t)
            {
                out.bad.push(bad(
                    file,
                    n,
                    format!("entity `{}` span {s}..{t} is outside the text", e.entity),
                ));
                ok = false;
                break;
            }
            let value = record.text[s..t].to_owned();
            if let Some(v) = &e.value
                && v != &value
            {
                out.bad.push(bad(
                    file,
                    n,
                    format!(
                        "entity `{}` value `{v}` differs from the text `{value}`",
                        e.entity
                    ),
                ));
                ok = false;
                break;
            }
            entities.push(EntitySpan {
                entity: e.entity,
                start: e.start,
                end: e.end,
                value,
            });
        }
        if ok {
            out.examples
                .push(example(record.text, record.intent, entities, record_split));
        }
    }
    Ok(())
}

// --- CSV ------------------------------------------------------------------

fn csv_reader(text: &str, delimiter: u8) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(true)
        .flexible(true)
        .from_reader(text.as_bytes())
}

fn column(headers: &csv::StringRecord, name: &str, file: &Path) -> Result<usize, PluginError> {
    headers
        .iter()
        .position(|h| h.trim() == name)
        .ok_or_else(|| {
            PluginError::bad_data(format!(
                "{}:1: no column `{name}` in the header ({})",
                file.display(),
                headers.iter().collect::<Vec<_>>().join(", ")
            ))
        })
}

fn csv_columns(
    file: &Path,
    text: &str,
    delimiter: u8,
    text_col: &str,
    intent_col: &str,
    split: Split,
    out: &mut Parsed,
) -> Result<(), PluginError> {
    let mut reader = csv_reader(text, delimiter);
    let headers = reader
        .headers()
        .map_err(|e| PluginError::bad_data(format!("{}:1: {e}", file.display())))?
        .clone();
    let ti = column(&headers, text_col, file)?;
    let ii = column(&headers, intent_col, file)?;
    for record in reader.records() {
        match record {
            Err(e) => {
                let line = e.position().map(|p| p.line() as usize).unwrap_or(0);
                out.bad.push(bad(file, line, e.to_string()));
            }
            Ok(r) => {
                let line = r.position().map(|p| p.line() as usize).unwrap_or(0);
                match (r.get(ti), r.get(ii)) {
                    (Some(t), Some(i)) if !t.trim().is_empty() && !i.trim().is_empty() => {
                        out.examples.push(example(
                            t.trim().to_owned(),
                            i.trim().to_owned(),
                            vec![],
                            split,
                        ))
                    }
                    _ => out.bad.push(bad(
                        file,
                        line,
                        format!("missing or empty `{text_col}` or `{intent_col}`"),
                    )),
                }
            }
        }
    }
    Ok(())
}

// --- CLINC150 ---------------------------------------------------------------

/// The line numbers of a file's byte offsets, for locating bad records:
/// its newlines are found once, on the first bad record, and each offset is
/// looked up among them (counting them afresh for every record made
/// reading CLINC150's one-line file quadratic: 7.5 s). A file without bad
/// records never builds the index.
struct Lines<'a> {
    text: &'a str,
    newlines: std::cell::OnceCell<Vec<usize>>,
}

impl<'a> Lines<'a> {
    fn of(text: &'a str) -> Lines<'a> {
        Lines {
            text,
            newlines: std::cell::OnceCell::new(),
        }
    }

    /// The line (from 1) at which `part`, a slice of the text, starts.
    fn of_part(&self, part: &str) -> usize {
        let offset = (part.as_ptr() as usize)
            .saturating_sub(self.text.as_ptr() as usize)
            .min(self.text.len());
        let newlines = self.newlines.get_or_init(|| {
            self.text
                .bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i)
                .collect()
        });
        newlines.partition_point(|&n| n < offset) + 1
    }

    /// Whether the newline index has been built.
    #[cfg(test)]
    fn indexed(&self) -> bool {
        self.newlines.get().is_some()
    }
}

fn clinc150(file: &Path, text: &str, out: &mut Parsed) -> Result<(), PluginError> {
    let splits: BTreeMap<String, Vec<&RawValue>> = serde_json::from_str(text).map_err(|e| {
        PluginError::bad_data(format!(
            "{}:{}:{}: not a CLINC150 file: {e}",
            file.display(),
            e.line(),
            e.column()
        ))
    })?;
    let lines = Lines::of(text);
    for (name, records) in splits {
        let (split, oos) = match name.as_str() {
            "train" => (Split::Train, false),
            "val" => (Split::Validation, false),
            "test" => (Split::Test, false),
            "oos_train" => (Split::Train, true),
            "oos_val" => (Split::Validation, true),
            "oos_test" => (Split::Test, true),
            _ => continue,
        };
        for raw in records {
            let line = || lines.of_part(raw.get());
            match serde_json::from_str::<(String, String)>(raw.get()) {
                Ok((t, intent)) if !t.trim().is_empty() && !intent.is_empty() => {
                    let intent = if oos { "oos".to_owned() } else { intent };
                    out.examples.push(example(t, intent, vec![], split));
                }
                Ok(_) => out.bad.push(bad(file, line(), "empty text or intent")),
                Err(e) => out
                    .bad
                    .push(bad(file, line(), format!("expected [text, intent]: {e}"))),
            }
        }
    }
    Ok(())
}

// --- Rasa NLU YAML ------------------------------------------------------------

/// Rasa's annotation: `[value](entity)`, `[value]{"entity": "x", …}`, or
/// `[value](entity:synonym)`; returns the plain text and the spans.
pub fn parse_rasa_annotations(line: &str) -> Result<(String, Vec<EntitySpan>), String> {
    let mut text = String::with_capacity(line.len());
    let mut spans = Vec::new();
    let mut rest = line;
    while let Some(open) = rest.find('[') {
        text.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find(']') else {
            return Err("`[` without a closing `]`".into());
        };
        let value = &after[..close];
        let tail = &after[close + 1..];
        let (entity, consumed) = if let Some(t) = tail.strip_prefix('(') {
            let Some(end) = t.find(')') else {
                return Err(format!("entity for `{value}` has no closing `)`"));
            };
            let name = t[..end].split(':').next().unwrap_or("").trim().to_owned();
            (name, end + 2)
        } else if tail.starts_with('{') {
            let Some(end) = tail.find('}') else {
                return Err(format!("entity for `{value}` has no closing `}}`"));
            };
            let obj: serde_json::Value = serde_json::from_str(&tail[..=end])
                .map_err(|e| format!("entity object for `{value}`: {e}"))?;
            let name = obj
                .get("entity")
                .and_then(|v| v.as_str())
                .ok_or_else(|| format!("entity object for `{value}` has no `entity`"))?;
            (name.to_owned(), end + 1)
        } else {
            // A bracket that is not an annotation is kept as text.
            text.push('[');
            rest = after;
            continue;
        };
        if entity.is_empty() {
            return Err(format!("empty entity name for `{value}`"));
        }
        if value.is_empty() {
            return Err(format!("entity `{entity}` annotates no text (`[]`)"));
        }
        let start = text.len();
        text.push_str(value);
        spans.push(EntitySpan {
            entity,
            start: start as u32,
            end: text.len() as u32,
            value: value.to_owned(),
        });
        rest = &tail[consumed..];
    }
    text.push_str(rest);
    Ok((text, spans))
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn rasa(file: &Path, text: &str, split: Split, out: &mut Parsed) {
    let lines: Vec<&str> = text.lines().collect();
    let mut intent: Option<String> = None;
    let mut in_examples: Option<usize> = None; // indentation of the `examples:` key
    for (i, raw) in lines.iter().enumerate() {
        let n = i + 1;
        let line = raw.trim_end();
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if let Some(key_indent) = in_examples {
            if indent(line) > key_indent && trimmed.starts_with("- ") {
                let Some(name) = &intent else { continue };
                let utterance = trimmed[2..].trim();
                match parse_rasa_annotations(utterance) {
                    Ok((t, spans)) if !t.trim().is_empty() => {
                        out.examples.push(example(t, name.clone(), spans, split))
                    }
                    Ok(_) => out.bad.push(bad(file, n, "empty example")),
                    Err(e) => out.bad.push(bad(file, n, e)),
                }
                continue;
            }
            if indent(line) > key_indent {
                out.bad
                    .push(bad(file, n, "expected `- example` in an examples block"));
                continue;
            }
            in_examples = None;
        }
        let item = trimmed.strip_prefix("- ").unwrap_or(trimmed);
        if let Some(name) = item.strip_prefix("intent:") {
            let name = name.trim().trim_matches('"').trim_matches('\'');
            if name.is_empty() {
                out.bad.push(bad(file, n, "`intent:` without a name"));
                intent = None;
            } else {
                intent = Some(name.to_owned());
            }
        } else if item.starts_with("synonym:")
            || item.starts_with("regex:")
            || item.starts_with("lookup:")
        {
            intent = None;
        } else if let Some(v) = item.strip_prefix("examples:") {
            if v.trim() == "|" || v.trim() == "|-" || v.trim() == "|+" {
                in_examples = Some(indent(line));
            } else {
                out.bad.push(bad(
                    file,
                    n,
                    "expected `examples: |` followed by `- example` lines",
                ));
            }
        }
    }
}

// --- SNIPS ------------------------------------------------------------------

#[derive(Deserialize)]
struct SnipsUtterance {
    data: Vec<SnipsChunk>,
}

#[derive(Deserialize)]
struct SnipsChunk {
    text: String,
    #[serde(default)]
    entity: Option<String>,
}

fn snips(file: &Path, text: &str, split: Split, out: &mut Parsed) -> Result<(), PluginError> {
    let intents: BTreeMap<String, Vec<&RawValue>> = serde_json::from_str(text).map_err(|e| {
        PluginError::bad_data(format!(
            "{}:{}:{}: not a SNIPS file: {e}",
            file.display(),
            e.line(),
            e.column()
        ))
    })?;
    let lines = Lines::of(text);
    for (intent, records) in intents {
        for raw in records {
            let line = || lines.of_part(raw.get());
            let u: SnipsUtterance = match serde_json::from_str(raw.get()) {
                Ok(u) => u,
                Err(e) => {
                    out.bad
                        .push(bad(file, line(), format!("bad utterance: {e}")));
                    continue;
                }
            };
            let mut t = String::new();
            let mut spans = Vec::new();
            for chunk in u.data {
                let start = t.len();
                t.push_str(&chunk.text);
                if let Some(entity) = chunk.entity {
                    // Spans never include the chunk's surrounding blanks.
                    let lead = chunk.text.len() - chunk.text.trim_start().len();
                    let value = chunk.text.trim();
                    if !value.is_empty() {
                        let s = start + lead;
                        spans.push(EntitySpan {
                            entity,
                            start: s as u32,
                            end: (s + value.len()) as u32,
                            value: value.to_owned(),
                        });
                    }
                }
            }
            if t.trim().is_empty() {
                out.bad.push(bad(file, line(), "empty utterance"));
                continue;
            }
            out.examples.push(example(t, intent.clone(), spans, split));
        }
    }
    Ok(())
}

// --- HWU64 --------------------------------------------------------------------

/// `wake me up at [time : five am] [date : this week]` → text and spans.
pub fn parse_hwu_annotation(annotation: &str) -> Result<(String, Vec<EntitySpan>), String> {
    let mut text = String::with_capacity(annotation.len());
    let mut spans = Vec::new();
    let mut rest = annotation;
    while let Some(open) = rest.find('[') {
        text.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after.find(']').ok_or("`[` without a closing `]`")?;
        let inner = &after[..close];
        let (entity, value) = inner
            .split_once(':')
            .ok_or_else(|| format!("annotation `[{inner}]` has no `type : value`"))?;
        let (entity, value) = (entity.trim(), value.trim());
        if entity.is_empty() || value.is_empty() {
            return Err(format!("annotation `[{inner}]` has an empty type or value"));
        }
        let start = text.len();
        text.push_str(value);
        spans.push(EntitySpan {
            entity: entity.to_owned(),
            start: start as u32,
            end: text.len() as u32,
            value: value.to_owned(),
        });
        rest = &after[close + 1..];
    }
    text.push_str(rest);
    Ok((text, spans))
}

fn hwu64(file: &Path, text: &str, split: Split, out: &mut Parsed) -> Result<(), PluginError> {
    let mut reader = csv_reader(text, b';');
    let headers = reader
        .headers()
        .map_err(|e| PluginError::bad_data(format!("{}:1: {e}", file.display())))?
        .clone();
    let si = column(&headers, "scenario", file)?;
    let ii = column(&headers, "intent", file)?;
    let ai = column(&headers, "answer_annotation", file)?;
    for record in reader.records() {
        let r = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line() as usize).unwrap_or(0);
                out.bad.push(bad(file, line, e.to_string()));
                continue;
            }
        };
        let line = r.position().map(|p| p.line() as usize).unwrap_or(0);
        let (Some(s), Some(i), Some(a)) = (r.get(si), r.get(ii), r.get(ai)) else {
            out.bad
                .push(bad(file, line, "missing scenario, intent or annotation"));
            continue;
        };
        if s.trim().is_empty() || i.trim().is_empty() || a.trim().is_empty() {
            out.bad
                .push(bad(file, line, "empty scenario, intent or annotation"));
            continue;
        }
        match parse_hwu_annotation(a.trim()) {
            Ok((t, spans)) => out.examples.push(example(
                t,
                format!("{}_{}", s.trim(), i.trim()),
                spans,
                split,
            )),
            Err(e) => out.bad.push(bad(file, line, e)),
        }
    }
    Ok(())
}

// --- Restaurant8k -------------------------------------------------------------

#[derive(Deserialize)]
struct R8kTurn {
    #[serde(rename = "userInput")]
    user_input: R8kInput,
    #[serde(default)]
    labels: Vec<R8kLabel>,
}

#[derive(Deserialize)]
struct R8kInput {
    text: String,
}

#[derive(Deserialize)]
struct R8kLabel {
    slot: String,
    #[serde(rename = "valueSpan")]
    value_span: R8kSpan,
}

#[derive(Deserialize)]
struct R8kSpan {
    #[serde(rename = "startIndex", default)]
    start: usize,
    #[serde(rename = "endIndex")]
    end: usize,
}

fn restaurant8k(
    file: &Path,
    text: &str,
    split: Split,
    out: &mut Parsed,
) -> Result<(), PluginError> {
    let turns: Vec<&RawValue> = serde_json::from_str(text).map_err(|e| {
        PluginError::bad_data(format!(
            "{}:{}:{}: not a Restaurant8k file: {e}",
            file.display(),
            e.line(),
            e.column()
        ))
    })?;
    let lines = Lines::of(text);
    for raw in turns {
        let line = || lines.of_part(raw.get());
        let turn: R8kTurn = match serde_json::from_str(raw.get()) {
            Ok(t) => t,
            Err(e) => {
                out.bad.push(bad(file, line(), format!("bad turn: {e}")));
                continue;
            }
        };
        let t = turn.user_input.text;
        // Spans are character indices; Coach's are byte offsets.
        let byte_at = |c: usize| {
            t.char_indices()
                .map(|(b, _)| b)
                .chain(std::iter::once(t.len()))
                .nth(c)
        };
        let mut spans = Vec::new();
        let mut ok = true;
        for l in turn.labels {
            match (byte_at(l.value_span.start), byte_at(l.value_span.end)) {
                (Some(s), Some(e)) if s < e => spans.push(EntitySpan {
                    entity: l.slot,
                    start: s as u32,
                    end: e as u32,
                    value: t[s..e].to_owned(),
                }),
                _ => {
                    out.bad.push(bad(
                        file,
                        line(),
                        format!("slot `{}` span is outside the text", l.slot),
                    ));
                    ok = false;
                    break;
                }
            }
        }
        if ok && !t.trim().is_empty() {
            out.examples.push(example(t, "inform".into(), spans, split));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rasa_annotations_become_byte_spans() {
        let (t, s) =
            parse_rasa_annotations("book [Paris](city) for [two]{\"entity\": \"guests\"}").unwrap();
        assert_eq!(t, "book Paris for two");
        assert_eq!(s[0].entity, "city");
        assert_eq!(&t[s[0].start as usize..s[0].end as usize], "Paris");
        assert_eq!(s[1].entity, "guests");
        assert_eq!(&t[s[1].start as usize..s[1].end as usize], "two");
    }

    #[test]
    fn rasa_annotation_without_close_is_an_error() {
        assert!(parse_rasa_annotations("book [Paris(city)").is_err());
        // An empty value would be a span of no text.
        assert!(parse_rasa_annotations("hello [](name)").is_err());
    }

    #[test]
    fn hwu_annotations_become_spans() {
        let (t, s) = parse_hwu_annotation("wake me at [time : five am] please").unwrap();
        assert_eq!(t, "wake me at five am please");
        assert_eq!(s[0].value, "five am");
        assert_eq!(&t[s[0].start as usize..s[0].end as usize], "five am");
    }

    fn config(format: &str) -> Config {
        serde_json::from_value(serde_json::json!({"path": "/x", "format": format})).unwrap()
    }

    /// `data` read as the file `name` in `format`.
    fn parsed(format: &str, name: &str, data: &str) -> Parsed {
        let mut out = Parsed::default();
        parse_file(&config(format), Path::new(name), data.as_bytes(), &mut out).unwrap();
        out
    }

    #[test]
    fn rasa_yaml_blocks_are_read_with_lines_of_bad_records() {
        let yaml = "version: \"3.1\"\nnlu:\n- intent: greet\n  examples: |\n    - hi there\n    - hello [Ann](name)\n    - bad [x(name)\n- intent: bye\n  examples: |\n    - see you\n";
        let out = parsed("rasa", "nlu.yml", yaml);
        assert_eq!(out.examples.len(), 3);
        assert_eq!(out.examples[1].entities[0].value, "Ann");
        assert_eq!(out.examples[2].intent, "bye");
        assert_eq!(out.bad.len(), 1);
        assert_eq!(out.bad[0].location, "nlu.yml:7");
    }

    #[test]
    fn clinc150_bad_records_are_located_in_any_split_order() {
        // Splits are read in name order (`oos_val` before `train`), so a
        // later record may sit on an earlier line.
        let data = "{\"train\": [\n  [\"hi\", \"greet\"],\n  [\"\", \"greet\"]\n],\n\"oos_val\": [[\"x\"], [\"ok\", \"oos\"]]}";
        let out = parsed("clinc150", "c.json", data);
        assert_eq!(out.examples.len(), 2);
        let locations: Vec<_> = out.bad.iter().map(|b| b.location.as_str()).collect();
        assert_eq!(locations, ["c.json:5", "c.json:3"]);
    }

    #[test]
    fn the_newline_index_is_built_only_for_a_bad_record() {
        let text = "[\n\"a\",\n\"b\"\n]";
        let lines = Lines::of(text);
        assert!(!lines.indexed());
        assert_eq!(lines.of_part(&text[text.find("\"b").unwrap()..]), 3);
        assert!(lines.indexed());
        assert_eq!(lines.of_part(text), 1);
    }

    #[test]
    fn jsonl_bad_lines_are_located() {
        let data = "{\"text\": \"hi\", \"intent\": \"greet\"}\nnot json\n{\"text\": \"x\", \"intent\": \"a\", \"colour\": 1}\n{\"text\": \"hi\", \"intent\": \"greet\", \"entities\": [{\"entity\": \"e\", \"start\": 0, \"end\": 9}]}\n";
        let out = parsed("jsonl", "d.jsonl", data);
        assert_eq!(out.examples.len(), 1);
        let locations: Vec<_> = out.bad.iter().map(|b| b.location.as_str()).collect();
        assert_eq!(locations, ["d.jsonl:2", "d.jsonl:3", "d.jsonl:4"]);
    }

    #[test]
    fn clinc_oos_splits_are_labelled_oos() {
        let data = "{\"train\": [[\"hi\", \"greet\"]],\n \"oos_val\": [[\"what is love\", \"oos\"],\n [1, 2]]}";
        let out = parsed("clinc150", "c.json", data);
        assert_eq!(out.examples.len(), 2);
        let oos = out.examples.iter().find(|e| e.intent == "oos").unwrap();
        assert_eq!(oos.split, Split::Validation);
        assert_eq!(out.bad[0].location, "c.json:3");
    }

    #[test]
    fn a_checkpoint_resumes_after_the_last_batch() {
        use coach_plugin_sdk::{Cursor, Source};
        let dir = std::env::temp_dir().join(format!("coach-source-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("d.jsonl");
        let lines: String = (0..10)
            .map(|i| format!("{{\"text\": \"t{i}\", \"intent\": \"i{}\"}}\n", i % 2))
            .collect();
        std::fs::write(&file, lines).unwrap();
        let cfg = serde_json::json!({"path": file, "format": "jsonl"}).to_string();
        let mut first = crate::Files::open(&cfg, None).unwrap();
        let b = first.next_batch(4).unwrap();
        assert_eq!(b.examples.len(), 4);
        let checkpoint = first.checkpoint();
        let mut resumed = crate::Files::open(&cfg, Some(checkpoint)).unwrap();
        let rest = resumed.next_batch(100).unwrap();
        assert_eq!(rest.examples.first().unwrap().text, "t4");
        assert_eq!(rest.examples.len(), 6);
        assert!(resumed.next_batch(100).unwrap().examples.is_empty());
        assert!(crate::Files::open(&cfg, Some("99".into())).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn restaurant8k_character_spans_become_byte_spans() {
        let data = r#"[{"userInput": {"text": "Café for 5 people"}, "labels": [{"slot": "people", "valueSpan": {"startIndex": 9, "endIndex": 17}}]},
 {"userInput": {"text": "7pm"}, "labels": [{"slot": "time", "valueSpan": {"endIndex": 3}}]}]"#;
        let out = parsed("restaurant8k", "r.json", data);
        let e = &out.examples[0];
        assert_eq!(e.entities[0].value, "5 people");
        assert_eq!(
            &e.text[e.entities[0].start as usize..e.entities[0].end as usize],
            "5 people"
        );
        assert_eq!(out.examples[1].entities[0].value, "7pm");
    }

    #[test]
    fn snips_chunks_become_spans() {
        let data = r#"{"AddToPlaylist": [{"data": [{"text": "add "}, {"text": "Song ", "entity": "track"}, {"text": "now"}]}]}"#;
        let out = parsed("snips", "s.json", data);
        let e = &out.examples[0];
        assert_eq!(e.text, "add Song now");
        assert_eq!(e.entities[0].value, "Song");
        assert_eq!(e.entities[0].start, 4);
    }
}
