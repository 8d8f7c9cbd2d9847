//! The on-disk cache of compiled components.
//!
//! Key: SHA-256 of the component's bytes and a hash of the engine's
//! compatibility fingerprint (wasmtime version, target, settings), so a
//! different Coach build never loads another's code. Only the daemon writes
//! this folder; deserialising from it trusts its contents.

use anyhow::{Context, Result};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

pub struct CompileCache {
    dir: PathBuf,
    engine_key: String,
}

/// How a component was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    Hit,
    Miss,
}

impl CompileCache {
    pub fn new(engine: &Engine, dir: PathBuf) -> CompileCache {
        let mut h = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        CompileCache {
            dir,
            engine_key: format!("{:016x}", h.finish()),
        }
    }

    pub fn path_for(&self, wasm_sha256: &str) -> PathBuf {
        self.dir
            .join(format!("{wasm_sha256}-{}.cwasm", self.engine_key))
    }

    /// The compiled component for `wasm`, from the cache or freshly compiled
    /// (and then cached). A cache file that fails to load is recompiled.
    pub fn load(
        &self,
        engine: &Engine,
        wasm: &[u8],
        wasm_sha256: &str,
    ) -> Result<(Component, CacheOutcome)> {
        let path = self.path_for(wasm_sha256);
        if path.is_file() {
            match deserialize(engine, &path) {
                Ok(c) => return Ok((c, CacheOutcome::Hit)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "compiled component in the cache does not load; compiling again");
                }
            }
        }
        let compiled = engine
            .precompile_component(wasm)
            .map_err(|e| anyhow::anyhow!("{e:#}"))
            .context("not a valid WebAssembly component")?;
        if let Err(e) = write_atomically(&self.dir, &path, &compiled) {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the compile cache; continuing without it");
        }
        // SAFETY: see `deserialize`; these bytes were produced just now by
        // this engine.
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize(engine, &compiled) }
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        Ok((component, CacheOutcome::Miss))
    }
}

fn deserialize(engine: &Engine, path: &Path) -> Result<Component> {
    // SAFETY: the cache folder is written only by this daemon (from
    // `precompile_component` output), and the file name binds it to this
    // engine's compatibility hash; wasmtime still checks its header.
    #[allow(unsafe_code)]
    let c = unsafe { Component::deserialize_file(engine, path) };
    c.map_err(|e| anyhow::anyhow!("{e:#}"))
}

fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
