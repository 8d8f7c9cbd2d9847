//! The daemon's configuration file, environment references included.
#![no_main]

use coach::config::Config;
use std::path::Path;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_toml(text, Path::new("/etc/coach"), None) {
        Ok(c) => {
            let _ = c.database_url();
            let _ = c.artifacts_dir();
        }
        Err(e) => {
            let _ = format!("{e:#}");
        }
    }
    let _ = coach::config::expand_env(text);
});
