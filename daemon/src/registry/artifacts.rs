//! Artifacts: files named by the SHA-256 of their bytes under the data
//! directory, written atomically and verified on every load.

use crate::core::ids::Sha256;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Artifacts {
    dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("artifact {hash} is missing from {dir}")]
    Missing { hash: String, dir: String },
    #[error(
        "artifact {hash} is corrupt: its bytes hash to {actual} (the file was changed or damaged; re-register the model from its run or restore the file)"
    )]
    Corrupt { hash: String, actual: String },
}

impl Artifacts {
    pub fn new(dir: impl Into<PathBuf>) -> Artifacts {
        Artifacts { dir: dir.into() }
    }

    pub fn path_of(&self, hash: &str) -> PathBuf {
        self.folder_of(hash).join(hash)
    }

    /// The folder an artifact's file lives in (by the hash's first two
    /// digits, so no folder grows too large).
    fn folder_of(&self, hash: &str) -> PathBuf {
        let prefix = hash.get(..2).unwrap_or("xx");
        self.dir.join("sha256").join(prefix)
    }

    /// Store `bytes`; returns their SHA-256. Storing the same bytes twice
    /// keeps one file.
    pub fn put(&self, bytes: &[u8]) -> Result<Sha256> {
        let sha = Sha256::of(bytes);
        let hash = sha.as_str();
        let path = self.path_of(hash);
        if path.is_file() && self.get(hash).is_ok() {
            return Ok(sha);
        }
        let dir = &self.folder_of(hash);
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        // Unique per call: two runs of one process storing the same bytes
        // at once must not share (and steal) one temporary file.
        let tmp = dir.join(format!(
            ".{hash}.tmp{}.{}",
            std::process::id(),
            INCOMING.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        write_synced(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path)
            .with_context(|| format!("cannot move the artifact into {}", path.display()))?;
        Ok(sha)
    }

    /// Store the file at `src`, streamed (a multi-GB checkpoint is never
    /// held in memory); returns its SHA-256 and size.
    pub fn put_file(&self, src: &Path) -> Result<(Sha256, u64)> {
        use sha2::Digest;
        use std::io::{Read, Write};
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        let tmp = self.dir.join(format!(
            ".incoming.tmp{}.{}",
            std::process::id(),
            INCOMING.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let copy = || -> std::io::Result<(String, u64)> {
            let mut from = std::fs::File::open(src)?;
            let mut to = std::fs::File::create(&tmp)?;
            let mut hasher = sha2::Sha256::new();
            let mut buf = vec![0u8; 1 << 20];
            let mut size = 0u64;
            loop {
                let n = from.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                to.write_all(&buf[..n])?;
                size += n as u64;
            }
            to.sync_all()?;
            Ok((hex::encode(hasher.finalize()), size))
        };
        let (hex, size) = copy().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            anyhow::anyhow!("cannot store {}: {e}", src.display())
        })?;
        let hash = Sha256::try_from(hex).map_err(anyhow::Error::msg)?;
        let path = self.path_of(hash.as_str());
        let dir = &self.folder_of(hash.as_str());
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        std::fs::rename(&tmp, &path)
            .with_context(|| format!("cannot move the artifact into {}", path.display()))?;
        Ok((hash, size))
    }

    /// The bytes of artifact `hash`, checked against it.
    pub fn get(&self, hash: &str) -> Result<Vec<u8>> {
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("`{hash}` is not a SHA-256 artifact hash");
        }
        let path = self.path_of(hash);
        let bytes = std::fs::read(&path).map_err(|_| ArtifactError::Missing {
            hash: hash.to_owned(),
            dir: self.dir.display().to_string(),
        })?;
        let actual = crate::core::hash::sha256_hex(&bytes);
        if actual != hash {
            return Err(ArtifactError::Corrupt {
                hash: hash.to_owned(),
                actual,
            }
            .into());
        }
        Ok(bytes)
    }
}

/// Tells apart the temporary files of concurrent [`Artifacts::put_file`]s.
static INCOMING: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_bytes_stored_at_once_by_many_runs_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(Artifacts::new(dir.path()));
        let bytes = vec![7u8; 1 << 20];
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (store, bytes) = (store.clone(), bytes.clone());
                std::thread::spawn(move || store.put(&bytes).map(|s| s.as_str().to_owned()))
            })
            .collect();
        for h in handles {
            let hash = h.join().unwrap().unwrap();
            assert_eq!(store.get(&hash).unwrap(), bytes);
        }
    }

    #[test]
    fn round_trip_and_corruption_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let a = Artifacts::new(dir.path());
        let h = a.put(b"model bytes").unwrap();
        assert_eq!(a.get(&h).unwrap(), b"model bytes");
        std::fs::write(a.path_of(&h), b"tampered").unwrap();
        let e = a.get(&h).unwrap_err();
        assert!(e.to_string().contains("corrupt"), "{e}");
        // Putting the bytes again repairs the file.
        a.put(b"model bytes").unwrap();
        assert!(a.get(&h).is_ok());
    }

    #[test]
    fn a_file_is_stored_streamed_under_the_same_name_as_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let a = Artifacts::new(dir.path().join("store"));
        let src = dir.path().join("weights.bin");
        let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&src, &bytes).unwrap();
        let (h, size) = a.put_file(&src).unwrap();
        assert_eq!(size, bytes.len() as u64);
        assert_eq!(h, a.put(&bytes).unwrap());
        assert_eq!(a.get(&h).unwrap(), bytes);
        let e = a.put_file(&dir.path().join("absent")).unwrap_err();
        assert!(e.to_string().contains("cannot store"), "{e}");
    }
}
