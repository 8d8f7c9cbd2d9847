//! The end of a run is never lost to a store that cannot be written (a
//! full disk, a read-only remount, a database that went away):
//!
//! - [`WriteHealth`] says whether the last attempt to record a run's end
//!   failed: `/readyz` answers 503 with the reason and triggers pause until
//!   a write succeeds again.
//! - [`OutcomeJournal`] keeps the ends not yet recorded in a file of the
//!   data directory whose blocks are allocated when the daemon starts, so
//!   writing it later needs no free space. The next start records them
//!   before it resumes anything: a run whose last attempt failed is never
//!   resumed into a success.

use super::Store;
use crate::core::ids::RunId;
use crate::core::state::{RunState, StepState};
use crate::core::sync::Lock;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Whether the store takes writes, as far as recording runs' ends knows.
#[derive(Debug, Default)]
pub struct WriteHealth {
    failing: Mutex<Option<String>>,
}

impl WriteHealth {
    /// Why the store cannot be written, while it cannot.
    pub fn failing(&self) -> Option<String> {
        self.failing.locked().clone()
    }

    pub fn set_failing(&self, why: String) {
        *self.failing.locked() = Some(why);
    }

    pub fn set_ok(&self) {
        self.failing.locked().take();
    }
}

/// A run's end the store has not taken yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingEnd {
    pub run: i64,
    pub state: RunState,
    pub error: Option<String>,
}

/// Size of the journal file, allocated at start.
pub const JOURNAL_SIZE: usize = 256 << 10;
/// Longest error kept per run in the journal.
const MAX_ERROR: usize = 2048;

/// `<data_dir>/outcomes.journal`: the pending ends, as JSON lines padded
/// with spaces to [`JOURNAL_SIZE`], overwritten in place.
pub struct OutcomeJournal {
    file: std::fs::File,
    path: PathBuf,
    pending: Mutex<BTreeMap<i64, PendingEnd>>,
}

impl OutcomeJournal {
    /// Open the journal in `data_dir` (creating it and allocating its
    /// blocks); the ends an earlier daemon left in it.
    pub fn open(data_dir: &Path) -> Result<(OutcomeJournal, Vec<PendingEnd>)> {
        let path = data_dir.join("outcomes.journal");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let allocated = file
            .metadata()
            .is_ok_and(|m| m.len() == JOURNAL_SIZE as u64);
        let mut bytes = vec![0u8; JOURNAL_SIZE];
        let read = file.read_at(&mut bytes, 0).unwrap_or(0);
        let blank = bytes[..read].iter().all(|&b| b == b' ');
        let left: Vec<PendingEnd> = String::from_utf8_lossy(&bytes[..read])
            .lines()
            .filter_map(|l| serde_json::from_str(l.trim()).ok())
            .collect();
        let journal = OutcomeJournal {
            file,
            path,
            pending: Mutex::new(left.iter().map(|e| (e.run, e.clone())).collect()),
        };
        // Every block written once, so that a full disk later can still
        // take an overwrite; a journal already written and empty is left
        // as it is (no write and sync on every start).
        if allocated && blank {
            return Ok((journal, left));
        }
        journal
            .write()
            .with_context(|| match super::health::full_disk(data_dir) {
                Some(full) => full,
                None => format!("cannot write {}", journal.path.display()),
            })?;
        Ok((journal, left))
    }

    /// Keep `end` until [`OutcomeJournal::forget`].
    pub fn record(&self, mut end: PendingEnd) -> std::io::Result<()> {
        if let Some(e) = &mut end.error
            && e.len() > MAX_ERROR
        {
            *e = crate::core::text::clip(e, MAX_ERROR).into_owned();
        }
        self.pending.locked().insert(end.run, end);
        self.write()
    }

    /// The store has `run`'s end.
    pub fn forget(&self, run: i64) -> std::io::Result<()> {
        if self.pending.locked().remove(&run).is_none() {
            return Ok(());
        }
        self.write()
    }

    fn write(&self) -> std::io::Result<()> {
        let mut text = String::new();
        for end in self.pending.locked().values() {
            let line = serde_json::to_string(end).unwrap_or_default();
            if text.len() + line.len() + 1 > JOURNAL_SIZE {
                tracing::error!(
                    run = end.run,
                    "the outcome journal is full; this run's end may be lost"
                );
                continue;
            }
            text.push_str(&line);
            text.push('\n');
        }
        let mut bytes = text.into_bytes();
        bytes.resize(JOURNAL_SIZE, b' ');
        self.file.write_all_at(&bytes, 0)?;
        self.file.sync_data()
    }
}

impl Store {
    /// Record a run's end that an earlier daemon could not: the run ends
    /// in `end.state`, and steps it left running end as interrupted.
    pub async fn record_pending_end(&self, end: &PendingEnd) -> Result<()> {
        use super::entities::{run_steps, training_runs};
        use sea_orm::sea_query::Expr;
        use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
        let tx = self.begin_write().await?;
        run_steps::Entity::update_many()
            .col_expr(
                run_steps::Column::State,
                Expr::value(StepState::Interrupted.as_str()),
            )
            .col_expr(
                run_steps::Column::Error,
                Expr::value("the store could not be written when this step ended"),
            )
            .col_expr(
                run_steps::Column::FinishedAt,
                Expr::value(chrono::Utc::now()),
            )
            .filter(run_steps::Column::RunId.eq(end.run))
            .filter(run_steps::Column::State.eq(StepState::Running))
            .exec(&tx)
            .await?;
        training_runs::ActiveModel {
            id: Set(end.run),
            state: Set(end.state),
            error: Set(end.error.clone()),
            finished_at: Set(Some(chrono::Utc::now())),
            ..Default::default()
        }
        .update(&tx)
        .await?;
        tx.commit().await?;
        tracing::warn!(
            run = %RunId(end.run),
            state = %end.state,
            "recorded the end of a run that the store could not take when it happened"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_ends_survive_a_reopen_and_forgotten_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let (j, left) = OutcomeJournal::open(dir.path()).unwrap();
        assert!(left.is_empty());
        assert_eq!(
            std::fs::metadata(dir.path().join("outcomes.journal"))
                .unwrap()
                .len(),
            JOURNAL_SIZE as u64
        );
        let end = |run| PendingEnd {
            run,
            state: RunState::Failed,
            error: Some("x".repeat(10_000)),
        };
        j.record(end(1)).unwrap();
        j.record(end(2)).unwrap();
        j.forget(1).unwrap();
        drop(j);
        let (_, left) = OutcomeJournal::open(dir.path()).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].run, 2);
        assert!(left[0].error.as_ref().unwrap().len() <= MAX_ERROR + 4);
    }
}
