//! First-party plugins, built from `plugins/` for `wasm32-wasip2` by the
//! build script and embedded in the binary, so Coach runs its own workflows
//! with nothing installed.

/// One embedded plugin: its manifest text, component bytes and their
/// SHA-256 (hex), taken at build time.
pub struct BuiltIn {
    pub name: &'static str,
    pub manifest: &'static str,
    pub wasm: &'static [u8],
    pub sha256: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/builtin_plugins.rs"));

#[cfg(test)]
mod tests {
    #[test]
    fn the_hashes_taken_at_build_time_are_the_bytes_hashes() {
        for b in super::BUILTIN {
            assert_eq!(
                crate::core::hash::sha256_hex(b.wasm),
                b.sha256,
                "{}",
                b.name
            );
        }
    }
}
