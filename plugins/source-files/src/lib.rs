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
    /// In a folder: read the files whose names match this pattern (`*` any
    /// run of characters, `?` one) instead of the format's own.
    #[serde(default)]
    pub files: Option<String>,
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
    if let Some(pattern) = &config.files {
        check_pattern(pattern)?;
    }
    let path = &config.path;
    let meta =
        std::fs::metadata(path).map_err(|e| PluginError::io(format!("{}: {e}", path.display())))?;
    if meta.is_file() {
        // A pattern picks files of a folder: beside one file it would be
        // silently ignored, so it is a mistake in the step.
        if let Some(pattern) = &config.files {
            return Err(PluginError::bad_config(format!(
                "`files` {pattern:?} picks files of a folder, but {} is a file; give the folder as `path`",
                path.display()
            )));
        }
        return Ok(vec![path.clone()]);
    }
    let wanted = |p: &Path| match &config.files {
        Some(pattern) => p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| matches_pattern(pattern, n)),
        None => config.format.reads(p, config.include_full),
    };
    let (mut files, folders) = folder_files(path, &wanted)?;
    // Upstream, SNIPS keeps a folder per intent
    // (`AddToPlaylist/train_AddToPlaylist.json`): where the folder has no
    // files of its own, those of its folders are read, one level down.
    let nested = files.is_empty() && config.format == Format::Snips;
    if nested {
        if folders.len() > MAX_FOLDERS {
            return Err(PluginError::bad_data(format!(
                "{}: more than {MAX_FOLDERS} folders; a SNIPS folder holds one per intent",
                path.display()
            )));
        }
        for folder in &folders {
            files.extend(folder_files(folder, &wanted)?.0);
        }
    }
    files.sort();
    if files.is_empty() {
        let place = if nested {
            "this folder or its folders"
        } else {
            "this folder"
        };
        return Err(PluginError::bad_data(match &config.files {
            Some(pattern) => format!("{}: no file in {place} matches {pattern:?}", path.display()),
            None => format!(
                "{}: no {} files in {place}",
                path.display(),
                config.format.name()
            ),
        }));
    }
    Ok(files)
}

/// The most folders a SNIPS folder may hold (upstream: one per intent).
const MAX_FOLDERS: usize = 1_000;

/// The files of `dir` that are `wanted`, and its folders (past
/// [`MAX_FOLDERS`], one more than that).
fn folder_files(
    dir: &Path,
    wanted: &dyn Fn(&Path) -> bool,
) -> Result<(Vec<PathBuf>, Vec<PathBuf>), PluginError> {
    let (mut files, mut folders) = (Vec::new(), Vec::new());
    let entries =
        std::fs::read_dir(dir).map_err(|e| PluginError::io(format!("{}: {e}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(|e| PluginError::io(format!("{}: {e}", dir.display())))?;
        let p = entry.path();
        if p.is_dir() {
            if folders.len() <= MAX_FOLDERS {
                folders.push(p);
            }
        } else if p.is_file() && wanted(&p) {
            files.push(p);
        }
    }
    folders.sort();
    Ok((files, folders))
}

/// The longest `files` pattern: a file name's length on common file
/// systems.
const MAX_PATTERN: usize = 255;

/// A `files` pattern names files of the folder: bounded, one name, no
/// control characters.
fn check_pattern(pattern: &str) -> Result<(), PluginError> {
    let why = if pattern.len() > MAX_PATTERN {
        format!(
            "is {} bytes; a file name pattern is at most {MAX_PATTERN}",
            pattern.len()
        )
    } else if pattern.contains(['/', '\\']) {
        "names a path; it matches the names of the folder's files".to_owned()
    } else if pattern.chars().any(char::is_control) || pattern.is_empty() {
        "must be a non-empty file name without control characters".to_owned()
    } else {
        return Ok(());
    };
    let shown: String = pattern.chars().take(40).collect();
    let cut = if shown.len() < pattern.len() {
        "…"
    } else {
        ""
    };
    Err(PluginError::bad_config(format!(
        "`files` {shown:?}{cut} {why}"
    )))
}

/// Whether `name` matches `pattern`, where `*` stands for any run of
/// characters and `?` for one. At most pattern × name steps (the classic
/// backtrack to the last star), and both are bounded by a file name's
/// length.
fn matches_pattern(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut i, mut j) = (0, 0);
    // The last `*` seen and the name position it is tried against.
    let mut star: Option<(usize, usize)> = None;
    while j < n.len() {
        // A star first: a `*` in the name is no literal match for it.
        if i < p.len() && p[i] == '*' {
            star = Some((i, j));
            i += 1;
        } else if i < p.len() && (p[i] == '?' || p[i] == n[j]) {
            i += 1;
            j += 1;
        } else if let Some((si, sj)) = star {
            // Let the star take one more character.
            star = Some((si, sj + 1));
            i = si + 1;
            j = sj + 1;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

pub(crate) fn bad(file: &Path, line: usize, reason: impl Into<String>) -> BadRecord {
    BadRecord {
        location: format!("{}:{line}", file.display()),
        reason: reason.into(),
    }
}

coach_plugin_sdk::export_source!(Files);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pattern_matches_whole_names() {
        assert!(matches_pattern(
            "validate_*.json",
            "validate_PlayMusic.json"
        ));
        assert!(matches_pattern("*.csv", "test.csv"));
        assert!(matches_pattern("train_?.json", "train_0.json"));
        assert!(matches_pattern("*", ""));
        assert!(matches_pattern("a*b*c", "aXbYbZc"));
        assert!(matches_pattern("*b", "*ab"));
        assert!(!matches_pattern("validate_*.json", "train_PlayMusic.json"));
        assert!(!matches_pattern("train_?.json", "train_10.json"));
        assert!(!matches_pattern("*.csv", "test.csv.bak"));
        assert!(!matches_pattern("a*b*c", "aXbYbZ"));
        // A long name against many stars stays quick.
        let long = "a".repeat(10_000);
        assert!(!matches_pattern("*a*a*a*a*a*b", &long));
    }

    /// A SNIPS step reading `dir`, with `files` as its pattern.
    fn snips_in(dir: &Path, files: Option<&str>) -> Config {
        Config {
            path: dir.to_path_buf(),
            format: Format::Snips,
            text_column: None,
            intent_column: None,
            delimiter: None,
            split: None,
            include_full: false,
            files: files.map(str::to_owned),
            max_bad_fraction: 0.05,
        }
    }

    #[test]
    fn files_picks_a_folders_files_instead_of_the_formats_rule() {
        let dir = std::env::temp_dir().join(format!("source-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["train_A.json", "train_A_full.json", "validate_A.json"] {
            std::fs::write(dir.join(name), "{}").unwrap();
        }
        let config = |files: Option<&str>| snips_in(&dir, files);
        let names = |c: &Config| -> Vec<String> {
            list_files(c)
                .unwrap()
                .iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(names(&config(None)), ["train_A.json"]);
        assert_eq!(names(&config(Some("validate_*.json"))), ["validate_A.json"]);
        assert_eq!(
            names(&config(Some("*.json"))),
            ["train_A.json", "train_A_full.json", "validate_A.json"]
        );
        let err = list_files(&config(Some("test_*.json"))).unwrap_err();
        assert!(err.message.contains("matches \"test_*.json\""), "{err}");
        // Hostile patterns are refused before the folder is read, and
        // never echoed whole.
        for bad in [
            "*".repeat(100_000),
            "../*.json".into(),
            "a\0*".into(),
            String::new(),
        ] {
            let err = list_files(&config(Some(&bad))).unwrap_err().to_string();
            assert!(err.contains("`files`") && err.len() < 200, "{err}");
            assert!(!err.contains('\0'), "{err}");
        }
        // A pattern beside a single file is a mistake, not ignored.
        let one = Config {
            path: dir.join("train_A.json"),
            ..config(Some("*.json"))
        };
        let err = list_files(&one).unwrap_err().to_string();
        assert!(err.contains("is a file"), "{err}");
        let one = Config { files: None, ..one };
        assert_eq!(list_files(&one).unwrap(), [dir.join("train_A.json")]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn snips_as_upstream_lays_it_out_a_folder_per_intent() {
        let dir = std::env::temp_dir().join(format!("source-files-up-{}", std::process::id()));
        for intent in ["A", "B"] {
            let sub = dir.join(intent);
            std::fs::create_dir_all(&sub).unwrap();
            for name in ["train_", "validate_"] {
                std::fs::write(sub.join(format!("{name}{intent}.json")), "{}").unwrap();
            }
        }
        let config = |files: Option<&str>| snips_in(&dir, files);
        let found = |c: &Config| -> Vec<PathBuf> { list_files(c).unwrap() };
        assert_eq!(
            found(&config(None)),
            [dir.join("A/train_A.json"), dir.join("B/train_B.json")]
        );
        assert_eq!(
            found(&config(Some("validate_*.json"))),
            [dir.join("A/validate_A.json"), dir.join("B/validate_B.json")]
        );
        let err = list_files(&config(Some("test_*.json"))).unwrap_err();
        assert!(err.message.contains("or its folders"), "{err}");
        // Files of its own: the folders are not read (a copy kept in one
        // would count twice).
        std::fs::write(dir.join("train_C.json"), "{}").unwrap();
        assert_eq!(found(&config(None)), [dir.join("train_C.json")]);
        std::fs::remove_file(dir.join("train_C.json")).unwrap();
        // Other formats never look inside folders.
        let csv = Config {
            format: Format::Banking77,
            ..config(None)
        };
        assert!(list_files(&csv).is_err());
        // A folder of more folders than intents could be is refused.
        for i in 0..=MAX_FOLDERS {
            std::fs::create_dir_all(dir.join("many").join(i.to_string())).unwrap();
        }
        let many = Config {
            path: dir.join("many"),
            ..config(None)
        };
        let err = list_files(&many).unwrap_err().to_string();
        assert!(err.contains("more than 1000 folders"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
