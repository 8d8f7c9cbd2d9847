//! Model artifacts: files named by the SHA-256 of their bytes under the data
//! directory, written atomically and verified on every load.

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
        let prefix = hash.get(..2).unwrap_or("xx");
        self.dir.join("sha256").join(prefix).join(hash)
    }

    /// Store `bytes`; returns their SHA-256. Storing the same bytes twice
    /// keeps one file.
    pub fn put(&self, bytes: &[u8]) -> Result<String> {
        let hash = crate::plugin::sha256_hex(bytes);
        let path = self.path_of(&hash);
        if path.is_file() && self.get(&hash).is_ok() {
            return Ok(hash);
        }
        let dir = path.parent().expect("artifact path has a parent");
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let tmp = dir.join(format!(".{hash}.tmp{}", std::process::id()));
        write_synced(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path)
            .with_context(|| format!("cannot move the artifact into {}", path.display()))?;
        Ok(hash)
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
        let actual = crate::plugin::sha256_hex(&bytes);
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
}
