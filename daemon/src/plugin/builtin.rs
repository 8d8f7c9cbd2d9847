//! First-party plugins, built from `plugins/` for `wasm32-wasip2` by the
//! build script and embedded in the binary, so Coach runs its own workflows
//! with nothing installed.

/// One embedded plugin: its manifest text and component bytes.
pub struct BuiltIn {
    pub name: &'static str,
    pub manifest: &'static str,
    pub wasm: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/builtin_plugins.rs"));
