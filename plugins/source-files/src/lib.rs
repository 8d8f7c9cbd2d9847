//! `source-files`: reads labelled examples and conversations from files the
//! step was granted, in one of several well-known layouts.
//!
//! Every record keeps its origin (`file:line`), so a malformed one is skipped
//! and reported where it stands. When more than `max_bad_fraction` of the
//! records are malformed the source fails instead of training on the rest.

mod formats;

use coach_plugin_sdk::{
    BadRecord, Batch, Conversation, Cursor, Example, PluginError, Source, SourceStats, Split, host,
    parse_config,
};
use serde::Deserialize;
use std::path::{Path, PathBuf};

pub use formats::{Format, Parsed, parse_file};

/// The step's parameters.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub path: PathBuf,
    pub format: Format,
    #[serde(default)]
    pub text_column: Option<String>,
    #[serde(default)]
    pub intent_column: Option<String>,
    #[serde(default)]
    pub delimiter: Option<String>,
    #[serde(default)]
    pub split: Option<String>,
    #[serde(default)]
    pub include_full: bool,
    #[serde(default = "default_max_bad_fraction")]
    pub max_bad_fraction: f64,
}

fn default_max_bad_fraction() -> f64 {
    0.05
}

impl Config {
    pub fn default_split(&self) -> Result<Split, PluginError> {
        Ok(match self.split.as_deref() {
            None | Some("unspecified") => Split::Unspecified,
            Some("train") => Split::Train,
            Some("validation") => Split::Validation,
            Some("test") => Split::Test,
            Some(other) => {
                return Err(PluginError::bad_config(format!(
                    "split `{other}` is not one of unspecified, train, validation, test"
                )));
            }
        })
    }
}

/// Records are read up front (files are bounded by the step's memory limit)
/// and handed out in batches; the checkpoint is the number handed out.
pub struct FilesCursor {
    examples: Vec<Example>,
    conversations: Vec<Conversation>,
    position: usize,
    stats: SourceStats,
}

impl FilesCursor {
    fn total(&self) -> usize {
        self.examples.len() + self.conversations.len()
    }
}

pub struct Files;

impl Source for Files {
    type Cursor = FilesCursor;

    fn open(config: &str, checkpoint: Option<String>) -> Result<FilesCursor, PluginError> {
        let config: Config = parse_config(config)?;
        let position = match checkpoint {
            None => 0,
            Some(c) => c.parse::<usize>().map_err(|_| {
                PluginError::bad_config(format!("checkpoint `{c}` is not a record count"))
            })?,
        };
        let files = list_files(&config)?;
        let mut parsed = Parsed::default();
        for (i, file) in files.iter().enumerate() {
            if host::cancelled() {
                return Err(PluginError::cancelled());
            }
            host::progress(
                i as f32 / files.len() as f32,
                &format!("reading {}", file.display()),
            );
            let bytes = std::fs::read(file)
                .map_err(|e| PluginError::io(format!("{}: {e}", file.display())))?;
            parse_file(&config, file, &bytes, &mut parsed)?;
        }
        let records = (parsed.examples.len() + parsed.conversations.len()) as u64;
        let bad = parsed.bad.len() as u64;
        let total = records + bad;
        host::info(&format!(
            "read {records} records from {} file(s), skipped {bad} malformed",
            files.len()
        ));
        if total > 0 && bad as f64 / total as f64 > config.max_bad_fraction {
            let first = parsed
                .bad
                .first()
                .map(|b| format!("; first: {}: {}", b.location, b.reason))
                .unwrap_or_default();
            return Err(PluginError::bad_data(format!(
                "{bad} of {total} records are malformed, more than the allowed {:.1}%{first}",
                config.max_bad_fraction * 100.0
            )));
        }
        let stats = SourceStats {
            records,
            bad_records: bad,
            first_bad: parsed.bad.into_iter().take(20).collect(),
        };
        let cursor = FilesCursor {
            examples: parsed.examples,
            conversations: parsed.conversations,
            position,
            stats,
        };
        if position > cursor.total() {
            return Err(PluginError::bad_config(format!(
                "checkpoint {position} is past the end of the data ({} records)",
                cursor.total()
            )));
        }
        Ok(cursor)
    }
}

impl Cursor for FilesCursor {
    fn next_batch(&mut self, max: u32) -> Result<Batch, PluginError> {
        if host::cancelled() {
            return Err(PluginError::cancelled());
        }
        let mut batch = Batch::default();
        let end = (self.position + max.max(1) as usize).min(self.total());
        let n_ex = self.examples.len();
        for i in self.position..end {
            if i < n_ex {
                batch.examples.push(self.examples[i].clone());
            } else {
                batch
                    .conversations
                    .push(self.conversations[i - n_ex].clone());
            }
        }
        self.position = end;
        Ok(batch)
    }

    fn checkpoint(&self) -> String {
        self.position.to_string()
    }

    fn stats(&self) -> SourceStats {
        self.stats.clone()
    }
}

/// The files to read: `path` itself, or the matching files of a folder.
fn list_files(config: &Config) -> Result<Vec<PathBuf>, PluginError> {
    let path = &config.path;
    let meta =
        std::fs::metadata(path).map_err(|e| PluginError::io(format!("{}: {e}", path.display())))?;
    if meta.is_file() {
        return Ok(vec![path.clone()]);
    }
    let mut files = Vec::new();
    let entries =
        std::fs::read_dir(path).map_err(|e| PluginError::io(format!("{}: {e}", path.display())))?;
    for entry in entries {
        let entry = entry.map_err(|e| PluginError::io(format!("{}: {e}", path.display())))?;
        let p = entry.path();
        if p.is_file() && config.format.reads(&p, config.include_full) {
            files.push(p);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(PluginError::bad_data(format!(
            "{}: no {} files in this folder",
            path.display(),
            config.format.name()
        )));
    }
    Ok(files)
}

pub(crate) fn bad(file: &Path, line: usize, reason: impl Into<String>) -> BadRecord {
    BadRecord {
        location: format!("{}:{line}", file.display()),
        reason: reason.into(),
    }
}

coach_plugin_sdk::export_source!(Files);
