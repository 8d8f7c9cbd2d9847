//! A third party's `plugin.toml`.
#![no_main]

use coach::plugin::manifest::Manifest;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = Manifest::parse(text, "plugins/fuzz/plugin.toml") {
        assert!(!e.is_empty(), "a refusal without a reason");
    }
});
