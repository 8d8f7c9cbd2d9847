//! Whether a store can be trusted before anything is done with it: a
//! SQLite file that is damaged, lost beside the artifacts it describes, or
//! on a full disk stops Coach at start with what happened and the way out.

use anyhow::{Result, bail};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use std::path::Path;

/// Stores up to this size get SQLite's `quick_check` (every page, about a
/// second per few hundred MB); larger ones the cheap check: the header,
/// the schema and the first page of every table.
pub const FULL_CHECK_UP_TO: u64 = 1 << 30;

/// Free space below this counts as a full disk.
const FULL_BELOW: u64 = 1 << 20;

/// The file beside a store that says how the store looked when the last
/// daemon stopped cleanly: size and modification time.
fn marker(path: &Path) -> std::path::PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".clean-stop");
    p.into()
}

fn fingerprint(path: &Path) -> Option<String> {
    let m = std::fs::metadata(path).ok()?;
    let mtime = m
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    Some(format!("{} {}", m.len(), mtime.as_nanos()))
}

/// At daemon start: check the SQLite store at `path` ([`check_sqlite`]) —
/// unless it is byte for byte as the last daemon left it when it stopped
/// cleanly (same size and modification time, no write-ahead log): then
/// there is nothing new to check, and a large store starts at once. After
/// a crash, or any write by anyone since, the check runs.
pub async fn check_at_start(db: &DatabaseConnection, path: &Path) -> Result<()> {
    let wal = {
        let mut p = path.as_os_str().to_owned();
        p.push("-wal");
        std::path::PathBuf::from(p)
    };
    let unchanged = std::fs::read_to_string(marker(path))
        .ok()
        .zip(fingerprint(path))
        .is_some_and(|(was, now)| was.trim() == now)
        && std::fs::metadata(&wal).map_or(true, |m| m.len() == 0);
    if unchanged {
        tracing::debug!("the store is as the last clean stop left it; not checked again");
        return Ok(());
    }
    let started = std::time::Instant::now();
    check_sqlite(db, path).await?;
    tracing::info!(ms = started.elapsed().as_millis() as u64, "store checked");
    Ok(())
}

/// After the daemon closed the store cleanly: remember how it looks.
pub fn mark_clean_stop(path: &Path) {
    if let Some(now) = fingerprint(path)
        && let Err(e) = std::fs::write(marker(path), now)
    {
        tracing::warn!("cannot note the clean stop beside the store: {e}");
    }
}

/// The store at `path` is damaged: what was found, and the way out.
pub fn damaged(path: &Path, what: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "the store {} is damaged ({what}); restore it from a backup, or save what is readable with `sqlite3 {} .recover`",
        path.display(),
        path.display()
    )
}

/// Whether SQLite said a file is damaged (SQLITE_CORRUPT, SQLITE_NOTADB):
/// a page it reads while opening can be the damaged one, before any check.
pub fn says_damaged(e: &anyhow::Error) -> bool {
    let text = format!("{e:#}");
    text.contains("database disk image is malformed") || text.contains("file is not a database")
}

/// Check the SQLite store at `path`, open as `db`.
pub async fn check_sqlite(db: &DatabaseConnection, path: &Path) -> Result<()> {
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    if size == 0 {
        return Ok(());
    }
    let damaged = |what: String| damaged(path, &what);
    let query = |sql: String| async move {
        db.query_all_raw(Statement::from_string(db.get_database_backend(), sql))
            .await
    };
    if size <= FULL_CHECK_UP_TO {
        let rows = query("PRAGMA quick_check(5)".into())
            .await
            .map_err(|e| damaged(format!("SQLite's quick_check failed: {e}")))?;
        let found: Vec<String> = rows
            .iter()
            .filter_map(|r| r.try_get_by_index::<String>(0).ok())
            .collect();
        if found != ["ok"] {
            return Err(damaged(format!(
                "SQLite's quick_check: {}",
                crate::core::text::printable(&found.join("; "))
            )));
        }
        return Ok(());
    }
    tracing::info!(
        bytes = size,
        "large store: checking its header, schema and the first page of each table only"
    );
    let tables = query("SELECT name FROM sqlite_schema WHERE type = 'table'".into())
        .await
        .map_err(|e| damaged(format!("its schema cannot be read: {e}")))?;
    for t in tables {
        let name: String = t.try_get_by_index(0)?;
        query(format!(
            "SELECT * FROM \"{}\" LIMIT 1",
            name.replace('"', "\"\"")
        ))
        .await
        .map_err(|e| damaged(format!("table `{name}` cannot be read: {e}")))?;
    }
    Ok(())
}

/// Refuse a SQLite store that is missing or empty while the artifacts
/// folder holds models: the database was lost or replaced, and starting on
/// a new empty one would orphan every model (and every token).
pub fn refuse_a_lost_store(db: &Path, artifacts: &Path) -> Result<()> {
    let state = match std::fs::metadata(db) {
        Ok(m) if m.len() > 0 => return Ok(()),
        Ok(_) => "empty",
        Err(_) => "missing",
    };
    let held = count_files(artifacts, 2);
    if held == 0 {
        return Ok(());
    }
    bail!(
        "the store {} is {state}, but {} holds {held} model artifact file(s): the database was lost or replaced. Restore it from a backup; to start afresh on purpose, move {} away first",
        db.display(),
        artifacts.display(),
        artifacts.display()
    )
}

fn count_files(dir: &Path, depth: u32) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_file() => 1,
            Ok(t) if t.is_dir() && depth > 0 => count_files(&e.path(), depth - 1),
            _ => 0,
        })
        .sum()
}

/// "the disk holding … is full" when the file system of `path` (or of its
/// folder) has less than a megabyte free.
pub fn full_disk(path: &Path) -> Option<String> {
    let dir = if path.is_dir() {
        path
    } else {
        path.parent().filter(|p| !p.as_os_str().is_empty())?
    };
    let st = nix::sys::statvfs::statvfs(dir).ok()?;
    let free = st.blocks_available() as u64 * st.fragment_size() as u64;
    (free < FULL_BELOW).then(|| {
        format!(
            "the disk holding {} is full ({} free); free some space and start again",
            dir.display(),
            crate::config::units::format_size(free)
        )
    })
}
