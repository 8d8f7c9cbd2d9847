//! Datasets uploaded whole (the dashboard's drag and drop): the file is
//! read by the built-in file source in the sandbox, exactly as a source
//! step reads it, and kept — the file under `data_dir/datasets/NAME/` and
//! its examples as a snapshot of dataset `NAME` — only when every record
//! is good. A bad upload leaves nothing behind.

use super::Service;
use crate::plugin::JobSpec;
use anyhow::Context;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Largest file one upload may be.
pub const MAX_UPLOAD: usize = 64 << 20;

/// How long reading an upload may take in the sandbox.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// The formats an upload may be in, by file extension: (extension, the
/// file source's `format`).
const FORMATS: &[(&str, &str)] = &[
    ("jsonl", "jsonl"),
    ("csv", "csv"),
    ("yml", "rasa"),
    ("yaml", "rasa"),
];

/// What a good upload stored.
#[derive(Debug, Clone, Serialize)]
pub struct Uploaded {
    pub dataset: String,
    pub version: i64,
    pub content_hash: String,
    pub examples: usize,
    pub conversations: usize,
    pub intents: usize,
    /// Where the file is kept (a source step can read it there).
    pub path: PathBuf,
}

/// Why an upload was not stored.
#[derive(Debug)]
pub enum UploadError {
    /// The request itself (name, file name, size), said plainly.
    Invalid(String),
    /// The file's bad records: how many, of how many records in all, and
    /// the first, each `(location, reason)`.
    BadRecords {
        bad: u64,
        records: u64,
        first: Vec<(String, String)>,
    },
    Other(anyhow::Error),
}

impl From<anyhow::Error> for UploadError {
    fn from(e: anyhow::Error) -> UploadError {
        UploadError::Other(e)
    }
}

/// The format of a file named `file_name`, and its name as kept (no
/// folders, nothing odd).
pub fn format_of(file_name: &str) -> Result<(&'static str, String), String> {
    let base = file_name
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default()
        .trim();
    let ok = !base.is_empty()
        && base.len() <= 128
        && !base.starts_with('.')
        && base
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !ok {
        return Err(format!(
            "file name `{}`: use letters, digits, `.`, `-` and `_` (at most 128)",
            crate::core::text::printable(&crate::core::text::clip(base, 64))
        ));
    }
    let ext = base
        .rsplit('.')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    FORMATS
        .iter()
        .find(|(e, _)| *e == ext)
        .map(|(_, f)| (*f, base.to_owned()))
        .ok_or_else(|| {
            format!("file `{base}`: expected a .jsonl (Coach JSONL), .csv or .yml (Rasa YAML) file")
        })
}

/// A random folder name for a file being checked.
fn staging_name() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    format!(".upload-{}", hex::encode(bytes))
}

impl Service {
    /// Check `bytes` (a file named `file_name`) with the file source and,
    /// when every record is good, keep it as dataset `name`.
    pub async fn upload_dataset(
        &self,
        name: &str,
        file_name: &str,
        bytes: &[u8],
        actor: &str,
    ) -> Result<Uploaded, UploadError> {
        if !crate::core::ids::is_identifier(name) {
            return Err(UploadError::Invalid(format!(
                "dataset name `{}`: use letters, digits, `-` and `_`, starting with a letter",
                crate::core::text::printable(&crate::core::text::clip(name, 64))
            )));
        }
        let (format, base) = format_of(file_name).map_err(UploadError::Invalid)?;
        if bytes.is_empty() {
            return Err(UploadError::Invalid(format!("file `{base}` is empty")));
        }
        if bytes.len() > MAX_UPLOAD {
            return Err(UploadError::Invalid(format!(
                "file `{base}` is {} MiB; at most {} MiB",
                bytes.len() >> 20,
                MAX_UPLOAD >> 20
            )));
        }
        let root = self.config().data_dir.join(crate::config::UPLOADS);
        std::fs::create_dir_all(&root)
            .with_context(|| format!("cannot create {}", root.display()))?;
        let staging = Staging(root.join(staging_name()));
        std::fs::create_dir(&staging.0)
            .with_context(|| format!("cannot create {}", staging.0.display()))?;
        let file = staging.0.join(&base);
        std::fs::write(&file, bytes).with_context(|| format!("cannot write {}", file.display()))?;
        let out = self.read_upload(format, &file).await?;
        if out.bad_records > 0 || out.doubtful.is_some() {
            let mut first = out.first_bad.clone();
            if let Some(d) = &out.doubtful {
                first.push((base.clone(), d.clone()));
            }
            // Locations name the file by its path in the sandbox; the
            // user knows it by its name.
            let shown = file.display().to_string();
            for (at, _) in &mut first {
                *at = at.replace(&shown, &base);
            }
            return Err(UploadError::BadRecords {
                bad: out.bad_records,
                records: (out.examples.len() + out.conversations.len()) as u64 + out.bad_records,
                first,
            });
        }
        if out.examples.is_empty() && out.conversations.is_empty() {
            return Err(UploadError::Invalid(format!(
                "file `{base}` holds no examples and no conversations"
            )));
        }
        let origin = serde_json::json!({
            "uploaded_by": actor,
            "file": base,
            "plugin": crate::core::params::FILE_SOURCE,
            "format": format,
        });
        let examples: Vec<crate::core::example::Example> = out
            .examples
            .iter()
            .map(crate::plugin::convert::from_guest)
            .collect();
        let (version, content_hash) = self
            .store
            .save_snapshot(name, &examples, &out.conversations, origin)
            .await?;
        // The file replaces the dataset's earlier one.
        let kept = root.join(name);
        let old = root.join(format!("{}-old", staging_name()));
        if kept.exists() {
            std::fs::rename(&kept, &old)
                .with_context(|| format!("cannot move {} aside", kept.display()))?;
        }
        std::fs::rename(&staging.0, &kept)
            .with_context(|| format!("cannot keep {}", kept.display()))?;
        let _ = std::fs::remove_dir_all(&old);
        let intents = examples
            .iter()
            .map(|e| e.intent.as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        tracing::info!(
            dataset = name,
            version,
            examples = examples.len(),
            by = actor,
            "dataset uploaded"
        );
        Ok(Uploaded {
            dataset: name.to_owned(),
            version,
            content_hash,
            examples: examples.len(),
            conversations: out.conversations.len(),
            intents,
            path: kept.join(&base),
        })
    }

    async fn read_upload(
        &self,
        format: &str,
        file: &Path,
    ) -> Result<crate::plugin::job::SourceOutput, UploadError> {
        let host = self.host.clone();
        let spec = JobSpec {
            run: "upload".into(),
            step: "upload".into(),
            read_paths: vec![file.to_path_buf()],
            timeout: Some(READ_TIMEOUT),
            cancel: self.stopping.child_token(),
            observer: None,
        };
        // Every record read, the bad ones listed: any bad one refuses the
        // upload here, with all of them named.
        let config = serde_json::json!({"format": format, "path": file, "max_bad_fraction": 1.0})
            .to_string();
        let out = tokio::task::spawn_blocking(move || {
            let limits = host.limits();
            host.source(crate::core::params::FILE_SOURCE, spec)?
                .read_from(&config, None, 1024, &limits)
        })
        .await
        .context("reading the upload panicked")?;
        let shown = file.display().to_string();
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.map_err(|e| {
            UploadError::Invalid(format!(
                "the file source could not read it: {}",
                e.to_string().replace(&shown, &name)
            ))
        })
    }
}

/// A folder removed when dropped (unless it was moved away).
struct Staging(PathBuf);

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_give_a_format_or_say_why_not() {
        assert_eq!(
            format_of("intents.jsonl").unwrap(),
            ("jsonl", "intents.jsonl".into())
        );
        assert_eq!(format_of("C:\\data\\nlu.YML").unwrap().0, "rasa");
        assert_eq!(format_of("../../etc/x.csv").unwrap().1, "x.csv");
        for bad in ["", ".jsonl", "a b.jsonl", "notes.txt", "x.json", "é.csv"] {
            assert!(format_of(bad).is_err(), "{bad}");
        }
    }
}
