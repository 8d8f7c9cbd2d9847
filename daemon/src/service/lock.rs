//! One daemon per data directory: an exclusive lock on
//! `<data_dir>/daemon.lock`, held for the daemon's life. The file also says
//! who holds it, for the message the second daemon prints.

use anyhow::{Context, Result, bail};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct DataDirLock {
    _file: std::fs::File,
    path: PathBuf,
}

impl DataDirLock {
    pub fn acquire(data_dir: &Path, listen: &std::net::SocketAddr) -> Result<DataDirLock> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
        let path = data_dir.join("daemon.lock");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .with_context(|| {
                format!(
                    "cannot write to the data directory {} (is it read-only?)",
                    data_dir.display()
                )
            })?;
        if let Err(e) = file.try_lock() {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            match e {
                std::fs::TryLockError::WouldBlock => bail!(
                    "another Coach daemon is using the data directory {} ({}); stop it first or give this one another `data_dir`",
                    data_dir.display(),
                    holder.trim()
                ),
                std::fs::TryLockError::Error(e) => {
                    return Err(e).with_context(|| format!("cannot lock {}", path.display()));
                }
            }
        }
        // Say who holds it; a full disk shows here, before anything else is
        // written.
        file.set_len(0)
            .and_then(|()| writeln!(file, "pid {} listening on {listen}", std::process::id()))
            .and_then(|()| file.sync_all())
            .with_context(|| match crate::store::health::full_disk(data_dir) {
                Some(full) => full,
                None => format!(
                    "cannot write to the data directory {} (is the disk full?)",
                    data_dir.display()
                ),
            })?;
        Ok(DataDirLock { _file: file, path })
    }
}

impl Drop for DataDirLock {
    fn drop(&mut self) {
        tracing::debug!(path = %self.path.display(), "data directory lock released");
    }
}
